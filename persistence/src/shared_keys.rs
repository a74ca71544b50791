//! The signing keys of a cluster, in the JetStream key-value bucket `lh-keys`: every node signs
//! with the same current key and publishes the same JWKS, so a token from one node verifies
//! against any node's keys.
//!
//! The bucket holds one value, the whole ring (private keys as PKCS#8 PEM, each retired key with
//! when it retired and until when its tokens live). The first node to start seeds it with the
//! ring of its own data directory; every node follows it from then on, and a rotation on any node
//! replaces it by compare-and-set on the value's revision, so two rotations at once both land,
//! one after the other. The bucket is replicated like the streams, and whoever can read the
//! cluster's NATS account can read the keys: the account must be as closed as the data directory
//! of a single node.
//!
//! Keys in a PKCS#11 token cannot be copied into the bucket, so a clustered node refuses them.

use async_nats::jetstream::kv::{self, Operation, Store};
use futures_util::StreamExt as _;
use leasehold_engine::time::Timestamp;
use leasehold_engine::tokens::keyring::{retired_key_published_until_s, RetiredKey};
use leasehold_engine::tokens::{Algorithm, KeyRing, SigningKey};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The bucket.
pub const KEYS_BUCKET: &str = "lh-keys";
/// The ring's key in the bucket.
const RING: &str = "ring";
/// How long a node waits before it watches the ring again after losing the watch.
const WATCH_AGAIN_AFTER: Duration = Duration::from_secs(1);
/// How long a node keeps trying to read (or seed) the ring while the bucket cannot answer.
const OPEN_PATIENCE: Duration = Duration::from_secs(30);
/// The pause between those tries.
const OPEN_RETRY_PAUSE: Duration = Duration::from_millis(250);
/// How many times a rotation tries its compare-and-set against rotations of other nodes.
const ROTATION_ATTEMPTS: usize = 20;
/// The pause between those tries.
const ROTATION_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Why the shared ring could not be read, seeded or changed.
#[derive(Debug, thiserror::Error)]
pub enum SharedKeysError {
    /// JetStream did not answer or refused.
    #[error("the key bucket {KEYS_BUCKET}: {0}")]
    Bucket(String),
    /// The bucket's value is not a ring this node can read.
    #[error("the key bucket {KEYS_BUCKET} holds no usable ring: {0}")]
    Damaged(String),
    /// A key cannot be shared (it lives in a PKCS#11 token) or made.
    #[error("{0}")]
    Key(String),
    /// Rotations of other nodes kept replacing the ring first (the last refusal).
    #[error("other nodes kept rotating the signing key ({0}); try again")]
    Contended(String),
}

fn bucket_error(e: impl std::fmt::Display) -> SharedKeysError {
    SharedKeysError::Bucket(e.to_string())
}

/// The ring as the bucket stores it.
#[derive(Debug, Serialize, Deserialize)]
struct StoredRing {
    current: String,
    #[serde(default)]
    retired: Vec<StoredRetired>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredRetired {
    pem: String,
    retired_at_s: i64,
    max_exp_s: i64,
}

impl StoredRing {
    fn of(ring: &KeyRing) -> Result<StoredRing, SharedKeysError> {
        let pem = |key: &SigningKey| {
            key.to_pem().map(str::to_owned).ok_or_else(|| {
                SharedKeysError::Key(format!(
                    "key {} lives in a PKCS#11 token, and a cluster's nodes cannot share it",
                    key.kid()
                ))
            })
        };
        let retired = ring
            .retired()
            .iter()
            .map(|k| {
                Ok(StoredRetired {
                    pem: pem(k.key())?,
                    retired_at_s: k.retired_at_s().unwrap_or_default(),
                    max_exp_s: k.max_exp_s(),
                })
            })
            .collect::<Result<_, SharedKeysError>>()?;
        Ok(StoredRing { current: pem(ring.current().key())?, retired })
    }

    fn decode(bytes: &[u8]) -> Result<(SigningKey, Vec<RetiredKey>), SharedKeysError> {
        let stored: StoredRing = serde_json::from_slice(bytes).map_err(|e| SharedKeysError::Damaged(e.to_string()))?;
        let key = |pem: &str| SigningKey::from_pem(pem.as_bytes()).map_err(|e| SharedKeysError::Damaged(e.to_string()));
        let retired = stored
            .retired
            .iter()
            .map(|r| Ok(RetiredKey { key: key(&r.pem)?, retired_at_s: r.retired_at_s, max_exp_s: r.max_exp_s }))
            .collect::<Result<_, SharedKeysError>>()?;
        Ok((key(&stored.current)?, retired))
    }

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// This node's copy of the cluster's key ring, kept equal to the bucket.
pub struct SharedKeys {
    store: Store,
    ring: Arc<KeyRing>,
    runtime: tokio::runtime::Handle,
    max_token_lifetime_s: u64,
    watch: tokio::task::JoinHandle<()>,
}

impl SharedKeys {
    /// Reads the cluster's ring, or seeds the bucket with `seed()` (this node's own ring) when it
    /// holds none yet, then follows the bucket on `runtime`. `max_token_lifetime_s` bounds the
    /// tokens any node may have signed with a key it retires.
    pub async fn open(
        client: async_nats::Client,
        runtime: tokio::runtime::Handle,
        replicas: usize,
        max_token_lifetime_s: u64,
        seed: impl FnOnce() -> Result<KeyRing, String>,
    ) -> Result<SharedKeys, SharedKeysError> {
        let js = async_nats::jetstream::new(client);
        let deadline = Instant::now() + OPEN_PATIENCE;
        let mut seed = Some(seed);
        let mut own = None;
        let (store, ring) = loop {
            match read_or_seed(&js, replicas, &mut seed, &mut own).await {
                Ok(opened) => break opened,
                // A bucket just made answers once its replicas have elected a leader.
                Err(SharedKeysError::Bucket(why)) if Instant::now() < deadline => {
                    tracing::warn!(why, "the signing keys' bucket cannot answer yet; trying again");
                    tokio::time::sleep(OPEN_RETRY_PAUSE).await;
                }
                Err(e) => return Err(e),
            }
        };
        let ring = Arc::new(ring);
        let watch = runtime.spawn(follow(store.clone(), Arc::clone(&ring)));
        Ok(SharedKeys { store, ring, runtime, max_token_lifetime_s, watch })
    }

    /// The ring the signer signs with.
    pub fn ring(&self) -> &Arc<KeyRing> {
        &self.ring
    }

    /// Makes a new key of `alg` the cluster's signing key at `now` and drops the retired keys no
    /// live token needs. The key this retires is kept for the longest token any node may have
    /// signed with it. Blocks: call it off the runtime's threads.
    pub fn rotate(&self, alg: Algorithm, now: Timestamp) -> Result<String, SharedKeysError> {
        let next = SigningKey::generate(alg).map_err(|e| SharedKeysError::Key(e.to_string()))?;
        let next_pem = next.to_pem().map(str::to_owned).unwrap_or_default();
        let kid = next.kid().to_owned();
        let lives_until = now.as_secs().saturating_add(i64::try_from(self.max_token_lifetime_s).unwrap_or(i64::MAX));
        self.runtime.block_on(async {
            let mut last_refusal = String::new();
            for _ in 0..ROTATION_ATTEMPTS {
                let entry = self.store.entry(RING).await.map_err(bucket_error)?;
                let entry = entry.ok_or_else(|| SharedKeysError::Damaged("the ring is gone".into()))?;
                let mut stored: StoredRing =
                    serde_json::from_slice(&entry.value).map_err(|e| SharedKeysError::Damaged(e.to_string()))?;
                // An update whose answer was lost may have landed.
                if stored.current != next_pem {
                    let previous = StoredRetired {
                        pem: std::mem::replace(&mut stored.current, next_pem.clone()),
                        retired_at_s: now.as_secs(),
                        max_exp_s: lives_until,
                    };
                    stored.retired.insert(0, previous);
                    stored.retired.retain(|r| r.pem != next_pem);
                    stored
                        .retired
                        .retain(|r| retired_key_published_until_s(r.retired_at_s, r.max_exp_s) > now.as_secs());
                    if let Err(e) = self.store.update(RING, stored.encode().into(), entry.revision).await {
                        // Another node's rotation landed first, or the ring was read from a
                        // replica that had not seen the last one yet (the server's refusal does
                        // not say which in a way the client tells apart): read it again.
                        tracing::debug!(error = %e, "the signing key ring changed under a rotation; trying again");
                        last_refusal = e.to_string();
                        tokio::time::sleep(ROTATION_RETRY_PAUSE).await;
                        continue;
                    }
                }
                let (current, retired) = StoredRing::decode(&stored.encode())?;
                self.ring.follow(current, retired, now);
                return Ok(kid.clone());
            }
            Err(SharedKeysError::Contended(last_refusal))
        })
    }
}

/// The bucket and the ring it holds, seeding it with this node's ring (made by `seed` once, and
/// kept in `own` across attempts) when it holds none.
async fn read_or_seed(
    js: &async_nats::jetstream::Context,
    replicas: usize,
    seed: &mut Option<impl FnOnce() -> Result<KeyRing, String>>,
    own: &mut Option<KeyRing>,
) -> Result<(Store, KeyRing), SharedKeysError> {
    let store = match js.get_key_value(KEYS_BUCKET).await {
        Ok(store) => store,
        Err(_) => {
            let config = kv::Config {
                bucket: KEYS_BUCKET.into(),
                description: "Leasehold's signing keys".into(),
                history: 1,
                num_replicas: replicas,
                ..Default::default()
            };
            match js.create_key_value(config).await {
                Ok(store) => store,
                // Another node made it first.
                Err(_) => js.get_key_value(KEYS_BUCKET).await.map_err(bucket_error)?,
            }
        }
    };
    if let Some(ring) = read_ring(&store).await? {
        return Ok((store, ring));
    }
    let ring = match (own.take(), seed.take()) {
        (Some(ring), _) => ring,
        (None, Some(seed)) => seed().map_err(SharedKeysError::Key)?,
        (None, None) => return Err(SharedKeysError::Key("no ring to seed the bucket with".into())),
    };
    let stored = StoredRing::of(&ring)?;
    match store.create(RING, stored.encode().into()).await {
        Ok(_) => {
            tracing::info!(kid = ring.current().kid(), "seeded the cluster's signing keys");
            Ok((store, ring))
        }
        // Another node may have seeded it first (the server's refusal does not always say so
        // in a way the client tells apart): then its ring is the cluster's.
        Err(e) => {
            *own = Some(ring);
            match read_ring(&store).await? {
                Some(theirs) => Ok((store, theirs)),
                None => Err(bucket_error(e)),
            }
        }
    }
}

/// The ring the bucket holds, if any.
async fn read_ring(store: &Store) -> Result<Option<KeyRing>, SharedKeysError> {
    match store.entry(RING).await.map_err(bucket_error)? {
        Some(entry) if entry.operation == Operation::Put => {
            let (current, retired) = StoredRing::decode(&entry.value)?;
            Ok(Some(KeyRing::restore(current, 0, retired)))
        }
        _ => Ok(None),
    }
}

impl Drop for SharedKeys {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

/// Applies every value the bucket's ring takes, watching again whenever the watch is lost (a
/// NATS server restarting, a leader moving).
async fn follow(store: Store, ring: Arc<KeyRing>) {
    loop {
        match store.watch_with_history(RING).await {
            Ok(mut changes) => {
                while let Some(change) = changes.next().await {
                    match change {
                        Ok(entry) if entry.operation == Operation::Put => match StoredRing::decode(&entry.value) {
                            Ok((current, retired)) => {
                                if ring.current().kid() != current.kid() {
                                    tracing::info!(kid = current.kid(), "the cluster's signing key changed");
                                }
                                ring.follow(current, retired, now());
                            }
                            Err(e) => tracing::error!(error = %e, "ignoring a damaged signing key ring"),
                        },
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "lost the watch of the signing keys");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch the signing keys yet"),
        }
        tokio::time::sleep(WATCH_AGAIN_AFTER).await;
    }
}

fn now() -> Timestamp {
    use leasehold_engine::time::{Clock as _, SystemClock};
    SystemClock.now()
}
