//! Decisions: the pure functions that grant or deny, the state they decide on, and the events
//! that change it.

pub mod denial;
pub mod invariants;
pub mod request;
pub mod rules;
pub mod state;

pub use denial::{Decision, Denial, ErrorCode};
pub use invariants::Violation;
pub use request::{ConsumeRequest, LicenseFilters, ReleaseRequest, Releaser, RenewRequest, UsedQty};
pub use rules::{check_in_force, decide_assign, decide_consume, decide_release, decide_renew};
pub use state::{
    Idempotency, IdempotentGrant, LicenseEvent, LicenseState, MachineSeen, Usage, IDEMPOTENCY_WINDOW_S,
    MAX_IDEMPOTENT_GRANTS,
};
