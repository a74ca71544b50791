//! What a client does with a token: check its signature with the key its `kid` names in the
//! server's JWKS, check that it is in force now, and that it was issued to this hardware.
//!
//! Verification uses jsonwebtoken (its `rust_crypto` backend), an implementation independent of
//! the ring code that signs; time is passed in, so expiry is checked against the caller's clock.

use super::discovery::Jwks;
use crate::time::Timestamp;
use crate::tokens::claims::Claims;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;

/// Seconds of clock difference tolerated on `exp` and `nbf`.
pub const DEFAULT_LEEWAY_S: i64 = 60;

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The JWKS could not be read.
    #[error("unusable key set: {0}")]
    Jwks(String),
    /// Not a JWT.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The token names no key, or one the key set lacks.
    #[error("no published key {0:?}")]
    UnknownKey(Option<String>),
    /// The signature does not match, or the algorithm is not the key's.
    #[error("bad signature: {0}")]
    Signature(String),
    /// `exp` has passed.
    #[error("token expired at {0}")]
    Expired(i64),
    /// `nbf` is still ahead.
    #[error("token not valid before {0}")]
    NotYetValid(i64),
    /// The token is bound to other hardware, or to none.
    #[error("token is for hardware {0:?}")]
    HardwareMismatch(Option<String>),
}

struct PublicKey {
    kid: String,
    alg: jsonwebtoken::Algorithm,
    key: DecodingKey,
}

/// Verifies tokens against a JWKS.
pub struct Verifier {
    keys: Vec<PublicKey>,
    leeway_s: i64,
}

impl Verifier {
    /// A verifier for the keys of `jwks`; keys without `kid` or of other kinds are skipped.
    pub fn from_jwks(jwks: &Jwks) -> Result<Verifier, VerifyError> {
        let json = serde_json::to_vec(jwks).map_err(|e| VerifyError::Jwks(e.to_string()))?;
        Verifier::from_jwks_json(&json)
    }

    /// A verifier for a JWKS document as served.
    pub fn from_jwks_json(json: &[u8]) -> Result<Verifier, VerifyError> {
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_slice(json).map_err(|e| VerifyError::Jwks(e.to_string()))?;
        let keys = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let alg = jwk.common.key_algorithm.and_then(|a| a.to_string().parse().ok())?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some(PublicKey { kid, alg, key })
            })
            .collect();
        Ok(Verifier { keys, leeway_s: DEFAULT_LEEWAY_S })
    }

    /// Tolerates `leeway_s` seconds of clock difference instead of [`DEFAULT_LEEWAY_S`].
    pub fn with_leeway_s(mut self, leeway_s: i64) -> Verifier {
        self.leeway_s = leeway_s;
        self
    }

    /// The claims of `token` if its signature is good and it is in force at `now`.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<Claims, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| VerifyError::Malformed(e.to_string()))?;
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.iter().find(|k| k.kid == kid))
            .ok_or_else(|| VerifyError::UnknownKey(header.kid.clone()))?;
        let mut validation = Validation::new(key.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map_err(|e| VerifyError::Signature(e.to_string()))?;
        let claims = data.claims;
        let now_s = now.as_secs();
        if let Some(exp) = claims.get("exp").and_then(Value::as_i64) {
            if now_s > exp.saturating_add(self.leeway_s) {
                return Err(VerifyError::Expired(exp));
            }
        }
        if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64) {
            if now_s.saturating_add(self.leeway_s) < nbf {
                return Err(VerifyError::NotYetValid(nbf));
            }
        }
        Ok(claims)
    }

    /// [`Verifier::verify`], and the token must be bound to hardware `hw` (Enterprise `hw`,
    /// Scale `clientClaims.cliHwId`).
    pub fn verify_for_hardware(&self, token: &str, now: Timestamp, hw: &str) -> Result<Claims, VerifyError> {
        let claims = self.verify(token, now)?;
        let bound = hardware_id(&claims);
        if bound.as_deref() != Some(hw) {
            return Err(VerifyError::HardwareMismatch(bound));
        }
        Ok(claims)
    }
}

/// The hardware id a token is bound to, in either dialect.
pub fn hardware_id(claims: &Claims) -> Option<String> {
    claims
        .get("hw")
        .or_else(|| claims.get("clientClaims").and_then(|c| c.get("cliHwId")))
        .and_then(Value::as_str)
        .map(str::to_string)
}
