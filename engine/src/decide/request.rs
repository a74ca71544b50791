//! What clients ask of a license: consume (or check), renew, release. Transports build these
//! from the wire; the embedding API takes them directly.

use super::state::Idempotency;
use crate::ids::{ConsumerId, LeaseId, LicenseId, LicenseeId};
use crate::model::{Anchors, LeaseMode};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Limits which licenses a consume may use (`licenseId`, `ownerOrganizationId`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LicenseFilters {
    /// Only this license.
    pub license: Option<LicenseId>,
    /// Only licenses of this licensee (organization or person).
    pub licensee: Option<LicenseeId>,
    /// Only licenses of this entitlement (its id as sent: one that is not an entitlement's id
    /// finds no license).
    pub entitlement: Option<String>,
}

/// A checkout (or, with `lease_id`, a renewal through the consume call).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumeRequest {
    /// Who consumes.
    pub consumer: ConsumerId,
    /// The product or feature asked for.
    pub item: String,
    /// Client claims: hardware, process, version, others.
    pub anchors: Anchors,
    /// The client's IP address, when the transport knows it.
    pub client_ip: Option<IpAddr>,
    /// The client's country (ISO 3166-1 alpha-2), told from its address by the engine's
    /// geolocation, when it has one and the address is in its database.
    pub client_country: Option<String>,
    /// Online or offline.
    pub mode: LeaseMode,
    /// Requested lease duration; the model's lease time and the license's end cap it.
    pub duration_s: Option<u64>,
    /// Requested quantity: uses for use-count licenses, seconds for use-time licenses.
    pub qty: Option<u64>,
    /// The session's current lease id (needed under lease chaining).
    pub lease_id: Option<LeaseId>,
    /// Which licenses may be used.
    pub filters: LicenseFilters,
    /// Metered use: usage is recorded but never limited.
    pub metered: bool,
    /// The client's idempotency key: a retry within a day gets the same lease, charged once.
    pub idempotency: Option<Idempotency>,
}

impl ConsumeRequest {
    /// A plain online checkout of `item` by `consumer`.
    pub fn new(consumer: ConsumerId, item: impl Into<String>) -> Self {
        ConsumeRequest {
            consumer,
            item: item.into(),
            anchors: Anchors::default(),
            client_ip: None,
            client_country: None,
            mode: LeaseMode::Online,
            duration_s: None,
            qty: None,
            lease_id: None,
            filters: LicenseFilters::default(),
            metered: false,
            idempotency: None,
        }
    }

    /// The same request with hardware id `hw`.
    pub fn on_hardware(mut self, hw: impl Into<String>) -> Self {
        self.anchors.hw = Some(hw.into());
        self
    }
}

/// How a renewal or release reports the quantity used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum UsedQty {
    /// Nothing reported: the server's own measure is used (elapsed seconds for use time, the
    /// preallocation for use count).
    #[default]
    Unreported,
    /// The total used since the checkout.
    Absolute(u64),
    /// Used since the previous report.
    Incremental(u64),
}

/// A heartbeat: extend a lease from now and rotate its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewRequest {
    /// Who renews; must hold the lease.
    pub consumer: ConsumerId,
    /// The current lease id.
    pub lease_id: LeaseId,
    /// Usage so far.
    pub used: UsedQty,
    /// Client claims; those given must equal the checkout's.
    pub anchors: Anchors,
    /// Requested new duration.
    pub duration_s: Option<u64>,
    /// More uses to set aside (use-count licenses).
    pub extra_qty: Option<u64>,
}

impl RenewRequest {
    /// A renewal of `lease_id` by `consumer` that reports nothing.
    pub fn new(consumer: ConsumerId, lease_id: LeaseId) -> Self {
        RenewRequest {
            consumer,
            lease_id,
            used: UsedQty::Unreported,
            anchors: Anchors::default(),
            duration_s: None,
            extra_qty: None,
        }
    }
}

/// Who releases a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Releaser {
    /// The consumer holding it, subject to the model's `allow_release`.
    Consumer(ConsumerId),
    /// An administrator forcing it.
    Admin,
}

/// Ends a lease, frees its seat and settles its usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    /// Who releases.
    pub by: Releaser,
    /// The lease.
    pub lease_id: LeaseId,
    /// Final usage.
    pub used: UsedQty,
}

impl ReleaseRequest {
    /// A release of `lease_id` by `consumer` that reports nothing.
    pub fn new(consumer: ConsumerId, lease_id: LeaseId) -> Self {
        ReleaseRequest { by: Releaser::Consumer(consumer), lease_id, used: UsedQty::Unreported }
    }
}
