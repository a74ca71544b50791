//! Limits on repeated attempts (guessing activation codes, sign-ups and logins): each key may
//! count a number of times in a window of time; after that it is refused until the window ends.
//! Kept in memory only: a restart forgives, which costs a guesser a restart of the server.

use crate::time::Timestamp;
use std::collections::HashMap;
use std::hash::Hash;

/// Windows are not swept for ended ones before this many keys are held.
const MIN_SWEEP: usize = 1_024;

/// Counted attempts per key in fixed windows.
#[derive(Debug)]
pub struct RateLimit<K> {
    /// Attempts counted in one window before the key is refused.
    limit: u32,
    /// A window's length.
    window_ms: u64,
    /// Each key's current window: when it started and how many attempts it counted.
    windows: HashMap<K, (Timestamp, u32)>,
    /// The map's size at which its next sweep for ended windows runs.
    sweep_at: usize,
}

impl<K: Hash + Eq> RateLimit<K> {
    /// At most `limit` counted attempts per key in each window of `window_ms`.
    pub fn new(limit: u32, window_ms: u64) -> Self {
        RateLimit { limit, window_ms, windows: HashMap::new(), sweep_at: MIN_SWEEP }
    }

    /// How long, in milliseconds, `key` is refused at `now` (`limit` attempts were counted in the
    /// current window); `None` when it may try.
    pub fn refused_for(&self, key: &K, now: Timestamp) -> Option<u64> {
        let (started, counted) = self.windows.get(key)?;
        let elapsed = now.millis_since(*started);
        (elapsed < self.window_ms && *counted >= self.limit).then(|| self.window_ms - elapsed)
    }

    /// Counts an attempt of `key` at `now`.
    pub fn record(&mut self, key: K, now: Timestamp) {
        let window_ms = self.window_ms;
        let window = self.windows.entry(key).or_insert((now, 0));
        if now.millis_since(window.0) >= window_ms {
            *window = (now, 0);
        }
        window.1 = window.1.saturating_add(1);
        if self.windows.len() >= self.sweep_at {
            self.windows.retain(|_, (started, _)| now.millis_since(*started) < window_ms);
            self.sweep_at = (2 * self.windows.len()).max(MIN_SWEEP);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: u64 = 60_000;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn the_attempt_past_the_limit_is_refused_until_the_window_ends() {
        let mut limit = RateLimit::new(3, MINUTE);
        for i in 0..3 {
            assert_eq!(limit.refused_for(&"k", at(i)), None, "attempt {i} is allowed");
            limit.record("k", at(i));
        }
        assert_eq!(limit.refused_for(&"k", at(10_000)), Some(50_000));
        assert_eq!(limit.refused_for(&"other", at(10_000)), None, "keys are counted apart");
        assert_eq!(limit.refused_for(&"k", at(60_000)), None, "a new window forgives");
        limit.record("k", at(60_000));
        assert_eq!(limit.refused_for(&"k", at(60_001)), None, "the new window counts from zero");
    }

    #[test]
    fn ended_windows_are_swept_as_keys_accumulate() {
        let mut limit = RateLimit::new(1, MINUTE);
        for key in 0..10 * MIN_SWEEP {
            limit.record(key, at(key as i64 * 1_000));
        }
        assert!(limit.windows.len() <= MIN_SWEEP, "held {} windows", limit.windows.len());
        assert!(limit.refused_for(&(10 * MIN_SWEEP - 1), at((10 * MIN_SWEEP) as i64 * 1_000)).is_some());
    }
}
