//! Capacity: how much memory one process needs for a million licenses each holding a live
//! lease, and how long a restart with that state takes (the targets: under 1.5 GiB RSS, restart
//! under 10 s).
//!
//! The data set: `licenses / 10` licensees, each with one consumer and ten seat licenses, one
//! per product (ten products); every consumer checks out all ten products, so every license
//! holds one live lease. The journal is the real sled journal (durability `sync`, group-committed
//! with about a thousand requests in flight), in a scratch directory.
//!
//! `cargo bench --bench capacity` runs the full million (most of its time is the seeding);
//! `LEASEHOLD_CAPACITY_LICENSES=<n>` picks another size; `LEASEHOLD_CAPACITY_KEEP_DIR=1` keeps
//! the data directory (its path is printed) to time restarts from it again with
//! `LEASEHOLD_CAPACITY_RESTART_FROM=<dir>`. In `cargo test --benches` it runs a
//! small data set as a smoke test and judges nothing.

use leasehold_engine::journal::Journal;
use leasehold_engine::model::{ConsumerKind, Credit, Dimension, Enforcement, LicenseeKind, SessionAnchor};
use leasehold_engine::{ConsumeRequest, Decision, Engine, NewConsumer, NewLicense, NewLicensee, NewProduct};
use leasehold_persistence::{DurabilityMode, JournalConfig, SledJournal};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

const PRODUCTS: usize = 10;
/// Requests in flight while seeding: enough to fill the journal's group commits.
const IN_FLIGHT: usize = 1_024;

fn rss_bytes() -> u64 {
    status_kib("VmRSS:") * 1024
}

/// The process's peak RSS so far.
fn peak_rss_bytes() -> u64 {
    status_kib("VmHWM:") * 1024
}

/// A `/proc/self/status` field given in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Bytes the allocator has handed out and not had back: the live data, without the free
/// memory the allocator keeps mapped (fragmentation) that RSS also counts.
fn heap_in_use_bytes() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallinfo2` only reads the allocator's statistics.
        let info = unsafe { libc::mallinfo2() };
        (info.uordblks + info.hblkhd) as u64
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    0
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// The journal and an engine on it, with how long recovery and the engine's start took.
fn open(dir: &Path) -> (Arc<SledJournal>, Engine, (Duration, Duration)) {
    let started = Instant::now();
    let mut config = JournalConfig::with_durability(DurabilityMode::Sync);
    if std::env::var_os("LEASEHOLD_CAPACITY_NO_SNAPSHOTS").is_some() {
        config.snapshot_every_entries = None;
    }
    let (journal, recovered) = SledJournal::open(dir, config).expect("the journal opens");
    let journal = Arc::new(journal);
    let recovered_in = started.elapsed();
    let engine = Engine::builder()
        .journal(Arc::clone(&journal) as Arc<dyn Journal>)
        .recovered(recovered)
        // Idle actors stop after a second or two, keeping only their state.
        .idle_sweep(Duration::from_secs(1))
        .build()
        .expect("the engine starts");
    (journal, engine, (recovered_in, started.elapsed() - recovered_in))
}

/// Runs `make(i)` for every `i` in `0..n`, `IN_FLIGHT` at a time; the results in order.
async fn all<T, F, Fut>(n: usize, make: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut tasks = JoinSet::new();
    for i in 0..n {
        if tasks.len() >= IN_FLIGHT {
            let (index, value) = tasks.join_next().await.expect("a task").expect("a seeding task panicked");
            results[index] = Some(value);
        }
        let fut = make(i);
        tasks.spawn(async move { (i, fut.await) });
    }
    while let Some(done) = tasks.join_next().await {
        let (index, value) = done.expect("a seeding task panicked");
        results[index] = Some(value);
    }
    results.into_iter().map(|r| r.expect("every task answered")).collect()
}

async fn seed(engine: &Engine, licensees: usize) -> usize {
    for p in 0..PRODUCTS {
        engine
            .create_product(NewProduct { name: format!("product-{p}"), features: vec![], tiers: vec![] })
            .await
            .expect("a product");
    }
    let engine_ = engine.clone();
    let parties = all(licensees, move |i| {
        let engine = engine_.clone();
        async move {
            let licensee = engine
                .create_licensee(NewLicensee {
                    name: format!("licensee-{i}"),
                    kind: LicenseeKind::Organization,
                    external_id: None,
                })
                .await
                .expect("a licensee");
            let (consumer, _key) = engine
                .create_consumer(NewConsumer {
                    name: format!("user-{i}"),
                    kind: ConsumerKind::User,
                    licensees: vec![licensee.id],
                    email: None,
                    external_id: None,
                })
                .await
                .expect("a consumer");
            (licensee.id, consumer.id)
        }
    })
    .await;
    println!("capacity: {licensees} licensees and consumers: RSS {:.0} MiB", mib(rss_bytes()));
    let credit = Credit { dimension: Dimension::Seats, qty: 1, enforcement: Enforcement::Enforced };
    let parties = Arc::new(parties);
    let (engine_, parties_) = (engine.clone(), Arc::clone(&parties));
    all(licensees * PRODUCTS, move |i| {
        let (engine, parties) = (engine_.clone(), Arc::clone(&parties_));
        async move {
            let mut new = NewLicense::new(parties[i / PRODUCTS].0, format!("product-{}", i % PRODUCTS), credit);
            new.model.session_anchors = vec![SessionAnchor::User];
            engine.create_license(new).await.expect("a license");
        }
    })
    .await;
    println!(
        "capacity: {} licenses: RSS {:.0} MiB, heap in use {:.0} MiB",
        licensees * PRODUCTS,
        mib(rss_bytes()),
        mib(heap_in_use_bytes())
    );
    let (engine_, parties_) = (engine.clone(), Arc::clone(&parties));
    let granted = all(licensees * PRODUCTS, move |i| {
        let (engine, parties) = (engine_.clone(), Arc::clone(&parties_));
        async move {
            let request = ConsumeRequest::new(parties[i / PRODUCTS].1, format!("product-{}", i % PRODUCTS));
            matches!(engine.consume(request).await, Ok(Decision::Granted(_)))
        }
    })
    .await;
    granted.into_iter().filter(|g| *g).count()
}

fn main() {
    if let Some(dir) = std::env::var_os(RESTART_FROM) {
        restart(Path::new(&dir));
        return;
    }
    let bench_run = std::env::args().any(|a| a == "--bench");
    let licenses: usize = std::env::var("LEASEHOLD_CAPACITY_LICENSES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if bench_run { 1_000_000 } else { 2_000 });
    let licensees = (licenses / PRODUCTS).max(1);
    let dir = tempfile::tempdir().expect("a scratch directory");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");

    let before = rss_bytes();
    let (journal, engine, _) = open(dir.path());
    let started = Instant::now();
    let leases = runtime.block_on(seed(&engine, licensees));
    let seeded_in = started.elapsed();
    assert_eq!(leases, licensees * PRODUCTS, "every license holds a lease");
    let seeded = rss_bytes();
    println!(
        "capacity: {} actors running at the end of seeding (the idle budget bounds them); heap in use {:.0} MiB",
        engine.running_actors(),
        mib(heap_in_use_bytes())
    );
    // A snapshot waits for any background one to finish, so the state measured next is the
    // steady one: everything recorded, nothing being copied.
    let snapshot_started = Instant::now();
    journal.snapshot_now().expect("a snapshot");
    println!(
        "capacity: a snapshot after seeding in {:.2} s; RSS {:.0} MiB",
        snapshot_started.elapsed().as_secs_f64(),
        mib(rss_bytes())
    );
    let running = engine.running_actors();
    let deadline = Instant::now() + Duration::from_secs(60);
    while engine.running_actors() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "capacity: {running} actors running after seeding, {} after the idle sweeps; RSS {:.0} MiB",
        engine.running_actors(),
        mib(rss_bytes())
    );
    let full = rss_bytes();
    println!("capacity: heap in use {:.0} MiB of RSS {:.0} MiB", mib(heap_in_use_bytes()), mib(full));
    println!(
        "capacity: {} licenses, {leases} live leases, {licensees} licensees and consumers: RSS {:.0} MiB \
         ({:.0} MiB over the empty process; {:.0} bytes per license with its lease); seeded in {:.1} s \
         (RSS {:.0} MiB at the end of seeding, snapshots running; peak RSS {:.0} MiB)",
        licensees * PRODUCTS,
        mib(full),
        mib(full.saturating_sub(before)),
        full.saturating_sub(before) as f64 / leases.max(1) as f64,
        seeded_in.as_secs_f64(),
        mib(seeded),
        mib(peak_rss_bytes()),
    );
    if std::env::var_os("LEASEHOLD_CAPACITY_NO_RESTART").is_some() {
        return;
    }
    drop(engine);
    journal.close();
    drop(journal);

    // The restart runs in a fresh process, as a real one would: this process still holds the
    // first engine's memory.
    let status = std::process::Command::new(std::env::current_exe().expect("this executable"))
        .env(RESTART_FROM, dir.path())
        .status()
        .expect("the restart process runs");
    assert!(status.success(), "the restart failed");
    if std::env::var_os("LEASEHOLD_CAPACITY_KEEP_DIR").is_some() {
        println!("capacity: data directory kept at {}", dir.keep().display());
    }
}

/// Set in the child process that measures a restart from this data directory.
const RESTART_FROM: &str = "LEASEHOLD_CAPACITY_RESTART_FROM";

fn restart(dir: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    let (journal, engine, (recovered_in, started_in)) = open(dir);
    let licenses = engine.directory().licenses().count();
    let report = journal.recovery_report();
    println!(
        "capacity: recovery: sled open {} ms, snapshot {} ms ({} parts, {:.0} MiB, {} threads), replaying {} entries {} ms",
        report.open_ms,
        report.snapshot_ms,
        report.snapshot_parts,
        mib(report.snapshot_bytes),
        report.snapshot_threads,
        report.replayed_entries,
        report.replay_ms
    );
    let usage = runtime.block_on(async {
        let license = engine.directory().licenses().next().map(|l| l.id).expect("a license");
        engine.usage(license).await.expect("usage")
    });
    assert_eq!(usage.seats_in_use, 1, "a recovered license holds its lease");
    println!(
        "capacity: restart with {licenses} licenses in {:.2} s ({:.2} s reading the snapshot and journal, \
         {:.2} s starting the engine on it); RSS after restart {:.0} MiB (peak {:.0} MiB)",
        (recovered_in + started_in).as_secs_f64(),
        recovered_in.as_secs_f64(),
        started_in.as_secs_f64(),
        mib(rss_bytes()),
        mib(peak_rss_bytes()),
    );
    println!(
        "capacity: after restart, heap in use {:.0} MiB of RSS {:.0} MiB",
        mib(heap_in_use_bytes()),
        mib(rss_bytes())
    );
    drop(engine);
    journal.close();
}
