//! The lifecycle routes of SPEC section 10 against a real server: licensee, consumer and product
//! edits, deletes with their 409 and `force` rules, the machines of a license listed and freed.
//! Each change reaches the next decision and the next token, bad input is 400 naming the field
//! and changes nothing, and everything survives a kill -9.

mod http_common;

use http_common::{jwt_payload, request, seats, Reply, Server};
use serde_json::{json, Value};

fn patch(server: &Server, path: &str, body: Value) -> Reply {
    server.admin("PATCH", path, Some(body))
}

fn granted(server: &Server, key: &str, query: &str) -> bool {
    let reply = server.authz(key, &format!("/authz/.txt?{query}"));
    assert_eq!(reply.status, 200, "{query}: {}", reply.text());
    reply.text() == "true"
}

/// Every bad body is 400 naming what is wrong, and `path` reads the same afterwards.
fn refused_unchanged(server: &Server, path: &str, bodies: &[(Value, &str)]) {
    let before = server.admin_ok("GET", path, None, 200);
    for (body, names) in bodies {
        let refused = patch(server, path, body.clone());
        assert_eq!(refused.status, 400, "{body} was accepted: {}", refused.text());
        let description = refused.json()["description"].as_str().unwrap_or_default().to_owned();
        assert!(description.contains(names), "{body}: the error does not name {names}: {description}");
    }
    assert_eq!(server.admin_ok("GET", path, None, 200), before, "a refused change changed {path}");
}

#[test]
fn licensee_and_consumer_edits_reach_the_next_request_and_survive_a_kill_9() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let server = Server::start_in(scratch.path(), &[], true);
    let (licensee, consumer, key) = server.party("Acme");
    let (other_licensee, _, _) = server.party("Other");
    server.license(&licensee, "Edited", seats(2), json!({"model": {"session_anchors": ["hw"]}}));
    let licensee_path = format!("/admin/licensees/{licensee}");
    let consumer_path = format!("/admin/consumers/{consumer}");

    let renamed = patch(&server, &licensee_path, json!({"name": "Acme Ltd", "external_id": "crm-42"}));
    assert_eq!(renamed.status, 200, "{}", renamed.text());
    assert_eq!((&renamed.json()["name"], &renamed.json()["external_id"]), (&json!("Acme Ltd"), &json!("crm-42")));
    let cleared = patch(&server, &licensee_path, json!({"external_id": null})).json();
    assert_eq!((&cleared["name"], &cleared["external_id"]), (&json!("Acme Ltd"), &Value::Null));
    refused_unchanged(
        &server,
        &licensee_path,
        &[(json!({"kind": "person"}), "kind"), (json!({"name": 7}), "name"), (json!({"name": ""}), "name")],
    );

    // A disabled consumer is refused from its next request, renewals included, and its live
    // lease is not revoked; enabled again, it renews.
    let lease = server.authz(&key, "/authz/.json?Edited&hw=a").json()["jti"].as_str().expect("a lease").to_owned();
    let disabled = patch(&server, &consumer_path, json!({"disabled": true, "email": "cad@acme.test"}));
    assert_eq!(disabled.status, 200, "{}", disabled.text());
    assert_eq!(disabled.json()["disabled"], json!(true));
    let refused = server.authz(&key, &format!("/authz/.json?Edited&hw=a&leaseId={lease}"));
    assert_eq!((refused.status, refused.json()["code"].as_str()), (401, Some("notAuthorized")));
    let leases =
        server.admin_ok("GET", &format!("/admin/licenses/{}/leases", license_of(&server, &licensee)), None, 200);
    assert_eq!(leases["items"][0]["id"], json!(lease), "disabling revokes no live lease");
    refused_unchanged(
        &server,
        &consumer_path,
        &[
            (json!({"licensees": []}), "licensees"),
            (json!({"disabled": "yes"}), "disabled"),
            (json!({"api_key": "chosen"}), "api_key"),
        ],
    );
    let unknown = patch(&server, &consumer_path, json!({"licensees": ["00000000-0000-0000-0000-000000000000"]}));
    assert_eq!(unknown.status, 404, "{}", unknown.text());

    // Moved to another licensee, the consumer no longer sees the first one's licenses.
    let moved = patch(&server, &consumer_path, json!({"licensees": [other_licensee]})).json();
    assert_eq!(moved["licensees"], json!([other_licensee]));

    server.kill();
    let server = Server::start_in(scratch.path(), &[], true);
    let licensee_now = server.admin_ok("GET", &licensee_path, None, 200);
    assert_eq!((&licensee_now["name"], &licensee_now["external_id"]), (&json!("Acme Ltd"), &Value::Null));
    let consumer_now = server.admin_ok("GET", &consumer_path, None, 200);
    assert_eq!(consumer_now["disabled"], json!(true));
    assert_eq!(consumer_now["email"], json!("cad@acme.test"));
    assert_eq!(server.authz(&key, "/authz/.txt?Edited&hw=a").status, 401, "still disabled after the restart");

    patch(&server, &consumer_path, json!({"disabled": false, "licensees": [licensee]}));
    let renewed = server.authz(&key, &format!("/authz/.json?Edited&hw=a&leaseId={lease}")).json();
    assert_eq!(renewed["Edited"], json!(true), "enabled again, it renews: {renewed}");
}

/// A Scale checkout of "Suite": its token.
fn scale_token(server: &Server, key: &str) -> String {
    let auth = format!("Bearer {key}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let body = json!([{"productName": "Suite"}]).to_string();
    let reply = request(server.addr, "POST", "/licensing/actions/checkout", &headers, Some(body.as_bytes()));
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()[0].as_str().expect("a token").to_owned()
}

fn license_of(server: &Server, licensee: &str) -> String {
    let page = server.admin_ok("GET", &format!("/admin/licenses?licensee={licensee}"), None, 200);
    page["items"][0]["id"].as_str().expect("a license").to_owned()
}

#[test]
fn product_tiers_and_license_feature_overrides_reach_decisions_tokens_and_the_audit() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let server = Server::start_in(scratch.path(), &[], true);
    let (licensee, _, key) = server.party("Acme");
    let product = json!({
        "name": "Suite",
        "features": [{"name": "render"}, {"name": "export"}],
        "tiers": [{"name": "Basic", "features": ["render"]}],
    });
    server.admin_ok("POST", "/admin/products", Some(product), 201);
    let body = json!({"licensee": licensee, "product": "Suite", "tier": "Basic", "credit": seats(5)});
    let license = server.admin_ok("POST", "/admin/licenses", Some(body), 201)["id"].as_str().unwrap().to_owned();
    let license_path = format!("/admin/licenses/{license}");
    assert!(granted(&server, &key, "render"));
    assert!(!granted(&server, &key, "export"));
    let old_token = scale_token(&server, &key);
    assert_eq!(jwt_payload(&old_token)["features"], json!(["render"]));

    // The tier grows: the license has the new feature at once.
    let tier = json!({"tiers": [{"name": "Basic", "features": ["render", "export"]}], "features": [{"name": "share"}]});
    let changed = patch(&server, "/admin/products/Suite", tier);
    assert_eq!(changed.status, 200, "{}", changed.text());
    assert_eq!(server.admin_ok("GET", &license_path, None, 200)["features"], json!(["export", "render"]));
    assert!(granted(&server, &key, "export"));
    let audit = server.admin_ok("POST", "/admin/tokens/audit", Some(json!({"token": old_token})), 200);
    assert_eq!(audit["consistent"], json!(false), "{audit}");
    assert!(audit["drift"].as_array().unwrap().iter().any(|d| d["claim"] == json!("features")), "{audit}");

    // Per-license overrides on top of the tier.
    let overridden = patch(&server, &license_path, json!({"features": {"add": ["share"], "remove": ["render"]}}));
    assert_eq!(overridden.status, 200, "{}", overridden.text());
    let overridden = overridden.json();
    assert_eq!(overridden["features"], json!(["export", "share"]));
    assert_eq!(overridden["feature_overrides"], json!({"add": ["share"], "remove": ["render"]}));
    assert!(!granted(&server, &key, "render"));
    assert!(granted(&server, &key, "share"));
    let token = scale_token(&server, &key);
    assert_eq!(jwt_payload(&token)["features"], json!(["export", "share"]));
    let audit = server.admin_ok("POST", "/admin/tokens/audit", Some(json!({"token": token})), 200);
    assert_eq!(audit["consistent"], json!(true), "a fresh token matches: {audit}");

    refused_unchanged(
        &server,
        &license_path,
        &[(json!({"features": {"add": ["teleport"]}}), "teleport"), (json!({"features": {"swap": []}}), "swap")],
    );
    let bad_tier = patch(&server, "/admin/products/Suite", json!({"tiers": [{"name": "Pro", "features": ["warp"]}]}));
    assert_eq!(bad_tier.status, 400, "{}", bad_tier.text());
    assert_eq!(patch(&server, "/admin/products/NoSuch", json!({"features": []})).status, 404);

    server.kill();
    let server = Server::start_in(scratch.path(), &[], true);
    let recovered = server.admin_ok("GET", &license_path, None, 200);
    assert_eq!(recovered["features"], json!(["export", "share"]));
    let suite = server.admin_ok("GET", "/admin/products/Suite", None, 200);
    assert_eq!(suite["tiers"][0]["features"], json!(["render", "export"]));
    assert!(granted(&server, &key, "share"));
    assert!(!granted(&server, &key, "render"));
}

#[test]
fn deletes_refuse_what_is_in_use_force_ends_it_and_the_ids_stay_gone_after_a_kill_9() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let server = Server::start_in(scratch.path(), &[], true);
    let (licensee, consumer, key) = server.party("Acme");
    let license = server.license(&licensee, "Doomed", seats(2), json!({"model": {"session_anchors": ["hw"]}}));
    assert!(granted(&server, &key, "Doomed&hw=a"));

    let in_use = server.admin("DELETE", &format!("/admin/licensees/{licensee}"), None);
    assert_eq!((in_use.status, in_use.json()["code"].as_str()), (409, Some("conflict")), "{}", in_use.text());
    let live = server.admin("DELETE", &format!("/admin/licenses/{license}"), None);
    assert_eq!(live.status, 409, "a license with a live lease: {}", live.text());
    assert_eq!(server.admin("DELETE", &format!("/admin/licenses/{license}?force=maybe"), None).status, 400);
    assert_eq!(server.admin("DELETE", &format!("/admin/licenses/{license}?force=true"), None).status, 204);
    assert_eq!(server.admin("GET", &format!("/admin/licenses/{license}"), None).status, 404);
    assert!(!granted(&server, &key, "Doomed&hw=b"), "a deleted license grants nothing");
    assert_eq!(server.admin("DELETE", &format!("/admin/licenses/{license}"), None).status, 404);

    assert_eq!(server.admin("DELETE", &format!("/admin/consumers/{consumer}"), None).status, 204);
    assert_eq!(server.authz(&key, "/authz/.txt?Doomed").status, 401, "a deleted consumer's key is refused");
    assert_eq!(server.admin("DELETE", &format!("/admin/licensees/{licensee}"), None).status, 204);

    server.kill();
    let server = Server::start_in(scratch.path(), &[], true);
    for path in [
        format!("/admin/licensees/{licensee}"),
        format!("/admin/consumers/{consumer}"),
        format!("/admin/licenses/{license}"),
    ] {
        assert_eq!(server.admin("GET", &path, None).status, 404, "{path} came back");
    }
    assert_eq!(server.authz(&key, "/authz/.txt?Doomed").status, 401);
    let listed = server.admin_ok("GET", "/admin/licenses", None, 200);
    assert_eq!(listed["items"], json!([]));
}

#[test]
fn a_node_locked_license_moves_to_a_new_machine_once_the_old_one_is_freed() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let server = Server::start_in(scratch.path(), &[], true);
    let (licensee, _, key) = server.party("Acme");
    let model = json!({"model": {"session_anchors": ["hw"], "max_hardware": 1}});
    let license = server.license(&licensee, "Locked", seats(5), model);
    let machines_path = format!("/admin/licenses/{license}/machines");
    assert!(granted(&server, &key, "Locked&hw=old-laptop"));
    assert!(!granted(&server, &key, "Locked&hw=new-laptop"), "one machine only");

    let machines = server.admin_ok("GET", &machines_path, None, 200);
    assert_eq!(machines["items"].as_array().map(Vec::len), Some(1), "{machines}");
    let old = &machines["items"][0];
    assert_eq!((&old["hw"], &old["live_leases"]), (&json!("old-laptop"), &json!(1)));
    assert!(old["first_seen_at"].is_string() && old["last_seen_at"].is_string());

    assert_eq!(server.admin("DELETE", &format!("{machines_path}/unknown-box"), None).status, 404);
    assert_eq!(server.admin("DELETE", &format!("{machines_path}/old-laptop"), None).status, 204);
    let leases = server.admin_ok("GET", &format!("/admin/licenses/{license}/leases"), None, 200);
    assert_eq!(leases["items"], json!([]), "the freed machine's lease ended");
    assert!(granted(&server, &key, "Locked&hw=new-laptop"), "the license moved");
    // A hardware id with a slash travels percent-encoded.
    patch(&server, &format!("/admin/licenses/{license}"), json!({"model": {"max_hardware": 2}}));
    assert!(granted(&server, &key, "Locked&hw=rack%2F7"));
    assert_eq!(server.admin("DELETE", &format!("{machines_path}/rack%2F7"), None).status, 204);

    server.kill();
    let server = Server::start_in(scratch.path(), &[], true);
    let machines = server.admin_ok("GET", &machines_path, None, 200);
    let names: Vec<&str> = machines["items"].as_array().unwrap().iter().map(|m| m["hw"].as_str().unwrap()).collect();
    assert_eq!(names, ["new-laptop"]);
    assert!(granted(&server, &key, "Locked&hw=new-laptop"));
}

#[test]
fn an_open_tcp_connection_is_refused_from_the_request_after_its_key_is_rotated_or_its_consumer_disabled() {
    use leasehold::client::{Auth, Client, ClientError, Consume, FailureCode};
    let server = Server::start();
    let (licensee, consumer, key) = server.party("Acme");
    server.license(&licensee, "Wired", seats(5), json!({}));
    let (_, other_consumer, other_key) = server.party("Other");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let connect =
        |key: &str| rt.block_on(Client::connect(server.tcp_addr, Auth::ApiKey(key.to_owned()))).expect("connects");
    let refused = |client: &Client| match rt.block_on(client.check(Consume::new("Wired"))) {
        Err(ClientError::Failure(failure)) => failure.code == FailureCode::BadCredentials,
        Ok(_) => false,
        Err(other) => panic!("a failure or an answer: {other}"),
    };
    let rotated_client = connect(&key);
    let other_client = connect(&other_key);
    assert!(!refused(&rotated_client) && !refused(&other_client));

    server.admin_ok("POST", &format!("/admin/consumers/{consumer}/api-key"), None, 200);
    assert!(refused(&rotated_client), "the old key still works on its open connection");
    assert!(!refused(&other_client), "another consumer's connection is untouched");

    patch(&server, &format!("/admin/consumers/{other_consumer}"), json!({"disabled": true}));
    assert!(refused(&other_client), "a disabled consumer's connection still works");
}
