//! One webhook's deliveries: its events after its cursor, one at a time, in order.

use super::client::Client;
use super::Shared;
use crate::http::admin::shapes;
use bytes::Bytes;
use leasehold_engine::events::{EventQuery, StoredEvent};
use leasehold_engine::ids::WebhookId;
use leasehold_engine::journal::JournalError;
use leasehold_engine::webhooks::{retry_delay, AttemptOutcome, Delivery, DeliveryStatus, Webhook};
use leasehold_engine::Timestamp;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Events read from the log at a time: all a task holds in memory, whatever its backlog.
const PAGE: usize = 64;
/// The backlog gauge counts waiting events up to this many.
pub const BACKLOG_COUNTED: usize = 10_000;
/// How often the backlog gauge is recounted while events wait.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);
/// Deliveries recorded between two trims of those whose events the log no longer keeps.
const TRIM_EVERY: u32 = 1000;

/// Where one webhook stands.
struct Position {
    /// The last event it is done with (durable in the delivery log, give or take the newest).
    cursor: u64,
    /// Events read after the cursor and not yet looked at.
    page: VecDeque<StoredEvent>,
    /// The last event read into `page` (or passed over as unwanted).
    read_through: u64,
    /// The event being delivered and its delivery.
    head: Option<(StoredEvent, Delivery)>,
    /// Attempts that failed in a row: the back-off's step.
    failures: u32,
    recorded: u32,
    backlog_counted_at: Option<tokio::time::Instant>,
}

/// Delivers webhook `id`'s events until it is deleted or the deliveries stop.
pub(super) async fn run(shared: Arc<Shared>, client: Client, id: WebhookId) {
    let bell = shared.bell(id);
    let progress = shared.progress(id);
    let mut position = None;
    loop {
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let Some(webhook) = shared.engine.directory().webhook(id).cloned() else {
            shared.forget(id);
            return;
        };
        let busy = match position.as_mut() {
            None => match start(&shared, &webhook) {
                Ok(started) => {
                    position = Some(started);
                    true
                }
                Err(e) => {
                    tracing::warn!(webhook = %id, error = %e, "could not read the webhook's progress");
                    false
                }
            },
            Some(position) if webhook.enabled => match step(&shared, &client, &webhook, position).await {
                Ok(busy) => {
                    count_backlog(&shared, &webhook, position, &progress);
                    busy
                }
                Err(e) => {
                    tracing::warn!(webhook = %id, error = %e, "webhook delivery stalled on the journal");
                    false
                }
            },
            Some(_) => false,
        };
        if busy {
            tokio::task::yield_now().await;
        } else {
            tokio::select! {
                () = tokio::time::sleep(super::POLL_EVERY) => {}
                () = bell.notified() => {}
            }
        }
    }
}

/// Where `webhook` stands after a restart: its cursor, and the requested retries it had not
/// made yet.
fn start(shared: &Shared, webhook: &Webhook) -> Result<Position, JournalError> {
    let cursor = shared.log.cursor(webhook.id)?.unwrap_or(0).max(webhook.start_after);
    let mut asked: Vec<u64> = shared
        .log
        .deliveries(webhook.id, None, BACKLOG_COUNTED)?
        .into_iter()
        .filter(|d| d.retry_requested && d.event_id <= cursor)
        .map(|d| d.event_id)
        .collect();
    asked.sort_unstable();
    for event_id in asked {
        shared.queue_retry(webhook.id, event_id);
    }
    Ok(Position {
        cursor,
        page: VecDeque::new(),
        read_through: cursor,
        head: None,
        failures: 0,
        recorded: 0,
        backlog_counted_at: None,
    })
}

/// Does the next thing there is to do: a requested retry, an attempt that is due, or reading
/// the next events. Whether it did anything (if not, the task waits a while).
async fn step(
    shared: &Shared,
    client: &Client,
    webhook: &Webhook,
    position: &mut Position,
) -> Result<bool, JournalError> {
    if let Some(event_id) = shared.next_retry(webhook.id) {
        retry(shared, client, webhook, position, event_id).await?;
        return Ok(true);
    }
    if position.head.is_none() {
        let Some(event) = next_wanted(shared, webhook, position)? else {
            return Ok(false);
        };
        let delivery = shared.log.delivery(webhook.id, event.id)?.unwrap_or_else(|| Delivery::new(event.id));
        position.head = Some((event, delivery));
    }
    let (event, delivery) = position.head.as_ref().expect("a head was found");
    let now = shared.engine.now();
    if delivery.next_attempt_at.is_some_and(|due| due > now) {
        return Ok(false);
    }
    let (event, delivery) = (event.clone(), delivery.clone());
    let attempted = attempt(shared, client, webhook, position, &event, &delivery).await?;
    if attempted.status != DeliveryStatus::Pending {
        position.cursor = event.id;
        position.head = None;
        shared.log.advance(webhook.id, event.id)?;
    } else {
        position.head = Some((event, attempted));
    }
    Ok(true)
}

/// The next event after the cursor that `webhook` wants; unwanted events on the way are done
/// with.
fn next_wanted(
    shared: &Shared,
    webhook: &Webhook,
    position: &mut Position,
) -> Result<Option<StoredEvent>, JournalError> {
    loop {
        if position.page.is_empty() {
            let query = EventQuery {
                after: Some(position.read_through),
                event_type: None,
                subject: None,
                within: None,
                limit: PAGE,
            };
            let page = shared.engine.events(&query).map_err(|e| JournalError::Io(e.to_string()))?;
            if page.items.is_empty() {
                if position.cursor < position.read_through {
                    position.cursor = position.read_through;
                    shared.log.advance(webhook.id, position.cursor)?;
                }
                return Ok(None);
            }
            position.read_through = page.items.last().map_or(position.read_through, |e| e.id);
            position.page.extend(page.items);
        }
        while let Some(event) = position.page.pop_front() {
            if webhook.wants(&event.event) {
                return Ok(Some(event));
            }
            position.cursor = event.id;
        }
    }
}

/// One attempt of `delivery` of `event`; the delivery as recorded after it.
async fn attempt(
    shared: &Shared,
    client: &Client,
    webhook: &Webhook,
    position: &mut Position,
    event: &StoredEvent,
    delivery: &Delivery,
) -> Result<Delivery, JournalError> {
    let body = Bytes::from(shapes::event(event).to_string());
    let secret = shared.key.secret(webhook.id);
    let sent_at = shared.engine.now();
    let outcome = client.post(&webhook.url, &secret, event, body, sent_at).await;
    let counters = &shared.counters;
    if matches!(outcome, AttemptOutcome::Delivered(_)) {
        position.failures = 0;
        counters.delivered.fetch_add(1, Ordering::Relaxed);
    } else {
        position.failures = position.failures.saturating_add(1);
        counters.attempts_failed.fetch_add(1, Ordering::Relaxed);
    }
    let attempted = delivery.attempted(&outcome, shared.engine.now(), event.at, retry_delay(position.failures.max(1)));
    if attempted.status == DeliveryStatus::Failed && delivery.status != DeliveryStatus::Failed {
        counters.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(webhook = %webhook.id, event = event.id, "gave up on a delivery");
    }
    shared.log.record(webhook.id, &attempted)?;
    position.recorded += 1;
    if position.recorded.is_multiple_of(TRIM_EVERY) {
        trim(shared, webhook)?;
    }
    Ok(attempted)
}

/// A retry an administrator asked for: the pending head is attempted now; an event the webhook
/// is done with is attempted once more, out of order.
async fn retry(
    shared: &Shared,
    client: &Client,
    webhook: &Webhook,
    position: &mut Position,
    event_id: u64,
) -> Result<(), JournalError> {
    if let Some((_, delivery)) = position.head.as_mut().filter(|head| head.0.id == event_id) {
        delivery.next_attempt_at = None;
        delivery.retry_requested = false;
        return Ok(());
    }
    let Some(delivery) = shared.log.delivery(webhook.id, event_id)?.filter(|d| d.retry_requested) else {
        return Ok(());
    };
    let query =
        EventQuery { after: Some(event_id.saturating_sub(1)), event_type: None, subject: None, within: None, limit: 1 };
    let page = shared.engine.events(&query).map_err(|e| JournalError::Io(e.to_string()))?;
    match page.items.into_iter().next().filter(|e| e.id == event_id) {
        Some(event) => {
            attempt(shared, client, webhook, position, &event, &delivery).await?;
        }
        None => {
            // The log no longer keeps the event: nothing to send.
            let gone =
                Delivery { retry_requested: false, last_error: Some("the event is no longer kept".into()), ..delivery };
            shared.log.record(webhook.id, &gone)?;
        }
    }
    Ok(())
}

/// Forgets the deliveries of events the log no longer keeps.
fn trim(shared: &Shared, webhook: &Webhook) -> Result<(), JournalError> {
    let oldest = EventQuery { after: None, event_type: None, subject: None, within: None, limit: 1 };
    let page = shared.engine.events(&oldest).map_err(|e| JournalError::Io(e.to_string()))?;
    match page.items.first() {
        Some(first) => shared.log.forget_before(webhook.id, first.id),
        None => Ok(()),
    }
}

/// Recounts the events waiting for `webhook`, now and then.
fn count_backlog(shared: &Shared, webhook: &Webhook, position: &mut Position, progress: &super::Progress) {
    let due = position.backlog_counted_at.is_none_or(|at| at.elapsed() >= BACKLOG_EVERY);
    let idle =
        position.head.is_none() && position.page.is_empty() && position.read_through >= shared.engine.last_event_id();
    if idle {
        progress.backlog.store(0, Ordering::Relaxed);
        progress.oldest_waiting_ms.store(0, Ordering::Relaxed);
        return;
    }
    if !due {
        return;
    }
    position.backlog_counted_at = Some(tokio::time::Instant::now());
    let query = EventQuery {
        after: Some(position.cursor),
        event_type: None,
        subject: None,
        within: None,
        limit: BACKLOG_COUNTED,
    };
    let Ok(page) = shared.engine.events(&query) else { return };
    let mut waiting = page.items.iter().filter(|e| webhook.wants(&e.event));
    let oldest: Option<Timestamp> = waiting.clone().next().map(|e| e.at);
    progress.backlog.store(waiting.by_ref().count() as u64, Ordering::Relaxed);
    progress.oldest_waiting_ms.store(oldest.map_or(0, Timestamp::as_millis), Ordering::Relaxed);
}
