//! Reading a journal back: pick the newest valid snapshot, replay the log after it, and cut off a
//! damaged tail, so that the engine restarts with exactly the state it had acknowledged.
//!
//! What recovery tolerates and what it refuses:
//! - a damaged snapshot: warned about, deleted, and the previous one used (two are kept);
//! - damaged records at the very end of the log (a torn last write): warned about and cut off,
//!   since no acknowledged change can follow them;
//! - a damaged record followed by a valid one, or a gap in the sequence numbers: an error. Going
//!   on would silently drop acknowledged changes in the middle of the history.

use crate::error::{FormatError, PersistenceError};
use crate::format::{decode_batch, decode_snapshot, key_seq, seq_key};
use leasehold_engine::replay::Recovered;
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
    /// Time spent replaying the log after it, in milliseconds.
    pub replay_ms: u64,
}

/// The state recovery starts from: the newest snapshot that decodes.
pub(crate) struct Base {
    /// The snapshot's sequence number; 0 when there is none.
    pub(crate) seq: u64,
    /// Its state (empty when there is none).
    pub(crate) state: Recovered,
    /// Newer snapshots that are damaged, newest first, with the reason.
    pub(crate) damaged: Vec<(u64, FormatError)>,
}

/// The newest snapshot that decodes, and the damaged ones found on the way.
pub(crate) fn newest_snapshot(snapshots: &sled::Tree) -> Result<Base, PersistenceError> {
    let mut damaged = Vec::new();
    for item in snapshots.iter().rev() {
        let (key, value) = item?;
        let seq = match key_seq(&key) {
            Ok(seq) => seq,
            Err(e) => {
                tracing::warn!(error = %e, "skipping a snapshot under a malformed key");
                continue;
            }
        };
        match decode_snapshot(seq, &value) {
            Ok(snapshot) => return Ok(Base { seq, state: Recovered::from_snapshot(snapshot), damaged }),
            Err(e) => damaged.push((seq, e)),
        }
    }
    Ok(Base { seq: 0, state: Recovered::default(), damaged })
}

/// Applies the log records starting after `after` and at or before `upto` to `state`, strictly:
/// any damaged record or gap is an error. For snapshots, which fold a log that recovery has
/// already vetted. Returns the last sequence number applied (a record is applied whole, so this
/// is where a record ends).
pub(crate) fn fold_log(
    log: &sled::Tree,
    after: u64,
    upto: u64,
    state: &mut Recovered,
) -> Result<u64, PersistenceError> {
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
            state.apply(entry);
        }
        expected += entries.len() as u64;
    }
    Ok(expected - 1)
}

/// Recovers the state of the journal in `log` and `snapshots`, repairing what may be repaired
/// (see the module comment).
pub(crate) fn recover(
    db: &sled::Db,
    log: &sled::Tree,
    snapshots: &sled::Tree,
) -> Result<(Recovered, RecoveryReport), PersistenceError> {
    let started = Instant::now();
    let Base { seq: base_seq, mut state, damaged } = newest_snapshot(snapshots)?;
    for (seq, error) in &damaged {
        tracing::warn!(snapshot_seq = seq, %error, "snapshot is damaged; falling back to the one before it");
        snapshots.remove(seq_key(*seq))?;
    }
    let mut report = RecoveryReport {
        snapshot_seq: (base_seq > 0).then_some(base_seq),
        discarded_snapshots: damaged,
        snapshot_ms: elapsed_ms(started),
        ..RecoveryReport::default()
    };
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
            (Ok((_, entries)), None) => {
                for entry in &entries {
                    state.apply(entry);
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
    report.replay_ms = elapsed_ms(replay_started);
    Ok((state, report))
}

/// Milliseconds since `since`.
pub(crate) fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
