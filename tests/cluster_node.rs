//! `leasehold serve --nats`: a node journaling to a real 3-server NATS JetStream cluster keeps
//! what it acknowledged through kill -9, a second node that opens the streams fences the first,
//! and a node refuses NATS servers that acknowledge before they fsync.

mod http_common;
#[path = "../persistence/tests/common/nats.rs"]
mod nats;

use http_common::{seats, Server, ADMIN};
use nats::Cluster;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Waits until the cluster's JetStream answers (its servers have elected their leaders).
fn wait_for_jetstream(cluster: &Cluster) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(cluster.client());
}

/// A configuration file in `dir` for node `node` of `cluster`, on four partitions.
fn node_config(dir: &Path, cluster: &Cluster, node: &str) -> PathBuf {
    let quoted = |urls: Vec<String>| urls.iter().map(|u| format!("{u:?}")).collect::<Vec<_>>().join(", ");
    let file = dir.join("leasehold.toml");
    let text = format!(
        "[cluster]\nnats = [{}]\nmonitor = [{}]\nnode = {node:?}\npartitions = 4\n",
        quoted(cluster.server_urls()),
        quoted(cluster.monitor_urls())
    );
    std::fs::write(&file, text).expect("the configuration is written");
    file
}

fn node(dir: &Path, config: &Path) -> Server {
    Server::start_in(dir, &["--config", config.to_str().expect("a UTF-8 path")], true)
}

fn lease_ids(server: &Server, license: &str) -> Vec<String> {
    let leases = server.admin_ok("GET", &format!("/admin/licenses/{license}/leases"), None, 200);
    let items = leases["items"].as_array().expect("items");
    let mut ids: Vec<String> = items.iter().map(|l| l["id"].as_str().expect("an id").to_owned()).collect();
    ids.sort();
    ids
}

#[test]
fn a_node_keeps_what_it_acknowledged_through_kill_9_and_a_second_node_fences_it() {
    let cluster = Cluster::start();
    wait_for_jetstream(&cluster);
    let dir_a = tempfile::tempdir().expect("a scratch directory");
    let config_a = node_config(dir_a.path(), &cluster, "a");
    let a = node(dir_a.path(), &config_a);
    assert!(a.banner.iter().any(|l| l.contains("journal on NATS") && l.contains("as node a")), "{:?}", a.banner);
    let (licensee, _, key) = a.party("Acme");
    let license = a.license(&licensee, "ThreeDee", seats(3), json!({"model": {"session_anchors": ["hw"]}}));
    for hw in 1..=2 {
        assert_eq!(a.authz(&key, &format!("/authz/.txt?ThreeDee&hw={hw}")).text(), "true");
    }
    let acknowledged = lease_ids(&a, &license);
    assert_eq!(acknowledged.len(), 2);
    a.kill();

    // Restarted, the node reads its leases back from the streams.
    let a = node(dir_a.path(), &config_a);
    assert_eq!(lease_ids(&a, &license), acknowledged, "leases lost through kill -9");
    assert_eq!(a.authz(&key, "/authz/.txt?ThreeDee&hw=3").text(), "true");
    assert_eq!(a.authz(&key, "/authz/.txt?ThreeDee&hw=4").text(), "false", "a fourth seat of three");
    let held = lease_ids(&a, &license);

    // A second node opens the streams: it has every acknowledged lease, and the first node's
    // changes are refused from then on.
    let dir_b = tempfile::tempdir().expect("a scratch directory");
    let b = node(dir_b.path(), &node_config(dir_b.path(), &cluster, "b"));
    assert_eq!(lease_ids(&b, &license), held);
    let released = a.admin("DELETE", &format!("/admin/leases/{}", held[0]), None);
    assert_eq!(released.status, 503, "a fenced node released a lease: {}", released.text());
    assert_eq!(lease_ids(&b, &license), held, "the fenced node's release reached the streams");
    assert_eq!(b.authz(&key, "/authz/.txt?ThreeDee&hw=4").text(), "false", "b granted a fourth seat of three");
    b.admin_ok("DELETE", &format!("/admin/leases/{}", held[0]), None, 200);
    assert_eq!(b.authz(&key, "/authz/.txt?ThreeDee&hw=4").text(), "true");
}

#[test]
fn a_node_refuses_nats_servers_that_acknowledge_before_they_fsync() {
    let cluster = Cluster::start_lazy();
    wait_for_jetstream(&cluster);
    let dir = tempfile::tempdir().expect("a scratch directory");
    let config = node_config(dir.path(), &cluster, "a");
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
