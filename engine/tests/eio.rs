//! Engine.IO server behaviour, in memory on a virtual clock: the requests a client
//! makes go in, the responses and WebSocket bytes come out. Derived from the protocol
//! and from what the official engine.io-protocol test suite checks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wirestate_engine::eio::{
    self, CloseReason, Config, Cors, Data, Event, Reply, Server, SessionId, TransportId,
};
use wirestate_engine::http::{self, Response, ServerConn};
use wirestate_engine::ws::{self, ClientRequest, Connection, Message};

const PATH: &str = "/engine.io/";

#[path = "support/world.rs"]
mod world;

type Harness = world::RawWorld<Server>;

fn harness(config: Config) -> Harness {
    world::RawWorld::new(Instant::now(), Server::new(config, [3; 32]))
}

fn config() -> Config {
    Config::default().heartbeat(Duration::from_millis(300), Duration::from_millis(200))
}

use world::request;

/// The headers of a WebSocket upgrade request.
const UPGRADE_HEADERS: &[(&str, &str)] = &[
    ("Connection", "Upgrade"),
    ("Upgrade", "websocket"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

fn body(r: &Response) -> String {
    String::from_utf8(r.body.to_vec()).expect("utf8 body")
}

/// The Engine.IO requests and readings of these tests, over the shared raw world.
trait Ext {
    fn send(&mut self, method: &str, query: &str, body: &[u8]) -> Reply;
    fn respond(&mut self, method: &str, query: &str, body: &[u8]) -> Response;
    fn handshake(&mut self, eio: u8) -> SessionId;
    /// Opens a WebSocket to the server (`query` picks EIO, sid).
    fn ws_open(&mut self, query: &str) -> TransportId;
    fn ws_text(&mut self, tid: TransportId, text: &str);
    fn ws_received(&mut self, tid: TransportId) -> Vec<String>;
    fn messages(&self) -> Vec<Data>;
    fn closed_reason(&self, sid: &SessionId) -> Option<CloseReason>;
    /// The session of the latest open event.
    fn last_open(&self) -> SessionId;
}

impl Ext for Harness {
    fn last_open(&self) -> SessionId {
        self.events
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::Open { sid, .. } => Some(sid.clone()),
                _ => None,
            })
            .expect("an open event")
    }

    fn send(&mut self, method: &str, query: &str, body: &[u8]) -> Reply {
        self.request(method, &format!("{PATH}?{query}"), &[], body)
    }

    fn respond(&mut self, method: &str, query: &str, body: &[u8]) -> Response {
        match self.send(method, query, body) {
            Reply::Respond(r) => r,
            other => panic!("expected an immediate response, got {other:?}"),
        }
    }

    fn handshake(&mut self, eio: u8) -> SessionId {
        let r = self.respond("GET", &format!("EIO={eio}&transport=polling"), b"");
        assert_eq!(r.status, 200);
        let text = body(&r);
        let json = text
            .split_once("0{")
            .map(|(_, j)| format!("{{{j}"))
            .expect("open packet");
        let sid = json
            .split("\"sid\":\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("sid")
            .to_owned();
        match self.events.iter().rev().find_map(|e| match e {
            Event::Open { sid, .. } => Some(sid.clone()),
            _ => None,
        }) {
            Some(s) if s.as_str() == sid => s,
            other => panic!("no open event for {sid}: {other:?}"),
        }
    }

    fn ws_open(&mut self, query: &str) -> TransportId {
        self.websocket(&format!("{PATH}?{query}"))
    }

    fn ws_text(&mut self, tid: TransportId, text: &str) {
        self.ws_send(tid, Message::text(text));
    }

    fn ws_received(&mut self, tid: TransportId) -> Vec<String> {
        self.received
            .remove(&tid)
            .unwrap_or_default()
            .iter()
            .map(|m| match m {
                Message::Text(t) => t.to_string(),
                Message::Binary(b) => format!("{:?}", &b[..]),
            })
            .collect()
    }

    fn messages(&self) -> Vec<Data> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Message { data, .. } => Some(data.clone()),
                _ => None,
            })
            .collect()
    }

    fn closed_reason(&self, sid: &SessionId) -> Option<CloseReason> {
        self.events.iter().find_map(|e| match e {
            Event::Closed { sid: s, reason } if s == sid => Some(*reason),
            _ => None,
        })
    }
}

fn text(s: &'static str) -> Data {
    Data::from(s)
}

#[test]
fn polling_handshake_has_the_reference_fields() {
    let mut h = harness(config());
    let r = h.respond("GET", "EIO=4&transport=polling", b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header_value("Content-Type"),
        Some("text/plain; charset=UTF-8")
    );
    let text = body(&r);
    assert!(text.starts_with("0{\"sid\":\""), "{text}");
    assert!(text.ends_with("\",\"upgrades\":[\"websocket\"],\"pingInterval\":300,\"pingTimeout\":200,\"maxPayload\":1000000}"), "{text}");
    let sid = &text[9..29];
    assert!(
        sid.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{sid}"
    );
}

#[test]
fn bad_requests_get_the_reference_status_and_body() {
    let mut h = harness(config());
    let cases = [
        (
            "GET",
            "transport=polling",
            400,
            r#"{"code":5,"message":"Unsupported protocol version"}"#,
        ),
        (
            "GET",
            "EIO=abc&transport=polling",
            400,
            r#"{"code":5,"message":"Unsupported protocol version"}"#,
        ),
        (
            "GET",
            "EIO=3&transport=polling",
            400,
            r#"{"code":5,"message":"Unsupported protocol version"}"#,
        ),
        (
            "GET",
            "EIO=4",
            400,
            r#"{"code":0,"message":"Transport unknown"}"#,
        ),
        (
            "GET",
            "EIO=4&transport=abc",
            400,
            r#"{"code":0,"message":"Transport unknown"}"#,
        ),
        (
            "POST",
            "EIO=4&transport=polling",
            400,
            r#"{"code":2,"message":"Bad handshake method"}"#,
        ),
        (
            "PUT",
            "EIO=4&transport=polling",
            400,
            r#"{"code":2,"message":"Bad handshake method"}"#,
        ),
        (
            "GET",
            "EIO=4&transport=polling&sid=nope",
            400,
            r#"{"code":1,"message":"Session ID unknown"}"#,
        ),
        (
            "GET",
            "EIO=4&transport=polling&j=1",
            400,
            r#"{"code":3,"message":"Bad request"}"#,
        ),
    ];
    for (method, query, status, json) in cases {
        let r = h.respond(method, query, b"");
        assert_eq!(
            (r.status, body(&r).as_str()),
            (status, json),
            "{method} {query}"
        );
        assert_eq!(r.header_value("Content-Type"), Some("application/json"));
    }
    // A plain (non-upgrade) request for transport=websocket.
    let r = h.respond("GET", "EIO=4&transport=websocket", b"");
    assert_eq!(r.status, 400);
}

#[test]
fn messages_both_ways_over_polling() {
    let mut h = harness(config());
    let sid = h.handshake(4);
    let r = h.respond(
        "POST",
        &format!("EIO=4&transport=polling&sid={sid}"),
        b"4hello\x1e4world\x1ebAQIDBA==",
    );
    assert_eq!((r.status, body(&r).as_str()), (200, "ok"));
    assert_eq!(
        h.messages(),
        [
            text("hello"),
            text("world"),
            Data::Binary(Bytes::from_static(&[1, 2, 3, 4]))
        ]
    );
    // Queued before the poll: answered at once.
    h.server.send(&sid, text("one")).expect("open");
    h.server
        .send(&sid, Data::Binary(Bytes::from_static(&[9])))
        .expect("open");
    let r = h.respond("GET", &format!("EIO=4&transport=polling&sid={sid}"), b"");
    assert_eq!(body(&r), "4one\x1ebCQ==");
    // Nothing queued: the poll is parked and answered when something comes.
    let Reply::Park(poll) = h.send("GET", &format!("EIO=4&transport=polling&sid={sid}"), b"")
    else {
        panic!("park")
    };
    assert!(h.late.is_empty());
    h.server.send(&sid, text("late")).expect("open");
    h.pump();
    assert_eq!(body(&h.late[&poll]), "4late");
}

/// A GET from a client that accepts `accept` (or sends no `Accept-Encoding`).
fn get_with(h: &mut Harness, sid: &SessionId, accept: Option<&str>) -> Reply {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept-Encoding", a)).into_iter().collect();
    h.request(
        "GET",
        &format!("{PATH}?EIO=4&transport=polling&sid={sid}"),
        &headers,
        b"",
    )
}

fn inflate(r: &Response) -> String {
    use std::io::Read;
    let mut out = String::new();
    match r.header_value("content-encoding") {
        Some("gzip") => flate2::read::GzDecoder::new(&r.body[..])
            .read_to_string(&mut out)
            .map(drop),
        Some("deflate") => flate2::read::ZlibDecoder::new(&r.body[..])
            .read_to_string(&mut out)
            .map(drop),
        other => panic!("not compressed: {other:?}"),
    }
    .expect("a valid compressed body");
    out
}

/// Queues `text` for `sid`, then polls with `accept` (or no `Accept-Encoding`): the
/// immediate answer.
fn queued_then_polled(
    h: &mut Harness,
    sid: &SessionId,
    text: &str,
    accept: Option<&str>,
) -> Response {
    h.server
        .send(sid, Data::Text(text.to_owned().into()))
        .expect("open");
    match get_with(h, sid, accept) {
        Reply::Respond(r) => r,
        other => panic!("expected an immediate answer, got {other:?}"),
    }
}

#[test]
fn polling_responses_are_compressed_as_http_compression_does() {
    let mut h = harness(config());
    let sid = h.handshake(4);
    let big = "x".repeat(1500);
    let small = "y".repeat(100);
    // Below the threshold: as it is, whatever the client accepts.
    let r = queued_then_polled(&mut h, &sid, &small, Some("gzip"));
    assert_eq!(r.header_value("content-encoding"), None);
    assert_eq!(body(&r), format!("4{small}"));
    // From the threshold on: gzip, or deflate when preferred; never unasked.
    for (accept, coding) in [
        (Some("gzip, deflate, br"), Some("gzip")),
        (Some("deflate, gzip"), Some("deflate")),
        (Some("gzip;q=0"), None),
        (None, None),
    ] {
        let r = queued_then_polled(&mut h, &sid, &big, accept);
        assert_eq!(r.header_value("content-encoding"), coding, "{accept:?}");
        let text = if coding.is_some() {
            inflate(&r)
        } else {
            body(&r)
        };
        assert_eq!(text, format!("4{big}"), "{accept:?}");
        if coding.is_some() {
            assert!(r.body.len() < 100, "{} bytes", r.body.len());
        }
    }
    // A parked poll keeps what its request accepted.
    let Reply::Park(poll) = get_with(&mut h, &sid, Some("deflate")) else {
        panic!("park")
    };
    h.server
        .send(&sid, Data::Text(big.clone().into()))
        .expect("open");
    h.pump();
    assert_eq!(
        h.late[&poll].header_value("content-encoding"),
        Some("deflate")
    );
    assert_eq!(inflate(&h.late[&poll]), format!("4{big}"));
    // Turned off: never compressed.
    let mut h = harness(config().http_compression(None));
    let sid = h.handshake(4);
    let r = queued_then_polled(&mut h, &sid, &big, Some("gzip"));
    assert_eq!(r.header_value("content-encoding"), None);
    assert_eq!(body(&r), format!("4{big}"));
}

#[test]
fn an_invalid_payload_closes_the_session() {
    let mut h = harness(config());
    let sid = h.handshake(4);
    let r = h.respond(
        "POST",
        &format!("EIO=4&transport=polling&sid={sid}"),
        b"abc",
    );
    assert_eq!(r.status, 400);
    assert_eq!(h.closed_reason(&sid), Some(CloseReason::ParseError));
    let r = h.respond("GET", &format!("EIO=4&transport=polling&sid={sid}"), b"");
    assert_eq!(r.status, 400);
}

#[test]
fn a_duplicate_poll_closes_the_session() {
    let mut h = harness(config());
    let sid = h.handshake(4);
    let Reply::Park(first) = h.send("GET", &format!("EIO=4&transport=polling&sid={sid}"), b"")
    else {
        panic!("park")
    };
    let second = h.respond(
        "GET",
        &format!("EIO=4&transport=polling&sid={sid}&t=burst"),
        b"",
    );
    assert_eq!(second.status, 400);
    assert_eq!(body(&h.late[&first]), "1");
    assert_eq!(h.closed_reason(&sid), Some(CloseReason::TransportError));
    assert_eq!(
        h.respond("GET", &format!("EIO=4&transport=polling&sid={sid}"), b"")
            .status,
        400
    );
}

#[test]
fn heartbeat_rounds_then_timeout() {
    let mut h = harness(config());
    let sid = h.handshake(4);
    for _ in 0..3 {
        let Reply::Park(poll) = h.send("GET", &format!("EIO=4&transport=polling&sid={sid}"), b"")
        else {
            panic!("park")
        };
        h.advance(Duration::from_millis(300));
        assert_eq!(body(&h.late[&poll]), "2", "a ping after pingInterval");
        let r = h.respond("POST", &format!("EIO=4&transport=polling&sid={sid}"), b"3");
        assert_eq!(r.status, 200);
        h.advance(Duration::from_millis(150));
        assert_eq!(h.closed_reason(&sid), None);
    }
    // Ping, and no pong within pingTimeout.
    let Reply::Park(poll) = h.send("GET", &format!("EIO=4&transport=polling&sid={sid}"), b"")
    else {
        panic!("park")
    };
    h.advance(Duration::from_millis(150));
    assert_eq!(body(&h.late[&poll]), "2");
    h.advance(Duration::from_millis(199));
    assert_eq!(h.closed_reason(&sid), None);
    h.advance(Duration::from_millis(2));
    assert_eq!(h.closed_reason(&sid), Some(CloseReason::PingTimeout));
    let r = h.respond("POST", &format!("EIO=4&transport=polling&sid={sid}"), b"3");
    assert_eq!(r.status, 400);
}

#[test]
fn client_close_ends_the_parked_poll_with_a_noop() {
    let mut h = harness(config());
    let sid = h.handshake(4);
    let Reply::Park(poll) = h.send("GET", &format!("EIO=4&transport=polling&sid={sid}"), b"")
    else {
        panic!("park")
    };
    let r = h.respond("POST", &format!("EIO=4&transport=polling&sid={sid}"), b"1");
    assert_eq!(r.status, 200);
    assert_eq!(body(&h.late[&poll]), "6");
    assert_eq!(h.closed_reason(&sid), Some(CloseReason::TransportClose));
    assert_eq!(
        h.respond("GET", &format!("EIO=4&transport=polling&sid={sid}"), b"")
            .status,
        400
    );
}

#[test]
fn server_close_delivers_what_was_queued_then_close() {
    let mut h = harness(config());
    let sid = h.handshake(4);
    let Reply::Park(poll) = h.send("GET", &format!("EIO=4&transport=polling&sid={sid}"), b"")
    else {
        panic!("park")
    };
    let now = h.now;
    h.server.close(now, &sid).expect("open");
    h.pump();
    assert_eq!(body(&h.late[&poll]), "1");
    assert_eq!(h.closed_reason(&sid), Some(CloseReason::ForcedClose));
}

#[test]
fn upgrade_probe_noop_upgrade_then_polling_is_refused() {
    let mut h = harness(config());
    let sid = h.handshake(4);
    let Reply::Park(poll) = h.send("GET", &format!("EIO=4&transport=polling&sid={sid}"), b"")
    else {
        panic!("park")
    };
    let ws = h.ws_open(&format!("EIO=4&transport=websocket&sid={sid}"));
    h.ws_text(ws, "2probe");
    assert_eq!(h.ws_received(ws), ["3probe"]);
    assert_eq!(
        body(&h.late[&poll]),
        "6",
        "the parked poll is released with a noop"
    );
    // Until "5", messages still go over polling.
    h.server.send(&sid, text("via polling")).expect("open");
    let r = h.respond("GET", &format!("EIO=4&transport=polling&sid={sid}"), b"");
    assert_eq!(body(&r), "4via polling");
    h.ws_text(ws, "5");
    assert!(h
        .events
        .iter()
        .any(|e| matches!(e, Event::Upgraded { sid: s } if *s == sid)));
    h.ws_text(ws, "4hello");
    assert_eq!(h.messages(), [text("hello")]);
    h.server.send(&sid, text("via websocket")).expect("open");
    h.pump();
    assert_eq!(h.ws_received(ws), ["4via websocket"]);
    let r = h.respond("GET", &format!("EIO=4&transport=polling&sid={sid}"), b"");
    assert_eq!(
        (r.status, body(&r).as_str()),
        (400, r#"{"code":3,"message":"Bad request"}"#)
    );
    // A second WebSocket for the same session is refused too.
    let url = format!("ws://localhost{PATH}?EIO=4&transport=websocket&sid={sid}");
    let req = ClientRequest::from_url(&url).expect("url");
    let mut client = Connection::client(Arc::new(ws::Config::default()), &req, h.now, [1; 32]);
    let mut conn = ServerConn::new(8192, 1024);
    conn.handle_input(&client.poll_transmit().expect("head"));
    let upgrade = conn.poll_request().expect("request");
    assert!(
        matches!(h.server.handle_request(h.now, &upgrade), Reply::Respond(r) if r.status == 400)
    );
    // Heartbeats continue over the WebSocket.
    h.advance(Duration::from_millis(300));
    assert_eq!(h.ws_received(ws), ["2"]);
    h.ws_text(ws, "3");
    h.advance(Duration::from_millis(250));
    assert_eq!(h.closed_reason(&sid), None);
}

#[test]
fn upgrade_sends_no_noop_over_the_websocket() {
    // As the reference: the noop belongs to polling; the WebSocket carries none.
    let mut h = harness(config());
    let sid = h.handshake(4);
    let ws = h.ws_open(&format!("EIO=4&transport=websocket&sid={sid}"));
    h.ws_text(ws, "2probe");
    assert_eq!(h.ws_received(ws), ["3probe"]);
    h.ws_text(ws, "5");
    assert_eq!(h.ws_received(ws), Vec::<String>::new());
    h.ws_text(ws, "4hello");
    assert_eq!(h.messages(), [text("hello")]);
    h.server.send(&sid, text("first")).expect("open");
    h.pump();
    assert_eq!(h.ws_received(ws), ["4first"]);
}

#[test]
fn a_second_websocket_for_an_upgraded_session_is_refused_and_the_first_keeps_working() {
    let mut h = harness(config());
    let sid = h.handshake(4);
    let ws = h.ws_open(&format!("EIO=4&transport=websocket&sid={sid}"));
    h.ws_text(ws, "2probe");
    h.ws_text(ws, "5");
    let _ = h.ws_received(ws);
    let second = h.request(
        "GET",
        &format!("{PATH}?EIO=4&transport=websocket&sid={sid}"),
        UPGRADE_HEADERS,
        b"",
    );
    assert!(
        matches!(&second, Reply::Respond(r) if r.status == 400),
        "{second:?}"
    );
    assert_eq!(h.closed_reason(&sid), None);
    h.ws_text(ws, "4still");
    assert_eq!(h.messages(), [text("still")]);
    h.server.send(&sid, text("back")).expect("open");
    h.pump();
    assert_eq!(h.ws_received(ws), ["4back"]);
}

#[test]
fn pongs_that_answer_no_ping_do_not_defer_the_next_ping() {
    let mut h = harness(config());
    let sid = h.handshake(4);
    let q = format!("EIO=4&transport=polling&sid={sid}");
    let Reply::Park(poll) = h.send("GET", &q, b"") else {
        panic!("park")
    };
    // Unsolicited pongs every 100 ms: the ping still comes at pingInterval (300 ms).
    for _ in 0..2 {
        h.advance(Duration::from_millis(100));
        assert_eq!(h.respond("POST", &q, b"3").status, 200);
    }
    assert!(!h.late.contains_key(&poll));
    h.advance(Duration::from_millis(100));
    assert_eq!(body(&h.late[&poll]), "2", "the poll ends with a ping");
    // And a client that never answers it is gone pingInterval + pingTimeout after
    // the handshake, whatever it sends meanwhile.
    let Reply::Park(_) = h.send("GET", &q, b"") else {
        panic!("park")
    };
    h.advance(Duration::from_millis(199));
    assert_eq!(h.closed_reason(&sid), None);
    h.advance(Duration::from_millis(1));
    assert_eq!(h.closed_reason(&sid), Some(CloseReason::PingTimeout));
}

#[test]
fn a_late_timer_does_not_keep_a_session_alive() {
    // The host's timer has not run (a busy runtime), but a request at
    // pingInterval + pingTimeout after the handshake finds the session gone, as the
    // reference's would.
    let mut h = harness(config());
    let sid = h.handshake(4);
    h.now += Duration::from_millis(500);
    let r = h.respond("GET", &format!("EIO=4&transport=polling&sid={sid}"), b"");
    assert_eq!(
        (r.status, body(&r).as_str()),
        (400, r#"{"code":1,"message":"Session ID unknown"}"#)
    );
    assert_eq!(h.closed_reason(&sid), Some(CloseReason::PingTimeout));
}

#[test]
fn handshakes_past_max_sessions_get_503() {
    let mut h = harness(config().max_sessions(2));
    let a = h.handshake(4);
    let _b = h.handshake(4);
    let r = h.respond("GET", "EIO=4&transport=polling", b"");
    assert_eq!(
        (r.status, body(&r).as_str()),
        (503, r#"{"code":4,"message":"Server full"}"#)
    );
    let refused = h.request(
        "GET",
        &format!("{PATH}?EIO=4&transport=websocket"),
        UPGRADE_HEADERS,
        b"",
    );
    assert!(matches!(refused, Reply::Respond(r) if r.status == 503));
    // A slot frees up when a session ends.
    let now = h.now;
    h.server.close(now, &a).expect("open");
    h.pump();
    let _ = h.respond("GET", &format!("EIO=4&transport=polling&sid={a}"), b"");
    assert_eq!(h.server.session_count(), 1);
    h.handshake(4);
}

#[test]
fn payloads_with_too_many_packets_are_refused() {
    let mut h = harness(config().max_packets(100));
    let sid = h.handshake(4);
    let q = format!("EIO=4&transport=polling&sid={sid}");
    let ok = vec!["4"; 100].join("\u{1e}");
    assert_eq!(h.respond("POST", &q, ok.as_bytes()).status, 200);
    assert_eq!(h.messages().len(), 100);
    let many = vec!["4"; 101].join("\u{1e}");
    assert_eq!(h.respond("POST", &q, many.as_bytes()).status, 413);
    assert_eq!(
        h.messages().len(),
        100,
        "none of the refused payload's packets"
    );
    assert_eq!(h.closed_reason(&sid), Some(CloseReason::TransportError));
}

#[test]
fn each_queued_packet_counts_its_overhead_against_max_buffered() {
    // 100 empty messages are 100 × PACKET_OVERHEAD bytes of queue, not 100 bytes.
    let limit = 50 * eio::PACKET_OVERHEAD;
    let mut h = harness(config().max_buffered(limit));
    let sid = h.handshake(4);
    for _ in 0..49 {
        h.server.send(&sid, text("")).expect("open");
    }
    assert_eq!(h.closed_reason(&sid), None);
    for _ in 0..2 {
        let _ = h.server.send(&sid, text(""));
    }
    h.pump();
    assert_eq!(h.closed_reason(&sid), Some(CloseReason::TransportError));
}

#[test]
fn a_websocket_client_that_stops_reading_is_dropped_past_max_buffered() {
    for direct in [false, true] {
        stalled_reader_is_dropped_past_max_buffered(direct);
    }
}

/// With `direct`, packets are encoded straight into the writer's buffer
/// (`WsLink::handle_output_into`): they count the same until written.
fn stalled_reader_is_dropped_past_max_buffered(direct: bool) {
    let mut h = harness(config().max_buffered(64 << 10));
    h.direct = direct;
    let ws = h.ws_open("EIO=4&transport=websocket");
    let _open = h.ws_received(ws);
    let sid = h.last_open();
    h.stalled.push(ws);
    let chunk = Data::Binary(Bytes::from(vec![b'x'; 1000]));
    assert!(h.server.is_writable(&sid));
    let mut sent = 0;
    while h.server.send(&sid, chunk.clone()).is_ok() {
        h.pump();
        sent += 1;
        assert!(sent < 1000, "never closed");
    }
    // Just past 64 KiB of unwritten bytes, and volatile emits were refused before.
    assert!((64..70).contains(&sent), "{sent}");
    assert_eq!(h.closed_reason(&sid), Some(CloseReason::TransportError));
    assert!(h.closed.contains(&ws), "the transport is dropped");
}

#[test]
fn volatile_sends_see_a_backed_up_websocket_as_not_writable() {
    for direct in [false, true] {
        backed_up_websocket_is_not_writable(direct);
    }
}

fn backed_up_websocket_is_not_writable(direct: bool) {
    let mut h = harness(config());
    h.direct = direct;
    let ws = h.ws_open("EIO=4&transport=websocket");
    let _open = h.ws_received(ws);
    let sid = h.last_open();
    // Large packets (queued) and small ones (encoded at once when direct).
    for size in [10_000, 3_000] {
        h.stalled.push(ws);
        let chunk = Data::Binary(Bytes::from(vec![b'x'; size]));
        let before: usize = h.writes.iter().map(|(_, b)| b.len()).sum();
        while h.server.is_writable(&sid) {
            h.server.send(&sid, chunk.clone()).expect("open");
            h.pump();
        }
        let unwritten = h.writes.iter().map(|(_, b)| b.len()).sum::<usize>() - before;
        assert!(
            unwritten > eio::VOLATILE_LOW_WATER
                && unwritten < eio::VOLATILE_LOW_WATER + size + 1_000,
            "{unwritten}"
        );
        // The client reads it all: writable again.
        h.unstall();
        assert!(h.server.is_writable(&sid));
    }
}

#[test]
fn a_forced_close_keeps_the_last_packets_for_the_next_poll() {
    let mut h = harness(config());
    let sid = h.handshake(4);
    h.server.send(&sid, text("bye")).expect("open");
    let now = h.now;
    h.server.close(now, &sid).expect("open");
    h.pump();
    assert_eq!(h.closed_reason(&sid), Some(CloseReason::ForcedClose));
    assert!(!h.server.is_idle(), "waiting for the client's poll");
    let q = format!("EIO=4&transport=polling&sid={sid}");
    assert_eq!(
        h.respond("POST", &q, b"3").status,
        200,
        "posts are read and dropped"
    );
    let r = h.respond("GET", &q, b"");
    assert_eq!(body(&r), "4bye\u{1e}1");
    assert!(h.server.is_idle());
    assert_eq!(h.respond("GET", &q, b"").status, 400);
    // Without a poll, the grace period (pingTimeout) ends it.
    let sid = h.handshake(4);
    let now = h.now;
    h.server.close(now, &sid).expect("open");
    h.advance(Duration::from_millis(199));
    assert!(!h.server.is_idle());
    h.advance(Duration::from_millis(1));
    assert!(h.server.is_idle());
}

#[test]
fn a_failed_probe_leaves_the_session_on_polling() {
    let mut h = harness(config());
    let sid = h.handshake(4);
    let ws = h.ws_open(&format!("EIO=4&transport=websocket&sid={sid}"));
    h.ws_text(ws, "4not a probe");
    assert!(h.closed.contains(&ws) || h.clients[&ws].is_closed());
    h.server.send(&sid, text("still here")).expect("open");
    let r = h.respond("GET", &format!("EIO=4&transport=polling&sid={sid}"), b"");
    assert_eq!(body(&r), "4still here");
}

#[test]
fn websocket_only_sessions() {
    let mut h = harness(config());
    let ws = h.ws_open("EIO=4&transport=websocket");
    let open = h.ws_received(ws);
    assert_eq!(open.len(), 1);
    assert!(
        open[0].starts_with("0{\"sid\":\"") && open[0].contains("\"upgrades\":[]"),
        "{open:?}"
    );
    h.ws_text(ws, "4hello");
    h.clients
        .get_mut(&ws)
        .expect("client")
        .send(Message::binary(vec![1u8, 2]))
        .expect("open");
    h.pump();
    assert_eq!(
        h.messages(),
        [text("hello"), Data::Binary(Bytes::from_static(&[1, 2]))]
    );
    let sid = match &h.events[0] {
        Event::Open { sid, .. } => sid.clone(),
        other => panic!("{other:?}"),
    };
    h.server
        .send(&sid, Data::Binary(Bytes::from_static(&[5])))
        .expect("open");
    h.pump();
    assert_eq!(h.received[&ws], [Message::binary(vec![5u8])]);
    // An invalid packet closes the session; so does the client closing the socket.
    h.ws_text(ws, "abc");
    assert_eq!(h.closed_reason(&sid), Some(CloseReason::ParseError));
    let ws2 = h.ws_open("EIO=4&transport=websocket");
    let sid2 = h.server.session_count();
    assert_eq!(sid2, 1);
    let now = h.now;
    h.clients
        .get_mut(&ws2)
        .expect("client")
        .close(now, ws::CloseCode::NORMAL, "")
        .expect("open");
    h.pump();
    assert_eq!(h.server.session_count(), 0);
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::Closed {
            reason: CloseReason::TransportClose,
            ..
        }
    )));
}

#[test]
fn websocket_ping_timeout_closes_the_session() {
    let mut h = harness(config());
    let ws = h.ws_open("EIO=4&transport=websocket");
    let _open = h.ws_received(ws);
    h.advance(Duration::from_millis(300));
    assert_eq!(h.ws_received(ws), ["2"]);
    h.advance(Duration::from_millis(201));
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::Closed {
            reason: CloseReason::PingTimeout,
            ..
        }
    )));
}

#[test]
fn eio3_clients_ping_and_use_length_prefixed_payloads() {
    let mut h = harness(config().allow_eio3(true));
    let r = h.respond("GET", "EIO=3&transport=polling", b"");
    let open = body(&r);
    let (len, packet) = open.split_once(':').expect("v3 payload");
    assert_eq!(
        len.parse::<usize>().expect("length"),
        packet.encode_utf16().count()
    );
    let sid = h.handshake(3);
    for _ in 0..3 {
        let r = h.respond(
            "POST",
            &format!("EIO=3&transport=polling&sid={sid}"),
            b"1:2",
        );
        assert_eq!(body(&r), "ok");
        let r = h.respond("GET", &format!("EIO=3&transport=polling&sid={sid}"), b"");
        assert_eq!(body(&r), "1:3");
    }
    let r = h.respond(
        "POST",
        &format!("EIO=3&transport=polling&sid={sid}"),
        "6:4hello4:4€𝄞".as_bytes(),
    );
    assert_eq!(body(&r), "ok");
    assert_eq!(h.messages(), [text("hello"), text("€𝄞")]);
    // v3: the server expects a ping within pingInterval + pingTimeout.
    h.advance(Duration::from_millis(501));
    assert_eq!(h.closed_reason(&sid), Some(CloseReason::PingTimeout));
}

#[test]
fn payload_over_max_is_413_and_closes() {
    let mut h = harness(config().max_payload(100));
    let sid = h.handshake(4);
    let big = [b'4'; 101];
    let r = h.respond("POST", &format!("EIO=4&transport=polling&sid={sid}"), &big);
    assert_eq!(r.status, 413);
    assert_eq!(h.closed_reason(&sid), Some(CloseReason::TransportError));
}

#[test]
fn an_aborted_poll_closes_the_session() {
    let mut h = harness(config());
    let sid = h.handshake(4);
    let Reply::Park(poll) = h.send("GET", &format!("EIO=4&transport=polling&sid={sid}"), b"")
    else {
        panic!("park")
    };
    let now = h.now;
    h.server.handle_poll_aborted(now, poll);
    h.pump();
    assert_eq!(h.closed_reason(&sid), Some(CloseReason::TransportError));
}

#[test]
fn cors_headers_preflight_and_refused_origins() {
    let mut h = harness(config().cors(Cors::any()));
    let r = h.respond("GET", "EIO=4&transport=polling", b"");
    assert_eq!(r.header_value("Access-Control-Allow-Origin"), Some("*"));
    let pre = request(
        "OPTIONS",
        &format!("{PATH}?EIO=4&transport=polling"),
        &[
            ("Origin", "http://a.example"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    );
    let Reply::Respond(r) = h.server.handle_request(h.now, &pre) else {
        panic!("respond")
    };
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header_value("Access-Control-Allow-Headers"),
        Some("content-type")
    );

    let mut h = harness(config().cors(Cors::origins(["http://good.example"])));
    let good = request(
        "GET",
        &format!("{PATH}?EIO=4&transport=polling"),
        &[("Origin", "http://good.example")],
        b"",
    );
    let Reply::Respond(r) = h.server.handle_request(h.now, &good) else {
        panic!("respond")
    };
    assert_eq!(
        r.header_value("Access-Control-Allow-Origin"),
        Some("http://good.example")
    );
    let bad = request(
        "GET",
        &format!("{PATH}?EIO=4&transport=polling"),
        &[("Origin", "http://evil.example")],
        b"",
    );
    let Reply::Respond(r) = h.server.handle_request(h.now, &bad) else {
        panic!("respond")
    };
    assert_eq!(
        (r.status, body(&r).as_str()),
        (403, r#"{"code":4,"message":"Forbidden"}"#)
    );
    // The allow-list applies to WebSocket upgrades too.
    let upgrade = |origin: &str| {
        request(
            "GET",
            &format!("{PATH}?EIO=4&transport=websocket"),
            &[&[("Origin", origin)], UPGRADE_HEADERS].concat(),
            b"",
        )
    };
    let Reply::Respond(r) = h
        .server
        .handle_request(h.now, &upgrade("http://evil.example"))
    else {
        panic!("an upgrade from a refused origin is answered, not accepted")
    };
    assert_eq!(r.status, 403);
    assert_eq!(
        h.server.session_count(),
        1,
        "only the good polling handshake"
    );
    assert!(matches!(
        h.server
            .handle_request(h.now, &upgrade("http://good.example")),
        Reply::Upgrade(_)
    ));
    // Credentials only with an allow-list: the origin is echoed, never `*`.
    let mut h = harness(config().cors(Cors::credentialed(["http://good.example"])));
    let Reply::Respond(r) = h.server.handle_request(h.now, &good) else {
        panic!("respond")
    };
    assert_eq!(
        r.header_value("Access-Control-Allow-Origin"),
        Some("http://good.example")
    );
    assert_eq!(
        r.header_value("Access-Control-Allow-Credentials"),
        Some("true")
    );
    assert!(!Cors::any().allows_credentials());
}

#[test]
fn allow_request_decides_before_a_session_or_upgrade_exists() {
    let mut h = harness(config().allow_request(
        |req| match req.head.headers.get_str("authorization") {
            Some("Bearer ok") => Ok(()),
            _ => Err("no token".to_owned()),
        },
    ));
    let r = h.respond("GET", "EIO=4&transport=polling", b"");
    assert_eq!(
        (r.status, body(&r).as_str()),
        (403, r#"{"code":4,"message":"no token"}"#)
    );
    assert_eq!(h.server.session_count(), 0);
    let authed = |target: &str, upgrade: bool| {
        let mut headers = vec![("Authorization", "Bearer ok")];
        if upgrade {
            headers.extend_from_slice(UPGRADE_HEADERS);
        }
        request("GET", &format!("{PATH}?{target}"), &headers, b"")
    };
    let Reply::Respond(r) = h
        .server
        .handle_request(h.now, &authed("EIO=4&transport=polling", false))
    else {
        panic!("respond")
    };
    assert_eq!(r.status, 200);
    h.pump();
    let sid = h.last_open();
    // Polls of an allowed session are not asked again; its upgrade is.
    let Reply::Park(_) = h.send("GET", &format!("EIO=4&transport=polling&sid={sid}"), b"") else {
        panic!("park")
    };
    let refused = h.request(
        "GET",
        &format!("{PATH}?EIO=4&transport=websocket&sid={sid}"),
        UPGRADE_HEADERS,
        b"",
    );
    assert!(matches!(refused, Reply::Respond(r) if r.status == 403));
    assert!(matches!(
        h.server.handle_request(
            h.now,
            &authed(&format!("EIO=4&transport=websocket&sid={sid}"), true)
        ),
        Reply::Upgrade(_)
    ));
}

#[test]
fn many_sessions_share_one_timer_heap() {
    let mut h = harness(config());
    let sids: Vec<SessionId> = (0..500).map(|_| h.handshake(4)).collect();
    assert_eq!(h.server.session_count(), 500);
    // Everyone is pinged after the interval; nobody answers; everyone times out.
    h.advance(Duration::from_millis(300));
    h.advance(Duration::from_millis(201));
    assert_eq!(h.server.session_count(), 0);
    for sid in &sids {
        assert_eq!(h.closed_reason(sid), Some(CloseReason::PingTimeout));
    }
    assert_eq!(h.server.poll_timeout(), None, "no timers left behind");
}

#[test]
fn query_parsing_is_percent_decoded() {
    let r = request(
        "GET",
        "/engine.io/?EIO=4&transport=polling&name=a%20b+c",
        &[],
        b"",
    );
    assert_eq!(r.head.query_param("name").as_deref(), Some("a b c"));
    assert_eq!(http::query_pairs("a=1&b").count(), 2);
}
