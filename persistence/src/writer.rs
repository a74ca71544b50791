//! Group commit: the one writer thread that turns appends from every license actor into sled
//! batches, flushes once per batch, and then tells each appender its change is durable.
//!
//! Appenders encode their entry themselves (the CPU work spreads over the actors' threads) and
//! push it on a bounded queue. The writer takes everything waiting (up to `max_batch`), gives
//! the entries consecutive sequence numbers in queue order (and refuses to write a batch that
//! would not follow the last one: recovery treats a gap as damage), writes them as one log
//! record (one sled insert, atomic), flushes once (`sync`), and resolves every waiting appender.
//! While it flushes, new appends pile up and become the next batch: the batch grows with the
//! load, and a lone appender never waits for a timer. Once batches have more than one entry,
//! the writer waits up to `group_linger` for company before the next flush ([`Company`]):
//! - appenders that trickle in (signed checkouts, each behind its signature) are gathered in
//!   growing batches, until a linger no longer fills them: about as many as arrive in a linger.
//!   A flush costs the writer and sled's threads CPU whatever its size (sled wakes its whole
//!   I/O pool for each), so fewer flushes leave more CPU to the signers. It costs each such
//!   change up to the linger in latency, which under signing load is time it would otherwise
//!   have spent in the signers' queue;
//! - appenders that come back together (a closed loop of N writers, each waiting for its
//!   previous flush) are recognised when a batch stops growing at N: after that the writer waits
//!   until all N are back, and no longer (a flat linger would hold each round for the whole
//!   linger).
//!
//! A failed write or flush poisons this writer for good: retrying a failed fsync can report
//! success while the data is lost (the "fsyncgate" lesson), and sled refuses every write after
//! one failed anyway. Under `sync` the failed batch's record is taken back out of the log, its
//! appenders are told it failed and their licenses marked as having lost a change
//! (`health.rs`); the journal then reopens the database with a new writer (`journal.rs`). A
//! flush that outlasts `flush_timeout` is treated the same way by the flush watchdog
//! ([`GroupCommit::expire_flush`]).

use crate::config::{DurabilityMode, JournalConfig};
use crate::format::{encode_entry, seal_batch, seq_key};
use crate::health::Health;
use leasehold_engine::decide::LicenseEvent;
use leasehold_engine::ids::LicenseId;
use leasehold_engine::journal::{Change, Durability, JournalEntry, JournalError};
use leasehold_engine::metrics::Histogram;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// An appended entry waiting for the writer.
struct Pending {
    /// The entry, encoded.
    value: Vec<u8>,
    /// The license it changes (`None`: a directory change): if its write fails, that license's
    /// state in memory holds a change the journal lost.
    license: Option<LicenseId>,
    /// Where to say the entry is durable (`sync`); `None` when the appender did not wait.
    reply: Option<oneshot::Sender<Result<(), JournalError>>>,
    /// Whether it is an event, which the events tree keeps too.
    event: bool,
    /// Whether it is a closed usage record, which the usage-records tree keeps too.
    usage: bool,
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Pending>,
    closed: bool,
    /// While the writer sleeps: how many pending entries it waits for (0 when it is awake).
    /// Appenders wake it only when their entry makes that many: a wake-up is a system call and
    /// a thread switch, and while the writer lingers for company every earlier one is wasted.
    writer_wants: usize,
    /// Appenders waiting for room in a full queue.
    appenders_waiting: usize,
}

/// A batch being written, and who waits for it.
struct InFlush {
    since: Instant,
    replies: Vec<oneshot::Sender<Result<(), JournalError>>>,
    licenses: Vec<LicenseId>,
}

/// What appenders and the writer thread share.
pub(crate) struct GroupCommit {
    queue: Mutex<Queue>,
    /// Signalled when entries arrive or the journal closes.
    arrived: Condvar,
    /// Signalled when the writer takes entries out.
    room: Condvar,
    /// Why this writer refuses writes, once a write or flush failed (the journal then reopens
    /// its database with a new writer).
    poison: OnceLock<String>,
    /// The journal's health: told of the failure and of every change lost.
    health: Arc<Health>,
    /// The last sequence number written to sled (and flushed, under `sync`).
    last_written_seq: AtomicU64,
    /// The last sequence number known durable (flushed; written, under `none`): what readers of
    /// the events tree may see.
    durable_seq: AtomicU64,
    /// The error the next flush fails with: how tests reach a failing journal.
    fail_next_flush: Mutex<Option<std::io::Error>>,
    /// Makes every flush take this long first (milliseconds): how tests reach a hanging disk.
    slow_flush_ms: AtomicU64,
    /// The batch being flushed under `sync`, whose appenders wait: the flush watchdog answers
    /// them if the flush takes too long ([`GroupCommit::expire_flush`]).
    in_flush: Mutex<Option<InFlush>>,
    /// How long each sled flush took (`/metrics`).
    flush_latency: Arc<Histogram>,
    /// Licenses and live leases in the newest snapshot: the next one waits for at least as many
    /// new entries, so that snapshotting a large state costs a bounded share of the writes.
    snapshot_size: AtomicU64,
    pub(crate) config: JournalConfig,
}

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    // A panic while holding this lock cannot leave the queue half-changed (every change is one
    // push or drain), so a poisoned mutex is still consistent.
    queue.lock().unwrap_or_else(|p| p.into_inner())
}

impl GroupCommit {
    pub(crate) fn new(
        config: JournalConfig,
        last_seq: u64,
        health: Arc<Health>,
        flush_latency: Arc<Histogram>,
    ) -> Self {
        GroupCommit {
            queue: Mutex::new(Queue::default()),
            arrived: Condvar::new(),
            room: Condvar::new(),
            poison: OnceLock::new(),
            health,
            last_written_seq: AtomicU64::new(last_seq),
            durable_seq: AtomicU64::new(last_seq),
            fail_next_flush: Mutex::new(None),
            slow_flush_ms: AtomicU64::new(0),
            in_flush: Mutex::new(None),
            flush_latency,
            snapshot_size: AtomicU64::new(0),
            config,
        }
    }

    /// The last sequence number written to sled.
    pub(crate) fn last_written_seq(&self) -> u64 {
        self.last_written_seq.load(Ordering::Acquire)
    }

    /// The last sequence number known durable.
    pub(crate) fn durable_seq(&self) -> u64 {
        self.durable_seq.load(Ordering::Acquire)
    }

    /// Why the journal is poisoned, if it is.
    pub(crate) fn poisoned(&self) -> Option<&str> {
        self.poison.get().map(String::as_str)
    }

    /// Records the size of the newest snapshot's state (licenses and live leases).
    pub(crate) fn set_snapshot_size(&self, size: u64) {
        self.snapshot_size.store(size, Ordering::Relaxed);
    }

    pub(crate) fn fail_next_flush(&self, error: std::io::Error) {
        *self.fail_next_flush.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
    }

    /// Poisons this writer (the first reason wins) and tells the journal's health, once.
    fn poison(&self, why: &str) {
        if self.poison.set(why.to_owned()).is_ok() {
            self.health.fail(why);
        }
    }

    pub(crate) fn slow_flushes(&self, by: Duration) {
        self.slow_flush_ms.store(u64::try_from(by.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    fn lock_in_flush(&self) -> MutexGuard<'_, Option<InFlush>> {
        // Only `Option::replace` and `take` run under this lock.
        self.in_flush.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The flush watchdog: when the batch being written has waited longer than `timeout`, its
    /// appenders are answered that it failed (their changes are lost: whether the disk ends up
    /// holding them is known only once the journal reopens), and the writer is poisoned, so the
    /// journal refuses every change and reopens once the flush returns. Whether it expired one.
    pub(crate) fn expire_flush(&self, timeout: Duration) -> bool {
        let expired = {
            let mut in_flush = self.lock_in_flush();
            match &*in_flush {
                Some(batch) if batch.since.elapsed() > timeout => in_flush.take(),
                _ => None,
            }
        };
        let Some(InFlush { replies, licenses, .. }) = expired else { return false };
        let why = format!("a flush has not finished in {} ms: the disk hangs", timeout.as_millis());
        self.poison(&why);
        self.health.lose(licenses);
        for reply in replies {
            let _ = reply.send(Err(JournalError::Io(why.clone())));
        }
        true
    }

    /// Queues `entry`; see [`crate::SledJournal`] for what the answer means in each mode.
    pub(crate) fn append(&self, entry: &JournalEntry) -> Durability {
        let license = match &entry.change {
            Change::License { license, .. } => Some(*license),
            Change::Directory(_) | Change::Event(_) => None,
        };
        let event = matches!(entry.change, Change::Event(_));
        let usage = matches!(entry.change, Change::License { event: LicenseEvent::UsageClosed(_), .. });
        if let Some(why) = self.poisoned() {
            // The change was decided before the journal failed, and applied: it is lost.
            self.health.lose(license);
            return Durability::Failed(JournalError::Poisoned(why.to_owned()));
        }
        let value = match encode_entry(entry) {
            Ok(value) => value,
            Err(e) => return Durability::Failed(JournalError::Io(e.to_string())),
        };
        let (reply, durable) = match self.config.durability {
            DurabilityMode::Sync => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Durability::Pending(rx))
            }
            DurabilityMode::Batched { .. } | DurabilityMode::None => (None, Durability::Now),
        };
        let mut queue = lock(&self.queue);
        // A full queue blocks the appender (a license actor) for a short, bounded time: that
        // stalls its worker, its mailbox fills, and the router answers `overloaded` before any
        // state changes. Failing at once would instead refuse a change the actor has already
        // applied. The bound keeps a stuck disk from stalling the workers for ever.
        let deadline = Instant::now() + self.config.queue_full_wait;
        while queue.pending.len() >= self.config.queue_capacity && !queue.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Durability::Failed(JournalError::Overloaded(queue.pending.len()));
            }
            queue.appenders_waiting += 1;
            queue = self.room.wait_timeout(queue, left).unwrap_or_else(|p| p.into_inner()).0;
            queue.appenders_waiting -= 1;
        }
        if queue.closed {
            // Closed for a reopen (or at shutdown) after the change was applied: it is lost. A
            // reopen is the storage failing, not a shutdown, and is answered as such.
            drop(queue);
            self.health.lose(license);
            return Durability::Failed(self.health.writable().err().unwrap_or(JournalError::Closed));
        }
        queue.pending.push_back(Pending { value, license, reply, event, usage });
        let wake_writer = queue.writer_wants > 0 && queue.pending.len() >= queue.writer_wants;
        if wake_writer {
            // Once: until the woken writer runs, the appenders after this one would each wake it
            // again (a futex call apiece).
            queue.writer_wants = 0;
        }
        drop(queue);
        if wake_writer {
            self.arrived.notify_one();
        }
        durable
    }

    /// Stops taking appends; the writer drains what is queued and exits.
    pub(crate) fn close(&self) {
        lock(&self.queue).closed = true;
        self.arrived.notify_all();
        self.room.notify_all();
    }

    /// Waits for the next batch: everything queued, up to `max_batch` entries, after waiting up
    /// to `linger` for `company` entries once one is queued. `None` once the journal is closed
    /// and drained. Under `batched`, also returns (with an empty batch) when a flush is due.
    fn next_batch(&self, flush_due: Option<Instant>, linger: Duration, company: usize) -> Option<Gathered> {
        let mut queue = lock(&self.queue);
        while queue.pending.is_empty() {
            if queue.closed {
                return None;
            }
            queue.writer_wants = 1;
            match flush_due {
                Some(due) => {
                    let left = due.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        queue.writer_wants = 0;
                        return Some(Gathered { batch: Vec::new(), reached: false });
                    }
                    queue = self.arrived.wait_timeout(queue, left).unwrap_or_else(|p| p.into_inner()).0;
                }
                None => queue = self.arrived.wait(queue).unwrap_or_else(|p| p.into_inner()),
            }
            queue.writer_wants = 0;
        }
        let linger_until = Instant::now() + linger;
        let wanted = company.min(self.config.max_batch);
        while queue.pending.len() < wanted && !queue.closed {
            let left = linger_until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            queue.writer_wants = wanted;
            queue = self.arrived.wait_timeout(queue, left).unwrap_or_else(|p| p.into_inner()).0;
            queue.writer_wants = 0;
        }
        let reached = queue.pending.len() >= wanted;
        let n = queue.pending.len().min(self.config.max_batch.max(1));
        let batch: Vec<Pending> = queue.pending.drain(..n).collect();
        let room_awaited = queue.appenders_waiting > 0;
        drop(queue);
        if room_awaited {
            self.room.notify_all();
        }
        Some(Gathered { batch, reached })
    }
}

/// A batch for the writer, and whether the company waited for came.
struct Gathered {
    batch: Vec<Pending>,
    /// All the company waited for was there before the linger ended.
    reached: bool,
}

/// How much company the writer waits for before the next flush, learned from the batches so
/// far (see the module comment). A pure state machine, so its rules are unit-tested.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Company {
    /// Entries to wait for (0: none; a lone appender never waits).
    wanted: usize,
    /// The previous batch's size.
    last: usize,
    /// The size of a closed loop, once a batch that asked for more than it stopped at it.
    closed_loop: Option<usize>,
}

impl Company {
    /// The company to wait for after a batch of `len` entries, which `reached` what was waited
    /// for or ran out of linger.
    fn after(&mut self, len: usize, reached: bool) -> usize {
        let probing = self.wanted > self.last;
        self.wanted = match len {
            // Appenders come alone: nobody waits.
            0 | 1 => {
                self.closed_loop = None;
                0
            }
            // A known closed loop came back whole: wait for all of it again, no longer.
            n if reached && self.closed_loop.is_some_and(|size| n <= size) => n,
            // Everyone asked for came: ask for half as many again, to find how many a linger
            // brings (a trickle grows its batches) or where a closed loop stops.
            n if reached => {
                self.closed_loop = None;
                n + n / 2 + 1
            }
            // The linger ran out on a probe that stopped where the last batch did: a closed loop
            // of that size.
            n if probing && n == self.last => {
                self.closed_loop = Some(n);
                n
            }
            // The linger ran out: this is about what a linger brings.
            n => n,
        };
        self.last = len;
        self.wanted
    }
}

/// The positions in a batch of the entries kept again beside the log.
struct Copies {
    /// Events (the events tree).
    events: Vec<usize>,
    /// Closed usage records (the usage-records tree).
    usage: Vec<usize>,
}

/// The writer thread's side: sled handles and the next sequence number.
pub(crate) struct Writer {
    pub(crate) shared: Arc<GroupCommit>,
    pub(crate) db: sled::Db,
    pub(crate) log: sled::Tree,
    pub(crate) events: sled::Tree,
    pub(crate) usage_records: sled::Tree,
    pub(crate) next_seq: u64,
    /// Where to ask for a snapshot; full means one is already asked for.
    pub(crate) snapshot_requests: Option<mpsc::SyncSender<()>>,
    pub(crate) last_snapshot_request_seq: u64,
    /// Under `batched`, the licenses changed since the last flush: acknowledged already, and
    /// lost if that flush fails.
    pub(crate) unflushed: Vec<LicenseId>,
}

impl Writer {
    /// The writer thread's loop: batch, write, flush, answer; until closed and drained.
    pub(crate) fn run(mut self) {
        // When a flush is due on its own (`batched`), and how long a batch may wait for company
        // (`sync`: only there does an appender wait for the flush).
        let (every, linger) = match self.shared.config.durability {
            DurabilityMode::Batched { every_ms } => (Some(Duration::from_millis(every_ms.max(1))), Duration::ZERO),
            DurabilityMode::Sync => (None, self.shared.config.group_linger),
            DurabilityMode::None => (None, Duration::ZERO),
        };
        let mut unflushed_since: Option<Instant> = None;
        let mut company = Company::default();
        loop {
            let flush_due = unflushed_since.zip(every).map(|(since, every)| since + every);
            let Some(Gathered { batch, reached }) = self.shared.next_batch(flush_due, linger, company.wanted) else {
                break;
            };
            if !batch.is_empty() {
                company.after(batch.len(), reached);
                let written = self.write(batch);
                if written && unflushed_since.is_none() && every.is_some() {
                    unflushed_since = Some(Instant::now());
                }
            }
            if unflushed_since.zip(every).is_some_and(|(since, every)| since.elapsed() >= every) {
                // Nobody waits on a batched flush: a failure poisons the writer, and the changes
                // it held are lost.
                let unflushed = std::mem::take(&mut self.unflushed);
                if self.flush().is_err() {
                    self.shared.health.lose(unflushed);
                }
                unflushed_since = None;
            }
            self.maybe_request_snapshot();
        }
        // Closing: make everything written durable, whatever the mode.
        if self.shared.poisoned().is_none() {
            let _ = self.flush();
        }
    }

    /// Writes one batch and, under `sync`, flushes it; answers every appender. Whether the
    /// batch reached sled.
    fn write(&mut self, batch: Vec<Pending>) -> bool {
        let licenses: Vec<LicenseId> = batch.iter().filter_map(|p| p.license).collect();
        let copies = Copies {
            events: batch.iter().enumerate().filter(|(_, p)| p.event).map(|(i, _)| i).collect(),
            usage: batch.iter().enumerate().filter(|(_, p)| p.usage).map(|(i, _)| i).collect(),
        };
        let (values, replies): (Vec<Vec<u8>>, Vec<_>) = batch.into_iter().map(|p| (p.value, p.reply)).unzip();
        let replies = replies.into_iter().flatten().collect();
        *self.shared.lock_in_flush() = Some(InFlush { since: Instant::now(), replies, licenses });
        let outcome = match self.shared.poisoned() {
            Some(why) => Err(JournalError::Poisoned(why.to_owned())),
            None => self.store(values, &copies).and_then(|first| match self.shared.config.durability {
                DurabilityMode::Sync => self.flush().inspect_err(|_| self.unwrite(first, &copies)),
                DurabilityMode::Batched { .. } => Ok(()),
                // Nothing waits for the disk: written is as durable as it gets.
                DurabilityMode::None => {
                    self.shared.durable_seq.fetch_max(self.shared.last_written_seq(), Ordering::AcqRel);
                    Ok(())
                }
            }),
        };
        let stored = outcome.is_ok();
        // Taken by the watchdog when the flush took too long: it answered them already.
        let Some(InFlush { replies, licenses, .. }) = self.shared.lock_in_flush().take() else { return stored };
        if !stored {
            self.shared.health.lose(licenses);
            let unflushed = std::mem::take(&mut self.unflushed);
            self.shared.health.lose(unflushed);
        } else if let DurabilityMode::Batched { .. } = self.shared.config.durability {
            self.unflushed.extend(licenses);
        }
        for reply in replies {
            // An appender that stopped waiting does not undo the write.
            let _ = reply.send(outcome.clone());
        }
        stored
    }

    /// Gives the batch consecutive sequence numbers and writes it as one log record, and the
    /// entries `copies` names to the events and usage-records trees; returns the batch's first
    /// sequence number.
    fn store(&mut self, values: Vec<Vec<u8>>, copies: &Copies) -> Result<u64, JournalError> {
        let first = self.next_seq;
        let next = first + values.len() as u64;
        // Recovery refuses a log with a gap in its sequence numbers; never write one.
        let last_written = self.shared.last_written_seq.load(Ordering::Acquire);
        if first != last_written + 1 {
            return Err(self.poison(format!("entries {first}..{next} would not follow entry {last_written}")));
        }
        let Some(record) = seal_batch(first, &values) else {
            return Err(self.poison(format!("entries {first}..{next} do not fit a log record")));
        };
        if let Err(e) = self.log.insert(seq_key(first), record) {
            return Err(self.poison(format!("writing entries {first}..{next} failed: {e}")));
        }
        for (tree, indexes) in [(&self.events, &copies.events), (&self.usage_records, &copies.usage)] {
            for &index in indexes {
                let seq = first + index as u64;
                let kept = seal_batch(seq, std::slice::from_ref(&values[index])).map(|r| tree.insert(seq_key(seq), r));
                if !matches!(kept, Some(Ok(_))) {
                    return Err(self.poison(format!("writing a copy of entry {seq} failed")));
                }
            }
        }
        self.next_seq = next;
        self.shared.last_written_seq.store(next - 1, Ordering::Release);
        Ok(first)
    }

    /// Takes back the record of the batch starting at `first`, whose flush failed: its
    /// appenders are told it failed, so a later flush (sled's own, at close) must not make it
    /// durable. What the failed flush already put on disk cannot be taken back.
    fn unwrite(&mut self, first: u64, copies: &Copies) {
        let _ = self.log.remove(seq_key(first));
        for (tree, indexes) in [(&self.events, &copies.events), (&self.usage_records, &copies.usage)] {
            for &index in indexes {
                let _ = tree.remove(seq_key(first + index as u64));
            }
        }
        self.next_seq = first;
        self.shared.last_written_seq.store(first - 1, Ordering::Release);
    }

    fn flush(&self) -> Result<(), JournalError> {
        let slow_ms = self.shared.slow_flush_ms.load(Ordering::SeqCst);
        if slow_ms > 0 {
            std::thread::sleep(Duration::from_millis(slow_ms));
        }
        let injected = self.shared.fail_next_flush.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(error) = injected {
            return Err(self.poison(format!("flush failed: {error} (injected)")));
        }
        let upto = self.shared.last_written_seq();
        let started = Instant::now();
        let flushed = self.db.flush();
        let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.shared.flush_latency.record_us(elapsed_us);
        match flushed {
            Ok(_) => {
                self.shared.durable_seq.fetch_max(upto, Ordering::AcqRel);
                Ok(())
            }
            Err(e) => Err(self.poison(format!("flush failed: {e}"))),
        }
    }

    /// Poisons the journal (the first reason wins, and is logged once) and returns the error
    /// for this batch.
    fn poison(&self, why: String) -> JournalError {
        self.shared.poison(&why);
        JournalError::Io(why)
    }

    fn maybe_request_snapshot(&mut self) {
        let (Some(every), Some(requests)) = (self.shared.config.snapshot_every_entries, &self.snapshot_requests) else {
            return;
        };
        let written = self.next_seq - 1;
        // A snapshot rewrites the whole state: with a million licenses that is seconds of work
        // and a second copy in memory. Waiting for as many new entries as the state holds keeps
        // its cost proportional to the writes, while the log to replay on restart stays at most
        // about the size of the snapshot itself.
        let every = every.max(1).max(self.shared.snapshot_size.load(Ordering::Relaxed));
        if written.saturating_sub(self.last_snapshot_request_seq) >= every {
            // Full means a request is already waiting; the snapshot it takes will be newer anyway.
            if requests.try_send(()).is_ok() {
                self.last_snapshot_request_seq = written;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Company;

    #[test]
    fn lone_appenders_never_wait() {
        let mut company = Company::default();
        for _ in 0..10 {
            assert_eq!(company.after(1, true), 0);
        }
    }

    #[test]
    fn a_closed_loop_is_waited_for_whole_and_no_longer_once_a_probe_stops_at_its_size() {
        let mut company = Company::default();
        // 64 writers, each waiting for its previous flush: every batch holds the same 64.
        let first = company.after(64, true);
        assert!(first > 64, "the first full batch probes for more: {first}");
        // The probe runs out of linger at 64: a closed loop of 64.
        assert_eq!(company.after(64, false), 64);
        // From then on the writer waits for exactly the 64, which come, so no batch lingers out.
        for _ in 0..100 {
            assert_eq!(company.after(64, true), 64);
        }
        // More writers join: the batch outgrows the loop, and the writer probes again.
        assert!(company.after(80, true) > 80);
    }

    #[test]
    fn a_trickle_grows_its_batches_to_what_a_linger_brings() {
        // `per_linger` appends arrive in a linger: a batch is what was waited for if that many
        // came in time, or else all a linger brought.
        for per_linger in [2, 10, 100, 1000] {
            let mut company = Company::default();
            let mut wanted = 0;
            let mut sizes = Vec::new();
            let mut len = 2;
            for _ in 0..60 {
                let reached = wanted <= per_linger;
                len = if reached { wanted.max(len.min(per_linger)) } else { per_linger };
                sizes.push(len);
                wanted = company.after(len, reached);
            }
            let settled = &sizes[40..];
            assert!(
                settled.iter().all(|&n| n * 3 >= per_linger * 2),
                "batches of {settled:?} for {per_linger} appends a linger"
            );
        }
    }
}
