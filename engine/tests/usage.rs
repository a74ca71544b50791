//! Usage reports through the real engine on a manual clock: grants, refusals and peaks per hour,
//! the hour a record closes in, use-count credit, a refusal counted once when several licenses
//! refuse, and the same report after the journal is replayed into a new engine.

mod common;

use leasehold_engine::journal::{Journal, MemoryJournal};
use leasehold_engine::model::{Credit, Dimension, Enforcement, SessionAnchor};
use leasehold_engine::replay::Recovered;
use leasehold_engine::time::Timestamp;
use leasehold_engine::usage::{Granularity, GroupBy, UsageCounts, UsageQuery};
use leasehold_engine::{ConsumeRequest, Decision, Engine, ManualClock, NewLicense, ReleaseRequest};
use std::sync::Arc;

const PRODUCT: &str = "Metered";
/// 2026-07-01T00:00:00Z.
const START_S: i64 = 1_782_864_000;

fn hour(n: i64) -> Timestamp {
    Timestamp::from_secs(START_S + n * 3_600)
}

fn query(granularity: Granularity, group_by: GroupBy) -> UsageQuery {
    UsageQuery { from: hour(0), to: hour(48), granularity, group_by, license: None, licensee: None }
}

async fn granted(engine: &Engine, req: ConsumeRequest) -> leasehold_engine::Grant {
    match engine.consume(req).await.expect("an answer") {
        Decision::Granted(grant) => grant,
        Decision::Denied(denial) => panic!("refused: {denial}"),
    }
}

async fn refused(engine: &Engine, req: ConsumeRequest) {
    let decision = engine.consume(req).await.expect("an answer");
    assert!(matches!(decision, Decision::Denied(_)), "granted: {decision:?}");
}

fn counts(peak_seats: u64, grants: u64, denials: u64) -> UsageCounts {
    UsageCounts { peak_seats, grants, denials, ..UsageCounts::default() }
}

#[test]
fn each_hour_counts_its_grants_refusals_and_peak_and_a_replay_reports_the_same() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    rt.block_on(async {
        let journal = Arc::new(MemoryJournal::new());
        let clock = Arc::new(ManualClock::starting_at(hour(0).plus_millis(3_550_000)));
        let engine = common::engine_on(Arc::clone(&journal) as _, Arc::clone(&clock));
        let (license, consumer) = common::seat_license(&engine, PRODUCT, 2).await;
        let on = |hw: &str| ConsumeRequest::new(consumer, PRODUCT).on_hardware(hw);

        // Hour 0 (leases of a minute, taken 50 s before its end): two seats taken, a third
        // refused twice, a check not counted.
        granted(&engine, on("a")).await;
        granted(&engine, on("b")).await;
        refused(&engine, on("c")).await;
        refused(&engine, on("c")).await;
        assert!(matches!(engine.check(on("c")).await.unwrap(), Decision::Denied(_)));

        // Hour 1: "a" checks out again on its live lease (not a grant) while both seats are
        // still held; "b" runs out and "c" gets its seat; "a" is released.
        clock.set(hour(1).plus_millis(5_000));
        let renewed = granted(&engine, on("a")).await;
        assert!(renewed.replaced.is_some(), "the live lease is rotated");
        clock.set(hour(1).plus_millis(61_000));
        granted(&engine, on("c")).await;
        let released = engine.release(ReleaseRequest::new(consumer, renewed.lease.id)).await.unwrap();
        assert!(matches!(released, Decision::Granted(_)), "{released:?}");

        let rows = engine.usage_report(&query(Granularity::Hour, GroupBy::License)).await.unwrap();
        let seen: Vec<(Timestamp, &str, UsageCounts)> =
            rows.iter().map(|r| (r.period_start, r.key.as_str(), r.counts)).collect();
        let license_key = license.to_string();
        assert_eq!(
            seen,
            vec![(hour(0), license_key.as_str(), counts(2, 2, 2)), (hour(1), license_key.as_str(), counts(2, 1, 0))],
            "hour 1 opens with the two seats held from hour 0"
        );
        let by_consumer = engine.usage_report(&query(Granularity::Day, GroupBy::Consumer)).await.unwrap();
        assert_eq!(by_consumer.len(), 1);
        assert_eq!((by_consumer[0].key.clone(), by_consumer[0].counts), (consumer.to_string(), counts(2, 3, 2)));

        // A report closes the open record; more use in the same hour adds to the same cell.
        granted(&engine, on("d")).await;
        let again = engine.usage_report(&query(Granularity::Hour, GroupBy::License)).await.unwrap();
        assert_eq!(again[1].counts, counts(2, 2, 0));

        // The journal replayed into a new engine reports the same, and keeps counting.
        let before = engine.usage_report(&query(Granularity::Month, GroupBy::Licensee)).await.unwrap();
        drop(engine);
        let replayed = Recovered::from_entries(&journal.entries());
        let restarted = Engine::builder()
            .journal(Arc::clone(&journal) as Arc<dyn Journal>)
            .clock(Arc::clone(&clock) as _)
            .workers(1)
            .recovered(replayed)
            .build()
            .unwrap();
        let after = restarted.usage_report(&query(Granularity::Month, GroupBy::Licensee)).await.unwrap();
        assert_eq!(after, before);
        assert_eq!(after[0].counts, counts(2, 4, 2));
    });
}

#[test]
fn use_count_credit_is_counted_when_taken_and_a_refusal_by_several_licenses_once() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    rt.block_on(async {
        let journal = Arc::new(MemoryJournal::new());
        let clock = Arc::new(ManualClock::starting_at(hour(3)));
        let engine = common::engine_on(Arc::clone(&journal) as _, Arc::clone(&clock));
        let (first, consumer) = common::seat_license(&engine, PRODUCT, 1).await;
        let licensee = engine.license(first).unwrap().licensee;
        let uses = Credit { dimension: Dimension::UseCount, qty: 3, enforcement: Enforcement::Enforced };
        let mut new = NewLicense::new(licensee, PRODUCT, uses);
        new.model.session_anchors = vec![SessionAnchor::Hw];
        new.model.lease_time_online_s = 60;
        let second = engine.create_license(new).await.unwrap().id;
        let on = |hw: &str| ConsumeRequest::new(consumer, PRODUCT).on_hardware(hw);

        // Seats first, then uses: "a" takes the seat, "b".."d" take the three uses, "e" is
        // refused by both licenses.
        for hw in ["a", "b", "c", "d"] {
            granted(&engine, on(hw)).await;
        }
        refused(&engine, on("e")).await;

        let rows = engine.usage_report(&query(Granularity::Day, GroupBy::License)).await.unwrap();
        let of = |license: leasehold_engine::LicenseId| {
            rows.iter().find(|r| r.key == license.to_string()).map(|r| r.counts).unwrap_or_default()
        };
        assert_eq!(of(first).grants + of(second).grants, 4, "{rows:?}");
        assert_eq!((of(first).grants, of(second).uses), (1, 3), "one seat and three uses: {rows:?}");
        assert_eq!(of(first).denials + of(second).denials, 1, "one refusal, counted by the license that answered it");
        let product = engine.usage_report(&query(Granularity::Day, GroupBy::Product)).await.unwrap();
        assert_eq!(product.len(), 1);
        assert_eq!((product[0].key.as_str(), product[0].counts.grants, product[0].counts.uses), (PRODUCT, 4, 3));
    });
}
