//! The Rust client's behaviour at the edges, against an in-process server (or a fake one that
//! misbehaves on purpose): pipelined calls from many tasks, reconnecting after the server closed
//! an idle connection, a request that never gets an answer, a server that goes away mid-call,
//! and the server's idle timeout, write timeout and graceful shutdown as a raw client sees them.

use leasehold::client::{Auth, Client, ClientConfig, ClientError, Consume, Dialect, FailureCode, Release, TokenChoice};
use leasehold::{
    ConsumerKind, Credit, Dimension, Enforcement, Engine, LicenseKeyRequest, LicenseeKind, NewConsumer, NewLicense,
    NewLicensee, NewProduct,
};
use leasehold_engine::claims::Claims;
use leasehold_engine::signer::{SignFuture, TokenSigner, UnsignedTokens};
use leasehold_transports::tcp::messages::{self, Authenticate, Authenticated, Credential, Request, Response};
use leasehold_transports::tcp::{self, frame, TcpConfig, TcpState};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

const PRODUCT: &str = "ThreeDee";

/// An in-process server with a 100-seat license of unlimited sessions and one consumer; its
/// address, the consumer's API key, and the trigger that shuts it down.
async fn start(config: TcpConfig) -> (SocketAddr, String, oneshot::Sender<()>) {
    start_signing_with(config, Arc::new(UnsignedTokens)).await
}

/// Signs unsecured tokens, each after a delay: answers that stay in flight for a while.
struct SlowSigner(Duration);

impl TokenSigner for SlowSigner {
    fn sign(&self, claims: Claims) -> SignFuture {
        let (delay, token) = (self.0, UnsignedTokens::render(&claims));
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok(token)
        })
    }
}

/// [`start`], with tokens signed by `signer`.
async fn start_signing_with(
    config: TcpConfig,
    signer: Arc<dyn TokenSigner>,
) -> (SocketAddr, String, oneshot::Sender<()>) {
    let engine = Engine::builder().build().expect("an engine");
    engine.create_product(NewProduct { name: PRODUCT.into(), features: vec![], tiers: vec![] }).await.unwrap();
    let licensee = engine.create_licensee(NewLicensee {
        name: "Acme".into(),
        kind: LicenseeKind::Organization,
        external_id: None,
    });
    let licensee = licensee.await.unwrap();
    let seats = Credit { dimension: Dimension::Seats, qty: 100, enforcement: Enforcement::Enforced };
    let mut license = NewLicense::new(licensee.id, PRODUCT, seats);
    license.model.session_anchors = vec![];
    engine.create_license(license).await.unwrap();
    let consumer = NewConsumer {
        name: "ada".into(),
        kind: ConsumerKind::User,
        licensees: vec![licensee.id],
        email: None,
        external_id: None,
    };
    let api_key = engine.create_consumer(consumer).await.unwrap().1;
    let state =
        Arc::new(TcpState { engine, signer, issuer: "test".into(), keys: None, trusted_proxies: Default::default() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = listener.local_addr().expect("an address");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(tcp::serve(listener, state, config, None, async move {
        let _ = stopped.await;
    }));
    (addr, api_key, stop)
}

fn frame_of(request_id: u32, response: &Response) -> Vec<u8> {
    let mut buf = bytes::BytesMut::new();
    frame::encode(1, request_id, &messages::encode(response).expect("encodes"), &mut buf);
    buf.to_vec()
}

/// Reads one whole frame (blocking); `None` at end of stream.
fn read_frame(stream: &mut std::net::TcpStream) -> Option<(u32, Vec<u8>)> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).ok()?;
    let mut rest = vec![0u8; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut rest).ok()?;
    let id = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]);
    Some((id, rest[5..].to_vec()))
}

/// A fake server on a thread: it authenticates whoever connects, then hands the stream and the
/// next request frame's id to `then`.
fn fake_server(then: impl FnOnce(std::net::TcpStream, u32) + Send + 'static) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = listener.local_addr().expect("an address");
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("a connection");
        let (hello, _) = read_frame(&mut stream).expect("the authentication");
        let welcome = Authenticated { consumer: None, license: None, issuer: "fake".into() };
        stream.write_all(&frame_of(hello, &Response::Authenticated(welcome))).expect("writes");
        let (next, _) = read_frame(&mut stream).expect("a request");
        then(stream, next);
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_one_pipelined_connection() {
    let (addr, key, _stop) = start(TcpConfig::default()).await;
    let client = Arc::new(Client::connect(addr, Auth::ApiKey(key)).await.expect("connects"));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let client = Arc::clone(&client);
            tokio::spawn(async move {
                for _ in 0..20 {
                    let grant = client.consume(Consume::new(PRODUCT)).await.expect("an answer").expect("granted");
                    let check = client.check(Consume::new(PRODUCT).token(TokenChoice::Omit)).await;
                    assert!(matches!(check, Ok(Ok(_))), "{check:?}");
                    client.release(Release::new(grant.lease_id)).await.expect("an answer").expect("released");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a task");
    }
    assert_eq!(client.connections_opened(), 1, "every call went over the one connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_server_closes_an_idle_connection_the_next_call_reconnects() {
    let config = TcpConfig { idle_timeout: Duration::from_millis(100), ..TcpConfig::default() };
    let (addr, key, _stop) = start(config).await;
    let client = Client::connect(addr, Auth::ApiKey(key)).await.expect("connects");
    assert!(matches!(client.check(Consume::new(PRODUCT)).await, Ok(Ok(_))));
    // Well past the idle timeout, the server has said IdleTimeout and closed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(matches!(client.check(Consume::new(PRODUCT)).await, Ok(Ok(_))));
    assert_eq!(client.connections_opened(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_an_answer_times_out() {
    let addr = fake_server(|stream, _| {
        std::thread::sleep(Duration::from_secs(5));
        drop(stream);
    });
    let config = ClientConfig { request_timeout: Duration::from_millis(200), ..ClientConfig::default() };
    let client = Client::connect_with(addr, Auth::ApiKey("any".into()), config).await.expect("connects");
    assert_eq!(client.check(Consume::new(PRODUCT)).await, Err(ClientError::Timeout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_flight_when_the_server_goes_away_fails_as_disconnected() {
    let addr = fake_server(|stream, _| drop(stream));
    let client = Client::connect(addr, Auth::ApiKey("any".into())).await.expect("connects");
    assert_eq!(client.check(Consume::new(PRODUCT)).await, Err(ClientError::Disconnected(None)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_told_why_it_is_closed() {
    let config = TcpConfig { idle_timeout: Duration::from_millis(100), ..TcpConfig::default() };
    let (addr, key, _stop) = start(config).await;
    let failure = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).expect("connects");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("a timeout");
        let hello = Authenticate { credential: Credential::ApiKey(key), dialect: Dialect::Enterprise };
        let mut buf = bytes::BytesMut::new();
        frame::encode(1, 1, &messages::encode(&Request::Authenticate(hello)).expect("encodes"), &mut buf);
        stream.write_all(&buf).expect("writes");
        read_frame(&mut stream).expect("authenticated");
        let (id, payload) = read_frame(&mut stream).expect("the server's last word");
        assert!(read_frame(&mut stream).is_none(), "then it closes");
        (id, messages::decode::<Response>(&payload).expect("a response"))
    })
    .await
    .expect("the raw client");
    match failure {
        (0, Response::Failure(failure)) => assert_eq!(failure.code, FailureCode::IdleTimeout),
        other => panic!("expected IdleTimeout on request id 0, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_slower_than_the_idle_timeout_is_not_cut_by_it() {
    let config = TcpConfig { idle_timeout: Duration::from_millis(100), ..TcpConfig::default() };
    let (addr, key, _stop) = start_signing_with(config, Arc::new(SlowSigner(Duration::from_millis(600)))).await;
    let client = Client::connect(addr, Auth::ApiKey(key)).await.expect("connects");
    // Nothing arrives for six idle timeouts, but a request is in flight all along.
    let grant = client.consume(Consume::new(PRODUCT)).await.expect("an answer").expect("granted");
    assert!(grant.token.is_some());
    assert_eq!(client.connections_opened(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_the_requests_in_flight_before_saying_so() {
    let (addr, key, stop) =
        start_signing_with(TcpConfig::default(), Arc::new(SlowSigner(Duration::from_millis(500)))).await;
    let connection = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).expect("connects");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("a timeout");
        let hello = Authenticate { credential: Credential::ApiKey(key), dialect: Dialect::Enterprise };
        let mut buf = bytes::BytesMut::new();
        frame::encode(1, 1, &messages::encode(&Request::Authenticate(hello)).expect("encodes"), &mut buf);
        frame::encode(1, 2, &messages::encode(&Request::Consume(Consume::new(PRODUCT))).expect("encodes"), &mut buf);
        stream.write_all(&buf).expect("writes");
        read_frame(&mut stream).expect("authenticated");
        stream
    });
    let mut stream = connection.await.expect("the raw client");
    // The consume waits for its signature while the server is told to stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).expect("the server is running");
    let frames = tokio::task::spawn_blocking(move || {
        std::iter::from_fn(|| read_frame(&mut stream))
            .map(|(id, payload)| (id, messages::decode::<Response>(&payload).expect("a response")))
            .collect::<Vec<_>>()
    });
    let frames = frames.await.expect("the raw client");
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert!(matches!(&frames[0], (2, Response::Granted(grant)) if grant.token.is_some()), "{frames:?}");
    assert!(matches!(&frames[1], (0, Response::Failure(f)) if f.code == FailureCode::ShuttingDown), "{frames:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_its_answers_is_disconnected_after_the_write_timeout() {
    let config = TcpConfig { write_timeout: Duration::from_millis(200), ..TcpConfig::default() };
    let (addr, key, _stop) = start(config).await;
    let ending = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).expect("connects");
        let hello = Authenticate { credential: Credential::ApiKey(key), dialect: Dialect::Enterprise };
        let mut buf = bytes::BytesMut::new();
        frame::encode(1, 1, &messages::encode(&Request::Authenticate(hello)).expect("encodes"), &mut buf);
        stream.write_all(&buf).expect("writes");
        read_frame(&mut stream).expect("authenticated");
        // Far more checks than the socket buffers hold the answers of, pipelined and never read:
        // the server's writes stall, and it stops reading this connection.
        let check = messages::encode(&Request::Check(Consume::new(PRODUCT).token(TokenChoice::Omit))).expect("encodes");
        let mut burst = bytes::BytesMut::new();
        for id in 0..200_000u32 {
            frame::encode(1, id + 2, &check, &mut burst);
        }
        stream.set_write_timeout(Some(Duration::from_millis(500))).expect("a timeout");
        let _ = stream.write_all(&burst);
        std::thread::sleep(Duration::from_secs(1));
        // By now the server has given up writing: what it wrote is still there to read, then the
        // stream ends (or is reset). An open connection would block the read until its timeout.
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("a timeout");
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    return Err(e)
                }
                Err(_) => return Ok(()),
            }
        }
    });
    let ending = ending.await.expect("the raw client");
    assert!(ending.is_ok(), "the connection is still open: {ending:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_open_connections_and_stops_accepting() {
    let (addr, key, stop) = start(TcpConfig::default()).await;
    let client = Client::connect(addr, Auth::ApiKey(key.clone())).await.expect("connects");
    assert!(matches!(client.check(Consume::new(PRODUCT)).await, Ok(Ok(_))));
    stop.send(()).expect("the server is running");
    // The open connection is told ShuttingDown and closed; reconnecting then finds no listener.
    let mut refused = None;
    for _ in 0..250 {
        match client.check(Consume::new(PRODUCT)).await {
            // Answered before the shutdown reached the connection, or cut by it.
            Ok(_) | Err(ClientError::Disconnected(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert!(matches!(refused, Some(ClientError::Io(_))), "{refused:?}");
    assert!(Client::connect(addr, Auth::ApiKey(key)).await.is_err(), "nothing accepts after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_license_key_connection_accepted_on_another_worker_moves_to_its_license_and_works() {
    let engine = Engine::builder().workers(2).build().expect("an engine");
    engine.create_product(NewProduct { name: PRODUCT.into(), features: vec![], tiers: vec![] }).await.unwrap();
    let licensee = engine.create_licensee(NewLicensee {
        name: "Acme".into(),
        kind: LicenseeKind::Organization,
        external_id: None,
    });
    let licensee = licensee.await.unwrap();
    // The first connection is accepted on worker 0 (round robin from the start): a license homed
    // on worker 1 makes it move.
    let key = loop {
        let seats = Credit { dimension: Dimension::Seats, qty: 2, enforcement: Enforcement::Enforced };
        let mut new = NewLicense::new(licensee.id, PRODUCT, seats);
        new.license_key = LicenseKeyRequest::Generate;
        new.revokes_sibling_keys = false;
        new.model.session_anchors = vec![];
        let license = engine.create_license(new).await.unwrap();
        if engine.home_worker(license.id) == 1 {
            break license.license_key.clone().expect("a generated key");
        }
    };
    let state = Arc::new(TcpState {
        engine,
        signer: Arc::new(UnsignedTokens),
        issuer: "test".into(),
        keys: None,
        trusted_proxies: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(tcp::serve(listener, state, TcpConfig::default(), None, std::future::pending()));

    let client = Client::connect(addr, Auth::LicenseKey(key)).await.expect("connects");
    let first = client.consume(Consume::new(PRODUCT)).await.expect("an answer").expect("granted");
    let second = client.consume(Consume::new(PRODUCT)).await.expect("an answer").expect("granted");
    let third = client.consume(Consume::new(PRODUCT)).await.expect("an answer");
    assert_eq!(third.map(|_| ()).map_err(|d| d.code), Err("licenseQuotaExceeded".to_owned()));
    for lease in [first.lease_id, second.lease_id] {
        client.release(Release::new(lease)).await.expect("an answer").expect("released");
    }
    assert_eq!(client.connections_opened(), 1, "the move kept the connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_frame_limit_is_refused_without_costing_the_connection() {
    let (addr, key, _stop) = start(TcpConfig::default()).await;
    let client = Client::connect(addr, Auth::ApiKey(key)).await.expect("connects");
    let huge = Consume::new("x".repeat(100_000));
    assert!(matches!(client.check(huge).await, Err(ClientError::Protocol(_))));
    assert!(matches!(client.check(Consume::new(PRODUCT)).await, Ok(Ok(_))));
    assert_eq!(client.connections_opened(), 1);
}
