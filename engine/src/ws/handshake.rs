//! The opening handshake (RFC 6455 §4), both roles.
//!
//! Server: [`parse_request`] parses and validates an upgrade request head,
//! [`Request::response`] builds the `101 Switching Protocols` answer, and
//! [`rejection`] the HTTP error answer for a [`HandshakeError`].
//! Client: [`ClientRequest`] builds the request from a `ws://` URL, and
//! [`parse_response`] checks the server's answer.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

use super::error::HandshakeError;

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// How many header lines a handshake head may carry.
pub const MAX_HEADERS: usize = crate::http::MAX_HEADERS;

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    BASE64.encode(sha.finalize())
}

pub use crate::http::Headers;

/// A validated WebSocket upgrade request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    path: String,
    headers: Headers,
    key: Vec<u8>,
}

impl Request {
    /// The request target (path and query), as sent.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The request's header lines.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The subprotocols the client offers, in its order of preference.
    pub fn protocols(&self) -> impl Iterator<Item = &str> {
        self.headers.tokens("sec-websocket-protocol")
    }

    /// The extensions the client offers (`None` if the header is malformed).
    pub fn extensions(&self) -> Option<Vec<super::deflate::Extension>> {
        super::deflate::parse_extensions(self.headers.get_all("sec-websocket-extensions"))
    }

    /// The `101 Switching Protocols` response, selecting `protocol` (which should be
    /// one the client offered) and `extensions` (a `Sec-WebSocket-Extensions` value)
    /// if given.
    pub fn response(&self, protocol: Option<&str>, extensions: Option<&str>) -> Vec<u8> {
        self.response_head(protocol, extensions)
            .encode_head(false)
            .to_vec()
    }

    /// The same response as [`response`](Self::response), as status and header lines
    /// for a host whose HTTP server writes it (hyper).
    pub fn response_head(
        &self,
        protocol: Option<&str>,
        extensions: Option<&str>,
    ) -> crate::http::Response {
        let mut response = crate::http::Response::new(101)
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header("Sec-WebSocket-Accept", accept_key(&self.key));
        if let Some(p) = protocol {
            response = response.header("Sec-WebSocket-Protocol", p);
        }
        if let Some(e) = extensions {
            response = response.header("Sec-WebSocket-Extensions", e);
        }
        response
    }
}

/// Parses and validates an upgrade request head at the start of `buf`.
///
/// `Ok(None)`: the head is incomplete (and within `max_head_size`); feed more bytes.
/// `Ok(Some((request, n)))`: the head is the first `n` bytes; what follows belongs to
/// the first frames.
pub fn parse_request(
    buf: &[u8],
    max_head_size: usize,
) -> Result<Option<(Request, usize)>, HandshakeError> {
    let (head, used) = match crate::http::parse_head(buf, max_head_size) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return Ok(None),
        Err(crate::http::HttpError::HeadTooLarge) => return Err(HandshakeError::HeadTooLarge),
        Err(_) => return Err(HandshakeError::MalformedHttp),
    };
    Ok(Some((validate(head)?, used)))
}

/// Routes a request that no other endpoint took to one of the plain WebSocket `routes`
/// (`(path, config)` pairs, matched on the exact path): the validated upgrade with the
/// route's config, or the response to send instead — 404 for an unknown path or a
/// request that is not an upgrade, 403 for an `Origin` not on the route's
/// [`Config::origins`](super::Config::origins), the handshake error's status for a
/// bad upgrade.
pub fn route<T: std::borrow::Borrow<super::Config>>(
    routes: &[(String, T)],
    head: crate::http::RequestHead,
) -> Result<(Request, &T), crate::http::Response> {
    let route = routes.iter().find(|(path, _)| path == head.path());
    match route {
        Some((_, value)) if head.is_websocket_upgrade() => {
            upgrade(value.borrow(), head).map(|upgrade| (upgrade, value))
        }
        _ => Err(crate::http::Response::not_found()),
    }
}

/// Checks a WebSocket upgrade request for a route served with `config`: its origin
/// (see [`Config::origins`](super::Config::origins)), then the request itself; the
/// HTTP answer (403, 400, 426, ...) if it is refused.
pub fn upgrade(
    config: &super::Config,
    head: crate::http::RequestHead,
) -> Result<Request, crate::http::Response> {
    config
        .check_origin(&head.headers)
        .and_then(|()| validate(head))
        .map_err(|e| {
            crate::http::Response::new(e.status())
                .header("Content-Type", "text/plain; charset=utf-8")
                .body(e.to_string())
        })
}

/// Validates an already parsed request head as a WebSocket upgrade request.
pub fn validate(head: crate::http::RequestHead) -> Result<Request, HandshakeError> {
    if head.method != "GET" {
        return Err(HandshakeError::MethodNotGet);
    }
    if head.version != 1 {
        return Err(HandshakeError::HttpVersion);
    }
    let headers = head.headers;
    if headers.get("host").is_none() {
        return Err(HandshakeError::MalformedHttp);
    }
    if !headers.has_token("upgrade", "websocket") {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !headers.has_token("connection", "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    let versions: Vec<&[u8]> = headers.get_all("sec-websocket-version").collect();
    if versions.len() != 1 || versions[0].trim_ascii() != b"13" {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let keys: Vec<&[u8]> = headers.get_all("sec-websocket-key").collect();
    let key = match keys.as_slice() {
        [k] => k.trim_ascii().to_vec(),
        _ => return Err(HandshakeError::InvalidKey),
    };
    match BASE64.decode(&key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return Err(HandshakeError::InvalidKey),
    }
    Ok(Request {
        path: head.target,
        headers,
        key,
    })
}

/// The HTTP response that refuses an upgrade request with `err`'s status.
pub fn rejection(err: &HandshakeError) -> Vec<u8> {
    let status = err.status();
    let phrase = match status {
        403 => "Forbidden",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Bad Request",
    };
    let body = err.to_string();
    let extra = if status == 426 {
        "Sec-WebSocket-Version: 13\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {status} {phrase}\r\n{extra}Connection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub use crate::http::UrlError;

/// What a client sends to open a WebSocket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRequest {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Request target: path and query.
    pub path: String,
    /// Subprotocols to offer, in order of preference.
    pub protocols: Vec<String>,
    /// Extra header lines (e.g. `Authorization`, `Origin`).
    pub headers: Vec<(String, String)>,
}

impl ClientRequest {
    /// A request for a `ws://host[:port][/path][?query]` URL.
    pub fn from_url(url: &str) -> Result<Self, UrlError> {
        let url = crate::http::Url::parse_plain(url, &[crate::http::Scheme::Ws])?;
        Ok(Self {
            host: url.host,
            port: url.port,
            path: url.target,
            protocols: Vec::new(),
            headers: Vec::new(),
        })
    }

    /// `host:port` as a socket address string (IPv6 in brackets).
    pub fn authority(&self) -> String {
        crate::http::url::authority(&self.host, self.port)
    }

    /// The request head, with `key` (base64 of 16 random bytes) as `Sec-WebSocket-Key`
    /// and `extensions` as the `Sec-WebSocket-Extensions` offer.
    pub fn encode(&self, key: &str, extensions: Option<&str>) -> Vec<u8> {
        let mut out = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
            self.path,
            crate::http::url::host_header(&self.host, self.port, 80),
        );
        if !self.protocols.is_empty() {
            out.push_str("Sec-WebSocket-Protocol: ");
            out.push_str(&self.protocols.join(", "));
            out.push_str("\r\n");
        }
        if let Some(e) = extensions {
            out.push_str("Sec-WebSocket-Extensions: ");
            out.push_str(e);
            out.push_str("\r\n");
        }
        for (name, value) in &self.headers {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// A server's accepted answer to a [`ClientRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The subprotocol the server selected.
    pub protocol: Option<String>,
    /// The extensions the server selected (checked against the offer by the caller).
    pub extensions: Vec<super::deflate::Extension>,
    /// The response's header lines.
    pub headers: Headers,
}

/// Parses and checks the server's answer to a request sent with `key`, offering
/// `protocols`. Like [`parse_request`], `Ok(None)` means "need more bytes".
pub fn parse_response(
    buf: &[u8],
    key: &str,
    protocols: &[String],
    max_head_size: usize,
) -> Result<Option<(Response, usize)>, HandshakeError> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut raw);
    let used = match crate::http::head_length(res.parse(buf), buf.len(), max_head_size) {
        Ok(Some(n)) => n,
        Ok(None) => return Ok(None),
        Err(crate::http::HttpError::HeadTooLarge) => return Err(HandshakeError::HeadTooLarge),
        Err(_) => return Err(HandshakeError::MalformedHttp),
    };
    match res.code {
        Some(101) => {}
        Some(other) => return Err(HandshakeError::UnexpectedStatus(other)),
        None => return Err(HandshakeError::MalformedHttp),
    }
    let headers = Headers::from_httparse(res.headers);
    if !headers.has_token("upgrade", "websocket") {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !headers.has_token("connection", "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    let expected = accept_key(key.as_bytes());
    match headers.get("sec-websocket-accept") {
        Some(v) if v.trim_ascii() == expected.as_bytes() => {}
        _ => return Err(HandshakeError::AcceptMismatch),
    }
    let extensions = super::deflate::parse_extensions(headers.get_all("sec-websocket-extensions"))
        .ok_or(HandshakeError::UnexpectedExtension)?;
    let protocol = match headers.get("sec-websocket-protocol") {
        None => None,
        Some(p) => {
            let p = std::str::from_utf8(p.trim_ascii())
                .map_err(|_| HandshakeError::UnexpectedProtocol)?;
            if !protocols.iter().any(|o| o == p) {
                return Err(HandshakeError::UnexpectedProtocol);
            }
            Some(p.to_owned())
        }
    };
    Ok(Some((
        Response {
            protocol,
            extensions,
            headers,
        },
        used,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /chat?x=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn rfc_accept_key() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn accepts_a_good_request_and_keeps_what_follows() {
        let mut buf = GOOD.as_bytes().to_vec();
        buf.extend_from_slice(&[0x81, 0x80]);
        let (req, used) = parse_request(&buf, 8192).expect("valid").expect("complete");
        assert_eq!(used, GOOD.len());
        assert_eq!(req.path(), "/chat?x=1");
        assert_eq!(req.protocols().collect::<Vec<_>>(), ["chat", "superchat"]);
        let resp = String::from_utf8(req.response(Some("chat"), None)).expect("ascii");
        assert!(resp.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(resp.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(resp.contains("Sec-WebSocket-Protocol: chat\r\n"));
        for cut in 0..GOOD.len() {
            assert_eq!(parse_request(&buf[..cut], 8192), Ok(None));
        }
    }

    #[test]
    fn bad_requests_get_their_status() {
        let cases: &[(&str, &str, HandshakeError)] = &[
            ("GET /chat", "POST /chat", HandshakeError::MethodNotGet),
            (
                "HTTP/1.1\r\nHost",
                "HTTP/1.0\r\nHost",
                HandshakeError::HttpVersion,
            ),
            (
                "Upgrade: websocket",
                "Upgrade: h2c",
                HandshakeError::MissingUpgrade,
            ),
            (
                "keep-alive, Upgrade",
                "keep-alive",
                HandshakeError::MissingConnectionUpgrade,
            ),
            (
                "Version: 13",
                "Version: 8",
                HandshakeError::UnsupportedVersion,
            ),
            (
                "dGhlIHNhbXBsZSBub25jZQ==",
                "c2hvcnQ=",
                HandshakeError::InvalidKey,
            ),
            (
                "Host: server.example.com\r\n",
                "",
                HandshakeError::MalformedHttp,
            ),
        ];
        for (from, to, err) in cases {
            let bad = GOOD.replacen(from, to, 1);
            assert_eq!(
                parse_request(bad.as_bytes(), 8192),
                Err(err.clone()),
                "{from} -> {to}"
            );
        }
        let resp =
            String::from_utf8(rejection(&HandshakeError::UnsupportedVersion)).expect("ascii");
        assert!(resp.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(resp.contains("Sec-WebSocket-Version: 13\r\n"));
        assert_eq!(
            parse_request(b"\x16\x03\x01garbage\r\n\r\n", 8192),
            Err(HandshakeError::MalformedHttp)
        );
    }

    #[test]
    fn oversized_head_is_431() {
        let big = format!("GET / HTTP/1.1\r\nX-Pad: {}\r\n", "a".repeat(9000));
        let err = parse_request(big.as_bytes(), 8192).expect_err("too large");
        assert_eq!(err, HandshakeError::HeadTooLarge);
        assert!(String::from_utf8_lossy(&rejection(&err)).starts_with("HTTP/1.1 431 "));
    }

    #[test]
    fn routes_plain_upgrades_and_answers_the_rest() {
        use super::super::Config;
        let feed = Config::default().origins(["http://good.example"]);
        let routes = [
            ("/chat".to_owned(), Config::default()),
            ("/feed".to_owned(), feed),
        ];
        let head = |text: &str| {
            crate::http::parse_head(text.as_bytes(), 8192)
                .expect("valid")
                .expect("complete")
                .0
        };
        let upgrade = "GET /feed?x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let (_, config) = route(&routes, head(upgrade)).expect("routed");
        assert!(config.origins.is_some(), "the /feed route");
        let status = |text: &str| {
            route(&routes, head(text))
                .map(|_| ())
                .expect_err("refused")
                .status
        };
        assert_eq!(status(&upgrade.replace("/feed", "/nowhere")), 404);
        assert_eq!(status("GET /chat HTTP/1.1\r\nHost: h\r\n\r\n"), 404);
        assert_eq!(status(&upgrade.replace("Version: 13", "Version: 8")), 426);
        // The route's origin allow-list: a browser from elsewhere gets 403.
        let from = |origin: &str| {
            upgrade.replace("Host: h\r\n", &format!("Host: h\r\nOrigin: {origin}\r\n"))
        };
        assert_eq!(status(&from("http://evil.example")), 403);
        assert!(route(&routes, head(&from("http://good.example"))).is_ok());
        assert!(route(
            &routes,
            head(&from("http://evil.example").replace("/feed", "/chat"))
        )
        .is_ok());
    }

    #[test]
    fn urls() {
        let r = ClientRequest::from_url("ws://127.0.0.1:9001/runCase?case=1&agent=a").expect("url");
        assert_eq!(
            (r.host.as_str(), r.port, r.path.as_str()),
            ("127.0.0.1", 9001, "/runCase?case=1&agent=a")
        );
        let r = ClientRequest::from_url("WS://example.com").expect("url");
        assert_eq!(
            (r.host.as_str(), r.port, r.path.as_str()),
            ("example.com", 80, "/")
        );
        let r = ClientRequest::from_url("ws://[::1]:8080?q").expect("url");
        assert_eq!(
            (r.authority().as_str(), r.path.as_str()),
            ("[::1]:8080", "/?q")
        );
        assert_eq!(
            ClientRequest::from_url("wss://x"),
            Err(UrlError::TlsUnsupported)
        );
        assert_eq!(ClientRequest::from_url("http://x"), Err(UrlError::Invalid));
        assert_eq!(
            ClientRequest::from_url("ws://x:99999/"),
            Err(UrlError::Invalid)
        );
        assert_eq!(ClientRequest::from_url("ws://:80/"), Err(UrlError::Invalid));
    }

    #[test]
    fn client_checks_the_response() {
        let req = ClientRequest::from_url("ws://h/").expect("url");
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let head = String::from_utf8(req.encode(key, None)).expect("ascii");
        assert!(head.starts_with("GET / HTTP/1.1\r\nHost: h\r\n"));
        let good = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        let (resp, used) = parse_response(good.as_bytes(), key, &[], 8192)
            .expect("ok")
            .expect("complete");
        assert_eq!((resp.protocol, used), (None, good.len()));
        let wrong = good.replace("s3pP", "AAAA");
        assert_eq!(
            parse_response(wrong.as_bytes(), key, &[], 8192),
            Err(HandshakeError::AcceptMismatch)
        );
        let status = "HTTP/1.1 403 Forbidden\r\n\r\n";
        assert_eq!(
            parse_response(status.as_bytes(), key, &[], 8192),
            Err(HandshakeError::UnexpectedStatus(403))
        );
        let huge = format!(
            "HTTP/1.1 101 Switching Protocols\r\nX: {}\r\n",
            "a".repeat(9000)
        );
        assert_eq!(
            parse_response(huge.as_bytes(), key, &[], 8192),
            Err(HandshakeError::HeadTooLarge)
        );
        assert_eq!(
            parse_response(b"\x00garbage\r\n\r\n", key, &[], 8192),
            Err(HandshakeError::MalformedHttp)
        );
        assert_eq!(
            parse_response(&good.as_bytes()[..20], key, &[], 8192),
            Ok(None)
        );
        let proto = good.replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: x\r\n\r\n");
        assert_eq!(
            parse_response(proto.as_bytes(), key, &[], 8192),
            Err(HandshakeError::UnexpectedProtocol)
        );
    }
}
