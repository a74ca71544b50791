//! The admin side of the platform's license keys (SPEC section 13), in the platform's own words
//! and paths: `POST /license-keys` issues a key to a customer, `POST /license-keys/{id}/audit`
//! compares the key token last issued with what the license says now,
//! `POST /license-keys/{id}/regenerate` issues a fresh key token from the license as it is, and
//! `POST /license-keys/{id}/revoke` revokes the license (its next validation, activation or
//! heartbeat is refused). `{id}` is the license's id. These routes are in the one table of roles
//! ([`super::access::ADMIN_ROUTES`]) like every route under `/admin/`.

use super::shapes::{self, parse_rfc3339, rfc3339};
use super::{path_id, Admin, Call};
use crate::http::platform::issue_key_token;
use crate::http::reply::{self, ApiError, Body};
use hyper::{Method, Response, StatusCode};
use leasehold_engine::decide::Idempotency;
use leasehold_engine::tokens::audit::audit_claims;
use leasehold_engine::tokens::license_key::key_token_claims;
use leasehold_engine::{LicenseId, Timestamp};
use serde::Deserialize;
use serde_json::{json, Value};

/// `POST /license-keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IssueIn {
    product: String,
    tier: String,
    /// The customer's e-mail address.
    customer: String,
    /// RFC 3339; perpetual when absent.
    #[serde(default)]
    valid_until: Option<String>,
}

/// `POST /license-keys/{id}/revoke`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RevokeIn {
    #[serde(default)]
    reason: Option<String>,
}

/// Longest revocation reason.
const MAX_REASON_CHARS: usize = 1_000;

/// Answers a request under `/license-keys` (`segments` start with `license-keys`).
pub(super) async fn route(
    state: &Admin<'_>,
    call: &Call,
    segments: &[&str],
    method: &Method,
    once: Option<&Idempotency>,
) -> Result<Response<Body>, ApiError> {
    match (segments, method) {
        (["license-keys"], &Method::POST) => {
            let asked: IssueIn = call.required()?;
            let valid_until = asked.valid_until.as_deref().map(|t| parse_rfc3339("validUntil", t)).transpose()?;
            let issue = state.engine.issue_license_key(&asked.customer, &asked.product, &asked.tier, valid_until, once);
            let license = issue.await?;
            let key_token = issue_key_token(state.http, &license).await?;
            let answer = json!({
                "licenseId": license.id,
                "keyToken": key_token,
                "license": shapes::license(&license, None),
            });
            Ok(reply::json(StatusCode::CREATED, &answer))
        }
        (["license-keys", id, "regenerate"], &Method::POST) => {
            let license = license(state, id)?;
            let key_token = issue_key_token(state.http, &license).await?;
            Ok(reply::json(StatusCode::OK, &json!({"licenseId": license.id, "keyToken": key_token})))
        }
        (["license-keys", id, "audit"], &Method::POST) => audit(state, id).await,
        (["license-keys", id, "revoke"], &Method::POST) => {
            let id: LicenseId = path_id("license", id)?;
            let asked: RevokeIn = call.optional()?;
            let reason = asked.reason.unwrap_or_else(|| "revoked by an administrator".into());
            if reason.chars().count() > MAX_REASON_CHARS || reason.chars().any(char::is_control) {
                return Err(ApiError::bad_request(format!(
                    "reason is at most {MAX_REASON_CHARS} printable characters"
                )));
            }
            let license = state.engine.revoke(id, reason).await?;
            let answer = json!({"licenseId": license.id, "license": shapes::license(&license, None)});
            Ok(reply::json(StatusCode::OK, &answer))
        }
        _ => Err(ApiError::method_not_allowed(allowed(segments))),
    }
}

/// The methods a path of this module allows (empty when it is none of them).
pub(super) fn allowed(segments: &[&str]) -> &'static str {
    match segments {
        ["license-keys"] | ["license-keys", _, "audit" | "regenerate" | "revoke"] => "POST",
        _ => "",
    }
}

fn license(state: &Admin<'_>, id: &str) -> Result<std::sync::Arc<leasehold_engine::model::License>, ApiError> {
    let id: LicenseId = path_id("license", id)?;
    state.engine.license(id).ok_or_else(|| ApiError::not_found(format!("license {id}")))
}

/// The key token last issued for license `id` against the license now (the claims that
/// differ), and the machines that activated it.
async fn audit(state: &Admin<'_>, id: &str) -> Result<Response<Body>, ApiError> {
    let license = license(state, id)?;
    let (issued, customer, activations) = {
        let directory = state.engine.directory();
        let issued = directory.key_token(license.id).cloned();
        let licensee = directory.licensee(license.licensee);
        let customer = licensee.map(|l| l.external_id.clone().unwrap_or_else(|| l.name.clone())).unwrap_or_default();
        let activations: Vec<_> = directory.machine_activations_of(license.id).cloned().collect();
        (issued, customer, activations)
    };
    let issued =
        issued.ok_or_else(|| ApiError::not_found(format!("no key token was issued for license {}", license.id)))?;
    let token: serde_json::Map<String, Value> = serde_json::from_str(&issued.claims_json)
        .map_err(|e| ApiError::internal(format!("the recorded claims: {e}")))?;
    // Dated as the token was, so that only what the license changed differs.
    let issued_at = token.get("iat").and_then(Value::as_i64).map_or(issued.issued_at, Timestamp::from_secs);
    let expected = key_token_claims(&license, &customer, &state.http.issuer, issued_at).unwrap_or_default();
    let report = audit_claims(&token, &expected, &[]);
    let leases = state.engine.leases(license.id).await?;
    let machines: Vec<Value> = activations
        .iter()
        .map(|a| {
            let lease = leases.iter().find(|l| l.anchors.hw.as_deref() == Some(a.machine_id.as_str()));
            json!({
                "clientId": a.client_id,
                "machineId": a.machine_id,
                "ip": a.ip,
                "activatedAt": rfc3339(a.activated_at),
                "encrypted": a.encrypted(),
                "leaseExpiresAt": lease.map(|l| rfc3339(l.expires_at)),
            })
        })
        .collect();
    let answer = json!({
        "licenseId": license.id,
        "issuedAt": rfc3339(issued.issued_at),
        "status": shapes::status_name(&license.status),
        "consistent": report.consistent,
        "drift": report.drift,
        "activations": machines,
    });
    Ok(reply::json(StatusCode::OK, &answer))
}
