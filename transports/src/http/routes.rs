//! Which handler answers a request, and the one log line per request.
//!
//! Every failure of a handler is an [`ApiError`] turned into its JSON answer here, so no
//! request goes unanswered and none can take the connection down.

use crate::http::authz::{self, Format};
use crate::http::reply::{self, ApiError, Body};
use crate::http::{admin, HttpState};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::time::Instant;

/// Answers `req` from `peer`.
pub async fn handle(state: &HttpState, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = route(state, req, peer).await.unwrap_or_else(ApiError::into_response);
    let status = response.status().as_u16();
    let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    if response.status().is_server_error() {
        tracing::warn!(%peer, %method, path, status, elapsed_us, "request failed");
    } else {
        tracing::debug!(%peer, %method, path, status, elapsed_us, "request");
    }
    response
}

async fn route(state: &HttpState, req: Request<Incoming>, peer: SocketAddr) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_owned();
    if path == "/healthz" {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Err(ApiError::method_not_allowed("GET"));
        }
        return Ok(reply::json(StatusCode::OK, &serde_json::json!({"status": "ok"})));
    }
    if path == "/.well-known/jwks.json" || path == "/licensing-signing-keys/.well-known/jwks.json" {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Err(ApiError::method_not_allowed("GET"));
        }
        let keys = state.keys.as_ref().ok_or_else(|| ApiError::not_found("this server publishes no signing keys"))?;
        return Ok(reply::json(StatusCode::OK, &keys.jwks(state.engine.now())));
    }
    if let Some(format) = Format::of_path(&path) {
        return authz::handle(state, req, format, peer.ip()).await;
    }
    if let Some(rest) = path.strip_prefix("/admin/") {
        let rest = percent_encoding::percent_decode_str(rest)
            .decode_utf8()
            .map_err(|_| ApiError::not_found("the path is not UTF-8 once percent-decoded"))?
            .into_owned();
        return admin::handle(state, req, &rest).await;
    }
    Err(ApiError::not_found(format!("nothing at {path}; try /authz/, /admin/, /.well-known/jwks.json or /healthz")))
}
