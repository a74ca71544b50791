//! Forwarding to the node of a cluster that owns what a request is about (SPEC section 14,
//! `design/CLUSTER.md`, "Routing"): a node that answers `notOwner` for a license's partition (or
//! for the directory) sends the request, as it came, to the owner it names, and gives the
//! owner's answer back. Clients, the official ones among them, know nothing of partitions: a
//! redirect would drop their `Authorization` header, so the node forwards instead.
//!
//! A forwarded request carries [`FORWARDED_BY`] and is never forwarded again: an owner that
//! changed meanwhile answers `notOwner` itself, and the client retries (the answer says when).
//!
//! Each node applies the directory (products, licensees, the creation of licenses, ...) from
//! its stream a moment after the node that writes it. So that a client sees its own writes
//! whichever node it asks, a forwarded request and its answer carry [`DIRECTORY_SEEN`], how far
//! into the directory's stream the sender's directory reaches, and the receiver brings its own
//! that far before it answers or gives the answer back.

use crate::http::reply::{self, Body};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, HOST};
use hyper::{HeaderMap, Method, Request, Response, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The header naming the node a request was forwarded by.
pub const FORWARDED_BY: &str = "x-leasehold-forwarded-by";

/// The header of a `notOwner` answer naming the node that owns what the request is about.
pub const OWNER: &str = "x-leasehold-owner";

/// The header saying how far into the directory's stream the sending node's directory reaches.
pub const DIRECTORY_SEEN: &str = "x-leasehold-directory";

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
    /// How far into the directory's stream this node's directory reaches.
    fn directory_seen(&self) -> u64;
    /// Brings this node's directory to `seq` of the directory's stream, waiting a moment at
    /// most.
    fn catch_up(&self, seq: u64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// The cluster as this node sees it (`GET /admin/cluster`, the gauges of `/metrics`).
    fn status(&self) -> ClusterStatus;
}

/// The cluster as one node sees it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ClusterStatus {
    /// Whether the answering server is a node of a cluster (a server alone has no nodes and no
    /// streams to show).
    pub clustered: bool,
    /// The node answering.
    pub node: Option<String>,
    /// The nodes it has heard from, itself among them.
    pub nodes: Vec<NodeStatus>,
    /// The partitions' streams, then the directory's.
    pub streams: Vec<StreamStatus>,
}

/// A node as another hears it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeStatus {
    /// Its name.
    pub name: String,
    /// Where it serves HTTP.
    pub http: String,
    /// Where it serves the binary protocol.
    pub tcp: String,
    /// It takes streams.
    pub ready: bool,
    /// It is handing its streams over to stop.
    pub leaving: bool,
    /// Milliseconds since it was last heard from.
    pub silent_ms: u64,
    /// Heard from lately enough to count as alive.
    pub alive: bool,
}

/// A stream as the answering node sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamStatus {
    /// Its name in JetStream.
    pub stream: String,
    /// The partition it holds (`None`: the directory's).
    pub partition: Option<u32>,
    /// Its owner as the answering node last learned it.
    pub owner: Option<String>,
    /// `owned` (the answering node writes it), `reading` (it reads it back to claim it) or
    /// `elsewhere`.
    pub state: &'static str,
    /// The epoch the answering node writes it at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// How long the answering node took to read it back before it claimed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_back_ms: Option<u64>,
}

fn directory_seen(headers: &HeaderMap) -> Option<u64> {
    headers.get(DIRECTORY_SEEN)?.to_str().ok()?.parse().ok()
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
        request.headers_mut().insert(DIRECTORY_SEEN, HeaderValue::from(self.peers.directory_seen()));
        let exchange = async {
            let response = self.client.request(request).await.ok()?;
            let (mut parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES).collect().await.ok()?.to_bytes();
            if let Some(seq) = directory_seen(&parts.headers) {
                parts.headers.remove(DIRECTORY_SEEN);
                self.peers.catch_up(seq).await;
            }
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

    /// For a request another node forwarded: brings this node's directory as far as the
    /// sender's before the request is answered.
    pub async fn arrived(&self, head: &RequestHead) {
        if let Some(seq) = head.forwarded().then(|| directory_seen(&head.headers)).flatten() {
            self.peers.catch_up(seq).await;
        }
    }

    /// For the answer to a forwarded request: says how far this node's directory reaches, for
    /// the sender to catch up to.
    pub fn answered(&self, response: &mut Response<Body>) {
        response.headers_mut().insert(DIRECTORY_SEEN, HeaderValue::from(self.peers.directory_seen()));
    }
}
