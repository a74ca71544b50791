//! `POST /admin/consumers/{id}/api-key` against a real server (SPEC section 10): a new key works
//! at once, the old one is refused from that moment, and both stay so across a kill -9.

mod http_common;

use http_common::{seats, Server};
use serde_json::json;

#[test]
fn a_rotated_key_replaces_the_old_one_at_once_and_across_a_kill_9() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let server = Server::start_in(scratch.path(), &[], true);
    let (licensee, consumer, old_key) = server.party("Acme");
    server.license(&licensee, "Rotated", seats(3), json!({}));
    assert_eq!(server.authz(&old_key, "/authz/.txt?Rotated").text(), "true");

    let rotated = server.admin_ok("POST", &format!("/admin/consumers/{consumer}/api-key"), None, 200);
    let new_key = rotated["api_key"].as_str().expect("a new key").to_owned();
    assert_ne!(new_key, old_key);
    assert_eq!(server.authz(&old_key, "/authz/.txt?Rotated").status, 401, "the old key still works");
    assert_eq!(server.authz(&new_key, "/authz/.txt?Rotated").text(), "true");

    let unknown = server.admin("POST", "/admin/consumers/00000000-0000-0000-0000-000000000000/api-key", None);
    assert_eq!(unknown.status, 404);

    server.kill();
    let restarted = Server::start_in(scratch.path(), &[], true);
    assert_eq!(restarted.authz(&old_key, "/authz/.txt?Rotated").status, 401, "the old key came back");
    assert_eq!(restarted.authz(&new_key, "/authz/.txt?Rotated").text(), "true");
}
