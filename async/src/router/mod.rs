//! Plain WebSocket applications: routes by path pattern, authentication before the
//! upgrade, connections with ids, rooms and broadcast.
//!
//! A [`Router`] holds [`Route`]s keyed by [`Pattern`] (`/ws/chat`, `/ws/game/:id`). It
//! is served on its own (an adapter's `router::serve`) or beside Engine.IO and
//! Socket.IO on the same port ([`ServerOptions::router`](crate::eio::ServerOptions::router)
//! and its Socket.IO twin); HTTP requests that are not upgrades go to its
//! [`fallback`](RouterBuilder::fallback) (404 without one).
//!
//! For each upgrade request of a route:
//! 1. the route's [`auth`](Route::auth) hook sees the [`Handshake`] (method, path,
//!    parameters, query, headers, peer address) and [accepts](Auth::accept) it, keeping
//!    data for the connection, or refuses it: with an HTTP status before the upgrade,
//!    or by accepting and closing at once with a close code and reason (what browsers,
//!    which cannot read a refused upgrade's status, can see);
//! 2. the connection gets an id and is registered: [`Router::send`] reaches it from
//!    anywhere (an HTTP handler, another task);
//! 3. `on_connect`, then each message through the [middleware](Route::middleware) chain
//!    to `on_message`, then `on_close(code, reason)`; `on_error` for what went wrong.
//!
//! Handlers are plain functions, called in the connection's task: sending never waits
//! (each connection has a bounded queue, see [`Route::max_queued_bytes`]), and a
//! handler with work to wait for spawns it with a [`Sender`] or the [`Conn`] (both
//! cheap to clone). A handler that panics closes its own connection (1011), nothing
//! more; a fallback that panics answers 500.
//!
//! [`Conn::broadcast`] and [`Router::broadcast`] send one message to a route's
//! connections or to rooms: it is encoded once, and compressed once when it is at
//! least the route's compression threshold, for every recipient that can take it. A
//! recipient that cannot keep up has its queue bounded: past the bound its connection
//! is closed (1013), never the broadcast held back.
//!
//! ```
//! use wirestate_async::router::{Auth, Route, Router};
//!
//! let router = Router::builder()
//!     .route(
//!         "/ws/echo/:name",
//!         Route::new()
//!             .auth(|hs| match hs.query_param("token").as_deref() {
//!                 Some("secret") => Auth::accept_with("alice".to_owned()),
//!                 Some(_) => Auth::close(4002, "Invalid token"),
//!                 None => Auth::refuse(401),
//!             })
//!             .on_message(|conn, message| {
//!                 let _ = conn.send(message);
//!             }),
//!     )
//!     .build();
//! assert_eq!(router.connection_count(), 0);
//! ```

mod conn;

use std::any::Any;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use wirestate_engine::rand::Rng;
use wirestate_engine::ws::rooms::Rooms;
use wirestate_engine::ws::{self, CloseCode, Message, Precompressed, PreparedFrame};

#[cfg(feature = "tower")]
pub(crate) use conn::{authorize, run};
pub(crate) use conn::{serve_upgrade, Link};
pub use conn::{Conn, Sender};
pub use wirestate_engine::http::{Headers, Request as HttpRequest, Response as HttpResponse};
pub use wirestate_engine::ws::rooms::RoomLimit;
pub use wirestate_engine::ws::route::{Params, Pattern, PatternError};

use crate::host::{EioServer, HttpLimits};
use crate::{Error, Runtime, Transport};

/// Data an [`auth`](Route::auth) hook keeps for a connection ([`Conn::auth`]).
pub type AuthData = Arc<dyn Any + Send + Sync>;

/// A boxed future, as an async [`auth`](Route::auth_async) hook returns.
pub type AuthFuture = Pin<Box<dyn Future<Output = Auth> + Send>>;

type AuthFn = Arc<dyn Fn(&Handshake) -> AuthFuture + Send + Sync>;
type ConnFn = Arc<dyn Fn(&Conn) + Send + Sync>;
type MessageFn = Arc<dyn Fn(&Conn, Message) + Send + Sync>;
type MiddlewareFn = Arc<dyn Fn(&Conn, Message) -> Flow + Send + Sync>;
type CloseFn = Arc<dyn Fn(&Conn, CloseCode, &str) + Send + Sync>;
type ErrorFn = Arc<dyn Fn(&Conn, &Error) + Send + Sync>;
type HttpFn = Arc<dyn Fn(&Router, &HttpRequest) -> HttpResponse + Send + Sync>;

/// What an [`auth`](Route::auth) hook decides about an upgrade request.
#[derive(Clone)]
pub enum Auth {
    /// Upgrade, keeping the data (if any) as the connection's.
    Accept(Option<AuthData>),
    /// Answer with this HTTP response instead of upgrading.
    Refuse(HttpResponse),
    /// Upgrade and close at once with this code (4000–4999 for an application's own)
    /// and reason; the application never sees the connection.
    Close(CloseCode, String),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Accept(data) => f.debug_tuple("Accept").field(&data.is_some()).finish(),
            Self::Refuse(r) => f.debug_tuple("Refuse").field(&r.status).finish(),
            Self::Close(code, reason) => f.debug_tuple("Close").field(code).field(reason).finish(),
        }
    }
}

impl Auth {
    /// Accepts, with no data.
    pub fn accept() -> Self {
        Self::Accept(None)
    }

    /// Accepts, keeping `data` as the connection's auth data.
    pub fn accept_with<T: Any + Send + Sync>(data: T) -> Self {
        Self::Accept(Some(Arc::new(data)))
    }

    /// Refuses with HTTP `status` (a plain-text body: the status code).
    pub fn refuse(status: u16) -> Self {
        Self::Refuse(
            HttpResponse::new(status)
                .header("Content-Type", "text/plain; charset=utf-8")
                .body(format!("{status}")),
        )
    }

    /// Upgrades and closes at once with `code` and `reason` (at most 123 bytes; longer
    /// is cut at a character boundary).
    pub fn close(code: u16, reason: impl Into<String>) -> Self {
        Self::Close(CloseCode(code), reason.into())
    }
}

/// What a [middleware](Route::middleware) does with a message.
#[derive(Debug)]
pub enum Flow {
    /// Hand this message (the same, or transformed) to the next middleware, and after
    /// the last to `on_message`.
    Next(Message),
    /// Stop here: the message is handled (or dropped).
    Stop,
}

/// The upgrade request a connection came from, as the [`auth`](Route::auth) hook and
/// then [`Conn::handshake`] see it.
#[derive(Clone, Debug)]
pub struct Handshake {
    method: String,
    target: String,
    params: Params,
    headers: Headers,
    peer_addr: Option<SocketAddr>,
    route: Arc<str>,
    extensions: wirestate_engine::http::Extensions,
}

impl Handshake {
    /// The request method (`GET`).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target as sent: path and query.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("/")
    }

    /// The query string (without `?`), empty if there is none.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<Cow<'_, str>> {
        wirestate_engine::http::query_pairs(self.query())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The value of the route's path parameter `name` (`:name` in the pattern).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name)
    }

    /// Every path parameter.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The first value of header `name` (any case), if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get_str(name)
    }

    /// Every header line.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The peer's address, when the transport has one.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// The pattern of the route that matched, as written.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// What the host's HTTP server attached to the request: through the tower layer,
    /// the application's request extensions (read them with
    /// `tower::router_extensions`).
    pub fn extensions(&self) -> &wirestate_engine::http::Extensions {
        &self.extensions
    }
}

/// One route: its WebSocket settings and its handlers.
#[derive(Clone)]
pub struct Route {
    config: ws::Config,
    auth: Option<AuthFn>,
    on_connect: Option<ConnFn>,
    on_message: Option<MessageFn>,
    middleware: Vec<MiddlewareFn>,
    on_close: Option<CloseFn>,
    on_error: Option<ErrorFn>,
    max_queued: usize,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("config", &self.config)
            .field("middleware", &self.middleware.len())
            .field("max_queued", &self.max_queued)
            .finish_non_exhaustive()
    }
}

impl Default for Route {
    fn default() -> Self {
        Self::new()
    }
}

/// The default of [`Route::max_queued_bytes`].
pub const DEFAULT_MAX_QUEUED: usize = 8 << 20;

impl Route {
    /// A route with the default [`ws::Config`] (no heartbeat, no compression) and no
    /// handlers: every upgrade is accepted and its messages dropped.
    pub fn new() -> Self {
        Self {
            config: ws::Config::default(),
            auth: None,
            on_connect: None,
            on_message: None,
            middleware: Vec::new(),
            on_close: None,
            on_error: None,
            max_queued: DEFAULT_MAX_QUEUED,
        }
    }

    /// Uses `config` for the route's connections (limits, timeouts, origins,
    /// subprotocols; [`heartbeat`](Self::heartbeat) and
    /// [`compression`](Self::compression) change it further).
    pub fn config(mut self, config: ws::Config) -> Self {
        self.config = config;
        self
    }

    /// Pings every `interval`, and drops a connection whose peer has sent nothing
    /// (not even a pong) for `timeout` after a ping.
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.config = self.config.keepalive(interval, timeout);
        self
    }

    /// Offers permessage-deflate; messages of at least `threshold` bytes are
    /// compressed. The server keeps no compression context between messages, so a
    /// broadcast is compressed once for all its recipients.
    pub fn compression(mut self, threshold: usize) -> Self {
        self.config = self.config.deflate(
            ws::DeflateConfig::default()
                .threshold(threshold)
                .server_no_context_takeover(true),
        );
        self
    }

    /// The most bytes queued for one connection and not yet taken by its transport
    /// (default 8 MiB). A send past it closes the connection with 1013 ("try again
    /// later") and is an error ([`SendError::Full`]): a slow peer costs a bounded
    /// amount of memory and never holds a broadcast back.
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.max_queued = bytes;
        self
    }

    /// Decides about each upgrade request before the application sees it.
    pub fn auth<F>(self, hook: F) -> Self
    where
        F: Fn(&Handshake) -> Auth + Send + Sync + 'static,
    {
        self.auth_async(move |hs| {
            let auth = hook(hs);
            async move { auth }
        })
    }

    /// [`auth`](Self::auth) with a hook that waits (a database, a token service). It
    /// has the route's handshake timeout to answer; past it the request gets 503.
    pub fn auth_async<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(&Handshake) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Auth> + Send + 'static,
    {
        self.auth = Some(Arc::new(move |hs| Box::pin(hook(hs))));
        self
    }

    /// Called once a connection is open and registered.
    pub fn on_connect<F>(mut self, handler: F) -> Self
    where
        F: Fn(&Conn) + Send + Sync + 'static,
    {
        self.on_connect = Some(Arc::new(handler));
        self
    }

    /// Adds a middleware, run on every message in the order added, before
    /// `on_message`: it passes the message on (maybe transformed) or stops it.
    pub fn middleware<F>(mut self, middleware: F) -> Self
    where
        F: Fn(&Conn, Message) -> Flow + Send + Sync + 'static,
    {
        self.middleware.push(Arc::new(middleware));
        self
    }

    /// Called with each message the middleware let through.
    pub fn on_message<F>(mut self, handler: F) -> Self
    where
        F: Fn(&Conn, Message) + Send + Sync + 'static,
    {
        self.on_message = Some(Arc::new(handler));
        self
    }

    /// Called with each message the middleware let through, parsed as JSON into `T`
    /// (a text or binary message). A message that is not JSON gets the text
    /// `{"type":"error","error":"invalid JSON"}`, and JSON that is not a `T`
    /// `{"type":"error","error":"invalid message: WHY"}`; the connection stays open.
    /// (It is the route's `on_message`: set one or the other.)
    pub fn on_json<T, F>(self, handler: F) -> Self
    where
        T: serde::de::DeserializeOwned,
        F: Fn(&Conn, T) + Send + Sync + 'static,
    {
        self.on_message(move |conn, message| match message.json::<T>() {
            Ok(value) => handler(conn, value),
            Err(e) => {
                // Not a `T`: JSON of the wrong shape, or not JSON at all (which a
                // type check may meet before a syntax error).
                let json = message.json::<serde::de::IgnoredAny>().is_ok();
                let error = match json {
                    true => format!("invalid message: {e}"),
                    false => "invalid JSON".to_owned(),
                };
                let _ = conn.send_json(&serde_json::json!({"type": "error", "error": error}));
            }
        })
    }

    /// Called once when the connection has ended, with its close code and reason
    /// (1006 and an empty reason when it ended without a closing handshake). The
    /// connection is still in its rooms, so the handler can tell them.
    pub fn on_close<F>(mut self, handler: F) -> Self
    where
        F: Fn(&Conn, CloseCode, &str) + Send + Sync + 'static,
    {
        self.on_close = Some(Arc::new(handler));
        self
    }

    /// Called when the connection fails (a protocol violation by the peer, an I/O
    /// error, a timeout), before `on_close`.
    pub fn on_error<F>(mut self, handler: F) -> Self
    where
        F: Fn(&Conn, &Error) + Send + Sync + 'static,
    {
        self.on_error = Some(Arc::new(handler));
        self
    }
}

/// Why a message could not be queued for a connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// No open connection has this id (it never had, or it has ended and is gone).
    Unknown,
    /// The connection has ended, or is closing.
    Closed,
    /// The connection's queue is full: the connection is being closed (1013).
    Full,
    /// The value could not be serialized as JSON.
    Json(serde_json::Error),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown => f.write_str("no such connection"),
            Self::Closed => f.write_str("the connection is closed"),
            Self::Full => f.write_str("the connection's send queue is full"),
            Self::Json(e) => write!(f, "cannot serialize as JSON: {e}"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Json(e) => Some(e),
            _ => None,
        }
    }
}

/// A connection's id: unique, unguessable (96 random bits), URL-safe (16 characters).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(Arc<str>);

impl ConnId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnId({})", self.0)
    }
}

impl std::borrow::Borrow<str> for ConnId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for ConnId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A registered connection, as rooms hold it: compared by id.
#[derive(Clone)]
struct Member(Arc<Link>);

impl PartialEq for Member {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for Member {}

impl Hash for Member {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id.hash(state);
    }
}

/// Every open connection, by id, by route and by room.
struct Hub {
    conns: HashMap<ConnId, Arc<Link>>,
    routes: Vec<HashSet<Member>>,
    rooms: Rooms<Member>,
    ids: Rng,
}

struct Entry {
    pattern: Pattern,
    route: Route,
    config: Arc<ws::Config>,
}

struct Inner {
    entries: Vec<Entry>,
    fallback: Option<HttpFn>,
    limits: HttpLimits,
    hub: Mutex<Hub>,
}

/// A set of plain WebSocket routes and the connections they have open: cheap to
/// clone, every clone the same router. See the [module docs](self).
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field(
                "routes",
                &self
                    .inner
                    .entries
                    .iter()
                    .map(|e| e.pattern.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("connections", &self.connection_count())
            .finish()
    }
}

/// Builds a [`Router`].
#[derive(Default)]
pub struct RouterBuilder {
    entries: Vec<Entry>,
    fallback: Option<HttpFn>,
    limits: HttpLimits,
    max_rooms: Option<usize>,
}

impl fmt::Debug for RouterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterBuilder")
            .field("routes", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl RouterBuilder {
    /// Serves `route` at `pattern` (see [`Pattern`]). The first route added that
    /// matches a path serves it.
    ///
    /// # Panics
    /// If `pattern` is not a valid pattern (a programming error, as a bad regex
    /// literal): [`try_route`](Self::try_route) returns the error instead.
    pub fn route(self, pattern: &str, route: Route) -> Self {
        match self.try_route(pattern, route) {
            Ok(builder) => builder,
            Err(e) => panic!("route {pattern:?}: {e}"),
        }
    }

    /// [`route`](Self::route), returning a bad pattern's error.
    pub fn try_route(mut self, pattern: &str, route: Route) -> Result<Self, PatternError> {
        let pattern = Pattern::parse(pattern)?;
        let config = Arc::new(route.config.clone());
        self.entries.push(Entry {
            pattern,
            route,
            config,
        });
        Ok(self)
    }

    /// Answers HTTP requests that are not WebSocket upgrades (default: 404), given the
    /// router to reach its connections (one that panics answers 500). It runs in the
    /// connection's task, so it should not block; [`Router::send`] and
    /// [`Router::broadcast`] never do.
    pub fn fallback<F>(mut self, handler: F) -> Self
    where
        F: Fn(&Router, &HttpRequest) -> HttpResponse + Send + Sync + 'static,
    {
        self.fallback = Some(Arc::new(handler));
        self
    }

    /// The HTTP limits when the router is served alone ([`serve`]); beside Engine.IO
    /// or Socket.IO, that server's apply.
    pub fn http_limits(mut self, limits: HttpLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The most rooms one connection may be in at once (default 1,024): past it
    /// [`Conn::join`] fails with [`RoomLimit`].
    pub fn max_rooms_per_connection(mut self, rooms: usize) -> Self {
        self.max_rooms = Some(rooms);
        self
    }

    /// The router, with ids seeded from the OS.
    pub fn build(self) -> Router {
        let seed = crate::os_seed().unwrap_or_else(|_| {
            // No OS randomness: ids from the clock and the address of this builder
            // are unique, if guessable; they are never the only secret.
            let mut seed = [0u8; 32];
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            seed[..16].copy_from_slice(&nanos.to_le_bytes());
            seed
        });
        self.build_seeded(seed)
    }

    /// The router, with ids seeded from `seed` (tests that want the same ids).
    pub fn build_seeded(self, seed: [u8; 32]) -> Router {
        let routes = self.entries.iter().map(|_| HashSet::new()).collect();
        Router {
            inner: Arc::new(Inner {
                hub: Mutex::new(Hub {
                    conns: HashMap::new(),
                    routes,
                    rooms: Rooms::new(self.max_rooms.unwrap_or(1024)),
                    ids: Rng::from_seed(seed),
                }),
                entries: self.entries,
                fallback: self.fallback,
                limits: self.limits,
            }),
        }
    }
}

/// What the router does with one request.
pub(crate) enum Handled {
    /// Answer it.
    Respond(HttpResponse),
    /// An upgrade for a route: authenticate it, then run it.
    Upgrade(Box<Upgrade>),
}

/// An upgrade request for one of the router's routes, checked and not yet answered.
pub(crate) struct Upgrade {
    pub(crate) router: Router,
    pub(crate) request: ws::Request,
    pub(crate) route: usize,
    pub(crate) handshake: Handshake,
}

/// An upgrade once answered: what its connection's task needs.
pub(crate) struct Accepted {
    pub(crate) router: Router,
    pub(crate) route: usize,
    pub(crate) handshake: Handshake,
}

impl Upgrade {
    /// The route's WebSocket settings.
    pub(crate) fn config(&self) -> &Arc<ws::Config> {
        self.router.entry_config(self.route)
    }

    /// The request to answer, and the rest.
    pub(crate) fn into_parts(self) -> (ws::Request, Accepted) {
        let accepted = Accepted {
            router: self.router,
            route: self.route,
            handshake: self.handshake,
        };
        (self.request, accepted)
    }
}

impl Router {
    /// A builder.
    pub fn builder() -> RouterBuilder {
        RouterBuilder::default()
    }

    fn hub(&self) -> MutexGuard<'_, Hub> {
        self.inner.hub.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the router has a route for `path` (a request path without query).
    pub fn matches(&self, path: &str) -> bool {
        self.inner
            .entries
            .iter()
            .any(|e| e.pattern.matches(path).is_some())
    }

    /// Routes one request: the answer, or the upgrade to authenticate and run.
    pub(crate) fn handle(&self, mut request: wirestate_engine::http::Request) -> Handled {
        let path = request.head.path();
        let found = self
            .inner
            .entries
            .iter()
            .enumerate()
            .find_map(|(i, e)| e.pattern.matches(path).map(|params| (i, params)));
        let Some((index, params)) = found else {
            if request.head.is_websocket_upgrade() {
                return Handled::Respond(HttpResponse::not_found());
            }
            return Handled::Respond(match &self.inner.fallback {
                Some(f) => {
                    let answer = std::panic::AssertUnwindSafe(|| f(self, &request));
                    std::panic::catch_unwind(answer).unwrap_or_else(|_| {
                        tracing::error!(path, "the HTTP fallback panicked: 500");
                        HttpResponse::new(500)
                    })
                }
                None => HttpResponse::not_found(),
            });
        };
        let entry = &self.inner.entries[index];
        if !request.head.is_websocket_upgrade() && request.head.method == "GET" {
            return Handled::Respond(
                HttpResponse::new(426)
                    .header("Upgrade", "websocket")
                    .header("Content-Type", "text/plain; charset=utf-8")
                    .body("this route takes WebSocket upgrades only"),
            );
        }
        let handshake = Handshake {
            method: request.head.method.clone(),
            target: request.head.target.clone(),
            params,
            headers: request.head.headers.clone(),
            peer_addr: request.peer_addr,
            route: Arc::from(entry.pattern.as_str()),
            extensions: std::mem::take(&mut request.extensions),
        };
        match ws::handshake::upgrade(&entry.config, request.head) {
            Ok(ws_request) => Handled::Upgrade(Box::new(Upgrade {
                router: self.clone(),
                request: ws_request,
                route: index,
                handshake,
            })),
            Err(response) => Handled::Respond(response),
        }
    }

    /// How many connections are open.
    pub fn connection_count(&self) -> usize {
        self.hub().conns.len()
    }

    /// The ids of the open connections of the route with `pattern` (as written when
    /// it was added), or of every route with `None`.
    pub fn connections(&self, pattern: Option<&str>) -> Vec<ConnId> {
        let hub = self.hub();
        match pattern {
            None => hub.conns.keys().cloned().collect(),
            Some(p) => match self.route_index(p) {
                Some(i) => hub.routes[i].iter().map(|m| m.0.id.clone()).collect(),
                None => Vec::new(),
            },
        }
    }

    fn route_index(&self, pattern: &str) -> Option<usize> {
        self.inner
            .entries
            .iter()
            .position(|e| e.pattern.as_str() == pattern)
    }

    /// A sender for the open connection `id`.
    pub fn sender(&self, id: &str) -> Option<Sender> {
        self.hub().conns.get(id).map(|l| Sender::new(l.clone()))
    }

    /// Queues `message` for the open connection `id` (from an HTTP handler, say).
    pub fn send(&self, id: &str, message: impl Into<Message>) -> Result<(), SendError> {
        self.sender(id).ok_or(SendError::Unknown)?.send(message)
    }

    /// Closes the open connection `id` with `code` and `reason`.
    pub fn close(&self, id: &str, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.sender(id)
            .ok_or(SendError::Unknown)?
            .close(code, reason)
    }

    /// A broadcast to every open connection of every route (narrow it with
    /// [`Broadcast::route`], [`Broadcast::to`] and [`Broadcast::except`]).
    pub fn broadcast(&self) -> Broadcast<'_> {
        Broadcast {
            router: self,
            route: None,
            rooms: Vec::new(),
            except: None,
        }
    }

    /// The members of `room`.
    pub fn room_members(&self, room: &str) -> Vec<ConnId> {
        self.hub()
            .rooms
            .members(room)
            .map(|m| m.0.id.clone())
            .collect()
    }

    /// Registers a newly accepted connection of route `route`.
    pub(crate) fn register(&self, route: usize) -> Arc<Link> {
        let mut hub = self.hub();
        let id = loop {
            let mut bytes = [0u8; 12];
            hub.ids.fill(&mut bytes);
            let id = ConnId(Arc::from(encode_id(&bytes)));
            if !hub.conns.contains_key(&id) {
                break id;
            }
        };
        let max_queued = self.inner.entries[route].route.max_queued;
        let link = Arc::new(Link::new(id.clone(), route, max_queued));
        hub.conns.insert(id, link.clone());
        hub.routes[route].insert(Member(link.clone()));
        link
    }

    /// Forgets a connection that has ended.
    pub(crate) fn unregister(&self, link: &Arc<Link>) {
        let mut hub = self.hub();
        let member = Member(link.clone());
        hub.rooms.leave_all(&member);
        hub.routes[link.route].remove(&member);
        hub.conns.remove(&link.id);
    }

    pub(crate) fn entry_route(&self, index: usize) -> &Route {
        &self.inner.entries[index].route
    }

    pub(crate) fn entry_config(&self, index: usize) -> &Arc<ws::Config> {
        &self.inner.entries[index].config
    }

    fn join(&self, link: &Arc<Link>, room: &str) -> Result<bool, RoomLimit> {
        if link.is_ended() {
            return Ok(false);
        }
        self.hub().rooms.join(&Member(link.clone()), room)
    }

    fn leave(&self, link: &Arc<Link>, room: &str) -> bool {
        self.hub().rooms.leave(&Member(link.clone()), room)
    }

    fn rooms_of(&self, link: &Arc<Link>) -> Vec<String> {
        self.hub()
            .rooms
            .rooms_of(&Member(link.clone()))
            .iter()
            .map(|r| r.to_string())
            .collect()
    }
}

/// 12 bytes as 16 URL-safe base64 characters.
fn encode_id(bytes: &[u8; 12]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut id = String::with_capacity(16);
    for chunk in bytes.chunks(3) {
        let n = u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8 | u32::from(chunk[2]);
        for shift in [18, 12, 6, 0] {
            id.push(char::from(ALPHABET[(n >> shift) as usize & 63]));
        }
    }
    id
}

/// A message for several connections, encoded once: made by [`Router::broadcast`] or
/// [`Conn::broadcast`], sent with [`send`](Self::send).
#[derive(Debug)]
pub struct Broadcast<'a> {
    router: &'a Router,
    route: Option<usize>,
    rooms: Vec<String>,
    except: Option<ConnId>,
}

impl Broadcast<'_> {
    /// Only to connections of the route with `pattern` (as written when it was
    /// added); a pattern the router does not have reaches no one.
    pub fn route(mut self, pattern: &str) -> Self {
        self.route = Some(self.router.route_index(pattern).unwrap_or(usize::MAX));
        self
    }

    /// Only to members of `room` (with several `to`, of any of them).
    pub fn to(mut self, room: impl Into<String>) -> Self {
        self.rooms.push(room.into());
        self
    }

    /// Not to connection `id`.
    pub fn except(mut self, id: &ConnId) -> Self {
        self.except = Some(id.clone());
        self
    }

    /// Also to the connection this broadcast came from ([`Conn::broadcast`] leaves it
    /// out by default).
    pub fn include_self(mut self, include: bool) -> Self {
        if include {
            self.except = None;
        }
        self
    }

    /// Sends `message`: how many connections it was queued for. Encoded once, and
    /// compressed once if it is at least the compression threshold of a route it
    /// goes to.
    pub fn send(self, message: impl Into<Message>) -> usize {
        let message = message.into();
        let len = message.len();
        let compressed = self
            .router
            .inner
            .entries
            .iter()
            .enumerate()
            .filter(|(i, _)| self.route.is_none_or(|r| r == *i))
            .find_map(|(_, e)| e.config.deflate.as_ref().filter(|d| len >= d.threshold))
            .map(|d| Precompressed::new(message.clone(), d.level, d.server_max_window_bits));
        let shared = Arc::new(conn::SharedMessage {
            frame: PreparedFrame::new(message),
            compressed,
        });
        let hub = self.router.hub();
        let mut sent = 0;
        let mut each = |m: &Member| {
            if self.route.is_none_or(|r| r == m.0.route) && m.0.send_shared(&shared).is_ok() {
                sent += 1;
            }
        };
        let except = self
            .except
            .as_ref()
            .and_then(|id| hub.conns.get(id))
            .cloned()
            .map(Member);
        if !self.rooms.is_empty() {
            hub.rooms.for_each_in(&self.rooms, except.as_ref(), each);
        } else {
            let routes: &mut dyn Iterator<Item = &HashSet<Member>> = match self.route {
                Some(r) => &mut hub.routes.get(r).into_iter(),
                None => &mut hub.routes.iter(),
            };
            for set in routes {
                for m in set {
                    if Some(m) != except.as_ref() {
                        each(m);
                    }
                }
            }
        }
        sent
    }

    /// Sends `value` as a JSON text message (see [`send`](Self::send)).
    pub fn send_json<T: serde::Serialize + ?Sized>(self, value: &T) -> Result<usize, SendError> {
        let text = serde_json::to_string(value).map_err(SendError::Json)?;
        Ok(self.send(Message::text(text)))
    }
}

/// Serves `router` alone on `listener` for ever, each connection on its own task (an
/// accept error is logged and retried, never returned), with the router's
/// [HTTP limits](RouterBuilder::http_limits).
pub async fn serve<R: Runtime>(
    rt: &R,
    router: Router,
    listener: R::Listener,
) -> std::io::Result<()> {
    serve_accepting(rt, router, listener, crate::Plain).await
}

/// [`serve`], with each connection made into the stream served by `acceptor` (a TLS
/// handshake, bounded by [`HttpLimits::request_timeout`]).
pub async fn serve_accepting<R: Runtime, A: crate::Acceptor<R::Tcp>>(
    rt: &R,
    router: Router,
    listener: R::Listener,
    acceptor: A,
) -> std::io::Result<()> {
    let limits = router.inner.limits;
    let host = EioServer::for_router(rt, router, limits);
    crate::eio::serve_accepting(rt, host, listener, acceptor, |_, _| async {}).await
}

/// Serves one connection over any transport, with its peer's address when it has one,
/// until it closes: for your own accept loop.
pub async fn serve_connection<R: Runtime, T: Transport + Send + 'static>(
    rt: &R,
    router: &Router,
    io: T,
    peer_addr: Option<SocketAddr>,
) -> std::io::Result<()> {
    let host = EioServer::for_router(rt, router.clone(), router.inner.limits);
    crate::eio::serve_connection(rt, &host, io, peer_addr)
        .await
        .map(|_| ())
}
