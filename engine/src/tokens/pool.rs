//! The batching signer pool: a bounded queue in front of one worker thread per core. Callers
//! get a future at once; a worker takes the requests one at a time, signs each with the key
//! ring's current key (and encrypts it when the client asked), and answers its callers in
//! batches: the tokens it finished while more requests waited, together.
//!
//! Signing RSA is the wall of the whole server (docs/PERFORMANCE.md has the rate), so the workers
//! do nothing else, and a full queue answers `overloaded` at once instead of letting callers pile
//! up.

use super::jwe::{self, ClientPublicKey};
use super::keyring::KeyRing;
use super::queue::{BatchQueue, Refused};
use crate::tokens::claims::Claims;
use crate::tokens::signer::{SignError, SignFuture, TokenSigner};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Default bound on requests waiting for a worker.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;

/// How a [`SignerPool`] is sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Worker threads (default: one per core).
    pub workers: usize,
    /// Requests that may wait; the next one is refused `overloaded`.
    pub queue_capacity: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
        }
    }
}

/// One request to sign.
struct Job {
    claims: Claims,
    encrypt_to: Option<ClientPublicKey>,
    reply: oneshot::Sender<Result<String, SignError>>,
}

/// Worker threads signing tokens from a bounded queue with the keys of a [`KeyRing`].
pub struct SignerPool {
    queue: Arc<BatchQueue<Job>>,
    keys: Arc<KeyRing>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for SignerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignerPool").field("waiting", &self.queue.len()).finish_non_exhaustive()
    }
}

impl SignerPool {
    /// Starts `config.workers` threads signing with `keys`.
    pub fn start(keys: Arc<KeyRing>, config: PoolConfig) -> std::io::Result<SignerPool> {
        let workers = config.workers.max(1);
        let queue = Arc::new(BatchQueue::new(config.queue_capacity.max(1), workers));
        let pool = SignerPool { queue, keys, threads: Mutex::new(Vec::with_capacity(workers)) };
        for n in 0..workers {
            let (queue, keys) = (Arc::clone(&pool.queue), Arc::clone(&pool.keys));
            let thread =
                std::thread::Builder::new().name(format!("leasehold-signer-{n}")).spawn(move || work(&queue, &keys))?;
            pool.threads.lock().unwrap_or_else(|p| p.into_inner()).push(thread);
        }
        Ok(pool)
    }

    /// The key ring it signs with (rotate it, publish its JWKS).
    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.keys
    }

    /// Requests waiting for a worker now.
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }

    fn submit(&self, claims: Claims, encrypt_to: Option<ClientPublicKey>) -> SignFuture {
        let (reply, answer) = oneshot::channel();
        match self.queue.push(Job { claims, encrypt_to, reply }) {
            Ok(()) => Box::pin(async move { answer.await.unwrap_or(Err(SignError::Stopped)) }),
            Err(Refused::Full(_)) => Box::pin(std::future::ready(Err(SignError::Overloaded))),
            Err(Refused::Closed(_)) => Box::pin(std::future::ready(Err(SignError::Stopped))),
        }
    }

    /// Stops taking requests, lets the workers sign what is queued, and waits for them.
    pub fn shutdown(&self) {
        self.queue.close();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for thread in threads {
            // A worker that panicked has dropped its batch; its callers were told `Stopped`.
            let _ = thread.join();
        }
    }
}

impl Drop for SignerPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl TokenSigner for SignerPool {
    fn sign(&self, claims: Claims) -> SignFuture {
        self.submit(claims, None)
    }

    fn sign_for(&self, claims: Claims, encrypt_to: Option<ClientPublicKey>) -> SignFuture {
        self.submit(claims, encrypt_to)
    }
}

/// How long a worker may hold finished tokens while more requests wait. Each answer wakes a
/// caller's thread, and waking a parked thread costs both threads a system call and a context
/// switch (under signing load, where the HTTP workers spend much of their CPU); answering the
/// tokens finished within this time together lets one wake-up serve several. A token is never
/// held when no other request waits: then it is answered at once, and when others wait the held
/// token's caller would otherwise wait in the queue behind them. It is chosen together with the
/// journal's group-commit linger: longer holds take from the requests that keep the signers'
/// queue from running dry.
const REPLY_EVERY: Duration = Duration::from_millis(3);

type Answer = (oneshot::Sender<Result<String, SignError>>, Result<String, SignError>);

fn answer(finished: &mut Vec<Answer>) {
    for (reply, token) in finished.drain(..) {
        let _ = reply.send(token); // a caller that stopped waiting does not need it
    }
}

fn work(queue: &BatchQueue<Job>, keys: &KeyRing) {
    // One request at a time: a worker holding a private batch of slow RSA requests would leave
    // the other workers idle while its batch waited behind it.
    let mut next = Vec::with_capacity(1);
    let mut finished: Vec<Answer> = Vec::new();
    let mut held_since = Instant::now();
    loop {
        if finished.is_empty() {
            queue.pop_batch(1, &mut next);
        } else {
            queue.try_pop_batch(1, &mut next);
        }
        let Some(job) = next.pop() else {
            // Nothing waits: answer what is held; with nothing held, the pool is closed and drained.
            if finished.is_empty() {
                return;
            }
            answer(&mut finished);
            continue;
        };
        if job.reply.is_closed() {
            continue; // the caller stopped waiting
        }
        if finished.is_empty() {
            held_since = Instant::now();
        }
        let token = keys.current().sign(&job.claims).map_err(|e| SignError::Key(e.to_string())).and_then(|jws| {
            match &job.encrypt_to {
                None => Ok(jws),
                Some(client) => jwe::encrypt(&jws, client).map_err(|e| SignError::Encryption(e.to_string())),
            }
        });
        finished.push((job.reply, token));
        if held_since.elapsed() >= REPLY_EVERY {
            answer(&mut finished);
        }
    }
}
