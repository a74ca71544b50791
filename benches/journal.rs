//! The sled journal: durable appends per second, and restart time.
//!
//! - `durable_appends`: every append waits until it is flushed (`sync`). The baseline flushes
//!   once per append (`max_batch = 1`); group commit flushes once per batch with 1, 8, 64 and 512
//!   threads appending at once. The ratio of the two at 64 writers is what group commit buys
//!   (target: at least 20x).
//! - `restart`: opening a journal of N logged events (a lease issued, then released, over and
//!   over) by replaying the whole log, and in the steady state snapshots keep: two snapshots (at
//!   98% and 99% of N), the log cut up to the older one, and the last 1% replayed.
//!
//! Run with `cargo bench --bench journal`. `LEASEHOLD_BENCH_EVENTS` sets N (default 1,000,000);
//! `LEASEHOLD_BENCH_QUICK=1` makes a smoke run (N = 20,000 unless set, shorter measurements).

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use leasehold::decide::LicenseEvent;
use leasehold::journal::{Change, Durability, Journal, JournalEntry, MemoryJournal};
use leasehold::{
    ConsumeRequest, ConsumerKind, Credit, Dimension, Enforcement, Engine, LeaseId, LicenseeKind, NewConsumer,
    NewLicense, NewLicensee, NewProduct,
};
use leasehold_persistence::{DurabilityMode, JournalConfig, SledJournal};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PRODUCT: &str = "BenchApp";

fn quick() -> bool {
    std::env::var_os("LEASEHOLD_BENCH_QUICK").is_some()
}

fn restart_events() -> u64 {
    let default = if quick() { 20_000 } else { 1_000_000 };
    std::env::var("LEASEHOLD_BENCH_EVENTS").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

/// A real journal entry: the `LeaseIssued` of a consume on a seat license, and the license's
/// creation (the first entries an engine journals).
fn sample_entries() -> Vec<JournalEntry> {
    let memory = Arc::new(MemoryJournal::new());
    let engine = Engine::builder().journal(Arc::clone(&memory) as Arc<dyn Journal>).workers(1).build().expect("engine");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let licensee = NewLicensee { name: "bench".into(), kind: LicenseeKind::Organization, external_id: None };
        let licensee = engine.create_licensee(licensee).await.expect("licensee");
        let consumer = NewConsumer {
            name: "c".into(),
            kind: ConsumerKind::User,
            licensees: vec![licensee.id],
            email: None,
            external_id: None,
        };
        let (consumer, _) = engine.create_consumer(consumer).await.expect("consumer");
        engine
            .create_product(NewProduct { name: PRODUCT.into(), features: vec![], tiers: vec![] })
            .await
            .expect("product");
        let credit = Credit { dimension: Dimension::Seats, qty: 10, enforcement: Enforcement::Enforced };
        engine.create_license(NewLicense::new(licensee.id, PRODUCT, credit)).await.expect("license");
        engine.consume(ConsumeRequest::new(consumer.id, PRODUCT)).await.expect("consume");
    });
    memory.entries()
}

fn open(dir: &Path, config: JournalConfig) -> SledJournal {
    SledJournal::open(dir, config).expect("open the journal").0
}

/// Appends `total` copies of `entry` from `writers` tasks at once, each waiting for every
/// append to be durable before the next, as license actors do; returns the time it took. The
/// tasks run on one thread (as actors share a few arbiters), the journal writer on another.
fn durable_appends(
    rt: &tokio::runtime::Runtime,
    journal: &Arc<SledJournal>,
    entry: &Arc<JournalEntry>,
    writers: usize,
    total: u64,
) -> Duration {
    let per_writer = total.div_ceil(writers as u64);
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..writers)
            .map(|_| {
                let (journal, entry) = (Arc::clone(journal), Arc::clone(entry));
                tokio::spawn(async move {
                    for _ in 0..per_writer {
                        match journal.append(&entry) {
                            durability @ Durability::Pending(_) => durability.wait().await.expect("durable"),
                            other => panic!("sync mode answered {other:?}"),
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("an appender panicked");
        }
    });
    start.elapsed()
}

fn bench_durable_appends(c: &mut Criterion) {
    let entry = Arc::new(sample_entries().pop().expect("a lease entry"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut group = c.benchmark_group("durable_appends");
    group.throughput(Throughput::Elements(1)).sample_size(10);
    group.measurement_time(Duration::from_secs(if quick() { 2 } else { 8 }));
    let batch = JournalConfig::default().max_batch;
    let cases: [(&str, usize, usize); 6] = [
        ("one_flush_per_append", 1, 1),
        ("one_flush_per_append", 64, 1),
        ("group_commit", 1, batch),
        ("group_commit", 8, batch),
        ("group_commit", 64, batch),
        ("group_commit", 512, batch),
    ];
    for (name, writers, max_batch) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = JournalConfig { max_batch, snapshot_every_entries: None, ..JournalConfig::default() };
        let journal = Arc::new(open(dir.path(), config));
        group.bench_with_input(BenchmarkId::new(name, format!("{writers}_writers")), &writers, |b, &writers| {
            b.iter_custom(|iters| durable_appends(&rt, &journal, &entry, writers, iters.max(writers as u64)))
        });
    }
    group.finish();
}

/// A journal of `events` entries: the setup entries, then a lease issued and released in turn.
fn write_log(dir: &Path, events: u64, snapshots_at: &[u64]) {
    let config = JournalConfig { snapshot_every_entries: None, ..JournalConfig::with_durability(DurabilityMode::None) };
    let journal = open(dir, config);
    let mut entries = sample_entries();
    let lease_entry = entries.pop().expect("a lease entry");
    let (license, lease) = match &lease_entry.change {
        Change::License { license, event: LicenseEvent::LeaseIssued { lease, .. } } => (*license, lease.clone()),
        other => panic!("expected a lease, got {other:?}"),
    };
    for entry in &entries {
        let _ = journal.append(entry);
    }
    for i in entries.len() as u64..events {
        if snapshots_at.contains(&i) {
            journal.snapshot_now().expect("snapshot");
        }
        let event = if i % 2 == 0 {
            let id = LeaseId(uuid_from(i));
            LicenseEvent::LeaseIssued { lease: leasehold::model::Lease { id, ..lease.clone() }, replaces: None }
        } else {
            LicenseEvent::LeaseReleased { lease: LeaseId(uuid_from(i - 1)), used_qty: 0 }
        };
        if let Durability::Failed(e) =
            journal.append(&JournalEntry { at: lease_entry.at, change: Change::License { license, event } })
        {
            panic!("append: {e}");
        }
    }
}

fn uuid_from(i: u64) -> uuid::Uuid {
    uuid::Uuid::from_u64_pair(0x1ea5e, i)
}

fn bench_restart(c: &mut Criterion) {
    let events = restart_events();
    let mut group = c.benchmark_group("restart");
    group.sample_size(10).measurement_time(Duration::from_secs(if quick() { 2 } else { 20 }));
    let steady_state = [events - events / 50, events - events / 100];
    for (name, snapshots_at) in [("replay_whole_log", &[][..]), ("two_snapshots_plus_1pct_tail", &steady_state[..])] {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = Instant::now();
        write_log(dir.path(), events, snapshots_at);
        eprintln!("restart/{name}: wrote {events} events in {:.1?}", written.elapsed());
        group.bench_function(BenchmarkId::new(name, format!("{events}_events")), |b| {
            b.iter(|| {
                let (journal, recovered) = SledJournal::open(
                    dir.path(),
                    JournalConfig { snapshot_every_entries: None, ..JournalConfig::default() },
                )
                .expect("reopen");
                assert_eq!(journal.recovery_report().last_seq, events);
                (journal, recovered)
            })
        });
    }
    group.finish();
}

/// Measures the one-flush-per-append baseline and group commit at 64 writers back to back,
/// three times, and prints the median rates and their ratio (the machine is shared and noisy;
/// a ratio from one run is what compares).
fn print_group_commit_ratio() {
    let entry = Arc::new(sample_entries().pop().expect("a lease entry"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (baseline_n, group_n) = if quick() { (300, 3_000) } else { (2_000, 40_000) };
    let mut rates = (Vec::new(), Vec::new());
    for _ in 0..3 {
        for (max_batch, writers, n, out) in [(1, 1, baseline_n, &mut rates.0), (1_024, 64, group_n, &mut rates.1)] {
            let dir = tempfile::tempdir().expect("tempdir");
            let config = JournalConfig { max_batch, snapshot_every_entries: None, ..JournalConfig::default() };
            let journal = Arc::new(open(dir.path(), config));
            let took = durable_appends(&rt, &journal, &entry, writers, n);
            out.push(n as f64 / took.as_secs_f64());
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (baseline, group) = (median(&mut rates.0), median(&mut rates.1));
    eprintln!(
        "durable appends/s: one flush per append {baseline:.0}, group commit with 64 writers {group:.0}: {:.1}x",
        group / baseline
    );
}

criterion_group!(benches, bench_durable_appends, bench_restart);

fn main() {
    // Only a real bench run measures the ratio; a test-mode run (`cargo test --benches`) only
    // checks that every bench still runs.
    if std::env::args().any(|a| a == "--bench") {
        print_group_commit_ratio();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
