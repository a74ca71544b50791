//! # leasehold-persistence
//!
//! Leasehold's memory: every state change the engine makes is appended to a write-ahead log in
//! sled before its answer leaves (SPEC section 7), and a restart rebuilds the engine from it.
//!
//! The path of a change:
//!
//! 1. A license actor calls [`Journal::append`](leasehold_engine::journal::Journal::append) on
//!    the [`SledJournal`]; the entry is encoded ([`format`](mod@format)) and queued.
//! 2. The group-commit writer (`writer.rs`) writes everything queued as one log record, flushes
//!    once, and resolves each appender's `Durability::Pending`; the actor then answers.
//! 3. In the background, `snapshot.rs` folds the log into a snapshot (a file of parts, and a
//!    manifest in sled) and cuts the log before it.
//! 4. [`SledJournal::open`] runs [`recovery`]: newest valid snapshot (its parts decoded on all
//!    cores) + log tail, a torn tail cut off, and the result handed to `EngineBuilder::recovered`.
//!
//! 5. When a write or flush fails (or hangs past its timeout), `health.rs` records it: changes
//!    are refused, the licenses whose changes were lost wait, and `journal.rs` reopens the
//!    database with back-off and hands them the durable state to continue from.
//!
//! Files: `config.rs` (durability modes, bounds), `error.rs`, `format.rs` (the on-disk layout
//! and envelope), `writer.rs` (group commit, the flush watchdog), `snapshot.rs`, `recovery.rs`
//! (the reader), `health.rs` (a failing journal) and `journal.rs` (ties them together).
//! `fence.rs` holds the rules of a partition's stream shared by several nodes (SPEC section 14):
//! fenced claims and appends, without I/O; `jetstream.rs` sends them to NATS JetStream.

pub mod config;
mod deliveries;
pub mod error;
pub mod fence;
pub mod format;
mod health;
pub mod jetstream;
mod journal;
pub mod keys;
pub mod membership;
pub mod pkcs11;
pub mod recovery;
pub mod shared_keys;
mod snapshot;
pub mod stream_journal;
mod usage;
mod writer;

pub use config::{DurabilityMode, JournalConfig};
pub use error::{FormatError, PersistenceError};
pub use journal::{open_sled, SledJournal};
pub use recovery::{CutTail, RecoveryReport};
pub use snapshot::KEEP_SNAPSHOTS;
pub use stream_journal::{
    ClusterChange, ClusterNode, StreamJournal, StreamJournalConfig, StreamJournalError, StreamState,
};
