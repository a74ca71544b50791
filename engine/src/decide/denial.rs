//! Refusals: the SPEC's error codes, and the [`Decision`] that carries a grant or a denial.
//!
//! A refusal is an answer, not a failure: decisions return `Decision::Denied`, and `Err` is kept
//! for broken infrastructure (a full mailbox, a failed disk).

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// The error codes of the 10Duke APIs (SPEC section 3), spelled as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ErrorCode {
    /// The caller may not do this (unknown consumer, operation the model forbids).
    NotAuthorized,
    /// No license for the item among those the consumer may use.
    NoLicenseFound,
    /// The license's validity has ended.
    LicenseExpired,
    /// The license is deactivated.
    LicenseNotActive,
    /// The license's validity has not started.
    LicenseValidityNotStarted,
    /// All leases or credits of the license are in use.
    LicenseQuotaExceeded,
    /// All seats (sessions) are taken.
    MaxConcurrentSessionsExceed,
    /// The use-count credit is spent.
    MaxUseCountExceed,
    /// The use-time credit is spent.
    MaxAggregateUseTimeExceed,
    /// The consumer holds as many leases as it may.
    ConsumptionLimitExceed,
    /// Lease chaining wants the current lease id, or the claims differ from the lease's.
    LeaseIdNotMatching,
    /// No live lease has this id.
    LeaseIdNotFound,
    /// The request lacks a claim the license model anchors sessions on.
    LicenseAnchorMissing,
    /// Named seats: the consumer has no seat assignment.
    LicenseAssignmentMissing,
    /// The free seats are reserved for other consumers.
    LicenseAssignmentDenied,
    /// The client's IP address is outside the allowed ranges.
    ClientIpAddressBlocked,
    /// The client's version is outside the allowed range.
    UnallowedClientVersion,
    /// The license was revoked.
    LicenseRevoked,
    /// A heartbeat came before `hbnbf`.
    HeartbeatTooEarly,
    /// The server is at a bound and sheds load; retry later.
    Overloaded,
    /// The client's address is in a country the license may not be used from.
    ClientGeolocationBlocked,
    /// The license allows or blocks countries and the client's country cannot be told.
    UnresolvedGeolocation,
}

impl ErrorCode {
    /// Every code, in SPEC order.
    pub const ALL: [ErrorCode; 22] = [
        ErrorCode::NotAuthorized,
        ErrorCode::NoLicenseFound,
        ErrorCode::LicenseExpired,
        ErrorCode::LicenseNotActive,
        ErrorCode::LicenseValidityNotStarted,
        ErrorCode::LicenseQuotaExceeded,
        ErrorCode::MaxConcurrentSessionsExceed,
        ErrorCode::MaxUseCountExceed,
        ErrorCode::MaxAggregateUseTimeExceed,
        ErrorCode::ConsumptionLimitExceed,
        ErrorCode::LeaseIdNotMatching,
        ErrorCode::LeaseIdNotFound,
        ErrorCode::LicenseAnchorMissing,
        ErrorCode::LicenseAssignmentMissing,
        ErrorCode::LicenseAssignmentDenied,
        ErrorCode::ClientIpAddressBlocked,
        ErrorCode::UnallowedClientVersion,
        ErrorCode::LicenseRevoked,
        ErrorCode::HeartbeatTooEarly,
        ErrorCode::Overloaded,
        ErrorCode::ClientGeolocationBlocked,
        ErrorCode::UnresolvedGeolocation,
    ];

    /// The code as the APIs spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotAuthorized => "notAuthorized",
            ErrorCode::NoLicenseFound => "noLicenseFound",
            ErrorCode::LicenseExpired => "licenseExpired",
            ErrorCode::LicenseNotActive => "licenseNotActive",
            ErrorCode::LicenseValidityNotStarted => "licenseValidityNotStarted",
            ErrorCode::LicenseQuotaExceeded => "licenseQuotaExceeded",
            ErrorCode::MaxConcurrentSessionsExceed => "maxConcurrentSessionsExceed",
            ErrorCode::MaxUseCountExceed => "maxUseCountExceed",
            ErrorCode::MaxAggregateUseTimeExceed => "maxAggregateUseTimeExceed",
            ErrorCode::ConsumptionLimitExceed => "consumptionLimitExceed",
            ErrorCode::LeaseIdNotMatching => "leaseIdNotMatching",
            ErrorCode::LeaseIdNotFound => "leaseIdNotFound",
            ErrorCode::LicenseAnchorMissing => "licenseAnchorMissing",
            ErrorCode::LicenseAssignmentMissing => "licenseAssignmentMissing",
            ErrorCode::LicenseAssignmentDenied => "licenseAssignmentDenied",
            ErrorCode::ClientIpAddressBlocked => "clientIpAddressBlocked",
            ErrorCode::UnallowedClientVersion => "unallowedClientVersion",
            ErrorCode::LicenseRevoked => "licenseRevoked",
            ErrorCode::HeartbeatTooEarly => "heartbeatTooEarly",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::ClientGeolocationBlocked => "clientGeolocationBlocked",
            ErrorCode::UnresolvedGeolocation => "unresolvedGeolocation",
        }
    }

    /// How much a denial with this code tells the client when several licenses were tried: the
    /// most specific one is answered. A license that exists but is full says more than one whose
    /// rules the request fails, which says more than one that is not in force, which says more
    /// than finding none.
    pub fn specificity(self) -> u8 {
        match self {
            ErrorCode::NoLicenseFound | ErrorCode::NotAuthorized => 0,
            ErrorCode::LicenseExpired
            | ErrorCode::LicenseValidityNotStarted
            | ErrorCode::LicenseNotActive
            | ErrorCode::LicenseRevoked => 1,
            ErrorCode::LicenseAnchorMissing
            | ErrorCode::UnallowedClientVersion
            | ErrorCode::ClientIpAddressBlocked
            | ErrorCode::ClientGeolocationBlocked
            | ErrorCode::UnresolvedGeolocation
            | ErrorCode::LicenseAssignmentMissing => 2,
            ErrorCode::LeaseIdNotMatching | ErrorCode::LeaseIdNotFound | ErrorCode::HeartbeatTooEarly => 3,
            ErrorCode::LicenseAssignmentDenied
            | ErrorCode::ConsumptionLimitExceed
            | ErrorCode::LicenseQuotaExceeded
            | ErrorCode::MaxConcurrentSessionsExceed
            | ErrorCode::MaxUseCountExceed
            | ErrorCode::MaxAggregateUseTimeExceed => 4,
            ErrorCode::Overloaded => 5,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal with its code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    /// The SPEC's code.
    pub code: ErrorCode,
    /// What happened, in words.
    pub message: Cow<'static, str>,
}

impl Denial {
    /// A denial with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Denial { code, message: message.into() }
    }

    /// Whether this denial says more than `other` (of two equally specific, the first is kept).
    pub fn more_specific_than(&self, other: &Denial) -> bool {
        self.code.specificity() > other.code.specificity()
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// The answer to a client operation: granted with `T`, or denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<T> {
    /// The operation succeeded.
    Granted(T),
    /// The operation was refused.
    Denied(Denial),
}

impl<T> Decision<T> {
    /// The grant, if any.
    pub fn granted(self) -> Option<T> {
        match self {
            Decision::Granted(t) => Some(t),
            Decision::Denied(_) => None,
        }
    }

    /// The denial, if any.
    pub fn denial(&self) -> Option<&Denial> {
        match self {
            Decision::Granted(_) => None,
            Decision::Denied(d) => Some(d),
        }
    }

    /// The denial's code, if denied.
    pub fn code(&self) -> Option<ErrorCode> {
        self.denial().map(|d| d.code)
    }

    /// Whether it was granted.
    pub fn is_granted(&self) -> bool {
        matches!(self, Decision::Granted(_))
    }

    /// Applies `f` to the grant.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Decision<U> {
        match self {
            Decision::Granted(t) => Decision::Granted(f(t)),
            Decision::Denied(d) => Decision::Denied(d),
        }
    }
}

impl<T> From<Result<T, Denial>> for Decision<T> {
    fn from(r: Result<T, Denial>) -> Self {
        match r {
            Ok(t) => Decision::Granted(t),
            Err(d) => Decision::Denied(d),
        }
    }
}
