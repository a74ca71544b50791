//! The admin API's HTTP client: one function sends a [`Call`] with the admin token and turns
//! the answer into JSON or into an [`AdminError`] (the server's `{"code", "description"}`, a
//! server that cannot be reached, one that does not answer in time). Plain HTTP/1.1 for now.

use super::call::Call;
use super::AdminError;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use leasehold_engine::error::with_causes;
use serde_json::Value;
use std::error::Error as _;
use std::time::Duration;

/// Longest a request may take, from connecting to the answer's last byte.
const REQUEST_TIMEOUT_S: u64 = 30;

/// Largest answer read: a page of the longest listing fits many times over.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// A connection to one server's admin API.
pub struct Client {
    server: String,
    admin_token: String,
    http: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A client of the server at `server` (an `http://` URL without a trailing `/`).
    pub fn new(server: String, admin_token: String) -> Client {
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
        Client { server, admin_token, http }
    }

    /// Sends `call` (with `cursor` instead of its own, for the next page of a listing) and
    /// returns the answer's JSON (`Null` for an empty answer, as a 204).
    pub async fn send(&self, call: &Call, cursor: Option<&str>) -> Result<Value, AdminError> {
        let url = format!("{}{}", self.server, call.path_and_query(cursor));
        let uri: Uri = url.parse().map_err(|_| AdminError::BadUrl(url.clone()))?;
        let mut request = Request::builder()
            .method(call.method.clone())
            .uri(uri)
            .header(AUTHORIZATION, format!("Bearer {}", self.admin_token))
            .header(ACCEPT, "application/json");
        let body = match &call.body {
            Some(json) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Bytes::from(json.to_string())
            }
            None => Bytes::new(),
        };
        // The token is the only input that could make a header invalid.
        let request = request.body(Full::new(body)).map_err(|_| AdminError::BadToken)?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| self.failed(&e))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| AdminError::Failed { server: self.server.clone(), reason: e.to_string() })?
                .to_bytes();
            Ok::<_, AdminError>((status, body))
        };
        let (status, body) = tokio::time::timeout(Duration::from_secs(REQUEST_TIMEOUT_S), exchange)
            .await
            .map_err(|_| AdminError::Timeout { server: self.server.clone(), timeout_s: REQUEST_TIMEOUT_S })??;
        answer(status, &body)
    }

    /// The error for a request that got no answer.
    fn failed(&self, error: &hyper_util::client::legacy::Error) -> AdminError {
        let server = self.server.clone();
        // hyper's own message ("client error (Connect)") says less than its causes.
        let reason = error.source().map_or_else(|| error.to_string(), with_causes);
        if error.is_connect() {
            AdminError::Unreachable { server, reason }
        } else {
            AdminError::Failed { server, reason }
        }
    }
}

/// The answer's JSON, or the API error it carries.
fn answer(status: StatusCode, body: &[u8]) -> Result<Value, AdminError> {
    let json = if body.iter().all(u8::is_ascii_whitespace) { Ok(Value::Null) } else { serde_json::from_slice(body) };
    match json {
        Ok(json) if status.is_success() => Ok(json),
        Ok(json) => Err(AdminError::Api {
            status: status.as_u16(),
            code: json["code"].as_str().unwrap_or(status.canonical_reason().unwrap_or("error")).to_owned(),
            description: json["description"].as_str().unwrap_or_default().to_owned(),
        }),
        Err(_) => Err(AdminError::NotJson { status: status.as_u16(), body: String::from_utf8_lossy(body).into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_answer_gives_the_servers_code_and_description() {
        let body = br#"{"error": "Not Found", "code": "notFound", "description": "license 42"}"#;
        match answer(StatusCode::NOT_FOUND, body) {
            Err(AdminError::Api { status, code, description }) => {
                assert_eq!((status, code.as_str(), description.as_str()), (404, "notFound", "license 42"));
            }
            other => panic!("not an API error: {other:?}"),
        }
        assert!(matches!(answer(StatusCode::BAD_GATEWAY, b"<html>"), Err(AdminError::NotJson { status: 502, .. })));
    }

    #[test]
    fn an_empty_answer_is_null() {
        assert_eq!(answer(StatusCode::NO_CONTENT, b"").ok(), Some(Value::Null));
    }
}
