//! The JSON shapes of the admin API (SPEC section 9): what requests carry in, what answers
//! carry out, and the RFC 3339 times they use (the engine counts milliseconds since the epoch).
//!
//! Request shapes refuse unknown fields, so a misspelt field is a 400 that names it rather than
//! a default silently taken.

use crate::http::reply::ApiError;
use leasehold_engine::actors::license::Machine;
use leasehold_engine::decide::Usage;
use leasehold_engine::events::StoredEvent;
use leasehold_engine::model::{
    Consumer, ConsumerKind, Credential, Credit, Dimension, Enforcement, Entitlement, Feature, FeatureOverrides, Group,
    Lease, License, LicenseModel, LicenseStatus, Licensee, LicenseeKind, Product, Tier,
};
use leasehold_engine::{
    ConsumerId, ConsumerPatch, EntitlementId, LicenseId, LicenseKeyRequest, LicensePatch, LicenseeId, LicenseePatch,
    NewConsumer, NewLicense, NewLicensee, NewProduct, ProductPatch, Timestamp,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `ts` as an RFC 3339 string in UTC (milliseconds kept when there are any).
pub fn rfc3339(ts: Timestamp) -> String {
    let nanos = i128::from(ts.as_millis()) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ts.as_millis().to_string())
}

/// The time an RFC 3339 string names; `field` names it in the error.
pub fn parse_rfc3339(field: &str, text: &str) -> Result<Timestamp, ApiError> {
    let bad = || ApiError::bad_request(format!("{field} must be an RFC 3339 time like 2026-01-01T00:00:00Z"));
    let time = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| bad())?;
    let ms = i64::try_from(time.unix_timestamp_nanos() / 1_000_000).map_err(|_| bad())?;
    Ok(Timestamp::from_millis(ms))
}

pub(super) fn opt_time(field: &str, text: Option<&str>) -> Result<Option<Timestamp>, ApiError> {
    text.map(|t| parse_rfc3339(field, t)).transpose()
}

/// `POST /admin/licensees`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseeIn {
    name: String,
    kind: LicenseeKind,
    #[serde(default)]
    external_id: Option<String>,
}

impl From<LicenseeIn> for NewLicensee {
    fn from(l: LicenseeIn) -> Self {
        NewLicensee { name: l.name, kind: l.kind, external_id: l.external_id }
    }
}

/// `PATCH /admin/licensees/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseePatchIn {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    external_id: Option<Option<String>>,
}

impl From<LicenseePatchIn> for LicenseePatch {
    fn from(p: LicenseePatchIn) -> Self {
        LicenseePatch { name: p.name, external_id: p.external_id }
    }
}

/// A licensee as answered.
pub fn licensee(l: &Licensee) -> Value {
    json!({"id": l.id, "name": l.name, "kind": l.kind, "external_id": l.external_id})
}

/// `POST /admin/consumers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerIn {
    name: String,
    kind: ConsumerKind,
    licensees: Vec<LicenseeId>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    external_id: Option<String>,
}

impl From<ConsumerIn> for NewConsumer {
    fn from(c: ConsumerIn) -> Self {
        NewConsumer { name: c.name, kind: c.kind, licensees: c.licensees, email: c.email, external_id: c.external_id }
    }
}

/// `PATCH /admin/consumers/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerPatchIn {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    external_id: Option<Option<String>>,
    #[serde(default)]
    licensees: Option<Vec<LicenseeId>>,
    #[serde(default)]
    disabled: Option<bool>,
}

impl From<ConsumerPatchIn> for ConsumerPatch {
    fn from(p: ConsumerPatchIn) -> Self {
        ConsumerPatch {
            name: p.name,
            email: p.email,
            external_id: p.external_id,
            licensees: p.licensees,
            disabled: p.disabled,
        }
    }
}

/// A group as answered, with its members.
pub fn group(g: &Group) -> Value {
    json!({"id": g.id, "licensee": g.licensee, "name": g.name, "kind": g.kind, "members": g.members})
}

/// An entitlement as answered, with the licenses in it.
pub fn entitlement(e: &Entitlement, licenses: &[LicenseId]) -> Value {
    json!({"id": e.id, "licensee": e.licensee, "name": e.name, "groups": e.groups, "licenses": licenses})
}

/// A credential as answered (never with its token: that is shown once, at creation).
pub fn credential(c: &Credential) -> Value {
    json!({"id": c.id, "name": c.name, "role": c.role, "licensee": c.licensee})
}

/// A consumer as answered (never with its key: that is shown once, at creation).
pub fn consumer(c: &Consumer) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "kind": c.kind,
        "licensees": c.licensees,
        "email": c.email,
        "external_id": c.external_id,
        "disabled": c.disabled,
        "identity": c.identity,
    })
}

/// `POST /admin/products`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductIn {
    name: String,
    #[serde(default)]
    features: Vec<Feature>,
    #[serde(default)]
    tiers: Vec<Tier>,
}

impl From<ProductIn> for NewProduct {
    fn from(p: ProductIn) -> Self {
        NewProduct { name: p.name, features: p.features, tiers: p.tiers }
    }
}

/// `PATCH /admin/products/{name}`: features to add, tiers to add or replace.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductPatchIn {
    #[serde(default)]
    features: Vec<Feature>,
    #[serde(default)]
    tiers: Vec<Tier>,
}

impl From<ProductPatchIn> for ProductPatch {
    fn from(p: ProductPatchIn) -> Self {
        ProductPatch { features: p.features, tiers: p.tiers }
    }
}

/// A license status as answered and filtered on.
pub fn status_name(status: &LicenseStatus) -> &'static str {
    match status {
        LicenseStatus::Active => "active",
        LicenseStatus::Deactivated => "deactivated",
        LicenseStatus::Revoked { .. } => "revoked",
    }
}

/// A product as answered.
pub fn product(p: &Product) -> Value {
    json!({"id": p.id, "name": p.name, "features": p.features, "tiers": p.tiers})
}

fn enforced() -> Enforcement {
    Enforcement::Enforced
}

fn yes() -> bool {
    true
}

/// A license's credit in a request; enforcement defaults to `ENFORCED`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditIn {
    dimension: Dimension,
    qty: u64,
    #[serde(default = "enforced")]
    enforcement: Enforcement,
}

/// `POST /admin/licenses`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseIn {
    licensee: LicenseeId,
    product: String,
    #[serde(default)]
    tier: Option<String>,
    #[serde(default)]
    credit: Option<CreditIn>,
    #[serde(default)]
    valid_from: Option<String>,
    #[serde(default)]
    valid_until: Option<String>,
    /// `true` to generate one, a string to use that one, `false` or absent for none.
    #[serde(default)]
    license_key: Option<Value>,
    #[serde(default = "yes")]
    revokes_sibling_keys: bool,
    #[serde(default)]
    properties: BTreeMap<String, String>,
    #[serde(default)]
    model: Option<Value>,
    #[serde(default)]
    entitlement: Option<EntitlementId>,
}

impl From<CreditIn> for Credit {
    fn from(c: CreditIn) -> Self {
        Credit { dimension: c.dimension, qty: c.qty, enforcement: c.enforcement }
    }
}

/// Reads a license model, refusing fields the model does not have.
pub(super) fn model(value: Option<Value>) -> Result<LicenseModel, ApiError> {
    let Some(value) = value else { return Ok(LicenseModel::default()) };
    let Value::Object(fields) = &value else { return Err(ApiError::bad_request("model must be an object")) };
    let known = serde_json::to_value(LicenseModel::default()).unwrap_or(Value::Null);
    if let Some(unknown) = fields.keys().find(|k| known.get(k.as_str()).is_none()) {
        return Err(ApiError::bad_request(format!("model has no field {unknown:?}")));
    }
    serde_json::from_value(value).map_err(|e| ApiError::bad_request(format!("invalid model: {e}")))
}

impl LicenseIn {
    /// The engine's request.
    pub fn into_new_license(self) -> Result<NewLicense, ApiError> {
        let license_key = match self.license_key {
            None | Some(Value::Null) | Some(Value::Bool(false)) => LicenseKeyRequest::None,
            Some(Value::Bool(true)) => LicenseKeyRequest::Generate,
            Some(Value::String(key)) => LicenseKeyRequest::Given(key),
            Some(_) => return Err(ApiError::bad_request("license_key is true, false or the key itself")),
        };
        Ok(NewLicense {
            licensee: self.licensee,
            product: self.product,
            tier: self.tier,
            credit: self.credit.map(Credit::from),
            valid_from: opt_time("valid_from", self.valid_from.as_deref())?,
            valid_until: opt_time("valid_until", self.valid_until.as_deref())?,
            license_key,
            revokes_sibling_keys: self.revokes_sibling_keys,
            properties: self.properties,
            model: model(self.model)?,
            entitlement: self.entitlement,
        })
    }
}

/// A present field, even when it is `null` (`Some(None)`), told apart from an absent one (`None`,
/// with `#[serde(default)]`).
pub(super) fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(field: D) -> Result<Option<T>, D::Error> {
    T::deserialize(field).map(Some)
}

/// The credit of a `PATCH`: its quantity and enforcement may change, its dimension may not.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditPatchIn {
    #[serde(default)]
    dimension: Option<Dimension>,
    #[serde(default)]
    qty: Option<u64>,
    #[serde(default)]
    enforcement: Option<Enforcement>,
}

/// `PATCH /admin/licenses/{id}`: only the fields given change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicensePatchIn {
    #[serde(default)]
    valid_from: Option<String>,
    #[serde(default, deserialize_with = "present")]
    valid_until: Option<Option<String>>,
    #[serde(default)]
    tier: Option<String>,
    #[serde(default)]
    credit: Option<CreditPatchIn>,
    #[serde(default)]
    model: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    properties: Option<BTreeMap<String, String>>,
    #[serde(default)]
    revokes_sibling_keys: Option<bool>,
    #[serde(default)]
    features: Option<FeaturesPatchIn>,
    #[serde(default, deserialize_with = "present")]
    entitlement: Option<Option<EntitlementId>>,
}

/// The per-license feature overrides of a `PATCH`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturesPatchIn {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

impl LicensePatchIn {
    /// The engine's change, given the license's `current` credit dimension (which no change may
    /// alter).
    pub fn into_patch(self, dimension: Dimension) -> Result<LicensePatch, ApiError> {
        let credit = self.credit.unwrap_or(CreditPatchIn { dimension: None, qty: None, enforcement: None });
        if credit.dimension.is_some_and(|d| d != dimension) {
            return Err(ApiError::bad_request(format!(
                "credit.dimension cannot change (the license counts {})",
                dimension.as_str()
            )));
        }
        let valid_until = match self.valid_until {
            None => None,
            Some(until) => Some(opt_time("valid_until", until.as_deref())?),
        };
        Ok(LicensePatch {
            valid_from: opt_time("valid_from", self.valid_from.as_deref())?,
            valid_until,
            tier: self.tier,
            qty: credit.qty,
            enforcement: credit.enforcement,
            model: self.model,
            properties: self.properties,
            revokes_sibling_keys: self.revokes_sibling_keys,
            features: self.features.map(|f| FeatureOverrides { add: f.add, remove: f.remove }),
            entitlement: self.entitlement,
        })
    }
}

/// `POST /admin/licenses/{id}/revoke`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RevokeIn {
    /// Why; a default is recorded when absent.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /admin/licenses/{id}/assignments`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignmentIn {
    /// Who gets the seat.
    pub consumer: ConsumerId,
}

/// A license as answered, with its usage when known.
pub fn license(l: &License, usage: Option<&Usage>) -> Value {
    let mut out = json!({
        "id": l.id,
        "licensee": l.licensee,
        "product": l.product_name,
        "product_id": l.product,
        "tier": l.tier,
        "features": l.features,
        "credit": l.credit,
        "valid_from": rfc3339(l.valid_from),
        "valid_until": l.valid_until.map(rfc3339),
        "license_key": l.license_key,
        "revokes_sibling_keys": l.revokes_sibling_keys,
        "feature_overrides": l.feature_overrides,
        "key_activated_at": l.key_activated_at.map(rfc3339),
        "properties": l.properties,
        "model": l.model,
        "entitlement": l.entitlement,
    });
    out["status"] = json!(status_name(&l.status));
    if let LicenseStatus::Revoked { reason, at } = &l.status {
        out["revoked"] = json!({"reason": reason, "at": rfc3339(*at)});
    }
    if let Some(u) = usage {
        out["usage"] = json!({
            "live_leases": u.live_leases,
            "seats_in_use": u.seats_in_use,
            "used_qty": u.used_qty,
            "remaining_qty": u.remaining_qty,
        });
    }
    out
}

/// A machine of a node-locked license as answered.
pub fn machine(m: &Machine) -> Value {
    json!({
        "hw": m.hw.as_ref(),
        "first_seen_at": rfc3339(m.seen.first_seen_at),
        "last_seen_at": rfc3339(m.seen.last_seen_at),
        "live_leases": m.live_leases,
    })
}

/// A recorded event as answered (SPEC section 11); its data is the JSON it was recorded with.
pub fn event(e: &StoredEvent) -> Value {
    let data: Value = serde_json::from_str(&e.event.data).unwrap_or(Value::Null);
    json!({
        "id": e.id.to_string(),
        "at": rfc3339(e.at),
        "type": e.event.event_type,
        "actor": {"kind": e.event.actor.kind.as_str(), "id": e.event.actor.id},
        "subject": {"kind": e.event.subject.kind, "id": e.event.subject.id},
        "data": data,
    })
}

/// A live lease as answered.
pub fn lease(l: &Lease) -> Value {
    json!({
        "id": l.id,
        "license": l.license,
        "consumer": l.consumer,
        "item": l.item.as_ref(),
        "hw": l.anchors.hw,
        "process": l.anchors.process,
        "version": l.anchors.version,
        "mode": l.mode,
        "granted_at": rfc3339(l.granted_at),
        "issued_at": rfc3339(l.issued_at),
        "expires_at": rfc3339(l.expires_at),
        "qty_prealloc": l.qty_prealloc,
        "qty_verified": l.qty_verified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_rfc3339() {
        let ts = Timestamp::from_millis(1_767_225_600_123);
        assert_eq!(rfc3339(ts), "2026-01-01T00:00:00.123Z");
        assert_eq!(parse_rfc3339("t", "2026-01-01T00:00:00.123Z").unwrap(), ts);
        assert_eq!(parse_rfc3339("t", "2026-01-01T02:00:00.123+02:00").unwrap(), ts);
        assert!(parse_rfc3339("t", "yesterday").is_err());
    }

    #[test]
    fn a_model_with_an_unknown_field_is_refused() {
        assert!(model(Some(json!({"lease_time_online_s": 60}))).is_ok());
        assert!(model(Some(json!({"lease_time_onlin_s": 60}))).is_err());
        assert!(model(Some(json!([1]))).is_err());
    }
}
