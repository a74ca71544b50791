//! Sockets and connections: the accept loop, per-connection limits and timeouts, and graceful
//! shutdown.
//!
//! Threads: the accept loop runs on the caller's runtime and hands each accepted socket to one
//! of the engine's worker arbiters ([`leasehold_engine::Engine::workers`], round robin), where
//! hyper serves the connection to its end. A request is parsed, decided (a message to its
//! license's actor, which may live on another worker: the one crossing) and answered from that
//! worker; only RSA signing leaves for the signer pool's threads.
//!
//! Bounds: at most `max_connections` at once (the accept loop waits for a free slot), request
//! heads of at most `max_head_bytes` (hyper answers 431 beyond), bodies of at most
//! `BodyLimits::max_bytes` (413), a head must arrive within `header_read_timeout` of its first
//! byte (a new connection's first head within `header_read_timeout` of the connect), and a
//! keep-alive connection with no request in flight for `idle_timeout` is closed.
//!
//! Both timeouts are checked by the connection's own periodic tick rather than by hyper's
//! header-read timer: hyper starts that timer when it begins waiting for the next head, right
//! after each answer, so it would also close idle keep-alive connections after
//! `header_read_timeout` instead of `idle_timeout`, and it registers and cancels a timer for
//! every request (a boxed sleep, the timer wheel's lock twice, and often a write to the
//! runtime's wake-up descriptor).
//!
//! TLS: with a [`ServerTls`], every connection is a TLS one. Its first byte says which: a
//! handshake goes to rustls (and must finish within `header_read_timeout`, as a head must); a
//! plain-text request is answered 400 `tlsRequired` in plain text, so that a client pointed at
//! the wrong scheme learns why; anything else is closed.
//!
//! Shutdown: when the `shutdown` future resolves, the listener is dropped (no new connections),
//! every connection is told to finish its current request and close, and `serve` returns once
//! all have closed or `shutdown_grace` has passed.

use crate::http::{routes, HttpState};
use crate::listener::{accept_loop, ConnectionGuard, ListenerConfig};
use crate::tls::{starts_handshake, ServerTls};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Connection-level limits of the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct HttpConfig {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Largest request line plus headers (hyper's read buffer; at least 8 KiB).
    pub max_head_bytes: usize,
    /// Longest a request head may take from its first byte (a new connection's first head from
    /// the connect).
    pub header_read_timeout: Duration,
    /// Longest a keep-alive connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Longest shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_connections: 10_000,
            max_head_bytes: 16 * 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// `Activity::head_started_ms` while no head is under way.
const NO_HEAD: u64 = u64::MAX;

/// What a connection was last doing, for its timeouts. Shared by the connection's task, its
/// service and its socket ([`Watched`]), all on one worker thread, hence relaxed atomics.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// When the last answer was made (ms since `opened`).
    last_ms: AtomicU64,
    /// When the first byte of the next head arrived (ms since `opened`), or [`NO_HEAD`].
    /// A new connection owes its first head from the start.
    head_started_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(0),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A request's head was read: it is in flight.
    fn begin(&self) {
        self.head_started_ms.store(NO_HEAD, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    fn end(&self) {
        self.last_ms.store(self.elapsed_ms(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Bytes arrived: with no request in flight they start the next head.
    fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0 && self.head_started_ms.load(Ordering::Relaxed) == NO_HEAD {
            self.head_started_ms.store(self.elapsed_ms(), Ordering::Relaxed);
        }
    }

    /// A head has been under way for `limit` without being complete.
    fn head_overdue(&self, limit: Duration) -> bool {
        let started = self.head_started_ms.load(Ordering::Relaxed);
        started != NO_HEAD
            && self.in_flight.load(Ordering::Relaxed) == 0
            && u128::from(self.elapsed_ms().saturating_sub(started)) >= limit.as_millis()
    }

    fn idle_for(&self, limit: Duration) -> bool {
        let idle_ms = self.elapsed_ms().saturating_sub(self.last_ms.load(Ordering::Relaxed));
        self.in_flight.load(Ordering::Relaxed) == 0 && u128::from(idle_ms) >= limit.as_millis()
    }
}

/// A connection's socket that tells its [`Activity`] when bytes arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.bytes_arrived();
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// What one connection task holds: released when the connection ends.
struct Connection {
    state: Arc<HttpState>,
    config: HttpConfig,
    tls: Option<ServerTls>,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
    _guard: ConnectionGuard,
}

impl Connection {
    async fn run(self, stream: std::net::TcpStream) {
        let stream = match TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(peer = %self.peer, error = %e, "could not register the connection");
                return;
            }
        };
        // Small answers go out at once instead of waiting for more to coalesce.
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let Some(tls) = self.tls.clone() else {
            let watched = Watched { stream, activity: Arc::clone(&activity) };
            return self.serve(watched, activity).await;
        };
        let peer = self.peer;
        let handshake = tokio::time::timeout(self.config.header_read_timeout, async {
            let mut first = [0u8; 1];
            match stream.peek(&mut first).await {
                Ok(1) if starts_handshake(first[0]) => {}
                Ok(1) if first[0].is_ascii_alphabetic() => return Err(refuse_plain_text(stream).await),
                _ => return Err("not a TLS handshake".to_owned()),
            }
            let watched = Watched { stream, activity: Arc::clone(&activity) };
            tls.acceptor().accept(watched).await.map_err(|e| e.to_string())
        });
        match handshake.await {
            Ok(Ok(secured)) => self.serve(secured, activity).await,
            Ok(Err(why)) => tracing::debug!(%peer, why, "no TLS session"),
            Err(_) => tracing::debug!(%peer, "no TLS handshake within the header read timeout"),
        }
    }

    /// Serves HTTP/1.1 on `io` (the socket, or a TLS session over it) until the connection ends.
    async fn serve<I>(mut self, io: I, activity: Arc<Activity>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (state, peer, service_activity) = (Arc::clone(&self.state), self.peer, Arc::clone(&activity));
        let service = service_fn(move |req| {
            let (state, activity) = (Arc::clone(&state), Arc::clone(&service_activity));
            async move {
                activity.begin();
                let response = routes::handle(&state, req, peer).await;
                activity.end();
                Ok::<_, Infallible>(response)
            }
        });
        let mut builder = http1::Builder::new();
        builder.max_buf_size(self.config.max_head_bytes.max(8192)).keep_alive(true);
        let conn = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let HttpConfig { header_read_timeout, idle_timeout, .. } = self.config;
        let check_every = (header_read_timeout.min(idle_timeout) / 4).max(Duration::from_millis(100));
        let mut timeouts = tokio::time::interval(check_every);
        let mut draining = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    break;
                }
                _ = self.shutdown.changed(), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = timeouts.tick() => {
                    if activity.head_overdue(header_read_timeout) {
                        // Nothing is owed on a head that never came: close at once, as hyper did.
                        tracing::debug!(%peer, "no complete request head within the header read timeout");
                        break;
                    }
                    if !draining && activity.idle_for(idle_timeout) {
                        draining = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}

/// Answers a plain-text request on a TLS port: 400 `tlsRequired`, then closes. Says why for the
/// log.
async fn refuse_plain_text(mut stream: TcpStream) -> String {
    let body = r#"{"error":"Bad Request","code":"tlsRequired","description":"this port speaks HTTPS: use https://"}"#;
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
    // The request is still unread: closing over it would reset the connection, and the reset
    // can reach the client before the answer does. Read it away for a moment first.
    let mut sink = [0u8; 4096];
    let drain = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    "a plain-text request on the TLS port".to_owned()
}

/// Serves HTTP on `listener` (HTTPS with `tls`) until `shutdown` resolves, then drains (see
/// the module comment).
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    config: HttpConfig,
    tls: Option<ServerTls>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let workers = state.engine.workers().to_vec();
    let listening =
        ListenerConfig { name: "HTTP", max_connections: config.max_connections, shutdown_grace: config.shutdown_grace };
    accept_loop(listener, workers, listening, shutdown, |stream, accepted| {
        let connection = Connection {
            state: Arc::clone(&state),
            config,
            tls: tls.clone(),
            peer: accepted.peer,
            shutdown: accepted.shutdown,
            _guard: accepted.guard,
        };
        connection.run(stream)
    })
    .await;
    Ok(())
}
