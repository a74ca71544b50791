//! The Enterprise License Consumption API, `GET|POST /authz/[.jwt|.json|.txt]`: consume, check,
//! renew and release, answered one token (or object, or `true`/`false`) per item.
//!
//! A refusal is an answer: it comes back 200 with the denial's claims (`<item>_errorCode`, ...),
//! signed like a grant. Only a request that cannot be understood (400), is not authenticated
//! (401) or meets a full queue (503) fails as a whole.

pub mod query;

use crate::http::idempotency::{self, Secret};
use crate::http::reply::{self, ApiError, Body, RequestBody, JSON, JWT, TEXT};
use crate::http::{auth, HttpState};
use bytes::Bytes;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use leasehold_engine::claims::Claims;
use leasehold_engine::decide::Idempotency;
use leasehold_engine::tokens::{ClientPublicKey, Dialect, Subject};
use leasehold_engine::{ConsumerId, Decision, Denial, ErrorCode, Grant, LeaseId, ReleaseRequest};
use query::{AuthzQuery, ConsumeQuery};
use serde_json::Value;
use std::net::IpAddr;

/// How answers are written, chosen by the path's suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.jwt`: signed tokens joined by `&`.
    Jwt,
    /// `.json`: the claims unsigned; one object, or an array of one object per item.
    Json,
    /// `.txt` or no suffix: `true`/`false` per item, joined by `&`.
    Text,
}

impl Format {
    /// The format of an `/authz/` path, or `None` when the path is not one.
    pub fn of_path(path: &str) -> Option<Format> {
        match path {
            "/authz" | "/authz/" | "/authz/.txt" => Some(Format::Text),
            "/authz/.jwt" => Some(Format::Jwt),
            "/authz/.json" => Some(Format::Json),
            _ => None,
        }
    }
}

const FORM: &str = "application/x-www-form-urlencoded";

/// The query of a request: the URL's, followed by a form body's for POST.
async fn full_query(state: &HttpState, req: Request<RequestBody>) -> Result<String, ApiError> {
    let mut query = req.uri().query().unwrap_or("").to_owned();
    if req.method() == Method::POST {
        let content_type = req.headers().get(CONTENT_TYPE).map(|v| v.to_str().unwrap_or("?").to_owned());
        let body = reply::read_body(req, state.limits).await?;
        if !body.is_empty() {
            let essence = content_type.as_deref().and_then(|ct| ct.split(';').next()).unwrap_or("").trim();
            if !essence.eq_ignore_ascii_case(FORM) {
                return Err(ApiError::unsupported_media_type(FORM));
            }
            let form = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
            query.push('&');
            query.push_str(form);
        }
    }
    Ok(query)
}

/// Answers one `/authz/` request from a client at `client_ip` (browsers call it from any origin:
/// [`crate::http::cors`]).
pub async fn handle(
    state: &HttpState,
    req: Request<RequestBody>,
    format: Format,
    client_ip: IpAddr,
) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::GET && req.method() != Method::POST {
        return Err(ApiError::method_not_allowed("GET, POST or OPTIONS"));
    }
    let missing = "send Authorization: Bearer <consumer API key or identity provider's token>";
    let consumer = auth::consumer(state, req.headers(), missing).await;
    let idempotency_key = idempotency::client_key(req.headers())?;
    let raw = full_query(state, req).await?;
    let consumer = match consumer {
        Ok(consumer) => consumer,
        Err(refused) if format == Format::Jwt && refused.status == StatusCode::UNAUTHORIZED => {
            return signed_refusal(state, &raw, refused).await;
        }
        Err(refused) => return Err(refused),
    };
    match query::parse(&raw).map_err(|e| ApiError::bad_request(e.to_string()))? {
        AuthzQuery::Consume(q) => {
            let retry = idempotency_key.as_deref().map(|key| (key, raw.as_str()));
            consume(state, consumer, &q, format, client_ip, retry).await
        }
        AuthzQuery::Release(leases) => match idempotency_key {
            None => release(state, consumer, &leases, format).await,
            Some(key) => {
                let once = Idempotency::of(consumer.0.as_bytes(), &key, 0, &[raw.as_bytes()]);
                let run = release(state, consumer, &leases, format);
                idempotency::answer_once(state, once, Secret::None, run).await
            }
        },
    }
}

/// A missing or wrong credential on `.jwt`: 401 with a signed `notAuthorized` denial for each item
/// asked (as 10Duke answers), so that a client library reads the reason as it reads any refusal
/// instead of failing to decode an error document. A query it cannot read, or a release, is
/// answered `refused` as it is.
async fn signed_refusal(state: &HttpState, raw: &str, refused: ApiError) -> Result<Response<Body>, ApiError> {
    let Ok(AuthzQuery::Consume(q)) = query::parse(raw) else { return Err(refused) };
    let denial = Decision::Denied(Denial::new(ErrorCode::NotAuthorized, refused.description));
    let tokens = state.tokens();
    let pending: Vec<_> = q
        .items
        .iter()
        .filter_map(|item| tokens.issue(Dialect::Enterprise, Subject::Item(&item.name), &denial, None))
        .collect();
    let mut signed = Vec::with_capacity(pending.len());
    for token in pending {
        signed.push(token.await.map_err(leasehold_engine::EngineError::from)?);
    }
    Ok(reply::bytes_response(StatusCode::UNAUTHORIZED, JWT, Bytes::from(signed.join("&"))))
}

/// Answers a consume (or check) query; `retry` is the client's idempotency key and the whole
/// query it came with, when it sent one: each item's checkout then happens at most once.
async fn consume(
    state: &HttpState,
    consumer: ConsumerId,
    q: &ConsumeQuery,
    format: Format,
    client_ip: IpAddr,
    retry: Option<(&str, &str)>,
) -> Result<Response<Body>, ApiError> {
    let encrypt_to = match (&q.public_key, format) {
        (Some(text), Format::Jwt) => Some(
            ClientPublicKey::parse(text).map_err(|e| ApiError::bad_request(format!("parameter \"publicKey\": {e}")))?,
        ),
        (Some(_), _) => return Err(ApiError::bad_request("publicKey (JWE) needs the .jwt format")),
        (None, _) => None,
    };
    let mut decisions: Vec<(String, Decision<Grant>)> = Vec::with_capacity(q.items.len());
    for (part, mut req) in q.requests(consumer, Some(client_ip)).into_iter().enumerate() {
        if let Some((key, raw)) = retry {
            req.idempotency = idempotency::of(Some(key), consumer.0.as_bytes(), part, &[raw.as_bytes()]);
        }
        let item = req.item.clone();
        let decision = if q.do_consume { state.engine.consume(req).await? } else { state.engine.check(req).await? };
        if let Decision::Denied(denial) = &decision {
            tracing::debug!(%consumer, item, code = denial.code.as_str(), "authz denied");
        }
        decisions.push((item, decision));
    }
    let tokens = state.tokens();
    // `.txt` shows only whether each item was granted: its claims are never built.
    let claims_of = |(item, decision): &(String, Decision<Grant>)| {
        tokens.claims(Dialect::Enterprise, Subject::Item(item), decision).unwrap_or_default()
    };
    Ok(match format {
        Format::Text => {
            let granted =
                decisions.iter().map(|(_, d)| if matches!(d, Decision::Granted(_)) { "true" } else { "false" });
            reply::bytes_response(StatusCode::OK, TEXT, Bytes::from(granted.collect::<Vec<_>>().join("&")))
        }
        Format::Json => {
            let mut objects: Vec<Value> = decisions.iter().map(|d| Value::Object(claims_of(d))).collect();
            let body = if objects.len() == 1 { objects.remove(0) } else { Value::Array(objects) };
            reply::json(StatusCode::OK, &body)
        }
        Format::Jwt => {
            // Every token is handed to the signer before any is awaited, so the pool signs them
            // as one batch.
            let pending: Vec<_> = decisions.iter().map(|d| tokens.sign(claims_of(d), encrypt_to.clone())).collect();
            let mut signed = Vec::with_capacity(pending.len());
            for token in pending {
                signed.push(token.await.map_err(leasehold_engine::EngineError::from)?);
            }
            reply::bytes_response(StatusCode::OK, JWT, Bytes::from(signed.join("&")))
        }
    })
}

async fn release(
    state: &HttpState,
    consumer: ConsumerId,
    leases: &[LeaseId],
    format: Format,
) -> Result<Response<Body>, ApiError> {
    let mut released = Vec::with_capacity(leases.len());
    for lease in leases {
        let decision = state.engine.release(ReleaseRequest::new(consumer, *lease)).await?;
        released.push((*lease, matches!(decision, Decision::Granted(_))));
    }
    Ok(match format {
        Format::Text => {
            let text = released.iter().map(|(_, ok)| if *ok { "true" } else { "false" }).collect::<Vec<_>>().join("&");
            reply::bytes_response(StatusCode::OK, TEXT, Bytes::from(text))
        }
        Format::Json => {
            let object: Claims = released.iter().map(|(lease, ok)| (lease.to_string(), Value::Bool(*ok))).collect();
            reply::bytes_response(StatusCode::OK, JSON, Bytes::from(Value::Object(object).to_string()))
        }
        Format::Jwt => {
            let tokens = state.tokens();
            let token =
                tokens.sign(tokens.released(&released), None).await.map_err(leasehold_engine::EngineError::from)?;
            reply::bytes_response(StatusCode::OK, JWT, Bytes::from(token))
        }
    })
}
