//! Activation codes (SPEC section 12): batches of codes made from a license template, and
//! redeeming a code, which makes the template's license for the redeemer's licensee.

use super::Engine;
use crate::admin::{LicenseKeyRequest, NewActivationBatch, NewLicense, MAX_ACTIVATION_CODES, MAX_USES_PER_CODE};
use crate::decide::Idempotency;
use crate::directory::{Directory, DirectoryEvent};
use crate::error::{AdminError, RedeemError};
use crate::events::Actor;
use crate::ids::{sha256, ActivationBatchId, ConsumerId, LicenseId, LicenseeId};
use crate::model::activation::{canonical_code, spell_code, CODE_SYMBOLS};
use crate::model::{ActivationBatch, ActivationCode, License, LicenseTemplate, Redemption};
use crate::time::Timestamp;
use std::collections::BTreeMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Failed redemptions a consumer may make in a [`FAILURE_WINDOW_MS`]; the next are refused.
pub const MAX_FAILED_REDEMPTIONS: u32 = 10;

/// The window failed redemptions are counted in.
pub const FAILURE_WINDOW_MS: u64 = 60_000;

/// The longest `license_duration_s`: a hundred years.
const MAX_LICENSE_DURATION_S: u64 = 100 * 365 * 24 * 3_600;

/// The license a redemption answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Redeemed {
    /// The license, as it is now.
    pub license: Arc<License>,
    /// Whether this redemption made it (`false`: the same consumer redeemed the code before).
    pub created: bool,
}

/// The license request a template makes for `licensee` at `at`.
fn license_request(template: &LicenseTemplate, licensee: LicenseeId, at: Timestamp) -> NewLicense {
    NewLicense {
        licensee,
        product: template.product.clone(),
        tier: template.tier.clone(),
        credit: template.credit,
        valid_from: Some(at),
        valid_until: template.valid_until(at),
        license_key: LicenseKeyRequest::None,
        revokes_sibling_keys: false,
        properties: BTreeMap::new(),
        model: template.model.clone(),
        entitlement: None,
    }
}

/// The licensee a redemption by `consumer` is for: `asked`, which must be one of the consumer's,
/// or its only one.
fn licensee_for(dir: &Directory, consumer: ConsumerId, asked: Option<LicenseeId>) -> Result<LicenseeId, AdminError> {
    let consumer = dir.consumer(consumer).ok_or_else(|| AdminError::NotFound(format!("consumer {consumer}")))?;
    match (asked, consumer.licensees.as_slice()) {
        (Some(licensee), theirs) if theirs.contains(&licensee) => Ok(licensee),
        (Some(licensee), _) => Err(AdminError::NotFound(format!("licensee {licensee}"))),
        (None, [only]) => Ok(*only),
        (None, _) => Err(AdminError::Invalid("the consumer has several licensees: say which in \"licensee\"".into())),
    }
}

/// How a redemption stopped short of making a license.
enum Unredeemed {
    /// The same consumer redeemed the code before and got this license.
    Earlier(LicenseId),
    /// It was refused.
    Refused(RedeemError),
}

impl From<AdminError> for Unredeemed {
    fn from(e: AdminError) -> Self {
        Unredeemed::Refused(e.into())
    }
}

impl From<RedeemError> for Unredeemed {
    fn from(e: RedeemError) -> Self {
        Unredeemed::Refused(e)
    }
}

impl Engine {
    /// Makes a batch of activation codes; the codes are returned only here (only their digests
    /// are kept), derived from the key of the request `once`, when given, so that its retry
    /// answers the same codes.
    pub async fn create_activation_codes(
        &self,
        new: NewActivationBatch,
        once: Option<&Idempotency>,
    ) -> Result<(ActivationBatch, Vec<String>), AdminError> {
        if !(1..=MAX_ACTIVATION_CODES).contains(&new.count) {
            return Err(AdminError::Invalid(format!("count must be 1 to {MAX_ACTIVATION_CODES}")));
        }
        if !(1..=MAX_USES_PER_CODE).contains(&new.uses_per_code) {
            return Err(AdminError::Invalid(format!("uses_per_code must be 1 to {MAX_USES_PER_CODE}")));
        }
        if new.template.license_duration_s.is_some_and(|s| !(1..=MAX_LICENSE_DURATION_S).contains(&s)) {
            return Err(AdminError::Invalid(format!("license_duration_s must be 1 to {MAX_LICENSE_DURATION_S}")));
        }
        let now = self.now();
        if new.expires_at.is_some_and(|at| at <= now) {
            return Err(AdminError::Invalid("expires_at must be in the future".into()));
        }
        let ids = self.ids_for(once);
        let id = ActivationBatchId(ids.uuid());
        let codes: Vec<String> = (0..new.count)
            .map(|_| {
                let mut random = [0u8; CODE_SYMBOLS];
                ids.fill(&mut random);
                spell_code(&random)
            })
            .collect();
        let digest = |code: &String| sha256(canonical_code(code).unwrap_or_default().as_bytes());
        let mut batch = ActivationBatch {
            id,
            template: new.template,
            uses_per_code: new.uses_per_code,
            expires_at: new.expires_at,
            created_at: now,
            codes: codes.iter().map(|c| ActivationCode { code_sha256: digest(c), redemptions: Vec::new() }).collect(),
        };
        self.record_directory(|dir| {
            if let Some(created) = dir.activation_batch(id) {
                batch = created.clone();
            } else {
                // The template must make a license today (a product and tier that exist, a
                // credit, a valid model and period).
                let placeholder = LicenseeId(uuid::Uuid::nil());
                self.terms_of(license_request(&batch.template, placeholder, now), dir, &*ids)?;
            }
            Ok(DirectoryEvent::ActivationBatch(batch.clone()))
        })
        .await?;
        Ok((batch, codes))
    }

    /// Redeems activation code `code` for `consumer`: makes the batch's license for `licensee`
    /// (one of the consumer's; needed when it has several). The same consumer redeeming the same
    /// code again gets the same license. A consumer that failed [`MAX_FAILED_REDEMPTIONS`] times
    /// in the last window is refused until the window ends, so codes cannot be guessed.
    pub async fn redeem_activation_code(
        &self,
        code: &str,
        consumer: ConsumerId,
        licensee: Option<LicenseeId>,
    ) -> Result<Redeemed, RedeemError> {
        let now = self.now();
        let failures = || self.inner.redemption_failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(retry_after_ms) = failures().refused_for(&consumer, now) {
            return Err(RedeemError::TooManyFailures { retry_after_ms });
        }
        let redeemed = self.redeem(code, consumer, licensee, now).await;
        if redeemed.as_ref().is_err_and(RedeemError::counts_as_failure) {
            failures().record(consumer, now);
        }
        redeemed
    }

    async fn redeem(
        &self,
        code: &str,
        consumer: ConsumerId,
        licensee: Option<LicenseeId>,
        now: Timestamp,
    ) -> Result<Redeemed, RedeemError> {
        let digest = canonical_code(code).map(|c| sha256(c.as_bytes())).ok_or(RedeemError::CodeNotFound)?;
        let mut made = None;
        let by_consumer = self.acting_as(Actor::consumer(consumer));
        let recorded = by_consumer.record_directory_or(|dir| {
            let (batch, place) = dir.activation_code_by_hash(&digest).ok_or(RedeemError::CodeNotFound)?;
            let code = &batch.codes[place as usize];
            if !bool::from(code.code_sha256.ct_eq(&digest)) {
                return Err(RedeemError::CodeNotFound.into());
            }
            if let Some(earlier) = code.redemptions.iter().find(|r| r.consumer == consumer) {
                return Err(Unredeemed::Earlier(earlier.license));
            }
            if batch.expires_at.is_some_and(|at| at <= now) {
                return Err(RedeemError::CodeExpired.into());
            }
            if code.redemptions.len() >= batch.uses_per_code as usize {
                return Err(RedeemError::CodeUsed.into());
            }
            let licensee = licensee_for(dir, consumer, licensee)?;
            if batch.template.valid_until(now).is_some_and(|until| until <= now) {
                return Err(RedeemError::CodeExpired.into());
            }
            let terms = self.terms_of(license_request(&batch.template, licensee, now), dir, &*self.inner.shared.ids)?;
            let license = Arc::new(terms);
            made = Some(Arc::clone(&license));
            let redemption = Redemption { consumer, license: license.id, at: now };
            Ok(DirectoryEvent::ActivationCodeRedeemed { batch: batch.id, code: place, redemption, license })
        });
        match recorded.await {
            Ok(()) => Ok(Redeemed { license: made.expect("a recorded redemption made its license"), created: true }),
            // Its license was deleted since: the code's use is spent.
            Err(Unredeemed::Earlier(id)) => {
                self.license(id).map(|license| Redeemed { license, created: false }).ok_or(RedeemError::CodeUsed)
            }
            Err(Unredeemed::Refused(e)) => Err(e),
        }
    }
}
