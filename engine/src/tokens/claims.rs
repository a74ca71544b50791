//! Token claims built from grants and denials (SPEC section 4), before signing.
//!
//! The Enterprise (`/authz/`) dialect: the item name as a claim set to `true`, the lease id as
//! `jti`, the license's validity as `ibb`/`ibe`; a denial carries `<item>_errorCode` and friends.
//!
//! The Scale dialect, as the official `tenduke-scale` Python client reads it (`LicenseToken`):
//! `leaseId`, `oldLeaseId`, `productName`, `features` (a list), `qty`, `qtyDimension` (an enum
//! name: `SEATS`, `USE_COUNT`, `USE_TIME`), `hbnbf` (epoch seconds), `status`, `errorCode`,
//! `errorDescription`, `jti`; PyJWT checks `exp`, `nbf` and `iat` and refuses any `aud`, so no
//! token has one.
//!
//! Every token has an `exp`, denials included: the key ring keeps a retired key published until
//! the last token it signed expires, and a token without `exp` would keep it forever.

use crate::answer::Grant;
use crate::decide::Denial;
use crate::model::{Anchors, Consumer, Dimension};
use crate::time::Timestamp;
use serde_json::{json, Map, Value};

/// How far before `iat` a Scale token's `nbf` is, so that a client whose clock is a little behind
/// the server's accepts it at once.
pub const NOT_BEFORE_SKEW_S: i64 = 60;

/// How long a denial token is valid.
pub const DENIAL_LIFETIME_S: u64 = 3_600;

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
    claims.insert("exp".into(), json!(now.plus_secs(DENIAL_LIFETIME_S).as_secs()));
    claims
}

/// The client claims of a lease as Scale echoes them (`clientClaims`): the anchors under their
/// header names, plus the other `cli*` claims of the checkout.
pub fn client_claims(anchors: &Anchors) -> Map<String, Value> {
    let mut out = Map::new();
    let named = [
        ("cliHwId", &anchors.hw),
        ("cliHwLabel", &anchors.hw_name),
        ("cliProcessId", &anchors.process),
        ("cliProcessName", &anchors.process_name),
        ("cliVersion", &anchors.version),
    ];
    for (name, value) in named {
        if let Some(value) = value {
            out.insert(name.into(), json!(value));
        }
    }
    for (name, value) in &anchors.extra {
        out.entry(name.clone()).or_insert_with(|| json!(value));
    }
    out
}

/// Scale claims for a grant (checkout or heartbeat) signed at `now`.
pub fn scale_grant(grant: &Grant, issuer: &str, now: Timestamp) -> Claims {
    let lease = &grant.lease;
    let license = &grant.license;
    let seats = license.credit.dimension == Dimension::Seats;
    let mut claims = Claims::new();
    claims.insert("iss".into(), json!(issuer));
    claims.insert("iat".into(), json!(now.as_secs()));
    claims.insert("nbf".into(), json!(now.as_secs().saturating_sub(NOT_BEFORE_SKEW_S)));
    claims.insert("exp".into(), json!(lease.expires_at.as_secs()));
    claims.insert("jti".into(), json!(lease.id.to_string()));
    claims.insert("toe".into(), json!(lease.issued_at.as_secs()));
    claims.insert("status".into(), json!("success"));
    claims.insert("leaseId".into(), json!(lease.id.to_string()));
    if let Some(old) = grant.replaced {
        claims.insert("oldLeaseId".into(), json!(old.to_string()));
    }
    claims.insert("hbnbf".into(), json!(lease.heartbeat_not_before.as_secs()));
    claims.insert("productName".into(), json!(lease.item.as_ref()));
    claims.insert("licenseId".into(), json!(license.id.to_string()));
    match &license.tier {
        Some(tier) => {
            claims.insert("type".into(), json!("PRECONFIGURED_PRODUCT"));
            claims.insert("productConfigurationName".into(), json!(tier));
        }
        None => {
            claims.insert("type".into(), json!("DYNAMIC_PRODUCT"));
        }
    }
    // Scale counts a seat lease as one seat, verified at checkout, with nothing pre-allocated.
    let (qty, prealloc, verified) =
        if seats { (1, 0, 1) } else { (lease.qty_prealloc, lease.qty_prealloc, lease.qty_verified) };
    claims.insert("qty".into(), json!(qty));
    claims.insert("qtyPrealloc".into(), json!(prealloc));
    claims.insert("qtyVerified".into(), json!(verified));
    claims.insert("qtyDimension".into(), json!(license.credit.dimension.as_str()));
    claims.insert("qtyEnforcementType".into(), json!(license.credit.enforcement.as_str()));
    claims.insert("features".into(), json!(license.features));
    claims.insert("licenseConsumerId".into(), json!(lease.consumer.to_string()));
    claims.insert("clientClaims".into(), Value::Object(client_claims(&lease.anchors)));
    claims
}

/// The claims Scale tokens carry about their consumer when it has what they say: its e-mail
/// address, its external reference (`external_id`) and its connected identity (the identity
/// provider's `sub`).
pub fn add_consumer_claims(claims: &mut Claims, consumer: &Consumer) {
    if let Some(email) = &consumer.email {
        claims.insert("licenseConsumerEmail".into(), json!(email));
    }
    if let Some(reference) = &consumer.external_id {
        claims.insert("licenseConsumerExternalReference".into(), json!(reference));
    }
    if let Some(identity) = &consumer.identity {
        claims.insert("licenseConsumerConnectedIdentityId".into(), json!(identity.subject));
    }
}

/// Scale claims for a refused heartbeat at `now`: a denial that names no product (the lease it
/// names may not exist); `jti` is a fresh id for the token.
pub fn scale_heartbeat_denial(denial: &Denial, issuer: &str, now: Timestamp, jti: &str) -> Claims {
    let mut claims = scale_denial("", denial, issuer, now, jti);
    claims.remove("productName");
    claims
}

/// Scale claims for a denial of `item` at `now`; `jti` is a fresh id for the token.
pub fn scale_denial(item: &str, denial: &Denial, issuer: &str, now: Timestamp, jti: &str) -> Claims {
    let mut claims = Claims::new();
    claims.insert("iss".into(), json!(issuer));
    claims.insert("iat".into(), json!(now.as_secs()));
    claims.insert("nbf".into(), json!(now.as_secs().saturating_sub(NOT_BEFORE_SKEW_S)));
    claims.insert("exp".into(), json!(now.plus_secs(DENIAL_LIFETIME_S).as_secs()));
    claims.insert("jti".into(), json!(jti));
    claims.insert("status".into(), json!("error"));
    claims.insert("productName".into(), json!(item));
    claims.insert("errorCode".into(), json!(denial.code.as_str()));
    claims.insert("errorDescription".into(), json!(denial.message));
    claims
}
