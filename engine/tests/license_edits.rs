//! License edits interleaved with checkouts, through the real engine: whatever the sequence of
//! seat changes, a new session is granted only while the seats in use are below the license's
//! *current* seats, a cut revokes no live lease, and the journal replays to the state in memory.

mod common;

use leasehold_engine::journal::MemoryJournal;
use leasehold_engine::replay::Recovered;
use leasehold_engine::time::Timestamp;
use leasehold_engine::{ConsumeRequest, Decision, LicensePatch, ManualClock, ReleaseRequest};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::sync::Arc;

const PRODUCT: &str = "Edited";

#[derive(Debug, Clone)]
enum Step {
    Consume { hw: u8 },
    Release { nth: usize },
    Seats { qty: u64 },
    Wait { seconds: u64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0u8..8).prop_map(|hw| Step::Consume { hw }),
        2 => any::<usize>().prop_map(|nth| Step::Release { nth }),
        2 => (1u64..6).prop_map(|qty| Step::Seats { qty }),
        1 => (1u64..50).prop_map(|seconds| Step::Wait { seconds }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn edits_never_grant_past_the_current_seats_and_replay_to_the_same_state(steps in prop::collection::vec(step(), 1..50)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async {
            let journal = Arc::new(MemoryJournal::new());
            let clock = Arc::new(ManualClock::starting_at(Timestamp::from_secs(1_790_000_000)));
            let engine = common::engine_on(Arc::clone(&journal) as _, Arc::clone(&clock));
            let (license, consumer) = common::seat_license(&engine, PRODUCT, 2).await;
            let mut seats = 2;

            for step in steps {
                match step {
                    Step::Consume { hw } => {
                        let before = engine.usage(license).await.unwrap().seats_in_use;
                        let req = ConsumeRequest::new(consumer, PRODUCT).on_hardware(format!("hw-{hw}"));
                        let granted = matches!(engine.consume(req).await.unwrap(), Decision::Granted(_));
                        let after = engine.usage(license).await.unwrap().seats_in_use;
                        if granted && after > before {
                            prop_assert!(before < seats, "a new session was granted with {before} of {seats} seats taken");
                        }
                    }
                    Step::Release { nth } => {
                        let live = engine.leases(license).await.unwrap();
                        if !live.is_empty() {
                            let lease = live[nth % live.len()].id;
                            engine.release(ReleaseRequest::new(consumer, lease)).await.unwrap();
                        }
                    }
                    Step::Seats { qty } => {
                        let live_before = engine.leases(license).await.unwrap().len();
                        let patch = LicensePatch { qty: Some(qty), ..LicensePatch::default() };
                        let terms = engine.patch_license(license, patch).await.expect("the change");
                        prop_assert_eq!(terms.credit.qty, qty);
                        prop_assert_eq!(engine.leases(license).await.unwrap().len(), live_before, "a cut revoked a lease");
                        seats = qty;
                    }
                    Step::Wait { seconds } => clock.advance_secs(seconds),
                }
            }

            let mut replayed = Recovered::from_entries(&journal.entries());
            prop_assert!(replayed.halted.is_empty(), "the replay broke an invariant: {:?}", replayed.halted);
            prop_assert_eq!(replayed.directory.license(license).map(|l| l.credit.qty), Some(seats));
            let (state, _) = replayed.licenses.get_mut(&license).expect("the license");
            state.expire_until(engine.now(), |_| {});
            let in_memory: BTreeSet<_> = engine.leases(license).await.unwrap().into_iter().map(|l| l.id).collect();
            let replay: BTreeSet<_> = state.leases().map(|l| l.id).collect();
            prop_assert_eq!(in_memory, replay);
            prop_assert_eq!(engine.usage(license).await.unwrap(), state.usage());
            Ok(())
        })?;
    }
}
