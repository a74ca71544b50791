//! The Scale actions, `POST /licensing/actions/{action}[/{licenseKey}]`: checkout, heartbeat and
//! release, and their metered twins (start, heartbeat and end metered use). Each takes a JSON
//! array and answers an array in the same order: signed tokens for checkouts and heartbeats
//! (JWEs when the client sent `cliPublicKey`), `LicenseReleaseResult` objects for releases.
//!
//! A refusal is an answer: a signed token with `status: "error"` and the SPEC's `errorCode`
//! (or a result with `released: false`), in its place in the 200 array, so the rest of the batch
//! keeps its grants. So is a full queue (`overloaded`) for one item. Only a request that cannot be
//! understood (400), is not authenticated (401, 403), names an unknown license key (404) or meets
//! broken infrastructure (5xx) fails as a whole.
//!
//! Metered use maps onto the same engine calls: start is a consume with `metered` set (the rules
//! then record use without limiting it, and refuse an enforced license), heartbeat a renewal,
//! end a release.

use super::caller::{self, Caller};
use super::headers::{self, ClientHeaders};
use super::shapes;
use crate::http::idempotency::{self, Secret};
use crate::http::reply::{self, ApiError, Body, RequestBody};
use crate::http::HttpState;
use bytes::Bytes;
use hyper::header::CONTENT_TYPE;
use hyper::{Request, Response, StatusCode};
use leasehold_engine::decide::Idempotency;
use leasehold_engine::model::Dimension;
use leasehold_engine::tokens::{Dialect, Subject};
use leasehold_engine::{
    ConsumeRequest, Decision, Denial, EngineError, ErrorCode, Grant, LeaseId, LicenseId, ReleaseRequest, Releaser,
    RenewRequest, UsedQty,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::net::IpAddr;
use std::str::FromStr;

/// Most entries one request may carry.
pub const MAX_BATCH: usize = 64;

/// What an action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `checkout` (`metered: false`) or `start-metered-use`.
    Start {
        /// Metered use.
        metered: bool,
    },
    /// `heartbeat` or `heartbeat-metered-use`.
    Heartbeat,
    /// `release` or `end-metered-use`.
    End,
}

impl Action {
    /// The action a path segment names.
    pub fn of(name: &str) -> Option<Action> {
        Some(match name {
            "checkout" => Action::Start { metered: false },
            "start-metered-use" => Action::Start { metered: true },
            "heartbeat" | "heartbeat-metered-use" => Action::Heartbeat,
            "release" | "end-metered-use" => Action::End,
            _ => return None,
        })
    }
}

/// One entry of a checkout or metered start (the SDK's `LicenseCheckoutArguments`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartArgs {
    product_name: String,
    /// How `qty` is read: uses, seconds, or (`SEATS`) not at all, a seat being one.
    #[serde(default)]
    qty_dimension: Option<Dimension>,
    #[serde(default)]
    qty: Option<u64>,
    /// Overrides the `cliVersion` header for this entry.
    #[serde(default)]
    client_version: Option<String>,
    #[serde(default)]
    license_id: Option<LicenseId>,
}

/// One entry of a heartbeat (`LicenseHeartbeatArguments`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HeartbeatArgs {
    lease_id: String,
    #[serde(default)]
    treat_as_incremental_qty: bool,
    #[serde(default)]
    used_qty: Option<u64>,
}

/// One entry of a release (`LicenseReleaseArguments`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EndArgs {
    lease_id: String,
    #[serde(default)]
    final_used_qty: Option<u64>,
}

/// Answers one action; `license_key` is the path's last segment, when there is one.
pub async fn handle(
    state: &HttpState,
    req: Request<RequestBody>,
    action: Action,
    license_key: Option<&str>,
    client_ip: IpAddr,
) -> Result<Response<Body>, ApiError> {
    let caller = caller::identify(state, req.headers(), license_key).await?;
    let client = headers::read(req.headers())?;
    let idempotency_key = idempotency::client_key(req.headers())?;
    let content_type = req.headers().get(CONTENT_TYPE).map(|v| v.to_str().unwrap_or("?").to_owned());
    let body = reply::read_body(req, state.limits).await?;
    match action {
        Action::Start { metered } => {
            let args: Vec<StartArgs> = batch(content_type.as_deref(), &body)?;
            let retry = idempotency_key.as_deref().map(|key| Retry { key, body: &body, metered });
            let answers = start(state, &caller, &client, args, metered, client_ip, retry).await?;
            sign_all(state, answers, &client).await
        }
        Action::Heartbeat | Action::End => {
            let run = renew_or_end(state, &caller, &client, action, content_type.as_deref(), &body);
            match idempotency_key {
                None => run.await,
                Some(key) => {
                    let anchors = serde_json::to_vec(&client.anchors).unwrap_or_default();
                    let name: &[u8] = if action == Action::Heartbeat { b"heartbeat" } else { b"end" };
                    let once = Idempotency::of(&caller.credential(), &key, 0, &[name, &body, &anchors]);
                    idempotency::answer_once(state, once, Secret::None, run).await
                }
            }
        }
    }
}

/// A heartbeat (renewals) or a release: the batch's answers.
async fn renew_or_end(
    state: &HttpState,
    caller: &Caller,
    client: &ClientHeaders,
    action: Action,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    if action == Action::Heartbeat {
        let args: Vec<HeartbeatArgs> = batch(content_type, body)?;
        let answers = heartbeat(state, caller, client, args).await?;
        sign_all(state, answers, client).await
    } else {
        let args: Vec<EndArgs> = batch(content_type, body)?;
        let results = end(state, caller, args).await?;
        Ok(reply::json(StatusCode::OK, &results))
    }
}

/// A JSON array of at most [`MAX_BATCH`] entries.
fn batch<T: DeserializeOwned>(content_type: Option<&str>, body: &[u8]) -> Result<Vec<T>, ApiError> {
    let entries: Vec<T> = reply::parse_json(content_type, body)?;
    if entries.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!("at most {MAX_BATCH} entries per request")));
    }
    Ok(entries)
}

/// A full queue for one entry is that entry's `overloaded` answer; other failures fail the
/// request (the journal or the signer is broken).
fn overload_as_denial<T>(answer: Result<Decision<T>, EngineError>) -> Result<Decision<T>, ApiError> {
    match answer {
        Ok(decision) => Ok(decision),
        Err(EngineError::Overloaded) => {
            Ok(Decision::Denied(Denial::new(ErrorCode::Overloaded, "the server is at capacity; retry shortly")))
        }
        Err(e) => Err(e.into()),
    }
}

fn denied<T>(code: ErrorCode, message: &'static str) -> Decision<T> {
    Decision::Denied(Denial::new(code, message))
}

/// A decision to answer with a Scale token, and what it was about (the product of a checkout;
/// `None` for a heartbeat, whose denial names no product).
type Answer = (Option<String>, Decision<Grant>);

/// A checkout the client may retry: its `Idempotency-Key` and what identifies the request.
struct Retry<'a> {
    key: &'a str,
    body: &'a [u8],
    metered: bool,
}

impl Retry<'_> {
    /// The idempotency of entry `part` of the request, by `caller` with `client`'s headers.
    fn of(&self, caller: &Caller, client: &ClientHeaders, part: usize) -> Option<Idempotency> {
        let credential = caller.credential();
        let anchors = serde_json::to_vec(&client.anchors).unwrap_or_default();
        let action: &[u8] = if self.metered { b"start-metered-use" } else { b"checkout" };
        idempotency::of(Some(self.key), &credential, part, &[action, self.body, &anchors])
    }
}

async fn start(
    state: &HttpState,
    caller: &Caller,
    client: &ClientHeaders,
    args: Vec<StartArgs>,
    metered: bool,
    client_ip: IpAddr,
    retry: Option<Retry<'_>>,
) -> Result<Vec<Answer>, ApiError> {
    let mut answers = Vec::with_capacity(args.len());
    for (part, arg) in args.into_iter().enumerate() {
        let mut req = ConsumeRequest::new(caller.consumer(), arg.product_name.clone());
        req.anchors = client.anchors.clone();
        if let Some(version) = arg.client_version.filter(|v| !v.is_empty()) {
            req.anchors.version = Some(version);
        }
        req.client_ip = Some(client_ip);
        req.metered = metered;
        req.qty = if arg.qty_dimension == Some(Dimension::Seats) { None } else { arg.qty };
        req.filters.license = arg.license_id;
        req.idempotency = retry.as_ref().and_then(|r| r.of(caller, client, part));
        let decision = match caller {
            Caller::Consumer(_) => overload_as_denial(state.engine.consume(req).await)?,
            Caller::Key { license, .. } if arg.license_id.is_some_and(|named| named != *license) => {
                denied(ErrorCode::NoLicenseFound, "the license key is for another license")
            }
            Caller::Key { key, .. } => {
                let answer = state.engine.consume_by_license_key(key, req).await.map(|found| {
                    found.unwrap_or_else(|| denied(ErrorCode::NoLicenseFound, "no license has this license key"))
                });
                overload_as_denial(answer)?
            }
        };
        if let Decision::Denied(denial) = &decision {
            tracing::debug!(consumer = %caller.consumer(), item = arg.product_name, code = denial.code.as_str(), "scale checkout denied");
        }
        answers.push((Some(arg.product_name), decision));
    }
    Ok(answers)
}

/// The lease id an entry names; `None` when it cannot be one of ours (then no live lease has it).
fn lease_id(text: &str) -> Option<LeaseId> {
    LeaseId::from_str(text.trim()).ok()
}

async fn heartbeat(
    state: &HttpState,
    caller: &Caller,
    client: &ClientHeaders,
    args: Vec<HeartbeatArgs>,
) -> Result<Vec<Answer>, ApiError> {
    let mut answers = Vec::with_capacity(args.len());
    for arg in args {
        let decision = match lease_id(&arg.lease_id) {
            None => denied(ErrorCode::LeaseIdNotFound, "no live lease has this id"),
            Some(id) => {
                let mut req = RenewRequest::new(caller.consumer(), id);
                req.anchors = client.anchors.clone();
                req.used = match (arg.used_qty, arg.treat_as_incremental_qty) {
                    (None, _) => UsedQty::Unreported,
                    (Some(n), false) => UsedQty::Absolute(n),
                    (Some(n), true) => UsedQty::Incremental(n),
                };
                overload_as_denial(state.engine.renew(req).await)?
            }
        };
        answers.push((None, decision));
    }
    Ok(answers)
}

async fn end(state: &HttpState, caller: &Caller, args: Vec<EndArgs>) -> Result<Vec<Value>, ApiError> {
    let consumer = caller.consumer();
    let mut results = Vec::with_capacity(args.len());
    for arg in args {
        let decision = match lease_id(&arg.lease_id) {
            None => denied(ErrorCode::LeaseIdNotFound, "no live lease has this id"),
            Some(id) => {
                let used = arg.final_used_qty.map_or(UsedQty::Unreported, UsedQty::Absolute);
                let req = ReleaseRequest { by: Releaser::Consumer(consumer), lease_id: id, used };
                overload_as_denial(state.engine.release(req).await)?
            }
        };
        results.push(match &decision {
            Decision::Granted(done) => shapes::released(done, state.engine.license(done.license).as_deref(), consumer),
            Decision::Denied(denial) => shapes::not_released(denial, consumer),
        });
    }
    Ok(results)
}

/// Signs every answer's token (as one batch for the signer pool: all are handed over before any
/// is awaited) and answers them as a JSON array of strings.
async fn sign_all(state: &HttpState, answers: Vec<Answer>, client: &ClientHeaders) -> Result<Response<Body>, ApiError> {
    let tokens = state.tokens();
    let pending: Vec<_> = answers
        .iter()
        .map(|(item, decision)| {
            let subject = item.as_deref().map_or(Subject::Renewal, Subject::Item);
            tokens
                .issue(Dialect::Scale, subject, decision, client.public_key.clone())
                .expect("every Scale decision has a token")
        })
        .collect();
    let mut signed = Vec::with_capacity(pending.len());
    for token in pending {
        signed.push(Value::String(token.await.map_err(EngineError::from)?));
    }
    let body = serde_json::to_vec(&signed).map_err(|e| ApiError::internal(format!("encoding the answer: {e}")))?;
    Ok(reply::bytes_response(StatusCode::OK, reply::JSON, Bytes::from(body)))
}
