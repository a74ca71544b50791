//! SPEC invariant 3 across real crashes: a child process (this test binary, re-executed) hosts an
//! engine on the sled journal and takes and releases leases, printing each grant only after the
//! engine answered it. The parent kills it with SIGKILL at random moments, reopens the journal
//! and checks that every printed grant is there with the same id and expiry, that released
//! leases stay gone, and that the seats are never exceeded.
//!
//! The final version drives a real `leasehold serve` over the network; that comes with
//! the servers. This one hosts the engine in-process, which exercises the same journal path.

mod common;

use common::{runtime, seat_license, PRODUCT};
use leasehold_engine::journal::Journal;
use leasehold_engine::{ConsumeRequest, Decision, Engine, LeaseId, ReleaseRequest, Timestamp};
use leasehold_persistence::{JournalConfig, SledJournal};
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// Set in the child: the data directory to host the engine on.
const CHILD_ENV: &str = "LEASEHOLD_CRASH_CHILD_DIR";
const CHILD_TEST: &str = "child_process_hosting_an_engine";
const SEATS: u64 = 6;
const TASKS: usize = 8;
const HARDWARE_PER_TASK: usize = 3;
const ROUNDS: usize = 6;
/// A child that was never killed (a parent that died) stops by itself.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

fn open(dir: &Path) -> (Arc<SledJournal>, Engine) {
    let config = JournalConfig { snapshot_every_entries: Some(200), ..JournalConfig::default() };
    let (journal, recovered) = SledJournal::open(dir, config).unwrap_or_else(|e| panic!("open: {e}"));
    let journal = Arc::new(journal);
    let engine = Engine::builder()
        .journal(Arc::clone(&journal) as Arc<dyn Journal>)
        .recovered(recovered)
        .workers(2)
        .build()
        .unwrap_or_else(|e| panic!("engine: {e}"));
    (journal, engine)
}

/// The child: consumes and releases on its hardware ids until it is killed.
#[test]
fn child_process_hosting_an_engine() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let (_journal, engine) = open(Path::new(&dir));
    let (license, consumer) = {
        let directory = engine.directory();
        let license = directory.licenses().next().map(|l| l.id);
        let consumer = directory.consumers().next().map(|c| c.id);
        (license.unwrap_or_else(|| panic!("no license")), consumer.unwrap_or_else(|| panic!("no consumer")))
    };
    let rt = runtime();
    rt.block_on(async move {
        let held = engine.leases(license).await.unwrap_or_else(|e| panic!("leases: {e}"));
        println!("READY");
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let engine = engine.clone();
            let mut mine: BTreeMap<String, LeaseId> = held
                .iter()
                .filter_map(|l| l.anchors.hw.clone().map(|hw| (hw, l.id)))
                .filter(|(hw, _)| hw.starts_with(&format!("t{task}-")))
                .collect();
            tasks.push(tokio::spawn(async move {
                let started = std::time::Instant::now();
                let mut i = 0usize;
                while started.elapsed() < CHILD_LIFETIME {
                    i += 1;
                    let hw = format!("t{task}-hw{}", (i * 7 + task) % HARDWARE_PER_TASK);
                    match mine.remove(&hw) {
                        None => {
                            let req = ConsumeRequest::new(consumer, PRODUCT).on_hardware(hw.clone());
                            match engine.consume(req).await {
                                Ok(Decision::Granted(grant)) => {
                                    println!("GRANT {} {}", grant.lease.id, grant.lease.expires_at.as_millis());
                                    mine.insert(hw, grant.lease.id);
                                }
                                Ok(Decision::Denied(_)) => tokio::task::yield_now().await,
                                Err(e) => panic!("consume failed: {e}"),
                            }
                        }
                        Some(lease) => {
                            println!("RELEASING {lease}");
                            match engine.release(ReleaseRequest::new(consumer, lease)).await {
                                Ok(Decision::Granted(_)) => println!("RELEASED {lease}"),
                                other => panic!("release of {lease} failed: {other:?}"),
                            }
                        }
                    }
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
    std::process::exit(0);
}

/// What the children printed, over every round.
#[derive(Default)]
struct Printed {
    granted: BTreeMap<LeaseId, Timestamp>,
    releasing: BTreeSet<LeaseId>,
    released: BTreeSet<LeaseId>,
}

impl Printed {
    fn read(&mut self, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let id = |w: &str| w.parse::<LeaseId>().unwrap_or_else(|e| panic!("bad lease id in {line:?}: {e}"));
        match words.as_slice() {
            ["GRANT", lease, expires_ms] => {
                let expires = expires_ms.parse::<i64>().unwrap_or_else(|e| panic!("bad expiry in {line:?}: {e}"));
                self.granted.insert(id(lease), Timestamp::from_millis(expires));
            }
            ["RELEASING", lease] => {
                self.releasing.insert(id(lease));
            }
            ["RELEASED", lease] => {
                self.released.insert(id(lease));
            }
            // libtest's own lines, and a line cut short by the kill.
            _ => {}
        }
    }
}

/// Runs one child, kills it at a random moment, and returns what it printed.
fn run_and_kill(dir: &Path, rng: &mut impl Rng) -> Vec<String> {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let mut child = Command::new(exe)
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let (lines_tx, lines_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    if rng.gen_range(0..5) == 0 {
        // Now and then, kill it while it is still opening and recovering the journal.
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..40)));
    } else {
        while let Ok(line) = lines_rx.recv_timeout(Duration::from_secs(60)) {
            // libtest's "test child_process_hosting_an_engine ... " has no line end of its own.
            let ready = line.ends_with("READY");
            lines.push(line);
            if ready {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..400)));
    }
    child.kill().unwrap_or_else(|e| panic!("kill: {e}"));
    let _ = child.wait();
    let _ = reader.join();
    lines.extend(lines_rx.try_iter());
    lines
}

#[test]
fn granted_leases_survive_sigkill_at_random_moments() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let license = {
        let (_journal, engine) = open(dir.path());
        runtime().block_on(seat_license(&engine, SEATS)).license
    };
    let mut rng = rand::thread_rng();
    let mut printed = Printed::default();
    for round in 0..ROUNDS {
        for line in run_and_kill(dir.path(), &mut rng) {
            printed.read(&line);
        }
        let (_journal, engine) = open(dir.path());
        let rt = runtime();
        let live: BTreeMap<LeaseId, Timestamp> = rt
            .block_on(engine.leases(license))
            .unwrap_or_else(|e| panic!("leases: {e}"))
            .into_iter()
            .map(|l| (l.id, l.expires_at))
            .collect();
        for (id, expires) in &printed.granted {
            if printed.releasing.contains(id) {
                continue;
            }
            assert_eq!(live.get(id), Some(expires), "round {round}: granted lease {id} was lost or changed");
        }
        for id in &printed.released {
            assert!(!live.contains_key(id), "round {round}: released lease {id} came back");
        }
        assert!(live.len() as u64 <= SEATS, "round {round}: {} live leases on {SEATS} seats", live.len());
        let usage = rt.block_on(engine.usage(license)).unwrap_or_else(|e| panic!("usage: {e}"));
        assert!(usage.seats_in_use <= SEATS, "round {round}: {} seats in use", usage.seats_in_use);
    }
    println!(
        "{ROUNDS} kills: {} grants and {} releases printed, all checked",
        printed.granted.len(),
        printed.released.len()
    );
    assert!(!printed.granted.is_empty() && !printed.released.is_empty(), "the children never got to work");
}
