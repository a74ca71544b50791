//! In-process engine throughput: consume+release pairs and checks, unsigned, with the load
//! running on the engine's own worker threads and many requests in flight per worker. Three
//! shapes: one hot license, 10,000 licenses spread over the workers, and the same 10,000
//! licensees organized (10 groups each, each license in an entitlement: the consume rule of
//! SPEC section 12 on every checkout). For 10,000 licenses two placements of the callers: on any
//! worker (a request may cross to another worker and back), and on each license's home worker
//! (no crossing: the engine's own ceiling). Before the
//! criterion runs, it prints the memory an idle license and a live lease cost (RSS growth over
//! 100,000 of each).
//!
//! Run with `cargo bench --bench engine`; `LEASEHOLD_BENCH_QUICK=1` makes it a smoke run.

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use leasehold::{
    ConsumeRequest, ConsumerId, ConsumerKind, Credit, Decision, Dimension, Enforcement, Engine, LicenseId,
    LicenseeKind, NewConsumer, NewEntitlement, NewGroup, NewLicense, NewLicensee, NewProduct, ReleaseRequest,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PRODUCT: &str = "BenchApp";
const IN_FLIGHT_PER_WORKER: usize = 64;

fn quick() -> bool {
    std::env::var_os("LEASEHOLD_BENCH_QUICK").is_some()
}

/// A runtime for the setup calls (the engine runs its own threads).
fn setup_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime for setup")
}

/// A consumer and the license it uses.
type Client = (ConsumerId, LicenseId);

/// Groups per licensee when the licensees are organized (SPEC section 12).
const GROUPS_PER_LICENSEE: usize = 10;

/// An engine with `licenses` licenses of `seats` seats each, one licensee per license, and
/// `consumers_per_license` consumers for each. An `organized` licensee has
/// [`GROUPS_PER_LICENSEE`] user groups, its license is in an entitlement of all of them, and its
/// consumers are in the last one: each checkout runs the whole consume rule.
fn engine_with(
    licenses: usize,
    seats: u64,
    consumers_per_license: usize,
    organized: bool,
) -> (Engine, Arc<Vec<Client>>) {
    let engine = Engine::builder().build().expect("engine");
    let consumers = setup_runtime().block_on(async {
        engine.create_product(NewProduct { name: PRODUCT.into(), features: vec![], tiers: vec![] }).await.unwrap();
        let credit = Credit { dimension: Dimension::Seats, qty: seats, enforcement: Enforcement::Enforced };
        let mut consumers = Vec::with_capacity(licenses * consumers_per_license);
        for i in 0..licenses {
            let licensee =
                NewLicensee { name: format!("customer-{i}"), kind: LicenseeKind::Organization, external_id: None };
            let licensee = engine.create_licensee(licensee).await.unwrap();
            let mut groups = Vec::new();
            if organized {
                for g in 0..GROUPS_PER_LICENSEE {
                    let group = NewGroup { name: format!("group-{g}"), kind: ConsumerKind::User };
                    groups.push(engine.create_group(licensee.id, group, None).await.unwrap().id);
                }
            }
            let mut new = NewLicense::new(licensee.id, PRODUCT, credit);
            if organized {
                let entitlement = NewEntitlement { name: "all".into(), groups: groups.clone() };
                new.entitlement = Some(engine.create_entitlement(licensee.id, entitlement, None).await.unwrap().id);
            }
            let license = engine.create_license(new).await.unwrap();
            for j in 0..consumers_per_license {
                let new = NewConsumer {
                    name: format!("user-{i}-{j}"),
                    kind: ConsumerKind::User,
                    licensees: vec![licensee.id],
                    email: None,
                    external_id: None,
                };
                let consumer = engine.create_consumer(new).await.unwrap().0.id;
                if let Some(last) = groups.last() {
                    engine.add_member(*last, consumer).await.unwrap();
                }
                consumers.push((consumer, license.id));
            }
        }
        consumers
    });
    (engine, Arc::new(consumers))
}

#[derive(Clone, Copy)]
enum Work {
    ConsumeRelease,
    Check,
}

/// Where the calling tasks run.
#[derive(Clone, Copy)]
enum Placement {
    /// Tasks spread over the workers regardless of where their licenses live.
    AnyWorker,
    /// Each task runs on the worker that hosts its clients' licenses.
    HomeWorker,
}

/// Splits the clients over `IN_FLIGHT_PER_WORKER` tasks per worker, so that no two tasks share
/// a consumer (a consumer's second consume would rotate the first one's lease); returns each
/// task's worker and clients.
fn assign_tasks(engine: &Engine, clients: &[Client], placement: Placement) -> Vec<(usize, Vec<Client>)> {
    let workers = engine.workers().len();
    let mut tasks: Vec<(usize, Vec<Client>)> =
        (0..workers * IN_FLIGHT_PER_WORKER).map(|t| (t % workers, Vec::new())).collect();
    let mut next_on_worker = vec![0usize; workers];
    for (i, client) in clients.iter().enumerate() {
        let task = match placement {
            Placement::AnyWorker => i % tasks.len(),
            Placement::HomeWorker => {
                let home = engine.home_worker(client.1);
                let slot = next_on_worker[home] % IN_FLIGHT_PER_WORKER;
                next_on_worker[home] += 1;
                home + slot * workers
            }
        };
        tasks[task].1.push(*client);
    }
    tasks.retain(|(_, clients)| !clients.is_empty());
    tasks
}

/// Runs about `total` operations over the tasks of `assign_tasks`, each task cycling through
/// its own clients.
fn run(engine: &Engine, clients: &[Client], work: Work, placement: Placement, total: u64) -> Duration {
    let tasks = assign_tasks(engine, clients, placement);
    let per_task = usize::try_from(total.div_ceil(tasks.len() as u64)).unwrap_or(usize::MAX);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let start = Instant::now();
    let task_count = tasks.len();
    for (worker, mine) in tasks {
        let (caller, done) = (engine.clone(), done_tx.clone());
        engine.workers()[worker].spawn(async move {
            let engine = caller;
            for (consumer, _) in mine.iter().copied().cycle().take(per_task) {
                let request = ConsumeRequest::new(consumer, PRODUCT);
                match work {
                    Work::ConsumeRelease => {
                        let consumed = engine.consume(request).await;
                        let Ok(Decision::Granted(grant)) = consumed else {
                            panic!("a bench consume was refused: {consumed:?}")
                        };
                        let released = engine.release(ReleaseRequest::new(consumer, grant.lease.id)).await;
                        assert!(matches!(released, Ok(Decision::Granted(_))), "a bench release failed: {released:?}");
                    }
                    Work::Check => {
                        let checked = engine.check(request).await;
                        assert!(matches!(checked, Ok(Decision::Granted(_))), "a bench check was refused: {checked:?}");
                    }
                }
            }
            let _ = done.send(());
        });
    }
    for _ in 0..task_count {
        done_rx.recv().expect("a bench task died");
    }
    start.elapsed()
}

fn throughput(c: &mut Criterion) {
    // Enough consumers (and seats) on the hot license that every task has its own.
    let hot_consumers = 1024;
    let hot = engine_with(1, hot_consumers as u64, hot_consumers, false);
    let spread = engine_with(10_000, 1, 1, false);
    let organized = engine_with(10_000, 1, 1, true);
    let shapes = [
        ("1 license", &hot, Placement::AnyWorker),
        ("10000 licenses, any worker", &spread, Placement::AnyWorker),
        ("10000 licenses, home worker", &spread, Placement::HomeWorker),
        ("10000 licensees x 10 groups, home worker", &organized, Placement::HomeWorker),
    ];
    for (work, name) in [(Work::ConsumeRelease, "consume+release"), (Work::Check, "check")] {
        let mut group = c.benchmark_group(name);
        group.sample_size(10).measurement_time(Duration::from_secs(if quick() { 1 } else { 5 }));
        group.throughput(Throughput::Elements(1));
        for (shape, (engine, clients), placement) in &shapes {
            group.bench_with_input(BenchmarkId::from_parameter(shape), shape, |b, _| {
                b.iter_custom(|iters| run(engine, clients, work, *placement, iters))
            });
        }
        group.finish();
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// Prints the RSS growth per idle license (actor started, no lease) and per live lease.
fn memory_report() {
    let count = if quick() { 10_000 } else { 100_000 };
    let before = rss_bytes();
    let (engine, clients) = engine_with(count, 1, 1, false);
    // Start every license's actor with a check, so an idle license is counted with its actor.
    run(&engine, &clients, Work::Check, Placement::AnyWorker, count as u64);
    let idle = rss_bytes();
    let leases = setup_runtime().block_on(async {
        let mut leases = Vec::with_capacity(count);
        for (consumer, _) in clients.iter() {
            let grant = engine.consume(ConsumeRequest::new(*consumer, PRODUCT)).await.unwrap().granted().unwrap();
            leases.push(grant.lease.id);
        }
        leases
    });
    let live = rss_bytes();
    let per = |bytes: u64| bytes as f64 / count as f64;
    println!(
        "memory: {:.0} bytes per idle license (actor, directory entry, licensee, consumer), {:.0} bytes per live lease ({} of each)",
        per(idle.saturating_sub(before)),
        per(live.saturating_sub(idle)),
        leases.len(),
    );
}

criterion_group!(benches, throughput);

fn main() {
    // Only a real bench run measures memory; a test-mode run (`cargo test --benches`) only
    // checks that every bench still runs.
    if std::env::args().any(|a| a == "--bench") {
        memory_report();
    }
    benches();
    criterion::Criterion::default().configure_from_args().final_summary();
}
