//! The server's life: what `serve` prints, `--demo`, the admin token generated at first start,
//! graceful shutdown on SIGTERM, and state that survives a restart on the same data directory.

mod http_common;

use http_common::{request, seats, Server};
use serde_json::json;

#[test]
fn sigterm_stops_the_server_cleanly_and_leases_survive_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[], true);
    let (licensee, _, key) = server.party("Acme");
    let license = server.license(&licensee, "ThreeDee", seats(2), json!({"model": {"session_anchors": ["hw"]}}));
    let lease = server.authz(&key, "/authz/.json?ThreeDee&hw=a").json()["jti"].as_str().unwrap().to_owned();
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");

    let server = Server::start_in(dir.path(), &[], true);
    let leases = server.admin_ok("GET", &format!("/admin/licenses/{license}/leases"), None, 200);
    assert_eq!(leases["items"][0]["id"], json!(lease));
    let renewed = server.authz(&key, &format!("/authz/.json?ThreeDee&hw=a&leaseId={lease}")).json();
    assert_eq!(renewed["ThreeDee"], json!(true), "{renewed}");
}

#[test]
fn a_generated_admin_token_is_printed_once_and_still_works_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[], false);
    let line =
        server.banner.iter().find(|l| l.starts_with("Admin token (shown only now")).expect("the token is printed");
    let token = line.rsplit(' ').next().unwrap().to_owned();
    let auth = format!("Bearer {token}");
    assert_eq!(request(server.addr, "GET", "/admin/licenses", &[("Authorization", &auth)], None).status, 200);
    assert!(server.terminate().success());

    let stored = std::fs::read_to_string(dir.path().join("admin-token.sha256")).unwrap();
    assert!(!stored.contains(&token), "only the digest is stored");
    let server = Server::start_in(dir.path(), &[], false);
    assert!(!server.banner.iter().any(|l| l.contains(&token)), "the token is shown only at first start");
    assert_eq!(request(server.addr, "GET", "/admin/licenses", &[("Authorization", &auth)], None).status, 200);
}

#[test]
fn demo_seeds_a_three_seat_license_and_prints_commands_with_a_working_key() {
    let server = Server::start_with(&["--demo"]);
    let key_line = server.banner.iter().find(|l| l.starts_with("Demo consumer API key: ")).expect("a demo key");
    let key = key_line.trim_start_matches("Demo consumer API key: ").to_owned();
    assert!(server.banner.iter().any(|l| l.contains("curl") && l.contains(&key)));
    for hw in ["1", "2", "3"] {
        assert_eq!(server.authz(&key, &format!("/authz/.txt?ThreeDee&hw={hw}")).text(), "true");
    }
    assert_eq!(server.authz(&key, "/authz/.txt?ThreeDee&hw=4").text(), "false");
    assert_eq!(request(server.addr, "GET", "/healthz", &[], None).json(), json!({"status": "ok"}));
}
