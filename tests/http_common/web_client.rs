//! The official 10Duke browser client, the `@10duke/web-client-pkce` LicenseChecker (1.1.0),
//! driven under Node.js by `tests/js/license_checker_suite.mjs`, for the tests that run it
//! against a server (`tests/web_client.rs`, `tests/cluster_clients.rs`).
//!
//! Needs Node.js 18+ (`node`, or the path in `LEASEHOLD_TEST_NODE`) and the package installed in
//! `tests/js/node_modules` (`npm ci --prefix tests/js`, which `scripts/test-all` runs; it is run
//! here when the package is missing). Without them the tests fail: a compatibility suite that
//! skips proves nothing.

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("js")
}

pub fn node() -> String {
    std::env::var("LEASEHOLD_TEST_NODE").unwrap_or_else(|_| "node".to_owned())
}

/// Fails the test, saying what to install, when Node.js or the package is missing.
pub fn ensure_package_installed() {
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

pub fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Runs the suite against the server at `addr` with the API key `key` of a consumer holding
/// `license`, a one-seat license of `product`; `unlicensed` names a product it has no license
/// of. The suite's output; it passed when it exits 0 and says "every check passed".
pub fn run_suite(addr: SocketAddr, key: &str, product: &str, unlicensed: &str, license: &str, admin: &str) -> Output {
    ensure_package_installed();
    Command::new(node())
        .arg(js_dir().join("license_checker_suite.mjs"))
        .arg(format!("http://{addr}"))
        .args([key, product, unlicensed])
        .env("LEASEHOLD_LICENSE_ID", license)
        .env("LEASEHOLD_ADMIN_TOKEN", admin)
        .env_remove("DEBUG")
        .current_dir(js_dir())
        .output()
        .expect("node runs")
}
