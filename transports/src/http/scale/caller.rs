//! Who is calling the Scale API: a consumer, by its API key (`Authorization: Bearer <key>`, as
//! the SDK's `BearerTokenAuth` sends it), or a license key named in the path, which identifies
//! its license and needs no API key.
//!
//! The SDK also sends the consumer's id in the `licenseConsumerId` header (or query parameter,
//! for the `describe-*` reads); when given it must be the caller's own id, since an API key
//! speaks only for its consumer. With a license key the key is the caller and that header is
//! not read.

use crate::http::auth;
use crate::http::reply::ApiError;
use crate::http::HttpState;
use hyper::{HeaderMap, StatusCode};
use leasehold_engine::directory::key_holder;
use leasehold_engine::model::license::is_valid_license_key;
use leasehold_engine::{ConsumerId, LicenseId};
use std::str::FromStr;

/// The header (and describe query parameter) naming the consumer.
pub const CONSUMER_HEADER: &str = "licenseConsumerId";

/// Who a Scale request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A consumer authenticated by its API key.
    Consumer(ConsumerId),
    /// The holder of a license key.
    Key {
        /// The key as given.
        key: String,
        /// The license it identifies.
        license: LicenseId,
    },
}

impl Caller {
    /// The consumer leases are taken, renewed and released as.
    pub fn consumer(&self) -> ConsumerId {
        match self {
            Caller::Consumer(id) => *id,
            Caller::Key { license, .. } => key_holder(*license),
        }
    }

    /// What identifies the caller in an idempotency key: its consumer id, or its license key.
    pub fn credential(&self) -> Vec<u8> {
        match self {
            Caller::Consumer(id) => id.0.as_bytes().to_vec(),
            Caller::Key { key, .. } => key.as_bytes().to_vec(),
        }
    }
}

/// 403: authenticated, but not allowed to act for what the request names.
pub fn forbidden(description: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "notAuthorized", description.into())
}

/// The license that license key `key` identifies: 400 for a key of the wrong shape, 404 for one
/// no license has.
pub fn license_of_key(state: &HttpState, key: &str) -> Result<LicenseId, ApiError> {
    if !is_valid_license_key(key) {
        return Err(ApiError::bad_request("a license key is 16 to 64 characters of A-Z, a-z, 0-9, '_' and '-'"));
    }
    let license = state.engine.directory().license_by_key(key).map(|l| l.id);
    license.ok_or_else(|| ApiError { code: "noLicenseFound", ..ApiError::not_found("no license has this license key") })
}

/// The consumer whose API key or identity provider's token the request carries: 401 without
/// a known one.
pub async fn consumer_of(state: &HttpState, headers: &HeaderMap) -> Result<ConsumerId, ApiError> {
    let missing = "send Authorization: Bearer <consumer API key or identity provider's token>, or use a license key";
    auth::consumer(state, headers, missing).await
}

/// Checks a `licenseConsumerId` the request gave (header or query) against the caller: 400 when
/// it is not a UUID, 403 when it names another consumer.
pub fn check_named_consumer(caller: ConsumerId, named: Option<&str>) -> Result<(), ApiError> {
    let Some(named) = named.map(str::trim).filter(|n| !n.is_empty()) else { return Ok(()) };
    let named =
        ConsumerId::from_str(named).map_err(|_| ApiError::bad_request(format!("{CONSUMER_HEADER} must be a UUID")))?;
    if named != caller {
        return Err(forbidden(format!("the API key belongs to another consumer than {CONSUMER_HEADER} {named}")));
    }
    Ok(())
}

/// Who an action (checkout, heartbeat, release, metered use) acts for: the license key's holder
/// when the path names a key, otherwise the API key's consumer.
pub async fn identify(state: &HttpState, headers: &HeaderMap, license_key: Option<&str>) -> Result<Caller, ApiError> {
    if let Some(key) = license_key {
        let license = license_of_key(state, key)?;
        return Ok(Caller::Key { key: key.to_owned(), license });
    }
    let consumer = consumer_of(state, headers).await?;
    let named = headers.get(CONSUMER_HEADER).map(|v| v.to_str().unwrap_or("?"));
    check_named_consumer(consumer, named)?;
    Ok(Caller::Consumer(consumer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_consumer_must_be_the_caller() {
        let me = ConsumerId(uuid::Uuid::from_u128(1));
        assert!(check_named_consumer(me, None).is_ok());
        assert!(check_named_consumer(me, Some(&me.to_string())).is_ok());
        let other = check_named_consumer(me, Some(&uuid::Uuid::from_u128(2).to_string())).unwrap_err();
        assert_eq!((other.status, other.code), (StatusCode::FORBIDDEN, "notAuthorized"));
        assert_eq!(check_named_consumer(me, Some("nope")).unwrap_err().status, StatusCode::BAD_REQUEST);
    }
}
