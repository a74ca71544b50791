//! Retried checkouts against a real server (SPEC section 10): the same credential, key and
//! request get the first answer again, the same lease charged once, over `/authz/`, the Scale
//! actions and the TCP protocol, also after a kill -9; the same key with another request is 422
//! `idempotencyKeyReused` (TCP: its failure code); a malformed key is 400. Admin POSTs, renewals
//! and releases are carried out once and answered the same when retried.

mod http_common;

use http_common::{jwt_payload, request, Reply, Server};
use leasehold::client::{Auth, Client, ClientError, Consume, FailureCode};
use serde_json::{json, Value};

fn use_count(qty: u64) -> Value {
    json!({"dimension": "USE_COUNT", "qty": qty, "enforcement": "ENFORCED"})
}

fn used(server: &Server, license: &str) -> u64 {
    let license = server.admin_ok("GET", &format!("/admin/licenses/{license}"), None, 200);
    license["usage"]["used_qty"].as_u64().expect("a used quantity")
}

fn authz(server: &Server, key: &str, idempotency_key: &str, query: &str) -> Reply {
    let auth = format!("Bearer {key}");
    let headers = [("Authorization", auth.as_str()), ("Idempotency-Key", idempotency_key)];
    request(server.addr, "POST", &format!("/authz/.json?{query}"), &headers, None)
}

fn scale(server: &Server, key: &str, idempotency_key: &str, body: &Value) -> Reply {
    let auth = format!("Bearer {key}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
        ("cliHwId", "build-agent-1"),
        ("Idempotency-Key", idempotency_key),
    ];
    let body = body.to_string();
    request(server.addr, "POST", "/licensing/actions/checkout", &headers, Some(body.as_bytes()))
}

fn scale_lease(reply: &Reply) -> Value {
    assert_eq!(reply.status, 200, "{}", reply.text());
    let claims = jwt_payload(reply.json()[0].as_str().expect("a token"));
    assert_eq!(claims["status"], json!("success"), "{claims}");
    claims["leaseId"].clone()
}

fn code(reply: &Reply) -> String {
    reply.json()["code"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_retried_checkout_gets_the_same_lease_and_is_charged_once_over_both_dialects_even_after_a_kill_9() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let server = Server::start_in(scratch.path(), &[], true);
    let (licensee, _, key) = server.party("Acme");
    let counted = server.license(&licensee, "Counted", use_count(10), json!({}));

    // Enterprise.
    let first = authz(&server, &key, "order-1", "Counted");
    assert_eq!(first.status, 200, "{}", first.text());
    let lease = first.json()["jti"].clone();
    assert!(lease.is_string(), "{}", first.text());
    let retried = authz(&server, &key, "order-1", "Counted");
    assert_eq!(retried.json()["jti"], lease, "the retry got another lease");
    assert_eq!(used(&server, &counted), 1, "charged once");
    let other = authz(&server, &key, "order-1", "Counted&consumeCount=2");
    assert_eq!((other.status, code(&other)), (422, "idempotencyKeyReused".to_owned()), "{}", other.text());
    assert_eq!(authz(&server, &key, "order-2", "Counted").status, 200, "another key is another checkout");
    assert_eq!(used(&server, &counted), 2);

    // Scale.
    let body = json!([{"productName": "Counted", "qtyDimension": "USE_COUNT", "qty": 3}]);
    let scale_first = scale_lease(&scale(&server, &key, "scale-1", &body));
    assert_eq!(scale_lease(&scale(&server, &key, "scale-1", &body)), scale_first);
    assert_eq!(used(&server, &counted), 5, "charged once");
    let more = json!([{"productName": "Counted", "qtyDimension": "USE_COUNT", "qty": 4}]);
    let reused = scale(&server, &key, "scale-1", &more);
    assert_eq!((reused.status, code(&reused)), (422, "idempotencyKeyReused".to_owned()), "{}", reused.text());

    // Malformed keys are refused before anything is decided.
    for bad in ["", "has space", &"k".repeat(256)] {
        assert_eq!(authz(&server, &key, bad, "Counted").status, 400, "key {bad:?}");
    }
    assert_eq!(used(&server, &counted), 5);

    // The keys were journaled with their grants: a retry after a crash still finds its answer.
    server.kill();
    let server = Server::start_in(scratch.path(), &[], true);
    assert_eq!(authz(&server, &key, "order-1", "Counted").json()["jti"], lease);
    assert_eq!(scale_lease(&scale(&server, &key, "scale-1", &body)), scale_first);
    assert_eq!(used(&server, &counted), 5, "no second charge after the restart");
    let reused = authz(&server, &key, "order-1", "Counted&consumeCount=3");
    assert_eq!(reused.status, 422, "{}", reused.text());
}

#[test]
fn a_retried_tcp_checkout_gets_the_same_lease_and_is_charged_once_even_after_a_kill_9() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let server = Server::start_in(scratch.path(), &[], true);
    let (licensee, _, key) = server.party("Acme");
    let counted = server.license(&licensee, "Counted", use_count(10), json!({}));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");

    let consume = |qty| {
        let mut consume = Consume::new("Counted");
        consume.qty = Some(qty);
        consume
    };
    let checkout = |server: &Server, idempotency_key: &str, qty: u64| {
        rt.block_on(async {
            let client = Client::connect(server.tcp_addr, Auth::ApiKey(key.clone())).await.expect("connects");
            client.consume_once(idempotency_key, consume(qty)).await
        })
    };
    let lease_of = |answer: Result<Result<leasehold::client::Granted, _>, ClientError>| match answer {
        Ok(Ok(granted)) => granted.lease_id,
        other => panic!("a grant: {other:?}"),
    };

    let first = lease_of(checkout(&server, "job-17", 2));
    assert_eq!(lease_of(checkout(&server, "job-17", 2)), first, "the retry got another lease");
    assert_eq!(used(&server, &counted), 2, "charged once");
    match checkout(&server, "job-17", 3) {
        Err(ClientError::Failure(failure)) => assert_eq!(failure.code, FailureCode::IdempotencyKeyReused),
        other => panic!("the same key with another request: {other:?}"),
    }

    server.kill();
    let server = Server::start_in(scratch.path(), &[], true);
    assert_eq!(lease_of(checkout(&server, "job-17", 2)), first);
    assert_eq!(used(&server, &counted), 2, "no second charge after the restart");
}

fn admin_once(server: &Server, idempotency_key: &str, method: &str, path: &str, body: &Value) -> Reply {
    let auth = format!("Bearer {}", http_common::ADMIN);
    let headers =
        [("Authorization", auth.as_str()), ("Content-Type", "application/json"), ("Idempotency-Key", idempotency_key)];
    let body = body.to_string();
    request(server.addr, method, path, &headers, Some(body.as_bytes()))
}

#[test]
fn a_retried_admin_post_is_carried_out_once_and_answered_the_same_even_after_a_kill_9() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let server = Server::start_in(scratch.path(), &[], true);
    let (licensee, consumer, _) = server.party("Acme");
    server.admin_ok("POST", "/admin/products", Some(json!({"name": "Sold"})), 201);
    let sale = json!({"licensee": licensee, "product": "Sold", "credit": use_count(5), "license_key": true});

    let first = admin_once(&server, "sale-1", "POST", "/admin/licenses", &sale);
    assert_eq!(first.status, 201, "{}", first.text());
    let retried = admin_once(&server, "sale-1", "POST", "/admin/licenses", &sale);
    assert_eq!((retried.status, retried.json()), (201, first.json()), "the first answer again");
    let listed = server.admin_ok("GET", &format!("/admin/licenses?licensee={licensee}"), None, 200);
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1), "one license sold, not two");
    let other = admin_once(&server, "sale-1", "POST", "/admin/licenses", &json!({"licensee": licensee}));
    assert_eq!((other.status, code(&other)), (422, "idempotencyKeyReused".to_owned()));

    // An answer with a secret is not stored: the retry derives the same API key again.
    let person = json!({"name": "ci", "kind": "device", "licensees": [licensee]});
    let created = admin_once(&server, "ci-device", "POST", "/admin/consumers", &person);
    assert_eq!(created.status, 201, "{}", created.text());
    let again = admin_once(&server, "ci-device", "POST", "/admin/consumers", &person);
    assert_eq!(again.json(), created.json(), "the same consumer and the same key");
    let api_key = created.json()["api_key"].as_str().expect("a key").to_owned();
    assert_eq!(server.authz(&api_key, "/authz/.txt?Sold").text(), "true", "the key works");

    let rotate = format!("/admin/consumers/{consumer}/api-key");
    let rotated = admin_once(&server, "rotate-1", "POST", &rotate, &json!({}));
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    assert_eq!(admin_once(&server, "rotate-1", "POST", &rotate, &json!({})).json(), rotated.json());
    let new_key = rotated.json()["api_key"].as_str().expect("a key").to_owned();

    server.kill();
    let server = Server::start_in(scratch.path(), &[], true);
    let after = admin_once(&server, "sale-1", "POST", "/admin/licenses", &sale);
    assert_eq!((after.status, after.json()), (201, first.json()), "remembered across the restart");
    assert_eq!(admin_once(&server, "ci-device", "POST", "/admin/consumers", &person).json(), created.json());
    assert_eq!(admin_once(&server, "rotate-1", "POST", &rotate, &json!({})).json(), rotated.json());
    assert_eq!(server.authz(&new_key, "/authz/.txt?Sold").text(), "true");
    let listed = server.admin_ok("GET", &format!("/admin/licenses?licensee={licensee}"), None, 200);
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
}

#[test]
fn retried_heartbeats_and_releases_get_their_first_answers() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let server = Server::start_in(scratch.path(), &[], true);
    let (licensee, _, key) = server.party("Acme");
    server.license(&licensee, "Seat", http_common::seats(1), json!({"model": {"session_anchors": ["hw"]}}));
    let post = |server: &Server, path: &str, idempotency_key: &str, body: &Value| {
        let auth = format!("Bearer {key}");
        let headers = [
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
            ("cliHwId", "build-agent-1"),
            ("Idempotency-Key", idempotency_key),
        ];
        request(server.addr, "POST", path, &headers, Some(body.to_string().as_bytes()))
    };
    let lease = scale_lease(&post(&server, "/licensing/actions/checkout", "co-1", &json!([{"productName": "Seat"}])));

    let beat = json!([{"leaseId": lease}]);
    let renewed = post(&server, "/licensing/actions/heartbeat", "hb-1", &beat);
    let new_lease = scale_lease(&renewed);
    assert_ne!(new_lease, lease);
    let again = post(&server, "/licensing/actions/heartbeat", "hb-1", &beat);
    assert_eq!(again.body, renewed.body, "the first renewal's answer, not leaseIdNotFound");
    let without_key = {
        let auth = format!("Bearer {key}");
        let headers =
            [("Authorization", auth.as_str()), ("Content-Type", "application/json"), ("cliHwId", "build-agent-1")];
        request(server.addr, "POST", "/licensing/actions/heartbeat", &headers, Some(beat.to_string().as_bytes()))
    };
    let refused = jwt_payload(without_key.json()[0].as_str().expect("a token"));
    assert_eq!(refused["status"], json!("error"), "the old lease is gone: {refused}");

    let end = json!([{"leaseId": new_lease}]);
    let released = post(&server, "/licensing/actions/release", "rel-1", &end);
    assert_eq!(released.json()[0]["released"], json!(true), "{}", released.text());
    server.kill();
    let server = Server::start_in(scratch.path(), &[], true);
    let again = post(&server, "/licensing/actions/release", "rel-1", &end);
    assert_eq!(again.json(), released.json(), "the first release's answer after a restart");
    let reused = post(&server, "/licensing/actions/release", "rel-1", &json!([{"leaseId": lease}]));
    assert_eq!((reused.status, code(&reused)), (422, "idempotencyKeyReused".to_owned()));
}
