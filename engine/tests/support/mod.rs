//! In-memory drivers for protocol tests: two connections joined by a pipe, on a
//! virtual clock. No sockets, no sleeps.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use wirestate_engine::ws::frame::{FrameHeader, OpCode};
use wirestate_engine::ws::mask::apply_mask;
use wirestate_engine::ws::{ClientRequest, Closed, Config, Connection, Event};

pub const SEED: [u8; 32] = [42; 32];

/// One side's view: its connection, what it received, whether its transport is shut.
pub struct Peer {
    pub conn: Connection,
    pub events: Vec<Event>,
    pub shut: bool,
    /// While true, everything this peer transmits is lost.
    pub mute: bool,
}

impl Peer {
    fn new(conn: Connection) -> Self {
        Self {
            conn,
            events: Vec::new(),
            shut: false,
            mute: false,
        }
    }

    pub fn closed(&self) -> Option<&Closed> {
        self.events.iter().find_map(|e| match e {
            Event::Closed(c) => Some(c),
            _ => None,
        })
    }

    pub fn messages(&self) -> Vec<wirestate_engine::ws::Message> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }
}

/// A client and a server joined by an in-memory link.
pub struct Pair {
    pub now: Instant,
    pub client: Peer,
    pub server: Peer,
}

impl Pair {
    pub fn new(client_config: Config, server_config: Config) -> Self {
        let now = Instant::now();
        let request = ClientRequest::from_url("ws://example.test/chat").expect("url");
        let client = Connection::client(Arc::new(client_config), &request, now, SEED);
        let server = Connection::server(Arc::new(server_config), now);
        Self {
            now,
            client: Peer::new(client),
            server: Peer::new(server),
        }
    }

    /// A pair with the handshake done.
    pub fn open(client_config: Config, server_config: Config) -> Self {
        let mut pair = Self::new(client_config, server_config);
        pair.drive();
        assert!(
            matches!(pair.client.events.first(), Some(Event::Open(_))),
            "client open"
        );
        assert!(
            matches!(pair.server.events.first(), Some(Event::Open(_))),
            "server open"
        );
        pair.client.events.clear();
        pair.server.events.clear();
        pair
    }

    /// Moves bytes both ways until neither side has anything left to say.
    pub fn drive(&mut self) {
        for _ in 0..10_000 {
            let a = step(&mut self.client, &mut self.server, self.now);
            let b = step(&mut self.server, &mut self.client, self.now);
            if !a && !b {
                return;
            }
        }
        panic!("pair did not settle");
    }

    /// Jumps the clock to the earliest deadline of either side and fires it.
    pub fn advance(&mut self) -> Option<Duration> {
        let next = [
            self.client.conn.poll_timeout(),
            self.server.conn.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()?;
        let waited = next.saturating_duration_since(self.now);
        self.now = self.now.max(next);
        self.client.conn.handle_timeout(self.now);
        self.server.conn.handle_timeout(self.now);
        self.drive();
        Some(waited)
    }

    /// Runs timers until both transports are shut (or there is nothing left to do).
    pub fn settle(&mut self) {
        self.drive();
        while !(self.client.shut && self.server.shut) {
            if self.advance().is_none() {
                break;
            }
        }
    }
}

/// One step from `from` to `to`; true if anything happened.
fn step(from: &mut Peer, to: &mut Peer, now: Instant) -> bool {
    let mut progress = false;
    while let Some(bytes) = from.conn.poll_transmit() {
        progress = true;
        if !from.mute && !to.shut {
            to.conn.handle_input(now, &bytes);
        }
    }
    while let Some(event) = from.conn.poll_event() {
        progress = true;
        from.events.push(event);
    }
    if !from.shut && from.conn.should_close_transport() {
        from.shut = true;
        progress = true;
        to.conn.handle_eof(now);
    }
    progress
}

/// Encodes one raw frame, with full control over every header bit.
pub fn raw_frame(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let opcode_ok = OpCode::from_u8(opcode);
    let header = FrameHeader {
        fin,
        rsv,
        opcode: opcode_ok.unwrap_or(OpCode::Binary),
        mask,
        payload_len: payload.len() as u64,
    };
    header.encode(&mut out);
    if opcode_ok.is_err() {
        out[0] = (out[0] & 0xf0) | opcode;
    }
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
    out.to_vec()
}

/// A masked frame as a client sends it.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(fin, 0, opcode, Some([0x12, 0x34, 0x56, 0x78]), payload)
}

/// Decodes a server's output (after the handshake) into (opcode, payload) pairs.
pub fn decode_frames(mut bytes: &[u8]) -> Vec<(OpCode, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (h, used) = FrameHeader::parse(bytes)
            .expect("valid frame")
            .expect("complete frame");
        let end = used + h.payload_len as usize;
        let mut payload = bytes[used..end].to_vec();
        if let Some(key) = h.mask {
            apply_mask(&mut payload, key, 0);
        }
        out.push((h.opcode, payload));
        bytes = &bytes[end..];
    }
    out
}

/// Everything a connection has queued for the wire, concatenated.
pub fn drain(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(b) = conn.poll_transmit() {
        out.extend_from_slice(&b);
    }
    out
}

/// Events a connection has queued.
pub fn events(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

/// A server connection that has completed its handshake, with its output drained.
pub fn open_server(config: Config) -> (Connection, Instant) {
    let now = Instant::now();
    let mut server = Connection::server(Arc::new(config), now);
    server.handle_input(
        now,
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    let response = drain(&mut server);
    assert!(response.starts_with(b"HTTP/1.1 101 "));
    assert!(matches!(events(&mut server).as_slice(), [Event::Open(_)]));
    (server, now)
}
