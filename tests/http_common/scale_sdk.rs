//! The official `tenduke-scale` Python SDK (2.3.0), unchanged, driven by
//! `tests/python/scale_sdk_suite.py`, for the tests that run it against a server
//! (`tests/scale_sdk.rs`, `tests/cluster_clients.rs`).
//!
//! The interpreter is `$LEASEHOLD_TEST_PYTHON` with `tenduke-scale==2.3.0`, PyJWT, cryptography
//! and jwcrypto installed (`scripts/test-all` makes that venv). Without it the tests fail: a
//! missing client is not a reason to skip the compatibility suite.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

/// What the suite printed on stdout, once it passed against the server at `addr` (whose admin
/// token is `admin`), naming the products it makes with `prefix` (a server may hold another
/// run's); fails the test with the suite's output otherwise.
pub fn run_suite(addr: SocketAddr, admin: &str, prefix: &str) -> String {
    let python = super::test_python();
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/scale_sdk_suite.py");
    let output = Command::new(&python)
        .arg(&suite)
        .arg(format!("http://{addr}"))
        .arg(admin)
        .arg(prefix)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the SDK suite failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(stdout.contains("tokens through the JWKS"), "{stdout}");
    stdout
}
