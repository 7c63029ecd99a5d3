//! Our Engine.IO client against our Engine.IO server, in memory on a virtual clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wirestate_engine::eio::{
    Action, Client, ClientCloseReason, ClientConfig, ClientEvent, CloseReason, Config, Data, Event,
    PollId, Reply, RequestId, Server, Transmit, TransportId, WsId,
};
use wirestate_engine::http::ServerConn;
use wirestate_engine::ws::{self, ClientRequest, Connection};

struct World {
    now: Instant,
    server: Server,
    client: Client,
    parked: HashMap<PollId, RequestId>,
    sockets: HashMap<WsId, (Connection, Option<TransportId>)>,
    by_transport: HashMap<TransportId, WsId>,
    client_events: Vec<ClientEvent>,
    server_events: Vec<Event>,
    /// While true, the server answers nothing (it is "down").
    server_down: bool,
}

fn config() -> Config {
    Config::default().heartbeat(Duration::from_millis(300), Duration::from_millis(200))
}

impl World {
    fn new(client_config: ClientConfig) -> Self {
        let now = Instant::now();
        Self {
            now,
            server: Server::new(config(), [5; 32]),
            client: Client::new(client_config, now),
            parked: HashMap::new(),
            sockets: HashMap::new(),
            by_transport: HashMap::new(),
            client_events: Vec::new(),
            server_events: Vec::new(),
            server_down: false,
        }
    }

    fn request(
        &mut self,
        method: &str,
        target: &str,
        body: &Bytes,
    ) -> wirestate_engine::http::Request {
        let raw = format!(
            "{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut conn = ServerConn::new(8192, 1 << 22);
        conn.handle_input(raw.as_bytes());
        conn.handle_input(body);
        conn.poll_request().expect("request")
    }

    /// Runs everything until nothing moves.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut progress = false;
            while let Some(action) = self.client.poll_action() {
                progress = true;
                if self.server_down {
                    continue;
                }
                match action {
                    Action::Http {
                        id,
                        method,
                        target,
                        body,
                    } => {
                        let req = self.request(method, &target, &body);
                        match self.server.handle_request(self.now, &req) {
                            Reply::Respond(r) => self
                                .client
                                .handle_http_response(self.now, id, r.status, r.body),
                            Reply::Park(poll) => {
                                self.parked.insert(poll, id);
                            }
                            Reply::Upgrade(_) => panic!("HTTP request upgraded"),
                        }
                    }
                    Action::OpenWs { id, target } => {
                        let url = format!("ws://localhost{target}");
                        let req = ClientRequest::from_url(&url).expect("url");
                        let mut conn = Connection::client(
                            Arc::new(ws::Config::default()),
                            &req,
                            self.now,
                            [1; 32],
                        );
                        let head = conn.poll_transmit().expect("head");
                        let mut http = ServerConn::new(8192, 1024);
                        http.handle_input(&head);
                        let upgrade = http.poll_request().expect("upgrade");
                        match self.server.handle_request(self.now, &upgrade) {
                            Reply::Upgrade(tid) => {
                                self.by_transport.insert(tid, id);
                                self.sockets.insert(id, (conn, Some(tid)));
                            }
                            other => panic!("{other:?}"),
                        }
                    }
                    Action::SendWs { id, message } => {
                        if let Some((conn, _)) = self.sockets.get_mut(&id) {
                            let _ = conn.send(message);
                        }
                    }
                    Action::CloseWs(id) => {
                        if let Some((conn, _)) = self.sockets.get_mut(&id) {
                            let _ = conn.close(self.now, ws::CloseCode::NORMAL, "");
                        }
                    }
                }
            }
            while let Some(t) = self.server.poll_transmit() {
                progress = true;
                match t {
                    Transmit::Respond { poll, response } => {
                        if let Some(id) = self.parked.remove(&poll) {
                            self.client.handle_http_response(
                                self.now,
                                id,
                                response.status,
                                response.body,
                            );
                        }
                    }
                    Transmit::Ws { transport, bytes } => {
                        if let Some((conn, _)) = self
                            .by_transport
                            .get(&transport)
                            .and_then(|id| self.sockets.get_mut(id))
                        {
                            conn.handle_input(self.now, &bytes);
                        }
                    }
                    Transmit::CloseTransport(transport) => {
                        if let Some((conn, _)) = self
                            .by_transport
                            .get(&transport)
                            .and_then(|id| self.sockets.get_mut(id))
                        {
                            conn.handle_eof(self.now);
                        }
                    }
                }
            }
            let ids: Vec<WsId> = self.sockets.keys().copied().collect();
            for id in ids {
                let (conn, tid) = self.sockets.get_mut(&id).expect("socket");
                let tid = *tid;
                let mut out = Vec::new();
                while let Some(b) = conn.poll_transmit() {
                    out.extend_from_slice(&b);
                }
                let mut evs = Vec::new();
                while let Some(e) = conn.poll_event() {
                    evs.push(e);
                }
                if !out.is_empty() {
                    progress = true;
                    if let Some(tid) = tid {
                        self.server.handle_ws_input(self.now, tid, &out);
                    }
                }
                for e in evs {
                    progress = true;
                    match e {
                        ws::Event::Open(_) => self.client.handle_ws_opened(self.now, id),
                        ws::Event::Message(m) => self.client.handle_ws_message(self.now, id, &m),
                        ws::Event::Closed(_) => self.client.handle_ws_closed(self.now, id),
                        _ => {}
                    }
                }
            }
            while let Some(e) = self.server.poll_event() {
                progress = true;
                if let Event::Message { sid, data } = &e {
                    let _ = self.server.send(sid, data.clone()); // echo
                }
                self.server_events.push(e);
            }
            while let Some(e) = self.client.poll_event() {
                progress = true;
                self.client_events.push(e);
            }
            if !progress {
                return;
            }
        }
        panic!("did not settle");
    }

    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        loop {
            // A server that is down fires no timers.
            let server_next = if self.server_down {
                None
            } else {
                self.server.poll_timeout()
            };
            let next = [server_next, self.client.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    if !self.server_down {
                        self.server.handle_timeout(self.now);
                    }
                    self.client.handle_timeout(self.now);
                    self.settle();
                }
                _ => break,
            }
        }
        self.now = until;
        self.settle();
    }

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
    let mut w = World::new(ClientConfig::default());
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
    let mut w = World::new(ClientConfig::default().transports(true, false));
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
    let mut w = World::new(ClientConfig::default().transports(false, true));
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
        let mut w = World::new(ClientConfig::default().transports(transports.0, transports.1));
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
    let mut w = World::new(ClientConfig::default().transports(true, false));
    w.settle();
    w.server_down = true;
    w.advance(Duration::from_millis(501));
    assert_eq!(
        w.client_events.last(),
        Some(&ClientEvent::Closed(ClientCloseReason::PingTimeout))
    );
}

#[test]
fn server_close_reaches_the_client() {
    let mut w = World::new(ClientConfig::default().transports(true, false));
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
