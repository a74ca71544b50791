//! Maps and sets sized for a license's live state, which is tiny for almost every license (one
//! or two leases, one consumer) and large for a few (a site license with thousands of seats).
//!
//! A hash map's smallest table holds four entries and a B-tree's smallest node eleven, so with
//! a million licenses the empty room of those collections costs more than the leases in them.
//! These start as a vector (growing one entry at a time, searched linearly, which is also the
//! fastest lookup at that size) and switch to the hashed or ordered collection once they hold
//! more than [`INLINE_MAX`] entries; they switch back when they shrink to a quarter of that.
//! The large form is boxed, so that each collection is only a vector's 24 bytes in the license
//! state: a license state holds seven of them.

use crate::hashing::Map;
use std::collections::BTreeSet;
use std::hash::Hash;

/// Most entries kept in a vector.
pub const INLINE_MAX: usize = 16;

/// Grows `vec` by one place at a time up to 4, then doubling: a lone entry costs one entry.
fn reserve_one<T>(vec: &mut Vec<T>) {
    if vec.len() == vec.capacity() {
        vec.reserve_exact(vec.len().clamp(1, INLINE_MAX));
    }
}

/// Gives back unused room after removals.
fn shrink_after_remove<T>(vec: &mut Vec<T>) {
    if vec.capacity() > 4 && vec.len() * 4 <= vec.capacity() {
        vec.shrink_to(vec.len() * 2);
    }
}

/// A map that is a vector of pairs while small and a hash map once large.
#[derive(Debug, Clone)]
pub enum SmallMap<K, V> {
    /// At most [`INLINE_MAX`] entries, in insertion order.
    Inline(Vec<(K, V)>),
    /// More entries.
    Hashed(Box<Map<K, V>>),
}

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        SmallMap::Inline(Vec::new())
    }
}

impl<K: Eq + Hash, V> SmallMap<K, V> {
    /// Entries.
    pub fn len(&self) -> usize {
        match self {
            SmallMap::Inline(v) => v.len(),
            SmallMap::Hashed(m) => m.len(),
        }
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        match self {
            SmallMap::Inline(v) => v.iter().find(|(k, _)| k == key).map(|(_, value)| value),
            SmallMap::Hashed(m) => m.get(key),
        }
    }

    /// The value of `key`, to change.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        match self {
            SmallMap::Inline(v) => v.iter_mut().find(|(k, _)| k == key).map(|(_, value)| value),
            SmallMap::Hashed(m) => m.get_mut(key),
        }
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`; the value it replaces.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self {
            SmallMap::Inline(v) => {
                if let Some((_, old)) = v.iter_mut().find(|(k, _)| *k == key) {
                    return Some(std::mem::replace(old, value));
                }
                if v.len() < INLINE_MAX {
                    reserve_one(v);
                    v.push((key, value));
                    return None;
                }
                let mut map: Map<K, V> = std::mem::take(v).into_iter().collect();
                map.insert(key, value);
                *self = SmallMap::Hashed(Box::new(map));
                None
            }
            SmallMap::Hashed(m) => m.insert(key, value),
        }
    }

    /// The value of `key`, inserting `make()` first if it has none.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        if let SmallMap::Inline(v) = self {
            if v.len() >= INLINE_MAX && !v.iter().any(|(k, _)| *k == key) {
                *self = SmallMap::Hashed(Box::new(std::mem::take(v).into_iter().collect()));
            }
        }
        match self {
            SmallMap::Inline(v) => {
                let at = match v.iter().position(|(k, _)| *k == key) {
                    Some(at) => at,
                    None => {
                        reserve_one(v);
                        v.push((key, make()));
                        v.len() - 1
                    }
                };
                &mut v[at].1
            }
            SmallMap::Hashed(m) => m.entry(key).or_insert_with(make),
        }
    }

    /// Removes `key`; its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        match self {
            SmallMap::Inline(v) => {
                let at = v.iter().position(|(k, _)| k == key)?;
                let (_, value) = v.swap_remove(at);
                shrink_after_remove(v);
                Some(value)
            }
            SmallMap::Hashed(m) => {
                let value = m.remove(key)?;
                if m.len() <= INLINE_MAX / 4 {
                    *self = SmallMap::Inline(std::mem::take(&mut **m).into_iter().collect());
                }
                Some(value)
            }
        }
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        let (inline, hashed) = match self {
            SmallMap::Inline(v) => (Some(v.iter().map(|(k, value)| (k, value))), None),
            SmallMap::Hashed(m) => (None, Some(m.iter())),
        };
        inline.into_iter().flatten().chain(hashed.into_iter().flatten())
    }

    /// Every value, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, value)| value)
    }
}

impl<K: Eq + Hash, V> FromIterator<(K, V)> for SmallMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let mut map = SmallMap::default();
        for (key, value) in entries {
            map.insert(key, value);
        }
        map
    }
}

/// An ordered set that is a sorted vector while small and a B-tree once large.
#[derive(Debug, Clone)]
pub enum SmallSet<T> {
    /// At most [`INLINE_MAX`] values, sorted.
    Inline(Vec<T>),
    /// More values.
    Tree(Box<BTreeSet<T>>),
}

impl<T> Default for SmallSet<T> {
    fn default() -> Self {
        SmallSet::Inline(Vec::new())
    }
}

impl<T: Ord> SmallSet<T> {
    /// Values.
    pub fn len(&self) -> usize {
        match self {
            SmallSet::Inline(v) => v.len(),
            SmallSet::Tree(t) => t.len(),
        }
    }

    /// Whether it has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `value` is in it.
    pub fn contains<Q>(&self, value: &Q) -> bool
    where
        T: std::borrow::Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match self {
            SmallSet::Inline(v) => v.binary_search_by(|x| x.borrow().cmp(value)).is_ok(),
            SmallSet::Tree(t) => t.contains(value),
        }
    }

    /// Adds `value`; whether it was new.
    pub fn insert(&mut self, value: T) -> bool {
        match self {
            SmallSet::Inline(v) => {
                let Err(at) = v.binary_search(&value) else { return false };
                if v.len() < INLINE_MAX {
                    reserve_one(v);
                    v.insert(at, value);
                    return true;
                }
                let mut tree: BTreeSet<T> = std::mem::take(v).into_iter().collect();
                tree.insert(value);
                *self = SmallSet::Tree(Box::new(tree));
                true
            }
            SmallSet::Tree(t) => t.insert(value),
        }
    }

    /// Removes `value`; whether it was there.
    pub fn remove(&mut self, value: &T) -> bool {
        match self {
            SmallSet::Inline(v) => {
                let Ok(at) = v.binary_search(value) else { return false };
                v.remove(at);
                shrink_after_remove(v);
                true
            }
            SmallSet::Tree(t) => {
                let removed = t.remove(value);
                if t.len() <= INLINE_MAX / 4 {
                    *self = SmallSet::Inline(std::mem::take(&mut **t).into_iter().collect());
                }
                removed
            }
        }
    }

    /// The smallest value.
    pub fn first(&self) -> Option<&T> {
        match self {
            SmallSet::Inline(v) => v.first(),
            SmallSet::Tree(t) => t.first(),
        }
    }

    /// Removes and returns the smallest value.
    pub fn pop_first(&mut self) -> Option<T> {
        let first = match self {
            SmallSet::Inline(v) if v.is_empty() => None,
            SmallSet::Inline(v) => Some(v.remove(0)),
            SmallSet::Tree(t) => t.pop_first(),
        }?;
        match self {
            SmallSet::Inline(v) => shrink_after_remove(v),
            SmallSet::Tree(t) if t.len() <= INLINE_MAX / 4 => {
                *self = SmallSet::Inline(std::mem::take(&mut **t).into_iter().collect())
            }
            SmallSet::Tree(_) => {}
        }
        Some(first)
    }

    /// Every value, smallest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        let (inline, tree) = match self {
            SmallSet::Inline(v) => (Some(v.iter()), None),
            SmallSet::Tree(t) => (None, Some(t.iter())),
        };
        inline.into_iter().flatten().chain(tree.into_iter().flatten())
    }
}

impl<T: Ord> FromIterator<T> for SmallSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(values: I) -> Self {
        let mut set = SmallSet::default();
        for value in values {
            set.insert(value);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u32),
        Remove(u8),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        // Keys from a range wider than INLINE_MAX, so that both forms and both switches happen.
        let op =
            prop_oneof![(0u8..48, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)), (0u8..48).prop_map(Op::Remove)];
        proptest::collection::vec(op, 0..400)
    }

    proptest! {
        #[test]
        fn small_map_behaves_like_a_map(ops in ops()) {
            let mut small = SmallMap::default();
            let mut model = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(small.insert(k, v), model.insert(k, v)),
                    Op::Remove(k) => prop_assert_eq!(small.remove(&k), model.remove(&k)),
                }
                prop_assert_eq!(small.len(), model.len());
                let mut entries: Vec<(u8, u32)> = small.iter().map(|(k, v)| (*k, *v)).collect();
                entries.sort();
                prop_assert_eq!(entries, model.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
                for k in 0..48u8 {
                    prop_assert_eq!(small.get(&k), model.get(&k));
                }
            }
        }

        #[test]
        fn small_set_behaves_like_an_ordered_set(ops in ops()) {
            let mut small = SmallSet::default();
            let mut model = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Insert(k, _) => prop_assert_eq!(small.insert(k), model.insert(k)),
                    Op::Remove(k) if k % 5 == 0 => prop_assert_eq!(small.pop_first(), model.pop_first()),
                    Op::Remove(k) => prop_assert_eq!(small.remove(&k), model.remove(&k)),
                }
                prop_assert_eq!(small.len(), model.len());
                prop_assert_eq!(small.first(), model.first());
                prop_assert!(small.iter().eq(model.iter()));
                for k in 0..48u8 {
                    prop_assert_eq!(small.contains(&k), model.contains(&k));
                }
            }
        }
    }

    #[test]
    fn get_or_insert_with_makes_a_value_once() {
        let mut map: SmallMap<u8, u32> = SmallMap::default();
        for round in 0..3 {
            for k in 0..40u8 {
                *map.get_or_insert_with(k, || 0) += 1;
            }
            assert_eq!(map.get(&7), Some(&(round + 1)));
        }
        assert_eq!(map.len(), 40);
    }
}
