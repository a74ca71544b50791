//! An OpenID Connect issuer of the bench's own, for `--identity-tokens`: it serves a discovery
//! document and its JWKS over HTTP, as a provider does, and signs the tokens the bench's clients
//! send instead of API keys.

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use leasehold_engine::tokens::{jws, Algorithm, SigningKey};
use leasehold_transports::identity::{IdentityConfig, TrustedIssuer};
use serde_json::json;
use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The audience of the bench's tokens.
const AUDIENCE: &str = "leasehold-bench";

/// The claim naming the licensee (its `external_id`) a new consumer joins.
const LICENSEE_CLAIM: &str = "org";

/// How long a token is valid: longer than any run.
const TOKEN_LIFETIME_S: u64 = 24 * 3_600;

/// A running issuer.
pub struct Issuer {
    /// Its `iss`: the URL it serves at.
    pub url: String,
    key: Arc<SigningKey>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Issuer {
    /// Starts one on a free loopback port, with a fresh RS256 key.
    pub fn start() -> Result<Issuer, String> {
        let key = Arc::new(SigningKey::generate(Algorithm::RS256).map_err(|e| format!("the issuer's key: {e}"))?);
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("the issuer's port: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let url = format!("http://{}", listener.local_addr().map_err(|e| e.to_string())?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("bench-issuer")
            .enable_all()
            .build()
            .map_err(|e| format!("the issuer's runtime: {e}"))?;
        let discovery = Bytes::from(json!({"issuer": url, "jwks_uri": format!("{url}/jwks")}).to_string());
        let jwks = Bytes::from(json!({"keys": [key.public_jwk()]}).to_string());
        runtime.spawn(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
            while let Ok((stream, _)) = listener.accept().await {
                let (discovery, jwks) = (discovery.clone(), jwks.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let body = match req.uri().path() {
                            "/.well-known/openid-configuration" => Some(discovery.clone()),
                            "/jwks" => Some(jwks.clone()),
                            _ => None,
                        };
                        async move {
                            let mut response = Response::new(Full::new(body.clone().unwrap_or_default()));
                            if body.is_none() {
                                *response.status_mut() = StatusCode::NOT_FOUND;
                            }
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(Issuer { url, key, runtime: Some(runtime) })
    }

    /// What a server trusting this issuer is configured with.
    pub fn config(&self) -> IdentityConfig {
        let trusted = TrustedIssuer {
            issuer: self.url.clone(),
            audience: AUDIENCE.into(),
            licensee_claim: Some(LICENSEE_CLAIM.into()),
            kind: leasehold_engine::model::ConsumerKind::User,
        };
        IdentityConfig {
            issuers: vec![trusted],
            applications: Vec::new(),
            jwks_min_refresh: Duration::from_secs(60),
            extra_roots_pem: None,
        }
    }

    /// The same, as the `[identity]` table of a configuration file.
    pub fn config_toml(&self) -> String {
        format!(
            "[identity]\n[[identity.issuers]]\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\nlicensee_claim = \"{LICENSEE_CLAIM}\"\n",
            self.url
        )
    }

    /// A token of subject `subject`, whose first sign-in joins the licensee whose `external_id` is
    /// `licensee`.
    pub fn token(&self, subject: &str, licensee: &str) -> Result<String, String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let claims = json!({
            "iss": self.url,
            "sub": subject,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + TOKEN_LIFETIME_S,
            LICENSEE_CLAIM: licensee,
        });
        let serde_json::Value::Object(claims) = claims else { return Err("claims are an object".into()) };
        jws::sign_claims(&self.key, &claims).map_err(|e| format!("signing a token: {e}"))
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
