//! The data a load run needs, created through the admin API (so a running server can be
//! benchmarked as well as an in-process one): one product, `licenses` licensees with one large
//! seat license each, and `consumers` consumers spread over those licensees.

use super::driver::Failure;
use super::http::{Connection, Target, ITEM};
use super::issuer::Issuer;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Seats of every seeded license: more than any run can hold at once, so a run measures the
/// decision path rather than refusals.
pub const SEATS: u64 = 1_000_000_000;

/// Admin calls in flight while seeding.
const SEED_CONNECTIONS: usize = 16;

/// A seeded consumer.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The consumer's API key.
    pub api_key: String,
}

/// Why seeding failed.
#[derive(Debug, thiserror::Error)]
#[error("seeding through the admin API failed: {0}")]
pub struct SeedError(String);

/// Creates the data set on the server at `target` with the admin token `admin`; one identity
/// per consumer.
pub async fn seed(target: Target, admin: &str, licenses: usize, consumers: usize) -> Result<Vec<Identity>, SeedError> {
    let licenses = licenses.max(1);
    let consumers = consumers.max(1);
    let mut connection = Connection::new(target.clone());
    // The product may exist already when a running server is benchmarked twice.
    let product = json!({"name": ITEM, "features": []});
    let answer = admin_call(&mut connection, admin, "/admin/products", &product).await?;
    if answer.0 != StatusCode::CREATED && answer.0 != StatusCode::CONFLICT {
        return Err(SeedError(format!("creating the product: {} {}", answer.0, answer.1)));
    }

    let next = Arc::new(AtomicUsize::new(0));
    let admin: Arc<str> = Arc::from(admin);
    let license_tasks: Vec<_> = (0..SEED_CONNECTIONS.min(licenses))
        .map(|_| {
            let (next, admin, target) = (Arc::clone(&next), Arc::clone(&admin), target.clone());
            tokio::spawn(async move {
                let mut connection = Connection::new(target);
                let mut made = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= licenses {
                        return Ok::<_, SeedError>(made);
                    }
                    made.push((index, seed_license(&mut connection, &admin, index).await?));
                }
            })
        })
        .collect();
    let mut licensees = vec![String::new(); licenses];
    for task in license_tasks {
        for (index, made) in task.await.map_err(|e| SeedError(e.to_string()))?? {
            licensees[index] = made;
        }
    }

    let licensees = Arc::new(licensees);
    let next = Arc::new(AtomicUsize::new(0));
    let consumer_tasks: Vec<_> = (0..SEED_CONNECTIONS.min(consumers))
        .map(|_| {
            let (next, admin, licensees, target) =
                (Arc::clone(&next), Arc::clone(&admin), Arc::clone(&licensees), target.clone());
            tokio::spawn(async move {
                let mut connection = Connection::new(target);
                let mut made = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= consumers {
                        return Ok::<_, SeedError>(made);
                    }
                    let licensee = &licensees[index % licensees.len()];
                    let body = json!({"name": format!("bench-user-{index}"), "kind": "user", "licensees": [licensee]});
                    let consumer = created(admin_call(&mut connection, &admin, "/admin/consumers", &body).await?)?;
                    made.push((index, Identity { api_key: text(&consumer, "api_key")? }));
                }
            })
        })
        .collect();
    let mut identities = Vec::with_capacity(consumers);
    for task in consumer_tasks {
        identities.extend(task.await.map_err(|e| SeedError(e.to_string()))??);
    }
    identities.sort_by_key(|(index, _)| *index);
    Ok(identities.into_iter().map(|(_, identity)| identity).collect())
}

/// The name and `external_id` of seeded licensee `index`: what an identity token names to join it.
pub fn licensee_ref(index: usize) -> String {
    format!("bench-licensee-{index}")
}

/// One identity-provider token per consumer, each joining a seeded licensee as the API-key
/// consumers do, and signed in once (the first sign-in makes the consumer, which the measured
/// runs should not pay for).
pub async fn token_identities(
    addr: SocketAddr,
    issuer: &Issuer,
    licenses: usize,
    consumers: usize,
) -> Result<Vec<Identity>, SeedError> {
    let mut identities = Vec::with_capacity(consumers.max(1));
    for index in 0..consumers.max(1) {
        let token = issuer.token(&format!("bench-subject-{index}"), &licensee_ref(index % licenses.max(1)));
        identities.push(Identity { api_key: token.map_err(SeedError)? });
    }
    let next = Arc::new(AtomicUsize::new(0));
    let identities = Arc::new(identities);
    let tasks: Vec<_> = (0..SEED_CONNECTIONS.min(identities.len()))
        .map(|_| {
            let (next, identities) = (Arc::clone(&next), Arc::clone(&identities));
            tokio::spawn(async move {
                let mut connection = Connection::new(addr);
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(identity) = identities.get(index) else { return Ok::<_, SeedError>(()) };
                    let path = format!("/authz/.txt?{ITEM}");
                    let answer = connection.send(Method::GET, &path, Some(&identity.api_key), None).await;
                    let answer = answer.map_err(|e| SeedError(format!("signing in: {e:?}")))?;
                    if answer.status == StatusCode::UNAUTHORIZED {
                        return Err(SeedError(format!("an identity token was refused: {:?}", answer.body)));
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| SeedError(e.to_string()))??;
    }
    Ok(Arc::try_unwrap(identities).unwrap_or_else(|shared| (*shared).clone()))
}

/// A licensee and its license; the licensee's id.
async fn seed_license(connection: &mut Connection, admin: &str, index: usize) -> Result<String, SeedError> {
    let body = json!({"name": licensee_ref(index), "kind": "organization", "external_id": licensee_ref(index)});
    let licensee = text(&created(admin_call(connection, admin, "/admin/licensees", &body).await?)?, "id")?;
    let body = json!({
        "licensee": licensee,
        "product": ITEM,
        "credit": {"dimension": "SEATS", "qty": SEATS, "enforcement": "ENFORCED"},
        // One session per consumer and hardware id: every load worker has a session of its own.
        "model": {"session_anchors": ["user", "hw"]},
    });
    created(admin_call(connection, admin, "/admin/licenses", &body).await?)?;
    Ok(licensee)
}

async fn admin_call(
    connection: &mut Connection,
    admin: &str,
    path: &str,
    body: &Value,
) -> Result<(StatusCode, Value), SeedError> {
    let body = Bytes::from(body.to_string());
    let answer = connection
        .send(Method::POST, path, Some(admin), Some(body))
        .await
        .map_err(|Failure(why)| SeedError(format!("POST {path}: {why}")))?;
    let json = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    Ok((answer.status, json))
}

fn created((status, body): (StatusCode, Value)) -> Result<Value, SeedError> {
    if status == StatusCode::CREATED {
        Ok(body)
    } else {
        Err(SeedError(format!("expected 201, got {status}: {body}")))
    }
}

fn text(value: &Value, field: &str) -> Result<String, SeedError> {
    value
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| SeedError(format!("no {field} in {value}")))
}
