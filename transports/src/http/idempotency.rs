//! The `Idempotency-Key` header (SPEC section 10): a client that may retry a `POST` sends a key
//! of its choosing, and a retry with the same key, from the same credential, of the same request
//! within a day is answered with the first answer instead of being carried out again. A
//! checkout's grant is kept by its license (the same lease, charged once); the answers of other
//! requests are journaled whole ([`answer_once`]).

use crate::http::reply::{self, ApiError, Body};
use crate::http::HttpState;
use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper::header::CONTENT_TYPE;
use hyper::{HeaderMap, Response, StatusCode};
use leasehold_engine::decide::Idempotency;
use std::future::Future;

/// The header's name.
pub const HEADER: &str = "idempotency-key";

/// Longest key accepted.
pub const MAX_KEY_CHARS: usize = 255;

/// The request's `Idempotency-Key`, when it sends one: 1 to [`MAX_KEY_CHARS`] visible ASCII
/// characters, or 400.
pub fn client_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::bad_request("send one Idempotency-Key"));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_KEY_CHARS || !bytes.iter().all(u8::is_ascii_graphic) {
        return Err(ApiError::bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_CHARS} visible ASCII characters"
        )));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// The idempotency of part `part` of a request sent with `client_key` by `credential`, asking
/// `request`.
pub fn of(client_key: Option<&str>, credential: &[u8], part: usize, request: &[&[u8]]) -> Option<Idempotency> {
    let part = u32::try_from(part).unwrap_or(u32::MAX);
    client_key.map(|key| Idempotency::of(credential, key, part, request))
}

/// Whether an answer holds a secret, which is never stored: its retry is carried out again and
/// derives the same secret from the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    /// The answer can be stored.
    None,
    /// The answer holds a secret.
    Held,
}

/// Answers the request with `idempotency` by `run`, once: a retry while it runs is 409, a retry
/// after it succeeded gets the remembered answer, the same key with another request 422. Only
/// successful answers are remembered (a failure changed nothing; its retry is carried out again).
pub async fn answer_once(
    state: &HttpState,
    idempotency: Idempotency,
    secret: Secret,
    run: impl Future<Output = Result<Response<Body>, ApiError>>,
) -> Result<Response<Body>, ApiError> {
    let answering = state.engine.answering(idempotency)?;
    if let Some(stored) = answering.remembered()? {
        if let Some(body) = stored.body {
            let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
            return Ok(match stored.content_type.as_deref() {
                None => reply::empty(status),
                Some(reply::JWT) => reply::bytes_response(status, reply::JWT, Bytes::from(body)),
                Some(reply::TEXT) => reply::bytes_response(status, reply::TEXT, Bytes::from(body)),
                Some(_) => reply::bytes_response(status, reply::JSON, Bytes::from(body)),
            });
        }
    }
    let (parts, body) = run.await?.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_else(|never| match never {});
    if parts.status.is_success() {
        let content_type = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let stored = (secret == Secret::None).then(|| body.to_vec());
        answering.remember(parts.status.as_u16(), content_type, stored).await?;
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn with_key(value: &'static [u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, HeaderValue::from_bytes(value).expect("a header value"));
        headers
    }

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        assert_eq!(client_key(&HeaderMap::new()).unwrap(), None);
        assert_eq!(client_key(&with_key(b"order-42")).unwrap().as_deref(), Some("order-42"));
        assert!(client_key(&with_key(b"two words")).is_err());
        assert!(client_key(&with_key(b"")).is_err());
        assert!(client_key(&with_key(&[b'k'; 256])).is_err());
        assert!(client_key(&with_key(&[b'k'; 255])).is_ok());
    }

    #[test]
    fn the_credential_the_part_and_the_request_each_tell_keys_apart() {
        let first = of(Some("k"), b"consumer-1", 0, &[b"ThreeDee"]).unwrap();
        assert_eq!(first, of(Some("k"), b"consumer-1", 0, &[b"ThreeDee"]).unwrap());
        assert_ne!(first.key, of(Some("k"), b"consumer-2", 0, &[b"ThreeDee"]).unwrap().key);
        assert_ne!(first.key, of(Some("k"), b"consumer-1", 1, &[b"ThreeDee"]).unwrap().key);
        let other_request = of(Some("k"), b"consumer-1", 0, &[b"Other"]).unwrap();
        assert_eq!(first.key, other_request.key);
        assert_ne!(first.request, other_request.request);
        assert_ne!(of(Some("k"), b"c", 0, &[b"ab", b"c"]), of(Some("k"), b"c", 0, &[b"a", b"bc"]));
        assert_eq!(of(None, b"c", 0, &[b"x"]), None);
    }
}
