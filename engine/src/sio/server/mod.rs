//! The Socket.IO server: namespaces, sockets, rooms, acks and recovery over one
//! Engine.IO server, sans-IO.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::packet::{DecodeLimits, Decoder, Incoming, Packet, PacketType, Parsed, Payload};
use crate::eio::{
    self, Data, Handshake, PollId, Protocol, Reply, SessionId, SharedMessage, Transmit,
    TransportId, WsInput,
};
use crate::http::Request;
use crate::rand::Rng;
use crate::{IdMap, IdSet};

mod acks;
mod broadcast;
mod recovery;
mod vocab;

use crate::{SmallMap, SmallSet};

pub use vocab::*;

#[derive(Debug)]
struct Client {
    protocol: Protocol,
    handshake: Arc<Handshake>,
    decoder: Decoder,
    /// Its sockets, by namespace.
    sockets: SmallMap<Arc<str>, Sid>,
    /// Its CONNECTs waiting for the application, by namespace.
    pending: SmallMap<Arc<str>, Value>,
    close_reason: Option<DisconnectReason>,
    ever_connected: bool,
    /// When the binary packet being reassembled began, if one is.
    reassembling_since: Option<Instant>,
}

#[derive(Debug)]
struct Socket {
    info: Arc<ConnectInfo>,
    /// `info.session`, copied here: what a broadcast reads of each recipient, found in
    /// the socket without a visit to its connect details.
    session: SessionId,
    /// The rooms it joined: few nearly always. Its own room (named by its id) is not
    /// among them: see [`Namespace::own_room`].
    rooms: SmallSet<Room>,
    /// The broadcast acks it owes.
    acks: SmallSet<u64>,
    pid: Option<Arc<str>>,
}

#[derive(Debug, Default)]
struct Namespace {
    sockets: IdSet<Sid>,
    /// The members of each room that sockets joined. A socket's own room has no
    /// entry: it is implied by the socket (see [`own_room`](Self::own_room)), which
    /// spares every socket a table entry and a member vector.
    rooms: HashMap<Room, SmallSet<Sid>>,
    /// The sockets that left their own room (`socket.leave(socket.id)`): rare.
    left_own: IdSet<Sid>,
    /// Declared with [`Server::add_namespace`]: kept when empty (a dynamic one is
    /// removed with its last socket).
    declared: bool,
}

impl Namespace {
    /// The socket whose own room `room` is, if it is still in it.
    fn own_room(&self, room: &str) -> Option<&Sid> {
        self.sockets
            .get(room)
            .filter(|sid| !self.left_own.contains(*sid))
    }

    /// The members of `room`: the sockets that joined it, and the one whose own room it
    /// is (never among those: joining one's own room joins nothing).
    fn members<'a>(&'a self, room: &str) -> impl Iterator<Item = &'a Sid> + 'a {
        let joined = self.rooms.get(room).into_iter().flatten();
        joined.chain(self.own_room(room))
    }

    /// Whether `room` has members.
    fn has_room(&self, room: &str) -> bool {
        self.rooms.contains_key(room) || self.own_room(room).is_some()
    }

    /// `sid` joins `room` (not its own): the room's name as the namespace keeps it (one
    /// copy however many sockets join), and whether that made the room (it had no
    /// member and names no socket).
    fn add_member(&mut self, room: &Room, sid: &Sid) -> (Room, bool) {
        let implied = self.own_room(room).is_some();
        let (name, members) = match self.rooms.entry(room.clone()) {
            Entry::Occupied(e) => {
                let name = e.key().clone();
                (name, e.into_mut())
            }
            Entry::Vacant(e) => (room.clone(), e.insert(SmallSet::default())),
        };
        let created = members.is_empty() && !implied;
        members.insert(sid.clone());
        (name, created)
    }

    /// `sid` leaves `room` (not its own): the room, if that emptied it (an emptied room
    /// named by a socket's id lives on as that socket's own).
    fn remove_member(&mut self, room: &str, sid: &Sid) -> Option<Room> {
        let members = self.rooms.get_mut(room)?;
        members.remove(sid);
        if !members.is_empty() {
            return None;
        }
        let (room, _) = self.rooms.remove_entry(room)?;
        self.own_room(&room).is_none().then_some(room)
    }
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
    /// A binary packet began reassembling at this instant.
    Reassembly(SessionId, Instant),
    Ack(u64),
    Kept(Arc<str>),
}

/// The Socket.IO server: one Engine.IO server and the Socket.IO state above it.
///
/// # Driving it
/// Exactly like [`eio::Server`], whose inputs it takes (`handle_request`,
/// `handle_poll_aborted`, `handle_ws_input`, `handle_ws_written`, `handle_timeout`) and
/// whose transmits it hands on ([`poll_transmit`](Self::poll_transmit)); its events
/// are Socket.IO [`Event`]s. The application answers [`Event::Connecting`] with
/// [`accept`](Self::accept) / [`reject`](Self::reject) and emits with
/// [`emit`](Self::emit), [`broadcast`](Self::broadcast) and their `_with_ack` forms.
pub struct Server {
    eio: eio::Server,
    config: Config,
    rng: Rng,
    clients: IdMap<SessionId, Box<Client>>,
    sockets: IdMap<Sid, Box<Socket>>,
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
    /// Sessions that must join a namespace by a deadline, in the order they opened,
    /// which is their deadlines' order (one timeout for all). Taken off the front as
    /// they connect, so a connected session keeps no timer.
    connecting: VecDeque<(Instant, SessionId)>,
    events: VecDeque<Event>,
    shutting_down: bool,
    /// Emit [`Event::Room`] (a cluster driver subscribing per room).
    room_events: bool,
    /// Emit [`Event::Activity`] (a monitoring tool is watching).
    activity_events: bool,
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
            eio: {
                let mut eio = eio::Server::new(config.eio.clone(), eio_seed);
                let limits = config.decode_limits;
                if config.parser == super::packet::Parser::Default {
                    eio.set_message_decoder(eio::MessageDecoder::new(move |data| match data {
                        Data::Text(text) => Some(Box::new(Decoder::parse(text, &limits))),
                        Data::Binary(_) => None,
                    }));
                }
                eio
            },
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
            connecting: VecDeque::new(),
            events: VecDeque::new(),
            shutting_down: false,
            room_events: false,
            activity_events: false,
        }
    }

    /// The options.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Turns [`Event::Room`] on or off (default off): for a cluster driver that
    /// listens per room.
    pub fn set_room_events(&mut self, yes: bool) {
        self.room_events = yes;
    }

    /// Turns [`Event::Activity`] on or off (default off): for a monitoring tool such as
    /// `@socket.io/admin-ui`.
    pub fn set_activity_events(&mut self, yes: bool) {
        self.activity_events = yes;
    }

    fn activity(&mut self, activity: Activity) {
        if self.activity_events {
            self.events.push_back(Event::Activity(activity));
        }
    }

    /// Reports a room created or deleted, if asked to.
    pub(super) fn room_changed(&mut self, nsp: &Arc<str>, room: &Room, created: bool) {
        if !self.room_events {
            return;
        }
        let private = self
            .namespaces
            .get(nsp)
            .is_some_and(|n| n.sockets.contains(&**room))
            || self.sockets.contains_key(&**room);
        self.events.push_back(Event::Room {
            nsp: nsp.clone(),
            room: room.clone(),
            created,
            private,
        });
    }

    /// Turns [`Config::cluster`] on or off (a cluster driver joining or leaving).
    pub fn set_cluster(&mut self, yes: bool) {
        self.config.cluster = yes;
    }

    /// See [`eio::Server::set_sid_prefix`].
    pub fn set_sid_prefix(&mut self, prefix: Option<&str>) {
        self.eio.set_sid_prefix(prefix);
    }

    /// The Engine.IO server underneath.
    pub fn eio(&self) -> &eio::Server {
        &self.eio
    }

    /// Declares a namespace (clients connecting to an undeclared one get
    /// `Invalid namespace`). `/` must be declared too.
    pub fn add_namespace(&mut self, nsp: &str) {
        self.namespaces.entry(Arc::from(nsp)).or_default().declared = true;
    }

    /// Declares dynamic namespaces: any name `matches` accepts is created when a
    /// client's CONNECT to it is accepted (after the connect middleware, never
    /// before), and removed when its last socket leaves. Names are capped at
    /// [`Config::max_namespace_len`].
    pub fn add_dynamic_namespace(&mut self, matches: NamespacePredicate) {
        self.dynamic.push(matches);
    }

    /// The namespaces that exist now: the declared ones, and the dynamic ones that
    /// have sockets.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces.keys().map(|n| &**n)
    }

    /// Each namespace with how many sockets it has now.
    pub fn namespace_sizes(&self) -> impl Iterator<Item = (&Arc<str>, usize)> {
        self.namespaces.iter().map(|(n, ns)| (n, ns.sockets.len()))
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

    /// A socket's rooms: its own sid room first (unless it left it), then those it
    /// joined.
    pub fn rooms(&self, sid: &Sid) -> Option<impl Iterator<Item = Room> + '_> {
        let (id, socket) = self.sockets.get_key_value(sid)?;
        let in_own =
            (self.namespaces.get(&socket.info.nsp)).is_none_or(|n| !n.left_own.contains(sid));
        Some(
            in_own
                .then(|| id.room())
                .into_iter()
                .chain(socket.rooms.iter().cloned()),
        )
    }

    /// The local socket with this id.
    pub fn sid(&self, id: &str) -> Option<Sid> {
        self.sockets.get_key_value(id).map(|(k, _)| k.clone())
    }

    /// The names of the rooms of namespace `nsp` that have sockets here.
    pub fn room_names(&self, nsp: &str) -> Vec<String> {
        self.namespaces
            .get(nsp)
            .map(|n| {
                let own = (n.sockets.iter()).filter(|sid| {
                    !n.rooms.contains_key(sid.as_str()) && !n.left_own.contains(*sid)
                });
                (n.rooms.keys().map(|r| r.to_string()))
                    .chain(own.map(|sid| sid.to_string()))
                    .collect()
            })
            .unwrap_or_default()
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
        self.handle_prepared(now, request, eio::Prepared::default())
    }

    /// The stateless part of answering requests (see [`eio::Preparer`]): it parses
    /// the JSON of a polling payload's messages too.
    pub fn preparer(&self) -> eio::Preparer {
        self.eio.preparer()
    }

    /// [`handle_request`](Self::handle_request), with what the
    /// [`preparer`](Self::preparer) made of the request.
    pub fn handle_prepared(
        &mut self,
        now: Instant,
        request: &Request,
        prepared: eio::Prepared,
    ) -> Reply {
        // While shutting down, sessions (and those closing) still get their polls:
        // that is how polling clients fetch their DISCONNECT.
        let reply = if self.shutting_down && request.head.query_param("sid").is_none() {
            Reply::Respond(
                crate::http::Response::new(503)
                    .header("Content-Type", "text/plain")
                    .body("Server shutting down"),
            )
        } else {
            self.eio.handle_prepared(now, request, prepared)
        };
        self.pump(now);
        reply
    }

    /// A parked poll's connection went away.
    pub fn handle_poll_aborted(&mut self, now: Instant, poll: PollId) {
        self.eio.handle_poll_aborted(now, poll);
        self.pump(now);
    }

    /// What an upgraded WebSocket transport's link decoded (see
    /// [`eio::Server::handle_ws_input`]): its messages come with their JSON already
    /// parsed by the link (the message decoder this server gives its Engine.IO
    /// server).
    pub fn handle_ws_input(&mut self, now: Instant, transport: TransportId, input: WsInput) {
        self.eio.handle_ws_input(now, transport, input);
        self.pump(now);
    }

    /// Bytes of a WebSocket transport's output were written (see
    /// [`eio::Server::handle_ws_written`]).
    pub fn handle_ws_written(&mut self, transport: TransportId, bytes: usize) {
        self.eio.handle_ws_written(transport, bytes);
    }

    /// Fires due deadlines (Engine.IO's, connect timeouts, ack timeouts, recovery).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.eio.handle_timeout(now);
        self.pump(now);
        while let Some((at, _)) = self.connecting.front() {
            if *at > now {
                break;
            }
            let Some((_, session)) = self.connecting.pop_front() else {
                break;
            };
            if (self.clients.get(&session)).is_some_and(|c| !c.ever_connected) {
                let _ = self.eio.close(now, &session);
            }
        }
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, timer))) = self.timers.pop() else {
                break;
            };
            match timer {
                Timer::Reassembly(session, since) => {
                    if let Some(client) = self.clients.get_mut(&session) {
                        if client.reassembling_since == Some(since) {
                            client.close_reason = Some(DisconnectReason::ParseError);
                            let _ = self.eio.close(now, &session);
                        }
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
        let connect = self.connecting.front().map(|(at, _)| *at);
        [own, connect, self.eio.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Moves Engine.IO events up into Socket.IO.
    fn pump(&mut self, now: Instant) {
        while let Some((e, decoded)) = self.eio.poll_event_decoded() {
            match e {
                eio::Event::Open { sid, handshake } => {
                    self.activity(Activity::SessionOpened {
                        session: sid.clone(),
                        transport: handshake.transport,
                    });
                    self.on_open(now, sid, handshake)
                }
                eio::Event::Message { sid, data } => {
                    let parsed = decoded.and_then(|d| d.downcast::<Parsed>().ok());
                    self.on_message(now, &sid, data, parsed.map(|p| *p));
                }
                eio::Event::Upgraded { sid } => {
                    if self.activity_events {
                        let sockets = self.clients.get(&sid).map_or_else(Vec::new, |c| {
                            c.sockets
                                .iter()
                                .map(|(nsp, sid)| (nsp.clone(), sid.clone()))
                                .collect()
                        });
                        self.activity(Activity::SessionUpgraded {
                            session: sid,
                            sockets,
                        });
                    }
                }
                eio::Event::Closed { sid, reason } => {
                    self.activity(Activity::SessionClosed {
                        session: sid.clone(),
                        reason,
                    });
                    let Some(client) = self.clients.remove(&sid) else {
                        continue;
                    };
                    let reason = client
                        .close_reason
                        .unwrap_or(DisconnectReason::from_eio(reason));
                    for socket in client.sockets.into_values() {
                        self.remove_socket(now, &socket, reason);
                    }
                    self.forget_connected();
                }
            }
        }
    }

    fn on_open(&mut self, now: Instant, session: SessionId, handshake: Box<Handshake>) {
        let protocol = handshake.protocol;
        let client = Client {
            protocol,
            handshake: Arc::from(handshake),
            decoder: Decoder::with_parser(self.config.decode_limits, self.config.parser),
            sockets: SmallMap::default(),
            pending: SmallMap::default(),
            close_reason: None,
            ever_connected: false,
            reassembling_since: None,
        };
        self.clients.insert(session.clone(), Box::new(client));
        if protocol == Protocol::V3 {
            // Socket.IO v2 clients are in `/` from the start.
            self.on_connect(now, &session, Arc::from("/"), Value::Object(Map::new()));
        } else {
            (self.connecting).push_back((now + self.config.connect_timeout, session));
        }
    }

    fn on_message(
        &mut self,
        now: Instant,
        session: &SessionId,
        data: Data,
        parsed: Option<Parsed>,
    ) {
        let Some(client) = self.clients.get_mut(session) else {
            return;
        };
        let packet = match client.decoder.feed_parsed(data, parsed) {
            Ok(Some(p)) => {
                client.reassembling_since = None;
                p
            }
            Ok(None) => {
                if client.reassembling_since.is_none() {
                    client.reassembling_since = Some(now);
                    let deadline = now + self.config.decode_limits.reassembly_timeout;
                    self.timers
                        .push(Reverse((deadline, Timer::Reassembly(session.clone(), now))));
                }
                return;
            }
            Err(_) => {
                client.close_reason = Some(DisconnectReason::ParseError);
                let _ = self.eio.close(now, session);
                return;
            }
        };
        let packet = match packet {
            Incoming::Event {
                nsp,
                id,
                name,
                payload,
            } => {
                let Some(sid) = client.sockets.get(&nsp).cloned() else {
                    return;
                };
                self.events.push_back(Event::Event {
                    sid,
                    name,
                    payload,
                    ack: id,
                });
                return;
            }
            Incoming::Ack { nsp, id, payload } => {
                let Some(sid) = client.sockets.get(&nsp).cloned() else {
                    return;
                };
                let known = self
                    .sockets
                    .get_mut(&sid)
                    .is_some_and(|s| s.acks.remove(&id));
                if !known {
                    return;
                }
                self.events.push_back(Event::Ack {
                    ack: AckId(id),
                    sid: sid.clone(),
                    result: Ok(payload),
                });
                self.ack_answered(id, &sid);
                return;
            }
            Incoming::Packet(packet) => packet,
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
            // Events and acks came as `Incoming::Event` and `Incoming::Ack`.
            PacketType::Event
            | PacketType::BinaryEvent
            | PacketType::Ack
            | PacketType::BinaryAck
            | PacketType::ConnectError => {}
        }
    }

    /// Whether a CONNECT to `nsp` may go on: a declared namespace, or a name a dynamic
    /// matcher takes (not created yet: only an accepted socket creates it).
    fn namespace_exists(&self, nsp: &Arc<str>) -> bool {
        if self.namespaces.contains_key(nsp) {
            return true;
        }
        nsp.len() <= self.config.max_namespace_len && self.dynamic.iter().any(|m| m(nsp))
    }

    fn on_connect(&mut self, now: Instant, session: &SessionId, nsp: Arc<str>, auth: Value) {
        let Some(client) = self.clients.get(session) else {
            return;
        };
        if client.sockets.contains_key(&nsp) || client.pending.contains_key(&nsp) {
            return;
        }
        let handshake = client.handshake.clone();
        let refusal = if client.sockets.len() + client.pending.len()
            >= self.config.max_namespaces_per_client
        {
            Some("Too many namespaces")
        } else if !self.namespace_exists(&nsp) {
            Some("Invalid namespace")
        } else {
            None
        };
        if let Some(message) = refusal {
            let mut err = Packet::new(PacketType::ConnectError, nsp);
            err.data = Some(error_object(message, None));
            self.send_packet(session, &err);
            return;
        }
        // The namespace's own name is kept, not the packet's copy (one allocation less
        // for as long as the socket lives).
        let nsp = (self.namespaces.get_key_value(&nsp)).map_or(nsp, |(name, _)| name.clone());
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
        self.send_packet(session, &err);
        Ok(())
    }

    fn new_id(&mut self) -> String {
        let mut raw = [0u8; 15];
        self.rng.fill(&mut raw);
        URL_SAFE_NO_PAD.encode(raw)
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
                    let sid = Sid(self.new_id().as_str().into());
                    if !self.sockets.contains_key(&sid) {
                        break sid;
                    }
                };
                let pid = self.config.recovery.map(|_| self.new_id().into());
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
            session: session.clone(),
            rooms: SmallSet::default(),
            acks: SmallSet::default(),
            pid: pid.clone(),
        };
        let namespace = self.namespaces.entry(nsp.clone()).or_default();
        // Rooms created are only collected for `Event::Room`.
        let track = self.room_events;
        let mut created = Vec::new();
        // Its own room is implied by its membership (and it never left it yet).
        if track && !namespace.has_room(sid.as_str()) {
            created.push(sid.room());
        }
        namespace.left_own.remove(&sid);
        namespace.sockets.insert(sid.clone());
        for room in rooms {
            if *room == *sid.as_str() || socket.rooms.contains(&room) {
                continue;
            }
            let (room, made) = namespace.add_member(&room, &sid);
            if made && track {
                created.push(room.clone());
            }
            socket.rooms.insert(room);
        }
        self.sockets.insert(sid.clone(), Box::new(socket));
        for room in &created {
            self.room_changed(&nsp, room, true);
        }
        if let Some(client) = self.clients.get_mut(&session) {
            client.sockets.insert(nsp.clone(), sid.clone());
            client.ever_connected = true;
        }
        self.forget_connected();
        let mut ok = Packet::new(PacketType::Connect, nsp);
        if protocol == Protocol::V4 {
            let mut m = Map::new();
            m.insert("sid".into(), Value::String(sid.as_str().to_owned()));
            if let Some(pid) = &pid {
                m.insert("pid".into(), Value::String(pid.to_string()));
            }
            ok.data = Some(Value::Object(m));
        }
        self.send_packet(&session, &ok);
        for messages in &missed {
            self.send_to_session(&session, messages, None);
        }
        self.events.push_back(Event::Connected {
            sid: sid.clone(),
            info: info.clone(),
            recovered: was_recovered,
        });
        sid
    }

    /// Takes the sessions that connected (or went) off the front of `connecting`: no
    /// deadline is left waiting for them.
    fn forget_connected(&mut self) {
        while let Some((_, session)) = self.connecting.front() {
            if (self.clients.get(session)).is_some_and(|c| !c.ever_connected) {
                break;
            }
            self.connecting.pop_front();
        }
        // After a burst of sessions, the queue's room goes back.
        if self.connecting.is_empty() && self.connecting.capacity() > 64 {
            self.connecting = VecDeque::new();
        }
    }

    fn remove_socket(&mut self, now: Instant, sid: &Sid, reason: DisconnectReason) {
        let Some(socket) = self.sockets.remove(sid) else {
            return;
        };
        let nsp = socket.info.nsp.clone();
        let track = self.room_events;
        let mut deleted = Vec::new();
        let mut in_own = false;
        if let Some(namespace) = self.namespaces.get_mut(&nsp) {
            in_own = !namespace.left_own.remove(sid);
            if in_own && track && !namespace.rooms.contains_key(sid.as_str()) {
                deleted.push(sid.room());
            }
            for room in &socket.rooms {
                if let (Some(room), true) = (namespace.remove_member(room, sid), track) {
                    deleted.push(room);
                }
            }
        }
        // Reported while the socket still counts as the namespace's (its own room is
        // private).
        for room in &deleted {
            self.room_changed(&nsp, room, false);
        }
        if let Some(namespace) = self.namespaces.get_mut(&nsp) {
            namespace.sockets.remove(sid);
            if !namespace.declared && namespace.sockets.is_empty() {
                self.namespaces.remove(&nsp);
            }
        }
        if let Some(client) = self.clients.get_mut(&socket.session) {
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
            if reason.is_recoverable() && self.kept.len() < recovery.max_kept {
                let expires = now + recovery.max_disconnection_duration;
                self.kept.insert(
                    pid.clone(),
                    Kept {
                        pid: pid.clone(),
                        sid: sid.clone(),
                        nsp: nsp.clone(),
                        // The rooms it joined (its own comes back with its id).
                        rooms: socket.rooms.iter().cloned().collect(),
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
            nsp: nsp.clone(),
            reason,
            kept,
        });
        if self.activity_events {
            let own = in_own.then(|| sid.room());
            for room in own.into_iter().chain(socket.rooms) {
                self.activity(Activity::Left {
                    sid: sid.clone(),
                    nsp: nsp.clone(),
                    room,
                });
            }
        }
    }

    // ----------------------------------------------------------------------------------
    // Application calls
    // ----------------------------------------------------------------------------------

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

    /// Disconnects a socket from its namespace (DISCONNECT packet; `server namespace
    /// disconnect`). With `close`, the whole Engine.IO session is closed too and its
    /// other sockets leave with `forced server close`.
    pub fn disconnect(&mut self, now: Instant, sid: &Sid, close: bool) -> Result<(), Error> {
        let socket = self.sockets.get(sid).ok_or(Error::UnknownSocket)?;
        let session = socket.session.clone();
        let packet = Packet::new(PacketType::Disconnect, socket.info.nsp.clone());
        self.send_packet(&session, &packet);
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
        let session = socket.session.clone();
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
                    self.send_packet(session, &packet);
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

    /// Sends an EVENT (`name` given) or ACK to `session`, its arguments written as they
    /// are held (JSON text is copied, not parsed).
    fn send_args(
        &mut self,
        session: &SessionId,
        nsp: &Arc<str>,
        id: Option<u64>,
        name: Option<&str>,
        mut payload: Payload,
    ) {
        if self.config.parser == super::Parser::Msgpack {
            let packet = args_packet(nsp, id, name, payload);
            return self.send_packet(session, &packet);
        }
        let text = super::packet::encode_args(nsp, id, name, &payload);
        let _ = self.eio.send_with(session, Data::Text(text), None);
        for bin in std::mem::take(payload.bins_mut()) {
            let _ = self.eio.send_with(session, Data::Binary(bin), None);
        }
    }

    /// The messages that carry event `name` with `payload` in `nsp` (asking for ack
    /// `id` if given), as this server's parser writes them.
    fn encode_event(
        &self,
        nsp: &Arc<str>,
        id: Option<u64>,
        name: &str,
        payload: &Payload,
    ) -> Vec<Data> {
        if self.config.parser == super::Parser::Msgpack {
            let packet = args_packet(nsp, id, Some(name), payload.clone());
            return packet.encode_with(self.config.parser);
        }
        let mut out = Vec::with_capacity(1 + payload.bins().len());
        out.push(Data::Text(super::packet::encode_args(
            nsp,
            id,
            Some(name),
            payload,
        )));
        out.extend(payload.bins().iter().cloned().map(Data::Binary));
        out
    }

    /// Sends `packet` to `session`, encoded straight into the messages that carry it.
    fn send_packet(&mut self, session: &SessionId, packet: &Packet) {
        match self.config.parser {
            super::Parser::Default => {
                let _ = self
                    .eio
                    .send_with(session, Data::Text(packet.encode_utf8()), None);
                for bin in &packet.attachments {
                    let _ = self.eio.send_with(session, Data::Binary(bin.clone()), None);
                }
            }
            super::Parser::Msgpack => {
                let bytes = bytes::Bytes::from(packet.encode_msgpack());
                let _ = self.eio.send_with(session, Data::Binary(bytes), None);
            }
        }
    }

    fn send_to_session(&mut self, session: &SessionId, messages: &[Data], compress: Option<bool>) {
        for m in messages {
            let _ = self.eio.send_with(session, m.clone(), compress);
        }
    }
}

/// An EVENT (`name` given) or ACK packet, its arguments as values.
fn args_packet(nsp: &Arc<str>, id: Option<u64>, name: Option<&str>, payload: Payload) -> Packet {
    match name {
        Some(name) => Packet {
            id,
            ..Packet::event(nsp.clone(), name, payload)
        },
        None => Packet::ack(nsp.clone(), id.unwrap_or_default(), payload),
    }
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
