//! `GET /openapi.json`: the OpenAPI 3.1 description of the whole HTTP API (client APIs, admin
//! API, discovery, health and metrics), kept as `openapi.json` beside this file and compiled
//! into the binary.
//!
//! `tests/http_openapi.rs` keeps it honest: every route in [`crate::http::routes::ROUTES`] must
//! be documented, every documented operation must be in the table, and every one of them must
//! be answered by a live server.

use crate::http::reply::{self, ApiError, Body, JSON};
use bytes::Bytes;
use hyper::{Method, Request, Response, StatusCode};

/// The OpenAPI document.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// Answers `GET /openapi.json`.
pub fn handle<B>(req: &Request<B>) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(ApiError::method_not_allowed("GET"));
    }
    Ok(reply::bytes_response(StatusCode::OK, JSON, Bytes::from_static(DOCUMENT.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_json() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"].as_str().map(|v| v.starts_with("3.1")), Some(true));
        assert!(doc["paths"].as_object().is_some_and(|p| !p.is_empty()));
    }
}
