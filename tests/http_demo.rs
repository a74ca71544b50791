//! `leasehold serve --demo` prints commands for a newcomer to paste: they are run here, as
//! printed, by bash and curl against the server that printed them, once with the admin token in
//! the environment (the commands name `$LEASEHOLD_ADMIN_TOKEN`) and once with a token generated
//! at first start (the commands carry it).

mod http_common;

use http_common::{Server, ADMIN};
use std::process::Command;

/// The commands of the demo's "Try it" block, comments left out.
fn pasted_commands(server: &Server) -> String {
    let start = server.banner.iter().position(|l| l == "Try it:").expect("the banner has a Try it block");
    let commands: Vec<&str> = server.banner[start + 1..]
        .iter()
        .map(|l| l.trim())
        .take_while(|l| !l.is_empty() && !l.starts_with("Stop with"))
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(commands.len() >= 6, "too few commands in {commands:?}");
    commands.join("\n")
}

/// What pasting the commands into bash prints, each command's output on its own line.
fn paste(server: &Server, admin_env: Option<&str>) -> Vec<String> {
    let mut bash = Command::new("bash");
    bash.args(["-euo", "pipefail", "-c"]).arg(pasted_commands(server)).env_remove("LEASEHOLD_ADMIN_TOKEN");
    if let Some(token) = admin_env {
        bash.env("LEASEHOLD_ADMIN_TOKEN", token);
    }
    let output = bash.output().expect("bash and curl run (scripts/test-all installs curl)");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(output.status.success(), "the commands failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout.lines().map(str::to_owned).collect()
}

/// The outputs of the demo's commands, in order: a seat as claims, a signed token, three more
/// hardware ids of which the third is refused, a release, the license and its leases.
fn assert_demo_works(lines: &[String]) {
    assert_eq!(lines.len(), 8, "one line per command: {lines:#?}");
    assert!(lines[0].contains("\"ThreeDee\":true"), "a seat as claims: {}", lines[0]);
    assert_eq!(lines[1].split('.').count(), 3, "a compact JWS: {}", lines[1]);
    assert_eq!(&lines[2..5], ["true", "true", "false"], "the fourth hardware id is refused");
    assert!(lines[5].ends_with(":true}"), "the release is granted: {}", lines[5]);
    assert!(lines[6].contains("\"credit\""), "the admin reads the license: {}", lines[6]);
    assert!(lines[7].contains("\"items\""), "the admin lists its leases: {}", lines[7]);
}

#[test]
fn the_demo_commands_work_when_pasted_with_the_admin_token_in_the_environment() {
    let server = Server::start_with(&["--demo"]);
    assert_demo_works(&paste(&server, Some(ADMIN)));
}

#[test]
fn the_demo_commands_work_when_pasted_with_a_generated_admin_token() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let server = Server::start_in(scratch.path(), &["--demo"], false);
    assert_demo_works(&paste(&server, None));
}
