//! The live state of one license (leases, sessions, seats, usage) and how each change applies.
//!
//! State only changes through [`LicenseState::apply`], with the same events the journal records,
//! so replaying a journal rebuilds exactly the state that answered the clients. Expiry is not an
//! event: it follows from time, and [`LicenseState::expire_until`] applies it the same way live
//! and on replay.

use super::invariants::{allotment_check, Allotment, Violation};
use crate::compact::{SmallMap, SmallSet};
use crate::ids::{sha256, ConsumerId, LeaseId};
use crate::model::lease::SessionKey;
use crate::model::{Dimension, Lease, License};
use crate::time::Timestamp;
use crate::usage::{OpenUsage, UsageCounts, UsageRecord};
use serde::{Deserialize, Serialize};
use smallvec::{smallvec, SmallVec};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// A change to one license's state, as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LicenseEvent {
    /// The license's terms were set: created, updated, revoked, deactivated or reactivated.
    Terms(Arc<License>),
    /// A lease was granted; `replaces` is the lease it rotates (renewal or re-consume).
    LeaseIssued {
        /// The new lease.
        lease: Lease,
        /// The lease id it replaces, which stops being valid.
        replaces: Option<LeaseId>,
    },
    /// A lease ended by release (or forced release) with its final settled usage.
    LeaseReleased {
        /// The lease.
        lease: LeaseId,
        /// Usage charged to the credit (uses or seconds; 0 for seats).
        used_qty: u64,
    },
    /// A seat was reserved for a consumer.
    SeatAssigned(ConsumerId),
    /// A seat reservation was removed.
    SeatUnassigned(ConsumerId),
    /// A lease was granted to a request that carried an idempotency key:
    /// [`LicenseEvent::LeaseIssued`], and the key remembered for [`IDEMPOTENCY_WINDOW_S`] so
    /// that a retry is answered with this lease instead of a second one.
    IdempotentLeaseIssued {
        /// The new lease.
        lease: Lease,
        /// The lease id it replaces.
        replaces: Option<LeaseId>,
        /// The request's key.
        idempotency: Idempotency,
    },
    /// A machine of a node-locked license was freed: its leases ended and its slot is free.
    MachineFreed(Arc<str>),
    /// A consumer was deleted: its leases and its seat reservation on this license ended.
    ConsumerRemoved(ConsumerId),
    /// The license was deleted; its leases ended with it.
    Deleted,
    /// A checkout by this consumer was refused (counted for usage reports; changes no lease).
    Denied(ConsumerId),
    /// The open usage record was closed: the journal keeps it, the state starts a new one at
    /// its next counted change.
    UsageClosed(Box<UsageRecord>),
}

/// How long an idempotency key is remembered: a retry within it gets the first answer again.
pub const IDEMPOTENCY_WINDOW_S: u64 = 24 * 60 * 60;

/// The most idempotency keys a license remembers: past it the oldest is forgotten first (its
/// retry is then decided again), so a client that sends a fresh key with every checkout cannot
/// grow a license's state without bound.
pub const MAX_IDEMPOTENT_GRANTS: usize = 10_000;

/// What identifies a request that may be retried: digests of the credential and the client's
/// key, and of the request itself (the same key with another request is refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Idempotency {
    /// SHA-256 of the credential and the `Idempotency-Key`.
    pub key: [u8; 32],
    /// SHA-256 of the request.
    pub request: [u8; 32],
}

impl Idempotency {
    /// The idempotency of a request: who sends it (`credential`), the client's key, which part
    /// of the request (a request that checks out several items has one per item), and what it
    /// asks (`request`: the same bytes when it is retried). Each input is length-prefixed, so
    /// different inputs never run together into the same digest.
    pub fn of(credential: &[u8], client_key: &str, part: u32, request: &[&[u8]]) -> Self {
        fn framed(parts: &[&[u8]]) -> Vec<u8> {
            let mut bytes = Vec::with_capacity(parts.iter().map(|p| 8 + p.len()).sum());
            for part in parts {
                bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
                bytes.extend_from_slice(part);
            }
            bytes
        }
        let key = sha256(&framed(&[credential, client_key.as_bytes(), &part.to_le_bytes()]));
        Idempotency { key, request: sha256(&framed(request)) }
    }
}

/// A lease granted under an idempotency key, remembered for retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotentGrant {
    /// The request's key.
    pub idempotency: Idempotency,
    /// The lease as granted.
    pub lease: Lease,
    /// The lease id it replaced.
    pub replaced: Option<LeaseId>,
}

/// When a machine of a node-locked license was first and last granted a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineSeen {
    /// The first lease's time.
    pub first_seen_at: Timestamp,
    /// The latest lease's or renewal's time.
    pub last_seen_at: Timestamp,
}

/// The seats, leases and usage of one license, as counted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Live leases.
    pub live_leases: u64,
    /// Seats taken: live sessions plus seats cooling down after a release.
    pub seats_in_use: u64,
    /// Credit used: seats in use, or uses / seconds consumed and set aside.
    pub used_qty: u64,
    /// Credit left; `None` when the credit is metered.
    pub remaining_qty: Option<u64>,
}

#[derive(Debug, Clone)]
struct Session {
    opened_by: ConsumerId,
    leases: SmallVec<[LeaseId; 1]>,
}

/// The live leases and the seats (sessions and cooling seats) one consumer holds; a consumer
/// with neither has no entry.
#[derive(Debug, Clone, Copy, Default)]
struct ConsumerCounts {
    leases: u32,
    seats: u32,
}

#[derive(Debug, Clone)]
struct CoolingSeat {
    session: SessionKey,
    consumer: ConsumerId,
    until: Timestamp,
}

/// What only some licenses use: seats cooling down after a release, seat reservations, and the
/// hardware a node-locked license has seen. Kept out of line: a license that uses none of it
/// (most do not) carries one empty pointer instead of three empty collections (80 bytes less
/// per license, 76 MiB at a million licenses).
#[derive(Debug, Clone, Default)]
struct Rare {
    cooling: VecDeque<CoolingSeat>,
    assignments: SmallSet<ConsumerId>,
    hardware: SmallMap<Arc<str>, MachineSeen>,
    /// Grants under an idempotency key in the last [`IDEMPOTENCY_WINDOW_S`], oldest first.
    idempotent: VecDeque<IdempotentGrant>,
}

impl Rare {
    fn is_empty(&self) -> bool {
        self.cooling.is_empty() && self.assignments.is_empty() && self.hardware.is_empty() && self.idempotent.is_empty()
    }
}

/// Whether `consumer` has a seat reservation in `rare`.
fn reserved_in(rare: &Option<Box<Rare>>, consumer: ConsumerId) -> bool {
    rare.as_ref().is_some_and(|r| r.assignments.contains(&consumer))
}

/// Everything the engine knows about one license right now.
#[derive(Debug, Clone)]
pub struct LicenseState {
    license: Arc<License>,
    leases: SmallMap<LeaseId, Lease>,
    sessions: SmallMap<SessionKey, Session>,
    expiries: SmallSet<(Timestamp, LeaseId)>,
    by_consumer: SmallMap<ConsumerId, ConsumerCounts>,
    rare: Option<Box<Rare>>,
    pool_seats_in_use: u64,
    consumed: u64,
    preallocated: u64,
    /// The usage of the hour it last counted a change in, until it is closed.
    usage_open: Option<Box<OpenUsage>>,
}

impl LicenseState {
    /// A license with no leases and nothing used.
    pub fn new(license: Arc<License>) -> Self {
        LicenseState {
            license,
            leases: SmallMap::default(),
            sessions: SmallMap::default(),
            expiries: SmallSet::default(),
            by_consumer: SmallMap::default(),
            rare: None,
            pool_seats_in_use: 0,
            consumed: 0,
            preallocated: 0,
            usage_open: None,
        }
    }

    /// The open usage record, if a change was counted since the last one closed.
    pub fn open_usage(&self) -> Option<&OpenUsage> {
        self.usage_open.as_deref()
    }

    /// The open usage record as the journal keeps it once closed.
    pub fn usage_record(&self) -> Option<UsageRecord> {
        let usage = self.usage_open.as_deref()?.clone();
        let license = &self.license;
        Some(UsageRecord {
            license: license.id,
            licensee: license.licensee,
            product: Arc::clone(&license.product_name),
            usage,
        })
    }

    /// The license's terms.
    pub fn license(&self) -> &Arc<License> {
        &self.license
    }

    /// The live lease with `id`.
    pub fn lease(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// Every live lease (in no particular order).
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    /// The live lease of `session` for `item`.
    pub fn session_lease(&self, session: &SessionKey, item: &str) -> Option<&Lease> {
        let s = self.sessions.get(session)?;
        s.leases.iter().filter_map(|id| self.leases.get(id)).find(|l| &*l.item == item)
    }

    /// Whether `session` holds a seat, live or cooling down.
    pub fn holds_seat(&self, session: &SessionKey) -> bool {
        self.sessions.contains_key(session) || self.cooling().any(|c| &c.session == session)
    }

    /// Whether `consumer` has a seat reservation.
    pub fn is_assigned(&self, consumer: ConsumerId) -> bool {
        reserved_in(&self.rare, consumer)
    }

    /// Consumers with a seat reservation.
    pub fn assignments(&self) -> impl Iterator<Item = ConsumerId> + '_ {
        self.rare.iter().flat_map(|r| r.assignments.iter().copied())
    }

    /// Live leases `consumer` holds.
    pub fn leases_of(&self, consumer: ConsumerId) -> u32 {
        self.by_consumer.get(&consumer).map_or(0, |n| n.leases)
    }

    /// Seats (sessions and cooling seats) `consumer` opened.
    pub fn seats_of(&self, consumer: ConsumerId) -> u32 {
        self.by_consumer.get(&consumer).map_or(0, |n| n.seats)
    }

    /// Seats taken: live sessions and seats cooling down.
    pub fn seats_in_use(&self) -> u64 {
        (self.sessions.len() + self.cooling().count()) as u64
    }

    /// Seats taken outside of reservations.
    pub fn pool_seats_in_use(&self) -> u64 {
        self.pool_seats_in_use
    }

    /// Whether `hw` has used this license before (node locking).
    pub fn knows_hardware(&self, hw: &str) -> bool {
        self.rare.as_ref().is_some_and(|r| r.hardware.iter().any(|(known, _)| **known == *hw))
    }

    /// The machines of a node-locked license, with when each was first and last seen.
    pub fn machines(&self) -> impl Iterator<Item = (&Arc<str>, &MachineSeen)> {
        self.rare.iter().flat_map(|r| r.hardware.iter())
    }

    /// Every machine of the license, sorted by hardware id: those node locking remembers and
    /// those live leases run on, with when each was first and last seen.
    pub fn machines_in_use(&self) -> Vec<(Arc<str>, MachineSeen)> {
        let mut all: BTreeMap<Arc<str>, MachineSeen> =
            self.machines().map(|(hw, seen)| (Arc::clone(hw), *seen)).collect();
        for hw in self.leases.values().filter_map(|l| l.anchors.hw.as_deref()) {
            if !all.contains_key(hw) {
                all.insert(Arc::from(hw), self.seen_by_live_leases(hw));
            }
        }
        all.into_iter().collect()
    }

    /// Whether `hw` is a machine of the license: remembered by node locking or running a lease.
    pub fn has_machine(&self, hw: &str) -> bool {
        self.knows_hardware(hw) || self.leases.values().any(|l| l.anchors.hw.as_deref() == Some(hw))
    }

    /// The lease granted to the request with `key` within the last day, if any.
    pub fn idempotent_grant(&self, key: &[u8; 32]) -> Option<&IdempotentGrant> {
        self.rare.as_ref()?.idempotent.iter().find(|g| g.idempotency.key == *key)
    }

    /// Every remembered grant under an idempotency key, oldest first.
    pub fn idempotent_grants(&self) -> impl Iterator<Item = &IdempotentGrant> {
        self.rare.iter().flat_map(|r| r.idempotent.iter())
    }

    /// Distinct hardware ids that have used this license.
    pub fn hardware_count(&self) -> usize {
        self.rare.as_ref().map_or(0, |r| r.hardware.len())
    }

    /// Uses or seconds consumed and settled.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Uses or seconds set aside by live leases.
    pub fn preallocated(&self) -> u64 {
        self.preallocated
    }

    /// Credit quantity not consumed or set aside (count and time credits).
    pub fn remaining_credit(&self) -> u64 {
        self.license.credit.qty.saturating_sub(self.consumed + self.preallocated)
    }

    /// The license's usage as of the last expiry pass.
    pub fn usage(&self) -> Usage {
        let credit = self.license.credit;
        let used_qty = match credit.dimension {
            Dimension::Seats => self.seats_in_use(),
            Dimension::UseCount | Dimension::UseTime => self.consumed + self.preallocated,
        };
        Usage {
            live_leases: self.leases.len() as u64,
            seats_in_use: self.seats_in_use(),
            used_qty,
            remaining_qty: credit.is_enforced().then(|| credit.qty.saturating_sub(used_qty)),
        }
    }

    /// Ends every lease that expired at or before `now` and every cooldown that is over, calling
    /// `expired` with each ended lease id. An expired lease's preallocation counts as used.
    pub fn expire_until(&mut self, now: Timestamp, mut expired: impl FnMut(LeaseId)) {
        while let Some(&(at, id)) = self.expiries.first() {
            if at > now {
                break;
            }
            self.expiries.pop_first();
            if let Some(lease) = self.remove_lease(id) {
                self.consumed = self.consumed.saturating_add(lease.qty_prealloc);
                self.end_session_of(&lease, None);
                expired(id);
            }
        }
        while let Some(seat) = self.rare.as_mut().and_then(|r| {
            let cooled = r.cooling.front().is_some_and(|c| c.until <= now);
            cooled.then(|| r.cooling.pop_front()).flatten()
        }) {
            self.vacate_seat(seat.consumer);
        }
        while let Some(rare) = self.rare.as_mut() {
            let remembered =
                rare.idempotent.front().is_some_and(|g| now < g.lease.issued_at.plus_secs(IDEMPOTENCY_WINDOW_S));
            if remembered || rare.idempotent.pop_front().is_none() {
                break;
            }
        }
    }

    /// Applies one journaled change made at `at`, then checks the invariants it may break
    /// ([`super::invariants`]): always that it raised no use past an enforced limit, and under
    /// debug assertions that the whole state is consistent. On a violation the state is left as
    /// the change made it: the caller stops using this license (it is a bug, not a refusal).
    pub fn apply(&mut self, at: Timestamp, event: &LicenseEvent) -> Result<(), Violation> {
        let before = Allotment::of(self);
        let counted = matches!(
            event,
            LicenseEvent::LeaseIssued { .. }
                | LicenseEvent::IdempotentLeaseIssued { .. }
                | LicenseEvent::LeaseReleased { .. }
                | LicenseEvent::Denied(_)
        );
        if counted && self.usage_open.is_none() {
            let held = self.by_consumer.iter().filter(|(_, n)| n.seats > 0).map(|(c, n)| (*c, u64::from(n.seats)));
            self.usage_open = Some(Box::new(OpenUsage::open(at, self.seats_in_use(), held)));
        }
        let credit_before = self.consumed.saturating_add(self.preallocated);
        // A release's consumer, read before the lease is gone: credit it gives back is its own.
        let releaser = match event {
            LicenseEvent::LeaseReleased { lease, .. } => self.leases.get(lease).map(|l| l.consumer),
            _ => None,
        };
        match event {
            LicenseEvent::Terms(license) => self.license = Arc::clone(license),
            LicenseEvent::LeaseIssued { lease, replaces } => self.issue(lease, *replaces),
            LicenseEvent::LeaseReleased { lease, used_qty } => self.release(at, *lease, *used_qty),
            LicenseEvent::SeatAssigned(consumer) => self.assign(*consumer),
            LicenseEvent::SeatUnassigned(consumer) => self.unassign(*consumer),
            LicenseEvent::IdempotentLeaseIssued { lease, replaces, idempotency } => {
                self.issue(lease, *replaces);
                let grant = IdempotentGrant { idempotency: *idempotency, lease: lease.clone(), replaced: *replaces };
                let remembered = &mut self.rare_mut().idempotent;
                if remembered.len() >= MAX_IDEMPOTENT_GRANTS {
                    remembered.pop_front();
                }
                remembered.push_back(grant);
            }
            LicenseEvent::MachineFreed(hw) => {
                let on_machine = self.leases.values().filter(|l| l.anchors.hw.as_deref() == Some(&**hw));
                let ending: Vec<LeaseId> = on_machine.map(|l| l.id).collect();
                for id in ending {
                    self.end_without_cooldown(id);
                }
                if let Some(rare) = self.rare.as_mut() {
                    rare.hardware.remove(hw);
                }
            }
            LicenseEvent::ConsumerRemoved(consumer) => {
                let ending: Vec<LeaseId> =
                    self.leases.values().filter(|l| l.consumer == *consumer).map(|l| l.id).collect();
                for id in ending {
                    self.end_without_cooldown(id);
                }
                self.unassign(*consumer);
            }
            LicenseEvent::Deleted => {
                let ending: Vec<LeaseId> = self.leases.iter().map(|(id, _)| *id).collect();
                for id in ending {
                    self.end_without_cooldown(id);
                }
            }
            LicenseEvent::Denied(_) => {}
            LicenseEvent::UsageClosed(_) => self.usage_open = None,
        }
        if counted {
            self.count_usage(event, releaser, credit_before);
        }
        allotment_check(before, self)?;
        if cfg!(debug_assertions) {
            self.check_consistency()?;
        }
        Ok(())
    }

    /// Counts `event`, just applied, in the open usage record; `releaser` is the consumer of the
    /// lease a release ended, `credit_before` the credit consumed and set aside before it.
    fn count_usage(&mut self, event: &LicenseEvent, releaser: Option<ConsumerId>, credit_before: u64) {
        let credit_taken = i128::from(self.consumed.saturating_add(self.preallocated)) - i128::from(credit_before);
        let credit_taken = i64::try_from(credit_taken).unwrap_or(if credit_taken < 0 { i64::MIN } else { i64::MAX });
        let (consumer, grant, denial) = match event {
            LicenseEvent::LeaseIssued { lease, replaces }
            | LicenseEvent::IdempotentLeaseIssued { lease, replaces, .. } => {
                (Some(lease.consumer), replaces.is_none(), false)
            }
            LicenseEvent::Denied(consumer) => (Some(*consumer), false, true),
            _ => (releaser, false, false),
        };
        let dimension = self.license.credit.dimension;
        let seats = self.seats_in_use();
        let consumer_seats = consumer.map(|c| u64::from(self.seats_of(c)));
        let Some(open) = self.usage_open.as_deref_mut() else { return };
        let count = |counts: &mut UsageCounts, seats: u64| {
            counts.peak_seats = counts.peak_seats.max(seats);
            counts.grants += u64::from(grant);
            counts.denials += u64::from(denial);
            match dimension {
                Dimension::UseCount => counts.uses = counts.uses.saturating_add(credit_taken),
                Dimension::UseTime => counts.use_time_s = counts.use_time_s.saturating_add(credit_taken),
                Dimension::Seats => {}
            }
        };
        count(&mut open.totals, seats);
        if let (Some(consumer), Some(seats)) = (consumer, consumer_seats) {
            count(open.consumer(consumer), seats);
        }
    }

    /// Checks that every part of the state agrees with the others: the lease table with the
    /// expiry queue, the sessions and the per-consumer counts; the seats with the sessions, the
    /// cooling seats and the reservations; the preallocated credit with the leases. Linear in the
    /// license's leases: run after every change only under debug assertions, and on recovery.
    pub fn check_consistency(&self) -> Result<(), Violation> {
        let broken = |what: String| Err(Violation { license: self.license.id, what });
        if self.expiries.len() != self.leases.len() {
            return broken(format!("{} leases but {} expiries", self.leases.len(), self.expiries.len()));
        }
        let mut leases_by_consumer: SmallMap<ConsumerId, u32> = SmallMap::default();
        let mut preallocated = 0u64;
        for (id, lease) in self.leases.iter() {
            if lease.id != *id || !self.expiries.contains(&(lease.expires_at, lease.id)) {
                return broken(format!("lease {id} is not in the expiry queue under its own id and expiry"));
            }
            let in_session = self.sessions.get(&lease.session).is_some_and(|s| s.leases.contains(id));
            if !in_session {
                return broken(format!("lease {id} is not in its session"));
            }
            *leases_by_consumer.get_or_insert_with(lease.consumer, || 0) += 1;
            preallocated = preallocated.saturating_add(lease.qty_prealloc);
        }
        if preallocated != self.preallocated {
            return broken(format!("{} preallocated, but the leases hold {preallocated}", self.preallocated));
        }
        for (key, session) in self.sessions.iter() {
            if session.leases.is_empty()
                || session.leases.iter().any(|id| self.leases.get(id).map(|l| &l.session) != Some(key))
            {
                return broken("a session is empty or holds a lease of another session".into());
            }
        }
        let mut seats = 0u64;
        for (consumer, counts) in self.by_consumer.iter() {
            let leases = leases_by_consumer.get(consumer).copied().unwrap_or(0);
            if counts.leases != leases {
                return broken(format!("consumer {consumer} is counted {} leases, holds {leases}", counts.leases));
            }
            seats += u64::from(counts.seats);
        }
        if leases_by_consumer.iter().any(|(consumer, _)| self.by_consumer.get(consumer).is_none()) {
            return broken("a consumer holding leases is not counted".into());
        }
        if seats != self.seats_in_use() {
            return broken(format!("consumers hold {seats} seats, sessions and cooling seats {}", self.seats_in_use()));
        }
        let reserved_in_use = self.assignments().filter(|c| self.seats_of(*c) > 0).count() as u64;
        if self.seats_in_use() != self.pool_seats_in_use + reserved_in_use {
            return broken(format!(
                "{} seats in use, but {} in the pool and {reserved_in_use} reserved",
                self.seats_in_use(),
                self.pool_seats_in_use
            ));
        }
        Ok(())
    }

    fn issue(&mut self, lease: &Lease, replaces: Option<LeaseId>) {
        if let Some(old) = replaces.and_then(|id| self.remove_lease(id)) {
            self.expiries.remove(&(old.expires_at, old.id));
            match self.sessions.get_mut(&old.session) {
                // A renewal stays in its session, which keeps its seat and the seat its owner,
                // even when another consumer of a shared machine or process renews: handing the
                // seat to the renewer would free the owner's reservation while the seat is still
                // taken.
                Some(session) if old.session == lease.session => session.leases.retain(|id| *id != old.id),
                _ => self.end_session_of(&old, None),
            }
        }
        let consumer = lease.consumer;
        match self.sessions.get_mut(&lease.session) {
            Some(session) => session.leases.push(lease.id),
            None => {
                let cooled = self.rare.as_mut().and_then(|r| {
                    let i = r.cooling.iter().position(|c| c.session == lease.session)?;
                    r.cooling.remove(i)
                });
                let opened_by = match cooled {
                    // The session takes back the seat it left; the seat keeps its owner (whose
                    // reservation it may be), whichever consumer of the session comes back.
                    Some(seat) => seat.consumer,
                    None => {
                        self.occupy_seat(consumer);
                        consumer
                    }
                };
                let session = Session { opened_by, leases: smallvec![lease.id] };
                self.sessions.insert(lease.session.clone(), session);
            }
        }
        self.counts_of(consumer).leases += 1;
        self.preallocated = self.preallocated.saturating_add(lease.qty_prealloc);
        self.expiries.insert((lease.expires_at, lease.id));
        if self.license.model.max_hardware.is_some() {
            if let Some(hw) = lease.anchors.hw.as_deref() {
                self.saw_machine(hw, lease.issued_at);
            }
        }
        self.leases.insert(lease.id, lease.clone());
    }

    /// When `hw` was seen as far as its live leases tell (from the terms' start when it has
    /// none): for machines restored from a snapshot that did not record it.
    fn seen_by_live_leases(&self, hw: &str) -> MachineSeen {
        let on_machine = || self.leases.values().filter(move |l| l.anchors.hw.as_deref() == Some(hw));
        let from = self.license.valid_from;
        MachineSeen {
            first_seen_at: on_machine().map(|l| l.granted_at).min().unwrap_or(from),
            last_seen_at: on_machine().map(|l| l.issued_at).max().unwrap_or(from),
        }
    }

    /// Records that `hw` was granted a lease at `at` (node locking).
    fn saw_machine(&mut self, hw: &str, at: Timestamp) {
        let machines = &mut self.rare_mut().hardware;
        let known = machines.iter().find(|(known, _)| ***known == *hw).map(|(known, _)| Arc::clone(known));
        match known {
            Some(known) => {
                if let Some(seen) = machines.get_mut(&known) {
                    seen.last_seen_at = seen.last_seen_at.max(at);
                }
            }
            None => {
                machines.insert(Arc::from(hw), MachineSeen { first_seen_at: at, last_seen_at: at });
            }
        }
    }

    /// Ends a lease as an administrator's change does: its preallocation counts as used (as at
    /// expiry) and its seat is free at once, with no cooldown.
    fn end_without_cooldown(&mut self, id: LeaseId) {
        if let Some(lease) = self.remove_lease(id) {
            self.expiries.remove(&(lease.expires_at, lease.id));
            self.consumed = self.consumed.saturating_add(lease.qty_prealloc);
            self.end_session_of(&lease, None);
        }
    }

    fn release(&mut self, at: Timestamp, id: LeaseId, used_qty: u64) {
        let Some(lease) = self.remove_lease(id) else { return };
        self.expiries.remove(&(lease.expires_at, lease.id));
        self.consumed = self.consumed.saturating_add(used_qty);
        let cooldown_s = self.license.model.cooldown_s;
        let cools = cooldown_s > 0 && self.license.credit.dimension == Dimension::Seats;
        self.end_session_of(&lease, cools.then(|| at.plus_secs(cooldown_s)));
    }

    /// Takes a lease out of the lease table and the per-consumer and preallocation counts.
    fn remove_lease(&mut self, id: LeaseId) -> Option<Lease> {
        let lease = self.leases.remove(&id)?;
        self.preallocated = self.preallocated.saturating_sub(lease.qty_prealloc);
        if let Some(n) = self.by_consumer.get_mut(&lease.consumer) {
            n.leases = n.leases.saturating_sub(1);
            self.forget_if_idle(lease.consumer);
        }
        Some(lease)
    }

    /// Removes `lease` from its session; a session left without leases frees its seat, or keeps
    /// it cooling down until `cool_until`.
    fn end_session_of(&mut self, lease: &Lease, cool_until: Option<Timestamp>) {
        let Some(session) = self.sessions.get_mut(&lease.session) else { return };
        session.leases.retain(|id| *id != lease.id);
        if !session.leases.is_empty() {
            return;
        }
        let opened_by = session.opened_by;
        self.sessions.remove(&lease.session);
        match cool_until {
            Some(until) => {
                let seat = CoolingSeat { session: lease.session.clone(), consumer: opened_by, until };
                self.rare_mut().cooling.push_back(seat);
            }
            None => self.vacate_seat(opened_by),
        }
    }

    /// Seats cooling down, oldest first.
    fn cooling(&self) -> impl Iterator<Item = &CoolingSeat> {
        self.rare.iter().flat_map(|r| r.cooling.iter())
    }

    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    fn counts_of(&mut self, consumer: ConsumerId) -> &mut ConsumerCounts {
        self.by_consumer.get_or_insert_with(consumer, ConsumerCounts::default)
    }

    fn forget_if_idle(&mut self, consumer: ConsumerId) {
        if self.by_consumer.get(&consumer).is_some_and(|n| n.leases == 0 && n.seats == 0) {
            self.by_consumer.remove(&consumer);
        }
    }

    fn occupy_seat(&mut self, consumer: ConsumerId) {
        let reserved = self.is_assigned(consumer);
        let seats = &mut self.counts_of(consumer).seats;
        let uses_reservation = *seats == 0 && reserved;
        *seats += 1;
        if !uses_reservation {
            self.pool_seats_in_use += 1;
        }
    }

    fn vacate_seat(&mut self, consumer: ConsumerId) {
        let Some(counts) = self.by_consumer.get_mut(&consumer) else { return };
        if counts.seats == 0 {
            return;
        }
        counts.seats -= 1;
        let frees_reservation = counts.seats == 0 && reserved_in(&self.rare, consumer);
        self.forget_if_idle(consumer);
        if !frees_reservation {
            self.pool_seats_in_use = self.pool_seats_in_use.saturating_sub(1);
        }
    }

    fn assign(&mut self, consumer: ConsumerId) {
        if self.rare_mut().assignments.insert(consumer) && self.seats_of(consumer) > 0 {
            self.pool_seats_in_use = self.pool_seats_in_use.saturating_sub(1);
        }
    }

    fn unassign(&mut self, consumer: ConsumerId) {
        if self.rare.as_mut().is_some_and(|r| r.assignments.remove(&consumer)) && self.seats_of(consumer) > 0 {
            self.pool_seats_in_use += 1;
        }
    }
}

/// A session as a snapshot stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSnapshot {
    /// What identifies the session.
    pub key: SessionKey,
    /// The consumer whose seat it holds.
    pub opened_by: ConsumerId,
    /// Its live leases, in the order they were issued.
    pub leases: Vec<LeaseId>,
}

/// A seat cooling down after a release, as a snapshot stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoolingSeatSnapshot {
    /// The session that left the seat (it may take it back).
    pub session: SessionKey,
    /// The consumer whose seat it is.
    pub consumer: ConsumerId,
    /// When the seat is free again.
    pub until: Timestamp,
}

/// Everything in a [`LicenseState`], as plain serializable data for snapshots.
///
/// Collections are sorted by key, so two equal states give equal snapshots (tests compare states
/// this way). The lease expiry queue and per-consumer lease counts are not stored: they follow
/// from the leases exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseStateSnapshot {
    /// The license's terms.
    pub license: Arc<License>,
    /// Live leases, by id.
    pub leases: Vec<Lease>,
    /// Live sessions (sorted by their first lease id).
    pub sessions: Vec<SessionSnapshot>,
    /// Seats cooling down, in release order (the order matters: they end front first).
    pub cooling: Vec<CoolingSeatSnapshot>,
    /// Seats each consumer opened, by consumer.
    pub seats_by_consumer: Vec<(ConsumerId, u32)>,
    /// Seat reservations.
    pub assignments: Vec<ConsumerId>,
    /// Seats taken outside of reservations.
    pub pool_seats_in_use: u64,
    /// Hardware ids that have used the license.
    pub hardware: Vec<Arc<str>>,
    /// When each of `hardware` was first and last seen, in the same order (empty in a
    /// snapshot of format 2, which did not keep it).
    #[serde(default, with = "crate::shapes::since_format_3")]
    pub hardware_seen: Vec<MachineSeen>,
    /// Grants under an idempotency key in the last day, oldest first.
    #[serde(default, with = "crate::shapes::since_format_3")]
    pub idempotent: Vec<IdempotentGrant>,
    /// Uses or seconds consumed and settled.
    pub consumed: u64,
    /// Uses or seconds set aside by live leases.
    pub preallocated: u64,
    /// The open usage record.
    #[serde(default, with = "crate::shapes::since_format_5")]
    pub usage_open: Option<OpenUsage>,
}

impl LicenseState {
    /// This state as snapshot data.
    pub fn to_snapshot(&self) -> LicenseStateSnapshot {
        let mut leases: Vec<Lease> = self.leases.values().cloned().collect();
        leases.sort_by_key(|l| l.id);
        let mut sessions: Vec<SessionSnapshot> = self
            .sessions
            .iter()
            .map(|(key, s)| SessionSnapshot { key: key.clone(), opened_by: s.opened_by, leases: s.leases.to_vec() })
            .collect();
        sessions.sort_by_key(|s| s.leases.first().copied());
        let mut seats_by_consumer: Vec<(ConsumerId, u32)> =
            self.by_consumer.iter().filter(|(_, n)| n.seats > 0).map(|(c, n)| (*c, n.seats)).collect();
        seats_by_consumer.sort();
        let mut machines: Vec<(&Arc<str>, &MachineSeen)> = self.machines().collect();
        machines.sort_by_key(|(hw, _)| *hw);
        LicenseStateSnapshot {
            license: Arc::clone(&self.license),
            leases,
            sessions,
            cooling: self
                .cooling()
                .map(|c| CoolingSeatSnapshot { session: c.session.clone(), consumer: c.consumer, until: c.until })
                .collect(),
            seats_by_consumer,
            assignments: self.assignments().collect(),
            pool_seats_in_use: self.pool_seats_in_use,
            hardware: machines.iter().map(|(hw, _)| Arc::clone(hw)).collect(),
            hardware_seen: machines.iter().map(|(_, seen)| **seen).collect(),
            idempotent: self.idempotent_grants().cloned().collect(),
            consumed: self.consumed,
            preallocated: self.preallocated,
            usage_open: self.open_usage().cloned(),
        }
    }

    /// The state a snapshot describes (the inverse of [`LicenseState::to_snapshot`]).
    pub fn from_snapshot(snapshot: LicenseStateSnapshot) -> Self {
        let mut state = LicenseState::new(snapshot.license);
        for lease in snapshot.leases {
            state.expiries.insert((lease.expires_at, lease.id));
            state.counts_of(lease.consumer).leases += 1;
            state.leases.insert(lease.id, lease);
        }
        state.sessions = snapshot
            .sessions
            .into_iter()
            .map(|s| (s.key, Session { opened_by: s.opened_by, leases: s.leases.into_iter().collect() }))
            .collect();
        let rare = Rare {
            cooling: snapshot
                .cooling
                .into_iter()
                .map(|c| CoolingSeat { session: c.session, consumer: c.consumer, until: c.until })
                .collect(),
            assignments: snapshot.assignments.into_iter().collect(),
            hardware: SmallMap::default(),
            idempotent: snapshot.idempotent.into_iter().collect(),
        };
        state.rare = Some(Box::new(rare));
        let mut seen = snapshot.hardware_seen.into_iter();
        for hw in snapshot.hardware {
            let seen = seen.next().unwrap_or_else(|| state.seen_by_live_leases(&hw));
            state.rare_mut().hardware.insert(hw, seen);
        }
        if state.rare.as_ref().is_some_and(|r| r.is_empty()) {
            state.rare = None;
        }
        for (consumer, seats) in snapshot.seats_by_consumer {
            state.counts_of(consumer).seats = seats;
        }
        state.pool_seats_in_use = snapshot.pool_seats_in_use;
        state.consumed = snapshot.consumed;
        state.preallocated = snapshot.preallocated;
        state.usage_open = snapshot.usage_open.map(Box::new);
        state
    }
}
