//! Where the admin token comes from: `LEASEHOLD_ADMIN_TOKEN` when set; else `admin_token` in the
//! `--config` file; otherwise the one generated at first start.
//!
//! A generated token is printed once and only its SHA-256 digest is stored (in
//! `<data dir>/admin-token.sha256`), so a copy of the data directory does not hand out admin
//! rights. The price: a lost token cannot be shown again; delete the file (a new token is
//! generated and printed at the next start) or set `LEASEHOLD_ADMIN_TOKEN`.

use leasehold_transports::http::AdminToken;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// The environment variable that sets the admin token.
pub const ENV_VAR: &str = "LEASEHOLD_ADMIN_TOKEN";
/// The digest file in the data directory.
pub const DIGEST_FILE: &str = "admin-token.sha256";

/// Where this start's admin token came from.
pub enum Source {
    /// `LEASEHOLD_ADMIN_TOKEN`.
    Environment,
    /// `admin_token` in the configuration file.
    ConfigFile,
    /// Generated now; the secret is shown once.
    Generated(String),
    /// Generated at an earlier start; only its digest is known.
    Stored(PathBuf),
}

/// Why the admin token could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    /// The digest file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// The digest file does not hold a digest.
    #[error("{0}: not a SHA-256 digest; delete it to generate a new admin token")]
    BadDigest(PathBuf),
    /// No random bytes for a new token.
    #[error(transparent)]
    Random(#[from] leasehold_transports::http::auth::NoRandomness),
}

/// The admin token for a server whose data directory is `data_dir` and whose configuration
/// file sets `from_file` (if it does).
pub fn resolve(data_dir: &Path, from_file: Option<&str>) -> Result<(AdminToken, Source), AdminTokenError> {
    if let Ok(secret) = std::env::var(ENV_VAR) {
        if !secret.trim().is_empty() {
            return Ok((AdminToken::from_secret(secret.trim()), Source::Environment));
        }
    }
    if let Some(secret) = from_file {
        return Ok((AdminToken::from_secret(secret), Source::ConfigFile));
    }
    let path = data_dir.join(DIGEST_FILE);
    let io_error = |source| AdminTokenError::Io { path: path.clone(), source };
    match fs::read_to_string(&path) {
        Ok(text) => {
            let token = AdminToken::from_sha256_hex(&text).map_err(|_| AdminTokenError::BadDigest(path.clone()))?;
            return Ok((token, Source::Stored(path)));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(e)),
    }
    let (secret, token) = AdminToken::generate()?;
    write_private(&path, &token.sha256_hex()).map_err(io_error)?;
    Ok((token, Source::Generated(secret)))
}

fn write_private(path: &Path, text: &str) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}
