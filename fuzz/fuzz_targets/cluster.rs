#![no_main]
//! What other servers of a Redis cluster (or anyone who can publish on its Redis)
//! send: RESP replies split anywhere, msgpack values, and adapter messages on every
//! channel, fed to a Socket.IO server's adapter; socket.io-msgpack-parser packets; and
//! the messages nodes forward requests with (decoded, they re-encode to the same); and
//! Redis Cluster slot maps and redirections. Nothing may panic; msgpack that
//! decodes re-encodes to bytes that decode to the same value; every request the
//! adapter starts ends by its deadline.

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use wirestate_engine::msgpack;
use wirestate_engine::redis::{forward, resp, slots, Adapter, Command, Config, Event, SubscriptionMode};
use wirestate_engine::sio::{self, Broadcast, Packet, Payload};

const CHANNELS: [&[u8]; 6] = [
    b"socket.io#/#",
    b"socket.io#/#room#",
    b"socket.io-request#/#",
    b"socket.io-response#/#",
    b"socket.io#/chat#",
    b"socket.io-request#/chat#",
];

fuzz_target!(|data: &[u8]| {
    // Forwarded requests (no sticky sessions): what decodes re-encodes to the same.
    let bytes = bytes::Bytes::copy_from_slice(data);
    if let Some(envelope) = forward::Envelope::decode(&bytes) {
        assert_eq!(forward::Envelope::decode(&envelope.encode()), Some(envelope));
    }
    // RESP: any split gives the same replies as the whole.
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut whole = resp::Parser::default();
    whole.feed(data);
    let mut parts = resp::Parser::default();
    parts.feed(&data[..split]);
    let mut got = Vec::new();
    while let Ok(Some(r)) = parts.next_reply() {
        got.push(r);
    }
    parts.feed(&data[split..]);
    while let Ok(Some(r)) = parts.next_reply() {
        got.push(r);
    }
    let mut want = Vec::new();
    while let Ok(Some(r)) = whole.next_reply() {
        want.push(r);
    }
    if got.len() == want.len() {
        assert_eq!(got, want);
    }
    // Redis Cluster's slot maps and redirections, read from any reply: every range
    // read is within the slots.
    for reply in &want {
        if let Ok(ranges) = slots::parse_slots(reply, "seed") {
            assert!(ranges.iter().all(|r| r.start <= r.end && r.end < slots::SLOTS));
        }
        if let resp::Reply::Error(e) = reply {
            if let Some((slot, _)) = slots::redirect(e) {
                assert!(slot < slots::SLOTS);
            }
        }
    }
    assert!(slots::key_slot(data) < slots::SLOTS);

    // msgpack round trip.
    if let Ok((value, bins)) = msgpack::decode(data) {
        let again = msgpack::to_vec(&value, &bins);
        let (back, back_bins) = msgpack::decode(&again).expect("our encoding decodes");
        assert_eq!((back, back_bins), (value, bins));
    }

    // socket.io-msgpack-parser packets: what decodes re-encodes to the same packet.
    let limits = sio::DecodeLimits::default();
    if let Ok(p) = Packet::decode_msgpack(data, &limits) {
        let again =
            Packet::decode_msgpack(&p.encode_msgpack(), &limits).expect("our encoding decodes");
        assert_eq!(again, p);
    }

    // The adapters (classic and sharded): messages `[channel, len, bytes]...` and
    // their own requests.
    for config in [
        Config::default(),
        Config::default().sharded(SubscriptionMode::Dynamic),
    ] {
        adapter_run(data, config);
    }
});

fn adapter_run(data: &[u8], config: Config) {
    let now = Instant::now();
    let mut server = sio::Server::new(sio::Config::default().cluster(true), [1; 32]);
    server.add_namespace("/");
    server.add_namespace("/chat");
    let mut adapter = Adapter::new(config, [2; 32]);
    adapter.add_namespace("/");
    adapter.add_namespace("/chat");
    let fetch = adapter.fetch_sockets(now, &Broadcast::nsp("/"));
    let sse = adapter.server_side_emit_with_ack(now, "/", vec![serde_json::json!("ping")]);
    let packet = Packet::event("/", "q", Payload::new());
    let acks =
        adapter.broadcast_with_ack(now, &Broadcast::nsp("/"), &packet, Duration::from_secs(1));
    while adapter.poll_command().is_some() {}
    for id in [fetch, sse, acks] {
        adapter.handle_server_count(id, 3);
    }
    let mut rest = data;
    while let [c, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let channel = CHANNELS[usize::from(*c) % CHANNELS.len()];
        adapter.handle_message(now, channel, &tail[..n], &mut server);
        rest = &tail[n..];
        while adapter.poll_command().is_some() {}
        adapter.room_created("/", "r", false);
        while let Some(e) = adapter.poll_event() {
            if let Event::FetchRequest { reply, .. } = e {
                adapter.answer_fetch(&reply, Vec::new());
            }
        }
    }
    adapter.handle_timeout(now + Duration::from_secs(5));
    while let Some(c) = adapter.poll_command() {
        assert!(!matches!(c, Command::CountServers { .. }));
    }
    while adapter.poll_event().is_some() {}
    assert_eq!(adapter.poll_timeout(), None, "every request ended");
}
