//! [`SmallMap`]: a map kept as a vector.

use std::borrow::Borrow;

/// Up to this many entries a map grows one entry at a time; beyond, as a `Vec` does.
const EXACT_UP_TO: usize = 8;

/// A map kept as a vector of keys and values (not in any particular order; a lookup
/// scans them): for maps that hold a few entries each and exist once per connection
/// (a client's namespaces, a socket's event handlers), where a hash map would cost more
/// memory than a scan costs time. It holds no allocation while empty, and exactly
/// what it needs for its first few entries.
#[derive(Debug, Clone)]
pub struct SmallMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<K: Eq, V> SmallMap<K, V> {
    fn position<Q: Eq + ?Sized>(&self, key: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
    {
        self.0.iter().position(|(k, _)| k.borrow() == key)
    }

    /// The value of `key`.
    pub fn get<Q: Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.position(key).map(|i| &self.0[i].1)
    }

    /// Whether `key` is in the map.
    pub fn contains_key<Q: Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.position(key).is_some()
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.position(&key) {
            Some(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            None => {
                if self.0.len() == self.0.capacity() && self.0.len() < EXACT_UP_TO {
                    // Most hold one entry or a few: room for just those (a `Vec`
                    // would double, from one to four).
                    self.0.reserve_exact(1);
                }
                self.0.push((key, value));
                None
            }
        }
    }

    /// Removes `key`; returns its value.
    pub fn remove<Q: Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.remove_entry(key).map(|(_, v)| v)
    }

    /// Removes `key`; returns it and its value.
    pub fn remove_entry<Q: Eq + ?Sized>(&mut self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
    {
        let i = self.position(key)?;
        let entry = self.0.swap_remove(i);
        if self.0.is_empty() {
            // An empty map holds no allocation.
            self.0 = Vec::new();
        }
        Some(entry)
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// The values.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }

    /// The values, taken.
    pub fn into_values(self) -> impl Iterator<Item = V> {
        self.0.into_iter().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::SmallMap;
    use std::sync::Arc;

    #[test]
    fn behaves_as_a_map() {
        let mut m: SmallMap<Arc<str>, u32> = SmallMap::default();
        assert_eq!(m.insert("/a".into(), 1), None);
        assert_eq!(m.0.capacity(), 1, "room for one entry");
        assert_eq!(m.insert("/b".into(), 2), None);
        assert_eq!(m.0.capacity(), 2, "room for two, not four");
        assert_eq!(m.insert("/a".into(), 3), Some(1));
        assert_eq!((m.len(), m.get("/a"), m.get("/c")), (2, Some(&3), None));
        assert!(m.contains_key("/b"));
        assert_eq!(
            m.remove_entry("/a").map(|(k, v)| (k.to_string(), v)),
            Some(("/a".into(), 3))
        );
        assert_eq!(m.remove("/a"), None);
        assert_eq!(m.values().copied().collect::<Vec<_>>(), [2]);
        assert_eq!(m.remove("/b"), Some(2));
        assert_eq!(m.0.capacity(), 0, "an empty map holds nothing");
        // Past a few entries it grows as a vector does (not one at a time).
        for i in 0..20u32 {
            m.insert(i.to_string().into(), i);
        }
        assert_eq!(m.len(), 20);
        assert!(m.0.capacity() >= 20 && m.0.capacity() < 40);
    }
}
