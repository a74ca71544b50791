//! Messages: what a frame's payload says. A client sends [`Request`]s, the server answers each
//! with one [`Response`] carrying the same request id; answers may come back in any order.
//!
//! Payloads are bincode 2 (serde, standard configuration: little-endian, variable-length
//! integers; an enum is its variant's index, then its fields in order). These types are the wire
//! format of protocol version [`PROTOCOL_VERSION`]: fields and variants are only ever appended,
//! and any other change raises the version. Error codes travel as the SPEC's strings
//! (`licenseQuotaExceeded`), the same as the HTTP APIs', so a new code never breaks an old client.
//!
//! The first request on a connection must be [`Request::Authenticate`]; a connection then acts as
//! the consumer (API key) or the license (license key) it authenticated as, and each operation's
//! token comes in the connection's [`Dialect`] unless the request says otherwise.

use bytes::{BufMut, BytesMut};
use leasehold_engine::{ConsumerId, ErrorCode, LeaseId, LicenseId, LicenseeId};
use serde::{Deserialize, Serialize};

/// The protocol version this build speaks (the frame header's version byte).
pub const PROTOCOL_VERSION: u8 = 1;

/// Most bytes a decoded message may claim for its strings and lists (bincode refuses to
/// allocate beyond it, whatever a length field says).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Most characters of an item name, an anchor value or an entitlement id.
pub const MAX_VALUE_CHARS: usize = 1024;

/// Most extra client claims per request.
pub const MAX_EXTRA_CLAIMS: usize = 32;

/// Who the connection acts for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Credential {
    /// A consumer's API key (the `Authorization: Bearer` key of the HTTP APIs).
    ApiKey(String),
    /// A license key: operations use that license (the Scale API's `/{licenseKey}` calls).
    LicenseKey(String),
}

/// Which token claims an answer carries (SPEC section 4): the engine's token dialects, encoded
/// on the wire by their order (Enterprise 0, Scale 1).
pub use leasehold_engine::tokens::Dialect;

/// Whether and how an answer is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TokenChoice {
    /// A token in the connection's dialect.
    #[default]
    ConnectionDialect,
    /// No token: the decision's fields only (cheapest; nothing to show a third party).
    Omit,
    /// An Enterprise token.
    Enterprise,
    /// A Scale token.
    Scale,
}

impl TokenChoice {
    /// The dialect to sign in, `None` for no token.
    pub fn dialect(self, connection: Dialect) -> Option<Dialect> {
        match self {
            TokenChoice::ConnectionDialect => Some(connection),
            TokenChoice::Omit => None,
            TokenChoice::Enterprise => Some(Dialect::Enterprise),
            TokenChoice::Scale => Some(Dialect::Scale),
        }
    }
}

/// How tokens of an answer are made.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TokenOptions {
    /// Signed, in which dialect, or not at all.
    pub choice: TokenChoice,
    /// The client's RSA public key (base64url DER SubjectPublicKeyInfo, or PEM): the token
    /// comes back as a JWE (RSA-OAEP, A256CBC-HS512) wrapping the signed JWT.
    pub public_key: Option<String>,
}

/// The first request of every connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authenticate {
    /// Who the connection acts for.
    pub credential: Credential,
    /// The connection's token dialect.
    pub dialect: Dialect,
}

/// Online (`cache`) or offline (`checkout`) use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Mode {
    /// Short leases, renewed often.
    #[default]
    Online,
    /// Long leases for a client that may stay offline.
    Offline,
}

/// The claims a client makes about itself (SPEC section 3's anchors).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Anchors {
    /// Hardware id.
    pub hw: Option<String>,
    /// Hardware's friendly name.
    pub hw_name: Option<String>,
    /// Process id.
    pub process: Option<String>,
    /// Application name.
    pub process_name: Option<String>,
    /// Client version.
    pub version: Option<String>,
    /// Other client claims (`cliInstallationId`, ...), echoed in Scale tokens.
    pub extra: Vec<(String, String)>,
}

/// Limits on which licenses a consume may use.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Filters {
    /// Only this license (`licenseId`).
    pub license: Option<LicenseId>,
    /// Only licenses of this licensee (`ownerOrganizationId`, `ownerUserId`).
    pub licensee: Option<LicenseeId>,
    /// Only licenses of this entitlement (`entitlementId`).
    pub entitlement: Option<String>,
}

/// A checkout, a check, or the start of metered use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consume {
    /// The product or feature.
    pub item: String,
    /// The client's claims.
    pub anchors: Anchors,
    /// Online or offline.
    pub mode: Mode,
    /// Requested lease duration.
    pub duration_s: Option<u64>,
    /// Requested quantity: uses (use count) or seconds (use time).
    pub qty: Option<u64>,
    /// The session's current lease (needed under lease chaining).
    pub lease_id: Option<LeaseId>,
    /// Which licenses may be used.
    pub filters: Filters,
    /// How the answer is signed.
    pub token: TokenOptions,
}

impl Consume {
    /// An online consume of `item` with no anchors, signed in the connection's dialect.
    pub fn new(item: impl Into<String>) -> Self {
        Consume {
            item: item.into(),
            anchors: Anchors::default(),
            mode: Mode::Online,
            duration_s: None,
            qty: None,
            lease_id: None,
            filters: Filters::default(),
            token: TokenOptions::default(),
        }
    }

    /// On hardware `hw`.
    pub fn hw(mut self, hw: impl Into<String>) -> Self {
        self.anchors.hw = Some(hw.into());
        self
    }

    /// As client version `version`.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.anchors.version = Some(version.into());
        self
    }

    /// With the token chosen by `choice`.
    pub fn token(mut self, choice: TokenChoice) -> Self {
        self.token.choice = choice;
        self
    }
}

/// How a renewal or release reports the quantity used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Used {
    /// Nothing reported (the server measures).
    #[default]
    Unreported,
    /// Total used since the checkout.
    Absolute(u64),
    /// Used since the last report.
    Incremental(u64),
}

/// A heartbeat: extends a lease from now under a new id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renew {
    /// The current lease id.
    pub lease_id: LeaseId,
    /// Usage so far.
    pub used: Used,
    /// The client's claims (those given must equal the checkout's).
    pub anchors: Anchors,
    /// Requested new duration.
    pub duration_s: Option<u64>,
    /// More uses to set aside (use-count licenses).
    pub extra_qty: Option<u64>,
    /// How the answer is signed.
    pub token: TokenOptions,
}

impl Renew {
    /// A renewal of `lease_id` that reports nothing, signed in the connection's dialect.
    pub fn new(lease_id: LeaseId) -> Self {
        Renew {
            lease_id,
            used: Used::Unreported,
            anchors: Anchors::default(),
            duration_s: None,
            extra_qty: None,
            token: TokenOptions::default(),
        }
    }
}

/// Ends a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The lease.
    pub lease_id: LeaseId,
    /// Final usage.
    pub used: Used,
}

impl Release {
    /// A release of `lease_id` that reports nothing.
    pub fn new(lease_id: LeaseId) -> Self {
        Release { lease_id, used: Used::Unreported }
    }
}

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Must be first, and only once.
    Authenticate(Authenticate),
    /// Check out a lease.
    Consume(Consume),
    /// What a consume would answer, changing nothing (`doConsume=false`).
    Check(Consume),
    /// Heartbeat a lease.
    Renew(Renew),
    /// End a lease.
    Release(Release),
    /// Start metered use (a metered license: usage recorded, never limited).
    StartMetered(Consume),
    /// Heartbeat metered use.
    HeartbeatMetered(Renew),
    /// End metered use, reporting the final usage.
    EndMetered(Release),
    /// The public signing keys, to verify tokens with.
    Jwks,
    /// Check out a lease at most once: a retry with the same key and the same consume, on any
    /// connection of the same credential within a day, is answered with the first lease.
    ConsumeOnce(ConsumeOnce),
}

/// A consume that may be retried ([`Request::ConsumeOnce`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumeOnce {
    /// The client's idempotency key: 1 to 255 visible ASCII characters.
    pub idempotency_key: String,
    /// The consume.
    pub consume: Consume,
}

impl Request {
    /// The operation's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Authenticate(_) => "authenticate",
            Request::Consume(_) => "consume",
            Request::Check(_) => "check",
            Request::Renew(_) => "renew",
            Request::Release(_) => "release",
            Request::StartMetered(_) => "startMetered",
            Request::HeartbeatMetered(_) => "heartbeatMetered",
            Request::EndMetered(_) => "endMetered",
            Request::Jwks => "jwks",
            Request::ConsumeOnce(_) => "consumeOnce",
        }
    }
}

/// The answer to [`Request::Authenticate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authenticated {
    /// The consumer an API key names.
    pub consumer: Option<ConsumerId>,
    /// The license a license key names.
    pub license: Option<LicenseId>,
    /// The `iss` of the server's tokens.
    pub issuer: String,
}

/// A granted consume, check, renewal or metered call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Granted {
    /// The lease (for a check: the lease a consume would have been granted).
    pub lease_id: LeaseId,
    /// The lease id a renewal rotated out.
    pub old_lease_id: Option<LeaseId>,
    /// The license used.
    pub license: LicenseId,
    /// The item granted.
    pub item: String,
    /// When the lease ends unless renewed (seconds since the epoch).
    pub expires_at_s: i64,
    /// When the client should renew.
    pub refresh_at_s: i64,
    /// No heartbeat is accepted before this.
    pub heartbeat_not_before_s: i64,
    /// Quantity set aside for this lease.
    pub qty_prealloc: u64,
    /// Credit left after the grant; `None` when metered.
    pub remaining_qty: Option<u64>,
    /// The signed token (a JWE when a public key was sent), unless omitted.
    pub token: Option<String>,
}

/// A refused consume, check, renewal, release or metered call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denied {
    /// The SPEC's error code, as the HTTP APIs spell it (`licenseQuotaExceeded`).
    pub code: String,
    /// What happened, in words.
    pub message: String,
    /// The signed denial token, when the request asked for one (never for releases).
    pub token: Option<String>,
}

impl Denied {
    /// The code as the engine's enum, when this build knows it.
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == self.code)
    }
}

/// A completed release or end of metered use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Why a request (or, with request id 0, the whole connection) failed. Not a licensing answer:
/// the protocol was broken, or the server could not decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureCode {
    /// The bytes are not a frame (the connection closes).
    BadFrame,
    /// A frame over the server's limit (the connection closes).
    FrameTooLarge,
    /// A protocol version the server does not speak (the connection closes).
    UnsupportedVersion,
    /// The payload is not a request (the connection closes).
    BadPayload,
    /// The first request was not `Authenticate` (the connection closes).
    AuthenticationRequired,
    /// `Authenticate` sent twice.
    AlreadyAuthenticated,
    /// The API key or license key is unknown (the connection closes).
    BadCredentials,
    /// The request is well-formed but not valid (an empty item, a malformed public key, an
    /// operation a license key cannot do).
    BadRequest,
    /// A bounded queue on the path is full (the SPEC's `overloaded`); retry later.
    Overloaded,
    /// The server could not make the change durable or sign the token.
    Unavailable,
    /// No request for too long (the connection closes).
    IdleTimeout,
    /// The server is shutting down (the connection closes).
    ShuttingDown,
    /// The journal cannot write (the SPEC's `storageUnavailable`): no change can be made
    /// durable now; checks still work. Retry later or elsewhere.
    StorageUnavailable,
    /// The idempotency key was used within the last day with a different consume.
    IdempotencyKeyReused,
    /// A consume with the same idempotency key is being answered now; retry once it is.
    IdempotencyKeyInFlight,
    /// A plain-text client on a port that speaks TLS (the connection closes).
    TlsRequired,
}

/// A failure and its explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct Failure {
    /// What kind of failure.
    pub code: FailureCode,
    /// What happened, in words.
    pub message: String,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub fn new(code: FailureCode, message: impl Into<String>) -> Self {
        Failure { code, message: message.into() }
    }
}

/// What the server answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The connection is authenticated.
    Authenticated(Authenticated),
    /// Granted (consume, check, renew, metered start and heartbeat).
    Granted(Box<Granted>),
    /// Refused with one of the SPEC's error codes.
    Denied(Denied),
    /// A lease ended (release, end of metered use).
    Released(Released),
    /// The JWKS document, exactly as served at `/.well-known/jwks.json`.
    Jwks(String),
    /// The request (or the connection) failed.
    Failure(Failure),
}

/// Why a payload is not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// bincode could not read it.
    #[error("undecodable payload: {0}")]
    Decode(String),
    /// The message ended before the payload did.
    #[error("{0} bytes after the end of the message")]
    TrailingBytes(usize),
    /// bincode could not write it.
    #[error("unencodable message: {0}")]
    Encode(String),
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// The payload of `message`.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, MessageError> {
    bincode::serde::encode_to_vec(message, config()).map_err(|e| MessageError::Encode(e.to_string()))
}

/// Appends the payload of `message` to `dst`.
pub fn encode_into<T: Serialize>(message: &T, dst: &mut BytesMut) -> Result<(), MessageError> {
    bincode::serde::encode_into_std_write(message, &mut dst.writer(), config())
        .map(drop)
        .map_err(|e| MessageError::Encode(e.to_string()))
}

/// The message in `payload`, which must hold exactly one.
pub fn decode<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<T, MessageError> {
    let limited = config().with_limit::<MAX_MESSAGE_BYTES>();
    let (message, read) =
        bincode::serde::decode_from_slice(payload, limited).map_err(|e| MessageError::Decode(e.to_string()))?;
    match payload.len() - read {
        0 => Ok(message),
        extra => Err(MessageError::TrailingBytes(extra)),
    }
}

/// Why a request's values are refused before the engine sees them.
fn check_value(what: &str, value: &str) -> Result<(), Failure> {
    if value.chars().count() > MAX_VALUE_CHARS {
        return Err(Failure::new(
            FailureCode::BadRequest,
            format!("{what} is longer than {MAX_VALUE_CHARS} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Failure::new(FailureCode::BadRequest, format!("{what} contains control characters")));
    }
    Ok(())
}

impl Anchors {
    /// Checks lengths and characters (the values end up in tokens).
    pub fn validate(&self) -> Result<(), Failure> {
        let named = [
            ("hw", &self.hw),
            ("hw_name", &self.hw_name),
            ("process", &self.process),
            ("process_name", &self.process_name),
            ("version", &self.version),
        ];
        for (what, value) in named {
            if let Some(value) = value {
                check_value(what, value)?;
            }
        }
        if self.extra.len() > MAX_EXTRA_CLAIMS {
            return Err(Failure::new(FailureCode::BadRequest, format!("at most {MAX_EXTRA_CLAIMS} extra claims")));
        }
        for (name, value) in &self.extra {
            check_value("an extra claim's name", name)?;
            check_value(name, value)?;
        }
        Ok(())
    }
}

impl Consume {
    /// Checks the item, anchors and filters.
    pub fn validate(&self) -> Result<(), Failure> {
        if self.item.trim().is_empty() {
            return Err(Failure::new(FailureCode::BadRequest, "the item name is empty"));
        }
        check_value("the item name", &self.item)?;
        if let Some(entitlement) = &self.filters.entitlement {
            check_value("the entitlement id", entitlement)?;
        }
        self.anchors.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_request_round_trips() {
        let request = Request::Consume(Consume::new("ThreeDee").hw("machine-1").token(TokenChoice::Scale));
        assert_eq!(decode::<Request>(&encode(&request).unwrap()).unwrap(), request);
    }

    #[test]
    fn a_message_encoded_in_place_is_its_payload() {
        let response = Response::Denied(Denied { code: "x".into(), message: "y".into(), token: None });
        let mut buf = BytesMut::from(&b"before"[..]);
        encode_into(&response, &mut buf).unwrap();
        assert_eq!(&buf[..6], b"before");
        assert_eq!(buf[6..], encode(&response).unwrap());
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut payload = encode(&Request::Jwks).unwrap();
        payload.push(0);
        assert_eq!(decode::<Request>(&payload), Err(MessageError::TrailingBytes(1)));
    }

    #[test]
    fn every_error_code_reads_back_from_its_wire_name() {
        for code in ErrorCode::ALL {
            let denied = Denied { code: code.as_str().into(), message: String::new(), token: None };
            assert_eq!(denied.error_code(), Some(code));
        }
    }

    #[test]
    fn a_huge_claimed_length_is_refused_without_allocating_it() {
        // Variant 1 (Consume), then a string claiming u64::MAX bytes.
        let payload = [1u8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(decode::<Request>(&payload).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        /// Arbitrary payloads decode to a request or an error, never a panic.
        #[test]
        fn arbitrary_payloads_never_panic_the_message_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<Request>(&bytes);
            let _ = decode::<Response>(&bytes);
        }

        /// Payloads that start like a real request and then go wrong: the decoder's deeper paths.
        #[test]
        fn mutated_requests_never_panic_the_message_decoder(
            item in "[a-zA-Z]{0,12}",
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        ) {
            let mut payload = encode(&Request::Consume(Consume::new(item).hw("hw"))).unwrap();
            for (at, byte) in flips {
                let at = at % payload.len();
                payload[at] = byte;
            }
            if let Ok(Request::Consume(consume)) = decode::<Request>(&payload) {
                let _ = consume.validate();
            }
        }
    }
}
