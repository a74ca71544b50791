//! Redeeming an activation code (SPEC section 12): `POST /activation-codes/redeem` `{"code",
//! "licensee"?}` with a consumer's API key makes the code's license for the consumer's licensee.
//! 201 with the license the first time, 200 with the same license when the same consumer redeems
//! the same code again.

use crate::http::admin::shapes;
use crate::http::reply::{self, ApiError, Body, RequestBody};
use crate::http::{auth, HttpState};
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use leasehold_engine::{LicenseeId, RedeemError};
use serde::Deserialize;
use serde_json::json;

/// The path of this module's route.
pub const PATH: &str = "/activation-codes/redeem";

/// The body of a redemption.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedeemIn {
    code: String,
    #[serde(default)]
    licensee: Option<LicenseeId>,
}

/// Answers `POST` [`PATH`].
pub async fn handle(state: &HttpState, req: Request<RequestBody>) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::POST {
        return Err(ApiError::method_not_allowed("POST"));
    }
    let missing = "send a consumer's API key or identity provider's token";
    let consumer = auth::consumer(state, req.headers(), missing).await?;
    let content_type = req.headers().get(CONTENT_TYPE).map(|v| v.to_str().unwrap_or("?").to_owned());
    let body = reply::read_body(req, state.limits).await?;
    let asked: RedeemIn = reply::parse_json(content_type.as_deref(), &body)?;
    match state.engine.redeem_activation_code(&asked.code, consumer, asked.licensee).await {
        Ok(redeemed) => {
            let status = if redeemed.created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(reply::json(status, &json!({"license": shapes::license(&redeemed.license, None)})))
        }
        Err(refused @ RedeemError::TooManyFailures { retry_after_ms }) => {
            Ok(reply::too_many_requests(ApiError::from(refused).description, retry_after_ms))
        }
        Err(other) => Err(other.into()),
    }
}
