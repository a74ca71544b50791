//! A journal whose disk fails: changes are refused at once while it cannot write, a license whose
//! change was lost answers nothing until it continues from what is durable (no phantom seat),
//! licenses untouched by the failure keep answering checks, and the journal writes again by
//! itself, without a restart, losing nothing it acknowledged.

mod common;

use common::{live_leases, open_engine, runtime, seat_license, PRODUCT, START};
use leasehold_engine::journal::JournalError;
use leasehold_engine::model::{
    ConsumerKind, Credit, Dimension, Enforcement, LicenseModel, LicenseeKind, SessionAnchor,
};
use leasehold_engine::{
    ConsumeRequest, ConsumerId, Decision, Engine, EngineError, Grant, ManualClock, NewConsumer, NewLicense,
    NewLicensee, ReleaseRequest,
};
use leasehold_persistence::{JournalConfig, SledJournal};
use std::io::ErrorKind;
use std::time::{Duration, Instant};

async fn seat(engine: &Engine, consumer: ConsumerId, hw: &str) -> Result<Decision<Grant>, EngineError> {
    engine.consume(ConsumeRequest::new(consumer, PRODUCT).on_hardware(hw)).await
}

fn is_storage_failure(answer: &Result<Decision<Grant>, EngineError>) -> bool {
    matches!(answer, Err(EngineError::Journal(e)) if e.is_storage_failure())
}

/// Waits (up to 30 s) until the journal takes changes again.
fn until_writable(engine: &Engine) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = engine.storage() {
        assert!(Instant::now() < deadline, "the journal did not recover in 30 s: {e}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_full_disk_refuses_changes_until_the_journal_reopens_and_leaves_no_phantom_seat() {
    failed_flush_refuses_changes_until_the_journal_reopens(ErrorKind::StorageFull);
}

#[test]
fn an_io_error_on_fsync_refuses_changes_until_the_journal_reopens_and_leaves_no_phantom_seat() {
    failed_flush_refuses_changes_until_the_journal_reopens(ErrorKind::Other);
}

#[test]
fn a_read_only_filesystem_refuses_changes_until_the_journal_reopens_and_leaves_no_phantom_seat() {
    failed_flush_refuses_changes_until_the_journal_reopens(ErrorKind::ReadOnlyFilesystem);
}

fn failed_flush_refuses_changes_until_the_journal_reopens(kind: ErrorKind) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let rt = runtime();
    let (journal, engine) = open_engine(dir.path(), JournalConfig::default(), ManualClock::starting_at(START));
    let (hot, other) = rt.block_on(async {
        let hot = seat_license(&engine, 3).await;
        // A second license, of another licensee, that the failure never touches.
        let licensee = NewLicensee { name: "Globex".into(), kind: LicenseeKind::Organization, external_id: None };
        let licensee = engine.create_licensee(licensee).await.expect("a licensee");
        let consumer = NewConsumer {
            name: "cad".into(),
            kind: ConsumerKind::Device,
            licensees: vec![licensee.id],
            email: None,
            external_id: None,
        };
        let (consumer, _) = engine.create_consumer(consumer).await.expect("a consumer");
        let credit = Credit { dimension: Dimension::Seats, qty: 2, enforcement: Enforcement::Enforced };
        let mut new = NewLicense::new(licensee.id, PRODUCT, credit);
        new.model = LicenseModel { session_anchors: vec![SessionAnchor::Hw], ..LicenseModel::default() };
        engine.create_license(new).await.expect("a license");
        (hot, consumer.id)
    });

    rt.block_on(async {
        let acknowledged = seat(&engine, hot.consumer, "a").await.unwrap().granted().expect("a seat").lease.id;

        // The disk fails, and goes on failing for a while.
        journal.inject_open_failures(true);
        journal.inject_flush_failure(std::io::Error::new(kind, format!("{kind} (injected)")));
        let failed = seat(&engine, hot.consumer, "b").await;
        assert!(is_storage_failure(&failed), "the failed write answered {failed:?}");
        assert!(engine.storage().is_err(), "the journal says it writes");

        // The license whose change was lost answers nothing, not even checks or releases.
        let lost = seat(&engine, hot.consumer, "c").await;
        assert!(matches!(lost, Err(EngineError::Journal(JournalError::ChangeLost(_)))), "{lost:?}");
        let check = engine.check(ConsumeRequest::new(hot.consumer, PRODUCT).on_hardware("c")).await;
        assert!(matches!(check, Err(EngineError::Journal(JournalError::ChangeLost(_)))), "{check:?}");
        let release = engine.release(ReleaseRequest::new(hot.consumer, acknowledged)).await;
        assert!(matches!(release, Err(EngineError::Journal(JournalError::ChangeLost(_)))), "{release:?}");

        // The untouched license answers checks, and refuses changes at once.
        let check = engine.check(ConsumeRequest::new(other, PRODUCT).on_hardware("x")).await;
        assert!(check.unwrap().granted().is_some(), "a check on an untouched license failed");
        let change = seat(&engine, other, "x").await;
        assert!(is_storage_failure(&change), "a change was not refused at once: {change:?}");
    });

    // The disk works again: the journal reopens by itself.
    journal.inject_open_failures(false);
    until_writable(&engine);
    rt.block_on(async {
        // Three seats: "a" (acknowledged) and two more. A phantom "b" would leave room for one.
        for hw in ["c", "d"] {
            let granted = seat(&engine, hot.consumer, hw).await.unwrap();
            assert!(granted.granted().is_some(), "seat {hw} refused: a phantom holds it");
        }
        let full = seat(&engine, hot.consumer, "e").await.unwrap();
        assert!(full.granted().is_none(), "a fourth seat was granted");
        assert!(seat(&engine, other, "x").await.unwrap().granted().is_some());
    });
    let live: Vec<_> = rt.block_on(live_leases(&engine, hot.license)).into_iter().map(|(id, _)| id).collect();
    assert_eq!(live.len(), 3);

    // Nothing acknowledged is lost, and what failed never became durable.
    drop(engine);
    journal.close();
    drop(journal);
    let (_, recovered) =
        SledJournal::open(dir.path(), JournalConfig::default()).unwrap_or_else(|e| panic!("reopen: {e}"));
    let (state, _) = &recovered.licenses[&hot.license];
    let mut durable: Vec<_> = state.leases().map(|l| l.id).collect();
    durable.sort();
    let mut expected = live.clone();
    expected.sort();
    assert_eq!(durable, expected, "the durable leases are not the acknowledged ones");
    assert!(state.leases().all(|l| l.anchors.hw.as_deref() != Some("b")), "the failed seat became durable");
}

#[test]
fn a_hanging_flush_is_answered_503_within_the_timeout_and_memory_follows_what_the_disk_kept() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let rt = runtime();
    let config = JournalConfig { flush_timeout: Duration::from_millis(200), ..JournalConfig::default() };
    let (journal, engine) = open_engine(dir.path(), config.clone(), ManualClock::starting_at(START));
    let hot = rt.block_on(seat_license(&engine, 3));
    rt.block_on(async {
        let acknowledged = seat(&engine, hot.consumer, "a").await.unwrap();
        assert!(acknowledged.granted().is_some());

        // The disk hangs for two seconds on the next flush.
        journal.inject_slow_flushes(Duration::from_secs(2));
        let started = Instant::now();
        let hung = seat(&engine, hot.consumer, "b").await;
        assert!(is_storage_failure(&hung), "a hanging flush answered {hung:?}");
        assert!(started.elapsed() < Duration::from_millis(1_500), "the answer waited for the disk");
        assert!(engine.storage().is_err(), "the journal says it writes while a flush hangs");
        let lost = seat(&engine, hot.consumer, "c").await;
        assert!(matches!(lost, Err(EngineError::Journal(JournalError::ChangeLost(_)))), "{lost:?}");
    });

    // Once the flush returns, the journal reopens; the license continues from what the disk kept
    // (whether "b" made it there is the disk's to say).
    until_writable(&engine);
    let live: Vec<_> = rt.block_on(live_leases(&engine, hot.license)).into_iter().map(|(id, _)| id).collect();
    drop(engine);
    journal.close();
    drop(journal);
    let (_, recovered) = SledJournal::open(dir.path(), config).unwrap_or_else(|e| panic!("reopen: {e}"));
    let (state, _) = &recovered.licenses[&hot.license];
    let mut durable: Vec<_> = state.leases().map(|l| l.id).collect();
    durable.sort();
    assert_eq!(durable, live, "memory and disk disagree after a hanging flush");
    assert!(state.leases().any(|l| l.anchors.hw.as_deref() == Some("a")), "the acknowledged lease is lost");
}
