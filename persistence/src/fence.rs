//! Fenced ownership of a partition's stream (SPEC section 14; the design is
//! `design/CLUSTER.md`): how a node takes a partition, appends its group-commit batches, learns
//! that it lost the partition, and replays the stream ([`replay`], which audits it). No I/O here: [`PartitionWriter`] says what to append and is
//! told what the stream answered, so a deterministic simulation drives it exactly as a real
//! stream does (`tests/fence_simulation.rs`).
//!
//! A partition's history is one stream whose appends are compare-and-set: each carries the
//! sequence number it expects the stream to end at (JetStream's `Nats-Expected-Last-Sequence`)
//! and a message id (`Nats-Msg-Id`). A stream that already holds the id answers with the
//! sequence it stored it at, whatever the expected sequence, so a retried append is stored once;
//! otherwise a stream that ends elsewhere refuses the append (JetStream error 10071).
//!
//! - **Taking over.** Read the stream's tail (its last sequence `L` and its highest epoch `e`),
//!   append `Epoch { node, e + 1 }` expecting `L`. Once it is stored, every later append of the
//!   previous owner expects a sequence at or before `L` and is refused: that refusal is the
//!   fence. Two nodes claiming at once cannot both succeed: both expect `L`.
//! - **Appending.** One batch at a time, under the id `node:epoch:batch`, expecting the sequence
//!   of this node's last stored record: a sequence that only this node's own record can hold, so
//!   any foreign record after it makes the append fail. The journal gathers what is decided
//!   meanwhile into the next batch (group commit), so one batch in flight costs batching, not
//!   changes. A batch is acknowledged, and its requests answered, once the stream stored it.
//! - **Losing.** A refused append means another node claimed the partition, so the node's
//!   memory may hold changes the stream does not: the writer gives the partition up and reports
//!   the batch in flight as lost; the node rebuilds the partition from the stream before it
//!   claims it again.
//! - **Timeouts.** An append with no answer may or may not be stored. It is sent again as it was
//!   until its deadline; past it the writer gives up as above. The expected sequence alone keeps
//!   a retry from being stored twice; the id turns the retry of a stored append into its
//!   acknowledgement rather than a refusal (within the stream's duplicate window, so the
//!   deadline must be shorter than that window).
//!
//! Why not several batches in flight: each would expect a *predicted* sequence, and when one
//! never arrives, the next one's predicted sequence can be the very sequence a foreign claim took
//! (the simulation found it at once). JetStream's `Nats-Expected-Last-Msg-Id` would chain them,
//! but nats-server 2.15.1 does not carry the last message id through a replica's catch-up: a
//! restarted replica then refuses the next chained append with a critical write error and drops
//! out of the stream (`tests/jetstream_stream.rs` met it).

use crate::format::decode_batch_entries;
use crate::FormatError;
use leasehold_engine::replay::Recovered;
use serde::{Deserialize, Serialize};

/// A record of a partition's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// `node` owns the partition from this record on, at `epoch` (higher than any before).
    Epoch {
        /// The owner.
        node: String,
        /// Its epoch.
        epoch: u64,
    },
    /// One group-commit batch of the owner at `epoch`: `payload` is the batch as the journal
    /// encodes it.
    Batch {
        /// The owner that appended it.
        node: String,
        /// The owner's epoch.
        epoch: u64,
        /// Its number among the owner's batches of that epoch, from 1.
        batch: u64,
        /// The entries.
        payload: Vec<u8>,
    },
}

/// An append for the stream to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append {
    /// The sequence number the stream must end at for the append to be stored.
    pub expected_last_seq: u64,
    /// The id that makes a retry of this append a no-op.
    pub msg_id: String,
    /// What to store.
    pub record: Record,
}

/// What the stream answered to an [`Append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored at this sequence number (now, or earlier under the same id).
    At(u64),
    /// Refused: the stream does not end at the expected sequence.
    WrongLastSequence,
    /// No answer in time: it may or may not be stored.
    TimedOut,
}

/// What a node reads from a partition's stream before claiming it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tail {
    /// The stream's last sequence number (0 when it is empty).
    pub last_seq: u64,
    /// The highest epoch claimed in it (0 when none was).
    pub epoch: u64,
}

/// The id of an append: unique per node, epoch and batch (batch 0 is the epoch's claim).
pub fn msg_id(node: &str, epoch: u64, batch: u64) -> String {
    format!("{node}:{epoch}:{batch}")
}

/// What a writer's claim came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// The partition is this node's, at this epoch.
    Owner(u64),
    /// Send the claim again (its answer timed out).
    Retry(Append),
    /// Another node claimed first (or the stream moved): read the tail again before another try.
    Refused,
    /// An answer to a claim this writer is no longer making: nothing changes.
    Ignored,
}

/// What a batch's answer came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The batch is stored: answer its requests.
    Acknowledged(u64),
    /// Send this append again (its answer timed out).
    Retry(Append),
    /// The partition is lost: the batch in flight, if any, is not acknowledged and never will be
    /// (it may be stored). Rebuild from the stream before claiming again.
    Lost(Option<u64>),
    /// An answer to a batch that is not the one in flight (of an epoch this writer no longer
    /// holds, or acknowledged already): nothing changes.
    Ignored,
}

/// Why a writer cannot append now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CannotAppend {
    /// This node does not own the partition.
    #[error("this node does not own the partition")]
    NotOwner,
    /// A batch is in flight: gather the next one until it is answered.
    #[error("a batch is in flight")]
    InFlight,
}

/// One node's writer of one partition's stream.
#[derive(Debug)]
pub struct PartitionWriter {
    node: String,
    state: State,
}

#[derive(Debug)]
enum State {
    NotOwner,
    Claiming { epoch: u64, append: Append },
    Owner(Owner),
}

#[derive(Debug)]
struct Owner {
    epoch: u64,
    next_batch: u64,
    /// The sequence of this node's last stored record: the next batch expects it.
    last_seq: u64,
    in_flight: Option<InFlight>,
}

#[derive(Debug)]
struct InFlight {
    batch: u64,
    append: Append,
    /// The time (in the caller's milliseconds) after which a timed-out append is given up.
    deadline_ms: u64,
}

impl PartitionWriter {
    /// The writer of `node`, owning nothing.
    pub fn new(node: impl Into<String>) -> Self {
        PartitionWriter { node: node.into(), state: State::NotOwner }
    }

    /// The epoch this node owns the partition at, if it does.
    pub fn epoch(&self) -> Option<u64> {
        match &self.state {
            State::Owner(owner) => Some(owner.epoch),
            State::NotOwner | State::Claiming { .. } => None,
        }
    }

    /// The sequence of the last record this node stored as the owner, if it owns the partition.
    pub fn last_seq(&self) -> Option<u64> {
        match &self.state {
            State::Owner(owner) => Some(owner.last_seq),
            State::NotOwner | State::Claiming { .. } => None,
        }
    }

    /// Whether a batch is sent and not answered.
    pub fn in_flight(&self) -> bool {
        match &self.state {
            State::Owner(owner) => owner.in_flight.is_some(),
            State::NotOwner | State::Claiming { .. } => false,
        }
    }

    /// The claim to append after reading `tail` (and rebuilding the partition's state up to
    /// it): the next epoch, expecting the stream to end where it was read. Whatever this node
    /// held before is given up.
    pub fn claim(&mut self, tail: Tail) -> Append {
        let epoch = tail.epoch + 1;
        let append = Append {
            expected_last_seq: tail.last_seq,
            msg_id: msg_id(&self.node, epoch, 0),
            record: Record::Epoch { node: self.node.clone(), epoch },
        };
        self.state = State::Claiming { epoch, append: append.clone() };
        append
    }

    /// Takes the stream's answer to the claim of `claimed_epoch`.
    pub fn claimed(&mut self, claimed_epoch: u64, answer: Stored) -> Claimed {
        let State::Claiming { epoch, append } = &self.state else { return Claimed::Ignored };
        if *epoch != claimed_epoch {
            return Claimed::Ignored;
        }
        match answer {
            Stored::At(seq) if seq == append.expected_last_seq + 1 => {
                let epoch = *epoch;
                self.state = State::Owner(Owner { epoch, next_batch: 1, last_seq: seq, in_flight: None });
                Claimed::Owner(epoch)
            }
            Stored::TimedOut => Claimed::Retry(append.clone()),
            // Refused, or stored somewhere it was not meant to be.
            Stored::At(_) | Stored::WrongLastSequence => {
                self.state = State::NotOwner;
                Claimed::Refused
            }
        }
    }

    /// The append of a batch of `payload`, with its number; it must be answered through
    /// [`PartitionWriter::stored`] before its requests are, and before the next batch. `now_ms`
    /// and `timeout_ms` set how long it may be retried.
    pub fn append(&mut self, payload: Vec<u8>, now_ms: u64, timeout_ms: u64) -> Result<(u64, Append), CannotAppend> {
        let State::Owner(owner) = &mut self.state else { return Err(CannotAppend::NotOwner) };
        if owner.in_flight.is_some() {
            return Err(CannotAppend::InFlight);
        }
        let batch = owner.next_batch;
        let append = Append {
            expected_last_seq: owner.last_seq,
            msg_id: msg_id(&self.node, owner.epoch, batch),
            record: Record::Batch { node: self.node.clone(), epoch: owner.epoch, batch, payload },
        };
        owner.next_batch += 1;
        owner.in_flight =
            Some(InFlight { batch, append: append.clone(), deadline_ms: now_ms.saturating_add(timeout_ms) });
        Ok((batch, append))
    }

    /// Takes the stream's answer to batch `batch` of `epoch`, at `now_ms`.
    pub fn stored(&mut self, epoch: u64, batch: u64, answer: Stored, now_ms: u64) -> Progress {
        let State::Owner(owner) = &mut self.state else { return Progress::Ignored };
        let Some(sent) = owner.in_flight.as_ref().filter(|sent| owner.epoch == epoch && sent.batch == batch) else {
            return Progress::Ignored;
        };
        match answer {
            Stored::At(seq) if seq == sent.append.expected_last_seq + 1 => {
                owner.last_seq = seq;
                owner.in_flight = None;
                Progress::Acknowledged(batch)
            }
            Stored::TimedOut if now_ms < sent.deadline_ms => Progress::Retry(sent.append.clone()),
            // Refused, stored somewhere it was not meant to be, or out of time.
            Stored::At(_) | Stored::WrongLastSequence | Stored::TimedOut => self.give_up(),
        }
    }

    /// Gives the partition up: the batch in flight, if any, is lost.
    pub fn give_up(&mut self) -> Progress {
        let lost = match std::mem::replace(&mut self.state, State::NotOwner) {
            State::Owner(owner) => owner.in_flight.map(|sent| sent.batch),
            State::NotOwner | State::Claiming { .. } => None,
        };
        Progress::Lost(lost)
    }
}

/// Why a partition's stream cannot be replayed: it breaks the rules the fence keeps (the journal
/// audit of `design/CLUSTER.md`), or a batch does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// A claim's epoch is not above the one before it.
    #[error("record {seq}: epoch {epoch} does not follow epoch {before}")]
    EpochNotAfter {
        /// The claim's sequence number.
        seq: u64,
        /// Its epoch.
        epoch: u64,
        /// The epoch before it.
        before: u64,
    },
    /// A batch that is not the next one of the partition's owner at that point.
    #[error("record {seq}: batch {batch} of {node} at epoch {epoch} does not follow {after}")]
    OutOfTurn {
        /// The batch's sequence number.
        seq: u64,
        /// Its node.
        node: String,
        /// Its epoch.
        epoch: u64,
        /// Its number.
        batch: u64,
        /// What came before it: the owner's claim or batch, or nothing.
        after: String,
    },
    /// A batch whose entries do not decode.
    #[error("record {seq}: {reason}")]
    Damaged {
        /// The batch's sequence number.
        seq: u64,
        /// What is wrong with it.
        reason: FormatError,
    },
}

/// Where a replay of a partition's stream ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    /// The owner at the end, with its epoch.
    pub owner: Option<(String, u64)>,
    /// The last sequence number replayed.
    pub last_seq: u64,
    /// Journal entries applied.
    pub entries: u64,
}

/// Folds the records of a partition's stream, in order, into `state`, checking on the way what
/// the fence guarantees: epochs only grow, and each batch is the next one of the owner of the
/// latest claim before it (numbered from 1, one after the other). The first record that breaks
/// this stops the replay: such a stream was not written under the fence, and a state built from
/// it could grant what was never acknowledged.
pub fn replay(records: impl IntoIterator<Item = (u64, Record)>, state: &mut Recovered) -> Result<Replayed, AuditError> {
    let mut replayed = Replayed::default();
    let mut last_batch = 0;
    for (seq, record) in records {
        match record {
            Record::Epoch { node, epoch } => {
                let before = replayed.owner.as_ref().map_or(0, |(_, e)| *e);
                if epoch <= before {
                    return Err(AuditError::EpochNotAfter { seq, epoch, before });
                }
                replayed.owner = Some((node, epoch));
                last_batch = 0;
            }
            Record::Batch { node, epoch, batch, payload } => {
                let owners = replayed.owner.as_ref().is_some_and(|(owner, e)| *owner == node && *e == epoch);
                if !owners || batch != last_batch + 1 {
                    let after = match &replayed.owner {
                        Some((owner, e)) if last_batch == 0 => format!("the claim of {owner} at epoch {e}"),
                        Some((owner, e)) => format!("batch {last_batch} of {owner} at epoch {e}"),
                        None => "no claim".to_owned(),
                    };
                    return Err(AuditError::OutOfTurn { seq, node, epoch, batch, after });
                }
                let entries = decode_batch_entries(&payload).map_err(|reason| AuditError::Damaged { seq, reason })?;
                for entry in &entries {
                    state.apply(entry);
                }
                replayed.entries += entries.len() as u64;
                last_batch = batch;
            }
        }
        replayed.last_seq = seq;
    }
    Ok(replayed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner_at(tail: Tail) -> PartitionWriter {
        let mut writer = PartitionWriter::new("a");
        let claim = writer.claim(tail);
        assert_eq!(
            writer.claimed(tail.epoch + 1, Stored::At(claim.expected_last_seq + 1)),
            Claimed::Owner(tail.epoch + 1)
        );
        writer
    }

    #[test]
    fn a_claim_expects_the_tail_it_read_and_takes_the_next_epoch() {
        let mut writer = PartitionWriter::new("a");
        let claim = writer.claim(Tail { last_seq: 7, epoch: 3 });
        assert_eq!(claim.expected_last_seq, 7);
        assert_eq!(claim.msg_id, "a:4:0");
        assert_eq!(claim.record, Record::Epoch { node: "a".into(), epoch: 4 });
        assert_eq!(writer.claimed(4, Stored::TimedOut), Claimed::Retry(claim));
        assert_eq!(writer.claimed(3, Stored::At(8)), Claimed::Ignored, "an answer to another claim");
        assert_eq!(writer.claimed(4, Stored::WrongLastSequence), Claimed::Refused);
        assert_eq!(writer.append(vec![], 0, 10), Err(CannotAppend::NotOwner));
    }

    #[test]
    fn each_batch_expects_the_nodes_last_stored_record_and_waits_for_the_one_before() {
        let mut writer = owner_at(Tail { last_seq: 7, epoch: 3 });
        let (one, first) = writer.append(vec![1], 0, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((first.expected_last_seq, first.msg_id.as_str()), (8, "a:4:1"));
        assert_eq!(writer.append(vec![2], 0, 10), Err(CannotAppend::InFlight));
        assert_eq!(writer.stored(4, one, Stored::TimedOut, 1), Progress::Retry(first));
        assert_eq!(writer.stored(3, one, Stored::At(9), 1), Progress::Ignored, "an answer of another epoch");
        assert_eq!(writer.stored(4, one, Stored::At(9), 2), Progress::Acknowledged(one));
        assert_eq!(writer.stored(4, one, Stored::At(9), 2), Progress::Ignored, "acknowledged already");
        let (two, second) = writer.append(vec![2], 2, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((second.expected_last_seq, second.msg_id.as_str()), (9, "a:4:2"));
        assert_eq!(writer.stored(4, two, Stored::At(10), 3), Progress::Acknowledged(two));
        assert!(!writer.in_flight());
    }

    #[test]
    fn a_refusal_or_a_timeout_past_its_deadline_loses_the_partition() {
        let mut writer = owner_at(Tail::default());
        let (one, _) = writer.append(vec![1], 0, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(writer.stored(1, one, Stored::WrongLastSequence, 1), Progress::Lost(Some(one)));
        assert_eq!(writer.epoch(), None);

        let mut writer = owner_at(Tail::default());
        let (one, _) = writer.append(vec![1], 0, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(writer.stored(1, one, Stored::TimedOut, 10), Progress::Lost(Some(one)));
    }

    #[test]
    fn a_batch_stored_where_it_was_not_expected_is_not_acknowledged() {
        let mut writer = owner_at(Tail::default());
        let (one, _) = writer.append(vec![1], 0, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(writer.stored(1, one, Stored::At(5), 1), Progress::Lost(Some(one)));
    }
}
