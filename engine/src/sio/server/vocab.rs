//! The vocabulary of the Socket.IO server: ids, rooms, configuration, reasons, errors,
//! broadcast targets, cluster messages and events.

use super::*;

/// A socket id (one per namespace connection; distinct from the Engine.IO session id).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid(pub(super) crate::id::IdText);

impl Sid {
    /// The id as sent to the client.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The socket's own room: the room named by its id.
    pub(super) fn room(&self) -> Room {
        self.0.to_arc()
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl std::borrow::Borrow<str> for Sid {
    fn borrow(&self) -> &str {
        self.0.as_str()
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
    /// Most disconnected sockets kept for recovery at once (default 100,000); beyond
    /// it a disconnected socket is not kept (its client gets a new one).
    pub max_kept: usize,
}

impl Default for Recovery {
    fn default() -> Self {
        Self {
            max_disconnection_duration: Duration::from_secs(120),
            max_packets: 10_000,
            max_bytes: 32 << 20,
            skip_middlewares: true,
            max_kept: 100_000,
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
    /// Longest namespace name a client may connect to (default 256 bytes); longer:
    /// `connect_error` "Invalid namespace".
    pub max_namespace_len: usize,
    /// Most namespaces one client may be connected or connecting to at once (default
    /// 64); beyond: `connect_error` "Too many namespaces".
    pub max_namespaces_per_client: usize,
    /// Most rooms one socket may be in, its own included (default 1,024); a join
    /// beyond it is refused ([`Error::TooManyRooms`]).
    pub max_rooms_per_socket: usize,
    /// How packets are encoded (default: socket.io-parser's text;
    /// [`Parser::Msgpack`](crate::sio::Parser::Msgpack) for clients that use
    /// socket.io-msgpack-parser).
    pub parser: crate::sio::Parser,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            eio: eio::Config::default().path("/socket.io/"),
            connect_timeout: Duration::from_millis(45_000),
            recovery: None,
            decode_limits: DecodeLimits::default(),
            cluster: false,
            max_namespace_len: 256,
            max_namespaces_per_client: 64,
            max_rooms_per_socket: 1024,
            parser: crate::sio::Parser::Default,
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

    /// Sets [`Config::max_rooms_per_socket`].
    pub fn max_rooms_per_socket(mut self, rooms: usize) -> Self {
        self.max_rooms_per_socket = rooms;
        self
    }

    /// Sets [`Config::max_namespaces_per_client`].
    pub fn max_namespaces_per_client(mut self, namespaces: usize) -> Self {
        self.max_namespaces_per_client = namespaces;
        self
    }

    /// Sets [`Config::parser`].
    pub fn parser(mut self, parser: crate::sio::Parser) -> Self {
        self.parser = parser;
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

    pub(super) fn from_eio(reason: eio::CloseReason) -> Self {
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
pub struct AckId(pub(super) u64);

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
        /// How it connected (shared with the server's own record of the socket).
        info: Arc<ConnectInfo>,
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
    /// What a monitoring tool watches (only with [`Server::set_activity_events`]).
    Activity(Activity),
    /// A room came to exist on this server, or is gone (only with
    /// [`Server::set_room_events`]).
    Room {
        /// Its namespace.
        nsp: Arc<str>,
        /// The room.
        room: Room,
        /// Created (or deleted).
        created: bool,
        /// A socket's own room.
        private: bool,
    },
}

/// Sessions and room memberships as they change, for a monitoring tool such as
/// `@socket.io/admin-ui` (only with [`Server::set_activity_events`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Activity {
    /// An Engine.IO session opened.
    SessionOpened {
        /// The session.
        session: SessionId,
        /// Its first transport.
        transport: eio::TransportKind,
    },
    /// A session moved from polling to WebSocket.
    SessionUpgraded {
        /// The session.
        session: SessionId,
        /// Its sockets, with their namespaces.
        sockets: Vec<(Arc<str>, Sid)>,
    },
    /// A session ended.
    SessionClosed {
        /// The session.
        session: SessionId,
        /// Why.
        reason: eio::CloseReason,
    },
    /// A connected socket joined a room (the rooms it connects with are not reported:
    /// they come with [`Event::Connected`]).
    Joined {
        /// The socket.
        sid: Sid,
        /// Its namespace.
        nsp: Arc<str>,
        /// The room.
        room: Room,
    },
    /// A socket left a room, by leaving it or by disconnecting (then after
    /// [`Event::Disconnected`], its own room included).
    Left {
        /// The socket.
        sid: Sid,
        /// Its namespace.
        nsp: Arc<str>,
        /// The room.
        room: Room,
    },
}

/// A call about a socket or session that is not there (any more).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// No such socket.
    UnknownSocket,
    /// No pending CONNECT for that session and namespace.
    NotConnecting,
    /// The socket is in [`Config::max_rooms_per_socket`] rooms already.
    TooManyRooms,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnknownSocket => "no such socket",
            Self::NotConnecting => "no pending connection for that namespace",
            Self::TooManyRooms => "too many rooms for one socket",
        })
    }
}

impl std::error::Error for Error {}
