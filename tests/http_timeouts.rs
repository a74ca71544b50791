//! The HTTP server's connection timeouts, end to end: a request head must be complete within
//! `header_read_timeout` of its first byte (a new connection's first head within that of the
//! connect), while a keep-alive connection between requests is closed only after
//! `idle_timeout`. The bounds below are generous: they check which timeout applies, not how
//! promptly the server acts on it.

mod http_common;

use http_common::Server;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const HEADER_READ_TIMEOUT: &str = "1";
const IDLE_TIMEOUT: &str = "8";

fn server() -> Server {
    Server::start_with(&["--header-read-timeout-s", HEADER_READ_TIMEOUT, "--idle-timeout-s", IDLE_TIMEOUT])
}

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.addr).expect("the server accepts");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("a read timeout");
    stream
}

/// Sends a keep-alive request for a page that does not exist and reads its whole answer.
fn exchange(stream: &mut TcpStream) -> u16 {
    stream.write_all(b"GET /no-such-page HTTP/1.1\r\nHost: test\r\n\r\n").expect("the request is sent");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().expect("a numeric content-length"));
            if answer.len() >= end + 4 + length {
                return head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status");
            }
        }
        let n = stream.read(&mut chunk).expect("the answer arrives");
        assert!(n > 0, "the server closed the connection instead of answering");
        answer.extend_from_slice(&chunk[..n]);
    }
}

/// Waits for the server to close the connection; panics if it answers or never closes.
fn wait_for_close(stream: &mut TcpStream, what: &str) -> Duration {
    let since = Instant::now();
    let mut chunk = [0u8; 256];
    match stream.read(&mut chunk) {
        Ok(0) => since.elapsed(),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => since.elapsed(),
        Ok(n) => panic!("{what}: the server sent {n} bytes instead of closing"),
        Err(e) => panic!("{what}: the connection stayed open ({e})"),
    }
}

#[test]
fn a_keep_alive_connection_between_requests_is_closed_by_the_idle_timeout_not_the_header_one() {
    let server = server();
    let mut stream = connect(&server);
    assert_eq!(exchange(&mut stream), 404);
    // Twice the header read timeout with nothing sent: still open, the next request is answered.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(exchange(&mut stream), 404, "a keep-alive connection outlives the header read timeout");
    wait_for_close(&mut stream, "an idle keep-alive connection");
}

#[test]
fn a_request_head_that_never_completes_is_cut_off() {
    let server = server();
    let mut stream = connect(&server);
    assert_eq!(exchange(&mut stream), 404);
    stream.write_all(b"GET /no-such-page HTTP/1.1\r\nHost: te").expect("half a head is sent");
    let waited = wait_for_close(&mut stream, "a half-sent head");
    assert!(waited < Duration::from_secs(6), "closed by the header timeout, not the idle one: {waited:?}");

    // The server is still serving everyone else.
    let mut other = connect(&server);
    assert_eq!(exchange(&mut other), 404);
}

#[test]
fn a_new_connection_owes_its_first_head_from_the_connect() {
    let server = server();
    let mut silent = connect(&server);
    let waited = wait_for_close(&mut silent, "a connection that never sends a request");
    assert!(waited < Duration::from_secs(6), "closed by the header timeout, not the idle one: {waited:?}");
}
