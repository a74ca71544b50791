//! Snapshots: restoring one gives exactly the state replaying the log gives, a damaged one falls
//! back to the one before it, and the log before the older kept snapshot is cut.

mod common;

use common::{append_all, replayed, workload_entries};
use leasehold_engine::decide::LicenseEvent;
use leasehold_engine::journal::Change;
use leasehold_engine::replay::Recovered;
use leasehold_persistence::format::{decode_snapshot, encode_snapshot, seq_key, LOG_TREE, SNAPSHOT_TREE};
use leasehold_persistence::{JournalConfig, SledJournal};

fn config() -> JournalConfig {
    JournalConfig { snapshot_every_entries: None, ..JournalConfig::default() }
}

fn open(dir: &std::path::Path) -> (SledJournal, Recovered) {
    SledJournal::open(dir, config()).unwrap_or_else(|e| panic!("open: {e}"))
}

#[test]
fn a_snapshot_survives_encoding_and_restores_the_same_state() {
    let entries = workload_entries(7, 400);
    let state = Recovered::from_entries(&entries);
    let bytes = encode_snapshot(9, &state.to_snapshot()).unwrap_or_else(|e| panic!("encode: {e}"));
    let decoded = decode_snapshot(9, &bytes).unwrap_or_else(|e| panic!("decode: {e}"));
    assert_eq!(Recovered::from_snapshot(decoded).to_snapshot(), state.to_snapshot());
}

#[test]
fn a_snapshot_at_any_point_plus_the_rest_of_the_log_equals_a_full_replay() {
    for seed in [1, 2, 3] {
        let entries = workload_entries(seed, 250);
        let kinds = |pred: fn(&LicenseEvent) -> bool| {
            entries.iter().filter(|e| matches!(&e.change, Change::License { event, .. } if pred(event))).count()
        };
        assert!(kinds(|e| matches!(e, LicenseEvent::LeaseIssued { replaces: Some(_), .. })) > 0, "no renewal");
        assert!(kinds(|e| matches!(e, LicenseEvent::LeaseReleased { .. })) > 0, "no release");
        assert!(kinds(|e| matches!(e, LicenseEvent::SeatAssigned(_))) > 0, "no seat assignment");
        let full = replayed(&entries);
        for cut in 0..=entries.len() {
            let prefix = Recovered::from_entries(&entries[..cut]);
            let bytes = encode_snapshot(cut as u64, &prefix.to_snapshot()).unwrap_or_else(|e| panic!("encode: {e}"));
            let decoded = decode_snapshot(cut as u64, &bytes).unwrap_or_else(|e| panic!("decode: {e}"));
            let mut restored = Recovered::from_snapshot(decoded);
            for entry in &entries[cut..] {
                restored.apply(entry);
            }
            assert_eq!(restored.to_snapshot(), full, "seed {seed}: snapshot at {cut} + the rest differs from replay");
        }
    }
}

#[test]
fn snapshot_plus_tail_equals_full_replay() {
    let entries = workload_entries(11, 600);
    assert!(entries.len() > 300, "the workload should journal plenty: {}", entries.len());
    for cut in [1, entries.len() / 3, entries.len() / 2, entries.len() - 1, entries.len()] {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        {
            let (journal, _) = open(dir.path());
            append_all(&journal, &entries[..cut]);
            assert_eq!(journal.snapshot_now().ok().flatten(), Some(cut as u64));
            append_all(&journal, &entries[cut..]);
        }
        let (journal, recovered) = open(dir.path());
        assert_eq!(journal.recovery_report().snapshot_seq, Some(cut as u64));
        assert_eq!(journal.recovery_report().replayed_entries, (entries.len() - cut) as u64);
        assert_eq!(recovered.to_snapshot(), replayed(&entries), "snapshot at {cut} + tail differs from replay");
    }
}

#[test]
fn a_damaged_snapshot_falls_back_to_the_previous_one() {
    let entries = workload_entries(13, 500);
    let (a, b) = (entries.len() / 3, 2 * entries.len() / 3);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    {
        let (journal, _) = open(dir.path());
        append_all(&journal, &entries[..a]);
        assert_eq!(journal.snapshot_now().ok().flatten(), Some(a as u64));
        append_all(&journal, &entries[a..b]);
        assert_eq!(journal.snapshot_now().ok().flatten(), Some(b as u64));
        append_all(&journal, &entries[b..]);
    }
    {
        let db = sled::open(dir.path()).unwrap_or_else(|e| panic!("sled: {e}"));
        let snapshots = db.open_tree(SNAPSHOT_TREE).unwrap_or_else(|e| panic!("tree: {e}"));
        let mut value = snapshots.get(seq_key(b as u64)).ok().flatten().map(|v| v.to_vec()).unwrap_or_default();
        let middle = value.len() / 2;
        value[middle] ^= 0x40;
        snapshots.insert(seq_key(b as u64), value).unwrap_or_else(|e| panic!("insert: {e}"));
        db.flush().unwrap_or_else(|e| panic!("flush: {e}"));
    }
    let (journal, recovered) = open(dir.path());
    let report = journal.recovery_report();
    assert_eq!(report.snapshot_seq, Some(a as u64));
    assert_eq!(report.discarded_snapshots.len(), 1);
    assert_eq!(report.discarded_snapshots[0].0, b as u64);
    assert_eq!(recovered.to_snapshot(), replayed(&entries));
}

#[test]
fn the_log_is_cut_up_to_the_older_of_the_two_kept_snapshots() {
    let entries = workload_entries(17, 500);
    let marks = [entries.len() / 4, entries.len() / 2, 3 * entries.len() / 4];
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    {
        let (journal, _) = open(dir.path());
        let mut done = 0;
        for mark in marks {
            append_all(&journal, &entries[done..mark]);
            done = mark;
            assert_eq!(journal.snapshot_now().ok().flatten(), Some(mark as u64));
        }
        append_all(&journal, &entries[done..]);
    }
    {
        let db = sled::open(dir.path()).unwrap_or_else(|e| panic!("sled: {e}"));
        let snapshots: Vec<u64> = db
            .open_tree(SNAPSHOT_TREE)
            .unwrap_or_else(|e| panic!("tree: {e}"))
            .iter()
            .keys()
            .filter_map(|k| k.ok())
            .filter_map(|k| <[u8; 8]>::try_from(&*k).ok().map(u64::from_be_bytes))
            .collect();
        assert_eq!(snapshots, vec![marks[1] as u64, marks[2] as u64]);
        let log = db.open_tree(LOG_TREE).unwrap_or_else(|e| panic!("tree: {e}"));
        let first = log.first().ok().flatten().and_then(|(k, _)| <[u8; 8]>::try_from(&*k).ok()).map(u64::from_be_bytes);
        assert_eq!(first, Some(marks[1] as u64 + 1));
    }
    let (_journal, recovered) = open(dir.path());
    assert_eq!(recovered.to_snapshot(), replayed(&entries));
}

#[test]
fn background_snapshots_follow_the_configured_interval() {
    let entries = workload_entries(19, 300);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    {
        let config = JournalConfig { snapshot_every_entries: Some(50), ..JournalConfig::default() };
        let (journal, _) = SledJournal::open(dir.path(), config).unwrap_or_else(|e| panic!("open: {e}"));
        append_all(&journal, &entries);
    }
    let (journal, recovered) = open(dir.path());
    // Whichever snapshots the background thread managed to take, the state is the same.
    assert!(journal.recovery_report().snapshot_seq.is_some(), "no background snapshot was taken");
    assert_eq!(recovered.to_snapshot(), replayed(&entries));
}

#[test]
fn background_snapshots_wait_for_as_many_entries_as_the_state_holds() {
    let entries = workload_entries(23, 400);
    let cut = entries.len() * 3 / 4;
    let (first, rest) = entries.split_at(cut);
    let state = Recovered::from_entries(first);
    let size = state.licenses.len() + state.licenses.values().map(|(l, _)| l.leases().count()).sum::<usize>();
    assert!(size > 2 && rest.len() > size / 2, "the workload is too small for this test ({size} items)");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    {
        let (journal, _) = open(dir.path());
        append_all(&journal, first);
        let newest = journal.snapshot_now().unwrap_or_else(|e| panic!("snapshot: {e}"));
        assert_eq!(newest, Some(cut as u64));
    }
    {
        // Asked to snapshot after every entry: only the state's size (known from the snapshot
        // the journal opens with) holds the next one back.
        let config = JournalConfig { snapshot_every_entries: Some(1), ..JournalConfig::default() };
        let (journal, _) = SledJournal::open(dir.path(), config).unwrap_or_else(|e| panic!("open: {e}"));
        append_all(&journal, &rest[..size / 2]);
        journal.close();
    }
    let (journal, recovered) = open(dir.path());
    let report = journal.recovery_report();
    assert_eq!(report.snapshot_seq, Some(cut as u64), "a snapshot came before the state's size in entries");
    assert_eq!(recovered.to_snapshot(), replayed(&entries[..cut + size / 2]));
}
