//! Pipelined round trips per second over the binary TCP protocol on loopback, against an
//! in-process server (engine, signer pool and `tcp::serve`), through the Rust client with
//! `IN_FLIGHT` calls outstanding on one connection:
//!
//! - `check, no token`: a check answered without a token (protocol + engine, no signing);
//! - `consume+release, RS256`: a consume with a signed Enterprise token, then its release
//!   (two round trips per element; bound by RSA signing);
//! - `raw echo`: the baseline, 64-byte frames echoed by a bare tokio server, the same depth of
//!   pipelining on one connection. The report prints each protocol bench as a ratio to it.
//!
//! Client, server and engine share the machine's cores, so only the ratios travel between
//! machines. Run with `cargo bench --bench tcp`; `LEASEHOLD_BENCH_QUICK=1` makes it a smoke run.

use criterion::{criterion_group, Criterion, Throughput};
use leasehold::client::{Auth, Client, Consume, Release, TokenChoice};
use leasehold::{
    ConsumerKind, Credit, Dimension, Enforcement, Engine, LicenseeKind, NewConsumer, NewLicense, NewLicensee,
    NewProduct,
};
use leasehold_engine::signer::TokenSigner;
use leasehold_engine::tokens::{Algorithm, KeyRing, PoolConfig, SignerPool, SigningKey};
use leasehold_transports::tcp::{self, TcpConfig, TcpState};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

const PRODUCT: &str = "BenchApp";
/// Calls outstanding on the one connection.
const IN_FLIGHT: usize = 64;
/// Bytes of each echoed frame in the baseline (about a check's request frame).
const ECHO_FRAME_BYTES: usize = 64;

fn quick() -> bool {
    std::env::var_os("LEASEHOLD_BENCH_QUICK").is_some()
}

/// The client side's runtime: one thread, as a client process would have to spare.
fn client_runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime")
}

/// An engine signing RS256, a license of unlimited sessions, a consumer, and the TCP server on a
/// free loopback port; the consumer's API key and the address.
fn start_server(rt: &Runtime) -> (String, SocketAddr) {
    let keys = Arc::new(KeyRing::new(SigningKey::generate(Algorithm::RS256).expect("an RSA key")));
    let signer: Arc<dyn TokenSigner> =
        Arc::new(SignerPool::start(Arc::clone(&keys), PoolConfig::default()).expect("the signer pool"));
    let engine = Engine::builder().build().expect("the engine");
    let api_key = rt.block_on(async {
        engine.create_product(NewProduct { name: PRODUCT.into(), features: vec![], tiers: vec![] }).await.unwrap();
        let licensee = NewLicensee { name: "Bench".into(), kind: LicenseeKind::Organization, external_id: None };
        let licensee = engine.create_licensee(licensee).await.unwrap();
        let credit = Credit { dimension: Dimension::Seats, qty: 1_000_000, enforcement: Enforcement::Enforced };
        let mut license = NewLicense::new(licensee.id, PRODUCT, credit);
        // Every lease is a session of its own, so one consumer may hold many at once.
        license.model.session_anchors = vec![];
        engine.create_license(license).await.unwrap();
        let consumer = NewConsumer {
            name: "bench".into(),
            kind: ConsumerKind::User,
            licensees: vec![licensee.id],
            email: None,
            external_id: None,
        };
        engine.create_consumer(consumer).await.unwrap().1
    });
    let state = Arc::new(TcpState {
        engine,
        signer,
        issuer: "bench".into(),
        keys: Some(keys),
        trusted_proxies: Default::default(),
    });
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("a port");
    let addr = listener.local_addr().expect("an address");
    rt.spawn(tcp::serve(listener, state, TcpConfig::default(), None, std::future::pending()));
    (api_key, addr)
}

#[derive(Clone, Copy)]
enum Work {
    Check,
    ConsumeRelease,
}

/// `total` calls of `work` from `IN_FLIGHT` tasks sharing one client; the time they took.
fn run(rt: &Runtime, client: &Arc<Client>, work: Work, total: u64) -> Duration {
    let per_task = total.div_ceil(IN_FLIGHT as u64);
    rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..IN_FLIGHT)
            .map(|_| {
                let client = Arc::clone(client);
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        match work {
                            Work::Check => {
                                let answer = client.check(Consume::new(PRODUCT).token(TokenChoice::Omit)).await;
                                assert!(matches!(answer, Ok(Ok(_))), "a bench check failed: {answer:?}");
                            }
                            Work::ConsumeRelease => {
                                let answer = client.consume(Consume::new(PRODUCT)).await;
                                let Ok(Ok(grant)) = answer else { panic!("a bench consume failed: {answer:?}") };
                                assert!(grant.token.is_some());
                                let released = client.release(Release::new(grant.lease_id)).await;
                                assert!(matches!(released, Ok(Ok(_))), "a bench release failed: {released:?}");
                            }
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("a bench task panicked");
        }
        start.elapsed()
    })
}

/// A bare echo server: what loopback TCP costs with no protocol, no engine.
fn start_echo(rt: &Runtime) -> SocketAddr {
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("a port");
    let addr = listener.local_addr().expect("an address");
    rt.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let (mut read, mut write) = stream.into_split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

/// `total` 64-byte frames echoed back, `IN_FLIGHT` outstanding at a time on one connection.
fn run_echo(rt: &Runtime, addr: SocketAddr, total: u64) -> Duration {
    rt.block_on(async {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connects");
        stream.set_nodelay(true).expect("nodelay");
        let (mut read, mut write) = stream.into_split();
        let window = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        let start = Instant::now();
        let writer = {
            let window = Arc::clone(&window);
            tokio::spawn(async move {
                let frame = [7u8; ECHO_FRAME_BYTES];
                for _ in 0..total {
                    window.acquire().await.expect("open").forget();
                    write.write_all(&frame).await.expect("writes");
                }
                write
            })
        };
        let mut frame = [0u8; ECHO_FRAME_BYTES];
        for _ in 0..total {
            read.read_exact(&mut frame).await.expect("reads");
            window.add_permits(1);
        }
        let elapsed = start.elapsed();
        drop(writer.await);
        elapsed
    })
}

/// Round trips per second each bench reached, for the ratio report.
static RATES: Mutex<Vec<(&'static str, f64)>> = Mutex::new(Vec::new());

fn note_rate(name: &'static str, iters: u64, elapsed: Duration, round_trips_per_iter: u64) {
    let rate = (iters * round_trips_per_iter) as f64 / elapsed.as_secs_f64().max(1e-9);
    RATES.lock().unwrap_or_else(|p| p.into_inner()).push((name, rate));
}

fn throughput(c: &mut Criterion) {
    let server_rt = client_runtime();
    let (api_key, addr) = start_server(&server_rt);
    let echo = start_echo(&server_rt);
    let rt = client_runtime();
    let client = Arc::new(rt.block_on(Client::connect(addr, Auth::ApiKey(api_key))).expect("the client connects"));

    let mut group = c.benchmark_group("tcp round trips");
    group.sample_size(10).measurement_time(Duration::from_secs(if quick() { 1 } else { 5 }));
    group.throughput(Throughput::Elements(1));
    group.bench_function("raw echo", |b| {
        b.iter_custom(|iters| {
            let elapsed = run_echo(&rt, echo, iters);
            note_rate("raw echo", iters, elapsed, 1);
            elapsed
        })
    });
    group.bench_function("check, no token", |b| {
        b.iter_custom(|iters| {
            let elapsed = run(&rt, &client, Work::Check, iters);
            note_rate("check, no token", iters, elapsed, 1);
            elapsed
        })
    });
    group.bench_function("consume+release, RS256", |b| {
        b.iter_custom(|iters| {
            let elapsed = run(&rt, &client, Work::ConsumeRelease, iters);
            note_rate("consume+release, RS256", iters, elapsed, 2);
            elapsed
        })
    });
    group.finish();
}

/// The median rate of each bench's samples, and the protocol's as a share of the raw echo's.
fn ratio_report() {
    let rates = RATES.lock().unwrap_or_else(|p| p.into_inner());
    let median = |name: &str| {
        let mut mine: Vec<f64> = rates.iter().filter(|(n, _)| *n == name).map(|(_, r)| *r).collect();
        mine.sort_by(f64::total_cmp);
        mine.get(mine.len() / 2).copied().unwrap_or(0.0)
    };
    let echo = median("raw echo");
    for name in ["raw echo", "check, no token", "consume+release, RS256"] {
        let rate = median(name);
        let share = if echo > 0.0 { rate / echo * 100.0 } else { 0.0 };
        println!(
            "{name}: {rate:.0} round trips/s ({share:.1}% of the raw echo), {IN_FLIGHT} in flight on one connection"
        );
    }
}

criterion_group!(benches, throughput);

fn main() {
    benches();
    if std::env::args().any(|a| a == "--bench") {
        ratio_report();
    }
    criterion::Criterion::default().configure_from_args().final_summary();
}
