//! Batches of activation codes under `/admin/activation-codes` (SPEC section 12): made from a
//! license template, their codes shown once; read back with how many were redeemed.

use super::shapes::{self, CreditIn};
use super::{path_id, Admin, Call, Listing};
use crate::http::reply::{self, ApiError, Body};
use hyper::{Method, Response, StatusCode};
use leasehold_engine::decide::Idempotency;
use leasehold_engine::model::{ActivationBatch, Credit, LicenseTemplate};
use leasehold_engine::{ActivationBatchId, NewActivationBatch};
use serde::Deserialize;
use serde_json::{json, Value};

fn one() -> u32 {
    1
}

/// `POST /admin/activation-codes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchIn {
    product: String,
    #[serde(default)]
    tier: Option<String>,
    #[serde(default)]
    credit: Option<CreditIn>,
    #[serde(default)]
    model: Option<Value>,
    #[serde(default)]
    license_duration_s: Option<u64>,
    #[serde(default)]
    valid_until: Option<String>,
    count: u32,
    #[serde(default = "one")]
    uses_per_code: u32,
    #[serde(default)]
    expires_at: Option<String>,
}

impl BatchIn {
    fn into_new_batch(self) -> Result<NewActivationBatch, ApiError> {
        Ok(NewActivationBatch {
            template: LicenseTemplate {
                product: self.product,
                tier: self.tier,
                credit: self.credit.map(Credit::from),
                model: shapes::model(self.model)?,
                license_duration_s: self.license_duration_s,
                valid_until: shapes::opt_time("valid_until", self.valid_until.as_deref())?,
            },
            count: self.count,
            uses_per_code: self.uses_per_code,
            expires_at: shapes::opt_time("expires_at", self.expires_at.as_deref())?,
        })
    }
}

/// Answers a request under `/admin/activation-codes` (a path [`allowed`] knows).
pub(super) async fn route(
    state: &Admin<'_>,
    call: &Call,
    segments: &[&str],
    method: &Method,
    once: Option<&Idempotency>,
) -> Result<Response<Body>, ApiError> {
    match (segments, method) {
        (["activation-codes"], &Method::POST) => {
            let new = call.required::<BatchIn>()?.into_new_batch()?;
            let (created, codes) = state.engine.create_activation_codes(new, once).await?;
            let mut answer = batch(&created);
            answer["codes"] = json!(codes);
            Ok(reply::json(StatusCode::CREATED, &answer))
        }
        (["activation-codes"], &Method::GET) => {
            let listing = Listing::parse(&call.query, &[])?;
            let directory = state.engine.directory();
            let found = directory.activation_batches().map(|b| (b.id.to_string(), batch(b)));
            Ok(listing.page(found, |(key, _)| key.clone(), |(_, value)| value))
        }
        (["activation-codes", id], &Method::GET) => {
            let id: ActivationBatchId = path_id("activation code batch", id)?;
            let found = state.engine.directory().activation_batch(id).map(batch);
            let found = found.ok_or_else(|| ApiError::not_found(format!("activation code batch {id}")))?;
            Ok(reply::json(StatusCode::OK, &found))
        }
        _ => Err(ApiError::method_not_allowed(allowed(segments))),
    }
}

/// The methods a path of this module allows (empty when it is none of them).
pub(super) fn allowed(segments: &[&str]) -> &'static str {
    match segments {
        ["activation-codes"] => "GET or POST",
        ["activation-codes", _] => "GET",
        _ => "",
    }
}

/// A batch as answered: its template and how far it was redeemed, never its codes' digests.
fn batch(b: &ActivationBatch) -> Value {
    let t = &b.template;
    json!({
        "batch": b.id,
        "product": t.product,
        "tier": t.tier,
        "credit": t.credit,
        "model": t.model,
        "license_duration_s": t.license_duration_s,
        "valid_until": t.valid_until.map(shapes::rfc3339),
        "uses_per_code": b.uses_per_code,
        "expires_at": b.expires_at.map(shapes::rfc3339),
        "created_at": shapes::rfc3339(b.created_at),
        "issued": b.codes.len(),
        "redeemed": b.redeemed(),
        "used_up": b.used_up(),
    })
}
