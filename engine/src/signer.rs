//! The token-signing seam. The tokens work plugs a batching RSA/EC signer pool in here; until
//! then [`UnsignedTokens`] renders claims as an unsecured JWT (`"alg":"none"`, RFC 7519 §6), which
//! carries the same claims but proves nothing.

use crate::claims::Claims;
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
}

/// A token being signed.
pub type SignFuture = Pin<Box<dyn Future<Output = Result<String, SignError>> + Send>>;

/// Turns claims into a compact token.
pub trait TokenSigner: Send + Sync + 'static {
    /// Signs `claims`.
    fn sign(&self, claims: Claims) -> SignFuture;
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
