//! Webhooks against a real server and a real receiver, a hyper server in the test (SPEC section
//! 11): deliveries are signed, retried after failures, in event order, and none is lost to a
//! kill -9; an `https://` receiver gets them when its CA is trusted, and none otherwise.

mod http_common;

use http_body_util::{BodyExt, Empty};
use http_common::tls::TestCa;
use http_common::Server;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use leasehold_transports::tls::{ServerTls, TlsFiles};
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request a receiver got: its headers (lower-case names) and body.
#[derive(Clone, Debug)]
struct Received {
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
    }
}

/// An HTTP receiver (hyper's server, on a runtime of its own) that answers 503 to its first
/// `fail_first` requests and 200 after; over TLS when it has a certificate.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(listener: TcpListener, fail_first: usize) -> Receiver {
        Receiver::start_with(listener, fail_first, None)
    }

    fn start_with(listener: TcpListener, fail_first: usize, tls: Option<ServerTls>) -> Receiver {
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let (seen, answered) = (Arc::clone(&got), Arc::new(AtomicUsize::new(0)));
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else { continue };
                    let (seen, answered) = (Arc::clone(&seen), Arc::clone(&answered));
                    let receive = service_fn(move |request: Request<Incoming>| {
                        let (seen, answered) = (Arc::clone(&seen), Arc::clone(&answered));
                        async move {
                            let headers = request
                                .headers()
                                .iter()
                                .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                                .collect();
                            let body = request.into_body().collect().await?.to_bytes();
                            let body = String::from_utf8(body.to_vec()).unwrap();
                            seen.lock().unwrap().push(Received { headers, body });
                            let failing = answered.fetch_add(1, Ordering::SeqCst) < fail_first;
                            let status = if failing { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
                            let mut answer = Response::new(Empty::<Bytes>::new());
                            *answer.status_mut() = status;
                            Ok::<_, hyper::Error>(answer)
                        }
                    });
                    match tls.clone() {
                        None => {
                            drop(tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), receive)))
                        }
                        Some(tls) => drop(tokio::spawn(async move {
                            let Ok(stream) = tls.acceptor().accept(stream).await else { return };
                            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), receive).await;
                        })),
                    }
                }
            });
        });
        Receiver { addr, got }
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// The event ids delivered, each once, in the order first received.
    fn event_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for r in self.got() {
            let id = r.header("leasehold-event-id").to_owned();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    fn wait_for(&self, events: usize, within: Duration) {
        let until = Instant::now() + within;
        while self.event_ids().len() < events {
            assert!(Instant::now() < until, "{} of {events} events arrived: {:?}", self.event_ids().len(), self.got());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn subscribe(server: &Server, receiver: SocketAddr, events: Value) -> Value {
    server.admin_ok(
        "POST",
        "/admin/webhooks",
        Some(json!({"url": format!("http://{receiver}/hooks"), "events": events})),
        201,
    )
}

#[test]
fn deliveries_are_signed_retried_and_in_order() {
    let server = Server::start();
    let receiver = Receiver::start(TcpListener::bind("127.0.0.1:0").unwrap(), 2);
    let hook = subscribe(&server, receiver.addr, json!(["licensee.*"]));
    let secret = hook["secret"].as_str().expect("the secret is answered at creation").to_owned();
    assert!(secret.starts_with("whsec_"));
    let id = hook["id"].as_str().unwrap().to_owned();
    let fetched = server.admin_ok("GET", &format!("/admin/webhooks/{id}"), None, 200);
    assert!(fetched.get("secret").is_none(), "the secret is shown only once: {fetched}");

    let names = ["First", "Second", "Third"];
    for name in names {
        server.admin_ok("POST", "/admin/licensees", Some(json!({"name": name, "kind": "organization"})), 201);
    }
    server.admin_ok("POST", "/admin/products", Some(json!({"name": "NotWanted"})), 201);
    receiver.wait_for(3, Duration::from_secs(30));

    let got = receiver.got();
    assert_eq!(got.len(), 5, "two refused attempts, then three deliveries: {got:?}");
    let delivered: Vec<String> = got[2..]
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["data"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(delivered, names, "in event order");
    for r in &got {
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(r.header("leasehold-event-type"), "licensee.created");
        let signed = r.header("leasehold-signature");
        let t: u64 = signed.strip_prefix("t=").and_then(|s| s.split(',').next()).unwrap().parse().unwrap();
        assert_eq!(
            signed,
            leasehold_engine::webhooks::signature(&secret, t, r.body.as_bytes()),
            "the signature verifies"
        );
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["id"].as_str().unwrap(), r.header("leasehold-event-id"));
    }

    let deliveries = server.admin_ok("GET", &format!("/admin/webhooks/{id}/deliveries"), None, 200);
    let items = deliveries["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|d| d["status"] == "delivered" && d["last_status_code"] == 200), "{deliveries}");
    assert_eq!(items[2]["attempts"], 3, "the oldest was retried twice: {deliveries}");

    let event_id = items[0]["event_id"].as_str().unwrap();
    let retried = server.admin_ok("POST", &format!("/admin/webhooks/{id}/deliveries/{event_id}/retry"), None, 202);
    assert_eq!(retried["retry_requested"], true);
    receiver.wait_for(3, Duration::from_secs(1));
    let until = Instant::now() + Duration::from_secs(10);
    while receiver.got().len() < 6 {
        assert!(Instant::now() < until, "the retry was not sent");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.admin("POST", &format!("/admin/webhooks/{id}/deliveries/999999/retry"), None).status, 404);
    let metrics = http_common::request(server.addr, "GET", "/metrics", &[], None).text();
    assert!(metrics.contains("leasehold_webhook_attempts_total{outcome=\"failed\"} 2"), "{metrics}");
}

#[test]
fn bad_webhooks_are_refused_and_deleted_ones_stop() {
    let server = Server::start();
    for body in [
        json!({"url": "ftp://example.com/", "events": ["*"]}),
        json!({"url": "http://example.com/", "events": []}),
        json!({"url": "http://example.com/", "events": ["Bad Type"]}),
        json!({"url": "http://example.com/", "events": ["*"], "secret": "mine"}),
    ] {
        assert_eq!(server.admin("POST", "/admin/webhooks", Some(body.clone())).status, 400, "{body}");
    }
    let receiver = Receiver::start(TcpListener::bind("127.0.0.1:0").unwrap(), 0);
    let hook = subscribe(&server, receiver.addr, json!(["*"]));
    let id = hook["id"].as_str().unwrap();
    assert_eq!(server.admin("DELETE", &format!("/admin/webhooks/{id}"), None).status, 204);
    assert_eq!(server.admin("GET", &format!("/admin/webhooks/{id}"), None).status, 404);
    server.admin_ok("POST", "/admin/products", Some(json!({"name": "AfterDelete"})), 201);
    std::thread::sleep(Duration::from_millis(500));
    assert!(receiver.got().is_empty(), "a deleted webhook gets nothing: {:?}", receiver.got());
}

#[test]
fn deliveries_pending_at_a_kill_9_are_made_after_the_restart() {
    let scratch = tempfile::tempdir().unwrap();
    let server = Server::start_in(scratch.path(), &[], true);
    // A receiver that is down: its port is free.
    let port_holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = port_holder.local_addr().unwrap();
    drop(port_holder);
    subscribe(&server, addr, json!(["product.*"]));
    let names: Vec<String> = (0..5).map(|i| format!("P{i}")).collect();
    for name in &names {
        server.admin_ok("POST", "/admin/products", Some(json!({"name": name})), 201);
    }
    std::thread::sleep(Duration::from_millis(300));
    server.kill();

    let receiver = Receiver::start(TcpListener::bind(addr).expect("the receiver's port is free again"), 0);
    let _server = Server::start_in(scratch.path(), &[], true);
    receiver.wait_for(5, Duration::from_secs(30));
    let delivered: Vec<String> = receiver
        .got()
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["data"]["name"].as_str().unwrap().to_owned())
        .collect();
    let mut firsts = delivered.clone();
    firsts.dedup();
    assert_eq!(firsts, names, "every event, in order: {delivered:?}");
}

#[test]
fn a_receiver_that_never_answers_does_not_hold_up_checkouts() {
    let server = Server::start();
    // Accepts connections and never answers: each attempt waits out the 10 s answer limit.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let holder = Arc::clone(&held);
    std::thread::spawn(move || {
        for stream in silent.incoming().flatten() {
            holder.lock().unwrap().push(stream);
        }
    });
    let hook = subscribe(&server, silent_addr, json!(["*"]));
    let (licensee, _, key) = server.party("Busy");
    server.license(&licensee, "Busy", http_common::seats(1), json!({"model": {"session_anchors": ["hw"]}}));
    let until = Instant::now() + Duration::from_secs(5);
    while held.lock().unwrap().is_empty() {
        assert!(Instant::now() < until, "the webhook never connected");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Refusals for lack of seats are events too (seat.exhausted), queued behind the silent one.
    let started = Instant::now();
    for n in 0..100 {
        let answer = server.authz(&key, &format!("/authz/.txt?Busy&hw=m{}", n % 2)).text();
        assert!(answer == "true" || answer.starts_with("false"), "{answer}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "100 checkouts answered before the first attempt of the silent receiver timed out"
    );
    let id = hook["id"].as_str().unwrap();
    let deliveries = server.admin_ok("GET", &format!("/admin/webhooks/{id}/deliveries"), None, 200);
    assert!(deliveries["items"].as_array().unwrap().iter().all(|d| d["status"] != "delivered"), "{deliveries}");
}

#[test]
fn an_https_receiver_gets_deliveries_when_its_ca_is_trusted_and_none_otherwise() {
    let scratch = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_file = ca.write(scratch.path());
    let (cert, key, _) = ca.leaf(scratch.path(), "receiver");
    let tls = ServerTls::new(TlsFiles { cert, key }, &[b"http/1.1"]).expect("the receiver's certificate");
    let receiver = Receiver::start_with(TcpListener::bind("127.0.0.1:0").unwrap(), 0, Some(tls));
    let hook = json!({"url": format!("https://{}/hooks", receiver.addr), "events": ["licensee.*"]});

    let config = scratch.path().join("leasehold.toml");
    std::fs::write(&config, format!("[webhooks]\nca_file = {:?}\n", ca_file.display().to_string())).unwrap();
    let trusting = Server::start_with(&["--config", config.to_str().unwrap()]);
    let secret = trusting.admin_ok("POST", "/admin/webhooks", Some(hook.clone()), 201)["secret"].clone();
    trusting.party("Secure Co");
    receiver.wait_for(1, Duration::from_secs(20));
    let got = receiver.got();
    assert_eq!(got[0].header("leasehold-event-type"), "licensee.created", "{got:?}");
    assert!(got[0].header("leasehold-signature").starts_with("t="), "{got:?}");
    assert!(secret.as_str().is_some_and(|s| s.starts_with("whsec_")));

    // A server that does not trust the receiver's CA sends it nothing, and says why.
    let doubting = Server::start();
    let id = doubting.admin_ok("POST", "/admin/webhooks", Some(hook), 201)["id"].as_str().unwrap().to_owned();
    doubting.party("Doubt Co");
    let until = Instant::now() + Duration::from_secs(20);
    let error = loop {
        let deliveries = doubting.admin_ok("GET", &format!("/admin/webhooks/{id}/deliveries"), None, 200);
        if let Some(error) = deliveries["items"][0]["last_error"].as_str() {
            break error.to_owned();
        }
        assert!(Instant::now() < until, "no attempt recorded: {deliveries}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert_eq!(receiver.got().len(), got.len(), "nothing reached the receiver from the doubting server");

    // A CA file that holds no certificate stops the server at start with the reason.
    std::fs::write(&ca_file, "not a certificate").unwrap();
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_leasehold"))
        .args(["serve", "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--config", config.to_str().unwrap()])
        .arg("--data-dir")
        .arg(scratch.path().join("data"))
        .env("LEASEHOLD_ADMIN_TOKEN", http_common::ADMIN)
        .output()
        .expect("the leasehold binary runs");
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("webhooks.ca_file"), "{stderr}");
}
