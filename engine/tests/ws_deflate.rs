//! permessage-deflate between connections, in memory.

mod support;

use std::sync::Arc;

use proptest::prelude::*;
use support::*;
use wirestate_engine::ws::frame::{FrameHeader, OpCode};
use wirestate_engine::ws::{
    CloseCode, Config, Connection, DeflateConfig, DeflateParams, Error, Event, Message,
    Precompressed, ProtocolError,
};

const OFFER_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

fn deflate_config(d: DeflateConfig) -> Config {
    Config::default().deflate(d)
}

/// A server that negotiated permessage-deflate with a raw client, output drained.
fn deflate_server(config: Config) -> (Connection, std::time::Instant) {
    let now = std::time::Instant::now();
    let mut server = Connection::server(Arc::new(config), now);
    server.handle_input(now, OFFER_REQUEST);
    let head = String::from_utf8(drain(&mut server)).expect("ascii");
    assert!(
        head.contains("\r\nSec-WebSocket-Extensions: permessage-deflate"),
        "{head}"
    );
    assert!(matches!(events(&mut server).as_slice(), [Event::Open(o)] if o.deflate.is_some()));
    (server, now)
}

/// First-frame headers of everything `conn` has queued.
fn headers(wire: &[u8]) -> Vec<FrameHeader> {
    let mut out = Vec::new();
    let mut rest = wire;
    while !rest.is_empty() {
        let (h, used) = FrameHeader::parse(rest).expect("valid").expect("complete");
        out.push(h);
        rest = &rest[used + h.payload_len as usize..];
    }
    out
}

#[test]
fn negotiated_pair_compresses_and_round_trips() {
    let cfg = || deflate_config(DeflateConfig::default().threshold(16));
    let mut pair = Pair::new(cfg(), cfg());
    pair.drive();
    let params = |events: &[Event]| match events.first() {
        Some(Event::Open(o)) => o.deflate,
        _ => None,
    };
    let expected = Some(DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    });
    assert_eq!(params(&pair.client.events), expected);
    assert_eq!(params(&pair.server.events), expected);
    pair.client.events.clear();
    pair.server.events.clear();

    let long = "wirestate compresses repeated text ".repeat(100);
    pair.server
        .conn
        .send(Message::text(long.as_str()))
        .expect("open");
    pair.server.conn.send(Message::text("tiny")).expect("open");
    let wire = drain(&mut pair.server.conn);
    let hs = headers(&wire);
    assert_eq!(hs[0].rsv, 0b100, "long message compressed");
    assert!(
        hs[0].payload_len < 200,
        "3500 bytes of repetition compress well: {}",
        hs[0].payload_len
    );
    assert_eq!(hs[1].rsv, 0, "under the threshold: plain");
    pair.client.conn.handle_input(pair.now, &wire);
    pair.client
        .conn
        .send(Message::text(long.as_str()))
        .expect("open");
    pair.drive();
    assert_eq!(
        pair.client.messages(),
        [Message::text(long.as_str()), Message::text("tiny")]
    );
    assert_eq!(pair.server.messages(), [Message::text(long.as_str())]);
}

#[test]
fn no_deflate_unless_both_sides_want_it() {
    let mut pair = Pair::new(Config::default(), deflate_config(DeflateConfig::default()));
    pair.drive();
    assert!(matches!(pair.server.events.first(), Some(Event::Open(o)) if o.deflate.is_none()));
    let mut pair = Pair::new(deflate_config(DeflateConfig::default()), Config::default());
    pair.drive();
    assert!(matches!(pair.client.events.first(), Some(Event::Open(o)) if o.deflate.is_none()));
}

#[test]
fn rsv1_rules() {
    let (mut server, now) = deflate_server(deflate_config(DeflateConfig::default()));
    // RSV1 on a continuation frame.
    let input = [
        client_frame(false, 2, b""),
        raw_frame(true, 4, 0, Some([1, 2, 3, 4]), b"x"),
    ]
    .concat();
    server.handle_input(now, &input);
    let closed = events(&mut server).into_iter().find_map(|e| match e {
        Event::Closed(c) => Some(c),
        _ => None,
    });
    assert_eq!(
        closed.and_then(|c| c.error),
        Some(Error::Protocol(ProtocolError::ReservedBits))
    );
    // RSV1 on a ping.
    let (mut server, now) = deflate_server(deflate_config(DeflateConfig::default()));
    server.handle_input(now, &raw_frame(true, 4, 9, Some([1, 2, 3, 4]), b""));
    assert!(
        matches!(events(&mut server).last(), Some(Event::Closed(c)) if c.code == CloseCode::PROTOCOL_ERROR)
    );
}

#[test]
fn a_deflate_bomb_gets_1009() {
    let (mut server, now) =
        deflate_server(deflate_config(DeflateConfig::default()).max_message_size(1 << 20));
    let bomb = Precompressed::new(Message::binary(vec![0u8; 16 << 20]), 6, 15);
    let z = bomb.deflated().expect("compressed");
    assert!(z.len() < 100_000);
    server.handle_input(now, &raw_frame(true, 4, 2, Some([9, 8, 7, 6]), z));
    let evs = events(&mut server);
    assert!(
        matches!(evs.last(), Some(Event::Closed(c)) if c.code == CloseCode::MESSAGE_TOO_BIG
            && c.error == Some(Error::Protocol(ProtocolError::MessageTooLarge))),
        "{evs:?}"
    );
    let frames = decode_frames(&drain(&mut server));
    assert_eq!(frames[0].0, OpCode::Close);
    assert_eq!(&frames[0].1[..2], &1009u16.to_be_bytes());
}

#[test]
fn garbage_compressed_data_gets_1007() {
    let (mut server, now) = deflate_server(deflate_config(DeflateConfig::default()));
    server.handle_input(now, &raw_frame(true, 4, 2, Some([9, 8, 7, 6]), &[0xff; 10]));
    assert!(
        matches!(events(&mut server).last(), Some(Event::Closed(c)) if c.code == CloseCode::INVALID_PAYLOAD)
    );
}

#[test]
fn invalid_utf8_inside_compressed_text_gets_1007() {
    let (mut server, now) = deflate_server(deflate_config(DeflateConfig::default()));
    let bad = Precompressed::new(Message::binary(b"ok \xed\xa0\x80 not ok".to_vec()), 6, 15);
    server.handle_input(
        now,
        &raw_frame(true, 4, 1, Some([1, 1, 1, 1]), bad.deflated().expect("z")),
    );
    let closed = events(&mut server).into_iter().find_map(|e| match e {
        Event::Closed(c) => Some(c),
        _ => None,
    });
    assert_eq!(closed.map(|c| c.code), Some(CloseCode::INVALID_PAYLOAD));
}

#[test]
fn precompressed_goes_out_compressed_only_where_allowed() {
    let msg = Message::text("broadcast ".repeat(50));
    let pre = Precompressed::new(msg.clone(), 6, 15);
    // No context takeover on the server side: the shared bytes are sent as they are.
    let (mut server, _) = deflate_server(deflate_config(
        DeflateConfig::default().server_no_context_takeover(true),
    ));
    server.send_precompressed(&pre).expect("open");
    let wire = drain(&mut server);
    let h = headers(&wire)[0];
    assert_eq!(
        (h.rsv, h.payload_len as usize),
        (0b100, pre.deflated().expect("z").len())
    );
    // Context takeover on: the plain message is sent instead.
    let (mut server, _) = deflate_server(deflate_config(DeflateConfig::default()));
    server.send_precompressed(&pre).expect("open");
    let h = headers(&drain(&mut server))[0];
    assert_eq!((h.rsv, h.payload_len as usize), (0, msg.len()));
    // And a client decodes the compressed form.
    let cfg = || deflate_config(DeflateConfig::default().no_context_takeover());
    let mut pair = Pair::open(cfg(), cfg());
    pair.server.conn.send_precompressed(&pre).expect("open");
    pair.server.conn.send_precompressed(&pre).expect("open");
    pair.drive();
    assert_eq!(pair.client.messages(), [msg.clone(), msg]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip_with_random_parameters(
        server_nct: bool, client_nct: bool,
        server_bits in 8u8..=15, client_bits in 8u8..=15,
        level in 0u32..=9, threshold in 0usize..64,
        messages in proptest::collection::vec(
            prop_oneof![
                ".{0,300}".prop_map(Message::from),
                proptest::collection::vec(any::<u8>(), 0..3000).prop_map(Message::from),
                (0u8..4, 0usize..5000).prop_map(|(b, n)| Message::from(vec![b; n])),
            ],
            1..10,
        ),
        chunk in 1usize..200,
    ) {
        let server_cfg = DeflateConfig::default()
            .level(level)
            .threshold(threshold)
            .server_no_context_takeover(server_nct)
            .max_window_bits(server_bits, client_bits);
        let client_cfg = DeflateConfig::default()
            .level(9 - level)
            .threshold(threshold)
            .client_no_context_takeover(client_nct);
        let mut pair = Pair::open(deflate_config(client_cfg), deflate_config(server_cfg));
        for m in &messages {
            pair.client.conn.send(m.clone()).expect("open");
            pair.server.conn.send(m.clone()).expect("open");
        }
        // Deliver the server's bytes to the client in small pieces.
        let wire = drain(&mut pair.server.conn);
        for piece in wire.chunks(chunk) {
            pair.client.conn.handle_input(pair.now, piece);
        }
        pair.drive();
        prop_assert_eq!(&pair.server.messages(), &messages);
        prop_assert_eq!(&pair.client.messages(), &messages);
    }
}
