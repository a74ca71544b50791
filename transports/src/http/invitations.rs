//! Answering an invitation to a group (SPEC section 12): `POST /invitations/{token}/accept`,
//! with a consumer's API key to join as that consumer or with `{"name"}` to become a new user
//! consumer of the group's licensee, and `POST /invitations/{token}/decline`. The token is the
//! credential: it works once and expires.

use crate::http::admin::shapes;
use crate::http::reply::{self, ApiError, Body, RequestBody};
use crate::http::{auth, HttpState};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use leasehold_engine::engine::Acceptance;
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::json;

/// The path prefix of this module's routes.
pub const PREFIX: &str = "/invitations/";

/// `POST /invitations/{token}/accept` without an API key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserIn {
    name: String,
}

/// Answers a request under [`PREFIX`] (`rest` is the path after it).
pub async fn handle(state: &HttpState, req: Request<RequestBody>, rest: &str) -> Result<Response<Body>, ApiError> {
    let (token, verb) = rest.split_once('/').ok_or_else(|| ApiError::not_found("no invitation resource here"))?;
    let token = percent_decode_str(token).decode_utf8().map_err(|_| ApiError::not_found("invitation"))?.into_owned();
    if !matches!(verb, "accept" | "decline") {
        return Err(ApiError::not_found(format!("no invitation resource {verb:?}")));
    }
    if req.method() != Method::POST {
        return Err(ApiError::method_not_allowed("POST"));
    }
    let consumer = match req.headers().contains_key(AUTHORIZATION) {
        false => None,
        true => Some(auth::consumer(state, req.headers(), "unknown API key").await?),
    };
    let content_type = req.headers().get(CONTENT_TYPE).map(|v| v.to_str().unwrap_or("?").to_owned());
    let body = reply::read_body(req, state.limits).await?;
    if verb == "decline" {
        state.engine.decline_invitation(&token).await?;
        return Ok(reply::empty(StatusCode::NO_CONTENT));
    }
    let by = match consumer {
        Some(id) => Acceptance::Consumer(id),
        None => {
            let new: NewUserIn = reply::parse_json(content_type.as_deref(), &body)
                .map_err(|_| ApiError::bad_request("send a consumer's API key, or {\"name\"} to join as a new user"))?;
            Acceptance::NewUser { name: new.name }
        }
    };
    let (consumer, api_key) = state.engine.accept_invitation(&token, by).await?;
    let mut answer = json!({"consumer": shapes::consumer(&consumer)});
    match api_key {
        Some(key) => {
            answer["api_key"] = json!(key);
            Ok(reply::json(StatusCode::CREATED, &answer))
        }
        None => Ok(reply::json(StatusCode::OK, &answer)),
    }
}
