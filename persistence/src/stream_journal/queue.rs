//! A stream's queue of changes waiting for their batch, and the licenses whose changes were lost
//! (or whose partition this node took over) with the state they continue from.

use leasehold_engine::decide::LicenseState;
use leasehold_engine::ids::LicenseId;
use leasehold_engine::journal::JournalError;
use leasehold_engine::time::Timestamp;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use tokio::sync::{oneshot, Notify};

/// The most bytes of entries one batch carries: a stream record is at most 1 MiB, envelope and
/// all.
const MAX_BATCH_BYTES: usize = 900 * 1024;

/// A change queued for its stream.
pub(super) struct Pending {
    pub(super) entry: Vec<u8>,
    pub(super) license: Option<LicenseId>,
    pub(super) reply: oneshot::Sender<Result<(), JournalError>>,
}

/// Whether a stream's queue takes changes.
pub(super) enum Mode {
    Open,
    /// This node does not write the stream now: why, as appenders are told.
    Refusing(JournalError),
    Closed,
}

pub(super) struct QueueState {
    pub(super) pending: Vec<Pending>,
    pub(super) mode: Mode,
}

/// One stream's queue: appenders push, its writer takes everything queued as the next batch.
pub(super) struct Queue {
    state: Mutex<QueueState>,
    pub(super) arrived: Notify,
    pub(super) room: Condvar,
}

impl Queue {
    /// A queue refusing changes for `why` until its stream is claimed.
    pub(super) fn refusing(why: JournalError) -> Self {
        Queue {
            state: Mutex::new(QueueState { pending: Vec::new(), mode: Mode::Refusing(why) }),
            arrived: Notify::new(),
            room: Condvar::new(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Every change under this lock is a push, a take or an assignment: a panic cannot leave
        // it half-done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops taking changes (for `why`) and hands back what was queued: none of it will be
    /// written.
    pub(super) fn refuse(&self, why: JournalError) -> Vec<Pending> {
        let queued = {
            let mut state = self.lock();
            if !matches!(state.mode, Mode::Closed) {
                state.mode = Mode::Refusing(why);
            }
            std::mem::take(&mut state.pending)
        };
        self.room.notify_all();
        queued
    }

    /// The next batch: what is queued, up to [`MAX_BATCH_BYTES`]; `None` once closed.
    pub(super) async fn next_batch(&self) -> Option<Vec<Pending>> {
        loop {
            {
                let mut state = self.lock();
                if let Mode::Closed = state.mode {
                    return None;
                }
                if !state.pending.is_empty() {
                    let mut bytes = 0;
                    let take = state
                        .pending
                        .iter()
                        .take_while(|p| {
                            bytes += p.entry.len() + 4;
                            bytes <= MAX_BATCH_BYTES
                        })
                        .count()
                        .max(1);
                    let batch: Vec<Pending> = state.pending.drain(..take).collect();
                    self.room.notify_all();
                    return Some(batch);
                }
            }
            self.arrived.notified().await;
        }
    }
}

/// What a license whose in-memory state cannot be trusted continues from.
enum Lost {
    /// Its partition is not read back yet.
    Waiting,
    /// What its partition's stream holds for it, to continue from.
    Durable(LicenseState, Timestamp),
    /// Its partition's stream holds nothing of it (its creation itself was lost).
    Gone,
}

/// The licenses whose changes were lost, or whose partition this node took over, and what each
/// continues from.
#[derive(Default)]
pub(super) struct Losses {
    any: AtomicBool,
    licenses: Mutex<HashMap<LicenseId, Lost>>,
}

impl Losses {
    fn lock(&self) -> MutexGuard<'_, HashMap<LicenseId, Lost>> {
        self.licenses.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes to `licenses` were applied in memory and will never be stored.
    pub(super) fn lose(&self, licenses: impl IntoIterator<Item = LicenseId>) {
        let mut lost = self.lock();
        for license in licenses {
            lost.insert(license, Lost::Waiting);
        }
        if !lost.is_empty() {
            self.any.store(true, Ordering::Release);
        }
    }

    /// `licenses` is what a partition's stream holds now (its lost licenses among them, if
    /// `covers` says the partition is theirs): each continues from it, whatever its memory
    /// holds (a partition this node did not own moved on without it).
    pub(super) fn adopt(&self, licenses: &[(LicenseState, Timestamp)], covers: impl Fn(LicenseId) -> bool) {
        let mut lost = self.lock();
        for (license, state) in lost.iter_mut() {
            if covers(*license) && matches!(state, Lost::Waiting) {
                // Read back below if the stream holds it; if not, its creation was lost.
                *state = Lost::Gone;
            }
        }
        for (state, at) in licenses {
            lost.insert(state.license().id, Lost::Durable(state.clone(), *at));
        }
        if !lost.is_empty() {
            self.any.store(true, Ordering::Release);
        }
    }

    /// For a license whose state cannot be trusted: the state to continue from (once), or why
    /// it cannot answer yet. `Ok(None)` for every other license.
    pub(super) fn rebuild(&self, license: LicenseId) -> Result<Option<(LicenseState, Timestamp)>, JournalError> {
        if !self.any.load(Ordering::Acquire) {
            return Ok(None);
        }
        let mut lost = self.lock();
        let rebuilt = match lost.get(&license) {
            None => return Ok(None),
            Some(Lost::Waiting | Lost::Gone) => return Err(JournalError::ChangeLost(license)),
            Some(Lost::Durable(..)) => match lost.remove(&license) {
                Some(Lost::Durable(durable, at)) => Some((durable, at)),
                _ => None,
            },
        };
        if lost.is_empty() {
            self.any.store(false, Ordering::Release);
        }
        Ok(rebuilt)
    }
}
