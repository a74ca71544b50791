//! Building a snapshot on the one before it, in memory that follows the log since then rather
//! than the whole state.
//!
//! A license's state depends only on its own entries, and the directory only on the terms of the
//! licenses whose terms the log replaces or deletes ([`leasehold_engine::replay`]). So:
//!
//! 1. the log after the base is read for the licenses it changes, and those whose terms it
//!    changes;
//! 2. the base is read whole and checked (a damaged one is found before anything is built on
//!    it), keeping its directory and only the terms of step 1's second set;
//! 3. the log is folded onto that directory, which is written as part 0;
//! 4. the changed licenses are taken in ranges of ids; for each range, their states are restored
//!    from the base, the log is folded onto them, and the base's licenses up to the range's end
//!    are copied, the folded ones put in their places (or left out, when deleted).
//!
//! Only the directory, one range of licenses and one part are in memory at once; the log after
//! the base is read once per range, and the base's parts about three times. A version-1 base
//! (one value, from an older build) is restored and folded whole.

use super::{remove_snapshot, Stores};
use crate::error::{FormatError, PersistenceError};
use crate::format::{
    decode_snapshot_head, encode_directory_part, encode_licenses_part, encode_manifest, partial_snapshot_file_name,
    seq_key, snapshot_file_name, Manifest, SnapshotHead, LICENSES_PER_CHUNK,
};
use crate::recovery::{fold_log, snapshots_newest_first, ReadError, SnapshotFile};
use leasehold_engine::decide::LicenseState;
use leasehold_engine::directory::Directory;
use leasehold_engine::ids::LicenseId;
use leasehold_engine::replay::{apply_to_directory, terms_changed_by, LicenseSnapshot, Recovered};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The fewest changed licenses folded in one range.
const MIN_RANGE: usize = LICENSES_PER_CHUNK;

/// Licenses in a range at most, as a share of all the licenses: one range's states are the
/// building's memory, on top of the directory.
const RANGES_PER_STATE: usize = 8;

/// Writes the snapshot of the state after entry `upto`, built on the newest snapshot before it.
/// Returns the state's size as the snapshot trigger counts it (licenses plus live leases), or
/// `None` when the newest snapshot is already that recent.
pub(crate) fn build(stores: &Stores, upto: u64) -> Result<Option<u64>, PersistenceError> {
    let Some(base) = base_for(stores, upto)? else { return Ok(None) };
    let partial = stores.snapshot_dir.join(partial_snapshot_file_name(upto));
    let mut parts = PartsWriter::create(&partial, upto)?;
    match base {
        Base::Whole { seq, mut state } => {
            fold_log(&stores.log, seq, upto, |entry| state.apply(entry))?;
            let order = state.snapshot_order().map_err(|e| encode_error(e.to_string()))?;
            parts.write_directory(&state.directory)?;
            for id in order {
                parts.push(state.license_snapshot(id))?;
            }
        }
        Base::Parts(base) => build_on_parts(stores, upto, base, &mut parts)?,
    }
    let (manifest, size) = parts.finish()?;
    let complete = stores.snapshot_dir.join(snapshot_file_name(upto));
    std::fs::rename(&partial, &complete).map_err(|source| PersistenceError::SnapshotFile { path: partial, source })?;
    sync_dir(&stores.snapshot_dir)?;
    let manifest = encode_manifest(upto, &manifest).map_err(|e| encode_error(e.to_string()))?;
    stores.snapshots.insert(seq_key(upto), manifest)?;
    // The snapshot must be on disk before anything it replaces is removed.
    stores.db.flush()?;
    Ok(Some(size))
}

/// What a snapshot is built on.
enum Base {
    /// A version-1 snapshot, restored whole.
    Whole { seq: u64, state: Recovered },
    /// A version-2 snapshot (or none: the log from its start), read a part at a time.
    Parts(PartsBase),
}

/// A version-2 base, checked, and what the log after it changes.
struct PartsBase {
    /// Its sequence number (0: no snapshot).
    seq: u64,
    /// Its directory, holding the terms of the licenses whose terms the log replaces or deletes
    /// (and no other terms).
    directory: Directory,
    /// The licenses the log after it creates, changes or deletes, in id order.
    changed: Vec<LicenseId>,
    /// Its file (none when there is no snapshot), with the first license id of each part.
    file: Option<(SnapshotFile, Vec<Option<LicenseId>>)>,
    /// The licenses it holds.
    licenses: u64,
}

/// The newest snapshot before `upto` that reads, as a base; `None` when the newest snapshot is
/// already that recent. Damaged snapshots met on the way are removed, and the one before used.
fn base_for(stores: &Stores, upto: u64) -> Result<Option<Base>, PersistenceError> {
    let mut newest = true;
    for item in snapshots_newest_first(stores) {
        let (seq, value) = item?;
        if std::mem::take(&mut newest) && seq >= upto {
            return Ok(None);
        }
        let base = match decode_snapshot_head(seq, &value) {
            Ok(SnapshotHead::Whole(snapshot)) => Ok(Base::Whole { seq, state: Recovered::from_snapshot_v1(*snapshot) }),
            Ok(SnapshotHead::Manifest(manifest)) => log_changes(stores, seq, upto)
                .map_err(ReadError::Storage)
                .and_then(|(changed, retermed)| read_base(stores, seq, &manifest, changed, &retermed).map(Base::Parts)),
            Err(e) => Err(ReadError::Damaged(e)),
        };
        match base {
            Ok(base) => return Ok(Some(base)),
            Err(ReadError::Damaged(error)) => {
                tracing::warn!(snapshot_seq = seq, %error, "snapshot is damaged; building on the one before it");
                remove_snapshot(stores, seq)?;
            }
            Err(ReadError::Storage(e)) => return Err(e),
        }
    }
    let (changed, _) = log_changes(stores, 0, upto)?;
    let directory = Directory::default();
    Ok(Some(Base::Parts(PartsBase { seq: 0, directory, changed, file: None, licenses: 0 })))
}

/// The licenses the log entries after `after` and up to `upto` create, change or delete, in id
/// order, and the licenses whose terms they replace or delete.
fn log_changes(
    stores: &Stores,
    after: u64,
    upto: u64,
) -> Result<(Vec<LicenseId>, HashSet<LicenseId>), PersistenceError> {
    let mut changed = HashSet::new();
    let mut retermed = HashSet::new();
    fold_log(&stores.log, after, upto, |entry| {
        changed.extend(Recovered::license_changed_by(entry));
        retermed.extend(terms_changed_by(entry));
    })?;
    let mut changed: Vec<LicenseId> = changed.into_iter().collect();
    changed.sort_unstable();
    Ok((changed, retermed))
}

/// Reads the version-2 snapshot at `seq` whole, checking every part and that its licenses come
/// in id order, and keeps its directory with the terms of the `retermed` licenses.
fn read_base(
    stores: &Stores,
    seq: u64,
    manifest: &Manifest,
    changed: Vec<LicenseId>,
    retermed: &HashSet<LicenseId>,
) -> Result<PartsBase, ReadError> {
    let file = SnapshotFile::open(&stores.snapshot_dir, seq, manifest)?;
    let directory = file.directory()?;
    let mut terms = Vec::new();
    let mut first_ids = vec![None; file.parts()];
    let mut count = 0u64;
    let mut last = None;
    for (index, first_id) in first_ids.iter_mut().enumerate().skip(1) {
        let licenses = file.licenses(index)?;
        *first_id = licenses.first().map(|(id, _, _)| *id);
        for (id, state, _) in licenses {
            if last >= Some(id) {
                return Err(FormatError::LicenseOrder(u32::try_from(index).unwrap_or(u32::MAX)).into());
            }
            last = Some(id);
            count += 1;
            if retermed.contains(&id) {
                terms.push(state.license);
            }
        }
    }
    if count != manifest.licenses {
        return Err(FormatError::LicenseCount { expected: manifest.licenses, found: count }.into());
    }
    let directory = Directory::from_snapshot(directory, terms);
    Ok(PartsBase { seq, directory, changed, file: Some((file, first_ids)), licenses: count })
}

/// Folds the log onto a version-2 base into `parts` (see the module comment).
fn build_on_parts(
    stores: &Stores,
    upto: u64,
    base: PartsBase,
    parts: &mut PartsWriter,
) -> Result<(), PersistenceError> {
    let PartsBase { seq, mut directory, changed, file, licenses } = base;
    fold_log(&stores.log, seq, upto, |entry| apply_to_directory(&mut directory, entry))?;
    parts.write_directory(&directory)?;
    drop(directory);
    let file = file.as_ref();
    let mut walk =
        BaseWalk { file: file.map(|(file, _)| file), seq, next_part: 1, part: Vec::new().into_iter().peekable() };
    let total = usize::try_from(licenses).unwrap_or(usize::MAX).saturating_add(changed.len());
    let range_len = (total / RANGES_PER_STATE).max(MIN_RANGE);
    for range in changed.chunks(range_len) {
        let in_range = |id: &LicenseId| range.binary_search(id).is_ok();
        let mut states = Recovered::default();
        if let Some((file, first_ids)) = file {
            states.licenses = restore(file, first_ids, range).map_err(|e| damaged(seq, e))?;
        }
        fold_log(&stores.log, seq, upto, |entry| {
            if Recovered::license_changed_by(entry).is_some_and(|id| in_range(&id)) {
                states.apply_to_licenses(entry);
            }
        })?;
        let mut folded: Vec<LicenseId> = states.licenses.keys().copied().collect();
        folded.sort_unstable();
        for id in folded {
            while let Some(license) = walk.next_before(id)? {
                if !in_range(&license.0) {
                    parts.push(Some(license))?;
                }
            }
            parts.push(states.license_snapshot(id))?;
        }
        let last = range.last().copied();
        while let Some(license) = walk.next_through(last)? {
            if !in_range(&license.0) {
                parts.push(Some(license))?;
            }
        }
    }
    while let Some(license) = walk.next_through(None)? {
        parts.push(Some(license))?;
    }
    Ok(())
}

/// The states of the licenses of `range` (sorted) that the base holds, read from the parts whose
/// ids can include them.
fn restore(
    file: &SnapshotFile,
    first_ids: &[Option<LicenseId>],
    range: &[LicenseId],
) -> Result<HashMap<LicenseId, (LicenseState, leasehold_engine::Timestamp)>, ReadError> {
    let (Some(lowest), Some(highest)) = (range.first(), range.last()) else { return Ok(HashMap::new()) };
    let mut states = HashMap::with_capacity(range.len());
    for index in 1..file.parts() {
        let Some(first) = first_ids[index] else { continue };
        let next_first = first_ids[index + 1..].iter().flatten().next();
        if first > *highest || next_first.is_some_and(|next| next <= lowest) {
            continue;
        }
        for (id, state, at) in file.licenses(index)? {
            if range.binary_search(&id).is_ok() {
                states.insert(id, (LicenseState::from_snapshot(state), at));
            }
        }
    }
    Ok(states)
}

/// The base's licenses, walked in id order a part at a time.
struct BaseWalk<'a> {
    file: Option<&'a SnapshotFile>,
    seq: u64,
    next_part: usize,
    part: std::iter::Peekable<std::vec::IntoIter<LicenseSnapshot>>,
}

impl BaseWalk<'_> {
    /// The next license, if its id is below `id`.
    fn next_before(&mut self, id: LicenseId) -> Result<Option<LicenseSnapshot>, PersistenceError> {
        self.next_if(|next| next < id)
    }

    /// The next license, if its id is at most `last` (any, when `None`).
    fn next_through(&mut self, last: Option<LicenseId>) -> Result<Option<LicenseSnapshot>, PersistenceError> {
        self.next_if(|next| last.is_none_or(|last| next <= last))
    }

    fn next_if(&mut self, wanted: impl Fn(LicenseId) -> bool) -> Result<Option<LicenseSnapshot>, PersistenceError> {
        loop {
            if let Some(next) = self.part.peek() {
                return Ok(if wanted(next.0) { self.part.next() } else { None });
            }
            let Some(file) = self.file.filter(|file| self.next_part < file.parts()) else { return Ok(None) };
            self.part = file.licenses(self.next_part).map_err(|e| damaged(self.seq, e))?.into_iter().peekable();
            self.next_part += 1;
        }
    }
}

/// A base that read whole a moment ago and now does not.
fn damaged(seq: u64, error: ReadError) -> PersistenceError {
    match error {
        ReadError::Damaged(reason) => PersistenceError::DamagedSnapshot { seq, reason },
        ReadError::Storage(e) => e,
    }
}

fn encode_error(reason: String) -> PersistenceError {
    PersistenceError::Encode { what: "snapshot", reason }
}

/// Makes the entries of directory `dir` (a file created or renamed in it) durable.
fn sync_dir(dir: &Path) -> Result<(), PersistenceError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| PersistenceError::SnapshotFile { path: dir.to_owned(), source })
}

/// A snapshot's file being written, under its temporary name: its parts one after the other,
/// the directory first, then the licenses in id order gathered into parts of
/// [`LICENSES_PER_CHUNK`] (so only one part is ever encoded in memory).
struct PartsWriter {
    file: File,
    path: PathBuf,
    seq: u64,
    part_lengths: Vec<u64>,
    chunk: Vec<LicenseSnapshot>,
    licenses: u64,
    leases: u64,
}

impl PartsWriter {
    fn create(path: &Path, seq: u64) -> Result<Self, PersistenceError> {
        let file = File::create(path).map_err(|source| PersistenceError::SnapshotFile { path: path.into(), source })?;
        Ok(PartsWriter {
            file,
            path: path.to_owned(),
            seq,
            part_lengths: Vec::new(),
            chunk: Vec::with_capacity(LICENSES_PER_CHUNK),
            licenses: 0,
            leases: 0,
        })
    }

    fn write_directory(&mut self, directory: &Directory) -> Result<(), PersistenceError> {
        let part =
            encode_directory_part(self.seq, &directory.to_snapshot()).map_err(|e| encode_error(e.to_string()))?;
        self.write(&part)
    }

    fn write(&mut self, part: &[u8]) -> Result<(), PersistenceError> {
        self.file.write_all(part).map_err(|source| self.file_error(source))?;
        self.part_lengths.push(part.len() as u64);
        Ok(())
    }

    /// Adds the next license (in id order); a full chunk is written as a part.
    fn push(&mut self, license: Option<LicenseSnapshot>) -> Result<(), PersistenceError> {
        let Some(license) = license else { return Ok(()) };
        self.licenses += 1;
        self.leases += license.1.leases.len() as u64;
        self.chunk.push(license);
        if self.chunk.len() == LICENSES_PER_CHUNK {
            self.write_chunk()?;
        }
        Ok(())
    }

    fn write_chunk(&mut self) -> Result<(), PersistenceError> {
        let index = u32::try_from(self.part_lengths.len()).unwrap_or(u32::MAX);
        let part = encode_licenses_part(self.seq, index, &self.chunk).map_err(|e| encode_error(e.to_string()))?;
        self.chunk.clear();
        self.write(&part)
    }

    /// Writes the last chunk and syncs the file; its manifest, and the state's size (licenses
    /// plus live leases).
    fn finish(mut self) -> Result<(Manifest, u64), PersistenceError> {
        if !self.chunk.is_empty() {
            self.write_chunk()?;
        }
        self.file.sync_all().map_err(|source| self.file_error(source))?;
        let manifest = Manifest { licenses: self.licenses, part_lengths: self.part_lengths };
        Ok((manifest, self.licenses + self.leases))
    }

    fn file_error(&self, source: std::io::Error) -> PersistenceError {
        PersistenceError::SnapshotFile { path: self.path.clone(), source }
    }
}
