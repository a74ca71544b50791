//! The load loop shared by every target: one task per connection, each a [`Worker`] that sends
//! one request at a time (closed loop) or on a schedule (open loop, `--rate`), timing each
//! request into its own histogram; the histograms are merged at the end.
//!
//! Open-loop latency of a request sent behind schedule (its worker still waited for the
//! previous answer when it fell due) is measured from the moment it was *due*, so a server
//! that stalls is charged for the requests that queued behind the stall (no coordinated
//! omission). A request sent on schedule is measured from when it was sent: the runtime's
//! timer wakes a sleeping worker up to a millisecond late, and that delay is the load
//! generator's, not the server's (counted from the due time, it would be in every request of
//! an open-loop run).

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Highest latency the histograms hold, in microseconds (a minute); slower requests are clamped.
const MAX_LATENCY_US: u64 = 60_000_000;

/// How one request ended, as far as the load generator can tell.
pub type Outcome = Result<(), Failure>;

/// Why a request counts as an error: a short, stable label (`"licenseQuotaExceeded"`,
/// `"http 503"`, `"io"`), so that errors can be counted by kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Failure(pub String);

impl Failure {
    /// A failure labelled `label`.
    pub fn new(label: impl Into<String>) -> Failure {
        Failure(label.into())
    }
}

/// One connection's client: sends the next request of its workload and says how it ended.
pub trait Worker: Send + 'static {
    /// Sends one request and waits for its answer.
    fn step(&mut self) -> impl Future<Output = Outcome> + Send;
}

/// How long and how hard to drive.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// How long to measure, after the warm-up.
    pub duration: Duration,
    /// Stop after this many measured requests instead (whichever comes first).
    pub requests: Option<u64>,
    /// Requests before this much time has passed are sent but not measured.
    pub warmup: Duration,
    /// Total requests per second over all connections (open loop); `None`: as fast as answers
    /// come back (closed loop).
    pub rate_per_s: Option<f64>,
}

/// What one load run measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Measured requests (answered, errors included).
    pub requests: u64,
    /// Errors by label.
    pub errors: BTreeMap<String, u64>,
    /// The measured window.
    pub elapsed: Duration,
    /// Latency of every measured request, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl Measured {
    /// Requests per second over the measured window.
    pub fn throughput_per_s(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// All errors.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

struct Shared {
    stop: AtomicBool,
    measured: AtomicU64,
}

/// Drives `workers` (one per connection) according to `plan`, showing progress on `progress`
/// (labelled `label`); returns what was measured.
pub async fn drive<W: Worker>(label: &str, workers: Vec<W>, plan: Plan, progress: &ProgressBar) -> Measured {
    let shared = Arc::new(Shared { stop: AtomicBool::new(false), measured: AtomicU64::new(0) });
    let started = Instant::now();
    let measure_from = started + plan.warmup;
    let connections = workers.len().max(1);
    let interval = plan.rate_per_s.map(|rate| Duration::from_secs_f64(connections as f64 / rate.max(1e-3)));

    let tasks: Vec<_> = workers
        .into_iter()
        .enumerate()
        .map(|(index, worker)| {
            let shared = Arc::clone(&shared);
            // Spread the open-loop schedule so connections do not all fire at once.
            let offset = interval.map(|i| i.mul_f64(index as f64 / connections as f64));
            let window = (measure_from, measure_from + plan.duration);
            tokio::spawn(run_worker(worker, shared, window, plan.requests, interval, offset))
        })
        .collect();

    let finished = run_progress(label, &shared, plan, measure_from, progress).await;
    shared.stop.store(true, Ordering::Release);

    let mut latency_us = new_histogram();
    let mut errors = BTreeMap::new();
    let mut requests = 0;
    for task in tasks {
        // A worker task only ends by returning its tally; a panic in one is a bug worth showing.
        let tally = task.await.expect("a load worker panicked");
        requests += tally.requests;
        latency_us.add(&tally.latency_us).expect("histograms of the same bounds merge");
        for (label, n) in tally.errors {
            *errors.entry(label).or_insert(0) += n;
        }
    }
    Measured { requests, errors, elapsed: finished.saturating_duration_since(measure_from), latency_us }
}

/// Ticks the progress bar until the plan is done; the instant the measurement ended.
async fn run_progress(label: &str, shared: &Shared, plan: Plan, measure_from: Instant, bar: &ProgressBar) -> Instant {
    let total_ms = (plan.warmup + plan.duration).as_millis().try_into().unwrap_or(u64::MAX);
    bar.reset();
    bar.set_length(total_ms);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>24} [{bar:30}] {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    let started = Instant::now();
    let deadline = measure_from + plan.duration;
    let mut last = (Instant::now(), 0u64);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = Instant::now();
        let measured = shared.measured.load(Ordering::Relaxed);
        let rate = (measured - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-9);
        last = (now, measured);
        bar.set_position(now.duration_since(started).as_millis().try_into().unwrap_or(u64::MAX));
        let phase = if now < measure_from { "warming up" } else { "measuring" };
        bar.set_message(format!("{phase}: {measured} requests, {rate:.0}/s"));
        let budget_spent = plan.requests.is_some_and(|n| measured >= n);
        if now >= deadline || budget_spent {
            bar.finish_and_clear();
            return now.min(deadline);
        }
    }
}

struct Tally {
    requests: u64,
    errors: BTreeMap<String, u64>,
    latency_us: Histogram<u64>,
}

async fn run_worker<W: Worker>(
    mut worker: W,
    shared: Arc<Shared>,
    (measure_from, measure_until): (Instant, Instant),
    budget: Option<u64>,
    interval: Option<Duration>,
    offset: Option<Duration>,
) -> Tally {
    let mut tally = Tally { requests: 0, errors: BTreeMap::new(), latency_us: new_histogram() };
    let mut due = Instant::now() + offset.unwrap_or_default();
    while !shared.stop.load(Ordering::Acquire) {
        let timed_from = match interval {
            Some(interval) => {
                let scheduled = due;
                due += interval;
                if Instant::now() < scheduled {
                    tokio::time::sleep_until(scheduled.into()).await;
                    Instant::now()
                } else {
                    scheduled
                }
            }
            None => Instant::now(),
        };
        let outcome = worker.step().await;
        let done = Instant::now();
        if timed_from >= measure_until {
            break;
        }
        if timed_from < measure_from {
            continue;
        }
        let index = shared.measured.fetch_add(1, Ordering::Relaxed);
        if budget.is_some_and(|n| index >= n) {
            break;
        }
        let latency_us = u64::try_from(done.duration_since(timed_from).as_micros()).unwrap_or(u64::MAX);
        tally.latency_us.saturating_record(latency_us.clamp(1, MAX_LATENCY_US));
        tally.requests += 1;
        if let Err(Failure(label)) = outcome {
            *tally.errors.entry(label).or_insert(0) += 1;
        }
    }
    tally
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails every third request and takes no time.
    struct Flaky(u64);

    impl Worker for Flaky {
        async fn step(&mut self) -> Outcome {
            self.0 += 1;
            tokio::task::yield_now().await;
            if self.0.is_multiple_of(3) {
                Err(Failure::new("every third"))
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_budget_is_counted_exactly_with_its_errors() {
        let plan =
            Plan { duration: Duration::from_secs(30), requests: Some(3_000), warmup: Duration::ZERO, rate_per_s: None };
        let measured = drive("test", vec![Flaky(0), Flaky(0), Flaky(0)], plan, &ProgressBar::hidden()).await;
        assert_eq!(measured.requests, 3_000);
        assert_eq!(measured.latency_us.len(), 3_000);
        let errors = measured.errors["every third"];
        // Each worker fails one request in three; the budget may cut a worker's run anywhere.
        assert!((990..=1_010).contains(&errors), "{errors} errors");
    }

    /// Takes 30 ms a request.
    struct Slow;

    impl Worker for Slow {
        async fn step(&mut self) -> Outcome {
            tokio::time::sleep(Duration::from_millis(30)).await;
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_open_loop_charges_the_requests_queued_behind_a_slow_answer() {
        // Due every 10 ms, answered in 30: the k-th request waits 20 ms more than the one
        // before it, and its latency counts that wait.
        let plan = Plan {
            duration: Duration::from_millis(400),
            requests: None,
            warmup: Duration::ZERO,
            rate_per_s: Some(100.0),
        };
        let measured = drive("test", vec![Slow], plan, &ProgressBar::hidden()).await;
        assert!(measured.requests >= 3, "{} requests", measured.requests);
        let worst_ms = measured.latency_us.max() / 1_000;
        assert!(
            worst_ms >= 30 + 20 * (measured.requests - 1) - 5,
            "worst {worst_ms} ms of {} requests",
            measured.requests
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_open_loop_never_sends_ahead_of_its_schedule() {
        let plan = Plan {
            duration: Duration::from_millis(500),
            requests: None,
            warmup: Duration::ZERO,
            rate_per_s: Some(200.0),
        };
        let measured = drive("test", vec![Flaky(0), Flaky(0)], plan, &ProgressBar::hidden()).await;
        // 200/s for 0.5 s schedules 100 requests (50 per worker, one more each at the edge); a
        // slow machine may send fewer, never more, where a closed loop would send thousands.
        assert!(measured.requests <= 102, "{} requests", measured.requests);
        assert!(measured.requests > 0);
    }
}
