//! The Engine.IO v4 client, sans-IO.
//!
//! The client decides *what* to do; its driver does the I/O. It asks for HTTP requests
//! ([`Action::Http`], answered with [`Client::handle_http_response`] or
//! [`Client::handle_http_failed`]) and for a WebSocket ([`Action::OpenWs`], then
//! [`Client::handle_ws_opened`], [`Client::handle_ws_message`],
//! [`Client::handle_ws_closed`]); the WebSocket protocol itself is the driver's
//! (`ws::Connection` in the client role). Reconnection is left to the caller: a closed
//! client stays closed.
//!
//! Flow: handshake over polling (or straight over WebSocket), a long-polling GET always
//! in flight, POSTs carrying what the application sends, answers to the server's pings,
//! and — when the server offers it — the upgrade: open a WebSocket with the session id,
//! `2probe` → `3probe`, stop polling and let the last GET come back, `5`, then
//! everything goes over the WebSocket.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::packet::{decode_payload, encode_payload, Data, Packet, PacketType, Protocol};
use crate::ws::Message;

/// Client options.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The server's Engine.IO path (default `/engine.io/`).
    pub path: String,
    /// Start with long-polling (default true); otherwise straight over WebSocket.
    pub polling: bool,
    /// Use WebSocket (to upgrade to, or from the start; default true).
    pub websocket: bool,
    /// Extra query parameters for every request.
    pub query: Vec<(String, String)>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            path: "/engine.io/".into(),
            polling: true,
            websocket: true,
            query: Vec::new(),
        }
    }
}

impl ClientConfig {
    /// Sets which transports to use.
    pub fn transports(mut self, polling: bool, websocket: bool) -> Self {
        self.polling = polling;
        self.websocket = websocket;
        self
    }

    /// Sets [`ClientConfig::path`] (a trailing `/` is added if missing).
    pub fn path(mut self, path: &str) -> Self {
        self.path = super::with_trailing_slash(path);
        self
    }

    /// Adds a query parameter to every request (socket.io-client's `query`: a token,
    /// say). The URL's own query parameters are added the same way.
    pub fn query(mut self, key: &str, value: &str) -> Self {
        self.query.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Adds the query parameters of `target` (a URL's path and query).
    pub fn query_of(mut self, target: &str) -> Self {
        if let Some((_, query)) = target.split_once('?') {
            self.query.extend(
                crate::http::query_pairs(query).map(|(k, v)| (k.into_owned(), v.into_owned())),
            );
        }
        self
    }
}

/// An HTTP request the client wants made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(u64);

/// A WebSocket the client wants opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WsId(u64);

/// I/O for the driver to carry out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Make this HTTP request.
    Http {
        /// Report the outcome under this id.
        id: RequestId,
        /// `GET` or `POST`.
        method: &'static str,
        /// Path and query.
        target: String,
        /// The body (POST).
        body: Bytes,
    },
    /// Open a WebSocket to this target (path and query).
    OpenWs {
        /// Report under this id.
        id: WsId,
        /// Path and query.
        target: String,
    },
    /// Send a message on a WebSocket.
    SendWs {
        /// Which one.
        id: WsId,
        /// What.
        message: Message,
    },
    /// Close a WebSocket.
    CloseWs(WsId),
}

/// What the server said in its open packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenInfo {
    /// The session id.
    pub sid: String,
    /// Transports the server offers to upgrade to.
    pub upgrades: Vec<String>,
    /// Ping interval.
    pub ping_interval: Duration,
    /// Ping timeout.
    pub ping_timeout: Duration,
    /// Largest payload the server accepts.
    pub max_payload: usize,
}

/// Why a client closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCloseReason {
    /// [`Client::close`] was called.
    ClientClose,
    /// The server closed the session (close packet, or its transport closed).
    TransportClose,
    /// A request failed or got an error status.
    TransportError,
    /// No ping from the server within pingInterval + pingTimeout.
    PingTimeout,
    /// The server sent something that does not parse.
    ParseError,
}

impl ClientCloseReason {
    /// The reference client's wording.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ClientClose => "forced close",
            Self::TransportClose => "transport close",
            Self::TransportError => "transport error",
            Self::PingTimeout => "ping timeout",
            Self::ParseError => "parse error",
        }
    }
}

/// Something that happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The session is open.
    Open(Box<OpenInfo>),
    /// A message from the server.
    Message(Data),
    /// The session moved to WebSocket.
    Upgraded,
    /// The session ended; nothing follows.
    Closed(ClientCloseReason),
}

/// [`Client::send`] on a closed client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClosedError;

impl fmt::Display for ClosedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the Engine.IO client is closed")
    }
}

impl std::error::Error for ClosedError {}

#[derive(Debug, PartialEq, Eq)]
enum Stage {
    /// Waiting for the open packet.
    Opening,
    Open,
    Closed,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum UpgradeStage {
    Connecting,
    Probing,
    /// Probe answered: polling stops; waiting for in-flight requests to come back.
    Pausing,
}

/// An Engine.IO v4 client session.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    stage: Stage,
    sid: Option<String>,
    info: Option<OpenInfo>,
    /// The WebSocket in use as the transport, once upgraded or when polling is off.
    ws: Option<WsId>,
    upgrade: Option<(WsId, UpgradeStage)>,
    get: Option<RequestId>,
    post: Option<RequestId>,
    buffer: Vec<Packet>,
    actions: VecDeque<Action>,
    events: VecDeque<ClientEvent>,
    ping_deadline: Option<Instant>,
    next_id: u64,
}

impl Client {
    /// A client; its first action (the handshake request) is queued at once.
    pub fn new(config: ClientConfig, now: Instant) -> Self {
        Self::continuing(config, now, 0)
    }

    /// A client whose request and WebSocket ids come after `last_id` (the
    /// [`last_id`](Self::last_id) of the client it replaces), so that late outcomes for
    /// an earlier client's I/O can never be taken for this one's.
    pub fn continuing(config: ClientConfig, _now: Instant, last_id: u64) -> Self {
        let mut client = Self {
            config,
            stage: Stage::Opening,
            sid: None,
            info: None,
            ws: None,
            upgrade: None,
            get: None,
            post: None,
            buffer: Vec::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            ping_deadline: None,
            next_id: last_id,
        };
        if client.config.polling {
            client.start_poll();
        } else {
            let id = client.ws_id();
            client.ws = Some(id);
            let target = client.target("websocket");
            client.actions.push_back(Action::OpenWs { id, target });
        }
        client
    }

    /// The session id, once open.
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    /// The last request or WebSocket id handed out.
    pub fn last_id(&self) -> u64 {
        self.next_id
    }

    /// The session is closed (nothing more will happen).
    pub fn is_closed(&self) -> bool {
        self.stage == Stage::Closed
    }

    /// Whether the session uses WebSocket now.
    pub fn is_websocket(&self) -> bool {
        self.ws.is_some()
    }

    fn target(&self, transport: &str) -> String {
        let mut t = format!("{}?EIO=4&transport={transport}", self.config.path);
        if let Some(sid) = &self.sid {
            t.push_str("&sid=");
            t.push_str(sid);
        }
        for (k, v) in &self.config.query {
            t.push('&');
            t.push_str(&encode_component(k));
            t.push('=');
            t.push_str(&encode_component(v));
        }
        t
    }

    fn request_id(&mut self) -> RequestId {
        self.next_id += 1;
        RequestId(self.next_id)
    }

    fn ws_id(&mut self) -> WsId {
        self.next_id += 1;
        WsId(self.next_id)
    }

    // ----------------------------------------------------------------------------------
    // Inputs
    // ----------------------------------------------------------------------------------

    /// The outcome of an [`Action::Http`].
    pub fn handle_http_response(&mut self, now: Instant, id: RequestId, status: u16, body: Bytes) {
        if self.stage == Stage::Closed {
            return;
        }
        let was_get = self.get == Some(id);
        if was_get {
            self.get = None;
        } else if self.post == Some(id) {
            self.post = None;
        } else {
            return;
        }
        if status != 200 {
            return self.end(ClientCloseReason::TransportError);
        }
        if was_get {
            match decode_payload(&body, Protocol::V4) {
                Ok(packets) => {
                    for p in packets {
                        self.on_packet(now, p);
                        if self.stage == Stage::Closed {
                            return;
                        }
                    }
                }
                Err(_) => return self.end(ClientCloseReason::ParseError),
            }
        }
        self.schedule(now);
    }

    /// An [`Action::Http`] could not be carried out (connection refused, reset...).
    pub fn handle_http_failed(&mut self, _now: Instant, id: RequestId) {
        if self.get == Some(id) || self.post == Some(id) {
            self.end(ClientCloseReason::TransportError);
        }
    }

    /// An [`Action::OpenWs`] completed its handshake.
    pub fn handle_ws_opened(&mut self, _now: Instant, id: WsId) {
        if let Some((ws, stage @ UpgradeStage::Connecting)) = &mut self.upgrade {
            if *ws == id {
                *stage = UpgradeStage::Probing;
                self.actions.push_back(Action::SendWs {
                    id,
                    message: Message::text("2probe"),
                });
            }
        }
    }

    /// A message arrived on a WebSocket.
    pub fn handle_ws_message(&mut self, now: Instant, id: WsId, message: &Message) {
        if self.stage == Stage::Closed {
            return;
        }
        let packet = Packet::from_ws(message, Protocol::V4);
        if self.upgrade.is_some_and(|(ws, _)| ws == id) {
            match packet {
                Ok(Packet {
                    kind: PacketType::Pong,
                    data: Data::Text(t),
                }) if t.as_str() == "probe" => {
                    self.upgrade = Some((id, UpgradeStage::Pausing));
                    self.schedule(now);
                }
                _ => self.abandon_upgrade(),
            }
            return;
        }
        if self.ws != Some(id) {
            return;
        }
        match packet {
            Ok(p) => {
                self.on_packet(now, p);
                self.schedule(now);
            }
            Err(_) => self.end(ClientCloseReason::ParseError),
        }
    }

    /// A WebSocket closed (or could not be opened).
    pub fn handle_ws_closed(&mut self, _now: Instant, id: WsId) {
        if self.upgrade.is_some_and(|(ws, _)| ws == id) {
            self.upgrade = None;
            return;
        }
        if self.ws == Some(id) && self.stage != Stage::Closed {
            self.ws = None;
            self.end(ClientCloseReason::TransportClose);
        }
    }

    /// A deadline from [`poll_timeout`](Self::poll_timeout) passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ping_deadline.is_some_and(|d| d <= now) && self.stage == Stage::Open {
            self.end(ClientCloseReason::PingTimeout);
        }
    }

    // ----------------------------------------------------------------------------------
    // Application
    // ----------------------------------------------------------------------------------

    /// Sends a message (queued until the session is open).
    pub fn send(&mut self, now: Instant, data: Data) -> Result<(), ClosedError> {
        if self.stage == Stage::Closed {
            return Err(ClosedError);
        }
        self.buffer.push(Packet::message(data));
        self.schedule(now);
        Ok(())
    }

    /// Closes the session: a close packet, then the transport.
    pub fn close(&mut self, _now: Instant) {
        if self.stage == Stage::Closed {
            return;
        }
        if self.stage == Stage::Open {
            let close = Packet::bare(PacketType::Close);
            match self.ws {
                Some(id) => self.actions.push_back(Action::SendWs {
                    id,
                    message: close.to_ws(Protocol::V4),
                }),
                None => {
                    let mut packets = std::mem::take(&mut self.buffer);
                    packets.push(close);
                    self.post_packets(&packets);
                }
            }
        }
        self.end(ClientCloseReason::ClientClose);
    }

    // ----------------------------------------------------------------------------------
    // Outputs
    // ----------------------------------------------------------------------------------

    /// The next I/O to carry out.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ping_deadline
    }

    // ----------------------------------------------------------------------------------
    // Internals
    // ----------------------------------------------------------------------------------

    fn on_packet(&mut self, now: Instant, packet: Packet) {
        match packet.kind {
            PacketType::Open if self.stage == Stage::Opening => match parse_open(&packet.data) {
                Some(info) => {
                    self.stage = Stage::Open;
                    self.sid = Some(info.sid.clone());
                    self.ping_deadline = Some(now + info.ping_interval + info.ping_timeout);
                    let upgrade = self.config.polling
                        && self.config.websocket
                        && self.ws.is_none()
                        && info.upgrades.iter().any(|u| u == "websocket");
                    self.events
                        .push_back(ClientEvent::Open(Box::new(info.clone())));
                    self.info = Some(info);
                    if upgrade {
                        let id = self.ws_id();
                        let target = self.target("websocket");
                        self.upgrade = Some((id, UpgradeStage::Connecting));
                        self.actions.push_back(Action::OpenWs { id, target });
                    }
                }
                None => self.end(ClientCloseReason::ParseError),
            },
            PacketType::Ping => {
                if let Some(info) = &self.info {
                    self.ping_deadline = Some(now + info.ping_interval + info.ping_timeout);
                }
                // Pongs go before queued messages: they keep the session alive.
                self.buffer.insert(
                    0,
                    Packet {
                        kind: PacketType::Pong,
                        data: packet.data,
                    },
                );
            }
            PacketType::Message if self.stage == Stage::Open => {
                self.events.push_back(ClientEvent::Message(packet.data))
            }
            PacketType::Close => self.end(ClientCloseReason::TransportClose),
            PacketType::Noop
            | PacketType::Pong
            | PacketType::Upgrade
            | PacketType::Open
            | PacketType::Message => {}
        }
    }

    /// Issues whatever requests the current state calls for.
    fn schedule(&mut self, now: Instant) {
        let _ = now;
        if self.stage != Stage::Open {
            return;
        }
        if let Some(id) = self.ws {
            for p in std::mem::take(&mut self.buffer) {
                self.actions.push_back(Action::SendWs {
                    id,
                    message: p.to_ws(Protocol::V4),
                });
            }
            return;
        }
        let pausing = self
            .upgrade
            .is_some_and(|(_, s)| s == UpgradeStage::Pausing);
        if pausing {
            if self.get.is_none() && self.post.is_none() {
                // Nothing in flight on polling any more: switch.
                let Some((id, _)) = self.upgrade.take() else {
                    return;
                };
                self.ws = Some(id);
                self.actions.push_back(Action::SendWs {
                    id,
                    message: Message::text("5"),
                });
                self.events.push_back(ClientEvent::Upgraded);
                self.schedule(now);
            }
            return;
        }
        if self.post.is_none() && !self.buffer.is_empty() {
            let packets = std::mem::take(&mut self.buffer);
            self.post = Some(self.post_packets(&packets));
        }
        if self.get.is_none() {
            self.start_poll();
        }
    }

    /// Queues the long-polling GET.
    fn start_poll(&mut self) {
        let id = self.request_id();
        self.get = Some(id);
        let target = self.target("polling");
        self.actions.push_back(Action::Http {
            id,
            method: "GET",
            target,
            body: Bytes::new(),
        });
    }

    /// Queues a POST carrying `packets`.
    fn post_packets(&mut self, packets: &[Packet]) -> RequestId {
        let id = self.request_id();
        let target = self.target("polling");
        let body = encode_payload(packets, Protocol::V4);
        self.actions.push_back(Action::Http {
            id,
            method: "POST",
            target,
            body,
        });
        id
    }

    fn abandon_upgrade(&mut self) {
        if let Some((id, _)) = self.upgrade.take() {
            self.actions.push_back(Action::CloseWs(id));
        }
    }

    fn end(&mut self, reason: ClientCloseReason) {
        if self.stage == Stage::Closed {
            return;
        }
        self.stage = Stage::Closed;
        self.ping_deadline = None;
        for id in self
            .ws
            .take()
            .into_iter()
            .chain(self.upgrade.take().map(|(id, _)| id))
        {
            self.actions.push_back(Action::CloseWs(id));
        }
        self.events.push_back(ClientEvent::Closed(reason));
    }
}

fn parse_open(data: &Data) -> Option<OpenInfo> {
    let Data::Text(text) = data else { return None };
    let v: serde_json::Value = serde_json::from_str(text.as_str()).ok()?;
    Some(OpenInfo {
        sid: v.get("sid")?.as_str()?.to_owned(),
        upgrades: v
            .get("upgrades")?
            .as_array()?
            .iter()
            .filter_map(|u| u.as_str().map(str::to_owned))
            .collect(),
        ping_interval: Duration::from_millis(v.get("pingInterval")?.as_u64()?),
        ping_timeout: Duration::from_millis(v.get("pingTimeout")?.as_u64()?),
        max_payload: v
            .get("maxPayload")
            .and_then(|m| m.as_u64())
            .unwrap_or(1_000_000) as usize,
    })
}

fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
