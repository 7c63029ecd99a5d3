//! The sharded adapter's protocol (`createShardedAdapter`, on Redis 7 sharded pub/sub),
//! as the reference's `ClusterAdapter` writes it: every message is
//! `{type, data, uid, nsp}`, in JSON unless it carries binary (then msgpack), on the
//! namespace's channel `key#nsp#` (or a room's `key#nsp#room#` in the dynamic modes);
//! answers go to the asking server's `key#nsp#uid#`.

use super::*;

pub(in crate::redis) const BROADCAST: u64 = 3;
pub(in crate::redis) const SOCKETS_JOIN: u64 = 4;
pub(in crate::redis) const SOCKETS_LEAVE: u64 = 5;
pub(in crate::redis) const DISCONNECT_SOCKETS: u64 = 6;
pub(in crate::redis) const FETCH_SOCKETS: u64 = 7;
pub(in crate::redis) const FETCH_SOCKETS_RESPONSE: u64 = 8;
pub(in crate::redis) const SERVER_SIDE_EMIT: u64 = 9;
pub(in crate::redis) const SERVER_SIDE_EMIT_RESPONSE: u64 = 10;
pub(in crate::redis) const BROADCAST_CLIENT_COUNT: u64 = 11;
pub(in crate::redis) const BROADCAST_ACK: u64 = 12;

/// Broadcast options as the cluster adapter encodes them.
pub(in crate::redis) fn sharded_opts(target: &Broadcast, timeout: Option<Duration>) -> Value {
    json!({
        "rooms": dedup(&target.rooms),
        "except": dedup(&target.except),
        "flags": flags_json(target, timeout),
    })
}

/// What the reference takes for a socket's own room: 20 characters.
fn looks_like_a_socket_id(room: &str) -> bool {
    room.chars().count() == 20
}

impl Adapter {
    fn subscription(&self) -> Option<SubscriptionMode> {
        match self.config.mode {
            Mode::Sharded(s) => Some(s),
            Mode::Classic => None,
        }
    }

    /// `{type, data, uid, nsp}` for namespace `nsp`: the namespace's channel and the
    /// message (msgpack if it carries binary parts, JSON otherwise).
    pub(super) fn sharded_message(
        &self,
        nsp: &str,
        kind: u64,
        data: Value,
        bins: &[Bytes],
    ) -> (String, Bytes) {
        let message = json!({"type": kind, "data": data, "uid": self.uid, "nsp": nsp});
        let bytes = if bins.is_empty() {
            json_bytes(&message)
        } else {
            Bytes::from(msgpack::to_vec(&message, bins))
        };
        (self.broadcast_channel(nsp), bytes)
    }

    /// Publishes one of this server's operations for namespace `nsp`.
    pub(super) fn sharded_publish_op(&mut self, nsp: &str, message: &ClusterMessage) {
        let (kind, data, bins, room) = match message {
            ClusterMessage::Broadcast { target, packet } => {
                let (packet_value, bins) = packet_json(None, packet);
                let data = json!({"packet": packet_value, "opts": sharded_opts(target, None)});
                // A broadcast to one room goes on the room's channel in the dynamic
                // modes (socket rooms only in dynamic-private).
                let room = match (&target.rooms[..], self.subscription()) {
                    ([room], Some(SubscriptionMode::Dynamic)) if !looks_like_a_socket_id(room) => {
                        Some(room.clone())
                    }
                    ([room], Some(SubscriptionMode::DynamicPrivate)) => Some(room.clone()),
                    _ => None,
                };
                (BROADCAST, data, bins, room)
            }
            ClusterMessage::Join { target, rooms } => (
                SOCKETS_JOIN,
                json!({"opts": sharded_opts(target, None), "rooms": rooms.iter().map(|r| &**r).collect::<Vec<_>>()}),
                Vec::new(),
                None,
            ),
            ClusterMessage::Leave { target, rooms } => (
                SOCKETS_LEAVE,
                json!({"opts": sharded_opts(target, None), "rooms": rooms.iter().map(|r| &**r).collect::<Vec<_>>()}),
                Vec::new(),
                None,
            ),
            ClusterMessage::Disconnect { target, close } => (
                DISCONNECT_SOCKETS,
                json!({"opts": sharded_opts(target, None), "close": close}),
                Vec::new(),
                None,
            ),
        };
        let (mut channel, bytes) = self.sharded_message(nsp, kind, data, &bins);
        if let Some(room) = room {
            channel.push_str(&room);
            channel.push('#');
        }
        self.publish(channel, bytes);
    }

    /// A room of namespace `nsp` now exists here (`private`: a socket's own room): in
    /// the dynamic modes, its channel is subscribed to.
    pub fn room_created(&mut self, nsp: &str, room: &str, private: bool) {
        if let Some(channel) = self.room_channel(nsp, room, private) {
            if self.room_channels.insert(channel.clone()) {
                self.commands.push_back(Command::Subscribe {
                    channels: vec![channel],
                    patterns: Vec::new(),
                });
            }
        }
    }

    /// A room of namespace `nsp` is gone here: its channel is unsubscribed from.
    pub fn room_deleted(&mut self, nsp: &str, room: &str, private: bool) {
        if let Some(channel) = self.room_channel(nsp, room, private) {
            if self.room_channels.remove(&channel) {
                self.commands.push_back(Command::Unsubscribe {
                    channels: vec![channel],
                });
            }
        }
    }

    fn room_channel(&self, nsp: &str, room: &str, private: bool) -> Option<String> {
        if !self.namespaces.contains(nsp) {
            return None;
        }
        let own = match self.subscription()? {
            SubscriptionMode::Static => false,
            SubscriptionMode::Dynamic => !private,
            SubscriptionMode::DynamicPrivate => true,
        };
        own.then(|| format!("{}{room}#", self.broadcast_channel(nsp)))
    }

    /// A message on one of the sharded channels.
    pub(super) fn sharded_on_message(
        &mut self,
        now: Instant,
        channel: &str,
        payload: &[u8],
        server: &mut sio::Server,
    ) {
        let Some((message, bins)) = decode_message(payload) else {
            return;
        };
        let Some(nsp) = message
            .get("nsp")
            .and_then(Value::as_str)
            .and_then(|n| self.namespaces.get(n).cloned())
        else {
            return;
        };
        let data = message.get("data").cloned().unwrap_or(Value::Null);
        let kind = message.get("type").and_then(Value::as_u64);
        let own_channel = format!("{}{}#", self.broadcast_channel(&nsp), self.uid);
        let is_response = matches!(
            kind,
            Some(
                FETCH_SOCKETS_RESPONSE
                    | SERVER_SIDE_EMIT_RESPONSE
                    | BROADCAST_CLIENT_COUNT
                    | BROADCAST_ACK
            )
        );
        if channel == own_channel || is_response {
            // The classic shape of the same response.
            let request_id = data.get("requestId").cloned().unwrap_or(Value::Null);
            let response = match kind {
                Some(FETCH_SOCKETS_RESPONSE) => {
                    json!({"requestId": request_id, "sockets": data.get("sockets")})
                }
                Some(SERVER_SIDE_EMIT_RESPONSE) => json!({
                    "type": kind::SERVER_SIDE_EMIT,
                    "requestId": request_id,
                    "data": data.get("packet"),
                }),
                Some(BROADCAST_CLIENT_COUNT) => json!({
                    "type": kind::BROADCAST_CLIENT_COUNT,
                    "requestId": request_id,
                    "clientCount": data.get("clientCount"),
                }),
                Some(BROADCAST_ACK) => json!({
                    "type": kind::BROADCAST_ACK,
                    "requestId": request_id,
                    "packet": data.get("packet"),
                }),
                _ => return,
            };
            self.apply_response(&response, bins);
            return;
        }
        let uid = message.get("uid").cloned().unwrap_or(Value::Null);
        if uid.as_str() == Some(&self.uid) {
            return;
        }
        let opts = data.get("opts");
        let target = || opts.map_or_else(|| Broadcast::nsp(nsp.clone()), |o| target_of(&nsp, o));
        let reply = |data: &Value| ReplyTo {
            nsp: nsp.clone(),
            request_id: data.get("requestId").cloned().unwrap_or(Value::Null),
            uid: uid.clone(),
        };
        match kind {
            Some(BROADCAST) => {
                let Some(packet) = data.get("packet").and_then(|p| packet_of(&nsp, p, bins)) else {
                    return;
                };
                if data.get("requestId").is_some() {
                    let to = reply(&data);
                    self.remote_broadcast_with_ack(now, packet, target(), opts, to, server);
                } else {
                    let target = target();
                    server.handle_cluster(now, ClusterMessage::Broadcast { target, packet });
                }
            }
            Some(SOCKETS_JOIN | SOCKETS_LEAVE) => {
                let rooms = data.get("rooms").map(rooms_of).unwrap_or_default();
                let target = target().local();
                let message = if kind == Some(SOCKETS_JOIN) {
                    ClusterMessage::Join { target, rooms }
                } else {
                    ClusterMessage::Leave { target, rooms }
                };
                server.handle_cluster(now, message);
            }
            Some(DISCONNECT_SOCKETS) => {
                let close = data.get("close").and_then(Value::as_bool).unwrap_or(false);
                let target = target().local();
                server.handle_cluster(now, ClusterMessage::Disconnect { target, close });
            }
            Some(FETCH_SOCKETS) => {
                let sids = server.fetch_sockets(&target());
                let reply = reply(&data);
                self.events.push_back(Event::FetchRequest { reply, sids });
            }
            Some(SERVER_SIDE_EMIT) => {
                let Some(Value::Array(packet)) = data.get("packet").cloned() else {
                    return;
                };
                let with_ack = data.get("requestId").is_some();
                let reply = with_ack.then(|| reply(&data));
                self.events.push_back(Event::ServerSideEmit {
                    nsp: nsp.clone(),
                    data: packet,
                    reply,
                });
            }
            _ => {}
        }
    }
}
