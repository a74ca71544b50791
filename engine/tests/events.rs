//! Events of a license's own life through the real engine (SPEC section 11): `license.expired`
//! once per end that passes, by the system, durable with the license (a replay of the journal
//! records nothing twice), again after the end is moved and passes.

mod common;

use leasehold_engine::events::{ActorKind, EventQuery};
use leasehold_engine::journal::{Journal, MemoryJournal};
use leasehold_engine::replay::Recovered;
use leasehold_engine::time::Timestamp;
use leasehold_engine::{Engine, LicensePatch, ManualClock};
use std::sync::Arc;

fn expiries(journal: &MemoryJournal) -> Vec<(String, ActorKind)> {
    let query =
        EventQuery { after: None, event_type: Some("license.expired".into()), subject: None, within: None, limit: 100 };
    let page = journal.events(&query).expect("events");
    page.items.into_iter().map(|e| (e.event.subject.id, e.event.actor.kind)).collect()
}

#[test]
fn an_end_that_passes_is_recorded_once_and_again_after_it_moves() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    rt.block_on(async {
        let journal = Arc::new(MemoryJournal::new());
        let clock = Arc::new(ManualClock::starting_at(Timestamp::from_secs(1_790_000_000)));
        let engine = common::engine_on(Arc::clone(&journal) as _, Arc::clone(&clock));
        let (license, _) = common::seat_license(&engine, "Ending", 1).await;
        let end = |s| LicensePatch { valid_until: Some(Some(Timestamp::from_secs(s))), ..LicensePatch::default() };
        engine.patch_license(license, end(1_790_000_010)).await.expect("an end");

        assert_eq!(engine.record_expiries().await.unwrap(), 0, "not yet");
        clock.advance_secs(10);
        assert_eq!(engine.record_expiries().await.unwrap(), 1);
        assert_eq!(engine.record_expiries().await.unwrap(), 0, "recorded once");
        assert_eq!(expiries(&journal), [(license.to_string(), ActorKind::System)]);

        // A restart from the journal knows the end was recorded.
        let recovered = Recovered::from_entries(&journal.entries());
        let restarted: Engine = Engine::builder()
            .journal(Arc::clone(&journal) as _)
            .clock(Arc::clone(&clock) as _)
            .recovered(recovered)
            .workers(1)
            .build()
            .expect("an engine");
        assert_eq!(restarted.record_expiries().await.unwrap(), 0);

        // Extended, it expires again at its new end.
        restarted.patch_license(license, end(1_790_000_100)).await.expect("a later end");
        assert_eq!(restarted.record_expiries().await.unwrap(), 0);
        clock.advance_secs(100);
        assert_eq!(restarted.record_expiries().await.unwrap(), 1);
        assert_eq!(expiries(&journal).len(), 2);
    });
}
