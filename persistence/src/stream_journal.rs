//! [`StreamJournal`]: the engine's [`Journal`] on NATS JetStream (SPEC section 14,
//! `design/CLUSTER.md`). Each license's changes go to its partition's stream, the directory's to
//! the directory's stream, each event with the change it tells of; every stream is fenced
//! ([`crate::fence`]) and written by one group-commit writer.
//!
//! Opening the journal reads every stream, replays it (the directory's first: licenses created by
//! a directory change live on in their partition), and claims it for this node: from then on an
//! append of any node that held it before is refused. A change is answered once its batch is
//! stored, that is once JetStream's quorum has it.
//!
//! When a partition's batch is refused (another node claimed the partition) or stays unanswered
//! past its deadline, the changes of that batch and of every one queued behind it are lost: they
//! were applied in their licenses' memory, so those licenses answer nothing
//! ([`Journal::rebuild`]) and no change is taken ([`Journal::writable`]) until the partition is
//! read back and claimed again. Read back, each lost license continues from what the stream holds.
//! A partition another node has claimed is not claimed back: which node owns which partition is
//! the cluster's decision, not a writer's. The directory is not rebuilt that way: a node whose
//! directory batch was lost refuses every change until it is restarted.

use crate::fence::{replay, Claimed, PartitionWriter, Progress, Replayed, Stored, Tail};
use crate::format::{batch_payload, encode_entry};
use crate::jetstream::{PartitionStream, StreamError, StreamName};
use leasehold_engine::decide::LicenseState;
use leasehold_engine::ids::LicenseId;
use leasehold_engine::journal::{Change, Durability, Journal, JournalEntry, JournalError};
use leasehold_engine::metrics::Histogram;
use leasehold_engine::replay::Recovered;
use leasehold_engine::time::Timestamp;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};

/// The most bytes of entries one batch carries: a stream record is at most 1 MiB, envelope and
/// all.
const MAX_BATCH_BYTES: usize = 900 * 1024;

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
}

impl StreamJournalConfig {
    /// The defaults for node `node` of the cluster at `servers`.
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

/// A change queued for its stream.
struct Pending {
    entry: Vec<u8>,
    license: Option<LicenseId>,
    reply: oneshot::Sender<Result<(), JournalError>>,
}

/// Whether a stream's queue takes changes.
enum Mode {
    Open,
    /// Its partition is being read back (or was lost for good): the reason.
    Refusing(String),
    Closed,
}

struct QueueState {
    pending: Vec<Pending>,
    mode: Mode,
}

/// One stream's queue: appenders push, its writer takes everything queued as the next batch.
struct Queue {
    state: Mutex<QueueState>,
    arrived: Notify,
    room: Condvar,
}

impl Queue {
    fn new() -> Self {
        Queue {
            state: Mutex::new(QueueState { pending: Vec::new(), mode: Mode::Open }),
            arrived: Notify::new(),
            room: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Every change under this lock is a push, a take or an assignment: a panic cannot leave
        // it half-done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next batch: what is queued, up to [`MAX_BATCH_BYTES`]; `None` once closed.
    async fn next_batch(&self) -> Option<Vec<Pending>> {
        loop {
            {
                let mut state = self.lock();
                if let Mode::Closed = state.mode {
                    return None;
                }
                if !state.pending.is_empty() {
                    let mut bytes = 0;
                    let take = state
                        .pending
                        .iter()
                        .take_while(|p| {
                            bytes += p.entry.len() + 4;
                            bytes <= MAX_BATCH_BYTES
                        })
                        .count()
                        .max(1);
                    let batch: Vec<Pending> = state.pending.drain(..take).collect();
                    self.room.notify_all();
                    return Some(batch);
                }
            }
            self.arrived.notified().await;
        }
    }
}

/// What became of a license whose change was lost.
enum Lost {
    /// Its partition is not read back yet.
    Waiting,
    /// What its partition's stream holds for it, to continue from.
    Durable(LicenseState, Timestamp),
    /// Its partition's stream holds nothing of it (its creation itself was lost).
    Gone,
}

/// The licenses whose changes were lost, and why the journal refuses changes.
#[derive(Default)]
struct Losses {
    any: AtomicBool,
    licenses: Mutex<HashMap<LicenseId, Lost>>,
    /// How many streams refuse changes now, and the first one's reason.
    refusing: AtomicUsize,
    why: Mutex<Option<String>>,
}

impl Losses {
    fn lose(&self, licenses: impl IntoIterator<Item = LicenseId>) {
        let mut lost = self.licenses.lock().unwrap_or_else(|p| p.into_inner());
        for license in licenses {
            lost.insert(license, Lost::Waiting);
        }
        if !lost.is_empty() {
            self.any.store(true, Ordering::Release);
        }
    }

    /// `recovered` is what the stream of the licenses `covers` holds: each of them that was
    /// lost continues from it.
    fn rebuilt(&self, recovered: &mut Recovered, covers: impl Fn(LicenseId) -> bool) {
        let mut lost = self.licenses.lock().unwrap_or_else(|p| p.into_inner());
        for (license, state) in lost.iter_mut() {
            if matches!(state, Lost::Waiting) && covers(*license) {
                *state = match recovered.licenses.remove(license) {
                    Some((durable, at)) => Lost::Durable(durable, at),
                    None => Lost::Gone,
                };
            }
        }
    }

    fn rebuild(&self, license: LicenseId) -> Result<Option<(LicenseState, Timestamp)>, JournalError> {
        if !self.any.load(Ordering::Acquire) {
            return Ok(None);
        }
        let mut lost = self.licenses.lock().unwrap_or_else(|p| p.into_inner());
        let rebuilt = match lost.get(&license) {
            None => return Ok(None),
            Some(Lost::Waiting | Lost::Gone) => return Err(JournalError::ChangeLost(license)),
            Some(Lost::Durable(..)) => match lost.remove(&license) {
                Some(Lost::Durable(durable, at)) => Some((durable, at)),
                _ => None,
            },
        };
        if lost.is_empty() {
            self.any.store(false, Ordering::Release);
        }
        Ok(rebuilt)
    }

    fn refuse(&self, why: &str) {
        self.refusing.fetch_add(1, Ordering::AcqRel);
        self.why.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| why.to_owned());
    }

    /// Why the journal refuses changes, now known better.
    fn explain(&self, why: &str) {
        *self.why.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.to_owned());
    }

    fn take_again(&self) {
        if self.refusing.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.why.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    fn writable(&self) -> Result<(), JournalError> {
        if self.refusing.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let why = self.why.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Err(JournalError::Poisoned(why.unwrap_or_else(|| "a stream is being read back".to_owned())))
    }
}

/// What the journal's streams share with their writers.
struct Shared {
    config: StreamJournalConfig,
    /// One queue per partition, then the directory's.
    queues: Vec<Queue>,
    losses: Losses,
    append_latency: Arc<Histogram>,
    started: Instant,
}

impl Shared {
    fn directory(&self) -> usize {
        self.config.partitions as usize
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
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
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

impl StreamJournal {
    /// Connects to `config.servers`, reads and replays every stream (creating those not there
    /// yet), claims them all for `config.node` and starts their writers; returns the journal and
    /// the state its streams describe, to start the engine from.
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
        let queues = (0..=config.partitions).map(|_| Queue::new()).collect();
        let shared = Arc::new(Shared {
            config,
            queues,
            losses: Losses::default(),
            append_latency: Arc::new(Histogram::flush_latency()),
            started: Instant::now(),
        });
        let opened = runtime.spawn(open_streams(Arc::clone(&shared)));
        let streams = match opened.await {
            Ok(opened) => opened,
            Err(e) => Err(StreamJournalError::Config(format!("opening the streams stopped: {e}"))),
        };
        let (client, streams, recovered) = match streams {
            Ok(opened) => opened,
            Err(e) => {
                runtime.shutdown_background();
                return Err(e);
            }
        };
        for (index, (stream, writer)) in streams.into_iter().enumerate() {
            runtime.spawn(write(Arc::clone(&shared), client.clone(), index, stream, writer));
        }
        Ok((StreamJournal { shared, runtime: Mutex::new(Some(runtime)) }, recovered))
    }

    /// The time each batch took to be stored, for `/metrics`.
    pub fn append_latency(&self) -> Arc<Histogram> {
        Arc::clone(&self.shared.append_latency)
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
        match &state.mode {
            Mode::Open => {}
            // Decided before the stream began refusing, and applied: the change is lost. Recorded
            // under the queue's lock, so the stream's read-back, which clears the losses it
            // covers under the same lock, cannot miss it.
            Mode::Refusing(why) => {
                let why = why.clone();
                drop(state);
                self.shared.losses.lose(license);
                return Durability::Failed(JournalError::Poisoned(why));
            }
            Mode::Closed => {
                drop(state);
                self.shared.losses.lose(license);
                return Durability::Failed(JournalError::Closed);
            }
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

    fn writable(&self) -> Result<(), JournalError> {
        self.shared.losses.writable()
    }

    fn rebuild(&self, license: LicenseId) -> Result<Option<(LicenseState, Timestamp)>, JournalError> {
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
        .connect(addresses)
        .await
        .map_err(|e| failed(e.to_string()))
}

/// Every stream, read from its first record to its last.
async fn read_stream(stream: &mut PartitionStream) -> Result<(Tail, Vec<(u64, crate::fence::Record)>), StreamError> {
    let tail = stream.tail().await?;
    let records = if tail.last_seq == 0 { Vec::new() } else { stream.records(1, tail.last_seq).await? };
    Ok((tail, records))
}

fn replayed(
    name: StreamName,
    records: Vec<(u64, crate::fence::Record)>,
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

/// Opens, reads and replays every stream (the directory's first), then claims each.
async fn open_streams(
    shared: Arc<Shared>,
) -> Result<(async_nats::Client, Vec<(PartitionStream, PartitionWriter)>, Recovered), StreamJournalError> {
    let config = &shared.config;
    let client = connect(config).await?;
    let count = config.partitions as usize + 1;
    let mut reads = tokio::task::JoinSet::new();
    for index in 0..count {
        let (client, name) = (client.clone(), name_of(index, config.partitions));
        let (replicas, timeout) = (config.replicas, config.append_timeout);
        reads.spawn(async move {
            let mut stream = PartitionStream::open(client, name, replicas, timeout).await?;
            let (tail, records) = read_stream(&mut stream).await?;
            Ok::<_, StreamError>((index, stream, tail, records))
        });
    }
    let mut read = Vec::with_capacity(count);
    while let Some(done) = reads.join_next().await {
        let done = done.map_err(|e| StreamJournalError::Config(format!("reading a stream stopped: {e}")))?;
        read.push(done?);
    }
    // The directory's stream first: a license created by a directory change has its later
    // changes in its partition's stream.
    read.sort_by_key(|(index, ..)| (*index != count - 1, *index));
    let mut recovered = Recovered::default();
    let mut streams = Vec::with_capacity(count);
    for (index, stream, tail, records) in read {
        replayed(stream.name(), records, &mut recovered)?;
        streams.push((index, stream, tail));
    }
    recovered.check();

    let mut claims = tokio::task::JoinSet::new();
    for (index, stream, tail) in streams {
        let node = config.node.clone();
        claims.spawn(async move {
            let mut writer = PartitionWriter::new(node);
            let owner = claim(&stream, &mut writer, tail).await;
            (index, stream, writer, owner)
        });
    }
    let mut claimed = Vec::with_capacity(count);
    while let Some(done) = claims.join_next().await {
        let (index, stream, writer, owner) =
            done.map_err(|e| StreamJournalError::Config(format!("claiming a stream stopped: {e}")))?;
        if owner.is_none() {
            return Err(StreamJournalError::Contended(stream.name()));
        }
        claimed.push((index, stream, writer));
    }
    claimed.sort_by_key(|(index, ..)| *index);
    tracing::info!(
        node = %config.node,
        partitions = config.partitions,
        licenses = recovered.licenses.len(),
        "claimed every stream"
    );
    Ok((client, claimed.into_iter().map(|(_, stream, writer)| (stream, writer)).collect(), recovered))
}

/// The writer of stream `index`: takes what is queued as one batch, appends it under the fence
/// and answers it; reads the partition back after a loss.
async fn write(
    shared: Arc<Shared>,
    client: async_nats::Client,
    index: usize,
    mut stream: PartitionStream,
    mut writer: PartitionWriter,
) {
    let queue = &shared.queues[index];
    let give_up_ms = u64::try_from(shared.config.give_up_after.as_millis()).unwrap_or(u64::MAX);
    while let Some(mut batch) = queue.next_batch().await {
        let entries: Vec<Vec<u8>> = batch.iter_mut().map(|p| std::mem::take(&mut p.entry)).collect();
        let stored = match (batch_payload(&entries), writer.epoch()) {
            (Some(payload), Some(epoch)) => match writer.append(payload, shared.now_ms(), give_up_ms) {
                Ok((number, append)) => store(&shared, &stream, &mut writer, epoch, number, append).await,
                Err(e) => Err(format!("{}: {e}", stream.name())),
            },
            (None, _) => Err(format!("{}: a batch too large to encode", stream.name())),
            (_, None) => Err(format!("{}: this node does not own it", stream.name())),
        };
        match stored {
            Ok(()) => {
                for pending in batch {
                    let _ = pending.reply.send(Ok(()));
                }
            }
            Err(why) => {
                tracing::error!(stream = %stream.name(), %why, "a batch was lost: reading the stream back");
                lose(&shared, queue, batch, &why);
                if !read_back(&shared, &client, index, &mut stream, &mut writer, why).await {
                    return;
                }
            }
        }
    }
}

/// Appends one batch until it is stored, refused or given up.
async fn store(
    shared: &Shared,
    stream: &PartitionStream,
    writer: &mut PartitionWriter,
    epoch: u64,
    number: u64,
    mut append: crate::fence::Append,
) -> Result<(), String> {
    loop {
        let sent = Instant::now();
        let answer = stream.append(&append).await;
        shared.append_latency.record_us(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
        match writer.stored(epoch, number, answer, shared.now_ms()) {
            Progress::Acknowledged(_) => return Ok(()),
            Progress::Retry(again) => {
                tracing::warn!(stream = %stream.name(), batch = number, "no answer to a batch: sending it again");
                append = again;
            }
            Progress::Lost(_) | Progress::Ignored => {
                return Err(match answer {
                    Stored::WrongLastSequence => format!("{} was claimed by another node", stream.name()),
                    Stored::TimedOut => format!("{}: no answer to a batch in time", stream.name()),
                    Stored::At(seq) => format!("{}: a batch was stored at {seq}, not where expected", stream.name()),
                });
            }
        }
    }
}

/// Fails `batch` and everything queued behind it, and makes the stream refuse changes: all of
/// them were applied in memory and none will be stored.
fn lose(shared: &Shared, queue: &Queue, batch: Vec<Pending>, why: &str) {
    let queued = {
        let mut state = queue.lock();
        state.mode = Mode::Refusing(why.to_owned());
        std::mem::take(&mut state.pending)
    };
    queue.room.notify_all();
    shared.losses.refuse(why);
    let lost: Vec<Pending> = batch.into_iter().chain(queued).collect();
    shared.losses.lose(lost.iter().filter_map(|p| p.license));
    for pending in lost {
        let _ = pending.reply.send(Err(JournalError::Io(why.to_owned())));
    }
}

/// Reads partition `index` back after a loss and claims it again, so that its lost licenses
/// continue from what the stream holds; `false` when it is not this node's to claim (another
/// node took it), or it is the directory's, or the journal closed: the stream then refuses
/// changes for good.
async fn read_back(
    shared: &Shared,
    client: &async_nats::Client,
    index: usize,
    stream: &mut PartitionStream,
    writer: &mut PartitionWriter,
    why: String,
) -> bool {
    let StreamName::Partition(partition) = stream.name() else {
        tracing::error!(%why, "the directory's batch was lost: this node takes no change until it is restarted");
        return false;
    };
    let partitions = shared.config.partitions;
    let directory_index = shared.directory();
    loop {
        if let Mode::Closed = shared.queues[index].lock().mode {
            return false;
        }
        match read_partition(shared, client, stream, directory_index).await {
            Ok((mut recovered, tail, replayed)) => {
                if let Some((owner, epoch)) = replayed.owner.filter(|(owner, _)| *owner != shared.config.node) {
                    let why = format!("{} belongs to node {owner} since epoch {epoch}", stream.name());
                    tracing::error!(%why, "this node refuses the partition's changes");
                    if let Mode::Refusing(reason) = &mut shared.queues[index].lock().mode {
                        reason.clone_from(&why);
                    }
                    shared.losses.explain(&why);
                    return false;
                }
                if claim(stream, writer, tail).await.is_some() {
                    recovered.check();
                    let queue = &shared.queues[index];
                    let mut state = queue.lock();
                    shared.losses.rebuilt(&mut recovered, |l| l.partition(partitions) == partition);
                    if let Mode::Refusing(_) = state.mode {
                        state.mode = Mode::Open;
                    }
                    drop(state);
                    shared.losses.take_again();
                    tracing::warn!(stream = %stream.name(), "read back and claimed again: taking changes");
                    return true;
                }
            }
            Err(e) => tracing::warn!(stream = %stream.name(), error = %e, "could not read the stream back yet"),
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// The state of one partition: the directory's stream replayed, then the partition's.
async fn read_partition(
    shared: &Shared,
    client: &async_nats::Client,
    stream: &mut PartitionStream,
    directory_index: usize,
) -> Result<(Recovered, Tail, Replayed), StreamJournalError> {
    let config = &shared.config;
    let name = name_of(directory_index, config.partitions);
    let mut directory = PartitionStream::open(client.clone(), name, config.replicas, config.append_timeout).await?;
    let mut recovered = Recovered::default();
    let (_, records) = read_stream(&mut directory).await?;
    replayed(StreamName::Directory, records, &mut recovered)?;
    let (tail, records) = read_stream(stream).await?;
    let replayed = replayed(stream.name(), records, &mut recovered)?;
    Ok((recovered, tail, replayed))
}
