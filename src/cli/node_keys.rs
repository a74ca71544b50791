//! The signing keys a node signs with: its data directory's, or, on a node of a cluster, the
//! cluster's ring in JetStream, which every node shares.

use super::cluster::NodeJournal;
use leasehold_engine::time::{Clock, SystemClock};
use leasehold_engine::tokens::{Algorithm, KeyRing};
use leasehold_persistence::keys::{KeyStore, KeyStoreError, DEFAULT_MAX_TOKEN_LIFETIME_S};
use leasehold_persistence::shared_keys::{SharedKeys, SharedKeysError};
use leasehold_transports::http::{KeyRotation, RotationError};
use std::sync::Arc;

/// Why the keys could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum NodeKeysError {
    /// The data directory's keys.
    #[error(transparent)]
    Local(#[from] KeyStoreError),
    /// The cluster's keys.
    #[error(transparent)]
    Shared(#[from] SharedKeysError),
}

/// The keys a node signs with.
pub enum NodeKeys {
    /// The data directory's (or a PKCS#11 token's).
    Local {
        /// Where they are kept.
        store: KeyStore,
        /// The ring the signer signs with.
        ring: Arc<KeyRing>,
    },
    /// The cluster's, seeded from the first node's data directory.
    Shared(Arc<SharedKeys>),
}

impl NodeKeys {
    /// Opens the keys of `store` for a node alone; for a node of a cluster, the cluster's ring,
    /// which `store`'s keys seed when the cluster has none yet.
    pub async fn open(
        store: KeyStore,
        journal: &NodeJournal,
        replicas: usize,
        alg: Algorithm,
    ) -> Result<NodeKeys, NodeKeysError> {
        match journal {
            NodeJournal::Sled(_) => {
                let ring = Arc::new(store.open_or_create(alg, SystemClock.now())?);
                Ok(NodeKeys::Local { store, ring })
            }
            NodeJournal::Streams(streams) => {
                let (client, runtime) = streams.nats();
                let seed = || store.open_or_create(alg, SystemClock.now()).map_err(|e| e.to_string());
                let shared = SharedKeys::open(client, runtime, replicas, DEFAULT_MAX_TOKEN_LIFETIME_S, seed).await?;
                Ok(NodeKeys::Shared(Arc::new(shared)))
            }
        }
    }

    /// The ring the signer signs with and the JWKS publishes.
    pub fn ring(&self) -> Arc<KeyRing> {
        match self {
            NodeKeys::Local { ring, .. } => Arc::clone(ring),
            NodeKeys::Shared(shared) => Arc::clone(shared.ring()),
        }
    }

    /// Rotation where the keys are kept, so that the new key and the retired ones survive a
    /// restart (and, in a cluster, reach every node).
    pub fn rotation(&self) -> KeyRotation {
        match self {
            NodeKeys::Local { store, ring } => {
                let (store, ring) = (store.clone(), Arc::clone(ring));
                Arc::new(move |alg: Algorithm| {
                    if !store.makes(alg) {
                        return Err(RotationError::Unsupported(format!(
                            "the PKCS#11 token makes RS256 and ES256 keys, not {alg}"
                        )));
                    }
                    store.rotate(&ring, alg, SystemClock.now()).map_err(|e| RotationError::Failed(e.to_string()))
                })
            }
            NodeKeys::Shared(shared) => {
                let shared = Arc::clone(shared);
                Arc::new(move |alg: Algorithm| {
                    shared.rotate(alg, SystemClock.now()).map_err(|e| RotationError::Failed(e.to_string()))
                })
            }
        }
    }

    /// Records how long each key must stay published (at shutdown). The cluster's ring records
    /// that at each rotation.
    pub fn save(&self) {
        if let NodeKeys::Local { store, ring } = self {
            if let Err(e) = store.save(ring) {
                tracing::warn!(error = %e, "could not record the signing keys' lifetimes");
            }
        }
    }
}
