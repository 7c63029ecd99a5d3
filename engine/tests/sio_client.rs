//! Our Socket.IO client manager against our Socket.IO server, in memory on a virtual
//! clock: namespaces, events and acks both ways, connect errors, reconnection with
//! backoff after a server restart or a ping timeout, buffering while disconnected, and
//! connection-state recovery.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wirestate_engine::eio::{self, ClientCloseReason};
use wirestate_engine::sio::{
    AckError, Broadcast, ClientConfig, ClientDisconnectReason, ClientError, ClientEvent, Config,
    Event, Manager, Payload, Recovery, Server,
};

#[path = "support/world.rs"]
mod world;

type World = world::World<Server, Manager>;

fn server_config() -> Config {
    Config::default()
        .eio(
            eio::Config::default()
                .path("/socket.io/")
                .heartbeat(Duration::from_millis(300), Duration::from_millis(200)),
        )
        .connect_timeout(Duration::from_millis(1000))
}

fn new_server(config: &Config) -> Server {
    let mut server = Server::new(config.clone(), [5; 32]);
    server.add_namespace("/");
    server.add_namespace("/chat");
    server.add_namespace("/secure");
    server
}

fn client_config(polling: bool) -> ClientConfig {
    ClientConfig::default()
        .eio(
            eio::ClientConfig::default()
                .path("/socket.io/")
                .transports(polling, true),
        )
        .reconnection_delay(Duration::from_millis(100), Duration::from_millis(400))
        .randomization_factor(0.0)
}

/// The server application: `/secure` refuses, `echo` answers with `echo-back` and
/// through its ack.
fn serve_event(server: &mut Server, now: Instant, e: &Event) {
    match e {
        Event::Connecting(info) => {
            if &*info.nsp == "/secure" && info.auth["token"] != "ok" {
                let _ = server.reject(
                    &info.session,
                    &info.nsp,
                    "denied",
                    Some(json!({"why": "token"})),
                );
            } else {
                let _ = server.accept(now, &info.session, &info.nsp);
            }
        }
        Event::Event {
            sid,
            name,
            payload,
            ack,
        } if name == "echo" => {
            let _ = server.emit(now, sid, "echo-back", payload.clone());
            if let Some(id) = ack {
                let _ = server.ack(sid, *id, payload.clone());
            }
        }
        _ => {}
    }
}

fn new_world(server_config: Config, client: ClientConfig) -> World {
    let (server, client) = (new_server(&server_config), Manager::new(client, [8; 32]));
    world::World::new(Instant::now(), server, client, serve_event)
}

/// What these tests read and do beyond the shared world.
trait Ext {
    /// A new server process (no memory of the old one) comes up after a
    /// [`crash`](world::World::crash).
    fn restart(&mut self);
    fn take(&mut self) -> Vec<ClientEvent>;
    fn connects(&self) -> Vec<(String, bool)>;
}

impl Ext for World {
    fn restart(&mut self) {
        self.server = new_server(&server_config());
        self.network = world::Network::Up;
        self.settle();
    }

    fn take(&mut self) -> Vec<ClientEvent> {
        std::mem::take(&mut self.client_events)
    }

    fn connects(&self) -> Vec<(String, bool)> {
        self.client_events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Connect { nsp, recovered, .. } => Some((nsp.to_string(), *recovered)),
                _ => None,
            })
            .collect()
    }
}

fn events_named(events: &[ClientEvent], wanted: &str) -> Vec<Payload> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Event { name, payload, .. } if name == wanted => Some(payload.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn namespaces_events_and_acks_both_ways_on_every_transport() {
    for polling in [true, false] {
        let mut w = new_world(server_config(), client_config(polling));
        let now = w.now;
        w.client
            .socket(now, "/", json!({"token": "a"}))
            .expect("open");
        w.client
            .socket(now, "/chat", json!({"token": "b"}))
            .expect("open");
        w.settle();
        // Over polling, the upgrade to WebSocket completes within the server's 100 ms
        // upgrade check.
        w.advance(Duration::from_millis(150));
        assert_eq!(w.connects(), [("/".into(), false), ("/chat".into(), false)]);
        let auths: Vec<Value> = w
            .server_events
            .iter()
            .filter_map(|e| match e {
                Event::Connected { info, .. } => Some(info.auth.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(auths, [json!({"token": "a"}), json!({"token": "b"})]);
        assert_ne!(w.client.sid("/"), w.client.sid("/chat"));
        w.take();

        let payload = Payload::new().arg(json!({"x": 1})).bin(vec![1u8, 2, 3]);
        w.client
            .emit(w.now, "/chat", "echo", payload.clone())
            .expect("emit");
        let ack = w
            .client
            .emit_with_ack(
                w.now,
                "/",
                "echo",
                Payload::new().arg(json!("q")),
                Some(Duration::from_secs(1)),
            )
            .expect("emit");
        w.settle();
        let events = w.take();
        assert_eq!(
            events_named(&events, "echo-back")[0],
            payload,
            "binary round trip"
        );
        assert!(events.contains(&ClientEvent::Ack {
            nsp: "/".into(),
            ack,
            result: Ok(Payload::new().arg(json!("q")))
        }));

        // Server asks, client answers.
        let sid = w
            .server_events
            .iter()
            .find_map(|e| match e {
                Event::Connected { sid, info, .. } if &*info.nsp == "/" => Some(sid.clone()),
                _ => None,
            })
            .expect("socket");
        let server_ack = w
            .server
            .emit_with_ack(
                w.now,
                &sid,
                "question",
                Payload::new(),
                Some(Duration::from_secs(1)),
            )
            .expect("socket");
        w.settle();
        let id = w
            .take()
            .iter()
            .find_map(|e| match e {
                ClientEvent::Event { name, ack, .. } if name == "question" => *ack,
                _ => None,
            })
            .expect("an ack id");
        w.client
            .ack(w.now, "/", id, Payload::new().arg(json!(42)))
            .expect("ack");
        w.settle();
        assert!(w.server_events.iter().any(|e| matches!(
            e,
            Event::Ack { ack, result: Ok(p), .. } if *ack == server_ack && *p.values() == [json!(42)]
        )));
        w.client.close(w.now);
        w.settle();
        assert_eq!(w.take().last(), Some(&ClientEvent::Closed));
        assert!(w.server_events.iter().any(|e| matches!(
            e,
            Event::Disconnected {
                reason: wirestate_engine::sio::DisconnectReason::ClientNamespaceDisconnect,
                ..
            }
        )));
    }
}

#[test]
fn connect_errors_carry_message_and_data() {
    let mut w = new_world(server_config(), client_config(false));
    let now = w.now;
    w.client.socket(now, "/", Value::Null).expect("open");
    w.client
        .socket(now, "/secure", json!({"token": "bad"}))
        .expect("open");
    w.client.socket(now, "/nope", Value::Null).expect("open");
    w.settle();
    let errors: Vec<(String, String, Option<Value>)> = w
        .take()
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::ConnectError { nsp, message, data } => {
                Some((nsp.to_string(), message, data))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        errors,
        [
            ("/nope".into(), "Invalid namespace".into(), None),
            (
                "/secure".into(),
                "denied".into(),
                Some(json!({"why": "token"}))
            ),
        ]
    );
    assert!(w.client.is_connected("/"));
    // A refused namespace buffers nothing.
    assert_eq!(
        w.client.emit(w.now, "/elsewhere", "x", Payload::new()),
        Err(ClientError::UnknownNamespace)
    );
}

#[test]
fn reconnects_with_backoff_after_a_server_restart_and_flushes_the_buffer() {
    let mut w = new_world(server_config(), client_config(true));
    let now = w.now;
    w.client.socket(now, "/", json!({"n": 1})).expect("open");
    w.settle();
    w.advance(Duration::from_millis(50));
    assert!(w.client.is_connected("/"));
    w.take();

    w.crash();
    let events = w.take();
    assert!(
        events.contains(&ClientEvent::Disconnect {
            nsp: "/".into(),
            reason: ClientDisconnectReason::TransportError
        }) || events.contains(&ClientEvent::Disconnect {
            nsp: "/".into(),
            reason: ClientDisconnectReason::TransportClose
        }),
        "{events:?}"
    );
    // Emits while disconnected are buffered.
    w.client
        .emit(w.now, "/", "echo", Payload::new().arg(json!("later")))
        .expect("buffered");
    // Attempts at 100 ms, then 200 ms later, then 400 ms later (capped), all refused.
    w.advance(Duration::from_millis(99));
    assert!(w.take().is_empty());
    w.advance(Duration::from_millis(1));
    assert_eq!(
        w.take(),
        [
            ClientEvent::ReconnectAttempt(1),
            ClientEvent::Close(ClientCloseReason::TransportError),
            ClientEvent::ReconnectError
        ]
    );
    w.advance(Duration::from_millis(200));
    assert_eq!(w.take()[0], ClientEvent::ReconnectAttempt(2));
    w.advance(Duration::from_millis(399));
    assert!(w.take().is_empty(), "the delay is capped at 400 ms");
    w.restart();
    w.advance(Duration::from_millis(1));
    let events = w.take();
    assert_eq!(events[0], ClientEvent::ReconnectAttempt(3));
    assert!(events.contains(&ClientEvent::Reconnect(3)), "{events:?}");
    assert!(w.connects().is_empty(), "taken");
    assert!(events.iter().any(|e| matches!(
        e,
        ClientEvent::Connect {
            recovered: false,
            ..
        }
    )));
    assert_eq!(
        events_named(&events, "echo-back"),
        [Payload::new().arg(json!("later"))]
    );
    // The auth went again.
    let auth = w.server_events.iter().rev().find_map(|e| match e {
        Event::Connected { info, .. } => Some(info.auth.clone()),
        _ => None,
    });
    assert_eq!(auth, Some(json!({"n": 1})));
}

#[test]
fn a_silent_server_is_a_ping_timeout_then_a_reconnection() {
    let mut w = new_world(server_config(), client_config(false));
    let now = w.now;
    w.client.socket(now, "/", Value::Null).expect("open");
    w.settle();
    w.take();
    // The server stops sending (pings included) but keeps the connection.
    w.network = world::Network::Silent;
    w.advance(Duration::from_millis(501));
    let events = w.take();
    assert!(
        events.contains(&ClientEvent::Disconnect {
            nsp: "/".into(),
            reason: ClientDisconnectReason::PingTimeout
        }),
        "{events:?}"
    );
    w.network = world::Network::Up;
    w.sockets.clear();
    w.advance(Duration::from_millis(150));
    let events = w.take();
    assert!(events.contains(&ClientEvent::Reconnect(1)), "{events:?}");
    assert!(w.client.is_connected("/"));
}

#[test]
fn giving_up_after_the_configured_attempts() {
    let mut w = new_world(
        server_config(),
        client_config(false).reconnection_attempts(2),
    );
    let now = w.now;
    w.client.socket(now, "/", Value::Null).expect("open");
    w.settle();
    w.take();
    w.crash();
    w.advance(Duration::from_secs(2));
    let events = w.take();
    let attempts = events
        .iter()
        .filter(|e| matches!(e, ClientEvent::ReconnectAttempt(_)))
        .count();
    assert_eq!(attempts, 2);
    assert_eq!(
        &events[events.len() - 2..],
        [ClientEvent::ReconnectFailed, ClientEvent::Closed]
    );
    assert!(w.client.is_closed());
    assert_eq!(
        w.client.emit(w.now, "/", "x", Payload::new()),
        Err(ClientError::Closed)
    );
}

#[test]
fn acks_time_out_buffers_are_bounded_and_server_disconnects_are_final() {
    let mut config = client_config(false);
    config.max_buffered = 2;
    let mut w = new_world(server_config(), config);
    let now = w.now;
    w.client.socket(now, "/", Value::Null).expect("open");
    // Not connected yet: two packets fit, the third does not.
    w.client
        .emit(now, "/", "a", Payload::new())
        .expect("buffered");
    let ack = w
        .client
        .emit_with_ack(
            now,
            "/",
            "never-answered",
            Payload::new(),
            Some(Duration::from_millis(50)),
        )
        .expect("buffered");
    assert_eq!(
        w.client.emit(now, "/", "c", Payload::new()),
        Err(ClientError::BufferFull)
    );
    w.settle();
    w.advance(Duration::from_millis(50));
    assert!(w.take().contains(&ClientEvent::Ack {
        nsp: "/".into(),
        ack,
        result: Err(AckError::Timeout)
    }));
    // The server disconnects the socket: no reconnection, the manager is done.
    let sid = w
        .server
        .fetch_sockets(&Broadcast::nsp("/"))
        .pop()
        .expect("socket");
    w.server.disconnect(w.now, &sid, false).expect("socket");
    w.settle();
    let events = w.take();
    assert_eq!(
        events,
        [
            ClientEvent::Disconnect {
                nsp: "/".into(),
                reason: ClientDisconnectReason::IoServerDisconnect
            },
            ClientEvent::Closed
        ]
    );
    w.advance(Duration::from_secs(2));
    assert!(!w
        .take()
        .iter()
        .any(|e| matches!(e, ClientEvent::ReconnectAttempt(_))));
}

#[test]
fn connection_state_recovery_after_a_dropped_transport() {
    let mut w = new_world(
        server_config().recovery(Recovery::default()),
        client_config(false),
    );
    let now = w.now;
    w.client.socket(now, "/", Value::Null).expect("open");
    w.settle();
    let first = w.client.sid("/").expect("connected").to_owned();
    let sid = w
        .server
        .fetch_sockets(&Broadcast::nsp("/"))
        .pop()
        .expect("socket");
    w.server.join(&sid, &["room".into()]).expect("socket");
    w.server
        .emit(w.now, &sid, "hello", Payload::new())
        .expect("socket");
    w.settle();
    w.take();
    // The transport drops (the server notices); the server keeps the session.
    w.drop_sockets();
    w.settle();
    w.server.broadcast(
        w.now,
        &Broadcast::nsp("/").to("room"),
        "missed",
        Payload::new().arg(json!(1)),
    );
    w.settle();
    w.advance(Duration::from_millis(100));
    let events = w.take();
    assert!(
        events.iter().any(|e| matches!(
            e,
            ClientEvent::Connect {
                recovered: true,
                ..
            }
        )),
        "{events:?}"
    );
    assert_eq!(w.client.sid("/"), Some(first.as_str()));
    let missed = events_named(&events, "missed");
    assert_eq!(missed.len(), 1);
    assert_eq!(missed[0].values()[0], json!(1));
}
