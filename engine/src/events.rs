//! Events out (SPEC section 11): each change is also recorded as an event saying what changed,
//! who changed it and when. Events are journaled right after their change ([`Change::Event`],
//! so an acknowledged change has its event) and kept by the journal apart from the log, for
//! their retention period, to be listed in order ([`crate::journal::Journal::events`]).
//!
//! [`Change::Event`]: crate::journal::Change::Event

use crate::directory::{Directory, DirectoryEvent};
use crate::ids::{ConsumerId, CredentialId};
use crate::model::{Consumer, Group, License, Licensee, Product};
use crate::time::Timestamp;
use crate::webhooks::Webhook;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `licensee.created`, `consumer.deleted`, ...
    pub event_type: String,
    /// Who caused it.
    pub actor: Actor,
    /// What it happened to.
    pub subject: Subject,
    /// The subject as it is after the change, as JSON text (`{}` for a deletion).
    pub data: String,
}

impl Event {
    /// The event of directory change `change` by `actor`, given the directory `before` it;
    /// `None` for a change that is not one of the directory's objects (a remembered answer).
    pub fn of_directory_change(change: &DirectoryEvent, before: &Directory, actor: Actor) -> Option<Event> {
        let verb = |existed: bool| if existed { "updated" } else { "created" };
        let (event_type, subject, data) = match change {
            DirectoryEvent::Licensee(l) => (
                format!("licensee.{}", verb(before.licensee(l.id).is_some())),
                ("licensee", l.id.to_string()),
                licensee(l),
            ),
            DirectoryEvent::Consumer(c) => {
                let verb = match before.consumer(c.id) {
                    Some(old) if old.api_key_sha256 != c.api_key_sha256 => "api_key_rotated",
                    Some(_) => "updated",
                    None => "created",
                };
                (format!("consumer.{verb}"), ("consumer", c.id.to_string()), consumer(c))
            }
            DirectoryEvent::Product(p) => {
                let verb = verb(before.product(p.id).is_some());
                (format!("product.{verb}"), ("product", p.name.clone()), product(p))
            }
            DirectoryEvent::LicenseeDeleted(id) => ("licensee.deleted".into(), ("licensee", id.to_string()), json!({})),
            DirectoryEvent::ConsumerDeleted(id) => ("consumer.deleted".into(), ("consumer", id.to_string()), json!({})),
            DirectoryEvent::Webhook(w) => {
                let verb = verb(before.webhook(w.id).is_some());
                (format!("webhook.{verb}"), ("webhook", w.id.to_string()), webhook(w))
            }
            DirectoryEvent::WebhookDeleted(id) => ("webhook.deleted".into(), ("webhook", id.to_string()), json!({})),
            DirectoryEvent::Credential(c) => {
                let data = json!({"id": c.id, "name": c.name, "role": c.role, "licensee": c.licensee});
                ("credential.created".into(), ("credential", c.id.to_string()), data)
            }
            DirectoryEvent::CredentialDeleted(id) => {
                ("credential.deleted".into(), ("credential", id.to_string()), json!({}))
            }
            DirectoryEvent::Group(g) => ("group.created".into(), ("group", g.id.to_string()), group(g)),
            DirectoryEvent::GroupDeleted(id) => ("group.deleted".into(), ("group", id.to_string()), json!({})),
            DirectoryEvent::MemberAdded { group, consumer } => {
                ("group.member_added".into(), ("group", group.to_string()), json!({"consumer": consumer}))
            }
            DirectoryEvent::MemberRemoved { group, consumer } => {
                ("group.member_removed".into(), ("group", group.to_string()), json!({"consumer": consumer}))
            }
            DirectoryEvent::Entitlement(e) => {
                let verb = verb(before.entitlement(e.id).is_some());
                let data = json!({"id": e.id, "licensee": e.licensee, "name": e.name, "groups": e.groups});
                (format!("entitlement.{verb}"), ("entitlement", e.id.to_string()), data)
            }
            DirectoryEvent::EntitlementDeleted(id) => {
                ("entitlement.deleted".into(), ("entitlement", id.to_string()), json!({}))
            }
            DirectoryEvent::Invitation(i) => {
                let data = json!({"id": i.id, "group": i.group, "email": i.email, "expires_at": i.expires_at});
                ("invitation.created".into(), ("invitation", i.id.to_string()), data)
            }
            DirectoryEvent::InvitationAccepted { invitation, consumer, .. } => {
                let data = json!({"consumer": consumer.id});
                ("invitation.accepted".into(), ("invitation", invitation.to_string()), data)
            }
            DirectoryEvent::InvitationDeclined { invitation, .. } => {
                ("invitation.declined".into(), ("invitation", invitation.to_string()), json!({}))
            }
            DirectoryEvent::SignedUp { licensee: personal, consumer: c } => {
                let mut data = consumer(c);
                data["personal_licensee"] = personal.as_ref().map(licensee).unwrap_or_default();
                ("consumer.created".into(), ("consumer", c.id.to_string()), data)
            }
            DirectoryEvent::SignUp(s) => {
                let data = json!({"id": s.id, "email": s.email, "product": s.product, "tier": s.tier, "expires_at": s.expires_at});
                ("signup.created".into(), ("signup", s.id.to_string()), data)
            }
            DirectoryEvent::PasswordSet { sign_up, account, .. } => {
                let data = json!({"email": account.email, "sign_up": sign_up});
                ("account.password_set".into(), ("consumer", account.consumer.to_string()), data)
            }
            DirectoryEvent::Claimed { sign_up, license: l } => {
                let mut data = license(l);
                data["sign_up"] = json!(sign_up);
                ("license.created".into(), ("license", l.id.to_string()), data)
            }
            DirectoryEvent::ActivationBatch(b) => {
                let data = json!({
                    "id": b.id,
                    "product": b.template.product,
                    "tier": b.template.tier,
                    "count": b.codes.len(),
                    "uses_per_code": b.uses_per_code,
                    "expires_at": b.expires_at,
                });
                ("activation_batch.created".into(), ("activation_batch", b.id.to_string()), data)
            }
            DirectoryEvent::ActivationCodeRedeemed { batch, license: l, .. } => {
                let mut data = license(l);
                data["activation_batch"] = json!(batch);
                ("license.created".into(), ("license", l.id.to_string()), data)
            }
            DirectoryEvent::LicenseIssued { licensee: customer, license: l } => {
                let mut data = license(l);
                data["customer_licensee"] = customer.as_ref().map(licensee).unwrap_or_default();
                ("license.created".into(), ("license", l.id.to_string()), data)
            }
            DirectoryEvent::KeyTokenIssued(t) => {
                let data = json!({"issued_at": t.issued_at});
                ("license.key_token_issued".into(), ("license", t.license.to_string()), data)
            }
            DirectoryEvent::MachineActivated(a) => {
                let data = json!({
                    "client_id": a.client_id,
                    "license": a.license,
                    "machine_id": a.machine_id,
                    "ip": a.ip,
                    "encrypted": a.encrypted(),
                });
                ("machine.activated".into(), ("machine_activation", a.client_id.to_string()), data)
            }
            DirectoryEvent::MachineDeactivated(client) => {
                let data = json!({"license": before.machine_activation(*client).map(|a| a.license)});
                ("machine.deactivated".into(), ("machine_activation", client.to_string()), data)
            }
            DirectoryEvent::Answered { .. } => return None,
        };
        let (kind, id) = subject;
        Some(Event { event_type, actor, subject: Subject { kind: kind.into(), id }, data: data.to_string() })
    }
}

impl Event {
    /// The event `event_type` about license `license`, with `data`.
    pub fn about_license(event_type: &str, license: &License, data: serde_json::Value, actor: Actor) -> Event {
        Event {
            event_type: event_type.into(),
            actor,
            subject: Subject { kind: "license".into(), id: license.id.to_string() },
            data: data.to_string(),
        }
    }

    /// The event `event_type` of license `license` (its terms after the change) by `actor`. The
    /// license key is left out: it is a credential.
    pub fn of_license(event_type: &str, terms: &License, actor: Actor) -> Event {
        Event::about_license(event_type, terms, license(terms), actor)
    }
}

/// A license's terms without its key (a credential).
fn license(l: &License) -> serde_json::Value {
    let mut data = serde_json::to_value(l).unwrap_or_default();
    if let Some(fields) = data.as_object_mut() {
        fields.remove("license_key");
    }
    data
}

/// A group without its members (a membership is an event of its own).
fn group(g: &Group) -> serde_json::Value {
    json!({"id": g.id, "licensee": g.licensee, "name": g.name, "kind": g.kind})
}

fn licensee(l: &Licensee) -> serde_json::Value {
    json!({"id": l.id, "name": l.name, "kind": l.kind, "external_id": l.external_id})
}

/// A consumer without its key's digest.
fn consumer(c: &Consumer) -> serde_json::Value {
    json!({
        "id": c.id,
        "name": c.name,
        "kind": c.kind,
        "licensees": c.licensees,
        "email": c.email,
        "external_id": c.external_id,
        "disabled": c.disabled,
        "identity": c.identity,
    })
}

fn webhook(w: &Webhook) -> serde_json::Value {
    json!({"id": w.id, "url": w.url, "events": w.events, "description": w.description, "enabled": w.enabled})
}

fn product(p: &Product) -> serde_json::Value {
    json!({"id": p.id, "name": p.name, "features": p.features, "tiers": p.tiers})
}

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// What kind of actor.
    pub kind: ActorKind,
    /// Which one (`admin` for the admin token).
    pub id: String,
}

impl Actor {
    /// The holder of the admin token (and an embedder calling the engine's admin API).
    pub fn admin() -> Self {
        Actor { kind: ActorKind::Admin, id: "admin".into() }
    }

    /// The server itself.
    pub fn system() -> Self {
        Actor { kind: ActorKind::System, id: "leasehold".into() }
    }

    /// Consumer `id`, by its own request.
    pub fn consumer(id: ConsumerId) -> Self {
        Actor { kind: ActorKind::Consumer, id: id.to_string() }
    }

    /// The holder of credential `id`.
    pub fn credential(id: CredentialId) -> Self {
        Actor { kind: ActorKind::Credential, id: id.to_string() }
    }
}

/// The kinds of actors of SPEC section 11.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActorKind {
    /// The admin token.
    Admin,
    /// An API credential with a role.
    Credential,
    /// A consumer, by its own request.
    Consumer,
    /// The server itself (a license expiring, a credit running out).
    System,
}

impl ActorKind {
    /// The kind as SPEC section 11 names it.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Admin => "admin",
            ActorKind::Credential => "credential",
            ActorKind::Consumer => "consumer",
            ActorKind::System => "system",
        }
    }
}

/// What an event happened to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// `licensee`, `consumer`, `product`, `license`, ...
    pub kind: String,
    /// Its id (a product's name).
    pub id: String,
}

/// An event as kept: its id (increasing in the order events were recorded) and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Increasing; the listing's cursor.
    pub id: u64,
    /// When it happened.
    pub at: Timestamp,
    /// What happened.
    pub event: Event,
}

/// Which events a listing wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Only events after this id.
    pub after: Option<u64>,
    /// Only this type, or with `prefix.*` every type that starts with `prefix.`.
    pub event_type: Option<String>,
    /// Only events about the subject with this id.
    pub subject: Option<String>,
    /// Only events about one of these subjects (by id): the objects a scoped caller may see.
    pub within: Option<Arc<HashSet<String>>>,
    /// At most this many.
    pub limit: usize,
}

impl EventQuery {
    /// Whether `event` is one the query wants (its id aside).
    pub fn wants(&self, event: &Event) -> bool {
        let type_wanted = self.event_type.as_deref().is_none_or(|pattern| type_matches(pattern, &event.event_type));
        type_wanted
            && self.subject.as_deref().is_none_or(|id| event.subject.id == id)
            && self.within.as_ref().is_none_or(|ids| ids.contains(&event.subject.id))
    }
}

/// Whether `event_type` is `pattern`, or starts with `prefix.` for a pattern `prefix.*`.
pub fn type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => event_type == pattern,
    }
}

/// A page of events, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventPage {
    /// The events.
    pub items: Vec<StoredEvent>,
    /// Pass as `after` for the next page; `None` on the last one.
    pub next_after: Option<u64>,
}

impl EventPage {
    /// The page of `query` from `candidates`, events in increasing id order after `query.after`.
    pub fn of(query: &EventQuery, candidates: impl Iterator<Item = StoredEvent>) -> Self {
        let mut items: Vec<StoredEvent> =
            candidates.filter(|e| query.wants(&e.event)).take(query.limit.saturating_add(1)).collect();
        let more = items.len() > query.limit;
        items.truncate(query.limit);
        let next_after = if more { items.last().map(|e| e.id) } else { None };
        EventPage { items, next_after }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, subject: &str) -> Event {
        Event {
            event_type: event_type.into(),
            actor: Actor::admin(),
            subject: Subject { kind: "license".into(), id: subject.into() },
            data: "{}".into(),
        }
    }

    fn query(event_type: Option<&str>, subject: Option<&str>, limit: usize) -> EventQuery {
        EventQuery {
            after: None,
            event_type: event_type.map(Into::into),
            subject: subject.map(Into::into),
            within: None,
            limit,
        }
    }

    #[test]
    fn a_type_matches_exactly_or_by_its_prefix_and_a_subject_by_its_id() {
        let revoked = event("license.revoked", "L1");
        assert!(query(Some("license.*"), None, 1).wants(&revoked));
        assert!(query(Some("license.revoked"), Some("L1"), 1).wants(&revoked));
        assert!(!query(Some("license.created"), None, 1).wants(&revoked));
        assert!(!query(Some("licensee.*"), None, 1).wants(&revoked));
        assert!(!query(None, Some("L2"), 1).wants(&revoked));
        let within = |ids: &[&str]| EventQuery {
            within: Some(Arc::new(ids.iter().map(|id| id.to_string()).collect())),
            ..query(None, None, 1)
        };
        assert!(within(&["L0", "L1"]).wants(&revoked));
        assert!(!within(&["L2"]).wants(&revoked));
    }

    #[test]
    fn a_page_stops_at_its_limit_and_says_where_the_next_one_starts() {
        let stored = |id| StoredEvent { id, at: Timestamp::from_secs(0), event: event("license.updated", "L") };
        let page = EventPage::of(&query(None, None, 2), (1..=5).map(stored));
        assert_eq!((page.items.iter().map(|e| e.id).collect::<Vec<_>>(), page.next_after), (vec![1, 2], Some(2)));
        let last = EventPage::of(&query(None, None, 2), (4..=5).map(stored));
        assert_eq!(last.next_after, None);
    }
}
