//! The embedding API: an [`Engine`] hosts the directory, the router and the license actors, and
//! answers consume, check, renew and release, plus the administrative calls.
//!
//! The path of a consume: `Engine::consume` asks the directory which licenses the consumer may
//! use for the item, then sends the request to each license's actor in turn (through the
//! router) until one grants; the actor decides with the pure rules, applies the change,
//! journals it and answers once it is durable.

mod activation;
mod identity;
mod organization;
mod platform;
mod signup;

pub use activation::{Redeemed, FAILURE_WINDOW_MS, MAX_FAILED_REDEMPTIONS};
pub use identity::SignIn;
pub use organization::{Acceptance, INVITATION_TTL_S, MAX_INVITATION_TTL_S};
pub use platform::{platform_model, ACTIVATION_TOKEN_TTL_S, HEARTBEAT_INTERVAL_S};
pub use signup::{canonical_email, Claimed, SET_PASSWORD_TTL_S};

use crate::actors::license::{
    Admin, AdminAnswer, AdminOp, Consume, DormantLicense, Machine, Release, Renew, Reply, Retry, Shared,
};
use crate::actors::{LicenseActor, Router, RunningActors, Workers};
use crate::admin::{
    ConsumerPatch, LicenseKeyRequest, LicensePatch, LicenseePatch, NewConsumer, NewLicense, NewLicensee, NewProduct,
    ProductPatch,
};
use crate::answer::{Grant, Released};
use crate::concurrency::GaugeReading;
use crate::decide::{
    ConsumeRequest, Decision, Denial, ErrorCode, Idempotency, LicenseEvent, LicenseState, ReleaseRequest, RenewRequest,
    Usage, Violation, IDEMPOTENCY_WINDOW_S,
};
use crate::directory::{key_holder, Directory, DirectoryEvent};
use crate::error::{AdminError, EngineError};
use crate::events::{Actor, Event, EventPage, EventQuery};
use crate::hashing::ConcurrentMap;
use crate::ids::{
    sha256, ConsumerId, EntitlementId, IdSource, LeaseId, LicenseId, LicenseeId, ProductId, RandomIds, SeededIds,
    WebhookId,
};
use crate::journal::{Change, Durability, EphemeralJournal, Journal, JournalEntry};
use crate::metrics::{EngineMetrics, Operation};
use crate::model::catalog::{is_valid_name, MAX_NAME_CHARS};
use crate::model::license::is_valid_license_key;
use crate::model::{Consumer, Credit, Dimension, Enforcement, Lease, License, LicenseStatus, Licensee, Product};
use crate::rate_limit::RateLimit;
use crate::replay::Recovered;
use crate::stored_answers::{answer_key, StoredAnswer, MAX_REMEMBERED_ANSWER_BYTES};
use crate::time::{Clock, SystemClock, Timestamp};
use crate::usage::{UsageQuery, UsageRow};
use crate::webhooks::{new_webhook, NewWebhook, Webhook, WebhookPatch};
use actix::{ArbiterHandle, Handler, Message};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use dashmap::mapref::entry::Entry;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;
use tokio::sync::oneshot;

/// Default bound on requests waiting for one license's actor.
pub const DEFAULT_MAILBOX_CAPACITY: usize = 4096;

/// Default time between idle sweeps: an actor that admitted no request for a whole sweep
/// interval stops and leaves its state in the router (it starts again on the next request).
pub const DEFAULT_IDLE_SWEEP: Duration = Duration::from_secs(30);

/// Default number of license actors that may go on running with no request waiting; past it an
/// actor parks as soon as it has answered (see [`EngineBuilder::idle_actor_budget`]).
pub const DEFAULT_IDLE_ACTOR_BUDGET: usize = 10_000;

/// Configures and starts an [`Engine`].
pub struct EngineBuilder {
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdSource>,
    journal: Arc<dyn Journal>,
    workers: usize,
    mailbox_capacity: usize,
    idle_sweep: Duration,
    idle_actor_budget: usize,
    recovered: Recovered,
    geolocation: Option<Arc<dyn Geolocation>>,
}

/// Tells the country of an address, for the `geo` rules of license models (SPEC section 13):
/// `leasehold serve` reads a MaxMind database (`--geoip-db`).
pub trait Geolocation: Send + Sync + 'static {
    /// The ISO 3166-1 alpha-2 code of `ip`'s country, when known.
    fn country(&self, ip: IpAddr) -> Option<String>;
}

impl Default for EngineBuilder {
    fn default() -> Self {
        EngineBuilder {
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
            journal: Arc::new(EphemeralJournal),
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            mailbox_capacity: DEFAULT_MAILBOX_CAPACITY,
            idle_sweep: DEFAULT_IDLE_SWEEP,
            idle_actor_budget: DEFAULT_IDLE_ACTOR_BUDGET,
            recovered: Recovered::default(),
            geolocation: None,
        }
    }
}

impl EngineBuilder {
    /// Where the time comes from (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Where ids and keys come from (default: the OS random generator).
    pub fn ids(mut self, ids: Arc<dyn IdSource>) -> Self {
        self.ids = ids;
        self
    }

    /// Where changes are recorded (default: nowhere, [`EphemeralJournal`]).
    pub fn journal(mut self, journal: Arc<dyn Journal>) -> Self {
        self.journal = journal;
        self
    }

    /// Worker threads (default: one per core).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Bound on requests waiting for one license (default [`DEFAULT_MAILBOX_CAPACITY`]).
    pub fn mailbox_capacity(mut self, capacity: usize) -> Self {
        self.mailbox_capacity = capacity;
        self
    }

    /// Time between idle sweeps (default [`DEFAULT_IDLE_SWEEP`]): license actors idle for a
    /// whole interval stop, keeping only their state.
    pub fn idle_sweep(mut self, every: Duration) -> Self {
        self.idle_sweep = every;
        self
    }

    /// How many license actors may go on running with no request waiting (default
    /// [`DEFAULT_IDLE_ACTOR_BUDGET`]). Past it, an actor parks as soon as it has answered,
    /// instead of at the next idle sweep: a burst over many licenses keeps about this many
    /// actors (~1 KB each) running, not one per license it touched. A larger budget saves actor
    /// starts when more licenses than that are busy at once.
    pub fn idle_actor_budget(mut self, actors: usize) -> Self {
        self.idle_actor_budget = actors;
        self
    }

    /// Tells checkouts' countries from their addresses (default: none, so a license with `geo`
    /// rules answers `unresolvedGeolocation`).
    pub fn geolocation(mut self, geolocation: Arc<dyn Geolocation>) -> Self {
        self.geolocation = Some(geolocation);
        self
    }

    /// Starts from the state a journal describes instead of an empty one.
    pub fn recovered(mut self, recovered: Recovered) -> Self {
        self.recovered = recovered;
        self
    }

    /// Starts the worker threads and the engine.
    pub fn build(self) -> std::io::Result<Engine> {
        let workers = Workers::start(self.workers)?;
        let Recovered { directory, licenses, mut halted } = self.recovered;
        let leases = licenses.values().map(|(state, _)| state.leases().count()).sum();
        let shared = Arc::new(Shared {
            journal: self.journal,
            clock: self.clock,
            ids: self.ids,
            lease_index: ConcurrentMap::with_capacity_and_hasher(leases, Default::default()),
            directory: RwLock::new(directory),
            running: RunningActors::new(self.idle_actor_budget),
            events_recorded: AtomicU64::new(0),
            usage_open: ConcurrentMap::default(),
        });
        let inner = Inner {
            router: Arc::new(Router::new(workers, Arc::clone(&shared), licenses.len())),
            hints: ConcurrentMap::default(),
            idempotency: ConcurrentMap::default(),
            idempotency_sweep_at: AtomicUsize::new(MIN_KEY_SWEEP),
            answering: ConcurrentMap::default(),
            credentials_epoch: AtomicU64::new(0),
            mailbox_capacity: self.mailbox_capacity,
            metrics: EngineMetrics::default(),
            redemption_failures: Mutex::new(RateLimit::new(MAX_FAILED_REDEMPTIONS, FAILURE_WINDOW_MS)),
            geolocation: self.geolocation,
            shared,
        };
        let now = inner.shared.clock.now();
        for (id, (mut state, last_at)) in licenses {
            state.expire_until(now.max(last_at), |_| {});
            for lease in state.leases() {
                inner.shared.lease_index.insert(lease.id, id);
            }
            for grant in state.idempotent_grants() {
                let slot = KeySlot::Granted { license: id, at: grant.lease.issued_at };
                inner.idempotency.insert(grant.idempotency.key, slot);
            }
            if state.open_usage().is_some() {
                inner.shared.usage_open.insert(id, ());
            }
            inner.add_license(state, last_at, halted.remove(&id));
        }
        Router::start_idle_sweep(&inner.router, self.idle_sweep)?;
        Ok(Engine { inner: Arc::new(inner), actor: Arc::new(Actor::admin()) })
    }
}

/// Where the grant of an idempotency key is, for retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeySlot {
    /// The first request with the key is being decided.
    InFlight,
    /// `license` granted the key's request at `at` and remembers its lease.
    Granted { license: LicenseId, at: Timestamp },
    /// The first request with the key was given up at `at` (its caller went away) before its
    /// outcome was known here: a license it could have used may have granted and journaled it,
    /// so a retry asks them before deciding again.
    Abandoned { at: Timestamp },
}

/// Holds an idempotency key [`KeySlot::InFlight`] while its request is decided; dropped with the
/// key still in flight (the caller's future was dropped, or deciding failed) it marks the key
/// abandoned, so a retry is neither refused forever nor granted twice.
struct KeyInFlight<'a> {
    index: &'a ConcurrentMap<[u8; 32], KeySlot>,
    key: [u8; 32],
    since: Timestamp,
}

impl Drop for KeyInFlight<'_> {
    fn drop(&mut self) {
        if let Some(mut slot) = self.index.get_mut(&self.key) {
            if *slot == KeySlot::InFlight {
                *slot = KeySlot::Abandoned { at: self.since };
            }
        }
    }
}

/// The claim on an idempotency key while its request (not a checkout) is carried out: see
/// [`Engine::answering`]. Dropping it frees the key.
pub struct Answering<'a> {
    engine: &'a Engine,
    idempotency: Idempotency,
}

impl Answering<'_> {
    /// The answer remembered for the request: `Ok(None)` when there is none (it was never
    /// answered, or a day has passed), [`EngineError::IdempotencyKeyReused`] when the key
    /// answered another request.
    pub fn remembered(&self) -> Result<Option<StoredAnswer>, EngineError> {
        let directory = self.engine.directory();
        match directory.answer(&answer_key(&self.idempotency), self.engine.now()) {
            Some(answer) if answer.request != self.idempotency.request => Err(EngineError::IdempotencyKeyReused),
            found => Ok(found.cloned()),
        }
    }

    /// Remembers `status`, `content_type` and `body` as the request's answer, journaled before
    /// this returns;
    /// `body` is `None` for an answer that holds a secret (a retry carries the request out again,
    /// deriving the same secret). An answer over [`MAX_REMEMBERED_ANSWER_BYTES`] is not
    /// remembered: a retry is carried out again.
    pub async fn remember(
        &self,
        status: u16,
        content_type: Option<String>,
        body: Option<Vec<u8>>,
    ) -> Result<(), AdminError> {
        if body.as_ref().is_some_and(|b| b.len() > MAX_REMEMBERED_ANSWER_BYTES) {
            return Ok(());
        }
        let request = self.idempotency.request;
        let answer = StoredAnswer { request, status, content_type, body, at: self.engine.now() };
        let key = answer_key(&self.idempotency);
        self.engine.record_directory(|_| Ok(DirectoryEvent::Answered { key, answer })).await
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.engine.inner.answering.remove(&self.idempotency.key);
    }
}

/// A connection's API key, checked at authentication and re-checked only when a consumer changed
/// since ([`Engine::authenticate_connection`], [`Engine::still_authenticated`]).
#[derive(Debug)]
pub struct Authentication {
    consumer: ConsumerId,
    key_sha256: [u8; 32],
    /// The consumers' change count when the key was last found valid.
    checked_at: AtomicU64,
}

impl Authentication {
    /// The consumer the key belongs to.
    pub fn consumer(&self) -> ConsumerId {
        self.consumer
    }
}

/// How often `leasehold serve` records the licenses that expired ([`Engine::record_expiries`]).
pub const EXPIRY_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// A fresh consumer API key: `lh_` and 24 bytes from `ids` in base64url.
fn new_api_key(ids: &dyn IdSource) -> String {
    let mut secret = [0u8; 24];
    ids.fill(&mut secret);
    format!("lh_{}", URL_SAFE_NO_PAD.encode(secret))
}

/// The key digest of a consumer that has no API key (it signs in otherwise): the digest of
/// random bytes from `ids` that no one holds.
fn no_api_key(ids: &dyn IdSource) -> [u8; 32] {
    let mut unheld = [0u8; 32];
    ids.fill(&mut unheld);
    sha256(&unheld)
}

/// The idempotency index is not swept before it holds this many keys.
const MIN_KEY_SWEEP: usize = 1024;

struct Inner {
    shared: Arc<Shared>,
    /// Which license granted each idempotency key of the last day.
    idempotency: ConcurrentMap<[u8; 32], KeySlot>,
    /// The index's size at which its next sweep for expired keys runs.
    idempotency_sweep_at: AtomicUsize,
    /// The idempotency keys of requests other than checkouts being carried out now.
    answering: ConcurrentMap<[u8; 32], ()>,
    /// Counts changes to consumers (a key rotated, a consumer disabled or deleted): a connection
    /// authenticated before a change re-checks its key ([`Engine::still_authenticated`]).
    credentials_epoch: AtomicU64,
    router: Arc<Router>,
    /// Which license last granted a consumer an item, tried first when several may (so that a
    /// session keeps to its license instead of opening a second one elsewhere).
    hints: ConcurrentMap<(ConsumerId, Arc<str>), LicenseId>,
    mailbox_capacity: usize,
    metrics: EngineMetrics,
    /// Each consumer's failed redemptions of activation codes in the current window.
    redemption_failures: Mutex<RateLimit<ConsumerId>>,
    geolocation: Option<Arc<dyn Geolocation>>,
}

impl Inner {
    fn add_license(&self, state: LicenseState, last_change_at: Timestamp, halted: Option<Violation>) {
        self.router.add(DormantLicense { state, last_change_at, halted }, self.mailbox_capacity);
    }
}

/// A running lease engine. Cheap to clone; every clone is the same engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
    /// Whom the events of the administrative changes made through this handle name.
    actor: Arc<Actor>,
}

/// Refuses an entitlement that is not `licensee`'s (a license joins only its own licensee's).
fn check_entitlement(directory: &Directory, licensee: LicenseeId, id: EntitlementId) -> Result<(), AdminError> {
    match directory.entitlement(id) {
        Some(entitlement) if entitlement.licensee == licensee => Ok(()),
        _ => Err(AdminError::NotFound(format!("entitlement {id} of the license's licensee"))),
    }
}

fn check_name(what: &str, name: &str) -> Result<(), AdminError> {
    if !is_valid_name(name) {
        return Err(AdminError::Invalid(format!("{what} must be 1 to {MAX_NAME_CHARS} printable characters")));
    }
    Ok(())
}

impl Engine {
    /// A builder with the defaults: system clock, random ids, no journal.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// This engine, with its administrative changes recorded as `actor`'s (the credential an
    /// admin request came with); the engine itself makes them as [`Actor::admin`].
    pub fn acting_as(&self, actor: Actor) -> Engine {
        Engine { inner: Arc::clone(&self.inner), actor: Arc::new(actor) }
    }

    /// Whom the events of the administrative changes made through this handle name.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The worker arbiters, for running transports and load on the engine's own threads (a
    /// request that starts on a worker crosses to another thread at most once).
    pub fn workers(&self) -> &[ArbiterHandle] {
        self.inner.router.workers().arbiters()
    }

    /// The index in [`Engine::workers`] of the worker that hosts license `id`'s actor: callers
    /// that can choose where to run (a load generator, a transport that knows the license) save
    /// a thread crossing by calling from there.
    pub fn home_worker(&self, id: LicenseId) -> usize {
        self.inner.router.home_worker(id)
    }

    /// License actors running now (the others are idle, their state kept by the router).
    pub fn running_actors(&self) -> usize {
        self.inner.router.running_actors()
    }

    /// License actors started so far: each license's first start, and one more each time an
    /// idle one that was parked is needed again.
    pub fn actor_starts(&self) -> u64 {
        self.inner.router.actor_starts()
    }

    /// The engine's clock.
    pub fn now(&self) -> Timestamp {
        self.inner.shared.clock.now()
    }

    /// A fresh random id from the engine's id source (seeded in tests).
    pub fn fresh_id(&self) -> uuid::Uuid {
        self.inner.shared.ids.uuid()
    }

    /// Reads the directory.
    pub fn directory(&self) -> RwLockReadGuard<'_, Directory> {
        self.inner.shared.directory.read().unwrap_or_else(|p| p.into_inner())
    }

    async fn call<M, T>(
        &self,
        license: LicenseId,
        message: impl FnOnce(Reply<T>) -> M,
    ) -> Result<Option<T>, EngineError>
    where
        M: Message<Result = ()> + Send + 'static,
        LicenseActor: Handler<M>,
    {
        let (reply, answer) = oneshot::channel();
        if !self.inner.router.send(license, message(reply))? {
            return Ok(None);
        }
        let answered = answer.await.map_err(|_| EngineError::Stopped)??;
        answered.once_durable().await.map(Some)
    }

    /// Checks out a lease: tries the licenses the consumer may use for the item, in the SPEC's
    /// order, until one grants; otherwise answers the most specific denial.
    pub fn consume(
        &self,
        req: ConsumeRequest,
    ) -> impl Future<Output = Result<Decision<Grant>, EngineError>> + Send + '_ {
        // The request goes into its `Arc` before the future is made, so the future holds the
        // pointer rather than the request (an async fn keeps its arguments for its whole life).
        self.decide_and_count(Operation::Consume, Arc::new(self.located(req)), true)
    }

    /// `req` with its client's country, when the engine has geolocation and the request an
    /// address.
    fn located(&self, mut req: ConsumeRequest) -> ConsumeRequest {
        if let (Some(geolocation), Some(ip), None) = (&self.inner.geolocation, req.client_ip, &req.client_country) {
            req.client_country = geolocation.country(ip);
        }
        req
    }

    /// Answers what [`Engine::consume`] would, without taking a lease (`doConsume=false`).
    pub fn check(&self, req: ConsumeRequest) -> impl Future<Output = Result<Decision<Grant>, EngineError>> + Send + '_ {
        self.decide_and_count(Operation::Check, Arc::new(self.located(req)), false)
    }

    async fn decide_and_count(
        &self,
        operation: Operation,
        req: Arc<ConsumeRequest>,
        commit: bool,
    ) -> Result<Decision<Grant>, EngineError> {
        let decision = self.consume_or_check(req, commit).await?;
        self.inner.metrics.record(operation, &decision);
        Ok(decision)
    }

    async fn consume_or_check(&self, req: Arc<ConsumeRequest>, commit: bool) -> Result<Decision<Grant>, EngineError> {
        match req.idempotency.filter(|_| commit) {
            Some(idempotency) => {
                let possible =
                    || self.directory().candidates(req.consumer, &req.item, &req.filters).unwrap_or_default();
                self.at_most_once(idempotency, possible, || self.decide_on_candidates(Arc::clone(&req), true)).await
            }
            None => self.decide_on_candidates(req, commit).await,
        }
    }

    /// Runs `consume`, a checkout with an idempotency key, unless a checkout with the same key
    /// was granted within [`IDEMPOTENCY_WINDOW_S`]: then that grant is answered again (the same
    /// lease, charged once), or the request is refused when it is not the same one. One request
    /// per key runs at a time; a concurrent one is refused as in flight. When the first request
    /// was abandoned, the licenses `possible` names are asked for its grant before deciding.
    async fn at_most_once<F, Fut>(
        &self,
        idempotency: Idempotency,
        possible: impl FnOnce() -> Vec<LicenseId>,
        consume: F,
    ) -> Result<Decision<Grant>, EngineError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Decision<Grant>, EngineError>>,
    {
        let index = &self.inner.idempotency;
        let abandoned = loop {
            let granted_on = match index.entry(idempotency.key) {
                Entry::Vacant(slot) => {
                    slot.insert(KeySlot::InFlight);
                    break false;
                }
                Entry::Occupied(mut slot) => match *slot.get() {
                    KeySlot::InFlight => return Err(EngineError::IdempotencyKeyInFlight),
                    KeySlot::Abandoned { .. } => {
                        slot.insert(KeySlot::InFlight);
                        break true;
                    }
                    KeySlot::Granted { license, .. } => license,
                },
            };
            if let Some(Some(first)) = self.call(granted_on, |reply| Retry { idempotency, reply }).await? {
                return Ok(first);
            }
            // The license no longer remembers the key (it expired, or the license is gone).
            index.remove_if(
                &idempotency.key,
                |_, slot| matches!(slot, KeySlot::Granted { license, .. } if *license == granted_on),
            );
        };
        let in_flight = KeyInFlight { index, key: idempotency.key, since: self.now() };
        let found = if abandoned { self.granted_before(idempotency, possible()).await? } else { None };
        let outcome = match found {
            Some(first) => Ok(first),
            None => consume().await,
        };
        match &outcome {
            Ok(Decision::Granted(grant)) => {
                let slot = KeySlot::Granted { license: grant.lease.license, at: grant.lease.issued_at };
                index.insert(idempotency.key, slot);
                self.forget_expired_keys();
            }
            Ok(Decision::Denied(_)) => {
                index.remove(&idempotency.key);
            }
            // Whether an error came before or after a grant was journaled is unknown here.
            Err(_) => {}
        }
        drop(in_flight);
        outcome
    }

    /// The grant one of `licenses` made to `idempotency`'s request, if one did.
    async fn granted_before(
        &self,
        idempotency: Idempotency,
        licenses: Vec<LicenseId>,
    ) -> Result<Option<Decision<Grant>>, EngineError> {
        for license in licenses {
            if let Some(Some(first)) = self.call(license, |reply| Retry { idempotency, reply }).await? {
                return Ok(Some(first));
            }
        }
        Ok(None)
    }

    /// Drops the idempotency keys older than [`IDEMPOTENCY_WINDOW_S`] once the index has doubled
    /// since it was last swept: each key costs its sweep share once, and the index stays within
    /// twice a day's keys.
    fn forget_expired_keys(&self) {
        let index = &self.inner.idempotency;
        let sweep_at = self.inner.idempotency_sweep_at.load(Ordering::Relaxed);
        if index.len() < sweep_at {
            return;
        }
        let now = self.now();
        index.retain(|_, slot| match slot {
            KeySlot::Granted { at, .. } | KeySlot::Abandoned { at } => now < at.plus_secs(IDEMPOTENCY_WINDOW_S),
            KeySlot::InFlight => true,
        });
        self.inner.idempotency_sweep_at.store((2 * index.len()).max(MIN_KEY_SWEEP), Ordering::Relaxed);
    }

    async fn decide_on_candidates(
        &self,
        req: Arc<ConsumeRequest>,
        commit: bool,
    ) -> Result<Decision<Grant>, EngineError> {
        let candidates = match self.directory().candidates(req.consumer, &req.item, &req.filters) {
            Ok(found) => found,
            Err(denial) => return Ok(Decision::Denied(denial)),
        };
        let several = candidates.len() > 1;
        let first = if !several {
            None
        } else if let Some(lease) = req.lease_id {
            self.inner.shared.lease_index.get(&lease).map(|l| *l)
        } else {
            self.inner.hints.get(&(req.consumer, Arc::from(req.item.as_str()))).map(|l| *l)
        };
        let order = first.into_iter().chain(candidates.into_iter().filter(|id| Some(*id) != first));
        let mut best: Option<(Denial, LicenseId)> = None;
        // A refusal is counted once, by the license whose refusal is answered: when one license
        // is asked, by it as it refuses; when several are, here, after the last one refused.
        let counts_denial = commit && !several;
        for license in order {
            let consume = |reply| Consume { req: Arc::clone(&req), commit, counts_denial, reply };
            let answer = self.call(license, consume).await?;
            match answer {
                None => continue,
                Some(Decision::Granted(grant)) => {
                    if several && commit {
                        self.inner.hints.insert((req.consumer, Arc::clone(&grant.lease.item)), license);
                    }
                    return Ok(Decision::Granted(grant));
                }
                Some(Decision::Denied(denial)) => {
                    best = Some(match best {
                        Some((earlier, by)) if !denial.more_specific_than(&earlier) => (earlier, by),
                        _ => (denial, license),
                    })
                }
            }
        }
        let Some((denial, by)) = best else {
            return Ok(Decision::Denied(Denial::new(ErrorCode::NoLicenseFound, "no license for this item")));
        };
        if commit && several {
            match self.admin(by, AdminOp::CountDenial(req.consumer)).await {
                // A license deleted since it refused has nothing left to count on.
                Ok(_) | Err(AdminError::NotFound(_)) => {}
                Err(AdminError::Engine(e)) => return Err(e),
                Err(other) => unreachable!("counting a refusal is not refused: {other}"),
            }
        }
        Ok(Decision::Denied(denial))
    }

    /// `Ok` when this node answers for `license`: its terms as this node holds them are the
    /// latest. On a node of a cluster, another node may own it (and change it); `Err` names that
    /// node, for a read of its terms to be asked there.
    pub fn answers_for(&self, license: LicenseId) -> Result<(), EngineError> {
        Ok(self.inner.shared.journal.owns_license(license)?)
    }

    /// The license that holds live lease `lease`; `Err` when another node of the cluster owns
    /// the lease's partition (its leases are not in this node's index).
    pub fn license_of_lease(&self, lease: LeaseId) -> Result<Option<LicenseId>, EngineError> {
        if let Some(license) = self.inner.shared.lease_index.get(&lease).map(|l| *l) {
            return Ok(Some(license));
        }
        self.inner.shared.journal.owns_lease(lease)?;
        Ok(None)
    }

    fn lease_not_found<T>() -> Decision<T> {
        Decision::Denied(Denial::new(ErrorCode::LeaseIdNotFound, "no live lease has this id"))
    }

    /// Renews a lease (heartbeat): extends it from now under a new id.
    pub async fn renew(&self, req: RenewRequest) -> Result<Decision<Grant>, EngineError> {
        let disabled = self.directory().consumer(req.consumer).is_some_and(|c| c.disabled);
        let decision = match self.license_of_lease(req.lease_id)? {
            _ if disabled => Decision::Denied(Denial::new(ErrorCode::NotAuthorized, "this consumer is disabled")),
            None => Self::lease_not_found(),
            Some(license) => {
                self.call(license, |reply| Renew { req, reply }).await?.unwrap_or_else(Self::lease_not_found)
            }
        };
        self.inner.metrics.record(Operation::Renew, &decision);
        Ok(decision)
    }

    /// Releases a lease: frees its seat (after the cooldown) and settles its usage.
    pub async fn release(&self, req: ReleaseRequest) -> Result<Decision<Released>, EngineError> {
        let decision = match self.license_of_lease(req.lease_id)? {
            None => Self::lease_not_found(),
            Some(license) => {
                self.call(license, |reply| Release { req, reply }).await?.unwrap_or_else(Self::lease_not_found)
            }
        };
        self.inner.metrics.record(Operation::Release, &decision);
        Ok(decision)
    }

    /// Checks out on the license whose key is `key`, as the key itself: the key is the
    /// credential, so the lease's consumer is the key's holder ([`key_holder`]) whoever sends
    /// it, and no other license is tried. `None` when no license has this key.
    ///
    /// The key's first grant activates it: the licensee's other keyed licenses of the product
    /// are revoked, whatever their age (SPEC section 10: one active key per customer and
    /// product), unless the license opts out, and the activation is remembered in the terms.
    /// Each revocation goes through [`Engine::revoke`], so it is journaled, and the grant is
    /// answered once they are durable.
    pub async fn consume_by_license_key(
        &self,
        key: &str,
        req: ConsumeRequest,
    ) -> Result<Option<Decision<Grant>>, EngineError> {
        let Some(decision) = self.decide_by_license_key(key, req, true).await? else { return Ok(None) };
        if let Decision::Granted(grant) = &decision {
            if grant.license.key_activated_at.is_none() {
                self.activate_key(&grant.license).await?;
            }
        }
        self.inner.metrics.record(Operation::Consume, &decision);
        Ok(Some(decision))
    }

    /// [`Engine::check`] for the holder of license key `key`: the decision a key checkout would
    /// get now, with no lease and no activation. `Ok(None)` when no license has the key.
    pub async fn check_by_license_key(
        &self,
        key: &str,
        req: ConsumeRequest,
    ) -> Result<Option<Decision<Grant>>, EngineError> {
        let decision = self.decide_by_license_key(key, req, false).await?;
        if let Some(decision) = &decision {
            self.inner.metrics.record(Operation::Check, decision);
        }
        Ok(decision)
    }

    /// Consumes (`commit`) or checks `req` on the license whose key is `key`, as the key's
    /// holder; `Ok(None)` when no license has the key.
    async fn decide_by_license_key(
        &self,
        key: &str,
        mut req: ConsumeRequest,
        commit: bool,
    ) -> Result<Option<Decision<Grant>>, EngineError> {
        let Some(license) = self.directory().license_by_key(key).map(|l| l.id) else { return Ok(None) };
        req.consumer = key_holder(license);
        let req = Arc::new(self.located(req));
        let decide = || async {
            let consume = |reply| Consume { req: Arc::clone(&req), commit, counts_denial: commit, reply };
            let answer = self.call(license, consume).await?;
            Ok(answer
                .unwrap_or_else(|| Decision::Denied(Denial::new(ErrorCode::NoLicenseFound, "no license has this key"))))
        };
        match req.idempotency.filter(|_| commit) {
            Some(idempotency) => self.at_most_once(idempotency, || vec![license], decide).await.map(Some),
            None => decide().await.map(Some),
        }
    }

    /// The first activation of `activated`'s key: the sibling rule revokes the licensee's other
    /// keys of the product (unless the license opts out), then the activation is remembered, so
    /// a crash in between repeats the revocations at the next checkout rather than skipping them.
    async fn activate_key(&self, activated: &License) -> Result<(), EngineError> {
        if activated.revokes_sibling_keys {
            self.revoke_keyed_siblings(activated).await?;
        }
        match self.admin(activated.id, AdminOp::KeyActivated).await {
            Ok(_) | Err(AdminError::NotFound(_)) => Ok(()),
            Err(AdminError::Engine(e)) => Err(e),
            Err(other) => unreachable!("remembering an activation is not refused: {other}"),
        }
    }

    async fn revoke_keyed_siblings(&self, activated: &License) -> Result<(), EngineError> {
        let siblings = self.directory().keyed_siblings(activated);
        for sibling in siblings {
            let reason = format!("superseded by the activation of the license key of license {}", activated.id);
            match self.revoke(sibling, reason).await {
                Ok(_) => {}
                Err(AdminError::Engine(e)) => return Err(e),
                // A revocation only fails otherwise for a license that is gone: nothing to revoke.
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// The consumer whose API key is `api_key`, unless it is disabled.
    pub fn authenticate(&self, api_key: &str) -> Option<ConsumerId> {
        let directory = self.directory();
        let id = directory.consumer_by_key_hash(&sha256(api_key.as_bytes()))?;
        directory.consumer(id).filter(|c| !c.disabled).map(|c| c.id)
    }

    /// Authenticates a connection that sends many requests with one API key, as
    /// [`Engine::authenticate`]; [`Engine::still_authenticated`] re-checks it cheaply.
    pub fn authenticate_connection(&self, api_key: &str) -> Option<Authentication> {
        let checked_at = self.inner.credentials_epoch.load(Ordering::Acquire);
        let consumer = self.authenticate(api_key)?;
        Some(Authentication {
            consumer,
            key_sha256: sha256(api_key.as_bytes()),
            checked_at: AtomicU64::new(checked_at),
        })
    }

    /// Whether `authentication` still holds: its key is still its consumer's, and the consumer
    /// is neither disabled nor deleted. One atomic read unless a consumer changed since it was
    /// last checked, so a rotated key is refused from the next request on.
    pub fn still_authenticated(&self, authentication: &Authentication) -> bool {
        let epoch = self.inner.credentials_epoch.load(Ordering::Acquire);
        if authentication.checked_at.load(Ordering::Relaxed) == epoch {
            return true;
        }
        let valid = self
            .directory()
            .consumer(authentication.consumer)
            .is_some_and(|c| !c.disabled && c.api_key_sha256 == authentication.key_sha256);
        if valid {
            authentication.checked_at.store(epoch, Ordering::Relaxed);
        }
        valid
    }

    /// The latest counts license `id`'s actor published, without a message to it.
    pub fn gauge(&self, id: LicenseId) -> Option<GaugeReading> {
        self.inner.router.gauge(id)
    }

    /// Whether the journal takes changes now; `Err` says why not (`/healthz`).
    pub fn storage(&self) -> Result<(), crate::journal::JournalError> {
        self.inner.shared.journal.writable()
    }

    /// Grants and denials answered since the engine started, for `/metrics`.
    pub fn metrics(&self) -> &EngineMetrics {
        &self.inner.metrics
    }

    /// Live leases over every license, as their actors last published them (see
    /// [`Engine::gauge`]; leases that expired since a license's last request still count).
    pub fn live_leases(&self) -> u64 {
        self.inner.router.live_leases()
    }

    // ---- several nodes ----

    /// Applies `entries`, which another node of the cluster journaled to the directory's
    /// stream: this node's directory follows the cluster's, and learns the licenses created
    /// elsewhere. Nothing is journaled again; events are left to the node that recorded them.
    pub fn replicate(&self, entries: &[JournalEntry]) {
        let mut directory = self.inner.shared.directory.write().unwrap_or_else(|p| p.into_inner());
        for entry in entries {
            let created = match &entry.change {
                Change::Directory(event) => event.new_license().cloned(),
                Change::License { event: LicenseEvent::Terms(terms), .. } => Some(Arc::clone(terms)),
                Change::License { .. } | Change::Event(_) => None,
            };
            crate::replay::apply_to_directory(&mut directory, entry);
            let consumers = matches!(&entry.change, Change::Directory(event) if event.changes_credentials());
            self.directory_changed(consumers, created.as_ref(), entry.at);
        }
    }

    /// What follows a change of the directory, made here or by another node, besides the change
    /// itself: connections check their credentials again when a consumer changed, and a license
    /// new to this node gets its actor. Called under the directory's lock.
    fn directory_changed(&self, consumers: bool, created: Option<&Arc<License>>, at: Timestamp) {
        // After the change: a connection that sees the new epoch sees the new consumer.
        if consumers {
            self.inner.credentials_epoch.fetch_add(1, Ordering::Release);
        }
        if let Some(license) = created.filter(|l| !self.inner.router.contains(l.id)) {
            self.inner.add_license(LicenseState::new(Arc::clone(license)), at, None);
        }
    }

    /// Takes on `licenses`, the states a partition's stream holds, now that this node owns the
    /// partition: the licenses this node did not know start from them (the journal hands the
    /// others their states through [`Journal::rebuild`]).
    pub fn adopt(&self, licenses: Vec<(LicenseState, Timestamp)>) {
        let mut directory = self.inner.shared.directory.write().unwrap_or_else(|p| p.into_inner());
        for (state, at) in licenses {
            let license = state.license();
            // A renewal or a release names only the lease: its license must be found before
            // the license's actor has taken its new state.
            for lease in state.leases() {
                self.inner.shared.lease_index.insert(lease.id, license.id);
            }
            if self.inner.router.contains(license.id) {
                continue;
            }
            if directory.license(license.id).is_none() {
                directory.set_license(Arc::clone(license));
            }
            self.inner.add_license(state, at, None);
        }
    }

    // ---- administration ----

    /// Checks and applies a directory change and journals it, under the directory lock so that
    /// the journal's order is the order of application; returns once it is durable.
    async fn record_directory(
        &self,
        change: impl FnOnce(&Directory) -> Result<DirectoryEvent, AdminError>,
    ) -> Result<(), AdminError> {
        self.record_directory_or(change).await
    }

    /// [`Engine::record_directory`] for a change that `change` may refuse with an error of its
    /// own kind.
    async fn record_directory_or<E: From<AdminError>>(
        &self,
        change: impl FnOnce(&Directory) -> Result<DirectoryEvent, E>,
    ) -> Result<(), E> {
        self.inner.shared.journal.directory_writable().map_err(AdminError::from)?;
        let durability = {
            let mut directory = self.inner.shared.directory.write().unwrap_or_else(|p| p.into_inner());
            let event = change(&directory)?;
            let recorded = Event::of_directory_change(&event, &directory, Actor::clone(&self.actor));
            directory.apply(&event);
            let at = self.now();
            self.directory_changed(event.changes_credentials(), event.new_license(), at);
            let journal = &self.inner.shared.journal;
            let changed = journal.append(&JournalEntry { at, change: Change::Directory(event) });
            match recorded {
                // Appended after its change, so durable only once the change is.
                Some(recorded) if !matches!(changed, Durability::Failed(_)) => {
                    (changed, self.inner.shared.append_event(at, recorded, None))
                }
                _ => (changed, Durability::Now),
            }
        };
        let (changed, recorded) = durability;
        changed.wait().await.map_err(AdminError::from)?;
        Ok(recorded.wait().await.map_err(AdminError::from)?)
    }

    /// Claims `idempotency`'s key for a request that is not a checkout (an admin change, a
    /// renewal, a release) while it is carried out; a second request with the key meanwhile is
    /// refused ([`EngineError::IdempotencyKeyInFlight`]). The claim finds and keeps the request's
    /// answer ([`Answering::remembered`], [`Answering::remember`]).
    pub fn answering(&self, idempotency: Idempotency) -> Result<Answering<'_>, EngineError> {
        match self.inner.answering.entry(idempotency.key) {
            Entry::Occupied(_) => Err(EngineError::IdempotencyKeyInFlight),
            Entry::Vacant(slot) => {
                slot.insert(());
                Ok(Answering { engine: self, idempotency })
            }
        }
    }

    /// The ids and secrets for a new object: fresh ones, or those derived from the key of the
    /// request `once` that creates it, so that its retry finds the object instead of making a
    /// second one.
    fn ids_for(&self, once: Option<&Idempotency>) -> Arc<dyn IdSource> {
        match once {
            Some(idempotency) => Arc::new(SeededIds::for_idempotency_key(&idempotency.key)),
            None => Arc::clone(&self.inner.shared.ids),
        }
    }

    /// Creates a licensee.
    pub async fn create_licensee(&self, new: NewLicensee) -> Result<Licensee, AdminError> {
        self.new_licensee(new, None).await
    }

    /// Creates a licensee for the request with `idempotency`: its retry answers the licensee it
    /// created (as it is now) instead of creating a second one.
    pub async fn create_licensee_once(
        &self,
        idempotency: &Idempotency,
        new: NewLicensee,
    ) -> Result<Licensee, AdminError> {
        self.new_licensee(new, Some(idempotency)).await
    }

    async fn new_licensee(&self, new: NewLicensee, once: Option<&Idempotency>) -> Result<Licensee, AdminError> {
        check_name("name", &new.name)?;
        let ids = self.ids_for(once);
        let mut licensee =
            Licensee { id: LicenseeId(ids.uuid()), name: new.name, kind: new.kind, external_id: new.external_id };
        self.record_directory(|dir| {
            if let Some(created) = dir.licensee(licensee.id) {
                licensee = created.clone();
            }
            Ok(DirectoryEvent::Licensee(licensee.clone()))
        })
        .await?;
        Ok(licensee)
    }

    /// Creates a consumer; the API key is returned only here.
    pub async fn create_consumer(&self, new: NewConsumer) -> Result<(Consumer, String), AdminError> {
        self.new_consumer(new, None).await
    }

    /// Creates a consumer for the request with `idempotency`: its retry answers the consumer it
    /// created and the same API key (derived from the key, never stored).
    pub async fn create_consumer_once(
        &self,
        idempotency: &Idempotency,
        new: NewConsumer,
    ) -> Result<(Consumer, String), AdminError> {
        self.new_consumer(new, Some(idempotency)).await
    }

    async fn new_consumer(
        &self,
        new: NewConsumer,
        once: Option<&Idempotency>,
    ) -> Result<(Consumer, String), AdminError> {
        check_name("name", &new.name)?;
        if new.licensees.is_empty() {
            return Err(AdminError::Invalid("a consumer belongs to at least one licensee".into()));
        }
        let ids = self.ids_for(once);
        let api_key = new_api_key(&*ids);
        let id = ConsumerId(ids.uuid());
        let mut consumer = Consumer {
            id,
            name: new.name,
            kind: new.kind,
            licensees: new.licensees,
            email: new.email,
            api_key_sha256: sha256(api_key.as_bytes()),
            external_id: new.external_id,
            disabled: false,
            identity: None,
        };
        self.record_directory(|dir| {
            if let Some(created) = dir.consumer(consumer.id) {
                consumer = created.clone();
            } else if let Some(missing) = consumer.licensees.iter().find(|l| dir.licensee(**l).is_none()) {
                return Err(AdminError::NotFound(format!("licensee {missing}")));
            }
            Ok(DirectoryEvent::Consumer(consumer.clone()))
        })
        .await?;
        Ok((consumer, api_key))
    }

    /// Gives consumer `id` a new API key, returned only here (only its digest is kept); the old
    /// key is refused from this moment.
    pub async fn rotate_api_key(&self, id: ConsumerId) -> Result<String, AdminError> {
        self.new_api_key_for(id, None).await
    }

    /// Rotates consumer `id`'s API key for the request with `idempotency`: its retry gives the
    /// same key (derived from the request's key, never stored).
    pub async fn rotate_api_key_once(&self, idempotency: &Idempotency, id: ConsumerId) -> Result<String, AdminError> {
        self.new_api_key_for(id, Some(idempotency)).await
    }

    async fn new_api_key_for(&self, id: ConsumerId, once: Option<&Idempotency>) -> Result<String, AdminError> {
        let api_key = new_api_key(&*self.ids_for(once));
        let digest = sha256(api_key.as_bytes());
        self.record_directory(|dir| {
            let mut consumer =
                dir.consumer(id).cloned().ok_or_else(|| AdminError::NotFound(format!("consumer {id}")))?;
            consumer.api_key_sha256 = digest;
            Ok(DirectoryEvent::Consumer(consumer))
        })
        .await?;
        Ok(api_key)
    }

    /// Creates a product with its features and tiers.
    pub async fn create_product(&self, new: NewProduct) -> Result<Product, AdminError> {
        self.new_product(new, None).await
    }

    /// Creates a product for the request with `idempotency`: its retry answers the product it
    /// created instead of a conflict.
    pub async fn create_product_once(&self, idempotency: &Idempotency, new: NewProduct) -> Result<Product, AdminError> {
        self.new_product(new, Some(idempotency)).await
    }

    async fn new_product(&self, new: NewProduct, once: Option<&Idempotency>) -> Result<Product, AdminError> {
        let mut product = Product {
            id: ProductId(self.ids_for(once).uuid()),
            name: new.name,
            features: new.features,
            tiers: new.tiers,
        };
        product.validate().map_err(|e| AdminError::Invalid(e.to_string()))?;
        self.record_directory(|dir| {
            if let Some(created) = dir.product(product.id) {
                product = created.clone();
            } else if dir.product_named(&product.name).is_some() {
                return Err(AdminError::Conflict(format!("a product is already called {:?}", product.name)));
            }
            Ok(DirectoryEvent::Product(product.clone()))
        })
        .await?;
        Ok(product)
    }

    fn generate_license_key(ids: &dyn IdSource) -> String {
        const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        let mut bytes = [0u8; 20];
        ids.fill(&mut bytes);
        let chars: Vec<char> = bytes.iter().map(|b| char::from(ALPHABET[usize::from(b % 32)])).collect();
        chars.chunks(5).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join("-")
    }

    fn license_terms(&self, new: NewLicense, directory: &Directory, ids: &dyn IdSource) -> Result<License, AdminError> {
        if directory.licensee(new.licensee).is_none() {
            return Err(AdminError::NotFound(format!("licensee {}", new.licensee)));
        }
        self.terms_of(new, directory, ids)
    }

    /// The terms `new` asks for, checked against the catalog (its licensee is not looked up).
    fn terms_of(&self, new: NewLicense, directory: &Directory, ids: &dyn IdSource) -> Result<License, AdminError> {
        let product = directory
            .product_named(&new.product)
            .ok_or_else(|| AdminError::NotFound(format!("product {:?}", new.product)))?;
        let features = match &new.tier {
            Some(tier) => product.tier_features(tier).map_err(|e| AdminError::Invalid(e.to_string()))?,
            None => product.features.iter().filter(|f| !f.display_only).map(|f| f.name.clone()).collect(),
        };
        let tier_seats = new.tier.as_deref().and_then(|t| product.tier(t)).and_then(|t| t.max_users);
        let credit = match (new.credit, tier_seats) {
            (Some(credit), _) => credit,
            (None, Some(seats)) => {
                Credit { dimension: Dimension::Seats, qty: seats, enforcement: Enforcement::Enforced }
            }
            (None, None) => return Err(AdminError::Invalid("a credit is needed (the tier sets no max_users)".into())),
        };
        let license_key = match new.license_key {
            LicenseKeyRequest::None => None,
            LicenseKeyRequest::Generate => Some(Engine::generate_license_key(ids)),
            LicenseKeyRequest::Given(key) => Some(key),
        };
        if let Some(entitlement) = new.entitlement {
            check_entitlement(directory, new.licensee, entitlement)?;
        }
        let id = LicenseId::placed(ids.uuid(), new.licensee);
        if let Some(key) = &license_key {
            if !is_valid_license_key(key) {
                return Err(AdminError::Invalid(
                    "license key must be 16 to 64 characters of A-Z, a-z, 0-9, '_' and '-'".into(),
                ));
            }
            if directory.license_by_key(key).is_some_and(|holder| holder.id != id) {
                return Err(AdminError::Conflict("this license key is taken".into()));
            }
        }
        let license = License {
            id,
            licensee: new.licensee,
            product: product.id,
            product_name: crate::interning::name(&product.name),
            tier: new.tier,
            features,
            valid_from: new.valid_from.unwrap_or_else(|| self.now()),
            valid_until: new.valid_until,
            status: LicenseStatus::Active,
            license_key,
            revokes_sibling_keys: new.revokes_sibling_keys,
            properties: new.properties,
            credit,
            model: new.model.interned(),
            feature_overrides: Default::default(),
            key_activated_at: None,
            expiry_recorded: None,
            entitlement: new.entitlement,
        };
        license.validate().map_err(|e| AdminError::Invalid(e.to_string()))?;
        Ok(license)
    }

    /// Creates a license.
    pub async fn create_license(&self, new: NewLicense) -> Result<Arc<License>, AdminError> {
        self.new_license(new, None).await
    }

    /// Creates a license for the request with `idempotency`: its retry answers the license it
    /// created (its terms as they are now) instead of a second license.
    pub async fn create_license_once(
        &self,
        idempotency: &Idempotency,
        new: NewLicense,
    ) -> Result<Arc<License>, AdminError> {
        self.new_license(new, Some(idempotency)).await
    }

    async fn new_license(&self, new: NewLicense, once: Option<&Idempotency>) -> Result<Arc<License>, AdminError> {
        self.inner.shared.journal.directory_writable()?;
        let ids = self.ids_for(once);
        let (license, durability) = {
            let mut directory = self.inner.shared.directory.write().unwrap_or_else(|p| p.into_inner());
            let terms = self.license_terms(new, &directory, &*ids)?;
            if let Some(created) = directory.license(terms.id) {
                return Ok(Arc::clone(created));
            }
            let license = Arc::new(terms);
            directory.set_license(Arc::clone(&license));
            let now = self.now();
            let entry = JournalEntry {
                at: now,
                change: Change::License { license: license.id, event: LicenseEvent::Terms(Arc::clone(&license)) },
            };
            let journal = &self.inner.shared.journal;
            let created = journal.append_new_license(&entry);
            // Appended after its change, so durable only once the change is.
            let durability = if matches!(created, Durability::Failed(_)) {
                created
            } else {
                let event = Event::of_license("license.created", &license, Actor::clone(&self.actor));
                self.inner.shared.append_event(now, event, None)
            };
            self.inner.add_license(LicenseState::new(Arc::clone(&license)), now, None);
            (license, durability)
        };
        durability.wait().await?;
        Ok(license)
    }

    /// Records `license.expired` for every license whose `valid_until` has passed since it was
    /// last recorded (run it every so often: `leasehold serve` does, every
    /// [`EXPIRY_CHECK_EVERY`]); how many it recorded. The record is durable with the license,
    /// so each end is recorded once, across restarts.
    pub async fn record_expiries(&self) -> Result<usize, EngineError> {
        let now = self.now();
        let due: Vec<LicenseId> = self
            .directory()
            .licenses()
            .filter(|l| l.valid_until.is_some_and(|end| end <= now && l.expiry_recorded != Some(end)))
            .map(|l| l.id)
            .collect();
        let mut recorded = 0;
        for license in due {
            match self.admin(license, AdminOp::RecordExpiry).await {
                Ok(AdminAnswer::Terms(_)) => recorded += 1,
                Ok(_) => {}
                Err(AdminError::Engine(e)) => return Err(e),
                // Deleted meanwhile: nothing to record.
                Err(_) => {}
            }
        }
        Ok(recorded)
    }

    /// Records `event`, for a change made outside the engine (a signing key rotated); returns
    /// once it is durable.
    pub async fn record(&self, event: Event) -> Result<(), EngineError> {
        Ok(self.inner.shared.append_event(self.now(), event, None).wait().await?)
    }

    /// `Ok` when the journal takes changes to the directory now (events among them); on a node
    /// of a cluster, `Err` names the node that does. Asked before a change made outside the
    /// engine (a signing key's rotation) that an event must record.
    pub fn directory_writable(&self) -> Result<(), EngineError> {
        Ok(self.inner.shared.journal.directory_writable()?)
    }

    /// How many events were recorded since the engine started.
    pub fn events_recorded(&self) -> u64 {
        self.inner.shared.events_recorded.load(Ordering::Relaxed)
    }

    /// The recorded events `query` wants, oldest first.
    pub fn events(&self, query: &EventQuery) -> Result<EventPage, EngineError> {
        Ok(self.inner.shared.journal.events(query)?)
    }

    /// The id of the newest durable event (0 when none).
    pub fn last_event_id(&self) -> u64 {
        self.inner.shared.journal.last_event_id()
    }

    /// The terms of license `id`.
    pub fn license(&self, id: LicenseId) -> Option<Arc<License>> {
        self.directory().license(id).cloned()
    }

    async fn admin(&self, license: LicenseId, op: AdminOp) -> Result<AdminAnswer, AdminError> {
        let (reply, answer) = oneshot::channel();
        if !self.inner.router.send(license, Admin { op, reply, actor: Actor::clone(&self.actor) })? {
            return Err(AdminError::NotFound(format!("license {license}")));
        }
        let answered = answer.await.map_err(|_| EngineError::Stopped)??;
        Ok(answered.once_durable().await?)
    }

    /// The usage report `query` asks for. The open usage records are closed first (each
    /// license asked at once, then each waited for), so the report counts everything answered
    /// before it was asked for.
    pub async fn usage_report(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, EngineError> {
        let open: Vec<LicenseId> = self.inner.shared.usage_open.iter().map(|entry| *entry.key()).collect();
        let mut closing = Vec::with_capacity(open.len());
        for license in open {
            let (reply, answer) = oneshot::channel();
            if self.inner.router.send(license, Admin { op: AdminOp::CloseUsage, reply, actor: Actor::system() })? {
                closing.push(answer);
            } else {
                // Gone from the router (deleted): nothing is left to close.
                self.inner.shared.usage_open.remove(&license);
            }
        }
        for answer in closing {
            match answer.await.map_err(|_| EngineError::Stopped)? {
                Ok(answered) => drop(answered.once_durable().await?),
                Err(AdminError::Engine(e)) => return Err(e),
                // Deleted meanwhile: its record was closed before the deletion.
                Err(_) => {}
            }
        }
        Ok(self.inner.shared.journal.usage(query)?)
    }

    async fn admin_terms(&self, license: LicenseId, op: AdminOp) -> Result<Arc<License>, AdminError> {
        match self.admin(license, op).await? {
            AdminAnswer::Terms(terms) => Ok(terms),
            other => unreachable!("a terms change answers with terms, not {other:?}"),
        }
    }

    /// Revokes a license for good: it grants nothing more and renewals fail.
    pub async fn revoke(&self, license: LicenseId, reason: impl Into<String>) -> Result<Arc<License>, AdminError> {
        let status = LicenseStatus::Revoked { reason: reason.into(), at: self.now() };
        self.admin_terms(license, AdminOp::SetStatus(status)).await
    }

    /// Deactivates a license until it is reactivated.
    pub async fn deactivate(&self, license: LicenseId) -> Result<Arc<License>, AdminError> {
        self.admin_terms(license, AdminOp::SetStatus(LicenseStatus::Deactivated)).await
    }

    /// Reactivates a deactivated license. A revoked license stays revoked.
    pub async fn reactivate(&self, license: LicenseId) -> Result<Arc<License>, AdminError> {
        if let Some(LicenseStatus::Revoked { .. }) = self.license(license).map(|l| l.status.clone()) {
            return Err(AdminError::Conflict("a revoked license cannot be reactivated".into()));
        }
        self.admin_terms(license, AdminOp::SetStatus(LicenseStatus::Active)).await
    }

    /// Replaces a license's terms (same id).
    pub async fn update_license(&self, license: License) -> Result<Arc<License>, AdminError> {
        license.validate().map_err(|e| AdminError::Invalid(e.to_string()))?;
        self.admin_terms(license.id, AdminOp::SetTerms(Box::new(license))).await
    }

    /// Changes some of a license's terms (SPEC section 10): the next decision and the next token
    /// use them; live leases keep theirs until they renew, and fewer seats than live sessions
    /// revoke nothing (new sessions wait until enough end).
    pub async fn patch_license(&self, license: LicenseId, patch: LicensePatch) -> Result<Arc<License>, AdminError> {
        let product = {
            let directory = self.directory();
            let terms = directory.license(license).ok_or_else(|| AdminError::NotFound(format!("license {license}")))?;
            if let Some(Some(entitlement)) = patch.entitlement {
                check_entitlement(&directory, terms.licensee, entitlement)?;
            }
            directory
                .product(terms.product)
                .cloned()
                .ok_or_else(|| AdminError::NotFound(format!("product {}", terms.product)))?
        };
        self.admin_terms(license, AdminOp::Patch(Box::new((patch, product)))).await
    }

    /// Reserves a seat of `license` for `consumer` (required to consume a named-seat license).
    pub async fn assign(&self, license: LicenseId, consumer: ConsumerId) -> Result<Arc<License>, AdminError> {
        let may_use = {
            let directory = self.directory();
            let terms = directory.license(license).ok_or_else(|| AdminError::NotFound(format!("license {license}")))?;
            let consumer =
                directory.consumer(consumer).ok_or_else(|| AdminError::NotFound(format!("consumer {consumer}")))?;
            consumer.licensees.contains(&terms.licensee)
        };
        if !may_use {
            return Err(AdminError::Invalid("the consumer does not belong to the license's licensee".into()));
        }
        self.admin_terms(license, AdminOp::Assign(consumer)).await
    }

    /// Removes `consumer`'s seat reservation on `license`.
    pub async fn unassign(&self, license: LicenseId, consumer: ConsumerId) -> Result<Arc<License>, AdminError> {
        self.admin_terms(license, AdminOp::Unassign(consumer)).await
    }

    /// Seats, leases and credit of `license` now.
    pub async fn usage(&self, license: LicenseId) -> Result<Usage, AdminError> {
        match self.admin(license, AdminOp::Usage).await? {
            AdminAnswer::Usage(usage) => Ok(usage),
            other => unreachable!("a usage read answers with usage, not {other:?}"),
        }
    }

    /// The live leases of `license`.
    pub async fn leases(&self, license: LicenseId) -> Result<Vec<Lease>, AdminError> {
        match self.admin(license, AdminOp::Leases).await? {
            AdminAnswer::Leases(leases) => Ok(leases),
            other => unreachable!("a lease listing answers with leases, not {other:?}"),
        }
    }

    /// The machines of node-locked license `license`: when each was first and last seen, and
    /// its live leases.
    pub async fn machines(&self, license: LicenseId) -> Result<Vec<Machine>, AdminError> {
        match self.admin(license, AdminOp::Machines).await? {
            AdminAnswer::Machines(machines) => Ok(machines),
            other => unreachable!("a machine listing answers with machines, not {other:?}"),
        }
    }

    /// Releases machine `hw`'s leases of `license` and frees its slot, so that the license can
    /// move to another machine.
    pub async fn free_machine(&self, license: LicenseId, hw: &str) -> Result<(), AdminError> {
        self.admin(license, AdminOp::FreeMachine(Arc::from(hw))).await.map(drop)
    }

    /// Deletes license `license`. With live leases, only when `force`: they end with it.
    pub async fn delete_license(&self, license: LicenseId, force: bool) -> Result<(), AdminError> {
        self.admin(license, AdminOp::Delete { force }).await?;
        self.inner.router.remove(license);
        self.inner.shared.directory.write().unwrap_or_else(|p| p.into_inner()).remove_license(license);
        Ok(())
    }

    /// Changes a licensee's name or external id.
    pub async fn patch_licensee(&self, id: LicenseeId, patch: LicenseePatch) -> Result<Licensee, AdminError> {
        if let Some(name) = &patch.name {
            check_name("name", name)?;
        }
        let mut changed = None;
        self.record_directory(|dir| {
            let mut licensee =
                dir.licensee(id).cloned().ok_or_else(|| AdminError::NotFound(format!("licensee {id}")))?;
            patch.apply(&mut licensee);
            changed = Some(licensee.clone());
            Ok(DirectoryEvent::Licensee(licensee))
        })
        .await?;
        Ok(changed.expect("a recorded change was made"))
    }

    /// Changes a consumer: name, contact, external id, licensees, or whether it is disabled (a
    /// disabled consumer's key is refused and its leases are not renewed).
    pub async fn patch_consumer(&self, id: ConsumerId, patch: ConsumerPatch) -> Result<Consumer, AdminError> {
        if let Some(name) = &patch.name {
            check_name("name", name)?;
        }
        if patch.licensees.as_ref().is_some_and(Vec::is_empty) {
            return Err(AdminError::Invalid("licensees: a consumer belongs to at least one licensee".into()));
        }
        let mut changed = None;
        self.record_directory(|dir| {
            let mut consumer =
                dir.consumer(id).cloned().ok_or_else(|| AdminError::NotFound(format!("consumer {id}")))?;
            if let Some(missing) = patch.licensees.iter().flatten().find(|l| dir.licensee(**l).is_none()) {
                return Err(AdminError::NotFound(format!("licensee {missing}")));
            }
            patch.apply(&mut consumer);
            changed = Some(consumer.clone());
            Ok(DirectoryEvent::Consumer(consumer))
        })
        .await?;
        Ok(changed.expect("a recorded change was made"))
    }

    /// Adds features and adds or replaces tiers of product `name`; every license of a changed
    /// tier gets the tier's new features (with its own overrides) for its next decision and
    /// token.
    pub async fn patch_product(&self, name: &str, patch: ProductPatch) -> Result<Product, AdminError> {
        let mut changed = None;
        self.record_directory(|dir| {
            let product = dir.product_named(name).ok_or_else(|| AdminError::NotFound(format!("product {name:?}")))?;
            let product = patch.apply(product)?;
            changed = Some(product.clone());
            Ok(DirectoryEvent::Product(product))
        })
        .await?;
        let product = changed.expect("a recorded change was made");
        let retiered: Vec<LicenseId> = self
            .directory()
            .licenses()
            .filter(|l| l.product == product.id)
            .filter(|l| l.tier.as_ref().is_some_and(|t| patch.tiers.iter().any(|changed| changed.name == *t)))
            .map(|l| l.id)
            .collect();
        for license in retiered {
            let refresh =
                LicensePatch { tier: self.license(license).and_then(|l| l.tier.clone()), ..Default::default() };
            match self.admin(license, AdminOp::Patch(Box::new((refresh, product.clone())))).await {
                Ok(_) | Err(AdminError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(product)
    }

    /// Deletes a consumer: its leases end and its seat reservations go first.
    pub async fn delete_consumer(&self, id: ConsumerId) -> Result<(), AdminError> {
        let licenses: Vec<LicenseId> = {
            let directory = self.directory();
            let consumer = directory.consumer(id).ok_or_else(|| AdminError::NotFound(format!("consumer {id}")))?;
            consumer.licensees.iter().flat_map(|l| directory.licenses_of(*l)).map(|l| l.id).collect()
        };
        for license in licenses {
            match self.admin(license, AdminOp::RemoveConsumer(id)).await {
                Ok(_) | Err(AdminError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.record_directory(|dir| {
            dir.consumer(id).ok_or_else(|| AdminError::NotFound(format!("consumer {id}")))?;
            Ok(DirectoryEvent::ConsumerDeleted(id))
        })
        .await
    }

    /// Deletes a licensee that has no licenses and no consumers left.
    pub async fn delete_licensee(&self, id: LicenseeId) -> Result<(), AdminError> {
        self.record_directory(|dir| {
            dir.licensee(id).ok_or_else(|| AdminError::NotFound(format!("licensee {id}")))?;
            let licenses = dir.licenses_of(id).count();
            let consumers = dir.consumers().filter(|c| c.licensees.contains(&id)).count();
            let credentials = dir.credentials().filter(|c| c.licensee == Some(id)).count();
            if licenses + consumers + credentials > 0 {
                return Err(AdminError::Conflict(format!(
                    "the licensee has {licenses} licenses, {consumers} consumers and {credentials} credentials; \
                     delete them first"
                )));
            }
            Ok(DirectoryEvent::LicenseeDeleted(id))
        })
        .await
    }

    /// Creates a webhook that is sent the events recorded from now on.
    pub async fn create_webhook(&self, new: NewWebhook) -> Result<Webhook, AdminError> {
        self.new_webhook(new, None).await
    }

    /// Creates a webhook for the request with `idempotency`: its retry answers the webhook it
    /// created (as it is now) instead of a second one.
    pub async fn create_webhook_once(&self, idempotency: &Idempotency, new: NewWebhook) -> Result<Webhook, AdminError> {
        self.new_webhook(new, Some(idempotency)).await
    }

    async fn new_webhook(&self, new: NewWebhook, once: Option<&Idempotency>) -> Result<Webhook, AdminError> {
        let id = WebhookId(self.ids_for(once).uuid());
        let mut webhook = new_webhook(id, new, self.last_event_id())?;
        self.record_directory(|dir| {
            if let Some(created) = dir.webhook(id) {
                webhook = created.clone();
            }
            Ok(DirectoryEvent::Webhook(webhook.clone()))
        })
        .await?;
        Ok(webhook)
    }

    /// Changes a webhook's URL, event types, description, or whether it is enabled.
    pub async fn patch_webhook(&self, id: WebhookId, patch: WebhookPatch) -> Result<Webhook, AdminError> {
        let mut changed = None;
        self.record_directory(|dir| {
            let mut webhook = dir.webhook(id).cloned().ok_or_else(|| AdminError::NotFound(format!("webhook {id}")))?;
            patch.apply(&mut webhook)?;
            changed = Some(webhook.clone());
            Ok(DirectoryEvent::Webhook(webhook))
        })
        .await?;
        Ok(changed.expect("a recorded change was made"))
    }

    /// Deletes a webhook: nothing more is delivered to it.
    pub async fn delete_webhook(&self, id: WebhookId) -> Result<(), AdminError> {
        self.record_directory(|dir| {
            dir.webhook(id).ok_or_else(|| AdminError::NotFound(format!("webhook {id}")))?;
            Ok(DirectoryEvent::WebhookDeleted(id))
        })
        .await
    }

    /// Ends a lease as an administrator, whatever the model says about releases.
    pub async fn force_release(&self, lease: LeaseId) -> Result<Decision<Released>, EngineError> {
        self.release(ReleaseRequest { by: crate::decide::Releaser::Admin, lease_id: lease, used: Default::default() })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::license::Inject;
    use crate::journal::MemoryJournal;
    use crate::model::{ConsumerKind, LicenseeKind, SessionAnchor};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime")
    }

    /// A one-seat license, a seat per hardware id, and a consumer of it.
    async fn one_seat(engine: &Engine) -> (LicenseId, ConsumerId) {
        let licensee = NewLicensee { name: "Acme".into(), kind: LicenseeKind::Organization, external_id: None };
        let licensee = engine.create_licensee(licensee).await.expect("a licensee");
        let consumer = NewConsumer {
            name: "cad".into(),
            kind: ConsumerKind::Device,
            licensees: vec![licensee.id],
            email: None,
            external_id: None,
        };
        let (consumer, _) = engine.create_consumer(consumer).await.expect("a consumer");
        engine.create_product(NewProduct { name: "Solo".into(), features: vec![], tiers: vec![] }).await.unwrap();
        let seat = Credit { dimension: Dimension::Seats, qty: 1, enforcement: Enforcement::Enforced };
        let mut new = NewLicense::new(licensee.id, "Solo", seat);
        new.model.session_anchors = vec![SessionAnchor::Hw];
        (engine.create_license(new).await.expect("a license").id, consumer.id)
    }

    #[test]
    fn a_grant_past_the_seats_halts_the_license_and_is_never_journaled() {
        let journal = Arc::new(MemoryJournal::new());
        let engine = Engine::builder().journal(Arc::clone(&journal) as _).workers(1).build().expect("an engine");
        runtime().block_on(async {
            let (license, consumer) = one_seat(&engine).await;
            // A lease for hardware "a" that the rules would grant now, not taken ...
            let unused = engine.check(ConsumeRequest::new(consumer, "Solo").on_hardware("a")).await.unwrap();
            let unused = unused.granted().expect("a free seat").lease;
            // ... then the one seat goes to hardware "b".
            let taken = engine.consume(ConsumeRequest::new(consumer, "Solo").on_hardware("b")).await.unwrap();
            assert!(taken.granted().is_some());
            let journaled = journal.len();

            // The hook: issue the first lease anyway, a second seat on a one-seat license.
            let event = LicenseEvent::LeaseIssued { lease: unused, replaces: None };
            let injected = engine.call(license, |reply| Inject { event, reply }).await;
            match injected {
                Err(EngineError::Halted(violation)) => {
                    assert_eq!(violation.license, license);
                    assert!(violation.what.contains("2 seats in use on a license of 1 seats"), "{violation}");
                }
                other => panic!("the over-allocation was not caught: {other:?}"),
            }
            assert_eq!(journal.len(), journaled, "the breaking change is not journaled");

            // The license answers nothing more; recovering its journal gives the state before.
            let next = engine.consume(ConsumeRequest::new(consumer, "Solo").on_hardware("c")).await;
            assert!(matches!(next, Err(EngineError::Halted(_))), "a halted license still answers: {next:?}");
            let recovered = Recovered::from_entries(&journal.entries());
            assert!(recovered.halted.is_empty());
            assert_eq!(recovered.licenses[&license].0.usage().seats_in_use, 1);
        });
    }

    #[test]
    fn recovery_halts_a_license_whose_journal_over_allocates() {
        let journal = Arc::new(MemoryJournal::new());
        let engine = Engine::builder().journal(Arc::clone(&journal) as _).workers(1).build().expect("an engine");
        let (license, entries) = runtime().block_on(async {
            let (license, consumer) = one_seat(&engine).await;
            let unused = engine.check(ConsumeRequest::new(consumer, "Solo").on_hardware("a")).await.unwrap();
            let unused = unused.granted().expect("a free seat").lease;
            engine.consume(ConsumeRequest::new(consumer, "Solo").on_hardware("b")).await.unwrap();
            // A journal written by a build whose rules over-allocated.
            let mut entries = journal.entries();
            let event = LicenseEvent::LeaseIssued { lease: unused, replaces: None };
            entries.push(JournalEntry { at: engine.now(), change: Change::License { license, event } });
            (license, entries)
        });
        let recovered = Recovered::from_entries(&entries);
        assert!(recovered.halted.contains_key(&license), "replay kept an over-allocated license in service");
        let restarted = Engine::builder().recovered(recovered).workers(1).build().expect("an engine");
        let consumer = restarted.directory().consumers().next().expect("the consumer").id;
        let answer = runtime().block_on(restarted.consume(ConsumeRequest::new(consumer, "Solo").on_hardware("c")));
        assert!(matches!(answer, Err(EngineError::Halted(_))), "a halted license answered: {answer:?}");
    }

    #[test]
    fn updated_terms_reach_the_next_decision_and_the_journal() {
        let journal = Arc::new(MemoryJournal::new());
        let engine = Engine::builder().journal(Arc::clone(&journal) as _).workers(1).build().expect("an engine");
        runtime().block_on(async {
            let (license, consumer) = one_seat(&engine).await;
            let seat = |hw: &'static str| engine.consume(ConsumeRequest::new(consumer, "Solo").on_hardware(hw));
            assert!(seat("a").await.unwrap().granted().is_some());
            assert!(seat("b").await.unwrap().granted().is_none(), "one seat only");

            let mut terms = (*engine.license(license).expect("the license")).clone();
            terms.credit.qty = 2;
            let updated = engine.update_license(terms).await.expect("the terms change");
            assert_eq!(updated.credit.qty, 2);
            assert!(seat("b").await.unwrap().granted().is_some(), "the second seat is granted at once");

            let recovered = Recovered::from_entries(&journal.entries());
            assert_eq!(recovered.directory.license(license).expect("the license").credit.qty, 2);
            assert_eq!(recovered.licenses[&license].0.usage().seats_in_use, 2);

            let mut other = (*updated).clone();
            other.id = LicenseId(uuid::Uuid::nil());
            assert!(matches!(engine.update_license(other).await, Err(AdminError::NotFound(_))));
        });
    }
}
