//! `leasehold bench` end to end, judged on what it counted, never on how fast: it starts a
//! server, seeds it through the admin API, drives every workload over both HTTP dialects and TCP, and every
//! request of a healthy server succeeds (a grant, a renewal, a release), so the report shows
//! requests and no errors.

use serde_json::Value;
use std::process::Command;

/// Runs `leasehold bench` with `args`, short and without baselines, and returns its JSON report.
fn bench_report(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_leasehold"))
        .arg("bench")
        .args(args)
        .args(["--warmup", "100ms", "--no-baselines", "--json"])
        .env_remove("LEASEHOLD_ADMIN_TOKEN")
        .output()
        .expect("leasehold bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "leasehold bench {args:?} failed: {stderr}");
    serde_json::from_slice(&output.stdout).expect("the report is JSON")
}

/// The first CPU this process may run on (a container may not allow CPU 0).
fn first_allowed_cpu() -> String {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).expect("Cpus_allowed_list");
    list.trim().split([',', '-']).next().expect("a CPU").to_owned()
}

/// The run of `workload` over `protocol` at full load, which sent requests and had no errors.
fn clean_run<'a>(report: &'a Value, protocol: &str, workload: &str) -> &'a Value {
    let run = report["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .find(|r| r["protocol"] == protocol && r["workload"] == workload && r["rate_per_s"].is_null())
        .unwrap_or_else(|| panic!("no {protocol} {workload} run in {report}"));
    assert!(run["requests"].as_u64().unwrap_or(0) > 0, "{protocol} {workload} sent nothing: {run}");
    assert_eq!(run["errors"], 0, "{protocol} {workload} had errors: {run}");
    run
}

#[test]
fn every_workload_runs_over_both_http_dialects_and_tcp_without_errors() {
    let report = bench_report(&["--licenses", "6", "--connections", "3", "--pipeline", "2", "--duration", "600ms"]);
    let runs = report["runs"].as_array().expect("runs");

    for protocol in ["authz", "scale", "tcp"] {
        for workload in ["check", "consume", "renew", "cycle"] {
            if protocol == "scale" && workload == "check" {
                // The Scale API has no check without a lease; the report says it was skipped.
                assert!(runs.iter().all(|r| !(r["protocol"] == "scale" && r["workload"] == "check")));
                assert!(report["notes"].to_string().contains("Scale check skipped"), "{report}");
                continue;
            }
            let run = clean_run(&report, protocol, workload);
            let p50 = run["latency_us"]["p50"].as_u64().unwrap_or(0);
            let max = run["latency_us"]["max"].as_u64().unwrap_or(0);
            assert!(0 < p50 && p50 <= max, "{protocol} {workload} percentiles are not ordered: {run}");
        }
    }
    // The latency target's run at half the measured check rate is there too.
    assert!(runs.iter().any(|r| r["protocol"] == "authz" && r["workload"] == "check" && r["rate_per_s"].is_number()));
    assert!(report["ratios"].as_array().is_some_and(|r| !r.is_empty()), "no ratios in {report}");
}

#[test]
fn a_server_hosted_in_the_bench_process_serves_every_protocol_and_stops_with_it() {
    // A success means the process exited, which it does only once the hosted server has
    // drained its connections and closed its journal.
    let report = bench_report(&[
        "--in-process",
        "--protocol",
        "authz,tcp",
        "--workload",
        "consume,cycle",
        "--licenses",
        "4",
        "--connections",
        "2",
        "--duration",
        "400ms",
    ]);
    assert!(report["notes"].to_string().contains("hosted in the bench's own process"), "{report}");
    let runs = report["runs"].as_array().expect("runs");
    for protocol in ["authz", "tcp"] {
        for workload in ["consume", "cycle"] {
            let run = runs
                .iter()
                .find(|r| r["protocol"] == protocol && r["workload"] == workload)
                .unwrap_or_else(|| panic!("no {protocol} {workload} run in {report}"));
            assert!(run["requests"].as_u64().unwrap_or(0) > 0, "{protocol} {workload} sent nothing: {run}");
            assert_eq!(run["errors"], 0, "{protocol} {workload} had errors: {run}");
        }
    }
}

#[test]
fn in_process_and_a_running_server_are_exclusive() {
    let output = Command::new(env!("CARGO_BIN_EXE_leasehold"))
        .args(["bench", "--in-process", "--server", "127.0.0.1:9", "--admin-token", "x"])
        .output()
        .expect("leasehold bench runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot be used with"));
}

#[test]
fn a_running_server_needs_its_admin_token() {
    let output = Command::new(env!("CARGO_BIN_EXE_leasehold"))
        .args(["bench", "--server", "127.0.0.1:9", "--duration", "100ms"])
        .env_remove("LEASEHOLD_ADMIN_TOKEN")
        .output()
        .expect("leasehold bench runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("admin token"));
}

#[test]
fn checkouts_are_measured_without_and_with_webhooks_that_receive_the_events() {
    let report = bench_report(&[
        "--in-process",
        "--protocol",
        "authz,tcp",
        "--workload",
        "check",
        "--licenses",
        "3",
        "--connections",
        "2",
        "--duration",
        "1500ms",
        "--webhooks",
        "2",
    ]);
    let runs = report["runs"].as_array().expect("runs");
    for protocol in ["authz", "tcp"] {
        for workload in ["consume+0wh", "consume+2wh"] {
            let run = runs
                .iter()
                .find(|r| r["protocol"] == protocol && r["workload"] == workload)
                .unwrap_or_else(|| panic!("no {protocol} {workload} run in {report}"));
            assert!(run["requests"].as_u64().unwrap_or(0) > 0, "{protocol} {workload} sent nothing: {run}");
            assert_eq!(run["errors"], 0, "{protocol} {workload} had errors: {run}");
        }
        let ratio = format!("{protocol} checkouts with 2 webhooks ÷ with none");
        assert!(report["ratios"].as_array().expect("ratios").iter().any(|r| r["name"] == ratio.as_str()), "{report}");
    }
    // The receiver counts what it got: the webhooks were subscribed and delivered to it.
    let delivered: u64 = report["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .filter_map(|n| n.as_str()?.strip_suffix(" deliveries received during the run and its warm-up"))
        .filter_map(|n| n.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(delivered > 0, "no delivery reached the bench's receiver: {report}");
}

#[test]
fn checkouts_with_identity_tokens_are_measured_beside_those_with_api_keys() {
    for hosting in [&["--in-process"][..], &[][..]] {
        let mut args = hosting.to_vec();
        args.extend(["--protocol", "authz", "--workload", "consume", "--licenses", "3", "--connections", "2"]);
        args.extend(["--duration", "600ms", "--identity-tokens"]);
        let report = bench_report(&args);
        let runs = report["runs"].as_array().expect("runs");
        for workload in ["consume", "consume-idtoken"] {
            let run = runs
                .iter()
                .find(|r| r["protocol"] == "authz" && r["workload"] == workload)
                .unwrap_or_else(|| panic!("no authz {workload} run in {report}"));
            assert!(run["requests"].as_u64().unwrap_or(0) > 0, "{workload} sent nothing: {run}");
            assert_eq!(run["errors"], 0, "{workload} had errors: {run}");
        }
        let ratio = "signed checkouts with identity tokens ÷ with API keys";
        assert!(report["ratios"].as_array().expect("ratios").iter().any(|r| r["name"] == ratio), "{report}");
    }
}

#[test]
fn each_protocol_is_measured_over_tls_right_beside_plain_text() {
    let mut args = vec!["--protocol", "authz,scale,tcp", "--workload", "check,consume", "--licenses", "4"];
    args.extend(["--connections", "2", "--pipeline", "2", "--duration", "500ms", "--tls"]);
    let report = bench_report(&args);
    for protocol in ["authz", "scale", "tcp"] {
        for workload in ["check", "consume"] {
            if protocol == "scale" && workload == "check" {
                continue;
            }
            clean_run(&report, protocol, workload);
            clean_run(&report, &format!("{protocol}+tls"), workload);
            let ratio = format!("{protocol} {workload} over TLS ÷ in plain text");
            assert!(
                report["ratios"].as_array().expect("ratios").iter().any(|r| r["name"] == ratio.as_str()),
                "{report}"
            );
        }
    }
    let in_process = Command::new(env!("CARGO_BIN_EXE_leasehold"))
        .args(["bench", "--tls", "--in-process"])
        .output()
        .expect("leasehold bench runs");
    assert_eq!(in_process.status.code(), Some(2), "--tls needs servers the bench starts as child processes");
}

#[test]
fn a_cheap_signature_unsigned_tcp_checkouts_and_pinned_cores_are_measured() {
    let mut args = vec!["--protocol", "authz,tcp", "--workload", "check,consume,consume-unsigned", "--licenses", "4"];
    args.extend(["--connections", "2", "--pipeline", "2", "--duration", "500ms", "--signing-alg", "ES256"]);
    let cpu = first_allowed_cpu();
    args.extend(["--server-cores", &cpu, "--client-cores", &cpu]);
    let report = bench_report(&args);
    let runs = report["runs"].as_array().expect("runs");
    for (protocol, workload) in
        [("authz", "check"), ("authz", "consume"), ("tcp", "consume"), ("tcp", "consume-unsigned")]
    {
        clean_run(&report, protocol, workload);
    }
    assert!(runs.iter().all(|r| !(r["protocol"] == "authz" && r["workload"] == "consume-unsigned")), "{report}");
    let notes = report["notes"].to_string();
    let (server_note, client_note) = (format!("server on CPUs {cpu}"), format!("load generator on CPUs {cpu}"));
    for note in ["the server signs with ES256", &server_note, &client_note, "only TCP omits the token"] {
        assert!(notes.contains(note), "no note {note:?} in {notes}");
    }
    let ratio = "ES256 signed checkouts over HTTP ÷ unsigned HTTP checks";
    assert!(report["ratios"].as_array().expect("ratios").iter().any(|r| r["name"] == ratio), "{report}");
}
