//! # leasehold-engine
//!
//! Leasehold's lease engine: the licensing domain as plain data and pure functions, wrapped by
//! actix actors. It decides; `leasehold-persistence` remembers and `leasehold-transports`
//! speaks the wire.
//!
//! The path of a checkout through this crate:
//!
//! 1. [`Engine::consume`] asks the [`directory::Directory`] which licenses the consumer may use
//!    for the item, in the order of [`select::preference`].
//! 2. The [`actors::Router`] finds (or starts) each license's [`actors::LicenseActor`] through a
//!    dashmap and hands it the request, refusing with `overloaded` when its mailbox is full.
//! 3. The actor decides with [`decide::decide_consume`] (pure: state, request, time in; event or
//!    denial out), applies the event to its [`decide::LicenseState`], appends it to the
//!    [`journal::Journal`] and answers once the journal says it is durable.
//! 4. Transports turn the decision into a token with a [`tokens::TokenIssuer`] (claims of the
//!    client's dialect, signed by a [`signer::TokenSigner`], encrypted when asked): the engine
//!    itself never signs.
//!
//! Time ([`time::Clock`]) and ids ([`ids::IdSource`]) are injected, so the whole engine runs
//! deterministically in tests.

pub mod actors;
pub mod admin;
pub mod answer;
pub mod compact;
pub mod concurrency;
pub mod decide;
pub mod directory;
pub mod engine;
pub mod error;
pub mod events;
pub mod hashing;
pub mod ids;
pub mod interning;
pub mod journal;
pub mod metrics;
pub mod model;
pub mod rate_limit;
pub mod replay;
pub mod select;
pub mod shapes;
pub mod stored_answers;
pub mod time;
pub mod tokens;
pub mod usage;
pub mod webhooks;

pub use admin::{
    ConsumerPatch, EntitlementPatch, LicenseKeyRequest, LicensePatch, LicenseePatch, NewActivationBatch, NewConsumer,
    NewCredential, NewEntitlement, NewGroup, NewLicense, NewLicensee, NewProduct, ProductPatch,
};
pub use answer::{Grant, Released};
pub use decide::{
    ConsumeRequest, Decision, Denial, ErrorCode, LicenseFilters, ReleaseRequest, Releaser, RenewRequest, Usage, UsedQty,
};
pub use engine::{Answering, Authentication, Engine, EngineBuilder};
pub use error::{AdminError, EngineError, RedeemError};
pub use ids::{
    ActivationBatchId, ClientId, ConsumerId, CredentialId, EntitlementId, GroupId, InvitationId, LeaseId, LicenseId,
    LicenseeId, ProductId, SignUpId, WebhookId,
};
pub use time::{Clock, ManualClock, SystemClock, Timestamp};
pub use tokens::{claims, signer};
