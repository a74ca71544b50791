//! Replaying a partition's stream (`fence::replay`): the state of the batches the fence stored is
//! exactly the state of their entries, and a stream that breaks the fence's rules (a batch after
//! another node's claim, an epoch going back, a damaged batch) is refused, not replayed.

mod common;

use common::{replayed, workload_entries};
use leasehold_engine::replay::Recovered;
use leasehold_persistence::fence::{replay, AuditError, Claimed, PartitionWriter, Progress, Record, Stored, Tail};
use leasehold_persistence::format::{batch_payload, encode_entry};
use rand::{Rng, SeedableRng};

/// The records `entries` make when `node` claims a stream holding `records` and appends them in
/// batches of random sizes, each stored as the fence asks.
fn claim_and_append(
    records: &mut Vec<(u64, Record)>,
    node: &str,
    entries: &[leasehold_engine::journal::JournalEntry],
    seed: u64,
) {
    let mut writer = PartitionWriter::new(node);
    let epoch = records
        .iter()
        .filter_map(|(_, r)| match r {
            Record::Epoch { epoch, .. } => Some(*epoch),
            Record::Batch { .. } => None,
        })
        .max()
        .unwrap_or(0);
    let tail = Tail { last_seq: records.len() as u64, epoch };
    let store = |records: &mut Vec<(u64, Record)>, record: Record| {
        let seq = records.len() as u64 + 1;
        records.push((seq, record));
        Stored::At(seq)
    };
    let claim = writer.claim(tail);
    let answer = store(records, claim.record);
    assert_eq!(writer.claimed(epoch + 1, answer), Claimed::Owner(epoch + 1));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut rest = entries;
    while !rest.is_empty() {
        let (batch, tail) = rest.split_at(rng.gen_range(1..=rest.len().min(4)));
        rest = tail;
        let encoded: Vec<Vec<u8>> = batch.iter().map(|e| encode_entry(e).unwrap_or_else(|e| panic!("{e}"))).collect();
        let payload = batch_payload(&encoded).unwrap_or_else(|| panic!("a batch too large"));
        let (number, append) = writer.append(payload, 0, 1_000).unwrap_or_else(|e| panic!("{e}"));
        let answer = store(records, append.record);
        assert_eq!(writer.stored(epoch + 1, number, answer, 0), Progress::Acknowledged(number));
    }
}

#[test]
fn the_batches_of_successive_owners_replay_to_the_state_of_their_entries() {
    let entries = workload_entries(17, 300);
    let (first, second) = entries.split_at(entries.len() / 2);
    let mut records = Vec::new();
    claim_and_append(&mut records, "a", first, 1);
    claim_and_append(&mut records, "b", second, 2);
    let mut state = Recovered::default();
    let done = replay(records.clone(), &mut state).unwrap_or_else(|e| panic!("replay: {e}"));
    assert_eq!(done.owner, Some(("b".to_owned(), 2)));
    assert_eq!((done.entries, done.last_seq), (entries.len() as u64, records.len() as u64));
    assert_eq!(state.to_snapshot(), replayed(&entries));
}

#[test]
fn a_stream_that_breaks_the_fence_is_refused() {
    let entries = workload_entries(5, 60);
    let mut records = Vec::new();
    claim_and_append(&mut records, "a", &entries[..20], 1);
    claim_and_append(&mut records, "b", &entries[20..], 2);
    let a_batch = records.iter().find(|(_, r)| matches!(r, Record::Batch { node, .. } if node == "a")).cloned();
    let (_, a_batch) = a_batch.unwrap_or_else(|| panic!("no batch of a"));

    // A batch of the old owner after the new owner's claim.
    let mut foreign = records.clone();
    foreign.push((foreign.len() as u64 + 1, a_batch));
    let refused = replay(foreign, &mut Recovered::default());
    assert!(matches!(refused, Err(AuditError::OutOfTurn { ref node, .. }) if node == "a"), "{refused:?}");

    // A claim whose epoch goes back.
    let mut back = records.clone();
    back.push((back.len() as u64 + 1, Record::Epoch { node: "c".into(), epoch: 1 }));
    let refused = replay(back, &mut Recovered::default());
    assert!(matches!(refused, Err(AuditError::EpochNotAfter { epoch: 1, before: 2, .. })), "{refused:?}");

    // A batch skipped.
    let mut skipped = records.clone();
    let second_batch = skipped.iter().position(|(_, r)| matches!(r, Record::Batch { batch: 2, .. }));
    skipped.remove(second_batch.unwrap_or_else(|| panic!("no second batch")));
    let refused = replay(skipped, &mut Recovered::default());
    assert!(matches!(refused, Err(AuditError::OutOfTurn { batch: 3, .. })), "{refused:?}");

    // A batch whose entries do not decode.
    let mut damaged = records;
    if let Some((_, Record::Batch { payload, .. })) =
        damaged.iter_mut().find(|(_, r)| matches!(r, Record::Batch { .. }))
    {
        payload.truncate(payload.len() - 1);
    }
    let refused = replay(damaged, &mut Recovered::default());
    assert!(matches!(refused, Err(AuditError::Damaged { .. })), "{refused:?}");
}
