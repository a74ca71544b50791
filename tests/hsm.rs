//! Signing keys in a PKCS#11 token (SPEC section 13), with SoftHSM2 (Debian's `softhsm2`, which
//! `scripts/test-all` installs) as the token: a live server signs with a key imported into the
//! token and publishes it, writes no private key to its data directory, rotates by making the new
//! key inside the token, and signs with the rotated key after a restart; a wrong PIN, an unknown
//! token or key, a malformed URI and a missing module each stop the server with their reason and
//! leave the data directory without a key ring.

mod http_common;

use http_common::{jwt_header, now, request, seats, Server};
use leasehold_engine::tokens::{Algorithm, SigningKey};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where Debian puts SoftHSM2's PKCS#11 module.
const MODULES: [&str; 2] = ["/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"];
const TOKEN: &str = "leasehold";
const PIN: &str = "4711";
const SO_PIN: &str = "0815";

/// A SoftHSM2 token store of the test's own, with one initialized token.
struct SoftHsm {
    dir: tempfile::TempDir,
    module: PathBuf,
}

impl SoftHsm {
    fn new() -> SoftHsm {
        let module = MODULES.iter().map(PathBuf::from).find(|m| m.exists()).unwrap_or_else(|| {
            panic!("SoftHSM2's module is missing (apt-get install softhsm2; scripts/test-all installs it)")
        });
        let dir = tempfile::tempdir().expect("a scratch directory");
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        let conf = format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.path().join("tokens").display()
        );
        std::fs::write(dir.path().join("softhsm2.conf"), conf).unwrap();
        let hsm = SoftHsm { dir, module };
        hsm.util(&["--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", SO_PIN]);
        hsm
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    fn util(&self, args: &[&str]) {
        let out = Command::new("softhsm2-util")
            .args(args)
            .env("SOFTHSM2_CONF", self.conf())
            .output()
            .expect("softhsm2-util runs");
        assert!(out.status.success(), "softhsm2-util {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Imports `key` into the token as `label`.
    fn import(&self, key: &SigningKey, label: &str, id: &str) {
        self.import_pem(key.to_pem().expect("a key in memory"), label, id);
    }

    /// Imports the PKCS#8 PEM `pem` into the token as `label`; the file is removed afterwards.
    fn import_pem(&self, pem: &str, label: &str, id: &str) {
        let file = self.dir.path().join("import.pem");
        std::fs::write(&file, pem).unwrap();
        self.util(&["--import", file.to_str().unwrap(), "--token", TOKEN, "--label", label, "--id", id, "--pin", PIN]);
        std::fs::remove_file(file).unwrap();
    }

    /// A configuration file naming the module and `pin`.
    fn config(&self, pin: &str) -> PathBuf {
        let path = self.dir.path().join(format!("leasehold-{pin}.toml"));
        std::fs::write(&path, format!("[pkcs11]\nmodule = {:?}\npin = {pin:?}\n", self.module.display().to_string()))
            .unwrap();
        path
    }
}

/// The files of the data directory's key directory.
fn key_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("keys")) else { return Vec::new() };
    let mut names: Vec<String> = entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn start(hsm: &SoftHsm, dir: &Path, uri: &str) -> Server {
    let config = hsm.config(PIN);
    let conf = hsm.conf();
    let args = ["--signing-key", uri, "--config", config.to_str().unwrap()];
    Server::start_in_env(dir, &args, true, &[("SOFTHSM2_CONF", conf.to_str().unwrap())])
}

/// A license of twenty seats and a consumer's API key.
fn customer(server: &Server) -> String {
    let (licensee, _, key) = server.party("Acme");
    server.license(&licensee, "Vault", seats(20), json!({}));
    key
}

#[test]
fn a_key_in_the_token_signs_rotates_inside_it_and_survives_a_restart() {
    let hsm = SoftHsm::new();
    let imported = SigningKey::generate(Algorithm::RS256).unwrap();
    hsm.import(&imported, "signing", "01");
    let scratch = tempfile::tempdir().unwrap();
    let server = start(&hsm, scratch.path(), "pkcs11:token=leasehold;object=signing");

    assert_eq!(server.kids(), vec![imported.kid().to_owned()], "the token's key is the one published");
    let key = customer(&server);
    let first = server.authz(&key, "/authz/.jwt?Vault&hw=a").text();
    assert_eq!(jwt_header(&first)["kid"], json!(imported.kid()));
    assert_eq!(jwt_header(&first)["alg"], json!("RS256"));
    server.verifier().verify(&first, now()).expect("the token's signature verifies with the published key");
    let files = key_files(scratch.path());
    assert!(files.iter().all(|f| !f.ends_with(".pem")), "no private key file is written: {files:?}");
    let manifest = std::fs::read_to_string(scratch.path().join("keys/keyring.json")).unwrap();
    assert!(manifest.contains("pkcs11:token=leasehold;object=signing"), "{manifest}");

    // Rotation makes the new key in the token; the old one stays published.
    let rotated = server.admin_ok("POST", "/admin/keys/rotate", Some(json!({"alg": "ES256"})), 200);
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert_eq!(server.kids(), vec![new_kid.clone(), imported.kid().to_owned()]);
    let second = server.authz(&key, "/authz/.jwt?Vault&hw=b").text();
    assert_eq!(jwt_header(&second)["kid"], json!(new_kid));
    assert_eq!(jwt_header(&second)["alg"], json!("ES256"));
    let verifier = server.verifier();
    verifier.verify(&first, now()).expect("the first token still verifies");
    verifier.verify(&second, now()).expect("the ES256 token from the token verifies");
    let files = key_files(scratch.path());
    assert!(files.iter().all(|f| !f.ends_with(".pem")), "the rotated key stays in the token too: {files:?}");
    // An algorithm a token does not make here is refused and changes nothing.
    assert_eq!(server.admin("POST", "/admin/keys/rotate", Some(json!({"alg": "EdDSA"}))).status, 400);
    assert_eq!(server.kids().len(), 2);

    // Many signatures at once: each signer thread signs in a session of its own.
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let (addr, key) = (server.addr, key.clone());
            std::thread::spawn(move || {
                let reply = request(
                    addr,
                    "GET",
                    &format!("/authz/.jwt?Vault&hw=c{i}"),
                    &[("Authorization", &format!("Bearer {key}"))],
                    None,
                );
                (reply.status, reply.text())
            })
        })
        .collect();
    for handle in handles {
        let (status, token) = handle.join().unwrap();
        assert_eq!(status, 200, "{token}");
        verifier.verify(&token, now()).expect("a concurrent signature verifies");
    }

    assert!(server.terminate().success());
    let restarted = start(&hsm, scratch.path(), "pkcs11:token=leasehold;object=signing");
    assert_eq!(restarted.kids(), vec![new_kid.clone(), imported.kid().to_owned()], "the rotation survived the restart");
    let third = restarted.authz(&key, "/authz/.jwt?Vault&hw=a").text();
    assert_eq!(jwt_header(&third)["kid"], json!(new_kid), "the rotated key still signs");
    verifier.verify(&third, now()).unwrap();
}

#[test]
fn a_server_of_pem_keys_moves_to_the_token_and_keeps_the_old_key_published() {
    let hsm = SoftHsm::new();
    let imported = SigningKey::generate(Algorithm::ES256).unwrap();
    hsm.import(&imported, "vault key", "02");
    let scratch = tempfile::tempdir().unwrap();
    let server = Server::start_in(scratch.path(), &[], true);
    let key = customer(&server);
    let before = server.authz(&key, "/authz/.jwt?Vault&hw=a").text();
    let pem_kid = jwt_header(&before)["kid"].as_str().unwrap().to_owned();
    assert!(server.terminate().success());

    let moved = start(&hsm, scratch.path(), "pkcs11:token=leasehold;object=vault%20key");
    assert_eq!(
        moved.kids(),
        vec![imported.kid().to_owned(), pem_kid],
        "the token's key signs, the PEM key stays published"
    );
    let after = moved.authz(&key, "/authz/.jwt?Vault&hw=b").text();
    assert_eq!(jwt_header(&after)["kid"], json!(imported.kid()));
    let verifier = moved.verifier();
    verifier.verify(&before, now()).expect("a token of the PEM key still verifies");
    verifier.verify(&after, now()).expect("the token's ES256 signature verifies");

    // Started again without the token, the server refuses rather than sign with a PEM key.
    assert!(moved.terminate().success());
    let refused = serve_fails(scratch.path(), &[], &[]);
    assert!(refused.contains("pkcs11:token=leasehold;object=vault%20key"), "{refused}");
}

/// A 1024-bit RSA key (PKCS#8 PEM): too weak to sign with.
fn weak_rsa_pem() -> String {
    use rsa::pkcs8::EncodePrivateKey as _;
    let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 1024).expect("an RSA key");
    key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).expect("PEM").to_string()
}

/// Runs `leasehold serve` expecting it to refuse to start; its stderr.
fn serve_fails(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_leasehold"))
        .args(["serve", "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(args)
        .envs(envs.iter().copied())
        .env("LEASEHOLD_ADMIN_TOKEN", http_common::ADMIN)
        .stdin(Stdio::null())
        .output()
        .expect("the leasehold binary runs");
    assert_eq!(out.status.code(), Some(1), "serve {args:?} should refuse to start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_token_or_key_that_cannot_be_used_stops_the_server_with_its_reason() {
    let hsm = SoftHsm::new();
    hsm.import(&SigningKey::generate(Algorithm::RS256).unwrap(), "signing", "03");
    hsm.import_pem(&weak_rsa_pem(), "weak", "04");
    let conf = hsm.conf();
    let env = [("SOFTHSM2_CONF", conf.to_str().unwrap())];
    let good = hsm.config(PIN);
    let good = good.to_str().unwrap();
    let wrong_pin = hsm.config("9999");
    let no_module = hsm.dir.path().join("no-module.toml");
    std::fs::write(&no_module, "[pkcs11]\npin = \"4711\"\n").unwrap();
    let bogus_module = hsm.dir.path().join("bogus-module.toml");
    std::fs::write(&bogus_module, format!("[pkcs11]\nmodule = {:?}\npin = \"4711\"\n", conf.display().to_string()))
        .unwrap();
    let uri = "pkcs11:token=leasehold;object=signing";
    let cases: [(&[&str], &str); 8] = [
        (&["--signing-key", "pkcs11:token=leasehold;object=weak", "--config", good], "an RSA key of 1024 bits"),
        (&["--signing-key", uri, "--config", wrong_pin.to_str().unwrap()], "PIN is incorrect"),
        (
            &["--signing-key", "pkcs11:token=elsewhere;object=signing", "--config", good],
            "no PKCS#11 token labelled \"elsewhere\"",
        ),
        (
            &["--signing-key", "pkcs11:token=leasehold;object=missing", "--config", good],
            "0 private keys labelled \"missing\"",
        ),
        (&["--signing-key", "pkcs11:token=leasehold", "--config", good], "names its token and object"),
        (&["--signing-key", "/etc/leasehold/key.pem", "--config", good], "pkcs11:"),
        (&["--signing-key", uri, "--config", no_module.to_str().unwrap()], "module"),
        (&["--signing-key", uri, "--config", bogus_module.to_str().unwrap()], "PKCS#11 module"),
    ];
    for (args, reason) in cases {
        let scratch = tempfile::tempdir().unwrap();
        let stderr = serve_fails(scratch.path(), args, &env);
        assert!(stderr.contains(reason), "serve {args:?}: {stderr}");
        assert!(!key_files(scratch.path()).contains(&"keyring.json".to_owned()), "serve {args:?} wrote a key ring");
    }
    // And a good start afterwards: the failures left the token as it was.
    let scratch = tempfile::tempdir().unwrap();
    let server = start(&hsm, scratch.path(), uri);
    assert_eq!(server.kids().len(), 1);
}
