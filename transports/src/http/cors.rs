//! Browser clients (SPEC section 13): the client-facing routes answer CORS preflights and carry
//! CORS headers on every answer, errors included, so that a page of any origin may call them.
//! That is safe because these routes authenticate with a bearer credential the page holds
//! (an API key, a token, a license key), never with cookies. The admin API is not among them: a
//! browser is never sent there from another origin.
//!
//! A preflight's `Access-Control-Allow-Headers` names `Authorization` explicitly (a `*` does not
//! cover it in the standard) and the headers the client libraries send; the public key documents
//! (JWKS, discovery) are answered with a `Cache-Control` max-age, so that a browser library does
//! not fetch them for every checkout.

use crate::http::platform;
use crate::http::reply::Body;
use crate::http::scale;
use bytes::Bytes;
use hyper::header::{
    HeaderMap, HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS, ALLOW, CACHE_CONTROL,
};
use hyper::{Response, StatusCode};

/// The paths of the public key documents.
pub const KEY_DOCUMENTS: [&str; 3] =
    ["/.well-known/jwks.json", "/licensing-signing-keys/.well-known/jwks.json", "/.well-known/license-configuration"];

/// How long a browser may keep the JWKS and the discovery document: a rotated key is published
/// well before it signs (the key ring keeps the retired one published), so a copy this old still
/// verifies every token.
pub const KEY_DOCUMENTS_MAX_AGE: &str = "public, max-age=300";

/// Headers a page's request may carry beyond the CORS-safelisted ones, besides the Scale API's
/// client claims.
const ALLOWED_HEADERS: [&str; 3] = ["Authorization", "Content-Type", "Idempotency-Key"];

/// Headers of an answer a page may read beyond the CORS-safelisted ones.
const EXPOSED_HEADERS: &str = "Retry-After, Content-Length";

/// Whether `path` is a client-facing route: `/authz/`, the Scale API, the key documents and the
/// platform's application routes.
pub fn is_client_facing(path: &str) -> bool {
    path == "/authz"
        || path.starts_with("/authz/")
        || path.starts_with(scale::PREFIX)
        || KEY_DOCUMENTS.contains(&path)
        || platform::PATHS.contains(&path)
}

/// The answer to a preflight for a client-facing route.
pub fn preflight(request: &HeaderMap) -> Response<Body> {
    let mut response = Response::new(Body::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
    headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, allowed_headers(request));
    headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    headers.insert(ALLOW, HeaderValue::from_static("GET, POST, OPTIONS"));
    allow_any_origin(headers);
    response
}

/// Lets browsers keep a key document (JWKS, discovery) for [`KEY_DOCUMENTS_MAX_AGE`].
pub fn cache_key_document(headers: &mut HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(KEY_DOCUMENTS_MAX_AGE));
}

/// Marks an answer of a client-facing route as readable by any origin.
pub fn allow_any_origin(headers: &mut HeaderMap) {
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED_HEADERS));
}

/// The headers a preflight allows: the ones the client libraries send, and any other the browser
/// asks for that is a plain header name (a page may add its own; the route ignores what it does
/// not read).
fn allowed_headers(request: &HeaderMap) -> HeaderValue {
    let mut names: Vec<String> = ALLOWED_HEADERS.into_iter().chain(scale::headers::names()).map(String::from).collect();
    let asked = request.get(ACCESS_CONTROL_REQUEST_HEADERS).and_then(|v| v.to_str().ok()).unwrap_or("");
    for name in asked.split(',').map(str::trim).filter(|name| is_header_name(name)).take(MAX_ASKED_HEADERS) {
        if !names.iter().any(|known| known.eq_ignore_ascii_case(name)) {
            names.push(name.to_owned());
        }
    }
    HeaderValue::from_str(&names.join(", ")).unwrap_or_else(|_| HeaderValue::from_static("Authorization"))
}

/// Most header names of a preflight's request that are echoed.
const MAX_ASKED_HEADERS: usize = 16;

fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
