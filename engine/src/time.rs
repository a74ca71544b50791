//! Time as the engine sees it: a millisecond timestamp and a clock that callers pass in.
//!
//! Decisions never read the system time themselves; they receive `now` from a [`Clock`], so a
//! test or a simulation can move time forward without sleeping.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The timestamp `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// The timestamp `s` seconds after the epoch.
    pub const fn from_secs(s: i64) -> Self {
        Timestamp(s.saturating_mul(1000))
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (rounded down), as JWT claims carry them.
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// This time plus `s` seconds, saturating instead of overflowing.
    pub const fn plus_secs(self, s: u64) -> Self {
        let s = if s > (i64::MAX / 1000) as u64 { i64::MAX / 1000 } else { s as i64 };
        Timestamp(self.0.saturating_add(s * 1000))
    }

    /// This time plus `ms` milliseconds, saturating.
    pub const fn plus_millis(self, ms: i64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }

    /// Whole milliseconds from `earlier` to `self`, zero when `earlier` is later.
    pub fn millis_since(self, earlier: Timestamp) -> u64 {
        u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0)
    }

    /// Whole seconds from `earlier` to `self` (rounded up: a started second is used), zero when
    /// `earlier` is later.
    pub fn secs_since_ceil(self, earlier: Timestamp) -> u64 {
        self.millis_since(earlier).div_ceil(1000)
    }
}

/// Where the engine gets the current time from.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that only moves when told to: for tests and the deterministic simulation.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now_ms: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn starting_at(start: Timestamp) -> Self {
        ManualClock { now_ms: Arc::new(AtomicI64::new(start.0)) }
    }

    /// Moves the clock forward by `s` seconds.
    pub fn advance_secs(&self, s: u64) {
        self.advance_millis(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX));
    }

    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance_millis(&self, ms: i64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `t`.
    pub fn set(&self, t: Timestamp) {
        self.now_ms.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now_ms.load(Ordering::SeqCst))
    }
}
