//! The protocol of Node's `@socket.io/redis-adapter` 8 (classic mode), sans-IO: what a
//! server publishes for its broadcasts and cluster requests, and what it does with what
//! the other servers (Node or wirestate) and `@socket.io/redis-emitter` publish.
//!
//! Channels, per namespace `nsp` and key prefix `key` (default `socket.io`):
//! * `key#nsp#` and `key#nsp#room#` carry broadcasts (msgpack `[uid, packet, opts]`);
//!   every server subscribes to the pattern `key#nsp#*`.
//! * `key-request#nsp#` carries requests (JSON, or msgpack for broadcasts with acks);
//!   its subscriber count (`PUBSUB NUMSUB`) is the number of servers.
//! * `key-response#nsp#` (and `key-response#nsp#uid#`) carry the answers.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::msgpack;
use crate::rand::Rng;
use crate::sio::{self, AckError, AckId, Broadcast, ClusterMessage, Packet, PacketType, Payload};
use crate::IdMap;

mod sharded;
use sharded::sharded_opts;

/// The request types of the reference adapter.
mod kind {
    pub(super) const SOCKETS: u64 = 0;
    pub(super) const ALL_ROOMS: u64 = 1;
    pub(super) const REMOTE_JOIN: u64 = 2;
    pub(super) const REMOTE_LEAVE: u64 = 3;
    pub(super) const REMOTE_DISCONNECT: u64 = 4;
    pub(super) const REMOTE_FETCH: u64 = 5;
    pub(super) const SERVER_SIDE_EMIT: u64 = 6;
    pub(super) const BROADCAST: u64 = 7;
    pub(super) const BROADCAST_CLIENT_COUNT: u64 = 8;
    pub(super) const BROADCAST_ACK: u64 = 9;
}

/// Options, with the reference adapter's names and defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The channel prefix (default `socket.io`): the same on every server of a cluster.
    pub key: String,
    /// How long a request waits for the other servers' answers (default 5 s).
    pub requests_timeout: Duration,
    /// Answer on the asking server's own response channel (default false, as the
    /// reference: every server then reads every answer). Classic mode only.
    pub publish_on_specific_response_channel: bool,
    /// Classic (`createAdapter`, the default) or sharded (`createShardedAdapter`).
    pub mode: Mode,
}

/// Which of the reference's two adapters to speak: every server of a cluster must
/// speak the same one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// `createAdapter`: `PUBLISH`/`PSUBSCRIBE`, request and response channels.
    #[default]
    Classic,
    /// `createShardedAdapter` (Redis 7): `SPUBLISH`/`SSUBSCRIBE` on one channel per
    /// namespace (and per room, in the dynamic modes) and one response channel per
    /// server, messages as the reference's `ClusterAdapter` writes them.
    Sharded(SubscriptionMode),
}

/// The sharded adapter's `subscriptionMode`: which rooms get a channel of their own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SubscriptionMode {
    /// One channel per namespace.
    Static,
    /// Public rooms (not a socket's own) get their own channel, subscribed to by the
    /// servers that have the room (the reference's default).
    #[default]
    Dynamic,
    /// Every room gets its own channel.
    DynamicPrivate,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            key: "socket.io".to_owned(),
            requests_timeout: Duration::from_secs(5),
            publish_on_specific_response_channel: false,
            mode: Mode::Classic,
        }
    }
}

impl Config {
    /// Sets [`Config::key`].
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }

    /// Speaks the sharded adapter's protocol (`createShardedAdapter`).
    pub fn sharded(mut self, subscription: SubscriptionMode) -> Self {
        self.mode = Mode::Sharded(subscription);
        self
    }

    /// Sets [`Config::requests_timeout`].
    pub fn requests_timeout(mut self, timeout: Duration) -> Self {
        self.requests_timeout = timeout;
        self
    }
}

/// What the driver must send to Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `PUBLISH channel payload` (`SPUBLISH` when sharded).
    Publish {
        /// The channel.
        channel: String,
        /// The message.
        payload: Bytes,
    },
    /// `SUBSCRIBE` these channels and `PSUBSCRIBE` these patterns (on the subscriber
    /// connection; `SSUBSCRIBE` when sharded, with no patterns).
    Subscribe {
        /// Channels.
        channels: Vec<String>,
        /// Patterns.
        patterns: Vec<String>,
    },
    /// Stop listening to these channels (a room gone, in the sharded dynamic modes).
    Unsubscribe {
        /// Channels.
        channels: Vec<String>,
    },
    /// `PUBSUB NUMSUB channel` (`SHARDNUMSUB` when sharded); answer with
    /// [`Adapter::handle_server_count`].
    CountServers {
        /// The request channel whose subscribers are counted.
        channel: String,
        /// The request waiting for it.
        request: RequestId,
    },
}

/// One of this server's cluster requests, until its last event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

/// Where the answer to another server's request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyTo {
    nsp: Arc<str>,
    request_id: Value,
    uid: Value,
}

/// A cluster request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// Not every server answered within [`Config::requests_timeout`].
    Timeout,
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timeout reached while waiting for the other servers' answers")
    }
}

impl std::error::Error for RequestError {}

/// What happened, for the application.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// Another server asks for details of these local sockets (`fetchSockets`):
    /// answer with [`Adapter::answer_fetch`], one object per socket
    /// (`{id, handshake, rooms, data}`).
    FetchRequest {
        /// Where the answer goes.
        reply: ReplyTo,
        /// The sockets selected.
        sids: Vec<sio::Sid>,
    },
    /// The other servers' sockets for [`Adapter::fetch_sockets`] (the local ones are
    /// not in it).
    Fetched {
        /// The request.
        request: RequestId,
        /// `{id, handshake, rooms, data}` objects, or the timeout.
        result: Result<Vec<Value>, RequestError>,
    },
    /// Another server (or an emitter) called `serverSideEmit`: `data` is the event
    /// name and its arguments. With `reply`, answer once with
    /// [`Adapter::answer_server_side_emit`].
    ServerSideEmit {
        /// The namespace.
        nsp: Arc<str>,
        /// `[name, ...args]`.
        data: Vec<Value>,
        /// Where the answer goes, if one is asked for.
        reply: Option<ReplyTo>,
    },
    /// The answers to [`Adapter::server_side_emit_with_ack`]: one per other server, or
    /// those that came before the timeout.
    ServerSideAcks {
        /// The request.
        request: RequestId,
        /// The answers.
        responses: Vec<Value>,
        /// Whether every server answered in time.
        complete: bool,
    },
    /// A remote client's answer to [`Adapter::broadcast_with_ack`] (its ack's first
    /// argument, as the reference carries it).
    RemoteAck {
        /// The request.
        request: RequestId,
        /// The answer.
        answer: Payload,
    },
    /// Every remote recipient of a [`Adapter::broadcast_with_ack`] answered, or its
    /// timeout passed.
    RemoteAcksDone {
        /// The request.
        request: RequestId,
    },
}

/// An answer to another server's request.
pub(super) enum Response {
    /// `fetchSockets`: the local sockets' details.
    Sockets(Vec<Value>),
    /// `serverSideEmit` with an ack: the answer.
    ServerSideEmit(Value),
    /// A broadcast with acks: how many local sockets got it.
    ClientCount(usize),
    /// A broadcast with acks: one socket's answer (its first argument).
    Ack(Value, Vec<Bytes>),
}

#[derive(Debug)]
enum Pending {
    Fetch {
        sockets: Vec<Value>,
        answers: usize,
    },
    ServerSideEmit {
        responses: Vec<Value>,
    },
    BroadcastAck {
        servers: usize,
        clients: usize,
        acks: usize,
    },
}

#[derive(Debug)]
struct Request {
    wire_id: String,
    /// Servers in the cluster (this one included), once counted.
    servers: Option<usize>,
    deadline: Instant,
    pending: Pending,
    /// The message to publish once the servers are counted.
    publish: Option<(String, Bytes)>,
}

/// One server's side of the Redis adapter protocol, for every namespace.
#[derive(Debug)]
pub struct Adapter {
    config: Config,
    uid: String,
    rng: Rng,
    namespaces: BTreeSet<Arc<str>>,
    next_request: u64,
    requests: IdMap<RequestId, Request>,
    by_wire_id: HashMap<String, RequestId>,
    /// Local ack requests that answer another server's broadcast.
    remote_acks: IdMap<AckId, ReplyTo>,
    commands: VecDeque<Command>,
    events: VecDeque<Event>,
    /// Room channels subscribed to (sharded dynamic modes).
    room_channels: BTreeSet<String>,
}

const ID_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl Adapter {
    /// An adapter; `seed` seeds its uid and request ids (use OS randomness).
    pub fn new(config: Config, seed: [u8; 32]) -> Self {
        let mut rng = Rng::from_seed(seed);
        let uid = match config.mode {
            Mode::Classic => random_id(&mut rng),
            Mode::Sharded(_) => random_hex(&mut rng),
        };
        Self {
            config,
            uid,
            rng,
            namespaces: BTreeSet::new(),
            next_request: 0,
            requests: IdMap::default(),
            by_wire_id: HashMap::new(),
            remote_acks: IdMap::default(),
            commands: VecDeque::new(),
            events: VecDeque::new(),
            room_channels: BTreeSet::new(),
        }
    }

    /// Whether this adapter speaks the sharded protocol.
    pub fn is_sharded(&self) -> bool {
        matches!(self.config.mode, Mode::Sharded(_))
    }

    /// The options.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This server's id in the cluster.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    fn broadcast_channel(&self, nsp: &str) -> String {
        format!("{}#{}#", self.config.key, nsp)
    }

    fn request_channel(&self, nsp: &str) -> String {
        format!("{}-request#{}#", self.config.key, nsp)
    }

    fn response_channel(&self, nsp: &str) -> String {
        format!("{}-response#{}#", self.config.key, nsp)
    }

    /// Joins the cluster's channels for `nsp` (a [`Command::Subscribe`]), once.
    pub fn add_namespace(&mut self, nsp: &str) {
        if self.namespaces.contains(nsp) {
            return;
        }
        self.namespaces.insert(Arc::from(nsp));
        let (channels, patterns) = self.channels_of(nsp);
        self.commands
            .push_back(Command::Subscribe { channels, patterns });
    }

    fn channels_of(&self, nsp: &str) -> (Vec<String>, Vec<String>) {
        if self.is_sharded() {
            let main = self.broadcast_channel(nsp);
            let own = format!("{main}{}#", self.uid);
            return (vec![main, own], Vec::new());
        }
        let response = self.response_channel(nsp);
        let specific = format!("{response}{}#", self.uid);
        (
            vec![self.request_channel(nsp), response, specific],
            vec![format!("{}*", self.broadcast_channel(nsp))],
        )
    }

    /// Everything to subscribe to (after a reconnection): channels, then patterns.
    pub fn subscriptions(&self) -> (Vec<String>, Vec<String>) {
        let mut channels = Vec::new();
        let mut patterns = Vec::new();
        for nsp in &self.namespaces {
            let (c, p) = self.channels_of(nsp);
            channels.extend(c);
            patterns.extend(p);
        }
        channels.extend(self.room_channels.iter().cloned());
        (channels, patterns)
    }

    /// The next command for Redis.
    #[must_use]
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// The next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.requests.values().map(|r| r.deadline).min()
    }

    fn publish(&mut self, channel: String, payload: impl Into<Bytes>) {
        self.commands.push_back(Command::Publish {
            channel,
            payload: payload.into(),
        });
    }

    fn publish_json(&mut self, channel: String, value: &Value) {
        self.publish(channel, json_bytes(value));
    }

    // ----------------------------------------------------------------------------------
    // This server's operations
    // ----------------------------------------------------------------------------------

    /// Publishes an operation of this server (a [`sio::Event::Cluster`]) for the
    /// others; `namespaces` are this server's (for targets over every namespace).
    pub fn handle_cluster<'a>(
        &mut self,
        message: &ClusterMessage,
        namespaces: impl Iterator<Item = &'a str>,
    ) {
        let target = match message {
            ClusterMessage::Broadcast { target, .. }
            | ClusterMessage::Join { target, .. }
            | ClusterMessage::Leave { target, .. }
            | ClusterMessage::Disconnect { target, .. } => target,
        };
        if target.local {
            return;
        }
        let nsps: Vec<Arc<str>> = match &target.nsp {
            Some(n) => vec![n.clone()],
            None => namespaces.map(Arc::from).collect(),
        };
        for nsp in nsps {
            if self.is_sharded() {
                self.sharded_publish_op(&nsp, message);
                continue;
            }
            match message {
                ClusterMessage::Broadcast { target, packet } => {
                    self.publish_broadcast(&nsp, target, packet)
                }
                ClusterMessage::Join { target, rooms } => {
                    self.publish_rooms(&nsp, kind::REMOTE_JOIN, target, rooms)
                }
                ClusterMessage::Leave { target, rooms } => {
                    self.publish_rooms(&nsp, kind::REMOTE_LEAVE, target, rooms)
                }
                ClusterMessage::Disconnect { target, close } => {
                    let request = json!({
                        "uid": self.uid,
                        "type": kind::REMOTE_DISCONNECT,
                        "opts": opts_json(target),
                        "close": close,
                    });
                    self.publish_json(self.request_channel(&nsp), &request);
                }
            }
        }
    }

    fn publish_broadcast(&mut self, nsp: &str, target: &Broadcast, packet: &Packet) {
        let (packet_value, bins) = packet_json(Some(nsp), packet);
        let message = json!([
            self.uid,
            packet_value,
            {
                "rooms": target.rooms.iter().map(|r| &**r).collect::<Vec<_>>(),
                "except": dedup(&target.except),
                "flags": flags_json(target, None),
            }
        ]);
        let mut channel = self.broadcast_channel(nsp);
        if let [room] = &target.rooms[..] {
            channel.push_str(room);
            channel.push('#');
        }
        self.publish(channel, msgpack::to_vec(&message, &bins));
    }

    fn publish_rooms(&mut self, nsp: &str, kind: u64, target: &Broadcast, rooms: &[sio::Room]) {
        let request = json!({
            "uid": self.uid,
            "type": kind,
            "opts": opts_json(target),
            "rooms": rooms.iter().map(|r| &**r).collect::<Vec<_>>(),
        });
        self.publish_json(self.request_channel(nsp), &request);
    }

    /// A request of this server, ended by `deadline` whatever happens (Redis may not
    /// even answer the server count).
    fn start(&mut self, nsp: &str, pending: Pending, deadline: Instant) -> (RequestId, String) {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        let wire_id = loop {
            let w = if self.is_sharded() {
                random_hex(&mut self.rng)
            } else {
                random_id(&mut self.rng)
            };
            if !self.by_wire_id.contains_key(&w) {
                break w;
            }
        };
        self.by_wire_id.insert(wire_id.clone(), id);
        self.requests.insert(
            id,
            Request {
                wire_id: wire_id.clone(),
                servers: None,
                deadline,
                pending,
                publish: None,
            },
        );
        // The reference counts the subscribers of the request channel (classic) or of
        // the namespace's channel (sharded): one per server.
        let channel = if self.is_sharded() {
            self.broadcast_channel(nsp)
        } else {
            self.request_channel(nsp)
        };
        self.commands.push_back(Command::CountServers {
            channel,
            request: id,
        });
        (id, wire_id)
    }

    /// Asks the other servers for their sockets that `target` selects (one
    /// namespace): answered by [`Event::Fetched`].
    pub fn fetch_sockets(&mut self, now: Instant, target: &Broadcast) -> RequestId {
        let nsp = target.nsp.clone().unwrap_or_else(|| Arc::from("/"));
        let (id, wire_id) = self.start(
            &nsp,
            Pending::Fetch {
                sockets: Vec::new(),
                answers: 1,
            },
            now + self.config.requests_timeout,
        );
        let (channel, message) = if self.is_sharded() {
            let data = json!({"opts": sharded_opts(target, None), "requestId": wire_id});
            self.sharded_message(&nsp, sharded::FETCH_SOCKETS, data, &[])
        } else {
            let request = json!({
                "uid": self.uid,
                "requestId": wire_id,
                "type": kind::REMOTE_FETCH,
                "opts": opts_json(target),
            });
            (self.request_channel(&nsp), json_bytes(&request))
        };
        self.set_publish(id, channel, message);
        id
    }

    fn set_publish(&mut self, id: RequestId, channel: String, message: Bytes) {
        if let Some(r) = self.requests.get_mut(&id) {
            r.publish = Some((channel, message));
        }
    }

    /// `serverSideEmit` without an ack: `data` is the event name and its arguments.
    pub fn server_side_emit(&mut self, nsp: &str, data: Vec<Value>) {
        if self.is_sharded() {
            let (channel, message) =
                self.sharded_message(nsp, sharded::SERVER_SIDE_EMIT, json!({"packet": data}), &[]);
            self.publish(channel, message);
            return;
        }
        let request = json!({
            "uid": self.uid,
            "type": kind::SERVER_SIDE_EMIT,
            "data": data,
        });
        self.publish_json(self.request_channel(nsp), &request);
    }

    /// `serverSideEmit` with an ack: every other server answers once; answered by
    /// [`Event::ServerSideAcks`].
    pub fn server_side_emit_with_ack(
        &mut self,
        now: Instant,
        nsp: &str,
        data: Vec<Value>,
    ) -> RequestId {
        let (id, wire_id) = self.start(
            nsp,
            Pending::ServerSideEmit {
                responses: Vec::new(),
            },
            now + self.config.requests_timeout,
        );
        let (channel, message) = if self.is_sharded() {
            let data = json!({"requestId": wire_id, "packet": data});
            self.sharded_message(nsp, sharded::SERVER_SIDE_EMIT, data, &[])
        } else {
            let request = json!({
                "uid": self.uid,
                "requestId": wire_id,
                "type": kind::SERVER_SIDE_EMIT,
                "data": data,
            });
            (self.request_channel(nsp), json_bytes(&request))
        };
        self.set_publish(id, channel, message);
        id
    }

    /// Sends `packet` to the other servers' sockets that `target` selects (one
    /// namespace) and collects their acks ([`Event::RemoteAck`], then
    /// [`Event::RemoteAcksDone`] once every server's recipients answered or at
    /// `timeout`).
    pub fn broadcast_with_ack(
        &mut self,
        now: Instant,
        target: &Broadcast,
        packet: &Packet,
        timeout: Duration,
    ) -> RequestId {
        let nsp = target.nsp.clone().unwrap_or_else(|| Arc::from("/"));
        let (id, wire_id) = self.start(
            &nsp,
            Pending::BroadcastAck {
                servers: 0,
                clients: 0,
                acks: 0,
            },
            now + timeout,
        );
        // Published at once (the reference counts the servers meanwhile).
        if self.is_sharded() {
            let (packet_value, bins) = packet_json(None, packet);
            let data = json!({
                "packet": packet_value,
                "requestId": wire_id,
                "opts": sharded_opts(target, Some(timeout)),
            });
            let (channel, message) = self.sharded_message(&nsp, sharded::BROADCAST, data, &bins);
            self.publish(channel, message);
        } else {
            let (packet_value, bins) = packet_json(Some(&nsp), packet);
            let request = json!({
                "uid": self.uid,
                "requestId": wire_id,
                "type": kind::BROADCAST,
                "packet": packet_value,
                "opts": {
                    "rooms": target.rooms.iter().map(|r| &**r).collect::<Vec<_>>(),
                    "except": dedup(&target.except),
                    "flags": flags_json(target, Some(timeout)),
                },
            });
            self.publish(self.request_channel(&nsp), msgpack::to_vec(&request, &bins));
        }
        id
    }

    /// The answer to a [`Command::CountServers`]: how many servers subscribe to the
    /// request channel (this one included; 0 if Redis could not say).
    pub fn handle_server_count(&mut self, request: RequestId, servers: usize) {
        let Some(r) = self.requests.get_mut(&request) else {
            return;
        };
        r.servers = Some(servers.max(1));
        let others = servers.saturating_sub(1);
        if others > 0 {
            if let Some((channel, payload)) = r.publish.take() {
                self.commands
                    .push_back(Command::Publish { channel, payload });
            }
        }
        self.check(request);
    }

    /// Settles `request` if every answer is in.
    fn check(&mut self, request: RequestId) {
        let Some(r) = self.requests.get(&request) else {
            return;
        };
        let Some(servers) = r.servers else {
            return;
        };
        let done = match &r.pending {
            Pending::Fetch { answers, .. } => *answers >= servers,
            Pending::ServerSideEmit { responses } => responses.len() + 1 >= servers,
            Pending::BroadcastAck {
                servers: reported,
                clients,
                acks,
                ..
            } => *reported + 1 >= servers && acks >= clients,
        };
        if done {
            self.finish(request, true);
        }
    }

    fn finish(&mut self, request: RequestId, complete: bool) {
        let Some(r) = self.requests.remove(&request) else {
            return;
        };
        self.by_wire_id.remove(&r.wire_id);
        self.events.push_back(match r.pending {
            Pending::Fetch { sockets, .. } => Event::Fetched {
                request,
                result: if complete {
                    Ok(sockets)
                } else {
                    Err(RequestError::Timeout)
                },
            },
            Pending::ServerSideEmit { responses } => Event::ServerSideAcks {
                request,
                responses,
                complete,
            },
            Pending::BroadcastAck { .. } => Event::RemoteAcksDone { request },
        });
    }

    /// Times out the requests whose deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.finish(id, false);
        }
    }

    /// Forgets every request in flight, each ending as if timed out (Redis is gone:
    /// no answer can come).
    pub fn fail_all(&mut self) {
        let ids: Vec<RequestId> = self.requests.keys().copied().collect();
        for id in ids {
            self.finish(id, false);
        }
    }

    // ----------------------------------------------------------------------------------
    // The other servers' messages
    // ----------------------------------------------------------------------------------

    /// A message published on a channel this adapter subscribed to (`pattern`: the
    /// pattern it matched, for broadcasts). Applies it to `server`.
    pub fn handle_message(
        &mut self,
        now: Instant,
        channel: &[u8],
        payload: &[u8],
        server: &mut sio::Server,
    ) {
        let Ok(channel) = std::str::from_utf8(channel) else {
            return;
        };
        if self.is_sharded() {
            self.sharded_on_message(now, channel, payload, server);
            return;
        }
        let key = &self.config.key;
        if let Some(rest) = channel.strip_prefix(key.as_str()) {
            if let Some(rest) = rest.strip_prefix("-request#") {
                if let Some(nsp) = self.namespace_prefix(rest) {
                    self.on_request(now, nsp, payload, server);
                }
            } else if let Some(rest) = rest.strip_prefix("-response#") {
                if self.namespace_prefix(rest).is_some() {
                    self.on_response(payload);
                }
            } else if let Some(rest) = rest.strip_prefix('#') {
                if let Some(nsp) = self.namespace_prefix(rest) {
                    self.on_broadcast(now, nsp, payload, server);
                }
            }
        }
    }

    /// The namespace whose name (and `#`) starts `rest`, the longest if several do.
    fn namespace_prefix(&self, rest: &str) -> Option<Arc<str>> {
        self.namespaces
            .iter()
            .filter(|n| rest.starts_with(&***n) && rest[n.len()..].starts_with('#'))
            .max_by_key(|n| n.len())
            .cloned()
    }

    fn on_broadcast(
        &mut self,
        now: Instant,
        nsp: Arc<str>,
        payload: &[u8],
        server: &mut sio::Server,
    ) {
        let Ok((Value::Array(message), bins)) = msgpack::decode(payload) else {
            return;
        };
        let [uid, packet, opts, ..] = &message[..] else {
            return;
        };
        if uid.as_str() == Some(&self.uid) {
            return;
        }
        let packet_nsp = packet.get("nsp").and_then(Value::as_str).unwrap_or("/");
        if packet_nsp != &*nsp {
            return;
        }
        let Some(packet) = packet_of(&nsp, packet, bins) else {
            return;
        };
        let target = target_of(&nsp, opts);
        server.handle_cluster(now, ClusterMessage::Broadcast { target, packet });
    }

    fn on_request(
        &mut self,
        now: Instant,
        nsp: Arc<str>,
        payload: &[u8],
        server: &mut sio::Server,
    ) {
        let Some((request, bins)) = decode_message(payload) else {
            return;
        };
        let reply = ReplyTo {
            nsp: nsp.clone(),
            request_id: request.get("requestId").cloned().unwrap_or(Value::Null),
            uid: request.get("uid").cloned().unwrap_or(Value::Null),
        };
        let own = request
            .get("requestId")
            .and_then(Value::as_str)
            .is_some_and(|id| self.by_wire_id.contains_key(id));
        let from_self = request.get("uid").and_then(Value::as_str) == Some(&self.uid);
        let opts = request.get("opts");
        let target = || opts.map_or_else(|| Broadcast::nsp(nsp.clone()), |o| target_of(&nsp, o));
        match request.get("type").and_then(Value::as_u64) {
            Some(kind::SOCKETS) if !own => {
                let rooms = request.get("rooms").map(rooms_of).unwrap_or_default();
                let mut t = Broadcast::nsp(nsp.clone());
                t.rooms = rooms;
                let sids: Vec<String> = server
                    .fetch_sockets(&t)
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect();
                let response = json!({ "requestId": reply.request_id, "sockets": sids });
                self.publish_response(&reply, &response);
            }
            Some(kind::ALL_ROOMS) if !own => {
                let rooms = server.room_names(&nsp);
                let response = json!({ "requestId": reply.request_id, "rooms": rooms });
                self.publish_response(&reply, &response);
            }
            Some(k @ (kind::REMOTE_JOIN | kind::REMOTE_LEAVE | kind::REMOTE_DISCONNECT)) => {
                if opts.is_some() {
                    let target = target().local();
                    let message = match k {
                        kind::REMOTE_JOIN => ClusterMessage::Join {
                            target,
                            rooms: request.get("rooms").map(rooms_of).unwrap_or_default(),
                        },
                        kind::REMOTE_LEAVE => ClusterMessage::Leave {
                            target,
                            rooms: request.get("rooms").map(rooms_of).unwrap_or_default(),
                        },
                        _ => ClusterMessage::Disconnect {
                            target,
                            close: request
                                .get("close")
                                .and_then(Value::as_bool)
                                .unwrap_or(false),
                        },
                    };
                    server.handle_cluster(now, message);
                    return;
                }
                // The older form: one socket by id, answered.
                let Some(sid) = request
                    .get("sid")
                    .and_then(Value::as_str)
                    .and_then(|s| server.sid(s))
                else {
                    return;
                };
                let room: Option<sio::Room> = request.get("room").map(room_of);
                match (k, room) {
                    (kind::REMOTE_JOIN, Some(room)) => {
                        let _ = server.join(&sid, &[room]);
                    }
                    (kind::REMOTE_LEAVE, Some(room)) => {
                        let _ = server.leave(&sid, &room);
                    }
                    (kind::REMOTE_DISCONNECT, _) => {
                        let close = request
                            .get("close")
                            .and_then(Value::as_bool)
                            .unwrap_or(false);
                        let _ = server.disconnect(now, &sid, close);
                    }
                    _ => return,
                }
                let response = json!({ "requestId": reply.request_id });
                self.publish_response(&reply, &response);
            }
            Some(kind::REMOTE_FETCH) if !own => {
                let sids = server.fetch_sockets(&target());
                self.events.push_back(Event::FetchRequest { reply, sids });
            }
            Some(kind::SERVER_SIDE_EMIT) if !from_self => {
                let Some(Value::Array(data)) = request.get("data").cloned() else {
                    return;
                };
                let with_ack = request.get("requestId").is_some();
                self.events.push_back(Event::ServerSideEmit {
                    nsp,
                    data,
                    reply: with_ack.then_some(reply),
                });
            }
            Some(kind::BROADCAST) if !own => {
                let Some(packet) = request.get("packet").and_then(|p| packet_of(&nsp, p, bins))
                else {
                    return;
                };
                self.remote_broadcast_with_ack(now, packet, target(), opts, reply, server);
            }
            _ => {}
        }
    }

    /// Another server's broadcast with acks: sent to the local sockets, their count
    /// reported at once, each answer forwarded as it comes ([`Self::handle_ack`]).
    pub(super) fn remote_broadcast_with_ack(
        &mut self,
        now: Instant,
        packet: Packet,
        target: Broadcast,
        opts: Option<&Value>,
        reply: ReplyTo,
        server: &mut sio::Server,
    ) {
        // Bounded even when the asking server gives no timeout (the reference then
        // stops listening for answers at once anyway).
        let timeout = opts
            .and_then(|o| o.get("flags"))
            .and_then(|f| f.get("timeout"))
            .and_then(Value::as_u64)
            .map(Duration::from_millis)
            .map_or(self.config.requests_timeout, |t| {
                t.min(Duration::from_secs(3600))
            });
        let ack = server.broadcast_packet_with_ack(now, &target.local(), packet, Some(timeout));
        let count = server.ack_pending(ack);
        if count > 0 {
            self.remote_acks.insert(ack, reply.clone());
        }
        self.respond(&reply, Response::ClientCount(count));
    }

    /// Sends the answer to another server's request, in the mode's format.
    pub(super) fn respond(&mut self, to: &ReplyTo, response: Response) {
        if self.is_sharded() {
            let (kind, data, bins) = match response {
                Response::Sockets(sockets) => (
                    sharded::FETCH_SOCKETS_RESPONSE,
                    json!({"requestId": to.request_id, "sockets": sockets}),
                    Vec::new(),
                ),
                Response::ServerSideEmit(answer) => (
                    sharded::SERVER_SIDE_EMIT_RESPONSE,
                    json!({"requestId": to.request_id, "packet": answer}),
                    Vec::new(),
                ),
                Response::ClientCount(count) => (
                    sharded::BROADCAST_CLIENT_COUNT,
                    json!({"requestId": to.request_id, "clientCount": count}),
                    Vec::new(),
                ),
                Response::Ack(answer, bins) => (
                    sharded::BROADCAST_ACK,
                    json!({"requestId": to.request_id, "packet": answer}),
                    bins,
                ),
            };
            let Some(requester) = to.uid.as_str() else {
                return;
            };
            let (main, message) = self.sharded_message(&to.nsp, kind, data, &bins);
            self.publish(format!("{main}{requester}#"), message);
            return;
        }
        match response {
            Response::Sockets(sockets) => {
                let response = json!({ "requestId": to.request_id, "sockets": sockets });
                self.publish_response(to, &response);
            }
            Response::ServerSideEmit(answer) => {
                let response = json!({
                    "type": kind::SERVER_SIDE_EMIT,
                    "requestId": to.request_id,
                    "data": answer,
                });
                // The reference answers these on the shared response channel.
                self.publish_json(self.response_channel(&to.nsp), &response);
            }
            Response::ClientCount(count) => {
                let response = json!({
                    "type": kind::BROADCAST_CLIENT_COUNT,
                    "requestId": to.request_id,
                    "clientCount": count,
                });
                self.publish_response(to, &response);
            }
            Response::Ack(answer, bins) => {
                let response = json!({
                    "type": kind::BROADCAST_ACK,
                    "requestId": to.request_id,
                    "packet": answer,
                });
                let channel = self.reply_channel(to);
                self.publish(channel, msgpack::to_vec(&response, &bins));
            }
        }
    }

    fn publish_response(&mut self, to: &ReplyTo, response: &Value) {
        let channel = self.reply_channel(to);
        self.publish_json(channel, response);
    }

    fn reply_channel(&self, to: &ReplyTo) -> String {
        let mut channel = self.response_channel(&to.nsp);
        if self.config.publish_on_specific_response_channel {
            if let Some(uid) = to.uid.as_str() {
                channel.push_str(uid);
                channel.push('#');
            }
        }
        channel
    }

    /// The details of the sockets of an [`Event::FetchRequest`].
    pub fn answer_fetch(&mut self, to: &ReplyTo, sockets: Vec<Value>) {
        self.respond(to, Response::Sockets(sockets));
    }

    /// The answer to an [`Event::ServerSideEmit`] that asked for one.
    pub fn answer_server_side_emit(&mut self, to: &ReplyTo, answer: Value) {
        self.respond(to, Response::ServerSideEmit(answer));
    }

    /// A local socket's answer to an ack request. Returns false if the request is
    /// not one another server made (then it is the application's).
    pub fn handle_ack(&mut self, ack: AckId, result: &Result<Payload, AckError>) -> bool {
        let Some(to) = self.remote_acks.get(&ack).cloned() else {
            return false;
        };
        if let Ok(answer) = result {
            let first = answer.get(0).unwrap_or(Value::Null);
            self.respond(&to, Response::Ack(first, answer.bins().to_vec()));
        }
        true
    }

    /// An ack request ended ([`sio::Event::AckDone`]). Returns false if it is the
    /// application's.
    pub fn handle_ack_done(&mut self, ack: AckId) -> bool {
        self.remote_acks.remove(&ack).is_some()
    }

    fn on_response(&mut self, payload: &[u8]) {
        let Some((response, bins)) = decode_message(payload) else {
            return;
        };
        self.apply_response(&response, bins);
    }

    /// A response in the classic shape (the sharded ones are converted to it).
    pub(super) fn apply_response(&mut self, response: &Value, bins: Vec<Bytes>) {
        let Some(&id) = response
            .get("requestId")
            .and_then(Value::as_str)
            .and_then(|w| self.by_wire_id.get(w))
        else {
            return;
        };
        let Some(r) = self.requests.get_mut(&id) else {
            return;
        };
        match &mut r.pending {
            Pending::Fetch { sockets, answers } => {
                *answers += 1;
                if let Some(Value::Array(s)) = response.get("sockets") {
                    sockets.extend(s.iter().cloned());
                }
            }
            Pending::ServerSideEmit { responses } => {
                if response.get("type").and_then(Value::as_u64) != Some(kind::SERVER_SIDE_EMIT) {
                    return;
                }
                responses.push(response.get("data").cloned().unwrap_or(Value::Null));
            }
            Pending::BroadcastAck {
                servers,
                clients,
                acks,
                ..
            } => match response.get("type").and_then(Value::as_u64) {
                Some(kind::BROADCAST_CLIENT_COUNT) => {
                    *servers += 1;
                    *clients += response
                        .get("clientCount")
                        .and_then(Value::as_u64)
                        .map_or(0, |c| c as usize);
                }
                Some(kind::BROADCAST_ACK) => {
                    *acks += 1;
                    let first = response.get("packet").cloned().unwrap_or(Value::Null);
                    let answer = Payload::from_parts(vec![first], bins);
                    self.events.push_back(Event::RemoteAck {
                        request: id,
                        answer,
                    });
                }
                _ => return,
            },
        }
        self.check(id);
    }
}

/// A message as the reference reads it: JSON if it starts with `{`, msgpack otherwise.
pub(super) fn decode_message(payload: &[u8]) -> Option<(Value, Vec<Bytes>)> {
    if payload.first() == Some(&b'{') {
        serde_json::from_slice(payload)
            .map(|v| (v, Vec::new()))
            .ok()
    } else {
        msgpack::decode(payload).ok()
    }
}

/// 8 random bytes in hex: the sharded adapter's uids and request ids.
fn random_hex(rng: &mut Rng) -> String {
    let mut b = [0u8; 8];
    rng.fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(super) fn json_bytes(v: &Value) -> Bytes {
    Bytes::from(v.to_string().into_bytes())
}

fn random_id(rng: &mut Rng) -> String {
    (0..6)
        .map(|_| char::from(ID_CHARS[rng.next_u32() as usize % ID_CHARS.len()]))
        .collect()
}

pub(super) fn dedup(rooms: &[sio::Room]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::with_capacity(rooms.len());
    for r in rooms {
        if !out.contains(&&**r) {
            out.push(r);
        }
    }
    out
}

pub(super) fn opts_json(target: &Broadcast) -> Value {
    json!({
        "rooms": target.rooms.iter().map(|r| &**r).collect::<Vec<_>>(),
        "except": dedup(&target.except),
    })
}

pub(super) fn flags_json(target: &Broadcast, timeout: Option<Duration>) -> Value {
    let mut flags = Map::new();
    if target.volatile {
        flags.insert("volatile".into(), Value::Bool(true));
    }
    if let Some(c) = target.compress {
        flags.insert("compress".into(), Value::Bool(c));
    }
    if let Some(t) = timeout {
        flags.insert("timeout".into(), Value::from(t.as_millis() as u64));
    }
    Value::Object(flags)
}

/// The packet object the reference puts on the wire: `{type, data, nsp}` (an event
/// with binary parts is still type 2: the receiving server's encoder makes it binary).
/// The sharded adapter publishes it before the namespace is set: `nsp` is `None` then.
pub(super) fn packet_json(nsp: Option<&str>, packet: &Packet) -> (Value, Vec<Bytes>) {
    let kind = match packet.kind {
        PacketType::Ack | PacketType::BinaryAck => 3,
        _ => 2,
    };
    let mut value = json!({
        "type": kind,
        "data": packet.data.clone().unwrap_or(Value::Array(Vec::new())),
    });
    if let (Some(nsp), Value::Object(o)) = (nsp, &mut value) {
        o.insert("nsp".into(), Value::from(nsp));
    }
    (value, packet.attachments.clone())
}

pub(super) fn packet_of(nsp: &Arc<str>, packet: &Value, bins: Vec<Bytes>) -> Option<Packet> {
    let binary = !bins.is_empty();
    let kind = match packet.get("type").and_then(Value::as_u64)? {
        2 | 5 if binary => PacketType::BinaryEvent,
        2 | 5 => PacketType::Event,
        3 | 6 if binary => PacketType::BinaryAck,
        3 | 6 => PacketType::Ack,
        _ => return None,
    };
    let data = packet.get("data")?;
    if !matches!(data, Value::Array(a) if a.first().is_some_and(Value::is_string)) {
        return None;
    }
    let mut p = Packet::new(kind, nsp.clone());
    p.data = Some(data.clone());
    p.attachments = bins;
    Some(p)
}

pub(super) fn room_of(v: &Value) -> sio::Room {
    match v {
        Value::String(s) => Arc::from(s.as_str()),
        other => Arc::from(other.to_string()),
    }
}

pub(super) fn rooms_of(v: &Value) -> Vec<sio::Room> {
    match v {
        Value::Array(a) => a.iter().map(room_of).collect(),
        _ => Vec::new(),
    }
}

pub(super) fn target_of(nsp: &Arc<str>, opts: &Value) -> Broadcast {
    let mut t = Broadcast::nsp(nsp.clone());
    t.rooms = opts.get("rooms").map(rooms_of).unwrap_or_default();
    t.except = opts.get("except").map(rooms_of).unwrap_or_default();
    if let Some(flags) = opts.get("flags") {
        t.volatile = flags
            .get("volatile")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        t.compress = flags.get("compress").and_then(Value::as_bool);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> sio::Server {
        let mut s = sio::Server::new(sio::Config::default().cluster(true), [1; 32]);
        s.add_namespace("/");
        s.add_namespace("/chat");
        s
    }

    fn adapter(seed: u8) -> Adapter {
        let mut a = Adapter::new(Config::default(), [seed; 32]);
        a.add_namespace("/");
        a.add_namespace("/chat");
        let _: Vec<Command> = std::iter::from_fn(|| a.poll_command()).collect();
        a
    }

    fn commands(a: &mut Adapter) -> Vec<Command> {
        std::iter::from_fn(|| a.poll_command()).collect()
    }

    fn events(a: &mut Adapter) -> Vec<Event> {
        std::iter::from_fn(|| a.poll_event()).collect()
    }

    fn published(a: &mut Adapter) -> Vec<(String, Bytes)> {
        commands(a)
            .into_iter()
            .filter_map(|c| match c {
                Command::Publish { channel, payload } => Some((channel, payload)),
                _ => None,
            })
            .collect()
    }

    fn json_of(b: &[u8]) -> Value {
        serde_json::from_slice(b).expect("json")
    }

    #[test]
    fn subscribes_per_namespace_once() {
        let mut a = Adapter::new(Config::default().key("k"), [3; 32]);
        a.add_namespace("/");
        a.add_namespace("/");
        let uid = a.uid().to_owned();
        assert_eq!(
            commands(&mut a),
            vec![Command::Subscribe {
                channels: vec![
                    "k-request#/#".into(),
                    "k-response#/#".into(),
                    format!("k-response#/#{uid}#"),
                ],
                patterns: vec!["k#/#*".into()],
            }]
        );
        assert_eq!(a.subscriptions().1, vec!["k#/#*".to_owned()]);
    }

    #[test]
    fn broadcasts_as_the_reference_writes_them() {
        let mut a = adapter(1);
        let uid = a.uid().to_owned();
        let target = Broadcast::nsp("/").to("rr").except("x").except("x");
        let packet = Packet::event("/", "room-message", Payload::new().arg(json!("x")));
        a.handle_cluster(
            &ClusterMessage::Broadcast { target, packet },
            ["/"].into_iter(),
        );
        let out = published(&mut a);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "socket.io#/#rr#");
        // The bytes Node's redis-adapter 8.3 publishes for
        // `socket.to("rr").except("x").emit("room-message", "x")`, its uid aside.
        let mut want = vec![0x93, 0xa6];
        want.extend_from_slice(uid.as_bytes());
        want.extend_from_slice(b"\x83\xa4type\x02\xa4data\x92\xacroom-message\xa1x\xa3nsp\xa1/");
        want.extend_from_slice(b"\x83\xa5rooms\x91\xa2rr\xa6except\x91\xa1x\xa5flags\x80");
        assert_eq!(&out[0].1[..], &want[..]);
    }

    #[test]
    fn every_namespace_target_publishes_on_each() {
        let mut a = adapter(1);
        let packet = Packet::event("/", "e", Payload::new());
        let local = ClusterMessage::Broadcast {
            target: Broadcast::all_namespaces().local(),
            packet: packet.clone(),
        };
        a.handle_cluster(&local, ["/", "/chat"].into_iter());
        assert!(published(&mut a).is_empty(), "local stays local");
        let all = ClusterMessage::Broadcast {
            target: Broadcast::all_namespaces(),
            packet,
        };
        a.handle_cluster(&all, ["/", "/chat"].into_iter());
        let channels: Vec<String> = published(&mut a).into_iter().map(|(c, _)| c).collect();
        assert_eq!(channels, vec!["socket.io#/#", "socket.io#/chat#"]);
    }

    #[test]
    fn room_operations_are_the_reference_requests() {
        let mut a = adapter(1);
        let uid = a.uid().to_owned();
        let target = Broadcast::nsp("/").to("a");
        a.handle_cluster(
            &ClusterMessage::Join {
                target: target.clone(),
                rooms: vec![Arc::from("b")],
            },
            std::iter::empty(),
        );
        a.handle_cluster(
            &ClusterMessage::Disconnect {
                target,
                close: true,
            },
            std::iter::empty(),
        );
        let out = published(&mut a);
        assert_eq!(out[0].0, "socket.io-request#/#");
        assert_eq!(
            std::str::from_utf8(&out[0].1).expect("utf-8"),
            format!(
                r#"{{"uid":"{uid}","type":2,"opts":{{"rooms":["a"],"except":[]}},"rooms":["b"]}}"#
            )
        );
        assert_eq!(
            std::str::from_utf8(&out[1].1).expect("utf-8"),
            format!(
                r#"{{"uid":"{uid}","type":4,"opts":{{"rooms":["a"],"except":[]}},"close":true}}"#
            )
        );
    }

    /// Starts a fetch on `a`, answers its server count with `servers`; returns the
    /// request and the wire request id (if it was published).
    fn fetch(a: &mut Adapter, now: Instant, servers: usize) -> (RequestId, Option<String>) {
        let id = a.fetch_sockets(now, &Broadcast::nsp("/").to("r"));
        let count = commands(a);
        assert!(
            matches!(&count[..], [Command::CountServers { channel, request }]
            if channel == "socket.io-request#/#" && *request == id)
        );
        a.handle_server_count(id, servers);
        let wire = published(a).first().map(|(c, p)| {
            assert_eq!(c, "socket.io-request#/#");
            let v = json_of(p);
            assert_eq!(v["type"], 5);
            assert_eq!(v["opts"], json!({"rooms": ["r"], "except": []}));
            v["requestId"].as_str().expect("id").to_owned()
        });
        (id, wire)
    }

    #[test]
    fn fetch_waits_for_every_other_server() {
        let now = Instant::now();
        let mut s = server();
        let mut a = adapter(1);
        let (id, wire) = fetch(&mut a, now, 3);
        let wire = wire.expect("published");
        for n in 0..2 {
            assert!(events(&mut a).is_empty());
            let response = json!({"requestId": wire, "sockets": [{"id": format!("s{n}")}]});
            a.handle_message(
                now,
                b"socket.io-response#/#",
                response.to_string().as_bytes(),
                &mut s,
            );
        }
        assert_eq!(
            events(&mut a),
            vec![Event::Fetched {
                request: id,
                result: Ok(vec![json!({"id": "s0"}), json!({"id": "s1"})]),
            }]
        );
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn fetch_alone_answers_at_once_and_a_silent_server_times_out() {
        let now = Instant::now();
        let mut a = adapter(1);
        let (id, wire) = fetch(&mut a, now, 1);
        assert_eq!(wire, None, "nothing to ask when alone");
        assert_eq!(
            events(&mut a),
            vec![Event::Fetched {
                request: id,
                result: Ok(vec![])
            }]
        );

        let (id, _) = fetch(&mut a, now, 2);
        assert_eq!(a.poll_timeout(), Some(now + Duration::from_secs(5)));
        a.handle_timeout(now + Duration::from_millis(4999));
        assert!(events(&mut a).is_empty());
        a.handle_timeout(now + Duration::from_secs(5));
        assert_eq!(
            events(&mut a),
            vec![Event::Fetched {
                request: id,
                result: Err(RequestError::Timeout)
            }]
        );
    }

    #[test]
    fn a_request_ends_at_its_deadline_even_if_redis_never_counts_the_servers() {
        let now = Instant::now();
        let mut a = adapter(1);
        let fetch = a.fetch_sockets(now, &Broadcast::nsp("/"));
        let sse = a.server_side_emit_with_ack(now, "/", vec![json!("ping")]);
        let _ = commands(&mut a);
        assert_eq!(a.poll_timeout(), Some(now + Duration::from_secs(5)));
        a.handle_timeout(now + Duration::from_secs(5));
        let mut ev = events(&mut a);
        ev.sort_by_key(|e| matches!(e, Event::ServerSideAcks { .. }));
        assert_eq!(
            ev,
            vec![
                Event::Fetched {
                    request: fetch,
                    result: Err(RequestError::Timeout)
                },
                Event::ServerSideAcks {
                    request: sse,
                    responses: vec![],
                    complete: false
                },
            ]
        );
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn answers_the_other_servers_requests() {
        let now = Instant::now();
        let mut s = server();
        let mut a = adapter(1);
        let ask = |t: u64| json!({"uid": "other1", "requestId": "req123", "type": t, "opts": {"rooms": [], "except": []}});
        a.handle_message(
            now,
            b"socket.io-request#/#",
            ask(kind::ALL_ROOMS).to_string().as_bytes(),
            &mut s,
        );
        a.handle_message(
            now,
            b"socket.io-request#/#",
            ask(kind::SOCKETS).to_string().as_bytes(),
            &mut s,
        );
        let out = published(&mut a);
        assert_eq!(out[0].0, "socket.io-response#/#");
        assert_eq!(
            json_of(&out[0].1),
            json!({"requestId": "req123", "rooms": []})
        );
        assert_eq!(
            json_of(&out[1].1),
            json!({"requestId": "req123", "sockets": []})
        );

        a.handle_message(
            now,
            b"socket.io-request#/#",
            ask(kind::REMOTE_FETCH).to_string().as_bytes(),
            &mut s,
        );
        let ev = events(&mut a);
        let [Event::FetchRequest { reply, sids }] = &ev[..] else {
            panic!("{ev:?}")
        };
        assert!(sids.is_empty());
        a.answer_fetch(reply, vec![json!({"id": "x"})]);
        assert_eq!(
            json_of(&published(&mut a)[0].1),
            json!({"requestId": "req123", "sockets": [{"id": "x"}]})
        );
    }

    #[test]
    fn server_side_emit_both_ways() {
        let now = Instant::now();
        let mut s = server();
        let mut a = adapter(1);
        let mut b = adapter(2);
        // a asks; two other servers exist.
        let id = a.server_side_emit_with_ack(now, "/", vec![json!("ping"), json!(1)]);
        let _ = commands(&mut a);
        a.handle_server_count(id, 3);
        let (channel, request) = published(&mut a).remove(0);
        assert_eq!(channel, "socket.io-request#/#");
        // Its own request comes back to it: ignored.
        a.handle_message(now, channel.as_bytes(), &request, &mut s);
        assert!(events(&mut a).is_empty());
        // b gets it, and answers.
        b.handle_message(now, channel.as_bytes(), &request, &mut s);
        let ev = events(&mut b);
        let [Event::ServerSideEmit {
            nsp,
            data,
            reply: Some(reply),
        }] = &ev[..]
        else {
            panic!("{ev:?}")
        };
        assert_eq!((&**nsp, data), ("/", &vec![json!("ping"), json!(1)]));
        b.answer_server_side_emit(reply, json!("pong"));
        let (rchannel, response) = published(&mut b).remove(0);
        assert_eq!(rchannel, "socket.io-response#/#");
        a.handle_message(now, rchannel.as_bytes(), &response, &mut s);
        assert!(events(&mut a).is_empty(), "one answer of two");
        a.handle_timeout(now + Duration::from_secs(5));
        assert_eq!(
            events(&mut a),
            vec![Event::ServerSideAcks {
                request: id,
                responses: vec![json!("pong")],
                complete: false
            }]
        );
    }

    #[test]
    fn broadcast_acks_count_every_servers_clients() {
        let now = Instant::now();
        let mut s = server();
        let mut a = adapter(1);
        let mut b = adapter(2);
        let packet = Packet::event("/", "question", Payload::new().bin(vec![7u8]));
        let id = a.broadcast_with_ack(now, &Broadcast::nsp("/"), &packet, Duration::from_secs(1));
        let cmds = commands(&mut a);
        assert!(matches!(cmds[0], Command::CountServers { .. }));
        let Command::Publish { channel, payload } = &cmds[1] else {
            panic!("{cmds:?}")
        };
        let (request, bins) = msgpack::decode(payload).expect("msgpack");
        assert_eq!(request["type"], 7);
        assert_eq!(request["opts"]["flags"], json!({"timeout": 1000}));
        assert_eq!(request["packet"]["data"][1], sio::packet::placeholder(0));
        assert_eq!(bins, vec![Bytes::from_static(&[7])]);
        // b has no sockets: it says 0 clients.
        b.handle_message(now, channel.as_bytes(), payload, &mut s);
        let out = published(&mut b);
        assert_eq!(
            json_of(&out[0].1),
            json!({"type": 8, "requestId": request["requestId"], "clientCount": 0})
        );
        a.handle_message(now, out[0].0.as_bytes(), &out[0].1, &mut s);
        // A third server with two clients, one of which answers.
        let wire = request["requestId"].clone();
        let count = json!({"type": 8, "requestId": wire, "clientCount": 2});
        a.handle_message(
            now,
            b"socket.io-response#/#",
            count.to_string().as_bytes(),
            &mut s,
        );
        let ack = json!({"type": 9, "requestId": wire, "packet": "answer"});
        a.handle_message(
            now,
            b"socket.io-response#/#",
            &msgpack::to_vec(&ack, &[]),
            &mut s,
        );
        a.handle_server_count(id, 3);
        assert_eq!(
            events(&mut a),
            vec![Event::RemoteAck {
                request: id,
                answer: Payload::new().arg(json!("answer"))
            }]
        );
        a.handle_timeout(now + Duration::from_secs(1));
        assert_eq!(events(&mut a), vec![Event::RemoteAcksDone { request: id }]);
    }

    fn sharded(mode: SubscriptionMode) -> Adapter {
        let mut a = Adapter::new(Config::default().sharded(mode), [4; 32]);
        a.add_namespace("/");
        a
    }

    #[test]
    fn sharded_channels_and_broadcasts_are_the_reference_ones() {
        let mut a = sharded(SubscriptionMode::Dynamic);
        let uid = a.uid().to_owned();
        assert!(
            uid.len() == 16 && uid.bytes().all(|b| b.is_ascii_hexdigit()),
            "{uid}"
        );
        assert_eq!(
            commands(&mut a),
            vec![Command::Subscribe {
                channels: vec!["socket.io#/#".into(), format!("socket.io#/#{uid}#")],
                patterns: vec![],
            }]
        );
        let to = |room: &str| ClusterMessage::Broadcast {
            target: Broadcast::nsp("/").to(room),
            packet: Packet::event("/", "room-message", Payload::new().arg(json!("x"))),
        };
        a.handle_cluster(&to("r1"), std::iter::empty());
        a.handle_cluster(&to("qYToTH8BNiY6p4Y-AAAH"), std::iter::empty());
        let out = published(&mut a);
        assert_eq!(out[0].0, "socket.io#/#r1#");
        // What Node's sharded adapter publishes for `to("r1").emit("room-message", "x")`.
        assert_eq!(
            std::str::from_utf8(&out[0].1).expect("json"),
            format!(
                r#"{{"type":3,"data":{{"packet":{{"type":2,"data":["room-message","x"]}},"opts":{{"rooms":["r1"],"except":[],"flags":{{}}}}}},"uid":"{uid}","nsp":"/"}}"#
            )
        );
        assert_eq!(
            out[1].0, "socket.io#/#",
            "a socket's room goes on the main channel"
        );
        // Binary parts: msgpack.
        let bin = ClusterMessage::Broadcast {
            target: Broadcast::nsp("/"),
            packet: Packet::event("/", "b", Payload::new().bin(vec![1u8])),
        };
        a.handle_cluster(&bin, std::iter::empty());
        let (_, payload) = published(&mut a).remove(0);
        let (v, bins) = msgpack::decode(&payload).expect("msgpack");
        assert_eq!(
            (v["type"].clone(), v["data"]["packet"]["type"].clone()),
            (json!(3), json!(2))
        );
        assert_eq!(bins.len(), 1);

        let mut s = sharded(SubscriptionMode::Static);
        s.handle_cluster(&to("r1"), std::iter::empty());
        assert_eq!(published(&mut s)[0].0, "socket.io#/#");
        let mut p = sharded(SubscriptionMode::DynamicPrivate);
        p.handle_cluster(&to("qYToTH8BNiY6p4Y-AAAH"), std::iter::empty());
        assert_eq!(published(&mut p)[0].0, "socket.io#/#qYToTH8BNiY6p4Y-AAAH#");
    }

    #[test]
    fn sharded_room_channels_follow_the_rooms() {
        for (mode, public, private) in [
            (SubscriptionMode::Static, false, false),
            (SubscriptionMode::Dynamic, true, false),
            (SubscriptionMode::DynamicPrivate, true, true),
        ] {
            let mut a = sharded(mode);
            let _ = commands(&mut a);
            a.room_created("/", "r", false);
            a.room_created("/", "sid", true);
            a.room_created("/", "r", false);
            a.room_created("/nope", "r", false);
            let subscribed: Vec<Command> = commands(&mut a);
            let want = [
                public.then_some("socket.io#/#r#"),
                private.then_some("socket.io#/#sid#"),
            ]
            .into_iter()
            .flatten()
            .map(|c| Command::Subscribe {
                channels: vec![c.into()],
                patterns: vec![],
            })
            .collect::<Vec<_>>();
            assert_eq!(subscribed, want, "{mode:?}");
            assert_eq!(a.subscriptions().0.len(), 2 + want.len());
            a.room_deleted("/", "r", false);
            a.room_deleted("/", "sid", true);
            assert_eq!(commands(&mut a).len(), want.len(), "{mode:?}");
            assert_eq!(a.subscriptions().0.len(), 2);
        }
    }

    #[test]
    fn sharded_requests_and_answers() {
        let now = Instant::now();
        let mut s = server();
        let mut a = sharded(SubscriptionMode::Dynamic);
        let _ = commands(&mut a);
        let uid = a.uid().to_owned();
        let id = a.fetch_sockets(now, &Broadcast::nsp("/"));
        let cmds = commands(&mut a);
        assert_eq!(
            cmds,
            vec![Command::CountServers {
                channel: "socket.io#/#".into(),
                request: id
            }]
        );
        a.handle_server_count(id, 2);
        let (channel, request) = published(&mut a).remove(0);
        assert_eq!(channel, "socket.io#/#");
        let request = json_of(&request);
        assert_eq!(request["type"], 7);
        assert_eq!(request["uid"], json!(uid));
        let wire = request["data"]["requestId"].clone();
        // Another server answers on this one's channel.
        let answer = json!({"type": 8, "data": {"requestId": wire, "sockets": [{"id": "x"}]}, "uid": "other", "nsp": "/"});
        a.handle_message(
            now,
            format!("socket.io#/#{uid}#").as_bytes(),
            answer.to_string().as_bytes(),
            &mut s,
        );
        assert_eq!(
            events(&mut a),
            vec![Event::Fetched {
                request: id,
                result: Ok(vec![json!({"id": "x"})])
            }]
        );

        // Another server's serverSideEmit with an ack: answered on its channel.
        let ask = json!({"type": 9, "data": {"requestId": "q1", "packet": ["ping", 1]}, "uid": "other", "nsp": "/"});
        a.handle_message(now, b"socket.io#/#", ask.to_string().as_bytes(), &mut s);
        let ev = events(&mut a);
        let [Event::ServerSideEmit {
            reply: Some(reply),
            data,
            ..
        }] = &ev[..]
        else {
            panic!("{ev:?}")
        };
        assert_eq!(data, &vec![json!("ping"), json!(1)]);
        a.answer_server_side_emit(reply, json!("pong"));
        let (channel, answer) = published(&mut a).remove(0);
        assert_eq!(channel, "socket.io#/#other#");
        assert_eq!(
            json_of(&answer),
            json!({"type": 10, "data": {"requestId": "q1", "packet": "pong"}, "uid": uid, "nsp": "/"})
        );
        // Its own messages, and other namespaces', are ignored.
        let own = json!({"type": 9, "data": {"packet": ["ping"]}, "uid": uid, "nsp": "/"});
        let other_nsp =
            json!({"type": 9, "data": {"packet": ["ping"]}, "uid": "other", "nsp": "/x"});
        for m in [own, other_nsp] {
            a.handle_message(now, b"socket.io#/#", m.to_string().as_bytes(), &mut s);
        }
        assert!(events(&mut a).is_empty());
    }

    #[test]
    fn ignores_what_it_cannot_use() {
        let now = Instant::now();
        let mut s = server();
        let mut a = adapter(1);
        let uid = a.uid().to_owned();
        let own = msgpack::to_vec(
            &json!([uid, {"type": 2, "data": ["e"], "nsp": "/"}, {"rooms": [], "except": []}]),
            &[],
        );
        let junk: [&[u8]; 8] = [
            b"",
            b"{",
            b"\xc1",
            b"[1,2]",
            &own,
            b"\x93\xa1x\x80\x80",
            b"{\"type\":7,\"packet\":{\"type\":2,\"data\":[]}}",
            b"{\"type\":2,\"sid\":\"nobody\",\"room\":\"r\"}",
        ];
        for channel in [
            &b"socket.io#/#"[..],
            b"socket.io-request#/#",
            b"socket.io-response#/#",
            b"socket.io#/nope#",
            b"\xff",
        ] {
            for j in junk {
                a.handle_message(now, channel, j, &mut s);
            }
        }
        assert!(events(&mut a).is_empty());
        assert!(published(&mut a).is_empty());
        assert_eq!(s.socket_count(), 0);
    }
}
