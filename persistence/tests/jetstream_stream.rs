//! A partition's stream on a real 3-server NATS JetStream cluster (`sync_interval: always`, three
//! copies): the fence behaves as the model stream of `fence_simulation.rs` does, batches of
//! journal entries read back replay to the state of their entries, and acknowledged batches
//! survive the kill -9 of the stream's leader.
//!
//! The pinned nats-server comes from `scripts/test-all` (`tests/nats/requirements.txt`), named
//! by `LEASEHOLD_TEST_NATS_SERVER`; these tests fail, not skip, without it.

mod common;

use common::nats::{stream_leader, Cluster};

use leasehold_engine::replay::Recovered;
use leasehold_persistence::fence::{replay, Claimed, PartitionWriter, Progress, Record, Stored, Tail};
use leasehold_persistence::format::{batch_payload, encode_entry};
use leasehold_persistence::jetstream::{PartitionStream, StreamName};
use std::time::{Duration, Instant};

/// How long an append waits for its answer.
const APPEND_TIMEOUT: Duration = Duration::from_secs(2);

/// A partition's stream on `cluster`, three copies, created fresh under the number `partition`.
async fn stream(cluster: &Cluster, partition: u32) -> PartitionStream {
    let client = cluster.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match PartitionStream::open(client.clone(), StreamName::Partition(partition), 3, APPEND_TIMEOUT).await {
            Ok(stream) => return stream,
            Err(e) => assert!(Instant::now() < deadline, "the stream was not created in 30 s: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn claimed(writer: &mut PartitionWriter, tail: Tail, answer: Stored) -> Claimed {
    writer.claimed(tail.epoch + 1, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_fences_the_old_owner_as_the_model_does() {
    let cluster = Cluster::start();
    let mut stream = stream(&cluster, 7).await;
    let mut a = PartitionWriter::new("a");
    let mut b = PartitionWriter::new("b");

    let tail = stream.tail().await.unwrap_or_else(|e| panic!("tail: {e}"));
    assert_eq!(tail, Tail { last_seq: 0, epoch: 0 });
    let claim = a.claim(tail);
    assert_eq!(claimed(&mut a, tail, stream.append(&claim).await), Claimed::Owner(1));
    let (first, sent) = a.append(b"one".to_vec(), 0, 1_000).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.stored(1, first, stream.append(&sent).await, 0), Progress::Acknowledged(first));
    let (second, late) = a.append(b"two".to_vec(), 0, 1_000).unwrap_or_else(|e| panic!("{e}"));

    // Before a's second batch arrives, b claims the partition; a retry of its claim is the same
    // record.
    let tail = stream.tail().await.unwrap_or_else(|e| panic!("tail: {e}"));
    assert_eq!(tail, Tail { last_seq: 2, epoch: 1 });
    let claim = b.claim(tail);
    let answer = stream.append(&claim).await;
    assert_eq!(answer, Stored::At(3));
    assert_eq!(stream.append(&claim).await, Stored::At(3), "a retried claim is stored once");
    assert_eq!(claimed(&mut b, tail, answer), Claimed::Owner(2));

    // a's batch is refused: the fence.
    let refused = stream.append(&late).await;
    assert_eq!(refused, Stored::WrongLastSequence);
    assert_eq!(a.stored(1, second, refused, 0), Progress::Lost(Some(second)));

    let (b_first, sent) = b.append(b"b-one".to_vec(), 0, 1_000).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.stored(2, b_first, stream.append(&sent).await, 0), Progress::Acknowledged(b_first));
    assert_eq!(stream.append(&sent).await, Stored::At(4), "a retried batch is stored once");

    let tail = stream.tail().await.unwrap_or_else(|e| panic!("tail: {e}"));
    assert_eq!(tail, Tail { last_seq: 4, epoch: 2 });
    let records: Vec<Record> = stream
        .records(1, 4)
        .await
        .unwrap_or_else(|e| panic!("records: {e}"))
        .into_iter()
        .map(|(_, record)| record)
        .collect();
    let batch = |node: &str, epoch, batch, payload: &[u8]| Record::Batch {
        node: node.into(),
        epoch,
        batch,
        payload: payload.to_vec(),
    };
    assert_eq!(
        records,
        vec![
            Record::Epoch { node: "a".into(), epoch: 1 },
            batch("a", 1, 1, b"one"),
            Record::Epoch { node: "b".into(), epoch: 2 },
            batch("b", 2, 1, b"b-one"),
        ]
    );
}

/// Appends `payload` as the next batch, retrying while its answer times out (the leader may be
/// changing); the batch's number once acknowledged, or `None` when the partition was lost.
async fn append_until_answered(
    stream: &PartitionStream,
    writer: &mut PartitionWriter,
    payload: Vec<u8>,
    start: Instant,
) -> Option<u64> {
    let now_ms = |start: Instant| u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let epoch = writer.epoch()?;
    let (batch, mut append) = writer.append(payload, now_ms(start), 30_000).ok()?;
    loop {
        let answer = stream.append(&append).await;
        match writer.stored(epoch, batch, answer, now_ms(start)) {
            Progress::Acknowledged(done) => return Some(done),
            Progress::Retry(again) => {
                append = again;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Progress::Lost(_) | Progress::Ignored => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_batches_survive_the_kill_of_the_streams_leader() {
    let mut cluster = Cluster::start();
    let mut stream = stream(&cluster, 3).await;
    let client = cluster.client().await;
    let mut writer = PartitionWriter::new("a");
    let tail = stream.tail().await.unwrap_or_else(|e| panic!("tail: {e}"));
    let claim = writer.claim(tail);
    assert_eq!(claimed(&mut writer, tail, stream.append(&claim).await), Claimed::Owner(1));
    let start = Instant::now();
    let mut acknowledged = Vec::new();
    let mut killed = None;
    for i in 0..60u32 {
        if i == 20 {
            let leader = stream_leader(&client, 3).await;
            cluster.server_named(&leader).kill();
            killed = Some(leader);
        }
        let payload = format!("batch {i}").into_bytes();
        let batch = append_until_answered(&stream, &mut writer, payload.clone(), start).await;
        let batch = batch.unwrap_or_else(|| panic!("batch {i} was not acknowledged: the partition was lost"));
        acknowledged.push((batch, payload));
    }
    let killed = killed.unwrap_or_else(|| panic!("no server was killed"));
    assert_ne!(stream_leader(&client, 3).await, killed, "another server leads the stream");

    // Every acknowledged batch is in the stream once, in order, after the claim.
    let tail = stream.tail().await.unwrap_or_else(|e| panic!("tail: {e}"));
    assert_eq!(tail.last_seq, 1 + acknowledged.len() as u64, "a retried batch was stored twice");
    let records = stream.records(2, tail.last_seq).await.unwrap_or_else(|e| panic!("records: {e}"));
    for ((_, record), (batch, payload)) in records.iter().zip(&acknowledged) {
        assert_eq!(record, &Record::Batch { node: "a".into(), epoch: 1, batch: *batch, payload: payload.clone() });
    }

    // The killed server comes back and catches up.
    cluster.server_named(&killed).start();
    let deadline = Instant::now() + Duration::from_secs(30);
    let js = async_nats::jetstream::new(client.clone());
    loop {
        let mut stream = js.get_stream("LH_P3").await.unwrap_or_else(|e| panic!("stream: {e}"));
        let info = stream.info().await.unwrap_or_else(|e| panic!("stream info: {e}"));
        let replicas = info.cluster.as_ref().map(|c| c.replicas.as_slice()).unwrap_or_default();
        if replicas.iter().any(|peer| peer.name == killed && peer.current && !peer.offline) {
            break;
        }
        assert!(Instant::now() < deadline, "{killed} did not catch up in 30 s: {replicas:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_journal_entries_read_back_replay_to_the_state_of_their_entries() {
    let cluster = Cluster::start();
    let mut stream = stream(&cluster, 11).await;
    // The workload runs an engine on a runtime of its own.
    let entries = tokio::task::spawn_blocking(|| common::workload_entries(23, 150)).await;
    let entries = entries.unwrap_or_else(|e| panic!("workload: {e}"));
    let mut writer = PartitionWriter::new("a");
    let tail = stream.tail().await.unwrap_or_else(|e| panic!("tail: {e}"));
    let claim = writer.claim(tail);
    assert_eq!(claimed(&mut writer, tail, stream.append(&claim).await), Claimed::Owner(1));
    let start = Instant::now();
    for batch in entries.chunks(7) {
        let encoded: Vec<Vec<u8>> = batch.iter().map(|e| encode_entry(e).unwrap_or_else(|e| panic!("{e}"))).collect();
        let payload = batch_payload(&encoded).unwrap_or_else(|| panic!("a batch too large"));
        let acknowledged = append_until_answered(&stream, &mut writer, payload, start).await;
        assert!(acknowledged.is_some(), "a batch was not acknowledged");
    }
    let tail = stream.tail().await.unwrap_or_else(|e| panic!("tail: {e}"));
    let records = stream.records(1, tail.last_seq).await.unwrap_or_else(|e| panic!("records: {e}"));
    let mut state = Recovered::default();
    let replayed = replay(records, &mut state).unwrap_or_else(|e| panic!("replay: {e}"));
    assert_eq!(replayed.entries, entries.len() as u64);
    assert_eq!(replayed.owner, Some(("a".to_owned(), 1)));
    assert_eq!(state.to_snapshot(), common::replayed(&entries));
}
