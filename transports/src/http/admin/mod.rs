//! The admin API under `/admin/` (SPEC section 9): licensees, consumers, products, licenses and
//! their leases, and the token and key actions ([`tokens`]), behind
//! `Authorization: Bearer <admin token>`.
//!
//! Each route is one small function that parses its body into a [`shapes`] type, makes one
//! engine call and writes the answer; engine refusals map onto 400 (invalid), 404 (unknown id)
//! and 409 (conflict).
//!
//! A `POST` sent with an `Idempotency-Key` is carried out once: its answer is journaled and a
//! retry within a day gets it again (the same key with another request is 422). What a `POST`
//! creates takes ids derived from the key, so a retry after a crash that came before the answer
//! was journaled finds the object instead of making a second one; an answer that holds a secret
//! (a consumer's API key) is never stored, and its retry derives the same secret again.

pub mod access;
mod activation;
pub mod license_keys;
mod organization;
pub mod shapes;
pub mod tokens;
mod usage;
mod webhooks;

use crate::http::idempotency::{self, answer_once, Secret};
use crate::http::reply::{self, ApiError, Body, RequestBody};
use crate::http::{auth, discovery, HttpState};
use access::{Caller, Scope};
use hyper::body::Bytes;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use leasehold_engine::decide::Idempotency;
use leasehold_engine::directory::Directory;
use leasehold_engine::events::{Actor, EventQuery};
use leasehold_engine::{ConsumerId, Decision, Engine, ErrorCode, LeaseId, LicenseId, LicenseeId};
use leasehold_engine::{ConsumerPatch, NewConsumer, NewCredential};
use percent_encoding::percent_decode_str;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use shapes::{
    AssignmentIn, ConsumerIn, ConsumerPatchIn, LicenseIn, LicensePatchIn, LicenseeIn, LicenseePatchIn, ProductIn,
    ProductPatchIn, RevokeIn,
};
use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;

/// Most entries one page of a listing may hold (`?limit=`).
pub const MAX_LISTED: usize = 1000;

/// Entries in a page of a listing when `?limit=` is not given.
pub const DEFAULT_LISTED: usize = 100;

/// A request under `/admin/` with its body read.
pub struct Call {
    content_type: Option<String>,
    body: Bytes,
    query: String,
    /// The URL the server is reached at, for links in what it e-mails.
    base_url: String,
}

impl Call {
    /// The body as JSON of `T`.
    fn required<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        reply::parse_json(self.content_type.as_deref(), &self.body)
    }

    /// The body as JSON of `T`, which may be left out (then `T::default()`).
    fn optional<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        self.required()
    }
}

/// An authorized admin request's context.
pub struct Admin<'a> {
    /// The server.
    pub http: &'a HttpState,
    /// The engine, acting as the caller: the events of the request's changes name it.
    pub engine: Engine,
    /// What the caller may see and change.
    pub scope: Scope,
}

/// The caller of an admin request with `headers`: the admin token or a credential.
fn caller(state: &HttpState, headers: &hyper::HeaderMap) -> Result<(Caller, String), ApiError> {
    let refused = || ApiError::unauthorized("send Authorization: Bearer <admin token or credential token>");
    let secret = auth::bearer(headers).ok_or_else(refused)?;
    if state.admin_token.matches(secret) {
        return Ok((Caller::AdminToken, secret.to_owned()));
    }
    let credential = state.engine.credential_for_token(secret).ok_or_else(refused)?;
    Ok((Caller::Credential(credential), secret.to_owned()))
}

/// Answers one admin request: one under `/admin/`, or one of the platform's admin routes under
/// `/license-keys` ([`access::is_admin_path`]).
pub async fn handle(state: &HttpState, req: Request<RequestBody>, path: &str) -> Result<Response<Body>, ApiError> {
    let (caller, secret) = caller(state, req.headers())?;
    let client_key = idempotency::client_key(req.headers())?;
    // Each segment is decoded on its own, after the split: an id may hold an encoded '/'.
    let decoded = path
        .trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .map(|segment| percent_decode_str(segment).decode_utf8().map(|s| s.into_owned()))
        .collect::<Result<Vec<String>, _>>()
        .map_err(|_| ApiError::not_found("the path is not UTF-8 once percent-decoded"))?;
    let full: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let method = req.method().clone();
    let scope = access::authorize(&state.engine, &caller, &method, &full)?;
    let (platform, segments) = match full.split_first() {
        Some((&"admin", rest)) => (false, rest),
        _ => (true, &full[..]),
    };
    let rest = path.strip_prefix("/admin/").unwrap_or(path);
    let engine = match caller.credential() {
        Some(id) => state.engine.acting_as(Actor::credential(id)),
        None => state.engine.clone(),
    };
    let admin = Admin { http: state, engine, scope };
    let query = req.uri().query().unwrap_or("").to_owned();
    let content_type = req.headers().get(CONTENT_TYPE).map(|v| v.to_str().unwrap_or("?").to_owned());
    let base_url = discovery::base_url(state, &req)?;
    let body = reply::read_body(req, state.limits).await?;
    let call = Call { content_type, body, query, base_url };
    let (admin, call, method) = (&admin, &call, &method);
    let answer = |once| async move {
        if platform {
            license_keys::route(admin, call, segments, method, once).await
        } else {
            route(admin, call, segments, method, once).await
        }
    };
    let Some(client_key) = client_key.filter(|_| *method == Method::POST) else {
        return answer(None).await;
    };
    let request: [&[u8]; 3] = [rest.as_bytes(), call.query.as_bytes(), &call.body];
    let once = Idempotency::of(secret.as_bytes(), &client_key, 0, &request);
    let secret = match segments {
        ["license-keys"] | ["license-keys", _, "regenerate"] => Secret::Held,
        ["consumers"]
        | ["consumers", _, "api-key"]
        | ["webhooks"]
        | ["credentials"]
        | ["groups", _, "invitations"]
        | ["activation-codes"] => Secret::Held,
        _ => Secret::None,
    };
    answer_once(state, once, secret, answer(Some(&once))).await
}

/// Carries out one admin request; `once` is the idempotency of a `POST` that sent a key.
async fn route(
    state: &Admin<'_>,
    call: &Call,
    segments: &[&str],
    method: &Method,
    once: Option<&Idempotency>,
) -> Result<Response<Body>, ApiError> {
    let query = call.query.as_str();
    if !organization::allowed(segments).is_empty() {
        return organization::route(state, call, segments, method, once).await;
    }
    if !activation::allowed(segments).is_empty() {
        return activation::route(state, call, segments, method, once).await;
    }
    match (segments, method) {
        (["licensees"], &Method::POST) => create_licensee(state, call, once).await,
        (["licensees"], &Method::GET) => {
            let listing = Listing::parse(query, &[])?;
            let directory = state.engine.directory();
            let licensees = directory.licensees().filter(|l| state.scope.covers(l.id));
            Ok(listing.page(licensees, |l| l.id.to_string(), shapes::licensee))
        }
        (["licensees", id], &Method::PATCH) => {
            let id: LicenseeId = path_id("licensee", id)?;
            let body: LicenseePatchIn = call.required()?;
            let licensee = state.engine.patch_licensee(id, body.into()).await?;
            Ok(reply::json(StatusCode::OK, &shapes::licensee(&licensee)))
        }
        (["licensees", id], &Method::DELETE) => {
            state.engine.delete_licensee(path_id("licensee", id)?).await?;
            Ok(reply::empty(StatusCode::NO_CONTENT))
        }
        (["licensees", id], &Method::GET) => {
            let id: LicenseeId = path_id("licensee", id)?;
            let found = state.engine.directory().licensee(id).map(shapes::licensee);
            found.map(|v| reply::json(StatusCode::OK, &v)).ok_or_else(|| ApiError::not_found(format!("licensee {id}")))
        }
        (["consumers"], &Method::POST) => create_consumer(state, call, once).await,
        (["consumers"], &Method::GET) => {
            let listing = Listing::parse(query, &["licensee"])?;
            let licensee = listing.filter("licensee");
            let directory = state.engine.directory();
            let consumers = directory
                .consumers()
                .filter(|c| c.licensees.iter().any(|l| state.scope.covers(*l)))
                .filter(|c| licensee.is_none_or(|wanted| c.licensees.iter().any(|l| l.to_string() == wanted)));
            Ok(listing.page(consumers, |c| c.id.to_string(), shapes::consumer))
        }
        (["consumers", id, "api-key"], &Method::POST) => {
            let id: ConsumerId = path_id("consumer", id)?;
            let api_key = match once {
                Some(idempotency) => state.engine.rotate_api_key_once(idempotency, id).await?,
                None => state.engine.rotate_api_key(id).await?,
            };
            Ok(reply::json(StatusCode::OK, &json!({"api_key": api_key})))
        }
        (["consumers", id], &Method::PATCH) => {
            let id: ConsumerId = path_id("consumer", id)?;
            let patch: ConsumerPatch = call.required::<ConsumerPatchIn>()?.into();
            state.scope.check_licensees(patch.licensees.as_deref().unwrap_or_default())?;
            let consumer = state.engine.patch_consumer(id, patch).await?;
            Ok(reply::json(StatusCode::OK, &shapes::consumer(&consumer)))
        }
        (["consumers", id], &Method::DELETE) => {
            state.engine.delete_consumer(path_id("consumer", id)?).await?;
            Ok(reply::empty(StatusCode::NO_CONTENT))
        }
        (["consumers", id], &Method::GET) => {
            let id: ConsumerId = path_id("consumer", id)?;
            let found = state.engine.directory().consumer(id).map(shapes::consumer);
            found.map(|v| reply::json(StatusCode::OK, &v)).ok_or_else(|| ApiError::not_found(format!("consumer {id}")))
        }
        (["products"], &Method::POST) => create_product(state, call, once).await,
        (["products"], &Method::GET) => {
            let listing = Listing::parse(query, &[])?;
            let directory = state.engine.directory();
            Ok(listing.page(directory.products(), |p| p.name.clone(), shapes::product))
        }
        (["products", name], &Method::PATCH) => {
            let body: ProductPatchIn = call.required()?;
            let product = state.engine.patch_product(name, body.into()).await?;
            Ok(reply::json(StatusCode::OK, &shapes::product(&product)))
        }
        (["products", name], &Method::GET) => {
            let found = state.engine.directory().product_named(name).map(shapes::product);
            found
                .map(|v| reply::json(StatusCode::OK, &v))
                .ok_or_else(|| ApiError::not_found(format!("product {name:?}")))
        }
        (["licenses"], &Method::POST) => create_license(state, call, once).await,
        (["licenses"], &Method::GET) => {
            let listing = Listing::parse(query, &["licensee", "product", "status"])?;
            let (licensee, product, status) =
                (listing.filter("licensee"), listing.filter("product"), listing.filter("status"));
            let directory = state.engine.directory();
            let licenses = directory.licenses().filter(|l| {
                state.scope.covers(l.licensee)
                    && licensee.is_none_or(|wanted| l.licensee.to_string() == wanted)
                    && product.is_none_or(|wanted| &*l.product_name == wanted)
                    && status.is_none_or(|wanted| shapes::status_name(&l.status) == wanted)
            });
            Ok(listing.page(licenses, |l| l.id.to_string(), |l| shapes::license(l, None)))
        }
        (["licenses", id], &Method::GET) => get_license(state, path_id("license", id)?).await,
        (["licenses", id], &Method::PATCH) => patch_license(state, call, path_id("license", id)?).await,
        (["licenses", id], &Method::DELETE) => {
            let force = match query {
                "" | "force=false" => false,
                "force=true" => true,
                _ => return Err(ApiError::bad_request("the only parameter is force=true or force=false")),
            };
            state.engine.delete_license(path_id("license", id)?, force).await?;
            Ok(reply::empty(StatusCode::NO_CONTENT))
        }
        (["licenses", id, "machines"], &Method::GET) => {
            let listing = Listing::parse(query, &[])?;
            let machines = state.engine.machines(path_id("license", id)?).await?;
            Ok(listing.page(machines.iter(), |m| m.hw.to_string(), shapes::machine))
        }
        (["licenses", id, "machines", hw], &Method::DELETE) => {
            state.engine.free_machine(path_id("license", id)?, hw).await?;
            Ok(reply::empty(StatusCode::NO_CONTENT))
        }
        (["licenses", id, "leases"], &Method::GET) => {
            let listing = Listing::parse(query, &[])?;
            let leases = state.engine.leases(path_id("license", id)?).await?;
            Ok(listing.page(leases.iter(), |l| l.id.to_string(), shapes::lease))
        }
        (["licenses", id, "revoke"], &Method::POST) => {
            let id = path_id("license", id)?;
            let body: RevokeIn = call.optional()?;
            let reason = body.reason.unwrap_or_else(|| "revoked by an administrator".into());
            let license = state.engine.revoke(id, reason).await?;
            Ok(reply::json(StatusCode::OK, &shapes::license(&license, None)))
        }
        (["licenses", id, "deactivate"], &Method::POST) => {
            let id = path_id("license", id)?;
            let license = state.engine.deactivate(id).await?;
            Ok(reply::json(StatusCode::OK, &shapes::license(&license, None)))
        }
        (["licenses", id, "reactivate"], &Method::POST) => {
            let id = path_id("license", id)?;
            let license = state.engine.reactivate(id).await?;
            Ok(reply::json(StatusCode::OK, &shapes::license(&license, None)))
        }
        (["licenses", id, "assignments"], &Method::POST) => {
            let id = path_id("license", id)?;
            let body: AssignmentIn = call.required()?;
            state.engine.assign(id, body.consumer).await?;
            Ok(reply::json(StatusCode::CREATED, &json!({"license": id, "consumer": body.consumer})))
        }
        (["licenses", id, "assignments", consumer], &Method::DELETE) => {
            let (id, consumer) = (path_id("license", id)?, path_id::<ConsumerId>("consumer", consumer)?);
            state.engine.unassign(id, consumer).await?;
            Ok(reply::json(StatusCode::OK, &json!({"license": id, "consumer": consumer, "assigned": false})))
        }
        (["licenses", id, "offline-token"], &Method::POST) => tokens::offline_token(state, call, id, once).await,
        (["leases", id], &Method::DELETE) => force_release(state, path_id("lease", id)?).await,
        (["events"], &Method::GET) => events(state, query),
        (["credentials"], &Method::GET) => {
            let listing = Listing::parse(query, &[])?;
            let directory = state.engine.directory();
            Ok(listing.page(directory.credentials(), |c| c.id.to_string(), shapes::credential))
        }
        (["credentials"], &Method::POST) => create_credential(state, call, once).await,
        (["credentials", id], &Method::DELETE) => {
            state.engine.delete_credential(path_id("credential", id)?).await?;
            Ok(reply::empty(StatusCode::NO_CONTENT))
        }
        (["usage"], &Method::GET) => usage::report(state, query).await,
        (["webhooks", rest @ ..], _) => webhooks::route(state, call, rest, method, once).await,
        (["tokens", "audit"], &Method::POST) => tokens::audit_token(state, call).await,
        (["tokens", "regenerate"], &Method::POST) => tokens::regenerate_token(state, call).await,
        (["keys", "rotate"], &Method::POST) => tokens::rotate_key(state, call).await,
        (["cluster"], &Method::GET) => {
            let status = state.http.cluster.as_ref().map(|cluster| cluster.status()).unwrap_or_default();
            Ok(reply::json(StatusCode::OK, &status))
        }
        (known, _) if is_route(known) => Err(ApiError::method_not_allowed(allowed(known))),
        _ => Err(ApiError::not_found(format!("no admin resource at /admin/{}", segments.join("/")))),
    }
}

fn is_route(segments: &[&str]) -> bool {
    !allowed(segments).is_empty()
}

fn allowed(segments: &[&str]) -> &'static str {
    match segments {
        ["licensees" | "consumers" | "products" | "licenses" | "credentials"] => "GET or POST",
        ["credentials", _] => "DELETE",
        ["licenses" | "licensees" | "consumers", _] => "GET, PATCH or DELETE",
        ["products", _] => "GET or PATCH",
        ["licenses", _, "leases" | "machines"] | ["events"] | ["usage"] | ["cluster"] => "GET",
        ["licenses", _, "revoke" | "deactivate" | "reactivate" | "assignments" | "offline-token"]
        | ["consumers", _, "api-key"]
        | ["tokens", "audit" | "regenerate"]
        | ["keys", "rotate"] => "POST",
        ["licenses", _, "assignments" | "machines", _] | ["leases", _] => "DELETE",
        ["webhooks", rest @ ..] => webhooks::allowed(rest),
        ["activation-codes", ..] => activation::allowed(segments),
        other => organization::allowed(other),
    }
}

/// An id from the path; one that is not a UUID cannot name anything, so it is 404.
fn path_id<T: FromStr>(what: &str, text: &str) -> Result<T, ApiError> {
    text.parse().map_err(|_| ApiError::not_found(format!("{what} {text:?}")))
}

/// The `name=value` pairs of a query string, values percent-decoded (`+` is a space).
fn query_pairs(query: &str) -> impl Iterator<Item = (&str, String)> {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (name, percent_decode_str(&value.replace('+', " ")).decode_utf8_lossy().into_owned())
    })
}

/// A listing's page and filters (SPEC section 10): `?limit=N` (1 to [`MAX_LISTED`], default
/// [`DEFAULT_LISTED`]), `?cursor=C` (a `next_cursor` of an earlier page), and the filters the
/// listing knows; anything else is 400.
struct Listing {
    limit: usize,
    after: Option<String>,
    filters: Vec<(String, String)>,
}

impl Listing {
    fn parse(query: &str, filters: &[&str]) -> Result<Listing, ApiError> {
        let mut listing = Listing { limit: DEFAULT_LISTED, after: None, filters: Vec::new() };
        for (name, value) in query_pairs(query) {
            match name {
                "limit" => {
                    listing.limit = value.parse().ok().filter(|n| (1..=MAX_LISTED).contains(n)).ok_or_else(|| {
                        ApiError::bad_request(format!("limit must be a number from 1 to {MAX_LISTED}"))
                    })?;
                }
                "cursor" => listing.after = Some(value),
                other if filters.contains(&other) => listing.filters.push((other.to_owned(), value)),
                other => {
                    let known = ["limit", "cursor"].iter().chain(filters).copied().collect::<Vec<_>>().join(", ");
                    return Err(ApiError::bad_request(format!(
                        "unknown parameter {other:?} (this listing takes {known})"
                    )));
                }
            }
        }
        Ok(listing)
    }

    /// The value of filter `name`, when given.
    fn filter(&self, name: &str) -> Option<&str> {
        self.filters.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The page of `items` after the cursor, in the order of their `key`s (unique and never
    /// reused, so following `next_cursor` visits every item that was there exactly once, even
    /// while items are added), each written by `shape`.
    fn page<T>(
        &self,
        items: impl Iterator<Item = T>,
        key: impl Fn(&T) -> String,
        shape: impl Fn(T) -> Value,
    ) -> Response<Body> {
        let mut keyed: Vec<(String, T)> = items
            .map(|item| (key(&item), item))
            .filter(|(k, _)| self.after.as_ref().is_none_or(|after| k > after))
            .collect();
        if keyed.len() > self.limit {
            keyed.select_nth_unstable_by(self.limit, |a, b| a.0.cmp(&b.0));
            keyed.truncate(self.limit + 1);
        }
        keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let more = keyed.len() > self.limit;
        keyed.truncate(self.limit);
        let next_cursor = if more { keyed.last().map(|(k, _)| k.clone()) } else { None };
        let items: Vec<Value> = keyed.into_iter().map(|(_, item)| shape(item)).collect();
        reply::json(StatusCode::OK, &json!({"items": items, "next_cursor": next_cursor}))
    }
}

async fn create_licensee(
    state: &Admin<'_>,
    call: &Call,
    once: Option<&Idempotency>,
) -> Result<Response<Body>, ApiError> {
    let body: LicenseeIn = call.required()?;
    let licensee = match once {
        Some(idempotency) => state.engine.create_licensee_once(idempotency, body.into()).await?,
        None => state.engine.create_licensee(body.into()).await?,
    };
    Ok(reply::json(StatusCode::CREATED, &shapes::licensee(&licensee)))
}

async fn create_consumer(
    state: &Admin<'_>,
    call: &Call,
    once: Option<&Idempotency>,
) -> Result<Response<Body>, ApiError> {
    let new: NewConsumer = call.required::<ConsumerIn>()?.into();
    state.scope.check_licensees(&new.licensees)?;
    let (consumer, api_key) = match once {
        Some(idempotency) => state.engine.create_consumer_once(idempotency, new).await?,
        None => state.engine.create_consumer(new).await?,
    };
    let mut answer = shapes::consumer(&consumer);
    answer["api_key"] = json!(api_key);
    Ok(reply::json(StatusCode::CREATED, &answer))
}

async fn create_credential(
    state: &Admin<'_>,
    call: &Call,
    once: Option<&Idempotency>,
) -> Result<Response<Body>, ApiError> {
    let body: NewCredential = call.required()?;
    let (credential, token) = match once {
        Some(idempotency) => state.engine.create_credential_once(idempotency, body).await?,
        None => state.engine.create_credential(body).await?,
    };
    let mut answer = shapes::credential(&credential);
    answer["token"] = json!(token);
    Ok(reply::json(StatusCode::CREATED, &answer))
}

async fn create_product(
    state: &Admin<'_>,
    call: &Call,
    once: Option<&Idempotency>,
) -> Result<Response<Body>, ApiError> {
    let body: ProductIn = call.required()?;
    let product = match once {
        Some(idempotency) => state.engine.create_product_once(idempotency, body.into()).await?,
        None => state.engine.create_product(body.into()).await?,
    };
    Ok(reply::json(StatusCode::CREATED, &shapes::product(&product)))
}

async fn create_license(
    state: &Admin<'_>,
    call: &Call,
    once: Option<&Idempotency>,
) -> Result<Response<Body>, ApiError> {
    let body: LicenseIn = call.required()?;
    let new = body.into_new_license()?;
    let license = match once {
        Some(idempotency) => state.engine.create_license_once(idempotency, new).await?,
        None => state.engine.create_license(new).await?,
    };
    let usage = state.engine.usage(license.id).await.ok();
    Ok(reply::json(StatusCode::CREATED, &shapes::license(&license, usage.as_ref())))
}

async fn get_license(state: &Admin<'_>, id: LicenseId) -> Result<Response<Body>, ApiError> {
    let license = state.engine.license(id).ok_or_else(|| ApiError::not_found(format!("license {id}")))?;
    let usage = state.engine.usage(id).await?;
    // The actor's terms are the latest (a revocation lands there first).
    let license = state.engine.license(id).unwrap_or(license);
    Ok(reply::json(StatusCode::OK, &shapes::license(&license, Some(&usage))))
}

async fn patch_license(state: &Admin<'_>, call: &Call, id: LicenseId) -> Result<Response<Body>, ApiError> {
    let body: LicensePatchIn = call.required()?;
    let current = state.engine.license(id).ok_or_else(|| ApiError::not_found(format!("license {id}")))?;
    let license = state.engine.patch_license(id, body.into_patch(current.credit.dimension)?).await?;
    let usage = state.engine.usage(id).await?;
    Ok(reply::json(StatusCode::OK, &shapes::license(&license, Some(&usage))))
}

/// `GET /admin/events`: recorded events oldest first, after `after` (or `cursor`), of a `type`
/// (`prefix.*` for a family) and about a `subject`.
fn events(state: &Admin<'_>, query: &str) -> Result<Response<Body>, ApiError> {
    let listing = Listing::parse(query, &["after", "type", "subject"])?;
    let after = match listing.filter("after").or(listing.after.as_deref()) {
        None => None,
        Some(id) => {
            Some(id.parse::<u64>().map_err(|_| ApiError::bad_request("after (or cursor) must be an event id"))?)
        }
    };
    let query = EventQuery {
        after,
        event_type: listing.filter("type").map(str::to_owned),
        subject: listing.filter("subject").map(str::to_owned),
        within: match state.scope {
            Scope::Everything => None,
            Scope::Licensee(own) => Some(Arc::new(subjects_of(&state.engine.directory(), own))),
        },
        limit: listing.limit,
    };
    let page = state.engine.events(&query)?;
    let items: Vec<Value> = page.items.iter().map(shapes::event).collect();
    let next_cursor = page.next_after.map(|id| id.to_string());
    Ok(reply::json(StatusCode::OK, &json!({"items": items, "next_cursor": next_cursor})))
}

/// The ids of licensee `own`'s objects, as events name their subjects: what an orgadmin's event
/// listing holds.
fn subjects_of(directory: &Directory, own: LicenseeId) -> HashSet<String> {
    let mut ids = HashSet::from([own.to_string()]);
    ids.extend(directory.consumers().filter(|c| c.licensees.contains(&own)).map(|c| c.id.to_string()));
    ids.extend(directory.licenses_of(own).map(|l| l.id.to_string()));
    ids.extend(directory.credentials().filter(|c| c.licensee == Some(own)).map(|c| c.id.to_string()));
    ids.extend(directory.groups().filter(|g| g.licensee == own).map(|g| g.id.to_string()));
    ids.extend(directory.entitlements().filter(|e| e.licensee == own).map(|e| e.id.to_string()));
    ids
}

async fn force_release(state: &Admin<'_>, id: LeaseId) -> Result<Response<Body>, ApiError> {
    match state.engine.force_release(id).await? {
        Decision::Granted(released) => Ok(reply::json(
            StatusCode::OK,
            &json!({
                "lease_id": released.lease_id,
                "license": released.license,
                "used_qty": released.used_qty,
                "remaining_qty": released.remaining_qty,
            }),
        )),
        Decision::Denied(denial) if denial.code == ErrorCode::LeaseIdNotFound => {
            Err(ApiError::not_found(format!("lease {id} (not live)")))
        }
        Decision::Denied(denial) => Err(ApiError::conflict(denial.message.into_owned())),
    }
}
