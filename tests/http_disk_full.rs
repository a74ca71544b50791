//! A real server whose data directory sits on a small tmpfs that fills up, then is freed: while
//! the journal cannot write, changes are refused with 503 `storageUnavailable` (never 500),
//! `/healthz` answers 503 with the reason and `/metrics` says the journal is not writable, while
//! checks of licenses untouched by the failure still answer; once space is freed the server
//! writes again by itself, with no phantom seat; and after a kill -9 every acknowledged lease is
//! there. Mounting needs root: as another user the test says so and passes without running.

mod http_common;

use http_common::{request, seats, Server};
use leasehold::client::{Auth, Client, ClientError, Consume, FailureCode};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs mounted on a scratch directory, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
    _scratch: tempfile::TempDir,
}

impl Tmpfs {
    /// A tmpfs of `mib` MiB, or `None` when this process may not mount one.
    fn mount(mib: u32) -> Option<Tmpfs> {
        let scratch = tempfile::tempdir().expect("a scratch directory");
        let dir = scratch.path().join("data");
        std::fs::create_dir(&dir).expect("a mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Tmpfs { dir, _scratch: scratch })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Fills the filesystem of `dir` with a file until it has no space left; the file's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("the filler file");
    let block = vec![0u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    let _ = file.sync_all();
    path
}

fn live_leases(server: &Server, license: &str) -> usize {
    let leases = server.admin_ok("GET", &format!("/admin/licenses/{license}/leases"), None, 200);
    leases["items"].as_array().expect("items").len()
}

/// A server on a tmpfs whose disk filled up while a license was being checked out, until the
/// journal failed: what the tests need of it.
struct Failing {
    server: Server,
    tmpfs: Tmpfs,
    filler: PathBuf,
    /// The license the disk filled up under, and its consumer's API key.
    bulk: String,
    bulk_key: String,
    /// Another license, untouched by the failure, and its consumer's API key.
    quiet_key: String,
    /// Checkouts of `bulk` answered as granted.
    acknowledged: usize,
}

/// `None` when this process may not mount a tmpfs (it is not root): the test then passes
/// without running, and says so.
fn failing_server() -> Option<Failing> {
    if !Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0") {
        eprintln!("skipped: mounting a tmpfs needs root (scripts/test-all runs as root in CI)");
        return None;
    }
    let Some(tmpfs) = Tmpfs::mount(24) else {
        eprintln!("skipped: this machine refuses to mount a tmpfs");
        return None;
    };
    let server = Server::start_in(&tmpfs.dir, &[], true);
    let (bulk_licensee, _, bulk_key) = server.party("Bulk");
    let bulk = server.license(&bulk_licensee, "Bulk", seats(1_000_000), json!({"model": {"session_anchors": ["hw"]}}));
    let (quiet_licensee, _, quiet_key) = server.party("Quiet");
    server.license(&quiet_licensee, "Quiet", seats(5), json!({}));

    // The disk fills up; checkouts go on until the journal cannot write.
    let filler = fill(&tmpfs.dir);
    let mut acknowledged = 0;
    let refusal = loop {
        assert!(acknowledged < 200_000, "the journal never failed on a full disk");
        let reply = server.authz(&bulk_key, &format!("/authz/.txt?Bulk&hw=m{acknowledged}"));
        match reply.status {
            200 if reply.text() == "true" => acknowledged += 1,
            _ => break reply,
        }
    };
    assert_eq!(refusal.status, 503, "a full disk answered {} {}", refusal.status, refusal.text());
    assert_eq!(refusal.json()["code"], "storageUnavailable");
    Some(Failing { server, tmpfs, filler, bulk, bulk_key, quiet_key, acknowledged })
}

#[test]
fn a_full_disk_refuses_changes_with_503_and_the_server_recovers_by_itself_when_space_is_freed() {
    let Some(Failing { server, tmpfs, filler, bulk, bulk_key, quiet_key, mut acknowledged }) = failing_server() else {
        return;
    };
    let health = request(server.addr, "GET", "/healthz", &[], None);
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["status"], "storageUnavailable");
    assert_eq!(health.json()["ready"], false);
    let metrics = request(server.addr, "GET", "/metrics", &[], None).text();
    assert!(metrics.contains("leasehold_journal_writable 0"), "{metrics}");
    // Changes are refused at once, over HTTP and TCP; a license untouched by the failure still
    // answers checks.
    let change = server.authz(&quiet_key, "/authz/.txt?Quiet&hw=q1");
    assert_eq!((change.status, change.json()["code"].clone()), (503, json!("storageUnavailable")));
    let check = server.authz(&quiet_key, "/authz/.txt?Quiet&hw=q1&doConsume=false");
    assert_eq!((check.status, check.text()), (200, "true".to_owned()));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let over_tcp = rt.block_on(async {
        let client = Client::connect(server.tcp_addr, Auth::ApiKey(quiet_key.clone())).await.expect("connects");
        client.consume(Consume::new("Quiet").hw("q2")).await
    });
    match over_tcp {
        Err(ClientError::Failure(failure)) => assert_eq!(failure.code, FailureCode::StorageUnavailable),
        other => panic!("a TCP checkout on a failing journal answered {other:?}"),
    }

    // Space is freed: the server writes again without a restart.
    std::fs::remove_file(filler).expect("the filler is removed");
    let deadline = Instant::now() + Duration::from_secs(60);
    while request(server.addr, "GET", "/healthz", &[], None).status != 200 {
        assert!(Instant::now() < deadline, "the journal did not recover in 60 s after space was freed");
        std::thread::sleep(Duration::from_millis(100));
    }
    // No phantom seat: the license holds exactly the acknowledged leases, and grants again.
    assert_eq!(live_leases(&server, &bulk), acknowledged);
    let again = server.authz(&bulk_key, "/authz/.txt?Bulk&hw=after");
    assert_eq!((again.status, again.text()), (200, "true".to_owned()));
    acknowledged += 1;

    // Nothing acknowledged is lost across a kill -9.
    server.kill();
    let restarted = Server::start_in(&tmpfs.dir, &[], true);
    assert_eq!(live_leases(&restarted, &bulk), acknowledged);
}

#[test]
fn a_kill_9_while_the_disk_is_full_loses_nothing_acknowledged() {
    let Some(Failing { server, tmpfs, filler, bulk, acknowledged, .. }) = failing_server() else { return };
    server.kill();
    std::fs::remove_file(filler).expect("the filler is removed");
    let restarted = Server::start_in(&tmpfs.dir, &[], true);
    assert_eq!(live_leases(&restarted, &bulk), acknowledged);
}
