//! The 10Duke Enterprise `/authz/` query grammar (SPEC section 5, `seeds/enterprise-authz-consume.txt`),
//! parsed into plain data before anything touches the engine.
//!
//! A query is `&`-separated parameters. The known names are the request's options (`doConsume`,
//! `consumptionMode`, `consumeDuration` in milliseconds, `consumeCount`, `hw[;name=..]`,
//! `process[;name=..]`, `version`, `leaseId`, the license filters, `publicKey`); every other
//! name is a licensed item, written `item`, `item=` or `item=;leaseId=..;licenseId=..`. A
//! `release` parameter turns the query into a release whose other names are lease ids
//! (`?release&<leaseId>&<leaseId>=`; the client's `hw`, `process` and `version` may come along
//! and are ignored).
//!
//! Values are percent-decoded; `+` is kept as `+` (hardware ids are often base64, where `+` is
//! a digit, not a space). Names are form-decoded, `+` being a space, as browsers encode them.
//! Anything malformed is a [`QueryError`], answered 400: the engine is never asked about a
//! request it cannot have meant.

use leasehold_engine::model::{Anchors, LeaseMode};
use leasehold_engine::{ConsumeRequest, ConsumerId, LeaseId, LicenseFilters, LicenseId, LicenseeId};
use percent_encoding::percent_decode_str;
use std::net::IpAddr;
use std::str::FromStr;

/// Most items (or lease ids) one request may name.
pub const MAX_ITEMS: usize = 64;
/// Longest value accepted for any parameter, in bytes.
pub const MAX_VALUE_BYTES: usize = 4096;

/// Why a query cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A name or value is not UTF-8 once percent-decoded.
    #[error("the query is not valid UTF-8 once percent-decoded")]
    NotUtf8,
    /// No licensed item was named.
    #[error("name at least one licensed item, e.g. /authz/.jwt?MyProduct")]
    NoItem,
    /// A release that names no lease.
    #[error("release needs at least one lease id: ?release&<leaseId>")]
    NoLease,
    /// Too many items or lease ids.
    #[error("at most {MAX_ITEMS} items or lease ids per request")]
    TooManyItems,
    /// A value longer than [`MAX_VALUE_BYTES`].
    #[error("parameter {0:?} is longer than {MAX_VALUE_BYTES} bytes")]
    TooLong(String),
    /// A parameter whose value is not what it should be.
    #[error("parameter {name:?}: {why}")]
    BadValue {
        /// The parameter.
        name: String,
        /// What was expected.
        why: &'static str,
    },
    /// An option given twice.
    #[error("parameter {0:?} is given twice")]
    Repeated(String),
}

fn bad(name: &str, why: &'static str) -> QueryError {
    QueryError::BadValue { name: name.to_owned(), why }
}

/// One licensed item of a consume, with its own lease id and filters when it gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemQuery {
    /// The item's name.
    pub name: String,
    /// `item=;leaseId=..`.
    pub lease_id: Option<LeaseId>,
    /// `item=;licenseId=..` and the other filters.
    pub filters: LicenseFilters,
}

/// A consume, check or renewal of one or more items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumeQuery {
    /// The items, in the order asked (answers come in the same order).
    pub items: Vec<ItemQuery>,
    /// `doConsume` (default true); false is a check.
    pub do_consume: bool,
    /// `consumptionMode`: `cache` (online, default) or `checkout` (offline).
    pub mode: LeaseMode,
    /// `consumeDuration`, rounded up to whole seconds.
    pub duration_s: Option<u64>,
    /// `consumeCount`.
    pub qty: Option<u64>,
    /// `hw`, `process` (with their names) and `version`.
    pub anchors: Anchors,
    /// `leaseId`, for items that do not name their own.
    pub lease_id: Option<LeaseId>,
    /// The filters, for items that do not name their own.
    pub filters: LicenseFilters,
    /// `publicKey`: the client's RSA key; the tokens are then JWEs.
    pub public_key: Option<String>,
}

/// What an `/authz/` query asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthzQuery {
    /// Consume, check or renew items.
    Consume(Box<ConsumeQuery>),
    /// Release these leases.
    Release(Vec<LeaseId>),
}

impl ConsumeQuery {
    /// The engine requests for each item, by `consumer` from `client_ip`, in order.
    pub fn requests(&self, consumer: ConsumerId, client_ip: Option<IpAddr>) -> Vec<ConsumeRequest> {
        self.items
            .iter()
            .map(|item| {
                let mut req = ConsumeRequest::new(consumer, item.name.clone());
                req.anchors = self.anchors.clone();
                req.client_ip = client_ip;
                req.mode = self.mode;
                req.duration_s = self.duration_s;
                req.qty = self.qty;
                req.lease_id = item.lease_id.or(self.lease_id);
                req.filters = LicenseFilters {
                    license: item.filters.license.or(self.filters.license),
                    licensee: item.filters.licensee.or(self.filters.licensee),
                    entitlement: item.filters.entitlement.clone().or_else(|| self.filters.entitlement.clone()),
                };
                req
            })
            .collect()
    }
}

/// One `name[=value]` of the query, decoded.
struct Param {
    name: String,
    value: Option<String>,
}

fn decode(raw: &str, name_for_errors: &str) -> Result<String, QueryError> {
    let text = percent_decode_str(raw).decode_utf8().map_err(|_| QueryError::NotUtf8)?;
    if text.len() > MAX_VALUE_BYTES {
        return Err(QueryError::TooLong(name_for_errors.chars().take(64).collect()));
    }
    if text.chars().any(char::is_control) {
        return Err(bad(name_for_errors, "control characters are not allowed"));
    }
    Ok(text.into_owned())
}

fn params(query: &str) -> Result<Vec<Param>, QueryError> {
    let mut out = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = match part.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (part, None),
        };
        // Names are form-decoded (`+` is a space): browsers' URLSearchParams, which the official
        // LicenseChecker uses, writes an item "Three Dee" as `Three+Dee=`.
        let name = decode(&raw_name.replace('+', " "), raw_name)?;
        let value = raw_value.map(|v| decode(v, &name)).transpose()?;
        out.push(Param { name, value });
        if out.len() > 2 * MAX_ITEMS + 16 {
            return Err(QueryError::TooManyItems);
        }
    }
    Ok(out)
}

fn uuid<T: FromStr>(name: &str, value: &str) -> Result<T, QueryError> {
    value.trim().parse().map_err(|_| bad(name, "must be a UUID"))
}

fn positive(name: &str, value: &str) -> Result<u64, QueryError> {
    match value.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(bad(name, "must be a positive integer")),
    }
}

fn boolean(name: &str, value: Option<&str>) -> Result<bool, QueryError> {
    match value.map(str::trim) {
        None | Some("") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(bad(name, "must be true or false")),
    }
}

/// Sets `slot` once; a second value is an error.
fn once<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), QueryError> {
    if slot.is_some() {
        return Err(QueryError::Repeated(name.to_owned()));
    }
    *slot = Some(value);
    Ok(())
}

/// `id[;name=label]`: the value and its optional name.
fn with_name(param: &str, value: &str) -> Result<(Option<String>, Option<String>), QueryError> {
    let mut parts = value.split(';');
    let id = parts.next().unwrap_or("").trim();
    let mut label = None;
    for extra in parts.filter(|p| !p.is_empty()) {
        match extra.split_once('=') {
            Some(("name", v)) => once(&mut label, "name", v.to_owned())?,
            _ => return Err(bad(param, "only ;name=<label> may follow the id")),
        }
    }
    Ok(((!id.is_empty()).then(|| id.to_owned()), label.filter(|l| !l.is_empty())))
}

/// Applies a filter parameter (`licenseId`, `ownerOrganizationId`, `ownerUserId`,
/// `entitlementId`) to `filters`; `false` when `name` is not a filter.
fn filter(filters: &mut LicenseFilters, name: &str, value: &str) -> Result<bool, QueryError> {
    match name {
        "licenseId" => once(&mut filters.license, name, uuid::<LicenseId>(name, value)?)?,
        "ownerOrganizationId" | "ownerUserId" => {
            once(&mut filters.licensee, "ownerOrganizationId/ownerUserId", uuid::<LicenseeId>(name, value)?)?
        }
        "entitlementId" => once(&mut filters.entitlement, name, value.trim().to_owned())?,
        _ => return Ok(false),
    }
    Ok(true)
}

fn item(name: String, value: Option<&str>) -> Result<ItemQuery, QueryError> {
    if name.trim().is_empty() {
        return Err(bad("", "an item name is empty"));
    }
    let mut item = ItemQuery { name, lease_id: None, filters: LicenseFilters::default() };
    let Some(value) = value else { return Ok(item) };
    let mut parts = value.split(';');
    if !parts.next().unwrap_or("").trim().is_empty() {
        return Err(bad(&item.name, "an item's value is empty or ;key=value pairs (leaseId, licenseId, ...)"));
    }
    for pair in parts.filter(|p| !p.is_empty()) {
        let Some((key, v)) = pair.split_once('=') else {
            return Err(bad(&item.name, "an item's options are ;key=value pairs"));
        };
        if key == "leaseId" {
            once(&mut item.lease_id, key, uuid(key, v)?)?;
        } else if !filter(&mut item.filters, key, v)? {
            return Err(bad(
                &item.name,
                "an item's options are leaseId, licenseId, ownerOrganizationId, ownerUserId, entitlementId",
            ));
        }
    }
    Ok(item)
}

fn release(params: Vec<Param>) -> Result<AuthzQuery, QueryError> {
    let mut leases = Vec::new();
    for Param { name, value } in params {
        let id = match (name.as_str(), value.as_deref()) {
            // The client's anchors ride along on every call it makes (the official
            // LicenseChecker sends `hw` with its releases too); a release is by lease id alone.
            ("release" | "hw" | "process" | "version", _) => continue,
            ("leaseId", Some(v)) => v,
            (n, None | Some("")) => n,
            (n, Some(_)) => return Err(bad(n, "a release names lease ids: ?release&<leaseId>&<leaseId>")),
        };
        leases.push(uuid::<LeaseId>("leaseId", id)?);
        if leases.len() > MAX_ITEMS {
            return Err(QueryError::TooManyItems);
        }
    }
    if leases.is_empty() {
        return Err(QueryError::NoLease);
    }
    Ok(AuthzQuery::Release(leases))
}

/// Parses the raw query string (what follows `?`, still percent-encoded).
pub fn parse(query: &str) -> Result<AuthzQuery, QueryError> {
    let params = params(query)?;
    let mut releasing = false;
    for p in params.iter().filter(|p| p.name == "release") {
        releasing |= boolean("release", p.value.as_deref())?;
    }
    if releasing {
        return release(params);
    }
    let mut q = ConsumeQuery {
        items: Vec::new(),
        do_consume: true,
        mode: LeaseMode::Online,
        duration_s: None,
        qty: None,
        anchors: Anchors::default(),
        lease_id: None,
        filters: LicenseFilters::default(),
        public_key: None,
    };
    let (mut do_consume, mut mode, mut hw, mut process) = (None, None, None, None);
    for Param { name, value } in params {
        let v = value.as_deref().unwrap_or("");
        match name.as_str() {
            "release" => {}
            "doConsume" => once(&mut do_consume, &name, boolean(&name, value.as_deref())?)?,
            "consumptionMode" => {
                let m = match v.trim() {
                    "cache" => LeaseMode::Online,
                    "checkout" => LeaseMode::Offline,
                    _ => return Err(bad(&name, "must be cache or checkout")),
                };
                once(&mut mode, &name, m)?;
            }
            "consumeDuration" => once(&mut q.duration_s, &name, positive(&name, v)?.div_ceil(1000))?,
            "consumeCount" => once(&mut q.qty, &name, positive(&name, v)?)?,
            "hw" => once(&mut hw, &name, with_name(&name, v)?)?,
            "process" => once(&mut process, &name, with_name(&name, v)?)?,
            "version" => once(&mut q.anchors.version, &name, v.trim().to_owned())?,
            "leaseId" => once(&mut q.lease_id, &name, uuid(&name, v)?)?,
            "publicKey" => once(&mut q.public_key, &name, v.trim().to_owned())?,
            other => {
                if !filter(&mut q.filters, other, v)? {
                    q.items.push(item(name, value.as_deref())?);
                    if q.items.len() > MAX_ITEMS {
                        return Err(QueryError::TooManyItems);
                    }
                }
            }
        }
    }
    if q.items.is_empty() {
        return Err(QueryError::NoItem);
    }
    q.do_consume = do_consume.unwrap_or(true);
    q.mode = mode.unwrap_or(LeaseMode::Online);
    (q.anchors.hw, q.anchors.hw_name) = hw.unwrap_or_default();
    (q.anchors.process, q.anchors.process_name) = process.unwrap_or_default();
    q.anchors.version = q.anchors.version.filter(|v| !v.is_empty());
    Ok(AuthzQuery::Consume(Box::new(q)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consume(query: &str) -> ConsumeQuery {
        match parse(query) {
            Ok(AuthzQuery::Consume(q)) => *q,
            other => panic!("{query}: {other:?}"),
        }
    }

    const LEASE: &str = "d04551aa-7c0a-47a6-aa85-ed345e591ea9";
    const LICENSE: &str = "870f46a4-1faa-4847-955b-14ee5f74f3fe";

    #[test]
    fn a_plain_item_with_hardware_is_an_online_consume() {
        let q = consume("AppFeature-XYZ&hw=T29q+b1Rh/YWU3K%3D");
        assert_eq!(q.items.len(), 1);
        assert_eq!(q.items[0].name, "AppFeature-XYZ");
        assert!(q.do_consume);
        assert_eq!(q.mode, LeaseMode::Online);
        assert_eq!(q.anchors.hw.as_deref(), Some("T29q+b1Rh/YWU3K="));
    }

    #[test]
    fn every_option_of_the_seed_is_read() {
        let q = consume(&format!(
            "A&doConsume=false&consumptionMode=checkout&consumeDuration=1500&consumeCount=3\
             &hw=abc;name=My%20Laptop&process=42;name=cad&version=1.6.14&leaseId={LEASE}&licenseId={LICENSE}"
        ));
        assert!(!q.do_consume);
        assert_eq!(q.mode, LeaseMode::Offline);
        assert_eq!(q.duration_s, Some(2));
        assert_eq!(q.qty, Some(3));
        assert_eq!(q.anchors.hw_name.as_deref(), Some("My Laptop"));
        assert_eq!(q.anchors.process.as_deref(), Some("42"));
        assert_eq!(q.anchors.process_name.as_deref(), Some("cad"));
        assert_eq!(q.anchors.version.as_deref(), Some("1.6.14"));
        assert_eq!(q.lease_id, Some(LEASE.parse().unwrap()));
        assert_eq!(q.filters.license, Some(LICENSE.parse().unwrap()));
    }

    #[test]
    fn items_may_carry_their_own_lease_and_license() {
        let q = consume(&format!("X=;leaseId={LEASE}&Y=&Z=;licenseId={LICENSE}&hw=h"));
        let names: Vec<_> = q.items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["X", "Y", "Z"]);
        assert_eq!(q.items[0].lease_id, Some(LEASE.parse().unwrap()));
        assert_eq!(q.items[2].filters.license, Some(LICENSE.parse().unwrap()));
        let reqs = q.requests(ConsumerId(uuid::Uuid::nil()), None);
        assert_eq!(reqs[0].lease_id, Some(LEASE.parse().unwrap()));
        assert_eq!(reqs[1].lease_id, None);
    }

    #[test]
    fn release_names_lease_ids_in_every_spelling() {
        let other = "d82cde79-da02-4e24-861c-ed3bf96a4fed";
        for query in [format!("release&{LEASE}&{other}="), format!("release=true&{LEASE}=&leaseId={other}")] {
            assert_eq!(parse(&query), Ok(AuthzQuery::Release(vec![LEASE.parse().unwrap(), other.parse().unwrap()])));
        }
        assert_eq!(parse("release"), Err(QueryError::NoLease));
        assert_eq!(parse("release=true&hw=abc"), Err(QueryError::NoLease));
        assert!(matches!(parse("release&not-a-uuid"), Err(QueryError::BadValue { .. })));
    }

    #[test]
    fn a_plus_in_a_name_is_a_space_and_in_a_value_is_a_plus() {
        let q = consume("Three+Dee=&C%2B%2B+Tools&hw=a+b%2Bc");
        let names: Vec<_> = q.items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["Three Dee", "C++ Tools"]);
        assert_eq!(q.anchors.hw.as_deref(), Some("a+b+c"));
    }

    #[test]
    fn a_release_ignores_the_anchors_the_client_sends_with_it() {
        let query = format!("release=true&{LEASE}=&hw=T29q+b1Rh;name=laptop&process=42&version=1.0");
        assert_eq!(parse(&query), Ok(AuthzQuery::Release(vec![LEASE.parse().unwrap()])));
    }

    #[test]
    fn malformed_queries_are_refused() {
        for query in [
            "",
            "&&",
            "doConsume=maybe&A",
            "A&consumptionMode=forever",
            "A&consumeDuration=-5",
            "A&consumeCount=0",
            "A&leaseId=nope",
            "A&licenseId=nope",
            "A=true",
            "A=;colour=red",
            "A&hw=x;label=y",
            "A&hw=1&hw=2",
            "%FF%FE",
            "A&version=%00",
        ] {
            assert!(parse(query).is_err(), "{query:?} should be refused");
        }
        let many = (0..=MAX_ITEMS).map(|i| format!("I{i}")).collect::<Vec<_>>().join("&");
        assert_eq!(parse(&many), Err(QueryError::TooManyItems));
    }
}
