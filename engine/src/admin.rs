//! What an administrator asks for when creating and changing things: plain data the admin API and
//! embedders fill in, with the defaults SPEC section 9 gives, and the pure function that applies
//! a change of terms (SPEC section 10).

use crate::error::AdminError;
use crate::ids::LicenseeId;
use crate::model::{ConsumerKind, Credit, Enforcement, Feature, License, LicenseModel, LicenseeKind, Product, Tier};
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
        }
    }
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
    /// Whether activating its key revokes the older keys of the same licensee and product.
    pub revokes_sibling_keys: Option<bool>,
}

impl LicensePatch {
    /// The terms `current` has after this change, `product` being the license's product; the
    /// license's own rules ([`License::validate`]) still hold, or the change is refused.
    pub fn apply(&self, current: &License, product: &Product) -> Result<License, AdminError> {
        let mut next = current.clone();
        if let Some(from) = self.valid_from {
            next.valid_from = from;
        }
        if let Some(until) = self.valid_until {
            next.valid_until = until;
        }
        if let Some(tier) = &self.tier {
            next.features = product.tier_features(tier).map_err(|e| AdminError::Invalid(format!("tier: {e}")))?;
            next.tier = Some(tier.clone());
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
