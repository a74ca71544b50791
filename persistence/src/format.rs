//! The on-disk format: how journal entries and snapshots are laid out in sled.
//!
//! The database holds two trees. In both, a key is a sequence number as 8 big-endian bytes, so
//! sled's key order is sequence order:
//!
//! - [`LOG_TREE`]: one record per group-committed batch, under the sequence number of its first
//!   entry; entries are numbered 1, 2, 3, ... with no gaps, across records;
//! - [`SNAPSHOT_TREE`]: the snapshot at `seq` is the state after entries `1..=seq`.
//!
//! Every value is an envelope:
//!
//! ```text
//! byte 0       format version (FORMAT_VERSION; older versions stay readable)
//! bytes 1..5   CRC-32 (little endian) of: version byte, payload, kind tag, key
//! bytes 5..    payload
//! ```
//!
//! A log record's payload is `count: u32 LE`, then `count` times `len: u32 LE` and `len` bytes
//! of one entry in bincode 2 (serde, standard config). A snapshot's payload is the bincode of a
//! `RecoveredSnapshot`.
//!
//! One record per batch, not one per entry: sled's cost is per key (about 9 µs an insert here),
//! so a batch of 64 entries costs one insert instead of 64. The checksum covers the key and a
//! kind tag as well as the payload, so a value that ends up under the wrong key or in the wrong
//! tree is detected too. sled already makes each insert atomic; the envelope guards against
//! damage sled does not see (bit rot, a bad copy, a bug) and lets the format evolve: a reader
//! dispatches on the version byte.

use crate::error::FormatError;
use leasehold_engine::journal::JournalEntry;
use leasehold_engine::replay::RecoveredSnapshot;
use serde::de::DeserializeOwned;

/// The tree of journal entries.
pub const LOG_TREE: &str = "log";
/// The tree of snapshots.
pub const SNAPSHOT_TREE: &str = "snapshots";

/// The format this build writes (and the newest it reads).
pub const FORMAT_VERSION: u8 = 1;
/// Bytes before the payload: version and checksum.
pub const HEADER_LEN: usize = 5;

/// Largest payload decoded. A damaged length prefix must not make the decoder allocate
/// gigabytes; no real entry or snapshot comes near this.
const MAX_PAYLOAD_BYTES: usize = 1 << 31;

/// What a value holds; part of the checksum so that values cannot be confused across trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A log record: a batch of journal entries.
    Batch,
    /// A snapshot.
    Snapshot,
}

impl Kind {
    fn tag(self) -> &'static [u8] {
        match self {
            Kind::Batch => b"leasehold-batch",
            Kind::Snapshot => b"leasehold-snapshot",
        }
    }
}

/// The key of sequence number `seq`.
pub fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// The sequence number a key holds.
pub fn key_seq(key: &[u8]) -> Result<u64, FormatError> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| FormatError::BadKey(key.len()))?;
    Ok(u64::from_be_bytes(bytes))
}

fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes one journal entry: what an appender does, off the writer thread, before queuing it.
pub fn encode_entry(entry: &JournalEntry) -> Result<Vec<u8>, FormatError> {
    bincode::serde::encode_to_vec(entry, bincode_config()).map_err(|e| FormatError::Encode(e.to_string()))
}

/// The log record of a batch of encoded entries (from [`encode_entry`]), the first of which has
/// sequence number `first_seq`. `None` when an entry or the count does not fit the format's
/// 32-bit lengths (no real entry comes near 4 GiB).
pub fn seal_batch(first_seq: u64, entries: &[Vec<u8>]) -> Option<Vec<u8>> {
    let len = HEADER_LEN + 4 + entries.iter().map(|e| 4 + e.len()).sum::<usize>();
    let mut bytes = Vec::with_capacity(len);
    bytes.push(FORMAT_VERSION);
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend_from_slice(&u32::try_from(entries.len()).ok()?.to_le_bytes());
    for entry in entries {
        bytes.extend_from_slice(&u32::try_from(entry.len()).ok()?.to_le_bytes());
        bytes.extend_from_slice(entry);
    }
    Some(seal(Kind::Batch, first_seq, bytes))
}

/// Decodes the log record stored under `first_seq`: its entries, in order.
pub fn decode_batch(first_seq: u64, value: &[u8]) -> Result<Vec<JournalEntry>, FormatError> {
    let (version, payload) = open(Kind::Batch, first_seq, value)?;
    match version {
        1 => decode_batch_v1(payload),
        found => Err(FormatError::UnknownVersion { found, newest: FORMAT_VERSION }),
    }
}

/// Takes a `u32 LE` length off the front of `rest`.
fn take_u32(rest: &mut &[u8]) -> Result<usize, FormatError> {
    let (head, tail) = rest.split_first_chunk::<4>().ok_or(FormatError::Decode("record cut short".into()))?;
    *rest = tail;
    usize::try_from(u32::from_le_bytes(*head)).map_err(|e| FormatError::Decode(e.to_string()))
}

fn decode_batch_v1(payload: &[u8]) -> Result<Vec<JournalEntry>, FormatError> {
    let mut rest = payload;
    let count = take_u32(&mut rest)?;
    // Each entry takes at least its 4-byte length, so a damaged count cannot make this allocate
    // more than the record's own size.
    let mut entries = Vec::with_capacity(count.min(rest.len() / 4));
    for _ in 0..count {
        let len = take_u32(&mut rest)?;
        if len > rest.len() {
            return Err(FormatError::Decode(format!("entry of {len} bytes in {} remaining", rest.len())));
        }
        let (entry, tail) = rest.split_at(len);
        entries.push(decode_v1(entry)?);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(FormatError::TrailingBytes(rest.len()));
    }
    Ok(entries)
}

/// Writes the checksum of `bytes` (header included, checksum zeroed) for `kind` under `seq`.
fn seal(kind: Kind, seq: u64, mut bytes: Vec<u8>) -> Vec<u8> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[..1]);
    crc.update(&bytes[HEADER_LEN..]);
    crc.update(kind.tag());
    crc.update(&seq_key(seq));
    bytes[1..HEADER_LEN].copy_from_slice(&crc.finalize().to_le_bytes());
    bytes
}

/// Checks the envelope of a `kind` value under `seq`: its version and payload.
fn open(kind: Kind, seq: u64, value: &[u8]) -> Result<(u8, &[u8]), FormatError> {
    if value.len() < HEADER_LEN {
        return Err(FormatError::Truncated { len: value.len(), header_len: HEADER_LEN });
    }
    let (header, payload) = value.split_at(HEADER_LEN);
    let version = header[0];
    let mut stored = [0u8; 4];
    stored.copy_from_slice(&header[1..HEADER_LEN]);
    let stored = u32::from_le_bytes(stored);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[version]);
    crc.update(payload);
    crc.update(kind.tag());
    crc.update(&seq_key(seq));
    let computed = crc.finalize();
    // The checksum first: a version byte is only trusted once the value is known to be intact.
    if computed != stored {
        return Err(FormatError::Checksum { stored, computed });
    }
    Ok((version, payload))
}

/// Encodes a snapshot stored under `seq`.
pub fn encode_snapshot(seq: u64, snapshot: &RecoveredSnapshot) -> Result<Vec<u8>, FormatError> {
    let mut bytes = vec![FORMAT_VERSION, 0, 0, 0, 0];
    bincode::serde::encode_into_std_write(snapshot, &mut bytes, bincode_config())
        .map_err(|e| FormatError::Encode(e.to_string()))?;
    Ok(seal(Kind::Snapshot, seq, bytes))
}

/// Decodes the snapshot stored under `seq`.
pub fn decode_snapshot(seq: u64, value: &[u8]) -> Result<RecoveredSnapshot, FormatError> {
    let (version, payload) = open(Kind::Snapshot, seq, value)?;
    match version {
        1 => decode_v1(payload),
        found => Err(FormatError::UnknownVersion { found, newest: FORMAT_VERSION }),
    }
}

/// Version 1: bincode 2 with serde, standard configuration (little endian, varints).
fn decode_v1<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FormatError> {
    let config = bincode_config().with_limit::<MAX_PAYLOAD_BYTES>();
    let (value, read) =
        bincode::serde::decode_from_slice(payload, config).map_err(|e| FormatError::Decode(e.to_string()))?;
    if read != payload.len() {
        return Err(FormatError::TrailingBytes(payload.len() - read));
    }
    Ok(value)
}
