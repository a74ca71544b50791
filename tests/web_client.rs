//! The official 10Duke browser client, the `@10duke/web-client-pkce` LicenseChecker (1.1.0),
//! against a real `leasehold serve`: `tests/js/license_checker_suite.mjs` drives the unmodified
//! package under Node.js (consume, a refused second machine, a denial, signature verification,
//! release, the seat taken again), and this test checks on the server side what it left behind.
//!
//! Needs Node.js 18+ (`node`, or the path in `LEASEHOLD_TEST_NODE`) and the package installed in
//! `tests/js/node_modules` (`npm ci --prefix tests/js`, which `scripts/test-all` runs; this test
//! runs it itself when the package is missing). Without them it fails: a compatibility suite
//! that skips proves nothing.

mod http_common;

use http_common::{seats, Server, ADMIN};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PRODUCT: &str = "Web Studio";
const UNLICENSED: &str = "Unlicensed Tool";

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("js")
}

fn node() -> String {
    std::env::var("LEASEHOLD_TEST_NODE").unwrap_or_else(|_| "node".to_owned())
}

/// Fails the test, saying what to install, when Node.js or the package is missing.
fn ensure_package_installed() {
    let version = Command::new(node()).arg("--version").output().unwrap_or_else(|e| {
        panic!("Node.js is needed for the web-client-pkce suite ({}: {e}); run scripts/test-all or apt-get install nodejs npm", node())
    });
    assert!(version.status.success(), "`{} --version` failed", node());
    let installed = js_dir().join("node_modules/@10duke/web-client-pkce/package.json");
    if !installed.exists() {
        let npm = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(js_dir())
            .output()
            .unwrap_or_else(|e| panic!("npm is needed to install tests/js ({e}); apt-get install npm"));
        assert!(npm.status.success(), "npm ci --prefix tests/js failed:\n{}", text(&npm));
    }
    let manifest = std::fs::read_to_string(&installed)
        .unwrap_or_else(|e| panic!("{} is not installed ({e})", installed.display()));
    let manifest: Value = serde_json::from_str(&manifest).expect("the package's package.json is JSON");
    assert_eq!(manifest["version"], json!("1.1.0"), "the suite pins @10duke/web-client-pkce 1.1.0");
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

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
    ensure_package_installed();
    let server = Server::start();
    let (licensee, consumer, key) = server.party("Acme");
    let license = server.license(&licensee, PRODUCT, seats(1), json!({"model": {"session_anchors": ["hw"]}}));

    let run = Command::new(node())
        .arg(js_dir().join("license_checker_suite.mjs"))
        .arg(format!("http://{}", server.addr))
        .args([key.as_str(), PRODUCT, UNLICENSED])
        .env("LEASEHOLD_LICENSE_ID", &license)
        .env("LEASEHOLD_ADMIN_TOKEN", ADMIN)
        .env_remove("DEBUG")
        .current_dir(js_dir())
        .output()
        .expect("node runs");
    let output = text(&run);
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
