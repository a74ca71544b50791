//! The on-disk format: how journal entries and snapshots are laid out.
//!
//! The sled database holds three trees, where a key is a sequence number as 8 big-endian bytes,
//! so sled's key order is sequence order:
//!
//! - [`LOG_TREE`]: one record per group-committed batch, under the sequence number of its first
//!   entry; entries are numbered 1, 2, 3, ... with no gaps, across records;
//! - [`SNAPSHOT_TREE`]: the snapshot at `seq` is the state after entries `1..=seq`; the value
//!   under `seq` is the snapshot's [`Manifest`] (version 2) or the whole snapshot (version 1).
//! - [`EVENTS_TREE`]: each event entry ([`Change::Event`]) again, under its own sequence number,
//!   as a log record of one entry; kept for the events' retention after snapshots cut the log.
//!
//! A version-2 snapshot's state is in a file of the journal's directory,
//! [`SNAPSHOT_DIR`]`/`[`snapshot_file_name`]`(seq)`: its parts one after the other, as long as
//! the manifest says (versions 2 to 4). Part 0 is the directory, the others hold [`LICENSES_PER_CHUNK`] licenses
//! each, sorted by license id.
//!
//! Every value, and every part, is an envelope:
//!
//! ```text
//! byte 0       format version (FORMAT_VERSION; older versions stay readable)
//! bytes 1..5   CRC-32 (little endian) of: version byte, payload, kind tag, key
//! bytes 5..    payload
//! ```
//!
//! A part's key (in the checksum only) is [`part_key`]`(seq, index)`. Payloads are bincode 2
//! (serde, standard config). A log record's payload is `count: u32 LE`, then `count` times
//! `len: u32 LE` and `len` bytes of one entry (the same in versions 1 and 2). A version-2
//! snapshot's parts are a `DirectorySnapshot` and lists of `LicenseSnapshot`s; a version-1
//! snapshot was one `RecoveredSnapshotV1`, in the snapshot tree.
//!
//! One record per batch, not one per entry: sled's cost is per key, so a batch of 64 entries
//! costs one insert instead of 64. The checksum covers the key and a kind tag as well as the
//! payload, so a value that ends up under the wrong key or in the wrong place is detected too (a
//! part moved to another snapshot or index, say). sled already makes each insert atomic; the
//! envelope guards against damage sled does not see (bit rot, a bad copy, a bug) and lets the
//! format evolve: a reader dispatches on the version byte.
//!
//! Why version 2. Version 1 wrote the whole state as one sled value (hundreds of megabytes with
//! a million licenses) that one thread decoded, holding every license's terms twice. Version 2
//! decodes parts on all cores, writes them a chunk at a time from the state (no whole encoded
//! copy in memory), and holds each license's terms once.
//!
//! Why version 3. It adds fields to stored types (a licensee's and a consumer's external id, a
//! disabled consumer, a license's feature overrides and key activation, when each machine was
//! seen, idempotency keys) and new kinds of change. bincode is not self-describing, so each added
//! field is marked in its type ([`leasehold_engine::shapes`]) and values of versions 1 and 2 are
//! decoded in those versions' shapes: the added fields get their defaults. Versions 2 to 4 lay
//! out records and snapshots the same way.
//!
//! Why version 4. The directory's snapshot holds the webhooks; the log has their changes.
//!
//! Why version 5. A license's snapshot holds its open usage record; the log has refused
//! checkouts and closed usage records. Closed records are copied to [`USAGE_RECORDS_TREE`] (as
//! events are to theirs) and merged into [`USAGE_TREE`]'s cells: [`usage_cell_key`] orders a
//! cell by granularity, period, license and consumer, so a report reads one range.
//!
//! Why version 6. The directory's snapshot holds the organizations (SPEC section 12): the
//! credentials of the admin API, groups, entitlements and invitations, and a license's terms
//! name their entitlement; the log has their changes.
//!
//! Why version 7. The directory's snapshot holds the batches of activation codes with their
//! redemptions; the log has the batches and the redemptions, each redemption with the license
//! it made.
//!
//! Why version 8. The directory's snapshot holds the platform's key tokens (the claims last
//! issued for each keyed license) and machine activations; the log has their changes.
//!
//! Why version 9. A license model holds its geolocation rules (`geo`).
//!
//! Why the parts are in a file rather than in sled: when sled opens, it reads back and checks
//! every value written since it last opened, and reading one value reads the whole tree node
//! that holds it. A snapshot stored as one sled value made both sled's open and reading the
//! snapshot slow; stored as many sled values, the open was quicker but each part cost more in
//! sled than decoding it did. In a file, sled's open no longer grows with the state, and the
//! parts are read as fast as the disk gives them.

use crate::error::FormatError;
use leasehold_engine::decide::LicenseEvent;
use leasehold_engine::directory::DirectorySnapshot;
use leasehold_engine::events::StoredEvent;
use leasehold_engine::ids::{ConsumerId, LicenseId};
use leasehold_engine::journal::{Change, JournalEntry};
use leasehold_engine::replay::{LicenseSnapshot, RecoveredSnapshotV1};
use leasehold_engine::shapes::in_format;
use leasehold_engine::time::Timestamp;
use leasehold_engine::usage::{CellKey, Granularity, UsageCell, UsageRecord};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The tree of journal entries.
pub const LOG_TREE: &str = "log";
/// The tree of events, kept for their retention.
pub const EVENTS_TREE: &str = "events";
/// The tree of each webhook's last event done with.
pub const WEBHOOK_CURSORS_TREE: &str = "webhook_cursors";
/// The tree of webhook deliveries.
pub const DELIVERIES_TREE: &str = "deliveries";
/// The tree of snapshots: manifests (version 2) and whole snapshots (version 1).
pub const SNAPSHOT_TREE: &str = "snapshots";
/// The directory, in the journal's, of version-2 snapshots' files.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// Each closed usage record ([`LicenseEvent::UsageClosed`]) again, under its entry's sequence
/// number, as a log record of one entry, until it is merged into [`USAGE_TREE`].
pub const USAGE_RECORDS_TREE: &str = "usage_records";
/// Usage cells under [`usage_cell_key`], and the sequence number merged up to under
/// [`USAGE_CURSOR_KEY`], written together.
pub const USAGE_TREE: &str = "usage";
/// Where [`USAGE_TREE`] keeps the last merged sequence number (no cell key starts with 0xff).
pub const USAGE_CURSOR_KEY: &[u8] = b"\xffmerged";

/// The format this build writes (and the newest it reads).
pub const FORMAT_VERSION: u8 = 9;
/// Bytes before the payload: version and checksum.
pub const HEADER_LEN: usize = 5;

/// Licenses per snapshot part.
pub const LICENSES_PER_CHUNK: usize = 4_096;

/// Largest payload decoded. A damaged length prefix must not make the decoder allocate
/// gigabytes; no real entry or snapshot comes near this.
const MAX_PAYLOAD_BYTES: usize = 1 << 31;

/// What a value holds; part of the checksum so that values cannot be confused across trees and
/// snapshot parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A log record: a batch of journal entries.
    Batch,
    /// A snapshot's manifest (version 2), or a whole snapshot (version 1).
    Snapshot,
    /// The directory part of a snapshot.
    SnapshotDirectory,
    /// A part of a snapshot holding licenses.
    SnapshotLicenses,
    /// A usage cell.
    UsageCell,
    /// A record of a partition's stream ([`crate::fence::Record`]).
    StreamRecord,
}

impl Kind {
    fn tag(self) -> &'static [u8] {
        match self {
            Kind::Batch => b"leasehold-batch",
            Kind::Snapshot => b"leasehold-snapshot",
            Kind::SnapshotDirectory => b"leasehold-snapshot-directory",
            Kind::SnapshotLicenses => b"leasehold-snapshot-licenses",
            Kind::UsageCell => b"leasehold-usage-cell",
            Kind::StreamRecord => b"leasehold-stream-record",
        }
    }
}

/// What a version-2 snapshot is made of. Stored in the snapshot tree once the snapshot's file
/// is complete and on disk: a file without its manifest is an unfinished snapshot (its writer
/// stopped midway) and is not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// How many licenses the parts hold.
    pub licenses: u64,
    /// Each part's length in bytes, in file order: the directory, then the licenses.
    pub part_lengths: Vec<u64>,
}

/// The index of a snapshot's directory part; its license parts follow.
pub const DIRECTORY_PART: u32 = 0;

/// What the value under a snapshot's key holds.
#[derive(Debug)]
pub enum SnapshotHead {
    /// A version-1 snapshot: the whole state.
    Whole(Box<RecoveredSnapshotV1>),
    /// A version-2 snapshot's manifest: the state is in its parts.
    Manifest(Manifest),
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

/// The key part `index` of the snapshot at `seq` is checksummed with: the snapshot's key, then
/// the index as 4 big-endian bytes.
pub fn part_key(seq: u64, index: u32) -> [u8; 12] {
    let mut key = [0; 12];
    key[..8].copy_from_slice(&seq_key(seq));
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The name of the file of the snapshot at `seq`: the sequence number in 20 decimal digits, so
/// that names sort as sequence numbers do.
pub fn snapshot_file_name(seq: u64) -> String {
    format!("{seq:020}")
}

/// The name a snapshot's file is written under before it is complete.
pub fn partial_snapshot_file_name(seq: u64) -> String {
    format!("{seq:020}.partial")
}

/// The snapshot a file in [`SNAPSHOT_DIR`] belongs to, complete or not; `None` for a name this
/// format does not write.
pub fn snapshot_file_seq(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".partial").unwrap_or(name);
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
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
    write_entries(&mut bytes, entries)?;
    Some(seal(Kind::Batch, &seq_key(first_seq), bytes))
}

/// A batch of encoded entries (from [`encode_entry`]) as a partition stream's batch carries them:
/// a log record's payload, without its envelope (the stream record that carries it has its
/// own). `None` as for [`seal_batch`].
pub fn batch_payload(entries: &[Vec<u8>]) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(4 + entries.iter().map(|e| 4 + e.len()).sum::<usize>());
    write_entries(&mut bytes, entries)?;
    Some(bytes)
}

/// Appends the count of `entries`, then each one's length and bytes.
fn write_entries(bytes: &mut Vec<u8>, entries: &[Vec<u8>]) -> Option<()> {
    bytes.extend_from_slice(&u32::try_from(entries.len()).ok()?.to_le_bytes());
    for entry in entries {
        bytes.extend_from_slice(&u32::try_from(entry.len()).ok()?.to_le_bytes());
        bytes.extend_from_slice(entry);
    }
    Some(())
}

/// Decodes the log record stored under `first_seq`: its entries, in order.
pub fn decode_batch(first_seq: u64, value: &[u8]) -> Result<Vec<JournalEntry>, FormatError> {
    let (version, payload) = open(Kind::Batch, &seq_key(first_seq), value)?;
    match version {
        // Version 2 changed only snapshots; version 3 added fields to stored types.
        1..=FORMAT_VERSION => in_format(version, || decode_batch_entries(payload)),
        found => Err(FormatError::UnknownVersion { found, newest: FORMAT_VERSION }),
    }
}

/// Decodes the events-tree record of the event entry `seq`.
pub fn decode_event(seq: u64, value: &[u8]) -> Result<StoredEvent, FormatError> {
    let mut entries = decode_batch(seq, value)?;
    match (entries.pop(), entries.is_empty()) {
        (Some(JournalEntry { at, change: Change::Event(event) }), true) => Ok(StoredEvent { id: seq, at, event }),
        _ => Err(FormatError::Decode(format!("the record of event {seq} is not one event"))),
    }
}

/// Decodes the usage-records-tree record of entry `seq`: the closed usage record.
pub fn decode_usage_record(seq: u64, value: &[u8]) -> Result<UsageRecord, FormatError> {
    let mut entries = decode_batch(seq, value)?;
    match (entries.pop(), entries.is_empty()) {
        (Some(JournalEntry { change: Change::License { event: LicenseEvent::UsageClosed(record), .. }, .. }), true) => {
            Ok(*record)
        }
        _ => Err(FormatError::Decode(format!("the record of entry {seq} is not one closed usage record"))),
    }
}

/// Bytes of a usage cell's key.
pub const USAGE_CELL_KEY_LEN: usize = 1 + 8 + 16 + 16;

/// The key of a usage cell: granularity (0 hour, 1 day, 2 month), the period's start (ms,
/// big-endian with the sign bit flipped, so keys sort by time), the license, and the consumer
/// (zeros for the license's own cell).
pub fn usage_cell_key(key: &CellKey) -> [u8; USAGE_CELL_KEY_LEN] {
    let mut bytes = [0u8; USAGE_CELL_KEY_LEN];
    bytes[..9].copy_from_slice(&usage_period_prefix(key.granularity, key.period));
    bytes[9..25].copy_from_slice(key.license.0.as_bytes());
    if let Some(consumer) = key.consumer {
        bytes[25..].copy_from_slice(consumer.0.as_bytes());
    }
    bytes
}

/// The first bytes of the keys of `granularity`'s cells of the period starting at `period`.
pub fn usage_period_prefix(granularity: Granularity, period: Timestamp) -> [u8; 9] {
    let mut bytes = [0u8; 9];
    bytes[0] = match granularity {
        Granularity::Hour => 0,
        Granularity::Day => 1,
        Granularity::Month => 2,
    };
    bytes[1..].copy_from_slice(&((period.as_millis() as u64) ^ (1 << 63)).to_be_bytes());
    bytes
}

/// The cell key stored as `bytes` (the inverse of [`usage_cell_key`]).
pub fn usage_cell_key_of(bytes: &[u8]) -> Result<CellKey, FormatError> {
    let bytes: &[u8; USAGE_CELL_KEY_LEN] =
        bytes.try_into().map_err(|_| FormatError::Decode(format!("a usage cell key of {} bytes", bytes.len())))?;
    let granularity = match bytes[0] {
        0 => Granularity::Hour,
        1 => Granularity::Day,
        2 => Granularity::Month,
        other => return Err(FormatError::Decode(format!("usage granularity {other}"))),
    };
    let mut period = [0u8; 8];
    period.copy_from_slice(&bytes[1..9]);
    let period = Timestamp::from_millis((u64::from_be_bytes(period) ^ (1 << 63)) as i64);
    let id = |range: std::ops::Range<usize>| {
        let mut raw = [0u8; 16];
        raw.copy_from_slice(&bytes[range]);
        uuid::Uuid::from_bytes(raw)
    };
    let consumer = id(25..41);
    Ok(CellKey {
        granularity,
        period,
        license: LicenseId(id(9..25)),
        consumer: (!consumer.is_nil()).then_some(ConsumerId(consumer)),
    })
}

/// Encodes a usage cell stored under `key`.
pub fn encode_usage_cell(key: &[u8], cell: &UsageCell) -> Result<Vec<u8>, FormatError> {
    encode(Kind::UsageCell, key, cell)
}

/// Decodes the usage cell stored under `key`.
pub fn decode_usage_cell(key: &[u8], value: &[u8]) -> Result<UsageCell, FormatError> {
    match open(Kind::UsageCell, key, value)? {
        (version @ 5..=FORMAT_VERSION, payload) => in_format(version, || decode_bincode(payload)),
        (found, _) => Err(FormatError::UnknownVersion { found, newest: FORMAT_VERSION }),
    }
}

/// Takes a `u32 LE` length off the front of `rest`.
fn take_u32(rest: &mut &[u8]) -> Result<usize, FormatError> {
    let (head, tail) = rest.split_first_chunk::<4>().ok_or(FormatError::Decode("record cut short".into()))?;
    *rest = tail;
    usize::try_from(u32::from_le_bytes(*head)).map_err(|e| FormatError::Decode(e.to_string()))
}

/// The entries of a log record's payload, which is also what a partition stream's batch carries
/// (see [`batch_payload`]), in the shapes of the format in force ([`in_format`]).
pub fn decode_batch_entries(payload: &[u8]) -> Result<Vec<JournalEntry>, FormatError> {
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
        entries.push(decode_bincode(entry)?);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(FormatError::TrailingBytes(rest.len()));
    }
    Ok(entries)
}

/// Writes the checksum of `bytes` (header included, checksum zeroed) for `kind` under `key`.
fn seal(kind: Kind, key: &[u8], mut bytes: Vec<u8>) -> Vec<u8> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[..1]);
    crc.update(&bytes[HEADER_LEN..]);
    crc.update(kind.tag());
    crc.update(key);
    bytes[1..HEADER_LEN].copy_from_slice(&crc.finalize().to_le_bytes());
    bytes
}

/// Checks the envelope of a `kind` value under `key`: its version and payload.
fn open<'v>(kind: Kind, key: &[u8], value: &'v [u8]) -> Result<(u8, &'v [u8]), FormatError> {
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
    crc.update(key);
    let computed = crc.finalize();
    // The checksum first: a version byte is only trusted once the value is known to be intact.
    if computed != stored {
        return Err(FormatError::Checksum { stored, computed });
    }
    Ok((version, payload))
}

/// Encodes `value` in the current format as a `kind` value under `key`.
fn encode<T: Serialize + ?Sized>(kind: Kind, key: &[u8], value: &T) -> Result<Vec<u8>, FormatError> {
    let mut bytes = vec![FORMAT_VERSION, 0, 0, 0, 0];
    bincode::serde::encode_into_std_write(value, &mut bytes, bincode_config())
        .map_err(|e| FormatError::Encode(e.to_string()))?;
    Ok(seal(kind, key, bytes))
}

/// Checks a snapshot part under `key`, written by format 2 or a later one, and decodes it in
/// the shapes of the format that wrote it.
fn decode_part<T: DeserializeOwned>(kind: Kind, key: &[u8], value: &[u8]) -> Result<T, FormatError> {
    match open(kind, key, value)? {
        (version @ 2..=FORMAT_VERSION, payload) => in_format(version, || decode_bincode(payload)),
        (found, _) => Err(FormatError::UnknownVersion { found, newest: FORMAT_VERSION }),
    }
}

/// The first format with partition streams.
const STREAM_RECORDS_SINCE: u8 = 9;

/// Encodes a record of partition `partition`'s stream. The partition is in the checksum, so a
/// record copied into another partition's stream does not decode there.
pub fn encode_stream_record(partition: u32, record: &crate::fence::Record) -> Result<Vec<u8>, FormatError> {
    encode(Kind::StreamRecord, &partition.to_be_bytes(), record)
}

/// Decodes a record of partition `partition`'s stream.
pub fn decode_stream_record(partition: u32, value: &[u8]) -> Result<crate::fence::Record, FormatError> {
    match open(Kind::StreamRecord, &partition.to_be_bytes(), value)? {
        (version @ STREAM_RECORDS_SINCE..=FORMAT_VERSION, payload) => in_format(version, || decode_bincode(payload)),
        (found, _) => Err(FormatError::UnknownVersion { found, newest: FORMAT_VERSION }),
    }
}

/// Encodes the manifest of the snapshot at `seq`.
pub fn encode_manifest(seq: u64, manifest: &Manifest) -> Result<Vec<u8>, FormatError> {
    encode(Kind::Snapshot, &seq_key(seq), manifest)
}

/// Decodes the value stored under snapshot key `seq`: a manifest, or a whole version-1
/// snapshot.
pub fn decode_snapshot_head(seq: u64, value: &[u8]) -> Result<SnapshotHead, FormatError> {
    match open(Kind::Snapshot, &seq_key(seq), value)? {
        (1, payload) => Ok(SnapshotHead::Whole(Box::new(in_format(1, || decode_bincode(payload))?))),
        (2..=FORMAT_VERSION, payload) => Ok(SnapshotHead::Manifest(decode_bincode(payload)?)),
        (found, _) => Err(FormatError::UnknownVersion { found, newest: FORMAT_VERSION }),
    }
}

/// Encodes the directory part of the snapshot at `seq`.
pub fn encode_directory_part(seq: u64, directory: &DirectorySnapshot) -> Result<Vec<u8>, FormatError> {
    encode(Kind::SnapshotDirectory, &part_key(seq, DIRECTORY_PART), directory)
}

/// Decodes the directory part of the snapshot at `seq`.
pub fn decode_directory_part(seq: u64, value: &[u8]) -> Result<DirectorySnapshot, FormatError> {
    decode_part(Kind::SnapshotDirectory, &part_key(seq, DIRECTORY_PART), value)
}

/// Encodes license part `index` of the snapshot at `seq`.
pub fn encode_licenses_part(seq: u64, index: u32, licenses: &[LicenseSnapshot]) -> Result<Vec<u8>, FormatError> {
    encode(Kind::SnapshotLicenses, &part_key(seq, index), licenses)
}

/// Decodes license part `index` of the snapshot at `seq`.
pub fn decode_licenses_part(seq: u64, index: u32, value: &[u8]) -> Result<Vec<LicenseSnapshot>, FormatError> {
    decode_part(Kind::SnapshotLicenses, &part_key(seq, index), value)
}

/// bincode 2 with serde, standard configuration (little endian, varints): the codec of every
/// version so far.
fn decode_bincode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FormatError> {
    let config = bincode_config().with_limit::<MAX_PAYLOAD_BYTES>();
    let (value, read) =
        bincode::serde::decode_from_slice(payload, config).map_err(|e| FormatError::Decode(e.to_string()))?;
    if read != payload.len() {
        return Err(FormatError::TrailingBytes(payload.len() - read));
    }
    Ok(value)
}
