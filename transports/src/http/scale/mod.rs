//! The 10Duke Scale License Checkout API under `/licensing/actions/` (SPEC section 5), as the
//! official `tenduke-scale` Python SDK speaks it.
//!
//! [`actions`]: checkout, heartbeat, release and metered use (`POST`, JSON arrays in and out);
//! [`describe`]: the `describe-*` reads (`GET`); [`caller`]: who calls (consumer API key or a
//! license key in the path); [`headers`]: the `cli*` client claims; [`shapes`]: the JSON the
//! SDK's models read.
//!
//! The path of a Scale checkout: `routes` hands `/licensing/actions/checkout[/{key}]` here,
//! [`caller::identify`] finds the consumer (or the key's license), [`headers::read`] the claims,
//! each array entry becomes a `ConsumeRequest` for `Engine::consume` (or
//! `Engine::consume_by_license_key`), and every grant or denial becomes Scale claims, signed as
//! one batch.

pub mod actions;
pub mod caller;
pub mod describe;
pub mod headers;
pub mod shapes;

use crate::http::reply::{ApiError, Body, RequestBody};
use crate::http::HttpState;
use actions::Action;
use describe::Read;
use hyper::{Method, Request, Response};
use std::net::IpAddr;

/// The path prefix of the Scale API.
pub const PREFIX: &str = "/licensing/actions/";

/// Answers a request whose path is [`PREFIX`] followed by `rest`.
pub async fn handle(
    state: &HttpState,
    req: Request<RequestBody>,
    rest: &str,
    client_ip: IpAddr,
) -> Result<Response<Body>, ApiError> {
    let rest = rest.trim_end_matches('/');
    let (name, license_key) = match rest.split_once('/') {
        Some((name, key)) => (name, Some(key)),
        None => (rest, None),
    };
    if let Some(action) = Action::of(name) {
        if req.method() != Method::POST {
            return Err(ApiError::method_not_allowed("POST"));
        }
        return actions::handle(state, req, action, license_key, client_ip).await;
    }
    if let Some(read) = Read::of(name) {
        if license_key.is_some() {
            return Err(ApiError::not_found(format!("{name} takes no path segment after it")));
        }
        if req.method() != Method::GET {
            return Err(ApiError::method_not_allowed("GET"));
        }
        return describe::handle(state, req, read).await;
    }
    Err(ApiError::not_found(format!("no Scale action or read called {name:?}")))
}
