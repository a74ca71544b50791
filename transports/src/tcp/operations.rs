//! Operations: what each request of an authenticated connection does to the engine, and how the
//! engine's answer becomes a [`Response`] (with a token signed in the asked dialect).
//!
//! The mapping is the HTTP APIs': consume and check are [`Engine::consume`] and
//! [`Engine::check`] (with a license key, [`Engine::consume_by_license_key`] and
//! [`Engine::check_by_license_key`], as the key's holder); renew and release go by lease id;
//! metered use is a consume with `metered` set (the license must be metered), renewed and
//! released like any lease. Denials are answers ([`Response::Denied`], with a signed denial token
//! for consumes and checks), engine failures are [`Response::Failure`]s (`Overloaded`,
//! `Unavailable`).
//!
//! The answer to a request is a future a connection holds while the engine decides, up to
//! `max_in_flight` of them: it is built from combinators around the engine's own future (see
//! [`apply`]), and what to answer to a decision is plain code ([`Answer`]), signed last.

use crate::client_address::TrustedProxies;
use crate::tcp::messages::{
    self, Anchors, Authenticated, Consume, ConsumeOnce, Credential, Denied, Dialect, Failure, FailureCode, Granted,
    Mode, Release, Released, Renew, Request, Response, TokenOptions, Used,
};
use futures_util::future::{self, Either, FutureExt};
use leasehold_engine::decide::Idempotency;
use leasehold_engine::directory::key_holder;
use leasehold_engine::journal::JournalError;
use leasehold_engine::model::license::is_valid_license_key;
use leasehold_engine::model::{self, LeaseMode};
use leasehold_engine::signer::{SignFuture, TokenSigner};
use leasehold_engine::tokens::{ClientPublicKey, KeyRing, Subject, TokenIssuer};
use leasehold_engine::{
    Authentication, ConsumeRequest, ConsumerId, Decision, Denial, Engine, EngineError, ErrorCode, Grant,
    LicenseFilters, LicenseId, ReleaseRequest, RenewRequest, UsedQty,
};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// What every connection of the TCP server needs.
pub struct TcpState {
    /// The engine that decides.
    pub engine: Engine,
    /// Signs the tokens of every answer (see [`TcpState::tokens`]).
    pub signer: Arc<dyn TokenSigner>,
    /// The `iss` of tokens.
    pub issuer: String,
    /// The signing keys whose public halves [`Request::Jwks`] answers (`None`: tokens are not
    /// signed with published keys, and the request fails).
    pub keys: Option<Arc<KeyRing>>,
    /// The proxies whose PROXY protocol header names the client ([`crate::client_address`]).
    pub trusted_proxies: TrustedProxies,
}

impl TcpState {
    /// Where every token this server answers with is made.
    pub fn tokens(&self) -> TokenIssuer<'_> {
        TokenIssuer::new(&self.engine, &*self.signer, &self.issuer)
    }
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
#[derive(Debug)]
pub struct Session {
    /// Who the connection authenticated as.
    pub principal: Principal,
    /// The API key it authenticated with, re-checked before each request (a license key needs
    /// none: its license refuses once revoked or deleted).
    pub api_key: Option<Authentication>,
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
            let authentication = state
                .engine
                .authenticate_connection(key)
                .ok_or_else(|| Failure::new(FailureCode::BadCredentials, "no consumer has this API key"))?;
            let consumer = authentication.consumer();
            let principal = Principal::Consumer(consumer);
            let session = Session { principal, api_key: Some(authentication), dialect: auth.dialect, client_ip };
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
            Ok((Session { principal, api_key: None, dialect: auth.dialect, client_ip }, answer))
        }
    }
}

/// Answers one request of an authenticated connection.
///
/// Built from combinators rather than `async fn`s: a connection holds up to `max_in_flight` of
/// these futures, and an async fn's future keeps its arguments next to the futures it awaits
/// (the request, then the engine's request, each held twice over: 2.6 KiB for a check). Here
/// each is held once, inside the engine's own future; the rare operations are answered at once.
pub fn apply<'a>(
    state: &'a TcpState,
    session: &'a Session,
    request: Request,
) -> impl Future<Output = Response> + Send + 'a {
    if session.api_key.as_ref().is_some_and(|key| !state.engine.still_authenticated(key)) {
        let why = "the connection's API key was rotated, or its consumer disabled or deleted: authenticate again";
        return Operation::Done { future: future::ready(Err(Failure::new(FailureCode::BadCredentials, why))) };
    }
    match request {
        Request::Consume(consume) => {
            Operation::Decide { future: consume_or_check(state, session, consume, Commit::Consume, None) }
        }
        Request::Check(consume) => {
            Operation::Decide { future: consume_or_check(state, session, consume, Commit::Check, None) }
        }
        Request::StartMetered(consume) => {
            Operation::Decide { future: consume_or_check(state, session, consume, Commit::Metered, None) }
        }
        Request::Renew(renew) | Request::HeartbeatMetered(renew) => {
            // Boxed: a renewal's future is the largest (1,192 bytes against a check's 984), and
            // every in-flight slot of a connection is as large as the largest operation; a
            // renewal is journaled (and mostly signed), so one allocation is small beside it.
            Operation::Renew { future: self::renew(state, session, renew).boxed() }
        }
        Request::Release(release) | Request::EndMetered(release) => {
            Operation::Release { future: self::release(state, release_request(session, release)) }
        }
        Request::Authenticate(_) => Operation::Done {
            future: future::ready(Err(Failure::new(
                FailureCode::AlreadyAuthenticated,
                "the connection is already authenticated",
            ))),
        },
        Request::Jwks => Operation::Done { future: future::ready(jwks(state)) },
        Request::ConsumeOnce(once) => Operation::Renew { future: consume_once(state, session, once).boxed() },
    }
}

/// A consume with an idempotency key: boxed, like a renewal, so that it does not make every
/// in-flight slot larger.
fn consume_once<'a>(
    state: &'a TcpState,
    session: &'a Session,
    once: ConsumeOnce,
) -> impl Future<Output = Result<Response, Failure>> + Send + 'a {
    let key = &once.idempotency_key;
    let well_formed =
        !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_CHARS && key.bytes().all(|b| b.is_ascii_graphic());
    if !well_formed {
        let why = format!("the idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters");
        return Either::Left(future::ready(Err(Failure::new(FailureCode::BadRequest, why))));
    }
    let credential = match &session.principal {
        Principal::Consumer(id) => id.0.as_bytes().to_vec(),
        Principal::LicenseKey { key, .. } => key.as_bytes().to_vec(),
    };
    let request = messages::encode(&once.consume).unwrap_or_default();
    let idempotency = Idempotency::of(&credential, key, 0, &[b"consume", &request]);
    Either::Right(consume_or_check(state, session, once.consume, Commit::Consume, Some(idempotency)))
}

pin_project_lite::pin_project! {
    /// The future of one operation's answer: as large as the largest kind of operation.
    #[project = OperationProjection]
    enum Operation<Decide, Renew, Release> {
        Decide { #[pin] future: Decide },
        Renew { #[pin] future: Renew },
        Release { #[pin] future: Release },
        Done { #[pin] future: future::Ready<Result<Response, Failure>> },
    }
}

impl<Decide, Renew, Release> Future for Operation<Decide, Renew, Release>
where
    Decide: Future<Output = Result<Response, Failure>>,
    Renew: Future<Output = Result<Response, Failure>>,
    Release: Future<Output = Result<Response, Failure>>,
{
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let answer = match self.project() {
            OperationProjection::Decide { future } => ready!(future.poll(cx)),
            OperationProjection::Renew { future } => ready!(future.poll(cx)),
            OperationProjection::Release { future } => ready!(future.poll(cx)),
            OperationProjection::Done { future } => ready!(future.poll(cx)),
        };
        Poll::Ready(answer.unwrap_or_else(Response::Failure))
    }
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
        EngineError::Journal(ref journal) if journal.is_storage_failure() => {
            Failure::new(FailureCode::StorageUnavailable, e.to_string())
        }
        // No code of its own in the protocol yet: the message names the node that answers.
        EngineError::Journal(JournalError::NotOwner { .. }) => Failure::new(FailureCode::Unavailable, e.to_string()),
        EngineError::IdempotencyKeyReused => Failure::new(FailureCode::IdempotencyKeyReused, e.to_string()),
        EngineError::IdempotencyKeyInFlight => Failure::new(FailureCode::IdempotencyKeyInFlight, e.to_string()),
        other => Failure::new(FailureCode::Unavailable, other.to_string()),
    }
}

/// Longest idempotency key accepted (the HTTP header's bound too).
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

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

/// How an answer's token is made.
struct TokenPlan {
    /// The dialect to sign in; `None`: no token.
    dialect: Option<Dialect>,
    /// The client key to encrypt the token to (as a JWE).
    encrypt_to: Option<ClientPublicKey>,
}

/// How the answer to a request with `options` is signed on `session`'s connection.
fn token_plan(options: &TokenOptions, session: &Session) -> Result<TokenPlan, Failure> {
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
    Ok(TokenPlan { dialect, encrypt_to })
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

/// What to answer once the engine has decided.
enum Answer {
    /// Nothing to sign: the answer itself.
    Now(Result<Response, Failure>),
    /// The answer to `decision` once its token, being signed, is ready; boxed, as signing is the
    /// slow path anyway.
    Signed { decision: Box<Decision<Grant>>, token: SignFuture },
}

/// `answer`, once its token is signed when it has one.
fn answered(answer: Answer) -> impl Future<Output = Result<Response, Failure>> + Send + 'static {
    match answer {
        Answer::Now(response) => Either::Left(future::ready(response)),
        Answer::Signed { decision, token } => Either::Right(token.map(move |token| {
            let token = token.map_err(|e| engine_failure(EngineError::from(e)))?;
            Ok(match &*decision {
                Decision::Granted(grant) => granted(grant, Some(token)),
                Decision::Denied(denial) => denied(denial, Some(token)),
            })
        })),
    }
}

/// What to answer to the engine's decision on `subject`, signed as planned. A decision with no
/// token planned, or none in its dialect (an Enterprise renewal's denial), is answered at once.
fn decision_answer(
    state: &TcpState,
    subject: Subject<'_>,
    decided: Result<Decision<Grant>, EngineError>,
    plan: TokenPlan,
) -> Answer {
    let decision = match decided {
        Ok(decision) => decision,
        Err(e) => return Answer::Now(Err(engine_failure(e))),
    };
    let token = plan.dialect.and_then(|dialect| state.tokens().issue(dialect, subject, &decision, plan.encrypt_to));
    match token {
        Some(token) => Answer::Signed { decision: Box::new(decision), token },
        None => Answer::Now(Ok(match &decision {
            Decision::Granted(grant) => granted(grant, None),
            Decision::Denied(denial) => denied(denial, None),
        })),
    }
}

/// The engine's request for a consume-shaped request, and how its answer is signed.
fn consume_request(
    session: &Session,
    consume: Consume,
    commit: Commit,
) -> Result<(ConsumeRequest, TokenPlan), Failure> {
    consume.validate()?;
    let plan = token_plan(&consume.token, session)?;
    let req = ConsumeRequest {
        consumer: session.principal.consumer(),
        item: consume.item,
        anchors: engine_anchors(consume.anchors),
        client_ip: Some(session.client_ip),
        client_country: None,
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
        idempotency: None,
    };
    Ok((req, plan))
}

/// The engine's decision on `req` for `session`'s principal: a consumer's is inline (the hot
/// path); a license key's is boxed.
fn decide<'a>(
    state: &'a TcpState,
    session: &'a Session,
    req: ConsumeRequest,
    commit: Commit,
) -> impl Future<Output = Result<Decision<Grant>, EngineError>> + Send + 'a {
    match (&session.principal, commit) {
        (Principal::Consumer(_), Commit::Check) => Either::Left(Either::Left(state.engine.check(req))),
        (Principal::Consumer(_), Commit::Consume | Commit::Metered) => {
            Either::Left(Either::Right(state.engine.consume(req)))
        }
        (Principal::LicenseKey { key, license }, commit) => {
            Either::Right(decide_by_license_key(state, key, *license, req, commit).boxed())
        }
    }
}

async fn decide_by_license_key(
    state: &TcpState,
    key: &str,
    license: LicenseId,
    req: ConsumeRequest,
    commit: Commit,
) -> Result<Decision<Grant>, EngineError> {
    if req.filters.license.is_some_and(|named| named != license) {
        return Ok(Decision::Denied(Denial::new(ErrorCode::NoLicenseFound, "the license key is for another license")));
    }
    let found = match commit {
        Commit::Check => state.engine.check_by_license_key(key, req).await?,
        Commit::Consume | Commit::Metered => state.engine.consume_by_license_key(key, req).await?,
    };
    Ok(found
        .unwrap_or_else(|| Decision::Denied(Denial::new(ErrorCode::NoLicenseFound, "no license has this license key"))))
}

fn consume_or_check<'a>(
    state: &'a TcpState,
    session: &'a Session,
    consume: Consume,
    commit: Commit,
    idempotency: Option<Idempotency>,
) -> impl Future<Output = Result<Response, Failure>> + Send + 'a {
    // The item is only needed again to sign a denial.
    let item = consume.token.choice.dialect(session.dialect).map(|_| consume.item.clone()).unwrap_or_default();
    let (mut req, plan) = match consume_request(session, consume, commit) {
        Ok(prepared) => prepared,
        Err(failure) => return Either::Left(future::ready(Err(failure))),
    };
    req.idempotency = idempotency;
    Either::Right(
        decide(state, session, req, commit)
            .then(move |decided| answered(decision_answer(state, Subject::Item(&item), decided, plan))),
    )
}

fn renew<'a>(
    state: &'a TcpState,
    session: &'a Session,
    renew: Renew,
) -> impl Future<Output = Result<Response, Failure>> + Send + 'a {
    let plan = match renew.anchors.validate().and_then(|()| token_plan(&renew.token, session)) {
        Ok(plan) => plan,
        Err(failure) => return Either::Left(future::ready(Err(failure))),
    };
    let req = RenewRequest {
        consumer: session.principal.consumer(),
        lease_id: renew.lease_id,
        used: used_qty(renew.used),
        anchors: engine_anchors(renew.anchors),
        duration_s: renew.duration_s,
        extra_qty: renew.extra_qty,
    };
    Either::Right(
        state.engine.renew(req).then(move |decided| answered(decision_answer(state, Subject::Renewal, decided, plan))),
    )
}

fn release_request(session: &Session, release: Release) -> ReleaseRequest {
    let req = ReleaseRequest::new(session.principal.consumer(), release.lease_id);
    ReleaseRequest { used: used_qty(release.used), ..req }
}

fn release(state: &TcpState, req: ReleaseRequest) -> impl Future<Output = Result<Response, Failure>> + Send + '_ {
    state.engine.release(req).map(|decided| {
        Ok(match decided.map_err(engine_failure)? {
            Decision::Granted(done) => Response::Released(Released {
                lease_id: done.lease_id,
                license: done.license,
                used_qty: done.used_qty,
                remaining_qty: done.remaining_qty,
            }),
            Decision::Denied(denial) => denied(&denial, None),
        })
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
#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `make` returns, without making one.
    fn future_bytes<A, B, C, F: Future>(_make: impl Fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn an_answer_in_flight_is_the_engine_decision_and_little_more() {
        let check = future_bytes(|state: &'static TcpState, req: ConsumeRequest, (): ()| state.engine.check(req));
        let answer =
            future_bytes(|state: &'static TcpState, session: &'static Session, request| apply(state, session, request));
        // Up to `max_in_flight` of these per connection, each moved into its slot once.
        assert!(answer <= check + 256, "an answer's future takes {answer} bytes, the engine's check {check}");
    }
}
