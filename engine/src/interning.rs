//! Shared copies of values that many licenses and leases repeat: a license's rules, a product's
//! name. With a million licenses, one copy each of a handful of distinct values is a large part
//! of the memory; an interner hands out one `Arc` per distinct value instead.
//!
//! Values nobody holds any more are dropped as the set grows (when only the set holds them), so
//! the set stays proportional to the values in use.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// One shared copy of each distinct value.
pub struct Interner<T: ?Sized> {
    set: Mutex<Option<Shared<T>>>,
}

struct Shared<T: ?Sized> {
    values: HashSet<Arc<T>>,
    /// The size at which unused values are next dropped.
    prune_at: usize,
}

/// The smallest size at which unused values are dropped.
const MIN_PRUNE_AT: usize = 64;

impl<T: ?Sized + Hash + Eq> Interner<T> {
    /// An empty interner (usable in a `static`).
    pub const fn new() -> Self {
        Interner { set: Mutex::new(None) }
    }

    /// The shared copy of `value`, made with `make` if there is none yet.
    pub fn get<Q>(&self, value: &Q, make: impl FnOnce() -> Arc<T>) -> Arc<T>
    where
        Arc<T>: Borrow<Q>,
        Q: ?Sized + Hash + Eq,
    {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        let shared = set.get_or_insert_with(|| Shared { values: HashSet::new(), prune_at: MIN_PRUNE_AT });
        if let Some(found) = shared.values.get(value) {
            return Arc::clone(found);
        }
        if shared.values.len() >= shared.prune_at {
            shared.values.retain(|v| Arc::strong_count(v) > 1);
            shared.prune_at = (shared.values.len() * 2).max(MIN_PRUNE_AT);
        }
        let made = make();
        shared.values.insert(Arc::clone(&made));
        made
    }
}

impl<T: ?Sized + Hash + Eq> Default for Interner<T> {
    fn default() -> Self {
        Interner::new()
    }
}

/// Names (products, features, items) as shared strings.
pub fn name(value: &str) -> Arc<str> {
    static NAMES: Interner<str> = Interner::new();
    NAMES.get(value, || Arc::from(value))
}

/// Deserializes a name into its shared copy ([`name`]).
pub fn deserialize_name<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Arc<str>, D::Error> {
    let value = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
    Ok(name(&value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_copy_and_unused_ones_are_dropped() {
        let names: Interner<str> = Interner::new();
        let a = names.get("product", || Arc::from("product"));
        let b = names.get("product", || Arc::from("product"));
        assert!(Arc::ptr_eq(&a, &b));
        drop((a, b));
        for i in 0..MIN_PRUNE_AT * 4 {
            let value = i.to_string();
            names.get(value.as_str(), || Arc::from(value.as_str()));
        }
        let held = names.set.lock().unwrap().as_ref().map_or(0, |s| s.values.len());
        assert!(held <= MIN_PRUNE_AT * 2, "unused values are dropped as the set grows: {held} held");
    }
}
