//! JWE compact serialization (RFC 7516) with RSA-OAEP key wrapping and A256CBC-HS512 content
//! encryption (RFC 7518 §4.3, §5.2.5), for clients that send their RSA public key at checkout:
//! the signed JWT becomes the encrypted payload (`cty: JWT`), so only that client reads it.
//!
//! ring has no RSA-OAEP, so the key wrap uses the `rsa` crate; AES-CBC and HMAC-SHA-512 come
//! from RustCrypto. Only public-key operations run on the server.

use super::jws::b64url;
use super::keys::pem_decode;
use aes::cipher::{block_padding::Pkcs7, BlockModeDecrypt as _, BlockModeEncrypt as _, KeyIvInit as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{KeyInit as _, Mac as _};
use rsa::pkcs1::DecodeRsaPublicKey as _;
use rsa::pkcs8::DecodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use std::fmt;

/// The key management algorithm (`alg`).
pub const ALG: &str = "RSA-OAEP";
/// The content encryption algorithm (`enc`).
pub const ENC: &str = "A256CBC-HS512";
/// Longest client key text accepted (a 4096-bit SubjectPublicKeyInfo PEM is about 800 bytes).
pub const MAX_CLIENT_KEY_CHARS: usize = 4096;
/// Smallest and largest client RSA modulus accepted, in bits.
pub const CLIENT_KEY_BITS: std::ops::RangeInclusive<usize> = 2048..=4096;

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;
type HmacSha512 = hmac::Hmac<sha2::Sha512>;

/// Why a token could not be encrypted or decrypted, or a client key not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JweError {
    /// The client's public key is not an RSA key in a form this reads, or its size is wrong.
    #[error("invalid client public key: {0}")]
    ClientKey(String),
    /// Encryption failed.
    #[error("encryption failed: {0}")]
    Encrypt(String),
    /// The JWE is malformed, for another key, or was tampered with.
    #[error("cannot decrypt: {0}")]
    Decrypt(String),
}

/// A client's RSA public key, to encrypt its tokens to.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientPublicKey(rsa::PublicKey);

impl fmt::Debug for ClientPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientPublicKey({} bits)", self.0.size() * 8)
    }
}

impl ClientPublicKey {
    /// Reads the key a client sent: a PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`), or base64url
    /// (padded or not; standard base64 also passes) of a DER SubjectPublicKeyInfo or PKCS#1 key.
    pub fn parse(text: &str) -> Result<ClientPublicKey, JweError> {
        let text = text.trim();
        if text.len() > MAX_CLIENT_KEY_CHARS {
            return Err(JweError::ClientKey(format!("longer than {MAX_CLIENT_KEY_CHARS} characters")));
        }
        let bad = |e: &dyn fmt::Display| JweError::ClientKey(e.to_string());
        let key = if text.starts_with("-----BEGIN") {
            let (label, der) = pem_decode(text).map_err(|e| bad(&e))?;
            match label.as_str() {
                "PUBLIC KEY" => rsa::PublicKey::from_public_key_der(&der).map_err(|e| bad(&e))?,
                "RSA PUBLIC KEY" => rsa::PublicKey::from_pkcs1_der(&der).map_err(|e| bad(&e))?,
                other => return Err(JweError::ClientKey(format!("a {other:?} PEM block is not a public key"))),
            }
        } else {
            let normalized: String = text
                .chars()
                .filter(|c| !c.is_ascii_whitespace() && *c != '=')
                .map(|c| match c {
                    '+' => '-',
                    '/' => '_',
                    c => c,
                })
                .collect();
            let der = URL_SAFE_NO_PAD.decode(normalized).map_err(|e| bad(&e))?;
            rsa::PublicKey::from_public_key_der(&der)
                .or_else(|_| rsa::PublicKey::from_pkcs1_der(&der))
                .map_err(|e| bad(&e))?
        };
        let bits = key.size() * 8;
        if !CLIENT_KEY_BITS.contains(&bits) {
            return Err(JweError::ClientKey(format!("a {bits}-bit key; 2048 to 4096 bits are accepted")));
        }
        Ok(ClientPublicKey(key))
    }

    /// The key from an `rsa` public key (for clients and tests that hold one).
    pub fn from_rsa(key: rsa::PublicKey) -> ClientPublicKey {
        ClientPublicKey(key)
    }
}

fn protected_header() -> String {
    b64url(format!(r#"{{"alg":"{ALG}","enc":"{ENC}","cty":"JWT"}}"#).as_bytes())
}

/// HMAC-SHA-512 over AAD, IV, ciphertext and the AAD's bit length; the tag is its first half.
fn tag_mac(mac_key: &[u8], aad: &[u8], iv: &[u8], ciphertext: &[u8]) -> Result<HmacSha512, String> {
    let mut mac = HmacSha512::new_from_slice(mac_key).map_err(|e| e.to_string())?;
    let aad_bits = u64::try_from(aad.len()).map_err(|e| e.to_string())?.saturating_mul(8);
    mac.update(aad);
    mac.update(iv);
    mac.update(ciphertext);
    mac.update(&aad_bits.to_be_bytes());
    Ok(mac)
}

/// The authentication tag: the first 32 bytes of [`tag_mac`].
fn auth_tag(mac_key: &[u8], aad: &[u8], iv: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, String> {
    Ok(tag_mac(mac_key, aad, iv, ciphertext)?.finalize().into_bytes()[..TAG_BYTES].to_vec())
}

const TAG_BYTES: usize = 32;

/// `jwt` encrypted to `key` as a compact JWE.
pub fn encrypt(jwt: &str, key: &ClientPublicKey) -> Result<String, JweError> {
    let fail = |e: &dyn fmt::Display| JweError::Encrypt(e.to_string());
    let rng = ring::rand::SystemRandom::new();
    let mut cek = [0u8; 64];
    let mut iv = [0u8; 16];
    ring::rand::SecureRandom::fill(&rng, &mut cek).map_err(|e| fail(&e))?;
    ring::rand::SecureRandom::fill(&rng, &mut iv).map_err(|e| fail(&e))?;
    let (mac_key, enc_key) = cek.split_at(32);
    let header = protected_header();
    let wrapped = key.0.oaep_encrypt::<sha1::Sha1>(&cek).map_err(|e| fail(&e))?;
    let cipher = Aes256CbcEnc::new_from_slices(enc_key, &iv).map_err(|e| fail(&e))?;
    let ciphertext = cipher.encrypt_padded_vec::<Pkcs7>(jwt.as_bytes());
    let tag = auth_tag(mac_key, header.as_bytes(), &iv, &ciphertext).map_err(|e| fail(&e))?;
    Ok(format!("{header}.{}.{}.{}.{}", b64url(&wrapped), b64url(&iv), b64url(&ciphertext), b64url(&tag)))
}

/// Decrypts a compact JWE made by [`encrypt`] with the client's private key; returns the JWT.
pub fn decrypt(jwe: &str, key: &rsa::PrivateKey) -> Result<String, JweError> {
    let fail = |e: &dyn fmt::Display| JweError::Decrypt(e.to_string());
    let parts: Vec<&str> = jwe.split('.').collect();
    let [header, wrapped, iv, ciphertext, tag] = parts[..] else {
        return Err(JweError::Decrypt("a compact JWE has five parts".into()));
    };
    let header_json: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).map_err(|e| fail(&e))?).map_err(|e| fail(&e))?;
    if header_json["alg"] != ALG || header_json["enc"] != ENC {
        return Err(JweError::Decrypt(format!("only {ALG} with {ENC} is supported")));
    }
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|e| fail(&e));
    let (wrapped, iv, ciphertext, tag) = (decode(wrapped)?, decode(iv)?, decode(ciphertext)?, decode(tag)?);
    let cek = key.oaep_decrypt::<sha1::Sha1>(&wrapped).map_err(|e| fail(&e))?;
    if cek.len() != 64 {
        return Err(JweError::Decrypt("content key is not 64 bytes".into()));
    }
    let (mac_key, enc_key) = cek.split_at(32);
    let mac = tag_mac(mac_key, header.as_bytes(), &iv, &ciphertext).map_err(|e| fail(&e))?;
    // Constant-time comparison of the truncated tag.
    if tag.len() != TAG_BYTES || mac.verify_truncated_left(&tag).is_err() {
        return Err(JweError::Decrypt("authentication tag mismatch".into()));
    }
    let cipher = Aes256CbcDec::new_from_slices(enc_key, &iv).map_err(|e| fail(&e))?;
    let plaintext = cipher.decrypt_padded_vec::<Pkcs7>(&ciphertext).map_err(|e| fail(&e))?;
    String::from_utf8(plaintext).map_err(|e| fail(&e))
}
