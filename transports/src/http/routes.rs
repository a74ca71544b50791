//! Which handler answers a request, and the one log line per request.
//!
//! Every failure of a handler is an [`ApiError`] turned into its JSON answer here, so no
//! request goes unanswered and none can take the connection down.

use crate::http::admin::access::is_admin_path;
use crate::http::authz::{self, Format};
use crate::http::forward::{self, Forwarder, RequestHead};
use crate::http::metrics::RouteFamily;
use crate::http::reply::{self, ApiError, Body, RequestBody};
use crate::http::{
    activation_codes, admin, cors, discovery, invitations, metrics, openapi, platform, scale, signup, HttpState,
};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::time::Instant;

/// Answers `req` from `peer`.
pub async fn handle(state: &HttpState, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut response = match &state.forwarder {
        None => route(state, req.map(RequestBody::Arriving), peer).await.unwrap_or_else(ApiError::into_response),
        Some(forwarder) => route_or_forward(state, forwarder, req, peer).await,
    };
    if cors::is_client_facing(&path) {
        cors::allow_any_origin(response.headers_mut());
    }
    let family = RouteFamily::of_path(&path);
    state.metrics.record_request(family, response.status());
    let status = response.status().as_u16();
    let route = family.as_str();
    let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    if response.status().is_server_error() {
        tracing::warn!(%peer, %method, route, path, status, elapsed_us, "request failed");
    } else {
        tracing::debug!(%peer, %method, route, path, status, elapsed_us, "request");
    }
    response
}

/// On a node of a cluster: reads the body first, answers, and when the answer is `notOwner`
/// naming the owner, sends the request on to it ([`crate::http::forward`]).
async fn route_or_forward(
    state: &HttpState,
    forwarder: &Forwarder,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let (parts, body) = req.map(RequestBody::Arriving).into_parts();
    let head = RequestHead::of(&parts);
    let body = match reply::read_body(Request::from_parts(parts, body), state.limits).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    forwarder.arrived(&head).await;
    let again = head.rebuild(RequestBody::Read(Full::new(body.clone())));
    let mut response = route(state, again, peer).await.unwrap_or_else(ApiError::into_response);
    if head.forwarded() {
        forwarder.answered(&mut response);
        return response;
    }
    let owner = response.headers().get(forward::OWNER).and_then(|o| o.to_str().ok()).map(str::to_owned);
    match owner {
        Some(owner) => forwarder.forward(&owner, &head, body).await.unwrap_or(response),
        None => response,
    }
}

async fn route(state: &HttpState, req: Request<RequestBody>, peer: SocketAddr) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_owned();
    if req.method() == Method::OPTIONS && cors::is_client_facing(&path) {
        return Ok(cors::preflight(req.headers()));
    }
    // Behind a trusted proxy, the client is the address its forwarding headers name.
    let client = state.trusted_proxies.client_of(peer.ip(), req.headers());
    if path == "/healthz" {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Err(ApiError::method_not_allowed("GET"));
        }
        // Ready means able to grant: a node whose journal cannot write answers 503, so that a
        // supervisor or load balancer sends clients elsewhere.
        return Ok(match state.engine.storage() {
            Ok(()) => reply::json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
            Err(e) => reply::json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({"status": "storageUnavailable", "ready": false, "reason": e.to_string()}),
            ),
        });
    }
    if path == "/.well-known/jwks.json" || path == "/licensing-signing-keys/.well-known/jwks.json" {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Err(ApiError::method_not_allowed("GET"));
        }
        let keys = state.keys.as_ref().ok_or_else(|| ApiError::not_found("this server publishes no signing keys"))?;
        let mut response = reply::json(StatusCode::OK, &keys.jwks(state.engine.now()));
        cors::cache_key_document(response.headers_mut());
        return Ok(response);
    }
    if let Some(format) = Format::of_path(&path) {
        return authz::handle(state, req, format, client).await;
    }
    match path.as_str() {
        "/.well-known/license-configuration" => return discovery::license_configuration_document(state, &req),
        "/openapi.json" => return openapi::handle(&req),
        "/metrics" => return metrics::handle(state, &req),
        activation_codes::PATH => return activation_codes::handle(state, req).await,
        known if signup::PATHS.contains(&known) => {
            let known = known.to_owned();
            return signup::handle(state, req, &known, client).await;
        }
        known if platform::PATHS.contains(&known) => {
            let known = known.to_owned();
            return platform::handle(state, req, &known, client).await;
        }
        _ => {}
    }
    if let Some(rest) = path.strip_prefix(scale::PREFIX) {
        return scale::handle(state, req, rest, client).await;
    }
    if let Some(rest) = path.strip_prefix(invitations::PREFIX) {
        let rest = rest.to_owned();
        return invitations::handle(state, req, &rest).await;
    }
    if is_admin_path(&path) {
        return admin::handle(state, req, &path).await;
    }
    Err(ApiError::not_found(format!("nothing at {path}; the API is described at /openapi.json")))
}

/// Every operation the router answers, as `(method, OpenAPI path template)`. `HEAD` is answered
/// wherever `GET` is and not listed. `tests/http_openapi.rs` checks that `/openapi.json`
/// documents exactly these and that a live server answers each of them: a route added here or
/// in a handler must be added to the other and to the document.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/authz/"),
    ("POST", "/authz/"),
    ("GET", "/authz"),
    ("POST", "/authz"),
    ("GET", "/authz/.jwt"),
    ("POST", "/authz/.jwt"),
    ("GET", "/authz/.json"),
    ("POST", "/authz/.json"),
    ("GET", "/authz/.txt"),
    ("POST", "/authz/.txt"),
    ("POST", "/licensing/actions/checkout"),
    ("POST", "/licensing/actions/checkout/{licenseKey}"),
    ("POST", "/licensing/actions/heartbeat"),
    ("POST", "/licensing/actions/heartbeat/{licenseKey}"),
    ("POST", "/licensing/actions/release"),
    ("POST", "/licensing/actions/release/{licenseKey}"),
    ("POST", "/licensing/actions/start-metered-use"),
    ("POST", "/licensing/actions/start-metered-use/{licenseKey}"),
    ("POST", "/licensing/actions/heartbeat-metered-use"),
    ("POST", "/licensing/actions/heartbeat-metered-use/{licenseKey}"),
    ("POST", "/licensing/actions/end-metered-use"),
    ("POST", "/licensing/actions/end-metered-use/{licenseKey}"),
    ("GET", "/licensing/actions/describe-license-consumer-licensees"),
    ("GET", "/licensing/actions/describe-license-consumer-licenses"),
    ("GET", "/licensing/actions/describe-license-consumer-client-bindings"),
    ("GET", "/licensing/actions/describe-license-client-bindings"),
    ("GET", "/licensing/actions/find-license-client-binding"),
    ("GET", "/licensing/actions/describe-as-feature-flags"),
    ("GET", "/licensing/actions/describe-as-feature-flags-jwt"),
    ("GET", "/licensing/actions/describe-license-key"),
    ("GET", "/licensing/actions/describe-license-key-client-bindings"),
    ("GET", "/admin/licensees"),
    ("POST", "/admin/licensees"),
    ("GET", "/admin/licensees/{id}"),
    ("PATCH", "/admin/licensees/{id}"),
    ("DELETE", "/admin/licensees/{id}"),
    ("GET", "/admin/consumers"),
    ("POST", "/admin/consumers"),
    ("GET", "/admin/consumers/{id}"),
    ("PATCH", "/admin/consumers/{id}"),
    ("DELETE", "/admin/consumers/{id}"),
    ("POST", "/admin/consumers/{id}/api-key"),
    ("GET", "/admin/products"),
    ("POST", "/admin/products"),
    ("GET", "/admin/products/{name}"),
    ("PATCH", "/admin/products/{name}"),
    ("GET", "/admin/licenses"),
    ("POST", "/admin/licenses"),
    ("GET", "/admin/licenses/{id}"),
    ("PATCH", "/admin/licenses/{id}"),
    ("DELETE", "/admin/licenses/{id}"),
    ("GET", "/admin/licenses/{id}/leases"),
    ("GET", "/admin/licenses/{id}/machines"),
    ("DELETE", "/admin/licenses/{id}/machines/{hw}"),
    ("POST", "/admin/licenses/{id}/revoke"),
    ("POST", "/admin/licenses/{id}/deactivate"),
    ("POST", "/admin/licenses/{id}/reactivate"),
    ("POST", "/admin/licenses/{id}/assignments"),
    ("DELETE", "/admin/licenses/{id}/assignments/{consumer}"),
    ("POST", "/admin/licenses/{id}/offline-token"),
    ("DELETE", "/admin/leases/{lease_id}"),
    ("POST", "/admin/tokens/audit"),
    ("POST", "/admin/tokens/regenerate"),
    ("POST", "/admin/keys/rotate"),
    ("GET", "/admin/cluster"),
    ("GET", "/admin/events"),
    ("GET", "/admin/usage"),
    ("GET", "/admin/licensees/{id}/groups"),
    ("POST", "/admin/licensees/{id}/groups"),
    ("GET", "/admin/groups/{id}"),
    ("DELETE", "/admin/groups/{id}"),
    ("POST", "/admin/groups/{id}/members"),
    ("DELETE", "/admin/groups/{id}/members/{consumer}"),
    ("POST", "/admin/groups/{id}/invitations"),
    ("POST", "/invitations/{token}/accept"),
    ("POST", "/invitations/{token}/decline"),
    ("GET", "/admin/activation-codes"),
    ("POST", "/admin/activation-codes"),
    ("GET", "/admin/activation-codes/{batch}"),
    ("POST", "/activation-codes/redeem"),
    ("POST", "/register"),
    ("POST", "/set-password"),
    ("POST", "/login"),
    ("POST", "/user/claim-license"),
    ("POST", "/license-keys"),
    ("POST", "/license-keys/validate"),
    ("POST", "/license-keys/heartbeat"),
    ("POST", "/license-keys/{id}/audit"),
    ("POST", "/license-keys/{id}/regenerate"),
    ("POST", "/license-keys/{id}/revoke"),
    ("POST", "/license-activations/activate"),
    ("POST", "/license-activations/deactivate"),
    ("GET", "/admin/licensees/{id}/entitlements"),
    ("POST", "/admin/licensees/{id}/entitlements"),
    ("GET", "/admin/entitlements/{id}"),
    ("PATCH", "/admin/entitlements/{id}"),
    ("DELETE", "/admin/entitlements/{id}"),
    ("POST", "/admin/entitlements/{id}/licenses"),
    ("DELETE", "/admin/entitlements/{id}/licenses/{license}"),
    ("GET", "/admin/webhooks"),
    ("POST", "/admin/webhooks"),
    ("GET", "/admin/webhooks/{id}"),
    ("PATCH", "/admin/webhooks/{id}"),
    ("DELETE", "/admin/webhooks/{id}"),
    ("GET", "/admin/webhooks/{id}/deliveries"),
    ("POST", "/admin/webhooks/{id}/deliveries/{delivery}/retry"),
    ("GET", "/admin/credentials"),
    ("POST", "/admin/credentials"),
    ("DELETE", "/admin/credentials/{id}"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/licensing-signing-keys/.well-known/jwks.json"),
    ("GET", "/.well-known/license-configuration"),
    ("GET", "/openapi.json"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
];
