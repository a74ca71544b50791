//! The TCP server: the accept loop, one task per connection, per-connection limits and
//! timeouts, and graceful shutdown.
//!
//! Threads: the accept loop runs on the caller's runtime and hands each accepted socket to one of
//! the engine's worker arbiters ([`leasehold_engine::Engine::workers`], round robin), as the HTTP
//! server does. A connection authenticated with a license key then moves to that license's home
//! worker ([`leasehold_engine::Engine::home_worker`]): all its requests go to that license's
//! actor, and a thread crossing costs ~17 µs. On its worker a connection is three kinds of task:
//! the reader (`Connection::serve_frames`) cuts frames and spawns one task per request, which
//! asks the engine (one crossing to the license's worker when it is another), signs, encodes its
//! answer and hands the bytes to the writer, which writes every answer that is ready in one
//! syscall.
//!
//! Bounds, so that a slow or hostile client only ever stalls itself: frames of at most
//! `max_frame_bytes` (refused from the length prefix); at most `max_in_flight` requests of one
//! connection being answered (beyond that the reader stops reading: TCP backpressure, nothing
//! dropped); an answer that cannot be written for `write_timeout` (a client that does not read)
//! closes the connection; the first frame must come within `handshake_timeout` and must
//! authenticate; a connection with nothing in flight and no frame for `idle_timeout` is closed;
//! at most `max_connections` at once (the accept loop waits for a free slot).
//!
//! Garbage (a bad length, an unknown version, a payload that is not a request, a first request
//! that is not `Authenticate`) is answered with a [`Failure`] and the connection is closed: a
//! stream that has lost its framing cannot be trusted again.
//!
//! Shutdown: when the `shutdown` future resolves, the listener is dropped, every connection stops
//! reading, finishes the requests in flight, says `ShuttingDown` and closes; `serve` returns once
//! all have closed or `shutdown_grace` has passed.

use crate::listener::{accept_loop, ConnectionGuard, ListenerConfig};
use crate::tcp::frame::{self, FrameError};
use crate::tcp::messages::{self, Failure, FailureCode, Request, Response, PROTOCOL_VERSION};
use crate::tcp::operations::{self, Principal, Session, TcpState};
use bytes::{Bytes, BytesMut};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

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

/// Bytes the writer gathers before one write.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// Bytes the reader asks the socket for at a time.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// After a protocol error, how long the reader keeps discarding what the client still sends, so
/// that closing does not reset the connection before the client has read the error.
const LINGER_AFTER_ERROR: Duration = Duration::from_millis(500);

/// The encoded frame of `response` to request `request_id`.
fn encode_frame(request_id: u32, response: &Response) -> Bytes {
    let payload = match messages::encode(response) {
        Ok(payload) => payload,
        Err(e) => {
            // Our own types always encode; if one ever does not, the client still gets an answer.
            tracing::error!(error = %e, "could not encode an answer");
            let failure = Response::Failure(Failure::new(FailureCode::Unavailable, "the answer could not be encoded"));
            messages::encode(&failure).unwrap_or_default()
        }
    };
    let mut buf = BytesMut::with_capacity(frame::HEADER_BYTES + payload.len());
    frame::encode(PROTOCOL_VERSION, request_id, &payload, &mut buf);
    buf.freeze()
}

/// Writes answers as they come, every ready one in a single write, until every sender is gone
/// or a write stalls for `write_timeout`; then closes the writing half.
async fn write_answers(mut socket: OwnedWriteHalf, mut answers: mpsc::Receiver<Bytes>, write_timeout: Duration) {
    let mut batch = BytesMut::with_capacity(WRITE_BATCH_BYTES);
    while let Some(first) = answers.recv().await {
        batch.extend_from_slice(&first);
        while batch.len() < WRITE_BATCH_BYTES {
            match answers.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        match tokio::time::timeout(write_timeout, socket.write_all(&batch)).await {
            Ok(Ok(())) => batch.clear(),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TCP: write failed; closing");
                return;
            }
            Err(_) => {
                tracing::debug!(timeout_ms = write_timeout.as_millis(), "TCP: the client does not read; closing");
                return;
            }
        }
    }
    let _ = socket.shutdown().await;
}

/// How the reader's loop ended.
enum Ending {
    /// The client closed, or the writer gave up: nothing more to say.
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

/// What one connection task holds: released when the connection ends.
struct Connection {
    state: Arc<TcpState>,
    config: TcpConfig,
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
        // Answers go out at once instead of waiting to coalesce; the writer batches itself.
        let _ = stream.set_nodelay(true);
        let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
        let handshake = tokio::time::timeout(self.config.handshake_timeout, self.handshake(&mut stream, &mut buf));
        let session = match handshake.await {
            Ok(Ok(session)) => session,
            Ok(Err(ending)) => return self.close(stream, ending).await,
            Err(_) => {
                let late = Failure::new(FailureCode::AuthenticationRequired, "no authentication in time");
                return self.close(stream, Ending::With(0, late)).await;
            }
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

    async fn serve_moved(self, stream: std::net::TcpStream, buf: BytesMut, session: Session) {
        match TcpStream::from_std(stream) {
            Ok(stream) => self.serve(stream, buf, session).await,
            Err(e) => tracing::warn!(peer = %self.peer, error = %e, "TCP: could not register the moved connection"),
        }
    }

    /// Reads the first frame, which must authenticate the connection, and answers it.
    async fn handshake(&mut self, stream: &mut TcpStream, buf: &mut BytesMut) -> Result<Session, Ending> {
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
    async fn close(&self, mut stream: TcpStream, ending: Ending) {
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

    /// Serves an authenticated connection until it ends.
    async fn serve(mut self, stream: TcpStream, mut buf: BytesMut, session: Session) {
        let (mut reader, writer) = stream.into_split();
        let (answers, outgoing) = mpsc::channel::<Bytes>(self.config.max_in_flight.max(1) + 1);
        let writer = tokio::spawn(write_answers(writer, outgoing, self.config.write_timeout));
        let ending = self.serve_frames(&mut reader, &mut buf, &answers, Arc::new(session)).await;
        let linger = matches!(ending, Ending::Garbage(..));
        if let Ending::With(id, failure) | Ending::Garbage(id, failure) = ending {
            tracing::debug!(peer = %self.peer, code = ?failure.code, message = failure.message, "TCP: closing");
            let _ = answers.send(encode_frame(id, &Response::Failure(failure))).await;
        }
        drop(answers);
        if linger {
            discard_for_a_moment(&mut reader).await;
        }
        let _ = writer.await;
    }

    /// Reads and dispatches frames until the connection should end, and says how.
    async fn serve_frames(
        &mut self,
        reader: &mut OwnedReadHalf,
        buf: &mut BytesMut,
        answers: &mpsc::Sender<Bytes>,
        session: Arc<Session>,
    ) -> Ending {
        let in_flight = Arc::new(Semaphore::new(self.config.max_in_flight.max(1)));
        loop {
            loop {
                let frame = match frame::decode(buf, self.config.max_frame_bytes) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => return frame_error(e),
                };
                let id = frame.request_id;
                let request = match request_of(&frame) {
                    Ok(request) => request,
                    Err(ending) => return ending,
                };
                let permit = tokio::select! {
                    permit = Arc::clone(&in_flight).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => return Ending::Quietly,
                    },
                    _ = answers.closed() => return Ending::Quietly,
                };
                self.spawn_request(id, request, Arc::clone(&session), answers.clone(), permit);
            }
            let nothing_in_flight = in_flight.available_permits() == self.config.max_in_flight.max(1);
            tokio::select! {
                read = tokio::time::timeout(self.config.idle_timeout, reader.read_buf(buf)) => match read {
                    Ok(Ok(0)) => return Ending::Quietly,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %self.peer, error = %e, "TCP: read failed");
                        return Ending::Quietly;
                    }
                    Err(_) if nothing_in_flight => {
                        return Ending::With(0, Failure::new(FailureCode::IdleTimeout, "no request for too long"));
                    }
                    Err(_) => {}
                },
                _ = self.shutdown.changed() => return shutting_down(),
                _ = answers.closed() => return Ending::Quietly,
            }
        }
    }

    /// Answers `request` on a task of its own, so that answers may overtake each other.
    fn spawn_request(
        &self,
        id: u32,
        request: Request,
        session: Arc<Session>,
        answers: mpsc::Sender<Bytes>,
        permit: OwnedSemaphorePermit,
    ) {
        let state = Arc::clone(&self.state);
        tokio::spawn(async move {
            let response = operations::apply(&state, &session, request).await;
            let _ = answers.send(encode_frame(id, &response)).await;
            drop(permit);
        });
    }
}

/// Serves the binary protocol on `listener` until `shutdown` resolves, then drains (see the
/// module comment).
pub async fn serve(
    listener: TcpListener,
    state: Arc<TcpState>,
    config: TcpConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let workers = state.engine.workers().to_vec();
    let listening =
        ListenerConfig { name: "TCP", max_connections: config.max_connections, shutdown_grace: config.shutdown_grace };
    accept_loop(listener, workers, listening, shutdown, |stream, accepted| {
        let connection = Connection {
            state: Arc::clone(&state),
            config,
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
