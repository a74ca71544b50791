//! Signed license tokens (SPEC section 4): the keys that sign them, the compact JWS they are
//! written as, the key ring that rotates keys and publishes the public halves as a JWKS, the
//! discovery document, JWE for clients that send a public key, token audit, the verification a
//! client does, and the batching signer pool that tokens are signed through.
//!
//! The path of a token: a transport hands the engine's decision to a [`TokenIssuer`], which
//! builds the [`claims`] of the client's dialect and hands them to a [`signer::TokenSigner`];
//! the [`SignerPool`] queues them in its bounded
//! [`queue::BatchQueue`], a worker thread takes a request, signs it with the key ring's current
//! [`SigningKey`] (an aws-lc key pair parsed once, or a key a PKCS#11 token signs with; [`jws`]),
//! notes the token's `exp` against the key's id so rotation keeps the key published long enough,
//! wraps it in a [`jwe`] when the client asked, and answers the waiting caller.

pub mod audit;
pub mod claims;
pub mod discovery;
pub mod issue;
pub mod jwe;
pub mod jws;
pub mod keyring;
pub mod keys;
pub mod license_key;
pub mod pool;
pub mod queue;
pub mod signer;
pub mod verify;

pub use audit::{audit_token, decode_claims, AuditReport, Drift};
pub use discovery::{license_configuration, Jwk, Jwks, LicenseConfiguration};
pub use issue::{Dialect, Subject, TokenIssuer};
pub use jwe::{ClientPublicKey, JweError};
pub use keyring::KeyRing;
pub use keys::{Algorithm, KeyError, PublicKey, SigningKey, VaultKey};
pub use pool::{PoolConfig, SignerPool};
pub use verify::{Verifier, VerifyError};
