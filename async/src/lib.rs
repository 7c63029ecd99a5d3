//! # wirestate-async
//!
//! wirestate's async layer, written once for every runtime. A runtime adapter
//! (`wirestate-tokio`, `wirestate-smol`, or a test's in-memory runtime) implements one
//! trait, [`Runtime`] — its clock and timer, spawn, TCP connect and accept — and a
//! [`Transport`] for its byte streams; [`runtime_api!`] then gives it the whole public
//! API, the same on every runtime:
//!
//! * [`WebSocket`], [`accept`], [`connect`], [`client`]: one WebSocket connection.
//! * [`eio`]: Engine.IO servers ([`EioServer`], `serve`, `serve_connection`) and the
//!   Engine.IO client ([`EioClient`]).
//! * [`sio`]: the Socket.IO server ([`sio::SocketIo`], handlers, rooms, acks) and client
//!   ([`sio::io`]).
//! * [`router`]: plain WebSocket applications (routes by pattern, authentication
//!   before the upgrade, connection ids, rooms, broadcast).
//!
//! * [`mem`]: an in-memory runtime on a virtual clock, to test all of the above (and
//!   applications on it) with no sockets and no sleeps.
//!
//! This layer only moves bytes, wakes tasks and reads the clock: every protocol
//! decision is made by the sans-IO state machines of `wirestate-engine`.
//! Any byte stream can be served — TCP, TLS, a Unix socket, an in-memory pipe — with
//! its peer's address when it has one.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub mod bus;
mod connector;
pub mod eio;
mod eio_client;
mod forward;
mod host;
pub mod mem;
mod redis;
pub mod router;
pub mod sio;
#[cfg(feature = "rustls")]
pub mod tls;
#[cfg(feature = "tower")]
pub mod tower;

mod ws;

/// The sans-IO engine this layer drives (for paths in [`runtime_api!`]).
pub use wirestate_engine as engine;

pub use connector::{ClientStream, Connector};
pub use eio::EioServer;
pub use eio_client::{EioClient, Pilot};
pub use host::{Host, HttpLimits};
pub use wirestate_engine::{ClientMachine, Endpoint};
pub use ws::{accept, client, connect, connect_with, Error, Outgoing, RecvWith, WebSocket};

/// A byte stream as the async layer sees it (a TCP socket, a TLS stream, ...).
pub trait Transport: Unpin {
    /// Reads into `buf`; `Ok(0)` is end of stream.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
    /// Writes from `bufs` in order; returns how many bytes were written.
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>>;
    /// Writes from `bufs` if the stream takes them without waiting, outside any
    /// fairness budget of the runtime (tokio's cooperative scheduling would refuse a
    /// task that writes to thousands of streams in one turn): a publisher's direct
    /// write of a broadcast frame. `cx`'s waker may do nothing. By default a vectored
    /// write.
    fn poll_write_now(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, bufs)
    }
    /// Flushes buffered writes.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Shuts the write side down (for TCP: sends FIN).
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// The stream is encrypted (TLS): what a server tells handshakes (`secure`).
    fn is_secure(&self) -> bool {
        false
    }
}

/// How [`Transport::poll_write_vectored`] hands `bufs` to a stream that may not write
/// vectored (TLS, say): one slice as a plain write; several in one vectored write if
/// the stream does those (`vectored`); otherwise the first alone (what a default
/// vectored write would do, less directly).
pub fn write_slices<'a, 'b>(bufs: &'a [IoSlice<'b>], vectored: bool) -> Slices<'a, 'b> {
    match bufs {
        [one] => Slices::One(one),
        _ if vectored => Slices::Many(bufs),
        _ => Slices::One(bufs.first().map_or(&[], |b| &b[..])),
    }
}

/// What [`write_slices`] chose.
#[derive(Debug)]
pub enum Slices<'a, 'b> {
    /// Write this slice.
    One(&'a [u8]),
    /// Write these slices vectored.
    Many(&'a [IoSlice<'b>]),
}

/// A runtime's clock and one re-armable timer, owned by the task that waits on it.
pub trait Clock: Unpin {
    /// The current time.
    fn now(&self) -> Instant;
    /// Ready once `deadline` has passed; otherwise arranges a wake-up for it.
    fn poll_until(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()>;
    /// No deadline is pending any more: the timer may give back what it holds (so an
    /// idle connection keeps no timer). The next `poll_until` arms it again. The
    /// default keeps it.
    fn disarm(&mut self) {}
}

/// A boxed future that a runtime runs to completion.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Everything the async layer needs from an async runtime: the one trait an adapter
/// implements. A value of it is a cheap handle (a unit struct for tokio and smol).
pub trait Runtime: Clone + Send + Sync + 'static {
    /// A timer, one per task that waits.
    type Clock: Clock + Send + 'static;
    /// A connected TCP stream.
    type Tcp: Transport + Send + 'static;
    /// A bound TCP listener.
    type Listener: Send + Sync + 'static;

    /// A new timer.
    fn clock(&self) -> Self::Clock;
    /// The current time, on the same clock as [`Self::Clock`].
    fn now(&self) -> Instant {
        self.clock().now()
    }
    /// Runs `future` to completion in the background.
    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static;
    /// Opens a TCP connection to `authority` (`host:port`), with `TCP_NODELAY`.
    fn connect(
        &self,
        authority: String,
    ) -> impl Future<Output = io::Result<Self::Tcp>> + Send + 'static;
    /// Accepts the next connection on `listener`, with `TCP_NODELAY` set where it can be.
    fn accept<'a>(
        &'a self,
        listener: &'a Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Tcp, SocketAddr)>> + Send + 'a;

    /// Runs `main()` on a new thread named `name`, on an executor of that thread's
    /// own that also runs every task spawned from it, until `main`'s future ends (the
    /// tasks still running then are dropped). The shards of a sharded server run so.
    /// The default: unsupported (a runtime without threads of its own).
    fn run_thread(
        &self,
        name: String,
        main: Box<dyn FnOnce() -> BoxFuture + Send>,
    ) -> io::Result<()> {
        let _ = (name, main);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this runtime runs no threads of its own",
        ))
    }

    /// Whether a TCP stream of this runtime can move to another thread's executor
    /// ([`tcp_into_std`](Self::tcp_into_std), then
    /// [`tcp_from_std`](Self::tcp_from_std) there). The default: no.
    fn moves_tcp(&self) -> bool {
        false
    }

    /// The std stream of `tcp`, taken off this thread's executor (only called when
    /// [`moves_tcp`](Self::moves_tcp)). The default: unsupported (`tcp` is dropped).
    fn tcp_into_std(&self, tcp: Self::Tcp) -> io::Result<std::net::TcpStream> {
        drop(tcp);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this runtime cannot move streams",
        ))
    }

    /// A stream of this runtime, on the calling thread's executor, for `tcp`. The
    /// default: unsupported.
    fn tcp_from_std(&self, tcp: std::net::TcpStream) -> io::Result<Self::Tcp> {
        drop(tcp);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this runtime cannot move streams",
        ))
    }

    /// A listener of this runtime for `listener`, made on the thread that will
    /// accept on it (from [`run_thread`](Self::run_thread)'s `main`). The default:
    /// unsupported.
    fn listener_from_std(&self, listener: std::net::TcpListener) -> io::Result<Self::Listener> {
        let _ = listener;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this runtime cannot accept on a std listener",
        ))
    }
}

/// The part of a [`Runtime`] that type-erased handles keep: the clock and spawn.
pub(crate) trait Executor: Send + Sync + 'static {
    fn now(&self) -> Instant;
    fn spawn_boxed(&self, future: BoxFuture);
    /// Resolves once `deadline` has passed.
    fn sleep_until(&self, deadline: Instant) -> BoxFuture;
}

impl<R: Runtime> Executor for R {
    fn now(&self) -> Instant {
        Runtime::now(self)
    }

    fn spawn_boxed(&self, future: BoxFuture) {
        self.spawn(future);
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture {
        Box::pin(timer(self.clock(), deadline))
    }
}

/// Resolves at `deadline` on `clock`, which it owns.
fn timer<C: Clock>(mut clock: C, deadline: Instant) -> impl Future<Output = ()> {
    poll_fn(move |cx| clock.poll_until(cx, deadline))
}

/// Waits for `duration` on `clock`.
pub(crate) async fn sleep<C: Clock>(clock: &mut C, duration: Duration) {
    let deadline = clock.now() + duration;
    poll_fn(|cx| clock.poll_until(cx, deadline)).await
}

/// `N` bytes of OS randomness, for ids, jitter and masking keys.
pub(crate) fn os_seed<const N: usize>() -> io::Result<[u8; N]> {
    let mut seed = [0u8; N];
    getrandom::fill(&mut seed).map_err(io::Error::other)?;
    Ok(seed)
}

/// Makes each accepted connection into the stream that is served: a TLS handshake,
/// say (an adapter's `tls::TlsAcceptor`); [`Plain`] serves the connection as it is.
/// The serve loops bound it in time by [`HttpLimits::request_timeout`]: a peer that
/// never completes its handshake is dropped then.
pub trait Acceptor<S>: Clone + Send + Sync + 'static {
    /// The stream served.
    type Stream: Transport + Send + 'static;
    /// The stream to serve over `stream`, once its handshake (if any) is done.
    fn accept(&self, stream: S) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// The [`Acceptor`] that serves connections as they are (plain TCP).
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl<S: Transport + Send + 'static> Acceptor<S> for Plain {
    type Stream = S;

    fn accept(&self, stream: S) -> impl Future<Output = io::Result<S>> + Send {
        std::future::ready(Ok(stream))
    }
}

/// Runs `future` until `deadline` on `clock`: its output, or `None` if the deadline
/// passes first.
pub(crate) fn until<'a, C: Clock, F: Future>(
    clock: &'a mut C,
    deadline: Instant,
    future: F,
) -> Before<F, impl Future<Output = ()> + 'a> {
    before(future, poll_fn(move |cx| clock.poll_until(cx, deadline)))
}

/// Runs `future` until `timer` resolves: its output, or `None` if the timer is
/// first.
pub(crate) fn before<F: Future, T: Future<Output = ()>>(future: F, timer: T) -> Before<F, T> {
    Before { future, timer }
}

pin_project_lite::pin_project! {
    /// [`before`]'s future. A struct rather than an `async fn`, which would hold
    /// `future` and `timer` twice (as arguments and pinned).
    pub(crate) struct Before<F, T> {
        #[pin]
        future: F,
        #[pin]
        timer: T,
    }
}

impl<F: Future, T: Future<Output = ()>> Future for Before<F, T> {
    type Output = Option<F::Output>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.future.poll(cx) {
            return Poll::Ready(Some(v));
        }
        this.timer.poll(cx).map(|()| None)
    }
}

/// The first phase of a served connection: `acceptor`'s handshake on `stream`, for at
/// most `limit` on `rt`'s clock. Its output: the stream to serve (or why there is
/// none), with its peer's address.
///
/// Boxed, and the box freed once it is done: the connection's task keeps no room for
/// the handshake, nor for the stream and address it started from, while it serves the
/// connection (a future keeps a slot for each value it captured, for its whole life).
fn handshake<R: Runtime, A: Acceptor<R::Tcp>>(
    rt: &R,
    acceptor: &A,
    stream: R::Tcp,
    peer: SocketAddr,
    limit: Duration,
) -> Pin<Box<impl Future<Output = (io::Result<A::Stream>, SocketAddr)> + Send>> {
    let clock = rt.clock();
    let deadline = clock.now() + limit;
    let acceptor = acceptor.clone();
    Box::pin(async move {
        let accepted = before(acceptor.accept(stream), timer(clock, deadline)).await;
        let accepted = accepted.unwrap_or_else(|| Err(io::ErrorKind::TimedOut.into()));
        (accepted, peer)
    })
}

/// Accepts connections on `listener` until `stop` resolves (or for ever), each on a
/// task of its own: `acceptor`'s handshake, bounded by `handshake_limit` (a failed
/// one is logged), then `serve` on the stream it made. An accept error never ends the
/// loop: an error of one connection (reset, aborted) is skipped; any other (out of
/// file descriptors, of memory) is logged, and accepting resumes after a pause that
/// lets connections close. With `max_connections`, no more than that many served
/// connections are open at once: at the cap the loop stops accepting (new
/// connections wait in the listener's backlog) until one ends.
///
/// A task holds one phase at a time (the handshake is boxed apart, and freed once
/// done): an open connection's task is sized for what serving it holds.
pub(crate) async fn accept_loop<R, A, S, Fut>(
    rt: &R,
    listener: &R::Listener,
    stop: impl Future<Output = ()>,
    max_connections: Option<usize>,
    (acceptor, handshake_limit): (&A, Duration),
    serve: S,
) where
    R: Runtime,
    A: Acceptor<R::Tcp>,
    S: Fn(A::Stream, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut stop = std::pin::pin!(stop);
    let gate = Arc::new(Gate::default());
    loop {
        let accepted = {
            let mut accept = std::pin::pin!(next_connection(rt, listener));
            poll_fn(|cx| {
                if stop.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                if let Some(max) = max_connections {
                    if !gate.has_room(max, cx) {
                        return Poll::Pending;
                    }
                }
                accept.as_mut().poll(cx).map(Some)
            })
            .await
        };
        match accepted {
            None => return,
            Some((stream, peer)) => {
                let permit = Gate::enter(&gate);
                let serve = serve.clone();
                let accepted = handshake(rt, acceptor, stream, peer, handshake_limit);
                let served = then(accepted, move |(accepted, peer)| match accepted {
                    Ok(stream) => Either::Left {
                        future: serve(stream, peer),
                    },
                    Err(e) => {
                        tracing::debug!(error = %e, %peer, "connection handshake failed");
                        Either::Right {
                            future: std::future::ready(()),
                        }
                    }
                });
                rt.spawn(Counted {
                    served,
                    _permit: permit,
                });
            }
        }
    }
}

/// The next connection on `listener`, never an error: see the adapters'
/// `next_connection`.
pub async fn next_connection<R: Runtime>(rt: &R, listener: &R::Listener) -> (R::Tcp, SocketAddr) {
    let mut clock = None;
    loop {
        match rt.accept(listener).await {
            Ok(accepted) => return accepted,
            Err(e) if is_connection_error(&e) => {
                tracing::debug!(error = %e, "accept: connection failed before it was accepted")
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; retrying in 100 ms");
                sleep(clock.get_or_insert_with(|| rt.clock()), ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Counts the connections an accept loop serves, and wakes the loop when one ends.
#[derive(Default)]
struct Gate {
    open: AtomicUsize,
    waker: std::sync::Mutex<Option<std::task::Waker>>,
}

pin_project_lite::pin_project! {
    /// A served connection's future with its [`Permit`], released when the task ends.
    /// Not an `async` block: one that awaits a future it captured holds it twice (the
    /// captured value and the one being awaited), which doubled every connection's
    /// task.
    struct Counted<F> {
        #[pin]
        served: F,
        _permit: Permit,
    }
}

impl<F: Future<Output = ()>> Future for Counted<F> {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().served.poll(cx)
    }
}

/// The wakers of the futures waiting for one condition (a shutdown, the host going
/// idle, a client's connection): one entry per waiting future, however often it is
/// polled. A future polled again replaces its own entry, found by its id, not by
/// `Waker::will_wake`: two wakers of one tokio task can compare unequal (their vtables
/// made in different codegen units), and an accept loop, which polls its stop signal
/// for every connection it accepts, then grew the list by two entries per connection
/// for as long as the server ran. The entry goes when its future is dropped
/// ([`WaitId`]).
#[derive(Default)]
pub(crate) struct Waiters {
    last_id: u64,
    waiting: Vec<(u64, std::task::Waker)>,
}

impl Waiters {
    /// Registers `waker` for the waiter `id` (given one on its first call).
    pub(crate) fn register(&mut self, id: &mut Option<u64>, waker: &std::task::Waker) {
        let id = *id.get_or_insert_with(|| {
            self.last_id += 1;
            self.last_id
        });
        match self.waiting.iter_mut().find(|(i, _)| *i == id) {
            Some((_, w)) => w.clone_from(waker),
            None => self.waiting.push((id, waker.clone())),
        }
    }

    /// Forgets waiter `id`.
    pub(crate) fn remove(&mut self, id: u64) {
        self.waiting.retain(|(i, _)| *i != id);
    }

    /// Takes every waker, to wake them (a waiter polled again registers anew).
    pub(crate) fn take(&mut self) -> impl Iterator<Item = std::task::Waker> + '_ {
        self.waiting.drain(..).map(|(_, w)| w)
    }

    /// Wakes every waiter.
    pub(crate) fn wake_all(&mut self) {
        self.take().for_each(std::task::Waker::wake);
    }

    /// How many futures wait.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }
}

/// A waiting future's id in its [`Waiters`]: `release` removes it from there when the
/// future is dropped (done or abandoned).
pub(crate) struct WaitId<F: FnMut(u64)> {
    /// The id, once registered.
    pub(crate) id: Option<u64>,
    release: F,
}

impl<F: FnMut(u64)> WaitId<F> {
    /// An id not registered yet; `release` takes it out of its [`Waiters`] (it locks
    /// them: a future holding one is never dropped under that lock).
    pub(crate) fn new(release: F) -> Self {
        Self { id: None, release }
    }
}

impl<F: FnMut(u64)> Drop for WaitId<F> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            (self.release)(id);
        }
    }
}

/// `future` with its output passed through `f`: as `async { f(future.await) }`, without
/// holding `future` twice (see [`Counted`]).
pub(crate) fn map<F: Future, G: FnMut(F::Output) -> O, O>(future: F, f: G) -> Map<F, G> {
    Map { future, f }
}

pin_project_lite::pin_project! {
    /// [`map`]'s future.
    pub(crate) struct Map<F, G> {
        #[pin]
        future: F,
        f: G,
    }
}

impl<F: Future, G: FnMut(F::Output) -> O, O> Future for Map<F, G> {
    type Output = O;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O> {
        let this = self.project();
        this.future.poll(cx).map(this.f)
    }
}

/// `first`, then the future `next` makes of its output: as
/// `async { next(first.await).await }`, but holding only the phase that runs (an
/// `async` block keeps a slot for everything it captured, and for each value alive
/// across an `.await`, for its whole life).
pub(crate) fn then<A: Future, G: FnOnce(A::Output) -> B, B: Future>(
    first: A,
    next: G,
) -> Then<A, G, B> {
    Then::First { first, next }
}

pin_project_lite::pin_project! {
    /// [`then`]'s future.
    #[project = ThenProj]
    #[project_replace = ThenTaken]
    pub(crate) enum Then<A, G, B> {
        First { #[pin] first: A, next: G },
        Second { #[pin] second: B },
        Switching,
    }
}

impl<A: Future, G: FnOnce(A::Output) -> B, B: Future> Future for Then<A, G, B> {
    type Output = B::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<B::Output> {
        loop {
            match self.as_mut().project() {
                ThenProj::First { first, .. } => {
                    let Poll::Ready(out) = first.poll(cx) else {
                        return Poll::Pending;
                    };
                    if let ThenTaken::First { next, .. } =
                        self.as_mut().project_replace(Then::Switching)
                    {
                        self.set(Then::Second { second: next(out) });
                    }
                }
                ThenProj::Second { second } => return second.poll(cx),
                // Only while `next` runs (which is not polling), or after it panicked.
                ThenProj::Switching => return Poll::Pending,
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// One of two futures with the same output (as `Box<dyn Future>` would be, without
    /// the box).
    #[project = EitherProj]
    pub(crate) enum Either<A, B> {
        Left { #[pin] future: A },
        Right { #[pin] future: B },
    }
}

impl<A: Future, B: Future<Output = A::Output>> Future for Either<A, B> {
    type Output = A::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<A::Output> {
        match self.project() {
            EitherProj::Left { future } => future.poll(cx),
            EitherProj::Right { future } => future.poll(cx),
        }
    }
}

/// One served connection, counted in its [`Gate`] until dropped.
struct Permit(Arc<Gate>);

impl Gate {
    fn enter(gate: &Arc<Gate>) -> Permit {
        gate.open.fetch_add(1, SeqCst);
        Permit(gate.clone())
    }

    /// Below `max` open connections; if not, the waker is woken when one ends.
    fn has_room(&self, max: usize, cx: &mut Context<'_>) -> bool {
        if self.open.load(SeqCst) < max {
            return true;
        }
        *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        // Checked again after registering: a connection that ended in between has
        // found no waker to wake.
        self.open.load(SeqCst) < max
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, SeqCst);
        let waker = self
            .0
            .waker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The pause after an accept error that is not one connection's own.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

/// How many bytes one read asks for: room for a 16 KiB message and its header (with
/// 16 KiB, two reads). 10 connections echoing 16 KiB messages: 7-9 % more round trips
/// per second with 32 KiB, at 7-9 % less CPU per message; 64 KiB was no better.
pub(crate) const READ_CHUNK: usize = 32 * 1024;

thread_local! {
    /// The read buffer of every connection polled on this thread: zeroed once, not on
    /// every read (a memset per read cost more than the WebSocket decoding of a small
    /// message), and no per-connection memory.
    static READ_BUF: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; READ_CHUNK].into_boxed_slice());
}

/// Runs `f` with this thread's read buffer (or, if it is in use further up the stack,
/// a buffer of its own). What `f` reads must be consumed before it returns.
pub(crate) fn with_read_buf<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    READ_BUF.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf),
        // Rare (a read nested in another's): on the heap, not 32 KiB of stack.
        Err(_) => f(&mut vec![0u8; READ_CHUNK]),
    })
}

thread_local! {
    /// The buffer into which a connection polled on this thread encodes a frame it
    /// writes at once (see [`ws::Connection::encode_now`]): no allocation per message,
    /// and no per-connection memory (only what the transport does not take is copied
    /// out).
    static WRITE_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's write buffer, empty (or, if it is in use further up
/// the stack, a buffer of its own). What `f` puts there must be written or copied out
/// before it returns.
pub(crate) fn with_write_buf<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    WRITE_BUF.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let r = f(&mut buf);
            if buf.capacity() > WRITE_BUF_KEEP {
                // A burst (many packets for one transport): not kept for good.
                *buf = Vec::new();
            }
            r
        }
        Err(_) => f(&mut Vec::new()),
    })
}

/// The most a thread's write buffer keeps between uses.
const WRITE_BUF_KEEP: usize = 64 * 1024;

/// What a publisher's direct write of a broadcast frame did (see
/// [`Transport::poll_write_now`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direct {
    /// Nothing: the connection is busy (its task holds it, or bytes wait), or closing.
    Refused,
    /// The socket took the whole frame.
    Whole,
    /// The socket took part of it (or none); the rest waits in the connection's outbox
    /// for its task, which must be woken.
    Partial,
}

/// Writes `bytes` as far as `io` takes them now: how many it took (0 when it would
/// block). With `now`, the write is made outside the runtime's fairness budget
/// ([`Transport::poll_write_now`]), as a publisher's.
pub(crate) fn write_slice<T: Transport>(
    io: &mut T,
    cx: &mut Context<'_>,
    bytes: &[u8],
    now: bool,
) -> io::Result<usize> {
    if bytes.is_empty() {
        return Ok(0);
    }
    let slices = [IoSlice::new(bytes)];
    let written = if now {
        io.poll_write_now(cx, &slices)
    } else {
        io.poll_write_vectored(cx, &slices)
    };
    match written {
        Poll::Ready(Ok(0)) => Err(io::ErrorKind::WriteZero.into()),
        Poll::Ready(Ok(n)) => Ok(n),
        Poll::Ready(Err(e)) => Err(e),
        Poll::Pending => Ok(0),
    }
}

/// Bytes queued for a transport, written with vectored writes, partial writes kept.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: wirestate_engine::queue::Queue<bytes::Bytes>,
    bytes: usize,
    /// Bytes went to the transport since [`poll_flush`](Self::poll_flush) last flushed
    /// it.
    unflushed: bool,
}

/// Buffers handed to one vectored write.
const MAX_IOV: usize = 64;

impl Outbox {
    pub(crate) fn push(&mut self, b: bytes::Bytes) {
        if !b.is_empty() {
            self.bytes += b.len();
            self.queue.push_back(b);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes
    }

    pub(crate) fn clear(&mut self) {
        self.queue.clear();
        self.bytes = 0;
    }

    /// Writes as much as the transport takes now: how many bytes that was (`Ok` also
    /// when it would block).
    pub(crate) fn write_to<T: Transport>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
    ) -> io::Result<usize> {
        self.write_with(io, cx, T::poll_write_vectored)
    }

    /// [`write_to`](Self::write_to) from a publisher, outside the runtime's budget
    /// ([`Transport::poll_write_now`]).
    pub(crate) fn write_now<T: Transport>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
    ) -> io::Result<usize> {
        self.write_with(io, cx, T::poll_write_now)
    }

    /// Flushes `io` if bytes went to it since it was last flushed here: a stream that
    /// buffers (TLS) sends what it holds. Ready at once when nothing was written.
    pub(crate) fn poll_flush<T: Transport>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.unflushed {
            return Poll::Ready(Ok(()));
        }
        std::task::ready!(io.poll_flush(cx))?;
        self.unflushed = false;
        Poll::Ready(Ok(()))
    }

    /// Writes `bytes` (which go after everything queued: call it only when nothing
    /// is) as far as the transport takes them now, and queues a copy of the rest.
    /// The number of bytes written.
    pub(crate) fn write_or_keep<T: Transport>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> io::Result<usize> {
        debug_assert!(self.queue.is_empty());
        let written = write_slice(io, cx, bytes, false)?;
        if written > 0 {
            self.unflushed = true;
        }
        self.push(bytes::Bytes::copy_from_slice(&bytes[written..]));
        Ok(written)
    }

    fn write_with<T: Transport>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
        write: impl Fn(&mut T, &mut Context<'_>, &[IoSlice<'_>]) -> Poll<io::Result<usize>>,
    ) -> io::Result<usize> {
        use bytes::Buf;
        let mut total = 0;
        while let Some(front) = self.queue.front() {
            let written = if self.queue.len() == 1 {
                // The common case (one frame queued): no array of slices to fill.
                write(io, cx, &[IoSlice::new(front)])
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_IOV];
                let mut count = 0;
                for (slot, bytes) in slices.iter_mut().zip(self.queue.iter()) {
                    *slot = IoSlice::new(bytes);
                    count += 1;
                }
                write(io, cx, &slices[..count])
            };
            let mut n = match written {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(total),
            };
            self.bytes -= n;
            total += n;
            self.unflushed = true;
            while n > 0 {
                let Some(front) = self.queue.front_mut() else {
                    break;
                };
                if n < front.len() {
                    front.advance(n);
                    break;
                }
                n -= front.len();
                self.queue.pop_front();
            }
        }
        Ok(total)
    }
}

/// Makes a runtime adapter from its runtime's primitives: the [`Runtime`] and the whole
/// public API, the same items with the same docs on every runtime, so that adapters
/// cannot drift apart.
///
/// The adapter names its runtime (`runtime`, a unit struct this defines, with the
/// attributes given before it), its timer (`clock`: a [`Clock`] with `Default`), a
/// function that spawns a `Send + 'static` future (`spawn`), the name of its transport
/// wrapper (`io`), and its TCP types (`tcp`, `listener`: the usual shape, as tokio's and
/// async-net's, with `Stream::connect(addr)`, `set_nodelay` and `listener.accept()`).
/// It defines where it is invoked:
/// * the runtime struct and its [`Runtime`] impl;
/// * the wrapper `io<S>` (`new`, `get_ref`, `into_inner`), for which the adapter
///   implements [`Transport`];
/// * the WebSocket API (`WebSocket<S = tcp>`, `accept`, `connect`, `client`);
/// * the modules `eio` and `sio`, whose functions take the runtime's listener and any
///   stream `S` for which `io<S>` is a [`Transport`].
#[macro_export]
macro_rules! runtime_api {
    (
        $(#[$attr:meta])*
        runtime: $rt:ident,
        clock: $clock:ty,
        spawn: $spawn:path,
        thread: $thread:path,
        from_std: $from_std:path,
        tcp_into_std: $tcp_into_std:path,
        tcp_from_std: $tcp_from_std:path,
        io: $io:ident,
        tcp: $tcp:ty,
        listener: $listener:ty $(,)?
    ) => {
        $(#[$attr])*
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $rt;

        impl $crate::Runtime for $rt {
            type Clock = $clock;
            type Tcp = $io<$tcp>;
            type Listener = $listener;

            fn clock(&self) -> $clock {
                <$clock>::default()
            }

            fn spawn<F>(&self, future: F)
            where
                F: ::std::future::Future<Output = ()> + Send + 'static,
            {
                $spawn(future);
            }

            fn run_thread(
                &self,
                name: ::std::string::String,
                main: ::std::boxed::Box<dyn FnOnce() -> $crate::BoxFuture + Send>,
            ) -> ::std::io::Result<()> {
                $thread(name, main)
            }

            fn listener_from_std(
                &self,
                listener: ::std::net::TcpListener,
            ) -> ::std::io::Result<$listener> {
                $from_std(listener)
            }

            fn moves_tcp(&self) -> bool {
                true
            }

            fn tcp_into_std(&self, tcp: Self::Tcp) -> ::std::io::Result<::std::net::TcpStream> {
                $tcp_into_std(tcp.into_inner())
            }

            fn tcp_from_std(&self, tcp: ::std::net::TcpStream) -> ::std::io::Result<Self::Tcp> {
                $tcp_from_std(tcp).map($io::new)
            }

            fn connect(
                &self,
                authority: ::std::string::String,
            ) -> impl ::std::future::Future<Output = ::std::io::Result<Self::Tcp>> + Send + 'static
            {
                async move {
                    let stream = <$tcp>::connect(authority.as_str()).await?;
                    stream.set_nodelay(true)?;
                    Ok($io::new(stream))
                }
            }

            fn accept<'a>(
                &'a self,
                listener: &'a $listener,
            ) -> impl ::std::future::Future<
                Output = ::std::io::Result<(Self::Tcp, ::std::net::SocketAddr)>,
            > + Send
                   + 'a {
                async move {
                    let (stream, peer) = listener.accept().await?;
                    let _ = stream.set_nodelay(true); // a latency hint only: serve it anyway
                    Ok(($io::new(stream), peer))
                }
            }
        }

        /// A byte stream of this runtime as a [`Transport`](wirestate_async::Transport):
        /// wrap any stream the runtime can read and write (TCP, TLS, Unix, in memory).
        #[derive(Debug)]
        pub struct $io<S>(S);

        impl<S> $io<S> {
            /// Wraps `stream`.
            pub fn new(stream: S) -> Self {
                Self(stream)
            }

            /// The wrapped stream.
            pub fn get_ref(&self) -> &S {
                &self.0
            }

            /// The wrapped stream, unwrapped.
            pub fn into_inner(self) -> S {
                self.0
            }
        }

        pub use $crate::engine::ws::{
            ClientRequest, CloseCode, Closed, Config, DeflateConfig, DeflateParams, Event,
            Message, MessageRef, Opened, Precompressed, Side, UrlError, Utf8Bytes,
        };
        pub use $crate::{Outgoing, RecvWith};
        pub use $crate::Error;

        /// A WebSocket over a byte stream of this runtime (TCP by default).
        ///
        /// Implements `Stream<Item = Result<Message, Error>>` and
        /// `Sink<impl Into<Message>>`.
        pub type WebSocket<S = $tcp> =
            $crate::WebSocket<$io<S>, <$rt as $crate::Runtime>::Clock>;

        /// Accepts a WebSocket on a server-side stream: reads the upgrade request,
        /// answers it (101, or the HTTP error for a bad request), and returns the open
        /// connection.
        ///
        /// The future is one pointer (the handshake's state is boxed): a task that
        /// awaits it and then serves the connection is sized for the connection only.
        pub fn accept<S>(
            stream: S,
            config: ::std::sync::Arc<Config>,
        ) -> impl ::std::future::Future<
            Output = ::std::result::Result<WebSocket<S>, Error>,
        >
        where
            $io<S>: $crate::Transport,
        {
            $crate::accept(&$rt, $io::new(stream), config)
        }

        /// The next connection on `listener`. It never fails: a connection's own error
        /// (reset before it was accepted) is skipped, and any other (out of file
        /// descriptors, of memory) is logged and retried after a pause (100 ms), so an
        /// accept loop built on it survives overload.
        pub async fn next_connection(
            listener: &$listener,
        ) -> ($tcp, ::std::net::SocketAddr) {
            let (io, peer) = $crate::next_connection(&$rt, listener).await;
            (io.into_inner(), peer)
        }

        /// A client WebSocket: over TCP, or TLS over it.
        pub type ClientWebSocket =
            $crate::WebSocket<$crate::ClientStream<$io<$tcp>>, <$rt as $crate::Runtime>::Clock>;

        pub use $crate::{ClientStream, Connector};

        /// Connects to a `ws://` (or, with the `tls` feature, `wss://`) URL over TCP
        /// (with `TCP_NODELAY`) and runs the handshake.
        pub async fn connect(
            url: &str,
            config: ::std::sync::Arc<Config>,
        ) -> ::std::result::Result<ClientWebSocket, Error> {
            $crate::connect(&$rt, url, config).await
        }

        /// [`connect`], reaching the server as `connector` says (TLS roots, extra
        /// headers).
        pub async fn connect_with(
            url: &str,
            config: ::std::sync::Arc<Config>,
            connector: &Connector,
        ) -> ::std::result::Result<ClientWebSocket, Error> {
            $crate::connect_with(&$rt, url, config, connector).await
        }

        /// Runs the client handshake for `request` on an already connected stream.
        pub async fn client<S>(
            stream: S,
            request: &ClientRequest,
            config: ::std::sync::Arc<Config>,
        ) -> ::std::result::Result<WebSocket<S>, Error>
        where
            $io<S>: $crate::Transport,
        {
            $crate::client(&$rt, $io::new(stream), request, config).await
        }

        /// TLS with rustls: `TlsAcceptor` for `serve_tls`, `TlsConnector` for clients.
        #[cfg(feature = "tls")]
        pub mod tls {
            pub use $crate::tls::*;
        }

        /// Serving inside a hyper 1 / tower / axum application.
        #[cfg(feature = "tower")]
        pub mod tower {
            pub use $crate::tower::*;
        }

        /// Engine.IO servers and clients on this runtime.
        pub mod eio {
            use super::{$io, $rt};
            pub use $crate::eio::*;

            /// An Engine.IO client session on this runtime (see [`connect`]).
            pub type EioClient = $crate::EioClient<$rt>;

            /// An endpoint with `options` (a [`Config`], or [`ServerOptions`] for HTTP
            /// limits and plain WebSocket routes) and OS-seeded session ids; its timer
            /// task is spawned on the runtime.
            pub fn server(options: impl Into<ServerOptions>) -> ::std::io::Result<EioServer> {
                $crate::eio::server(&$rt, options)
            }

            /// Starts an Engine.IO session with the server at `url` (`http://host:port`;
            /// the path comes from `config`). Nothing happens until [`EioClient::recv`]
            /// is awaited; its first event is `Open` (or `Closed` if the server cannot
            /// be reached).
            pub fn connect(
                url: &str,
                config: ClientConfig,
            ) -> ::std::result::Result<EioClient, $crate::Error> {
                $crate::eio::connect(&$rt, url, config)
            }

            /// [`connect`], reaching the server as `connector` says (TLS roots, extra
            /// headers).
            pub fn connect_with(
                url: &str,
                config: ClientConfig,
                connector: $crate::Connector,
            ) -> ::std::result::Result<EioClient, $crate::Error> {
                $crate::eio::connect_with(&$rt, url, config, connector)
            }

            /// Serves one connection over any stream (TCP, TLS, Unix, in memory), with
            /// its peer's address when it has one: use it from your own accept loop. A
            /// WebSocket upgrade for a route added with [`ServerOptions::websocket_route`]
            /// comes back open, with its path, for you to run.
            pub async fn serve_connection<S>(
                server: &EioServer,
                stream: S,
                peer_addr: Option<::std::net::SocketAddr>,
            ) -> ::std::io::Result<Option<(String, super::WebSocket<S>)>>
            where
                $io<S>: $crate::Transport + Send + 'static,
            {
                $crate::eio::serve_connection(&$rt, server, $io::new(stream), peer_addr).await
            }

            /// [`serve`] over TLS: each accepted connection's handshake (bounded by
            /// [`HttpLimits::request_timeout`]) first.
            #[cfg(feature = "tls")]
            pub async fn serve_tls(
                server: EioServer,
                listener: $listener,
                tls: $crate::tls::TlsAcceptor,
            ) -> ::std::io::Result<()> {
                $crate::eio::serve_accepting(&$rt, server, listener, tls, |_path, _ws| async {}).await
            }

            /// A tower layer that serves `server` at its path inside a hyper or axum
            /// application (see [`tower`](super::tower)).
            #[cfg(feature = "tower")]
            pub fn layer(
                server: &EioServer,
            ) -> $crate::tower::EngineLayer<$crate::engine::eio::Server, $rt> {
                $crate::tower::EngineLayer::new(&$rt, server.clone())
            }

            /// Accepts connections for ever, serving each on its own task (an accept
            /// error is logged and retried, never returned). Plain WebSocket routes, if
            /// any, are closed: use [`serve_with`] to run them.
            pub async fn serve(server: EioServer, listener: $listener) -> ::std::io::Result<()> {
                $crate::eio::serve(&$rt, server, listener).await
            }

            /// [`serve`], running `on_websocket(path, socket)` for the plain WebSocket
            /// routes.
            pub async fn serve_with<F, Fut>(
                server: EioServer,
                listener: $listener,
                on_websocket: F,
            ) -> ::std::io::Result<()>
            where
                F: Fn(String, super::WebSocket) -> Fut + Clone + Send + Sync + 'static,
                Fut: ::std::future::Future<Output = ()> + Send + 'static,
            {
                $crate::eio::serve_with(&$rt, server, listener, on_websocket).await
            }
        }

        /// Plain WebSocket applications on this runtime: routes by path pattern,
        /// authentication before the upgrade, connection ids, rooms, broadcast.
        pub mod router {
            use super::{$io, $rt};
            pub use $crate::router::*;

            /// Serves `router` alone on `listener` for ever, each connection on its own
            /// task (an accept error is logged and retried, never returned). To serve
            /// it beside Engine.IO or Socket.IO on one port, give it to their
            /// `ServerOptions::router` instead.
            pub async fn serve(router: Router, listener: $listener) -> ::std::io::Result<()> {
                $crate::router::serve(&$rt, router, listener).await
            }

            /// [`serve`] over TLS: each accepted connection's handshake (bounded by
            /// the request timeout) first.
            #[cfg(feature = "tls")]
            pub async fn serve_tls(
                router: Router,
                listener: $listener,
                tls: $crate::tls::TlsAcceptor,
            ) -> ::std::io::Result<()> {
                $crate::router::serve_accepting(&$rt, router, listener, tls).await
            }

            /// Serves one connection over any stream (TCP, TLS, Unix, in memory), with
            /// its peer's address when it has one, for your own accept loop.
            pub async fn serve_connection<S>(
                router: &Router,
                stream: S,
                peer_addr: Option<::std::net::SocketAddr>,
            ) -> ::std::io::Result<()>
            where
                $io<S>: $crate::Transport + Send + 'static,
            {
                $crate::router::serve_connection(&$rt, router, $io::new(stream), peer_addr).await
            }

            /// A tower layer that serves `router`'s WebSocket routes inside a hyper or
            /// axum application; every other request goes to the service it wraps.
            #[cfg(feature = "tower")]
            pub fn layer(router: &Router) -> $crate::tower::RouterLayer<$rt> {
                $crate::tower::RouterLayer::new(&$rt, router.clone())
            }
        }

        /// Socket.IO servers and clients on this runtime.
        pub mod sio {
            use super::{$io, $rt};
            pub use $crate::sio::*;

            /// A Socket.IO server with `options` (a [`Config`], or [`ServerOptions`] for
            /// HTTP limits) and OS-seeded ids; its timer task is spawned on the runtime,
            /// and so are handlers that have to wait.
            pub fn server(options: impl Into<ServerOptions>) -> ::std::io::Result<SocketIo> {
                $crate::sio::server(&$rt, options)
            }

            /// The handler test harness on this runtime (see
            /// [`TestServer`](testing::TestServer)).
            pub mod testing {
                use super::$rt;
                pub use $crate::sio::testing::*;

                /// A server under test with `options`, on this runtime: register its
                /// handlers on [`io`](TestServer::io), then connect in-memory clients.
                pub fn server(options: impl Into<super::ServerOptions>) -> TestServer<$rt> {
                    TestServer::new(&$rt, options)
                }
            }

            /// Connects to `url` (`http://host:port`, or `http://host:port/namespace`)
            /// like socket.io-client's `io(url, options)`: returns the namespace's
            /// socket and runs the client (connection, reconnection, handlers) on the
            /// runtime. More namespaces over the same connection:
            /// `socket.io().socket("/other", auth)`.
            pub fn io(
                url: &str,
                options: IoOptions,
            ) -> ::std::result::Result<ClientSocket, $crate::Error> {
                $crate::sio::io(&$rt, url, options)
            }

            /// Serves one connection over any stream (TCP, TLS, Unix, in memory), with
            /// its peer's address when it has one, for your own accept loop.
            pub async fn serve_connection<S>(
                io: &SocketIo,
                stream: S,
                peer_addr: Option<::std::net::SocketAddr>,
            ) -> ::std::io::Result<()>
            where
                $io<S>: $crate::Transport + Send + 'static,
            {
                $crate::sio::serve_connection(&$rt, io, $io::new(stream), peer_addr).await
            }

            /// [`serve`] over TLS: each accepted connection's handshake (bounded by
            /// [`HttpLimits::request_timeout`](crate::HttpLimits::request_timeout))
            /// first.
            #[cfg(feature = "tls")]
            pub async fn serve_tls(
                io: SocketIo,
                listener: $listener,
                tls: $crate::tls::TlsAcceptor,
            ) -> ::std::io::Result<()> {
                $crate::sio::serve_accepting(&$rt, io, listener, tls).await
            }

            /// A tower layer that serves `io` at its path inside a hyper or axum
            /// application (see [`tower`](super::tower)).
            #[cfg(feature = "tower")]
            pub fn layer(
                io: &SocketIo,
            ) -> $crate::tower::EngineLayer<$crate::engine::sio::Server, $rt> {
                $crate::tower::EngineLayer::new(&$rt, io.host().clone())
            }

            /// Joins `io` to a cluster over Redis, wire-compatible with Node's
            /// `@socket.io/redis-adapter` (see [`attach_redis`]). Returns at once; the
            /// Redis connections run on the runtime and reconnect by themselves.
            pub fn redis(io: &SocketIo, options: RedisOptions) -> ::std::io::Result<RedisCluster> {
                $crate::sio::attach_redis(&$rt, io, options)
            }

            /// Joins `io` to the cluster of the servers on `bus`, in this process (see
            /// [`attach_local`]): broadcasts, rooms and forwarding as over Redis.
            pub fn join_bus(io: &SocketIo, bus: &LocalBus) -> ::std::io::Result<RedisCluster> {
                $crate::sio::attach_local(&$rt, io, bus)
            }

            /// Serves `listener` with `shards` servers, one per thread (0: one per
            /// core), joined in process (see [`serve_sharded`]); `setup` registers
            /// each shard's handlers. Returns once every shard accepts.
            pub fn serve_sharded<F>(
                options: impl Into<ServerOptions>,
                listener: ::std::net::TcpListener,
                shards: usize,
                setup: F,
            ) -> ::std::io::Result<Shards>
            where
                F: Fn(&SocketIo) + Send + Sync + 'static,
            {
                $crate::sio::serve_sharded(&$rt, options, listener, shards, setup)
            }

            /// [`serve_sharded`] over TLS: each accepted connection's handshake
            /// (bounded by the request timeout) first, on its shard.
            #[cfg(feature = "tls")]
            pub fn serve_sharded_tls<F>(
                options: impl Into<ServerOptions>,
                listener: ::std::net::TcpListener,
                shards: usize,
                tls: $crate::tls::TlsAcceptor,
                setup: F,
            ) -> ::std::io::Result<Shards>
            where
                F: Fn(&SocketIo) + Send + Sync + 'static,
            {
                $crate::sio::serve_sharded_accepting(&$rt, options, listener, shards, tls, setup)
            }

            /// An emitter on a cluster's Redis, for a process with no server (see
            /// [`redis_emitter`]).
            pub async fn emitter(options: RedisOptions) -> ::std::io::Result<RedisEmitter> {
                $crate::sio::redis_emitter(&$rt, options).await
            }

            /// Accepts connections, serving each on its own task, until
            /// [`SocketIo::shutdown`] starts (an accept error is logged and retried,
            /// never returned).
            pub async fn serve(io: SocketIo, listener: $listener) -> ::std::io::Result<()> {
                $crate::sio::serve(&$rt, io, listener).await
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    struct Task;

    impl Wake for Task {
        fn wake(self: Arc<Self>) {}
    }

    #[test]
    fn a_waiter_polled_again_is_registered_once_and_released_when_dropped() {
        let waiters = std::sync::Mutex::new(super::Waiters::default());
        let lock = || waiters.lock().unwrap_or_else(|e| e.into_inner());
        let mut a = super::WaitId::new(|id| lock().remove(id));
        // A new waker at every poll, as `will_wake` may judge a task's own: still one
        // entry.
        for _ in 0..1000 {
            lock().register(&mut a.id, &Waker::from(Arc::new(Task)));
        }
        assert_eq!(lock().len(), 1);
        {
            let mut b = super::WaitId::new(|id| lock().remove(id));
            lock().register(&mut b.id, &Waker::from(Arc::new(Task)));
            assert_eq!(lock().len(), 2, "another waiter is kept too");
        }
        assert_eq!(lock().len(), 1, "a dropped waiter is forgotten");
        lock().wake_all();
        assert_eq!(lock().len(), 0);
        lock().register(&mut a.id, &Waker::from(Arc::new(Task)));
        assert_eq!(lock().len(), 1, "woken, it waits again");
        drop(a);
        assert_eq!(lock().len(), 0);
    }

    #[test]
    fn then_hands_the_first_output_on_once_the_first_future_is_gone() {
        use std::future::Future;
        use std::sync::Mutex;
        use std::task::{Context, Poll};
        struct Noted(Arc<Mutex<Vec<&'static str>>>);
        impl Drop for Noted {
            fn drop(&mut self) {
                self.0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push("first gone");
            }
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        let (noted, seen) = (Noted(log.clone()), log.clone());
        let mut waits = 2;
        let first = std::future::poll_fn(move |_| {
            let _held = &noted;
            waits -= 1;
            if waits > 0 {
                Poll::Pending
            } else {
                Poll::Ready(20)
            }
        });
        let mut both = Box::pin(super::then(first, move |n| {
            seen.lock().unwrap_or_else(|e| e.into_inner()).push("next");
            std::future::ready(n + 1)
        }));
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(both.as_mut().poll(&mut cx), Poll::Pending);
        assert!(log.lock().unwrap_or_else(|e| e.into_inner()).is_empty());
        assert_eq!(both.as_mut().poll(&mut cx), Poll::Ready(21));
        assert_eq!(
            *log.lock().unwrap_or_else(|e| e.into_inner()),
            ["first gone", "next"]
        );
    }
}
