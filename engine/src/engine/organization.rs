//! The administration of organizations (SPEC section 12): the credentials of the admin API and
//! their roles.

use super::{check_name, Engine};
use crate::admin::NewCredential;
use crate::decide::Idempotency;
use crate::directory::DirectoryEvent;
use crate::error::AdminError;
use crate::ids::{sha256, CredentialId, IdSource};
use crate::model::Credential;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use subtle::ConstantTimeEq;

/// A fresh credential token: `lhc_` and 32 bytes from `ids` in base64url.
fn new_token(ids: &dyn IdSource) -> String {
    let mut secret = [0u8; 32];
    ids.fill(&mut secret);
    format!("lhc_{}", URL_SAFE_NO_PAD.encode(secret))
}

impl Engine {
    /// Creates a credential; its token is returned only here (only its digest is kept).
    pub async fn create_credential(&self, new: NewCredential) -> Result<(Credential, String), AdminError> {
        self.new_credential(new, None).await
    }

    /// Creates a credential for the request with `idempotency`: its retry answers the credential
    /// it created and the same token (derived from the key, never stored).
    pub async fn create_credential_once(
        &self,
        idempotency: &Idempotency,
        new: NewCredential,
    ) -> Result<(Credential, String), AdminError> {
        self.new_credential(new, Some(idempotency)).await
    }

    async fn new_credential(
        &self,
        new: NewCredential,
        once: Option<&Idempotency>,
    ) -> Result<(Credential, String), AdminError> {
        check_name("name", &new.name)?;
        new.check_scope()?;
        let ids = self.ids_for(once);
        let token = new_token(&*ids);
        let mut credential = Credential {
            id: CredentialId(ids.uuid()),
            name: new.name,
            role: new.role,
            licensee: new.licensee,
            token_sha256: sha256(token.as_bytes()),
        };
        self.record_directory(|dir| {
            if let Some(created) = dir.credential(credential.id) {
                credential = created.clone();
            } else if let Some(licensee) = credential.licensee.filter(|l| dir.licensee(*l).is_none()) {
                return Err(AdminError::NotFound(format!("licensee {licensee}")));
            }
            Ok(DirectoryEvent::Credential(credential.clone()))
        })
        .await?;
        Ok((credential, token))
    }

    /// Deletes credential `id`: its token is refused from the moment this returns.
    pub async fn delete_credential(&self, id: CredentialId) -> Result<(), AdminError> {
        self.record_directory(|dir| {
            dir.credential(id).ok_or_else(|| AdminError::NotFound(format!("credential {id}")))?;
            Ok(DirectoryEvent::CredentialDeleted(id))
        })
        .await
    }

    /// The credential whose token is `token`, if any. The digest found is compared with the
    /// token's in constant time, so the answer's timing says nothing about a near miss.
    pub fn credential_for_token(&self, token: &str) -> Option<Credential> {
        let digest = sha256(token.as_bytes());
        let directory = self.directory();
        let found = directory.credential_by_token_hash(&digest)?;
        bool::from(found.token_sha256.ct_eq(&digest)).then(|| found.clone())
    }
}
