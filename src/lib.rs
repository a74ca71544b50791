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

pub use leasehold_engine::model::{
    Anchors, ConsumerKind, Credit, Dimension, Enforcement, Feature, Lease, LeaseMode, License, LicenseModel,
    LicenseStatus, LicenseeKind, SessionAnchor, Tier, VersionRange,
};
pub use leasehold_engine::*;
