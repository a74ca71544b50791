//! The engine's counters for `/metrics`: grants and denials by operation and error code, and a
//! lock-free latency histogram the journal uses for its flushes.
//!
//! Every counter is an atomic bumped where the thing happens (one relaxed `fetch_add` on the hot
//! path, no lock), and read as a [`HistogramSnapshot`] or plain numbers; turning them into the
//! Prometheus text format is the HTTP layer's job.

use crate::decide::{Decision, ErrorCode};
use std::sync::atomic::{AtomicU64, Ordering};

/// What a client asked the engine to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// A checkout (`doConsume=true`, Scale checkout, metered start).
    Consume,
    /// A check without a lease (`doConsume=false`).
    Check,
    /// A renewal (heartbeat).
    Renew,
    /// A release, by the consumer or forced by an administrator.
    Release,
}

impl Operation {
    /// Every operation, in label order.
    pub const ALL: [Operation; 4] = [Operation::Consume, Operation::Check, Operation::Renew, Operation::Release];

    /// The label value on `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Consume => "consume",
            Operation::Check => "check",
            Operation::Renew => "renew",
            Operation::Release => "release",
        }
    }

    fn index(self) -> usize {
        match self {
            Operation::Consume => 0,
            Operation::Check => 1,
            Operation::Renew => 2,
            Operation::Release => 3,
        }
    }
}

fn code_index(code: ErrorCode) -> usize {
    // `ErrorCode` is a field-less enum declared in the order of `ErrorCode::ALL`, so its
    // discriminant is its position there (a unit test pins this down).
    code as usize
}

const OPERATIONS: usize = Operation::ALL.len();
const CODES: usize = ErrorCode::ALL.len();

/// Decisions the engine answered since it started, by operation and, for denials, error code.
#[derive(Debug)]
pub struct EngineMetrics {
    grants: [AtomicU64; OPERATIONS],
    denials: [[AtomicU64; CODES]; OPERATIONS],
}

impl Default for EngineMetrics {
    fn default() -> Self {
        EngineMetrics {
            grants: std::array::from_fn(|_| AtomicU64::new(0)),
            denials: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }
}

impl EngineMetrics {
    /// Counts one answered decision of `op`.
    pub fn record<T>(&self, op: Operation, decision: &Decision<T>) {
        match decision {
            Decision::Granted(_) => self.grants[op.index()].fetch_add(1, Ordering::Relaxed),
            Decision::Denied(denial) => {
                self.denials[op.index()][code_index(denial.code)].fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    /// Grants of `op` so far.
    pub fn grants(&self, op: Operation) -> u64 {
        self.grants[op.index()].load(Ordering::Relaxed)
    }

    /// Denials of `op` with `code` so far.
    pub fn denials(&self, op: Operation, code: ErrorCode) -> u64 {
        self.denials[op.index()][code_index(code)].load(Ordering::Relaxed)
    }
}

/// Upper bounds (µs) of the flush latency buckets: from a cached write (tens of µs) to a disk
/// that stalls for a second.
pub const FLUSH_LATENCY_BOUNDS_US: [u64; 14] =
    [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000];

/// A latency histogram with fixed buckets, recorded without locks.
#[derive(Debug)]
pub struct Histogram {
    bounds_us: &'static [u64],
    /// One count per bound (values `<=` it and above the previous bound), then one for the rest.
    buckets: Box<[AtomicU64]>,
    sum_us: AtomicU64,
}

/// A reading of a [`Histogram`], with cumulative buckets as Prometheus wants them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// `(upper bound in µs, observations <= it)`, ascending; the last count is `<= count`.
    pub cumulative: Vec<(u64, u64)>,
    /// Every observation (the `+Inf` bucket).
    pub count: u64,
    /// Sum of all observations, µs.
    pub sum_us: u64,
}

impl Histogram {
    /// A histogram with buckets bounded by `bounds_us` (strictly ascending).
    pub fn new(bounds_us: &'static [u64]) -> Self {
        assert!(bounds_us.windows(2).all(|w| w[0] < w[1]), "histogram bounds must be strictly ascending");
        Histogram {
            bounds_us,
            buckets: (0..=bounds_us.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    /// A histogram for flush latencies ([`FLUSH_LATENCY_BOUNDS_US`]).
    pub fn flush_latency() -> Self {
        Histogram::new(&FLUSH_LATENCY_BOUNDS_US)
    }

    /// Records one observation of `value_us` microseconds.
    pub fn record_us(&self, value_us: u64) {
        let bucket = self.bounds_us.partition_point(|bound| *bound < value_us);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(value_us, Ordering::Relaxed);
    }

    /// The counts now. The count is the sum of the buckets read, so the cumulative buckets
    /// always end at it even while observations are being recorded.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0u64;
        let mut cumulative = Vec::with_capacity(self.bounds_us.len());
        for (bound, bucket) in self.bounds_us.iter().zip(self.buckets.iter()) {
            running += bucket.load(Ordering::Relaxed);
            cumulative.push((*bound, running));
        }
        let overflow = self.buckets.last().map_or(0, |b| b.load(Ordering::Relaxed));
        HistogramSnapshot { cumulative, count: running + overflow, sum_us: self.sum_us.load(Ordering::Relaxed) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::Denial;

    #[test]
    fn error_code_discriminants_are_their_positions_in_all() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(code_index(*code), i, "{code:?}");
        }
    }

    #[test]
    fn decisions_are_counted_by_operation_and_code() {
        let metrics = EngineMetrics::default();
        metrics.record(Operation::Consume, &Decision::Granted(()));
        metrics.record(Operation::Consume, &Decision::Granted(()));
        metrics.record::<()>(Operation::Consume, &Decision::Denied(Denial::new(ErrorCode::LicenseRevoked, "r")));
        metrics.record::<()>(Operation::Renew, &Decision::Denied(Denial::new(ErrorCode::LeaseIdNotFound, "l")));
        assert_eq!(metrics.grants(Operation::Consume), 2);
        assert_eq!(metrics.grants(Operation::Check), 0);
        assert_eq!(metrics.denials(Operation::Consume, ErrorCode::LicenseRevoked), 1);
        assert_eq!(metrics.denials(Operation::Renew, ErrorCode::LeaseIdNotFound), 1);
        assert_eq!(metrics.denials(Operation::Consume, ErrorCode::LeaseIdNotFound), 0);
    }

    #[test]
    fn a_histogram_counts_each_value_in_the_first_bucket_that_holds_it() {
        static BOUNDS: [u64; 3] = [10, 100, 1000];
        let h = Histogram::new(&BOUNDS);
        for v in [0, 10, 11, 100, 5000] {
            h.record_us(v);
        }
        let s = h.snapshot();
        assert_eq!(s.cumulative, vec![(10, 2), (100, 4), (1000, 4)]);
        assert_eq!(s.count, 5);
        assert_eq!(s.sum_us, 5121);
    }
}
