//! Token audit and regeneration: read what a token says, find what it is about, and compare it
//! with the claims the current state would give (the drift an administrator sees when a tier's
//! features or a license's terms changed after the token was issued).
//!
//! Reading a token here checks no signature: an audit asks "is this still right?", not "is this
//! genuine?" (that is [`super::verify`]).

use crate::tokens::claims::Claims;
pub use crate::tokens::issue::Dialect;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;

/// Longest token an audit reads.
pub const MAX_TOKEN_CHARS: usize = 64 * 1024;

/// Claims that differ between any two tokens of the same state (when they were issued), left
/// out of the comparison.
pub const VOLATILE_CLAIMS: [&str; 2] = ["iat", "nbf"];

/// Why a token could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// Not a compact JWS (three base64url parts with a JSON object in the middle).
    #[error("malformed token: {0}")]
    Malformed(String),
}

/// One claim whose value differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    /// The claim's name.
    pub claim: String,
    /// Its value in the token (`null` when absent).
    pub token: Value,
    /// Its value from the current state (`null` when it should be absent).
    pub expected: Value,
}

/// The outcome of an audit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditReport {
    /// Whether the token says what the current state says.
    pub consistent: bool,
    /// The token is a JWE: its claims are readable only by the client, so nothing was compared.
    pub encrypted: bool,
    /// The differing claims, by name.
    pub drift: Vec<Drift>,
}

/// What a token is about: enough to rebuild its claims from the current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenSubject {
    /// The dialect.
    pub dialect: Dialect,
    /// The lease (absent in denials).
    pub lease_id: Option<String>,
    /// The license (absent in denials).
    pub license_id: Option<String>,
    /// The item asked for.
    pub item: Option<String>,
    /// The consumer.
    pub consumer: Option<String>,
}

/// Whether `token` is a compact JWE (five parts) rather than a JWS (three).
pub fn is_encrypted(token: &str) -> bool {
    token.split('.').count() == 5
}

/// The claims of a compact JWS, unverified.
pub fn decode_claims(token: &str) -> Result<Claims, AuditError> {
    if token.len() > MAX_TOKEN_CHARS {
        return Err(AuditError::Malformed(format!("longer than {MAX_TOKEN_CHARS} characters")));
    }
    let parts: Vec<&str> = token.trim().split('.').collect();
    let [_, payload, _] = parts[..] else {
        return Err(AuditError::Malformed("a compact JWS has three parts".into()));
    };
    let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|e| AuditError::Malformed(e.to_string()))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(claims)) => Ok(claims),
        Ok(_) => Err(AuditError::Malformed("the payload is not a JSON object".into())),
        Err(e) => Err(AuditError::Malformed(e.to_string())),
    }
}

/// What `claims` are about.
pub fn subject(claims: &Claims) -> TokenSubject {
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
    if claims.contains_key("status") || claims.contains_key("leaseId") {
        TokenSubject {
            dialect: Dialect::Scale,
            lease_id: text("leaseId"),
            license_id: text("licenseId"),
            item: text("productName"),
            consumer: text("licenseConsumerId"),
        }
    } else {
        let item = claims
            .iter()
            .find(|(_, v)| **v == Value::Bool(true))
            .map(|(k, _)| k.clone())
            .or_else(|| claims.keys().find_map(|k| k.strip_suffix("_errorCode")).map(str::to_string));
        TokenSubject {
            dialect: Dialect::Enterprise,
            lease_id: text("jti"),
            license_id: text("lic"),
            item,
            consumer: text("sub"),
        }
    }
}

/// Compares a token's claims with `expected`, ignoring [`VOLATILE_CLAIMS`] and `ignore`.
pub fn audit_claims(token: &Claims, expected: &Claims, ignore: &[&str]) -> AuditReport {
    let skipped = |name: &str| VOLATILE_CLAIMS.contains(&name) || ignore.contains(&name);
    let mut names: Vec<&String> = token.keys().chain(expected.keys()).filter(|n| !skipped(n)).collect();
    names.sort();
    names.dedup();
    let drift: Vec<Drift> = names
        .into_iter()
        .filter_map(|name| {
            let (have, want) = (token.get(name), expected.get(name));
            (have != want).then(|| Drift {
                claim: name.clone(),
                token: have.cloned().unwrap_or(Value::Null),
                expected: want.cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    AuditReport { consistent: drift.is_empty(), encrypted: false, drift }
}

/// Audits `token` against the claims the current state gives. A JWE cannot be read by the
/// server, so it is reported consistent and encrypted.
pub fn audit_token(token: &str, expected: &Claims) -> Result<AuditReport, AuditError> {
    if is_encrypted(token) {
        return Ok(AuditReport { consistent: true, encrypted: true, drift: Vec::new() });
    }
    Ok(audit_claims(&decode_claims(token)?, expected, &[]))
}

/// The claims of a regenerated token: the current state's `expected` claims, keeping the
/// identity of the token being replaced (`jti`) when the state gives none.
pub fn regenerated_claims(old: &Claims, mut expected: Claims) -> Claims {
    if !expected.contains_key("jti") {
        if let Some(jti) = old.get("jti") {
            expected.insert("jti".into(), jti.clone());
        }
    }
    expected
}
