//! A licensee's organization (SPEC section 12): groups of its users and of its device clients,
//! and entitlements that say which groups may use which of its licenses.

use crate::ids::{ConsumerId, EntitlementId, GroupId, LicenseeId};
use crate::model::ConsumerKind;
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
