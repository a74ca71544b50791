//! A real engine on the sled journal: what it granted is still there after a restart, with the
//! same lease ids and expiries, and seats stay counted.

mod common;

use common::{live_leases, open_engine, runtime, seat_license, PRODUCT, START};
use leasehold_engine::{ConsumeRequest, Decision, ErrorCode, ManualClock, ReleaseRequest, RenewRequest};
use leasehold_persistence::{DurabilityMode, JournalConfig};

fn granted<T>(decision: Result<Decision<T>, leasehold_engine::EngineError>) -> T {
    match decision {
        Ok(Decision::Granted(t)) => t,
        Ok(Decision::Denied(d)) => panic!("denied: {d:?}"),
        Err(e) => panic!("engine error: {e}"),
    }
}

#[test]
fn leases_survive_a_restart_with_the_same_ids_and_expiries() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let clock = ManualClock::starting_at(START);
    let rt = runtime();
    let (fixture, before) = {
        let (journal, engine) = open_engine(dir.path(), JournalConfig::default(), clock.clone());
        let before = rt.block_on(async {
            let fixture = seat_license(&engine, 3).await;
            let consume = |hw: &str| engine.consume(ConsumeRequest::new(fixture.consumer, PRODUCT).on_hardware(hw));
            let a = granted(consume("hw-a").await).lease;
            let b = granted(consume("hw-b").await).lease;
            clock.advance_secs(60);
            let c = granted(consume("hw-c").await).lease;
            assert!(matches!(consume("hw-d").await, Ok(Decision::Denied(_))), "a fourth seat was granted");
            granted(engine.release(ReleaseRequest::new(fixture.consumer, a.id)).await);
            let renewed = granted(engine.renew(RenewRequest::new(fixture.consumer, b.id)).await).lease;
            assert_ne!(renewed.id, b.id);
            let mut expected = vec![(renewed.id, renewed.expires_at), (c.id, c.expires_at)];
            expected.sort();
            assert_eq!(live_leases(&engine, fixture.license).await, expected);
            (fixture, expected)
        });
        drop(engine);
        drop(journal);
        before
    };

    let (journal, engine) = open_engine(dir.path(), JournalConfig::default(), clock.clone());
    assert!(journal.recovery_report().replayed_entries > 0);
    rt.block_on(async {
        assert_eq!(live_leases(&engine, fixture.license).await, before, "live leases changed across the restart");
        let usage = engine.usage(fixture.license).await.unwrap_or_else(|e| panic!("usage: {e}"));
        assert_eq!(usage.seats_in_use, 2);
        // The released seat is free again, and only that one.
        let d = granted(engine.consume(ConsumeRequest::new(fixture.consumer, PRODUCT).on_hardware("hw-d")).await);
        assert!(!before.iter().any(|(id, _)| *id == d.lease.id));
        match engine.consume(ConsumeRequest::new(fixture.consumer, PRODUCT).on_hardware("hw-e")).await {
            Ok(Decision::Denied(denial)) => assert_eq!(denial.code, ErrorCode::MaxConcurrentSessionsExceed),
            other => panic!("a fourth seat after the restart: {other:?}"),
        }
    });
}

#[test]
fn leases_that_expired_while_down_are_gone_after_the_restart() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let clock = ManualClock::starting_at(START);
    let rt = runtime();
    let fixture = {
        let (_journal, engine) = open_engine(dir.path(), JournalConfig::default(), clock.clone());
        rt.block_on(async {
            let fixture = seat_license(&engine, 2).await;
            granted(engine.consume(ConsumeRequest::new(fixture.consumer, PRODUCT).on_hardware("hw-a")).await);
            fixture
        })
    };
    // The default online lease lasts two hours.
    clock.advance_secs(3 * 3600);
    let (_journal, engine) = open_engine(dir.path(), JournalConfig::default(), clock);
    rt.block_on(async {
        assert!(live_leases(&engine, fixture.license).await.is_empty());
        assert_eq!(engine.usage(fixture.license).await.map(|u| u.seats_in_use).ok(), Some(0));
    });
}

#[test]
fn every_durability_mode_keeps_what_was_acknowledged_after_a_clean_close() {
    for durability in [DurabilityMode::Sync, DurabilityMode::Batched { every_ms: 5 }, DurabilityMode::None] {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let clock = ManualClock::starting_at(START);
        let rt = runtime();
        let config = JournalConfig::with_durability(durability);
        let (fixture, before) = {
            let (_journal, engine) = open_engine(dir.path(), config.clone(), clock.clone());
            rt.block_on(async {
                let fixture = seat_license(&engine, 5).await;
                for hw in ["a", "b", "c"] {
                    granted(engine.consume(ConsumeRequest::new(fixture.consumer, PRODUCT).on_hardware(hw)).await);
                }
                (fixture, live_leases(&engine, fixture.license).await)
            })
        };
        let (_journal, engine) = open_engine(dir.path(), config, clock);
        let after = rt.block_on(live_leases(&engine, fixture.license));
        assert_eq!(after, before, "under {durability}");
    }
}

#[test]
fn durability_modes_parse_from_the_command_line_names() {
    assert_eq!("sync".parse(), Ok(DurabilityMode::Sync));
    assert_eq!("none".parse(), Ok(DurabilityMode::None));
    assert_eq!("batched".parse(), Ok(DurabilityMode::Batched { every_ms: 10 }));
    assert_eq!("batched:250".parse(), Ok(DurabilityMode::Batched { every_ms: 250 }));
    assert!("batched:0".parse::<DurabilityMode>().is_err());
    assert!("fast".parse::<DurabilityMode>().is_err());
}
