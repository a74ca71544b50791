//! Who may use what: licensees, consumers (by API key), products and the licenses' terms,
//! indexed for the one question every consume asks first: which licenses may this consumer use
//! for this item?
//!
//! Plain data changed only through [`Directory::apply`], so the journal can rebuild it.

use crate::decide::{Denial, ErrorCode, LicenseFilters};
use crate::hashing::Map;
use crate::ids::{
    ActivationBatchId, ClientId, ConsumerId, CredentialId, EntitlementId, GroupId, InvitationId, LicenseId, LicenseeId,
    ProductId, SignUpId, WebhookId,
};
use crate::model::{
    Account, ActivationBatch, ConnectedIdentity, Consumer, Credential, Entitlement, Group, Invitation,
    InvitationAnswer, KeyToken, License, LicenseStatus, Licensee, MachineActivation, Product, Redemption, SignUp,
};
use crate::stored_answers::{AnswerBook, StoredAnswer};
use crate::time::Timestamp;
use crate::webhooks::Webhook;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A change to the directory, as journaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DirectoryEvent {
    /// A licensee was created or renamed.
    Licensee(Licensee),
    /// A consumer was created or changed.
    Consumer(Consumer),
    /// A product was created or changed.
    Product(Product),
    /// A licensee was deleted (it had no licenses or consumers left).
    LicenseeDeleted(LicenseeId),
    /// A consumer was deleted (its leases ended first).
    ConsumerDeleted(ConsumerId),
    /// A request with an idempotency key was answered (see [`crate::answers`]).
    Answered {
        /// [`crate::stored_answers::answer_key`] of the request.
        key: [u8; 32],
        /// The answer.
        answer: StoredAnswer,
    },
    /// A webhook was created or changed.
    Webhook(Webhook),
    /// A webhook was deleted.
    WebhookDeleted(WebhookId),
    /// A credential of the admin API was created.
    Credential(Credential),
    /// A credential was deleted (revoked).
    CredentialDeleted(CredentialId),
    /// A group was created (with no members).
    Group(Group),
    /// A group was deleted: its memberships end and its entitlements no longer name it.
    GroupDeleted(GroupId),
    /// A consumer joined a group.
    MemberAdded {
        /// The group.
        group: GroupId,
        /// The consumer.
        consumer: ConsumerId,
    },
    /// A consumer left a group.
    MemberRemoved {
        /// The group.
        group: GroupId,
        /// The consumer.
        consumer: ConsumerId,
    },
    /// An entitlement was created or changed.
    Entitlement(Entitlement),
    /// An entitlement was deleted (no license was in it).
    EntitlementDeleted(EntitlementId),
    /// An invitation to a group was made.
    Invitation(Invitation),
    /// An invitation was accepted: `consumer` (new, or as it is now with the group's licensee)
    /// joined its group.
    InvitationAccepted {
        /// The invitation.
        invitation: InvitationId,
        /// Who accepted, as it is after joining.
        consumer: Consumer,
        /// When.
        at: Timestamp,
    },
    /// An invitation was declined.
    InvitationDeclined {
        /// The invitation.
        invitation: InvitationId,
        /// When.
        at: Timestamp,
    },
    /// A batch of activation codes was made.
    ActivationBatch(ActivationBatch),
    /// A consumer signed in for the first time with an identity provider's token: it was made,
    /// with the personal licensee made for it, if any, in one change.
    SignedUp {
        /// Its new personal licensee.
        licensee: Option<Licensee>,
        /// The consumer.
        consumer: Consumer,
    },
    /// A person registered for a product's tier (a set-password token was e-mailed).
    SignUp(SignUp),
    /// A registration's token set a password: the account, made (with its personal licensee and
    /// consumer) at its first password, or with a new password.
    PasswordSet {
        /// The registration whose token was used.
        sign_up: SignUpId,
        /// When.
        at: Timestamp,
        /// The account after the change.
        account: Account,
        /// Its new personal licensee, at the first password.
        licensee: Option<Licensee>,
        /// Its new consumer, at the first password.
        consumer: Option<Consumer>,
    },
    /// A registration's claim was fulfilled with a new license, in one change.
    Claimed {
        /// The registration.
        sign_up: SignUpId,
        /// The license.
        license: Arc<License>,
    },
    /// An activation code was redeemed: the redemption and the license it made, in one change,
    /// so that a code's use and its license are durable together or not at all.
    ActivationCodeRedeemed {
        /// The code's batch.
        batch: ActivationBatchId,
        /// The code's place in its batch.
        code: u32,
        /// Who redeemed it, when, and which license it made.
        redemption: Redemption,
        /// The license.
        license: Arc<License>,
    },
    /// A license key was issued to a customer: the license, with the customer's person licensee
    /// when it was made for it, in one change.
    LicenseIssued {
        /// The customer's new licensee.
        licensee: Option<Licensee>,
        /// The license.
        license: Arc<License>,
    },
    /// A key token was issued for a license (the platform's `POST /license-keys`).
    KeyTokenIssued(KeyToken),
    /// A machine activated a license key, or activated it again with another public key or
    /// from another address.
    MachineActivated(MachineActivation),
    /// A machine's activation ended (its seat was released).
    MachineDeactivated(ClientId),
}

impl DirectoryEvent {
    /// The license this change makes, when it makes one (a redemption, a claim): it needs its
    /// live state, as a license created on its own gets.
    pub fn new_license(&self) -> Option<&Arc<License>> {
        match self {
            DirectoryEvent::ActivationCodeRedeemed { license, .. }
            | DirectoryEvent::Claimed { license, .. }
            | DirectoryEvent::LicenseIssued { license, .. } => Some(license),
            _ => None,
        }
    }

    /// Whether it changes what API keys authenticate (a consumer made, changed or deleted).
    pub fn changes_credentials(&self) -> bool {
        matches!(self, DirectoryEvent::Consumer(_) | DirectoryEvent::ConsumerDeleted(_))
    }
}

/// The directory of parties, products and license terms.
#[derive(Debug, Default, Clone)]
pub struct Directory {
    licensees: Map<LicenseeId, Licensee>,
    consumers: Map<ConsumerId, Consumer>,
    consumers_by_key: Map<[u8; 32], ConsumerId>,
    consumers_by_identity: Map<ConnectedIdentity, ConsumerId>,
    products: Map<ProductId, Product>,
    products_by_name: Map<String, ProductId>,
    licenses: Map<LicenseId, Arc<License>>,
    licenses_by_licensee: Map<LicenseeId, Vec<LicenseId>>,
    licenses_by_key: Map<String, LicenseId>,
    answers: AnswerBook,
    webhooks: Map<WebhookId, Webhook>,
    credentials: Map<CredentialId, Credential>,
    credentials_by_token: Map<[u8; 32], CredentialId>,
    groups: Map<GroupId, Group>,
    /// The groups each consumer is in.
    memberships: Map<ConsumerId, Vec<GroupId>>,
    entitlements: Map<EntitlementId, Entitlement>,
    invitations: Map<InvitationId, Invitation>,
    invitations_by_token: Map<[u8; 32], InvitationId>,
    activation_batches: Map<ActivationBatchId, ActivationBatch>,
    /// Each code's batch and place in it, by the code's digest.
    activation_codes: Map<[u8; 32], (ActivationBatchId, u32)>,
    sign_ups: Map<SignUpId, SignUp>,
    sign_ups_by_token: Map<[u8; 32], SignUpId>,
    /// Accounts by their address (lower case).
    accounts: Map<String, Account>,
    key_tokens: Map<LicenseId, KeyToken>,
    machine_activations: Map<ClientId, MachineActivation>,
}

impl Directory {
    /// Applies a directory change.
    pub fn apply(&mut self, event: &DirectoryEvent) {
        match event {
            DirectoryEvent::Licensee(l) => {
                self.licensees.insert(l.id, l.clone());
            }
            DirectoryEvent::Consumer(c) => {
                if let Some(old) = self.consumers.insert(c.id, c.clone()) {
                    self.consumers_by_key.remove(&old.api_key_sha256);
                    if let Some(identity) = &old.identity {
                        self.consumers_by_identity.remove(identity);
                    }
                }
                self.consumers_by_key.insert(c.api_key_sha256, c.id);
                if let Some(identity) = &c.identity {
                    self.consumers_by_identity.insert(identity.clone(), c.id);
                }
                // A consumer that left a licensee leaves its groups.
                let left: Vec<GroupId> =
                    self.groups_of(c.id).filter(|g| !c.licensees.contains(&g.licensee)).map(|g| g.id).collect();
                for group in left {
                    self.leave(group, c.id);
                }
            }
            DirectoryEvent::Product(p) => {
                if let Some(old) = self.products.insert(p.id, p.clone()) {
                    self.products_by_name.remove(&old.name);
                }
                self.products_by_name.insert(p.name.clone(), p.id);
            }
            DirectoryEvent::LicenseeDeleted(id) => {
                self.licensees.remove(id);
                self.licenses_by_licensee.remove(id);
            }
            DirectoryEvent::ConsumerDeleted(id) => {
                if let Some(old) = self.consumers.remove(id) {
                    self.consumers_by_key.remove(&old.api_key_sha256);
                    if let Some(identity) = &old.identity {
                        self.consumers_by_identity.remove(identity);
                    }
                }
                for group in self.memberships.remove(id).unwrap_or_default() {
                    if let Some(group) = self.groups.get_mut(&group) {
                        group.members.remove(id);
                    }
                }
            }
            DirectoryEvent::Answered { key, answer } => self.answers.record(*key, answer.clone()),
            DirectoryEvent::Webhook(w) => {
                self.webhooks.insert(w.id, w.clone());
            }
            DirectoryEvent::WebhookDeleted(id) => {
                self.webhooks.remove(id);
            }
            DirectoryEvent::Credential(c) => {
                if let Some(old) = self.credentials.insert(c.id, c.clone()) {
                    self.credentials_by_token.remove(&old.token_sha256);
                }
                self.credentials_by_token.insert(c.token_sha256, c.id);
            }
            DirectoryEvent::CredentialDeleted(id) => {
                if let Some(old) = self.credentials.remove(id) {
                    self.credentials_by_token.remove(&old.token_sha256);
                }
            }
            DirectoryEvent::Group(g) => {
                for member in &g.members {
                    self.memberships.entry(*member).or_default().push(g.id);
                }
                self.groups.insert(g.id, g.clone());
            }
            DirectoryEvent::GroupDeleted(id) => {
                let members = self.groups.get(id).map(|g| g.members.clone()).unwrap_or_default();
                for member in members {
                    self.leave(*id, member);
                }
                self.groups.remove(id);
                for entitlement in self.entitlements.values_mut() {
                    entitlement.groups.retain(|g| g != id);
                }
            }
            DirectoryEvent::MemberAdded { group, consumer } => {
                if let Some(g) = self.groups.get_mut(group) {
                    if g.members.insert(*consumer) {
                        self.memberships.entry(*consumer).or_default().push(*group);
                    }
                }
            }
            DirectoryEvent::MemberRemoved { group, consumer } => self.leave(*group, *consumer),
            DirectoryEvent::Entitlement(e) => {
                self.entitlements.insert(e.id, e.clone());
            }
            DirectoryEvent::EntitlementDeleted(id) => {
                self.entitlements.remove(id);
            }
            DirectoryEvent::Invitation(i) => {
                self.invitations_by_token.insert(i.token_sha256, i.id);
                self.invitations.insert(i.id, i.clone());
            }
            DirectoryEvent::InvitationAccepted { invitation, consumer, at } => {
                let group = self.invitations.get(invitation).map(|i| i.group);
                self.apply(&DirectoryEvent::Consumer(consumer.clone()));
                if let Some(group) = group {
                    self.apply(&DirectoryEvent::MemberAdded { group, consumer: consumer.id });
                }
                if let Some(i) = self.invitations.get_mut(invitation) {
                    i.answer = Some(InvitationAnswer::Accepted { consumer: consumer.id, at: *at });
                }
            }
            DirectoryEvent::InvitationDeclined { invitation, at } => {
                if let Some(i) = self.invitations.get_mut(invitation) {
                    i.answer = Some(InvitationAnswer::Declined { at: *at });
                }
            }
            DirectoryEvent::SignedUp { licensee, consumer } => {
                if let Some(licensee) = licensee {
                    self.apply(&DirectoryEvent::Licensee(licensee.clone()));
                }
                self.apply(&DirectoryEvent::Consumer(consumer.clone()));
            }
            DirectoryEvent::SignUp(s) => {
                self.sign_ups_by_token.insert(s.token_sha256, s.id);
                self.sign_ups.insert(s.id, s.clone());
            }
            DirectoryEvent::PasswordSet { sign_up, at, account, licensee, consumer } => {
                if let Some(licensee) = licensee {
                    self.apply(&DirectoryEvent::Licensee(licensee.clone()));
                }
                if let Some(consumer) = consumer {
                    self.apply(&DirectoryEvent::Consumer(consumer.clone()));
                }
                if let Some(s) = self.sign_ups.get_mut(sign_up) {
                    s.password_set_at = Some(*at);
                }
                self.accounts.insert(account.email.clone(), account.clone());
            }
            DirectoryEvent::Claimed { sign_up, license } => {
                if let Some(s) = self.sign_ups.get_mut(sign_up) {
                    s.license = Some(license.id);
                }
                self.set_license(Arc::clone(license));
            }
            DirectoryEvent::ActivationBatch(b) => {
                for (place, code) in (0u32..).zip(&b.codes) {
                    self.activation_codes.insert(code.code_sha256, (b.id, place));
                }
                self.activation_batches.insert(b.id, b.clone());
            }
            DirectoryEvent::ActivationCodeRedeemed { batch, code, redemption, license } => {
                let redeemed = self.activation_batches.get_mut(batch).and_then(|b| b.codes.get_mut(*code as usize));
                if let Some(redeemed) = redeemed {
                    redeemed.redemptions.push(*redemption);
                }
                self.set_license(Arc::clone(license));
            }
            DirectoryEvent::LicenseIssued { licensee, license } => {
                if let Some(licensee) = licensee {
                    self.apply(&DirectoryEvent::Licensee(licensee.clone()));
                }
                self.set_license(Arc::clone(license));
            }
            DirectoryEvent::KeyTokenIssued(token) => {
                self.key_tokens.insert(token.license, token.clone());
            }
            DirectoryEvent::MachineActivated(activation) => {
                self.machine_activations.insert(activation.client_id, activation.clone());
            }
            DirectoryEvent::MachineDeactivated(client) => {
                self.machine_activations.remove(client);
            }
        }
    }

    /// Takes `consumer` out of `group`.
    fn leave(&mut self, group: GroupId, consumer: ConsumerId) {
        if let Some(g) = self.groups.get_mut(&group) {
            g.members.remove(&consumer);
        }
        if let Some(groups) = self.memberships.get_mut(&consumer) {
            groups.retain(|g| *g != group);
            if groups.is_empty() {
                self.memberships.remove(&consumer);
            }
        }
    }

    /// Forgets license `id` (deleted).
    pub fn remove_license(&mut self, id: LicenseId) {
        let Some(license) = self.licenses.remove(&id) else { return };
        self.key_tokens.remove(&id);
        self.machine_activations.retain(|_, a| a.license != id);
        if let Some(key) = &license.license_key {
            self.licenses_by_key.remove(key);
        }
        if let Some(issued) = self.licenses_by_licensee.get_mut(&license.licensee) {
            issued.retain(|l| *l != id);
            if issued.is_empty() {
                self.licenses_by_licensee.remove(&license.licensee);
            }
        }
    }

    /// Records a license's current terms (creation or any change).
    pub fn set_license(&mut self, license: Arc<License>) {
        let id = license.id;
        match self.licenses.get(&id) {
            Some(old) if old.license_key != license.license_key => {
                if let Some(old_key) = &old.license_key {
                    self.licenses_by_key.remove(old_key);
                }
            }
            Some(_) => {}
            None => self.licenses_by_licensee.entry(license.licensee).or_default().push(id),
        }
        if let Some(key) = &license.license_key {
            self.licenses_by_key.insert(key.clone(), id);
        }
        self.licenses.insert(id, license);
    }

    /// The answer remembered under `key` ([`crate::stored_answers::answer_key`]) at `now`.
    pub fn answer(&self, key: &[u8; 32], now: Timestamp) -> Option<&StoredAnswer> {
        self.answers.get(key, now)
    }

    /// The licensee `id`.
    pub fn licensee(&self, id: LicenseeId) -> Option<&Licensee> {
        self.licensees.get(&id)
    }

    /// The consumer `id`.
    pub fn consumer(&self, id: ConsumerId) -> Option<&Consumer> {
        self.consumers.get(&id)
    }

    /// The consumer whose API key hashes to `sha256`.
    pub fn consumer_by_key_hash(&self, sha256: &[u8; 32]) -> Option<ConsumerId> {
        self.consumers_by_key.get(sha256).copied()
    }

    /// The product `id`.
    pub fn product(&self, id: ProductId) -> Option<&Product> {
        self.products.get(&id)
    }

    /// The product called `name`.
    pub fn product_named(&self, name: &str) -> Option<&Product> {
        self.products_by_name.get(name).and_then(|id| self.products.get(id))
    }

    /// The terms of license `id`.
    pub fn license(&self, id: LicenseId) -> Option<&Arc<License>> {
        self.licenses.get(&id)
    }

    /// The license with license key `key`.
    pub fn license_by_key(&self, key: &str) -> Option<&Arc<License>> {
        self.licenses_by_key.get(key).and_then(|id| self.licenses.get(id))
    }

    /// The other keyed licenses of `license`'s licensee and product that are not revoked: what
    /// the first activation of `license`'s key revokes (SPEC section 10), oldest first.
    pub fn keyed_siblings(&self, license: &License) -> Vec<LicenseId> {
        let issued = self.licenses_by_licensee.get(&license.licensee).map_or(&[][..], Vec::as_slice);
        issued
            .iter()
            .filter(|id| **id != license.id)
            .filter_map(|id| self.licenses.get(id))
            .filter(|s| s.product == license.product && s.license_key.is_some())
            .filter(|s| !matches!(s.status, LicenseStatus::Revoked { .. }))
            .map(|s| s.id)
            .collect()
    }

    /// The key token last issued for `license`.
    pub fn key_token(&self, license: LicenseId) -> Option<&KeyToken> {
        self.key_tokens.get(&license)
    }

    /// The machine activation with client id `client`.
    pub fn machine_activation(&self, client: ClientId) -> Option<&MachineActivation> {
        self.machine_activations.get(&client)
    }

    /// The machines that activated `license`'s key, by client id.
    pub fn machine_activations_of(&self, license: LicenseId) -> impl Iterator<Item = &MachineActivation> {
        self.machine_activations.values().filter(move |a| a.license == license)
    }

    /// Every license of `licensee`.
    pub fn licenses_of(&self, licensee: LicenseeId) -> impl Iterator<Item = &Arc<License>> {
        self.licenses_by_licensee.get(&licensee).into_iter().flatten().filter_map(|id| self.licenses.get(id))
    }

    /// Every license.
    pub fn licenses(&self) -> impl Iterator<Item = &Arc<License>> {
        self.licenses.values()
    }

    /// Every licensee.
    pub fn licensees(&self) -> impl Iterator<Item = &Licensee> {
        self.licensees.values()
    }

    /// Every consumer.
    pub fn consumers(&self) -> impl Iterator<Item = &Consumer> {
        self.consumers.values()
    }

    /// Every product.
    pub fn products(&self) -> impl Iterator<Item = &Product> {
        self.products.values()
    }

    /// The webhook `id`.
    pub fn webhook(&self, id: WebhookId) -> Option<&Webhook> {
        self.webhooks.get(&id)
    }

    /// Every webhook.
    pub fn webhooks(&self) -> impl Iterator<Item = &Webhook> {
        self.webhooks.values()
    }

    /// The credential `id`.
    pub fn credential(&self, id: CredentialId) -> Option<&Credential> {
        self.credentials.get(&id)
    }

    /// The credential whose token hashes to `sha256`.
    pub fn credential_by_token_hash(&self, sha256: &[u8; 32]) -> Option<&Credential> {
        self.credentials_by_token.get(sha256).and_then(|id| self.credentials.get(id))
    }

    /// Every credential.
    pub fn credentials(&self) -> impl Iterator<Item = &Credential> {
        self.credentials.values()
    }

    /// The group `id`.
    pub fn group(&self, id: GroupId) -> Option<&Group> {
        self.groups.get(&id)
    }

    /// Every group.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// The groups `consumer` is in.
    pub fn groups_of(&self, consumer: ConsumerId) -> impl Iterator<Item = &Group> {
        self.memberships.get(&consumer).into_iter().flatten().filter_map(|g| self.groups.get(g))
    }

    /// The entitlement `id`.
    pub fn entitlement(&self, id: EntitlementId) -> Option<&Entitlement> {
        self.entitlements.get(&id)
    }

    /// Every entitlement.
    pub fn entitlements(&self) -> impl Iterator<Item = &Entitlement> {
        self.entitlements.values()
    }

    /// The invitation `id`.
    pub fn invitation(&self, id: InvitationId) -> Option<&Invitation> {
        self.invitations.get(&id)
    }

    /// The invitation whose token hashes to `sha256`.
    pub fn invitation_by_token_hash(&self, sha256: &[u8; 32]) -> Option<&Invitation> {
        self.invitations_by_token.get(sha256).and_then(|id| self.invitations.get(id))
    }

    /// The registration whose set-password token hashes to `sha256`.
    pub fn sign_up_by_token_hash(&self, sha256: &[u8; 32]) -> Option<&SignUp> {
        self.sign_ups_by_token.get(sha256).and_then(|id| self.sign_ups.get(id))
    }

    /// The registrations of `email` (lower case), oldest first.
    pub fn sign_ups_of(&self, email: &str) -> Vec<&SignUp> {
        let mut found: Vec<&SignUp> = self.sign_ups.values().filter(|s| s.email == email).collect();
        found.sort_by_key(|s| (s.expires_at, s.id));
        found
    }

    /// The account of `email` (lower case).
    pub fn account(&self, email: &str) -> Option<&Account> {
        self.accounts.get(email)
    }

    /// The account that logs in as `consumer`.
    pub fn account_of(&self, consumer: ConsumerId) -> Option<&Account> {
        self.accounts.values().find(|a| a.consumer == consumer)
    }

    /// The consumer that signs in as `identity`.
    pub fn consumer_by_identity(&self, identity: &ConnectedIdentity) -> Option<&Consumer> {
        self.consumers_by_identity.get(identity).and_then(|id| self.consumers.get(id))
    }

    /// The licensee whose `external_id` is `external_id` (a scan: it is asked when a consumer
    /// signs in for the first time, not on every request).
    pub fn licensee_by_external_id(&self, external_id: &str) -> Option<&Licensee> {
        self.licensees.values().find(|l| l.external_id.as_deref() == Some(external_id))
    }

    /// The activation code batch `id`.
    pub fn activation_batch(&self, id: ActivationBatchId) -> Option<&ActivationBatch> {
        self.activation_batches.get(&id)
    }

    /// Every activation code batch.
    pub fn activation_batches(&self) -> impl Iterator<Item = &ActivationBatch> {
        self.activation_batches.values()
    }

    /// The batch holding the activation code whose canonical form hashes to `sha256`, and the
    /// code's place in it.
    pub fn activation_code_by_hash(&self, sha256: &[u8; 32]) -> Option<(&ActivationBatch, u32)> {
        let (batch, place) = self.activation_codes.get(sha256)?;
        Some((self.activation_batches.get(batch)?, *place))
    }

    /// The consume rule of SPEC section 12: whether `consumer` may use `license`. It must belong
    /// to the license's licensee; a license in an entitlement also needs it to be a member of
    /// one of the entitlement's groups of its own kind (users in user groups, devices in device
    /// client groups). An entitlement that is gone lets no one in.
    ///
    /// A group only ever holds consumers of its kind (a membership of another kind is refused),
    /// so being a member is enough; the consumer's few memberships are searched rather than the
    /// entitlement's groups, which keeps the rule to two map lookups on the checkout path.
    pub fn may_use(&self, consumer: &Consumer, license: &License) -> bool {
        if !consumer.licensees.contains(&license.licensee) {
            return false;
        }
        let Some(entitlement) = license.entitlement else { return true };
        let Some(entitlement) = self.entitlements.get(&entitlement) else { return false };
        let memberships = self.memberships.get(&consumer.id).map_or(&[][..], Vec::as_slice);
        memberships.iter().any(|g| entitlement.groups.contains(g))
    }

    /// The licenses `consumer` may use for `item` under `filters`, in the order SPEC section 3
    /// gives: seat licenses with the latest end first, then use-count and use-time licenses with
    /// the earliest end first. A consumer that does not exist is `notAuthorized`; none found is
    /// `noLicenseFound`.
    pub fn candidates(
        &self,
        consumer: ConsumerId,
        item: &str,
        filters: &LicenseFilters,
    ) -> Result<Vec<LicenseId>, Denial> {
        let Some(consumer) = self.consumers.get(&consumer) else {
            return Err(Denial::new(ErrorCode::NotAuthorized, "unknown consumer"));
        };
        if consumer.disabled {
            return Err(Denial::new(ErrorCode::NotAuthorized, "this consumer is disabled"));
        }
        let entitlement = match &filters.entitlement {
            None => None,
            Some(text) => match text.parse::<EntitlementId>() {
                Ok(id) => Some(id),
                Err(_) => return Err(Denial::new(ErrorCode::NoLicenseFound, "no license for this item")),
            },
        };
        let mut found: Vec<&License> = consumer
            .licensees
            .iter()
            .filter(|l| filters.licensee.is_none_or(|want| want == **l))
            .flat_map(|l| self.licenses_of(*l))
            .filter(|lic| filters.license.is_none_or(|want| want == lic.id) && lic.grants_item(item))
            .filter(|lic| entitlement.is_none_or(|want| lic.entitlement == Some(want)))
            .filter(|lic| lic.entitlement.is_none() || self.may_use(consumer, lic))
            .map(|lic| &**lic)
            .collect();
        if found.is_empty() {
            return Err(Denial::new(ErrorCode::NoLicenseFound, "no license for this item"));
        }
        found.sort_by(|a, b| crate::select::preference(a, b));
        Ok(found.into_iter().map(|l| l.id).collect())
    }
}

/// The consumer a license key checks out as: the key itself, under its license's id. Leases
/// taken with the key belong to it, so only the key renews and releases them, and the key needs
/// no consumer entry (or API key) in the directory.
pub fn key_holder(license: LicenseId) -> ConsumerId {
    ConsumerId(license.0)
}

/// Everything in a [`Directory`] but the license terms, as plain serializable data for
/// snapshots; every collection is sorted by key so that equal directories give equal snapshots.
///
/// The terms are left out because a snapshot stores each license's terms once, with its live
/// state ([`crate::replay::LicenseSnapshot`]), and the restored directory shares them with the
/// restored state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectorySnapshot {
    /// Licensees.
    pub licensees: Vec<Licensee>,
    /// Consumers.
    pub consumers: Vec<Consumer>,
    /// Products.
    pub products: Vec<Product>,
    /// Each licensee's licenses in the order they were created: that order breaks ties when
    /// licenses are ranked, so it is stored rather than rebuilt.
    pub licenses_by_licensee: Vec<(LicenseeId, Vec<LicenseId>)>,
    /// License keys.
    pub licenses_by_key: Vec<(String, LicenseId)>,
    /// The remembered answers, oldest first.
    #[serde(default, with = "crate::shapes::since_format_3")]
    pub answers: Vec<([u8; 32], StoredAnswer)>,
    /// The webhooks.
    #[serde(default, with = "crate::shapes::since_format_4")]
    pub webhooks: Vec<Webhook>,
    /// The credentials of the admin API.
    #[serde(default, with = "crate::shapes::since_format_6")]
    pub credentials: Vec<Credential>,
    /// The groups, with their members.
    #[serde(default, with = "crate::shapes::since_format_6")]
    pub groups: Vec<Group>,
    /// The entitlements.
    #[serde(default, with = "crate::shapes::since_format_6")]
    pub entitlements: Vec<Entitlement>,
    /// The invitations, answered or not.
    #[serde(default, with = "crate::shapes::since_format_6")]
    pub invitations: Vec<Invitation>,
    /// The activation code batches, with their redemptions.
    #[serde(default, with = "crate::shapes::since_format_7")]
    pub activation_batches: Vec<ActivationBatch>,
    /// The self-service registrations.
    #[serde(default, with = "crate::shapes::since_format_7")]
    pub sign_ups: Vec<SignUp>,
    /// The accounts of people who signed up.
    #[serde(default, with = "crate::shapes::since_format_7")]
    pub accounts: Vec<Account>,
    /// The key tokens last issued, by license.
    #[serde(default, with = "crate::shapes::since_format_8")]
    pub key_tokens: Vec<KeyToken>,
    /// The machines' activations of license keys.
    #[serde(default, with = "crate::shapes::since_format_8")]
    pub machine_activations: Vec<MachineActivation>,
}

/// The directory as a version-1 snapshot stored it: [`DirectorySnapshot`] with the license terms
/// (a second copy of the terms each license's state holds). Only read, to restart from a journal
/// an older build wrote; the field order is the encoding and must not change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectorySnapshotV1 {
    /// Licensees.
    pub licensees: Vec<Licensee>,
    /// Consumers.
    pub consumers: Vec<Consumer>,
    /// Products.
    pub products: Vec<Product>,
    /// License terms.
    pub licenses: Vec<Arc<License>>,
    /// Each licensee's licenses in the order they were created.
    pub licenses_by_licensee: Vec<(LicenseeId, Vec<LicenseId>)>,
    /// License keys.
    pub licenses_by_key: Vec<(String, LicenseId)>,
}

impl DirectorySnapshotV1 {
    /// The same directory as a [`DirectorySnapshot`], and the license terms it held.
    pub fn split(self) -> (DirectorySnapshot, Vec<Arc<License>>) {
        let DirectorySnapshotV1 { licensees, consumers, products, licenses, licenses_by_licensee, licenses_by_key } =
            self;
        let snapshot = DirectorySnapshot {
            licensees,
            consumers,
            products,
            licenses_by_licensee,
            licenses_by_key,
            answers: Vec::new(),
            webhooks: Vec::new(),
            credentials: Vec::new(),
            groups: Vec::new(),
            entitlements: Vec::new(),
            invitations: Vec::new(),
            activation_batches: Vec::new(),
            sign_ups: Vec::new(),
            accounts: Vec::new(),
            key_tokens: Vec::new(),
            machine_activations: Vec::new(),
        };
        (snapshot, licenses)
    }
}

impl Directory {
    /// This directory as snapshot data, without the license terms (see [`DirectorySnapshot`]).
    pub fn to_snapshot(&self) -> DirectorySnapshot {
        fn sorted<T, K: Ord>(mut items: Vec<T>, key: impl FnMut(&T) -> K) -> Vec<T> {
            items.sort_by_key(key);
            items
        }
        DirectorySnapshot {
            licensees: sorted(self.licensees.values().cloned().collect(), |l| l.id),
            consumers: sorted(self.consumers.values().cloned().collect(), |c| c.id),
            products: sorted(self.products.values().cloned().collect(), |p| p.id),
            licenses_by_licensee: sorted(
                self.licenses_by_licensee.iter().map(|(k, v)| (*k, v.clone())).collect(),
                |(k, _)| *k,
            ),
            licenses_by_key: sorted(self.licenses_by_key.iter().map(|(k, v)| (k.clone(), *v)).collect(), |(k, _)| {
                k.clone()
            }),
            answers: self.answers.to_vec(),
            webhooks: sorted(self.webhooks.values().cloned().collect(), |w| w.id),
            credentials: sorted(self.credentials.values().cloned().collect(), |c| c.id),
            groups: sorted(self.groups.values().cloned().collect(), |g| g.id),
            entitlements: sorted(self.entitlements.values().cloned().collect(), |e| e.id),
            invitations: sorted(self.invitations.values().cloned().collect(), |i| i.id),
            activation_batches: sorted(self.activation_batches.values().cloned().collect(), |b| b.id),
            sign_ups: sorted(self.sign_ups.values().cloned().collect(), |s| s.id),
            accounts: sorted(self.accounts.values().cloned().collect(), |a| a.email.clone()),
            key_tokens: sorted(self.key_tokens.values().cloned().collect(), |t| t.license),
            machine_activations: sorted(self.machine_activations.values().cloned().collect(), |a| a.client_id),
        }
    }

    /// The directory a snapshot describes, with the license terms `licenses` (the inverse of
    /// [`Directory::to_snapshot`] plus [`Directory::licenses`]); the `Arc`s are kept, so the
    /// directory shares the terms with whoever else holds them. The lookup indexes by API key and
    /// product name are rebuilt.
    pub fn from_snapshot(snapshot: DirectorySnapshot, licenses: Vec<Arc<License>>) -> Self {
        let mut directory = Directory::default();
        for licensee in snapshot.licensees {
            directory.apply(&DirectoryEvent::Licensee(licensee));
        }
        for consumer in snapshot.consumers {
            directory.apply(&DirectoryEvent::Consumer(consumer));
        }
        for product in snapshot.products {
            directory.apply(&DirectoryEvent::Product(product));
        }
        directory.licenses = Map::with_capacity_and_hasher(licenses.len(), Default::default());
        directory.licenses.extend(licenses.into_iter().map(|l| (l.id, l)));
        directory.licenses_by_licensee = snapshot.licenses_by_licensee.into_iter().collect();
        directory.licenses_by_key = snapshot.licenses_by_key.into_iter().collect();
        for (key, answer) in snapshot.answers {
            directory.answers.record(key, answer);
        }
        for webhook in snapshot.webhooks {
            directory.apply(&DirectoryEvent::Webhook(webhook));
        }
        for credential in snapshot.credentials {
            directory.apply(&DirectoryEvent::Credential(credential));
        }
        for group in snapshot.groups {
            directory.apply(&DirectoryEvent::Group(group));
        }
        for entitlement in snapshot.entitlements {
            directory.apply(&DirectoryEvent::Entitlement(entitlement));
        }
        for invitation in snapshot.invitations {
            directory.apply(&DirectoryEvent::Invitation(invitation));
        }
        for batch in snapshot.activation_batches {
            directory.apply(&DirectoryEvent::ActivationBatch(batch));
        }
        for sign_up in snapshot.sign_ups {
            directory.apply(&DirectoryEvent::SignUp(sign_up));
        }
        directory.accounts = snapshot.accounts.into_iter().map(|a| (a.email.clone(), a)).collect();
        directory.key_tokens = snapshot.key_tokens.into_iter().map(|t| (t.license, t)).collect();
        directory.machine_activations = snapshot.machine_activations.into_iter().map(|a| (a.client_id, a)).collect();
        directory
    }
}
