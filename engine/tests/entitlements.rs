//! The consume rule of SPEC section 12 under random changes: group memberships, entitlements'
//! groups and licenses' entitlements change between checkouts, and every checkout is granted by
//! a license the rule lets the consumer use, and is granted whenever one does (seats are
//! plentiful). The rule is written out here a second time, over the test's own model of the
//! organization, so a mistake in the directory's index or checks shows up as a disagreement.

use leasehold_engine::journal::MemoryJournal;
use leasehold_engine::model::{ConsumerKind, Credit, Dimension, Enforcement, LicenseeKind, SessionAnchor};
use leasehold_engine::{
    ConsumeRequest, ConsumerId, Decision, Engine, EntitlementId, EntitlementPatch, GroupId, LicenseId, NewConsumer,
    NewEntitlement, NewGroup, NewLicense, NewLicensee, NewProduct, ReleaseRequest,
};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::sync::Arc;

const PRODUCTS: [&str; 2] = ["Cad", "Sim"];
const KINDS: [ConsumerKind; 2] = [ConsumerKind::User, ConsumerKind::Device];
/// Consumers 0-3 are the licensee's (users 0 and 1, devices 2 and 3); 4 is another licensee's.
const CONSUMERS: usize = 5;
/// Groups 0 and 1 hold users, 2 and 3 devices.
const GROUPS: usize = 4;
const ENTITLEMENTS: usize = 3;
/// Licenses 0-3 are the licensee's (products alternate); 4 is the other licensee's, of `Cad`.
const LICENSES: usize = 5;

#[derive(Debug, Clone)]
enum Step {
    Join { group: usize, consumer: usize },
    Leave { group: usize, consumer: usize },
    Groups { entitlement: usize, groups: u8 },
    Place { license: usize, entitlement: Option<usize> },
    Checkout { consumer: usize, product: usize, only: Option<usize> },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (0..GROUPS, 0..CONSUMERS).prop_map(|(group, consumer)| Step::Join { group, consumer }),
        1 => (0..GROUPS, 0..CONSUMERS).prop_map(|(group, consumer)| Step::Leave { group, consumer }),
        1 => (0..ENTITLEMENTS, any::<u8>()).prop_map(|(entitlement, groups)| Step::Groups { entitlement, groups }),
        1 => (0..LICENSES - 1, prop::option::of(0..ENTITLEMENTS))
            .prop_map(|(license, entitlement)| Step::Place { license, entitlement }),
        3 => (0..CONSUMERS, 0..2usize, prop::option::of(0..ENTITLEMENTS))
            .prop_map(|(consumer, product, only)| Step::Checkout { consumer, product, only }),
    ]
}

/// The organization as the test keeps it.
#[derive(Default)]
struct Model {
    members: [BTreeSet<usize>; GROUPS],
    groups_of: [Vec<usize>; ENTITLEMENTS],
    entitlement_of: [Option<usize>; LICENSES],
}

fn consumer_kind(consumer: usize) -> ConsumerKind {
    KINDS[usize::from((2..4).contains(&consumer))]
}

fn group_kind(group: usize) -> ConsumerKind {
    KINDS[group / 2]
}

impl Model {
    /// SPEC section 12: the licensee's consumer, and for a license in an entitlement a member of
    /// one of its groups of the consumer's kind.
    fn may_use(&self, consumer: usize, license: usize) -> bool {
        let same_licensee = (consumer == 4) == (license == 4);
        let Some(entitlement) = self.entitlement_of[license] else { return same_licensee };
        same_licensee
            && self.groups_of[entitlement]
                .iter()
                .any(|g| group_kind(*g) == consumer_kind(consumer) && self.members[*g].contains(&consumer))
    }
}

struct Org {
    consumers: Vec<ConsumerId>,
    groups: Vec<GroupId>,
    entitlements: Vec<EntitlementId>,
    licenses: Vec<LicenseId>,
}

async fn organization(engine: &Engine) -> Org {
    let mut licensees = Vec::new();
    for name in ["Acme", "Other"] {
        let new = NewLicensee { name: name.into(), kind: LicenseeKind::Organization, external_id: None };
        licensees.push(engine.create_licensee(new).await.expect("a licensee").id);
    }
    let mut consumers = Vec::new();
    for n in 0..CONSUMERS {
        let licensee = licensees[usize::from(n == 4)];
        let new = NewConsumer {
            name: format!("c{n}"),
            kind: consumer_kind(n),
            licensees: vec![licensee],
            email: None,
            external_id: None,
        };
        consumers.push(engine.create_consumer(new).await.expect("a consumer").0.id);
    }
    let mut groups = Vec::new();
    for n in 0..GROUPS {
        let new = NewGroup { name: format!("g{n}"), kind: group_kind(n) };
        groups.push(engine.create_group(licensees[0], new, None).await.expect("a group").id);
    }
    let mut entitlements = Vec::new();
    for n in 0..ENTITLEMENTS {
        let new = NewEntitlement { name: format!("e{n}"), groups: vec![] };
        entitlements.push(engine.create_entitlement(licensees[0], new, None).await.expect("an entitlement").id);
    }
    for product in PRODUCTS {
        let new = NewProduct { name: product.into(), features: vec![], tiers: vec![] };
        engine.create_product(new).await.expect("a product");
    }
    let mut licenses = Vec::new();
    for n in 0..LICENSES {
        let credit = Credit { dimension: Dimension::Seats, qty: 1_000, enforcement: Enforcement::Enforced };
        let mut new = NewLicense::new(licensees[usize::from(n == 4)], PRODUCTS[n % 2], credit);
        new.model.session_anchors = vec![SessionAnchor::Hw];
        licenses.push(engine.create_license(new).await.expect("a license").id);
    }
    Org { consumers, groups, entitlements, licenses }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn checkouts_follow_the_rule_while_groups_and_entitlements_change(steps in prop::collection::vec(step(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async {
            let journal = Arc::new(MemoryJournal::new());
            let engine = Engine::builder().journal(journal).workers(1).build().expect("an engine");
            let org = organization(&engine).await;
            let mut model = Model::default();
            for (n, step) in steps.into_iter().enumerate() {
                match step {
                    Step::Join { group, consumer } => {
                        let joined = engine.add_member(org.groups[group], org.consumers[consumer]).await;
                        let fits = consumer != 4 && consumer_kind(consumer) == group_kind(group);
                        prop_assert_eq!(joined.is_ok(), fits, "joining {} to {}: {:?}", consumer, group, joined);
                        if fits {
                            model.members[group].insert(consumer);
                        }
                    }
                    Step::Leave { group, consumer } => {
                        let left = engine.remove_member(org.groups[group], org.consumers[consumer]).await;
                        prop_assert_eq!(left.is_ok(), model.members[group].remove(&consumer));
                    }
                    Step::Groups { entitlement, groups } => {
                        let chosen: Vec<usize> = (0..GROUPS).filter(|g| groups & (1 << g) != 0).collect();
                        let patch = EntitlementPatch {
                            name: None,
                            groups: Some(chosen.iter().map(|g| org.groups[*g]).collect()),
                        };
                        engine.patch_entitlement(org.entitlements[entitlement], patch).await.expect("a change");
                        model.groups_of[entitlement] = chosen;
                    }
                    Step::Place { license, entitlement } => {
                        let id = entitlement.map(|e| org.entitlements[e]);
                        engine.set_entitlement(org.licenses[license], id).await.expect("a change");
                        model.entitlement_of[license] = entitlement;
                    }
                    Step::Checkout { consumer, product, only } => {
                        let usable: BTreeSet<LicenseId> = (0..LICENSES)
                            .filter(|l| l % 2 == product || *l == 4 && product == 0)
                            .filter(|l| only.is_none_or(|e| model.entitlement_of[*l] == Some(e)))
                            .filter(|l| model.may_use(consumer, *l))
                            .map(|l| org.licenses[l])
                            .collect();
                        let mut req = ConsumeRequest::new(org.consumers[consumer], PRODUCTS[product])
                            .on_hardware(format!("hw-{n}"));
                        req.filters.entitlement = only.map(|e| org.entitlements[e].to_string());
                        match engine.consume(req).await.expect("an answer") {
                            Decision::Granted(grant) => {
                                prop_assert!(
                                    usable.contains(&grant.lease.license),
                                    "consumer {} was granted license {} it may not use", consumer, grant.lease.license
                                );
                                let release = ReleaseRequest::new(org.consumers[consumer], grant.lease.id);
                                engine.release(release).await.expect("an answer");
                            }
                            Decision::Denied(denial) => {
                                prop_assert!(usable.is_empty(), "refused ({}) though {:?} may serve", denial, usable);
                            }
                        }
                    }
                }
            }
            Ok(())
        })?;
    }
}
