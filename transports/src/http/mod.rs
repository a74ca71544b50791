//! The HTTP transport: a hyper 1 HTTP/1.1 server with the Enterprise `/authz/` API, the admin
//! API, the signing keys' JWKS, the discovery document, `/openapi.json`, `/metrics` and
//! `/healthz`.
//!
//! [`serve`] owns sockets and connections (limits, timeouts, graceful shutdown); [`routes`]
//! picks a handler by path; [`authz`], [`scale`] (the Scale `/licensing/actions/` API) and
//! [`admin`] turn requests into engine calls; [`reply`] writes answers and errors; [`auth`]
//! reads the bearer credentials.

pub mod activation_codes;
pub mod admin;
pub mod auth;
pub mod authz;
pub mod cors;
pub mod discovery;
pub mod forward;
pub mod idempotency;
pub mod invitations;
pub mod metrics;
pub mod openapi;
pub mod platform;
pub mod reply;
pub mod routes;
pub mod scale;
mod server;
pub mod signup;

pub use admin::tokens::{KeyRotation, RotationError};
pub use auth::AdminToken;
pub use metrics::ServerMetrics;
pub use reply::{ApiError, BodyLimits};
pub use server::{serve, HttpConfig};

use crate::client_address::TrustedProxies;
use crate::identity::Identities;
use crate::mail::Mailer;
use crate::webhooks::Webhooks;
use leasehold_engine::signer::TokenSigner;
use leasehold_engine::tokens::{KeyRing, TokenIssuer};
use leasehold_engine::Engine;
use signup::SignUpLimits;
use std::sync::Arc;

/// What every request handler needs.
pub struct HttpState {
    /// The engine that decides.
    pub engine: Engine,
    /// Signs the tokens of every answer (see [`HttpState::tokens`]).
    pub signer: Arc<dyn TokenSigner>,
    /// The `iss` of tokens.
    pub issuer: String,
    /// The administrator's token.
    pub admin_token: AdminToken,
    /// Limits on request bodies.
    pub limits: BodyLimits,
    /// The signing keys whose public halves are served as a JWKS (`None`: tokens are not
    /// signed with published keys, and the JWKS paths answer 404).
    pub keys: Option<Arc<KeyRing>>,
    /// The URL clients reach the server at, for the discovery document (`None`: `http://` and
    /// each request's `Host`).
    pub public_url: Option<String>,
    /// Whether clients reach the server over TLS: the scheme of the URLs made from a request's
    /// `Host` when there is no public URL.
    pub https: bool,
    /// The proxies whose forwarding headers name the client ([`crate::client_address`]).
    pub trusted_proxies: TrustedProxies,
    /// Request counters and the sources `/metrics` reads.
    pub metrics: ServerMetrics,
    /// Rotates the signing key durably (`POST /admin/keys/rotate`; `None`: not possible here).
    pub key_rotation: Option<KeyRotation>,
    /// Delivers the webhooks' events (`None`: `/admin/webhooks` answers 404).
    pub webhooks: Option<Arc<Webhooks>>,
    /// The identity providers whose tokens sign consumers in (`None`: API keys only).
    pub identities: Option<Arc<Identities>>,
    /// Sends e-mail (`None`: no SMTP server is configured, and nothing is e-mailed).
    pub mailer: Option<Arc<Mailer>>,
    /// The limits on sign-ups and logins.
    pub sign_up_limits: SignUpLimits,
    /// On a node of a cluster: sends a request on to the node that owns what it is about
    /// (`None`: a node alone answers everything itself).
    pub forwarder: Option<forward::Forwarder>,
    /// On a node of a cluster: the cluster as this node sees it (`GET /admin/cluster`, the
    /// partitions' gauges of `/metrics`).
    pub cluster: Option<std::sync::Arc<dyn forward::Peers>>,
}

impl HttpState {
    /// Where every token this server answers with is made.
    pub fn tokens(&self) -> TokenIssuer<'_> {
        TokenIssuer::new(&self.engine, &*self.signer, &self.issuer)
    }
}
