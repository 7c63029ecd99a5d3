#![no_main]
//! A whole connection fed arbitrary input in arbitrary splits, with timers and EOF.
//!
//! Input layout: byte 0 picks the role, whether a valid handshake is prepended (so
//! most runs reach the frame layer), EOF at the end, and whether reads are lent in
//! place (`handle_input_in_place`, as `recv_with` does); byte 1 seeds the chunk sizes;
//! the rest is the peer's bytes. Invariants: no panic, one `Closed` event at most and nothing after it,
//! and a connection that wants its transport closed stays that way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use wirestate_engine::ws::{ClientRequest, Config, Connection, Event};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    let [mode, seed, rest @ ..] = data else {
        return;
    };
    let now = Instant::now();
    let config = Arc::new(
        Config::default()
            .max_message_size(1 << 16)
            .max_frame_size(1 << 15)
            .keepalive(Duration::from_secs(5), Duration::from_secs(2)),
    );
    let client = mode & 1 == 1;
    let mut conn = if client {
        let request = ClientRequest::from_url("ws://x/").expect("static url");
        Connection::client(config, &request, now, [*seed; 32])
    } else {
        Connection::server(config, now)
    };
    let mut input = Vec::with_capacity(rest.len() + REQUEST.len());
    if mode & 2 == 2 && !client {
        input.extend_from_slice(REQUEST);
    }
    input.extend_from_slice(rest);

    let mut closed = false;
    let drain = |conn: &mut Connection, closed: &mut bool| {
        while conn.poll_transmit().is_some() {}
        while let Some(event) = conn.poll_event() {
            assert!(!*closed, "event after Closed: {event:?}");
            if matches!(event, Event::Closed(_)) {
                *closed = true;
            }
            // Answer messages the way an echo server would.
            if let Event::Message(m) = event {
                let _ = conn.send(m);
            }
        }
    };
    let mut size = usize::from(*seed % 17) + 1;
    let mut t = now;
    let lend = mode & 8 == 8;
    for chunk in input.chunks(size) {
        if lend {
            let mut read = chunk.to_vec();
            let mut at = 0;
            while at < read.len() {
                let (used, lent) = conn.handle_input_in_place(t, &mut read[at..]);
                assert!(used > 0, "no progress on {} bytes", read.len() - at);
                if let Some(m) = lent {
                    assert!(!closed, "message after Closed");
                    let _ = conn.send(m.to_message());
                }
                at += used;
                drain(&mut conn, &mut closed);
            }
        } else {
            conn.handle_input(t, chunk);
        }
        drain(&mut conn, &mut closed);
        size = size * 7 % 23 + 1;
        t += Duration::from_millis(size as u64 * 100);
        conn.handle_timeout(t);
        drain(&mut conn, &mut closed);
    }
    if mode & 4 == 4 {
        conn.handle_eof(t);
    } else if let Some(deadline) = conn.poll_timeout() {
        conn.handle_timeout(deadline);
    }
    drain(&mut conn, &mut closed);
    if conn.should_close_transport() {
        conn.handle_input(t, b"\x81\x80\0\0\0\0");
        drain(&mut conn, &mut closed);
        assert!(conn.should_close_transport());
    }
});
