//! HTTPS (SPEC section 13) on a live server, with certificates made at test time (rcgen): the
//! API over TLS with `https://` URLs in the discovery document, a plain-text request on the TLS
//! port told to use TLS, a garbage handshake and an untrusted client refused without harm, and
//! the certificate reloaded on SIGHUP without dropping a connection, a bad pair keeping the
//! current one.

mod http_common;

use http_common::{parse, Reply, Server};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A CA of the test's own and what it signs.
struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    der: CertificateDer<'static>,
}

impl TestCa {
    fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.distinguished_name.push(DnType::CommonName, "Leasehold test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("a CA key");
        let der = params.clone().self_signed(&key).expect("the CA certificate").der().clone();
        TestCa { params, key, der }
    }

    /// A certificate for 127.0.0.1 named `name`, written with its key into `dir`: (certificate
    /// PEM, key PEM, certificate DER).
    fn leaf(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf, CertificateDer<'static>) {
        let issuer = self.params.clone().self_signed(&self.key).expect("the CA certificate");
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("leaf parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("a leaf key");
        let cert = params.signed_by(&key, &issuer, &self.key).expect("the leaf certificate");
        let (cert_file, key_file) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&cert_file, cert.pem()).expect("the certificate is written");
        std::fs::write(&key_file, key.serialize_pem()).expect("the key is written");
        (cert_file, key_file, cert.der().clone())
    }
}

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
