//! The journal seam: every state change is appended here before its answer leaves, and a journal
//! replayed from the start rebuilds the engine. `persistence/` implements it on sled with group
//! commit; [`MemoryJournal`] keeps entries in memory for tests and simulations.

use crate::decide::{LicenseEvent, LicenseState};
use crate::directory::DirectoryEvent;
use crate::events::{Event, EventPage, EventQuery, StoredEvent};
use crate::ids::{LeaseId, LicenseId};
use crate::time::Timestamp;
use crate::usage::{self, UsageQuery, UsageRow};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// One state change, as journaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// A change to licensees, consumers or products.
    Directory(DirectoryEvent),
    /// A change to one license.
    License {
        /// The license.
        license: LicenseId,
        /// What changed.
        event: LicenseEvent,
    },
    /// The event of the change before it (it changes no state; the journal keeps it for the
    /// events listing).
    Event(Event),
}

/// A change and the time it was decided at (replay expires leases up to this time first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// When the change was decided.
    pub at: Timestamp,
    /// The change.
    pub change: Change,
}

/// Why the journal could not make a change durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    /// Writing or flushing failed; the message says how.
    #[error("journal write failed: {0}")]
    Io(String),
    /// An earlier flush failed, so the journal refuses all writes: retrying a failed flush can
    /// silently lose data.
    #[error("journal is poisoned by an earlier failed flush: {0}")]
    Poisoned(String),
    /// The journal's queue stayed full: the disk is not keeping up. Nothing was appended.
    #[error("overloaded: {0} appends are waiting for the journal writer")]
    Overloaded(usize),
    /// The journal has shut down.
    #[error("journal is closed")]
    Closed,
    /// A change to this license was applied but never made durable (its write failed), so the
    /// license's state in memory is not what the journal holds: it answers nothing until it is
    /// rebuilt from the journal.
    #[error(
        "a change to license {0} could not be made durable; the license answers again once rebuilt from the journal"
    )]
    ChangeLost(LicenseId),
    /// Another node of the cluster answers for this license's partition (or for the
    /// directory): this node neither changes nor reads it.
    #[error("this node does not own {what}{}", owner.as_ref().map(|o| format!("; node {o} does")).unwrap_or_default())]
    NotOwner {
        /// What it does not own: `partition 7`, `the directory`.
        what: String,
        /// The node that owns it, as far as this node knows.
        owner: Option<String>,
    },
}

impl JournalError {
    /// Whether this is the storage failing (a write, a flush, a lost change), as opposed to load
    /// or shutdown: what clients see as `storageUnavailable`.
    pub fn is_storage_failure(&self) -> bool {
        matches!(self, JournalError::Io(_) | JournalError::Poisoned(_) | JournalError::ChangeLost(_))
    }
}

/// When an appended change is durable.
#[derive(Debug)]
pub enum Durability {
    /// Already durable (or the journal promises no more than this).
    Now,
    /// Durable when this resolves (group commit).
    Pending(oneshot::Receiver<Result<(), JournalError>>),
    /// It will never be durable.
    Failed(JournalError),
}

impl Durability {
    /// Waits until the change is durable.
    pub async fn wait(self) -> Result<(), JournalError> {
        match self {
            Durability::Now => Ok(()),
            Durability::Pending(rx) => rx.await.unwrap_or(Err(JournalError::Closed)),
            Durability::Failed(e) => Err(e),
        }
    }
}

/// Where state changes are recorded.
pub trait Journal: Send + Sync + 'static {
    /// Appends `entry`; entries become durable in the order they were appended.
    fn append(&self, entry: &JournalEntry) -> Durability;

    /// Appends `entry`, an event ([`Change::Event`]), right after the change it tells of: a
    /// change to `license`, or to the directory when `None` (an event that follows no change is
    /// appended as the directory's). A journal that keeps licenses apart (one stream per
    /// partition) keeps the event with its change, so that it is durable only once the change is.
    fn append_event(&self, entry: &JournalEntry, license: Option<LicenseId>) -> Durability {
        let _ = license;
        self.append(entry)
    }

    /// Appends `entry`, the creation of a license ([`LicenseEvent::Terms`] of a new license):
    /// a journal that keeps licenses apart keeps their creations with the directory, which
    /// every node of a cluster replicates.
    fn append_new_license(&self, entry: &JournalEntry) -> Durability {
        self.append(entry)
    }

    /// Whether the journal takes changes now; `Err` says why not. Asked before a change is
    /// decided, so that a change the journal would refuse is never applied in memory. Cheap: it
    /// is asked on every change.
    fn writable(&self) -> Result<(), JournalError> {
        Ok(())
    }

    /// Whether the journal takes changes to the directory (and new licenses) now: asked before
    /// such a change is decided, as [`Journal::writable`] is.
    fn directory_writable(&self) -> Result<(), JournalError> {
        self.writable()
    }

    /// Whether this node answers for `license` now, asked before a read of its terms that this
    /// node's copy of the directory could answer stale (another node changes a license it
    /// owns); `Err` says who does.
    fn owns_license(&self, license: LicenseId) -> Result<(), JournalError> {
        let _ = license;
        Ok(())
    }

    /// Whether this node answers for the license of `lease` (a lease id carries its license's
    /// partition), asked when this node knows no live lease by that id; `Err` says who does.
    fn owns_lease(&self, lease: LeaseId) -> Result<(), JournalError> {
        let _ = lease;
        Ok(())
    }

    /// For a license with a change that was applied in memory but never made durable (its write
    /// failed, or the journal refused it after it was decided), or whose partition this node of
    /// a cluster took over: the state the journal holds for it, to continue from instead (given
    /// once), or why it is not known yet (the license then answers nothing; `NotOwner` when
    /// another node answers for it). `Ok(None)` for a license that lost nothing. Cheap while
    /// nothing is lost: it is asked on every request.
    fn rebuild(&self, license: LicenseId) -> Result<Option<(LicenseState, Timestamp)>, JournalError> {
        let _ = license;
        Ok(None)
    }

    /// The events it keeps that `query` wants, oldest first; a journal that keeps none answers
    /// an empty page.
    fn events(&self, query: &EventQuery) -> Result<EventPage, JournalError> {
        let _ = query;
        Ok(EventPage::default())
    }

    /// The id of the newest event it keeps that is durable (0 when none): listings and
    /// deliveries never see an event a crash could still take back.
    fn last_event_id(&self) -> u64 {
        0
    }

    /// The usage report `query` asks for, from the durable closed usage records; a journal that
    /// keeps none answers no rows.
    fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, JournalError> {
        let _ = query;
        Ok(Vec::new())
    }
}

/// Keeps every entry in memory: a journal for tests and simulations that "restart" an engine
/// by replaying [`MemoryJournal::entries`].
#[derive(Debug, Default)]
pub struct MemoryJournal {
    entries: Mutex<Vec<JournalEntry>>,
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        MemoryJournal::default()
    }

    /// A copy of every entry, in order.
    pub fn entries(&self) -> Vec<JournalEntry> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Journal for MemoryJournal {
    fn append(&self, entry: &JournalEntry) -> Durability {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).push(entry.clone());
        Durability::Now
    }

    /// Every event it holds; an event's id is its entry's position, from 1.
    fn events(&self, query: &EventQuery) -> Result<EventPage, JournalError> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let after = query.after.unwrap_or(0);
        let events = entries.iter().zip(1u64..).skip_while(|(_, id)| *id <= after).filter_map(|(entry, id)| {
            let Change::Event(event) = &entry.change else { return None };
            Some(StoredEvent { id, at: entry.at, event: event.clone() })
        });
        Ok(EventPage::of(query, events))
    }

    /// Folds every closed usage record it holds.
    fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, JournalError> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut cells = BTreeMap::new();
        for entry in entries.iter() {
            if let Change::License { event: LicenseEvent::UsageClosed(record), .. } = &entry.change {
                usage::fold_record(&mut cells, record);
            }
        }
        Ok(usage::report(query, cells.iter().map(|(key, cell)| (*key, cell))))
    }

    fn last_event_id(&self) -> u64 {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .iter()
            .zip(1u64..)
            .filter(|(e, _)| matches!(e.change, Change::Event(_)))
            .map(|(_, id)| id)
            .last()
            .unwrap_or(0)
    }
}

/// Remembers nothing: the engine lives only in memory and starts empty every time. For
/// embedders that want a pure in-memory lease engine, and for benches of the decision path.
#[derive(Debug, Default, Clone, Copy)]
pub struct EphemeralJournal;

impl Journal for EphemeralJournal {
    fn append(&self, _entry: &JournalEntry) -> Durability {
        Durability::Now
    }
}
