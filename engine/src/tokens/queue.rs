//! The signer pool's bounded batch queue: callers push sign requests, worker threads take them
//! in batches. Kept small and free of any runtime so that loom can check every interleaving
//! (`tests/loom_signer.rs`): no request is lost or handed out twice, a full queue refuses at
//! once instead of blocking, and closing wakes every worker, which drains what is left and stops.

#[cfg(loom)]
use loom::sync::{Condvar, Mutex, MutexGuard};
use std::collections::VecDeque;
#[cfg(not(loom))]
use std::sync::{Condvar, Mutex, MutexGuard};

/// Why a push was refused; the item comes back.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused<T> {
    /// The queue holds `capacity` items (the caller answers `overloaded`).
    Full(T),
    /// The queue was closed (the pool is shutting down).
    Closed(T),
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    /// Workers waiting on `ready`: a push wakes one only when there is one (a wake is a
    /// system call, and under load the workers are all busy).
    idle: usize,
    /// Of those, how many were woken and have not run yet: a push wakes another only when some
    /// idle worker is not already on its way (without this, under signing load most wakes find
    /// no one left to wake).
    woken: usize,
}

impl<T> State<T> {
    /// Counts a wake-up for a worker not yet woken; `false` when there is none.
    fn wake_one(&mut self) -> bool {
        let wake = self.idle > self.woken;
        if wake {
            self.woken += 1;
        }
        wake
    }
}

/// A bounded multi-producer, multi-consumer queue that hands out batches.
pub struct BatchQueue<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    capacity: usize,
    consumers: usize,
}

impl<T> BatchQueue<T> {
    /// A queue of at most `capacity` items shared by `consumers` workers (a worker takes at most
    /// its fair share of what waits, so that one worker does not take everything while the
    /// others idle).
    pub fn new(capacity: usize, consumers: usize) -> Self {
        assert!(capacity > 0 && consumers > 0, "a batch queue needs room and a consumer");
        BatchQueue {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity.min(1024)),
                closed: false,
                idle: 0,
                woken: 0,
            }),
            ready: Condvar::new(),
            capacity,
            consumers,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing in this module panics while holding the lock; recovering keeps the queue usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item`, or gives it back when the queue is full or closed.
    pub fn push(&self, item: T) -> Result<(), Refused<T>> {
        let mut state = self.lock();
        if state.closed {
            return Err(Refused::Closed(item));
        }
        if state.items.len() >= self.capacity {
            return Err(Refused::Full(item));
        }
        state.items.push_back(item);
        debug_assert!(state.items.len() <= self.capacity);
        let wake = state.wake_one();
        drop(state);
        if wake {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Waits for items and moves up to `max` of them (and at most a fair share) into `out`.
    /// Returns `false`, with nothing moved, once the queue is closed and empty.
    pub fn pop_batch(&self, max: usize, out: &mut Vec<T>) -> bool {
        let mut state = self.lock();
        loop {
            if !state.items.is_empty() {
                self.take(state, max, out);
                return true;
            }
            if state.closed {
                return false;
            }
            state.idle += 1;
            state = self.ready.wait(state).unwrap_or_else(|p| p.into_inner());
            state.idle -= 1;
            // Whoever wakes takes one counted wake-up, woken for it or not: the count only ever
            // holds back wake-ups while a worker that will look at the queue is on its way.
            state.woken = state.woken.saturating_sub(1);
        }
    }

    /// Moves up to `max` waiting items (and at most a fair share) into `out` without waiting.
    /// Returns `false`, with nothing moved, when none waits.
    pub fn try_pop_batch(&self, max: usize, out: &mut Vec<T>) -> bool {
        let state = self.lock();
        if state.items.is_empty() {
            return false;
        }
        self.take(state, max, out);
        true
    }

    /// Moves a share of what waits into `out`, and wakes an idle worker for the rest.
    fn take(&self, mut state: MutexGuard<'_, State<T>>, max: usize, out: &mut Vec<T>) {
        let take = max.max(1).min(state.items.len().div_ceil(self.consumers));
        out.extend(state.items.drain(..take));
        let more = !state.items.is_empty() && state.wake_one();
        drop(state);
        if more {
            self.ready.notify_one();
        }
    }

    /// Refuses further pushes and wakes every worker; what is queued is still handed out.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// Items waiting now.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Whether no item waits now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
