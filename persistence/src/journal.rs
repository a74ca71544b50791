//! [`SledJournal`]: the engine's [`Journal`] on sled. Opening it recovers the state to start
//! the engine from; appending goes through the group-commit writer; snapshots are taken in the
//! background.

use crate::config::{DurabilityMode, JournalConfig};
use crate::error::PersistenceError;
use crate::format::{LOG_TREE, SNAPSHOT_DIR, SNAPSHOT_TREE};
use crate::recovery::{recover, RecoveryReport};
use crate::snapshot::{self, Stores};
use crate::writer::{GroupCommit, Writer};
use leasehold_engine::journal::{Durability, Journal, JournalEntry};
use leasehold_engine::replay::Recovered;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often sled flushes by itself under [`DurabilityMode::None`]. Under `sync` and `batched`
/// sled's own flusher is off: the group commit decides when data is durable, and an extra
/// flusher would only compete with it for the disk.
const NONE_MODE_SLED_FLUSH_MS: u64 = 1_000;

/// A write-ahead log of [`JournalEntry`]s in a sled database, with group commit, snapshots and
/// crash recovery.
///
/// What [`Journal::append`] answers depends on the [`DurabilityMode`]: under `sync`,
/// `Durability::Pending`, resolved once the batch holding the entry is flushed; under `batched`
/// and `none`, `Durability::Now` as soon as the entry is queued. A queue that stays full for
/// `queue_full_wait`, or a poisoned or closed journal, answers `Durability::Failed`.
///
/// ```no_run
/// use leasehold_persistence::{JournalConfig, SledJournal};
/// use std::sync::Arc;
/// let (journal, recovered) = SledJournal::open("leasehold-data/journal", JournalConfig::default())?;
/// let engine = leasehold_engine::Engine::builder().journal(Arc::new(journal)).recovered(recovered).build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SledJournal {
    commit: Arc<GroupCommit>,
    stores: Stores,
    snapshot_lock: Arc<Mutex<()>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    report: RecoveryReport,
}

/// sled's page cache. The journal is written once and read back only at startup, so a cache
/// serves nothing; sled's default (1 GiB) would mostly hold log pages that are never read again.
const SLED_CACHE_BYTES: u64 = 32 * 1024 * 1024;

impl SledJournal {
    /// Opens (or creates) the journal in directory `dir` and recovers the state it holds: the
    /// newest valid snapshot plus the log after it. Pass the state to
    /// [`leasehold_engine::EngineBuilder::recovered`]; the engine expires what ran out meanwhile.
    pub fn open(dir: impl AsRef<Path>, config: JournalConfig) -> Result<(SledJournal, Recovered), PersistenceError> {
        let sled_flush_ms = match config.durability {
            DurabilityMode::Sync | DurabilityMode::Batched { .. } => None,
            DurabilityMode::None => Some(NONE_MODE_SLED_FLUSH_MS),
        };
        let open_started = std::time::Instant::now();
        let db = open_db(
            &sled::Config::new()
                .path(dir.as_ref())
                .mode(sled::Mode::HighThroughput)
                .flush_every_ms(sled_flush_ms)
                .cache_capacity(SLED_CACHE_BYTES),
        )?;
        let snapshot_dir = dir.as_ref().join(SNAPSHOT_DIR);
        std::fs::create_dir_all(&snapshot_dir)
            .map_err(|source| PersistenceError::SnapshotFile { path: snapshot_dir.clone(), source })?;
        let stores = Stores { log: db.open_tree(LOG_TREE)?, snapshots: db.open_tree(SNAPSHOT_TREE)?, snapshot_dir, db };
        let open_ms = crate::recovery::elapsed_ms(open_started);
        let (recovered, mut report) = recover(&stores)?;
        report.open_ms = open_ms;
        tracing::info!(
            snapshot_seq = ?report.snapshot_seq,
            replayed = report.replayed_entries,
            last_seq = report.last_seq,
            open_ms = report.open_ms,
            snapshot_ms = report.snapshot_ms,
            snapshot_parts = report.snapshot_parts,
            snapshot_threads = report.snapshot_threads,
            replay_ms = report.replay_ms,
            "journal recovered"
        );
        let commit = Arc::new(GroupCommit::new(config, report.last_seq));
        commit.set_snapshot_size(snapshot::state_size(&recovered));
        let snapshot_lock = Arc::new(Mutex::new(()));
        let (requests_tx, requests_rx) = mpsc::sync_channel(1);
        let writer = Writer {
            shared: Arc::clone(&commit),
            db: stores.db.clone(),
            log: stores.log.clone(),
            next_seq: report.last_seq + 1,
            snapshot_requests: Some(requests_tx),
            last_snapshot_request_seq: report.snapshot_seq.unwrap_or(0),
        };
        let mut threads = Vec::with_capacity(2);
        threads.push(
            std::thread::Builder::new()
                .name("leasehold-journal".into())
                .spawn(move || writer.run())
                .map_err(|source| PersistenceError::Thread { name: "writer", source })?,
        );
        let (bg_stores, bg_commit, bg_lock) = (stores.clone(), Arc::clone(&commit), Arc::clone(&snapshot_lock));
        let snapshotter = std::thread::Builder::new()
            .name("leasehold-snapshot".into())
            .spawn(move || snapshot::run_background(bg_stores, bg_commit, bg_lock, requests_rx));
        let journal = SledJournal { commit, stores, snapshot_lock, threads: Mutex::new(threads), report };
        match snapshotter {
            Ok(handle) => journal.lock_threads().push(handle),
            // Dropping `journal` stops the writer it already started.
            Err(source) => return Err(PersistenceError::Thread { name: "snapshot", source }),
        }
        Ok((journal, recovered))
    }

    /// What recovery found when the journal was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// How long each flush of the log took, for `/metrics` (shared: it keeps counting).
    pub fn flush_latency(&self) -> Arc<leasehold_engine::metrics::Histogram> {
        Arc::clone(self.commit.flush_latency())
    }

    /// The sequence number of the last entry written to sled.
    pub fn last_seq(&self) -> u64 {
        self.commit.last_written_seq()
    }

    /// Takes a snapshot of everything written so far, now, on this thread (the background
    /// snapshots wait meanwhile); cuts the log it makes unnecessary. The snapshot's sequence
    /// number, or `None` when the newest snapshot is already that recent.
    pub fn snapshot_now(&self) -> Result<Option<u64>, PersistenceError> {
        if let Some(why) = self.commit.poisoned() {
            return Err(leasehold_engine::journal::JournalError::Poisoned(why.to_owned()).into());
        }
        let _one_at_a_time = self.snapshot_lock.lock().unwrap_or_else(|p| p.into_inner());
        snapshot::take_snapshot(&self.stores, &self.commit, self.commit.last_written_seq())
    }

    /// Stops taking appends, writes and flushes what is queued, and stops the background
    /// threads. Appends after this fail with `JournalError::Closed`. Dropping the journal does
    /// the same.
    pub fn close(&self) {
        self.commit.close();
        let threads = std::mem::take(&mut *self.lock_threads());
        for thread in threads {
            // A panicked thread has nothing left to clean up; closing goes on.
            let _ = thread.join();
        }
    }

    /// Makes the next flush fail, as a dying disk would: for tests of the poisoned state.
    #[doc(hidden)]
    pub fn inject_flush_failure(&self) {
        self.commit.fail_next_flush();
    }

    fn lock_threads(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How long opening waits for a database lock that may be about to be released.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Opens the sled database of the journal in `dir` directly, for tools and tests that read or
/// damage the log, waiting as the journal itself does for the lock that a journal closed a
/// moment ago may still hold (see [`open_db`]).
pub fn open_sled(dir: &Path) -> Result<sled::Db, sled::Error> {
    open_db(&sled::Config::new().path(dir))
}

/// Opens the sled database. sled finishes some writes on its own thread pool after its last
/// handle is dropped and keeps the file lock until they are done, so a journal reopened right
/// after it was closed (a restart in the same process, a test) waits briefly for the lock instead
/// of failing. sled reports a held lock only as an I/O error with this message.
fn open_db(config: &sled::Config) -> Result<sled::Db, sled::Error> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            opened => return opened,
        }
    }
}

impl Journal for SledJournal {
    fn append(&self, entry: &JournalEntry) -> Durability {
        self.commit.append(entry)
    }
}

impl Drop for SledJournal {
    fn drop(&mut self) {
        self.close();
    }
}
