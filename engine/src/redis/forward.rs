//! Serving a session from any node of a cluster (no sticky sessions): the messages
//! nodes exchange over Redis when a request reaches a node that does not own its
//! session.
//!
//! A node in such a cluster starts every Engine.IO session id with its *tag*
//! ([`TAG_LEN`] URL-safe characters; [`sid_tag`] reads it back). A node that gets a
//! request for another node's session sends it, as an [`Envelope`], on that node's
//! [`channel`]; the owner serves it as if it had come in itself and answers on the
//! sender's channel:
//!
//! * a polling `GET` or `POST` travels as [`Message::Request`], its answer as
//!   [`Message::Response`]; [`Message::Abort`] says the client went away first (a
//!   parked poll is then given up, as a closed connection gives it up);
//! * a WebSocket upgrade opens a tunnel ([`Message::Open`], with the request and the
//!   bytes that followed it) whose bytes then flow as [`Message::Data`] to the owner and
//!   [`Message::Back`] from it, until the forwarding node sends [`Message::End`] or the
//!   owner [`Message::Closed`]. The owner runs the WebSocket itself: the forwarding
//!   node only copies bytes.
//!
//! An exchange is known by the forwarding node's tag and its id; which way a message
//! goes is in its kind, so two nodes that forward to each other never mix theirs up.
//!
//! The format is this crate's own (both ends are wirestate nodes): a version byte, the
//! kind, then length-prefixed fields. Decoding checks every length against the input
//! and every header against HTTP's grammar; what does not parse is `None`.

use std::borrow::Cow;
use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};

use crate::http::{is_tchar, Headers, Request, RequestHead, Response};

/// How many characters of a session id are the owner's tag.
pub const TAG_LEN: usize = 8;

/// How long the random part of a session id is.
const RANDOM_LEN: usize = 20;

const VERSION: u8 = 1;

/// The channel a node with `tag` takes forwarded requests on (`{key}-forward#{tag}#`).
pub fn channel(key: &str, tag: &str) -> String {
    format!("{key}-forward#{tag}#")
}

/// The tag of the node that owns session `sid`, if the id carries one: it is
/// [`TAG_LEN`] URL-safe characters followed by the 20 random ones.
pub fn sid_tag(sid: &str) -> Option<&str> {
    let url_safe = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if sid.len() != TAG_LEN + RANDOM_LEN || !sid.bytes().all(url_safe) {
        return None;
    }
    Some(&sid[..TAG_LEN])
}

/// A tag from 6 random bytes: [`TAG_LEN`] URL-safe characters.
pub fn tag_from(random: [u8; 6]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
}

/// One message between two nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The sender's tag: where answers go.
    pub from: String,
    /// The exchange it belongs to, numbered by whoever began it (the forwarding
    /// node).
    pub id: u64,
    /// What it says.
    pub message: Message,
}

/// What one node tells another about a forwarded request or tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A request for a session the receiver owns (a polling `GET` or `POST`).
    Request(Request),
    /// The answer to a [`Message::Request`].
    Response(Response),
    /// The client of a [`Message::Request`] went away before its answer.
    Abort,
    /// A WebSocket upgrade for a session the receiver owns; the request's body holds
    /// the bytes the client sent after the request head.
    Open(Request),
    /// Bytes of a tunnel, from the node that opened it (its client's).
    Data(Bytes),
    /// The node that opened the tunnel closed it (its client went away).
    End,
    /// Bytes of a tunnel, from the owner (for the client).
    Back(Bytes),
    /// The owner closed the tunnel.
    Closed,
}

impl Envelope {
    /// The bytes to publish.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(VERSION);
        b.put_u8(match self.message {
            Message::Request(_) => 0,
            Message::Response(_) => 1,
            Message::Abort => 2,
            Message::Open(_) => 3,
            Message::Data(_) => 4,
            Message::End => 5,
            Message::Back(_) => 6,
            Message::Closed => 7,
        });
        put_bytes(&mut b, self.from.as_bytes());
        b.put_u64(self.id);
        match &self.message {
            Message::Request(r) | Message::Open(r) => {
                let peer = r.peer_addr.map(|a| a.to_string()).unwrap_or_default();
                put_bytes(&mut b, peer.as_bytes());
                put_bytes(&mut b, r.head.method.as_bytes());
                put_bytes(&mut b, r.head.target.as_bytes());
                b.put_u8(r.head.version);
                put_headers(&mut b, r.head.headers.iter());
                put_bytes(&mut b, &r.body);
            }
            Message::Response(r) => {
                b.put_u16(r.status);
                put_headers(
                    &mut b,
                    r.headers.iter().map(|(n, v)| (n.as_ref(), v.as_bytes())),
                );
                put_bytes(&mut b, &r.body);
            }
            Message::Data(data) | Message::Back(data) => b.put_slice(data),
            Message::Abort | Message::End | Message::Closed => {}
        }
        b.freeze()
    }

    /// Reads a published message; `None` if it is not one this version wrote.
    pub fn decode(input: &Bytes) -> Option<Self> {
        let mut r = Reader { input, at: 0 };
        if r.u8()? != VERSION {
            return None;
        }
        let kind = r.u8()?;
        let from = r.string()?;
        let id = u64::from_be_bytes(r.take(8)?.as_ref().try_into().ok()?);
        let message = match kind {
            0 | 3 => {
                let peer = r.string()?;
                let peer_addr = match peer.as_str() {
                    "" => None,
                    p => Some(p.parse::<SocketAddr>().ok()?),
                };
                let method = r.string()?;
                let target = r.string()?;
                if !method.bytes().all(is_tchar)
                    || method.is_empty()
                    || target.bytes().any(|b| b <= b' ' || b == 0x7f)
                {
                    return None;
                }
                let version = r.u8()?;
                let lines = r.headers()?;
                let headers = Headers::from_pairs(lines.iter().map(|(n, v)| (*n, v.as_ref())));
                let body = r.bytes()?;
                let request = Request {
                    head: RequestHead {
                        method,
                        target,
                        version,
                        headers,
                    },
                    body,
                    peer_addr,
                    // Not carried between servers: a forwarded session's handshake
                    // says `secure: false`.
                    secure: false,
                    extensions: Default::default(),
                };
                if kind == 0 {
                    Message::Request(request)
                } else {
                    Message::Open(request)
                }
            }
            1 => {
                let status = u16::from_be_bytes(r.take(2)?.as_ref().try_into().ok()?);
                if !(100..=999).contains(&status) {
                    return None;
                }
                let headers = r
                    .headers()?
                    .into_iter()
                    .map(|(n, v)| {
                        let v = std::str::from_utf8(&v).ok()?;
                        Some((Cow::Owned(n.to_owned()), v.to_owned()))
                    })
                    .collect::<Option<_>>()?;
                let body = r.bytes()?;
                Message::Response(Response {
                    status,
                    headers,
                    body,
                })
            }
            2 => Message::Abort,
            4 => Message::Data(input.slice(r.at..)),
            5 => Message::End,
            6 => Message::Back(input.slice(r.at..)),
            7 => Message::Closed,
            _ => return None,
        };
        if !matches!(message, Message::Data(_) | Message::Back(_)) && r.at != input.len() {
            return None;
        }
        Some(Self { from, id, message })
    }
}

fn put_bytes(b: &mut BytesMut, bytes: &[u8]) {
    // Lengths past 4 GiB cannot come from a bounded request; they are cut.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    b.put_u32(len);
    b.put_slice(&bytes[..len as usize]);
}

fn put_headers<'a>(b: &mut BytesMut, lines: impl Iterator<Item = (&'a str, &'a [u8])>) {
    let lines: Vec<_> = lines.collect();
    b.put_u32(u32::try_from(lines.len()).unwrap_or(u32::MAX));
    for (name, value) in lines {
        put_bytes(b, name.as_bytes());
        put_bytes(b, value);
    }
}

struct Reader<'a> {
    input: &'a Bytes,
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<Bytes> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.input.len())?;
        let out = self.input.slice(self.at..end);
        self.at = end;
        Some(out)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn bytes(&mut self) -> Option<Bytes> {
        let len = u32::from_be_bytes(self.take(4)?.as_ref().try_into().ok()?);
        self.take(usize::try_from(len).ok()?)
    }

    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }

    /// Header lines, each name a token and each value free of line breaks.
    fn headers(&mut self) -> Option<Vec<(&'a str, Bytes)>> {
        let count = u32::from_be_bytes(self.take(4)?.as_ref().try_into().ok()?);
        // Each line takes at least 8 bytes: a count larger than the input allows is a
        // lie, not a reason to allocate.
        let count = usize::try_from(count).ok()?;
        if count > (self.input.len() - self.at) / 8 {
            return None;
        }
        let mut lines = Vec::with_capacity(count);
        for _ in 0..count {
            let name = self.bytes()?;
            let value = self.bytes()?;
            if name.is_empty()
                || !name.iter().copied().all(is_tchar)
                || value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
            {
                return None;
            }
            // The name is ASCII (tokens are) and lives as long as the input.
            let start = self.at - value.len() - 4 - name.len();
            let name = std::str::from_utf8(&self.input[start..start + name.len()]).ok()?;
            lines.push((name, value));
        }
        Some(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &'static [u8]) -> Request {
        Request {
            head: RequestHead {
                method: "POST".into(),
                target: "/socket.io/?EIO=4&transport=polling&sid=abc".into(),
                version: 1,
                headers: Headers::from_pairs([
                    ("Host", &b"example.com"[..]),
                    ("Cookie", &b"a=b"[..]),
                ]),
            },
            body: Bytes::from_static(body),
            peer_addr: Some("127.0.0.1:4000".parse().expect("addr")),
            secure: false,
            extensions: Default::default(),
        }
    }

    #[test]
    fn every_message_comes_back_as_it_went() {
        let messages = [
            Message::Request(request(b"4hello")),
            Message::Open(request(b"")),
            Message::Response(
                Response::new(200)
                    .header("Content-Type", "text/plain; charset=UTF-8")
                    .body(&b"ok"[..]),
            ),
            Message::Abort,
            Message::Data(Bytes::from_static(b"\x81\x05hello")),
            Message::Data(Bytes::new()),
            Message::End,
            Message::Back(Bytes::from_static(b"\x81\x01x")),
            Message::Closed,
        ];
        for (id, message) in messages.into_iter().enumerate() {
            let envelope = Envelope {
                from: "AbCd_-12".into(),
                id: id as u64 + u64::from(u32::MAX),
                message,
            };
            let decoded = Envelope::decode(&envelope.encode()).expect("decodes");
            assert_eq!(decoded, envelope);
        }
    }

    #[test]
    fn what_does_not_parse_is_refused() {
        let good = Envelope {
            from: "tag".into(),
            id: 7,
            message: Message::Request(request(b"x")),
        }
        .encode();
        // Every cut of a request is refused.
        for cut in 0..good.len() {
            assert_eq!(Envelope::decode(&good.slice(..cut)), None, "cut at {cut}");
        }
        // So is a trailing byte, another version, and an unknown kind.
        let mut long = good.to_vec();
        long.push(0);
        assert_eq!(Envelope::decode(&Bytes::from(long)), None);
        let mut other = good.to_vec();
        other[0] = 2;
        assert_eq!(Envelope::decode(&Bytes::from(other)), None);
        let mut kind = good.to_vec();
        kind[1] = 9;
        assert_eq!(Envelope::decode(&Bytes::from(kind)), None);
        // A header value that would split the response is refused.
        let split = Envelope {
            from: "tag".into(),
            id: 1,
            message: Message::Response(Response::new(200).header("X", "a\r\nSet-Cookie: b")),
        };
        assert_eq!(Envelope::decode(&split.encode()), None);
        let bad_name = Envelope {
            from: "tag".into(),
            id: 1,
            message: Message::Response(Response::new(200).header("X Y", "a")),
        };
        assert_eq!(Envelope::decode(&bad_name.encode()), None);
        // A header count larger than the input could hold allocates nothing.
        let mut huge = Envelope {
            from: "t".into(),
            id: 1,
            message: Message::Response(Response::new(200)),
        }
        .encode()
        .to_vec();
        let at = huge.len() - 8;
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(Envelope::decode(&Bytes::from(huge)), None);
    }

    #[test]
    fn session_ids_carry_their_owner() {
        let tag = tag_from([0xff; 6]);
        assert_eq!(tag.len(), TAG_LEN);
        let sid = format!("{tag}{}", "a".repeat(20));
        assert_eq!(sid_tag(&sid), Some(tag.as_str()));
        // Ids of a server without a tag, and anything else, carry none.
        assert_eq!(sid_tag(&"a".repeat(20)), None);
        assert_eq!(sid_tag(&format!("{tag}{}", "é".repeat(10))), None);
        assert_eq!(sid_tag(&format!("{tag}{}.", "a".repeat(19))), None);
        assert_eq!(
            channel("socket.io", &tag),
            format!("socket.io-forward#{tag}#")
        );
    }
}
