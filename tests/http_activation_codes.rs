//! Activation codes (SPEC section 12) on the wire: a batch made from a license template, its
//! codes shown once; redeeming one makes the template's license for the redeemer's licensee,
//! again answers the same license, and a used, unknown or expired code is refused with its own
//! code; guessing is cut off per consumer; codes and redemptions survive a kill -9.

mod http_common;

use http_common::{request, seats, Reply, Server, ADMIN};
use leasehold_engine::Timestamp;
use serde_json::{json, Value};
use std::time::Duration;

fn redeem(server: &Server, key: &str, body: Value) -> Reply {
    let bearer = format!("Bearer {key}");
    let headers = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
    request(server.addr, "POST", "/activation-codes/redeem", &headers, Some(body.to_string().as_bytes()))
}

/// Redeems `code` as `key`, expecting `status`; the license answered.
fn redeemed(server: &Server, key: &str, code: &str, status: u16) -> Value {
    let reply = redeem(server, key, json!({"code": code}));
    assert_eq!(reply.status, status, "{code}: {}", reply.text());
    reply.json()["license"].clone()
}

/// The refusal's HTTP status and code.
fn refusal(reply: &Reply) -> (u16, Value) {
    (reply.status, reply.json()["code"].clone())
}

fn batch(server: &Server, body: Value) -> (String, Vec<String>) {
    let created = server.admin_ok("POST", "/admin/activation-codes", Some(body), 201);
    let codes: Vec<String> =
        created["codes"].as_array().expect("codes").iter().map(|c| c.as_str().expect("a code").to_owned()).collect();
    (created["batch"].as_str().expect("a batch id").to_owned(), codes)
}

fn is_code(code: &str) -> bool {
    let groups: Vec<&str> = code.split('-').collect();
    groups.len() == 4
        && groups.iter().all(|g| g.len() == 5 && g.bytes().all(|b| b"0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(&b)))
}

fn studio(server: &Server) {
    let product = json!({
        "name": "Studio",
        "features": [{"name": "render"}, {"name": "export"}],
        "tiers": [{"name": "Basic", "features": ["render"]}, {"name": "Pro", "includes": "Basic", "features": ["export"]}],
    });
    server.admin_ok("POST", "/admin/products", Some(product), 201);
}

#[test]
fn codes_make_licenses_once_per_use_and_survive_a_kill() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let server = Server::start_in(scratch.path(), &[], true);
    studio(&server);
    let (acme, acme_user, acme_key) = server.party("Acme");
    let (other, _, other_key) = server.party("Other");
    let template = json!({"product": "Studio", "tier": "Pro", "credit": seats(2), "license_duration_s": 86_400});
    let mut body = template.clone();
    body["count"] = json!(3);
    let (batch_id, codes) = batch(&server, body);
    assert_eq!(codes.len(), 3);
    assert!(codes.iter().all(|c| is_code(c)), "{codes:?}");

    // The first redemption makes the template's license for the consumer's licensee.
    assert_eq!(server.authz(&acme_key, "/authz/.txt?export").text(), "false", "no license yet");
    let license = redeemed(&server, &acme_key, &codes[0], 201);
    assert_eq!((license["licensee"].clone(), license["tier"].clone()), (json!(acme), json!("Pro")));
    assert_eq!(license["credit"]["qty"], json!(2));
    assert!(license["valid_until"].is_string(), "a day from now: {license}");
    assert_eq!(server.authz(&acme_key, "/authz/.txt?export").text(), "true");
    let events = server.admin_ok("GET", "/admin/events?type=license.created", None, 200);
    let event = &events["items"][0];
    assert_eq!(event["actor"], json!({"kind": "consumer", "id": acme_user}));
    assert_eq!(event["data"]["activation_batch"], json!(batch_id));

    // The same consumer again, however it types the code: the same license, 200. Anyone else: used.
    let typed = codes[0].to_lowercase().replace('-', " ");
    assert_eq!(redeemed(&server, &acme_key, &typed, 200)["id"], license["id"]);
    let used = redeem(&server, &other_key, json!({"code": codes[0]}));
    assert_eq!(refusal(&used), (409, json!("activationCodeUsed")), "{}", used.text());

    // A kill -9 right after a redemption: the redemption, its license and the unused code remain.
    let others = redeemed(&server, &other_key, &codes[1], 201);
    server.kill();
    let server = Server::start_in(scratch.path(), &[], true);
    assert_eq!(redeemed(&server, &other_key, &codes[1], 200)["id"], others["id"]);
    assert_eq!(
        server.admin_ok("GET", &format!("/admin/licenses/{}", others["id"].as_str().unwrap()), None, 200)["licensee"],
        json!(other)
    );
    assert_eq!(server.authz(&other_key, "/authz/.txt?export").text(), "true");
    assert_eq!(refusal(&redeem(&server, &acme_key, json!({"code": codes[1]}))), (409, json!("activationCodeUsed")));
    let third = redeemed(&server, &acme_key, &codes[2], 201);
    assert_ne!(third["id"], license["id"]);
    let shown = server.admin_ok("GET", &format!("/admin/activation-codes/{batch_id}"), None, 200);
    assert_eq!(
        (shown["issued"].clone(), shown["redeemed"].clone(), shown["used_up"].clone()),
        (json!(3), json!(3), json!(3))
    );
    assert!(shown.get("codes").is_none(), "codes are shown only when made: {shown}");
    let listed = server.admin_ok("GET", "/admin/activation-codes", None, 200);
    assert_eq!(listed["items"][0]["batch"], json!(batch_id));

    // A code several consumers may redeem, each once.
    let mut shared = template.clone();
    shared["count"] = json!(1);
    shared["uses_per_code"] = json!(2);
    let (_, shared_codes) = batch(&server, shared);
    redeemed(&server, &acme_key, &shared_codes[0], 201);
    redeemed(&server, &other_key, &shared_codes[0], 201);
    let (_, _, third_key) = server.party("Third");
    assert_eq!(refusal(&redeem(&server, &third_key, json!({"code": shared_codes[0]}))).0, 409);

    // A license the code's redeemer lost (deleted) is not made again.
    let license_path = format!("/admin/licenses/{}?force=true", license["id"].as_str().unwrap());
    assert_eq!(server.admin("DELETE", &license_path, None).status, 204);
    assert_eq!(refusal(&redeem(&server, &acme_key, json!({"code": codes[0]}))).0, 409);
}

#[test]
fn unknown_expired_and_ambiguous_redemptions_are_refused_and_guessing_is_cut_off() {
    let server = Server::start();
    studio(&server);
    let (acme, _, acme_key) = server.party("Acme");
    let (other, _, _) = server.party("Other");
    let unknown = redeem(&server, &acme_key, json!({"code": "00000-00000-00000-00000"}));
    assert_eq!(refusal(&unknown), (404, json!("activationCodeNotFound")), "{}", unknown.text());
    assert_eq!(refusal(&redeem(&server, &acme_key, json!({"code": "not a code"}))).0, 404);
    assert_eq!(redeem(&server, "lh_wrong", json!({"code": "x"})).status, 401);
    assert_eq!(redeem(&server, &acme_key, json!({"cod": "x"})).status, 400);

    // A batch that expires, and one whose licenses would already have ended.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let soon = Timestamp::from_millis(i64::try_from(now.as_millis()).unwrap() + 1_500);
    let soon = leasehold_transports::http::admin::shapes::rfc3339(soon);
    let (_, expiring) = batch(
        &server,
        json!({"product": "Studio", "tier": "Basic", "credit": seats(1), "count": 1, "expires_at": soon}),
    );
    std::thread::sleep(Duration::from_millis(1_700));
    let late = redeem(&server, &acme_key, json!({"code": expiring[0]}));
    assert_eq!(refusal(&late), (410, json!("activationCodeExpired")), "{}", late.text());

    // A consumer of two licensees says which; it cannot name another's.
    let shared = server.admin_ok(
        "POST",
        "/admin/consumers",
        Some(json!({"name": "consultant", "kind": "user", "licensees": [acme, other]})),
        201,
    );
    let shared_key = shared["api_key"].as_str().unwrap();
    let (_, codes) = batch(&server, json!({"product": "Studio", "tier": "Basic", "credit": seats(1), "count": 2}));
    assert_eq!(redeem(&server, shared_key, json!({"code": codes[0]})).status, 400);
    let (stranger, _, _) = server.party("Stranger");
    assert_eq!(redeem(&server, shared_key, json!({"code": codes[0], "licensee": stranger})).status, 404);
    let chosen = redeem(&server, shared_key, json!({"code": codes[0], "licensee": other}));
    assert_eq!(chosen.status, 201, "{}", chosen.text());
    assert_eq!(chosen.json()["license"]["licensee"], json!(other));

    // Ten failures in a minute are answered; the eleventh try is refused, even with a good code.
    let (_, _, guesser) = server.party("Guesser");
    for i in 0..10 {
        let guess = format!("{:05}-00000-00000-00000", i);
        assert_eq!(refusal(&redeem(&server, &guesser, json!({"code": guess}))).0, 404, "guess {i}");
    }
    let cut_off = redeem(&server, &guesser, json!({"code": codes[1]}));
    assert_eq!(refusal(&cut_off), (429, json!("tooManyRequests")), "{}", cut_off.text());
    let retry_after: u64 = cut_off.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(redeemed(&server, &acme_key, &codes[1], 201)["licensee"], json!(acme), "others are not cut off");
}

#[test]
fn batches_are_checked_and_a_retried_create_answers_the_same_codes() {
    let server = Server::start();
    studio(&server);
    let good = json!({"product": "Studio", "tier": "Basic", "credit": seats(1), "count": 2});
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    for (bad, status) in [
        (with("count", json!(0)), 400),
        (with("count", json!(10_001)), 400),
        (with("uses_per_code", json!(0)), 400),
        (with("tier", json!("Gold")), 400),
        (with("product", json!("Nothing")), 404),
        (with("expires_at", json!("2001-01-01T00:00:00Z")), 400),
        (with("license_duration_s", json!(0)), 400),
        (with("surprise", json!(1)), 400),
        (json!({"product": "Studio", "count": 1}), 400),
    ] {
        let reply = server.admin("POST", "/admin/activation-codes", Some(bad.clone()));
        assert_eq!(reply.status, status, "{bad}: {}", reply.text());
    }
    assert_eq!(server.admin_ok("GET", "/admin/activation-codes", None, 200)["items"], json!([]), "nothing was made");

    let create = || {
        let headers = [
            ("Authorization", format!("Bearer {ADMIN}")),
            ("Content-Type", "application/json".into()),
            ("Idempotency-Key", "batch-7".into()),
        ];
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply =
            request(server.addr, "POST", "/admin/activation-codes", &headers, Some(good.to_string().as_bytes()));
        assert_eq!(reply.status, 201, "{}", reply.text());
        reply.json()
    };
    let (first, retry) = (create(), create());
    assert_eq!((first["batch"].clone(), first["codes"].clone()), (retry["batch"].clone(), retry["codes"].clone()));
    assert_eq!(server.admin_ok("GET", "/admin/activation-codes", None, 200)["items"].as_array().unwrap().len(), 1);
}
