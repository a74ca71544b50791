//! The JSON shapes of the Scale API, as the `tenduke-scale` SDK's models read them: `License`,
//! `LicenseConsumer` (used for licensees and consumers alike), `LicenseConsumptionClientBinding`
//! (a live lease) and `LicenseReleaseResult`. Field names are the SDK's `api_name`s; enums are
//! written as the SDK's enum member names (`SEATS`, `ENFORCED`, `ORGANIZATION`, ...).

use leasehold_engine::answer::Released;
use leasehold_engine::claims::client_claims;
use leasehold_engine::directory::key_holder;
use leasehold_engine::model::{Consumer, ConsumerKind, Dimension, Lease, License, Licensee, LicenseeKind};
use leasehold_engine::{ConsumerId, Denial, Timestamp};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

/// `ts` as an RFC 3339 UTC time, always with milliseconds, so that times sort as text.
pub fn time(ts: Timestamp) -> String {
    let nanos = i128::from(ts.as_millis()) * 1_000_000;
    match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => ts.as_millis().to_string(),
    }
}

/// A licensee as a `LicenseConsumer` (the SDK's `describe_licensees` answer).
pub fn licensee(l: &Licensee) -> Value {
    let kind = match l.kind {
        LicenseeKind::Organization => "ORGANIZATION",
        LicenseeKind::Person => "PERSON",
    };
    json!({"id": l.id, "name": l.name, "displayName": l.name, "type": kind})
}

/// A consumer as a `LicenseConsumer`. The SDK's `ConsumerType` has no device member, so a
/// device is `UNDEFINED` (which behaves like every type but `PERSON`).
pub fn consumer(c: &Consumer) -> Value {
    let kind = match c.kind {
        ConsumerKind::User => "PERSON",
        ConsumerKind::Device => "UNDEFINED",
    };
    json!({"id": c.id, "name": c.name, "displayName": c.name, "type": kind, "email": c.email})
}

/// The holder of `license`'s key as a `LicenseConsumer`.
pub fn key_consumer(license: &License) -> Value {
    let name = format!("license key of {}", license.product_name);
    json!({"id": key_holder(license.id), "name": name, "displayName": name, "type": "UNDEFINED"})
}

/// A license as the SDK's `License`. A metered license's `qty` is -1, as in Scale: its quantity
/// is no limit. The key is shown only to callers that already hold it (`with_key`).
pub fn license(l: &License, with_key: bool) -> Value {
    let range = l.model.version_range.as_ref();
    let display_name = match &l.tier {
        Some(tier) => format!("{} {tier}", l.product_name),
        None => l.product_name.to_string(),
    };
    let qty = if l.credit.is_enforced() { json!(l.credit.qty) } else { json!(-1) };
    let features: Vec<Value> = l.features.iter().map(|f| json!({"feature": f})).collect();
    let mut out = json!({
        "id": l.id,
        "productName": l.product_name,
        "displayName": display_name,
        "qtyDimension": l.credit.dimension.as_str(),
        "qtyEnforcementType": l.credit.enforcement.as_str(),
        "qty": qty,
        "validFrom": time(l.valid_from),
        "validUntil": l.valid_until.map(time),
        "features": features,
        "featureNames": l.features.join(","),
        "allowedVersionLowerBound": range.and_then(|r| r.min.clone()),
        "allowedVersionUpperBound": range.and_then(|r| r.max.clone()),
    });
    if let (true, Some(key)) = (with_key, &l.license_key) {
        out["licenseKey"] = json!({"licenseKey": key});
    }
    out
}

/// A live lease as a `LicenseConsumptionClientBinding`, held by `holder` (a `LicenseConsumer`).
/// Its id is the current lease id (a heartbeat rotates both).
pub fn binding(lease: &Lease, terms: &License, holder: Value) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), json!(lease.id));
    out.insert("leaseId".into(), json!(lease.id));
    out.extend(client_claims(&lease.anchors));
    out.insert("consumeDurationGrantedAt".into(), json!(time(lease.granted_at)));
    out.insert("validFrom".into(), json!(time(lease.issued_at)));
    out.insert("validUntil".into(), json!(time(lease.expires_at)));
    let renewed = lease.issued_at > lease.granted_at;
    out.insert("lastHeartbeat".into(), json!(renewed.then(|| time(lease.issued_at))));
    let seats = terms.credit.dimension == Dimension::Seats;
    out.insert("qtyPreAlloc".into(), json!(if seats { 0 } else { lease.qty_prealloc }));
    out.insert("verifiedQty".into(), json!(if seats { 1 } else { lease.qty_verified }));
    out.insert("locked".into(), json!(terms.model.max_hardware.is_some()));
    out.insert("license".into(), license(terms, false));
    out.insert("licenseConsumer".into(), holder);
    Value::Object(out)
}

/// A `LicenseReleaseResult` for a completed release of a lease of `terms` by `consumer`. A seat
/// lease reports one seat used, as its tokens do (`qtyVerified`).
pub fn released(done: &Released, terms: Option<&License>, consumer: ConsumerId) -> Value {
    let dimension = terms.map(|t| t.credit.dimension);
    let used = if dimension == Some(Dimension::Seats) { 1 } else { done.used_qty };
    let mut out = json!({
        "released": true,
        "releasedLeaseId": done.lease_id,
        "releasedLicenseId": done.license,
        "finalUsedQty": used,
        "licenseConsumerId": consumer,
    });
    if let Some(terms) = terms {
        out["productName"] = json!(terms.product_name);
        out["qtyDimension"] = json!(terms.credit.dimension.as_str());
    }
    if let Some(remaining) = done.remaining_qty {
        out["remainingQty"] = json!(remaining);
    }
    out
}

/// A `LicenseReleaseResult` for a release that was refused.
pub fn not_released(denial: &Denial, consumer: ConsumerId) -> Value {
    json!({
        "released": false,
        "errorCode": denial.code.as_str(),
        "errorDescription": denial.message,
        "licenseConsumerId": consumer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_always_carry_milliseconds_so_they_sort_as_text() {
        assert_eq!(time(Timestamp::from_secs(1_767_225_600)), "2026-01-01T00:00:00.000Z");
        assert_eq!(time(Timestamp::from_millis(1_767_225_600_500)), "2026-01-01T00:00:00.500Z");
        assert!(time(Timestamp::from_secs(1)) < time(Timestamp::from_millis(1_001)));
    }
}
