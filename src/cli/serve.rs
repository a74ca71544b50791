//! `leasehold serve`: opens the data directory (journal, signing keys, admin token), starts the
//! engine and the HTTP server, prints what is listening and what to run next, and shuts down
//! gracefully on SIGTERM or Ctrl-C (stop accepting, finish requests in flight, flush).

use super::admin_token::{self, AdminTokenError, Source};
use super::demo;
use clap::Args;
use leasehold_engine::time::{Clock, SystemClock};
use leasehold_engine::tokens::{Algorithm, PoolConfig, SignerPool};
use leasehold_engine::{AdminError, Engine};
use leasehold_persistence::keys::{KeyStore, KeyStoreError};
use leasehold_persistence::{DurabilityMode, JournalConfig, PersistenceError, SledJournal};
use leasehold_transports::http::{self, BodyLimits, HttpConfig, HttpState};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Options of `leasehold serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTP API (port 0 picks a free port; the address is printed).
    #[arg(long = "http", value_name = "ADDR", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Address of the binary TCP protocol (not available yet in this build).
    #[arg(long = "tcp", value_name = "ADDR")]
    tcp: Option<SocketAddr>,
    /// Where the journal, the signing keys and the admin token digest live.
    #[arg(long = "data-dir", value_name = "DIR", default_value = "./leasehold-data")]
    data_dir: PathBuf,
    /// What an answered change survives: sync (flushed before answering), batched[:<ms>], none.
    #[arg(long, value_name = "MODE", default_value = "sync", value_parser = parse_durability)]
    durability: DurabilityMode,
    /// A configuration file (not read yet in this build).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Seed a demo product, licensee, 3-seat license and consumer, and print commands to try.
    #[arg(long)]
    demo: bool,
}

fn parse_durability(text: &str) -> Result<DurabilityMode, String> {
    text.parse()
}

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
    Keys(#[from] KeyStoreError),
    /// The admin token could not be set up.
    #[error("admin token: {0}")]
    AdminToken(#[from] AdminTokenError),
    /// Seeding the demo failed.
    #[error("seeding the demo: {0}")]
    Demo(#[from] AdminError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// Runs the server until a shutdown signal.
pub fn run(args: ServeArgs) -> Result<(), ServeError> {
    // The engine runs its own worker threads (and the signer pool its own); this runtime only
    // accepts connections, waits for signals and seeds the demo.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("leasehold-main")
        .build()
        .map_err(io("starting the runtime"))?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> Result<(), ServeError> {
    let data_dir = &args.data_dir;
    std::fs::create_dir_all(data_dir).map_err(io(format!("creating {}", data_dir.display())))?;
    if args.tcp.is_some() {
        tracing::warn!("the binary TCP protocol is not available in this build yet; --tcp is ignored");
    }
    if let Some(config) = &args.config {
        tracing::warn!(file = %config.display(), "configuration files are not read yet; --config is ignored");
    }

    let journal_dir = data_dir.join("journal");
    let (journal, recovered) = SledJournal::open(&journal_dir, JournalConfig::with_durability(args.durability))?;
    let journal = Arc::new(journal);
    let recovered_licenses = recovered.licenses.len();

    let key_store = KeyStore::new(data_dir);
    let keys = Arc::new(key_store.open_or_create(Algorithm::RS256, SystemClock.now())?);
    let signer =
        Arc::new(SignerPool::start(Arc::clone(&keys), PoolConfig::default()).map_err(io("starting the signer"))?);

    let listener =
        tokio::net::TcpListener::bind(args.http).await.map_err(io(format!("listening for HTTP on {}", args.http)))?;
    let http_addr = listener.local_addr().map_err(io("reading the HTTP address"))?;
    let base = format!("http://{http_addr}");

    let engine = Engine::builder()
        .journal(Arc::clone(&journal) as _)
        .recovered(recovered)
        .signer(Arc::clone(&signer) as _)
        .issuer(base.clone())
        .build()
        .map_err(io("starting the engine"))?;

    let (admin_token, admin_source) = admin_token::resolve(data_dir)?;
    let demo = if args.demo { Some(demo::seed(&engine).await?) } else { None };

    tracing::info!(addr = %http_addr, data_dir = %data_dir.display(), durability = %args.durability, "serving");
    println!("Leasehold {} is running.", env!("CARGO_PKG_VERSION"));
    println!("HTTP listening on {base}  (/authz/, /admin/, /.well-known/jwks.json, /healthz)");
    println!(
        "Data in {} (durability {}, {recovered_licenses} licenses recovered); signing with {} key {}",
        data_dir.display(),
        args.durability,
        keys.current().key().alg(),
        keys.current().kid(),
    );
    let admin_secret = match &admin_source {
        Source::Environment => {
            println!("Admin token: from {}", admin_token::ENV_VAR);
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
    match &demo {
        Some(demo) => println!("\n{}", demo::instructions(demo, &base, admin_secret)),
        None => println!(
            "\nNext: create a licensee, product, license and consumer with the admin API, e.g.\n  \
             curl -s -H 'Authorization: Bearer <admin token>' -H 'Content-Type: application/json' \
             -d '{{\"name\":\"Acme\",\"kind\":\"organization\"}}' {base}/admin/licensees\n\
             or restart with --demo for a ready-made data set.\n"
        ),
    }
    println!("Stop with Ctrl-C (or SIGTERM): requests in flight are finished first.");

    let state = Arc::new(HttpState {
        engine,
        signer: Arc::clone(&signer) as _,
        issuer: base,
        admin_token,
        limits: BodyLimits { max_bytes: 64 * 1024, read_timeout: Duration::from_secs(10) },
        keys: Some(Arc::clone(&keys)),
    });
    http::serve(listener, state, HttpConfig::default(), shutdown_signal()).await.map_err(io("serving HTTP"))?;

    if let Err(e) = key_store.save(&keys) {
        tracing::warn!(error = %e, "could not record the signing keys' lifetimes");
    }
    signer.shutdown();
    journal.close();
    tracing::info!("stopped");
    Ok(())
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
