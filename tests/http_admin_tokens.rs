//! The token and key actions of the admin API over real HTTP (SPEC section 9): offline tokens
//! verified against the served JWKS, token audit and regeneration against the current state,
//! signing key rotation that survives a restart, and their 400 / 401 / 404 / 409 answers.

mod http_common;

use http_common::{jwt_header, jwt_payload, now, request, seats, Server};
use leasehold::tokens::jws::b64url;
use serde_json::{json, Value};

/// A licensee with a consumer, and a 2-seat hardware-anchored license of "ThreeDee" (render,
/// simulate) whose versions must be 1.x and whose offline leases last at most a day.
fn setup(server: &Server) -> (String, String, String) {
    let (licensee, consumer, key) = server.party("Acme");
    server.admin_ok(
        "POST",
        "/admin/products",
        Some(json!({"name": "ThreeDee", "features": [{"name": "render"}, {"name": "simulate"}],
                    "tiers": [{"name": "Pro", "features": ["render", "simulate"]}]})),
        201,
    );
    let license = server.admin_ok(
        "POST",
        "/admin/licenses",
        Some(json!({"licensee": licensee, "product": "ThreeDee", "tier": "Pro", "credit": seats(2),
                    "properties": {"lang": "en"},
                    "model": {"session_anchors": ["hw"], "lease_time_offline_s": 86_400,
                              "version_range": {"min": "1.0.0", "max": "1.9.9"}}})),
        201,
    );
    (license["id"].as_str().unwrap().to_owned(), consumer, key)
}

fn audit(server: &Server, token: &str) -> Value {
    server.admin_ok("POST", "/admin/tokens/audit", Some(json!({"token": token})), 200)
}

fn drifted(report: &Value) -> Vec<String> {
    report["drift"].as_array().unwrap().iter().map(|d| d["claim"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn an_offline_token_verifies_against_the_jwks_for_its_hardware_version_and_duration() {
    let server = Server::start();
    let (license, consumer, _) = setup(&server);
    let path = format!("/admin/licenses/{license}/offline-token");
    let issued = server.admin_ok(
        "POST",
        &path,
        Some(json!({"consumer": consumer, "hw": "usb-laptop-7", "version": "1.4.0", "duration_s": 3600})),
        200,
    );
    assert_eq!(issued["hw"], json!("usb-laptop-7"));
    let token = issued["token"].as_str().unwrap();
    let claims = server.verifier().verify_for_hardware(token, now(), "usb-laptop-7").expect("a genuine token");
    assert_eq!(claims["ThreeDee"], json!(true));
    assert_eq!(claims["ver"], json!("1.4.0"));
    assert_eq!(claims["lic"], json!(license));
    assert_eq!(claims["sub"], json!(consumer));
    assert_eq!(claims["jti"], issued["lease_id"]);
    assert_eq!(claims["licenseProperties"], json!({"lang": "en"}));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
    assert!(server.verifier().verify_for_hardware(token, now(), "other-machine").is_err());

    let leases = server.admin_ok("GET", &format!("/admin/licenses/{license}/leases"), None, 200);
    let lease = &leases["items"][0];
    assert_eq!(
        (&lease["id"], &lease["mode"], &lease["hw"]),
        (&issued["lease_id"], &json!("offline"), &json!("usb-laptop-7"))
    );
    assert_eq!(lease["expires_at"], issued["expires_at"]);

    // No hardware id: one is generated; a longer duration than the model allows is capped.
    let generated = server.admin_ok(
        "POST",
        &path,
        Some(json!({"consumer": consumer, "version": "1.0.0", "duration_s": 864_000})),
        200,
    );
    let hw = generated["hw"].as_str().expect("a generated hardware id");
    let claims = server.verifier().verify_for_hardware(generated["token"].as_str().unwrap(), now(), hw).unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 86_400);

    // Both seats are taken now: the license refuses a third hardware id, with its code.
    let full = server.admin("POST", &path, Some(json!({"consumer": consumer, "hw": "third", "version": "1.0.0"})));
    assert_eq!(full.status, 409, "{}", full.text());
    assert!(["maxConcurrentSessionsExceed", "licenseQuotaExceeded"].contains(&full.json()["code"].as_str().unwrap()));
}

#[test]
fn offline_token_requests_that_cannot_be_served_are_refused_clearly() {
    let server = Server::start();
    let (license, consumer, _) = setup(&server);
    let path = format!("/admin/licenses/{license}/offline-token");
    let unknown = "d82cde79-da02-4e24-861c-ed3bf96a4fed";
    let cases = [
        (json!({"consumer": consumer, "hw": "h", "version": "2.0.0"}), 409, "unallowedClientVersion"),
        (json!({"consumer": unknown, "hw": "h", "version": "1.0.0"}), 404, "notFound"),
        (json!({"consumer": consumer, "hw": "h", "version": "1.0.0", "duration_s": 0}), 400, "badRequest"),
        (json!({"consumer": consumer, "hardware": "h"}), 400, "badRequest"),
        (json!({"consumer": consumer, "hw": ""}), 400, "badRequest"),
        (json!({"hw": "h"}), 400, "badRequest"),
    ];
    for (body, status, code) in cases {
        let reply = server.admin("POST", &path, Some(body.clone()));
        assert_eq!((reply.status, reply.json()["code"].as_str().unwrap()), (status, code), "{body}: {}", reply.text());
    }
    let reply =
        server.admin("POST", &format!("/admin/licenses/{unknown}/offline-token"), Some(json!({"consumer": consumer})));
    assert_eq!(reply.status, 404);
    let body = json!({"consumer": consumer}).to_string();
    let anonymous = request(server.addr, "POST", &path, &[("Content-Type", "application/json")], Some(body.as_bytes()));
    assert_eq!(anonymous.status, 401);
    let leases = server.admin_ok("GET", &format!("/admin/licenses/{license}/leases"), None, 200);
    assert_eq!(leases["items"], json!([]), "no refused request took a lease");
}

#[test]
fn an_audit_finds_drift_only_after_the_license_changes_and_a_regenerated_token_is_consistent() {
    let server = Server::start();
    let (license, _, key) = setup(&server);
    let token = server.authz(&key, "/authz/.jwt?render&hw=a&version=1.2.0").text();
    let report = audit(&server, &token);
    assert_eq!(report, json!({"consistent": true, "encrypted": false, "drift": []}));

    server.admin_ok("POST", &format!("/admin/licenses/{license}/deactivate"), None, 200);
    let report = audit(&server, &token);
    assert_eq!(report["consistent"], json!(false));
    let drift = report["drift"].as_array().unwrap();
    let code = drift.iter().find(|d| d["claim"] == json!("render_errorCode")).expect("the denial's code drifted");
    assert_eq!((&code["token"], &code["expected"]), (&Value::Null, &json!("licenseNotActive")));
    let item = drift.iter().find(|d| d["claim"] == json!("render")).expect("the grant claim drifted");
    assert_eq!((&item["token"], &item["expected"]), (&json!(true), &Value::Null));

    server.admin_ok("POST", &format!("/admin/licenses/{license}/reactivate"), None, 200);
    assert_eq!(audit(&server, &token)["consistent"], json!(true), "the same state again: no drift");

    server.admin_ok("POST", &format!("/admin/licenses/{license}/revoke"), Some(json!({"reason": "unpaid"})), 200);
    let report = audit(&server, &token);
    assert!(drifted(&report).contains(&"render_errorCode".to_owned()), "{report}");
    let regenerated = server.admin_ok("POST", "/admin/tokens/regenerate", Some(json!({"token": token})), 200);
    let regenerated = regenerated["token"].as_str().unwrap();
    assert_eq!(jwt_payload(regenerated)["render_errorCode"], json!("licenseRevoked"));
    assert_eq!(jwt_payload(regenerated)["jti"], jwt_payload(&token)["jti"], "it still names the lease");
    server.verifier().verify(regenerated, now()).expect("signed with a published key");
    assert_eq!(audit(&server, regenerated)["consistent"], json!(true));
}

#[test]
fn a_released_lease_drifts_and_regeneration_of_a_live_one_reproduces_it() {
    let server = Server::start();
    let (_, _, key) = setup(&server);
    let first = server.authz(&key, "/authz/.jwt?render&hw=a&version=1.2.0").text();
    let regenerated = server.admin_ok("POST", "/admin/tokens/regenerate", Some(json!({"token": first})), 200);
    let regenerated = regenerated["token"].as_str().unwrap();
    let (mut old, mut new) = (jwt_payload(&first), jwt_payload(regenerated));
    for claims in [&mut old, &mut new] {
        claims.as_object_mut().unwrap().remove("iat");
    }
    assert_eq!(old, new, "a token of the unchanged state says the same");

    let lease = jwt_payload(&first)["jti"].as_str().unwrap().to_owned();
    assert_eq!(server.authz(&key, &format!("/authz/.json?release&{lease}")).json()[&lease], json!(true));
    let report = audit(&server, &first);
    let code = report["drift"].as_array().unwrap().iter().find(|d| d["claim"] == json!("render_errorCode")).cloned();
    assert_eq!(code.map(|d| d["expected"].clone()), Some(json!("leaseIdNotFound")), "{report}");
}

#[test]
fn token_actions_refuse_what_they_cannot_read() {
    let server = Server::start();
    let (_, _, key) = setup(&server);
    for path in ["/admin/tokens/audit", "/admin/tokens/regenerate"] {
        for body in
            [json!({"token": "not-a-token"}), json!({"token": ""}), json!({"jwt": "x"}), json!({"token": "a.b.c"})]
        {
            let reply = server.admin("POST", path, Some(body.clone()));
            assert_eq!(reply.status, 400, "{path} {body}: {}", reply.text());
        }
        let denial = server.authz(&key, "/authz/.jwt?Nothing").text();
        assert_eq!(server.admin("POST", path, Some(json!({"token": denial}))).status, 400, "a denial names no license");
        let forged_claims = json!({"render": true, "jti": "d82cde79-da02-4e24-861c-ed3bf96a4fed",
                                   "lic": "d82cde79-da02-4e24-861c-ed3bf96a4fed"});
        let forged = format!("{}.{}.", b64url(br#"{"alg":"none"}"#), b64url(forged_claims.to_string().as_bytes()));
        assert_eq!(server.admin("POST", path, Some(json!({"token": forged}))).status, 404, "unknown license");
        let body = json!({"token": "a.b.c"}).to_string();
        let anonymous =
            request(server.addr, "POST", path, &[("Content-Type", "application/json")], Some(body.as_bytes()));
        assert_eq!(anonymous.status, 401);
    }
}

#[test]
fn a_rotated_key_signs_new_tokens_while_the_old_one_stays_published_across_a_restart() {
    let scratch = tempfile::tempdir().unwrap();
    let server = Server::start_in(scratch.path(), &[], true);
    let (_, _, key) = setup(&server);
    let before = server.authz(&key, "/authz/.jwt?render&hw=a&version=1.0.0").text();
    let old_kid = jwt_header(&before)["kid"].as_str().unwrap().to_owned();
    assert_eq!(server.kids(), vec![old_kid.clone()]);

    assert_eq!(server.admin("POST", "/admin/keys/rotate", Some(json!({"alg": "HS256"}))).status, 400);
    assert_eq!(server.admin("POST", "/admin/keys/rotate", Some(json!({"algorithm": "ES256"}))).status, 400);
    let anonymous = request(server.addr, "POST", "/admin/keys/rotate", &[("Authorization", "Bearer nope")], None);
    assert_eq!(anonymous.status, 401);
    assert_eq!(server.kids(), vec![old_kid.clone()], "refused rotations changed nothing");

    let rotated = server.admin_ok("POST", "/admin/keys/rotate", Some(json!({"alg": "ES256"})), 200);
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    assert_eq!(server.kids(), vec![new_kid.clone(), old_kid.clone()], "both published, the new one first");
    let after = server.authz(&key, "/authz/.jwt?render&hw=b&version=1.0.0").text();
    assert_eq!(jwt_header(&after)["kid"], json!(new_kid));
    assert_eq!(jwt_header(&after)["alg"], json!("ES256"));
    let verifier = server.verifier();
    verifier.verify(&before, now()).expect("the old token still verifies");
    verifier.verify(&after, now()).expect("the new token verifies");
    let configuration = request(server.addr, "GET", "/.well-known/license-configuration", &[], None).json();
    assert_eq!(configuration["signing_algorithms"], json!(["ES256", "RS256"]));

    assert!(server.terminate().success());
    let restarted = Server::start_in(scratch.path(), &[], true);
    assert_eq!(restarted.kids(), vec![new_kid.clone(), old_kid], "the rotation survived the restart");
    let again = restarted.authz(&key, "/authz/.jwt?render&hw=b&version=1.0.0").text();
    assert_eq!(jwt_header(&again)["kid"], json!(new_kid));
    // Without a body, a rotation keeps the current algorithm.
    let third = restarted.admin_ok("POST", "/admin/keys/rotate", None, 200);
    assert_eq!(third["alg"], json!("ES256"));
    assert_eq!(restarted.kids().len(), 3);
    let rotations = restarted.admin_ok("GET", "/admin/events?type=key.rotated", None, 200);
    let rotated_kids: Vec<&Value> =
        rotations["items"].as_array().unwrap().iter().map(|e| &e["subject"]["id"]).collect();
    assert_eq!(rotated_kids, [&json!(new_kid), &third["kid"]], "each rotation is an event");
}

#[test]
fn a_scale_token_is_audited_in_its_own_dialect() {
    let server = Server::start();
    let (license, _, key) = setup(&server);
    let auth = format!("Bearer {key}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
        ("cliHwId", "scale-hw"),
        ("cliVersion", "1.1.0"),
    ];
    let body = json!([{"productName": "ThreeDee"}]).to_string();
    let checkout = request(server.addr, "POST", "/licensing/actions/checkout", &headers, Some(body.as_bytes()));
    assert_eq!(checkout.status, 200, "{}", checkout.text());
    let token = checkout.json()[0].as_str().expect("a token").to_owned();
    assert_eq!(jwt_payload(&token)["status"], json!("success"));
    assert_eq!(audit(&server, &token), json!({"consistent": true, "encrypted": false, "drift": []}));

    server.admin_ok("POST", &format!("/admin/licenses/{license}/revoke"), None, 200);
    let report = audit(&server, &token);
    let status = report["drift"].as_array().unwrap().iter().find(|d| d["claim"] == json!("status")).cloned();
    assert_eq!(status.map(|d| (d["token"].clone(), d["expected"].clone())), Some((json!("success"), json!("error"))));
    let regenerated = server.admin_ok("POST", "/admin/tokens/regenerate", Some(json!({"token": token})), 200);
    let regenerated = regenerated["token"].as_str().unwrap();
    assert_eq!(jwt_payload(regenerated)["errorCode"], json!("licenseRevoked"));
    assert_eq!(audit(&server, regenerated)["consistent"], json!(true));
}
