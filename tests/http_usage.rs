//! `GET /admin/usage` against a real server (SPEC section 11): the grants, refusals, uses and
//! peak seats it reports equal what the test counted from its own requests, before and after a
//! kill -9, grouped by license, licensee, product and consumer, as JSON and CSV.

mod http_common;

use http_common::{seats, Server};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Every month from 2020 to 2100 (960 periods, under the 1,000 a report may cover): whenever the
/// test runs, its requests are inside.
const ALL_TIME: &str = "from=2020-01-01T00:00:00Z&to=2100-01-01T00:00:00Z&granularity=month";

/// What the test counts of one license from the answers it got.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counted {
    peak_seats: u64,
    grants: u64,
    denials: u64,
    uses: i64,
}

/// The report's rows summed over periods by key (peaks: the highest).
fn report(server: &Server, group_by: &str) -> BTreeMap<String, Counted> {
    let answer = server.admin_ok("GET", &format!("/admin/usage?{ALL_TIME}&group_by={group_by}"), None, 200);
    let mut by_key: BTreeMap<String, Counted> = BTreeMap::new();
    for row in answer["items"].as_array().expect("items") {
        let counted = by_key.entry(row["key"].as_str().expect("a key").to_owned()).or_default();
        counted.peak_seats = counted.peak_seats.max(row["peak_seats"].as_u64().expect("peak_seats"));
        counted.grants += row["grants"].as_u64().expect("grants");
        counted.denials += row["denials"].as_u64().expect("denials");
        counted.uses += row["uses"].as_i64().expect("uses");
    }
    by_key
}

/// Checks out `product` on hardware `hw` and counts the answer in `counted`; the lease id.
fn checkout(server: &Server, key: &str, product: &str, hw: &str, counted: &mut Counted) -> Option<String> {
    let answer = server.authz(key, &format!("/authz/.json?{product}&hw={hw}"));
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    match body["jti"].as_str() {
        Some(lease) => {
            counted.grants += 1;
            Some(lease.to_owned())
        }
        None => {
            counted.denials += 1;
            None
        }
    }
}

#[test]
fn usage_equals_what_the_clients_were_answered_across_a_kill_9() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let server = Server::start_in(scratch.path(), &[], true);
    let (acme, acme_user, acme_key) = server.party("Acme");
    let (beta, beta_user, beta_key) = server.party("Beta");
    // A seat per machine.
    let per_machine = json!({"model": {"session_anchors": ["hw"]}});
    let cad = server.license(&acme, "Cad", seats(3), per_machine.clone());
    let uses = json!({"dimension": "USE_COUNT", "qty": 5, "enforcement": "ENFORCED"});
    let metered = server.license(&beta, "Metered", uses, per_machine);

    // Acme: three seats taken, a fourth machine refused twice, a check that counts nothing, one
    // seat freed and taken again.
    let mut cad_count = Counted::default();
    let first = checkout(&server, &acme_key, "Cad", "hw-1", &mut cad_count).expect("a seat");
    for hw in ["hw-2", "hw-3", "hw-4", "hw-4"] {
        checkout(&server, &acme_key, "Cad", hw, &mut cad_count);
    }
    assert_eq!(server.authz(&acme_key, "/authz/.txt?Cad&hw=hw-4&doConsume=false").text(), "false");
    cad_count.peak_seats = 3;
    let released = server.authz(&acme_key, &format!("/authz/.json?release&{first}="));
    assert_eq!(released.status, 200, "{}", released.text());
    checkout(&server, &acme_key, "Cad", "hw-5", &mut cad_count).expect("the freed seat");
    assert_eq!((cad_count.grants, cad_count.denials), (4, 2));

    // Beta: seven checkouts of five uses.
    let mut metered_count = Counted::default();
    for n in 0..7 {
        checkout(&server, &beta_key, "Metered", &format!("m-{n}"), &mut metered_count);
    }
    metered_count.uses = metered_count.grants as i64;
    metered_count.peak_seats = metered_count.grants;
    assert_eq!((metered_count.grants, metered_count.denials), (5, 2));

    let by_license = report(&server, "license");
    assert_eq!(by_license.get(&cad), Some(&cad_count), "{by_license:?}");
    assert_eq!(by_license.get(&metered), Some(&metered_count), "{by_license:?}");
    assert_eq!(report(&server, "licensee").get(&acme), Some(&cad_count));
    assert_eq!(report(&server, "product").get("Metered"), Some(&metered_count));
    let by_consumer = report(&server, "consumer");
    assert_eq!(by_consumer.get(&acme_user).map(|c| (c.grants, c.denials)), Some((4, 2)));
    assert_eq!(by_consumer.get(&beta_user).map(|c| (c.grants, c.uses)), Some((5, 5)));

    // More use after that report, then kill -9: what the journal held before the kill is
    // reported after it, counted once.
    checkout(&server, &acme_key, "Cad", "hw-6", &mut cad_count);
    assert_eq!(cad_count.denials, 3, "every seat is taken");
    server.kill();
    let restarted = Server::start_in(scratch.path(), &[], true);
    let by_license = report(&restarted, "license");
    assert_eq!(by_license.get(&cad), Some(&cad_count), "after the restart: {by_license:?}");
    assert_eq!(by_license.get(&metered), Some(&metered_count), "after the restart: {by_license:?}");

    // The same rows as CSV, with a header.
    let csv =
        restarted.admin("GET", &format!("/admin/usage?{ALL_TIME}&group_by=license&format=csv&license={cad}"), None);
    assert_eq!(csv.status, 200);
    assert!(csv.content_type().starts_with("text/csv"), "{}", csv.content_type());
    let text = csv.text();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("period_start,key,peak_seats,grants,denials,uses,use_time_s"));
    let (mut grants, mut denials) = (0, 0);
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields[1], cad, "filtered by license: {line}");
        grants += fields[3].parse::<u64>().expect("grants");
        denials += fields[4].parse::<u64>().expect("denials");
    }
    assert_eq!((grants, denials), (cad_count.grants, cad_count.denials));
}

#[test]
fn a_bad_usage_query_is_a_400_that_says_what_is_wrong() {
    let server = Server::start();
    for (query, says) in [
        ("", "required"),
        ("from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "before"),
        ("from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z&granularity=hour", "at most 1000 periods"),
        ("from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&group_by=colour", "group_by"),
        ("from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&format=xml", "format"),
    ] {
        let answer = server.admin("GET", &format!("/admin/usage?{query}"), None);
        assert_eq!(answer.status, 400, "{query}: {}", answer.text());
        let body: Value = answer.json();
        assert!(body.to_string().contains(says), "{query}: {body}");
    }
    let empty = server.admin_ok("GET", &format!("/admin/usage?{ALL_TIME}"), None, 200);
    assert_eq!(empty["items"], json!([]));
}
