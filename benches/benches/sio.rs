//! Criterion micro-benchmarks of Engine.IO / Socket.IO: packet encode and decode (fully,
//! and lazily as the server does; next to engineioxide's and socketioxide's parsers
//! with `--features peers`), and a
//! broadcast into N in-memory WebSocket recipients (the marginal cost per recipient
//! must not grow with N or with the payload size: the frame is encoded once).
#![allow(missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use wirestate_engine::eio::{
    self, Data, Packet as EioPacket, Protocol, Reply, Transmit, TransportId, WsLink,
};
use wirestate_engine::http::ServerConn;
use wirestate_engine::sio::{
    Broadcast, Config, Decoder, Event, Packet, PacketType, Payload, Server,
};
use wirestate_engine::ws::Message;

fn packets(c: &mut Criterion) {
    let mut group = c.benchmark_group("sio_packet");
    let cases: Vec<(&str, Packet)> = vec![
        ("connect", Packet::new(PacketType::Connect, "/")),
        (
            "event",
            Packet::event("/", "chat", Payload::new().arg(json!("hello world"))),
        ),
        ("event_with_ack", {
            let mut p = Packet::event(
                "/",
                "chat",
                Payload::new().arg(json!({"a": 1, "b": [1, 2, 3]})),
            );
            p.id = Some(12);
            p
        }),
        (
            "binary_event",
            Packet::event(
                "/",
                "file",
                Payload::new().arg(json!("x")).bin(vec![7u8; 1024]),
            ),
        ),
        (
            "custom_namespace",
            Packet::event("/admin", "chat", Payload::new().arg(json!("hello world"))),
        ),
    ];
    for (name, packet) in &cases {
        group.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| black_box(packet).encode())
        });
        let encoded = packet.encode();
        #[cfg(feature = "peers")]
        peers::socketioxide(&mut group, name, packet, &encoded);
        group.bench_function(BenchmarkId::new("decode", name), |b| {
            b.iter(|| {
                let mut d = Decoder::default();
                let mut out = None;
                for m in &encoded {
                    out = d.feed(black_box(m.clone())).ok().flatten();
                }
                out
            })
        });
        // As the server decodes: an event's or ack's arguments kept as JSON text.
        group.bench_function(BenchmarkId::new("decode_lazy", name), |b| {
            b.iter(|| {
                let mut d = Decoder::default();
                let mut out = None;
                for m in &encoded {
                    out = d.feed_parsed(black_box(m.clone()), None).ok().flatten();
                }
                out
            })
        });
    }
    let eio_cases = [
        (
            "open",
            EioPacket::text(
                eio::PacketType::Open,
                r#"{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#,
            ),
        ),
        ("ping", EioPacket::bare(eio::PacketType::Ping)),
        (
            "message",
            EioPacket::message(Data::from("2[\"chat\",\"hello world\"]")),
        ),
    ];
    for (name, packet) in &eio_cases {
        group.bench_function(BenchmarkId::new("eio_encode", name), |b| {
            b.iter(|| black_box(packet).to_ws(Protocol::V4))
        });
        let ws = packet.to_ws(Protocol::V4);
        group.bench_function(BenchmarkId::new("eio_decode", name), |b| {
            b.iter(|| EioPacket::from_ws(black_box(&ws), Protocol::V4))
        });
        #[cfg(feature = "peers")]
        peers::engineioxide(&mut group, name, &ws);
    }
    group.finish();
}

/// The same packets through socketioxide's common parser and engineioxide's packet
/// codec. socketioxide decodes lazily (event arguments stay JSON text until a handler
/// extracts them), so its decode is measured both bare and followed by reading the
/// arguments as a `serde_json::Value`, which is what ours hands out.
#[cfg(feature = "peers")]
mod peers {
    use super::*;
    use criterion::measurement::WallTime;
    use criterion::BenchmarkGroup;
    use socketioxide_core::packet::{Packet as SxPacket, PacketData};
    use socketioxide_core::parser::{Parse, ParseConfig, ParserState};
    use socketioxide_core::Str;
    use socketioxide_parser_common::CommonParser;

    fn sx_decode(encoded: &[Data]) -> Option<SxPacket> {
        let state = ParserState::default();
        let config = ParseConfig::default();
        let mut out = None;
        for m in encoded {
            out = match m {
                Data::Text(t) => CommonParser.decode_str(&config, &state, Str::from(t.to_string())),
                Data::Binary(b) => CommonParser.decode_bin(&config, &state, b.clone()),
            }
            .ok();
        }
        out
    }

    pub(super) fn socketioxide(
        group: &mut BenchmarkGroup<'_, WallTime>,
        name: &str,
        packet: &Packet,
        encoded: &[Data],
    ) {
        if packet.kind != PacketType::Connect {
            // The emit path: arguments serialised by the parser, then the packet.
            let data = packet.data.clone().unwrap_or_default();
            let (event, args) = match &data {
                serde_json::Value::Array(a) => {
                    (a[0].as_str().unwrap_or("e").to_owned(), a[1..].to_vec())
                }
                _ => ("e".to_owned(), Vec::new()),
            };
            let bins: Vec<Bytes> = packet.attachments.clone();
            let nsp = packet.nsp.to_string();
            let id = packet.id;
            group.bench_function(BenchmarkId::new("socketioxide_encode", name), |b| {
                b.iter(|| {
                    // Every case has one argument (and at most one attachment).
                    let value = if bins.is_empty() {
                        CommonParser.encode_value(black_box(&args[0]), Some(&event))
                    } else {
                        CommonParser.encode_value(
                            black_box(&(&args[0], bytes::Bytes::clone(&bins[0]))),
                            Some(&event),
                        )
                    }
                    .ok()?;
                    let mut p = SxPacket::event(nsp.clone(), value);
                    if let Some(id) = id {
                        p.inner.set_ack_id(id as i64);
                    }
                    Some(CommonParser.encode(p))
                })
            });
        }
        group.bench_function(BenchmarkId::new("socketioxide_decode", name), |b| {
            b.iter(|| sx_decode(black_box(encoded)))
        });
        group.bench_function(BenchmarkId::new("socketioxide_decode_value", name), |b| {
            b.iter(|| {
                let mut p = sx_decode(black_box(encoded))?;
                match &mut p.inner {
                    PacketData::Event(v, _) | PacketData::BinaryEvent(v, _) => {
                        CommonParser.decode_value::<serde_json::Value>(v, true).ok()
                    }
                    PacketData::Connect(Some(v)) => CommonParser
                        .decode_default::<serde_json::Value>(Some(v))
                        .ok(),
                    _ => None,
                }
            })
        });
    }

    pub(super) fn engineioxide(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, ws: &Message) {
        let Message::Text(t) = ws else { return };
        let t = t.to_string();
        if name == "open" {
            return; // engineioxide builds its open packet from its config and a sid.
        }
        let packet =
            engineioxide_core::Packet::parse(engineioxide_core::ProtocolVersion::V4, t.clone())
                .expect("valid Engine.IO packet");
        group.bench_function(BenchmarkId::new("engineioxide_encode", name), |b| {
            b.iter(|| String::from(black_box(packet.clone())))
        });
        group.bench_function(BenchmarkId::new("engineioxide_decode", name), |b| {
            b.iter(|| {
                engineioxide_core::Packet::parse(
                    engineioxide_core::ProtocolVersion::V4,
                    Str::from(black_box(&t).clone()),
                )
            })
        });
    }
}

/// A masked client text frame (zero key, so the payload reads as is).
fn client_frame(text: &str) -> Vec<u8> {
    let mut f = vec![0x81];
    match text.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(text.as_bytes());
    f
}

/// A server with `n` WebSocket clients connected to `/`, all in room `r`, and the
/// links that carry them (by transport id, as the host keeps them).
fn server_with(n: usize) -> (Server, Instant, HashMap<TransportId, WsLink>) {
    server_with_payload(n, 1 << 20)
}

fn server_with_payload(
    n: usize,
    max_payload: usize,
) -> (Server, Instant, HashMap<TransportId, WsLink>) {
    let now = Instant::now();
    let config = Config::default().eio(
        eio::Config::default()
            .path("/socket.io/")
            .max_payload(max_payload)
            .heartbeat(Duration::from_secs(3600), Duration::from_secs(3600)),
    );
    let mut server = Server::new(config, [1; 32]);
    server.add_namespace("/");
    let mut links = HashMap::new();
    let raw = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    for _ in 0..n {
        let mut http = ServerConn::new(8192, 1024);
        http.handle_input(raw.as_bytes());
        let Some(request) = http.poll_request() else {
            panic!("request")
        };
        let Reply::Upgrade(mut link) = server.handle_request(now, &request) else {
            panic!("upgrade")
        };
        link.handle_input(now, &client_frame("40"));
        link.deliver(now, &mut server);
        while server.poll_transmit().is_some() {}
        while let Some(e) = server.poll_event() {
            match e {
                Event::Connecting(info) => {
                    let _ = server.accept(now, &info.session, &info.nsp);
                }
                Event::Connected { sid, .. } => {
                    let _ = server.join(&sid, &["r".into()]);
                }
                _ => {}
            }
        }
        while server.poll_transmit().is_some() {}
        while link.poll_transmit().is_some() {}
        links.insert(link.transport(), *link);
    }
    (server, now, links)
}

fn broadcast(c: &mut Criterion) {
    let mut group = c.benchmark_group("sio_broadcast");
    group.sample_size(20);
    for n in [1usize, 10, 100, 1000, 10_000] {
        let (mut server, now, mut links) = server_with(n);
        for size in [20usize, 1024] {
            let text = "x".repeat(size);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(BenchmarkId::new(format!("{size}B"), n), |b| {
                b.iter(|| {
                    let sent = server.broadcast(
                        now,
                        &Broadcast::nsp("/").to("r"),
                        "news",
                        Payload::new().arg(json!(text)),
                    );
                    // Each recipient's link turns the shared frame into its bytes (what
                    // every connection task does, outside the server's lock).
                    let mut bytes = 0;
                    while let Some(t) = server.poll_transmit() {
                        if let Transmit::Ws { transport, output } = t {
                            if let Some(link) = links.get_mut(&transport) {
                                link.handle_output(now, output);
                                while let Some(b) = link.poll_transmit() {
                                    link.handle_written(b.len());
                                    bytes += b.len();
                                }
                                let written = link.take_written();
                                server.handle_ws_written(transport, written);
                            }
                        }
                    }
                    black_box((sent, bytes))
                })
            });
        }
    }
    group.finish();
}

fn ws_message(c: &mut Criterion) {
    // The Engine.IO message → WebSocket message step a broadcast no longer repeats.
    let data = Data::Text("x".repeat(1024).into());
    c.bench_function("eio_to_ws_1KiB_per_recipient_copy", |b| {
        b.iter(|| EioPacket::message(black_box(data.clone())).to_ws(Protocol::V4))
    });
    let shared = eio::SharedMessage::new(data.clone());
    c.bench_function("eio_shared_message_clone", |b| {
        b.iter(|| black_box(&shared).clone())
    });
    let _ = Message::Binary(Bytes::new());
}

/// A 1 MiB event over WebSocket, split where the host splits it: the link's part
/// (unmasking, UTF-8 validation, Engine.IO and Socket.IO decoding with the JSON parse)
/// runs in the connection's task; only the server's part runs under the host's lock,
/// and it must not grow with the event's size.
fn large_event(c: &mut Criterion) {
    let mut group = c.benchmark_group("sio_ws_event_1MiB");
    group.sample_size(20);
    let (mut server, now, mut links) = server_with_payload(1, 4 << 20);
    let (&tid, _) = links.iter().next().expect("one link");
    let frame = client_frame(&format!("42[\"big\",\"{}\"]", "x".repeat(1 << 20)));
    group.throughput(Throughput::Bytes(frame.len() as u64));
    let link = links.get_mut(&tid).expect("link");
    group.bench_function("link_outside_the_lock", |b| {
        b.iter(|| {
            link.handle_input(now, &frame);
            black_box(link.poll_input())
        })
    });
    group.bench_function("server_under_the_lock", |b| {
        b.iter_batched(
            || {
                link.handle_input(now, &frame);
                link.poll_input().expect("a packet")
            },
            |input| {
                server.handle_ws_input(now, tid, input);
                while server.poll_transmit().is_some() {}
                black_box(server.poll_event())
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, packets, broadcast, ws_message, large_event);
criterion_main!(benches);
