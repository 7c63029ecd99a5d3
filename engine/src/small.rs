//! [`SmallMap`]: a map kept as a vector.

use std::borrow::Borrow;

/// "A few": up to this many entries a [`SmallMap`] grows one entry at a time (beyond,
/// as a `Vec` does), and a [`SmallSet`] is a vector (beyond, a hash set).
const FEW: usize = 8;

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

    /// The entry of `key`: the key as stored, and its value.
    pub fn get_key_value<Q: Eq + ?Sized>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
    {
        self.position(key).map(|i| (&self.0[i].0, &self.0[i].1))
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
                if self.0.len() == self.0.capacity() && self.0.len() < FEW {
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

/// A set kept as a vector while it holds a few members (a lookup scans them) and as a
/// hash set once it holds more: for sets that exist once per connection and hold
/// one member or a few nearly always (a socket's rooms, a room's members: every
/// socket has a room of its own), where an empty hash table's slots cost more than
/// the scan. Holds no allocation while empty, and exactly what it needs for its first
/// few members. Iteration is in no particular order.
#[derive(Debug, Clone)]
pub enum SmallSet<T> {
    /// At most eight members.
    Few(Vec<T>),
    /// More (boxed: the set is then the size of a vector).
    Many(Box<crate::IdSet<T>>),
}

impl<T> Default for SmallSet<T> {
    fn default() -> Self {
        Self::Few(Vec::new())
    }
}

impl<T: Eq + std::hash::Hash> SmallSet<T> {
    /// Whether `value` is a member.
    pub fn contains<Q: Eq + std::hash::Hash + ?Sized>(&self, value: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        match self {
            Self::Few(v) => v.iter().any(|m| m.borrow() == value),
            Self::Many(set) => set.contains(value),
        }
    }

    /// Adds `value`; `false` if it was a member already.
    pub fn insert(&mut self, value: T) -> bool {
        match self {
            Self::Few(v) => {
                if v.contains(&value) {
                    return false;
                }
                if v.len() < FEW {
                    v.reserve_exact(1);
                    v.push(value);
                } else {
                    let mut set: crate::IdSet<T> = v.drain(..).collect();
                    set.insert(value);
                    *self = Self::Many(Box::new(set));
                }
                true
            }
            Self::Many(set) => set.insert(value),
        }
    }

    /// Removes `value` and returns the member it matched.
    pub fn take<Q: Eq + std::hash::Hash + ?Sized>(&mut self, value: &Q) -> Option<T>
    where
        T: Borrow<Q>,
    {
        match self {
            Self::Few(v) => {
                let i = v.iter().position(|m| m.borrow() == value)?;
                let taken = v.swap_remove(i);
                if v.is_empty() {
                    *v = Vec::new();
                }
                Some(taken)
            }
            Self::Many(set) => set.take(value),
        }
    }

    /// Removes `value`; whether it was a member.
    pub fn remove<Q: Eq + std::hash::Hash + ?Sized>(&mut self, value: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        self.take(value).is_some()
    }

    /// How many members.
    pub fn len(&self) -> usize {
        match self {
            Self::Few(v) => v.len(),
            Self::Many(set) => set.len(),
        }
    }

    /// Whether it has no member.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The members.
    pub fn iter(&self) -> SmallSetIter<'_, T> {
        match self {
            Self::Few(v) => SmallSetIter::Few(v.iter()),
            Self::Many(set) => SmallSetIter::Many(set.iter()),
        }
    }
}

/// The members of a [`SmallSet`], borrowed.
#[derive(Debug)]
pub enum SmallSetIter<'a, T> {
    /// Of a vector.
    Few(std::slice::Iter<'a, T>),
    /// Of a hash set.
    Many(std::collections::hash_set::Iter<'a, T>),
}

impl<'a, T> Iterator for SmallSetIter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        match self {
            Self::Few(i) => i.next(),
            Self::Many(i) => i.next(),
        }
    }
}

impl<'a, T: Eq + std::hash::Hash> IntoIterator for &'a SmallSet<T> {
    type Item = &'a T;
    type IntoIter = SmallSetIter<'a, T>;

    fn into_iter(self) -> SmallSetIter<'a, T> {
        self.iter()
    }
}

impl<T> IntoIterator for SmallSet<T> {
    type Item = T;
    type IntoIter =
        std::iter::Chain<std::vec::IntoIter<T>, std::collections::hash_set::IntoIter<T>>;

    fn into_iter(self) -> Self::IntoIter {
        match self {
            Self::Few(v) => v.into_iter().chain(crate::IdSet::default()),
            Self::Many(set) => Vec::new().into_iter().chain(*set),
        }
    }
}

impl<T: Eq + std::hash::Hash> FromIterator<T> for SmallSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut set = Self::default();
        for value in iter {
            set.insert(value);
        }
        set
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

    #[test]
    fn a_small_set_is_a_vector_of_exactly_its_few_members_then_a_hash_set() {
        use super::SmallSet;
        let mut s: SmallSet<Arc<str>> = SmallSet::default();
        assert!(s.is_empty() && s.iter().next().is_none());
        assert_eq!(
            std::mem::size_of::<SmallSet<u64>>(),
            std::mem::size_of::<Vec<u64>>()
        );
        assert!(s.insert("a".into()));
        assert!(!s.insert("a".into()), "already a member");
        assert!(matches!(&s, SmallSet::Few(v) if v.capacity() == 1));
        assert!(s.contains("a") && !s.contains("b"));
        for i in 0..20 {
            assert!(s.insert(i.to_string().into()));
            assert_eq!(s.len(), i + 2);
        }
        assert!(matches!(s, SmallSet::Many(_)), "past a few members, hashed");
        assert!(s.contains("a") && s.contains("19") && !s.contains("20"));
        assert_eq!(s.take("a").as_deref(), Some("a"));
        assert!(!s.remove("a"));
        let mut members: Vec<String> = s.iter().map(|m| m.to_string()).collect();
        members.sort_by_key(|m| m.parse::<u32>().unwrap_or(0));
        assert_eq!(members, (0..20).map(|i| i.to_string()).collect::<Vec<_>>());
        assert_eq!(s.clone().into_iter().count(), 20);
        // Few again: emptied, it holds nothing.
        let mut few: SmallSet<u32> = [1, 2].into_iter().collect();
        assert!(few.remove(&1) && few.remove(&2) && !few.remove(&2));
        assert!(matches!(few, SmallSet::Few(ref v) if v.capacity() == 0));
        assert_eq!((&few).into_iter().count(), 0);
    }
}
