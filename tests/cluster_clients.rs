//! The official clients, unchanged, against each node of a 3-node cluster on a real 3-server NATS
//! JetStream cluster (the `tenduke-scale` Python SDK's suite of `tests/scale_sdk.rs` and the
//! `@10duke/web-client-pkce` LicenseChecker's of `tests/web_client.rs`): whichever node a client is pointed at, its requests are
//! answered (forwarded to the owners of what they touch), its own writes are seen, and every
//! token verifies through that node's JWKS, because the nodes share one signing key ring. Also
//! `GET /admin/cluster`: the nodes agree on who owns each stream, and a key rotated on one node
//! is the key every node publishes.
//!
//! Needs the interpreter of `tests/scale_sdk.rs` (`LEASEHOLD_TEST_PYTHON`), Node.js with the
//! package of `tests/js`, and the pinned nats-server (`LEASEHOLD_TEST_NATS_SERVER`);
//! `scripts/test-all` provides them.

mod http_common;
#[path = "../persistence/tests/common/nats.rs"]
mod nats;

use http_common::{scale_sdk, seats, web_client, Server, ADMIN};
use nats::Cluster;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const NODES: usize = 3;
const PARTITIONS: u32 = 8;

fn cluster_status(server: &Server) -> Value {
    server.admin_ok("GET", "/admin/cluster", None, 200)
}

/// Waits until every node hears all of them, ready, and agrees with the others on an owner for
/// every stream; the owners.
fn settled(servers: &[Server]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let views: Vec<Value> = servers.iter().map(cluster_status).collect();
        let owners: Vec<Vec<Option<String>>> = views
            .iter()
            .map(|view| {
                view["streams"]
                    .as_array()
                    .expect("streams")
                    .iter()
                    .map(|s| s["owner"].as_str().map(str::to_owned))
                    .collect()
            })
            .collect();
        let everyone_ready = views.iter().all(|view| {
            let nodes = view["nodes"].as_array().expect("nodes");
            nodes.len() == NODES && nodes.iter().all(|n| n["alive"] == json!(true) && n["ready"] == json!(true))
        });
        let owned_everywhere = views
            .iter()
            .all(|view| view["streams"].as_array().expect("streams").iter().all(|s| s["state"] != json!("reading")));
        let agreed = owners.windows(2).all(|pair| pair[0] == pair[1]) && owners[0].iter().all(Option::is_some);
        if everyone_ready && owned_everywhere && agreed {
            return owners[0].iter().flatten().cloned().collect();
        }
        assert!(Instant::now() < deadline, "the cluster did not settle in 60 s: {views:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The LicenseChecker's suite against `server`, on a license of its own named by `prefix`.
fn run_license_checker(server: &Server, prefix: &str) {
    let (licensee, _, key) = server.party(&format!("{prefix} Web"));
    let product = format!("{prefix} Web Studio");
    let license = server.license(&licensee, &product, seats(1), json!({"model": {"session_anchors": ["hw"]}}));
    let run = web_client::run_suite(server.addr, &key, &product, &format!("{prefix} Unlicensed"), &license, ADMIN);
    let output = web_client::text(&run);
    assert!(run.status.success(), "the LicenseChecker suite failed against {prefix}:\n{output}");
    assert!(String::from_utf8_lossy(&run.stdout).contains("every check passed"), "{output}");
}

#[test]
fn the_official_clients_pass_against_every_node_and_the_nodes_share_their_keys() {
    let cluster = Cluster::start();
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime").block_on(cluster.client());
    let dirs: Vec<tempfile::TempDir> = (0..NODES).map(|_| tempfile::tempdir().expect("a directory")).collect();
    let servers: Vec<Server> = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            let config = cluster.node_config(dir.path(), &format!("node{i}"), PARTITIONS);
            Server::start_in(dir.path(), &["--config", config.to_str().expect("a UTF-8 path")], true)
        })
        .collect();

    let owners = settled(&servers);
    assert_eq!(owners.len(), PARTITIONS as usize + 1);
    for i in 0..NODES {
        assert!(owners.contains(&format!("node{i}")), "node{i} owns no stream: {owners:?}");
    }
    let status = cluster_status(&servers[0]);
    let written: Vec<&Value> =
        status["streams"].as_array().expect("streams").iter().filter(|s| s["state"] == json!("owned")).collect();
    assert!(written.iter().all(|s| s["owner"] == json!("node0") && s["epoch"].as_u64().is_some_and(|e| e >= 1)));

    let first = servers[0].kids();
    for server in &servers[1..] {
        assert_eq!(server.kids(), first, "every node publishes the same keys");
    }

    for (i, server) in servers.iter().enumerate() {
        scale_sdk::run_suite(server.addr, ADMIN, &format!("Node{i}"));
        run_license_checker(server, &format!("Node{i}"));
    }

    // A key rotated on one node is the key every node signs with and publishes (RS256: the SDK
    // verifies no other algorithm).
    let rotated = servers[2].admin_ok("POST", "/admin/keys/rotate", Some(json!({"alg": "RS256"})), 200);
    let kid = rotated["kid"].as_str().expect("a kid").to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    for server in &servers {
        while server.kids().first() != Some(&kid) {
            assert!(Instant::now() < deadline, "{} never published {kid}: {:?}", server.addr, server.kids());
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(server.kids(), [kid.clone(), first[0].clone()], "the retired key stays published");
    }
    scale_sdk::run_suite(servers[0].addr, ADMIN, "Rotated");

    let metrics = http_common::request(servers[1].addr, "GET", "/metrics", &[], None).text();
    assert!(metrics.contains("leasehold_stream_owned{stream=\"LH_DIR\""), "{metrics}");
    assert!(metrics.contains("leasehold_cluster_node_alive{node=\"node2\"} 1"), "{metrics}");
}
