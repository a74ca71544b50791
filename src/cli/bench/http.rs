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
        let mut builder = Request::builder().method(method).uri(path_and_query).header("host", &self.host);
        if let Some(bearer) = bearer {
            builder = builder.header("authorization", format!("Bearer {bearer}"));
        }
        if json_body.is_some() {
            builder = builder.header("content-type", "application/json");
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

/// Drives the Enterprise `/authz/` API as one consumer on one hardware id.
pub struct AuthzWorker {
    connection: Connection,
    workload: Workload,
    identities: Arc<Vec<Identity>>,
    /// Which identity the next checkout uses; workers step through them so that every license
    /// is used.
    next_identity: usize,
    stride: usize,
    hw: String,
    /// The lease held, with the identity that holds it.
    lease: Option<(usize, String)>,
    /// For `cycle`: whether the held lease was already renewed.
    renewed: bool,
}

impl AuthzWorker {
    /// Worker number `index` of `workers`, taking identities `index`, `index + workers`, ...
    pub fn new(
        addr: SocketAddr,
        workload: Workload,
        identities: Arc<Vec<Identity>>,
        index: usize,
        workers: usize,
    ) -> Self {
        AuthzWorker {
            connection: Connection::new(addr),
            workload,
            identities,
            next_identity: index,
            stride: workers.max(1),
            hw: format!("bench-hw-{index}"),
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

    async fn checkout(&mut self, identity: usize, lease: Option<&str>) -> Result<String, Failure> {
        let key = &self.identities[identity].api_key;
        let path = match lease {
            Some(lease) => format!("/authz/.jwt?{ITEM}=;leaseId={lease}&hw={}", self.hw),
            None => format!("/authz/.jwt?{ITEM}&hw={}", self.hw),
        };
        let token = expect_ok(self.connection.send(Method::GET, &path, Some(key), None).await?)?;
        lease_of_enterprise_token(&token)
    }

    async fn check(&mut self) -> Outcome {
        let identity = self.take_identity();
        let key = &self.identities[identity].api_key;
        let path = format!("/authz/.txt?{ITEM}&doConsume=false&hw={}", self.hw);
        let body = expect_ok(self.connection.send(Method::GET, &path, Some(key), None).await?)?;
        if body.as_ref() == b"true" {
            Ok(())
        } else {
            Err(Failure::new("denied"))
        }
    }

    async fn release(&mut self, identity: usize, lease: &str) -> Outcome {
        let key = &self.identities[identity].api_key;
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

impl Worker for AuthzWorker {
    async fn step(&mut self) -> Outcome {
        match self.workload {
            Workload::Check => self.check().await,
            Workload::Consume => {
                let identity = self.take_identity();
                self.checkout(identity, None).await.map(drop)
            }
            Workload::Renew => match self.lease.take() {
                Some((identity, lease)) => {
                    let renewed = self.checkout(identity, Some(&lease)).await;
                    // A failed heartbeat leaves no lease: the next step checks out anew.
                    renewed.map(|next| self.lease = Some((identity, next)))
                }
                None => {
                    let identity = self.take_identity();
                    self.checkout(identity, None).await.map(|lease| self.lease = Some((identity, lease)))
                }
            },
            Workload::Cycle => match self.lease.take() {
                None => {
                    let identity = self.take_identity();
                    self.renewed = false;
                    self.checkout(identity, None).await.map(|lease| self.lease = Some((identity, lease)))
                }
                Some((identity, lease)) if !self.renewed => {
                    self.renewed = true;
                    self.checkout(identity, Some(&lease)).await.map(|next| self.lease = Some((identity, next)))
                }
                Some((identity, lease)) => self.release(identity, &lease).await,
            },
        }
    }
}

/// The lease id (`jti`) of a signed Enterprise grant, or the denial's error code as a failure.
fn lease_of_enterprise_token(token: &[u8]) -> Result<String, Failure> {
    let payload = token.split(|b| *b == b'.').nth(1).ok_or_else(|| Failure::new("not a JWT"))?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| Failure::new("not a JWT"))?;
    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&payload).map_err(|_| Failure::new("not a JWT"))?;
    if let Some(code) = claims.get(&format!("{ITEM}_errorCode")).and_then(|c| c.as_str()) {
        return Err(Failure::new(code));
    }
    claims.get("jti").and_then(|j| j.as_str()).map(str::to_owned).ok_or_else(|| Failure::new("no jti"))
}
