//! Listing events (`GET /admin/events`, SPEC section 11) from the sled journal's events tree:
//! a page from the start, a page from near the end (`after`), and the two filters at their
//! worst, where the few events they want lie among all the others (`type` and `subject`).
//!
//! Run with `cargo bench --bench events`. `LEASEHOLD_BENCH_EVENTS` sets how many events the
//! journal holds (default 1,000,000); `LEASEHOLD_BENCH_QUICK=1` makes a smoke run (20,000
//! unless set, shorter measurements).

use criterion::{criterion_group, Criterion};
use leasehold::events::{Actor, Event, EventQuery, Subject};
use leasehold::journal::{Change, Journal, JournalEntry};
use leasehold::Timestamp;
use leasehold_persistence::{DurabilityMode, JournalConfig, SledJournal};
use std::time::Duration;

fn quick() -> bool {
    std::env::var_os("LEASEHOLD_BENCH_QUICK").is_some()
}

fn events() -> u64 {
    let default = if quick() { 20_000 } else { 1_000_000 };
    std::env::var("LEASEHOLD_BENCH_EVENTS").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

/// Event `n`: license updates about a thousand licenses, with one licensee event in a thousand.
fn event(n: u64) -> JournalEntry {
    let (event_type, kind) =
        if n % 1000 == 999 { ("licensee.updated", "licensee") } else { ("license.updated", "license") };
    let event = Event {
        event_type: event_type.into(),
        actor: Actor::admin(),
        subject: Subject { kind: kind.into(), id: format!("{kind}-{}", n % 1000) },
        data: format!(r#"{{"credit":{{"qty":{n}}},"valid_until":null,"properties":{{"edition":"gold"}}}}"#),
    };
    JournalEntry { at: Timestamp::from_millis(1_800_000_000_000 + n as i64), change: Change::Event(event) }
}

fn listing(c: &mut Criterion) {
    let total = events();
    let dir = tempfile::tempdir().expect("a scratch directory");
    let config = JournalConfig { snapshot_every_entries: None, ..JournalConfig::with_durability(DurabilityMode::Sync) };
    let (journal, _) = SledJournal::open(dir.path(), config).expect("a journal");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    // A window of appends in flight at once, so that group commit writes them in few flushes.
    for window in (0..total).collect::<Vec<_>>().chunks(4096) {
        let pending: Vec<_> = window.iter().map(|n| journal.append(&event(*n))).collect();
        for durability in pending {
            rt.block_on(durability.wait()).expect("a durable event");
        }
    }
    let query = |after: Option<u64>, event_type: Option<&str>, subject: Option<&str>| EventQuery {
        after,
        event_type: event_type.map(Into::into),
        subject: subject.map(Into::into),
        within: None,
        limit: 100,
    };
    let mut group = c.benchmark_group(format!("events_listing_{total}"));
    if quick() {
        group.warm_up_time(Duration::from_millis(100)).measurement_time(Duration::from_millis(300)).sample_size(10);
    } else {
        group.sample_size(20);
    }
    let page = |q: EventQuery| {
        let page = journal.events(&q).expect("a page");
        assert!(!page.items.is_empty());
        page.items.len()
    };
    group.bench_function("first_page", |b| b.iter(|| page(query(None, None, None))));
    group.bench_function("page_after_90_percent", |b| b.iter(|| page(query(Some(total * 9 / 10), None, None))));
    group.bench_function("type_one_in_a_thousand", |b| b.iter(|| page(query(None, Some("licensee.*"), None))));
    group.bench_function("subject_one_in_a_thousand", |b| b.iter(|| page(query(None, None, Some("license-7")))));
    group.finish();
}

criterion_group!(benches, listing);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
