//! What the `leasehold` commands do: `serve` (start the server), the admin token it guards the
//! admin API with, and the `--demo` data set.

pub mod admin_token;
pub mod demo;
pub mod serve;

/// Logs go to stderr, at the level `LEASEHOLD_LOG` names (`error`, `warn`, `info`, `debug`,
/// `trace`; default `info`). Stdout is kept for what a person should read (addresses, keys).
pub fn init_logging() {
    let level = std::env::var("LEASEHOLD_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr).with_target(false).init();
}
