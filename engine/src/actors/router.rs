//! The router: the one place that knows where a license's actor lives. A dashmap from license id
//! to a [`Slot`] that starts the actor on first use, on the worker the license id hashes to,
//! and the [`Admission`] that bounds the requests waiting for it.
//!
//! When licenses are partitioned across nodes, this is the seam: `send` is where a request would
//! be forwarded to another node.
//!
//! Actors of idle licenses stop: an idle sweep (a thread of its own) finds running actors that
//! admitted no request since the previous sweep and asks them to park, which puts their state
//! back in the slot (see [`Slot::park`]). A million licenses then cost a million states, not a
//! million running actors with their tasks and mailboxes.
//!
//! Past a budget of running actors ([`RunningActors`]), an actor parks as soon as it has
//! answered and no request waits for it, without waiting for the sweep: a burst over many
//! licenses (a million checkouts in a minute) then holds a bounded number of running actors.
//! Without the budget, such a burst runs an actor for most of the licenses it touches at once,
//! and when they park the allocator keeps their freed memory (split up by the leases allocated
//! meanwhile): the process's RSS stays far above the heap it uses.

use super::license::{gauge_reading, DormantLicense, LicenseActor, Park, Shared};
use super::workers::Workers;
use crate::concurrency::{Admission, GaugeReading, LeaseGauge, Slot};
use crate::error::EngineError;
use crate::hashing::ConcurrentMap;
use crate::ids::LicenseId;
use actix::dev::channel;
use actix::{Addr, Context, Handler, Message};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Everything the engine keeps for one license, in one allocation (a million licenses are a
/// million of these): its state while no actor runs (or the actor's address), the bound on the
/// requests waiting for it, and the counts its actor publishes. Shared with the actor, which
/// takes messages, publishes and parks through it.
pub struct LicenseEntry {
    slot: Slot<DormantLicense, Addr<LicenseActor>>,
    admission: Admission,
    gauge: LeaseGauge,
    /// [`Admission::admitted`] at the previous idle sweep.
    admitted_at_last_sweep: AtomicU64,
}

impl LicenseEntry {
    fn new(dormant: DormantLicense, mailbox_capacity: usize) -> Self {
        let gauge = LeaseGauge::default();
        // Until an actor starts, the gauge shows the state it will start from (the leases a
        // restart recovered).
        gauge.publish(gauge_reading(&dormant.state));
        LicenseEntry {
            slot: Slot::dormant(dormant),
            admission: Admission::new(mailbox_capacity),
            gauge,
            admitted_at_last_sweep: AtomicU64::new(0),
        }
    }

    /// The bound on the requests waiting for this license's actor.
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// The counts this license's actor publishes.
    pub fn gauge(&self) -> &LeaseGauge {
        &self.gauge
    }

    /// Parks actor `me` with its state `dormant` if no request waits for it; `Err(dormant)` when
    /// it must go on running.
    // The state goes back to the actor in the `Err`; boxing it would cost every dormant license
    // an allocation, and parking happens once per idle sweep at most.
    #[allow(clippy::result_large_err)]
    pub fn park(&self, me: &Addr<LicenseActor>, dormant: DormantLicense) -> Result<(), DormantLicense> {
        self.slot.park(me, dormant, || self.admission.waiting() == 0)
    }
}

/// How many license actors run now, and how many may go on running with nothing to do.
pub struct RunningActors {
    running: AtomicUsize,
    idle_budget: usize,
}

impl RunningActors {
    /// None running yet; past `idle_budget` running, an actor with nothing to do parks at once.
    pub fn new(idle_budget: usize) -> Self {
        RunningActors { running: AtomicUsize::new(0), idle_budget }
    }

    /// Actors running now.
    pub fn count(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Whether an actor that has nothing to do should park now rather than at the next sweep.
    pub fn over_budget(&self) -> bool {
        self.count() > self.idle_budget
    }

    fn started(&self) {
        self.running.fetch_add(1, Ordering::Relaxed);
    }

    /// An actor stopped.
    pub fn stopped(&self) {
        self.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Finds or starts the actor of a license and sends it messages.
pub struct Router {
    entries: ConcurrentMap<LicenseId, Arc<LicenseEntry>>,
    workers: Workers,
    /// What every actor shares with the rest of the engine.
    shared: Arc<Shared>,
    /// Actors started so far (a license's first start, and one more after each park).
    starts: AtomicU64,
}

impl Router {
    /// A router over `workers` with no licenses, sized for `licenses` of them.
    pub fn new(workers: Workers, shared: Arc<Shared>, licenses: usize) -> Self {
        let entries = ConcurrentMap::with_capacity_and_hasher(licenses, Default::default());
        Router { entries, workers, shared, starts: AtomicU64::new(0) }
    }

    /// The workers actors run on.
    pub fn workers(&self) -> &Workers {
        &self.workers
    }

    /// The index (in [`Workers::arbiters`]) of the worker license `id`'s actor runs on.
    pub fn home_worker(&self, id: LicenseId) -> usize {
        // The id's first half: its second ends in the route bits a licensee's licenses share
        // (`LicenseId::placed`), which would put them all on one worker.
        self.workers.index_for(id.0.as_u64_pair().0)
    }

    /// Adds a license whose actor starts on first use from `dormant`; at most
    /// `mailbox_capacity` requests may wait for it.
    pub fn add(&self, dormant: DormantLicense, mailbox_capacity: usize) {
        let id = dormant.state.license().id;
        self.entries.insert(id, Arc::new(LicenseEntry::new(dormant, mailbox_capacity)));
    }

    /// Whether license `id` is known here.
    pub fn contains(&self, id: LicenseId) -> bool {
        self.entries.contains_key(&id)
    }

    /// Forgets license `id` (deleted): it receives nothing more.
    pub fn remove(&self, id: LicenseId) {
        self.entries.remove(&id);
    }

    /// The counts license `id`'s actor last published.
    pub fn gauge(&self, id: LicenseId) -> Option<GaugeReading> {
        self.entries.get(&id).map(|entry| entry.gauge.read())
    }

    /// Live leases over every license, as their actors last published them.
    pub fn live_leases(&self) -> u64 {
        self.entries.iter().map(|entry| entry.gauge.read().live_leases).sum()
    }

    /// Actors started so far: each license's first start, and one more after each park.
    pub fn actor_starts(&self) -> u64 {
        self.starts.load(Ordering::Relaxed)
    }

    /// Actors running now.
    pub fn running_actors(&self) -> usize {
        self.shared.running.count()
    }

    /// Asks every running actor that admitted no request since the previous sweep to park.
    fn sweep_idle(&self) {
        for entry in self.entries.iter() {
            let admitted = entry.admission.admitted();
            let before = entry.admitted_at_last_sweep.swap(admitted, Ordering::Relaxed);
            if admitted != before {
                continue;
            }
            if let Some(addr) = entry.slot.running() {
                // Not a client request: it takes no place in the admission, and a full or
                // closed mailbox only means the actor is busy or gone.
                let _ = addr.try_send(Park);
            }
        }
    }

    /// Sweeps for idle actors every `every` on a thread of its own, until the router is gone.
    pub fn start_idle_sweep(router: &Arc<Router>, every: Duration) -> std::io::Result<()> {
        let router: Weak<Router> = Arc::downgrade(router);
        std::thread::Builder::new().name("leasehold-idle-sweep".into()).spawn(move || loop {
            std::thread::sleep(every);
            match router.upgrade() {
                Some(router) => router.sweep_idle(),
                None => return,
            }
        })?;
        Ok(())
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
        let started = entry.slot.get_or_start(|dormant| {
            self.starts.fetch_add(1, Ordering::Relaxed);
            self.shared.running.started();
            let actor = LicenseActor::new(dormant, Arc::clone(&self.shared), Arc::clone(entry.value()));
            // Actix's own bound parks senders instead of refusing them, so the mailbox itself is
            // unbounded (0) and `Admission` is the bound.
            let (tx, rx) = channel::channel(0);
            worker.spawn_fn(move || {
                Context::with_receiver(rx).run(actor);
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
