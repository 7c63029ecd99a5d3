//! Property tests: round trips, and that the events a connection produces do not depend
//! on how its input is split.

mod support;

use std::sync::Arc;

use proptest::prelude::*;
use support::*;
use wirestate_engine::ws::frame::{FrameHeader, OpCode};
use wirestate_engine::ws::{Config, Connection, Event, Message};

fn opcode() -> impl Strategy<Value = OpCode> {
    prop_oneof![
        Just(OpCode::Continuation),
        Just(OpCode::Text),
        Just(OpCode::Binary),
        Just(OpCode::Close),
        Just(OpCode::Ping),
        Just(OpCode::Pong),
    ]
}

/// What a client might put on the wire, valid or not.
#[derive(Clone, Debug)]
enum Piece {
    Text(String),
    Binary(Vec<u8>),
    Fragmented(Vec<String>),
    Ping(Vec<u8>),
    Close(u16, String),
    Garbage(Vec<u8>),
    /// A text frame whose payload may not be UTF-8.
    RawText(Vec<u8>),
    /// About the frame limit (2,048 in some runs) or the message limit (4,096).
    Large(usize),
    /// Any first byte (FIN, RSV bits, opcode, reserved ones too), masked or not.
    Frame {
        first: u8,
        masked: bool,
        payload: Vec<u8>,
    },
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        4 => ".{0,40}".prop_map(Piece::Text),
        3 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Piece::Binary),
        2 => proptest::collection::vec(".{0,10}", 1..5).prop_map(Piece::Fragmented),
        2 => proptest::collection::vec(any::<u8>(), 0..125).prop_map(Piece::Ping),
        1 => (any::<u16>(), ".{0,20}").prop_map(|(c, r)| Piece::Close(c, r)),
        1 => proptest::collection::vec(any::<u8>(), 1..20).prop_map(Piece::Garbage),
        2 => proptest::collection::vec(any::<u8>(), 0..12).prop_map(Piece::RawText),
        1 => prop_oneof![2040usize..2060, 4090usize..4100].prop_map(Piece::Large),
        3 => (frame_first_byte(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..20))
            .prop_map(|(first, masked, payload)| Piece::Frame { first, masked, payload }),
    ]
}

/// A first header byte: mostly a valid data frame's, with its FIN bit, RSV bits and
/// opcode each sometimes otherwise, so that each check on a frame meets both sides.
fn frame_first_byte() -> impl Strategy<Value = u8> {
    let fin = prop_oneof![3 => Just(0x80u8), 1 => Just(0)];
    let rsv = prop_oneof![3 => Just(0u8), 1 => (1u8..8).prop_map(|r| r << 4)];
    let opcode = prop_oneof![3 => 0u8..3, 1 => 0u8..16];
    (fin, rsv, opcode).prop_map(|(fin, rsv, opcode)| fin | rsv | opcode)
}

fn encode(pieces: &[Piece]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pieces {
        match p {
            Piece::Text(t) => out.extend(client_frame(true, 1, t.as_bytes())),
            Piece::Binary(b) => out.extend(client_frame(true, 2, b)),
            Piece::Fragmented(parts) => {
                // Split on bytes, not chars: fragments may cut code points in half.
                let joined: Vec<u8> = parts.concat().into_bytes();
                let n = parts.len();
                let size = joined.len().div_ceil(n).max(1);
                let chunks: Vec<&[u8]> = if joined.is_empty() {
                    vec![&[][..]]
                } else {
                    joined.chunks(size).collect()
                };
                for (i, c) in chunks.iter().enumerate() {
                    let op = if i == 0 { 1 } else { 0 };
                    out.extend(client_frame(i + 1 == chunks.len(), op, c));
                }
            }
            Piece::Ping(b) => out.extend(client_frame(true, 9, b)),
            Piece::Close(code, reason) => {
                let mut payload = code.to_be_bytes().to_vec();
                payload.extend(reason.as_bytes().iter().take(123));
                out.extend(client_frame(true, 8, &payload));
            }
            Piece::Garbage(g) => out.extend(g),
            Piece::RawText(b) => out.extend(client_frame(true, 1, b)),
            Piece::Large(n) => out.extend(client_frame(true, 2, &vec![b'x'; *n])),
            Piece::Frame {
                first,
                masked,
                payload,
            } => {
                let mask = masked.then_some([9, 8, 7, 6]);
                out.extend(raw_frame(
                    first & 0x80 != 0,
                    (first >> 4) & 7,
                    first & 0x0f,
                    mask,
                    payload,
                ));
            }
        }
    }
    out
}

/// Feeds `input` to a fresh open server (messages up to 4,096 bytes, frames up to
/// `frame_limit`) in the given chunk sizes; returns every event and every byte it
/// wrote. With `lend`, each chunk goes through `handle_input_in_place`, as a driver
/// lending its read buffer feeds it, and a message lent is recorded as its event.
fn run_server(
    input: &[u8],
    sizes: &[usize],
    frame_limit: usize,
    lend: bool,
) -> (Vec<Event>, Vec<u8>) {
    let mut config = Config::default()
        .max_message_size(4096)
        .max_frame_size(frame_limit);
    // Dropping unsent pongs under a flood depends on when the driver drains, which is
    // exactly what this comparison varies: keep them all here.
    config.max_pending_pongs = usize::MAX;
    let (mut server, now) = open_server(config);
    let mut events_out = Vec::new();
    let mut wire = Vec::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        i += 1;
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        if lend {
            let mut chunk = chunk.to_vec();
            let mut from = 0;
            while from < chunk.len() {
                let (used, message) = server.handle_input_in_place(now, &mut chunk[from..]);
                if let Some(message) = message {
                    events_out.push(Event::Message(message.to_message()));
                }
                from += used;
                loop {
                    wire.extend(drain(&mut server));
                    match server.poll_event() {
                        Some(e) => events_out.push(e),
                        None => break,
                    }
                }
            }
        } else {
            server.handle_input(now, chunk);
        }
        // Drain exactly as a driver does, interleaving events and output.
        loop {
            wire.extend(drain(&mut server));
            match server.poll_event() {
                Some(e) => events_out.push(e),
                None => break,
            }
        }
    }
    wire.extend(drain(&mut server));
    (events_out, wire)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn header_round_trip(fin: bool, rsv in 0u8..8, op in opcode(), mask: Option<[u8; 4]>, len in prop_oneof![0u64..200, 0u64..70_000, 0u64..(1 << 63)]) {
        let len = if op.is_control() { len % 126 } else { len };
        let fin = fin || op.is_control();
        let header = FrameHeader { fin, rsv, opcode: op, mask, payload_len: len };
        let mut buf = bytes::BytesMut::new();
        header.encode(&mut buf);
        prop_assert_eq!(FrameHeader::parse(&buf), Ok(Some((header, buf.len()))));
    }

    #[test]
    fn events_do_not_depend_on_how_input_is_split(
        pieces in proptest::collection::vec(piece(), 1..12),
        sizes in proptest::collection::vec(1usize..64, 1..8),
        frame_limit in prop_oneof![Just(2048usize), Just(8192)],
    ) {
        // Whole, each complete frame is decoded in one step; byte by byte, never.
        // Lent in place, the same again: whole messages are never copied.
        let input = encode(&pieces);
        let whole = run_server(&input, &[input.len().max(1)], frame_limit, false);
        let split = run_server(&input, &sizes, frame_limit, false);
        let bytewise = run_server(&input, &[1], frame_limit, false);
        let whole_lent = run_server(&input, &[input.len().max(1)], frame_limit, true);
        let split_lent = run_server(&input, &sizes, frame_limit, true);
        prop_assert_eq!(&whole, &split);
        prop_assert_eq!(&whole, &bytewise);
        prop_assert_eq!(&whole, &whole_lent);
        prop_assert_eq!(&whole, &split_lent);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_split_invariance_holds(
        input in proptest::collection::vec(any::<u8>(), 0..512),
        sizes in proptest::collection::vec(1usize..32, 1..4),
    ) {
        let whole = run_server(&input, &[input.len().max(1)], 2048, false);
        let split = run_server(&input, &sizes, 2048, false);
        let whole_lent = run_server(&input, &[input.len().max(1)], 2048, true);
        let split_lent = run_server(&input, &sizes, 2048, true);
        prop_assert_eq!(&whole, &split);
        prop_assert_eq!(&whole, &whole_lent);
        prop_assert_eq!(&whole, &split_lent);
    }

    #[test]
    fn messages_round_trip_between_client_and_server(
        texts in proptest::collection::vec(".{0,200}", 0..8),
        blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..10_000), 0..4),
    ) {
        let mut pair = Pair::open(Config::default(), Config::default());
        let mut sent = Vec::new();
        for t in &texts {
            sent.push(Message::text(t.as_str()));
        }
        for b in &blobs {
            sent.push(Message::binary(b.clone()));
        }
        for m in &sent {
            pair.client.conn.send(m.clone()).expect("open");
            pair.server.conn.send(m.clone()).expect("open");
        }
        pair.drive();
        prop_assert_eq!(&pair.server.messages(), &sent);
        prop_assert_eq!(&pair.client.messages(), &sent);
    }

    #[test]
    fn client_accepts_server_output_in_any_split(
        texts in proptest::collection::vec(".{0,300}", 1..6),
        sizes in proptest::collection::vec(1usize..50, 1..6),
    ) {
        let now = std::time::Instant::now();
        let request = wirestate_engine::ws::ClientRequest::from_url("ws://h/").expect("url");
        let mut client = Connection::client(Arc::new(Config::default()), &request, now, SEED);
        let mut server = Connection::server(Arc::new(Config::default()), now);
        server.handle_input(now, &drain(&mut client));
        prop_assert!(matches!(server.poll_event(), Some(Event::Open(_))));
        for t in &texts {
            server.send(Message::text(t.as_str())).expect("open");
        }
        let wire = drain(&mut server);
        let mut rest = &wire[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].min(rest.len());
            i += 1;
            client.handle_input(now, &rest[..n]);
            rest = &rest[n..];
        }
        let got: Vec<Message> = events(&mut client)
            .into_iter()
            .filter_map(|e| match e { Event::Message(m) => Some(m), _ => None })
            .collect();
        let want: Vec<Message> = texts.iter().map(|t| Message::text(t.as_str())).collect();
        prop_assert_eq!(got, want);
    }
}
