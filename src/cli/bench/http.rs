//! The HTTP side of the load generator: a keep-alive HTTP/1.1 connection per worker (hyper's
//! client connection, no pool in between), and the workers that speak the Enterprise `/authz/`
//! API or fetch a hello-world page.

use super::driver::{Failure, Outcome, Worker};
use super::seed::Identity;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// One keep-alive HTTP/1.1 connection, reopened after an I/O failure.
pub struct Connection {
    addr: SocketAddr,
    host: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// An answer: status and body.
pub struct Answer {
    /// The status code.
    pub status: StatusCode,
    /// The whole body.
    pub body: Bytes,
}

impl Connection {
    /// A connection to `addr` (opened on first use).
    pub fn new(addr: SocketAddr) -> Connection {
        Connection { addr, host: addr.to_string(), sender: None }
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, Failure> {
        if !matches!(&self.sender, Some(sender) if !sender.is_closed()) {
            let stream = tokio::net::TcpStream::connect(self.addr).await.map_err(|_| Failure::new("connect"))?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|_| Failure::new("connect"))?;
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        self.sender.as_mut().ok_or_else(|| Failure::new("connect"))
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &mut self,
        method: Method,
        path_and_query: &str,
        bearer: Option<&str>,
        json_body: Option<Bytes>,
    ) -> Result<Answer, Failure> {
        self.send_with(method, path_and_query, bearer, &[], json_body).await
    }

    /// Sends one request with `headers` besides the usual ones and reads the whole answer.
    pub async fn send_with(
        &mut self,
        method: Method,
        path_and_query: &str,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
        json_body: Option<Bytes>,
    ) -> Result<Answer, Failure> {
        let mut builder = Request::builder().method(method).uri(path_and_query).header("host", &self.host);
        if let Some(bearer) = bearer {
            builder = builder.header("authorization", format!("Bearer {bearer}"));
        }
        if json_body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request =
            builder.body(Full::new(json_body.unwrap_or_default())).map_err(|_| Failure::new("bad request"))?;
        let sender = self.sender().await?;
        sender.ready().await.map_err(|_| Failure::new("io"))?;
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(_) => {
                self.sender = None;
                return Err(Failure::new("io"));
            }
        };
        let status = response.status();
        let body = match response.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => {
                self.sender = None;
                return Err(Failure::new("io"));
            }
        };
        Ok(Answer { status, body })
    }
}

/// A status other than 200 as a failure labelled with it.
fn expect_ok(answer: Answer) -> Result<Bytes, Failure> {
    if answer.status == StatusCode::OK {
        Ok(answer.body)
    } else {
        Err(Failure::new(format!("http {}", answer.status.as_u16())))
    }
}

/// Fetches `GET /` again and again: the hello-world ceiling.
pub struct HelloWorker {
    connection: Connection,
}

impl HelloWorker {
    /// A worker for the hello-world server at `addr`.
    pub fn new(addr: SocketAddr) -> HelloWorker {
        HelloWorker { connection: Connection::new(addr) }
    }
}

impl Worker for HelloWorker {
    async fn step(&mut self) -> Outcome {
        expect_ok(self.connection.send(Method::GET, "/", None, None).await?).map(drop)
    }
}

/// The workloads every protocol offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// A signed checkout, again and again (the session's lease is granted anew each time).
    Consume,
    /// The decision alone, unsigned and without a lease (`doConsume=false`).
    Check,
    /// One checkout, then signed heartbeats of that lease (each rotates the lease id).
    Renew,
    /// Checkout, heartbeat, release; over and over, one request per step.
    Cycle,
}

impl Workload {
    /// The workload's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Consume => "consume",
            Workload::Check => "check",
            Workload::Renew => "renew",
            Workload::Cycle => "cycle",
        }
    }
}

/// The item every seeded license grants.
pub const ITEM: &str = "bench";

/// One HTTP dialect's lease operations, as one worker's client on its own hardware id.
pub trait LeaseApi: Send + 'static {
    /// The decision alone for `key`'s consumer; `Err` when refused.
    fn check(&mut self, key: &str) -> impl Future<Output = Outcome> + Send;
    /// A signed checkout; the lease id.
    fn checkout(&mut self, key: &str) -> impl Future<Output = Result<String, Failure>> + Send;
    /// A signed heartbeat of `lease`; the new lease id.
    fn renew(&mut self, key: &str, lease: &str) -> impl Future<Output = Result<String, Failure>> + Send;
    /// Ends `lease`.
    fn release(&mut self, key: &str, lease: &str) -> impl Future<Output = Outcome> + Send;
}

/// Runs a workload through a [`LeaseApi`], stepping through the seeded consumers so that every
/// license is used.
pub struct ApiWorker<A> {
    api: A,
    workload: Workload,
    identities: Arc<Vec<Identity>>,
    next_identity: usize,
    stride: usize,
    /// The lease held, with the identity that holds it.
    lease: Option<(usize, String)>,
    /// For `cycle`: whether the held lease was already renewed.
    renewed: bool,
}

impl<A: LeaseApi> ApiWorker<A> {
    /// Worker number `index` of `workers` on `api`, taking identities `index`, `index +
    /// workers`, ...
    pub fn new(api: A, workload: Workload, identities: Arc<Vec<Identity>>, index: usize, workers: usize) -> Self {
        ApiWorker {
            api,
            workload,
            identities,
            next_identity: index,
            stride: workers.max(1),
            lease: None,
            renewed: false,
        }
    }

    fn take_identity(&mut self) -> usize {
        let n = self.identities.len();
        let chosen = self.next_identity % n;
        self.next_identity = (self.next_identity + self.stride) % n;
        chosen
    }

    async fn checkout(&mut self) -> Outcome {
        let identity = self.take_identity();
        self.renewed = false;
        let key = Arc::clone(&self.identities);
        let lease = self.api.checkout(&key[identity].api_key).await?;
        self.lease = Some((identity, lease));
        Ok(())
    }

    async fn renew(&mut self, identity: usize, lease: &str) -> Outcome {
        let key = Arc::clone(&self.identities);
        // A failed heartbeat leaves no lease: the next step checks out anew.
        let next = self.api.renew(&key[identity].api_key, lease).await?;
        self.lease = Some((identity, next));
        Ok(())
    }
}

impl<A: LeaseApi> Worker for ApiWorker<A> {
    async fn step(&mut self) -> Outcome {
        match (self.workload, self.lease.take()) {
            (Workload::Check, _) => {
                let identity = self.take_identity();
                let key = Arc::clone(&self.identities);
                self.api.check(&key[identity].api_key).await
            }
            (Workload::Consume, _) | (Workload::Renew | Workload::Cycle, None) => self.checkout().await,
            (Workload::Renew, Some((identity, lease))) => self.renew(identity, &lease).await,
            (Workload::Cycle, Some((identity, lease))) if !self.renewed => {
                self.renewed = true;
                self.renew(identity, &lease).await
            }
            (Workload::Cycle, Some((identity, lease))) => {
                let key = Arc::clone(&self.identities);
                self.api.release(&key[identity].api_key, &lease).await
            }
        }
    }
}

/// The Enterprise `/authz/` API.
pub struct Authz {
    connection: Connection,
    hw: String,
}

impl Authz {
    /// A client of the server at `addr` on hardware id `hw`.
    pub fn new(addr: SocketAddr, hw: String) -> Authz {
        Authz { connection: Connection::new(addr), hw }
    }
}

impl LeaseApi for Authz {
    async fn check(&mut self, key: &str) -> Outcome {
        let path = format!("/authz/.txt?{ITEM}&doConsume=false&hw={}", self.hw);
        let body = expect_ok(self.connection.send(Method::GET, &path, Some(key), None).await?)?;
        if body.as_ref() == b"true" {
            Ok(())
        } else {
            Err(Failure::new("denied"))
        }
    }

    async fn checkout(&mut self, key: &str) -> Result<String, Failure> {
        let path = format!("/authz/.jwt?{ITEM}&hw={}", self.hw);
        let token = expect_ok(self.connection.send(Method::GET, &path, Some(key), None).await?)?;
        lease_of_enterprise_token(&token)
    }

    async fn renew(&mut self, key: &str, lease: &str) -> Result<String, Failure> {
        let path = format!("/authz/.jwt?{ITEM}=;leaseId={lease}&hw={}", self.hw);
        let token = expect_ok(self.connection.send(Method::GET, &path, Some(key), None).await?)?;
        lease_of_enterprise_token(&token)
    }

    async fn release(&mut self, key: &str, lease: &str) -> Outcome {
        let path = format!("/authz/.json?release&{lease}");
        let body = expect_ok(self.connection.send(Method::GET, &path, Some(key), None).await?)?;
        let answer: serde_json::Value = serde_json::from_slice(&body).map_err(|_| Failure::new("bad answer"))?;
        if answer[lease] == serde_json::Value::Bool(true) {
            Ok(())
        } else {
            Err(Failure::new("release refused"))
        }
    }
}

/// The Scale License Checkout API (`/licensing/actions/...`). It has no check without a
/// lease, so its `check` is refused as a usage error before any request is sent.
pub struct Scale {
    connection: Connection,
    hw: String,
}

impl Scale {
    /// A client of the server at `addr` on hardware id `hw`.
    pub fn new(addr: SocketAddr, hw: String) -> Scale {
        Scale { connection: Connection::new(addr), hw }
    }

    /// POSTs `body` to action `action` with the client's claims; the answer's one element.
    async fn action(&mut self, key: &str, action: &str, body: serde_json::Value) -> Result<serde_json::Value, Failure> {
        let path = format!("/licensing/actions/{action}");
        let headers = [("cliHwId", self.hw.as_str())];
        let answer =
            self.connection.send_with(Method::POST, &path, Some(key), &headers, Some(Bytes::from(body.to_string())));
        let body = expect_ok(answer.await?)?;
        let mut list: Vec<serde_json::Value> = serde_json::from_slice(&body).map_err(|_| Failure::new("bad answer"))?;
        list.pop().ok_or_else(|| Failure::new("empty answer"))
    }

    async fn lease_action(&mut self, key: &str, action: &str, body: serde_json::Value) -> Result<String, Failure> {
        let token = self.action(key, action, body).await?;
        lease_of_scale_token(token.as_str().ok_or_else(|| Failure::new("not a token"))?.as_bytes())
    }
}

impl LeaseApi for Scale {
    async fn check(&mut self, _key: &str) -> Outcome {
        Err(Failure::new("the Scale API has no check"))
    }

    async fn checkout(&mut self, key: &str) -> Result<String, Failure> {
        self.lease_action(key, "checkout", serde_json::json!([{"productName": ITEM}])).await
    }

    async fn renew(&mut self, key: &str, lease: &str) -> Result<String, Failure> {
        self.lease_action(key, "heartbeat", serde_json::json!([{"leaseId": lease}])).await
    }

    async fn release(&mut self, key: &str, lease: &str) -> Outcome {
        let result = self.action(key, "release", serde_json::json!([{"leaseId": lease}])).await?;
        if result["released"] == serde_json::Value::Bool(true) {
            Ok(())
        } else {
            Err(Failure::new(result["errorCode"].as_str().unwrap_or("release refused")))
        }
    }
}

/// The claims of a JWT.
fn claims_of(token: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, Failure> {
    let payload = token.split(|b| *b == b'.').nth(1).ok_or_else(|| Failure::new("not a JWT"))?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| Failure::new("not a JWT"))?;
    serde_json::from_slice(&payload).map_err(|_| Failure::new("not a JWT"))
}

/// The lease id (`leaseId`) of a signed Scale grant, or the denial's error code as a failure.
fn lease_of_scale_token(token: &[u8]) -> Result<String, Failure> {
    let claims = claims_of(token)?;
    if let Some(code) = claims.get("errorCode").and_then(|c| c.as_str()) {
        return Err(Failure::new(code));
    }
    claims.get("leaseId").and_then(|j| j.as_str()).map(str::to_owned).ok_or_else(|| Failure::new("no leaseId"))
}

/// The lease id (`jti`) of a signed Enterprise grant, or the denial's error code as a failure.
fn lease_of_enterprise_token(token: &[u8]) -> Result<String, Failure> {
    let claims = claims_of(token)?;
    if let Some(code) = claims.get(&format!("{ITEM}_errorCode")).and_then(|c| c.as_str()) {
        return Err(Failure::new(code));
    }
    claims.get("jti").and_then(|j| j.as_str()).map(str::to_owned).ok_or_else(|| Failure::new("no jti"))
}
