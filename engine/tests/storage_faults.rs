//! A journal that fails at random appends, driven through the real engine: after every step,
//! each license's state in memory (its live leases and usage, read through its actor) equals a
//! replay of what the journal acknowledged. A change whose append failed is never left in
//! memory: the license continues from the journal's durable state before it answers anything
//! else ([`Journal::rebuild`]), so a failed checkout leaves no phantom seat.

mod common;

use leasehold_engine::decide::LicenseState;
use leasehold_engine::ids::{LeaseId, LicenseId};
use leasehold_engine::journal::{Change, Durability, Journal, JournalEntry, JournalError};
use leasehold_engine::replay::Recovered;
use leasehold_engine::time::Timestamp;
use leasehold_engine::{ConsumeRequest, ConsumerId, Decision, Engine, EngineError, ManualClock, ReleaseRequest};
use proptest::prelude::*;
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

const PRODUCT: &str = "Flaky";
const T0: Timestamp = Timestamp::from_secs(1_790_000_000);

/// Keeps what it acknowledged; fails the appends it is told to, and then hands the licenses
/// they belonged to their durable state, replayed from what it kept.
#[derive(Default)]
struct FlakyJournal {
    durable: Mutex<Vec<JournalEntry>>,
    fail_next: Mutex<bool>,
    lost: Mutex<HashSet<LicenseId>>,
}

impl FlakyJournal {
    fn fail_next_append(&self) {
        *self.fail_next.lock().unwrap() = true;
    }

    fn durable(&self) -> Vec<JournalEntry> {
        self.durable.lock().unwrap().clone()
    }
}

impl Journal for FlakyJournal {
    fn append(&self, entry: &JournalEntry) -> Durability {
        if std::mem::take(&mut *self.fail_next.lock().unwrap()) {
            if let Change::License { license, .. } = &entry.change {
                self.lost.lock().unwrap().insert(*license);
            }
            return Durability::Failed(JournalError::Io("the disk is full (injected)".into()));
        }
        self.durable.lock().unwrap().push(entry.clone());
        Durability::Now
    }

    fn rebuild(&self, license: LicenseId) -> Result<Option<(LicenseState, Timestamp)>, JournalError> {
        if !self.lost.lock().unwrap().remove(&license) {
            return Ok(None);
        }
        let mut recovered = Recovered::from_entries(&self.durable());
        Ok(recovered.licenses.remove(&license))
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// A checkout on this hardware id; the append fails when `fails`.
    Consume { hw: u8, fails: bool },
    /// A release of the n-th live lease (modulo); the append fails when `fails`.
    Release { nth: usize, fails: bool },
    /// Time passes (leases live 60 s).
    Wait { seconds: u64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0u8..6, prop::bool::weighted(0.3)).prop_map(|(hw, fails)| Step::Consume { hw, fails }),
        3 => (any::<usize>(), prop::bool::weighted(0.3)).prop_map(|(nth, fails)| Step::Release { nth, fails }),
        1 => (1u64..40).prop_map(|seconds| Step::Wait { seconds }),
    ]
}

struct Fixture {
    engine: Engine,
    journal: Arc<FlakyJournal>,
    clock: Arc<ManualClock>,
    license: LicenseId,
    consumer: ConsumerId,
}

async fn fixture() -> Fixture {
    let journal = Arc::new(FlakyJournal::default());
    let clock = Arc::new(ManualClock::starting_at(T0));
    let engine = common::engine_on(Arc::clone(&journal) as _, Arc::clone(&clock));
    let (license, consumer) = common::seat_license(&engine, PRODUCT, 3).await;
    Fixture { engine, journal, clock, license, consumer }
}

/// The live lease ids of `license` in memory (through its actor, which rebuilds first) and in
/// a replay of what the journal acknowledged, expired up to now.
async fn memory_and_replay(f: &Fixture) -> (BTreeSet<LeaseId>, BTreeSet<LeaseId>, u64, u64) {
    let in_memory = f.engine.leases(f.license).await.expect("the leases").into_iter().map(|l| l.id).collect();
    let seats = f.engine.usage(f.license).await.expect("the usage").seats_in_use;
    let mut replayed = Recovered::from_entries(&f.journal.durable());
    let (state, _) = replayed.licenses.get_mut(&f.license).expect("the license is durable");
    state.expire_until(f.engine.now(), |_| {});
    (in_memory, state.leases().map(|l| l.id).collect(), seats, state.usage().seats_in_use)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn memory_always_equals_a_replay_of_what_was_acknowledged(steps in prop::collection::vec(step(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async {
            let f = fixture().await;
            for step in steps {
                match step {
                    Step::Consume { hw, fails } => {
                        if fails {
                            f.journal.fail_next_append();
                        }
                        let req = ConsumeRequest::new(f.consumer, PRODUCT).on_hardware(format!("hw-{hw}"));
                        match f.engine.consume(req).await {
                            Ok(_) => {}
                            Err(EngineError::Journal(JournalError::Io(_))) => prop_assert!(fails),
                            Err(other) => prop_assert!(false, "a checkout failed: {other}"),
                        }
                    }
                    Step::Release { nth, fails } => {
                        let live = f.engine.leases(f.license).await.expect("the leases");
                        if live.is_empty() {
                            continue;
                        }
                        if fails {
                            f.journal.fail_next_append();
                        }
                        let lease = live[nth % live.len()].id;
                        match f.engine.release(ReleaseRequest::new(f.consumer, lease)).await {
                            Ok(Decision::Granted(_)) => {}
                            Ok(Decision::Denied(denial)) => prop_assert!(false, "a live lease was not released: {denial:?}"),
                            Err(EngineError::Journal(JournalError::Io(_))) => prop_assert!(fails),
                            Err(other) => prop_assert!(false, "a release failed: {other}"),
                        }
                    }
                    Step::Wait { seconds } => f.clock.advance_secs(seconds),
                }
                // A failure that was not used up (a denial journals nothing) must not hit a read.
                *f.journal.fail_next.lock().unwrap() = false;
                let (memory, replay, seats, replayed_seats) = memory_and_replay(&f).await;
                prop_assert_eq!(&memory, &replay, "in memory: {:?}, acknowledged: {:?}", memory, replay);
                prop_assert_eq!(seats, replayed_seats);
            }
            Ok(())
        })?;
    }
}
