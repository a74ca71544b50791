//! License edits interleaved with checkouts, through the real engine: whatever the sequence of
//! seat changes, freed machines, disabled consumers and retried checkouts, a new session is
//! granted only while the seats in use are below the license's *current* seats, a cut revokes no
//! live lease, a retry with the same idempotency key gets the same lease without a second seat,
//! and the journal replays to the state in memory.

mod common;

use leasehold_engine::decide::Idempotency;
use leasehold_engine::journal::{Durability, Journal, JournalEntry, JournalError, MemoryJournal};
use leasehold_engine::replay::Recovered;
use leasehold_engine::time::Timestamp;
use leasehold_engine::{
    AdminError, ConsumeRequest, ConsumerPatch, Decision, EngineError, LicensePatch, ManualClock, ReleaseRequest,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use tokio::sync::oneshot;

const PRODUCT: &str = "Edited";

#[derive(Debug, Clone)]
enum Step {
    Consume { hw: u8 },
    Release { nth: usize },
    Seats { qty: u64 },
    Wait { seconds: u64 },
    ConsumeOnce { hw: u8, key: u8 },
    FreeMachine { hw: u8 },
    Disable { disabled: bool },
}

/// A checkout of `hw` sent with idempotency key `key`.
fn once(consumer: leasehold_engine::ConsumerId, hw: u8, key: u8) -> ConsumeRequest {
    let hw = format!("hw-{hw}");
    let mut req = ConsumeRequest::new(consumer, PRODUCT).on_hardware(hw.clone());
    req.idempotency = Some(Idempotency::of(b"consumer", &format!("key-{key}"), 0, &[hw.as_bytes()]));
    req
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0u8..8).prop_map(|hw| Step::Consume { hw }),
        2 => any::<usize>().prop_map(|nth| Step::Release { nth }),
        2 => (1u64..6).prop_map(|qty| Step::Seats { qty }),
        1 => (1u64..50).prop_map(|seconds| Step::Wait { seconds }),
        3 => (0u8..8, 0u8..4).prop_map(|(hw, key)| Step::ConsumeOnce { hw, key }),
        1 => (0u8..8).prop_map(|hw| Step::FreeMachine { hw }),
        1 => any::<bool>().prop_map(|disabled| Step::Disable { disabled }),
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
            // The lease each idempotency key was granted, with the hardware its request named.
            let mut granted_keys: BTreeMap<u8, (u8, leasehold_engine::LeaseId)> = BTreeMap::new();

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
                    Step::ConsumeOnce { hw, key } => {
                        let before = engine.usage(license).await.unwrap().seats_in_use;
                        let answer = engine.consume(once(consumer, hw, key)).await;
                        let after = engine.usage(license).await.unwrap().seats_in_use;
                        match (granted_keys.get(&key), answer) {
                            (Some((first_hw, _)), Err(EngineError::IdempotencyKeyReused)) => {
                                prop_assert_ne!(*first_hw, hw, "the same request was refused as another");
                            }
                            (Some((first_hw, first)), Ok(Decision::Granted(grant))) => {
                                prop_assert_eq!(*first_hw, hw, "another request got the key's lease");
                                prop_assert_eq!(grant.lease.id, *first, "a retry got another lease");
                                prop_assert_eq!(after, before, "a retry took a seat");
                            }
                            (None, Ok(Decision::Granted(grant))) => {
                                if after > before {
                                    prop_assert!(before < seats, "a new session was granted with {before} of {seats} seats taken");
                                }
                                granted_keys.insert(key, (hw, grant.lease.id));
                            }
                            (None, Ok(Decision::Denied(_))) => {}
                            (first, other) => prop_assert!(false, "key {key} (first {first:?}): {other:?}"),
                        }
                    }
                    Step::FreeMachine { hw } => {
                        let hw = format!("hw-{hw}");
                        let known = engine.machines(license).await.unwrap().iter().any(|m| *m.hw == *hw);
                        match engine.free_machine(license, &hw).await {
                            Ok(()) => prop_assert!(known),
                            Err(AdminError::NotFound(_)) => prop_assert!(!known),
                            Err(other) => prop_assert!(false, "freeing {hw}: {other}"),
                        }
                        let on_it = engine.leases(license).await.unwrap().into_iter().filter(|l| l.anchors.hw.as_deref() == Some(&*hw)).count();
                        prop_assert_eq!(on_it, 0, "a freed machine kept a lease");
                    }
                    Step::Disable { disabled } => {
                        let patch = ConsumerPatch { disabled: Some(disabled), ..ConsumerPatch::default() };
                        engine.patch_consumer(consumer, patch).await.expect("the change");
                    }
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
            let machines: BTreeSet<String> = engine.machines(license).await.unwrap().iter().map(|m| m.hw.to_string()).collect();
            let replayed_machines: BTreeSet<String> = state.machines_in_use().iter().map(|(hw, _)| hw.to_string()).collect();
            prop_assert_eq!(machines, replayed_machines);
            let remembered: BTreeSet<_> = state.idempotent_grants().map(|g| g.lease.id).collect();
            prop_assert_eq!(remembered, granted_keys.values().map(|(_, lease)| *lease).collect::<BTreeSet<_>>());
            Ok(())
        })?;
    }
}

/// Tells a held change's appender that it is durable.
type MakesDurable = oneshot::Sender<Result<(), JournalError>>;

/// Appends to memory; while held, the changes it is given become durable only when released, so
/// a checkout's answer (which waits for durability) cannot arrive before the test lets it.
#[derive(Default)]
struct HeldJournal {
    inner: MemoryJournal,
    held: Mutex<Option<Vec<MakesDurable>>>,
}

impl HeldJournal {
    fn hold(&self) {
        *self.held.lock().unwrap() = Some(Vec::new());
    }

    /// Makes every held change durable; later ones are durable at once.
    fn release(&self) {
        for durable in self.held.lock().unwrap().take().into_iter().flatten() {
            let _ = durable.send(Ok(()));
        }
    }
}

impl Journal for HeldJournal {
    fn append(&self, entry: &JournalEntry) -> Durability {
        let now = self.inner.append(entry);
        match self.held.lock().unwrap().as_mut() {
            Some(held) => {
                let (durable, when) = oneshot::channel();
                held.push(durable);
                Durability::Pending(when)
            }
            None => now,
        }
    }
}

/// A checkout whose caller goes away after sending it: the key is neither refused forever as in
/// flight nor granted a second time, because the retry asks the license that granted it.
#[test]
fn a_retry_after_the_first_caller_gave_up_gets_the_lease_the_first_was_granted() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    rt.block_on(async {
        let journal = Arc::new(HeldJournal::default());
        let clock = Arc::new(ManualClock::starting_at(Timestamp::from_secs(1_790_000_000)));
        let engine = common::engine_on(Arc::clone(&journal) as _, Arc::clone(&clock));
        let (license, consumer) = common::seat_license(&engine, PRODUCT, 2).await;

        journal.hold();
        let mut abandoned = Box::pin(engine.consume(once(consumer, 1, 1)));
        let pending = abandoned.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(pending.is_pending(), "the checkout is sent to the license and awaits its answer");
        drop(abandoned);
        journal.release();

        let retried = engine.consume(once(consumer, 1, 1)).await.expect("the retry is answered");
        let Decision::Granted(grant) = retried else { panic!("the retry is granted: {retried:?}") };
        let leases = engine.leases(license).await.unwrap();
        assert_eq!(leases.iter().map(|l| l.id).collect::<Vec<_>>(), vec![grant.lease.id], "one seat, the first one");
        let again = engine.consume(once(consumer, 1, 1)).await.expect("a second retry");
        assert!(matches!(again, Decision::Granted(g) if g.lease.id == grant.lease.id));
        let other = engine.consume(once(consumer, 2, 1)).await;
        assert!(matches!(other, Err(EngineError::IdempotencyKeyReused)), "{other:?}");
    });
}

/// A create retried after a crash lost its remembered answer (the object was journaled, the
/// answer was not): the ids derived from the request's key find the object made the first time.
#[test]
fn a_create_retried_without_its_answer_finds_what_the_first_made() {
    use leasehold_engine::model::{ConsumerKind, Credit, Dimension, Enforcement, LicenseeKind};
    use leasehold_engine::{LicenseKeyRequest, NewConsumer, NewLicense, NewLicensee, NewProduct};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    rt.block_on(async {
        let journal = Arc::new(MemoryJournal::new());
        let clock = Arc::new(ManualClock::starting_at(Timestamp::from_secs(1_790_000_000)));
        let engine = common::engine_on(Arc::clone(&journal) as _, Arc::clone(&clock));
        let key = |name: &str| Idempotency::of(b"admin", name, 0, &[b"request"]);

        let new_licensee = || NewLicensee { name: "Acme".into(), kind: LicenseeKind::Organization, external_id: None };
        let licensee = engine.create_licensee_once(&key("l"), new_licensee()).await.unwrap();
        assert_eq!(engine.create_licensee_once(&key("l"), new_licensee()).await.unwrap(), licensee);
        let new_consumer = || NewConsumer {
            name: "ci".into(),
            kind: ConsumerKind::Device,
            licensees: vec![licensee.id],
            email: None,
            external_id: None,
        };
        let (consumer, api_key) = engine.create_consumer_once(&key("c"), new_consumer()).await.unwrap();
        assert_eq!(
            engine.create_consumer_once(&key("c"), new_consumer()).await.unwrap(),
            (consumer.clone(), api_key.clone())
        );
        assert_eq!(engine.authenticate(&api_key), Some(consumer.id));
        let rotated = engine.rotate_api_key_once(&key("r"), consumer.id).await.unwrap();
        assert_eq!(engine.rotate_api_key_once(&key("r"), consumer.id).await.unwrap(), rotated);
        assert_eq!((engine.authenticate(&rotated), engine.authenticate(&api_key)), (Some(consumer.id), None));

        let new_product = || NewProduct { name: PRODUCT.into(), features: vec![], tiers: vec![] };
        let product = engine.create_product_once(&key("p"), new_product()).await.unwrap();
        assert_eq!(engine.create_product_once(&key("p"), new_product()).await.unwrap(), product);
        let new_license = || {
            let credit = Credit { dimension: Dimension::Seats, qty: 2, enforcement: Enforcement::Enforced };
            let mut new = NewLicense::new(licensee.id, PRODUCT, credit);
            new.license_key = LicenseKeyRequest::Generate;
            new
        };
        let license = engine.create_license_once(&key("lic"), new_license()).await.unwrap();
        let granted = engine.consume(ConsumeRequest::new(consumer.id, PRODUCT)).await.unwrap();
        assert!(matches!(granted, Decision::Granted(_)));
        let again = engine.create_license_once(&key("lic"), new_license()).await.unwrap();
        assert_eq!(again, license, "the same license, its key included");
        assert_eq!(engine.leases(license.id).await.unwrap().len(), 1, "its state was not replaced");
        let other = engine.create_license_once(&key("lic-2"), new_license()).await.unwrap();
        assert_ne!(other.id, license.id, "another key makes another license");

        let replayed = Recovered::from_entries(&journal.entries());
        assert_eq!(replayed.directory.licensees().count(), 1);
        assert_eq!(replayed.directory.consumers().count(), 1);
        assert_eq!(replayed.directory.licenses().count(), 2);
    });
}

/// A client sending a fresh key with every checkout: the license remembers only the newest
/// [`MAX_IDEMPOTENT_GRANTS`] keys, in memory and in the journal's replay alike.
#[test]
fn a_license_remembers_a_bounded_number_of_keys() {
    use leasehold_engine::decide::MAX_IDEMPOTENT_GRANTS;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    rt.block_on(async {
        let journal = Arc::new(MemoryJournal::new());
        let clock = Arc::new(ManualClock::starting_at(Timestamp::from_secs(1_790_000_000)));
        let engine = common::engine_on(Arc::clone(&journal) as _, Arc::clone(&clock));
        let (license, consumer) = common::seat_license(&engine, PRODUCT, 1).await;
        let checkout = |n: usize| {
            let mut req = ConsumeRequest::new(consumer, PRODUCT).on_hardware("hw-0".to_owned());
            req.idempotency = Some(Idempotency::of(b"consumer", &format!("key-{n}"), 0, &[b"hw-0"]));
            req
        };
        let mut first = None;
        for n in 0..=MAX_IDEMPOTENT_GRANTS {
            let granted = engine.consume(checkout(n)).await.expect("an answer");
            let Decision::Granted(grant) = granted else { panic!("the session's seat: {granted:?}") };
            first.get_or_insert(grant.lease.id);
        }
        let replayed = Recovered::from_entries(&journal.entries());
        let (state, _) = replayed.licenses.get(&license).expect("the license");
        let remembered: Vec<_> = state.idempotent_grants().map(|g| g.lease.id).collect();
        assert_eq!(remembered.len(), MAX_IDEMPOTENT_GRANTS);
        assert!(!remembered.contains(&first.expect("a first grant")), "the oldest key is forgotten first");
    });
}
