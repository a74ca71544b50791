//! The fence of a partition's stream (`leasehold_persistence::fence`) under a seeded scheduler.
//! Three nodes contend for one partition of three seats. Any node that does not own it may claim
//! it at any moment, as a node does when it thinks the owner is dead. The model stream behaves
//! as JetStream does: compare-and-set appends and message-id deduplication. The network
//! delivers appends late, out of order, twice, or not at all, loses their answers, and nodes
//! crash with appends in flight.
//!
//! After every step the checkers hold:
//! 1. the journal audit: epochs only grow, and every batch belongs to the latest epoch before it;
//! 2. no over-allocation: the stream, replayed, never holds more leases than seats;
//! 3. no acknowledged change lost: every batch a node acknowledged is in the stream;
//! 4. an owner with nothing in flight or waiting holds exactly the state the stream replays to.
//!
//! With the fence removed (the stream ignores the expected sequence) the same scheduler breaks
//! them, which shows that the checkers can fail.

use leasehold_persistence::fence::{Append, Claimed, PartitionWriter, Progress, Record, Stored, Tail};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};

const SEATS: usize = 3;
const NODES: usize = 3;
/// How long a node retries a timed-out append.
const APPEND_TIMEOUT_MS: u64 = 40;

/// A change of the partition's state, as a batch carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Change {
    Grant(u64),
    Release(u64),
}

/// One JetStream stream, as far as the fence relies on it: an append is stored only when the
/// stream ends at the sequence it expects, and an id already stored answers with its sequence.
struct ModelStream {
    records: Vec<Record>,
    ids: HashMap<String, u64>,
    /// Whether appends are compare-and-set. Without it, they are stored wherever the stream ends
    /// (the fence removed).
    fenced: bool,
}

impl ModelStream {
    fn store(&mut self, append: &Append) -> Stored {
        if let Some(seq) = self.ids.get(&append.msg_id) {
            return Stored::At(*seq);
        }
        if self.fenced && append.expected_last_seq != self.records.len() as u64 {
            return Stored::WrongLastSequence;
        }
        self.records.push(append.record.clone());
        let seq = self.records.len() as u64;
        self.ids.insert(append.msg_id.clone(), seq);
        Stored::At(seq)
    }

    fn tail(&self) -> Tail {
        let epoch = self
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Epoch { epoch, .. } => Some(*epoch),
                Record::Batch { .. } => None,
            })
            .max()
            .unwrap_or(0);
        Tail { last_seq: self.records.len() as u64, epoch }
    }

    /// The live leases the stream replays to.
    fn replay(&self) -> BTreeSet<u64> {
        let mut live = BTreeSet::new();
        for record in &self.records {
            if let Record::Batch { payload, .. } = record {
                for change in decode(payload) {
                    apply(&mut live, change);
                }
            }
        }
        live
    }
}

fn decode(payload: &[u8]) -> Vec<Change> {
    serde_json::from_slice(payload).unwrap_or_else(|e| panic!("a batch that does not decode: {e}"))
}

fn apply(live: &mut BTreeSet<u64>, change: Change) {
    match change {
        Change::Grant(lease) => live.insert(lease),
        Change::Release(lease) => live.remove(&lease),
    };
}

/// An append on its way to the stream, and whose answer goes where.
struct Sent {
    node: usize,
    /// The node's incarnation that sent it: a crashed node's answers go nowhere.
    incarnation: u64,
    epoch: u64,
    /// 0 for a claim.
    batch: u64,
    append: Append,
}

struct Node {
    name: String,
    incarnation: u64,
    writer: PartitionWriter,
    /// The partition's state as this node holds it: what it rebuilt when it claimed, with the
    /// changes it decided since.
    live: BTreeSet<u64>,
    /// Changes decided while a batch was in flight: the next batch (group commit).
    waiting: Vec<Change>,
}

/// What a run saw, to show that the faults it is meant to survive happened.
#[derive(Debug, Default)]
struct Seen {
    claims_won: u64,
    refusals: u64,
    lost_answers: u64,
    acknowledged: u64,
    crashes: u64,
}

struct Simulation {
    rng: StdRng,
    now_ms: u64,
    stream: ModelStream,
    nodes: Vec<Node>,
    network: Vec<Sent>,
    /// Batches acknowledged to clients, as `(node, epoch, batch)`.
    acknowledged: HashSet<(String, u64, u64)>,
    next_lease: u64,
    seen: Seen,
}

impl Simulation {
    fn new(seed: u64, fenced: bool) -> Self {
        let nodes = (0..NODES)
            .map(|i| {
                let name = format!("node-{i}");
                let writer = PartitionWriter::new(name.clone());
                Node { writer, name, incarnation: 0, live: BTreeSet::new(), waiting: Vec::new() }
            })
            .collect();
        Simulation {
            rng: StdRng::seed_from_u64(seed),
            now_ms: 0,
            stream: ModelStream { records: Vec::new(), ids: HashMap::new(), fenced },
            nodes,
            network: Vec::new(),
            acknowledged: HashSet::new(),
            next_lease: 1,
            seen: Seen::default(),
        }
    }

    fn step(&mut self) {
        self.now_ms += self.rng.gen_range(0..5);
        let node = self.rng.gen_range(0..NODES);
        match self.rng.gen_range(0..100) {
            0..=7 => self.claim(node),
            8..=39 => self.request(node),
            40..=97 => self.deliver(),
            _ => self.crash(node),
        }
    }

    /// Node `n`, owning nothing, rebuilds the partition from the stream and claims it.
    fn claim(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if node.writer.epoch().is_some() {
            return;
        }
        node.live = self.stream.replay();
        node.waiting.clear();
        let tail = self.stream.tail();
        let append = node.writer.claim(tail);
        let sent = Sent { node: n, incarnation: node.incarnation, epoch: tail.epoch + 1, batch: 0, append };
        self.network.push(sent);
    }

    /// Node `n`, if it owns the partition, decides a request against its state; the change goes
    /// out with the next batch.
    fn request(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if node.writer.epoch().is_none() {
            return;
        }
        let change = match node.live.iter().nth(self.rng.gen_range(0..SEATS + 1)) {
            Some(lease) if node.live.len() == SEATS || self.rng.gen_bool(0.3) => Change::Release(*lease),
            _ if node.live.len() < SEATS => {
                self.next_lease += 1;
                Change::Grant(self.next_lease)
            }
            _ => return,
        };
        apply(&mut node.live, change);
        node.waiting.push(change);
        self.flush(n);
    }

    /// Node `n` sends what waits as its next batch, unless a batch is in flight.
    fn flush(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        let Some(epoch) = node.writer.epoch() else { return };
        if node.writer.in_flight() || node.waiting.is_empty() {
            return;
        }
        let payload = serde_json::to_vec(&node.waiting).unwrap_or_else(|e| panic!("encode: {e}"));
        let Ok((batch, append)) = node.writer.append(payload, self.now_ms, APPEND_TIMEOUT_MS) else { return };
        node.waiting.clear();
        self.network.push(Sent { node: n, incarnation: node.incarnation, epoch, batch, append });
    }

    /// One append reaches the stream (or is lost), and its answer reaches its node (or not).
    fn deliver(&mut self) {
        if self.network.is_empty() {
            return;
        }
        // Mostly the oldest (a connection delivers in order), sometimes any: retries and
        // reconnections reorder.
        let index = if self.rng.gen_bool(0.8) { 0 } else { self.rng.gen_range(0..self.network.len()) };
        let sent = self.network.remove(index);
        let answer = match self.rng.gen_range(0..100) {
            0..=79 => self.stream.store(&sent.append),
            80..=89 => {
                // Stored, but the answer is lost.
                self.stream.store(&sent.append);
                Stored::TimedOut
            }
            _ => Stored::TimedOut,
        };
        if answer == Stored::TimedOut {
            self.seen.lost_answers += 1;
        }
        if answer == Stored::WrongLastSequence {
            self.seen.refusals += 1;
        }
        let node = &mut self.nodes[sent.node];
        if node.incarnation != sent.incarnation {
            return;
        }
        if sent.batch == 0 {
            match node.writer.claimed(sent.epoch, answer) {
                Claimed::Owner(_) => self.seen.claims_won += 1,
                Claimed::Retry(append) => self.network.push(Sent { append, ..sent }),
                Claimed::Refused | Claimed::Ignored => {}
            }
            return;
        }
        match node.writer.stored(sent.epoch, sent.batch, answer, self.now_ms) {
            Progress::Acknowledged(batch) => {
                self.seen.acknowledged += 1;
                self.acknowledged.insert((node.name.clone(), sent.epoch, batch));
                self.flush(sent.node);
            }
            Progress::Retry(append) => self.network.push(Sent { append, ..sent }),
            // The state it holds may have changes the stream has not: it is rebuilt at the next
            // claim, and what waited is refused.
            Progress::Lost(_) => {
                node.live.clear();
                node.waiting.clear();
            }
            Progress::Ignored => {}
        }
    }

    /// Node `n` is killed and restarts with nothing: its appends in flight may still arrive.
    fn crash(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        node.incarnation += 1;
        node.writer = PartitionWriter::new(node.name.clone());
        node.live.clear();
        node.waiting.clear();
        self.seen.crashes += 1;
    }

    /// The four checkers of the module comment; the first one broken, if any.
    fn check(&self) -> Result<(), String> {
        let mut owner: Option<(&str, u64)> = None;
        let mut stored = HashSet::new();
        for (seq, record) in (1..).zip(&self.stream.records) {
            match record {
                Record::Epoch { node, epoch } => {
                    if owner.is_some_and(|(_, before)| *epoch <= before) {
                        return Err(format!("entry {seq}: epoch {epoch} does not follow epoch {owner:?}"));
                    }
                    owner = Some((node, *epoch));
                }
                Record::Batch { node, epoch, batch, .. } => {
                    if owner != Some((node.as_str(), *epoch)) {
                        return Err(format!("entry {seq}: a batch of {node} at epoch {epoch} after {owner:?}"));
                    }
                    stored.insert((node.clone(), *epoch, *batch));
                }
            }
        }
        if let Some(seq) = over_allocation(&self.stream) {
            return Err(format!("entry {seq}: more leases than the {SEATS} seats"));
        }
        let live = self.stream.replay();
        if let Some(lost) = self.acknowledged.iter().find(|batch| !stored.contains(*batch)) {
            return Err(format!("batch {lost:?} was acknowledged and is not in the stream"));
        }
        for node in &self.nodes {
            let current = node.writer.epoch().is_some_and(|epoch| owner == Some((node.name.as_str(), epoch)));
            if current && !node.writer.in_flight() && node.waiting.is_empty() && node.live != live {
                return Err(format!("{} holds {:?}, the stream replays to {live:?}", node.name, node.live));
            }
        }
        Ok(())
    }

    fn run(&mut self, steps: usize) -> Result<(), String> {
        for step in 0..steps {
            self.step();
            self.check().map_err(|broken| format!("step {step}: {broken}"))?;
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn fenced_appends_keep_every_checker(seed in any::<u64>()) {
        let mut simulation = Simulation::new(seed, true);
        let outcome = simulation.run(600);
        prop_assert!(outcome.is_ok(), "seed {seed}: {outcome:?}");
    }
}

#[test]
fn the_runs_meet_the_faults_the_fence_is_for() {
    let mut total = Seen::default();
    for seed in 0..64 {
        let mut simulation = Simulation::new(seed, true);
        simulation.run(600).unwrap_or_else(|broken| panic!("seed {seed}: {broken}"));
        let seen = simulation.seen;
        total.claims_won += seen.claims_won;
        total.refusals += seen.refusals;
        total.lost_answers += seen.lost_answers;
        total.acknowledged += seen.acknowledged;
        total.crashes += seen.crashes;
    }
    assert!(total.claims_won > 200, "too few take-overs: {total:?}");
    assert!(total.refusals > 200, "too few fenced appends: {total:?}");
    assert!(total.lost_answers > 1_000, "too few lost answers: {total:?}");
    assert!(total.acknowledged > 2_000, "too few acknowledged batches: {total:?}");
    assert!(total.crashes > 50, "too few crashes: {total:?}");
}

#[test]
fn without_the_fence_the_checkers_find_foreign_batches_and_over_allocation() {
    let (mut foreign, mut over_allocated) = (0, 0);
    for seed in 0..64 {
        let mut simulation = Simulation::new(seed, false);
        let (mut found_foreign, mut found_over_allocation) = (false, false);
        for _ in 0..600 {
            simulation.step();
            found_foreign |= simulation.check().is_err_and(|broken| broken.contains("a batch of"));
            found_over_allocation |= over_allocation(&simulation.stream).is_some();
        }
        foreign += u32::from(found_foreign);
        over_allocated += u32::from(found_over_allocation);
    }
    assert!(foreign > 0, "no run appended after a foreign epoch without the fence");
    assert!(over_allocated > 0, "no run over-allocated without the fence");
}

/// The first entry at which replaying the stream holds more leases than seats, if any.
fn over_allocation(stream: &ModelStream) -> Option<u64> {
    let mut live = BTreeSet::new();
    for (seq, record) in (1..).zip(&stream.records) {
        if let Record::Batch { payload, .. } = record {
            for change in decode(payload) {
                apply(&mut live, change);
                if live.len() > SEATS {
                    return Some(seq);
                }
            }
        }
    }
    None
}
