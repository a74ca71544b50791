//! The licensing domain as plain data: who buys (licensees), who consumes (consumers), what is
//! sold (products, features, tiers), what was bought (licenses) and what is in use (leases).

pub mod activation;
pub mod catalog;
pub mod credential;
pub mod lease;
pub mod license;
pub mod organization;
pub mod party;
pub mod platform;
pub mod signup;
pub mod version;

pub use activation::{ActivationBatch, ActivationCode, LicenseTemplate, Redemption};
pub use catalog::{CatalogError, Feature, Product, Tier};
pub use credential::{Credential, Role};
pub use lease::{Anchors, Lease, LeaseMode};
pub use license::{
    Credit, Dimension, Enforcement, FeatureOverrides, GeoRules, IpRules, License, LicenseModel, LicenseStatus,
    SessionAnchor, VersionRange,
};
pub use organization::{Entitlement, Group, Invitation, InvitationAnswer};
pub use party::{ConnectedIdentity, Consumer, ConsumerKind, Licensee, LicenseeKind};
pub use platform::{KeyToken, MachineActivation};
pub use signup::{Account, SignUp};
