//! The token and key actions of the admin API (SPEC section 9): issue an offline token for a
//! named consumer and hardware id, audit a token against the current state, regenerate a token
//! from the current state, and rotate the signing key.
//!
//! Audit and regeneration share one question: what would this token say if it were issued now?
//! `expected_claims` answers it from the license's current terms and the token's lease, if it
//! is still live: the grant's claims when the license is in force and the lease live, otherwise
//! the denial a client would get now (`licenseRevoked`, `leaseIdNotFound`, ...).

use super::shapes::rfc3339;
use super::{path_id, Admin, Call};
use crate::http::reply::{self, ApiError, Body};
use hyper::{Response, StatusCode};
use leasehold_engine::claims::Claims;
use leasehold_engine::decide::{check_in_force, Idempotency};
use leasehold_engine::events::{self, Event};
use leasehold_engine::ids::{IdSource, SeededIds};
use leasehold_engine::model::LeaseMode;
use leasehold_engine::tokens::audit::{self, AuditReport};
use leasehold_engine::tokens::{Algorithm, Dialect, Subject};
use leasehold_engine::{ConsumeRequest, ConsumerId, Decision, Denial, ErrorCode, Grant, LeaseId, LicenseId};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Makes a new key of the given algorithm the signing key and records it wherever the keys are
/// kept (the data directory's key store, so it survives a restart); answers the new `kid`.
/// Generating an RSA key takes a fraction of a second, so it is called on a blocking thread.
pub type KeyRotation = Arc<dyn Fn(Algorithm) -> Result<String, RotationError> + Send + Sync>;

/// Why a signing key was not rotated.
#[derive(Debug)]
pub enum RotationError {
    /// Where the keys are kept, no key of that algorithm can be made (a PKCS#11 token makes
    /// RS256 and ES256 keys only).
    Unsupported(String),
    /// Making or recording the key failed.
    Failed(String),
}

/// Claims a regenerated token cannot reproduce and an audit therefore does not compare: the
/// lease a heartbeat replaced is history, not state.
const HISTORICAL_CLAIMS: [&str; 1] = ["oldLeaseId"];

/// `POST /admin/licenses/{id}/offline-token`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OfflineTokenIn {
    consumer: ConsumerId,
    #[serde(default)]
    hw: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    duration_s: Option<u64>,
}

/// `POST /admin/tokens/audit` and `/admin/tokens/regenerate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenIn {
    token: String,
}

/// `POST /admin/keys/rotate`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateIn {
    #[serde(default)]
    alg: Option<String>,
}

/// Longest hardware id or version accepted: they are copied into every token of the lease.
const MAX_CLAIM_CHARS: usize = 256;

fn check_claim(field: &str, value: &Option<String>) -> Result<(), ApiError> {
    match value {
        Some(v) if v.is_empty() || v.chars().count() > MAX_CLAIM_CHARS || v.chars().any(char::is_control) => {
            Err(ApiError::bad_request(format!("{field} must be 1 to {MAX_CLAIM_CHARS} printable characters")))
        }
        _ => Ok(()),
    }
}

/// `POST /admin/licenses/{id}/offline-token`: checks out an offline lease of the license for
/// the consumer on the hardware (generated when not given) and answers its signed token.
pub async fn offline_token(
    state: &Admin<'_>,
    call: &Call,
    id: &str,
    once: Option<&Idempotency>,
) -> Result<Response<Body>, ApiError> {
    let id: LicenseId = path_id("license", id)?;
    let body: OfflineTokenIn = call.required()?;
    check_claim("hw", &body.hw)?;
    check_claim("version", &body.version)?;
    if body.duration_s == Some(0) {
        return Err(ApiError::bad_request("duration_s must be positive"));
    }
    let license = state.engine.license(id).ok_or_else(|| ApiError::not_found(format!("license {id}")))?;
    if state.engine.directory().consumer(body.consumer).is_none() {
        return Err(ApiError::not_found(format!("consumer {}", body.consumer)));
    }
    // A retried request generates the same hardware id, as its checkout is the same one.
    let generated = once.map_or_else(|| state.engine.fresh_id(), |i| SeededIds::for_idempotency_key(&i.key).uuid());
    let hw = body.hw.unwrap_or_else(|| format!("generated-{}", generated.simple()));
    let mut request = ConsumeRequest::new(body.consumer, license.product_name.to_string()).on_hardware(hw.clone());
    request.anchors.version = body.version;
    request.mode = LeaseMode::Offline;
    request.duration_s = body.duration_s;
    request.filters.license = Some(id);
    request.idempotency = once.copied();
    let decision = state.engine.consume(request).await?;
    let grant = match &decision {
        Decision::Granted(grant) => grant,
        Decision::Denied(denial) => return Err(reply::denied(denial)),
    };
    let item = grant.lease.item.to_string();
    let token = state
        .http
        .tokens()
        .issue(Dialect::Enterprise, Subject::Item(&item), &decision, None)
        .expect("a grant has a token")
        .await
        .map_err(leasehold_engine::EngineError::from)?;
    Ok(reply::json(
        StatusCode::OK,
        &json!({
            "token": token,
            "lease_id": grant.lease.id,
            "expires_at": rfc3339(grant.lease.expires_at),
            "hw": hw,
        }),
    ))
}

/// What the current state says about the token with `token_claims`, and the claims an audit
/// leaves out of the comparison.
async fn expected_claims(state: &Admin<'_>, token_claims: &Claims) -> Result<(Claims, Vec<&'static str>), ApiError> {
    let subject = audit::subject(token_claims);
    let license_id = subject
        .license_id
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("the token names no license (a denial describes no lease to compare)"))?;
    let license_id: LicenseId = license_id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("the token's license {license_id:?} is no id")))?;
    let license =
        state.engine.license(license_id).ok_or_else(|| ApiError::not_found(format!("license {license_id}")))?;
    let lease_id: Option<LeaseId> = subject.lease_id.as_deref().and_then(|id| id.parse().ok());
    let live = match lease_id {
        Some(lease_id) => state.engine.leases(license_id).await?.into_iter().find(|l| l.id == lease_id),
        None => None,
    };
    // The actor's terms are the latest (a revocation lands there first).
    let license = state.engine.license(license_id).unwrap_or(license);
    let tokens = state.http.tokens();
    let dialect = subject.dialect;
    let item = subject.item.clone().unwrap_or_else(|| license.product_name.to_string());
    let mut ignored = HISTORICAL_CLAIMS.to_vec();
    let expected = match (check_in_force(&license, state.engine.now()), live) {
        (Ok(()), Some(lease)) => {
            let grant = Decision::Granted(Grant { lease, license, replaced: None, remaining_qty: None });
            tokens.claims(dialect, Subject::Item(&item), &grant).expect("a grant has claims")
        }
        (in_force, _) => {
            let denial = in_force
                .err()
                .unwrap_or_else(|| Denial::new(ErrorCode::LeaseIdNotFound, "the token's lease is no longer live"));
            // A denial expires a fixed time after it is made, so its `exp` is not state.
            ignored.push("exp");
            let jti = token_claims.get("jti").and_then(Value::as_str).unwrap_or_default();
            let mut claims = tokens.denial_claims(dialect, &item, &denial, jti);
            // The denial is about the token's license and lease: it keeps naming them, so that
            // a regenerated denial can be audited in turn.
            let (license_claim, lease_claim) = match dialect {
                Dialect::Enterprise => ("lic", "jti"),
                Dialect::Scale => ("licenseId", "leaseId"),
            };
            claims.insert(license_claim.into(), json!(license_id));
            if let Some(lease) = &subject.lease_id {
                claims.insert(lease_claim.into(), json!(lease));
            }
            claims
        }
    };
    Ok((expected, ignored))
}

fn read_token(call: &Call) -> Result<String, ApiError> {
    let body: TokenIn = call.required()?;
    let token = body.token.trim().to_owned();
    if token.is_empty() {
        return Err(ApiError::bad_request("token is empty"));
    }
    Ok(token)
}

fn decode(token: &str) -> Result<Claims, ApiError> {
    audit::decode_claims(token).map_err(|e| ApiError::bad_request(format!("token: {e}")))
}

/// `POST /admin/tokens/audit`: compares the token's claims with what the current state gives.
pub async fn audit_token(state: &Admin<'_>, call: &Call) -> Result<Response<Body>, ApiError> {
    let token = read_token(call)?;
    if audit::is_encrypted(&token) {
        let report = AuditReport { consistent: true, encrypted: true, drift: Vec::new() };
        return Ok(reply::json(StatusCode::OK, &report));
    }
    let claims = decode(&token)?;
    let (expected, ignored) = expected_claims(state, &claims).await?;
    let report = audit::audit_claims(&claims, &expected, &ignored);
    Ok(reply::json(StatusCode::OK, &report))
}

/// `POST /admin/tokens/regenerate`: a token with the claims the current state gives, signed now.
pub async fn regenerate_token(state: &Admin<'_>, call: &Call) -> Result<Response<Body>, ApiError> {
    let token = read_token(call)?;
    if audit::is_encrypted(&token) {
        return Err(ApiError::bad_request("an encrypted token (JWE) can be read only by its client"));
    }
    let claims = decode(&token)?;
    let (expected, _) = expected_claims(state, &claims).await?;
    let regenerated = audit::regenerated_claims(&claims, expected);
    let token = state.http.tokens().sign(regenerated, None).await.map_err(leasehold_engine::EngineError::from)?;
    Ok(reply::json(StatusCode::OK, &json!({"token": token})))
}

/// `POST /admin/keys/rotate`: a new signing key (of the body's `alg`, or the current key's);
/// the old one stays published while tokens it signed live.
pub async fn rotate_key(state: &Admin<'_>, call: &Call) -> Result<Response<Body>, ApiError> {
    let body: RotateIn = call.optional()?;
    let (Some(keys), Some(rotation)) = (&state.http.keys, &state.http.key_rotation) else {
        return Err(ApiError::not_found("this server signs with no keys it can rotate"));
    };
    let alg = match body.alg.as_deref() {
        None => keys.current().key().alg(),
        Some(name) => Algorithm::parse(name)
            .ok_or_else(|| ApiError::bad_request(format!("alg must be RS256, ES256 or EdDSA, not {name:?}")))?,
    };
    // The rotation's event is recorded where the directory is written: on a node of a cluster
    // that does not write it, the request goes there before anything rotates.
    state.engine.directory_writable()?;
    let rotation = Arc::clone(rotation);
    let kid = tokio::task::spawn_blocking(move || rotation(alg))
        .await
        .map_err(|e| ApiError::internal(format!("key rotation stopped: {e}")))?
        .map_err(|e| match e {
            RotationError::Unsupported(why) => ApiError::bad_request(why),
            RotationError::Failed(why) => ApiError::internal(format!("key rotation failed: {why}")),
        })?;
    tracing::info!(kid, alg = alg.as_str(), "signing key rotated");
    let event = Event {
        event_type: "key.rotated".into(),
        actor: state.engine.actor().clone(),
        subject: events::Subject { kind: "key".into(), id: kid.clone() },
        data: json!({"kid": kid, "alg": alg.as_str()}).to_string(),
    };
    state.engine.record(event).await?;
    Ok(reply::json(StatusCode::OK, &json!({"kid": kid, "alg": alg.as_str()})))
}
