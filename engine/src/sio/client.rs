//! The Socket.IO client, sans-IO: a [`Manager`] owns one Engine.IO client at a time
//! (a new one for each reconnection) and the namespace sockets multiplexed over it.
//!
//! Like [`eio::Client`], it is "actions out, outcomes in": the driver carries out the
//! [`eio::Action`]s from [`Manager::poll_action`] and reports their outcomes with the
//! `handle_*` methods; the Manager adds Socket.IO on top (namespaces, CONNECT with
//! auth, events, acks with timeouts, binary attachments), reconnection with
//! exponential backoff and jitter, a bounded buffer for emits made while
//! disconnected, and connection-state recovery (`pid` and `offset` sent back on
//! reconnection).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Map, Value};

use super::packet::{DecodeLimits, Decoder, Packet, PacketType, Parser, Payload};
use super::server::{AckError, AckId};
use crate::eio::{self, Action, ClientCloseReason, RequestId, WsId};
use crate::rand::Rng;
use crate::ws::Message;
use crate::IdSet;

/// Client options, with socket.io-client's names and defaults.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The Engine.IO options; the path defaults to `/socket.io/`.
    pub eio: eio::ClientConfig,
    /// Reconnect after an unexpected disconnection (default true).
    pub reconnection: bool,
    /// Give up after this many attempts (default: never).
    pub reconnection_attempts: Option<u32>,
    /// First delay between attempts (default 1 s), doubled each attempt...
    pub reconnection_delay: Duration,
    /// ...up to this (default 5 s).
    pub reconnection_delay_max: Duration,
    /// Jitter: each delay is moved by up to this fraction, up or down (default 0.5).
    pub randomization_factor: f64,
    /// Most packets buffered per namespace while it is not connected (default 1024);
    /// more: [`ClientError::BufferFull`].
    pub max_buffered: usize,
    /// Bounds on binary attachments from the server.
    pub decode_limits: DecodeLimits,
    /// How packets are encoded: the server's choice (default: socket.io-parser's).
    pub parser: Parser,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            eio: eio::ClientConfig::default().path("/socket.io/"),
            reconnection: true,
            reconnection_attempts: None,
            reconnection_delay: Duration::from_millis(1000),
            reconnection_delay_max: Duration::from_millis(5000),
            randomization_factor: 0.5,
            max_buffered: 1024,
            decode_limits: DecodeLimits::default(),
            parser: Parser::Default,
        }
    }
}

impl ClientConfig {
    /// Sets the Engine.IO options (keep the path `/socket.io/` unless you mean it).
    pub fn eio(mut self, eio: eio::ClientConfig) -> Self {
        self.eio = eio;
        self
    }

    /// Sets [`ClientConfig::parser`].
    pub fn parser(mut self, parser: Parser) -> Self {
        self.parser = parser;
        self
    }

    /// Turns reconnection on or off.
    pub fn reconnection(mut self, yes: bool) -> Self {
        self.reconnection = yes;
        self
    }

    /// Sets the delays between attempts (first, and the cap).
    pub fn reconnection_delay(mut self, first: Duration, max: Duration) -> Self {
        self.reconnection_delay = first;
        self.reconnection_delay_max = max;
        self
    }

    /// Gives up after `attempts` failed attempts.
    pub fn reconnection_attempts(mut self, attempts: u32) -> Self {
        self.reconnection_attempts = Some(attempts);
        self
    }

    /// Sets [`ClientConfig::randomization_factor`] (0 for fixed delays).
    pub fn randomization_factor(mut self, factor: f64) -> Self {
        self.randomization_factor = factor.clamp(0.0, 1.0);
        self
    }
}

/// Why a namespace socket disconnected, in socket.io-client's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientDisconnectReason {
    /// The server disconnected the socket (no automatic reconnection).
    IoServerDisconnect,
    /// The application disconnected it.
    IoClientDisconnect,
    /// The server stopped pinging.
    PingTimeout,
    /// The connection was closed.
    TransportClose,
    /// The connection failed.
    TransportError,
    /// The server sent something that does not parse.
    ParseError,
}

impl ClientDisconnectReason {
    /// socket.io-client's wording.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::IoServerDisconnect => "io server disconnect",
            Self::IoClientDisconnect => "io client disconnect",
            Self::PingTimeout => "ping timeout",
            Self::TransportClose => "transport close",
            Self::TransportError => "transport error",
            Self::ParseError => "parse error",
        }
    }

    fn from_eio(reason: ClientCloseReason) -> Self {
        match reason {
            ClientCloseReason::ClientClose => Self::IoClientDisconnect,
            ClientCloseReason::TransportClose => Self::TransportClose,
            ClientCloseReason::TransportError => Self::TransportError,
            ClientCloseReason::PingTimeout => Self::PingTimeout,
            ClientCloseReason::ParseError => Self::ParseError,
        }
    }
}

impl fmt::Display for ClientDisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened, for the application.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    /// The Engine.IO connection is open (first time or after a reconnection).
    Open,
    /// A namespace socket is connected.
    Connect {
        /// The namespace.
        nsp: Arc<str>,
        /// Its socket id.
        sid: String,
        /// The server restored its state (same id, rooms, missed packets).
        recovered: bool,
    },
    /// A namespace refused the connection (middleware, unknown namespace), or the
    /// connection could not be made.
    ConnectError {
        /// The namespace.
        nsp: Arc<str>,
        /// The message.
        message: String,
        /// The data the server added.
        data: Option<Value>,
    },
    /// A namespace socket disconnected.
    Disconnect {
        /// The namespace.
        nsp: Arc<str>,
        /// Why.
        reason: ClientDisconnectReason,
    },
    /// An event from the server.
    Event {
        /// The namespace.
        nsp: Arc<str>,
        /// The event name.
        name: String,
        /// The arguments (with the recovery offset last, as the server sent it).
        payload: Payload,
        /// Answer with [`Manager::ack`] and this id.
        ack: Option<u64>,
    },
    /// The answer to an [`Manager::emit_with_ack`], or why there is none.
    Ack {
        /// The namespace.
        nsp: Arc<str>,
        /// The request.
        ack: AckId,
        /// The answer.
        result: Result<Payload, AckError>,
    },
    /// A reconnection attempt starts (1, 2, ...).
    ReconnectAttempt(u32),
    /// A reconnection attempt failed.
    ReconnectError,
    /// Reconnected after this many attempts.
    Reconnect(u32),
    /// [`ClientConfig::reconnection_attempts`] are used up.
    ReconnectFailed,
    /// The Engine.IO connection closed.
    Close(ClientCloseReason),
    /// The manager is done: closed by the application, every namespace left, or
    /// reconnection given up. Nothing follows.
    Closed,
}

/// A call the manager cannot carry out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The namespace was never opened with [`Manager::socket`].
    UnknownNamespace,
    /// Too many packets wait for the namespace to connect.
    BufferFull,
    /// The manager is closed.
    Closed,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnknownNamespace => "no socket for that namespace",
            Self::BufferFull => "too many packets wait for the namespace to connect",
            Self::Closed => "the Socket.IO client is closed",
        })
    }
}

impl std::error::Error for ClientError {}

#[derive(Debug, Default)]
struct Namespace {
    auth: Value,
    /// The application wants it connected.
    active: bool,
    connected: bool,
    sid: Option<String>,
    pid: Option<String>,
    offset: Option<String>,
    buffer: VecDeque<Packet>,
    /// Events that came before the CONNECT answer (a recovering server sends the
    /// missed packets first), delivered right after it.
    early: VecDeque<(String, Payload, Option<u64>)>,
    acks: IdSet<u64>,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Stage {
    /// Nothing opened yet.
    Idle,
    /// An Engine.IO client is opening.
    Opening,
    Open,
    /// Waiting to reconnect.
    Waiting,
    Closed,
}

/// A Socket.IO client manager: one connection to a server, any number of namespaces.
#[derive(Debug)]
pub struct Manager {
    config: ClientConfig,
    rng: Rng,
    eio: Option<eio::Client>,
    last_id: u64,
    stage: Stage,
    reconnecting: bool,
    attempts: u32,
    reconnect_at: Option<Instant>,
    namespaces: BTreeMap<Arc<str>, Namespace>,
    decoder: Decoder,
    events: VecDeque<ClientEvent>,
    timers: BinaryHeap<Reverse<(Instant, u64, Arc<str>)>>,
    next_ack: u64,
}

impl Manager {
    /// A manager; nothing happens until [`socket`](Self::socket) opens a namespace.
    /// `seed` seeds the reconnection jitter.
    pub fn new(config: ClientConfig, seed: [u8; 32]) -> Self {
        let decoder = Decoder::with_parser(config.decode_limits, config.parser);
        Self {
            config,
            rng: Rng::from_seed(seed),
            eio: None,
            last_id: 0,
            stage: Stage::Idle,
            reconnecting: false,
            attempts: 0,
            reconnect_at: None,
            namespaces: BTreeMap::new(),
            decoder,
            events: VecDeque::new(),
            timers: BinaryHeap::new(),
            next_ack: 0,
        }
    }

    /// The options.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// A namespace's socket id while it is connected.
    pub fn sid(&self, nsp: &str) -> Option<&str> {
        self.namespaces
            .get(nsp)
            .filter(|n| n.connected)
            .and_then(|n| n.sid.as_deref())
    }

    /// The namespace is connected.
    pub fn is_connected(&self, nsp: &str) -> bool {
        self.namespaces.get(nsp).is_some_and(|n| n.connected)
    }

    /// The application wants the namespace connected (it has not been refused, nor
    /// disconnected on purpose, and the manager is not done).
    pub fn is_active(&self, nsp: &str) -> bool {
        self.stage != Stage::Closed && self.namespaces.get(nsp).is_some_and(|n| n.active)
    }

    /// The Engine.IO connection is open.
    pub fn is_open(&self) -> bool {
        self.stage == Stage::Open
    }

    /// The manager is done (see [`ClientEvent::Closed`]).
    pub fn is_closed(&self) -> bool {
        self.stage == Stage::Closed
    }

    // ----------------------------------------------------------------------------------
    // Application
    // ----------------------------------------------------------------------------------

    /// Connects namespace `nsp` with `auth` (an object, or `Null` for none): opens the
    /// connection if needed, and reconnects the namespace after a disconnection.
    pub fn socket(&mut self, now: Instant, nsp: &str, auth: Value) -> Result<(), ClientError> {
        if self.stage == Stage::Closed {
            return Err(ClientError::Closed);
        }
        let key: Arc<str> = Arc::from(nsp);
        let ns = self.namespaces.entry(key.clone()).or_default();
        ns.auth = auth;
        if ns.active {
            return Ok(());
        }
        ns.active = true;
        match self.stage {
            Stage::Idle => self.start_engine(now),
            Stage::Open => self.send_connect(now, &key),
            Stage::Opening | Stage::Waiting | Stage::Closed => {}
        }
        Ok(())
    }

    /// Emits an event (buffered while the namespace is not connected).
    pub fn emit(
        &mut self,
        now: Instant,
        nsp: &str,
        name: &str,
        payload: Payload,
    ) -> Result<(), ClientError> {
        self.emit_packet(now, nsp, Packet::event(Arc::from(nsp), name, payload))
    }

    /// Emits an event and asks for an ack: answered by [`ClientEvent::Ack`], an
    /// [`AckError::Timeout`] after `timeout` (counted from now, buffered or not), or an
    /// [`AckError::Disconnected`] if the namespace disconnects first.
    pub fn emit_with_ack(
        &mut self,
        now: Instant,
        nsp: &str,
        name: &str,
        payload: Payload,
        timeout: Option<Duration>,
    ) -> Result<AckId, ClientError> {
        let id = self.next_ack;
        let mut packet = Packet::event(Arc::from(nsp), name, payload);
        packet.id = Some(id);
        self.emit_packet(now, nsp, packet)?;
        self.next_ack += 1;
        if let Some(ns) = self.namespaces.get_mut(nsp) {
            ns.acks.insert(id);
        }
        if let Some(t) = timeout {
            self.timers.push(Reverse((now + t, id, Arc::from(nsp))));
        }
        Ok(AckId::from_raw(id))
    }

    fn emit_packet(&mut self, now: Instant, nsp: &str, packet: Packet) -> Result<(), ClientError> {
        if self.stage == Stage::Closed {
            return Err(ClientError::Closed);
        }
        let limit = self.config.max_buffered;
        let ns = self
            .namespaces
            .get_mut(nsp)
            .ok_or(ClientError::UnknownNamespace)?;
        if ns.connected {
            self.send_packet(now, &packet);
            return Ok(());
        }
        if ns.buffer.len() >= limit {
            return Err(ClientError::BufferFull);
        }
        ns.buffer.push_back(packet);
        Ok(())
    }

    /// Answers a server event that asked for an ack.
    pub fn ack(
        &mut self,
        now: Instant,
        nsp: &str,
        id: u64,
        payload: Payload,
    ) -> Result<(), ClientError> {
        if !self.is_connected(nsp) {
            return Err(ClientError::UnknownNamespace);
        }
        self.send_packet(now, &Packet::ack(Arc::from(nsp), id, payload));
        Ok(())
    }

    /// Leaves namespace `nsp` (DISCONNECT packet; `io client disconnect`). When no
    /// namespace is left, the connection closes and the manager is done.
    pub fn disconnect(&mut self, now: Instant, nsp: &str) {
        let Some(ns) = self.namespaces.get_mut(nsp) else {
            return;
        };
        let was_connected = ns.connected;
        ns.active = false;
        ns.connected = false;
        ns.buffer.clear();
        let key: Arc<str> = Arc::from(nsp);
        if was_connected {
            self.send_packet(now, &Packet::new(PacketType::Disconnect, key.clone()));
            self.events.push_back(ClientEvent::Disconnect {
                nsp: key.clone(),
                reason: ClientDisconnectReason::IoClientDisconnect,
            });
        }
        self.fail_acks(&key, AckError::Disconnected);
        self.close_if_unused(now);
    }

    /// Closes everything: every namespace leaves, the connection closes, no
    /// reconnection.
    pub fn close(&mut self, now: Instant) {
        let names: Vec<Arc<str>> = self.namespaces.keys().cloned().collect();
        for nsp in names {
            self.disconnect(now, &nsp);
        }
        self.finish(now);
    }

    fn close_if_unused(&mut self, now: Instant) {
        if !self.namespaces.values().any(|n| n.active) {
            self.finish(now);
        }
    }

    fn finish(&mut self, now: Instant) {
        if self.stage == Stage::Closed {
            return;
        }
        self.stage = Stage::Closed;
        self.reconnect_at = None;
        if let Some(e) = &mut self.eio {
            e.close(now);
        }
        let names: Vec<Arc<str>> = self.namespaces.keys().cloned().collect();
        for nsp in names {
            self.fail_acks(&nsp, AckError::Disconnected);
        }
        self.events.push_back(ClientEvent::Closed);
    }

    // ----------------------------------------------------------------------------------
    // I/O outcomes (forwarded to the current Engine.IO client)
    // ----------------------------------------------------------------------------------

    /// See [`eio::Client::handle_http_response`].
    pub fn handle_http_response(&mut self, now: Instant, id: RequestId, status: u16, body: Bytes) {
        if let Some(e) = &mut self.eio {
            e.handle_http_response(now, id, status, body);
        }
        self.pump(now);
    }

    /// See [`eio::Client::handle_http_failed`].
    pub fn handle_http_failed(&mut self, now: Instant, id: RequestId) {
        if let Some(e) = &mut self.eio {
            e.handle_http_failed(now, id);
        }
        self.pump(now);
    }

    /// See [`eio::Client::handle_ws_opened`].
    pub fn handle_ws_opened(&mut self, now: Instant, id: WsId) {
        if let Some(e) = &mut self.eio {
            e.handle_ws_opened(now, id);
        }
        self.pump(now);
    }

    /// See [`eio::Client::handle_ws_message`].
    pub fn handle_ws_message(&mut self, now: Instant, id: WsId, message: &Message) {
        if let Some(e) = &mut self.eio {
            e.handle_ws_message(now, id, message);
        }
        self.pump(now);
    }

    /// See [`eio::Client::handle_ws_closed`].
    pub fn handle_ws_closed(&mut self, now: Instant, id: WsId) {
        if let Some(e) = &mut self.eio {
            e.handle_ws_closed(now, id);
        }
        self.pump(now);
    }

    /// Fires due deadlines: the Engine.IO client's, ack timeouts, the reconnection.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(e) = &mut self.eio {
            e.handle_timeout(now);
        }
        self.pump(now);
        while let Some(Reverse((at, _, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, id, nsp))) = self.timers.pop() else {
                break;
            };
            let Some(ns) = self.namespaces.get_mut(&nsp) else {
                continue;
            };
            if ns.acks.remove(&id) {
                ns.buffer.retain(|p| p.id != Some(id));
                self.events.push_back(ClientEvent::Ack {
                    nsp,
                    ack: AckId::from_raw(id),
                    result: Err(AckError::Timeout),
                });
            }
        }
        if self.stage == Stage::Waiting && self.reconnect_at.is_some_and(|t| t <= now) {
            self.reconnect_at = None;
            self.events
                .push_back(ClientEvent::ReconnectAttempt(self.attempts));
            self.start_engine(now);
        }
    }

    /// The next I/O to carry out.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.eio.as_mut().and_then(|e| e.poll_action())
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// The next deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ack = self.timers.peek().map(|Reverse((at, _, _))| *at);
        let eio = self.eio.as_ref().and_then(|e| e.poll_timeout());
        [ack, eio, self.reconnect_at].into_iter().flatten().min()
    }

    // ----------------------------------------------------------------------------------
    // Internals
    // ----------------------------------------------------------------------------------

    fn start_engine(&mut self, now: Instant) {
        let last = self.eio.as_ref().map_or(self.last_id, |e| e.last_id());
        self.eio = Some(eio::Client::continuing(self.config.eio.clone(), now, last));
        self.decoder = Decoder::with_parser(self.config.decode_limits, self.config.parser);
        self.stage = Stage::Opening;
    }

    fn send_packet(&mut self, now: Instant, packet: &Packet) {
        if let Some(e) = &mut self.eio {
            for data in packet.encode_with(self.config.parser) {
                let _ = e.send(now, data);
            }
        }
    }

    fn send_connect(&mut self, now: Instant, nsp: &Arc<str>) {
        let Some(ns) = self.namespaces.get(nsp) else {
            return;
        };
        let mut auth = match &ns.auth {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        if let (Some(pid), Some(offset)) = (&ns.pid, &ns.offset) {
            auth.insert("pid".into(), Value::String(pid.clone()));
            auth.insert("offset".into(), Value::String(offset.clone()));
        }
        let mut packet = Packet::new(PacketType::Connect, nsp.clone());
        if !auth.is_empty() {
            packet.data = Some(Value::Object(auth));
        }
        self.send_packet(now, &packet);
    }

    fn pump(&mut self, now: Instant) {
        loop {
            let Some(event) = self.eio.as_mut().and_then(|e| e.poll_event()) else {
                return;
            };
            match event {
                eio::ClientEvent::Open(_) => {
                    if self.stage != Stage::Opening {
                        continue;
                    }
                    self.stage = Stage::Open;
                    if self.reconnecting {
                        self.reconnecting = false;
                        self.events.push_back(ClientEvent::Reconnect(self.attempts));
                    }
                    self.attempts = 0;
                    self.events.push_back(ClientEvent::Open);
                    let active: Vec<Arc<str>> = self
                        .namespaces
                        .iter()
                        .filter(|(_, n)| n.active)
                        .map(|(k, _)| k.clone())
                        .collect();
                    for nsp in active {
                        self.send_connect(now, &nsp);
                    }
                }
                eio::ClientEvent::Message(data) => match self.decoder.feed(data) {
                    Ok(Some(packet)) => self.on_packet(now, packet),
                    Ok(None) => {}
                    Err(_) => {
                        if let Some(e) = &mut self.eio {
                            e.close(now);
                        }
                        // The Closed event that follows says "forced close"; the
                        // namespaces hear "parse error".
                        self.engine_closed(now, ClientCloseReason::ParseError);
                    }
                },
                eio::ClientEvent::Upgraded => {}
                eio::ClientEvent::Closed(reason) => self.engine_closed(now, reason),
            }
        }
    }

    fn on_packet(&mut self, now: Instant, packet: Packet) {
        let nsp = packet.nsp.clone();
        let Some(ns) = self.namespaces.get_mut(&nsp) else {
            return;
        };
        match packet.kind {
            PacketType::Connect => {
                if !ns.active || ns.connected {
                    return;
                }
                let data = packet.data.unwrap_or(Value::Null);
                let sid = data
                    .get("sid")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_default();
                let pid = data.get("pid").and_then(Value::as_str).map(str::to_owned);
                let recovered = pid.is_some() && ns.pid == pid;
                ns.pid = pid;
                ns.sid = Some(sid.clone());
                ns.connected = true;
                let buffered: Vec<Packet> = ns.buffer.drain(..).collect();
                let early: Vec<_> = ns.early.drain(..).collect();
                self.events.push_back(ClientEvent::Connect {
                    nsp: nsp.clone(),
                    sid,
                    recovered,
                });
                for (name, payload, ack) in early {
                    self.deliver_event(&nsp, name, payload, ack);
                }
                for p in &buffered {
                    self.send_packet(now, p);
                }
            }
            PacketType::ConnectError => {
                ns.active = false;
                ns.buffer.clear();
                let (message, data) = match packet.data {
                    Some(Value::Object(mut m)) => (
                        m.remove("message")
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        m.remove("data"),
                    ),
                    Some(Value::String(s)) => (s, None),
                    _ => (String::new(), None),
                };
                self.events.push_back(ClientEvent::ConnectError {
                    nsp: nsp.clone(),
                    message,
                    data,
                });
                self.fail_acks(&nsp, AckError::Disconnected);
                self.close_if_unused(now);
            }
            PacketType::Event | PacketType::BinaryEvent => {
                let ack = packet.id;
                let Some((name, payload)) = packet.into_event() else {
                    return;
                };
                if !ns.connected {
                    if ns.active && ns.early.len() < self.config.max_buffered {
                        ns.early.push_back((name, payload, ack));
                    }
                    return;
                }
                self.deliver_event(&nsp, name, payload, ack);
            }
            PacketType::Ack | PacketType::BinaryAck => {
                let Some(id) = packet.id else { return };
                if ns.acks.remove(&id) {
                    self.events.push_back(ClientEvent::Ack {
                        nsp,
                        ack: AckId::from_raw(id),
                        result: Ok(packet.into_payload()),
                    });
                }
            }
            PacketType::Disconnect => {
                if !ns.connected {
                    return;
                }
                ns.connected = false;
                ns.active = false;
                self.events.push_back(ClientEvent::Disconnect {
                    nsp: nsp.clone(),
                    reason: ClientDisconnectReason::IoServerDisconnect,
                });
                self.fail_acks(&nsp, AckError::Disconnected);
                self.close_if_unused(now);
            }
        }
    }

    fn deliver_event(&mut self, nsp: &Arc<str>, name: String, payload: Payload, ack: Option<u64>) {
        if let Some(ns) = self.namespaces.get_mut(nsp) {
            // With recovery on, the last argument is the offset to resume from.
            if ns.pid.is_some() {
                if let Some(Value::String(offset)) = payload.values().last() {
                    ns.offset = Some(offset.clone());
                }
            }
        }
        self.events.push_back(ClientEvent::Event {
            nsp: nsp.clone(),
            name,
            payload,
            ack,
        });
    }

    fn fail_acks(&mut self, nsp: &Arc<str>, error: AckError) {
        let Some(ns) = self.namespaces.get_mut(nsp) else {
            return;
        };
        let mut ids: Vec<u64> = ns.acks.drain().collect();
        ids.sort_unstable();
        ns.buffer.retain(|p| p.id.is_none());
        for id in ids {
            self.events.push_back(ClientEvent::Ack {
                nsp: nsp.clone(),
                ack: AckId::from_raw(id),
                result: Err(error),
            });
        }
    }

    fn engine_closed(&mut self, now: Instant, reason: ClientCloseReason) {
        if matches!(self.stage, Stage::Closed | Stage::Waiting | Stage::Idle) {
            return;
        }
        let was_open = self.stage == Stage::Open;
        let names: Vec<Arc<str>> = self.namespaces.keys().cloned().collect();
        for nsp in &names {
            let Some(ns) = self.namespaces.get_mut(nsp) else {
                continue;
            };
            ns.early.clear();
            if ns.connected {
                ns.connected = false;
                self.events.push_back(ClientEvent::Disconnect {
                    nsp: nsp.clone(),
                    reason: ClientDisconnectReason::from_eio(reason),
                });
                self.fail_acks(nsp, AckError::Disconnected);
            } else if ns.active && !was_open && !self.reconnecting {
                self.events.push_back(ClientEvent::ConnectError {
                    nsp: nsp.clone(),
                    message: reason.as_str().to_owned(),
                    data: None,
                });
            }
        }
        self.events.push_back(ClientEvent::Close(reason));
        if self.reconnecting && !was_open {
            self.events.push_back(ClientEvent::ReconnectError);
        }
        let wanted = self.namespaces.values().any(|n| n.active);
        if !self.config.reconnection || !wanted {
            self.finish(now);
            return;
        }
        self.schedule_reconnect(now);
    }

    fn schedule_reconnect(&mut self, now: Instant) {
        if self
            .config
            .reconnection_attempts
            .is_some_and(|max| self.attempts >= max)
        {
            self.events.push_back(ClientEvent::ReconnectFailed);
            self.reconnecting = false;
            self.finish(now);
            return;
        }
        let delay = self.backoff();
        self.attempts += 1;
        self.reconnecting = true;
        self.stage = Stage::Waiting;
        self.reconnect_at = Some(now + delay);
    }

    /// socket.io-client's backoff: `delay × 2^attempts`, moved up or down by up to
    /// `randomization_factor` of itself, capped at `reconnection_delay_max`.
    fn backoff(&mut self) -> Duration {
        let base =
            self.config.reconnection_delay.as_secs_f64() * 2f64.powi(self.attempts.min(32) as i32);
        let r = f64::from(self.rng.next_u32()) / (f64::from(u32::MAX) + 1.0);
        let deviation = r * self.config.randomization_factor * base;
        let jittered = if (r * 10.0) as u32 & 1 == 0 {
            base - deviation
        } else {
            base + deviation
        };
        Duration::from_secs_f64(
            jittered
                .min(self.config.reconnection_delay_max.as_secs_f64())
                .max(0.0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A manager on a WebSocket-only connection that the test plays the server of.
    fn open_manager() -> (Manager, WsId, Instant) {
        let now = Instant::now();
        let config = ClientConfig::default().eio(
            eio::ClientConfig::default()
                .path("/socket.io/")
                .transports(false, true),
        );
        let mut m = Manager::new(config, [1; 32]);
        m.socket(now, "/", Value::Null).expect("open");
        let Some(Action::OpenWs { id, .. }) = m.poll_action() else {
            panic!("a WebSocket first")
        };
        m.handle_ws_opened(now, id);
        let open = r#"0{"sid":"e","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        m.handle_ws_message(now, id, &Message::text(open));
        (m, id, now)
    }

    #[test]
    fn events_before_the_connect_answer_follow_it() {
        let (mut m, id, now) = open_manager();
        assert!(matches!(
            m.poll_action(),
            Some(Action::SendWs { message, .. }) if message == Message::text("40")
        ));
        // A recovering server replays missed packets before answering CONNECT.
        m.handle_ws_message(now, id, &Message::text(r#"42["missed","off-1"]"#));
        assert!(!m.is_connected("/"));
        m.handle_ws_message(now, id, &Message::text(r#"40{"sid":"s1","pid":"p1"}"#));
        let events: Vec<ClientEvent> = std::iter::from_fn(|| m.poll_event()).collect();
        assert_eq!(events[0], ClientEvent::Open);
        assert!(matches!(&events[1], ClientEvent::Connect { sid, .. } if sid == "s1"));
        assert_eq!(
            events[2],
            ClientEvent::Event {
                nsp: "/".into(),
                name: "missed".into(),
                payload: Payload::new().arg(json!("off-1")),
                ack: None,
            }
        );
        assert_eq!(m.namespaces["/"].offset.as_deref(), Some("off-1"));
    }

    #[test]
    fn backoff_doubles_jitters_and_caps() {
        let mut m = Manager::new(
            ClientConfig::default()
                .reconnection_delay(Duration::from_millis(100), Duration::from_millis(1000)),
            [2; 32],
        );
        for attempt in 0..8u32 {
            m.attempts = attempt;
            let d = m.backoff().as_secs_f64();
            let base = (0.1 * 2f64.powi(attempt as i32)).min(1.0);
            assert!(d <= 1.0 + 1e-9, "capped: {d}");
            assert!(d >= base * 0.5 - 1e-9, "at most 50% below: {d} vs {base}");
        }
        // Jitter: the same attempt gets different delays from different seeds, on both
        // sides of the base (400 ms for attempt 2, ±50%).
        let delays: Vec<f64> = (0..32u8)
            .map(|seed| {
                let mut m = Manager::new(
                    ClientConfig::default()
                        .reconnection_delay(Duration::from_millis(100), Duration::from_secs(10)),
                    [seed; 32],
                );
                m.attempts = 2;
                m.backoff().as_secs_f64()
            })
            .collect();
        let (min, max) = delays
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &d| (lo.min(d), hi.max(d)));
        assert!(
            min < 0.39 && max > 0.41,
            "jittered around 0.4 s: {delays:?}"
        );
        assert!(
            min >= 0.2 - 1e-9 && max <= 0.6 + 1e-9,
            "within ±50%: {delays:?}"
        );
        let mut fixed = Manager::new(
            ClientConfig::default()
                .reconnection_delay(Duration::from_millis(100), Duration::from_millis(1000))
                .randomization_factor(0.0),
            [2; 32],
        );
        let delays: Vec<u128> = (0..5)
            .map(|a| {
                fixed.attempts = a;
                fixed.backoff().as_millis()
            })
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000]);
    }
}
