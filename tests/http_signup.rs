//! Self-service sign-up (SPEC section 13) on the wire, e-mailing through a real SMTP server
//! (aiosmtpd): register, set the password with the e-mailed token, log in, claim the license of
//! the registered tier; answers that never tell a known address from an unknown one; used,
//! expired and unknown tokens, short passwords and floods refused, each with its code; the
//! account and its claim kept across a kill -9.

mod http_common;

use http_common::smtp::SmtpServer;
use http_common::{request, Reply, Server};
use serde_json::{json, Value};

fn post(server: &Server, path: &str, body: Value, key: Option<&str>) -> Reply {
    let bearer = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer));
    }
    request(server.addr, "POST", path, &headers, Some(body.to_string().as_bytes()))
}

fn refusal(reply: &Reply) -> (u16, Value) {
    (reply.status, reply.json()["code"].clone())
}

/// The set-password token of the next message.
fn token_of(smtp: &SmtpServer) -> String {
    let message = smtp.next_message();
    let at = message.find("lhs_").unwrap_or_else(|| panic!("no token in {message}"));
    message[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect()
}

fn start(smtp: &SmtpServer, dir: &std::path::Path) -> Server {
    let config = dir.join("leasehold.toml");
    std::fs::write(&config, smtp.config()).expect("the configuration is written");
    Server::start_in(&dir.join("data"), &["--config", config.to_str().unwrap()], true)
}

#[test]
fn a_person_registers_sets_a_password_logs_in_and_claims_a_license_even_across_a_kill() {
    let smtp = SmtpServer::start();
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let server = start(&smtp, scratch.path());
    let product = json!({
        "name": "Studio",
        "features": [{"name": "render"}, {"name": "export"}],
        "tiers": [{"name": "Solo", "features": ["render"], "max_users": 2}],
    });
    server.admin_ok("POST", "/admin/products", Some(product), 201);

    let registered =
        post(&server, "/register", json!({"email": "Ada@Home.example", "product": "Studio", "tier": "Solo"}), None);
    assert_eq!(registered.status, 202, "{}", registered.text());
    let token = token_of(&smtp);
    let short = post(&server, "/set-password", json!({"token": token, "password": "short"}), None);
    assert_eq!(short.status, 400, "{}", short.text());
    let set = post(&server, "/set-password", json!({"token": token, "password": "correct horse battery"}), None);
    assert_eq!(set.status, 200, "{}", set.text());
    assert_eq!(set.json()["email"], json!("ada@home.example"));
    let reused = post(&server, "/set-password", json!({"token": token, "password": "another password!"}), None);
    assert_eq!(refusal(&reused).0, 409, "a token works once: {}", reused.text());
    assert_eq!(
        refusal(&post(&server, "/set-password", json!({"token": "lhs_nope", "password": "0123456789"}), None)).0,
        404
    );

    // A wrong password and an unknown address are refused alike.
    let wrong = post(&server, "/login", json!({"email": "ada@home.example", "password": "wrong password"}), None);
    let unknown = post(&server, "/login", json!({"email": "nobody@home.example", "password": "wrong password"}), None);
    assert_eq!(refusal(&wrong), (401, json!("invalidCredentials")));
    assert_eq!((unknown.status, unknown.json()), (wrong.status, wrong.json()), "the answers are the same");

    let login =
        post(&server, "/login", json!({"email": "ADA@home.example", "password": "correct horse battery"}), None);
    assert_eq!(login.status, 200, "{}", login.text());
    let key = login.json()["api_key"].as_str().expect("an API key").to_owned();
    let claimed = post(&server, "/user/claim-license", json!({}), Some(&key));
    assert_eq!(claimed.status, 201, "{}", claimed.text());
    let license = claimed.json()["license"].clone();
    assert_eq!((license["tier"].clone(), license["credit"]["qty"].clone()), (json!("Solo"), json!(2)));
    assert!(license["license_key"].is_string(), "a license key: {license}");
    // The license key is the platform's key token: it activates a machine.
    let key_token = claimed.json()["keyToken"].as_str().expect("a key token").to_owned();
    let activated =
        post(&server, "/license-activations/activate", json!({"keyToken": key_token, "machineId": "ada-laptop"}), None);
    assert_eq!(activated.status, 200, "{}", activated.text());
    let licensee =
        server.admin_ok("GET", &format!("/admin/licensees/{}", license["licensee"].as_str().unwrap()), None, 200);
    assert_eq!(licensee["kind"], json!("person"));
    // A seat per machine, as for the platform's activations: a checkout names its machine.
    assert_eq!(server.authz(&key, "/authz/.txt?render&hw=ada-desktop").text(), "true", "the license is theirs to use");

    // Across a kill -9: the same claim answers the same license; the password still works.
    server.kill();
    let server = start(&smtp, scratch.path());
    let again = post(&server, "/user/claim-license", json!({}), Some(&key));
    assert_eq!((again.status, again.json()["license"]["id"].clone()), (200, license["id"].clone()), "{}", again.text());
    let relogin =
        post(&server, "/login", json!({"email": "ada@home.example", "password": "correct horse battery"}), None);
    assert_eq!(relogin.status, 200, "{}", relogin.text());
    assert_eq!(post(&server, "/user/claim-license", json!({}), Some(&key)).status, 401, "a login answers a new key");

    // Registering an address that has an account is answered the same, and its token resets the
    // password.
    let twice =
        post(&server, "/register", json!({"email": "ada@home.example", "product": "Studio", "tier": "Solo"}), None);
    assert_eq!((twice.status, twice.json()), (registered.status, registered.json()));
    let reset = token_of(&smtp);
    assert_eq!(post(&server, "/set-password", json!({"token": reset, "password": "a new password"}), None).status, 200);
    let new_login = post(&server, "/login", json!({"email": "ada@home.example", "password": "a new password"}), None);
    assert_eq!(new_login.status, 200);

    // Bad registrations change nothing and e-mail nothing.
    for bad in [
        json!({"email": "not an address", "product": "Studio", "tier": "Solo"}),
        json!({"email": "b@home.example", "product": "Nothing", "tier": "Solo"}),
        json!({"email": "b@home.example", "product": "Studio", "tier": "Gold"}),
        json!({"email": "b@home.example"}),
    ] {
        assert_eq!(post(&server, "/register", bad.clone(), None).status, 400, "{bad}");
    }
}

#[test]
fn floods_of_logins_and_registrations_are_cut_off() {
    let smtp = SmtpServer::start();
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let server = start(&smtp, scratch.path());
    let mut last = None;
    for _ in 0..6 {
        last = Some(post(&server, "/login", json!({"email": "eve@home.example", "password": "guess guess"}), None));
    }
    let cut_off = last.expect("six tries");
    assert_eq!(refusal(&cut_off), (429, json!("tooManyRequests")), "{}", cut_off.text());
    assert!(cut_off.header("retry-after").is_some());
    // Another address from the same client is still answered (until the client's own limit).
    let other = post(&server, "/login", json!({"email": "bob@home.example", "password": "guess guess"}), None);
    assert_eq!(refusal(&other).0, 401);

    // Without SMTP there is no sign-up.
    let plain = Server::start();
    let refused = post(&plain, "/register", json!({"email": "a@home.example", "product": "P", "tier": "T"}), None);
    assert_eq!(refusal(&refused), (503, json!("mailUnavailable")));
}
