//! `leasehold serve --nats`: the node's journal on a NATS JetStream cluster, opened only once
//! every NATS server named shows that it fsyncs before it acknowledges.

use super::admin::call::Call;
use super::admin::client::Client;
use super::config::ClusterSettings;
use leasehold_engine::journal::Journal;
use leasehold_engine::metrics::Histogram;
use leasehold_engine::replay::Recovered;
use leasehold_engine::webhooks::{DeliveryLog, MemoryDeliveryLog};
use leasehold_engine::Engine;
use leasehold_persistence::jetstream::StreamName;
use leasehold_persistence::{
    ClusterChange, ClusterNode, SledJournal, StreamJournal, StreamJournalConfig, StreamJournalError,
};
use leasehold_transports::http::forward::{ClusterStatus, NodeStatus, Peers, StreamStatus};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a node keeps trying to open the streams of a cluster that cannot answer yet.
pub const OPEN_PATIENCE: Duration = Duration::from_secs(60);

/// How long a node waits for its directory to reach what another node had seen (a request or
/// an answer forwarded between them) before it goes on regardless.
pub const CATCH_UP_PATIENCE: Duration = Duration::from_secs(2);

/// How long a node that stops waits for its streams to be handed over.
pub const LEAVE_PATIENCE: Duration = Duration::from_secs(5);

/// Why a node does not run clustered.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A NATS server's monitoring endpoint did not answer, or not as a nats-server does.
    #[error("NATS monitoring at {url}: {reason}")]
    Monitor {
        /// The monitoring URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A NATS server acknowledges writes before they are on disk: an acknowledged lease could be
    /// lost with the machine's power.
    #[error(
        "the NATS server at {url} does not fsync before it acknowledges (its jetstream \
         sync_interval is not `always`): a node does not run clustered on it"
    )]
    NotFsyncing {
        /// The monitoring URL.
        url: String,
    },
    /// The streams could not be opened.
    #[error(transparent)]
    Streams(#[from] StreamJournalError),
}

/// Checks every monitoring URL's `/varz`: JetStream must be on and fsync before it
/// acknowledges.
pub async fn check_fsync(monitors: &[String]) -> Result<(), ClusterError> {
    for url in monitors {
        let base = url.trim_end_matches('/').to_owned();
        let varz = Client::new(base, String::new())
            .send(&Call::get("/varz".into()), None)
            .await
            .map_err(|e| ClusterError::Monitor { url: url.clone(), reason: e.to_string() })?;
        let config = &varz["jetstream"]["config"];
        if config.is_null() {
            let reason = "no JetStream configuration in /varz: is JetStream on?".to_owned();
            return Err(ClusterError::Monitor { url: url.clone(), reason });
        }
        if config["sync_always"] != serde_json::Value::Bool(true) {
            return Err(ClusterError::NotFsyncing { url: url.clone() });
        }
    }
    Ok(())
}

/// The journal a node runs on: the data directory's, or the cluster's streams.
pub enum NodeJournal {
    /// sled, in the data directory.
    Sled(Arc<SledJournal>),
    /// JetStream streams, one per partition and the directory's.
    Streams(Arc<StreamJournal>),
}

impl NodeJournal {
    /// Checks the cluster's servers, then opens the streams as node `cluster.node`, reached at
    /// `node` by the others, trying again for [`OPEN_PATIENCE`] while JetStream cannot answer
    /// yet (a cluster that is starting elects its leaders first).
    pub async fn open_streams(
        cluster: &ClusterSettings,
        node: ClusterNode,
    ) -> Result<(NodeJournal, Recovered), ClusterError> {
        check_fsync(&cluster.monitors).await?;
        let mut config = StreamJournalConfig::new(cluster.nats.clone(), cluster.node.clone());
        config.partitions = cluster.partitions;
        config.replicas = cluster.replicas;
        config.cluster = Some(node);
        let deadline = Instant::now() + OPEN_PATIENCE;
        loop {
            match StreamJournal::open(config.clone()).await {
                Ok((journal, recovered)) => return Ok((NodeJournal::Streams(Arc::new(journal)), recovered)),
                Err(e @ (StreamJournalError::Stream(_) | StreamJournalError::Contended(_)))
                    if Instant::now() < deadline =>
                {
                    tracing::warn!(error = %e, "JetStream cannot open the streams yet; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The journal, as the engine takes it.
    pub fn shared(&self) -> Arc<dyn Journal> {
        match self {
            NodeJournal::Sled(journal) => Arc::clone(journal) as _,
            NodeJournal::Streams(journal) => Arc::clone(journal) as _,
        }
    }

    /// Where webhook deliveries are recorded. The streams keep no events listing yet, so a
    /// clustered node delivers no webhook and keeps its (empty) delivery records in memory.
    pub fn delivery_log(&self) -> Arc<dyn DeliveryLog> {
        match self {
            NodeJournal::Sled(journal) => Arc::clone(journal) as _,
            NodeJournal::Streams(_) => Arc::new(MemoryDeliveryLog::default()),
        }
    }

    /// The time a change takes to become durable (a flush, or a stream's acknowledgement).
    pub fn latency(&self) -> Arc<Histogram> {
        match self {
            NodeJournal::Sled(journal) => journal.flush_latency(),
            NodeJournal::Streams(journal) => journal.append_latency(),
        }
    }

    /// For a node of a cluster: applies to `engine`, in order, what the cluster changes (the
    /// directory's changes made by other nodes, the partitions this node takes over), on a task
    /// of the current runtime.
    pub fn follow(&self, engine: &Engine) {
        let NodeJournal::Streams(journal) = self else { return };
        let Some(mut changes) = journal.cluster_changes() else { return };
        let engine = engine.clone();
        tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                if let ClusterChange::Adopted { partition, licenses } = &change {
                    tracing::info!(partition, licenses = licenses.len(), "took over a partition");
                }
                change.apply(&engine);
            }
        });
    }

    /// For a node of a cluster: the cluster as this node hears it, which the forwarder sends
    /// requests through. `None` for a node alone.
    pub fn peers(&self) -> Option<Arc<dyn Peers>> {
        match self {
            NodeJournal::Streams(journal) => Some(Arc::new(StreamPeers(Arc::clone(journal)))),
            NodeJournal::Sled(_) => None,
        }
    }

    /// For a node of a cluster: hands its streams over to the other nodes before it stops.
    pub async fn leave(&self) {
        if let NodeJournal::Streams(journal) = self {
            journal.leave(LEAVE_PATIENCE).await;
        }
    }

    /// Stops taking changes and lets what is written finish.
    pub fn close(&self) {
        match self {
            NodeJournal::Sled(journal) => journal.close(),
            NodeJournal::Streams(journal) => journal.close(),
        }
    }
}

/// The other nodes of the cluster, as the journal hears their heartbeats.
struct StreamPeers(Arc<StreamJournal>);

impl Peers for StreamPeers {
    fn node(&self) -> &str {
        self.0.node()
    }

    fn http_address(&self, node: &str) -> Option<String> {
        self.0.peer(node).map(|heartbeat| heartbeat.http)
    }

    fn directory_seen(&self) -> u64 {
        self.0.directory_seen()
    }

    fn status(&self) -> ClusterStatus {
        let nodes = self
            .0
            .nodes()
            .into_iter()
            .map(|heard| NodeStatus {
                name: heard.heartbeat.node,
                http: heard.heartbeat.http,
                tcp: heard.heartbeat.tcp,
                ready: heard.heartbeat.ready,
                leaving: heard.heartbeat.leaving,
                silent_ms: heard.silent_ms,
                alive: heard.alive,
            })
            .collect();
        let streams = self
            .0
            .streams()
            .into_iter()
            .map(|stream| StreamStatus {
                stream: stream.name.to_string(),
                partition: match stream.name {
                    StreamName::Partition(n) => Some(n),
                    StreamName::Directory => None,
                },
                owner: stream.owner,
                state: match (stream.written_here, stream.reading) {
                    (true, _) => "owned",
                    (false, true) => "reading",
                    (false, false) => "elsewhere",
                },
                epoch: stream.epoch,
                read_back_ms: stream.read_back_ms,
            })
            .collect();
        ClusterStatus { clustered: true, node: Some(self.0.node().to_owned()), nodes, streams }
    }

    fn catch_up(&self, seq: u64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            if !self.0.catch_up_directory(seq, CATCH_UP_PATIENCE).await {
                tracing::warn!(seq, "the directory did not reach what another node had seen in time");
            }
        })
    }
}
