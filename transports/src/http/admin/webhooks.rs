//! `/admin/webhooks` (SPEC section 11): subscriptions, their deliveries and manual retries.
//! The secret is answered once, when the webhook is created; it is derived from the server's
//! webhook key, so a retried create (same `Idempotency-Key`, same id) answers the same secret.

use super::{path_id, Admin, Call, Listing};
use crate::http::reply::{self, ApiError, Body};
use crate::webhooks::{RetryError, Webhooks};
use hyper::{Method, Response, StatusCode};
use leasehold_engine::decide::Idempotency;
use leasehold_engine::journal::JournalError;
use leasehold_engine::webhooks::{Delivery, NewWebhook, Webhook, WebhookPatch};
use leasehold_engine::{EngineError, WebhookId};
use serde::Deserialize;
use serde_json::{json, Value};

/// `POST /admin/webhooks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookIn {
    url: String,
    events: Vec<String>,
    #[serde(default)]
    description: Option<String>,
}

/// `PATCH /admin/webhooks/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookPatchIn {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    events: Option<Vec<String>>,
    #[serde(default, deserialize_with = "super::shapes::present")]
    description: Option<Option<String>>,
    #[serde(default)]
    enabled: Option<bool>,
}

/// Answers a request under `/admin/webhooks` (`segments` after `webhooks`).
pub(super) async fn route(
    state: &Admin<'_>,
    call: &Call,
    segments: &[&str],
    method: &Method,
    once: Option<&Idempotency>,
) -> Result<Response<Body>, ApiError> {
    let webhooks = state.http.webhooks.as_deref().ok_or_else(|| {
        ApiError::not_found("this server delivers no webhooks (it was started without a delivery log)")
    })?;
    match (segments, method) {
        ([], &Method::POST) => create(state, webhooks, call, once).await,
        ([], &Method::GET) => {
            let listing = Listing::parse(&call.query, &[])?;
            let directory = state.engine.directory();
            Ok(listing.page(directory.webhooks(), |w| w.id.to_string(), webhook))
        }
        ([id], &Method::GET) => {
            let id: WebhookId = path_id("webhook", id)?;
            let found = state.engine.directory().webhook(id).map(webhook);
            found.map(|v| reply::json(StatusCode::OK, &v)).ok_or_else(|| ApiError::not_found(format!("webhook {id}")))
        }
        ([id], &Method::PATCH) => {
            let id: WebhookId = path_id("webhook", id)?;
            let body: WebhookPatchIn = call.required()?;
            let patch = WebhookPatch {
                url: body.url,
                events: body.events,
                description: body.description,
                enabled: body.enabled,
            };
            let changed = state.engine.patch_webhook(id, patch).await?;
            Ok(reply::json(StatusCode::OK, &webhook(&changed)))
        }
        ([id], &Method::DELETE) => {
            state.engine.delete_webhook(path_id("webhook", id)?).await?;
            Ok(reply::empty(StatusCode::NO_CONTENT))
        }
        ([id, "deliveries"], &Method::GET) => {
            let id = known(state, id)?;
            let listing = Listing::parse(&call.query, &[])?;
            let before = match listing.after.as_deref() {
                None => None,
                Some(c) => Some(c.parse::<u64>().map_err(|_| ApiError::bad_request("cursor must be an event id"))?),
            };
            let mut found = webhooks.deliveries(id, before, listing.limit + 1).map_err(journal)?;
            let more = found.len() > listing.limit;
            found.truncate(listing.limit);
            let next_cursor = if more { found.last().map(|d| d.event_id.to_string()) } else { None };
            let items: Vec<Value> = found.iter().map(delivery).collect();
            Ok(reply::json(StatusCode::OK, &json!({"items": items, "next_cursor": next_cursor})))
        }
        ([id, "deliveries", event_id, "retry"], &Method::POST) => {
            let id = known(state, id)?;
            let event_id: u64 = path_id("event", event_id)?;
            match webhooks.retry(id, event_id) {
                Ok(asked) => Ok(reply::json(StatusCode::ACCEPTED, &delivery(&asked))),
                Err(RetryError::NotFound(..)) => {
                    Err(ApiError::not_found(format!("webhook {id} has no delivery of event {event_id}")))
                }
                Err(RetryError::Journal(e)) => Err(journal(e)),
            }
        }
        _ if allowed(segments).is_empty() => {
            Err(ApiError::not_found(format!("no admin resource at /admin/webhooks/{}", segments.join("/"))))
        }
        _ => Err(ApiError::method_not_allowed(allowed(segments))),
    }
}

/// The methods of a path under `/admin/webhooks`; empty for no such path.
pub(super) fn allowed(segments: &[&str]) -> &'static str {
    match segments {
        [] => "GET or POST",
        [_] => "GET, PATCH or DELETE",
        [_, "deliveries"] => "GET",
        [_, "deliveries", _, "retry"] => "POST",
        _ => "",
    }
}

async fn create(
    state: &Admin<'_>,
    webhooks: &Webhooks,
    call: &Call,
    once: Option<&Idempotency>,
) -> Result<Response<Body>, ApiError> {
    let body: WebhookIn = call.required()?;
    let new = NewWebhook { url: body.url, events: body.events, description: body.description };
    let created = match once {
        Some(idempotency) => state.engine.create_webhook_once(idempotency, new).await?,
        None => state.engine.create_webhook(new).await?,
    };
    let mut answer = webhook(&created);
    answer["secret"] = json!(webhooks.secret(created.id));
    Ok(reply::json(StatusCode::CREATED, &answer))
}

/// The id of a webhook that exists.
fn known(state: &Admin<'_>, id: &str) -> Result<WebhookId, ApiError> {
    let id: WebhookId = path_id("webhook", id)?;
    match state.engine.directory().webhook(id) {
        Some(_) => Ok(id),
        None => Err(ApiError::not_found(format!("webhook {id}"))),
    }
}

fn journal(e: JournalError) -> ApiError {
    EngineError::from(e).into()
}

/// A webhook as answered (never its secret).
fn webhook(w: &Webhook) -> Value {
    json!({
        "id": w.id,
        "url": w.url,
        "events": w.events,
        "description": w.description,
        "enabled": w.enabled,
    })
}

/// A delivery as answered.
fn delivery(d: &Delivery) -> Value {
    json!({
        "event_id": d.event_id.to_string(),
        "status": d.status.as_str(),
        "attempts": d.attempts,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "last_attempt_at": d.last_attempt_at.map(super::shapes::rfc3339),
        "next_attempt_at": d.next_attempt_at.map(super::shapes::rfc3339),
        "retry_requested": d.retry_requested,
    })
}
