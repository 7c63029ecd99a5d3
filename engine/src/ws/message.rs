//! Messages as delivered to and sent by the user.

use std::fmt;

use bytes::Bytes;

/// A complete WebSocket data message.
#[derive(Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (always valid UTF-8).
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// A text message.
    pub fn text(s: impl Into<Utf8Bytes>) -> Self {
        Self::Text(s.into())
    }

    /// A binary message.
    pub fn binary(b: impl Into<Bytes>) -> Self {
        Self::Binary(b.into())
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(t) => t.as_bytes(),
            Self::Binary(b) => b,
        }
    }

    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text of a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(t) => Some(t.as_str()),
            Self::Binary(_) => None,
        }
    }

    /// The payload (text or binary) parsed as JSON into `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(self.as_bytes())
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(t) if t.len() <= 64 => write!(f, "Text({:?})", t.as_str()),
            Self::Text(t) => write!(f, "Text({} bytes)", t.len()),
            Self::Binary(b) if b.len() <= 64 => write!(f, "Binary({b:?})"),
            Self::Binary(b) => write!(f, "Binary({} bytes)", b.len()),
        }
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Self::Text(s.into())
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Self::Text(s.into())
    }
}

impl From<Vec<u8>> for Message {
    fn from(b: Vec<u8>) -> Self {
        Self::Binary(b.into())
    }
}

impl From<Bytes> for Message {
    fn from(b: Bytes) -> Self {
        Self::Binary(b)
    }
}

/// A complete WebSocket data message lent for a moment instead of owned: a message
/// decoded in the reader's own buffer ([`Connection::handle_input_in_place`]), or a
/// [`Message`] borrowed. Copy it ([`to_message`](Self::to_message)) to keep it.
///
/// [`Connection::handle_input_in_place`]: super::Connection::handle_input_in_place
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum MessageRef<'a> {
    /// A text message (valid UTF-8).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> MessageRef<'a> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Self::Text(t) => t.as_bytes(),
            Self::Binary(b) => b,
        }
    }

    /// The text of a text message.
    pub fn as_text(&self) -> Option<&'a str> {
        match *self {
            Self::Text(t) => Some(t),
            Self::Binary(_) => None,
        }
    }

    /// Whether it is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text(_))
    }

    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An owned copy.
    pub fn to_message(&self) -> Message {
        match *self {
            Self::Text(t) => Message::Text(t.into()),
            Self::Binary(b) => Message::Binary(Bytes::copy_from_slice(b)),
        }
    }

    /// The payload (text or binary) parsed as JSON into `T`, which may borrow from it.
    pub fn json<T: serde::Deserialize<'a>>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(self.as_bytes())
    }
}

impl fmt::Debug for MessageRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Text(t) if t.len() <= 64 => write!(f, "Text({t:?})"),
            Self::Text(t) => write!(f, "Text({} bytes)", t.len()),
            Self::Binary(b) if b.len() <= 64 => write!(f, "Binary(b\"{}\")", b.escape_ascii()),
            Self::Binary(b) => write!(f, "Binary({} bytes)", b.len()),
        }
    }
}

impl<'a> From<&'a Message> for MessageRef<'a> {
    fn from(m: &'a Message) -> Self {
        match m {
            Message::Text(t) => Self::Text(t.as_str()),
            Message::Binary(b) => Self::Binary(b),
        }
    }
}

impl<'a> From<&'a str> for MessageRef<'a> {
    fn from(s: &'a str) -> Self {
        Self::Text(s)
    }
}

impl<'a> From<&'a [u8]> for MessageRef<'a> {
    fn from(b: &'a [u8]) -> Self {
        Self::Binary(b)
    }
}

impl From<MessageRef<'_>> for Message {
    fn from(m: MessageRef<'_>) -> Self {
        m.to_message()
    }
}

/// Shared, immutable bytes that are guaranteed to be valid UTF-8.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// Wraps bytes that were already validated.
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Self(bytes)
    }

    /// A static string, without copying.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }

    /// The text.
    #[allow(unsafe_code)]
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor either takes a `str`/`String` or validates the bytes
        // (`from_validated` is only called on bytes that passed the UTF-8 validator, and
        // `TryFrom<Bytes>` checks them), and the bytes are immutable.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The bytes of the text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The underlying shared bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::ops::Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = super::utf8::InvalidUtf8;
    fn try_from(b: Bytes) -> Result<Self, Self::Error> {
        super::utf8::validate(&b)?;
        Ok(Self(b))
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}
