//! Shared by the `tests/http_*.rs` end-to-end tests: starts the real `leasehold` binary on a
//! free port with a scratch data directory, and speaks HTTP/1.1 to it over plain sockets (a
//! tiny client of our own, so that hostile tests can send bytes no HTTP library would).

#![allow(dead_code)] // each test binary uses its own part of this module

pub mod scale_sdk;
pub mod smtp;
pub mod tls;
pub mod web_client;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// The admin token every test server is started with.
pub const ADMIN: &str = "test-admin-token-0123456789";

/// A running `leasehold serve`.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its binary TCP protocol listens.
    pub tcp_addr: SocketAddr,
    /// What it printed on stdout before it started serving.
    pub banner: Vec<String>,
    dir: PathBuf,
    _scratch: Option<tempfile::TempDir>,
}

impl Server {
    /// A server on a fresh data directory.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// A server on a fresh data directory, with extra `serve` arguments.
    pub fn start_with(args: &[&str]) -> Server {
        let scratch = tempfile::tempdir().expect("a scratch directory");
        let dir = scratch.path().to_path_buf();
        let mut server = Server::start_in(&dir, args, true);
        server._scratch = Some(scratch);
        server
    }

    /// A server on `dir` (kept when the server stops, for restarts).
    pub fn start_in(dir: &Path, args: &[&str], admin_env: bool) -> Server {
        Server::start_in_env(dir, args, admin_env, &[])
    }

    /// A server on `dir` with `envs` in its environment besides the usual.
    pub fn start_in_env(dir: &Path, args: &[&str], admin_env: bool, envs: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_leasehold"));
        command
            .args(["serve", "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(args)
            .envs(envs.iter().copied())
            .env("LEASEHOLD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if admin_env {
            command.env("LEASEHOLD_ADMIN_TOKEN", ADMIN);
        } else {
            command.env_remove("LEASEHOLD_ADMIN_TOKEN");
        }
        let mut child = command.spawn().expect("the leasehold binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut banner = Vec::new();
        let addr = loop {
            let line = lines.next().expect("the server prints its address").expect("stdout is UTF-8");
            banner.push(line.clone());
            if let Some(rest) = line.strip_prefix("HTTP listening on ") {
                let url = rest.split_whitespace().next().expect("an address");
                let addr = url.trim_start_matches("http://").trim_start_matches("https://");
                break addr.parse().expect("a socket address");
            }
        };
        let mut tcp_addr = None;
        for line in lines.by_ref() {
            let line = line.expect("stdout is UTF-8");
            let done = line.starts_with("Stop with");
            if let Some(rest) = line.strip_prefix("TCP listening on ") {
                tcp_addr = rest.split_whitespace().next().and_then(|a| a.parse().ok());
            }
            banner.push(line);
            if done {
                break;
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let tcp_addr = tcp_addr.expect("the server prints its TCP address");
        Server { child, addr, tcp_addr, banner, dir: dir.to_path_buf(), _scratch: None }
    }

    /// The server's process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        assert!(sent.success());
        self.child.wait().expect("the server exits")
    }

    /// Kills the process with SIGKILL (no chance to flush or clean up) and waits for it.
    pub fn kill(mut self) -> ExitStatus {
        self.child.kill().expect("SIGKILL is sent");
        self.child.wait().expect("the server exits")
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// An admin API call with the right token.
    pub fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.admin_as(ADMIN, method, path, body)
    }

    /// An admin call with bearer token `token` (the admin token or a credential's).
    pub fn admin_as(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> Reply {
        let body = body.map(|b| b.to_string());
        let mut headers = vec![("Authorization", format!("Bearer {token}"))];
        if body.is_some() {
            headers.push(("Content-Type", "application/json".into()));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        request(self.addr, method, path, &headers, body.as_deref().map(str::as_bytes))
    }

    /// An admin call that must succeed with `status`; its JSON answer.
    pub fn admin_ok(&self, method: &str, path: &str, body: Option<Value>, status: u16) -> Value {
        let reply = self.admin(method, path, body);
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.text());
        reply.json()
    }

    /// `GET <path_and_query>` as the consumer whose API key is `key`.
    pub fn authz(&self, key: &str, path_and_query: &str) -> Reply {
        request(self.addr, "GET", path_and_query, &[("Authorization", &format!("Bearer {key}"))], None)
    }

    /// The `kid`s of the published signing keys, the current one first.
    pub fn kids(&self) -> Vec<String> {
        let jwks = request(self.addr, "GET", "/.well-known/jwks.json", &[], None).json();
        jwks["keys"].as_array().expect("keys").iter().map(|k| k["kid"].as_str().expect("a kid").to_owned()).collect()
    }

    /// A verifier of tokens against the published JWKS.
    pub fn verifier(&self) -> leasehold::tokens::Verifier {
        let jwks = request(self.addr, "GET", "/.well-known/jwks.json", &[], None);
        assert_eq!(jwks.status, 200);
        leasehold::tokens::Verifier::from_jwks_json(&jwks.body).expect("a usable JWKS")
    }

    /// Creates a licensee and a consumer of it; (licensee id, consumer id, API key).
    pub fn party(&self, name: &str) -> (String, String, String) {
        let licensee =
            self.admin_ok("POST", "/admin/licensees", Some(json!({"name": name, "kind": "organization"})), 201);
        let licensee = licensee["id"].as_str().expect("an id").to_owned();
        let consumer = self.admin_ok(
            "POST",
            "/admin/consumers",
            Some(json!({"name": format!("{name}-user"), "kind": "user", "licensees": [licensee]})),
            201,
        );
        let id = consumer["id"].as_str().expect("an id").to_owned();
        let key = consumer["api_key"].as_str().expect("an API key").to_owned();
        (licensee, id, key)
    }

    /// Creates product `product` and a license of it for `licensee` with `credit` and `extra`
    /// fields (`model`, `valid_from`, ...); the license id.
    pub fn license(&self, licensee: &str, product: &str, credit: Value, extra: Value) -> String {
        self.admin_ok("POST", "/admin/products", Some(json!({"name": product})), 201);
        let mut body = json!({"licensee": licensee, "product": product, "credit": credit});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let license = self.admin_ok("POST", "/admin/licenses", Some(body), 201);
        license["id"].as_str().expect("an id").to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The time now, as the engine counts it (to verify tokens at).
pub fn now() -> leasehold::Timestamp {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis();
    leasehold::Timestamp::from_millis(i64::try_from(ms).expect("a sane clock"))
}

/// The Python the tests run scripts with: `$LEASEHOLD_TEST_PYTHON`, with tenduke-scale 2.3.0,
/// PyJWT, cryptography, jwcrypto and aiosmtpd (`scripts/test-all` makes that venv). A relative
/// path (`target/pyenv/bin/python`) is taken from the workspace root.
pub fn test_python() -> String {
    let python = std::env::var("LEASEHOLD_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("set LEASEHOLD_TEST_PYTHON to a Python with the tests' packages (scripts/test-all makes one)")
    });
    if python.contains('/') && Path::new(&python).is_relative() {
        return Path::new(env!("CARGO_MANIFEST_DIR")).join(&python).to_string_lossy().into_owned();
    }
    python
}

/// `n` enforced seats.
pub fn seats(n: u64) -> Value {
    json!({"dimension": "SEATS", "qty": n, "enforcement": "ENFORCED"})
}

/// An HTTP response.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Reply {
    /// The first header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The `Content-Type` without parameters.
    pub fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("").split(';').next().unwrap_or("").trim()
    }
}

/// Sends `method path` with `headers` and `body` (and `Connection: close`).
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
    let mut bytes = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").into_bytes();
    for (name, value) in headers {
        bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if let Some(body) = body {
        bytes.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    if let Some(body) = body {
        bytes.extend_from_slice(body);
    }
    raw(addr, &bytes).expect("the server answers")
}

/// Writes `bytes` as they are and reads the answer until the server closes the connection;
/// `None` when the server closed it without answering.
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> Option<Reply> {
    send(addr, bytes, false)
}

/// Like [`raw`], then closes the writing half: the server sees the request end there.
pub fn raw_then_eof(addr: SocketAddr, bytes: &[u8]) -> Option<Reply> {
    send(addr, bytes, true)
}

fn send(addr: SocketAddr, bytes: &[u8], eof: bool) -> Option<Reply> {
    let mut stream = TcpStream::connect(addr).expect("the server accepts");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("a timeout");
    // The server may answer (and close) before reading everything, e.g. a refused large body.
    let _ = stream.write_all(bytes);
    if eof {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    parse(&answer)
}

/// The answer in `answer` (head and body as far as `Content-Length` says), if its head is complete.
pub fn parse(answer: &[u8]) -> Option<Reply> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &answer[end + 4..];
    let length = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse::<usize>().ok());
    let body = match length {
        Some(n) => rest[..n.min(rest.len())].to_vec(),
        None => rest.to_vec(),
    };
    Some(Reply { status, headers, body })
}

/// `GET path_and_query` with `headers` that never panics: `None` when the connection failed or
/// was cut before the whole answer arrived (as when the server is killed), so an answer that
/// comes back is one the server really gave.
pub fn try_get(addr: SocketAddr, path_and_query: &str, headers: &[(&str, &str)]) -> Option<Reply> {
    try_request(addr, "GET", path_and_query, headers, Duration::from_secs(30))
}

/// [`try_get`] with any method and no body, giving up on an answer after `timeout`.
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Option<Reply> {
    let mut bytes = format!("{method} {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").into_bytes();
    for (name, value) in headers {
        bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.write_all(&bytes).ok()?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let reply = parse(&answer)?;
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let length: usize = reply.header("content-length")?.parse().ok()?;
    (answer.len() - end - 4 >= length).then_some(reply)
}

/// The JSON payload of a compact JWS.
pub fn jwt_payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap_or_else(|| panic!("not a JWT: {token}"));
    serde_json::from_slice(&base64url(part)).expect("a JSON payload")
}

/// The JSON header of a compact JWS.
pub fn jwt_header(token: &str) -> Value {
    let part = token.split('.').next().unwrap_or_default();
    serde_json::from_slice(&base64url(part)).expect("a JSON header")
}

fn base64url(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'-' => 62,
            b'_' => 63,
            other => panic!("not base64url: {other}"),
        }
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        acc = (acc << 6) | value(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    out
}
