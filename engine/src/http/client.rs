//! [`ClientConn`]: one HTTP/1.1 client exchange, sans-IO — the request out, its
//! response in — with the server side's head-size check and body decoders.

use bytes::{Bytes, BytesMut};

use super::{head_length, read_body, Body, Headers, HttpError, MAX_HEADERS};
use crate::queue::Queue;

/// A response that a [`ClientConn`] received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientResponse {
    /// The status code.
    pub status: u16,
    /// The header lines.
    pub headers: Headers,
    /// The body, decoded from its framing.
    pub body: Bytes,
}

#[derive(Debug)]
enum State {
    Head,
    Body {
        status: u16,
        headers: Headers,
        body: BytesMut,
        framing: Body,
    },
    Done,
}

/// One request and its response on a connection of their own (the request says
/// `Connection: close`), sans-IO.
///
/// Write what [`poll_transmit`](Self::poll_transmit) returns, feed what the transport
/// reads to [`handle_input`](Self::handle_input) (and its end to
/// [`handle_eof`](Self::handle_eof)), until [`poll_response`](Self::poll_response)
/// returns the response or the fault. A response head over `max_head_size` or a body
/// over `max_body_size` is a fault, as is a malformed or badly framed response.
/// Interim (1xx) responses are skipped. A body without `Content-Length` or chunked
/// framing runs to the end of the stream.
#[derive(Debug)]
pub struct ClientConn {
    out: Queue<Bytes>,
    buf: BytesMut,
    state: State,
    head_request: bool,
    max_head_size: usize,
    max_body_size: usize,
    result: Option<Result<ClientResponse, HttpError>>,
}

impl ClientConn {
    /// A `method target` request to `host` (the `Host` header's value) with extra
    /// header lines and a body (`Content-Length` is added). A method, target, name
    /// or value that would break the head's framing (a control character, a space in
    /// the target, a colon in a name) is refused with [`HttpError::Malformed`].
    pub fn new(
        method: &str,
        target: &str,
        host: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        max_head_size: usize,
        max_body_size: usize,
    ) -> Result<Self, HttpError> {
        let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        let value = |s: &str| s.bytes().all(|b| b == b'\t' || (b >= b' ' && b != 0x7f));
        if !token(method)
            || !target.bytes().all(|b| b.is_ascii_graphic())
            || target.is_empty()
            || !value(host)
            || !headers.iter().all(|(n, v)| token(n) && value(v))
        {
            return Err(HttpError::Malformed);
        }
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
        for (name, value) in headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut out = Queue::new();
        out.push_back(Bytes::from(head));
        if !body.is_empty() {
            out.push_back(body);
        }
        Ok(Self {
            out,
            buf: BytesMut::new(),
            state: State::Head,
            head_request: method.eq_ignore_ascii_case("HEAD"),
            max_head_size,
            max_body_size,
            result: None,
        })
    }

    /// The next bytes to write.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.out.pop_front()
    }

    /// Bytes read from the transport.
    pub fn handle_input(&mut self, bytes: &[u8]) {
        if matches!(self.state, State::Done) {
            return;
        }
        self.buf.extend_from_slice(bytes);
        self.advance(false);
    }

    /// The server closed its side.
    pub fn handle_eof(&mut self) {
        self.advance(true);
    }

    /// The response once it is complete, or the fault that ended the exchange.
    #[must_use]
    pub fn poll_response(&mut self) -> Option<Result<ClientResponse, HttpError>> {
        self.result.take()
    }

    fn finish(&mut self, result: Result<ClientResponse, HttpError>) {
        self.state = State::Done;
        self.buf = BytesMut::new();
        self.result = Some(result);
    }

    fn advance(&mut self, eof: bool) {
        loop {
            match &mut self.state {
                State::Done => return,
                State::Head => {
                    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let mut res = httparse::Response::new(&mut raw);
                    let used =
                        match head_length(res.parse(&self.buf), self.buf.len(), self.max_head_size)
                        {
                            Ok(Some(n)) => n,
                            Ok(None) if eof => return self.finish(Err(HttpError::Malformed)),
                            Ok(None) => return,
                            Err(e) => return self.finish(Err(e)),
                        };
                    let status = res.code.unwrap_or(0);
                    let headers = Headers::from_httparse(res.headers);
                    let _ = self.buf.split_to(used);
                    if (100..200).contains(&status) {
                        continue; // interim: the final response follows
                    }
                    let framing = if self.head_request || status == 204 || status == 304 {
                        Body::Length(0)
                    } else {
                        match super::body_framing(&headers, Body::UntilEof) {
                            Ok(f) => f,
                            Err(e) => return self.finish(Err(e)),
                        }
                    };
                    if matches!(framing, Body::Length(n) if n > self.max_body_size) {
                        return self.finish(Err(HttpError::BodyTooLarge));
                    }
                    self.state = State::Body {
                        status,
                        headers,
                        body: BytesMut::new(),
                        framing,
                    };
                }
                State::Body { body, framing, .. } => {
                    let complete = match read_body(&mut self.buf, body, framing, self.max_body_size)
                    {
                        Ok(complete) => complete || (eof && matches!(framing, Body::UntilEof)),
                        Err(e) => return self.finish(Err(e)),
                    };
                    if !complete {
                        if eof {
                            self.finish(Err(HttpError::Malformed));
                        }
                        return;
                    }
                    let State::Body {
                        status,
                        headers,
                        body,
                        ..
                    } = std::mem::replace(&mut self.state, State::Done)
                    else {
                        return;
                    };
                    return self.finish(Ok(ClientResponse {
                        status,
                        headers,
                        body: body.freeze(),
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(response: &[u8], step: usize) -> Option<Result<ClientResponse, HttpError>> {
        let mut conn = ClientConn::new(
            "GET",
            "/engine.io/?EIO=4&transport=polling",
            "h:1",
            &[("Accept", "*/*")],
            Bytes::new(),
            1024,
            64,
        )
        .expect("valid request");
        let mut sent = Vec::new();
        while let Some(b) = conn.poll_transmit() {
            sent.extend_from_slice(&b);
        }
        assert_eq!(
            sent,
            b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: h:1\r\nAccept: */*\r\nContent-Length: 0\r\n\r\n"
        );
        for piece in response.chunks(step) {
            conn.handle_input(piece);
        }
        conn.handle_eof();
        conn.poll_response()
    }

    #[test]
    fn every_framing_in_any_split() {
        let cases: [(&[u8], &[u8]); 4] = [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA", b"hello"),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nhel\r\n2\r\nlo\r\n0\r\nT: 1\r\n\r\n",
                b"hello",
            ),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nhello", b"hello"),
            (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
        ];
        for (response, body) in cases {
            for step in [1, 2, 7, response.len()] {
                let got = exchange(response, step).expect("done").expect("ok");
                assert_eq!(&got.body[..], body, "step {step}");
            }
        }
    }

    #[test]
    fn faults() {
        let long = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(2000));
        let cases: [(&[u8], HttpError); 6] = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
                HttpError::Malformed,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 65\r\n\r\n",
                HttpError::BodyTooLarge,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                HttpError::BadFraming,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                HttpError::BadFraming,
            ),
            (b"NOT HTTP\r\n\r\n", HttpError::Malformed),
            (long.as_bytes(), HttpError::HeadTooLarge),
        ];
        for (response, error) in cases {
            assert_eq!(exchange(response, 3), Some(Err(error)));
        }
        let chunky = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n";
        assert_eq!(exchange(chunky, 5), Some(Err(HttpError::BodyTooLarge)));
        let unbounded = [&b"HTTP/1.1 200 OK\r\n\r\n"[..], &[b'x'; 65]].concat();
        assert_eq!(exchange(&unbounded, 9), Some(Err(HttpError::BodyTooLarge)));
    }

    #[test]
    fn refuses_heads_that_would_break_framing() {
        for (method, target, header) in [
            ("GET\r\n", "/", ("A", "b")),
            ("GET", "/a b", ("A", "b")),
            ("GET", "/", ("A:", "b")),
            ("GET", "/", ("A", "b\r\nInjected: 1")),
        ] {
            let made = ClientConn::new(method, target, "h", &[header], Bytes::new(), 99, 99);
            assert_eq!(made.err(), Some(HttpError::Malformed));
        }
    }
}
