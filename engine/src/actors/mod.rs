//! The actor runtime around the pure domain: one actor per license owns that license's live
//! state; the router finds (or starts) the actor for a license; the workers are the arbiter
//! threads, one per core, that the actors are spread over.

pub mod license;
pub mod router;
pub mod workers;

pub use license::LicenseActor;
pub use router::{Router, RunningActors};
pub use workers::Workers;
