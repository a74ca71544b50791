//! The license actor: owns one license's [`LicenseState`], decides every request for it with the
//! pure rules, applies and journals the change, and answers once the change is durable.
//!
//! Requests carry their own reply channel; the router admits at most a bounded number of them
//! per license ([`Admission`]), so a full mailbox turns into an `overloaded` answer instead of
//! an unbounded queue or a stalled caller. The actor gives the place back as it takes a message.

use super::router::{LicenseEntry, RunningActors};
use crate::admin::LicensePatch;
use crate::answer::{Grant, Released};
use crate::concurrency::GaugeReading;
use crate::decide::{
    decide_assign, decide_consume, decide_release, decide_renew, ConsumeRequest, Decision, ErrorCode, Idempotency,
    LicenseEvent, LicenseState, MachineSeen, ReleaseRequest, RenewRequest, Usage, Violation,
};
use crate::directory::Directory;
use crate::error::{AdminError, EngineError};
use crate::events::{self, Event};
use crate::hashing::ConcurrentMap;
use crate::ids::{ConsumerId, IdSource, LeaseId, LicenseId};
use crate::journal::{Change, Durability, Journal, JournalEntry};
use crate::model::{Dimension, Lease, License, LicenseStatus, Product};
use crate::time::{Clock, Timestamp};
use crate::usage::Granularity;
use actix::{Actor, ActorContext, AsyncContext, Context, Handler, Message};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::oneshot;

/// What every license actor shares with the rest of the engine.
pub struct Shared {
    /// Where changes are recorded.
    pub journal: Arc<dyn Journal>,
    /// Where the time comes from.
    pub clock: Arc<dyn Clock>,
    /// Where lease ids come from.
    pub ids: Arc<dyn IdSource>,
    /// Which license holds each live lease id (renewals and releases name only the lease).
    pub lease_index: ConcurrentMap<LeaseId, LicenseId>,
    /// Parties, products and license terms.
    pub directory: RwLock<Directory>,
    /// How many license actors run, and how many may stay running idle.
    pub running: RunningActors,
    /// Events recorded since the engine started.
    pub events_recorded: AtomicU64,
    /// The licenses with an open usage record, which a report asks to close theirs.
    pub usage_open: ConcurrentMap<LicenseId, ()>,
}

impl Shared {
    /// Journals `event` (decided at `at`) after the change it tells of (to `license`, or to the
    /// directory), and counts it.
    pub fn append_event(&self, at: Timestamp, event: Event, license: Option<LicenseId>) -> Durability {
        self.events_recorded.fetch_add(1, Ordering::Relaxed);
        self.journal.append_event(&JournalEntry { at, change: Change::Event(event) }, license)
    }
}

/// An actor's answer and the durability of the change it made. The caller waits for the
/// durability itself, so the journal's acknowledgement goes straight to the caller's task
/// instead of through a task spawned on the actor's worker for every change (one task per change
/// less).
pub struct Answered<T> {
    /// The answer: given to the client only once `durable` resolves.
    pub value: T,
    /// When the change behind `value` is durable.
    pub durable: Durability,
}

impl<T> Answered<T> {
    /// An answer that changed nothing (or nothing that needs waiting for).
    fn now(value: T) -> Self {
        Answered { value, durable: Durability::Now }
    }

    /// The value, once durable.
    pub async fn once_durable(self) -> Result<T, EngineError> {
        self.durable.wait().await?;
        Ok(self.value)
    }
}

/// The channel an answer goes back on.
pub type Reply<T> = oneshot::Sender<Result<Answered<T>, EngineError>>;

/// Consume (`commit`) or check (no change) on this license.
pub struct Consume {
    /// The request.
    pub req: Arc<ConsumeRequest>,
    /// Whether to take the lease (consume) or only answer whether it would be granted (check).
    pub commit: bool,
    /// Whether a refusal is counted here (a checkout asked of this license alone); when several
    /// licenses are asked, the engine counts the refusal it answers.
    pub counts_denial: bool,
    /// The answer.
    pub reply: Reply<Decision<Grant>>,
}

/// Renew a lease of this license.
pub struct Renew {
    /// The request.
    pub req: RenewRequest,
    /// The answer.
    pub reply: Reply<Decision<Grant>>,
}

/// Answer a retried consume with the lease its idempotency key was granted, if this license
/// remembers it.
pub struct Retry {
    /// The retried request's key.
    pub idempotency: Idempotency,
    /// The first answer again; `None` when the key is not (or no longer) remembered here.
    pub reply: Reply<Option<Decision<Grant>>>,
}

/// Release a lease of this license.
pub struct Release {
    /// The request.
    pub req: ReleaseRequest,
    /// The answer.
    pub reply: Reply<Decision<Released>>,
}

/// Administrative operations on this license.
pub enum AdminOp {
    /// Set the status (revoke, deactivate, reactivate).
    SetStatus(LicenseStatus),
    /// Replace the terms (the id stays).
    SetTerms(Box<License>),
    /// Change some of the terms, with the license's product (for its tiers): applied to the
    /// terms the actor holds, so no other change in between is lost.
    Patch(Box<(LicensePatch, Product)>),
    /// Reserve a seat for a consumer.
    Assign(ConsumerId),
    /// Remove a consumer's seat reservation.
    Unassign(ConsumerId),
    /// End a deleted consumer's leases and seat reservation.
    RemoveConsumer(ConsumerId),
    /// Release a machine's leases and free its slot (node locking).
    FreeMachine(Arc<str>),
    /// Delete the license; with live leases only when `force` (they end with it).
    Delete {
        /// Whether live leases end with it rather than preventing it.
        force: bool,
    },
    /// Remember that the license key was activated now (the sibling rule ran).
    KeyActivated,
    /// Record that the license's `valid_until` passed, unless that end was recorded already.
    RecordExpiry,
    /// Count a checkout refused by this license (when several licenses were asked, the one
    /// whose refusal was answered).
    CountDenial(ConsumerId),
    /// Journal the open usage record as closed, for a report to read.
    CloseUsage,
    /// Read the machines of a node-locked license.
    Machines,
    /// Read usage.
    Usage,
    /// List live leases.
    Leases,
}

/// How often a license may record `seat.exhausted`.
const SEAT_EXHAUSTED_EVERY_S: u64 = 60;

/// The highest of the credit thresholds (80% and 100% of `qty`) that going from `before` to
/// `after` used crossed.
fn crossed_threshold(before: u64, after: u64, qty: u64) -> Option<u64> {
    let reached = |percent: u64, used: u64| u128::from(used) * 100 >= u128::from(qty) * u128::from(percent);
    [100, 80].into_iter().find(|percent| !reached(*percent, before) && reached(*percent, after))
}

impl AdminOp {
    /// The type of the event an operation that changes the license records.
    fn event_type(&self) -> Option<&'static str> {
        match self {
            AdminOp::SetStatus(LicenseStatus::Revoked { .. }) => Some("license.revoked"),
            AdminOp::SetStatus(LicenseStatus::Deactivated) => Some("license.deactivated"),
            AdminOp::SetStatus(LicenseStatus::Active) => Some("license.reactivated"),
            AdminOp::SetTerms(_) | AdminOp::Patch(_) => Some("license.updated"),
            AdminOp::Assign(_) => Some("license.seat_assigned"),
            AdminOp::Unassign(_) => Some("license.seat_unassigned"),
            AdminOp::FreeMachine(_) => Some("license.machine_freed"),
            AdminOp::RecordExpiry => Some("license.expired"),
            AdminOp::Delete { .. } => Some("license.deleted"),
            // A deleted consumer's event says it; the rest change nothing the admin API shows.
            AdminOp::RemoveConsumer(_)
            | AdminOp::CountDenial(_)
            | AdminOp::CloseUsage
            | AdminOp::KeyActivated
            | AdminOp::Machines
            | AdminOp::Usage
            | AdminOp::Leases => None,
        }
    }
}

/// The answer to an [`AdminOp`].
#[derive(Debug)]
pub enum AdminAnswer {
    /// The license's terms after the change.
    Terms(Arc<License>),
    /// Usage.
    Usage(Usage),
    /// Live leases.
    Leases(Vec<Lease>),
    /// Machines, with when each was seen and its live leases.
    Machines(Vec<Machine>),
    /// Done, with nothing to tell.
    Done,
}

/// A machine of a node-locked license, as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// Its hardware id.
    pub hw: Arc<str>,
    /// When it was first and last granted a lease.
    pub seen: MachineSeen,
    /// Its live leases.
    pub live_leases: u64,
}

/// An administrative operation and where to answer.
pub struct Admin {
    /// The operation.
    pub op: AdminOp,
    /// The answer.
    pub reply: oneshot::Sender<Result<Answered<AdminAnswer>, AdminError>>,
    /// Who asked: the actor of the event the operation records.
    pub actor: events::Actor,
}

/// Stop and leave the state in the router's slot, if no request waits (sent by the idle sweep).
pub struct Park;

/// Applies an event no rule decided, as if one had (tests only): how a test breaks an invariant
/// on purpose and sees the license halt.
#[cfg(test)]
pub struct Inject {
    /// The event.
    pub event: LicenseEvent,
    /// The answer: the change's durability, or why it was refused.
    pub reply: Reply<()>,
}

#[cfg(test)]
impl Message for Inject {
    type Result = ();
}

#[cfg(test)]
impl Handler<Inject> for LicenseActor {
    type Result = ();

    fn handle(&mut self, msg: Inject, _ctx: &mut Self::Context) {
        let answer = self.begin_message(true).and_then(|now| self.commit(now, msg.event, |_, _| ()));
        let _ = msg.reply.send(answer);
    }
}

macro_rules! unit_message {
    ($($t:ty),*) => { $(impl Message for $t { type Result = (); })* };
}
unit_message!(Consume, Retry, Renew, Release, Admin, Park);

/// A license whose actor is not running: what the next actor starts from.
#[derive(Debug)]
pub struct DormantLicense {
    /// The license's state.
    pub state: LicenseState,
    /// When the journal last changed it (the actor's clock never goes back before this).
    pub last_change_at: Timestamp,
    /// The invariant the license broke, if it did: it answers every request with
    /// [`EngineError::Halted`].
    pub halted: Option<Violation>,
}

/// The counts a license's gauge shows for `state`.
pub fn gauge_reading(state: &LicenseState) -> GaugeReading {
    let usage = state.usage();
    GaugeReading { live_leases: usage.live_leases, seats_in_use: usage.seats_in_use }
}

/// One license's actor.
pub struct LicenseActor {
    state: LicenseState,
    last_change_at: Timestamp,
    /// The invariant a change broke: the state is not to be trusted, so the actor answers
    /// nothing from it (the journal never recorded the change; a restart recovers).
    halted: Option<Violation>,
    shared: Arc<Shared>,
    /// Its place in the router: the admission it takes messages through, the gauge it publishes
    /// on, the slot it parks in.
    entry: Arc<LicenseEntry>,
    /// When it last recorded `seat.exhausted` (at most one a minute; an actor refusing for lack
    /// of seats is busy, so it is not parked and does not forget).
    seat_exhausted_at: Option<Timestamp>,
}

impl LicenseActor {
    /// An actor continuing from `dormant`, living in the router's `entry`.
    pub fn new(dormant: DormantLicense, shared: Arc<Shared>, entry: Arc<LicenseEntry>) -> Self {
        let DormantLicense { state, last_change_at, halted } = dormant;
        LicenseActor { state, last_change_at, halted, shared, entry, seat_exhausted_at: None }
    }

    fn id(&self) -> LicenseId {
        self.state.license().id
    }

    /// Takes a message out of the bounded mailbox and reads the current time, never earlier than
    /// the last change (a wall clock may step back, the journal's order must not), with expired
    /// leases and cooldowns ended. Refuses at once when the license is halted, when its state
    /// holds a change the journal lost, and, for a message that may `change` the state, when the
    /// journal cannot write: a change is never applied that the journal would refuse.
    fn begin_message(&mut self, change: bool) -> Result<Timestamp, EngineError> {
        self.entry.admission().leave();
        if let Some(violation) = &self.halted {
            return Err(EngineError::Halted(violation.clone()));
        }
        if let Some((durable, at)) = self.shared.journal.rebuild(self.id())? {
            self.continue_from(durable, at);
        }
        if change {
            self.shared.journal.writable()?;
        }
        let now = self.shared.clock.now().max(self.last_change_at);
        let index = &self.shared.lease_index;
        self.state.expire_until(now, |id| {
            index.remove(&id);
        });
        Ok(now)
    }

    /// Replaces the state with `durable`, what the journal holds for this license (last changed
    /// at `at`), after a change to it was lost: the lease index and the directory follow.
    fn continue_from(&mut self, durable: LicenseState, at: Timestamp) {
        let index = &self.shared.lease_index;
        for lease in self.state.leases() {
            if durable.lease(lease.id).is_none() {
                index.remove(&lease.id);
            }
        }
        for lease in durable.leases() {
            index.insert(lease.id, lease.license);
        }
        let terms = Arc::clone(durable.license());
        self.shared.directory.write().unwrap_or_else(|p| p.into_inner()).set_license(terms);
        self.state = durable;
        self.last_change_at = self.last_change_at.max(at);
        self.publish();
    }

    fn publish(&self) {
        self.entry.gauge().publish(gauge_reading(&self.state));
    }

    /// Applies `event` and journals it; returns `answer(state, event)` and when the change will
    /// be durable. A change that breaks an invariant is neither journaled nor answered: the
    /// license halts.
    fn commit<T>(
        &mut self,
        at: Timestamp,
        event: LicenseEvent,
        answer: impl FnOnce(&LicenseState, &LicenseEvent) -> T,
    ) -> Result<Answered<T>, EngineError> {
        let open_hour = self.state.open_usage().map(|open| open.hour);
        let closes_first = match &event {
            LicenseEvent::UsageClosed(_) => false,
            LicenseEvent::Deleted => open_hour.is_some(),
            _ => open_hour.is_some_and(|hour| hour < Granularity::Hour.period_of(at)),
        };
        if closes_first {
            self.close_usage(at)?;
        }
        let ends_many =
            matches!(event, LicenseEvent::MachineFreed(_) | LicenseEvent::ConsumerRemoved(_) | LicenseEvent::Deleted);
        let live_before: Vec<LeaseId> =
            if ends_many { self.state.leases().map(|l| l.id).collect() } else { Vec::new() };
        if let Err(violation) = self.state.apply(at, &event) {
            self.halted = Some(violation.clone());
            return Err(EngineError::Halted(violation));
        }
        self.last_change_at = at;
        match (open_hour.is_some() && !closes_first, self.state.open_usage().is_some()) {
            (false, true) => {
                self.shared.usage_open.insert(self.id(), ());
            }
            (true, false) => {
                self.shared.usage_open.remove(&self.id());
            }
            _ => {}
        }
        for ended in live_before.into_iter().filter(|id| self.state.lease(*id).is_none()) {
            self.shared.lease_index.remove(&ended);
        }
        match &event {
            LicenseEvent::LeaseIssued { lease, replaces }
            | LicenseEvent::IdempotentLeaseIssued { lease, replaces, .. } => {
                if let Some(old) = replaces {
                    self.shared.lease_index.remove(old);
                }
                self.shared.lease_index.insert(lease.id, lease.license);
            }
            LicenseEvent::LeaseReleased { lease, .. } => {
                self.shared.lease_index.remove(lease);
            }
            LicenseEvent::Terms(terms) => {
                self.shared.directory.write().unwrap_or_else(|p| p.into_inner()).set_license(Arc::clone(terms));
            }
            LicenseEvent::SeatAssigned(_)
            | LicenseEvent::SeatUnassigned(_)
            | LicenseEvent::MachineFreed(_)
            | LicenseEvent::ConsumerRemoved(_)
            | LicenseEvent::Deleted
            | LicenseEvent::Denied(_)
            | LicenseEvent::UsageClosed(_) => {}
        }
        self.publish();
        let value = answer(&self.state, &event);
        let entry = JournalEntry { at, change: Change::License { license: self.id(), event } };
        Ok(Answered { value, durable: self.shared.journal.append(&entry) })
    }

    /// Journals the open usage record as closed, if there is one. Nothing waits for it: the
    /// change it comes before is durable only once it is (the journal keeps their order).
    fn close_usage(&mut self, at: Timestamp) -> Result<(), EngineError> {
        match self.usage_closed() {
            Some(closed) => self.commit(at, closed, |_, _| ()).map(drop),
            None => Ok(()),
        }
    }

    /// The event that closes the open usage record, if there is one.
    fn usage_closed(&self) -> Option<LicenseEvent> {
        self.state.usage_record().map(|record| LicenseEvent::UsageClosed(Box::new(record)))
    }

    fn grant_of(state: &LicenseState, event: &LicenseEvent) -> Grant {
        match event {
            LicenseEvent::LeaseIssued { lease, replaces }
            | LicenseEvent::IdempotentLeaseIssued { lease, replaces, .. } => Grant {
                lease: lease.clone(),
                license: Arc::clone(state.license()),
                replaced: *replaces,
                remaining_qty: state.usage().remaining_qty,
            },
            other => unreachable!("a grant is only built from an issued lease, not {other:?}"),
        }
    }

    fn admin(&mut self, op: AdminOp) -> Result<(Option<LicenseEvent>, AdminAnswer), AdminError> {
        let terms = |license: License| {
            let terms = Arc::new(license);
            (Some(LicenseEvent::Terms(Arc::clone(&terms))), AdminAnswer::Terms(terms))
        };
        match op {
            AdminOp::SetStatus(status) => Ok(terms(License { status, ..(**self.state.license()).clone() })),
            AdminOp::Patch(change) => {
                let (patch, product) = *change;
                Ok(terms(patch.apply(self.state.license(), &product)?))
            }
            AdminOp::SetTerms(license) => {
                if license.id != self.id() {
                    return Err(AdminError::Invalid("the terms are for another license".into()));
                }
                Ok(terms(*license))
            }
            AdminOp::Assign(consumer) => {
                let event = decide_assign(&self.state, consumer).map_err(|why| AdminError::Conflict(why.into()))?;
                Ok((event, AdminAnswer::Terms(Arc::clone(self.state.license()))))
            }
            AdminOp::Unassign(consumer) => {
                if !self.state.is_assigned(consumer) {
                    return Err(AdminError::NotFound(format!("seat assignment of consumer {consumer}")));
                }
                let terms = Arc::clone(self.state.license());
                Ok((Some(LicenseEvent::SeatUnassigned(consumer)), AdminAnswer::Terms(terms)))
            }
            AdminOp::RemoveConsumer(consumer) => {
                let holds = self.state.leases_of(consumer) > 0 || self.state.is_assigned(consumer);
                let event = holds.then_some(LicenseEvent::ConsumerRemoved(consumer));
                Ok((event, AdminAnswer::Done))
            }
            AdminOp::FreeMachine(hw) => {
                if !self.state.has_machine(&hw) {
                    return Err(AdminError::NotFound(format!("machine {hw:?} of license {}", self.id())));
                }
                Ok((Some(LicenseEvent::MachineFreed(hw)), AdminAnswer::Done))
            }
            AdminOp::Delete { force } => {
                let live = self.state.usage().live_leases;
                if live > 0 && !force {
                    return Err(AdminError::Conflict(format!(
                        "the license has {live} live leases; delete with force to end them"
                    )));
                }
                Ok((Some(LicenseEvent::Deleted), AdminAnswer::Done))
            }
            AdminOp::RecordExpiry => {
                let license = self.state.license();
                let now = self.shared.clock.now();
                match license.valid_until {
                    Some(end) if end <= now && license.expiry_recorded != Some(end) => {
                        Ok(terms(License { expiry_recorded: Some(end), ..(**license).clone() }))
                    }
                    _ => Ok((None, AdminAnswer::Done)),
                }
            }
            AdminOp::KeyActivated => {
                let now = self.shared.clock.now().max(self.last_change_at);
                Ok(terms(License { key_activated_at: Some(now), ..(**self.state.license()).clone() }))
            }
            AdminOp::Machines => {
                let leases_on = |hw: &str| self.state.leases().filter(|l| l.anchors.hw.as_deref() == Some(hw)).count();
                let machines = self
                    .state
                    .machines_in_use()
                    .into_iter()
                    .map(|(hw, seen)| Machine { live_leases: leases_on(&hw) as u64, hw, seen })
                    .collect();
                Ok((None, AdminAnswer::Machines(machines)))
            }
            AdminOp::CountDenial(consumer) => Ok((Some(LicenseEvent::Denied(consumer)), AdminAnswer::Done)),
            AdminOp::CloseUsage => Ok((self.usage_closed(), AdminAnswer::Done)),
            AdminOp::Usage => Ok((None, AdminAnswer::Usage(self.state.usage()))),
            AdminOp::Leases => Ok((None, AdminAnswer::Leases(self.state.leases().cloned().collect()))),
        }
    }
}

impl Actor for LicenseActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.shared.running.stopped();
    }
}

impl LicenseActor {
    /// Moves the state into the router's slot and stops, unless a request waits for this actor.
    fn park(&mut self, ctx: &mut Context<Self>) {
        // The state moves into the slot; this actor keeps an empty one until it stops, which it
        // does before taking another message (none is admitted once the slot holds the state).
        let license = Arc::clone(self.state.license());
        let dormant = DormantLicense {
            state: std::mem::replace(&mut self.state, LicenseState::new(license)),
            last_change_at: self.last_change_at,
            halted: self.halted.take(),
        };
        match self.entry.park(&ctx.address(), dormant) {
            Ok(()) => ctx.stop(),
            Err(dormant) => {
                self.state = dormant.state;
                self.halted = dormant.halted;
            }
        }
    }

    /// Parks now when more actors run than may idle: the memory of running actors stays
    /// bounded however many licenses a burst touches.
    fn park_if_over_budget(&mut self, ctx: &mut Context<Self>) {
        if self.shared.running.over_budget() {
            self.park(ctx);
        }
    }
}

impl Handler<Consume> for LicenseActor {
    type Result = ();

    fn handle(&mut self, msg: Consume, ctx: &mut Self::Context) {
        let answer = self.consume(&msg.req, msg.commit, msg.counts_denial);
        let _ = msg.reply.send(answer); // a caller that stopped waiting undoes nothing
        self.park_if_over_budget(ctx);
    }
}

impl Handler<Retry> for LicenseActor {
    type Result = ();

    fn handle(&mut self, msg: Retry, ctx: &mut Self::Context) {
        let answer = self.retry(msg.idempotency);
        let _ = msg.reply.send(answer);
        self.park_if_over_budget(ctx);
    }
}

impl Handler<Renew> for LicenseActor {
    type Result = ();

    fn handle(&mut self, msg: Renew, ctx: &mut Self::Context) {
        let answer = self.renew(&msg.req);
        let _ = msg.reply.send(answer);
        self.park_if_over_budget(ctx);
    }
}

impl Handler<Release> for LicenseActor {
    type Result = ();

    fn handle(&mut self, msg: Release, ctx: &mut Self::Context) {
        let answer = self.release(&msg.req);
        let _ = msg.reply.send(answer);
        self.park_if_over_budget(ctx);
    }
}

impl Handler<Admin> for LicenseActor {
    type Result = ();

    fn handle(&mut self, msg: Admin, ctx: &mut Self::Context) {
        let deletes = matches!(msg.op, AdminOp::Delete { .. });
        let answer = self.administer(msg.op, msg.actor);
        let deleted = deletes && answer.is_ok();
        let _ = msg.reply.send(answer);
        if deleted {
            // The engine takes the license out of the router once the deletion is durable.
            ctx.stop();
        } else {
            self.park_if_over_budget(ctx);
        }
    }
}

impl LicenseActor {
    fn consume(
        &mut self,
        req: &ConsumeRequest,
        commit: bool,
        counts_denial: bool,
    ) -> Result<Answered<Decision<Grant>>, EngineError> {
        let now = self.begin_message(commit)?;
        let new_id = LeaseId::for_license(self.shared.ids.uuid(), self.state.license().id);
        match decide_consume(&self.state, req, now, new_id) {
            Err(denial) => {
                if commit && denial.code == ErrorCode::MaxConcurrentSessionsExceed {
                    self.seats_exhausted(now);
                }
                if commit && counts_denial {
                    // The refusal waits for its count, so a crash cannot lose a refusal answered.
                    return self.commit(now, LicenseEvent::Denied(req.consumer), |_, _| Decision::Denied(denial));
                }
                Ok(Answered::now(Decision::Denied(denial)))
            }
            Ok(event) if commit => {
                let event = match (event, req.idempotency) {
                    (LicenseEvent::LeaseIssued { lease, replaces }, Some(idempotency)) => {
                        LicenseEvent::IdempotentLeaseIssued { lease, replaces, idempotency }
                    }
                    (event, _) => event,
                };
                let used_before = self.credit_used();
                let answered = self.commit(now, event, |s, e| Decision::Granted(Self::grant_of(s, e)))?;
                Ok(self.after_credit_use(now, used_before, answered))
            }
            Ok(event) => {
                let mut grant = Self::grant_of(&self.state, &event);
                let freed = grant.replaced.and_then(|id| self.state.lease(id)).map_or(0, |l| l.qty_prealloc);
                let remaining = self.state.remaining_credit() + freed;
                grant.remaining_qty = grant.remaining_qty.map(|_| remaining.saturating_sub(grant.lease.qty_prealloc));
                Ok(Answered::now(Decision::Granted(grant)))
            }
        }
    }

    fn retry(&mut self, idempotency: Idempotency) -> Result<Answered<Option<Decision<Grant>>>, EngineError> {
        self.begin_message(false)?;
        let Some(first) = self.state.idempotent_grant(&idempotency.key) else { return Ok(Answered::now(None)) };
        if first.idempotency.request != idempotency.request {
            return Err(EngineError::IdempotencyKeyReused);
        }
        let grant = Grant {
            lease: first.lease.clone(),
            license: Arc::clone(self.state.license()),
            replaced: first.replaced,
            remaining_qty: self.state.usage().remaining_qty,
        };
        Ok(Answered::now(Some(Decision::Granted(grant))))
    }

    fn renew(&mut self, req: &RenewRequest) -> Result<Answered<Decision<Grant>>, EngineError> {
        let now = self.begin_message(true)?;
        let new_id = LeaseId::for_license(self.shared.ids.uuid(), self.state.license().id);
        match decide_renew(&self.state, req, now, new_id) {
            Err(denial) => Ok(Answered::now(Decision::Denied(denial))),
            Ok(event) => {
                let used_before = self.credit_used();
                let answered = self.commit(now, event, |s, e| Decision::Granted(Self::grant_of(s, e)))?;
                Ok(self.after_credit_use(now, used_before, answered))
            }
        }
    }

    fn release(&mut self, req: &ReleaseRequest) -> Result<Answered<Decision<Released>>, EngineError> {
        let now = self.begin_message(true)?;
        match decide_release(&self.state, req, now) {
            Err(denial) => Ok(Answered::now(Decision::Denied(denial))),
            Ok(event) => {
                let license = self.id();
                let answer = move |state: &LicenseState, event: &LicenseEvent| match event {
                    LicenseEvent::LeaseReleased { lease, used_qty } => Decision::Granted(Released {
                        lease_id: *lease,
                        license,
                        used_qty: *used_qty,
                        remaining_qty: state.usage().remaining_qty,
                    }),
                    other => unreachable!("a release only produces a release event, not {other:?}"),
                };
                let used_before = self.credit_used();
                let answered = self.commit(now, event, answer)?;
                Ok(self.after_credit_use(now, used_before, answered))
            }
        }
    }

    fn administer(&mut self, op: AdminOp, asked_by: events::Actor) -> Result<Answered<AdminAnswer>, AdminError> {
        let change = !matches!(op, AdminOp::Usage | AdminOp::Leases | AdminOp::Machines);
        let now = self.begin_message(change)?;
        let recorded = op.event_type();
        // Only an expiry is the license's own doing; every other operation is an administrator's.
        let actor = if matches!(op, AdminOp::RecordExpiry) { events::Actor::system() } else { asked_by };
        Ok(match self.admin(op)? {
            (None, answer) => Answered::now(answer),
            (Some(event), answer) => {
                let answered = self.commit(now, event, |_, _| answer)?;
                match recorded {
                    Some(event_type) => self.record(now, event_type, actor, answered),
                    None => answered,
                }
            }
        })
    }

    /// Records `seat.exhausted` for a refusal for lack of seats, at most once a minute. The
    /// refusal changes nothing, so it does not wait for the event.
    fn seats_exhausted(&mut self, now: Timestamp) {
        if self.seat_exhausted_at.is_some_and(|at| now < at.plus_secs(SEAT_EXHAUSTED_EVERY_S)) {
            return;
        }
        self.seat_exhausted_at = Some(now);
        let license = self.state.license();
        let data = serde_json::json!({"license": license.id, "seats": license.credit.qty});
        let event = Event::about_license("seat.exhausted", license, data, events::Actor::system());
        let _ = self.shared.append_event(now, event, Some(self.id()));
    }

    /// The credit a use-count or use-time license has used; `None` for seats.
    fn credit_used(&self) -> Option<u64> {
        (self.state.license().credit.dimension != Dimension::Seats).then(|| self.state.usage().used_qty)
    }

    /// After a change that may have used credit (from `used_before`): when it crossed 80% or
    /// 100% of the credit, records `credit.threshold`, and the answer waits for that event.
    fn after_credit_use<T>(&self, at: Timestamp, used_before: Option<u64>, answered: Answered<T>) -> Answered<T> {
        let Some(before) = used_before else { return answered };
        let license = self.state.license();
        let (qty, after) = (license.credit.qty, self.state.usage().used_qty);
        let Some(percent) = crossed_threshold(before, after, qty) else { return answered };
        if matches!(answered.durable, Durability::Failed(_)) {
            return answered;
        }
        let data =
            serde_json::json!({"license": license.id, "threshold_percent": percent, "used_qty": after, "qty": qty});
        let event = Event::about_license("credit.threshold", license, data, events::Actor::system());
        let durable = self.shared.append_event(at, event, Some(self.id()));
        Answered { value: answered.value, durable }
    }

    /// Journals the event `event_type` of the change `answered` answers, right after it: the
    /// answer then waits for the event, which is durable only once the change is.
    fn record<T>(&self, at: Timestamp, event_type: &str, actor: events::Actor, answered: Answered<T>) -> Answered<T> {
        if matches!(answered.durable, Durability::Failed(_)) {
            return answered;
        }
        let event = Event::of_license(event_type, self.state.license(), actor);
        let durable = self.shared.append_event(at, event, Some(self.id()));
        Answered { value: answered.value, durable }
    }
}

impl Handler<Park> for LicenseActor {
    type Result = ();

    fn handle(&mut self, _: Park, ctx: &mut Self::Context) {
        self.park(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::crossed_threshold;

    #[test]
    fn a_credit_threshold_is_crossed_once_by_the_use_that_reaches_it() {
        assert_eq!(crossed_threshold(0, 7, 10), None);
        assert_eq!(crossed_threshold(7, 8, 10), Some(80));
        assert_eq!(crossed_threshold(8, 9, 10), None, "already past 80%");
        assert_eq!(crossed_threshold(9, 10, 10), Some(100));
        assert_eq!(crossed_threshold(0, 12, 10), Some(100), "both at once: the higher one");
        assert_eq!(crossed_threshold(10, 11, 10), None, "metered use past the credit crosses nothing new");
        assert_eq!(crossed_threshold(0, u64::MAX, u64::MAX), Some(100), "no overflow");
    }
}
