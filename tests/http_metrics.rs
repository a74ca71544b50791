//! `/metrics` over real HTTP: the Prometheus text format with counts that match what the test
//! did (grants, denials by code, requests by route and status, live leases), the journal's
//! flush latency histogram and the signer's queue depth.

mod http_common;

use http_common::{request, seats, Server};
use serde_json::json;
use std::collections::BTreeMap;

/// The samples of an exposition: `name{labels}` to value. Checks every line is a comment or a
/// sample, and that each sample's family was declared with `# TYPE` before it.
fn scrape(server: &Server) -> BTreeMap<String, f64> {
    let reply = request(server.addr, "GET", "/metrics", &[], None);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let mut typed: Vec<String> = Vec::new();
    let mut samples = BTreeMap::new();
    for line in reply.text().lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.push(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
        let name = series.split('{').next().unwrap_or(series);
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        assert!(typed.iter().any(|t| t == name || t == family), "{name} has no # TYPE before it");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        assert!(samples.insert(series.to_owned(), value).is_none(), "{series} twice");
    }
    samples
}

fn at(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples.get(series).unwrap_or_else(|| panic!("no {series} in /metrics"))
}

#[test]
fn metrics_count_what_happened() {
    let server = Server::start();
    let (licensee, _, key) = server.party("Acme");
    let license = server.license(&licensee, "ThreeDee", seats(2), json!({"model": {"session_anchors": ["hw"]}}));
    let before = scrape(&server);
    assert_eq!(at(&before, "leasehold_grants_total{operation=\"consume\"}"), 0.0);
    assert_eq!(at(&before, "leasehold_live_leases"), 0.0);

    // Two grants, a third hardware id refused, an unknown item, a check, a release.
    assert_eq!(server.authz(&key, "/authz/.txt?ThreeDee&hw=a").text(), "true");
    let lease = server.authz(&key, "/authz/.json?ThreeDee&hw=b").json()["jti"].as_str().unwrap().to_owned();
    assert_eq!(server.authz(&key, "/authz/.txt?ThreeDee&hw=c").text(), "false");
    assert_eq!(server.authz(&key, "/authz/.txt?Nothing&hw=a").text(), "false");
    assert_eq!(server.authz(&key, "/authz/.txt?Nothing&hw=a").text(), "false");
    assert_eq!(server.authz(&key, "/authz/.txt?ThreeDee&hw=a&doConsume=false").text(), "true");
    assert_eq!(server.authz(&key, &format!("/authz/.json?release&{lease}")).json()[&lease], json!(true));
    assert_eq!(server.authz("lh_wrong", "/authz/.txt?ThreeDee").status, 401);
    server.admin_ok("POST", &format!("/admin/licenses/{license}/revoke"), None, 200);
    assert_eq!(server.authz(&key, "/authz/.txt?ThreeDee&hw=d").text(), "false");

    let after = scrape(&server);
    assert_eq!(at(&after, "leasehold_grants_total{operation=\"consume\"}"), 2.0);
    assert_eq!(at(&after, "leasehold_grants_total{operation=\"check\"}"), 1.0);
    assert_eq!(at(&after, "leasehold_grants_total{operation=\"release\"}"), 1.0);
    assert_eq!(at(&after, "leasehold_grants_total{operation=\"renew\"}"), 0.0);
    let denied = |code: &str| at(&after, &format!("leasehold_denials_total{{operation=\"consume\",code=\"{code}\"}}"));
    assert_eq!(denied("maxConcurrentSessionsExceed") + denied("licenseQuotaExceeded"), 1.0);
    assert_eq!(denied("noLicenseFound"), 2.0);
    assert_eq!(denied("licenseRevoked"), 1.0);
    assert_eq!(denied("leaseIdNotFound"), 0.0);
    assert_eq!(at(&after, "leasehold_live_leases"), 1.0, "hw=a holds the one lease left");

    assert_eq!(at(&after, "leasehold_http_requests_total{route=\"authz\",status=\"200\"}"), 8.0);
    assert_eq!(at(&after, "leasehold_http_requests_total{route=\"authz\",status=\"401\"}"), 1.0);
    // party (2) + product + license = 4 creations; the revoke answers 200.
    assert_eq!(at(&after, "leasehold_http_requests_total{route=\"admin\",status=\"201\"}"), 4.0);
    assert_eq!(at(&after, "leasehold_http_requests_total{route=\"admin\",status=\"200\"}"), 1.0);
    assert_eq!(at(&after, "leasehold_http_requests_total{route=\"metrics\",status=\"200\"}"), 1.0, "the first scrape");

    assert_eq!(at(&after, "leasehold_signer_queue_depth"), 0.0, "nothing waits for the signer when idle");
    assert!(at(&after, "leasehold_uptime_seconds") >= at(&before, "leasehold_uptime_seconds"));

    // Under `sync` every journalled change was flushed: the histogram saw flushes, and its
    // buckets are cumulative, ending at the count.
    let flushes = at(&after, "leasehold_journal_flush_latency_seconds_count");
    assert!(flushes >= 1.0, "flushes: {flushes}");
    assert!(flushes > at(&before, "leasehold_journal_flush_latency_seconds_count"));
    let buckets: Vec<(f64, f64)> = after
        .iter()
        .filter_map(|(series, value)| {
            let le = series.strip_prefix("leasehold_journal_flush_latency_seconds_bucket{le=\"")?;
            let le = le.strip_suffix("\"}")?;
            Some((if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? }, *value))
        })
        .collect();
    let mut sorted = buckets.clone();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(sorted.len() > 2);
    assert!(sorted.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative buckets: {sorted:?}");
    assert_eq!(sorted.last().map(|b| (b.0, b.1)), Some((f64::INFINITY, flushes)));
    assert!(at(&after, "leasehold_journal_flush_latency_seconds_sum") > 0.0);
}

#[test]
fn metrics_answer_only_get() {
    let server = Server::start();
    assert_eq!(request(server.addr, "POST", "/metrics", &[], Some(b"{}")).status, 405);
    assert_eq!(request(server.addr, "HEAD", "/metrics", &[], None).status, 200);
}

#[test]
fn live_leases_recovered_at_a_restart_are_counted_before_their_license_is_used() {
    let scratch = tempfile::tempdir().unwrap();
    let server = Server::start_in(scratch.path(), &[], true);
    let (licensee, _, key) = server.party("Acme");
    server.license(&licensee, "ThreeDee", seats(3), json!({"model": {"session_anchors": ["hw"]}}));
    for hw in ["a", "b"] {
        assert_eq!(server.authz(&key, &format!("/authz/.txt?ThreeDee&hw={hw}")).text(), "true");
    }
    assert_eq!(at(&scrape(&server), "leasehold_live_leases"), 2.0);
    assert!(server.terminate().success());

    let restarted = Server::start_in(scratch.path(), &[], true);
    let samples = scrape(&restarted);
    assert_eq!(at(&samples, "leasehold_live_leases"), 2.0);
    assert_eq!(at(&samples, "leasehold_grants_total{operation=\"consume\"}"), 0.0, "counters count this process");
}
