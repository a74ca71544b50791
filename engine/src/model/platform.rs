//! The platform's license keys and machine activations (SPEC section 13,
//! `seeds/platform-features.txt`): a license key is a signed token naming a license; each
//! machine that activates it holds one seat under a client id.

use crate::ids::{ClientId, LicenseId};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The claims of the key token last issued for a license, kept for audits: what the token says,
/// to compare with what the license says now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyToken {
    /// The license the token names.
    pub license: LicenseId,
    /// Its claims, as the JSON object that was signed.
    pub claims_json: String,
    /// When it was issued.
    pub issued_at: Timestamp,
}

/// A machine's activation of a license key: the machine holds one of the license's seats, and
/// renews it by its client id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineActivation {
    /// Its id: random, so that only the machine (and an admin) knows it, and the same while the
    /// machine stays activated.
    pub client_id: ClientId,
    /// The activated license.
    pub license: LicenseId,
    /// The machine's identifier, the hardware id of its lease.
    pub machine_id: String,
    /// The RSA public key the machine's tokens are encrypted to, as the client sent it.
    pub public_key: Option<String>,
    /// The address it activated from.
    pub ip: Option<IpAddr>,
    /// When it (last) activated.
    pub activated_at: Timestamp,
}

impl MachineActivation {
    /// Whether this activation's tokens are JWEs.
    pub fn encrypted(&self) -> bool {
        self.public_key.is_some()
    }
}
