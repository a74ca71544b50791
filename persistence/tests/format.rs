//! The on-disk format: every kind of journal entry survives a log record, damage anywhere in a
//! record is detected, and `LicenseStatus` keeps its JSON shape while being bincode-friendly.

mod common;

use common::workload_entries;
use leasehold_engine::model::LicenseStatus;
use leasehold_engine::Timestamp;
use leasehold_persistence::format::{decode_batch, encode_entry, seal_batch};
use leasehold_persistence::FormatError;

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
