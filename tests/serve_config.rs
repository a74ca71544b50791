//! `leasehold serve --config FILE`: a real server started with a TOML file, environment
//! variables and flags, checking what each setting does and that flags win over the
//! environment, which wins over the file, which wins over the defaults. A file with an unknown
//! key does not start, and says which key.

mod http_common;

use http_common::{raw, request};
use serde_json::json;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A `leasehold serve` started with exactly these arguments and extra environment (no inherited
/// `LEASEHOLD_*` settings), and what it printed.
struct Started {
    child: Child,
    addr: SocketAddr,
    banner: Vec<String>,
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leasehold"));
    command.arg("serve").args(["--tcp", "127.0.0.1:0"]).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("LEASEHOLD_") {
            command.env_remove(name);
        }
    }
    command.env("LEASEHOLD_LOG", "warn").envs(env.iter().copied()).stdin(Stdio::null());
    command
}

fn start(args: &[&str], env: &[(&str, &str)]) -> Started {
    let mut child =
        command(args, env).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("the binary starts");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut banner = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("stdout is UTF-8");
        let done = line.starts_with("Stop with");
        banner.push(line);
        if done {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    let addr = banner
        .iter()
        .find_map(|l| l.strip_prefix("HTTP listening on http://"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no HTTP address in {banner:?}"))
        .parse()
        .expect("a socket address");
    Started { child, addr, banner }
}

fn write(dir: &Path, text: &str) -> String {
    let path = dir.join("leasehold.toml");
    std::fs::write(&path, text).expect("the file is written");
    path.to_string_lossy().into_owned()
}

fn issuer(server: &Started) -> String {
    let document = request(server.addr, "GET", "/.well-known/license-configuration", &[], None).json();
    document["issuer"].as_str().expect("an issuer").to_owned()
}

#[test]
fn a_config_file_sets_the_server_up() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("from-file");
    let file = write(
        scratch.path(),
        &format!(
            "http = \"127.0.0.1:0\"\ndata_dir = {:?}\ndurability = \"none\"\nadmin_token = \"file-admin-token-123\"\n\
             public_url = \"https://licenses.example.com/\"\nsigning_alg = \"ES256\"\n[limits]\nmax_body_bytes = 200\n",
            data_dir.to_string_lossy()
        ),
    );
    let server = start(&["--config", &file], &[]);
    assert!(server.banner.iter().any(|l| l.contains("durability none")), "{:?}", server.banner);
    assert!(server.banner.iter().any(|l| l.starts_with("Settings from") && l.contains(&file)), "{:?}", server.banner);
    assert!(data_dir.join("keys").is_dir(), "the data directory is the file's");
    assert_eq!(issuer(&server), "https://licenses.example.com");
    let jwks = request(server.addr, "GET", "/.well-known/jwks.json", &[], None).json();
    assert_eq!(jwks["keys"][0]["alg"], json!("ES256"));

    let admin = [("Authorization", "Bearer file-admin-token-123"), ("Content-Type", "application/json")];
    let small = json!({"name": "Acme", "kind": "organization"}).to_string();
    assert_eq!(request(server.addr, "POST", "/admin/licensees", &admin, Some(small.as_bytes())).status, 201);
    let large = json!({"name": "A".repeat(300), "kind": "organization"}).to_string();
    assert_eq!(request(server.addr, "POST", "/admin/licensees", &admin, Some(large.as_bytes())).status, 413);
}

#[test]
fn flags_win_over_the_environment_which_wins_over_the_file() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    let dir = dir.to_string_lossy();
    let file = write(scratch.path(), "public_url = \"https://file.example\"\nadmin_token = \"from-file\"\n");
    let base = ["--config", &file, "--http", "127.0.0.1:0", "--data-dir", &dir];

    let file_only = start(&base, &[]);
    assert_eq!(issuer(&file_only), "https://file.example");
    drop(file_only);

    let env = [("LEASEHOLD_PUBLIC_URL", "https://env.example"), ("LEASEHOLD_ADMIN_TOKEN", "from-env")];
    let with_env = start(&base, &env);
    assert_eq!(issuer(&with_env), "https://env.example");
    let licensees = |server: &Started, token: &str| {
        request(server.addr, "GET", "/admin/licensees", &[("Authorization", &format!("Bearer {token}"))], None).status
    };
    assert_eq!(licensees(&with_env, "from-env"), 200);
    assert_eq!(licensees(&with_env, "from-file"), 401);
    drop(with_env);

    let mut flagged = base.to_vec();
    flagged.extend(["--public-url", "https://flag.example"]);
    let with_flag = start(&flagged, &env);
    assert_eq!(issuer(&with_flag), "https://flag.example");
}

#[test]
fn without_a_public_url_the_discovery_document_follows_the_host_header() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().to_string_lossy().into_owned();
    let server = start(&["--http", "127.0.0.1:0", "--data-dir", &dir], &[("LEASEHOLD_ADMIN_TOKEN", "x")]);
    assert_eq!(issuer(&server), format!("http://{}", server.addr));
    let with_host = |host: &str| {
        let head =
            format!("GET /.well-known/license-configuration HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        raw(server.addr, head.as_bytes()).expect("an answer")
    };
    let document = with_host("licenses.internal:9000").json();
    assert_eq!(document["jwks_uri"], json!("http://licenses.internal:9000/.well-known/jwks.json"));
    assert_eq!(document["checkout_endpoint"], json!("http://licenses.internal:9000/licensing/actions/checkout"));
    assert_eq!(document["signing_algorithms"], json!(["RS256"]));
    assert_eq!(with_host("evil.com/x?").status, 400);
}

#[test]
fn a_file_with_an_unknown_key_stops_the_server_and_names_the_key() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("data");
    for (text, key) in [
        ("htttp = \"127.0.0.1:0\"\n", "htttp"),
        ("[limits]\nmax_body_kb = 3\n", "max_body_kb"),
        ("durability = \"often\"\n", "durability"),
    ] {
        let file = write(scratch.path(), text);
        let mut child =
            command(&["--config", &file, "--http", "127.0.0.1:0", "--data-dir", &dir.to_string_lossy()], &[])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the binary starts");
        let mut stderr = String::new();
        child.stderr.take().expect("piped stderr").read_to_string(&mut stderr).expect("stderr is UTF-8");
        let status = child.wait().expect("it exits");
        assert!(!status.success(), "{text}");
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
    assert!(!dir.exists(), "nothing was created before the settings were checked");
}
