#![no_main]
//! A Socket.IO server fed arbitrary Socket.IO traffic from several WebSocket clients
//! (v4 and v3), clock jumps, dropped transports and application calls (emits,
//! broadcasts, acks, joins, disconnects, shutdown). Ops are `[op, len, bytes[len]]`.
//! Nothing may panic, every CONNECT is answered with a packet on its transport, and
//! after a shutdown no session, socket or dynamic namespace is left.

use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use wirestate_engine::eio::{self, Reply};
use wirestate_engine::http::ServerConn;
use wirestate_engine::sio::{Broadcast, Config, Event, Payload, Recovery, Server, Sid};

#[path = "../common/links.rs"]
mod links;

/// A masked (with a zero key) client frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

fn upgrade(eio: u8) -> wirestate_engine::http::Request {
    let raw = format!("GET /socket.io/?EIO={eio}&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    let mut conn = ServerConn::new(4096, 1 << 16);
    conn.handle_input(raw.as_bytes());
    conn.poll_request().expect("a valid upgrade request")
}

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let eio = eio::Config::default()
        .path("/socket.io/")
        .heartbeat(Duration::from_millis(300), Duration::from_millis(200))
        .max_payload(4096)
        .allow_eio3(true);
    let mut config = Config::default()
        .eio(eio)
        .connect_timeout(Duration::from_millis(1000));
    if data.first().is_some_and(|b| b & 1 == 1) {
        let mut r = Recovery::default();
        r.max_packets = 8;
        config = config.recovery(r);
    }
    let mut server = Server::new(config, [3; 32]);
    server.add_namespace("/");
    server.add_namespace("/a");
    server.add_dynamic_namespace(std::sync::Arc::new(|n: &str| n.starts_with("/d")));
    let mut links = links::Links::default();
    let mut sockets: Vec<Sid> = Vec::new();
    let mut asks: Vec<(Sid, u64)> = Vec::new();
    let mut rest = data.get(1..).unwrap_or_default();
    while let [op, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (bytes, tail) = tail.split_at(len);
        rest = tail;
        let pick = usize::from(*op >> 3);
        match op & 7 {
            0 => {
                if let Reply::Upgrade(link) =
                    server.handle_request(now, &upgrade(if op & 0x80 == 0 { 4 } else { 3 }))
                {
                    links.add(link);
                }
            }
            1 | 2 => {
                let payload = if op & 7 == 1 {
                    let mut p = b"4".to_vec();
                    p.extend_from_slice(String::from_utf8_lossy(bytes).as_bytes());
                    frame(1, &p)
                } else {
                    frame(2, bytes)
                };
                links.input(pick, now, &payload, &mut server);
            }
            3 => {
                now += Duration::from_millis(len as u64 * 8);
                server.handle_timeout(now);
                links.timeout(now, &mut server);
            }
            4 => links.eof(pick, now, &mut server),
            5 => {
                let name = String::from_utf8_lossy(bytes).into_owned();
                let payload = Payload::new()
                    .arg(Value::from(name.clone()))
                    .bin(Bytes::copy_from_slice(bytes));
                match (pick % 6, sockets.get(pick % sockets.len().max(1)).cloned()) {
                    (0, Some(s)) => {
                        let _ = server.emit(now, &s, &name, payload);
                    }
                    (1, Some(s)) => {
                        let _ = server.emit_with_ack(
                            now,
                            &s,
                            &name,
                            payload,
                            Some(Duration::from_millis(100)),
                        );
                    }
                    (2, Some(s)) => {
                        let _ = server.join(&s, &[name.as_str().into()]);
                    }
                    (3, Some(s)) => {
                        let _ = server.disconnect(now, &s, op & 0x80 != 0);
                    }
                    (4, _) => {
                        let target = Broadcast::nsp("/").to(name.as_str()).except("x");
                        let _ = server.broadcast_with_ack(
                            now,
                            &target,
                            "b",
                            payload,
                            Some(Duration::from_millis(50)),
                        );
                    }
                    _ => {
                        server.broadcast(now, &Broadcast::all_namespaces(), "all", payload);
                    }
                }
            }
            6 => {
                if let Some((s, id)) = asks.pop() {
                    let _ = server.ack(&s, id, Payload::new());
                }
            }
            _ => {
                if op & 0x80 != 0 && bytes.first() == Some(&0) {
                    server.shutdown(now);
                }
            }
        }
        links.carry(now, &mut server);
        let mut pending = Vec::new();
        while let Some(e) = server.poll_event() {
            match e {
                Event::Connecting(info) => pending.push(info),
                Event::Connected { sid, .. } => sockets.push(sid),
                Event::Disconnected { sid, .. } => sockets.retain(|s| *s != sid),
                Event::Event {
                    sid, ack: Some(id), ..
                } => asks.push((sid, id)),
                _ => {}
            }
        }
        for (i, info) in pending.into_iter().enumerate() {
            let answered = if (i + usize::from(*op)) % 3 == 0 {
                server.reject(&info.session, &info.nsp, "no", None).is_ok()
            } else {
                server.accept(now, &info.session, &info.nsp).is_ok()
            };
            assert!(answered, "a pending CONNECT can be answered");
            assert!(
                links.carry(now, &mut server),
                "the answer to a CONNECT goes out"
            );
            while let Some(e) = server.poll_event() {
                if let Event::Connected { sid, .. } = e {
                    sockets.push(sid);
                }
            }
        }
    }
    server.shutdown(now);
    now += Duration::from_secs(3600);
    server.handle_timeout(now);
    while server.poll_transmit().is_some() {}
    while server.poll_event().is_some() {}
    assert_eq!(server.session_count(), 0, "no session left");
    assert_eq!(server.socket_count(), 0, "no socket left");
    assert!(
        server.namespaces().all(|n| n == "/" || n == "/a"),
        "no dynamic namespace left"
    );
});
