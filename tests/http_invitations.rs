//! Invitations to a group (SPEC section 12) on the wire: accepted by an existing consumer with
//! its API key or by a new user (whose key is answered once), declined, single use, expiring,
//! made by an orgadmin for its own groups only, and still valid across a kill -9.

mod http_common;

use http_common::smtp::SmtpServer;
use http_common::{request, seats, Reply, Server};
use serde_json::{json, Value};
use std::time::Duration;

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

fn answer(server: &Server, token: &str, verb: &str, key: Option<&str>, body: Option<Value>) -> Reply {
    let bearer = key.map(|k| format!("Bearer {k}"));
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer));
    }
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let body = body.map(|b| b.to_string());
    request(server.addr, "POST", &format!("/invitations/{token}/{verb}"), &headers, body.as_deref().map(str::as_bytes))
}

fn invite(server: &Server, group: &str, email: &str, extra: Value) -> String {
    let mut body = json!({"email": email});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let created = server.admin_ok("POST", &format!("/admin/groups/{group}/invitations"), Some(body), 201);
    assert!(created["expires_at"].is_string(), "{created}");
    created["token"].as_str().expect("a token, shown once").to_owned()
}

#[test]
fn invitations_add_existing_and_new_users_once_until_they_expire_even_across_a_kill() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let server = Server::start_in(scratch.path(), &[], true);
    let (licensee, member, member_key) = server.party("Acme");
    let group = id(&server.admin_ok(
        "POST",
        &format!("/admin/licensees/{licensee}/groups"),
        Some(json!({"name": "designers", "kind": "user"})),
        201,
    ));
    let entitlement = id(&server.admin_ok(
        "POST",
        &format!("/admin/licensees/{licensee}/entitlements"),
        Some(json!({"name": "cad", "groups": [group]})),
        201,
    ));
    server.license(&licensee, "Cad", seats(5), json!({"entitlement": entitlement}));
    assert_eq!(server.authz(&member_key, "/authz/.txt?Cad").text(), "false", "not yet in the group");

    // An existing consumer accepts with its own key; the token then works no more.
    let first = invite(&server, &group, "ada@acme.example", json!({}));
    let (_, outsider, outsider_key) = server.party("Elsewhere");
    let by_member = answer(&server, &first, "accept", Some(&member_key), None);
    assert_eq!(by_member.status, 200, "{}", by_member.text());
    assert_eq!(by_member.json()["consumer"]["id"], json!(member));
    assert_eq!(server.authz(&member_key, "/authz/.txt?Cad").text(), "true");
    let again = answer(&server, &first, "accept", Some(&outsider_key), None);
    assert_eq!(again.status, 409, "{}", again.text());

    // Tokens made before a kill -9 still work after it, and answers stay answered.
    let for_new_user = invite(&server, &group, "new@acme.example", json!({}));
    let for_outsider = invite(&server, &group, "bob@elsewhere.example", json!({}));
    let to_decline = invite(&server, &group, "no@acme.example", json!({}));
    server.kill();
    let server = Server::start_in(scratch.path(), &[], true);
    assert_eq!(answer(&server, &first, "accept", Some(&outsider_key), None).status, 409);

    // A new user: created in the group's licensee and group, its key answered once.
    let created = answer(&server, &for_new_user, "accept", None, Some(json!({"name": "Newcomer"})));
    assert_eq!(created.status, 201, "{}", created.text());
    let created = created.json();
    assert_eq!(created["consumer"]["licensees"], json!([licensee]));
    assert_eq!(created["consumer"]["email"], json!("new@acme.example"));
    let new_key = created["api_key"].as_str().expect("the new consumer's key");
    assert_eq!(server.authz(new_key, "/authz/.txt?Cad").text(), "true");

    // A consumer of another licensee joins the group and so the licensee.
    let joined = answer(&server, &for_outsider, "accept", Some(&outsider_key), None);
    assert_eq!(joined.status, 200, "{}", joined.text());
    assert_eq!(joined.json()["consumer"]["id"], json!(outsider));
    assert_eq!(server.authz(&outsider_key, "/authz/.txt?Cad").text(), "true");

    // Declined is final; an unknown token is 404; a bad key is 401; a body is needed without a key.
    assert_eq!(answer(&server, &to_decline, "decline", None, None).status, 204);
    assert_eq!(answer(&server, &to_decline, "accept", None, Some(json!({"name": "x"}))).status, 409);
    assert_eq!(answer(&server, "lhi_unknown", "accept", None, Some(json!({"name": "x"}))).status, 404);
    let fresh = invite(&server, &group, "later@acme.example", json!({}));
    assert_eq!(answer(&server, &fresh, "accept", Some("lh_wrong"), None).status, 401);
    assert_eq!(answer(&server, &fresh, "accept", None, None).status, 400);

    // It expires.
    let short = invite(&server, &group, "late@acme.example", json!({"expires_in_s": 1}));
    std::thread::sleep(Duration::from_millis(1_200));
    let late = answer(&server, &short, "accept", None, Some(json!({"name": "Late"})));
    assert_eq!((late.status, late.json()["code"].clone()), (410, json!("expired")), "{}", late.text());

    // Bad invitations change nothing.
    for bad in [json!({"email": "not an address"}), json!({"email": "a@b.c", "expires_in_s": 0}), json!({})] {
        let reply = server.admin("POST", &format!("/admin/groups/{group}/invitations"), Some(bad.clone()));
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text());
    }

    // An orgadmin invites to its own groups only.
    let (_, orgadmin) = {
        let body = json!({"name": "it", "role": "orgadmin", "licensee": licensee});
        let created = server.admin_ok("POST", "/admin/credentials", Some(body), 201);
        (id(&created), created["token"].as_str().expect("a token").to_owned())
    };
    let path = format!("/admin/groups/{group}/invitations");
    assert_eq!(server.admin_as(&orgadmin, "POST", &path, Some(json!({"email": "x@acme.example"}))).status, 201);
    let (other_licensee, _, _) = server.party("Third");
    let other_group = id(&server.admin_ok(
        "POST",
        &format!("/admin/licensees/{other_licensee}/groups"),
        Some(json!({"name": "g", "kind": "user"})),
        201,
    ));
    let foreign = format!("/admin/groups/{other_group}/invitations");
    assert_eq!(server.admin_as(&orgadmin, "POST", &foreign, Some(json!({"email": "x@acme.example"}))).status, 404);
}

#[test]
fn an_invitation_is_emailed_with_its_token_when_smtp_is_configured() {
    let smtp = SmtpServer::start();
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let config = scratch.path().join("leasehold.toml");
    std::fs::write(&config, smtp.config()).expect("the configuration is written");
    let server = Server::start_in(&scratch.path().join("data"), &["--config", config.to_str().unwrap()], true);
    let (licensee, _, _) = server.party("Acme");
    let group = id(&server.admin_ok(
        "POST",
        &format!("/admin/licensees/{licensee}/groups"),
        Some(json!({"name": "designers", "kind": "user"})),
        201,
    ));
    let created = server.admin_ok(
        "POST",
        &format!("/admin/groups/{group}/invitations"),
        Some(json!({"email": "ada@acme.example"})),
        201,
    );
    assert_eq!(created["emailed"], json!(true), "{created}");
    let token = created["token"].as_str().unwrap();
    let message = smtp.next_message();
    assert!(message.contains("To: ada@acme.example"), "{message}");
    assert!(message.contains("From: Licensing <licenses@vendor.example>"), "{message}");
    assert!(message.contains(&format!("/invitations/{token}/accept")), "{message}");
    let accepted = answer(&server, token, "accept", None, Some(json!({"name": "Ada"})));
    assert_eq!(accepted.status, 201, "the e-mailed token works: {}", accepted.text());

    // A server without SMTP says it e-mailed nothing.
    drop(smtp);
    let plain = Server::start();
    let (licensee, _, _) = plain.party("Other");
    let group = id(&plain.admin_ok(
        "POST",
        &format!("/admin/licensees/{licensee}/groups"),
        Some(json!({"name": "g", "kind": "user"})),
        201,
    ));
    let created = plain.admin_ok(
        "POST",
        &format!("/admin/groups/{group}/invitations"),
        Some(json!({"email": "a@b.example"})),
        201,
    );
    assert_eq!(created["emailed"], json!(false));
}
