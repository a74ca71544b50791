//! What an administrator asks for when creating things: plain data the admin API and embedders
//! fill in, with the defaults SPEC section 9 gives.

use crate::ids::LicenseeId;
use crate::model::{ConsumerKind, Credit, Feature, LicenseModel, LicenseeKind, Tier};
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
