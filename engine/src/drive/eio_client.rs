//! [`Pilot`]: an "actions out, outcomes in" client machine over real connections —
//! [`EioClient`] for the Engine.IO client, and the Socket.IO client's driver.
//!
//! Runs the sans-IO machine: each HTTP request it asks for goes out on a fresh
//! connection from the [`Connector`] (a long poll and a POST can be in flight
//! together), and each WebSocket is a [`WebSocket`]. Like [`WebSocket`], all I/O
//! happens while [`Pilot::recv`] is being awaited: keep calling it.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::{Clock, Outbox, Transport, WebSocket};
use crate::eio::{Action, Client, ClientConfig, ClientEvent, ClosedError, Data, RequestId, WsId};
use crate::ws;

/// A sans-IO client that asks for I/O with [`Action`]s and takes the outcomes:
/// [`Client`] (Engine.IO) and [`crate::sio::Manager`] (Socket.IO).
pub trait ClientMachine {
    /// What it tells the application.
    type Event;
    /// See [`Client::handle_http_response`].
    fn handle_http_response(&mut self, now: Instant, id: RequestId, status: u16, body: Bytes);
    /// See [`Client::handle_http_failed`].
    fn handle_http_failed(&mut self, now: Instant, id: RequestId);
    /// See [`Client::handle_ws_opened`].
    fn handle_ws_opened(&mut self, now: Instant, id: WsId);
    /// See [`Client::handle_ws_message`].
    fn handle_ws_message(&mut self, now: Instant, id: WsId, message: &ws::Message);
    /// See [`Client::handle_ws_closed`].
    fn handle_ws_closed(&mut self, now: Instant, id: WsId);
    /// See [`Client::handle_timeout`].
    fn handle_timeout(&mut self, now: Instant);
    /// See [`Client::poll_action`].
    fn poll_action(&mut self) -> Option<Action>;
    /// The next event.
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// See [`Client::poll_timeout`].
    fn poll_timeout(&self) -> Option<Instant>;
    /// Nothing follows this event.
    fn is_final(event: &Self::Event) -> bool;
}

macro_rules! client_machine {
    ($ty:ty, $event:ty, |$e:ident| $final:expr) => {
        impl ClientMachine for $ty {
            type Event = $event;
            fn handle_http_response(
                &mut self,
                now: Instant,
                id: RequestId,
                status: u16,
                body: Bytes,
            ) {
                <$ty>::handle_http_response(self, now, id, status, body)
            }
            fn handle_http_failed(&mut self, now: Instant, id: RequestId) {
                <$ty>::handle_http_failed(self, now, id)
            }
            fn handle_ws_opened(&mut self, now: Instant, id: WsId) {
                <$ty>::handle_ws_opened(self, now, id)
            }
            fn handle_ws_message(&mut self, now: Instant, id: WsId, message: &ws::Message) {
                <$ty>::handle_ws_message(self, now, id, message)
            }
            fn handle_ws_closed(&mut self, now: Instant, id: WsId) {
                <$ty>::handle_ws_closed(self, now, id)
            }
            fn handle_timeout(&mut self, now: Instant) {
                <$ty>::handle_timeout(self, now)
            }
            fn poll_action(&mut self) -> Option<Action> {
                <$ty>::poll_action(self)
            }
            fn poll_event(&mut self) -> Option<Self::Event> {
                <$ty>::poll_event(self)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                <$ty>::poll_timeout(self)
            }
            fn is_final($e: &Self::Event) -> bool {
                $final
            }
        }
    };
}

client_machine!(Client, ClientEvent, |e| matches!(e, ClientEvent::Closed(_)));
client_machine!(crate::sio::Manager, crate::sio::ClientEvent, |e| matches!(
    e,
    crate::sio::ClientEvent::Closed
));

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

/// A client machine driven over a [`Connector`] and a [`Clock`].
pub struct Pilot<M, K: Connector, C: Clock> {
    client: M,
    connector: K,
    clock: C,
    host: String,
    requests: Vec<(RequestId, Pending<(u16, Bytes)>)>,
    connecting: Vec<Opening<K, C>>,
    sockets: Vec<(WsId, WebSocket<K::Io, C>)>,
    rng: crate::rand::Rng,
    finished: bool,
}

/// An Engine.IO client session over a [`Connector`] and a [`Clock`].
pub type EioClient<K, C> = Pilot<Client, K, C>;

impl<M: std::fmt::Debug, K: Connector, C: Clock> std::fmt::Debug for Pilot<M, K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pilot")
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
        Self::with_machine(client, connector, clock, host, seed)
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
}

impl<M, K, C> Pilot<M, K, C>
where
    M: ClientMachine,
    K: Connector,
    C: Clock + Default + Send + 'static,
{
    /// Drives `client` with connections from `connector` to `host` (the `Host`
    /// header value); `seed` seeds the WebSocket masking keys.
    pub fn with_machine(client: M, connector: K, clock: C, host: &str, seed: [u8; 32]) -> Self {
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

    /// The machine.
    pub fn machine(&mut self) -> &mut M {
        &mut self.client
    }

    /// The current time on the pilot's clock.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// The next event; `None` after the final one once everything is flushed.
    pub async fn recv(&mut self) -> Option<M::Event> {
        poll_fn(|cx| self.poll_event(cx)).await
    }

    /// Polls for the next event (see [`recv`](Self::recv)).
    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<M::Event>> {
        loop {
            self.start_actions();
            if let Some(event) = self.client.poll_event() {
                if M::is_final(&event) {
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
