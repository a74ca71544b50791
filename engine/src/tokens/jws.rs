//! Compact JWS (RFC 7515): `base64url(header) . base64url(claims) . base64url(signature)`,
//! built by hand around a [`SigningKey`] whose header is encoded once.

use super::keys::{KeyError, SigningKey};
use crate::tokens::claims::Claims;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Unpadded base64url, as JOSE writes every part.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The compact JWS of `claims` signed by `key`.
pub fn sign_claims(key: &SigningKey, claims: &Claims) -> Result<String, KeyError> {
    // A map of JSON values always serializes; the fallback keeps this path free of panics.
    let payload = serde_json::to_vec(claims).map_err(|_| KeyError::Sign)?;
    sign_payload(key, &payload)
}

/// The compact JWS of the JSON bytes `payload` signed by `key`.
pub fn sign_payload(key: &SigningKey, payload: &[u8]) -> Result<String, KeyError> {
    let header = key.header_b64();
    let mut token = String::with_capacity(header.len() + 1 + payload.len() * 4 / 3 + 4 + 1 + 344);
    token.push_str(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let signature = key.sign_raw(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}
