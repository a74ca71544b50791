//! Self-service sign-up (SPEC section 13): a registration e-mails a set-password token; the
//! token makes the account (a personal licensee and its user consumer) or gives it a new
//! password; the account's consumer claims the license of the registered tier.

use super::organization::{is_valid_email, new_token};
use super::platform::tier_license;
use super::{no_api_key, Engine};
use crate::directory::{Directory, DirectoryEvent};
use crate::error::AdminError;
use crate::events::Actor;
use crate::ids::{sha256, ConsumerId, LicenseeId, SignUpId};
use crate::model::{Account, Consumer, ConsumerKind, License, Licensee, LicenseeKind, SignUp};
use crate::time::Timestamp;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// How long a set-password token works.
pub const SET_PASSWORD_TTL_S: u64 = 24 * 3_600;

/// An address as accounts are keyed: trimmed, in lower case.
pub fn canonical_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The registration whose token is `token`, not used and in force at `now`, or why not.
fn usable<'d>(dir: &'d Directory, token: &str, now: Timestamp) -> Result<&'d SignUp, AdminError> {
    let digest = sha256(token.as_bytes());
    let found = dir.sign_up_by_token_hash(&digest).filter(|s| bool::from(s.token_sha256.ct_eq(&digest)));
    let sign_up = found.ok_or_else(|| AdminError::NotFound("set-password token".into()))?;
    match sign_up.password_set_at {
        Some(_) => Err(AdminError::Conflict("this set-password token was used".into())),
        None if sign_up.expires_at <= now => Err(AdminError::Expired("the set-password token expired".into())),
        None => Ok(sign_up),
    }
}

/// A claimed license, and whether this claim made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The license, as it is now.
    pub license: Arc<License>,
    /// Whether it was made now (`false`: the claim was fulfilled before).
    pub created: bool,
}

impl Engine {
    /// Registers `email` for `tier` of `product`: answers the registration and its set-password
    /// token (only here, for the e-mail).
    pub async fn register(&self, email: &str, product: &str, tier: &str) -> Result<(SignUp, String), AdminError> {
        let email = canonical_email(email);
        if !is_valid_email(&email) {
            return Err(AdminError::Invalid("email must be an address of at most 254 characters".into()));
        }
        let ids = std::sync::Arc::clone(&self.inner.shared.ids);
        let token = new_token("lhs_", &*ids);
        let sign_up = SignUp {
            id: SignUpId(ids.uuid()),
            email,
            product: product.to_owned(),
            tier: tier.to_owned(),
            token_sha256: sha256(token.as_bytes()),
            expires_at: self.now().plus_secs(SET_PASSWORD_TTL_S),
            password_set_at: None,
            license: None,
        };
        self.record_directory(|dir| {
            let found =
                dir.product_named(product).ok_or_else(|| AdminError::Invalid(format!("no product {product:?}")))?;
            if found.tier(tier).is_none() {
                return Err(AdminError::Invalid(format!("product {product:?} has no tier {tier:?}")));
            }
            Ok(DirectoryEvent::SignUp(sign_up.clone()))
        })
        .await?;
        Ok((sign_up, token))
    }

    /// Sets the password (its argon2id hash, `password_hash`) of the account the registration
    /// of `token` is for, making the account, its personal licensee and its consumer the first
    /// time. A token works once, until it expires.
    pub async fn set_password(&self, token: &str, password_hash: String) -> Result<Account, AdminError> {
        let at = self.now();
        let (consumer_id, licensee_id) = (ConsumerId(self.fresh_id()), LicenseeId(self.fresh_id()));
        let no_key = no_api_key(&*self.inner.shared.ids);
        let mut set = None;
        self.record_directory(|dir| {
            let sign_up = usable(dir, token, at)?;
            let (account, licensee, consumer) = match dir.account(&sign_up.email) {
                Some(account) => (Account { password_hash, ..account.clone() }, None, None),
                None => {
                    let licensee = Licensee {
                        id: licensee_id,
                        name: sign_up.email.clone(),
                        kind: LicenseeKind::Person,
                        external_id: None,
                    };
                    let consumer = Consumer {
                        id: consumer_id,
                        name: sign_up.email.clone(),
                        kind: ConsumerKind::User,
                        licensees: vec![licensee_id],
                        email: Some(sign_up.email.clone()),
                        api_key_sha256: no_key,
                        external_id: None,
                        disabled: false,
                        identity: None,
                    };
                    let account = Account { email: sign_up.email.clone(), consumer: consumer_id, password_hash };
                    (account, Some(licensee), Some(consumer))
                }
            };
            set = Some(account.clone());
            Ok(DirectoryEvent::PasswordSet { sign_up: sign_up.id, at, account, licensee, consumer })
        })
        .await?;
        Ok(set.expect("a recorded change set the password"))
    }

    /// Fulfils the oldest unclaimed registration of `consumer`'s account: a license of the
    /// registered tier's defaults, with a license key, for the account's personal licensee. With
    /// every registration claimed, answers the newest claim's license again.
    pub async fn claim_license(&self, consumer: ConsumerId) -> Result<Claimed, AdminError> {
        let ids = Arc::clone(&self.inner.shared.ids);
        let now = self.now();
        let mut made = None;
        let mut earlier = None;
        let by_consumer = self.acting_as(Actor::consumer(consumer));
        by_consumer
            .record_directory(|dir| {
                let account = dir.account_of(consumer).ok_or_else(|| AdminError::NotFound("account".into()))?;
                let sign_ups = dir.sign_ups_of(&account.email);
                let confirmed = sign_ups.iter().filter(|s| s.password_set_at.is_some());
                let Some(pending) = confirmed.clone().find(|s| s.license.is_none()) else {
                    earlier = confirmed.filter_map(|s| s.license).next_back();
                    return Err(AdminError::NotFound("unclaimed registration".into()));
                };
                let licensee = dir.consumer(consumer).and_then(|c| c.licensees.first().copied());
                let licensee = licensee.ok_or_else(|| AdminError::NotFound("the account's licensee".into()))?;
                let request = tier_license(dir, licensee, &pending.product, &pending.tier, now, None);
                let license = Arc::new(self.license_terms(request, dir, &*ids)?);
                made = Some(Arc::clone(&license));
                Ok(DirectoryEvent::Claimed { sign_up: pending.id, license })
            })
            .await
            .or_else(|e| match earlier.and_then(|id| self.license(id)) {
                Some(license) => {
                    made = Some(license);
                    Ok(())
                }
                None => Err(e),
            })?;
        let created = earlier.is_none();
        Ok(Claimed { license: made.expect("a claim answers a license"), created })
    }
}
