//! Signed license tokens (SPEC section 4): keys, JWS, the key ring's rotation and JWKS, JWE,
//! audit, client-side verification, the Scale claims and the signer pool, checked in Rust.
//! (`tokens_python.rs` checks the same tokens with an independent Python implementation.)

use leasehold_engine::claims::{self, Claims};
use leasehold_engine::signer::{SignError, TokenSigner};
use leasehold_engine::time::Timestamp;
use leasehold_engine::tokens::audit::{self, Dialect};
use leasehold_engine::tokens::jws::{self, b64url};
use leasehold_engine::tokens::keyring::RetiredKey;
use leasehold_engine::tokens::queue::{BatchQueue, Refused};
use leasehold_engine::tokens::verify::VerifyError;
use leasehold_engine::tokens::{
    jwe, license_configuration, Algorithm, ClientPublicKey, KeyRing, PoolConfig, SignerPool, SigningKey, Verifier,
};
use rsa::pkcs1::EncodeRsaPublicKey as _;
use rsa::pkcs8::{EncodePublicKey as _, LineEnding};
use serde_json::json;
use std::sync::{Arc, OnceLock};

const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

fn rsa_key() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(|| SigningKey::generate(Algorithm::RS256).unwrap().to_pem().unwrap().to_string())
}

fn key(alg: Algorithm) -> SigningKey {
    match alg {
        Algorithm::RS256 => SigningKey::from_pem(rsa_key().as_bytes()).unwrap(),
        other => SigningKey::generate(other).unwrap(),
    }
}

fn client_key() -> &'static rsa::PrivateKey {
    static KEY: OnceLock<rsa::PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap())
}

fn claims_expiring_at(exp: i64) -> Claims {
    let mut claims = Claims::new();
    claims.insert("iss".into(), json!("leasehold"));
    claims.insert("iat".into(), json!(NOW.as_secs()));
    claims.insert("exp".into(), json!(exp));
    claims.insert("hw".into(), json!("hw-1"));
    claims
}

#[test]
fn a_key_read_back_from_its_pem_has_the_same_kid_and_alg() {
    for alg in Algorithm::ALL {
        let original = key(alg);
        let again = SigningKey::from_pem(original.to_pem().unwrap().as_bytes()).unwrap();
        assert_eq!(again.kid(), original.kid());
        assert_eq!(again.alg(), alg);
        let jwk = original.public_jwk();
        assert_eq!(jwk.kid.as_deref(), Some(original.kid()));
        assert_eq!(jwk.alg.as_deref(), Some(alg.as_str()));
        assert_eq!(jwk.use_.as_deref(), Some("sig"));
    }
}

#[test]
fn jwks_keys_have_the_members_of_their_kind() {
    let rsa = key(Algorithm::RS256);
    let rsa = rsa.public_jwk();
    assert_eq!((rsa.kty.as_str(), rsa.e.as_deref()), ("RSA", Some("AQAB")));
    assert_eq!(rsa.n.as_ref().map(String::len), Some(342), "a 2048-bit modulus is 256 bytes");
    let ec = key(Algorithm::ES256);
    let ec = ec.public_jwk();
    assert_eq!((ec.kty.as_str(), ec.crv.as_deref()), ("EC", Some("P-256")));
    assert!(ec.x.is_some() && ec.y.is_some());
    let ed = key(Algorithm::EdDSA);
    let ed = ed.public_jwk();
    assert_eq!((ed.kty.as_str(), ed.crv.as_deref(), ed.y.as_deref()), ("OKP", Some("Ed25519"), None));
}

#[test]
fn garbage_key_files_are_errors() {
    assert!(SigningKey::from_pem(b"not a key").is_err());
    assert!(SigningKey::from_pem(b"-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n").is_err());
    assert!(SigningKey::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err());
    assert!(SigningKey::from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
    assert!(SigningKey::from_pem(&vec![b'A'; 1 << 20]).is_err());
}

#[test]
fn tokens_of_every_algorithm_carry_alg_typ_kid_and_verify_through_the_jwks() {
    for alg in Algorithm::ALL {
        let ring = KeyRing::new(key(alg));
        let token = ring.sign(&claims_expiring_at(NOW.as_secs() + 600)).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(format!("{:?}", header.alg), alg.as_str());
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(header.kid.as_deref(), Some(ring.current().kid()));
        let verifier = Verifier::from_jwks(&ring.jwks(NOW)).unwrap();
        let claims = verifier.verify(&token, NOW).unwrap();
        assert_eq!(claims["hw"], "hw-1");
        assert!(!claims.contains_key("aud"));
    }
}

#[test]
fn a_client_refuses_expired_tampered_foreign_and_other_hardware_tokens() {
    let ring = KeyRing::new(key(Algorithm::ES256));
    let verifier = Verifier::from_jwks(&ring.jwks(NOW)).unwrap().with_leeway_s(0);
    let token = ring.sign(&claims_expiring_at(NOW.as_secs() + 600)).unwrap();
    assert!(verifier.verify_for_hardware(&token, NOW, "hw-1").is_ok());
    assert_eq!(
        verifier.verify_for_hardware(&token, NOW, "hw-2"),
        Err(VerifyError::HardwareMismatch(Some("hw-1".into())))
    );
    assert_eq!(verifier.verify(&token, NOW.plus_secs(601)), Err(VerifyError::Expired(NOW.as_secs() + 600)));
    let (head, rest) = token.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let forged = format!("{head}.{}.{signature}", b64url(br#"{"hw":"hw-1","exp":9999999999}"#));
    assert!(matches!(verifier.verify(&forged, NOW), Err(VerifyError::Signature(_))));
    let foreign = KeyRing::new(key(Algorithm::ES256)).sign(&claims_expiring_at(NOW.as_secs() + 600)).unwrap();
    assert!(matches!(verifier.verify(&foreign, NOW), Err(VerifyError::UnknownKey(_))));
    assert!(matches!(verifier.verify("a.b", NOW), Err(VerifyError::Malformed(_))));
}

#[test]
fn rotation_keeps_the_old_key_published_until_its_last_token_expires() {
    let ring = KeyRing::new(key(Algorithm::ES256));
    let old = ring.current().kid().to_string();
    let last_exp = NOW.as_secs() + 86_400;
    ring.sign(&claims_expiring_at(NOW.as_secs() + 60)).unwrap();
    let token = ring.sign(&claims_expiring_at(last_exp)).unwrap();
    let new = ring.rotate(key(Algorithm::EdDSA), NOW);
    assert_ne!(new, old);
    assert_eq!(ring.current().kid(), new);
    let kids = |at: Timestamp| ring.jwks(at).keys.into_iter().filter_map(|k| k.kid).collect::<Vec<_>>();
    assert_eq!(kids(NOW), vec![new.clone(), old.clone()], "current first, then the retired key");
    let verifier = Verifier::from_jwks(&ring.jwks(NOW.plus_secs(3_600))).unwrap();
    assert!(verifier.verify(&token, NOW.plus_secs(3_600)).is_ok(), "old tokens verify after rotation");
    assert_eq!(kids(Timestamp::from_secs(last_exp)), vec![new.clone()], "gone once its last token expired");
    assert_eq!(ring.prune(Timestamp::from_secs(last_exp)), vec![old]);
    assert_eq!(ring.algorithms(NOW), vec![Algorithm::EdDSA]);
}

#[test]
fn a_ring_that_follows_an_agreed_ring_keeps_what_it_signed_here() {
    let here = KeyRing::new(key(Algorithm::ES256));
    let mine = here.current().kid().to_string();
    let last_exp = NOW.as_secs() + 86_400;
    here.sign(&claims_expiring_at(last_exp)).unwrap();
    let pem = |kid: &str| here.find(kid).unwrap().key().to_pem().unwrap().to_owned();
    let next = key(Algorithm::ES256);
    let next_kid = next.kid().to_string();
    // Another holder retired this ring's key, knowing nothing of the token signed here.
    let retired_mine = RetiredKey {
        key: SigningKey::from_pem(pem(&mine).as_bytes()).unwrap(),
        retired_at_s: NOW.as_secs(),
        max_exp_s: 0,
    };
    here.follow(next, vec![retired_mine], NOW);
    assert_eq!(here.current().kid(), next_kid);
    assert_eq!(here.find(&mine).unwrap().max_exp_s(), last_exp, "the token signed here still counts");
    let kids = |at: Timestamp| here.jwks(at).keys.into_iter().filter_map(|k| k.kid).collect::<Vec<_>>();
    assert_eq!(kids(Timestamp::from_secs(last_exp - 1)), vec![next_kid.clone(), mine.clone()]);

    // The agreed ring drops the old key: it stays here while the token signed here lives.
    let again = SigningKey::from_pem(pem(&next_kid).as_bytes()).unwrap();
    here.follow(again, Vec::new(), NOW.plus_secs(60));
    assert_eq!(kids(NOW.plus_secs(60)), vec![next_kid.clone(), mine]);
    assert_eq!(kids(Timestamp::from_secs(last_exp)), vec![next_kid.clone()]);

    // Following the ring that is already held changes nothing.
    let same = SigningKey::from_pem(pem(&next_kid).as_bytes()).unwrap();
    here.follow(same, Vec::new(), NOW.plus_secs(60));
    assert_eq!(here.current().kid(), next_kid);
    assert!(here.current().retired_at_s().is_none());
}

#[test]
fn a_retired_key_that_signed_nothing_stays_for_the_grace_period() {
    let ring = KeyRing::new(key(Algorithm::ES256));
    ring.rotate(key(Algorithm::ES256), NOW);
    let grace = u64::try_from(leasehold_engine::tokens::keyring::ROTATION_GRACE_S).unwrap();
    assert_eq!(ring.jwks(NOW.plus_secs(grace - 1)).keys.len(), 2);
    assert_eq!(ring.jwks(NOW.plus_secs(grace)).keys.len(), 1);
}

#[test]
fn jwe_round_trips_for_spki_pkcs1_pem_and_base64url_client_keys() {
    let public = client_key().to_public_key();
    let spki = public.to_public_key_der().unwrap();
    let forms = [
        b64url(spki.as_bytes()),
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, spki.as_bytes()),
        public.to_public_key_pem(LineEnding::LF).unwrap(),
        public.to_pkcs1_pem(LineEnding::CRLF).unwrap(),
        b64url(public.to_pkcs1_der().unwrap().as_bytes()),
    ];
    let jwt = KeyRing::new(key(Algorithm::EdDSA)).sign(&claims_expiring_at(NOW.as_secs() + 60)).unwrap();
    for form in forms {
        let client = ClientPublicKey::parse(&form).unwrap();
        let token = jwe::encrypt(&jwt, &client).unwrap();
        assert_eq!(token.split('.').count(), 5);
        assert_eq!(jwe::decrypt(&token, client_key()).unwrap(), jwt);
    }
}

#[test]
fn a_tampered_jwe_does_not_decrypt() {
    let client = ClientPublicKey::from_rsa(client_key().to_public_key());
    let token = jwe::encrypt("header.payload.signature", &client).unwrap();
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    parts[3] = b64url(b"sixteen byte blk");
    assert!(jwe::decrypt(&parts.join("."), client_key()).is_err());
    assert!(jwe::decrypt("a.b.c", client_key()).is_err());
}

#[test]
fn client_keys_that_are_not_rsa_keys_of_2048_to_4096_bits_are_refused() {
    assert!(ClientPublicKey::parse("").is_err());
    assert!(ClientPublicKey::parse("not base64 at all!").is_err());
    assert!(ClientPublicKey::parse(&b64url(b"random bytes, not DER")).is_err());
    let small = rsa::PrivateKey::new(&mut getrandom::SysRng, 1024).unwrap().to_public_key();
    assert!(ClientPublicKey::parse(&b64url(small.to_public_key_der().unwrap().as_bytes())).is_err());
    assert!(ClientPublicKey::parse(&"A".repeat(100_000)).is_err());
}

#[test]
fn audit_lists_each_drifted_claim_with_token_and_expected_values() {
    let ring = KeyRing::new(key(Algorithm::ES256));
    let mut issued = claims_expiring_at(NOW.as_secs() + 600);
    issued.insert("features".into(), json!(["render"]));
    let token = ring.sign(&issued).unwrap();
    let mut expected = issued.clone();
    expected.insert("iat".into(), json!(NOW.as_secs() + 5)); // issue time is not drift
    assert!(audit::audit_token(&token, &expected).unwrap().consistent);
    expected.insert("features".into(), json!(["render", "simulate"]));
    expected.remove("hw");
    let report = audit::audit_token(&token, &expected).unwrap();
    assert!(!report.consistent);
    let drift: Vec<_> = report.drift.iter().map(|d| (d.claim.as_str(), d.token.clone(), d.expected.clone())).collect();
    assert_eq!(
        drift,
        vec![
            ("features", json!(["render"]), json!(["render", "simulate"])),
            ("hw", json!("hw-1"), serde_json::Value::Null),
        ]
    );
    let encrypted = jwe::encrypt(&token, &ClientPublicKey::from_rsa(client_key().to_public_key())).unwrap();
    let report = audit::audit_token(&encrypted, &expected).unwrap();
    assert!(report.consistent && report.encrypted);
    assert!(audit::audit_token("garbage", &expected).is_err());
}

#[test]
fn the_subject_of_a_token_names_its_lease_license_and_item() {
    let mut scale = Claims::new();
    scale.insert("status".into(), json!("success"));
    scale.insert("leaseId".into(), json!("L"));
    scale.insert("licenseId".into(), json!("C"));
    scale.insert("productName".into(), json!("ThreeDee"));
    let subject = audit::subject(&scale);
    assert_eq!(subject.dialect, Dialect::Scale);
    assert_eq!((subject.lease_id.as_deref(), subject.item.as_deref()), (Some("L"), Some("ThreeDee")));
    let mut enterprise = Claims::new();
    enterprise.insert("render".into(), json!(true));
    enterprise.insert("jti".into(), json!("L"));
    enterprise.insert("lic".into(), json!("C"));
    let subject = audit::subject(&enterprise);
    assert_eq!(subject.dialect, Dialect::Enterprise);
    assert_eq!((subject.license_id.as_deref(), subject.item.as_deref()), (Some("C"), Some("render")));
}

#[test]
fn denial_tokens_expire_so_that_retired_keys_can_go() {
    let denial = leasehold_engine::Denial::new(leasehold_engine::ErrorCode::LicenseRevoked, "revoked");
    let scale = claims::scale_denial("ThreeDee", &denial, "leasehold", NOW, "jti-1");
    assert_eq!(scale["status"], "error");
    assert_eq!(scale["errorCode"], "licenseRevoked");
    assert_eq!(scale["errorDescription"], "revoked");
    assert!(scale["exp"].as_i64().unwrap() > NOW.as_secs());
    assert!(scale["nbf"].as_i64().unwrap() < NOW.as_secs());
    assert!(!scale.contains_key("aud"));
    let enterprise = claims::enterprise_denial("ThreeDee", &denial, "leasehold", NOW);
    assert!(enterprise["exp"].as_i64().unwrap() > NOW.as_secs());
}

#[test]
fn the_discovery_document_lists_issuer_keys_and_endpoints() {
    let doc = license_configuration("https://lic.example.com/", "leasehold", &[Algorithm::RS256, Algorithm::ES256]);
    assert_eq!(doc.issuer, "leasehold");
    assert_eq!(doc.jwks_uri, "https://lic.example.com/.well-known/jwks.json");
    assert_eq!(doc.signing_keys_uri, "https://lic.example.com/licensing-signing-keys/.well-known/jwks.json");
    assert_eq!(doc.signing_algorithms, vec!["RS256", "ES256"]);
    assert_eq!(doc.encryption_algorithms, vec!["RSA-OAEP"]);
    assert_eq!(doc.encryption_encodings, vec!["A256CBC-HS512"]);
}

#[test]
fn a_full_batch_queue_gives_the_request_back() {
    let queue = BatchQueue::new(2, 1);
    assert_eq!(queue.push(1), Ok(()));
    assert_eq!(queue.push(2), Ok(()));
    assert_eq!(queue.push(3), Err(Refused::Full(3)));
    let mut batch = Vec::new();
    assert!(queue.pop_batch(8, &mut batch));
    assert_eq!(batch, vec![1, 2]);
    queue.close();
    assert_eq!(queue.push(4), Err(Refused::Closed(4)));
    assert!(!queue.pop_batch(8, &mut batch));
}

#[test]
fn a_worker_takes_its_fair_share_so_the_others_are_not_idle() {
    let queue = BatchQueue::new(64, 2);
    for n in 0..10 {
        queue.push(n).unwrap();
    }
    let mut batch = Vec::new();
    queue.pop_batch(32, &mut batch);
    assert_eq!(batch.len(), 5);
}

#[tokio::test]
async fn the_pool_signs_many_requests_and_encrypts_when_asked() {
    let ring = Arc::new(KeyRing::new(key(Algorithm::EdDSA)));
    let pool = SignerPool::start(Arc::clone(&ring), PoolConfig { workers: 2, queue_capacity: 512 }).unwrap();
    let pending: Vec<_> = (0..200).map(|n| pool.sign(claims_expiring_at(NOW.as_secs() + n))).collect();
    let verifier = Verifier::from_jwks(&ring.jwks(NOW)).unwrap();
    for (n, token) in pending.into_iter().enumerate() {
        let claims = verifier.verify(&token.await.unwrap(), NOW).unwrap();
        assert_eq!(claims["exp"], json!(NOW.as_secs() + i64::try_from(n).unwrap()), "answers reach their callers");
    }
    assert_eq!(ring.current().max_exp_s(), NOW.as_secs() + 199);
    let client = ClientPublicKey::from_rsa(client_key().to_public_key());
    let token = pool.sign_for(claims_expiring_at(NOW.as_secs()), Some(client)).await.unwrap();
    let inner = jwe::decrypt(&token, client_key()).unwrap();
    assert!(verifier.verify(&inner, NOW).is_ok());
    pool.shutdown();
    assert_eq!(pool.sign(Claims::new()).await, Err(SignError::Stopped));
}

#[tokio::test]
async fn any_signer_can_encrypt_through_the_default_sign_for() {
    let signer = leasehold_engine::signer::UnsignedTokens;
    let client = ClientPublicKey::from_rsa(client_key().to_public_key());
    let token = signer.sign_for(claims_expiring_at(NOW.as_secs()), Some(client)).await.unwrap();
    let inner = jwe::decrypt(&token, client_key()).unwrap();
    assert_eq!(audit::decode_claims(&inner).unwrap()["hw"], "hw-1");
}

#[test]
fn a_signed_payload_is_the_claims_json() {
    let key = key(Algorithm::ES256);
    let claims = claims_expiring_at(NOW.as_secs());
    let token = jws::sign_claims(&key, &claims).unwrap();
    assert_eq!(audit::decode_claims(&token).unwrap(), claims);
    assert!(token.starts_with(key.header_b64()));
}
