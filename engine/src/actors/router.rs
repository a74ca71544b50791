//! The router: the one place that knows where a license's actor lives. A dashmap from license id
//! to a [`Slot`] that starts the actor on first use, on the worker the license id hashes to,
//! and the [`Admission`] that bounds the requests waiting for it.
//!
//! When licenses are partitioned across nodes, this is the seam: `send` is where a request would
//! be forwarded to another node.

use super::license::LicenseActor;
use super::workers::Workers;
use crate::concurrency::{Admission, Slot};
use crate::error::EngineError;
use crate::hashing::ConcurrentMap;
use crate::ids::LicenseId;
use actix::dev::channel;
use actix::{Addr, Context, Handler, Message};
use std::sync::Arc;

struct LicenseEntry {
    slot: Slot<Box<LicenseActor>, Addr<LicenseActor>>,
    admission: Arc<Admission>,
}

/// Finds or starts the actor of a license and sends it messages.
pub struct Router {
    entries: ConcurrentMap<LicenseId, LicenseEntry>,
    workers: Workers,
}

impl Router {
    /// A router over `workers` with no licenses.
    pub fn new(workers: Workers) -> Self {
        Router { entries: ConcurrentMap::default(), workers }
    }

    /// The workers actors run on.
    pub fn workers(&self) -> &Workers {
        &self.workers
    }

    /// The index (in [`Workers::arbiters`]) of the worker license `id`'s actor runs on.
    pub fn home_worker(&self, id: LicenseId) -> usize {
        self.workers.index_for(id.0.as_u64_pair().1)
    }

    /// Adds a license whose actor starts on first use with `actor`'s state; at most
    /// `mailbox_capacity` requests may wait for it.
    pub fn add(&self, id: LicenseId, actor: impl FnOnce(Arc<Admission>) -> LicenseActor, mailbox_capacity: usize) {
        let admission = Arc::new(Admission::new(mailbox_capacity));
        let actor = Box::new(actor(Arc::clone(&admission)));
        self.entries.insert(id, LicenseEntry { slot: Slot::dormant(actor), admission });
    }

    /// Sends `msg` to license `id`'s actor without waiting; a full mailbox is `Overloaded`.
    /// `Ok(false)` when the license is unknown.
    pub fn send<M>(&self, id: LicenseId, msg: M) -> Result<bool, EngineError>
    where
        M: Message<Result = ()> + Send + 'static,
        LicenseActor: Handler<M>,
    {
        let Some(entry) = self.entries.get(&id) else { return Ok(false) };
        if !entry.admission.try_enter() {
            return Err(EngineError::Overloaded);
        }
        let worker = &self.workers.arbiters()[self.home_worker(id)];
        let started = entry.slot.get_or_start(|actor| {
            // Actix's own bound parks senders instead of refusing them, so the mailbox itself is
            // unbounded (0) and `Admission` is the bound.
            let (tx, rx) = channel::channel(0);
            worker.spawn_fn(move || {
                Context::with_receiver(rx).run(*actor);
            });
            Addr::new(tx)
        });
        let sent = match started {
            Some(addr) => addr.try_send(msg).map_err(|_| EngineError::Stopped),
            None => Err(EngineError::Stopped),
        };
        if sent.is_err() {
            entry.admission.leave();
        }
        sent.map(|()| true)
    }
}
