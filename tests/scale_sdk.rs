//! The official `tenduke-scale` Python SDK (2.3.0), unchanged, against a real `leasehold serve`:
//! `tests/python/scale_sdk_suite.py` checks out, heartbeats and releases, uses license keys and
//! metered use, reads every `describe-*` the SDK calls and verifies every token it gets through
//! the server's JWKS.
//! What it needs is in `tests/http_common/scale_sdk.rs`.

mod http_common;

use http_common::{scale_sdk, Server, ADMIN};

/// The suite's scenarios, each of which must report `PASS`.
const SCENARIOS: [&str; 9] = [
    "checkout_heartbeat_and_release",
    "seats_run_out_and_the_refusal_is_a_signed_token",
    "a_heartbeat_before_hbnbf_is_refused_by_the_sdk_and_by_the_server",
    "license_keys_check_out_renew_and_release_without_an_api_key",
    "activating_the_newer_key_revoked_the_older_one",
    "metered_use_starts_heartbeats_and_ends",
    "the_describe_reads",
    "errors_are_raised_with_the_servers_code",
    "a_client_public_key_gets_a_jwe_only_it_can_open",
];

#[test]
fn the_official_scale_sdk_works_unchanged_against_leasehold() {
    let server = Server::start();
    let stdout = scale_sdk::run_suite(server.addr, ADMIN, "");
    for scenario in SCENARIOS {
        assert!(stdout.lines().any(|l| l == format!("PASS {scenario}")), "{scenario} did not pass:\n{stdout}");
    }
}
