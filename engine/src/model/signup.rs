//! Self-service sign-up (SPEC section 13): a person registers an e-mail address for a product's
//! tier, sets a password with the token e-mailed to them, logs in and claims the license.

use crate::ids::{ConsumerId, LicenseId, SignUpId};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// One registration: what was asked for, the set-password token sent for it (kept as a digest),
/// and how far it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignUp {
    /// Its id.
    pub id: SignUpId,
    /// The address registered, in lower case.
    pub email: String,
    /// The product's name.
    pub product: String,
    /// The tier whose defaults the license gets.
    pub tier: String,
    /// SHA-256 of the set-password token e-mailed; the token is never stored.
    pub token_sha256: [u8; 32],
    /// After this the token no longer sets a password.
    pub expires_at: Timestamp,
    /// When the token was used (it works once).
    pub password_set_at: Option<Timestamp>,
    /// The license that fulfilled the claim, once claimed.
    pub license: Option<LicenseId>,
}

/// A person who set a password: their address, the consumer they log in as, and the password as
/// an argon2id hash (PHC string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The address, in lower case.
    pub email: String,
    /// The consumer (a user of their personal licensee).
    pub consumer: ConsumerId,
    /// The password's argon2id hash, in the PHC string format.
    pub password_hash: String,
}
