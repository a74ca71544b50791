//! Building responses and reading request bodies: the JSON error shape every non-batch failure
//! uses (`{"error", "code", "description"}`), the content types, and a body reader that refuses
//! oversized or slow bodies before they cost anything.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use leasehold_engine::journal::JournalError;
use leasehold_engine::{AdminError, Denial, EngineError, ErrorCode, RedeemError};
use serde::Serialize;
use std::time::Duration;

/// 429 `tooManyRequests` saying `description`, with the whole seconds until `wait_ms` has passed
/// in `Retry-After`.
pub fn too_many_requests(description: impl Into<String>, wait_ms: u64) -> Response<Body> {
    let refused = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "tooManyRequests", description);
    let mut response = refused.into_response();
    response.headers_mut().insert(hyper::header::RETRY_AFTER, HeaderValue::from(wait_ms.div_ceil(1_000)));
    response
}

/// The body of every response this server writes.
pub type Body = Full<Bytes>;

/// A request's body: as it arrives, or already read (a node of a cluster reads it first, to
/// forward the request whole when another node owns what it is about).
#[derive(Debug)]
pub enum RequestBody {
    /// Read by the handler as it arrives.
    Arriving(Incoming),
    /// Read already.
    Read(Full<Bytes>),
}

impl hyper::body::Body for RequestBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            RequestBody::Arriving(body) => {
                hyper::body::Body::poll_frame(std::pin::Pin::new(body), cx).map_err(Into::into)
            }
            RequestBody::Read(body) => {
                hyper::body::Body::poll_frame(std::pin::Pin::new(body), cx).map_err(|never| match never {})
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Arriving(body) => hyper::body::Body::is_end_stream(body),
            RequestBody::Read(body) => hyper::body::Body::is_end_stream(body),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            RequestBody::Arriving(body) => hyper::body::Body::size_hint(body),
            RequestBody::Read(body) => hyper::body::Body::size_hint(body),
        }
    }
}

/// `application/json`.
pub const JSON: &str = "application/json";
/// `application/jwt`.
pub const JWT: &str = "application/jwt";
/// `text/plain; charset=utf-8`.
pub const TEXT: &str = "text/plain; charset=utf-8";

/// A request that failed as a whole: an HTTP status, a machine-readable code and a description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {description}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable code: the SPEC's error codes where one fits (`notAuthorized`, `overloaded`),
    /// otherwise the HTTP meaning in camelCase (`badRequest`, `notFound`, `conflict`, ...).
    pub code: &'static str,
    /// What went wrong, for people.
    pub description: String,
    /// For `notOwner`: the node that answers instead (the `X-Leasehold-Owner` header, which
    /// routes forward by).
    pub owner: Option<String>,
}

impl ApiError {
    /// An error answered with `status`, `code` and `description`.
    pub fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        ApiError { status, code, description: description.into(), owner: None }
    }

    /// 400: the request is malformed.
    pub fn bad_request(description: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "badRequest", description)
    }

    /// 401: credentials missing or wrong.
    pub fn unauthorized(description: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "notAuthorized", description)
    }

    /// 403: the credential is valid but its role may not do this.
    pub fn forbidden(description: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", description)
    }

    /// 404: nothing here, or an unknown id.
    pub fn not_found(description: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "notFound", description)
    }

    /// 405: the path exists, the method does not.
    pub fn method_not_allowed(allowed: &str) -> Self {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "methodNotAllowed", format!("use {allowed}"))
    }

    /// 409: the request conflicts with the current state.
    pub fn conflict(description: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, "conflict", description)
    }

    /// 413: the body is larger than the server accepts.
    pub fn too_large(max_bytes: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payloadTooLarge",
            format!("bodies are limited to {max_bytes} bytes"),
        )
    }

    /// 415: a body in a format this endpoint does not read.
    pub fn unsupported_media_type(wanted: &str) -> Self {
        ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupportedMediaType", format!("send {wanted}"))
    }

    /// 408: the body did not arrive in time.
    pub fn timeout() -> Self {
        ApiError::new(StatusCode::REQUEST_TIMEOUT, "requestTimeout", "the request body did not arrive in time")
    }

    /// 503: a bounded queue is full; retry later.
    pub fn overloaded() -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "the server is at capacity; retry shortly")
    }

    /// 503: the journal cannot write, so no change can be made durable (reads and checks still
    /// work); `/healthz` says so too.
    pub fn storage_unavailable(description: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storageUnavailable", description)
    }

    /// 500: something on the server broke.
    pub fn internal(description: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", description)
    }

    /// The error as a response.
    pub fn into_response(self) -> Response<Body> {
        let body = serde_json::json!({
            "error": self.status.canonical_reason().unwrap_or("Error"),
            "code": self.code,
            "description": self.description,
        });
        let mut response = bytes_response(self.status, JSON, Bytes::from(body.to_string()));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(owner) = self.owner.and_then(|o| HeaderValue::from_str(&o).ok()) {
            response.headers_mut().insert(crate::http::forward::OWNER, owner);
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Overloaded | EngineError::Sign(leasehold_engine::signer::SignError::Overloaded) => {
                ApiError::overloaded()
            }
            EngineError::Stopped => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "the server is shutting down")
            }
            EngineError::Journal(e) if e.is_storage_failure() => ApiError::storage_unavailable(e.to_string()),
            EngineError::Journal(e @ JournalError::NotOwner { .. }) => {
                let description = e.to_string();
                let JournalError::NotOwner { owner, .. } = e else { unreachable!("matched above") };
                ApiError { owner, ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "notOwner", description) }
            }
            EngineError::IdempotencyKeyReused => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotencyKeyReused", e.to_string())
            }
            EngineError::IdempotencyKeyInFlight => {
                ApiError::new(StatusCode::CONFLICT, "idempotencyKeyInFlight", e.to_string())
            }
            other => {
                tracing::error!(error = %other, "engine failure");
                ApiError::internal(other.to_string())
            }
        }
    }
}

impl From<RedeemError> for ApiError {
    fn from(e: RedeemError) -> Self {
        let description = e.to_string();
        match e {
            RedeemError::CodeNotFound => ApiError::new(StatusCode::NOT_FOUND, "activationCodeNotFound", description),
            RedeemError::CodeUsed => ApiError::new(StatusCode::CONFLICT, "activationCodeUsed", description),
            RedeemError::CodeExpired => ApiError::new(StatusCode::GONE, "activationCodeExpired", description),
            RedeemError::TooManyFailures { retry_after_ms } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "tooManyRequests",
                format!("{description}: in {} s", retry_after_ms.div_ceil(1_000)),
            ),
            RedeemError::Refused(e) => e.into(),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            AdminError::Invalid(why) => ApiError::bad_request(why),
            AdminError::Conflict(why) => ApiError::conflict(why),
            AdminError::Expired(why) => ApiError::new(StatusCode::GONE, "expired", why),
            AdminError::Engine(e) => e.into(),
        }
    }
}

/// A refusal of the engine as a whole-request error: 409 with the SPEC's error code (503 for
/// `overloaded`).
pub fn denied(denial: &Denial) -> ApiError {
    let status =
        if denial.code == ErrorCode::Overloaded { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::CONFLICT };
    ApiError { status, code: denial.code.as_str(), description: denial.message.to_string(), owner: None }
}

/// A response with `status`, `content_type` and `body`.
pub fn bytes_response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A response with `status` and no body.
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => bytes_response(status, JSON, Bytes::from(bytes)),
        Err(e) => ApiError::internal(format!("encoding the answer: {e}")).into_response(),
    }
}

/// Limits on reading a request body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body accepted.
    pub max_bytes: usize,
    /// Longest the whole body may take to arrive.
    pub read_timeout: Duration,
}

/// Reads the whole body of `req`, refusing one over `limits.max_bytes` (413, told by
/// `Content-Length` before anything is read) or slower than `limits.read_timeout` (408).
pub async fn read_body(req: Request<RequestBody>, limits: BodyLimits) -> Result<Bytes, ApiError> {
    if let Some(length) = req.headers().get(CONTENT_LENGTH) {
        let declared = length.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok());
        match declared {
            None => return Err(ApiError::bad_request("Content-Length is not a number")),
            Some(n) if n > u64::try_from(limits.max_bytes).unwrap_or(u64::MAX) => {
                return Err(ApiError::too_large(limits.max_bytes))
            }
            Some(_) => {}
        }
    }
    let limited = Limited::new(req.into_body(), limits.max_bytes);
    match tokio::time::timeout(limits.read_timeout, limited.collect()).await {
        Err(_) => Err(ApiError::timeout()),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(ApiError::too_large(limits.max_bytes)),
        Ok(Err(e)) => Err(ApiError::bad_request(format!("reading the body: {e}"))),
    }
}

/// Parses a JSON body into `T`, answering 415 for another content type and 400 (with serde's
/// message: which field, which line) for anything that is not a `T`.
pub fn parse_json<T: serde::de::DeserializeOwned>(content_type: Option<&str>, body: &[u8]) -> Result<T, ApiError> {
    if let Some(ct) = content_type {
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case(JSON) {
            return Err(ApiError::unsupported_media_type(JSON));
        }
    }
    if std::str::from_utf8(body).is_err() {
        return Err(ApiError::bad_request("the body is not UTF-8"));
    }
    // The error names the field it is about (`credit.qty: invalid type ...`), not only where in
    // the text it is.
    let mut json = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let field = e.path().to_string();
        match field.as_str() {
            "." => ApiError::bad_request(format!("invalid JSON body: {}", e.inner())),
            _ => ApiError::bad_request(format!("invalid JSON body: {field}: {}", e.inner())),
        }
    })?;
    json.end().map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    Ok(value)
}
