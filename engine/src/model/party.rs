//! Licensees (customers) and consumers (users and devices that use licenses).

use crate::ids::{ConsumerId, LicenseeId};
use serde::{Deserialize, Serialize};

/// Whether a licensee is an organization or a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LicenseeKind {
    /// A company or other organization.
    Organization,
    /// A natural person with personal licenses.
    Person,
}

/// A customer that holds licenses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Licensee {
    /// Its id.
    pub id: LicenseeId,
    /// Display name.
    pub name: String,
    /// Organization or person.
    pub kind: LicenseeKind,
    /// The vendor's own id for it (a CRM or shop record), when it has one.
    #[serde(default, with = "crate::shapes::since_format_3")]
    pub external_id: Option<String>,
}

/// Whether a consumer is a human user or a device client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsumerKind {
    /// A person using the software.
    User,
    /// A machine or service that uses the software without a person.
    Device,
}

/// Who consumes licenses; belongs to one or more licensees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumer {
    /// Its id (the `sub` of its tokens).
    pub id: ConsumerId,
    /// Display name.
    pub name: String,
    /// User or device.
    pub kind: ConsumerKind,
    /// The licensees whose licenses it may use.
    pub licensees: Vec<LicenseeId>,
    /// Contact address, when known.
    pub email: Option<String>,
    /// SHA-256 of its API key; the key itself is shown once and never stored.
    pub api_key_sha256: [u8; 32],
    /// The vendor's own id for it, when it has one.
    #[serde(default, with = "crate::shapes::since_format_3")]
    pub external_id: Option<String>,
    /// A disabled consumer's key is refused and its leases are not renewed.
    #[serde(default, with = "crate::shapes::since_format_3")]
    pub disabled: bool,
    /// The identity provider's account it signs in with, when it has one (SPEC section 13).
    #[serde(default, with = "crate::shapes::since_format_7")]
    pub identity: Option<ConnectedIdentity>,
}

/// An account at an identity provider: the issuer of its tokens and its subject there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConnectedIdentity {
    /// The issuer (`iss`).
    pub issuer: String,
    /// The subject (`sub`), unique within the issuer.
    pub subject: String,
}
