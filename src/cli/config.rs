//! The settings of `leasehold serve` and where they come from: command-line flags, then
//! `LEASEHOLD_*` environment variables, then the TOML file of `--config`, then the embedded
//! defaults (the first that sets a value wins). `examples/leasehold.toml` documents every key.
//!
//! The file is read strictly: an unknown key, a value of the wrong type or a malformed address
//! is an error that names the key and its line, because a misspelt setting silently left at its
//! default is worse than a server that does not start.

use clap::Args;
use leasehold_engine::engine::DEFAULT_MAILBOX_CAPACITY;
use leasehold_engine::tokens::Algorithm;
use leasehold_persistence::pkcs11::KeyUri;
use leasehold_persistence::DurabilityMode;
use leasehold_transports::client_address::TrustedProxies;
use leasehold_transports::http::{BodyLimits, HttpConfig};
use leasehold_transports::identity::{IdentityConfig, TrustedApplication, TrustedIssuer};
use leasehold_transports::mail::SmtpConfig;
use leasehold_transports::tls::TlsFiles;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest configuration file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The default HTTP address.
pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";
/// The default data directory.
pub const DEFAULT_DATA_DIR: &str = "./leasehold-data";
/// The default largest request body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// The default longest time a request body may take to arrive.
pub const DEFAULT_BODY_READ_TIMEOUT_S: u64 = 10;

/// Options of `leasehold serve`. Each may also come from the environment variable named in its
/// help, or from the `--config` file; a flag wins over both.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTP API [default: 127.0.0.1:8080] (port 0 picks a free port; the address is printed).
    #[arg(long = "http", value_name = "ADDR", env = "LEASEHOLD_HTTP")]
    pub http: Option<SocketAddr>,
    /// Address of the binary TCP protocol.
    #[arg(long = "tcp", value_name = "ADDR", env = "LEASEHOLD_TCP")]
    pub tcp: Option<SocketAddr>,
    /// Where the journal, the signing keys and the admin token digest live [default: ./leasehold-data].
    #[arg(long = "data-dir", value_name = "DIR", env = "LEASEHOLD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// What an answered change survives: sync (flushed before answering), batched[:<ms>], none [default: sync].
    #[arg(long, value_name = "MODE", env = "LEASEHOLD_DURABILITY", value_parser = parse_durability)]
    pub durability: Option<DurabilityMode>,
    /// Days events are kept for `GET /admin/events` [default: 90].
    #[arg(long, value_name = "DAYS", env = "LEASEHOLD_EVENTS_RETENTION_DAYS")]
    pub events_retention_days: Option<u64>,
    /// A TOML configuration file (see examples/leasehold.toml); flags and environment win over it.
    #[arg(long, value_name = "FILE", env = "LEASEHOLD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Seed a demo product, licensee, 3-seat license and consumer, and print commands to try.
    #[arg(long, env = "LEASEHOLD_DEMO", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub demo: Option<bool>,
    /// The URL clients reach the server at (issuer and discovery URLs) [default: http://<HTTP address>].
    #[arg(long, value_name = "URL", env = "LEASEHOLD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Proxies whose Forwarded / X-Forwarded-For headers (HTTP) and PROXY protocol v2 headers
    /// (TCP) name the client: CIDR ranges or addresses, comma-separated [default: none].
    #[arg(long, value_name = "CIDR,...", env = "LEASEHOLD_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
    /// A MaxMind DB file (GeoIP2/GeoLite2 Country or City) telling clients' countries, for the
    /// `geo` rules of license models [default: none].
    #[arg(long, value_name = "FILE", env = "LEASEHOLD_GEOIP_DB")]
    pub geoip_db: Option<PathBuf>,
    /// PEM certificate chain to serve HTTPS and TLS on the TCP protocol with (with --tls-key;
    /// read again on SIGHUP).
    #[arg(long, value_name = "FILE", env = "LEASEHOLD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the --tls-cert certificate.
    #[arg(long, value_name = "FILE", env = "LEASEHOLD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Algorithm of the signing key created at first start: RS256, ES256 or EdDSA [default: RS256].
    #[arg(long, value_name = "ALG", env = "LEASEHOLD_SIGNING_ALG", value_parser = parse_algorithm)]
    pub signing_alg: Option<Algorithm>,
    /// A signing key in a PKCS#11 token (an HSM), `pkcs11:token=<label>;object=<label>`; the
    /// module and PIN come from the configuration's [pkcs11] (or LEASEHOLD_PKCS11_PIN)
    /// [default: PEM keys in the data directory].
    #[arg(long, value_name = "URI", env = "LEASEHOLD_SIGNING_KEY")]
    pub signing_key: Option<String>,
    /// Largest request body in bytes [default: 65536].
    #[arg(long, value_name = "BYTES", env = "LEASEHOLD_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Longest a request body may take to arrive, in seconds [default: 10].
    #[arg(long, value_name = "SECONDS", env = "LEASEHOLD_BODY_READ_TIMEOUT_S")]
    pub body_read_timeout_s: Option<u64>,
    /// Most HTTP connections open at once [default: 10000].
    #[arg(long, value_name = "N", env = "LEASEHOLD_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Largest request line plus headers in bytes [default: 16384].
    #[arg(long, value_name = "BYTES", env = "LEASEHOLD_MAX_HEAD_BYTES")]
    pub max_head_bytes: Option<usize>,
    /// Longest a request head may take from its first byte (a new connection's first head from
    /// the connect), in seconds [default: 10].
    #[arg(long, value_name = "SECONDS", env = "LEASEHOLD_HEADER_READ_TIMEOUT_S")]
    pub header_read_timeout_s: Option<u64>,
    /// Seconds a keep-alive HTTP connection may wait for its next request [default: 60].
    #[arg(long, value_name = "SECONDS", env = "LEASEHOLD_IDLE_TIMEOUT_S")]
    pub idle_timeout_s: Option<u64>,
    /// Longest shutdown waits for requests in flight, in seconds [default: 30].
    #[arg(long, value_name = "SECONDS", env = "LEASEHOLD_SHUTDOWN_GRACE_S")]
    pub shutdown_grace_s: Option<u64>,
    /// Most requests waiting for one license; the next is answered `overloaded` [default: 4096].
    #[arg(long, value_name = "N", env = "LEASEHOLD_LICENSE_QUEUE")]
    pub license_queue: Option<usize>,
    /// Worker threads for connections and license actors [default: half the cores, at least 1;
    /// the signer has a thread per core of its own].
    #[arg(long, value_name = "N", env = "LEASEHOLD_WORKERS")]
    pub workers: Option<usize>,
    /// Journal to the NATS JetStream cluster at these servers (`nats://host:port`,
    /// comma-separated) instead of the data directory; needs --node and --nats-monitor
    /// [default: none: the data directory's journal].
    #[arg(long, value_name = "URL,...", env = "LEASEHOLD_NATS")]
    pub nats: Option<String>,
    /// The NATS servers' monitoring URLs (`http://host:port`, comma-separated): each must fsync
    /// before it acknowledges (`sync_interval: always`), or the node refuses to start.
    #[arg(long, value_name = "URL,...", env = "LEASEHOLD_NATS_MONITOR")]
    pub nats_monitor: Option<String>,
    /// This node's name among the cluster's nodes (with --nats).
    #[arg(long, value_name = "NAME", env = "LEASEHOLD_NODE")]
    pub node: Option<String>,
}

/// Partitions of a cluster unless configured (`design/CLUSTER.md`).
pub const DEFAULT_PARTITIONS: u32 = 64;

/// Copies of each stream unless configured.
pub const DEFAULT_REPLICAS: usize = 3;

/// Days events are kept unless configured (SPEC section 11).
pub const DEFAULT_EVENTS_RETENTION_DAYS: u64 = 90;

/// The least time between two fetches of an issuer's keys, seconds.
pub const DEFAULT_JWKS_MIN_REFRESH_S: u64 = 60;

fn parse_durability(text: &str) -> Result<DurabilityMode, String> {
    text.parse()
}

/// A signing algorithm by its `alg` name (flags of `serve` and `bench`).
pub fn parse_algorithm(text: &str) -> Result<Algorithm, String> {
    Algorithm::parse(text).ok_or_else(|| format!("the signing algorithm is RS256, ES256 or EdDSA, not {text:?}"))
}

/// The `--config` file, as written. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    http: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    durability: Option<String>,
    events_retention_days: Option<u64>,
    admin_token: Option<String>,
    demo: Option<bool>,
    public_url: Option<String>,
    signing_alg: Option<String>,
    signing_key: Option<String>,
    pkcs11: Option<FilePkcs11>,
    workers: Option<usize>,
    #[serde(default)]
    limits: FileLimits,
    identity: Option<FileIdentity>,
    smtp: Option<SmtpConfig>,
    tls: Option<FileTls>,
    webhooks: Option<FileWebhooks>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    geoip_db: Option<PathBuf>,
    cluster: Option<FileCluster>,
}

/// The `[cluster]` table: the JetStream cluster the journal is on, and this node's name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCluster {
    #[serde(default)]
    nats: Vec<String>,
    #[serde(default)]
    monitor: Vec<String>,
    node: Option<String>,
    partitions: Option<u32>,
    replicas: Option<usize>,
}

/// Where a clustered node's journal is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The NATS servers (`nats://host:port`).
    pub nats: Vec<String>,
    /// Their monitoring URLs (`http://host:port`), to check that they fsync before they
    /// acknowledge.
    pub monitors: Vec<String>,
    /// This node's name.
    pub node: String,
    /// Partitions the licenses are spread over.
    pub partitions: u32,
    /// Copies of each stream.
    pub replicas: usize,
}

/// The `[tls]` table: the certificate both listeners serve.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert_file: PathBuf,
    key_file: PathBuf,
}

/// The `[webhooks]` table: the CA certificates `https://` receivers may chain to besides the
/// web's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWebhooks {
    ca_file: PathBuf,
}

/// The `[pkcs11]` table: the module that reaches the token `signing_key` names, and its user
/// PIN.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePkcs11 {
    module: Option<PathBuf>,
    pin: Option<String>,
}

/// Where the signing key lives when it is in a PKCS#11 token.
#[derive(Clone)]
pub struct SigningVault {
    /// The key named at start.
    pub key: KeyUri,
    /// The PKCS#11 module (a shared library) that reaches the token.
    pub module: PathBuf,
    /// The token's user PIN.
    pub pin: String,
}

impl std::fmt::Debug for SigningVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningVault").field("key", &self.key).field("module", &self.module).finish_non_exhaustive()
    }
}

/// The `[identity]` table: the identity providers whose tokens sign consumers in, and the
/// confidential applications that sign their own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIdentity {
    jwks_min_refresh_s: Option<u64>,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    issuers: Vec<TrustedIssuer>,
    #[serde(default)]
    applications: Vec<FileApplication>,
}

/// An `[[identity.applications]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileApplication {
    key_id: String,
    issuer: String,
    public_key_file: PathBuf,
    identity_issuer: Option<String>,
}

/// The `[limits]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_body_bytes: Option<usize>,
    body_read_timeout_s: Option<u64>,
    max_connections: Option<usize>,
    max_head_bytes: Option<usize>,
    header_read_timeout_s: Option<u64>,
    idle_timeout_s: Option<u64>,
    shutdown_grace_s: Option<u64>,
    license_queue: Option<usize>,
}

/// Why the settings could not be worked out.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The file is larger than any configuration needs.
    #[error("{0}: larger than {MAX_FILE_BYTES} bytes; is this the configuration file?")]
    TooLarge(PathBuf),
    /// The file is not valid TOML, has an unknown key or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong and where (toml names the key and the line).
        message: String,
    },
    /// A value has the right type but is not allowed.
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// Why.
        message: String,
    },
    /// A setting from the command line or the environment is not allowed.
    #[error("{0}")]
    Setting(String),
}

/// What `leasehold serve` runs with, every source merged.
#[derive(Debug, Clone)]
pub struct Settings {
    /// HTTP address.
    pub http: SocketAddr,
    /// TCP address, when one is configured.
    pub tcp: Option<SocketAddr>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The journal's durability.
    pub durability: DurabilityMode,
    /// Days events are kept.
    pub events_retention_days: u64,
    /// The admin token's secret from the file (the environment's is read with the token).
    pub file_admin_token: Option<String>,
    /// Seed the demo data.
    pub demo: bool,
    /// The URL clients reach the server at, without a trailing slash.
    pub public_url: Option<String>,
    /// Algorithm of a signing key created at first start.
    pub signing_alg: Algorithm,
    /// The PKCS#11 token the signing keys are in (`None`: PEM files in the data directory).
    pub signing_vault: Option<SigningVault>,
    /// Request body limits.
    pub body_limits: BodyLimits,
    /// Connection limits and timeouts.
    pub http_config: HttpConfig,
    /// Most requests waiting for one license.
    pub license_queue: usize,
    /// Worker threads for connections and license actors.
    pub workers: usize,
    /// The identity providers trusted (`None`: consumers sign in with API keys only).
    pub identity: Option<IdentityConfig>,
    /// Where e-mail goes out (`None`: nothing is e-mailed).
    pub smtp: Option<SmtpConfig>,
    /// The certificate and key both listeners serve TLS with (`None`: plain HTTP and TCP).
    pub tls: Option<TlsFiles>,
    /// The proxies whose word on the client's address is believed.
    pub trusted_proxies: TrustedProxies,
    /// The MaxMind database clients' countries are told from.
    pub geoip_db: Option<PathBuf>,
    /// CA certificates (PEM) that `https://` webhook receivers may chain to besides the web's.
    pub webhooks_ca_pem: Option<String>,
    /// The JetStream cluster the journal is on (`None`: the data directory's journal).
    pub cluster: Option<ClusterSettings>,
    /// The file the settings were read from, if any.
    pub config_file: Option<PathBuf>,
}

/// Reads the configuration file at `path`.
pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let io = |source| ConfigError::Io { path: path.to_path_buf(), source };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_FILE_BYTES {
        return Err(ConfigError::TooLarge(path.to_path_buf()));
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    parse_file(path, &text)
}

/// Parses the text of a configuration file (`path` names it in errors).
pub fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })
}

/// Refuses an issuer this server cannot fetch keys from, or that names no audience.
fn check_issuer(trusted: &TrustedIssuer) -> Result<(), String> {
    let issuer = &trusted.issuer;
    let scheme_ok = issuer.starts_with("https://") || issuer.starts_with("http://");
    if !scheme_ok || issuer.parse::<hyper::Uri>().is_err() {
        return Err(format!("an issuer is an https:// (or http://) URL, not {issuer:?}"));
    }
    if trusted.audience.trim().is_empty() {
        return Err(format!("{issuer}: the audience must not be empty"));
    }
    Ok(())
}

/// The token settings of `key`: the module from `[pkcs11]`, the PIN from `LEASEHOLD_PKCS11_PIN`
/// or `[pkcs11]`.
fn signing_vault(key: KeyUri, file: FilePkcs11) -> Result<SigningVault, ConfigError> {
    let module = file.module.ok_or_else(|| {
        ConfigError::Setting(format!("{key}: a key in a PKCS#11 token needs the module: set [pkcs11] module"))
    })?;
    let pin = std::env::var("LEASEHOLD_PKCS11_PIN").ok().or(file.pin).ok_or_else(|| {
        ConfigError::Setting(format!("{key}: the token's PIN is [pkcs11] pin or LEASEHOLD_PKCS11_PIN"))
    })?;
    Ok(SigningVault { key, module, pin })
}

/// The cluster settings from the flags and the `[cluster]` table; `None` when no NATS server is
/// named. A node runs clustered only with a name and the monitoring URLs that show its servers
/// fsync before they acknowledge.
fn cluster_settings(
    args: &ServeArgs,
    file: FileCluster,
    invalid: &impl Fn(&'static str, String) -> ConfigError,
) -> Result<Option<ClusterSettings>, ConfigError> {
    let list = |text: &str| text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let nats: Vec<String> = args.nats.as_deref().map_or(file.nats, list);
    let monitors: Vec<String> = args.nats_monitor.as_deref().map_or(file.monitor, list);
    let node = args.node.clone().or(file.node);
    if nats.is_empty() {
        return match (node, monitors.is_empty(), file.partitions, file.replicas) {
            (None, true, None, None) => Ok(None),
            _ => Err(ConfigError::Setting(
                "cluster settings without NATS servers: name them with --nats or [cluster] nats".into(),
            )),
        };
    }
    if let Some(url) = nats.iter().find(|url| !url.starts_with("nats://") && !url.starts_with("tls://")) {
        return Err(ConfigError::Setting(format!("NATS server {url:?}: a nats:// or tls:// URL")));
    }
    let Some(node) = node.filter(|n| !n.trim().is_empty()) else {
        return Err(ConfigError::Setting("a clustered node needs its name: --node or [cluster] node".into()));
    };
    if monitors.is_empty() {
        return Err(ConfigError::Setting(
            "a clustered node checks that NATS fsyncs before it acknowledges: name the servers' \
             monitoring URLs with --nats-monitor or [cluster] monitor"
                .into(),
        ));
    }
    if let Some(url) = monitors.iter().find(|url| !url.starts_with("http://")) {
        return Err(ConfigError::Setting(format!("NATS monitoring URL {url:?}: an http:// URL")));
    }
    let partitions = file.partitions.unwrap_or(DEFAULT_PARTITIONS);
    if partitions == 0 || partitions > leasehold_engine::ids::MAX_PARTITIONS {
        let most = leasehold_engine::ids::MAX_PARTITIONS;
        return Err(invalid("cluster.partitions", format!("between 1 and {most}, not {partitions}")));
    }
    let replicas = file.replicas.unwrap_or(DEFAULT_REPLICAS);
    if !(1..=5).contains(&replicas) {
        return Err(invalid("cluster.replicas", format!("between 1 and 5 (JetStream's limit), not {replicas}")));
    }
    Ok(Some(ClusterSettings { nats, monitors, node, partitions, replicas }))
}

fn check_public_url(url: &str) -> Result<String, String> {
    let trimmed = url.trim().trim_end_matches('/');
    let host = trimmed.strip_prefix("https://").or_else(|| trimmed.strip_prefix("http://"));
    match host {
        Some(rest) if !rest.is_empty() && !rest.contains(char::is_whitespace) => Ok(trimmed.to_owned()),
        _ => Err(format!("a public URL is http(s)://host[:port][/path], not {url:?}")),
    }
}

/// Half the cores, at least one. The signer pool has a thread per core, and a signed checkout
/// spends most of its CPU there; fewer workers mean a request crosses threads less often and the
/// workers sleep and wake less (a thread switch is costly, on a VM most of all). On a small
/// machine that leaves more of the cores to the signers, so more signed checkouts get through;
/// what it costs is pipelined TCP checks, which one worker thread serves alone.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get() / 2).max(1)
}

impl Settings {
    /// Merges the flags and environment (`args`; clap has already put flags over environment)
    /// over the file (`file`, read from `file_path`) over the defaults.
    pub fn resolve(args: &ServeArgs, file: FileConfig, file_path: Option<&Path>) -> Result<Settings, ConfigError> {
        let path = file_path.map(Path::to_path_buf).unwrap_or_default();
        let invalid = |key: &'static str, message: String| ConfigError::Invalid { path: path.clone(), key, message };
        let file_durability = match &file.durability {
            Some(text) => Some(text.parse::<DurabilityMode>().map_err(|m| invalid("durability", m))?),
            None => None,
        };
        let file_alg = match &file.signing_alg {
            Some(text) => Some(parse_algorithm(text).map_err(|m| invalid("signing_alg", m))?),
            None => None,
        };
        let public_url = match (&args.public_url, &file.public_url) {
            (Some(url), _) => Some(check_public_url(url).map_err(ConfigError::Setting)?),
            (None, Some(url)) => Some(check_public_url(url).map_err(|m| invalid("public_url", m))?),
            (None, None) => None,
        };
        if file.admin_token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(invalid("admin_token", "must not be empty (leave it out to generate one)".into()));
        }
        let identity = match file.identity {
            Some(identity) if !identity.issuers.is_empty() || !identity.applications.is_empty() => {
                for trusted in &identity.issuers {
                    check_issuer(trusted).map_err(|m| invalid("identity.issuers", m))?;
                }
                let mut applications = Vec::new();
                for app in identity.applications {
                    let pem = std::fs::read_to_string(&app.public_key_file).map_err(|e| {
                        invalid("identity.applications", format!("{}: {e}", app.public_key_file.display()))
                    })?;
                    applications.push(TrustedApplication {
                        key_id: app.key_id,
                        issuer: app.issuer,
                        public_key_pem: pem,
                        identity_issuer: app.identity_issuer,
                    });
                }
                let refresh_s = identity.jwks_min_refresh_s.unwrap_or(DEFAULT_JWKS_MIN_REFRESH_S);
                let jwks_min_refresh = Duration::from_secs(refresh_s);
                let extra_roots_pem = match &identity.ca_file {
                    Some(file) => Some(
                        std::fs::read_to_string(file)
                            .map_err(|e| invalid("identity.ca_file", format!("{}: {e}", file.display())))?,
                    ),
                    None => None,
                };
                Some(IdentityConfig { issuers: identity.issuers, applications, jwks_min_refresh, extra_roots_pem })
            }
            _ => None,
        };
        let signing_key = match (&args.signing_key, &file.signing_key) {
            (Some(text), _) => {
                Some(KeyUri::parse(text).map_err(|m| ConfigError::Setting(format!("--signing-key: {m}")))?)
            }
            (None, Some(text)) => Some(KeyUri::parse(text).map_err(|m| invalid("signing_key", m))?),
            (None, None) => None,
        };
        let signing_vault = match (signing_key, file.pkcs11) {
            (Some(key), pkcs11) => Some(signing_vault(key, pkcs11.unwrap_or_default())?),
            // Keys would silently stay PEM files while the file says they are in a token.
            (None, Some(_)) => {
                return Err(invalid("pkcs11", "no signing_key (or --signing-key) names a key in the token".into()))
            }
            (None, None) => None,
        };
        let webhooks_ca_pem = match &file.webhooks {
            Some(webhooks) => Some(
                std::fs::read_to_string(&webhooks.ca_file)
                    .map_err(|e| invalid("webhooks.ca_file", format!("{}: {e}", webhooks.ca_file.display())))?,
            ),
            None => None,
        };
        let trusted_proxies = match &args.trusted_proxies {
            Some(list) => {
                TrustedProxies::parse(list).map_err(|m| ConfigError::Setting(format!("trusted proxies: {m}")))?
            }
            None => {
                TrustedProxies::parse(&file.trusted_proxies.join(",")).map_err(|m| invalid("trusted_proxies", m))?
            }
        };
        let cluster = cluster_settings(args, file.cluster.unwrap_or_default(), &invalid)?;
        let limits = &file.limits;
        let defaults = HttpConfig::default();
        let secs = Duration::from_secs;
        let default_http: SocketAddr = DEFAULT_HTTP.parse().map_err(|_| ConfigError::Setting(DEFAULT_HTTP.into()))?;
        let settings = Settings {
            http: args.http.or(file.http).unwrap_or(default_http),
            tcp: args.tcp.or(file.tcp),
            data_dir: args.data_dir.clone().or(file.data_dir).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            durability: args.durability.or(file_durability).unwrap_or_default(),
            events_retention_days: args
                .events_retention_days
                .or(file.events_retention_days)
                .unwrap_or(DEFAULT_EVENTS_RETENTION_DAYS),
            file_admin_token: file.admin_token.map(|t| t.trim().to_owned()),
            demo: args.demo.or(file.demo).unwrap_or(false),
            public_url,
            signing_alg: args.signing_alg.or(file_alg).unwrap_or(Algorithm::RS256),
            signing_vault,
            body_limits: BodyLimits {
                max_bytes: args.max_body_bytes.or(limits.max_body_bytes).unwrap_or(DEFAULT_MAX_BODY_BYTES),
                read_timeout: secs(
                    args.body_read_timeout_s.or(limits.body_read_timeout_s).unwrap_or(DEFAULT_BODY_READ_TIMEOUT_S),
                ),
            },
            http_config: HttpConfig {
                max_connections: args.max_connections.or(limits.max_connections).unwrap_or(defaults.max_connections),
                max_head_bytes: args.max_head_bytes.or(limits.max_head_bytes).unwrap_or(defaults.max_head_bytes),
                header_read_timeout: args
                    .header_read_timeout_s
                    .or(limits.header_read_timeout_s)
                    .map_or(defaults.header_read_timeout, secs),
                idle_timeout: args.idle_timeout_s.or(limits.idle_timeout_s).map_or(defaults.idle_timeout, secs),
                shutdown_grace: args.shutdown_grace_s.or(limits.shutdown_grace_s).map_or(defaults.shutdown_grace, secs),
            },
            license_queue: args.license_queue.or(limits.license_queue).unwrap_or(DEFAULT_MAILBOX_CAPACITY),
            workers: args.workers.or(file.workers).unwrap_or_else(default_workers),
            identity,
            smtp: file.smtp,
            tls: match (&args.tls_cert, &args.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert: cert.clone(), key: key.clone() }),
                _ => file.tls.map(|t| TlsFiles { cert: t.cert_file, key: t.key_file }),
            },
            trusted_proxies,
            geoip_db: args.geoip_db.clone().or(file.geoip_db),
            webhooks_ca_pem,
            cluster,
            config_file: file_path.map(Path::to_path_buf),
        };
        settings.check()?;
        Ok(settings)
    }

    /// Refuses limits that would make the server useless.
    fn check(&self) -> Result<(), ConfigError> {
        let positive = [
            ("max_body_bytes", self.body_limits.max_bytes == 0),
            ("body_read_timeout_s", self.body_limits.read_timeout.is_zero()),
            ("max_connections", self.http_config.max_connections == 0),
            ("max_head_bytes", self.http_config.max_head_bytes == 0),
            ("header_read_timeout_s", self.http_config.header_read_timeout.is_zero()),
            ("idle_timeout_s", self.http_config.idle_timeout.is_zero()),
            ("license_queue", self.license_queue == 0),
            ("events_retention_days", self.events_retention_days == 0),
            ("workers", self.workers == 0),
        ];
        match positive.iter().find(|(_, zero)| *zero) {
            Some((key, _)) => Err(ConfigError::Setting(format!("{key} must be positive"))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn args(flags: &[&str]) -> ServeArgs {
        Cli::try_parse_from(std::iter::once("serve").chain(flags.iter().copied())).expect("valid flags").args
    }

    fn file(text: &str) -> Result<FileConfig, ConfigError> {
        parse_file(Path::new("leasehold.toml"), text)
    }

    #[test]
    fn an_unknown_key_is_an_error_that_names_it() {
        let err = file("htp = \"127.0.0.1:1\"\n").unwrap_err().to_string();
        assert!(err.contains("htp"), "{err}");
        let err = file("[limits]\nmax_body = 3\n").unwrap_err().to_string();
        assert!(err.contains("max_body"), "{err}");
    }

    #[test]
    fn the_example_file_is_valid_and_sets_what_it_says() {
        let text = include_str!("../../examples/leasehold.toml");
        let settings = Settings::resolve(&args(&[]), file(text).expect("the example parses"), None).unwrap();
        assert_eq!(settings.http, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(settings.durability, DurabilityMode::Sync);
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let parsed =
            file("http = \"127.0.0.1:9001\"\ndurability = \"none\"\nworkers = 3\n[limits]\nmax_body_bytes = 1000\n")
                .unwrap();
        let settings = Settings::resolve(&args(&["--durability", "batched:5"]), parsed, None).unwrap();
        assert_eq!(settings.workers, 3);
        let settings_with_flag = Settings::resolve(&args(&["--workers", "2"]), file("workers = 3\n").unwrap(), None);
        assert_eq!(settings_with_flag.unwrap().workers, 2);
        let zero = Settings::resolve(&args(&["--workers", "0"]), file("").unwrap(), None).unwrap_err();
        assert!(zero.to_string().contains("workers"), "{zero}");
        assert_eq!(settings.http, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(settings.durability, DurabilityMode::Batched { every_ms: 5 });
        assert_eq!(settings.body_limits.max_bytes, 1000);
        assert_eq!(settings.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(settings.signing_alg, Algorithm::RS256);
    }

    #[test]
    fn a_signing_key_in_a_token_is_a_pkcs11_uri_with_its_module_and_pin() {
        let err = Settings::resolve(&args(&[]), file("signing_key = \"pkcs11:token=t\"\n").unwrap(), None).unwrap_err();
        assert!(err.to_string().contains("signing_key"), "{err}");
        let uri = "pkcs11:token=t;object=o";
        let err = Settings::resolve(&args(&["--signing-key", uri]), file("").unwrap(), None).unwrap_err();
        assert!(err.to_string().contains("[pkcs11] module"), "{err}");
        let text = "signing_key = \"pkcs11:token=t;object=o\"\n[pkcs11]\nmodule = \"/m.so\"\npin = \"8642\"\n";
        let vault = Settings::resolve(&args(&[]), file(text).unwrap(), None).unwrap().signing_vault.unwrap();
        assert_eq!(
            (vault.key.object.as_str(), vault.module.as_path(), vault.pin.as_str()),
            ("o", Path::new("/m.so"), "8642")
        );
        assert!(!format!("{vault:?}").contains("8642"), "the PIN is never printed");
        let orphan = "[pkcs11]\nmodule = \"/m.so\"\npin = \"1\"\n";
        let err = Settings::resolve(&args(&[]), file(orphan).unwrap(), None).unwrap_err();
        assert!(err.to_string().contains("no signing_key"), "{err}");
    }

    #[test]
    fn bad_values_in_the_file_name_their_key() {
        let err = Settings::resolve(&args(&[]), file("durability = \"sometimes\"\n").unwrap(), None).unwrap_err();
        assert!(err.to_string().contains("durability"), "{err}");
        let err = Settings::resolve(&args(&[]), file("signing_alg = \"HS256\"\n").unwrap(), None).unwrap_err();
        assert!(err.to_string().contains("signing_alg"), "{err}");
        let err = file("http = \"nowhere\"\n").unwrap_err().to_string();
        assert!(err.contains("http"), "{err}");
        let err = Settings::resolve(&args(&[]), file("public_url = \"ftp://x\"\n").unwrap(), None).unwrap_err();
        assert!(err.to_string().contains("public_url"), "{err}");
    }
}
