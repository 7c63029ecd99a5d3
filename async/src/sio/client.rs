//! The async Socket.IO client, the same on every runtime: socket.io-client's
//! vocabulary (`io`, `socket`, `on`, `off`, `emit`, `emit_with_ack`, `timeout`,
//! `connect`, `disconnect`, and the manager's `reconnect_attempt`, `reconnect`,
//! `reconnect_error`, `reconnect_failed`).
//!
//! A [`SioClient`] (socket.io-client's Manager) shares the sans-IO
//! [`wirestate_engine::sio::Manager`] between the application's handles and one driver
//! task ([`SioClient::drive`], spawned by the adapter), which carries out its I/O with
//! a [`Pilot`] and calls the registered handlers, in order, with no lock held.

use std::collections::HashMap;
use std::fmt;
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::{Executor, Pilot, Runtime};
use wirestate_engine::eio::{Action, RequestId, WsId};
use wirestate_engine::http::{Scheme, Url, UrlError};
use wirestate_engine::sio::{
    AckError, AckId, ClientConfig, ClientDisconnectReason, ClientError, ClientEvent, Manager,
    Payload,
};
use wirestate_engine::ws::Message;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No user code runs under these locks.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type EventCb = Arc<dyn Fn(Payload, Option<ClientAck>) + Send + Sync>;
type AnyCb = Arc<dyn Fn(&str, &Payload) + Send + Sync>;
type ConnectCb = Arc<dyn Fn(bool) + Send + Sync>;
type DisconnectCb = Arc<dyn Fn(ClientDisconnectReason) + Send + Sync>;
type ErrorCb = Arc<dyn Fn(&ClientConnectError) + Send + Sync>;
type AttemptCb = Arc<dyn Fn(u32) + Send + Sync>;
type PlainCb = Arc<dyn Fn() + Send + Sync>;

/// Why a namespace could not connect: the server's CONNECT_ERROR (`message`, `data`),
/// or a transport failure, or the client giving up.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientConnectError {
    /// The message.
    pub message: String,
    /// The server's data.
    pub data: Option<Value>,
}

impl fmt::Display for ClientConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ClientConnectError {}

#[derive(Default)]
struct NsHandlers {
    events: HashMap<String, Vec<(Listener, EventCb)>>,
    any: Vec<AnyCb>,
    connect: Vec<ConnectCb>,
    disconnect: Vec<DisconnectCb>,
    connect_error: Vec<ErrorCb>,
}

#[derive(Default)]
struct Handlers {
    namespaces: HashMap<Arc<str>, NsHandlers>,
    reconnect_attempt: Vec<AttemptCb>,
    reconnect: Vec<AttemptCb>,
    reconnect_error: Vec<PlainCb>,
    reconnect_failed: Vec<PlainCb>,
}

#[derive(Clone, Debug, PartialEq)]
enum Status {
    Pending,
    Connected { recovered: bool },
    Failed(ClientConnectError),
}

/// Each namespace's status, and who waits for a change.
type StatusBoard = (HashMap<Arc<str>, Status>, crate::Waiters);

struct AckWaiter {
    result: Option<Result<Payload, AckError>>,
    waker: Option<Waker>,
}

struct Inner {
    manager: Mutex<Manager>,
    driver: Mutex<Option<Waker>>,
    handlers: Mutex<Handlers>,
    status: Mutex<StatusBoard>,
    acks: Mutex<HashMap<AckId, AckWaiter>>,
    rt: Arc<dyn Executor>,
}

/// A Socket.IO client manager: one connection, many namespaces, reconnection.
/// Cheap to clone.
#[derive(Clone)]
pub struct SioClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for SioClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SioClient").finish_non_exhaustive()
    }
}

/// The [`Manager`] as the driver's [`Pilot`] sees it: shared with the handles.
pub(crate) struct SharedManager(SioClient);

impl fmt::Debug for SharedManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedManager").finish_non_exhaustive()
    }
}

impl crate::ClientMachine for SharedManager {
    type Event = ClientEvent;
    fn handle_http_response(&mut self, now: Instant, id: RequestId, status: u16, body: Bytes) {
        self.0.manager().handle_http_response(now, id, status, body)
    }
    fn handle_http_failed(&mut self, now: Instant, id: RequestId) {
        self.0.manager().handle_http_failed(now, id)
    }
    fn handle_ws_opened(&mut self, now: Instant, id: WsId) {
        self.0.manager().handle_ws_opened(now, id)
    }
    fn handle_ws_message(&mut self, now: Instant, id: WsId, message: &Message) {
        self.0.manager().handle_ws_message(now, id, message)
    }
    fn handle_ws_closed(&mut self, now: Instant, id: WsId) {
        self.0.manager().handle_ws_closed(now, id)
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.0.manager().handle_timeout(now)
    }
    fn poll_action(&mut self) -> Option<Action> {
        self.0.manager().poll_action()
    }
    fn poll_event(&mut self) -> Option<ClientEvent> {
        self.0.manager().poll_event()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.0.manager().poll_timeout()
    }
    fn is_final(event: &ClientEvent) -> bool {
        matches!(event, ClientEvent::Closed)
    }
}

impl SioClient {
    /// A manager with `config` on `rt`; `seed` seeds the reconnection jitter. Nothing
    /// connects until [`socket`](Self::socket); run [`drive`](Self::drive) on a task
    /// ([`io`](crate::sio::io) does both).
    pub fn new<R: Runtime>(rt: &R, config: ClientConfig, seed: [u8; 32]) -> Self {
        Self {
            inner: Arc::new(Inner {
                manager: Mutex::new(Manager::new(config, seed)),
                driver: Mutex::new(None),
                handlers: Mutex::new(Handlers::default()),
                status: Mutex::new((HashMap::new(), crate::Waiters::default())),
                acks: Mutex::new(HashMap::new()),
                rt: Arc::new(rt.clone()),
            }),
        }
    }

    fn manager(&self) -> MutexGuard<'_, Manager> {
        lock(&self.inner.manager)
    }

    fn now(&self) -> Instant {
        self.inner.rt.now()
    }

    fn wake_driver(&self) {
        if let Some(w) = lock(&self.inner.driver).take() {
            w.wake();
        }
    }

    /// Carries out the manager's I/O over `rt`'s connections to the server at `url`
    /// and calls the handlers, until the manager is done. `seed` seeds the WebSocket
    /// masking keys.
    pub async fn drive<R: Runtime>(
        self,
        rt: R,
        url: Url,
        connector: crate::Connector,
        seed: [u8; 32],
    ) {
        let mut pilot = Pilot::with_machine(SharedManager(self.clone()), rt, url, connector, seed);
        loop {
            let event = poll_fn(|cx| {
                *lock(&self.inner.driver) = Some(cx.waker().clone());
                pilot.poll_event(cx)
            })
            .await;
            match event {
                Some(e) => self.dispatch(e),
                None => return,
            }
        }
    }

    /// The socket for namespace `nsp`, connecting it with `auth` (an object, or
    /// `Value::Null`).
    pub fn socket(&self, nsp: &str, auth: Value) -> ClientSocket {
        let nsp: Arc<str> = Arc::from(nsp);
        lock(&self.inner.status)
            .0
            .insert(nsp.clone(), Status::Pending);
        let now = self.now();
        let _ = self.manager().socket(now, &nsp, auth);
        self.wake_driver();
        ClientSocket {
            client: self.clone(),
            nsp,
        }
    }

    /// Calls `f(attempt)` when a reconnection attempt starts.
    pub fn on_reconnect_attempt(&self, f: impl Fn(u32) + Send + Sync + 'static) {
        lock(&self.inner.handlers)
            .reconnect_attempt
            .push(Arc::new(f));
    }

    /// Calls `f(attempts)` once reconnected.
    pub fn on_reconnect(&self, f: impl Fn(u32) + Send + Sync + 'static) {
        lock(&self.inner.handlers).reconnect.push(Arc::new(f));
    }

    /// Calls `f()` when a reconnection attempt fails.
    pub fn on_reconnect_error(&self, f: impl Fn() + Send + Sync + 'static) {
        lock(&self.inner.handlers).reconnect_error.push(Arc::new(f));
    }

    /// Calls `f()` when the client gives up reconnecting.
    pub fn on_reconnect_failed(&self, f: impl Fn() + Send + Sync + 'static) {
        lock(&self.inner.handlers)
            .reconnect_failed
            .push(Arc::new(f));
    }

    /// Closes every namespace and the connection; no reconnection.
    pub fn close(&self) {
        let now = self.now();
        self.manager().close(now);
        self.wake_driver();
    }

    fn set_status(&self, nsp: &Arc<str>, status: Status) {
        let mut s = lock(&self.inner.status);
        s.0.insert(nsp.clone(), status);
        s.1.wake_all();
    }

    fn ns_handlers<R>(&self, nsp: &Arc<str>, f: impl FnOnce(&NsHandlers) -> R) -> Option<R> {
        lock(&self.inner.handlers).namespaces.get(nsp).map(f)
    }

    /// One event from the manager, to the handlers (called by the driver only).
    fn dispatch(&self, event: ClientEvent) {
        match event {
            ClientEvent::Open | ClientEvent::Close(_) => {}
            ClientEvent::Connect { nsp, recovered, .. } => {
                self.set_status(&nsp, Status::Connected { recovered });
                let cbs = self
                    .ns_handlers(&nsp, |h| h.connect.clone())
                    .unwrap_or_default();
                for cb in cbs {
                    cb(recovered);
                }
            }
            ClientEvent::ConnectError { nsp, message, data } => {
                let failure = ClientConnectError { message, data };
                // A transport failure is not final while reconnection will retry.
                let final_error = !self.manager().is_active(&nsp);
                if final_error {
                    self.set_status(&nsp, Status::Failed(failure.clone()));
                }
                let cbs = self
                    .ns_handlers(&nsp, |h| h.connect_error.clone())
                    .unwrap_or_default();
                for cb in cbs {
                    cb(&failure);
                }
            }
            ClientEvent::Disconnect { nsp, reason } => {
                let status = match reason {
                    ClientDisconnectReason::IoServerDisconnect
                    | ClientDisconnectReason::IoClientDisconnect => {
                        Status::Failed(ClientConnectError {
                            message: reason.as_str().to_owned(),
                            data: None,
                        })
                    }
                    _ => Status::Pending,
                };
                self.set_status(&nsp, status);
                let cbs = self
                    .ns_handlers(&nsp, |h| h.disconnect.clone())
                    .unwrap_or_default();
                for cb in cbs {
                    cb(reason);
                }
            }
            ClientEvent::Event {
                nsp,
                name,
                payload,
                ack,
            } => {
                let (any, listeners) = self
                    .ns_handlers(&nsp, |h| {
                        let listeners: Vec<EventCb> = h
                            .events
                            .get(&name)
                            .map(|l| l.iter().map(|(_, cb)| cb.clone()).collect())
                            .unwrap_or_default();
                        (h.any.clone(), listeners)
                    })
                    .unwrap_or_default();
                for a in any {
                    a(&name, &payload);
                }
                let ack = ack.map(|id| ClientAck {
                    client: self.clone(),
                    nsp: nsp.clone(),
                    id,
                    sent: Arc::new(AtomicBool::new(false)),
                });
                // Every listener but the last gets a copy of the payload.
                let mut payload = Some(payload);
                let count = listeners.len();
                for (i, cb) in listeners.into_iter().enumerate() {
                    let Some(p) = (if i + 1 == count {
                        payload.take()
                    } else {
                        payload.clone()
                    }) else {
                        break;
                    };
                    cb(p, ack.clone());
                }
            }
            ClientEvent::Ack { ack, result, .. } => {
                if let Some(w) = lock(&self.inner.acks).get_mut(&ack) {
                    w.result = Some(result);
                    if let Some(waker) = w.waker.take() {
                        waker.wake();
                    }
                }
            }
            ClientEvent::ReconnectAttempt(n) => {
                let cbs = lock(&self.inner.handlers).reconnect_attempt.clone();
                for cb in cbs {
                    cb(n);
                }
            }
            ClientEvent::Reconnect(n) => {
                let cbs = lock(&self.inner.handlers).reconnect.clone();
                for cb in cbs {
                    cb(n);
                }
            }
            ClientEvent::ReconnectError => {
                let cbs = lock(&self.inner.handlers).reconnect_error.clone();
                for cb in cbs {
                    cb();
                }
            }
            ClientEvent::ReconnectFailed => {
                let cbs = lock(&self.inner.handlers).reconnect_failed.clone();
                for cb in cbs {
                    cb();
                }
            }
            ClientEvent::Closed => {
                let names: Vec<Arc<str>> = lock(&self.inner.status).0.keys().cloned().collect();
                for nsp in names {
                    let connected = matches!(
                        lock(&self.inner.status).0.get(&nsp),
                        Some(Status::Connected { .. })
                    );
                    if !connected {
                        self.set_status(
                            &nsp,
                            Status::Failed(ClientConnectError {
                                message: "the client is closed".into(),
                                data: None,
                            }),
                        );
                    }
                }
            }
        }
    }
}

/// One listener added with [`ClientSocket::on`], to remove with
/// [`ClientSocket::off_listener`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Listener(u64);

impl Listener {
    fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// The way back to a server event that asked for an ack.
#[derive(Clone)]
pub struct ClientAck {
    client: SioClient,
    nsp: Arc<str>,
    id: u64,
    /// Shared by the clones that the event's listeners get: one answer goes out.
    sent: Arc<AtomicBool>,
}

impl fmt::Debug for ClientAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAck")
            .field("nsp", &self.nsp)
            .field("id", &self.id)
            .finish()
    }
}

impl ClientAck {
    /// Answers with one argument.
    pub fn send<T: Serialize + ?Sized>(&self, data: &T) -> Result<(), serde_json::Error> {
        self.send_payload(Payload::from_value(data)?);
        Ok(())
    }

    /// Answers with these arguments (dropped if the namespace disconnected meanwhile,
    /// or if this event was answered already).
    pub fn send_payload(&self, payload: Payload) {
        if self.sent.swap(true, Ordering::SeqCst) {
            return;
        }
        let now = self.client.now();
        let _ = self.client.manager().ack(now, &self.nsp, self.id, payload);
        self.client.wake_driver();
    }
}

/// A namespace socket of a [`SioClient`].
#[derive(Clone)]
pub struct ClientSocket {
    client: SioClient,
    nsp: Arc<str>,
}

impl fmt::Debug for ClientSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSocket")
            .field("nsp", &self.nsp)
            .finish_non_exhaustive()
    }
}

impl ClientSocket {
    /// Its manager (`socket.io`).
    pub fn io(&self) -> &SioClient {
        &self.client
    }

    /// The namespace.
    pub fn nsp(&self) -> &str {
        &self.nsp
    }

    /// The socket id while connected.
    pub fn id(&self) -> Option<String> {
        self.client.manager().sid(&self.nsp).map(str::to_owned)
    }

    /// Connected now.
    pub fn connected(&self) -> bool {
        self.client.manager().is_connected(&self.nsp)
    }

    /// Waits until the socket is connected: `Ok(recovered)`, or why it will not
    /// connect (refused by the server, disconnected on purpose, client closed).
    pub async fn wait_connected(&self) -> Result<bool, ClientConnectError> {
        let mut waiting = crate::WaitId::new(|id| lock(&self.client.inner.status).1.remove(id));
        poll_fn(|cx| {
            let mut s = lock(&self.client.inner.status);
            match s.0.get(&self.nsp) {
                Some(Status::Connected { recovered }) => Poll::Ready(Ok(*recovered)),
                Some(Status::Failed(f)) => Poll::Ready(Err(f.clone())),
                _ => {
                    s.1.register(&mut waiting.id, cx.waker());
                    Poll::Pending
                }
            }
        })
        .await
    }

    fn with_handlers(&self, f: impl FnOnce(&mut NsHandlers)) {
        let mut h = lock(&self.client.inner.handlers);
        f(h.namespaces.entry(self.nsp.clone()).or_default());
    }

    /// Adds a listener for event `name`: `f(payload, ack)`, where `ack` is there when
    /// the server asked for one (the first answer of any listener is sent, later ones
    /// are dropped). An event's listeners run in the order added, on the driver task:
    /// spawn long work. The returned [`Listener`] removes this one with
    /// [`off_listener`](Self::off_listener).
    pub fn on(
        &self,
        name: &str,
        f: impl Fn(Payload, Option<ClientAck>) + Send + Sync + 'static,
    ) -> Listener {
        let listener = Listener::next();
        self.with_handlers(|h| {
            h.events
                .entry(name.to_owned())
                .or_default()
                .push((listener, Arc::new(f)));
        });
        listener
    }

    /// Removes every listener of event `name`.
    pub fn off(&self, name: &str) {
        self.with_handlers(|h| {
            h.events.remove(name);
        });
    }

    /// Removes one listener (a no-op if it was removed already).
    pub fn off_listener(&self, listener: Listener) {
        self.with_handlers(|h| {
            h.events.retain(|_, listeners| {
                listeners.retain(|(l, _)| *l != listener);
                !listeners.is_empty()
            });
        });
    }

    /// Sees every event first (`onAny`).
    pub fn on_any(&self, f: impl Fn(&str, &Payload) + Send + Sync + 'static) {
        self.with_handlers(|h| h.any.push(Arc::new(f)));
    }

    /// Calls `f(recovered)` on every connection.
    pub fn on_connect(&self, f: impl Fn(bool) + Send + Sync + 'static) {
        self.with_handlers(|h| h.connect.push(Arc::new(f)));
    }

    /// Calls `f(reason)` on every disconnection.
    pub fn on_disconnect(&self, f: impl Fn(ClientDisconnectReason) + Send + Sync + 'static) {
        self.with_handlers(|h| h.disconnect.push(Arc::new(f)));
    }

    /// Calls `f(error)` when the connection is refused or cannot be made.
    pub fn on_connect_error(&self, f: impl Fn(&ClientConnectError) + Send + Sync + 'static) {
        self.with_handlers(|h| h.connect_error.push(Arc::new(f)));
    }

    /// Emits `name` with one argument (buffered while disconnected, up to
    /// [`ClientConfig::max_buffered`]).
    pub fn emit<T: Serialize + ?Sized>(&self, name: &str, data: &T) -> Result<(), ClientEmitError> {
        self.emit_payload(name, Payload::from_value(data)?)
    }

    /// Emits `name` with these arguments (JSON and binary).
    pub fn emit_payload(&self, name: &str, payload: Payload) -> Result<(), ClientEmitError> {
        let now = self.client.now();
        self.client.manager().emit(now, &self.nsp, name, payload)?;
        self.client.wake_driver();
        Ok(())
    }

    /// Emits `name` and waits for the server's ack, at most `timeout` (`emitWithAck`).
    pub async fn emit_with_ack(
        &self,
        name: &str,
        payload: Payload,
        timeout: Option<Duration>,
    ) -> Result<Payload, ClientEmitError> {
        let now = self.client.now();
        let id = {
            let mut m = self.client.manager();
            let id = m.emit_with_ack(now, &self.nsp, name, payload, timeout)?;
            lock(&self.client.inner.acks).insert(
                id,
                AckWaiter {
                    result: None,
                    waker: None,
                },
            );
            id
        };
        self.client.wake_driver();
        let result = poll_fn(|cx| {
            let mut acks = lock(&self.client.inner.acks);
            let Some(w) = acks.get_mut(&id) else {
                return Poll::Ready(Err(AckError::Disconnected));
            };
            match w.result.take() {
                Some(r) => {
                    acks.remove(&id);
                    Poll::Ready(r)
                }
                None => {
                    w.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        result.map_err(ClientEmitError::Ack)
    }

    /// A view of this socket whose acks time out after `timeout` (`socket.timeout`).
    pub fn timeout(&self, timeout: Duration) -> TimedSocket<'_> {
        TimedSocket {
            socket: self,
            timeout,
        }
    }

    /// Leaves the namespace (`io client disconnect`); the connection closes when no
    /// namespace is left.
    pub fn disconnect(&self) {
        let now = self.client.now();
        self.client.manager().disconnect(now, &self.nsp);
        self.client.wake_driver();
    }

    /// Connects again after [`disconnect`](Self::disconnect) or a refusal, with `auth`.
    pub fn connect(&self, auth: Value) {
        self.client.set_status(&self.nsp, Status::Pending);
        let now = self.client.now();
        let _ = self.client.manager().socket(now, &self.nsp, auth);
        self.client.wake_driver();
    }
}

/// [`ClientSocket::timeout`]: emits whose acks time out.
#[derive(Clone, Copy, Debug)]
pub struct TimedSocket<'a> {
    socket: &'a ClientSocket,
    timeout: Duration,
}

impl TimedSocket<'_> {
    /// Emits `name` with one argument and waits for the ack.
    pub fn emit_with_ack<T: Serialize + ?Sized>(
        &self,
        name: &str,
        data: &T,
    ) -> impl Future<Output = Result<Payload, ClientEmitError>> + '_ {
        let payload = Payload::from_value(data).map_err(ClientEmitError::from);
        let name = name.to_owned();
        async move {
            self.socket
                .emit_with_ack(&name, payload?, Some(self.timeout))
                .await
        }
    }
}

/// Why an emit failed.
#[derive(Debug)]
pub enum ClientEmitError {
    /// The data does not serialise.
    Serialize(serde_json::Error),
    /// The manager refused it (closed, buffer full, unknown namespace).
    Client(ClientError),
    /// No ack (timeout or disconnection).
    Ack(AckError),
}

impl fmt::Display for ClientEmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Serialize(e) => write!(f, "cannot serialise the payload: {e}"),
            Self::Client(e) => e.fmt(f),
            Self::Ack(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ClientEmitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Serialize(e) => Some(e),
            Self::Client(e) => Some(e),
            Self::Ack(e) => Some(e),
        }
    }
}

impl From<serde_json::Error> for ClientEmitError {
    fn from(e: serde_json::Error) -> Self {
        Self::Serialize(e)
    }
}

impl From<ClientError> for ClientEmitError {
    fn from(e: ClientError) -> Self {
        Self::Client(e)
    }
}

/// Options for [`io`](crate::sio::io): the client
/// configuration and the auth payload of the first namespace.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct IoOptions {
    /// The manager's configuration.
    pub config: ClientConfig,
    /// The auth payload.
    pub auth: Value,
    /// How the server is reached: TLS roots, headers sent with every request.
    pub connector: crate::Connector,
}

impl IoOptions {
    /// Sets the auth payload.
    pub fn auth(mut self, auth: Value) -> Self {
        self.auth = auth;
        self
    }

    /// Sets the manager's configuration.
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets how the server is reached (TLS roots, headers sent with every request).
    pub fn connector(mut self, connector: crate::Connector) -> Self {
        self.connector = connector;
        self
    }
}

/// Splits `http://host:port/nsp` into the server's URL and the namespace (`/` if
/// none).
pub(crate) fn split_url(url: &str) -> Result<(Url, String), UrlError> {
    let url = crate::connector::parse_url(url, &[Scheme::Http, Scheme::Ws])?;
    let path = url.path();
    let nsp = if path == "/" {
        "/".to_owned()
    } else {
        path.trim_end_matches('/').to_owned()
    };
    Ok((url, nsp))
}
