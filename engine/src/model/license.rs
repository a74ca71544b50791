//! What a licensee bought: a license with one credit (seats, use count or use time), a validity
//! window, a status, and the license model whose rules every lease must satisfy.

use super::version::DottedVersion;
use crate::ids::{EntitlementId, LicenseId, LicenseeId, ProductId};
use crate::interning::Interner;
use crate::time::Timestamp;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// What a credit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Dimension {
    /// Concurrent leases (sessions).
    Seats,
    /// Total uses.
    UseCount,
    /// Total seconds of use.
    UseTime,
}

impl Dimension {
    /// The name used on the wire (`qtyDimension`).
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Seats => "SEATS",
            Dimension::UseCount => "USE_COUNT",
            Dimension::UseTime => "USE_TIME",
        }
    }
}

/// Whether the credit's quantity is a limit or only a meter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Enforcement {
    /// The quantity is a hard limit.
    Enforced,
    /// No limit; use is recorded for billing.
    Metered,
}

impl Enforcement {
    /// The name used on the wire (`qtyEnforcementType`).
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Enforced => "ENFORCED",
            Enforcement::Metered => "METERED",
        }
    }
}

/// The one credit of a license.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit {
    /// What is counted.
    pub dimension: Dimension,
    /// How much: seats, uses or seconds.
    pub qty: u64,
    /// Limit or meter.
    pub enforcement: Enforcement,
}

impl Credit {
    /// Whether the quantity is a hard limit.
    pub fn is_enforced(&self) -> bool {
        self.enforcement == Enforcement::Enforced
    }
}

/// A client claim that identifies a session: one seat per distinct tuple of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionAnchor {
    /// The consumer.
    User,
    /// The hardware id.
    Hw,
    /// The client process id.
    Process,
}

/// Allowed client versions, both ends inclusive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct VersionRange {
    /// Lowest allowed version.
    #[serde(default)]
    pub min: Option<String>,
    /// Highest allowed version.
    #[serde(default)]
    pub max: Option<String>,
}

impl VersionRange {
    /// Whether `version` is in the range; `None` when it cannot be read as a version.
    pub fn allows(&self, version: &str) -> Option<bool> {
        let v = DottedVersion::parse(version)?;
        let above_min = self.min.as_deref().and_then(DottedVersion::parse).is_none_or(|min| v >= min);
        let below_max = self.max.as_deref().and_then(DottedVersion::parse).is_none_or(|max| v <= max);
        Some(above_min && below_max)
    }

    fn validate(&self) -> Result<(), LicenseError> {
        for bound in [&self.min, &self.max].into_iter().flatten() {
            if DottedVersion::parse(bound).is_none() {
                return Err(LicenseError::InvalidVersion(bound.clone()));
            }
        }
        Ok(())
    }
}

/// Countries a license may be used from, told from the client's address (SPEC section 13):
/// ISO 3166-1 alpha-2 codes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct GeoRules {
    /// When not empty, only clients in these countries may consume.
    #[serde(default)]
    pub allowed_countries: Vec<String>,
    /// Clients in these countries may never consume.
    #[serde(default)]
    pub blocked_countries: Vec<String>,
}

impl GeoRules {
    /// Whether the rules say nothing (the client's country is not needed).
    pub fn is_empty(&self) -> bool {
        self.allowed_countries.is_empty() && self.blocked_countries.is_empty()
    }

    /// Whether a client in `country` may consume.
    pub fn admits(&self, country: &str) -> bool {
        let listed = |codes: &[String]| codes.iter().any(|c| c.eq_ignore_ascii_case(country));
        (self.allowed_countries.is_empty() || listed(&self.allowed_countries)) && !listed(&self.blocked_countries)
    }

    fn validate(&self) -> Result<(), LicenseError> {
        let codes = self.allowed_countries.iter().chain(&self.blocked_countries);
        match codes.into_iter().find(|c| c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic())) {
            Some(bad) => Err(LicenseError::InvalidCountry(bad.clone())),
            None => Ok(()),
        }
    }
}

/// Client IP ranges a license accepts or refuses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct IpRules {
    /// When not empty, only these ranges may consume.
    #[serde(default)]
    pub allowed: Vec<IpNet>,
    /// These ranges may never consume.
    #[serde(default)]
    pub blocked: Vec<IpNet>,
}

impl IpRules {
    /// Whether a request from `ip` (unknown when `None`) passes the rules.
    pub fn admits(&self, ip: Option<IpAddr>) -> bool {
        if self.allowed.is_empty() && self.blocked.is_empty() {
            return true;
        }
        let Some(ip) = ip else { return false };
        let allowed = self.allowed.is_empty() || self.allowed.iter().any(|n| n.contains(&ip));
        allowed && !self.blocked.iter().any(|n| n.contains(&ip))
    }
}

/// The rules every lease of a license follows. Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct LicenseModel {
    /// Longest online (`cache`) lease.
    pub lease_time_online_s: u64,
    /// When an online client should refresh, counted from the grant.
    pub refresh_time_online_s: u64,
    /// Longest offline (`checkout`) lease.
    pub lease_time_offline_s: u64,
    /// When an offline client should refresh, counted from the grant.
    pub refresh_time_offline_s: u64,
    /// Earliest heartbeat after a grant or renewal (0: any time).
    pub heartbeat_interval_s: u64,
    /// How long a released seat stays taken before another session may have it.
    pub cooldown_s: u64,
    /// Whether leases may be renewed.
    pub allow_extension: bool,
    /// Whether leases may be released before they expire.
    pub allow_release: bool,
    /// Whether a session's next consume must name its current lease id.
    pub lease_chaining: bool,
    /// The claims that make up one session; empty means no concurrency limit per session.
    pub session_anchors: Vec<SessionAnchor>,
    /// Most distinct hardware ids that may ever use the license (node locking).
    pub max_hardware: Option<u32>,
    /// Allowed client versions.
    pub version_range: Option<VersionRange>,
    /// Whether a consumer needs a seat assignment to consume.
    pub named_seats: bool,
    /// Most live leases one consumer may hold at once.
    pub max_leases_per_consumer: Option<u32>,
    /// Client IP ranges allowed and blocked.
    pub ip_rules: IpRules,
    /// Countries allowed and blocked, by the client's address (geolocation).
    #[serde(default, with = "crate::shapes::since_format_9")]
    pub geo: GeoRules,
}

impl Default for LicenseModel {
    fn default() -> Self {
        LicenseModel {
            lease_time_online_s: 7_200,
            refresh_time_online_s: 3_600,
            lease_time_offline_s: 2_592_000,
            refresh_time_offline_s: 12_600,
            heartbeat_interval_s: 0,
            cooldown_s: 0,
            allow_extension: true,
            allow_release: true,
            lease_chaining: false,
            session_anchors: vec![SessionAnchor::User],
            max_hardware: None,
            version_range: None,
            named_seats: false,
            max_leases_per_consumer: None,
            ip_rules: IpRules::default(),
            geo: GeoRules::default(),
        }
    }
}

impl LicenseModel {
    /// This model as a shared copy: the same `Arc` as every other license with equal rules.
    ///
    /// Most licenses share a handful of models (a product's default, a few custom ones), and a
    /// model is a fifth of a license's terms; with a million licenses, one copy per license is
    /// a sixth of a gigabyte of identical rules. Models no license uses any more are dropped
    /// from the shared set as it grows.
    pub fn interned(self) -> Arc<LicenseModel> {
        static MODELS: Interner<LicenseModel> = Interner::new();
        MODELS.get(&self, || Arc::new(self.clone()))
    }
}

fn deserialize_interned_model<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Arc<LicenseModel>, D::Error> {
    LicenseModel::deserialize(deserializer).map(LicenseModel::interned)
}

/// Whether a license may be used.
///
/// Human-readable formats (JSON) tag it internally: `{"state": "revoked", "reason", "at"}`.
/// Compact formats (bincode: the journal, the TCP protocol) cannot read internally tagged enums
/// (they need `deserialize_any`), so there it is an ordinary enum; see `status_serde` below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LicenseStatus {
    /// In force.
    Active,
    /// Switched off for now; can be reactivated.
    Deactivated,
    /// Cancelled for good.
    Revoked {
        /// Why.
        reason: String,
        /// When.
        at: Timestamp,
    },
}

/// The two serde shapes of [`LicenseStatus`], chosen by `is_human_readable`.
mod status_serde {
    use super::LicenseStatus;
    use crate::time::Timestamp;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(tag = "state", rename_all = "lowercase")]
    enum Tagged {
        Active,
        Deactivated,
        Revoked { reason: String, at: Timestamp },
    }

    #[derive(Serialize, Deserialize)]
    enum Plain {
        Active,
        Deactivated,
        Revoked { reason: String, at: Timestamp },
    }

    impl Serialize for LicenseStatus {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let human = serializer.is_human_readable();
            match (self.clone(), human) {
                (LicenseStatus::Active, true) => Tagged::Active.serialize(serializer),
                (LicenseStatus::Deactivated, true) => Tagged::Deactivated.serialize(serializer),
                (LicenseStatus::Revoked { reason, at }, true) => Tagged::Revoked { reason, at }.serialize(serializer),
                (LicenseStatus::Active, false) => Plain::Active.serialize(serializer),
                (LicenseStatus::Deactivated, false) => Plain::Deactivated.serialize(serializer),
                (LicenseStatus::Revoked { reason, at }, false) => Plain::Revoked { reason, at }.serialize(serializer),
            }
        }
    }

    impl<'de> Deserialize<'de> for LicenseStatus {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            if deserializer.is_human_readable() {
                Ok(match Tagged::deserialize(deserializer)? {
                    Tagged::Active => LicenseStatus::Active,
                    Tagged::Deactivated => LicenseStatus::Deactivated,
                    Tagged::Revoked { reason, at } => LicenseStatus::Revoked { reason, at },
                })
            } else {
                Ok(match Plain::deserialize(deserializer)? {
                    Plain::Active => LicenseStatus::Active,
                    Plain::Deactivated => LicenseStatus::Deactivated,
                    Plain::Revoked { reason, at } => LicenseStatus::Revoked { reason, at },
                })
            }
        }
    }
}

/// A license: the terms a licensee bought. Live usage is in [`crate::decide::LicenseState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct License {
    /// Its id (`lic` / `licenseId` in tokens).
    pub id: LicenseId,
    /// Who bought it.
    pub licensee: LicenseeId,
    /// The product.
    pub product: ProductId,
    /// The product's name (`productName` in tokens), shared with every license of the product
    /// ([`crate::interning::name`]).
    #[serde(deserialize_with = "crate::interning::deserialize_name")]
    pub product_name: Arc<str>,
    /// The tier it was sold at, when the product has tiers.
    pub tier: Option<String>,
    /// The features it grants (resolved from the tier; display-only ones left out).
    pub features: Vec<String>,
    /// Start of validity.
    pub valid_from: Timestamp,
    /// End of validity; `None` is perpetual.
    pub valid_until: Option<Timestamp>,
    /// Active, deactivated or revoked.
    pub status: LicenseStatus,
    /// The license key clients may present instead of an API key.
    pub license_key: Option<String>,
    /// Whether activating this keyed license revokes the licensee's other keyed licenses of the
    /// same product (one active key per customer and product).
    pub revokes_sibling_keys: bool,
    /// Custom properties (`licenseProperties` in tokens).
    pub properties: BTreeMap<String, String>,
    /// Its one credit.
    pub credit: Credit,
    /// Its rules, shared with every license that has the same ones
    /// ([`LicenseModel::interned`]).
    #[serde(deserialize_with = "deserialize_interned_model")]
    pub model: Arc<LicenseModel>,
    /// Features granted or withheld on top of the tier's, for this license alone; `features`
    /// already holds the result.
    #[serde(default, with = "crate::shapes::since_format_3")]
    pub feature_overrides: FeatureOverrides,
    /// When its license key was first used: the moment the sibling rule revoked the licensee's
    /// other keys of the product (SPEC section 10). `None` for a key never used, or no key.
    #[serde(default, with = "crate::shapes::since_format_3")]
    pub key_activated_at: Option<Timestamp>,
    /// The `valid_until` whose passing was recorded as a `license.expired` event: a license
    /// whose end passed and differs from this one is due its event (an extended license expires
    /// again, once, at its new end).
    #[serde(default, with = "crate::shapes::since_format_3")]
    pub expiry_recorded: Option<Timestamp>,
    /// The entitlement it is in: only members of the entitlement's groups may use it. Outside
    /// one, every consumer of its licensee may.
    #[serde(default, with = "crate::shapes::since_format_6")]
    pub entitlement: Option<EntitlementId>,
}

/// Features a license grants or withholds on top of its tier's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureOverrides {
    /// Granted although the tier does not include them.
    pub add: Vec<String>,
    /// Withheld although the tier includes them.
    pub remove: Vec<String>,
}

impl FeatureOverrides {
    /// `base` (a tier's features) with these overrides applied, in `base`'s order and then the
    /// added ones'.
    pub fn apply_to(&self, base: Vec<String>) -> Vec<String> {
        let mut features: Vec<String> = base.into_iter().filter(|f| !self.remove.contains(f)).collect();
        for added in &self.add {
            if !features.contains(added) {
                features.push(added.clone());
            }
        }
        features
    }
}

/// Why license terms are not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenseError {
    /// The key is not 16-64 characters of `[A-Za-z0-9_-]`.
    #[error("license key must be 16 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")]
    InvalidKey,
    /// Validity ends before it starts.
    #[error("valid_until is before valid_from")]
    EmptyValidity,
    /// A version bound that is not a version.
    #[error("version bound {0:?} is not a version")]
    InvalidVersion(String),
    /// A lease time of zero.
    #[error("lease times must be at least one second")]
    ZeroLeaseTime,
    /// A seat license needs at least one seat.
    #[error("a credit needs a quantity of at least 1")]
    ZeroCredit,
    /// A country that is not an ISO 3166-1 alpha-2 code.
    #[error("country {0:?} is not an ISO 3166-1 alpha-2 code (two letters)")]
    InvalidCountry(String),
}

/// Whether `key` has the shape the official Scale client accepts.
pub fn is_valid_license_key(key: &str) -> bool {
    (16..=64).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl License {
    /// Checks the terms for contradictions.
    pub fn validate(&self) -> Result<(), LicenseError> {
        if self.license_key.as_deref().is_some_and(|k| !is_valid_license_key(k)) {
            return Err(LicenseError::InvalidKey);
        }
        if self.valid_until.is_some_and(|end| end < self.valid_from) {
            return Err(LicenseError::EmptyValidity);
        }
        if self.model.lease_time_online_s == 0 || self.model.lease_time_offline_s == 0 {
            return Err(LicenseError::ZeroLeaseTime);
        }
        if self.credit.qty == 0 {
            return Err(LicenseError::ZeroCredit);
        }
        if let Some(range) = &self.model.version_range {
            range.validate()?;
        }
        self.model.geo.validate()
    }

    /// `item` as a shared string: the license's own product name when it is that, so that the
    /// leases of a license do not each hold a copy of it.
    pub fn shared_item(&self, item: &str) -> Arc<str> {
        if *self.product_name == *item {
            Arc::clone(&self.product_name)
        } else {
            crate::interning::name(item)
        }
    }

    /// Whether `item` is something this license grants: its product or one of its features.
    pub fn grants_item(&self, item: &str) -> bool {
        *self.product_name == *item || self.features.iter().any(|f| f == item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn license_keys_follow_the_scale_clients_shape() {
        assert!(is_valid_license_key("ABCD-EFGH_1234-xyz"));
        assert!(!is_valid_license_key("short"));
        assert!(!is_valid_license_key("has space in it here"));
        assert!(!is_valid_license_key(&"x".repeat(65)));
    }

    #[test]
    fn geo_rules_allow_and_block_countries_in_any_case() {
        let rules = GeoRules { allowed_countries: vec!["FI".into(), "se".into()], blocked_countries: vec![] };
        assert!(rules.admits("fi") && rules.admits("SE") && !rules.admits("US"));
        let blocked = GeoRules { allowed_countries: vec![], blocked_countries: vec!["RU".into()] };
        assert!(blocked.admits("FI") && !blocked.admits("RU"));
        assert!(GeoRules::default().is_empty() && GeoRules::default().admits("XX"));
        let bad = GeoRules { allowed_countries: vec!["Finland".into()], blocked_countries: vec![] };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn ip_rules_allow_and_block_ranges() {
        let rules =
            IpRules { allowed: vec!["10.0.0.0/8".parse().unwrap()], blocked: vec!["10.9.0.0/16".parse().unwrap()] };
        assert!(rules.admits(Some("10.1.2.3".parse().unwrap())));
        assert!(!rules.admits(Some("10.9.2.3".parse().unwrap())));
        assert!(!rules.admits(Some("192.168.0.1".parse().unwrap())));
        assert!(!rules.admits(None));
        assert!(IpRules::default().admits(None));
    }

    #[test]
    fn version_ranges_are_inclusive() {
        let range = VersionRange { min: Some("1.0.0".into()), max: Some("2.9.9".into()) };
        assert_eq!(range.allows("1.0"), Some(true));
        assert_eq!(range.allows("2.9.9"), Some(true));
        assert_eq!(range.allows("3.0"), Some(false));
        assert_eq!(range.allows("0.9.9"), Some(false));
        assert_eq!(range.allows("latest"), None);
    }
}
