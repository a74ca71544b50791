//! The signing keys on disk: PEM files under `<data dir>/keys/`, created on first start when
//! absent, and a small manifest (`keyring.json`) saying which key signs now and which retired
//! keys must stay published until when.
//!
//! Private keys are written with mode 0600 through a temporary file, fsync and rename, so a
//! crash leaves either the old file or the new one. An operator may also drop a PKCS#8 PEM into
//! an empty key directory before the first start; it is then the signing key.
//!
//! Or the keys live in a PKCS#11 token ([`KeyStore::with_vault`], `--signing-key pkcs11:..`):
//! the manifest then names each key by its `pkcs11:` URI, rotation makes the new key inside the
//! token, and no private key is written here. The first start with a newly named token key
//! makes it the signing key; the key that signed before stays published while its tokens live.

use crate::pkcs11::{self, KeyUri, Pkcs11Token, VaultError};
use leasehold_engine::time::Timestamp;
use leasehold_engine::tokens::keyring::{PublishedKey, RetiredKey};
use leasehold_engine::tokens::{Algorithm, KeyError, KeyRing, SigningKey};
use leasehold_engine::webhooks::WebhookKey;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// The key directory under the data directory.
pub const KEYS_DIR: &str = "keys";
/// The manifest's file name in the key directory.
pub const MANIFEST_FILE: &str = "keyring.json";
/// The webhook key's file name in the key directory.
pub const WEBHOOK_KEY_FILE: &str = "webhooks.key";
/// Default bound on a token's lifetime (the default offline lease is 30 days): after a restart,
/// the signing key is assumed to have signed tokens living this long, because the largest `exp`
/// it signed since the manifest was last saved is not known.
pub const DEFAULT_MAX_TOKEN_LIFETIME_S: u64 = 31 * 24 * 3600;

/// Why the key store failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// A key file holds no usable key.
    #[error("{path}: {source}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why it is unusable.
        source: KeyError,
    },
    /// Generating a key failed.
    #[error("generating a signing key: {0}")]
    Generate(KeyError),
    /// The manifest is unreadable or names files it should not.
    #[error("{path}: {reason}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key directory has several PEM files and no manifest to say which one signs.
    #[error("{0}: several PEM files and no {MANIFEST_FILE}; keep one, or write the manifest")]
    Ambiguous(PathBuf),
    /// A key in a PKCS#11 token could not be used.
    #[error(transparent)]
    Vault(#[from] VaultError),
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    current: ManifestKey,
    #[serde(default)]
    retired: Vec<ManifestKey>,
    /// The `--signing-key` the ring was last opened with, so that naming another one is seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signing_key: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ManifestKey {
    kid: String,
    /// The PEM file in the key directory (empty for a key in a token).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    file: String,
    /// The `pkcs11:` URI of a key in a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vault: Option<String>,
    #[serde(default)]
    retired_at_s: Option<i64>,
    #[serde(default)]
    max_exp_s: i64,
}

/// The key files of one data directory, and the token keys live in when there is one.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
    max_token_lifetime_s: u64,
    vault: Option<Vault>,
}

/// The token that signs, and the key in it named at start.
#[derive(Debug, Clone)]
struct Vault {
    token: Pkcs11Token,
    named: KeyUri,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> KeyStoreError + '_ {
    move |source| KeyStoreError::Io { path: path.to_path_buf(), source }
}

impl KeyStore {
    /// The store of `data_dir` (keys in `data_dir/keys/`).
    pub fn new(data_dir: &Path) -> Self {
        KeyStore { dir: data_dir.join(KEYS_DIR), max_token_lifetime_s: DEFAULT_MAX_TOKEN_LIFETIME_S, vault: None }
    }

    /// Keeps the signing keys in `token`, starting with the key `named` (a key of that token):
    /// rotations make their keys there.
    pub fn with_vault(mut self, token: Pkcs11Token, named: KeyUri) -> Self {
        self.vault = Some(Vault { token, named });
        self
    }

    /// Bounds how long tokens live (see [`DEFAULT_MAX_TOKEN_LIFETIME_S`]).
    pub fn max_token_lifetime_s(mut self, seconds: u64) -> Self {
        self.max_token_lifetime_s = seconds;
        self
    }

    /// The key directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads the key ring, or creates a key of `alg` on first start (or, with a token, starts
    /// with the key named). `now` is the current time.
    pub fn open_or_create(&self, alg: Algorithm, now: Timestamp) -> Result<KeyRing, KeyStoreError> {
        create_private_dir(&self.dir)?;
        let manifest_path = self.dir.join(MANIFEST_FILE);
        if manifest_path.exists() {
            let (ring, opened_with) = self.load(&manifest_path, now)?;
            if let Some(vault) = self.vault.as_ref().filter(|v| opened_with != Some(v.named.to_string())) {
                ring.rotate(vault.token.key(&vault.named.object)?, now);
                self.write_manifest(&ring, None)?;
            }
            return Ok(ring);
        }
        if let Some(vault) = &self.vault {
            let ring = KeyRing::new(vault.token.key(&vault.named.object)?);
            self.write_manifest(&ring, None)?;
            return Ok(ring);
        }
        let pems = self.pem_files()?;
        let key = match pems.as_slice() {
            [] => {
                let key = SigningKey::generate(alg).map_err(KeyStoreError::Generate)?;
                self.write_key(&key)?;
                key
            }
            [only] => read_key(only)?,
            _ => return Err(KeyStoreError::Ambiguous(self.dir.clone())),
        };
        let file =
            pems.first().and_then(|p| p.file_name()).map_or_else(|| key_file(&key), |n| n.to_string_lossy().into());
        let ring = KeyRing::new(key);
        self.write_manifest(&ring, Some(file))?;
        Ok(ring)
    }

    /// Whether [`KeyStore::rotate`] can make a key of `alg` where the keys are kept.
    pub fn makes(&self, alg: Algorithm) -> bool {
        self.vault.is_none() || pkcs11::ALGORITHMS.contains(&alg)
    }

    /// Makes a new key of `alg` the signing key (in the token, when there is one), drops the
    /// retired keys no live token needs, and records it all. Generating an RSA key takes a
    /// fraction of a second: call this off the request path. Keys in a token are not destroyed
    /// when no token needs them: that is the token's owner's decision.
    pub fn rotate(&self, ring: &KeyRing, alg: Algorithm, now: Timestamp) -> Result<String, KeyStoreError> {
        let key = match &self.vault {
            Some(vault) => {
                let suffix = uuid::Uuid::new_v4().simple().to_string();
                vault.token.generate(alg, &format!("{}-{}", vault.named.object, &suffix[..12]))?
            }
            None => {
                let key = SigningKey::generate(alg).map_err(KeyStoreError::Generate)?;
                self.write_key(&key)?;
                key
            }
        };
        let kid = ring.rotate(key, now);
        let pruned = ring.prune(now);
        let files = self.previous_files();
        self.write_manifest(ring, None)?;
        // Keys in a token have no file here, so only PEM files are removed.
        for (_, file) in files.iter().filter(|(kid, _)| pruned.contains(kid)) {
            let path = self.dir.join(file);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(KeyStoreError::Io { path, source: e }),
            }
        }
        Ok(kid)
    }

    /// Records how long each key must stay published (call at shutdown, and now and then).
    pub fn save(&self, ring: &KeyRing) -> Result<(), KeyStoreError> {
        self.write_manifest(ring, None)
    }

    /// The key webhook secrets are derived from ([`WEBHOOK_KEY_FILE`]: 32 random bytes,
    /// created on first start, readable by the owner only). Losing it changes every webhook's
    /// secret.
    pub fn webhook_key(&self) -> Result<WebhookKey, KeyStoreError> {
        let path = self.dir.join(WEBHOOK_KEY_FILE);
        match fs::read(&path) {
            Ok(bytes) => match <[u8; 32]>::try_from(bytes.as_slice()) {
                Ok(bytes) => Ok(WebhookKey::new(bytes)),
                Err(_) => Err(KeyStoreError::Manifest { path, reason: "a webhook key is 32 bytes".into() }),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create_private_dir(&self.dir)?;
                let key = WebhookKey::random();
                write_atomically(&path, key.as_bytes(), true)?;
                Ok(key)
            }
            Err(e) => Err(KeyStoreError::Io { path, source: e }),
        }
    }

    fn pem_files(&self) -> Result<Vec<PathBuf>, KeyStoreError> {
        let mut pems = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_error(&self.dir))? {
            let path = entry.map_err(io_error(&self.dir))?.path();
            if path.extension().is_some_and(|e| e == "pem") {
                pems.push(path);
            }
        }
        pems.sort();
        Ok(pems)
    }

    /// The ring the manifest describes, and the `--signing-key` it was last opened with.
    fn load(&self, manifest_path: &Path, now: Timestamp) -> Result<(KeyRing, Option<String>), KeyStoreError> {
        let text = fs::read(manifest_path).map_err(io_error(manifest_path))?;
        let bad = |reason: String| KeyStoreError::Manifest { path: manifest_path.to_path_buf(), reason };
        let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        let current = self.read_listed(&manifest.current).map_err(|e| match e {
            KeyStoreError::Manifest { reason, .. } => bad(reason),
            other => other,
        })?;
        let mut retired = Vec::new();
        for entry in &manifest.retired {
            let key = self.read_listed(entry)?;
            retired.push(RetiredKey {
                key,
                retired_at_s: entry.retired_at_s.unwrap_or_else(|| now.as_secs()),
                max_exp_s: entry.max_exp_s,
            });
        }
        let assumed = now.plus_secs(self.max_token_lifetime_s).as_secs();
        let ring = KeyRing::restore(current, manifest.current.max_exp_s.max(assumed), retired);
        ring.prune(now);
        Ok((ring, manifest.signing_key))
    }

    fn read_listed(&self, entry: &ManifestKey) -> Result<SigningKey, KeyStoreError> {
        if let Some(locator) = &entry.vault {
            return self.read_from_vault(&entry.kid, locator);
        }
        if !is_plain_file_name(&entry.file) {
            return Err(KeyStoreError::Manifest {
                path: self.dir.join(MANIFEST_FILE),
                reason: format!("{:?} is not a file name in the key directory", entry.file),
            });
        }
        let path = self.dir.join(&entry.file);
        let key = read_key(&path)?;
        if key.kid() != entry.kid {
            return Err(KeyStoreError::Manifest {
                path: self.dir.join(MANIFEST_FILE),
                reason: format!("{} holds key {}, not {}", entry.file, key.kid(), entry.kid),
            });
        }
        Ok(key)
    }

    /// The key `kid` that the manifest says is at `locator`, a `pkcs11:` URI.
    fn read_from_vault(&self, kid: &str, locator: &str) -> Result<SigningKey, KeyStoreError> {
        let manifest = || self.dir.join(MANIFEST_FILE);
        let uri = KeyUri::parse(locator).map_err(|reason| KeyStoreError::Manifest { path: manifest(), reason })?;
        let vault =
            self.vault.as_ref().filter(|v| v.token.label() == uri.token).ok_or_else(|| KeyStoreError::Manifest {
                path: manifest(),
                reason: format!(
                    "key {kid} is in a PKCS#11 token, at {locator}: start with --signing-key naming a key of \
                     that token, and [pkcs11] set"
                ),
            })?;
        let key = vault.token.key(&uri.object)?;
        if key.kid() != kid {
            return Err(KeyStoreError::Manifest {
                path: manifest(),
                reason: format!("{locator} holds key {}, not {kid}", key.kid()),
            });
        }
        Ok(key)
    }

    fn write_key(&self, key: &SigningKey) -> Result<(), KeyStoreError> {
        let pem = key.to_pem().ok_or_else(|| KeyStoreError::Generate(KeyError::Rejected("a key in a vault".into())))?;
        write_atomically(&self.dir.join(key_file(key)), pem.as_bytes(), true)
    }

    fn write_manifest(&self, ring: &KeyRing, current_file: Option<String>) -> Result<(), KeyStoreError> {
        let current = ring.current();
        let previous = self.previous_files();
        let file_of = |kid: &str| {
            previous.iter().find(|(k, _)| k == kid).map_or_else(|| format!("{kid}.pem"), |(_, f)| f.clone())
        };
        let entry = |key: &PublishedKey, file: Option<String>| {
            let vault = key.key().vault_locator().map(str::to_owned);
            ManifestKey {
                kid: key.kid().into(),
                // A key in a token has its URI and no file.
                file: if vault.is_some() { String::new() } else { file.unwrap_or_else(|| file_of(key.kid())) },
                vault,
                retired_at_s: key.retired_at_s(),
                max_exp_s: key.max_exp_s(),
            }
        };
        let manifest = Manifest {
            current: entry(&current, current_file),
            retired: ring.retired().iter().map(|k| entry(k, None)).collect(),
            signing_key: self.vault.as_ref().map(|v| v.named.to_string()),
        };
        let path = self.dir.join(MANIFEST_FILE);
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| KeyStoreError::Manifest { path: path.clone(), reason: e.to_string() })?;
        write_atomically(&path, &json, false)
    }

    /// The file names the manifest on disk gives each `kid` (operator-named files keep their name).
    fn previous_files(&self) -> Vec<(String, String)> {
        let Ok(text) = fs::read(self.dir.join(MANIFEST_FILE)) else { return Vec::new() };
        let Ok(manifest) = serde_json::from_slice::<Manifest>(&text) else { return Vec::new() };
        std::iter::once(manifest.current)
            .chain(manifest.retired)
            .filter(|k| is_plain_file_name(&k.file))
            .map(|k| (k.kid, k.file))
            .collect()
    }
}

/// Whether `name` names a file directly in the key directory (no path, no `..`).
fn is_plain_file_name(name: &str) -> bool {
    Path::new(name).file_name().is_some_and(|n| n == name)
}

fn key_file(key: &SigningKey) -> String {
    format!("{}.pem", key.kid())
}

fn read_key(path: &Path) -> Result<SigningKey, KeyStoreError> {
    let pem = fs::read(path).map_err(io_error(path))?;
    SigningKey::from_pem(&pem).map_err(|source| KeyStoreError::Key { path: path.to_path_buf(), source })
}

fn create_private_dir(dir: &Path) -> Result<(), KeyStoreError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io_error(dir))
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename, then syncs the directory.
fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> Result<(), KeyStoreError> {
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&tmp).map_err(io_error(&tmp))?;
    file.write_all(bytes).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_error(path))?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_error(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

    #[test]
    fn first_start_creates_a_key_and_the_next_start_reads_the_same_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        let first = store.open_or_create(Algorithm::ES256, NOW).unwrap();
        let kid = first.current().kid().to_string();
        assert!(store.dir().join(format!("{kid}.pem")).exists());
        let again = store.open_or_create(Algorithm::ES256, NOW).unwrap();
        assert_eq!(again.current().kid(), kid);
    }

    #[cfg(unix)]
    #[test]
    fn private_keys_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        let ring = store.open_or_create(Algorithm::EdDSA, NOW).unwrap();
        let meta = fs::metadata(store.dir().join(format!("{}.pem", ring.current().kid()))).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_rotated_key_stays_published_after_a_restart_while_its_tokens_live() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        let ring = store.open_or_create(Algorithm::ES256, NOW).unwrap();
        let old = ring.current().kid().to_string();
        let mut claims = leasehold_engine::claims::Claims::new();
        claims.insert("exp".into(), serde_json::json!(NOW.as_secs() + 86_400));
        ring.sign(&claims).unwrap();
        let new = store.rotate(&ring, Algorithm::EdDSA, NOW).unwrap();
        let restarted = store.open_or_create(Algorithm::ES256, NOW.plus_secs(3_600)).unwrap();
        assert_eq!(restarted.current().kid(), new);
        let published: Vec<_> = restarted.jwks(NOW.plus_secs(3_600)).keys.into_iter().filter_map(|k| k.kid).collect();
        assert_eq!(published, vec![new.clone(), old.clone()]);
        let later = NOW.plus_secs(86_401);
        assert_eq!(restarted.jwks(later).keys.len(), 1, "the old key goes once its last token expired");
        store.rotate(&restarted, Algorithm::ES256, later).unwrap();
        assert!(!store.dir().join(format!("{old}.pem")).exists(), "a key no token needs is deleted");
    }

    #[test]
    fn an_operator_key_dropped_into_an_empty_directory_becomes_the_signing_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        fs::create_dir_all(store.dir()).unwrap();
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        fs::write(store.dir().join("operator.pem"), key.to_pem().unwrap()).unwrap();
        let ring = store.open_or_create(Algorithm::RS256, NOW).unwrap();
        assert_eq!(ring.current().kid(), key.kid());
        let again = store.open_or_create(Algorithm::RS256, NOW).unwrap();
        assert_eq!(again.current().kid(), key.kid());
    }

    #[test]
    fn the_webhook_key_is_made_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        let first = store.webhook_key().unwrap();
        assert_eq!(store.webhook_key().unwrap().as_bytes(), first.as_bytes());
        fs::write(store.dir().join(WEBHOOK_KEY_FILE), b"short").unwrap();
        assert!(store.webhook_key().is_err(), "a damaged key is an error, not a new key");
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        fs::create_dir_all(store.dir()).unwrap();
        fs::write(store.dir().join("broken.pem"), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .unwrap();
        assert!(matches!(store.open_or_create(Algorithm::RS256, NOW), Err(KeyStoreError::Key { .. })));
    }
}
