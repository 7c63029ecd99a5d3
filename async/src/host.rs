//! [`Host`]: an Engine.IO-based endpoint (Engine.IO itself, or Socket.IO on top of it)
//! served over many connections.
//!
//! One sans-IO [`Endpoint`] is shared (behind a mutex held only for the synchronous
//! calls into it) by every connection future and one timer future. Its outputs are
//! sorted into mailboxes — the response for a parked poll, the packets for a WebSocket
//! transport — and the future waiting on each mailbox is woken; a broadcast frame is
//! instead written straight into each WebSocket transport's socket that has nothing
//! waiting (see `Shared::dispatch`), so its task is not woken at all. A WebSocket
//! transport's task learns of its mailbox through a `Bell` beside its socket, so it
//! takes the lock only when there is something for it, to hand over what it read, or
//! to report what it wrote; tasks are woken once the lock is released. Each upgraded
//! connection drives its own [`WsLink`]: frames are decoded, inflated, encoded and
//! compressed in the connection's task with the lock released, and Socket.IO's JSON
//! parsed there too (as it is for polling payloads, through the endpoint's
//! [`eio::Preparer`]), so one connection's large messages do not hold up the others.
//! The serve loops (`eio::serve`, `sio::serve`) spawn [`Host::serve_connection`] for
//! every accepted connection, and `eio::server`/`sio::server` spawn
//! [`Host::run_timers`] once. [`EioServer`] is the Engine.IO host. The lock is the host's own: handles never
//! expose it, so the state can later be sharded per worker without an API change.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Clock, Direct, Executor, Outbox, Runtime, Transport, WebSocket};
use crate::forward::{Forward, Pending, Tunnel};
use crate::router::{Handled, Router, Upgrade};
use wirestate_engine::eio::{
    self, Data, PollId, Reply, SendError, SessionId, Transmit, TransportId, WsInput, WsLink,
    WsOutput,
};
use wirestate_engine::http::{Request, Response, ServerConn};
use wirestate_engine::ws;
use wirestate_engine::Endpoint;
use wirestate_engine::IdMap;

/// Takes a host's events as they happen (a Socket.IO server's dispatch). Called with
/// no lock held, one event at a time, never concurrently (events keep their order).
pub(crate) type EventHook<E> = Arc<dyn Fn(E) + Send + Sync>;

/// Limits for the HTTP side of an [`EioServer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpLimits {
    /// Largest request head (default 8 KiB; larger: 431).
    pub max_head_size: usize,
    /// How long an idle or half-sent request may hold a connection before it is closed
    /// (default 30 s): keep-alive connections do not live forever, and a client that
    /// trickles a request head (slowloris) is cut off. It counts from when the last
    /// response was written, not queued.
    pub request_timeout: Duration,
    /// How long a connection may make no write progress while it has bytes to write
    /// (default 20 s) before it is dropped: a peer that stops reading releases its
    /// socket and queued bytes within this time, whether or not its session has ended.
    pub write_timeout: Duration,
    /// Most connections served at once (default: no cap). At the cap the accept loop
    /// stops accepting; new connections wait in the listener's backlog until one ends.
    pub max_connections: Option<usize>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_head_size: 8 << 10,
            request_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(20),
            max_connections: None,
        }
    }
}

impl HttpLimits {
    /// Sets [`HttpLimits::write_timeout`].
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Sets [`HttpLimits::max_connections`].
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = Some(connections);
        self
    }

    /// Sets [`HttpLimits::request_timeout`].
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`HttpLimits::max_head_size`].
    pub fn max_head_size(mut self, bytes: usize) -> Self {
        self.max_head_size = bytes;
        self
    }
}

struct Shared<E: Endpoint> {
    server: E,
    responses: IdMap<PollId, Response>,
    ws_out: IdMap<TransportId, Outputs>,
    /// Transports to drop at once (slow consumers).
    ws_aborted: IdMap<TransportId, ()>,
    /// The wires of upgraded WebSocket transports, for writing broadcasts to them
    /// directly (see [`Shared::dispatch`]).
    wires: IdMap<TransportId, Arc<dyn DirectWrite>>,
    /// Bytes of outputs written directly during a dispatch, for the endpoint.
    written_direct: Vec<(TransportId, usize)>,
    /// The transmits a dispatch takes at once (empty between dispatches; kept for its
    /// room).
    transmit_group: Vec<Transmit>,
    /// The tasks of parked polls, woken when their response is given. (A WebSocket
    /// transport's task is woken through its wire's [`Bell`].)
    poll_wakers: IdMap<PollId, Waker>,
    events: VecDeque<E::Event>,
    /// An empty queue with room, swapped with `events` by the next drainer (so that
    /// taking a batch of events allocates nothing).
    spare_events: VecDeque<E::Event>,
    event_waker: Option<Waker>,
    timer_waker: Option<Waker>,
    armed: Option<Instant>,
    /// Someone is passing events to the hook.
    draining: bool,
    /// Connections in WebSocket or parked-poll mode.
    busy: usize,
    idle_wakers: crate::Waiters,
    /// Wakers to wake once the lock is released ([`HostGuard`]): a wake may make a
    /// system call (to start an idle worker thread), not to be made while every other
    /// connection waits for the lock.
    to_wake: Vec<Waker>,
}

/// What the endpoint addressed to one WebSocket transport, waiting for its task: most
/// often a single output, held without a vector.
#[derive(Default)]
enum Outputs {
    #[default]
    None,
    One(WsOutput),
    Many(Vec<WsOutput>),
}

impl Outputs {
    fn push(&mut self, output: WsOutput) {
        *self = match std::mem::take(self) {
            Self::None => Self::One(output),
            Self::One(first) => Self::Many(vec![first, output]),
            Self::Many(mut all) => {
                all.push(output);
                Self::Many(all)
            }
        };
    }

    /// Each output, in order.
    fn for_each(self, mut f: impl FnMut(WsOutput)) {
        match self {
            Self::None => {}
            Self::One(output) => f(output),
            Self::Many(all) => all.into_iter().for_each(f),
        }
    }
}

/// The host's lock, held: on release, it wakes the tasks that what was done under it
/// woke.
struct HostGuard<'a, E: Endpoint>(Option<MutexGuard<'a, Shared<E>>>);

impl<E: Endpoint> std::ops::Deref for HostGuard<'_, E> {
    type Target = Shared<E>;

    fn deref(&self) -> &Shared<E> {
        self.0
            .as_deref()
            .unwrap_or_else(|| unreachable!("held until dropped"))
    }
}

impl<E: Endpoint> std::ops::DerefMut for HostGuard<'_, E> {
    fn deref_mut(&mut self) -> &mut Shared<E> {
        self.0
            .as_deref_mut()
            .unwrap_or_else(|| unreachable!("held until dropped"))
    }
}

std::thread_local! {
    /// An empty vector with room, swapped with a host's `to_wake` as its lock is
    /// released (so that waking allocates nothing).
    static SPARE_WAKES: std::cell::Cell<Vec<Waker>> = const { std::cell::Cell::new(Vec::new()) };
}

impl<E: Endpoint> Drop for HostGuard<'_, E> {
    fn drop(&mut self) {
        let Some(mut s) = self.0.take() else {
            return;
        };
        if s.to_wake.is_empty() {
            return;
        }
        let mut wakes = SPARE_WAKES.take();
        std::mem::swap(&mut wakes, &mut s.to_wake);
        drop(s);
        for w in wakes.drain(..) {
            w.wake();
        }
        SPARE_WAKES.set(wakes);
    }
}

impl<E: Endpoint> Shared<E> {
    /// Sorts the server's outputs into mailboxes and wakes whoever waits on them.
    ///
    /// A frame encoded once for many transports (a broadcast) is written straight to
    /// each transport that has nothing else waiting, from here, without waking its task
    /// (the task is woken only for what the socket did not take at once); the others
    /// get it in their mailbox, behind what they already have, so each transport's
    /// outputs keep their order.
    fn dispatch(&mut self) {
        loop {
            self.dispatch_transmits();
            if self.written_direct.is_empty() {
                break;
            }
            // Told after the loop above: this may queue more.
            for (transport, bytes) in std::mem::take(&mut self.written_direct) {
                self.server.handle_ws_written(transport, bytes);
            }
        }
        self.dispatch_events();
    }

    fn dispatch_transmits(&mut self) {
        while let Some(first) = self.server.poll_transmit() {
            let Some(second) = self.server.poll_transmit() else {
                // The common case (an answer, an echo): one transmit, no group.
                self.dispatch_transmit(first);
                continue;
            };
            let mut group = std::mem::take(&mut self.transmit_group);
            group.extend([first, second]);
            let server = &mut self.server;
            group.extend(std::iter::from_fn(|| server.poll_transmit()).take(TRANSMIT_GROUP - 2));
            // A broadcast's frames go to wires a cache miss away each: read every wire
            // of the group first, so that those misses overlap, instead of each
            // stalling before its own write (a system call, which nothing crosses).
            for t in &group {
                if let Transmit::Ws {
                    transport,
                    output: WsOutput::Prepared(_),
                } = t
                {
                    if let Some(wire) = self.wires.get(transport) {
                        wire.touch();
                    }
                }
            }
            for t in group.drain(..) {
                self.dispatch_transmit(t);
            }
            self.transmit_group = group;
        }
    }

    fn dispatch_transmit(&mut self, t: Transmit) {
        let transport = match t {
            Transmit::Respond { poll, response } => {
                self.responses.insert(poll, response);
                if let Some(w) = self.poll_wakers.remove(&poll) {
                    self.to_wake.push(w);
                }
                return;
            }
            Transmit::Ws { transport, output } => {
                if let (WsOutput::Prepared(frame), false, Some(wire)) = (
                    &output,
                    self.ws_out.contains_key(&transport),
                    self.wires.get(&transport),
                ) {
                    let direct = wire.try_write(frame.frame());
                    if direct != Direct::Refused {
                        self.written_direct.push((transport, output.counted()));
                    }
                    match direct {
                        Direct::Whole => return,
                        // The task writes the rest.
                        Direct::Partial => {
                            wire.bell().ring(&mut self.to_wake);
                            return;
                        }
                        Direct::Refused => {}
                    }
                }
                self.ws_out.entry(transport).or_default().push(output);
                transport
            }
            Transmit::AbortTransport(transport) => {
                self.ws_aborted.insert(transport, ());
                self.ws_out.remove(&transport);
                transport
            }
        };
        // Not upgraded yet: its task looks at its mailbox when it starts.
        if let Some(wire) = self.wires.get(&transport) {
            wire.bell().ring(&mut self.to_wake);
        }
    }

    fn dispatch_events(&mut self) {
        let mut any = false;
        while let Some(e) = self.server.poll_event() {
            self.events.push_back(e);
            any = true;
        }
        if any {
            if let Some(w) = self.event_waker.take() {
                self.to_wake.push(w);
            }
        }
        let next = self.server.poll_timeout();
        if next != self.armed {
            if let Some(w) = self.timer_waker.take() {
                self.to_wake.push(w);
            }
        }
        self.wake_if_idle();
    }

    fn wake_if_idle(&mut self) {
        if self.busy == 0 && self.server.is_idle() {
            self.to_wake.extend(self.idle_wakers.take());
        }
    }
}

/// How many transmits a dispatch takes at once (see [`Shared::dispatch_transmits`]).
const TRANSMIT_GROUP: usize = 16;

/// A WebSocket transport's socket, as a publisher sees it.
trait DirectWrite: Send + Sync {
    /// Writes `frame` now, if nothing else waits to go out before it.
    fn try_write(&self, frame: &Bytes) -> Direct;

    /// Wakes the transport's task to look at its mailbox.
    fn bell(&self) -> &Bell;

    /// Reads the wire's first bytes, so that a write soon after finds them in the cache.
    fn touch(&self) {
        std::hint::black_box(self.bell().rung.load(Ordering::Relaxed));
    }
}

/// How a WebSocket transport's task learns that its mailbox has something (outputs,
/// an abort, the rest of a direct write) without taking the host's lock to look: the
/// dispatcher rings it, under the host's lock, after filling the mailbox; the task
/// registers its waker, then answers (clears) it, and takes the host's lock only if it
/// was rung. A ring after the answer wakes the registered waker, so none is lost.
///
/// While the task runs (between [`enter`](Bell::enter) and [`leave`](Bell::leave)) a
/// ring wakes nobody: the task answers before it sleeps. Most rings come from the task
/// itself (a handler it ran answered an ack, or emitted to its own socket), and a wake
/// then cost the task a second poll that found nothing to do.
#[derive(Default)]
struct Bell {
    rung: AtomicBool,
    waker: Mutex<Option<Waker>>,
    /// The task is being polled, and answers before it returns.
    running: AtomicBool,
}

impl Bell {
    /// Rings it: the task's waker goes into `to_wake`, unless it was rung and not
    /// answered yet (then the task was woken already, and its answer will say so), or
    /// the task is running (it answers before it returns; see [`leave`](Bell::leave)).
    fn ring(&self, to_wake: &mut Vec<Waker>) {
        // SeqCst here and in `leave`: either this sees the task still running, and the
        // task then sees the ring when it leaves, or the task has left and is woken.
        if self.rung.swap(true, Ordering::SeqCst) || self.running.load(Ordering::SeqCst) {
            return;
        }
        if let Some(w) = &*self.waker.lock().unwrap_or_else(|e| e.into_inner()) {
            to_wake.push(w.clone());
        }
    }

    /// The task starts a poll: rings from now on leave its waker alone.
    fn enter(&self) {
        self.running.store(true, Ordering::SeqCst);
    }

    /// The task ends a poll. Whether it was rung since its last answer (a ring it
    /// will not see otherwise: it must poll again).
    fn leave(&self) -> bool {
        self.running.store(false, Ordering::SeqCst);
        self.rung.load(Ordering::SeqCst)
    }

    /// Has `waker` woken by the next ring.
    fn register(&self, waker: &Waker) {
        let mut slot = self.waker.lock().unwrap_or_else(|e| e.into_inner());
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    /// Whether it was rung since the last answer.
    fn answer(&self) -> bool {
        self.rung.swap(false, Ordering::Acquire)
    }
}

/// An upgraded WebSocket connection's wire and bell, registered with the host.
struct Wire<T> {
    bell: Bell,
    state: Mutex<WsWire<T>>,
}

/// The writing side of an upgraded WebSocket connection, shared by its task (which
/// holds it while it runs) and publishers (which try it, never wait for it).
struct WsWire<T> {
    io: T,
    out: Outbox,
    /// Bytes at the front of `out` that are not the link's to settle: what the
    /// connection owed before the link's own, and what a publisher left there.
    owed: usize,
    /// The link is open and everything it produced is in `out`: a frame written now
    /// comes after all of it.
    quiet: bool,
}

impl<T: Transport + Send> DirectWrite for Wire<T> {
    fn bell(&self) -> &Bell {
        &self.bell
    }

    fn try_write(&self, frame: &Bytes) -> Direct {
        let Ok(mut wire) = self.state.try_lock() else {
            return Direct::Refused;
        };
        let wire = &mut *wire;
        if !wire.quiet || !wire.out.is_empty() {
            return Direct::Refused;
        }
        // A waker that does nothing: if the socket is full, the task is woken instead
        // and writes the rest with its own waker.
        let mut cx = Context::from_waker(Waker::noop());
        wire.out.push(frame.clone());
        // An error is the task's to see, on its own next write.
        let _ = wire.out.write_now(&mut wire.io, &mut cx);
        if !wire.out.is_empty() {
            wire.owed += wire.out.len();
            return Direct::Partial;
        }
        // A stream that buffers (TLS) may hold it until flushed: the task does that if
        // it cannot be done now.
        match wire.out.poll_flush(&mut wire.io, &mut cx) {
            Poll::Ready(Ok(())) => Direct::Whole,
            Poll::Ready(Err(_)) | Poll::Pending => Direct::Partial,
        }
    }
}

fn lock_wire<T>(wire: &Mutex<WsWire<T>>) -> MutexGuard<'_, WsWire<T>> {
    wire.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a host serves besides its endpoint's sessions.
pub(crate) struct Routes {
    /// Whether the endpoint's path is served (not for a router served alone).
    pub(crate) endpoint: bool,
    /// Plain WebSocket routes by exact path, handed to the caller.
    pub(crate) exact: Vec<(String, Arc<ws::Config>)>,
    /// A router: its routes, and the HTTP requests that are for no one else.
    pub(crate) router: Option<Router>,
}

/// The settings of a host, given once when it is made: every clone sees the same.
struct Settings<E: Endpoint> {
    rt: Arc<dyn Executor>,
    limits: HttpLimits,
    routes: Routes,
    hook: Option<EventHook<E::Event>>,
    /// Decodes polling payloads apart from the endpoint.
    preparer: eio::Preparer,
    /// The endpoint's configuration (fixed): which paths are its, and its body limit,
    /// known without the lock.
    eio: eio::Config,
    /// Carries requests for other nodes' sessions while the host is in a cluster.
    forward: RwLock<Option<Arc<dyn Forward>>>,
    /// Takes connections to the shard of this process that owns their session.
    mover: RwLock<Option<Arc<dyn Mover>>>,
}

/// Takes a connection whose WebSocket upgrade is for a session that another shard of
/// this process owns to that shard, which serves it from its request on.
pub(crate) trait Mover: Send + Sync {
    /// Moves `stream` (the connection, as its task serves it) to the shard that owns
    /// `sid`, with `request` (its body: what was read after the head); gives the
    /// stream back if no shard of this process owns it, or it cannot move.
    fn take(
        &self,
        sid: &str,
        stream: Box<dyn std::any::Any + Send>,
        request: &Request,
    ) -> Result<(), Box<dyn std::any::Any + Send>>;
}

/// A stream whose first bytes read are `prefix` (a request already read once, on the
/// thread the stream came from).
pub(crate) struct Prefixed<T> {
    prefix: Bytes,
    io: T,
}

impl<T> Prefixed<T> {
    pub(crate) fn new(prefix: Bytes, io: T) -> Self {
        Self { prefix, io }
    }
}

impl<T: Transport> Transport for Prefixed<T> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if self.prefix.is_empty() {
            return self.io.poll_read(cx, buf);
        }
        let n = buf.len().min(self.prefix.len());
        buf[..n].copy_from_slice(&self.prefix.split_to(n));
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.io.poll_write_vectored(cx, bufs)
    }

    fn poll_write_now(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.io.poll_write_now(cx, bufs)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io.poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io.poll_shutdown(cx)
    }

    fn is_secure(&self) -> bool {
        self.io.is_secure()
    }
}

/// An endpoint served over many connections: cheap to clone, shared by all of them,
/// its settings fixed when it was made.
pub struct Host<E: Endpoint> {
    shared: Arc<Mutex<Shared<E>>>,
    settings: Arc<Settings<E>>,
}

impl<E: Endpoint> Clone for Host<E> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            settings: self.settings.clone(),
        }
    }
}

impl<E: Endpoint> std::fmt::Debug for Host<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("limits", &self.settings.limits)
            .field("routes", &self.settings.routes.exact.len())
            .field("router", &self.settings.routes.router)
            .finish_non_exhaustive()
    }
}

/// An Engine.IO endpoint.
pub type EioServer = Host<eio::Server>;

/// What a connection is doing.
enum Mode {
    Http,
    Parked(PollId),
    Ws(Box<WsLink>),
    /// A WebSocket upgrade for one of the plain routes: leave the loop.
    Handoff(Box<ws::Request>, Arc<ws::Config>),
    /// A WebSocket upgrade for a route of the router: leave the loop and run it.
    Routed(Box<Upgrade>),
    /// A polling request for another node's session, sent there: its answer, and
    /// when to stop waiting for it.
    Forward(Box<Pending>, Instant),
    /// A WebSocket upgrade for another node's session: leave the loop and tunnel the
    /// connection to that node.
    Tunnel(Box<Request>, Arc<dyn Forward>),
}

/// What [`Host::serve_connection`] does after its HTTP phase.
enum Next<T, C, R, U, W> {
    /// It is over: the result (an open WebSocket for the caller, with a plain route's
    /// upgrade).
    Done(io::Result<Option<(String, WebSocket<T, C>)>>),
    /// It goes on as this future.
    Then(Then<R, U, W>),
}

/// The boxed future a connection goes on as: a routed upgrade, a tunnel to the node
/// that owns its session, or an Engine.IO WebSocket.
enum Then<R, U, W> {
    Routed(Pin<Box<R>>),
    Tunnel(Pin<Box<U>>),
    Ws(Pin<Box<W>>),
}

impl<R, U, W> Future for Then<R, U, W>
where
    R: Future<Output = io::Result<()>>,
    U: Future<Output = io::Result<()>>,
    W: Future<Output = io::Result<()>>,
{
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Then::Routed(f) => f.as_mut().poll(cx),
            Then::Tunnel(f) => f.as_mut().poll(cx),
            Then::Ws(f) => f.as_mut().poll(cx),
        }
    }
}

/// [`Host::drive_ws`]'s future. A struct rather than an `async` block around a
/// `poll_fn`, whose closure would hold a reference to each piece of state beside it.
struct WsDriver<'a, T, C, E: Endpoint> {
    host: &'a Host<E>,
    wire: Arc<Wire<T>>,
    clock: C,
    /// Holds the link; its release forgets the wire, however this ends (a cleanly
    /// closed WebSocket is still registered with the host).
    conn: ConnGuard<E>,
    /// `None`: the connection was not a WebSocket (nothing to drive).
    tid: Option<TransportId>,
    stall: Stall,
    /// What was queued before the wire was registered rang no bell: look once.
    look: bool,
    /// Bytes written and not yet reported to the endpoint (see REPORT_WRITTEN).
    unreported: usize,
}

impl<T: Transport + Send + 'static, C: Clock, E: Endpoint> Future for WsDriver<'_, T, C, E> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(tid) = this.tid else {
            return Poll::Ready(Ok(()));
        };
        let (host, wire, clock, conn, stall) = (
            this.host,
            &this.wire,
            &mut this.clock,
            &mut this.conn,
            &mut this.stall,
        );
        let (mut look, mut unreported) = (this.look, this.unreported);
        // Before the bell is answered, so that a ring after the answer wakes us.
        wire.bell.register(cx.waker());
        // Rings until this poll returns do not wake this task: it answers them.
        wire.bell.enter();
        // Held while this task runs: a publisher meanwhile queues to the mailbox.
        let mut guard = lock_wire(&wire.state);
        let w = &mut *guard;
        let done = loop {
            let Mode::Ws(link) = &mut conn.mode else {
                break Poll::Ready(Ok(()));
            };
            unreported += link.take_written();
            let mut outputs = Outputs::None;
            // The host's lock only when the mailbox has something, or much was
            // written.
            if wire.bell.answer() | std::mem::take(&mut look) || unreported >= REPORT_WRITTEN {
                let mut s = host.lock();
                if unreported > 0 {
                    s.server
                        .handle_ws_written(tid, std::mem::take(&mut unreported));
                }
                if s.ws_aborted.contains_key(&tid) {
                    // A slow consumer: dropped with what it did not read.
                    break Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                }
                outputs = s.ws_out.remove(&tid).unwrap_or_default();
            }
            // Encoded and compressed here, with the lock released: with nothing
            // waiting, into this thread's write buffer and written at once (no
            // allocation; what the socket does not take waits in the outbox).
            if !matches!(outputs, Outputs::None) {
                let now = clock.now();
                if w.out.is_empty() {
                    debug_assert_eq!(w.owed, 0, "owed bytes wait in the outbox");
                    let written = super::with_write_buf(|buf| {
                        outputs.for_each(|output| link.handle_output_into(now, output, buf));
                        w.out.write_or_keep(&mut w.io, cx, buf)
                    });
                    match written {
                        Ok(n) => link.handle_written(n),
                        Err(e) => break Poll::Ready(Err(e)),
                    }
                } else {
                    outputs.for_each(|output| link.handle_output(now, output));
                }
            }
            while let Some(b) = link.poll_transmit() {
                w.out.push(b);
            }
            match stall.write(&mut w.out, &mut w.io, cx, &*clock) {
                Ok(written) => {
                    link.handle_written(written.saturating_sub(w.owed));
                    w.owed = w.owed.saturating_sub(written);
                }
                Err(e) => break Poll::Ready(Err(e)),
            }
            if w.out.is_empty() {
                if let Poll::Ready(Err(e)) = w.out.poll_flush(&mut w.io, cx) {
                    break Poll::Ready(Err(e));
                }
                // Asked after the write: the close frame just written may be what
                // it waited for (nothing else would wake this task to look again).
                if link.should_close_transport() {
                    break shutdown(&mut w.io, cx);
                }
            }
            let write_deadline = stall.deadline(host.settings.limits);
            if let Some(deadline) = write_deadline.into_iter().chain(link.poll_timeout()).min() {
                if clock.poll_until(cx, deadline).is_ready() {
                    let now = clock.now();
                    if write_deadline.is_some_and(|d| now >= d) {
                        break Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                    }
                    link.handle_timeout(now);
                    host.deliver_reporting(link, now, &mut unreported);
                    continue;
                }
            } else {
                // An idle WebSocket holds no timer (Engine.IO's heartbeat is
                // the server's, not this task's).
                clock.disarm();
            }
            if w.out.len() > HIGH_WATER {
                break Poll::Pending;
            }
            // The clock is read only when bytes came (most reads here find none).
            let read = super::with_read_buf(|buf| match w.io.poll_read(cx, buf) {
                Poll::Ready(Ok(n)) => {
                    let now = clock.now();
                    // Decoded here, with the lock released.
                    link.handle_input(now, &buf[..n]);
                    Poll::Ready(Ok((n, now)))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            });
            match read {
                Poll::Ready(Ok((0, now))) => {
                    link.handle_eof(now);
                    host.deliver(link, now);
                    conn.release(now);
                    break shutdown(&mut w.io, cx);
                }
                Poll::Ready(Ok((_, now))) => host.deliver_reporting(link, now, &mut unreported),
                Poll::Ready(Err(e)) => break Poll::Ready(Err(e)),
                Poll::Pending => break Poll::Pending,
            }
        };
        // What the link produced meanwhile (an answer to what it read) goes out
        // on its next turn: until then, publishers queue behind it.
        w.quiet = done.is_pending()
            && matches!(&conn.mode, Mode::Ws(link) if link.is_open() && !link.has_output());
        this.look = look;
        this.unreported = unreported;
        if wire.bell.leave() && done.is_pending() {
            // Rung after the loop's last answer (by a publisher, or by this task
            // under the host's lock at the top of the loop): look again.
            cx.waker().wake_by_ref();
        }
        done
    }
}

/// How a connection's HTTP phase ended, and what it hands on.
struct HttpPhase<T, C, E: Endpoint> {
    done: io::Result<()>,
    io: T,
    clock: C,
    http: Box<ServerConn>,
    conn: ConnGuard<E>,
    out: Outbox,
}

/// Reading pauses while this many bytes wait to be written.
const HIGH_WATER: usize = 1 << 20;

/// A WebSocket's task reports the bytes it wrote to the endpoint (for its slow-consumer
/// bound, `max_buffered`) when it takes the host's lock anyway (for its mailbox or an
/// input), or once this many wait to be reported, rather than after every write. As
/// before, what the task wrote on its last turn is reported on its next.
const REPORT_WRITTEN: usize = 64 << 10;

/// The settings of an Engine.IO server, given once to [`eio::server`](crate::eio::server)
/// (a plain [`eio::Config`] converts into them).
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// The Engine.IO protocol settings.
    pub config: eio::Config,
    /// The HTTP limits.
    pub limits: HttpLimits,
    /// Plain WebSocket routes served beside Engine.IO.
    pub routes: Vec<(String, Arc<ws::Config>)>,
    /// A router of plain WebSocket applications served beside Engine.IO: its routes,
    /// and the HTTP requests that are for neither.
    pub router: Option<Router>,
}

impl From<eio::Config> for ServerOptions {
    fn from(config: eio::Config) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }
}

impl ServerOptions {
    /// Sets the HTTP limits.
    pub fn http_limits(mut self, limits: HttpLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Serves plain WebSocket connections on `path` beside Engine.IO: the server's
    /// `serve_connection` hands each such upgrade back to the caller as an open
    /// [`WebSocket`] (`serve_with` runs a handler on it).
    pub fn websocket_route(mut self, path: &str, config: Arc<ws::Config>) -> Self {
        self.routes.push((path.to_owned(), config));
        self
    }

    /// Serves `router` beside Engine.IO on the same port: its WebSocket routes, and
    /// every HTTP request that is not Engine.IO's (its fallback, or 404).
    pub fn router(mut self, router: Router) -> Self {
        self.router = Some(router);
        self
    }
}

impl EioServer {
    /// An endpoint with `options` on `rt`; `seed` seeds session ids (use OS
    /// randomness). Its timers run once [`run_timers`](Host::run_timers) is spawned
    /// ([`eio::server`](crate::eio::server) does both).
    pub fn new<R: Runtime>(rt: &R, options: impl Into<ServerOptions>, seed: [u8; 32]) -> Self {
        let options = options.into();
        let endpoint = eio::Server::new(options.config, seed);
        let routes = Routes {
            endpoint: true,
            exact: options.routes,
            router: options.router,
        };
        Host::with_settings(rt, endpoint, options.limits, routes, None)
    }

    /// A host that serves `router` alone (no Engine.IO path) with `limits`: the
    /// built-in HTTP server of [`router::serve`](crate::router::serve).
    pub(crate) fn for_router<R: Runtime>(rt: &R, router: Router, limits: HttpLimits) -> Self {
        let endpoint = eio::Server::new(eio::Config::default(), [0; 32]);
        let routes = Routes {
            endpoint: false,
            exact: Vec::new(),
            router: Some(router),
        };
        Host::with_settings(rt, endpoint, limits, routes, None)
    }

    /// The next event (open, message, upgrade, close).
    pub async fn next_event(&self) -> eio::Event {
        poll_fn(|cx| {
            let mut s = self.lock();
            match s.events.pop_front() {
                Some(e) => Poll::Ready(e),
                None => {
                    s.event_waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Sends a message to a session.
    pub fn send(&self, sid: &SessionId, data: Data) -> Result<(), SendError> {
        self.with(|s| s.send(sid, data))
    }

    /// Closes a session.
    pub fn close(&self, sid: &SessionId) -> Result<(), SendError> {
        let now = self.now();
        self.with(|s| s.close(now, sid))
    }
}

impl<E: Endpoint> Host<E> {
    /// Serves `server` on `rt` with `limits` and plain WebSocket `routes`; `hook`, if
    /// any, takes every event as it happens.
    pub(crate) fn with_settings<R: Runtime>(
        rt: &R,
        server: E,
        limits: HttpLimits,
        routes: Routes,
        hook: Option<EventHook<E::Event>>,
    ) -> Self {
        Self {
            settings: Arc::new(Settings {
                rt: Arc::new(rt.clone()),
                limits,
                routes,
                hook,
                preparer: server.preparer(),
                eio: server.config().clone(),
                forward: RwLock::new(None),
                mover: RwLock::new(None),
            }),
            shared: Arc::new(Mutex::new(Shared {
                server,
                responses: IdMap::default(),
                ws_out: IdMap::default(),
                ws_aborted: IdMap::default(),
                wires: IdMap::default(),
                written_direct: Vec::new(),
                transmit_group: Vec::new(),
                poll_wakers: IdMap::default(),
                spare_events: VecDeque::new(),
                events: VecDeque::new(),
                event_waker: None,
                timer_waker: None,
                armed: None,
                draining: false,
                busy: 0,
                idle_wakers: crate::Waiters::default(),
                to_wake: Vec::new(),
            })),
        }
    }

    /// The HTTP limits it was made with.
    pub fn limits(&self) -> HttpLimits {
        self.settings.limits
    }

    /// The current time on the host's runtime.
    pub fn now(&self) -> Instant {
        self.settings.rt.now()
    }

    /// Resolves once `deadline` has passed on the host's runtime.
    pub(crate) fn sleep_until(&self, deadline: Instant) -> super::BoxFuture {
        self.settings.rt.sleep_until(deadline)
    }

    /// Runs `future` on the host's runtime.
    pub(crate) fn spawn(&self, future: super::BoxFuture) {
        self.settings.rt.spawn_boxed(future);
    }

    /// Calls into the endpoint (e.g. to send), then carries out what that produced.
    pub fn with<R>(&self, f: impl FnOnce(&mut E) -> R) -> R {
        let (r, events) = {
            let mut s = self.lock();
            let r = f(&mut s.server);
            s.dispatch();
            (r, self.claim_events(&mut s))
        };
        self.run_events(events);
        r
    }

    /// Reads the endpoint's state.
    pub fn inspect<R>(&self, f: impl FnOnce(&E) -> R) -> R {
        f(&self.lock().server)
    }

    /// Passes queued events to the hook, one drainer at a time.
    pub(crate) fn drain_events(&self) {
        let events = self.claim_events(&mut self.lock());
        self.run_events(events);
    }

    /// Under the lock `s`: the queued events, if there is a hook, nobody else is
    /// passing events to it and some are queued; the caller is then the drainer and
    /// must [`run_events`](Self::run_events) them. Taken in the same lock as the call
    /// that queued them, so that a handler's call costs one lock, not three.
    fn claim_events(&self, s: &mut Shared<E>) -> Option<VecDeque<E::Event>> {
        if self.settings.hook.is_none() || s.draining || s.events.is_empty() {
            return None;
        }
        s.draining = true;
        let spare = std::mem::take(&mut s.spare_events);
        Some(std::mem::replace(&mut s.events, spare))
    }

    /// Passes `events` (claimed) to the hook, then those queued meanwhile, a batch per
    /// lock, until none are left.
    fn run_events(&self, events: Option<VecDeque<E::Event>>) {
        let (Some(mut batch), Some(hook)) = (events, &self.settings.hook) else {
            return;
        };
        loop {
            for event in batch.drain(..) {
                // A panicking hook loses its event (the panic hook has reported it) but
                // neither the lock nor the draining flag.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(event)));
            }
            let mut s = self.lock();
            if s.events.is_empty() {
                s.draining = false;
                s.spare_events = batch;
                return;
            }
            std::mem::swap(&mut s.events, &mut batch);
        }
    }

    /// Resolves once no session is open and no connection is carrying one (after a
    /// graceful shutdown, say).
    pub async fn idle(&self) {
        let mut waiting = crate::WaitId::new(|id| self.lock().idle_wakers.remove(id));
        poll_fn(|cx| {
            let mut s = self.lock();
            if s.busy == 0 && s.server.is_idle() {
                Poll::Ready(())
            } else {
                s.idle_wakers.register(&mut waiting.id, cx.waker());
                Poll::Pending
            }
        })
        .await
    }

    fn lock(&self) -> HostGuard<'_, E> {
        // A panic while locked cannot leave the state machine half-updated in a way
        // that matters more than stopping every connection would: keep serving.
        HostGuard(Some(self.shared.lock().unwrap_or_else(|e| e.into_inner())))
    }

    /// How many sessions are open.
    pub fn session_count(&self) -> usize {
        self.lock().server.session_count()
    }

    /// Fires the endpoint's deadlines (heartbeats, upgrade timeouts; each WebSocket's
    /// own are its connection's).
    /// Spawn it once; it runs until the process ends.
    pub async fn run_timers<C: Clock>(&self, mut clock: C) {
        poll_fn(move |cx| loop {
            let mut s = self.lock();
            let next = s.server.poll_timeout();
            s.armed = next;
            s.timer_waker = Some(cx.waker().clone());
            let Some(deadline) = next else {
                return Poll::Pending;
            };
            drop(s);
            if clock.poll_until(cx, deadline).is_pending() {
                return Poll::Pending;
            }
            let mut s = self.lock();
            s.server.handle_timeout(clock.now());
            s.dispatch();
            drop(s);
            self.drain_events();
        })
        .await
    }

    /// Serves one accepted connection until it closes: HTTP requests for the
    /// Engine.IO path, parked polls, and upgraded WebSockets. A WebSocket upgrade for a
    /// route added with [`ServerOptions::websocket_route`] returns the
    /// open connection (with the route's path) for the caller to run; other paths get
    /// 404. `peer_addr`, and whether `io` [is secure](Transport::is_secure), reach
    /// the endpoint with every request (and so the handshake).
    ///
    /// Every exit (an error, the end, or the future dropped) releases what the
    /// connection held in the host; a connection with bytes to write that makes no
    /// progress for [`HttpLimits::write_timeout`] ends with `TimedOut`.
    pub fn serve_connection<T: Transport + Send + 'static, C: Clock + Send + 'static>(
        &self,
        io: T,
        clock: C,
        peer_addr: Option<SocketAddr>,
    ) -> impl Future<Output = io::Result<Option<(String, WebSocket<T, C>)>>> + Send + 'static {
        // Boxed, as is what follows it: the connection's task holds pointers to its
        // phases, each gone when it ends, rather than room for the largest. Made
        // here, so that the future holds the box and not the arguments as well; each
        // holds a handle on the host, so that the future borrows nothing.
        let phase = Box::pin(self.clone().serve_http(io, clock, peer_addr));
        let host = self.clone();
        async move {
            let then = match host.after_http(phase.await) {
                Next::Done(result) => return result,
                Next::Then(then) => then,
            };
            then.await.map(|()| None)
        }
    }

    /// What follows a connection's HTTP phase: its end, or the boxed future of the
    /// WebSocket, tunnel or routed upgrade it became.
    #[allow(clippy::type_complexity)]
    fn after_http<'a, T: Transport + Send + 'static, C: Clock + Send + 'static>(
        &'a self,
        phase: HttpPhase<T, C, E>,
    ) -> Next<
        T,
        C,
        impl Future<Output = io::Result<()>> + 'a,
        impl Future<Output = io::Result<()>> + 'a,
        impl Future<Output = io::Result<()>> + 'a,
    > {
        let HttpPhase {
            done,
            mut io,
            clock,
            mut http,
            mut conn,
            out,
        } = phase;
        match (done, std::mem::replace(&mut conn.mode, Mode::Http)) {
            (Ok(()), Mode::Handoff(request, config)) => {
                drop(conn);
                let rest = http.upgrade(Bytes::new());
                let path = request.path().split('?').next().unwrap_or("/").to_owned();
                let ws = WebSocket::accept_request(io, clock, config, *request, &rest);
                Next::Done(Ok(Some((path, ws))))
            }
            (Ok(()), Mode::Routed(upgrade)) => {
                drop(conn);
                let rest = http.upgrade(Bytes::new());
                drop(http);
                Next::Then(Then::Routed(Box::pin(crate::router::serve_upgrade(
                    *upgrade, io, clock, rest,
                ))))
            }
            (Ok(()), Mode::Tunnel(mut request, forward)) => {
                drop(conn);
                // The bytes read after the head go with it.
                request.body = http.upgrade(Bytes::new());
                let sid = request
                    .head
                    .query_param("sid")
                    .unwrap_or_default()
                    .into_owned();
                // Owned by a shard of this process: the connection itself goes there
                // (its request with it) rather than through a tunnel.
                let mover = (self.settings.mover.read())
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                if let (Some(mover), true) = (mover, out.is_empty()) {
                    match mover.take(&sid, Box::new(io), &request) {
                        Ok(()) => return Next::Done(Ok(None)),
                        Err(back) => match back.downcast::<T>() {
                            Ok(back) => io = *back,
                            Err(_) => return Next::Done(Ok(None)),
                        },
                    }
                }
                let tunnel = forward.open(&sid, *request);
                drop(http);
                Next::Then(Then::Tunnel(Box::pin(self.splice(io, clock, tunnel, out))))
            }
            (Ok(()), mode @ Mode::Ws(_)) => {
                conn.mode = mode;
                drop(http);
                Next::Then(Then::Ws(Box::pin(self.drive_ws(io, clock, conn, out))))
            }
            (done, mode) => {
                // The guard releases what the connection held, however it ended (a
                // cleanly closed WebSocket still has its waker registered).
                conn.mode = mode;
                drop(conn);
                Next::Done(done.map(|()| None))
            }
        }
    }

    /// The HTTP phase of [`serve_connection`](Self::serve_connection): requests until
    /// the connection closes or leaves HTTP (an upgrade, a tunnel).
    async fn serve_http<T: Transport + Send + 'static, C: Clock + Send + 'static>(
        self,
        mut io: T,
        mut clock: C,
        peer_addr: Option<SocketAddr>,
    ) -> HttpPhase<T, C, E> {
        let limits = self.settings.limits;
        let secure = io.is_secure();
        // Boxed: the connection's task is then not sized for it once it has gone (an
        // upgraded connection drops it).
        let mut http = Box::new(
            ServerConn::new(limits.max_head_size, self.max_body_size() + 1024)
                .with_request_timeout(limits.request_timeout, clock.now()),
        );
        let mut out = Outbox::default();
        let mut conn = ConnGuard::new(self.clone());
        let mut read_eof = false;
        let mut stall = Stall::default();
        let done = poll_fn(|cx| {
            loop {
                // Everything queued for this connection goes out first.
                while let Some(b) = http.poll_transmit() {
                    out.push(b);
                }
                let was_empty = out.is_empty();
                if let Err(e) = stall.write(&mut out, &mut io, cx, &clock) {
                    return Poll::Ready(Err(e));
                }
                if out.is_empty() && !was_empty && matches!(conn.mode, Mode::Http) {
                    http.handle_written(clock.now());
                }
                // One deadline at a time on the clock: the write timeout while bytes
                // wait, the request timeout while a request is awaited.
                let write_deadline = stall.deadline(limits);
                let own_deadline = match &conn.mode {
                    Mode::Http if out.is_empty() => http.poll_timeout(),
                    Mode::Forward(_, deadline) => Some(*deadline),
                    _ => None,
                };
                if let Some(deadline) = write_deadline.into_iter().chain(own_deadline).min() {
                    if clock.poll_until(cx, deadline).is_ready() {
                        let now = clock.now();
                        if write_deadline.is_some_and(|d| now >= d) {
                            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                        }
                        if let Mode::Forward(_, deadline) = conn.mode {
                            if now >= deadline {
                                // The owner did not answer in time.
                                http.respond(now, Response::new(504));
                                conn.enter(Mode::Http);
                            }
                            continue;
                        }
                        http.handle_timeout(now);
                        continue;
                    }
                }
                match conn.mode {
                    Mode::Http => {
                        if let Some(mut request) = http.poll_request() {
                            request.peer_addr = peer_addr;
                            request.secure = secure;
                            let mode = self.route(&mut http, request, clock.now());
                            conn.enter(mode);
                            self.drain_events();
                            if matches!(conn.mode, Mode::Ws(_) | Mode::Tunnel(..)) {
                                // The rest of the connection is the WebSocket's.
                                while let Some(b) = http.poll_transmit() {
                                    out.push(b);
                                }
                                return Poll::Ready(Ok(()));
                            }
                            continue;
                        }
                        if http.should_close() && out.is_empty() {
                            return shutdown(&mut io, cx);
                        }
                    }
                    Mode::Handoff(..) | Mode::Routed(_) => {
                        if out.is_empty() {
                            return Poll::Ready(Ok(()));
                        }
                        return Poll::Pending;
                    }
                    Mode::Forward(ref mut pending, _) => {
                        if let Poll::Ready(response) = pending.poll_response(cx) {
                            http.respond(clock.now(), response);
                            conn.enter(Mode::Http);
                            continue;
                        }
                        if !http.wants_input() {
                            return Poll::Pending;
                        }
                    }
                    Mode::Parked(poll) => {
                        if let Poll::Ready(response) = self.poll_parked(poll, cx) {
                            http.respond(clock.now(), response);
                            conn.enter(Mode::Http);
                            continue;
                        }
                        if !http.wants_input() {
                            // Nothing more is read behind a parked poll than a head's
                            // worth; the poll's answer wakes us.
                            return Poll::Pending;
                        }
                    }
                    Mode::Ws(_) | Mode::Tunnel(..) => return Poll::Ready(Ok(())),
                }
                if read_eof || out.len() > HIGH_WATER {
                    if read_eof && matches!(conn.mode, Mode::Http) && out.is_empty() {
                        return shutdown(&mut io, cx);
                    }
                    return Poll::Pending;
                }
                if matches!(conn.mode, Mode::Http) && !http.wants_input() {
                    return Poll::Pending;
                }
                let read = super::with_read_buf(|buf| {
                    let r = io.poll_read(cx, buf);
                    if let Poll::Ready(Ok(n)) = r {
                        http.handle_input(&buf[..n]);
                    }
                    r
                });
                match read {
                    Poll::Ready(Ok(0)) => {
                        read_eof = true;
                        match conn.mode {
                            Mode::Http | Mode::Handoff(..) | Mode::Routed(_) => http.handle_eof(),
                            Mode::Parked(_)
                            | Mode::Ws(_)
                            | Mode::Forward(..)
                            | Mode::Tunnel(..) => {
                                conn.release(clock.now());
                                return shutdown(&mut io, cx);
                            }
                        }
                    }
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await;
        HttpPhase {
            done,
            io,
            clock,
            http,
            conn,
            out,
        }
    }

    /// Runs an upgraded Engine.IO WebSocket (`conn` holds its link) over `io` until it
    /// closes, after writing `out` (what the connection still owed before it).
    ///
    /// The transport and `out` go into the wire before the future is made, and the
    /// future is a struct ([`WsDriver`]): it holds each piece of state once (an `async
    /// fn` would also keep its arguments' slots, and a `poll_fn` closure a reference to
    /// each), so a WebSocket's task is smaller by their size.
    pub(crate) fn drive_ws<'a, T: Transport + Send + 'static, C: Clock + 'a>(
        &'a self,
        io: T,
        clock: C,
        conn: ConnGuard<E>,
        out: Outbox,
    ) -> impl Future<Output = io::Result<()>> + 'a {
        let tid = match &conn.mode {
            Mode::Ws(link) => Some(link.transport()),
            _ => None,
        };
        let wire = Arc::new(Wire {
            bell: Bell::default(),
            state: Mutex::new(WsWire {
                io,
                // Bytes the connection owed before the link's own: not the link's to
                // settle.
                owed: out.len(),
                out,
                quiet: false,
            }),
        });
        if let Some(tid) = tid {
            self.lock().wires.insert(tid, wire.clone());
        }
        WsDriver {
            host: self,
            wire,
            clock,
            conn,
            tid,
            stall: Stall::default(),
            look: true,
            unreported: 0,
        }
    }

    /// The response to parked poll `poll`, once the endpoint has given it; until then
    /// `cx` is woken when it does.
    fn poll_parked(&self, poll: PollId, cx: &mut Context<'_>) -> Poll<Response> {
        let mut s = self.lock();
        match s.responses.remove(&poll) {
            Some(response) => Poll::Ready(response),
            None => {
                s.poll_wakers.insert(poll, cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Hands what a WebSocket decoded (outside the lock) to the endpoint, then runs
    /// the handlers.
    fn deliver(&self, link: &mut WsLink, now: Instant) {
        self.deliver_reporting(link, now, &mut 0);
    }

    /// [`deliver`](Self::deliver), reporting `written` bytes (then zero) in the same
    /// lock.
    fn deliver_reporting(&self, link: &mut WsLink, now: Instant, written: &mut usize) {
        // Decoded before the lock is taken; one input (the usual case) needs no vector.
        let Some(first) = link.poll_input() else {
            return;
        };
        let rest: Vec<WsInput> = std::iter::from_fn(|| link.poll_input()).collect();
        let mut s = self.lock();
        let tid = link.transport();
        if *written > 0 {
            s.server.handle_ws_written(tid, std::mem::take(written));
        }
        for input in std::iter::once(first).chain(rest) {
            s.server.handle_ws_input(now, tid, input);
        }
        s.dispatch();
        let events = self.claim_events(&mut s);
        drop(s);
        self.run_events(events);
    }

    /// Hands one request to the endpoint, if its path is the endpoint's (`None`
    /// otherwise). The caller runs the handlers ([`drain_events`](Self::drain_events))
    /// once it has taken what the reply holds.
    pub(crate) fn handle_request(&self, request: &Request, now: Instant) -> Option<Reply> {
        if !self.matches(request.head.path()) {
            return None;
        }
        // A polling payload (and its JSON) is decoded here, with the lock released.
        let prepared = self.settings.preparer.prepare(request);
        let mut s = self.lock();
        let reply = s.server.handle_prepared(now, request, prepared);
        s.dispatch();
        Some(reply)
    }

    /// Hands upgrades for sessions that another shard of this process owns to
    /// `mover` (`None`: they are tunnelled like any other node's).
    pub(crate) fn set_mover(&self, mover: Option<Arc<dyn Mover>>) {
        *self
            .settings
            .mover
            .write()
            .unwrap_or_else(|e| e.into_inner()) = mover;
    }

    /// Has requests for other nodes' sessions carried by `forward` (`None`: served
    /// here, as unknown sessions).
    pub(crate) fn set_forward(&self, forward: Option<Arc<dyn Forward>>) {
        *self
            .settings
            .forward
            .write()
            .unwrap_or_else(|e| e.into_inner()) = forward;
    }

    /// The forwarder and the session id, if `request` is for a session another node
    /// owns.
    pub(crate) fn foreign(&self, request: &Request) -> Option<(Arc<dyn Forward>, String)> {
        let forward = self
            .settings
            .forward
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let forward = forward.as_ref()?;
        if !self.matches(request.head.path()) {
            return None;
        }
        let sid = request.head.query_param("sid")?;
        forward
            .is_foreign(&sid)
            .then(|| (forward.clone(), sid.into_owned()))
    }

    /// How long a forwarded request waits for its owner: a parked poll is answered
    /// within a ping interval, so past that and the ping timeout the owner is gone.
    pub(crate) fn forward_wait(&self) -> Duration {
        self.settings.eio.ping_interval + self.settings.eio.ping_timeout
    }

    /// Serves an upgrade that another node forwarded: the WebSocket runs here, its
    /// bytes travel over `tunnel` (the request's body: what followed its head).
    pub(crate) async fn serve_tunnel<C: Clock>(
        &self,
        mut tunnel: Tunnel,
        clock: C,
        mut request: Request,
    ) {
        let rest = std::mem::take(&mut request.body);
        let now = clock.now();
        let response = match self.handle_request(&request, now) {
            Some(Reply::Upgrade(mut link)) => {
                if !rest.is_empty() {
                    link.handle_input(now, &rest);
                    self.deliver(&mut link, now);
                }
                let mut conn = ConnGuard::new(self.clone());
                conn.enter(Mode::Ws(link));
                self.drain_events();
                if let Err(e) = self.drive_ws(tunnel, clock, conn, Outbox::default()).await {
                    tracing::debug!(error = %e, "forwarded WebSocket ended with an error");
                }
                return;
            }
            Some(Reply::Respond(response)) => response,
            Some(reply @ Reply::Park(_)) => {
                // Not an upgrade after all: the poll is given up (the guard's drop).
                drop(ConnGuard::holding(self.clone(), reply));
                Response::new(400)
            }
            None => Response::new(404),
        };
        self.drain_events();
        let _ = tunnel.send(response.encode_head(false));
        if !response.body.is_empty() {
            let _ = tunnel.send(response.body);
        }
        tunnel.end();
    }

    /// Copies bytes between a client's connection and a tunnel to the node that serves
    /// it, after writing `out`, until either side ends; the write timeout holds as for
    /// any connection. A tunnel silent for [`forward_wait`](Self::forward_wait) is
    /// given up: its owner pings the client more often than that, so it is gone.
    pub(crate) async fn splice<T: Transport, C: Clock>(
        &self,
        mut io: T,
        mut clock: C,
        mut tunnel: Tunnel,
        mut out: Outbox,
    ) -> io::Result<()> {
        let limits = self.settings.limits;
        let mut stall = Stall::default();
        let mut tunnel_open = true;
        let silence = self.forward_wait();
        let mut heard = clock.now();
        let done = poll_fn(|cx| loop {
            // From the node to the client, while little waits to be written.
            while tunnel_open && out.len() <= HIGH_WATER {
                match tunnel.poll_chunk(cx) {
                    Poll::Ready(Ok(chunk)) if chunk.is_empty() => tunnel_open = false,
                    Poll::Ready(Ok(chunk)) => {
                        heard = clock.now();
                        out.push(chunk);
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                }
            }
            let was = out.len();
            stall.write(&mut out, &mut io, cx, &clock)?;
            if !tunnel_open && out.is_empty() {
                return shutdown(&mut io, cx);
            }
            let quiet = tunnel_open.then_some(heard + silence);
            if let Some(deadline) = stall.deadline(limits).into_iter().chain(quiet).min() {
                if clock.poll_until(cx, deadline).is_ready() {
                    return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                }
            }
            if out.len() < was && tunnel_open {
                // Room was made: take more from the tunnel first.
                continue;
            }
            // From the client to the node.
            let read = super::with_read_buf(|buf| match io.poll_read(cx, buf) {
                Poll::Ready(Ok(n)) => Poll::Ready(Ok(Bytes::copy_from_slice(&buf[..n]))),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            });
            match read {
                Poll::Ready(Ok(b)) if b.is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(b)) => tunnel.send(b)?,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        })
        .await;
        tunnel.end();
        done
    }

    /// Whether requests for `path` are the endpoint's.
    pub(crate) fn matches(&self, path: &str) -> bool {
        self.settings.routes.endpoint && self.settings.eio.matches(path)
    }

    /// The largest request body the endpoint takes.
    pub(crate) fn max_body_size(&self) -> usize {
        self.settings.eio.max_payload
    }

    /// Hands one request to the endpoint, or to a plain WebSocket route (the core's
    /// [`ws::handshake::route`] decides, and answers the rest).
    fn route(&self, http: &mut ServerConn, request: Request, now: Instant) -> Mode {
        if let Some((forward, sid)) = self.foreign(&request) {
            if request.head.is_websocket_upgrade() {
                return Mode::Tunnel(Box::new(request), forward);
            }
            let pending = forward.request(&sid, request);
            return Mode::Forward(Box::new(pending), now + self.forward_wait());
        }
        match self.handle_request(&request, now) {
            None => {
                let routes = &self.settings.routes;
                let path = request.head.path();
                let router = match &routes.router {
                    Some(router) if !routes.exact.iter().any(|(p, _)| p == path) => router,
                    _ => {
                        return match ws::handshake::route(&routes.exact, request.head) {
                            Ok((upgrade, config)) => {
                                Mode::Handoff(Box::new(upgrade), config.clone())
                            }
                            Err(response) => {
                                http.respond(now, response);
                                Mode::Http
                            }
                        }
                    }
                };
                match router.handle(request) {
                    Handled::Upgrade(upgrade) => Mode::Routed(upgrade),
                    Handled::Respond(response) => {
                        http.respond(now, response);
                        Mode::Http
                    }
                }
            }
            Some(Reply::Respond(response)) => {
                http.respond(now, response);
                Mode::Http
            }
            Some(Reply::Park(poll)) => Mode::Parked(poll),
            Some(Reply::Upgrade(mut link)) => {
                let rest = http.upgrade(Bytes::new());
                if !rest.is_empty() {
                    link.handle_input(now, &rest);
                    self.deliver(&mut link, now);
                }
                Mode::Ws(link)
            }
        }
    }
}

/// Write progress of one connection: since when bytes have waited with none going
/// out, for [`HttpLimits::write_timeout`].
#[derive(Default)]
struct Stall {
    since: Option<Instant>,
}

impl Stall {
    /// Writes what `out` holds, as far as `io` takes it, and notes the progress.
    fn write<T: Transport, C: Clock>(
        &mut self,
        out: &mut Outbox,
        io: &mut T,
        cx: &mut Context<'_>,
        clock: &C,
    ) -> io::Result<usize> {
        let written = out.write_to(io, cx)?;
        if out.is_empty() {
            self.since = None;
        } else if written > 0 || self.since.is_none() {
            self.since = Some(clock.now());
        }
        Ok(written)
    }

    /// When the connection times out if nothing more is written.
    fn deadline(&self, limits: HttpLimits) -> Option<Instant> {
        self.since.map(|t| t + limits.write_timeout)
    }
}

/// What one connection holds in its host, released on every way out of
/// [`Host::serve_connection`] (its `Drop`): the mailbox entries of its parked poll or
/// WebSocket (the endpoint is told the client went away, a no-op if the session
/// already ended) and its count as a busy connection.
pub(crate) struct ConnGuard<E: Endpoint> {
    host: Host<E>,
    mode: Mode,
    busy: bool,
}

impl<E: Endpoint> ConnGuard<E> {
    pub(crate) fn new(host: Host<E>) -> Self {
        Self {
            host,
            mode: Mode::Http,
            busy: false,
        }
    }

    /// A guard for a parked poll or an upgraded WebSocket (other replies hold nothing).
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn holding(host: Host<E>, reply: Reply) -> Result<Self, Reply> {
        let mode = match reply {
            Reply::Park(poll) => Mode::Parked(poll),
            Reply::Upgrade(link) => Mode::Ws(link),
            reply @ Reply::Respond(_) => return Err(reply),
        };
        let mut guard = Self::new(host);
        guard.enter(mode);
        Ok(guard)
    }

    /// The link of an upgraded WebSocket.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn link(&mut self) -> Option<&mut WsLink> {
        match &mut self.mode {
            Mode::Ws(link) => Some(link),
            _ => None,
        }
    }

    /// The response to the parked poll it holds, once the endpoint has given it.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn poll_response(&mut self, cx: &mut Context<'_>) -> Poll<Option<Response>> {
        let Mode::Parked(poll) = self.mode else {
            return Poll::Ready(None);
        };
        let response = std::task::ready!(self.host.poll_parked(poll, cx));
        self.enter(Mode::Http);
        Poll::Ready(Some(response))
    }

    /// Switches to `mode` (from one that holds nothing, or back to plain HTTP once a
    /// parked poll was answered).
    fn enter(&mut self, mode: Mode) {
        self.set_busy(matches!(mode, Mode::Ws(_) | Mode::Parked(_)));
        self.mode = mode;
    }

    fn set_busy(&mut self, busy: bool) {
        if busy == self.busy {
            return;
        }
        self.busy = busy;
        let mut s = self.host.lock();
        if busy {
            s.busy += 1;
        } else {
            s.busy -= 1;
            s.wake_if_idle();
        }
    }

    /// Releases what the connection's mode holds; the connection then holds nothing.
    fn release(&mut self, now: Instant) {
        let mut mode = std::mem::replace(&mut self.mode, Mode::Http);
        self.set_busy(false);
        let mut s = self.host.lock();
        match mode {
            // A forwarded request left behind tells its owner so when dropped.
            Mode::Http
            | Mode::Handoff(..)
            | Mode::Routed(_)
            | Mode::Forward(..)
            | Mode::Tunnel(..) => return,
            Mode::Parked(poll) => {
                s.poll_wakers.remove(&poll);
                if s.responses.remove(&poll).is_none() {
                    s.server.handle_poll_aborted(now, poll);
                }
            }
            Mode::Ws(ref mut link) => {
                s.wires.remove(&link.transport());
                link.abandon(now, &mut s.server);
            }
        }
        s.dispatch();
        if let Mode::Ws(link) = mode {
            // After the dispatch: what the endpoint just sent this transport has
            // nowhere to go.
            s.ws_out.remove(&link.transport());
            s.ws_aborted.remove(&link.transport());
        }
        drop(s);
        self.host.drain_events();
    }
}

impl<E: Endpoint> Drop for ConnGuard<E> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Unwinding, perhaps from under the host's lock: do not lock again.
            return;
        }
        let now = self.host.now();
        self.release(now);
    }
}

pub(crate) fn shutdown<T: Transport>(io: &mut T, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    match io.poll_flush(cx) {
        Poll::Pending => return Poll::Pending,
        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
        Poll::Ready(Ok(())) => {}
    }
    io.poll_shutdown(cx).map(|r| r.or(Ok(())))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::mem::duplex;

    fn wire(capacity: usize) -> (Wire<crate::mem::MemStream>, crate::mem::MemStream) {
        let (ours, theirs) = duplex(capacity);
        let state = WsWire {
            io: ours,
            out: Outbox::default(),
            owed: 0,
            quiet: true,
        };
        let wire = Wire {
            bell: Bell::default(),
            state: Mutex::new(state),
        };
        (wire, theirs)
    }

    #[test]
    fn a_direct_write_goes_out_only_behind_nothing() {
        let (wire, mut peer) = wire(10);
        let frame = Bytes::from_static(b"0123456");
        assert_eq!(wire.try_write(&frame), Direct::Whole);
        assert_eq!(peer.take_available(100), b"0123456");
        // The socket takes 10 bytes: the rest waits in the outbox, owed to nobody's
        // link, and what comes next queues behind it.
        assert_eq!(
            wire.try_write(&Bytes::from_static(b"abcdefghijkl")),
            Direct::Partial
        );
        assert_eq!(peer.take_available(100), b"abcdefghij");
        {
            let w = lock_wire(&wire.state);
            assert_eq!((w.out.len(), w.owed), (2, 2));
        }
        assert_eq!(
            wire.try_write(&frame),
            Direct::Refused,
            "bytes wait before it"
        );
        lock_wire(&wire.state).out.clear();
        // Not quiet (the link has output of its own, or is closing): refused.
        lock_wire(&wire.state).quiet = false;
        assert_eq!(wire.try_write(&frame), Direct::Refused);
        lock_wire(&wire.state).quiet = true;
        // Held by its task: refused, never waited for.
        let held = lock_wire(&wire.state);
        assert_eq!(wire.try_write(&frame), Direct::Refused);
        drop(held);
        assert_eq!(wire.try_write(&frame), Direct::Whole);
        assert_eq!(peer.take_available(100), b"0123456");
    }

    /// Counts its wakes (also the router's tests).
    pub(crate) struct Wakes(pub(crate) std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_ring_is_answered_once_and_wakes_the_registered_task_once() {
        let bell = Bell::default();
        let mut to_wake = Vec::new();
        assert!(!bell.answer(), "never rung");
        // Rung before the task registered (outputs queued as it starts): no one to
        // wake, but its first answer says so.
        bell.ring(&mut to_wake);
        assert!(to_wake.is_empty());
        assert!(bell.answer());
        assert!(!bell.answer(), "answered");
        let wakes = Arc::new(Wakes(0.into()));
        let waker = Waker::from(wakes.clone());
        bell.register(&waker);
        bell.register(&waker);
        bell.ring(&mut to_wake);
        bell.ring(&mut to_wake);
        // Woken after the host's lock is released, once until it answers.
        assert_eq!(to_wake.len(), 1);
        to_wake.drain(..).for_each(Waker::wake);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert!(bell.answer());
        assert!(!bell.answer());
        // A ring after the answer wakes it again.
        bell.ring(&mut to_wake);
        assert_eq!(to_wake.len(), 1);
        assert!(bell.answer());
    }

    #[test]
    fn a_ring_while_the_task_runs_wakes_nobody_and_is_seen_by_the_task() {
        let bell = Bell::default();
        let mut to_wake = Vec::new();
        let wakes = Arc::new(Wakes(0.into()));
        bell.register(&Waker::from(wakes.clone()));
        // Rung during the poll, before the loop's answer (a handler the task ran
        // answered an ack): the answer takes it, no wake.
        bell.enter();
        bell.ring(&mut to_wake);
        assert!(to_wake.is_empty(), "the running task is not woken");
        assert!(bell.answer());
        assert!(!bell.leave(), "nothing rang after the answer");
        // Rung after the loop's last answer: the task sees it as it leaves.
        bell.enter();
        assert!(!bell.answer());
        bell.ring(&mut to_wake);
        assert!(to_wake.is_empty());
        assert!(bell.leave(), "the task must poll again");
        assert!(bell.answer());
        // Between polls a ring wakes the task as before.
        bell.ring(&mut to_wake);
        assert_eq!(to_wake.len(), 1);
    }
}
