//! The invariants of one license's state (SPEC section 2), checked where the state changes.
//!
//! The rules in [`super::rules`] only ever produce events that keep these; a broken one is a
//! bug, never a client's doing, and the license it is found in stops answering rather than grant
//! past its seats or credit (see the license actor). Two levels:
//! - [`allotment_check`], after every applied change, always: a change never raises the seats
//!   in use above an enforced seat license's seats, nor the credit in use above an enforced
//!   credit. It costs two counts before and after. (A change of terms may leave a license above
//!   its new limits; that is allowed, and only a change that raises use is refused.)
//! - [`LicenseState::check_consistency`], after every change under debug assertions (the test
//!   command's `checked` profile) and on every license recovery rebuilds: the lease table, the
//!   expiry queue, the sessions, the per-consumer counts, the seat accounting and the
//!   preallocated credit all agree.

use super::state::LicenseState;
use crate::ids::LicenseId;
use crate::model::Dimension;

/// A license state that breaks an invariant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("license {license} breaks an invariant: {what}")]
pub struct Violation {
    /// The license.
    pub license: LicenseId,
    /// What is broken, in words.
    pub what: String,
}

/// What a change may raise and an enforced license bounds: seats taken, and credit used (uses
/// or seconds consumed and set aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allotment {
    seats: u64,
    credit: u64,
}

impl Allotment {
    /// What `state` has allotted now.
    pub fn of(state: &LicenseState) -> Self {
        Allotment { seats: state.seats_in_use(), credit: state.consumed().saturating_add(state.preallocated()) }
    }
}

/// Whether the change from `before` to `state` kept the license's limits: seat use and credit
/// use of an enforced license rise only up to its quantity.
pub fn allotment_check(before: Allotment, state: &LicenseState) -> Result<(), Violation> {
    let credit = state.license().credit;
    if !credit.is_enforced() {
        return Ok(());
    }
    let after = Allotment::of(state);
    let violation = |what: String| Err(Violation { license: state.license().id, what });
    match credit.dimension {
        Dimension::Seats if after.seats > before.seats && after.seats > credit.qty => {
            violation(format!("{} seats in use on a license of {} seats", after.seats, credit.qty))
        }
        Dimension::UseCount | Dimension::UseTime if after.credit > before.credit && after.credit > credit.qty => {
            violation(format!("{} of a credit of {} used or set aside", after.credit, credit.qty))
        }
        _ => Ok(()),
    }
}
