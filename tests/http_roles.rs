//! Credentials and roles of the admin API (SPEC section 12), on a live server.
//!
//! The role matrix is generated from the route table (`access::ADMIN_ROUTES`): every admin route
//! is called with no token, a wrong token, the admin token, and an `admin`, a `reader` and an
//! `orgadmin` credential, on objects of the orgadmin's licensee and of another one. A route
//! added to the table is checked here without a line of this file changing.

mod http_common;

use http_common::{seats, Reply, Server, ADMIN};
use leasehold_transports::http::admin::access::{is_admin_path, AdminRoute, ADMIN_ROUTES};
use leasehold_transports::http::routes::ROUTES;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// One licensee's objects, each a path can name.
struct Objects {
    licensee: String,
    consumer: String,
    license: String,
    lease: String,
    product: String,
    webhook: String,
    credential: String,
    group: String,
    entitlement: String,
    activation_batch: String,
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

/// A licensee with a consumer, a license with a live lease of that consumer, and, for the
/// paths that name them, a webhook, a reader credential and a batch of activation codes.
fn objects(server: &Server, tag: &str) -> Objects {
    let (licensee, consumer, key) = server.party(tag);
    let group = server.admin_ok(
        "POST",
        &format!("/admin/licensees/{licensee}/groups"),
        Some(json!({"name": tag, "kind": "user"})),
        201,
    );
    server.admin_ok("POST", &format!("/admin/groups/{}/members", id(&group)), Some(json!({"consumer": consumer})), 200);
    let entitlement = server.admin_ok(
        "POST",
        &format!("/admin/licensees/{licensee}/entitlements"),
        Some(json!({"name": tag, "groups": [id(&group)]})),
        201,
    );
    let product = format!("P-{tag}");
    let license = server.license(&licensee, &product, seats(5), json!({"entitlement": id(&entitlement)}));
    let lease = server.authz(&key, &format!("/authz/.json?{product}&hw=hw-{tag}")).json()["jti"]
        .as_str()
        .expect("a lease")
        .to_owned();
    let webhook = server.admin_ok(
        "POST",
        "/admin/webhooks",
        Some(json!({"url": "http://127.0.0.1:9/hook", "events": ["license.*"]})),
        201,
    );
    let credential = server.admin_ok("POST", "/admin/credentials", Some(json!({"name": tag, "role": "reader"})), 201);
    let batch = json!({"product": product, "credit": seats(1), "count": 1});
    let batch = server.admin_ok("POST", "/admin/activation-codes", Some(batch), 201);
    Objects {
        licensee,
        consumer,
        license,
        lease,
        product,
        webhook: id(&webhook),
        credential: id(&credential),
        group: id(&group),
        entitlement: id(&entitlement),
        activation_batch: batch["batch"].as_str().expect("a batch").to_owned(),
    }
}

/// `route`'s path with its ids naming `objects`.
fn path(route: &AdminRoute, objects: &Objects, tag: &str) -> String {
    let parts: Vec<&str> = route.path.split('/').collect();
    let mut filled = Vec::new();
    for (at, part) in parts.iter().enumerate() {
        let value = match (parts[at.saturating_sub(1)], *part) {
            (_, p) if !p.starts_with('{') => p.to_owned(),
            ("licensees", _) => objects.licensee.clone(),
            ("consumers" | "assignments" | "members", _) => objects.consumer.clone(),
            ("groups", _) => objects.group.clone(),
            ("entitlements", _) => objects.entitlement.clone(),
            ("licenses" | "license-keys", _) => objects.license.clone(),
            ("leases", _) => objects.lease.clone(),
            ("products", _) => objects.product.clone(),
            ("webhooks", _) => objects.webhook.clone(),
            ("credentials", _) => objects.credential.clone(),
            ("activation-codes", _) => objects.activation_batch.clone(),
            ("machines", _) => format!("hw-{tag}"),
            ("deliveries", _) => "1".to_owned(),
            (before, p) => panic!("no test value for {p} after {before} in {}", route.path),
        };
        filled.push(value);
    }
    let query = match route.path {
        "/admin/usage" => "?from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z&granularity=month",
        _ => "",
    };
    filled.join("/") + query
}

/// A body of the shape the route takes, for `objects`' licensee (enough to pass or fail on its
/// merits: the matrix is about who may call, not about what is sent).
fn body(route: &AdminRoute, objects: &Objects) -> Option<Value> {
    match (route.method, route.path) {
        ("POST", "/admin/consumers") => {
            Some(json!({"name": "matrix", "kind": "user", "licensees": [objects.licensee]}))
        }
        ("POST", "/admin/licensees") => Some(json!({"name": "matrix", "kind": "person"})),
        ("POST", "/admin/licenses/{id}/assignments" | "/admin/groups/{id}/members") => {
            Some(json!({"consumer": objects.consumer}))
        }
        ("POST", "/admin/entitlements/{id}/licenses") => Some(json!({"license": objects.license})),
        ("POST", "/admin/groups/{id}/invitations") => Some(json!({"email": "new@example.com"})),
        ("POST", "/admin/licensees/{id}/groups") => Some(json!({"name": "matrix", "kind": "device"})),
        ("POST", "/admin/licensees/{id}/entitlements") => Some(json!({"name": "matrix", "groups": []})),
        ("PATCH", "/admin/consumers/{id}") => Some(json!({"name": "renamed"})),
        ("GET" | "DELETE", _) => None,
        _ => Some(json!({})),
    }
}

fn credential(server: &Server, name: &str, role: &str, licensee: Option<&str>) -> (String, String) {
    let mut body = json!({"name": name, "role": role});
    if let Some(licensee) = licensee {
        body["licensee"] = json!(licensee);
    }
    let created = server.admin_ok("POST", "/admin/credentials", Some(body), 201);
    assert_eq!(created["role"], json!(role));
    (id(&created), created["token"].as_str().expect("a token shown once").to_owned())
}

fn last_event(server: &Server) -> Value {
    let mut page = server.admin_ok("GET", "/admin/events?limit=1000", None, 200);
    loop {
        match page["next_cursor"].as_str() {
            Some(next) => page = server.admin_ok("GET", &format!("/admin/events?limit=1000&cursor={next}"), None, 200),
            None => return page["items"].as_array().and_then(|i| i.last()).cloned().unwrap_or(Value::Null),
        }
    }
}

fn call(server: &Server, token: &str, route: &AdminRoute, objects: &Objects, tag: &str) -> Reply {
    server.admin_as(token, route.method, &path(route, objects, tag), body(route, objects))
}

#[test]
fn the_route_table_has_every_admin_route_of_the_router() {
    let router: BTreeSet<(&str, &str)> =
        ROUTES.iter().filter(|(_, p)| is_admin_path(p)).map(|(m, p)| (*m, *p)).collect();
    let table: BTreeSet<(&str, &str)> = ADMIN_ROUTES.iter().map(|r| (r.method, r.path)).collect();
    assert_eq!(router, table, "routes::ROUTES and access::ADMIN_ROUTES list different admin routes");
    assert_eq!(table.len(), ADMIN_ROUTES.len(), "a route is in the table twice");

    // SPEC section 12's orgadmin: its licensee, consumers (keys included), licenses, leases,
    // machines, seat assignments, groups, memberships, entitlements, usage and events; nothing
    // that is the vendor's.
    let orgadmin: BTreeSet<(&str, &str)> =
        ADMIN_ROUTES.iter().filter(|r| r.orgadmin).map(|r| (r.method, r.path)).collect();
    let spec: BTreeSet<(&str, &str)> = [
        ("GET", "/admin/licensees"),
        ("GET", "/admin/licensees/{id}"),
        ("GET", "/admin/consumers"),
        ("POST", "/admin/consumers"),
        ("GET", "/admin/consumers/{id}"),
        ("PATCH", "/admin/consumers/{id}"),
        ("DELETE", "/admin/consumers/{id}"),
        ("POST", "/admin/consumers/{id}/api-key"),
        ("GET", "/admin/licenses"),
        ("GET", "/admin/licenses/{id}"),
        ("GET", "/admin/licenses/{id}/leases"),
        ("GET", "/admin/licenses/{id}/machines"),
        ("DELETE", "/admin/licenses/{id}/machines/{hw}"),
        ("POST", "/admin/licenses/{id}/assignments"),
        ("DELETE", "/admin/licenses/{id}/assignments/{consumer}"),
        ("DELETE", "/admin/leases/{lease_id}"),
        ("GET", "/admin/licensees/{id}/groups"),
        ("POST", "/admin/licensees/{id}/groups"),
        ("GET", "/admin/groups/{id}"),
        ("DELETE", "/admin/groups/{id}"),
        ("POST", "/admin/groups/{id}/members"),
        ("DELETE", "/admin/groups/{id}/members/{consumer}"),
        ("POST", "/admin/groups/{id}/invitations"),
        ("GET", "/admin/licensees/{id}/entitlements"),
        ("POST", "/admin/licensees/{id}/entitlements"),
        ("GET", "/admin/entitlements/{id}"),
        ("PATCH", "/admin/entitlements/{id}"),
        ("DELETE", "/admin/entitlements/{id}"),
        ("POST", "/admin/entitlements/{id}/licenses"),
        ("DELETE", "/admin/entitlements/{id}/licenses/{license}"),
        ("GET", "/admin/events"),
        ("GET", "/admin/usage"),
    ]
    .into_iter()
    .collect();
    assert_eq!(orgadmin, spec);
}

#[test]
fn every_route_answers_each_role_as_the_table_says() {
    let server = Server::start();
    let own = objects(&server, "own");
    let other = objects(&server, "other");
    let (_, admin) = credential(&server, "vendor", "admin", None);
    let (_, reader) = credential(&server, "auditor", "reader", None);
    let (_, orgadmin) = credential(&server, "it-dept", "orgadmin", Some(&own.licensee));

    // Every refusal first, on the shared objects: none may change anything.
    let before = last_event(&server);
    for route in ADMIN_ROUTES {
        let what = format!("{} {}", route.method, route.path);
        for token in ["", "lhc_not-a-credential", "test-admin-token-012345678"] {
            let reply = call(&server, token, route, &own, "own");
            assert_eq!(reply.status, 401, "{what} with token {token:?}: {}", reply.text());
            assert_eq!(reply.json()["code"], json!("notAuthorized"), "{what}");
        }
        if route.method != "GET" {
            let reply = call(&server, &reader, route, &own, "own");
            assert_eq!((reply.status, reply.json()["code"].clone()), (403, json!("forbidden")), "reader: {what}");
        }
        let names_objects = route.path.contains('{');
        if !route.orgadmin {
            for (objects, tag) in [(&own, "own"), (&other, "other")] {
                let reply = call(&server, &orgadmin, route, objects, tag);
                assert_eq!(reply.status, 403, "orgadmin: {what} on {tag}: {}", reply.text());
            }
        } else if names_objects {
            let reply = call(&server, &orgadmin, route, &other, "other");
            assert_eq!((reply.status, reply.json()["code"].clone()), (404, json!("notFound")), "orgadmin: {what}");
        }
    }
    assert_eq!(last_event(&server), before, "a refused call changed something");

    // Then every allowed call, each on objects of its own, for it may delete them.
    let mut n = 0;
    for route in ADMIN_ROUTES {
        let what = format!("{} {}", route.method, route.path);
        let mut allowed: Vec<(&str, &str)> = vec![("admin token", ADMIN), ("admin credential", admin.as_str())];
        if route.method == "GET" {
            allowed.push(("reader", reader.as_str()));
        }
        let mut answered = Vec::new();
        for (role, token) in allowed {
            n += 1;
            let tag = format!("a{n}");
            let objects = objects(&server, &tag);
            let reply = call(&server, token, route, &objects, &tag);
            assert!(![401, 403].contains(&reply.status), "{role}: {what}: {} {}", reply.status, reply.text());
            if route.method == "GET" {
                assert!(reply.status < 300, "{role}: {what} on objects that exist: {}", reply.text());
            }
            answered.push(reply.status);
        }
        if route.orgadmin {
            // On its own licensee's objects, an orgadmin is answered as the admin is.
            n += 1;
            let tag = format!("o{n}");
            let objects = objects(&server, &tag);
            let (_, scoped) = credential(&server, &tag, "orgadmin", Some(&objects.licensee));
            let reply = call(&server, &scoped, route, &objects, &tag);
            assert_eq!(reply.status, answered[0], "orgadmin: {what} on its own objects: {}", reply.text());
        }
    }
}

#[test]
fn an_orgadmin_sees_and_changes_only_its_own_licensee() {
    let server = Server::start();
    let own = objects(&server, "own");
    let other = objects(&server, "other");
    let (credential_id, orgadmin) = credential(&server, "it-dept", "orgadmin", Some(&own.licensee));
    let listed = |path: &str| -> BTreeSet<String> {
        let page = server.admin_as(&orgadmin, "GET", path, None);
        assert_eq!(page.status, 200, "{path}: {}", page.text());
        page.json()["items"].as_array().expect("items").iter().map(id).collect()
    };
    assert_eq!(listed("/admin/licensees"), BTreeSet::from([own.licensee.clone()]));
    assert_eq!(listed("/admin/consumers"), BTreeSet::from([own.consumer.clone()]));
    assert_eq!(listed("/admin/licenses"), BTreeSet::from([own.license.clone()]));
    assert!(listed(&format!("/admin/consumers?licensee={}", other.licensee)).is_empty());

    // Its own licensee's consumers: created, changed, keys rotated; the events name it.
    let created = server.admin_as(
        &orgadmin,
        "POST",
        "/admin/consumers",
        Some(json!({"name": "new hire", "kind": "user", "licensees": [own.licensee]})),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let hire = id(&created.json());
    let event = last_event(&server);
    assert_eq!(event["type"], json!("consumer.created"));
    assert_eq!(event["actor"], json!({"kind": "credential", "id": credential_id}));

    // It cannot widen its scope.
    let refusals = [
        ("POST", "/admin/consumers".to_owned(), json!({"name": "x", "kind": "user", "licensees": [other.licensee]})),
        (
            "POST",
            "/admin/consumers".to_owned(),
            json!({"name": "x", "kind": "user", "licensees": [own.licensee, other.licensee]}),
        ),
        ("PATCH", format!("/admin/consumers/{hire}"), json!({"licensees": [own.licensee, other.licensee]})),
        ("POST", format!("/admin/licenses/{}/assignments", own.license), json!({"consumer": other.consumer})),
    ];
    let before = last_event(&server);
    for (method, path, body) in refusals {
        let reply = server.admin_as(&orgadmin, method, &path, Some(body.clone()));
        assert!([400, 404].contains(&reply.status), "{method} {path} {body}: {} {}", reply.status, reply.text());
    }
    for (method, path, body) in [
        ("POST", "/admin/credentials", json!({"name": "mine", "role": "admin"})),
        ("POST", "/admin/credentials", json!({"name": "mine", "role": "orgadmin", "licensee": other.licensee})),
        ("PATCH", &*format!("/admin/licenses/{}", own.license), json!({"licensee": other.licensee})),
        ("POST", "/admin/licenses", json!({"licensee": own.licensee, "product": own.product, "credit": seats(99)})),
    ] {
        let reply = server.admin_as(&orgadmin, method, path, Some(body));
        assert_eq!(reply.status, 403, "{method} {path}: {}", reply.text());
    }
    assert_eq!(last_event(&server), before, "a refused change was made");

    // The events it reads are its licensee's only.
    let events = server.admin_as(&orgadmin, "GET", "/admin/events?limit=1000", None).json();
    let subjects: BTreeSet<String> = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["subject"]["id"].as_str().expect("a subject").to_owned())
        .collect();
    assert!(subjects.contains(&own.license) && subjects.contains(&hire), "{subjects:?}");
    for foreign in [&other.licensee, &other.consumer, &other.license, &other.webhook, &own.webhook] {
        assert!(!subjects.contains(foreign), "an orgadmin read an event about {foreign}");
    }
    let usage = server.admin_as(
        &orgadmin,
        "GET",
        &format!(
            "/admin/usage?from=2000-01-01T00:00:00Z&to=2060-01-01T00:00:00Z&granularity=month&licensee={}",
            other.licensee
        ),
        None,
    );
    assert_eq!(usage.status, 404, "{}", usage.text());
}

#[test]
fn a_credential_is_shown_once_stored_as_a_hash_and_refused_once_deleted_even_across_a_kill() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let server = Server::start_in(scratch.path(), &[], true);
    let (licensee, _, _) = server.party("acme");
    let (reader_id, reader) = credential(&server, "auditor", "reader", None);
    let (gone_id, gone) = credential(&server, "leaver", "orgadmin", Some(&licensee));

    let listed = server.admin_ok("GET", "/admin/credentials", None, 200);
    let text = listed.to_string();
    assert!(!text.contains(&reader) && !text.contains(&gone), "a listing shows a token");
    assert!(text.contains(&reader_id) && text.contains(&gone_id));
    for bad in [
        json!({"name": "x", "role": "orgadmin"}),
        json!({"name": "x", "role": "reader", "licensee": licensee}),
        json!({"name": "x", "role": "root"}),
        json!({"name": "", "role": "admin"}),
    ] {
        assert_eq!(server.admin("POST", "/admin/credentials", Some(bad.clone())).status, 400, "{bad}");
    }
    let unknown = json!({"name": "x", "role": "orgadmin", "licensee": "d82cde79-da02-4e24-861c-ed3bf96a4fed"});
    assert_eq!(server.admin("POST", "/admin/credentials", Some(unknown)).status, 404);
    assert_eq!(server.admin("DELETE", &format!("/admin/licensees/{licensee}"), None).status, 409);

    assert_eq!(server.admin_as(&gone, "GET", "/admin/consumers", None).status, 200);
    assert_eq!(server.admin("DELETE", &format!("/admin/credentials/{gone_id}"), None).status, 204);
    assert_eq!(server.admin_as(&gone, "GET", "/admin/consumers", None).status, 401);

    server.kill();
    for file in files_under(scratch.path()) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(!bytes.windows(reader.len()).any(|w| w == reader.as_bytes()), "{} holds a token", file.display());
    }
    let server = Server::start_in(scratch.path(), &[], true);
    assert_eq!(server.admin_as(&reader, "GET", "/admin/licensees", None).status, 200);
    assert_eq!(
        server.admin_as(&reader, "POST", "/admin/licensees", Some(json!({"name": "x", "kind": "person"}))).status,
        403
    );
    assert_eq!(server.admin_as(&gone, "GET", "/admin/consumers", None).status, 401);
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a readable directory").flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}
