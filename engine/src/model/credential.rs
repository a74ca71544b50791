//! Credentials of the admin API (SPEC section 12): who may administer what.

use crate::ids::{CredentialId, LicenseeId};
use serde::{Deserialize, Serialize};

/// What a credential may do under `/admin/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything (the vendor's administrators; the bootstrap admin token).
    Admin,
    /// Every read, nothing else.
    Reader,
    /// A licensee's own administrator: reads and runs that licensee's organization only.
    #[serde(rename = "orgadmin")]
    OrgAdmin,
}

impl Role {
    /// The role as the API names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Reader => "reader",
            Role::OrgAdmin => "orgadmin",
        }
    }
}

/// A credential: a bearer token with a role, kept only as the token's digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// Its id (what events name as their actor).
    pub id: CredentialId,
    /// Display name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The licensee an `orgadmin` acts for; `None` for the other roles.
    pub licensee: Option<LicenseeId>,
    /// SHA-256 of its token; the token itself is shown once and never stored.
    pub token_sha256: [u8; 32],
}
