//! Consumers signed in by an OpenID Connect provider (SPEC section 13), against a real one: the
//! `oidc-provider` package run by `tests/js/oidc_provider.mjs` under Node.js. Its tokens sign
//! consumers in on `/authz/` and the Scale API; the first sign-in makes the consumer, in the
//! licensee the licensee claim names or in a personal licensee; hostile tokens are each refused
//! with their own code; a key the provider adds later is fetched when a token names it; a kill -9
//! keeps who is who.
//!
//! Needs Node.js and `tests/js/node_modules` (`npm ci --prefix tests/js`, which `scripts/test-all`
//! runs). Without them it fails: a test of an identity provider that skips proves nothing.

mod http_common;

use http_common::{request, Reply, Server};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const AUDIENCE: &str = "leasehold";

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("js")
}

/// A running `oidc-provider`.
struct Provider {
    child: Child,
    issuer: String,
    /// Where its token and test-signing endpoints answer plain HTTP.
    addr: std::net::SocketAddr,
}

impl Provider {
    /// Starts the provider with the keys in `dir` (made on its first start), publishing
    /// `published` of them, on `port` (0: any).
    fn start(dir: &Path, port: u16, published: &[&str]) -> Provider {
        Provider::start_with(dir, port, published, None)
    }

    /// [`Provider::start`], serving https with the certificate and key in `tls` when given.
    fn start_with(dir: &Path, port: u16, published: &[&str], tls: Option<(&Path, &Path)>) -> Provider {
        assert!(
            js_dir().join("node_modules/oidc-provider/package.json").exists(),
            "oidc-provider is not installed: run npm ci --prefix tests/js (scripts/test-all does)"
        );
        let tls = tls.map(|(cert, key)| json!({"cert_file": cert, "key_file": key}));
        let config = json!({
            "tls": tls,
            "port": port,
            "audience": AUDIENCE,
            "keys_file": dir.join("keys.json"),
            "key_ids": ["k1", "k2"],
            "published": published,
            "clients": {
                "alice": {"email": "alice@acme.example", "org": "ACME-1"},
                "bob": {"email": "bob@home.example"},
            },
        });
        let config_path = dir.join("provider.json");
        std::fs::write(&config_path, config.to_string()).expect("the provider's configuration is written");
        let mut child = Command::new(std::env::var("LEASEHOLD_TEST_NODE").unwrap_or_else(|_| "node".into()))
            .arg(js_dir().join("oidc_provider.mjs"))
            .arg(&config_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs (apt-get install nodejs)");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (issuer, plain) = loop {
            let line = lines.next().expect("the provider prints its issuer").expect("UTF-8");
            if let Some(urls) = line.strip_prefix("listening ") {
                let (issuer, plain) = urls.split_once(' ').expect("the issuer and a plain-HTTP URL");
                break (issuer.to_owned(), plain.to_owned());
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        let addr = plain.trim_start_matches("http://").parse().expect("an address");
        Provider { child, issuer, addr }
    }

    /// An access token of client (person) `who`, as the provider issues it.
    fn token(&self, who: &str) -> String {
        let body = format!("grant_type=client_credentials&scope=licenses&client_id={who}&client_secret=secret");
        let headers = [("Content-Type", "application/x-www-form-urlencoded")];
        let reply = request(self.addr, "POST", "/token", &headers, Some(body.as_bytes()));
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()["access_token"].as_str().expect("an access token").to_owned()
    }

    /// `claims` signed with the provider's key `kid` (published or not).
    fn sign(&self, claims: Value, kid: &str) -> String {
        let body = json!({"claims": claims, "kid": kid}).to_string();
        let reply = request(self.addr, "POST", "/test/sign", &[], Some(body.as_bytes()));
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.text()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn authz(server: &Server, scheme: &str, token: &str, item: &str) -> Reply {
    let auth = format!("{scheme} {token}");
    request(server.addr, "GET", &format!("/authz/.txt?{item}"), &[("Authorization", &auth)], None)
}

/// The refusal's status and code.
fn refusal(reply: &Reply) -> (u16, Value) {
    (reply.status, reply.json()["code"].clone())
}

fn start_leasehold(dir: &Path, provider: &Provider) -> Server {
    let config = format!(
        "[identity]\njwks_min_refresh_s = 1\n\n[[identity.issuers]]\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\nlicensee_claim = \"org\"\n",
        provider.issuer
    );
    let path = dir.join("leasehold.toml");
    std::fs::write(&path, config).expect("the configuration is written");
    Server::start_in(&dir.join("data"), &["--config", path.to_str().expect("UTF-8")], true)
}

/// The licensee Alice's `org` claim names, with a license of `seats` seats of `Cad`; its id.
fn acme_with_cad(server: &Server, seats: u64) -> String {
    let body = json!({"name": "Acme", "kind": "organization", "external_id": "ACME-1"});
    let acme = server.admin_ok("POST", "/admin/licensees", Some(body), 201)["id"].as_str().unwrap().to_owned();
    server.license(&acme, "Cad", http_common::seats(seats), json!({}));
    acme
}

fn consumers(server: &Server) -> Vec<Value> {
    server.admin_ok("GET", "/admin/consumers", None, 200)["items"].as_array().expect("items").clone()
}

#[test]
fn a_providers_tokens_sign_consumers_in_and_make_them_once() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let provider = Provider::start(scratch.path(), 0, &["k1"]);
    let server = start_leasehold(scratch.path(), &provider);
    let acme = acme_with_cad(&server, 5);

    // Alice's first token makes her a consumer of the licensee her `org` claim names.
    let alice = provider.token("alice");
    let first = authz(&server, "Bearer", &alice, "Cad");
    assert_eq!((first.status, first.text()), (200, "true".to_owned()));
    let made = consumers(&server);
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0]["licensees"], json!([acme]));
    assert_eq!(made[0]["email"], json!("alice@acme.example"));
    assert_eq!(made[0]["identity"], json!({"issuer": provider.issuer, "subject": "alice"}));

    // The same token again, a new token, the SDK's IdToken scheme: the same consumer.
    assert_eq!(authz(&server, "Bearer", &alice, "Cad").text(), "true");
    assert_eq!(authz(&server, "IdToken", &provider.token("alice"), "Cad").text(), "true");
    assert_eq!(consumers(&server).len(), 1);

    // Bob's token names no licensee: he gets a personal one, with no license in it.
    let bob = authz(&server, "Bearer", &provider.token("bob"), "Cad");
    assert_eq!((bob.status, bob.text()), (200, "false".to_owned()), "signed in, not licensed");
    let bob = consumers(&server).into_iter().find(|c| c["email"] == json!("bob@home.example")).expect("bob");
    let personal = bob["licensees"][0].as_str().expect("a licensee").to_owned();
    let personal = server.admin_ok("GET", &format!("/admin/licensees/{personal}"), None, 200);
    assert_eq!(personal["kind"], json!("person"));

    // Who is who survives a kill -9; a disabled consumer's tokens are refused.
    server.kill();
    let server = start_leasehold(scratch.path(), &provider);
    assert_eq!(authz(&server, "Bearer", &alice, "Cad").text(), "true");
    assert_eq!(consumers(&server).len(), 2);
    let alice_id = consumers(&server).into_iter().find(|c| c["email"] == json!("alice@acme.example")).unwrap();
    let path = format!("/admin/consumers/{}", alice_id["id"].as_str().unwrap());
    server.admin_ok("PATCH", &path, Some(json!({"disabled": true})), 200);
    assert_eq!(authz(&server, "Bearer", &alice, "Cad").status, 401);
}

#[test]
fn hostile_tokens_are_refused_each_with_its_code_and_a_new_key_is_fetched() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let provider = Provider::start(scratch.path(), 0, &["k1"]);
    let server = start_leasehold(scratch.path(), &provider);
    server.admin_ok("POST", "/admin/products", Some(json!({"name": "Cad"})), 201);
    let (iss, now) = (provider.issuer.clone(), now_s());
    let claims = |changes: Value| {
        let mut claims = json!({"iss": iss, "sub": "mallory", "aud": AUDIENCE, "iat": now, "exp": now + 300});
        for (k, v) in changes.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    };
    let good = authz(&server, "Bearer", &provider.sign(claims(json!({})), "k1"), "Cad");
    assert_eq!(good.status, 200, "a good one: {}", good.text());

    let alice = provider.token("alice");
    // One symbol of the signature changed (not its last, whose low bits base64 ignores).
    let at = alice.len() - 20;
    let swapped = if &alice[at..=at] == "A" { "B" } else { "A" };
    let tampered = format!("{}{swapped}{}", &alice[..at], &alice[at + 1..]);
    let header = |json: &str| {
        use std::fmt::Write as _;
        // base64url without padding, by hand: the test needs no base64 crate.
        const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = json.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                let _ = write!(out, "{}", char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    };
    let payload = alice.split('.').nth(1).unwrap();
    let unsigned = format!("{}.{payload}.", header(r#"{"alg":"none","typ":"JWT"}"#));
    let hs256 = format!("{}.{payload}.c2lnbmF0dXJl", header(r#"{"alg":"HS256","kid":"k1"}"#));
    let hostile = [
        (provider.sign(claims(json!({"exp": now - 3_600})), "k1"), "tokenExpired"),
        (provider.sign(claims(json!({"nbf": now + 3_600})), "k1"), "tokenNotYetValid"),
        (provider.sign(claims(json!({"aud": "someone-else"})), "k1"), "wrongAudience"),
        (provider.sign(claims(json!({"iss": "http://127.0.0.1:9/evil"})), "k1"), "untrustedIssuer"),
        (provider.sign(claims(json!({})), "k2"), "unknownSigningKey"),
        (tampered, "badSignature"),
        (hs256, "badSignature"),
        (unsigned, "malformedToken"),
        ("eyJ.not.ajwt".to_owned(), "malformedToken"),
        (format!("{alice}{}", "A".repeat(9_000)), "malformedToken"),
    ];
    for (token, code) in hostile {
        let reply = authz(&server, "Bearer", &token, "Cad");
        assert_eq!(refusal(&reply), (401, json!(code)), "{code}: {}", reply.text());
    }
    assert_eq!(consumers(&server).len(), 1, "only the good token made a consumer");

    // The provider starts publishing k2: a token signed with it is accepted once the keys are
    // fetched again (at most once a second in this configuration).
    let port = provider.addr.port();
    drop(provider);
    let provider = Provider::start(scratch.path(), port, &["k1", "k2"]);
    std::thread::sleep(Duration::from_millis(1_100));
    let with_k2 = provider.sign(claims(json!({})), "k2");
    let reply = authz(&server, "Bearer", &with_k2, "Cad");
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[test]
fn the_official_scale_sdk_signs_in_with_an_id_token() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let provider = Provider::start(scratch.path(), 0, &["k1"]);
    let server = start_leasehold(scratch.path(), &provider);
    acme_with_cad(&server, 1);
    let python = http_common::test_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/scale_sdk_id_token.py");
    let output = Command::new(&python)
        .arg(script)
        .arg(format!("http://{}", server.addr))
        .arg(http_common::ADMIN)
        .arg(provider.token("alice"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(stdout.lines().any(|l| l == "PASS the_sdk_signs_in_with_an_id_token"), "{stdout}");
}

#[test]
fn a_confidential_application_acts_for_consumers_with_the_sdks_scale_jwt() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let python = http_common::test_python();
    let (private, public) = (scratch.path().join("app.pem"), scratch.path().join("app.pub.pem"));
    let made = Command::new(&python)
        .arg("-c")
        .arg(
            "import sys\n\
             from cryptography.hazmat.primitives import serialization as s\n\
             from cryptography.hazmat.primitives.asymmetric import rsa\n\
             k = rsa.generate_private_key(public_exponent=65537, key_size=2048)\n\
             open(sys.argv[1], 'wb').write(k.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))\n\
             open(sys.argv[2], 'wb').write(k.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))\n",
        )
        .arg(&private)
        .arg(&public)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python:?}: {e}"));
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));

    let provider = Provider::start(scratch.path(), 0, &["k1"]);
    let config = format!(
        "[[identity.issuers]]\nissuer = \"{iss}\"\naudience = \"{AUDIENCE}\"\nlicensee_claim = \"org\"\n\n\
         [[identity.applications]]\nkey_id = \"app-1\"\nissuer = \"licensing-app\"\npublic_key_file = \"{}\"\nidentity_issuer = \"{iss}\"\n",
        public.display(),
        iss = provider.issuer,
    );
    let path = scratch.path().join("leasehold.toml");
    std::fs::write(&path, config).expect("the configuration is written");
    let server = Server::start_in(&scratch.path().join("data"), &["--config", path.to_str().unwrap()], true);
    acme_with_cad(&server, 5);
    assert_eq!(authz(&server, "Bearer", &provider.token("alice"), "Cad").text(), "true", "alice signs in once");
    let alice = consumers(&server).into_iter().find(|c| c["email"] == json!("alice@acme.example")).expect("alice");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/scale_sdk_scale_jwt.py");
    let output = Command::new(&python)
        .arg(script)
        .arg(format!("http://{}", server.addr))
        .arg(&private)
        .args(["app-1", "licensing-app", "alice", alice["id"].as_str().unwrap()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "--- stdout\n{stdout}\n--- stderr\n{stderr}");
    for scenario in [
        "the_sub_names_the_consumer_by_its_connected_identity",
        "the_lcid_names_the_consumer",
        "wrong_issuers_keys_times_and_subjects_are_refused",
    ] {
        assert!(stdout.lines().any(|l| l == format!("PASS {scenario}")), "{scenario}:\n{stdout}");
    }
}

/// A CA and a certificate it signed for 127.0.0.1, as PEM files in `dir`: (CA, certificate, key).
fn test_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca = http_common::tls::TestCa::new();
    let (cert, key, _) = ca.leaf(dir, "provider");
    (ca.write(dir), cert, key)
}

#[test]
fn an_https_issuer_is_trusted_through_the_configured_ca_and_not_without_it() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let (ca, cert, key) = test_certificates(scratch.path());
    let provider = Provider::start_with(scratch.path(), 0, &["k1"], Some((&cert, &key)));
    assert!(provider.issuer.starts_with("https://"), "{}", provider.issuer);
    let now = now_s();
    let claims = json!({"iss": provider.issuer, "sub": "carol", "aud": AUDIENCE, "iat": now, "exp": now + 300});
    let token = provider.sign(claims, "k1");
    let start = |name: &str, ca_line: &str| {
        let config = format!(
            "[identity]\n{ca_line}\n[[identity.issuers]]\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\n",
            provider.issuer
        );
        let path = scratch.path().join(format!("{name}.toml"));
        std::fs::write(&path, config).expect("the configuration is written");
        Server::start_in(&scratch.path().join(name), &["--config", path.to_str().unwrap()], true)
    };

    let trusting = start("trusting", &format!("ca_file = \"{}\"", ca.display()));
    trusting.admin_ok("POST", "/admin/products", Some(json!({"name": "Cad"})), 201);
    let signed_in = authz(&trusting, "Bearer", &token, "Cad");
    assert_eq!(signed_in.status, 200, "the keys came over https: {}", signed_in.text());

    let untrusting = start("untrusting", "");
    let refused = authz(&untrusting, "Bearer", &token, "Cad");
    assert_eq!(refusal(&refused), (503, json!("identityProviderUnavailable")), "{}", refused.text());
}
