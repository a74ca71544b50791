//! Signing keys: RS256 (RSA, 2048-bit by default), ES256 (P-256) or EdDSA (Ed25519), read once
//! from PKCS#8 PEM into an aws-lc-rs key pair, and named by their `kid`.
//!
//! Parsing a key is far slower than a signature (jsonwebtoken re-parses on every call), so a
//! [`SigningKey`] parses once and keeps the key pair, its public JWK and the base64url JWS header
//! it signs under.
//!
//! A key may also live in a vault that never lets it out (a PKCS#11 token): the key is then a
//! [`VaultKey`] that signs on request, with its public half read from the vault.
//!
//! The key pairs are aws-lc-rs's rather than ring's (same API): signing RS256 is the wall of a
//! signed checkout, and aws-lc signs RSA-2048 much faster where the CPU has AVX-512 IFMA, whose
//! modular arithmetic ring lacks (`openssl speed` shows the same).

use super::discovery::Jwk;
use super::jws::b64url;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// RSA modulus size of generated keys.
pub const RSA_BITS: usize = 2048;

/// Largest PEM text a key file may hold (a 4096-bit RSA key is about 3.3 KiB).
pub const MAX_PEM_BYTES: usize = 16 * 1024;

/// A JWS signature algorithm Leasehold signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256: what every 10Duke client verifies.
    RS256,
    /// ECDSA P-256 with SHA-256: far cheaper to sign than RSA.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl Algorithm {
    /// Every algorithm, RS256 first.
    pub const ALL: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

    /// The `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The algorithm called `name` (`alg` spelling).
    pub fn parse(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a key could not be read, made or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is not PEM, or not a PEM block this reads.
    #[error("not a PEM private key: {0}")]
    Pem(String),
    /// The PEM holds no RSA, P-256 or Ed25519 private key that aws-lc accepts.
    #[error("unsupported or malformed private key: {0}")]
    Rejected(String),
    /// Generating a key failed.
    #[error("key generation failed: {0}")]
    Generate(String),
    /// A signature could not be made.
    #[error("signing failed")]
    Sign,
}

/// A private key held by a vault that signs with it but never hands it out.
pub trait VaultKey: Send + Sync {
    /// Signs the JWS signing input `message` with the key's algorithm (an ES256 signature is
    /// `r‖s`, 64 bytes).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError>;
    /// Where the key lives (a `pkcs11:` URI), as the key store records it.
    fn locator(&self) -> &str;
}

/// The public half of a key kept in a vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// An RSA key: modulus and public exponent, big-endian.
    Rsa {
        /// The modulus.
        n: Vec<u8>,
        /// The public exponent.
        e: Vec<u8>,
    },
    /// A P-256 key: the point's coordinates, 32 bytes each.
    EcP256 {
        /// The x coordinate.
        x: Vec<u8>,
        /// The y coordinate.
        y: Vec<u8>,
    },
}

enum Pair {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Vault(Arc<dyn VaultKey>),
}

/// A private key, parsed once (or held by a vault), with its `kid`, public JWK and JWS header.
pub struct SigningKey {
    alg: Algorithm,
    kid: String,
    pair: Pair,
    jwk: Jwk,
    header_b64: String,
    /// The private key as PEM; `None` for a key in a vault.
    pkcs8_pem: Option<String>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("alg", &self.alg).field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a `PRIVATE KEY` (PKCS#8) PEM; an RSA key may also be a `RSA PRIVATE KEY` (PKCS#1).
    /// The algorithm follows from the key: RSA signs RS256, P-256 ES256, Ed25519 EdDSA.
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey, KeyError> {
        if pem.len() > MAX_PEM_BYTES {
            return Err(KeyError::Pem(format!("larger than {MAX_PEM_BYTES} bytes")));
        }
        let text = std::str::from_utf8(pem).map_err(|_| KeyError::Pem("not UTF-8".into()))?;
        let (label, der) = pem_decode(text)?;
        match label.as_str() {
            "PRIVATE KEY" => SigningKey::from_pkcs8_der(&der),
            "RSA PRIVATE KEY" => {
                let pair = RsaKeyPair::from_der(&der).map_err(|e| KeyError::Rejected(e.to_string()))?;
                SigningKey::assemble(Pair::Rsa(pair), pem_encode("RSA PRIVATE KEY", &der))
            }
            other => Err(KeyError::Pem(format!("a {other:?} block is not a private key this reads"))),
        }
    }

    /// Reads a PKCS#8 DER private key (RSA, P-256 or Ed25519).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<SigningKey, KeyError> {
        let pair = if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            Pair::Ed25519(pair)
        } else if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            Pair::Ecdsa(pair)
        } else {
            Pair::Rsa(RsaKeyPair::from_pkcs8(der).map_err(|e| KeyError::Rejected(e.to_string()))?)
        };
        SigningKey::assemble(pair, pem_encode("PRIVATE KEY", der))
    }

    /// A new random key for `alg` (RSA keys are [`RSA_BITS`] bits).
    pub fn generate(alg: Algorithm) -> Result<SigningKey, KeyError> {
        let rng = SystemRandom::new();
        let generated = |e: aws_lc_rs::error::Unspecified| KeyError::Generate(e.to_string());
        let der: Vec<u8> = match alg {
            Algorithm::RS256 => {
                use rsa::pkcs8::EncodePrivateKey as _;
                let key = rsa::PrivateKey::new(&mut getrandom::SysRng, RSA_BITS)
                    .map_err(|e| KeyError::Generate(e.to_string()))?;
                key.to_pkcs8_der().map_err(|e| KeyError::Generate(e.to_string()))?.as_bytes().to_vec()
            }
            Algorithm::ES256 => EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(generated)?
                .as_ref()
                .to_vec(),
            Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng).map_err(generated)?.as_ref().to_vec(),
        };
        SigningKey::from_pkcs8_der(&der)
    }

    /// A key held by `vault`, whose public half is `public`; it signs with `alg`, which must
    /// suit the key (RS256 for RSA, ES256 for P-256).
    pub fn in_vault(alg: Algorithm, public: &PublicKey, vault: Arc<dyn VaultKey>) -> Result<SigningKey, KeyError> {
        let jwk = match (alg, public) {
            (Algorithm::RS256, PublicKey::Rsa { n, e }) => Jwk::rsa(n, e),
            (Algorithm::ES256, PublicKey::EcP256 { x, y }) if x.len() == 32 && y.len() == 32 => Jwk::ec_p256(x, y),
            _ => return Err(KeyError::Rejected(format!("{alg} cannot sign with this vault key"))),
        };
        Ok(SigningKey::named(alg, jwk, Pair::Vault(vault), None))
    }

    fn assemble(pair: Pair, pkcs8_pem: String) -> Result<SigningKey, KeyError> {
        let (alg, jwk) = match &pair {
            Pair::Rsa(rsa) => {
                let parts: signature::RsaPublicKeyComponents<Vec<u8>> = rsa.public_key().into();
                (Algorithm::RS256, Jwk::rsa(&parts.n, &parts.e))
            }
            Pair::Ecdsa(ec) => {
                // An uncompressed SEC1 point: 0x04, x (32 bytes), y (32 bytes).
                let point = ec.public_key().as_ref();
                if point.len() != 65 || point[0] != 4 {
                    return Err(KeyError::Rejected("unexpected P-256 public key encoding".into()));
                }
                (Algorithm::ES256, Jwk::ec_p256(&point[1..33], &point[33..]))
            }
            Pair::Ed25519(ed) => (Algorithm::EdDSA, Jwk::ed25519(ed.public_key().as_ref())),
            Pair::Vault(_) => return Err(KeyError::Rejected("a vault key has no key pair here".into())),
        };
        Ok(SigningKey::named(alg, jwk, pair, Some(pkcs8_pem)))
    }

    fn named(alg: Algorithm, jwk: Jwk, pair: Pair, pkcs8_pem: Option<String>) -> SigningKey {
        let kid = jwk.thumbprint();
        let jwk = jwk.named(&kid, alg);
        let header = serde_json::json!({ "alg": alg.as_str(), "typ": "JWT", "kid": kid });
        let header_b64 = b64url(header.to_string().as_bytes());
        SigningKey { alg, kid, pair, jwk, header_b64, pkcs8_pem }
    }

    /// The algorithm it signs with.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// Its key id: the RFC 7638 JWK thumbprint (SHA-256, base64url) of the public key, so the
    /// same key has the same `kid` on every start and on every node.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Its public half as a JWK (with `kid`, `alg` and `use: sig`).
    pub fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The private key as PEM, for the key store to write; `None` for a key in a vault.
    pub fn to_pem(&self) -> Option<&str> {
        self.pkcs8_pem.as_deref()
    }

    /// Where the vault that holds the key keeps it; `None` for a key in memory.
    pub fn vault_locator(&self) -> Option<&str> {
        match &self.pair {
            Pair::Vault(vault) => Some(vault.locator()),
            _ => None,
        }
    }

    /// The base64url JWS protected header (`alg`, `typ: JWT`, `kid`).
    pub fn header_b64(&self) -> &str {
        &self.header_b64
    }

    /// Signs `message` (a JWS signing input) and returns the raw signature.
    pub fn sign_raw(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.pair {
            Pair::Rsa(rsa) => {
                let mut signature = vec![0u8; rsa.public_modulus_len()];
                rsa.sign(&signature::RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut signature)
                    .map_err(|_| KeyError::Sign)?;
                Ok(signature)
            }
            Pair::Ecdsa(ec) => {
                Ok(ec.sign(&SystemRandom::new(), message).map_err(|_| KeyError::Sign)?.as_ref().to_vec())
            }
            Pair::Ed25519(ed) => Ok(ed.sign(message).as_ref().to_vec()),
            Pair::Vault(vault) => vault.sign(message),
        }
    }
}

/// The label and bytes of the first PEM block in `text` (lenient about line lengths and
/// surrounding text, strict about the base64).
pub fn pem_decode(text: &str) -> Result<(String, Vec<u8>), KeyError> {
    const BEGIN: &str = "-----BEGIN ";
    let start = text.find(BEGIN).ok_or_else(|| KeyError::Pem("no BEGIN line".into()))?;
    let rest = &text[start + BEGIN.len()..];
    let label_end = rest.find("-----").ok_or_else(|| KeyError::Pem("unterminated BEGIN line".into()))?;
    let label = &rest[..label_end];
    let body = &rest[label_end + 5..];
    let end_line = format!("-----END {label}-----");
    let body_end = body.find(&end_line).ok_or_else(|| KeyError::Pem(format!("no END line for {label}")))?;
    let b64: String = body[..body_end].chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = STANDARD.decode(b64).map_err(|e| KeyError::Pem(e.to_string()))?;
    Ok((label.to_string(), der))
}

/// `der` as a PEM block labelled `label`, 64 characters a line.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
