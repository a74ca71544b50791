//! Forwarding to the node of a cluster that owns what a request is about (SPEC section 14,
//! `design/CLUSTER.md`, "Routing"): a node that answers `notOwner` for a license's partition (or
//! for the directory) sends the request, as it came, to the owner it names, and gives the
//! owner's answer back. Clients, the official ones among them, know nothing of partitions: a
//! redirect would drop their `Authorization` header, so the node forwards instead.
//!
//! A forwarded request carries [`FORWARDED_BY`] and is never forwarded again: an owner that
//! changed meanwhile answers `notOwner` itself, and the client retries (the answer says when).

use crate::http::reply::{self, Body};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, HOST};
use hyper::{HeaderMap, Method, Request, Response, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;

/// The header naming the node a request was forwarded by.
pub const FORWARDED_BY: &str = "x-leasehold-forwarded-by";

/// The header of a `notOwner` answer naming the node that owns what the request is about.
pub const OWNER: &str = "x-leasehold-owner";

/// Longest a forwarded request may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest answer of another node given back.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// The other nodes of the cluster, as this node hears them.
pub trait Peers: Send + Sync + 'static {
    /// This node's name.
    fn node(&self) -> &str;
    /// Where node `node` serves HTTP (`host:port`), if it is alive.
    fn http_address(&self, node: &str) -> Option<String>;
}

/// What a request is, besides its body: enough to send it again.
pub struct RequestHead {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl RequestHead {
    /// The head of `parts`.
    pub fn of(parts: &hyper::http::request::Parts) -> Self {
        RequestHead {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
        }
    }

    /// The request again, with `body`.
    pub fn rebuild<B>(&self, body: B) -> Request<B> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.clone();
        request
    }

    /// Whether another node forwarded it here.
    pub fn forwarded(&self) -> bool {
        self.headers.contains_key(FORWARDED_BY)
    }
}

/// Sends requests on to the nodes that own what they are about.
pub struct Forwarder {
    peers: Arc<dyn Peers>,
    client: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
}

impl Forwarder {
    /// A forwarder to the nodes `peers` knows.
    pub fn new(peers: Arc<dyn Peers>) -> Self {
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
        Forwarder { peers, client }
    }

    /// Sends the request `head` + `body` to node `owner` and gives its answer back; `None` when
    /// the owner is not known to be alive or does not answer (the caller then gives its own
    /// `notOwner` answer).
    pub async fn forward(&self, owner: &str, head: &RequestHead, body: Bytes) -> Option<Response<Body>> {
        let address = self.peers.http_address(owner)?;
        let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri: Uri = format!("http://{address}{path}").parse().ok()?;
        let mut request = Request::builder().method(head.method.clone()).uri(uri).version(head.version);
        for (name, value) in &head.headers {
            request = request.header(name, value);
        }
        let mut request = request.body(Full::new(body)).ok()?;
        // The client's Host stays: the owner builds the URLs of its answers from it.
        if !head.headers.contains_key(HOST) {
            request.headers_mut().insert(HOST, HeaderValue::from_str(&address).ok()?);
        }
        request.headers_mut().insert(FORWARDED_BY, HeaderValue::from_str(self.peers.node()).ok()?);
        let exchange = async {
            let response = self.client.request(request).await.ok()?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES).collect().await.ok()?.to_bytes();
            Some(Response::from_parts(parts, reply::Body::new(body)))
        };
        match tokio::time::timeout(FORWARD_TIMEOUT, exchange).await {
            Ok(Some(response)) => Some(response),
            Ok(None) | Err(_) => {
                tracing::warn!(owner, address, "could not forward a request to its owner");
                None
            }
        }
    }
}
