//! RESP, the Redis protocol (version 2, plus the RESP3 types a server may send): commands
//! out, replies and pub/sub messages in.

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

/// A reply from Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Status(String),
    /// `-ERR ...`: the command failed.
    Error(String),
    /// `:42`.
    Int(i64),
    /// A bulk string (`None`: the null bulk string).
    Bulk(Option<Bytes>),
    /// An array (`None`: the null array); RESP3 pushes are arrays too.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The bytes of a bulk or status reply.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Bulk(Some(b)) => Some(b),
            Self::Status(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// The integer of an integer reply (or of a bulk string holding one).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            Self::Bulk(Some(b)) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        }
    }
}

/// A reply stream that is not RESP, or exceeds [`Limits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolError(&'static str);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// Bounds on what a reply may make us hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest bulk string (default 64 MiB).
    pub max_bulk: usize,
    /// Most elements in one array (default 1,048,576).
    pub max_elements: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bulk: 64 << 20,
            max_elements: 1 << 20,
        }
    }
}

/// Appends a command (an array of bulk strings) to `out`.
pub fn command<A: AsRef<[u8]>>(args: &[A], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Reads replies from the bytes of a connection.
#[derive(Debug, Default)]
pub struct Parser {
    buf: BytesMut,
    limits: Limits,
}

impl Parser {
    /// A parser with these limits.
    pub fn new(limits: Limits) -> Self {
        Self {
            buf: BytesMut::new(),
            limits,
        }
    }

    /// Adds bytes read from the connection.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete reply, if the bytes so far hold one.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ProtocolError> {
        let mut pos = 0;
        match parse(&self.buf, &mut pos, &self.limits, 0)? {
            Some(r) => {
                self.buf.advance(pos);
                Ok(Some(r))
            }
            None => Ok(None),
        }
    }
}

const MAX_DEPTH: usize = 32;

fn line<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, ProtocolError> {
    let rest = &buf[*pos..];
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(i) => {
            *pos += i + 2;
            Ok(Some(&rest[..i]))
        }
        // A header line longer than this is not Redis.
        None if rest.len() > 64 << 10 => Err(ProtocolError("line too long")),
        None => Ok(None),
    }
}

fn int(l: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(l)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ProtocolError("bad integer"))
}

fn text(l: &[u8]) -> String {
    String::from_utf8_lossy(l).into_owned()
}

fn parse(
    buf: &[u8],
    pos: &mut usize,
    limits: &Limits,
    depth: usize,
) -> Result<Option<Reply>, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError("too deep"));
    }
    let Some(&kind) = buf.get(*pos) else {
        return Ok(None);
    };
    *pos += 1;
    let Some(l) = line(buf, pos)? else {
        return Ok(None);
    };
    Ok(Some(match kind {
        b'+' => Reply::Status(text(l)),
        b'-' => Reply::Error(text(l)),
        b':' => Reply::Int(int(l)?),
        b'#' => Reply::Int(i64::from(l == b"t")),
        b',' => Reply::Bulk(Some(Bytes::copy_from_slice(l))),
        b'_' => Reply::Bulk(None),
        b'$' | b'=' | b'!' => {
            let n = int(l)?;
            if n < 0 {
                return Ok(Some(Reply::Bulk(None)));
            }
            let n = usize::try_from(n).map_err(|_| ProtocolError("length"))?;
            if n > limits.max_bulk {
                return Err(ProtocolError("bulk string over the limit"));
            }
            if buf.len() < *pos + n + 2 {
                return Ok(None);
            }
            if &buf[*pos + n..*pos + n + 2] != b"\r\n" {
                return Err(ProtocolError("bulk string not terminated"));
            }
            let b = Bytes::copy_from_slice(&buf[*pos..*pos + n]);
            *pos += n + 2;
            if kind == b'!' {
                Reply::Error(text(&b))
            } else {
                Reply::Bulk(Some(b))
            }
        }
        b'*' | b'>' | b'~' | b'%' | b'|' => {
            let n = int(l)?;
            if n < 0 {
                return Ok(Some(Reply::Array(None)));
            }
            let mut n = usize::try_from(n).map_err(|_| ProtocolError("length"))?;
            if matches!(kind, b'%' | b'|') {
                n = n.checked_mul(2).ok_or(ProtocolError("length"))?;
            }
            if n > limits.max_elements {
                return Err(ProtocolError("array over the limit"));
            }
            let mut items = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                match parse(buf, pos, limits, depth + 1)? {
                    Some(r) => items.push(r),
                    None => return Ok(None),
                }
            }
            if kind == b'|' {
                // An attribute: metadata before the real reply, which follows.
                return parse(buf, pos, limits, depth + 1);
            }
            Reply::Array(Some(items))
        }
        _ => return Err(ProtocolError("unknown reply type")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_commands() {
        let mut out = Vec::new();
        command(&["PUBLISH", "c", "hi"], &mut out);
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$2\r\nhi\r\n");
    }

    #[test]
    fn reads_replies_split_anywhere() {
        let wire = b"+OK\r\n-ERR no\r\n:12\r\n$-1\r\n*3\r\n$8\r\npmessage\r\n$0\r\n\r\n$4\r\na\r\nb\r\n*-1\r\n";
        for split in 0..wire.len() {
            let mut p = Parser::default();
            let mut got = Vec::new();
            p.feed(&wire[..split]);
            while let Some(r) = p.next_reply().expect("valid") {
                got.push(r);
            }
            p.feed(&wire[split..]);
            while let Some(r) = p.next_reply().expect("valid") {
                got.push(r);
            }
            assert_eq!(
                got,
                vec![
                    Reply::Status("OK".into()),
                    Reply::Error("ERR no".into()),
                    Reply::Int(12),
                    Reply::Bulk(None),
                    Reply::Array(Some(vec![
                        Reply::Bulk(Some(Bytes::from_static(b"pmessage"))),
                        Reply::Bulk(Some(Bytes::new())),
                        Reply::Bulk(Some(Bytes::from_static(b"a\r\nb"))),
                    ])),
                    Reply::Array(None),
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn refuses_what_is_not_resp_or_too_big() {
        let limits = Limits {
            max_bulk: 10,
            max_elements: 4,
        };
        for bad in [
            &b"?x\r\n"[..],
            b"$11\r\n",
            b"*5\r\n",
            b":x\r\n",
            b"$1\r\nab\r\n",
        ] {
            let mut p = Parser::new(limits);
            p.feed(bad);
            assert!(
                p.next_reply().is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut p = Parser::default();
        p.feed(&vec![b'+'; (64 << 10) + 2]);
        assert!(p.next_reply().is_err());
    }
}
