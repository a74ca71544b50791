//! [`SledJournal`]: the engine's [`Journal`] on sled. Opening it recovers the state to start
//! the engine from; appending goes through the group-commit writer; snapshots are taken in the
//! background.

use crate::config::{DurabilityMode, JournalConfig};
use crate::error::PersistenceError;
use crate::format::{
    decode_event, key_seq, seq_key, DELIVERIES_TREE, EVENTS_TREE, LOG_TREE, SNAPSHOT_DIR, SNAPSHOT_TREE,
    USAGE_RECORDS_TREE, USAGE_TREE, WEBHOOK_CURSORS_TREE,
};
use crate::health::Health;
use crate::recovery::{recover, RecoveryReport};
use crate::snapshot::{self, Stores};
use crate::writer::{GroupCommit, Writer};
use leasehold_engine::decide::LicenseState;
use leasehold_engine::events::{EventPage, EventQuery};
use leasehold_engine::ids::LicenseId;
use leasehold_engine::journal::{Change, Durability, Journal, JournalEntry, JournalError};
use leasehold_engine::metrics::Histogram;
use leasehold_engine::replay::Recovered;
use leasehold_engine::time::Timestamp;
use leasehold_engine::usage::{UsageQuery, UsageRow};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
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
/// `queue_full_wait`, a journal that cannot write, or a closed one, answers `Durability::Failed`.
///
/// When a write or flush fails, the journal stops taking changes ([`Journal::writable`] says
/// why) and a recovery thread reopens the database with back-off until it opens again: sled
/// refuses every write after a failed one, and only a fresh open reads back what is durable.
/// Licenses whose changes were lost then continue from that durable state
/// ([`Journal::rebuild`]); nothing is restarted.
///
/// ```no_run
/// use leasehold_persistence::{JournalConfig, SledJournal};
/// use std::sync::Arc;
/// let (journal, recovered) = SledJournal::open("leasehold-data/journal", JournalConfig::default())?;
/// let engine = leasehold_engine::Engine::builder().journal(Arc::new(journal)).recovered(recovered).build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SledJournal {
    shared: Arc<Shared>,
    recovery: Mutex<Option<JoinHandle<()>>>,
    report: RecoveryReport,
}

/// What the journal, its appenders and its recovery thread share.
struct Shared {
    dir: PathBuf,
    config: JournalConfig,
    /// The open database and its threads; `None` while it is being reopened.
    core: RwLock<Option<Arc<Core>>>,
    health: Arc<Health>,
    /// How long each flush took, over every reopen (`/metrics` holds it).
    flush_latency: Arc<Histogram>,
    /// Makes the next opens fail, as a disk that still fails would (tests).
    refuse_opens: AtomicBool,
}

/// One open sled database: its stores, the group-commit writer and the snapshot thread.
struct Core {
    commit: Arc<GroupCommit>,
    stores: Stores,
    snapshot_lock: Arc<Mutex<()>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// sled's page cache. The journal is written once and read back only at startup, so a cache
/// serves nothing; sled's default (1 GiB) would mostly hold log pages that are never read again.
const SLED_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// The first pause before reopening a journal that failed, doubled after each failed try.
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// The longest pause between tries to reopen.
const LAST_RETRY: Duration = Duration::from_secs(5);

impl Core {
    /// Opens the database in `dir`, recovers its state, and starts the writer and snapshot
    /// threads.
    fn open(
        dir: &Path,
        config: &JournalConfig,
        health: &Arc<Health>,
        flush_latency: &Arc<Histogram>,
    ) -> Result<(Core, Recovered, RecoveryReport), PersistenceError> {
        let sled_flush_ms = match config.durability {
            DurabilityMode::Sync | DurabilityMode::Batched { .. } => None,
            DurabilityMode::None => Some(NONE_MODE_SLED_FLUSH_MS),
        };
        let open_started = std::time::Instant::now();
        let db = open_db(
            &sled::Config::new()
                .path(dir)
                .mode(sled::Mode::HighThroughput)
                .flush_every_ms(sled_flush_ms)
                .cache_capacity(SLED_CACHE_BYTES),
        )?;
        let snapshot_dir = dir.join(SNAPSHOT_DIR);
        std::fs::create_dir_all(&snapshot_dir)
            .map_err(|source| PersistenceError::SnapshotFile { path: snapshot_dir.clone(), source })?;
        let stores = Stores {
            log: db.open_tree(LOG_TREE)?,
            snapshots: db.open_tree(SNAPSHOT_TREE)?,
            events: db.open_tree(EVENTS_TREE)?,
            webhook_cursors: db.open_tree(WEBHOOK_CURSORS_TREE)?,
            deliveries: db.open_tree(DELIVERIES_TREE)?,
            usage_records: db.open_tree(USAGE_RECORDS_TREE)?,
            usage: db.open_tree(USAGE_TREE)?,
            snapshot_dir,
            db,
        };
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
        let commit =
            Arc::new(GroupCommit::new(config.clone(), report.last_seq, Arc::clone(health), Arc::clone(flush_latency)));
        commit.set_snapshot_size(snapshot::state_size(&recovered));
        let snapshot_lock = Arc::new(Mutex::new(()));
        let (requests_tx, requests_rx) = mpsc::sync_channel(1);
        let writer = Writer {
            shared: Arc::clone(&commit),
            db: stores.db.clone(),
            log: stores.log.clone(),
            events: stores.events.clone(),
            usage_records: stores.usage_records.clone(),
            next_seq: report.last_seq + 1,
            snapshot_requests: Some(requests_tx),
            last_snapshot_request_seq: report.snapshot_seq.unwrap_or(0),
            unflushed: Vec::new(),
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
        let core = Core { commit, stores, snapshot_lock, threads: Mutex::new(threads) };
        match snapshotter {
            Ok(handle) => core.lock_threads().push(handle),
            // Dropping `core` stops the writer it already started.
            Err(source) => return Err(PersistenceError::Thread { name: "snapshot", source }),
        }
        Ok((core, recovered, report))
    }

    /// Stops taking appends, writes and flushes what is queued, and stops the threads.
    fn close(&self) {
        self.commit.close();
        let threads = std::mem::take(&mut *self.lock_threads());
        for thread in threads {
            // A panicked thread has nothing left to clean up; closing goes on.
            let _ = thread.join();
        }
    }

    fn lock_threads(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    /// The open database, unless it is being reopened.
    fn core(&self) -> Option<Arc<Core>> {
        self.core.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The recovery thread: watches the flushes, and once the journal fails reopens the
    /// database, with back-off, until it opens and recovers; the licenses whose changes were lost
    /// get the durable state. Until then every change is refused.
    fn recover_after_failures(&self) {
        let watch_every = (self.config.flush_timeout / 4).max(Duration::from_millis(10));
        loop {
            match self.health.wait_for_failure(watch_every) {
                Some(true) => {}
                Some(false) => return,
                None => {
                    if let Some(core) = self.core() {
                        core.commit.expire_flush(self.config.flush_timeout);
                    }
                    continue;
                }
            }
            // Every handle of the failed database is dropped before it is opened again (sled
            // holds a file lock): the writer and snapshot threads stop, and the slot empties.
            let failed = self.core.write().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(failed) = failed {
                failed.close();
            }
            let mut pause = FIRST_RETRY;
            loop {
                if !self.health.pause(pause) {
                    return;
                }
                let opened = if self.refuse_opens.load(Ordering::SeqCst) {
                    Err(PersistenceError::Journal(JournalError::Io("the disk still fails (injected)".into())))
                } else {
                    Core::open(&self.dir, &self.config, &self.health, &self.flush_latency)
                };
                match opened {
                    Ok((core, recovered, _)) => {
                        *self.core.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(core));
                        self.health.recovered(recovered);
                        break;
                    }
                    Err(error) => {
                        tracing::debug!(%error, retry_in_ms = pause.as_millis() as u64, "journal does not open yet");
                        pause = (pause * 2).min(LAST_RETRY);
                    }
                }
            }
        }
    }
}

impl SledJournal {
    /// The open database's trees, or why there are none now (the journal is reopening).
    pub(crate) fn stores(&self) -> Result<Stores, JournalError> {
        match self.shared.core() {
            Some(core) => Ok(core.stores.clone()),
            None => Err(self.shared.health.writable().err().unwrap_or(JournalError::Closed)),
        }
    }

    /// Opens (or creates) the journal in directory `dir` and recovers the state it holds: the
    /// newest valid snapshot plus the log after it. Pass the state to
    /// [`leasehold_engine::EngineBuilder::recovered`]; the engine expires what ran out meanwhile.
    pub fn open(dir: impl AsRef<Path>, config: JournalConfig) -> Result<(SledJournal, Recovered), PersistenceError> {
        let health = Arc::new(Health::default());
        let flush_latency = Arc::new(Histogram::flush_latency());
        let (core, recovered, report) = Core::open(dir.as_ref(), &config, &health, &flush_latency)?;
        let shared = Arc::new(Shared {
            dir: dir.as_ref().to_path_buf(),
            config,
            core: RwLock::new(Some(Arc::new(core))),
            health,
            flush_latency,
            refuse_opens: AtomicBool::new(false),
        });
        let recovering = Arc::clone(&shared);
        let recovery = std::thread::Builder::new()
            .name("leasehold-journal-recovery".into())
            .spawn(move || recovering.recover_after_failures())
            .map_err(|source| PersistenceError::Thread { name: "journal recovery", source })?;
        Ok((SledJournal { shared, recovery: Mutex::new(Some(recovery)), report }, recovered))
    }

    /// What recovery found when the journal was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// How long each flush of the log took, for `/metrics` (shared: it keeps counting).
    pub fn flush_latency(&self) -> Arc<Histogram> {
        Arc::clone(&self.shared.flush_latency)
    }

    /// The sequence number of the last entry written to sled (0 while the database reopens).
    pub fn last_seq(&self) -> u64 {
        self.shared.core().map_or(0, |core| core.commit.last_written_seq())
    }

    /// Takes a snapshot of everything written so far, now, on this thread (the background
    /// snapshots wait meanwhile); cuts the log it makes unnecessary. The snapshot's sequence
    /// number, or `None` when the newest snapshot is already that recent.
    pub fn snapshot_now(&self) -> Result<Option<u64>, PersistenceError> {
        self.shared.health.writable()?;
        let core = self.shared.core().ok_or(JournalError::Closed)?;
        if let Some(why) = core.commit.poisoned() {
            return Err(JournalError::Poisoned(why.to_owned()).into());
        }
        let _one_at_a_time = core.snapshot_lock.lock().unwrap_or_else(|p| p.into_inner());
        snapshot::take_snapshot(&core.stores, &core.commit, core.commit.last_written_seq())
    }

    /// Stops taking appends, writes and flushes what is queued, and stops the background
    /// threads. Appends after this fail with `JournalError::Closed`. Dropping the journal does
    /// the same.
    pub fn close(&self) {
        self.shared.health.close();
        if let Some(recovery) = self.recovery.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = recovery.join();
        }
        if let Some(core) = self.shared.core() {
            core.close();
        }
    }

    /// Makes the next flush fail with `error` (a full disk, an I/O error, a read-only
    /// filesystem), as a failing disk would: for tests of a failing journal.
    #[doc(hidden)]
    pub fn inject_flush_failure(&self, error: std::io::Error) {
        if let Some(core) = self.shared.core() {
            core.commit.fail_next_flush(error);
        }
    }

    /// Makes every flush take `by` longer (zero: no longer), as a hanging disk would: for tests
    /// of the flush timeout.
    #[doc(hidden)]
    pub fn inject_slow_flushes(&self, by: Duration) {
        if let Some(core) = self.shared.core() {
            core.commit.slow_flushes(by);
        }
    }

    /// While `refuse` holds, reopening the database fails, as with a disk that still fails: for
    /// tests of a journal that stays unavailable for a while.
    #[doc(hidden)]
    pub fn inject_open_failures(&self, refuse: bool) {
        self.shared.refuse_opens.store(refuse, Ordering::SeqCst);
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
        match self.shared.core() {
            Some(core) => core.commit.append(entry),
            None => {
                // The database is being reopened: a change applied before the refusal is lost.
                if let Change::License { license, .. } = &entry.change {
                    self.shared.health.lose([*license]);
                }
                let why = self.shared.health.writable().err();
                Durability::Failed(why.unwrap_or_else(|| JournalError::Poisoned("the journal is reopening".into())))
            }
        }
    }

    fn writable(&self) -> Result<(), JournalError> {
        self.shared.health.writable()
    }

    fn rebuild(&self, license: LicenseId) -> Result<Option<(LicenseState, Timestamp)>, JournalError> {
        self.shared.health.rebuild(license)
    }

    /// The events tree from `query.after` on, up to the last durable entry, decoded one record
    /// at a time.
    fn events(&self, query: &EventQuery) -> Result<EventPage, JournalError> {
        let Some(core) = self.shared.core() else {
            return Err(self.shared.health.writable().err().unwrap_or(JournalError::Closed));
        };
        let from = query.after.map_or(0, |after| after.saturating_add(1));
        let durable = core.commit.durable_seq();
        if from > durable {
            return Ok(EventPage::default());
        }
        let mut failure = None;
        let events = core.stores.events.range(seq_key(from)..=seq_key(durable)).map_while(|item| {
            let read = item.map_err(|e| e.to_string()).and_then(|(key, value)| {
                let seq = key_seq(&key).map_err(|e| e.to_string())?;
                decode_event(seq, &value).map_err(|e| e.to_string())
            });
            read.map_err(|e| failure = Some(e)).ok()
        });
        let page = EventPage::of(query, events);
        match failure {
            Some(why) => Err(JournalError::Io(format!("reading events: {why}"))),
            None => Ok(page),
        }
    }

    /// Merges the durable closed usage records into the cells, then reads the cells.
    fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, JournalError> {
        let Some(core) = self.shared.core() else {
            return Err(self.shared.health.writable().err().unwrap_or(JournalError::Closed));
        };
        crate::usage::report(&core.stores, core.commit.durable_seq(), snapshot::wall_clock_now(), query)
            .map_err(|e| JournalError::Io(format!("reading usage: {e}")))
    }

    fn last_event_id(&self) -> u64 {
        let Some(core) = self.shared.core() else { return 0 };
        let newest = core.stores.events.range(..=seq_key(core.commit.durable_seq())).keys().next_back();
        newest.and_then(|key| key.ok()).and_then(|key| key_seq(&key).ok()).unwrap_or(0)
    }
}

impl Drop for SledJournal {
    fn drop(&mut self) {
        self.close();
    }
}
