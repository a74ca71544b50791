//! The Enterprise `/authz/` API over real HTTP against the real binary: consume, check, renew
//! and release; the three answer formats; and every Enterprise error code a client can reach
//! over HTTP, each answered 200 with a signed denial.

mod http_common;

use http_common::{jwt_header, jwt_payload, request, seats, Server};
use leasehold_engine::time::{Clock, SystemClock};
use leasehold_engine::tokens::Verifier;
use serde_json::{json, Value};

fn hw_model() -> Value {
    json!({"model": {"session_anchors": ["hw"]}})
}

#[test]
fn three_seats_serve_three_hardware_ids_and_the_fourth_is_refused() {
    let server = Server::start();
    let (licensee, _, key) = server.party("Acme");
    let license = server.license(&licensee, "ThreeDee", seats(3), hw_model());

    let first = server.authz(&key, "/authz/.json?ThreeDee&hw=hw-1&version=1.2.3");
    assert_eq!(first.status, 200);
    assert_eq!(first.content_type(), "application/json");
    let claims = first.json();
    assert_eq!(claims["ThreeDee"], json!(true));
    assert_eq!(claims["lic"], json!(license));
    assert_eq!(claims["hw"], json!("hw-1"));
    assert_eq!(claims["ver"], json!("1.2.3"));

    let second = server.authz(&key, "/authz/.jwt?ThreeDee&hw=hw-2");
    assert_eq!(second.content_type(), "application/jwt");
    let token = second.text();
    assert_eq!(jwt_header(&token)["alg"], json!("RS256"));
    assert!(jwt_header(&token)["kid"].is_string());
    assert_eq!(jwt_payload(&token)["ThreeDee"], json!(true));

    let third = server.authz(&key, "/authz/.txt?ThreeDee&hw=hw-3");
    assert_eq!((third.content_type(), third.text().as_str()), ("text/plain", "true"));
    let no_suffix = server.authz(&key, "/authz/?ThreeDee&hw=hw-4");
    assert_eq!(no_suffix.text(), "false");

    let fourth = server.authz(&key, "/authz/.json?ThreeDee&hw=hw-4").json();
    assert_eq!(fourth["ThreeDee_errorCode"], json!("maxConcurrentSessionsExceed"));
    assert_eq!(fourth["ThreeDee_errorKey"], json!("maxConcurrentSessionsExceed"));
    assert!(fourth["ThreeDee_errorMessage"].is_string() && fourth["ThreeDee_errorTechnical"].is_string());

    let usage = server.admin_ok("GET", &format!("/admin/licenses/{license}"), None, 200)["usage"].clone();
    assert_eq!(usage["seats_in_use"], json!(3));
}

#[test]
fn a_renewal_rotates_the_lease_id_and_the_old_id_no_longer_matches() {
    let server = Server::start();
    let (licensee, _, key) = server.party("Acme");
    server.license(&licensee, "ThreeDee", seats(1), hw_model());

    let first = server.authz(&key, "/authz/.json?ThreeDee&hw=h").json();
    let old = first["jti"].as_str().expect("a lease id").to_owned();
    let renewed = server.authz(&key, &format!("/authz/.json?ThreeDee&hw=h&leaseId={old}")).json();
    let new = renewed["jti"].as_str().expect("a new lease id").to_owned();
    assert_ne!(old, new);

    let per_item = server.authz(&key, &format!("/authz/.json?ThreeDee=;leaseId={new}&hw=h")).json();
    assert_eq!(per_item["ThreeDee"], json!(true));
    let stale = server.authz(&key, &format!("/authz/.json?ThreeDee&hw=h&leaseId={old}")).json();
    assert_eq!(stale["ThreeDee_errorCode"], json!("leaseIdNotMatching"));
}

#[test]
fn release_frees_the_seat_and_answers_each_lease_id() {
    let server = Server::start();
    let (licensee, _, key) = server.party("Acme");
    let license = server.license(&licensee, "ThreeDee", seats(1), hw_model());

    let lease = server.authz(&key, "/authz/.json?ThreeDee&hw=a").json()["jti"].as_str().unwrap().to_owned();
    assert_eq!(server.authz(&key, "/authz/.txt?ThreeDee&hw=b").text(), "false");

    let unknown = "d82cde79-da02-4e24-861c-ed3bf96a4fed";
    let released = server.authz(&key, &format!("/authz/.json?release&{lease}&{unknown}="));
    assert_eq!(released.status, 200);
    assert_eq!(released.json(), json!({lease.clone(): true, unknown: false}));
    let again = server.authz(&key, &format!("/authz/.json?release=true&{lease}")).json();
    assert_eq!(again, json!({lease: false}));

    assert_eq!(server.authz(&key, "/authz/.txt?ThreeDee&hw=b").text(), "true");
    let leases = server.admin_ok("GET", &format!("/admin/licenses/{license}/leases"), None, 200);
    assert_eq!(leases["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(leases["items"][0]["hw"], json!("b"));
}

#[test]
fn several_items_get_one_answer_each_in_every_format() {
    let server = Server::start();
    let (licensee, _, key) = server.party("Acme");
    server.admin_ok(
        "POST",
        "/admin/products",
        Some(json!({"name": "Suite", "features": [{"name": "render"}, {"name": "export"}]})),
        201,
    );
    server.admin_ok(
        "POST",
        "/admin/licenses",
        Some(json!({"licensee": licensee, "product": "Suite", "credit": seats(5)})),
        201,
    );

    let jwt = server.authz(&key, "/authz/.jwt?render&Nothing&export").text();
    let tokens: Vec<&str> = jwt.split('&').collect();
    assert_eq!(tokens.len(), 3);
    assert_eq!(jwt_payload(tokens[0])["render"], json!(true));
    assert_eq!(jwt_payload(tokens[1])["Nothing_errorCode"], json!("noLicenseFound"));
    assert_eq!(jwt_payload(tokens[2])["export"], json!(true));

    assert_eq!(server.authz(&key, "/authz/.txt?render&Nothing").text(), "true&false");
    let json = server.authz(&key, "/authz/.json?render&Nothing").json();
    assert_eq!(json.as_array().map(Vec::len), Some(2));
    assert_eq!(json[0]["render"], json!(true));

    let post = http_common::request(
        server.addr,
        "POST",
        "/authz/.txt",
        &[("Authorization", &format!("Bearer {key}")), ("Content-Type", "application/x-www-form-urlencoded")],
        Some(b"render&export"),
    );
    assert_eq!(post.text(), "true&true");
}

#[test]
fn do_consume_false_checks_without_taking_a_seat() {
    let server = Server::start();
    let (licensee, _, key) = server.party("Acme");
    let license = server.license(&licensee, "ThreeDee", seats(1), hw_model());
    for _ in 0..3 {
        let check = server.authz(&key, "/authz/.json?ThreeDee&hw=x&doConsume=false").json();
        assert_eq!(check["ThreeDee"], json!(true));
    }
    let usage = server.admin_ok("GET", &format!("/admin/licenses/{license}"), None, 200)["usage"].clone();
    assert_eq!(usage["live_leases"], json!(0));
}

#[test]
fn a_missing_or_unknown_api_key_is_401() {
    let server = Server::start();
    let missing = http_common::request(server.addr, "GET", "/authz/.json?ThreeDee", &[], None);
    assert_eq!(missing.status, 401);
    assert_eq!(missing.json()["code"], json!("notAuthorized"));
    assert_eq!(server.authz("lh_not-a-key", "/authz/.jwt?ThreeDee").status, 401);
}

/// The error code of `item` in a signed `.jwt` answer.
fn denial_code(server: &Server, key: &str, item: &str, query: &str) -> String {
    let reply = server.authz(key, &format!("/authz/.jwt?{item}{query}"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(jwt_header(&reply.text())["alg"], json!("RS256"));
    let claims = jwt_payload(&reply.text());
    claims[format!("{item}_errorCode")].as_str().unwrap_or_else(|| panic!("{item}: not a denial: {claims}")).to_owned()
}

#[test]
fn every_enterprise_error_code_reachable_over_http_comes_back_as_a_signed_denial() {
    let server = Server::start();
    let (licensee, _, key) = server.party("Acme");
    let (_, other_consumer, _) = {
        let consumer = server.admin_ok(
            "POST",
            "/admin/consumers",
            Some(json!({"name": "other", "kind": "user", "licensees": [licensee]})),
            201,
        );
        ((), consumer["id"].as_str().unwrap().to_owned(), ())
    };
    let with_model = |model: Value| json!({ "model": model });
    let mut seen = Vec::new();
    let mut expect = |code: &str, got: String| {
        assert_eq!(got, code);
        seen.push(code.to_owned());
    };

    expect("noLicenseFound", denial_code(&server, &key, "Unknown", ""));

    server.license(
        &licensee,
        "NoRenew",
        seats(5),
        with_model(json!({"session_anchors": ["hw"], "allow_extension": false})),
    );
    assert_eq!(server.authz(&key, "/authz/.txt?NoRenew&hw=a").text(), "true");
    expect("notAuthorized", denial_code(&server, &key, "NoRenew", "&hw=a"));

    server.license(
        &licensee,
        "Old",
        seats(5),
        json!({"valid_from": "2020-01-01T00:00:00Z", "valid_until": "2021-01-01T00:00:00Z"}),
    );
    expect("licenseExpired", denial_code(&server, &key, "Old", ""));

    server.license(&licensee, "Future", seats(5), json!({"valid_from": "2999-01-01T00:00:00Z"}));
    expect("licenseValidityNotStarted", denial_code(&server, &key, "Future", ""));

    let off = server.license(&licensee, "Off", seats(5), json!({}));
    server.admin_ok("POST", &format!("/admin/licenses/{off}/deactivate"), None, 200);
    expect("licenseNotActive", denial_code(&server, &key, "Off", ""));

    let gone = server.license(&licensee, "Gone", seats(5), json!({}));
    server.admin_ok("POST", &format!("/admin/licenses/{gone}/revoke"), Some(json!({"reason": "refund"})), 200);
    expect("licenseRevoked", denial_code(&server, &key, "Gone", ""));

    server.license(&licensee, "Pool", seats(1), with_model(json!({"session_anchors": []})));
    assert_eq!(server.authz(&key, "/authz/.txt?Pool").text(), "true");
    expect("licenseQuotaExceeded", denial_code(&server, &key, "Pool", ""));

    server.license(&licensee, "Seat", seats(1), with_model(json!({"session_anchors": ["hw"]})));
    assert_eq!(server.authz(&key, "/authz/.txt?Seat&hw=a").text(), "true");
    expect("maxConcurrentSessionsExceed", denial_code(&server, &key, "Seat", "&hw=b"));

    let count = json!({"dimension": "USE_COUNT", "qty": 2, "enforcement": "ENFORCED"});
    server.license(&licensee, "Count", count, json!({}));
    expect("maxUseCountExceed", denial_code(&server, &key, "Count", "&consumeCount=3"));

    let time = json!({"dimension": "USE_TIME", "qty": 60, "enforcement": "ENFORCED"});
    server.license(&licensee, "Time", time, with_model(json!({"session_anchors": ["hw"]})));
    assert_eq!(server.authz(&key, "/authz/.txt?Time&hw=a").text(), "true");
    expect("maxAggregateUseTimeExceed", denial_code(&server, &key, "Time", "&hw=b"));

    server.license(
        &licensee,
        "OnePer",
        seats(5),
        with_model(json!({"session_anchors": ["hw"], "max_leases_per_consumer": 1})),
    );
    assert_eq!(server.authz(&key, "/authz/.txt?OnePer&hw=a").text(), "true");
    expect("consumptionLimitExceed", denial_code(&server, &key, "OnePer", "&hw=b"));

    server.license(
        &licensee,
        "Chain",
        seats(5),
        with_model(json!({"session_anchors": ["hw"], "lease_chaining": true})),
    );
    assert_eq!(server.authz(&key, "/authz/.txt?Chain&hw=a").text(), "true");
    expect("leaseIdNotMatching", denial_code(&server, &key, "Chain", "&hw=a"));

    server.license(&licensee, "Lease", seats(5), with_model(json!({"session_anchors": ["hw"]})));
    expect(
        "leaseIdNotFound",
        denial_code(&server, &key, "Lease", "&hw=z&leaseId=d82cde79-da02-4e24-861c-ed3bf96a4fed"),
    );

    expect("licenseAnchorMissing", denial_code(&server, &key, "Lease", ""));

    server.license(&licensee, "Named", seats(5), with_model(json!({"named_seats": true})));
    expect("licenseAssignmentMissing", denial_code(&server, &key, "Named", ""));

    let reserved = server.license(&licensee, "Reserved", seats(1), json!({}));
    server.admin_ok(
        "POST",
        &format!("/admin/licenses/{reserved}/assignments"),
        Some(json!({"consumer": other_consumer})),
        201,
    );
    expect("licenseAssignmentDenied", denial_code(&server, &key, "Reserved", ""));

    server.license(&licensee, "Fenced", seats(5), with_model(json!({"ip_rules": {"blocked": ["127.0.0.0/8"]}})));
    expect("clientIpAddressBlocked", denial_code(&server, &key, "Fenced", ""));

    server.license(&licensee, "Versioned", seats(5), with_model(json!({"version_range": {"min": "2.0.0"}})));
    expect("unallowedClientVersion", denial_code(&server, &key, "Versioned", "&version=1.9"));

    // `heartbeatTooEarly` belongs to the Scale heartbeat (the /authz/ renewal has no hbnbf);
    // `overloaded` is a 503 of the whole request, driven by tests/overload.rs.
    assert_eq!(seen.len(), 18);
}

#[test]
fn tokens_verify_against_the_served_jwks() {
    let server = Server::start();
    let (licensee, _, key) = server.party("Acme");
    server.license(&licensee, "ThreeDee", seats(1), hw_model());
    for path in ["/.well-known/jwks.json", "/licensing-signing-keys/.well-known/jwks.json"] {
        let jwks = request(server.addr, "GET", path, &[], None);
        assert_eq!((jwks.status, jwks.content_type()), (200, "application/json"), "{path}");
        let verifier = Verifier::from_jwks_json(&jwks.body).expect("a usable JWKS");
        let grant = server.authz(&key, "/authz/.jwt?ThreeDee&hw=a").text();
        let claims = verifier.verify(&grant, SystemClock.now()).expect("a grant verifies");
        assert_eq!(claims["ThreeDee"], json!(true));
        let denial = server.authz(&key, "/authz/.jwt?ThreeDee&hw=b").text();
        let claims = verifier.verify(&denial, SystemClock.now()).expect("a denial verifies");
        assert_eq!(claims["ThreeDee_errorCode"], json!("maxConcurrentSessionsExceed"));
    }
}

/// What the official `@10duke/web-client-pkce` LicenseChecker sends: a POST with the query in the
/// URL, written by URLSearchParams (`Web+Studio=`, `hw` percent-encoded), a form Content-Type and
/// an empty body; its release carries `hw` too.
#[test]
fn the_license_checkers_form_encoded_consume_and_release_are_understood() {
    let server = Server::start();
    let (licensee, _, key) = server.party("Acme");
    let license = server.license(&licensee, "Web Studio", seats(1), hw_model());
    let bearer = format!("Bearer {key}");
    let headers = [("Authorization", bearer.as_str()), ("Content-Type", "application/x-www-form-urlencoded")];

    let consume =
        request(server.addr, "POST", "/authz/.jwt?Web+Studio=&hw=laptop-7f3a%2BZq%2Fw%3D%3D", &headers, Some(b""));
    assert_eq!((consume.status, consume.content_type()), (200, "application/jwt"), "{}", consume.text());
    let claims = jwt_payload(&consume.text());
    assert_eq!(claims["Web Studio"], json!(true), "{claims}");
    assert_eq!(claims["hw"], json!("laptop-7f3a+Zq/w=="));
    assert_eq!(claims["lic"], json!(license));
    let lease = claims["jti"].as_str().expect("a lease id").to_owned();

    let path = format!("/authz/.json?release=true&{lease}=&hw=laptop-7f3a%2BZq%2Fw%3D%3D");
    let release = request(server.addr, "POST", &path, &headers, Some(b""));
    assert_eq!((release.status, release.json()), (200, json!({lease: true})));
    let usage = server.admin_ok("GET", &format!("/admin/licenses/{license}"), None, 200)["usage"].clone();
    assert_eq!(usage["live_leases"], json!(0));
}

/// The LicenseChecker runs in a web page on another origin and sends `Authorization`, so a
/// browser asks first (CORS preflight) and shows it only answers that allow its origin: every
/// client-facing route answers preflights and allows any origin on every answer, errors
/// included; the key documents may be cached; the admin API stays closed to other origins.
#[test]
fn browser_preflights_are_answered_and_client_facing_answers_allow_any_origin() {
    let server = Server::start();
    let (licensee, _, key) = server.party("Acme");
    server.license(&licensee, "ThreeDee", seats(1), hw_model());
    let origin = ("Origin", "http://licensed-app.localhost:3000");

    for path in [
        "/authz/.jwt",
        "/authz/.json",
        "/authz/",
        "/licensing/actions/checkout",
        "/licensing/actions/describe-license-consumer-licenses",
        "/.well-known/jwks.json",
        "/.well-known/license-configuration",
        "/license-activations/activate",
    ] {
        let preflight = request(
            server.addr,
            "OPTIONS",
            path,
            &[
                origin,
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "authorization,content-type,clihwid,x-app-trace"),
            ],
            None,
        );
        assert_eq!(preflight.status, 204, "{path}: {}", preflight.text());
        assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
        let methods = preflight.header("access-control-allow-methods").unwrap_or_default().to_ascii_lowercase();
        assert!(methods.contains("post") && methods.contains("get"), "{methods}");
        let allowed = preflight.header("access-control-allow-headers").unwrap_or_default().to_ascii_lowercase();
        for name in ["authorization", "content-type", "clihwid", "x-app-trace"] {
            assert!(allowed.split(", ").any(|a| a == name), "{path}: {name} in {allowed}");
        }
    }

    let bearer = format!("Bearer {key}");
    let grant = request(server.addr, "GET", "/authz/.jwt?ThreeDee&hw=a", &[origin, ("Authorization", &bearer)], None);
    assert_eq!(grant.header("access-control-allow-origin"), Some("*"));
    let scale_refused = request(server.addr, "POST", "/licensing/actions/checkout", &[origin], Some(b"[]"));
    assert_eq!((scale_refused.status, scale_refused.header("access-control-allow-origin")), (401, Some("*")));
    for path in ["/.well-known/jwks.json", "/.well-known/license-configuration"] {
        let document = request(server.addr, "GET", path, &[origin], None);
        assert_eq!(document.header("access-control-allow-origin"), Some("*"), "{path}");
        let cache = document.header("cache-control").unwrap_or_default();
        assert!(cache.contains("max-age="), "{path}: {cache}");
    }
    let admin = request(server.addr, "OPTIONS", "/admin/licensees", &[origin], None);
    assert_eq!(admin.header("access-control-allow-origin"), None, "the admin API is not for other origins");
    let admin = request(server.addr, "GET", "/admin/licensees", &[origin], None);
    assert_eq!(admin.header("access-control-allow-origin"), None);
}

/// A missing or wrong credential on `.jwt` is answered 401 with a signed `notAuthorized` denial
/// per item, as 10Duke answers, so that a library reads the reason; other formats get JSON.
#[test]
fn a_refused_credential_on_jwt_is_a_signed_not_authorized_denial_per_item() {
    let server = Server::start();
    let origin = ("Origin", "http://licensed-app.localhost:3000");
    for credential in [None, Some("Bearer not-a-key")] {
        let mut headers = vec![origin];
        if let Some(credential) = credential {
            headers.push(("Authorization", credential));
        }
        let refused = request(server.addr, "GET", "/authz/.jwt?ThreeDee&Render&hw=a", &headers, None);
        assert_eq!((refused.status, refused.content_type()), (401, "application/jwt"), "{}", refused.text());
        assert_eq!(refused.header("access-control-allow-origin"), Some("*"));
        let tokens: Vec<String> = refused.text().split('&').map(str::to_owned).collect();
        assert_eq!(tokens.len(), 2, "one denial per item");
        for (token, item) in tokens.iter().zip(["ThreeDee", "Render"]) {
            let claims = http_common::jwt_payload(token);
            assert_eq!(claims[format!("{item}_errorCode")], json!("notAuthorized"), "{claims}");
            assert!(claims.get(item).is_none_or(|v| v != &json!(true)), "{claims}");
        }
        let jwks = request(server.addr, "GET", "/.well-known/jwks.json", &[], None);
        let verifier = leasehold_engine::tokens::verify::Verifier::from_jwks_json(jwks.text().as_bytes())
            .expect("the server's JWKS");
        let now = leasehold_engine::Timestamp::from_secs(
            i64::try_from(std::time::UNIX_EPOCH.elapsed().unwrap().as_secs()).unwrap(),
        );
        verifier.verify(&tokens[0], now).expect("the denial is signed by the server");
    }
    let json_refused = request(server.addr, "GET", "/authz/.json?ThreeDee", &[], None);
    assert_eq!((json_refused.status, json_refused.json()["code"].clone()), (401, json!("notAuthorized")));
}
