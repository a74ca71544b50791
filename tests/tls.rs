//! TLS on both transports (SPEC section 13) of a live server, with certificates made at test
//! time (rcgen): the HTTP API over TLS with `https://` URLs in the discovery document, the TCP
//! protocol through the Rust client with a CA file; a plain-text request or client on a TLS
//! port told to use TLS, a garbage handshake and an untrusted client refused without harm; the
//! certificate reloaded on SIGHUP without dropping a connection, a bad pair keeping the current
//! one.

mod http_common;

use http_common::tls::TestCa;
use http_common::{parse, seats, Reply, Server};
use leasehold::client::{Auth, Client, ClientConfig, ClientError, ClientTls, Consume};
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A TLS client that trusts `ca`.
fn client_config(ca: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("the CA is a root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> std::io::Result<TlsStream> {
    let name = ServerName::try_from("127.0.0.1").expect("a server name").to_owned();
    let connection = rustls::ClientConnection::new(Arc::clone(config), name).map_err(std::io::Error::other)?;
    let socket = TcpStream::connect(addr)?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut stream = rustls::StreamOwned::new(connection, socket);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// The certificate the server answered `stream`'s handshake with.
fn served_certificate(stream: &TlsStream) -> CertificateDer<'static> {
    stream.conn.peer_certificates().and_then(|c| c.first()).expect("a certificate").clone()
}

/// Sends a keep-alive `GET path` on `stream` and reads its whole answer.
fn get(stream: &mut TlsStream, path: &str) -> Reply {
    let host = stream.sock.peer_addr().expect("a peer");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("the request is written");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(reply) = parse(&answer).filter(|r| complete(&answer, r)) {
            return reply;
        }
        let n = stream.read(&mut chunk).expect("the answer is read");
        assert!(n > 0, "the connection closed before the answer was complete");
        answer.extend_from_slice(&chunk[..n]);
    }
}

fn complete(answer: &[u8], reply: &Reply) -> bool {
    let length: usize = reply.header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0);
    answer.len() >= end + 4 + length
}

fn start(cert: &Path, key: &Path) -> Server {
    Server::start_with(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()])
}

#[test]
fn https_serves_the_api_and_refuses_plain_text_garbage_and_untrusted_clients() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let ca = TestCa::new();
    let (cert, key, _) = ca.leaf(scratch.path(), "server");
    let server = start(&cert, &key);
    assert!(server.banner.iter().any(|l| l.starts_with("HTTP listening on https://")), "{:?}", server.banner);
    let trusting = client_config(&ca.der);

    let mut stream = connect(server.addr, &trusting).expect("a TLS session");
    assert_eq!(get(&mut stream, "/healthz").status, 200);
    let discovery = get(&mut stream, "/.well-known/license-configuration").json();
    let https = format!("https://{}", server.addr);
    assert_eq!(discovery["issuer"], serde_json::json!(https), "{discovery}");
    assert!(discovery["jwks_uri"].as_str().is_some_and(|u| u.starts_with(&https)), "{discovery}");

    // A plain-text request is told to use TLS, in plain text.
    let plain = http_common::request(server.addr, "GET", "/healthz", &[], None);
    assert_eq!((plain.status, plain.json()["code"].clone()), (400, serde_json::json!("tlsRequired")));

    // A garbage handshake and a client that does not trust the certificate get no session.
    let mut garbage = TcpStream::connect(server.addr).expect("the server accepts");
    garbage.set_read_timeout(Some(Duration::from_secs(10))).expect("a timeout");
    garbage.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00]).expect("written");
    let mut answer = Vec::new();
    let _ = garbage.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP"), "no HTTP answer to a broken handshake");
    let stranger = client_config(&TestCa::new().der);
    assert!(connect(server.addr, &stranger).is_err(), "a certificate of another CA is not trusted");

    // The server is unharmed, and the session made first still works.
    assert_eq!(get(&mut stream, "/healthz").status, 200);
    assert_eq!(get(&mut connect(server.addr, &trusting).expect("a new session"), "/healthz").status, 200);
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_connections_and_a_bad_pair_keeps_the_current_one() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let ca = TestCa::new();
    let (cert, key, first) = ca.leaf(scratch.path(), "server");
    let server = start(&cert, &key);
    let config = client_config(&ca.der);
    let mut kept = connect(server.addr, &config).expect("a TLS session");
    assert_eq!(served_certificate(&kept), first);
    assert_eq!(get(&mut kept, "/healthz").status, 200);

    // New files, then SIGHUP: new sessions get the new certificate; the open one goes on.
    let renewed = scratch.path().join("renewed");
    std::fs::create_dir(&renewed).expect("a directory");
    let (new_cert, new_key, second) = ca.leaf(&renewed, "server");
    std::fs::copy(&new_cert, &cert).expect("the certificate is replaced");
    std::fs::copy(&new_key, &key).expect("the key is replaced");
    hang_up(&server);
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_certificate(&connect(server.addr, &config).expect("a session")) != second {
        assert!(Instant::now() < deadline, "the new certificate was not served after SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(&mut kept, "/healthz").status, 200, "the session made before the reload goes on");

    // A broken pair on SIGHUP: the current certificate stays.
    std::fs::write(&cert, "not a certificate").expect("written");
    hang_up(&server);
    std::thread::sleep(Duration::from_millis(500));
    let mut after = connect(server.addr, &config).expect("a session");
    assert_eq!(served_certificate(&after), second);
    assert_eq!(get(&mut after, "/healthz").status, 200);
}

fn hang_up(server: &Server) {
    let pid = libc::pid_t::try_from(server.pid()).expect("a pid");
    // SAFETY: kill(2) with a child's pid and a signal number has no memory effects.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0, "SIGHUP is sent");
}

#[test]
fn the_tcp_protocol_speaks_tls_to_a_client_with_the_ca_and_tells_a_plain_client_why_not() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let ca = TestCa::new();
    let ca_file = ca.write(scratch.path());
    let (cert, key, _) = ca.leaf(scratch.path(), "server");
    // The data is made over plain HTTP (the helpers' client has no TLS), then served with TLS.
    let data = scratch.path().join("data");
    let plain = Server::start_in(&data, &[], true);
    let (licensee, _, api_key) = plain.party("Acme");
    plain.license(&licensee, "ThreeDee", seats(2), serde_json::json!({}));
    plain.terminate();
    let tls_args = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];
    let server = Server::start_in(&data, &tls_args, true);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let tls = ClientTls::from_ca_file(&ca_file, "127.0.0.1").expect("the CA file");
        let auth = Auth::ApiKey(api_key.clone());
        let client =
            Client::connect_tls(server.tcp_addr, auth, ClientConfig::default(), tls).await.expect("a TLS client");
        let granted = client.consume(Consume::new("ThreeDee").hw("a")).await.expect("an answer").expect("a grant");
        let claims = client.verify(granted.token.as_deref().expect("a token")).await.expect("the token verifies");
        assert_eq!(claims["jti"], serde_json::json!(granted.lease_id.to_string()));

        // A plain client is told, in its own protocol, that the port speaks TLS.
        let plain = Client::connect(server.tcp_addr, Auth::ApiKey(api_key.clone())).await;
        match plain {
            Err(ClientError::Failure(f)) | Err(ClientError::Disconnected(Some(f))) => {
                assert_eq!(f.code, leasehold::client::FailureCode::TlsRequired, "{f}")
            }
            Err(other) => panic!("expected TlsRequired, got {other}"),
            Ok(_) => panic!("a plain client is refused"),
        }
        // A client that trusts another CA does not connect.
        let other_ca = TestCa::new().write(&scratch.path().join("other"));
        let stranger = ClientTls::from_ca_file(&other_ca, "127.0.0.1").expect("the other CA file");
        let refused = Client::connect_tls(server.tcp_addr, Auth::ApiKey(api_key), ClientConfig::default(), stranger);
        assert!(matches!(refused.await, Err(ClientError::Io(_))), "an untrusted certificate fails the handshake");
        // The first client is unharmed.
        let again = client.consume(Consume::new("ThreeDee").hw("b")).await.expect("an answer");
        assert!(again.is_ok(), "{again:?}");
    });
}
