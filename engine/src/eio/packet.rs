//! Engine.IO packets, and their encodings on a WebSocket and in polling payloads.
//!
//! | type | id | | type | id |
//! | --- | --- | --- | --- | --- |
//! | open | 0 | | message | 4 |
//! | close | 1 | | upgrade | 5 |
//! | ping | 2 | | noop | 6 |
//! | pong | 3 | | | |
//!
//! Payloads (polling bodies): v4 joins packets with `\x1e` and sends binary as
//! `b<base64>`; v3 prefixes each packet with its length in UTF-16 code units and a
//! colon (`6:4hello`), binary as `b4<base64>`, and also accepts the XHR2 binary form
//! (`<0|1><length digits><0xff><packet>`) in request bodies.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::ws::{Message, Utf8Bytes};

/// The Engine.IO protocol revision a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `EIO=3` (engine.io 3.x clients, Socket.IO 2.x).
    V3,
    /// `EIO=4` (engine.io 4+ clients, Socket.IO 3+).
    V4,
}

/// A packet type: a closed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// 0: handshake data, from the server.
    Open,
    /// 1: close the session.
    Close,
    /// 2: ping (from the server in v4, from the client in v3; `probe` during upgrades).
    Ping,
    /// 3: pong.
    Pong,
    /// 4: a message.
    Message,
    /// 5: the client switches to the new transport.
    Upgrade,
    /// 6: no operation (ends a parked poll during an upgrade).
    Noop,
}

impl PacketType {
    /// The type for its id character.
    pub const fn from_char(c: u8) -> Option<Self> {
        Some(match c {
            b'0' => Self::Open,
            b'1' => Self::Close,
            b'2' => Self::Ping,
            b'3' => Self::Pong,
            b'4' => Self::Message,
            b'5' => Self::Upgrade,
            b'6' => Self::Noop,
            _ => return None,
        })
    }

    /// The id character.
    pub const fn as_char(self) -> u8 {
        match self {
            Self::Open => b'0',
            Self::Close => b'1',
            Self::Ping => b'2',
            Self::Pong => b'3',
            Self::Message => b'4',
            Self::Upgrade => b'5',
            Self::Noop => b'6',
        }
    }
}

/// A packet's data: text (possibly empty) or binary (messages only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    /// Text.
    Text(Utf8Bytes),
    /// Binary.
    Binary(Bytes),
}

impl Data {
    /// No data.
    pub const fn empty() -> Self {
        Self::Text(Utf8Bytes::from_static(""))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(t) => t.as_bytes(),
            Self::Binary(b) => b,
        }
    }
}

impl From<&'static str> for Data {
    fn from(s: &'static str) -> Self {
        Self::Text(Utf8Bytes::from_static(s))
    }
}

/// A message encoded once for many sessions (a broadcast): its data for polling
/// sessions, and its whole WebSocket frame for v4 WebSocket sessions.
#[derive(Clone, Debug)]
pub struct SharedMessage {
    pub(crate) data: Data,
    pub(crate) frame: crate::ws::PreparedFrame,
}

impl SharedMessage {
    /// Encodes `data` as a message packet and its frame.
    pub fn new(data: Data) -> Self {
        let frame =
            crate::ws::PreparedFrame::new(Packet::message(data.clone()).to_ws(Protocol::V4));
        Self { data, frame }
    }

    /// The message data.
    pub fn data(&self) -> &Data {
        &self.data
    }
}

/// An Engine.IO packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// The type.
    pub kind: PacketType,
    /// The data.
    pub data: Data,
}

/// A packet as the parts of its WebSocket message: whether it is text, the byte that
/// comes before the data (the packet type; `4` before binary data in v3; none for
/// binary data in v4, which is the message), and the data.
fn ws_parts(kind: PacketType, data: &Data, protocol: Protocol) -> (bool, Option<u8>, &[u8]) {
    match (data, protocol) {
        (Data::Text(t), _) => (true, Some(kind.as_char()), t.as_bytes()),
        (Data::Binary(b), Protocol::V3) => (false, Some(4), b),
        (Data::Binary(b), Protocol::V4) => (false, None, b),
    }
}

impl Packet {
    /// A packet without data.
    pub const fn bare(kind: PacketType) -> Self {
        Self {
            kind,
            data: Data::empty(),
        }
    }

    /// A packet with text data.
    pub fn text(kind: PacketType, text: impl Into<Utf8Bytes>) -> Self {
        Self {
            kind,
            data: Data::Text(text.into()),
        }
    }

    /// A message packet.
    pub fn message(data: Data) -> Self {
        Self {
            kind: PacketType::Message,
            data,
        }
    }

    /// The packet as one WebSocket message.
    pub fn to_ws(&self, protocol: Protocol) -> Message {
        match &self.data {
            Data::Text(t) => {
                let mut s = String::with_capacity(1 + t.len());
                s.push(self.kind.as_char() as char);
                s.push_str(t);
                Message::text(s)
            }
            Data::Binary(b) => match protocol {
                Protocol::V4 => Message::Binary(b.clone()),
                Protocol::V3 => {
                    let mut out = BytesMut::with_capacity(1 + b.len());
                    out.put_u8(4);
                    out.put_slice(b);
                    Message::Binary(out.freeze())
                }
            },
        }
    }

    /// Sends the packet on `conn` as [`to_ws`](Self::to_ws) would give it, its type
    /// and data framed together without an intermediate message.
    pub(crate) fn send_on(
        self,
        conn: &mut crate::ws::Connection,
        protocol: Protocol,
        compress: Option<bool>,
    ) -> Result<(), crate::ws::SendError> {
        match (self.data, protocol) {
            // The data is the whole message: sent as it is, not copied.
            (Data::Binary(b), Protocol::V4) => conn.send_with(Message::Binary(b), compress),
            (data, _) => {
                let (text, head, body) = ws_parts(self.kind, &data, protocol);
                conn.send_joined(text, head.as_slice(), body, compress)
            }
        }
    }

    /// [`send_on`](Self::send_on) encoded into `out` at once when `conn` can
    /// (see [`ws::Connection::encode_now`](crate::ws::Connection::encode_now)):
    /// `Ok(None)` then, or the packet back, not sent.
    pub(crate) fn encode_now_on(
        self,
        conn: &mut crate::ws::Connection,
        protocol: Protocol,
        compress: Option<bool>,
        out: &mut Vec<u8>,
    ) -> Result<Option<Self>, crate::ws::SendError> {
        let (text, head, body) = ws_parts(self.kind, &self.data, protocol);
        let encoded = conn.encode_joined_now(text, head.as_slice(), body, compress, out)?;
        Ok((!encoded).then_some(self))
    }

    /// Decodes a packet from one WebSocket message.
    pub fn from_ws(message: &Message, protocol: Protocol) -> Result<Self, DecodeError> {
        Self::from_ws_owned(message.clone(), protocol)
    }

    /// [`from_ws`](Self::from_ws), taking the message: its bytes become the packet's
    /// data without a copy or a shared handle.
    pub fn from_ws_owned(message: Message, protocol: Protocol) -> Result<Self, DecodeError> {
        match message {
            Message::Text(t) => decode_text(t),
            Message::Binary(b) => match protocol {
                Protocol::V4 => Ok(Self::message(Data::Binary(b))),
                Protocol::V3 => match b.first() {
                    Some(4) => {
                        let mut b = b;
                        b.advance(1);
                        Ok(Self::message(Data::Binary(b)))
                    }
                    _ => Err(DecodeError),
                },
            },
        }
    }
}

/// Decodes `<type digit><text>`.
fn decode_text(text: Utf8Bytes) -> Result<Packet, DecodeError> {
    let mut bytes = text.into_bytes();
    let kind = bytes
        .first()
        .and_then(|c| PacketType::from_char(*c))
        .ok_or(DecodeError)?;
    // The type is one ASCII byte: what follows it is still UTF-8. (`advance`, not
    // `slice`: the bytes stay this packet's alone, with no shared handle allocated.)
    bytes.advance(1);
    Ok(Packet {
        kind,
        data: Data::Text(Utf8Bytes::from_validated(bytes)),
    })
}

/// A packet or payload that does not parse. The session that sent it is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError;

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid Engine.IO packet or payload")
    }
}

impl std::error::Error for DecodeError {}

pub(crate) const SEPARATOR: u8 = 0x1e;

/// Encodes packets as one polling payload (a response body; always text).
pub fn encode_payload(packets: &[Packet], protocol: Protocol) -> Bytes {
    match protocol {
        Protocol::V4 => encode_payload_v4(packets),
        Protocol::V3 => encode_payload_v3(packets),
    }
}

/// A v3 polling payload: each packet prefixed with its length in UTF-16 units.
fn encode_payload_v3(packets: &[Packet]) -> Bytes {
    let mut out = BytesMut::new();
    for p in packets {
        let encoded = match &p.data {
            Data::Text(t) => format!("{}{}", p.kind.as_char() as char, t.as_str()),
            Data::Binary(b) => format!("b{}{}", p.kind.as_char() as char, BASE64.encode(b)),
        };
        out.put_slice(encoded.encode_utf16().count().to_string().as_bytes());
        out.put_u8(b':');
        out.put_slice(encoded.as_bytes());
    }
    out.freeze()
}

/// A v4 polling payload, in one buffer of its exact size (so the `Bytes` made of it
/// needs no allocation of its own).
fn encode_payload_v4(packets: &[Packet]) -> Bytes {
    let size: usize = (packets.iter())
        .map(|p| match &p.data {
            Data::Text(t) => 1 + t.len(),
            Data::Binary(b) => 1 + base64::encoded_len(b.len(), true).unwrap_or_default(),
        })
        .sum::<usize>()
        + packets.len().saturating_sub(1);
    let mut out = Vec::with_capacity(size);
    for (i, p) in packets.iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR);
        }
        match &p.data {
            Data::Text(t) => {
                out.push(p.kind.as_char());
                out.extend_from_slice(t.as_bytes());
            }
            Data::Binary(b) => {
                out.push(b'b');
                out.extend_from_slice(BASE64.encode(b).as_bytes());
            }
        }
    }
    debug_assert_eq!(out.len(), size);
    Bytes::from(out)
}

/// Decodes a polling payload (a request body).
pub fn decode_payload(body: &Bytes, protocol: Protocol) -> Result<Vec<Packet>, DecodeError> {
    match protocol {
        Protocol::V4 => body
            .split(|b| *b == SEPARATOR)
            .map(|part| decode_v4_part(body.slice_ref(part)))
            .collect(),
        Protocol::V3 if matches!(body.first(), Some(0 | 1)) => decode_v3_binary(body),
        Protocol::V3 => decode_v3_text(body),
    }
}

fn decode_v4_part(part: Bytes) -> Result<Packet, DecodeError> {
    if part.first() == Some(&b'b') {
        let data = BASE64.decode(&part[1..]).map_err(|_| DecodeError)?;
        return Ok(Packet::message(Data::Binary(data.into())));
    }
    decode_text(Utf8Bytes::try_from(part).map_err(|_| DecodeError)?)
}

fn decode_v3_text(body: &Bytes) -> Result<Vec<Packet>, DecodeError> {
    let text = std::str::from_utf8(body).map_err(|_| DecodeError)?;
    let mut packets = Vec::new();
    let mut rest = text;
    if rest.is_empty() {
        return Err(DecodeError);
    }
    while !rest.is_empty() {
        let (len, after) = rest.split_once(':').ok_or(DecodeError)?;
        if len.is_empty() || len.len() > 10 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DecodeError);
        }
        let units: usize = len.parse().map_err(|_| DecodeError)?;
        // Take `units` UTF-16 code units.
        let mut taken = 0;
        let mut end = 0;
        for c in after.chars() {
            if taken >= units {
                break;
            }
            taken += c.len_utf16();
            end += c.len_utf8();
        }
        if taken != units || units == 0 {
            return Err(DecodeError);
        }
        let encoded = &after[..end];
        rest = &after[end..];
        packets.push(decode_v3_packet(encoded)?);
    }
    Ok(packets)
}

fn decode_v3_packet(encoded: &str) -> Result<Packet, DecodeError> {
    if let Some(b64) = encoded.strip_prefix('b') {
        let (kind, b64) = match b64
            .as_bytes()
            .first()
            .and_then(|c| PacketType::from_char(*c))
        {
            Some(kind) => (kind, &b64[1..]),
            None => (PacketType::Message, b64),
        };
        let data = BASE64.decode(b64).map_err(|_| DecodeError)?;
        return Ok(Packet {
            kind,
            data: Data::Binary(data.into()),
        });
    }
    decode_text(Utf8Bytes::from(encoded))
}

fn decode_v3_binary(body: &Bytes) -> Result<Vec<Packet>, DecodeError> {
    let mut packets = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let is_binary = match body[i] {
            0 => false,
            1 => true,
            _ => return Err(DecodeError),
        };
        i += 1;
        let mut len = 0usize;
        let mut digits = 0;
        loop {
            let d = *body.get(i).ok_or(DecodeError)?;
            i += 1;
            if d == 0xff {
                break;
            }
            if d > 9 || digits >= 10 {
                return Err(DecodeError);
            }
            // Checked: ten digits overflow a 32-bit `usize`.
            len = len
                .checked_mul(10)
                .and_then(|l| l.checked_add(usize::from(d)))
                .ok_or(DecodeError)?;
            digits += 1;
        }
        let end = i.checked_add(len).ok_or(DecodeError)?;
        let packet = body.get(i..end).ok_or(DecodeError)?;
        let packet = body.slice_ref(packet);
        i += len;
        if is_binary {
            match packet.first() {
                Some(4) => packets.push(Packet::message(Data::Binary(packet.slice(1..)))),
                _ => return Err(DecodeError),
            }
        } else {
            packets.push(decode_text(
                Utf8Bytes::try_from(packet).map_err(|_| DecodeError)?,
            )?);
        }
    }
    if packets.is_empty() {
        return Err(DecodeError);
    }
    Ok(packets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &'static str) -> Packet {
        Packet::message(Data::from(s))
    }

    #[test]
    fn v4_payloads() {
        let packets = vec![
            msg("hello"),
            Packet::message(Data::Binary(Bytes::from_static(&[1, 2, 3, 4]))),
            Packet::bare(PacketType::Ping),
        ];
        let body = encode_payload(&packets, Protocol::V4);
        assert_eq!(&body[..], b"4hello\x1ebAQIDBA==\x1e2");
        assert_eq!(decode_payload(&body, Protocol::V4), Ok(packets));
        for bad in [&b""[..], b"x", b"4ok\x1e", b"bnot base64!", b"4\xff"] {
            assert_eq!(
                decode_payload(&Bytes::copy_from_slice(bad), Protocol::V4),
                Err(DecodeError),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn v3_payloads_count_utf16_units() {
        let packets = vec![
            msg("hello"),
            msg("€𝄞"),
            Packet::message(Data::Binary(Bytes::from_static(&[1, 2, 3, 4]))),
        ];
        let body = encode_payload(&packets, Protocol::V3);
        // "4€𝄞" is 1 + 1 + 2 UTF-16 units.
        assert_eq!(
            std::str::from_utf8(&body).expect("utf8"),
            "6:4hello4:4€𝄞10:b4AQIDBA=="
        );
        assert_eq!(decode_payload(&body, Protocol::V3), Ok(packets));
        assert_eq!(
            decode_payload(&Bytes::from_static(b"9:bAQIDBA=="), Protocol::V3),
            Ok(vec![Packet::message(Data::Binary(Bytes::from_static(&[
                1, 2, 3, 4
            ])))])
        );
        for bad in [&b"abc"[..], b"6:4hell", b"0:", b":4x", b"99999999999:4"] {
            assert_eq!(
                decode_payload(&Bytes::copy_from_slice(bad), Protocol::V3),
                Err(DecodeError),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn v3_xhr2_binary_payload() {
        let body = Bytes::from_static(&[
            0, 6, 0xff, b'4', b'h', b'e', b'l', b'l', b'o', 1, 3, 0xff, 4, 9, 8,
        ]);
        assert_eq!(
            decode_payload(&body, Protocol::V3),
            Ok(vec![
                msg("hello"),
                Packet::message(Data::Binary(Bytes::from_static(&[9, 8])))
            ])
        );
        assert_eq!(
            decode_payload(&Bytes::from_static(&[0, 9, 0xff, b'4']), Protocol::V3),
            Err(DecodeError)
        );
    }

    #[test]
    fn websocket_frames() {
        let p = Packet::message(Data::Binary(Bytes::from_static(&[7, 7])));
        assert_eq!(p.to_ws(Protocol::V4), Message::binary(vec![7u8, 7]));
        assert_eq!(p.to_ws(Protocol::V3), Message::binary(vec![4u8, 7, 7]));
        assert_eq!(
            Packet::from_ws(&Message::binary(vec![4u8, 7, 7]), Protocol::V3),
            Ok(p.clone())
        );
        assert_eq!(
            Packet::from_ws(&Message::text("2probe"), Protocol::V4),
            Ok(Packet::text(PacketType::Ping, "probe"))
        );
        assert_eq!(
            Packet::from_ws(&Message::text("abc"), Protocol::V4),
            Err(DecodeError)
        );
        assert_eq!(
            Packet::from_ws(&Message::text(""), Protocol::V4),
            Err(DecodeError)
        );
    }
}
