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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    AckError, Activity, Broadcast, ClientConfig, ClientDisconnectReason, ClusterMessage, Config,
    DisconnectReason, Payload, Recovery, Room, Sid,
};
use wirestate_engine::IdMap;

#[cfg(feature = "admin")]
mod admin;
mod challenge;
pub mod client;
mod cluster;
mod controller;
mod emitter;
mod forwarding;
mod jobs;
mod operator;
mod shards;
mod socket;
pub mod testing;
mod users;
mod validate;
mod vocab;

pub use crate::bus::LocalBus;
#[cfg(feature = "admin")]
pub use admin::{AdminError, AdminUi, ADMIN_NAMESPACE, MAX_ADMIN_SESSIONS, MAX_CHECKS_PER_SECOND};
pub use challenge::{AuthChallenge, AuthState, Authenticated};
pub use cluster::{
    attach as attach_redis, attach_local, RedisCluster, RedisOptions, RemoteSocket, ServerAck,
};
pub use controller::{Controller, EventInfo, Handler, JobLimits};
pub use emitter::{redis_emitter, EmitterError, RedisEmitter};
pub use jobs::{JOB_ERROR_EVENT, JOB_RESULT_EVENT};
pub use operator::{AckAnswer, AckStream, Namespace, Operator};
pub use shards::{serve_sharded, serve_sharded_accepting, Shards};
use socket::AckSlot;
pub use socket::{Incoming, Socket};
pub use users::USER_ROOM_PREFIX;
pub use validate::{ajv_error, Typed, Validate, VALIDATION_PAYLOAD_ERROR};
#[cfg(feature = "jsonschema")]
pub use validate::{Schema, SchemaError};
pub use vocab::{
    AppError, ConnectError, ConnectRequest, EmitError, HandlerError, HandlerResult,
    INTERNAL_SERVER_ERROR, INTERNAL_SERVER_ERROR_MESSAGE,
};
pub use wirestate_engine::redis::{
    Config as RedisConfig, Mode as RedisMode, RequestError, SubscriptionMode,
};

type BoxResultFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'static>>;
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
type ObserveHook = Arc<dyn Fn(&SocketIo, Observed<'_>) + Send + Sync>;
type ErrorHook = Arc<dyn Fn(&Socket, &str, &HandlerError) -> Option<Value> + Send + Sync>;

#[derive(Default)]
struct NamespaceHandlers {
    middlewares: Mutex<Vec<Middleware>>,
    on_connection: Mutex<Option<ConnectionHandler>>,
    /// Hooks before every event ([`Namespace::hook`]).
    hooks: Mutex<Vec<controller::Hook>>,
    /// `hooks` is not empty.
    has_hooks: AtomicBool,
    /// Controllers' handlers by event name.
    events: Mutex<HashMap<String, Arc<Handler>>>,
    /// The post-connect auth challenge ([`Namespace::auth_challenge`]).
    challenge: Mutex<Option<Arc<challenge::Challenge>>>,
}

struct SocketState {
    /// By event name; the name is shared with each of its events' runs (no copy per
    /// event).
    handlers: wirestate_engine::SmallMap<Arc<str>, EventHandler>,
    /// Out of line: most sockets have none (allocated by the first one registered).
    hooks: Option<Box<SocketHooks>>,
    data: Data,
    /// Its handlers running now and its queued jobs (one allocation for both).
    counts: Arc<Counts>,
    /// When it connected (wall clock, for its handshake's `issued`).
    since: std::time::SystemTime,
    /// How many queued jobs it started.
    jobs_started: u64,
    /// The authenticated user ([`Socket::set_user`]).
    user: Option<Arc<str>>,
    /// Where it is in the auth challenge.
    auth: AuthState,
    /// Its namespace's hooks and handlers.
    namespace: Option<Arc<NamespaceHandlers>>,
}

/// A socket's catch-all handlers, event middlewares and disconnect handlers.
#[derive(Default)]
struct SocketHooks {
    any_incoming: Vec<AnyHandler>,
    any_outgoing: Vec<AnyHandler>,
    middlewares: Vec<EventMiddleware>,
    on_disconnect: Vec<DisconnectHandler>,
}

/// A socket's data ([`Socket::data`]): out of line, as most sockets have none and a
/// `Value` is 72 bytes (with `serde_json`'s `preserve_order`). `Null` is none.
#[derive(Default)]
struct Data(Option<Box<Value>>);

impl Data {
    fn new(value: Value) -> Self {
        Self((!value.is_null()).then(|| Box::new(value)))
    }

    /// A copy of the value.
    fn get(&self) -> Value {
        self.0.as_deref().cloned().unwrap_or(Value::Null)
    }

    fn into_value(self) -> Value {
        self.0.map_or(Value::Null, |v| *v)
    }
}

impl SocketState {
    /// The hooks, to add one.
    fn hooks_mut(&mut self) -> &mut SocketHooks {
        self.hooks.get_or_insert_with(Box::default)
    }
}

impl Default for SocketState {
    fn default() -> Self {
        Self {
            handlers: wirestate_engine::SmallMap::default(),
            hooks: None,
            data: Data::default(),
            counts: Arc::default(),
            since: std::time::SystemTime::now(),
            jobs_started: 0,
            user: None,
            auth: AuthState::Authenticated,
            namespace: None,
        }
    }
}

/// One running event handler, counted while it lives.
struct InFlight(Arc<Counts>);

/// What a socket has running, shared with what runs.
#[derive(Default)]
struct Counts {
    /// Its event handlers running now.
    in_flight: AtomicUsize,
    /// Its queued jobs (see [`Handler::queued`]).
    jobs: AtomicUsize,
}

impl InFlight {
    fn enter(counts: Arc<Counts>) -> Self {
        counts.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(counts)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a disconnected socket keeps for its recovery.
struct Kept {
    data: Value,
    user: Option<Arc<str>>,
    auth: AuthState,
}

struct AckShared {
    answers: VecDeque<AckAnswer>,
    /// The local recipients are done.
    done: bool,
    /// Requests to other servers whose recipients are not all done.
    remote: usize,
    waker: Option<Waker>,
}

#[derive(Default)]
struct App {
    namespaces: HashMap<Arc<str>, Arc<NamespaceHandlers>>,
    dynamic: Vec<(sio::NamespacePredicate, Arc<NamespaceHandlers>)>,
    sockets: IdMap<Sid, Box<(Arc<ConnectInfo>, bool, SocketState)>>,
    /// Data set by the connect middleware, until the socket's Connected event.
    connecting: IdMap<Sid, Value>,
    /// What disconnected sockets kept for recovery: their data, user and place in
    /// the auth challenge.
    kept: IdMap<Sid, Kept>,
    acks: IdMap<AckId, Arc<Mutex<AckShared>>>,
    cluster: Option<ClusterHook>,
    redis: Option<Arc<cluster::Shared>>,
    /// `serverSideEmit` handlers by namespace and event.
    server_events: HashMap<(Arc<str>, String), cluster::ServerEventHandler>,
    /// Sockets per user, for presence.
    users: users::Users,
    /// What watches the server ([`SocketIo::observe`]).
    observers: Vec<ObserveHook>,
    /// Event names that sockets' handlers are registered for.
    names: Names,
    /// Sockets' event handlers that capture nothing, by type (see [`Socket::on`]): as
    /// many as the program has such closures.
    stateless: HashMap<std::any::TypeId, EventHandler>,
}

/// The event names of sockets' handlers, each kept once: every socket registers the
/// same few (`socket.on("message", ..)` on each connection), and each would otherwise
/// hold copies of its own. Bounded: past [`Names::MAX`] names, a name is not kept
/// here (each handler then holds its own copy, as a name made up per socket would).
#[derive(Default)]
struct Names(Vec<Arc<str>>);

impl Names {
    const MAX: usize = 64;

    /// `name`, shared with the handlers registered for it before.
    fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(kept) = self.0.iter().find(|n| ***n == *name) {
            return kept.clone();
        }
        let name: Arc<str> = name.into();
        if self.0.len() < Self::MAX {
            self.0.push(name.clone());
        }
        name
    }
}

/// What an observer ([`SocketIo::observe`]) sees: sockets as they connect and leave,
/// and the server's [`Activity`] (sessions opening, upgrading and closing; sockets
/// joining and leaving rooms).
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Observed<'a> {
    /// A socket connected (before its namespace's connection handler runs).
    Connected(&'a Socket),
    /// A socket left its namespace.
    Disconnected(&'a Socket, DisconnectReason),
    /// Sessions and room memberships.
    Server(&'a Activity),
}

struct Inner {
    host: Host<sio::Server>,
    app: Mutex<App>,
    stopping: AtomicBool,
    stop_wakers: Mutex<crate::Waiters>,
    max_in_flight: usize,
    /// Internal errors' own name and message go to clients.
    debug_errors: bool,
    /// Renders handler errors (the global error hook).
    error_hook: Mutex<Option<ErrorHook>>,
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

/// A [`SocketIo`] held weakly ([`SocketIo::downgrade`]): for hooks the server itself
/// keeps, which would otherwise keep it alive for ever.
#[derive(Clone)]
pub struct WeakSocketIo(Weak<Inner>);

impl fmt::Debug for WeakSocketIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakSocketIo").finish_non_exhaustive()
    }
}

impl WeakSocketIo {
    /// The server, if it is still alive.
    pub fn upgrade(&self) -> Option<SocketIo> {
        self.0.upgrade().map(|inner| SocketIo { inner })
    }
}

/// Milliseconds since the Unix epoch (0 for a time before it): the wall-clock
/// timestamps of Node's wire formats (`issued`, `time`, dates).
fn unix_millis(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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
        let ServerOptions {
            config,
            limits,
            max_in_flight,
            router,
            debug_errors,
        } = options.into();
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
                    crate::host::Routes {
                        endpoint: true,
                        exact: Vec::new(),
                        router,
                    },
                    Some(hook),
                ),
                app: Mutex::new(App::default()),
                stopping: AtomicBool::new(false),
                stop_wakers: Mutex::default(),
                max_in_flight,
                debug_errors,
                error_hook: Mutex::new(None),
            }
        });
        let io = Self { inner };
        io.of("/");
        io
    }

    /// A weak handle: what a hook registered on this server should capture instead of
    /// the server itself (see [`WeakSocketIo`]).
    pub fn downgrade(&self) -> WeakSocketIo {
        WeakSocketIo(Arc::downgrade(&self.inner))
    }

    /// The HTTP host to serve connections and timers with.
    pub fn host(&self) -> &Host<sio::Server> {
        &self.inner.host
    }

    fn now(&self) -> Instant {
        self.inner.host.now()
    }

    /// Waits `duration` on the server's runtime (virtual time on
    /// [`crate::mem::Sim`]): a timer for handlers written once for every runtime.
    pub fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static {
        self.inner.host.sleep_until(self.now() + duration)
    }

    /// The namespace `name` (created if new): register its middleware and connection
    /// handler, or broadcast to it.
    pub fn of(&self, name: &str) -> Namespace {
        let name: Arc<str> = Arc::from(name);
        self.inner.host.with(|s| s.add_namespace(&name));
        if let Some(redis) = self.redis() {
            redis.add_namespace(self, &name);
        }
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
        let (info, recovered, _) = &**app.sockets.get(sid)?;
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

    /// Watches the server: `hook` sees every socket connect and leave, in every
    /// namespace, and the server's [`Activity`]; what monitoring tools are built on
    /// (the `admin` feature's `@socket.io/admin-ui` support is one). The hook runs in
    /// the server's event dispatch: it must not wait or block.
    pub fn observe(&self, hook: impl Fn(&SocketIo, Observed<'_>) + Send + Sync + 'static) {
        lock(&self.inner.app).observers.push(Arc::new(hook));
        self.inner.host.with(|s| s.set_activity_events(true));
    }

    fn notify(&self, observed: Observed<'_>) {
        let observers = lock(&self.inner.app).observers.clone();
        for hook in observers {
            if catch_unwind(AssertUnwindSafe(|| hook(self, observed))).is_err() {
                tracing::warn!("an observer panicked");
            }
        }
    }

    /// Calls `tick` every `interval` on the server's runtime until shutdown (the first
    /// tick after it ends the loop, as does dropping the server: the loop holds it
    /// weakly).
    pub(crate) fn repeat(&self, interval: Duration, tick: impl Fn(&SocketIo) + Send + 'static) {
        let weak = Arc::downgrade(&self.inner);
        let host = self.inner.host.clone();
        self.inner.host.spawn(Box::pin(async move {
            loop {
                host.sleep_until(host.now() + interval).await;
                let Some(io) = weak.upgrade().map(|inner| SocketIo { inner }) else {
                    return;
                };
                if io.inner.stopping.load(Ordering::SeqCst) {
                    return;
                }
                tick(&io);
            }
        }));
    }

    /// Repeats another server's operation here.
    pub fn handle_cluster(&self, message: ClusterMessage) {
        let now = self.now();
        self.inner.host.with(|s| s.handle_cluster(now, message));
    }

    /// Graceful shutdown: new sessions get 503, every socket gets a DISCONNECT packet
    /// and every session is closed; returns once all of them are gone and their last
    /// bytes written. The adapters' `serve` loops return once it is done.
    pub async fn shutdown(&self) {
        self.begin_shutdown();
        self.inner.host.idle().await;
    }

    /// Starts [`shutdown`](Self::shutdown) without waiting for it.
    pub(super) fn begin_shutdown(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        lock(&self.inner.stop_wakers).wake_all();
        let now = self.now();
        self.inner.host.with(|s| s.shutdown(now));
    }

    /// Resolves when [`shutdown`](Self::shutdown) starts (for accept loops).
    pub async fn stopping(&self) {
        let mut waiting = crate::WaitId::new(|id| lock(&self.inner.stop_wakers).remove(id));
        poll_fn(|cx| {
            let mut wakers = lock(&self.inner.stop_wakers);
            if self.inner.stopping.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                wakers.register(&mut waiting.id, cx.waker());
                Poll::Pending
            }
        })
        .await
    }

    /// Renders handler errors with `hook` (FoalTS's `handleError`): it gets the socket,
    /// the event and the error, and returns the error object for the ack, or `None`
    /// for the default rendering (see [`HandlerError::render`]). A hook that panics
    /// gets the default rendering too.
    pub fn on_error<F>(&self, hook: F)
    where
        F: Fn(&Socket, &str, &HandlerError) -> Option<Value> + Send + Sync + 'static,
    {
        *lock(&self.inner.error_hook) = Some(Arc::new(hook));
    }

    /// The error object the client gets for `error`, from `socket`'s `event`.
    fn render_error(&self, socket: &Socket, event: &str, error: &HandlerError) -> Value {
        let hook = lock(&self.inner.error_hook).clone();
        hook.and_then(|h| {
            catch_unwind(AssertUnwindSafe(|| h(socket, event, error)))
                .ok()
                .flatten()
        })
        .unwrap_or_else(|| error.render(self.inner.debug_errors))
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
                if let Some(redis) = self.redis() {
                    redis.add_namespace(self, &info.nsp);
                }
                let handlers = self.handlers_for(&info.nsp);
                let challenge = handlers.as_ref().and_then(|h| lock(&h.challenge).clone());
                let (user, auth) = {
                    let mut app = lock(&self.inner.app);
                    let fresh = match challenge {
                        Some(_) => AuthState::Unauthorized,
                        None => AuthState::Authenticated,
                    };
                    // Taken in both cases: a recovered socket whose middlewares ran
                    // has an entry here too, and its kept state wins over it.
                    let connecting = app.connecting.remove(&sid);
                    let kept = recovered.then(|| app.kept.remove(&sid)).flatten();
                    let kept = kept.unwrap_or(Kept {
                        data: connecting.filter(|_| !recovered).unwrap_or(Value::Null),
                        user: None,
                        auth: fresh,
                    });
                    let state = SocketState {
                        data: Data::new(kept.data),
                        user: kept.user.clone(),
                        auth: kept.auth,
                        namespace: handlers.clone(),
                        ..SocketState::default()
                    };
                    app.sockets
                        .insert(sid.clone(), Box::new((info.clone(), recovered, state)));
                    (kept.user, kept.auth)
                };
                let socket = Socket {
                    io: self.clone(),
                    sid,
                    info: info.clone(),
                    recovered,
                    left_with: None,
                };
                if let Some(user) = &user {
                    // A recovered socket is its user's again (its room came back
                    // with its other rooms).
                    self.user_came(user);
                }
                self.notify(Observed::Connected(&socket));
                if let (Some(challenge), AuthState::Unauthorized) = (challenge, auth) {
                    challenge.start(&socket);
                }
                let handler = handlers.and_then(|h| lock(&h.on_connection).clone());
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
                    s.answers.push_back((Some(sid), result));
                    if let Some(w) = s.waker.take() {
                        w.wake();
                    }
                } else if let Some(redis) = self.redis() {
                    redis.local_ack(self, ack, &result);
                }
            }
            sio::Event::AckDone { ack } => {
                let shared = lock(&self.inner.app).acks.remove(&ack);
                if shared.is_none() {
                    if let Some(redis) = self.redis() {
                        redis.local_ack_done(ack);
                    }
                }
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
                    if let (true, Some(b)) = (kept, &removed) {
                        let state = &b.2;
                        let kept = Kept {
                            data: state.data.get(),
                            user: state.user.clone(),
                            // One that was mid-check starts over.
                            auth: match state.auth {
                                AuthState::Authenticating => AuthState::Unauthorized,
                                auth => auth,
                            },
                        };
                        app.kept.insert(sid.clone(), kept);
                    }
                    removed
                };
                if let Some((info, recovered, state)) = removed.map(|b| *b) {
                    if let Some(user) = &state.user {
                        self.user_gone(user);
                    }
                    let socket = Socket {
                        io: self.clone(),
                        sid,
                        info,
                        recovered,
                        left_with: Some(Arc::new(state.data.into_value())),
                    };
                    self.notify(Observed::Disconnected(&socket, reason));
                    for h in state.hooks.map(|h| h.on_disconnect).unwrap_or_default() {
                        self.run(h(socket.clone(), reason));
                    }
                }
            }
            sio::Event::Forgotten { sid } => {
                lock(&self.inner.app).kept.remove(&sid);
            }
            sio::Event::Room {
                nsp,
                room,
                created,
                private,
            } => {
                if let Some(redis) = self.redis() {
                    redis.room_changed(self, &nsp, &room, created, private);
                }
            }
            sio::Event::Activity(activity) => self.notify(Observed::Server(&activity)),
            sio::Event::Cluster(message) => {
                if let Some(redis) = self.redis() {
                    redis.publish(self, &message);
                }
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
                    Err(_) => Err(ConnectError::new("server error")),
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
            app.sockets.get(&sid).map(|b| {
                let (info, recovered, state) = &**b;
                let own = state
                    .handlers
                    .get_key_value(name.as_str())
                    .map(|(event, handler)| (event.clone(), handler.clone()));
                // The namespace is needed for its hooks, or for a handler the socket
                // does not have: not on the plain path (its own handler, no hook).
                let namespace = state
                    .namespace
                    .as_ref()
                    .filter(|n| own.is_none() || n.has_hooks.load(Ordering::Relaxed))
                    .cloned();
                let (middlewares, any) = match &state.hooks {
                    Some(h) => (h.middlewares.clone(), h.any_incoming.clone()),
                    None => Default::default(),
                };
                (
                    info.clone(),
                    *recovered,
                    middlewares,
                    any,
                    own,
                    state.counts.clone(),
                    namespace,
                )
            })
        };
        let Some((info, recovered, middlewares, any, own, in_flight, namespace)) = found else {
            return;
        };
        if in_flight.in_flight.load(Ordering::Relaxed) >= self.inner.max_in_flight {
            // A client that sends events faster than their handlers finish: it is
            // disconnected rather than allowed to pile up handler tasks.
            tracing::warn!(
                %sid,
                limit = self.inner.max_in_flight,
                "too many event handlers in flight: socket disconnected"
            );
            let now = self.now();
            self.inner.host.with(|s| {
                let _ = s.disconnect(now, &sid, false);
            });
            return;
        }
        let socket = Socket {
            io: self.clone(),
            sid: sid.clone(),
            info,
            recovered,
            left_with: None,
        };
        let slot = ack.map(|id| AckSlot::new(self.clone(), sid, id));
        for mw in &middlewares {
            let verdict = catch_unwind(AssertUnwindSafe(|| mw(&socket, &name, &payload)))
                .unwrap_or_else(|_| Err("server error".into()));
            if let Err(message) = verdict {
                if let Some(slot) = &slot {
                    slot.fail(Value::from(message));
                }
                return;
            }
        }
        for h in &any {
            let _ = catch_unwind(AssertUnwindSafe(|| h(&socket, &name, &payload)));
        }
        let hooks = namespace
            .as_ref()
            .map(|n| lock(&n.hooks).clone())
            .unwrap_or_default();
        let incoming = Incoming {
            name,
            payload,
            ack: slot.clone(),
        };
        // The name for `handler_done` (the handler takes `incoming`): the handler's
        // own key when the socket has one, no copy.
        let (event, own): (Arc<str>, _) = match own {
            Some((event, handler)) => (event, Some(handler)),
            None => (incoming.name.as_str().into(), None),
        };
        let fut: BoxResultFuture = match own {
            // The socket's own handler with no namespace hook: called directly.
            Some(handler) if hooks.is_empty() => handler(socket.clone(), incoming),
            own => {
                let handler = match own {
                    Some(run) => Some(Arc::new(Handler {
                        hooks: Vec::new(),
                        check: None,
                        run: controller::Run::Plain(run),
                    })),
                    None => namespace.and_then(|n| lock(&n.events).get(&*event).cloned()),
                };
                if handler.is_none() && hooks.is_empty() {
                    return;
                }
                let (io, socket) = (self.clone(), socket.clone());
                Box::pin(async move { io.run_chain(socket, hooks, handler, incoming).await })
            }
        };
        let running = InFlight::enter(in_flight);
        let mut fut = CatchPanic(fut);
        // Most handlers finish in their first poll: their outcome is handled here, with
        // no task (and no second future) for them.
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(outcome) = Pin::new(&mut fut).poll(&mut cx) {
            drop(running);
            self.handler_done(&socket, &event, slot, outcome);
            return;
        }
        let io = self.clone();
        self.inner.host.spawn(Box::pin(async move {
            let outcome = fut.await;
            drop(running);
            io.handler_done(&socket, &event, slot, outcome);
        }));
    }

    /// What an event handler ended with: an error is logged if it is the server's,
    /// and answered on the event's ack if it asked for one.
    fn handler_done(
        &self,
        socket: &Socket,
        event: &str,
        slot: Option<AckSlot>,
        outcome: Result<Result<(), HandlerError>, String>,
    ) {
        let error = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error,
            Err(panic) => HandlerError::Panic(panic),
        };
        if error.is_internal() {
            tracing::error!(sid = %socket.id(), event, %error, "handler failed");
        }
        if let Some(slot) = slot {
            slot.fail(self.render_error(socket, event, &error));
        }
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
            remote: 0,
            waker: None,
        }));
        if !target.local && self.redis().is_some() {
            let packet = sio::Packet::event("/", event, payload.clone());
            self.broadcast_ack_remote(target, &packet, timeout, &shared);
        }
        self.inner.host.with(|s| {
            let id = s.broadcast_with_ack(now, target, event, payload, timeout);
            lock(&self.inner.app).acks.insert(id, shared.clone());
        });
        AckStream { shared }
    }
}

/// Turns a panic in a future into `Err` with the panic's message.
struct CatchPanic<F>(F);

impl<F: Future + Unpin> Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic_message(panic.as_ref()))),
        }
    }
}

/// The message a panic was raised with.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => (*s).to_owned(),
        (_, Some(s)) => s.clone(),
        _ => "a panic without a message".to_owned(),
    }
}

pub use crate::host::HttpLimits;
pub use client::{
    ClientAck, ClientConnectError, ClientEmitError, ClientSocket, IoOptions, Listener, SioClient,
    TimedSocket,
};

/// The settings of a Socket.IO server, given once to [`server`] (a plain [`Config`]
/// converts into them).
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// The Socket.IO (and Engine.IO) protocol settings.
    pub config: Config,
    /// The HTTP limits.
    pub limits: HttpLimits,
    /// Most event handlers of one socket running at once (default 1,024): a handler
    /// counts from when its event is dispatched until its future completes. An event
    /// that arrives at the cap disconnects the socket (`io server disconnect` on the
    /// client) instead of piling up handler tasks.
    pub max_in_flight: usize,
    /// A router of plain WebSocket applications served beside Socket.IO: its routes,
    /// and the HTTP requests that are for neither.
    pub router: Option<crate::router::Router>,
    /// Internal handler errors and panics are answered with their own name and
    /// message instead of the generic `INTERNAL_SERVER_ERROR` (default: off; FoalTS's
    /// `settings.debug`). For development only: messages can hold what clients must
    /// not see.
    pub debug_errors: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Config::default().into()
    }
}

impl From<Config> for ServerOptions {
    fn from(config: Config) -> Self {
        Self {
            config,
            limits: HttpLimits::default(),
            max_in_flight: 1024,
            router: None,
            debug_errors: false,
        }
    }
}

impl ServerOptions {
    /// Sets the HTTP limits.
    pub fn http_limits(mut self, limits: HttpLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Serves `router` beside Socket.IO on the same port: its WebSocket routes, and
    /// every HTTP request that is not Socket.IO's (its fallback, or 404).
    pub fn router(mut self, router: crate::router::Router) -> Self {
        self.router = Some(router);
        self
    }

    /// Sets [`ServerOptions::debug_errors`].
    pub fn debug_errors(mut self, debug: bool) -> Self {
        self.debug_errors = debug;
        self
    }

    /// Sets [`ServerOptions::max_in_flight`].
    pub fn max_in_flight(mut self, handlers: usize) -> Self {
        self.max_in_flight = handlers;
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
    let (url, nsp) = client::split_url(url)?;
    let mut config = options.config;
    config.eio = config.eio.query_of(&url.target);
    let client = SioClient::new(rt, config, crate::os_seed()?);
    let socket = client.socket(&nsp, options.auth);
    rt.spawn(client.drive(rt.clone(), url, options.connector, crate::os_seed()?));
    Ok(socket)
}

/// Serves one connection over any transport, with its peer's address when it has one.
///
/// The future holds the connection's state once: the stream goes into it when this is
/// called (an `async fn` would keep a slot for its arguments too).
pub fn serve_connection<R: Runtime, T: crate::Transport + Send + 'static>(
    rt: &R,
    io: &SocketIo,
    stream: T,
    peer_addr: Option<std::net::SocketAddr>,
) -> impl Future<Output = std::io::Result<()>> + Send + 'static {
    use tracing::Instrument;
    let span = tracing::debug_span!("sio-conn", peer = ?peer_addr);
    crate::map(
        io.host()
            .serve_connection(stream, rt.clock(), peer_addr)
            .instrument(span),
        |served| served.map(drop),
    )
}

/// Accepts connections on `listener`, serving each on its own task, until
/// [`SocketIo::shutdown`] has drained every session: during the shutdown polling
/// clients still reach the server (on new connections too) to fetch their
/// DISCONNECT, and new sessions get 503. Returns once every session is gone and its
/// last bytes written (bounded: a polling client that does not come back is waited
/// for `ping_timeout`, a peer that does not read for
/// [`HttpLimits::write_timeout`](crate::HttpLimits::write_timeout)).
pub async fn serve<R: Runtime>(rt: &R, io: SocketIo, listener: R::Listener) -> std::io::Result<()> {
    serve_accepting(rt, io, listener, crate::Plain).await
}

/// [`serve`], with each connection made into the stream served by `acceptor` (a TLS
/// handshake, bounded by [`HttpLimits::request_timeout`](crate::HttpLimits::request_timeout)).
pub async fn serve_accepting<R: Runtime, A: crate::Acceptor<R::Tcp>>(
    rt: &R,
    io: SocketIo,
    listener: R::Listener,
    acceptor: A,
) -> std::io::Result<()> {
    let limits = io.host().limits();
    let max = limits.max_connections;
    let drained = {
        let io = io.clone();
        async move {
            io.stopping().await;
            io.host().idle().await;
        }
    };
    let handshake = (&acceptor, limits.request_timeout);
    let (runtime, serving) = (rt.clone(), io.clone());
    crate::accept_loop(
        rt,
        &listener,
        drained,
        max,
        handshake,
        move |stream, peer| {
            let served = serve_connection(&runtime, &serving, stream, Some(peer));
            crate::map(served, |served| {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "socket.io connection ended with an error");
                }
            })
        },
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_names_are_kept_once_up_to_a_bound() {
        let mut names = super::Names::default();
        let first = names.get("message");
        assert!(std::sync::Arc::ptr_eq(&first, &names.get("message")));
        for i in 1..super::Names::MAX {
            names.get(&format!("event {i}"));
        }
        assert_eq!(names.0.len(), super::Names::MAX);
        // Full: a new name is made for its caller and not kept.
        let extra = names.get("one more");
        assert_eq!(&*extra, "one more");
        assert!(!std::sync::Arc::ptr_eq(&extra, &names.get("one more")));
        assert_eq!(names.0.len(), super::Names::MAX);
        assert!(std::sync::Arc::ptr_eq(&first, &names.get("message")));
    }
}
