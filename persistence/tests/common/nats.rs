//! A 3-server NATS JetStream cluster on 127.0.0.1, each server fsyncing before it acknowledges
//! (`sync_interval: always`), started from the pinned nats-server that `scripts/test-all`
//! installs (`LEASEHOLD_TEST_NATS_SERVER`); tests that need it fail, not skip, without it.

// Each test binary uses a different part of it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn nats_server_binary() -> PathBuf {
    match std::env::var_os("LEASEHOLD_TEST_NATS_SERVER") {
        Some(path) => PathBuf::from(path),
        None => panic!(
            "LEASEHOLD_TEST_NATS_SERVER names no nats-server: run scripts/test-all, which installs the pinned one"
        ),
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    listener.local_addr().unwrap_or_else(|e| panic!("local address: {e}")).port()
}

/// One nats-server of the cluster.
pub struct Server {
    pub name: String,
    config: PathBuf,
    client_port: u16,
    monitor_port: u16,
    child: Option<Child>,
}

impl Server {
    pub fn start(&mut self) {
        let log = std::fs::File::create(self.config.with_extension("log")).unwrap_or_else(|e| panic!("log: {e}"));
        let child = Command::new(nats_server_binary())
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nats-server: {e}"));
        self.child = Some(child);
    }

    /// The process id, while it runs (to send it signals).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Three nats-servers in one cluster, each with JetStream fsyncing before it acknowledges (unless
/// started with [`Cluster::start_lazy`]) and its monitoring endpoint on.
pub struct Cluster {
    servers: Vec<Server>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start() -> Self {
        Cluster::start_syncing(true)
    }

    /// A cluster left at JetStream's default lazy sync: it acknowledges before it fsyncs.
    pub fn start_lazy() -> Self {
        Cluster::start_syncing(false)
    }

    fn start_syncing(always: bool) -> Self {
        let sync = if always { ", sync_interval: always" } else { "" };
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let cluster_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes: Vec<String> = cluster_ports.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect();
        let mut servers = Vec::new();
        for (i, cluster_port) in cluster_ports.iter().enumerate() {
            let name = format!("n{i}");
            let client_port = free_port();
            let monitor_port = free_port();
            let config = dir.path().join(format!("{name}.conf"));
            let store = dir.path().join(&name);
            std::fs::write(
                &config,
                format!(
                    "server_name: {name}\nlisten: 127.0.0.1:{client_port}\nhttp: 127.0.0.1:{monitor_port}\n\
                     jetstream {{ store_dir: {store:?}{sync} }}\n\
                     cluster {{ name: leasehold, listen: 127.0.0.1:{cluster_port}, routes: [{}] }}\n",
                    routes.join(", ")
                ),
            )
            .unwrap_or_else(|e| panic!("config: {e}"));
            let mut server = Server { name, config, client_port, monitor_port, child: None };
            server.start();
            servers.push(server);
        }
        Cluster { servers, _dir: dir }
    }

    /// The servers' client URLs, as a node is configured with them.
    pub fn server_urls(&self) -> Vec<String> {
        self.servers.iter().map(|s| format!("nats://127.0.0.1:{}", s.client_port)).collect()
    }

    /// A `leasehold serve` configuration file in `dir` for node `node` of this cluster, on
    /// `partitions` partitions.
    pub fn node_config(&self, dir: &std::path::Path, node: &str, partitions: u32) -> PathBuf {
        let quoted = |urls: Vec<String>| urls.iter().map(|u| format!("{u:?}")).collect::<Vec<_>>().join(", ");
        let file = dir.join("leasehold.toml");
        let text = format!(
            "[cluster]\nnats = [{}]\nmonitor = [{}]\nnode = {node:?}\npartitions = {partitions}\n",
            quoted(self.server_urls()),
            quoted(self.monitor_urls())
        );
        std::fs::write(&file, text).unwrap_or_else(|e| panic!("the configuration: {e}"));
        file
    }

    /// The servers' monitoring URLs.
    pub fn monitor_urls(&self) -> Vec<String> {
        self.servers.iter().map(|s| format!("http://127.0.0.1:{}", s.monitor_port)).collect()
    }

    pub fn urls(&self) -> Vec<async_nats::ServerAddr> {
        self.servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.client_port).parse().unwrap_or_else(|e| panic!("url: {e}")))
            .collect()
    }

    /// A client of the cluster, once JetStream answers (its servers have elected a leader).
    pub async fn client(&self) -> async_nats::Client {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(client) = async_nats::connect(self.urls()).await {
                if async_nats::jetstream::new(client.clone()).query_account().await.is_ok() {
                    return client;
                }
            }
            assert!(Instant::now() < deadline, "the NATS cluster did not come up in 30 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The servers' names.
    pub fn names(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.name.clone()).collect()
    }

    pub fn server_named(&mut self, name: &str) -> &mut Server {
        let found = self.servers.iter_mut().find(|s| s.name == name);
        found.unwrap_or_else(|| panic!("no server named {name}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for server in &mut self.servers {
            server.kill();
        }
    }
}

/// The server that leads the stream `LH_P{partition}` now.
pub async fn stream_leader(client: &async_nats::Client, partition: u32) -> String {
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream(format!("LH_P{partition}")).await.unwrap_or_else(|e| panic!("stream: {e}"));
    let info = stream.info().await.unwrap_or_else(|e| panic!("stream info: {e}"));
    info.cluster.as_ref().and_then(|c| c.leader.clone()).unwrap_or_else(|| panic!("the stream has no leader"))
}
