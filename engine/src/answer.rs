//! What the engine answers to a granted operation.

use crate::ids::{LeaseId, LicenseId};
use crate::model::{Lease, License};
use serde::Serialize;
use std::sync::Arc;

/// A granted consume, check or renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// The lease (for a check: the lease a consume would have been granted).
    pub lease: Lease,
    /// The license's terms at the time of the grant.
    pub license: Arc<License>,
    /// The lease id this grant rotated out (`oldLeaseId`).
    pub replaced: Option<LeaseId>,
    /// Credit left after the grant; `None` when metered.
    pub remaining_qty: Option<u64>,
}

/// A completed release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Released {
    /// The lease that ended.
    pub lease_id: LeaseId,
    /// Its license.
    pub license: LicenseId,
    /// Usage charged to the credit.
    pub used_qty: u64,
    /// Credit left; `None` when metered.
    pub remaining_qty: Option<u64>,
}
