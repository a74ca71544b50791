//! The Scale License Checkout API (`/licensing/actions/...`) over real HTTP against the real
//! binary: checkout, heartbeat and release, metered use, license keys (and the revocation of
//! older sibling keys, across a kill -9), JWE, the `describe-*` reads, every denial code a Scale
//! client can meet (each a signed token in the 200 array) and every whole-request error.
//!
//! `overloaded` is the one code not driven here: `tests/overload.rs` fills a license's queue
//! (`--license-queue 1`) and checks its token.

mod http_common;

use http_common::{jwt_header, request, seats, Reply, Server};
use leasehold_engine::time::{Clock, SystemClock};
use leasehold_engine::tokens::Verifier;
use leasehold_engine::ErrorCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// A 2048-bit RSA public key (SubjectPublicKeyInfo DER, base64) a client would send as
/// `cliPublicKey`; its private half is not needed to see that the answer is a JWE for it.
const CLIENT_PUBLIC_KEY: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEApXIRfcz9/DTMCytltF1sbFmQIcqkQ6u84KDMaUTMEAjYJxU4vPWhkzzbY/jtFhPH2DPmO0qBK3BNM1d1lSJ1c6BqxHihcpkgOEQ/8AwLKVNi6xjEz0DSpyWGTyitufaJdnYMG5NyUnUXhk9ghrlG0ABhDpm7CgZnSdXNpX2T1mSV/NcWuYj+TVZRE5ctMsSjE9gP3yrZwOMG/qksYRoJO3EK1QWGqpz/u+qFT+RCxXnSApShFIVnJqFDKhr8DvkIWQsXW0LWnrO+ftXJgtESENVzoinr8zc2hSTy7QAMg3f1U5Kpf9BT6qfHy+L0svDZHj03tTmC3Nd6bdKQfwpo7QIDAQAB";

/// A consumer of a licensee, as the Scale SDK authenticates it.
struct Client {
    licensee: String,
    id: String,
    api_key: String,
}

impl Client {
    fn of(server: &Server, name: &str) -> Client {
        let (licensee, id, api_key) = server.party(name);
        Client { licensee, id, api_key }
    }

    /// The headers the SDK sends: the API key, `licenseConsumerId` and the client claims.
    fn headers<'a>(&'a self, claims: &[(&'a str, &'a str)]) -> Vec<(&'a str, String)> {
        let mut headers = vec![
            ("Authorization", format!("Bearer {}", self.api_key)),
            ("licenseConsumerId", self.id.clone()),
            ("Content-Type", "application/json".to_owned()),
        ];
        headers.extend(claims.iter().map(|(k, v)| (*k, (*v).to_owned())));
        headers
    }
}

fn post(server: &Server, path: &str, headers: &[(&str, String)], body: &Value) -> Reply {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    request(server.addr, "POST", path, &headers, Some(body.to_string().as_bytes()))
}

fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(server.addr, "GET", path, headers, None)
}

/// Verifies tokens with the JWKS the Scale SDK fetches.
fn verifier(server: &Server) -> Verifier {
    let jwks = get(server, "/licensing-signing-keys/.well-known/jwks.json", &[]);
    assert_eq!(jwks.status, 200);
    Verifier::from_jwks_json(&jwks.body).expect("a JWKS")
}

/// The claims of every token of a 200 answer, each verified against the JWKS; no token has an
/// `aud` (the SDK refuses one).
fn tokens(server: &Server, reply: &Reply) -> Vec<Value> {
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.content_type(), "application/json");
    let verifier = verifier(server);
    let list = reply.json();
    let list = list.as_array().unwrap_or_else(|| panic!("an array: {}", reply.text())).clone();
    list.iter()
        .map(|token| {
            let token = token.as_str().expect("each answer is a token");
            assert_eq!(jwt_header(token)["alg"], json!("RS256"));
            let claims = verifier.verify(token, SystemClock.now()).expect("a token signed by a published key");
            assert!(claims.get("aud").is_none());
            Value::Object(claims)
        })
        .collect()
}

/// The one token of a one-entry answer.
fn token(server: &Server, reply: &Reply) -> Value {
    let mut all = tokens(server, reply);
    assert_eq!(all.len(), 1, "one entry, one token");
    all.remove(0)
}

fn checkout(server: &Server, client: &Client, claims: &[(&str, &str)], product: &str) -> Value {
    let reply =
        post(server, "/licensing/actions/checkout", &client.headers(claims), &json!([{"productName": product}]));
    token(server, &reply)
}

fn heartbeat(server: &Server, client: &Client, claims: &[(&str, &str)], lease: &Value) -> Value {
    let reply = post(server, "/licensing/actions/heartbeat", &client.headers(claims), &json!([{"leaseId": lease}]));
    token(server, &reply)
}

fn release(server: &Server, client: &Client, lease: &Value) -> Value {
    let reply = post(server, "/licensing/actions/release", &client.headers(&[]), &json!([{"leaseId": lease}]));
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()[0].clone()
}

fn error_code(token: &Value) -> &str {
    assert_eq!(token["status"], json!("error"), "a denial: {token}");
    assert!(token["errorDescription"].is_string());
    token["errorCode"].as_str().expect("an errorCode")
}

fn product(server: &Server, name: &str, features: Value) {
    server.admin_ok("POST", "/admin/products", Some(json!({"name": name, "features": features})), 201);
}

/// A license of `product` (created here) for `licensee`; `extra` adds fields to the request.
fn license(server: &Server, licensee: &str, product_name: &str, credit: Value, extra: Value) -> Value {
    product(server, product_name, json!([]));
    keyed_license(server, licensee, product_name, credit, extra)
}

/// A license of an existing product.
fn keyed_license(server: &Server, licensee: &str, product: &str, credit: Value, extra: Value) -> Value {
    let mut body = json!({"licensee": licensee, "product": product, "credit": credit});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    server.admin_ok("POST", "/admin/licenses", Some(body), 201)
}

fn hw_model() -> Value {
    json!({"model": {"session_anchors": ["hw"]}})
}

fn license_status(server: &Server, id: &Value) -> Value {
    server.admin_ok("GET", &format!("/admin/licenses/{}", id.as_str().expect("an id")), None, 200)
}

#[test]
fn checkout_heartbeat_and_release_answer_in_order_and_rotate_the_lease() {
    let server = Server::start();
    let client = Client::of(&server, "Acme");
    let terms = license(&server, &client.licensee, "ThreeDee", seats(2), hw_model());

    let claims = [
        ("CLIHWID", "hw-1"),
        ("clihwlabel", "Desk"),
        ("cliVersion", "1.2.3"),
        ("cliInstallationId", "inst-9"),
        ("cliLang", "fi"),
    ];
    let body = json!([{"productName": "ThreeDee", "qtyDimension": "SEATS", "qty": 1}, {"productName": "Nothing"}]);
    let reply = post(&server, "/licensing/actions/checkout", &client.headers(&claims), &body);
    let answers = tokens(&server, &reply);
    assert_eq!(answers.len(), 2);
    let grant = &answers[0];
    assert_eq!(grant["status"], json!("success"));
    assert_eq!(grant["leaseId"], grant["jti"]);
    assert_eq!(grant["productName"], json!("ThreeDee"));
    assert_eq!(grant["licenseId"], terms["id"]);
    assert_eq!(grant["licenseConsumerId"], json!(client.id));
    assert_eq!((&grant["qtyDimension"], &grant["qtyEnforcementType"]), (&json!("SEATS"), &json!("ENFORCED")));
    assert_eq!((&grant["qty"], &grant["qtyPrealloc"], &grant["qtyVerified"]), (&json!(1), &json!(0), &json!(1)));
    assert_eq!(
        grant["clientClaims"],
        json!({"cliHwId": "hw-1", "cliHwLabel": "Desk", "cliVersion": "1.2.3", "cliInstallationId": "inst-9", "cliLang": "fi"})
    );
    assert!(grant["hbnbf"].as_i64().is_some() && grant["toe"].as_i64().is_some());
    assert!(grant["nbf"].as_i64() < grant["iat"].as_i64(), "nbf is a little in the past");
    assert_eq!(error_code(&answers[1]), "noLicenseFound");
    assert_eq!(answers[1]["productName"], json!("Nothing"));

    let old = grant["leaseId"].clone();
    let renewed = heartbeat(&server, &client, &[("cliHwId", "hw-1")], &old);
    assert_eq!(renewed["status"], json!("success"));
    assert_eq!(renewed["oldLeaseId"], old);
    assert_ne!(renewed["leaseId"], old);
    assert_eq!(error_code(&heartbeat(&server, &client, &[], &old)), "leaseIdNotFound");

    let released = release(&server, &client, &renewed["leaseId"]);
    assert_eq!(released["released"], json!(true));
    assert_eq!(released["releasedLeaseId"], renewed["leaseId"]);
    assert_eq!(released["releasedLicenseId"], terms["id"]);
    assert_eq!((&released["productName"], &released["qtyDimension"]), (&json!("ThreeDee"), &json!("SEATS")));
    assert_eq!(released["remainingQty"], json!(2));
    let again = release(&server, &client, &renewed["leaseId"]);
    assert_eq!((&again["released"], &again["errorCode"]), (&json!(false), &json!("leaseIdNotFound")));
    assert_eq!(license_status(&server, &terms["id"])["usage"]["live_leases"], json!(0));
}

#[test]
fn every_refusal_a_scale_client_can_meet_is_a_signed_denial_in_the_batch() {
    let server = Server::start();
    let client = Client::of(&server, "Acme");
    let lic = |product: &str, credit: Value, extra: Value| license(&server, &client.licensee, product, credit, extra);
    let mut seen = BTreeSet::new();
    let mut expect = |code: &'static str, token: &Value| {
        assert_eq!(error_code(token), code, "{token}");
        seen.insert(code);
    };

    lic("NoRenew", seats(1), json!({"model": {"allow_extension": false}}));
    let lease = checkout(&server, &client, &[], "NoRenew")["leaseId"].clone();
    expect("notAuthorized", &heartbeat(&server, &client, &[], &lease));
    lic("NoRelease", seats(1), json!({"model": {"allow_release": false}}));
    let lease = checkout(&server, &client, &[], "NoRelease")["leaseId"].clone();
    let refused = release(&server, &client, &lease);
    assert_eq!((&refused["released"], &refused["errorCode"]), (&json!(false), &json!("notAuthorized")));

    expect("noLicenseFound", &checkout(&server, &client, &[], "Nothing"));
    lic("Old", seats(1), json!({"valid_from": "2020-01-01T00:00:00Z", "valid_until": "2021-01-01T00:00:00Z"}));
    expect("licenseExpired", &checkout(&server, &client, &[], "Old"));
    let paused = lic("Paused", seats(1), json!({}));
    server.admin_ok("POST", &format!("/admin/licenses/{}/deactivate", paused["id"].as_str().unwrap()), None, 200);
    expect("licenseNotActive", &checkout(&server, &client, &[], "Paused"));
    lic("Future", seats(1), json!({"valid_from": "2099-01-01T00:00:00Z"}));
    expect("licenseValidityNotStarted", &checkout(&server, &client, &[], "Future"));

    lic("Shared", seats(1), json!({"model": {"session_anchors": []}}));
    assert_eq!(checkout(&server, &client, &[], "Shared")["status"], json!("success"));
    expect("licenseQuotaExceeded", &checkout(&server, &client, &[], "Shared"));
    lic("Seat", seats(1), hw_model());
    assert_eq!(checkout(&server, &client, &[("cliHwId", "a")], "Seat")["status"], json!("success"));
    expect("maxConcurrentSessionsExceed", &checkout(&server, &client, &[("cliHwId", "b")], "Seat"));

    lic("Counted", json!({"dimension": "USE_COUNT", "qty": 2, "enforcement": "ENFORCED"}), json!({}));
    let three_uses = json!([{"productName": "Counted", "qtyDimension": "USE_COUNT", "qty": 3}]);
    let reply = post(&server, "/licensing/actions/checkout", &client.headers(&[]), &three_uses);
    expect("maxUseCountExceed", &token(&server, &reply));
    lic("Timed", json!({"dimension": "USE_TIME", "qty": 10, "enforcement": "ENFORCED"}), hw_model());
    let all_of_it = checkout(&server, &client, &[("cliHwId", "a")], "Timed");
    assert_eq!((&all_of_it["qtyDimension"], &all_of_it["qtyPrealloc"]), (&json!("USE_TIME"), &json!(10)));
    expect("maxAggregateUseTimeExceed", &checkout(&server, &client, &[("cliHwId", "b")], "Timed"));

    lic("Capped", seats(5), json!({"model": {"session_anchors": ["hw"], "max_leases_per_consumer": 1}}));
    assert_eq!(checkout(&server, &client, &[("cliHwId", "a")], "Capped")["status"], json!("success"));
    expect("consumptionLimitExceed", &checkout(&server, &client, &[("cliHwId", "b")], "Capped"));

    lic("Bound", seats(1), hw_model());
    let lease = checkout(&server, &client, &[("cliHwId", "a")], "Bound")["leaseId"].clone();
    expect("leaseIdNotMatching", &heartbeat(&server, &client, &[("cliHwId", "other")], &lease));
    expect("leaseIdNotFound", &heartbeat(&server, &client, &[], &json!("not-a-lease-id")));
    expect("leaseIdNotFound", &heartbeat(&server, &client, &[], &json!("d82cde79-da02-4e24-861c-ed3bf96a4fed")));

    lic("Anchored", seats(1), hw_model());
    expect("licenseAnchorMissing", &checkout(&server, &client, &[], "Anchored"));
    lic("Named", seats(1), json!({"model": {"named_seats": true}}));
    expect("licenseAssignmentMissing", &checkout(&server, &client, &[], "Named"));
    let reserved = lic("Reserved", seats(1), json!({}));
    let colleague = server.admin_ok(
        "POST",
        "/admin/consumers",
        Some(json!({"name": "colleague", "kind": "user", "licensees": [client.licensee]})),
        201,
    );
    let assignment = json!({"consumer": colleague["id"]});
    let path = format!("/admin/licenses/{}/assignments", reserved["id"].as_str().unwrap());
    server.admin_ok("POST", &path, Some(assignment), 201);
    expect("licenseAssignmentDenied", &checkout(&server, &client, &[], "Reserved"));

    lic("Blocked", seats(1), json!({"model": {"ip_rules": {"blocked": ["127.0.0.0/8"]}}}));
    expect("clientIpAddressBlocked", &checkout(&server, &client, &[], "Blocked"));
    lic("Versioned", seats(1), json!({"model": {"version_range": {"min": "2.0.0"}}}));
    expect("unallowedClientVersion", &checkout(&server, &client, &[("cliVersion", "1.0")], "Versioned"));
    let overridden = json!([{"productName": "Versioned", "clientVersion": "2.1"}]);
    let reply = post(&server, "/licensing/actions/checkout", &client.headers(&[("cliVersion", "1.0")]), &overridden);
    assert_eq!(
        token(&server, &reply)["clientClaims"]["cliVersion"],
        json!("2.1"),
        "clientVersion overrides the header"
    );

    let revoked = lic("Revoked", seats(1), json!({}));
    let lease = checkout(&server, &client, &[], "Revoked")["leaseId"].clone();
    server.admin_ok("POST", &format!("/admin/licenses/{}/revoke", revoked["id"].as_str().unwrap()), None, 200);
    expect("licenseRevoked", &checkout(&server, &client, &[], "Revoked"));
    expect("licenseRevoked", &heartbeat(&server, &client, &[], &lease));

    lic("Slow", seats(1), json!({"model": {"heartbeat_interval_s": 3600}}));
    let lease = checkout(&server, &client, &[], "Slow")["leaseId"].clone();
    expect("heartbeatTooEarly", &heartbeat(&server, &client, &[], &lease));

    // The engine's list of every code (engine/tests/decisions.rs holds it to the SPEC), but the
    // geolocation codes, which need a GeoIP database (tests/geolocation.rs has them on the wire).
    let geolocation = [ErrorCode::ClientGeolocationBlocked, ErrorCode::UnresolvedGeolocation];
    let every_code_but_overloaded: BTreeSet<&str> = ErrorCode::ALL
        .iter()
        .filter(|c| **c != ErrorCode::Overloaded && !geolocation.contains(c))
        .map(|c| c.as_str())
        .collect();
    assert_eq!(seen, every_code_but_overloaded);
}

fn error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["code"], json!(code), "{body}");
    assert!(body["error"].is_string() && body["description"].is_string(), "{body}");
}

#[test]
fn a_request_that_fails_as_a_whole_answers_json_with_its_status_and_code() {
    let server = Server::start();
    let client = Client::of(&server, "Acme");
    let other = Client::of(&server, "Other");
    license(&server, &client.licensee, "ThreeDee", seats(1), json!({}));
    let one = json!([{"productName": "ThreeDee"}]);
    let checkout_path = "/licensing/actions/checkout";
    let json_type = ("Content-Type", "application/json".to_owned());

    error(&post(&server, checkout_path, std::slice::from_ref(&json_type), &one), 401, "notAuthorized");
    let wrong_key = [("Authorization", "Bearer lh_wrong".to_owned()), json_type.clone()];
    error(&post(&server, checkout_path, &wrong_key, &one), 401, "notAuthorized");
    let mut as_other = client.headers(&[]);
    as_other[1].1 = other.id.clone();
    error(&post(&server, checkout_path, &as_other, &one), 403, "notAuthorized");
    let mut not_an_id = client.headers(&[]);
    not_an_id[1].1 = "me".into();
    error(&post(&server, checkout_path, &not_an_id, &one), 400, "badRequest");

    error(&post(&server, checkout_path, &client.headers(&[]), &json!({"productName": "ThreeDee"})), 400, "badRequest");
    error(&post(&server, checkout_path, &client.headers(&[]), &json!([{"qty": 1}])), 400, "badRequest");
    let too_many = Value::Array(vec![json!({"productName": "ThreeDee"}); 65]);
    error(&post(&server, checkout_path, &client.headers(&[]), &too_many), 400, "badRequest");
    let headers = client.headers(&[]);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    error(&request(server.addr, "POST", checkout_path, &headers, Some(b"[{")), 400, "badRequest");
    let huge = vec![b' '; 70 * 1024];
    error(&request(server.addr, "POST", checkout_path, &headers, Some(&huge)), 413, "payloadTooLarge");
    let mut as_text = client.headers(&[]);
    as_text[2].1 = "text/plain".into();
    error(&post(&server, checkout_path, &as_text, &one), 415, "unsupportedMediaType");
    error(&post(&server, checkout_path, &client.headers(&[("cliPublicKey", "not-a-key")]), &one), 400, "badRequest");
    let twice = client.headers(&[("cliHwId", "a"), ("CLIHWID", "b")]);
    error(&post(&server, checkout_path, &twice, &one), 400, "badRequest");

    error(
        &post(&server, "/licensing/actions/checkout/short", std::slice::from_ref(&json_type), &one),
        400,
        "badRequest",
    );
    let unknown_key = "/licensing/actions/checkout/NO-SUCH-KEY-0000000000";
    error(&post(&server, unknown_key, std::slice::from_ref(&json_type), &one), 404, "noLicenseFound");
    error(&get(&server, checkout_path, &[]), 405, "methodNotAllowed");
    error(
        &post(&server, "/licensing/actions/describe-license-key", std::slice::from_ref(&json_type), &one),
        405,
        "methodNotAllowed",
    );
    error(&post(&server, "/licensing/actions/teleport", &client.headers(&[]), &one), 404, "notFound");
    error(&get(&server, "/licensing/actions/describe-license-key/extra", &[]), 404, "notFound");

    let bearer = format!("Bearer {}", client.api_key);
    let auth = [("Authorization", bearer.as_str())];
    let licenses = "/licensing/actions/describe-license-consumer-licenses";
    error(&get(&server, licenses, &[]), 401, "notAuthorized");
    error(&get(&server, licenses, &auth), 400, "badRequest");
    error(&get(&server, &format!("{licenses}?licenseeId={}&color=red", client.licensee), &auth), 400, "badRequest");
    error(&get(&server, &format!("{licenses}?licenseeId={}", other.licensee), &auth), 403, "notAuthorized");
    error(
        &get(&server, &format!("{licenses}?licenseeId={}&licenseConsumerId={}", client.licensee, other.id), &auth),
        403,
        "notAuthorized",
    );
    let with = |extra: (&'static str, &'static str)| [auth[0], extra];
    let mine = format!("{licenses}?licenseeId={}", client.licensee);
    error(&get(&server, &mine, &with(("limit", "0"))), 400, "badRequest");
    error(&get(&server, &mine, &with(("offset", "-1"))), 400, "badRequest");
    error(&get(&server, &mine, &with(("order-by", "shoeSize"))), 400, "badRequest");
    error(&get(&server, &mine, &with(("order-asc", "maybe"))), 400, "badRequest");
    let wrong_filter = format!("{mine}&filterField=color&filterValue=red");
    error(&get(&server, &wrong_filter, &auth), 400, "badRequest");
    let unknown_license = format!(
        "/licensing/actions/describe-license-client-bindings?licenseeId={}&licenseId=d82cde79-da02-4e24-861c-ed3bf96a4fed",
        client.licensee
    );
    error(&get(&server, &unknown_license, &auth), 404, "notFound");
    error(&get(&server, "/licensing/actions/describe-license-key", &[]), 400, "badRequest");
    error(
        &get(&server, "/licensing/actions/describe-license-key?licenseKey=NO-SUCH-KEY-0000000000", &[]),
        404,
        "noLicenseFound",
    );
}

#[test]
fn a_license_key_checks_out_without_an_api_key_and_only_the_key_renews_its_leases() {
    let server = Server::start();
    let client = Client::of(&server, "Acme");
    let terms = license(
        &server,
        &client.licensee,
        "ThreeDee",
        seats(2),
        json!({"license_key": true, "model": {"session_anchors": ["hw"]}}),
    );
    let key = terms["license_key"].as_str().expect("a generated key").to_owned();
    let json_type = ("Content-Type", "application/json".to_owned());
    let on = |hw: &str| vec![json_type.clone(), ("cliHwId", hw.to_owned())];
    let with_key = |action: &str| format!("/licensing/actions/{action}/{key}");

    let granted =
        token(&server, &post(&server, &with_key("checkout"), &on("m1"), &json!([{"productName": "ThreeDee"}])));
    assert_eq!(granted["status"], json!("success"));
    assert_eq!(granted["licenseId"], terms["id"]);
    assert_eq!(granted["licenseConsumerId"], terms["id"], "a key checks out as itself");
    let lease = granted["leaseId"].clone();

    let other_license = json!([{"productName": "ThreeDee", "licenseId": "d82cde79-da02-4e24-861c-ed3bf96a4fed"}]);
    let refused = token(&server, &post(&server, &with_key("checkout"), &on("m2"), &other_license));
    assert_eq!(error_code(&refused), "noLicenseFound");

    // A lease taken with the key is the key's: the consumer's API key does not renew it.
    assert_eq!(error_code(&heartbeat(&server, &client, &[("cliHwId", "m1")], &lease)), "leaseIdNotFound");
    let renewed = token(&server, &post(&server, &with_key("heartbeat"), &on("m1"), &json!([{"leaseId": lease}])));
    assert_eq!(renewed["oldLeaseId"], lease);

    // And a lease the consumer took with its API key is not the key's.
    let own = checkout(&server, &client, &[("cliHwId", "m9")], "ThreeDee")["leaseId"].clone();
    let not_keys = token(&server, &post(&server, &with_key("heartbeat"), &on("m9"), &json!([{"leaseId": own}])));
    assert_eq!(error_code(&not_keys), "leaseIdNotFound");

    let released = post(
        &server,
        &with_key("release"),
        std::slice::from_ref(&json_type),
        &json!([{"leaseId": renewed["leaseId"]}]),
    );
    assert_eq!(released.status, 200);
    assert_eq!(released.json()[0]["released"], json!(true));
    assert_eq!(released.json()[0]["licenseConsumerId"], terms["id"]);
}

#[test]
fn activating_a_license_key_revokes_the_other_keys_of_the_same_customer_and_product_for_good() {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let server = Server::start_in(dir.path(), &[], true);
    let client = Client::of(&server, "Acme");
    let other = Client::of(&server, "Other");
    product(&server, "ThreeDee", json!([]));
    product(&server, "TwoDee", json!([]));
    let keyed = json!({"license_key": true});
    let older = keyed_license(&server, &client.licensee, "ThreeDee", seats(1), keyed.clone());
    let unkeyed = keyed_license(&server, &client.licensee, "ThreeDee", seats(1), json!({}));
    let other_product = keyed_license(&server, &client.licensee, "TwoDee", seats(1), keyed.clone());
    let other_customer = keyed_license(&server, &other.licensee, "ThreeDee", seats(1), keyed.clone());
    let newer = keyed_license(&server, &client.licensee, "ThreeDee", seats(1), keyed.clone());
    let key_of = |l: &Value| l["license_key"].as_str().expect("a key").to_owned();
    let json_type = [("Content-Type", "application/json".to_owned())];
    let activate = |server: &Server, l: &Value| {
        let path = format!("/licensing/actions/checkout/{}", key_of(l));
        token(server, &post(server, &path, &json_type, &json!([{"productName": "ThreeDee"}])))
    };

    assert_eq!(activate(&server, &newer)["status"], json!("success"));
    let revoked = license_status(&server, &older["id"]);
    assert_eq!(revoked["status"], json!("revoked"));
    assert!(revoked["revoked"]["reason"].as_str().is_some_and(|r| r.contains(newer["id"].as_str().unwrap())));
    for untouched in [&unkeyed, &other_product, &other_customer, &newer] {
        assert_eq!(license_status(&server, &untouched["id"])["status"], json!("active"), "{untouched}");
    }

    // The revocation is journaled like any other: it survives a kill -9.
    server.kill();
    let server = Server::start_in(dir.path(), &[], true);
    assert_eq!(license_status(&server, &older["id"])["status"], json!("revoked"));
    assert_eq!(error_code(&activate(&server, &older)), "licenseRevoked");
    let described =
        get(&server, &format!("/licensing/actions/describe-license-key?licenseKey={}", key_of(&older)), &[]);
    assert_eq!(described.json()["licenses"], json!([]), "a revoked key grants nothing");
    assert_eq!(activate(&server, &newer)["status"], json!("success"), "the newer key stays in use");
}

#[test]
fn only_a_keys_first_activation_revokes_its_siblings_older_or_newer_and_a_key_that_opts_out_revokes_nothing() {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let server = Server::start_in(dir.path(), &[], true);
    let client = Client::of(&server, "Acme");
    product(&server, "ThreeDee", json!([]));
    let keyed = json!({"license_key": true, "model": {"session_anchors": ["hw"]}});
    let mut opting_out = keyed.clone();
    opting_out["revokes_sibling_keys"] = json!(false);
    let quiet = keyed_license(&server, &client.licensee, "ThreeDee", seats(1), opting_out);
    let older = keyed_license(&server, &client.licensee, "ThreeDee", seats(1), keyed.clone());
    let newer = keyed_license(&server, &client.licensee, "ThreeDee", seats(1), keyed.clone());
    let json_type = [("Content-Type", "application/json".to_owned())];
    let activate = |server: &Server, l: &Value| {
        let path = format!("/licensing/actions/checkout/{}", l["license_key"].as_str().unwrap());
        let mut headers = json_type.to_vec();
        headers.push(("cliHwId", "m".to_owned()));
        token(server, &post(server, &path, &headers, &json!([{"productName": "ThreeDee"}])))
    };
    let status = |server: &Server, l: &Value| license_status(server, &l["id"])["status"].clone();

    assert_eq!(activate(&server, &quiet)["status"], json!("success"));
    assert_eq!((status(&server, &older), status(&server, &newer)), (json!("active"), json!("active")), "opted out");
    // The older key's first activation revokes a newer key as well as an older one.
    assert_eq!(activate(&server, &older)["status"], json!("success"));
    assert_eq!((status(&server, &quiet), status(&server, &newer)), (json!("revoked"), json!("revoked")));
    let activated_at = license_status(&server, &older["id"])["key_activated_at"].clone();
    assert!(activated_at.is_string(), "the first activation is remembered: {activated_at}");

    // A key issued later is left alone by the earlier key's later uses, also after a kill -9.
    let later = keyed_license(&server, &client.licensee, "ThreeDee", seats(1), keyed);
    assert_eq!(activate(&server, &older)["status"], json!("success"));
    server.kill();
    let server = Server::start_in(dir.path(), &[], true);
    assert_eq!(license_status(&server, &older["id"])["key_activated_at"], activated_at);
    assert_eq!(activate(&server, &older)["status"], json!("success"));
    assert_eq!(status(&server, &later), json!("active"));
    // Its own first activation revokes the earlier key.
    assert_eq!(activate(&server, &later)["status"], json!("success"));
    assert_eq!(status(&server, &older), json!("revoked"));
}

#[test]
fn metered_use_records_use_beyond_the_credit_and_ends_with_the_final_quantity() {
    let server = Server::start();
    let client = Client::of(&server, "Acme");
    let metered = json!({"dimension": "USE_COUNT", "qty": 10, "enforcement": "METERED"});
    let terms = license(&server, &client.licensee, "Meter", metered, json!({"license_key": true}));
    license(&server, &client.licensee, "Strict", seats(1), json!({}));
    let start = json!([{"productName": "Meter", "qtyDimension": "USE_COUNT", "qty": 50}, {"productName": "Strict"}]);

    let reply = post(&server, "/licensing/actions/start-metered-use", &client.headers(&[]), &start);
    let answers = tokens(&server, &reply);
    assert_eq!(answers[0]["status"], json!("success"));
    assert_eq!((&answers[0]["qtyEnforcementType"], &answers[0]["qtyPrealloc"]), (&json!("METERED"), &json!(50)));
    assert_eq!(error_code(&answers[1]), "noLicenseFound", "an enforced license is not for metered use");

    let lease = answers[0]["leaseId"].clone();
    let used = json!([{"leaseId": lease, "usedQty": 30}]);
    let beat = token(&server, &post(&server, "/licensing/actions/heartbeat-metered-use", &client.headers(&[]), &used));
    assert_eq!((&beat["oldLeaseId"], &beat["qtyVerified"]), (&lease, &json!(30)));
    let more = json!([{"leaseId": beat["leaseId"], "usedQty": 5, "treatAsIncrementalQty": true}]);
    let beat = token(&server, &post(&server, "/licensing/actions/heartbeat-metered-use", &client.headers(&[]), &more));
    assert_eq!(beat["qtyVerified"], json!(35));

    let end = json!([{"leaseId": beat["leaseId"], "finalUsedQty": 500}]);
    let ended = post(&server, "/licensing/actions/end-metered-use", &client.headers(&[]), &end);
    assert_eq!(ended.status, 200);
    let result = &ended.json()[0];
    assert_eq!((&result["released"], &result["finalUsedQty"]), (&json!(true), &json!(500)));
    assert!(result.get("remainingQty").is_none(), "a metered credit has no remainder");
    assert_eq!(license_status(&server, &terms["id"])["usage"]["used_qty"], json!(500));

    // The same through the license key.
    let key = terms["license_key"].as_str().unwrap();
    let json_type = [("Content-Type", "application/json".to_owned())];
    let path = |action: &str| format!("/licensing/actions/{action}/{key}");
    let started =
        token(&server, &post(&server, &path("start-metered-use"), &json_type, &json!([{"productName": "Meter"}])));
    assert_eq!(started["licenseConsumerId"], terms["id"]);
    let beat = token(
        &server,
        &post(
            &server,
            &path("heartbeat-metered-use"),
            &json_type,
            &json!([{"leaseId": started["leaseId"], "usedQty": 2}]),
        ),
    );
    assert_eq!(beat["qtyVerified"], json!(2));
    let ended =
        post(&server, &path("end-metered-use"), &json_type, &json!([{"leaseId": beat["leaseId"], "finalUsedQty": 4}]));
    assert_eq!(ended.json()[0]["finalUsedQty"], json!(4));
    assert_eq!(license_status(&server, &terms["id"])["usage"]["used_qty"], json!(504));
}

#[test]
fn a_client_public_key_turns_every_token_into_a_jwe() {
    let server = Server::start();
    let client = Client::of(&server, "Acme");
    license(&server, &client.licensee, "ThreeDee", seats(1), json!({}));
    let claims = [("cliPublicKey", CLIENT_PUBLIC_KEY)];
    let body = json!([{"productName": "ThreeDee"}, {"productName": "Nothing"}]);
    let reply = post(&server, "/licensing/actions/checkout", &client.headers(&claims), &body);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answers = reply.json();
    let answers = answers.as_array().expect("an array");
    assert_eq!(answers.len(), 2, "grants and denials alike");
    for jwe in answers {
        let jwe = jwe.as_str().expect("a compact JWE");
        assert_eq!(jwe.split('.').count(), 5);
        let header = jwt_header(jwe);
        assert_eq!(
            (&header["alg"], &header["enc"], &header["cty"]),
            (&json!("RSA-OAEP"), &json!("A256CBC-HS512"), &json!("JWT"))
        );
    }
}

#[test]
fn the_describe_reads_answer_from_the_directory_and_the_live_leases() {
    let server = Server::start();
    let client = Client::of(&server, "Acme");
    let person = server.admin_ok("POST", "/admin/licensees", Some(json!({"name": "Ann", "kind": "person"})), 201);
    let both = server.admin_ok(
        "POST",
        "/admin/consumers",
        Some(json!({"name": "ann", "kind": "user", "licensees": [client.licensee, person["id"]]})),
        201,
    );
    let ann = Client {
        licensee: client.licensee.clone(),
        id: both["id"].as_str().unwrap().to_owned(),
        api_key: both["api_key"].as_str().unwrap().to_owned(),
    };
    product(
        &server,
        "ThreeDee",
        json!([{"name": "render"}, {"name": "simulate"}, {"name": "pricing", "display_only": true}]),
    );
    product(&server, "TwoDee", json!([{"name": "draw"}]));
    let three = keyed_license(
        &server,
        &client.licensee,
        "ThreeDee",
        seats(5),
        json!({"license_key": true, "model": {"session_anchors": ["hw"]}}),
    );
    keyed_license(&server, &client.licensee, "TwoDee", seats(5), json!({"valid_from": "2099-01-01T00:00:00Z"}));
    let gone = keyed_license(&server, &client.licensee, "TwoDee", seats(5), json!({}));
    server.admin_ok("POST", &format!("/admin/licenses/{}/revoke", gone["id"].as_str().unwrap()), None, 200);
    let bearer = format!("Bearer {}", ann.api_key);
    let auth = [("Authorization", bearer.as_str())];
    let read = |path: &str, headers: &[(&str, &str)]| {
        let reply = get(&server, &format!("/licensing/actions/{path}"), headers);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        reply
    };

    let licensees = read(&format!("describe-license-consumer-licensees?licenseConsumerId={}", ann.id), &auth).json();
    let mut kinds: Vec<(String, String)> = licensees
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["name"].as_str().unwrap().to_owned(), l["type"].as_str().unwrap().to_owned()))
        .collect();
    kinds.sort();
    assert_eq!(kinds, [("Acme".to_owned(), "ORGANIZATION".to_owned()), ("Ann".to_owned(), "PERSON".to_owned())]);

    let listed = read(&format!("describe-license-consumer-licenses?licenseeId={}", client.licensee), &auth).json();
    let names: Vec<&str> =
        listed["licenses"].as_array().unwrap().iter().map(|l| l["productName"].as_str().unwrap()).collect();
    assert_eq!(names, ["ThreeDee", "TwoDee"], "the revoked license is not listed");
    let first = &listed["licenses"][0];
    assert_eq!(first["id"], three["id"]);
    assert_eq!(
        (&first["qtyDimension"], &first["qty"], &first["featureNames"]),
        (&json!("SEATS"), &json!(5), &json!("render,simulate"))
    );
    assert_eq!(first["features"], json!([{"feature": "render"}, {"feature": "simulate"}]));
    assert!(first.get("licenseKey").is_none(), "keys only with metadata");
    let with_key =
        read(&format!("describe-license-consumer-licenses?licenseeId={}&withMetadata=true", client.licensee), &auth)
            .json();
    assert_eq!(with_key["licenses"][0]["licenseKey"]["licenseKey"], three["license_key"]);
    let filtered =
        read(&format!("describe-license-consumer-licenses?licenseeId={}&filterValue=twodee", client.licensee), &auth)
            .json();
    assert_eq!(filtered["licenses"].as_array().unwrap().len(), 1);
    let page = [auth[0], ("limit", "1"), ("offset", "1"), ("order-by", "productName"), ("order-asc", "false")];
    let paged = read(&format!("describe-license-consumer-licenses?licenseeId={}", client.licensee), &page).json();
    assert_eq!(paged["licenses"][0]["productName"], json!("ThreeDee"), "descending, second entry");

    let mine = checkout(&server, &ann, &[("cliHwId", "ann-pc"), ("cliHostName", "pc1")], "ThreeDee");
    checkout(&server, &client, &[("cliHwId", "acme-pc")], "ThreeDee");
    let bindings =
        read(&format!("describe-license-consumer-client-bindings?licenseeId={}", client.licensee), &auth).json();
    assert_eq!(bindings["allClientBindingsIncluded"], json!(true));
    let binding = &bindings["clientBindings"][0];
    assert_eq!(bindings["clientBindings"].as_array().unwrap().len(), 1, "only the caller's own");
    assert_eq!(
        (&binding["leaseId"], &binding["cliHwId"], &binding["cliHostName"]),
        (&mine["leaseId"], &json!("ann-pc"), &json!("pc1"))
    );
    assert_eq!(
        (&binding["licenseConsumer"]["id"], &binding["licenseConsumer"]["type"]),
        (&json!(ann.id), &json!("PERSON"))
    );
    assert_eq!(binding["license"]["id"], three["id"]);

    let of_license = format!(
        "describe-license-client-bindings?licenseeId={}&licenseId={}",
        client.licensee,
        three["id"].as_str().unwrap()
    );
    let all = read(&of_license, &auth).json();
    assert_eq!(all["clientBindings"].as_array().unwrap().len(), 2, "who uses the license, on which devices");
    let capped = read(&of_license, &[auth[0], ("limit", "1")]).json();
    assert_eq!(
        (capped["clientBindings"].as_array().unwrap().len(), &capped["allClientBindingsIncluded"]),
        (1, &json!(false))
    );
    let only_mine = read(&format!("{of_license}&licenseConsumerId={}", ann.id), &auth).json();
    assert_eq!(only_mine["clientBindings"].as_array().unwrap().len(), 1);

    let found = read(
        &format!(
            "find-license-client-binding?licenseeId={}&clientBindingId={}",
            client.licensee,
            mine["leaseId"].as_str().unwrap()
        ),
        &auth,
    )
    .json();
    assert_eq!(found["clientBindings"][0]["leaseId"], mine["leaseId"]);
    let missing = read(
        &format!(
            "find-license-client-binding?licenseeId={}&clientBindingId=d82cde79-da02-4e24-861c-ed3bf96a4fed",
            client.licensee
        ),
        &auth,
    )
    .json();
    assert_eq!(missing["clientBindings"], json!([]));

    let flags = read(&format!("describe-as-feature-flags?licenseeId={}", client.licensee), &auth).json();
    assert_eq!(
        flags["featureFlags"],
        json!([{"productName": "ThreeDee", "features": ["render", "simulate"]}]),
        "only licenses in force; display-only features never"
    );
    let jwt =
        read(&format!("describe-as-feature-flags-jwt?licenseeId={}&filterValue=THREEDEE", client.licensee), &auth);
    assert_eq!(jwt.content_type(), "application/jwt");
    let claims = verifier(&server).verify(&jwt.text(), SystemClock.now()).expect("a signed feature-flags token");
    assert_eq!(claims["featureFlags"], json!({"ThreeDee": ["render", "simulate"]}));
    assert_eq!((&claims["licenseeId"], &claims["licenseConsumerId"]), (&json!(client.licensee), &json!(ann.id)));

    let key = three["license_key"].as_str().unwrap();
    let by_key = read(&format!("describe-license-key?licenseKey={key}&withMetadata=false"), &[]).json();
    assert_eq!(by_key["licenses"][0]["id"], three["id"]);
    assert_eq!(by_key["licenses"][0]["licenseKey"]["licenseKey"], json!(key));
    let json_type = [("Content-Type", "application/json".to_owned()), ("cliHwId", "kiosk".to_owned())];
    let keyed = token(
        &server,
        &post(
            &server,
            &format!("/licensing/actions/checkout/{key}"),
            &json_type,
            &json!([{"productName": "ThreeDee"}]),
        ),
    );
    let key_bindings = read(
        &format!("describe-license-key-client-bindings?licenseKey={key}&licenseId={}", three["id"].as_str().unwrap()),
        &[],
    )
    .json();
    let key_bindings = key_bindings["clientBindings"].as_array().unwrap().clone();
    assert_eq!(key_bindings.len(), 1, "only the key's own leases");
    assert_eq!(
        (&key_bindings[0]["leaseId"], &key_bindings[0]["licenseConsumer"]["id"]),
        (&keyed["leaseId"], &three["id"])
    );
}
