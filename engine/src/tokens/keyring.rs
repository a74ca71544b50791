//! The key ring: the key that signs now and the retired keys whose tokens may still be alive.
//!
//! Rotation puts a new key in front; the old one stays in the JWKS until the last token it
//! signed has expired (each key remembers the largest `exp` it signed) and at least
//! [`ROTATION_GRACE_S`] after its retirement, which covers a worker that picked the key up just
//! before the rotation and signs with it just after.

use super::discovery::Jwks;
use super::jws;
use super::keys::{Algorithm, KeyError, SigningKey};
use crate::time::Timestamp;
use crate::tokens::claims::Claims;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

/// How long a retired key stays published even if it signed nothing that lives longer.
pub const ROTATION_GRACE_S: i64 = 300;

/// Until when (seconds) a key retired at `retired_at_s` that signed tokens living until
/// `max_exp_s` must stay in the JWKS.
pub fn retired_key_published_until_s(retired_at_s: i64, max_exp_s: i64) -> i64 {
    max_exp_s.max(retired_at_s.saturating_add(ROTATION_GRACE_S))
}

/// A key of the ring with what the ring knows about the tokens it signed.
#[derive(Debug)]
pub struct PublishedKey {
    key: SigningKey,
    /// Largest `exp` (seconds) of a token it signed; `i64::MAX` once it signed one without `exp`.
    max_exp_s: AtomicI64,
    /// When it stopped signing; `i64::MAX` while it is the current key.
    retired_at_s: AtomicI64,
}

impl PublishedKey {
    fn new(key: SigningKey, max_exp_s: i64, retired_at_s: i64) -> Self {
        PublishedKey { key, max_exp_s: AtomicI64::new(max_exp_s), retired_at_s: AtomicI64::new(retired_at_s) }
    }

    /// The key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Its `kid`.
    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    /// Largest `exp` it signed (0: none).
    pub fn max_exp_s(&self) -> i64 {
        self.max_exp_s.load(Ordering::Acquire)
    }

    /// When it was retired (`None` while current).
    pub fn retired_at_s(&self) -> Option<i64> {
        Some(self.retired_at_s.load(Ordering::Acquire)).filter(|t| *t != i64::MAX)
    }

    /// Until when (seconds) its public key must stay in the JWKS.
    pub fn publish_until_s(&self) -> i64 {
        match self.retired_at_s() {
            None => i64::MAX,
            Some(at) => retired_key_published_until_s(at, self.max_exp_s()),
        }
    }

    /// Signs `claims`, first noting their `exp` so that the key outlives the token.
    pub fn sign(&self, claims: &Claims) -> Result<String, KeyError> {
        let exp = claims.get("exp").map_or(Some(i64::MAX), serde_json::Value::as_i64).unwrap_or(i64::MAX);
        self.max_exp_s.fetch_max(exp, Ordering::AcqRel);
        jws::sign_claims(&self.key, claims)
    }
}

/// A retired key as the key store remembers it.
#[derive(Debug)]
pub struct RetiredKey {
    /// The key.
    pub key: SigningKey,
    /// When it was retired (seconds).
    pub retired_at_s: i64,
    /// Largest `exp` it signed (seconds).
    pub max_exp_s: i64,
}

#[derive(Debug)]
struct Ring {
    current: Arc<PublishedKey>,
    retired: Vec<Arc<PublishedKey>>,
}

/// The signing keys: one current, the retired ones still published. Shared by the signer pool,
/// the key store and the HTTP layer.
#[derive(Debug)]
pub struct KeyRing {
    ring: RwLock<Ring>,
}

impl KeyRing {
    /// A ring of one key.
    pub fn new(current: SigningKey) -> Self {
        KeyRing::restore(current, 0, Vec::new())
    }

    /// A ring as the key store found it: the current key, the largest `exp` it had signed, and
    /// the retired keys.
    pub fn restore(current: SigningKey, current_max_exp_s: i64, retired: Vec<RetiredKey>) -> Self {
        let current = Arc::new(PublishedKey::new(current, current_max_exp_s, i64::MAX));
        let retired = retired
            .into_iter()
            .filter(|r| r.key.kid() != current.kid())
            .map(|r| Arc::new(PublishedKey::new(r.key, r.max_exp_s, r.retired_at_s)))
            .collect();
        KeyRing { ring: RwLock::new(Ring { current, retired }) }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Ring> {
        // The ring is replaced whole under the lock, so a poisoned lock still holds a valid ring.
        self.ring.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Ring> {
        self.ring.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The key that signs now.
    pub fn current(&self) -> Arc<PublishedKey> {
        Arc::clone(&self.read().current)
    }

    /// Signs `claims` with the current key.
    pub fn sign(&self, claims: &Claims) -> Result<String, KeyError> {
        self.current().sign(claims)
    }

    /// Makes `next` the signing key at `now`; the previous one is retired but stays published
    /// while tokens it signed live. Returns the new `kid`.
    pub fn rotate(&self, next: SigningKey, now: Timestamp) -> String {
        let kid = next.kid().to_string();
        let mut ring = self.write();
        if ring.current.kid() == kid {
            return kid;
        }
        ring.retired.retain(|k| k.kid() != kid);
        let next = Arc::new(PublishedKey::new(next, 0, i64::MAX));
        let previous = std::mem::replace(&mut ring.current, next);
        previous.retired_at_s.store(now.as_secs(), Ordering::Release);
        ring.retired.insert(0, previous);
        kid
    }

    /// Takes the ring that the holders of the same keys agreed on (a cluster's shared ring):
    /// `current` signs from now on and the `retired` keys stay published as they say. A key this
    /// ring holds already keeps the largest `exp` it signed here. A key held here that the
    /// agreed ring no longer names stays published while the tokens it signed here live.
    pub fn follow(&self, current: SigningKey, retired: Vec<RetiredKey>, now: Timestamp) {
        fn take(held: &mut Vec<Arc<PublishedKey>>, kid: &str) -> Option<Arc<PublishedKey>> {
            held.iter().position(|k| k.kid() == kid).map(|at| held.swap_remove(at))
        }
        let mut ring = self.write();
        let mut held: Vec<_> = std::iter::once(Arc::clone(&ring.current)).chain(ring.retired.drain(..)).collect();
        let current = match take(&mut held, current.kid()) {
            Some(key) => {
                key.retired_at_s.store(i64::MAX, Ordering::Release);
                key
            }
            None => Arc::new(PublishedKey::new(current, 0, i64::MAX)),
        };
        let mut kept = Vec::with_capacity(retired.len());
        for agreed in retired.into_iter().filter(|r| r.key.kid() != current.kid()) {
            let key = take(&mut held, agreed.key.kid())
                .unwrap_or_else(|| Arc::new(PublishedKey::new(agreed.key, 0, agreed.retired_at_s)));
            key.retired_at_s.store(agreed.retired_at_s, Ordering::Release);
            key.max_exp_s.fetch_max(agreed.max_exp_s, Ordering::AcqRel);
            kept.push(key);
        }
        for key in held {
            if key.retired_at_s().is_none() {
                key.retired_at_s.store(now.as_secs(), Ordering::Release);
            }
            if key.publish_until_s() > now.as_secs() {
                kept.push(key);
            }
        }
        *ring = Ring { current, retired: kept };
    }

    /// Drops the retired keys no live token needs at `now`; returns their `kid`s.
    pub fn prune(&self, now: Timestamp) -> Vec<String> {
        let now_s = now.as_secs();
        let mut ring = self.write();
        let (gone, kept): (Vec<_>, Vec<_>) = ring.retired.drain(..).partition(|k| k.publish_until_s() <= now_s);
        ring.retired = kept;
        gone.iter().map(|k| k.kid().to_string()).collect()
    }

    /// Every key still published at `now`, the current one first.
    pub fn published(&self, now: Timestamp) -> Vec<Arc<PublishedKey>> {
        let now_s = now.as_secs();
        let ring = self.read();
        std::iter::once(Arc::clone(&ring.current))
            .chain(ring.retired.iter().filter(|k| k.publish_until_s() > now_s).cloned())
            .collect()
    }

    /// The JWKS to serve at `now`.
    pub fn jwks(&self, now: Timestamp) -> Jwks {
        Jwks { keys: self.published(now).iter().map(|k| k.key().public_jwk().clone()).collect() }
    }

    /// The published key named `kid`, current or retired.
    pub fn find(&self, kid: &str) -> Option<Arc<PublishedKey>> {
        let ring = self.read();
        std::iter::once(&ring.current).chain(ring.retired.iter()).find(|k| k.kid() == kid).cloned()
    }

    /// The retired keys, newest first.
    pub fn retired(&self) -> Vec<Arc<PublishedKey>> {
        self.read().retired.clone()
    }

    /// The algorithms of the published keys, without repeats, the current one first.
    pub fn algorithms(&self, now: Timestamp) -> Vec<Algorithm> {
        let mut algs = Vec::new();
        for key in self.published(now) {
            if !algs.contains(&key.key().alg()) {
                algs.push(key.key().alg());
            }
        }
        algs
    }
}
