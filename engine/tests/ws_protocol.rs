//! Protocol tests: connections driven against each other and against raw bytes, in
//! memory, on a virtual clock.

mod support;

use std::time::Duration;

use support::*;
use wirestate_engine::ws::frame::OpCode;
use wirestate_engine::ws::{
    CloseCode, Config, Error, Event, HandshakeError, Message, ProtocolError, SendError, Side,
};

#[test]
fn frames_encoded_now_arrive_from_either_side() {
    let mut pair = Pair::open(Config::default(), Config::default());
    let mut wire = Vec::new();
    for m in [Message::text("hi"), Message::binary(vec![9u8; 300])] {
        assert_eq!(pair.client.conn.encode_now(&m, &mut wire), Ok(true));
    }
    // Masked by the client: each frame's header has the mask bit and a key.
    assert_eq!(wire.len(), (2 + 4 + 2) + (4 + 4 + 300));
    assert_eq!(wire[1] & 0x80, 0x80);
    pair.server.conn.handle_input(pair.now, &wire);
    wire.clear();
    assert_eq!(
        pair.server
            .conn
            .encode_now(&Message::text("back"), &mut wire),
        Ok(true)
    );
    pair.client.conn.handle_input(pair.now, &wire);
    pair.drive();
    assert_eq!(
        pair.server.messages(),
        [Message::text("hi"), Message::binary(vec![9u8; 300])]
    );
    assert_eq!(pair.client.messages(), [Message::text("back")]);
}

#[test]
fn messages_flow_both_ways() {
    let mut pair = Pair::open(Config::default(), Config::default());
    pair.client.conn.send(Message::text("hello")).expect("open");
    pair.client
        .conn
        .send(Message::binary(vec![1u8, 2, 3]))
        .expect("open");
    let big = "x".repeat(70_000);
    pair.server
        .conn
        .send(Message::text(big.clone()))
        .expect("open");
    pair.server
        .conn
        .send(Message::binary(Vec::new()))
        .expect("open");
    pair.drive();
    assert_eq!(
        pair.server.messages(),
        [Message::text("hello"), Message::binary(vec![1u8, 2, 3])]
    );
    assert_eq!(
        pair.client.messages(),
        [Message::text(big), Message::binary(Vec::new())]
    );
}

#[test]
fn client_initiated_close_is_clean_and_server_closes_tcp_first() {
    let mut pair = Pair::open(Config::default(), Config::default());
    let now = pair.now;
    pair.client
        .conn
        .close(now, CloseCode::NORMAL, "bye")
        .expect("open");
    assert_eq!(
        pair.client.conn.send(Message::text("late")),
        Err(SendError::Closed)
    );
    pair.drive();
    let server = pair.server.closed().expect("server closed");
    assert_eq!(
        (server.code, server.reason.as_str(), server.initiator),
        (CloseCode::NORMAL, "bye", Side::Remote)
    );
    assert!(server.is_clean());
    let client = pair.client.closed().expect("client closed");
    assert_eq!(
        (client.code, client.initiator),
        (CloseCode::NORMAL, Side::Local)
    );
    assert!(client.is_clean());
    // The server shut its transport; the client saw EOF and followed.
    assert!(pair.server.shut && pair.client.shut);
}

#[test]
fn server_initiated_close_echoes_the_code() {
    let mut pair = Pair::open(Config::default(), Config::default());
    let now = pair.now;
    pair.server
        .conn
        .close(now, CloseCode(4001), "kicked")
        .expect("open");
    pair.drive();
    let client = pair.client.closed().expect("client closed");
    assert_eq!(
        (client.code, client.reason.as_str(), client.initiator),
        (CloseCode(4001), "kicked", Side::Remote)
    );
    let server = pair.server.closed().expect("server closed");
    assert_eq!(
        (server.code, server.initiator, server.is_clean()),
        (CloseCode(4001), Side::Local, true)
    );
    assert!(pair.server.shut && pair.client.shut);
}

#[test]
fn client_waits_for_the_server_to_close_tcp_then_gives_up() {
    // The close frame arrives, but the server's FIN never does.
    let mut pair = Pair::open(
        Config::default().close_timeout(Duration::from_secs(3)),
        Config::default(),
    );
    let now = pair.now;
    pair.server
        .conn
        .close(now, CloseCode::NORMAL, "")
        .expect("open");
    let frame = drain(&mut pair.server.conn);
    pair.client.conn.handle_input(now, &frame);
    assert!(matches!(events(&mut pair.client.conn).last(), Some(Event::Closed(c)) if c.is_clean()));
    let _echo = drain(&mut pair.client.conn);
    assert!(
        !pair.client.conn.should_close_transport(),
        "client lingers for the server's FIN"
    );
    let deadline = pair.client.conn.poll_timeout().expect("linger timer");
    assert_eq!(deadline - now, Duration::from_secs(3));
    pair.client.conn.handle_timeout(deadline);
    assert!(pair.client.conn.should_close_transport());
}

#[test]
fn unanswered_close_times_out() {
    let mut pair = Pair::open(
        Config::default(),
        Config::default().close_timeout(Duration::from_secs(2)),
    );
    pair.client.mute = true;
    let now = pair.now;
    pair.server
        .conn
        .close(now, CloseCode::GOING_AWAY, "")
        .expect("open");
    pair.drive();
    assert!(pair.server.closed().is_none());
    assert_eq!(pair.advance(), Some(Duration::from_secs(2)));
    let closed = pair.server.closed().expect("closed by timeout");
    assert_eq!(
        (closed.code, closed.error.clone()),
        (CloseCode::ABNORMAL, Some(Error::CloseTimeout))
    );
    assert!(pair.server.shut);
}

#[test]
fn keepalive_pings_an_idle_peer_and_drops_a_silent_one() {
    let keepalive = Config::default().keepalive(Duration::from_secs(10), Duration::from_secs(5));
    let mut pair = Pair::open(Config::default(), keepalive);
    // A live client answers every ping: nothing ends after many intervals.
    for _ in 0..5 {
        assert_eq!(pair.advance(), Some(Duration::from_secs(10)));
        assert!(pair
            .server
            .events
            .iter()
            .any(|e| matches!(e, Event::Pong(_))));
        pair.server.events.clear();
    }
    assert!(pair.server.closed().is_none());
    // A silent client is dropped `timeout` after the next ping.
    pair.client.mute = true;
    assert_eq!(pair.advance(), Some(Duration::from_secs(10)));
    assert_eq!(pair.advance(), Some(Duration::from_secs(5)));
    let closed = pair.server.closed().expect("dropped");
    assert_eq!(closed.error, Some(Error::KeepaliveTimeout));
    assert!(pair.server.shut);
}

#[test]
fn handshake_timeout_drops_a_silent_client() {
    let mut pair = Pair::new(
        Config::default(),
        Config::default().handshake_timeout(Duration::from_secs(1)),
    );
    pair.client.mute = true;
    pair.drive();
    assert_eq!(pair.advance(), Some(Duration::from_secs(1)));
    assert_eq!(
        pair.server.closed().and_then(|c| c.error.clone()),
        Some(Error::HandshakeTimeout)
    );
    assert!(pair.server.shut);
}

#[test]
fn eof_without_close_is_1006() {
    let mut pair = Pair::open(Config::default(), Config::default());
    let now = pair.now;
    pair.server.conn.handle_eof(now);
    pair.drive();
    let closed = pair.server.closed().expect("closed");
    assert_eq!(
        (closed.code, closed.error.clone()),
        (CloseCode::ABNORMAL, Some(Error::UnexpectedEof))
    );
    assert!(pair.server.shut);
}

#[test]
fn bad_upgrade_requests_get_an_http_error_and_nothing_is_kept() {
    let cases: &[(&[u8], &str, HandshakeError)] = &[
        (b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 ", HandshakeError::MethodNotGet),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
            "HTTP/1.1 426 ",
            HandshakeError::UnsupportedVersion,
        ),
        (b"\x00\x01garbage\r\n\r\n", "HTTP/1.1 400 ", HandshakeError::MalformedHttp),
    ];
    for (request, status, err) in cases {
        let now = std::time::Instant::now();
        let mut server = wirestate_engine::ws::Connection::server(Default::default(), now);
        // One byte at a time: the answer must not depend on how the request is split.
        for b in request.chunks(1) {
            server.handle_input(now, b);
        }
        let out = drain(&mut server);
        assert!(
            out.starts_with(status.as_bytes()),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
        match events(&mut server).as_slice() {
            [Event::Closed(c)] => assert_eq!(c.error, Some(Error::Handshake(err.clone()))),
            other => panic!("unexpected events {other:?}"),
        }
        assert!(server.should_close_transport());
        server.handle_input(now, b"more bytes are ignored");
        assert!(drain(&mut server).is_empty());
    }
    // An endless head gets 431 once it passes the cap, without buffering further.
    let now = std::time::Instant::now();
    let mut server = wirestate_engine::ws::Connection::server(Default::default(), now);
    server.handle_input(now, b"GET / HTTP/1.1\r\n");
    for _ in 0..1000 {
        server.handle_input(
            now,
            b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        );
    }
    let answer = drain(&mut server);
    assert!(answer.starts_with(b"HTTP/1.1 431 "));
    assert!(server.should_close_transport());
    assert!(matches!(events(&mut server).as_slice(), [Event::Closed(_)]));
    // Nothing more is taken in: further bytes neither answer nor grow anything.
    for _ in 0..1000 {
        server.handle_input(now, &[b'a'; 1024]);
    }
    assert!(drain(&mut server).is_empty());
    assert!(events(&mut server).is_empty());
}

/// The close code a server answers with, and the error its `Closed` event reports.
type Answer = (Option<CloseCode>, Option<Error>);

/// Feeds `input` to an open server and returns its answer.
fn answer_to(config: Config, input: &[u8]) -> Answer {
    let (mut server, now) = open_server(config);
    server.handle_input(now, input);
    let evs = events(&mut server);
    let out = drain(&mut server);
    let frames = decode_frames(&out);
    let code = frames
        .iter()
        .find(|(op, _)| *op == OpCode::Close)
        .map(|(_, p)| CloseCode(u16::from_be_bytes([p[0], p[1]])));
    let error = evs.iter().find_map(|e| match e {
        Event::Closed(c) => c.error.clone(),
        _ => None,
    });
    if code.is_some() {
        assert!(
            server.should_close_transport(),
            "a failed connection closes its transport"
        );
    }
    (code, error)
}

#[test]
fn each_protocol_violation_gets_its_close_code() {
    let masked = |op: u8, payload: &[u8]| client_frame(true, op, payload);
    let p = |e: ProtocolError| (Some(e.close_code()), Some(Error::Protocol(e)));
    let cases: Vec<(&str, Vec<u8>, Answer)> = vec![
        (
            "unmasked frame",
            raw_frame(true, 0, 1, None, b"hi"),
            p(ProtocolError::UnmaskedFrame),
        ),
        (
            "rsv1 without extension",
            raw_frame(true, 4, 1, Some([1, 2, 3, 4]), b"hi"),
            p(ProtocolError::ReservedBits),
        ),
        (
            "reserved data opcode",
            masked(3, b""),
            p(ProtocolError::ReservedOpcode(3)),
        ),
        (
            "reserved control opcode",
            masked(0xb, b""),
            p(ProtocolError::ReservedOpcode(0xb)),
        ),
        (
            "fragmented ping",
            client_frame(false, 9, b""),
            p(ProtocolError::FragmentedControlFrame),
        ),
        (
            "long ping",
            masked(9, &[0; 126]),
            p(ProtocolError::ControlFrameTooLong),
        ),
        (
            "orphan continuation",
            masked(0, b"x"),
            p(ProtocolError::UnexpectedContinuation),
        ),
        (
            "text inside a fragmented message",
            [client_frame(false, 1, b"a"), masked(1, b"b")].concat(),
            p(ProtocolError::ExpectedContinuation),
        ),
        (
            "invalid utf-8",
            masked(1, b"\xce\xba\xed\xa0\x80"),
            p(ProtocolError::InvalidUtf8),
        ),
        (
            "close with 1 byte",
            masked(8, &[3]),
            p(ProtocolError::InvalidClosePayload),
        ),
        (
            "close code 1005",
            masked(8, &1005u16.to_be_bytes()),
            p(ProtocolError::InvalidCloseCode(1005)),
        ),
        (
            "close code 999",
            masked(8, &999u16.to_be_bytes()),
            p(ProtocolError::InvalidCloseCode(999)),
        ),
        (
            "close reason not utf-8",
            masked(8, b"\x03\xe8\xff"),
            p(ProtocolError::InvalidUtf8),
        ),
    ];
    for (name, input, expected) in cases {
        assert_eq!(answer_to(Config::default(), &input), expected, "{name}");
    }
}

#[test]
fn oversized_frames_and_messages_get_1009_before_their_payload_arrives() {
    let config = || Config::default().max_message_size(1000).max_frame_size(600);
    // Only the header of a too-large frame is sent: the answer comes at once.
    let header_only = &client_frame(true, 2, &[0; 700])[..8];
    assert_eq!(
        answer_to(config(), header_only),
        (
            Some(CloseCode::MESSAGE_TOO_BIG),
            Some(Error::Protocol(ProtocolError::FrameTooLarge))
        )
    );
    // Fragments that each fit but together exceed the message limit.
    let fragments = [
        client_frame(false, 2, &[0; 500]),
        client_frame(false, 0, &[0; 500]),
        client_frame(true, 0, &[0; 1]),
    ]
    .concat();
    assert_eq!(
        answer_to(config(), &fragments),
        (
            Some(CloseCode::MESSAGE_TOO_BIG),
            Some(Error::Protocol(ProtocolError::MessageTooLarge))
        )
    );
    // Exactly at the limit is fine.
    let at_limit = [
        client_frame(false, 2, &[0; 500]),
        client_frame(true, 0, &[0; 500]),
    ]
    .concat();
    assert_eq!(answer_to(config(), &at_limit), (None, None));
    let (mut server, now) = open_server(config());
    server.handle_input(now, &at_limit);
    let delivered: Vec<usize> = events(&mut server)
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.as_bytes().len()),
            _ => None,
        })
        .collect();
    assert_eq!(
        delivered,
        [1000],
        "a message exactly at the limit is delivered"
    );
}

#[test]
fn invalid_utf8_fails_fast_in_the_middle_of_a_frame() {
    let (mut server, now) = open_server(Config::default());
    let frame = client_frame(true, 1, "κόσμε\u{0}".repeat(100).as_bytes());
    let mut bad = frame.clone();
    bad[20] = 0xff;
    // Only the first 30 bytes arrive: the invalid byte is among them.
    server.handle_input(now, &bad[..30]);
    let frames = decode_frames(&drain(&mut server));
    assert_eq!(
        frames,
        [(
            OpCode::Close,
            [&1007u16.to_be_bytes()[..], b"invalid UTF-8"].concat()
        )]
    );
}

#[test]
fn control_frames_interleave_with_fragments() {
    let (mut server, now) = open_server(Config::default());
    let input = [
        client_frame(false, 1, b"Hel"),
        client_frame(true, 9, b"ping!"),
        client_frame(false, 0, b"lo, "),
        client_frame(true, 10, b"unsolicited pong"),
        client_frame(true, 0, "wörld".as_bytes()),
    ]
    .concat();
    server.handle_input(now, &input);
    let evs = events(&mut server);
    assert_eq!(
        evs,
        [
            Event::Ping("ping!".into()),
            Event::Pong("unsolicited pong".into()),
            Event::Message(Message::text("Hello, wörld")),
        ]
    );
    assert_eq!(
        decode_frames(&drain(&mut server)),
        [(OpCode::Pong, b"ping!".to_vec())]
    );
}

#[test]
fn a_ping_flood_keeps_only_the_latest_pongs() {
    let (mut server, now) = open_server(Config::default());
    let flood: Vec<u8> = (0..1000u32)
        .flat_map(|i| client_frame(true, 9, &i.to_be_bytes()))
        .collect();
    server.handle_input(now, &flood);
    let pongs = decode_frames(&drain(&mut server));
    assert_eq!(pongs.len(), 16);
    assert_eq!(
        pongs.last(),
        Some(&(OpCode::Pong, 999u32.to_be_bytes().to_vec()))
    );
}

#[test]
fn a_message_is_answered_before_a_violation_that_follows_it() {
    // Autobahn 3.2 / 5.15: the echo of the first message must precede the close.
    let (mut server, now) = open_server(Config::default());
    let input = [
        client_frame(true, 1, b"first"),
        raw_frame(true, 2, 1, Some([1, 2, 3, 4]), b"bad"),
    ]
    .concat();
    server.handle_input(now, &input);
    assert!(
        drain(&mut server).is_empty(),
        "nothing to send before the message is handled"
    );
    assert_eq!(
        server.poll_event(),
        Some(Event::Message(Message::text("first")))
    );
    server.send(Message::text("first")).expect("still open");
    let Some(Event::Closed(closed)) = server.poll_event() else {
        panic!("violation after the message")
    };
    assert_eq!(
        closed.error,
        Some(Error::Protocol(ProtocolError::ReservedBits))
    );
    let frames = decode_frames(&drain(&mut server));
    assert_eq!(
        frames.iter().map(|f| f.0).collect::<Vec<_>>(),
        [OpCode::Text, OpCode::Close]
    );
}

#[test]
fn misuse_is_an_error_not_a_panic() {
    let mut pair = Pair::new(Config::default(), Config::default());
    assert_eq!(
        pair.server.conn.send(Message::text("early")),
        Err(SendError::NotOpen)
    );
    pair.drive();
    let now = pair.now;
    assert_eq!(
        pair.client.conn.close(now, CloseCode::ABNORMAL, ""),
        Err(SendError::InvalidCloseCode)
    );
    assert_eq!(
        pair.client
            .conn
            .close(now, CloseCode::NORMAL, &"x".repeat(124)),
        Err(SendError::ControlPayloadTooLong)
    );
    assert_eq!(
        pair.client.conn.ping(&[0; 126]),
        Err(SendError::ControlPayloadTooLong)
    );
    pair.client
        .conn
        .close(now, CloseCode::NORMAL, "")
        .expect("open");
    assert_eq!(
        pair.client.conn.close(now, CloseCode::NORMAL, ""),
        Err(SendError::Closed)
    );
}

#[test]
fn subprotocol_is_negotiated_by_server_preference() {
    let client = Config::default().protocols(["v1.chat", "v2.chat"]);
    let server = Config::default().protocols(["v2.chat", "v1.chat"]);
    let mut pair = Pair::new(client, server);
    pair.drive();
    for events in [&pair.client.events, &pair.server.events] {
        match events.first() {
            Some(Event::Open(o)) => assert_eq!(o.protocol.as_deref(), Some("v2.chat")),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn frames_that_follow_the_handshake_in_the_same_read_are_kept() {
    let now = std::time::Instant::now();
    let mut server = wirestate_engine::ws::Connection::server(Default::default(), now);
    let mut input = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec();
    input.extend(client_frame(true, 1, b"early bird"));
    server.handle_input(now, &input);
    let evs = events(&mut server);
    assert!(
        matches!(evs.as_slice(), [Event::Open(_), Event::Message(m)] if *m == Message::text("early bird"))
    );
}

#[test]
fn bytes_that_are_not_written_in_time_end_the_connection() {
    let config = Config::default().write_timeout(Duration::from_secs(20));
    let (mut server, start) = open_server(config);
    // The handshake's bytes went out.
    server.handle_written(start, usize::MAX);
    assert_eq!(server.poll_timeout(), None, "nothing waits: no timer");
    server.send(Message::text("x".repeat(1000))).expect("open");
    let wire = drain(&mut server).len();
    // Half goes out at once; the rest waits, and each bit of progress moves the
    // deadline.
    server.handle_written(start, wire / 2);
    assert_eq!(server.poll_timeout(), Some(start + Duration::from_secs(20)));
    let later = start + Duration::from_secs(15);
    server.handle_written(later, 1);
    assert_eq!(server.poll_timeout(), Some(later + Duration::from_secs(20)));
    server.handle_written(later + Duration::from_secs(1), 0);
    assert_eq!(server.poll_timeout(), Some(later + Duration::from_secs(20)));
    server.handle_timeout(later + Duration::from_secs(20));
    assert!(server.write_timed_out());
    let closed = events(&mut server)
        .into_iter()
        .find_map(|e| match e {
            Event::Closed(c) => Some(c),
            _ => None,
        })
        .expect("closed");
    assert_eq!(closed.error, Some(Error::WriteTimeout));
    assert!(server.should_close_transport());
    // All of it written: no timer. A driver that never reports writes has none either.
    let (mut quiet, now) = open_server(Config::default());
    quiet.send(Message::text("y")).expect("open");
    let _ = drain(&mut quiet);
    assert_eq!(quiet.poll_timeout(), None);
    quiet.handle_written(now, 0);
    assert_eq!(quiet.poll_timeout(), Some(now + Duration::from_secs(20)));
    quiet.handle_written(now, usize::MAX);
    assert_eq!(quiet.poll_timeout(), None);
}

#[test]
fn the_upgrade_request_is_kept_only_when_asked_for() {
    let upgrade = b"GET /chat?room=a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    for keep in [false, true] {
        let now = std::time::Instant::now();
        let config = Config::default().keep_request(keep);
        let mut server = wirestate_engine::ws::Connection::server(std::sync::Arc::new(config), now);
        server.handle_input(now, upgrade);
        let evs = events(&mut server);
        let [Event::Open(opened)] = evs.as_slice() else {
            panic!("{evs:?}")
        };
        let target = opened.request.as_ref().map(|r| r.path().to_owned());
        assert_eq!(
            target,
            keep.then(|| "/chat?room=a".to_owned()),
            "keep {keep}"
        );
    }
}
