//! The administration of organizations (SPEC section 12): the credentials of the admin API and
//! their roles, groups of users and device clients, entitlements, and invitations to groups.

use super::{check_name, new_api_key, Engine};
use crate::admin::{EntitlementPatch, LicensePatch, NewCredential, NewEntitlement, NewGroup};
use crate::decide::Idempotency;
use crate::directory::{Directory, DirectoryEvent};
use crate::error::AdminError;
use crate::ids::{
    sha256, ConsumerId, CredentialId, EntitlementId, GroupId, IdSource, InvitationId, LicenseId, LicenseeId,
};
use crate::model::{Consumer, ConsumerKind, Credential, Entitlement, Group, Invitation, InvitationAnswer, License};
use crate::time::Timestamp;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// A fresh bearer token: `prefix` (which says what it is for: `lhc_` a credential, `lhi_` an
/// invitation) and 32 bytes from `ids` in base64url.
pub(super) fn new_token(prefix: &str, ids: &dyn IdSource) -> String {
    let mut secret = [0u8; 32];
    ids.fill(&mut secret);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(secret))
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
        let token = new_token("lhc_", &*ids);
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

/// A consumer of a group's licensee and kind, or why not.
fn check_member(dir: &Directory, group: &Group, consumer: ConsumerId) -> Result<(), AdminError> {
    let found = dir.consumer(consumer).filter(|c| c.licensees.contains(&group.licensee));
    let found = found.ok_or_else(|| AdminError::NotFound(format!("consumer {consumer} of the group's licensee")))?;
    if found.kind != group.kind {
        return Err(AdminError::Invalid(format!(
            "group {} holds {} consumers; consumer {consumer} is not one",
            group.id,
            kind_name(group.kind)
        )));
    }
    Ok(())
}

fn kind_name(kind: ConsumerKind) -> &'static str {
    match kind {
        ConsumerKind::User => "user",
        ConsumerKind::Device => "device",
    }
}

/// Refuses groups that are not `licensee`'s.
fn check_groups(dir: &Directory, licensee: LicenseeId, groups: &[GroupId]) -> Result<(), AdminError> {
    match groups.iter().find(|g| dir.group(**g).is_none_or(|g| g.licensee != licensee)) {
        Some(unknown) => Err(AdminError::NotFound(format!("group {unknown} of the entitlement's licensee"))),
        None => Ok(()),
    }
}

impl Engine {
    /// Creates a group of `licensee`'s users or device clients (with the ids of the request
    /// `once`, when given, so that its retry finds the group).
    pub async fn create_group(
        &self,
        licensee: LicenseeId,
        new: NewGroup,
        once: Option<&Idempotency>,
    ) -> Result<Group, AdminError> {
        check_name("name", &new.name)?;
        let id = GroupId(self.ids_for(once).uuid());
        let mut group = Group { id, licensee, name: new.name, kind: new.kind, members: Default::default() };
        self.record_directory(|dir| {
            if let Some(created) = dir.group(id) {
                group = created.clone();
            } else if dir.licensee(licensee).is_none() {
                return Err(AdminError::NotFound(format!("licensee {licensee}")));
            }
            Ok(DirectoryEvent::Group(group.clone()))
        })
        .await?;
        Ok(group)
    }

    /// Deletes a group: its members leave it and its entitlements no longer name it.
    pub async fn delete_group(&self, id: GroupId) -> Result<(), AdminError> {
        self.record_directory(|dir| {
            dir.group(id).ok_or_else(|| AdminError::NotFound(format!("group {id}")))?;
            Ok(DirectoryEvent::GroupDeleted(id))
        })
        .await
    }

    /// Adds `consumer` (of the group's licensee and kind) to group `id`; adding a member again
    /// changes nothing.
    pub async fn add_member(&self, id: GroupId, consumer: ConsumerId) -> Result<Group, AdminError> {
        let mut after = None;
        self.record_directory(|dir| {
            let group = dir.group(id).ok_or_else(|| AdminError::NotFound(format!("group {id}")))?;
            check_member(dir, group, consumer)?;
            let mut changed = group.clone();
            changed.members.insert(consumer);
            after = Some(changed);
            Ok(DirectoryEvent::MemberAdded { group: id, consumer })
        })
        .await?;
        Ok(after.expect("a recorded change was made"))
    }

    /// Takes `consumer` out of group `id` (404 when it is not a member).
    pub async fn remove_member(&self, id: GroupId, consumer: ConsumerId) -> Result<(), AdminError> {
        self.record_directory(|dir| {
            let group = dir.group(id).ok_or_else(|| AdminError::NotFound(format!("group {id}")))?;
            if !group.members.contains(&consumer) {
                return Err(AdminError::NotFound(format!("consumer {consumer} in group {id}")));
            }
            Ok(DirectoryEvent::MemberRemoved { group: id, consumer })
        })
        .await
    }

    /// Creates an entitlement of `licensee` whose licenses the members of `new.groups` (the
    /// licensee's) may use.
    pub async fn create_entitlement(
        &self,
        licensee: LicenseeId,
        new: NewEntitlement,
        once: Option<&Idempotency>,
    ) -> Result<Entitlement, AdminError> {
        check_name("name", &new.name)?;
        let id = EntitlementId(self.ids_for(once).uuid());
        let mut entitlement = Entitlement { id, licensee, name: new.name, groups: dedup(new.groups) };
        self.record_directory(|dir| {
            if let Some(created) = dir.entitlement(id) {
                entitlement = created.clone();
            } else {
                dir.licensee(licensee).ok_or_else(|| AdminError::NotFound(format!("licensee {licensee}")))?;
                check_groups(dir, licensee, &entitlement.groups)?;
            }
            Ok(DirectoryEvent::Entitlement(entitlement.clone()))
        })
        .await?;
        Ok(entitlement)
    }

    /// Renames an entitlement or replaces its groups.
    pub async fn patch_entitlement(
        &self,
        id: EntitlementId,
        patch: EntitlementPatch,
    ) -> Result<Entitlement, AdminError> {
        if let Some(name) = &patch.name {
            check_name("name", name)?;
        }
        let mut after = None;
        self.record_directory(|dir| {
            let mut entitlement =
                dir.entitlement(id).cloned().ok_or_else(|| AdminError::NotFound(format!("entitlement {id}")))?;
            if let Some(name) = &patch.name {
                entitlement.name = name.clone();
            }
            if let Some(groups) = &patch.groups {
                check_groups(dir, entitlement.licensee, groups)?;
                entitlement.groups = dedup(groups.clone());
            }
            after = Some(entitlement.clone());
            Ok(DirectoryEvent::Entitlement(entitlement))
        })
        .await?;
        Ok(after.expect("a recorded change was made"))
    }

    /// Deletes an entitlement that holds no license (taking licenses out of one would open them
    /// to every consumer of the licensee, so that is done license by license).
    pub async fn delete_entitlement(&self, id: EntitlementId) -> Result<(), AdminError> {
        self.record_directory(|dir| {
            let entitlement = dir.entitlement(id).ok_or_else(|| AdminError::NotFound(format!("entitlement {id}")))?;
            let held = dir.licenses_of(entitlement.licensee).filter(|l| l.entitlement == Some(id)).count();
            if held > 0 {
                return Err(AdminError::Conflict(format!(
                    "{held} licenses are in the entitlement; move them out first"
                )));
            }
            Ok(DirectoryEvent::EntitlementDeleted(id))
        })
        .await
    }

    /// Puts license `license` in entitlement `entitlement` (one of its licensee's), or with
    /// `None` takes it out of the one it is in.
    pub async fn set_entitlement(
        &self,
        license: LicenseId,
        entitlement: Option<EntitlementId>,
    ) -> Result<Arc<License>, AdminError> {
        let patch = LicensePatch { entitlement: Some(entitlement), ..LicensePatch::default() };
        self.patch_license(license, patch).await
    }
}

fn dedup(mut groups: Vec<GroupId>) -> Vec<GroupId> {
    let mut seen = std::collections::HashSet::new();
    groups.retain(|g| seen.insert(*g));
    groups
}

/// How long an invitation may be accepted when its creator does not say.
pub const INVITATION_TTL_S: u64 = 7 * 24 * 3_600;

/// The longest an invitation may be valid.
pub const MAX_INVITATION_TTL_S: u64 = 90 * 24 * 3_600;

/// Who accepts an invitation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acceptance {
    /// An existing consumer (by its own API key).
    Consumer(ConsumerId),
    /// A new user consumer of the group's licensee, with this name.
    NewUser {
        /// Its display name.
        name: String,
    },
}

/// The pending invitation whose token is `token` at `now`, or why it cannot be answered.
fn pending<'d>(dir: &'d Directory, token: &str, now: Timestamp) -> Result<&'d Invitation, AdminError> {
    let digest = sha256(token.as_bytes());
    let found = dir.invitation_by_token_hash(&digest).filter(|i| bool::from(i.token_sha256.ct_eq(&digest)));
    let invitation = found.ok_or_else(|| AdminError::NotFound("invitation".into()))?;
    match invitation.answer {
        Some(InvitationAnswer::Accepted { .. }) => Err(AdminError::Conflict("the invitation was accepted".into())),
        Some(InvitationAnswer::Declined { .. }) => Err(AdminError::Conflict("the invitation was declined".into())),
        None if invitation.expires_at <= now => Err(AdminError::Expired("the invitation expired".into())),
        None => Ok(invitation),
    }
}

impl Engine {
    /// Invites `email` to group `group` for `ttl_s` seconds (default [`INVITATION_TTL_S`]); the
    /// token is returned only here (derived from the key of the request `once`, when given).
    pub async fn create_invitation(
        &self,
        group: GroupId,
        email: String,
        ttl_s: Option<u64>,
        once: Option<&Idempotency>,
    ) -> Result<(Invitation, String), AdminError> {
        if !is_valid_email(&email) {
            return Err(AdminError::Invalid("email must be an address of at most 254 characters".into()));
        }
        let ttl_s = ttl_s.unwrap_or(INVITATION_TTL_S);
        if !(1..=MAX_INVITATION_TTL_S).contains(&ttl_s) {
            return Err(AdminError::Invalid(format!("expires_in_s must be 1 to {MAX_INVITATION_TTL_S}")));
        }
        let ids = self.ids_for(once);
        let token = new_token("lhi_", &*ids);
        let mut invitation = Invitation {
            id: InvitationId(ids.uuid()),
            group,
            email,
            token_sha256: sha256(token.as_bytes()),
            expires_at: self.now().plus_millis(i64::try_from(ttl_s.saturating_mul(1_000)).unwrap_or(i64::MAX)),
            answer: None,
        };
        self.record_directory(|dir| {
            if let Some(created) = dir.invitation(invitation.id) {
                invitation = created.clone();
            } else if dir.group(group).is_none() {
                return Err(AdminError::NotFound(format!("group {group}")));
            }
            Ok(DirectoryEvent::Invitation(invitation.clone()))
        })
        .await?;
        Ok((invitation, token))
    }

    /// Accepts the invitation whose token is `token`: the consumer joins the group (and its
    /// licensee), or a new user consumer is made in it. Answers the consumer, and the new
    /// consumer's API key (only here). A token works once.
    pub async fn accept_invitation(
        &self,
        token: &str,
        by: Acceptance,
    ) -> Result<(Consumer, Option<String>), AdminError> {
        let fresh_key = matches!(by, Acceptance::NewUser { .. }).then(|| new_api_key(&*self.inner.shared.ids));
        let fresh_id = ConsumerId(self.fresh_id());
        let at = self.now();
        let mut joined = None;
        self.record_directory(|dir| {
            let invitation = pending(dir, token, at)?;
            let group =
                dir.group(invitation.group).ok_or_else(|| AdminError::NotFound("the invitation's group".into()))?;
            let consumer = match &by {
                Acceptance::Consumer(id) => {
                    let mut consumer =
                        dir.consumer(*id).cloned().ok_or_else(|| AdminError::NotFound(format!("consumer {id}")))?;
                    if consumer.kind != group.kind {
                        return Err(AdminError::Invalid("the group holds consumers of another kind".into()));
                    }
                    if !consumer.licensees.contains(&group.licensee) {
                        consumer.licensees.push(group.licensee);
                    }
                    consumer
                }
                Acceptance::NewUser { name } => {
                    check_name("name", name)?;
                    if group.kind != ConsumerKind::User {
                        return Err(AdminError::Invalid("a device client group takes existing devices only".into()));
                    }
                    Consumer {
                        id: fresh_id,
                        name: name.clone(),
                        kind: ConsumerKind::User,
                        licensees: vec![group.licensee],
                        email: Some(invitation.email.clone()),
                        api_key_sha256: sha256(fresh_key.as_deref().unwrap_or_default().as_bytes()),
                        external_id: None,
                        disabled: false,
                        identity: None,
                    }
                }
            };
            joined = Some(consumer.clone());
            Ok(DirectoryEvent::InvitationAccepted { invitation: invitation.id, consumer, at })
        })
        .await?;
        Ok((joined.expect("a recorded change was made"), fresh_key))
    }

    /// Declines the invitation whose token is `token`; it cannot be accepted afterwards.
    pub async fn decline_invitation(&self, token: &str) -> Result<(), AdminError> {
        let at = self.now();
        self.record_directory(|dir| {
            let invitation = pending(dir, token, at)?;
            Ok(DirectoryEvent::InvitationDeclined { invitation: invitation.id, at })
        })
        .await
    }
}

/// A plausible e-mail address: one `@` with text either side, printable, at most 254 bytes.
pub(super) fn is_valid_email(email: &str) -> bool {
    let ok_chars = email.chars().all(|c| c.is_ascii_graphic() || (!c.is_ascii() && !c.is_control()));
    matches!(email.split_once('@'), Some((local, domain)) if !local.is_empty() && domain.contains('.') && !domain.contains('@'))
        && email.len() <= 254
        && ok_chars
}
