//! An in-memory [`Runtime`] on a virtual clock, for tests: the whole async layer —
//! WebSocket, Engine.IO and Socket.IO servers and clients — runs with no sockets, no
//! threads and no sleeps, deterministically.
//!
//! * [`Sim`] is the runtime: a single-threaded executor, a virtual clock that jumps
//!   straight to the next deadline whenever every task is waiting, and a loopback
//!   network of [`MemListener`]s that [`Runtime::connect`] reaches by address.
//! * [`duplex`] makes a pair of connected [`MemStream`]s with a bounded buffer in
//!   each direction, so a peer that stops reading applies backpressure as a real
//!   socket does.
//!
//! ```
//! use std::time::Duration;
//! use wirestate_async::mem::Sim;
//! use wirestate_async::Runtime;
//!
//! let sim = Sim::new();
//! let start = sim.now();
//! sim.block_on(async {
//!     sim.sleep(Duration::from_secs(3600)).await; // instant: nothing else is runnable
//! });
//! assert_eq!(sim.now() - start, Duration::from_secs(3600));
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::{BoxFuture, Clock, Runtime, Transport};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The default capacity of each direction of a [`duplex`] made by [`Sim`]'s network.
pub const DEFAULT_CAPACITY: usize = 256 << 10;

/// One direction of a duplex: bytes written by one end, read by the other.
#[derive(Default)]
struct Pipe {
    buf: VecDeque<u8>,
    capacity: usize,
    /// The writer shut its side down (or dropped): EOF once `buf` is drained.
    closed: bool,
    /// The reader dropped: writes fail.
    reader_gone: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl Pipe {
    fn wake_all(&mut self) {
        for w in [self.read_waker.take(), self.write_waker.take()]
            .into_iter()
            .flatten()
        {
            w.wake();
        }
    }
}

/// One end of an in-memory byte stream (see [`duplex`]). Dropping it is an EOF for the
/// peer's reads and a broken pipe for its writes.
pub struct MemStream {
    read: Arc<Mutex<Pipe>>,
    write: Arc<Mutex<Pipe>>,
}

impl fmt::Debug for MemStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemStream")
            .field("readable", &lock(&self.read).buf.len())
            .field("unread_by_peer", &lock(&self.write).buf.len())
            .finish()
    }
}

/// Two connected streams; each direction buffers at most `capacity` bytes.
pub fn duplex(capacity: usize) -> (MemStream, MemStream) {
    let pipe = || {
        Arc::new(Mutex::new(Pipe {
            capacity: capacity.max(1),
            ..Pipe::default()
        }))
    };
    let (a_to_b, b_to_a) = (pipe(), pipe());
    (
        MemStream {
            read: b_to_a.clone(),
            write: a_to_b.clone(),
        },
        MemStream {
            read: a_to_b,
            write: b_to_a,
        },
    )
}

impl MemStream {
    /// Reads what is there now, up to `max` bytes, without waiting.
    pub fn take_available(&mut self, max: usize) -> Vec<u8> {
        let mut pipe = lock(&self.read);
        let n = pipe.buf.len().min(max);
        let out = pipe.buf.drain(..n).collect();
        if let Some(w) = pipe.write_waker.take() {
            w.wake();
        }
        out
    }

    /// Writes all of `bytes`, waiting for room.
    pub async fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let n = poll_fn(|cx| self.poll_write_vectored(cx, &[IoSlice::new(bytes)])).await?;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Reads until EOF.
    pub async fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match poll_fn(|cx| self.poll_read(cx, &mut buf)).await? {
                0 => return Ok(out),
                n => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Reads at least one byte (or EOF: empty).
    pub async fn read_some(&mut self) -> io::Result<Vec<u8>> {
        let mut buf = [0u8; 4096];
        let n = poll_fn(|cx| self.poll_read(cx, &mut buf)).await?;
        Ok(buf[..n].to_vec())
    }
}

impl Transport for MemStream {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut pipe = lock(&self.read);
        if pipe.buf.is_empty() {
            if pipe.closed {
                return Poll::Ready(Ok(0));
            }
            pipe.read_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = pipe.buf.len().min(buf.len());
        for (slot, byte) in buf.iter_mut().zip(pipe.buf.drain(..n)) {
            *slot = byte;
        }
        if let Some(w) = pipe.write_waker.take() {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut pipe = lock(&self.write);
        if pipe.reader_gone {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if pipe.closed {
            return Poll::Ready(Err(io::Error::other("write after shutdown")));
        }
        let room = pipe.capacity.saturating_sub(pipe.buf.len());
        if room == 0 {
            pipe.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let mut written = 0;
        for b in bufs {
            let take = b.len().min(room - written);
            pipe.buf.extend(&b[..take]);
            written += take;
            if written == room {
                break;
            }
        }
        if let Some(w) = pipe.read_waker.take() {
            w.wake();
        }
        Poll::Ready(Ok(written))
    }

    fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut pipe = lock(&self.write);
        pipe.closed = true;
        pipe.wake_all();
        Poll::Ready(Ok(()))
    }
}

impl Drop for MemStream {
    fn drop(&mut self) {
        let mut write = lock(&self.write);
        write.closed = true;
        write.wake_all();
        drop(write);
        let mut read = lock(&self.read);
        read.reader_gone = true;
        read.buf.clear();
        read.wake_all();
    }
}

/// Connections waiting on a [`MemListener`].
#[derive(Default)]
struct Backlog {
    queue: VecDeque<(MemStream, SocketAddr)>,
    waker: Option<Waker>,
    closed: bool,
}

/// A listener on [`Sim`]'s loopback network (see [`Sim::listen`]). Dropping it stops
/// new connections (they are refused).
pub struct MemListener {
    backlog: Arc<Mutex<Backlog>>,
    addr: SocketAddr,
}

impl fmt::Debug for MemListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemListener")
            .field("addr", &self.addr)
            .finish()
    }
}

impl MemListener {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for SimClock {
    fn drop(&mut self) {
        let armed = lock(&self.inner.state).timers.remove(&self.id);
        drop(armed); // after the lock, as in `poll_until`
    }
}

impl Drop for MemListener {
    fn drop(&mut self) {
        let mut backlog = lock(&self.backlog);
        backlog.closed = true;
        backlog.queue.clear();
    }
}

/// A task of the executor.
struct Task {
    future: Mutex<Option<BoxFuture>>,
    queued: AtomicBool,
    sim: std::sync::Weak<Inner>,
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            if let Some(sim) = self.sim.upgrade() {
                lock(&sim.state).ready.push_back(self.clone());
            }
        }
    }
}

/// Wakes the future that `block_on` runs.
struct MainWaker(AtomicBool);

impl Wake for MainWaker {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

#[derive(Default)]
struct State {
    elapsed: Duration,
    /// Each clock's one armed deadline (a clock is a re-armable timer).
    timers: HashMap<u64, (Duration, Waker)>,
    next_clock: u64,
    ready: VecDeque<Arc<Task>>,
    /// Every task spawned and not yet finished (for `shutdown`).
    tasks: Vec<std::sync::Weak<Task>>,
    listeners: HashMap<SocketAddr, Arc<Mutex<Backlog>>>,
    /// Every connection the network made, to sever them.
    pipes: Vec<std::sync::Weak<Mutex<Pipe>>>,
    next_port: u16,
    capacity: usize,
}

struct Inner {
    start: Instant,
    state: Mutex<State>,
}

/// The in-memory runtime: see the [module docs](self). Cheap to clone; every clone is
/// the same simulation.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<Inner>,
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("elapsed", &lock(&self.inner.state).elapsed)
            .finish_non_exhaustive()
    }
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}

impl Sim {
    /// A simulation at time zero, with no tasks and no listeners.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                start: Instant::now(),
                state: Mutex::new(State {
                    next_port: 40000,
                    capacity: DEFAULT_CAPACITY,
                    ..State::default()
                }),
            }),
        }
    }

    /// Sets the capacity of each direction of the connections made from now on.
    pub fn set_capacity(&self, bytes: usize) {
        lock(&self.inner.state).capacity = bytes;
    }

    /// Virtual time since the simulation started.
    pub fn elapsed(&self) -> Duration {
        lock(&self.inner.state).elapsed
    }

    /// Listens on `addr` (e.g. `127.0.0.1:3000`) of the loopback network.
    pub fn listen(&self, addr: &str) -> io::Result<MemListener> {
        let addr: SocketAddr = addr
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let backlog = Arc::new(Mutex::new(Backlog::default()));
        let mut state = lock(&self.inner.state);
        if let Some(old) = state.listeners.get(&addr) {
            if !lock(old).closed {
                return Err(io::ErrorKind::AddrInUse.into());
            }
        }
        state.listeners.insert(addr, backlog.clone());
        Ok(MemListener { backlog, addr })
    }

    /// Waits for `duration` of virtual time.
    pub async fn sleep(&self, duration: Duration) {
        crate::sleep(&mut self.clock(), duration).await
    }

    /// `future`'s output, or `None` if `limit` of virtual time passes first.
    pub async fn timeout<T>(&self, limit: Duration, future: impl Future<Output = T>) -> Option<T> {
        let mut clock = self.clock();
        let deadline = clock.now() + limit;
        crate::until(&mut clock, deadline, future).await
    }

    /// Runs `future` and every spawned task until `future` completes. Whenever nothing
    /// can run, virtual time jumps to the earliest deadline. Panics if nothing can run
    /// and nothing is waiting on the clock: the simulation is deadlocked.
    pub fn block_on<T>(&self, future: impl Future<Output = T>) -> T {
        let mut future = std::pin::pin!(future);
        let main = Arc::new(MainWaker(AtomicBool::new(true)));
        let main_waker = Waker::from(main.clone());
        loop {
            if main.0.swap(false, Ordering::AcqRel) {
                if let Poll::Ready(v) = future.as_mut().poll(&mut Context::from_waker(&main_waker))
                {
                    return v;
                }
                continue;
            }
            let next = lock(&self.inner.state).ready.pop_front();
            if let Some(task) = next {
                task.queued.store(false, Ordering::Release);
                let waker = Waker::from(task.clone());
                let mut slot = lock(&task.future);
                if let Some(f) = slot.as_mut() {
                    if f.as_mut().poll(&mut Context::from_waker(&waker)).is_ready() {
                        *slot = None;
                    }
                }
                continue;
            }
            if !self.advance() {
                panic!("simulation deadlocked: no task can run and no timer is armed");
            }
        }
    }

    /// Jumps to the earliest armed deadline and wakes what waits on it.
    fn advance(&self) -> bool {
        let mut state = lock(&self.inner.state);
        let Some(next) = state.timers.values().map(|(at, _)| *at).min() else {
            return false;
        };
        state.elapsed = state.elapsed.max(next);
        let now = state.elapsed;
        let due: Vec<u64> = (state.timers.iter())
            .filter(|(_, (at, _))| *at <= now)
            .map(|(id, _)| *id)
            .collect();
        let wakers: Vec<Waker> = (due.iter())
            .filter_map(|id| state.timers.remove(id))
            .map(|(_, waker)| waker)
            .collect();
        drop(state);
        for waker in wakers {
            waker.wake();
        }
        true
    }

    /// Ends the simulation as a runtime's shutdown does: every task's future is
    /// dropped unfinished, with what it holds (servers, connections, clocks), and the
    /// network is cut. Without it, tasks that wait on each other keep one another
    /// alive after the last handle is gone.
    pub fn shutdown(&self) {
        self.sever();
        let tasks = {
            let mut state = lock(&self.inner.state);
            state.ready.clear();
            state.listeners.clear();
            std::mem::take(&mut state.tasks)
        };
        // Dropped with no lock held: a future's drop may call into the simulation.
        let futures: Vec<_> = tasks
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .filter_map(|t| lock(&t.future).take())
            .collect();
        drop(futures);
        let timers = std::mem::take(&mut lock(&self.inner.state).timers);
        drop(timers);
    }

    /// Cuts every connection made through the network so far, as a crash of the
    /// server or a lost network would: reads see EOF, writes fail. Listeners stay.
    pub fn sever(&self) {
        let pipes = std::mem::take(&mut lock(&self.inner.state).pipes);
        for pipe in pipes.iter().filter_map(std::sync::Weak::upgrade) {
            let mut pipe = lock(&pipe);
            pipe.closed = true;
            pipe.reader_gone = true;
            pipe.buf.clear();
            pipe.wake_all();
        }
    }

    fn connect_now(&self, authority: &str) -> io::Result<MemStream> {
        let addr: SocketAddr = authority
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::ConnectionRefused, "unknown host"))?;
        let mut state = lock(&self.inner.state);
        let backlog = state
            .listeners
            .get(&addr)
            .cloned()
            .ok_or(io::ErrorKind::ConnectionRefused)?;
        let port = state.next_port;
        state.next_port = state.next_port.checked_add(1).unwrap_or(40000);
        let (client, server) = duplex(state.capacity);
        state.pipes.retain(|p| p.strong_count() > 0);
        state
            .pipes
            .extend([Arc::downgrade(&client.read), Arc::downgrade(&client.write)]);
        drop(state);
        let mut backlog = lock(&backlog);
        if backlog.closed {
            return Err(io::ErrorKind::ConnectionRefused.into());
        }
        let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        backlog.queue.push_back((server, peer));
        if let Some(w) = backlog.waker.take() {
            w.wake();
        }
        Ok(client)
    }
}

/// [`Sim`]'s virtual clock and one re-armable timer.
pub struct SimClock {
    inner: Arc<Inner>,
    id: u64,
}

impl fmt::Debug for SimClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimClock").finish_non_exhaustive()
    }
}

impl Clock for SimClock {
    fn now(&self) -> Instant {
        self.inner.start + lock(&self.inner.state).elapsed
    }

    fn poll_until(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        let at = deadline.saturating_duration_since(self.inner.start);
        let mut state = lock(&self.inner.state);
        // A replaced waker is dropped after the lock: the last handle of a task drops
        // its future, whose clocks lock the state again.
        let (ready, replaced) = if state.elapsed >= at {
            (true, state.timers.remove(&self.id))
        } else {
            (
                false,
                state.timers.insert(self.id, (at, cx.waker().clone())),
            )
        };
        drop(state);
        drop(replaced);
        if ready {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Runtime for Sim {
    type Clock = SimClock;
    type Tcp = MemStream;
    type Listener = MemListener;

    fn clock(&self) -> SimClock {
        let mut state = lock(&self.inner.state);
        state.next_clock += 1;
        SimClock {
            inner: self.inner.clone(),
            id: state.next_clock,
        }
    }

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let task = Arc::new(Task {
            future: Mutex::new(Some(Box::pin(future))),
            queued: AtomicBool::new(true),
            sim: Arc::downgrade(&self.inner),
        });
        let mut state = lock(&self.inner.state);
        if state.tasks.len() >= 64 && state.tasks.len().is_power_of_two() {
            state.tasks.retain(|t| t.strong_count() > 0);
        }
        state.tasks.push(Arc::downgrade(&task));
        state.ready.push_back(task);
    }

    fn connect(
        &self,
        authority: String,
    ) -> impl Future<Output = io::Result<MemStream>> + Send + 'static {
        std::future::ready(self.connect_now(&authority))
    }

    fn accept<'a>(
        &'a self,
        listener: &'a MemListener,
    ) -> impl Future<Output = io::Result<(MemStream, SocketAddr)>> + Send + 'a {
        poll_fn(move |cx| {
            let mut backlog = lock(&listener.backlog);
            match backlog.queue.pop_front() {
                Some(accepted) => Poll::Ready(Ok(accepted)),
                None => {
                    backlog.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
    }
}
