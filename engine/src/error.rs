//! Failures of the engine's infrastructure and refusals of administrative requests.
//!
//! Client refusals are not here: they are [`crate::Decision::Denied`] values.

use crate::decide::Violation;
use crate::journal::JournalError;
use crate::tokens::signer::SignError;

/// The engine could not answer: overload, a failed journal, or shutdown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// A bounded queue on the path is full; retry later (the `overloaded` code).
    #[error("overloaded: a bounded queue is full, retry later")]
    Overloaded,
    /// The change could not be made durable, so it was not acknowledged.
    #[error(transparent)]
    Journal(JournalError),
    /// Signing the token failed.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The engine is shutting down.
    #[error("the engine is stopped")]
    Stopped,
    /// The license broke an invariant (a bug): it answers nothing until the server restarts
    /// from its journal, which never recorded the breaking change.
    #[error("{0}; the license is halted")]
    Halted(Violation),
    /// The idempotency key was used within the last day for a different request.
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    /// A request with the same idempotency key is being answered now; retry once it is.
    #[error("a request with this Idempotency-Key is in progress; retry when it has been answered")]
    IdempotencyKeyInFlight,
}

impl From<JournalError> for EngineError {
    fn from(e: JournalError) -> Self {
        match e {
            // A journal that cannot keep up is load to shed, answered like a full mailbox.
            JournalError::Overloaded(_) => EngineError::Overloaded,
            other => EngineError::Journal(other),
        }
    }
}

/// Why an administrative request was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// Something named in the request does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request is malformed or contradicts itself.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The request conflicts with the current state (a name taken, no free seat to reserve).
    #[error("conflict: {0}")]
    Conflict(String),
    /// What the request names is past its expiry (an invitation).
    #[error("expired: {0}")]
    Expired(String),
    /// The engine could not carry it out.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Why an activation code was not redeemed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    /// No code of any batch is this one.
    #[error("no activation code matches")]
    CodeNotFound,
    /// The code has no use left (or the license it made for this consumer was deleted).
    #[error("this activation code is used up")]
    CodeUsed,
    /// The code's batch expired, or the licenses it makes would already have ended.
    #[error("this activation code has expired")]
    CodeExpired,
    /// The consumer failed too often in the last minute; it may try again after `retry_after_ms`.
    #[error("too many failed redemptions; retry later")]
    TooManyFailures {
        /// Until the consumer may try again.
        retry_after_ms: u64,
    },
    /// Something else in the request was wrong (the licensee), or the engine could not carry
    /// it out.
    #[error(transparent)]
    Refused(#[from] AdminError),
}

impl RedeemError {
    /// Whether the failure counts towards the consumer's limit: every refusal of what the
    /// client sent, not the server's own trouble.
    pub fn counts_as_failure(&self) -> bool {
        !matches!(self, RedeemError::TooManyFailures { .. } | RedeemError::Refused(AdminError::Engine(_)))
    }
}

impl From<JournalError> for RedeemError {
    fn from(e: JournalError) -> Self {
        RedeemError::Refused(e.into())
    }
}

impl From<JournalError> for AdminError {
    fn from(e: JournalError) -> Self {
        AdminError::Engine(EngineError::from(e))
    }
}

/// An error and its causes, as one line (`outer: inner: innermost`): what a log line or an
/// answer needs when the outer message alone (hyper's "client error (Connect)") says too little.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}
