//! Webhooks (SPEC section 11): subscriptions to events and the rules of their delivery, as plain
//! data and pure functions. Which events a webhook wants, its secret, the signature a receiver
//! checks, when the next attempt is due and when a delivery has failed are decided here; sending
//! is the transports' (`leasehold_transports::webhooks`), remembering where each webhook stands
//! is a [`DeliveryLog`]'s.
//!
//! A webhook's events come from the event log in order: the log is the outbox, and a webhook's
//! progress is one number, the last event it is done with (its cursor). Deliveries are made one
//! at a time per webhook, so its receiver sees events in their order, each at least once.

use crate::error::AdminError;
use crate::events::{type_matches, Event};
use crate::ids::WebhookId;
use crate::journal::JournalError;
use crate::time::Timestamp;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// A subscription to events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// Its id.
    pub id: WebhookId,
    /// Where events are posted (`https://` or `http://`).
    pub url: String,
    /// The event types it wants: a type, `prefix.*`, or `*` for every type.
    pub events: Vec<String>,
    /// What the vendor says it is for.
    pub description: Option<String>,
    /// Whether events are delivered; a disabled webhook keeps its place and goes on from there
    /// when enabled again.
    pub enabled: bool,
    /// The newest event when it was created: it is sent only the events after this one.
    pub start_after: u64,
}

impl Webhook {
    /// Whether it wants `event`.
    pub fn wants(&self, event: &Event) -> bool {
        self.events.iter().any(|pattern| pattern == "*" || type_matches(pattern, &event.event_type))
    }
}

/// Most event types one webhook may name.
pub const MAX_EVENT_PATTERNS: usize = 64;
/// Longest URL a webhook may have.
pub const MAX_URL_LEN: usize = 2048;
/// Longest description.
pub const MAX_DESCRIPTION_LEN: usize = 1000;

/// A new webhook, as the admin API takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhook {
    /// Where events are posted.
    pub url: String,
    /// The event types it wants.
    pub events: Vec<String>,
    /// What it is for.
    pub description: Option<String>,
}

/// A change to a webhook; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookPatch {
    /// A new URL.
    pub url: Option<String>,
    /// New event types.
    pub events: Option<Vec<String>>,
    /// A new description (`Some(None)` removes it).
    pub description: Option<Option<String>>,
    /// Enables or disables it.
    pub enabled: Option<bool>,
}

impl WebhookPatch {
    /// Applies the change to `webhook`, after checking each new value.
    pub fn apply(&self, webhook: &mut Webhook) -> Result<(), AdminError> {
        if let Some(url) = &self.url {
            webhook.url = check_url(url)?;
        }
        if let Some(events) = &self.events {
            webhook.events = check_event_patterns(events)?;
        }
        if let Some(description) = &self.description {
            webhook.description = check_description(description.as_deref())?;
        }
        if let Some(enabled) = self.enabled {
            webhook.enabled = enabled;
        }
        Ok(())
    }
}

/// Checks a new webhook's fields; the webhook they make, with `id`, starting after event
/// `start_after`.
pub fn new_webhook(id: WebhookId, new: NewWebhook, start_after: u64) -> Result<Webhook, AdminError> {
    Ok(Webhook {
        id,
        url: check_url(&new.url)?,
        events: check_event_patterns(&new.events)?,
        description: check_description(new.description.as_deref())?,
        enabled: true,
        start_after,
    })
}

/// A webhook URL: absolute `http://` or `https://` with a host, no fragment, no user info.
fn check_url(url: &str) -> Result<String, AdminError> {
    let invalid = |why: &str| AdminError::Invalid(format!("url: {why}"));
    if url.len() > MAX_URL_LEN {
        return Err(invalid(&format!("longer than {MAX_URL_LEN} bytes")));
    }
    let Some(rest) = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) else {
        return Err(invalid("must start with https:// or http://"));
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(invalid("needs a host (and no user name or password)"));
    }
    if url.contains('#') || url.chars().any(|c| c.is_ascii_whitespace() || c.is_ascii_control()) {
        return Err(invalid("may not hold a fragment, spaces or control characters"));
    }
    Ok(url.to_owned())
}

/// Event type patterns: `*`, a type, or `prefix.*`; lower-case letters, digits, `_` and `.`.
fn check_event_patterns(patterns: &[String]) -> Result<Vec<String>, AdminError> {
    if patterns.is_empty() {
        return Err(AdminError::Invalid("events: name at least one event type (or \"*\")".into()));
    }
    if patterns.len() > MAX_EVENT_PATTERNS {
        return Err(AdminError::Invalid(format!("events: at most {MAX_EVENT_PATTERNS} event types")));
    }
    for pattern in patterns {
        let name = pattern.strip_suffix(".*").unwrap_or(pattern);
        let valid = pattern == "*"
            || (!name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.'));
        if !valid {
            return Err(AdminError::Invalid(format!("events: {pattern:?} is not an event type, `prefix.*` or `*`")));
        }
    }
    let mut patterns = patterns.to_vec();
    patterns.sort();
    patterns.dedup();
    Ok(patterns)
}

fn check_description(description: Option<&str>) -> Result<Option<String>, AdminError> {
    match description {
        Some(d) if d.len() > MAX_DESCRIPTION_LEN => {
            Err(AdminError::Invalid(format!("description: longer than {MAX_DESCRIPTION_LEN} bytes")))
        }
        other => Ok(other.map(str::to_owned)),
    }
}

/// The server's key that webhook secrets are derived from: secrets are never stored, so the
/// journal and its backups hold none.
#[derive(Clone)]
pub struct WebhookKey([u8; 32]);

impl WebhookKey {
    /// The key with these bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        WebhookKey(bytes)
    }

    /// A random key (an embedder that keeps no key file: secrets change at every start).
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
        WebhookKey(bytes)
    }

    /// The key's bytes, to store it.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Webhook `id`'s secret: `whsec_` and 43 characters of base64url.
    pub fn secret(&self, id: WebhookId) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.0);
        let mut message = b"leasehold webhook secret ".to_vec();
        message.extend_from_slice(id.0.as_bytes());
        let tag = ring::hmac::sign(&key, &message);
        format!("whsec_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }
}

impl std::fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookKey(..)")
    }
}

/// The `Leasehold-Signature` header of a delivery of `body` at unix time `t`:
/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, the secret's UTF-8 bytes as the key.
pub fn signature(secret: &str, t: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(t.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    let tag = context.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// The wait before the first retry.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
pub const LONGEST_RETRY: Duration = Duration::from_secs(3600);
/// How long after its event a delivery is still retried.
pub const RETRY_FOR: Duration = Duration::from_secs(24 * 3600);
/// How long a receiver has to answer.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// The wait before the next attempt after `failures` failed attempts in a row (at least one):
/// doubling from [`FIRST_RETRY`] up to [`LONGEST_RETRY`]. The count is the webhook's, not the
/// event's: a receiver that is down is tried less and less often whichever event is waiting.
pub fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    FIRST_RETRY.saturating_mul(1 << doublings).min(LONGEST_RETRY)
}

/// Whether a delivery of an event recorded at `event_at` whose attempt failed at `now` has
/// failed for good: [`RETRY_FOR`] has passed since the event.
pub fn gives_up(event_at: Timestamp, now: Timestamp) -> bool {
    now.millis_since(event_at) >= RETRY_FOR.as_millis() as u64
}

/// Where one delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryStatus {
    /// Not delivered yet; attempted again at `next_attempt_at`.
    Pending,
    /// A receiver answered 2xx.
    Delivered,
    /// Retried for [`RETRY_FOR`] without success; retried again only when asked.
    Failed,
}

impl DeliveryStatus {
    /// As SPEC section 11 names it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

/// One event's delivery to one webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The event.
    pub event_id: u64,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// The status code of the last answer, if one came.
    pub last_status_code: Option<u16>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// When the last attempt was made.
    pub last_attempt_at: Option<Timestamp>,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<Timestamp>,
    /// An administrator asked for one more attempt (kept across restarts until it is made).
    pub retry_requested: bool,
}

impl Delivery {
    /// A delivery not attempted yet.
    pub fn new(event_id: u64) -> Self {
        Delivery {
            event_id,
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_status_code: None,
            last_error: None,
            last_attempt_at: None,
            next_attempt_at: None,
            retry_requested: false,
        }
    }
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A 2xx answer with this code.
    Delivered(u16),
    /// Another answer with this code.
    Refused(u16),
    /// No answer: connection refused, reset, timed out.
    NoAnswer(String),
}

impl Delivery {
    /// The delivery after an attempt at `now` came to `outcome`, for an event recorded at
    /// `event_at`; `retry_in` is the wait before the next attempt should it be needed. A
    /// requested retry is one attempt: when it fails the delivery stays failed.
    pub fn attempted(
        &self,
        outcome: &AttemptOutcome,
        now: Timestamp,
        event_at: Timestamp,
        retry_in: Duration,
    ) -> Delivery {
        let mut next = self.clone();
        next.attempts = next.attempts.saturating_add(1);
        next.last_attempt_at = Some(now);
        let manual = std::mem::take(&mut next.retry_requested) && self.status != DeliveryStatus::Pending;
        let (code, error) = match outcome {
            AttemptOutcome::Delivered(code) => (Some(*code), None),
            AttemptOutcome::Refused(code) => (Some(*code), Some(format!("the receiver answered {code}"))),
            AttemptOutcome::NoAnswer(why) => (None, Some(why.clone())),
        };
        next.last_status_code = code;
        next.last_error = error;
        if matches!(outcome, AttemptOutcome::Delivered(_)) {
            next.status = DeliveryStatus::Delivered;
            next.next_attempt_at = None;
        } else if manual || gives_up(event_at, now) {
            next.status = DeliveryStatus::Failed;
            next.next_attempt_at = None;
        } else {
            next.status = DeliveryStatus::Pending;
            next.next_attempt_at = Some(now.plus_millis(retry_in.as_millis() as i64));
        }
        next
    }
}

/// Where each webhook's deliveries stand, kept apart from the journal's log: progress is
/// written without waiting for the disk, because losing the newest of it only sends those
/// events again (deliveries are at least once).
pub trait DeliveryLog: Send + Sync + 'static {
    /// The last event webhook `webhook` is done with (delivered or failed), if it recorded one.
    fn cursor(&self, webhook: WebhookId) -> Result<Option<u64>, JournalError>;
    /// Records that webhook `webhook` is done with every event up to `event_id`.
    fn advance(&self, webhook: WebhookId, event_id: u64) -> Result<(), JournalError>;
    /// Records a delivery as it stands now.
    fn record(&self, webhook: WebhookId, delivery: &Delivery) -> Result<(), JournalError>;
    /// The delivery of event `event_id` to webhook `webhook`.
    fn delivery(&self, webhook: WebhookId, event_id: u64) -> Result<Option<Delivery>, JournalError>;
    /// Deliveries of webhook `webhook`, newest first, those of events before `before` only.
    fn deliveries(&self, webhook: WebhookId, before: Option<u64>, limit: usize) -> Result<Vec<Delivery>, JournalError>;
    /// Forgets the deliveries of events before `event_id` (events the log no longer keeps).
    fn forget_before(&self, webhook: WebhookId, event_id: u64) -> Result<(), JournalError>;
    /// Forgets everything about webhook `webhook` (deleted).
    fn forget(&self, webhook: WebhookId) -> Result<(), JournalError>;
    /// Makes what was recorded durable (called now and then, never on a request's path).
    fn sync(&self) -> Result<(), JournalError> {
        Ok(())
    }
}

/// A [`DeliveryLog`] in memory, for embedders and tests.
#[derive(Debug, Default)]
pub struct MemoryDeliveryLog {
    state: Mutex<MemoryDeliveries>,
}

#[derive(Debug, Default)]
struct MemoryDeliveries {
    cursors: BTreeMap<WebhookId, u64>,
    deliveries: BTreeMap<(WebhookId, u64), Delivery>,
}

impl MemoryDeliveryLog {
    fn state(&self) -> std::sync::MutexGuard<'_, MemoryDeliveries> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl DeliveryLog for MemoryDeliveryLog {
    fn cursor(&self, webhook: WebhookId) -> Result<Option<u64>, JournalError> {
        Ok(self.state().cursors.get(&webhook).copied())
    }

    fn advance(&self, webhook: WebhookId, event_id: u64) -> Result<(), JournalError> {
        self.state().cursors.insert(webhook, event_id);
        Ok(())
    }

    fn record(&self, webhook: WebhookId, delivery: &Delivery) -> Result<(), JournalError> {
        self.state().deliveries.insert((webhook, delivery.event_id), delivery.clone());
        Ok(())
    }

    fn delivery(&self, webhook: WebhookId, event_id: u64) -> Result<Option<Delivery>, JournalError> {
        Ok(self.state().deliveries.get(&(webhook, event_id)).cloned())
    }

    fn deliveries(&self, webhook: WebhookId, before: Option<u64>, limit: usize) -> Result<Vec<Delivery>, JournalError> {
        let end = before.unwrap_or(u64::MAX);
        let state = self.state();
        Ok(state.deliveries.range((webhook, 0)..(webhook, end)).rev().take(limit).map(|(_, d)| d.clone()).collect())
    }

    fn forget_before(&self, webhook: WebhookId, event_id: u64) -> Result<(), JournalError> {
        self.state().deliveries.retain(|(w, e), _| *w != webhook || *e >= event_id);
        Ok(())
    }

    fn forget(&self, webhook: WebhookId) -> Result<(), JournalError> {
        let mut state = self.state();
        state.cursors.remove(&webhook);
        state.deliveries.retain(|(w, _), _| *w != webhook);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Actor, Subject};
    use uuid::Uuid;

    fn webhook(events: &[&str]) -> Webhook {
        let new = NewWebhook {
            url: "http://127.0.0.1:9/hook".into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            description: None,
        };
        new_webhook(WebhookId(Uuid::nil()), new, 0).unwrap()
    }

    fn event(event_type: &str) -> Event {
        Event {
            event_type: event_type.into(),
            actor: Actor::admin(),
            subject: Subject { kind: "license".into(), id: "L".into() },
            data: "{}".into(),
        }
    }

    #[test]
    fn a_webhook_wants_the_types_it_names_by_name_prefix_or_star() {
        let hook = webhook(&["license.*", "seat.exhausted"]);
        assert!(hook.wants(&event("license.revoked")));
        assert!(hook.wants(&event("seat.exhausted")));
        assert!(!hook.wants(&event("licensee.created")));
        assert!(!hook.wants(&event("credit.threshold")));
        assert!(webhook(&["*"]).wants(&event("credit.threshold")));
    }

    #[test]
    fn bad_urls_and_patterns_are_refused() {
        let refused = |url: &str, events: &[&str]| {
            let new = NewWebhook {
                url: url.into(),
                events: events.iter().map(|e| e.to_string()).collect(),
                description: None,
            };
            new_webhook(WebhookId(Uuid::nil()), new, 0).is_err()
        };
        assert!(!refused("http://example.com:8080/hooks?x=1", &["license.*"]));
        assert!(!refused("https://hooks.example.com/leasehold", &["*"]));
        assert!(refused("https://", &["*"]));
        assert!(refused("ftp://example.com/", &["license.*"]));
        assert!(refused("http:///path", &["license.*"]));
        assert!(refused("http://user:pw@example.com/", &["license.*"]));
        assert!(refused("http://example.com/a b", &["license.*"]));
        assert!(refused("http://example.com/", &[]));
        assert!(refused("http://example.com/", &["License.*"]));
        assert!(refused("http://example.com/", &["license.**"]));
        assert!(refused("http://example.com/", &[".*"]));
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body_in_hex() {
        // The digest Python's hmac module gives for the same secret, time and body.
        let header = signature("whsec_test", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(header, "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789");
    }

    #[test]
    fn secrets_differ_per_webhook_and_per_key_and_are_stable() {
        let key = WebhookKey::new([7; 32]);
        let (a, b) = (WebhookId(Uuid::from_u128(1)), WebhookId(Uuid::from_u128(2)));
        assert_eq!(key.secret(a), key.secret(a));
        assert_ne!(key.secret(a), key.secret(b));
        assert_ne!(key.secret(a), WebhookKey::new([8; 32]).secret(a));
        assert!(key.secret(a).starts_with("whsec_") && key.secret(a).len() == 6 + 43);
    }

    #[test]
    fn retries_double_from_a_second_to_an_hour() {
        let waits: Vec<u64> = (1..=14).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600]);
        assert_eq!(retry_delay(u32::MAX), LONGEST_RETRY);
    }

    #[test]
    fn a_delivery_is_retried_for_a_day_then_fails_and_a_requested_retry_is_one_attempt() {
        let at = Timestamp::from_secs(1_000);
        let hour = Duration::from_secs(3600);
        let failed = AttemptOutcome::NoAnswer("connection refused".into());
        let first = Delivery::new(5).attempted(&failed, at.plus_secs(1), at, hour);
        assert_eq!(
            (first.status, first.attempts, first.next_attempt_at),
            (DeliveryStatus::Pending, 1, Some(at.plus_secs(3601)))
        );
        let late = first.attempted(&AttemptOutcome::Refused(500), at.plus_secs(RETRY_FOR.as_secs()), at, hour);
        assert_eq!(
            (late.status, late.last_status_code, late.next_attempt_at),
            (DeliveryStatus::Failed, Some(500), None)
        );
        let asked = Delivery { retry_requested: true, ..late.clone() };
        let again = asked.attempted(&failed, at.plus_secs(2 * RETRY_FOR.as_secs()), at, hour);
        assert_eq!((again.status, again.attempts, again.retry_requested), (DeliveryStatus::Failed, 3, false));
        let delivered =
            asked.attempted(&AttemptOutcome::Delivered(204), at.plus_secs(2 * RETRY_FOR.as_secs()), at, hour);
        assert_eq!(
            (delivered.status, delivered.last_status_code, delivered.last_error),
            (DeliveryStatus::Delivered, Some(204), None)
        );
    }

    #[test]
    fn the_memory_log_lists_newest_first_and_forgets() {
        let log = MemoryDeliveryLog::default();
        let hook = WebhookId(Uuid::from_u128(1));
        for id in [3, 5, 9] {
            log.record(hook, &Delivery::new(id)).unwrap();
        }
        log.record(WebhookId(Uuid::from_u128(2)), &Delivery::new(4)).unwrap();
        let ids = |v: Vec<Delivery>| v.iter().map(|d| d.event_id).collect::<Vec<_>>();
        assert_eq!(ids(log.deliveries(hook, None, 10).unwrap()), [9, 5, 3]);
        assert_eq!(ids(log.deliveries(hook, Some(9), 1).unwrap()), [5]);
        log.forget_before(hook, 5).unwrap();
        assert_eq!(ids(log.deliveries(hook, None, 10).unwrap()), [9, 5]);
        log.advance(hook, 9).unwrap();
        log.forget(hook).unwrap();
        assert_eq!((log.cursor(hook).unwrap(), log.deliveries(hook, None, 10).unwrap().len()), (None, 0));
    }
}
