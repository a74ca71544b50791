//! Signing throughput: raw single-thread signatures (the baseline, measured in the same run) and
//! signed tokens through the batching signer pool with 1 and 2 workers, for RS256, ES256 and
//! EdDSA. The target: the pool reaches at least 90% of workers × the raw single-thread rate.
//!
//! `cargo bench --bench signer` runs criterion, then prints a table of rates and ratios.

use criterion::{Criterion, Throughput};
use leasehold_engine::claims::Claims;
use leasehold_engine::signer::TokenSigner;
use leasehold_engine::tokens::jws;
use leasehold_engine::tokens::{Algorithm, KeyRing, PoolConfig, SignerPool, SigningKey};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Requests kept in flight through the pool, as a busy server would.
const IN_FLIGHT: usize = 256;
/// How long each rate of the summary table is measured.
const SUMMARY_SECS: f64 = 2.0;

fn claims() -> Claims {
    let mut claims = Claims::new();
    let now: i64 = 1_800_000_000;
    claims.insert("iss".into(), "leasehold".into());
    claims.insert("iat".into(), now.into());
    claims.insert("nbf".into(), (now - 60).into());
    claims.insert("exp".into(), (now + 7_200).into());
    claims.insert("jti".into(), "6b1d4a4e-34a4-4b8e-9f2e-0d6c1e9b7f10".into());
    claims.insert("status".into(), "success".into());
    claims.insert("leaseId".into(), "6b1d4a4e-34a4-4b8e-9f2e-0d6c1e9b7f10".into());
    claims.insert("productName".into(), "ThreeDee".into());
    claims.insert("licenseId".into(), "1fc8e4e5-1dcd-4db9-a45f-c1c0c724815b".into());
    claims.insert("qty".into(), 1.into());
    claims.insert("qtyDimension".into(), "SEATS".into());
    claims.insert("features".into(), vec!["render", "simulate", "measure"].into());
    claims
}

fn key(alg: Algorithm) -> SigningKey {
    SigningKey::generate(alg).unwrap_or_else(|e| panic!("generating a {alg} key: {e}"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime")
}

/// Signs `n` tokens through `pool` from [`IN_FLIGHT`] tasks, each asking for its next token as
/// soon as it has its last, so that the queue never runs dry between waves.
async fn sign_through(pool: &Arc<SignerPool>, claims: &Claims, n: u64) {
    let left = Arc::new(AtomicU64::new(n));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (pool, claims, left) = (Arc::clone(pool), claims.clone(), Arc::clone(&left));
        tasks.spawn(async move {
            while left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1)).is_ok() {
                pool.sign(claims.clone()).await.expect("a signed token");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a signing task");
    }
}

fn raw(c: &mut Criterion) {
    let claims = claims();
    let mut group = c.benchmark_group("raw_single_thread");
    group.throughput(Throughput::Elements(1));
    for alg in Algorithm::ALL {
        let key = key(alg);
        group.bench_function(alg.as_str(), |b| b.iter(|| jws::sign_claims(&key, &claims).expect("signed")));
    }
    group.finish();
}

fn pool(c: &mut Criterion) {
    let claims = claims();
    let rt = runtime();
    let mut group = c.benchmark_group("pool");
    group.throughput(Throughput::Elements(1));
    for (alg, workers) in [(Algorithm::RS256, 1), (Algorithm::RS256, 2), (Algorithm::ES256, 2), (Algorithm::EdDSA, 2)] {
        let ring = Arc::new(KeyRing::new(key(alg)));
        let pool =
            Arc::new(SignerPool::start(ring, PoolConfig { workers, ..PoolConfig::default() }).expect("a signer pool"));
        group.bench_function(format!("{alg}/{workers}_workers"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                rt.block_on(sign_through(&pool, &claims, iters));
                start.elapsed()
            })
        });
    }
    group.finish();
}

/// Signatures a second from `threads` threads signing side by side, without the pool.
fn raw_rate(key: &SigningKey, claims: &Claims, threads: usize) -> f64 {
    let start = Instant::now();
    let signed: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut n = 0u64;
                    while start.elapsed().as_secs_f64() < SUMMARY_SECS {
                        for _ in 0..16 {
                            jws::sign_claims(key, claims).expect("signed");
                        }
                        n += 16;
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a signing thread")).sum()
    });
    signed as f64 / start.elapsed().as_secs_f64()
}

fn pool_rate(key: SigningKey, workers: usize, claims: &Claims) -> f64 {
    let pool = Arc::new(
        SignerPool::start(Arc::new(KeyRing::new(key)), PoolConfig { workers, ..PoolConfig::default() })
            .expect("a signer pool"),
    );
    let rt = runtime();
    rt.block_on(sign_through(&pool, claims, IN_FLIGHT as u64)); // warm up
                                                                // Enough tokens for about SUMMARY_SECS at the rate of a short probe.
    let probe = Instant::now();
    rt.block_on(sign_through(&pool, claims, 4 * IN_FLIGHT as u64));
    let n = ((4 * IN_FLIGHT) as f64 * SUMMARY_SECS / probe.elapsed().as_secs_f64()) as u64;
    let start = Instant::now();
    rt.block_on(sign_through(&pool, claims, n.max(IN_FLIGHT as u64)));
    n.max(IN_FLIGHT as u64) as f64 / start.elapsed().as_secs_f64()
}

/// Rates measured back to back in this run, with the pool's share of workers × raw.
fn summary() {
    let claims = claims();
    println!("\nsigner summary (tokens/s; the machine is shared, so compare ratios within a row)");
    println!(
        "{:<6} {:>9} {:>9} {:>9} {:>6} {:>9} {:>13} {:>13}",
        "alg", "raw 1 thr", "raw 2 thr", "pool 1 w", "1w/raw", "pool 2 w", "2w/(2 x raw)", "2w/raw 2 thr"
    );
    for alg in Algorithm::ALL {
        let key_text = key(alg).to_pem().expect("a key in memory").to_string();
        let again = || SigningKey::from_pem(key_text.as_bytes()).expect("the same key");
        let raw = raw_rate(&again(), &claims, 1);
        let raw_two = raw_rate(&again(), &claims, 2);
        let one = pool_rate(again(), 1, &claims);
        let two = pool_rate(again(), 2, &claims);
        println!(
            "{:<6} {:>9.0} {:>9.0} {:>9.0} {:>5.0}% {:>9.0} {:>12.0}% {:>12.0}%",
            alg.as_str(),
            raw,
            raw_two,
            one,
            100.0 * one / raw,
            two,
            100.0 * two / (2.0 * raw),
            100.0 * two / raw_two
        );
    }
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
        .configure_from_args();
    raw(&mut c);
    pool(&mut c);
    c.final_summary();
    if benching {
        summary();
    }
}
