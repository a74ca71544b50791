//! Credentials: the consumer's API key and the administrator's token, both sent as
//! `Authorization: Bearer <secret>`.
//!
//! The admin token is kept only as its SHA-256 digest and compared in constant time, so the
//! server (and its data directory) never needs the token itself after it was issued.

use crate::http::reply::ApiError;
use crate::http::HttpState;
use crate::identity::{looks_like_jwt, ActingFor, IdentityError};
use hyper::header::AUTHORIZATION;
use hyper::{HeaderMap, StatusCode};
use leasehold_engine::engine::SignIn;
use leasehold_engine::ids::sha256;
use leasehold_engine::model::ConnectedIdentity;
use leasehold_engine::ConsumerId;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// Longest bearer secret read from a header; longer ones are refused unread.
const MAX_SECRET_BYTES: usize = 512;

/// The scheme and secret of `Authorization: <scheme> <secret>`, when the header has that shape
/// and a secret.
fn credentials(headers: &HeaderMap) -> Option<(&str, &str)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, secret) = value.split_once(' ')?;
    let secret = secret.trim();
    (!secret.is_empty()).then_some((scheme, secret))
}

/// The secret of `Authorization: Bearer <secret>`, when the header has that shape.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let (scheme, secret) = credentials(headers)?;
    (scheme.eq_ignore_ascii_case("bearer") && secret.len() <= MAX_SECRET_BYTES).then_some(secret)
}

/// The consumer a request speaks for: by its API key, or by a token of a trusted identity
/// provider (`Bearer <JWT>`, or `IdToken <JWT>` as the official SDK's ID-token authorization
/// sends it), whose first sign-in makes the consumer. 401 says what to send (`missing`) when
/// nothing usable came, and which check a token failed when one did.
pub async fn consumer(state: &HttpState, headers: &HeaderMap, missing: &str) -> Result<ConsumerId, ApiError> {
    let Some((scheme, secret)) = credentials(headers) else { return Err(ApiError::unauthorized(missing)) };
    if scheme.eq_ignore_ascii_case("scalejwt") {
        return application_consumer(state, secret);
    }
    let id_token = scheme.eq_ignore_ascii_case("idtoken");
    if !id_token && !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::unauthorized(missing));
    }
    if !id_token && !looks_like_jwt(secret) {
        let key = Some(secret).filter(|s| s.len() <= MAX_SECRET_BYTES);
        return key.and_then(|k| state.engine.authenticate(k)).ok_or_else(|| ApiError::unauthorized(missing));
    }
    let refused = |status, e: IdentityError| ApiError::new(status, e.code(), e.to_string());
    let identities = state.identities.as_deref().ok_or_else(|| {
        refused(StatusCode::UNAUTHORIZED, IdentityError::UntrustedIssuer("any: this server trusts no issuer".into()))
    })?;
    let now_s = u64::try_from(state.engine.now().as_secs()).unwrap_or(0);
    let signed_in = identities.verify(secret, now_s).await.map_err(|e| match e {
        IdentityError::ProviderUnavailable(_) => refused(StatusCode::SERVICE_UNAVAILABLE, e),
        other => refused(StatusCode::UNAUTHORIZED, other),
    })?;
    let who = SignIn {
        identity: ConnectedIdentity { issuer: signed_in.issuer, subject: signed_in.subject },
        email: signed_in.email,
        licensee_ref: signed_in.licensee_ref,
        kind: signed_in.kind,
    };
    state.engine.sign_in(&who).await?.ok_or_else(|| ApiError::unauthorized("this consumer is disabled"))
}

/// The consumer a confidential application's token acts for: the one its `lcid` names, or the
/// one connected to its `sub`; 401 with the code of the check that failed.
fn application_consumer(state: &HttpState, token: &str) -> Result<ConsumerId, ApiError> {
    let refused = |e: IdentityError| ApiError::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string());
    let identities = state
        .identities
        .as_deref()
        .ok_or_else(|| refused(IdentityError::UntrustedIssuer("any: this server trusts no application".into())))?;
    let directory = state.engine.directory();
    let consumer = match identities.verify_application_token(token).map_err(refused)? {
        ActingFor::Consumer(id) => directory.consumer(ConsumerId(id)),
        ActingFor::Identity { issuer, subject } => {
            directory.consumer_by_identity(&ConnectedIdentity { issuer, subject })
        }
    };
    let consumer = consumer.filter(|c| !c.disabled);
    consumer.map(|c| c.id).ok_or_else(|| ApiError::unauthorized("the token names no consumer (or a disabled one)"))
}

/// Why a stored admin token digest could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an admin token digest is 64 hexadecimal characters (SHA-256)")]
pub struct BadDigest;

/// Why a token could not be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the operating system's random generator failed")]
pub struct NoRandomness;

/// The administrator's token, as a SHA-256 digest.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken {
    sha256: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// The token whose secret is `secret`.
    pub fn from_secret(secret: &str) -> Self {
        AdminToken { sha256: sha256(secret.as_bytes()) }
    }

    /// A new random token: its secret (`lha_` and 64 hex digits, to show once) and the token.
    pub fn generate() -> Result<(String, AdminToken), NoRandomness> {
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes).map_err(|_| NoRandomness)?;
        let secret = format!("lha_{}", hex(&bytes));
        let token = AdminToken::from_secret(&secret);
        Ok((secret, token))
    }

    /// The token whose digest [`AdminToken::sha256_hex`] wrote.
    pub fn from_sha256_hex(text: &str) -> Result<Self, BadDigest> {
        let text = text.trim();
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadDigest);
        }
        let mut sha256 = [0u8; 32];
        for (i, byte) in sha256.iter_mut().enumerate() {
            let pair = text.get(2 * i..2 * i + 2).ok_or(BadDigest)?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| BadDigest)?;
        }
        Ok(AdminToken { sha256 })
    }

    /// The digest as 64 hex digits, for storing.
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }

    /// Whether `secret` is this token (constant time in the secret's content).
    pub fn matches(&self, secret: &str) -> bool {
        bool::from(sha256(secret.as_bytes()).ct_eq(&self.sha256))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn a_generated_token_matches_only_its_secret_and_survives_its_digest() {
        let (secret, token) = AdminToken::generate().unwrap();
        assert!(token.matches(&secret));
        assert!(!token.matches("lha_wrong"));
        let stored = AdminToken::from_sha256_hex(&token.sha256_hex()).unwrap();
        assert!(stored.matches(&secret));
        assert_eq!(AdminToken::from_sha256_hex("xyz"), Err(BadDigest));
    }

    #[test]
    fn bearer_reads_only_the_bearer_scheme() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer  abc "));
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&headers), None);
    }
}
