//! The Rust client of the binary protocol: connect, authenticate, then call operations from as
//! many tasks as you like; calls are pipelined on one connection and matched to their answers
//! by request id, so answers may come back in any order.
//!
//! ```no_run
//! use leasehold_transports::tcp::client::{Auth, Client};
//! use leasehold_transports::tcp::messages::{Consume, Release, Renew};
//! # async fn demo() -> Result<(), leasehold_transports::tcp::client::ClientError> {
//! let client = Client::connect("127.0.0.1:7070", Auth::ApiKey("lh_...".into())).await?;
//! match client.consume(Consume::new("ThreeDee").hw("machine-1")).await? {
//!     Ok(grant) => {
//!         let claims = client.verify(grant.token.as_deref().unwrap_or_default()).await?;
//!         println!("lease {} until {}: {claims:?}", grant.lease_id, grant.expires_at_s);
//!         let renewed = client.renew(Renew::new(grant.lease_id)).await?;
//!         if let Ok(renewed) = renewed {
//!             client.release(Release::new(renewed.lease_id)).await?.ok();
//!         }
//!     }
//!     Err(denied) => println!("denied: {} ({})", denied.code, denied.message),
//! }
//! # Ok(()) }
//! ```
//!
//! A refusal is a value (`Ok(Err(Denied))`); `Err(ClientError)` is for what went wrong on the
//! way (timeout, lost connection, a protocol failure). When the connection is lost, the calls in
//! flight fail with [`ClientError::Disconnected`] (they are not retried: a consume may have been
//! granted) and the next call connects and authenticates again.
//!
//! Threads: the client spawns a reader and a writer task on the current tokio runtime per
//! connection; the writer sends every frame that is ready in one write.

use crate::tcp::frame::{self, DEFAULT_MAX_REQUEST_FRAME_BYTES, DEFAULT_MAX_RESPONSE_FRAME_BYTES};
use crate::tcp::messages::{
    self, Authenticate, Authenticated, Consume, Denied, Dialect, Failure, Granted, Release, Released, Renew, Request,
    Response, PROTOCOL_VERSION,
};
use bytes::{Bytes, BytesMut};
use leasehold_engine::claims::Claims;
use leasehold_engine::time::{Clock, SystemClock};
use leasehold_engine::tokens::{Verifier, VerifyError};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};

/// How a client authenticates: a consumer API key, or a license key.
pub use crate::tcp::messages::Credential as Auth;

/// Options of a [`Client`].
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// The dialect of tokens, unless a request chooses another.
    pub dialect: Dialect,
    /// Longest a connect (and its authentication) may take.
    pub connect_timeout: Duration,
    /// Longest one call waits for its answer.
    pub request_timeout: Duration,
    /// Largest answer frame accepted, header included.
    pub max_frame_bytes: usize,
    /// Largest request frame sent, header included: the server closes the connection (failing
    /// every call on it) on a frame over its limit, so a request over this one is refused here.
    pub max_request_frame_bytes: usize,
    /// Most frames queued for the writer; callers wait beyond it.
    pub max_queued: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            dialect: Dialect::Enterprise,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_frame_bytes: DEFAULT_MAX_RESPONSE_FRAME_BYTES,
            max_request_frame_bytes: DEFAULT_MAX_REQUEST_FRAME_BYTES,
            max_queued: 1024,
        }
    }
}

/// Why a call did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// Connecting or writing failed.
    #[error("I/O: {0}")]
    Io(String),
    /// No answer within the request (or connect) timeout.
    #[error("no answer in time")]
    Timeout,
    /// The connection closed before the answer came; the server's last word, if it said one.
    #[error("disconnected{}", .0.as_ref().map(|f| format!(": {f}")).unwrap_or_default())]
    Disconnected(Option<Failure>),
    /// The server could not carry out the request (see [`messages::FailureCode`]).
    #[error("server failure: {0}")]
    Failure(Failure),
    /// The server answered something this client did not expect.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A token did not verify.
    #[error("token: {0}")]
    Verify(#[from] VerifyError),
}

type Pending = Mutex<HashMap<u32, oneshot::Sender<Response>>>;

/// One authenticated connection.
struct Link {
    frames: mpsc::Sender<Bytes>,
    max_request_frame_bytes: usize,
    pending: Arc<Pending>,
    next_id: AtomicU32,
    closed: Arc<AtomicBool>,
    last_word: Arc<Mutex<Option<Failure>>>,
}

impl Link {
    fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }

    /// A request id not 0 (the connection's own).
    fn request_id(&self) -> u32 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    fn disconnected(&self) -> ClientError {
        ClientError::Disconnected(self.last_word.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    async fn call(&self, request: &Request, timeout: Duration) -> Result<Response, ClientError> {
        let payload = messages::encode(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        if frame::HEADER_BYTES + payload.len() > self.max_request_frame_bytes {
            return Err(ClientError::Protocol(format!(
                "a {} request of {} bytes is over the frame limit of {} bytes",
                request.name(),
                frame::HEADER_BYTES + payload.len(),
                self.max_request_frame_bytes
            )));
        }
        let id = self.request_id();
        let mut frame = BytesMut::with_capacity(frame::HEADER_BYTES + payload.len());
        frame::encode(PROTOCOL_VERSION, id, &payload, &mut frame);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id, tx);
        let forget = || self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        // The reader marks the link closed before it clears the waiting calls: a call registered
        // after that clearing sees the mark here instead of waiting for its timeout.
        if !self.is_open() {
            forget();
            return Err(self.disconnected());
        }
        let exchange = async {
            self.frames.send(frame.freeze()).await.map_err(|_| self.disconnected())?;
            rx.await.map_err(|_| self.disconnected())
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => {
                forget();
                Err(e)
            }
            Err(_) => {
                forget();
                Err(ClientError::Timeout)
            }
        }
    }
}

/// Writes queued frames, all that are ready in one write, until the link is dropped.
async fn write_frames(mut socket: OwnedWriteHalf, mut frames: mpsc::Receiver<Bytes>, closed: Arc<AtomicBool>) {
    let mut batch = BytesMut::with_capacity(64 * 1024);
    while let Some(first) = frames.recv().await {
        batch.extend_from_slice(&first);
        while batch.len() < 64 * 1024 {
            match frames.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if socket.write_all(&batch).await.is_err() {
            break;
        }
        batch.clear();
    }
    closed.store(true, Ordering::Release);
    let _ = socket.shutdown().await;
}

/// Reads answers and hands each to its caller, until the connection ends; then fails every call
/// still waiting.
async fn read_answers(
    mut socket: OwnedReadHalf,
    pending: Arc<Pending>,
    closed: Arc<AtomicBool>,
    last_word: Arc<Mutex<Option<Failure>>>,
    max_frame_bytes: usize,
) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    'read: loop {
        loop {
            let frame = match frame::decode(&mut buf, max_frame_bytes) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "TCP client: bad frame from the server");
                    break 'read;
                }
            };
            let response = match messages::decode::<Response>(&frame.payload) {
                Ok(response) => response,
                Err(e) => {
                    tracing::warn!(error = %e, "TCP client: undecodable answer");
                    break 'read;
                }
            };
            if frame.request_id == 0 {
                if let Response::Failure(failure) = response {
                    *last_word.lock().unwrap_or_else(|p| p.into_inner()) = Some(failure);
                }
                continue;
            }
            let waiting = pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&frame.request_id);
            if let Some(waiting) = waiting {
                let _ = waiting.send(response);
            }
        }
        match socket.read_buf(&mut buf).await {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    closed.store(true, Ordering::Release);
    pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

/// A connection to a Leasehold server's binary protocol (see the module comment). Cheap to
/// share: wrap it in an `Arc` and call from many tasks.
pub struct Client {
    addr: SocketAddr,
    auth: Auth,
    config: ClientConfig,
    link: Mutex<Option<Arc<Link>>>,
    reconnecting: tokio::sync::Mutex<()>,
    authenticated: Mutex<Option<Authenticated>>,
    verifier: Mutex<Option<Arc<Verifier>>>,
    connections_opened: AtomicU64,
}

impl Client {
    /// Connects to `addr` and authenticates with `auth`, with the default [`ClientConfig`].
    pub async fn connect(addr: impl ToSocketAddrs, auth: Auth) -> Result<Client, ClientError> {
        Client::connect_with(addr, auth, ClientConfig::default()).await
    }

    /// Connects to `addr` and authenticates with `auth`.
    pub async fn connect_with(
        addr: impl ToSocketAddrs,
        auth: Auth,
        config: ClientConfig,
    ) -> Result<Client, ClientError> {
        let addr = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| ClientError::Io(e.to_string()))?
            .next()
            .ok_or_else(|| ClientError::Io("the address resolves to nothing".into()))?;
        let client = Client {
            addr,
            auth,
            config,
            link: Mutex::new(None),
            reconnecting: tokio::sync::Mutex::new(()),
            authenticated: Mutex::new(None),
            verifier: Mutex::new(None),
            connections_opened: AtomicU64::new(0),
        };
        client.link().await?;
        Ok(client)
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections this client has opened and authenticated: 1, plus one per reconnect.
    pub fn connections_opened(&self) -> u64 {
        self.connections_opened.load(Ordering::Relaxed)
    }

    /// What the server said when the connection authenticated.
    pub fn authenticated(&self) -> Option<Authenticated> {
        self.authenticated.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn current(&self) -> Option<Arc<Link>> {
        self.link.lock().unwrap_or_else(|p| p.into_inner()).as_ref().filter(|l| l.is_open()).cloned()
    }

    /// The open connection, connecting (again) when there is none.
    async fn link(&self) -> Result<Arc<Link>, ClientError> {
        if let Some(link) = self.current() {
            return Ok(link);
        }
        let _one_at_a_time = self.reconnecting.lock().await;
        if let Some(link) = self.current() {
            return Ok(link);
        }
        let link = tokio::time::timeout(self.config.connect_timeout, self.open())
            .await
            .map_err(|_| ClientError::Timeout)??;
        *self.link.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&link));
        Ok(link)
    }

    async fn open(&self) -> Result<Arc<Link>, ClientError> {
        let stream = TcpStream::connect(self.addr).await.map_err(|e| ClientError::Io(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        let (frames, queued) = mpsc::channel(self.config.max_queued.max(1));
        let link = Arc::new(Link {
            frames,
            max_request_frame_bytes: self.config.max_request_frame_bytes,
            pending: Arc::new(Mutex::new(HashMap::new())),
            next_id: AtomicU32::new(1),
            closed: Arc::new(AtomicBool::new(false)),
            last_word: Arc::new(Mutex::new(None)),
        });
        tokio::spawn(write_frames(writer, queued, Arc::clone(&link.closed)));
        tokio::spawn(read_answers(
            reader,
            Arc::clone(&link.pending),
            Arc::clone(&link.closed),
            Arc::clone(&link.last_word),
            self.config.max_frame_bytes,
        ));
        let hello = Request::Authenticate(Authenticate { credential: self.auth.clone(), dialect: self.config.dialect });
        match link.call(&hello, self.config.connect_timeout).await? {
            Response::Authenticated(authenticated) => {
                *self.authenticated.lock().unwrap_or_else(|p| p.into_inner()) = Some(authenticated);
                self.connections_opened.fetch_add(1, Ordering::Relaxed);
                Ok(link)
            }
            Response::Failure(failure) => Err(ClientError::Failure(failure)),
            other => Err(unexpected("Authenticate", &other)),
        }
    }

    /// Sends `request` and waits for its answer.
    async fn call(&self, request: Request) -> Result<Response, ClientError> {
        let link = self.link().await?;
        match link.call(&request, self.config.request_timeout).await? {
            Response::Failure(failure) => Err(ClientError::Failure(failure)),
            response => Ok(response),
        }
    }

    async fn decision(&self, request: Request) -> Result<Result<Granted, Denied>, ClientError> {
        let name = request.name();
        match self.call(request).await? {
            Response::Granted(granted) => Ok(Ok(*granted)),
            Response::Denied(denied) => Ok(Err(denied)),
            other => Err(unexpected(name, &other)),
        }
    }

    async fn ending(&self, request: Request) -> Result<Result<Released, Denied>, ClientError> {
        let name = request.name();
        match self.call(request).await? {
            Response::Released(released) => Ok(Ok(released)),
            Response::Denied(denied) => Ok(Err(denied)),
            other => Err(unexpected(name, &other)),
        }
    }

    /// Checks out a lease.
    pub async fn consume(&self, consume: Consume) -> Result<Result<Granted, Denied>, ClientError> {
        self.decision(Request::Consume(consume)).await
    }

    /// What a consume would answer, changing nothing.
    pub async fn check(&self, consume: Consume) -> Result<Result<Granted, Denied>, ClientError> {
        self.decision(Request::Check(consume)).await
    }

    /// Renews (heartbeats) a lease; the grant carries the new lease id.
    pub async fn renew(&self, renew: Renew) -> Result<Result<Granted, Denied>, ClientError> {
        self.decision(Request::Renew(renew)).await
    }

    /// Releases a lease.
    pub async fn release(&self, release: Release) -> Result<Result<Released, Denied>, ClientError> {
        self.ending(Request::Release(release)).await
    }

    /// Starts metered use of a metered license.
    pub async fn start_metered(&self, consume: Consume) -> Result<Result<Granted, Denied>, ClientError> {
        self.decision(Request::StartMetered(consume)).await
    }

    /// Heartbeats metered use, reporting usage so far.
    pub async fn heartbeat_metered(&self, renew: Renew) -> Result<Result<Granted, Denied>, ClientError> {
        self.decision(Request::HeartbeatMetered(renew)).await
    }

    /// Ends metered use, reporting the final usage.
    pub async fn end_metered(&self, release: Release) -> Result<Result<Released, Denied>, ClientError> {
        self.ending(Request::EndMetered(release)).await
    }

    /// The server's JWKS document.
    pub async fn jwks(&self) -> Result<String, ClientError> {
        match self.call(Request::Jwks).await? {
            Response::Jwks(document) => Ok(document),
            other => Err(unexpected("jwks", &other)),
        }
    }

    /// A verifier for the server's current keys (fetched once, then cached).
    pub async fn verifier(&self) -> Result<Arc<Verifier>, ClientError> {
        if let Some(verifier) = self.verifier.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(verifier);
        }
        self.refresh_verifier().await
    }

    async fn refresh_verifier(&self) -> Result<Arc<Verifier>, ClientError> {
        let verifier = Arc::new(Verifier::from_jwks_json(self.jwks().await?.as_bytes())?);
        *self.verifier.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&verifier));
        Ok(verifier)
    }

    /// The claims of a signed token (a JWT, not a JWE: decrypt one first) if its signature
    /// verifies against the server's JWKS and it is in force now. A token signed by a key this
    /// client has not seen (the server rotated) refetches the JWKS once.
    pub async fn verify(&self, token: &str) -> Result<Claims, ClientError> {
        let now = SystemClock.now();
        match self.verifier().await?.verify(token, now) {
            Err(VerifyError::UnknownKey(_)) => Ok(self.refresh_verifier().await?.verify(token, now)?),
            other => Ok(other?),
        }
    }
}

fn unexpected(operation: &str, response: &Response) -> ClientError {
    let kind = match response {
        Response::Authenticated(_) => "Authenticated",
        Response::Granted(_) => "Granted",
        Response::Denied(_) => "Denied",
        Response::Released(_) => "Released",
        Response::Jwks(_) => "Jwks",
        Response::Failure(_) => "Failure",
    };
    ClientError::Protocol(format!("{operation} was answered with {kind}"))
}
