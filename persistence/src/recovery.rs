//! Reading a journal back: pick the newest valid snapshot, replay the log after it, and cut off a
//! damaged tail, so that the engine restarts with exactly the state it had acknowledged.
//!
//! What recovery tolerates and what it refuses:
//! - a damaged snapshot (its manifest or any of its parts, or its file missing or short): warned
//!   about, deleted, and the previous one used (two are kept);
//! - a snapshot file without a manifest (its writer stopped midway): not a snapshot, ignored;
//! - damaged records at the very end of the log (a torn last write): warned about and cut off,
//!   since no acknowledged change can follow them;
//! - a damaged record followed by a valid one, or a gap in the sequence numbers: an error. Going
//!   on would silently drop acknowledged changes in the middle of the history.

use crate::error::{FormatError, PersistenceError};
use crate::format::{
    decode_batch, decode_directory_part, decode_licenses_part, decode_snapshot_head, encode_entry, key_seq, seal_batch,
    seq_key, snapshot_file_name, Manifest, SnapshotHead, DIRECTORY_PART,
};
use crate::snapshot::{remove_snapshot, Stores};
use leasehold_engine::decide::{LicenseEvent, LicenseState};
use leasehold_engine::directory::DirectorySnapshot;
use leasehold_engine::ids::LicenseId;
use leasehold_engine::journal::{Change, JournalEntry};
use leasehold_engine::replay::{LicenseSnapshot, Recovered};
use leasehold_engine::Timestamp;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

/// Damaged records cut off the end of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutTail {
    /// The sequence number the first cut record started at; the log now ends just before it.
    pub from_seq: u64,
    /// How many records were cut.
    pub records: u64,
    /// What was wrong with the first of them.
    pub reason: FormatError,
}

/// What recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The snapshot the state was loaded from, if any.
    pub snapshot_seq: Option<u64>,
    /// Damaged snapshots that were skipped (and deleted), with the reason.
    pub discarded_snapshots: Vec<(u64, FormatError)>,
    /// Entries replayed after the snapshot.
    pub replayed_entries: u64,
    /// Damaged records cut off the end of the log.
    pub cut_tail: Option<CutTail>,
    /// The sequence number of the last entry in the recovered state.
    pub last_seq: u64,
    /// Time spent opening sled (its own recovery of pages and segments), in milliseconds.
    pub open_ms: u64,
    /// Time spent reading and decoding the snapshot, in milliseconds.
    pub snapshot_ms: u64,
    /// Parts of the snapshot's file read and decoded (0 for a version-1 snapshot, one value).
    pub snapshot_parts: u64,
    /// Bytes the snapshot was read from (its manifest and parts, or the whole version-1 value).
    pub snapshot_bytes: u64,
    /// Threads that decoded the snapshot.
    pub snapshot_threads: usize,
    /// Time spent replaying the log after it, in milliseconds.
    pub replay_ms: u64,
    /// Licenses whose rebuilt state breaks an invariant: they start halted (see
    /// [`leasehold_engine::replay::Recovered::halted`]).
    pub halted_licenses: usize,
}

/// The state recovery starts from: the newest snapshot that decodes.
pub(crate) struct Base {
    /// The snapshot's sequence number; 0 when there is none.
    pub(crate) seq: u64,
    /// Its state (empty when there is none).
    pub(crate) state: Recovered,
    /// Newer snapshots that are damaged, newest first, with the reason.
    pub(crate) damaged: Vec<(u64, FormatError)>,
    /// What reading the snapshot took.
    pub(crate) read: ReadStats,
}

/// What reading a snapshot took.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReadStats {
    /// Parts read.
    pub(crate) parts: u64,
    /// Bytes read.
    pub(crate) bytes: u64,
    /// Threads that decoded them.
    pub(crate) threads: usize,
}

/// Why a snapshot could not be read: it is damaged or incomplete (recovery falls back to an older
/// one), or storage failed (recovery stops).
pub(crate) enum ReadError {
    Damaged(FormatError),
    Storage(PersistenceError),
}

impl From<FormatError> for ReadError {
    fn from(e: FormatError) -> Self {
        ReadError::Damaged(e)
    }
}

/// The newest snapshot that decodes, and the damaged ones found on the way. A version-2
/// snapshot's parts are decoded on `threads` threads.
pub(crate) fn newest_snapshot(stores: &Stores, threads: usize) -> Result<Base, PersistenceError> {
    let mut damaged = Vec::new();
    for item in snapshots_newest_first(stores) {
        let (seq, value) = item?;
        let read = match decode_snapshot_head(seq, &value) {
            Ok(SnapshotHead::Whole(snapshot)) => {
                let read = ReadStats { parts: 0, bytes: value.len() as u64, threads: 1 };
                drop(value);
                Ok((Recovered::from_snapshot_v1(*snapshot), read))
            }
            Ok(SnapshotHead::Manifest(manifest)) => SnapshotFile::open(&stores.snapshot_dir, seq, &manifest)
                .and_then(|file| read_parts(&file, threads))
                .map(|(state, read)| (state, ReadStats { bytes: read.bytes + value.len() as u64, ..read })),
            Err(e) => Err(ReadError::Damaged(e)),
        };
        match read {
            Ok((state, read)) => return Ok(Base { seq, state, damaged, read }),
            Err(ReadError::Damaged(e)) => damaged.push((seq, e)),
            Err(ReadError::Storage(e)) => return Err(e),
        }
    }
    Ok(Base { seq: 0, state: Recovered::default(), damaged, read: ReadStats::default() })
}

/// The snapshots' manifests (or version-1 values) under their sequence numbers, newest first;
/// one under a malformed key is skipped with a warning.
pub(crate) fn snapshots_newest_first(
    stores: &Stores,
) -> impl Iterator<Item = Result<(u64, sled::IVec), PersistenceError>> + '_ {
    stores.snapshots.iter().rev().filter_map(|item| match item {
        Err(e) => Some(Err(e.into())),
        Ok((key, value)) => match key_seq(&key) {
            Ok(seq) => Some(Ok((seq, value))),
            Err(e) => {
                tracing::warn!(error = %e, "skipping a snapshot under a malformed key");
                None
            }
        },
    })
}

/// A version-2 snapshot's file, open, with where each of its parts lies.
pub(crate) struct SnapshotFile {
    file: File,
    path: PathBuf,
    seq: u64,
    /// Where each part starts, and its length; part 0 is the directory.
    extents: Vec<(u64, u64)>,
    /// How many licenses the manifest says the parts hold.
    licenses: u64,
}

impl SnapshotFile {
    /// Opens the file of the snapshot at `seq` in `dir`, as `manifest` describes it. A missing
    /// file, or one cut short, is found here, before any part is read (or a buffer allocated for
    /// one).
    pub(crate) fn open(dir: &Path, seq: u64, manifest: &Manifest) -> Result<Self, ReadError> {
        let path = dir.join(snapshot_file_name(seq));
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(FormatError::MissingPart(DIRECTORY_PART).into())
            }
            Err(source) => return Err(ReadError::Storage(PersistenceError::SnapshotFile { path, source })),
        };
        let file_len = file
            .metadata()
            .map_err(|source| ReadError::Storage(PersistenceError::SnapshotFile { path: path.clone(), source }))?
            .len();
        let mut offset = 0;
        let mut extents = Vec::with_capacity(manifest.part_lengths.len());
        for (index, len) in (0u32..).zip(&manifest.part_lengths) {
            if offset + len > file_len {
                return Err(FormatError::MissingPart(index).into());
            }
            extents.push((offset, *len));
            offset += len;
        }
        Ok(SnapshotFile { file, path, seq, extents, licenses: manifest.licenses })
    }

    /// How many parts the snapshot has (the directory's included).
    pub(crate) fn parts(&self) -> usize {
        self.extents.len()
    }

    /// The bytes of every part.
    fn bytes(&self) -> u64 {
        self.extents.iter().map(|(_, len)| len).sum()
    }

    /// Part `index`'s envelope, as it is in the file.
    fn read(&self, index: usize) -> Result<Vec<u8>, ReadError> {
        let part = u32::try_from(index).unwrap_or(u32::MAX);
        let &(offset, len) = self.extents.get(index).ok_or(FormatError::MissingPart(part))?;
        let mut value = vec![0; usize::try_from(len).map_err(|_| FormatError::MissingPart(part))?];
        match self.file.read_exact_at(&mut value, offset) {
            Ok(()) => Ok(value),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(FormatError::MissingPart(part).into()),
            Err(source) => Err(ReadError::Storage(PersistenceError::SnapshotFile { path: self.path.clone(), source })),
        }
    }

    /// The directory part.
    pub(crate) fn directory(&self) -> Result<DirectorySnapshot, ReadError> {
        let value = self.read(DIRECTORY_PART as usize)?;
        Ok(decode_directory_part(self.seq, &value)?)
    }

    /// The licenses of part `index` (1 and after), sorted by license id.
    pub(crate) fn licenses(&self, index: usize) -> Result<Vec<LicenseSnapshot>, ReadError> {
        let value = self.read(index)?;
        let part = u32::try_from(index).map_err(|_| FormatError::MissingPart(u32::MAX))?;
        Ok(decode_licenses_part(self.seq, part, &value)?)
    }
}

/// One part of a snapshot, decoded (and its licenses' states restored).
enum DecodedPart {
    Directory(Box<DirectorySnapshot>),
    Licenses(Vec<(LicenseId, LicenseState, Timestamp)>),
}

/// Reads the parts of a version-2 snapshot and assembles its state. `threads` threads take parts
/// in turn (the directory, the largest, first), each reading, decoding and restoring its part's
/// license states, so the work is spread however the parts vary in size; meanwhile this thread
/// puts the restored licenses in the map as they come, so that little is left to do once the
/// last part is decoded. The first damaged or missing part stops them all.
fn read_parts(snapshot: &SnapshotFile, threads: usize) -> Result<(Recovered, ReadStats), ReadError> {
    let bytes = snapshot.bytes();
    let threads = threads.clamp(1, snapshot.parts().max(1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    // Every license takes at least a byte: a manifest cannot make this allocate more than that.
    let mut licenses = HashMap::with_capacity(usize::try_from(snapshot.licenses.min(bytes)).unwrap_or(0));
    let mut directory = None;
    let mut first_error = None;
    std::thread::scope(|scope| {
        // A few decoded parts may wait for this thread; more would only hold memory.
        let (decoded_tx, decoded) = mpsc::sync_channel(threads);
        for _ in 0..threads {
            let decoded_tx = decoded_tx.clone();
            let (next, failed) = (&next, &failed);
            scope.spawn(move || decode_parts_in_turn(snapshot, next, failed, &decoded_tx));
        }
        drop(decoded_tx);
        for part in decoded {
            match part {
                Ok(DecodedPart::Directory(part)) => directory = Some(*part),
                Ok(DecodedPart::Licenses(part)) => {
                    licenses.extend(part.into_iter().map(|(id, state, at)| (id, (state, at))));
                }
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    first_error.get_or_insert(e);
                }
            }
        }
    });
    if let Some(e) = first_error {
        return Err(e);
    }
    let directory = directory.ok_or(FormatError::MissingPart(DIRECTORY_PART))?;
    if licenses.len() as u64 != snapshot.licenses {
        return Err(FormatError::LicenseCount { expected: snapshot.licenses, found: licenses.len() as u64 }.into());
    }
    let read = ReadStats { parts: snapshot.parts() as u64, bytes, threads };
    Ok((Recovered::from_parts(directory, licenses), read))
}

/// One thread's share of [`read_parts`]: parts taken from `next`, decoded and sent to `decoded`,
/// until none is left or a part is damaged (here or on another thread: `failed`).
fn decode_parts_in_turn(
    snapshot: &SnapshotFile,
    next: &AtomicUsize,
    failed: &AtomicBool,
    decoded: &mpsc::SyncSender<Result<DecodedPart, ReadError>>,
) {
    while !failed.load(Ordering::Relaxed) {
        let index = next.fetch_add(1, Ordering::Relaxed);
        if index >= snapshot.parts() {
            return;
        }
        let part = if index == DIRECTORY_PART as usize {
            snapshot.directory().map(|d| DecodedPart::Directory(Box::new(d)))
        } else {
            snapshot.licenses(index).map(|licenses| {
                DecodedPart::Licenses(
                    licenses.into_iter().map(|(id, state, at)| (id, LicenseState::from_snapshot(state), at)).collect(),
                )
            })
        };
        if part.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        // Sending fails only once the reader has stopped listening: nothing left to do then.
        if decoded.send(part).is_err() {
            return;
        }
    }
}

/// Calls `apply` with each entry of the log records starting after `after` and at or before
/// `upto`, strictly: any damaged record or gap is an error, and so is a log that ends before
/// `upto` or whose last record reaches past it (a record is applied whole). For snapshots, which
/// fold a log that recovery has already vetted.
pub(crate) fn fold_log(
    log: &sled::Tree,
    after: u64,
    upto: u64,
    mut apply: impl FnMut(&JournalEntry),
) -> Result<(), PersistenceError> {
    let mut expected = after + 1;
    for item in log.range(seq_key(after + 1)..=seq_key(upto)) {
        let (key, value) = item?;
        let first =
            key_seq(&key).map_err(|reason| PersistenceError::CorruptEntry { seq: expected, reason, next_valid: 0 })?;
        if first != expected {
            return Err(PersistenceError::MissingEntries { expected, found: first });
        }
        let entries = decode_batch(first, &value).map_err(|reason| PersistenceError::CorruptEntry {
            seq: first,
            reason,
            next_valid: 0,
        })?;
        for entry in &entries {
            apply(entry);
        }
        expected += entries.len() as u64;
    }
    let reached = expected - 1;
    if reached != upto {
        return Err(PersistenceError::MissingEntries { expected: reached + 1, found: upto });
    }
    Ok(())
}

/// Puts entry `seq` in `tree` (the events or the usage-records tree) if a crash left it only
/// in the log (the log record is written first).
fn keep_copy(tree: &sled::Tree, seq: u64, entry: &JournalEntry) -> Result<(), PersistenceError> {
    if tree.contains_key(seq_key(seq))? {
        return Ok(());
    }
    let encoded = encode_entry(entry).map_err(|e| PersistenceError::Encode { what: "entry", reason: e.to_string() })?;
    if let Some(record) = seal_batch(seq, &[encoded]) {
        tree.insert(seq_key(seq), record)?;
    }
    Ok(())
}

/// Recovers the state of the journal in `stores`, repairing what may be repaired (see the
/// module comment). The snapshot is decoded on all cores: nothing else runs yet.
pub(crate) fn recover(stores: &Stores) -> Result<(Recovered, RecoveryReport), PersistenceError> {
    let started = Instant::now();
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let Base { seq: base_seq, mut state, damaged, read } = newest_snapshot(stores, threads)?;
    for (seq, error) in &damaged {
        tracing::warn!(snapshot_seq = seq, %error, "snapshot is damaged; falling back to the one before it");
        remove_snapshot(stores, *seq)?;
    }
    let mut report = RecoveryReport {
        snapshot_seq: (base_seq > 0).then_some(base_seq),
        discarded_snapshots: damaged,
        snapshot_ms: elapsed_ms(started),
        snapshot_parts: read.parts,
        snapshot_bytes: read.bytes,
        snapshot_threads: read.threads,
        ..RecoveryReport::default()
    };
    let (db, log) = (&stores.db, &stores.log);
    let usage_merged = crate::usage::merged_upto(stores)?;
    let replay_started = Instant::now();
    let mut expected = base_seq + 1;
    // Damaged records seen so far (their keys, and the first one's reason): cut if nothing valid
    // follows them. How many entries a damaged record held is unknown, so after one the
    // sequence numbers cannot be checked, only whether anything valid follows.
    let mut damaged_keys: Vec<sled::IVec> = Vec::new();
    let mut first_damage: Option<(u64, FormatError)> = None;
    for item in log.range(seq_key(base_seq + 1)..) {
        let (key, value) = item?;
        let decoded = key_seq(&key).and_then(|first| Ok((first, decode_batch(first, &value)?)));
        match (decoded, &first_damage) {
            (Ok((first, _)), Some((damaged_seq, reason))) => {
                return Err(PersistenceError::CorruptEntry {
                    seq: *damaged_seq,
                    reason: reason.clone(),
                    next_valid: first,
                });
            }
            (Ok((first, _)), None) if first != expected => {
                return Err(PersistenceError::MissingEntries { expected, found: first });
            }
            (Ok((first, entries)), None) => {
                for (seq, entry) in (first..).zip(&entries) {
                    state.apply(entry);
                    match &entry.change {
                        Change::Event(_) => keep_copy(&stores.events, seq, entry)?,
                        Change::License { event: LicenseEvent::UsageClosed(_), .. } if seq > usage_merged => {
                            keep_copy(&stores.usage_records, seq, entry)?
                        }
                        _ => {}
                    }
                }
                expected += entries.len() as u64;
                report.replayed_entries += entries.len() as u64;
            }
            (Err(reason), None) => {
                first_damage = Some((expected, reason));
                damaged_keys.push(key);
            }
            (Err(_), Some(_)) => damaged_keys.push(key),
        }
    }
    if let Some((from_seq, reason)) = first_damage {
        let records = damaged_keys.len() as u64;
        tracing::warn!(
            from_seq,
            records,
            error = %reason,
            "journal tail is damaged (a torn or corrupt last write); cutting {records} records off, from entry {from_seq}"
        );
        for key in damaged_keys {
            log.remove(key)?;
        }
        db.flush()?;
        report.cut_tail = Some(CutTail { from_seq, records, reason });
    }
    report.last_seq = expected - 1;
    // Events of records that were cut (or never flushed with their record) are not events.
    for tree in [&stores.events, &stores.usage_records] {
        for key in tree.range(seq_key(expected)..).keys() {
            tree.remove(key?)?;
        }
    }
    report.replay_ms = elapsed_ms(replay_started);
    report.halted_licenses = state.check();
    for violation in state.halted.values() {
        tracing::error!(%violation, "license halted: its recovered state breaks an invariant");
    }
    Ok((state, report))
}

/// Milliseconds since `since`.
pub(crate) fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
