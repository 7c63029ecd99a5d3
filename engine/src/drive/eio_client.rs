//! [`EioClient`]: the Engine.IO client over real connections.
//!
//! Runs the sans-IO [`Client`](crate::eio::Client): each HTTP request it asks for goes
//! out on a fresh connection from the [`Connector`] (a long poll and a POST can be in
//! flight together), and its WebSocket is a [`WebSocket`]. Like [`WebSocket`], all
//! I/O happens while [`EioClient::recv`] is being awaited: keep calling it.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};

use super::{Clock, Outbox, Transport, WebSocket};
use crate::eio::{Action, Client, ClientConfig, ClientEvent, ClosedError, Data, RequestId, WsId};
use crate::ws;

/// Opens connections to the server (TCP, or TLS around it).
pub trait Connector {
    /// The connection type.
    type Io: Transport + Send + 'static;
    /// Opens a new connection.
    fn connect(&self) -> Pin<Box<dyn Future<Output = io::Result<Self::Io>> + Send>>;
}

type Pending<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;
/// A WebSocket being opened.
type Opening<K, C> = (WsId, Pending<WebSocket<<K as Connector>::Io, C>>);

/// An Engine.IO client session over a [`Connector`] and a [`Clock`].
pub struct EioClient<K: Connector, C: Clock> {
    client: Client,
    connector: K,
    clock: C,
    host: String,
    requests: Vec<(RequestId, Pending<(u16, Bytes)>)>,
    connecting: Vec<Opening<K, C>>,
    sockets: Vec<(WsId, WebSocket<K::Io, C>)>,
    rng: crate::rand::Rng,
    finished: bool,
}

impl<K: Connector, C: Clock> std::fmt::Debug for EioClient<K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EioClient")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl<K, C> EioClient<K, C>
where
    K: Connector,
    C: Clock + Default + Send + 'static,
{
    /// Starts a session with the server at `host` (the `Host` header value) reached
    /// through `connector`. The handshake happens while [`recv`](Self::recv) runs;
    /// its first event is [`ClientEvent::Open`]. `seed` seeds the WebSocket masking
    /// keys (use OS randomness).
    pub fn new(connector: K, clock: C, host: &str, config: ClientConfig, seed: [u8; 32]) -> Self {
        let client = Client::new(config, clock.now());
        Self {
            client,
            connector,
            clock,
            host: host.to_owned(),
            requests: Vec::new(),
            connecting: Vec::new(),
            sockets: Vec::new(),
            rng: crate::rand::Rng::from_seed(seed),
            finished: false,
        }
    }

    /// The state machine.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Queues a message (sent while `recv` runs).
    pub fn send(&mut self, data: Data) -> Result<(), ClosedError> {
        let now = self.clock.now();
        self.client.send(now, data)
    }

    /// Closes the session (the close packet goes out while `recv` runs; it then
    /// returns the `Closed` event and `None`).
    pub fn close(&mut self) {
        let now = self.clock.now();
        self.client.close(now);
    }

    /// The next event; `None` after `Closed` once everything is flushed.
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<ClientEvent>> {
        loop {
            self.start_actions();
            if let Some(event) = self.client.poll_event() {
                if matches!(event, ClientEvent::Closed(_)) {
                    self.finished = true;
                }
                return Poll::Ready(Some(event));
            }
            if self.finished && self.requests.is_empty() && self.sockets.is_empty() {
                return Poll::Ready(None);
            }
            let now = self.clock.now();
            let mut progress = false;
            // HTTP exchanges.
            let mut i = 0;
            while i < self.requests.len() {
                match self.requests[i].1.as_mut().poll(cx) {
                    Poll::Ready(result) => {
                        let (id, _) = self.requests.swap_remove(i);
                        match result {
                            Ok((status, body)) => {
                                self.client.handle_http_response(now, id, status, body)
                            }
                            Err(_) => self.client.handle_http_failed(now, id),
                        }
                        progress = true;
                    }
                    Poll::Pending => i += 1,
                }
            }
            // WebSockets being opened.
            let mut i = 0;
            while i < self.connecting.len() {
                match self.connecting[i].1.as_mut().poll(cx) {
                    Poll::Ready(result) => {
                        let (id, _) = self.connecting.swap_remove(i);
                        match result {
                            Ok(ws) => {
                                self.sockets.push((id, ws));
                                self.client.handle_ws_opened(now, id);
                            }
                            Err(_) => self.client.handle_ws_closed(now, id),
                        }
                        progress = true;
                    }
                    Poll::Pending => i += 1,
                }
            }
            // Open WebSockets.
            let mut i = 0;
            while i < self.sockets.len() {
                let id = self.sockets[i].0;
                match self.sockets[i].1.poll_event(cx) {
                    Poll::Ready(Some(Ok(ws::Event::Message(m)))) => {
                        self.client.handle_ws_message(now, id, &m);
                        progress = true;
                    }
                    Poll::Ready(Some(Ok(_))) => progress = true,
                    Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                        self.sockets.swap_remove(i);
                        self.client.handle_ws_closed(now, id);
                        progress = true;
                        continue;
                    }
                    Poll::Pending => {}
                }
                if let Poll::Ready(Err(_)) = self.sockets[i].1.poll_write_all(cx) {
                    self.sockets.swap_remove(i);
                    self.client.handle_ws_closed(now, id);
                    progress = true;
                    continue;
                }
                i += 1;
            }
            if let Some(deadline) = self.client.poll_timeout() {
                if self.clock.poll_until(cx, deadline).is_ready() {
                    self.client.handle_timeout(self.clock.now());
                    progress = true;
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    fn start_actions(&mut self) {
        while let Some(action) = self.client.poll_action() {
            match action {
                Action::Http {
                    id,
                    method,
                    target,
                    body,
                } => {
                    let mut head = format!(
                        "{method} {target} HTTP/1.1\r\nHost: {}\r\nAccept: */*\r\nConnection: close\r\n",
                        self.host
                    );
                    if method == "POST" {
                        head.push_str("Content-Type: text/plain;charset=UTF-8\r\n");
                    }
                    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
                    let connect = self.connector.connect();
                    self.requests.push((
                        id,
                        Box::pin(
                            async move { exchange(connect.await?, Bytes::from(head), body).await },
                        ),
                    ));
                }
                Action::OpenWs { id, target } => {
                    let request =
                        ws::ClientRequest::from_url(&format!("ws://{}{target}", self.host));
                    let connect = self.connector.connect();
                    let mut seed = [0u8; 32];
                    self.rng.fill(&mut seed);
                    self.connecting.push((
                        id,
                        Box::pin(async move {
                            let request = request
                                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                            let io = connect.await?;
                            WebSocket::connect(
                                io,
                                C::default(),
                                Arc::new(ws::Config::default()),
                                &request,
                                seed,
                            )
                            .await
                            .map_err(|e| io::Error::other(e.to_string()))
                        }),
                    ));
                }
                Action::SendWs { id, message } => {
                    if let Some((_, ws)) = self.sockets.iter_mut().find(|(i, _)| *i == id) {
                        let _ = ws.connection().send(message);
                    }
                }
                Action::CloseWs(id) => {
                    if let Some((_, ws)) = self.sockets.iter_mut().find(|(i, _)| *i == id) {
                        let now = self.clock.now();
                        let _ = ws.connection().close(now, ws::CloseCode::NORMAL, "");
                    }
                }
            }
        }
    }
}

/// The `host:port` of an `http://host:port[/...]` (or `ws://`) URL. TLS schemes are
/// refused: wrap the connector's stream yourself.
pub fn authority_of(url: &str) -> io::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("ws://"))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "expected an http:// URL (no TLS)",
            )
        })?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "URL without a host",
        ));
    }
    Ok(authority.to_owned())
}

/// Writes one request and reads its response: status and body (by `Content-Length`,
/// chunked, or to EOF).
async fn exchange<T: Transport>(mut io: T, head: Bytes, body: Bytes) -> io::Result<(u16, Bytes)> {
    let mut out = Outbox::default();
    out.push(head);
    out.push(body);
    let mut buf = BytesMut::new();
    let mut eof = false;
    poll_fn(|cx| loop {
        out.write_to(&mut io, cx)?;
        if !out.is_empty() {
            return Poll::Pending;
        }
        if let Some(done) = parse_response(&buf, eof)? {
            return Poll::Ready(Ok(done));
        }
        if eof {
            return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
        }
        let mut chunk = [0u8; 16 * 1024];
        match io.poll_read(cx, &mut chunk) {
            Poll::Ready(Ok(0)) => eof = true,
            Poll::Ready(Ok(n)) => {
                if buf.len() + n > 64 << 20 {
                    return Poll::Ready(Err(io::Error::other("response too large")));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    })
    .await
}

fn parse_response(buf: &[u8], eof: bool) -> io::Result<Option<(u16, Bytes)>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut res = httparse::Response::new(&mut headers);
    let head_len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    };
    let status = res.code.unwrap_or(0);
    let header = |name: &str| {
        res.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let body = &buf[head_len..];
    if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        return Ok((body.len() >= len).then(|| (status, Bytes::copy_from_slice(&body[..len]))));
    }
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                return Ok(None);
            };
            let size_text = String::from_utf8_lossy(&rest[..eol]);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            rest = &rest[eol + 2..];
            if size == 0 {
                return Ok(Some((status, Bytes::from(out))));
            }
            if rest.len() < size + 2 {
                return Ok(None);
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
    }
    Ok(eof.then(|| (status, Bytes::copy_from_slice(body))))
}
