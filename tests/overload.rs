//! `overloaded` through the wire: a server whose licenses admit one waiting request
//! (`--license-queue 1`) meets bursts of concurrent requests for one license. Whatever is
//! refused is refused the way each API says (HTTP `/authz/`: 503 with code `overloaded`; Scale:
//! a signed `overloaded` token in its place in the 200 array; TCP: the `Overloaded` failure),
//! and changes nothing: the live leases are exactly the grants that were answered.
//!
//! Which requests of a burst meet a full queue depends on scheduling, so the test sends bursts
//! until one is refused (it fails if none is after many bursts); what it checks of every answer
//! does not depend on timing.

mod http_common;

use http_common::{jwt_payload, request, seats, Server};
use leasehold::client::{Auth, Client, ClientError, Consume, FailureCode};
use serde_json::{json, Value};
use std::sync::Arc;

const BURST: usize = 48;
const MAX_BURSTS: usize = 40;

fn live_leases(server: &Server, license: &str) -> u64 {
    let license = server.admin_ok("GET", &format!("/admin/licenses/{license}"), None, 200);
    license["usage"]["live_leases"].as_u64().expect("a count")
}

/// Sends bursts (`burst(n)` sends burst `n` and counts its grants and refusals) until one
/// request is refused; after each burst the license holds exactly the leases granted so far.
fn until_refused(server: &Server, license: &str, what: &str, mut burst: impl FnMut(usize) -> (u64, u64)) {
    let mut granted = 0;
    for n in 0..MAX_BURSTS {
        let (new_grants, refused) = burst(n);
        granted += new_grants;
        assert_eq!(live_leases(server, license), granted, "a refused {what} changed the license");
        if refused > 0 {
            return;
        }
    }
    panic!("{MAX_BURSTS} bursts of {BURST} concurrent {what}s to a one-request queue were never refused");
}

/// A server with one-request license queues, a consumer and a large `hw`-anchored license.
fn setup() -> (Server, String, String, String) {
    let server = Server::start_with(&["--license-queue", "1"]);
    let (licensee, consumer, key) = server.party("Acme");
    let license = server.license(&licensee, "Busy", seats(100_000), json!({"model": {"session_anchors": ["hw"]}}));
    (server, license, consumer, key)
}

#[test]
fn authz_answers_503_overloaded_and_changes_nothing() {
    let (server, license, _, key) = setup();
    let addr = server.addr;
    until_refused(&server, &license, "request", |burst| {
        let key = Arc::new(key.clone());
        let replies: Vec<_> = (0..BURST)
            .map(|i| {
                let key = Arc::clone(&key);
                std::thread::spawn(move || {
                    let path = format!("/authz/.jwt?Busy&hw=b{burst}-{i}");
                    request(addr, "GET", &path, &[("Authorization", &format!("Bearer {key}"))], None)
                })
            })
            .collect();
        let (mut granted, mut refused) = (0, 0);
        for reply in replies {
            let reply = reply.join().expect("a client thread");
            match reply.status {
                200 => {
                    assert!(jwt_payload(&reply.text())["Busy"] == json!(true), "{}", reply.text());
                    granted += 1;
                }
                503 => {
                    let error = reply.json();
                    assert_eq!(error["code"], json!("overloaded"), "{error}");
                    assert!(error["description"].as_str().is_some_and(|d| !d.is_empty()));
                    refused += 1;
                }
                other => panic!("unexpected {other}: {}", reply.text()),
            }
        }
        (granted, refused)
    });
}

#[test]
fn scale_answers_an_overloaded_token_in_its_place() {
    let (server, license, consumer, key) = setup();
    let addr = server.addr;
    until_refused(&server, &license, "checkout", |burst| {
        let (key, consumer) = (Arc::new(key.clone()), Arc::new(consumer.clone()));
        let replies: Vec<_> = (0..BURST)
            .map(|i| {
                let (key, consumer) = (Arc::clone(&key), Arc::clone(&consumer));
                std::thread::spawn(move || {
                    let body = json!([{"productName": "Busy"}]).to_string();
                    let headers = [
                        ("Authorization", format!("Bearer {key}")),
                        ("Content-Type", "application/json".to_owned()),
                        ("licenseConsumerId", consumer.to_string()),
                        ("cliHwId", format!("s{burst}-{i}")),
                    ];
                    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    request(addr, "POST", "/licensing/actions/checkout", &headers, Some(body.as_bytes()))
                })
            })
            .collect();
        let (mut granted, mut refused) = (0, 0);
        for reply in replies {
            let reply = reply.join().expect("a client thread");
            assert_eq!(reply.status, 200, "{}", reply.text());
            let tokens = reply.json();
            let claims: Value = jwt_payload(tokens[0].as_str().expect("one token per entry"));
            match claims["status"].as_str() {
                Some("success") => granted += 1,
                Some("error") => {
                    assert_eq!(claims["errorCode"], json!("overloaded"), "{claims}");
                    refused += 1;
                }
                other => panic!("a token with status {other:?}: {claims}"),
            }
        }
        (granted, refused)
    });
}

#[test]
fn tcp_answers_the_overloaded_failure_and_changes_nothing() {
    let (server, license, _, key) = setup();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    until_refused(&server, &license, "consume", |burst| {
        let outcomes = runtime.block_on(async {
            let client = Arc::new(Client::connect(server.tcp_addr, Auth::ApiKey(key.clone())).await.expect("connects"));
            let calls: Vec<_> = (0..BURST)
                .map(|i| {
                    let client = Arc::clone(&client);
                    tokio::spawn(async move { client.consume(Consume::new("Busy").hw(format!("t{burst}-{i}"))).await })
                })
                .collect();
            let mut outcomes = Vec::with_capacity(BURST);
            for call in calls {
                outcomes.push(call.await.expect("a call task"));
            }
            outcomes
        });
        let (mut granted, mut refused) = (0, 0);
        for outcome in outcomes {
            match outcome {
                Ok(Ok(_)) => granted += 1,
                Err(ClientError::Failure(failure)) => {
                    assert_eq!(failure.code, FailureCode::Overloaded, "{failure:?}");
                    refused += 1;
                }
                other => panic!("unexpected answer: {other:?}"),
            }
        }
        (granted, refused)
    });
}
