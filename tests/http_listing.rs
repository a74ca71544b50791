//! Listings of the admin API (SPEC section 10): pages of `?limit=` items, `next_cursor` to the
//! next, every item visited exactly once even while items are added, filters, and bad
//! parameters refused with 400.

mod http_common;

use http_common::{seats, Server};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Every id a listing at `path` gives, following `next_cursor` `limit` items at a time; `during`
/// runs after each page.
fn every_id(server: &Server, path: &str, limit: usize, mut during: impl FnMut()) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut url = format!("{path}{sep}limit={limit}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = server.admin_ok("GET", &url, None, 200);
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= limit, "a page of {} items for limit {limit}", items.len());
        ids.extend(items.iter().map(|i| i["id"].as_str().expect("an id").to_owned()));
        during();
        match &page["next_cursor"] {
            Value::Null => return ids,
            Value::String(next) => cursor = Some(next.clone()),
            other => panic!("next_cursor is {other}"),
        }
    }
}

#[test]
fn pages_visit_every_item_once_even_while_items_are_added() {
    let server = Server::start();
    let mut before = BTreeSet::new();
    for n in 0..11 {
        let licensee =
            server.admin_ok("POST", "/admin/licensees", Some(json!({"name": format!("L{n}"), "kind": "person"})), 201);
        before.insert(licensee["id"].as_str().expect("an id").to_owned());
    }
    let mut added = 0;
    let listed = every_id(&server, "/admin/licensees", 3, || {
        added += 1;
        server.admin_ok(
            "POST",
            "/admin/licensees",
            Some(json!({"name": format!("New{added}"), "kind": "person"})),
            201,
        );
    });
    let unique: BTreeSet<_> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "an item was listed twice");
    assert!(before.is_subset(&unique), "an item that was there was skipped");
    let all = server.admin_ok("GET", "/admin/licensees?limit=1000", None, 200);
    assert_eq!(all["items"].as_array().map(Vec::len), Some(11 + added));
    assert_eq!(all["next_cursor"], Value::Null);
    let default = server.admin_ok("GET", "/admin/licensees", None, 200);
    assert_eq!(default["items"].as_array().map(Vec::len), Some(11 + added), "fewer than the default page of 100");
}

#[test]
fn listings_filter_and_refuse_bad_parameters() {
    let server = Server::start();
    let (acme, acme_consumer, _) = server.party("Acme");
    let (globex, _, _) = server.party("Globex");
    let first = server.license(&acme, "Alpha", seats(1), json!({}));
    server.admin_ok("POST", "/admin/products", Some(json!({"name": "Beta"})), 201);
    let body = json!({"licensee": globex, "product": "Beta", "credit": seats(1)});
    let second = server.admin_ok("POST", "/admin/licenses", Some(body), 201)["id"].as_str().expect("an id").to_owned();
    server.admin_ok("POST", &format!("/admin/licenses/{second}/revoke"), Some(json!({"reason": "test"})), 200);

    let ids = |path: &str| every_id(&server, path, 10, || {});
    assert_eq!(ids(&format!("/admin/licenses?licensee={acme}")), vec![first.clone()]);
    assert_eq!(ids("/admin/licenses?product=Beta"), vec![second.clone()]);
    assert_eq!(ids("/admin/licenses?status=revoked"), vec![second.clone()]);
    assert_eq!(ids("/admin/licenses?status=active"), vec![first.clone()]);
    assert_eq!(ids(&format!("/admin/consumers?licensee={acme}")), vec![acme_consumer]);

    for bad in ["limit=0", "limit=1001", "limit=many", "colour=blue", "status=revoked"] {
        let path = if bad.starts_with("status") {
            format!("/admin/consumers?{bad}")
        } else {
            format!("/admin/licensees?{bad}")
        };
        let reply = server.admin("GET", &path, None);
        assert_eq!(reply.status, 400, "{path} was accepted: {}", reply.text());
    }
}
