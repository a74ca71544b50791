//! # Leasehold
//!
//! A license server and lease engine compatible with the 10Duke licensing APIs. This crate is
//! the embedding API: host the engine in your own process and call it directly.
//!
//! ```no_run
//! use leasehold::{ConsumeRequest, Credit, Dimension, Enforcement, Engine, NewLicense};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::builder().build()?;
//! # let (licensee, consumer) = (todo!(), todo!());
//! let seats = Credit { dimension: Dimension::Seats, qty: 3, enforcement: Enforcement::Enforced };
//! let license = engine.create_license(NewLicense::new(licensee, "ThreeDee", seats)).await?;
//! let decision = engine.consume(ConsumeRequest::new(consumer, "ThreeDee")).await?;
//! # Ok(()) }
//! ```
//!
//! The engine itself lives in [`leasehold_engine`]; this crate re-exports what embedders need.
//! [`client`] talks to a running server over the binary TCP protocol.

pub use leasehold_engine::model::{
    Anchors, ConsumerKind, Credit, Dimension, Enforcement, Feature, Lease, LeaseMode, License, LicenseModel,
    LicenseStatus, LicenseeKind, SessionAnchor, Tier, VersionRange,
};
pub use leasehold_engine::*;

/// The Rust client of Leasehold's binary TCP protocol (SPEC section 6, `docs/PROTOCOL.md`):
/// `Client::connect(addr, Auth::ApiKey(key))`, then pipelined async calls from any number of
/// tasks. See `examples/tcp_client.rs`.
pub mod client {
    pub use leasehold_transports::tcp::client::{Auth, Client, ClientConfig, ClientError, ClientTls};
    pub use leasehold_transports::tcp::messages::{
        Anchors, Authenticated, Consume, Denied, Dialect, Failure, FailureCode, Filters, Granted, Mode, Release,
        Released, Renew, TokenChoice, TokenOptions, Used,
    };
}
