//! `leasehold serve`: opens the data directory (journal, signing keys, admin token), starts the
//! engine, the HTTP server and the binary TCP protocol's listener, prints what is listening and
//! what to run next, and shuts down
//! gracefully on SIGTERM or Ctrl-C (stop accepting, finish requests in flight, flush).

use super::admin_token::{self, AdminTokenError, Source};
use super::cluster::{ClusterError, NodeJournal};
use super::config::{self, ConfigError, FileConfig, Settings};
use super::demo;
use super::node_keys::{NodeKeys, NodeKeysError};
use leasehold_engine::engine::EXPIRY_CHECK_EVERY;
use leasehold_engine::tokens::{PoolConfig, SignerPool};
use leasehold_engine::{AdminError, Engine};
use leasehold_persistence::keys::{KeyStore, KeyStoreError};
use leasehold_persistence::pkcs11::Pkcs11Token;
use leasehold_persistence::{ClusterNode, JournalConfig, PersistenceError, SledJournal};
use leasehold_transports::geoip::GeoIpDatabase;
use leasehold_transports::http::forward::Forwarder;
use leasehold_transports::http::{self, HttpState, ServerMetrics};
use leasehold_transports::identity::Identities;
use leasehold_transports::mail::{MailError, Mailer};
use leasehold_transports::tcp::{self, TcpConfig, TcpState};
use leasehold_transports::tls::{ReloadableCertificate, ServerTls};
use leasehold_transports::webhooks::Webhooks;
use std::net::SocketAddr;
use std::sync::Arc;

pub use super::config::ServeArgs;

/// Where the binary protocol listens unless `--tcp` says otherwise (SPEC section 5).
const DEFAULT_TCP_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7070);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The journal could not be opened or recovered.
    #[error("opening the journal: {0}")]
    Journal(#[from] PersistenceError),
    /// The signing keys could not be loaded or created.
    #[error("signing keys: {0}")]
    Keys(#[from] NodeKeysError),
    /// The admin token could not be set up.
    #[error("admin token: {0}")]
    AdminToken(#[from] AdminTokenError),
    /// Seeding the demo failed.
    #[error("seeding the demo: {0}")]
    Demo(#[from] AdminError),
    /// The settings are wrong.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// The `[smtp]` settings cannot work.
    #[error("configuration: {0}")]
    Mail(#[from] MailError),
    /// The node cannot run on the NATS cluster.
    #[error("cluster: {0}")]
    Cluster(#[from] ClusterError),
}

impl From<KeyStoreError> for ServeError {
    fn from(e: KeyStoreError) -> Self {
        ServeError::Keys(e.into())
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// Runs the server until a shutdown signal.
pub fn run(args: ServeArgs) -> Result<(), ServeError> {
    let file = match &args.config {
        Some(path) => config::read_file(path)?,
        None => FileConfig::default(),
    };
    let settings = Settings::resolve(&args, file, args.config.as_deref())?;
    // The engine runs its own worker threads (and the signer pool its own); this runtime only
    // accepts connections, waits for signals and seeds the demo.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("leasehold-main")
        .build()
        .map_err(io("starting the runtime"))?;
    runtime.block_on(serve(settings))
}

async fn serve(settings: Settings) -> Result<(), ServeError> {
    let started = start(&settings).await?;
    print_banner(&settings, &started);
    started.serve_until(shutdown_signal()).await
}

/// A server whose data directory is open, whose engine runs and whose listeners are bound:
/// what `leasehold serve` runs, and what `leasehold bench --in-process` hosts in its own process.
pub struct Started {
    /// Where HTTP listens.
    pub http_addr: SocketAddr,
    /// Where the binary protocol listens.
    pub tcp_addr: SocketAddr,
    recovered_licenses: usize,
    admin_source: Source,
    demo: Option<demo::Demo>,
    listener: tokio::net::TcpListener,
    tcp_listener: tokio::net::TcpListener,
    state: Arc<HttpState>,
    tcp_state: Arc<TcpState>,
    http_config: http::HttpConfig,
    /// The certificate HTTP serves TLS with, if any.
    tls: Option<ServerTls>,
    node_keys: NodeKeys,
    signer: Arc<SignerPool>,
    journal: NodeJournal,
}

/// Opens the data directory (journal, signing keys, admin token), starts the engine and binds
/// both listeners.
pub async fn start(settings: &Settings) -> Result<Started, ServeError> {
    let data_dir = &settings.data_dir;
    std::fs::create_dir_all(data_dir).map_err(io(format!("creating {}", data_dir.display())))?;

    let mut key_store = KeyStore::new(data_dir);
    if settings.signing_vault.is_some() && settings.cluster.is_some() {
        return Err(ConfigError::Setting(
            "the nodes of a cluster sign with the keys they share in JetStream, and keys in a PKCS#11 token \
             cannot be shared: drop the pkcs11: signing key or the cluster"
                .into(),
        )
        .into());
    }
    if let Some(vault) = &settings.signing_vault {
        let token = Pkcs11Token::open(&vault.module, &vault.key.token, &vault.pin).map_err(KeyStoreError::from)?;
        tracing::info!(key = %vault.key, "signing keys in a PKCS#11 token");
        key_store = key_store.with_vault(token, vault.key.clone());
    }
    let listener = tokio::net::TcpListener::bind(settings.http)
        .await
        .map_err(io(format!("listening for HTTP on {}", settings.http)))?;
    let http_addr = listener.local_addr().map_err(io("reading the HTTP address"))?;
    let tls = match &settings.tls {
        Some(files) => {
            Some(ServerTls::new(files.clone(), &[b"http/1.1"]).map_err(|e| ConfigError::Setting(format!("TLS: {e}")))?)
        }
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let issuer = settings.public_url.clone().unwrap_or_else(|| format!("{scheme}://{http_addr}"));
    let tcp_wanted = settings.tcp.unwrap_or(DEFAULT_TCP_ADDR);
    let tcp_listener =
        tokio::net::TcpListener::bind(tcp_wanted).await.map_err(io(format!("listening for TCP on {tcp_wanted}")))?;
    let tcp_addr = tcp_listener.local_addr().map_err(io("reading the TCP address"))?;

    let journal_dir = data_dir.join("journal");
    let journal_config = JournalConfig {
        event_retention: Some(std::time::Duration::from_secs(
            settings.events_retention_days.saturating_mul(24 * 60 * 60),
        )),
        ..JournalConfig::with_durability(settings.durability)
    };
    let (journal, recovered) = match &settings.cluster {
        None => {
            let (journal, recovered) = SledJournal::open(&journal_dir, journal_config)?;
            (NodeJournal::Sled(Arc::new(journal)), recovered)
        }
        Some(cluster) => {
            let node = ClusterNode { http: http_addr.to_string(), tcp: tcp_addr.to_string() };
            NodeJournal::open_streams(cluster, node).await?
        }
    };
    let recovered_licenses = recovered.licenses.len();
    let webhook_key = key_store.webhook_key()?;
    let replicas = settings.cluster.as_ref().map_or(1, |c| c.replicas);
    let node_keys = NodeKeys::open(key_store, &journal, replicas, settings.signing_alg).await?;
    let keys = node_keys.ring();
    let signer =
        Arc::new(SignerPool::start(Arc::clone(&keys), PoolConfig::default()).map_err(io("starting the signer"))?);

    let mut builder = Engine::builder();
    if let Some(file) = &settings.geoip_db {
        let database = GeoIpDatabase::open(file).map_err(|e| ConfigError::Setting(format!("geoip_db: {e}")))?;
        tracing::info!(file = %file.display(), kind = database.kind(), "geolocation");
        builder = builder.geolocation(Arc::new(database));
    }
    let engine = builder
        .journal(journal.shared())
        .recovered(recovered)
        .mailbox_capacity(settings.license_queue)
        .workers(settings.workers)
        .build()
        .map_err(io("starting the engine"))?;
    journal.follow(&engine);

    let (admin_token, admin_source) = admin_token::resolve(data_dir, settings.file_admin_token.as_deref())?;
    let webhooks =
        Webhooks::start(engine.clone(), journal.delivery_log(), webhook_key, settings.webhooks_ca_pem.as_deref())
            .map_err(io("starting the webhook deliveries"))?;
    let webhooks = Arc::new(webhooks);
    let demo = if settings.demo { Some(demo::seed(&engine).await?) } else { None };
    let mailer = settings.smtp.as_ref().map(Mailer::new).transpose()?.map(Arc::new);
    let identities = settings.identity.clone().map(Identities::new).transpose();
    let identities = identities.map_err(|e| ConfigError::Setting(format!("identity.applications: {e}")))?.map(Arc::new);

    tracing::info!(
        http = %http_addr,
        tcp = %tcp_addr,
        issuer,
        data_dir = %data_dir.display(),
        durability = %settings.durability,
        workers = settings.workers,
        config = settings.config_file.as_deref().map_or_else(|| "none".into(), |f| f.display().to_string()),
        "serving"
    );

    let cluster = journal.peers();
    let state = Arc::new(HttpState {
        engine,
        signer: Arc::clone(&signer) as _,
        issuer,
        admin_token,
        limits: settings.body_limits,
        keys: Some(Arc::clone(&keys)),
        public_url: settings.public_url.clone(),
        https: tls.is_some(),
        trusted_proxies: settings.trusted_proxies.clone(),
        metrics: ServerMetrics::new(Some(journal.latency()), Some(Arc::clone(&signer))),
        key_rotation: Some(node_keys.rotation()),
        webhooks: Some(Arc::clone(&webhooks)),
        identities,
        mailer,
        sign_up_limits: Default::default(),
        // Forwarding speaks plain HTTP to the other nodes: with TLS, a node answers `notOwner`.
        forwarder: if tls.is_some() { None } else { cluster.clone().map(Forwarder::new) },
        cluster,
    });
    let tcp_state = Arc::new(TcpState {
        engine: state.engine.clone(),
        signer: Arc::clone(&signer) as _,
        issuer: state.issuer.clone(),
        keys: Some(Arc::clone(&keys)),
        trusted_proxies: settings.trusted_proxies.clone(),
    });
    Ok(Started {
        http_addr,
        tcp_addr,
        recovered_licenses,
        admin_source,
        demo,
        listener,
        tcp_listener,
        state,
        tcp_state,
        http_config: settings.http_config,
        tls,
        node_keys,
        signer,
        journal,
    })
}

impl Started {
    /// Serves both protocols until `shutdown` resolves, then drains their connections, records
    /// the keys' lifetimes, lets the signer finish and closes the journal.
    pub async fn serve_until(self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), ServeError> {
        // One signal stops both listeners; each drains its own connections.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let signal = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        let engine = self.state.engine.clone();
        let webhooks = self.state.webhooks.clone();
        let expiries = async move {
            let mut every = tokio::time::interval(EXPIRY_CHECK_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                match engine.record_expiries().await {
                    Ok(0) => {}
                    Ok(recorded) => tracing::info!(recorded, "licenses expired"),
                    Err(e) => tracing::warn!(error = %e, "could not record the licenses that expired"),
                }
            }
        };
        let expiries_stop = stopped(stop_rx.clone());
        let expiries = async move {
            tokio::select! {
                () = expiries => {}
                () = expiries_stop => {}
            }
        };
        // The TCP protocol has no ALPN name; both listeners serve the one certificate.
        let tcp_tls = match &self.tls {
            Some(tls) => Some(tls.with_alpn(&[]).map_err(|e| ConfigError::Setting(format!("TLS: {e}")))?),
            None => None,
        };
        let reloads_stop = stopped(stop_rx.clone());
        let certificate = self.tls.as_ref().map(|tls| Arc::clone(tls.certificate()));
        let reloads = async move {
            tokio::select! {
                () = reload_on_hangup(certificate) => {}
                () = reloads_stop => {}
            }
        };
        let (_, _, _, http_served, tcp_served) = tokio::join!(
            signal,
            expiries,
            reloads,
            http::serve(self.listener, self.state, self.http_config, self.tls.clone(), stopped(stop_rx.clone())),
            tcp::serve(self.tcp_listener, self.tcp_state, TcpConfig::default(), tcp_tls, stopped(stop_rx)),
        );
        http_served.map_err(io("serving HTTP"))?;
        tcp_served.map_err(io("serving TCP"))?;

        self.node_keys.save();
        if let Some(webhooks) = &webhooks {
            webhooks.stop();
        }
        self.signer.shutdown();
        self.journal.leave().await;
        self.journal.close();
        tracing::info!("stopped");
        Ok(())
    }
}

/// Reads the TLS certificate and key again at every SIGHUP; a pair that cannot be used is
/// reported and the current one kept. Without TLS (or signals), never resolves.
async fn reload_on_hangup(certificate: Option<Arc<ReloadableCertificate>>) {
    #[cfg(unix)]
    if let Some(certificate) = certificate {
        let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        match hangups {
            Ok(mut hangups) => {
                while hangups.recv().await.is_some() {
                    let cert = certificate.files().cert.display().to_string();
                    match certificate.reload() {
                        Ok(()) => tracing::info!(cert, "TLS certificate reloaded"),
                        Err(e) => tracing::warn!(error = %e, "TLS certificate not reloaded; the current one stays"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "no SIGHUP: the TLS certificate cannot be reloaded"),
        }
    }
    #[cfg(not(unix))]
    drop(certificate);
    std::future::pending::<()>().await;
}

/// What is listening, where the data is, the admin token's source and what to run next.
fn print_banner(settings: &Settings, started: &Started) {
    let scheme = if started.tls.is_some() { "https" } else { "http" };
    let base = format!("{scheme}://{}", started.http_addr);
    println!("Leasehold {} is running.", env!("CARGO_PKG_VERSION"));
    println!("HTTP listening on {base}  (/authz/, /licensing/, /admin/, /openapi.json, /metrics, /healthz)");
    println!("TCP listening on {}  (the binary protocol, docs/PROTOCOL.md)", started.tcp_addr);
    if let Some(file) = &settings.config_file {
        println!("Settings from {} (flags and LEASEHOLD_* variables win over it)", file.display());
    }
    let journal = match &settings.cluster {
        None => format!("durability {}", settings.durability),
        Some(cluster) => format!(
            "journal on NATS {} as node {}, {} partitions",
            cluster.nats.join(","),
            cluster.node,
            cluster.partitions
        ),
    };
    println!(
        "Data in {} ({journal}, {} licenses recovered); signing with {} key {}",
        settings.data_dir.display(),
        started.recovered_licenses,
        started.node_keys.ring().current().key().alg(),
        started.node_keys.ring().current().kid(),
    );
    let admin_secret = match &started.admin_source {
        Source::Environment => {
            println!("Admin token: from {}", admin_token::ENV_VAR);
            None
        }
        Source::ConfigFile => {
            println!("Admin token: from the configuration file");
            None
        }
        Source::Generated(secret) => {
            println!("Admin token (shown only now; only its digest is stored): {secret}");
            Some(secret.as_str())
        }
        Source::Stored(path) => {
            println!(
                "Admin token: the one printed at first start (digest in {}; delete it or set {} to replace it)",
                path.display(),
                admin_token::ENV_VAR
            );
            None
        }
    };
    match &started.demo {
        Some(demo) => println!("\n{}", demo::instructions(demo, &base, admin_secret)),
        None => println!(
            "\nNext: create a licensee, product, license and consumer with the admin API \
             (every call is in {base}/openapi.json), e.g.\n  \
             curl -s -H \"Authorization: Bearer {}\" -H 'Content-Type: application/json' \
             -d '{{\"name\":\"Acme\",\"kind\":\"organization\"}}' {base}/admin/licensees\n\
             or restart with --demo for a ready-made data set and commands to try.\n",
            match started.admin_source {
                Source::Environment => "$LEASEHOLD_ADMIN_TOKEN",
                _ => admin_secret.unwrap_or("<admin token>"),
            }
        ),
    }
    println!("Stop with Ctrl-C (or SIGTERM): requests in flight are finished first.");
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown requested");
}
