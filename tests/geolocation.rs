//! Geolocation (SPEC section 13) on a live server: a MaxMind DB file the test builds (Python's
//! mmdb-writer; 203.0.113.0/24 in Finland, 198.51.100.0/24 in the United States, 2001:db8::/32 in
//! Sweden) tells clients' countries, and license models' `geo` rules answer
//! `clientGeolocationBlocked` and `unresolvedGeolocation`. The client's address comes through a
//! trusted proxy's `X-Forwarded-For`, as behind a load balancer. A file that is no database stops
//! the server at start with the reason.

mod http_common;

use http_common::{request, seats, Server};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The test's GeoIP database, written into `dir`.
fn database(dir: &Path) -> PathBuf {
    let file = dir.join("countries.mmdb");
    let built = Command::new(http_common::test_python())
        .arg("-c")
        .arg(
            "import sys\n\
             from mmdb_writer import MMDBWriter\n\
             from netaddr import IPSet\n\
             w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type='GeoLite2-Country')\n\
             w.insert_network(IPSet(['203.0.113.0/24']), {'country': {'iso_code': 'FI'}})\n\
             w.insert_network(IPSet(['198.51.100.0/24']), {'country': {'iso_code': 'US'}})\n\
             w.insert_network(IPSet(['2001:db8::/32']), {'country': {'iso_code': 'SE'}})\n\
             w.to_db_file(sys.argv[1])\n",
        )
        .arg(&file)
        .output()
        .expect("Python runs (scripts/test-all installs mmdb-writer)");
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    file
}

/// Licenses of a Finland-only product and of one blocked in the United States; the consumer's key.
fn licensed(server: &Server) -> String {
    let (licensee, _, key) = server.party("Acme");
    let finland = json!({"model": {"geo": {"allowed_countries": ["FI"]}}});
    server.license(&licensee, "Nordic", seats(5), finland);
    let not_us = json!({"model": {"geo": {"blocked_countries": ["us"]}}});
    server.license(&licensee, "Export", seats(5), not_us);
    key
}

/// A check of `item` by a client at `address` behind the (trusted) test: "granted" or the code.
fn check(server: &Server, key: &str, item: &str, address: &str) -> String {
    let bearer = format!("Bearer {key}");
    let headers = [("Authorization", bearer.as_str()), ("X-Forwarded-For", address)];
    let reply = request(server.addr, "GET", &format!("/authz/.json?{item}&doConsume=false"), &headers, None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer: Value = reply.json();
    match answer[format!("{item}_errorCode")].as_str() {
        Some(code) => code.to_owned(),
        None => {
            assert_eq!(answer[item], json!(true), "{answer}");
            "granted".to_owned()
        }
    }
}

#[test]
fn countries_told_from_addresses_answer_the_geo_rules() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let db = database(scratch.path());
    let server = Server::start_with(&["--geoip-db", db.to_str().unwrap(), "--trusted-proxies", "127.0.0.1"]);
    let key = licensed(&server);
    let (blocked, unresolved) = ("clientGeolocationBlocked", "unresolvedGeolocation");
    assert_eq!(check(&server, &key, "Nordic", "203.0.113.9"), "granted");
    assert_eq!(check(&server, &key, "Nordic", "198.51.100.4"), blocked);
    assert_eq!(check(&server, &key, "Nordic", "2001:db8::5"), blocked, "Sweden is not Finland");
    assert_eq!(check(&server, &key, "Nordic", "192.0.2.1"), unresolved, "an address the database lacks");
    assert_eq!(check(&server, &key, "Export", "203.0.113.9"), "granted");
    assert_eq!(check(&server, &key, "Export", "198.51.100.4"), blocked);
    assert_eq!(check(&server, &key, "Export", "192.0.2.1"), unresolved);

    // A country that is no ISO 3166 code is refused when the license is made.
    let (licensee, _, _) = server.party("Other");
    let product = json!({"name": "Elsewhere"});
    server.admin_ok("POST", "/admin/products", Some(product), 201);
    let bad = json!({"licensee": licensee, "product": "Elsewhere", "credit": seats(1),
        "model": {"geo": {"allowed_countries": ["Finland"]}}});
    let refused = server.admin("POST", "/admin/licenses", Some(bad));
    assert_eq!(refused.status, 400, "{}", refused.text());

    // Without a database no country is known: a license with rules answers unresolvedGeolocation.
    let plain = Server::start_with(&["--trusted-proxies", "127.0.0.1"]);
    let key = licensed(&plain);
    assert_eq!(check(&plain, &key, "Nordic", "203.0.113.9"), unresolved);
}

#[test]
fn a_file_that_is_no_geoip_database_stops_the_server_with_the_reason() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let bogus = scratch.path().join("countries.mmdb");
    std::fs::write(&bogus, "not a database").expect("written");
    let started = Command::new(env!("CARGO_BIN_EXE_leasehold"))
        .args(["serve", "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--data-dir"])
        .arg(scratch.path().join("data"))
        .arg("--geoip-db")
        .arg(&bogus)
        .env("LEASEHOLD_ADMIN_TOKEN", http_common::ADMIN)
        .output()
        .expect("the binary runs");
    assert!(!started.status.success(), "the server must not start");
    let stderr = String::from_utf8_lossy(&started.stderr);
    assert!(stderr.contains("not a MaxMind database"), "{stderr}");
}
