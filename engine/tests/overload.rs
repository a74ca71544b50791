//! `overloaded`: when a license's bounded mailbox is full, the next request is refused at once
//! with `EngineError::Overloaded` (the `overloaded` code) and changes nothing.
//!
//! Deterministic: a journal whose appends wait at a gate holds the license's actor inside a
//! consume, so the requests behind it stay in the mailbox until the test opens the gate.

use leasehold_engine::journal::{Durability, Journal, JournalEntry, MemoryJournal};
use leasehold_engine::model::{ConsumerKind, Credit, Dimension, Enforcement, LicenseeKind};
use leasehold_engine::{
    ConsumeRequest, Decision, Engine, EngineError, ErrorCode, NewConsumer, NewLicense, NewLicensee, NewProduct,
};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Appends to memory, but only while the gate is open; records when an append is waiting.
#[derive(Default)]
struct GatedJournal {
    inner: MemoryJournal,
    gate: Mutex<Gate>,
    changed: Condvar,
}

#[derive(Default)]
struct Gate {
    closed: bool,
    waiting: usize,
}

impl GatedJournal {
    fn set_closed(&self, closed: bool) {
        self.gate.lock().unwrap_or_else(|p| p.into_inner()).closed = closed;
        self.changed.notify_all();
    }

    fn wait_until_an_append_waits(&self) {
        let mut gate = self.gate.lock().unwrap();
        while gate.waiting == 0 {
            gate = self.changed.wait(gate).unwrap();
        }
    }
}

impl Journal for GatedJournal {
    fn append(&self, entry: &JournalEntry) -> Durability {
        let mut gate = self.gate.lock().unwrap();
        gate.waiting += 1;
        self.changed.notify_all();
        while gate.closed {
            gate = self.changed.wait(gate).unwrap();
        }
        gate.waiting -= 1;
        drop(gate);
        self.inner.append(entry)
    }
}

/// Opens the gate when dropped, so that a failing assertion does not leave the actor (and the
/// engine's shutdown, which joins it) waiting for ever.
struct OpenOnDrop(Arc<GatedJournal>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.set_closed(false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mailbox_answers_overloaded_and_changes_nothing() {
    let journal = Arc::new(GatedJournal::default());
    let engine = Engine::builder().journal(journal.clone()).workers(1).mailbox_capacity(1).build().unwrap();
    let acme = engine
        .create_licensee(NewLicensee { name: "Acme".into(), kind: LicenseeKind::Organization, external_id: None })
        .await
        .unwrap();
    engine.create_product(NewProduct { name: "ThreeDee".into(), features: vec![], tiers: vec![] }).await.unwrap();
    let credit = Credit { dimension: Dimension::Seats, qty: 5, enforcement: Enforcement::Enforced };
    let license = engine.create_license(NewLicense::new(acme.id, "ThreeDee", credit)).await.unwrap();
    let mut consumers = Vec::new();
    for name in ["ada", "brian", "chen"] {
        let new = NewConsumer {
            name: name.into(),
            kind: ConsumerKind::User,
            licensees: vec![acme.id],
            email: None,
            external_id: None,
        };
        consumers.push(engine.create_consumer(new).await.unwrap().0.id);
    }

    journal.set_closed(true);
    let _open_on_failure = OpenOnDrop(journal.clone());
    // The first consume reaches the actor, which then waits at the gate inside its append.
    let first = tokio::spawn({
        let engine = engine.clone();
        let consumer = consumers[0];
        async move { engine.consume(ConsumeRequest::new(consumer, "ThreeDee")).await }
    });
    journal.wait_until_an_append_waits();
    // The second takes the mailbox's one place: polling it once sends it (a zero timeout polls
    // the future once before it looks at the clock). The third then finds the mailbox full.
    let mut second = Box::pin(engine.consume(ConsumeRequest::new(consumers[1], "ThreeDee")));
    assert!(tokio::time::timeout(Duration::ZERO, &mut second).await.is_err(), "answered behind a closed gate");
    // (The timeout only keeps a broken bound from hanging the suite: a queued request would
    // wait behind the closed gate for ever.)
    let third =
        tokio::time::timeout(Duration::from_secs(30), engine.check(ConsumeRequest::new(consumers[2], "ThreeDee")))
            .await
            .expect("the third request must be refused at once, not queued");
    let third = third.expect_err("the third request must be refused, not answered");
    assert_eq!(third, EngineError::Overloaded);
    assert_eq!(ErrorCode::Overloaded.as_str(), "overloaded");

    journal.set_closed(false);
    assert!(matches!(first.await.unwrap(), Ok(Decision::Granted(_))));
    assert!(matches!(second.await, Ok(Decision::Granted(_))));
    let usage = engine.usage(license.id).await.unwrap();
    assert_eq!(usage.live_leases, 2, "the refused request must not have taken a seat");
}
