//! Posting one event to a receiver.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE, USER_AGENT};
use hyper::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use leasehold_engine::error::with_causes;
use leasehold_engine::events::StoredEvent;
use leasehold_engine::webhooks::{signature, AttemptOutcome, ANSWER_WITHIN};
use leasehold_engine::Timestamp;

/// Most of a receiver's answer that is read (the rest is dropped with the connection).
const ANSWER_READ_LIMIT: usize = 64 * 1024;

/// An HTTP/1.1 client with a connection pool, shared by every webhook; `https://` receivers'
/// certificates are checked against the web's roots and the configured CA file.
#[derive(Clone)]
pub(super) struct Client {
    inner: hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Client {
    pub(super) fn new(connector: HttpsConnector<HttpConnector>) -> Self {
        let inner = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
        Client { inner }
    }

    /// Posts `body` (event `event` as JSON) to `url`, signed with `secret` at `now`; a 2xx
    /// answer within [`ANSWER_WITHIN`] is a delivery.
    pub(super) async fn post(
        &self,
        url: &str,
        secret: &str,
        event: &StoredEvent,
        body: Bytes,
        now: Timestamp,
    ) -> AttemptOutcome {
        let uri: hyper::Uri = match url.parse() {
            Ok(uri) => uri,
            Err(e) => return AttemptOutcome::NoAnswer(format!("the URL does not parse: {e}")),
        };
        let signed = signature(secret, u64::try_from(now.as_secs()).unwrap_or(0), &body);
        let request = Request::post(uri)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(USER_AGENT, HeaderValue::from_static(concat!("Leasehold/", env!("CARGO_PKG_VERSION"))))
            .header("leasehold-event-id", event.id.to_string())
            .header("leasehold-event-type", event.event.event_type.as_str())
            .header("leasehold-signature", signed)
            .body(Full::new(body));
        let request = match request {
            Ok(request) => request,
            Err(e) => return AttemptOutcome::NoAnswer(format!("the request could not be made: {e}")),
        };
        let answered = tokio::time::timeout(ANSWER_WITHIN, async {
            let answer = self.inner.request(request).await?;
            let status = answer.status().as_u16();
            // Read so that the connection can be used again; what it says does not matter.
            let _ = Limited::new(answer.into_body(), ANSWER_READ_LIMIT).collect().await;
            Ok::<u16, hyper_util::client::legacy::Error>(status)
        })
        .await;
        match answered {
            Err(_) => AttemptOutcome::NoAnswer(format!("no answer within {} s", ANSWER_WITHIN.as_secs())),
            Ok(Err(e)) => AttemptOutcome::NoAnswer(with_causes(&e)),
            Ok(Ok(status)) if (200..300).contains(&status) => AttemptOutcome::Delivered(status),
            Ok(Ok(status)) => AttemptOutcome::Refused(status),
        }
    }
}
