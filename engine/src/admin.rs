//! What an administrator asks for when creating and changing things: plain data the admin API and
//! embedders fill in, with the defaults SPEC section 9 gives, and the pure function that applies
//! a change of terms (SPEC section 10).

use crate::error::AdminError;
use crate::ids::{EntitlementId, GroupId, LicenseeId};
use crate::model::{
    Consumer, ConsumerKind, Credit, Enforcement, Feature, FeatureOverrides, License, LicenseModel, LicenseTemplate,
    Licensee, LicenseeKind, Product, Role, Tier,
};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A new licensee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewLicensee {
    /// Display name.
    pub name: String,
    /// Organization or person.
    pub kind: LicenseeKind,
    /// The vendor's own id for it.
    #[serde(default)]
    pub external_id: Option<String>,
}

/// A new consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewConsumer {
    /// Display name.
    pub name: String,
    /// User or device.
    pub kind: ConsumerKind,
    /// Licensees whose licenses it may use (at least one).
    pub licensees: Vec<LicenseeId>,
    /// Contact address.
    #[serde(default)]
    pub email: Option<String>,
    /// The vendor's own id for it.
    #[serde(default)]
    pub external_id: Option<String>,
}

/// A new credential of the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCredential {
    /// Display name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The licensee an `orgadmin` acts for (required for that role, refused for the others).
    #[serde(default)]
    pub licensee: Option<LicenseeId>,
}

impl NewCredential {
    /// Refuses a licensee missing from an `orgadmin` or given to another role.
    pub fn check_scope(&self) -> Result<(), AdminError> {
        match (self.role, self.licensee) {
            (Role::OrgAdmin, None) => Err(AdminError::Invalid("an orgadmin credential needs a licensee".into())),
            (Role::Admin | Role::Reader, Some(_)) => Err(AdminError::Invalid(format!(
                "a {} credential acts for every licensee; only an orgadmin takes a licensee",
                self.role.as_str()
            ))),
            _ => Ok(()),
        }
    }
}

/// A new group of a licensee's users or device clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewGroup {
    /// Display name.
    pub name: String,
    /// Which kind of consumer it holds.
    pub kind: ConsumerKind,
}

/// A new entitlement of a licensee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEntitlement {
    /// Display name.
    pub name: String,
    /// The licensee's groups whose members may use its licenses.
    #[serde(default)]
    pub groups: Vec<GroupId>,
}

/// A change to an entitlement: only what is `Some` changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntitlementPatch {
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// The groups, replaced whole.
    #[serde(default)]
    pub groups: Option<Vec<GroupId>>,
}

/// A new product with its features and tiers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewProduct {
    /// Product name (unique).
    pub name: String,
    /// Features.
    #[serde(default)]
    pub features: Vec<Feature>,
    /// Tiers.
    #[serde(default)]
    pub tiers: Vec<Tier>,
}

/// Whether a new license gets a license key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum LicenseKeyRequest {
    /// No key.
    #[default]
    None,
    /// Generate one.
    Generate,
    /// Use this one (16-64 characters of `[A-Za-z0-9_-]`).
    Given(String),
}

/// A new license.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewLicense {
    /// Who buys it.
    pub licensee: LicenseeId,
    /// The product's name.
    pub product: String,
    /// The tier; without one, the license grants every feature that is not display-only.
    pub tier: Option<String>,
    /// The credit; without one, the tier's `max_users` seats, enforced.
    pub credit: Option<Credit>,
    /// Start of validity; now when absent.
    pub valid_from: Option<Timestamp>,
    /// End of validity; perpetual when absent.
    pub valid_until: Option<Timestamp>,
    /// License key.
    pub license_key: LicenseKeyRequest,
    /// Whether activating this keyed license revokes the licensee's other keyed licenses of the
    /// product.
    pub revokes_sibling_keys: bool,
    /// Custom properties.
    pub properties: BTreeMap<String, String>,
    /// The rules.
    pub model: LicenseModel,
    /// The entitlement it joins (one of the licensee's).
    pub entitlement: Option<EntitlementId>,
}

impl NewLicense {
    /// A perpetual license of `product` for `licensee` with `credit` and the default model.
    pub fn new(licensee: LicenseeId, product: impl Into<String>, credit: Credit) -> Self {
        NewLicense {
            licensee,
            product: product.into(),
            tier: None,
            credit: Some(credit),
            valid_from: None,
            valid_until: None,
            license_key: LicenseKeyRequest::None,
            revokes_sibling_keys: true,
            properties: BTreeMap::new(),
            model: LicenseModel::default(),
            entitlement: None,
        }
    }
}

/// Most codes in one batch.
pub const MAX_ACTIVATION_CODES: u32 = 10_000;

/// Most redemptions of one code.
pub const MAX_USES_PER_CODE: u32 = 10_000;

/// A new batch of activation codes (`POST /admin/activation-codes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewActivationBatch {
    /// The license each redemption makes.
    pub template: LicenseTemplate,
    /// How many codes (1 to [`MAX_ACTIVATION_CODES`]).
    pub count: u32,
    /// How many consumers may redeem each code (1 to [`MAX_USES_PER_CODE`]).
    pub uses_per_code: u32,
    /// After this no code can be redeemed; never when absent.
    pub expires_at: Option<Timestamp>,
}

/// A change to a license's terms (`PATCH /admin/licenses/{id}`): only what is `Some` changes.
/// Live leases keep the terms they were granted under until they renew; the next decision and
/// the next token use the new ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LicensePatch {
    /// From when it may be used.
    pub valid_from: Option<Timestamp>,
    /// Until when it may be used (`Some(None)`: for ever).
    pub valid_until: Option<Option<Timestamp>>,
    /// The product tier whose features it grants.
    pub tier: Option<String>,
    /// How much credit: seats, uses or seconds (the dimension never changes).
    pub qty: Option<u64>,
    /// Whether the credit is enforced or metered.
    pub enforcement: Option<Enforcement>,
    /// The model's fields that change, by their names in the model's JSON form; the others keep
    /// their values.
    pub model: Option<serde_json::Map<String, serde_json::Value>>,
    /// The license's properties, replaced whole.
    pub properties: Option<BTreeMap<String, String>>,
    /// Whether the first activation of its key revokes the licensee's other keys of the product.
    pub revokes_sibling_keys: Option<bool>,
    /// Features to grant (`add`) and to withhold (`remove`) on top of the tier's, from now on:
    /// added to the license's overrides, each one replacing an opposite override of the same
    /// feature.
    pub features: Option<FeatureOverrides>,
    /// The entitlement it is in (`Some(None)`: none; one of its licensee's).
    pub entitlement: Option<Option<EntitlementId>>,
}

impl LicensePatch {
    /// The terms `current` has after this change, `product` being the license's product; the
    /// license's own rules ([`License::validate`]) still hold, or the change is refused.
    pub fn apply(&self, current: &License, product: &Product) -> Result<License, AdminError> {
        let mut next = current.clone();
        if let Some(from) = self.valid_from {
            next.valid_from = from;
        }
        if let Some(entitlement) = self.entitlement {
            next.entitlement = entitlement;
        }
        if let Some(until) = self.valid_until {
            next.valid_until = until;
        }
        if let Some(tier) = &self.tier {
            next.tier = Some(tier.clone());
        }
        if let Some(change) = &self.features {
            let known = |name: &String| product.features.iter().any(|f| f.name == *name);
            if let Some(unknown) = change.add.iter().chain(&change.remove).find(|f| !known(f)) {
                return Err(AdminError::Invalid(format!("features: the product has no feature {unknown:?}")));
            }
            let overrides = &mut next.feature_overrides;
            overrides.add.retain(|f| !change.remove.contains(f));
            overrides.remove.retain(|f| !change.add.contains(f));
            for added in &change.add {
                if !overrides.add.contains(added) {
                    overrides.add.push(added.clone());
                }
            }
            for removed in &change.remove {
                if !overrides.remove.contains(removed) {
                    overrides.remove.push(removed.clone());
                }
            }
        }
        if self.tier.is_some() || self.features.is_some() {
            let base = match &next.tier {
                Some(tier) => product.tier_features(tier).map_err(|e| AdminError::Invalid(format!("tier: {e}")))?,
                None => product.features.iter().filter(|f| !f.display_only).map(|f| f.name.clone()).collect(),
            };
            next.features = next.feature_overrides.apply_to(base);
        }
        if let Some(qty) = self.qty {
            next.credit.qty = qty;
        }
        if let Some(enforcement) = self.enforcement {
            next.credit.enforcement = enforcement;
        }
        if let Some(fields) = &self.model {
            let mut model =
                serde_json::to_value(&current.model).map_err(|e| AdminError::Invalid(format!("model: {e}")))?;
            if let serde_json::Value::Object(known) = &mut model {
                if let Some(unknown) = fields.keys().find(|name| !known.contains_key(name.as_str())) {
                    return Err(AdminError::Invalid(format!("model has no field {unknown:?}")));
                }
                known.extend(fields.clone());
            }
            let model: LicenseModel =
                serde_json::from_value(model).map_err(|e| AdminError::Invalid(format!("model: {e}")))?;
            next.model = model.interned();
        }
        if let Some(properties) = &self.properties {
            next.properties = properties.clone();
        }
        if let Some(revokes) = self.revokes_sibling_keys {
            next.revokes_sibling_keys = revokes;
        }
        next.validate().map_err(|e| AdminError::Invalid(e.to_string()))?;
        Ok(next)
    }
}

/// A change to a licensee (`PATCH /admin/licensees/{id}`): only what is `Some` changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LicenseePatch {
    /// Display name.
    pub name: Option<String>,
    /// The vendor's own id (`Some(None)` clears it).
    pub external_id: Option<Option<String>>,
}

impl LicenseePatch {
    /// Applies the change to `licensee`.
    pub fn apply(&self, licensee: &mut Licensee) {
        if let Some(name) = &self.name {
            licensee.name = name.clone();
        }
        if let Some(external_id) = &self.external_id {
            licensee.external_id = external_id.clone();
        }
    }
}

/// A change to a consumer (`PATCH /admin/consumers/{id}`): only what is `Some` changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerPatch {
    /// Display name.
    pub name: Option<String>,
    /// Contact address (`Some(None)` clears it).
    pub email: Option<Option<String>>,
    /// The vendor's own id (`Some(None)` clears it).
    pub external_id: Option<Option<String>>,
    /// The licensees whose licenses it may use, replaced whole (at least one).
    pub licensees: Option<Vec<LicenseeId>>,
    /// Whether its key is refused and its leases not renewed.
    pub disabled: Option<bool>,
}

impl ConsumerPatch {
    /// Applies the change to `consumer`.
    pub fn apply(&self, consumer: &mut Consumer) {
        if let Some(name) = &self.name {
            consumer.name = name.clone();
        }
        if let Some(email) = &self.email {
            consumer.email = email.clone();
        }
        if let Some(external_id) = &self.external_id {
            consumer.external_id = external_id.clone();
        }
        if let Some(licensees) = &self.licensees {
            consumer.licensees = licensees.clone();
        }
        if let Some(disabled) = self.disabled {
            consumer.disabled = disabled;
        }
    }
}

/// A change to a product (`PATCH /admin/products/{name}`): features to add and tiers to add or
/// replace (by name).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProductPatch {
    /// New features; a feature the product has is refused.
    pub features: Vec<Feature>,
    /// Tiers to add, or to replace when the product has one of that name.
    pub tiers: Vec<Tier>,
}

impl ProductPatch {
    /// `product` after this change; the catalog's rules ([`Product::validate`]) still hold, or
    /// the change is refused.
    pub fn apply(&self, product: &Product) -> Result<Product, AdminError> {
        let mut next = product.clone();
        if let Some(known) = self.features.iter().find(|f| product.features.iter().any(|p| p.name == f.name)) {
            return Err(AdminError::Conflict(format!("the product already has feature {:?}", known.name)));
        }
        next.features.extend(self.features.iter().cloned());
        for tier in &self.tiers {
            match next.tiers.iter_mut().find(|t| t.name == tier.name) {
                Some(existing) => *existing = tier.clone(),
                None => next.tiers.push(tier.clone()),
            }
        }
        next.validate().map_err(|e| AdminError::Invalid(e.to_string()))?;
        for tier in &next.tiers {
            next.tier_features(&tier.name).map_err(|e| AdminError::Invalid(format!("tiers: {e}")))?;
        }
        Ok(next)
    }
}
