//! What clients fetch to verify tokens: the public keys as a JWKS (RFC 7517) and the
//! `/.well-known/license-configuration` document. Plain data; the HTTP layer serves it.

use super::jws::b64url;
use super::keys::Algorithm;
use serde::{Deserialize, Serialize};

/// One public key in a JWKS: RSA (`n`, `e`), EC P-256 (`crv`, `x`, `y`) or OKP Ed25519 (`crv`, `x`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// `RSA`, `EC` or `OKP`.
    pub kty: String,
    /// `sig`: the key verifies signatures.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// The JWS algorithm (`RS256`, `ES256`, `EdDSA`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// The key id tokens name in their header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// RSA modulus, base64url big-endian.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA public exponent, base64url big-endian.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// Curve: `P-256` or `Ed25519`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// EC x coordinate, or the Ed25519 public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
}

impl Jwk {
    fn bare(kty: &str) -> Jwk {
        Jwk { kty: kty.into(), use_: None, alg: None, kid: None, n: None, e: None, crv: None, x: None, y: None }
    }

    /// An RSA public key from its big-endian modulus and exponent.
    pub fn rsa(n: &[u8], e: &[u8]) -> Jwk {
        Jwk { n: Some(b64url(strip_zeros(n))), e: Some(b64url(strip_zeros(e))), ..Jwk::bare("RSA") }
    }

    /// A P-256 public key from its coordinates.
    pub fn ec_p256(x: &[u8], y: &[u8]) -> Jwk {
        Jwk { crv: Some("P-256".into()), x: Some(b64url(x)), y: Some(b64url(y)), ..Jwk::bare("EC") }
    }

    /// An Ed25519 public key.
    pub fn ed25519(public: &[u8]) -> Jwk {
        Jwk { crv: Some("Ed25519".into()), x: Some(b64url(public)), ..Jwk::bare("OKP") }
    }

    /// The same key named `kid`, for `alg`, marked for signatures.
    pub fn named(self, kid: &str, alg: Algorithm) -> Jwk {
        Jwk { kid: Some(kid.into()), alg: Some(alg.as_str().into()), use_: Some("sig".into()), ..self }
    }

    /// The RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order.
    pub fn thumbprint(&self) -> String {
        let s = |v: &Option<String>| serde_json::Value::from(v.clone().unwrap_or_default()).to_string();
        let canonical = match self.kty.as_str() {
            "RSA" => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, s(&self.e), s(&self.n)),
            "EC" => format!(r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#, s(&self.crv), s(&self.x), s(&self.y)),
            _ => format!(r#"{{"crv":{},"kty":{},"x":{}}}"#, s(&self.crv), s(&Some(self.kty.clone())), s(&self.x)),
        };
        b64url(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref())
    }
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len().saturating_sub(1));
    &bytes[first..]
}

/// A JWK Set: `{"keys": [...]}`, served at `/.well-known/jwks.json` and
/// `/licensing-signing-keys/.well-known/jwks.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Jwks {
    /// The published keys, the current signing key first.
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// The key named `kid`.
    pub fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }
}

/// The `/.well-known/license-configuration` discovery document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseConfiguration {
    /// The `iss` of every token.
    pub issuer: String,
    /// Where the JWKS is.
    pub jwks_uri: String,
    /// The JWKS where the official Scale client looks for it.
    pub signing_keys_uri: String,
    /// Enterprise consumption (`/authz/`).
    pub authz_endpoint: String,
    /// Scale checkout.
    pub checkout_endpoint: String,
    /// Scale heartbeat (renewal).
    pub heartbeat_endpoint: String,
    /// Scale release.
    pub release_endpoint: String,
    /// The platform's key validation (`/license-keys/validate`).
    pub validate_endpoint: String,
    /// The platform's machine activation.
    pub activate_endpoint: String,
    /// The platform's heartbeat of an activated machine (by client id).
    pub license_key_heartbeat_endpoint: String,
    /// The platform's machine deactivation.
    pub deactivate_endpoint: String,
    /// The `alg`s tokens may be signed with.
    pub signing_algorithms: Vec<String>,
    /// The JWE key management algorithms a client may ask for.
    pub encryption_algorithms: Vec<String>,
    /// The JWE content encryption algorithms.
    pub encryption_encodings: Vec<String>,
}

/// The discovery document of a server reachable at `base_url` (no trailing slash needed),
/// issuing as `issuer` and signing with `algorithms`.
pub fn license_configuration(base_url: &str, issuer: &str, algorithms: &[Algorithm]) -> LicenseConfiguration {
    let base = base_url.trim_end_matches('/');
    let at = |path: &str| format!("{base}{path}");
    LicenseConfiguration {
        issuer: issuer.into(),
        jwks_uri: at("/.well-known/jwks.json"),
        signing_keys_uri: at("/licensing-signing-keys/.well-known/jwks.json"),
        authz_endpoint: at("/authz/"),
        checkout_endpoint: at("/licensing/actions/checkout"),
        heartbeat_endpoint: at("/licensing/actions/heartbeat"),
        release_endpoint: at("/licensing/actions/release"),
        validate_endpoint: at("/license-keys/validate"),
        activate_endpoint: at("/license-activations/activate"),
        license_key_heartbeat_endpoint: at("/license-keys/heartbeat"),
        deactivate_endpoint: at("/license-activations/deactivate"),
        signing_algorithms: algorithms.iter().map(|a| a.as_str().to_string()).collect(),
        encryption_algorithms: vec![super::jwe::ALG.into()],
        encryption_encodings: vec![super::jwe::ENC.into()],
    }
}
