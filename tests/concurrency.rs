//! Many clients on one license at once: 64 tasks consume and release on a 10-seat license for a
//! few seconds while an independent observer watches. Seats must never exceed 10 at any instant,
//! and at the end every count must reconcile: grants, releases, journal entries, usage.

use leasehold::decide::LicenseEvent;
use leasehold::journal::{Change, MemoryJournal};
use leasehold::{
    ConsumeRequest, ConsumerKind, Credit, Decision, Dimension, Enforcement, Engine, ErrorCode, LicenseeKind,
    NewConsumer, NewLicense, NewLicensee, NewProduct, ReleaseRequest,
};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SEATS: u64 = 10;
const CLIENTS: usize = 64;
const RUN_FOR: Duration = Duration::from_secs(3);

#[derive(Default)]
struct Tally {
    grants: AtomicU64,
    refusals: AtomicU64,
    releases: AtomicU64,
    /// Leases the clients hold right now, counted by the clients themselves: up after a grant
    /// arrives, down before the release is sent, so it never counts more than are live.
    held: AtomicI64,
    max_held: AtomicI64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_never_hold_more_than_ten_seats() {
    let journal = Arc::new(MemoryJournal::new());
    let engine = Engine::builder().journal(journal.clone()).build().unwrap();
    let acme = engine
        .create_licensee(NewLicensee { name: "Acme".into(), kind: LicenseeKind::Organization, external_id: None })
        .await
        .unwrap();
    engine.create_product(NewProduct { name: "ThreeDee".into(), features: vec![], tiers: vec![] }).await.unwrap();
    let credit = Credit { dimension: Dimension::Seats, qty: SEATS, enforcement: Enforcement::Enforced };
    let license = engine.create_license(NewLicense::new(acme.id, "ThreeDee", credit)).await.unwrap();
    let license_id = license.id;

    let mut consumers = Vec::new();
    for i in 0..CLIENTS {
        let new = NewConsumer {
            name: format!("client-{i}"),
            kind: ConsumerKind::User,
            licensees: vec![acme.id],
            email: None,
            external_id: None,
        };
        consumers.push(engine.create_consumer(new).await.unwrap().0.id);
    }

    let tally = Arc::new(Tally::default());
    let done = Arc::new(AtomicBool::new(false));
    let observer = {
        let (engine, tally, done) = (engine.clone(), tally.clone(), done.clone());
        tokio::spawn(async move {
            let mut observations = 0u64;
            while !done.load(Ordering::Acquire) {
                let gauge = engine.gauge(license_id).unwrap();
                assert!(gauge.seats_in_use <= SEATS, "gauge saw {} seats in use", gauge.seats_in_use);
                assert!(gauge.live_leases <= SEATS, "gauge saw {} live leases", gauge.live_leases);
                let held = tally.held.load(Ordering::Acquire);
                assert!(held <= SEATS as i64, "clients hold {held} leases at once");
                if observations.is_multiple_of(64) {
                    let usage = engine.usage(license_id).await.unwrap();
                    assert!(usage.seats_in_use <= SEATS, "the actor reports {} seats in use", usage.seats_in_use);
                }
                observations += 1;
                tokio::task::yield_now().await;
            }
            observations
        })
    };

    let deadline = Instant::now() + RUN_FOR;
    let clients: Vec<_> = consumers
        .into_iter()
        .map(|consumer| {
            let (engine, tally) = (engine.clone(), tally.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    match engine.consume(ConsumeRequest::new(consumer, "ThreeDee")).await.unwrap() {
                        Decision::Granted(grant) => {
                            tally.grants.fetch_add(1, Ordering::Relaxed);
                            let held = tally.held.fetch_add(1, Ordering::AcqRel) + 1;
                            tally.max_held.fetch_max(held, Ordering::Relaxed);
                            tokio::task::yield_now().await;
                            tally.held.fetch_sub(1, Ordering::AcqRel);
                            let released = engine.release(ReleaseRequest::new(consumer, grant.lease.id)).await.unwrap();
                            assert!(released.is_granted(), "release of a live lease failed: {released:?}");
                            tally.releases.fetch_add(1, Ordering::Relaxed);
                        }
                        Decision::Denied(denial) => {
                            assert_eq!(denial.code, ErrorCode::MaxConcurrentSessionsExceed, "{denial}");
                            tally.refusals.fetch_add(1, Ordering::Relaxed);
                            tokio::task::yield_now().await;
                        }
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    done.store(true, Ordering::Release);
    let observations = observer.await.unwrap();

    let grants = tally.grants.load(Ordering::Relaxed);
    let releases = tally.releases.load(Ordering::Relaxed);
    let refusals = tally.refusals.load(Ordering::Relaxed);
    println!(
        "{grants} grants, {releases} releases, {refusals} refusals, {observations} observations, max held {}",
        tally.max_held.load(Ordering::Relaxed)
    );
    assert!(grants > 0 && refusals > 0, "the run must both fill the license and be refused");
    assert_eq!(grants, releases);
    assert_eq!(tally.held.load(Ordering::Relaxed), 0);

    let usage = engine.usage(license.id).await.unwrap();
    assert_eq!((usage.live_leases, usage.seats_in_use), (0, 0), "{usage:?}");
    assert!(engine.leases(license.id).await.unwrap().is_empty());

    let (mut issued, mut released) = (0u64, 0u64);
    for entry in journal.entries() {
        if let Change::License { event, .. } = entry.change {
            match event {
                LicenseEvent::LeaseIssued { .. } => issued += 1,
                LicenseEvent::LeaseReleased { .. } => released += 1,
                _ => {}
            }
        }
    }
    assert_eq!((issued, released), (grants, releases), "the journal disagrees with what clients saw");
}
