#![no_main]
//! An Engine.IO server fed an arbitrary sequence of requests, WebSocket bytes (through
//! its transports' links), aborted polls and clock jumps. Ops are `[op, len, bytes[len]]`; the sid of the latest
//! session is remembered and used by the requests that need one.

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use wirestate_engine::eio::{Config, Data, Event, PollId, Reply, Server, SessionId};

#[path = "../common/links.rs"]
mod links;
use wirestate_engine::http::ServerConn;

fn request(raw: &[u8]) -> Option<wirestate_engine::http::Request> {
    let mut conn = ServerConn::new(4096, 1 << 16);
    conn.handle_input(raw);
    conn.poll_request()
}

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let config = Config::default()
        .heartbeat(Duration::from_millis(300), Duration::from_millis(200))
        .max_payload(4096)
        .allow_eio3(true);
    let mut server = Server::new(config, [7; 32]);
    let mut sid: Option<SessionId> = None;
    let mut polls: Vec<PollId> = Vec::new();
    let mut links = links::Links::default();
    let mut rest = data;
    while let [op, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (bytes, tail) = tail.split_at(len);
        rest = tail;
        let eio = if op & 0x80 == 0 { 4 } else { 3 };
        let sid_q = sid
            .as_ref()
            .map(|s| format!("&sid={s}"))
            .unwrap_or_default();
        let raw = match op & 7 {
            0 => format!("GET /engine.io/?EIO={eio}&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(),
            1 => format!("GET /engine.io/?EIO={eio}&transport=polling{sid_q} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(),
            2 => {
                let mut r = format!(
                    "POST /engine.io/?EIO={eio}&transport=polling{sid_q} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                    bytes.len()
                )
                .into_bytes();
                r.extend_from_slice(bytes);
                r
            }
            3 => format!("GET /engine.io/?EIO={eio}&transport=websocket{sid_q} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").into_bytes(),
            4 => {
                links.input(usize::from(*op >> 3), now, bytes, &mut server);
                Vec::new()
            }
            5 => {
                if let Some(p) = polls.pop() {
                    server.handle_poll_aborted(now, p);
                }
                if op & 0x40 != 0 {
                    links.eof(usize::from(*op >> 3), now, &mut server);
                }
                Vec::new()
            }
            6 => {
                now += Duration::from_millis(len as u64 * 4);
                server.handle_timeout(now);
                links.timeout(now, &mut server);
                if let Some(s) = &sid {
                    let _ = server.send(s, Data::Binary(bytes::Bytes::copy_from_slice(bytes)));
                }
                Vec::new()
            }
            _ => {
                let mut r = b"GET ".to_vec();
                r.extend_from_slice(bytes);
                r.extend_from_slice(b" HTTP/1.1\r\n\r\n");
                r
            }
        };
        if !raw.is_empty() {
            if let Some(req) = request(&raw) {
                match server.handle_request(now, &req) {
                    Reply::Park(p) => polls.push(p),
                    Reply::Upgrade(link) => links.add(link),
                    Reply::Respond(r) => assert!(r.status >= 200 && r.status < 600),
                }
            }
        }
        links.carry(now, &mut server);
        while let Some(e) = server.poll_event() {
            if let Event::Open { sid: s, .. } = e {
                sid = Some(s);
            }
        }
    }
});
