//! The `Idempotency-Key` header (SPEC section 10): a client that may retry a checkout sends a
//! key of its choosing, and a retry with the same key, from the same credential, of the same
//! request within a day is answered with the first lease instead of a second one.

use crate::http::reply::ApiError;
use hyper::HeaderMap;
use leasehold_engine::decide::Idempotency;

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
