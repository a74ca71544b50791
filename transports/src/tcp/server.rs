//! The TCP server: the accept loop, one task per connection, per-connection limits and
//! timeouts, and graceful shutdown.
//!
//! Threads: the accept loop runs on the caller's runtime and hands each accepted socket to one of
//! the engine's worker arbiters ([`leasehold_engine::Engine::workers`], round robin), as the HTTP
//! server does. A connection whose requests all go to licenses of one worker (a license key's, or
//! a consumer's whose licenses live together) then moves to that worker
//! ([`leasehold_engine::Engine::home_worker`]): a thread crossing costs a wake-up and a thread
//! switch per request.
//!
//! A connection is one task, with no task per request: it reads frames, starts each request as a
//! future of its own (`operations::apply`) and polls them all together (`Answers`); every answer
//! ready at once goes out in one write, so answers overtake each other (a check does not wait
//! for a consume's RSA signature). The request futures run in boxes the connection reuses and
//! are kept small (see `operations::apply`): a task per request of a few KiB each put `memmove`
//! and glibc's large-block allocation at the top of a profile of pipelined checks.
//!
//! Bounds, so that a slow or hostile client only ever stalls itself: frames of at most
//! `max_frame_bytes` (refused from the length prefix); at most `max_in_flight` requests of one
//! connection being answered, and at most 64 KiB of its answers waiting to be written (beyond
//! either, the connection stops reading: TCP backpressure, nothing dropped); answers that cannot
//! be written for `write_timeout` (a client that does not read) close the connection; the first
//! frame must come within `handshake_timeout` and must authenticate; a connection with nothing in
//! flight and no frame for `idle_timeout` is closed; at most `max_connections` at once (the
//! accept loop waits for a free slot).
//!
//! Garbage (a bad length, an unknown version, a payload that is not a request, a first request
//! that is not `Authenticate`) is answered with a [`Failure`] and the connection is closed: a
//! stream that has lost its framing cannot be trusted again.
//!
//! Proxies: a connection from a trusted proxy ([`TcpState::trusted_proxies`]) may start with a
//! PROXY protocol v2 header (before TLS); the client it names is the connection's peer from then
//! on (IP rules). From any other peer those bytes are a frame, and a bad one.
//!
//! TLS: with a [`ServerTls`], every connection is a TLS one. A client's first byte must start a
//! handshake (a plain-text client is answered a `TlsRequired` failure in plain text and closed);
//! the session is then relayed, by a task of its own, to one end of a socket pair, and the
//! connection is served on the other end exactly as a plain one (the relay's copies are the
//! price of keeping one connection loop). A TLS connection stays on the worker that accepted it.
//!
//! Shutdown: when the `shutdown` future resolves, the listener is dropped, every connection stops
//! reading, finishes the requests in flight, says `ShuttingDown` and closes; `serve` returns once
//! all have closed or `shutdown_grace` has passed.

use crate::client_address::{parse_proxy_v2, ProxyHeader, MAX_PROXY_HEADER_BYTES};
use crate::listener::{accept_loop, ConnectionGuard, ListenerConfig};
use crate::tcp::frame::{self, FrameError};
use crate::tcp::messages::{self, Failure, FailureCode, Request, Response, PROTOCOL_VERSION};
use crate::tcp::operations::{self, Principal, Session, TcpState};
use crate::tls::{starts_handshake, ServerTls};
use bytes::{Buf, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// Limits and timeouts of the TCP server.
#[derive(Debug, Clone, Copy)]
pub struct TcpConfig {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Largest request frame, header included.
    pub max_frame_bytes: usize,
    /// Most requests of one connection being answered at once.
    pub max_in_flight: usize,
    /// Longest the first (authentication) frame may take to arrive.
    pub handshake_timeout: Duration,
    /// Longest a connection may stay open with nothing in flight and no frame arriving.
    pub idle_timeout: Duration,
    /// Longest an answer may wait to be written before the connection is closed.
    pub write_timeout: Duration,
    /// Longest shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            max_connections: 10_000,
            max_frame_bytes: frame::DEFAULT_MAX_REQUEST_FRAME_BYTES,
            max_in_flight: 256,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            write_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Bytes of answers waiting to be written beyond which a connection stops reading requests (its
/// client does not read its answers fast enough).
const MAX_UNWRITTEN_BYTES: usize = 64 * 1024;
/// Bytes the reader asks the socket for at a time.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Most slots a connection keeps for its next requests' futures (~1.3 KiB each): enough for a
/// steady pipeline to allocate none; a burst beyond it allocates, and frees afterwards.
const MAX_SPARE_SLOTS: usize = 32;
/// After a protocol error, how long the reader keeps discarding what the client still sends, so
/// that closing does not reset the connection before the client has read the error.
const LINGER_AFTER_ERROR: Duration = Duration::from_millis(500);

/// Appends the frame of `response` to request `request_id` to `dst`.
fn put_answer(dst: &mut BytesMut, request_id: u32, response: &Response) {
    let encoded = frame::encode_with(PROTOCOL_VERSION, request_id, dst, |dst| messages::encode_into(response, dst));
    if let Err(e) = encoded {
        // Our own types always encode; if one ever does not, the client still gets an answer.
        tracing::error!(error = %e, "could not encode an answer");
        let failure = Response::Failure(Failure::new(FailureCode::Unavailable, "the answer could not be encoded"));
        let _ = frame::encode_with(PROTOCOL_VERSION, request_id, dst, |dst| messages::encode_into(&failure, dst));
    }
}

/// The frame of `response` to request `request_id`.
fn encode_frame(request_id: u32, response: &Response) -> BytesMut {
    let mut frame = BytesMut::new();
    put_answer(&mut frame, request_id, response);
    frame
}

/// How a connection ends.
enum Ending {
    /// The client closed, or the connection broke: nothing more to say.
    Quietly,
    /// Say this (request id 0 unless the failure answers a request), then close.
    With(u32, Failure),
    /// A protocol error: say this, discard what the client still sends for a moment, close.
    Garbage(u32, Failure),
}

fn frame_error(e: FrameError) -> Ending {
    let code = match e {
        FrameError::TooLarge { .. } => FailureCode::FrameTooLarge,
        FrameError::TooShort(_) => FailureCode::BadFrame,
    };
    Ending::Garbage(0, Failure::new(code, e.to_string()))
}

/// The request a frame carries, or how the connection ends when it carries none.
fn request_of(frame: &frame::Frame) -> Result<Request, Ending> {
    let id = frame.request_id;
    if frame.version != PROTOCOL_VERSION {
        let why = format!("protocol version {} is not spoken here; use {PROTOCOL_VERSION}", frame.version);
        return Err(Ending::Garbage(id, Failure::new(FailureCode::UnsupportedVersion, why)));
    }
    messages::decode::<Request>(&frame.payload)
        .map_err(|e| Ending::Garbage(id, Failure::new(FailureCode::BadPayload, e.to_string())))
}

fn shutting_down() -> Ending {
    Ending::With(0, Failure::new(FailureCode::ShuttingDown, "the server is shutting down"))
}

/// After a protocol error: reads and drops what the client still sends for a moment, so that
/// closing with unread bytes does not reset the connection before the client read the error.
async fn discard_for_a_moment(reader: &mut (impl AsyncReadExt + Unpin)) {
    let discard = async {
        let mut sink = [0u8; 4096];
        while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let _ = tokio::time::timeout(LINGER_AFTER_ERROR, discard).await;
}

/// A socket a connection is served on: the client's own, or the inner end of a TLS client's
/// relay. It splits into a reading half and a writing half that writes without waiting.
trait Socket: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The reading half.
    type Reader<'a>: AsyncRead + Unpin + Send
    where
        Self: 'a;
    /// The writing half.
    type Writer<'a>: AnswerWriter + AsyncWrite + Unpin + Send
    where
        Self: 'a;
    /// Both halves, borrowed.
    fn halves(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>);
}

/// A writing half that writes what the socket takes now, and says when it takes more.
trait AnswerWriter {
    /// Writes what fits now (`WouldBlock` when nothing does).
    fn try_write(&self, bytes: &[u8]) -> std::io::Result<usize>;
    /// Resolves when the socket may take more.
    fn writable(&self) -> impl Future<Output = std::io::Result<()>> + Send + '_;
}

impl Socket for TcpStream {
    type Reader<'a> = tokio::net::tcp::ReadHalf<'a>;
    type Writer<'a> = tokio::net::tcp::WriteHalf<'a>;

    fn halves(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>) {
        self.split()
    }
}

impl AnswerWriter for tokio::net::tcp::WriteHalf<'_> {
    fn try_write(&self, bytes: &[u8]) -> std::io::Result<usize> {
        tokio::net::tcp::WriteHalf::try_write(self, bytes)
    }

    fn writable(&self) -> impl Future<Output = std::io::Result<()>> + Send + '_ {
        tokio::net::tcp::WriteHalf::writable(self)
    }
}

impl Socket for UnixStream {
    type Reader<'a> = tokio::net::unix::ReadHalf<'a>;
    type Writer<'a> = tokio::net::unix::WriteHalf<'a>;

    fn halves(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>) {
        self.split()
    }
}

impl AnswerWriter for tokio::net::unix::WriteHalf<'_> {
    fn try_write(&self, bytes: &[u8]) -> std::io::Result<usize> {
        tokio::net::unix::WriteHalf::try_write(self, bytes)
    }

    fn writable(&self) -> impl Future<Output = std::io::Result<()>> + Send + '_ {
        tokio::net::unix::WriteHalf::writable(self)
    }
}

/// What one connection task holds: released when the connection ends.
struct Connection {
    state: Arc<TcpState>,
    config: TcpConfig,
    tls: Option<ServerTls>,
    peer: SocketAddr,
    /// The index of the worker serving it (in `Engine::workers`).
    worker: usize,
    shutdown: watch::Receiver<bool>,
    _guard: ConnectionGuard,
}

impl Connection {
    async fn run(mut self, stream: std::net::TcpStream) {
        let mut stream = match TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(peer = %self.peer, error = %e, "TCP: could not register the connection");
                return;
            }
        };
        // Answers go out at once instead of waiting to coalesce: the connection batches its own
        // writes (every answer ready at once in one write).
        let _ = stream.set_nodelay(true);
        let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
        if self.state.trusted_proxies.trusts(self.peer.ip()) {
            match self.proxied_client(&mut stream).await {
                Ok(Some(client)) => self.peer.set_ip(client),
                Ok(None) => {}
                Err(ending) => return self.close(stream, ending).await,
            }
        }
        if let Some(tls) = self.tls.clone() {
            let Some(mut relayed) = self.secure(&tls, stream).await else { return };
            let session = match self.authenticate(&mut relayed, &mut buf).await {
                Ok(session) => session,
                Err(ending) => return self.close(relayed, ending).await,
            };
            return self.serve(relayed, buf, session).await;
        }
        let session = match self.authenticate(&mut stream, &mut buf).await {
            Ok(session) => session,
            Err(ending) => return self.close(stream, ending).await,
        };
        if let Some(home) = self.better_worker(&session) {
            // Every request of this connection goes to licenses of one worker: served from that
            // worker, none of them crosses threads to reach a license's actor.
            match stream.into_std() {
                Ok(stream) => {
                    let peer = self.peer;
                    if !home.spawn(self.serve_moved(stream, buf, session)) {
                        tracing::warn!(%peer, "TCP: the license's worker has stopped; connection dropped");
                    }
                }
                Err(e) => tracing::warn!(peer = %self.peer, error = %e, "TCP: could not move the connection"),
            }
            return;
        }
        self.serve(stream, buf, session).await;
    }

    /// The worker to move to, when the session would be served better elsewhere: the home
    /// worker of a license key's license, or of every license a consumer may use when they all
    /// live on one worker (a consumer with a single license, most often).
    fn better_worker(&self, session: &Session) -> Option<actix::ArbiterHandle> {
        let engine = &self.state.engine;
        let home = match &session.principal {
            Principal::LicenseKey { license, .. } => engine.home_worker(*license),
            Principal::Consumer(consumer) => {
                let directory = engine.directory();
                let licensees = &directory.consumer(*consumer)?.licensees;
                let mut homes =
                    licensees.iter().flat_map(|l| directory.licenses_of(*l)).map(|l| engine.home_worker(l.id));
                let first = homes.next()?;
                if !homes.all(|home| home == first) {
                    return None;
                }
                first
            }
        };
        let handle = engine.workers().get(home).cloned()?;
        (home != self.worker).then_some(handle)
    }

    /// The TLS session of a client of the TLS port, relayed to one end of a socket pair, whose
    /// other end is answered; `None` (after saying why, when it can) when there is none.
    async fn secure(&self, tls: &ServerTls, stream: TcpStream) -> Option<UnixStream> {
        let peer = self.peer;
        let accepted = tokio::time::timeout(self.config.handshake_timeout, async {
            let mut first = [0u8; 1];
            match stream.peek(&mut first).await {
                Ok(1) if starts_handshake(first[0]) => tls.acceptor().accept(stream).await.map_err(|e| e.to_string()),
                Ok(1) => {
                    let plain = Failure::new(FailureCode::TlsRequired, "this port speaks TLS: connect with TLS");
                    self.close(stream, Ending::Garbage(0, plain)).await;
                    Err("a plain-text client on the TLS port".to_owned())
                }
                _ => Err("closed before a TLS handshake".to_owned()),
            }
        });
        let mut session = match accepted.await {
            Ok(Ok(session)) => session,
            Ok(Err(why)) => {
                tracing::debug!(%peer, why, "TCP: no TLS session");
                return None;
            }
            Err(_) => {
                tracing::debug!(%peer, "TCP: no TLS handshake in time");
                return None;
            }
        };
        let (inner, mut outer) = match UnixStream::pair() {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "TCP: no socket pair for a TLS connection");
                return None;
            }
        };
        tokio::spawn(async move {
            if let Err(e) = tokio::io::copy_bidirectional(&mut session, &mut outer).await {
                tracing::debug!(%peer, error = %e, "TCP: the TLS relay ended");
            }
        });
        Some(inner)
    }

    /// The client a trusted proxy names in the PROXY protocol v2 header it sends first (before
    /// TLS); `None` when it sends none (its own connection) or names no client.
    async fn proxied_client(&self, stream: &mut TcpStream) -> Result<Option<std::net::IpAddr>, Ending> {
        let read = async {
            let mut head = [0u8; MAX_PROXY_HEADER_BYTES];
            loop {
                let seen = stream.peek(&mut head).await.map_err(|_| Ending::Quietly)?;
                if seen == 0 {
                    return Err(Ending::Quietly);
                }
                match parse_proxy_v2(&head[..seen]) {
                    // The rest of a header is on its way (a proxy sends it at once).
                    ProxyHeader::Incomplete => tokio::time::sleep(Duration::from_millis(5)).await,
                    ProxyHeader::Absent => return Ok(None),
                    ProxyHeader::Invalid(why) => {
                        let why = format!("a PROXY protocol header that is not valid: {why}");
                        return Err(Ending::Garbage(0, Failure::new(FailureCode::BadFrame, why)));
                    }
                    ProxyHeader::Parsed { client, len } => {
                        stream.read_exact(&mut head[..len]).await.map_err(|_| Ending::Quietly)?;
                        return Ok(client);
                    }
                }
            }
        };
        tokio::time::timeout(self.config.handshake_timeout, read).await.unwrap_or(Err(Ending::Quietly))
    }

    /// The first frame, which must authenticate the connection within the handshake timeout.
    async fn authenticate<S: Socket>(&mut self, stream: &mut S, buf: &mut BytesMut) -> Result<Session, Ending> {
        match tokio::time::timeout(self.config.handshake_timeout, self.handshake(stream, buf)).await {
            Ok(answer) => answer,
            Err(_) => {
                let late = Failure::new(FailureCode::AuthenticationRequired, "no authentication in time");
                Err(Ending::With(0, late))
            }
        }
    }

    async fn serve_moved(self, stream: std::net::TcpStream, buf: BytesMut, session: Session) {
        match TcpStream::from_std(stream) {
            Ok(stream) => self.serve(stream, buf, session).await,
            Err(e) => tracing::warn!(peer = %self.peer, error = %e, "TCP: could not register the moved connection"),
        }
    }

    /// Reads the first frame, which must authenticate the connection, and answers it.
    async fn handshake<S: Socket>(&mut self, stream: &mut S, buf: &mut BytesMut) -> Result<Session, Ending> {
        let frame = loop {
            match frame::decode(buf, self.config.max_frame_bytes) {
                Ok(Some(frame)) => break frame,
                Ok(None) => {}
                Err(e) => return Err(frame_error(e)),
            }
            tokio::select! {
                read = stream.read_buf(buf) => match read {
                    Ok(n) if n > 0 => {}
                    _ => return Err(Ending::Quietly),
                },
                _ = self.shutdown.changed() => return Err(shutting_down()),
            }
        };
        let id = frame.request_id;
        let request = request_of(&frame)?;
        let Request::Authenticate(auth) = request else {
            let why = format!("the first request must be Authenticate, not {}", request.name());
            return Err(Ending::Garbage(id, Failure::new(FailureCode::AuthenticationRequired, why)));
        };
        let (session, answer) = operations::authenticate(&self.state, &auth, self.peer.ip())
            .map_err(|failure| Ending::With(id, failure))?;
        let welcome = encode_frame(id, &Response::Authenticated(answer));
        match tokio::time::timeout(self.config.write_timeout, stream.write_all(&welcome)).await {
            Ok(Ok(())) => Ok(session),
            _ => Err(Ending::Quietly),
        }
    }

    /// Says why (if there is something to say) and closes, before the connection is served.
    async fn close<S: AsyncRead + AsyncWrite + Unpin>(&self, mut stream: S, ending: Ending) {
        let linger = matches!(ending, Ending::Garbage(..));
        if let Ending::With(id, failure) | Ending::Garbage(id, failure) = ending {
            tracing::debug!(peer = %self.peer, code = ?failure.code, message = failure.message, "TCP: closing");
            let last_word = encode_frame(id, &Response::Failure(failure));
            let _ = tokio::time::timeout(self.config.write_timeout, stream.write_all(&last_word)).await;
        }
        let _ = stream.shutdown().await;
        if linger {
            discard_for_a_moment(&mut stream).await;
        }
    }

    /// Serves an authenticated connection until it ends, then says why (if it can) and closes.
    async fn serve<S: Socket>(mut self, mut stream: S, mut buf: BytesMut, session: Session) {
        let state = Arc::clone(&self.state);
        let (mut reader, mut writer) = stream.halves();
        let mut answers = Answers::new(self.config.max_in_flight);
        let served = self.serve_frames(&mut reader, &writer, &mut buf, &mut answers, |request| {
            operations::apply(&state, &session, request)
        });
        let Some(ending) = served.await else { return };
        let linger = matches!(ending, Ending::Garbage(..));
        if let Ending::With(id, failure) | Ending::Garbage(id, failure) = ending {
            tracing::debug!(peer = %self.peer, code = ?failure.code, message = failure.message, "TCP: closing");
            let last_word = encode_frame(id, &Response::Failure(failure));
            let _ = tokio::time::timeout(self.config.write_timeout, writer.write_all(&last_word)).await;
        }
        let _ = writer.shutdown().await;
        if linger {
            discard_for_a_moment(&mut reader).await;
        }
    }

    /// Reads frames and answers their requests (`start` makes a request's future) until the
    /// connection should end and every answer is written. How it ends; `None` when nothing more
    /// can be said (a write failed, or the client does not read).
    async fn serve_frames<F: Future<Output = Response>>(
        &mut self,
        reader: &mut (impl AsyncRead + Unpin),
        writer: &impl AnswerWriter,
        buf: &mut BytesMut,
        answers: &mut Answers<F>,
        mut start: impl FnMut(Request) -> F,
    ) -> Option<Ending> {
        let config = self.config;
        let mut ending: Option<Ending> = None;
        let mut timer = Timer::new(config);
        let shutdown = self.shutdown.changed();
        tokio::pin!(shutdown);
        loop {
            if ending.is_none() {
                if let Err(garbage) = answers.take_requests(buf, config.max_frame_bytes, &mut start) {
                    ending = Some(garbage);
                }
            }
            // Every answer ready now goes out in one write.
            answers.collect_ready();
            if let Err(e) = answers.write_some(writer, &mut timer) {
                tracing::debug!(peer = %self.peer, error = %e, "TCP: write failed; closing");
                return None;
            }
            if ending.is_some() && answers.is_empty() {
                return ending;
            }
            let reading = ending.is_none() && answers.have_room();
            if reading {
                buf.reserve(READ_CHUNK_BYTES);
            }
            tokio::select! {
                biased;
                Some(answered) = answers.in_flight.next(), if !answers.in_flight.is_empty() => answers.finish(answered),
                ready = writer.writable(), if !answers.unwritten.is_empty() => ready.ok()?,
                read = reader.read_buf(buf), if reading => match read {
                    Ok(0) => ending = Some(Ending::Quietly),
                    Ok(_) => timer.last_frame_at = Instant::now(),
                    Err(e) => {
                        tracing::debug!(peer = %self.peer, error = %e, "TCP: read failed");
                        ending = Some(Ending::Quietly);
                    }
                },
                _ = &mut shutdown, if ending.is_none() => ending = Some(shutting_down()),
                () = &mut timer.sleep => match timer.expired(answers.in_flight.is_empty() && ending.is_none()) {
                    Some(Expired::Idle) => {
                        let idle = Failure::new(FailureCode::IdleTimeout, "no request for too long");
                        ending = Some(Ending::With(0, idle));
                    }
                    Some(Expired::Write) => {
                        let timeout_ms = config.write_timeout.as_millis();
                        tracing::debug!(peer = %self.peer, timeout_ms, "TCP: the client does not read; closing");
                        return None;
                    }
                    None => {}
                },
            }
        }
    }
}

/// A box a request's future runs in. Boxes are reused, request after request: a check's future
/// is ~1.3 KiB (mostly the engine's), and allocating and freeing that much per request takes
/// glibc's slow path for large blocks (with malloc's consolidation, a visible share of the
/// server's time in a profile of pipelined checks).
type Slot<F> = Pin<Box<Option<F>>>;

/// Request `id` being answered in its slot; the answer comes out with the slot, for the next
/// request.
struct InSlot<F> {
    id: u32,
    /// Taken out while polled, put back while pending: only a finished request has none.
    slot: Option<Slot<F>>,
}

impl<F: Future<Output = Response>> Future for InSlot<F> {
    type Output = (u32, Response, Slot<F>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // A finished request is never polled again (`FuturesUnordered` drops it), and no empty
        // slot is ever pushed: neither early `Pending` is reached.
        let Some(mut slot) = self.slot.take() else { return Poll::Pending };
        let Some(future) = slot.as_mut().as_pin_mut() else { return Poll::Pending };
        match future.poll(cx) {
            Poll::Ready(response) => {
                slot.set(None);
                Poll::Ready((self.id, response, slot))
            }
            Poll::Pending => {
                self.slot = Some(slot);
                Poll::Pending
            }
        }
    }
}

/// A connection's requests being answered and its answers not yet written. The requests are
/// futures polled by the connection's own task (no task per request): each answer is written as
/// soon as it is ready, so answers overtake each other.
struct Answers<F> {
    in_flight: FuturesUnordered<InSlot<F>>,
    /// Slots of answered requests, for the next ones (at most `MAX_SPARE_SLOTS`).
    spare_slots: Vec<Slot<F>>,
    unwritten: BytesMut,
    max_in_flight: usize,
}

impl<F: Future<Output = Response>> Answers<F> {
    fn new(max_in_flight: usize) -> Self {
        Answers {
            in_flight: FuturesUnordered::new(),
            spare_slots: Vec::new(),
            unwritten: BytesMut::with_capacity(MAX_UNWRITTEN_BYTES),
            max_in_flight: max_in_flight.max(1),
        }
    }

    /// Whether another request may start: fewer than `max_in_flight` are being answered and the
    /// client reads its answers (beyond that, reading stops: TCP backpressure).
    fn have_room(&self) -> bool {
        self.in_flight.len() < self.max_in_flight && self.unwritten.len() < MAX_UNWRITTEN_BYTES
    }

    /// Whether nothing is in flight and everything answered is written.
    fn is_empty(&self) -> bool {
        self.in_flight.is_empty() && self.unwritten.is_empty()
    }

    /// Starts the requests of the whole frames in `buf` while there is room; the ending when a
    /// frame is not a request.
    fn take_requests(
        &mut self,
        buf: &mut BytesMut,
        max_frame_bytes: usize,
        start: &mut impl FnMut(Request) -> F,
    ) -> Result<(), Ending> {
        while self.have_room() {
            let Some(frame) = frame::decode(buf, max_frame_bytes).map_err(frame_error)? else { break };
            let request = request_of(&frame)?;
            let mut slot = self.spare_slots.pop().unwrap_or_else(|| Box::pin(None));
            slot.set(Some(start(request)));
            self.in_flight.push(InSlot { id: frame.request_id, slot: Some(slot) });
        }
        Ok(())
    }

    /// Takes every answer that is ready now, without waiting.
    fn collect_ready(&mut self) {
        while let Some(Some(answered)) = self.in_flight.next().now_or_never() {
            self.finish(answered);
        }
    }

    /// Queues a request's answer for writing, and keeps its slot for another request.
    fn finish(&mut self, (id, response, slot): (u32, Response, Slot<F>)) {
        put_answer(&mut self.unwritten, id, &response);
        if self.spare_slots.len() < MAX_SPARE_SLOTS {
            self.spare_slots.push(slot);
        }
    }

    /// Writes what the socket takes now of the answers waiting (one write unless the socket's
    /// buffer fills), and tells `timer` whether the client keeps up.
    fn write_some(&mut self, writer: &impl AnswerWriter, timer: &mut Timer) -> std::io::Result<()> {
        let mut progressed = false;
        while !self.unwritten.is_empty() {
            match writer.try_write(&self.unwritten) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.unwritten.advance(n);
                    progressed = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    timer.write_stalled(progressed);
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        timer.write_stalled_since = None;
        Ok(())
    }
}

/// Which of a connection's timeouts passed.
enum Expired {
    /// Nothing in flight and no frame for `idle_timeout`.
    Idle,
    /// Answers waited `write_timeout` for the client to read them.
    Write,
}

/// A connection's one timer, set lazily: it may fire early (it then looks at the deadlines and
/// sleeps again), so that the busy path only notes instants and never re-arms it.
struct Timer {
    sleep: Pin<Box<tokio::time::Sleep>>,
    idle_timeout: Duration,
    write_timeout: Duration,
    /// When bytes last came in.
    last_frame_at: Instant,
    /// Since when answers have waited for the client to read them.
    write_stalled_since: Option<Instant>,
}

impl Timer {
    fn new(config: TcpConfig) -> Self {
        Timer {
            sleep: Box::pin(tokio::time::sleep(config.idle_timeout)),
            idle_timeout: config.idle_timeout,
            write_timeout: config.write_timeout,
            last_frame_at: Instant::now(),
            write_stalled_since: None,
        }
    }

    /// Notes that a write could not take every answer; the write deadline counts from the last
    /// write that got bytes out, and the timer fires by it.
    fn write_stalled(&mut self, progressed: bool) {
        if self.write_stalled_since.is_some() && !progressed {
            return;
        }
        let now = Instant::now();
        self.write_stalled_since = Some(now);
        let deadline = now + self.write_timeout;
        if self.sleep.deadline() > deadline {
            self.sleep.as_mut().reset(deadline);
        }
    }

    /// Called when the timer fires: the timeout that passed, if one did (idle only counts when
    /// `may_idle`: nothing in flight, and the connection not already ending); otherwise it sleeps
    /// until the next deadline.
    fn expired(&mut self, may_idle: bool) -> Option<Expired> {
        let now = Instant::now();
        if let Some(since) = self.write_stalled_since {
            let deadline = since + self.write_timeout;
            if now >= deadline {
                return Some(Expired::Write);
            }
            self.sleep.as_mut().reset(deadline);
            return None;
        }
        let idle_deadline = self.last_frame_at + self.idle_timeout;
        if now >= idle_deadline && may_idle {
            return Some(Expired::Idle);
        }
        self.sleep.as_mut().reset(if idle_deadline > now { idle_deadline } else { now + self.idle_timeout });
        None
    }
}

/// Serves the binary protocol on `listener` (over TLS with `tls`) until `shutdown` resolves,
/// then drains (see the module comment).
pub async fn serve(
    listener: TcpListener,
    state: Arc<TcpState>,
    config: TcpConfig,
    tls: Option<ServerTls>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let workers = state.engine.workers().to_vec();
    let listening =
        ListenerConfig { name: "TCP", max_connections: config.max_connections, shutdown_grace: config.shutdown_grace };
    accept_loop(listener, workers, listening, shutdown, |stream, accepted| {
        let connection = Connection {
            state: Arc::clone(&state),
            config,
            tls: tls.clone(),
            peer: accepted.peer,
            worker: accepted.worker,
            shutdown: accepted.shutdown,
            _guard: accepted.guard,
        };
        connection.run(stream)
    })
    .await;
    Ok(())
}
