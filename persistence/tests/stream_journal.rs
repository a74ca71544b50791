//! The engine journaling to JetStream ([`StreamJournal`]) on a real 3-server cluster: what it
//! acknowledged is what a node that opens the streams next recovers, a node whose partition was
//! claimed by another refuses the partition's changes, and acknowledged changes survive the
//! kill -9 of a NATS server.

mod common;

use common::nats::{stream_leader, Cluster};
use common::{live_leases, replayed, run_workload, seat_license, START};
use leasehold_engine::journal::{Journal, JournalError, MemoryJournal};
use leasehold_engine::{AdminError, ConsumeRequest, Decision, Engine, EngineError, LeaseId, ManualClock};
use leasehold_persistence::{StreamJournal, StreamJournalConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A node of `cluster` named `node`, on four partitions.
fn config(cluster: &Cluster, node: &str) -> StreamJournalConfig {
    let mut config = StreamJournalConfig::new(cluster.server_urls(), node);
    config.partitions = 4;
    config.give_up_after = Duration::from_secs(20);
    config
}

/// Opens the streams as `node`, retrying while the cluster elects its first leaders.
async fn open(cluster: &Cluster, node: &str) -> (Arc<StreamJournal>, leasehold_engine::replay::Recovered) {
    let _ = cluster.client().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match StreamJournal::open(config(cluster, node)).await {
            Ok((journal, recovered)) => return (Arc::new(journal), recovered),
            Err(e) => assert!(Instant::now() < deadline, "the streams did not open in 60 s: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn engine_on(journal: &Arc<StreamJournal>, recovered: leasehold_engine::replay::Recovered) -> Engine {
    Engine::builder()
        .clock(Arc::new(ManualClock::starting_at(START)))
        .journal(Arc::clone(journal) as Arc<dyn Journal>)
        .recovered(recovered)
        .workers(1)
        .build()
        .unwrap_or_else(|e| panic!("engine: {e}"))
}

async fn consume(engine: &Engine, consumer: leasehold_engine::ConsumerId, hw: usize) -> Result<LeaseId, String> {
    let request = ConsumeRequest::new(consumer, common::PRODUCT).on_hardware(format!("hw-{hw}"));
    match engine.consume(request).await {
        Ok(Decision::Granted(grant)) => Ok(grant.lease.id),
        Ok(Decision::Denied(denial)) => Err(format!("denied: {denial:?}")),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_streams_acknowledged_is_what_the_next_node_recovers() {
    let cluster = Cluster::start();
    let (journal, recovered) = open(&cluster, "a").await;
    assert!(recovered.licenses.is_empty(), "fresh streams hold nothing");
    run_workload(Arc::clone(&journal) as Arc<dyn Journal>, 11, 300).await;
    journal.close();

    let memory = Arc::new(MemoryJournal::new());
    run_workload(Arc::clone(&memory) as Arc<dyn Journal>, 11, 300).await;
    let (_journal, recovered) = open(&cluster, "b").await;
    assert_eq!(
        recovered.to_snapshot(),
        replayed(&memory.entries()),
        "the streams replay to the state the same workload leaves in memory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_partition_another_node_claimed_refuses_its_changes() {
    let cluster = Cluster::start();
    let (a, recovered) = open(&cluster, "a").await;
    let engine_a = engine_on(&a, recovered);
    let fixture = seat_license(&engine_a, 3).await;
    let granted = consume(&engine_a, fixture.consumer, 1).await.unwrap_or_else(|e| panic!("consume on a: {e}"));

    let (b, recovered) = open(&cluster, "b").await;
    let engine_b = engine_on(&b, recovered);
    let on_b = live_leases(&engine_b, fixture.license).await;
    assert_eq!(on_b.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![granted], "b took over a's lease");

    // a's next change is refused by the stream: a was fenced, and the partition is b's from
    // then on; a's license answers nothing rather than from a memory the stream never took.
    let refused = consume(&engine_a, fixture.consumer, 2).await;
    assert!(refused.is_err(), "a fenced node granted a lease: {refused:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match a.owns(fixture.license) {
            Err(JournalError::NotOwner { owner: Some(owner), .. }) if owner == "b" => break,
            other => assert!(Instant::now() < deadline, "a never learned that b owns the partition: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    match engine_a.leases(fixture.license).await {
        Err(AdminError::Engine(EngineError::Journal(JournalError::NotOwner { .. }))) => {}
        other => panic!("a's license answered after b took its partition: {other:?}"),
    }

    // b goes on granting from the stream's state: two seats left of three.
    for hw in 2..4 {
        consume(&engine_b, fixture.consumer, hw).await.unwrap_or_else(|e| panic!("consume on b: {e}"));
    }
    assert!(consume(&engine_b, fixture.consumer, 4).await.is_err(), "b granted a fourth seat of three");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_leases_survive_the_kill_of_a_nats_server() {
    let mut cluster = Cluster::start();
    let (journal, recovered) = open(&cluster, "a").await;
    let engine = engine_on(&journal, recovered);
    let fixture = seat_license(&engine, 10_000).await;

    let partition = fixture.license.partition(4);
    let leader = stream_leader(&cluster.client().await, partition).await;
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for hw in 0..400 {
        if hw == 100 {
            cluster.server_named(&leader).kill();
        }
        if hw == 300 {
            cluster.server_named(&leader).start();
        }
        match consume(&engine, fixture.consumer, hw).await {
            Ok(lease) => acknowledged.push(lease),
            Err(_) => refused += 1,
        }
    }
    assert!(acknowledged.len() > 100, "only {} of 400 checkouts were acknowledged", acknowledged.len());
    journal.close();

    let (journal, recovered) = open(&cluster, "b").await;
    let engine = engine_on(&journal, recovered);
    let mut held: Vec<LeaseId> = live_leases(&engine, fixture.license).await.into_iter().map(|(id, _)| id).collect();
    acknowledged.sort();
    held.sort();
    let missing: Vec<&LeaseId> = acknowledged.iter().filter(|id| held.binary_search(id).is_err()).collect();
    assert!(missing.is_empty(), "acknowledged leases lost ({refused} refused): {missing:?}");
}
