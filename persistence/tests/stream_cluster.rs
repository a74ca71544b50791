//! Nodes of a cluster on a real 3-server NATS JetStream cluster: they share the streams out by
//! rendezvous hashing over the live nodes, every node follows the directory, and when a node
//! dies (or leaves) the others take over its partitions with every lease it acknowledged.

mod common;

use common::nats::Cluster;
use common::{live_leases, seat_license, START};
use leasehold_engine::journal::{Journal, JournalError};
use leasehold_engine::{ConsumeRequest, Decision, Engine, EngineError, LeaseId, LicenseId, ManualClock};
use leasehold_persistence::jetstream::StreamName;
use leasehold_persistence::membership::preferred_owner;
use leasehold_persistence::{ClusterNode, StreamJournal, StreamJournalConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PARTITIONS: u32 = 4;

/// A node: its journal and the engine on it, with a task applying what the cluster changes.
struct Node {
    name: String,
    journal: Arc<StreamJournal>,
    engine: Engine,
}

impl Node {
    async fn start(cluster: &Cluster, name: &str) -> Node {
        let _ = cluster.client().await;
        let mut config = StreamJournalConfig::new(cluster.server_urls(), name);
        config.partitions = PARTITIONS;
        config.cluster = Some(ClusterNode { http: format!("{name}:http"), tcp: format!("{name}:tcp") });
        let deadline = Instant::now() + Duration::from_secs(60);
        let (journal, recovered) = loop {
            match StreamJournal::open(config.clone()).await {
                Ok(opened) => break opened,
                Err(e) => assert!(Instant::now() < deadline, "the streams did not open in 60 s: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let journal = Arc::new(journal);
        let engine = Engine::builder()
            .clock(Arc::new(ManualClock::starting_at(START)))
            .journal(Arc::clone(&journal) as Arc<dyn Journal>)
            .recovered(recovered)
            .workers(1)
            .build()
            .unwrap_or_else(|e| panic!("engine: {e}"));
        let mut changes = journal.cluster_changes().unwrap_or_else(|| panic!("a clustered journal has changes"));
        let applying = engine.clone();
        tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                change.apply(&applying);
            }
        });
        Node { name: name.to_owned(), journal, engine }
    }

    fn owns(&self, stream: StreamName) -> bool {
        self.journal.owned().contains(&stream)
    }
}

/// Waits until each stream is owned by the node rendezvous hashing prefers for it among `nodes`
/// (and by no other).
async fn settled(nodes: &[&Node]) -> Duration {
    let started = Instant::now();
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let streams: Vec<StreamName> = (0..PARTITIONS).map(StreamName::Partition).chain([StreamName::Directory]).collect();
    loop {
        let placed = streams.iter().zip(0..).all(|(stream, key)| {
            let preferred = preferred_owner(key, &names);
            nodes.iter().all(|n| n.owns(*stream) == (Some(n.name.as_str()) == preferred))
        });
        if placed {
            return started.elapsed();
        }
        let owned: Vec<(String, Vec<StreamName>)> = nodes.iter().map(|n| (n.name.clone(), n.journal.owned())).collect();
        assert!(started.elapsed() < Duration::from_secs(30), "the streams were not shared out in 30 s: {owned:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn consume(engine: &Engine, consumer: leasehold_engine::ConsumerId, hw: usize) -> Result<LeaseId, EngineError> {
    let request = ConsumeRequest::new(consumer, common::PRODUCT).on_hardware(format!("hw-{hw}"));
    match engine.consume(request).await? {
        Decision::Granted(grant) => Ok(grant.lease.id),
        Decision::Denied(denial) => panic!("denied: {denial:?}"),
    }
}

/// Waits until `node` knows `license` and consumes on it.
async fn consume_on(node: &Node, consumer: leasehold_engine::ConsumerId, hw: usize) -> LeaseId {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match consume(&node.engine, consumer, hw).await {
            Ok(lease) => return lease,
            Err(e) => assert!(Instant::now() < deadline, "{} never granted: {e}", node.name),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn partition_of(license: LicenseId) -> StreamName {
    StreamName::Partition(license.partition(PARTITIONS))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_share_the_streams_and_a_survivor_takes_over_a_dead_nodes_leases() {
    let cluster = Cluster::start();
    let a = Node::start(&cluster, "a").await;
    let b = Node::start(&cluster, "b").await;
    settled(&[&a, &b]).await;

    // The directory's owner creates the license; the other node learns it from the directory's
    // stream, and only the partition's owner answers for it.
    let (writer, follower) = if a.owns(StreamName::Directory) { (&a, &b) } else { (&b, &a) };
    let fixture = seat_license(&writer.engine, 3).await;
    let (owner, other) = if a.owns(partition_of(fixture.license)) { (&a, &b) } else { (&b, &a) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while follower.engine.license(fixture.license).is_none() {
        assert!(Instant::now() < deadline, "{} never learned the license", follower.name);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = consume_on(owner, fixture.consumer, 1).await;
    let second = consume_on(owner, fixture.consumer, 2).await;
    match consume(&other.engine, fixture.consumer, 3).await {
        Err(EngineError::Journal(JournalError::NotOwner { owner: Some(named), .. })) => assert_eq!(named, owner.name),
        other_answer => panic!("a node that does not own the partition answered: {other_answer:?}"),
    }

    // The owner dies: it sends nothing more, not even a heartbeat.
    owner.journal.close();
    let died = Instant::now();
    let lease = consume_on(other, fixture.consumer, 3).await;
    let failover = died.elapsed();
    let mut held: Vec<LeaseId> =
        live_leases(&other.engine, fixture.license).await.into_iter().map(|(id, _)| id).collect();
    held.sort();
    let mut expected = vec![first, second, lease];
    expected.sort();
    assert_eq!(held, expected, "the survivor lost an acknowledged lease");
    let fourth = ConsumeRequest::new(fixture.consumer, common::PRODUCT).on_hardware("hw-4");
    let answer = other.engine.consume(fourth).await;
    assert!(matches!(answer, Ok(Decision::Denied(_))), "a fourth seat of three: {answer:?}");
    eprintln!("failover after a node died: {} ms", failover.as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_node_hands_its_streams_over_and_a_new_node_gets_its_share() {
    let cluster = Cluster::start();
    let a = Node::start(&cluster, "a").await;
    settled(&[&a]).await;
    let fixture = seat_license(&a.engine, 2).await;
    let first = consume_on(&a, fixture.consumer, 1).await;

    let b = Node::start(&cluster, "b").await;
    settled(&[&a, &b]).await;

    let left = Instant::now();
    a.journal.leave(Duration::from_secs(5)).await;
    assert!(a.journal.owned().is_empty(), "a still owns streams after leaving");
    settled(&[&b]).await;
    let handed_over = left.elapsed();
    let second = consume_on(&b, fixture.consumer, 2).await;
    let mut held: Vec<LeaseId> = live_leases(&b.engine, fixture.license).await.into_iter().map(|(id, _)| id).collect();
    held.sort();
    let mut expected = vec![first, second];
    expected.sort();
    assert_eq!(held, expected);
    eprintln!("hand-over of a leaving node: {} ms", handed_over.as_millis());
}
