//! Our Engine.IO client against our Engine.IO server, in memory on a virtual clock.

use std::time::{Duration, Instant};

use bytes::Bytes;
use wirestate_engine::eio::{
    Client, ClientCloseReason, ClientConfig, ClientEvent, CloseReason, Config, Data, Event, Server,
};

#[path = "support/world.rs"]
mod world;

type World = world::World<Server, Client>;

fn config() -> Config {
    Config::default().heartbeat(Duration::from_millis(300), Duration::from_millis(200))
}

/// The server application: echoes every message.
fn echo(server: &mut Server, _now: Instant, e: &Event) {
    if let Event::Message { sid, data } = e {
        let _ = server.send(sid, data.clone());
    }
}

fn new_world(client_config: ClientConfig) -> World {
    let now = Instant::now();
    let server = Server::new(config(), [5; 32]);
    world::World::new(now, server, Client::new(client_config, now), echo)
}

/// What these tests read beyond the shared world.
trait Ext {
    fn messages(&self) -> Vec<Data>;
}

impl Ext for World {
    fn messages(&self) -> Vec<Data> {
        self.client_events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Message(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }
}

fn payloads() -> Vec<Data> {
    vec![
        Data::from("hello"),
        Data::Binary(Bytes::from_static(&[1, 2, 3])),
        Data::Text("€ 𝄞 ".repeat(1000).into()),
    ]
}

#[test]
fn polling_then_upgrade_then_echo_over_websocket() {
    let mut w = new_world(ClientConfig::default());
    w.settle();
    // A poll made before the client saw the probe's answer waits for the server's
    // next upgrade check (100 ms) to end with a noop.
    w.advance(Duration::from_millis(100));
    assert!(
        matches!(w.client_events.first(), Some(ClientEvent::Open(info)) if info.upgrades == ["websocket"])
    );
    assert!(
        w.client_events.contains(&ClientEvent::Upgraded),
        "{:?}",
        w.client_events
    );
    assert!(w.client.is_websocket());
    assert!(w
        .server_events
        .iter()
        .any(|e| matches!(e, Event::Upgraded { .. })));
    for d in payloads() {
        w.client.send(w.now, d).expect("open");
    }
    w.settle();
    assert_eq!(w.messages(), payloads());
    // Heartbeats keep it alive for a long time.
    w.advance(Duration::from_secs(5));
    assert_eq!(w.server.session_count(), 1);
    assert!(!w
        .client_events
        .iter()
        .any(|e| matches!(e, ClientEvent::Closed(_))));
}

#[test]
fn polling_only_echo_and_heartbeats() {
    let mut w = new_world(ClientConfig::default().transports(true, false));
    w.settle();
    for d in payloads() {
        w.client.send(w.now, d).expect("open");
    }
    w.settle();
    assert_eq!(w.messages(), payloads());
    assert!(!w.client.is_websocket());
    w.advance(Duration::from_secs(5));
    assert_eq!(
        w.server.session_count(),
        1,
        "pongs over POST keep the session"
    );
    w.client.send(w.now, Data::from("still")).expect("open");
    w.settle();
    assert_eq!(w.messages().last(), Some(&Data::from("still")));
}

#[test]
fn websocket_only() {
    let mut w = new_world(ClientConfig::default().transports(false, true));
    w.settle();
    assert!(
        matches!(w.client_events.first(), Some(ClientEvent::Open(info)) if info.upgrades.is_empty())
    );
    for d in payloads() {
        w.client.send(w.now, d).expect("open");
    }
    w.settle();
    assert_eq!(w.messages(), payloads());
    w.advance(Duration::from_secs(3));
    assert_eq!(w.server.session_count(), 1);
}

#[test]
fn client_close_is_seen_by_the_server() {
    for transports in [(true, false), (true, true), (false, true)] {
        let mut w = new_world(ClientConfig::default().transports(transports.0, transports.1));
        w.settle();
        let now = w.now;
        w.client.close(now);
        w.settle();
        assert_eq!(
            w.client_events.last(),
            Some(&ClientEvent::Closed(ClientCloseReason::ClientClose))
        );
        assert!(
            w.server_events.iter().any(|e| matches!(
                e,
                Event::Closed {
                    reason: CloseReason::TransportClose,
                    ..
                }
            )),
            "{transports:?}: {:?}",
            w.server_events
        );
        assert!(w.client.send(now, Data::from("late")).is_err());
    }
}

#[test]
fn a_silent_server_times_out() {
    let mut w = new_world(ClientConfig::default().transports(true, false));
    w.settle();
    w.network = world::Network::Silent;
    w.advance(Duration::from_millis(501));
    assert_eq!(
        w.client_events.last(),
        Some(&ClientEvent::Closed(ClientCloseReason::PingTimeout))
    );
}

#[test]
fn server_close_reaches_the_client() {
    let mut w = new_world(ClientConfig::default().transports(true, false));
    w.settle();
    let sid = match &w.server_events[0] {
        Event::Open { sid, .. } => sid.clone(),
        other => panic!("{other:?}"),
    };
    let now = w.now;
    w.server.close(now, &sid).expect("open");
    w.settle();
    assert_eq!(
        w.client_events.last(),
        Some(&ClientEvent::Closed(ClientCloseReason::TransportClose))
    );
}
