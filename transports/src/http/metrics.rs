//! `GET /metrics`: the server's counters in the Prometheus text exposition format (version
//! 0.0.4): HTTP requests by route family and status, the engine's grants and denials by
//! operation and error code, live leases, the signer's queue depth, the journal's flush latency
//! histogram, and uptime.
//!
//! Counters are atomics bumped where things happen (requests in [`crate::http::routes`],
//! decisions in the engine, flushes in the journal's writer); this module only reads them. The
//! text format is simple enough to write by hand: `# HELP`, `# TYPE`, then one line per series.

use crate::http::forward::ClusterStatus;
use crate::http::reply::{self, ApiError, Body, RequestBody};
use crate::http::HttpState;
use crate::webhooks::Webhooks;
use bytes::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use leasehold_engine::metrics::{Histogram, HistogramSnapshot, Operation};
use leasehold_engine::tokens::SignerPool;
use leasehold_engine::ErrorCode;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Which part of the API a request was for: the `route` label of request counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteFamily {
    /// Enterprise `/authz/`.
    Authz,
    /// Scale `/licensing/...`.
    Licensing,
    /// `/admin/...`.
    Admin,
    /// `/.well-known/...` and the signing keys.
    Discovery,
    /// `/openapi.json`.
    OpenApi,
    /// `/metrics`.
    Metrics,
    /// `/healthz`.
    Health,
    /// Anything else (answered 404).
    Other,
}

impl RouteFamily {
    /// Every family, in label order.
    pub const ALL: [RouteFamily; 8] = [
        RouteFamily::Authz,
        RouteFamily::Licensing,
        RouteFamily::Admin,
        RouteFamily::Discovery,
        RouteFamily::OpenApi,
        RouteFamily::Metrics,
        RouteFamily::Health,
        RouteFamily::Other,
    ];

    /// The family of a request path.
    pub fn of_path(path: &str) -> RouteFamily {
        if path == "/authz" || path.starts_with("/authz/") {
            RouteFamily::Authz
        } else if path.starts_with("/licensing/") && !path.starts_with("/licensing-signing-keys/") {
            RouteFamily::Licensing
        } else if crate::http::admin::access::is_admin_path(path) {
            RouteFamily::Admin
        } else if path.starts_with("/license-keys/") || path.starts_with("/license-activations/") {
            RouteFamily::Licensing
        } else if path.starts_with("/.well-known/") || path.starts_with("/licensing-signing-keys/") {
            RouteFamily::Discovery
        } else if path == "/openapi.json" {
            RouteFamily::OpenApi
        } else if path == "/metrics" {
            RouteFamily::Metrics
        } else if path == "/healthz" {
            RouteFamily::Health
        } else {
            RouteFamily::Other
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteFamily::Authz => "authz",
            RouteFamily::Licensing => "licensing",
            RouteFamily::Admin => "admin",
            RouteFamily::Discovery => "discovery",
            RouteFamily::OpenApi => "openapi",
            RouteFamily::Metrics => "metrics",
            RouteFamily::Health => "healthz",
            RouteFamily::Other => "other",
        }
    }

    fn index(self) -> usize {
        match self {
            RouteFamily::Authz => 0,
            RouteFamily::Licensing => 1,
            RouteFamily::Admin => 2,
            RouteFamily::Discovery => 3,
            RouteFamily::OpenApi => 4,
            RouteFamily::Metrics => 5,
            RouteFamily::Health => 6,
            RouteFamily::Other => 7,
        }
    }
}

/// The lowest status code counted; codes are counted exactly, one atomic each.
const FIRST_STATUS: u16 = 100;
/// How many status codes are counted (100 to 599).
const STATUSES: usize = 500;

/// The server-wide counters and the sources `/metrics` reads from.
pub struct ServerMetrics {
    started: Instant,
    /// Requests answered, per family (indexed by [`RouteFamily::index`]) and status code.
    requests: Box<[[AtomicU64; STATUSES]]>,
    /// The journal's flush latencies, when the engine journals to disk.
    journal_flush_latency: Option<Arc<Histogram>>,
    /// The signer pool whose waiting requests are the signer queue depth.
    signer_pool: Option<Arc<SignerPool>>,
}

impl std::fmt::Debug for ServerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerMetrics").field("started", &self.started).finish_non_exhaustive()
    }
}

impl ServerMetrics {
    /// Counters starting now, reading the journal's flush latencies and the signer pool's queue
    /// when given.
    pub fn new(journal_flush_latency: Option<Arc<Histogram>>, signer_pool: Option<Arc<SignerPool>>) -> Self {
        ServerMetrics {
            started: Instant::now(),
            requests: RouteFamily::ALL.iter().map(|_| std::array::from_fn(|_| AtomicU64::new(0))).collect(),
            journal_flush_latency,
            signer_pool,
        }
    }

    /// Counts one answered request.
    pub fn record_request(&self, family: RouteFamily, status: StatusCode) {
        let slot = usize::from(status.as_u16().saturating_sub(FIRST_STATUS));
        if let Some(counter) = self.requests[family.index()].get(slot) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests of `family` answered with `status` so far.
    pub fn requests(&self, family: RouteFamily, status: StatusCode) -> u64 {
        let slot = usize::from(status.as_u16().saturating_sub(FIRST_STATUS));
        self.requests[family.index()].get(slot).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// Answers `GET /metrics`.
pub fn handle(state: &HttpState, req: &Request<RequestBody>) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(ApiError::method_not_allowed("GET"));
    }
    Ok(reply::bytes_response(StatusCode::OK, CONTENT_TYPE, Bytes::from(render(state))))
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Microseconds as seconds, the unit Prometheus expects for durations.
fn seconds(us: u64) -> f64 {
    // Precision loss starts past 2^53 µs (285 years).
    us as f64 / 1e6
}

/// Delivery counters and each webhook's backlog.
fn webhook_metrics(out: &mut String, webhooks: &Webhooks, now_ms: i64) {
    let counters = webhooks.counters();
    header(out, "leasehold_webhook_attempts_total", "counter", "Webhook delivery attempts, by outcome.");
    let delivered = counters.delivered.load(Ordering::Relaxed);
    let _ = writeln!(out, "leasehold_webhook_attempts_total{{outcome=\"delivered\"}} {delivered}");
    let failed = counters.attempts_failed.load(Ordering::Relaxed);
    let _ = writeln!(out, "leasehold_webhook_attempts_total{{outcome=\"failed\"}} {failed}");
    header(
        out,
        "leasehold_webhook_deliveries_failed_total",
        "counter",
        "Deliveries given up on after a day of retries.",
    );
    let _ = writeln!(out, "leasehold_webhook_deliveries_failed_total {}", counters.failed.load(Ordering::Relaxed));
    let progress = webhooks.progress();
    header(out, "leasehold_webhook_backlog", "gauge", "Events waiting for delivery, by webhook (counted up to 10000).");
    for (id, p) in &progress {
        let _ = writeln!(out, "leasehold_webhook_backlog{{webhook=\"{id}\"}} {}", p.backlog.load(Ordering::Relaxed));
    }
    header(
        out,
        "leasehold_webhook_oldest_waiting_seconds",
        "gauge",
        "Age of the oldest event waiting for delivery, by webhook (0 when none waits).",
    );
    for (id, p) in &progress {
        let oldest = p.oldest_waiting_ms.load(Ordering::Relaxed);
        let age = if oldest == 0 { 0.0 } else { (now_ms - oldest).max(0) as f64 / 1000.0 };
        let _ = writeln!(out, "leasehold_webhook_oldest_waiting_seconds{{webhook=\"{id}\"}} {age:.3}");
    }
}

/// The whole exposition.
pub fn render(state: &HttpState) -> String {
    let metrics = &state.metrics;
    let mut out = String::with_capacity(8 * 1024);

    header(&mut out, "leasehold_uptime_seconds", "gauge", "Seconds since the server started.");
    let _ = writeln!(out, "leasehold_uptime_seconds {:.3}", metrics.started.elapsed().as_secs_f64());

    header(&mut out, "leasehold_http_requests_total", "counter", "HTTP requests answered, by route family and status.");
    for family in RouteFamily::ALL {
        for (slot, counter) in metrics.requests[family.index()].iter().enumerate() {
            let count = counter.load(Ordering::Relaxed);
            if count > 0 {
                let status = usize::from(FIRST_STATUS) + slot;
                let _ = writeln!(
                    out,
                    "leasehold_http_requests_total{{route=\"{}\",status=\"{status}\"}} {count}",
                    family.as_str()
                );
            }
        }
    }

    let engine = state.engine.metrics();
    header(&mut out, "leasehold_grants_total", "counter", "Decisions that granted, by operation.");
    for op in Operation::ALL {
        let _ = writeln!(out, "leasehold_grants_total{{operation=\"{}\"}} {}", op.as_str(), engine.grants(op));
    }
    header(&mut out, "leasehold_denials_total", "counter", "Decisions that denied, by operation and error code.");
    for op in Operation::ALL {
        for code in ErrorCode::ALL {
            let _ = writeln!(
                out,
                "leasehold_denials_total{{operation=\"{}\",code=\"{}\"}} {}",
                op.as_str(),
                code.as_str(),
                engine.denials(op, code)
            );
        }
    }

    header(
        &mut out,
        "leasehold_journal_writable",
        "gauge",
        "1 while the journal takes changes, 0 while it cannot write.",
    );
    let _ = writeln!(out, "leasehold_journal_writable {}", u8::from(state.engine.storage().is_ok()));

    header(&mut out, "leasehold_events_recorded_total", "counter", "Events recorded since the server started.");
    let _ = writeln!(out, "leasehold_events_recorded_total {}", state.engine.events_recorded());

    if let Some(webhooks) = &state.webhooks {
        webhook_metrics(&mut out, webhooks, state.engine.now().as_millis());
    }

    header(&mut out, "leasehold_live_leases", "gauge", "Live leases over all licenses.");
    let _ = writeln!(out, "leasehold_live_leases {}", state.engine.live_leases());

    if let Some(pool) = &metrics.signer_pool {
        header(&mut out, "leasehold_signer_queue_depth", "gauge", "Tokens waiting for a signer thread.");
        let _ = writeln!(out, "leasehold_signer_queue_depth {}", pool.waiting());
    }

    if let Some(latency) = &metrics.journal_flush_latency {
        histogram(
            &mut out,
            "leasehold_journal_flush_latency_seconds",
            "How long each flush of the journal to disk took.",
            &latency.snapshot(),
        );
    }
    if let Some(cluster) = &state.cluster {
        cluster_metrics(&mut out, &cluster.status());
    }
    out
}

/// Per stream of a cluster: whether this node writes it, at which epoch, and how long reading
/// it back took; per node heard from, whether it counts as alive.
fn cluster_metrics(out: &mut String, status: &ClusterStatus) {
    header(out, "leasehold_cluster_node_alive", "gauge", "1 for each node of the cluster heard from lately.");
    for node in &status.nodes {
        let _ = writeln!(out, "leasehold_cluster_node_alive{{node=\"{}\"}} {}", node.name, u8::from(node.alive));
    }
    header(out, "leasehold_stream_owned", "gauge", "1 for each stream this node writes, 0 for the others.");
    for stream in &status.streams {
        let owned = u8::from(stream.state == "owned");
        let owner = stream.owner.as_deref().unwrap_or("");
        let _ = writeln!(out, "leasehold_stream_owned{{stream=\"{}\",owner=\"{owner}\"}} {owned}", stream.stream);
    }
    header(out, "leasehold_stream_epoch", "gauge", "The epoch this node writes each of its streams at.");
    for stream in &status.streams {
        if let Some(epoch) = stream.epoch {
            let _ = writeln!(out, "leasehold_stream_epoch{{stream=\"{}\"}} {epoch}", stream.stream);
        }
    }
    header(
        out,
        "leasehold_stream_read_back_seconds",
        "gauge",
        "How long this node took to read each of its streams back before it claimed it.",
    );
    for stream in &status.streams {
        if let Some(ms) = stream.read_back_ms {
            let _ = writeln!(
                out,
                "leasehold_stream_read_back_seconds{{stream=\"{}\"}} {}",
                stream.stream,
                seconds(ms * 1_000)
            );
        }
    }
}

fn histogram(out: &mut String, name: &str, help: &str, snapshot: &HistogramSnapshot) {
    header(out, name, "histogram", help);
    for (bound_us, count) in &snapshot.cumulative {
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {count}", seconds(*bound_us));
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", snapshot.count);
    let _ = writeln!(out, "{name}_sum {}", seconds(snapshot.sum_us));
    let _ = writeln!(out, "{name}_count {}", snapshot.count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fall_into_their_families() {
        assert_eq!(RouteFamily::of_path("/authz/.jwt"), RouteFamily::Authz);
        assert_eq!(RouteFamily::of_path("/authz"), RouteFamily::Authz);
        assert_eq!(RouteFamily::of_path("/licensing/actions/checkout"), RouteFamily::Licensing);
        assert_eq!(RouteFamily::of_path("/licensing-signing-keys/.well-known/jwks.json"), RouteFamily::Discovery);
        assert_eq!(RouteFamily::of_path("/admin/licenses"), RouteFamily::Admin);
        assert_eq!(RouteFamily::of_path("/.well-known/license-configuration"), RouteFamily::Discovery);
        assert_eq!(RouteFamily::of_path("/authzz"), RouteFamily::Other);
    }

    #[test]
    fn a_histogram_is_written_with_cumulative_buckets_sum_and_count() {
        let snapshot = HistogramSnapshot { cumulative: vec![(50, 1), (1_000, 3)], count: 4, sum_us: 2_500_000 };
        let mut out = String::new();
        histogram(&mut out, "x_seconds", "help", &snapshot);
        let lines: Vec<&str> = out.lines().skip(2).collect();
        assert_eq!(
            lines,
            [
                "x_seconds_bucket{le=\"0.00005\"} 1",
                "x_seconds_bucket{le=\"0.001\"} 3",
                "x_seconds_bucket{le=\"+Inf\"} 4",
                "x_seconds_sum 2.5",
                "x_seconds_count 4"
            ]
        );
    }

    #[test]
    fn statuses_are_counted_exactly_per_family() {
        let metrics = ServerMetrics::new(None, None);
        metrics.record_request(RouteFamily::Authz, StatusCode::OK);
        metrics.record_request(RouteFamily::Authz, StatusCode::OK);
        metrics.record_request(RouteFamily::Admin, StatusCode::NOT_FOUND);
        assert_eq!(metrics.requests(RouteFamily::Authz, StatusCode::OK), 2);
        assert_eq!(metrics.requests(RouteFamily::Admin, StatusCode::NOT_FOUND), 1);
        assert_eq!(metrics.requests(RouteFamily::Admin, StatusCode::OK), 0);
    }
}
