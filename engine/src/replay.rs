//! Rebuilding the engine's state from a journal: the directory and every license's live state,
//! exactly as they were when the last entry was acknowledged.

use crate::decide::state::LicenseStateSnapshot;
use crate::decide::{LicenseEvent, LicenseState};
use crate::directory::{Directory, DirectorySnapshot};
use crate::ids::LicenseId;
use crate::journal::{Change, JournalEntry};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The state a journal describes.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Parties, products and license terms.
    pub directory: Directory,
    /// Each license's live state and the time of its last change.
    pub licenses: HashMap<LicenseId, (LicenseState, Timestamp)>,
}

impl Recovered {
    /// Applies one more entry. An entry for a license that was never created is skipped: it
    /// cannot come from this engine's own journal, and skipping is safer than inventing terms.
    pub fn apply(&mut self, entry: &JournalEntry) {
        match &entry.change {
            Change::Directory(event) => self.directory.apply(event),
            Change::License { license, event } => {
                if let LicenseEvent::Terms(terms) = event {
                    self.directory.set_license(terms.clone());
                    self.licenses.entry(*license).or_insert_with(|| (LicenseState::new(terms.clone()), entry.at));
                }
                if let Some((state, last_at)) = self.licenses.get_mut(license) {
                    state.expire_until(entry.at, |_| {});
                    state.apply(entry.at, event);
                    *last_at = (*last_at).max(entry.at);
                }
            }
        }
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

/// A [`Recovered`] state as plain serializable data: what a snapshot stores. Restoring it gives
/// exactly the state that replaying the same journal prefix gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveredSnapshot {
    /// The directory.
    pub directory: DirectorySnapshot,
    /// Each license's state and the time of its last change, sorted by license id.
    pub licenses: Vec<(LicenseId, LicenseStateSnapshot, Timestamp)>,
}

impl Recovered {
    /// This state as snapshot data.
    pub fn to_snapshot(&self) -> RecoveredSnapshot {
        let mut licenses: Vec<(LicenseId, LicenseStateSnapshot, Timestamp)> =
            self.licenses.iter().map(|(id, (state, at))| (*id, state.to_snapshot(), *at)).collect();
        licenses.sort_by_key(|(id, _, _)| *id);
        RecoveredSnapshot { directory: self.directory.to_snapshot(), licenses }
    }

    /// The state a snapshot describes (the inverse of [`Recovered::to_snapshot`]).
    pub fn from_snapshot(snapshot: RecoveredSnapshot) -> Self {
        Recovered {
            directory: Directory::from_snapshot(snapshot.directory),
            licenses: snapshot
                .licenses
                .into_iter()
                .map(|(id, state, at)| (id, (LicenseState::from_snapshot(state), at)))
                .collect(),
        }
    }
}
