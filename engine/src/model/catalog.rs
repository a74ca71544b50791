//! What is sold: products, their features, and tiers (named feature sets that may include other
//! tiers). Resolving a tier gives the features a license of that tier puts in its tokens.

use crate::ids::ProductId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A feature of a product: consuming it consumes the product's license.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feature {
    /// The item name clients ask for.
    pub name: String,
    /// Listed for marketing, never put in a token.
    #[serde(default)]
    pub display_only: bool,
}

/// A named set of features; may include another tier's features, transitively.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Tier {
    /// Tier name, unique within its product.
    pub name: String,
    /// Another tier of the same product whose features this one includes.
    #[serde(default)]
    pub includes: Option<String>,
    /// Features of this tier itself.
    #[serde(default)]
    pub features: Vec<String>,
    /// Monthly price, in the vendor's currency's minor units.
    #[serde(default)]
    pub monthly_price: Option<u64>,
    /// Annual price, in minor units.
    #[serde(default)]
    pub annual_price: Option<u64>,
    /// Billing periods offered ("monthly", "annual", ...).
    #[serde(default)]
    pub billing_periods: Vec<String>,
    /// Default seat count of a new license of this tier.
    #[serde(default)]
    pub max_users: Option<u64>,
    /// Default tenant limit of a new license of this tier.
    #[serde(default)]
    pub max_tenants: Option<u64>,
}

/// A licensed product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// Its id.
    pub id: ProductId,
    /// Its name; also an item name clients may ask for.
    pub name: String,
    /// Its features.
    pub features: Vec<Feature>,
    /// Its tiers.
    pub tiers: Vec<Tier>,
}

/// Why a product definition or a tier lookup is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// Two features share a name.
    #[error("feature {0:?} is defined twice")]
    DuplicateFeature(String),
    /// Two tiers share a name.
    #[error("tier {0:?} is defined twice")]
    DuplicateTier(String),
    /// A tier lists a feature the product does not have.
    #[error("tier {tier:?} lists unknown feature {feature:?}")]
    UnknownFeature {
        /// The tier.
        tier: String,
        /// The feature it names.
        feature: String,
    },
    /// A tier name that the product does not have.
    #[error("unknown tier {0:?}")]
    UnknownTier(String),
    /// Following `includes` comes back to a tier already visited.
    #[error("tier {0:?} includes itself through a cycle")]
    TierCycle(String),
    /// A name that is empty or too long.
    #[error("invalid name {0:?}: 1 to 200 characters")]
    InvalidName(String),
}

/// Longest name of a product, feature, tier, licensee or consumer, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Whether `name` can name something: 1 to [`MAX_NAME_CHARS`] characters, none a control.
pub fn is_valid_name(name: &str) -> bool {
    let chars = name.chars().count();
    (1..=MAX_NAME_CHARS).contains(&chars) && !name.chars().any(char::is_control)
}

fn check_name(name: &str) -> Result<(), CatalogError> {
    if !is_valid_name(name) {
        return Err(CatalogError::InvalidName(name.to_owned()));
    }
    Ok(())
}

impl Product {
    /// Checks the definition: unique names, tiers naming known features and tiers, no cycles.
    pub fn validate(&self) -> Result<(), CatalogError> {
        check_name(&self.name)?;
        let mut features = BTreeSet::new();
        for f in &self.features {
            check_name(&f.name)?;
            if !features.insert(f.name.as_str()) {
                return Err(CatalogError::DuplicateFeature(f.name.clone()));
            }
        }
        let mut tiers = BTreeSet::new();
        for t in &self.tiers {
            check_name(&t.name)?;
            if !tiers.insert(t.name.as_str()) {
                return Err(CatalogError::DuplicateTier(t.name.clone()));
            }
            if let Some(unknown) = t.features.iter().find(|f| !features.contains(f.as_str())) {
                return Err(CatalogError::UnknownFeature { tier: t.name.clone(), feature: unknown.clone() });
            }
        }
        for t in &self.tiers {
            self.tier_features(&t.name)?;
        }
        Ok(())
    }

    /// The tier called `name`.
    pub fn tier(&self, name: &str) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.name == name)
    }

    /// The features a license of tier `name` grants: its own and those of every tier it
    /// includes, transitively, without display-only features, sorted and without repeats.
    pub fn tier_features(&self, name: &str) -> Result<Vec<String>, CatalogError> {
        let mut visited = BTreeSet::new();
        let mut granted = BTreeSet::new();
        let mut next = Some(name);
        while let Some(tier_name) = next {
            if !visited.insert(tier_name) {
                return Err(CatalogError::TierCycle(tier_name.to_owned()));
            }
            let tier = self.tier(tier_name).ok_or_else(|| CatalogError::UnknownTier(tier_name.to_owned()))?;
            for feature in &tier.features {
                let shown = self.features.iter().any(|f| &f.name == feature && !f.display_only);
                if shown {
                    granted.insert(feature.clone());
                }
            }
            next = tier.includes.as_deref();
        }
        Ok(granted.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn feature(name: &str, display_only: bool) -> Feature {
        Feature { name: name.into(), display_only }
    }

    fn tier(name: &str, includes: Option<&str>, features: &[&str]) -> Tier {
        Tier {
            name: name.into(),
            includes: includes.map(Into::into),
            features: features.iter().map(|f| f.to_string()).collect(),
            ..Tier::default()
        }
    }

    fn three_dee(tiers: Vec<Tier>) -> Product {
        Product {
            id: ProductId(Uuid::nil()),
            name: "ThreeDee".into(),
            features: vec![feature("render", false), feature("simulate", false), feature("cloud-gallery", true)],
            tiers,
        }
    }

    #[test]
    fn a_tier_includes_the_features_of_the_tiers_it_includes_transitively() {
        let p = three_dee(vec![
            tier("Basic", None, &["render"]),
            tier("Pro", Some("Basic"), &["simulate"]),
            tier("Studio", Some("Pro"), &["cloud-gallery"]),
        ]);
        p.validate().unwrap();
        assert_eq!(p.tier_features("Studio").unwrap(), vec!["render", "simulate"]);
    }

    #[test]
    fn display_only_features_never_reach_a_token() {
        let p = three_dee(vec![tier("Gallery", None, &["cloud-gallery", "render"])]);
        assert_eq!(p.tier_features("Gallery").unwrap(), vec!["render"]);
    }

    #[test]
    fn tiers_that_include_each_other_are_rejected() {
        let p = three_dee(vec![tier("A", Some("B"), &[]), tier("B", Some("A"), &[])]);
        assert!(matches!(p.validate(), Err(CatalogError::TierCycle(_))));
        let selfish = three_dee(vec![tier("A", Some("A"), &[])]);
        assert!(matches!(selfish.validate(), Err(CatalogError::TierCycle(_))));
    }

    #[test]
    fn a_tier_naming_an_unknown_feature_or_tier_is_rejected() {
        let p = three_dee(vec![tier("A", None, &["teleport"])]);
        assert!(matches!(p.validate(), Err(CatalogError::UnknownFeature { .. })));
        let p = three_dee(vec![tier("A", Some("Missing"), &[])]);
        assert!(matches!(p.validate(), Err(CatalogError::UnknownTier(_))));
    }
}
