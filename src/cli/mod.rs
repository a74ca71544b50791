//! What the `leasehold` commands do: `serve` (start the server), the admin token it guards the
//! admin API with, the `--demo` data set, and `admin` (a client of that admin API).

pub mod admin;
pub mod admin_token;
#[cfg(feature = "bench")]
pub mod bench;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod node_keys;
pub mod serve;

/// Logs go to stderr, filtered by `LEASEHOLD_LOG` (or, when it is unset, `RUST_LOG`): a level
/// (`error`, `warn`, `info`, `debug`, `trace`) or `RUST_LOG`-style directives such as
/// `info,leasehold_transports=debug` (every request is logged at `debug`); default `info`. A
/// filter that does not parse is reported and `info` used. Stdout is kept for what a person
/// should read (addresses, keys).
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let (variable, directives) = match std::env::var("LEASEHOLD_LOG") {
        Ok(value) => ("LEASEHOLD_LOG", value),
        Err(_) => ("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_default()),
    };
    let (filter, bad) = match EnvFilter::try_new(directives.trim()) {
        _ if directives.trim().is_empty() => (EnvFilter::new("info"), None),
        Ok(filter) => (filter, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
    if let Some(e) = bad {
        tracing::warn!(variable, error = %e, "ignoring a log filter that does not parse; logging at info");
    }
}
