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

/// The most partitions licenses can be spread over: a partition is named by 16 bits.
pub const MAX_PARTITIONS: u32 = 1 << 16;

/// Where the 16 bits that place a license in a partition are in a UUID: its last two bytes,
/// random in a version-4 UUID.
const ROUTE_BYTES: std::ops::Range<usize> = 14..16;

/// The partition, of `partitions` (clamped to 1 to [`MAX_PARTITIONS`]), that `uuid`'s route bits
/// name.
fn partition_of(uuid: &Uuid, partitions: u32) -> u32 {
    let bytes = uuid.as_bytes();
    let route = u16::from_be_bytes([bytes[ROUTE_BYTES.start], bytes[ROUTE_BYTES.start + 1]]);
    u32::from(route) % partitions.clamp(1, MAX_PARTITIONS)
}

impl LicenseId {
    /// A license id made from the fresh UUID `uuid` for a license of `licensee`: `uuid` with its
    /// route bits taken from the licensee, so that a licensee's licenses share a partition
    /// whatever the partition count. What reads or changes several licenses of a licensee at
    /// once (its `describe-*` reads, the sibling rule of license keys, its entitlements) then
    /// stays within one partition, on one node of a cluster. A version-4 UUID keeps 106 random
    /// bits.
    pub fn placed(uuid: Uuid, licensee: LicenseeId) -> Self {
        let mut bytes = *uuid.as_bytes();
        bytes[ROUTE_BYTES].copy_from_slice(&sha256(licensee.0.as_bytes())[..2]);
        LicenseId(Uuid::from_bytes(bytes))
    }

    /// The partition, of `partitions` (1 to [`MAX_PARTITIONS`]), the license is in (SPEC section
    /// 14): its route bits modulo the count. Its leases carry the same bits
    /// ([`LeaseId::for_license`]), so a renewal or a release finds the partition from the lease
    /// id alone.
    pub fn partition(self, partitions: u32) -> u32 {
        partition_of(&self.0, partitions)
    }
}

impl LeaseId {
    /// A lease id of license `license` made from the fresh UUID `uuid`: `uuid` with its last two
    /// bytes replaced by the license's route bits (a version-4 UUID keeps 106 random bits).
    pub fn for_license(uuid: Uuid, license: LicenseId) -> Self {
        let mut bytes = *uuid.as_bytes();
        bytes[ROUTE_BYTES].copy_from_slice(&license.0.as_bytes()[ROUTE_BYTES]);
        LeaseId(Uuid::from_bytes(bytes))
    }

    /// The partition, of `partitions`, of the license that holds this lease (see
    /// [`LicenseId::partition`]).
    pub fn partition(self, partitions: u32) -> u32 {
        partition_of(&self.0, partitions)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_lease_is_in_its_licenses_partition_whatever_the_count(
            license in any::<u128>(),
            fresh in any::<[u8; 16]>(),
            partitions in 1u32..=MAX_PARTITIONS,
        ) {
            let license = LicenseId(uuid::Builder::from_random_bytes(license.to_be_bytes()).into_uuid());
            let fresh = uuid::Builder::from_random_bytes(fresh).into_uuid();
            let lease = LeaseId::for_license(fresh, license);
            prop_assert_eq!(lease.partition(partitions), license.partition(partitions));
            prop_assert!(license.partition(partitions) < partitions);
            // Still a version-4 UUID, random but for the license's route bits.
            prop_assert_eq!(lease.0.get_version_num(), 4);
            prop_assert_eq!(&lease.0.as_bytes()[..14], &fresh.as_bytes()[..14]);
        }

        #[test]
        fn a_licensees_licenses_share_a_partition_whatever_the_count(
            licensee in any::<u128>(),
            first in any::<[u8; 16]>(),
            second in any::<[u8; 16]>(),
            partitions in 1u32..=MAX_PARTITIONS,
        ) {
            let licensee = LicenseeId(uuid::Uuid::from_u128(licensee));
            let fresh = |bytes| uuid::Builder::from_random_bytes(bytes).into_uuid();
            let (a, b) = (LicenseId::placed(fresh(first), licensee), LicenseId::placed(fresh(second), licensee));
            prop_assert_eq!(a.partition(partitions), b.partition(partitions));
            prop_assert_eq!(a.0.get_version_num(), 4);
            let fresh_first = fresh(first);
            prop_assert_eq!(&a.0.as_bytes()[..14], &fresh_first.as_bytes()[..14]);
        }
    }

    #[test]
    fn licenses_spread_over_the_partitions() {
        let ids = SeededIds::new(7);
        let mut counts = [0u32; 64];
        for _ in 0..64_000 {
            counts[LicenseId(ids.uuid()).partition(64) as usize] += 1;
        }
        // 1,000 expected in each; a partition outside 800..1,200 would mean the bits are not random.
        assert!(counts.iter().all(|n| (800..1_200).contains(n)), "{counts:?}");
    }
}
