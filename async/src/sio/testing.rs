//! A handler test harness: a real [`SocketIo`] with its handlers, hooks,
//! validation and jobs, and in-memory clients: no network, no port, nothing to set
//! up beyond the runtime's test attribute (`#[tokio::test]`, or
//! `smol::block_on`; the adapters' `sio::testing::server` picks the runtime).
//!
//! [`TestClient::emit`] dispatches an event to the client's socket as if it had
//! come from the network, waits until its handlers are done, and returns what came
//! of it: the ack, the events the client received meanwhile, and the rooms its
//! socket joined and left. Events that arrive later (a queued job's `ws:result`,
//! a broadcast from another client) are read with [`TestClient::next_event`] and
//! [`TestClient::take_events`].
//!
//! ```
//! use serde_json::json;
//! use wirestate_async::mem::Sim;
//! use wirestate_async::sio::{testing::TestServer, Controller, Room};
//!
//! let sim = Sim::new();
//! let server = TestServer::new(&sim, wirestate_async::sio::Config::default());
//! server.io().of("/").controller(Controller::new().on("hello", |socket, msg| async move {
//!     socket.join(["greeted"]);
//!     socket.emit("welcome", &json!({"n": 1}))?;
//!     msg.ack_ok(&"hi")
//! }));
//! sim.block_on(async {
//!     let client = server.connect("/", json!({})).await.expect("connected");
//!     let out = client.emit("hello", json!(null)).await;
//!     assert_eq!(out.ack, Some(json!({"status": "ok", "data": "hi"})));
//!     assert_eq!(out.emitted, [("welcome".to_owned(), json!({"n": 1}))]);
//!     assert_eq!(out.joined, [Room::from("greeted")]);
//! });
//! ```

use super::*;
use crate::mem::{duplex, MemStream};
use crate::WebSocket;
use wirestate_engine::eio::Data;
use wirestate_engine::sio::{Decoder, PacketType};
use wirestate_engine::ws::{self, ClientRequest, Message};

/// The event the harness emits to a client to know it has read everything before.
const MARKER: &str = "\u{0}wirestate-harness-marker";

/// A server under test (see the [module docs](self)).
pub struct TestServer<R: Runtime> {
    rt: R,
    io: SocketIo,
}

impl<R: Runtime> fmt::Debug for TestServer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServer")
            .field("io", &self.io)
            .finish_non_exhaustive()
    }
}

/// What came of one event: the ack (if the handler answered it), the events the
/// client received until its handlers were done (`(name, first argument)`; a
/// binary argument reads `{"_placeholder":true,"num":N}`), and the rooms its
/// socket joined and left meanwhile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// The ack's first argument.
    pub ack: Option<Value>,
    /// Events the client received, in order.
    pub emitted: Vec<(String, Value)>,
    /// Rooms the socket joined, sorted.
    pub joined: Vec<Room>,
    /// Rooms the socket left, sorted.
    pub left: Vec<Room>,
}

#[derive(Default)]
struct Inbox {
    /// Events received: their names and arguments.
    events: VecDeque<(String, Vec<Value>)>,
    acks: HashMap<u64, Value>,
    markers: u64,
    closed: bool,
    waker: Option<Waker>,
}

/// One in-memory client with one socket (see the [module docs](self)).
pub struct TestClient {
    io: SocketIo,
    sid: Sid,
    inbox: Arc<Mutex<Inbox>>,
    next_id: AtomicU64,
}

impl fmt::Debug for TestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestClient")
            .field("sid", &self.sid)
            .finish_non_exhaustive()
    }
}

use std::sync::atomic::AtomicU64;

impl<R: Runtime> TestServer<R> {
    /// A server with `options` on `rt`, its timers running.
    pub fn new(rt: &R, options: impl Into<ServerOptions>) -> Self {
        let io = SocketIo::new(rt, options, [7; 32]);
        let host = io.host().clone();
        let clock = rt.clock();
        rt.spawn(async move { host.run_timers(clock).await });
        Self { rt: rt.clone(), io }
    }

    /// The server: register namespaces, controllers and hooks on it.
    pub fn io(&self) -> &SocketIo {
        &self.io
    }

    /// Connects a client to namespace `nsp` with `auth`: the connection goes
    /// through the namespace's middlewares and connection handler. `Err` holds the
    /// `connect_error` data (`{"message":..}`).
    pub async fn connect(&self, nsp: &str, auth: Value) -> Result<TestClient, Value> {
        let failed = |m: &str| serde_json::json!({ "message": m });
        let (client_end, server_end) = duplex(1 << 20);
        let (rt, io) = (self.rt.clone(), self.io.clone());
        self.rt.spawn(async move {
            let _ = serve_connection(&rt, &io, server_end, None).await;
        });
        let request = ClientRequest::from_url("ws://test/socket.io/?EIO=4&transport=websocket")
            .map_err(|_| failed("bad request"))?;
        let mut ws = crate::client(
            &self.rt,
            client_end,
            &request,
            Arc::new(ws::Config::default()),
        )
        .await
        .map_err(|e| failed(&e.to_string()))?;
        match ws.recv().await {
            Some(Ok(Message::Text(t))) if t.starts_with('0') => {}
            _ => return Err(failed("no Engine.IO open packet")),
        }
        let prefix = if nsp == "/" {
            String::new()
        } else {
            format!("{nsp},")
        };
        let connect = format!("40{prefix}{auth}");
        ws.send(connect.as_str())
            .await
            .map_err(|e| failed(&e.to_string()))?;
        let mut decoder = Decoder::default();
        let sid = loop {
            let packet = match read_packet(&mut ws, &mut decoder).await {
                Some(Frame::Packet(p)) => p,
                Some(Frame::Ping) => continue,
                None => return Err(failed("connection closed")),
            };
            match packet.kind {
                PacketType::Connect => {
                    let sid = packet
                        .data
                        .as_ref()
                        .and_then(|d| d.get("sid"))
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    let known = sid.and_then(|sid| {
                        lock(&self.io.inner.app)
                            .sockets
                            .get_key_value(sid.as_str())
                            .map(|(k, _)| k.clone())
                    });
                    match known {
                        Some(sid) => break sid,
                        None => return Err(failed("CONNECT with an unknown sid")),
                    }
                }
                PacketType::ConnectError => {
                    return Err(packet.data.unwrap_or_else(|| failed("refused")))
                }
                _ => continue,
            }
        };
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let reader = inbox.clone();
        self.rt
            .spawn(async move { read_loop(ws, decoder, reader).await });
        Ok(TestClient {
            io: self.io.clone(),
            sid,
            inbox,
            next_id: AtomicU64::new(0),
        })
    }

    /// Waits `duration` on the server's clock (virtual with [`crate::mem::Sim`]
    /// or a paused tokio clock).
    pub async fn sleep(&self, duration: Duration) {
        self.io.sleep(duration).await;
    }
}

enum Frame {
    Packet(sio::Packet),
    Ping,
}

/// The next Socket.IO packet (binary ones with their attachments).
async fn read_packet<C: crate::Clock + Send>(
    ws: &mut WebSocket<MemStream, C>,
    decoder: &mut Decoder,
) -> Option<Frame> {
    loop {
        let text = match ws.recv().await? {
            Ok(Message::Text(t)) => t,
            Ok(Message::Binary(b)) => {
                // An attachment (sent without the Engine.IO type byte over WebSocket).
                if let Ok(Some(p)) = decoder.feed(Data::Binary(b)) {
                    return Some(Frame::Packet(p));
                }
                continue;
            }
            Err(_) => return None,
        };
        match text.as_bytes().first() {
            Some(b'2') => {
                ws.send("3").await.ok()?;
                return Some(Frame::Ping);
            }
            Some(b'4') => {
                let body: String = text[1..].to_owned();
                if let Ok(Some(p)) = decoder.feed(Data::Text(body.into())) {
                    return Some(Frame::Packet(p));
                }
            }
            Some(b'1') => return None,
            _ => {}
        }
    }
}

async fn read_loop<C: crate::Clock + Send>(
    mut ws: WebSocket<MemStream, C>,
    mut decoder: Decoder,
    inbox: Arc<Mutex<Inbox>>,
) {
    loop {
        let frame = read_packet(&mut ws, &mut decoder).await;
        let mut b = lock(&inbox);
        match frame {
            Some(Frame::Ping) => continue,
            Some(Frame::Packet(p)) => match p.kind {
                PacketType::Event | PacketType::BinaryEvent => {
                    let mut args = match p.data {
                        Some(Value::Array(a)) => a.into_iter(),
                        _ => Vec::new().into_iter(),
                    };
                    let name = match args.next() {
                        Some(Value::String(n)) => n,
                        _ => continue,
                    };
                    if name == MARKER {
                        b.markers += 1;
                    } else {
                        b.events.push_back((name, args.collect()));
                    }
                }
                PacketType::Ack | PacketType::BinaryAck => {
                    let first = match p.data {
                        Some(Value::Array(a)) => a.into_iter().next().unwrap_or(Value::Null),
                        _ => Value::Null,
                    };
                    if let Some(id) = p.id {
                        b.acks.insert(id, first);
                    }
                }
                PacketType::Disconnect => b.closed = true,
                _ => {}
            },
            None => b.closed = true,
        }
        if let Some(w) = b.waker.take() {
            w.wake();
        }
        if b.closed {
            return;
        }
    }
}

impl TestClient {
    /// The socket's id.
    pub fn id(&self) -> &Sid {
        &self.sid
    }

    /// The server's handle of this client's socket (`None` once it has left).
    pub fn socket(&self) -> Option<Socket> {
        self.io.socket(&self.sid)
    }

    /// The socket is still connected (the server has not disconnected it).
    pub fn connected(&self) -> bool {
        !lock(&self.inbox).closed && self.io.socket(&self.sid).is_some()
    }

    /// Sends event `name` with `data` as its argument, asking for an ack, and
    /// returns what came of it once its handlers are done.
    pub async fn emit<T: Serialize>(&self, name: &str, data: T) -> Outcome {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.dispatch(name, data, Some(id)).await
    }

    /// [`emit`](Self::emit) without asking for an ack.
    pub async fn send<T: Serialize>(&self, name: &str, data: T) -> Outcome {
        self.dispatch(name, data, None).await
    }

    /// [`send`](Self::send) with any number of arguments (and binary ones).
    pub async fn send_payload(&self, name: &str, payload: Payload) -> Outcome {
        self.dispatch_payload(name, payload, None).await
    }

    async fn dispatch<T: Serialize>(&self, name: &str, data: T, ack: Option<u64>) -> Outcome {
        let payload = Payload::from_value(&data).unwrap_or_default();
        self.dispatch_payload(name, payload, ack).await
    }

    async fn dispatch_payload(&self, name: &str, payload: Payload, ack: Option<u64>) -> Outcome {
        let before = self.rooms();
        let in_flight = self
            .socket()
            .and_then(|s| s.with_state(|s| s.counts.clone()));
        self.io
            .on_socket_event(self.sid.clone(), name.to_owned(), payload, ack);
        // Its handlers are done when nothing of this socket is in flight.
        if let Some(count) = in_flight {
            while count.in_flight.load(Ordering::Relaxed) > 0 && self.io.socket(&self.sid).is_some()
            {
                self.io.sleep(Duration::from_millis(1)).await;
            }
        }
        let mut out = Outcome {
            emitted: self.settle().await,
            ..Outcome::default()
        };
        if let Some(id) = ack {
            out.ack = lock(&self.inbox).acks.remove(&id);
        }
        let after = self.rooms();
        out.joined = after
            .iter()
            .filter(|r| !before.contains(r))
            .cloned()
            .collect();
        out.left = before
            .iter()
            .filter(|r| !after.contains(r))
            .cloned()
            .collect();
        out.joined.sort();
        out.left.sort();
        out
    }

    fn rooms(&self) -> Vec<Room> {
        self.socket().map(|s| s.rooms()).unwrap_or_default()
    }

    /// Waits until the client has read everything the server sent it so far, and
    /// returns the events among it.
    async fn settle(&self) -> Vec<(String, Value)> {
        // Counted before the marker is sent: the reader may run on another thread.
        let want = lock(&self.inbox).markers + 1;
        let now = self.io.now();
        let sent = self
            .io
            .inner
            .host
            .with(|s| s.emit(now, &self.sid, MARKER, Payload::new()));
        if sent.is_ok() {
            self.wait_inbox(|b| (b.markers >= want || b.closed).then_some(()))
                .await;
        }
        lock(&self.inbox)
            .events
            .drain(..)
            .map(|(name, args)| (name, args.into_iter().next().unwrap_or(Value::Null)))
            .collect()
    }

    /// The events received and not yet returned (after reading everything the
    /// server has sent so far).
    pub async fn take_events(&self) -> Vec<(String, Value)> {
        self.settle().await
    }

    /// Waits, at most `within` on the server's clock, for an event `name`, and
    /// returns its first argument; events before it are dropped.
    pub async fn next_event(&self, name: &str, within: Duration) -> Option<Value> {
        let args = self.next_event_args(name, within).await?;
        Some(args.into_iter().next().unwrap_or(Value::Null))
    }

    /// [`next_event`](Self::next_event), returning all its arguments.
    pub async fn next_event_args(&self, name: &str, within: Duration) -> Option<Vec<Value>> {
        let found = self.wait_inbox(|b| {
            while let Some((n, args)) = b.events.pop_front() {
                if n == name {
                    return Some(Some(args));
                }
            }
            b.closed.then_some(None)
        });
        crate::before(found, self.io.sleep(within)).await.flatten()
    }

    /// Waits until `ready` finds what it waits for in the inbox (woken by the
    /// reader as each packet arrives).
    async fn wait_inbox<T>(&self, mut ready: impl FnMut(&mut Inbox) -> Option<T>) -> T {
        poll_fn(|cx| {
            let mut b = lock(&self.inbox);
            match ready(&mut b) {
                Some(v) => Poll::Ready(v),
                None => {
                    b.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// The client goes away: its connection is closed (by the server's side of it,
    /// so the disconnect handlers run with [`DisconnectReason::ForcedClose`]).
    pub async fn disconnect(self) {
        if let Some(s) = self.socket() {
            s.close_connection();
        }
        self.wait_inbox(|b| b.closed.then_some(())).await;
    }
}
