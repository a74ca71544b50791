//! The on-disk format: every kind of journal entry survives a log record, damage anywhere in a
//! record is detected, and `LicenseStatus` keeps its JSON shape while being bincode-friendly.

mod common;

use common::workload_entries;
use leasehold_engine::model::LicenseStatus;
use leasehold_engine::Timestamp;
use leasehold_persistence::format::{decode_batch, encode_entry, seal_batch};
use leasehold_persistence::{FormatError, JournalConfig, SledJournal};

#[test]
fn every_entry_of_a_workload_survives_a_log_record() {
    let entries = workload_entries(5, 300);
    let encoded: Vec<Vec<u8>> =
        entries.iter().map(|e| encode_entry(e).unwrap_or_else(|err| panic!("encode {e:?}: {err}"))).collect();
    let record = seal_batch(42, &encoded).unwrap_or_else(|| panic!("record too large"));
    assert_eq!(decode_batch(42, &record), Ok(entries));
}

#[test]
fn damage_anywhere_in_a_record_is_detected() {
    let entries = workload_entries(6, 20);
    let encoded: Vec<Vec<u8>> = entries.iter().filter_map(|e| encode_entry(e).ok()).collect();
    let record = seal_batch(7, &encoded).unwrap_or_else(|| panic!("record too large"));
    for i in 0..record.len() {
        let mut damaged = record.clone();
        damaged[i] ^= 0x10;
        assert!(decode_batch(7, &damaged).is_err(), "a flipped bit at byte {i} went unnoticed");
    }
    for len in 0..record.len() {
        assert!(decode_batch(7, &record[..len]).is_err(), "a record cut to {len} bytes went unnoticed");
    }
    assert!(matches!(decode_batch(8, &record), Err(FormatError::Checksum { .. })), "a moved record went unnoticed");
}

#[test]
fn license_status_keeps_its_json_shape() {
    let revoked = LicenseStatus::Revoked { reason: "unpaid".into(), at: Timestamp::from_millis(5) };
    let json = serde_json::to_value(&revoked).unwrap_or_else(|e| panic!("json: {e}"));
    assert_eq!(json, serde_json::json!({"state": "revoked", "reason": "unpaid", "at": 5}));
    assert_eq!(serde_json::to_value(LicenseStatus::Active).ok(), Some(serde_json::json!({"state": "active"})));
    assert_eq!(serde_json::from_value::<LicenseStatus>(json).ok(), Some(revoked));
}

/// A data directory written by the build before format 3 (format 2: a snapshot at entry 94 and
/// log records after it) of [`common::workload_entries`]`(11, 300)`: this build opens it and
/// restores exactly the state that replaying the same workload gives, the fields format 3 added
/// taking their defaults, and but for the last two bytes of each license and lease id (random
/// then; today they carry the licensee's partition bits).
#[test]
fn a_data_directory_of_format_2_still_opens() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/format-2");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    copy_dir(&fixture, dir.path());
    let config = JournalConfig { snapshot_every_entries: None, ..JournalConfig::default() };
    let (journal, recovered) = SledJournal::open(dir.path(), config).unwrap_or_else(|e| panic!("open: {e}"));
    assert_eq!(journal.recovery_report().snapshot_seq, Some(94), "the format-2 snapshot was not used");
    let entries = common::workload_entries(11, 300);
    let restored = common::without_fields_older_formats_lack(recovered.to_snapshot());
    let expected = common::without_fields_older_formats_lack(common::replayed(&entries));
    assert_eq!(without_lease_route_bits(&restored), without_lease_route_bits(&expected));
    journal.close();
}

/// `snapshot` as text, with the last two bytes of every license and lease id blanked.
fn without_lease_route_bits(snapshot: &leasehold_engine::replay::RecoveredSnapshot) -> String {
    let text = format!("{snapshot:?}");
    let mut blanked = String::with_capacity(text.len());
    let mut rest = text.as_str();
    // An id prints as `LeaseId(` or `LicenseId(` and 36 characters of UUID, its route bits the
    // last four.
    let next = |text: &str| {
        ["LeaseId(", "LicenseId("].iter().filter_map(|marker| text.find(marker).map(|at| at + marker.len())).min()
    };
    while let Some(uuid_start) = next(rest) {
        let uuid_end = uuid_start + 36;
        blanked.push_str(&rest[..uuid_end - 4]);
        blanked.push_str("____");
        rest = &rest[uuid_end..];
    }
    blanked.push_str(rest);
    blanked
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir: {e}"));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("read_dir: {e}")) {
        let entry = entry.unwrap_or_else(|e| panic!("entry: {e}"));
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap_or_else(|e| panic!("copy: {e}"));
        }
    }
}
