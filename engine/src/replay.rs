//! Rebuilding the engine's state from a journal: the directory and every license's live state,
//! exactly as they were when the last entry was acknowledged.

use crate::decide::{LicenseEvent, LicenseState};
use crate::directory::Directory;
use crate::ids::LicenseId;
use crate::journal::{Change, JournalEntry};
use crate::time::Timestamp;
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
