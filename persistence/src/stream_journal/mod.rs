//! [`StreamJournal`]: the engine's [`Journal`] on NATS JetStream (SPEC section 14,
//! `design/CLUSTER.md`). Each license's changes go to its partition's stream; the directory's
//! changes and the creation of licenses go to the directory's stream; each event goes with the
//! change it tells of. Every stream is fenced ([`crate::fence`]) and written by one group-commit
//! writer of the node that owns it.
//!
//! Opening the journal reads every stream and replays it (the directory's first: its license
//! creations come before their licenses' changes). A node alone then claims every stream: from
//! then on an append of any node that held one before is refused. A node of a cluster
//! ([`StreamJournalConfig::cluster`]) claims only the streams preferred for it among the live
//! nodes ([`crate::membership`]), takes over those of a node that died, hands its own over when
//! another node is preferred, and follows the directory's stream while another node writes it
//! (`cluster.rs`). A change is answered once its batch is stored, that is once JetStream's quorum
//! has it.
//!
//! When a batch is refused (another node claimed the stream) or stays unanswered past its
//! deadline, the changes of that batch and of every one queued behind it are lost: they were
//! applied in their licenses' memory, so those licenses answer nothing ([`Journal::rebuild`])
//! until their partition is read back. Read back, each license continues from what the stream
//! holds; the partition is claimed again unless another node holds it. A node whose directory
//! batch was lost takes no directory change until it restarts: its directory in memory holds a
//! change the stream does not, and only a fresh replay drops it.

mod cluster;
mod queue;

pub use cluster::{ClusterChange, ClusterNode};

use crate::fence::{replay, Claimed, PartitionWriter, Progress, Record, Replayed, Stored, Tail};
use crate::format::{batch_payload, encode_entry};
use crate::jetstream::{PartitionStream, StreamError, StreamName};
use leasehold_engine::decide::LicenseState;
use leasehold_engine::ids::{LeaseId, LicenseId};
use leasehold_engine::journal::{Change, Durability, Journal, JournalEntry, JournalError};
use leasehold_engine::metrics::Histogram;
use leasehold_engine::replay::Recovered;
use leasehold_engine::time::Timestamp;
use queue::{Losses, Mode, Pending, Queue};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How often the client pings its NATS server.
const SERVER_PING_EVERY: Duration = Duration::from_millis(500);

/// How long a failed read-back waits before it tries again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// How a [`StreamJournal`] reaches JetStream and names itself.
#[derive(Debug, Clone)]
pub struct StreamJournalConfig {
    /// The NATS servers (`nats://host:port`); the client finds the rest of the cluster itself.
    pub servers: Vec<String>,
    /// This node's name, in its claims and batches: unique in the cluster.
    pub node: String,
    /// How many partitions the licenses are spread over: fixed when the cluster is created.
    pub partitions: u32,
    /// Copies of each stream (3 in a cluster of three or more NATS servers).
    pub replicas: usize,
    /// How long one append waits for its answer before it is sent again.
    pub append_timeout: Duration,
    /// How long a batch is sent again before its partition is given up (shorter than the
    /// streams' two-minute duplicate window, which makes a retry of a stored batch harmless).
    pub give_up_after: Duration,
    /// Changes a stream's queue holds before appenders wait.
    pub queue_capacity: usize,
    /// How long an appender waits for room in a full queue before the change is refused.
    pub queue_full_wait: Duration,
    /// For a node of a cluster: where others reach it. `None`: a node alone, owning every
    /// stream.
    pub cluster: Option<ClusterNode>,
}

impl StreamJournalConfig {
    /// The defaults for node `node` alone on the NATS servers `servers`.
    pub fn new(servers: Vec<String>, node: impl Into<String>) -> Self {
        StreamJournalConfig {
            servers,
            node: node.into(),
            partitions: 64,
            replicas: 3,
            append_timeout: Duration::from_secs(2),
            give_up_after: Duration::from_secs(30),
            queue_capacity: 65_536,
            queue_full_wait: Duration::from_secs(1),
            cluster: None,
        }
    }
}

/// Why a [`StreamJournal`] could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StreamJournalError {
    /// The configuration cannot work.
    #[error("{0}")]
    Config(String),
    /// The NATS servers could not be reached.
    #[error("cannot connect to NATS at {servers}: {reason}")]
    Connect {
        /// The servers tried.
        servers: String,
        /// Why not.
        reason: String,
    },
    /// A stream could not be created, read or claimed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// A stream breaks the fence's rules, or holds a damaged batch: nothing is built on it.
    #[error("{stream} cannot be replayed: {reason}")]
    Audit {
        /// The stream.
        stream: StreamName,
        /// What is wrong with it.
        reason: crate::fence::AuditError,
    },
    /// Another node kept claiming a stream while this one read it.
    #[error("{0} was claimed by another node while this one read it; try again")]
    Contended(StreamName),
}

/// A stream as this node sees it ([`StreamJournal::streams`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    /// The stream.
    pub name: StreamName,
    /// Its owner as this node last learned it.
    pub owner: Option<String>,
    /// Whether this node writes it now.
    pub written_here: bool,
    /// Whether this node is reading it back to claim it.
    pub reading: bool,
    /// The epoch this node writes it at.
    pub epoch: Option<u64>,
    /// How long this node took to read it back before claiming it (a node alone claims what
    /// it read while opening: none).
    pub read_back_ms: Option<u64>,
}

/// How long after a confirmation that a stream is still this node's the node answers reads of
/// it from memory: below the time a dead node takes to be replaced ([`DEAD_AFTER`]), so that a
/// node paused past it refuses such reads before any other node can have taken the stream.
///
/// [`DEAD_AFTER`]: crate::membership::DEAD_AFTER
pub const READ_LEASE: Duration = Duration::from_millis(1_000);

/// How often a node checks the tail of a stream it writes while nothing is appended to it.
const CONFIRM_IDLE_EVERY: Duration = Duration::from_millis(300);

/// Whether this node writes a stream.
const OWNED: u8 = 0;
/// Another node writes it (or none does yet).
const NOT_OWNED: u8 = 1;
/// This node is reading it back to claim it.
const READING: u8 = 2;

/// What the journal's streams share with their writers.
struct Shared {
    config: StreamJournalConfig,
    /// One queue per partition, then the directory's.
    queues: Vec<Queue>,
    /// Per stream: [`OWNED`], [`NOT_OWNED`] or [`READING`].
    status: Vec<AtomicU8>,
    /// Per stream: its owner as this node last learned it.
    owners: Mutex<Vec<Option<String>>>,
    /// Per stream: the epoch this node claimed it at last.
    epochs: Vec<AtomicU64>,
    /// Per stream: how long this node's last reading of it back took, in milliseconds.
    read_back_ms: Vec<AtomicU64>,
    /// Per stream this node writes: when (in [`Shared::now_ms`]) the last append or tail check
    /// that found the stream still this node's was sent. A paused node that was replaced meanwhile
    /// learns it only at its next append or check: until then, what it answers without writing
    /// (a lease not found, a license's terms) could be stale, so it answers that only within
    /// [`READ_LEASE`] of this.
    confirmed_ms: Vec<AtomicU64>,
    losses: Losses,
    /// The directory's changes were lost once: its memory cannot be trusted until a restart.
    directory_diverged: AtomicBool,
    /// The directory stream's last sequence this node's directory reflects.
    directory_applied: AtomicU64,
    /// Woken whenever `directory_applied` moves.
    directory_moved: tokio::sync::Notify,
    /// Wakes the directory's follower before its next poll.
    directory_wanted: tokio::sync::Notify,
    /// Held while the directory is brought up to its stream's tail (by the follower, or before
    /// a claim), so that no batch is applied twice.
    directory_catch_up: tokio::sync::Mutex<()>,
    /// Set when this node leaves the cluster (asked to, or because its directory diverged).
    leaving: tokio::sync::watch::Sender<bool>,
    /// The nodes heard from: when last (in [`Shared::now_ms`]), and what they announced.
    peers: Mutex<crate::membership::Liveness>,
    append_latency: Arc<Histogram>,
    started: Instant,
}

impl Shared {
    fn directory(&self) -> usize {
        self.config.partitions as usize
    }

    /// Records that this node's directory reflects the directory stream up to `seq`.
    fn directory_applied_to(&self, seq: u64) {
        self.directory_applied.store(seq, Ordering::Release);
        self.directory_moved.notify_waiters();
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn status(&self, index: usize) -> u8 {
        self.status[index].load(Ordering::Acquire)
    }

    fn set_owner(&self, index: usize, owner: Option<String>) {
        self.owners.lock().unwrap_or_else(|p| p.into_inner())[index] = owner;
    }

    fn owner(&self, index: usize) -> Option<String> {
        self.owners.lock().unwrap_or_else(|p| p.into_inner())[index].clone()
    }

    /// Why stream `index` takes no change now; `None` when it does. Asked on every request.
    fn refusal(&self, index: usize) -> Option<JournalError> {
        match self.status(index) {
            OWNED => None,
            READING => {
                Some(JournalError::Poisoned(format!("{} is being read back", name_of(index, self.config.partitions))))
            }
            _ => Some(self.not_owner(index)),
        }
    }

    /// Why this node does not answer a read of stream `index` from memory now (a lease it does
    /// not know, a license's terms); `None` when it does: it writes the stream, and, in a
    /// cluster, found it still its own within [`READ_LEASE`].
    fn read_refusal(&self, index: usize) -> Option<JournalError> {
        if let Some(refused) = self.refusal(index) {
            return Some(refused);
        }
        let confirmed = self.confirmed_ms[index].load(Ordering::Acquire);
        let lease_ms = u64::try_from(READ_LEASE.as_millis()).unwrap_or(u64::MAX);
        (self.config.cluster.is_some() && self.now_ms().saturating_sub(confirmed) >= lease_ms).then(|| {
            JournalError::NotOwner {
                what: format!(
                    "{} for sure (not confirmed for {} ms)",
                    described(name_of(index, self.config.partitions)),
                    lease_ms
                ),
                owner: None,
            }
        })
    }

    /// Records that stream `index` was found still this node's by an append or a check sent at
    /// `sent_ms`.
    fn confirmed(&self, index: usize, sent_ms: u64) {
        self.confirmed_ms[index].fetch_max(sent_ms, Ordering::AcqRel);
    }

    /// That this node does not own stream `index`, naming the owner it last learned.
    fn not_owner(&self, index: usize) -> JournalError {
        JournalError::NotOwner { what: described(name_of(index, self.config.partitions)), owner: self.owner(index) }
    }
}

/// How a stream is named to clients.
fn described(name: StreamName) -> String {
    match name {
        StreamName::Partition(n) => format!("partition {n}"),
        StreamName::Directory => "the directory".to_owned(),
    }
}

fn name_of(index: usize, partitions: u32) -> StreamName {
    match u32::try_from(index) {
        Ok(n) if n < partitions => StreamName::Partition(n),
        _ => StreamName::Directory,
    }
}

/// The engine's journal on JetStream streams, one per partition and one for the directory.
///
/// The NATS client and the writers run on a tokio runtime of their own: the engine's actors only
/// queue changes and wait for their answers.
pub struct StreamJournal {
    shared: Arc<Shared>,
    client: async_nats::Client,
    handle: tokio::runtime::Handle,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    changes: Mutex<Option<mpsc::Receiver<ClusterChange>>>,
}

impl StreamJournal {
    /// Connects to `config.servers` and reads and replays every stream (creating those not
    /// there yet). A node alone then claims every stream; a node of a cluster starts taking
    /// part (see [`StreamJournal::cluster_changes`]). Returns the journal and the state the
    /// streams describe, to start the engine from.
    pub async fn open(config: StreamJournalConfig) -> Result<(StreamJournal, Recovered), StreamJournalError> {
        if config.node.is_empty() || config.node.contains([':', '.', ' ', '*', '>']) {
            return Err(StreamJournalError::Config(format!(
                "node name {:?} must be non-empty, without ':', '.', spaces or wildcards",
                config.node
            )));
        }
        if config.partitions == 0 || config.partitions > leasehold_engine::ids::MAX_PARTITIONS {
            return Err(StreamJournalError::Config(format!(
                "partitions must be between 1 and {}, not {}",
                leasehold_engine::ids::MAX_PARTITIONS,
                config.partitions
            )));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("leasehold-nats")
            .enable_all()
            .build()
            .map_err(|e| StreamJournalError::Config(format!("cannot start the NATS runtime: {e}")))?;
        let count = config.partitions as usize + 1;
        let partitions = config.partitions;
        let not_owned = |index| JournalError::NotOwner { what: described(name_of(index, partitions)), owner: None };
        let shared = Arc::new(Shared {
            queues: (0..count).map(|index| Queue::refusing(not_owned(index))).collect(),
            status: (0..count).map(|_| AtomicU8::new(NOT_OWNED)).collect(),
            owners: Mutex::new(vec![None; count]),
            epochs: (0..count).map(|_| AtomicU64::new(0)).collect(),
            read_back_ms: (0..count).map(|_| AtomicU64::new(0)).collect(),
            confirmed_ms: (0..count).map(|_| AtomicU64::new(0)).collect(),
            config,
            losses: Losses::default(),
            directory_diverged: AtomicBool::new(false),
            directory_applied: AtomicU64::new(0),
            directory_moved: tokio::sync::Notify::new(),
            directory_wanted: tokio::sync::Notify::new(),
            directory_catch_up: tokio::sync::Mutex::new(()),
            leaving: tokio::sync::watch::channel(false).0,
            peers: Mutex::new(crate::membership::Liveness::default()),
            append_latency: Arc::new(Histogram::flush_latency()),
            started: Instant::now(),
        });
        let opened = match runtime.spawn(open_streams(Arc::clone(&shared))).await {
            Ok(opened) => opened,
            Err(e) => Err(StreamJournalError::Config(format!("opening the streams stopped: {e}"))),
        };
        let (client, streams, recovered) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                runtime.shutdown_background();
                return Err(e);
            }
        };
        let (changes_tx, changes) = mpsc::channel(cluster::CHANGES_QUEUE);
        let mut controls = Vec::with_capacity(count);
        for (index, (stream, writer)) in streams.into_iter().enumerate() {
            let (control_tx, control) = mpsc::channel(1);
            controls.push(control_tx);
            let ctx =
                StreamTask { shared: Arc::clone(&shared), client: client.clone(), index, changes: changes_tx.clone() };
            runtime.spawn(ctx.run(stream, writer, control));
        }
        match shared.config.cluster.clone() {
            Some(node) => {
                runtime.spawn(cluster::take_part(Arc::clone(&shared), client.clone(), node, controls));
                runtime.spawn(cluster::follow_directory(Arc::clone(&shared), client.clone(), changes_tx));
            }
            // Alone: every stream was claimed while opening.
            None => drop(changes_tx),
        }
        let journal = StreamJournal {
            shared,
            client,
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
            changes: Mutex::new(Some(changes)),
        };
        Ok((journal, recovered))
    }

    /// For a node of a cluster: what its engine must apply as the cluster changes (once; `None`
    /// after the first call). The engine applies each in order; the journal waits for those
    /// that say so.
    pub fn cluster_changes(&self) -> Option<mpsc::Receiver<ClusterChange>> {
        self.changes.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The journal's NATS client, and the runtime it runs on, for what else the node keeps in
    /// JetStream (the signing keys).
    pub fn nats(&self) -> (async_nats::Client, tokio::runtime::Handle) {
        (self.client.clone(), self.handle.clone())
    }

    /// The directory stream's last sequence this node's directory reflects.
    pub fn directory_seen(&self) -> u64 {
        self.shared.directory_applied.load(Ordering::Acquire)
    }

    /// Waits until this node's directory reflects the directory stream up to `seq` (another
    /// node wrote it, and a client that saw that write asks this node next), reading the stream
    /// at once rather than at the follower's next poll; `false` when `at_most` passed first.
    pub async fn catch_up_directory(&self, seq: u64, at_most: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + at_most;
        // The directory's writer reflects all of it.
        let owned = || self.shared.status(self.shared.directory()) == OWNED;
        loop {
            let moved = self.shared.directory_moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            if self.directory_seen() >= seq || owned() {
                return true;
            }
            self.shared.directory_wanted.notify_one();
            if tokio::time::timeout_at(deadline, moved).await.is_err() {
                return false;
            }
        }
    }

    /// The time each batch took to be stored, for `/metrics`.
    pub fn append_latency(&self) -> Arc<Histogram> {
        Arc::clone(&self.shared.append_latency)
    }

    /// What node `node` of the cluster last announced, if it was heard from lately (and is not
    /// leaving).
    pub fn peer(&self, node: &str) -> Option<crate::membership::Heartbeat> {
        let now = self.shared.now_ms();
        self.shared.peers.lock().unwrap_or_else(|p| p.into_inner()).reachable(node, now).cloned()
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.shared.config.node
    }

    /// Whether this node answers for `license` now; `Err` says who does.
    pub fn owns(&self, license: LicenseId) -> Result<(), JournalError> {
        self.shared.refusal(self.index_of(Some(license))).map_or(Ok(()), Err)
    }

    /// Every stream as this node sees it: who owns it, and, for those this node writes, since
    /// which epoch and how long reading it back took.
    pub fn streams(&self) -> Vec<StreamState> {
        (0..self.shared.queues.len())
            .map(|index| {
                let status = self.shared.status(index);
                let owned =
                    |per_stream: &[AtomicU64]| (status == OWNED).then(|| per_stream[index].load(Ordering::Acquire));
                StreamState {
                    name: name_of(index, self.shared.config.partitions),
                    owner: self.shared.owner(index),
                    written_here: status == OWNED,
                    reading: status == READING,
                    epoch: owned(&self.shared.epochs),
                    read_back_ms: owned(&self.shared.read_back_ms).filter(|ms| *ms > 0),
                }
            })
            .collect()
    }

    /// The nodes this node has heard from, itself among them, by name.
    pub fn nodes(&self) -> Vec<crate::membership::HeardNode> {
        let now = self.shared.now_ms();
        self.shared.peers.lock().unwrap_or_else(|p| p.into_inner()).nodes(now)
    }

    /// Which streams this node writes now, by name.
    pub fn owned(&self) -> Vec<StreamName> {
        let count = self.shared.queues.len();
        (0..count)
            .filter(|index| self.shared.status(*index) == OWNED)
            .map(|index| name_of(index, self.shared.config.partitions))
            .collect()
    }

    /// For a node of a cluster: announces that it is leaving and hands its streams over, then
    /// waits up to `at_most` for the others to be told. Nothing for a node alone.
    pub async fn leave(&self, at_most: Duration) {
        if self.shared.config.cluster.is_none() {
            return;
        }
        self.shared.leaving.send_replace(true);
        let deadline = Instant::now() + at_most;
        while !self.owned().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // One more heartbeat period, for the others to hear that this node is leaving.
        tokio::time::sleep(crate::membership::HEARTBEAT_EVERY * 2).await;
    }

    /// Refuses every change from now on and stops the writers; a batch in flight is not waited
    /// for (its changes are never answered).
    pub fn close(&self) {
        for queue in &self.shared.queues {
            let failed = {
                let mut state = queue.lock();
                state.mode = Mode::Closed;
                std::mem::take(&mut state.pending)
            };
            queue.room.notify_all();
            queue.arrived.notify_one();
            for pending in failed {
                let _ = pending.reply.send(Err(JournalError::Closed));
            }
        }
        if let Some(runtime) = self.runtime.lock().unwrap_or_else(|p| p.into_inner()).take() {
            runtime.shutdown_background();
        }
    }

    fn queue(&self, index: usize, entry: &JournalEntry, license: Option<LicenseId>) -> Durability {
        let encoded = match encode_entry(entry) {
            Ok(encoded) => encoded,
            Err(e) => return Durability::Failed(JournalError::Io(e.to_string())),
        };
        let queue = &self.shared.queues[index];
        let config = &self.shared.config;
        let mut state = queue.lock();
        let deadline = Instant::now() + config.queue_full_wait;
        while state.pending.len() >= config.queue_capacity && matches!(state.mode, Mode::Open) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Durability::Failed(JournalError::Overloaded(state.pending.len()));
            }
            state = queue.room.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        let refused = match &state.mode {
            Mode::Open => None,
            // Naming the owner as this node knows it now, not when the stream began refusing.
            Mode::Refusing(JournalError::NotOwner { .. }) => Some(self.shared.not_owner(index)),
            Mode::Refusing(why) => Some(why.clone()),
            Mode::Closed => Some(JournalError::Closed),
        };
        if let Some(why) = refused {
            // Decided before the stream began refusing, and applied: the change is lost.
            // Recorded under the queue's lock, so the stream's read-back, which settles the
            // losses of its partition under the same lock, cannot miss it.
            self.shared.losses.lose(license);
            drop(state);
            return Durability::Failed(why);
        }
        let (reply, answer) = oneshot::channel();
        state.pending.push(Pending { entry: encoded, license, reply });
        drop(state);
        queue.arrived.notify_one();
        Durability::Pending(answer)
    }

    fn index_of(&self, license: Option<LicenseId>) -> usize {
        match license {
            Some(license) => license.partition(self.shared.config.partitions) as usize,
            None => self.shared.directory(),
        }
    }
}

impl Drop for StreamJournal {
    fn drop(&mut self) {
        self.close();
    }
}

impl Journal for StreamJournal {
    fn append(&self, entry: &JournalEntry) -> Durability {
        let license = match &entry.change {
            Change::License { license, .. } => Some(*license),
            Change::Directory(_) | Change::Event(_) => None,
        };
        self.queue(self.index_of(license), entry, license)
    }

    fn append_event(&self, entry: &JournalEntry, license: Option<LicenseId>) -> Durability {
        self.queue(self.index_of(license), entry, None)
    }

    fn append_new_license(&self, entry: &JournalEntry) -> Durability {
        self.queue(self.shared.directory(), entry, None)
    }

    fn directory_writable(&self) -> Result<(), JournalError> {
        if self.shared.directory_diverged.load(Ordering::Acquire) {
            return Err(JournalError::Poisoned(
                "a directory change was lost: this node takes no directory change until it restarts".into(),
            ));
        }
        self.shared.refusal(self.shared.directory()).map_or(Ok(()), Err)
    }

    fn owns_license(&self, license: LicenseId) -> Result<(), JournalError> {
        self.shared.read_refusal(self.index_of(Some(license))).map_or(Ok(()), Err)
    }

    fn owns_lease(&self, lease: LeaseId) -> Result<(), JournalError> {
        let partition = lease.partition(self.shared.config.partitions) as usize;
        self.shared.read_refusal(partition).map_or(Ok(()), Err)
    }

    /// `NotOwner` (or a read-back under way) for a license of a partition this node does not
    /// write now, or has not found still its own within [`READ_LEASE`]; otherwise what the
    /// partition's stream holds for a license whose state in memory cannot be trusted.
    fn rebuild(&self, license: LicenseId) -> Result<Option<(LicenseState, Timestamp)>, JournalError> {
        // Asked before every decision, a `check` (which writes nothing) among them: within the
        // read lease only, so that a node paused and replaced does not answer from memory.
        self.owns_license(license)?;
        self.shared.losses.rebuild(license)
    }
}

async fn connect(config: &StreamJournalConfig) -> Result<async_nats::Client, StreamJournalError> {
    let failed = |reason: String| StreamJournalError::Connect { servers: config.servers.join(","), reason };
    let mut addresses = Vec::new();
    for server in &config.servers {
        addresses.push(server.parse::<async_nats::ServerAddr>().map_err(|e| failed(format!("{server}: {e}")))?);
    }
    async_nats::ConnectOptions::new()
        .name(format!("leasehold {}", config.node))
        .connection_timeout(config.append_timeout)
        // A server that stops answering (paused, cut off) is left for another within about
        // two pings, instead of the default two minutes: every append waits on it meanwhile.
        .ping_interval(SERVER_PING_EVERY)
        .connect(addresses)
        .await
        .map_err(|e| failed(e.to_string()))
}

/// A stream's records, from `from` to its last.
async fn read_stream(stream: &mut PartitionStream, from: u64) -> Result<(Tail, Vec<(u64, Record)>), StreamError> {
    let tail = stream.tail().await?;
    let records = if tail.last_seq < from { Vec::new() } else { stream.records(from, tail.last_seq).await? };
    Ok((tail, records))
}

fn replayed(
    name: StreamName,
    records: Vec<(u64, Record)>,
    state: &mut Recovered,
) -> Result<Replayed, StreamJournalError> {
    replay(records, state).map_err(|reason| StreamJournalError::Audit { stream: name, reason })
}

/// Claims `stream` (read up to `tail`) for this node; `None` when another node appended since.
async fn claim(stream: &PartitionStream, writer: &mut PartitionWriter, tail: Tail) -> Option<u64> {
    let mut append = writer.claim(tail);
    loop {
        match writer.claimed(tail.epoch + 1, stream.append(&append).await) {
            Claimed::Owner(epoch) => return Some(epoch),
            Claimed::Retry(again) => append = again,
            Claimed::Refused | Claimed::Ignored => return None,
        }
    }
}

type OpenedStreams = (async_nats::Client, Vec<(PartitionStream, PartitionWriter)>, Recovered);

/// Opens, reads and replays every stream (the directory's first); a node alone then claims
/// each.
async fn open_streams(shared: Arc<Shared>) -> Result<OpenedStreams, StreamJournalError> {
    let config = &shared.config;
    let client = connect(config).await?;
    let count = config.partitions as usize + 1;
    let mut reads = tokio::task::JoinSet::new();
    for index in 0..count {
        let (client, name) = (client.clone(), name_of(index, config.partitions));
        let (replicas, timeout) = (config.replicas, config.append_timeout);
        reads.spawn(async move {
            let mut stream = PartitionStream::open(client, name, replicas, timeout).await?;
            let (tail, records) = read_stream(&mut stream, 1).await?;
            Ok::<_, StreamError>((index, stream, tail, records))
        });
    }
    let mut read = Vec::with_capacity(count);
    while let Some(done) = reads.join_next().await {
        let done = done.map_err(|e| StreamJournalError::Config(format!("reading a stream stopped: {e}")))?;
        read.push(done?);
    }
    // The directory's stream first: it holds the creation of the licenses whose later changes
    // are in their partitions' streams.
    read.sort_by_key(|(index, ..)| (*index != count - 1, *index));
    let mut recovered = Recovered::default();
    let mut streams = Vec::with_capacity(count);
    for (index, stream, tail, records) in read {
        let replay = replayed(stream.name(), records, &mut recovered)?;
        shared.set_owner(index, replay.owner.map(|(node, _)| node));
        if index == count - 1 {
            shared.directory_applied_to(tail.last_seq);
        }
        streams.push((index, stream, tail));
    }
    recovered.check();
    streams.sort_by_key(|(index, ..)| *index);

    let mut claims = tokio::task::JoinSet::new();
    for (index, stream, tail) in streams {
        let node = config.node.clone();
        let alone = config.cluster.is_none();
        claims.spawn(async move {
            let mut writer = PartitionWriter::new(node);
            let claimed = if alone { claim(&stream, &mut writer, tail).await.is_some() } else { true };
            (index, stream, writer, claimed)
        });
    }
    let mut opened = Vec::with_capacity(count);
    while let Some(done) = claims.join_next().await {
        let (index, stream, writer, claimed) =
            done.map_err(|e| StreamJournalError::Config(format!("claiming a stream stopped: {e}")))?;
        if !claimed {
            return Err(StreamJournalError::Contended(stream.name()));
        }
        shared.epochs[index].store(writer.epoch().unwrap_or_default(), Ordering::Release);
        if config.cluster.is_none() {
            shared.set_owner(index, Some(config.node.clone()));
            shared.status[index].store(OWNED, Ordering::Release);
            shared.queues[index].lock().mode = Mode::Open;
        }
        opened.push((index, stream, writer));
    }
    opened.sort_by_key(|(index, ..)| *index);
    tracing::info!(
        node = %config.node,
        partitions = config.partitions,
        licenses = recovered.licenses.len(),
        clustered = config.cluster.is_some(),
        "streams read"
    );
    Ok((client, opened.into_iter().map(|(_, stream, writer)| (stream, writer)).collect(), recovered))
}

/// What a stream's task is asked to do by the node's part in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    /// Claim the stream: this node is preferred for it.
    TakeOver,
    /// Stop writing it: another node is preferred (or this one is leaving).
    HandOver,
}

/// The task of one stream: writes its batches while this node owns it, reads it back and claims
/// it when asked to or after a loss.
struct StreamTask {
    shared: Arc<Shared>,
    client: async_nats::Client,
    index: usize,
    changes: mpsc::Sender<ClusterChange>,
}

impl StreamTask {
    fn queue(&self) -> &Queue {
        &self.shared.queues[self.index]
    }

    fn is_directory(&self) -> bool {
        self.index == self.shared.directory()
    }

    async fn run(self, mut stream: PartitionStream, mut writer: PartitionWriter, mut control: mpsc::Receiver<Control>) {
        let give_up_ms = u64::try_from(self.shared.config.give_up_after.as_millis()).unwrap_or(u64::MAX);
        // A node alone is never asked anything: its streams are claimed while opening.
        let clustered = self.shared.config.cluster.is_some();
        let mut asked_anything = clustered;
        loop {
            if self.shared.status(self.index) == OWNED {
                let batch = tokio::select! {
                    batch = self.queue().next_batch() => batch,
                    asked = control.recv(), if asked_anything => {
                        match asked {
                            Some(Control::HandOver) => self.hand_over(&mut writer),
                            Some(Control::TakeOver) => {}
                            None => asked_anything = false,
                        }
                        continue;
                    }
                    () = tokio::time::sleep(CONFIRM_IDLE_EVERY), if clustered => {
                        if !self.still_mine(&mut stream, &mut writer).await && !self.read_back(&mut stream, &mut writer, false).await {
                            return;
                        }
                        continue;
                    }
                };
                let Some(batch) = batch else { return };
                if let Err(why) = self.write(&stream, &mut writer, batch, give_up_ms).await {
                    if self.is_directory() {
                        // Its directory in memory holds a change the stream does not: only a
                        // restart's replay drops it. A node of a cluster leaves it.
                        tracing::error!(%why, "a directory change was lost: this node takes no directory change until it restarts");
                        self.shared.directory_diverged.store(true, Ordering::Release);
                        self.shared.status[self.index].store(NOT_OWNED, Ordering::Release);
                        self.shared.leaving.send_replace(true);
                        writer.give_up();
                        continue;
                    }
                    tracing::error!(stream = %stream.name(), %why, "a batch was lost: reading the stream back");
                    if !self.read_back(&mut stream, &mut writer, false).await {
                        return;
                    }
                }
            } else {
                match control.recv().await {
                    Some(Control::TakeOver) => {
                        if !self.read_back(&mut stream, &mut writer, true).await {
                            return;
                        }
                    }
                    Some(Control::HandOver) => {}
                    None => return,
                }
            }
        }
    }

    /// For a stream this node writes and has nothing to append to: whether its tail is still the
    /// last record this node stored (recording the confirmation); `false` when another node
    /// appended since (this node was replaced, perhaps while it was paused): the caller reads the
    /// stream back. A tail that cannot be read confirms nothing, and leaves the stream as it is.
    async fn still_mine(&self, stream: &mut PartitionStream, writer: &mut PartitionWriter) -> bool {
        let sent_ms = self.shared.now_ms();
        match stream.last_seq().await {
            Ok(last_seq) if Some(last_seq) == writer.last_seq() => {
                self.shared.confirmed(self.index, sent_ms);
                true
            }
            Ok(_) => {
                tracing::warn!(stream = %stream.name(), "another node appended to the stream: reading it back");
                writer.give_up();
                false
            }
            // Unconfirmed reads are refused meanwhile; the next append or check tells.
            Err(e) => {
                tracing::warn!(stream = %stream.name(), error = %e, "could not check the stream's tail");
                true
            }
        }
    }

    /// Writes `batch` and answers it; `Err` (after failing it) when it was lost.
    async fn write(
        &self,
        stream: &PartitionStream,
        writer: &mut PartitionWriter,
        mut batch: Vec<Pending>,
        give_up_ms: u64,
    ) -> Result<(), String> {
        let entries: Vec<Vec<u8>> = batch.iter_mut().map(|p| std::mem::take(&mut p.entry)).collect();
        let sent_ms = self.shared.now_ms();
        let stored = match (batch_payload(&entries), writer.epoch()) {
            (Some(payload), Some(epoch)) => match writer.append(payload, sent_ms, give_up_ms) {
                Ok((number, append)) => self.store(stream, writer, epoch, number, append).await,
                Err(e) => Err(format!("{}: {e}", stream.name())),
            },
            (None, _) => Err(format!("{}: a batch too large to encode", stream.name())),
            (_, None) => Err(format!("{}: this node does not own it", stream.name())),
        };
        match stored {
            Ok(seq) => {
                self.shared.confirmed(self.index, sent_ms);
                if self.is_directory() {
                    self.shared.directory_applied_to(seq);
                }
                for pending in batch {
                    let _ = pending.reply.send(Ok(()));
                }
                Ok(())
            }
            Err(why) => {
                let lost = JournalError::Io(why.clone());
                self.lose(batch, JournalError::Poisoned(format!("{} is being read back", stream.name())), &lost);
                Err(why)
            }
        }
    }

    /// Appends one batch until it is stored (its sequence), refused or given up.
    async fn store(
        &self,
        stream: &PartitionStream,
        writer: &mut PartitionWriter,
        epoch: u64,
        number: u64,
        mut append: crate::fence::Append,
    ) -> Result<u64, String> {
        loop {
            let sent = Instant::now();
            let answer = stream.append(&append).await;
            self.shared.append_latency.record_us(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
            match writer.stored(epoch, number, answer, self.shared.now_ms()) {
                Progress::Acknowledged(_) => {
                    return match answer {
                        Stored::At(seq) => Ok(seq),
                        _ => Err(format!("{}: acknowledged without a sequence", stream.name())),
                    }
                }
                Progress::Retry(again) => {
                    tracing::warn!(stream = %stream.name(), batch = number, "no answer to a batch: sending it again");
                    append = again;
                }
                Progress::Lost(_) | Progress::Ignored => {
                    return Err(match answer {
                        Stored::WrongLastSequence => format!("{} was claimed by another node", stream.name()),
                        Stored::TimedOut => format!("{}: no answer to a batch in time", stream.name()),
                        Stored::At(seq) => {
                            format!("{}: a batch was stored at {seq}, not where expected", stream.name())
                        }
                    });
                }
            }
        }
    }

    /// Fails `batch` and everything queued behind it with `lost`, and makes the stream refuse
    /// changes for `why`: all of them were applied in memory and none will be stored.
    fn lose(&self, batch: Vec<Pending>, why: JournalError, lost: &JournalError) {
        self.shared.status[self.index].store(READING, Ordering::Release);
        let queued = self.queue().refuse(why);
        self.fail(batch.into_iter().chain(queued).collect(), lost);
    }

    /// Answers `failed` with `error`: changes applied in their licenses' memory that will never
    /// be stored, so those licenses answer nothing until their partition is read back.
    fn fail(&self, failed: Vec<Pending>, error: &JournalError) {
        self.shared.losses.lose(failed.iter().filter_map(|p| p.license));
        for pending in failed {
            let _ = pending.reply.send(Err(error.clone()));
        }
    }

    /// Stops writing the stream: another node is preferred for it. What is queued is failed;
    /// the other node's claim fences anything this node could still send.
    fn hand_over(&self, writer: &mut PartitionWriter) {
        self.shared.status[self.index].store(NOT_OWNED, Ordering::Release);
        self.shared.set_owner(self.index, None);
        let why = self.shared.not_owner(self.index);
        let queued = self.queue().refuse(why.clone());
        self.fail(queued, &why);
        writer.give_up();
        tracing::info!(stream = %name_of(self.index, self.shared.config.partitions), "handed over");
    }

    /// Reads the stream back and claims it, so that this node writes it again (after a loss)
    /// or for the first time (`taking_over`). After a loss, a stream another node holds is left
    /// to it. `false` when the journal closed.
    async fn read_back(&self, stream: &mut PartitionStream, writer: &mut PartitionWriter, taking_over: bool) -> bool {
        let name = stream.name();
        self.shared.status[self.index].store(READING, Ordering::Release);
        let started = Instant::now();
        loop {
            if let Mode::Closed = self.queue().lock().mode {
                return false;
            }
            let read = if self.is_directory() {
                self.catch_up_directory(stream).await.map(|tail| (tail, None))
            } else {
                self.read_partition(stream).await.map(|(tail, replayed, recovered)| (tail, Some((replayed, recovered))))
            };
            match read {
                Ok((tail, partition)) => {
                    let held_by = partition.as_ref().and_then(|(replayed, _)| replayed.owner.clone());
                    if let Some((owner, epoch)) =
                        held_by.filter(|(owner, _)| !taking_over && *owner != self.shared.config.node)
                    {
                        tracing::warn!(stream = %name, %owner, epoch, "another node holds the stream: leaving it");
                        self.settle(partition.map(|(_, recovered)| recovered));
                        self.shared.set_owner(self.index, Some(owner));
                        self.queue().refuse(self.shared.not_owner(self.index));
                        self.shared.status[self.index].store(NOT_OWNED, Ordering::Release);
                        return true;
                    }
                    let claim_sent_ms = self.shared.now_ms();
                    if let Some(epoch) = claim(stream, writer, tail).await {
                        self.shared.confirmed(self.index, claim_sent_ms);
                        self.settle(partition.map(|(_, recovered)| recovered));
                        self.shared.epochs[self.index].store(epoch, Ordering::Release);
                        let took = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                        self.shared.read_back_ms[self.index].store(took, Ordering::Release);
                        self.shared.set_owner(self.index, Some(self.shared.config.node.clone()));
                        {
                            let mut queue = self.queue().lock();
                            if let Mode::Refusing(_) = queue.mode {
                                queue.mode = Mode::Open;
                            }
                            self.shared.status[self.index].store(OWNED, Ordering::Release);
                        }
                        tracing::info!(stream = %name, "claimed: taking changes");
                        return true;
                    }
                }
                Err(e) => tracing::warn!(stream = %name, error = %e, "could not read the stream back yet"),
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// The licenses of a partition read back continue from what its stream holds, and the
    /// engine learns those it did not know. Under the queue's lock, so that no loss recorded
    /// by an appender is left out.
    fn settle(&self, recovered: Option<Recovered>) {
        let Some(recovered) = recovered else { return };
        let partitions = self.shared.config.partitions;
        let Ok(partition) = u32::try_from(self.index) else { return };
        let licenses: Vec<(LicenseState, Timestamp)> = recovered
            .licenses
            .into_iter()
            .filter(|(id, _)| id.partition(partitions) == partition)
            .map(|(_, state)| state)
            .collect();
        {
            let _queue = self.queue().lock();
            self.shared.losses.adopt(&licenses, |l| l.partition(partitions) == partition);
        }
        if self.shared.config.cluster.is_some() {
            let _ = self.changes.try_send(ClusterChange::Adopted { partition, licenses });
        }
    }

    /// The state of this partition: the directory's stream replayed, then the partition's.
    async fn read_partition(
        &self,
        stream: &mut PartitionStream,
    ) -> Result<(Tail, Replayed, Recovered), StreamJournalError> {
        let config = &self.shared.config;
        let name = name_of(self.shared.directory(), config.partitions);
        let mut directory =
            PartitionStream::open(self.client.clone(), name, config.replicas, config.append_timeout).await?;
        let mut recovered = Recovered::default();
        let (_, records) = read_stream(&mut directory, 1).await?;
        replayed(StreamName::Directory, records, &mut recovered)?;
        let (tail, records) = read_stream(stream, 1).await?;
        let replayed = replayed(stream.name(), records, &mut recovered)?;
        recovered.check();
        Ok((tail, replayed, recovered))
    }

    /// Brings this node's directory up to the directory stream's tail (the engine applies what
    /// other nodes wrote, and says when it has); the tail it reached.
    async fn catch_up_directory(&self, stream: &mut PartitionStream) -> Result<Tail, StreamJournalError> {
        let _catching_up = self.shared.directory_catch_up.lock().await;
        let applied = self.shared.directory_applied.load(Ordering::Acquire);
        let (tail, records) = read_stream(stream, applied + 1).await?;
        cluster::apply_directory(&self.shared, &self.changes, records).await?;
        Ok(tail)
    }
}
