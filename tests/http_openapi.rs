//! `/openapi.json` documents the whole HTTP API, exactly: the served document is OpenAPI 3.1
//! (read by an OpenAPI parser), its operations are the router's table `routes::ROUTES` (no
//! route undocumented, no documented route missing), and a live server answers every one of
//! them.

mod http_common;

use http_common::{request, Reply, Server, ADMIN};
use leasehold_transports::http::admin::access::is_admin_path;
use leasehold_transports::http::routes::ROUTES;
use serde_json::Value;
use std::collections::BTreeSet;

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths is an object");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let item = item.as_object().expect("a path item is an object");
            item.keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .map(|method| (method.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `template` with every `{parameter}` filled with a value of the right shape.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| match segment {
            "{licenseKey}" => "ABCDEFGHJKLMNPQRSTUV",
            "{name}" => "NoSuchProduct",
            s if s.starts_with('{') => "d82cde79-da02-4e24-861c-ed3bf96a4fed",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn probe(server: &Server, method: &str, path: &str) -> Reply {
    let auth = format!("Bearer {ADMIN}");
    let headers: Vec<(&str, &str)> =
        if is_admin_path(path) { vec![("Authorization", auth.as_str())] } else { Vec::new() };
    request(server.addr, method, path, &headers, None)
}

#[test]
fn the_served_document_is_openapi_3_1_and_documents_exactly_the_routes_the_router_has() {
    let server = Server::start();
    let reply = request(server.addr, "GET", "/openapi.json", &[], None);
    assert_eq!((reply.status, reply.content_type()), (200, "application/json"));
    let doc = reply.json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")), "{}", doc["openapi"]);
    let parsed = oas3::from_json(reply.text()).expect("a structurally valid OpenAPI 3.1 document");
    assert!(parsed.info.title.contains("Leasehold"));
    let operation_ids: Vec<&str> =
        parsed.operations().filter_map(|(_, _, op)| op.operation_id.as_deref()).collect::<Vec<_>>();
    let unique: BTreeSet<&str> = operation_ids.iter().copied().collect();
    assert_eq!(unique.len(), operation_ids.len(), "operation ids are unique");

    let in_document = documented(&doc);
    let in_router: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    let undocumented: Vec<_> = in_router.difference(&in_document).collect();
    let unrouted: Vec<_> = in_document.difference(&in_router).collect();
    assert!(undocumented.is_empty(), "routes missing from openapi.json: {undocumented:?}");
    assert!(unrouted.is_empty(), "documented but not in routes::ROUTES: {unrouted:?}");
    assert_eq!(operation_ids.len(), ROUTES.len());
}

#[test]
fn a_live_server_answers_every_documented_route() {
    let server = Server::start();
    for (method, template) in ROUTES {
        let path = concrete(template);
        // A method no route has: a path the server knows answers 405, an unknown one 404.
        let other = probe(&server, "PUT", &path);
        assert_eq!(other.status, 405, "PUT {path} should find the route: {}", other.text());
        let reply = probe(&server, method, &path);
        assert_ne!(reply.status, 405, "{method} {path}: {}", reply.text());
        assert!(reply.status < 500, "{method} {path}: {}", reply.text());
    }
}

#[test]
fn an_undocumented_path_is_unknown_to_the_server() {
    let server = Server::start();
    for path in ["/nothing", "/admin/widgets", "/licensing/actions/teleport", "/authz/.xml", "/.well-known/nope"] {
        assert_eq!(probe(&server, "PATCH", path).status, 404, "PATCH {path}");
        assert_eq!(probe(&server, "GET", path).status, 404, "GET {path}");
    }
}
