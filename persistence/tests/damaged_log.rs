//! A damaged log: a torn or corrupt last record is cut off with a warning and the journal goes on;
//! a damaged record with valid ones after it is refused, never silently skipped.

mod common;

use common::{append_all, replayed, workload_entries};
use leasehold_engine::journal::{Durability, Journal};
use leasehold_engine::replay::Recovered;
use leasehold_persistence::format::{seq_key, LOG_TREE};
use leasehold_persistence::{JournalConfig, PersistenceError, SledJournal};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

fn config() -> JournalConfig {
    JournalConfig { snapshot_every_entries: None, ..JournalConfig::default() }
}

/// A journal in `dir` holding `entries`, closed.
fn write_journal(dir: &Path, entries: &[leasehold_engine::journal::JournalEntry]) {
    let (journal, _) = SledJournal::open(dir, config()).unwrap_or_else(|e| panic!("open: {e}"));
    append_all(&journal, entries);
}

/// Replaces the value of the log record of entry `seq` with what `damage` makes of it.
fn damage_entry(dir: &Path, seq: u64, damage: impl FnOnce(&mut Vec<u8>)) {
    let db = leasehold_persistence::open_sled(dir).unwrap_or_else(|e| panic!("sled: {e}"));
    let log = db.open_tree(LOG_TREE).unwrap_or_else(|e| panic!("tree: {e}"));
    let mut value = log.get(seq_key(seq)).ok().flatten().map(|v| v.to_vec()).unwrap_or_default();
    damage(&mut value);
    log.insert(seq_key(seq), value).unwrap_or_else(|e| panic!("insert: {e}"));
    db.flush().unwrap_or_else(|e| panic!("flush: {e}"));
}

/// A `tracing` writer that keeps what is logged, to check the warnings.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

/// Opens the journal in `dir`, capturing what it logs.
fn open_logged(dir: &Path) -> (Result<(SledJournal, Recovered), PersistenceError>, String) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let opened = tracing::subscriber::with_default(subscriber, || SledJournal::open(dir, config()));
    (opened, captured.text())
}

#[test]
fn a_corrupt_last_entry_is_cut_off_with_a_warning() {
    let entries = workload_entries(29, 100);
    let last = entries.len() as u64;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    write_journal(dir.path(), &entries);
    damage_entry(dir.path(), last, |v| {
        let i = v.len() - 1;
        v[i] ^= 0x01;
    });
    let (opened, log) = open_logged(dir.path());
    let (journal, recovered) = opened.unwrap_or_else(|e| panic!("a torn tail must not stop recovery: {e}"));
    assert!(log.contains("WARN") && log.contains("cutting 1 records off"), "no clear warning: {log}");
    let report = journal.recovery_report();
    assert_eq!(report.cut_tail.as_ref().map(|cut| (cut.from_seq, cut.records)), Some((last, 1)));
    assert_eq!(report.last_seq, last - 1);
    assert_eq!(recovered.to_snapshot(), replayed(&entries[..entries.len() - 1]));

    // The journal goes on from the cut: the next entry takes the cut one's place.
    let rt = common::runtime();
    let durability = journal.append(&entries[entries.len() - 1]);
    assert!(matches!(durability, Durability::Pending(_)));
    rt.block_on(durability.wait()).unwrap_or_else(|e| panic!("append after the cut: {e}"));
    drop(journal);
    let (opened, _) = open_logged(dir.path());
    let (journal, recovered) = opened.unwrap_or_else(|e| panic!("reopen: {e}"));
    assert_eq!(journal.recovery_report().cut_tail, None);
    assert_eq!(recovered.to_snapshot(), replayed(&entries));
}

#[test]
fn a_truncated_last_entry_is_cut_off() {
    let entries = workload_entries(31, 60);
    let last = entries.len() as u64;
    for keep in [0, 3, 5, 20] {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        write_journal(dir.path(), &entries);
        damage_entry(dir.path(), last, |v| v.truncate(keep));
        let (opened, log) = open_logged(dir.path());
        let (journal, recovered) = opened.unwrap_or_else(|e| panic!("truncated to {keep}: {e}"));
        assert!(log.contains("journal tail is damaged"), "no warning for a value cut to {keep} bytes: {log}");
        assert_eq!(journal.recovery_report().last_seq, last - 1);
        assert_eq!(recovered.to_snapshot(), replayed(&entries[..entries.len() - 1]));
    }
}

#[test]
fn a_corrupt_entry_followed_by_valid_ones_is_an_error_not_a_partial_load() {
    let entries = workload_entries(37, 60);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    write_journal(dir.path(), &entries);
    damage_entry(dir.path(), 7, |v| v[6] ^= 0x80);
    let (opened, _) = open_logged(dir.path());
    match opened {
        Err(PersistenceError::CorruptEntry { seq: 7, next_valid: 8, .. }) => {}
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("a damaged middle entry was skipped silently"),
    }
}

#[test]
fn a_missing_entry_in_the_middle_is_an_error() {
    let entries = workload_entries(41, 60);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    write_journal(dir.path(), &entries);
    {
        let db = leasehold_persistence::open_sled(dir.path()).unwrap_or_else(|e| panic!("sled: {e}"));
        let log = db.open_tree(LOG_TREE).unwrap_or_else(|e| panic!("tree: {e}"));
        log.remove(seq_key(10)).unwrap_or_else(|e| panic!("remove: {e}"));
        db.flush().unwrap_or_else(|e| panic!("flush: {e}"));
    }
    match SledJournal::open(dir.path(), config()) {
        Err(PersistenceError::MissingEntries { expected: 10, found: 11 }) => {}
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("a gap in the log was skipped silently"),
    }
}

#[test]
fn an_entry_moved_to_another_sequence_number_is_detected() {
    let entries = workload_entries(43, 40);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    write_journal(dir.path(), &entries);
    {
        let db = leasehold_persistence::open_sled(dir.path()).unwrap_or_else(|e| panic!("sled: {e}"));
        let log = db.open_tree(LOG_TREE).unwrap_or_else(|e| panic!("tree: {e}"));
        let third = log.get(seq_key(3)).ok().flatten().unwrap_or_default();
        log.insert(seq_key(4), third).unwrap_or_else(|e| panic!("insert: {e}"));
        db.flush().unwrap_or_else(|e| panic!("flush: {e}"));
    }
    assert!(matches!(SledJournal::open(dir.path(), config()), Err(PersistenceError::CorruptEntry { seq: 4, .. })));
}
