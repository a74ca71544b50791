//! Token claims built from grants and denials (SPEC section 4), before signing.
//!
//! The Enterprise (`/authz/`) dialect: the item name as a claim set to `true`, the lease id as
//! `jti`, the license's validity as `ibb`/`ibe`; a denial carries `<item>_errorCode` and friends.

use crate::answer::Grant;
use crate::decide::Denial;
use crate::time::Timestamp;
use serde_json::{json, Map, Value};

/// A token's claims, in order of insertion.
pub type Claims = Map<String, Value>;

/// Enterprise claims for a grant.
pub fn enterprise_grant(grant: &Grant, issuer: &str) -> Claims {
    let lease = &grant.lease;
    let license = &grant.license;
    let mut claims = Claims::new();
    claims.insert(lease.item.to_string(), Value::Bool(true));
    claims.insert("iss".into(), json!(issuer));
    claims.insert("sub".into(), json!(lease.consumer.to_string()));
    claims.insert("jti".into(), json!(lease.id.to_string()));
    claims.insert("iat".into(), json!(lease.issued_at.as_secs()));
    claims.insert("exp".into(), json!(lease.expires_at.as_secs()));
    claims.insert("rfr".into(), json!(lease.refresh_at.as_secs()));
    claims.insert("lic".into(), json!(license.id.to_string()));
    claims.insert("ibb".into(), json!(license.valid_from.as_secs()));
    if let Some(end) = license.valid_until {
        claims.insert("ibe".into(), json!(end.as_secs()));
    }
    if let Some(hw) = &lease.anchors.hw {
        claims.insert("hw".into(), json!(hw));
    }
    if let Some(version) = &lease.anchors.version {
        claims.insert("ver".into(), json!(version));
    }
    if !license.properties.is_empty() {
        claims.insert("licenseProperties".into(), json!(license.properties));
    }
    claims
}

/// Enterprise claims for a denial of `item` at `now`.
pub fn enterprise_denial(item: &str, denial: &Denial, issuer: &str, now: Timestamp) -> Claims {
    let mut claims = Claims::new();
    claims.insert(format!("{item}_errorKey"), json!(denial.code.as_str()));
    claims.insert(format!("{item}_errorCode"), json!(denial.code.as_str()));
    claims.insert(format!("{item}_errorMessage"), json!(format!("Access to \"{item}\" denied")));
    claims.insert(format!("{item}_errorTechnical"), json!(denial.message));
    claims.insert("iss".into(), json!(issuer));
    claims.insert("iat".into(), json!(now.as_secs()));
    claims
}
