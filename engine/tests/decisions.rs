//! Scenario tests of the pure decisions (SPEC sections 2 and 3): a license's state, a request
//! and the time go in, a lease event or a denial with the SPEC's code comes out. No runtime, no
//! clock: each scenario moves its own time forward and applies the granted events itself, the
//! way a license actor does (expire up to now, decide, apply).
//!
//! Every error code but `overloaded` (which only a full mailbox produces) has a scenario here;
//! `every_error_code_but_overloaded_comes_from_the_rules` checks that none is missing.

use leasehold_engine::decide::{
    decide_consume, decide_release, decide_renew, ConsumeRequest, Denial, ErrorCode, LicenseEvent, LicenseFilters,
    LicenseState, ReleaseRequest, Releaser, RenewRequest, UsedQty,
};
use leasehold_engine::directory::{Directory, DirectoryEvent};
use leasehold_engine::ids::{ConsumerId, LeaseId, LicenseId, LicenseeId, ProductId};
use leasehold_engine::model::{
    Consumer, ConsumerKind, Credit, Dimension, Enforcement, GeoRules, IpRules, Lease, LeaseMode, License, LicenseModel,
    LicenseStatus, Licensee, LicenseeKind, SessionAnchor, VersionRange,
};
use leasehold_engine::time::Timestamp;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use uuid::Uuid;

const PRODUCT: &str = "ThreeDee";
const T0: Timestamp = Timestamp::from_secs(1_780_000_000);
const DAY_S: u64 = 86_400;

fn consumer(n: u128) -> ConsumerId {
    ConsumerId(Uuid::from_u128(0xC0_0000 + n))
}

fn seats(n: u64) -> Credit {
    Credit { dimension: Dimension::Seats, qty: n, enforcement: Enforcement::Enforced }
}

fn use_count(n: u64) -> Credit {
    Credit { dimension: Dimension::UseCount, qty: n, enforcement: Enforcement::Enforced }
}

fn use_time_s(s: u64) -> Credit {
    Credit { dimension: Dimension::UseTime, qty: s, enforcement: Enforcement::Enforced }
}

fn metered(dimension: Dimension, qty: u64) -> Credit {
    Credit { dimension, qty, enforcement: Enforcement::Metered }
}

fn model(change: impl FnOnce(&mut LicenseModel)) -> LicenseModel {
    let mut model = LicenseModel::default();
    change(&mut model);
    model
}

/// A perpetual license of ThreeDee (with feature `render`), valid since a day before `T0`.
fn license(credit: Credit, model: LicenseModel) -> License {
    License {
        id: LicenseId(Uuid::from_u128(0x11)),
        licensee: LicenseeId(Uuid::from_u128(0x22)),
        product: ProductId(Uuid::from_u128(0x33)),
        product_name: PRODUCT.into(),
        tier: None,
        features: vec!["render".into()],
        valid_from: Timestamp::from_secs(T0.as_secs() - 86_400),
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

/// One license's state and the time, driven the way a license actor drives it.
struct Desk {
    state: LicenseState,
    now: Timestamp,
    next_lease: u128,
}

impl Desk {
    fn new(license: License) -> Self {
        Desk { state: LicenseState::new(Arc::new(license)), now: T0, next_lease: 1 }
    }

    fn with(credit: Credit, model: LicenseModel) -> Self {
        Desk::new(license(credit, model))
    }

    fn new_lease_id(&mut self) -> LeaseId {
        self.next_lease += 1;
        LeaseId(Uuid::from_u128(0x0001_EA5E_0000 + self.next_lease))
    }

    fn advance_s(&mut self, s: u64) {
        self.now = self.now.plus_secs(s);
        self.state.expire_until(self.now, |_| {});
    }

    fn apply(&mut self, event: &LicenseEvent) {
        self.state.expire_until(self.now, |_| {});
        self.state.apply(self.now, event).expect("a decided change keeps the invariants");
    }

    fn issued(&mut self, event: Result<LicenseEvent, Denial>) -> Result<Lease, Denial> {
        let event = event?;
        self.apply(&event);
        match event {
            LicenseEvent::LeaseIssued { lease, .. } => Ok(lease),
            other => panic!("a grant issues a lease, not {other:?}"),
        }
    }

    fn consume(&mut self, req: &ConsumeRequest) -> Result<Lease, Denial> {
        self.state.expire_until(self.now, |_| {});
        let id = self.new_lease_id();
        let event = decide_consume(&self.state, req, self.now, id);
        self.issued(event)
    }

    fn consume_by(&mut self, who: ConsumerId) -> Result<Lease, Denial> {
        self.consume(&ConsumeRequest::new(who, PRODUCT))
    }

    fn renew(&mut self, req: &RenewRequest) -> Result<Lease, Denial> {
        self.state.expire_until(self.now, |_| {});
        let id = self.new_lease_id();
        let event = decide_renew(&self.state, req, self.now, id);
        self.issued(event)
    }

    fn renew_lease(&mut self, lease: &Lease) -> Result<Lease, Denial> {
        self.renew(&RenewRequest::new(lease.consumer, lease.id))
    }

    /// Releases; answers the quantity charged to the credit.
    fn release(&mut self, req: &ReleaseRequest) -> Result<u64, Denial> {
        self.state.expire_until(self.now, |_| {});
        let event = decide_release(&self.state, req, self.now)?;
        self.apply(&event);
        match event {
            LicenseEvent::LeaseReleased { used_qty, .. } => Ok(used_qty),
            other => panic!("a release ends a lease, not {other:?}"),
        }
    }

    fn release_lease(&mut self, lease: &Lease, used: UsedQty) -> Result<u64, Denial> {
        self.release(&ReleaseRequest { by: Releaser::Consumer(lease.consumer), lease_id: lease.id, used })
    }

    fn set_terms(&mut self, change: impl FnOnce(&mut License)) {
        let mut terms = (**self.state.license()).clone();
        change(&mut terms);
        self.apply(&LicenseEvent::Terms(Arc::new(terms)));
    }

    fn set_status(&mut self, status: LicenseStatus) {
        self.set_terms(|l| l.status = status);
    }

    fn assign(&mut self, who: ConsumerId) {
        self.apply(&LicenseEvent::SeatAssigned(who));
    }

    fn live_ids(&self) -> BTreeSet<LeaseId> {
        self.state.leases().map(|l| l.id).collect()
    }
}

fn code(result: Result<impl std::fmt::Debug, Denial>) -> ErrorCode {
    match result {
        Ok(granted) => panic!("expected a denial, got a grant: {granted:?}"),
        Err(denial) => denial.code,
    }
}

fn on_hw(who: ConsumerId, hw: &str) -> ConsumeRequest {
    ConsumeRequest::new(who, PRODUCT).on_hardware(hw)
}

fn with_version(who: ConsumerId, version: &str) -> ConsumeRequest {
    let mut req = ConsumeRequest::new(who, PRODUCT);
    req.anchors.version = Some(version.into());
    req
}

fn from_ip(who: ConsumerId, ip: &str) -> ConsumeRequest {
    let mut req = ConsumeRequest::new(who, PRODUCT);
    req.client_ip = Some(ip.parse().unwrap());
    req
}

// ---- the error codes ----

#[test]
fn error_codes_are_exactly_the_spec_list() {
    const SPEC: [&str; 22] = [
        "notAuthorized",
        "noLicenseFound",
        "licenseExpired",
        "licenseNotActive",
        "licenseValidityNotStarted",
        "licenseQuotaExceeded",
        "maxConcurrentSessionsExceed",
        "maxUseCountExceed",
        "maxAggregateUseTimeExceed",
        "consumptionLimitExceed",
        "leaseIdNotMatching",
        "leaseIdNotFound",
        "licenseAnchorMissing",
        "licenseAssignmentMissing",
        "licenseAssignmentDenied",
        "clientIpAddressBlocked",
        "unallowedClientVersion",
        "licenseRevoked",
        "heartbeatTooEarly",
        "overloaded",
        // SPEC section 13, from the seeds' geolocation codes.
        "clientGeolocationBlocked",
        "unresolvedGeolocation",
    ];
    let spelled: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(spelled, SPEC);
    for code in ErrorCode::ALL {
        assert_eq!(serde_json::to_string(&code).unwrap(), format!("\"{}\"", code.as_str()), "serde spelling");
        assert_eq!(code.to_string(), code.as_str());
    }
}

/// Each scenario below that ends in a denial, by the code it demonstrates.
const PROVOKERS: [fn() -> ErrorCode; 21] = [
    unknown_consumer,
    consumer_without_license,
    consume_after_validity_ended,
    consume_on_deactivated_license,
    consume_before_validity_started,
    second_unanchored_lease_on_one_seat,
    fourth_consumer_on_three_seats,
    use_count_spent,
    use_time_spent,
    consumer_over_lease_limit,
    chained_consume_without_lease_id,
    renew_rotated_lease,
    hw_anchor_missing,
    named_seat_without_assignment,
    free_seat_reserved_for_another,
    blocked_ip,
    version_above_range,
    consume_on_revoked_license,
    heartbeat_before_interval,
    blocked_country,
    unknown_country,
];

#[test]
fn every_error_code_but_overloaded_comes_from_the_rules() {
    let produced: BTreeSet<ErrorCode> = PROVOKERS.iter().map(|provoke| provoke()).collect();
    let expected: BTreeSet<ErrorCode> = ErrorCode::ALL.into_iter().filter(|c| *c != ErrorCode::Overloaded).collect();
    assert_eq!(produced, expected);
}

// ---- who may consume: notAuthorized, noLicenseFound ----

fn directory_with_one_license() -> (Directory, ConsumerId) {
    let mut directory = Directory::default();
    let terms = license(seats(3), LicenseModel::default());
    directory.apply(&DirectoryEvent::Licensee(Licensee {
        id: terms.licensee,
        name: "Acme".into(),
        kind: LicenseeKind::Organization,
        external_id: None,
    }));
    let member = Consumer {
        id: consumer(1),
        name: "alice".into(),
        kind: ConsumerKind::User,
        licensees: vec![terms.licensee],
        email: None,
        api_key_sha256: [1; 32],
        external_id: None,
        disabled: false,
        identity: None,
    };
    directory.apply(&DirectoryEvent::Consumer(member));
    let outsider = Consumer {
        id: consumer(2),
        name: "mallory".into(),
        kind: ConsumerKind::User,
        licensees: vec![LicenseeId(Uuid::from_u128(0x99))],
        email: None,
        api_key_sha256: [2; 32],
        external_id: None,
        disabled: false,
        identity: None,
    };
    directory.apply(&DirectoryEvent::Consumer(outsider));
    directory.set_license(Arc::new(terms));
    (directory, consumer(1))
}

fn unknown_consumer() -> ErrorCode {
    let (directory, _) = directory_with_one_license();
    code(directory.candidates(consumer(404), PRODUCT, &LicenseFilters::default()))
}

fn consumer_without_license() -> ErrorCode {
    let (directory, _) = directory_with_one_license();
    code(directory.candidates(consumer(2), PRODUCT, &LicenseFilters::default()))
}

#[test]
fn an_unknown_consumer_is_not_authorized() {
    assert_eq!(unknown_consumer(), ErrorCode::NotAuthorized);
}

#[test]
fn a_consumer_whose_licensees_hold_no_license_finds_none() {
    assert_eq!(consumer_without_license(), ErrorCode::NoLicenseFound);
}

#[test]
fn a_member_of_the_licensee_finds_the_license_for_the_product_and_its_features_only() {
    let (directory, alice) = directory_with_one_license();
    for item in [PRODUCT, "render"] {
        let found = directory.candidates(alice, item, &LicenseFilters::default()).unwrap();
        assert_eq!(found.len(), 1, "{item}");
    }
    assert_eq!(code(directory.candidates(alice, "simulate", &LicenseFilters::default())), ErrorCode::NoLicenseFound);
}

#[test]
fn filters_that_match_no_license_find_none() {
    let (directory, alice) = directory_with_one_license();
    let other_license = LicenseFilters { license: Some(LicenseId(Uuid::from_u128(0x77))), ..Default::default() };
    let other_licensee = LicenseFilters { licensee: Some(LicenseeId(Uuid::from_u128(0x99))), ..Default::default() };
    let entitlement = LicenseFilters { entitlement: Some("e-1".into()), ..Default::default() };
    for filters in [other_license, other_licensee, entitlement] {
        assert_eq!(code(directory.candidates(alice, PRODUCT, &filters)), ErrorCode::NoLicenseFound, "{filters:?}");
    }
}

#[test]
fn candidates_come_seats_first_latest_end_first_then_credits_earliest_end_first() {
    let (mut directory, alice) = directory_with_one_license();
    let perpetual_seats = directory.candidates(alice, PRODUCT, &LicenseFilters::default()).unwrap()[0];
    let mut add = |n: u128, credit: Credit, ends_in_days: u64| {
        let terms = License {
            id: LicenseId(Uuid::from_u128(n)),
            valid_until: Some(T0.plus_secs(ends_in_days * DAY_S)),
            ..license(credit, LicenseModel::default())
        };
        directory.set_license(Arc::new(terms));
        LicenseId(Uuid::from_u128(n))
    };
    let count_late = add(0x51, use_count(10), 20);
    let seats_ending = add(0x52, seats(3), 10);
    let time_early = add(0x53, use_time_s(600), 5);
    let found: Vec<LicenseId> = directory.candidates(alice, PRODUCT, &LicenseFilters::default()).unwrap();
    assert_eq!(found, vec![perpetual_seats, seats_ending, time_early, count_late]);
}

#[test]
fn a_license_refuses_an_item_it_does_not_grant() {
    let mut desk = Desk::with(seats(3), LicenseModel::default());
    assert_eq!(code(desk.consume(&ConsumeRequest::new(consumer(1), "simulate"))), ErrorCode::NoLicenseFound);
    assert!(desk.consume(&ConsumeRequest::new(consumer(1), "render")).is_ok(), "a feature of the license");
}

#[test]
fn renewing_is_not_authorized_when_the_model_forbids_extension() {
    let mut desk = Desk::with(seats(3), model(|m| m.allow_extension = false));
    let lease = desk.consume_by(consumer(1)).unwrap();
    assert_eq!(code(desk.renew_lease(&lease)), ErrorCode::NotAuthorized);
    assert_eq!(code(desk.consume_by(consumer(1))), ErrorCode::NotAuthorized, "renewal through consume");
    assert_eq!(desk.live_ids(), BTreeSet::from([lease.id]));
}

#[test]
fn releasing_is_not_authorized_when_the_model_forbids_it_but_an_administrator_may() {
    let mut desk = Desk::with(seats(3), model(|m| m.allow_release = false));
    let lease = desk.consume_by(consumer(1)).unwrap();
    assert_eq!(code(desk.release_lease(&lease, UsedQty::Unreported)), ErrorCode::NotAuthorized);
    assert_eq!(desk.state.usage().seats_in_use, 1);
    desk.release(&ReleaseRequest { by: Releaser::Admin, lease_id: lease.id, used: UsedQty::Unreported }).unwrap();
    assert_eq!(desk.state.usage().seats_in_use, 0);
}

#[test]
fn a_consumer_cannot_renew_or_release_another_consumers_lease() {
    let mut desk = Desk::with(seats(3), LicenseModel::default());
    let lease = desk.consume_by(consumer(1)).unwrap();
    let renew = RenewRequest::new(consumer(2), lease.id);
    assert_eq!(code(desk.renew(&renew)), ErrorCode::LeaseIdNotFound);
    assert_eq!(code(desk.release(&ReleaseRequest::new(consumer(2), lease.id))), ErrorCode::LeaseIdNotFound);
    assert_eq!(desk.live_ids(), BTreeSet::from([lease.id]));
}

// ---- validity and status ----

fn consume_after_validity_ended() -> ErrorCode {
    let mut desk = Desk::with(seats(3), LicenseModel::default());
    desk.set_terms(|l| l.valid_until = Some(T0.plus_secs(DAY_S)));
    desk.advance_s(DAY_S);
    code(desk.consume_by(consumer(1)))
}

fn consume_before_validity_started() -> ErrorCode {
    let mut desk = Desk::with(seats(3), LicenseModel::default());
    desk.set_terms(|l| l.valid_from = T0.plus_secs(DAY_S));
    code(desk.consume_by(consumer(1)))
}

fn consume_on_deactivated_license() -> ErrorCode {
    let mut desk = Desk::with(seats(3), LicenseModel::default());
    desk.set_status(LicenseStatus::Deactivated);
    code(desk.consume_by(consumer(1)))
}

fn consume_on_revoked_license() -> ErrorCode {
    let mut desk = Desk::with(seats(3), LicenseModel::default());
    desk.set_status(LicenseStatus::Revoked { reason: "chargeback".into(), at: T0 });
    code(desk.consume_by(consumer(1)))
}

#[test]
fn consuming_after_the_validity_ended_is_refused_as_expired() {
    assert_eq!(consume_after_validity_ended(), ErrorCode::LicenseExpired);
}

#[test]
fn consuming_before_the_validity_started_is_refused() {
    assert_eq!(consume_before_validity_started(), ErrorCode::LicenseValidityNotStarted);
}

#[test]
fn a_license_is_in_force_from_its_first_instant_to_just_before_its_end() {
    let mut desk = Desk::with(seats(3), LicenseModel::default());
    desk.set_terms(|l| {
        l.valid_from = T0;
        l.valid_until = Some(T0.plus_secs(10));
    });
    assert!(desk.consume_by(consumer(1)).is_ok(), "at valid_from");
    desk.advance_s(9);
    assert!(desk.consume_by(consumer(2)).is_ok(), "a second before valid_until");
    desk.advance_s(1);
    assert_eq!(code(desk.consume_by(consumer(3))), ErrorCode::LicenseExpired, "at valid_until");
}

#[test]
fn renewals_fail_once_the_license_has_expired() {
    let mut desk = Desk::with(seats(3), model(|m| m.lease_time_online_s = 3_600));
    desk.set_terms(|l| l.valid_until = Some(T0.plus_secs(7_200)));
    let lease = desk.consume_by(consumer(1)).unwrap();
    desk.advance_s(3_000);
    let lease = desk.renew_lease(&lease).unwrap();
    desk.advance_s(3_000);
    let lease = desk.renew_lease(&lease).unwrap();
    assert_eq!(lease.expires_at, T0.plus_secs(7_200), "the last renewal ends with the license");
    desk.advance_s(1_200);
    assert_eq!(code(desk.renew_lease(&lease)), ErrorCode::LeaseIdNotFound, "the lease ended with the license");
}

#[test]
fn a_deactivated_license_grants_nothing_and_its_renewals_fail_until_reactivated() {
    assert_eq!(consume_on_deactivated_license(), ErrorCode::LicenseNotActive);
    let mut desk = Desk::with(seats(3), LicenseModel::default());
    let lease = desk.consume_by(consumer(1)).unwrap();
    desk.set_status(LicenseStatus::Deactivated);
    assert_eq!(code(desk.consume_by(consumer(2))), ErrorCode::LicenseNotActive);
    assert_eq!(code(desk.renew_lease(&lease)), ErrorCode::LicenseNotActive);
    let mut chained = ConsumeRequest::new(consumer(1), PRODUCT);
    chained.lease_id = Some(lease.id);
    assert_eq!(code(desk.consume(&chained)), ErrorCode::LicenseNotActive, "renewal through consume");
    desk.set_status(LicenseStatus::Active);
    assert!(desk.renew_lease(&lease).is_ok());
    assert!(desk.consume_by(consumer(2)).is_ok());
}

#[test]
fn a_revoked_license_grants_nothing_and_its_renewals_fail() {
    assert_eq!(consume_on_revoked_license(), ErrorCode::LicenseRevoked);
    let mut desk = Desk::with(use_count(10), LicenseModel::default());
    let lease = desk.consume_by(consumer(1)).unwrap();
    desk.set_status(LicenseStatus::Revoked { reason: "chargeback".into(), at: T0 });
    assert_eq!(code(desk.consume_by(consumer(2))), ErrorCode::LicenseRevoked);
    assert_eq!(code(desk.renew_lease(&lease)), ErrorCode::LicenseRevoked);
    desk.advance_s(DAY_S);
    assert_eq!(code(desk.consume_by(consumer(1))), ErrorCode::LicenseRevoked, "still revoked a day later");
}

#[test]
fn revocation_is_reported_before_validity() {
    let mut desk = Desk::with(seats(3), LicenseModel::default());
    desk.set_terms(|l| {
        l.valid_until = Some(T0);
        l.status = LicenseStatus::Revoked { reason: "fraud".into(), at: T0 };
    });
    assert_eq!(code(desk.consume_by(consumer(1))), ErrorCode::LicenseRevoked);
}

// ---- seats ----

fn fourth_consumer_on_three_seats() -> ErrorCode {
    let mut desk = Desk::with(seats(3), LicenseModel::default());
    for n in 1..=3 {
        desk.consume_by(consumer(n)).unwrap();
    }
    code(desk.consume_by(consumer(4)))
}

fn second_unanchored_lease_on_one_seat() -> ErrorCode {
    let mut desk = Desk::with(seats(1), model(|m| m.session_anchors = vec![]));
    desk.consume_by(consumer(1)).unwrap();
    code(desk.consume_by(consumer(1)))
}

#[test]
fn fourth_consumer_is_refused_when_three_seats_are_taken() {
    assert_eq!(fourth_consumer_on_three_seats(), ErrorCode::MaxConcurrentSessionsExceed);
}

#[test]
fn without_session_anchors_every_lease_takes_a_seat_and_the_last_is_a_quota_refusal() {
    assert_eq!(second_unanchored_lease_on_one_seat(), ErrorCode::LicenseQuotaExceeded);
    let mut desk = Desk::with(seats(2), model(|m| m.session_anchors = vec![]));
    desk.consume_by(consumer(1)).unwrap();
    desk.consume_by(consumer(1)).unwrap();
    assert_eq!(desk.state.usage().seats_in_use, 2, "the same consumer took two seats");
    assert_eq!(code(desk.consume_by(consumer(2))), ErrorCode::LicenseQuotaExceeded);
}

#[test]
fn the_same_session_reuses_its_seat() {
    let mut desk = Desk::with(seats(1), LicenseModel::default());
    let first = desk.consume_by(consumer(1)).unwrap();
    desk.advance_s(60);
    let second = desk.consume_by(consumer(1)).unwrap();
    assert_ne!(first.id, second.id);
    assert_eq!(desk.state.usage().seats_in_use, 1);
    assert_eq!(desk.live_ids(), BTreeSet::from([second.id]), "the session's old lease id is rotated out");
    assert_eq!(second.granted_at, first.granted_at, "the session keeps its first grant time");
    assert_eq!(code(desk.renew_lease(&first)), ErrorCode::LeaseIdNotFound);
}

#[test]
fn hardware_anchored_sessions_take_one_seat_per_machine() {
    let mut desk = Desk::with(seats(2), model(|m| m.session_anchors = vec![SessionAnchor::Hw]));
    desk.consume(&on_hw(consumer(1), "hw-a")).unwrap();
    desk.consume(&on_hw(consumer(1), "hw-b")).unwrap();
    assert_eq!(code(desk.consume(&on_hw(consumer(1), "hw-c"))), ErrorCode::MaxConcurrentSessionsExceed);
    assert!(desk.consume(&on_hw(consumer(1), "hw-a")).is_ok(), "hw-a's session already holds a seat");
    assert_eq!(desk.state.usage().seats_in_use, 2);
}

#[test]
fn a_released_seat_is_free_for_the_next_consumer() {
    let mut desk = Desk::with(seats(1), LicenseModel::default());
    let lease = desk.consume_by(consumer(1)).unwrap();
    assert_eq!(code(desk.consume_by(consumer(2))), ErrorCode::MaxConcurrentSessionsExceed);
    assert_eq!(desk.release_lease(&lease, UsedQty::Unreported), Ok(0));
    assert!(desk.consume_by(consumer(2)).is_ok());
}

#[test]
fn an_expired_lease_frees_its_seat_by_itself() {
    let mut desk = Desk::with(seats(1), model(|m| m.lease_time_online_s = 600));
    let lease = desk.consume_by(consumer(1)).unwrap();
    assert_eq!(lease.expires_at, T0.plus_secs(600));
    desk.now = T0.plus_secs(599);
    assert_eq!(code(desk.consume_by(consumer(2))), ErrorCode::MaxConcurrentSessionsExceed);
    desk.now = T0.plus_secs(600);
    assert!(desk.consume_by(consumer(2)).is_ok(), "the lease expired at its expiry time");
}

#[test]
fn a_released_seat_stays_taken_during_the_cooldown() {
    let mut desk = Desk::with(seats(1), model(|m| m.cooldown_s = 300));
    let lease = desk.consume_by(consumer(1)).unwrap();
    desk.advance_s(10);
    desk.release_lease(&lease, UsedQty::Unreported).unwrap();
    assert_eq!(desk.state.usage().live_leases, 0);
    assert_eq!(desk.state.usage().seats_in_use, 1, "cooling down");
    desk.advance_s(299);
    assert_eq!(code(desk.consume_by(consumer(2))), ErrorCode::MaxConcurrentSessionsExceed);
    desk.advance_s(1);
    assert_eq!(desk.state.usage().seats_in_use, 0);
    assert!(desk.consume_by(consumer(2)).is_ok());
}

#[test]
fn a_session_may_take_back_its_seat_during_the_cooldown() {
    let mut desk = Desk::with(seats(1), model(|m| m.cooldown_s = 300));
    let lease = desk.consume_by(consumer(1)).unwrap();
    desk.release_lease(&lease, UsedQty::Unreported).unwrap();
    desk.advance_s(100);
    assert!(desk.consume_by(consumer(1)).is_ok());
    assert_eq!(desk.state.usage().seats_in_use, 1);
    desk.advance_s(300);
    assert_eq!(desk.state.usage().seats_in_use, 1, "the old cooldown ending does not free the live session's seat");
    assert_eq!(code(desk.consume_by(consumer(2))), ErrorCode::MaxConcurrentSessionsExceed);
}

#[test]
fn a_metered_seat_license_records_seats_beyond_its_quantity() {
    let mut desk = Desk::with(metered(Dimension::Seats, 1), LicenseModel::default());
    for n in 1..=3 {
        desk.consume_by(consumer(n)).unwrap();
    }
    let usage = desk.state.usage();
    assert_eq!((usage.seats_in_use, usage.used_qty, usage.remaining_qty), (3, 3, None));
}

// ---- use count ----

fn use_count_spent() -> ErrorCode {
    let mut desk = Desk::with(use_count(5), LicenseModel::default());
    let mut req = ConsumeRequest::new(consumer(1), PRODUCT);
    req.qty = Some(3);
    desk.consume(&req).unwrap();
    req.consumer = consumer(2);
    code(desk.consume(&req))
}

#[test]
fn a_use_count_checkout_preallocates_its_uses_and_is_refused_beyond_the_credit() {
    assert_eq!(use_count_spent(), ErrorCode::MaxUseCountExceed);
    let mut desk = Desk::with(use_count(5), LicenseModel::default());
    let mut req = ConsumeRequest::new(consumer(1), PRODUCT);
    req.qty = Some(3);
    let lease = desk.consume(&req).unwrap();
    assert_eq!(lease.qty_prealloc, 3);
    assert_eq!(desk.state.usage().remaining_qty, Some(2));
    req.consumer = consumer(2);
    req.qty = Some(2);
    assert!(desk.consume(&req).is_ok(), "exactly what is left");
    req.consumer = consumer(3);
    req.qty = None;
    assert_eq!(code(desk.consume(&req)), ErrorCode::MaxUseCountExceed, "one use by default");
}

#[test]
fn releasing_a_use_count_lease_refunds_the_unused_preallocation() {
    let mut desk = Desk::with(use_count(5), LicenseModel::default());
    let mut req = ConsumeRequest::new(consumer(1), PRODUCT);
    req.qty = Some(4);
    let lease = desk.consume(&req).unwrap();
    assert_eq!(desk.release_lease(&lease, UsedQty::Absolute(1)), Ok(1));
    assert_eq!(desk.state.consumed(), 1);
    assert_eq!(desk.state.usage().remaining_qty, Some(4));
}

#[test]
fn a_use_count_release_cannot_charge_more_than_was_preallocated() {
    let mut desk = Desk::with(use_count(5), LicenseModel::default());
    let mut req = ConsumeRequest::new(consumer(1), PRODUCT);
    req.qty = Some(2);
    let lease = desk.consume(&req).unwrap();
    assert_eq!(desk.release_lease(&lease, UsedQty::Absolute(50)), Ok(2));
    assert_eq!(desk.state.usage().remaining_qty, Some(3));
}

#[test]
fn an_unreported_use_count_release_charges_the_whole_preallocation() {
    let mut desk = Desk::with(use_count(5), LicenseModel::default());
    let mut req = ConsumeRequest::new(consumer(1), PRODUCT);
    req.qty = Some(2);
    let lease = desk.consume(&req).unwrap();
    assert_eq!(desk.release_lease(&lease, UsedQty::Unreported), Ok(2));
    assert_eq!(desk.state.usage().remaining_qty, Some(3));
}

#[test]
fn an_expired_use_count_lease_charges_its_preallocation() {
    let mut desk = Desk::with(use_count(5), model(|m| m.lease_time_online_s = 60));
    let mut req = ConsumeRequest::new(consumer(1), PRODUCT);
    req.qty = Some(3);
    desk.consume(&req).unwrap();
    desk.advance_s(60);
    let usage = desk.state.usage();
    assert_eq!((usage.live_leases, usage.used_qty, usage.remaining_qty), (0, 3, Some(2)));
    assert_eq!(desk.state.consumed(), 3);
}

#[test]
fn a_use_count_renewal_may_set_aside_more_uses_within_the_credit() {
    let mut desk = Desk::with(use_count(5), LicenseModel::default());
    let lease = desk.consume_by(consumer(1)).unwrap();
    let mut renew = RenewRequest::new(consumer(1), lease.id);
    renew.used = UsedQty::Absolute(1);
    renew.extra_qty = Some(3);
    let renewed = desk.renew(&renew).unwrap();
    assert_eq!((renewed.qty_verified, renewed.qty_prealloc), (1, 4));
    assert_eq!(desk.state.usage().remaining_qty, Some(1));
    let mut more = RenewRequest::new(consumer(1), renewed.id);
    more.used = UsedQty::Absolute(4);
    more.extra_qty = Some(2);
    assert_eq!(code(desk.renew(&more)), ErrorCode::MaxUseCountExceed);
}

#[test]
fn consuming_again_in_a_use_count_session_sets_aside_more_uses() {
    let mut desk = Desk::with(use_count(5), LicenseModel::default());
    let mut req = ConsumeRequest::new(consumer(1), PRODUCT);
    req.qty = Some(2);
    let first = desk.consume(&req).unwrap();
    let again = desk.consume(&req).unwrap();
    assert_eq!(again.qty_prealloc, 4, "the session's 2 uses and 2 more");
    assert_eq!(desk.live_ids(), BTreeSet::from([again.id]));
    assert_eq!(desk.state.usage().remaining_qty, Some(1));
    assert_eq!(code(desk.consume(&req)), ErrorCode::MaxUseCountExceed, "2 more do not fit");
    assert_eq!(code(desk.renew_lease(&first)), ErrorCode::LeaseIdNotFound);
}

#[test]
fn a_metered_use_count_license_records_use_beyond_its_quantity() {
    let mut desk = Desk::with(metered(Dimension::UseCount, 2), LicenseModel::default());
    let mut req = ConsumeRequest::new(consumer(1), PRODUCT);
    req.qty = Some(5);
    let lease = desk.consume(&req).unwrap();
    assert_eq!(desk.release_lease(&lease, UsedQty::Absolute(7)), Ok(7), "metered use is recorded as reported");
    let usage = desk.state.usage();
    assert_eq!((usage.used_qty, usage.remaining_qty), (7, None));
}

#[test]
fn metered_use_needs_a_metered_license() {
    let mut desk = Desk::with(use_count(5), LicenseModel::default());
    let mut req = ConsumeRequest::new(consumer(1), PRODUCT);
    req.metered = true;
    assert_eq!(code(desk.consume(&req)), ErrorCode::NoLicenseFound);
    let mut desk = Desk::with(metered(Dimension::UseCount, 1), LicenseModel::default());
    req.qty = Some(3);
    let lease = desk.consume(&req).unwrap();
    assert!(lease.metered);
    let mut renew = RenewRequest::new(consumer(1), lease.id);
    renew.used = UsedQty::Incremental(10);
    let renewed = desk.renew(&renew).unwrap();
    assert_eq!(renewed.qty_verified, 10, "metered use is not capped by the preallocation");
}

// ---- use time ----

fn use_time_spent() -> ErrorCode {
    let mut desk = Desk::with(use_time_s(100), LicenseModel::default());
    desk.consume_by(consumer(1)).unwrap();
    code(desk.consume_by(consumer(2)))
}

#[test]
fn a_use_time_lease_is_shortened_to_the_seconds_left() {
    let mut desk = Desk::with(use_time_s(100), LicenseModel::default());
    let lease = desk.consume_by(consumer(1)).unwrap();
    assert_eq!(lease.qty_prealloc, 100);
    assert_eq!(lease.expires_at, T0.plus_secs(100));
    assert_eq!(desk.state.usage().remaining_qty, Some(0));
}

#[test]
fn a_use_time_checkout_is_refused_when_the_time_is_spent() {
    assert_eq!(use_time_spent(), ErrorCode::MaxAggregateUseTimeExceed);
}

#[test]
fn a_use_time_release_charges_the_seconds_used_and_refunds_the_rest() {
    let mut desk = Desk::with(use_time_s(100), LicenseModel::default());
    let lease = desk.consume_by(consumer(1)).unwrap();
    desk.advance_s(30);
    assert_eq!(desk.release_lease(&lease, UsedQty::Unreported), Ok(30));
    let next = desk.consume_by(consumer(2)).unwrap();
    assert_eq!(next.qty_prealloc, 70);
    assert_eq!(next.expires_at, desk.now.plus_secs(70));
}

#[test]
fn a_started_second_of_use_time_counts_as_used() {
    let mut desk = Desk::with(use_time_s(100), LicenseModel::default());
    let lease = desk.consume_by(consumer(1)).unwrap();
    desk.now = desk.now.plus_millis(1_500);
    assert_eq!(desk.release_lease(&lease, UsedQty::Unreported), Ok(2));
}

#[test]
fn an_expired_use_time_lease_charges_all_its_seconds() {
    let mut desk = Desk::with(use_time_s(100), model(|m| m.lease_time_online_s = 40));
    desk.consume_by(consumer(1)).unwrap();
    desk.advance_s(40);
    assert_eq!(desk.state.consumed(), 40);
    assert_eq!(desk.state.usage().remaining_qty, Some(60));
}

#[test]
fn a_use_time_renewal_keeps_the_used_seconds_and_sets_aside_only_what_is_left() {
    let mut desk = Desk::with(use_time_s(100), model(|m| m.lease_time_online_s = 60));
    let lease = desk.consume_by(consumer(1)).unwrap();
    desk.advance_s(50);
    let renewed = desk.renew_lease(&lease).unwrap();
    assert_eq!(renewed.qty_verified, 50);
    assert_eq!(renewed.qty_prealloc, 100, "50 used and the 50 seconds left");
    assert_eq!(renewed.expires_at, desk.now.plus_secs(50));
    desk.advance_s(20);
    assert_eq!(desk.release_lease(&renewed, UsedQty::Unreported), Ok(70));
    assert_eq!(desk.state.usage().remaining_qty, Some(30));
}

#[test]
fn consuming_again_in_a_use_time_session_still_charges_the_seconds_already_used() {
    let mut desk = Desk::with(use_time_s(100), model(|m| m.lease_time_online_s = 60));
    desk.consume_by(consumer(1)).unwrap();
    desk.advance_s(30);
    let again = desk.consume_by(consumer(1)).unwrap();
    assert_eq!(again.qty_prealloc, 90, "30 used and 60 more");
    assert_eq!(desk.release_lease(&again, UsedQty::Unreported), Ok(30), "the 30 seconds used stay used");
    assert_eq!(desk.state.usage().remaining_qty, Some(70));
}

// ---- durations ----

#[test]
fn the_granted_duration_is_the_requested_one_when_shorter_than_the_model() {
    let mut desk = Desk::with(seats(3), model(|m| m.lease_time_online_s = 3_600));
    let mut req = ConsumeRequest::new(consumer(1), PRODUCT);
    req.duration_s = Some(600);
    assert_eq!(desk.consume(&req).unwrap().expires_at, T0.plus_secs(600));
}

#[test]
fn the_granted_duration_is_capped_by_the_models_lease_time_for_the_mode() {
    let mut desk = Desk::with(
        seats(3),
        model(|m| {
            m.lease_time_online_s = 3_600;
            m.lease_time_offline_s = 7 * DAY_S;
        }),
    );
    let mut req = ConsumeRequest::new(consumer(1), PRODUCT);
    req.duration_s = Some(30 * DAY_S);
    assert_eq!(desk.consume(&req).unwrap().expires_at, T0.plus_secs(3_600), "online");
    req.consumer = consumer(2);
    req.mode = LeaseMode::Offline;
    assert_eq!(desk.consume(&req).unwrap().expires_at, T0.plus_secs(7 * DAY_S), "offline");
    req.consumer = consumer(3);
    req.duration_s = None;
    assert_eq!(desk.consume(&req).unwrap().expires_at, T0.plus_secs(7 * DAY_S), "nothing requested");
}

#[test]
fn the_granted_duration_is_capped_by_the_license_end() {
    let mut desk = Desk::with(seats(3), model(|m| m.lease_time_online_s = 3_600));
    desk.set_terms(|l| l.valid_until = Some(T0.plus_secs(900)));
    let lease = desk.consume_by(consumer(1)).unwrap();
    assert_eq!(lease.expires_at, T0.plus_secs(900));
    assert!(lease.refresh_at <= lease.expires_at);
}

#[test]
fn a_renewal_extends_from_now_and_rotates_the_id() {
    let mut desk = Desk::with(seats(3), model(|m| m.lease_time_online_s = 3_600));
    let lease = desk.consume_by(consumer(1)).unwrap();
    desk.advance_s(1_000);
    let renewed = desk.renew_lease(&lease).unwrap();
    assert_ne!(renewed.id, lease.id);
    assert_eq!(renewed.expires_at, desk.now.plus_secs(3_600));
    assert_eq!(desk.live_ids(), BTreeSet::from([renewed.id]));
    assert_eq!(desk.state.usage().seats_in_use, 1);
}

// ---- lease ids: chaining, rotation, release, expiry ----

fn chained_consume_without_lease_id() -> ErrorCode {
    let mut desk = Desk::with(seats(3), model(|m| m.lease_chaining = true));
    desk.consume_by(consumer(1)).unwrap();
    code(desk.consume_by(consumer(1)))
}

fn renew_rotated_lease() -> ErrorCode {
    let mut desk = Desk::with(seats(3), LicenseModel::default());
    let lease = desk.consume_by(consumer(1)).unwrap();
    desk.renew_lease(&lease).unwrap();
    code(desk.renew_lease(&lease))
}

#[test]
fn under_lease_chaining_the_next_consume_must_name_the_current_lease() {
    assert_eq!(chained_consume_without_lease_id(), ErrorCode::LeaseIdNotMatching);
    let mut desk = Desk::with(seats(3), model(|m| m.lease_chaining = true));
    let first = desk.consume_by(consumer(1)).unwrap();
    let mut req = ConsumeRequest::new(consumer(1), PRODUCT);
    req.lease_id = Some(first.id);
    let second = desk.consume(&req).unwrap();
    assert_eq!(desk.live_ids(), BTreeSet::from([second.id]));
    assert_eq!(code(desk.consume(&req)), ErrorCode::LeaseIdNotMatching, "the rotated id no longer chains");
    req.lease_id = Some(second.id);
    assert!(desk.consume(&req).is_ok());
}

#[test]
fn a_consume_naming_a_lease_the_session_does_not_hold_is_refused() {
    let mut desk = Desk::with(seats(3), LicenseModel::default());
    let lease = desk.consume_by(consumer(1)).unwrap();
    let mut req = ConsumeRequest::new(consumer(1), PRODUCT);
    req.lease_id = Some(LeaseId(Uuid::from_u128(0xBAD)));
    assert_eq!(code(desk.consume(&req)), ErrorCode::LeaseIdNotMatching);
    req.consumer = consumer(2);
    req.lease_id = Some(lease.id);
    assert_eq!(code(desk.consume(&req)), ErrorCode::LeaseIdNotFound, "another session's lease");
}

#[test]
fn a_renewal_with_other_client_claims_than_the_checkout_is_refused() {
    let mut desk = Desk::with(seats(3), model(|m| m.session_anchors = vec![SessionAnchor::Hw]));
    let lease = desk.consume(&on_hw(consumer(1), "hw-a")).unwrap();
    let mut renew = RenewRequest::new(consumer(1), lease.id);
    renew.anchors.hw = Some("hw-b".into());
    assert_eq!(code(desk.renew(&renew)), ErrorCode::LeaseIdNotMatching);
    renew.anchors.hw = Some("hw-a".into());
    assert!(desk.renew(&renew).is_ok(), "the same claims");
}

#[test]
fn a_rotated_lease_id_is_never_accepted_again() {
    assert_eq!(renew_rotated_lease(), ErrorCode::LeaseIdNotFound);
    let mut desk = Desk::with(seats(3), LicenseModel::default());
    let first = desk.consume_by(consumer(1)).unwrap();
    let second = desk.renew_lease(&first).unwrap();
    assert_eq!(code(desk.release_lease(&first, UsedQty::Unreported)), ErrorCode::LeaseIdNotFound);
    assert_eq!(desk.live_ids(), BTreeSet::from([second.id]));
}

#[test]
fn a_released_lease_id_is_never_accepted_again() {
    let mut desk = Desk::with(seats(3), LicenseModel::default());
    let lease = desk.consume_by(consumer(1)).unwrap();
    desk.release_lease(&lease, UsedQty::Unreported).unwrap();
    assert_eq!(code(desk.renew_lease(&lease)), ErrorCode::LeaseIdNotFound);
    assert_eq!(code(desk.release_lease(&lease, UsedQty::Unreported)), ErrorCode::LeaseIdNotFound);
    let mut chained = ConsumeRequest::new(consumer(1), PRODUCT);
    chained.lease_id = Some(lease.id);
    assert_eq!(code(desk.consume(&chained)), ErrorCode::LeaseIdNotFound);
}

#[test]
fn an_expired_lease_id_is_never_accepted_again() {
    let mut desk = Desk::with(seats(3), model(|m| m.lease_time_online_s = 60));
    let lease = desk.consume_by(consumer(1)).unwrap();
    desk.advance_s(60);
    assert_eq!(code(desk.renew_lease(&lease)), ErrorCode::LeaseIdNotFound);
    assert_eq!(code(desk.release_lease(&lease, UsedQty::Unreported)), ErrorCode::LeaseIdNotFound);
}

fn heartbeat_before_interval() -> ErrorCode {
    let mut desk = Desk::with(seats(3), model(|m| m.heartbeat_interval_s = 60));
    let lease = desk.consume_by(consumer(1)).unwrap();
    desk.advance_s(30);
    code(desk.renew_lease(&lease))
}

#[test]
fn a_heartbeat_before_the_interval_is_too_early() {
    assert_eq!(heartbeat_before_interval(), ErrorCode::HeartbeatTooEarly);
    let mut desk = Desk::with(seats(3), model(|m| m.heartbeat_interval_s = 60));
    let lease = desk.consume_by(consumer(1)).unwrap();
    assert_eq!(lease.heartbeat_not_before, T0.plus_secs(60));
    desk.advance_s(59);
    assert_eq!(code(desk.renew_lease(&lease)), ErrorCode::HeartbeatTooEarly);
    assert_eq!(desk.live_ids(), BTreeSet::from([lease.id]), "a refused heartbeat changes nothing");
    desk.advance_s(1);
    let renewed = desk.renew_lease(&lease).unwrap();
    assert_eq!(renewed.heartbeat_not_before, desk.now.plus_secs(60));
}

#[test]
fn a_renewal_through_consume_naming_the_lease_is_a_heartbeat_and_may_come_too_early() {
    let mut desk = Desk::with(seats(3), model(|m| m.heartbeat_interval_s = 60));
    let lease = desk.consume_by(consumer(1)).unwrap();
    let mut renewal = ConsumeRequest::new(consumer(1), PRODUCT);
    renewal.lease_id = Some(lease.id);
    desk.advance_s(30);
    assert_eq!(code(desk.consume(&renewal)), ErrorCode::HeartbeatTooEarly);
    desk.advance_s(30);
    assert!(desk.consume(&renewal).is_ok());
}

// ---- client rules: anchors, IP, version, node locking ----

fn hw_anchor_missing() -> ErrorCode {
    let mut desk = Desk::with(seats(3), model(|m| m.session_anchors = vec![SessionAnchor::Hw]));
    code(desk.consume_by(consumer(1)))
}

#[test]
fn a_checkout_without_the_anchors_of_the_model_is_refused() {
    assert_eq!(hw_anchor_missing(), ErrorCode::LicenseAnchorMissing);
    let mut desk = Desk::with(seats(3), model(|m| m.session_anchors = vec![SessionAnchor::Hw, SessionAnchor::Process]));
    assert_eq!(code(desk.consume(&on_hw(consumer(1), "hw-a"))), ErrorCode::LicenseAnchorMissing, "no process");
    assert_eq!(code(desk.consume(&on_hw(consumer(1), ""))), ErrorCode::LicenseAnchorMissing, "an empty hw");
    let mut req = on_hw(consumer(1), "hw-a");
    req.anchors.process = Some("4242".into());
    assert!(desk.consume(&req).is_ok());
}

fn blocked_ip() -> ErrorCode {
    let rules = IpRules { allowed: vec![], blocked: vec!["203.0.113.0/24".parse().unwrap()] };
    let mut desk = Desk::with(seats(3), model(|m| m.ip_rules = rules));
    code(desk.consume(&from_ip(consumer(1), "203.0.113.7")))
}

#[test]
fn a_client_in_a_blocked_range_is_refused() {
    assert_eq!(blocked_ip(), ErrorCode::ClientIpAddressBlocked);
}

#[test]
fn only_clients_in_the_allowed_ranges_may_consume() {
    let rules = IpRules { allowed: vec!["10.0.0.0/8".parse().unwrap()], blocked: vec![] };
    let mut desk = Desk::with(seats(3), model(|m| m.ip_rules = rules));
    assert!(desk.consume(&from_ip(consumer(1), "10.1.2.3")).is_ok());
    assert_eq!(code(desk.consume(&from_ip(consumer(2), "192.0.2.1"))), ErrorCode::ClientIpAddressBlocked);
    assert_eq!(code(desk.consume_by(consumer(3))), ErrorCode::ClientIpAddressBlocked, "an unknown address");
}

fn in_country(who: ConsumerId, country: Option<&str>) -> ConsumeRequest {
    let mut req = from_ip(who, "203.0.113.7");
    req.client_country = country.map(str::to_owned);
    req
}

fn finland_only() -> GeoRules {
    GeoRules { allowed_countries: vec!["FI".into()], blocked_countries: vec![] }
}

fn blocked_country() -> ErrorCode {
    let mut desk = Desk::with(seats(3), model(|m| m.geo = finland_only()));
    code(desk.consume(&in_country(consumer(1), Some("US"))))
}

fn unknown_country() -> ErrorCode {
    let mut desk = Desk::with(seats(3), model(|m| m.geo = finland_only()));
    code(desk.consume(&in_country(consumer(1), None)))
}

#[test]
fn geo_rules_admit_the_allowed_countries_and_refuse_others_and_unknown_ones() {
    assert_eq!(blocked_country(), ErrorCode::ClientGeolocationBlocked);
    assert_eq!(unknown_country(), ErrorCode::UnresolvedGeolocation);
    let mut desk = Desk::with(seats(3), model(|m| m.geo = finland_only()));
    assert!(desk.consume(&in_country(consumer(1), Some("FI"))).is_ok());
    let blocked = GeoRules { allowed_countries: vec![], blocked_countries: vec!["RU".into()] };
    let mut open = Desk::with(seats(3), model(|m| m.geo = blocked));
    assert!(open.consume(&in_country(consumer(1), Some("SE"))).is_ok());
    assert_eq!(code(open.consume(&in_country(consumer(2), Some("RU")))), ErrorCode::ClientGeolocationBlocked);
    let mut unruled = Desk::with(seats(3), LicenseModel::default());
    assert!(unruled.consume(&in_country(consumer(1), None)).is_ok(), "no rules, no country needed");
}

fn version_above_range() -> ErrorCode {
    let range = VersionRange { min: Some("1.0.0".into()), max: Some("2.9.9".into()) };
    let mut desk = Desk::with(seats(3), model(|m| m.version_range = Some(range)));
    code(desk.consume(&with_version(consumer(1), "3.0")))
}

#[test]
fn a_client_version_outside_the_range_is_refused() {
    assert_eq!(version_above_range(), ErrorCode::UnallowedClientVersion);
    let range = VersionRange { min: Some("1.0.0".into()), max: Some("2.9.9".into()) };
    let mut desk = Desk::with(seats(9), model(|m| m.version_range = Some(range)));
    for (n, version) in [(1, "0.9.9"), (2, "latest"), (3, "")].into_iter() {
        assert_eq!(code(desk.consume(&with_version(consumer(n), version))), ErrorCode::UnallowedClientVersion);
    }
    assert_eq!(code(desk.consume_by(consumer(4))), ErrorCode::UnallowedClientVersion, "no version given");
    for (n, version) in [(5, "1.0.0"), (6, "2.4.1"), (7, "2.9.9")] {
        assert!(desk.consume(&with_version(consumer(n), version)).is_ok(), "{version}");
    }
}

#[test]
fn a_node_locked_license_serves_only_its_first_machines() {
    let mut desk = Desk::with(seats(5), model(|m| m.max_hardware = Some(2)));
    let a = desk.consume(&on_hw(consumer(1), "hw-a")).unwrap();
    desk.consume(&on_hw(consumer(2), "hw-b")).unwrap();
    assert_eq!(code(desk.consume(&on_hw(consumer(3), "hw-c"))), ErrorCode::LicenseQuotaExceeded);
    desk.release_lease(&a, UsedQty::Unreported).unwrap();
    assert_eq!(code(desk.consume(&on_hw(consumer(3), "hw-c"))), ErrorCode::LicenseQuotaExceeded, "locked for good");
    assert!(desk.consume(&on_hw(consumer(3), "hw-a")).is_ok(), "a known machine");
    assert_eq!(code(desk.consume_by(consumer(4))), ErrorCode::LicenseAnchorMissing, "no hardware id");
}

// ---- named seats and reservations ----

fn named_seat_without_assignment() -> ErrorCode {
    let mut desk = Desk::with(seats(3), model(|m| m.named_seats = true));
    desk.assign(consumer(1));
    code(desk.consume_by(consumer(2)))
}

fn free_seat_reserved_for_another() -> ErrorCode {
    let mut desk = Desk::with(seats(2), LicenseModel::default());
    desk.assign(consumer(1));
    desk.consume_by(consumer(2)).unwrap();
    code(desk.consume_by(consumer(3)))
}

#[test]
fn a_named_seat_license_serves_only_assigned_consumers() {
    assert_eq!(named_seat_without_assignment(), ErrorCode::LicenseAssignmentMissing);
    let mut desk = Desk::with(seats(3), model(|m| m.named_seats = true));
    desk.assign(consumer(1));
    assert!(desk.consume_by(consumer(1)).is_ok());
    desk.apply(&LicenseEvent::SeatUnassigned(consumer(1)));
    assert_eq!(code(desk.consume_by(consumer(1))), ErrorCode::LicenseAssignmentMissing, "after unassignment");
}

#[test]
fn free_seats_reserved_for_others_are_refused_and_the_reserved_consumer_finds_its_seat() {
    assert_eq!(free_seat_reserved_for_another(), ErrorCode::LicenseAssignmentDenied);
    let mut desk = Desk::with(seats(2), LicenseModel::default());
    desk.assign(consumer(1));
    desk.consume_by(consumer(2)).unwrap();
    assert_eq!(code(desk.consume_by(consumer(3))), ErrorCode::LicenseAssignmentDenied);
    assert!(desk.consume_by(consumer(1)).is_ok(), "the reserved seat is free for its consumer");
    assert_eq!(code(desk.consume_by(consumer(3))), ErrorCode::MaxConcurrentSessionsExceed, "now every seat is taken");
}

#[test]
fn a_reserved_consumer_uses_the_pool_for_a_second_session() {
    let mut desk = Desk::with(seats(2), model(|m| m.session_anchors = vec![SessionAnchor::Hw]));
    desk.assign(consumer(1));
    desk.consume(&on_hw(consumer(1), "hw-a")).unwrap();
    desk.consume(&on_hw(consumer(1), "hw-b")).unwrap();
    assert_eq!(desk.state.usage().seats_in_use, 2);
    assert_eq!(code(desk.consume(&on_hw(consumer(1), "hw-c"))), ErrorCode::MaxConcurrentSessionsExceed);
}

#[test]
fn a_session_taken_over_on_shared_hardware_does_not_free_the_reservation_it_used() {
    let mut desk = Desk::with(seats(2), model(|m| m.session_anchors = vec![SessionAnchor::Hw]));
    desk.assign(consumer(1));
    desk.consume(&on_hw(consumer(1), "hw-a")).unwrap();
    desk.consume(&on_hw(consumer(2), "hw-b")).unwrap();
    // Another user on hw-a joins hw-a's session: still two machines, two seats.
    desk.consume(&on_hw(consumer(3), "hw-a")).unwrap();
    assert_eq!(desk.state.usage().seats_in_use, 2);
    assert_eq!(code(desk.consume(&on_hw(consumer(1), "hw-c"))), ErrorCode::MaxConcurrentSessionsExceed);
    assert_eq!(desk.state.usage().seats_in_use, 2);
}

#[test]
fn a_cooling_seat_taken_back_on_shared_hardware_does_not_free_the_reservation_it_used() {
    let anchors_and_cooldown = model(|m| {
        m.session_anchors = vec![SessionAnchor::Hw];
        m.cooldown_s = 300;
    });
    let mut desk = Desk::with(seats(2), anchors_and_cooldown);
    desk.assign(consumer(1));
    let reserved = desk.consume(&on_hw(consumer(1), "hw-a")).unwrap();
    desk.consume(&on_hw(consumer(2), "hw-b")).unwrap();
    desk.release_lease(&reserved, UsedQty::Unreported).unwrap();
    desk.consume(&on_hw(consumer(3), "hw-a")).unwrap();
    assert_eq!(code(desk.consume(&on_hw(consumer(1), "hw-c"))), ErrorCode::MaxConcurrentSessionsExceed);
    assert_eq!(desk.state.usage().seats_in_use, 2);
}

// ---- per-consumer limit ----

fn consumer_over_lease_limit() -> ErrorCode {
    let limited = model(|m| {
        m.session_anchors = vec![SessionAnchor::Hw];
        m.max_leases_per_consumer = Some(1);
    });
    let mut desk = Desk::with(seats(5), limited);
    desk.consume(&on_hw(consumer(1), "hw-a")).unwrap();
    code(desk.consume(&on_hw(consumer(1), "hw-b")))
}

#[test]
fn a_consumer_may_hold_no_more_leases_than_the_model_allows() {
    assert_eq!(consumer_over_lease_limit(), ErrorCode::ConsumptionLimitExceed);
    let limited = model(|m| {
        m.session_anchors = vec![SessionAnchor::Hw];
        m.max_leases_per_consumer = Some(1);
    });
    let mut desk = Desk::with(seats(5), limited);
    let a = desk.consume(&on_hw(consumer(1), "hw-a")).unwrap();
    assert!(desk.consume(&on_hw(consumer(1), "hw-a")).is_ok(), "renewing the same session is not a new lease");
    assert!(desk.consume(&on_hw(consumer(2), "hw-b")).is_ok(), "other consumers are not limited by it");
    let current = desk.state.leases().find(|l| l.consumer == consumer(1)).unwrap().clone();
    assert_ne!(current.id, a.id);
    desk.release_lease(&current, UsedQty::Unreported).unwrap();
    assert!(desk.consume(&on_hw(consumer(1), "hw-c")).is_ok(), "after a release");
}

#[test]
fn a_consumer_taking_over_a_shared_machines_session_counts_it_against_its_lease_limit() {
    let limited = model(|m| {
        m.session_anchors = vec![SessionAnchor::Hw];
        m.max_leases_per_consumer = Some(1);
    });
    let mut desk = Desk::with(seats(5), limited);
    desk.consume(&on_hw(consumer(1), "hw-a")).unwrap();
    desk.consume(&on_hw(consumer(2), "hw-b")).unwrap();
    assert_eq!(code(desk.consume(&on_hw(consumer(2), "hw-a"))), ErrorCode::ConsumptionLimitExceed);
    assert!(desk.consume(&on_hw(consumer(3), "hw-a")).is_ok(), "a consumer without a lease may join hw-a");
}

// ---- check ----

/// A check (`doConsume=false`) is `decide_consume` without applying the event: the state cannot
/// change (the engine-level check is exercised in `tests/simulation.rs`). What must hold is that
/// it answers what the consume then answers.
#[test]
fn a_check_answers_what_the_consume_then_answers() {
    let mut desk = Desk::with(seats(1), LicenseModel::default());
    let first = ConsumeRequest::new(consumer(1), PRODUCT);
    let id = desk.new_lease_id();
    let Ok(LicenseEvent::LeaseIssued { lease: checked, replaces: None }) =
        decide_consume(&desk.state, &first, desk.now, id)
    else {
        panic!("the check of a free seat should grant a new lease");
    };
    let consumed = desk.consume(&first).unwrap();
    assert_eq!(
        (checked.expires_at, checked.refresh_at, checked.qty_prealloc, &checked.session),
        (consumed.expires_at, consumed.refresh_at, consumed.qty_prealloc, &consumed.session)
    );
    let second = ConsumeRequest::new(consumer(2), PRODUCT);
    let id = desk.new_lease_id();
    let refused = decide_consume(&desk.state, &second, desk.now, id);
    assert_eq!(code(refused), ErrorCode::MaxConcurrentSessionsExceed);
    assert_eq!(code(desk.consume(&second)), ErrorCode::MaxConcurrentSessionsExceed);
}

// ---- replay ----

#[test]
fn replaying_the_applied_events_rebuilds_the_same_state() {
    let mut desk = Desk::with(use_count(10), model(|m| m.lease_time_online_s = 100));
    let mut journal: Vec<(Timestamp, LicenseEvent)> = Vec::new();
    let mut record = |desk: &mut Desk, event: LicenseEvent| {
        desk.apply(&event);
        journal.push((desk.now, event));
    };
    let id = desk.new_lease_id();
    let a = decide_consume(&desk.state, &ConsumeRequest::new(consumer(1), PRODUCT), desk.now, id).unwrap();
    record(&mut desk, a);
    desk.advance_s(50);
    let id = desk.new_lease_id();
    let b = decide_consume(&desk.state, &ConsumeRequest::new(consumer(2), PRODUCT), desk.now, id).unwrap();
    record(&mut desk, b);
    desk.advance_s(60);
    let mut replayed = LicenseState::new(Arc::new(license(use_count(10), model(|m| m.lease_time_online_s = 100))));
    for (at, event) in &journal {
        replayed.expire_until(*at, |_| {});
        replayed.apply(*at, event).expect("a replayed change keeps the invariants");
    }
    replayed.expire_until(desk.now, |_| {});
    assert_eq!(replayed.usage(), desk.state.usage());
    assert_eq!(replayed.leases().map(|l| l.id).collect::<BTreeSet<_>>(), desk.live_ids());
    assert_eq!(desk.state.consumed(), 1, "the first lease expired and was charged");
}
