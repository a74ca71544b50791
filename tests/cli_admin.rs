//! `leasehold admin` against a real server (SPEC section 10, "Command line"): every step of a
//! license's story run as the `leasehold admin ... --json` binary, tables for people, and the
//! exit codes: 0 on success, 1 with the server's code on an API error or when the server cannot
//! be reached, 2 on a usage error.

mod http_common;

use http_common::{Server, ADMIN};
use serde_json::Value;
use std::process::{Command, Output};

/// `leasehold admin <args>` against `server` with the admin token given as a flag.
fn admin(server: &Server, args: &[&str]) -> Output {
    let url = format!("http://{}", server.addr);
    run(&[&["admin", "--server", &url, "--admin-token", ADMIN], args].concat(), &[])
}

/// `leasehold <args>` with `env` set and no `LEASEHOLD_*` variables of the test's own.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leasehold"));
    command.args(args).env_remove("LEASEHOLD_SERVER").env_remove("LEASEHOLD_ADMIN_TOKEN").env("LEASEHOLD_LOG", "warn");
    command.envs(env.iter().copied());
    command.output().expect("the leasehold binary runs")
}

/// The JSON that `leasehold admin <args> --json` printed; it must have succeeded.
fn admin_json(server: &Server, args: &[&str]) -> Value {
    let output = admin(server, &[args, &["--json"]].concat());
    assert_eq!(output.status.code(), Some(0), "{args:?} failed: {}", text(&output.stderr));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {}", text(&output.stdout)))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn id(answer: &Value) -> String {
    answer["id"].as_str().unwrap_or_else(|| panic!("no id in {answer}")).to_owned()
}

/// Whether `key` gets a seat of `product` on machine `hw` (an `/authz/` checkout).
fn checkout(server: &Server, key: &str, product: &str, hw: &str) -> u16 {
    let reply = server.authz(key, &format!("/authz/.txt?{product}&hw={hw}"));
    assert!(reply.status != 200 || reply.text() == "true", "{hw} was refused: {}", reply.text());
    reply.status
}

#[test]
fn a_license_story_runs_from_the_command_line() {
    let server = Server::start();
    let product = admin_json(
        &server,
        &["products", "create", "--name", "CliStudio", "--feature", "render", "--tier", "Basic:render"],
    );
    assert_eq!(product["tiers"][0]["name"], "Basic");
    let licensee = id(&admin_json(&server, &["licensees", "create", "--name", "Acme"]));
    let consumer = admin_json(&server, &["consumers", "create", "--name", "ann", "--licensee", &licensee]);
    let (consumer, old_key) = (id(&consumer), consumer["api_key"].as_str().expect("an API key").to_owned());

    let license = admin_json(
        &server,
        &[
            "licenses",
            "create",
            "--licensee",
            &licensee,
            "--product",
            "CliStudio",
            "--seats",
            "1",
            "--model",
            "max_hardware=1",
            "--model",
            r#"session_anchors=["hw"]"#,
            "--valid-until",
            "2099-12-31",
        ],
    );
    assert_eq!(license["credit"]["qty"], 1);
    assert_eq!(license["model"]["max_hardware"], 1);
    assert_eq!(license["valid_until"], "2099-12-31T00:00:00Z");
    let license = id(&license);

    let raised = admin_json(&server, &["licenses", "update", &license, "--seats", "3"]);
    assert_eq!(raised["credit"]["qty"], 3);
    assert_eq!(raised["credit"]["dimension"], "SEATS", "only the quantity changed");

    let rotated = admin_json(&server, &["consumers", "rotate-key", &consumer]);
    let new_key = rotated["api_key"].as_str().expect("a new key");
    assert_eq!(checkout(&server, &old_key, "CliStudio", "m1"), 401, "the old key still works");
    assert_eq!(checkout(&server, new_key, "CliStudio", "m1"), 200);

    let machines = admin_json(&server, &["licenses", "machines", &license]);
    let hws: Vec<&Value> = machines["items"].as_array().expect("items").iter().map(|m| &m["hw"]).collect();
    assert_eq!(hws, ["m1"], "{machines}");
    let freed = admin(&server, &["licenses", "free-machine", &license, "m1"]);
    assert_eq!(freed.status.code(), Some(0), "{}", text(&freed.stderr));
    let machines = admin_json(&server, &["licenses", "machines", &license]);
    assert_eq!(machines["items"], serde_json::json!([]), "the machine is still there: {machines}");

    // The story's changes to the license, as events, in a table and as JSON.
    let changes = admin_json(&server, &["events", "list", "--subject", &license, "--type", "license.*"]);
    let types: Vec<&Value> = changes["items"].as_array().expect("items").iter().map(|e| &e["type"]).collect();
    assert_eq!(types, ["license.created", "license.updated", "license.machine_freed"], "{changes}");
    let table = admin(&server, &["events", "list", "--type", "consumer.api_key_rotated"]);
    assert_eq!(table.status.code(), Some(0), "{}", text(&table.stderr));
    let table = text(&table.stdout);
    assert!(
        table.contains("TYPE") && table.contains("consumer.api_key_rotated") && table.contains(&consumer),
        "{table}"
    );
}

#[test]
fn a_usage_error_exits_2() {
    let server = Server::start();
    let unknown_flag = admin(&server, &["licenses", "list", "--bogus"]);
    assert_eq!(unknown_flag.status.code(), Some(2), "{}", text(&unknown_flag.stderr));
    let no_token = run(&["admin", "--server", &format!("http://{}", server.addr), "licensees", "list"], &[]);
    assert_eq!(no_token.status.code(), Some(2), "{}", text(&no_token.stderr));
    assert!(text(&no_token.stderr).contains("--admin-token"), "{}", text(&no_token.stderr));
}

#[test]
fn an_api_error_exits_1_with_the_servers_code_and_description() {
    let server = Server::start();
    let missing = uuid::Uuid::new_v4().to_string();
    let output = admin(&server, &["licenses", "get", &missing]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("notFound") && stderr.contains(&missing), "{stderr}");
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));

    let wrong_token = run(
        &["admin", "licensees", "list"],
        &[("LEASEHOLD_SERVER", &format!("http://{}", server.addr)), ("LEASEHOLD_ADMIN_TOKEN", "not-the-token")],
    );
    assert_eq!(wrong_token.status.code(), Some(1));
    assert!(text(&wrong_token.stderr).contains("notAuthorized"), "{}", text(&wrong_token.stderr));
}

#[test]
fn an_unreachable_server_exits_1_saying_so() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let output =
        run(&["admin", "--server", &format!("http://127.0.0.1:{port}"), "--admin-token", ADMIN, "keys", "rotate"], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("cannot reach the server"), "{}", text(&output.stderr));
}

#[test]
fn people_get_tables_and_field_value_rows() {
    let server = Server::start();
    let licensee = id(&admin_json(&server, &["licensees", "create", "--name", "Tabled Inc", "--kind", "organization"]));

    let listing = admin(&server, &["licensees", "list"]);
    assert_eq!(listing.status.code(), Some(0), "{}", text(&listing.stderr));
    let listing = text(&listing.stdout);
    let header: Vec<&str> = listing.lines().next().expect("a header").split_whitespace().collect();
    assert_eq!(header, ["ID", "NAME", "KIND"]);
    assert!(listing.lines().any(|l| l.starts_with(&licensee) && l.contains("Tabled Inc")), "{listing}");

    let record = admin(&server, &["licensees", "get", &licensee]);
    let record = text(&record.stdout);
    assert!(record.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["kind", "organization"]), "{record}");
}

#[test]
fn all_follows_next_cursor_to_the_last_page() {
    let server = Server::start();
    let mut created: Vec<String> =
        (0..5).map(|n| id(&admin_json(&server, &["licensees", "create", "--name", &format!("L{n}")]))).collect();
    created.sort();

    let first = admin_json(&server, &["licensees", "list", "--limit", "2"]);
    assert_eq!(first["items"].as_array().map(Vec::len), Some(2));
    assert!(first["next_cursor"].is_string());

    let all = admin_json(&server, &["licensees", "list", "--limit", "2", "--all"]);
    let mut ids: Vec<String> = all["items"].as_array().expect("items").iter().map(id).collect();
    ids.sort();
    assert_eq!(ids, created);
    assert_eq!(all["next_cursor"], Value::Null);
}

#[test]
fn webhooks_and_usage_have_their_verbs() {
    let server = Server::start();
    let hook = [
        "webhooks",
        "create",
        "--url",
        "http://127.0.0.1:9/hooks",
        "--event",
        "license.*",
        "--event",
        "seat.exhausted",
    ];
    let created = admin_json(&server, &hook);
    let webhook = id(&created);
    assert!(created["secret"].as_str().is_some_and(|s| s.starts_with("whsec_")), "{created}");
    assert_eq!(created["events"], serde_json::json!(["license.*", "seat.exhausted"]));

    let table = admin(&server, &["webhooks", "list"]);
    assert_eq!(table.status.code(), Some(0), "{}", text(&table.stderr));
    assert!(text(&table.stdout).contains("http://127.0.0.1:9/hooks"), "{}", text(&table.stdout));
    let paused = admin_json(&server, &["webhooks", "update", &webhook, "--enabled", "false", "--event", "*"]);
    assert_eq!((paused["enabled"].clone(), paused["events"].clone()), (Value::Bool(false), serde_json::json!(["*"])));
    let deliveries = admin_json(&server, &["webhooks", "deliveries", &webhook]);
    assert!(deliveries["items"].is_array(), "{deliveries}");
    let missing = admin(&server, &["webhooks", "retry", &webhook, "999999"]);
    assert_eq!(missing.status.code(), Some(1), "no such delivery: {}", text(&missing.stdout));
    let deleted = admin(&server, &["webhooks", "delete", &webhook]);
    assert_eq!(deleted.status.code(), Some(0), "{}", text(&deleted.stderr));

    let (licensee, _, key) = server.party("Acme");
    let license = server.license(&licensee, "Cad", http_common::seats(1), serde_json::json!({}));
    assert_eq!(server.authz(&key, "/authz/.txt?Cad").text(), "true");
    let all_time = ["--from", "2020-01-01T00:00:00Z", "--to", "2100-01-01T00:00:00Z", "--granularity", "month"];
    let report = admin(&server, &[&["usage", "report"][..], &all_time].concat());
    assert_eq!(report.status.code(), Some(0), "{}", text(&report.stderr));
    let table = text(&report.stdout);
    assert!(table.contains("PEAK SEATS") && table.contains(&license), "{table}");
    let backwards = ["usage", "report", "--from", "2026-02-01T00:00:00Z", "--to", "2026-01-01T00:00:00Z"];
    let refused = admin(&server, &backwards);
    assert_eq!(refused.status.code(), Some(1), "from after to: {}", text(&refused.stdout));
}

#[test]
fn credentials_are_created_listed_used_and_deleted() {
    let server = Server::start();
    let (licensee, _, _) = server.party("Acme");
    let created =
        admin_json(&server, &["credentials", "create", "--name", "it", "--role", "orgadmin", "--licensee", &licensee]);
    let token = created["token"].as_str().expect("the token, shown once").to_owned();
    let table = admin(&server, &["credentials", "list"]);
    let listed = text(&table.stdout);
    assert!(listed.contains("orgadmin") && listed.contains(&id(&created)) && !listed.contains(&token), "{listed}");

    let url = format!("http://{}", server.addr);
    let as_orgadmin = |args: &[&str]| run(&[&["admin", "--server", &url, "--admin-token", &token], args].concat(), &[]);
    let own = as_orgadmin(&["licensees", "list", "--json"]);
    assert_eq!(own.status.code(), Some(0), "{}", text(&own.stderr));
    assert!(text(&own.stdout).contains(&licensee));
    let refused = as_orgadmin(&["products", "create", "--name", "Nope"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr).contains("forbidden") || text(&refused.stdout).contains("forbidden"));

    let deleted = admin(&server, &["credentials", "delete", &id(&created)]);
    assert_eq!(deleted.status.code(), Some(0), "{}", text(&deleted.stderr));
    assert_eq!(as_orgadmin(&["licensees", "list"]).status.code(), Some(1), "a deleted credential still works");
}

#[test]
fn groups_and_entitlements_have_their_verbs() {
    let server = Server::start();
    let (licensee, consumer, _) = server.party("Acme");
    let created =
        admin_json(&server, &["groups", "create", "--licensee", &licensee, "--name", "Design", "--kind", "user"]);
    let group = id(&created);
    assert_eq!(created["kind"], "user", "{created}");
    let joined = admin_json(&server, &["groups", "add-member", &group, "--consumer", &consumer]);
    assert_eq!(joined["members"], serde_json::json!([consumer]), "{joined}");
    let invited = admin_json(&server, &["groups", "invite", &group, "--email", "new@acme.example"]);
    assert!(invited["token"].as_str().is_some_and(|t| t.starts_with("lhi_")), "{invited}");

    let created =
        admin_json(&server, &["entitlements", "create", "--licensee", &licensee, "--name", "CAD", "--group", &group]);
    let entitlement = id(&created);
    assert_eq!(created["groups"], serde_json::json!([group]), "{created}");
    let license = server.license(&licensee, "Cad", http_common::seats(1), serde_json::json!({}));
    admin_json(&server, &["entitlements", "add-license", &entitlement, "--license", &license]);
    let shown = admin_json(&server, &["entitlements", "get", &entitlement]);
    assert_eq!(shown["licenses"], serde_json::json!([license]), "{shown}");

    let table = admin(&server, &["groups", "list", "--licensee", &licensee]);
    assert_eq!(table.status.code(), Some(0), "{}", text(&table.stderr));
    assert!(text(&table.stdout).contains(&group), "{}", text(&table.stdout));

    let undone: [&[&str]; 4] = [
        &["entitlements", "remove-license", &entitlement, "--license", &license],
        &["groups", "remove-member", &group, "--consumer", &consumer],
        &["entitlements", "delete", &entitlement],
        &["groups", "delete", &group],
    ];
    for verb in undone {
        let done = admin(&server, verb);
        assert_eq!(done.status.code(), Some(0), "{verb:?}: {}", text(&done.stderr));
    }
}

#[test]
fn activation_codes_are_made_listed_and_shown() {
    let server = Server::start();
    server.admin_ok("POST", "/admin/products", Some(serde_json::json!({"name": "Cad"})), 201);
    let made = admin_json(
        &server,
        &[
            "activation-codes",
            "create",
            "--product",
            "Cad",
            "--seats",
            "2",
            "--count",
            "3",
            "--expires-at",
            "2099-01-01",
        ],
    );
    let batch = made["batch"].as_str().expect("a batch id").to_owned();
    assert_eq!(made["codes"].as_array().map(Vec::len), Some(3), "{made}");
    assert_eq!(made["credit"]["qty"], 2, "{made}");
    assert_eq!(made["expires_at"], "2099-01-01T00:00:00Z", "{made}");
    let listed = text(&admin(&server, &["activation-codes", "list"]).stdout);
    assert!(listed.contains(&batch) && listed.contains("Cad"), "{listed}");
    let shown = admin_json(&server, &["activation-codes", "get", &batch]);
    assert_eq!((shown["issued"].clone(), shown["redeemed"].clone()), (serde_json::json!(3), serde_json::json!(0)));
}

#[test]
fn license_keys_are_issued_audited_regenerated_and_revoked() {
    let server = Server::start();
    let product = serde_json::json!({"name": "Cad", "tiers": [{"name": "Pro", "features": [], "max_users": 3}]});
    server.admin_ok("POST", "/admin/products", Some(product), 201);
    let issued = admin_json(
        &server,
        &["license-keys", "issue", "--product", "Cad", "--tier", "Pro", "--customer", "buyer@example.com"],
    );
    let license = issued["licenseId"].as_str().expect("a license id").to_owned();
    assert!(issued["keyToken"].as_str().is_some_and(|t| t.split('.').count() == 3), "{issued}");
    assert_eq!(issued["license"]["credit"]["qty"], 3, "{issued}");
    let audit = admin_json(&server, &["license-keys", "audit", &license]);
    assert_eq!(audit["consistent"], true, "{audit}");
    let fresh = admin_json(&server, &["license-keys", "regenerate", &license]);
    assert!(fresh["keyToken"].is_string(), "{fresh}");
    let revoked = admin_json(&server, &["license-keys", "revoke", &license, "--reason", "Subscription cancelled"]);
    assert_eq!(revoked["license"]["status"], "revoked", "{revoked}");
    let unknown = admin(&server, &["license-keys", "audit", "00000000-0000-0000-0000-000000000000"]);
    assert_eq!(unknown.status.code(), Some(1), "a refusal exits 1");
}
