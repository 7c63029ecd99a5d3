//! [`SocketIo`]: the async Socket.IO server API, the same on every runtime.
//!
//! A [`Host`] drives the sans-IO [`sio::Server`]; its events are handed, in order and
//! as they happen, to the handlers registered here. A handler's future is polled once
//! where the event was produced; only if it has to wait is it spawned (on the server's
//! [`Runtime`]). So handlers that do not wait cost no task, and the handlers a
//! connection handler registers before its first `.await` are in place before the
//! socket's first event is dispatched.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{BoxFuture, Host, Runtime};
pub use wirestate_engine::eio::{
    ClientConfig as EioClientConfig, Config as EioConfig, Cors, Handshake,
};
use wirestate_engine::sio::{self, AckId, ConnectInfo};
pub use wirestate_engine::sio::{
    AckError, Broadcast, ClientConfig, ClientDisconnectReason, ClusterMessage, Config,
    DisconnectReason, Payload, Recovery, Room, Sid,
};
use wirestate_engine::IdMap;

/// What a handler's future may return: nothing, or a `Result` whose error is reported
/// to the client through the event's ack (if it asked for one).
pub trait HandlerResult: Send + 'static {
    /// `Err` with a message if the handler failed.
    fn into_result(self) -> Result<(), String>;
}

impl HandlerResult for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<T: Send + 'static, E: fmt::Display + Send + 'static> HandlerResult for Result<T, E> {
    fn into_result(self) -> Result<(), String> {
        self.map(drop).map_err(|e| e.to_string())
    }
}

/// Why an emit did not happen.
#[derive(Debug)]
pub enum EmitError {
    /// The data does not serialise to JSON.
    Serialize(serde_json::Error),
    /// The socket is gone.
    Disconnected,
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Serialize(e) => write!(f, "cannot serialise the payload: {e}"),
            Self::Disconnected => f.write_str("the socket is disconnected"),
        }
    }
}

impl std::error::Error for EmitError {}

impl From<serde_json::Error> for EmitError {
    fn from(e: serde_json::Error) -> Self {
        Self::Serialize(e)
    }
}

/// A connect middleware's refusal: the client gets CONNECT_ERROR with `message` and
/// `data` (its `connect_error` event's `err.message` and `err.data`).
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectError {
    /// The message.
    pub message: String,
    /// Extra data.
    pub data: Option<Value>,
}

impl ConnectError {
    /// A refusal with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            data: None,
        }
    }

    /// Adds `data`.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConnectError {}

/// A CONNECT waiting for the connect middleware.
#[derive(Clone)]
pub struct ConnectRequest {
    info: Arc<ConnectInfo>,
    data: Arc<Mutex<Value>>,
}

impl fmt::Debug for ConnectRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectRequest")
            .field("nsp", &self.info.nsp)
            .field("auth", &self.info.auth)
            .finish_non_exhaustive()
    }
}

impl ConnectRequest {
    /// The namespace.
    pub fn nsp(&self) -> &str {
        &self.info.nsp
    }

    /// The CONNECT packet's auth payload.
    pub fn auth(&self) -> &Value {
        &self.info.auth
    }

    /// The Engine.IO handshake: headers and query of the first request.
    pub fn handshake(&self) -> &Handshake {
        &self.info.handshake
    }

    /// Sets the socket's data (what [`Socket::data`] returns once connected).
    pub fn set_data(&self, data: Value) {
        *lock(&self.data) = data;
    }
}

type BoxResultFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>>;
type EventHandler = Arc<dyn Fn(Socket, Incoming) -> BoxResultFuture + Send + Sync>;
type ConnectionHandler = Arc<dyn Fn(Socket) -> BoxFuture + Send + Sync>;
type Middleware = Arc<
    dyn Fn(ConnectRequest) -> Pin<Box<dyn Future<Output = Result<(), ConnectError>> + Send>>
        + Send
        + Sync,
>;
type EventMiddleware = Arc<dyn Fn(&Socket, &str, &Payload) -> Result<(), String> + Send + Sync>;
type AnyHandler = Arc<dyn Fn(&Socket, &str, &Payload) + Send + Sync>;
type DisconnectHandler = Arc<dyn Fn(Socket, DisconnectReason) -> BoxFuture + Send + Sync>;
type ClusterHook = Arc<dyn Fn(ClusterMessage) + Send + Sync>;

#[derive(Default)]
struct NamespaceHandlers {
    middlewares: Mutex<Vec<Middleware>>,
    on_connection: Mutex<Option<ConnectionHandler>>,
}

#[derive(Default)]
struct SocketState {
    handlers: HashMap<String, EventHandler>,
    any_incoming: Vec<AnyHandler>,
    any_outgoing: Vec<AnyHandler>,
    middlewares: Vec<EventMiddleware>,
    on_disconnect: Vec<DisconnectHandler>,
    data: Value,
}

struct AckShared {
    answers: VecDeque<(Sid, Result<Payload, AckError>)>,
    done: bool,
    waker: Option<Waker>,
}

#[derive(Default)]
struct App {
    namespaces: HashMap<Arc<str>, Arc<NamespaceHandlers>>,
    dynamic: Vec<(sio::NamespacePredicate, Arc<NamespaceHandlers>)>,
    sockets: IdMap<Sid, (Arc<ConnectInfo>, bool, SocketState)>,
    /// Data set by the connect middleware, until the socket's Connected event.
    connecting: IdMap<Sid, Value>,
    /// Data of disconnected sockets kept for recovery.
    kept: IdMap<Sid, Value>,
    acks: IdMap<AckId, Arc<Mutex<AckShared>>>,
    cluster: Option<ClusterHook>,
}

struct Inner {
    host: Host<sio::Server>,
    app: Mutex<App>,
    stopping: AtomicBool,
    stop_wakers: Mutex<Vec<Waker>>,
}

/// A Socket.IO server: cheap to clone, usable from any task or thread.
///
/// Adapters build it (`wirestate_tokio::sio::server`, `wirestate_smol::sio::server`)
/// and serve its [`host`](Self::host) on a listener.
#[derive(Clone)]
pub struct SocketIo {
    inner: Arc<Inner>,
}

impl fmt::Debug for SocketIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketIo")
            .field("host", &self.inner.host)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // User code never runs under these locks, so a poisoned one only means a panic
    // in our own bookkeeping: keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SocketIo {
    /// A server with `options` on `rt` (which runs the handlers that have to wait);
    /// `seed` seeds ids (use OS randomness). Its timers run once the host's
    /// [`run_timers`](Host::run_timers) is spawned ([`server`] does both). As in
    /// Node's socket.io, the main namespace `/` always exists.
    pub fn new<R: Runtime>(rt: &R, options: impl Into<ServerOptions>, seed: [u8; 32]) -> Self {
        let ServerOptions { config, limits } = options.into();
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let weak = weak.clone();
            let hook: crate::host::EventHook<sio::Event> = Arc::new(move |event| {
                if let Some(inner) = weak.upgrade() {
                    SocketIo { inner }.on_event(event);
                }
            });
            Inner {
                host: Host::with_settings(
                    rt,
                    sio::Server::new(config, seed),
                    limits,
                    Vec::new(),
                    Some(hook),
                ),
                app: Mutex::new(App::default()),
                stopping: AtomicBool::new(false),
                stop_wakers: Mutex::new(Vec::new()),
            }
        });
        let io = Self { inner };
        io.of("/");
        io
    }

    /// The HTTP host to serve connections and timers with.
    pub fn host(&self) -> &Host<sio::Server> {
        &self.inner.host
    }

    fn now(&self) -> Instant {
        self.inner.host.now()
    }

    /// The namespace `name` (created if new): register its middleware and connection
    /// handler, or broadcast to it.
    pub fn of(&self, name: &str) -> Namespace {
        let name: Arc<str> = Arc::from(name);
        self.inner.host.with(|s| s.add_namespace(&name));
        let handlers = lock(&self.inner.app)
            .namespaces
            .entry(name.clone())
            .or_default()
            .clone();
        Namespace {
            io: self.clone(),
            name: Some(name),
            handlers,
        }
    }

    /// Dynamic namespaces: every name `matches` accepts is created when a client first
    /// connects to it, and shares this middleware and connection handler.
    pub fn of_dynamic(&self, matches: impl Fn(&str) -> bool + Send + Sync + 'static) -> Namespace {
        let matches: sio::NamespacePredicate = Arc::new(matches);
        let handlers = Arc::new(NamespaceHandlers::default());
        lock(&self.inner.app)
            .dynamic
            .push((matches.clone(), handlers.clone()));
        self.inner.host.with(|s| s.add_dynamic_namespace(matches));
        Namespace {
            io: self.clone(),
            name: None,
            handlers,
        }
    }

    /// Broadcasts to namespace `/` (`io.emit`, `io.to(...)`).
    pub fn sockets(&self) -> Operator {
        Operator::new(self.clone(), Broadcast::nsp("/"))
    }

    /// Targets every namespace.
    pub fn all_namespaces(&self) -> Operator {
        Operator::new(self.clone(), Broadcast::all_namespaces())
    }

    /// A connected socket by id.
    pub fn socket(&self, sid: &Sid) -> Option<Socket> {
        let app = lock(&self.inner.app);
        let (info, recovered, _) = app.sockets.get(sid)?;
        Some(Socket {
            io: self.clone(),
            sid: sid.clone(),
            info: info.clone(),
            recovered: *recovered,
            left_with: None,
        })
    }

    /// Connected sockets, all namespaces.
    pub fn socket_count(&self) -> usize {
        self.inner.host.inspect(|s| s.socket_count())
    }

    /// Receives the operations other servers of the cluster must repeat (with
    /// [`sio::Config::cluster`] on); a cluster driver forwards them.
    pub fn on_cluster(&self, hook: impl Fn(ClusterMessage) + Send + Sync + 'static) {
        lock(&self.inner.app).cluster = Some(Arc::new(hook));
    }

    /// Repeats another server's operation here.
    pub fn handle_cluster(&self, message: ClusterMessage) {
        let now = self.now();
        self.inner.host.with(|s| s.handle_cluster(now, message));
    }

    /// Graceful shutdown: new requests get 503, every socket gets a DISCONNECT packet
    /// and every session is closed; returns once all of them are gone and their last
    /// bytes written. The adapters' `serve` loops stop accepting.
    pub async fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        for w in lock(&self.inner.stop_wakers).drain(..) {
            w.wake();
        }
        let now = self.now();
        self.inner.host.with(|s| s.shutdown(now));
        self.inner.host.idle().await;
    }

    /// Resolves when [`shutdown`](Self::shutdown) starts (for accept loops).
    pub async fn stopping(&self) {
        poll_fn(|cx| {
            let mut wakers = lock(&self.inner.stop_wakers);
            if self.inner.stopping.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                wakers.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Runs `future` now; spawns it if it has to wait. Panics are contained.
    fn run(&self, mut future: BoxFuture) {
        let mut cx = Context::from_waker(Waker::noop());
        match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx))) {
            Ok(Poll::Ready(())) | Err(_) => {}
            Ok(Poll::Pending) => {
                let future = CatchPanic(future);
                self.inner.host.spawn(Box::pin(async move {
                    let _ = future.await;
                }))
            }
        }
    }

    fn handlers_for(&self, nsp: &str) -> Option<Arc<NamespaceHandlers>> {
        let app = lock(&self.inner.app);
        if let Some(h) = app.namespaces.get(nsp) {
            return Some(h.clone());
        }
        app.dynamic
            .iter()
            .find(|(m, _)| m(nsp))
            .map(|(_, h)| h.clone())
    }

    /// One event from the engine (called in order, never concurrently).
    fn on_event(&self, event: sio::Event) {
        match event {
            sio::Event::Connecting(info) => self.on_connecting(info),
            sio::Event::Connected {
                sid,
                info,
                recovered,
            } => {
                let info = Arc::new(*info);
                {
                    let mut app = lock(&self.inner.app);
                    let data = if recovered {
                        app.kept.remove(&sid)
                    } else {
                        app.connecting.remove(&sid)
                    };
                    let state = SocketState {
                        data: data.unwrap_or(Value::Null),
                        ..SocketState::default()
                    };
                    app.sockets
                        .insert(sid.clone(), (info.clone(), recovered, state));
                }
                let socket = Socket {
                    io: self.clone(),
                    sid,
                    info: info.clone(),
                    recovered,
                    left_with: None,
                };
                let handler = self
                    .handlers_for(&info.nsp)
                    .and_then(|h| lock(&h.on_connection).clone());
                if let Some(handler) = handler {
                    self.run(handler(socket));
                }
            }
            sio::Event::Event {
                sid,
                name,
                payload,
                ack,
            } => self.on_socket_event(sid, name, payload, ack),
            sio::Event::Ack { ack, sid, result } => {
                let shared = lock(&self.inner.app).acks.get(&ack).cloned();
                if let Some(shared) = shared {
                    let mut s = lock(&shared);
                    s.answers.push_back((sid, result));
                    if let Some(w) = s.waker.take() {
                        w.wake();
                    }
                }
            }
            sio::Event::AckDone { ack } => {
                let shared = lock(&self.inner.app).acks.remove(&ack);
                if let Some(shared) = shared {
                    let mut s = lock(&shared);
                    s.done = true;
                    if let Some(w) = s.waker.take() {
                        w.wake();
                    }
                }
            }
            sio::Event::Disconnected {
                sid, reason, kept, ..
            } => {
                let removed = {
                    let mut app = lock(&self.inner.app);
                    let removed = app.sockets.remove(&sid);
                    if let (true, Some((_, _, state))) = (kept, &removed) {
                        app.kept.insert(sid.clone(), state.data.clone());
                    }
                    removed
                };
                if let Some((info, recovered, state)) = removed {
                    let socket = Socket {
                        io: self.clone(),
                        sid,
                        info,
                        recovered,
                        left_with: Some(Arc::new(state.data)),
                    };
                    for h in state.on_disconnect {
                        self.run(h(socket.clone(), reason));
                    }
                }
            }
            sio::Event::Forgotten { sid } => {
                lock(&self.inner.app).kept.remove(&sid);
            }
            sio::Event::Cluster(message) => {
                let hook = lock(&self.inner.app).cluster.clone();
                if let Some(hook) = hook {
                    hook(message);
                }
            }
        }
    }

    fn on_connecting(&self, info: ConnectInfo) {
        let middlewares = self
            .handlers_for(&info.nsp)
            .map(|h| lock(&h.middlewares).clone())
            .unwrap_or_default();
        let request = ConnectRequest {
            info: Arc::new(info),
            data: Arc::new(Mutex::new(Value::Null)),
        };
        let io = self.clone();
        self.run(Box::pin(async move {
            let mut verdict = Ok(());
            for mw in middlewares {
                let fut = CatchPanic(mw(request.clone()));
                verdict = match fut.await {
                    Ok(v) => v,
                    Err(()) => Err(ConnectError::new("server error")),
                };
                if verdict.is_err() {
                    break;
                }
            }
            let info = &request.info;
            let now = io.now();
            match verdict {
                Ok(()) => {
                    let data = lock(&request.data).take();
                    io.inner.host.with(|s| {
                        if let Ok(sid) = s.accept(now, &info.session, &info.nsp) {
                            lock(&io.inner.app).connecting.insert(sid, data);
                        }
                    });
                }
                Err(e) => {
                    io.inner.host.with(|s| {
                        let _ = s.reject(&info.session, &info.nsp, &e.message, e.data);
                    });
                }
            }
        }));
    }

    fn on_socket_event(&self, sid: Sid, name: String, payload: Payload, ack: Option<u64>) {
        let found = {
            let app = lock(&self.inner.app);
            app.sockets.get(&sid).map(|(info, recovered, state)| {
                (
                    info.clone(),
                    *recovered,
                    state.middlewares.clone(),
                    state.any_incoming.clone(),
                    state.handlers.get(&name).cloned(),
                )
            })
        };
        let Some((info, recovered, middlewares, any, handler)) = found else {
            return;
        };
        let socket = Socket {
            io: self.clone(),
            sid: sid.clone(),
            info,
            recovered,
            left_with: None,
        };
        let slot = ack.map(|id| AckSlot {
            io: self.clone(),
            sid,
            id,
            sent: Arc::new(AtomicBool::new(false)),
        });
        for mw in &middlewares {
            let verdict = catch_unwind(AssertUnwindSafe(|| mw(&socket, &name, &payload)))
                .unwrap_or_else(|_| Err("server error".into()));
            if let Err(message) = verdict {
                if let Some(slot) = &slot {
                    slot.fail(&message);
                }
                return;
            }
        }
        for h in &any {
            let _ = catch_unwind(AssertUnwindSafe(|| h(&socket, &name, &payload)));
        }
        let Some(handler) = handler else {
            return;
        };
        let incoming = Incoming {
            name,
            payload,
            ack: slot.clone(),
        };
        let fut = CatchPanic(handler(socket, incoming));
        self.run(Box::pin(async move {
            let outcome = match fut.await {
                Ok(Ok(())) => return,
                Ok(Err(message)) => message,
                Err(()) => "server error".to_owned(),
            };
            if let Some(slot) = slot {
                slot.fail(&outcome);
            }
        }));
    }

    fn broadcast(&self, target: &Broadcast, event: &str, payload: Payload) -> usize {
        let now = self.now();
        self.inner
            .host
            .with(|s| s.broadcast(now, target, event, payload))
    }

    fn broadcast_with_ack(
        &self,
        target: &Broadcast,
        event: &str,
        payload: Payload,
        timeout: Option<Duration>,
    ) -> AckStream {
        let now = self.now();
        let shared = Arc::new(Mutex::new(AckShared {
            answers: VecDeque::new(),
            done: false,
            waker: None,
        }));
        self.inner.host.with(|s| {
            let id = s.broadcast_with_ack(now, target, event, payload, timeout);
            lock(&self.inner.app).acks.insert(id, shared.clone());
        });
        AckStream { shared }
    }
}

/// Turns a panic in a future into `Err(())`.
struct CatchPanic<F>(F);

impl<F: Future + Unpin> Future for CatchPanic<F> {
    type Output = Result<F::Output, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

/// The way back to a client that asked for an ack.
#[derive(Clone)]
struct AckSlot {
    io: SocketIo,
    sid: Sid,
    id: u64,
    sent: Arc<AtomicBool>,
}

impl AckSlot {
    fn send(&self, payload: Payload) -> Result<(), EmitError> {
        if self.sent.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.io
            .inner
            .host
            .with(|s| s.ack(&self.sid, self.id, payload))
            .map_err(|_| EmitError::Disconnected)
    }

    fn fail(&self, message: &str) {
        let mut m = Map::new();
        m.insert("status".into(), Value::from("error"));
        m.insert("error".into(), Value::from(message));
        let _ = self.send(Payload::new().arg(Value::Object(m)));
    }
}

/// An event from a client, as a handler gets it.
pub struct Incoming {
    name: String,
    payload: Payload,
    ack: Option<AckSlot>,
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("name", &self.name)
            .field("payload", &self.payload)
            .field("wants_ack", &self.ack.is_some())
            .finish()
    }
}

impl Incoming {
    /// The event name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// All arguments (binary ones as placeholders, see [`Payload::get_bin`]).
    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// Takes the arguments.
    pub fn take_payload(&mut self) -> Payload {
        std::mem::take(&mut self.payload)
    }

    /// The first argument, deserialised.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        self.payload.get(0)
    }

    /// The client asked for an ack.
    pub fn wants_ack(&self) -> bool {
        self.ack.is_some()
    }

    /// Answers the client's ack with one argument (no-op if it asked for none or was
    /// answered already).
    pub fn ack<T: Serialize + ?Sized>(&self, data: &T) -> Result<(), EmitError> {
        self.ack_payload(Payload::from_value(data)?)
    }

    /// Answers the client's ack with these arguments.
    pub fn ack_payload(&self, payload: Payload) -> Result<(), EmitError> {
        match &self.ack {
            Some(slot) => slot.send(payload),
            None => Ok(()),
        }
    }
}

/// One socket: a client's connection to one namespace.
#[derive(Clone)]
pub struct Socket {
    io: SocketIo,
    sid: Sid,
    info: Arc<ConnectInfo>,
    recovered: bool,
    /// The data it had when it left (for disconnect handlers).
    left_with: Option<Arc<Value>>,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.sid)
            .field("nsp", &self.info.nsp)
            .finish_non_exhaustive()
    }
}

impl Socket {
    /// The socket id.
    pub fn id(&self) -> &Sid {
        &self.sid
    }

    /// The namespace.
    pub fn nsp(&self) -> &str {
        &self.info.nsp
    }

    /// The CONNECT auth payload.
    pub fn auth(&self) -> &Value {
        &self.info.auth
    }

    /// The Engine.IO handshake (first request's headers and query).
    pub fn handshake(&self) -> &Handshake {
        &self.info.handshake
    }

    /// Its state was recovered after a reconnection (id, rooms, data, missed packets).
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    /// The server handle.
    pub fn io(&self) -> &SocketIo {
        &self.io
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut SocketState) -> R) -> Option<R> {
        let mut app = lock(&self.io.inner.app);
        app.sockets.get_mut(&self.sid).map(|(_, _, s)| f(s))
    }

    /// Handles event `name` (replacing an earlier handler for it). The handler may be
    /// async; a returned error or a panic answers the client's ack, if it asked for
    /// one, with `{"status":"error","error":message}`.
    pub fn on<F, Fut>(&self, name: &str, handler: F)
    where
        F: Fn(Socket, Incoming) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        let handler: EventHandler = Arc::new(move |s, i| {
            let fut = handler(s, i);
            Box::pin(async move { fut.await.into_result() })
        });
        self.with_state(|s| s.handlers.insert(name.to_owned(), handler));
    }

    /// Removes the handler for `name`.
    pub fn off(&self, name: &str) {
        self.with_state(|s| s.handlers.remove(name));
    }

    /// Sees every incoming event first (`onAny`).
    pub fn on_any(&self, f: impl Fn(&Socket, &str, &Payload) + Send + Sync + 'static) {
        self.with_state(|s| s.any_incoming.push(Arc::new(f)));
    }

    /// Sees every event emitted to this socket with [`emit`](Self::emit)
    /// (`onAnyOutgoing`).
    pub fn on_any_outgoing(&self, f: impl Fn(&Socket, &str, &Payload) + Send + Sync + 'static) {
        self.with_state(|s| s.any_outgoing.push(Arc::new(f)));
    }

    /// A per-event middleware (`socket.use`): `Err(message)` drops the event and
    /// answers its ack, if any, with the error object.
    pub fn use_event(
        &self,
        f: impl Fn(&Socket, &str, &Payload) -> Result<(), String> + Send + Sync + 'static,
    ) {
        self.with_state(|s| s.middlewares.push(Arc::new(f)));
    }

    /// Called once the socket has left.
    pub fn on_disconnect<F, Fut>(&self, f: F)
    where
        F: Fn(Socket, DisconnectReason) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.with_state(|s| {
            s.on_disconnect
                .push(Arc::new(move |sock, reason| Box::pin(f(sock, reason))))
        });
    }

    /// The socket's data (set by the connect middleware or [`set_data`](Self::set_data);
    /// recovered with the socket).
    pub fn data(&self) -> Value {
        self.with_state(|s| s.data.clone())
            .or_else(|| self.left_with.as_deref().cloned())
            .unwrap_or(Value::Null)
    }

    /// Replaces the socket's data.
    pub fn set_data(&self, data: Value) {
        self.with_state(|s| s.data = data);
    }

    /// Emits `name` with one argument, `data`. Like every emit, returns how many
    /// sockets it reached: here 1.
    pub fn emit<T: Serialize + ?Sized>(&self, name: &str, data: &T) -> Result<usize, EmitError> {
        self.emit_payload(name, Payload::from_value(data)?)
    }

    /// Emits `name` with these arguments (JSON and binary); 1, the socket reached.
    pub fn emit_payload(&self, name: &str, payload: Payload) -> Result<usize, EmitError> {
        let outgoing = self
            .with_state(|s| s.any_outgoing.clone())
            .unwrap_or_default();
        for h in &outgoing {
            let _ = catch_unwind(AssertUnwindSafe(|| h(self, name, &payload)));
        }
        let now = self.io.now();
        self.io
            .inner
            .host
            .with(|s| s.emit(now, &self.sid, name, payload))
            .map(|()| 1)
            .map_err(|_| EmitError::Disconnected)
    }

    /// Emits `name` and waits for the client's ack (`emitWithAck`), at most `timeout`.
    pub async fn emit_with_ack(
        &self,
        name: &str,
        payload: Payload,
        timeout: Option<Duration>,
    ) -> Result<Payload, AckError> {
        let mut target =
            Broadcast::nsp(self.info.nsp.clone()).to(Arc::<str>::from(self.sid.as_str()));
        target.local = true;
        let mut stream = self.io.broadcast_with_ack(&target, name, payload, timeout);
        match stream.next().await {
            Some((_, result)) => result,
            None => Err(AckError::Disconnected),
        }
    }

    /// Joins rooms.
    pub fn join<I, R>(&self, rooms: I)
    where
        I: IntoIterator<Item = R>,
        R: Into<Room>,
    {
        let rooms: Vec<Room> = rooms.into_iter().map(Into::into).collect();
        self.io.inner.host.with(|s| {
            let _ = s.join(&self.sid, &rooms);
        });
    }

    /// Leaves a room.
    pub fn leave(&self, room: &str) {
        self.io.inner.host.with(|s| {
            let _ = s.leave(&self.sid, room);
        });
    }

    /// The socket's rooms (its own id room included).
    pub fn rooms(&self) -> Vec<Room> {
        self.io
            .inner
            .host
            .inspect(|s| s.rooms(&self.sid).map(|r| r.cloned().collect()))
            .unwrap_or_default()
    }

    /// Broadcasts to room `room` of this namespace, except to this socket.
    pub fn to(&self, room: impl Into<Room>) -> Operator {
        self.broadcast().to(room)
    }

    /// Broadcasts to every other socket of this namespace.
    pub fn broadcast(&self) -> Operator {
        Operator::new(
            self.io.clone(),
            Broadcast::nsp(self.info.nsp.clone()).except(Arc::<str>::from(self.sid.as_str())),
        )
    }

    /// Leaves the namespace (the client gets DISCONNECT); with `close`, the client's
    /// whole connection is closed.
    pub fn disconnect(&self, close: bool) {
        let now = self.io.now();
        self.io.inner.host.with(|s| {
            let _ = s.disconnect(now, &self.sid, close);
        });
    }

    /// Closes the client's connection without a DISCONNECT packet
    /// (`socket.conn.close()`): the client reconnects by itself, and recovers its
    /// state if recovery is on.
    pub fn close_connection(&self) {
        let now = self.io.now();
        self.io.inner.host.with(|s| {
            let _ = s.close_connection(now, &self.sid);
        });
    }

    /// The socket is still connected.
    pub fn connected(&self) -> bool {
        lock(&self.io.inner.app).sockets.contains_key(&self.sid)
    }
}

/// A namespace: its connect middleware, its connection handler, and broadcasts to it.
#[derive(Clone)]
pub struct Namespace {
    io: SocketIo,
    name: Option<Arc<str>>,
    handlers: Arc<NamespaceHandlers>,
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Namespace {
    /// Adds a connect middleware (`io.use`): it sees the auth payload and handshake
    /// and accepts (`Ok`) or refuses with a [`ConnectError`]. Middlewares run in the
    /// order added; the first refusal wins.
    pub fn middleware<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(ConnectRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ConnectError>> + Send + 'static,
    {
        lock(&self.handlers.middlewares).push(Arc::new(move |r| Box::pin(f(r))));
        self
    }

    /// Sets the connection handler: register the socket's event handlers here.
    pub fn on_connection<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(Socket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        *lock(&self.handlers.on_connection) = Some(Arc::new(move |s| Box::pin(f(s))));
        self
    }

    fn target(&self) -> Broadcast {
        match &self.name {
            Some(n) => Broadcast::nsp(n.clone()),
            // A dynamic namespace as a whole has no single name; address its children
            // with `io.of(name)`.
            None => Broadcast::nsp(Arc::<str>::from("")),
        }
    }

    /// Broadcasts to every socket of the namespace.
    pub fn sockets(&self) -> Operator {
        Operator::new(self.io.clone(), self.target())
    }

    /// Broadcasts to a room of the namespace.
    pub fn to(&self, room: impl Into<Room>) -> Operator {
        self.sockets().to(room)
    }

    /// Emits to every socket of the namespace; returns how many local sockets it
    /// reached.
    pub fn emit<T: Serialize + ?Sized>(&self, name: &str, data: &T) -> Result<usize, EmitError> {
        self.sockets().emit(name, data)
    }

    /// [`emit`](Self::emit) with these arguments (JSON and binary).
    pub fn emit_payload(&self, name: &str, payload: Payload) -> Result<usize, EmitError> {
        self.sockets().emit_payload(name, payload)
    }
}

/// The broadcast operators: which sockets, and how (`to`, `except`, `volatile`,
/// `local`, `compress`, `timeout`).
#[derive(Clone)]
pub struct Operator {
    io: SocketIo,
    target: Broadcast,
    timeout: Option<Duration>,
}

impl fmt::Debug for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operator")
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Operator {
    fn new(io: SocketIo, target: Broadcast) -> Self {
        Self {
            io,
            target,
            timeout: None,
        }
    }

    /// Adds a room (`to` / `in`).
    pub fn to(mut self, room: impl Into<Room>) -> Self {
        self.target.rooms.push(room.into());
        self
    }

    /// Excludes a room.
    pub fn except(mut self, room: impl Into<Room>) -> Self {
        self.target.except.push(room.into());
        self
    }

    /// Drops the packet for clients that cannot take it now.
    pub fn volatile(mut self) -> Self {
        self.target.volatile = true;
        self
    }

    /// This server only, not the cluster.
    pub fn local(mut self) -> Self {
        self.target.local = true;
        self
    }

    /// WebSocket compression for this packet.
    pub fn compress(mut self, yes: bool) -> Self {
        self.target.compress = Some(yes);
        self
    }

    /// How long [`emit_with_ack`](Self::emit_with_ack) waits.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Emits `name` with one argument; returns how many local sockets it reached.
    pub fn emit<T: Serialize + ?Sized>(&self, name: &str, data: &T) -> Result<usize, EmitError> {
        self.emit_payload(name, Payload::from_value(data)?)
    }

    /// Emits `name` with these arguments, encoded once for every recipient; returns
    /// how many local sockets it reached.
    pub fn emit_payload(&self, name: &str, payload: Payload) -> Result<usize, EmitError> {
        Ok(self.io.broadcast(&self.target, name, payload))
    }

    /// Emits `name` and collects every recipient's ack until all have answered or
    /// the [`timeout`](Self::timeout) passes (those left get [`AckError::Timeout`]).
    pub fn emit_with_ack(&self, name: &str, payload: Payload) -> AckStream {
        self.io
            .broadcast_with_ack(&self.target, name, payload, self.timeout)
    }

    /// The local sockets selected (`fetchSockets`).
    pub fn fetch_sockets(&self) -> Vec<Socket> {
        let sids = self
            .io
            .inner
            .host
            .inspect(|s| s.fetch_sockets(&self.target));
        sids.iter().filter_map(|sid| self.io.socket(sid)).collect()
    }

    /// The selected sockets join `rooms` (`socketsJoin`).
    pub fn sockets_join<I, R>(&self, rooms: I)
    where
        I: IntoIterator<Item = R>,
        R: Into<Room>,
    {
        let rooms: Vec<Room> = rooms.into_iter().map(Into::into).collect();
        self.io.inner.host.with(|s| s.join_by(&self.target, &rooms));
    }

    /// The selected sockets leave `rooms` (`socketsLeave`).
    pub fn sockets_leave<I, R>(&self, rooms: I)
    where
        I: IntoIterator<Item = R>,
        R: Into<Room>,
    {
        let rooms: Vec<Room> = rooms.into_iter().map(Into::into).collect();
        self.io
            .inner
            .host
            .with(|s| s.leave_by(&self.target, &rooms));
    }

    /// Disconnects the selected sockets (`disconnectSockets`).
    pub fn disconnect_sockets(&self, close: bool) {
        let now = self.io.now();
        self.io
            .inner
            .host
            .with(|s| s.disconnect_by(now, &self.target, close));
    }
}

/// The acks of an [`Operator::emit_with_ack`]: one `(socket, answer)` per recipient,
/// ending once every recipient has answered, timed out or left.
pub struct AckStream {
    shared: Arc<Mutex<AckShared>>,
}

impl fmt::Debug for AckStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckStream").finish_non_exhaustive()
    }
}

impl AckStream {
    /// The next answer, or `None` once all are in.
    pub async fn next(&mut self) -> Option<(Sid, Result<Payload, AckError>)> {
        poll_fn(|cx| self.poll_answer(cx)).await
    }

    /// Every answer.
    pub async fn collect(mut self) -> Vec<(Sid, Result<Payload, AckError>)> {
        let mut out = Vec::new();
        while let Some(a) = self.next().await {
            out.push(a);
        }
        out
    }

    fn poll_answer(&self, cx: &mut Context<'_>) -> Poll<Option<(Sid, Result<Payload, AckError>)>> {
        let mut s = lock(&self.shared);
        if let Some(a) = s.answers.pop_front() {
            return Poll::Ready(Some(a));
        }
        if s.done {
            return Poll::Ready(None);
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl futures_core::Stream for AckStream {
    type Item = (Sid, Result<Payload, AckError>);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_answer(cx)
    }
}

pub use crate::host::HttpLimits;
pub use crate::sio_client::{
    ClientAck, ClientConnectError, ClientEmitError, ClientSocket, IoOptions, SioClient, TimedSocket,
};

/// The settings of a Socket.IO server, given once to [`server`] (a plain [`Config`]
/// converts into them).
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// The Socket.IO (and Engine.IO) protocol settings.
    pub config: Config,
    /// The HTTP limits.
    pub limits: HttpLimits,
}

impl From<Config> for ServerOptions {
    fn from(config: Config) -> Self {
        Self {
            config,
            limits: HttpLimits::default(),
        }
    }
}

impl ServerOptions {
    /// Sets the HTTP limits.
    pub fn http_limits(mut self, limits: HttpLimits) -> Self {
        self.limits = limits;
        self
    }
}

/// A Socket.IO server on `rt` with `options` (a [`Config`], or [`ServerOptions`] for
/// HTTP limits) and OS-seeded ids; its timer task is spawned on `rt`, and so are
/// handlers that have to wait.
pub fn server<R: Runtime>(rt: &R, options: impl Into<ServerOptions>) -> std::io::Result<SocketIo> {
    let io = SocketIo::new(rt, options, crate::os_seed()?);
    let host = io.host().clone();
    let clock = rt.clock();
    rt.spawn(async move { host.run_timers(clock).await });
    Ok(io)
}

/// socket.io-client's `io(url, options)` on `rt`: the socket of the URL's namespace
/// (`http://host:port/namespace`, `/` if none); the client (connection, reconnection,
/// handlers) runs on a task of `rt`. A bad URL is [`crate::Error::Url`].
pub fn io<R: Runtime>(rt: &R, url: &str, options: IoOptions) -> Result<ClientSocket, crate::Error> {
    let (url, nsp) = crate::sio_client::split_url(url)?;
    let client = SioClient::new(rt, options.config, crate::os_seed()?);
    let socket = client.socket(&nsp, options.auth);
    rt.spawn(client.drive(rt.clone(), url, crate::os_seed()?));
    Ok(socket)
}

/// Serves one connection over any transport, with its peer's address when it has one.
pub async fn serve_connection<R: Runtime, T: crate::Transport>(
    rt: &R,
    io: &SocketIo,
    stream: T,
    peer_addr: Option<std::net::SocketAddr>,
) -> std::io::Result<()> {
    use tracing::Instrument;
    let span = tracing::debug_span!("sio-conn", peer = ?peer_addr);
    io.host()
        .serve_connection(stream, rt.clock(), peer_addr)
        .instrument(span)
        .await?;
    Ok(())
}

/// Accepts connections on `listener`, serving each on its own task, until
/// [`SocketIo::shutdown`] starts.
pub async fn serve<R: Runtime>(rt: &R, io: SocketIo, listener: R::Listener) -> std::io::Result<()> {
    crate::accept_loop(rt, &listener, io.stopping(), |stream, peer| {
        let (rt, io) = (rt.clone(), io.clone());
        async move {
            if let Err(e) = serve_connection(&rt, &io, stream, Some(peer)).await {
                tracing::debug!(error = %e, "socket.io connection ended with an error");
            }
        }
    })
    .await;
    Ok(())
}
