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
use crate::ws::Utf8Bytes;

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

/// The arguments of an event or ack: JSON values, and the binary attachments that
/// `{"_placeholder":true,"num":N}` objects in them refer to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Payload {
    /// The arguments (placeholders left in place).
    pub args: Vec<Value>,
    /// The attachments, in placeholder order.
    pub bins: Vec<Bytes>,
}

impl Payload {
    /// No arguments.
    pub fn new() -> Self {
        Self::default()
    }

    /// One argument: `value` serialised to JSON.
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        Ok(Self {
            args: vec![serde_json::to_value(value)?],
            bins: Vec::new(),
        })
    }

    /// Appends a JSON argument.
    pub fn arg(mut self, value: Value) -> Self {
        self.args.push(value);
        self
    }

    /// Appends a binary argument (a placeholder and its attachment).
    pub fn bin(mut self, bytes: impl Into<Bytes>) -> Self {
        self.args.push(placeholder(self.bins.len()));
        self.bins.push(bytes.into());
        self
    }

    /// Argument `i` deserialised (placeholders stay placeholder objects).
    pub fn get<T: DeserializeOwned>(&self, i: usize) -> Result<T, serde_json::Error> {
        T::deserialize(self.args.get(i).unwrap_or(&Value::Null))
    }

    /// Argument `i` if it is a binary placeholder: its attachment.
    pub fn get_bin(&self, i: usize) -> Option<&Bytes> {
        self.args
            .get(i)
            .and_then(placeholder_num)
            .and_then(|n| self.bins.get(n))
    }

    /// How many arguments.
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// No arguments.
    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }
}

/// `/`, shared: most packets name no namespace, and need not allocate one.
pub(crate) fn root_namespace() -> Arc<str> {
    static ROOT: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from("/"));
    ROOT.clone()
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
        let mut data = Vec::with_capacity(payload.args.len() + 1);
        data.push(Value::String(event.to_owned()));
        data.extend(payload.args);
        Self {
            data: Some(Value::Array(data)),
            attachments: payload.bins,
            ..Self::new(PacketType::Event, nsp)
        }
    }

    /// An ACK packet for `id`.
    pub fn ack(nsp: impl Into<Arc<str>>, id: u64, payload: Payload) -> Self {
        Self {
            id: Some(id),
            data: Some(Value::Array(payload.args)),
            attachments: payload.bins,
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
        use std::io::Write as _;
        // Room for the header and a short payload: one allocation for most packets.
        out.reserve(48 + self.nsp.len());
        let kind = match (self.kind, self.attachments.is_empty()) {
            (PacketType::Event, false) => PacketType::BinaryEvent,
            (PacketType::Ack, false) => PacketType::BinaryAck,
            (PacketType::BinaryEvent, true) => PacketType::Event,
            (PacketType::BinaryAck, true) => PacketType::Ack,
            (k, _) => k,
        };
        out.push(kind.as_char());
        // Writing into a Vec cannot fail.
        if kind.is_binary() {
            let _ = write!(out, "{}-", self.attachments.len());
        }
        if &*self.nsp != "/" {
            out.extend_from_slice(self.nsp.as_bytes());
            out.push(b',');
        }
        if let Some(id) = self.id {
            let _ = write!(out, "{id}");
        }
        if let Some(data) = &self.data {
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
        Some((
            name,
            Payload {
                args: a,
                bins: self.attachments,
            },
        ))
    }

    /// The arguments of an ACK packet.
    pub fn into_payload(self) -> Payload {
        let args = match self.data {
            Some(Value::Array(a)) => a,
            Some(v) => vec![v],
            None => Vec::new(),
        };
        Payload {
            args,
            bins: self.attachments,
        }
    }
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
    pending: Option<(Packet, usize, usize)>,
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

    /// Parses a text message as [`feed`](Self::feed) would, without a decoder's
    /// state: the costly part (JSON), which can run anywhere, ahead of
    /// [`feed_parsed`](Self::feed_parsed).
    pub fn parse(text: &str, limits: &DecodeLimits) -> Parsed {
        Parsed(decode_text(text, limits))
    }

    /// Feeds one Engine.IO message; returns a packet when one is complete.
    pub fn feed(&mut self, data: Data) -> Result<Option<Packet>, DecodeError> {
        self.feed_parsed(data, None)
    }

    /// [`feed`](Self::feed), with a text message already [`parse`](Self::parse)d.
    pub fn feed_parsed(
        &mut self,
        data: Data,
        parsed: Option<Parsed>,
    ) -> Result<Option<Packet>, DecodeError> {
        if self.parser == Parser::Msgpack {
            return match data {
                Data::Binary(bytes) => Packet::decode_msgpack(&bytes, &self.limits).map(Some),
                Data::Text(_) => Err(DecodeError("text message for the msgpack parser")),
            };
        }
        match data {
            Data::Text(text) => {
                if self.pending.is_some() {
                    return Err(DecodeError("text while waiting for attachments"));
                }
                let (packet, expected) = match parsed {
                    Some(Parsed(parsed)) => parsed?,
                    None => decode_text(&text, &self.limits)?,
                };
                if expected == 0 {
                    return Ok(Some(packet));
                }
                self.pending = Some((packet, expected, 0));
                Ok(None)
            }
            Data::Binary(bytes) => {
                let Some((packet, expected, total)) = &mut self.pending else {
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
                Ok(self.pending.take().map(|(p, _, _)| p))
            }
        }
    }
}

/// A text message parsed by [`Decoder::parse`]: the packet and how many binary
/// attachments follow it, or why it is invalid.
#[derive(Debug)]
pub struct Parsed(Result<(Packet, usize), DecodeError>);

fn decode_text(text: &str, limits: &DecodeLimits) -> Result<(Packet, usize), DecodeError> {
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
        root_namespace()
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
        let many = Payload {
            args: (0..3).map(placeholder).collect(),
            bins: vec![Bytes::from_static(b"x"); 3],
        };
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
