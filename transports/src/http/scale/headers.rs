//! The client claims of a Scale request, read from its `cli*` headers (case-insensitive, as
//! HTTP header names are): the anchors the license model checks (`cliHwId`, `cliProcessId`,
//! `cliVersion`), the friendly names, the other claims a token echoes in `clientClaims`, and
//! `cliPublicKey`, the RSA key a client sends to get its tokens as JWEs.
//!
//! Only the claims of the 10Duke Scale API are read; other headers are not claims. A claim given
//! twice, longer than [`MAX_CLAIM_BYTES`] or not UTF-8 is a 400: the engine never sees a claim
//! the client cannot have meant.

use crate::http::reply::ApiError;
use hyper::HeaderMap;
use leasehold_engine::model::Anchors;
use leasehold_engine::tokens::ClientPublicKey;

/// Longest claim value accepted, in bytes.
pub const MAX_CLAIM_BYTES: usize = 1024;

/// The header that carries the client's RSA public key.
pub const PUBLIC_KEY_HEADER: &str = "cliPublicKey";

/// Where a claim goes in [`Anchors`].
#[derive(Clone, Copy)]
enum Slot {
    Hw,
    HwName,
    Process,
    ProcessName,
    Version,
    /// Kept under its name, to be echoed in tokens and client bindings.
    Other,
}

/// The claims of the Scale API, spelled as tokens and client bindings echo them.
const CLAIMS: [(&str, Slot); 14] = [
    ("cliHwId", Slot::Hw),
    ("cliHwLabel", Slot::HwName),
    ("cliProcessId", Slot::Process),
    ("cliProcessName", Slot::ProcessName),
    ("cliVersion", Slot::Version),
    ("cliApiKey", Slot::Other),
    ("cliCountry", Slot::Other),
    ("cliHostName", Slot::Other),
    ("cliHwArch", Slot::Other),
    ("cliInstallationId", Slot::Other),
    ("cliLang", Slot::Other),
    ("cliNetworkIpAddress", Slot::Other),
    ("cliOSUserName", Slot::Other),
    ("cliOs", Slot::Other),
];

/// The names of the headers a Scale client may send: its claims and its public key.
pub fn names() -> impl Iterator<Item = &'static str> {
    CLAIMS.iter().map(|(name, _)| *name).chain([PUBLIC_KEY_HEADER])
}

/// What a request's headers say about the client.
#[derive(Debug, Clone, Default)]
pub struct ClientHeaders {
    /// The client claims.
    pub anchors: Anchors,
    /// The key to encrypt tokens to, when the client sent one.
    pub public_key: Option<ClientPublicKey>,
}

/// The value of header `name`: `None` when absent or empty, an error when repeated, too long or
/// not UTF-8.
fn single<'a>(headers: &'a HeaderMap, name: &str, max_bytes: usize) -> Result<Option<&'a str>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::bad_request(format!("header {name} is given twice")));
    }
    if value.len() > max_bytes {
        return Err(ApiError::bad_request(format!("header {name} is longer than {max_bytes} bytes")));
    }
    let text = std::str::from_utf8(value.as_bytes())
        .map_err(|_| ApiError::bad_request(format!("header {name} is not UTF-8")))?
        .trim();
    Ok((!text.is_empty()).then_some(text))
}

/// Reads the client claims and the public key of a request.
pub fn read(headers: &HeaderMap) -> Result<ClientHeaders, ApiError> {
    let mut anchors = Anchors::default();
    for (name, slot) in CLAIMS {
        let Some(value) = single(headers, name, MAX_CLAIM_BYTES)? else { continue };
        let value = value.to_owned();
        match slot {
            Slot::Hw => anchors.hw = Some(value),
            Slot::HwName => anchors.hw_name = Some(value),
            Slot::Process => anchors.process = Some(value),
            Slot::ProcessName => anchors.process_name = Some(value),
            Slot::Version => anchors.version = Some(value),
            Slot::Other => {
                anchors.extra.insert(name.to_owned(), value);
            }
        }
    }
    let public_key = single(headers, PUBLIC_KEY_HEADER, leasehold_engine::tokens::jwe::MAX_CLIENT_KEY_CHARS)?
        .map(|text| {
            ClientPublicKey::parse(text).map_err(|e| ApiError::bad_request(format!("header {PUBLIC_KEY_HEADER}: {e}")))
        })
        .transpose()?;
    Ok(ClientHeaders { anchors, public_key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            map.append(name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn claims_are_read_whatever_the_case_of_their_names() {
        let read = read(&headers(&[
            ("CLIHWID", "hw-1"),
            ("clihwlabel", "Desk"),
            ("cliProcessId", "42"),
            ("cliversion", "1.2.3"),
            ("CliInstallationId", "inst"),
            ("cliLang", "fi"),
            ("X-Other", "ignored"),
        ]))
        .unwrap();
        let a = read.anchors;
        assert_eq!(
            (a.hw.as_deref(), a.hw_name.as_deref(), a.process.as_deref(), a.version.as_deref()),
            (Some("hw-1"), Some("Desk"), Some("42"), Some("1.2.3"))
        );
        assert_eq!(a.extra.get("cliInstallationId").map(String::as_str), Some("inst"));
        assert_eq!(a.extra.get("cliLang").map(String::as_str), Some("fi"));
        assert_eq!(a.extra.len(), 2);
        assert!(read.public_key.is_none());
    }

    #[test]
    fn a_repeated_or_oversized_claim_or_a_bad_key_is_refused() {
        assert!(read(&headers(&[("cliHwId", "a"), ("clihwid", "b")])).is_err());
        assert!(read(&headers(&[("cliHwId", &"x".repeat(MAX_CLAIM_BYTES + 1))])).is_err());
        let bad_key = read(&headers(&[("cliPublicKey", "not-a-key")])).unwrap_err();
        assert_eq!(bad_key.status, hyper::StatusCode::BAD_REQUEST);
        assert!(bad_key.description.contains("cliPublicKey"));
    }

    #[test]
    fn an_empty_claim_is_no_claim() {
        assert_eq!(read(&headers(&[("cliHwId", "")])).unwrap().anchors.hw, None);
    }
}
