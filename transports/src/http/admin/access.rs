//! Who may call which admin route (SPEC section 12), decided in one place before any handler
//! runs: [`ADMIN_ROUTES`] says which routes an `orgadmin` may use, the roles' rules say the rest,
//! and [`authorize`] resolves the ids a path names to the licensee they belong to.
//!
//! - `admin` (and the bootstrap admin token): every route.
//! - `reader`: every `GET` (no answer holds a secret).
//! - `orgadmin`: the routes marked for it, on its own licensee's objects only; another
//!   licensee's object is 404, as if it did not exist, and any other route is 403.

use crate::http::reply::ApiError;
use hyper::Method;
use leasehold_engine::directory::Directory;
use leasehold_engine::model::{Credential, Role};
use leasehold_engine::{ConsumerId, CredentialId, Engine, EntitlementId, GroupId, LeaseId, LicenseId, LicenseeId};

/// An admin route: its method, its path as in the OpenAPI document, and whether an `orgadmin`
/// may use it (on its own licensee's objects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminRoute {
    /// The HTTP method.
    pub method: &'static str,
    /// The path template, `{name}` for an id.
    pub path: &'static str,
    /// Whether an `orgadmin` may call it for its licensee.
    pub orgadmin: bool,
}

const fn route(method: &'static str, path: &'static str, orgadmin: bool) -> AdminRoute {
    AdminRoute { method, path, orgadmin }
}

/// Every admin route. `tests/http_roles.rs` calls each with each role, so a route added here is
/// checked for every role; `tests/http_openapi.rs` checks that the router's list has the same.
pub const ADMIN_ROUTES: &[AdminRoute] = &[
    route("GET", "/admin/licensees", true),
    route("POST", "/admin/licensees", false),
    route("GET", "/admin/licensees/{id}", true),
    route("PATCH", "/admin/licensees/{id}", false),
    route("DELETE", "/admin/licensees/{id}", false),
    route("GET", "/admin/consumers", true),
    route("POST", "/admin/consumers", true),
    route("GET", "/admin/consumers/{id}", true),
    route("PATCH", "/admin/consumers/{id}", true),
    route("DELETE", "/admin/consumers/{id}", true),
    route("POST", "/admin/consumers/{id}/api-key", true),
    route("GET", "/admin/products", false),
    route("POST", "/admin/products", false),
    route("GET", "/admin/products/{name}", false),
    route("PATCH", "/admin/products/{name}", false),
    route("GET", "/admin/licenses", true),
    route("POST", "/admin/licenses", false),
    route("GET", "/admin/licenses/{id}", true),
    route("PATCH", "/admin/licenses/{id}", false),
    route("DELETE", "/admin/licenses/{id}", false),
    route("GET", "/admin/licenses/{id}/leases", true),
    route("GET", "/admin/licenses/{id}/machines", true),
    route("DELETE", "/admin/licenses/{id}/machines/{hw}", true),
    route("POST", "/admin/licenses/{id}/revoke", false),
    route("POST", "/admin/licenses/{id}/deactivate", false),
    route("POST", "/admin/licenses/{id}/reactivate", false),
    route("POST", "/admin/licenses/{id}/assignments", true),
    route("DELETE", "/admin/licenses/{id}/assignments/{consumer}", true),
    route("POST", "/admin/licenses/{id}/offline-token", false),
    route("DELETE", "/admin/leases/{lease_id}", true),
    route("POST", "/admin/tokens/audit", false),
    route("POST", "/admin/tokens/regenerate", false),
    route("POST", "/admin/keys/rotate", false),
    route("GET", "/admin/cluster", false),
    route("GET", "/admin/events", true),
    route("GET", "/admin/usage", true),
    route("GET", "/admin/webhooks", false),
    route("POST", "/admin/webhooks", false),
    route("GET", "/admin/webhooks/{id}", false),
    route("PATCH", "/admin/webhooks/{id}", false),
    route("DELETE", "/admin/webhooks/{id}", false),
    route("GET", "/admin/webhooks/{id}/deliveries", false),
    route("POST", "/admin/webhooks/{id}/deliveries/{delivery}/retry", false),
    route("GET", "/admin/licensees/{id}/groups", true),
    route("POST", "/admin/licensees/{id}/groups", true),
    route("GET", "/admin/groups/{id}", true),
    route("DELETE", "/admin/groups/{id}", true),
    route("POST", "/admin/groups/{id}/members", true),
    route("DELETE", "/admin/groups/{id}/members/{consumer}", true),
    route("POST", "/admin/groups/{id}/invitations", true),
    route("GET", "/admin/licensees/{id}/entitlements", true),
    route("POST", "/admin/licensees/{id}/entitlements", true),
    route("GET", "/admin/entitlements/{id}", true),
    route("PATCH", "/admin/entitlements/{id}", true),
    route("DELETE", "/admin/entitlements/{id}", true),
    route("POST", "/admin/entitlements/{id}/licenses", true),
    route("DELETE", "/admin/entitlements/{id}/licenses/{license}", true),
    route("GET", "/admin/credentials", false),
    route("POST", "/admin/credentials", false),
    route("DELETE", "/admin/credentials/{id}", false),
    route("GET", "/admin/activation-codes", false),
    route("POST", "/admin/activation-codes", false),
    route("GET", "/admin/activation-codes/{batch}", false),
    route("POST", "/license-keys", false),
    route("POST", "/license-keys/{id}/audit", false),
    route("POST", "/license-keys/{id}/regenerate", false),
    route("POST", "/license-keys/{id}/revoke", false),
];

/// Whether a request for `path` (or a route template) is an admin request: one under `/admin/`,
/// or one of the platform's admin routes under `/license-keys`, whose other paths
/// ([`crate::http::platform::PATHS`]) are the applications'.
pub fn is_admin_path(path: &str) -> bool {
    let platform = path == "/license-keys" || path.starts_with("/license-keys/");
    path.starts_with("/admin/") || (platform && !crate::http::platform::PATHS.contains(&path))
}

/// Who sent an admin request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The bootstrap admin token.
    AdminToken,
    /// A credential of the admin API.
    Credential(Credential),
}

impl Caller {
    /// Its role, and the licensee an orgadmin acts for.
    fn role(&self) -> (Role, Option<LicenseeId>) {
        match self {
            Caller::AdminToken => (Role::Admin, None),
            Caller::Credential(c) => (c.role, c.licensee),
        }
    }

    /// The credential's id, for the events the request causes.
    pub fn credential(&self) -> Option<CredentialId> {
        match self {
            Caller::AdminToken => None,
            Caller::Credential(c) => Some(c.id),
        }
    }
}

/// What a request may see and change once authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every licensee's objects.
    Everything,
    /// Licensee `0`'s objects only: listings hold only those, and what a body names must be one.
    Licensee(LicenseeId),
}

impl Scope {
    /// Whether a body or query may name `licensee`.
    pub fn covers(self, licensee: LicenseeId) -> bool {
        match self {
            Scope::Everything => true,
            Scope::Licensee(own) => own == licensee,
        }
    }

    /// Refuses, as 404 (another licensee's objects do not exist for this caller), any of
    /// `licensees` this scope does not cover.
    pub fn check_licensees(self, licensees: &[LicenseeId]) -> Result<(), ApiError> {
        match licensees.iter().find(|l| !self.covers(**l)) {
            Some(other) => Err(ApiError::not_found(format!("licensee {other}"))),
            None => Ok(()),
        }
    }
}

/// The route of `method` and `segments` (the path, split after its leading `/`), if any.
pub fn find_route(method: &Method, segments: &[&str]) -> Option<&'static AdminRoute> {
    let method = if method == Method::HEAD { "GET" } else { method.as_str() };
    ADMIN_ROUTES.iter().find(|r| r.method == method && template_matches(r.path, segments))
}

fn template_matches(template: &str, segments: &[&str]) -> bool {
    let parts = template_parts(template);
    parts.len() == segments.len()
        && parts.iter().zip(segments).all(|(part, segment)| part.starts_with('{') || part == segment)
}

fn template_parts(template: &str) -> Vec<&str> {
    template.trim_start_matches('/').split('/').collect()
}

/// Decides whether `caller` may make this request, and within which [`Scope`]. A path that is
/// no route is let through (the router answers 404 or 405, which says nothing about objects).
pub fn authorize(engine: &Engine, caller: &Caller, method: &Method, segments: &[&str]) -> Result<Scope, ApiError> {
    let Some(route) = find_route(method, segments) else {
        return match caller.role().0 {
            Role::Admin => Ok(Scope::Everything),
            // Nothing to reach, but no reason to tell a narrower role more than "not yours".
            Role::Reader | Role::OrgAdmin => {
                Err(ApiError::not_found(format!("no admin resource at /{} for {method}", segments.join("/"))))
            }
        };
    };
    match caller.role() {
        (Role::Admin, _) => Ok(Scope::Everything),
        (Role::Reader, _) if route.method == "GET" => Ok(Scope::Everything),
        (Role::OrgAdmin, Some(own)) if route.orgadmin => {
            let directory = engine.directory();
            let parts = template_parts(route.path);
            let changes = route.method != "GET";
            for (at, (part, id)) in parts.iter().zip(segments).enumerate().skip(1) {
                if part.starts_with('{') {
                    check_owned(engine, &directory, own, parts[at - 1], id, changes)?;
                }
            }
            Ok(Scope::Licensee(own))
        }
        (role, _) => {
            Err(ApiError::forbidden(format!("a {} credential may not {} {}", role.as_str(), route.method, route.path)))
        }
    }
}

/// Refuses the id `text` that follows `collection` in a path unless it names licensee `own`'s
/// object: 404 for an unknown one or another licensee's, 403 for changing a consumer that other
/// licensees share.
fn check_owned(
    engine: &Engine,
    directory: &Directory,
    own: LicenseeId,
    collection: &str,
    text: &str,
    changes: bool,
) -> Result<(), ApiError> {
    let (what, owned) = match collection {
        "licensees" => ("licensee", text.parse::<LicenseeId>().is_ok_and(|id| id == own)),
        "groups" => (
            "group",
            text.parse::<GroupId>().ok().and_then(|id| directory.group(id)).is_some_and(|g| g.licensee == own),
        ),
        "entitlements" => (
            "entitlement",
            text.parse::<EntitlementId>()
                .ok()
                .and_then(|id| directory.entitlement(id))
                .is_some_and(|e| e.licensee == own),
        ),
        "consumers" | "assignments" | "members" => {
            let consumer = text.parse::<ConsumerId>().ok().and_then(|id| directory.consumer(id));
            let consumer = consumer.filter(|c| c.licensees.contains(&own));
            if let Some(shared) = consumer.filter(|c| changes && collection == "consumers" && c.licensees.len() > 1) {
                return Err(ApiError::forbidden(format!(
                    "consumer {} also belongs to other licensees; only an admin may change it",
                    shared.id
                )));
            }
            ("consumer", consumer.is_some())
        }
        "licenses" => (
            "license",
            text.parse::<LicenseId>().ok().and_then(|id| directory.license(id)).is_some_and(|l| l.licensee == own),
        ),
        "leases" => {
            // A lease of a partition another node owns: that node answers (forwarded).
            let license = match text.parse::<LeaseId>() {
                Ok(id) => engine.license_of_lease(id).map_err(ApiError::from)?,
                Err(_) => None,
            };
            ("lease", license.and_then(|id| directory.license(id)).is_some_and(|l| l.licensee == own))
        }
        // A machine is named within its license, checked just before.
        "machines" => ("machine", true),
        // An id of a kind not listed here is never an orgadmin's.
        _ => ("object", false),
    };
    if owned {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("{what} {text:?}")))
    }
}
