//! Errors of the persistence layer: what can go wrong opening, recovering and snapshotting a
//! journal, and why one stored value could not be read.
//!
//! Appends do not use these: they answer with the engine's [`JournalError`] through
//! [`leasehold_engine::journal::Durability`], as the `Journal` seam requires.

use leasehold_engine::journal::JournalError;

/// Why a stored value (a journal entry or a snapshot) cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The value is shorter than the envelope header: a torn or truncated write.
    #[error("value of {len} bytes is shorter than the {header_len}-byte envelope header")]
    Truncated {
        /// The value's length.
        len: usize,
        /// The header's length.
        header_len: usize,
    },
    /// The value was written by a newer (or unknown) format.
    #[error("unknown format version {found} (this build reads versions 1 to {newest})")]
    UnknownVersion {
        /// The version byte found.
        found: u8,
        /// The newest version this build reads.
        newest: u8,
    },
    /// The checksum does not match: the value (or its key) was damaged.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The checksum in the header.
        stored: u32,
        /// The checksum of what is there now.
        computed: u32,
    },
    /// A value could not be encoded (a type serde cannot write).
    #[error("value does not encode: {0}")]
    Encode(String),
    /// The payload passed the checksum but does not decode.
    #[error("payload does not decode: {0}")]
    Decode(String),
    /// The payload decoded but bytes are left over.
    #[error("{0} bytes left over after the payload")]
    TrailingBytes(usize),
    /// A key is not an 8-byte sequence number.
    #[error("key of {0} bytes is not a sequence number")]
    BadKey(usize),
    /// A part of a snapshot its manifest lists is not there (the file is missing or short).
    #[error("snapshot part {0} is missing")]
    MissingPart(u32),
    /// A snapshot's parts hold another number of licenses than its manifest says.
    #[error("snapshot parts hold {found} licenses, its manifest says {expected}")]
    LicenseCount {
        /// The count in the manifest.
        expected: u64,
        /// The count in the parts.
        found: u64,
    },
    /// A snapshot's licenses are not in the order of their ids, the order they are written in.
    #[error("snapshot part {0} holds licenses out of order")]
    LicenseOrder(u32),
}

/// Why a journal could not be opened, recovered or snapshotted.
#[derive(Debug, thiserror::Error)]
pub enum PersistenceError {
    /// sled failed (I/O, or its own files are corrupt).
    #[error("storage error: {0}")]
    Storage(#[from] sled::Error),
    /// A value could not be encoded.
    #[error("could not encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// An entry in the middle of the log is damaged while later entries are fine. Cutting the log
    /// there would silently drop acknowledged changes, so recovery refuses.
    #[error(
        "journal entry {seq} is damaged ({reason}) but entry {next_valid} after it is valid; refusing a partial load"
    )]
    CorruptEntry {
        /// The first damaged entry.
        seq: u64,
        /// What is wrong with it.
        reason: FormatError,
        /// A valid entry after it.
        next_valid: u64,
    },
    /// Sequence numbers jump: entries the state depends on are gone.
    #[error("journal entries are missing: expected entry {expected}, found {found}")]
    MissingEntries {
        /// The sequence number that should come next.
        expected: u64,
        /// The one found instead.
        found: u64,
    },
    /// The journal refuses work (poisoned or closed).
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A closed usage record or a usage cell is damaged.
    #[error("usage data is damaged: {0}")]
    Usage(#[from] FormatError),
    /// A snapshot's file could not be written, read or removed.
    #[error("snapshot file {path}: {source}")]
    SnapshotFile {
        /// The file (or directory).
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A snapshot that read whole a moment before, being copied into the next one, is damaged.
    #[error("snapshot {seq} is damaged: {reason}")]
    DamagedSnapshot {
        /// The snapshot's sequence number.
        seq: u64,
        /// What is wrong with it.
        reason: FormatError,
    },
    /// A background thread could not be started.
    #[error("could not start the journal's {name} thread: {source}")]
    Thread {
        /// Which thread.
        name: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}
