//! Client versions as dotted numbers ("1.6.14"), compared component by component.
//!
//! Client versions in the wild are not always SemVer ("2024.1", "7"), so a missing component
//! counts as zero and a non-numeric suffix of a component ("3-beta") is ignored.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// A parsed dotted version. Equality follows the ordering: `1.2` equals `1.2.0`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DottedVersion(Vec<u64>);

impl DottedVersion {
    /// Parses `text`; `None` when it does not start with a number.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = Vec::new();
        for component in text.trim().split('.') {
            let digits: &str = {
                let end = component.find(|c: char| !c.is_ascii_digit()).unwrap_or(component.len());
                &component[..end]
            };
            if digits.is_empty() {
                break;
            }
            parts.push(digits.parse::<u64>().ok()?);
            if digits.len() != component.len() {
                break;
            }
        }
        (!parts.is_empty()).then_some(DottedVersion(parts))
    }

    fn component(&self, i: usize) -> u64 {
        self.0.get(i).copied().unwrap_or(0)
    }
}

impl Ord for DottedVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let len = self.0.len().max(other.0.len());
        (0..len).map(|i| self.component(i).cmp(&other.component(i))).find(|o| o.is_ne()).unwrap_or(Ordering::Equal)
    }
}

impl PartialEq for DottedVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for DottedVersion {}

impl PartialOrd for DottedVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::DottedVersion;

    fn v(s: &str) -> DottedVersion {
        DottedVersion::parse(s).unwrap()
    }

    #[test]
    fn missing_components_count_as_zero() {
        assert_eq!(v("1.2"), v("1.2.0"));
        assert!(v("1.10") > v("1.9.9"));
        assert!(v("2.0.0-beta") > v("1.99"));
    }

    #[test]
    fn text_that_is_not_a_version_is_rejected() {
        assert!(DottedVersion::parse("beta").is_none());
        assert!(DottedVersion::parse("").is_none());
    }
}
