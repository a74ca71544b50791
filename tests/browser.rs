//! The official browser client in a real browser (SPEC section 13): Debian's headless Chromium
//! opens a page served from an origin other than the server's (`tests/js/browser/`) that runs
//! `@10duke/web-client-pkce`'s LicenseChecker (1.1.0, bundled unchanged by esbuild, as a page
//! loads it) against a live `leasehold serve`: a consume, its release, the seat taken again and a
//! wrong key read as the signed `notAuthorized` refusal. The browser enforces CORS itself: a
//! preflight or an answer without the right headers fails the page.
//!
//! Needs `chromium` (or the path in `LEASEHOLD_TEST_CHROMIUM`), which `scripts/test-all`
//! installs, and the npm packages of `tests/js` (esbuild among them).

mod http_common;

use http_common::{seats, Server};
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const ITEM: &str = "Web Studio";

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("js")
}

/// The package bundled for a page, in `dir/pkce.js`, and the page beside it.
fn page_files(dir: &Path) {
    let esbuild = js_dir().join("node_modules/.bin/esbuild");
    let bundled = Command::new(&esbuild)
        .arg(js_dir().join("node_modules/@10duke/web-client-pkce/lib/index.js"))
        .args(["--bundle", "--format=iife", "--global-name=WebClientPkce", "--platform=browser", "--log-level=warning"])
        .arg(format!("--outfile={}", dir.join("pkce.js").display()))
        .output()
        .unwrap_or_else(|e| panic!("{} does not run ({e}): run npm ci --prefix tests/js", esbuild.display()));
    assert!(bundled.status.success(), "esbuild: {}", String::from_utf8_lossy(&bundled.stderr));
    std::fs::copy(js_dir().join("browser/license_checker.html"), dir.join("index.html")).expect("the page is copied");
}

/// Serves `dir`'s files on a port of its own (another origin than the server's) and hands what
/// the page POSTs to `/report` to the returned receiver.
fn serve_page(dir: PathBuf) -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port for the page");
    let port = listener.local_addr().expect("an address").port();
    let (reports, received) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            if let Some(report) = answer(stream, &dir) {
                let _ = reports.send(report);
            }
        }
    });
    (port, received)
}

/// Answers one request for the page; a report's body is returned.
fn answer(mut stream: TcpStream, dir: &Path) -> Option<String> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, content_type, body, report) = match path {
        "/report" => {
            let mut body = vec![0u8; length.min(1 << 20)];
            reader.read_exact(&mut body).ok()?;
            ("204 No Content", "text/plain", Vec::new(), Some(String::from_utf8_lossy(&body).into_owned()))
        }
        "/index.html" => ("200 OK", "text/html", std::fs::read(dir.join("index.html")).ok()?, None),
        "/pkce.js" => ("200 OK", "text/javascript", std::fs::read(dir.join("pkce.js")).ok()?, None),
        _ => ("404 Not Found", "text/plain", Vec::new(), None),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(&body).ok()?;
    report
}

/// `text` percent-encoded for a URL's fragment.
fn encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn the_official_license_checker_runs_in_headless_chromium_from_another_origin() {
    let server = Server::start();
    let (licensee, _, key) = server.party("Acme");
    let license = server.license(&licensee, ITEM, seats(1), json!({"model": {"session_anchors": ["hw"]}}));
    let scratch = tempfile::tempdir().expect("a scratch directory");
    page_files(scratch.path());
    let (port, reports) = serve_page(scratch.path().to_path_buf());
    let url = format!(
        "http://127.0.0.1:{port}/index.html#server={}&key={}&item={}",
        encoded(&format!("http://{}", server.addr)),
        encoded(&key),
        encoded(ITEM)
    );
    let chromium = std::env::var("LEASEHOLD_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let mut browser = Command::new(&chromium)
        .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .arg(format!("--user-data-dir={}", scratch.path().join("profile").display()))
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{chromium} does not start ({e}): run scripts/test-all or apt-get install chromium")
        });
    let report = reports.recv_timeout(Duration::from_secs(90));
    let _ = browser.kill();
    let _ = browser.wait();
    let report = report.expect("the page reports within 90 s");
    assert!(report.starts_with("PASS"), "the page failed:\n{report}");
    assert_eq!(report.lines().filter(|l| l.starts_with("ok - ")).count(), 5, "{report}");
    let leases = server.admin_ok("GET", &format!("/admin/licenses/{license}/leases"), None, 200);
    assert_eq!(leases["items"], json!([]), "the page released what it took");
}
