//! Consumers signed in by an identity provider (SPEC section 13): the first time an account
//! signs in, its consumer is made, in the licensee its token names or in a personal licensee of
//! its own; afterwards the account is that consumer.

use super::organization::is_valid_email;
use super::{no_api_key, Engine};
use crate::directory::DirectoryEvent;
use crate::error::AdminError;
use crate::events::Actor;
use crate::ids::{ConsumerId, LicenseeId};
use crate::model::catalog::is_valid_name;
use crate::model::{ConnectedIdentity, Consumer, ConsumerKind, Licensee, LicenseeKind};

/// What a verified token says about who signs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    /// The account.
    pub identity: ConnectedIdentity,
    /// Its e-mail address, when the token has one.
    pub email: Option<String>,
    /// The `external_id` of the licensee a new consumer joins, when the token names one.
    pub licensee_ref: Option<String>,
    /// What the issuer's consumers are.
    pub kind: ConsumerKind,
}

impl SignIn {
    /// The e-mail address, when it is one.
    fn email(&self) -> Option<&str> {
        self.email.as_deref().filter(|e| is_valid_email(e))
    }

    /// What a new consumer (and its personal licensee) is called: its address, or its subject.
    fn display_name(&self) -> String {
        let subject = &self.identity.subject;
        let name = self.email().unwrap_or(subject);
        if is_valid_name(name) {
            name.to_owned()
        } else {
            format!("{} user", self.identity.issuer.chars().take(100).collect::<String>())
        }
    }
}

/// How a first sign-in stopped short of making a consumer.
enum NotMade {
    /// Another request made it meanwhile.
    Existing(ConsumerId),
    /// It was refused.
    Refused(AdminError),
}

impl From<AdminError> for NotMade {
    fn from(e: AdminError) -> Self {
        NotMade::Refused(e)
    }
}

impl Engine {
    /// The consumer `who` signs in as, made now the first time its account signs in; `None` when
    /// that consumer is disabled.
    pub async fn sign_in(&self, who: &SignIn) -> Result<Option<ConsumerId>, AdminError> {
        let enabled = |c: &Consumer| (!c.disabled).then_some(c.id);
        if let Some(found) = self.directory().consumer_by_identity(&who.identity) {
            return Ok(enabled(found));
        }
        let id = ConsumerId(self.fresh_id());
        let personal = LicenseeId(self.fresh_id());
        let no_key = no_api_key(&*self.inner.shared.ids);
        let name = who.display_name();
        let by_consumer = self.acting_as(Actor::consumer(id));
        let made = by_consumer.record_directory_or(|dir| {
            if let Some(found) = dir.consumer_by_identity(&who.identity) {
                return Err(NotMade::Existing(found.id));
            }
            let joined = who.licensee_ref.as_deref().and_then(|r| dir.licensee_by_external_id(r)).map(|l| l.id);
            let licensee = match joined {
                Some(_) => None,
                None => {
                    Some(Licensee { id: personal, name: name.clone(), kind: LicenseeKind::Person, external_id: None })
                }
            };
            let consumer = Consumer {
                id,
                name,
                kind: who.kind,
                licensees: vec![joined.unwrap_or(personal)],
                email: who.email().map(str::to_owned),
                api_key_sha256: no_key,
                external_id: None,
                disabled: false,
                identity: Some(who.identity.clone()),
            };
            Ok(DirectoryEvent::SignedUp { licensee, consumer })
        });
        match made.await {
            Ok(()) => Ok(Some(id)),
            Err(NotMade::Existing(found)) => Ok(self.directory().consumer(found).and_then(enabled)),
            Err(NotMade::Refused(e)) => Err(e),
        }
    }
}
