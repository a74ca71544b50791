//! `/.well-known/license-configuration`: what clients fetch to find this server's issuer, key
//! set (the JWKS itself is answered in [`crate::http::routes`]), endpoints and algorithms.
//!
//! The discovery document's URLs start with the configured public URL or, without one, with
//! `http://` and the request's `Host`, so that a client reaching the server through any name
//! gets URLs it can reach.

use crate::http::cors;
use crate::http::reply::{self, ApiError, Body};
use crate::http::HttpState;
use hyper::header::HOST;
use hyper::{Method, Request, Response, StatusCode};
use leasehold_engine::tokens::license_configuration;

/// `GET /.well-known/license-configuration`.
pub fn license_configuration_document<B>(state: &HttpState, req: &Request<B>) -> Result<Response<Body>, ApiError> {
    only_get(req)?;
    let keys = state.keys.as_ref().ok_or_else(|| ApiError::not_found("this server publishes no signing keys"))?;
    let base = base_url(state, req)?;
    let algorithms = keys.algorithms(state.engine.now());
    let mut response = reply::json(StatusCode::OK, &license_configuration(&base, &state.issuer, &algorithms));
    cors::cache_key_document(response.headers_mut());
    Ok(response)
}

fn only_get<B>(req: &Request<B>) -> Result<(), ApiError> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(ApiError::method_not_allowed("GET"));
    }
    Ok(())
}

/// The URL the server is reached at: the configured public URL, else `http://<Host>` (`https://`
/// over TLS), else the issuer (an HTTP/1.0 request may have no `Host`).
pub(crate) fn base_url<B>(state: &HttpState, req: &Request<B>) -> Result<String, ApiError> {
    if let Some(public) = &state.public_url {
        return Ok(public.trim_end_matches('/').to_owned());
    }
    let Some(host) = req.headers().get(HOST) else { return Ok(state.issuer.clone()) };
    let host =
        host.to_str().ok().filter(|h| is_host(h)).ok_or_else(|| ApiError::bad_request("malformed Host header"))?;
    let scheme = if state.https { "https" } else { "http" };
    Ok(format!("{scheme}://{host}"))
}

/// Whether `text` is a plausible `host[:port]` (names, IPv4, bracketed IPv6): nothing that could
/// smuggle a path, a query or a different scheme into the URLs answered.
fn is_host(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 255
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_characters_make_a_host() {
        assert!(is_host("licenses.example.com:8443"));
        assert!(is_host("127.0.0.1:8080"));
        assert!(is_host("[::1]:8080"));
        assert!(!is_host("evil.com/path"));
        assert!(!is_host("a@b"));
        assert!(!is_host(""));
        assert!(!is_host("a b"));
    }
}
