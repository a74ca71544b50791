//! Events in the sled journal (SPEC section 11): kept in the events tree as they are written,
//! listed in order after a reopen and after snapshots cut the log they came in, and dropped
//! once older than the retention.

mod common;

use common::{append_all, workload_entries};
use leasehold_engine::events::{Actor, Event, EventQuery, Subject};
use leasehold_engine::journal::{Change, Journal, JournalEntry};
use leasehold_engine::Timestamp;
use leasehold_persistence::{JournalConfig, SledJournal};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn event(n: usize, at: Timestamp) -> JournalEntry {
    let event = Event {
        event_type: if n.is_multiple_of(2) { "licensee.created".into() } else { "product.updated".into() },
        actor: Actor::admin(),
        subject: Subject { kind: "licensee".into(), id: format!("subject-{n}") },
        data: format!("{{\"n\":{n}}}"),
    };
    JournalEntry { at, change: Change::Event(event) }
}

fn now() -> Timestamp {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    Timestamp::from_millis(i64::try_from(ms).unwrap_or(i64::MAX))
}

fn all(journal: &SledJournal) -> Vec<(u64, String)> {
    let query = EventQuery { after: None, event_type: None, subject: None, within: None, limit: 1000 };
    let page = journal.events(&query).unwrap_or_else(|e| panic!("events: {e}"));
    page.items.into_iter().map(|e| (e.id, e.event.subject.id)).collect()
}

/// Entries of a workload (which records the events of its directory changes) with one more
/// event, at `at`, after every tenth.
fn with_events(at: Timestamp) -> Vec<JournalEntry> {
    let mut entries = Vec::new();
    for (n, entry) in workload_entries(3, 120).into_iter().enumerate() {
        entries.push(entry);
        if n % 10 == 9 {
            entries.push(event(n, at));
        }
    }
    entries
}

/// The sequence numbers and subjects of the events among `entries` that `keep` keeps.
fn events_of(entries: &[JournalEntry], keep: impl Fn(&JournalEntry) -> bool) -> Vec<(u64, String)> {
    (1u64..)
        .zip(entries)
        .filter_map(|(seq, entry)| match &entry.change {
            Change::Event(event) if keep(entry) => Some((seq, event.subject.id.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn events_are_listed_in_order_after_a_reopen_and_after_a_snapshot_cut_their_log() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let config = JournalConfig { snapshot_every_entries: None, ..JournalConfig::default() };
    let entries = with_events(now());
    let (journal, _) = SledJournal::open(dir.path(), config.clone()).unwrap_or_else(|e| panic!("open: {e}"));
    append_all(&journal, &entries);
    let listed = all(&journal);
    assert_eq!(listed, events_of(&entries, |_| true), "an event's id is its sequence number");
    let after = listed[1].0;
    let filtered = journal
        .events(&EventQuery {
            after: Some(after),
            event_type: Some("product.*".into()),
            subject: None,
            within: None,
            limit: 2,
        })
        .unwrap_or_else(|e| panic!("events: {e}"));
    assert!(filtered.items.iter().all(|e| e.id > after && e.event.event_type.starts_with("product.")));
    assert_eq!((filtered.items.len(), filtered.next_after), (2, filtered.items.last().map(|e| e.id)));

    journal.snapshot_now().unwrap_or_else(|e| panic!("snapshot: {e}"));
    append_all(&journal, &[event(1000, now())]);
    journal.snapshot_now().unwrap_or_else(|e| panic!("snapshot: {e}"));
    drop(journal);
    let (journal, recovered) = SledJournal::open(dir.path(), config).unwrap_or_else(|e| panic!("reopen: {e}"));
    assert_eq!(journal.recovery_report().replayed_entries, 0, "the log was cut by the snapshots");
    assert_eq!(recovered.to_snapshot(), leasehold_engine::replay::Recovered::from_entries(&entries).to_snapshot());
    let mut expected = listed;
    expected.push((entries.len() as u64 + 1, "subject-1000".into()));
    assert_eq!(all(&journal), expected, "the events outlive the log they were written in");
    journal.close();
}

#[test]
fn a_snapshot_drops_the_events_older_than_the_retention() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let retention = Duration::from_secs(3600);
    let config =
        JournalConfig { snapshot_every_entries: None, event_retention: Some(retention), ..JournalConfig::default() };
    let (journal, _) = SledJournal::open(dir.path(), config).unwrap_or_else(|e| panic!("open: {e}"));
    let old = Timestamp::from_millis(now().as_millis() - 2 * 3_600_000);
    // Events are recorded in time order: old ones, then a recent one.
    let mut entries: Vec<JournalEntry> = (0..10).map(|n| event(n, old)).collect();
    entries.push(event(2000, now()));
    append_all(&journal, &entries);
    assert_eq!(all(&journal), events_of(&entries, |_| true));
    journal.snapshot_now().unwrap_or_else(|e| panic!("snapshot: {e}"));
    assert_eq!(all(&journal), vec![(11, "subject-2000".to_owned())], "only the events within the retention are kept");
    journal.close();
}
