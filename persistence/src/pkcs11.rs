//! Signing keys in a PKCS#11 token (an HSM; SoftHSM in the tests): the private key never leaves
//! the token, which signs each JWS on request. The key store names such a key by a `pkcs11:` URI
//! (RFC 7512: the token's label and the key's label) and records it in its manifest instead of a
//! PEM file.
//!
//! A PKCS#11 session runs one operation at a time, so signing takes an idle session of the token
//! (or opens one) for each signature: the signer pool's threads sign in parallel, each in its own
//! session. One session, opened at login, stays open for the token's life, because the login
//! lasts only while some session of the token is open.

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use leasehold_engine::tokens::{Algorithm, KeyError, PublicKey, SigningKey, VaultKey};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The scheme of a key URI.
pub const SCHEME: &str = "pkcs11:";

/// The algorithms of the keys a token makes and signs with.
pub const ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

/// Most idle sessions kept for signing (more signers than this open and close their own).
const MAX_IDLE_SESSIONS: usize = 64;

/// DER of the P-256 curve's OID (`prime256v1`), the `CKA_EC_PARAMS` of an ES256 key.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// RSA modulus size of keys made in a token.
const RSA_BITS: u64 = 2048;

/// The smallest RSA key a token may sign with.
const MIN_RSA_BITS: usize = 2048;

/// A `pkcs11:` URI naming a key: the label of its token and the label of its object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUri {
    /// The token's label (`token=`).
    pub token: String,
    /// The key's label (`object=`).
    pub object: String,
}

impl KeyUri {
    /// Parses `pkcs11:token=..;object=..` (percent-encoded values; `type=private` may be given;
    /// other attributes are refused rather than ignored, since they would change which key is
    /// meant).
    pub fn parse(text: &str) -> Result<KeyUri, String> {
        let path = text.strip_prefix(SCHEME).ok_or_else(|| format!("a key URI starts with {SCHEME}, not {text:?}"))?;
        if path.contains('?') {
            return Err("a key URI takes no query (the module and PIN come from [pkcs11])".into());
        }
        let (mut token, mut object) = (None, None);
        for attribute in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attribute.split_once('=').ok_or_else(|| format!("{attribute:?} is not name=value"))?;
            let value = percent_decode(value)?;
            match name {
                "token" => token = Some(value),
                "object" => object = Some(value),
                "type" if value == "private" => {}
                other => {
                    return Err(format!("{other:?} is not an attribute of a key URI (token, object, type=private)"))
                }
            }
        }
        match (token, object) {
            (Some(token), Some(object)) if !token.is_empty() && !object.is_empty() => Ok(KeyUri { token, object }),
            _ => Err(format!("a key URI names its token and object: pkcs11:token=..;object=.., not {text:?}")),
        }
    }
}

impl fmt::Display for KeyUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}token={};object={}", percent_encode(&self.token), percent_encode(&self.object))
    }
}

/// What a key URI's values keep unescaped (RFC 7512's unreserved characters).
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn percent_decode(value: &str) -> Result<String, String> {
    let decoded = percent_decode_str(value).decode_utf8().map_err(|_| format!("{value:?} is not UTF-8"))?;
    Ok(decoded.into_owned())
}

fn percent_encode(value: &str) -> String {
    utf8_percent_encode(value, ESCAPED).to_string()
}

/// Why a token or a key in it could not be used.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The module could not be loaded or initialized.
    #[error("PKCS#11 module {module}: {reason}")]
    Module {
        /// The module's path.
        module: PathBuf,
        /// What failed.
        reason: String,
    },
    /// No slot holds a token of that label.
    #[error("no PKCS#11 token labelled {token:?} (tokens present: {present})")]
    NoToken {
        /// The label looked for.
        token: String,
        /// The labels found.
        present: String,
    },
    /// The user PIN was refused.
    #[error("PKCS#11 token {token:?}: the PIN is incorrect")]
    PinIncorrect {
        /// The token.
        token: String,
    },
    /// An operation on the token failed.
    #[error("PKCS#11 token {token:?}: {action}: {reason}")]
    Token {
        /// The token.
        token: String,
        /// What was being done.
        action: &'static str,
        /// The module's answer.
        reason: String,
    },
    /// The key is not in the token, or not only once.
    #[error("PKCS#11 token {token:?}: {found} private keys labelled {object:?} (one is needed)")]
    KeyCount {
        /// The token.
        token: String,
        /// The key's label.
        object: String,
        /// How many were found.
        found: usize,
    },
    /// The key exists but cannot sign a JWS algorithm Leasehold serves.
    #[error("PKCS#11 token {token:?}: key {object:?}: {reason}")]
    Unusable {
        /// The token.
        token: String,
        /// The key's label.
        object: String,
        /// Why.
        reason: String,
    },
}

/// An open, logged-in token.
#[derive(Clone)]
pub struct Pkcs11Token {
    inner: Arc<TokenInner>,
}

struct TokenInner {
    label: String,
    context: Pkcs11,
    slot: Slot,
    /// The session that logged in: the login lasts while any session of the token is open.
    login: Mutex<Session>,
    /// Sessions free to sign with.
    idle: Mutex<Vec<Session>>,
}

impl fmt::Debug for Pkcs11Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Token").field("label", &self.inner.label).finish_non_exhaustive()
    }
}

impl Pkcs11Token {
    /// Loads `module`, finds the token labelled `label` and logs in as its user with `pin`.
    pub fn open(module: &Path, label: &str, pin: &str) -> Result<Pkcs11Token, VaultError> {
        let module_error = |reason: String| VaultError::Module { module: module.to_path_buf(), reason };
        let context = Pkcs11::new(module).map_err(|e| module_error(e.to_string()))?;
        match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(module_error(format!("initializing: {e}"))),
        }
        let slots = context.get_slots_with_token().map_err(|e| module_error(format!("listing slots: {e}")))?;
        let mut present = Vec::new();
        let mut found = None;
        for slot in slots {
            let info = context.get_token_info(slot).map_err(|e| module_error(format!("reading a token: {e}")))?;
            let this = info.label().trim_end().to_string();
            if this == label {
                found = Some(slot);
                break;
            }
            present.push(format!("{this:?}"));
        }
        let slot = found.ok_or_else(|| VaultError::NoToken {
            token: label.into(),
            present: if present.is_empty() { "none".into() } else { present.join(", ") },
        })?;
        let token_error = |action, e: CkError| VaultError::Token { token: label.into(), action, reason: e.to_string() };
        let login = context.open_rw_session(slot).map_err(|e| token_error("opening a session", e))?;
        match login.login(UserType::User, Some(&AuthPin::new(pin.into()))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                return Err(VaultError::PinIncorrect { token: label.into() })
            }
            Err(e) => return Err(token_error("logging in", e)),
        }
        let inner =
            TokenInner { label: label.into(), context, slot, login: Mutex::new(login), idle: Mutex::new(Vec::new()) };
        Ok(Pkcs11Token { inner: Arc::new(inner) })
    }

    /// The token's label.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    fn error(&self, action: &'static str) -> impl FnOnce(CkError) -> VaultError + '_ {
        move |e| VaultError::Token { token: self.inner.label.clone(), action, reason: e.to_string() }
    }

    /// The private key labelled `object`, as a signing key whose signatures the token makes.
    pub fn key(&self, object: &str) -> Result<SigningKey, VaultError> {
        let login = self.inner.login();
        let label = Attribute::Label(object.as_bytes().to_vec());
        let private = login
            .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY), label.clone()])
            .map_err(self.error("finding the key"))?;
        let [handle] = private.as_slice() else {
            return Err(VaultError::KeyCount {
                token: self.inner.label.clone(),
                object: object.into(),
                found: private.len(),
            });
        };
        let unusable =
            |reason: String| VaultError::Unusable { token: self.inner.label.clone(), object: object.into(), reason };
        let kind = login.get_attributes(*handle, &[AttributeType::KeyType]).map_err(self.error("reading the key"))?;
        let (alg, public) = match kind.as_slice() {
            [Attribute::KeyType(t)] if *t == KeyType::RSA => {
                let parts = login
                    .get_attributes(*handle, &[AttributeType::Modulus, AttributeType::PublicExponent])
                    .map_err(self.error("reading the RSA public key"))?;
                match parts.as_slice() {
                    // As aws-lc refuses a PEM key below 2048 bits, so is a token's.
                    [Attribute::Modulus(n), _] if significant_bits(n) < MIN_RSA_BITS => {
                        return Err(unusable(format!(
                            "an RSA key of {} bits; RS256 keys have at least {MIN_RSA_BITS}",
                            significant_bits(n)
                        )))
                    }
                    [Attribute::Modulus(n), Attribute::PublicExponent(e)] => {
                        (Algorithm::RS256, PublicKey::Rsa { n: n.clone(), e: e.clone() })
                    }
                    _ => return Err(unusable("the token does not show the RSA modulus and exponent".into())),
                }
            }
            [Attribute::KeyType(t)] if *t == KeyType::EC => {
                // The point is an attribute of the public half only.
                let public = login
                    .find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY), label])
                    .map_err(self.error("finding the public key"))?;
                let [public] = public.as_slice() else {
                    return Err(unusable("an EC key needs exactly one public key of the same label".into()));
                };
                let attributes = login
                    .get_attributes(*public, &[AttributeType::EcParams, AttributeType::EcPoint])
                    .map_err(self.error("reading the EC public key"))?;
                match attributes.as_slice() {
                    [Attribute::EcParams(params), Attribute::EcPoint(point)] if params[..] == P256_PARAMS[..] => {
                        let (x, y) =
                            p256_coordinates(point).ok_or_else(|| unusable("a malformed P-256 point".into()))?;
                        (Algorithm::ES256, PublicKey::EcP256 { x, y })
                    }
                    [Attribute::EcParams(_), _] => {
                        return Err(unusable("an EC key on a curve other than P-256".into()))
                    }
                    _ => return Err(unusable("the token does not show the EC public key".into())),
                }
            }
            _ => return Err(unusable("only RSA (RS256) and P-256 (ES256) keys sign here".into())),
        };
        drop(login);
        let uri = KeyUri { token: self.inner.label.clone(), object: object.into() };
        let held = TokenKey { token: Arc::clone(&self.inner), handle: *handle, alg, uri: uri.to_string() };
        SigningKey::in_vault(alg, &public, Arc::new(held)).map_err(|e| unusable(e.to_string()))
    }

    /// Makes a new key pair of `alg` in the token, labelled `object`, that never leaves it
    /// (sensitive, not extractable), and returns it as a signing key.
    pub fn generate(&self, alg: Algorithm, object: &str) -> Result<SigningKey, VaultError> {
        let id = uuid::Uuid::new_v4().as_bytes().to_vec();
        let common = |sign| {
            vec![Attribute::Token(true), Attribute::Label(object.as_bytes().to_vec()), Attribute::Id(id.clone()), sign]
        };
        let mut public = common(Attribute::Verify(true));
        let mut private = common(Attribute::Sign(true));
        private.extend([Attribute::Private(true), Attribute::Sensitive(true), Attribute::Extractable(false)]);
        let mechanism = match alg {
            Algorithm::RS256 => {
                public.extend([Attribute::ModulusBits(RSA_BITS.into()), Attribute::PublicExponent(vec![1, 0, 1])]);
                Mechanism::RsaPkcsKeyPairGen
            }
            Algorithm::ES256 => {
                public.push(Attribute::EcParams(P256_PARAMS.to_vec()));
                Mechanism::EccKeyPairGen
            }
            Algorithm::EdDSA => {
                return Err(VaultError::Unusable {
                    token: self.inner.label.clone(),
                    object: object.into(),
                    reason: "keys made in a token are RS256 or ES256".into(),
                })
            }
        };
        self.inner
            .login()
            .generate_key_pair(&mechanism, &public, &private)
            .map_err(self.error("generating a key pair"))?;
        self.key(object)
    }
}

impl TokenInner {
    fn login(&self) -> std::sync::MutexGuard<'_, Session> {
        // A session holds no state of ours that a panic could leave half-changed.
        self.login.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle session, or a new one.
    fn session(&self) -> Result<Session, CkError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(session) => Ok(session),
            None => self.context.open_ro_session(self.slot),
        }
    }

    fn give_back(&self, session: Session) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_SESSIONS {
            idle.push(session);
        }
    }
}

/// A private key in a token.
struct TokenKey {
    token: Arc<TokenInner>,
    handle: ObjectHandle,
    alg: Algorithm,
    uri: String,
}

impl VaultKey for TokenKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let failed = |e: CkError| {
            tracing::warn!(key = %self.uri, error = %e, "the PKCS#11 token did not sign");
            KeyError::Sign
        };
        let session = self.token.session().map_err(failed)?;
        let signature = match self.alg {
            Algorithm::RS256 => session.sign(&Mechanism::Sha256RsaPkcs, self.handle, message),
            // CKM_ECDSA signs a digest and answers r‖s, the JWS form.
            _ => session.sign(&Mechanism::Ecdsa, self.handle, &leasehold_engine::ids::sha256(message)),
        };
        // A session whose operation failed may be left mid-operation: it is closed, not reused.
        let signature = signature.map_err(failed)?;
        self.token.give_back(session);
        Ok(signature)
    }

    fn locator(&self) -> &str {
        &self.uri
    }
}

/// How many bits the big-endian number `bytes` needs.
fn significant_bits(bytes: &[u8]) -> usize {
    match bytes.iter().position(|b| *b != 0) {
        Some(first) => (bytes.len() - first) * 8 - bytes[first].leading_zeros() as usize,
        None => 0,
    }
}

/// The coordinates of an uncompressed P-256 point, bare or (as PKCS#11 stores `CKA_EC_POINT`)
/// wrapped in a DER OCTET STRING.
fn p256_coordinates(point: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let bare = match point {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest,
        _ => point,
    };
    match bare {
        [0x04, xy @ ..] if xy.len() == 64 => Some((xy[..32].to_vec(), xy[32..].to_vec())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_uri_names_a_token_and_an_object_and_round_trips() {
        let uri = KeyUri::parse("pkcs11:token=Leasehold%20HSM;object=signing;type=private").unwrap();
        assert_eq!(uri, KeyUri { token: "Leasehold HSM".into(), object: "signing".into() });
        assert_eq!(KeyUri::parse(&uri.to_string()).unwrap(), uri);
        let odd = KeyUri { token: "a;b=c".into(), object: "100%".into() };
        assert_eq!(KeyUri::parse(&odd.to_string()).unwrap(), odd);
    }

    #[test]
    fn a_key_uri_without_its_parts_or_with_unknown_ones_is_refused() {
        for bad in [
            "token=t;object=o",
            "pkcs11:token=t",
            "pkcs11:object=o",
            "pkcs11:token=;object=o",
            "pkcs11:token=t;object=o;id=%01",
            "pkcs11:token=t;object=o?pin-value=1234",
            "pkcs11:token=t;object=%C3",
            "pkcs11:token",
        ] {
            assert!(KeyUri::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn a_modulus_is_measured_in_significant_bits() {
        assert_eq!(significant_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(significant_bits(&[0x01; 256]), 2041);
        assert_eq!(significant_bits(&[0xff; 256]), 2048);
        assert_eq!(significant_bits(&[0, 0]), 0);
    }

    #[test]
    fn an_ec_point_is_read_bare_or_wrapped() {
        let mut bare = vec![0x04];
        bare.extend(1..=64u8);
        let (x, y) = p256_coordinates(&bare).unwrap();
        assert_eq!((x[0], y[31]), (1, 64));
        let wrapped: Vec<u8> = [0x04, 0x41].into_iter().chain(bare.iter().copied()).collect();
        assert_eq!(p256_coordinates(&wrapped), Some((x, y)));
        assert_eq!(p256_coordinates(&bare[..64]), None);
    }
}
