//! What Node's `@socket.io/redis-emitter` 5 publishes, byte for byte: broadcasts and
//! cluster requests from a process that is not a Socket.IO server (uid `emitter`).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use super::adapter::{dedup, flags_json, packet_json};
use crate::msgpack;
use crate::sio::{Broadcast, Packet, Payload, Room};

/// The uid the reference emitter publishes under.
pub const EMITTER_UID: &str = "emitter";

/// Builds the messages of an emitter for the cluster with channel prefix `key`; each
/// is a `(channel, payload)` to `PUBLISH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emitter {
    key: String,
}

impl Emitter {
    /// An emitter for the cluster whose channels start with `key` (`socket.io` by
    /// default in the reference).
    pub fn new(key: impl Into<String>) -> Self {
        Self { key: key.into() }
    }

    fn nsp(target: &Broadcast) -> Arc<str> {
        target.nsp.clone().unwrap_or_else(|| Arc::from("/"))
    }

    fn request_channel(&self, nsp: &str) -> String {
        format!("{}-request#{}#", self.key, nsp)
    }

    /// Emits `name` with `payload` to the sockets `target` selects, on every server.
    pub fn emit(&self, target: &Broadcast, name: &str, payload: Payload) -> (String, Bytes) {
        let nsp = Self::nsp(target);
        let packet = Packet::event(nsp.clone(), name, payload);
        let (packet_value, bins) = packet_json(Some(&nsp), &packet);
        let message = json!([
            EMITTER_UID,
            packet_value,
            {
                "rooms": dedup(&target.rooms),
                "flags": flags_json(target, None),
                "except": dedup(&target.except),
            }
        ]);
        let mut channel = format!("{}#{}#", self.key, nsp);
        if let [room] = &target.rooms[..] {
            channel.push_str(room);
            channel.push('#');
        }
        (channel, Bytes::from(msgpack::to_vec(&message, &bins)))
    }

    fn rooms_request(&self, target: &Broadcast, kind: u64, rooms: &[Room]) -> (String, Bytes) {
        let request = json!({
            "type": kind,
            "opts": {"rooms": dedup(&target.rooms), "except": dedup(&target.except)},
            "rooms": rooms.iter().map(|r| &**r).collect::<Vec<_>>(),
        });
        let channel = self.request_channel(&Self::nsp(target));
        (channel, Bytes::from(request.to_string().into_bytes()))
    }

    /// The selected sockets join `rooms`, on every server.
    pub fn sockets_join(&self, target: &Broadcast, rooms: &[Room]) -> (String, Bytes) {
        self.rooms_request(target, 2, rooms)
    }

    /// The selected sockets leave `rooms`, on every server.
    pub fn sockets_leave(&self, target: &Broadcast, rooms: &[Room]) -> (String, Bytes) {
        self.rooms_request(target, 3, rooms)
    }

    /// The selected sockets are disconnected (`close`: their connections too).
    pub fn disconnect_sockets(&self, target: &Broadcast, close: bool) -> (String, Bytes) {
        let request = json!({
            "type": 4,
            "opts": {"rooms": dedup(&target.rooms), "except": dedup(&target.except)},
            "close": close,
        });
        let channel = self.request_channel(&Self::nsp(target));
        (channel, Bytes::from(request.to_string().into_bytes()))
    }

    /// `serverSideEmit(name, ...args)` to every server of namespace `nsp` (without
    /// acks, as the reference).
    pub fn server_side_emit(&self, nsp: &str, name: &str, args: Vec<Value>) -> (String, Bytes) {
        let mut data = vec![Value::String(name.to_owned())];
        data.extend(args);
        let request = json!({"uid": EMITTER_UID, "type": 6, "data": data});
        (
            self.request_channel(nsp),
            Bytes::from(request.to_string().into_bytes()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_the_reference_emitter_writes() {
        let e = Emitter::new("socket.io");
        let (channel, payload) = e.emit(
            &Broadcast::nsp("/").to("r1"),
            "from-emitter",
            Payload::new().arg(json!("r1 only")),
        );
        assert_eq!(channel, "socket.io#/#r1#");
        let mut want =
            b"\x93\xa7emitter\x83\xa4type\x02\xa4data\x92\xacfrom-emitter\xa7r1 only".to_vec();
        want.extend_from_slice(b"\xa3nsp\xa1/\x83\xa5rooms\x91\xa2r1\xa5flags\x80\xa6except\x90");
        assert_eq!(&payload[..], &want[..]);
        let (channel, payload) = e.sockets_join(&Broadcast::nsp("/chat"), &[Arc::from("a")]);
        assert_eq!(channel, "socket.io-request#/chat#");
        assert_eq!(
            &payload[..],
            br#"{"type":2,"opts":{"rooms":[],"except":[]},"rooms":["a"]}"#
        );
        let (_, payload) = e.server_side_emit("/", "ping", vec![json!(1)]);
        assert_eq!(
            &payload[..],
            br#"{"uid":"emitter","type":6,"data":["ping",1]}"#
        );
    }
}
