//! The binary TCP protocol end to end (SPEC section 6): a real `leasehold serve`, licenses made
//! through the admin HTTP API, and every operation and error code over TCP through the Rust
//! client; then hostile bytes (truncated, oversized, random frames, a client that never reads)
//! while another client keeps being answered.

mod http_common;

use http_common::{seats, Server};
use leasehold::client::{
    Auth, Client, ClientConfig, ClientError, Consume, Denied, Dialect, FailureCode, Granted, Release, Renew,
    TokenChoice, Used,
};
use leasehold_engine::tokens::jwe;
use leasehold_transports::tcp::frame;
use leasehold_transports::tcp::messages::{self, Authenticate, Credential, Request, Response};
use rsa::pkcs8::EncodePublicKey as _;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime")
}

fn hw_model() -> Value {
    json!({"model": {"session_anchors": ["hw"]}})
}

async fn connect(server: &Server, key: &str) -> Client {
    Client::connect(server.tcp_addr, Auth::ApiKey(key.into())).await.expect("the client connects")
}

async fn connect_in(server: &Server, key: &str, dialect: Dialect) -> Client {
    let config = ClientConfig { dialect, ..ClientConfig::default() };
    Client::connect_with(server.tcp_addr, Auth::ApiKey(key.into()), config).await.expect("the client connects")
}

fn granted(answer: Result<Result<Granted, Denied>, ClientError>) -> Granted {
    match answer {
        Ok(Ok(granted)) => granted,
        other => panic!("expected a grant, got {other:?}"),
    }
}

fn denied(answer: Result<Result<Granted, Denied>, ClientError>) -> Denied {
    match answer {
        Ok(Err(denied)) => denied,
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn live_leases(server: &Server, license: &str) -> Value {
    server.admin_ok("GET", &format!("/admin/licenses/{license}"), None, 200)["usage"]["live_leases"].clone()
}

#[test]
fn a_consumer_checks_out_heartbeats_and_releases_with_verified_tokens() {
    let server = Server::start();
    let (licensee, consumer, key) = server.party("Acme");
    let license = server.license(&licensee, "ThreeDee", seats(3), hw_model());
    runtime().block_on(async {
        let client = connect(&server, &key).await;
        let hello = client.authenticated().expect("authenticated");
        assert_eq!(hello.consumer.map(|c| c.to_string()), Some(consumer.clone()));

        let grant = granted(client.consume(Consume::new("ThreeDee").hw("hw-1").version("1.2.3")).await);
        assert_eq!(grant.license.to_string(), license);
        assert_eq!(grant.item, "ThreeDee");
        let claims = client.verify(grant.token.as_deref().expect("a token")).await.expect("the token verifies");
        assert_eq!(claims["ThreeDee"], json!(true));
        assert_eq!(claims["jti"], json!(grant.lease_id.to_string()));
        assert_eq!(claims["sub"], json!(consumer));
        assert_eq!(claims["hw"], json!("hw-1"));
        assert_eq!(claims["ver"], json!("1.2.3"));
        assert_eq!(claims["exp"], json!(grant.expires_at_s));
        assert_eq!(live_leases(&server, &license), json!(1));

        let renewed = granted(client.renew(Renew::new(grant.lease_id)).await);
        assert_ne!(renewed.lease_id, grant.lease_id);
        assert_eq!(renewed.old_lease_id, Some(grant.lease_id));
        let claims = client.verify(renewed.token.as_deref().expect("a token")).await.expect("verifies");
        assert_eq!(claims["jti"], json!(renewed.lease_id.to_string()));
        let stale = match client.renew(Renew::new(grant.lease_id)).await {
            Ok(Err(denied)) => denied,
            other => panic!("the rotated-out id must be refused: {other:?}"),
        };
        assert_eq!(stale.code, "leaseIdNotFound");

        let released = client.release(Release::new(renewed.lease_id)).await.expect("an answer").expect("released");
        assert_eq!(released.lease_id, renewed.lease_id);
        assert_eq!(released.license.to_string(), license);
        assert_eq!(live_leases(&server, &license), json!(0));
        let again = client.release(Release::new(renewed.lease_id)).await.expect("an answer");
        assert_eq!(again.map_err(|d| d.code), Err("leaseIdNotFound".to_owned()));
    });
}

#[test]
fn a_check_answers_like_a_consume_without_taking_a_seat() {
    let server = Server::start();
    let (licensee, _, key) = server.party("Acme");
    let license = server.license(&licensee, "ThreeDee", seats(1), hw_model());
    runtime().block_on(async {
        let client = connect(&server, &key).await;
        for hw in ["a", "b", "c"] {
            let check = granted(client.check(Consume::new("ThreeDee").hw(hw).token(TokenChoice::Omit)).await);
            assert_eq!(check.token, None, "an omitted token is not signed");
        }
        assert_eq!(live_leases(&server, &license), json!(0));
        granted(client.consume(Consume::new("ThreeDee").hw("a")).await);
        let full = denied(client.check(Consume::new("ThreeDee").hw("b")).await);
        assert_eq!(full.code, "maxConcurrentSessionsExceed");
        let claims = client.verify(full.token.as_deref().expect("a signed denial")).await.expect("verifies");
        assert_eq!(claims["ThreeDee_errorCode"], json!("maxConcurrentSessionsExceed"));
    });
}

#[test]
fn the_token_dialect_is_chosen_per_connection_and_per_request() {
    let server = Server::start();
    let (licensee, _, key) = server.party("Acme");
    let license = server.license(&licensee, "ThreeDee", seats(1), hw_model());
    runtime().block_on(async {
        let client = connect_in(&server, &key, Dialect::Scale).await;
        let grant = granted(client.consume(Consume::new("ThreeDee").hw("a")).await);
        let scale = client.verify(grant.token.as_deref().expect("a token")).await.expect("verifies");
        assert_eq!(scale["status"], json!("success"));
        assert_eq!(scale["leaseId"], json!(grant.lease_id.to_string()));
        assert_eq!(scale["licenseId"], json!(license));
        assert_eq!(scale["qtyDimension"], json!("SEATS"));
        assert_eq!(scale["clientClaims"]["cliHwId"], json!("a"));
        assert!(scale.get("aud").is_none());

        let mut enterprise = Consume::new("ThreeDee").hw("a").token(TokenChoice::Enterprise);
        enterprise.lease_id = Some(grant.lease_id);
        let renewed = granted(client.consume(enterprise).await);
        let claims = client.verify(renewed.token.as_deref().expect("a token")).await.expect("verifies");
        assert_eq!(claims["ThreeDee"], json!(true));
        assert_eq!(claims["jti"], json!(renewed.lease_id.to_string()));

        let refused = denied(client.consume(Consume::new("ThreeDee").hw("b")).await);
        let claims = client.verify(refused.token.as_deref().expect("a token")).await.expect("verifies");
        assert_eq!(claims["status"], json!("error"));
        assert_eq!(claims["errorCode"], json!("maxConcurrentSessionsExceed"));
    });
}

#[test]
fn a_client_public_key_gets_the_token_as_a_jwe_only_it_can_open() {
    let server = Server::start();
    let (licensee, _, key) = server.party("Acme");
    server.license(&licensee, "ThreeDee", seats(2), hw_model());
    let private = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).expect("an RSA key");
    let der = private.to_public_key().to_public_key_der().expect("DER");
    let public_b64url = base64url(der.as_bytes());
    runtime().block_on(async {
        let client = connect(&server, &key).await;
        let mut consume = Consume::new("ThreeDee").hw("a");
        consume.token.public_key = Some(public_b64url.clone());
        let grant = granted(client.consume(consume).await);
        let jwe = grant.token.expect("a token");
        assert_eq!(jwe.split('.').count(), 5, "a compact JWE has five parts");
        let jwt = jwe::decrypt(&jwe, &private).expect("the client's key opens it");
        let claims = client.verify(&jwt).await.expect("the inner token verifies");
        assert_eq!(claims["jti"], json!(grant.lease_id.to_string()));

        let mut bad = Consume::new("ThreeDee").hw("b");
        bad.token.public_key = Some("not-a-key".into());
        match client.consume(bad).await {
            Err(ClientError::Failure(failure)) => assert_eq!(failure.code, FailureCode::BadRequest),
            other => panic!("a malformed key is a bad request: {other:?}"),
        }
    });
}

#[test]
fn metered_use_starts_heartbeats_and_ends_without_limits() {
    let server = Server::start();
    let (licensee, _, key) = server.party("Acme");
    let metered = json!({"dimension": "USE_COUNT", "qty": 1, "enforcement": "METERED"});
    let license = server.license(&licensee, "Meter", metered, hw_model());
    server.license(&licensee, "Enforced", seats(5), hw_model());
    runtime().block_on(async {
        let client = connect(&server, &key).await;
        let started = granted(client.start_metered(Consume::new("Meter").hw("a")).await);
        assert_eq!(started.remaining_qty, None, "metered use has no limit to count down");
        let mut beat = Renew::new(started.lease_id);
        beat.used = Used::Absolute(5);
        let beat = granted(client.heartbeat_metered(beat).await);
        assert_eq!(beat.old_lease_id, Some(started.lease_id));
        let end = Release { lease_id: beat.lease_id, used: Used::Absolute(9) };
        let ended = client.end_metered(end).await.expect("an answer").expect("ended");
        assert_eq!(ended.license.to_string(), license);
        assert_eq!(ended.remaining_qty, None);
        assert_eq!(live_leases(&server, &license), json!(0));

        let refused = denied(client.start_metered(Consume::new("Enforced").hw("a")).await);
        assert_eq!(refused.code, "noLicenseFound", "metered use needs a metered license");
    });
}

#[test]
fn a_license_key_connection_checks_out_renews_and_releases_on_its_license() {
    let server = Server::start();
    let (licensee, _, _) = server.party("Acme");
    server.admin_ok("POST", "/admin/products", Some(json!({"name": "Keyed"})), 201);
    let body = json!({"licensee": licensee, "product": "Keyed", "credit": seats(1), "license_key": true,
                      "model": {"session_anchors": ["hw"]}});
    let created = server.admin_ok("POST", "/admin/licenses", Some(body), 201);
    let license = created["id"].as_str().expect("an id").to_owned();
    let key = created["license_key"].as_str().expect("a license key").to_owned();
    runtime().block_on(async {
        let client = Client::connect(server.tcp_addr, Auth::LicenseKey(key.clone())).await.expect("connects");
        assert_eq!(client.authenticated().and_then(|a| a.license).map(|l| l.to_string()), Some(license.clone()));
        let grant = granted(client.consume(Consume::new("Keyed").hw("a")).await);
        assert_eq!(grant.license.to_string(), license);
        client.verify(grant.token.as_deref().expect("a token")).await.expect("verifies");
        let full = denied(client.consume(Consume::new("Keyed").hw("b")).await);
        assert_eq!(full.code, "maxConcurrentSessionsExceed");
        let renewed = granted(client.renew(Renew::new(grant.lease_id)).await);
        client.release(Release::new(renewed.lease_id)).await.expect("an answer").expect("released");
        assert_eq!(live_leases(&server, &license), json!(0));
        // A check is the decision alone: granted while the seat is free, taking nothing.
        let check = granted(client.check(Consume::new("Keyed").hw("a")).await);
        client.verify(check.token.as_deref().expect("a token")).await.expect("verifies");
        assert_eq!(live_leases(&server, &license), json!(0));
        let held = granted(client.consume(Consume::new("Keyed").hw("a")).await);
        assert_eq!(denied(client.check(Consume::new("Keyed").hw("b")).await).code, "maxConcurrentSessionsExceed");
        client.release(Release::new(held.lease_id)).await.expect("an answer").expect("released");
        match Client::connect(server.tcp_addr, Auth::LicenseKey("NO-SUCH-KEY-0000-0000".into())).await {
            Err(ClientError::Failure(failure)) => assert_eq!(failure.code, FailureCode::BadCredentials),
            other => panic!("an unknown license key is refused: {:?}", other.map(|_| ())),
        }
    });
}

#[test]
fn the_jwks_over_tcp_is_the_one_served_over_http() {
    let server = Server::start();
    let (_, _, key) = server.party("Acme");
    let http = http_common::request(server.addr, "GET", "/.well-known/jwks.json", &[], None).json();
    runtime().block_on(async {
        let client = connect(&server, &key).await;
        let jwks: Value = serde_json::from_str(&client.jwks().await.expect("the JWKS")).expect("JSON");
        assert_eq!(jwks, http);
        assert!(!jwks["keys"].as_array().expect("keys").is_empty());
    });
}

#[test]
fn every_error_code_reachable_over_tcp_comes_back_with_a_signed_denial() {
    let server = Server::start();
    let (licensee, _, key) = server.party("Acme");
    let other = server.admin_ok(
        "POST",
        "/admin/consumers",
        Some(json!({"name": "other", "kind": "user", "licensees": [licensee]})),
        201,
    );
    let other = other["id"].as_str().expect("an id").to_owned();
    let with_model = |model: Value| json!({ "model": model });
    let license = |product: &str, credit: Value, extra: Value| server.license(&licensee, product, credit, extra);

    license("NoRenew", seats(5), with_model(json!({"session_anchors": ["hw"], "allow_extension": false})));
    license("Old", seats(5), json!({"valid_from": "2020-01-01T00:00:00Z", "valid_until": "2021-01-01T00:00:00Z"}));
    license("Future", seats(5), json!({"valid_from": "2999-01-01T00:00:00Z"}));
    let off = license("Off", seats(5), json!({}));
    server.admin_ok("POST", &format!("/admin/licenses/{off}/deactivate"), None, 200);
    let gone = license("Gone", seats(5), json!({}));
    server.admin_ok("POST", &format!("/admin/licenses/{gone}/revoke"), Some(json!({"reason": "refund"})), 200);
    license("Pool", seats(1), with_model(json!({"session_anchors": []})));
    license("Seat", seats(1), with_model(json!({"session_anchors": ["hw"]})));
    license("Count", json!({"dimension": "USE_COUNT", "qty": 2, "enforcement": "ENFORCED"}), json!({}));
    let time = json!({"dimension": "USE_TIME", "qty": 60, "enforcement": "ENFORCED"});
    license("Time", time, with_model(json!({"session_anchors": ["hw"]})));
    license("OnePer", seats(5), with_model(json!({"session_anchors": ["hw"], "max_leases_per_consumer": 1})));
    license("Chain", seats(5), with_model(json!({"session_anchors": ["hw"], "lease_chaining": true})));
    license("Lease", seats(5), with_model(json!({"session_anchors": ["hw"]})));
    license("Named", seats(5), with_model(json!({"named_seats": true})));
    let reserved = license("Reserved", seats(1), json!({}));
    server.admin_ok("POST", &format!("/admin/licenses/{reserved}/assignments"), Some(json!({"consumer": other})), 201);
    license("Fenced", seats(5), with_model(json!({"ip_rules": {"blocked": ["127.0.0.0/8"]}})));
    license("Versioned", seats(5), with_model(json!({"version_range": {"min": "2.0.0"}})));
    license("Paced", seats(5), with_model(json!({"session_anchors": ["hw"], "heartbeat_interval_s": 3600})));

    runtime().block_on(async {
        let client = connect(&server, &key).await;
        let mut seen = Vec::new();
        // A denial's code, checked against the signed Enterprise token's `<item>_errorCode`.
        let mut expect = async |code: &str, consume: Consume| {
            let item = consume.item.clone();
            let refusal = denied(client.consume(consume).await);
            assert_eq!(refusal.code, code, "{item}: {}", refusal.message);
            assert_eq!(refusal.error_code().map(|c| c.as_str()), Some(code));
            let claims = client.verify(refusal.token.as_deref().expect("a signed denial")).await.expect("verifies");
            assert_eq!(claims[&format!("{item}_errorCode")], json!(code));
            seen.push(code.to_owned());
        };
        let take = async |consume: Consume| granted(client.consume(consume).await);

        expect("noLicenseFound", Consume::new("Unknown")).await;
        take(Consume::new("NoRenew").hw("a")).await;
        expect("notAuthorized", Consume::new("NoRenew").hw("a")).await;
        expect("licenseExpired", Consume::new("Old")).await;
        expect("licenseValidityNotStarted", Consume::new("Future")).await;
        expect("licenseNotActive", Consume::new("Off")).await;
        expect("licenseRevoked", Consume::new("Gone")).await;
        take(Consume::new("Pool")).await;
        expect("licenseQuotaExceeded", Consume::new("Pool")).await;
        take(Consume::new("Seat").hw("a")).await;
        expect("maxConcurrentSessionsExceed", Consume::new("Seat").hw("b")).await;
        expect("maxUseCountExceed", Consume { qty: Some(3), ..Consume::new("Count") }).await;
        take(Consume::new("Time").hw("a")).await;
        expect("maxAggregateUseTimeExceed", Consume::new("Time").hw("b")).await;
        take(Consume::new("OnePer").hw("a")).await;
        expect("consumptionLimitExceed", Consume::new("OnePer").hw("b")).await;
        take(Consume::new("Chain").hw("a")).await;
        expect("leaseIdNotMatching", Consume::new("Chain").hw("a")).await;
        let unknown = "d82cde79-da02-4e24-861c-ed3bf96a4fed".parse().expect("a UUID");
        expect("leaseIdNotFound", Consume { lease_id: Some(unknown), ..Consume::new("Lease").hw("z") }).await;
        expect("licenseAnchorMissing", Consume::new("Lease")).await;
        expect("licenseAssignmentMissing", Consume::new("Named")).await;
        expect("licenseAssignmentDenied", Consume::new("Reserved")).await;
        expect("clientIpAddressBlocked", Consume::new("Fenced")).await;
        expect("unallowedClientVersion", Consume::new("Versioned").version("1.9")).await;
        let paced = take(Consume::new("Paced").hw("a")).await;
        let early = match client.renew(Renew::new(paced.lease_id)).await {
            Ok(Err(denied)) => denied,
            other => panic!("a heartbeat before hbnbf is refused: {other:?}"),
        };
        assert_eq!(early.code, "heartbeatTooEarly");
        seen.push(early.code);
        // In the Scale dialect a refused heartbeat is signed, as the Scale API's is: a denial
        // that names no product.
        let mut scale_renew = Renew::new(paced.lease_id);
        scale_renew.token.choice = TokenChoice::Scale;
        let early = match client.renew(scale_renew).await {
            Ok(Err(denied)) => denied,
            other => panic!("a heartbeat before hbnbf is refused: {other:?}"),
        };
        let claims = client.verify(early.token.as_deref().expect("a signed Scale denial")).await.expect("verifies");
        assert_eq!(claims["errorCode"], json!("heartbeatTooEarly"));
        assert_eq!(claims["status"], json!("error"));
        assert!(!claims.contains_key("productName"), "{claims:?}");
        // `overloaded` travels as `FailureCode::Overloaded` (see docs/PROTOCOL.md); it needs a
        // full license queue, which tests/overload.rs arranges.
        assert_eq!(seen.len(), 19, "{seen:?}");
    });
}

#[test]
fn protocol_failures_are_answered_with_their_codes() {
    let server = Server::start();
    let (licensee, _, key) = server.party("Acme");
    server.license(&licensee, "ThreeDee", seats(5), hw_model());
    runtime().block_on(async {
        match Client::connect(server.tcp_addr, Auth::ApiKey("lh_wrong".into())).await {
            Err(ClientError::Failure(failure)) => assert_eq!(failure.code, FailureCode::BadCredentials),
            other => panic!("an unknown API key is refused: {:?}", other.map(|_| ())),
        }
        let client = connect(&server, &key).await;
        match client.consume(Consume::new("  ")).await {
            Err(ClientError::Failure(failure)) => assert_eq!(failure.code, FailureCode::BadRequest),
            other => panic!("an empty item is a bad request: {other:?}"),
        }
        match client.consume(Consume::new("ThreeDee").hw("a\u{0}b")).await {
            Err(ClientError::Failure(failure)) => assert_eq!(failure.code, FailureCode::BadRequest),
            other => panic!("a control character is a bad request: {other:?}"),
        }
        granted(client.consume(Consume::new("ThreeDee").hw("a")).await);
    });

    let mut raw = RawConnection::open(&server);
    raw.send(1, 1, &Request::Jwks);
    assert_eq!(raw.failure(), (1, FailureCode::AuthenticationRequired), "the first request must authenticate");
    assert!(raw.closed());

    let mut raw = RawConnection::open(&server);
    raw.authenticate(&key);
    raw.send(
        1,
        2,
        &Request::Authenticate(Authenticate {
            credential: Credential::ApiKey(key.clone()),
            dialect: Dialect::Enterprise,
        }),
    );
    assert_eq!(raw.failure(), (2, FailureCode::AlreadyAuthenticated));
    raw.send(1, 3, &Request::Jwks);
    assert!(matches!(raw.answer(), (3, Response::Jwks(_))), "the connection stays usable");

    let mut raw = RawConnection::open(&server);
    raw.authenticate(&key);
    raw.send(9, 4, &Request::Jwks);
    assert_eq!(raw.failure(), (4, FailureCode::UnsupportedVersion));
    assert!(raw.closed());

    let mut raw = RawConnection::open(&server);
    raw.authenticate(&key);
    raw.send_payload(1, 5, &[0xff, 0xff, 0xff]);
    assert_eq!(raw.failure(), (5, FailureCode::BadPayload));
    assert!(raw.closed());

    let mut raw = RawConnection::open(&server);
    raw.write(&[0x00, 0x10, 0x00, 0x00]);
    assert_eq!(raw.failure(), (0, FailureCode::FrameTooLarge), "refused from the length prefix alone");
    assert!(raw.closed());

    let mut raw = RawConnection::open(&server);
    raw.write(&[0x00, 0x00, 0x00, 0x02, 0x01, 0x00]);
    assert_eq!(raw.failure(), (0, FailureCode::BadFrame));
    assert!(raw.closed());
}

#[test]
fn hostile_frames_never_take_the_server_down_or_stall_another_client() {
    let server = Server::start();
    let (licensee, _, key) = server.party("Acme");
    let license = server.license(&licensee, "ThreeDee", seats(5), hw_model());
    let rt = runtime();
    let client = rt.block_on(connect(&server, &key));
    let round_trip = |hw: &str| {
        let grant = granted(rt.block_on(client.consume(Consume::new("ThreeDee").hw(hw))));
        rt.block_on(client.release(Release::new(grant.lease_id))).expect("an answer").expect("released");
    };
    round_trip("before");

    // Truncated: a frame cut short, then the client goes away.
    let mut whole = Vec::new();
    let hello = Request::Authenticate(Authenticate {
        credential: Credential::ApiKey(key.clone()),
        dialect: Dialect::Enterprise,
    });
    let payload = messages::encode(&hello).expect("encodes");
    let mut buf = bytes::BytesMut::new();
    frame::encode(1, 1, &payload, &mut buf);
    whole.extend_from_slice(&buf);
    for cut in [1, 4, 8, whole.len() - 1] {
        let mut raw = RawConnection::open(&server);
        raw.write(&whole[..cut]);
        drop(raw);
        round_trip("truncated");
    }

    // Oversized: a length prefix for 4 GiB, with some of the "body" behind it.
    let mut raw = RawConnection::open(&server);
    raw.write(&[0xff, 0xff, 0xff, 0xff]);
    raw.write(&[0x41; 4096]);
    assert_eq!(raw.failure(), (0, FailureCode::FrameTooLarge));
    round_trip("oversized");

    // Random: seeded garbage, authenticated or not.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..40 {
        let mut raw = RawConnection::open(&server);
        if round % 2 == 0 {
            raw.authenticate(&key);
        }
        let garbage: Vec<u8> = (0..(next() % 300 + 1)).map(|_| next() as u8).collect();
        raw.write(&garbage);
        raw.finish();
        round_trip("random");
    }
    // Valid frames whose payloads are random: each is a BadPayload, never a crash.
    for round in 0..40u32 {
        let mut raw = RawConnection::open(&server);
        raw.authenticate(&key);
        let garbage: Vec<u8> = (0..(next() % 200)).map(|_| next() as u8).collect();
        raw.send_payload(1, round + 2, &garbage);
        // Whatever the bytes decode to (often nothing, sometimes a request), the server answers
        // this request id with a well-formed frame.
        let (id, _) = raw.answer();
        assert_eq!(id, round + 2);
        round_trip("random payload");
    }
    assert_eq!(live_leases(&server, &license), json!(0));
}

#[test]
fn a_client_that_never_reads_does_not_stall_another() {
    let server = Server::start();
    let (licensee, _, key) = server.party("Acme");
    server.license(&licensee, "ThreeDee", seats(5), hw_model());
    // Thousands of signed checks pipelined and never read: the server's answers fill the socket
    // buffers, then its bound on requests in flight stops it reading this connection.
    let mut hog = RawConnection::open(&server);
    hog.authenticate(&key);
    let check = Request::Check(Consume::new("ThreeDee").hw("hog"));
    let payload = messages::encode(&check).expect("encodes");
    let mut burst = bytes::BytesMut::new();
    for id in 0..20_000u32 {
        frame::encode(1, id + 2, &payload, &mut burst);
    }
    hog.stream.set_write_timeout(Some(Duration::from_millis(200))).expect("a timeout");
    // The write stops once the server stops reading; what went out is enough.
    let _ = hog.stream.write_all(&burst);

    runtime().block_on(async {
        let client = connect(&server, &key).await;
        for round in 0..20 {
            let grant = granted(client.consume(Consume::new("ThreeDee").hw(format!("hw-{round}"))).await);
            client.release(Release::new(grant.lease_id)).await.expect("an answer").expect("released");
        }
    });
    drop(hog);
}

#[test]
fn sigterm_stops_the_tcp_listener_too() {
    let server = Server::start();
    let (_, _, key) = server.party("Acme");
    let tcp_addr = server.tcp_addr;
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    runtime().block_on(async {
        assert!(Client::connect(tcp_addr, Auth::ApiKey(key)).await.is_err(), "nothing listens after shutdown");
    });
}

/// A connection speaking the protocol by hand, for bytes the client would never send.
struct RawConnection {
    stream: TcpStream,
    buf: bytes::BytesMut,
}

impl RawConnection {
    fn open(server: &Server) -> RawConnection {
        let stream = TcpStream::connect(server.tcp_addr).expect("connects");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("a timeout");
        RawConnection { stream, buf: bytes::BytesMut::new() }
    }

    fn write(&mut self, bytes: &[u8]) {
        // The server may have closed already (e.g. after refusing a length prefix).
        let _ = self.stream.write_all(bytes);
    }

    fn send_payload(&mut self, version: u8, id: u32, payload: &[u8]) {
        let mut buf = bytes::BytesMut::new();
        frame::encode(version, id, payload, &mut buf);
        self.write(&buf);
    }

    fn send(&mut self, version: u8, id: u32, request: &Request) {
        self.send_payload(version, id, &messages::encode(request).expect("encodes"));
    }

    fn authenticate(&mut self, key: &str) {
        let hello = Authenticate { credential: Credential::ApiKey(key.into()), dialect: Dialect::Enterprise };
        self.send(1, 1, &Request::Authenticate(hello));
        assert!(matches!(self.answer(), (1, Response::Authenticated(_))));
    }

    /// Closes the writing half and waits for the server to close.
    fn finish(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = self.stream.read_to_end(&mut sink);
    }

    fn answer(&mut self) -> (u32, Response) {
        loop {
            if let Some(frame) = frame::decode(&mut self.buf, 1 << 20).expect("a well-formed answer") {
                assert_eq!(frame.version, 1);
                return (frame.request_id, messages::decode(&frame.payload).expect("a response"));
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("the server answers");
            assert!(n > 0, "the server closed without answering");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn failure(&mut self) -> (u32, FailureCode) {
        match self.answer() {
            (id, Response::Failure(failure)) => (id, failure.code),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    /// Whether the server has closed the connection (after its answer).
    fn closed(&mut self) -> bool {
        let mut chunk = [0u8; 64];
        matches!(self.stream.read(&mut chunk), Ok(0) | Err(_))
    }
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}
