//! The Scale reads the `tenduke-scale` SDK (2.3.0) calls, `GET /licensing/actions/<read>`:
//! a consumer's licensees, its licenses in a licensee, client bindings (live leases: a
//! consumer's, a license's, one by id, a license key's), the licenses a license key grants, and
//! the features a consumer may use as feature flags (JSON, or a signed JWT the SDK verifies
//! against the JWKS).
//!
//! Callers authenticate with a consumer API key and see only the licensees they belong to; the
//! two license-key reads need only the key. Lists are paged by the headers the SDK sends
//! (`offset`, `limit`, `order-by`, `order-asc`). Everything is read from the engine: the
//! directory for parties and terms, the license actors for live leases.

use super::caller::{self, check_named_consumer, forbidden, CONSUMER_HEADER};
use super::shapes;
use crate::http::reply::{self, ApiError, Body, RequestBody, JWT};
use crate::http::HttpState;
use bytes::Bytes;
use hyper::{HeaderMap, Request, Response, StatusCode};
use leasehold_engine::claims::Claims;
use leasehold_engine::decide::check_in_force;
use leasehold_engine::directory::key_holder;
use leasehold_engine::model::{Lease, License, LicenseStatus};
use leasehold_engine::{ConsumerId, EngineError, LeaseId, LicenseId, LicenseeId};
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;

/// Entries a page has when the request does not say (Scale's default).
pub const DEFAULT_PAGE_LIMIT: usize = 5;
/// Most entries a page may have.
pub const MAX_PAGE_LIMIT: usize = 100;
/// How long a feature-flags token is valid.
pub const FEATURE_FLAGS_LIFETIME_S: u64 = 3_600;

/// The query parameters the SDK's reads use; any other is refused.
const PARAMETERS: [&str; 8] = [
    "licenseeId",
    CONSUMER_HEADER,
    "licenseId",
    "licenseKey",
    "clientBindingId",
    "filterField",
    "filterValue",
    "withMetadata",
];

/// A read of the Scale API: by a consumer (API key) or by a license key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// A read of what a consumer may use.
    Consumer(ConsumerRead),
    /// A read of what a license key grants.
    Key(KeyRead),
}

/// The reads a consumer makes with its API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerRead {
    /// `describe-license-consumer-licensees`.
    Licensees,
    /// `describe-license-consumer-licenses`.
    Licenses,
    /// `describe-license-consumer-client-bindings`.
    ConsumerBindings,
    /// `describe-license-client-bindings`.
    LicenseBindings,
    /// `find-license-client-binding`.
    FindBinding,
    /// `describe-as-feature-flags`.
    FeatureFlags,
    /// `describe-as-feature-flags-jwt`.
    FeatureFlagsJwt,
}

/// The reads made with a license key (no API key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRead {
    /// `describe-license-key`.
    Licenses,
    /// `describe-license-key-client-bindings`.
    Bindings,
}

impl Read {
    /// The read a path segment names.
    pub fn of(name: &str) -> Option<Read> {
        Some(match name {
            "describe-license-consumer-licensees" => Read::Consumer(ConsumerRead::Licensees),
            "describe-license-consumer-licenses" => Read::Consumer(ConsumerRead::Licenses),
            "describe-license-consumer-client-bindings" => Read::Consumer(ConsumerRead::ConsumerBindings),
            "describe-license-client-bindings" => Read::Consumer(ConsumerRead::LicenseBindings),
            "find-license-client-binding" => Read::Consumer(ConsumerRead::FindBinding),
            "describe-as-feature-flags" => Read::Consumer(ConsumerRead::FeatureFlags),
            "describe-as-feature-flags-jwt" => Read::Consumer(ConsumerRead::FeatureFlagsJwt),
            "describe-license-key" => Read::Key(KeyRead::Licenses),
            "describe-license-key-client-bindings" => Read::Key(KeyRead::Bindings),
            _ => return None,
        })
    }
}

/// The query parameters of a read, decoded.
struct Query(HashMap<&'static str, String>);

impl Query {
    fn parse(raw: &str) -> Result<Query, ApiError> {
        let mut found = HashMap::new();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |text: &str| {
                percent_decode_str(text)
                    .decode_utf8()
                    .map(|t| t.into_owned())
                    .map_err(|_| ApiError::bad_request("the query is not UTF-8 once percent-decoded"))
            };
            let name = decode(name)?;
            let Some(known) = PARAMETERS.iter().find(|p| **p == name) else {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {name:?}; these are read: {}",
                    PARAMETERS.join(", ")
                )));
            };
            if found.insert(*known, decode(value)?).is_some() {
                return Err(ApiError::bad_request(format!("query parameter {name} is given twice")));
            }
        }
        Ok(Query(found))
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.text(name).ok_or_else(|| ApiError::bad_request(format!("query parameter {name} is required")))
    }

    fn id<T: FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        self.text(name)
            .map(|v| v.parse().map_err(|_| ApiError::bad_request(format!("query parameter {name} must be a UUID"))))
            .transpose()
    }

    fn required_id<T: FromStr>(&self, name: &str) -> Result<T, ApiError> {
        self.id(name)?.ok_or_else(|| ApiError::bad_request(format!("query parameter {name} is required")))
    }

    fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.text(name) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => Err(ApiError::bad_request(format!("query parameter {name} is true or false"))),
        }
    }
}

/// The paging headers: which part of a list to answer, in which order.
struct Paging {
    offset: usize,
    limit: usize,
    order_by: Option<String>,
    ascending: bool,
}

impl Paging {
    fn read(headers: &HeaderMap) -> Result<Paging, ApiError> {
        let text = |name: &str| -> Result<Option<String>, ApiError> {
            match headers.get(name) {
                None => Ok(None),
                Some(v) => v
                    .to_str()
                    .map(|s| Some(s.trim().to_owned()))
                    .map_err(|_| ApiError::bad_request(format!("header {name} is not ASCII"))),
            }
        };
        let number = |name: &str| -> Result<Option<usize>, ApiError> {
            text(name)?
                .map(|v| v.parse().map_err(|_| ApiError::bad_request(format!("header {name} must be a whole number"))))
                .transpose()
        };
        let limit = number("limit")?.unwrap_or(DEFAULT_PAGE_LIMIT);
        if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(format!("header limit must be 1 to {MAX_PAGE_LIMIT}")));
        }
        let ascending = match text("order-asc")?.as_deref() {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(_) => return Err(ApiError::bad_request("header order-asc is true or false")),
        };
        Ok(Paging { offset: number("offset")?.unwrap_or(0), limit, order_by: text("order-by")?, ascending })
    }

    /// The page of `items` (JSON objects), sorted by the `order-by` field when one is asked;
    /// also whether the page holds every item. A field the objects do not have is a 400.
    fn page(&self, mut items: Vec<Value>) -> Result<(Vec<Value>, bool), ApiError> {
        if let Some(field) = &self.order_by {
            if items.first().is_some_and(|first| first.get(field).is_none()) {
                return Err(ApiError::bad_request(format!("cannot order by {field:?}: no such field")));
            }
            items.sort_by(|a, b| {
                let order = compare(&a[field.as_str()], &b[field.as_str()]);
                if self.ascending {
                    order
                } else {
                    order.reverse()
                }
            });
        }
        let total = items.len();
        let page: Vec<Value> = items.into_iter().skip(self.offset).take(self.limit).collect();
        let complete = self.offset == 0 && page.len() == total;
        Ok((page, complete))
    }
}

/// Orders JSON scalars: nulls first, numbers by value, everything else as text (times are
/// written so that text order is time order).
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::Number(x), Value::Number(y)) => {
            x.as_f64().unwrap_or(0.0).partial_cmp(&y.as_f64().unwrap_or(0.0)).unwrap_or(Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (x, y) => x.to_string().cmp(&y.to_string()),
    }
}

/// Answers one read.
pub async fn handle(state: &HttpState, req: Request<RequestBody>, read: Read) -> Result<Response<Body>, ApiError> {
    let query = Query::parse(req.uri().query().unwrap_or(""))?;
    let paging = Paging::read(req.headers())?;
    let read = match read {
        Read::Key(KeyRead::Licenses) => return license_key(state, &query, &paging),
        Read::Key(KeyRead::Bindings) => return license_key_bindings(state, &query, &paging).await,
        Read::Consumer(read) => read,
    };
    let consumer = caller::consumer_of(state, req.headers()).await?;
    check_named_consumer(consumer, query.text(CONSUMER_HEADER))?;
    match read {
        ConsumerRead::Licensees => licensees(state, consumer, &paging),
        ConsumerRead::Licenses => licenses(state, consumer, &query, &paging),
        ConsumerRead::ConsumerBindings => consumer_bindings(state, consumer, &query, &paging).await,
        ConsumerRead::LicenseBindings => license_bindings(state, consumer, &query, &paging).await,
        ConsumerRead::FindBinding => find_binding(state, consumer, &query).await,
        ConsumerRead::FeatureFlags => feature_flags(state, consumer, &query).map(|(_, flags)| {
            let list: Vec<Value> = flags
                .into_iter()
                .map(|(product, features)| json!({"productName": product, "features": features}))
                .collect();
            reply::json(StatusCode::OK, &json!({"featureFlags": list}))
        }),
        ConsumerRead::FeatureFlagsJwt => feature_flags_jwt(state, consumer, &query).await,
    }
}

fn licensees(state: &HttpState, consumer: ConsumerId, paging: &Paging) -> Result<Response<Body>, ApiError> {
    let items: Vec<Value> = {
        let directory = state.engine.directory();
        let known = directory.consumer(consumer).ok_or_else(|| ApiError::unauthorized("unknown consumer"))?;
        known.licensees.iter().filter_map(|id| directory.licensee(*id)).map(shapes::licensee).collect()
    };
    let (page, _) = paging.page(items)?;
    Ok(reply::json(StatusCode::OK, &page))
}

/// The licenses of `licensee` that `consumer` may see (it must belong to the licensee): those it
/// may use (SPEC section 12) that are not revoked or deactivated, in the order they were issued.
fn visible_licenses(
    state: &HttpState,
    consumer: ConsumerId,
    licensee: LicenseeId,
) -> Result<Vec<Arc<License>>, ApiError> {
    let directory = state.engine.directory();
    let member = directory.consumer(consumer).filter(|c| c.licensees.contains(&licensee));
    let Some(member) = member else {
        return Err(forbidden(format!("the consumer does not belong to licensee {licensee}")));
    };
    // A licensee's licenses share a partition: the node that owns it holds their latest terms.
    for license in directory.licenses_of(licensee) {
        state.engine.answers_for(license.id)?;
    }
    let usable = directory.licenses_of(licensee).filter(|l| directory.may_use(member, l));
    Ok(usable.filter(|l| l.status == LicenseStatus::Active).cloned().collect())
}

/// Keeps the licenses whose `filterField` (default `productName`, the only one) equals
/// `filterValue`, ignoring case.
fn filtered(licenses: Vec<Arc<License>>, query: &Query) -> Result<Vec<Arc<License>>, ApiError> {
    let Some(value) = query.text("filterValue") else { return Ok(licenses) };
    match query.text("filterField") {
        None | Some("productName") => {}
        Some(other) => return Err(ApiError::bad_request(format!("cannot filter on {other:?}; use productName"))),
    }
    Ok(licenses.into_iter().filter(|l| l.product_name.eq_ignore_ascii_case(value)).collect())
}

fn licenses(
    state: &HttpState,
    consumer: ConsumerId,
    query: &Query,
    paging: &Paging,
) -> Result<Response<Body>, ApiError> {
    let licensee = query.required_id("licenseeId")?;
    let with_key = query.flag("withMetadata")?;
    let found = filtered(visible_licenses(state, consumer, licensee)?, query)?;
    let (page, _) = paging.page(found.iter().map(|l| shapes::license(l, with_key)).collect())?;
    Ok(reply::json(StatusCode::OK, &json!({"licenses": page})))
}

/// The live leases of `license`, through its actor.
async fn live_leases(state: &HttpState, license: LicenseId) -> Result<Vec<Lease>, ApiError> {
    let mut leases = state.engine.leases(license).await?;
    leases.sort_by_key(|l| (l.granted_at, l.id));
    Ok(leases)
}

/// A lease as a client binding, held by a consumer of the directory or by a license key.
fn binding_of(state: &HttpState, lease: &Lease, terms: &License) -> Value {
    let holder = if lease.consumer == key_holder(terms.id) {
        shapes::key_consumer(terms)
    } else {
        let directory = state.engine.directory();
        directory.consumer(lease.consumer).map_or_else(|| json!({"id": lease.consumer}), shapes::consumer)
    };
    shapes::binding(lease, terms, holder)
}

/// The answer of the binding reads: `{"allClientBindingsIncluded", "clientBindings"}`.
fn bindings_answer(bindings: Vec<Value>, paging: &Paging) -> Result<Response<Body>, ApiError> {
    let (page, complete) = paging.page(bindings)?;
    Ok(reply::json(StatusCode::OK, &json!({"allClientBindingsIncluded": complete, "clientBindings": page})))
}

/// The bindings on `licenses`, of `holder` only when one is given.
async fn bindings_on(
    state: &HttpState,
    licenses: &[Arc<License>],
    holder: Option<ConsumerId>,
) -> Result<Vec<Value>, ApiError> {
    let mut bindings = Vec::new();
    for terms in licenses {
        for lease in live_leases(state, terms.id).await? {
            if holder.is_none_or(|h| h == lease.consumer) {
                bindings.push(binding_of(state, &lease, terms));
            }
        }
    }
    Ok(bindings)
}

async fn consumer_bindings(
    state: &HttpState,
    consumer: ConsumerId,
    query: &Query,
    paging: &Paging,
) -> Result<Response<Body>, ApiError> {
    let licensee = query.required_id("licenseeId")?;
    let licenses = filtered(visible_licenses(state, consumer, licensee)?, query)?;
    bindings_answer(bindings_on(state, &licenses, Some(consumer)).await?, paging)
}

/// Every binding on one license of the licensee (who uses it, on which devices), or only the
/// caller's when `licenseConsumerId` is given.
async fn license_bindings(
    state: &HttpState,
    consumer: ConsumerId,
    query: &Query,
    paging: &Paging,
) -> Result<Response<Body>, ApiError> {
    let licensee = query.required_id("licenseeId")?;
    let license: LicenseId = query.required_id("licenseId")?;
    let licenses: Vec<Arc<License>> =
        visible_licenses(state, consumer, licensee)?.into_iter().filter(|l| l.id == license).collect();
    if licenses.is_empty() {
        return Err(ApiError::not_found(format!("license {license} of licensee {licensee}")));
    }
    let only = query.text(CONSUMER_HEADER).map(|_| consumer);
    bindings_answer(bindings_on(state, &licenses, only).await?, paging)
}

/// One binding by id (a lease id) among the licensee's licenses; an empty list when there is
/// none.
async fn find_binding(state: &HttpState, consumer: ConsumerId, query: &Query) -> Result<Response<Body>, ApiError> {
    let licensee = query.required_id("licenseeId")?;
    let wanted: LeaseId = query.required_id("clientBindingId")?;
    let mut found = Vec::new();
    for terms in visible_licenses(state, consumer, licensee)? {
        if let Some(lease) = live_leases(state, terms.id).await?.into_iter().find(|l| l.id == wanted) {
            found.push(binding_of(state, &lease, &terms));
            break;
        }
    }
    Ok(reply::json(StatusCode::OK, &json!({"allClientBindingsIncluded": true, "clientBindings": found})))
}

/// Product name to its features, over the licensee's licenses that are in force now (a
/// product's own name is not a feature; display-only features are never in a license).
type FeatureFlags = BTreeMap<String, Vec<String>>;

fn feature_flags(
    state: &HttpState,
    consumer: ConsumerId,
    query: &Query,
) -> Result<(LicenseeId, FeatureFlags), ApiError> {
    let licensee = query.required_id("licenseeId")?;
    let now = state.engine.now();
    let wanted = query.text("filterValue");
    let mut flags = FeatureFlags::new();
    for license in visible_licenses(state, consumer, licensee)? {
        if check_in_force(&license, now).is_err()
            || wanted.is_some_and(|w| !license.product_name.eq_ignore_ascii_case(w))
        {
            continue;
        }
        let features = flags.entry(license.product_name.to_string()).or_default();
        for feature in &license.features {
            if !features.contains(feature) {
                features.push(feature.clone());
            }
        }
    }
    Ok((licensee, flags))
}

async fn feature_flags_jwt(state: &HttpState, consumer: ConsumerId, query: &Query) -> Result<Response<Body>, ApiError> {
    let (licensee, flags) = feature_flags(state, consumer, query)?;
    let mut flagged = Claims::new();
    flagged.insert("licenseeId".into(), json!(licensee));
    flagged.insert("licenseConsumerId".into(), json!(consumer));
    flagged.insert("featureFlags".into(), json!(flags));
    let tokens = state.tokens();
    let token =
        tokens.sign(tokens.scale_document(flagged, FEATURE_FLAGS_LIFETIME_S), None).await.map_err(EngineError::from)?;
    Ok(reply::bytes_response(StatusCode::OK, JWT, Bytes::from(token)))
}

/// The license a `licenseKey` parameter identifies, with its terms.
fn keyed_license(state: &HttpState, query: &Query) -> Result<Arc<License>, ApiError> {
    let license = caller::license_of_key(state, query.required("licenseKey")?)?;
    state.engine.answers_for(license)?;
    state.engine.license(license).ok_or_else(|| ApiError::not_found(format!("license {license}")))
}

/// The licenses a key grants use of: its license, unless revoked or deactivated.
fn license_key(state: &HttpState, query: &Query, paging: &Paging) -> Result<Response<Body>, ApiError> {
    // `withMetadata` is read only to refuse a bad value: the key's holder sees the key anyway.
    query.flag("withMetadata")?;
    let terms = keyed_license(state, query)?;
    let granted: Vec<Value> =
        (terms.status == LicenseStatus::Active).then(|| shapes::license(&terms, true)).into_iter().collect();
    let (page, _) = paging.page(granted)?;
    Ok(reply::json(StatusCode::OK, &json!({"licenses": page})))
}

/// The live leases taken with a license key.
async fn license_key_bindings(state: &HttpState, query: &Query, paging: &Paging) -> Result<Response<Body>, ApiError> {
    let terms = keyed_license(state, query)?;
    let named: Option<LicenseId> = query.id("licenseId")?;
    if named.is_some_and(|id| id != terms.id) {
        return bindings_answer(Vec::new(), paging);
    }
    let bindings = bindings_on(state, std::slice::from_ref(&terms), Some(key_holder(terms.id))).await?;
    bindings_answer(bindings, paging)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_names_only_known_parameters_once() {
        let query = Query::parse("licenseeId=abc&filterValue=Three%20Dee&withMetadata=TRUE").unwrap();
        assert_eq!(query.text("filterValue"), Some("Three Dee"));
        assert_eq!(query.flag("withMetadata"), Ok(true));
        assert!(query.id::<LicenseeId>("licenseeId").is_err());
        assert!(Query::parse("color=red").is_err());
        assert!(Query::parse("licenseId=a&licenseId=b").is_err());
        assert!(Query::parse("withMetadata=maybe").unwrap().flag("withMetadata").is_err());
    }

    #[test]
    fn a_page_is_ordered_by_a_field_and_says_whether_it_holds_everything() {
        let items = vec![json!({"n": "b", "q": 2}), json!({"n": "a", "q": 10}), json!({"n": "c", "q": null})];
        let by = |field: &str, ascending: bool, offset: usize, limit: usize| Paging {
            offset,
            limit,
            order_by: Some(field.to_owned()),
            ascending,
        };
        let (page, complete) = by("q", true, 0, 5).page(items.clone()).unwrap();
        assert_eq!(page.iter().map(|v| v["n"].as_str().unwrap()).collect::<Vec<_>>(), ["c", "b", "a"]);
        assert!(complete);
        let (page, complete) = by("n", false, 1, 1).page(items.clone()).unwrap();
        assert_eq!((page, complete), (vec![json!({"n": "b", "q": 2})], false));
        assert!(by("size", true, 0, 5).page(items).is_err());
    }
}
