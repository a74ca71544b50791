//! How a journal is configured: what an answered change survives ([`DurabilityMode`]), how
//! much may wait for the writer, and how often snapshots are taken.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What an acknowledged change survives. `leasehold serve --durability sync|batched|none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DurabilityMode {
    /// Answer after the change is flushed to disk: it survives a crash or power loss (SPEC
    /// invariant 3). Appends are group-committed: one flush for every change waiting.
    #[default]
    Sync,
    /// Answer at once; flush at least every `every_ms` milliseconds. A crash loses at most the
    /// last `every_ms` of acknowledged changes.
    Batched {
        /// Most milliseconds between flushes.
        every_ms: u64,
    },
    /// Answer at once; never flush on purpose (sled writes back within about a second). For
    /// tests and for state that can be lost.
    None,
}

impl fmt::Display for DurabilityMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurabilityMode::Sync => f.write_str("sync"),
            DurabilityMode::Batched { every_ms } => write!(f, "batched:{every_ms}"),
            DurabilityMode::None => f.write_str("none"),
        }
    }
}

/// The flush interval of `batched` when none is given.
pub const DEFAULT_BATCHED_EVERY_MS: u64 = 10;

impl FromStr for DurabilityMode {
    type Err = String;

    /// `sync`, `none`, `batched` (every [`DEFAULT_BATCHED_EVERY_MS`] ms) or `batched:<ms>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            None if s == "sync" => Ok(DurabilityMode::Sync),
            None if s == "none" => Ok(DurabilityMode::None),
            None if s == "batched" => Ok(DurabilityMode::Batched { every_ms: DEFAULT_BATCHED_EVERY_MS }),
            Some(("batched", ms)) => match ms.parse::<u64>() {
                Ok(every_ms) if every_ms > 0 => Ok(DurabilityMode::Batched { every_ms }),
                _ => Err(format!("batched needs a positive number of milliseconds, not {ms:?}")),
            },
            _ => Err(format!("durability must be sync, batched, batched:<ms> or none, not {s:?}")),
        }
    }
}

/// Default bound on appends waiting for the writer.
pub const DEFAULT_QUEUE_CAPACITY: usize = 16_384;
/// Default most entries written and flushed as one batch.
pub const DEFAULT_MAX_BATCH: usize = 1_024;
/// Default longest the writer waits for company before writing a group, once groups have it.
pub const DEFAULT_GROUP_LINGER: Duration = Duration::from_millis(4);
/// Default longest an append waits for room in a full queue before it fails.
pub const DEFAULT_QUEUE_FULL_WAIT: Duration = Duration::from_millis(200);
/// Default longest a flush may take before its appenders are answered that it failed and the
/// journal reopens its database.
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// How long events are kept by default (SPEC section 11: 90 days).
pub const DEFAULT_EVENT_RETENTION: Duration = Duration::from_secs(90 * 24 * 60 * 60);
/// Default number of entries after which a snapshot is taken.
pub const DEFAULT_SNAPSHOT_EVERY_ENTRIES: u64 = 100_000;

/// How a [`crate::SledJournal`] behaves.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// What an acknowledged change survives.
    pub durability: DurabilityMode,
    /// Most appends waiting for the writer; beyond it appenders wait (see `queue_full_wait`).
    pub queue_capacity: usize,
    /// Most entries written and flushed as one batch (one log record).
    pub max_batch: usize,
    /// Under `sync`, when the previous batch had more than one entry, how long the writer may
    /// wait for company before writing the next (see `writer.rs`: a closed loop's appenders
    /// only until they are all back, trickling appenders for the whole linger). Fewer, larger
    /// flushes cost the writer and sled's threads less CPU per change, which under load goes to
    /// signing instead; a lone appender never waits. `Duration::ZERO` writes at once.
    pub group_linger: Duration,
    /// How long an append waits for room in a full queue before it fails as overloaded.
    pub queue_full_wait: Duration,
    /// Take a snapshot in the background once this many entries were appended since the last
    /// one, and at least as many as that snapshot held licenses and live leases (so a large
    /// state is not rewritten more often than it changes); `None` only snapshots on
    /// [`crate::SledJournal::snapshot_now`].
    pub snapshot_every_entries: Option<u64>,
    /// Under `sync`, the longest a flush may take: past it, the appenders waiting for it are
    /// answered that their change failed (503 `storageUnavailable`, instead of piling up behind
    /// a disk that hangs), every change is refused, and the journal reopens its database once
    /// the flush returns.
    pub flush_timeout: Duration,
    /// How long events are kept: each snapshot drops the older ones. `None` keeps them all.
    pub event_retention: Option<Duration>,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            durability: DurabilityMode::default(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_batch: DEFAULT_MAX_BATCH,
            group_linger: DEFAULT_GROUP_LINGER,
            queue_full_wait: DEFAULT_QUEUE_FULL_WAIT,
            snapshot_every_entries: Some(DEFAULT_SNAPSHOT_EVERY_ENTRIES),
            flush_timeout: DEFAULT_FLUSH_TIMEOUT,
            event_retention: Some(DEFAULT_EVENT_RETENTION),
        }
    }
}

impl JournalConfig {
    /// The defaults with `durability`.
    pub fn with_durability(durability: DurabilityMode) -> Self {
        JournalConfig { durability, ..JournalConfig::default() }
    }
}
