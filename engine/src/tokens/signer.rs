//! The token-signing seam. [`crate::tokens::SignerPool`] is the real signer (a batching pool of
//! worker threads signing with RS256, ES256 or EdDSA keys); [`UnsignedTokens`] renders claims as an
//! unsecured JWT (`"alg":"none"`, RFC 7519 §6), which carries the same claims but proves nothing,
//! for tests and embedders that sign elsewhere.
//!
//! A signer starts the work when `sign` is called, not when the future is first polled, so a
//! caller with many tokens to sign (a Scale batch) calls `sign` for each and then awaits them all:
//! the pool sees them together and signs them as a batch.

use crate::tokens::claims::Claims;
use crate::tokens::jwe::{self, ClientPublicKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use std::future::Future;
use std::pin::Pin;

/// Why a token could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The signer's queue is full.
    #[error("signer overloaded")]
    Overloaded,
    /// The key failed.
    #[error("signing failed: {0}")]
    Key(String),
    /// The token could not be encrypted to the client's key.
    #[error("encryption failed: {0}")]
    Encryption(String),
    /// The signer has shut down.
    #[error("the signer is stopped")]
    Stopped,
}

/// A token being signed.
pub type SignFuture = Pin<Box<dyn Future<Output = Result<String, SignError>> + Send>>;

/// Turns claims into a compact token.
pub trait TokenSigner: Send + Sync + 'static {
    /// Signs `claims`.
    fn sign(&self, claims: Claims) -> SignFuture;

    /// Signs `claims` and, when the client gave its RSA public key, returns the token as a JWE
    /// (RSA-OAEP, A256CBC-HS512) that only that client can open. The default encrypts on the
    /// awaiting task; the signer pool does it on its worker threads.
    fn sign_for(&self, claims: Claims, encrypt_to: Option<ClientPublicKey>) -> SignFuture {
        let signed = self.sign(claims);
        Box::pin(async move {
            let token = signed.await?;
            match encrypt_to {
                None => Ok(token),
                Some(key) => jwe::encrypt(&token, &key).map_err(|e| SignError::Encryption(e.to_string())),
            }
        })
    }
}

/// Unsecured JWTs: header `{"alg":"none","typ":"JWT"}`, the claims, an empty signature.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnsignedTokens;

impl UnsignedTokens {
    /// The unsecured token for `claims`.
    pub fn render(claims: &Claims) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::Value::Object(claims.clone()).to_string());
        format!("{header}.{payload}.")
    }
}

impl TokenSigner for UnsignedTokens {
    fn sign(&self, claims: Claims) -> SignFuture {
        let token = UnsignedTokens::render(&claims);
        Box::pin(async move { Ok(token) })
    }
}
