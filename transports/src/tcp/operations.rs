//! Operations: what each request of an authenticated connection does to the engine, and how the
//! engine's answer becomes a [`Response`] (with a token signed in the asked dialect).
//!
//! The mapping is the HTTP APIs': consume and check are [`Engine::consume`] and
//! [`Engine::check`] (with a license key, [`Engine::consume_by_license_key`], as the key's
//! holder; the engine has no check by key); renew and release go by lease id; metered use is a consume with
//! `metered` set (the license must be metered), renewed and released like any lease. Denials are
//! answers ([`Response::Denied`], with a signed denial token for consumes and checks), engine
//! failures are [`Response::Failure`]s (`Overloaded`, `Unavailable`).

use crate::tcp::messages::{
    self, Anchors, Authenticated, Consume, Credential, Denied, Dialect, Failure, FailureCode, Granted, Mode, Release,
    Released, Renew, Request, Response, TokenOptions, Used,
};
use leasehold_engine::claims::{self, Claims};
use leasehold_engine::directory::key_holder;
use leasehold_engine::model::license::is_valid_license_key;
use leasehold_engine::model::{self, LeaseMode};
use leasehold_engine::signer::TokenSigner;
use leasehold_engine::tokens::{ClientPublicKey, KeyRing};
use leasehold_engine::{
    ConsumeRequest, ConsumerId, Decision, Denial, Engine, EngineError, ErrorCode, Grant, LicenseFilters, LicenseId,
    ReleaseRequest, RenewRequest, UsedQty,
};
use std::net::IpAddr;
use std::sync::Arc;

/// What every connection of the TCP server needs.
pub struct TcpState {
    /// The engine that decides.
    pub engine: Engine,
    /// Signs tokens (the engine's own signer, shared).
    pub signer: Arc<dyn TokenSigner>,
    /// The `iss` of tokens (the same one the engine was built with).
    pub issuer: String,
    /// The signing keys whose public halves [`Request::Jwks`] answers (`None`: tokens are not
    /// signed with published keys, and the request fails).
    pub keys: Option<Arc<KeyRing>>,
}

/// Who a connection authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A consumer, by its API key: consumes pick among the licenses it may use.
    Consumer(ConsumerId),
    /// The holder of a license key: consumes use that license only, as the key's holder.
    LicenseKey {
        /// The key as given.
        key: String,
        /// The license it identifies.
        license: LicenseId,
    },
}

impl Principal {
    /// The consumer leases are taken, renewed and released as.
    pub fn consumer(&self) -> ConsumerId {
        match self {
            Principal::Consumer(id) => *id,
            Principal::LicenseKey { license, .. } => key_holder(*license),
        }
    }
}

/// Who an authenticated connection acts for, and how it wants its tokens.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who the connection authenticated as.
    pub principal: Principal,
    /// The connection's token dialect.
    pub dialect: Dialect,
    /// The client's address (the license model's IP ranges apply to it).
    pub client_ip: IpAddr,
}

/// Authenticates a connection from `client_ip`: the session, or the failure to answer before
/// closing.
pub fn authenticate(
    state: &TcpState,
    auth: &messages::Authenticate,
    client_ip: IpAddr,
) -> Result<(Session, Authenticated), Failure> {
    match &auth.credential {
        Credential::ApiKey(key) => {
            let consumer = state
                .engine
                .authenticate(key)
                .ok_or_else(|| Failure::new(FailureCode::BadCredentials, "no consumer has this API key"))?;
            let session = Session { principal: Principal::Consumer(consumer), dialect: auth.dialect, client_ip };
            let answer = Authenticated { consumer: Some(consumer), license: None, issuer: state.issuer.clone() };
            Ok((session, answer))
        }
        Credential::LicenseKey(key) => {
            let unknown = || Failure::new(FailureCode::BadCredentials, "no license has this license key");
            if !is_valid_license_key(key) {
                return Err(unknown());
            }
            let license = state.engine.directory().license_by_key(key).map(|l| l.id).ok_or_else(unknown)?;
            let principal = Principal::LicenseKey { key: key.clone(), license };
            let answer = Authenticated {
                consumer: Some(principal.consumer()),
                license: Some(license),
                issuer: state.issuer.clone(),
            };
            Ok((Session { principal, dialect: auth.dialect, client_ip }, answer))
        }
    }
}

/// Answers one request of an authenticated connection.
pub async fn apply(state: &TcpState, session: &Session, request: Request) -> Response {
    let answer = match request {
        Request::Authenticate(_) => {
            Err(Failure::new(FailureCode::AlreadyAuthenticated, "the connection is already authenticated"))
        }
        Request::Consume(consume) => consume_or_check(state, session, consume, Commit::Consume).await,
        Request::Check(consume) => consume_or_check(state, session, consume, Commit::Check).await,
        Request::StartMetered(consume) => consume_or_check(state, session, consume, Commit::Metered).await,
        Request::Renew(renew) | Request::HeartbeatMetered(renew) => self::renew(state, session, renew).await,
        Request::Release(release) | Request::EndMetered(release) => self::release(state, session, release).await,
        Request::Jwks => jwks(state),
    };
    answer.unwrap_or_else(Response::Failure)
}

/// What a consume-shaped request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Commit {
    Consume,
    Check,
    Metered,
}

fn engine_failure(e: EngineError) -> Failure {
    match e {
        EngineError::Overloaded => Failure::new(FailureCode::Overloaded, e.to_string()),
        other => Failure::new(FailureCode::Unavailable, other.to_string()),
    }
}

fn lease_mode(mode: Mode) -> LeaseMode {
    match mode {
        Mode::Online => LeaseMode::Online,
        Mode::Offline => LeaseMode::Offline,
    }
}

fn engine_anchors(anchors: Anchors) -> model::Anchors {
    model::Anchors {
        hw: anchors.hw,
        hw_name: anchors.hw_name,
        process: anchors.process,
        process_name: anchors.process_name,
        version: anchors.version,
        extra: anchors.extra.into_iter().collect(),
    }
}

fn used_qty(used: Used) -> UsedQty {
    match used {
        Used::Unreported => UsedQty::Unreported,
        Used::Absolute(n) => UsedQty::Absolute(n),
        Used::Incremental(n) => UsedQty::Incremental(n),
    }
}

/// The dialect to sign in (if any) and the client key to encrypt to (if any).
fn token_plan(
    options: &TokenOptions,
    session: &Session,
) -> Result<(Option<Dialect>, Option<ClientPublicKey>), Failure> {
    let dialect = options.choice.dialect(session.dialect);
    let encrypt_to = match (&options.public_key, dialect) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(Failure::new(FailureCode::BadRequest, "a public key (JWE) needs a token; do not omit it"))
        }
        (Some(text), Some(_)) => Some(
            ClientPublicKey::parse(text)
                .map_err(|e| Failure::new(FailureCode::BadRequest, format!("the public key: {e}")))?,
        ),
    };
    Ok((dialect, encrypt_to))
}

fn grant_claims(state: &TcpState, dialect: Dialect, grant: &Grant) -> Claims {
    match dialect {
        Dialect::Enterprise => claims::enterprise_grant(grant, &state.issuer),
        Dialect::Scale => claims::scale_grant(grant, &state.issuer, state.engine.now()),
    }
}

fn denial_claims(state: &TcpState, dialect: Dialect, item: &str, denial: &Denial) -> Claims {
    let now = state.engine.now();
    match dialect {
        Dialect::Enterprise => claims::enterprise_denial(item, denial, &state.issuer, now),
        Dialect::Scale => claims::scale_denial(item, denial, &state.issuer, now, &uuid::Uuid::new_v4().to_string()),
    }
}

async fn sign(state: &TcpState, claims: Claims, encrypt_to: Option<ClientPublicKey>) -> Result<String, Failure> {
    state.signer.sign_for(claims, encrypt_to).await.map_err(|e| engine_failure(EngineError::from(e)))
}

fn granted(grant: &Grant, token: Option<String>) -> Response {
    let lease = &grant.lease;
    Response::Granted(Box::new(Granted {
        lease_id: lease.id,
        old_lease_id: grant.replaced,
        license: grant.license.id,
        item: lease.item.to_string(),
        expires_at_s: lease.expires_at.as_secs(),
        refresh_at_s: lease.refresh_at.as_secs(),
        heartbeat_not_before_s: lease.heartbeat_not_before.as_secs(),
        qty_prealloc: lease.qty_prealloc,
        remaining_qty: grant.remaining_qty,
        token,
    }))
}

fn denied(denial: &Denial, token: Option<String>) -> Response {
    Response::Denied(Denied { code: denial.code.as_str().to_owned(), message: denial.message.to_string(), token })
}

/// The answer to a decision on `item`, signed as planned.
async fn decision_answer(
    state: &TcpState,
    item: &str,
    decision: Decision<Grant>,
    (dialect, encrypt_to): (Option<Dialect>, Option<ClientPublicKey>),
) -> Result<Response, Failure> {
    let Some(dialect) = dialect else {
        return Ok(match &decision {
            Decision::Granted(grant) => granted(grant, None),
            Decision::Denied(denial) => denied(denial, None),
        });
    };
    Ok(match &decision {
        Decision::Granted(grant) => {
            let token = sign(state, grant_claims(state, dialect, grant), encrypt_to).await?;
            granted(grant, Some(token))
        }
        Decision::Denied(denial) => {
            let token = sign(state, denial_claims(state, dialect, item, denial), encrypt_to).await?;
            denied(denial, Some(token))
        }
    })
}

async fn consume_or_check(
    state: &TcpState,
    session: &Session,
    consume: Consume,
    commit: Commit,
) -> Result<Response, Failure> {
    consume.validate()?;
    let plan = token_plan(&consume.token, session)?;
    let item = consume.item.clone();
    let req = ConsumeRequest {
        consumer: session.principal.consumer(),
        item: consume.item,
        anchors: engine_anchors(consume.anchors),
        client_ip: Some(session.client_ip),
        mode: lease_mode(consume.mode),
        duration_s: consume.duration_s,
        qty: consume.qty,
        lease_id: consume.lease_id,
        filters: LicenseFilters {
            license: consume.filters.license,
            licensee: consume.filters.licensee,
            entitlement: consume.filters.entitlement,
        },
        metered: commit == Commit::Metered,
    };
    let decision = match (&session.principal, commit) {
        (Principal::Consumer(_), Commit::Check) => state.engine.check(req).await,
        (Principal::Consumer(_), Commit::Consume | Commit::Metered) => state.engine.consume(req).await,
        (Principal::LicenseKey { license, .. }, _) if req.filters.license.is_some_and(|named| named != *license) => {
            Ok(Decision::Denied(Denial::new(ErrorCode::NoLicenseFound, "the license key is for another license")))
        }
        (Principal::LicenseKey { key, .. }, commit) => {
            let found = match commit {
                Commit::Check => state.engine.check_by_license_key(key, req).await,
                Commit::Consume | Commit::Metered => state.engine.consume_by_license_key(key, req).await,
            };
            found.map(|found| {
                found.unwrap_or_else(|| {
                    Decision::Denied(Denial::new(ErrorCode::NoLicenseFound, "no license has this license key"))
                })
            })
        }
    }
    .map_err(engine_failure)?;
    decision_answer(state, &item, decision, plan).await
}

async fn renew(state: &TcpState, session: &Session, renew: Renew) -> Result<Response, Failure> {
    renew.anchors.validate()?;
    let (dialect, encrypt_to) = token_plan(&renew.token, session)?;
    let req = RenewRequest {
        consumer: session.principal.consumer(),
        lease_id: renew.lease_id,
        used: used_qty(renew.used),
        anchors: engine_anchors(renew.anchors),
        duration_s: renew.duration_s,
        extra_qty: renew.extra_qty,
    };
    match state.engine.renew(req).await.map_err(engine_failure)? {
        // A renewal names no item. The Scale API signs a heartbeat's denial without a product,
        // and so does this; an Enterprise denial is about an item, so there it is code and
        // message only, as for releases.
        Decision::Denied(denial) => {
            let token = match dialect {
                Some(Dialect::Scale) => {
                    let jti = uuid::Uuid::new_v4().to_string();
                    let claims = claims::scale_heartbeat_denial(&denial, &state.issuer, state.engine.now(), &jti);
                    Some(sign(state, claims, encrypt_to).await?)
                }
                Some(Dialect::Enterprise) | None => None,
            };
            Ok(denied(&denial, token))
        }
        Decision::Granted(grant) => {
            let item = grant.lease.item.to_string();
            decision_answer(state, &item, Decision::Granted(grant), (dialect, encrypt_to)).await
        }
    }
}

async fn release(state: &TcpState, session: &Session, release: Release) -> Result<Response, Failure> {
    let req = ReleaseRequest::new(session.principal.consumer(), release.lease_id);
    let req = ReleaseRequest { used: used_qty(release.used), ..req };
    Ok(match state.engine.release(req).await.map_err(engine_failure)? {
        Decision::Granted(done) => Response::Released(Released {
            lease_id: done.lease_id,
            license: done.license,
            used_qty: done.used_qty,
            remaining_qty: done.remaining_qty,
        }),
        Decision::Denied(denial) => denied(&denial, None),
    })
}

fn jwks(state: &TcpState) -> Result<Response, Failure> {
    let keys = state
        .keys
        .as_ref()
        .ok_or_else(|| Failure::new(FailureCode::BadRequest, "this server signs with no published keys"))?;
    let document = serde_json::to_string(&keys.jwks(state.engine.now()))
        .map_err(|e| Failure::new(FailureCode::Unavailable, format!("the key set: {e}")))?;
    Ok(Response::Jwks(document))
}
