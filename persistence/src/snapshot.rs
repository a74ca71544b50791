//! Snapshots: the state at sequence number N, so that a restart replays only the log after N.
//!
//! A snapshot is built from the journal itself (the previous snapshot plus the log up to N,
//! folded into a [`leasehold_engine::replay::Recovered`] exactly as recovery folds it), never by
//! asking the license actors: the actors keep answering while it is built, and a snapshot made
//! by the same fold as recovery restores exactly the same state.
//!
//! The two newest snapshots are kept: if the newest one is damaged, recovery falls back to the
//! one before and replays the log from there. So the log is cut only up to the older of the two,
//! once a newer one is safely on disk.

use crate::error::PersistenceError;
use crate::format::{encode_snapshot, key_seq, seq_key};
use crate::recovery::{fold_log, newest_snapshot, Base};
use crate::writer::GroupCommit;
use leasehold_engine::replay::Recovered;
use std::sync::{mpsc, Arc, Mutex};

/// How many snapshots are kept.
pub const KEEP_SNAPSHOTS: usize = 2;

/// Log records removed per sled batch when the log is cut (bounds the memory of one cut).
const PRUNE_CHUNK: usize = 10_000;

/// The sled handles a journal works on.
#[derive(Clone)]
pub(crate) struct Stores {
    pub(crate) db: sled::Db,
    pub(crate) log: sled::Tree,
    pub(crate) snapshots: sled::Tree,
}

/// Takes a snapshot of the state after entry `upto` and cuts the log it makes unnecessary,
/// recording the state's size (licenses and live leases) in `commit` for the next trigger.
/// `Ok(None)` when the newest snapshot is already that recent.
pub(crate) fn take_snapshot(stores: &Stores, commit: &GroupCommit, upto: u64) -> Result<Option<u64>, PersistenceError> {
    let taken = build_snapshot(stores, commit, upto);
    release_freed_memory();
    taken
}

fn build_snapshot(stores: &Stores, commit: &GroupCommit, upto: u64) -> Result<Option<u64>, PersistenceError> {
    let Base { seq: base_seq, mut state, damaged } = newest_snapshot(&stores.snapshots)?;
    for (seq, error) in damaged {
        tracing::warn!(snapshot_seq = seq, %error, "snapshot is damaged; building on the one before it");
        stores.snapshots.remove(seq_key(seq))?;
    }
    if upto <= base_seq {
        return Ok(None);
    }
    let reached = fold_log(&stores.log, base_seq, upto, &mut state)?;
    if reached != upto {
        return Err(PersistenceError::MissingEntries { expected: reached + 1, found: upto });
    }
    commit.set_snapshot_size(state_size(&state));
    let value = encode_snapshot(upto, &state.to_snapshot())
        .map_err(|e| PersistenceError::Encode { what: "snapshot", reason: e.to_string() })?;
    stores.snapshots.insert(seq_key(upto), value)?;
    // The snapshot must be on disk before anything it replaces is removed.
    stores.db.flush()?;
    prune(stores)?;
    Ok(Some(upto))
}

/// The size of a state as the snapshot trigger counts it: licenses plus live leases.
pub(crate) fn state_size(state: &Recovered) -> u64 {
    let leases: usize = state.licenses.values().map(|(license, _)| license.leases().count()).sum();
    u64::try_from(state.licenses.len() + leases).unwrap_or(u64::MAX)
}

/// Removes all but the newest [`KEEP_SNAPSHOTS`] snapshots, and the log up to the oldest kept.
fn prune(stores: &Stores) -> Result<(), PersistenceError> {
    let mut kept = Vec::new();
    for key in stores.snapshots.iter().keys().rev() {
        let key = key?;
        if kept.len() < KEEP_SNAPSHOTS {
            kept.push(key_seq(&key).unwrap_or(0));
        } else {
            stores.snapshots.remove(key)?;
        }
    }
    if kept.len() < KEEP_SNAPSHOTS {
        // A lone snapshot has no fallback but the full log.
        return Ok(());
    }
    let cut_upto = kept[KEEP_SNAPSHOTS - 1];
    loop {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for key in stores.log.range(..=seq_key(cut_upto)).keys().take(PRUNE_CHUNK) {
            batch.remove(key?);
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        stores.log.apply_batch(batch)?;
    }
}

/// The background snapshot thread: one snapshot per request from the writer, until the writer
/// stops. `lock` keeps it from racing an explicit snapshot.
pub(crate) fn run_background(
    stores: Stores,
    commit: Arc<GroupCommit>,
    lock: Arc<Mutex<()>>,
    requests: mpsc::Receiver<()>,
) {
    for () in requests {
        if commit.poisoned().is_some() {
            continue;
        }
        let _one_at_a_time = lock.lock().unwrap_or_else(|p| p.into_inner());
        let upto = commit.last_written_seq();
        match take_snapshot(&stores, &commit, upto) {
            Ok(Some(seq)) => tracing::info!(snapshot_seq = seq, "snapshot written"),
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "snapshot failed; the log keeps growing until one succeeds"),
        }
    }
}

/// Returns memory freed by a snapshot to the system. A snapshot decodes, copies and encodes the
/// whole state, and glibc's allocator keeps those freed pages mapped (and counted in the
/// process's RSS) for later use; with a million licenses that is gigabytes held for nothing
/// until the next snapshot.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free heap pages to the kernel; it is thread-safe and
    // touches no memory the program still uses.
    unsafe {
        libc::malloc_trim(0);
    }
}
