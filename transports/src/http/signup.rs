//! Self-service sign-up (SPEC section 13): `POST /register` `{"email", "product", "tier"}` e-mails
//! a set-password token; `POST /set-password` `{"token", "password"}` makes the account (or sets
//! a new password); `POST /login` `{"email", "password"}` answers an API key;
//! `POST /user/claim-license` with it fulfils the registration with a license.
//!
//! Nothing an answer says depends on whether an address has an account: `/register` answers 202
//! to every well-formed request, and `/login` refuses an unknown address and a wrong password
//! alike, after the same work (a hash is verified either way). `/register` and `/login` are
//! limited per client address and per e-mail address.

use crate::http::discovery::base_url;
use crate::http::reply::{self, ApiError, Body, RequestBody};
use crate::http::{admin::shapes, auth, platform, HttpState};
use crate::mail::Mail;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use leasehold_engine::engine::canonical_email;
use leasehold_engine::rate_limit::RateLimit;
use leasehold_engine::Timestamp;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use std::net::IpAddr;
use std::sync::Mutex;

/// The paths this module answers.
pub const PATHS: [&str; 4] = ["/register", "/set-password", "/login", "/user/claim-license"];

/// Passwords are at least this many characters.
const MIN_PASSWORD_CHARS: usize = 10;
/// And at most this many (hashing is the costly part of a login; the input is bounded).
const MAX_PASSWORD_CHARS: usize = 256;

/// Registrations or logins one client address may make in a window.
const PER_ADDRESS: u32 = 20;
/// Registrations or logins for one e-mail address in a window.
const PER_EMAIL: u32 = 5;
/// The window.
const WINDOW_MS: u64 = 60_000;

/// The limits on `/register` and `/login`, per client address and per e-mail address.
pub struct SignUpLimits {
    by_address: Mutex<RateLimit<(&'static str, IpAddr)>>,
    by_email: Mutex<RateLimit<(&'static str, String)>>,
}

impl Default for SignUpLimits {
    fn default() -> Self {
        SignUpLimits {
            by_address: Mutex::new(RateLimit::new(PER_ADDRESS, WINDOW_MS)),
            by_email: Mutex::new(RateLimit::new(PER_EMAIL, WINDOW_MS)),
        }
    }
}

impl SignUpLimits {
    /// Counts an attempt at `what` from `address` for `email`, or refuses it (429) while either
    /// has used its window up.
    fn admit(&self, what: &'static str, address: IpAddr, email: &str, now: Timestamp) -> Result<(), u64> {
        let mut by_address = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        let mut by_email = self.by_email.lock().unwrap_or_else(|p| p.into_inner());
        let (address, email) = ((what, address), (what, email.to_owned()));
        let refused = by_address.refused_for(&address, now).max(by_email.refused_for(&email, now));
        if let Some(wait_ms) = refused {
            return Err(wait_ms);
        }
        by_address.record(address, now);
        by_email.record(email, now);
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterIn {
    email: String,
    product: String,
    tier: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPasswordIn {
    token: String,
    password: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginIn {
    email: String,
    password: String,
}

/// 429, with when to try again.
fn too_many(wait_ms: u64) -> Response<Body> {
    reply::too_many_requests(format!("too many attempts; retry in {} s", wait_ms.div_ceil(1_000)), wait_ms)
}

/// Answers a request for one of [`PATHS`].
pub async fn handle(
    state: &HttpState,
    req: Request<RequestBody>,
    path: &str,
    client: IpAddr,
) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::POST {
        return Err(ApiError::method_not_allowed("POST"));
    }
    if path == "/user/claim-license" {
        let consumer = auth::consumer(state, req.headers(), "send Authorization: Bearer <the API key /login answered>");
        let claimed = state.engine.claim_license(consumer.await?).await?;
        let status = if claimed.created { StatusCode::CREATED } else { StatusCode::OK };
        // The platform's license key for the claimed license; answered again (a fresh token
        // for the same key) when the claim is repeated.
        let key_token = match state.keys {
            Some(_) => Some(platform::issue_key_token(state, &claimed.license).await?),
            None => None,
        };
        let answer = json!({"license": shapes::license(&claimed.license, None), "keyToken": key_token});
        return Ok(reply::json(status, &answer));
    }
    let base = base_url(state, &req)?;
    let content_type = req.headers().get(CONTENT_TYPE).map(|v| v.to_str().unwrap_or("?").to_owned());
    let body = reply::read_body(req, state.limits).await?;
    let now = state.engine.now();
    match path {
        "/register" => {
            let asked: RegisterIn = parse(content_type.as_deref(), &body)?;
            if let Err(wait_ms) = state.sign_up_limits.admit("register", client, &canonical_email(&asked.email), now) {
                return Ok(too_many(wait_ms));
            }
            register(state, asked, &base).await
        }
        "/set-password" => {
            let asked: SetPasswordIn = parse(content_type.as_deref(), &body)?;
            let chars = asked.password.chars().count();
            if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars) {
                return Err(ApiError::bad_request(format!(
                    "a password is {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"
                )));
            }
            let hash = hash_password(asked.password).await?;
            let account = state.engine.set_password(&asked.token, hash).await?;
            Ok(reply::json(StatusCode::OK, &json!({"email": account.email, "consumer": account.consumer})))
        }
        _ => {
            let asked: LoginIn = parse(content_type.as_deref(), &body)?;
            let email = canonical_email(&asked.email);
            if let Err(wait_ms) = state.sign_up_limits.admit("login", client, &email, now) {
                return Ok(too_many(wait_ms));
            }
            login(state, &email, asked.password).await
        }
    }
}

fn parse<T: DeserializeOwned>(content_type: Option<&str>, body: &[u8]) -> Result<T, ApiError> {
    reply::parse_json(content_type, body)
}

async fn register(state: &HttpState, asked: RegisterIn, base: &str) -> Result<Response<Body>, ApiError> {
    let mailer = state.mailer.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "mailUnavailable",
            "sign-up needs e-mail, and this server has no SMTP server configured",
        )
    })?;
    let (sign_up, token) = state.engine.register(&asked.email, &asked.product, &asked.tier).await?;
    let body = format!(
        "Someone, hopefully you, registered this address for {product} ({tier}).\n\n\
         Set your password within a day to finish:\n  \
         curl -X POST {base}/set-password -H 'Content-Type: application/json' \
         -d '{{\"token\": \"{token}\", \"password\": \"<at least {MIN_PASSWORD_CHARS} characters>\"}}'\n\n\
         Then log in (POST {base}/login) and claim your license (POST {base}/user/claim-license).\n\
         If this was not you, ignore this message.\n",
        product = sign_up.product,
        tier = sign_up.tier,
    );
    let mail = Mail { to: sign_up.email.clone(), subject: format!("Set your password for {}", sign_up.product), body };
    mailer.send(mail).await.map_err(|e| {
        tracing::warn!(sign_up = %sign_up.id, error = %e, "the sign-up was not e-mailed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "mailUnavailable",
            "the message could not be sent; try again later",
        )
    })?;
    let answer = json!({"status": "pending", "description": "a message with a link to set a password is on its way"});
    Ok(reply::json(StatusCode::ACCEPTED, &answer))
}

async fn login(state: &HttpState, email: &str, password: String) -> Result<Response<Body>, ApiError> {
    let (account, consumer) = {
        let directory = state.engine.directory();
        let account = directory.account(email).cloned();
        let consumer = account.as_ref().and_then(|a| directory.consumer(a.consumer).cloned());
        (account, consumer)
    };
    // An unknown address costs the same hash verification as a known one, so that the time of
    // the answer does not tell them apart either.
    let stored = account.map(|a| a.password_hash).unwrap_or_else(|| UNKNOWN_ACCOUNT_HASH.to_owned());
    let matches = verify_password(password, stored).await?;
    let Some(consumer) = consumer.filter(|c| matches && !c.disabled) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalidCredentials",
            "no account has this e-mail address and password",
        ));
    };
    let api_key = state.engine.rotate_api_key(consumer.id).await?;
    Ok(reply::json(StatusCode::OK, &json!({"api_key": api_key, "consumer": consumer.id})))
}

/// An argon2id hash of no password anyone has (its salt and hash are zeros), verified when an
/// address has no account.
const UNKNOWN_ACCOUNT_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// `password` hashed with argon2id (the crate's defaults) and a fresh salt, off the workers'
/// threads.
async fn hash_password(password: String) -> Result<String, ApiError> {
    let hashed = tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await;
    match hashed {
        Ok(Ok(hash)) => Ok(hash),
        Ok(Err(e)) => Err(ApiError::internal(format!("hashing the password: {e}"))),
        Err(e) => Err(ApiError::internal(format!("hashing the password: {e}"))),
    }
}

/// Whether `password` is the one `hash` (a PHC string) was made from, off the workers' threads.
async fn verify_password(password: String, hash: String) -> Result<bool, ApiError> {
    let verified = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await;
    verified.map_err(|e| ApiError::internal(format!("verifying the password: {e}")))
}
