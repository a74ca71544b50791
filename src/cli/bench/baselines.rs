//! The baselines every figure is divided by, measured in the same run on the same machine:
//! a minimal hyper hello-world server (what HTTP costs here), raw RS256 signatures on every
//! core (what signing costs here), and a Redis server running a Lua seat lease (what a team
//! would build instead of Leasehold), driven at the same concurrency.

use super::driver::{Failure, Outcome, Worker};
use super::http::Workload;
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use leasehold_engine::tokens::{jws, Algorithm, SigningKey};
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A hello-world HTTP server on its own runtime with one thread per core (as Leasehold's
/// server has), answering `GET /` with `hello`.
pub struct HelloServer {
    /// Where it listens.
    pub addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl HelloServer {
    /// Starts it on a free loopback port.
    pub fn start() -> std::io::Result<HelloServer> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("hello-world")
            .enable_all()
            .build()?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        runtime.spawn(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service = service_fn(|_: Request<hyper::body::Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(HelloServer { addr, runtime: Some(runtime) })
    }
}

impl Drop for HelloServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Signs a token-sized payload with RS256 on `threads` threads for `duration`; signatures/s.
pub fn rs256_ceiling(threads: usize, duration: Duration) -> Result<f64, String> {
    let key = Arc::new(SigningKey::generate(Algorithm::RS256).map_err(|e| e.to_string())?);
    // About the size of an Enterprise grant's claims.
    let payload = vec![b'x'; 400];
    let stop = Arc::new(AtomicBool::new(false));
    let signed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (key, payload, stop, signed) =
                (Arc::clone(&key), payload.clone(), Arc::clone(&stop), Arc::clone(&signed));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if jws::sign_payload(&key, &payload).is_ok() {
                        signed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.join().map_err(|_| "a signing thread panicked".to_owned())?;
    }
    Ok(signed.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// The seat lease as a team would write it in Redis: a sorted set per license of lease id →
/// expiry (ms). `KEYS[1]` is the license; `ARGV`: operation, now (ms), lease time (ms), seats,
/// lease id, new lease id.
///
/// - `checkout`: drop expired leases; grant when fewer than `seats` remain.
/// - `check`: the same decision, nothing written.
/// - `renew`: the lease must be live; it is replaced by the new id with a new expiry.
/// - `release`: remove the lease.
const SEAT_LEASE_LUA: &str = r#"
local op, now, lease_ms, seats = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if op == 'checkout' then
  if redis.call('ZCARD', KEYS[1]) >= seats then return 0 end
  redis.call('ZADD', KEYS[1], now + lease_ms, ARGV[5])
  return 1
elseif op == 'check' then
  if redis.call('ZCARD', KEYS[1]) >= seats then return 0 end
  return 1
elseif op == 'renew' then
  if not redis.call('ZSCORE', KEYS[1], ARGV[5]) then return 0 end
  redis.call('ZREM', KEYS[1], ARGV[5])
  redis.call('ZADD', KEYS[1], now + lease_ms, ARGV[6])
  return 1
else
  return redis.call('ZREM', KEYS[1], ARGV[5])
end
"#;

/// Lease time of the Redis seat lease (Leasehold's default online lease time).
const REDIS_LEASE_MS: u64 = 7_200_000;

/// A `redis-server` child process on a free loopback port, stopped on drop.
pub struct RedisServer {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
}

impl RedisServer {
    /// Starts Debian's `redis-server` with persistence matching `fsync`: `always` (like
    /// Leasehold's `sync`), `everysec` (like `batched`) or `none` (no append-only file).
    pub fn start(fsync: &str, dir: &std::path::Path) -> Result<RedisServer, String> {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let mut command = Command::new("redis-server");
        command.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--dir"]).arg(dir);
        match fsync {
            "none" => command.args(["--appendonly", "no"]),
            mode => command.args(["--appendonly", "yes", "--appendfsync", mode]),
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting redis-server (apt-get install redis-server): {e}"))?;
        let server = RedisServer { addr: SocketAddr::from(([127, 0, 0, 1], port)), child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(server.addr).is_err() {
            if Instant::now() > deadline {
                return Err("redis-server did not start listening within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `connections` Redis connections with `pipeline` workers sharing each (redis-rs pipelines
/// the requests of a multiplexed connection).
pub async fn redis_workers(
    url: &str,
    workload: Workload,
    licenses: usize,
    connections: usize,
    pipeline: usize,
) -> Result<Vec<RedisWorker>, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let total = connections * pipeline.max(1);
    let mut workers = Vec::with_capacity(total);
    for _ in 0..connections {
        let connection = client.get_multiplexed_async_connection().await.map_err(|e| e.to_string())?;
        for _ in 0..pipeline.max(1) {
            let index = workers.len();
            workers.push(RedisWorker {
                connection: connection.clone(),
                script: redis::Script::new(SEAT_LEASE_LUA),
                workload,
                licenses: licenses.max(1),
                next_license: index,
                stride: total,
                worker: index,
                serial: 0,
                lease: None,
                renewed: false,
            });
        }
    }
    Ok(workers)
}

/// One worker running the Lua seat lease over `licenses` licenses.
pub struct RedisWorker {
    connection: redis::aio::MultiplexedConnection,
    script: redis::Script,
    workload: Workload,
    licenses: usize,
    next_license: usize,
    stride: usize,
    worker: usize,
    serial: u64,
    lease: Option<(usize, String)>,
    renewed: bool,
}

impl RedisWorker {
    fn take_license(&mut self) -> usize {
        let chosen = self.next_license % self.licenses;
        self.next_license = (self.next_license + self.stride) % self.licenses;
        chosen
    }

    fn new_lease_id(&mut self) -> String {
        self.serial += 1;
        format!("w{}-{}", self.worker, self.serial)
    }

    async fn call(&mut self, op: &str, license: usize, lease: &str, next: &str) -> Result<bool, Failure> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let granted: i64 = self
            .script
            .key(format!("lic:{license}"))
            .arg(op)
            .arg(now_ms)
            .arg(REDIS_LEASE_MS)
            .arg(super::seed::SEATS)
            .arg(lease)
            .arg(next)
            .invoke_async(&mut self.connection)
            .await
            .map_err(|_| Failure::new("redis"))?;
        Ok(granted == 1)
    }

    async fn checkout(&mut self, license: usize) -> Result<String, Failure> {
        let lease = self.new_lease_id();
        if self.call("checkout", license, &lease, "").await? {
            Ok(lease)
        } else {
            Err(Failure::new("denied"))
        }
    }

    async fn renew(&mut self, license: usize, lease: &str) -> Result<String, Failure> {
        let next = self.new_lease_id();
        if self.call("renew", license, lease, &next).await? {
            Ok(next)
        } else {
            Err(Failure::new("lease not found"))
        }
    }
}

impl Worker for RedisWorker {
    async fn step(&mut self) -> Outcome {
        match self.workload {
            Workload::Check => {
                let license = self.take_license();
                if self.call("check", license, "", "").await? {
                    Ok(())
                } else {
                    Err(Failure::new("denied"))
                }
            }
            // Redis signs nothing: its consume is the unsigned checkout's counterpart too.
            Workload::Consume | Workload::ConsumeUnsigned => {
                let license = self.take_license();
                self.checkout(license).await.map(drop)
            }
            Workload::Renew => match self.lease.take() {
                Some((license, lease)) => {
                    self.renew(license, &lease).await.map(|next| self.lease = Some((license, next)))
                }
                None => {
                    let license = self.take_license();
                    self.checkout(license).await.map(|lease| self.lease = Some((license, lease)))
                }
            },
            Workload::Cycle => match self.lease.take() {
                None => {
                    let license = self.take_license();
                    self.renewed = false;
                    self.checkout(license).await.map(|lease| self.lease = Some((license, lease)))
                }
                Some((license, lease)) if !self.renewed => {
                    self.renewed = true;
                    self.renew(license, &lease).await.map(|next| self.lease = Some((license, next)))
                }
                Some((license, lease)) => {
                    if self.call("release", license, &lease, "").await? {
                        Ok(())
                    } else {
                        Err(Failure::new("release refused"))
                    }
                }
            },
        }
    }
}

/// Late wake-ups of a thread that sleeps 1 ms at a time: the machine's own stalls (a VM's
/// pauses, a busy neighbour), which every latency measured meanwhile includes.
pub struct StallProbe {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Stalls>,
}

/// What a [`StallProbe`] saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stalls {
    /// Sleeps of 1 ms.
    pub sleeps: u64,
    /// Wake-ups more than [`StallProbe::LATE`] late.
    pub late: u64,
    /// The latest wake-up, beyond the 1 ms asked for.
    pub longest: Duration,
}

impl StallProbe {
    /// How late a wake-up must be to count as a stall.
    pub const LATE: Duration = Duration::from_millis(4);

    /// Starts probing on a thread of its own.
    pub fn start() -> std::io::Result<StallProbe> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name("stall-probe".into()).spawn(move || {
            let mut stalls = Stalls::default();
            let nap = Duration::from_millis(1);
            while !stopped.load(Ordering::Relaxed) {
                let asleep = Instant::now();
                std::thread::sleep(nap);
                let late = asleep.elapsed().saturating_sub(nap);
                stalls.sleeps += 1;
                stalls.late += u64::from(late > Self::LATE);
                stalls.longest = stalls.longest.max(late);
            }
            stalls
        })?;
        Ok(StallProbe { stop, thread })
    }

    /// Stops probing; what it saw.
    pub fn finish(self) -> Stalls {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}
