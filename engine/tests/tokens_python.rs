//! Leasehold's tokens, checked by an independent implementation: Python's PyJWT (signatures via
//! the JWKS, as the official tenduke-scale client verifies) and jwcrypto (JWE decryption with
//! the client's private key). RS256, ES256 and EdDSA keys sign through the signer pool, with
//! rotations in between, so the JWKS must still publish the retired keys.
//!
//! The interpreter is `$LEASEHOLD_TEST_PYTHON` (default `python3`); it needs PyJWT, cryptography
//! and jwcrypto (`scripts/test-all` makes a venv with them). Missing Python or packages fail the
//! test: they are not a reason to skip it.

use leasehold_engine::claims::{self, Claims};
use leasehold_engine::decide::{Denial, ErrorCode};
use leasehold_engine::model::lease::SessionKey;
use leasehold_engine::model::{
    Anchors, Credit, Dimension, Enforcement, Lease, LeaseMode, License, LicenseModel, LicenseStatus,
};
use leasehold_engine::signer::TokenSigner;
use leasehold_engine::tokens::jws::b64url;
use leasehold_engine::tokens::{Algorithm, ClientPublicKey, KeyRing, PoolConfig, SignerPool, SigningKey};
use leasehold_engine::{Clock, ConsumerId, Grant, LeaseId, LicenseId, LicenseeId, ProductId, SystemClock};
use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use uuid::Uuid;

const SCRIPT: &str = include_str!("python/verify_tokens.py");

fn seat_grant(now: leasehold_engine::Timestamp) -> Grant {
    let license = License {
        id: LicenseId(Uuid::new_v4()),
        licensee: LicenseeId(Uuid::new_v4()),
        product: ProductId(Uuid::new_v4()),
        product_name: "ThreeDee".into(),
        tier: Some("Pro".into()),
        features: vec!["render".into(), "simulate".into()],
        valid_from: now.plus_secs(0),
        valid_until: None,
        status: LicenseStatus::Active,
        license_key: None,
        revokes_sibling_keys: false,
        properties: BTreeMap::new(),
        credit: Credit { dimension: Dimension::Seats, qty: 5, enforcement: Enforcement::Enforced },
        model: LicenseModel::default().interned(),
        feature_overrides: Default::default(),
        key_activated_at: None,
        expiry_recorded: None,
        entitlement: None,
    };
    let consumer = ConsumerId(Uuid::new_v4());
    let anchors = Anchors {
        hw: Some("hw-1234".into()),
        hw_name: Some("MyDesktop".into()),
        version: Some("1.0.1".into()),
        extra: BTreeMap::from([("cliLang".to_string(), "en".to_string())]),
        ..Anchors::default()
    };
    let lease = Lease {
        id: LeaseId(Uuid::new_v4()),
        license: license.id,
        consumer,
        item: Arc::from("ThreeDee"),
        session: SessionKey::Anchored { user: Some(consumer), hw: Some(Arc::from("hw-1234")), process: None },
        anchors: Arc::new(anchors),
        mode: LeaseMode::Online,
        granted_at: now,
        issued_at: now,
        expires_at: now.plus_secs(7_200),
        refresh_at: now.plus_secs(3_600),
        heartbeat_not_before: now,
        qty_prealloc: 1,
        qty_verified: 0,
        metered: false,
    };
    Grant { lease, license: Arc::new(license), replaced: Some(LeaseId(Uuid::new_v4())), remaining_qty: Some(4) }
}

struct Case {
    name: &'static str,
    alg: Algorithm,
    token: String,
    encrypted: bool,
    expected: Claims,
}

impl Case {
    fn to_json(&self) -> Value {
        json!({"name": self.name, "alg": self.alg.as_str(), "token": self.token,
               "encrypted": self.encrypted, "expected": self.expected})
    }
}

fn run_python(dir: &Path) -> std::process::Output {
    let mut python = std::env::var("LEASEHOLD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    // A relative path (`target/pyenv/bin/python`) is taken from the workspace root, where
    // scripts/test-all makes it, not from this package's directory where cargo runs tests.
    if python.contains('/') && Path::new(&python).is_relative() {
        python = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(&python).to_string_lossy().into_owned();
    }
    let script = dir.join("verify_tokens.py");
    std::fs::write(&script, SCRIPT).unwrap();
    Command::new(&python).arg(&script).arg(dir).output().unwrap_or_else(|e| {
        panic!("cannot run {python:?} ({e}); set LEASEHOLD_TEST_PYTHON to a Python with PyJWT, cryptography, jwcrypto")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_verifies_rs256_es256_eddsa_tokens_through_the_jwks_and_decrypts_jwe() {
    let now = SystemClock.now();
    let ring = Arc::new(KeyRing::new(SigningKey::generate(Algorithm::RS256).unwrap()));
    let pool = SignerPool::start(Arc::clone(&ring), PoolConfig { workers: 2, ..PoolConfig::default() }).unwrap();

    let client = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
    let client_spki_b64url = b64url(client.to_public_key().to_public_key_der().unwrap().as_bytes());
    let client_pem = client.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();

    let grant = seat_grant(now);
    let scale = claims::scale_grant(&grant, "leasehold-test", now);
    let enterprise = claims::enterprise_grant(&grant, "leasehold-test");
    let denial = Denial::new(ErrorCode::MaxConcurrentSessionsExceed, "all 5 seats are taken");
    let scale_denial = claims::scale_denial("ThreeDee", &denial, "leasehold-test", now, &Uuid::new_v4().to_string());

    let mut cases = Vec::new();
    let sign = |name, alg, claims: Claims, encrypt_to: Option<&str>| {
        let key = encrypt_to.map(|k| ClientPublicKey::parse(k).unwrap());
        let pending = pool.sign_for(claims.clone(), key);
        (name, alg, claims, encrypt_to.is_some(), pending)
    };
    // RS256 first, then rotate: the JWKS must keep the RS256 key while its tokens live.
    let rs = vec![
        sign("scale grant", Algorithm::RS256, scale.clone(), None),
        sign("scale denial", Algorithm::RS256, scale_denial.clone(), None),
        sign("enterprise grant", Algorithm::RS256, enterprise.clone(), None),
        sign("scale grant as JWE (base64url SPKI key)", Algorithm::RS256, scale.clone(), Some(&client_spki_b64url)),
    ];
    for (name, alg, expected, encrypted, pending) in rs {
        cases.push(Case { name, alg, token: pending.await.unwrap(), encrypted, expected });
    }
    ring.rotate(SigningKey::generate(Algorithm::ES256).unwrap(), now);
    let token = pool.sign(scale.clone()).await.unwrap();
    cases.push(Case { name: "scale grant", alg: Algorithm::ES256, token, encrypted: false, expected: scale.clone() });
    ring.rotate(SigningKey::generate(Algorithm::EdDSA).unwrap(), now);
    let token = pool.sign(scale.clone()).await.unwrap();
    cases.push(Case { name: "scale grant", alg: Algorithm::EdDSA, token, encrypted: false, expected: scale.clone() });
    let token = pool.sign_for(enterprise.clone(), Some(ClientPublicKey::parse(&client_pem).unwrap())).await.unwrap();
    cases.push(Case {
        name: "enterprise grant as JWE (PEM key)",
        alg: Algorithm::EdDSA,
        token,
        encrypted: true,
        expected: enterprise,
    });
    pool.shutdown();

    let jwks = ring.jwks(now);
    assert_eq!(jwks.keys.len(), 3, "the retired RS256 and ES256 keys stay published while their tokens live");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), serde_json::to_vec(&jwks).unwrap()).unwrap();
    let listed: Vec<Value> = cases.iter().map(Case::to_json).collect();
    std::fs::write(dir.path().join("tokens.json"), serde_json::to_vec(&listed).unwrap()).unwrap();
    std::fs::write(dir.path().join("client_key.pem"), client.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();

    let output = run_python(dir.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the Python verifier failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("verified {} tokens", cases.len())), "unexpected output:\n{stdout}\n{stderr}");
}

#[test]
fn scale_grant_claims_have_the_names_and_types_the_official_client_reads() {
    let now = leasehold_engine::Timestamp::from_secs(1_800_000_000);
    let grant = seat_grant(now);
    let claims = claims::scale_grant(&grant, "leasehold", now);
    let mut names: Vec<&str> = claims.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut expected = vec![
        "iss",
        "iat",
        "nbf",
        "exp",
        "jti",
        "toe",
        "status",
        "leaseId",
        "oldLeaseId",
        "hbnbf",
        "productName",
        "licenseId",
        "type",
        "productConfigurationName",
        "qty",
        "qtyPrealloc",
        "qtyVerified",
        "qtyDimension",
        "qtyEnforcementType",
        "features",
        "licenseConsumerId",
        "clientClaims",
    ];
    expected.sort_unstable();
    assert_eq!(names, expected, "exactly the Scale claims, and never an aud");
    assert_eq!(claims["nbf"], json!(now.as_secs() - claims::NOT_BEFORE_SKEW_S));
    assert_eq!(claims["exp"], json!(grant.lease.expires_at.as_secs()));
    assert_eq!(claims["leaseId"], json!(grant.lease.id.to_string()));
    assert_eq!(claims["oldLeaseId"], json!(grant.replaced.map(|l| l.to_string())));
    assert_eq!((&claims["qty"], &claims["qtyPrealloc"], &claims["qtyVerified"]), (&json!(1), &json!(0), &json!(1)));
    assert_eq!(claims["qtyDimension"], "SEATS");
    assert_eq!(claims["features"], json!(["render", "simulate"]));
    assert_eq!(
        claims["clientClaims"],
        json!({"cliHwId": "hw-1234", "cliHwLabel": "MyDesktop", "cliVersion": "1.0.1", "cliLang": "en"})
    );
}
