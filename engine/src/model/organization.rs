//! A licensee's organization (SPEC section 12): groups of its users and of its device clients,
//! entitlements that say which groups may use which of its licenses, and invitations to groups.

use crate::ids::{ConsumerId, EntitlementId, GroupId, InvitationId, LicenseeId};
use crate::model::ConsumerKind;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A group of a licensee's consumers, all of one kind (users, or device clients).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Its id.
    pub id: GroupId,
    /// The licensee whose consumers it groups.
    pub licensee: LicenseeId,
    /// Display name.
    pub name: String,
    /// Users or device clients: the only kind of consumer it holds.
    pub kind: ConsumerKind,
    /// Its members.
    pub members: BTreeSet<ConsumerId>,
}

/// An entitlement: a collection of a licensee's licenses (each license names its entitlement)
/// and the groups whose members may use them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entitlement {
    /// Its id.
    pub id: EntitlementId,
    /// The licensee whose licenses it holds.
    pub licensee: LicenseeId,
    /// Display name.
    pub name: String,
    /// The groups whose members may use its licenses (a member of a group of its own kind).
    pub groups: Vec<GroupId>,
}

/// An invitation to join a group: its token (kept as a digest) works once, until it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// Its id.
    pub id: InvitationId,
    /// The group it invites to.
    pub group: GroupId,
    /// Whom it was sent to.
    pub email: String,
    /// SHA-256 of its token; the token itself is shown once and never stored.
    pub token_sha256: [u8; 32],
    /// After this it can no longer be answered.
    pub expires_at: Timestamp,
    /// How it was answered, once it was.
    pub answer: Option<InvitationAnswer>,
}

/// How an invitation was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvitationAnswer {
    /// Accepted: `consumer` joined the group.
    Accepted {
        /// Who joined.
        consumer: ConsumerId,
        /// When.
        at: Timestamp,
    },
    /// Declined.
    Declined {
        /// When.
        at: Timestamp,
    },
}
