//! Socket.IO packets (protocol v5, read also from v4 clients) and their text encoding.
//!
//! `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`, where the type is one of
//! CONNECT 0, DISCONNECT 1, EVENT 2, ACK 3, CONNECT_ERROR 4, BINARY_EVENT 5,
//! BINARY_ACK 6. A binary packet is followed by its attachments, one Engine.IO binary
//! message each; the JSON refers to them with `{"_placeholder":true,"num":N}` objects at
//! any depth.
//!
//! Decoding is strict, as the reference parser is: anything malformed is a
//! [`DecodeError`], and the session that sent it is closed.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::eio::Data;
use crate::http::push_decimal;
use crate::ws::Utf8Bytes;

use super::scan;

/// A packet type, binary variants included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// 0: connect to a namespace (client), or the namespace accepted it (server).
    Connect,
    /// 1: leave a namespace.
    Disconnect,
    /// 2: an event.
    Event,
    /// 3: the answer to an event that asked for one.
    Ack,
    /// 4: the server refused a CONNECT.
    ConnectError,
    /// 5: an event with binary attachments.
    BinaryEvent,
    /// 6: an ack with binary attachments.
    BinaryAck,
}

impl PacketType {
    /// The type for its digit.
    pub const fn from_char(c: u8) -> Option<Self> {
        Some(match c {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            _ => return None,
        })
    }

    /// The digit.
    pub const fn as_char(self) -> u8 {
        match self {
            Self::Connect => b'0',
            Self::Disconnect => b'1',
            Self::Event => b'2',
            Self::Ack => b'3',
            Self::ConnectError => b'4',
            Self::BinaryEvent => b'5',
            Self::BinaryAck => b'6',
        }
    }

    const fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }
}

/// Event names a client may not send (the reference refuses them too).
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// The arguments of an event or ack, and the binary attachments that
/// `{"_placeholder":true,"num":N}` objects in them refer to.
///
/// Arguments that came as JSON text stay text until they are asked for
/// ([`get`](Self::get), [`values`](Self::values)): an event acked or forwarded with
/// the arguments it came with is never parsed into [`Value`]s, and arguments made with
/// [`from_value`](Self::from_value) are serialised once, straight to text.
#[derive(Clone, Default)]
pub struct Payload {
    /// The arguments, unless they are held as `json`.
    values: Vec<Value>,
    /// The arguments as JSON text (then `values` is empty).
    json: Option<Json>,
    bins: Vec<Bytes>,
}

/// A JSON array's text, valid, brackets included, with `len` elements.
#[derive(Clone)]
struct Json {
    text: String,
    len: usize,
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.bins == other.bins && self.values() == other.values()
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payload")
            .field("args", &self.values())
            .field("bins", &self.bins)
            .finish()
    }
}

impl Payload {
    /// No arguments.
    pub fn new() -> Self {
        Self::default()
    }

    /// These arguments and attachments.
    pub fn from_parts(args: Vec<Value>, bins: Vec<Bytes>) -> Self {
        Self {
            values: args,
            json: None,
            bins,
        }
    }

    /// One argument: `value` serialised to JSON (text, not a [`Value`]).
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        let mut text = Vec::with_capacity(64);
        text.push(b'[');
        serde_json::to_writer(&mut text, value)?;
        text.push(b']');
        let text = String::from_utf8(text).map_err(serde::ser::Error::custom)?;
        Ok(Self::from_checked_json(text, 1))
    }

    /// Arguments given as the text of a JSON array (`[1,"a"]`), checked: it must also
    /// parse into values (as deep, and with the escapes and numbers, that
    /// [`Value`] holds).
    pub fn from_json(text: impl Into<String>) -> Result<Self, serde_json::Error> {
        let text = text.into();
        let (len, span) = match scan::array(&text) {
            Ok(array) => (array.len, array.span),
            Err(_) => {
                // serde_json says why: not an array, not JSON, or what a value cannot
                // hold (too deep, a number out of range, half a surrogate pair).
                serde_json::from_str::<Vec<serde::de::IgnoredAny>>(&text)?;
                serde_json::from_str::<Value>(&text)?;
                return Err(serde::de::Error::custom("not a JSON array of values"));
            }
        };
        // From bracket to bracket: the whitespace around them is not kept.
        let text = if span.len() == text.len() {
            text
        } else {
            text[span].to_owned()
        };
        Ok(Self::from_checked_json(text, len))
    }

    fn from_checked_json(text: String, len: usize) -> Self {
        Self {
            values: Vec::new(),
            json: Some(Json { text, len }),
            bins: Vec::new(),
        }
    }

    /// Appends a JSON argument.
    pub fn arg(mut self, value: Value) -> Self {
        self.push(value);
        self
    }

    /// Appends a JSON argument (to the text, if the arguments are held as text).
    pub fn push(&mut self, value: Value) {
        let Some(json) = &mut self.json else {
            self.values.push(value);
            return;
        };
        json.text.pop(); // `]`
        if json.len > 0 {
            json.text.push(',');
        }
        // A `Value` always serialises.
        if let Ok(v) = serde_json::to_string(&value) {
            json.text.push_str(&v);
        }
        json.text.push(']');
        json.len += 1;
    }

    /// Appends a binary argument (a placeholder and its attachment).
    pub fn bin(mut self, bytes: impl Into<Bytes>) -> Self {
        self.push(placeholder(self.bins.len()));
        self.bins.push(bytes.into());
        self
    }

    /// Argument `i` deserialised (placeholders stay placeholder objects); a missing
    /// argument is `null`.
    pub fn get<T: DeserializeOwned>(&self, i: usize) -> Result<T, serde_json::Error> {
        let Some(json) = &self.json else {
            return T::deserialize(self.values.get(i).unwrap_or(&Value::Null));
        };
        use serde::Deserializer as _;
        let mut de = serde_json::Deserializer::from_str(&json.text);
        match de.deserialize_seq(Nth::<T>(i, std::marker::PhantomData))? {
            Some(v) => Ok(v),
            None => T::deserialize(Value::Null),
        }
    }

    /// Argument `i` if it is a binary placeholder: its attachment.
    pub fn get_bin(&self, i: usize) -> Option<&Bytes> {
        if self.bins.is_empty() {
            return None;
        }
        let n = match &self.json {
            None => self.values.get(i).and_then(placeholder_num),
            Some(_) => self.get::<Value>(i).ok().as_ref().and_then(placeholder_num),
        };
        n.and_then(|n| self.bins.get(n))
    }

    /// How many arguments.
    pub fn len(&self) -> usize {
        self.json.as_ref().map_or(self.values.len(), |j| j.len)
    }

    /// No arguments.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The arguments as values (placeholders left in place): parsed now if they are
    /// held as text.
    pub fn values(&self) -> std::borrow::Cow<'_, [Value]> {
        match &self.json {
            None => std::borrow::Cow::Borrowed(&self.values),
            Some(json) => std::borrow::Cow::Owned(json.parse()),
        }
    }

    /// The arguments as values, to change them in place (parsed first if they are
    /// held as text).
    pub fn values_mut(&mut self) -> &mut Vec<Value> {
        if let Some(json) = self.json.take() {
            self.values = json.parse();
        }
        &mut self.values
    }

    /// The attachments, in placeholder order.
    pub fn bins(&self) -> &[Bytes] {
        &self.bins
    }

    /// The attachments, to change them in place.
    pub fn bins_mut(&mut self) -> &mut Vec<Bytes> {
        &mut self.bins
    }

    /// The arguments as values, and the attachments.
    pub fn into_parts(mut self) -> (Vec<Value>, Vec<Bytes>) {
        self.values_mut();
        (self.values, self.bins)
    }

    /// Writes the arguments as a JSON array, after `first` (an event's name) if given.
    /// How long [`write_json`](Self::write_json)'s output is, when that is known
    /// without writing it: arguments kept as text, and a `first` string with nothing
    /// to escape.
    fn json_len(&self, first: Option<&str>) -> Option<usize> {
        let json = self.json.as_ref()?;
        let first = match first {
            None => 0,
            Some(s) if !s.bytes().any(|c| c == b'"' || c == b'\\' || c < 0x20) => s.len() + 2,
            Some(_) => return None,
        };
        let args = if json.len > 0 { json.text.len() - 2 } else { 0 };
        let comma = usize::from(first > 0 && args > 0);
        Some(2 + first + comma + args)
    }

    pub(crate) fn write_json(&self, first: Option<&str>, out: &mut Vec<u8>) {
        out.push(b'[');
        let mut any = false;
        if let Some(first) = first {
            // Serialising into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, first);
            any = true;
        }
        match &self.json {
            None => {
                for v in &self.values {
                    if std::mem::replace(&mut any, true) {
                        out.push(b',');
                    }
                    let _ = serde_json::to_writer(&mut *out, v);
                }
            }
            Some(json) if json.len > 0 => {
                if any {
                    out.push(b',');
                }
                // What lies between the brackets.
                out.extend_from_slice(&json.text.as_bytes()[1..json.text.len() - 1]);
            }
            Some(_) => {}
        }
        out.push(b']');
    }
}

impl Json {
    /// The elements (the text was checked when it was made: it parses).
    fn parse(&self) -> Vec<Value> {
        serde_json::from_str(&self.text).unwrap_or_default()
    }
}

/// Deserialises element `.0` of a JSON array (`None`: the array is shorter).
struct Nth<T>(usize, std::marker::PhantomData<T>);

impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Nth<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of arguments")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Option<T>, A::Error> {
        use serde::de::IgnoredAny;
        for _ in 0..self.0 {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(None);
            }
        }
        let found = seq.next_element::<T>()?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(found)
    }
}

/// The `{"_placeholder":true,"num":n}` object.
pub fn placeholder(n: usize) -> Value {
    let mut m = serde_json::Map::with_capacity(2);
    m.insert("_placeholder".into(), Value::Bool(true));
    m.insert("num".into(), Value::from(n));
    Value::Object(m)
}

/// `Some(n)` for a placeholder object.
fn placeholder_num(v: &Value) -> Option<usize> {
    let o = v.as_object()?;
    if o.get("_placeholder")? != &Value::Bool(true) {
        return None;
    }
    usize::try_from(o.get("num")?.as_u64()?).ok()
}

/// Every placeholder in `v` refers to one of `count` attachments.
fn placeholders_valid(v: &Value, count: usize, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match v {
        Value::Array(a) => a.iter().all(|x| placeholders_valid(x, count, depth + 1)),
        Value::Object(o) => {
            if o.get("_placeholder") == Some(&Value::Bool(true)) {
                return placeholder_num(v).is_some_and(|n| n < count);
            }
            o.values().all(|x| placeholders_valid(x, count, depth + 1))
        }
        _ => true,
    }
}

/// Deeper JSON is refused (serde_json itself stops at 128).
const MAX_DEPTH: usize = 128;

/// How packets travel: the default text encoding (binary parts as attachments), or
/// `socket.io-msgpack-parser`'s (each packet one binary message: the packet object in
/// MessagePack, binary parts inline). Both ends must use the same one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Parser {
    /// socket.io-parser: text, with binary attachments.
    #[default]
    Default,
    /// socket.io-msgpack-parser 3: `{type, data, nsp, id}` in MessagePack.
    Msgpack,
}

/// A Socket.IO packet.
#[derive(Clone, Debug, PartialEq)]
pub struct Packet {
    /// The type. Binary types are chosen by [`Packet::encode`] from the attachments; a
    /// decoded binary packet keeps its binary type.
    pub kind: PacketType,
    /// The namespace (`/` when the packet names none).
    pub nsp: Arc<str>,
    /// The ack id.
    pub id: Option<u64>,
    /// The JSON data: CONNECT's auth or handshake answer, the event array (name first),
    /// the ack arguments, CONNECT_ERROR's error.
    pub data: Option<Value>,
    /// Binary attachments.
    pub attachments: Vec<Bytes>,
}

impl Packet {
    /// A packet of `kind` for `nsp`, with no id, data or attachments.
    pub fn new(kind: PacketType, nsp: impl Into<Arc<str>>) -> Self {
        Self {
            kind,
            nsp: nsp.into(),
            id: None,
            data: None,
            attachments: Vec::new(),
        }
    }

    /// An EVENT packet: `[event, ...args]`.
    pub fn event(nsp: impl Into<Arc<str>>, event: &str, payload: Payload) -> Self {
        let (args, bins) = payload.into_parts();
        let mut data = Vec::with_capacity(args.len() + 1);
        data.push(Value::String(event.to_owned()));
        data.extend(args);
        Self {
            data: Some(Value::Array(data)),
            attachments: bins,
            ..Self::new(PacketType::Event, nsp)
        }
    }

    /// An ACK packet for `id`.
    pub fn ack(nsp: impl Into<Arc<str>>, id: u64, payload: Payload) -> Self {
        let (args, bins) = payload.into_parts();
        Self {
            id: Some(id),
            data: Some(Value::Array(args)),
            attachments: bins,
            ..Self::new(PacketType::Ack, nsp)
        }
    }

    /// The text part of the packet (its attachments follow as binary messages).
    pub fn encode_text(&self) -> String {
        let mut out = Vec::new();
        self.write_text(&mut out);
        // Written from `&str`s, ASCII and serde_json's output: UTF-8 throughout.
        String::from_utf8(out).unwrap_or_default()
    }

    /// [`encode_text`](Self::encode_text) as shared text, written once into one buffer.
    pub fn encode_utf8(&self) -> Utf8Bytes {
        let mut out = Vec::new();
        self.write_text(&mut out);
        Utf8Bytes::from_validated(Bytes::from(out))
    }

    fn write_text(&self, out: &mut Vec<u8>) {
        // Room for a short packet: most take one allocation.
        out.reserve(48 + self.nsp.len());
        write_header(out, self.kind, self.attachments.len(), &self.nsp, self.id);
        if let Some(data) = &self.data {
            // Writing into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, data);
        }
    }

    /// The Engine.IO messages that carry this packet: its text, then its attachments.
    pub fn encode(&self) -> Vec<Data> {
        let mut out = Vec::with_capacity(1 + self.attachments.len());
        out.push(Data::Text(self.encode_utf8()));
        out.extend(self.attachments.iter().cloned().map(Data::Binary));
        out
    }

    /// The Engine.IO messages that carry this packet with `parser`.
    pub fn encode_with(&self, parser: Parser) -> Vec<Data> {
        match parser {
            Parser::Default => self.encode(),
            Parser::Msgpack => vec![Data::Binary(Bytes::from(self.encode_msgpack()))],
        }
    }

    /// The packet as socket.io-msgpack-parser writes it: `{type, data, nsp, id}` (no
    /// `data` or `id` when there is none; an event or ack with binary parts keeps type
    /// 2 or 3, its binary parts inline).
    pub fn encode_msgpack(&self) -> Vec<u8> {
        let kind = match self.kind {
            PacketType::Event | PacketType::BinaryEvent => 2,
            PacketType::Ack | PacketType::BinaryAck => 3,
            PacketType::Connect => 0,
            PacketType::Disconnect => 1,
            PacketType::ConnectError => 4,
        };
        let mut m = serde_json::Map::with_capacity(4);
        m.insert("type".into(), Value::from(kind));
        if let Some(data) = &self.data {
            m.insert("data".into(), data.clone());
        }
        m.insert("nsp".into(), Value::String(self.nsp.to_string()));
        if let Some(id) = self.id {
            m.insert("id".into(), Value::from(id));
        }
        crate::msgpack::to_vec(&Value::Object(m), &self.attachments)
    }

    /// Decodes a socket.io-msgpack-parser packet, checked as that parser checks it
    /// (type 0 to 4, a string namespace, data fit for the type, an integer id).
    pub fn decode_msgpack(bytes: &[u8], limits: &DecodeLimits) -> Result<Self, DecodeError> {
        let (value, bins) =
            crate::msgpack::decode(bytes).map_err(|_| DecodeError("invalid msgpack"))?;
        if bins.len() > limits.max_attachments {
            return Err(DecodeError("too many attachments"));
        }
        if bins.iter().map(Bytes::len).sum::<usize>() > limits.max_attachment_bytes {
            return Err(DecodeError("attachments too large"));
        }
        let Value::Object(mut o) = value else {
            return Err(DecodeError("not a packet object"));
        };
        let binary = !bins.is_empty();
        let kind = match o.get("type").and_then(Value::as_u64) {
            Some(0) => PacketType::Connect,
            Some(1) => PacketType::Disconnect,
            Some(2) if binary => PacketType::BinaryEvent,
            Some(2) => PacketType::Event,
            Some(3) if binary => PacketType::BinaryAck,
            Some(3) => PacketType::Ack,
            Some(4) => PacketType::ConnectError,
            _ => return Err(DecodeError("invalid packet type")),
        };
        let Some(Value::String(nsp)) = o.remove("nsp") else {
            return Err(DecodeError("invalid namespace"));
        };
        let data = o.remove("data");
        let valid = matches!(
            (kind, &data),
            (PacketType::Connect, None | Some(Value::Object(_)))
                | (PacketType::Disconnect, None)
                | (
                    PacketType::ConnectError,
                    Some(Value::String(_) | Value::Object(_))
                )
                | (
                    PacketType::Event
                        | PacketType::BinaryEvent
                        | PacketType::Ack
                        | PacketType::BinaryAck,
                    Some(Value::Array(_)),
                )
        );
        if !valid {
            return Err(DecodeError("invalid payload"));
        }
        let id = match o.get("id") {
            None => None,
            Some(v) => Some(v.as_u64().ok_or(DecodeError("invalid packet id"))?),
        };
        if matches!(kind, PacketType::Event | PacketType::BinaryEvent)
            && !matches!(&data, Some(Value::Array(a)) if a.first().is_some_and(|n| n.is_string() || n.is_number()))
        {
            return Err(DecodeError("invalid event name"));
        }
        Ok(Self {
            kind,
            nsp: Arc::from(nsp),
            id,
            data,
            attachments: bins,
        })
    }

    /// The event name and its arguments, for EVENT packets.
    pub fn into_event(self) -> Option<(String, Payload)> {
        let Some(Value::Array(mut a)) = self.data else {
            return None;
        };
        if a.is_empty() {
            return None;
        }
        let name = match a.remove(0) {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        Some((name, Payload::from_parts(a, self.attachments)))
    }

    /// The arguments of an ACK packet.
    pub fn into_payload(self) -> Payload {
        let args = match self.data {
            Some(Value::Array(a)) => a,
            Some(v) => vec![v],
            None => Vec::new(),
        };
        Payload::from_parts(args, self.attachments)
    }
}

/// Writes a packet's header: its type (binary or not as `attachments` says), the
/// attachment count, the namespace and the ack id.
fn write_header(
    out: &mut Vec<u8>,
    kind: PacketType,
    attachments: usize,
    nsp: &str,
    id: Option<u64>,
) {
    let kind = wire_kind(kind, attachments);
    out.push(kind.as_char());
    if kind.is_binary() {
        push_decimal(out, attachments as u64);
        out.push(b'-');
    }
    if nsp != "/" {
        out.extend_from_slice(nsp.as_bytes());
        out.push(b',');
    }
    if let Some(id) = id {
        push_decimal(out, id);
    }
}

/// An EVENT or ACK is sent as its binary kind when it has attachments, and the other
/// way round.
fn wire_kind(kind: PacketType, attachments: usize) -> PacketType {
    match (kind, attachments == 0) {
        (PacketType::Event, false) => PacketType::BinaryEvent,
        (PacketType::Ack, false) => PacketType::BinaryAck,
        (PacketType::BinaryEvent, true) => PacketType::Event,
        (PacketType::BinaryAck, true) => PacketType::Ack,
        (k, _) => k,
    }
}

/// How long [`write_header`]'s output is.
fn header_len(kind: PacketType, attachments: usize, nsp: &str, id: Option<u64>) -> usize {
    let binary = if wire_kind(kind, attachments).is_binary() {
        decimal_len(attachments as u64) + 1
    } else {
        0
    };
    let nsp = if nsp == "/" { 0 } else { nsp.len() + 1 };
    1 + binary + nsp + id.map_or(0, decimal_len)
}

/// How many digits `n` has in decimal.
fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// The text of an EVENT packet (`name` given) or ACK packet carrying `payload`, as
/// [`Packet::event`] or [`Packet::ack`] then [`Packet::encode_utf8`] give it, written
/// from the arguments as they are held (text is copied, not parsed). Its attachments
/// are `payload`'s.
pub(crate) fn encode_args(
    nsp: &str,
    id: Option<u64>,
    name: Option<&str>,
    payload: &Payload,
) -> Utf8Bytes {
    let kind = if name.is_some() {
        PacketType::Event
    } else {
        PacketType::Ack
    };
    let attachments = payload.bins.len();
    // Of the exact size when it is known (arguments kept as text, a name with nothing
    // to escape): `Bytes` then takes the vector as it is, with no second allocation.
    let exact = payload
        .json_len(name)
        .map(|json| header_len(kind, attachments, nsp, id) + json);
    let mut out = Vec::with_capacity(exact.unwrap_or(48 + nsp.len()));
    write_header(&mut out, kind, attachments, nsp, id);
    payload.write_json(name, &mut out);
    debug_assert!(exact.is_none_or(|n| n == out.len()));
    Utf8Bytes::from_validated(Bytes::from(out))
}

/// A packet that does not parse or is not valid for its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(&'static str);

impl DecodeError {
    /// What was wrong.
    pub fn reason(&self) -> &'static str {
        self.0
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid Socket.IO packet: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Bounds for the [`Decoder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecodeLimits {
    /// Most attachments one packet may announce (default 64).
    pub max_attachments: usize,
    /// Most bytes of attachments one packet may carry in total (default 1 MB, the
    /// default Engine.IO `maxPayload`; each is also bounded by `maxPayload`).
    pub max_attachment_bytes: usize,
    /// Longest a binary packet may wait for its attachments (default 10 s); the
    /// server closes a session still reassembling after it (`parse error`).
    pub reassembly_timeout: std::time::Duration,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_attachments: 64,
            max_attachment_bytes: 1_000_000,
            reassembly_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// Turns Engine.IO messages into Socket.IO packets: text packets at once, binary
/// packets once their attachments have arrived.
#[derive(Debug, Default)]
pub struct Decoder {
    limits: DecodeLimits,
    /// A binary packet waiting for its attachments (boxed: rare, and a packet is
    /// large beside the rest).
    pending: Option<Box<(Packet, usize, usize)>>,
    parser: Parser,
}

impl Decoder {
    /// A decoder with `limits`.
    pub fn new(limits: DecodeLimits) -> Self {
        Self::with_parser(limits, Parser::Default)
    }

    /// A decoder with `limits` for packets written by `parser`.
    pub fn with_parser(limits: DecodeLimits, parser: Parser) -> Self {
        Self {
            limits,
            pending: None,
            parser,
        }
    }

    /// A binary packet is waiting for attachments.
    pub fn is_reassembling(&self) -> bool {
        self.pending.is_some()
    }

    /// Parses a text message as [`feed_parsed`](Self::feed_parsed) would, without a
    /// decoder's state: the costly part (JSON), which can run anywhere, ahead of it.
    pub fn parse(text: &str, limits: &DecodeLimits) -> Parsed {
        Parsed(decode_text_lazy(text, limits))
    }

    /// Feeds one Engine.IO message; returns a packet when one is complete.
    pub fn feed(&mut self, data: Data) -> Result<Option<Packet>, DecodeError> {
        self.feed_with(data, |text, limits| {
            decode_text(text, limits).map(|(packet, expected)| match expected {
                0 => Text::Done(packet),
                n => Text::Wait(packet, n),
            })
        })
    }

    /// Feeds one Engine.IO message, with a text message already
    /// [`parse`](Self::parse)d (or `None`: parsed here); returns what is complete. An
    /// event's or ack's arguments stay JSON text when they came as text (see
    /// [`Payload`]).
    pub fn feed_parsed(
        &mut self,
        data: Data,
        parsed: Option<Parsed>,
    ) -> Result<Option<Incoming>, DecodeError> {
        let mut parsed = parsed;
        self.feed_with(data, |text, limits| match parsed.take() {
            Some(Parsed(p)) => p,
            None => decode_text_lazy(text, limits),
        })
    }

    fn feed_with<T: From<Packet>>(
        &mut self,
        data: Data,
        text: impl FnOnce(&str, &DecodeLimits) -> Result<Text<T>, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if self.parser == Parser::Msgpack {
            return match data {
                Data::Binary(bytes) => Packet::decode_msgpack(&bytes, &self.limits)
                    .map(T::from)
                    .map(Some),
                Data::Text(_) => Err(DecodeError("text message for the msgpack parser")),
            };
        }
        match data {
            Data::Text(t) => {
                if self.pending.is_some() {
                    return Err(DecodeError("text while waiting for attachments"));
                }
                match text(&t, &self.limits)? {
                    Text::Done(done) => Ok(Some(done)),
                    Text::Wait(packet, expected) => {
                        self.pending = Some(Box::new((packet, expected, 0)));
                        Ok(None)
                    }
                }
            }
            Data::Binary(bytes) => {
                let Some((packet, expected, total)) = self.pending.as_deref_mut() else {
                    return Err(DecodeError("unexpected binary message"));
                };
                *total += bytes.len();
                if *total > self.limits.max_attachment_bytes {
                    return Err(DecodeError("attachments too large"));
                }
                packet.attachments.push(bytes);
                if packet.attachments.len() < *expected {
                    return Ok(None);
                }
                Ok(self.pending.take().map(|b| T::from(b.0)))
            }
        }
    }
}

/// A text message decoded: complete, or a binary packet waiting for attachments.
#[derive(Debug)]
enum Text<T> {
    Done(T),
    Wait(Packet, usize),
}

/// A complete packet from [`Decoder::feed_parsed`]: events and acks apart, their
/// arguments as [`Payload`]s (JSON text when they came as text).
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// EVENT or BINARY_EVENT.
    Event {
        /// The namespace.
        nsp: Arc<str>,
        /// The ack id, if the sender wants an ack.
        id: Option<u64>,
        /// The event name.
        name: String,
        /// The arguments.
        payload: Payload,
    },
    /// ACK or BINARY_ACK.
    Ack {
        /// The namespace.
        nsp: Arc<str>,
        /// The ack id.
        id: u64,
        /// The arguments.
        payload: Payload,
    },
    /// Any other packet.
    Packet(Packet),
}

impl From<Packet> for Incoming {
    fn from(packet: Packet) -> Self {
        match (packet.kind, packet.id) {
            (PacketType::Event | PacketType::BinaryEvent, id) => {
                let nsp = packet.nsp.clone();
                match packet.into_event() {
                    Some((name, payload)) => Self::Event {
                        nsp,
                        id,
                        name,
                        payload,
                    },
                    // Not an event the decoder lets through.
                    None => Self::Packet(Packet::new(PacketType::Event, nsp)),
                }
            }
            (PacketType::Ack | PacketType::BinaryAck, Some(id)) => Self::Ack {
                nsp: packet.nsp.clone(),
                id,
                payload: packet.into_payload(),
            },
            _ => Self::Packet(packet),
        }
    }
}

/// A text message parsed by [`Decoder::parse`]: the packet and how many binary
/// attachments follow it, or why it is invalid.
#[derive(Debug)]
pub struct Parsed(Result<Text<Incoming>, DecodeError>);

/// A packet's header: its type, attachment count, namespace, ack id, and where its
/// JSON starts.
struct Header {
    kind: PacketType,
    attachments: usize,
    nsp: Arc<str>,
    id: Option<u64>,
    data: usize,
}

fn decode_header(text: &str, limits: &DecodeLimits) -> Result<Header, DecodeError> {
    let b = text.as_bytes();
    let kind = b
        .first()
        .and_then(|c| PacketType::from_char(*c))
        .ok_or(DecodeError("unknown packet type"))?;
    let mut i = 1;
    let mut attachments = 0usize;
    if kind.is_binary() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > 4 || b.get(i) != Some(&b'-') {
            return Err(DecodeError("bad attachment count"));
        }
        attachments = text[start..i]
            .parse()
            .map_err(|_| DecodeError("bad attachment count"))?;
        if attachments > limits.max_attachments {
            return Err(DecodeError("too many attachments"));
        }
        i += 1;
    }
    let nsp: Arc<str> = if b.get(i) == Some(&b'/') {
        let end = text[i..].find(',').map_or(b.len(), |p| i + p);
        let nsp = &text[i..end];
        i = (end + 1).min(b.len());
        nsp.into()
    } else {
        // Allocated per packet: one `Arc` shared by the packets (static or per
        // thread) was never faster on two worker threads (`scaling`), its count's
        // cache line moving between the cores.
        Arc::from("/")
    };
    let start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let id = if i > start {
        Some(
            text[start..i]
                .parse::<u64>()
                .map_err(|_| DecodeError("bad ack id"))?,
        )
    } else {
        None
    };
    Ok(Header {
        kind,
        attachments,
        nsp,
        id,
        data: i,
    })
}

/// [`decode_text`], with a text EVENT's or ACK's arguments kept as JSON text (checked,
/// not parsed into values).
fn decode_text_lazy(text: &str, limits: &DecodeLimits) -> Result<Text<Incoming>, DecodeError> {
    let h = decode_header(text, limits)?;
    let json = &text[h.data..];
    match (h.kind, h.id) {
        (PacketType::Event, id) => {
            let (name, payload) = lazy_event(json)?;
            Ok(Text::Done(Incoming::Event {
                nsp: h.nsp,
                id,
                name,
                payload,
            }))
        }
        (PacketType::Ack, Some(id)) => {
            let array = scanned(json)?;
            Ok(Text::Done(Incoming::Ack {
                nsp: h.nsp,
                id,
                payload: Payload::from_checked_json(json[array.span].to_owned(), array.len),
            }))
        }
        _ => match decode_rest(text, h)? {
            (packet, 0) => Ok(Text::Done(Incoming::from(packet))),
            (packet, n) => Ok(Text::Wait(packet, n)),
        },
    }
}

/// An EVENT's `["name", ...args]`: the name (a string, not a reserved one, or a
/// number), and the arguments as the text between the name and the closing bracket.
fn lazy_event(json: &str) -> Result<(String, Payload), DecodeError> {
    let invalid = || DecodeError("invalid payload for the packet type");
    let parts = scanned(json)?;
    let name = parts.first.ok_or_else(invalid)?;
    let name = match name.as_bytes().first() {
        Some(b'"') => {
            let s: std::borrow::Cow<'_, str> = if name.contains('\\') {
                serde_json::from_str::<String>(name)
                    .map_err(|_| invalid())?
                    .into()
            } else {
                // The usual name: no escape, so the text between the quotes.
                name[1..name.len() - 1].into()
            };
            if RESERVED_EVENTS.contains(&&*s) {
                return Err(invalid());
            }
            s.into_owned()
        }
        _ => serde_json::from_str::<serde_json::Number>(name)
            .map_err(|_| invalid())?
            .to_string(),
    };
    let text = match parts.rest {
        None => "[]".to_owned(),
        Some(rest) => {
            let mut t = String::with_capacity(rest.len() + 2);
            t.push('[');
            t.push_str(rest);
            t.push(']');
            t
        }
    };
    Ok((name, Payload::from_checked_json(text, parts.len - 1)))
}

/// `json` scanned as an array of arguments ([`scan::array`]), its faults as the full
/// decoding names them.
fn scanned(json: &str) -> Result<scan::Array<'_>, DecodeError> {
    scan::array(json).map_err(|e| match e {
        scan::ScanError::NotArray => DecodeError("invalid payload for the packet type"),
        scan::ScanError::Trailing | scan::ScanError::NoValue => DecodeError("bad JSON"),
    })
}

/// Decodes a text packet (header, then its JSON as a value), and says how many
/// attachments follow it.
fn decode_text(text: &str, limits: &DecodeLimits) -> Result<(Packet, usize), DecodeError> {
    let h = decode_header(text, limits)?;
    decode_rest(text, h)
}

fn decode_rest(text: &str, h: Header) -> Result<(Packet, usize), DecodeError> {
    let Header {
        kind,
        attachments,
        nsp,
        id,
        data: i,
    } = h;
    let b = text.as_bytes();
    let data = if i < b.len() {
        Some(serde_json::from_str::<Value>(&text[i..]).map_err(|_| DecodeError("bad JSON"))?)
    } else {
        None
    };
    let valid = match kind {
        PacketType::Connect => matches!(data, None | Some(Value::Object(_))) && id.is_none(),
        PacketType::Disconnect => data.is_none() && id.is_none(),
        PacketType::ConnectError => matches!(data, Some(Value::Object(_) | Value::String(_))),
        PacketType::Event | PacketType::BinaryEvent => match &data {
            Some(Value::Array(a)) => match a.first() {
                Some(Value::String(s)) => !RESERVED_EVENTS.contains(&s.as_str()),
                Some(Value::Number(_)) => true,
                _ => false,
            },
            _ => false,
        },
        PacketType::Ack | PacketType::BinaryAck => {
            id.is_some() && matches!(data, Some(Value::Array(_)))
        }
    };
    if !valid {
        return Err(DecodeError("invalid payload for the packet type"));
    }
    if kind.is_binary() {
        if let Some(d) = &data {
            if !placeholders_valid(d, attachments, 0) {
                return Err(DecodeError("placeholder out of range"));
            }
        }
    }
    Ok((
        Packet {
            kind,
            nsp,
            id,
            data,
            attachments: Vec::with_capacity(attachments.min(8)),
        },
        attachments,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(s: &str) -> Result<Option<Packet>, DecodeError> {
        Decoder::default().feed(Data::Text(s.into()))
    }

    fn decode_lazily(s: &str) -> Result<Option<Incoming>, DecodeError> {
        Decoder::default().feed_parsed(Data::Text(s.into()), None)
    }

    /// `encode_args` sizes its buffer exactly when it can (a debug assertion checks
    /// it), and writes what the general packet encoding writes.
    #[test]
    fn arguments_are_encoded_as_packets_are_whatever_their_size_is_known_from() {
        let payloads = [
            Payload::from_json("[]").expect("json"),
            Payload::from_json("[ ]").expect("json"),
            Payload::from_json(r#"[1,"a",{"b":[]}]"#).expect("json"),
            Payload::from_json(r#" ["x"] "#).expect("json"),
            Payload::from_json("[1]").expect("json"),
            Payload::new().arg(Value::from(1)).arg(Value::from("é")),
            Payload::from_json(r#"[1]"#)
                .expect("json")
                .bin(vec![1u8, 2]),
            Payload::new(),
        ];
        for nsp in ["/", "/admin"] {
            for id in [None, Some(0), Some(9), Some(10), Some(u64::MAX)] {
                for name in [None, Some("echo"), Some("q\"uote"), Some("")] {
                    for payload in &payloads {
                        if name.is_none() && id.is_none() {
                            continue;
                        }
                        let packet = match name {
                            Some(name) => Packet {
                                id,
                                ..Packet::event(nsp, name, payload.clone())
                            },
                            None => Packet::ack(nsp, id.unwrap_or_default(), payload.clone()),
                        };
                        let ours = encode_args(nsp, id, name, payload);
                        assert_eq!(ours.as_str(), packet.encode_utf8().as_str());
                    }
                }
            }
        }
    }

    #[test]
    fn events_and_acks_keep_their_arguments_as_text_and_decode_as_values_would() {
        for text in [
            r#"2["chat","hello",{"a":[1,2.5,null]},true]"#,
            r#"2/admin,7["chat"]"#,
            r#"2[ "spaced" , 1 , [ ] ]"#,
            r#"2[1.50,"numeric name"]"#,
            r#"2["é\u00e9\n","x"]"#,
            r#"31[]"#,
            r#"3/admin,12[{"ok":true},"second"]"#,
        ] {
            let eager = decode(text).expect("valid").expect("complete");
            let lazy = decode_lazily(text).expect("valid").expect("complete");
            assert_eq!(lazy, Incoming::from(eager.clone()), "{text}");
            let (Incoming::Event { payload, .. } | Incoming::Ack { payload, .. }) = &lazy else {
                panic!("{text}: not an event or ack");
            };
            assert!(payload.json.is_some(), "{text}: parsed into values");
            // Re-encoded from the text, it is the packet the values give (up to
            // the sender's whitespace).
            let again = match lazy {
                Incoming::Event {
                    nsp,
                    id,
                    name,
                    payload,
                } => encode_args(&nsp, id, Some(&name), &payload),
                Incoming::Ack { nsp, id, payload } => encode_args(&nsp, Some(id), None, &payload),
                Incoming::Packet(_) => unreachable!("matched above"),
            };
            let back = decode(again.as_str()).expect("valid").expect("complete");
            let expected = match Incoming::from(eager) {
                Incoming::Event {
                    nsp,
                    id,
                    name,
                    payload,
                } => Packet {
                    id,
                    ..Packet::event(nsp, &name, payload)
                },
                Incoming::Ack { nsp, id, payload } => Packet::ack(nsp, id, payload),
                Incoming::Packet(p) => p,
            };
            assert_eq!(back, expected, "{text}");
        }
        // Numeric names read as numbers print.
        assert!(matches!(
            decode_lazily(r#"2[1.50,"x"]"#),
            Ok(Some(Incoming::Event { name, .. })) if name == "1.5"
        ));
        // What the full decoding refuses for its shape, the lazy one refuses too.
        for bad in [
            "2",
            "2[]",
            "2{}",
            r#"2"x""#,
            "2[true]",
            r#"2["connect"]"#,
            r#"2["x"] junk"#,
            r#"2["x",]"#,
            "3[1]",
            "31{}",
            "31",
            r#"31["x""#,
        ] {
            assert!(decode(bad).is_err(), "{bad}");
            assert!(decode_lazily(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn arguments_held_as_text_answer_as_values_do() {
        let text = Payload::from_json(r#"[{"n":1},"two",[3]]"#).expect("an array");
        let values =
            Payload::from_parts(vec![json!({"n": 1}), json!("two"), json!([3])], Vec::new());
        assert_eq!(text, values);
        assert_eq!(text.len(), 3);
        for i in 0..4 {
            assert_eq!(
                text.get::<Value>(i).ok(),
                values.get::<Value>(i).ok(),
                "{i}"
            );
        }
        assert_eq!(text.get::<Value>(9).ok(), Some(Value::Null));
        assert!(text.get::<u32>(1).is_err());
        assert_eq!(text.get::<String>(1).ok().as_deref(), Some("two"));
        // Appending keeps the text; changing in place parses it.
        let mut more = text.clone().arg(json!(4));
        assert!(more.json.is_some());
        assert_eq!(
            *more.values(),
            [json!({"n": 1}), json!("two"), json!([3]), json!(4)]
        );
        more.values_mut().remove(0);
        assert_eq!(more.len(), 3);
        assert!(more.json.is_none());
        // From a value, and from nothing.
        let one = Payload::from_value(&json!({"a": [1, 2]})).expect("serialises");
        assert_eq!(*one.values(), [json!({"a": [1, 2]})]);
        let mut none = Payload::from_json("[]").expect("an array");
        assert!(none.is_empty());
        none.push(json!("x"));
        assert_eq!(*none.values(), [json!("x")]);
        // The same packet text whichever way the arguments are held.
        let packets = |p: &Payload| {
            (
                encode_args("/", Some(3), Some("ev"), p).as_str().to_owned(),
                encode_args("/nsp", Some(4), None, p).as_str().to_owned(),
            )
        };
        assert_eq!(packets(&text), packets(&values));
        let empty = Payload::from_json(" [ ] ").expect("an array");
        assert_eq!(packets(&empty), packets(&Payload::new()));
        let spaced = Payload::from_json(" [{\"n\":1},\"two\",[3]]\n").expect("an array");
        assert_eq!(packets(&spaced), packets(&values));
        assert!(Payload::from_json("{}").is_err());
        assert!(Payload::from_json(format!("[{}]", "[".repeat(200) + &"]".repeat(200))).is_err());
        assert!(Payload::from_json(r#"["\udc00"]"#).is_err());
        assert!(Payload::from_json("[1] 2").is_err());
        // Binary arguments: placeholders in the text, attachments beside it.
        let bin = Payload::from_json(r#"["x"]"#)
            .expect("an array")
            .bin(vec![1u8, 2]);
        assert_eq!(bin.get_bin(1).map(|b| b.to_vec()), Some(vec![1, 2]));
        assert_eq!(bin.get_bin(0), None);
    }

    #[test]
    fn arguments_kept_as_text_are_those_that_parse_into_values() {
        // As deep as serde_json parses and one level deeper, a lone surrogate, a
        // surrogate pair, an escaped backslash before a `u`, brackets in strings: the
        // lazy decoding accepts exactly what the full one does.
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        // Each text, whether it is accepted, and why.
        let cases = [
            (
                format!("2[\"deep\",{}]", nest(126)),
                true,
                "126 levels inside the array",
            ),
            (
                format!("2[\"deep\",{}]", nest(127)),
                false,
                "127 inside, 128 with it",
            ),
            (format!("31[{}]", nest(126)), true, "an ack as deep"),
            (format!("31[{}]", nest(127)), false, "an ack too deep"),
            (
                r#"2["lone","\ud800"]"#.to_owned(),
                false,
                "a lone surrogate",
            ),
            (
                r#"2["trail","\udc00x"]"#.to_owned(),
                false,
                "a lone trailing surrogate",
            ),
            (
                r#"2["pair","\ud83d\ude00"]"#.to_owned(),
                true,
                "a surrogate pair",
            ),
            (
                r#"2["slash","\\u0041 [[["]"#.to_owned(),
                true,
                "an escaped backslash",
            ),
            (
                r#"31["\ud800"]"#.to_owned(),
                false,
                "a lone surrogate in an ack",
            ),
            (
                "347\u{b}[ 4428]".to_owned(),
                false,
                "a vertical tab is not JSON's whitespace",
            ),
            (
                "347 [ 4428]\n".to_owned(),
                true,
                "spaces and a line feed are",
            ),
            ("2[\"big\",1e400]".to_owned(), false, "out of range"),
            (
                "2[\"big\",1e300,-2.5E-3]".to_owned(),
                true,
                "exponents in range",
            ),
            (
                format!("2[\"long\",{}]", "9".repeat(400)),
                false,
                "out of range",
            ),
            (
                format!("2[\"long\",{}]", "9".repeat(290)),
                true,
                "long but in range",
            ),
            (
                r#"2["word","true false null e E"]"#.to_owned(),
                true,
                "words, not exponents",
            ),
        ];
        for (text, accepted, why) in &cases {
            let eager = decode(text);
            let lazy = decode_lazily(text);
            assert_eq!(eager.is_ok(), lazy.is_ok(), "{text}");
            assert_eq!(lazy.is_ok(), *accepted, "{why}: {text}");
            if let (Ok(Some(eager)), Ok(Some(lazy))) = (eager, lazy) {
                assert_eq!(lazy, Incoming::from(eager), "{text}");
            }
        }
    }

    #[test]
    fn msgpack_packets_are_what_socket_io_msgpack_parser_writes() {
        // `socket.emit("hello", "world")` with socket.io-msgpack-parser 3.0.2.
        let p = Packet::event("/", "hello", Payload::new().arg(json!("world")));
        let bytes = p.encode_msgpack();
        assert_eq!(
            bytes,
            b"\x83\xa4type\x02\xa4data\x92\xa5hello\xa5world\xa3nsp\xa1/".to_vec()
        );
        let mut d = Decoder::with_parser(DecodeLimits::default(), Parser::Msgpack);
        assert_eq!(d.feed(Data::Binary(bytes.into())), Ok(Some(p)));
        // Binary inline, ack id, other namespace; CONNECT without data.
        let mut p = Packet::event("/chat", "file", Payload::new().bin(vec![1u8, 2]));
        p.id = Some(7);
        let back = d
            .feed(Data::Binary(p.encode_msgpack().into()))
            .expect("valid");
        assert_eq!(
            back.map(|b| (b.kind, b.id, b.attachments)),
            Some((
                PacketType::BinaryEvent,
                Some(7),
                vec![Bytes::from_static(&[1, 2])]
            ))
        );
        let connect = Packet::new(PacketType::Connect, "/");
        assert_eq!(
            connect.encode_msgpack(),
            b"\x82\xa4type\x00\xa3nsp\xa1/".to_vec()
        );
        assert!(
            d.feed(Data::Text("2[\"x\"]".into())).is_err(),
            "text is not msgpack"
        );
    }

    #[test]
    fn msgpack_packets_are_checked_as_the_reference_checks_them() {
        let limits = DecodeLimits::default();
        let bad: [&[u8]; 7] = [
            b"\x82\xa4type\x05\xa3nsp\xa1/", // type 5 does not exist there
            b"\x82\xa4type\x02\xa3nsp\x01",  // namespace not a string
            b"\x82\xa4type\x02\xa3nsp\xa1/", // an event without data
            b"\x83\xa4type\x01\xa4data\x90\xa3nsp\xa1/", // DISCONNECT with data
            b"\x83\xa4type\x04\xa4data\x01\xa3nsp\xa1/", // CONNECT_ERROR with a number
            b"\x84\xa4type\x02\xa4data\x91\xa1e\xa3nsp\xa1/\xa2id\xa1x", // id not an integer
            b"\x91\x01",                     // not an object
        ];
        for b in bad {
            assert!(Packet::decode_msgpack(b, &limits).is_err(), "{b:?}");
        }
        let many = Payload::from_parts(
            (0..3).map(placeholder).collect(),
            vec![Bytes::from_static(b"x"); 3],
        );
        let p = Packet::event("/", "e", many).encode_msgpack();
        let tight = DecodeLimits {
            max_attachments: 2,
            ..DecodeLimits::default()
        };
        assert!(Packet::decode_msgpack(&p, &tight).is_err());
        assert!(Packet::decode_msgpack(&p, &limits).is_ok());
    }

    #[test]
    fn numbers_decode_correctly_rounded_and_round_trip() {
        // Found by the sio_packet fuzz target: without correctly rounded float parsing,
        // this decoded to 5.2500000000000004e38 and re-encoded as a different number.
        let p = decode("2[\"n\",525000000000000000000000000000000000000.5,0.1,1e-7]")
            .expect("valid")
            .expect("complete");
        assert_eq!(p.data, Some(json!(["n", 5.25e38, 0.1, 1e-7])));
        let text = p.encode_text();
        assert_eq!(
            decode(&text).expect("valid").expect("complete").data,
            p.data
        );
    }

    #[test]
    fn reference_examples_decode() {
        let p = decode("0").expect("valid").expect("complete");
        assert_eq!((p.kind, &*p.nsp, p.data), (PacketType::Connect, "/", None));
        let p = decode("0/admin,{\"token\":\"123\"}")
            .expect("valid")
            .expect("complete");
        assert_eq!(&*p.nsp, "/admin");
        assert_eq!(p.data, Some(json!({"token": "123"})));
        let p = decode("1/admin,").expect("valid").expect("complete");
        assert_eq!((p.kind, &*p.nsp), (PacketType::Disconnect, "/admin"));
        let p = decode("2[\"hello\",1]").expect("valid").expect("complete");
        assert_eq!(p.data, Some(json!(["hello", 1])));
        let p = decode("2/admin,456[\"project:delete\",123]")
            .expect("valid")
            .expect("complete");
        assert_eq!((&*p.nsp, p.id), ("/admin", Some(456)));
        let p = decode("3/admin,456[]").expect("valid").expect("complete");
        assert_eq!(
            (p.kind, p.id, p.data),
            (PacketType::Ack, Some(456), Some(json!([])))
        );
        let p = decode("4{\"message\":\"Not authorized\"}")
            .expect("valid")
            .expect("complete");
        assert_eq!(p.kind, PacketType::ConnectError);
    }

    #[test]
    fn malformed_packets_are_refused() {
        for bad in [
            "",
            "7",
            "x",
            "abc",
            "4abc",
            "2abc[\"a\"]",
            "2{}",
            "2[]",
            "2[{}]",
            "2\"x\"",
            "2[\"connect\"]",
            "2[\"disconnect\",1]",
            "0[]",
            "0\"x\"",
            "1{}",
            "3[]",
            "3{}",
            "34",
            "4",
            "2[1,",
            "5-[\"a\"]",
            "5x-[\"a\"]",
            "51[\"a\"]",
            "599999-[\"a\"]",
            "0/admin,1{}",
        ] {
            assert!(decode(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn binary_packets_wait_for_their_attachments() {
        let mut d = Decoder::default();
        let text = "51-[\"hello\",{\"_placeholder\":true,\"num\":0}]";
        assert_eq!(d.feed(Data::Text(text.into())), Ok(None));
        assert!(d.is_reassembling());
        let p = d
            .feed(Data::Binary(Bytes::from_static(&[1, 2, 3])))
            .expect("valid")
            .expect("valid");
        assert_eq!(p.kind, PacketType::BinaryEvent);
        let (name, payload) = p.into_event().expect("valid");
        assert_eq!(name, "hello");
        assert_eq!(payload.get_bin(0).map(|b| &b[..]), Some(&[1u8, 2, 3][..]));
        assert!(!d.is_reassembling());
    }

    #[test]
    fn reassembly_errors() {
        let mut d = Decoder::default();
        assert!(d.feed(Data::Binary(Bytes::from_static(b"x"))).is_err());
        let mut d = Decoder::default();
        d.feed(Data::Text(
            "52-[\"a\",{\"_placeholder\":true,\"num\":1}]".into(),
        ))
        .expect("valid");
        assert!(d.feed(Data::Text("2[\"a\"]".into())).is_err());
        // A placeholder past the announced count.
        let mut d = Decoder::default();
        assert!(d
            .feed(Data::Text(
                "51-[\"a\",{\"_placeholder\":true,\"num\":1}]".into()
            ))
            .is_err());
        // More attachments than allowed, and more bytes than allowed.
        let limits = DecodeLimits {
            max_attachments: 1,
            max_attachment_bytes: 4,
            ..DecodeLimits::default()
        };
        let mut d = Decoder::new(limits);
        assert!(d.feed(Data::Text("52-[\"a\"]".into())).is_err());
        let mut d = Decoder::new(limits);
        d.feed(Data::Text("51-[\"a\"]".into())).expect("valid");
        assert!(d.feed(Data::Binary(Bytes::from_static(b"12345"))).is_err());
    }

    #[test]
    fn encode_round_trips() {
        let payload = Payload::new().arg(json!({"a": [1, 2]})).bin(vec![9u8, 8]);
        let p = Packet {
            id: Some(7),
            ..Packet::event("/chat", "ev", payload)
        };
        let messages = p.encode();
        assert_eq!(
            messages[0].as_bytes(),
            b"51-/chat,7[\"ev\",{\"a\":[1,2]},{\"_placeholder\":true,\"num\":0}]"
        );
        let mut d = Decoder::default();
        let mut out = None;
        for m in messages {
            out = d.feed(m).expect("valid");
        }
        let back = out.expect("valid");
        assert_eq!(back.kind, PacketType::BinaryEvent);
        assert_eq!((back.id, back.attachments.len()), (Some(7), 1));
        assert_eq!(back.data, p.data);
        let plain = Packet::ack("/", 3, Payload::new().arg(json!("x")));
        assert_eq!(plain.encode_text(), "33[\"x\"]");
    }

    #[test]
    fn numeric_event_names_are_accepted() {
        let (name, payload) = decode("2[1,\"a\"]")
            .expect("valid")
            .expect("complete")
            .into_event()
            .expect("valid");
        assert_eq!(name, "1");
        assert_eq!(payload.get::<String>(0).expect("valid"), "a");
    }
}
