//! `PATCH /admin/licenses/{id}` against a real server (SPEC section 10): the changed terms reach
//! the next decision and the next token, fewer seats revoke no live lease, only the fields given
//! change, bad bodies are 400 naming the field and change nothing, and every change survives a
//! kill -9.

mod http_common;

use http_common::{seats, Server};
use serde_json::{json, Value};

fn seat(server: &Server, key: &str, hw: &str) -> bool {
    let reply = server.authz(key, &format!("/authz/.txt?Patched&hw={hw}"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text() == "true"
}

fn patch(server: &Server, license: &str, body: Value) -> http_common::Reply {
    server.admin("PATCH", &format!("/admin/licenses/{license}"), Some(body))
}

#[test]
fn a_patched_license_decides_and_signs_with_its_new_terms_and_keeps_them_across_a_kill_9() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let server = Server::start_in(scratch.path(), &[], true);
    let (licensee, _, key) = server.party("Acme");
    let license = server.license(&licensee, "Patched", seats(1), json!({"model": {"session_anchors": ["hw"]}}));
    assert!(seat(&server, &key, "a"));
    assert!(!seat(&server, &key, "b"), "one seat only");

    // More seats: the second session is granted at once.
    let patched = patch(&server, &license, json!({"credit": {"qty": 2}}));
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(patched.json()["credit"]["qty"], 2);
    assert!(seat(&server, &key, "b"));

    // Fewer seats than live sessions: nothing is revoked, new sessions wait.
    let patched = patch(&server, &license, json!({"credit": {"qty": 1, "dimension": "SEATS"}}));
    assert_eq!(patched.status, 200, "{}", patched.text());
    let leases = server.admin_ok("GET", &format!("/admin/licenses/{license}/leases"), None, 200);
    assert_eq!(leases["items"].as_array().map(Vec::len), Some(2), "a live lease was revoked");
    assert!(!seat(&server, &key, "c"));

    // Only the model fields given change; properties and validity reach the next token.
    let before = server.admin_ok("GET", &format!("/admin/licenses/{license}"), None, 200);
    let body = json!({
        "model": {"max_leases_per_consumer": 5},
        "properties": {"edition": "gold"},
        "valid_until": "2099-01-01T00:00:00Z",
    });
    let after = patch(&server, &license, body).json();
    assert_eq!(after["model"]["max_leases_per_consumer"], 5);
    assert_eq!(after["model"]["lease_time_online_s"], before["model"]["lease_time_online_s"]);
    assert_eq!(after["model"]["session_anchors"], json!(["hw"]));
    let claims = server.authz(&key, "/authz/.json?Patched&hw=a").json();
    assert_eq!(claims["licenseProperties"], json!({"edition": "gold"}));
    assert_eq!(claims["ibe"], 4_070_908_800u64, "the token's validity is the new one");
    let perpetual = patch(&server, &license, json!({"valid_until": null})).json();
    assert_eq!(perpetual["valid_until"], Value::Null);

    // Bad bodies are refused, naming the field, and change nothing.
    let unchanged = server.admin_ok("GET", &format!("/admin/licenses/{license}"), None, 200);
    for (body, names) in [
        (json!({"seats": 3}), "seats"),
        (json!({"credit": {"qty": "three"}}), "qty"),
        (json!({"credit": {"dimension": "USE_COUNT"}}), "dimension"),
        (json!({"credit": {"qty": 0}}), "credit"),
        (json!({"valid_from": "2100-01-01T00:00:00Z", "valid_until": "2099-01-01T00:00:00Z"}), "valid"),
        (json!({"model": {"lease_time_online_s": "long"}}), "model"),
        (json!({"model": {"warp_speed": 9}}), "warp_speed"),
        (json!({"tier": "Platinum"}), "tier"),
    ] {
        let refused = patch(&server, &license, body.clone());
        assert_eq!(refused.status, 400, "{body} was accepted: {}", refused.text());
        let description = refused.json()["description"].as_str().unwrap_or_default().to_owned();
        assert!(description.contains(names), "{body}: the error does not name {names}: {description}");
    }
    let unknown = patch(&server, "00000000-0000-0000-0000-000000000000", json!({"credit": {"qty": 2}}));
    assert_eq!(unknown.status, 404);
    assert_eq!(server.admin_ok("GET", &format!("/admin/licenses/{license}"), None, 200), unchanged);

    // Every change was journaled before it was answered.
    server.kill();
    let restarted = Server::start_in(scratch.path(), &[], true);
    let recovered = restarted.admin_ok("GET", &format!("/admin/licenses/{license}"), None, 200);
    assert_eq!(recovered["credit"]["qty"], 1);
    assert_eq!(recovered["model"]["max_leases_per_consumer"], 5);
    assert_eq!(recovered["properties"], json!({"edition": "gold"}));
    assert_eq!(recovered["valid_until"], Value::Null);
}
