//! The platform's license-key API (SPEC section 13, `seeds/platform-features.txt`) on the wire:
//! issue a key to a customer, validate it, activate machines (one seat each, `MaxUsers`
//! enforced, a JWE for a machine that gives its public key), heartbeats by client id,
//! deactivation freeing the seat, the audit of the key token against the license, regeneration,
//! the sibling rule and revocation; activations kept across a kill -9; forged, tampered,
//! unsigned and misused tokens and malformed input refused, each with its code, changing
//! nothing.

mod http_common;

use http_common::{jwt_header, jwt_payload, request, Reply, Server};
use leasehold_engine::tokens::jwe;
use leasehold_engine::tokens::jws::b64url;
use leasehold_engine::tokens::verify::Verifier;
use leasehold_engine::Timestamp;
use rsa::pkcs8::EncodePublicKey as _;
use serde_json::{json, Value};

fn post(server: &Server, path: &str, body: Value) -> Reply {
    request(server.addr, "POST", path, &[("Content-Type", "application/json")], Some(body.to_string().as_bytes()))
}

fn refusal(reply: &Reply) -> (u16, Value) {
    (reply.status, reply.json()["code"].clone())
}

/// Verifies `token` with the server's published keys.
fn verified(server: &Server, token: &str) -> Value {
    let jwks = request(server.addr, "GET", "/.well-known/jwks.json", &[], None);
    let verifier = Verifier::from_jwks_json(jwks.text().as_bytes()).expect("the server's JWKS");
    let now = Timestamp::from_secs(i64::try_from(std::time::UNIX_EPOCH.elapsed().unwrap().as_secs()).unwrap());
    Value::Object(verifier.verify(token, now).unwrap_or_else(|e| panic!("{token} does not verify: {e}")))
}

fn product(server: &Server) {
    let product = json!({
        "name": "Rdn.Identity",
        "features": [{"name": "sso"}, {"name": "passkeys"}, {"name": "priority_support", "display_only": true}],
        "tiers": [{"name": "Enterprise", "features": ["sso", "passkeys", "priority_support"], "max_users": 2}],
    });
    server.admin_ok("POST", "/admin/products", Some(product), 201);
}

fn issue(server: &Server, customer: &str) -> (String, String) {
    let issued = server.admin_ok(
        "POST",
        "/license-keys",
        Some(json!({"product": "Rdn.Identity", "tier": "Enterprise", "customer": customer})),
        201,
    );
    let license = issued["licenseId"].as_str().expect("a license id").to_owned();
    (license, issued["keyToken"].as_str().expect("a key token").to_owned())
}

fn activate(server: &Server, key_token: &str, machine: &str) -> Reply {
    post(server, "/license-activations/activate", json!({"keyToken": key_token, "machineId": machine}))
}

fn client_id(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["clientId"].as_str().expect("a client id").to_owned()
}

fn start(dir: &std::path::Path) -> Server {
    // One issuer across restarts (without a public URL it is the listening address).
    Server::start_in(dir, &["--public-url", "https://licenses.example.com"], true)
}

#[test]
fn a_key_is_issued_validated_activated_per_machine_renewed_audited_and_revoked_even_across_a_kill() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let server = start(scratch.path());
    product(&server);

    // 1. Issue: an RS256 key token naming the license, its terms and the heartbeat policy.
    let (license, key_token) = issue(&server, "Customer@Example.com");
    assert_eq!(jwt_header(&key_token)["alg"], json!("RS256"));
    let claims = verified(&server, &key_token);
    assert_eq!(claims["licenseId"], json!(license));
    assert_eq!(claims["sub"], json!("customer@example.com"));
    assert_eq!((claims["tier"].clone(), claims["MaxUsers"].clone()), (json!("Enterprise"), json!(2)));
    assert_eq!(claims["features"], json!(["passkeys", "sso"]), "display-only features stay out");
    assert_eq!(claims["heartbeat"], json!({"intervalSeconds": 3600, "tokenLifetimeSeconds": 172_800}));
    assert_eq!(claims["perpetual"], json!(true));
    let century = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!(century > 99 * 365 * 86_400, "a perpetual key lives a century: {century}");

    // 2. Validate.
    let valid = post(&server, "/license-keys/validate", json!({"keyToken": key_token}));
    assert_eq!(valid.status, 200, "{}", valid.text());
    assert_eq!((valid.json()["licenseId"].clone(), valid.json()["claims"].clone()), (json!(license), claims));

    // 3. Activate: one seat per machine, the same client id for the same machine.
    let first = activate(&server, &key_token, "HWID-ABC-123");
    let client_a = client_id(&first);
    let token = verified(&server, first.json()["token"].as_str().unwrap());
    assert_eq!((token["clientId"].clone(), token["machineId"].clone()), (json!(client_a), json!("HWID-ABC-123")));
    assert_eq!((token["licenseId"].clone(), token["MaxUsers"].clone()), (json!(license), json!(2)));
    let lifetime = token["exp"].as_i64().unwrap() - token["iat"].as_i64().unwrap();
    assert!((172_700..=172_800).contains(&lifetime), "a 48 h token: {lifetime}");
    assert_eq!(client_id(&activate(&server, &key_token, "HWID-ABC-123")), client_a, "the same machine again");

    // A machine that gives its public key gets a JWE only it can open.
    let private = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).expect("an RSA key");
    let public = private.to_public_key().to_public_key_pem(Default::default()).expect("PEM");
    let sealed = post(
        &server,
        "/license-activations/activate",
        json!({"keyToken": key_token, "machineId": "HWID-B", "publicKey": public}),
    );
    let client_b = client_id(&sealed);
    let jwe_token = sealed.json()["token"].as_str().unwrap().to_owned();
    assert_eq!((jwe_token.split('.').count(), sealed.json()["encrypted"].clone()), (5, json!(true)));
    let opened = jwe::decrypt(&jwe_token, &private).expect("the machine's key opens it");
    assert_eq!(verified(&server, &opened)["machineId"], json!("HWID-B"));

    // MaxUsers: a third machine finds no seat.
    let full = activate(&server, &key_token, "HWID-C");
    assert_eq!(refusal(&full), (409, json!("maxConcurrentSessionsExceed")), "{}", full.text());

    // 4. Heartbeats renew by client id, sealed again for the machine with a key; across a kill.
    server.kill();
    let server = start(scratch.path());
    let beat = post(&server, "/license-keys/heartbeat", json!({"clientId": client_a}));
    assert_eq!(client_id(&beat), client_a);
    let renewed = verified(&server, beat.json()["token"].as_str().unwrap());
    assert_eq!(renewed["machineId"], json!("HWID-ABC-123"));
    let sealed_beat = post(&server, "/license-keys/heartbeat", json!({"clientId": client_b}));
    assert_eq!(client_id(&sealed_beat), client_b);
    let opened = jwe::decrypt(sealed_beat.json()["token"].as_str().unwrap(), &private).expect("sealed again");
    assert_eq!(verified(&server, &opened)["clientId"], json!(client_b));

    // Deactivation frees the seat; the client id then renews nothing.
    let off = post(&server, "/license-activations/deactivate", json!({"clientId": client_a}));
    assert_eq!(off.status, 200, "{}", off.text());
    assert_eq!((off.json()["deactivated"].clone(), off.json()["released"].clone()), (json!(true), json!(true)));
    let gone = post(&server, "/license-keys/heartbeat", json!({"clientId": client_a}));
    assert_eq!(refusal(&gone), (404, json!("notFound")));
    let client_c = client_id(&activate(&server, &key_token, "HWID-C"));

    // 5. Audit: the key token against the license, and the machines.
    let audit = server.admin_ok("POST", &format!("/license-keys/{license}/audit"), None, 200);
    assert_eq!((audit["consistent"].clone(), audit["drift"].clone()), (json!(true), json!([])));
    let machines = audit["activations"].as_array().expect("activations");
    let encrypted: Vec<(Value, Value)> =
        machines.iter().map(|m| (m["machineId"].clone(), m["encrypted"].clone())).collect();
    assert_eq!(encrypted.len(), 2, "{audit}");
    assert!(
        encrypted.contains(&(json!("HWID-B"), json!(true))) && encrypted.contains(&(json!("HWID-C"), json!(false)))
    );
    server.admin_ok("PATCH", &format!("/admin/licenses/{license}"), Some(json!({"credit": {"qty": 3}})), 200);
    let drifted = server.admin_ok("POST", &format!("/license-keys/{license}/audit"), None, 200);
    assert_eq!(drifted["consistent"], json!(false));
    assert_eq!(drifted["drift"], json!([{"claim": "MaxUsers", "token": 2, "expected": 3}]));
    let regenerated = server.admin_ok("POST", &format!("/license-keys/{license}/regenerate"), None, 200);
    assert_eq!(verified(&server, regenerated["keyToken"].as_str().unwrap())["MaxUsers"], json!(3));
    let again = server.admin_ok("POST", &format!("/license-keys/{license}/audit"), None, 200);
    assert_eq!(again["consistent"], json!(true), "{again}");

    // The sibling rule: the customer's next key of the product, once activated, revokes this one.
    let (second, second_token) = issue(&server, "customer@example.com");
    let first_licensee = server.admin_ok("GET", &format!("/admin/licenses/{license}"), None, 200)["licensee"].clone();
    let second_licensee = server.admin_ok("GET", &format!("/admin/licenses/{second}"), None, 200)["licensee"].clone();
    assert_eq!(first_licensee, second_licensee, "one customer, one licensee");
    let second_client = client_id(&activate(&server, &second_token, "HWID-ABC-123"));
    let superseded = post(&server, "/license-keys/heartbeat", json!({"clientId": client_c}));
    assert_eq!(refusal(&superseded), (409, json!("licenseRevoked")), "{}", superseded.text());
    let stale = post(&server, "/license-keys/validate", json!({"keyToken": key_token}));
    assert_eq!(refusal(&stale), (409, json!("licenseRevoked")));

    // 6. Revoke: the next heartbeat and validation are refused.
    let revoked = server.admin_ok(
        "POST",
        &format!("/license-keys/{second}/revoke"),
        Some(json!({"reason": "Subscription cancelled"})),
        200,
    );
    assert_eq!(revoked["license"]["status"], json!("revoked"));
    let after = post(&server, "/license-keys/heartbeat", json!({"clientId": second_client}));
    assert_eq!(refusal(&after), (409, json!("licenseRevoked")), "{}", after.text());
    assert_eq!(refusal(&activate(&server, &second_token, "HWID-D")), (409, json!("licenseRevoked")));
    let events = server.admin_ok("GET", "/admin/events?limit=1000", None, 200);
    let kinds: Vec<&str> = events["items"].as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    for kind in ["license.key_token_issued", "machine.activated", "machine.deactivated", "license.revoked"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
}

#[test]
fn forged_tampered_unsigned_and_misused_tokens_and_bad_input_are_refused_and_change_nothing() {
    let server = Server::start();
    product(&server);
    let (license, key_token) = issue(&server, "buyer@example.com");
    let activated = activate(&server, &key_token, "HWID-1");
    let lease_token = activated.json()["token"].as_str().unwrap().to_owned();
    let off = post(&server, "/license-activations/deactivate", json!({"clientId": client_id(&activated)}));
    assert_eq!(off.status, 200, "{}", off.text());

    let parts: Vec<&str> = key_token.split('.').collect();
    let mut claims = jwt_payload(&key_token);
    claims["MaxUsers"] = json!(1000);
    let tampered = format!("{}.{}.{}", parts[0], b64url(claims.to_string().as_bytes()), parts[2]);
    let unsigned = format!("{}.{}.", b64url(br#"{"alg":"none","typ":"JWT"}"#), parts[1]);
    let hs256 = format!("{}.{}.{}", b64url(br#"{"alg":"HS256","typ":"JWT"}"#), parts[1], parts[2]);
    for (what, token) in [
        ("malformed", "not-a-token".to_owned()),
        ("tampered", tampered),
        ("unsigned", unsigned),
        ("another algorithm", hs256),
        ("a lease token", lease_token),
    ] {
        let validate = post(&server, "/license-keys/validate", json!({"keyToken": token}));
        assert_eq!(refusal(&validate), (401, json!("invalidKeyToken")), "{what}: {}", validate.text());
        let activation = activate(&server, &token, "HWID-2");
        assert_eq!(refusal(&activation), (401, json!("invalidKeyToken")), "{what}: {}", activation.text());
    }

    let oversized = post(&server, "/license-keys/validate", json!({"keyToken": "a".repeat(70_000)}));
    assert_eq!(refusal(&oversized), (413, json!("payloadTooLarge")));

    for (what, body) in [
        ("an empty machine id", json!({"keyToken": key_token, "machineId": ""})),
        ("a control character", json!({"keyToken": key_token, "machineId": "HW\u{7}"})),
        ("a long machine id", json!({"keyToken": key_token, "machineId": "m".repeat(257)})),
        ("a bad public key", json!({"keyToken": key_token, "machineId": "HWID-2", "publicKey": "not-a-key"})),
        ("an unknown field", json!({"keyToken": key_token, "machineId": "HWID-2", "seats": 9})),
        ("no key token", json!({"machineId": "HWID-2"})),
    ] {
        let reply = post(&server, "/license-activations/activate", body);
        assert_eq!(refusal(&reply), (400, json!("badRequest")), "{what}: {}", reply.text());
    }
    for client in ["nope", "00000000-0000-0000-0000-000000000000"] {
        for path in ["/license-keys/heartbeat", "/license-activations/deactivate"] {
            assert_eq!(refusal(&post(&server, path, json!({"clientId": client}))), (404, json!("notFound")), "{path}");
        }
    }
    assert_eq!(request(server.addr, "GET", "/license-keys/validate", &[], None).status, 405);

    // Issuing needs the admin's credentials and a real product, tier and address.
    let asked = json!({"product": "Rdn.Identity", "tier": "Enterprise", "customer": "x@example.com"});
    assert_eq!(post(&server, "/license-keys", asked).status, 401);
    let past = "2001-01-01T00:00:00Z";
    for (body, status) in [
        (json!({"product": "Rdn.Identity", "tier": "Gold", "customer": "x@example.com"}), 400),
        (json!({"product": "Nothing", "tier": "Enterprise", "customer": "x@example.com"}), 404),
        (json!({"product": "Rdn.Identity", "tier": "Enterprise", "customer": "not an address"}), 400),
        (
            json!({"product": "Rdn.Identity", "tier": "Enterprise", "customer": "x@example.com", "validUntil": past}),
            400,
        ),
    ] {
        let reply = server.admin("POST", "/license-keys", Some(body.clone()));
        assert_eq!(reply.status, status, "{body}: {}", reply.text());
    }
    assert_eq!(server.admin("POST", "/license-keys/not-an-id/audit", None).status, 404);
    assert_eq!(server.admin("POST", "/admin/license-keys", Some(json!({}))).status, 404, "no alias under /admin/");

    // Nothing changed: no activation, one license, the key still valid and its token consistent.
    let audit = server.admin_ok("POST", &format!("/license-keys/{license}/audit"), None, 200);
    assert_eq!((audit["consistent"].clone(), audit["activations"].clone()), (json!(true), json!([])));
    let licenses = server.admin_ok("GET", "/admin/licenses", None, 200);
    assert_eq!(licenses["items"].as_array().map(Vec::len), Some(1), "{licenses}");
    assert_eq!(post(&server, "/license-keys/validate", json!({"keyToken": key_token})).status, 200);
}
