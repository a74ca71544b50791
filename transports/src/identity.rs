//! Consumers signed in by an OpenID Connect provider (SPEC section 13): a JWT sent as
//! `Authorization: Bearer <JWT>` (or `IdToken <JWT>`, as the official SDK's ID-token
//! authorization sends it), signed by an issuer the configuration trusts, for its audience, and in
//! force, names the consumer `(iss, sub)`.
//!
//! Each issuer's keys come from the JWKS its discovery document names, fetched the first time a
//! token of it arrives and again when a token names a key not seen yet, at most once per
//! [`IdentityConfig::jwks_min_refresh`] (a flood of tokens with made-up `kid`s costs the provider
//! one request a minute). A verified token is remembered until it expires, so a client that
//! sends the same token with every request pays for its signature once.
//!
//! A confidential application (`Authorization: ScaleJwt <JWT>`, the official SDK's Scale JWT
//! authorization) signs its own tokens with a key pair whose public half the configuration
//! holds; its token acts for the consumer its `lcid` names, or the one connected to its `sub`
//! at the application's identity provider.

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{DecodingKey, Validation};
use leasehold_engine::ids::sha256;
use leasehold_engine::model::ConsumerKind;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest JWT read; longer ones are refused unread.
pub const MAX_JWT_BYTES: usize = 8 * 1024;

/// Seconds of clock difference tolerated on `exp` and `nbf`.
const LEEWAY_S: u64 = 30;

/// Most of a discovery document or key set read.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// How long a provider has to answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Verified tokens remembered at most; past that, the expired ones are dropped, then all.
const MAX_REMEMBERED: usize = 100_000;

/// An issuer whose tokens name consumers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuer {
    /// Its `iss`, and where its discovery document is (`<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    /// The `aud` its tokens must carry.
    pub audience: String,
    /// The claim whose value is the `external_id` of the licensee a new consumer joins; without
    /// one (or without a licensee of that id) a new consumer gets a personal licensee.
    #[serde(default)]
    pub licensee_claim: Option<String>,
    /// What its consumers are.
    #[serde(default = "user")]
    pub kind: ConsumerKind,
}

fn user() -> ConsumerKind {
    ConsumerKind::User
}

/// A confidential application that signs its own JWTs (the Scale API's `Authorization: ScaleJwt
/// <JWT>`, as the official SDK's `ScaleJwtAuth` sends it) with a key pair whose public half is
/// registered here; it acts for the consumers its tokens name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedApplication {
    /// The `kid` its tokens name.
    pub key_id: String,
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// Its public key (RSA, PEM), which checks its RS256 signatures.
    pub public_key_pem: String,
    /// The identity provider whose subjects its tokens' `sub` names: a token without `lcid` acts
    /// for the consumer connected to `(identity_issuer, sub)`.
    pub identity_issuer: Option<String>,
}

/// Whom a confidential application's token acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActingFor {
    /// The consumer its `lcid` claim names.
    Consumer(uuid::Uuid),
    /// The consumer connected to this account.
    Identity {
        /// The identity provider.
        issuer: String,
        /// The account there.
        subject: String,
    },
}

/// The identity providers trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// The issuers.
    pub issuers: Vec<TrustedIssuer>,
    /// The confidential applications.
    pub applications: Vec<TrustedApplication>,
    /// The least time between two fetches of one issuer's keys.
    pub jwks_min_refresh: Duration,
    /// Certificates (PEM) trusted for `https://` issuers besides the web's roots: a private CA.
    pub extra_roots_pem: Option<String>,
}

/// Who a verified token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The issuer.
    pub issuer: String,
    /// The subject, unique within the issuer.
    pub subject: String,
    /// The `email` claim, when there is one.
    pub email: Option<String>,
    /// The value of the issuer's `licensee_claim`, when it has one.
    pub licensee_ref: Option<String>,
    /// What the issuer's consumers are.
    pub kind: ConsumerKind,
    /// When the token expires (seconds since the epoch).
    pub expires_at: u64,
}

/// Why a token does not sign anyone in; each is 401 with its own code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Not a JWT, unsigned (`alg: none`), or without the claims a sign-in needs.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// Its `iss` is no trusted issuer.
    #[error("the issuer {0:?} is not trusted")]
    UntrustedIssuer(String),
    /// The issuer publishes no key of the token's `kid`.
    #[error("the issuer publishes no key {0:?}")]
    UnknownKey(String),
    /// The signature is not the key's.
    #[error("the signature does not verify")]
    BadSignature,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is ahead.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// Its `aud` is not the issuer's configured audience.
    #[error("the token is for another audience")]
    WrongAudience,
    /// The issuer's keys could not be fetched.
    #[error("the issuer's keys could not be fetched: {0}")]
    ProviderUnavailable(String),
}

impl IdentityError {
    /// The code of the 401 (503 for an unreachable provider) that answers it.
    pub fn code(&self) -> &'static str {
        match self {
            IdentityError::Malformed(_) => "malformedToken",
            IdentityError::UntrustedIssuer(_) => "untrustedIssuer",
            IdentityError::UnknownKey(_) => "unknownSigningKey",
            IdentityError::BadSignature => "badSignature",
            IdentityError::Expired => "tokenExpired",
            IdentityError::NotYetValid => "tokenNotYetValid",
            IdentityError::WrongAudience => "wrongAudience",
            IdentityError::ProviderUnavailable(_) => "identityProviderUnavailable",
        }
    }
}

/// One issuer's keys, by `kid`, and when they were last fetched.
#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, Arc<DecodingKey>>,
    fetched_at: Option<Instant>,
}

struct Issuer {
    trusted: TrustedIssuer,
    keys: tokio::sync::Mutex<Keys>,
}

/// The claims a sign-in reads; the rest are ignored.
#[derive(Debug, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    exp: u64,
    #[serde(default)]
    email: Option<String>,
    #[serde(flatten)]
    rest: HashMap<String, serde_json::Value>,
}

/// The `iss` of a token, read before its signature is checked (to know whose keys check it).
#[derive(Debug, Deserialize)]
struct Unverified {
    iss: Option<String>,
}

/// The trusted issuers and what is known of their keys and tokens.
pub struct Identities {
    issuers: HashMap<String, Issuer>,
    /// The applications' keys, by `kid`.
    applications: HashMap<String, (TrustedApplication, DecodingKey)>,
    jwks_min_refresh: Duration,
    client: hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    /// Verified tokens by their digest, until they expire.
    verified: Mutex<HashMap<[u8; 32], SignedIn>>,
}

impl Identities {
    /// Trusts the issuers and applications of `config`; refuses an application key that is no
    /// RSA public key in PEM.
    pub fn new(config: IdentityConfig) -> Result<Identities, String> {
        let mut applications = HashMap::new();
        for application in config.applications {
            let key = DecodingKey::from_rsa_pem(application.public_key_pem.as_bytes())
                .map_err(|e| format!("the application key {:?}: {e}", application.key_id))?;
            applications.insert(application.key_id.clone(), (application, key));
        }
        let issuers = config
            .issuers
            .into_iter()
            .map(|trusted| (trusted.issuer.clone(), Issuer { trusted, keys: Default::default() }))
            .collect();
        let connector =
            crate::tls::https_connector(config.extra_roots_pem.as_deref(), FETCH_TIMEOUT).map_err(|e| e.to_string())?;
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
        Ok(Identities {
            issuers,
            applications,
            jwks_min_refresh: config.jwks_min_refresh,
            client,
            verified: Mutex::default(),
        })
    }

    /// Whom a confidential application's token (`ScaleJwt`) acts for, or why no one.
    pub fn verify_application_token(&self, token: &str) -> Result<ActingFor, IdentityError> {
        #[derive(Deserialize)]
        struct ApplicationClaims {
            sub: String,
            #[serde(default)]
            lcid: Option<uuid::Uuid>,
        }
        let header = signed_header(token)?;
        let kid = key_id(&header)?;
        let (application, key) = self.applications.get(&kid).ok_or(IdentityError::UnknownKey(kid))?;
        let mut validation = Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_issuer(&[&application.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.validate_aud = false;
        validation.leeway = LEEWAY_S;
        let claims = jsonwebtoken::decode::<ApplicationClaims>(token, key, &validation).map_err(verify_error)?.claims;
        match (claims.lcid, &application.identity_issuer) {
            (Some(consumer), _) => Ok(ActingFor::Consumer(consumer)),
            (None, Some(issuer)) => Ok(ActingFor::Identity { issuer: issuer.clone(), subject: claims.sub }),
            (None, None) => Err(IdentityError::Malformed(
                "no lcid, and the application names no identity provider for its sub".into(),
            )),
        }
    }

    /// Who `token` signs in at `now_s` (seconds since the epoch), or why no one.
    pub async fn verify(&self, token: &str, now_s: u64) -> Result<SignedIn, IdentityError> {
        let digest = sha256(token.as_bytes());
        if let Some(known) = self.remembered(&digest, now_s) {
            return Ok(known);
        }
        let signed_in = self.check(token, now_s).await?;
        self.remember(digest, signed_in.clone(), now_s);
        Ok(signed_in)
    }

    fn remembered(&self, digest: &[u8; 32], now_s: u64) -> Option<SignedIn> {
        let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        verified.get(digest).filter(|s| now_s <= s.expires_at.saturating_add(LEEWAY_S)).cloned()
    }

    fn remember(&self, digest: [u8; 32], signed_in: SignedIn, now_s: u64) {
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= MAX_REMEMBERED {
            verified.retain(|_, s| now_s <= s.expires_at.saturating_add(LEEWAY_S));
            if verified.len() >= MAX_REMEMBERED {
                verified.clear();
            }
        }
        verified.insert(digest, signed_in);
    }

    async fn check(&self, token: &str, now_s: u64) -> Result<SignedIn, IdentityError> {
        let header = signed_header(token)?;
        let issuer = self.issuer_of(token)?;
        let kid = key_id(&header)?;
        let key = self.key(issuer, &kid).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[&issuer.trusted.audience]);
        validation.set_issuer(&[&issuer.trusted.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        validation.leeway = LEEWAY_S;
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(verify_error)?;
        let claims = claims.claims;
        if claims.sub.is_empty() || claims.sub.len() > 255 {
            return Err(IdentityError::Malformed("sub must be 1 to 255 bytes".into()));
        }
        debug_assert!(claims.exp.saturating_add(LEEWAY_S) >= now_s, "jsonwebtoken checked exp");
        let licensee_ref = issuer.trusted.licensee_claim.as_ref().and_then(|claim| match claims.rest.get(claim) {
            Some(serde_json::Value::String(value)) => Some(value.clone()),
            Some(serde_json::Value::Number(value)) => Some(value.to_string()),
            _ => None,
        });
        Ok(SignedIn {
            issuer: claims.iss,
            subject: claims.sub,
            email: claims.email,
            licensee_ref,
            kind: issuer.trusted.kind,
            expires_at: claims.exp,
        })
    }

    fn issuer_of(&self, token: &str) -> Result<&Issuer, IdentityError> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine as _;
        let payload = token.split('.').nth(1).ok_or_else(|| IdentityError::Malformed("not a JWT".into()))?;
        let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| IdentityError::Malformed("not base64url".into()))?;
        let unverified: Unverified =
            serde_json::from_slice(&bytes).map_err(|e| IdentityError::Malformed(format!("claims: {e}")))?;
        let iss = unverified.iss.ok_or_else(|| IdentityError::Malformed("no iss".into()))?;
        self.issuers.get(&iss).ok_or(IdentityError::UntrustedIssuer(iss))
    }

    /// The key `kid` of `issuer`, fetching its keys when they were never fetched or lack `kid`
    /// and the last fetch is old enough.
    async fn key(&self, issuer: &Issuer, kid: &str) -> Result<Arc<DecodingKey>, IdentityError> {
        let mut keys = issuer.keys.lock().await;
        if let Some(key) = keys.by_kid.get(kid) {
            return Ok(Arc::clone(key));
        }
        let may_fetch = keys.fetched_at.is_none_or(|at| at.elapsed() >= self.jwks_min_refresh);
        if may_fetch {
            keys.fetched_at = Some(Instant::now());
            keys.by_kid = self.fetch_keys(&issuer.trusted.issuer).await?;
        }
        keys.by_kid.get(kid).cloned().ok_or_else(|| IdentityError::UnknownKey(kid.to_owned()))
    }

    async fn fetch_keys(&self, issuer: &str) -> Result<HashMap<String, Arc<DecodingKey>>, IdentityError> {
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let discovery_url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let discovery: Discovery = serde_json::from_slice(&self.get(&discovery_url).await?)
            .map_err(|e| IdentityError::ProviderUnavailable(format!("{discovery_url}: {e}")))?;
        if discovery.issuer != issuer {
            return Err(IdentityError::ProviderUnavailable(format!(
                "{discovery_url} names the issuer {:?}",
                discovery.issuer
            )));
        }
        let set: JwkSet = serde_json::from_slice(&self.get(&discovery.jwks_uri).await?)
            .map_err(|e| IdentityError::ProviderUnavailable(format!("{}: {e}", discovery.jwks_uri)))?;
        Ok(set.keys.iter().filter_map(|jwk| Some((jwk.common.key_id.clone()?, Arc::new(decoding_key(jwk)?)))).collect())
    }

    async fn get(&self, url: &str) -> Result<Bytes, IdentityError> {
        let unavailable = |why: String| IdentityError::ProviderUnavailable(format!("{url}: {why}"));
        let uri: hyper::Uri = url.parse().map_err(|e| unavailable(format!("{e}")))?;
        let fetch = async {
            let response = self.client.get(uri).await.map_err(|e| unavailable(e.to_string()))?;
            if !response.status().is_success() {
                return Err(unavailable(format!("answered {}", response.status())));
            }
            let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES);
            body.collect().await.map(|b| b.to_bytes()).map_err(|e| unavailable(e.to_string()))
        };
        tokio::time::timeout(FETCH_TIMEOUT, fetch).await.map_err(|_| unavailable("no answer in time".into()))?
    }
}

/// The header of a JWT of at most [`MAX_JWT_BYTES`] with a signing algorithm (an unsigned one,
/// `alg: none`, is no JWT to jsonwebtoken).
fn signed_header(token: &str) -> Result<jsonwebtoken::Header, IdentityError> {
    if token.len() > MAX_JWT_BYTES {
        return Err(IdentityError::Malformed(format!("longer than {MAX_JWT_BYTES} bytes")));
    }
    jsonwebtoken::decode_header(token)
        .map_err(|e| IdentityError::Malformed(format!("{e} (unsigned tokens are refused)")))
}

/// The key a header names.
fn key_id(header: &jsonwebtoken::Header) -> Result<String, IdentityError> {
    header.kid.clone().ok_or_else(|| IdentityError::Malformed("the header names no key (kid)".into()))
}

/// What a failed verification by jsonwebtoken means for a sign-in.
fn verify_error(e: jsonwebtoken::errors::Error) -> IdentityError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => IdentityError::Expired,
        ErrorKind::ImmatureSignature => IdentityError::NotYetValid,
        ErrorKind::InvalidAudience => IdentityError::WrongAudience,
        ErrorKind::InvalidIssuer => IdentityError::UntrustedIssuer("the token's iss is not the application's".into()),
        // An algorithm the key is not for (HS256 with an RSA key) signs nothing of it.
        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => {
            IdentityError::BadSignature
        }
        _ => IdentityError::Malformed(e.to_string()),
    }
}

/// The key of a JWK of a signing kind (RSA, EC, OKP); `None` for anything else.
fn decoding_key(jwk: &Jwk) -> Option<DecodingKey> {
    let signing = jwk.common.public_key_use.as_ref().is_none_or(|u| *u == jsonwebtoken::jwk::PublicKeyUse::Signature);
    signing.then(|| DecodingKey::from_jwk(jwk).ok()).flatten()
}

/// Whether `secret` has the shape of a JWT (three base64url parts), as opposed to an API key.
pub fn looks_like_jwt(secret: &str) -> bool {
    secret.split('.').count() == 3 && secret.starts_with("ey")
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    fn identities() -> Identities {
        Identities::new(IdentityConfig {
            issuers: vec![TrustedIssuer {
                issuer: "http://127.0.0.1:9".into(),
                audience: "leasehold".into(),
                licensee_claim: None,
                kind: ConsumerKind::User,
            }],
            applications: Vec::new(),
            jwks_min_refresh: Duration::from_secs(60),
            extra_roots_pem: None,
        })
        .expect("no application keys to read")
    }

    fn token(header: &str, claims: &str) -> String {
        format!("{}.{}.c2ln", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims))
    }

    fn verify(token: &str) -> Result<SignedIn, IdentityError> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(identities().verify(token, 1_000))
    }

    #[test]
    fn tokens_are_told_from_api_keys_by_their_shape() {
        assert!(looks_like_jwt(&token(r#"{"alg":"RS256"}"#, "{}")));
        assert!(!looks_like_jwt("lh_abcdef"));
        assert!(!looks_like_jwt("ey.only-two"));
    }

    #[test]
    fn what_is_refused_before_any_key_is_fetched() {
        let untrusted = token(r#"{"alg":"RS256","kid":"k"}"#, r#"{"iss":"http://elsewhere","sub":"s"}"#);
        assert_eq!(verify(&untrusted), Err(IdentityError::UntrustedIssuer("http://elsewhere".into())));
        let unsigned = token(r#"{"alg":"none"}"#, r#"{"iss":"http://127.0.0.1:9","sub":"s"}"#);
        assert!(matches!(verify(&unsigned), Err(IdentityError::Malformed(_))));
        let no_kid = token(r#"{"alg":"RS256"}"#, r#"{"iss":"http://127.0.0.1:9","sub":"s"}"#);
        assert!(matches!(verify(&no_kid), Err(IdentityError::Malformed(_))));
        assert!(matches!(verify(&"e".repeat(MAX_JWT_BYTES + 1)), Err(IdentityError::Malformed(_))));
        let unreachable = token(r#"{"alg":"RS256","kid":"k"}"#, r#"{"iss":"http://127.0.0.1:9","sub":"s"}"#);
        let refused = verify(&unreachable).unwrap_err();
        assert_eq!(refused.code(), "identityProviderUnavailable", "{refused}");
    }
}
