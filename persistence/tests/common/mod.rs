//! Shared fixtures for the persistence tests: an engine on a sled journal, a seat license to
//! consume, and a seeded workload whose journal entries exercise every kind of change.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod nats;

use leasehold_engine::ids::SeededIds;
use leasehold_engine::journal::{Journal, JournalEntry, MemoryJournal};
use leasehold_engine::model::{
    ConsumerKind, Credit, Dimension, Enforcement, Feature, LicenseModel, LicenseeKind, SessionAnchor,
};
use leasehold_engine::replay::{Recovered, RecoveredSnapshotV1};
use leasehold_engine::{
    ConsumeRequest, ConsumerId, Decision, Engine, LeaseId, LicenseId, ManualClock, NewConsumer, NewLicense,
    NewLicensee, NewProduct, ReleaseRequest, RenewRequest, Timestamp,
};
use leasehold_persistence::{JournalConfig, SledJournal};
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::sync::Arc;

/// A fixed start time, so that tests with a manual clock are deterministic.
pub const START: Timestamp = Timestamp::from_secs(1_800_000_000);

/// A single-threaded runtime to drive the engine's async API from a test.
pub fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => panic!("cannot start a tokio runtime: {e}"),
    }
}

/// Opens the journal in `dir` and starts an engine on it with `clock`.
pub fn open_engine(dir: &Path, config: JournalConfig, clock: ManualClock) -> (Arc<SledJournal>, Engine) {
    let (journal, recovered) = match SledJournal::open(dir, config) {
        Ok(opened) => opened,
        Err(e) => panic!("cannot open the journal: {e}"),
    };
    let journal = Arc::new(journal);
    let engine = Engine::builder()
        .clock(Arc::new(clock))
        .journal(Arc::clone(&journal) as Arc<dyn Journal>)
        .recovered(recovered)
        .workers(1)
        .build();
    match engine {
        Ok(engine) => (journal, engine),
        Err(e) => panic!("cannot start the engine: {e}"),
    }
}

/// A seat license and a consumer that may use it.
#[derive(Debug, Clone, Copy)]
pub struct SeatLicense {
    pub license: LicenseId,
    pub consumer: ConsumerId,
}

/// The product every fixture licenses.
pub const PRODUCT: &str = "ThreeDee";

/// Creates a licensee, a consumer and a license of `seats` seats, one seat per hardware id.
pub async fn seat_license(engine: &Engine, seats: u64) -> SeatLicense {
    let licensee = engine
        .create_licensee(NewLicensee { name: "Acme".into(), kind: LicenseeKind::Organization, external_id: None })
        .await
        .unwrap_or_else(|e| panic!("licensee: {e}"));
    let (consumer, _key) = engine
        .create_consumer(NewConsumer {
            name: "builder".into(),
            kind: ConsumerKind::User,
            licensees: vec![licensee.id],
            email: None,
            external_id: None,
        })
        .await
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    engine
        .create_product(NewProduct {
            name: PRODUCT.into(),
            features: vec![Feature { name: "render".into(), display_only: false }],
            tiers: vec![],
        })
        .await
        .unwrap_or_else(|e| panic!("product: {e}"));
    let credit = Credit { dimension: Dimension::Seats, qty: seats, enforcement: Enforcement::Enforced };
    let mut new = NewLicense::new(licensee.id, PRODUCT, credit);
    new.model = LicenseModel { session_anchors: vec![SessionAnchor::Hw], ..LicenseModel::default() };
    let license = engine.create_license(new).await.unwrap_or_else(|e| panic!("license: {e}"));
    SeatLicense { license: license.id, consumer: consumer.id }
}

/// Every live lease of `license` as `(id, expiry)`, sorted.
pub async fn live_leases(engine: &Engine, license: LicenseId) -> Vec<(LeaseId, Timestamp)> {
    let mut leases: Vec<(LeaseId, Timestamp)> = engine
        .leases(license)
        .await
        .unwrap_or_else(|e| panic!("leases: {e}"))
        .into_iter()
        .map(|l| (l.id, l.expires_at))
        .collect();
    leases.sort();
    leases
}

/// The journal entries of a seeded random workload on an in-memory engine: consumes, renewals,
/// releases, expiries (the clock moves), cooldowns, seat assignments and a revocation, over a
/// seat license and a use-count license.
pub fn workload_entries(seed: u64, steps: usize) -> Vec<JournalEntry> {
    runtime().block_on(async move {
        let memory = Arc::new(MemoryJournal::new());
        run_workload(Arc::clone(&memory) as Arc<dyn Journal>, seed, steps).await;
        memory.entries()
    })
}

/// Runs the seeded workload of [`workload_entries`] on an engine journaling to `journal`: the
/// same seed makes the same changes whatever the journal.
pub async fn run_workload(journal: Arc<dyn Journal>, seed: u64, steps: usize) {
    let clock = ManualClock::starting_at(START);
    let engine = Engine::builder()
        .clock(Arc::new(clock.clone()))
        .ids(Arc::new(SeededIds::new(seed)))
        .journal(journal)
        .workers(1)
        .build()
        .unwrap_or_else(|e| panic!("engine: {e}"));
    let seats = seat_license(&engine, 4).await;
    let licensee = engine.license(seats.license).map(|l| l.licensee).unwrap_or_else(|| panic!("no license"));
    let mut cooled = LicenseModel {
        session_anchors: vec![SessionAnchor::Hw],
        cooldown_s: 300,
        lease_time_online_s: 1_800,
        ..LicenseModel::default()
    };
    cooled.max_hardware = Some(6);
    let mut new = NewLicense::new(
        licensee,
        PRODUCT,
        Credit { dimension: Dimension::UseCount, qty: 500, enforcement: Enforcement::Enforced },
    );
    new.model = cooled;
    let counted = engine.create_license(new).await.unwrap_or_else(|e| panic!("license: {e}"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut live: Vec<LeaseId> = Vec::new();
    for step in 0..steps {
        match rng.gen_range(0..10) {
            0..=3 => {
                let mut req =
                    ConsumeRequest::new(seats.consumer, PRODUCT).on_hardware(format!("hw-{}", rng.gen_range(0..8)));
                req.qty = Some(rng.gen_range(1..4));
                if let Ok(Decision::Granted(grant)) = engine.consume(req).await {
                    live.push(grant.lease.id);
                }
            }
            4 | 5 if !live.is_empty() => {
                let i = rng.gen_range(0..live.len());
                if let Ok(Decision::Granted(grant)) = engine.renew(RenewRequest::new(seats.consumer, live[i])).await {
                    live[i] = grant.lease.id;
                }
            }
            6 | 7 if !live.is_empty() => {
                let id = live.swap_remove(rng.gen_range(0..live.len()));
                let _ = engine.release(ReleaseRequest::new(seats.consumer, id)).await;
            }
            8 => clock.advance_secs(rng.gen_range(0..2_000)),
            _ => {
                let _ = if step % 2 == 0 {
                    engine.assign(counted.id, seats.consumer).await
                } else {
                    engine.unassign(counted.id, seats.consumer).await
                };
            }
        }
    }
    let _ = engine.revoke(counted.id, "test over").await;
}

/// The state a full replay of `entries` gives, in comparable form.
pub fn replayed(entries: &[JournalEntry]) -> leasehold_engine::replay::RecoveredSnapshot {
    Recovered::from_entries(entries).to_snapshot()
}

/// The journal entries of `licenses` one-seat licenses of one licensee, every other one holding a
/// lease and every sixth one's lease renewed: a state whose snapshot spans several parts.
pub fn many_licenses_entries(licenses: usize) -> Vec<JournalEntry> {
    runtime().block_on(async move {
        let memory = Arc::new(MemoryJournal::new());
        let engine = Engine::builder()
            .clock(Arc::new(ManualClock::starting_at(START)))
            .ids(Arc::new(SeededIds::new(3)))
            .journal(Arc::clone(&memory) as Arc<dyn Journal>)
            .workers(1)
            .build()
            .unwrap_or_else(|e| panic!("engine: {e}"));
        let fixture = seat_license(&engine, 1).await;
        let licensee = engine.license(fixture.license).map(|l| l.licensee).unwrap_or_else(|| panic!("no license"));
        for i in 0..licenses {
            let license = if i == 0 {
                fixture.license
            } else {
                let credit = Credit { dimension: Dimension::Seats, qty: 1, enforcement: Enforcement::Enforced };
                let mut new = NewLicense::new(licensee, PRODUCT, credit);
                new.model = LicenseModel { session_anchors: vec![SessionAnchor::Hw], ..LicenseModel::default() };
                engine.create_license(new).await.unwrap_or_else(|e| panic!("license: {e}")).id
            };
            if i % 2 == 1 {
                continue;
            }
            let mut request = ConsumeRequest::new(fixture.consumer, PRODUCT).on_hardware(format!("hw-{i}"));
            request.filters.license = Some(license);
            let Ok(Decision::Granted(grant)) = engine.consume(request).await else { panic!("no lease on {license}") };
            if i % 6 == 0 {
                let renewed = engine.renew(RenewRequest::new(fixture.consumer, grant.lease.id)).await;
                assert!(matches!(renewed, Ok(Decision::Granted(_))), "renewal on {license}: {renewed:?}");
            }
        }
        memory.entries()
    })
}

/// The envelope of a version-1 snapshot as the version-1 encoder wrote it: the state in one
/// value, license terms in the directory and in every license's state.
pub fn encode_snapshot_v1(seq: u64, state: &Recovered) -> Vec<u8> {
    use leasehold_engine::directory::DirectorySnapshotV1;
    let snapshot = state.to_snapshot();
    let directory = snapshot.directory;
    let v1 = RecoveredSnapshotV1 {
        directory: DirectorySnapshotV1 {
            licensees: directory.licensees,
            consumers: directory.consumers,
            products: directory.products,
            licenses: snapshot.licenses.iter().map(|(_, state, _)| Arc::clone(&state.license)).collect(),
            licenses_by_licensee: directory.licenses_by_licensee,
            licenses_by_key: directory.licenses_by_key,
        },
        licenses: snapshot.licenses,
    };
    let mut bytes = vec![1, 0, 0, 0, 0];
    leasehold_engine::shapes::in_format(1, || {
        bincode::serde::encode_into_std_write(&v1, &mut bytes, bincode::config::standard())
    })
    .unwrap_or_else(|e| panic!("encode: {e}"));
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[..1]);
    crc.update(&bytes[5..]);
    crc.update(b"leasehold-snapshot");
    crc.update(&seq.to_be_bytes());
    let crc = crc.finalize().to_le_bytes();
    bytes[1..5].copy_from_slice(&crc);
    bytes
}

/// Appends `entries` to `journal` and waits until all are durable, many in flight at a time so
/// that they share log records.
pub fn append_together(journal: &SledJournal, entries: &[JournalEntry]) {
    let rt = runtime();
    for window in entries.chunks(256) {
        let pending: Vec<_> = window.iter().map(|entry| journal.append(entry)).collect();
        for durability in pending {
            if let Err(e) = rt.block_on(durability.wait()) {
                panic!("append failed: {e}");
            }
        }
    }
}

/// Appends `entries` to `journal` one at a time, each durable before the next, so that each
/// is a log record of its own (tests that damage records rely on it).
pub fn append_all(journal: &SledJournal, entries: &[JournalEntry]) {
    let rt = runtime();
    for entry in entries {
        if let Err(e) = rt.block_on(journal.append(entry).wait()) {
            panic!("append failed: {e}");
        }
    }
}

/// `snapshot` without what formats before 3 and before 5 did not keep: when each machine was
/// seen (a state restored from one dates its machines from their live leases instead), and the
/// open usage record (one restored from an older snapshot counts only the changes after it).
pub fn without_fields_older_formats_lack(
    mut snapshot: leasehold_engine::replay::RecoveredSnapshot,
) -> leasehold_engine::replay::RecoveredSnapshot {
    for (_, state, _) in &mut snapshot.licenses {
        state.hardware_seen.clear();
        state.usage_open = None;
    }
    snapshot
}
