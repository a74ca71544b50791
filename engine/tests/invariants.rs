//! Property tests of SPEC section 2's invariants on the pure state machine: random sequences of
//! consume, renew, release, time passing (expiry), revoke, deactivate, reactivate, assign and
//! unassign against one license with a random credit (mostly ENFORCED seats, use count or use
//! time; sometimes METERED), random small model settings and sometimes an end of validity.
//! After every step:
//!
//! 1. an ENFORCED seat license never has more live sessions, or seats taken, than it has seats;
//! 2. an ENFORCED use-count or use-time license never has used + pre-allocated above its credit,
//!    and its preallocation is what its live leases set aside;
//! 4. a rotated, released or expired lease id is never live again, and renewing or releasing it
//!    is refused with `leaseIdNotFound` (a consume naming it is refused too);
//! 5. a revoked, deactivated or ended license grants nothing, and its renewals fail;
//!
//! plus the model's own limits (leases per consumer, machines of a node-locked license) and the
//! granted duration (never longer than the model's lease time or the license). And the journal
//! of applied events, replayed into a fresh state through [`Recovered::from_entries`], gives the
//! same state: usage, live lease ids, every lease, sessions, cooling seats, reservations (what
//! invariant 3 rests on). The steps are driven the way a license actor drives them: expire up to
//! now, decide, apply, journal.
//!
//! Seat reservations are applied when `decide_assign` (the rule the license actor uses) accepts
//! them. `PROPTEST_CASES` raises the case count for a longer hunt.

use leasehold_engine::decide::{
    decide_assign, decide_consume, decide_release, decide_renew, ConsumeRequest, Denial, ErrorCode, LicenseEvent,
    LicenseState, ReleaseRequest, Releaser, RenewRequest, UsedQty,
};
use leasehold_engine::ids::{ConsumerId, LeaseId, LicenseId, LicenseeId, ProductId};
use leasehold_engine::journal::{Change, JournalEntry};
use leasehold_engine::model::{
    Credit, Dimension, Enforcement, LeaseMode, License, LicenseModel, LicenseStatus, SessionAnchor,
};
use leasehold_engine::replay::Recovered;
use leasehold_engine::time::Timestamp;
use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use uuid::Uuid;

const PRODUCT: &str = "ThreeDee";
const FEATURE: &str = "render";
const T0: Timestamp = Timestamp::from_secs(1_780_000_000);
const CONSUMERS: usize = 4;
const HARDWARE: [Option<&str>; 4] = [Some("hw-0"), Some("hw-1"), Some("hw-2"), None];
const PROCESSES: [Option<&str>; 3] = [Some("p-0"), Some("p-1"), None];

fn consumer(n: usize) -> ConsumerId {
    ConsumerId(Uuid::from_u128(0xC0_0000 + n as u128))
}

fn someone_else_than(who: ConsumerId) -> ConsumerId {
    (0..CONSUMERS).map(consumer).find(|c| *c != who).expect("more than one consumer")
}

fn license_id() -> LicenseId {
    LicenseId(Uuid::from_u128(0x11))
}

// ---- what is generated ----

#[derive(Debug, Clone)]
enum Used {
    Unreported,
    Absolute(u64),
    Incremental(u64),
}

impl Used {
    fn qty(&self) -> UsedQty {
        match self {
            Used::Unreported => UsedQty::Unreported,
            Used::Absolute(n) => UsedQty::Absolute(*n),
            Used::Incremental(n) => UsedQty::Incremental(*n),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Consume {
        who: usize,
        feature: bool,
        hw: usize,
        process: usize,
        offline: bool,
        metered: bool,
        qty: Option<u64>,
        duration_s: Option<u64>,
        /// Names a lease id issued earlier (live or not).
        chain: Option<Index>,
    },
    Renew {
        /// A lease id issued earlier: a live one, or any.
        pick: Index,
        live: bool,
        /// Renewed by the lease's holder, or by someone else.
        by_holder: bool,
        used: Used,
        extra_qty: Option<u64>,
        duration_s: Option<u64>,
    },
    Release {
        pick: Index,
        live: bool,
        by_admin: bool,
        used: Used,
    },
    AdvanceMillis(u64),
    Revoke,
    Deactivate,
    Reactivate,
    Assign(usize),
    Unassign(usize),
}

fn used() -> impl Strategy<Value = Used> {
    prop_oneof![Just(Used::Unreported), (0u64..200).prop_map(Used::Absolute), (0u64..100).prop_map(Used::Incremental)]
}

fn op() -> impl Strategy<Value = Op> {
    let consume = (
        0..CONSUMERS,
        prop::bool::weighted(0.2),
        prop_oneof![9 => 0..HARDWARE.len() - 1, 1 => Just(HARDWARE.len() - 1)],
        prop_oneof![9 => 0..PROCESSES.len() - 1, 1 => Just(PROCESSES.len() - 1)],
        (prop::bool::weighted(0.2), prop::bool::weighted(0.1)),
        prop::option::weighted(0.5, 1u64..8),
        prop::option::weighted(0.5, 1u64..200),
        prop::option::weighted(0.3, any::<Index>()),
    )
        .prop_map(|(who, feature, hw, process, (offline, metered), qty, duration_s, chain)| Op::Consume {
            who,
            feature,
            hw,
            process,
            offline,
            metered,
            qty,
            duration_s,
            chain,
        });
    let renew = (
        (any::<Index>(), prop::bool::weighted(0.75)),
        prop::bool::weighted(0.9),
        used(),
        prop::option::weighted(0.3, 0u64..5),
        prop::option::weighted(0.3, 1u64..200),
    )
        .prop_map(|((pick, live), by_holder, used, extra_qty, duration_s)| Op::Renew {
            pick,
            live,
            by_holder,
            used,
            extra_qty,
            duration_s,
        });
    let release = (any::<Index>(), prop::bool::weighted(0.75), prop::bool::weighted(0.2), used())
        .prop_map(|(pick, live, by_admin, used)| Op::Release { pick, live, by_admin, used });
    prop_oneof![
        30 => consume,
        20 => renew,
        10 => release,
        12 => (0u64..90_000).prop_map(Op::AdvanceMillis),
        1 => Just(Op::Revoke),
        1 => Just(Op::Deactivate),
        3 => Just(Op::Reactivate),
        4 => (0..CONSUMERS).prop_map(Op::Assign),
        2 => (0..CONSUMERS).prop_map(Op::Unassign),
    ]
}

fn anchors(mask: u8) -> Vec<SessionAnchor> {
    [SessionAnchor::User, SessionAnchor::Hw, SessionAnchor::Process]
        .into_iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .map(|(_, anchor)| anchor)
        .collect()
}

fn license_model() -> impl Strategy<Value = LicenseModel> {
    (
        (5u64..120, 5u64..600, prop_oneof![Just(0u64), Just(5)], prop_oneof![Just(0u64), Just(30)]),
        (prop::bool::weighted(0.9), prop::bool::weighted(0.9), prop::bool::weighted(0.25)),
        0u8..8,
        prop::option::weighted(0.25, 1u32..4),
        prop::bool::weighted(0.2),
        prop::option::weighted(0.25, 1u32..3),
    )
        .prop_map(
            |(
                (online_s, offline_s, heartbeat_interval_s, cooldown_s),
                (allow_extension, allow_release, lease_chaining),
                anchor_mask,
                max_hardware,
                named_seats,
                max_leases_per_consumer,
            )| LicenseModel {
                lease_time_online_s: online_s,
                refresh_time_online_s: online_s / 2,
                lease_time_offline_s: offline_s,
                refresh_time_offline_s: offline_s / 2,
                heartbeat_interval_s,
                cooldown_s,
                allow_extension,
                allow_release,
                lease_chaining,
                session_anchors: anchors(anchor_mask),
                max_hardware,
                named_seats,
                max_leases_per_consumer,
                ..LicenseModel::default()
            },
        )
}

fn credit() -> impl Strategy<Value = Credit> {
    let enforced = |dimension, qty| Credit { dimension, qty, enforcement: Enforcement::Enforced };
    let dimension = prop_oneof![Just(Dimension::Seats), Just(Dimension::UseCount), Just(Dimension::UseTime)];
    prop_oneof![
        3 => (1u64..5).prop_map(move |n| enforced(Dimension::Seats, n)),
        3 => (1u64..15).prop_map(move |n| enforced(Dimension::UseCount, n)),
        3 => (10u64..400).prop_map(move |s| enforced(Dimension::UseTime, s)),
        // Metered credits have no limit to hold, but replay and lease ids must still hold.
        1 => (dimension, 1u64..10).prop_map(|(dimension, qty)| Credit { dimension, qty, enforcement: Enforcement::Metered }),
    ]
}

/// Seat licenses whose sessions several consumers may share (anchored on the machine or the
/// process, not the user), with cooldowns: where reservations and shared sessions meet.
fn shared_seat_license() -> impl Strategy<Value = License> {
    let credit =
        (1u64..4).prop_map(|n| Credit { dimension: Dimension::Seats, qty: n, enforcement: Enforcement::Enforced });
    let anchor_sets = prop_oneof![
        Just(vec![SessionAnchor::Hw]),
        Just(vec![SessionAnchor::Hw, SessionAnchor::Process]),
        Just(vec![SessionAnchor::Process]),
        Just(vec![SessionAnchor::User, SessionAnchor::Hw]),
    ];
    let model = (5u64..120, prop_oneof![Just(0u64), Just(30)], anchor_sets).prop_map(
        |(online_s, cooldown_s, session_anchors)| LicenseModel {
            lease_time_online_s: online_s,
            refresh_time_online_s: online_s / 2,
            cooldown_s,
            session_anchors,
            ..LicenseModel::default()
        },
    );
    (credit, model).prop_map(|(credit, model)| terms(credit, model))
}

fn license() -> impl Strategy<Value = License> {
    let ends_after_s = prop::option::weighted(0.2, 30u64..1_500);
    (credit(), license_model(), ends_after_s).prop_map(|(credit, model, ends_after_s)| License {
        valid_until: ends_after_s.map(|s| T0.plus_secs(s)),
        ..terms(credit, model)
    })
}

fn terms(credit: Credit, model: LicenseModel) -> License {
    License {
        id: license_id(),
        licensee: LicenseeId(Uuid::from_u128(0x22)),
        product: ProductId(Uuid::from_u128(0x33)),
        product_name: PRODUCT.into(),
        tier: None,
        features: vec![FEATURE.into()],
        valid_from: T0,
        valid_until: None,
        status: LicenseStatus::Active,
        license_key: None,
        revokes_sibling_keys: false,
        properties: BTreeMap::new(),
        credit,
        model: model.interned(),
        feature_overrides: Default::default(),
        key_activated_at: None,
        expiry_recorded: None,
        entitlement: None,
    }
}

// ---- the run ----

/// One license driven like its actor drives it, with what the invariants need to remember.
struct Run {
    state: LicenseState,
    now: Timestamp,
    journal: Vec<JournalEntry>,
    /// Every lease id ever issued, in order, with its holder.
    issued: Vec<(LeaseId, ConsumerId)>,
    /// Ids that were live and are no longer: rotated, released or expired.
    dead: HashSet<LeaseId>,
    next_lease: u128,
}

impl Run {
    fn new(license: License) -> Self {
        let terms = Arc::new(license);
        let journal = vec![JournalEntry {
            at: T0,
            change: Change::License { license: terms.id, event: LicenseEvent::Terms(Arc::clone(&terms)) },
        }];
        Run {
            state: LicenseState::new(terms),
            now: T0,
            journal,
            issued: Vec::new(),
            dead: HashSet::new(),
            next_lease: 0,
        }
    }

    fn live_ids(&self) -> BTreeSet<LeaseId> {
        self.state.leases().map(|l| l.id).collect()
    }

    fn new_lease_id(&mut self) -> LeaseId {
        self.next_lease += 1;
        LeaseId(Uuid::from_u128(0x0001_EA5E_0000_0000 + self.next_lease))
    }

    fn commit(&mut self, event: LicenseEvent) {
        self.state.apply(self.now, &event).expect("a decided change keeps the invariants");
        if let LicenseEvent::LeaseIssued { lease, .. } = &event {
            self.issued.push((lease.id, lease.consumer));
        }
        self.journal.push(JournalEntry { at: self.now, change: Change::License { license: license_id(), event } });
    }

    fn set_status(&mut self, status: LicenseStatus) {
        let terms = License { status, ..(**self.state.license()).clone() };
        self.commit(LicenseEvent::Terms(Arc::new(terms)));
    }

    /// The code a license that is not in force answers with: revoked, deactivated or ended.
    fn out_of_force_code(&self) -> Option<ErrorCode> {
        let license = self.state.license();
        match license.status {
            LicenseStatus::Deactivated => Some(ErrorCode::LicenseNotActive),
            LicenseStatus::Revoked { .. } => Some(ErrorCode::LicenseRevoked),
            LicenseStatus::Active => {
                license.valid_until.filter(|end| *end <= self.now).map(|_| ErrorCode::LicenseExpired)
            }
        }
    }

    /// An id issued earlier, any of them.
    fn pick(&self, index: &Index) -> Option<(LeaseId, ConsumerId)> {
        (!self.issued.is_empty()).then(|| self.issued[index.index(self.issued.len())])
    }

    /// A live lease's id when `live` and there is one, otherwise any id issued earlier.
    fn pick_lease(&self, index: &Index, live: bool) -> Option<(LeaseId, ConsumerId)> {
        let mut leases: Vec<(LeaseId, ConsumerId)> = self.state.leases().map(|l| (l.id, l.consumer)).collect();
        leases.sort();
        if live && !leases.is_empty() {
            return Some(leases[index.index(leases.len())]);
        }
        self.pick(index)
    }

    /// Carries out `op`; returns what the step proved wrong, if anything.
    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        self.state.expire_until(self.now, |_| {});
        match op {
            Op::Consume { who, feature, hw, process, offline, metered, qty, duration_s, chain } => {
                let mut req = ConsumeRequest::new(consumer(*who), if *feature { FEATURE } else { PRODUCT });
                req.anchors.hw = HARDWARE[*hw].map(String::from);
                req.anchors.process = PROCESSES[*process].map(String::from);
                req.mode = if *offline { LeaseMode::Offline } else { LeaseMode::Online };
                req.metered = *metered;
                req.qty = *qty;
                req.duration_s = *duration_s;
                req.lease_id = chain.as_ref().and_then(|i| self.pick(i)).map(|(id, _)| id);
                let id = self.new_lease_id();
                let decision = decide_consume(&self.state, &req, self.now, id);
                self.check_consume(&req, &decision)?;
                if let Ok(event) = decision {
                    self.commit(event);
                }
            }
            Op::Renew { pick, live, by_holder, used, extra_qty, duration_s } => {
                let Some((lease_id, holder)) = self.pick_lease(pick, *live) else { return Ok(()) };
                let by = if *by_holder { holder } else { someone_else_than(holder) };
                let mut req = RenewRequest::new(by, lease_id);
                req.used = used.qty();
                req.extra_qty = *extra_qty;
                req.duration_s = *duration_s;
                let id = self.new_lease_id();
                let decision = decide_renew(&self.state, &req, self.now, id);
                self.check_renew(&req, holder, &decision)?;
                if let Ok(event) = decision {
                    self.commit(event);
                }
            }
            Op::Release { pick, live, by_admin, used } => {
                let Some((lease_id, holder)) = self.pick_lease(pick, *live) else { return Ok(()) };
                let by = if *by_admin { Releaser::Admin } else { Releaser::Consumer(holder) };
                let req = ReleaseRequest { by, lease_id, used: used.qty() };
                let decision = decide_release(&self.state, &req, self.now);
                if self.dead.contains(&lease_id) {
                    prop_assert_eq!(code_of(&decision), Some(ErrorCode::LeaseIdNotFound), "released a dead id");
                }
                if let Ok(event) = decision {
                    self.commit(event);
                }
            }
            Op::AdvanceMillis(ms) => {
                self.now = self.now.plus_millis(i64::try_from(*ms).unwrap_or(i64::MAX));
                self.state.expire_until(self.now, |_| {});
            }
            Op::Revoke => self.set_status(LicenseStatus::Revoked { reason: "test".into(), at: self.now }),
            Op::Deactivate => {
                if self.state.license().status == LicenseStatus::Active {
                    self.set_status(LicenseStatus::Deactivated);
                }
            }
            Op::Reactivate => {
                // As the engine does: a revoked license stays revoked.
                if self.state.license().status == LicenseStatus::Deactivated {
                    self.set_status(LicenseStatus::Active);
                }
            }
            Op::Assign(who) => {
                if let Ok(Some(event)) = decide_assign(&self.state, consumer(*who)) {
                    self.commit(event);
                }
            }
            Op::Unassign(who) => {
                if self.state.is_assigned(consumer(*who)) {
                    self.commit(LicenseEvent::SeatUnassigned(consumer(*who)));
                }
            }
        }
        Ok(())
    }

    fn check_consume(
        &self,
        req: &ConsumeRequest,
        decision: &Result<LicenseEvent, Denial>,
    ) -> Result<(), TestCaseError> {
        if let Some(status_code) = self.out_of_force_code() {
            prop_assert_eq!(code_of(decision), Some(status_code), "a license out of force granted a consume");
        }
        if let Some(named) = req.lease_id.filter(|id| self.dead.contains(id)) {
            prop_assert!(decision.is_err(), "a consume naming dead lease {} was granted", named);
        }
        if let Ok(LicenseEvent::LeaseIssued { lease, replaces }) = decision {
            prop_assert!(
                replaces.is_none_or(|old| self.state.lease(old).is_some()),
                "replaced a lease that is not live"
            );
            if let Some(named) = req.lease_id {
                prop_assert_eq!(*replaces, Some(named), "a chained consume must rotate the lease it names");
            }
            self.check_lease_times(lease.mode, lease.expires_at)?;
        }
        Ok(())
    }

    fn check_renew(
        &self,
        req: &RenewRequest,
        holder: ConsumerId,
        decision: &Result<LicenseEvent, Denial>,
    ) -> Result<(), TestCaseError> {
        if self.dead.contains(&req.lease_id) || req.consumer != holder {
            prop_assert_eq!(code_of(decision), Some(ErrorCode::LeaseIdNotFound), "renewed a dead or foreign id");
        }
        if let Some(status_code) = self.out_of_force_code() {
            let code = code_of(decision);
            prop_assert!(
                code == Some(status_code) || code == Some(ErrorCode::LeaseIdNotFound),
                "a license out of force answered a renewal with {:?}",
                code
            );
        }
        if let Ok(LicenseEvent::LeaseIssued { lease, replaces }) = decision {
            prop_assert_eq!(*replaces, Some(req.lease_id));
            self.check_lease_times(lease.mode, lease.expires_at)?;
        }
        Ok(())
    }

    /// Granted duration = min(requested, model's lease time, license end): never more than the
    /// model's lease time, and never nothing.
    fn check_lease_times(&self, mode: LeaseMode, expires_at: Timestamp) -> Result<(), TestCaseError> {
        let model = &self.state.license().model;
        let max_s = match mode {
            LeaseMode::Online => model.lease_time_online_s,
            LeaseMode::Offline => model.lease_time_offline_s,
        };
        let end = self.state.license().valid_until;
        let ends_within_a_second = end.is_some_and(|end| end.millis_since(self.now) < 1_000);
        prop_assert!(expires_at > self.now || ends_within_a_second, "a lease granted already expired");
        prop_assert!(expires_at <= self.now.plus_secs(max_s), "a lease longer than the model's lease time");
        prop_assert!(end.is_none_or(|end| expires_at <= end), "a lease outlasting its license");
        Ok(())
    }

    /// The invariants that hold between steps.
    fn check_invariants(&self) -> Result<BTreeSet<LeaseId>, TestCaseError> {
        let live = self.live_ids();
        for id in &live {
            prop_assert!(!self.dead.contains(id), "dead lease id {} is live again", id);
        }
        let credit = self.state.license().credit;
        let usage = self.state.usage();
        prop_assert_eq!(usage.live_leases, live.len() as u64);
        self.check_model_limits()?;
        match credit.dimension {
            _ if !credit.is_enforced() => {}
            Dimension::Seats => {
                let sessions: HashSet<_> = self.state.leases().map(|l| l.session.clone()).collect();
                prop_assert!(sessions.len() as u64 <= usage.seats_in_use, "a live session without a seat");
                prop_assert!(
                    usage.seats_in_use <= credit.qty,
                    "{} seats in use on a license of {}",
                    usage.seats_in_use,
                    credit.qty
                );
            }
            Dimension::UseCount | Dimension::UseTime => {
                let set_aside: u64 = self.state.leases().map(|l| l.qty_prealloc).sum();
                prop_assert_eq!(set_aside, self.state.preallocated(), "preallocation drifted from the leases");
                prop_assert!(
                    self.state.consumed() + self.state.preallocated() <= credit.qty,
                    "used {} + preallocated {} above the credit of {}",
                    self.state.consumed(),
                    self.state.preallocated(),
                    credit.qty
                );
                for lease in self.state.leases() {
                    prop_assert!(lease.qty_verified <= lease.qty_prealloc, "verified above preallocated");
                }
            }
        }
        self.check_replay(&live)?;
        Ok(live)
    }

    /// The model's own limits: leases per consumer, distinct machines of a node-locked license.
    fn check_model_limits(&self) -> Result<(), TestCaseError> {
        let model = &self.state.license().model;
        if let Some(max) = model.max_leases_per_consumer {
            let mut held: BTreeMap<ConsumerId, u32> = BTreeMap::new();
            for lease in self.state.leases() {
                *held.entry(lease.consumer).or_insert(0) += 1;
            }
            for (who, n) in held {
                prop_assert!(n <= max, "consumer {} holds {} leases, at most {} allowed", who, n, max);
            }
        }
        if let Some(max) = model.max_hardware {
            let machines: BTreeSet<&str> = self.state.leases().filter_map(|l| l.anchors.hw.as_deref()).collect();
            prop_assert!(machines.len() <= max as usize, "{} machines on a license locked to {}", machines.len(), max);
            prop_assert!(self.state.hardware_count() <= max as usize, "more machines remembered than allowed");
        }
        Ok(())
    }

    /// Replaying the journal into a fresh state gives the same usage and live leases.
    fn check_replay(&self, live: &BTreeSet<LeaseId>) -> Result<(), TestCaseError> {
        let recovered = Recovered::from_entries(&self.journal);
        let Some((replayed, _)) = recovered.licenses.get(&license_id()) else {
            return Err(TestCaseError::fail("the replayed journal lost the license"));
        };
        let mut replayed = replayed.clone();
        replayed.expire_until(self.now, |_| {});
        prop_assert_eq!(replayed.usage(), self.state.usage(), "replay changed the usage");
        prop_assert_eq!(&replayed.leases().map(|l| l.id).collect::<BTreeSet<_>>(), live, "replay changed the leases");
        // Everything else too: sessions, cooling seats, reservations, hardware, credit.
        prop_assert_eq!(replayed.to_snapshot(), self.state.to_snapshot(), "replay changed the state");
        Ok(())
    }
}

fn code_of(decision: &Result<LicenseEvent, Denial>) -> Option<ErrorCode> {
    decision.as_ref().err().map(|d| d.code)
}

/// The license actor's rule for a new seat reservation: only when a seat can be set aside
/// without taking one a session holds now.
fn run(license: License, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut run = Run::new(license);
    let mut live = BTreeSet::new();
    for op in ops {
        run.step(op)?;
        run.state.expire_until(run.now, |_| {});
        let now_live = run.check_invariants()?;
        run.dead.extend(live.difference(&now_live).copied());
        live = now_live;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_for_random_sequences_of_operations(
        license in license(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(license, &ops)?;
    }

    #[test]
    fn seats_hold_when_consumers_share_sessions_and_reservations(
        license in shared_seat_license(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(license, &ops)?;
    }
}
