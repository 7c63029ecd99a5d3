//! Sans-IO HTTP/1.1, both sides: what Engine.IO needs, and the upgrade to WebSocket.
//! Heads are parsed with httparse under a size cap (431 above it); bodies are framed by
//! `Content-Length` or chunked encoding and buffered under a cap (413 above it).
//!
//! * [`ServerConn`] is one server connection: feed it bytes, take complete
//!   [`Request`]s, give it one [`Response`] per request, write what `poll_transmit`
//!   returns. Connections are kept alive unless either side says otherwise.
//! * [`ClientConn`] is one client exchange: a request out, its [`ClientResponse`] in,
//!   decoded by the same head check and body decoders.
//! * [`Url`] is the one URL parser of every client.

use crate::queue::Queue;
use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod client;
mod coding;
mod cookie;
pub(crate) mod url;

pub use client::{ClientConn, ClientResponse};
pub use coding::ContentCoding;
pub use cookie::CookieJar;
pub use url::{Scheme, Url, UrlError};

use bytes::{Buf, Bytes, BytesMut};

/// How many header lines a request head may carry.
pub const MAX_HEADERS: usize = 64;

/// Header lines, in order, names as sent.
///
/// Stored compactly, because a WebSocket connection or an Engine.IO session keeps its
/// upgrade request for as long as it lives: one allocation holds where each line's
/// name and value end, then every name and value back to back (instead of two
/// allocations per line, or one for the text and one for the index).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// For each line, where its name ends and where its value ends in the text (two
    /// `u32`s, native byte order); then the text: line `i` is `name_i value_i`.
    buf: Box<[u8]>,
    /// How many lines.
    lines: u32,
}

/// The bytes of one line's entry in the index that opens [`Headers::buf`].
const LINE_INDEX: usize = 8;

impl Headers {
    /// Header lines from `(name, value)` pairs, in order (a request parsed by another
    /// HTTP server: hyper's `HeaderMap`, say).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Self {
        let pairs: Vec<_> = pairs.into_iter().collect();
        Self::from_lines(pairs.iter().copied())
    }

    /// The lines of `pairs` (read twice: once to size the buffer, once to fill it).
    fn from_lines<'a>(pairs: impl Iterator<Item = (&'a str, &'a [u8])> + Clone) -> Self {
        // Lines past 4 GiB of names and values are left out (the offsets are `u32`).
        let (mut size, mut lines) = (0usize, 0usize);
        for (name, value) in pairs.clone() {
            let next = size.saturating_add(name.len()).saturating_add(value.len());
            if u32::try_from(next).is_err() {
                break;
            }
            (size, lines) = (next, lines + 1);
        }
        let mut buf = Vec::with_capacity((lines * LINE_INDEX).saturating_add(size));
        let mut end = 0usize;
        for (name, value) in pairs.clone().take(lines) {
            let name_end = end + name.len();
            end = name_end + value.len();
            // Both fit: `size` does.
            for offset in [name_end, end] {
                buf.extend_from_slice(&u32::try_from(offset).unwrap_or(u32::MAX).to_ne_bytes());
            }
        }
        for (name, value) in pairs.take(lines) {
            buf.extend_from_slice(name.as_bytes());
            buf.extend_from_slice(value);
        }
        Self {
            buf: buf.into_boxed_slice(),
            lines: u32::try_from(lines).unwrap_or(u32::MAX),
        }
    }

    pub(crate) fn from_httparse(raw: &[httparse::Header<'_>]) -> Self {
        Self::from_lines(raw.iter().map(|h| (h.name, h.value)))
    }

    /// All header lines.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        // Names came in as `&str`.
        (self.lines()).map(|(name, value)| (std::str::from_utf8(name).unwrap_or_default(), value))
    }

    /// All header lines, the names as bytes: what a lookup compares, with no UTF-8
    /// check per line.
    fn lines(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let index_len = (self.lines as usize * LINE_INDEX).min(self.buf.len());
        let (index, text) = self.buf.split_at(index_len);
        let offset = |b: &[u8]| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let mut start = 0;
        index.chunks_exact(LINE_INDEX).map(move |line| {
            let (name_end, value_end) = (offset(&line[..4]), offset(&line[4..]));
            let name = text.get(start..name_end).unwrap_or_default();
            let value = text.get(name_end..value_end).unwrap_or_default();
            start = value_end;
            (name, value)
        })
    }

    /// The first value of header `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.lines()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// The first value of header `name` as text, if it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        std::str::from_utf8(self.get(name)?).ok()
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.lines()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// The comma-separated tokens of every `name` header, trimmed, empty ones skipped.
    pub fn tokens<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.get_all(name)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }

    /// Whether the `name` header lists `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.tokens(name).any(|t| t.eq_ignore_ascii_case(token))
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(n, v)| (n, String::from_utf8_lossy(v))))
            .finish()
    }
}

/// Whether `b` may be in an HTTP token (RFC 9110 §5.6.2): a header name, a cookie
/// name, an extension name.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    /// The minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub version: u8,
    /// The header lines.
    pub headers: Headers,
}

impl RequestHead {
    /// The path, without the query.
    pub fn path(&self) -> &str {
        split_at_byte(&self.target, b'?').0
    }

    /// The raw query string (without `?`).
    pub fn query(&self) -> &str {
        split_at_byte(&self.target, b'?').1.unwrap_or("")
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<Cow<'_, str>> {
        let [value] = self.query_params([name]);
        value
    }

    /// The first value of each of `names`, percent-decoded, in one pass over the query:
    /// each byte is looked at once, to find the pair's end, its `=` and whether its key
    /// or value has escapes; only a key with escapes is decoded to compare, and only
    /// the values found with escapes are decoded (the others are borrowed).
    pub fn query_params<const N: usize>(&self, names: [&str; N]) -> [Option<Cow<'_, str>>; N] {
        let mut found: [Option<Cow<'_, str>>; N] = std::array::from_fn(|_| None);
        let mut left = N;
        let query = self.query();
        let bytes = query.as_bytes();
        let mut start = 0;
        while left > 0 && start < bytes.len() {
            let (mut end, mut eq) = (start, None);
            let (mut key_escaped, mut value_escaped) = (false, false);
            while let Some(&b) = bytes.get(end) {
                match b {
                    b'&' => break,
                    b'=' if eq.is_none() => eq = Some(end),
                    b'%' | b'+' if eq.is_none() => key_escaped = true,
                    b'%' | b'+' => value_escaped = true,
                    _ => {}
                }
                end += 1;
            }
            let pair_start = std::mem::replace(&mut start, end + 1);
            if end == pair_start {
                continue; // an empty pair
            }
            // `&` and `=` are ASCII: every slice here is on a character boundary.
            let key = &query[pair_start..eq.unwrap_or(end)];
            let value = eq.map_or("", |eq| &query[eq + 1..end]);
            let decoded;
            let key = if key_escaped {
                decoded = percent_decode(key, true);
                &*decoded
            } else {
                key
            };
            for (name, slot) in names.iter().zip(found.iter_mut()) {
                if slot.is_none() && key == *name {
                    *slot = Some(if value_escaped {
                        percent_decode(value, true)
                    } else {
                        Cow::Borrowed(value)
                    });
                    left -= 1;
                }
            }
        }
        found
    }

    /// The head as it goes on the wire (request line, header lines, blank line),
    /// appended to `out`: what a parser reads back as this head.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.target.as_bytes());
        out.extend_from_slice(b" HTTP/1.");
        push_decimal(out, u64::from(self.version));
        out.extend_from_slice(b"\r\n");
        for (name, value) in self.headers.iter() {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Whether this request asks to upgrade to WebSocket.
    pub fn is_websocket_upgrade(&self) -> bool {
        self.headers.has_token("upgrade", "websocket")
    }

    /// Whether the client wants the connection kept open after the response.
    pub fn keep_alive(&self) -> bool {
        if self.headers.has_token("connection", "close") {
            return false;
        }
        self.version >= 1 || self.headers.has_token("connection", "keep-alive")
    }
}

/// The `key=value` pairs of a query string, percent-decoded (`+` is a space).
pub fn query_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k, true), percent_decode(v, true))
    })
}

/// A path segment percent-decoded (`+` stays a `+`); invalid escapes are kept as they
/// are and invalid UTF-8 is replaced.
pub fn percent_decode_path(s: &str) -> Cow<'_, str> {
    percent_decode(s, false)
}

/// `s` up to the first `sep` (an ASCII byte), and what follows it if it occurs.
fn split_at_byte(s: &str, sep: u8) -> (&str, Option<&str>) {
    match s.bytes().position(|b| b == sep) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

/// Whether `s` has an escape (or a `+` that stands for a space).
fn needs_decoding(s: &str, plus_is_space: bool) -> bool {
    s.bytes().any(|b| b == b'%' || plus_is_space && b == b'+')
}

fn percent_decode(s: &str, plus_is_space: bool) -> Cow<'_, str> {
    if !needs_decoding(s, plus_is_space) {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => match bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// A complete request: head and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The head.
    pub head: RequestHead,
    /// The body (empty when there is none).
    pub body: Bytes,
    /// The peer's address, when the transport has one (set by whoever serves the
    /// connection: [`ServerConn`] does not know it).
    pub peer_addr: Option<SocketAddr>,
    /// The connection is encrypted (TLS), as whoever serves it knows (set like
    /// `peer_addr`).
    pub secure: bool,
    /// What the host's HTTP server attached to the request (an embedding host puts
    /// the application's request extensions here); kept with the session it opens.
    pub extensions: Extensions,
}

/// Values a host attaches to a request, opaque to the engine: shared, not copied, by
/// the session the request opens. Two are equal when they share one attachment.
#[derive(Clone, Default)]
pub struct Extensions(Option<std::sync::Arc<dyn std::any::Any + Send + Sync>>);

impl Extensions {
    /// Attaches `value`.
    pub fn new<T: std::any::Any + Send + Sync>(value: T) -> Self {
        Self(Some(std::sync::Arc::new(value)))
    }

    /// The attached value, if it is a `T`.
    pub fn get<T: std::any::Any>(&self) -> Option<&T> {
        self.0.as_deref()?.downcast_ref()
    }

    /// Whether nothing is attached.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

impl PartialEq for Extensions {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Extensions {}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_empty() {
            "Extensions(none)"
        } else {
            "Extensions(..)"
        })
    }
}

/// An HTTP-level fault of the peer, with the status that answers it (on the server
/// side).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// Not valid HTTP/1.x: 400.
    Malformed,
    /// The head is over the cap: 431.
    HeadTooLarge,
    /// The body is over the cap: 413.
    BodyTooLarge,
    /// Both `Content-Length` and `Transfer-Encoding`, differing or malformed
    /// `Content-Length` values, or a bad chunk: 400.
    BadFraming,
    /// A transfer coding other than a lone `chunked`: 501.
    UnsupportedTransferCoding,
}

impl HttpError {
    /// The status that answers this error.
    pub const fn status(self) -> u16 {
        match self {
            Self::Malformed | Self::BadFraming => 400,
            Self::HeadTooLarge => 431,
            Self::BodyTooLarge => 413,
            Self::UnsupportedTransferCoding => 501,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed HTTP message",
            Self::HeadTooLarge => "head too large",
            Self::BodyTooLarge => "body too large",
            Self::BadFraming => "bad body framing",
            Self::UnsupportedTransferCoding => "unsupported transfer coding",
        })
    }
}

impl std::error::Error for HttpError {}

/// Applies the head-size cap to an httparse result: the head's length, `None` for
/// "need more bytes", or the error (too large also when too many header lines).
pub(crate) fn head_length(
    parsed: httparse::Result<usize>,
    buffered: usize,
    max_head_size: usize,
) -> Result<Option<usize>, HttpError> {
    match parsed {
        Ok(httparse::Status::Complete(n)) if n <= max_head_size => Ok(Some(n)),
        Ok(httparse::Status::Complete(_)) => Err(HttpError::HeadTooLarge),
        Ok(httparse::Status::Partial) if buffered >= max_head_size => Err(HttpError::HeadTooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HttpError::HeadTooLarge),
        Err(_) => Err(HttpError::Malformed),
    }
}

/// Parses a request head at the start of `buf`; `Ok(None)`: need more bytes.
pub fn parse_head(
    buf: &[u8],
    max_head_size: usize,
) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut raw);
    let Some(used) = head_length(req.parse(buf), buf.len(), max_head_size)? else {
        return Ok(None);
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HttpError::Malformed);
    };
    Ok(Some((
        RequestHead {
            method: method.to_owned(),
            target: target.to_owned(),
            version,
            headers: Headers::from_httparse(req.headers),
        },
        used,
    )))
}

/// Parses a response head (status and header lines) at the start of `buf`: the
/// status, the headers, and how many bytes the head took; `Ok(None)`: need more bytes.
pub fn parse_response_head(
    buf: &[u8],
    max_head_size: usize,
) -> Result<Option<(u16, Headers, usize)>, HttpError> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut raw);
    let Some(used) = head_length(res.parse(buf), buf.len(), max_head_size)? else {
        return Ok(None);
    };
    let status = res.code.ok_or(HttpError::Malformed)?;
    Ok(Some((status, Headers::from_httparse(res.headers), used)))
}

/// An HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header lines (`Content-Length` and `Connection` are added when encoding).
    pub headers: Vec<(Cow<'static, str>, String)>,
    /// The body.
    pub body: Bytes,
}

impl Response {
    /// A response with `status`, no headers and no body.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// `404 Not Found`, with a plain-text body saying so.
    pub fn not_found() -> Self {
        Self::new(404)
            .header("Content-Type", "text/plain")
            .body("Not Found")
    }

    /// Adds a header line.
    pub fn header(mut self, name: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The first value of header `name`.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The encoded head (status line and headers, with `Content-Length` and
    /// `Connection`), to be followed by the body.
    pub fn encode_head(&self, keep_alive: bool) -> Bytes {
        // Its exact size: one allocation, never grown, and a `Bytes` made from it needs
        // none of its own.
        let mut head = Vec::with_capacity(self.head_len(keep_alive));
        self.encode_head_into(keep_alive, &mut head);
        Bytes::from(head)
    }

    /// The head and the body in one buffer of their exact size (a short body: one
    /// allocation and one write for the whole response).
    fn encode_joined(&self, keep_alive: bool) -> Bytes {
        let mut out = Vec::with_capacity(self.head_len(keep_alive) + self.body.len());
        self.encode_head_into(keep_alive, &mut out);
        out.extend_from_slice(&self.body);
        Bytes::from(out)
    }

    /// Whether the head has a `Content-Length` line.
    fn has_length(&self) -> bool {
        !matches!(self.status, 101 | 204 | 304)
    }

    /// How long [`encode_head`](Self::encode_head)'s output is.
    fn head_len(&self, keep_alive: bool) -> usize {
        let lines: usize = (self.headers.iter())
            .map(|(name, value)| name.len() + value.len() + 4)
            .sum();
        let length = if self.has_length() {
            b"Content-Length: \r\n".len() + decimal_len(self.body.len() as u64)
        } else {
            0
        };
        let connection = match (self.status, keep_alive) {
            (101, _) => 0,
            (_, true) => CONNECTION_KEEP_ALIVE.len(),
            (_, false) => CONNECTION_CLOSE.len(),
        };
        b"HTTP/1.1  \r\n".len()
            + decimal_len(u64::from(self.status))
            + reason_phrase(self.status).len()
            + lines
            + length
            + connection
            + 2
    }

    /// Appends the head to `head`.
    fn encode_head_into(&self, keep_alive: bool, head: &mut Vec<u8>) {
        head.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(head, u64::from(self.status));
        head.push(b' ');
        head.extend_from_slice(reason_phrase(self.status).as_bytes());
        head.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        if self.has_length() {
            head.extend_from_slice(b"Content-Length: ");
            push_decimal(head, self.body.len() as u64);
            head.extend_from_slice(b"\r\n");
        }
        if self.status != 101 {
            head.extend_from_slice(if keep_alive {
                CONNECTION_KEEP_ALIVE
            } else {
                CONNECTION_CLOSE
            });
        }
        head.extend_from_slice(b"\r\n");
    }
}

const CONNECTION_KEEP_ALIVE: &[u8] = b"Connection: keep-alive\r\n";
const CONNECTION_CLOSE: &[u8] = b"Connection: close\r\n";

/// How many decimal digits `n` has.
fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// A response body up to this long goes out in one buffer with its head (copied once:
/// cheaper than a second buffer, queue entry and write); a longer one follows its head
/// as it is.
const JOINED_BODY: usize = 16 * 1024;

/// Appends `n` in decimal, without the formatting machinery (on every response head
/// and every Socket.IO packet with an id).
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The reason phrase for the statuses this crate sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[derive(Debug)]
enum Body {
    Length(usize),
    Chunked(ChunkState),
    /// A response body that ends with the stream.
    UntilEof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(usize),
    DataEnd,
    Trailer,
}

#[derive(Debug)]
enum ReadState {
    Head,
    Body {
        head: RequestHead,
        body: BytesMut,
        framing: Body,
    },
    /// A request was handed out; waiting for its response.
    Responding {
        keep_alive: bool,
    },
    /// The connection was handed over to another protocol (WebSocket).
    Upgraded,
    /// No more requests: answer the last one and close.
    Closing,
}

/// One HTTP/1.1 server connection, sans-IO.
///
/// Requests are handled one at a time: after [`poll_request`](Self::poll_request)
/// returns one, no further request is parsed until [`respond`](Self::respond) (or
/// [`upgrade`](Self::upgrade)) is called. A fault in a request is answered with its
/// status by the connection itself, which then closes.
///
/// With a [request timeout](Self::with_request_timeout), a connection waiting for a
/// request — idle between keep-alive requests, or receiving a head or body — for
/// longer than the timeout is closed (no answer: the client may not even have begun a
/// request). The time counts from the connection's start or the last response, not
/// from the last byte, so a client that trickles a request (slowloris) gains nothing.
/// The deadline is [`poll_timeout`](Self::poll_timeout); call
/// [`handle_timeout`](Self::handle_timeout) when it passes. While a request is with the
/// caller (a long poll parked, say) no deadline runs.
#[derive(Debug)]
pub struct ServerConn {
    buf: BytesMut,
    state: ReadState,
    max_head_size: usize,
    max_body_size: usize,
    ready: Option<Request>,
    out: Queue<Bytes>,
    eof: bool,
    close: bool,
    request_timeout: Option<Duration>,
    /// When the wait for the next request began.
    waiting_since: Option<Instant>,
}

impl ServerConn {
    /// A connection with caps on the head and body sizes.
    pub fn new(max_head_size: usize, max_body_size: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            state: ReadState::Head,
            max_head_size,
            max_body_size,
            ready: None,
            out: Queue::new(),
            eof: false,
            close: false,
            request_timeout: None,
            waiting_since: None,
        }
    }

    /// Closes the connection when a request takes longer than `timeout` to arrive,
    /// counting from `now`.
    pub fn with_request_timeout(mut self, timeout: Duration, now: Instant) -> Self {
        self.request_timeout = Some(timeout);
        self.waiting_since = Some(now);
        self
    }

    /// When the connection gives up waiting for a request, if it is waiting for one.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.close || !matches!(self.state, ReadState::Head | ReadState::Body { .. }) {
            return None;
        }
        Some(self.waiting_since? + self.request_timeout?)
    }

    /// Time has passed: past the deadline, the connection closes (a spurious call is a
    /// no-op).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|deadline| now >= deadline) {
            self.state = ReadState::Closing;
            self.close = true;
            self.buf = BytesMut::new();
        }
    }

    /// The last response has been written out: the wait for the next request counts
    /// from `now`, not from when the response was queued (a large answer on a slow
    /// link is not cut by the request timeout while it is still being written).
    pub fn handle_written(&mut self, now: Instant) {
        if matches!(self.state, ReadState::Head | ReadState::Body { .. }) {
            self.waiting_since = Some(now);
        }
    }

    /// Whether to read more from the transport now. While a request is with the caller
    /// (a parked long poll, say) at most a head's worth of what follows is buffered:
    /// a client cannot stream into the server's memory behind an unanswered request.
    #[must_use]
    pub fn wants_input(&self) -> bool {
        match self.state {
            ReadState::Responding { .. } => self.buf.len() < self.max_head_size,
            ReadState::Closing => false,
            ReadState::Head | ReadState::Body { .. } | ReadState::Upgraded => !self.close,
        }
    }

    /// Bytes read from the transport.
    pub fn handle_input(&mut self, bytes: &[u8]) {
        if matches!(self.state, ReadState::Upgraded | ReadState::Closing) || self.close {
            if matches!(self.state, ReadState::Upgraded) {
                self.buf.extend_from_slice(bytes);
            }
            return;
        }
        self.buf.extend_from_slice(bytes);
        self.advance();
    }

    /// The client closed its side.
    pub fn handle_eof(&mut self) {
        self.eof = true;
        if matches!(self.state, ReadState::Head | ReadState::Body { .. }) && self.ready.is_none() {
            self.close = true;
        }
    }

    /// The next complete request.
    #[must_use]
    pub fn poll_request(&mut self) -> Option<Request> {
        self.ready.take()
    }

    /// Answers the current request; a request timeout starts again from `now`.
    pub fn respond(&mut self, now: Instant, response: Response) {
        self.waiting_since = Some(now);
        let keep_alive = match self.state {
            ReadState::Responding { keep_alive } => keep_alive && !self.eof,
            _ => false,
        };
        self.queue_response(response, keep_alive);
        if keep_alive {
            self.state = ReadState::Head;
            self.advance();
        } else {
            self.state = ReadState::Closing;
            self.close = true;
        }
    }

    /// Answers the current request with `response` (a `101`) and hands the connection
    /// over: returns the bytes already read past the request.
    pub fn upgrade(&mut self, response_head: Bytes) -> Bytes {
        self.out.push_back(response_head);
        self.state = ReadState::Upgraded;
        // All of it, buffer included: a `split` would keep the read buffer's allocation
        // alive in this (now idle) connection for as long as the WebSocket lives.
        std::mem::take(&mut self.buf).freeze()
    }

    /// Queues `response`: a short body in one buffer with its head, a longer one
    /// after it as it is.
    fn queue_response(&mut self, response: Response, keep_alive: bool) {
        if response.body.len() <= JOINED_BODY {
            self.out.push_back(response.encode_joined(keep_alive));
        } else {
            self.out.push_back(response.encode_head(keep_alive));
            self.out.push_back(response.body);
        }
    }

    /// The next bytes to write.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.out.pop_front()
    }

    /// Whether the transport should be closed once everything is written.
    #[must_use]
    pub fn should_close(&self) -> bool {
        self.close && self.out.is_empty()
    }

    fn fail(&mut self, err: HttpError) {
        let body = err.to_string();
        let response = Response::new(err.status())
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body);
        self.queue_response(response, false);
        self.state = ReadState::Closing;
        self.close = true;
        self.buf = BytesMut::new();
    }

    fn advance(&mut self) {
        loop {
            match &mut self.state {
                ReadState::Head => {
                    if self.buf.is_empty() {
                        return;
                    }
                    let (head, used) = match parse_head(&self.buf, self.max_head_size) {
                        Ok(Some(parsed)) => parsed,
                        Ok(None) => return,
                        Err(e) => return self.fail(e),
                    };
                    self.buf.advance(used);
                    let framing = match body_framing(&head.headers, Body::Length(0)) {
                        Ok(f) => f,
                        Err(e) => return self.fail(e),
                    };
                    if let Body::Length(n) = framing {
                        if n > self.max_body_size {
                            return self.fail(HttpError::BodyTooLarge);
                        }
                    }
                    self.state = ReadState::Body {
                        head,
                        body: BytesMut::new(),
                        framing,
                    };
                }
                ReadState::Body { body, framing, .. } => {
                    match read_body(&mut self.buf, body, framing, self.max_body_size) {
                        Ok(true) => {}
                        Ok(false) => return,
                        Err(e) => return self.fail(e),
                    }
                    let ReadState::Body { head, body, .. } = std::mem::replace(
                        &mut self.state,
                        ReadState::Responding { keep_alive: false },
                    ) else {
                        return;
                    };
                    let keep_alive = head.keep_alive() && !head.is_websocket_upgrade();
                    self.state = ReadState::Responding { keep_alive };
                    self.ready = Some(Request {
                        head,
                        body: body.freeze(),
                        peer_addr: None,
                        secure: false,
                        extensions: Extensions::default(),
                    });
                    return;
                }
                ReadState::Responding { .. } | ReadState::Upgraded | ReadState::Closing => return,
            }
        }
    }
}

/// How a message's body is framed (RFC 9112 §6.3); `otherwise` when it has neither
/// `Content-Length` nor `Transfer-Encoding` (no body for a request, the rest of the
/// stream for a response).
///
/// Strict, because a lenient reading behind a proxy that reuses connections is request
/// smuggling: both headers, `Content-Length` values that differ or are not plain
/// digits (`+5`, `0x5`, empty) are refused, and so is any transfer coding other than a
/// lone `chunked` (`chunked, gzip`, `gzip`, two `chunked`).
fn body_framing(headers: &Headers, otherwise: Body) -> Result<Body, HttpError> {
    let length = content_length(headers)?;
    if headers.get("transfer-encoding").is_none() {
        return Ok(length.map_or(otherwise, Body::Length));
    }
    if length.is_some() {
        return Err(HttpError::BadFraming);
    }
    let mut tokens = headers.tokens("transfer-encoding");
    match (tokens.next(), tokens.next()) {
        (Some(t), None) if t.eq_ignore_ascii_case("chunked") => Ok(Body::Chunked(ChunkState::Size)),
        _ => Err(HttpError::UnsupportedTransferCoding),
    }
}

/// The `Content-Length`, if any: every value (repeated headers, comma lists) must be
/// the same run of ASCII digits.
fn content_length(headers: &Headers) -> Result<Option<usize>, HttpError> {
    let mut found = None;
    for value in headers.get_all("content-length") {
        for item in value.split(|&b| b == b',') {
            let item = item.trim_ascii();
            if item.is_empty() || !item.iter().all(u8::is_ascii_digit) {
                return Err(HttpError::BadFraming);
            }
            let n = std::str::from_utf8(item)
                .ok()
                .and_then(|t| t.parse::<usize>().ok())
                .ok_or(HttpError::BadFraming)?;
            if found.is_some_and(|seen| seen != n) {
                return Err(HttpError::BadFraming);
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// Moves body bytes from `buf` to `body`. `Ok(true)` when the body is complete.
fn read_body(
    buf: &mut BytesMut,
    body: &mut BytesMut,
    framing: &mut Body,
    max: usize,
) -> Result<bool, HttpError> {
    match framing {
        Body::Length(left) => {
            let take = (*left).min(buf.len());
            body.extend_from_slice(&buf.split_to(take));
            *left -= take;
            Ok(*left == 0)
        }
        Body::UntilEof => {
            if body.len().saturating_add(buf.len()) > max {
                return Err(HttpError::BodyTooLarge);
            }
            body.extend_from_slice(buf);
            buf.clear();
            Ok(false)
        }
        Body::Chunked(state) => loop {
            match *state {
                ChunkState::Size | ChunkState::Trailer => {
                    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
                        return if buf.len() > 1024 {
                            Err(HttpError::BadFraming)
                        } else {
                            Ok(false)
                        };
                    };
                    let line = buf.split_to(eol + 2);
                    if *state == ChunkState::Trailer {
                        if eol == 0 {
                            return Ok(true);
                        }
                        continue;
                    }
                    let text =
                        std::str::from_utf8(&line[..eol]).map_err(|_| HttpError::BadFraming)?;
                    let size_text = text.split(';').next().unwrap_or("").trim_end();
                    // Hex digits only (`from_str_radix` would take a sign), and few
                    // enough that the size cannot overflow.
                    if size_text.is_empty()
                        || size_text.len() > 15
                        || !size_text.bytes().all(|b| b.is_ascii_hexdigit())
                    {
                        return Err(HttpError::BadFraming);
                    }
                    let size =
                        usize::from_str_radix(size_text, 16).map_err(|_| HttpError::BadFraming)?;
                    if body.len().saturating_add(size) > max {
                        return Err(HttpError::BodyTooLarge);
                    }
                    *state = if size == 0 {
                        ChunkState::Trailer
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(false);
                    }
                    let take = left.min(buf.len());
                    body.extend_from_slice(&buf.split_to(take));
                    *state = if take == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - take)
                    };
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(false);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(HttpError::BadFraming);
                    }
                    buf.advance(2);
                    *state = ChunkState::Size;
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_response_heads() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nrest";
        let (status, headers, used) = parse_response_head(head, 1024)
            .expect("valid")
            .expect("complete");
        assert_eq!((status, used), (101, head.len() - 4));
        assert_eq!(headers.get_str("upgrade"), Some("websocket"));
        assert_eq!(parse_response_head(&head[..20], 1024), Ok(None));
        assert_eq!(parse_response_head(head, 16), Err(HttpError::HeadTooLarge));
        assert_eq!(
            parse_response_head(b"HTTP/1.1 abc\r\n\r\n", 64),
            Err(HttpError::Malformed)
        );
    }

    use super::*;

    #[test]
    fn headers_keep_order_case_and_repeats() {
        let head = b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-Many: 1, 2\r\nx-many: 3\r\nEmpty:\r\nUpgrade: WebSocket\r\n\r\n";
        let Ok(Some((req, used))) = parse_head(head, 8192) else {
            panic!("head not parsed");
        };
        assert_eq!(used, head.len());
        let h = &req.headers;
        let lines: Vec<_> = h.iter().collect();
        assert_eq!(
            lines,
            [
                ("Host", &b"x"[..]),
                ("X-Many", b"1, 2"),
                ("x-many", b"3"),
                ("Empty", b""),
                ("Upgrade", b"WebSocket"),
            ]
        );
        assert_eq!(h.get("HOST"), Some(&b"x"[..]));
        assert_eq!(h.get_str("empty"), Some(""));
        assert_eq!(h.get("missing"), None);
        assert_eq!(
            h.get_all("X-MANY").collect::<Vec<_>>(),
            [&b"1, 2"[..], b"3"]
        );
        assert_eq!(h.tokens("x-many").collect::<Vec<_>>(), ["1", "2", "3"]);
        assert!(req.is_websocket_upgrade());
        assert_eq!(
            format!("{h:?}"),
            r#"[("Host", "x"), ("X-Many", "1, 2"), ("x-many", "3"), ("Empty", ""), ("Upgrade", "WebSocket")]"#
        );
        assert_eq!(Headers::default().iter().count(), 0);
        // The same lines from pairs make the same headers.
        assert_eq!(&Headers::from_pairs(lines.iter().copied()), h);
        assert_eq!(Headers::from_pairs([]), Headers::default());
    }

    #[test]
    fn response_heads_are_sized_exactly_and_short_bodies_join_them() {
        for status in [101, 200, 204, 304, 404, 599] {
            for keep_alive in [true, false] {
                for size in [0, 1, 9, 10, 99_999] {
                    let r = Response::new(status)
                        .header("Content-Type", "text/plain")
                        .body(vec![b'x'; size]);
                    let head = r.encode_head(keep_alive);
                    assert_eq!(head.len(), r.head_len(keep_alive), "{status} {size}");
                    let joined = r.encode_joined(keep_alive);
                    assert_eq!(joined[..head.len()], head[..]);
                    assert_eq!(joined[head.len()..], r.body[..]);
                }
            }
        }
        let mut conn = ServerConn::new(1024, 1 << 20);
        conn.handle_input(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(conn.poll_request().is_some());
        conn.respond(Instant::now(), Response::new(200).body("ok"));
        assert_eq!(
            conn.poll_transmit().as_deref(),
            Some(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"[..]),
            "one buffer"
        );
        assert_eq!(conn.poll_transmit(), None);
    }

    fn requests(conn: &mut ServerConn, input: &[u8], step: usize) -> Vec<Request> {
        let mut out = Vec::new();
        for chunk in input.chunks(step) {
            conn.handle_input(chunk);
            while let Some(r) = conn.poll_request() {
                out.push(r);
                conn.respond(Instant::now(), Response::new(200).body("ok"));
            }
        }
        out
    }

    #[test]
    fn a_request_head_encodes_to_what_parses_back_as_it() {
        let input = b"GET /socket.io/?EIO=4&transport=websocket&sid=a%2Bb HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nX-Empty: \r\nConnection: Upgrade\r\n\r\n";
        let mut conn = ServerConn::new(8192, 1 << 20);
        let reqs = requests(&mut conn, input, input.len());
        let mut raw = Vec::new();
        reqs[0].head.encode(&mut raw);
        let mut again = ServerConn::new(8192, 1 << 20);
        let back = requests(&mut again, &raw, raw.len());
        assert_eq!(back[0].head, reqs[0].head);
        assert_eq!(raw, input.to_vec());
    }

    #[test]
    fn a_response_head_is_encoded_exactly() {
        let r = Response::new(200)
            .header("Content-Type", "text/plain")
            .body("hello");
        assert_eq!(
            &r.encode_head(true)[..],
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n"
        );
        let big = Response::new(413).body(vec![b'x'; 1_234_567]);
        assert_eq!(
            &big.encode_head(false)[..],
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 1234567\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            &Response::new(204).encode_head(true)[..],
            b"HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"
        );
        assert_eq!(
            &Response::new(101)
                .header("Upgrade", "websocket")
                .encode_head(true)[..],
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
        );
        assert!(Response::new(200)
            .encode_head(true)
            .starts_with(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"));
    }

    #[test]
    fn query_params_agree_with_query_pairs_on_every_short_query() {
        // Every query of up to 5 bytes over an alphabet of separators, escapes and
        // key bytes: the one-pass lookup finds what the pairs iterator reads.
        let alphabet = b"a=&%+3D";
        let names = ["a", "a=", "", "a a", "=", "a+"];
        let mut query = Vec::new();
        for len in 0..=5u32 {
            let total = alphabet.len().pow(len);
            for n in 0..total {
                query.clear();
                let mut rest = n;
                for _ in 0..len {
                    query.push(alphabet[rest % alphabet.len()]);
                    rest /= alphabet.len();
                }
                let query = std::str::from_utf8(&query).expect("ascii");
                let head = RequestHead {
                    method: "GET".into(),
                    target: format!("/p?{query}"),
                    version: 1,
                    headers: Headers::default(),
                };
                let found = head.query_params(names);
                for (name, got) in names.iter().zip(found) {
                    let want = query_pairs(query).find(|(k, _)| k == name).map(|(_, v)| v);
                    assert_eq!(got, want, "{query:?} {name:?}");
                }
            }
        }
    }

    #[test]
    fn query_params_are_found_raw_or_decoded_as_query_pairs_reads_them() {
        let head = |target: &str| RequestHead {
            method: "GET".into(),
            target: target.into(),
            version: 1,
            headers: Headers::default(),
        };
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("/p?EIO=4&transport=polling&sid=abc", "sid", Some("abc")),
            ("/p?EIO=4&transport=polling&sid=abc", "EIO", Some("4")),
            ("/p?EIO=4&transport=polling", "sid", None),
            ("/p", "sid", None),
            ("/p?", "sid", None),
            ("/p?&&sid=&x", "sid", Some("")),
            ("/p?j&sid=1", "j", Some("")),
            ("/p?sid=1&sid=2", "sid", Some("1")),
            ("/p?s%69d=x%2By+z", "sid", Some("x+y z")),
            ("/p?my+key=v", "my key", Some("v")),
            ("/p?a=b=c", "a", Some("b=c")),
            ("/p?a=%zz%", "a", Some("%zz%")),
            ("/p?q=%C3%A9?x", "q", Some("é?x")),
            ("/p?sid=a%26b&x", "sid", Some("a&b")),
            ("/p?x=1&", "x", Some("1")),
            ("/p?=v&sid=s", "sid", Some("s")),
            ("/p?=v", "", Some("v")),
            ("/p?k%3D=1=2", "k=", Some("1=2")),
            ("/p?a+b=c+d&a b=e", "a b", Some("c d")),
        ];
        for (target, name, want) in cases {
            let h = head(target);
            assert_eq!(h.query_param(name).as_deref(), *want, "{target} {name}");
            let [one, other] = h.query_params([name, "EIO"]);
            assert_eq!(one.as_deref(), *want, "{target} {name} (with another)");
            assert_eq!(other, h.query_param("EIO"), "{target} EIO");
            // The same answer as the pairs iterator gives.
            let pairs = query_pairs(h.query())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v);
            assert_eq!(pairs.as_deref(), *want, "{target} {name} (pairs)");
        }
    }

    #[test]
    fn keep_alive_requests_with_every_body_framing_in_any_split() {
        let input = b"GET /a?x=1&y=a%20b+c HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloPOST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for step in [1, 2, 7, input.len()] {
            let mut conn = ServerConn::new(8192, 1 << 20);
            let reqs = requests(&mut conn, input, step);
            assert_eq!(reqs.len(), 3, "step {step}");
            assert_eq!(reqs[0].head.path(), "/a");
            assert_eq!(reqs[0].head.query_param("y").as_deref(), Some("a b c"));
            assert_eq!(&reqs[1].body[..], b"hello");
            assert_eq!(&reqs[2].body[..], b"abcde");
            assert!(!conn.should_close());
        }
    }

    #[test]
    fn faults_get_their_status_and_close() {
        let cases: &[(&[u8], &str)] = &[
            (b"\x16\x03garbage\r\n\r\n", "HTTP/1.1 400 "),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
                "HTTP/1.1 413 ",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffff\r\n",
                "HTTP/1.1 413 ",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                "HTTP/1.1 400 ",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                "HTTP/1.1 400 ",
            ),
            // Request smuggling vectors (RFC 9112 §6.3).
            (
                b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
                "HTTP/1.1 400 ",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\nhello!",
                "HTTP/1.1 400 ",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
                "HTTP/1.1 400 ",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
                "HTTP/1.1 400 ",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\nhello",
                "HTTP/1.1 400 ",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
                "HTTP/1.1 501 ",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                "HTTP/1.1 501 ",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                "HTTP/1.1 501 ",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
                "HTTP/1.1 400 ",
            ),
            // obs-fold (a header continued on the next line) is refused.
            (
                b"GET / HTTP/1.1\r\nX-A: 1\r\n 2\r\n\r\n",
                "HTTP/1.1 400 ",
            ),
        ];
        for (input, status) in cases {
            let mut conn = ServerConn::new(8192, 1000);
            assert!(requests(&mut conn, input, 3).is_empty());
            let out: Vec<u8> = std::iter::from_fn(|| conn.poll_transmit())
                .flatten()
                .collect();
            assert!(
                out.starts_with(status.as_bytes()),
                "{:?}",
                String::from_utf8_lossy(&out)
            );
            assert!(conn.should_close());
        }
        let mut conn = ServerConn::new(64, 1000);
        conn.handle_input(format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(100)).as_bytes());
        assert!(conn
            .poll_transmit()
            .is_some_and(|b| b.starts_with(b"HTTP/1.1 431 ")));
    }

    #[test]
    fn behind_an_unanswered_request_only_a_head_s_worth_is_buffered() {
        let mut conn = ServerConn::new(1024, 1 << 20);
        conn.handle_input(b"GET /poll HTTP/1.1\r\n\r\n");
        let parked = conn.poll_request().expect("request");
        assert_eq!(parked.head.path(), "/poll");
        assert!(conn.wants_input());
        conn.handle_input(&[b'x'; 1000]);
        assert!(conn.wants_input());
        conn.handle_input(&[b'x'; 100]);
        assert!(!conn.wants_input(), "reading stops");
        conn.respond(Instant::now(), Response::new(200));
        // The bytes behind it were not a request: 400, and no more reading.
        assert!(!conn.wants_input());
    }

    #[test]
    fn repeated_equal_content_lengths_are_one_length() {
        let input = b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5, 5\r\n\r\nhello";
        let mut conn = ServerConn::new(8192, 1000);
        let reqs = requests(&mut conn, input, 4);
        assert_eq!(reqs.len(), 1);
        assert_eq!(&reqs[0].body[..], b"hello");
    }

    #[test]
    fn connection_close_and_http10_end_the_connection() {
        for req in [
            &b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
            b"GET / HTTP/1.0\r\n\r\n",
        ] {
            let mut conn = ServerConn::new(8192, 1000);
            assert_eq!(requests(&mut conn, req, 100).len(), 1);
            let out: Vec<u8> = std::iter::from_fn(|| conn.poll_transmit())
                .flatten()
                .collect();
            assert!(String::from_utf8_lossy(&out).contains("Connection: close\r\n"));
            assert!(conn.should_close());
        }
    }

    #[test]
    fn upgrade_hands_over_the_bytes_that_follow() {
        let mut conn = ServerConn::new(8192, 1000);
        conn.handle_input(
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x80",
        );
        let req = conn.poll_request().expect("request");
        assert!(req.head.is_websocket_upgrade());
        let rest = conn.upgrade(Bytes::from_static(
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ));
        assert_eq!(&rest[..], b"\x81\x80");
    }

    #[test]
    fn the_request_timeout_counts_from_the_last_response_not_the_last_byte() {
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        let mut conn = ServerConn::new(8192, 1000).with_request_timeout(secs(30), t0);
        assert_eq!(conn.poll_timeout(), Some(t0 + secs(30)));
        conn.handle_input(b"GET / HTTP/1.1\r\n\r\n");
        let _request = conn.poll_request().expect("request");
        assert_eq!(
            conn.poll_timeout(),
            None,
            "no deadline while the caller holds it"
        );
        conn.respond(t0 + secs(50), Response::new(204));
        assert_eq!(conn.poll_timeout(), Some(t0 + secs(80)));
        conn.handle_input(b"GET / HT"); // trickled: the deadline stays
        conn.handle_timeout(t0 + secs(79));
        assert!(!conn.should_close() && conn.poll_timeout() == Some(t0 + secs(80)));
        while conn.poll_transmit().is_some() {}
        conn.handle_timeout(t0 + secs(80));
        assert!(conn.should_close());
        assert!(conn.poll_transmit().is_none(), "closed without an answer");
        assert_eq!(conn.poll_timeout(), None);
    }
}
