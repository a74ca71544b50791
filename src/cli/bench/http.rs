//! The HTTP side of the load generator: a keep-alive HTTP/1.1 connection per worker (over TLS
//! when the server serves it), and the workers that speak the Enterprise `/authz/` API or fetch
//! a hello-world page.
//!
//! The connection writes its requests and reads its answers itself (`httparse` parses the
//! answer's head) rather than through hyper's client: client and server share the machine, so
//! every microsecond the load generator spends is taken from the server it measures. hyper's
//! client hands each request to a connection task over a channel and reads one more time after
//! every answer, which costs the client more CPU per request than this connection does.

use super::driver::{Failure, Outcome, Worker};
use super::seed::Identity;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use hyper::{Method, StatusCode};
use leasehold_transports::tcp::client::{ClientTls, TlsStream};
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Headers an answer may have; hyper's server sends a handful.
const MAX_HEADERS: usize = 32;

/// How much the read buffer grows by: a signed token's answer fits in one read.
const READ_CHUNK: usize = 8 * 1024;

/// Where connections go: the server's address, and how to check its certificate when it serves
/// TLS.
#[derive(Clone)]
pub struct Target {
    /// The server's address.
    pub addr: SocketAddr,
    /// The TLS client (`None`: plain HTTP).
    pub tls: Option<ClientTls>,
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Target {
        Target { addr, tls: None }
    }
}

/// A connection's byte stream, plain or over TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Stream {
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(stream) => stream.write_all(bytes).await,
            Stream::Tls(stream) => {
                stream.write_all(bytes).await?;
                stream.flush().await
            }
        }
    }

    async fn read_buf(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        match self {
            Stream::Plain(stream) => stream.read_buf(buf).await,
            Stream::Tls(stream) => stream.read_buf(buf).await,
        }
    }
}

/// One keep-alive HTTP/1.1 connection, reopened after an I/O failure or a `connection: close`.
pub struct Connection {
    target: Target,
    stream: Option<Stream>,
    /// The request being written (reused).
    request: Vec<u8>,
    /// Bytes read and not yet handed out as an answer.
    received: BytesMut,
}

/// An answer: status and body.
pub struct Answer {
    /// The status code.
    pub status: StatusCode,
    /// The whole body.
    pub body: Bytes,
}

/// Where an answer's head ends and what it says about the body.
struct Head {
    status: StatusCode,
    head_len: usize,
    body_len: usize,
    close: bool,
}

impl Connection {
    /// A connection to `target` (opened on first use).
    pub fn new(target: impl Into<Target>) -> Connection {
        Connection { target: target.into(), stream: None, request: Vec::with_capacity(512), received: BytesMut::new() }
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
        self.write_request(&method, path_and_query, bearer, headers, json_body.as_deref())
            .map_err(|_| Failure::new("bad request"))?;
        let answer = self.exchange().await;
        if answer.is_err() {
            // Whatever the stream holds now is out of step with the requests: start afresh.
            self.stream = None;
        }
        answer
    }

    fn write_request(
        &mut self,
        method: &Method,
        path_and_query: &str,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> std::io::Result<()> {
        let request = &mut self.request;
        request.clear();
        write!(request, "{method} {path_and_query} HTTP/1.1\r\nhost: {}\r\n", self.target.addr)?;
        if let Some(bearer) = bearer {
            write!(request, "authorization: Bearer {bearer}\r\n")?;
        }
        for (name, value) in headers {
            write!(request, "{name}: {value}\r\n")?;
        }
        if let Some(body) = body {
            write!(request, "content-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len())?;
            request.extend_from_slice(body);
        } else if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
            request.extend_from_slice(b"content-length: 0\r\n\r\n");
        } else {
            request.extend_from_slice(b"\r\n");
        }
        Ok(())
    }

    /// Writes the prepared request and reads its answer.
    async fn exchange(&mut self) -> Result<Answer, Failure> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.target.addr).await.map_err(|_| Failure::new("connect"))?;
            let _ = stream.set_nodelay(true);
            let stream = match &self.target.tls {
                None => Stream::Plain(stream),
                Some(tls) => Stream::Tls(Box::new(tls.handshake(stream).await.map_err(|_| Failure::new("tls"))?)),
            };
            self.received.clear();
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().ok_or_else(|| Failure::new("connect"))?;
        stream.write_all(&self.request).await.map_err(|_| Failure::new("io"))?;
        let head = loop {
            if let Some(head) = parse_head(&self.received)? {
                break head;
            }
            read_more(stream, &mut self.received).await?;
        };
        let whole = head.head_len + head.body_len;
        while self.received.len() < whole {
            read_more(stream, &mut self.received).await?;
        }
        let body = self.received.split_to(whole).split_off(head.head_len).freeze();
        if head.close {
            self.stream = None;
        }
        Ok(Answer { status: head.status, body })
    }
}

/// Reads what the stream has into `received`; the end of the stream is a failure, since an
/// answer is still owed.
async fn read_more(stream: &mut Stream, received: &mut BytesMut) -> Result<(), Failure> {
    received.reserve(READ_CHUNK);
    match stream.read_buf(received).await {
        Ok(0) | Err(_) => Err(Failure::new("io")),
        Ok(_) => Ok(()),
    }
}

/// The answer's head, once `received` holds all of it.
fn parse_head(received: &[u8]) -> Result<Option<Head>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(received) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Failure::new("bad answer")),
    };
    let status = response.code.and_then(|code| StatusCode::from_u16(code).ok());
    let status = status.ok_or_else(|| Failure::new("bad answer"))?;
    let mut body_len = 0;
    let mut close = response.version == Some(0);
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(header.value).map_err(|_| Failure::new("bad answer"))?;
            body_len = text.trim().parse().map_err(|_| Failure::new("bad answer"))?;
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // Every answer Leasehold and the hello-world server send has a length.
            return Err(Failure::new("chunked answer"));
        } else if header.name.eq_ignore_ascii_case("connection") {
            close = header.value.eq_ignore_ascii_case(b"close");
        }
    }
    Ok(Some(Head { status, head_len, body_len, close }))
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
    /// A checkout with its token omitted, journaled like any other (TCP only: the protocol lets
    /// a trusted back end skip the signature).
    ConsumeUnsigned,
}

impl Workload {
    /// The workload's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Consume => "consume",
            Workload::Check => "check",
            Workload::Renew => "renew",
            Workload::Cycle => "cycle",
            Workload::ConsumeUnsigned => "consume-unsigned",
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
            (Workload::ConsumeUnsigned, _) => Err(Failure::new("consume-unsigned runs over TCP only")),
        }
    }
}

/// The Enterprise `/authz/` API.
pub struct Authz {
    connection: Connection,
    hw: String,
}

impl Authz {
    /// A client of the server at `target` on hardware id `hw`.
    pub fn new(target: impl Into<Target>, hw: String) -> Authz {
        Authz { connection: Connection::new(target), hw }
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
    /// A client of the server at `target` on hardware id `hw`.
    pub fn new(target: impl Into<Target>, hw: String) -> Scale {
        Scale { connection: Connection::new(target), hw }
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

/// The claims a lease answer is read for; serde skips the rest of the token's claims unread.
#[derive(serde::Deserialize)]
struct LeaseClaims {
    /// The Enterprise lease id.
    jti: Option<String>,
    /// The Scale lease id.
    #[serde(rename = "leaseId")]
    lease_id: Option<String>,
    /// The Scale denial's code.
    #[serde(rename = "errorCode")]
    error_code: Option<String>,
    /// The Enterprise denial's code for [`ITEM`].
    #[serde(rename = "bench_errorCode")]
    item_error_code: Option<String>,
}

/// The lease claims of a JWT.
fn claims_of(token: &[u8]) -> Result<LeaseClaims, Failure> {
    let payload = token.split(|b| *b == b'.').nth(1).ok_or_else(|| Failure::new("not a JWT"))?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| Failure::new("not a JWT"))?;
    serde_json::from_slice(&payload).map_err(|_| Failure::new("not a JWT"))
}

/// The lease id (`leaseId`) of a signed Scale grant, or the denial's error code as a failure.
fn lease_of_scale_token(token: &[u8]) -> Result<String, Failure> {
    let claims = claims_of(token)?;
    match (claims.error_code, claims.lease_id) {
        (Some(code), _) => Err(Failure::new(code)),
        (None, lease) => lease.ok_or_else(|| Failure::new("no leaseId")),
    }
}

/// The lease id (`jti`) of a signed Enterprise grant, or the denial's error code as a failure.
fn lease_of_enterprise_token(token: &[u8]) -> Result<String, Failure> {
    let claims = claims_of(token)?;
    match (claims.item_error_code, claims.jti) {
        (Some(code), _) => Err(Failure::new(code)),
        (None, lease) => lease.ok_or_else(|| Failure::new("no jti")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claims: serde_json::Value) -> Vec<u8> {
        format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(claims.to_string())).into_bytes()
    }

    #[test]
    fn an_answer_head_is_read_once_complete_with_its_length_and_whether_the_server_closes() {
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-len").unwrap().is_none());
        let head = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ntrue").unwrap().unwrap();
        assert_eq!((head.status, head.head_len, head.body_len, head.close), (StatusCode::OK, 38, 4, false));
        let head = parse_head(b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\r\n").unwrap().unwrap();
        assert_eq!((head.status, head.body_len, head.close), (StatusCode::SERVICE_UNAVAILABLE, 0, true));
        let chunked = parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!(chunked.err(), Some(Failure::new("chunked answer")));
        assert_eq!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").err(), Some(Failure::new("bad answer")));
    }

    /// Reads one request head from `stream` (and whatever came with it).
    async fn read_request(stream: &mut TcpStream) -> String {
        let mut received = Vec::new();
        while !received.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the client closed before a whole request");
            received.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8(received).unwrap()
    }

    #[tokio::test]
    async fn a_connection_reads_answers_in_turn_and_reopens_after_the_server_closes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let scripts: [&[&[u8]]; 2] = [
                &[
                    b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\none",
                    b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 3\r\n\r\ntwo",
                ],
                &[b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\nthree"],
            ];
            let mut requests = Vec::new();
            for answers in scripts {
                let (mut stream, _) = listener.accept().await.unwrap();
                for answer in answers {
                    requests.push(read_request(&mut stream).await);
                    // The head and the body in two writes: the client must wait for the rest.
                    let (head, body) = answer.split_at(answer.len() - 3);
                    stream.write_all(head).await.unwrap();
                    stream.flush().await.unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    stream.write_all(body).await.unwrap();
                }
            }
            requests
        });
        let mut connection = Connection::new(addr);
        let one = connection.send(Method::GET, "/one", Some("key"), None).await.unwrap();
        let two = connection.send(Method::GET, "/two", None, None).await.unwrap();
        let three = connection.send(Method::POST, "/three", None, Some(Bytes::from_static(b"{}"))).await.unwrap();
        assert_eq!((one.status, &one.body[..]), (StatusCode::OK, &b"one"[..]));
        assert_eq!((two.status, &two.body[..]), (StatusCode::OK, &b"two"[..]));
        assert_eq!((three.status, &three.body[..]), (StatusCode::CREATED, &b"three"[..]));
        let requests = server.await.unwrap();
        assert!(requests[0].starts_with("GET /one HTTP/1.1\r\n"), "{}", requests[0]);
        assert!(requests[0].contains("authorization: Bearer key\r\n"), "{}", requests[0]);
        assert!(requests[1].starts_with("GET /two HTTP/1.1\r\n"), "{}", requests[1]);
        assert!(requests[2].starts_with("POST /three HTTP/1.1\r\n"), "{}", requests[2]);
        assert!(requests[2].contains("content-length: 2\r\n"), "{}", requests[2]);
    }

    #[test]
    fn an_enterprise_denial_for_the_bench_item_is_read_as_its_code() {
        let denial = token(serde_json::json!({ format!("{ITEM}_errorCode"): "licenseQuotaExceeded", "iat": 1 }));
        assert_eq!(lease_of_enterprise_token(&denial).err(), Some(Failure::new("licenseQuotaExceeded")));
        let grant = token(serde_json::json!({ "jti": "lease-1", ITEM: true, "iat": 1 }));
        assert_eq!(lease_of_enterprise_token(&grant).ok().as_deref(), Some("lease-1"));
    }

    #[test]
    fn a_scale_answer_is_read_as_its_lease_or_its_code() {
        let grant = token(serde_json::json!({ "leaseId": "lease-2", "productName": ITEM }));
        assert_eq!(lease_of_scale_token(&grant).ok().as_deref(), Some("lease-2"));
        let denial = token(serde_json::json!({ "errorCode": "noLicenseFound" }));
        assert_eq!(lease_of_scale_token(&denial).err(), Some(Failure::new("noLicenseFound")));
        assert_eq!(lease_of_scale_token(b"not a token").err(), Some(Failure::new("not a JWT")));
    }
}
