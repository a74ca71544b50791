//! The official 10Duke browser client, the `@10duke/web-client-pkce` LicenseChecker (1.1.0),
//! against a real `leasehold serve`: `tests/js/license_checker_suite.mjs` drives the unmodified
//! package under Node.js (consume, a refused second machine, a denial, signature verification,
//! release, the seat taken again), and this test checks on the server side what it left behind.
//! What it needs is in `tests/http_common/web_client.rs`.

mod http_common;

use http_common::{seats, web_client, Server, ADMIN};
use serde_json::json;

const PRODUCT: &str = "Web Studio";
const UNLICENSED: &str = "Unlicensed Tool";

/// The lease id on the suite's output line that starts with `prefix` and ends `lease <id>`.
fn lease_on_line(stdout: &str, prefix: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(prefix) && l.contains(" lease "))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{stdout}"));
    line.rsplit("lease ").next().expect("a lease id").trim().to_owned()
}

#[test]
fn the_official_license_checker_consumes_and_releases_through_authz() {
    let server = Server::start();
    let (licensee, consumer, key) = server.party("Acme");
    let license = server.license(&licensee, PRODUCT, seats(1), json!({"model": {"session_anchors": ["hw"]}}));

    let run = web_client::run_suite(server.addr, &key, PRODUCT, UNLICENSED, &license, ADMIN);
    let output = web_client::text(&run);
    assert!(run.status.success(), "the LicenseChecker suite failed:\n{output}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("every check passed"), "{output}");

    // What the suite did, seen from the server: two leases, both held by our consumer on the
    // machines the client named, both released, and a seat free again.
    let first = lease_on_line(&stdout, "ok - consumeLicense(");
    let second = lease_on_line(&stdout, "ok - the second machine now gets the seat");
    assert_ne!(first, second);
    let usage = server.admin_ok("GET", &format!("/admin/licenses/{license}"), None, 200)["usage"].clone();
    assert_eq!(usage["live_leases"], json!(0), "{usage}");
    let leases = server.admin_ok("GET", &format!("/admin/licenses/{license}/leases"), None, 200);
    assert_eq!(leases["items"], json!([]));

    let released = server.authz(&key, &format!("/authz/.json?release&{first}&{second}"));
    assert_eq!(released.json(), json!({first.clone(): false, second.clone(): false}), "released leases stay released");

    let grant = server.authz(&key, "/authz/.json?Web%20Studio&hw=after-the-suite").json();
    assert_eq!(grant[PRODUCT], json!(true), "the seat is free: {grant}");
    assert_eq!(grant["sub"], json!(consumer));
    assert_eq!(grant["lic"], json!(license));
}
