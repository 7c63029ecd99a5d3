//! The text of an id this crate generates (a session id, a socket id), held inline.
//!
//! A broadcast looks up every recipient's socket and session by id: with the text
//! behind a pointer, hashing it read one more cache line per lookup, scattered over a
//! working set far larger than the cache. Inline, the text lies in the table's slot or
//! the struct that holds the id, which the lookup reads anyway; and a copy costs no
//! reference count.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Bytes held inline: every id generated here (20 characters) fits, and so does a
/// cluster's short node prefix before one.
const INLINE: usize = 22;

/// An id's text: inline up to [`INLINE`] bytes, shared beyond. It hashes, compares and
/// orders as its `str` does (so that a table keyed by it is looked up by `&str`).
#[derive(Clone)]
pub(crate) enum IdText {
    /// `len` bytes of `bytes`, valid UTF-8.
    Inline { len: u8, bytes: [u8; INLINE] },
    /// A longer text.
    Shared(Arc<str>),
}

impl IdText {
    /// The text as bytes, with no UTF-8 check.
    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Shared(text) => text.as_bytes(),
        }
    }

    /// The text.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Made from a `&str`: the check always passes.
            Self::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Self::Shared(text) => text,
        }
    }

    /// The text as a shared string (a room name): the same allocation when it has one.
    pub(crate) fn to_arc(&self) -> Arc<str> {
        match self {
            Self::Inline { .. } => Arc::from(self.as_str()),
            Self::Shared(text) => text.clone(),
        }
    }
}

impl From<&str> for IdText {
    fn from(text: &str) -> Self {
        match u8::try_from(text.len()) {
            Ok(len) if text.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..text.len()].copy_from_slice(text.as_bytes());
                Self::Inline { len, bytes }
            }
            _ => Self::Shared(Arc::from(text)),
        }
    }
}

impl PartialEq for IdText {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            // Whole arrays (the bytes past `len` are zero): a few word compares.
            (Self::Inline { len, bytes }, Self::Inline { len: l, bytes: b }) => {
                len == l && bytes == b
            }
            _ => self.as_bytes() == other.as_bytes(),
        }
    }
}

impl Eq for IdText {}

impl PartialOrd for IdText {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IdText {
    fn cmp(&self, other: &Self) -> Ordering {
        // Byte order is `str`'s order.
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Hash for IdText {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As a `str` hashes (which `Borrow<str>` requires: the tests check it), without
        // the UTF-8 check of `as_str`.
        state.write(self.as_bytes());
        state.write_u8(0xff);
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
            assert_eq!(
                matches!(id, IdText::Inline { .. }),
                text.len() <= INLINE,
                "{text}"
            );
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
        let (a, b) = (IdText::from("abc"), IdText::from(long.as_str()));
        assert_eq!(a.cmp(&b), "abc".cmp(long.as_str()));
        assert_ne!(a, b);
        assert_eq!(b, IdText::from(long.as_str()));
    }
}
