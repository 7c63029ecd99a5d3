//! Socket.IO server behaviour, in memory on a virtual clock: Engine.IO clients over
//! WebSocket (and polling) send Socket.IO packets; we check what comes back and what
//! the application sees. Derived from the Socket.IO protocol and what the official
//! socket.io-protocol test suite checks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use wirestate_engine::eio::{self, Reply, TransportId};
use wirestate_engine::http::{Request, ServerConn};
use wirestate_engine::sio::{
    AckError, Activity, Broadcast, ClusterMessage, Config, DisconnectReason, Event, Packet,
    PacketType, Payload, Recovery, Server, Sid,
};
use wirestate_engine::ws::{self, Message};

const PATH: &str = "/socket.io/";

#[path = "support/world.rs"]
mod world;

type Harness = world::RawWorld<Server>;

/// The default middleware: every CONNECT is accepted at once.
fn accept_all(server: &mut Server, now: Instant, e: &Event) {
    if let Event::Connecting(info) = e {
        server
            .accept(now, &info.session, &info.nsp)
            .expect("pending connect");
    }
}

/// A server with `/` and `/custom`; its clients answer pings, and every CONNECT is
/// accepted unless the test takes `serve` away.
fn harness(config: Config) -> Harness {
    let mut server = Server::new(config, [5; 32]);
    server.add_namespace("/");
    server.add_namespace("/custom");
    let mut h = world::RawWorld::new(Instant::now(), server);
    h.answer_pings = true;
    h.serve = Some(accept_all);
    h
}

fn config() -> Config {
    Config::default()
        .eio(
            eio::Config::default()
                .path(PATH)
                .heartbeat(Duration::from_millis(300), Duration::from_millis(200))
                .allow_eio3(true),
        )
        .connect_timeout(Duration::from_millis(1000))
}

fn request(target: &str) -> Request {
    world::request("GET", target, &[], b"")
}

/// The Socket.IO conversations of these tests, over the shared raw world.
trait Ext {
    /// A WebSocket-only Engine.IO client; its open packet is read.
    fn open(&mut self, eio: u8) -> TransportId;
    /// Opens an Engine.IO v4 client and connects it to `nsp`; returns its sid.
    fn connect(&mut self, nsp: &str) -> (TransportId, Sid);
    fn join_nsp(&mut self, tid: TransportId, nsp: &str, auth: Option<Value>) -> Sid;
    fn sid(&self, sid: &str) -> Sid;
    fn send(&mut self, tid: TransportId, text: &str);
    fn send_binary(&mut self, tid: TransportId, bytes: &'static [u8]);
    fn received(&mut self, tid: TransportId) -> Vec<Message>;
    /// Text messages received, Engine.IO pings answered and left out.
    fn texts(&mut self, tid: TransportId) -> Vec<String>;
    fn take_events(&mut self) -> Vec<Event>;
    fn disconnect_reason(&self, sid: &Sid) -> Option<DisconnectReason>;
}

impl Ext for Harness {
    fn open(&mut self, eio: u8) -> TransportId {
        let tid = self.websocket(&format!("{PATH}?EIO={eio}&transport=websocket"));
        let mut got = self.received(tid);
        assert!(
            matches!(got.first(), Some(Message::Text(t)) if t.starts_with("0{")),
            "open packet: {got:?}"
        );
        got.remove(0);
        self.received.insert(tid, got);
        tid
    }

    fn connect(&mut self, nsp: &str) -> (TransportId, Sid) {
        let tid = self.open(4);
        let sid = self.join_nsp(tid, nsp, None);
        (tid, sid)
    }

    fn join_nsp(&mut self, tid: TransportId, nsp: &str, auth: Option<Value>) -> Sid {
        let prefix = if nsp == "/" {
            String::new()
        } else {
            format!("{nsp},")
        };
        let auth = auth.map(|a| a.to_string()).unwrap_or_default();
        self.send(tid, &format!("40{prefix}{auth}"));
        let got = self.texts(tid);
        let answer = got
            .iter()
            .find(|t| t.starts_with(&format!("40{prefix}{{")))
            .unwrap_or_else(|| panic!("no CONNECT answer in {got:?}"));
        let json: Value = serde_json::from_str(&answer[2 + prefix.len()..]).expect("json");
        let sid = json["sid"].as_str().expect("sid");
        self.sid(sid)
    }

    fn sid(&self, sid: &str) -> Sid {
        self.events
            .iter()
            .find_map(|e| match e {
                Event::Connected { sid: s, .. } if s.as_str() == sid => Some(s.clone()),
                _ => None,
            })
            .expect("connected event")
    }

    fn send(&mut self, tid: TransportId, text: &str) {
        self.ws_send(tid, Message::text(text));
    }

    fn send_binary(&mut self, tid: TransportId, bytes: &'static [u8]) {
        self.ws_send(tid, Message::binary(bytes));
    }

    fn received(&mut self, tid: TransportId) -> Vec<Message> {
        self.received.remove(&tid).unwrap_or_default()
    }

    fn texts(&mut self, tid: TransportId) -> Vec<String> {
        self.received(tid)
            .into_iter()
            .filter_map(|m| match m {
                Message::Text(t) => Some(t.to_string()),
                Message::Binary(_) => None,
            })
            .filter(|t| t != "2")
            .collect()
    }

    fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    fn disconnect_reason(&self, sid: &Sid) -> Option<DisconnectReason> {
        self.events.iter().find_map(|e| match e {
            Event::Disconnected { sid: s, reason, .. } if s == sid => Some(*reason),
            _ => None,
        })
    }
}

fn payload(v: Value) -> Payload {
    Payload::new().arg(v)
}

#[test]
fn connect_answers_with_a_sid_distinct_from_the_engine_io_sid() {
    let mut h = harness(config());
    let tid = h.open(4);
    h.send(tid, "40{\"token\":\"abc\"}");
    let got = h.texts(tid);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("40{\"sid\":\""));
    let connecting = h.events.iter().find_map(|e| match e {
        Event::Connecting(info) => Some(info.clone()),
        _ => None,
    });
    let info = connecting.expect("connecting event");
    assert_eq!(info.auth, json!({"token": "abc"}));
    assert_eq!(&*info.nsp, "/");
    let json: Value = serde_json::from_str(&got[0][2..]).expect("json");
    assert_ne!(json["sid"].as_str(), Some(info.session.as_str()));
    assert!(json.get("pid").is_none(), "no pid without recovery");
    assert_eq!(h.server.socket_count(), 1);
}

#[test]
fn v5_has_no_implicit_default_namespace() {
    let mut h = harness(config());
    let tid = h.open(4);
    h.send(tid, "42[\"hello\"]");
    assert!(h.texts(tid).is_empty());
    assert!(!h.events.iter().any(|e| matches!(e, Event::Event { .. })));
    // And the client is closed if it never connects.
    h.advance(Duration::from_millis(1001));
    assert!(h.closed.contains(&tid));
    assert_eq!(h.server.session_count(), 0);
}

#[test]
fn unknown_namespace_and_middleware_rejection() {
    let mut h = harness(config());
    let tid = h.open(4);
    h.send(tid, "40/nope,");
    assert_eq!(
        h.texts(tid),
        ["44/nope,{\"message\":\"Invalid namespace\"}"]
    );
    h.serve = None;
    h.send(tid, "40/custom,");
    let Some(Event::Connecting(info)) = h.take_events().pop() else {
        panic!("connecting")
    };
    h.server
        .reject(
            &info.session,
            "/custom",
            "not authorized",
            Some(json!({"code": 7})),
        )
        .expect("pending");
    h.pump();
    assert_eq!(
        h.texts(tid),
        ["44/custom,{\"message\":\"not authorized\",\"data\":{\"code\":7}}"]
    );
    assert_eq!(
        h.server.reject(&info.session, "/custom", "again", None),
        Err(wirestate_engine::sio::Error::NotConnecting)
    );
}

#[test]
fn dynamic_namespaces_are_created_on_first_connect() {
    let mut h = harness(config());
    h.server
        .add_dynamic_namespace(Arc::new(|name: &str| name.starts_with("/dyn-")));
    let (tid, sid) = h.connect("/dyn-42");
    assert_eq!(&*h.server.info(&sid).expect("socket").nsp, "/dyn-42");
    h.send(tid, "40/other,");
    assert_eq!(
        h.texts(tid),
        ["44/other,{\"message\":\"Invalid namespace\"}"]
    );
}

#[test]
fn dynamic_namespaces_exist_only_while_accepted_sockets_are_in_them() {
    let mut h = harness(config());
    h.server
        .add_dynamic_namespace(Arc::new(|name: &str| name.starts_with("/dyn-")));
    let has = |h: &Harness, name: &str| h.server.namespaces().any(|n| n == name);
    let tid = h.open(4);
    h.serve = None;
    // Not created before the middleware has accepted, nor by a refusal.
    h.send(tid, "40/dyn-1,");
    let Some(Event::Connecting(info)) = h.take_events().pop() else {
        panic!("connecting")
    };
    assert!(!has(&h, "/dyn-1"));
    h.server
        .reject(&info.session, "/dyn-1", "no", None)
        .expect("pending");
    h.pump();
    assert!(!has(&h, "/dyn-1"));
    // Accepted: created; its last socket leaves: removed.
    h.send(tid, "40/dyn-1,");
    let Some(Event::Connecting(info)) = h.take_events().pop() else {
        panic!("connecting")
    };
    let now = h.now;
    h.server
        .accept(now, &info.session, "/dyn-1")
        .expect("pending");
    h.pump();
    assert!(has(&h, "/dyn-1"));
    h.send(tid, "41/dyn-1,");
    assert!(!has(&h, "/dyn-1"));
    // Declared namespaces stay when empty.
    assert!(has(&h, "/custom"));
    // Names are capped in length.
    let _ = h.texts(tid);
    let long = format!("/dyn-{}", "x".repeat(300));
    h.send(tid, &format!("40{long},"));
    assert_eq!(
        h.texts(tid),
        [format!("44{long},{{\"message\":\"Invalid namespace\"}}")]
    );
    assert!(h
        .take_events()
        .iter()
        .all(|e| !matches!(e, Event::Connecting(_))));
}

#[test]
fn namespaces_per_client_are_capped() {
    let mut h = harness(config().max_namespaces_per_client(3));
    h.server
        .add_dynamic_namespace(Arc::new(|name: &str| name.starts_with("/dyn-")));
    let tid = h.open(4);
    for i in 0..3 {
        h.send(tid, &format!("40/dyn-{i},"));
    }
    let _ = h.texts(tid);
    h.send(tid, "40/dyn-3,");
    assert_eq!(
        h.texts(tid),
        ["44/dyn-3,{\"message\":\"Too many namespaces\"}"]
    );
    // Leaving one makes room.
    h.send(tid, "41/dyn-0,");
    h.send(tid, "40/dyn-3,");
    assert!(h.texts(tid)[0].starts_with("40/dyn-3,{\"sid\""));
}

#[test]
fn attachments_are_bounded_in_size_and_in_time() {
    let mut h = harness(config());
    let (tid, sid) = h.connect("/");
    // A binary packet whose attachment never comes: closed after the timeout.
    h.send(tid, "451-[\"bin\",{\"_placeholder\":true,\"num\":0}]");
    h.advance(Duration::from_millis(9_900));
    assert_eq!(h.disconnect_reason(&sid), None);
    h.advance(Duration::from_millis(200));
    assert_eq!(
        h.disconnect_reason(&sid),
        Some(DisconnectReason::ParseError)
    );
    // Attachments over `max_attachment_bytes` (1 MB by default): closed at once.
    let mut config = config();
    config.eio = config.eio.max_payload(2_000_000);
    let mut h = harness(config);
    let (tid, sid) = h.connect("/");
    h.send(tid, "451-[\"bin\",{\"_placeholder\":true,\"num\":0}]");
    h.clients
        .get_mut(&tid)
        .expect("client")
        .send(Message::binary(vec![0u8; 1_000_001]))
        .expect("open");
    h.pump();
    assert_eq!(
        h.disconnect_reason(&sid),
        Some(DisconnectReason::ParseError)
    );
}

#[test]
fn sessions_that_join_no_namespace_in_time_are_closed() {
    // connect_timeout 1 s; pings are answered, so only that timeout closes anything.
    let mut h = harness(config());
    let late = h.open(4);
    h.advance(Duration::from_millis(400));
    let never = h.open(4);
    let gone = h.open(4);
    h.ws_drop(gone);
    let (_prompt, _) = h.connect("/");
    h.advance(Duration::from_millis(500));
    h.join_nsp(late, "/", None);
    assert_eq!(h.server.session_count(), 3);
    // Past the first deadline: the session that joined in time stays.
    h.advance(Duration::from_millis(300));
    assert_eq!(h.server.session_count(), 3);
    // Past the second: the one that never joined is closed.
    h.advance(Duration::from_millis(300));
    assert_eq!(h.server.session_count(), 2);
    assert!(h.closed.contains(&never) && !h.closed.contains(&late));
    assert!(h.server.poll_timeout().is_some(), "heartbeats go on");
}

#[test]
fn rooms_per_socket_are_capped() {
    let mut h = harness(config().max_rooms_per_socket(3));
    let (_tid, sid) = h.connect("/");
    // Its own room, then two more.
    h.server
        .join(&sid, &[Arc::from("a"), Arc::from("b")])
        .expect("room for two");
    assert_eq!(
        h.server.join(&sid, &[Arc::from("a"), Arc::from("c")]),
        Err(wirestate_engine::sio::Error::TooManyRooms)
    );
    h.server.leave(&sid, "a").expect("socket");
    h.server.join(&sid, &[Arc::from("c")]).expect("room again");
}

#[test]
fn room_events_report_rooms_as_they_come_and_go_when_asked() {
    let rooms = |h: &mut Harness| -> Vec<(String, bool, bool)> {
        let mut events = h.take_events();
        events.extend(std::iter::from_fn(|| h.server.poll_event()));
        events
            .into_iter()
            .filter_map(|e| match e {
                Event::Room {
                    room,
                    created,
                    private,
                    ..
                } => Some((room.to_string(), created, private)),
                _ => None,
            })
            .collect()
    };
    let mut h = harness(config());
    let (_tid, sid) = h.connect("/");
    h.server.join(&sid, &[Arc::from("a")]).expect("join");
    assert!(rooms(&mut h).is_empty(), "off by default");

    let mut h = harness(config());
    h.server.set_room_events(true);
    let (tid, sid) = h.connect("/");
    let (_, other) = h.connect("/");
    let own = sid.as_str().to_owned();
    h.server
        .join(&sid, &[Arc::from("a"), Arc::from("b")])
        .expect("join");
    h.server.join(&other, &[Arc::from("a")]).expect("join");
    h.server.leave(&sid, "b").expect("leave");
    assert_eq!(
        rooms(&mut h),
        [
            (own.clone(), true, true),
            (other.as_str().to_owned(), true, true),
            ("a".to_owned(), true, false),
            ("b".to_owned(), true, false),
            ("b".to_owned(), false, false),
        ]
    );
    // The socket leaves: its own room goes; `a` stays (the other socket is in it).
    h.send(tid, "41");
    assert_eq!(rooms(&mut h), [(own, false, true)]);
    h.server.leave(&other, "a").expect("leave");
    assert_eq!(rooms(&mut h), [("a".to_owned(), false, false)]);
}

#[test]
fn a_room_name_is_kept_once_however_many_sockets_join_it() {
    let mut h = harness(config());
    let (_, sa) = h.connect("/");
    let (_, sb) = h.connect("/");
    let (ra, rb): (Arc<str>, Arc<str>) = (Arc::from("r"), Arc::from("r"));
    h.server.join(&sa, std::slice::from_ref(&ra)).expect("a");
    h.server.join(&sb, std::slice::from_ref(&rb)).expect("b");
    let kept = |h: &Harness, sid: &Sid| -> Arc<str> {
        let mut rooms = h.server.rooms(sid).expect("socket");
        rooms.find(|r| &**r == "r").expect("in r")
    };
    let (ka, kb) = (kept(&h, &sa), kept(&h, &sb));
    assert!(
        Arc::ptr_eq(&ka, &kb),
        "both sockets hold the namespace's copy"
    );
    assert!(
        Arc::ptr_eq(&ka, &ra),
        "the first joiner's name is the one kept"
    );
    drop((ka, kb));
    assert_eq!(
        Arc::strong_count(&rb),
        1,
        "the second joiner's copy is not kept"
    );
    let mut both = vec![sa.clone(), sb.clone()];
    both.sort();
    let reached = |h: &mut Harness| {
        let mut sids = h.server.fetch_sockets(&Broadcast::nsp("/").to("r"));
        sids.sort();
        sids
    };
    assert_eq!(reached(&mut h), both);

    // The first joiner leaves: the name lives on with the room.
    h.server.leave(&sa, "r").expect("a");
    assert_eq!(reached(&mut h), std::slice::from_ref(&sb));
    assert!(Arc::ptr_eq(&kept(&h, &sb), &ra));
    // Emptied, the room and its name go; joined again, it keeps the new name.
    h.server.leave(&sb, "r").expect("b");
    assert_eq!(Arc::strong_count(&ra), 1);
    h.server
        .join(&sa, std::slice::from_ref(&rb))
        .expect("a again");
    assert!(Arc::ptr_eq(&kept(&h, &sa), &rb));
    assert_eq!(reached(&mut h), std::slice::from_ref(&sa));
}

#[test]
fn a_sockets_own_room_can_be_shared_left_and_joined_again() {
    let room_events = |h: &mut Harness| -> Vec<(String, bool)> {
        let mut events = h.take_events();
        events.extend(std::iter::from_fn(|| h.server.poll_event()));
        (events.into_iter())
            .filter_map(|e| match e {
                Event::Room { room, created, .. } => Some((room.to_string(), created)),
                _ => None,
            })
            .collect()
    };
    let reached = |h: &mut Harness, target: &Broadcast| -> Vec<Sid> {
        let mut sids = h.server.fetch_sockets(target);
        sids.sort();
        sids
    };
    let mut h = harness(config().max_rooms_per_socket(3));
    h.server.set_room_events(true);
    let (_, sa) = h.connect("/");
    let (_, sb) = h.connect("/");
    let (_, sc) = h.connect("/");
    room_events(&mut h);
    let own = sa.as_str().to_owned();
    let nsp = || Broadcast::nsp("/");
    let sorted = |mut v: Vec<Sid>| {
        v.sort();
        v
    };

    // Another socket joins a room named by `sa`'s id: it exists already (no event),
    // and reaches both.
    h.server.join(&sb, &[Arc::from(own.as_str())]).expect("b");
    assert!(room_events(&mut h).is_empty());
    assert_eq!(
        reached(&mut h, &nsp().to(own.as_str())),
        sorted(vec![sa.clone(), sb.clone()])
    );
    assert_eq!(
        reached(&mut h, &nsp().except(own.as_str())),
        std::slice::from_ref(&sc)
    );
    let first = |h: &Harness, sid: &Sid| {
        h.server
            .rooms(sid)
            .and_then(|mut r| r.next())
            .map(|r| r.to_string())
    };
    assert_eq!(first(&h, &sa), Some(own.clone()), "its own room first");

    // `sa` leaves its own room: only `sb` is left in it, so it lives on.
    h.server.leave(&sa, &own).expect("a");
    assert!(room_events(&mut h).is_empty());
    assert_eq!(h.server.rooms(&sa).expect("a").count(), 0);
    assert_eq!(
        reached(&mut h, &nsp().to(own.as_str())),
        std::slice::from_ref(&sb)
    );
    assert!(h.server.room_names("/").contains(&own));
    h.server.leave(&sb, &own).expect("b");
    assert_eq!(room_events(&mut h), [(own.clone(), false)]);
    assert!(reached(&mut h, &nsp().to(own.as_str())).is_empty());
    assert!(!h.server.room_names("/").contains(&own));
    assert!(h.server.room_names("/").contains(&sb.to_string()));

    // Out of its own room, it does not count against the cap; back in, it does.
    let rooms = |names: &[&str]| names.iter().map(|n| Arc::from(*n)).collect::<Vec<_>>();
    h.server
        .join(&sa, &rooms(&["x", "y", "z"]))
        .expect("three rooms");
    assert_eq!(
        h.server.join(&sa, &rooms(&[own.as_str()])),
        Err(wirestate_engine::sio::Error::TooManyRooms)
    );
    h.server.leave(&sa, "z").expect("a");
    room_events(&mut h);
    h.server
        .join(&sa, &rooms(&[own.as_str()]))
        .expect("own room again");
    assert_eq!(room_events(&mut h), [(own.clone(), true)]);
    assert_eq!(
        reached(&mut h, &nsp().to(own.as_str())),
        std::slice::from_ref(&sa)
    );
    assert_eq!(first(&h, &sa), Some(own.clone()));
    assert_eq!(h.server.rooms(&sa).expect("a").count(), 3);
}

#[test]
fn activity_events_report_sessions_and_memberships_when_asked() {
    let activity = |h: &mut Harness| -> Vec<String> {
        let mut events = h.take_events();
        events.extend(std::iter::from_fn(|| h.server.poll_event()));
        events
            .into_iter()
            .filter_map(|e| match e {
                Event::Activity(a) => Some(match a {
                    Activity::SessionOpened { transport, .. } => format!("open {transport:?}"),
                    Activity::SessionUpgraded { sockets, .. } => {
                        format!("upgraded {}", sockets.len())
                    }
                    Activity::SessionClosed { reason, .. } => format!("closed {}", reason.as_str()),
                    Activity::Joined { room, .. } => format!("joined {room}"),
                    Activity::Left { room, .. } => format!("left {room}"),
                }),
                _ => None,
            })
            .collect()
    };
    let mut h = harness(config());
    let (_tid, sid) = h.connect("/");
    h.server.join(&sid, &[Arc::from("a")]).expect("join");
    assert!(activity(&mut h).is_empty(), "off by default");

    let mut h = harness(config());
    h.server.set_activity_events(true);
    let (tid, sid) = h.connect("/");
    let own = sid.as_str().to_owned();
    h.server
        .join(&sid, &[Arc::from("a"), Arc::from("b")])
        .expect("join");
    h.server.join(&sid, &[Arc::from("a")]).expect("already in");
    h.server.leave(&sid, "b").expect("leave");
    h.server.leave(&sid, "b").expect("not in it");
    assert_eq!(
        activity(&mut h),
        ["open WebSocket", "joined a", "joined b", "left b"]
    );
    // The client goes: its rooms are left (its own included), then its session ends.
    h.send(tid, "1");
    let mut seen = activity(&mut h);
    let closed = seen.remove(0);
    assert_eq!(closed, "closed transport close");
    let mut want = vec!["left a".to_owned(), format!("left {own}")];
    seen.sort();
    want.sort();
    assert_eq!(seen, want);
    let traffic = h.server.eio().traffic();
    assert!(
        traffic.messages_in >= 1 && traffic.messages_out >= 1,
        "{traffic:?}"
    );
    assert_eq!(h.server.eio().session_count(), 0);
}

#[test]
fn malformed_packets_close_the_session() {
    for bad in ["4abc", "42{}", "42abc[\"a\"]", "2[\"connect\"]", "7"] {
        let mut h = harness(config());
        let (tid, sid) = h.connect("/");
        let text = if let Some(rest) = bad.strip_prefix('4') {
            format!("4{rest}")
        } else {
            format!("4{bad}")
        };
        h.send(tid, &text);
        assert!(h.closed.contains(&tid), "{bad:?} should close the session");
        assert_eq!(
            h.disconnect_reason(&sid),
            Some(DisconnectReason::ParseError),
            "{bad:?}"
        );
    }
}

#[test]
fn events_and_acks_both_ways() {
    let mut h = harness(config());
    let (tid, sid) = h.connect("/");
    h.take_events();
    h.send(tid, "42[\"hello\",1,{\"a\":2}]");
    h.send(tid, "4213[\"with-ack\",\"x\"]");
    let events = h.take_events();
    assert_eq!(
        events,
        [
            Event::Event {
                sid: sid.clone(),
                name: "hello".into(),
                payload: Payload::new().arg(json!(1)).arg(json!({"a": 2})),
                ack: None,
            },
            Event::Event {
                sid: sid.clone(),
                name: "with-ack".into(),
                payload: payload(json!("x")),
                ack: Some(13),
            }
        ]
    );
    h.server.ack(&sid, 13, payload(json!("x"))).expect("socket");
    h.pump();
    assert_eq!(h.texts(tid), ["4313[\"x\"]"]);

    // Server → client with ack.
    let ack = h
        .server
        .emit_with_ack(
            h.now,
            &sid,
            "ask",
            payload(json!(1)),
            Some(Duration::from_secs(1)),
        )
        .expect("socket");
    h.pump();
    let sent = h.texts(tid);
    assert_eq!(sent.len(), 1);
    let id: String = sent[0][2..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert_eq!(&sent[0][2 + id.len()..], "[\"ask\",1]");
    h.send(tid, &format!("43{id}[\"yes\"]"));
    assert_eq!(
        h.take_events(),
        [
            Event::Ack {
                ack,
                sid: sid.clone(),
                result: Ok(payload(json!("yes")))
            },
            Event::AckDone { ack }
        ]
    );
    // A second answer, or one for an unknown id, is ignored.
    h.send(tid, &format!("43{id}[\"again\"]"));
    assert!(h.take_events().is_empty());
}

#[test]
fn acks_time_out_and_fail_on_disconnect() {
    let mut h = harness(config());
    let (tid, sid) = h.connect("/");
    let timeout = Some(Duration::from_millis(100));
    let ack = h
        .server
        .emit_with_ack(h.now, &sid, "ask", Payload::new(), timeout)
        .expect("socket");
    h.take_events();
    h.advance(Duration::from_millis(99));
    assert!(h.take_events().is_empty());
    h.advance(Duration::from_millis(2));
    assert_eq!(
        h.take_events(),
        [
            Event::Ack {
                ack,
                sid: sid.clone(),
                result: Err(AckError::Timeout)
            },
            Event::AckDone { ack }
        ]
    );
    let ack = h
        .server
        .emit_with_ack(h.now, &sid, "ask", Payload::new(), None)
        .expect("socket");
    h.send(tid, "41");
    let events = h.take_events();
    assert_eq!(
        events[..2],
        [
            Event::Ack {
                ack,
                sid: sid.clone(),
                result: Err(AckError::Disconnected)
            },
            Event::AckDone { ack }
        ]
    );
    assert_eq!(
        h.disconnect_reason(&sid),
        None,
        "events were taken; the reason is in them"
    );
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Disconnected {
            reason: DisconnectReason::ClientNamespaceDisconnect,
            ..
        }
    )));
}

#[test]
fn binary_events_are_reassembled_and_sent_as_attachments() {
    let mut h = harness(config());
    let (tid, sid) = h.connect("/");
    h.take_events();
    h.send(tid, "451-[\"bin\",{\"_placeholder\":true,\"num\":0}]");
    assert!(h.take_events().is_empty(), "waits for its attachment");
    h.send_binary(tid, &[1, 2, 3]);
    let events = h.take_events();
    let Some(Event::Event { name, payload, .. }) = events.first() else {
        panic!("event: {events:?}")
    };
    assert_eq!(name, "bin");
    assert_eq!(payload.get_bin(0).map(|b| &b[..]), Some(&[1u8, 2, 3][..]));

    h.server
        .emit(
            h.now,
            &sid,
            "out",
            Payload::new().arg(json!("t")).bin(vec![7u8]),
        )
        .expect("socket");
    h.pump();
    let got = h.received(tid);
    assert_eq!(
        got,
        [
            Message::text("451-[\"out\",\"t\",{\"_placeholder\":true,\"num\":0}]"),
            Message::Binary(Bytes::from_static(&[7]))
        ]
    );
}

#[test]
fn rooms_and_broadcast_operators() {
    let mut h = harness(config());
    let (a, sa) = h.connect("/");
    let (b, sb) = h.connect("/");
    let (c, _sc) = h.connect("/");
    let (d, _sd) = h.connect("/custom");
    h.server.join(&sa, &["room1".into()]).expect("a");
    h.server
        .join(&sb, &["room1".into(), "room2".into()])
        .expect("b");

    let n = h.server.broadcast(
        h.now,
        &Broadcast::nsp("/").to("room1").except("room2"),
        "x",
        Payload::new(),
    );
    h.pump();
    assert_eq!(n, 1);
    assert_eq!(h.texts(a), ["42[\"x\"]"]);
    assert!(h.texts(b).is_empty() && h.texts(c).is_empty());

    let n = h
        .server
        .broadcast(h.now, &Broadcast::nsp("/"), "all", Payload::new());
    h.pump();
    assert_eq!(n, 3);
    for t in [a, b, c] {
        assert_eq!(h.texts(t), ["42[\"all\"]"]);
    }
    assert!(h.texts(d).is_empty());

    h.server
        .broadcast(h.now, &Broadcast::all_namespaces(), "every", Payload::new());
    h.pump();
    for t in [a, b, c] {
        assert_eq!(h.texts(t), ["42[\"every\"]"]);
    }
    assert_eq!(h.texts(d), ["42/custom,[\"every\"]"]);

    // A socket's own room, leave, and rooms as the server sees them.
    h.server.leave(&sb, "room1").expect("b");
    let mut rooms: Vec<String> = h
        .server
        .rooms(&sb)
        .expect("b")
        .map(|r| r.to_string())
        .collect();
    rooms.sort();
    let mut expected = vec!["room2".to_owned(), sb.to_string()];
    expected.sort();
    assert_eq!(rooms, expected);
    assert_eq!(
        h.server.fetch_sockets(&Broadcast::nsp("/").to("room1")),
        std::slice::from_ref(&sa)
    );
    assert_eq!(
        h.server.fetch_sockets(&Broadcast::nsp("/").to(sb.as_str())),
        std::slice::from_ref(&sb)
    );

    // socketsJoin / disconnectSockets by operator.
    h.server
        .join_by(&Broadcast::nsp("/").to("room2"), &["vip".into()]);
    assert_eq!(
        h.server.fetch_sockets(&Broadcast::nsp("/").to("vip")),
        std::slice::from_ref(&sb)
    );
    h.server
        .disconnect_by(h.now, &Broadcast::nsp("/").to("vip"), false);
    h.pump();
    assert_eq!(h.texts(b), ["41"]);
    assert_eq!(
        h.disconnect_reason(&sb),
        Some(DisconnectReason::ServerNamespaceDisconnect)
    );
    assert!(h
        .server
        .fetch_sockets(&Broadcast::nsp("/").to("room2"))
        .is_empty());
}

#[test]
fn broadcast_with_ack_collects_every_answer() {
    let mut h = harness(config());
    let (a, sa) = h.connect("/");
    let (b, sb) = h.connect("/");
    let (_c, sc) = h.connect("/");
    h.take_events();
    let ack = h.server.broadcast_with_ack(
        h.now,
        &Broadcast::nsp("/"),
        "vote",
        Payload::new(),
        Some(Duration::from_millis(500)),
    );
    h.pump();
    let sent_a = h.texts(a);
    let sent_b = h.texts(b);
    assert_eq!(sent_a, sent_b, "one encoding, one id for every recipient");
    let id: String = sent_a[0][2..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    h.send(a, &format!("43{id}[1]"));
    h.send(b, &format!("43{id}[2]"));
    h.advance(Duration::from_millis(500));
    let events = h.take_events();
    assert_eq!(
        events,
        [
            Event::Ack {
                ack,
                sid: sa,
                result: Ok(payload(json!(1)))
            },
            Event::Ack {
                ack,
                sid: sb,
                result: Ok(payload(json!(2)))
            },
            Event::Ack {
                ack,
                sid: sc,
                result: Err(AckError::Timeout)
            },
            Event::AckDone { ack }
        ]
    );
    // Nobody to ask: done at once.
    let ack = h.server.broadcast_with_ack(
        h.now,
        &Broadcast::nsp("/").to("empty"),
        "vote",
        Payload::new(),
        None,
    );
    h.pump();
    assert_eq!(h.take_events(), [Event::AckDone { ack }]);
    // A packet from another server that is not an event: no one gets it, done at once.
    let ack = h.server.broadcast_packet_with_ack(
        h.now,
        &Broadcast::nsp("/"),
        Packet::new(PacketType::Disconnect, "/"),
        None,
    );
    h.pump();
    assert_eq!(h.take_events(), [Event::AckDone { ack }]);
    assert!(h.texts(a).is_empty(), "nothing sent");
}

#[test]
fn server_disconnect_and_close() {
    let mut h = harness(config());
    let tid = h.open(4);
    let s1 = h.join_nsp(tid, "/", None);
    let s2 = h.join_nsp(tid, "/custom", None);
    h.server.disconnect(h.now, &s1, true).expect("socket");
    h.pump();
    assert_eq!(h.texts(tid), ["41", "41/custom,"]);
    assert!(h.closed.contains(&tid));
    assert_eq!(
        h.disconnect_reason(&s1),
        Some(DisconnectReason::ServerNamespaceDisconnect)
    );
    assert_eq!(
        h.disconnect_reason(&s2),
        Some(DisconnectReason::ForcedServerClose)
    );
}

#[test]
fn transport_close_and_ping_timeout_reasons() {
    let mut h = harness(config());
    let (tid, sid) = h.connect("/");
    h.clients
        .get_mut(&tid)
        .expect("client")
        .close(h.now, ws::CloseCode::NORMAL, "")
        .expect("open");
    h.pump();
    assert_eq!(
        h.disconnect_reason(&sid),
        Some(DisconnectReason::TransportClose)
    );

    let (tid, sid) = h.connect("/");
    // Stop answering pings: the harness' client answers them, so detach it.
    h.clients.remove(&tid);
    h.advance(Duration::from_millis(600));
    assert_eq!(
        h.disconnect_reason(&sid),
        Some(DisconnectReason::PingTimeout)
    );
}

#[test]
fn eio3_clients_are_in_the_default_namespace_at_once() {
    let mut h = harness(config());
    let tid = h.open(3);
    assert_eq!(h.texts(tid), ["40"]);
    let sid = h
        .events
        .iter()
        .find_map(|e| match e {
            Event::Connected { sid, .. } => Some(sid.clone()),
            _ => None,
        })
        .expect("connected");
    h.send(tid, "42[\"hi\"]");
    assert!(h
        .events
        .iter()
        .any(|e| matches!(e, Event::Event { sid: s, name, .. } if *s == sid && name == "hi")));
    // A namespace with a query: the query is the auth.
    h.send(tid, "40/custom?token=abc,");
    assert_eq!(h.texts(tid), ["40/custom,"]);
    let auth = h.events.iter().rev().find_map(|e| match e {
        Event::Connected { info, .. } => Some(info.auth.clone()),
        _ => None,
    });
    assert_eq!(auth, Some(json!({"token": "abc"})));
    // v2 clients get the bare error.
    h.serve = None;
    let t2 = h.open(3);
    h.take_events();
    let _ = h.texts(t2);
    h.send(t2, "40/custom,");
    let Some(Event::Connecting(info)) = h.take_events().pop() else {
        panic!("connecting")
    };
    h.server
        .reject(&info.session, "/custom", "denied", None)
        .expect("pending");
    h.pump();
    assert_eq!(h.texts(t2), ["44/custom,\"denied\""]);
}

fn recovery_config() -> Config {
    config().recovery(Recovery::default())
}

#[test]
fn connection_state_recovery_restores_sid_rooms_and_missed_packets() {
    let mut h = harness(recovery_config());
    let tid = h.open(4);
    h.send(tid, "40");
    let got = h.texts(tid);
    let json: Value = serde_json::from_str(&got[0][2..]).expect("json");
    let pid = json["pid"].as_str().expect("pid").to_owned();
    let sid = h.sid(json["sid"].as_str().expect("sid"));
    h.server.join(&sid, &["news".into()]).expect("socket");
    h.server
        .broadcast(h.now, &Broadcast::nsp("/").to("news"), "n1", Payload::new());
    h.pump();
    let got = h.texts(tid);
    // The offset travels as the last argument.
    let args: Value = serde_json::from_str(&got[0][2..]).expect("json");
    let offset = args[1].as_str().expect("offset").to_owned();

    // The transport drops; packets sent meanwhile are kept.
    h.ws_drop(tid);
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::Disconnected {
            kept: true,
            reason: DisconnectReason::TransportError,
            ..
        }
    )));
    h.server
        .broadcast(h.now, &Broadcast::nsp("/").to("news"), "n2", Payload::new());
    h.server.broadcast(
        h.now,
        &Broadcast::nsp("/").to("other"),
        "not-for-us",
        Payload::new(),
    );
    h.server.broadcast(
        h.now,
        &Broadcast::nsp("/").volatile(),
        "volatile",
        Payload::new(),
    );
    h.advance(Duration::from_secs(1));

    let t2 = h.open(4);
    h.take_events();
    h.send(t2, &format!("40{}", json!({"pid": pid, "offset": offset})));
    let got = h.texts(t2);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].starts_with(&format!("40{{\"sid\":\"{sid}\",\"pid\":\"{pid}\"")));
    assert!(got[1].starts_with("42[\"n2\",\""), "{got:?}");
    assert!(h
        .events
        .iter()
        .any(|e| matches!(e, Event::Connected { sid: s, recovered: true, .. } if *s == sid)));
    assert_eq!(
        h.server.fetch_sockets(&Broadcast::nsp("/").to("news")),
        std::slice::from_ref(&sid)
    );
}

#[test]
fn recovery_window_and_unknown_offsets() {
    let mut h = harness(recovery_config());
    let tid = h.open(4);
    h.send(tid, "40");
    let got = h.texts(tid);
    let json: Value = serde_json::from_str(&got[0][2..]).expect("json");
    let pid = json["pid"].as_str().expect("pid").to_owned();
    let sid = h.sid(json["sid"].as_str().expect("sid"));
    h.server
        .emit(h.now, &sid, "e", Payload::new())
        .expect("socket");
    h.pump();
    let got = h.texts(tid);
    let args: Value = serde_json::from_str(&got[0][2..]).expect("json");
    let offset = args[1].as_str().expect("offset").to_owned();
    h.ws_drop(tid);

    // An unknown offset: a fresh socket, and the kept state stays for a valid retry.
    let t2 = h.open(4);
    h.send(t2, &format!("40{}", json!({"pid": pid, "offset": "nope"})));
    let got = h.texts(t2);
    assert!(!got[0].contains(sid.as_str()), "{got:?}");
    let retry = h.open(4);
    h.send(
        retry,
        &format!("40{}", json!({"pid": pid, "offset": offset})),
    );
    let got = h.texts(retry);
    assert!(got[0].contains(sid.as_str()), "recovered on retry: {got:?}");
    h.ws_drop(retry);

    // After the window, the state is gone.
    h.advance(Duration::from_secs(121));
    assert!(h
        .events
        .iter()
        .any(|e| matches!(e, Event::Forgotten { sid: s } if *s == sid)));
    let t3 = h.open(4);
    h.send(t3, &format!("40{}", json!({"pid": pid, "offset": offset})));
    let got = h.texts(t3);
    assert!(!got[0].contains(sid.as_str()), "{got:?}");
}

#[test]
fn graceful_shutdown_disconnects_everyone() {
    let mut h = harness(config());
    let (a, sa) = h.connect("/");
    let (b, _) = h.connect("/custom");
    h.server.shutdown(h.now);
    h.pump();
    assert_eq!(h.texts(a), ["41"]);
    assert_eq!(h.texts(b), ["41/custom,"]);
    assert!(h.closed.contains(&a) && h.closed.contains(&b));
    assert_eq!(
        h.disconnect_reason(&sa),
        Some(DisconnectReason::ServerShuttingDown)
    );
    assert_eq!(h.server.session_count(), 0);
    let r = h
        .server
        .handle_request(h.now, &request(&format!("{PATH}?EIO=4&transport=polling")));
    assert!(matches!(r, Reply::Respond(ref r) if r.status == 503));
}

#[test]
fn cluster_messages_repeat_operations_on_other_servers() {
    let mut h1 = harness(config().cluster(true));
    let mut h2 = harness(config().cluster(true));
    let (_a, _) = h1.connect("/");
    let (b, sb) = h2.connect("/");
    h2.server.join(&sb, &["r".into()]).expect("b");
    h1.take_events();
    h1.server
        .broadcast(h1.now, &Broadcast::nsp("/").to("r"), "hey", Payload::new());
    h1.pump();
    let messages: Vec<ClusterMessage> = h1
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Cluster(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(messages.len(), 1);
    for m in messages {
        h2.server.handle_cluster(h2.now, m);
    }
    h2.pump();
    assert_eq!(h2.texts(b), ["42[\"hey\"]"]);
    // Repeated operations are local: no echo back into the cluster.
    assert!(!h2.events.iter().any(|e| matches!(e, Event::Cluster(_))));
}

/// A polling GET on the Socket.IO path (`q`: its query): the response body.
fn polling_get(h: &mut Harness, q: &str) -> String {
    match h
        .server
        .handle_request(h.now, &request(&format!("{PATH}?{q}")))
    {
        Reply::Respond(r) => String::from_utf8(r.body.to_vec()).expect("utf8"),
        other => panic!("{other:?}"),
    }
}

/// An Engine.IO v4 polling handshake: the session id.
fn polling_handshake(h: &mut Harness) -> String {
    let open = polling_get(h, "EIO=4&transport=polling");
    open.split("\"sid\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("sid")
        .to_owned()
}

#[test]
fn polling_clients_get_the_same_packet_bytes() {
    let mut h = harness(config());
    let (ws_client, _) = h.connect("/");
    // A polling client: handshake, CONNECT, then poll.
    let get = polling_get;
    let sid = polling_handshake(&mut h);
    let raw = format!(
        "POST {PATH}?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n40"
    );
    let mut conn = ServerConn::new(8192, 1 << 20);
    conn.handle_input(raw.as_bytes());
    let post = conn.poll_request().expect("post");
    let _ = h.server.handle_request(h.now, &post);
    h.pump();
    let connected = get(&mut h, &format!("EIO=4&transport=polling&sid={sid}"));
    assert!(connected.starts_with("40{\"sid\""), "{connected}");
    h.texts(ws_client);
    h.server.broadcast(
        h.now,
        &Broadcast::nsp("/"),
        "both",
        Payload::new().arg(json!([1])),
    );
    h.pump();
    assert_eq!(h.texts(ws_client), ["42[\"both\",[1]]"]);
    assert_eq!(
        get(&mut h, &format!("EIO=4&transport=polling&sid={sid}")),
        "42[\"both\",[1]]"
    );
}

#[test]
fn a_broadcast_is_one_shared_frame_for_every_websocket_recipient() {
    let mut h = harness(config());
    let (a, _) = h.connect("/");
    let (b, _) = h.connect("/");
    let (c, _) = h.connect("/");
    h.writes.clear();
    let big = "y".repeat(10_000);
    h.server.broadcast(
        h.now,
        &Broadcast::nsp("/"),
        "news",
        Payload::new().arg(json!(big)).bin(vec![1u8; 5000]),
    );
    h.pump();
    let frames: Vec<&(TransportId, Bytes)> = h.writes.iter().collect();
    assert_eq!(
        frames.len(),
        6,
        "text frame and attachment frame per recipient"
    );
    // Unmasked final frames: 0x81 text, 0x82 binary.
    for opcode in [0x81, 0x82] {
        let ptrs: Vec<*const u8> = frames
            .iter()
            .filter(|(_, b)| b.first() == Some(&opcode))
            .map(|(_, b)| b.as_ptr())
            .collect();
        assert_eq!(ptrs.len(), 3);
        assert!(
            ptrs.iter().all(|p| *p == ptrs[0]),
            "recipients share the frame bytes"
        );
    }
    for t in [a, b, c] {
        let got = h.received(t);
        assert_eq!(got.len(), 2);
        assert!(matches!(&got[0], Message::Text(t) if t.starts_with("451-[\"news\",\"yyy")));
        assert_eq!(got[1], Message::Binary(Bytes::from(vec![1u8; 5000])));
    }
}

/// More recipients than the Engine.IO server looks up together, v4 and v3 clients
/// mixed (v3 ones take the path of a copy per session): each gets every message once,
/// in the order sent, attachments after their event.
#[test]
fn a_broadcast_to_many_reaches_each_recipient_once_in_order() {
    let mut h = harness(config());
    let mut v4 = Vec::new();
    let mut v3 = Vec::new();
    for i in 0..40 {
        if i % 7 == 3 {
            let tid = h.open(3);
            assert_eq!(h.texts(tid), ["40"]);
            v3.push(tid);
        } else {
            v4.push(h.connect("/").0);
        }
    }
    h.server.broadcast(
        h.now,
        &Broadcast::nsp("/"),
        "a",
        Payload::new().arg(json!(1)).bin(vec![7u8; 3]),
    );
    h.server
        .broadcast(h.now, &Broadcast::nsp("/"), "b", payload(json!(2)));
    h.pump();
    for tid in v4 {
        assert_eq!(
            h.received(tid),
            [
                Message::text(r#"451-["a",1,{"_placeholder":true,"num":0}]"#),
                Message::binary(vec![7u8; 3]),
                Message::text(r#"42["b",2]"#),
            ],
            "{tid:?}"
        );
    }
    for tid in v3 {
        let got = h.received(tid);
        assert_eq!(got.len(), 3, "{tid:?}: {got:?}");
        assert_eq!(
            got[0],
            Message::text(r#"451-["a",1,{"_placeholder":true,"num":0}]"#)
        );
        assert!(matches!(&got[1], Message::Binary(b) if b.ends_with(&[7, 7, 7])));
        assert_eq!(got[2], Message::text(r#"42["b",2]"#));
    }
}

#[test]
fn kept_sockets_are_capped() {
    let mut recovery = Recovery::default();
    recovery.max_kept = 1;
    let mut h = harness(config().recovery(recovery));
    let (a, _) = h.connect("/");
    let (b, _) = h.connect("/");
    for tid in [a, b] {
        h.ws_drop(tid);
    }
    let kept: Vec<bool> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Disconnected { kept, .. } => Some(*kept),
            _ => None,
        })
        .collect();
    assert_eq!(kept, [true, false]);
}

#[test]
fn the_recovery_store_is_bounded() {
    let mut recovery = Recovery::default();
    recovery.max_packets = 2;
    let mut h = harness(config().recovery(recovery));
    let tid = h.open(4);
    h.send(tid, "40");
    let got = h.texts(tid);
    let json: Value = serde_json::from_str(&got[0][2..]).expect("json");
    let pid = json["pid"].as_str().expect("pid").to_owned();
    let sid = h.sid(json["sid"].as_str().expect("sid"));
    h.server
        .emit(h.now, &sid, "first", Payload::new())
        .expect("socket");
    h.pump();
    let got = h.texts(tid);
    let args: Value = serde_json::from_str(&got[0][2..]).expect("json");
    let offset = args[1].as_str().expect("offset").to_owned();
    h.ws_drop(tid);
    // Two more packets push the client's offset out of the store.
    for _ in 0..2 {
        h.server
            .broadcast(h.now, &Broadcast::nsp("/"), "more", Payload::new());
    }
    let t2 = h.open(4);
    h.send(t2, &format!("40{}", json!({"pid": pid, "offset": offset})));
    let got = h.texts(t2);
    assert_eq!(got.len(), 1, "no replay: {got:?}");
    assert!(!got[0].contains(sid.as_str()), "not recovered: {got:?}");
}

#[test]
fn a_websocket_link_parses_the_json_before_the_server_sees_it() {
    let mut h = harness(config());
    let (tid, sid) = h.connect("/");
    // Drive this transport's link by hand: what the host does outside its lock.
    let mut link = h.links.remove(&tid).expect("link");
    let client = h.clients.get_mut(&tid).expect("client");
    client
        .send(Message::text(r#"42["ev",{"a":1}]"#))
        .expect("open");
    let mut bytes = Vec::new();
    while let Some(b) = client.poll_transmit() {
        bytes.extend_from_slice(&b);
    }
    link.handle_input(h.now, &bytes);
    let input = link.poll_input().expect("a packet");
    match &input {
        eio::WsInput::Packet {
            decoded: Some(decoded),
            ..
        } => assert!(decoded
            .downcast_ref::<wirestate_engine::sio::Parsed>()
            .is_some()),
        other => panic!("not parsed in the link: {other:?}"),
    }
    h.server.handle_ws_input(h.now, tid, input);
    h.pump();
    let event = h.events.iter().find_map(|e| match e {
        Event::Event {
            sid: s,
            name,
            payload,
            ..
        } if *s == sid => Some((name.clone(), payload.values().into_owned())),
        _ => None,
    });
    assert_eq!(event, Some(("ev".to_owned(), vec![json!({"a": 1})])));
}

#[test]
fn a_polling_payload_is_parsed_by_the_preparer_apart_from_the_server() {
    let mut h = harness(config());
    let sid = polling_handshake(&mut h);
    let post = |body: &str| {
        world::request(
            "POST",
            &format!("{PATH}?EIO=4&transport=polling&sid={sid}"),
            &[],
            body.as_bytes(),
        )
    };
    let _ = h.server.handle_request(h.now, &post("40"));
    h.pump();
    // The preparer (what the host runs before it takes its lock) decodes the payload
    // and parses each message's JSON; the server takes its work as it is.
    let ours = post("42[\"prepared\",1]\u{1e}42[\"too\",2]");
    let prepared = h.server.preparer().prepare(&ours);
    let other = post("42[\"not parsed again\",3]");
    let reply = h.server.handle_prepared(h.now, &other, prepared);
    assert!(matches!(reply, Reply::Respond(r) if r.status == 200));
    h.pump();
    let names: Vec<&str> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Event { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["prepared", "too"]);
    // Too large or invalid, prepared: the same answers as when the server decodes.
    let junk = post("zz");
    let prepared = h.server.preparer().prepare(&junk);
    let reply = h.server.handle_prepared(h.now, &junk, prepared);
    assert!(matches!(reply, Reply::Respond(r) if r.status == 400));
}
