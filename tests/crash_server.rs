//! SPEC invariants 1, 3, 4 and 5 across real crashes of the real server: `leasehold serve` is
//! loaded by concurrent HTTP clients (consume, renew, release on `/authz/`), killed with SIGKILL
//! at random moments, and restarted on the same data directory, several times. After each
//! restart the admin API must show every lease a client saw granted (and did not release or
//! renew since) with the same id, hardware id and expiry; no more live leases than seats; no
//! released or rotated lease id; and no lease nobody asked for. Last, the license is revoked,
//! the server killed again, and the revocation must have survived.
//!
//! The moments are drawn from a seeded generator; the seed is printed, and
//! `LEASEHOLD_CRASH_SEED=<seed>` replays a run's choices (not its thread interleavings).

mod http_common;

use http_common::{seats, try_get, Reply, Server};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ITEM: &str = "ThreeDee";
const SEATS: usize = 8;
const CLIENTS: usize = 10;
/// More hardware ids than seats, so some consumes are refused.
const HW_PER_CLIENT: usize = 3;
const CONSUMERS: usize = 3;
const ROUNDS: usize = 6;
/// A lease this close to its expiry may be gone for that reason alone (leases last two hours).
const EXPIRY_MARGIN_S: i64 = 30;

/// splitmix64: a small seeded generator, so a run's choices can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

fn now_s() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_secs()).unwrap_or(i64::MAX)
}

/// Whole seconds since the epoch of an RFC 3339 UTC time as the admin API writes it
/// (`2026-01-01T00:00:00.123Z`), rounded down like a token's `exp`.
fn rfc3339_secs(text: &str) -> i64 {
    let bad = || -> ! { panic!("not an RFC 3339 UTC time: {text:?}") };
    let field = |range: std::ops::Range<usize>| -> i64 {
        text.get(range).and_then(|s| s.parse().ok()).unwrap_or_else(|| bad())
    };
    if !text.ends_with('Z') || text.len() < 20 {
        bad();
    }
    let (y, m, d) = (field(0..4), field(5..7), field(8..10));
    let (hh, mm, ss) = (field(11..13), field(14..16), field(17..19));
    // Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hh * 3600 + mm * 60 + ss
}

/// A lease a client holds, as the server answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    id: String,
    exp: i64,
}

/// What a client asked.
#[derive(Debug, Clone, Copy)]
enum Op {
    Consume,
    Renew,
    Release,
}

/// One load-generating client: its consumer key and hardware ids, what it holds, and what it
/// saw during the current round.
struct Client {
    index: usize,
    key: String,
    hws: Vec<String>,
    /// Leases it holds by hardware id: granted (seen, or found at a check) and not released or
    /// renewed since, with no unanswered request on that hardware id after.
    held: BTreeMap<String, Held>,
    /// Hardware ids an unanswered request left in doubt until the next check.
    unknown: BTreeSet<String>,
    rng: Rng,
    // This round's observations, drained by the checker.
    granted: Vec<(String, String, i64)>,
    released: Vec<String>,
    rotated: Vec<String>,
    anomalies: Vec<String>,
    unanswered_before_kill: u64,
    overloaded: u64,
    refused: u64,
}

impl Client {
    fn authz(&self, addr: std::net::SocketAddr, query: &str) -> Option<Reply> {
        try_get(addr, &format!("/authz/.json?{query}"), &[("Authorization", &format!("Bearer {}", self.key))])
    }

    /// Consumes, renews and releases on its own hardware ids until `stop`.
    fn run(&mut self, addr: std::net::SocketAddr, stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            let usable: Vec<String> = self.hws.iter().filter(|hw| !self.unknown.contains(*hw)).cloned().collect();
            if usable.is_empty() {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let hw = usable[self.rng.range(0, usable.len() as u64) as usize].clone();
            let held = self.held.get(&hw).cloned();
            let op = match &held {
                None => Op::Consume,
                Some(_) if self.rng.range(0, 10) < 6 => Op::Release,
                Some(_) => Op::Renew,
            };
            let query = match (op, &held) {
                (Op::Release, Some(h)) => format!("release&{}", h.id),
                (Op::Renew, Some(h)) => format!("{ITEM}&hw={hw}&leaseId={}", h.id),
                _ => format!("{ITEM}&hw={hw}"),
            };
            let reply = self.authz(addr, &query);
            match reply {
                Some(reply) if reply.status == 200 => self.answered(op, &hw, held, &reply),
                other => {
                    // Unanswered (the server died mid-request) or refused as a whole (e.g. 503
                    // overloaded): what the server did is unknown until the next check.
                    self.held.remove(&hw);
                    self.unknown.insert(hw.clone());
                    if !stop.load(Ordering::SeqCst) {
                        self.unanswered_before_kill += 1;
                        match other {
                            // The SPEC's answer to a full queue: legitimate under load.
                            Some(reply) if reply.status == 503 && reply.text().contains("overloaded") => {
                                self.overloaded += 1;
                            }
                            Some(reply) => {
                                self.note(format!("{op:?} on {hw} answered {}: {}", reply.status, reply.text()));
                            }
                            None => {}
                        }
                    }
                }
            }
        }
    }

    fn note(&mut self, what: String) {
        self.anomalies.push(format!("client {}: {what}", self.index));
    }

    fn answered(&mut self, op: Op, hw: &str, held: Option<Held>, reply: &Reply) {
        let Ok(body) = serde_json::from_slice::<Value>(&reply.body) else {
            self.note(format!("{op:?} on {hw}: not JSON: {}", reply.text()));
            self.held.remove(hw);
            self.unknown.insert(hw.to_owned());
            return;
        };
        match (op, held) {
            (Op::Release, Some(old)) => {
                if body[&old.id] == json!(true) {
                    self.held.remove(hw);
                    self.released.push(old.id);
                } else {
                    self.note(format!("release of its live lease {} on {hw} answered {body}", old.id));
                    self.held.remove(hw);
                    self.unknown.insert(hw.to_owned());
                }
            }
            (op, old) => {
                if body[ITEM] == json!(true) {
                    let id = body["jti"].as_str().map(str::to_owned);
                    let exp = body["exp"].as_i64();
                    let (Some(id), Some(exp)) = (id, exp) else {
                        self.note(format!("{op:?} on {hw}: a grant without jti or exp: {body}"));
                        return;
                    };
                    if body["hw"] != json!(hw) {
                        self.note(format!("{op:?} on {hw}: granted for hw {}", body["hw"]));
                    }
                    if let Some(old) = old {
                        if old.id == id {
                            self.note(format!("renewal of {id} kept the same id"));
                        }
                        self.rotated.push(old.id);
                    }
                    self.granted.push((id.clone(), hw.to_owned(), exp));
                    self.held.insert(hw.to_owned(), Held { id, exp });
                } else {
                    let code = body[format!("{ITEM}_errorCode")].as_str().unwrap_or("").to_owned();
                    match op {
                        Op::Consume if code == "maxConcurrentSessionsExceed" => self.refused += 1,
                        // A refused renewal changes nothing: the lease is still held.
                        _ => self.note(format!("{op:?} on {hw} refused: {body}")),
                    }
                }
            }
        }
    }
}

/// Everything the clients saw over all rounds, and what must hold after each restart.
#[derive(Default)]
struct Ledger {
    /// Every lease id ever live as far as the test knows (seen granted or found at a check),
    /// with its hardware id and client.
    known: BTreeMap<String, (String, usize)>,
    /// Ids that must never be live again: released, rotated, or found gone at a check.
    dead: BTreeSet<String>,
    grants_seen: usize,
    renewals_seen: usize,
    releases_seen: usize,
    refused: u64,
    adopted: usize,
    unanswered_before_kill: u64,
    overloaded: u64,
    anomalies: Vec<String>,
    leases_checked: usize,
    max_live: usize,
}

/// The license's live leases: id → (hw, expiry in seconds).
fn live_leases(server: &Server, license: &str) -> BTreeMap<String, (String, i64)> {
    let listing = server.admin_ok("GET", &format!("/admin/licenses/{license}/leases?limit=1000"), None, 200);
    assert_eq!(listing["next_cursor"], json!(null));
    let items = listing["items"].as_array().unwrap_or_else(|| panic!("no items: {listing}"));
    items
        .iter()
        .map(|l| {
            let id = l["id"].as_str().unwrap_or_else(|| panic!("a lease without id: {l}")).to_owned();
            let hw = l["hw"].as_str().unwrap_or_else(|| panic!("a lease without hw: {l}")).to_owned();
            let expires = rfc3339_secs(l["expires_at"].as_str().unwrap_or_else(|| panic!("no expires_at: {l}")));
            (id, (hw, expires))
        })
        .collect()
}

fn wait_healthy(server: &Server) {
    let started = Instant::now();
    loop {
        if try_get(server.addr, "/healthz", &[]).is_some_and(|r| r.status == 200) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the restarted server never became healthy");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Checks the restarted server against what the clients saw, then brings the clients' view up
/// to date with it for the next round.
fn check_and_reconcile(
    server: &Server,
    license: &str,
    round: usize,
    clients: &mut [Client],
    ledger: &mut Ledger,
    rng: &mut Rng,
) {
    for client in clients.iter_mut() {
        for (id, hw, _) in client.granted.drain(..) {
            ledger.known.insert(id, (hw, client.index));
            ledger.grants_seen += 1;
        }
        ledger.renewals_seen += client.rotated.len();
        ledger.releases_seen += client.released.len();
        ledger.dead.extend(client.rotated.drain(..).chain(client.released.drain(..)));
        ledger.anomalies.append(&mut client.anomalies);
        ledger.refused += std::mem::take(&mut client.refused);
        ledger.unanswered_before_kill += std::mem::take(&mut client.unanswered_before_kill);
        ledger.overloaded += std::mem::take(&mut client.overloaded);
    }
    let live = live_leases(server, license);
    let now = now_s();

    // Invariant 1: never more live leases (or seats taken) than seats.
    assert!(live.len() <= SEATS, "round {round}: {} live leases on {SEATS} seats", live.len());
    let usage = &server.admin_ok("GET", &format!("/admin/licenses/{license}"), None, 200)["usage"];
    for field in ["live_leases", "seats_in_use"] {
        let n = usage[field].as_u64().unwrap_or_else(|| panic!("no usage.{field}: {usage}"));
        assert!(n <= SEATS as u64, "round {round}: usage.{field} = {n} on {SEATS} seats");
    }
    assert_eq!(usage["live_leases"], json!(live.len()), "round {round}: usage disagrees with the lease list");
    ledger.max_live = ledger.max_live.max(live.len());

    // Invariant 3: every lease a client holds (saw granted and did not let go of) is there, the same.
    for client in clients.iter() {
        for (hw, held) in &client.held {
            if held.exp <= now + EXPIRY_MARGIN_S {
                continue;
            }
            let found = live.get(&held.id);
            assert_eq!(
                found,
                Some(&(hw.clone(), held.exp)),
                "round {round}: client {}'s lease {} on {hw} (exp {}) was lost or changed",
                client.index,
                held.id,
                held.exp
            );
            ledger.leases_checked += 1;
        }
    }
    // Invariant 4: released and rotated ids stay gone.
    for id in &ledger.dead {
        assert!(!live.contains_key(id), "round {round}: lease {id} was released or rotated and came back");
    }
    // No lease from nowhere: an unknown live lease is on a hardware id whose request went
    // unanswered, and a session (hardware id) has one lease.
    let mut hws = BTreeSet::new();
    for (id, (hw, _)) in &live {
        assert!(hws.insert(hw.clone()), "round {round}: two live leases on {hw}");
        if !ledger.known.contains_key(id) {
            let owner = clients.iter().find(|c| c.hws.contains(hw));
            assert!(
                owner.is_some_and(|c| c.unknown.contains(hw)),
                "round {round}: live lease {id} on {hw} that no unanswered request explains"
            );
        }
    }
    // Dead ids are refused after the restart, and trying them changes nothing.
    let dead: Vec<&String> = ledger.dead.iter().collect();
    for _ in 0..dead.len().min(3) {
        let id = dead[rng.range(0, dead.len() as u64) as usize];
        let (hw, owner) = &ledger.known[id];
        let client = &clients[*owner];
        let reply = client.authz(server.addr, &format!("release&{id}")).expect("an answer");
        assert_eq!(reply.json(), json!({ id.as_str(): false }), "round {round}: dead lease {id} released again");
        let reply = client.authz(server.addr, &format!("{ITEM}&hw={hw}&leaseId={id}")).expect("an answer").json();
        assert_ne!(reply[ITEM], json!(true), "round {round}: dead lease {id} renewed: {reply}");
    }
    assert_eq!(live_leases(server, license), live, "round {round}: probing dead ids changed the leases");

    // Bring the test's view up to date: what is gone is dead, what is live is held.
    for id in ledger.known.keys() {
        if !live.contains_key(id) {
            ledger.dead.insert(id.clone());
        }
    }
    for client in clients.iter_mut() {
        client.held.clear();
        client.unknown.clear();
    }
    for (id, (hw, exp)) in &live {
        let owner = clients.iter().position(|c| c.hws.contains(hw));
        let owner = owner.unwrap_or_else(|| panic!("round {round}: lease {id} on a stranger's hw {hw}"));
        if !ledger.known.contains_key(id) {
            ledger.adopted += 1;
            ledger.known.insert(id.clone(), (hw.clone(), owner));
        }
        clients[owner].held.insert(hw.clone(), Held { id: id.clone(), exp: *exp });
    }
    // An administrator's forced release is durable too.
    if let Some((id, (hw, _))) = live.iter().nth(rng.range(0, live.len() as u64 + 1) as usize) {
        server.admin_ok("DELETE", &format!("/admin/leases/{id}"), None, 200);
        ledger.dead.insert(id.clone());
        ledger.releases_seen += 1;
        for client in clients.iter_mut() {
            client.held.remove(hw);
        }
    }
}

fn restart(dir: &Path) -> Server {
    let server = Server::start_in(dir, &[], true);
    wait_healthy(&server);
    server
}

/// Kills `server` with SIGKILL, which must find it still running.
fn sigkill(mut server: Server, round: usize) {
    assert!(server.is_running(), "round {round}: the server died before it was killed");
    let status = server.kill();
    assert_eq!(status.signal(), Some(9), "round {round}: exit status {status}");
}

#[test]
fn granted_leases_survive_sigkill_of_a_loaded_server() {
    let seed = std::env::var("LEASEHOLD_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        nanos as u64 ^ u64::from(std::process::id())
    });
    println!("seed {seed} (replay with LEASEHOLD_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let started = Instant::now();

    let dir = tempfile::tempdir().expect("a scratch directory");
    let mut server = restart(dir.path());
    let (licensee, _, first_key) = server.party("Acme");
    let mut keys = vec![first_key];
    for i in 1..CONSUMERS {
        let body = json!({"name": format!("Acme-user-{i}"), "kind": "user", "licensees": [licensee]});
        let consumer = server.admin_ok("POST", "/admin/consumers", Some(body), 201);
        keys.push(consumer["api_key"].as_str().expect("an API key").to_owned());
    }
    let license = server.license(&licensee, ITEM, seats(SEATS as u64), json!({"model": {"session_anchors": ["hw"]}}));
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|index| Client {
            index,
            key: keys[index % CONSUMERS].clone(),
            hws: (0..HW_PER_CLIENT).map(|j| format!("c{index}-hw{j}")).collect(),
            held: BTreeMap::new(),
            unknown: BTreeSet::new(),
            rng: Rng(seed ^ (index as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d)),
            granted: Vec::new(),
            released: Vec::new(),
            rotated: Vec::new(),
            anomalies: Vec::new(),
            unanswered_before_kill: 0,
            overloaded: 0,
            refused: 0,
        })
        .collect();
    let mut ledger = Ledger::default();

    for round in 0..ROUNDS {
        // Now and then right after the clients start, mostly well into the load.
        let kill_after =
            Duration::from_millis(if rng.range(0, 5) == 0 { rng.range(0, 30) } else { rng.range(100, 1200) });
        let stop = AtomicBool::new(false);
        let addr = server.addr;
        std::thread::scope(|scope| {
            for client in clients.iter_mut() {
                let stop = &stop;
                scope.spawn(move || client.run(addr, stop));
            }
            std::thread::sleep(kill_after);
            stop.store(true, Ordering::SeqCst);
            sigkill(server, round);
        });
        server = restart(dir.path());
        check_and_reconcile(&server, &license, round, &mut clients, &mut ledger, &mut rng);
        println!(
            "round {round}: killed after {kill_after:?}; so far {} grants ({} renewals) and {} releases seen; {} held now",
            ledger.grants_seen,
            ledger.renewals_seen,
            ledger.releases_seen,
            clients.iter().map(|c| c.held.len()).sum::<usize>()
        );
    }

    // Invariant 5 across a crash: a revocation is durable, and nothing is granted after it.
    let revoked =
        server.admin_ok("POST", &format!("/admin/licenses/{license}/revoke"), Some(json!({"reason": "crash"})), 200);
    assert_eq!(revoked["status"], json!("revoked"));
    let at_revocation = live_leases(&server, &license);
    let probe = |server: &Server, query: &str| {
        let reply = clients[0].authz(server.addr, query).expect("an answer").json();
        assert_eq!(reply[format!("{ITEM}_errorCode")], json!("licenseRevoked"), "{query}: {reply}");
    };
    probe(&server, &format!("{ITEM}&hw=after-revocation"));
    sigkill(server, ROUNDS);
    let server = restart(dir.path());
    let after = server.admin_ok("GET", &format!("/admin/licenses/{license}"), None, 200);
    assert_eq!(after["status"], json!("revoked"), "{after}");
    assert_eq!(after["revoked"]["reason"], json!("crash"), "{after}");
    assert_eq!(live_leases(&server, &license), at_revocation, "the leases changed across the crash");
    probe(&server, &format!("{ITEM}&hw=after-revocation"));
    for (id, (hw, _)) in at_revocation.iter().take(3) {
        let owner = clients.iter().find(|c| c.hws.contains(hw)).expect("an owner");
        let reply = owner.authz(server.addr, &format!("{ITEM}&hw={hw}&leaseId={id}")).expect("an answer").json();
        assert_eq!(reply[format!("{ITEM}_errorCode")], json!("licenseRevoked"), "renewal of {id}: {reply}");
    }

    println!(
        "{ROUNDS} kills + 1 after revocation in {:?}: {} grants ({} renewals) and {} releases seen, {} refusals; \
         {} lease checks after restarts, {} leases adopted from unanswered requests, {} requests unanswered \
         before a kill ({} of them 503 overloaded), at most {} live",
        started.elapsed(),
        ledger.grants_seen,
        ledger.renewals_seen,
        ledger.releases_seen,
        ledger.refused,
        ledger.leases_checked,
        ledger.adopted,
        ledger.unanswered_before_kill,
        ledger.overloaded,
        ledger.max_live
    );
    assert!(ledger.anomalies.is_empty(), "unexpected answers:\n{}", ledger.anomalies.join("\n"));
    assert!(ledger.grants_seen > 0 && ledger.releases_seen > 0, "the clients never got to work");
}
