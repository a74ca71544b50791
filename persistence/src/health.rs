//! Whether the journal can write, which licenses hold a change it lost, and the durable state
//! they go back to once it writes again.
//!
//! A failed write or flush makes the journal unavailable: every change is refused at once
//! (`writable` says why) until the journal has reopened its database and recovered what is
//! durable. A change that was decided and applied in a license's memory but not made durable
//! (its batch failed, or it was appended just as the journal failed) is *lost*: that license's
//! state in memory holds a change the journal does not, so the license answers nothing until it
//! is rebuilt from the recovered state ([`Health::rebuild`]). Licenses untouched by the failure
//! go on answering checks and reads throughout.

use leasehold_engine::decide::LicenseState;
use leasehold_engine::ids::LicenseId;
use leasehold_engine::journal::JournalError;
use leasehold_engine::replay::Recovered;
use leasehold_engine::time::Timestamp;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// What became of a license whose change was lost.
#[derive(Debug)]
enum Lost {
    /// The journal has not recovered yet: its durable state is not known.
    Waiting,
    /// The state the journal holds for it, to continue from.
    Durable(LicenseState, Timestamp),
    /// The journal holds nothing of it: its creation itself was lost.
    Gone,
}

#[derive(Debug, Default)]
struct State {
    /// Why the journal cannot write; `None` while it can.
    unavailable: Option<String>,
    lost: HashMap<LicenseId, Lost>,
    closing: bool,
}

/// Shared by the journal, its writer and its recovery thread.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// `true` while the journal cannot write: the only thing a change reads when all is well.
    failing: AtomicBool,
    /// `true` while some license waits to be rebuilt: the only thing a request reads then.
    any_lost: AtomicBool,
    state: Mutex<State>,
    /// Signalled when the journal fails or closes (the recovery thread waits on it).
    changed: Condvar,
}

impl Health {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change under this lock is a single assignment or map operation: a panic cannot
        // leave it half-done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the journal takes changes now.
    pub(crate) fn writable(&self) -> Result<(), JournalError> {
        if !self.failing.load(Ordering::Acquire) {
            return Ok(());
        }
        match &self.lock().unavailable {
            Some(why) => Err(JournalError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    /// Records that the journal cannot write, and why; logs it the first time.
    pub(crate) fn fail(&self, why: &str) {
        let mut state = self.lock();
        if state.unavailable.is_none() {
            tracing::error!(%why, "journal cannot write: refusing every change until it writes again");
            state.unavailable = Some(why.to_owned());
            self.failing.store(true, Ordering::Release);
            self.changed.notify_all();
        }
    }

    /// Records that changes to `licenses` were applied in memory and lost.
    pub(crate) fn lose(&self, licenses: impl IntoIterator<Item = LicenseId>) {
        let mut state = self.lock();
        let before = state.lost.len();
        for license in licenses {
            state.lost.insert(license, Lost::Waiting);
        }
        if state.lost.len() > before {
            self.any_lost.store(true, Ordering::Release);
            if state.unavailable.is_none() && !state.closing {
                // Lost by a writer that was being replaced, while the journal already writes
                // again: its durable state is known only by recovering once more.
                state.unavailable = Some("a change was lost while the journal reopened; recovering again".into());
                self.failing.store(true, Ordering::Release);
                self.changed.notify_all();
            }
        }
    }

    /// For a license whose change was lost: the durable state to continue from (once; later
    /// calls answer `Ok(None)`), or why it cannot answer yet. `Ok(None)` for every other license.
    pub(crate) fn rebuild(&self, license: LicenseId) -> Result<Option<(LicenseState, Timestamp)>, JournalError> {
        if !self.any_lost.load(Ordering::Acquire) {
            return Ok(None);
        }
        let mut state = self.lock();
        let rebuilt = match state.lost.get(&license) {
            None => return Ok(None),
            Some(Lost::Waiting | Lost::Gone) => return Err(JournalError::ChangeLost(license)),
            Some(Lost::Durable(..)) => match state.lost.remove(&license) {
                Some(Lost::Durable(durable, at)) => Some((durable, at)),
                _ => None,
            },
        };
        if state.lost.is_empty() {
            self.any_lost.store(false, Ordering::Release);
        }
        Ok(rebuilt)
    }

    /// The journal writes again, and `recovered` is what it holds: every lost license gets its
    /// durable state to be rebuilt from.
    pub(crate) fn recovered(&self, mut recovered: Recovered) {
        let mut state = self.lock();
        for (license, lost) in state.lost.iter_mut() {
            if let Lost::Waiting = lost {
                *lost = match recovered.licenses.remove(license) {
                    Some((durable, at)) => Lost::Durable(durable, at),
                    None => Lost::Gone,
                };
            }
        }
        if let Some(why) = state.unavailable.take() {
            tracing::warn!(%why, rebuilt = state.lost.len(), "journal writes again after failing");
        }
        self.failing.store(false, Ordering::Release);
    }

    /// Waits up to `at_most` for the journal to fail (`Some(true)`) or close (`Some(false)`);
    /// `None` when neither happened.
    pub(crate) fn wait_for_failure(&self, at_most: Duration) -> Option<bool> {
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, at_most, |s| !s.closing && s.unavailable.is_none())
            .unwrap_or_else(|p| p.into_inner());
        if state.closing {
            Some(false)
        } else {
            state.unavailable.is_some().then_some(true)
        }
    }

    /// Sleeps for `pause` unless the journal closes meanwhile; `false` when it did.
    pub(crate) fn pause(&self, pause: Duration) -> bool {
        let state = self.lock();
        if state.closing {
            return false;
        }
        let (state, _) = self.changed.wait_timeout(state, pause).unwrap_or_else(|p| p.into_inner());
        !state.closing
    }

    /// Wakes the recovery thread to stop.
    pub(crate) fn close(&self) {
        self.lock().closing = true;
        self.changed.notify_all();
    }
}
