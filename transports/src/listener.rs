//! The accept loop both transports share: take connections while there is room (a bound on
//! open connections), hand each to one of the engine's workers in turn, and on shutdown stop
//! accepting, tell every connection to finish, and wait for them for a grace period.

use actix::ArbiterHandle;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

/// How the accept loop runs.
#[derive(Debug, Clone, Copy)]
pub struct ListenerConfig {
    /// The transport's name in logs (`HTTP`, `TCP`).
    pub name: &'static str,
    /// Most connections open at once; the next waits in the listen backlog.
    pub max_connections: usize,
    /// Longest shutdown waits for open connections.
    pub shutdown_grace: Duration,
}

/// A connection the loop accepted, with what it must keep while it runs.
pub struct Accepted {
    /// The client's address.
    pub peer: SocketAddr,
    /// The index of the worker it runs on (in the `workers` given to [`accept_loop`]).
    pub worker: usize,
    /// Turns `true` when the server shuts down: finish what is in flight, then close.
    pub shutdown: watch::Receiver<bool>,
    /// Held for as long as the connection is open.
    pub guard: ConnectionGuard,
}

/// Holds a connection's place under the connection bound and keeps shutdown waiting for it;
/// both are given back when it is dropped.
pub struct ConnectionGuard {
    _slot: OwnedSemaphorePermit,
    _open: mpsc::Sender<()>,
}

/// Accepts connections on `listener` until `shutdown` resolves, running `connection(stream,
/// accepted)` for each on `workers` in turn (or on the current runtime when there are none).
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    workers: Vec<ArbiterHandle>,
    config: ListenerConfig,
    shutdown: impl Future<Output = ()>,
    mut connection: F,
) where
    F: FnMut(std::net::TcpStream, Accepted) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let name = config.name;
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    let mut next_worker = 0usize;
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually out of file descriptors: wait a little instead of spinning.
                    tracing::warn!(error = %e, "{name}: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // The connection moves to another thread's runtime: it is registered there.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "{name}: could not hand the connection over");
                continue;
            }
        };
        let worker = next_worker % workers.len().max(1);
        next_worker = next_worker.wrapping_add(1);
        let guard = ConnectionGuard { _slot: slot, _open: open_tx.clone() };
        let task = connection(stream, Accepted { peer, worker, shutdown: stop_rx.clone(), guard });
        match workers.get(worker) {
            Some(handle) => {
                if !handle.spawn(task) {
                    tracing::warn!(%peer, "{name}: a worker has stopped; connection dropped");
                }
            }
            None => {
                tokio::spawn(task);
            }
        }
    }
    drop(listener);
    tracing::info!("{name}: no longer accepting; finishing requests in flight");
    let _ = stop_tx.send(true);
    drop(open_tx);
    if tokio::time::timeout(config.shutdown_grace, open_rx.recv()).await.is_err() {
        tracing::warn!(
            grace_s = config.shutdown_grace.as_secs(),
            "{name}: connections still open after the grace period"
        );
    }
}
