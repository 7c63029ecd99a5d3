#![no_main]
//! The inflate path: a server that negotiated permessage-deflate receives compressed
//! frames (RSV1 set) whose payloads are arbitrary bytes.
//!
//! Input layout: a sequence of `[flags, len, payload[len]]` records, each one a masked
//! frame; flags pick the opcode (text, binary, continuation), FIN and RSV1. Invariants:
//! no panic, output bounded by the message limit, nothing after `Closed`.

use std::sync::Arc;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use wirestate_engine::ws::frame::{FrameHeader, OpCode};
use wirestate_engine::ws::mask::apply_mask;
use wirestate_engine::ws::{Config, Connection, DeflateConfig, Event};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=9\r\n\r\n";
const LIMIT: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let config = Config::default()
        .max_message_size(LIMIT)
        .deflate(DeflateConfig::default().threshold(0));
    let mut conn = Connection::server(Arc::new(config), now);
    conn.handle_input(now, REQUEST);
    while conn.poll_transmit().is_some() {}
    assert!(matches!(conn.poll_event(), Some(Event::Open(o)) if o.deflate.is_some()));

    let mut wire = Vec::new();
    let mut rest = data;
    while let [flags, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        let opcode = match flags & 3 {
            0 => OpCode::Continuation,
            1 => OpCode::Text,
            _ => OpCode::Binary,
        };
        let key = [*flags, 0x5a, len as u8, 0xa5];
        let header = FrameHeader {
            fin: flags & 4 == 0,
            rsv: if flags & 8 == 0 { 0b100 } else { 0 },
            opcode,
            mask: Some(key),
            payload_len: len as u64,
        };
        let mut buf = bytes::BytesMut::new();
        header.encode(&mut buf);
        let start = buf.len();
        buf.extend_from_slice(payload);
        apply_mask(&mut buf[start..], key, 0);
        wire.extend_from_slice(&buf);
    }

    let mut closed = false;
    for chunk in wire.chunks(97) {
        conn.handle_input(now, chunk);
        while conn.poll_transmit().is_some() {}
        while let Some(event) = conn.poll_event() {
            assert!(!closed, "event after Closed");
            match event {
                Event::Message(m) => {
                    assert!(m.len() <= LIMIT);
                    let _ = conn.send(m);
                }
                Event::Closed(_) => closed = true,
                _ => {}
            }
        }
    }
});
