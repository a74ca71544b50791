//! The platform's license-key API for applications (SPEC section 13,
//! `seeds/platform-features.txt`):
//!
//! - `POST /license-keys/validate` `{"keyToken"}`: the key token's license and claims, if the
//!   token is good and the license in force.
//! - `POST /license-activations/activate` `{"keyToken", "machineId", "publicKey"?}`: a seat of the
//!   key's license for the machine, and `{"clientId", "token"}`; the token is a JWE when
//!   `publicKey` is given.
//! - `POST /license-keys/heartbeat` `{"clientId"}`: a fresh token for the activated machine.
//! - `POST /license-activations/deactivate` `{"clientId"}`: the machine's seat freed.
//!
//! The key token is the credential of validate and activate, and the client id, which only the
//! activated machine and the admin API know, that of heartbeat and deactivate. A key token is
//! verified with the server's published keys (so `alg: none`, another algorithm or another
//! key is refused), must be a key token (a lease token is not), and must carry the digest of its
//! license's current key. The admin side, issuing, auditing and revoking keys, is in
//! [`crate::http::admin::license_keys`].

use crate::http::admin::shapes::rfc3339;
use crate::http::reply::{self, ApiError, Body, RequestBody};
use crate::http::HttpState;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use leasehold_engine::claims::Claims;
use leasehold_engine::decide::check_in_force;
use leasehold_engine::model::{License, MachineActivation};
use leasehold_engine::tokens::audit::MAX_TOKEN_CHARS;
use leasehold_engine::tokens::jwe::MAX_CLIENT_KEY_CHARS;
use leasehold_engine::tokens::license_key::{
    add_activation_claims, key_token_claims, key_token_license, names_current_key,
};
use leasehold_engine::tokens::verify::Verifier;
use leasehold_engine::tokens::{ClientPublicKey, Dialect, Subject};
use leasehold_engine::{ClientId, Decision, EngineError, Grant};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use std::net::IpAddr;
use std::sync::Arc;

/// The paths this module answers.
pub const PATHS: [&str; 4] = [
    "/license-keys/validate",
    "/license-keys/heartbeat",
    "/license-activations/activate",
    "/license-activations/deactivate",
];

/// Longest machine identifier: it is the hardware id of the machine's lease and every token.
const MAX_MACHINE_ID_CHARS: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ValidateIn {
    key_token: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ActivateIn {
    key_token: String,
    machine_id: String,
    #[serde(default)]
    public_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClientIn {
    client_id: String,
}

/// Answers a request for one of [`PATHS`] from `client`.
pub async fn handle(
    state: &HttpState,
    req: Request<RequestBody>,
    path: &str,
    client: IpAddr,
) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::POST {
        return Err(ApiError::method_not_allowed("POST"));
    }
    let content_type = req.headers().get(CONTENT_TYPE).map(|v| v.to_str().unwrap_or("?").to_owned());
    let body = reply::read_body(req, state.limits).await?;
    let content_type = content_type.as_deref();
    match path {
        "/license-keys/validate" => {
            let asked: ValidateIn = parse(content_type, &body)?;
            let (license, claims) = key_license(state, &asked.key_token)?;
            check_in_force(&license, state.engine.now()).map_err(|denial| reply::denied(&denial))?;
            Ok(reply::json(StatusCode::OK, &json!({"licenseId": license.id, "claims": claims})))
        }
        "/license-activations/activate" => {
            let asked: ActivateIn = parse(content_type, &body)?;
            check_machine_id(&asked.machine_id)?;
            let public_key = match asked.public_key.filter(|k| !k.trim().is_empty()) {
                Some(text) => {
                    encryption_key(&text).map_err(|e| ApiError::bad_request(format!("publicKey: {e}")))?;
                    Some(text)
                }
                None => None,
            };
            let (license, _) = key_license(state, &asked.key_token)?;
            let activated = state.engine.activate_machine(&license, &asked.machine_id, public_key, Some(client));
            let (activation, decision) = activated.await?;
            answer_token(state, &activation, &decision).await
        }
        "/license-keys/heartbeat" => {
            let asked: ClientIn = parse(content_type, &body)?;
            let (activation, _, decision) = state.engine.heartbeat_machine(client_id(&asked)?, Some(client)).await?;
            answer_token(state, &activation, &decision).await
        }
        _ => {
            let asked: ClientIn = parse(content_type, &body)?;
            let (activation, released) = state.engine.deactivate_machine(client_id(&asked)?).await?;
            let answer = json!({
                "clientId": activation.client_id,
                "licenseId": activation.license,
                "machineId": activation.machine_id,
                "deactivated": true,
                "released": released,
            });
            Ok(reply::json(StatusCode::OK, &answer))
        }
    }
}

fn parse<T: DeserializeOwned>(content_type: Option<&str>, body: &[u8]) -> Result<T, ApiError> {
    reply::parse_json(content_type, body)
}

/// The activation a client id names; an id that is no UUID names none.
fn client_id(asked: &ClientIn) -> Result<ClientId, ApiError> {
    asked.client_id.trim().parse().map_err(|_| ApiError::not_found("no activation has this clientId"))
}

fn check_machine_id(machine: &str) -> Result<(), ApiError> {
    let chars = machine.chars().count();
    if chars == 0 || chars > MAX_MACHINE_ID_CHARS || machine.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "machineId must be 1 to {MAX_MACHINE_ID_CHARS} printable characters"
        )));
    }
    Ok(())
}

fn encryption_key(text: &str) -> Result<ClientPublicKey, String> {
    if text.len() > MAX_CLIENT_KEY_CHARS {
        return Err(format!("longer than {MAX_CLIENT_KEY_CHARS} characters"));
    }
    ClientPublicKey::parse(text).map_err(|e| e.to_string())
}

/// 401 `invalidKeyToken`, saying why.
fn invalid_key_token(why: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "invalidKeyToken", why.into())
}

/// The license key token `token` names, and the token's claims: a token signed by one of this
/// server's published keys, in force, that is a key token of an existing license's current key.
fn key_license(state: &HttpState, token: &str) -> Result<(Arc<License>, Claims), ApiError> {
    if token.len() > MAX_TOKEN_CHARS {
        return Err(invalid_key_token(format!("a key token is at most {MAX_TOKEN_CHARS} characters")));
    }
    let keys = state.keys.as_ref().ok_or_else(|| ApiError::not_found("this server publishes no signing keys"))?;
    let now = state.engine.now();
    let verifier =
        Verifier::from_jwks(&keys.jwks(now)).map_err(|e| ApiError::internal(format!("the server's keys: {e}")))?;
    let claims = verifier.verify(token.trim(), now).map_err(|e| invalid_key_token(format!("the key token: {e}")))?;
    let id = key_token_license(&claims).ok_or_else(|| invalid_key_token("the token is not a license key token"))?;
    let license = state.engine.license(id).ok_or_else(|| invalid_key_token("the key token's license was deleted"))?;
    if !names_current_key(&claims, &license) {
        return Err(invalid_key_token("the license's key was replaced; this key token no longer names it"));
    }
    Ok((license, claims))
}

/// The answer to an activation or a heartbeat: the machine's token (a Scale grant with the
/// activation's claims, encrypted to its public key when it gave one), or the refusal.
async fn answer_token(
    state: &HttpState,
    activation: &MachineActivation,
    decision: &Decision<Grant>,
) -> Result<Response<Body>, ApiError> {
    let grant = match decision {
        Decision::Granted(grant) => grant,
        Decision::Denied(denial) => return Err(reply::denied(denial)),
    };
    let tokens = state.tokens();
    let mut claims =
        tokens.claims(Dialect::Scale, Subject::Item(&grant.lease.item), decision).expect("a grant has claims");
    add_activation_claims(&mut claims, activation, &grant.license);
    let encrypt_to = match &activation.public_key {
        Some(text) => Some(encryption_key(text).map_err(|e| ApiError::internal(format!("the stored publicKey: {e}")))?),
        None => None,
    };
    let token = tokens.sign(claims, encrypt_to).await.map_err(EngineError::from)?;
    let answer = json!({
        "clientId": activation.client_id,
        "token": token,
        "encrypted": activation.encrypted(),
        "licenseId": grant.license.id,
        "leaseId": grant.lease.id,
        "expiresAt": rfc3339(grant.lease.expires_at),
        "heartbeatIntervalSeconds": grant.license.model.refresh_time_online_s,
    });
    Ok(reply::json(StatusCode::OK, &answer))
}

/// Issues `license`'s key token (signed, its claims recorded for audits): for its licensee's
/// `external_id` (the customer's address) or else its name.
pub(crate) async fn issue_key_token(state: &HttpState, license: &License) -> Result<String, ApiError> {
    let customer = {
        let directory = state.engine.directory();
        let licensee = directory.licensee(license.licensee);
        licensee.map(|l| l.external_id.clone().unwrap_or_else(|| l.name.clone())).unwrap_or_default()
    };
    let now = state.engine.now();
    let claims = key_token_claims(license, &customer, &state.issuer, now)
        .ok_or_else(|| ApiError::conflict(format!("license {} has no license key", license.id)))?;
    let recorded = serde_json::to_string(&claims).map_err(|e| ApiError::internal(format!("encoding claims: {e}")))?;
    let token = state.tokens().sign(claims, None).await.map_err(EngineError::from)?;
    state.engine.record_key_token(license.id, recorded).await?;
    Ok(token)
}
