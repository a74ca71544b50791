//! Idle license actors stop and leave their state with the router; the next request starts a
//! new actor from exactly that state. Parking races requests all the time here (a sweep every
//! millisecond), and still every request is answered by an actor holding the whole state: seats
//! are never exceeded, leases granted before a park renew and release after it, and nothing is
//! refused as `Stopped`.

use leasehold_engine::model::{ConsumerKind, Credit, Dimension, Enforcement, LicenseeKind};
use leasehold_engine::{
    ConsumeRequest, ConsumerId, Decision, Engine, LicenseId, NewConsumer, NewLicense, NewLicensee, NewProduct,
    ReleaseRequest, RenewRequest,
};
use std::time::{Duration, Instant};

const PRODUCT: &str = "Sweeper";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime")
}

async fn license_with_consumer(engine: &Engine, seats: u64) -> (LicenseId, ConsumerId) {
    let licensee = engine
        .create_licensee(NewLicensee { name: "Acme".into(), kind: LicenseeKind::Organization, external_id: None })
        .await
        .expect("a licensee");
    let (consumer, _) = engine
        .create_consumer(NewConsumer {
            name: "builder".into(),
            kind: ConsumerKind::Device,
            licensees: vec![licensee.id],
            email: None,
            external_id: None,
        })
        .await
        .expect("a consumer");
    let _ = engine.create_product(NewProduct { name: PRODUCT.into(), features: vec![], tiers: vec![] }).await;
    let credit = Credit { dimension: Dimension::Seats, qty: seats, enforcement: Enforcement::Enforced };
    let mut new = NewLicense::new(licensee.id, PRODUCT, credit);
    new.model.session_anchors = vec![leasehold_engine::model::SessionAnchor::Hw];
    let license = engine.create_license(new).await.expect("a license");
    (license.id, consumer.id)
}

/// Waits (up to 10 s) until no actor runs.
fn until_all_parked(engine: &Engine) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.running_actors() > 0 {
        assert!(Instant::now() < deadline, "{} actors still running after 10 s", engine.running_actors());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_parked_license_keeps_its_leases_and_seats() {
    let engine = Engine::builder().idle_sweep(Duration::from_millis(10)).build().expect("an engine");
    let rt = runtime();
    let (license, consumer) = rt.block_on(license_with_consumer(&engine, 2));
    let lease = rt.block_on(async {
        let a = engine.consume(ConsumeRequest::new(consumer, PRODUCT).on_hardware("a")).await.unwrap();
        let b = engine.consume(ConsumeRequest::new(consumer, PRODUCT).on_hardware("b")).await.unwrap();
        assert!(b.granted().is_some());
        a.granted().expect("a grant").lease
    });
    assert_eq!(engine.running_actors(), 1);
    until_all_parked(&engine);
    let starts = engine.actor_starts();

    rt.block_on(async {
        // Both seats are still taken.
        let c = engine.consume(ConsumeRequest::new(consumer, PRODUCT).on_hardware("c")).await.unwrap();
        assert!(matches!(c, Decision::Denied(_)), "a third seat after a park: {c:?}");
        assert_eq!(engine.usage(license).await.unwrap().live_leases, 2);
    });
    assert_eq!(engine.actor_starts(), starts + 1, "the parked actor started again");
    until_all_parked(&engine);
    rt.block_on(async {
        let renewed = engine.renew(RenewRequest::new(consumer, lease.id)).await.unwrap();
        let renewed = renewed.granted().expect("the lease granted before the park renews after it").lease;
        assert!(matches!(engine.renew(RenewRequest::new(consumer, lease.id)).await.unwrap(), Decision::Denied(_)));
        assert!(engine.release(ReleaseRequest::new(consumer, renewed.id)).await.unwrap().granted().is_some());
        assert_eq!(engine.usage(license).await.unwrap().live_leases, 1);
    });
}

#[test]
fn parking_races_requests_without_losing_any() {
    race_requests_with_parking(Engine::builder().idle_sweep(Duration::from_millis(1)).build().expect("an engine"));
}

#[test]
fn parking_after_every_answer_loses_no_request() {
    // With no idle budget every actor parks as soon as it has answered, racing the next request.
    let engine = Engine::builder().idle_sweep(Duration::from_secs(3600)).idle_actor_budget(0).build();
    race_requests_with_parking(engine.expect("an engine"));
}

#[test]
fn past_the_idle_budget_actors_park_as_soon_as_they_answer() {
    const LICENSES: usize = 8;
    const BUDGET: usize = 2;
    let rt = runtime();
    // The sweep never comes in this test: only the budget parks actors.
    let builder = || Engine::builder().idle_sweep(Duration::from_secs(3600));
    let within_budget = builder().idle_actor_budget(LICENSES).build().expect("an engine");
    let over_budget = builder().idle_actor_budget(BUDGET).build().expect("an engine");
    for engine in [&within_budget, &over_budget] {
        let leases: Vec<_> = rt.block_on(async {
            let mut leases = Vec::new();
            for _ in 0..LICENSES {
                let (license, consumer) = license_with_consumer(engine, 1).await;
                let granted = engine.consume(ConsumeRequest::new(consumer, PRODUCT).on_hardware("a")).await.unwrap();
                leases.push((license, consumer, granted.granted().expect("a free seat").lease.id));
            }
            leases
        });
        if std::ptr::eq(engine, &within_budget) {
            assert_eq!(engine.running_actors(), LICENSES, "within the budget every actor keeps running");
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while engine.running_actors() > BUDGET {
            assert!(
                Instant::now() < deadline,
                "{} actors still running past a budget of {BUDGET}",
                engine.running_actors()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(engine.actor_starts() >= LICENSES as u64);
        rt.block_on(async {
            for (license, consumer, lease) in leases {
                // The parked licenses kept their leases: the seat is taken, the lease renews.
                let other = engine.consume(ConsumeRequest::new(consumer, PRODUCT).on_hardware("b")).await.unwrap();
                assert!(matches!(other, Decision::Denied(_)), "a second seat after a park: {other:?}");
                let renewed = engine.renew(RenewRequest::new(consumer, lease)).await.unwrap();
                assert!(renewed.granted().is_some(), "a lease granted before the park renews after it");
                assert_eq!(engine.usage(license).await.unwrap().live_leases, 1);
            }
        });
    }
}

fn race_requests_with_parking(engine: Engine) {
    const SEATS: u64 = 3;
    const TASKS: usize = 12;
    const ROUNDS: usize = 300;
    let rt = runtime();
    let licenses: Vec<(LicenseId, ConsumerId)> = rt.block_on(async {
        vec![license_with_consumer(&engine, SEATS).await, license_with_consumer(&engine, SEATS).await]
    });
    rt.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let engine = engine.clone();
                let (license, consumer) = licenses[task % licenses.len()];
                tokio::spawn(async move {
                    let mut granted = 0;
                    for round in 0..ROUNDS {
                        let hw = format!("task-{task}");
                        let decision = engine
                            .consume(ConsumeRequest::new(consumer, PRODUCT).on_hardware(hw))
                            .await
                            .expect("every request is answered (never Stopped)");
                        let seats = engine.gauge(license).expect("a gauge").seats_in_use;
                        assert!(seats <= SEATS, "{seats} seats of {SEATS}");
                        if let Some(grant) = decision.granted() {
                            granted += 1;
                            if round % 3 == 0 {
                                // Let the sweep catch the actor idle now and then.
                                tokio::time::sleep(Duration::from_millis(2)).await;
                            }
                            let released =
                                engine.release(ReleaseRequest::new(consumer, grant.lease.id)).await.expect("answered");
                            assert!(released.granted().is_some(), "a granted lease could not be released");
                        }
                    }
                    granted
                })
            })
            .collect();
        let mut granted = 0;
        for task in tasks {
            granted += task.await.expect("a task panicked");
        }
        assert!(granted > 0);
        // Actors parked and started again while the requests ran (a license's first start
        // counts one).
        assert!(engine.actor_starts() > licenses.len() as u64, "no actor ever parked: the race was not run");
        for (license, _) in &licenses {
            let usage = engine.usage(*license).await.expect("usage");
            assert_eq!(usage.live_leases, 0, "every granted lease was released");
            assert_eq!(usage.seats_in_use, 0);
        }
    });
}
