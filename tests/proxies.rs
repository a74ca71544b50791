//! The client's address behind proxies (SPEC section 13) on a live server, seen through a
//! license whose IP rules block 203.0.113.0/24: `X-Forwarded-For` and `Forwarded` believed only
//! from a trusted proxy and only right of what a client could write itself; on the TCP protocol,
//! a PROXY protocol v2 header from a trusted proxy (a relay in the test) names the client, and one
//! from an untrusted peer is refused as the garbage it is there.

mod http_common;

use http_common::{request, seats, Server};
use leasehold::client::{Auth, Client, ClientError, Consume, FailureCode};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};

fn blocked_model() -> Value {
    json!({"model": {"session_anchors": ["hw"], "ip_rules": {"blocked": ["203.0.113.0/24"]}}})
}

/// A server with a licensee whose license blocks 203.0.113.0/24, and its consumer's API key.
fn licensed(args: &[&str]) -> (Server, String) {
    let server = Server::start_with(args);
    let (licensee, _, key) = server.party("Acme");
    server.license(&licensee, "ThreeDee", seats(5), blocked_model());
    (server, key)
}

/// The answer to a check of ThreeDee with `headers`: "granted" or the refusal's code.
fn check(server: &Server, key: &str, headers: &[(&str, &str)]) -> String {
    let bearer = format!("Bearer {key}");
    let mut all = vec![("Authorization", bearer.as_str())];
    all.extend_from_slice(headers);
    let reply = request(server.addr, "GET", "/authz/.json?ThreeDee&hw=x&doConsume=false", &all, None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json();
    match answer["ThreeDee_errorCode"].as_str() {
        Some(code) => code.to_owned(),
        None => {
            assert_eq!(answer["ThreeDee"], json!(true), "{answer}");
            "granted".to_owned()
        }
    }
}

#[test]
fn forwarded_addresses_are_believed_only_from_trusted_proxies_and_only_right_of_the_client() {
    let (behind, key) = licensed(&["--trusted-proxies", "127.0.0.1/32,10.0.0.0/8"]);
    assert_eq!(check(&behind, &key, &[]), "granted", "the proxy's own address is not blocked");
    let blocked = "clientIpAddressBlocked";
    assert_eq!(check(&behind, &key, &[("X-Forwarded-For", "203.0.113.9")]), blocked);
    assert_eq!(check(&behind, &key, &[("X-Forwarded-For", "203.0.113.9, 10.1.2.3")]), blocked, "through two proxies");
    assert_eq!(check(&behind, &key, &[("Forwarded", r#"for="203.0.113.9:4711";proto=https"#)]), blocked);
    // What a client writes itself is left of the address its proxy adds: never believed.
    assert_eq!(check(&behind, &key, &[("X-Forwarded-For", "198.51.100.4, 203.0.113.9, 198.51.100.5")]), "granted");
    assert_eq!(check(&behind, &key, &[("X-Forwarded-For", "203.0.113.9, garbage")]), "granted");

    // A server that trusts no proxy believes no header.
    let (direct, key) = licensed(&[]);
    assert_eq!(check(&direct, &key, &[("X-Forwarded-For", "203.0.113.9")]), "granted");
    assert_eq!(check(&direct, &key, &[("Forwarded", "for=203.0.113.9")]), "granted");
}

/// A PROXY protocol v2 header for a TCP connection from `client` (IPv4) to 10.0.0.1:7070.
fn proxy_header(client: Ipv4Addr) -> Vec<u8> {
    let mut header = vec![0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0x00, 12];
    header.extend_from_slice(&client.octets());
    header.extend_from_slice(&[10, 0, 0, 1, 0xC3, 0x50, 0x1B, 0x9E]);
    header
}

/// A proxy in front of `upstream`: each connection it accepts is relayed after `header`.
fn relay(upstream: SocketAddr, header: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port for the proxy");
    let addr = listener.local_addr().expect("an address");
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(mut server) = TcpStream::connect(upstream) else { continue };
            if server.write_all(&header).is_err() {
                continue;
            }
            let (mut from_client, mut to_server) =
                (client.try_clone().expect("a clone"), server.try_clone().expect("a clone"));
            std::thread::spawn(move || pump(&mut from_client, &mut to_server));
            std::thread::spawn(move || pump(&mut server, &mut client.try_clone().expect("a clone")));
        }
    });
    addr
}

fn pump(from: &mut TcpStream, to: &mut TcpStream) {
    let mut chunk = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut chunk) {
        if n == 0 || to.write_all(&chunk[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

async fn consume_through(proxy: SocketAddr, key: &str) -> Result<Result<(), String>, ClientError> {
    let client = Client::connect(proxy, Auth::ApiKey(key.into())).await?;
    let answer = client.consume(Consume::new("ThreeDee").hw("a")).await?;
    Ok(answer.map(|_| ()).map_err(|denied| denied.code))
}

#[test]
fn a_trusted_proxy_names_the_tcp_client_with_proxy_protocol_v2_and_an_untrusted_peers_header_is_refused() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let (behind, key) = licensed(&["--trusted-proxies", "127.0.0.1"]);
    let from_blocked = relay(behind.tcp_addr, proxy_header(Ipv4Addr::new(203, 0, 113, 9)));
    let from_allowed = relay(behind.tcp_addr, proxy_header(Ipv4Addr::new(198, 51, 100, 4)));
    runtime.block_on(async {
        let refused = consume_through(from_blocked, &key).await.expect("an answer");
        assert_eq!(refused, Err("clientIpAddressBlocked".to_owned()));
        assert_eq!(consume_through(from_allowed, &key).await.expect("an answer"), Ok(()));
        // The proxy's own connections, without a header, are its own.
        assert_eq!(consume_through(behind.tcp_addr, &key).await.expect("an answer"), Ok(()));
    });

    // A server that trusts no proxy reads a PROXY header as the bad frame it is.
    let (direct, key) = licensed(&[]);
    let spoofed = relay(direct.tcp_addr, proxy_header(Ipv4Addr::new(198, 51, 100, 4)));
    runtime.block_on(async {
        match consume_through(spoofed, &key).await {
            Err(ClientError::Failure(f)) | Err(ClientError::Disconnected(Some(f))) => {
                assert!(matches!(f.code, FailureCode::FrameTooLarge | FailureCode::BadFrame), "{f}")
            }
            other => panic!("a spoofed PROXY header is refused, not {other:?}"),
        }
    });
}
