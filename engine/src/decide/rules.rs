//! The decisions: given a license's state, a request and the time, grant (as the event to
//! journal) or deny (with the SPEC's code). Pure functions: no clock, no I/O, no mutation.

use super::denial::{Denial, ErrorCode};
use super::request::{ConsumeRequest, ReleaseRequest, Releaser, RenewRequest, UsedQty};
use super::state::{LicenseEvent, LicenseState};
use crate::ids::LeaseId;
use crate::model::lease::SessionKey;
use crate::model::{Dimension, Lease, LeaseMode, License, LicenseStatus, SessionAnchor};
use crate::time::Timestamp;
use std::sync::Arc;

fn deny<T>(code: ErrorCode, message: &'static str) -> Result<T, Denial> {
    Err(Denial::new(code, message))
}

/// Whether the license is in force at `now`.
pub fn check_in_force(license: &License, now: Timestamp) -> Result<(), Denial> {
    match license.status {
        LicenseStatus::Revoked { .. } => return deny(ErrorCode::LicenseRevoked, "the license has been revoked"),
        LicenseStatus::Deactivated => return deny(ErrorCode::LicenseNotActive, "the license is not active"),
        LicenseStatus::Active => {}
    }
    if now < license.valid_from {
        return deny(ErrorCode::LicenseValidityNotStarted, "the license is not valid yet");
    }
    if license.valid_until.is_some_and(|end| end <= now) {
        return deny(ErrorCode::LicenseExpired, "the license has expired");
    }
    Ok(())
}

/// The lease duration to grant: the request, capped by the model's lease time for the mode and
/// by the license's end.
fn grantable_duration_s(license: &License, mode: LeaseMode, requested_s: Option<u64>, now: Timestamp) -> u64 {
    let model_s = match mode {
        LeaseMode::Online => license.model.lease_time_online_s,
        LeaseMode::Offline => license.model.lease_time_offline_s,
    };
    // A started second counts: a license ending in 0.4 s still grants a lease, which
    // `lease_times` then ends exactly at the license's end.
    let until_end_s = license.valid_until.map_or(u64::MAX, |end| end.millis_since(now).div_ceil(1000));
    requested_s.unwrap_or(model_s).min(model_s).min(until_end_s)
}

/// A lease's times for a grant of `duration_s` at `now`.
struct LeaseTimes {
    expires_at: Timestamp,
    refresh_at: Timestamp,
    heartbeat_not_before: Timestamp,
}

fn lease_times(license: &License, mode: LeaseMode, now: Timestamp, duration_s: u64) -> LeaseTimes {
    let refresh_s = match mode {
        LeaseMode::Online => license.model.refresh_time_online_s,
        LeaseMode::Offline => license.model.refresh_time_offline_s,
    };
    let lease_end = now.plus_secs(duration_s);
    let expires_at = license.valid_until.map_or(lease_end, |end| lease_end.min(end));
    LeaseTimes {
        expires_at,
        refresh_at: now.plus_secs(refresh_s).min(expires_at),
        heartbeat_not_before: now.plus_secs(license.model.heartbeat_interval_s),
    }
}

/// The checks on who, where and what version, shared by consume and check.
fn check_client(state: &LicenseState, req: &ConsumeRequest) -> Result<(), Denial> {
    let license = state.license();
    if req.metered && license.credit.is_enforced() {
        return deny(ErrorCode::NoLicenseFound, "metered use needs a metered license");
    }
    if !license.model.ip_rules.admits(req.client_ip) {
        return deny(ErrorCode::ClientIpAddressBlocked, "the client's IP address may not use this license");
    }
    if !license.model.geo.is_empty() {
        match req.client_country.as_deref() {
            None => {
                return deny(ErrorCode::UnresolvedGeolocation, "the client's country cannot be told from its address")
            }
            Some(country) if !license.model.geo.admits(country) => {
                return deny(
                    ErrorCode::ClientGeolocationBlocked,
                    "this license may not be used from the client's country",
                );
            }
            Some(_) => {}
        }
    }
    if let Some(range) = &license.model.version_range {
        let Some(version) = req.anchors.version.as_deref() else {
            return deny(ErrorCode::UnallowedClientVersion, "this license needs the client's version");
        };
        if range.allows(version) != Some(true) {
            return deny(ErrorCode::UnallowedClientVersion, "the client's version is outside the allowed range");
        }
    }
    if license.model.named_seats && !state.is_assigned(req.consumer) {
        return deny(ErrorCode::LicenseAssignmentMissing, "the consumer has no seat on this named-seat license");
    }
    if let Some(max_hardware) = license.model.max_hardware {
        let Some(hw) = req.anchors.hw.as_deref().filter(|hw| !hw.is_empty()) else {
            return deny(ErrorCode::LicenseAnchorMissing, "this node-locked license needs the hardware id");
        };
        if !state.knows_hardware(hw) && state.hardware_count() >= max_hardware as usize {
            return deny(ErrorCode::LicenseQuotaExceeded, "the license is locked to other hardware");
        }
    }
    Ok(())
}

/// Whether a new session of `req.consumer` finds a free seat.
fn check_free_seat(state: &LicenseState, req: &ConsumeRequest, session: &SessionKey) -> Result<(), Denial> {
    let license = state.license();
    if license.credit.dimension != Dimension::Seats || !license.credit.is_enforced() || state.holds_seat(session) {
        return Ok(());
    }
    let seats = license.credit.qty;
    let reserved = state.assignments().count() as u64;
    let has_free_reservation = state.is_assigned(req.consumer) && state.seats_of(req.consumer) == 0;
    if has_free_reservation || state.pool_seats_in_use() < seats.saturating_sub(reserved) {
        return Ok(());
    }
    if state.seats_in_use() < seats {
        return deny(ErrorCode::LicenseAssignmentDenied, "the free seats are reserved for other consumers");
    }
    match session {
        SessionKey::Anchored { .. } => {
            deny(ErrorCode::MaxConcurrentSessionsExceed, "all seats of the license are in use")
        }
        SessionKey::Unanchored(_) => deny(ErrorCode::LicenseQuotaExceeded, "all leases of the license are in use"),
    }
}

/// Credit set aside for a lease and the duration it gets, given what the other leases hold.
struct Allotment {
    qty_prealloc: u64,
    duration_s: u64,
}

/// Sets aside `wanted` uses or, for use time, seconds of the `duration_s` asked, out of
/// `available`; a use-time lease is shortened to what is left.
fn allot(
    state: &LicenseState,
    wanted: u64,
    duration_s: u64,
    available: u64,
    enforced: bool,
) -> Result<Allotment, Denial> {
    match state.license().credit.dimension {
        Dimension::Seats => Ok(Allotment { qty_prealloc: 1, duration_s }),
        Dimension::UseCount => {
            if enforced && wanted > available {
                return deny(ErrorCode::MaxUseCountExceed, "the license's use count is spent");
            }
            Ok(Allotment { qty_prealloc: wanted, duration_s })
        }
        Dimension::UseTime => {
            let seconds = if enforced { wanted.min(duration_s).min(available) } else { wanted.min(duration_s) };
            if seconds == 0 {
                return deny(ErrorCode::MaxAggregateUseTimeExceed, "the license's use time is spent");
            }
            Ok(Allotment { qty_prealloc: seconds, duration_s: seconds })
        }
    }
}

/// Decides a checkout. `new_id` is the id the lease gets if granted.
pub fn decide_consume(
    state: &LicenseState,
    req: &ConsumeRequest,
    now: Timestamp,
    new_id: LeaseId,
) -> Result<LicenseEvent, Denial> {
    let license = state.license();
    if !license.grants_item(&req.item) {
        return deny(ErrorCode::NoLicenseFound, "the license does not grant this item");
    }
    check_in_force(license, now)?;
    check_client(state, req)?;
    let session =
        SessionKey::of(&license.model.session_anchors, req.consumer, &req.anchors, new_id).map_err(anchor_missing)?;
    let current = state.session_lease(&session, &req.item);
    match (current, req.lease_id) {
        (Some(lease), named) if named != Some(lease.id) && license.model.lease_chaining => {
            return deny(ErrorCode::LeaseIdNotMatching, "lease chaining: name the session's current lease id");
        }
        (Some(lease), Some(named)) if named != lease.id => {
            return deny(ErrorCode::LeaseIdNotMatching, "the lease id is not this session's current lease");
        }
        (None, Some(_)) => return deny(ErrorCode::LeaseIdNotFound, "no live lease has this id"),
        (Some(_), _) if !license.model.allow_extension => {
            return deny(ErrorCode::NotAuthorized, "the license model does not allow renewing a lease");
        }
        // A consume naming the session's lease is a renewal (SPEC section 3), so a heartbeat:
        // it waits for hbnbf as a renew does.
        (Some(lease), Some(_)) if now < lease.heartbeat_not_before => {
            return deny(ErrorCode::HeartbeatTooEarly, "the heartbeat came before hbnbf");
        }
        _ => {}
    }
    // A consumer that takes over another consumer's lease in a shared session (same machine or
    // process) gains a lease too, so the limit applies to it as to a new one.
    if current.is_none_or(|lease| lease.consumer != req.consumer) {
        if let Some(max) = license.model.max_leases_per_consumer {
            if state.leases_of(req.consumer) >= max {
                return deny(ErrorCode::ConsumptionLimitExceed, "the consumer holds as many leases as it may");
            }
        }
    }
    if current.is_none() {
        check_free_seat(state, req, &session)?;
    }
    let enforced = license.credit.is_enforced() && !req.metered;
    let duration_s = grantable_duration_s(license, req.mode, req.duration_s, now);
    let freed = current.map_or(0, |l| l.qty_prealloc);
    let available = state.remaining_credit() + freed;
    let (wanted, carried) = match (license.credit.dimension, current) {
        (Dimension::UseCount, Some(lease)) => (req.qty.unwrap_or(1).max(1) + lease.qty_prealloc, lease.qty_prealloc),
        (Dimension::UseCount, None) => (req.qty.unwrap_or(1).max(1), 0),
        (Dimension::UseTime, Some(lease)) => {
            let used = used_time_s(lease, now);
            (used + req.qty.unwrap_or(duration_s), used)
        }
        _ => (req.qty.unwrap_or(duration_s), 0),
    };
    let allotment = match license.credit.dimension {
        Dimension::UseTime => {
            let part = allot(state, wanted - carried, duration_s, available.saturating_sub(carried), enforced)?;
            Allotment { qty_prealloc: part.qty_prealloc + carried, duration_s: part.duration_s }
        }
        _ => allot(state, wanted, duration_s, available, enforced)?,
    };
    let times = lease_times(license, req.mode, now, allotment.duration_s);
    let lease = Lease {
        id: new_id,
        license: license.id,
        consumer: req.consumer,
        item: current.map_or_else(|| license.shared_item(&req.item), |l| Arc::clone(&l.item)),
        session,
        anchors: req.anchors.shared(),
        mode: req.mode,
        granted_at: current.map_or(now, |l| l.granted_at),
        issued_at: now,
        expires_at: times.expires_at,
        refresh_at: times.refresh_at,
        heartbeat_not_before: times.heartbeat_not_before,
        qty_prealloc: allotment.qty_prealloc,
        // The seconds a use-time session has used stay used: the new lease counts its use from
        // now on top of them (as a renewal does), or a release would refund them.
        qty_verified: match (license.credit.dimension, current) {
            (Dimension::UseTime, Some(_)) => carried,
            (_, current) => current.map_or(0, |l| l.qty_verified),
        },
        metered: req.metered,
    };
    Ok(LicenseEvent::LeaseIssued { lease, replaces: current.map(|l| l.id) })
}

fn anchor_missing(missing: SessionAnchor) -> Denial {
    let message = match missing {
        SessionAnchor::Hw => "the license model anchors sessions on the hardware id (hw)",
        SessionAnchor::Process => "the license model anchors sessions on the process id (process)",
        SessionAnchor::User => "the license model anchors sessions on the user",
    };
    Denial::new(ErrorCode::LicenseAnchorMissing, message)
}

/// Seconds of use a use-time lease has had: what the client reported, or the time since it
/// was issued on top of the previous report, never more than was set aside.
fn used_time_s(lease: &Lease, now: Timestamp) -> u64 {
    (lease.qty_verified + now.secs_since_ceil(lease.issued_at)).min(lease.qty_prealloc)
}

/// The total a client has used, from its report.
fn reported_total(lease: &Lease, used: UsedQty, now: Timestamp, dimension: Dimension) -> u64 {
    match (used, dimension) {
        (_, Dimension::Seats) => 0,
        (UsedQty::Absolute(total), _) => total,
        (UsedQty::Incremental(delta), _) => lease.qty_verified.saturating_add(delta),
        (UsedQty::Unreported, Dimension::UseTime) => used_time_s(lease, now),
        (UsedQty::Unreported, Dimension::UseCount) => lease.qty_verified,
    }
}

/// Finds the live lease `id` held by the caller.
fn held_lease(state: &LicenseState, id: LeaseId, holder: Option<crate::ids::ConsumerId>) -> Result<&Lease, Denial> {
    match state.lease(id) {
        Some(lease) if holder.is_none_or(|c| c == lease.consumer) => Ok(lease),
        _ => deny(ErrorCode::LeaseIdNotFound, "no live lease has this id"),
    }
}

/// Decides a heartbeat: extend from now and rotate the id to `new_id`.
pub fn decide_renew(
    state: &LicenseState,
    req: &RenewRequest,
    now: Timestamp,
    new_id: LeaseId,
) -> Result<LicenseEvent, Denial> {
    let license = state.license();
    let lease = held_lease(state, req.lease_id, Some(req.consumer))?;
    check_in_force(license, now)?;
    if !license.model.allow_extension {
        return deny(ErrorCode::NotAuthorized, "the license model does not allow renewing a lease");
    }
    if now < lease.heartbeat_not_before {
        return deny(ErrorCode::HeartbeatTooEarly, "the heartbeat came before hbnbf");
    }
    if !lease.anchors.agree_with(&req.anchors) {
        return deny(ErrorCode::LeaseIdNotMatching, "the client claims differ from the checkout's");
    }
    let dimension = license.credit.dimension;
    let enforced = license.credit.is_enforced() && !lease.metered;
    let mut verified = reported_total(lease, req.used, now, dimension);
    if enforced {
        verified = verified.min(lease.qty_prealloc);
    }
    let duration_s = grantable_duration_s(license, lease.mode, req.duration_s, now);
    let available = state.remaining_credit() + lease.qty_prealloc;
    let (qty_prealloc, duration_s) = match dimension {
        Dimension::Seats => (1, duration_s),
        Dimension::UseCount => {
            let wanted = lease.qty_prealloc.max(verified + req.extra_qty.unwrap_or(0));
            let a = allot(state, wanted, duration_s, available, enforced)?;
            (a.qty_prealloc, a.duration_s)
        }
        Dimension::UseTime => {
            let a = allot(state, duration_s, duration_s, available.saturating_sub(verified), enforced)?;
            (verified + a.qty_prealloc, a.duration_s)
        }
    };
    let times = lease_times(license, lease.mode, now, duration_s);
    let renewed = Lease {
        id: new_id,
        issued_at: now,
        expires_at: times.expires_at,
        refresh_at: times.refresh_at,
        heartbeat_not_before: times.heartbeat_not_before,
        qty_prealloc,
        qty_verified: verified,
        ..lease.clone()
    };
    Ok(LicenseEvent::LeaseIssued { lease: renewed, replaces: Some(lease.id) })
}

/// Decides a release; the event carries the usage charged to the credit.
pub fn decide_release(state: &LicenseState, req: &ReleaseRequest, now: Timestamp) -> Result<LicenseEvent, Denial> {
    let license = state.license();
    let holder = match req.by {
        Releaser::Consumer(c) => Some(c),
        Releaser::Admin => None,
    };
    let lease = held_lease(state, req.lease_id, holder)?;
    if holder.is_some() && !license.model.allow_release {
        return deny(ErrorCode::NotAuthorized, "the license model does not allow releasing a lease");
    }
    let dimension = license.credit.dimension;
    let used = match (req.used, dimension) {
        (UsedQty::Unreported, Dimension::UseCount) => lease.qty_prealloc.max(lease.qty_verified),
        (used, _) => reported_total(lease, used, now, dimension),
    };
    let enforced = license.credit.is_enforced() && !lease.metered;
    let used_qty = if enforced { used.min(lease.qty_prealloc) } else { used };
    Ok(LicenseEvent::LeaseReleased { lease: lease.id, used_qty })
}

/// Decides a seat reservation for `consumer`: `Ok(None)` when it already has one, `Err` (why, in
/// words) when no seat can be set aside without taking a seat some session holds now.
pub fn decide_assign(
    state: &LicenseState,
    consumer: crate::ids::ConsumerId,
) -> Result<Option<LicenseEvent>, &'static str> {
    if state.is_assigned(consumer) {
        return Ok(None);
    }
    let seats = state.license().credit.qty;
    let reserved = state.assignments().count() as u64 + 1;
    // The consumer's own session, if it has one, moves from the pool onto its new reservation.
    let pool_after = state.pool_seats_in_use().saturating_sub(u64::from(state.seats_of(consumer) > 0));
    if reserved > seats || pool_after > seats - reserved {
        return Err("no free seat to reserve");
    }
    Ok(Some(LicenseEvent::SeatAssigned(consumer)))
}
