//! The consume rule of SPEC section 12 on the wire: a license in an entitlement is chosen only
//! for a consumer in one of the entitlement's groups of its own kind (users in user groups,
//! devices in device client groups), over `/authz/` and the TCP protocol, with and without
//! `entitlementId`; a license a consumer may not use is never named in an answer; and the
//! organization survives a kill -9.

mod http_common;

use http_common::{seats, Server};
use leasehold::client::{Auth, Client, Consume};
use serde_json::{json, Value};

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

/// The organization the test works on: its ids, and each consumer's API key.
struct Org {
    licensee: String,
    users: String,
    devices: String,
    e_both: String,
    e_users: String,
    open: String,
    in_both: String,
    in_users: String,
    /// (API key, consumer id) of: a user in the user group, a user in no group, a device in the
    /// device group, a device in no group.
    user_in: (String, String),
    user_out: (String, String),
    device_in: (String, String),
    device_out: (String, String),
}

fn consumer(server: &Server, licensee: &str, name: &str, kind: &str) -> (String, String) {
    let body = json!({"name": name, "kind": kind, "licensees": [licensee]});
    let created = server.admin_ok("POST", "/admin/consumers", Some(body), 201);
    (created["api_key"].as_str().expect("a key").to_owned(), id(&created))
}

fn join(server: &Server, group: &str, consumer: &str) {
    server.admin_ok("POST", &format!("/admin/groups/{group}/members"), Some(json!({"consumer": consumer})), 200);
}

fn organization(server: &Server) -> Org {
    let licensee =
        id(&server.admin_ok("POST", "/admin/licensees", Some(json!({"name": "Acme", "kind": "organization"})), 201));
    let group = |name: &str, kind: &str| {
        let path = format!("/admin/licensees/{licensee}/groups");
        id(&server.admin_ok("POST", &path, Some(json!({"name": name, "kind": kind})), 201))
    };
    let (users, devices) = (group("engineers", "user"), group("render farm", "device"));
    let entitlement = |name: &str, groups: &[&str]| {
        let path = format!("/admin/licensees/{licensee}/entitlements");
        id(&server.admin_ok("POST", &path, Some(json!({"name": name, "groups": groups})), 201))
    };
    let (e_both, e_users) = (entitlement("cad for all", &[&users, &devices]), entitlement("sim", &[&users]));
    let open = server.license(&licensee, "Cad", seats(10), json!({}));
    let in_both = {
        let body = json!({"licensee": licensee, "product": "Cad", "credit": seats(10), "entitlement": e_both});
        id(&server.admin_ok("POST", "/admin/licenses", Some(body), 201))
    };
    let in_users = server.license(&licensee, "Sim", seats(10), json!({"entitlement": e_users}));
    let user_in = consumer(server, &licensee, "ada", "user");
    let user_out = consumer(server, &licensee, "bob", "user");
    let device_in = consumer(server, &licensee, "node-1", "device");
    let device_out = consumer(server, &licensee, "node-2", "device");
    join(server, &users, &user_in.1);
    join(server, &devices, &device_in.1);
    Org { licensee, users, devices, e_both, e_users, open, in_both, in_users, user_in, user_out, device_in, device_out }
}

/// The license that grants `query` to `key` over `/authz/`, or `None` when refused (the answer
/// then must not name any of `hidden`).
fn granted(server: &Server, key: &str, query: &str, hidden: &[&str]) -> Option<String> {
    let reply = server.authz(key, &format!("/authz/.json?{query}"));
    assert_eq!(reply.status, 200, "{query}: {}", reply.text());
    let claims = reply.json();
    match claims["lic"].as_str() {
        Some(license) => Some(license.to_owned()),
        None => {
            for license in hidden {
                assert!(!reply.text().contains(license), "a refusal names license {license}: {}", reply.text());
            }
            None
        }
    }
}

fn check_rule(server: &Server, org: &Org) {
    let hidden = [org.in_both.as_str(), org.in_users.as_str()];
    let (user_in, user_out) = (&org.user_in.0, &org.user_out.0);
    let (device_in, device_out) = (&org.device_in.0, &org.device_out.0);
    // Without a filter: the license outside any entitlement serves everyone; Sim is only in the
    // users' entitlement.
    assert_eq!(granted(server, user_out, "Cad", &hidden), Some(org.open.clone()));
    assert_eq!(granted(server, user_out, "Sim", &hidden), None);
    assert_eq!(granted(server, device_out, "Sim", &hidden), None);
    assert_eq!(granted(server, device_in, "Sim", &hidden), None, "a device is not in a user group");
    assert_eq!(granted(server, user_in, "Sim", &[]), Some(org.in_users.clone()));
    // With entitlementId: only that entitlement's licenses, and only for its groups' members.
    let both = format!("Cad&entitlementId={}", org.e_both);
    assert_eq!(granted(server, user_in, &both, &[]), Some(org.in_both.clone()));
    assert_eq!(granted(server, device_in, &both, &[]), Some(org.in_both.clone()));
    assert_eq!(granted(server, user_out, &both, &hidden), None);
    assert_eq!(granted(server, device_out, &both, &hidden), None);
    assert_eq!(granted(server, user_in, &format!("Cad&entitlementId={}", org.e_users), &hidden), None);
    assert_eq!(granted(server, user_in, "Cad&entitlementId=not-an-entitlement", &hidden), None);
    // Asking for the license by id does not get around the rule.
    assert_eq!(granted(server, user_out, &format!("Cad&licenseId={}", org.in_both), &hidden), None);

    // The same over the TCP protocol.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let tcp = |key: &str, item: &str, entitlement: Option<&str>| {
        rt.block_on(async {
            let client = Client::connect(server.tcp_addr, Auth::ApiKey(key.to_owned())).await.expect("connects");
            let mut consume = Consume::new(item);
            consume.filters.entitlement = entitlement.map(str::to_owned);
            match client.check(consume).await.expect("an answer") {
                Ok(granted) => Some(granted.license.to_string()),
                Err(denied) => {
                    for license in hidden {
                        assert!(!denied.message.contains(license), "a TCP refusal names {license}");
                    }
                    None
                }
            }
        })
    };
    assert_eq!(tcp(user_in, "Cad", Some(&org.e_both)), Some(org.in_both.clone()));
    assert_eq!(tcp(device_in, "Cad", Some(&org.e_both)), Some(org.in_both.clone()));
    assert_eq!(tcp(user_out, "Cad", Some(&org.e_both)), None);
    assert_eq!(tcp(user_out, "Sim", None), None);
    assert_eq!(tcp(user_in, "Sim", None), Some(org.in_users.clone()));

    // The Scale API lists only what the consumer may use.
    let listed = |key: &str| {
        let path = format!("/licensing/actions/describe-license-consumer-licenses?licenseeId={}", org.licensee);
        let reply =
            http_common::request(server.addr, "GET", &path, &[("Authorization", &format!("Bearer {key}"))], None);
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.text()
    };
    let seen_by_outsider = listed(user_out);
    assert!(seen_by_outsider.contains(&org.open), "{seen_by_outsider}");
    assert!(!seen_by_outsider.contains(&org.in_both) && !seen_by_outsider.contains(&org.in_users));
    let seen_by_member = listed(user_in);
    assert!(seen_by_member.contains(&org.in_both) && seen_by_member.contains(&org.in_users));
}

#[test]
fn a_license_in_an_entitlement_serves_only_its_groups_members_of_their_kind_even_after_a_kill() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let server = Server::start_in(scratch.path(), &[], true);
    let org = organization(&server);
    check_rule(&server, &org);

    // Memberships follow the groups: leaving the group ends the access, joining gives it.
    let leave = format!("/admin/groups/{}/members/{}", org.users, org.user_in.1);
    assert_eq!(server.admin("DELETE", &leave, None).status, 204);
    assert_eq!(granted(&server, &org.user_in.0, "Sim", &[&org.in_users]), None);
    join(&server, &org.users, &org.user_in.1);

    // A membership must fit the group: the licensee's consumer of the group's kind.
    let (_, stranger, _) = server.party("Other");
    let add = format!("/admin/groups/{}/members", org.devices);
    assert_eq!(server.admin("POST", &add, Some(json!({"consumer": org.user_out.1}))).status, 400);
    assert_eq!(server.admin("POST", &add, Some(json!({"consumer": stranger}))).status, 404);
    let other_licensee =
        server.admin_ok("POST", "/admin/licensees", Some(json!({"name": "Else", "kind": "person"})), 201);
    let foreign = json!({"name": "x", "groups": [org.users]});
    let path = format!("/admin/licensees/{}/entitlements", id(&other_licensee));
    assert_eq!(server.admin("POST", &path, Some(foreign)).status, 404, "an entitlement with another's group");
    let moved = json!({"entitlement": org.e_users});
    let other_license = server.license(&id(&other_licensee), "Other", seats(1), json!({}));
    assert_eq!(server.admin("PATCH", &format!("/admin/licenses/{other_license}"), Some(moved)).status, 404);
    let held = format!("/admin/entitlements/{}", org.e_users);
    assert_eq!(server.admin("DELETE", &held, None).status, 409, "an entitlement with licenses in it");

    server.kill();
    let server = Server::start_in(scratch.path(), &[], true);
    check_rule(&server, &org);
}
