//! Rebuilding the engine's state from a journal: the directory and every license's live state,
//! exactly as they were when the last entry was acknowledged.

use crate::decide::state::LicenseStateSnapshot;
use crate::decide::{LicenseEvent, LicenseState, Violation};
use crate::directory::{Directory, DirectorySnapshot, DirectorySnapshotV1};
use crate::ids::LicenseId;
use crate::journal::{Change, JournalEntry};
use crate::model::License;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// The state a journal describes.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Parties, products and license terms.
    pub directory: Directory,
    /// Each license's live state and the time of its last change.
    pub licenses: HashMap<LicenseId, (LicenseState, Timestamp)>,
    /// The licenses whose rebuilt state breaks an invariant (a bug that wrote the journal, or a
    /// damaged journal): they start halted, answering nothing, instead of granting from a state
    /// that cannot be trusted.
    pub halted: HashMap<LicenseId, Violation>,
}

impl Recovered {
    /// Applies one more entry. An entry for a license that was never created is skipped: it
    /// cannot come from this engine's own journal, and skipping is safer than inventing terms.
    pub fn apply(&mut self, entry: &JournalEntry) {
        apply_to_directory(&mut self.directory, entry);
        self.apply_to_licenses(entry);
    }

    /// What `entry` does to the licenses' live states, and nothing else: [`Recovered::apply`]
    /// without the directory. A license's state depends only on its own entries, so the states
    /// of a set of licenses can be folded apart from the directory and from the other licenses.
    pub fn apply_to_licenses(&mut self, entry: &JournalEntry) {
        match &entry.change {
            Change::Directory(event) => {
                if let Some(license) = event.new_license() {
                    let state = LicenseState::new(Arc::clone(license));
                    self.licenses.entry(license.id).or_insert((state, entry.at));
                }
            }
            Change::Event(_) => {}
            Change::License { license, event } => {
                if let LicenseEvent::Terms(terms) = event {
                    self.licenses.entry(*license).or_insert_with(|| (LicenseState::new(terms.clone()), entry.at));
                }
                if let Some((state, last_at)) = self.licenses.get_mut(license) {
                    state.expire_until(entry.at, |_| {});
                    if let Err(violation) = state.apply(entry.at, event) {
                        self.halted.entry(*license).or_insert(violation);
                    }
                    *last_at = (*last_at).max(entry.at);
                }
                if let LicenseEvent::Deleted = event {
                    self.licenses.remove(license);
                    self.halted.remove(license);
                }
            }
        }
    }

    /// The license whose state [`Recovered::apply_to_licenses`] creates, changes or deletes for
    /// `entry`, if any: no other license's is touched by it.
    pub fn license_changed_by(entry: &JournalEntry) -> Option<LicenseId> {
        match &entry.change {
            Change::Directory(event) => event.new_license().map(|license| license.id),
            Change::Event(_) => None,
            Change::License { license, .. } => Some(*license),
        }
    }

    /// Checks every license's whole state ([`LicenseState::check_consistency`]) and halts the
    /// ones that break an invariant; returns how many are halted. Run once recovery has rebuilt
    /// the state, whether from a snapshot, a replay or both.
    pub fn check(&mut self) -> usize {
        for (id, (state, _)) in &self.licenses {
            if self.halted.contains_key(id) {
                continue;
            }
            if let Err(violation) = state.check_consistency() {
                self.halted.insert(*id, violation);
            }
        }
        self.halted.len()
    }

    /// Replays `entries` in order.
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = &'a JournalEntry>) -> Self {
        let mut recovered = Recovered::default();
        for entry in entries {
            recovered.apply(entry);
        }
        recovered
    }
}

/// What `entry` does to the directory, license terms included: [`Recovered::apply`] without the
/// licenses' states.
pub fn apply_to_directory(directory: &mut Directory, entry: &JournalEntry) {
    match &entry.change {
        Change::Directory(event) => directory.apply(event),
        Change::Event(_) => {}
        Change::License { event: LicenseEvent::Terms(terms), .. } => directory.set_license(Arc::clone(terms)),
        Change::License { license, event: LicenseEvent::Deleted } => directory.remove_license(*license),
        Change::License { .. } => {}
    }
}

/// The license whose terms [`apply_to_directory`] reads or replaces for `entry`, if any (its
/// terms as they were are needed to update the directory's indexes of license keys and
/// licensees); the other license entries leave the directory alone.
pub fn terms_changed_by(entry: &JournalEntry) -> Option<LicenseId> {
    match &entry.change {
        Change::Directory(event) => event.new_license().map(|license| license.id),
        Change::License { license, event: LicenseEvent::Terms(_) | LicenseEvent::Deleted } => Some(*license),
        Change::License { .. } | Change::Event(_) => None,
    }
}

/// One license as a snapshot stores it: its id, its live state with its terms (the only copy
/// of the terms in a snapshot: the restored directory shares them) and the time of its last
/// change.
pub type LicenseSnapshot = (LicenseId, LicenseStateSnapshot, Timestamp);

/// A [`Recovered`] state as plain data: what a snapshot stores, in pieces (the directory, and
/// the licenses in chunks), and what tests compare states by. Restoring it gives exactly the
/// state that replaying the same journal prefix gives.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveredSnapshot {
    /// The directory, without the license terms.
    pub directory: DirectorySnapshot,
    /// Each license's terms, state and the time of its last change, sorted by license id.
    pub licenses: Vec<LicenseSnapshot>,
}

/// A whole state as a version-1 snapshot stored it, in one value, with every license's terms
/// twice (in the directory and in the license's state). Only read, to restart from a journal an
/// older build wrote; the field order is the encoding and must not change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveredSnapshotV1 {
    /// The directory, with the license terms.
    pub directory: DirectorySnapshotV1,
    /// Each license's state and the time of its last change, sorted by license id.
    pub licenses: Vec<LicenseSnapshot>,
}

/// A license whose terms the directory does not hold as its state does (or a directory license
/// without a state): a state a snapshot, which stores the terms once, cannot describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("license {0} has different terms in the directory and in its state")]
pub struct TermsDisagree(pub LicenseId);

impl Recovered {
    /// The licenses' ids in snapshot order (sorted), once checked that the directory holds
    /// exactly the terms the states hold, so that storing each license's terms once, with its
    /// state, loses nothing. [`Recovered::apply`] keeps it so (one `Terms` event sets both to
    /// the same `Arc`), and so does restoring a snapshot.
    pub fn snapshot_order(&self) -> Result<Vec<LicenseId>, TermsDisagree> {
        for (id, (state, _)) in &self.licenses {
            match self.directory.license(*id) {
                Some(terms) if Arc::ptr_eq(terms, state.license()) || terms == state.license() => {}
                _ => return Err(TermsDisagree(*id)),
            }
        }
        if self.directory.licenses().count() != self.licenses.len() {
            // Every state has its directory entry (checked above), so one entry has no state.
            if let Some(orphan) = self.directory.licenses().find(|terms| !self.licenses.contains_key(&terms.id)) {
                return Err(TermsDisagree(orphan.id));
            }
        }
        let mut ids: Vec<LicenseId> = self.licenses.keys().copied().collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// License `id` as snapshot data.
    pub fn license_snapshot(&self, id: LicenseId) -> Option<LicenseSnapshot> {
        self.licenses.get(&id).map(|(state, at)| (id, state.to_snapshot(), *at))
    }

    /// This whole state as snapshot data, to compare states. Snapshots themselves are written a
    /// chunk at a time, from [`Recovered::snapshot_order`] and [`Recovered::license_snapshot`].
    pub fn to_snapshot(&self) -> RecoveredSnapshot {
        let mut ids: Vec<LicenseId> = self.licenses.keys().copied().collect();
        ids.sort_unstable();
        RecoveredSnapshot {
            directory: self.directory.to_snapshot(),
            licenses: ids.into_iter().filter_map(|id| self.license_snapshot(id)).collect(),
        }
    }

    /// The state a snapshot describes (the inverse of [`Recovered::to_snapshot`]).
    pub fn from_snapshot(snapshot: RecoveredSnapshot) -> Self {
        let licenses = snapshot
            .licenses
            .into_iter()
            .map(|(id, state, at)| (id, (LicenseState::from_snapshot(state), at)))
            .collect();
        Recovered::from_parts(snapshot.directory, licenses)
    }

    /// The state of a snapshot's directory and its licenses' restored states (restored apart,
    /// possibly in parallel, chunk by chunk). The directory takes each license's terms from its
    /// state: one copy of each.
    pub fn from_parts(directory: DirectorySnapshot, licenses: HashMap<LicenseId, (LicenseState, Timestamp)>) -> Self {
        let terms = licenses.values().map(|(state, _)| Arc::clone(state.license())).collect();
        Recovered { directory: Directory::from_snapshot(directory, terms), licenses, halted: HashMap::new() }
    }

    /// The state a version-1 snapshot describes. Its terms were stored twice; each state takes
    /// the directory's copy when they are equal (always, for a snapshot of [`Recovered::apply`]'s
    /// making), so the restored state holds one copy, as a restored version-2 snapshot does.
    pub fn from_snapshot_v1(snapshot: RecoveredSnapshotV1) -> Self {
        let (directory, terms) = snapshot.directory.split();
        let terms_by_id: HashMap<LicenseId, Arc<License>> = terms.iter().map(|t| (t.id, Arc::clone(t))).collect();
        let licenses: HashMap<LicenseId, (LicenseState, Timestamp)> = snapshot
            .licenses
            .into_iter()
            .map(|(id, mut state, at)| {
                if let Some(shared) = terms_by_id.get(&id).filter(|shared| **shared == state.license) {
                    state.license = Arc::clone(shared);
                }
                (id, (LicenseState::from_snapshot(state), at))
            })
            .collect();
        Recovered { directory: Directory::from_snapshot(directory, terms), licenses, halted: HashMap::new() }
    }
}
