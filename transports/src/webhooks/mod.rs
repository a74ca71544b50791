//! Webhook deliveries (SPEC section 11): each webhook's events posted to its URL, signed, in
//! order, at least once.
//!
//! One thread with its own runtime runs every delivery, so a slow receiver costs that thread's
//! time and never a license worker's. On it, one task per webhook reads the event log after the
//! webhook's cursor a page at a time (the log is the outbox: nothing is queued in memory but a
//! page), posts the next event it wants and waits for its answer before the one after, retrying
//! with the back-off of [`leasehold_engine::webhooks`]. A receiver that never answers holds up
//! its own webhook only. A supervisor starts a task for each webhook in the directory; a task
//! ends when its webhook is deleted.

mod client;
mod task;

use leasehold_engine::ids::WebhookId;
use leasehold_engine::journal::JournalError;
use leasehold_engine::webhooks::{Delivery, DeliveryLog, WebhookKey, ANSWER_WITHIN};
use leasehold_engine::Engine;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::Notify;

/// How often an idle webhook looks for new events, and the supervisor for new webhooks.
pub const POLL_EVERY: Duration = Duration::from_millis(100);

/// Delivery counters for `/metrics`.
#[derive(Debug, Default)]
pub struct DeliveryCounters {
    /// Attempts answered 2xx.
    pub delivered: AtomicU64,
    /// Attempts that failed (each retry counts).
    pub attempts_failed: AtomicU64,
    /// Deliveries given up on (retried for a day).
    pub failed: AtomicU64,
}

/// One webhook's progress as its task last saw it, for `/metrics`.
#[derive(Debug, Default)]
pub struct Progress {
    /// Events it wants that wait after its cursor (counted up to [`task::BACKLOG_COUNTED`]).
    pub backlog: AtomicU64,
    /// When the oldest of them was recorded (unix milliseconds; 0 when none waits).
    pub oldest_waiting_ms: AtomicI64,
}

/// The events whose retry was asked for, and the bell that wakes the webhook's task.
type RetryQueue = (VecDeque<u64>, Arc<Notify>);

/// What the delivery tasks share with the admin API.
struct Shared {
    engine: Engine,
    log: Arc<dyn DeliveryLog>,
    key: WebhookKey,
    counters: DeliveryCounters,
    progress: Mutex<HashMap<WebhookId, Arc<Progress>>>,
    /// Retries an administrator asked for, per webhook, and the bell that wakes its task.
    retries: Mutex<HashMap<WebhookId, RetryQueue>>,
    stopping: AtomicBool,
    stop: Notify,
}

impl Shared {
    fn bell(&self, webhook: WebhookId) -> Arc<Notify> {
        let mut retries = self.retries.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(&retries.entry(webhook).or_default().1)
    }

    /// Queues a retry of event `event_id` for webhook `webhook` (once); the bell of its task.
    fn queue_retry(&self, webhook: WebhookId, event_id: u64) -> Arc<Notify> {
        let mut retries = self.retries.lock().unwrap_or_else(|p| p.into_inner());
        let (queue, bell) = retries.entry(webhook).or_default();
        if !queue.contains(&event_id) {
            queue.push_back(event_id);
        }
        Arc::clone(bell)
    }

    fn next_retry(&self, webhook: WebhookId) -> Option<u64> {
        let mut retries = self.retries.lock().unwrap_or_else(|p| p.into_inner());
        retries.get_mut(&webhook).and_then(|(queue, _)| queue.pop_front())
    }

    fn progress(&self, webhook: WebhookId) -> Arc<Progress> {
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(progress.entry(webhook).or_default())
    }

    /// Forgets a deleted webhook.
    fn forget(&self, webhook: WebhookId) {
        self.progress.lock().unwrap_or_else(|p| p.into_inner()).remove(&webhook);
        self.retries.lock().unwrap_or_else(|p| p.into_inner()).remove(&webhook);
        if let Err(e) = self.log.forget(webhook) {
            tracing::warn!(webhook = %webhook, error = %e, "could not forget a deleted webhook's deliveries");
        }
    }
}

/// Why a retry was not queued.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// The webhook has no delivery of that event.
    #[error("webhook {0} has no delivery of event {1}")]
    NotFound(WebhookId, u64),
    /// The delivery log could not be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// The running deliveries.
pub struct Webhooks {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Webhooks {
    /// Starts delivering the events of `engine`'s webhooks, remembering progress in `log`, with
    /// secrets derived from `key`; `https://` receivers are trusted by the web's root
    /// certificates and those of `ca_pem`.
    pub fn start(
        engine: Engine,
        log: Arc<dyn DeliveryLog>,
        key: WebhookKey,
        ca_pem: Option<&str>,
    ) -> std::io::Result<Webhooks> {
        let connector = crate::tls::https_connector(ca_pem, ANSWER_WITHIN)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("webhooks.ca_file: {e}")))?;
        let client = client::Client::new(connector);
        let shared = Arc::new(Shared {
            engine,
            log,
            key,
            counters: DeliveryCounters::default(),
            progress: Mutex::default(),
            retries: Mutex::default(),
            stopping: AtomicBool::new(false),
            stop: Notify::new(),
        });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let supervised = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("leasehold-webhooks".into())
            .spawn(move || runtime.block_on(supervise(supervised, client)))?;
        Ok(Webhooks { shared, thread: Mutex::new(Some(thread)) })
    }

    /// Webhook `id`'s secret.
    pub fn secret(&self, id: WebhookId) -> String {
        self.shared.key.secret(id)
    }

    /// Webhook `id`'s deliveries, newest first, of events before `before`.
    pub fn deliveries(&self, id: WebhookId, before: Option<u64>, limit: usize) -> Result<Vec<Delivery>, JournalError> {
        self.shared.log.deliveries(id, before, limit)
    }

    /// Asks for one more attempt of the delivery of event `event_id` to webhook `id` (a failed
    /// or delivered one; a pending one is attempted now). The delivery as it stands now.
    pub fn retry(&self, id: WebhookId, event_id: u64) -> Result<Delivery, RetryError> {
        let log = &self.shared.log;
        let Some(mut delivery) = log.delivery(id, event_id)? else {
            return Err(RetryError::NotFound(id, event_id));
        };
        delivery.retry_requested = true;
        log.record(id, &delivery)?;
        self.shared.queue_retry(id, event_id).notify_one();
        Ok(delivery)
    }

    /// The delivery counters.
    pub fn counters(&self) -> &DeliveryCounters {
        &self.shared.counters
    }

    /// Each webhook's progress.
    pub fn progress(&self) -> Vec<(WebhookId, Arc<Progress>)> {
        let progress = self.shared.progress.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = progress.iter().map(|(id, p)| (*id, Arc::clone(p))).collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }

    /// Stops every task (an attempt in flight is abandoned: its event is sent again after the
    /// restart) and makes the progress durable.
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.stop.notify_waiters();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        if let Err(e) = self.shared.log.sync() {
            tracing::warn!(error = %e, "could not make the webhooks' progress durable");
        }
    }
}

impl Drop for Webhooks {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a task per webhook until stopped; flushes the delivery log now and then.
async fn supervise(shared: Arc<Shared>, client: client::Client) {
    let mut tasks: HashMap<WebhookId, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut last_sync = tokio::time::Instant::now();
    while !shared.stopping.load(Ordering::Acquire) {
        let webhooks: Vec<WebhookId> = shared.engine.directory().webhooks().map(|w| w.id).collect();
        tasks.retain(|_, task| !task.is_finished());
        for id in webhooks {
            tasks.entry(id).or_insert_with(|| tokio::spawn(task::run(Arc::clone(&shared), client.clone(), id)));
        }
        if last_sync.elapsed() >= Duration::from_secs(1) {
            last_sync = tokio::time::Instant::now();
            if let Err(e) = shared.log.sync() {
                tracing::warn!(error = %e, "could not make the webhooks' progress durable");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(POLL_EVERY) => {}
            () = shared.stop.notified() => {}
        }
    }
    for (_, task) in tasks {
        task.abort();
    }
}
