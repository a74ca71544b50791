//! The admin API over real HTTP (SPEC section 9): creating and reading every resource, the
//! license actions (revoke, deactivate, reactivate, assignments, force release), and the JSON
//! errors: 400 bad body, 401 auth, 404 unknown id, 409 conflict.

mod http_common;

use http_common::{request, seats, Server, ADMIN};
use serde_json::json;

#[test]
fn the_admin_api_creates_reads_and_acts_on_every_resource() {
    let server = Server::start();
    let licensee =
        server.admin_ok("POST", "/admin/licensees", Some(json!({"name": "Acme", "kind": "organization"})), 201);
    assert_eq!(licensee["kind"], json!("organization"));
    let licensee_id = licensee["id"].as_str().unwrap().to_owned();
    assert_eq!(server.admin_ok("GET", &format!("/admin/licensees/{licensee_id}"), None, 200), licensee);

    let consumer = server.admin_ok(
        "POST",
        "/admin/consumers",
        Some(json!({"name": "ada", "kind": "user", "licensees": [licensee_id], "email": "ada@example.com"})),
        201,
    );
    let consumer_id = consumer["id"].as_str().unwrap().to_owned();
    let key = consumer["api_key"].as_str().expect("the API key is shown at creation").to_owned();
    let read = server.admin_ok("GET", &format!("/admin/consumers/{consumer_id}"), None, 200);
    assert!(read.get("api_key").is_none(), "the API key is shown only once");

    let product = json!({"name": "ThreeDee", "features": [{"name": "render", "display_only": false}, {"name": "simulate"}],
        "tiers": [{"name": "Basic", "features": ["render"]}, {"name": "Pro", "includes": "Basic", "features": ["simulate"]}]});
    server.admin_ok("POST", "/admin/products", Some(product), 201);
    assert_eq!(server.admin_ok("GET", "/admin/products/ThreeDee", None, 200)["tiers"][1]["name"], json!("Pro"));

    let license = server.admin_ok(
        "POST",
        "/admin/licenses",
        Some(json!({
            "licensee": licensee_id, "product": "ThreeDee", "tier": "Pro", "credit": seats(2),
            "valid_from": "2026-01-01T00:00:00Z", "valid_until": null, "license_key": true,
            "properties": {"lang": "en"},
            "model": {"lease_time_online_s": 600, "session_anchors": ["hw"], "version_range": {"min": "1.0.0", "max": "2.9.9"}}
        })),
        201,
    );
    let id = license["id"].as_str().unwrap().to_owned();
    assert_eq!(license["features"], json!(["render", "simulate"]));
    assert_eq!(license["valid_from"], json!("2026-01-01T00:00:00Z"));
    assert_eq!(license["status"], json!("active"));
    assert!(license["license_key"].as_str().is_some_and(|k| k.len() >= 16));
    assert_eq!(license["model"]["lease_time_online_s"], json!(600));

    assert_eq!(server.authz(&key, "/authz/.txt?simulate&hw=a&version=1.5").text(), "true");
    let read = server.admin_ok("GET", &format!("/admin/licenses/{id}"), None, 200);
    assert_eq!(read["usage"]["live_leases"], json!(1));
    assert_eq!(read["usage"]["remaining_qty"], json!(1));
    let leases = server.admin_ok("GET", &format!("/admin/licenses/{id}/leases"), None, 200);
    let lease = &leases["items"][0];
    assert_eq!(
        (&lease["consumer"], &lease["hw"], &lease["version"]),
        (&json!(consumer_id), &json!("a"), &json!("1.5"))
    );
    assert!(lease["expires_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    let lease_id = lease["id"].as_str().unwrap().to_owned();

    let released = server.admin_ok("DELETE", &format!("/admin/leases/{lease_id}"), None, 200);
    assert_eq!(released["lease_id"], json!(lease_id));
    assert_eq!(server.admin("DELETE", &format!("/admin/leases/{lease_id}"), None).status, 404);
    assert_eq!(server.admin_ok("GET", &format!("/admin/licenses/{id}"), None, 200)["usage"]["live_leases"], json!(0));

    let assigned = server.admin_ok(
        "POST",
        &format!("/admin/licenses/{id}/assignments"),
        Some(json!({"consumer": consumer_id})),
        201,
    );
    assert_eq!(assigned["consumer"], json!(consumer_id));
    server.admin_ok("DELETE", &format!("/admin/licenses/{id}/assignments/{consumer_id}"), None, 200);

    assert_eq!(
        server.admin_ok("POST", &format!("/admin/licenses/{id}/deactivate"), None, 200)["status"],
        json!("deactivated")
    );
    assert_eq!(server.authz(&key, "/authz/.txt?simulate&hw=a&version=1.5").text(), "false");
    assert_eq!(
        server.admin_ok("POST", &format!("/admin/licenses/{id}/reactivate"), None, 200)["status"],
        json!("active")
    );
    let revoked =
        server.admin_ok("POST", &format!("/admin/licenses/{id}/revoke"), Some(json!({"reason": "chargeback"})), 200);
    assert_eq!((&revoked["status"], &revoked["revoked"]["reason"]), (&json!("revoked"), &json!("chargeback")));
    let again = server.admin("POST", &format!("/admin/licenses/{id}/reactivate"), None);
    assert_eq!(again.status, 409);

    for listing in ["licensees", "consumers", "products", "licenses"] {
        let all = server.admin_ok("GET", &format!("/admin/{listing}"), None, 200);
        assert_eq!(all["items"].as_array().map(Vec::len), Some(1), "{listing}");
    }
}

#[test]
fn admin_errors_are_json_with_the_status_of_their_kind() {
    let server = Server::start();
    let no_token = request(server.addr, "GET", "/admin/licenses", &[], None);
    assert_eq!(no_token.status, 401);
    assert_eq!(no_token.header("www-authenticate"), Some("Bearer"));
    let wrong = request(server.addr, "GET", "/admin/licenses", &[("Authorization", "Bearer nope")], None);
    assert_eq!(wrong.status, 401);
    let body = wrong.json();
    assert!(body["error"].is_string() && body["code"].is_string() && body["description"].is_string());

    let unknown = "d82cde79-da02-4e24-861c-ed3bf96a4fed";
    for path in [
        format!("/admin/licenses/{unknown}"),
        format!("/admin/licenses/{unknown}/leases"),
        "/admin/licenses/not-a-uuid".into(),
        format!("/admin/licensees/{unknown}"),
        "/admin/products/Nope".into(),
        "/admin/widgets".into(),
    ] {
        let reply = server.admin("GET", &path, None);
        assert_eq!(reply.status, 404, "{path}: {}", reply.text());
        assert_eq!(reply.json()["code"], json!("notFound"));
    }
    assert_eq!(server.admin("POST", &format!("/admin/licenses/{unknown}/revoke"), None).status, 404);
    assert_eq!(server.admin("DELETE", &format!("/admin/leases/{unknown}"), None).status, 404);
    let missing_licensee = json!({"licensee": unknown, "product": "X", "credit": seats(1)});
    assert_eq!(server.admin("POST", "/admin/licenses", Some(missing_licensee)).status, 404);

    let (licensee, _, _) = server.party("Acme");
    for bad in [
        json!({"name": "Acme"}),
        json!({"name": "Acme", "kind": "robot"}),
        json!({"name": "Acme", "kind": "person", "colour": "red"}),
        json!({"name": "", "kind": "person"}),
        json!([1, 2]),
    ] {
        let reply = server.admin("POST", "/admin/licensees", Some(bad.clone()));
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text());
        assert_eq!(reply.json()["code"], json!("badRequest"));
    }
    server.admin_ok("POST", "/admin/products", Some(json!({"name": "P"})), 201);
    for bad in [
        json!({"licensee": licensee, "product": "P", "credit": seats(1), "valid_from": "yesterday"}),
        json!({"licensee": licensee, "product": "P", "credit": seats(0)}),
        json!({"licensee": licensee, "product": "P", "credit": seats(1), "model": {"lease_time_onlin_s": 5}}),
        json!({"licensee": licensee, "product": "P", "credit": {"dimension": "BEANS", "qty": 1}}),
        json!({"licensee": licensee, "product": "P", "credit": seats(1), "license_key": "short"}),
        json!({"licensee": "not-a-uuid", "product": "P", "credit": seats(1)}),
    ] {
        let reply = server.admin("POST", "/admin/licenses", Some(bad.clone()));
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text());
    }
    let duplicate = server.admin("POST", "/admin/products", Some(json!({"name": "P"})));
    assert_eq!(duplicate.status, 409);
    assert_eq!(duplicate.json()["code"], json!("conflict"));

    let auth = ("Authorization", format!("Bearer {ADMIN}"));
    let headers = [(auth.0, auth.1.as_str()), ("Content-Type", "text/plain")];
    let wrong_type = request(server.addr, "POST", "/admin/licensees", &headers, Some(b"{}"));
    assert_eq!(wrong_type.status, 415);
    let wrong_method = server.admin("PUT", "/admin/licensees", None);
    assert_eq!(wrong_method.status, 405);
}
