//! `leasehold serve --nats`: nodes journaling to a real 3-server NATS JetStream cluster keep
//! what they acknowledged through kill -9, share the partitions, take over those of a node that
//! dies, and refuse NATS servers that acknowledge before they fsync.

mod http_common;
#[path = "../persistence/tests/common/nats.rs"]
mod nats;

use http_common::{request, seats, Server, ADMIN};
use nats::Cluster;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Waits until the cluster's JetStream answers (its servers have elected their leaders).
fn wait_for_jetstream(cluster: &Cluster) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(cluster.client());
}

fn node(dir: &Path, config: &Path) -> Server {
    Server::start_in(dir, &["--config", config.to_str().expect("a UTF-8 path")], true)
}

/// The license's leases as `server` lists them; `None` while it answers `notOwner` (another
/// node holds the partition, or none has taken it yet).
fn lease_ids(server: &Server, license: &str) -> Option<Vec<String>> {
    let reply = server.admin("GET", &format!("/admin/licenses/{license}/leases"), None);
    if reply.status == 503 {
        return None;
    }
    assert_eq!(reply.status, 200, "{}", reply.text());
    let leases = reply.json();
    let items = leases["items"].as_array().expect("items");
    let mut ids: Vec<String> = items.iter().map(|l| l["id"].as_str().expect("an id").to_owned()).collect();
    ids.sort();
    Some(ids)
}

/// Retries `call` while it answers 503 (the node has not taken its streams yet), for 15 s.
fn once_owned<T>(what: &str, mut call: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(answer) = call() {
            return answer;
        }
        assert!(Instant::now() < deadline, "{what}: still not owned after 15 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `POST path` with `body` on `server` once it takes directory changes; the answer's id.
fn create(server: &Server, path: &str, body: serde_json::Value) -> serde_json::Value {
    once_owned(path, || {
        let reply = server.admin("POST", path, Some(body.clone()));
        (reply.status != 503).then(|| {
            assert_eq!(reply.status, 201, "{path}: {}", reply.text());
            reply.json()
        })
    })
}

/// A checkout of `hw` on `server`, once it answers for the license: `true` or `false`.
fn checkout(server: &Server, key: &str, hw: usize) -> String {
    once_owned("a checkout", || {
        let reply = server.authz(key, &format!("/authz/.txt?ThreeDee&hw={hw}"));
        (reply.status != 503).then(|| reply.text())
    })
}

#[test]
fn the_nodes_keep_what_they_acknowledged_through_kill_9_and_a_survivor_takes_over() {
    let cluster = Cluster::start();
    wait_for_jetstream(&cluster);
    let dir_a = tempfile::tempdir().expect("a scratch directory");
    let config_a = cluster.node_config(dir_a.path(), "a", 4);
    let a = node(dir_a.path(), &config_a);
    assert!(a.banner.iter().any(|l| l.contains("journal on NATS") && l.contains("as node a")), "{:?}", a.banner);
    let licensee = create(&a, "/admin/licensees", json!({"name": "Acme", "kind": "organization"}));
    let licensee = licensee["id"].as_str().expect("an id").to_owned();
    let consumer = create(&a, "/admin/consumers", json!({"name": "u", "kind": "user", "licensees": [licensee]}));
    let key = consumer["api_key"].as_str().expect("a key").to_owned();
    create(&a, "/admin/products", json!({"name": "ThreeDee"}));
    let license = create(
        &a,
        "/admin/licenses",
        json!({"licensee": licensee, "product": "ThreeDee", "credit": seats(3), "model": {"session_anchors": ["hw"]}}),
    );
    let license = license["id"].as_str().expect("an id").to_owned();
    for hw in 1..=2 {
        assert_eq!(checkout(&a, &key, hw), "true");
    }
    let acknowledged = once_owned("the leases", || lease_ids(&a, &license));
    assert_eq!(acknowledged.len(), 2);
    a.kill();

    // Restarted, the node reads its leases back from the streams.
    let a = node(dir_a.path(), &config_a);
    assert_eq!(once_owned("the leases", || lease_ids(&a, &license)), acknowledged, "leases lost through kill -9");
    assert_eq!(checkout(&a, &key, 3), "true");
    assert_eq!(checkout(&a, &key, 4), "false", "a fourth seat of three");
    let held = once_owned("the leases", || lease_ids(&a, &license));

    // A second node joins and takes its share of the partitions. Each node answers for the
    // license: the one that does not own its partition forwards to the one that does.
    let dir_b = tempfile::tempdir().expect("a scratch directory");
    let b = node(dir_b.path(), &cluster.node_config(dir_b.path(), "b", 4));
    std::thread::sleep(Duration::from_secs(3));
    let owner_name = once_owned("one owner", || owner_of(&a, &license));
    let (owner, survivor) = if owner_name == server_name(&a) { (a, b) } else { (b, a) };
    assert_eq!(owner_of(&owner, &license), Some(owner_name), "the owner answers for the license itself");
    assert_eq!(once_owned("the leases", || lease_ids(&survivor, &license)), held, "forwarded to the owner");
    assert_eq!(checkout(&survivor, &key, 4), "false", "a fourth seat of three, through the other node");

    // The owner dies: the survivor takes its partitions over with every acknowledged lease.
    owner.kill();
    let died = Instant::now();
    assert_eq!(once_owned("the leases", || lease_ids(&survivor, &license)), held, "the survivor lost a lease");
    let failover = died.elapsed();
    assert_eq!(checkout(&survivor, &key, 4), "false", "the survivor granted a fourth seat of three");
    survivor.admin_ok("DELETE", &format!("/admin/leases/{}", held[0]), None, 200);
    assert_eq!(checkout(&survivor, &key, 4), "true");
    eprintln!("failover after kill -9 of the owner: {} ms", failover.as_millis());
}

/// The node name `server` printed in its banner.
fn server_name(server: &Server) -> String {
    let line = server.banner.iter().find(|l| l.contains(" as node ")).expect("a clustered node's banner");
    let after = line.split(" as node ").nth(1).expect("a node name");
    after.split(',').next().expect("a node name").to_owned()
}

/// Which node owns the license's partition, as `server` says when told not to forward (the
/// header a forwarding node sets); `None` while no node owns it.
fn owner_of(server: &Server, license: &str) -> Option<String> {
    let auth = format!("Bearer {ADMIN}");
    let headers = [("Authorization", auth.as_str()), ("X-Leasehold-Forwarded-By", "the-test")];
    let reply = request(server.addr, "GET", &format!("/admin/licenses/{license}/leases"), &headers, None);
    match reply.status {
        200 => Some(server_name(server)),
        503 => reply.header("x-leasehold-owner").map(str::to_owned),
        other => panic!("{other}: {}", reply.text()),
    }
}

#[test]
fn a_node_refuses_nats_servers_that_acknowledge_before_they_fsync() {
    let cluster = Cluster::start_lazy();
    wait_for_jetstream(&cluster);
    let dir = tempfile::tempdir().expect("a scratch directory");
    let config = cluster.node_config(dir.path(), "a", 4);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = Command::new(env!("CARGO_BIN_EXE_leasehold"))
            .args(["serve", "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .arg("--config")
            .arg(&config)
            .env("LEASEHOLD_ADMIN_TOKEN", ADMIN)
            .output()
            .expect("the leasehold binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "a node ran on NATS that does not fsync");
        if stderr.contains("does not fsync before it acknowledges") {
            return;
        }
        assert!(Instant::now() < deadline, "the node failed otherwise: {stderr}");
        std::thread::sleep(Duration::from_millis(500));
    }
}
