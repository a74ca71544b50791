//! Group commit: many appenders at once are all answered, in order, with one sequence each; a
//! closed journal refuses appends. (A failing journal: `storage_failure.rs`.)

mod common;

use common::workload_entries;
use leasehold_engine::journal::{Durability, Journal, JournalError};
use leasehold_persistence::{JournalConfig, SledJournal};
use std::sync::Arc;

const WRITERS: usize = 32;
const APPENDS_EACH: usize = 50;

#[test]
fn every_concurrent_appender_is_resolved_and_every_entry_is_kept() {
    let entries = Arc::new(workload_entries(23, 200));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let config = JournalConfig { snapshot_every_entries: None, ..JournalConfig::default() };
    {
        let (journal, _) = SledJournal::open(dir.path(), config.clone()).unwrap_or_else(|e| panic!("open: {e}"));
        let journal = Arc::new(journal);
        let threads: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (journal, entries) = (Arc::clone(&journal), Arc::clone(&entries));
                std::thread::spawn(move || {
                    let mut outcomes = Vec::new();
                    for i in 0..APPENDS_EACH {
                        let entry = &entries[(w * APPENDS_EACH + i) % entries.len()];
                        outcomes.push(match journal.append(entry) {
                            Durability::Pending(rx) => rx.blocking_recv().unwrap_or(Err(JournalError::Closed)),
                            Durability::Now => Err(JournalError::Io("sync mode answered at once".into())),
                            Durability::Failed(e) => Err(e),
                        });
                    }
                    outcomes
                })
            })
            .collect();
        for thread in threads {
            let outcomes = thread.join().unwrap_or_else(|_| panic!("an appender panicked"));
            assert!(outcomes.iter().all(Result::is_ok), "an append failed: {outcomes:?}");
        }
        assert_eq!(journal.last_seq(), (WRITERS * APPENDS_EACH) as u64);
    }
    let (journal, _) = SledJournal::open(dir.path(), config).unwrap_or_else(|e| panic!("reopen: {e}"));
    assert_eq!(journal.recovery_report().replayed_entries, (WRITERS * APPENDS_EACH) as u64);
    assert_eq!(journal.recovery_report().last_seq, (WRITERS * APPENDS_EACH) as u64);
}

#[test]
fn a_closed_journal_refuses_appends() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let (journal, _) = SledJournal::open(dir.path(), JournalConfig::default()).unwrap_or_else(|e| panic!("open: {e}"));
    journal.close();
    let entry = &workload_entries(3, 5)[0];
    assert!(matches!(journal.append(entry), Durability::Failed(JournalError::Closed)));
}

/// The outcome of a `sync` append, or a failure after a minute (instead of hanging the test).
fn durable_within_a_minute(durability: Durability) -> Result<(), JournalError> {
    let Durability::Pending(rx) = durability else { panic!("sync mode answers once durable") };
    let (tx, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(rx.blocking_recv().unwrap_or(Err(JournalError::Closed))));
    outcome.recv_timeout(std::time::Duration::from_secs(60)).unwrap_or_else(|_| panic!("an append waited a minute"))
}

#[test]
fn lingering_for_company_never_holds_a_lone_appender_nor_a_closing_journal() {
    let entries = workload_entries(5, 40);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    // A linger far longer than the test: any append that waited for it would fail the test.
    let config = JournalConfig {
        group_linger: std::time::Duration::from_secs(3600),
        snapshot_every_entries: None,
        ..JournalConfig::default()
    };
    let (journal, _) = SledJournal::open(dir.path(), config).unwrap_or_else(|e| panic!("open: {e}"));
    // One appender at a time: every batch holds one entry, so the writer never lingers.
    for entry in &entries[..10] {
        assert_eq!(durable_within_a_minute(journal.append(entry)), Ok(()));
    }
    // Many at once make batches of several, and the writer lingers for more; closing ends it.
    let pending: Vec<_> = entries[10..].iter().map(|entry| journal.append(entry)).collect();
    journal.close();
    for durability in pending {
        assert_eq!(durable_within_a_minute(durability), Ok(()));
    }
    assert_eq!(journal.last_seq(), entries.len() as u64);
}
