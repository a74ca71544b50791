//! The platform's tokens (SPEC section 13, `seeds/platform-features.txt`).
//!
//! A key token is the license key the platform hands a customer: a signed token that names a
//! license, with its tier, features, seat limit and heartbeat policy, valid until the license
//! ends (or for a century when it never does). It carries a digest of the license's key, so a
//! token made for a key that has since changed names nothing. An activation's token is a Scale
//! grant with the activation's claims added: its client id and machine, the tier, the seat
//! limit and the heartbeat policy.

use super::claims::Claims;
use super::jws::b64url;
use crate::ids::{sha256, LicenseId};
use crate::model::{Dimension, License, MachineActivation};
use crate::time::Timestamp;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

/// How long a key token of a perpetual license is valid.
pub const PERPETUAL_KEY_LIFETIME_S: u64 = 100 * 365 * 86_400;

/// The `tokenType` of a key token, which no lease token has.
pub const KEY_TOKEN_TYPE: &str = "licenseKey";

/// The claims of `license`'s key token for `customer`, issued at `issued_at`; `None` when the
/// license has no key.
pub fn key_token_claims(license: &License, customer: &str, issuer: &str, issued_at: Timestamp) -> Option<Claims> {
    let key = license.license_key.as_deref()?;
    let exp = license.valid_until.unwrap_or_else(|| issued_at.plus_secs(PERPETUAL_KEY_LIFETIME_S));
    let mut claims = Claims::new();
    claims.insert("iss".into(), json!(issuer));
    claims.insert("sub".into(), json!(customer));
    claims.insert("iat".into(), json!(issued_at.as_secs()));
    claims.insert("nbf".into(), json!(license.valid_from.as_secs()));
    claims.insert("exp".into(), json!(exp.as_secs()));
    claims.insert("tokenType".into(), json!(KEY_TOKEN_TYPE));
    claims.insert("licenseId".into(), json!(license.id.to_string()));
    claims.insert("productName".into(), json!(license.product_name.as_ref()));
    claims.insert("features".into(), json!(license.features));
    claims.insert("perpetual".into(), json!(license.valid_until.is_none()));
    add_terms(&mut claims, license);
    claims.insert("keyHash".into(), json!(key_hash(key)));
    Some(claims)
}

/// Adds `activation`'s claims to the Scale claims of its grant on `license`.
pub fn add_activation_claims(claims: &mut Claims, activation: &MachineActivation, license: &License) {
    claims.insert("clientId".into(), json!(activation.client_id));
    claims.insert("machineId".into(), json!(activation.machine_id));
    add_terms(claims, license);
}

/// The tier, the seat limit (`MaxUsers`, for a seat license) and the heartbeat policy.
fn add_terms(claims: &mut Claims, license: &License) {
    claims.insert("tier".into(), json!(license.tier));
    let seats = (license.credit.dimension == Dimension::Seats).then_some(license.credit.qty);
    claims.insert("MaxUsers".into(), json!(seats));
    let heartbeat = json!({
        "intervalSeconds": license.model.refresh_time_online_s,
        "tokenLifetimeSeconds": license.model.lease_time_online_s,
    });
    claims.insert("heartbeat".into(), heartbeat);
}

/// The digest of a license key that its key tokens carry: the first 16 bytes of its SHA-256.
pub fn key_hash(key: &str) -> String {
    b64url(&sha256(key.as_bytes())[..16])
}

/// The license a key token's (verified) claims name; `None` for a token of another kind.
pub fn key_token_license(claims: &Claims) -> Option<LicenseId> {
    if claims.get("tokenType").and_then(Value::as_str) != Some(KEY_TOKEN_TYPE) {
        return None;
    }
    claims.get("licenseId").and_then(Value::as_str).and_then(|id| id.parse().ok())
}

/// Whether a key token's claims were made for `license`'s current key.
pub fn names_current_key(claims: &Claims, license: &License) -> bool {
    let carried = claims.get("keyHash").and_then(Value::as_str).unwrap_or_default();
    license.license_key.as_deref().is_some_and(|key| bool::from(carried.as_bytes().ct_eq(key_hash(key).as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{LicenseeId, ProductId};
    use crate::model::{Credit, Enforcement, LicenseModel, LicenseStatus};
    use std::sync::Arc;
    use uuid::Uuid;

    fn license(key: Option<&str>, valid_until: Option<Timestamp>) -> License {
        License {
            id: LicenseId(Uuid::from_u128(7)),
            licensee: LicenseeId(Uuid::from_u128(1)),
            product: ProductId(Uuid::from_u128(2)),
            product_name: "Rdn.Identity".into(),
            tier: Some("Enterprise".into()),
            features: vec!["sso".into()],
            valid_from: Timestamp::from_secs(1_000),
            valid_until,
            status: LicenseStatus::Active,
            license_key: key.map(str::to_owned),
            revokes_sibling_keys: true,
            properties: Default::default(),
            credit: Credit { dimension: Dimension::Seats, qty: 5, enforcement: Enforcement::Enforced },
            model: Arc::new(LicenseModel::default()),
            feature_overrides: Default::default(),
            key_activated_at: None,
            expiry_recorded: None,
            entitlement: None,
        }
    }

    #[test]
    fn a_key_token_names_its_license_terms_and_key() {
        let at = Timestamp::from_secs(2_000);
        let perpetual = license(Some("KEY-ONE-aaaaaaaaaaaa"), None);
        let claims = key_token_claims(&perpetual, "c@example.com", "https://lh", at).expect("a keyed license");
        assert_eq!(key_token_license(&claims), Some(perpetual.id));
        assert_eq!(claims["MaxUsers"], json!(5));
        assert_eq!(claims["tier"], json!("Enterprise"));
        assert_eq!(claims["exp"], json!(2_000 + PERPETUAL_KEY_LIFETIME_S));
        assert!(names_current_key(&claims, &perpetual));
        let rekeyed = License { license_key: Some("KEY-TWO-bbbbbbbbbbbb".into()), ..perpetual.clone() };
        assert!(!names_current_key(&claims, &rekeyed));
        let ending = license(Some("KEY-ONE-aaaaaaaaaaaa"), Some(Timestamp::from_secs(9_000)));
        let claims = key_token_claims(&ending, "c@example.com", "https://lh", at).expect("a keyed license");
        assert_eq!(claims["exp"], json!(9_000));
        assert!(key_token_claims(&license(None, None), "c@example.com", "https://lh", at).is_none());
    }

    #[test]
    fn a_lease_token_is_no_key_token() {
        let mut claims = Claims::new();
        claims.insert("licenseId".into(), json!(LicenseId(Uuid::from_u128(7)).to_string()));
        assert_eq!(key_token_license(&claims), None);
    }
}
