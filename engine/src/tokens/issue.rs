//! The one place a decision becomes what a client receives: the claims of the dialect the client
//! speaks, a `jti` for tokens that name no lease, signing through the [`TokenSigner`], and a JWE
//! when the client gave its public key.
//!
//! Every transport answers through a [`TokenIssuer`]: `/authz/` (Enterprise), the Scale actions
//! and reads, the TCP operations (either dialect), and the admin API's offline and regenerated
//! tokens. The engine decides and journals; it never signs.
//!
//! Signing starts when [`TokenIssuer::issue`] or [`TokenIssuer::sign`] is called, not when the
//! future is awaited, so a caller with several tokens to answer hands them all over before
//! awaiting any and the signer pool signs them as one batch.

use crate::answer::Grant;
use crate::decide::{Decision, Denial};
use crate::engine::Engine;
use crate::ids::LeaseId;
use crate::tokens::claims::{self, Claims};
use crate::tokens::jwe::ClientPublicKey;
use crate::tokens::signer::{SignFuture, TokenSigner};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The claim sets a client library reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Dialect {
    /// The Enterprise License Consumption API's (`/authz/`): the item as a claim set to `true`,
    /// `jti` the lease, `lic` the license.
    #[default]
    Enterprise,
    /// The Scale License Checkout API's (`/licensing/actions/`): `status`, `leaseId`,
    /// `licenseId`, `productName`, `qty`, ...
    Scale,
}

/// What a decision was about, which a denial has to name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    /// A consume or check of this item (a product or feature name).
    Item(&'a str),
    /// A renewal, which names only a lease: a Scale heartbeat denial names no product, and an
    /// Enterprise denial, being about an item, has no token.
    Renewal,
}

/// Turns decisions into tokens for one server: the `iss` of its tokens, its signer, and the
/// engine whose clock dates them and whose id source draws their `jti`s.
#[derive(Clone, Copy)]
pub struct TokenIssuer<'a> {
    engine: &'a Engine,
    signer: &'a dyn TokenSigner,
    issuer: &'a str,
}

impl<'a> TokenIssuer<'a> {
    /// Tokens dated by `engine`, signed by `signer`, with `issuer` as their `iss`.
    pub fn new(engine: &'a Engine, signer: &'a dyn TokenSigner, issuer: &'a str) -> Self {
        TokenIssuer { engine, signer, issuer }
    }

    /// The `iss` of the tokens.
    pub fn issuer(&self) -> &'a str {
        self.issuer
    }

    /// A fresh `jti` for a token that names no lease, from the engine's id source (seeded in
    /// tests, so their tokens are reproducible).
    pub fn fresh_jti(&self) -> String {
        self.engine.fresh_id().to_string()
    }

    /// The claims of `decision` on `subject` in `dialect`; `None` for an Enterprise denial of a
    /// renewal, which has no token.
    pub fn claims(&self, dialect: Dialect, subject: Subject<'_>, decision: &Decision<Grant>) -> Option<Claims> {
        let now = self.engine.now();
        Some(match (decision, dialect, subject) {
            (Decision::Granted(grant), Dialect::Enterprise, _) => claims::enterprise_grant(grant, self.issuer),
            (Decision::Granted(grant), Dialect::Scale, _) => {
                let mut claims = claims::scale_grant(grant, self.issuer, now);
                if let Some(consumer) = self.engine.directory().consumer(grant.lease.consumer) {
                    claims::add_consumer_claims(&mut claims, consumer);
                }
                claims
            }
            (Decision::Denied(denial), Dialect::Enterprise, Subject::Item(item)) => {
                claims::enterprise_denial(item, denial, self.issuer, now)
            }
            (Decision::Denied(_), Dialect::Enterprise, Subject::Renewal) => return None,
            (Decision::Denied(denial), Dialect::Scale, Subject::Item(item)) => {
                claims::scale_denial(item, denial, self.issuer, now, &self.fresh_jti())
            }
            (Decision::Denied(denial), Dialect::Scale, Subject::Renewal) => {
                claims::scale_heartbeat_denial(denial, self.issuer, now, &self.fresh_jti())
            }
        })
    }

    /// The claims a denial of `item` in `dialect` has when the token it answers for already has
    /// a `jti` (an audit's comparison, a regenerated token).
    pub fn denial_claims(&self, dialect: Dialect, item: &str, denial: &Denial, jti: &str) -> Claims {
        let now = self.engine.now();
        match dialect {
            Dialect::Enterprise => claims::enterprise_denial(item, denial, self.issuer, now),
            Dialect::Scale => claims::scale_denial(item, denial, self.issuer, now, jti),
        }
    }

    /// The signed token for `decision` on `subject` in `dialect`, encrypted to `encrypt_to` when
    /// given; `None` when the decision has no token (see [`TokenIssuer::claims`]).
    pub fn issue(
        &self,
        dialect: Dialect,
        subject: Subject<'_>,
        decision: &Decision<Grant>,
        encrypt_to: Option<ClientPublicKey>,
    ) -> Option<SignFuture> {
        self.claims(dialect, subject, decision).map(|claims| self.sign(claims, encrypt_to))
    }

    /// Signs `claims` (built by one of this issuer's methods or a [`claims`] builder), encrypted
    /// to `encrypt_to` when given.
    pub fn sign(&self, claims: Claims, encrypt_to: Option<ClientPublicKey>) -> SignFuture {
        self.signer.sign_for(claims, encrypt_to)
    }

    /// The claims of an Enterprise release answer: each lease id with whether it was released.
    pub fn released(&self, released: &[(LeaseId, bool)]) -> Claims {
        let mut object = Claims::new();
        for (lease, ok) in released {
            object.insert(lease.to_string(), Value::Bool(*ok));
        }
        let now = self.engine.now();
        object.insert("iss".into(), json!(self.issuer));
        object.insert("iat".into(), json!(now.as_secs()));
        object.insert("exp".into(), json!(now.plus_secs(claims::DENIAL_LIFETIME_S).as_secs()));
        object
    }

    /// `extra` claims as a token of their own, valid for `lifetime_s` from now with a fresh
    /// `jti` and the Scale dialect's `nbf` (the feature flags of a licensee).
    pub fn scale_document(&self, extra: Claims, lifetime_s: u64) -> Claims {
        let now = self.engine.now();
        let mut document = Claims::new();
        document.insert("iss".into(), json!(self.issuer));
        document.insert("iat".into(), json!(now.as_secs()));
        document.insert("nbf".into(), json!(now.as_secs().saturating_sub(claims::NOT_BEFORE_SKEW_S)));
        document.insert("exp".into(), json!(now.plus_secs(lifetime_s).as_secs()));
        document.insert("jti".into(), json!(self.fresh_jti()));
        document.extend(extra);
        document
    }
}
