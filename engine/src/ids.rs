//! Identifiers of the licensing domain, and where new ones come from.
//!
//! Every id is a UUID in a newtype so that a lease id can never be passed where a license id is
//! meant. New ids come from an [`IdSource`] the caller injects: random in production, seeded in
//! tests and simulations so that a run can be replayed.

use rand::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map($name)
            }
        }
    };
}

uuid_id!(
    /// A customer: an organization or a person.
    LicenseeId
);
uuid_id!(
    /// A user or device client that consumes licenses.
    ConsumerId
);
uuid_id!(
    /// A licensed product.
    ProductId
);
uuid_id!(
    /// A license a licensee bought.
    LicenseId
);
uuid_id!(
    /// A subscription to events (SPEC section 11).
    WebhookId
);
uuid_id!(
    /// An API credential with a role (SPEC section 12).
    CredentialId
);
uuid_id!(
    /// A licensee's group of users or of device clients (SPEC section 12).
    GroupId
);
uuid_id!(
    /// A licensee's entitlement: licenses and the groups that may use them (SPEC section 12).
    EntitlementId
);
uuid_id!(
    /// An invitation to join a group (SPEC section 12).
    InvitationId
);
uuid_id!(
    /// A batch of activation codes made from one license template (SPEC section 12).
    ActivationBatchId
);
uuid_id!(
    /// A self-service registration (SPEC section 13).
    SignUpId
);
uuid_id!(
    /// One machine's activation of a license key (SPEC section 13, the platform's `clientId`):
    /// the same for the same license and machine every time.
    ClientId
);
uuid_id!(
    /// One lease; rotated on every renewal. Tokens carry it as `jti`.
    LeaseId
);

/// The SHA-256 digest of `bytes`: how secrets (API keys, the admin token) are stored.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Where new ids and secrets come from.
pub trait IdSource: Send + Sync + 'static {
    /// A fresh random UUID (version 4).
    fn uuid(&self) -> Uuid;
    /// Fills `buf` with random bytes (API keys).
    fn fill(&self, buf: &mut [u8]);
}

/// Ids from the operating system's random generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn uuid(&self) -> Uuid {
        // `Uuid::new_v4` asks the kernel for every id (a getrandom syscall); the thread-local
        // ChaCha generator, seeded from the OS, is as unpredictable and costs no syscall.
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
    fn fill(&self, buf: &mut [u8]) {
        rand::thread_rng().fill_bytes(buf);
    }
}

/// Ids from a seeded generator: the same seed gives the same ids, for replayable tests.
#[derive(Debug)]
pub struct SeededIds {
    rng: Mutex<rand::rngs::StdRng>,
}

impl SeededIds {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SeededIds { rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)) }
    }

    /// The ids and secrets of the request with idempotency key `key` (a digest that only the
    /// request's sender can reproduce): a retry of a create after a crash makes the same object,
    /// found already there, instead of a second one, and a retried key rotation the same key.
    pub fn for_idempotency_key(key: &[u8; 32]) -> Self {
        let mut tagged = b"leasehold: ids of an idempotent request".to_vec();
        tagged.extend_from_slice(key);
        SeededIds { rng: Mutex::new(rand::rngs::StdRng::from_seed(sha256(&tagged))) }
    }
}

impl IdSource for SeededIds {
    fn uuid(&self) -> Uuid {
        let mut bytes = [0u8; 16];
        self.fill(&mut bytes);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
    fn fill(&self, buf: &mut [u8]) {
        // A poisoned lock only means another thread panicked mid-fill; the generator is still usable.
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        rng.fill_bytes(buf);
    }
}
