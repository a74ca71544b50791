//! The state that threads share around the license actors, kept small and free of any runtime so
//! that loom can check every interleaving of it (`tests/loom_*.rs`, run with
//! `RUSTFLAGS="--cfg loom"`):
//!
//! - [`Slot`]: the router's find-or-start cell for one license. Many requests may arrive for a
//!   license whose actor is not running; exactly one of them starts it, with the license's
//!   state, and all of them reach the same actor. An idle actor parks its state back in the
//!   slot (and stops) only while no request is admitted for it, so none is ever sent to an
//!   actor that has gone.
//! - [`Admission`]: the bound on a license actor's mailbox. Senders take a place before they
//!   send and the actor gives it back as it takes the message, so at most `capacity` requests
//!   wait for one license and the next one is told `overloaded` at once.
//! - [`LeaseGauge`]: the counts a license actor publishes after every change, read by observers
//!   (usage reads, metrics, tests) without a message to the actor.

#[cfg(loom)]
use loom::sync::{
    atomic::{AtomicU64, AtomicUsize, Ordering},
    Mutex,
};
#[cfg(not(loom))]
use std::sync::{
    atomic::{AtomicU64, AtomicUsize, Ordering},
    Mutex,
};

enum SlotState<S, A> {
    /// Not running: holds what the actor starts with.
    Dormant(S),
    /// Running: the actor's address.
    Running(A),
    /// A start panicked; nothing to start from any more.
    Broken,
}

/// Holds a license's state until its actor starts, then the actor's address.
pub struct Slot<S, A> {
    state: Mutex<SlotState<S, A>>,
}

impl<S, A: Clone> Slot<S, A> {
    /// A slot whose actor has not started; `seed` is what it will start with.
    pub fn dormant(seed: S) -> Self {
        Slot { state: Mutex::new(SlotState::Dormant(seed)) }
    }

    /// The running actor's address, starting it with `start` if this is the first call. `None`
    /// only if an earlier start panicked.
    pub fn get_or_start(&self, start: impl FnOnce(S) -> A) -> Option<A> {
        // A poisoned lock means a start panicked; the state then says `Broken`.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let SlotState::Running(addr) = &*state {
            return Some(addr.clone());
        }
        match std::mem::replace(&mut *state, SlotState::Broken) {
            SlotState::Dormant(seed) => {
                let addr = start(seed);
                *state = SlotState::Running(addr.clone());
                Some(addr)
            }
            SlotState::Running(_) | SlotState::Broken => None,
        }
    }

    /// The running actor's address, if it runs.
    pub fn running(&self) -> Option<A> {
        match &*self.state.lock().unwrap_or_else(|p| p.into_inner()) {
            SlotState::Running(addr) => Some(addr.clone()),
            SlotState::Dormant(_) | SlotState::Broken => None,
        }
    }
}

impl<S, A: Clone + PartialEq> Slot<S, A> {
    /// Parks the running actor `me`: its state `seed` goes back into the slot and the next
    /// request starts a new actor from it. Only when `idle()` holds under the slot's lock (the
    /// caller checks that no request is admitted: a request admitted before this point keeps
    /// the actor running, one admitted after it finds the slot dormant). `Err(seed)` when the
    /// actor must go on: it is busy, or it is not the one running (a stale request to park).
    pub fn park(&self, me: &A, seed: S, idle: impl FnOnce() -> bool) -> Result<(), S> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &*state {
            SlotState::Running(addr) if addr == me && idle() => {
                *state = SlotState::Dormant(seed);
                Ok(())
            }
            _ => Err(seed),
        }
    }
}

/// The live counts of one license, published by its actor.
#[derive(Debug, Default)]
pub struct LeaseGauge {
    live_leases: AtomicU64,
    seats_in_use: AtomicU64,
}

/// A reading of a [`LeaseGauge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaugeReading {
    /// Live leases.
    pub live_leases: u64,
    /// Seats taken (live sessions and seats cooling down).
    pub seats_in_use: u64,
}

impl LeaseGauge {
    /// Publishes new counts. Only the license's actor calls this.
    pub fn publish(&self, reading: GaugeReading) {
        self.live_leases.store(reading.live_leases, Ordering::Release);
        self.seats_in_use.store(reading.seats_in_use, Ordering::Release);
    }

    /// The latest published counts.
    pub fn read(&self) -> GaugeReading {
        GaugeReading {
            live_leases: self.live_leases.load(Ordering::Acquire),
            seats_in_use: self.seats_in_use.load(Ordering::Acquire),
        }
    }
}

/// A bound on the requests waiting for one actor.
#[derive(Debug)]
pub struct Admission {
    waiting: AtomicUsize,
    capacity: usize,
    /// Requests admitted so far: the idle sweep's sign of activity.
    admitted: AtomicU64,
}

impl Admission {
    /// Admits at most `capacity` waiting requests (at least one).
    pub fn new(capacity: usize) -> Self {
        Admission { waiting: AtomicUsize::new(0), capacity: capacity.max(1), admitted: AtomicU64::new(0) }
    }

    /// Takes a place; `false` when all `capacity` places are taken.
    pub fn try_enter(&self) -> bool {
        let mut waiting = self.waiting.load(Ordering::Relaxed);
        loop {
            if waiting >= self.capacity {
                return false;
            }
            match self.waiting.compare_exchange_weak(waiting, waiting + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    self.admitted.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Err(actual) => waiting = actual,
            }
        }
    }

    /// Gives back a place taken by [`Admission::try_enter`].
    pub fn leave(&self) {
        let before = self.waiting.fetch_sub(1, Ordering::AcqRel);
        assert!(before > 0, "left an admission that nobody entered");
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Requests admitted so far (a count that only grows).
    pub fn admitted(&self) -> u64 {
        self.admitted.load(Ordering::Relaxed)
    }

    /// The bound.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}
