//! The batching signer pool: a bounded queue in front of one worker thread per core. Callers
//! get a future at once; a worker takes a batch of requests, signs each with the key ring's
//! current key (and encrypts it when the client asked), and answers each caller.
//!
//! Signing is the wall of the whole server (RSA-2048 is about 1,400 signatures a second per
//! core), so the workers do nothing else, take the ring's key once per batch, and a full queue
//! answers `overloaded` at once instead of letting callers pile up.

use super::jwe::{self, ClientPublicKey};
use super::keyring::KeyRing;
use super::queue::{BatchQueue, Refused};
use crate::claims::Claims;
use crate::signer::{SignError, SignFuture, TokenSigner};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Default bound on requests waiting for a worker.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;
/// Default most requests one worker takes at a time.
pub const DEFAULT_MAX_BATCH: usize = 32;

/// How a [`SignerPool`] is sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Worker threads (default: one per core).
    pub workers: usize,
    /// Requests that may wait; the next one is refused `overloaded`.
    pub queue_capacity: usize,
    /// Most requests a worker takes at once.
    pub max_batch: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_batch: DEFAULT_MAX_BATCH,
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
            let max_batch = config.max_batch.max(1);
            let thread = std::thread::Builder::new()
                .name(format!("leasehold-signer-{n}"))
                .spawn(move || work(&queue, &keys, max_batch))?;
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

/// How long a worker may hold finished tokens before answering their callers. Each answer
/// wakes a caller's thread, and waking a parked thread is a system call; answering the fast
/// (ES256, EdDSA) tokens of a batch together lets one wake-up serve several of them, while an
/// RSA token (about 700 µs) is still answered as soon as it is signed.
const REPLY_EVERY: Duration = Duration::from_micros(200);

type Answer = (oneshot::Sender<Result<String, SignError>>, Result<String, SignError>);

fn answer(finished: &mut Vec<Answer>) {
    for (reply, token) in finished.drain(..) {
        let _ = reply.send(token); // a caller that stopped waiting does not need it
    }
}

fn work(queue: &BatchQueue<Job>, keys: &KeyRing, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut finished: Vec<Answer> = Vec::with_capacity(max_batch);
    while queue.pop_batch(max_batch, &mut batch) {
        let key = keys.current();
        let mut held_since = Instant::now();
        for job in batch.drain(..) {
            if job.reply.is_closed() {
                continue; // the caller stopped waiting
            }
            let token = key.sign(&job.claims).map_err(|e| SignError::Key(e.to_string())).and_then(|jws| {
                match &job.encrypt_to {
                    None => Ok(jws),
                    Some(client) => jwe::encrypt(&jws, client).map_err(|e| SignError::Encryption(e.to_string())),
                }
            });
            finished.push((job.reply, token));
            if held_since.elapsed() >= REPLY_EVERY {
                answer(&mut finished);
                held_since = Instant::now();
            }
        }
        answer(&mut finished);
    }
}
