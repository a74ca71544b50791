//! `GET /admin/events` against a real server (SPEC section 11): every change of the directory is
//! an event with its actor and subject, listed oldest first, filtered by type and subject, paged
//! by cursor, never showing a secret, and still there after a kill -9.

mod http_common;

use http_common::Server;
use serde_json::{json, Value};

fn events(server: &Server, query: &str) -> Value {
    server.admin_ok("GET", &format!("/admin/events?{query}"), None, 200)
}

/// Events recorded without an answer waiting for them (a refusal's `seat.exhausted`) are listed
/// once their group commit is durable: a short wait for the first one.
fn events_once_listed(server: &Server, query: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let page = events(server, query);
        if !types(&page).is_empty() || std::time::Instant::now() > deadline {
            return page;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn types(page: &Value) -> Vec<String> {
    page["items"].as_array().expect("items").iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn directory_changes_are_listed_as_events_in_order_and_survive_a_kill_9() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let server = Server::start_in(scratch.path(), &[], true);
    let (licensee, consumer, _) = server.party("Acme");
    server.admin_ok("POST", "/admin/products", Some(json!({"name": "Audited"})), 201);
    server.admin_ok("PATCH", &format!("/admin/licensees/{licensee}"), Some(json!({"name": "Acme Ltd"})), 200);
    server.admin_ok("POST", &format!("/admin/consumers/{consumer}/api-key"), None, 200);
    assert_eq!(server.admin("DELETE", &format!("/admin/consumers/{consumer}"), None).status, 204);

    let expected = [
        "licensee.created",
        "consumer.created",
        "product.created",
        "licensee.updated",
        "consumer.api_key_rotated",
        "consumer.deleted",
    ];
    let all = events(&server, "");
    assert_eq!(types(&all), expected);
    let metrics = http_common::request(server.addr, "GET", "/metrics", &[], None).text();
    assert!(metrics.contains("\nleasehold_events_recorded_total 6\n"), "{metrics}");
    assert_eq!(all["next_cursor"], Value::Null);
    let first = &all["items"][0];
    assert_eq!(first["actor"], json!({"kind": "admin", "id": "admin"}));
    assert_eq!(first["subject"], json!({"kind": "licensee", "id": licensee}));
    assert_eq!(first["data"]["name"], json!("Acme"));
    assert!(first["at"].is_string());
    let ids: Vec<u64> =
        all["items"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    assert!(!all.to_string().contains("api_key_sha256"), "no secret in an event: {all}");

    // Filters and pages.
    assert_eq!(
        types(&events(&server, "type=consumer.*")),
        ["consumer.created", "consumer.api_key_rotated", "consumer.deleted"]
    );
    assert_eq!(types(&events(&server, &format!("subject={licensee}"))), ["licensee.created", "licensee.updated"]);
    assert_eq!(types(&events(&server, "type=product.created")), ["product.created"]);
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = cursor.as_ref().map_or("limit=4".to_owned(), |c| format!("limit=4&cursor={c}"));
        let page = events(&server, &query);
        paged.extend(types(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, expected, "pages visit every event once");
    assert_eq!(types(&events(&server, &format!("after={}", ids[3]))), expected[4..]);
    for bad in ["after=soon", "limit=0", "colour=red"] {
        assert_eq!(server.admin("GET", &format!("/admin/events?{bad}"), None).status, 400, "{bad}");
    }

    server.kill();
    let server = Server::start_in(scratch.path(), &[], true);
    assert_eq!(events(&server, ""), all, "the events after a kill -9");
    server.admin_ok("POST", "/admin/products", Some(json!({"name": "Later"})), 201);
    let later = events(&server, &format!("after={}", ids[5]));
    assert_eq!(types(&later), ["product.created"]);
    assert_eq!(later["items"][0]["subject"], json!({"kind": "product", "id": "Later"}));
}

#[test]
fn license_changes_are_events_without_the_license_key() {
    let server = Server::start();
    let (licensee, consumer, _) = server.party("Acme");
    let license = server.license(&licensee, "Tracked", http_common::seats(2), json!({"license_key": true}));
    let path = format!("/admin/licenses/{license}");
    let key = server.admin_ok("GET", &path, None, 200)["license_key"].as_str().expect("a key").to_owned();
    server.admin_ok("PATCH", &path, Some(json!({"credit": {"qty": 5}})), 200);
    server.admin_ok("POST", &format!("{path}/deactivate"), None, 200);
    server.admin_ok("POST", &format!("{path}/reactivate"), None, 200);
    server.admin_ok("POST", &format!("{path}/assignments"), Some(json!({"consumer": consumer})), 201);
    server.admin_ok("POST", &format!("{path}/revoke"), Some(json!({"reason": "chargeback"})), 200);
    assert_eq!(server.admin("DELETE", &format!("{path}?force=true"), None).status, 204);

    let about = events(&server, &format!("subject={license}"));
    assert_eq!(
        types(&about),
        [
            "license.created",
            "license.updated",
            "license.deactivated",
            "license.reactivated",
            "license.seat_assigned",
            "license.revoked",
            "license.deleted",
        ]
    );
    assert_eq!(about["items"][1]["data"]["credit"]["qty"], json!(5), "the terms after the change");
    assert_eq!(about["items"][0]["subject"], json!({"kind": "license", "id": license}));
    assert!(!about.to_string().contains(&key), "a license key is a credential: never in an event");
    assert_eq!(types(&events(&server, "type=license.revoked")), ["license.revoked"]);
}

#[test]
fn a_license_running_out_records_seat_exhaustion_once_a_minute_and_credit_thresholds() {
    let server = Server::start();
    let (licensee, _, key) = server.party("Acme");
    let seat =
        server.license(&licensee, "OneSeat", http_common::seats(1), json!({"model": {"session_anchors": ["hw"]}}));
    for hw in ["a", "b", "c"] {
        server.authz(&key, &format!("/authz/.txt?OneSeat&hw={hw}"));
    }
    let exhausted = events_once_listed(&server, "type=seat.exhausted");
    assert_eq!(types(&exhausted), ["seat.exhausted"], "two refusals in a minute, one event");
    assert_eq!(exhausted["items"][0]["subject"], json!({"kind": "license", "id": seat}));
    assert_eq!(exhausted["items"][0]["actor"]["kind"], json!("system"));

    let count = json!({"dimension": "USE_COUNT", "qty": 10, "enforcement": "ENFORCED"});
    server.license(&licensee, "Counted", count, json!({}));
    for uses in [7, 1, 1, 1] {
        assert_eq!(server.authz(&key, &format!("/authz/.txt?Counted&consumeCount={uses}")).text(), "true");
    }
    let thresholds = events(&server, "type=credit.threshold");
    let crossed: Vec<Value> =
        thresholds["items"].as_array().unwrap().iter().map(|e| e["data"]["threshold_percent"].clone()).collect();
    assert_eq!(crossed, [json!(80), json!(100)]);
    assert_eq!(thresholds["items"][1]["data"]["used_qty"], json!(10));
}

#[test]
fn a_license_whose_end_passed_while_the_server_was_down_is_recorded_as_expired_at_the_start() {
    use leasehold_transports::http::admin::shapes::rfc3339;
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let server = Server::start_in(scratch.path(), &[], true);
    let (licensee, _, _) = server.party("Acme");
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let end = rfc3339(leasehold::Timestamp::from_millis(i64::try_from(now_ms).unwrap() + 1_000));
    let license = server.license(&licensee, "Ending", http_common::seats(1), json!({"valid_until": end}));
    server.kill();
    std::thread::sleep(std::time::Duration::from_millis(1_200));

    let server = Server::start_in(scratch.path(), &[], true);
    let expired = events_once_listed(&server, "type=license.expired");
    assert_eq!(types(&expired), ["license.expired"]);
    assert_eq!(expired["items"][0]["subject"], json!({"kind": "license", "id": license}));
    assert_eq!(expired["items"][0]["actor"]["kind"], json!("system"));
}
