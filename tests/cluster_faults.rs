//! Three `leasehold serve` nodes on a 3-server NATS JetStream cluster, under clients and faults
//! (`design/CLUSTER.md`, "Tests"): kill -9 of a node (restarted 3 s later), SIGSTOP of a node for
//! 8 s, kill -9 of a NATS server (restarted 3 s later), SIGSTOP of a NATS server for 8 s, one
//! every 5 to 8 s. Clients check out and release seats of 20 three-seat licenses against random
//! nodes (a node forwards to the owner), logging every operation. Then three checkers:
//!
//! 1. no over-allocation: per license, the leases counted from the acknowledgement of their grant
//!    to the sending of their release (or their expiry) never exceed the seats;
//! 2. no acknowledged lease lost: after healing, every granted lease whose release was not sent
//!    and that has not expired is listed, and no release of a live lease answered "not found";
//! 3. a journal audit: every stream replays under the fence's rules (epochs grow, each batch
//!    is its owner's next) to states that hold every invariant.
//!
//! `LEASEHOLD_CLUSTER_FAULTS=N` runs N faults instead of 8 (the soak mode: 100).

mod http_common;
#[path = "../persistence/tests/common/nats.rs"]
mod nats;

use http_common::{try_request, Server, ADMIN};
use leasehold_persistence::fence::replay;
use leasehold_persistence::jetstream::{PartitionStream, StreamName};
use nats::Cluster;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const NODES: usize = 3;
const PARTITIONS: u32 = 8;
const LICENSES: usize = 20;
const SEATS: usize = 3;
const CLIENTS: usize = 8;

/// How long a lease lives: a seat whose grant or release answer a client never saw comes back
/// when its lease expires.
const LEASE_S: u64 = 20;

/// How long a client waits for an answer before it counts the request as failed and moves on
/// (to another node, as a real client would from a paused one).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

fn faults_to_run() -> usize {
    std::env::var("LEASEHOLD_CLUSTER_FAULTS").ok().and_then(|n| n.parse().ok()).unwrap_or(8)
}

/// A small deterministic generator: the test's randomness is seeded.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// The nodes, restarted on new ports after a kill.
struct Nodes {
    dirs: Vec<tempfile::TempDir>,
    configs: Vec<PathBuf>,
    servers: Vec<Option<Server>>,
    /// Where clients reach each node now (`None` while it is down).
    addrs: Arc<RwLock<Vec<Option<SocketAddr>>>>,
}

impl Nodes {
    fn start(cluster: &Cluster) -> Nodes {
        let mut nodes = Nodes {
            dirs: Vec::new(),
            configs: Vec::new(),
            servers: Vec::new(),
            addrs: Arc::new(RwLock::new(Vec::new())),
        };
        for i in 0..NODES {
            let dir = tempfile::tempdir().expect("a scratch directory");
            nodes.configs.push(cluster.node_config(dir.path(), &format!("node{i}"), PARTITIONS));
            nodes.dirs.push(dir);
            nodes.servers.push(None);
            nodes.addrs.write().expect("addresses").push(None);
            nodes.restart(i);
        }
        nodes
    }

    fn restart(&mut self, i: usize) {
        let config = self.configs[i].to_str().expect("a UTF-8 path").to_owned();
        let server = Server::start_in(self.dirs[i].path(), &["--config", &config], true);
        self.addrs.write().expect("addresses")[i] = Some(server.addr);
        self.servers[i] = Some(server);
    }

    fn kill(&mut self, i: usize) {
        self.addrs.write().expect("addresses")[i] = None;
        if let Some(server) = self.servers[i].take() {
            server.kill();
        }
    }

    fn pid(&self, i: usize) -> Option<u32> {
        self.servers[i].as_ref().map(Server::pid)
    }
}

fn signal(pid: u32, signal: &str) {
    let sent = Command::new("kill").args([signal, &pid.to_string()]).status().expect("kill runs");
    assert!(sent.success(), "kill {signal} {pid}");
}

/// A random node's address, if any is up.
fn any_node(addrs: &RwLock<Vec<Option<SocketAddr>>>, rng: &mut Rng) -> Option<SocketAddr> {
    let up: Vec<SocketAddr> = addrs.read().expect("addresses").iter().flatten().copied().collect();
    (!up.is_empty()).then(|| up[rng.below(up.len())])
}

/// An admin call retried on other nodes until it is answered with something but 503.
fn admin(
    addrs: &RwLock<Vec<Option<SocketAddr>>>,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let auth = format!("Bearer {ADMIN}");
    let mut rng = Rng(7);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(addr) = any_node(addrs, &mut rng) {
            let text = body.to_string();
            let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
            let body = (method != "GET").then_some(text.as_bytes());
            let reply = http_common::request(addr, method, path, &headers, body);
            if reply.status != 503 {
                assert!(reply.status < 300, "{method} {path}: {} {}", reply.status, reply.text());
                return reply.json();
            }
        }
        assert!(Instant::now() < deadline, "{method} {path}: no node answered in 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What one client saw of one operation.
#[derive(Debug, Clone)]
enum Seen {
    /// A lease granted, acknowledged at `acked`, surely expired by `expires` (its `exp`, less a
    /// second for the claim's rounding).
    Granted { license: usize, lease: String, acked: Instant, expires: Instant },
    /// A checkout of `license` answered (granted or refused) at `at`: its partition was served.
    Answered { license: usize, at: Instant },
    /// The release of `lease` sent at `sent`; `released` is `Some(true)` for 200, `Some(false)`
    /// for 404, `None` when the answer was something else or never came.
    Release { lease: String, sent: Instant, released: Option<bool> },
}

struct Setup {
    keys: Vec<String>,
    licenses: Vec<String>,
}

fn set_up(addrs: &RwLock<Vec<Option<SocketAddr>>>) -> Setup {
    let licensee = admin(addrs, "POST", "/admin/licensees", json!({"name": "Acme", "kind": "organization"}));
    let licensee = licensee["id"].as_str().expect("an id").to_owned();
    let consumer =
        admin(addrs, "POST", "/admin/consumers", json!({"name": "u", "kind": "user", "licensees": [licensee]}));
    let key = consumer["api_key"].as_str().expect("a key").to_owned();
    let mut licenses = Vec::new();
    for i in 0..LICENSES {
        admin(addrs, "POST", "/admin/products", json!({"name": format!("P{i}")}));
        let license = admin(
            addrs,
            "POST",
            "/admin/licenses",
            json!({
                "licensee": licensee,
                "product": format!("P{i}"),
                "credit": {"dimension": "SEATS", "qty": SEATS, "enforcement": "ENFORCED"},
                "model": {"session_anchors": ["hw"], "lease_time_online_s": LEASE_S},
            }),
        );
        licenses.push(license["id"].as_str().expect("an id").to_owned());
    }
    Setup { keys: vec![key], licenses }
}

/// Checks out and releases seats against random nodes until `stop`, logging what it saw.
fn client(
    n: usize,
    addrs: Arc<RwLock<Vec<Option<SocketAddr>>>>,
    key: String,
    stop: Arc<AtomicBool>,
    hw: Arc<AtomicU64>,
) -> Vec<Seen> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (n as u64 + 1));
    let mut seen = Vec::new();
    let mut held: Vec<(usize, String)> = Vec::new();
    let auth = format!("Bearer {key}");
    let admin_auth = format!("Bearer {ADMIN}");
    while !stop.load(Ordering::Relaxed) {
        let Some(addr) = any_node(&addrs, &mut rng) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        if held.is_empty() || rng.below(10) < 6 {
            let license = rng.below(LICENSES);
            let hw = hw.fetch_add(1, Ordering::Relaxed);
            let path = format!("/authz/.json?P{license}&hw=h{hw}");
            let reply = try_request(addr, "GET", &path, &[("Authorization", auth.as_str())], CLIENT_TIMEOUT);
            if let Some(reply) = reply.filter(|r| r.status == 200) {
                seen.push(Seen::Answered { license, at: Instant::now() });
                let answer = reply.json();
                if let (Some(lease), Some(exp)) = (answer["jti"].as_str(), answer["exp"].as_u64()) {
                    let acked = Instant::now();
                    let now_s = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
                    let expires = acked + Duration::from_secs(exp.saturating_sub(now_s).saturating_sub(1));
                    seen.push(Seen::Granted { license, lease: lease.to_owned(), acked, expires });
                    held.push((license, lease.to_owned()));
                }
            }
        } else {
            let (_, lease) = held.swap_remove(rng.below(held.len()));
            let sent = Instant::now();
            let path = format!("/admin/leases/{lease}");
            let reply = try_request(addr, "DELETE", &path, &[("Authorization", admin_auth.as_str())], CLIENT_TIMEOUT);
            let released = match reply.map(|r| r.status) {
                Some(200) => Some(true),
                Some(404) => Some(false),
                _ => None,
            };
            seen.push(Seen::Release { lease, sent, released });
        }
    }
    seen
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillNode,
    StopNode,
    KillNats,
    StopNats,
}

#[test]
fn three_nodes_under_faults_over_allocate_nothing_and_lose_no_acknowledged_lease() {
    let mut cluster = Cluster::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(cluster.client());
    let mut nodes = Nodes::start(&cluster);
    let setup = set_up(&nodes.addrs);

    let stop = Arc::new(AtomicBool::new(false));
    let hw = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let (addrs, key, stop, hw) =
                (Arc::clone(&nodes.addrs), setup.keys[0].clone(), Arc::clone(&stop), Arc::clone(&hw));
            std::thread::spawn(move || client(n, addrs, key, stop, hw))
        })
        .collect();

    let kinds = [Fault::KillNode, Fault::StopNode, Fault::KillNats, Fault::StopNats];
    let nats_names = cluster.names();
    let mut rng = Rng(42);
    let mut faults: Vec<(Fault, Instant)> = Vec::new();
    std::thread::sleep(Duration::from_secs(3));
    for f in 0..faults_to_run() {
        let kind = kinds[f % kinds.len()];
        let at = Instant::now();
        match kind {
            Fault::KillNode => {
                let i = rng.below(NODES);
                nodes.kill(i);
                std::thread::sleep(Duration::from_secs(3));
                nodes.restart(i);
            }
            Fault::StopNode => {
                let i = rng.below(NODES);
                let pid = nodes.pid(i).expect("a running node");
                signal(pid, "-STOP");
                std::thread::sleep(Duration::from_secs(8));
                signal(pid, "-CONT");
            }
            Fault::KillNats => {
                let name = &nats_names[rng.below(nats_names.len())];
                cluster.server_named(name).kill();
                std::thread::sleep(Duration::from_secs(3));
                cluster.server_named(name).start();
            }
            Fault::StopNats => {
                let name = &nats_names[rng.below(nats_names.len())];
                let pid = cluster.server_named(name).pid().expect("a running NATS server");
                signal(pid, "-STOP");
                std::thread::sleep(Duration::from_secs(8));
                signal(pid, "-CONT");
            }
        }
        faults.push((kind, at));
        std::thread::sleep(Duration::from_millis(2_000 + 1_000 * rng.below(4) as u64));
    }
    // Healed: every node and NATS server runs. Let the clients see it, then stop them.
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Seen> = clients.into_iter().flat_map(|c| c.join().expect("a client")).collect();

    let granted = seen.iter().filter(|s| matches!(s, Seen::Granted { .. })).count();
    assert!(granted > 50, "only {granted} grants: the cluster hardly served");
    check_no_over_allocation(&seen);
    check_no_lost_lease(&seen, &setup, &nodes.addrs);
    runtime.block_on(audit_streams(&cluster));
    report_recovery(&seen, &faults);
}

/// Checker 1.
fn check_no_over_allocation(seen: &[Seen]) {
    let mut sent_release: HashMap<&str, Instant> = HashMap::new();
    for s in seen {
        if let Seen::Release { lease, sent, .. } = s {
            sent_release.insert(lease, *sent);
        }
    }
    let mut per_license: BTreeMap<usize, Vec<(Instant, i32)>> = BTreeMap::new();
    for s in seen {
        if let Seen::Granted { license, lease, acked, expires } = s {
            let end = sent_release.get(lease.as_str()).map_or(*expires, |sent| (*sent).min(*expires));
            // Ended before its grant was acknowledged: never counted.
            if end > *acked {
                per_license.entry(*license).or_default().extend([(*acked, 1), (end, -1)]);
            }
        }
    }
    for (license, mut events) in per_license {
        // Ends before starts at the same instant: the count is the leases surely live.
        events.sort_by_key(|(at, delta)| (*at, *delta));
        let mut live = 0;
        for (at, delta) in events {
            live += delta;
            assert!(live <= SEATS as i32, "license P{license}: {live} leases live at once at {at:?}, seats {SEATS}");
        }
    }
}

/// Checker 2.
fn check_no_lost_lease(seen: &[Seen], setup: &Setup, addrs: &RwLock<Vec<Option<SocketAddr>>>) {
    let expiry: HashMap<&str, Instant> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Granted { lease, expires, .. } => Some((lease.as_str(), *expires)),
            Seen::Answered { .. } | Seen::Release { .. } => None,
        })
        .collect();
    let mut release_sent: HashSet<&str> = HashSet::new();
    for s in seen {
        if let Seen::Release { lease, sent, released } = s {
            release_sent.insert(lease);
            // Sent a second before the lease surely expired: it was live when it arrived.
            let live = expiry.get(lease.as_str()).is_some_and(|expires| *sent + Duration::from_secs(1) < *expires);
            assert!(!(live && *released == Some(false)), "the release of live lease {lease} answered not found: lost");
        }
    }
    let checked_at = Instant::now();
    for (license, id) in setup.licenses.iter().enumerate() {
        let listed = admin(addrs, "GET", &format!("/admin/licenses/{id}/leases"), json!(null));
        let listed: HashSet<&str> =
            listed["items"].as_array().expect("items").iter().map(|l| l["id"].as_str().expect("an id")).collect();
        for s in seen {
            if let Seen::Granted { license: l, lease, expires, .. } = s {
                if *l == license
                    && !release_sent.contains(lease.as_str())
                    && *expires > checked_at + Duration::from_secs(2)
                {
                    assert!(listed.contains(lease.as_str()), "acknowledged lease {lease} of P{license} was lost");
                }
            }
        }
    }
}

/// Checker 3: every stream replays under the fence's rules to states that hold every invariant.
async fn audit_streams(cluster: &Cluster) {
    let client = cluster.client().await;
    let mut state = leasehold_engine::replay::Recovered::default();
    let streams = [StreamName::Directory].into_iter().chain((0..PARTITIONS).map(StreamName::Partition));
    let mut records = 0;
    for name in streams {
        let mut stream = PartitionStream::open(client.clone(), name, 3, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let tail = stream.tail().await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let read = stream.records(1, tail.last_seq).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        records += read.len();
        replay(read, &mut state).unwrap_or_else(|e| panic!("{name} breaks the fence's rules: {e}"));
    }
    assert!(records > 0, "the streams hold nothing");
    assert_eq!(state.check(), 0, "a replayed license breaks an invariant: {:?}", state.halted);
}

/// Prints, per fault, how long the licenses took to answer again: the time from the fault to
/// each license's first answered checkout (granted or refused) after it, p50 and max over the
/// licenses. It includes the fault itself: a paused node answers nothing until it resumes.
fn report_recovery(seen: &[Seen], faults: &[(Fault, Instant)]) {
    for (kind, at) in faults {
        let mut first: BTreeMap<usize, Duration> = BTreeMap::new();
        for s in seen {
            if let Seen::Answered { license, at: answered } = s {
                if answered > at {
                    let after = answered.duration_since(*at);
                    first.entry(*license).and_modify(|d| *d = (*d).min(after)).or_insert(after);
                }
            }
        }
        let mut times: Vec<Duration> = first.into_values().collect();
        times.sort();
        if let (Some(p50), Some(max)) = (times.get(times.len() / 2), times.last()) {
            eprintln!(
                "{kind:?}: licenses answering again after p50 {} ms, max {} ms",
                p50.as_millis(),
                max.as_millis()
            );
        }
    }
}
