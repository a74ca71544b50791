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
//!
//! A snapshot is built on the one before it ([`build`]): in memory that follows the log since
//! then, not the whole state.

mod build;

use crate::error::PersistenceError;
use crate::format::{decode_event, key_seq, seq_key, snapshot_file_name, snapshot_file_seq};
use crate::writer::GroupCommit;
use leasehold_engine::replay::Recovered;
use leasehold_engine::time::Timestamp;
use std::path::{Path, PathBuf};
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
    /// Events, kept for their retention (see `crate::format`).
    pub(crate) events: sled::Tree,
    /// Each webhook's last event done with (see `crate::deliveries`).
    pub(crate) webhook_cursors: sled::Tree,
    /// Each webhook's deliveries.
    pub(crate) deliveries: sled::Tree,
    /// Closed usage records not merged yet (see `crate::usage`).
    pub(crate) usage_records: sled::Tree,
    /// Usage cells and how far they are merged.
    pub(crate) usage: sled::Tree,
    /// Where version-2 snapshots' files are.
    pub(crate) snapshot_dir: PathBuf,
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
    let Some(size) = build::build(stores, upto)? else { return Ok(None) };
    commit.set_snapshot_size(size);
    prune(stores)?;
    if let Some(retention) = commit.config.event_retention {
        expire_events(stores, retention)?;
    }
    // Closed usage records wait in their tree until merged; merging here keeps that tree small
    // between reports.
    crate::usage::merge(stores, commit.durable_seq(), wall_clock_now())?;
    Ok(Some(upto))
}

/// The system's time.
pub(crate) fn wall_clock_now() -> Timestamp {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp::from_millis(i64::try_from(now.as_millis()).unwrap_or(i64::MAX))
}

/// Drops the events older than `retention`, oldest first (events are kept in time order).
fn expire_events(stores: &Stores, retention: std::time::Duration) -> Result<(), PersistenceError> {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let cutoff = Timestamp::from_millis(wall_clock_now().as_millis().saturating_sub(retention_ms));
    for item in stores.events.iter() {
        let (key, value) = item?;
        let expired = key_seq(&key).and_then(|seq| decode_event(seq, &value)).map_or(true, |e| e.at < cutoff);
        if !expired {
            break;
        }
        stores.events.remove(key)?;
    }
    Ok(())
}

/// The size of a state as the snapshot trigger counts it: licenses plus live leases.
pub(crate) fn state_size(state: &Recovered) -> u64 {
    let leases: usize = state.licenses.values().map(|(license, _)| license.leases().count()).sum();
    u64::try_from(state.licenses.len() + leases).unwrap_or(u64::MAX)
}

/// Removes the snapshot at `seq`: its manifest first, so that a crash midway leaves a file no
/// manifest lists rather than a manifest without its file.
pub(crate) fn remove_snapshot(stores: &Stores, seq: u64) -> Result<(), PersistenceError> {
    stores.snapshots.remove(seq_key(seq))?;
    remove_file(&stores.snapshot_dir.join(snapshot_file_name(seq)))
}

/// Removes the file at `path`, if there is one.
fn remove_file(path: &Path) -> Result<(), PersistenceError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(PersistenceError::SnapshotFile { path: path.to_owned(), source: e })
        }
        _ => Ok(()),
    }
}

/// Removes all but the newest [`KEEP_SNAPSHOTS`] snapshots (and the files of unfinished ones),
/// and the log up to the oldest kept.
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
    let dir_error = |source| PersistenceError::SnapshotFile { path: stores.snapshot_dir.clone(), source };
    for entry in std::fs::read_dir(&stores.snapshot_dir).map_err(dir_error)? {
        let name = entry.map_err(dir_error)?.file_name();
        let Some(name) = name.to_str() else { continue };
        let complete = |seq| name == snapshot_file_name(seq);
        if snapshot_file_seq(name).is_some_and(|seq| !(kept.contains(&seq) && complete(seq))) {
            remove_file(&stores.snapshot_dir.join(name))?;
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

/// Returns memory freed by a snapshot to the system. A snapshot decodes, folds and encodes a
/// range of licenses after another, and glibc's allocator keeps those freed pages mapped (and counted in the
/// process's RSS) for later use; with a million licenses that is hundreds of megabytes held for
/// nothing until the next snapshot.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free heap pages to the kernel; it is thread-safe and
    // touches no memory the program still uses.
    unsafe {
        libc::malloc_trim(0);
    }
}
