//! Hostile input over HTTP (SPEC invariant 6): malformed queries, JSON, UTF-8, headers and
//! request lines, oversized and truncated requests. Each gets a clear 4xx (or, for bytes that
//! are not HTTP at all, a closed connection), the server stays up, and nothing changes.

mod http_common;

use http_common::{raw, raw_then_eof, request, seats, Reply, Server, ADMIN};
use serde_json::{json, Value};

fn snapshot(server: &Server, license: &str) -> Value {
    let mut state = json!({});
    for listing in ["licensees", "consumers", "products", "licenses"] {
        state[listing] = server.admin_ok("GET", &format!("/admin/{listing}"), None, 200);
    }
    state["license"] = server.admin_ok("GET", &format!("/admin/licenses/{license}"), None, 200);
    state["leases"] = server.admin_ok("GET", &format!("/admin/licenses/{license}/leases"), None, 200);
    state
}

fn assert_4xx(what: &str, reply: Option<Reply>) {
    let reply = reply.unwrap_or_else(|| panic!("{what}: no answer"));
    assert!((400..500).contains(&reply.status), "{what}: {} {}", reply.status, reply.text());
}

fn assert_4xx_or_closed(what: &str, reply: Option<Reply>) {
    if let Some(reply) = reply {
        assert!((400..500).contains(&reply.status), "{what}: {} {}", reply.status, reply.text());
    }
}

#[test]
fn hostile_requests_get_4xx_and_change_nothing() {
    let mut server = Server::start();
    let (licensee, _, key) = server.party("Acme");
    let license = server.license(&licensee, "ThreeDee", seats(2), json!({"model": {"session_anchors": ["hw"]}}));
    assert_eq!(server.authz(&key, "/authz/.txt?ThreeDee&hw=a").text(), "true");
    let before = snapshot(&server, &license);
    let addr = server.addr;
    let bearer = format!("Bearer {key}");
    let admin = format!("Bearer {ADMIN}");

    let many_items = (0..100).map(|i| format!("I{i}")).collect::<Vec<_>>().join("&");
    for query in [
        "%FF%FE".to_owned(),
        "ThreeDee&doConsume=perhaps".into(),
        "".into(),
        "&&&".into(),
        many_items,
        "ThreeDee&hw=b&consumeDuration=-1".into(),
        "ThreeDee&hw=b&consumeCount=99999999999999999999999".into(),
        "ThreeDee&hw=b&leaseId=%00".into(),
        "ThreeDee=garbage&hw=b".into(),
        "ThreeDee&hw=b&publicKey=not-a-key".into(),
        "release&not-a-lease".into(),
        "release".into(),
        format!("ThreeDee&hw={}", "x".repeat(5000)),
    ] {
        let what = format!("GET /authz/.jwt?{}", query.chars().take(60).collect::<String>());
        let reply = request(addr, "GET", &format!("/authz/.jwt?{query}"), &[("Authorization", &bearer)], None);
        assert_eq!(reply.status, 400, "{what}: {}", reply.text());
        assert_eq!(reply.json()["code"], json!("badRequest"), "{what}");
    }

    let form = [("Authorization", bearer.as_str()), ("Content-Type", "application/x-www-form-urlencoded")];
    assert_4xx("form body not UTF-8", Some(request(addr, "POST", "/authz/.txt", &form, Some(b"ThreeDee&hw=\xff\xfe"))));
    let json_type = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
    assert_4xx("authz body of another type", Some(request(addr, "POST", "/authz/.txt", &json_type, Some(b"{}"))));
    assert_4xx(
        "DELETE /authz/",
        Some(request(addr, "DELETE", "/authz/.json?ThreeDee", &[("Authorization", &bearer)], None)),
    );
    assert_4xx("unknown path", Some(request(addr, "GET", "/nothing/here", &[], None)));
    assert_4xx("bearer not UTF-8", raw(addr, b"GET /authz/.txt?ThreeDee&hw=b HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n"));

    let admin_json = [("Authorization", admin.as_str()), ("Content-Type", "application/json")];
    let deep = format!("{{\"name\": {}{}, \"kind\": \"person\"}}", "[".repeat(5000), "]".repeat(5000));
    for (what, body) in [
        ("truncated JSON", b"{\"name\": \"Evil\", \"kind\"".to_vec()),
        ("JSON not UTF-8", b"{\"name\": \"\xff\xfe\", \"kind\": \"person\"}".to_vec()),
        ("deeply nested JSON", deep.into_bytes()),
        ("empty body", Vec::new()),
        ("JSON with NUL name", b"{\"name\": \"a\\u0000b\", \"kind\": \"person\"}".to_vec()),
    ] {
        assert_4xx(what, Some(request(addr, "POST", "/admin/licensees", &admin_json, Some(&body))));
    }
    let big = vec![b'x'; 200 * 1024];
    assert_4xx("oversized body", Some(request(addr, "POST", "/admin/licensees", &admin_json, Some(&big))));
    assert_eq!(
        raw(addr, format!("POST /admin/licensees HTTP/1.1\r\nHost: x\r\nAuthorization: {admin}\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\nConnection: close\r\n\r\n{{}}").as_bytes()).map(|r| r.status),
        Some(413)
    );
    let mut chunked = format!("POST /admin/licensees HTTP/1.1\r\nHost: x\r\nAuthorization: {admin}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").into_bytes();
    for _ in 0..40 {
        chunked.extend_from_slice(format!("1000\r\n{}\r\n", "y".repeat(4096)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(raw(addr, &chunked).map(|r| r.status), Some(413));
    assert_4xx_or_closed(
        "truncated body",
        raw_then_eof(addr, format!("POST /admin/licensees HTTP/1.1\r\nHost: x\r\nAuthorization: {admin}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\"").as_bytes()),
    );

    let long_header =
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: {}\r\nConnection: close\r\n\r\n", "j".repeat(64 * 1024));
    let long_uri =
        format!("GET /authz/.txt?{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "A".repeat(64 * 1024));
    for (what, bytes) in [
        ("bad Content-Length", b"POST /admin/licensees HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec()),
        ("header without colon", b"GET /healthz HTTP/1.1\r\nHost: x\r\nthis is not a header\r\n\r\n".to_vec()),
        ("invalid method", b"G@T /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("binary garbage", b"\x00\x01\x02\x03 hello \xff\r\n\r\n".to_vec()),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
        ("raw bytes in the request line", b"GET /authz/.txt?\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("header over the limit", long_header.into_bytes()),
        ("request line over the limit", long_uri.into_bytes()),
    ] {
        assert_4xx_or_closed(what, raw_then_eof(addr, &bytes));
    }

    assert!(server.is_running(), "the server survived");
    assert_eq!(request(addr, "GET", "/healthz", &[], None).status, 200);
    assert_eq!(snapshot(&server, &license), before, "hostile input changed nothing");
    assert_eq!(server.authz(&key, "/authz/.txt?ThreeDee&hw=b").text(), "true", "and the server still serves");
}
