//! The Engine.IO server registry and its sessions.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::id::IdText;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;

use super::link::{Decoded, MessageDecoder, WsInput, WsLink, WsOutput};
use super::packet::{
    decode_payload, encode_payload, Data, Packet, PacketType, Protocol, SharedMessage, SEPARATOR,
};
use crate::http::{ContentCoding, Headers, Request, Response};
use crate::rand::Rng;
use crate::ws::{self, CloseCode, DeflateConfig};
use crate::IdMap;

/// How often a poll parked during an upgrade is ended with a noop (as the reference
/// server's upgrade check does).
const UPGRADE_CHECK: Duration = Duration::from_millis(100);

/// Server options, with the reference server's names and defaults.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The path Engine.IO answers on (default `/engine.io/`).
    pub path: String,
    /// How often the server pings (v4) or expects pings (v3); default 25 s.
    pub ping_interval: Duration,
    /// How long a pong may take (default 20 s).
    pub ping_timeout: Duration,
    /// Largest payload (polling body or WebSocket message) accepted; default 1 MB.
    /// Larger: HTTP 413 and the session is closed, or WebSocket close 1009.
    pub max_payload: usize,
    /// Time allowed to complete an upgrade after the probe (default 10 s).
    pub upgrade_timeout: Duration,
    /// Accept the polling transport (default true).
    pub polling: bool,
    /// Accept the websocket transport (default true).
    pub websocket: bool,
    /// Accept `EIO=3` clients (default false, like the reference).
    pub allow_eio3: bool,
    /// CORS policy for polling responses (default: none, no CORS headers).
    pub cors: Option<Cors>,
    /// permessage-deflate on the websocket transport (default off, like the reference).
    pub per_message_deflate: Option<DeflateConfig>,
    /// Bytes a session may have queued for a client that does not read before it is
    /// closed as a slow consumer (`transport error`; default 16 MiB). Each packet
    /// counts [`PACKET_OVERHEAD`] bytes more than its payload. On WebSocket the count
    /// is of bytes the transport has not yet written (the host reports writes with
    /// [`Server::handle_ws_written`]).
    pub max_buffered: usize,
    /// Most sessions open at once (default 100,000); a handshake beyond it gets 503
    /// with `{"code":4,"message":"Server full"}`.
    pub max_sessions: usize,
    /// Most packets in one polling payload (default 10,000); more: 413 and the
    /// session is closed (`transport error`), as for a payload over `max_payload`.
    pub max_packets: usize,
    /// The reference's `allowRequest`: decides on every request that would open a
    /// session or a WebSocket (handshakes and upgrades) before anything is created
    /// (default: none, all allowed).
    pub allow_request: Option<AllowRequest>,
    /// Compression of polling responses, as the reference's `httpCompression` (default
    /// on: bodies of 1,024 bytes or more, gzip or deflate as the request's
    /// `Accept-Encoding` allows); `None` sends every body as it is.
    pub http_compression: Option<HttpCompression>,
}

/// When and how polling responses are compressed (see [`Config::http_compression`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpCompression {
    /// Bodies shorter than this go uncompressed (default 1,024 bytes, the reference's).
    pub threshold: usize,
    /// The zlib level, 0–9 (default 6, zlib's and the reference's default).
    pub level: u32,
}

impl Default for HttpCompression {
    fn default() -> Self {
        Self {
            threshold: 1024,
            level: 6,
        }
    }
}

/// A hook that sees a request's method, target, headers and peer address (in
/// [`Request`]) and allows it, or refuses it with a message: 403 with
/// `{"code":4,"message":<message>}`, as the reference answers.
#[derive(Clone)]
pub struct AllowRequest(Arc<AllowFn>);

type AllowFn = dyn Fn(&Request) -> Result<(), String> + Send + Sync;

impl AllowRequest {
    /// Wraps `hook`.
    pub fn new(hook: impl Fn(&Request) -> Result<(), String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(hook))
    }
}

impl fmt::Debug for AllowRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AllowRequest(..)")
    }
}

/// Bytes each queued packet counts for beyond its payload (the queue's own cost).
pub const PACKET_OVERHEAD: usize = 48;

/// Above this many unwritten bytes on its WebSocket, a session is not
/// [writable](Server::is_writable): `volatile` messages to it are dropped.
pub const VOLATILE_LOW_WATER: usize = 64 << 10;

impl Default for Config {
    fn default() -> Self {
        Self {
            path: "/engine.io/".into(),
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            upgrade_timeout: Duration::from_millis(10_000),
            polling: true,
            websocket: true,
            allow_eio3: false,
            cors: None,
            per_message_deflate: None,
            max_buffered: 16 << 20,
            max_sessions: 100_000,
            max_packets: 10_000,
            allow_request: None,
            http_compression: Some(HttpCompression::default()),
        }
    }
}

impl Config {
    /// Sets [`Config::http_compression`] (`None`: polling bodies go uncompressed).
    pub fn http_compression(mut self, compression: Option<HttpCompression>) -> Self {
        self.http_compression = compression;
        self
    }

    /// Sets [`Config::path`] (a trailing `/` is added if missing).
    pub fn path(mut self, path: &str) -> Self {
        self.path = super::with_trailing_slash(path);
        self
    }

    /// Sets the heartbeat: [`Config::ping_interval`] and [`Config::ping_timeout`].
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.ping_interval = interval;
        self.ping_timeout = timeout;
        self
    }

    /// Sets [`Config::max_payload`].
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Sets [`Config::max_sessions`].
    pub fn max_sessions(mut self, sessions: usize) -> Self {
        self.max_sessions = sessions;
        self
    }

    /// Sets [`Config::allow_request`].
    pub fn allow_request(
        mut self,
        hook: impl Fn(&Request) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.allow_request = Some(AllowRequest::new(hook));
        self
    }

    /// Sets [`Config::max_packets`].
    pub fn max_packets(mut self, packets: usize) -> Self {
        self.max_packets = packets;
        self
    }

    /// Sets [`Config::max_buffered`].
    pub fn max_buffered(mut self, bytes: usize) -> Self {
        self.max_buffered = bytes;
        self
    }

    /// Sets [`Config::allow_eio3`].
    pub fn allow_eio3(mut self, yes: bool) -> Self {
        self.allow_eio3 = yes;
        self
    }

    /// Sets [`Config::cors`].
    pub fn cors(mut self, cors: Cors) -> Self {
        self.cors = Some(cors);
        self
    }

    /// Sets which transports are accepted.
    pub fn transports(mut self, polling: bool, websocket: bool) -> Self {
        self.polling = polling;
        self.websocket = websocket;
        self
    }

    /// Whether `path` (a request path without query) is served by Engine.IO.
    pub fn matches(&self, path: &str) -> bool {
        path == self.path || path == self.path.trim_end_matches('/')
    }
}

/// CORS policy, also the origin check of WebSocket upgrades: with an allow-list, a
/// request (polling or upgrade) whose `Origin` is not on it gets 403.
///
/// Credentials go only with an allow-list ([`Cors::credentialed`]): "any origin with
/// credentials" would hand every site a logged-in user's session, so it cannot be
/// configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cors {
    origins: Option<Vec<String>>,
    credentials: bool,
}

impl Cors {
    /// Any origin, no credentials (`Access-Control-Allow-Origin: *`).
    pub fn any() -> Self {
        Self::default()
    }

    /// Only these origins, no credentials.
    pub fn origins<I: IntoIterator<Item = S>, S: Into<String>>(origins: I) -> Self {
        Self {
            origins: Some(origins.into_iter().map(Into::into).collect()),
            credentials: false,
        }
    }

    /// Only these origins, with credentials (`Access-Control-Allow-Credentials: true`,
    /// the origin echoed).
    pub fn credentialed<I: IntoIterator<Item = S>, S: Into<String>>(origins: I) -> Self {
        Self {
            credentials: true,
            ..Self::origins(origins)
        }
    }

    /// The allow-list; `None`: any origin.
    pub fn allowed_origins(&self) -> Option<&[String]> {
        self.origins.as_deref()
    }

    /// Whether credentials are allowed.
    pub fn allows_credentials(&self) -> bool {
        self.credentials
    }
}

/// A session id: 20 URL-safe characters from the server's random source, after the
/// server's prefix if it has one ([`Server::set_sid_prefix`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(IdText);

impl SessionId {
    /// The id as sent to the client.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl std::borrow::Borrow<str> for SessionId {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// A parked polling GET, answered later through [`Transmit::Respond`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PollId(u64);

/// A WebSocket transport (one upgraded TCP connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransportId(u64);

/// The Engine.IO error codes, sent as `{"code":N,"message":"..."}` with HTTP 400 (403
/// for `Forbidden`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// 0: the `transport` query parameter is missing or not accepted.
    UnknownTransport,
    /// 1: the `sid` is not a live session.
    UnknownSid,
    /// 2: a handshake with a method other than GET.
    BadHandshakeMethod,
    /// 3: anything else wrong with the request.
    BadRequest,
    /// 4: refused by policy.
    Forbidden,
    /// 5: the `EIO` query parameter is missing or not supported.
    UnsupportedProtocolVersion,
}

impl ErrorCode {
    /// The numeric code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The reference server's message.
    pub const fn message(self) -> &'static str {
        match self {
            Self::UnknownTransport => "Transport unknown",
            Self::UnknownSid => "Session ID unknown",
            Self::BadHandshakeMethod => "Bad handshake method",
            Self::BadRequest => "Bad request",
            Self::Forbidden => "Forbidden",
            Self::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// The response that carries it: HTTP 400 (403 for `Forbidden`) with
    /// `{"code":N,"message":"..."}` (no CORS headers: the server adds its own).
    pub fn response(self) -> Response {
        let status = if self == Self::Forbidden { 403 } else { 400 };
        Response::new(status)
            .header("Content-Type", "application/json")
            .body(format!(
                "{{\"code\":{},\"message\":\"{}\"}}",
                self.code(),
                self.message()
            ))
    }
}

/// Which transport a session uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// HTTP long-polling.
    Polling,
    /// WebSocket.
    WebSocket,
}

impl TransportKind {
    /// The name the protocol gives it (the `transport` query parameter's value).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Polling => "polling",
            Self::WebSocket => "websocket",
        }
    }
}

/// What the client sent when it opened its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// The protocol revision.
    pub protocol: Protocol,
    /// The first transport.
    pub transport: TransportKind,
    /// The request target (path and query) of the first request.
    pub target: String,
    /// The headers of the first request.
    pub headers: Headers,
    /// The client's address, when the connection has one.
    pub peer_addr: Option<std::net::SocketAddr>,
    /// The first request came over an encrypted (TLS) connection.
    pub secure: bool,
    /// What the host attached to the first request (an embedding host's request
    /// extensions).
    pub extensions: crate::http::Extensions,
}

/// Why a session ended, named as the reference server names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed its transport or sent a close packet.
    TransportClose,
    /// The transport failed (a duplicate poll, an aborted poll, a payload over the
    /// limit, a slow consumer, a WebSocket protocol error).
    TransportError,
    /// No pong (v4) or ping (v3) in time.
    PingTimeout,
    /// The client sent something that does not parse.
    ParseError,
    /// The server closed it.
    ForcedClose,
}

impl CloseReason {
    /// The reference's wording.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TransportClose => "transport close",
            Self::TransportError => "transport error",
            Self::PingTimeout => "ping timeout",
            Self::ParseError => "parse error",
            Self::ForcedClose => "forced close",
        }
    }
}

/// The answer to an HTTP request.
#[derive(Debug)]
pub enum Reply {
    /// Send this response now.
    Respond(Response),
    /// Hold the request: its response comes later as [`Transmit::Respond`] (or call
    /// [`Server::handle_poll_aborted`] if the client goes away first).
    Park(PollId),
    /// The request was a WebSocket upgrade, accepted: the connection is now this
    /// transport, and the link drives it (its first bytes are the `101`). What the
    /// server addresses to it comes as [`Transmit::Ws`]; what it reads goes back
    /// through [`WsLink::deliver`].
    Upgrade(Box<WsLink>),
}

/// Output for the adapter to carry out.
#[derive(Debug)]
pub enum Transmit {
    /// The response to a parked poll.
    Respond {
        /// The parked request.
        poll: PollId,
        /// Its response.
        response: Response,
    },
    /// Something for a WebSocket transport's [`WsLink`] to carry out.
    Ws {
        /// The transport.
        transport: TransportId,
        /// What to do.
        output: WsOutput,
    },
    /// Drop this transport's TCP connection now, unwritten bytes included (a slow
    /// consumer past [`Config::max_buffered`]).
    AbortTransport(TransportId),
}

/// Something that happened to a session.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A new session.
    Open {
        /// The session.
        sid: SessionId,
        /// Its handshake.
        handshake: Box<Handshake>,
    },
    /// A message from the client.
    Message {
        /// The session.
        sid: SessionId,
        /// The data.
        data: Data,
    },
    /// The session moved from polling to WebSocket.
    Upgraded {
        /// The session.
        sid: SessionId,
    },
    /// The session ended; no further events for it.
    Closed {
        /// The session.
        sid: SessionId,
        /// Why.
        reason: CloseReason,
    },
}

/// A misuse of [`Server::send`] or [`Server::close`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// No such session (it may have closed).
    UnknownSession,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no such Engine.IO session")
    }
}

impl std::error::Error for SendError {}

#[derive(Debug)]
struct Parked {
    id: PollId,
    cors: Vec<(&'static str, String)>,
    /// How its response may be compressed.
    compress: Compress,
}

/// The coding a polling response may be compressed with, and when: what the request's
/// `Accept-Encoding` allows, if [`Config::http_compression`] is on.
type Compress = Option<(ContentCoding, HttpCompression)>;

#[derive(Debug)]
struct Upgrade {
    transport: TransportId,
    probed: bool,
    noop_delivered: bool,
    /// When to end a poll parked after the first noop with another one (the
    /// reference's 100 ms upgrade check).
    noop_at: Option<Instant>,
    deadline: Instant,
}

#[derive(Debug)]
struct Session {
    id: SessionId,
    protocol: Protocol,
    websocket: Option<TransportId>,
    /// Boxed, as `upgrade`: a session is mostly without either.
    parked: Option<Box<Parked>>,
    buffer: Vec<Packet>,
    buffered_bytes: usize,
    upgrade: Option<Box<Upgrade>>,
    next_ping: Option<Instant>,
    pong_deadline: Option<Instant>,
    armed: Option<Instant>,
}

impl Session {
    /// The transport that takes a broadcast's shared frame as it is (no copy, no
    /// compression): a v4 WebSocket with nothing waiting before it, when the message
    /// is not to be compressed.
    fn takes_shared_frame(&self, compress: Option<bool>) -> Option<TransportId> {
        let plain = self.buffer.is_empty() && compress != Some(true);
        self.websocket
            .filter(|_| plain && self.protocol == Protocol::V4)
    }

    fn deadline(&self) -> Option<Instant> {
        [
            self.next_ping,
            self.pong_deadline,
            self.upgrade.as_ref().map(|u| u.deadline),
            self.upgrade.as_ref().and_then(|u| u.noop_at),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// What the server keeps of a WebSocket transport (its connection is the driver's
/// [`WsLink`]).
#[derive(Debug)]
struct WsTransport {
    sid: Option<SessionId>,
    /// Its close was sent: nothing more goes to it.
    closing: bool,
    /// Bytes handed out as [`Transmit::Ws`] and not yet reported written.
    unsent: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Session(SessionId),
    Closing(SessionId),
}

/// A polling session the server closed while no poll was parked: what it had queued
/// (Socket.IO's DISCONNECT packets, say) and a close packet wait for its next poll,
/// until the grace period ends.
#[derive(Debug)]
struct Closing {
    protocol: Protocol,
    packets: Vec<Packet>,
    until: Instant,
}

/// What [`Preparer::prepare`] made of a request: a polling POST's payload, decoded.
#[derive(Debug, Default)]
pub struct Prepared(Option<(Protocol, PostPayload)>);

/// A POST's packets, each message with what the message decoder made of it.
type PostPayload = Result<Vec<(Packet, Option<Decoded>)>, PostError>;

/// Why a POST's payload is refused.
#[derive(Debug)]
enum PostError {
    /// Over `max_payload` or `max_packets`: 413.
    TooLarge,
    /// Not a payload: 400, the session closed.
    Invalid,
}

/// The part of answering requests that needs no session state: a polling POST's
/// payload decoded, and each of its messages run through the
/// [message decoder](Server::set_message_decoder) (Socket.IO's JSON parsing). A driver
/// that shares one server between connections runs it on the connection's own task,
/// apart from the server, and hands the result to [`Server::handle_prepared`].
#[derive(Clone, Debug)]
pub struct Preparer {
    config: Arc<Config>,
    decoder: Option<MessageDecoder>,
}

impl Preparer {
    /// Decodes `request`'s payload if it is a polling POST for this endpoint; anything
    /// else is left to the server.
    pub fn prepare(&self, request: &Request) -> Prepared {
        let head = &request.head;
        if head.method != "POST" || !self.config.matches(head.path()) {
            return Prepared::default();
        }
        let [transport, eio] = head.query_params(["transport", "EIO"]);
        if transport.as_deref() != Some("polling") {
            return Prepared::default();
        }
        let protocol = match eio.as_deref() {
            Some("4") => Protocol::V4,
            Some("3") => Protocol::V3,
            _ => return Prepared::default(),
        };
        let decoded = decode_post(&self.config, self.decoder.as_ref(), protocol, &request.body);
        Prepared(Some((protocol, decoded)))
    }
}

/// Decodes a polling POST's payload within the limits, and its messages with `decoder`.
fn decode_post(
    config: &Config,
    decoder: Option<&MessageDecoder>,
    protocol: Protocol,
    body: &Bytes,
) -> PostPayload {
    let too_many = match protocol {
        // Counted before decoding: a payload of empty packets would otherwise become
        // hundreds of thousands of events.
        Protocol::V4 => body.iter().filter(|&&b| b == SEPARATOR).count() >= config.max_packets,
        Protocol::V3 => false,
    };
    if body.len() > config.max_payload || too_many {
        return Err(PostError::TooLarge);
    }
    let packets = decode_payload(body, protocol).map_err(|_| PostError::Invalid)?;
    // v3 payloads are length-prefixed: counted once decoded.
    if packets.len() > config.max_packets {
        return Err(PostError::TooLarge);
    }
    Ok(packets
        .into_iter()
        .map(|packet| {
            let decoded = match (decoder, packet.kind) {
                (Some(decoder), PacketType::Message) => decoder.decode(&packet.data),
                _ => None,
            };
            (packet, decoded)
        })
        .collect())
}

/// How many recipients [`Server::send_shared_to`] looks up together.
pub(crate) const SEND_GROUP: usize = 16;

/// The Engine.IO server: every session of one endpoint, sans-IO.
///
/// # Driving it
/// Inputs: [`handle_request`](Self::handle_request) for each HTTP request on the
/// Engine.IO path, [`handle_poll_aborted`](Self::handle_poll_aborted),
/// [`handle_ws_input`](Self::handle_ws_input) (what each upgraded connection's
/// [`WsLink`] decoded) and [`handle_ws_written`](Self::handle_ws_written) (what it
/// wrote), [`handle_timeout`](Self::handle_timeout), and the
/// application's [`send`](Self::send) / [`close`](Self::close). After any input, drain
/// [`poll_transmit`](Self::poll_transmit), then [`poll_event`](Self::poll_event), then
/// re-arm one timer for [`poll_timeout`](Self::poll_timeout). Deadlines live in a heap,
/// so the cost of a timeout does not grow with the number of sessions.
#[derive(Debug)]
pub struct Server {
    config: Arc<Config>,
    ws_config: Arc<ws::Config>,
    rng: Rng,
    sessions: IdMap<SessionId, Box<Session>>,
    polls: IdMap<PollId, SessionId>,
    transports: IdMap<TransportId, WsTransport>,
    decoder: Option<MessageDecoder>,
    closing: IdMap<SessionId, Closing>,
    timers: BinaryHeap<Reverse<(Instant, TimerKey)>>,
    transmits: VecDeque<Transmit>,
    /// Events, each message's with what the message decoder made of it.
    events: VecDeque<(Event, Option<Decoded>)>,
    next_id: u64,
    /// Put before every new session id: the node tag of a cluster that routes requests
    /// by it (see [`set_sid_prefix`](Self::set_sid_prefix)).
    sid_prefix: Option<Arc<str>>,
    /// Messages and their bytes in and out, since the server started.
    traffic: Traffic,
}

/// Messages (Engine.IO `message` packets) and their payload bytes, in from clients and
/// out to them, counted since the server started; what `@socket.io/admin-ui` charts.
/// A message sent to many sessions counts once per session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Messages received.
    pub messages_in: u64,
    /// Their payload bytes.
    pub bytes_in: u64,
    /// Messages sent (or queued to be sent).
    pub messages_out: u64,
    /// Their payload bytes.
    pub bytes_out: u64,
}

impl Traffic {
    fn sent(&mut self, bytes: usize) {
        self.messages_out += 1;
        self.bytes_out += bytes as u64;
    }
}

impl Server {
    /// A server with `config`; `seed` seeds session ids (use OS randomness).
    pub fn new(config: Config, seed: [u8; 32]) -> Self {
        let mut ws_config = ws::Config::default().max_message_size(config.max_payload);
        ws_config.deflate = config.per_message_deflate.clone();
        Self {
            config: Arc::new(config),
            ws_config: Arc::new(ws_config),
            rng: Rng::from_seed(seed),
            sessions: IdMap::default(),
            polls: IdMap::default(),
            transports: IdMap::default(),
            decoder: None,
            closing: IdMap::default(),
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 1,
            sid_prefix: None,
            traffic: Traffic::default(),
        }
    }

    /// Starts every session id opened from now on with `prefix` (`None`: no prefix).
    /// A cluster without sticky sessions tags each id with the node that owns it, so
    /// that any node can tell where a request for it belongs.
    pub fn set_sid_prefix(&mut self, prefix: Option<&str>) {
        self.sid_prefix = prefix.map(Arc::from);
    }

    /// Has every WebSocket link accepted from now on run `decoder` on the messages it
    /// receives (a layer above Engine.IO decoding its packets outside the server).
    pub fn set_message_decoder(&mut self, decoder: MessageDecoder) {
        self.decoder = Some(decoder);
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How many sessions are open.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// How many open sessions are still on HTTP long-polling.
    pub fn polling_count(&self) -> usize {
        self.sessions
            .values()
            .filter(|s| s.websocket.is_none())
            .count()
    }

    /// The transport a session is on now, if it is open.
    pub fn transport_of(&self, sid: &SessionId) -> Option<TransportKind> {
        self.sessions.get(sid).map(|s| match s.websocket {
            Some(_) => TransportKind::WebSocket,
            None => TransportKind::Polling,
        })
    }

    /// Messages and bytes in and out since the server started.
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// No session is open, and none closed by the server still waits for its client
    /// to fetch its last packets.
    pub fn is_idle(&self) -> bool {
        self.sessions.is_empty() && self.closing.is_empty()
    }

    /// The largest request body worth reading: bigger ones are refused with 413 (set
    /// the HTTP layer's body cap to this).
    pub fn max_body_size(&self) -> usize {
        self.config.max_payload
    }

    // ----------------------------------------------------------------------------------
    // HTTP
    // ----------------------------------------------------------------------------------

    /// Answers an HTTP request for the Engine.IO path.
    pub fn handle_request(&mut self, now: Instant, request: &Request) -> Reply {
        self.handle_prepared(now, request, Prepared::default())
    }

    /// The stateless part of answering requests, to run apart from the server (see
    /// [`Preparer`]).
    pub fn preparer(&self) -> Preparer {
        Preparer {
            config: self.config.clone(),
            decoder: self.decoder.clone(),
        }
    }

    /// [`handle_request`](Self::handle_request), with what
    /// [`Preparer::prepare`] made of the request (a POST's payload, decoded).
    pub fn handle_prepared(
        &mut self,
        now: Instant,
        request: &Request,
        prepared: Prepared,
    ) -> Reply {
        // Deadlines that have passed fire first: a request never sees a session that
        // its heartbeat has already ended, however late the host's timer runs.
        self.handle_timeout(now);
        let head = &request.head;
        let cors = self.cors_headers(head.headers.get_str("origin"));
        let compress = match (&self.config.http_compression, head.method.as_str()) {
            (Some(c), "GET") => {
                ContentCoding::negotiate(head.headers.get_str("accept-encoding")).map(|z| (z, *c))
            }
            _ => None,
        };
        if let Some(cors_cfg) = &self.config.cors {
            if cors_cfg.origins.is_some() && head.headers.get("origin").is_some() && cors.is_empty()
            {
                return Reply::Respond(self.error(ErrorCode::Forbidden, Vec::new()));
            }
            if head.method == "OPTIONS" {
                return Reply::Respond(preflight(head, cors));
            }
        }
        let [eio, transport, sid, jsonp] = head.query_params(["EIO", "transport", "sid", "j"]);
        let protocol = match eio.as_deref() {
            Some("4") => Protocol::V4,
            Some("3") if self.config.allow_eio3 => Protocol::V3,
            _ => return Reply::Respond(self.error(ErrorCode::UnsupportedProtocolVersion, cors)),
        };
        let transport = match transport.as_deref() {
            Some("polling") if self.config.polling => TransportKind::Polling,
            Some("websocket") if self.config.websocket => TransportKind::WebSocket,
            _ => return Reply::Respond(self.error(ErrorCode::UnknownTransport, cors)),
        };
        if jsonp.is_some() {
            // JSONP was dropped by Engine.IO v4 and is not offered for v3 either.
            return Reply::Respond(self.error(ErrorCode::BadRequest, cors));
        }
        if sid.is_none() || transport == TransportKind::WebSocket {
            if let Some(AllowRequest(hook)) = &self.config.allow_request {
                if let Err(message) = hook(request) {
                    let body = serde_json::json!({"code": ErrorCode::Forbidden.code(), "message": message});
                    let response = Response::new(403)
                        .header("Content-Type", "application/json")
                        .body(body.to_string());
                    return Reply::Respond(with_cors(response, cors));
                }
            }
        }
        match (transport, sid) {
            (TransportKind::WebSocket, sid) => {
                let sid = sid.map(std::borrow::Cow::into_owned);
                self.websocket_request(now, request, protocol, sid)
            }
            (TransportKind::Polling, None) => {
                if head.method != "GET" {
                    return Reply::Respond(self.error(ErrorCode::BadHandshakeMethod, cors));
                }
                if self.sessions.len() >= self.config.max_sessions {
                    return Reply::Respond(server_full(cors));
                }
                let sid = self.open_session(now, request, protocol, TransportKind::Polling, None);
                let packets = self.take_buffer(&sid);
                Reply::Respond(polling_response(
                    encode_payload(&packets, protocol),
                    cors,
                    compress,
                ))
            }
            (TransportKind::Polling, Some(sid)) => {
                let Some(session) = self.sessions.get(&*sid) else {
                    return Reply::Respond(self.closing_request(
                        head.method == "GET",
                        &sid,
                        cors,
                        compress,
                    ));
                };
                if session.websocket.is_some() {
                    return Reply::Respond(self.error(ErrorCode::BadRequest, cors));
                }
                let sid = session.id.clone();
                match head.method.as_str() {
                    "GET" => self.poll(now, sid, cors, compress),
                    "POST" => self.post(now, sid, &request.body, cors, prepared),
                    _ => Reply::Respond(self.error(ErrorCode::BadRequest, cors)),
                }
            }
        }
    }

    /// A request for a session in its grace period after a server close: a GET takes
    /// the last packets (and ends the grace), a POST is read and ignored.
    fn closing_request(
        &mut self,
        get: bool,
        sid: &str,
        cors: Vec<(&'static str, String)>,
        compress: Compress,
    ) -> Response {
        let closing = if get { self.closing.remove(sid) } else { None };
        match closing {
            Some(c) => polling_response(encode_payload(&c.packets, c.protocol), cors, compress),
            None if !get && self.closing.contains_key(sid) => post_ok(cors),
            None => self.error(ErrorCode::UnknownSid, cors),
        }
    }

    /// A parked poll's client went away before its response: like the reference, the
    /// session is closed (`transport error`).
    pub fn handle_poll_aborted(&mut self, now: Instant, poll: PollId) {
        let Some(sid) = self.polls.remove(&poll) else {
            return;
        };
        if let Some(session) = self.sessions.get_mut(&sid) {
            if session.parked.as_ref().is_some_and(|p| p.id == poll) {
                session.parked = None;
                self.close_session(now, &sid, CloseReason::TransportError);
            }
        }
    }

    fn poll(
        &mut self,
        now: Instant,
        sid: SessionId,
        cors: Vec<(&'static str, String)>,
        compress: Compress,
    ) -> Reply {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return Reply::Respond(self.error(ErrorCode::UnknownSid, cors));
        };
        if session.parked.is_some() {
            // A second concurrent GET: refuse it and close the session, as the
            // reference does; the first poll gets the close packet.
            let reply = Reply::Respond(self.error(ErrorCode::BadRequest, cors));
            self.close_session(now, &sid, CloseReason::TransportError);
            return reply;
        }
        let protocol = session.protocol;
        if !session.buffer.is_empty() {
            let packets = self.take_buffer(&sid);
            return Reply::Respond(polling_response(
                encode_payload(&packets, protocol),
                cors,
                compress,
            ));
        }
        if let Some(upgrade) = &mut session.upgrade {
            // Once probed, a poll with nothing to carry ends at once with a noop, so
            // that the client can pause polling and complete the upgrade (the reference
            // re-sends it every 100 ms for the same reason). Only once: a client that
            // polls again before it has seen the probe's answer waits (its poll ends
            // with the upgrade) instead of spinning on noops.
            if upgrade.probed && !upgrade.noop_delivered {
                upgrade.noop_delivered = true;
                return Reply::Respond(polling_response(
                    encode_payload(&[Packet::bare(PacketType::Noop)], protocol),
                    cors,
                    None,
                ));
            }
        }
        let id = PollId(self.next_id());
        if let Some(session) = self.sessions.get_mut(&sid) {
            session.parked = Some(Box::new(Parked { id, cors, compress }));
            if let Some(upgrade) = session.upgrade.as_mut().filter(|u| u.probed) {
                upgrade.noop_at = Some(now + UPGRADE_CHECK);
            }
        }
        self.polls.insert(id, sid.clone());
        self.arm_session(&sid);
        Reply::Park(id)
    }

    fn post(
        &mut self,
        now: Instant,
        sid: SessionId,
        body: &Bytes,
        cors: Vec<(&'static str, String)>,
        prepared: Prepared,
    ) -> Reply {
        let protocol = match self.sessions.get(&sid) {
            Some(s) => s.protocol,
            None => return Reply::Respond(self.error(ErrorCode::UnknownSid, cors)),
        };
        let decoded = match prepared.0 {
            Some((p, decoded)) if p == protocol => decoded,
            // Not prepared, or for another protocol than the session's: decoded here.
            _ => decode_post(&self.config, self.decoder.as_ref(), protocol, body),
        };
        let packets = match decoded {
            Ok(p) => p,
            Err(PostError::TooLarge) => return self.payload_too_large(now, &sid),
            Err(PostError::Invalid) => {
                self.close_session(now, &sid, CloseReason::ParseError);
                return Reply::Respond(self.error(ErrorCode::BadRequest, cors));
            }
        };
        for (packet, decoded) in packets {
            if !self.sessions.contains_key(&sid) {
                break;
            }
            self.on_packet(now, &sid, packet, decoded);
        }
        Reply::Respond(post_ok(cors))
    }

    /// A POST over `max_payload` or `max_packets`: 413, and the session is closed.
    fn payload_too_large(&mut self, now: Instant, sid: &SessionId) -> Reply {
        self.close_session(now, sid, CloseReason::TransportError);
        Reply::Respond(Response::new(413).body("payload too large"))
    }

    fn websocket_request(
        &mut self,
        now: Instant,
        request: &Request,
        protocol: Protocol,
        sid: Option<String>,
    ) -> Reply {
        let cors = self.cors_headers(request.head.headers.get_str("origin"));
        let upgrade = match ws::handshake::validate(request.head.clone()) {
            Ok(u) => u,
            Err(e) => {
                return Reply::Respond(
                    Response::new(e.status())
                        .header("Content-Type", "text/plain; charset=utf-8")
                        .body(e.to_string()),
                )
            }
        };
        let owner = match sid {
            None if self.sessions.len() >= self.config.max_sessions => {
                return Reply::Respond(server_full(cors))
            }
            None => None,
            Some(sid) => match self.sessions.get(sid.as_str()) {
                None => return Reply::Respond(self.error(ErrorCode::UnknownSid, cors)),
                Some(s) if s.websocket.is_some() || s.upgrade.is_some() => {
                    return Reply::Respond(self.error(ErrorCode::BadRequest, cors))
                }
                Some(s) => Some(s.id.clone()),
            },
        };
        let tid = TransportId(self.next_id());
        let conn = ws::Connection::accept(self.ws_config.clone(), upgrade, now);
        let link = Box::new(WsLink::new(tid, protocol, conn, self.decoder.clone()));
        self.transports.insert(
            tid,
            WsTransport {
                sid: owner.clone(),
                closing: false,
                unsent: 0,
            },
        );
        match owner {
            Some(sid) => {
                if let Some(session) = self.sessions.get_mut(&sid) {
                    session.upgrade = Some(Box::new(Upgrade {
                        transport: tid,
                        probed: false,
                        noop_delivered: false,
                        noop_at: None,
                        deadline: now + self.config.upgrade_timeout,
                    }));
                }
                self.arm_session(&sid);
            }
            None => {
                let sid =
                    self.open_session(now, request, protocol, TransportKind::WebSocket, Some(tid));
                if let Some(t) = self.transports.get_mut(&tid) {
                    t.sid = Some(sid.clone());
                }
                self.flush(&sid);
            }
        }
        Reply::Upgrade(link)
    }

    // ----------------------------------------------------------------------------------
    // WebSocket transports
    // ----------------------------------------------------------------------------------

    /// What a WebSocket transport's [`WsLink`] decoded (see [`WsLink::deliver`]).
    pub fn handle_ws_input(&mut self, now: Instant, transport: TransportId, input: WsInput) {
        self.handle_timeout(now);
        match input {
            WsInput::Packet { packet, decoded } => {
                self.on_ws_packet(now, transport, Ok((packet, decoded)))
            }
            WsInput::Invalid => self.on_ws_packet(now, transport, Err(())),
            WsInput::Closed { clean } => self.on_ws_closed(now, transport, clean),
        }
    }

    /// `bytes` of a WebSocket transport's output were written to its connection (as
    /// counted by [`WsLink::take_written`]): they no longer count against
    /// [`Config::max_buffered`].
    pub fn handle_ws_written(&mut self, transport: TransportId, bytes: usize) {
        if let Some(t) = self.transports.get_mut(&transport) {
            t.unsent = t.unsent.saturating_sub(bytes);
        }
    }

    /// A session whose WebSocket has more than [`Config::max_buffered`] bytes unwritten
    /// is a slow consumer: it is closed (`transport error`) and its connection dropped
    /// at once (a close frame would only queue behind what it does not read).
    fn check_backlog(&mut self, tid: TransportId) {
        let Some(t) = self.transports.get(&tid) else {
            return;
        };
        if t.unsent <= self.config.max_buffered {
            return;
        }
        let sid = t.sid.clone();
        self.transports.remove(&tid);
        self.transmits.push_back(Transmit::AbortTransport(tid));
        if let Some(sid) = sid {
            if self
                .sessions
                .get(&sid)
                .is_some_and(|s| s.websocket == Some(tid))
            {
                self.close_session_quiet(&sid, CloseReason::TransportError);
            } else if let Some(session) = self.sessions.get_mut(&sid) {
                // A probing transport: the session stays on polling.
                session.upgrade = None;
            }
        }
    }

    /// Hands `output` to a transport's link, counting what it will write (nothing
    /// once the transport is closing). False if there is no such transport.
    fn ws_output(&mut self, tid: TransportId, output: WsOutput) -> bool {
        let Some(t) = self.transports.get_mut(&tid) else {
            return false;
        };
        if t.closing {
            return true;
        }
        t.unsent += output.counted();
        t.closing = matches!(output, WsOutput::Close(..));
        let over = t.unsent > self.config.max_buffered;
        self.transmits.push_back(Transmit::Ws {
            transport: tid,
            output,
        });
        if over {
            self.check_backlog(tid);
        }
        true
    }

    /// Closes a transport: it leaves its session and gets a close frame.
    fn ws_close(&mut self, tid: TransportId, code: CloseCode, reason: &'static str) {
        if let Some(t) = self.transports.get_mut(&tid) {
            t.sid = None;
        }
        self.ws_output(tid, WsOutput::Close(code, reason));
    }

    fn on_ws_packet(
        &mut self,
        now: Instant,
        tid: TransportId,
        packet: Result<(Packet, Option<Decoded>), ()>,
    ) {
        let Some(sid) = self.transports.get(&tid).and_then(|t| t.sid.clone()) else {
            return;
        };
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let protocol = session.protocol;
        let is_probe = session.upgrade.as_ref().is_some_and(|u| u.transport == tid);
        if !is_probe {
            match packet {
                Ok((p, decoded)) => self.on_packet(now, &sid, p, decoded),
                Err(_) => self.close_session(now, &sid, CloseReason::ParseError),
            }
            return;
        }
        match packet.map(|(p, _)| p) {
            Ok(Packet {
                kind: PacketType::Ping,
                data: Data::Text(t),
            }) if t.as_str() == "probe" => {
                self.ws_send(tid, Packet::text(PacketType::Pong, "probe"));
                let Some(session) = self.sessions.get_mut(&sid) else {
                    return;
                };
                let parked = session.parked.take();
                if let Some(upgrade) = &mut session.upgrade {
                    upgrade.probed = true;
                    if let Some(parked) = parked {
                        upgrade.noop_delivered = true;
                        self.polls.remove(&parked.id);
                        let body = encode_payload(&[Packet::bare(PacketType::Noop)], protocol);
                        self.transmits.push_back(Transmit::Respond {
                            poll: parked.id,
                            response: polling_response(body, parked.cors, None),
                        });
                    }
                }
            }
            Ok(Packet {
                kind: PacketType::Upgrade,
                ..
            }) if session.upgrade.as_ref().is_some_and(|u| u.probed) => {
                session.upgrade = None;
                session.websocket = Some(tid);
                if let Some(parked) = session.parked.take() {
                    self.polls.remove(&parked.id);
                    let body = encode_payload(&[Packet::bare(PacketType::Noop)], protocol);
                    self.transmits.push_back(Transmit::Respond {
                        poll: parked.id,
                        response: polling_response(body, parked.cors, None),
                    });
                }
                // No noop over the WebSocket (the reference sends none): the client
                // paused polling before it sent the upgrade packet.
                self.emit(Event::Upgraded { sid: sid.clone() });
                self.flush(&sid);
                self.arm_session(&sid);
            }
            _ => {
                // Anything else on a probing transport: the upgrade fails, the session
                // stays on polling.
                session.upgrade = None;
                self.ws_close(tid, CloseCode::PROTOCOL_ERROR, "invalid upgrade");
            }
        }
    }

    fn on_ws_closed(&mut self, now: Instant, tid: TransportId, clean: bool) {
        let Some(sid) = self.transports.remove(&tid).and_then(|t| t.sid) else {
            return;
        };
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        if session.upgrade.as_ref().is_some_and(|u| u.transport == tid) {
            session.upgrade = None;
            return;
        }
        if session.websocket == Some(tid) {
            let reason = if clean {
                CloseReason::TransportClose
            } else {
                CloseReason::TransportError
            };
            self.close_session(now, &sid, reason);
        }
    }

    fn ws_send(&mut self, tid: TransportId, packet: Packet) {
        self.ws_send_with(tid, packet, None);
    }

    fn ws_send_with(&mut self, tid: TransportId, packet: Packet, compress: Option<bool>) {
        self.ws_output(tid, WsOutput::Packet { packet, compress });
    }

    // ----------------------------------------------------------------------------------
    // Sessions
    // ----------------------------------------------------------------------------------

    fn open_session(
        &mut self,
        now: Instant,
        request: &Request,
        protocol: Protocol,
        transport: TransportKind,
        websocket: Option<TransportId>,
    ) -> SessionId {
        let sid = loop {
            let mut raw = [0u8; 15];
            self.rng.fill(&mut raw);
            let random = URL_SAFE_NO_PAD.encode(raw);
            let sid = SessionId(match &self.sid_prefix {
                Some(prefix) => format!("{prefix}{random}").as_str().into(),
                None => random.as_str().into(),
            });
            if !self.sessions.contains_key(&sid) {
                break sid;
            }
        };
        let upgrades = if transport == TransportKind::Polling && self.config.websocket {
            "[\"websocket\"]"
        } else {
            "[]"
        };
        let open = format!(
            "{{\"sid\":\"{sid}\",\"upgrades\":{upgrades},\"pingInterval\":{},\"pingTimeout\":{},\"maxPayload\":{}}}",
            self.config.ping_interval.as_millis(),
            self.config.ping_timeout.as_millis(),
            self.config.max_payload
        );
        let (next_ping, pong_deadline) = match protocol {
            Protocol::V4 => (Some(now + self.config.ping_interval), None),
            Protocol::V3 => (
                None,
                Some(now + self.config.ping_interval + self.config.ping_timeout),
            ),
        };
        self.sessions.insert(
            sid.clone(),
            Box::new(Session {
                id: sid.clone(),
                protocol,
                websocket,
                parked: None,
                buffer: vec![Packet::text(PacketType::Open, open)],
                buffered_bytes: 0,
                upgrade: None,
                next_ping,
                pong_deadline,
                armed: None,
            }),
        );
        self.arm_session(&sid);
        self.emit(Event::Open {
            sid: sid.clone(),
            handshake: Box::new(Handshake {
                protocol,
                transport,
                target: request.head.target.clone(),
                headers: request.head.headers.clone(),
                peer_addr: request.peer_addr,
                secure: request.secure,
                extensions: request.extensions.clone(),
            }),
        });
        sid
    }

    fn on_packet(
        &mut self,
        now: Instant,
        sid: &SessionId,
        packet: Packet,
        decoded: Option<Decoded>,
    ) {
        let Some(session) = self.sessions.get_mut(sid) else {
            return;
        };
        match packet.kind {
            PacketType::Message => {
                self.traffic.messages_in += 1;
                self.traffic.bytes_in += packet.data.as_bytes().len() as u64;
                self.events.push_back((
                    Event::Message {
                        sid: sid.clone(),
                        data: packet.data,
                    },
                    decoded,
                ))
            }
            PacketType::Ping => {
                if session.protocol == Protocol::V3 {
                    session.pong_deadline =
                        Some(now + self.config.ping_interval + self.config.ping_timeout);
                }
                self.enqueue(
                    sid,
                    Packet {
                        kind: PacketType::Pong,
                        data: packet.data,
                    },
                );
                self.arm_session(sid);
            }
            PacketType::Pong => {
                // Only a pong that answers our ping moves the heartbeat: unsolicited
                // ones would otherwise defer the next ping (and so keep a poll parked)
                // for ever.
                if session.protocol == Protocol::V4 && session.pong_deadline.is_some() {
                    session.pong_deadline = None;
                    session.next_ping = Some(now + self.config.ping_interval);
                    self.arm_session(sid);
                }
            }
            PacketType::Close => self.close_session(now, sid, CloseReason::TransportClose),
            PacketType::Open | PacketType::Upgrade | PacketType::Noop => {}
        }
    }

    /// Queues a message for a session.
    pub fn send(&mut self, sid: &SessionId, data: Data) -> Result<(), SendError> {
        if !self.sessions.contains_key(sid) {
            return Err(SendError::UnknownSession);
        }
        self.traffic.sent(data.as_bytes().len());
        self.enqueue(sid, Packet::message(data));
        Ok(())
    }

    /// Queues a message, choosing WebSocket compression for it (`Some(false)`: never,
    /// `Some(true)`: always if permessage-deflate was negotiated, `None`: by size). The
    /// choice applies when the message goes straight onto an open WebSocket transport;
    /// a message that has to wait in the session's buffer is sent by the size rule.
    pub fn send_with(
        &mut self,
        sid: &SessionId,
        data: Data,
        compress: Option<bool>,
    ) -> Result<(), SendError> {
        let Some(session) = self.sessions.get(sid) else {
            return Err(SendError::UnknownSession);
        };
        // Straight onto an open WebSocket with nothing queued before it (what the
        // buffer would do at once, without going through it).
        match (session.websocket, session.buffer.is_empty()) {
            (Some(tid), true) => {
                self.traffic.sent(data.as_bytes().len());
                self.ws_send_with(tid, Packet::message(data), compress);
                Ok(())
            }
            _ => self.send(sid, data),
        }
    }

    /// Queues a message encoded once for many sessions: a v4 WebSocket session with
    /// nothing waiting gets the shared frame (no copy, no compression); any other gets
    /// it like [`send_with`](Self::send_with).
    pub fn send_shared(
        &mut self,
        sid: &SessionId,
        message: &SharedMessage,
        compress: Option<bool>,
    ) -> Result<(), SendError> {
        let Some(session) = self.sessions.get(sid) else {
            return Err(SendError::UnknownSession);
        };
        let direct = session.takes_shared_frame(compress);
        self.send_shared_via(direct, sid, message, compress)
    }

    /// Queues `message` for session `sid`: the shared frame on `direct` (its transport,
    /// from [`Session::takes_shared_frame`]) if that takes it, a copy otherwise.
    fn send_shared_via(
        &mut self,
        direct: Option<TransportId>,
        sid: &SessionId,
        message: &SharedMessage,
        compress: Option<bool>,
    ) -> Result<(), SendError> {
        // One lookup of the transport, per recipient of a broadcast.
        if direct.is_some_and(|t| self.ws_output(t, WsOutput::Prepared(message.frame.clone()))) {
            self.traffic.sent(message.data.as_bytes().len());
            return Ok(());
        }
        self.send_with(sid, message.data.clone(), compress)
    }

    /// [`send_shared`](Self::send_shared) of each of `messages`, in order, to each of
    /// `sids` (a broadcast's recipients). They go in groups: every session of a group
    /// is looked up before any is written to, then every transport, so that the cache
    /// misses of a group's lookups overlap instead of following one another (at
    /// thousands of recipients they are most of the time per recipient). A session
    /// that is gone is skipped.
    pub fn send_shared_to(
        &mut self,
        sids: &[&SessionId],
        messages: &[SharedMessage],
        compress: Option<bool>,
    ) {
        for group in sids.chunks(SEND_GROUP) {
            let mut direct = [None; SEND_GROUP];
            for (slot, sid) in direct.iter_mut().zip(group) {
                *slot = (self.sessions.get(*sid)).and_then(|s| s.takes_shared_frame(compress));
            }
            for message in messages {
                for (&tid, sid) in direct.iter().zip(group) {
                    let _ = self.send_shared_via(tid, sid, message, compress);
                }
            }
        }
    }

    /// The session can take a message right now: it has a parked poll, or a WebSocket
    /// transport with at most [`VOLATILE_LOW_WATER`] bytes unwritten (what `volatile`
    /// emits check).
    pub fn is_writable(&self, sid: &SessionId) -> bool {
        self.sessions.get(sid).is_some_and(|s| match s.websocket {
            Some(tid) => self
                .transports
                .get(&tid)
                .is_some_and(|t| t.unsent <= VOLATILE_LOW_WATER),
            None => s.parked.is_some(),
        })
    }

    /// Closes a session from the server side (`forced close`): a parked poll gets what
    /// was queued and a close packet; a WebSocket gets what was queued and a close frame.
    pub fn close(&mut self, now: Instant, sid: &SessionId) -> Result<(), SendError> {
        if !self.sessions.contains_key(sid) {
            return Err(SendError::UnknownSession);
        }
        self.close_session(now, sid, CloseReason::ForcedClose);
        Ok(())
    }

    fn enqueue(&mut self, sid: &SessionId, packet: Packet) {
        let Some(session) = self.sessions.get_mut(sid) else {
            return;
        };
        session.buffered_bytes += packet.data.as_bytes().len() + PACKET_OVERHEAD;
        session.buffer.push(packet);
        if session.buffered_bytes > self.config.max_buffered
            && session.parked.is_none()
            && session.websocket.is_none()
        {
            // A polling client that stopped polling while data piles up.
            let sid = sid.clone();
            self.close_session_quiet(&sid, CloseReason::TransportError);
            return;
        }
        self.flush(sid);
    }

    /// Sends what a session has queued, if its transport can take it now.
    fn flush(&mut self, sid: &SessionId) {
        let Some(session) = self.sessions.get_mut(sid) else {
            return;
        };
        if session.buffer.is_empty() {
            return;
        }
        if let Some(tid) = session.websocket {
            let packets = std::mem::take(&mut session.buffer);
            session.buffered_bytes = 0;
            for p in packets {
                self.ws_send(tid, p);
            }
            return;
        }
        if let Some(parked) = session.parked.take() {
            let protocol = session.protocol;
            let packets = std::mem::take(&mut session.buffer);
            session.buffered_bytes = 0;
            self.polls.remove(&parked.id);
            self.transmits.push_back(Transmit::Respond {
                poll: parked.id,
                response: polling_response(
                    encode_payload(&packets, protocol),
                    parked.cors,
                    parked.compress,
                ),
            });
        }
    }

    fn take_buffer(&mut self, sid: &SessionId) -> Vec<Packet> {
        match self.sessions.get_mut(sid) {
            Some(s) => {
                s.buffered_bytes = 0;
                std::mem::take(&mut s.buffer)
            }
            None => Vec::new(),
        }
    }

    fn close_session(&mut self, now: Instant, sid: &SessionId, reason: CloseReason) {
        let Some(mut session) = self.sessions.remove(sid) else {
            return;
        };
        let protocol = session.protocol;
        if let Some(parked) = session.parked.take() {
            self.polls.remove(&parked.id);
            let mut packets = match reason {
                CloseReason::ForcedClose => std::mem::take(&mut session.buffer),
                _ => Vec::new(),
            };
            packets.push(Packet::bare(match reason {
                // The client asked: end its poll quietly.
                CloseReason::TransportClose => PacketType::Noop,
                _ => PacketType::Close,
            }));
            self.transmits.push_back(Transmit::Respond {
                poll: parked.id,
                response: polling_response(
                    encode_payload(&packets, protocol),
                    parked.cors,
                    parked.compress,
                ),
            });
        } else if reason == CloseReason::ForcedClose && session.websocket.is_none() {
            // Nothing parked to carry the last packets: keep them for the next poll.
            let mut packets = std::mem::take(&mut session.buffer);
            packets.push(Packet::bare(PacketType::Close));
            let until = now + self.config.ping_timeout;
            self.closing.insert(
                sid.clone(),
                Closing {
                    protocol,
                    packets,
                    until,
                },
            );
            self.timers
                .push(Reverse((until, TimerKey::Closing(sid.clone()))));
        }
        for tid in session
            .websocket
            .into_iter()
            .chain(session.upgrade.map(|u| u.transport))
        {
            if reason == CloseReason::ForcedClose {
                for p in session.buffer.drain(..) {
                    self.ws_send(tid, p);
                }
            }
            let code = if reason == CloseReason::ParseError {
                CloseCode::PROTOCOL_ERROR
            } else {
                CloseCode::NORMAL
            };
            self.ws_close(tid, code, "");
        }
        self.emit(Event::Closed {
            sid: sid.clone(),
            reason,
        });
    }

    /// Closes a session with nothing left to deliver to it.
    fn close_session_quiet(&mut self, sid: &SessionId, reason: CloseReason) {
        if let Some(session) = self.sessions.remove(sid) {
            if let Some(parked) = session.parked {
                self.polls.remove(&parked.id);
            }
            self.emit(Event::Closed {
                sid: sid.clone(),
                reason,
            });
        }
    }

    // ----------------------------------------------------------------------------------
    // Time
    // ----------------------------------------------------------------------------------

    fn arm_session(&mut self, sid: &SessionId) {
        let Some(session) = self.sessions.get_mut(sid) else {
            return;
        };
        if let Some(d) = session.deadline() {
            if session.armed.is_none_or(|a| d < a) {
                session.armed = Some(d);
                self.timers
                    .push(Reverse((d, TimerKey::Session(sid.clone()))));
            }
        }
    }

    /// Fires every deadline that has passed. Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, key))) = self.timers.pop() else {
                break;
            };
            match key {
                TimerKey::Session(sid) => {
                    let Some(session) = self.sessions.get_mut(&sid) else {
                        continue;
                    };
                    if session.armed != Some(at) {
                        continue; // stale: a newer entry is in the heap
                    }
                    session.armed = None;
                    self.session_timeout(now, &sid);
                    self.arm_session(&sid);
                }
                TimerKey::Closing(sid) => {
                    if self.closing.get(&sid).is_some_and(|c| c.until <= now) {
                        self.closing.remove(&sid);
                    }
                }
            }
        }
    }

    fn session_timeout(&mut self, now: Instant, sid: &SessionId) {
        let Some(session) = self.sessions.get_mut(sid) else {
            return;
        };
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if due(session.pong_deadline) {
            self.close_session(now, sid, CloseReason::PingTimeout);
            return;
        }
        if session.upgrade.as_ref().is_some_and(|u| u.deadline <= now) {
            if let Some(upgrade) = session.upgrade.take() {
                self.ws_close(
                    upgrade.transport,
                    CloseCode::POLICY_VIOLATION,
                    "upgrade timeout",
                );
            }
        }
        let Some(session) = self.sessions.get_mut(sid) else {
            return;
        };
        let protocol = session.protocol;
        if let Some(upgrade) = session.upgrade.as_mut().filter(|u| due(u.noop_at)) {
            upgrade.noop_at = None;
            if let Some(parked) = session.parked.take() {
                self.polls.remove(&parked.id);
                let body = encode_payload(&[Packet::bare(PacketType::Noop)], protocol);
                self.transmits.push_back(Transmit::Respond {
                    poll: parked.id,
                    response: polling_response(body, parked.cors, None),
                });
            }
        }
        let Some(session) = self.sessions.get_mut(sid) else {
            return;
        };
        if let Some(scheduled) = session.next_ping.filter(|&t| t <= now) {
            // Counted from when the ping was due, not from when the timer fired.
            session.next_ping = None;
            session.pong_deadline = Some(scheduled + self.config.ping_timeout);
            self.enqueue(sid, Packet::bare(PacketType::Ping));
        }
    }

    // ----------------------------------------------------------------------------------
    // Outputs
    // ----------------------------------------------------------------------------------

    /// The next output: a response to a parked poll, bytes for a WebSocket transport,
    /// or a transport to close.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front().map(|(event, _)| event)
    }

    /// The next event, and for a message what the
    /// [message decoder](Self::set_message_decoder) made of it (a layer above
    /// Engine.IO takes its events this way).
    #[must_use]
    pub fn poll_event_decoded(&mut self) -> Option<(Event, Option<Decoded>)> {
        self.events.pop_front()
    }

    fn emit(&mut self, event: Event) {
        self.events.push_back((event, None));
    }

    /// The earliest deadline (possibly early: a spurious wake-up is harmless).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn cors_headers(&self, origin: Option<&str>) -> Vec<(&'static str, String)> {
        let Some(cors) = &self.config.cors else {
            return Vec::new();
        };
        let allow = match (&cors.origins, origin) {
            (None, _) => "*".to_owned(),
            (Some(list), Some(o)) if list.iter().any(|a| a == o) => o.to_owned(),
            (Some(_), _) => return Vec::new(),
        };
        let mut headers = Vec::with_capacity(3);
        if allow != "*" {
            headers.push(("Vary", "Origin".to_owned()));
        }
        headers.push(("Access-Control-Allow-Origin", allow));
        if cors.credentials {
            headers.push(("Access-Control-Allow-Credentials", "true".to_owned()));
        }
        headers
    }

    fn error(&self, code: ErrorCode, cors: Vec<(&'static str, String)>) -> Response {
        with_cors(code.response(), cors)
    }
}

/// `response` with the CORS headers.
fn with_cors(mut response: Response, cors: Vec<(&'static str, String)>) -> Response {
    response
        .headers
        .extend(cors.into_iter().map(|(k, v)| (k.into(), v)));
    response
}

/// The answer to a handshake past [`Config::max_sessions`].
fn server_full(cors: Vec<(&'static str, String)>) -> Response {
    let response = Response::new(503)
        .header("Content-Type", "application/json")
        .body(r#"{"code":4,"message":"Server full"}"#);
    with_cors(response, cors)
}

/// The answer to a POST that was read.
fn post_ok(cors: Vec<(&'static str, String)>) -> Response {
    let response = Response::new(200)
        .header("Content-Type", "text/html")
        .body("ok");
    with_cors(response, cors)
}

/// A payload for a poll: compressed as `compress` allows (as the reference does, only
/// from its threshold on).
fn polling_response(
    body: Bytes,
    cors: Vec<(&'static str, String)>,
    compress: Compress,
) -> Response {
    let mut response = Response::new(200).header("Content-Type", "text/plain; charset=UTF-8");
    response.body = match compress {
        Some((coding, c)) if body.len() >= c.threshold => {
            response = response.header("Content-Encoding", coding.as_str());
            coding.encode(&body, c.level)
        }
        _ => body,
    };
    with_cors(response, cors)
}

fn preflight(head: &crate::http::RequestHead, cors: Vec<(&'static str, String)>) -> Response {
    let mut response =
        Response::new(204).header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    if let Some(h) = head.headers.get_str("access-control-request-headers") {
        response = response.header("Access-Control-Allow-Headers", h);
    }
    with_cors(response, cors)
}
