//! The Socket.IO server: namespaces, sockets, rooms, acks and recovery over one
//! Engine.IO server, sans-IO.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::packet::{DecodeLimits, Decoder, Packet, PacketType, Payload};
use crate::eio::{
    self, Data, Handshake, PollId, Protocol, Reply, SessionId, SharedMessage, Transmit, TransportId,
};
use crate::http::Request;
use crate::rand::Rng;
use crate::{IdMap, IdSet};

/// A socket id (one per namespace connection; distinct from the Engine.IO session id).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid(Arc<str>);

impl Sid {
    /// The id as sent to the client.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for Sid {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// A room name. Every socket is in the room named by its own [`Sid`].
pub type Room = Arc<str>;

/// A namespace matcher for dynamic namespaces.
pub type NamespacePredicate = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Connection-state recovery options (the reference's `connectionStateRecovery`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// How long a disconnected socket can come back (default 2 minutes); also how long
    /// sent packets are kept.
    pub max_disconnection_duration: Duration,
    /// Most packets kept for replay, server-wide (default 10,000): older ones go first,
    /// so memory stays bounded however busy the server is.
    pub max_packets: usize,
    /// Most bytes of packets kept for replay, server-wide (default 32 MiB).
    pub max_bytes: usize,
    /// Recovered sockets skip the connect middleware (default true).
    pub skip_middlewares: bool,
}

impl Default for Recovery {
    fn default() -> Self {
        Self {
            max_disconnection_duration: Duration::from_secs(120),
            max_packets: 10_000,
            max_bytes: 32 << 20,
            skip_middlewares: true,
        }
    }
}

/// Server options, with the reference server's names and defaults.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The Engine.IO options; the path defaults to `/socket.io/`.
    pub eio: eio::Config,
    /// A client that has not connected to a namespace by then is closed (default 45 s).
    pub connect_timeout: Duration,
    /// Connection-state recovery (default off).
    pub recovery: Option<Recovery>,
    /// Bounds on binary attachments.
    pub decode_limits: DecodeLimits,
    /// Emit [`Event::Cluster`] for operations other servers must repeat (default off).
    pub cluster: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            eio: eio::Config::default().path("/socket.io/"),
            connect_timeout: Duration::from_millis(45_000),
            recovery: None,
            decode_limits: DecodeLimits::default(),
            cluster: false,
        }
    }
}

impl Config {
    /// Sets the Engine.IO options (keep the path `/socket.io/` unless you mean it).
    pub fn eio(mut self, eio: eio::Config) -> Self {
        self.eio = eio;
        self
    }

    /// Sets [`Config::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Turns on connection-state recovery.
    pub fn recovery(mut self, recovery: Recovery) -> Self {
        self.recovery = Some(recovery);
        self
    }

    /// Sets [`Config::cluster`].
    pub fn cluster(mut self, yes: bool) -> Self {
        self.cluster = yes;
        self
    }
}

/// Why a socket left its namespace, named as the reference names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// The client closed its transport.
    TransportClose,
    /// The transport failed.
    TransportError,
    /// The client stopped answering pings.
    PingTimeout,
    /// The client sent a packet that does not parse.
    ParseError,
    /// The server closed the Engine.IO session.
    ForcedClose,
    /// The server disconnected this socket.
    ServerNamespaceDisconnect,
    /// The client disconnected this socket.
    ClientNamespaceDisconnect,
    /// The server disconnected the whole client (all its namespaces).
    ForcedServerClose,
    /// The server is shutting down.
    ServerShuttingDown,
}

impl DisconnectReason {
    /// The reference's wording.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TransportClose => "transport close",
            Self::TransportError => "transport error",
            Self::PingTimeout => "ping timeout",
            Self::ParseError => "parse error",
            Self::ForcedClose => "forced close",
            Self::ServerNamespaceDisconnect => "server namespace disconnect",
            Self::ClientNamespaceDisconnect => "client namespace disconnect",
            Self::ForcedServerClose => "forced server close",
            Self::ServerShuttingDown => "server shutting down",
        }
    }

    /// The client may come back and recover its state (the reference's list).
    pub const fn is_recoverable(self) -> bool {
        matches!(
            self,
            Self::TransportClose
                | Self::TransportError
                | Self::PingTimeout
                | Self::ForcedClose
                | Self::ForcedServerClose
                | Self::ServerShuttingDown
        )
    }

    fn from_eio(reason: eio::CloseReason) -> Self {
        match reason {
            eio::CloseReason::TransportClose => Self::TransportClose,
            eio::CloseReason::TransportError => Self::TransportError,
            eio::CloseReason::PingTimeout => Self::PingTimeout,
            eio::CloseReason::ParseError => Self::ParseError,
            eio::CloseReason::ForcedClose => Self::ForcedClose,
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ack that did not come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckError {
    /// Not in time.
    Timeout,
    /// The socket disconnected first.
    Disconnected,
}

impl fmt::Display for AckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Timeout => "operation has timed out",
            Self::Disconnected => "socket has been disconnected",
        })
    }
}

impl std::error::Error for AckError {}

/// Identifies an [`emit_with_ack`](Server::emit_with_ack) or
/// [`broadcast_with_ack`](Server::broadcast_with_ack) until its [`Event::AckDone`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AckId(u64);

impl AckId {
    pub(crate) const fn from_raw(id: u64) -> Self {
        Self(id)
    }

    /// The id on the wire.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// Which sockets a broadcast (or a join, leave, disconnect, fetch) applies to: the
/// reference's broadcast operators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broadcast {
    /// The namespace, or every namespace (`None`).
    pub nsp: Option<Arc<str>>,
    /// Sockets in any of these rooms (all sockets of the namespace if empty): `to`/`in`.
    pub rooms: Vec<Room>,
    /// Minus sockets in any of these rooms: `except`.
    pub except: Vec<Room>,
    /// Drop the packet for clients that cannot take it right now: `volatile`.
    pub volatile: bool,
    /// Only this server, not the cluster: `local`.
    pub local: bool,
    /// WebSocket compression for this packet (`None`: the threshold decides): `compress`.
    pub compress: Option<bool>,
}

impl Broadcast {
    /// Every socket of namespace `nsp`.
    pub fn nsp(nsp: impl Into<Arc<str>>) -> Self {
        Self {
            nsp: Some(nsp.into()),
            rooms: Vec::new(),
            except: Vec::new(),
            volatile: false,
            local: false,
            compress: None,
        }
    }

    /// Every socket of every namespace.
    pub fn all_namespaces() -> Self {
        Self {
            nsp: None,
            ..Self::nsp("/")
        }
    }

    /// Adds a target room (`to` / `in`).
    pub fn to(mut self, room: impl Into<Room>) -> Self {
        self.rooms.push(room.into());
        self
    }

    /// Adds an excluded room.
    pub fn except(mut self, room: impl Into<Room>) -> Self {
        self.except.push(room.into());
        self
    }

    /// Sets the `volatile` flag.
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    /// Sets the `local` flag.
    pub fn local(mut self) -> Self {
        self.local = true;
        self
    }

    /// Sets the `compress` flag.
    pub fn compress(mut self, yes: bool) -> Self {
        self.compress = Some(yes);
        self
    }
}

/// A cross-server operation: what another server of the cluster must repeat for its
/// own sockets. A cluster driver (e.g. Redis) carries these between servers and
/// feeds them to [`Server::handle_cluster`].
#[derive(Clone, Debug, PartialEq)]
pub enum ClusterMessage {
    /// Deliver this packet to the matching sockets.
    Broadcast {
        /// Which sockets.
        target: Broadcast,
        /// The packet (its namespace is replaced by each target namespace).
        packet: Packet,
    },
    /// Matching sockets join rooms.
    Join {
        /// Which sockets.
        target: Broadcast,
        /// The rooms.
        rooms: Vec<Room>,
    },
    /// Matching sockets leave rooms.
    Leave {
        /// Which sockets.
        target: Broadcast,
        /// The rooms.
        rooms: Vec<Room>,
    },
    /// Matching sockets are disconnected.
    Disconnect {
        /// Which sockets.
        target: Broadcast,
        /// Close their Engine.IO sessions too.
        close: bool,
    },
}

/// What a socket's client sent when it connected.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectInfo {
    /// The Engine.IO session.
    pub session: SessionId,
    /// The namespace.
    pub nsp: Arc<str>,
    /// The CONNECT packet's auth payload (v4 clients: the namespace's query string as
    /// an object).
    pub auth: Value,
    /// The Engine.IO handshake (first request's headers, query, protocol).
    pub handshake: Arc<Handshake>,
}

/// Something that happened, for the application.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// A client asks to join a namespace: run the connect middleware, then
    /// [`Server::accept`] or [`Server::reject`].
    Connecting(ConnectInfo),
    /// A socket is connected (after [`Server::accept`], or recovered).
    Connected {
        /// The socket.
        sid: Sid,
        /// How it connected.
        info: Box<ConnectInfo>,
        /// Its state (id, rooms; and the application's data) was recovered.
        recovered: bool,
    },
    /// An event from a socket.
    Event {
        /// The socket.
        sid: Sid,
        /// The event name.
        name: String,
        /// Its arguments.
        payload: Payload,
        /// Answer with [`Server::ack`] and this id.
        ack: Option<u64>,
    },
    /// One socket's answer to an ack request (or why there is none).
    Ack {
        /// The request.
        ack: AckId,
        /// The socket.
        sid: Sid,
        /// The answer.
        result: Result<Payload, AckError>,
    },
    /// Every socket of an ack request has answered, timed out or left.
    AckDone {
        /// The request.
        ack: AckId,
    },
    /// A socket left its namespace.
    Disconnected {
        /// The socket.
        sid: Sid,
        /// Its namespace.
        nsp: Arc<str>,
        /// Why.
        reason: DisconnectReason,
        /// Its state is kept for recovery: keep the application's data for it until
        /// [`Event::Forgotten`].
        kept: bool,
    },
    /// A disconnected socket's recovery window passed.
    Forgotten {
        /// The socket.
        sid: Sid,
    },
    /// An operation for the other servers of the cluster ([`Config::cluster`]).
    Cluster(ClusterMessage),
}

/// A call about a socket or session that is not there (any more).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// No such socket.
    UnknownSocket,
    /// No pending CONNECT for that session and namespace.
    NotConnecting,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnknownSocket => "no such socket",
            Self::NotConnecting => "no pending connection for that namespace",
        })
    }
}

impl std::error::Error for Error {}

#[derive(Debug)]
struct Client {
    protocol: Protocol,
    handshake: Arc<Handshake>,
    decoder: Decoder,
    sockets: HashMap<Arc<str>, Sid>,
    pending: HashMap<Arc<str>, Value>,
    close_reason: Option<DisconnectReason>,
    ever_connected: bool,
}

#[derive(Debug)]
struct Socket {
    info: Arc<ConnectInfo>,
    rooms: HashSet<Room>,
    acks: IdSet<u64>,
    pid: Option<Arc<str>>,
}

#[derive(Debug, Default)]
struct Namespace {
    sockets: IdSet<Sid>,
    rooms: HashMap<Room, IdSet<Sid>>,
}

#[derive(Debug)]
struct PendingAck {
    waiting: IdSet<Sid>,
    deadline: Option<Instant>,
}

#[derive(Debug)]
struct Kept {
    pid: Arc<str>,
    sid: Sid,
    nsp: Arc<str>,
    rooms: Vec<Room>,
    expires: Instant,
}

#[derive(Debug)]
struct Stored {
    offset: Arc<str>,
    at: Instant,
    nsp: Arc<str>,
    rooms: Vec<Room>,
    except: Vec<Room>,
    messages: Vec<Data>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Connect(SessionId),
    Ack(u64),
    Kept(Arc<str>),
}

/// The Socket.IO server: one Engine.IO server and the Socket.IO state above it.
///
/// # Driving it
/// Exactly like [`eio::Server`], whose inputs it takes (`handle_request`,
/// `handle_poll_aborted`, `handle_ws_input`, `handle_ws_eof`, `handle_timeout`) and
/// whose transmits it hands on ([`poll_transmit`](Self::poll_transmit)); its events
/// are Socket.IO [`Event`]s. The application answers [`Event::Connecting`] with
/// [`accept`](Self::accept) / [`reject`](Self::reject) and emits with
/// [`emit`](Self::emit), [`broadcast`](Self::broadcast) and their `_with_ack` forms.
pub struct Server {
    eio: eio::Server,
    config: Config,
    rng: Rng,
    clients: IdMap<SessionId, Client>,
    sockets: IdMap<Sid, Socket>,
    namespaces: HashMap<Arc<str>, Namespace>,
    dynamic: Vec<NamespacePredicate>,
    acks: IdMap<u64, PendingAck>,
    next_ack: u64,
    kept: IdMap<Arc<str>, Kept>,
    store: VecDeque<Stored>,
    store_bytes: usize,
    next_offset: u64,
    offset_prefix: String,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    events: VecDeque<Event>,
    shutting_down: bool,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("clients", &self.clients.len())
            .field("sockets", &self.sockets.len())
            .field("namespaces", &self.namespaces.len())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server with `config`; `seed` seeds session and socket ids (use OS randomness).
    pub fn new(config: Config, seed: [u8; 32]) -> Self {
        let mut rng = Rng::from_seed(seed);
        let mut eio_seed = [0u8; 32];
        rng.fill(&mut eio_seed);
        let mut tag = [0u8; 6];
        rng.fill(&mut tag);
        Self {
            eio: eio::Server::new(config.eio.clone(), eio_seed),
            config,
            rng,
            clients: IdMap::default(),
            sockets: IdMap::default(),
            namespaces: HashMap::new(),
            dynamic: Vec::new(),
            acks: IdMap::default(),
            next_ack: 0,
            kept: IdMap::default(),
            store: VecDeque::new(),
            store_bytes: 0,
            next_offset: 0,
            offset_prefix: URL_SAFE_NO_PAD.encode(tag),
            timers: BinaryHeap::new(),
            events: VecDeque::new(),
            shutting_down: false,
        }
    }

    /// The options.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The Engine.IO server underneath.
    pub fn eio(&self) -> &eio::Server {
        &self.eio
    }

    /// Declares a namespace (clients connecting to an undeclared one get
    /// `Invalid namespace`). `/` must be declared too.
    pub fn add_namespace(&mut self, nsp: &str) {
        self.namespaces.entry(Arc::from(nsp)).or_default();
    }

    /// Declares dynamic namespaces: any name `matches` accepts is created on its first
    /// CONNECT (the reference's parent namespaces).
    pub fn add_dynamic_namespace(&mut self, matches: NamespacePredicate) {
        self.dynamic.push(matches);
    }

    /// How many sockets are connected, over all namespaces.
    pub fn socket_count(&self) -> usize {
        self.sockets.len()
    }

    /// How many Engine.IO sessions are open.
    pub fn session_count(&self) -> usize {
        self.eio.session_count()
    }

    /// The connection details of a socket.
    pub fn info(&self, sid: &Sid) -> Option<&Arc<ConnectInfo>> {
        self.sockets.get(sid).map(|s| &s.info)
    }

    /// A socket's rooms (its own sid room included).
    pub fn rooms(&self, sid: &Sid) -> Option<impl Iterator<Item = &Room>> {
        self.sockets.get(sid).map(|s| s.rooms.iter())
    }

    /// The sockets a [`Broadcast`] would reach on this server (`fetchSockets`).
    pub fn fetch_sockets(&self, target: &Broadcast) -> Vec<Sid> {
        self.targets(target)
    }

    // ----------------------------------------------------------------------------------
    // Engine.IO inputs
    // ----------------------------------------------------------------------------------

    /// Answers an HTTP request for the Socket.IO path.
    pub fn handle_request(&mut self, now: Instant, request: &Request) -> Reply {
        let reply = if self.shutting_down {
            Reply::Respond(
                crate::http::Response::new(503)
                    .header("Content-Type", "text/plain")
                    .body("Server shutting down"),
            )
        } else {
            self.eio.handle_request(now, request)
        };
        self.pump(now);
        reply
    }

    /// A parked poll's connection went away.
    pub fn handle_poll_aborted(&mut self, now: Instant, poll: PollId) {
        self.eio.handle_poll_aborted(now, poll);
        self.pump(now);
    }

    /// Bytes read on an upgraded WebSocket transport.
    pub fn handle_ws_input(&mut self, now: Instant, transport: TransportId, bytes: &[u8]) {
        self.eio.handle_ws_input(now, transport, bytes);
        self.pump(now);
    }

    /// An upgraded WebSocket transport's peer closed TCP.
    pub fn handle_ws_eof(&mut self, now: Instant, transport: TransportId) {
        self.eio.handle_ws_eof(now, transport);
        self.pump(now);
    }

    /// Fires due deadlines (Engine.IO's, connect timeouts, ack timeouts, recovery).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.eio.handle_timeout(now);
        self.pump(now);
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, timer))) = self.timers.pop() else {
                break;
            };
            match timer {
                Timer::Connect(session) => {
                    if self
                        .clients
                        .get(&session)
                        .is_some_and(|c| !c.ever_connected)
                    {
                        let _ = self.eio.close(now, &session);
                    }
                }
                Timer::Ack(id) => {
                    if self.acks.get(&id).is_some_and(|a| a.deadline <= Some(now)) {
                        self.finish_ack(id, AckError::Timeout);
                    }
                }
                Timer::Kept(pid) => {
                    if self.kept.get(&pid).is_some_and(|k| k.expires <= now) {
                        if let Some(k) = self.kept.remove(&pid) {
                            self.events.push_back(Event::Forgotten { sid: k.sid });
                        }
                    }
                }
            }
        }
        self.trim_store(now);
        self.pump(now);
    }

    /// The next output for the adapter.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.eio.poll_transmit()
    }

    /// The next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let own = self.timers.peek().map(|Reverse((at, _))| *at);
        [own, self.eio.poll_timeout()].into_iter().flatten().min()
    }

    /// Moves Engine.IO events up into Socket.IO.
    fn pump(&mut self, now: Instant) {
        while let Some(e) = self.eio.poll_event() {
            match e {
                eio::Event::Open { sid, handshake } => self.on_open(now, sid, handshake),
                eio::Event::Message { sid, data } => self.on_message(now, &sid, data),
                eio::Event::Upgraded { .. } => {}
                eio::Event::Closed { sid, reason } => {
                    let Some(client) = self.clients.remove(&sid) else {
                        continue;
                    };
                    let reason = client
                        .close_reason
                        .unwrap_or(DisconnectReason::from_eio(reason));
                    for socket in client.sockets.into_values() {
                        self.remove_socket(now, &socket, reason);
                    }
                }
            }
        }
    }

    fn on_open(&mut self, now: Instant, session: SessionId, handshake: Box<Handshake>) {
        let protocol = handshake.protocol;
        let client = Client {
            protocol,
            handshake: Arc::from(handshake),
            decoder: Decoder::new(self.config.decode_limits),
            sockets: HashMap::new(),
            pending: HashMap::new(),
            close_reason: None,
            ever_connected: false,
        };
        self.clients.insert(session.clone(), client);
        if protocol == Protocol::V3 {
            // Socket.IO v2 clients are in `/` from the start.
            self.on_connect(now, &session, Arc::from("/"), Value::Object(Map::new()));
        } else {
            self.timers.push(Reverse((
                now + self.config.connect_timeout,
                Timer::Connect(session),
            )));
        }
    }

    fn on_message(&mut self, now: Instant, session: &SessionId, data: Data) {
        let Some(client) = self.clients.get_mut(session) else {
            return;
        };
        let packet = match client.decoder.feed(data) {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(_) => {
                client.close_reason = Some(DisconnectReason::ParseError);
                let _ = self.eio.close(now, session);
                return;
            }
        };
        match packet.kind {
            PacketType::Connect => {
                let (nsp, auth) = if client.protocol == Protocol::V3 {
                    split_v3_namespace(&packet.nsp)
                } else {
                    (
                        packet.nsp.clone(),
                        packet.data.unwrap_or(Value::Object(Map::new())),
                    )
                };
                self.on_connect(now, session, nsp, auth);
            }
            PacketType::Disconnect => {
                if let Some(sid) = client.sockets.get(&packet.nsp).cloned() {
                    self.remove_socket(now, &sid, DisconnectReason::ClientNamespaceDisconnect);
                }
            }
            PacketType::Event | PacketType::BinaryEvent => {
                let Some(sid) = client.sockets.get(&packet.nsp).cloned() else {
                    return;
                };
                let ack = packet.id;
                if let Some((name, payload)) = packet.into_event() {
                    self.events.push_back(Event::Event {
                        sid,
                        name,
                        payload,
                        ack,
                    });
                }
            }
            PacketType::Ack | PacketType::BinaryAck => {
                let Some(sid) = client.sockets.get(&packet.nsp).cloned() else {
                    return;
                };
                let Some(id) = packet.id else { return };
                let known = self
                    .sockets
                    .get_mut(&sid)
                    .is_some_and(|s| s.acks.remove(&id));
                if !known {
                    return;
                }
                let payload = packet.into_payload();
                self.events.push_back(Event::Ack {
                    ack: AckId(id),
                    sid: sid.clone(),
                    result: Ok(payload),
                });
                self.ack_answered(id, &sid);
            }
            PacketType::ConnectError => {}
        }
    }

    fn namespace_exists(&mut self, nsp: &Arc<str>) -> bool {
        if self.namespaces.contains_key(nsp) {
            return true;
        }
        if self.dynamic.iter().any(|m| m(nsp)) {
            self.namespaces.insert(nsp.clone(), Namespace::default());
            return true;
        }
        false
    }

    fn on_connect(&mut self, now: Instant, session: &SessionId, nsp: Arc<str>, auth: Value) {
        let Some(client) = self.clients.get(session) else {
            return;
        };
        if client.sockets.contains_key(&nsp) || client.pending.contains_key(&nsp) {
            return;
        }
        let handshake = client.handshake.clone();
        if !self.namespace_exists(&nsp) {
            let mut err = Packet::new(PacketType::ConnectError, nsp);
            err.data = Some(error_object("Invalid namespace", None));
            self.send_to_session(session, &err.encode(), None);
            return;
        }
        let info = ConnectInfo {
            session: session.clone(),
            nsp: nsp.clone(),
            auth,
            handshake,
        };
        if let Some(recovered) = self.try_recover(&info) {
            let skip = self.config.recovery.is_some_and(|r| r.skip_middlewares);
            if skip {
                self.connect_socket(now, info, Some(recovered));
                return;
            }
        }
        if let Some(client) = self.clients.get_mut(session) {
            client.pending.insert(nsp, info.auth.clone());
        }
        self.events.push_back(Event::Connecting(info));
    }

    /// Accepts a pending CONNECT: the socket joins the namespace and the client gets
    /// its id. Returns the socket id (also announced as [`Event::Connected`]).
    pub fn accept(&mut self, now: Instant, session: &SessionId, nsp: &str) -> Result<Sid, Error> {
        let client = self.clients.get_mut(session).ok_or(Error::NotConnecting)?;
        let (nsp, auth) = client
            .pending
            .remove_entry(nsp)
            .ok_or(Error::NotConnecting)?;
        let info = ConnectInfo {
            session: session.clone(),
            nsp,
            auth,
            handshake: client.handshake.clone(),
        };
        let recovered = if self.config.recovery.is_some_and(|r| !r.skip_middlewares) {
            self.try_recover(&info)
        } else {
            None
        };
        Ok(self.connect_socket(now, info, recovered))
    }

    /// Refuses a pending CONNECT with a CONNECT_ERROR carrying `message` (and `data`).
    pub fn reject(
        &mut self,
        session: &SessionId,
        nsp: &str,
        message: &str,
        data: Option<Value>,
    ) -> Result<(), Error> {
        let client = self.clients.get_mut(session).ok_or(Error::NotConnecting)?;
        let (nsp, _) = client
            .pending
            .remove_entry(nsp)
            .ok_or(Error::NotConnecting)?;
        let protocol = client.protocol;
        let mut err = Packet::new(PacketType::ConnectError, nsp);
        err.data = Some(match (protocol, data) {
            // Socket.IO v2 clients expect the bare data (or message).
            (Protocol::V3, Some(d)) => d,
            (Protocol::V3, None) => Value::String(message.to_owned()),
            (Protocol::V4, data) => error_object(message, data),
        });
        self.send_to_session(session, &err.encode(), None);
        Ok(())
    }

    /// Looks for kept state matching the CONNECT's `pid` and `offset`; takes it if the
    /// offset is still in the store.
    fn try_recover(&mut self, info: &ConnectInfo) -> Option<(Kept, Vec<Vec<Data>>)> {
        self.config.recovery?;
        let pid = info.auth.get("pid")?.as_str()?;
        let offset = info.auth.get("offset")?.as_str()?;
        let kept = self.kept.get(pid)?;
        if kept.nsp != info.nsp || self.sockets.contains_key(&kept.sid) {
            return None;
        }
        let index = self.store.iter().position(|p| &*p.offset == offset)?;
        let rooms: HashSet<&Room> = kept.rooms.iter().collect();
        let missed = self
            .store
            .iter()
            .skip(index + 1)
            .filter(|p| {
                p.nsp == kept.nsp
                    && (p.rooms.is_empty() || p.rooms.iter().any(|r| rooms.contains(r)))
                    && !p.except.iter().any(|r| rooms.contains(r))
            })
            .map(|p| p.messages.clone())
            .collect();
        let kept = self.kept.remove(pid)?;
        Some((kept, missed))
    }

    fn new_id(&mut self) -> Arc<str> {
        let mut raw = [0u8; 15];
        self.rng.fill(&mut raw);
        URL_SAFE_NO_PAD.encode(raw).into()
    }

    fn connect_socket(
        &mut self,
        _now: Instant,
        info: ConnectInfo,
        recovered: Option<(Kept, Vec<Vec<Data>>)>,
    ) -> Sid {
        let session = info.session.clone();
        let nsp = info.nsp.clone();
        let (sid, pid, rooms, missed, was_recovered) = match recovered {
            Some((kept, missed)) => (kept.sid, Some(kept.pid), kept.rooms, missed, true),
            None => {
                let sid = loop {
                    let sid = Sid(self.new_id());
                    if !self.sockets.contains_key(&sid) {
                        break sid;
                    }
                };
                let pid = self.config.recovery.map(|_| self.new_id());
                (sid, pid, Vec::new(), Vec::new(), false)
            }
        };
        let protocol = self
            .clients
            .get(&session)
            .map_or(Protocol::V4, |c| c.protocol);
        let info = Arc::new(info);
        let mut socket = Socket {
            info: info.clone(),
            rooms: HashSet::new(),
            acks: IdSet::default(),
            pid: pid.clone(),
        };
        let namespace = self.namespaces.entry(nsp.clone()).or_default();
        namespace.sockets.insert(sid.clone());
        let own: Room = Arc::from(sid.as_str());
        for room in std::iter::once(own).chain(rooms) {
            namespace
                .rooms
                .entry(room.clone())
                .or_default()
                .insert(sid.clone());
            socket.rooms.insert(room);
        }
        self.sockets.insert(sid.clone(), socket);
        if let Some(client) = self.clients.get_mut(&session) {
            client.sockets.insert(nsp.clone(), sid.clone());
            client.ever_connected = true;
        }
        let mut ok = Packet::new(PacketType::Connect, nsp);
        if protocol == Protocol::V4 {
            let mut m = Map::new();
            m.insert("sid".into(), Value::String(sid.as_str().to_owned()));
            if let Some(pid) = &pid {
                m.insert("pid".into(), Value::String(pid.to_string()));
            }
            ok.data = Some(Value::Object(m));
        }
        self.send_to_session(&session, &ok.encode(), None);
        for messages in &missed {
            self.send_to_session(&session, messages, None);
        }
        self.events.push_back(Event::Connected {
            sid: sid.clone(),
            info: Box::new((*info).clone()),
            recovered: was_recovered,
        });
        sid
    }

    fn remove_socket(&mut self, now: Instant, sid: &Sid, reason: DisconnectReason) {
        let Some(socket) = self.sockets.remove(sid) else {
            return;
        };
        let nsp = socket.info.nsp.clone();
        if let Some(namespace) = self.namespaces.get_mut(&nsp) {
            namespace.sockets.remove(sid);
            for room in &socket.rooms {
                if let Some(members) = namespace.rooms.get_mut(room) {
                    members.remove(sid);
                    if members.is_empty() {
                        namespace.rooms.remove(room);
                    }
                }
            }
        }
        if let Some(client) = self.clients.get_mut(&socket.info.session) {
            client.sockets.remove(&nsp);
        }
        for id in &socket.acks {
            self.events.push_back(Event::Ack {
                ack: AckId(*id),
                sid: sid.clone(),
                result: Err(AckError::Disconnected),
            });
        }
        for id in socket.acks.iter().copied().collect::<Vec<_>>() {
            self.ack_answered(id, sid);
        }
        let mut kept = false;
        if let (Some(recovery), Some(pid)) = (self.config.recovery, &socket.pid) {
            if reason.is_recoverable() {
                let own: &str = sid.as_str();
                let expires = now + recovery.max_disconnection_duration;
                self.kept.insert(
                    pid.clone(),
                    Kept {
                        pid: pid.clone(),
                        sid: sid.clone(),
                        nsp: nsp.clone(),
                        rooms: socket
                            .rooms
                            .iter()
                            .filter(|r| &***r != own)
                            .cloned()
                            .collect(),
                        expires,
                    },
                );
                self.timers
                    .push(Reverse((expires, Timer::Kept(pid.clone()))));
                kept = true;
            }
        }
        self.events.push_back(Event::Disconnected {
            sid: sid.clone(),
            nsp,
            reason,
            kept,
        });
    }

    // ----------------------------------------------------------------------------------
    // Application calls
    // ----------------------------------------------------------------------------------

    /// Emits an event to one socket.
    pub fn emit(
        &mut self,
        now: Instant,
        sid: &Sid,
        name: &str,
        payload: Payload,
    ) -> Result<(), Error> {
        let socket = self.sockets.get(sid).ok_or(Error::UnknownSocket)?;
        let nsp = socket.info.nsp.clone();
        if self.config.recovery.is_some() {
            // Stored like a broadcast to the socket's own room, so that it can be
            // replayed after a reconnection.
            let target = Broadcast::nsp(nsp)
                .to(Arc::<str>::from(sid.as_str()))
                .local();
            self.broadcast(now, &target, name, payload);
            return Ok(());
        }
        let session = socket.info.session.clone();
        let packet = Packet::event(nsp, name, payload);
        self.send_to_session(&session, &packet.encode(), None);
        Ok(())
    }

    /// Emits an event to one socket and waits for its ack: answered by
    /// [`Event::Ack`] then [`Event::AckDone`] (also on timeout or disconnection).
    pub fn emit_with_ack(
        &mut self,
        now: Instant,
        sid: &Sid,
        name: &str,
        payload: Payload,
        timeout: Option<Duration>,
    ) -> Result<AckId, Error> {
        if !self.sockets.contains_key(sid) {
            return Err(Error::UnknownSocket);
        }
        let nsp = self.sockets.get(sid).map(|s| s.info.nsp.clone());
        let mut target = Broadcast::nsp(nsp.unwrap_or_else(|| Arc::from("/")));
        target.rooms.push(Arc::from(sid.as_str()));
        target.local = true;
        Ok(self.broadcast_with_ack(now, &target, name, payload, timeout))
    }

    /// Answers a client's event that asked for an ack.
    pub fn ack(&mut self, sid: &Sid, id: u64, payload: Payload) -> Result<(), Error> {
        let socket = self.sockets.get(sid).ok_or(Error::UnknownSocket)?;
        let session = socket.info.session.clone();
        let packet = Packet::ack(socket.info.nsp.clone(), id, payload);
        self.send_to_session(&session, &packet.encode(), None);
        Ok(())
    }

    /// The sockets a target reaches, in no particular order.
    fn targets(&self, target: &Broadcast) -> Vec<Sid> {
        let mut out = Vec::new();
        let mut visit = |nsp: &Namespace| {
            let except: HashSet<&Sid> = target
                .except
                .iter()
                .filter_map(|r| nsp.rooms.get(r))
                .flatten()
                .collect();
            if target.rooms.is_empty() {
                out.extend(nsp.sockets.iter().filter(|s| !except.contains(s)).cloned());
            } else if target.rooms.len() == 1 {
                if let Some(members) = nsp.rooms.get(&target.rooms[0]) {
                    out.extend(members.iter().filter(|s| !except.contains(s)).cloned());
                }
            } else {
                let mut seen = HashSet::new();
                for members in target.rooms.iter().filter_map(|r| nsp.rooms.get(r)) {
                    for s in members {
                        if !except.contains(s) && seen.insert(s) {
                            out.push(s.clone());
                        }
                    }
                }
            }
        };
        match &target.nsp {
            Some(name) => {
                if let Some(nsp) = self.namespaces.get(name) {
                    visit(nsp);
                }
            }
            None => self.namespaces.values().for_each(visit),
        }
        out
    }

    fn namespaces_of(&self, target: &Broadcast) -> Vec<Arc<str>> {
        match &target.nsp {
            Some(n) => vec![n.clone()],
            None => self.namespaces.keys().cloned().collect(),
        }
    }

    /// Emits an event to every socket `target` selects, encoding it once per namespace:
    /// every recipient gets the same bytes. Returns how many sockets it reached here.
    pub fn broadcast(
        &mut self,
        now: Instant,
        target: &Broadcast,
        name: &str,
        payload: Payload,
    ) -> usize {
        if self.config.cluster && !target.local {
            self.events
                .push_back(Event::Cluster(ClusterMessage::Broadcast {
                    target: target.clone(),
                    packet: Packet::event("/", name, payload.clone()),
                }));
        }
        self.broadcast_packet(now, target, Packet::event("/", name, payload))
    }

    fn broadcast_packet(&mut self, now: Instant, target: &Broadcast, packet: Packet) -> usize {
        let mut count = 0;
        for nsp in self.namespaces_of(target) {
            let per_nsp = Broadcast {
                nsp: Some(nsp.clone()),
                ..target.clone()
            };
            let mut packet = Packet {
                nsp: nsp.clone(),
                ..packet.clone()
            };
            let store = self.config.recovery.is_some()
                && !target.volatile
                && packet.id.is_none()
                && matches!(packet.kind, PacketType::Event | PacketType::BinaryEvent);
            let offset = store.then(|| self.next_offset());
            if let (Some(offset), Some(Value::Array(a))) = (&offset, &mut packet.data) {
                a.push(Value::String(offset.to_string()));
            }
            let messages = packet.encode();
            let shared: Vec<SharedMessage> =
                messages.iter().cloned().map(SharedMessage::new).collect();
            if let Some(offset) = offset {
                self.store_bytes += stored_size(&messages);
                self.store.push_back(Stored {
                    offset,
                    at: now,
                    nsp: nsp.clone(),
                    rooms: target.rooms.clone(),
                    except: target.except.clone(),
                    messages: messages.clone(),
                });
                self.trim_store(now);
            }
            for sid in self.targets(&per_nsp) {
                let Some(socket) = self.sockets.get_mut(&sid) else {
                    continue;
                };
                if let Some(id) = packet.id {
                    socket.acks.insert(id);
                    if let Some(a) = self.acks.get_mut(&id) {
                        a.waiting.insert(sid.clone());
                    }
                }
                let session = socket.info.session.clone();
                if target.volatile && !self.eio.is_writable(&session) {
                    continue;
                }
                for m in &shared {
                    let _ = self.eio.send_shared(&session, m, target.compress);
                }
                count += 1;
            }
        }
        count
    }

    /// Emits an event to every socket `target` selects and collects their acks
    /// (local sockets only): one [`Event::Ack`] per socket, then [`Event::AckDone`] once
    /// all have answered, or at `timeout` (the rest get [`AckError::Timeout`]).
    pub fn broadcast_with_ack(
        &mut self,
        now: Instant,
        target: &Broadcast,
        name: &str,
        payload: Payload,
        timeout: Option<Duration>,
    ) -> AckId {
        let id = self.next_ack;
        self.next_ack += 1;
        let deadline = timeout.map(|t| now + t);
        self.acks.insert(
            id,
            PendingAck {
                waiting: IdSet::default(),
                deadline,
            },
        );
        let mut packet = Packet::event("/", name, payload);
        packet.id = Some(id);
        self.broadcast_packet(now, target, packet);
        if self.acks.get(&id).is_some_and(|a| a.waiting.is_empty()) {
            self.acks.remove(&id);
            self.events.push_back(Event::AckDone { ack: AckId(id) });
        } else if let Some(deadline) = deadline {
            self.timers.push(Reverse((deadline, Timer::Ack(id))));
        }
        AckId(id)
    }

    fn ack_answered(&mut self, id: u64, sid: &Sid) {
        let Some(pending) = self.acks.get_mut(&id) else {
            return;
        };
        pending.waiting.remove(sid);
        if pending.waiting.is_empty() {
            self.acks.remove(&id);
            self.events.push_back(Event::AckDone { ack: AckId(id) });
        }
    }

    fn finish_ack(&mut self, id: u64, error: AckError) {
        let Some(pending) = self.acks.remove(&id) else {
            return;
        };
        let mut waiting: Vec<Sid> = pending.waiting.into_iter().collect();
        waiting.sort();
        for sid in waiting {
            if let Some(s) = self.sockets.get_mut(&sid) {
                s.acks.remove(&id);
            }
            self.events.push_back(Event::Ack {
                ack: AckId(id),
                sid,
                result: Err(error),
            });
        }
        self.events.push_back(Event::AckDone { ack: AckId(id) });
    }

    /// Sockets `target` selects join `rooms` (`socketsJoin`).
    pub fn join_by(&mut self, target: &Broadcast, rooms: &[Room]) {
        if self.config.cluster && !target.local {
            self.events.push_back(Event::Cluster(ClusterMessage::Join {
                target: target.clone(),
                rooms: rooms.to_vec(),
            }));
        }
        for sid in self.targets(target) {
            let _ = self.join(&sid, rooms);
        }
    }

    /// Sockets `target` selects leave `rooms` (`socketsLeave`).
    pub fn leave_by(&mut self, target: &Broadcast, rooms: &[Room]) {
        if self.config.cluster && !target.local {
            self.events.push_back(Event::Cluster(ClusterMessage::Leave {
                target: target.clone(),
                rooms: rooms.to_vec(),
            }));
        }
        for sid in self.targets(target) {
            for room in rooms {
                let _ = self.leave(&sid, room);
            }
        }
    }

    /// Disconnects the sockets `target` selects (`disconnectSockets`).
    pub fn disconnect_by(&mut self, now: Instant, target: &Broadcast, close: bool) {
        if self.config.cluster && !target.local {
            self.events
                .push_back(Event::Cluster(ClusterMessage::Disconnect {
                    target: target.clone(),
                    close,
                }));
        }
        for sid in self.targets(target) {
            let _ = self.disconnect(now, &sid, close);
        }
    }

    /// Repeats another server's operation for the sockets of this one.
    pub fn handle_cluster(&mut self, now: Instant, message: ClusterMessage) {
        match message {
            ClusterMessage::Broadcast { target, packet } => {
                self.broadcast_packet(now, &target.local(), packet);
            }
            ClusterMessage::Join { target, rooms } => self.join_by(&target.local(), &rooms),
            ClusterMessage::Leave { target, rooms } => self.leave_by(&target.local(), &rooms),
            ClusterMessage::Disconnect { target, close } => {
                self.disconnect_by(now, &target.local(), close)
            }
        }
        self.pump(now);
    }

    /// A socket joins rooms.
    pub fn join(&mut self, sid: &Sid, rooms: &[Room]) -> Result<(), Error> {
        let socket = self.sockets.get_mut(sid).ok_or(Error::UnknownSocket)?;
        let namespace = self.namespaces.entry(socket.info.nsp.clone()).or_default();
        for room in rooms {
            if socket.rooms.insert(room.clone()) {
                namespace
                    .rooms
                    .entry(room.clone())
                    .or_default()
                    .insert(sid.clone());
            }
        }
        Ok(())
    }

    /// A socket leaves a room.
    pub fn leave(&mut self, sid: &Sid, room: &str) -> Result<(), Error> {
        let socket = self.sockets.get_mut(sid).ok_or(Error::UnknownSocket)?;
        if socket.rooms.remove(room) {
            if let Some(namespace) = self.namespaces.get_mut(&socket.info.nsp) {
                if let Some(members) = namespace.rooms.get_mut(room) {
                    members.remove(sid);
                    if members.is_empty() {
                        namespace.rooms.remove(room);
                    }
                }
            }
        }
        Ok(())
    }

    /// Disconnects a socket from its namespace (DISCONNECT packet; `server namespace
    /// disconnect`). With `close`, the whole Engine.IO session is closed too and its
    /// other sockets leave with `forced server close`.
    pub fn disconnect(&mut self, now: Instant, sid: &Sid, close: bool) -> Result<(), Error> {
        let socket = self.sockets.get(sid).ok_or(Error::UnknownSocket)?;
        let session = socket.info.session.clone();
        let packet = Packet::new(PacketType::Disconnect, socket.info.nsp.clone());
        self.send_to_session(&session, &packet.encode(), None);
        self.remove_socket(now, sid, DisconnectReason::ServerNamespaceDisconnect);
        if close {
            self.close_client(now, &session, DisconnectReason::ForcedServerClose);
        }
        Ok(())
    }

    /// Closes the client connection a socket rides on, without DISCONNECT packets
    /// (`socket.conn.close()`): its sockets leave with `forced close`, their state is
    /// kept for recovery if that is on, and the client reconnects by itself.
    pub fn close_connection(&mut self, now: Instant, sid: &Sid) -> Result<(), Error> {
        let socket = self.sockets.get(sid).ok_or(Error::UnknownSocket)?;
        let session = socket.info.session.clone();
        let _ = self.eio.close(now, &session);
        self.pump(now);
        Ok(())
    }

    fn close_client(&mut self, now: Instant, session: &SessionId, reason: DisconnectReason) {
        if let Some(client) = self.clients.get_mut(session) {
            client.close_reason = Some(reason);
            let sids: Vec<Sid> = client.sockets.values().cloned().collect();
            for sid in sids {
                if let Some(s) = self.sockets.get(&sid) {
                    let packet = Packet::new(PacketType::Disconnect, s.info.nsp.clone());
                    self.send_to_session(session, &packet.encode(), None);
                }
            }
            let _ = self.eio.close(now, session);
            self.pump(now);
        }
    }

    /// Graceful shutdown: new requests get 503, every socket gets a DISCONNECT packet
    /// and every session is closed (`server shutting down`). Done when
    /// [`session_count`](Self::session_count) is 0 and the transmits are drained.
    pub fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        let sessions: Vec<SessionId> = self.clients.keys().cloned().collect();
        for session in sessions {
            self.close_client(now, &session, DisconnectReason::ServerShuttingDown);
        }
        self.pump(now);
    }

    fn send_to_session(&mut self, session: &SessionId, messages: &[Data], compress: Option<bool>) {
        for m in messages {
            let _ = self.eio.send_with(session, m.clone(), compress);
        }
    }

    fn next_offset(&mut self) -> Arc<str> {
        self.next_offset += 1;
        format!("{}-{}", self.offset_prefix, self.next_offset).into()
    }

    fn trim_store(&mut self, now: Instant) {
        let Some(recovery) = self.config.recovery else {
            return;
        };
        while let Some(front) = self.store.front() {
            let over = self.store.len() > recovery.max_packets
                || self.store_bytes > recovery.max_bytes
                || front.at + recovery.max_disconnection_duration < now;
            if !over {
                break;
            }
            self.store_bytes -= stored_size(&front.messages);
            self.store.pop_front();
        }
    }
}

fn stored_size(messages: &[Data]) -> usize {
    messages.iter().map(|m| m.as_bytes().len()).sum()
}

fn error_object(message: &str, data: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("message".into(), Value::String(message.to_owned()));
    if let Some(data) = data {
        m.insert("data".into(), data);
    }
    Value::Object(m)
}

/// A v4-protocol CONNECT names `/nsp?query`: the namespace, and the query as its auth.
fn split_v3_namespace(raw: &str) -> (Arc<str>, Value) {
    let (path, query) = raw.split_once('?').unwrap_or((raw, ""));
    let mut m = Map::new();
    for (k, v) in crate::http::query_pairs(query) {
        m.insert(k.into_owned(), Value::String(v.into_owned()));
    }
    (Arc::from(path), Value::Object(m))
}
