//! One in-memory world for every client-against-server test: a server [`Endpoint`]
//! (Engine.IO or Socket.IO) and a [`ClientMachine`] (the Engine.IO client or the
//! Socket.IO manager) joined by in-memory HTTP exchanges and WebSocket connections, on
//! a virtual clock. `settle` runs everything until nothing moves; `advance` jumps from
//! deadline to deadline. The network can fail: silently, or by refusing connections
//! after a crash.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wirestate_engine::eio::{
    Action, PollId, Reply, RequestId, Transmit, TransportId, WsId, WsLink,
};
use wirestate_engine::http::{Request, Response, ServerConn};
use wirestate_engine::ws::{self, ClientRequest, Connection};
use wirestate_engine::{ClientMachine, Endpoint};

/// What the network between the client and the server does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    /// Everything arrives.
    Up,
    /// The server hears nothing and says nothing, and its timers stand still: requests
    /// hang, as behind a dead link.
    Silent,
    /// The server is gone (see [`World::crash`]): connection attempts fail at once.
    Refusing,
}

/// The server application: called with every server event.
pub type Serve<E> = fn(&mut E, Instant, &<E as Endpoint>::Event);

/// A server and a client machine, in memory.
pub struct World<E: Endpoint, M: ClientMachine> {
    pub now: Instant,
    pub server: E,
    pub client: M,
    pub client_events: Vec<M::Event>,
    pub server_events: Vec<E::Event>,
    pub network: Network,
    serve: Serve<E>,
    parked: HashMap<PollId, RequestId>,
    /// The client's open WebSockets, with the server's transport for each.
    pub sockets: HashMap<WsId, (Connection, TransportId)>,
    /// The server side of each open WebSocket.
    pub links: HashMap<TransportId, WsLink>,
    by_transport: HashMap<TransportId, WsId>,
}

/// The earliest deadline of the links.
fn links_timeout(links: &HashMap<TransportId, WsLink>) -> Option<Instant> {
    links.values().filter_map(WsLink::poll_timeout).min()
}

/// A complete request as a client sends it: `headers` besides `Host` and
/// `Content-Length`.
pub fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Request {
    let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\n");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut conn = ServerConn::new(8192, 1 << 24);
    conn.handle_input(raw.as_bytes());
    conn.handle_input(body);
    conn.poll_request().expect("complete request")
}

impl<E: Endpoint, M: ClientMachine> World<E, M>
where
    M::Event: std::fmt::Debug,
{
    /// `server` and `client` at `now`; `serve` answers the server's events.
    pub fn new(now: Instant, server: E, client: M, serve: Serve<E>) -> Self {
        Self {
            now,
            server,
            client,
            client_events: Vec::new(),
            server_events: Vec::new(),
            network: Network::Up,
            serve,
            parked: HashMap::new(),
            sockets: HashMap::new(),
            links: HashMap::new(),
            by_transport: HashMap::new(),
        }
    }

    /// Runs everything until nothing moves.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut progress = false;
            let mut n = 0;
            // Packets encoded straight into the writer's buffer (as the async host
            // does), written before what the link queues.
            let mut direct: HashMap<TransportId, Vec<u8>> = HashMap::new();
            while let Some(action) = self.client.poll_action() {
                progress = true;
                n += 1;
                assert!(n < 1000, "endless actions: {action:?}");
                self.carry_out(action);
            }
            while let Some(t) = self.server.poll_transmit() {
                progress = true;
                if self.network != Network::Up {
                    continue;
                }
                match t {
                    Transmit::Respond { poll, response } => {
                        if let Some(id) = self.parked.remove(&poll) {
                            let (status, body) = (response.status, response.body);
                            self.client.handle_http_response(self.now, id, status, body);
                        }
                    }
                    Transmit::Ws { transport, output } => {
                        if let Some(link) = self.links.get_mut(&transport) {
                            let buf = direct.entry(transport).or_default();
                            link.handle_output_into(self.now, output, buf);
                        }
                    }
                    Transmit::AbortTransport(transport) => {
                        self.links.remove(&transport);
                        let now = self.now;
                        if let Some((conn, _)) = self.socket_of(transport) {
                            conn.handle_eof(now);
                        }
                    }
                }
            }
            let tids: Vec<TransportId> = self.links.keys().copied().collect();
            for tid in tids {
                let now = self.now;
                let link = self.links.get_mut(&tid).expect("link");
                let mut out = direct.remove(&tid).unwrap_or_default();
                link.handle_written(out.len());
                while let Some(b) = link.poll_transmit() {
                    link.handle_written(b.len());
                    out.extend_from_slice(&b);
                }
                let written = link.take_written();
                let close = link.should_close_transport();
                if written > 0 {
                    self.server.handle_ws_written(tid, written);
                }
                if close {
                    self.links.remove(&tid);
                }
                if let Some((conn, _)) = self.socket_of(tid) {
                    if !out.is_empty() {
                        progress = true;
                        conn.handle_input(now, &out);
                    }
                    if close {
                        progress = true;
                        conn.handle_eof(now);
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
                let mut events = Vec::new();
                while let Some(e) = conn.poll_event() {
                    events.push(e);
                }
                if !out.is_empty() && self.network == Network::Up {
                    progress = true;
                    if let Some(link) = self.links.get_mut(&tid) {
                        link.handle_input(self.now, &out);
                        link.deliver(self.now, &mut self.server);
                    }
                }
                for e in events {
                    progress = true;
                    match e {
                        ws::Event::Open(_) => self.client.handle_ws_opened(self.now, id),
                        ws::Event::Message(m) => self.client.handle_ws_message(self.now, id, &m),
                        ws::Event::Closed(_) => {
                            self.sockets.remove(&id);
                            self.client.handle_ws_closed(self.now, id);
                        }
                        _ => {}
                    }
                }
            }
            while let Some(e) = self.server.poll_event() {
                progress = true;
                (self.serve)(&mut self.server, self.now, &e);
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

    fn socket_of(&mut self, transport: TransportId) -> Option<&mut (Connection, TransportId)> {
        let id = self.by_transport.get(&transport)?;
        self.sockets.get_mut(id)
    }

    fn carry_out(&mut self, action: Action) {
        match action {
            Action::Http {
                id,
                method,
                target,
                body,
            } => match self.network {
                Network::Silent => {}
                Network::Refusing => self.client.handle_http_failed(self.now, id),
                Network::Up => match self
                    .server
                    .handle_request(self.now, &request(method, &target, &[], &body))
                {
                    Reply::Respond(r) => self
                        .client
                        .handle_http_response(self.now, id, r.status, r.body),
                    Reply::Park(poll) => {
                        self.parked.insert(poll, id);
                    }
                    Reply::Upgrade(_) => panic!("HTTP request upgraded"),
                },
            },
            Action::OpenWs { id, target } => match self.network {
                Network::Silent => {}
                Network::Refusing => self.client.handle_ws_closed(self.now, id),
                Network::Up => {
                    let url = format!("ws://localhost{target}");
                    let req = ClientRequest::from_url(&url).expect("url");
                    let config = Arc::new(ws::Config::default());
                    let mut conn = Connection::client(config, &req, self.now, [1; 32]);
                    let head = conn.poll_transmit().expect("head");
                    let mut http = ServerConn::new(8192, 1024);
                    http.handle_input(&head);
                    let upgrade = http.poll_request().expect("upgrade");
                    match self.server.handle_request(self.now, &upgrade) {
                        Reply::Upgrade(link) => {
                            let tid = link.transport();
                            self.links.insert(tid, *link);
                            self.by_transport.insert(tid, id);
                            self.sockets.insert(id, (conn, tid));
                        }
                        Reply::Respond(_) => self.client.handle_ws_closed(self.now, id),
                        Reply::Park(_) => panic!("upgrade parked"),
                    }
                }
            },
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

    /// The server process dies: every connection drops, and connections are refused
    /// until the test puts a new server in place and the network back [`Network::Up`].
    pub fn crash(&mut self) {
        self.network = Network::Refusing;
        for (id, (mut conn, _)) in std::mem::take(&mut self.sockets) {
            conn.handle_eof(self.now);
            self.client.handle_ws_closed(self.now, id);
        }
        self.links.clear();
        for (_, id) in std::mem::take(&mut self.parked) {
            self.client.handle_http_failed(self.now, id);
        }
        self.by_transport.clear();
        self.settle();
    }

    /// Every WebSocket drops at once (the server notices, the client too).
    pub fn drop_sockets(&mut self) {
        for (id, (mut conn, tid)) in std::mem::take(&mut self.sockets) {
            conn.handle_eof(self.now);
            if let Some(mut link) = self.links.remove(&tid) {
                link.handle_eof(self.now);
                link.deliver(self.now, &mut self.server);
            }
            self.client.handle_ws_closed(self.now, id);
        }
        self.by_transport.clear();
    }

    /// Jumps from deadline to deadline (the server's stand still unless the network is
    /// up) until `by` has passed.
    pub fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        for _ in 0..100_000 {
            let server_next = match self.network {
                Network::Up => [self.server.poll_timeout(), links_timeout(&self.links)]
                    .into_iter()
                    .flatten()
                    .min(),
                Network::Silent | Network::Refusing => None,
            };
            let next = [server_next, self.client.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    if server_next.is_some() {
                        self.server.handle_timeout(self.now);
                        for link in self.links.values_mut() {
                            link.handle_timeout(self.now);
                            link.deliver(self.now, &mut self.server);
                        }
                    }
                    self.client.handle_timeout(self.now);
                    self.settle();
                }
                _ => {
                    self.now = until;
                    self.settle();
                    return;
                }
            }
        }
        panic!(
            "timers do not move: server {:?}, client {:?}, now {:?}",
            self.server.poll_timeout(),
            self.client.poll_timeout(),
            self.now
        );
    }
}

/// A server and raw clients: tests that write the protocol by hand send HTTP requests
/// and WebSocket messages themselves and read exactly what came back.
pub struct RawWorld<E: Endpoint> {
    pub now: Instant,
    pub server: E,
    pub events: Vec<E::Event>,
    /// Responses to parked polls, by poll.
    pub late: HashMap<PollId, Response>,
    /// WebSocket clients, by the transport the server gave them.
    pub clients: HashMap<TransportId, Connection>,
    /// The server side of each WebSocket.
    pub links: HashMap<TransportId, WsLink>,
    /// Messages each WebSocket client received.
    pub received: HashMap<TransportId, Vec<ws::Message>>,
    /// Transports the server closed (or aborted).
    pub closed: Vec<TransportId>,
    /// Transports whose client does not read: writes to them are recorded but neither
    /// delivered nor reported written (until [`unstall`](Self::unstall)).
    pub stalled: Vec<TransportId>,
    held: Vec<(TransportId, Bytes)>,
    /// Every WebSocket write, as the server produced it.
    pub writes: Vec<(TransportId, Bytes)>,
    /// The WebSocket clients answer Engine.IO pings (`2`) with pongs (`3`).
    pub answer_pings: bool,
    /// The server application, if any: called with every server event.
    pub serve: Option<Serve<E>>,
    /// Packets are encoded straight into a write buffer per transport
    /// ([`WsLink::handle_output_into`], as the async host does) and written as one
    /// write before what the links queue.
    pub direct: bool,
}

impl<E: Endpoint> RawWorld<E> {
    /// `server` at `now`, with no client yet.
    pub fn new(now: Instant, server: E) -> Self {
        Self {
            now,
            server,
            events: Vec::new(),
            late: HashMap::new(),
            clients: HashMap::new(),
            links: HashMap::new(),
            received: HashMap::new(),
            closed: Vec::new(),
            stalled: Vec::new(),
            held: Vec::new(),
            writes: Vec::new(),
            answer_pings: false,
            serve: None,
            direct: false,
        }
    }

    /// Runs everything until nothing moves.
    pub fn pump(&mut self) {
        loop {
            let mut progress = false;
            let mut direct: HashMap<TransportId, Vec<u8>> = HashMap::new();
            while let Some(t) = self.server.poll_transmit() {
                progress = true;
                match t {
                    Transmit::Respond { poll, response } => {
                        let earlier = self.late.insert(poll, response);
                        assert!(earlier.is_none(), "one response per poll");
                    }
                    Transmit::Ws { transport, output } => {
                        if let Some(link) = self.links.get_mut(&transport) {
                            if self.direct {
                                let buf = direct.entry(transport).or_default();
                                link.handle_output_into(self.now, output, buf);
                            } else {
                                link.handle_output(self.now, output);
                            }
                        }
                    }
                    Transmit::AbortTransport(transport) => self.drop_transport(transport),
                }
            }
            let tids: Vec<TransportId> = self.links.keys().copied().collect();
            for tid in tids {
                let link = self.links.get_mut(&tid).expect("link");
                let mut out = Vec::new();
                let mut first = direct.remove(&tid).filter(|b| !b.is_empty());
                while let Some(b) = first
                    .take()
                    .map(Bytes::from)
                    .or_else(|| link.poll_transmit())
                {
                    progress = true;
                    self.writes.push((tid, b.clone()));
                    if self.stalled.contains(&tid) {
                        self.held.push((tid, b));
                    } else {
                        link.handle_written(b.len());
                        out.push(b);
                    }
                }
                let written = link.take_written();
                let close = link.should_close_transport();
                if written > 0 {
                    self.server.handle_ws_written(tid, written);
                }
                if let Some(c) = self.clients.get_mut(&tid) {
                    for b in out {
                        c.handle_input(self.now, &b);
                    }
                }
                if close {
                    progress = true;
                    self.drop_transport(tid);
                }
            }
            while let Some(e) = self.server.poll_event() {
                progress = true;
                if let Some(serve) = self.serve {
                    serve(&mut self.server, self.now, &e);
                }
                self.events.push(e);
            }
            let ids: Vec<TransportId> = self.clients.keys().copied().collect();
            for tid in ids {
                let client = self.clients.get_mut(&tid).expect("client");
                let mut out = Vec::new();
                while let Some(b) = client.poll_transmit() {
                    out.extend_from_slice(&b);
                }
                let mut pings = 0;
                while let Some(ev) = client.poll_event() {
                    if let ws::Event::Message(m) = ev {
                        if self.answer_pings && m == ws::Message::text("2") {
                            pings += 1;
                        }
                        self.received.entry(tid).or_default().push(m);
                    }
                }
                for _ in 0..pings {
                    let _ = client.send(ws::Message::text("3"));
                    while let Some(b) = client.poll_transmit() {
                        out.extend_from_slice(&b);
                    }
                }
                if let Some(link) = self.links.get_mut(&tid).filter(|_| !out.is_empty()) {
                    progress = true;
                    link.handle_input(self.now, &out);
                    link.deliver(self.now, &mut self.server);
                }
            }
            if !progress {
                return;
            }
        }
    }

    /// Hands the server a request (`headers` besides `Host` and `Content-Length`) and
    /// runs what it produced.
    pub fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let reply = self
            .server
            .handle_request(self.now, &request(method, target, headers, body));
        self.pump();
        reply
    }

    /// Opens a WebSocket client to `target` (path and query); it must be upgraded.
    pub fn websocket(&mut self, target: &str) -> TransportId {
        let url = format!("ws://localhost{target}");
        let req = ClientRequest::from_url(&url).expect("url");
        let mut client =
            Connection::client(Arc::new(ws::Config::default()), &req, self.now, [9; 32]);
        let head = client.poll_transmit().expect("request head");
        let mut conn = ServerConn::new(8192, 1 << 20);
        conn.handle_input(&head);
        let request = conn.poll_request().expect("upgrade request");
        match self.server.handle_request(self.now, &request) {
            Reply::Upgrade(link) => {
                let tid = link.transport();
                self.links.insert(tid, *link);
                self.clients.insert(tid, client);
                self.pump();
                tid
            }
            other => panic!("expected an upgrade, got {other:?}"),
        }
    }

    /// A WebSocket client sends `message`.
    pub fn ws_send(&mut self, tid: TransportId, message: ws::Message) {
        self.clients
            .get_mut(&tid)
            .expect("client")
            .send(message)
            .expect("open");
        self.pump();
    }

    /// The server's side of a transport's connection is gone: its client sees the
    /// end, and the server hears of it (if it has not closed the transport itself).
    fn drop_transport(&mut self, tid: TransportId) {
        self.closed.push(tid);
        if let Some(mut link) = self.links.remove(&tid) {
            link.abandon(self.now, &mut self.server);
        }
        if let Some(c) = self.clients.get_mut(&tid) {
            c.handle_eof(self.now);
        }
    }

    /// A WebSocket client's connection drops (TCP gone, no closing handshake).
    pub fn ws_drop(&mut self, tid: TransportId) {
        self.clients.remove(&tid);
        if let Some(mut link) = self.links.remove(&tid) {
            link.handle_eof(self.now);
            link.deliver(self.now, &mut self.server);
        }
        self.pump();
    }

    /// Stalled clients read again: what they were sent is delivered and reported
    /// written.
    pub fn unstall(&mut self) {
        self.stalled.clear();
        for (tid, bytes) in std::mem::take(&mut self.held) {
            if let Some(link) = self.links.get_mut(&tid) {
                link.handle_written(bytes.len());
                let written = link.take_written();
                self.server.handle_ws_written(tid, written);
            }
            if let Some(c) = self.clients.get_mut(&tid) {
                c.handle_input(self.now, &bytes);
            }
        }
        self.pump();
    }

    /// Fires every deadline due at `now`: the server's and the links'.
    fn fire(&mut self) {
        self.server.handle_timeout(self.now);
        for link in self.links.values_mut() {
            link.handle_timeout(self.now);
            link.deliver(self.now, &mut self.server);
        }
        self.pump();
    }

    /// Jumps from deadline to deadline until `by` has passed.
    pub fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while let Some(t) = [self.server.poll_timeout(), links_timeout(&self.links)]
            .into_iter()
            .flatten()
            .min()
        {
            if t > until {
                break;
            }
            self.now = self.now.max(t);
            self.fire();
        }
        self.now = until;
        self.fire();
    }
}
