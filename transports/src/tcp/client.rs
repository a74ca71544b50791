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
//! Over TLS ([`Client::connect_tls`]), the server's certificate is checked against the roots of
//! a [`ClientTls`]: a CA file of the deployment's, or the web's roots.
//!
//! Threads: the client spawns a reader and a writer task on the current tokio runtime per
//! connection; the writer sends every frame that is ready in one write, after letting the callers
//! woken by the same answers queue their next requests (one write for all of them). The reader
//! also fails the calls that waited past their timeout: there is no timer per call.

use crate::tcp::frame::{self, DEFAULT_MAX_REQUEST_FRAME_BYTES, DEFAULT_MAX_RESPONSE_FRAME_BYTES};
use crate::tcp::messages::{
    self, Authenticate, Authenticated, Consume, ConsumeOnce, Denied, Dialect, Failure, Granted, Release, Released,
    Renew, Request, Response, PROTOCOL_VERSION,
};
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use leasehold_engine::claims::Claims;
use leasehold_engine::time::{Clock, SystemClock};
use leasehold_engine::tokens::{Verifier, VerifyError};
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};

/// How a client authenticates: a consumer API key, or a license key.
pub use crate::tcp::messages::Credential as Auth;

/// How a client checks the server's certificate over TLS: the roots it trusts and the name the
/// certificate must carry.
#[derive(Clone)]
pub struct ClientTls {
    connector: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts the CA certificates (PEM) in `ca_file`; the server's certificate must name
    /// `server_name` (a DNS name or an IP address).
    pub fn from_ca_file(ca_file: &Path, server_name: &str) -> Result<ClientTls, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in crate::tls::certificates(ca_file).map_err(|e| ClientError::Io(e.to_string()))? {
            roots.add(cert).map_err(|e| ClientError::Io(format!("{}: {e}", ca_file.display())))?;
        }
        ClientTls::with_roots(roots, server_name)
    }

    /// Trusts the web's root certificates (Mozilla's, as webpki-roots ships them).
    pub fn with_web_roots(server_name: &str) -> Result<ClientTls, ClientError> {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        ClientTls::with_roots(roots, server_name)
    }

    fn with_roots(roots: rustls::RootCertStore, server_name: &str) -> Result<ClientTls, ClientError> {
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| ClientError::Io(format!("server name {server_name:?}: {e}")))?;
        let config = crate::tls::client_config(roots).map_err(|e| ClientError::Io(e.to_string()))?;
        Ok(ClientTls { connector: tokio_rustls::TlsConnector::from(Arc::new(config)), server_name })
    }

    /// Runs the TLS handshake on `stream`, checking the server's certificate; the secured stream
    /// (which any protocol may speak over, HTTP included).
    pub async fn handshake(&self, stream: tokio::net::TcpStream) -> Result<TlsStream, ClientError> {
        let secured = self.connector.connect(self.server_name.clone(), stream).await;
        secured.map_err(|e| ClientError::Io(format!("TLS handshake: {e}")))
    }
}

/// A TCP stream secured by [`ClientTls::handshake`].
pub type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Options of a [`Client`].
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// The dialect of tokens, unless a request chooses another.
    pub dialect: Dialect,
    /// Longest a connect (and its authentication) may take.
    pub connect_timeout: Duration,
    /// Longest one call waits for its answer (up to about an eighth more: the waiting calls are
    /// looked at eight times per timeout).
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

/// How many times per request timeout a connection's reader looks for calls that waited too
/// long: a call times out between its timeout and about an eighth more. (A timer armed and
/// cancelled per call cost a pipelining client about a twentieth of its time.)
const SWEEPS_PER_TIMEOUT: u32 = 8;
/// Bytes set aside for a request's frame before encoding it (a check is about 60).
const REQUEST_FRAME_BYTES_GUESS: usize = 256;
/// Bytes the reader asks the socket for at a time.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Bytes of frames the writer gathers for one write.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// A call waiting for its answer.
struct Waiting {
    answer: oneshot::Sender<Result<Response, ClientError>>,
    /// The sweep after which it has waited too long.
    expires_after_sweep: u64,
}

/// What a connection's calls and its reader and writer tasks share.
struct Shared {
    /// The calls waiting for an answer, by request id.
    pending: Mutex<HashMap<u32, Waiting>>,
    /// Sweeps for timed-out calls done so far (see [`SWEEPS_PER_TIMEOUT`]).
    sweeps: AtomicU64,
    closed: AtomicBool,
    last_word: Mutex<Option<Failure>>,
}

impl Shared {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Waiting>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn disconnected(&self) -> ClientError {
        ClientError::Disconnected(self.last_word.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Fails the calls that have waited past their timeout.
    fn sweep(&self) {
        let done = self.sweeps.fetch_add(1, Ordering::Relaxed) + 1;
        let expired: Vec<Waiting> =
            self.pending().extract_if(|_, waiting| waiting.expires_after_sweep <= done).map(|(_, w)| w).collect();
        for waiting in expired {
            let _ = waiting.answer.send(Err(ClientError::Timeout));
        }
    }
}

/// One authenticated connection.
struct Link {
    frames: mpsc::Sender<Bytes>,
    shared: Arc<Shared>,
    sweep_every: Duration,
}

impl Link {
    fn is_open(&self) -> bool {
        !self.shared.closed.load(Ordering::Acquire)
    }

    /// Sends the frame of request `id` and waits for its answer, at most `timeout` (and up to two
    /// sweeps more).
    async fn exchange(&self, id: u32, frame: Bytes, timeout: Duration) -> Result<Response, ClientError> {
        let (answer, answered) = oneshot::channel();
        // The next sweep may come at once: the call expires `timeout` after it, at the earliest.
        let sweeps = u64::try_from(timeout.as_nanos().div_ceil(self.sweep_every.as_nanos().max(1))).unwrap_or(u64::MAX);
        let expires_after_sweep = self.shared.sweeps.load(Ordering::Relaxed).saturating_add(1).saturating_add(sweeps);
        self.shared.pending().insert(id, Waiting { answer, expires_after_sweep });
        let forget = || self.shared.pending().remove(&id);
        // The reader marks the link closed before it clears the waiting calls: a call registered
        // after that clearing sees the mark here instead of waiting for its timeout.
        if !self.is_open() {
            forget();
            return Err(self.shared.disconnected());
        }
        match self.frames.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(frame)) => {
                // The writer is behind: wait for room, within the call's timeout.
                match tokio::time::timeout(timeout, self.frames.send(frame)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => {
                        forget();
                        return Err(self.shared.disconnected());
                    }
                    Err(_) => {
                        forget();
                        return Err(ClientError::Timeout);
                    }
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                forget();
                return Err(self.shared.disconnected());
            }
        }
        match answered.await {
            Ok(answer) => answer,
            Err(_) => Err(self.shared.disconnected()),
        }
    }
}

/// Writes queued frames, all that are ready in one write, until the link is dropped.
async fn write_frames(mut socket: impl AsyncWrite + Unpin, mut frames: mpsc::Receiver<Bytes>, shared: Arc<Shared>) {
    let mut batch = BytesMut::with_capacity(WRITE_BATCH_BYTES);
    while let Some(first) = frames.recv().await {
        batch.extend_from_slice(&first);
        // The callers woken by the same batch of answers are about to send their next request:
        // letting them run first puts theirs in this write too (fewer, fuller writes and reads
        // on both sides).
        tokio::task::yield_now().await;
        while batch.len() < WRITE_BATCH_BYTES {
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
    shared.closed.store(true, Ordering::Release);
    let _ = socket.shutdown().await;
}

/// Reads answers and hands each to its caller, and fails the calls that waited too long, until
/// the connection ends; then fails every call still waiting.
async fn read_answers(
    mut socket: impl AsyncRead + Unpin,
    shared: Arc<Shared>,
    max_frame_bytes: usize,
    sweep_every: Duration,
) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut sweeps = tokio::time::interval_at(tokio::time::Instant::now() + sweep_every, sweep_every);
    sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                    *shared.last_word.lock().unwrap_or_else(|p| p.into_inner()) = Some(failure);
                }
                continue;
            }
            let waiting = shared.pending().remove(&frame.request_id);
            if let Some(waiting) = waiting {
                let _ = waiting.answer.send(Ok(response));
            }
        }
        buf.reserve(READ_CHUNK_BYTES);
        tokio::select! {
            read = socket.read_buf(&mut buf) => match read {
                Ok(n) if n > 0 => {}
                _ => break,
            },
            _ = sweeps.tick() => shared.sweep(),
        }
    }
    shared.closed.store(true, Ordering::Release);
    shared.pending().clear();
}

/// A connection to a Leasehold server's binary protocol (see the module comment). Cheap to
/// share: wrap it in an `Arc` and call from many tasks.
pub struct Client {
    addr: SocketAddr,
    auth: Auth,
    config: ClientConfig,
    tls: Option<ClientTls>,
    link: Mutex<Option<Arc<Link>>>,
    reconnecting: tokio::sync::Mutex<()>,
    /// The last request id used (ids count up from 1 over every connection of the client; 0 is
    /// the connection's own).
    last_request_id: AtomicU32,
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
        Client::connect_over(addr, auth, config, None).await
    }

    /// Connects to `addr` over TLS, checking the server's certificate with `tls`, and
    /// authenticates with `auth`.
    pub async fn connect_tls(
        addr: impl ToSocketAddrs,
        auth: Auth,
        config: ClientConfig,
        tls: ClientTls,
    ) -> Result<Client, ClientError> {
        Client::connect_over(addr, auth, config, Some(tls)).await
    }

    async fn connect_over(
        addr: impl ToSocketAddrs,
        auth: Auth,
        config: ClientConfig,
        tls: Option<ClientTls>,
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
            tls,
            link: Mutex::new(None),
            reconnecting: tokio::sync::Mutex::new(()),
            last_request_id: AtomicU32::new(0),
            authenticated: Mutex::new(None),
            verifier: Mutex::new(None),
            connections_opened: AtomicU64::new(0),
        };
        client.reconnect().await?;
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
    async fn reconnect(&self) -> Result<Arc<Link>, ClientError> {
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
        let (frames, queued) = mpsc::channel(self.config.max_queued.max(1));
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            sweeps: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            last_word: Mutex::new(None),
        });
        let sweep_every = (self.config.request_timeout / SWEEPS_PER_TIMEOUT).max(Duration::from_millis(1));
        let link = Arc::new(Link { frames, shared: Arc::clone(&shared), sweep_every });
        let max_frame_bytes = self.config.max_frame_bytes;
        match &self.tls {
            None => {
                let (reader, writer) = stream.into_split();
                tokio::spawn(write_frames(writer, queued, Arc::clone(&shared)));
                tokio::spawn(read_answers(reader, shared, max_frame_bytes, sweep_every));
            }
            Some(tls) => {
                let (reader, writer) = tokio::io::split(tls.handshake(stream).await?);
                tokio::spawn(write_frames(writer, queued, Arc::clone(&shared)));
                tokio::spawn(read_answers(reader, shared, max_frame_bytes, sweep_every));
            }
        }
        let hello = Request::Authenticate(Authenticate { credential: self.auth.clone(), dialect: self.config.dialect });
        let (id, frame) = self.frame_of(&hello)?;
        match link.exchange(id, frame, self.config.connect_timeout).await? {
            Response::Authenticated(authenticated) => {
                *self.authenticated.lock().unwrap_or_else(|p| p.into_inner()) = Some(authenticated);
                self.connections_opened.fetch_add(1, Ordering::Relaxed);
                Ok(link)
            }
            Response::Failure(failure) => Err(ClientError::Failure(failure)),
            other => Err(unexpected("Authenticate", &other)),
        }
    }

    /// A request id not 0 (the connection's own).
    fn request_id(&self) -> u32 {
        loop {
            let id = self.last_request_id.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            if id != 0 {
                return id;
            }
        }
    }

    /// A new request id and the frame of `request` under it, unless the frame is over the
    /// server's limit (the server would close the connection, failing every call on it).
    fn frame_of(&self, request: &Request) -> Result<(u32, Bytes), ClientError> {
        let id = self.request_id();
        let mut frame = BytesMut::with_capacity(REQUEST_FRAME_BYTES_GUESS);
        frame::encode_with(PROTOCOL_VERSION, id, &mut frame, |dst| messages::encode_into(request, dst))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if frame.len() > self.config.max_request_frame_bytes {
            return Err(ClientError::Protocol(format!(
                "a {} request of {} bytes is over the frame limit of {} bytes",
                request.name(),
                frame.len(),
                self.config.max_request_frame_bytes
            )));
        }
        Ok((id, frame.freeze()))
    }

    /// Sends `request` and waits for its answer. Not an `async fn`: the request is encoded
    /// before the future exists, so the future holds its bytes, not the request (calls' futures
    /// are held by the caller's tasks, and moved at every layer: they are kept small).
    fn call(&self, request: Request) -> impl Future<Output = Result<Response, ClientError>> + '_ {
        let framed = self.frame_of(&request);
        async move {
            let (id, frame) = framed?;
            let link = match self.current() {
                Some(link) => link,
                None => Box::pin(self.reconnect()).await?,
            };
            match link.exchange(id, frame, self.config.request_timeout).await? {
                Response::Failure(failure) => Err(ClientError::Failure(failure)),
                response => Ok(response),
            }
        }
    }

    fn decision(&self, request: Request) -> impl Future<Output = Result<Result<Granted, Denied>, ClientError>> + '_ {
        let name = request.name();
        self.call(request).map(move |answer| match answer? {
            Response::Granted(granted) => Ok(Ok(*granted)),
            Response::Denied(denied) => Ok(Err(denied)),
            other => Err(unexpected(name, &other)),
        })
    }

    fn ending(&self, request: Request) -> impl Future<Output = Result<Result<Released, Denied>, ClientError>> + '_ {
        let name = request.name();
        self.call(request).map(move |answer| match answer? {
            Response::Released(released) => Ok(Ok(released)),
            Response::Denied(denied) => Ok(Err(denied)),
            other => Err(unexpected(name, &other)),
        })
    }

    /// Checks out a lease.
    pub fn consume(&self, consume: Consume) -> impl Future<Output = Result<Result<Granted, Denied>, ClientError>> + '_ {
        self.decision(Request::Consume(consume))
    }

    /// Checks out a lease at most once: a retry with the same `idempotency_key` and the same
    /// consume, within a day and on any connection of the same credential, is answered with the
    /// first lease instead of a second one.
    pub fn consume_once(
        &self,
        idempotency_key: impl Into<String>,
        consume: Consume,
    ) -> impl Future<Output = Result<Result<Granted, Denied>, ClientError>> + '_ {
        self.decision(Request::ConsumeOnce(ConsumeOnce { idempotency_key: idempotency_key.into(), consume }))
    }

    /// What a consume would answer, changing nothing.
    pub fn check(&self, consume: Consume) -> impl Future<Output = Result<Result<Granted, Denied>, ClientError>> + '_ {
        self.decision(Request::Check(consume))
    }

    /// Renews (heartbeats) a lease; the grant carries the new lease id.
    pub fn renew(&self, renew: Renew) -> impl Future<Output = Result<Result<Granted, Denied>, ClientError>> + '_ {
        self.decision(Request::Renew(renew))
    }

    /// Releases a lease.
    pub fn release(
        &self,
        release: Release,
    ) -> impl Future<Output = Result<Result<Released, Denied>, ClientError>> + '_ {
        self.ending(Request::Release(release))
    }

    /// Starts metered use of a metered license.
    pub fn start_metered(
        &self,
        consume: Consume,
    ) -> impl Future<Output = Result<Result<Granted, Denied>, ClientError>> + '_ {
        self.decision(Request::StartMetered(consume))
    }

    /// Heartbeats metered use, reporting usage so far.
    pub fn heartbeat_metered(
        &self,
        renew: Renew,
    ) -> impl Future<Output = Result<Result<Granted, Denied>, ClientError>> + '_ {
        self.decision(Request::HeartbeatMetered(renew))
    }

    /// Ends metered use, reporting the final usage.
    pub fn end_metered(
        &self,
        release: Release,
    ) -> impl Future<Output = Result<Result<Released, Denied>, ClientError>> + '_ {
        self.ending(Request::EndMetered(release))
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

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold_engine::LeaseId;

    /// The size of the future `make` returns, without making one.
    fn future_bytes<F: Future>(_make: impl Fn(&'static Client) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn a_call_in_flight_holds_its_bytes_not_its_request() {
        // A caller holds one of these per call in flight, inside its own future.
        for bytes in [
            future_bytes(|client| client.check(Consume::new("ThreeDee"))),
            future_bytes(|client| client.renew(Renew::new(LeaseId(uuid::Uuid::nil())))),
            future_bytes(|client| client.release(Release::new(LeaseId(uuid::Uuid::nil())))),
        ] {
            assert!(bytes <= 1024, "a call's future takes {bytes} bytes");
        }
    }
}
