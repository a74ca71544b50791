//! The platform's license keys (SPEC section 13, `seeds/platform-features.txt`): a customer's
//! license of a product's tier with a license key, the claims of its key token, and the
//! machines that activate the key. A machine's activation is a seat lease of the license on the
//! machine's hardware id, taken with the key ([`Engine::consume_by_license_key`], so the key's
//! first activation revokes the customer's other keys of the product), and renewed by the
//! machine's heartbeats; the activation itself (client id, machine, public key, address) is a
//! directory record, so a heartbeat finds its license and key from the client id alone.

use super::organization::is_valid_email;
use super::signup::canonical_email;
use super::Engine;
use crate::admin::{LicenseKeyRequest, NewLicense};
use crate::answer::Grant;
use crate::decide::{ConsumeRequest, Decision, Denial, ErrorCode, Idempotency, ReleaseRequest, Releaser, UsedQty};
use crate::directory::{key_holder, Directory, DirectoryEvent};
use crate::error::AdminError;
use crate::ids::{ClientId, LicenseId, LicenseeId};
use crate::model::{
    Credit, Dimension, Enforcement, KeyToken, License, LicenseModel, Licensee, LicenseeKind, MachineActivation,
    SessionAnchor,
};
use crate::time::Timestamp;
use std::net::IpAddr;
use std::sync::Arc;

/// How long an activation's token (and its seat lease) lasts without a heartbeat.
pub const ACTIVATION_TOKEN_TTL_S: u64 = 48 * 3_600;

/// How often an activated machine is asked to send its heartbeat.
pub const HEARTBEAT_INTERVAL_S: u64 = 3_600;

/// The rules of a license the platform's keys activate: a seat per machine (a session is a
/// hardware id, whoever holds the key), leases as long as an activation's token, refreshed by
/// hourly heartbeats.
pub fn platform_model() -> LicenseModel {
    LicenseModel {
        lease_time_online_s: ACTIVATION_TOKEN_TTL_S,
        refresh_time_online_s: HEARTBEAT_INTERVAL_S,
        session_anchors: vec![SessionAnchor::Hw],
        ..LicenseModel::default()
    }
}

/// The license `tier` of `product` gives `licensee` from `at` until `valid_until`: the tier's
/// features and `max_users` seats (one when it sets none), the platform's rules, a license key.
pub(super) fn tier_license(
    dir: &Directory,
    licensee: LicenseeId,
    product: &str,
    tier: &str,
    at: Timestamp,
    valid_until: Option<Timestamp>,
) -> NewLicense {
    let seats = dir.product_named(product).and_then(|p| p.tier(tier)).and_then(|t| t.max_users).unwrap_or(1);
    let credit = Credit { dimension: Dimension::Seats, qty: seats, enforcement: Enforcement::Enforced };
    NewLicense {
        tier: Some(tier.to_owned()),
        valid_from: Some(at),
        valid_until,
        license_key: LicenseKeyRequest::Generate,
        model: platform_model(),
        ..NewLicense::new(licensee, product, credit)
    }
}

/// Why issuing a license key made no new license.
enum NotIssued {
    Refused(AdminError),
    /// A retry of a request that issued this license.
    Before(Arc<License>),
}

impl From<AdminError> for NotIssued {
    fn from(e: AdminError) -> Self {
        NotIssued::Refused(e)
    }
}

impl Engine {
    /// Issues a license key of `tier` of `product` to `customer` (an e-mail address): the
    /// customer's person licensee (the one whose `external_id` is the address, made the first
    /// time) and a new license of the tier's defaults ([`tier_license`]), in one change. A retry
    /// with the same `once` answers the same license.
    pub async fn issue_license_key(
        &self,
        customer: &str,
        product: &str,
        tier: &str,
        valid_until: Option<Timestamp>,
        once: Option<&Idempotency>,
    ) -> Result<Arc<License>, AdminError> {
        let email = canonical_email(customer);
        if !is_valid_email(&email) {
            return Err(AdminError::Invalid("customer must be an e-mail address of at most 254 characters".into()));
        }
        let now = self.now();
        if valid_until.is_some_and(|end| end <= now) {
            return Err(AdminError::Invalid("valid_until must be in the future".into()));
        }
        let ids = self.ids_for(once);
        let fresh_licensee = LicenseeId(ids.uuid());
        let mut issued = None;
        let recorded = self
            .record_directory_or(|dir| {
                let found =
                    dir.product_named(product).ok_or_else(|| AdminError::NotFound(format!("product {product:?}")))?;
                if found.tier(tier).is_none() {
                    return Err(AdminError::Invalid(format!("product {product:?} has no tier {tier:?}")).into());
                }
                let existing = dir.licensee_by_external_id(&email).filter(|l| l.kind == LicenseeKind::Person);
                let licensee = match existing {
                    Some(_) => None,
                    None => Some(Licensee {
                        id: fresh_licensee,
                        name: email.clone(),
                        kind: LicenseeKind::Person,
                        external_id: Some(email.clone()),
                    }),
                };
                let licensee_id = existing.map_or(fresh_licensee, |l| l.id);
                let request = tier_license(dir, licensee_id, product, tier, now, valid_until);
                let license = Arc::new(self.terms_of(request, dir, &*ids)?);
                if let Some(before) = dir.license(license.id) {
                    return Err(NotIssued::Before(Arc::clone(before)));
                }
                issued = Some(Arc::clone(&license));
                Ok(DirectoryEvent::LicenseIssued { licensee, license })
            })
            .await;
        match recorded {
            Ok(()) => Ok(issued.expect("a recorded issue made a license")),
            Err(NotIssued::Before(license)) => Ok(license),
            Err(NotIssued::Refused(e)) => Err(e),
        }
    }

    /// Records the claims (`claims_json`) of the key token just issued for `license`.
    pub async fn record_key_token(&self, license: LicenseId, claims_json: String) -> Result<(), AdminError> {
        let token = KeyToken { license, claims_json, issued_at: self.now() };
        self.record_directory(|dir| match dir.license(license) {
            Some(_) => Ok(DirectoryEvent::KeyTokenIssued(token)),
            None => Err(AdminError::NotFound(format!("license {license}"))),
        })
        .await
    }

    /// Activates `license`'s key on `machine`: the machine's seat lease (a new one, or its live
    /// one renewed), and, when granted, the activation recorded, under the client id the machine
    /// already has or a new random one. The decision is answered either way; a refusal records
    /// nothing.
    pub async fn activate_machine(
        &self,
        license: &License,
        machine: &str,
        public_key: Option<String>,
        ip: Option<IpAddr>,
    ) -> Result<(MachineActivation, Decision<Grant>), AdminError> {
        let fresh = ClientId(self.fresh_id());
        let at = self.now();
        let machine_of = |client_id| MachineActivation {
            client_id,
            license: license.id,
            machine_id: machine.to_owned(),
            public_key: public_key.clone(),
            ip,
            activated_at: at,
        };
        let earlier = self.directory().machine_activations_of(license.id).find(|a| a.machine_id == machine).cloned();
        let mut activation = machine_of(earlier.as_ref().map_or(fresh, |a| a.client_id));
        let decision = self.machine_lease(license, &activation, ip).await?;
        if let Decision::Granted(_) = decision {
            // The machine keeps the client id it has, even one given by a concurrent activation.
            self.record_directory(|dir| {
                let earlier = dir.machine_activations_of(license.id).find(|a| a.machine_id == machine);
                activation = machine_of(earlier.map_or(fresh, |a| a.client_id));
                Ok(DirectoryEvent::MachineActivated(activation.clone()))
            })
            .await?;
        }
        Ok((activation, decision))
    }

    /// A heartbeat of activation `client` from `ip`: its seat lease renewed (or taken again, if it
    /// lapsed and a seat is free), or the refusal (a revoked or expired license, no seat).
    pub async fn heartbeat_machine(
        &self,
        client: ClientId,
        ip: Option<IpAddr>,
    ) -> Result<(MachineActivation, Arc<License>, Decision<Grant>), AdminError> {
        let (activation, license) = self.activation(client)?;
        let decision = self.machine_lease(&license, &activation, ip).await?;
        Ok((activation, license, decision))
    }

    /// Ends activation `client`: its seat lease is released (answered: whether a live one was)
    /// and the activation forgotten, so its client id no longer renews.
    pub async fn deactivate_machine(&self, client: ClientId) -> Result<(MachineActivation, bool), AdminError> {
        let (activation, license) = self.activation(client)?;
        let holder = key_holder(license.id);
        let on_machine = |hw: Option<&str>| hw == Some(activation.machine_id.as_str());
        let live = self.leases(license.id).await?;
        let lease = live.iter().find(|l| l.consumer == holder && on_machine(l.anchors.hw.as_deref()));
        let released = match lease {
            Some(lease) => {
                let req =
                    ReleaseRequest { by: Releaser::Consumer(holder), lease_id: lease.id, used: UsedQty::Unreported };
                matches!(self.release(req).await?, Decision::Granted(_))
            }
            None => false,
        };
        self.record_directory(|dir| match dir.machine_activation(client) {
            Some(_) => Ok(DirectoryEvent::MachineDeactivated(client)),
            None => Err(AdminError::NotFound(format!("activation {client}"))),
        })
        .await?;
        Ok((activation, released))
    }

    /// Activation `client` and its license.
    fn activation(&self, client: ClientId) -> Result<(MachineActivation, Arc<License>), AdminError> {
        let directory = self.directory();
        let activation = directory
            .machine_activation(client)
            .cloned()
            .ok_or_else(|| AdminError::NotFound(format!("client {client}")))?;
        let license = directory.license(activation.license).cloned();
        let license = license.ok_or_else(|| AdminError::NotFound(format!("license {}", activation.license)))?;
        Ok((activation, license))
    }

    /// The seat lease of `activation`'s machine on `license`, taken with the license's key.
    async fn machine_lease(
        &self,
        license: &License,
        activation: &MachineActivation,
        ip: Option<IpAddr>,
    ) -> Result<Decision<Grant>, AdminError> {
        let Some(key) = license.license_key.as_deref() else {
            return Ok(Decision::Denied(Denial::new(ErrorCode::NoLicenseFound, "the license has no license key")));
        };
        let mut req = ConsumeRequest::new(key_holder(license.id), license.product_name.to_string())
            .on_hardware(activation.machine_id.clone());
        req.client_ip = ip;
        req.filters.license = Some(license.id);
        let decided = self.consume_by_license_key(key, req).await?;
        Ok(decided.unwrap_or_else(|| {
            Decision::Denied(Denial::new(ErrorCode::NoLicenseFound, "no license has this license key"))
        }))
    }
}
