//! The text of an id this crate generates (a session id, a socket id), held inline.
//!
//! A broadcast looks up every recipient's socket and session by id: with the text
//! behind a pointer, hashing it read one more cache line per lookup, scattered over a
//! working set far larger than the cache. Inline, the text lies in the table's slot or
//! the struct that holds the id, which the lookup reads anyway; and a copy costs no
//! reference count. The small-string type is `smol_str`'s: a `&str` of its inline
//! bytes needs no UTF-8 check, which this crate (no `unsafe`) could not do without.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use smol_str::SmolStr;

/// An id's text: inline up to `SmolStr::INLINE_CAP` (23) bytes, which every id
/// generated here (20 characters) fits, and a cluster's node prefix of up to three
/// characters before one; shared beyond. It hashes, compares and orders as its `str`
/// does (so that a table keyed by it is looked up by `&str`; the tests check it), and
/// two inline texts compare with no pointer followed.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct IdText(SmolStr);

impl IdText {
    /// The text.
    pub(crate) fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The text as a shared string (a room name).
    pub(crate) fn to_arc(&self) -> Arc<str> {
        Arc::from(self.as_str())
    }
}

impl From<&str> for IdText {
    fn from(text: &str) -> Self {
        Self(SmolStr::new(text))
    }
}

impl Borrow<str> for IdText {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for IdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for IdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};

    const INLINE: usize = SmolStr::INLINE_CAP;

    /// The hashes of `value` by std's hasher and by the one the id tables use.
    fn hash_of<T: Hash + ?Sized>(value: &T) -> [u64; 2] {
        use std::hash::BuildHasher;
        let mut hasher = DefaultHasher::new();
        value.hash(&mut hasher);
        let fold = foldhash::fast::FixedState::with_seed(7).hash_one(value);
        [hasher.finish(), fold]
    }

    #[test]
    fn an_id_is_held_inline_up_to_its_limit_and_acts_as_its_text_either_way() {
        let short = "AbCdEfGhIjKlMnOpQrSt";
        let limit = "x".repeat(INLINE);
        let long = format!("node-with-a-long-tag:{short}");
        for text in [short, "", "é-ü", limit.as_str(), long.as_str()] {
            let id = IdText::from(text);
            assert_eq!(id.0.is_heap_allocated(), text.len() > INLINE, "{text}");
            assert_eq!(id.as_str(), text);
            assert_eq!(&*id.to_arc(), text);
            assert_eq!(hash_of(&id), hash_of(text), "{text}");
            assert_eq!(format!("{id:?}"), format!("{text:?}"));
            assert_eq!(id.to_string(), text);
            let map: std::collections::HashMap<IdText, ()> = [(id.clone(), ())].into();
            assert!(map.contains_key(text), "{text}");
            let mut ids = crate::IdMap::default();
            ids.insert(id.clone(), ());
            assert!(ids.contains_key(text), "{text}");
        }
        // Unequal when any byte differs: first, last, past the shorter one, at the limit.
        let full = "y".repeat(INLINE);
        for (a, b) in [
            ("abc", "abd"),
            ("xbc", "abc"),
            ("abc", "abc\0"),
            (&*limit, &*full),
        ] {
            assert_ne!(IdText::from(a), IdText::from(b), "{a:?} {b:?}");
        }
        let (a, b) = (IdText::from("abc"), IdText::from(long.as_str()));
        assert_eq!(a.cmp(&b), "abc".cmp(long.as_str()));
        assert_ne!(a, b);
        assert_eq!(b, IdText::from(long.as_str()));
    }
}
