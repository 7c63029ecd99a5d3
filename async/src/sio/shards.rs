//! A Socket.IO server on every core: one server per thread (a shard), each on a
//! single-threaded executor of its thread's own, accepting on the same listening
//! socket. Shards share no lock in the common path: a connection is served by one
//! shard only.
//!
//! The shards form a cluster over an in-process [`LocalBus`] with the same messages
//! as a Redis cluster: broadcasts and room operations from any shard reach every
//! shard, [`Operator::fetch_sockets`] sees the sockets of all, and a polling request
//! accepted by a shard that does not own its session is carried to the owner
//! (session ids start with the owner's tag). A WebSocket upgrade accepted by such a
//! shard moves to the owner, socket and all, and is served there from its request on
//! (over TLS, whose state cannot move, it is tunnelled instead).

use super::*;
use crate::bus::LocalBus;

/// The shards of a server started by [`serve_sharded`]: a handle on each, cheap to
/// keep. An operation from [`io`](Self::io) outside a handler reaches every shard
/// (it is one node of their cluster). Dropping it leaves the shards serving; they
/// stop with [`shutdown`](Self::shutdown) (or the process).
pub struct Shards {
    ios: Vec<SocketIo>,
    bus: LocalBus,
    running: Arc<Running>,
    moved: Arc<std::sync::atomic::AtomicU64>,
}

impl fmt::Debug for Shards {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shards")
            .field("shards", &self.ios.len())
            .field("running", &lock(&self.running.state).0)
            .finish_non_exhaustive()
    }
}

/// Where each shard takes the connections that other shards move to it: by the tag
/// its session ids start with.
struct Registry<R> {
    rt: R,
    shards: std::sync::RwLock<Vec<(String, Arc<Mailbox>)>>,
    moved: Arc<std::sync::atomic::AtomicU64>,
}

/// Connections moved to a shard, waiting for its task.
#[derive(Default)]
struct Mailbox {
    state: Mutex<(VecDeque<Moved>, Option<Waker>)>,
}

/// A connection on its way to the shard that owns its session: its socket, what was
/// read from it (the upgrade request and what followed), its peer.
struct Moved {
    tcp: std::net::TcpStream,
    raw: bytes::Bytes,
    peer: Option<std::net::SocketAddr>,
}

impl<R: Runtime> crate::host::Mover for Registry<R> {
    fn take(
        &self,
        sid: &str,
        stream: Box<dyn std::any::Any + Send>,
        request: &wirestate_engine::http::Request,
    ) -> Result<(), Box<dyn std::any::Any + Send>> {
        if !self.rt.moves_tcp() {
            return Err(stream);
        }
        let mailbox = (self.shards.read().unwrap_or_else(|e| e.into_inner()))
            .iter()
            .find(|(tag, _)| sid.starts_with(tag.as_str()))
            .map(|(_, mailbox)| mailbox.clone());
        let Some(mailbox) = mailbox else {
            return Err(stream);
        };
        // A TLS stream (or any other) does not move: it is tunnelled.
        let tcp = stream.downcast::<R::Tcp>()?;
        match self.rt.tcp_into_std(*tcp) {
            Ok(tcp) => {
                // The owner reads the request again, then what followed it.
                let mut raw = Vec::with_capacity(512 + request.body.len());
                request.head.encode(&mut raw);
                raw.extend_from_slice(&request.body);
                let peer = request.peer_addr;
                let mut state = lock(&mailbox.state);
                state.0.push_back(Moved {
                    tcp,
                    raw: raw.into(),
                    peer,
                });
                if let Some(w) = state.1.take() {
                    w.wake();
                }
                self.moved.fetch_add(1, Ordering::Relaxed);
            }
            // Rare (the reactor would not let it go): the client reconnects.
            Err(e) => tracing::debug!(error = %e, "a connection could not move to its shard"),
        }
        Ok(())
    }
}

/// Serves on this shard the connections other shards move to it.
async fn run_mailbox<R: Runtime>(rt: R, io: SocketIo, mailbox: Arc<Mailbox>) {
    loop {
        let moved = poll_fn(|cx| {
            let mut state = lock(&mailbox.state);
            if state.0.is_empty() {
                state.1 = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Poll::Ready(std::mem::take(&mut state.0))
        })
        .await;
        for m in moved {
            match rt.tcp_from_std(m.tcp) {
                Ok(tcp) => {
                    let stream = crate::host::Prefixed::new(m.raw, tcp);
                    let (serving_rt, io) = (rt.clone(), io.clone());
                    rt.spawn(async move {
                        let _ = serve_connection(&serving_rt, &io, stream, m.peer).await;
                    });
                }
                Err(e) => tracing::debug!(error = %e, "a moved connection could not be served"),
            }
        }
    }
}

/// How many shards still serve, and who waits for none to.
struct Running {
    state: Mutex<(usize, crate::Waiters)>,
    ended: std::sync::Condvar,
}

impl Running {
    fn ended_one(&self) {
        self.abandon(1);
    }

    /// `count` shards ended (or will never start).
    fn abandon(&self, count: usize) {
        let mut s = lock(&self.state);
        s.0 = s.0.saturating_sub(count);
        if s.0 == 0 {
            s.1.wake_all();
            self.ended.notify_all();
        }
    }
}

/// Ends a shard's count when its thread's future ends, or is dropped unfinished.
struct EndGuard(Arc<Running>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.0.ended_one();
    }
}

impl Shards {
    /// The first shard's server: what it broadcasts, and the rooms it changes with
    /// `sockets_join`/`sockets_leave`/`disconnect_sockets`, reach every shard.
    pub fn io(&self) -> &SocketIo {
        &self.ios[0]
    }

    /// Each shard's server, in order.
    pub fn iter(&self) -> impl Iterator<Item = &SocketIo> {
        self.ios.iter()
    }

    /// How many shards there are.
    pub fn len(&self) -> usize {
        self.ios.len()
    }

    /// Always false: there is at least one shard.
    pub fn is_empty(&self) -> bool {
        self.ios.is_empty()
    }

    /// The bus the shards share (for another server of this process to join them,
    /// with [`attach_local`](super::attach_local)).
    pub fn bus(&self) -> &LocalBus {
        &self.bus
    }

    /// How many connections a shard has handed to the shard that owns their session
    /// (a WebSocket upgrade after polling, accepted by another shard), instead of
    /// tunnelling them.
    pub fn moved_connections(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }

    /// Graceful shutdown of every shard (see [`SocketIo::shutdown`]); returns once
    /// all of them are done, and their threads end.
    pub async fn shutdown(&self) {
        // Every shard stops taking sessions at once; then each drains.
        for io in &self.ios {
            io.begin_shutdown();
        }
        for io in &self.ios {
            io.inner.host.idle().await;
        }
        self.closed().await;
    }

    /// Resolves once every shard's thread has ended (after a shutdown).
    pub async fn closed(&self) {
        let mut waiting = crate::WaitId::new(|id| lock(&self.running.state).1.remove(id));
        poll_fn(|cx| {
            let mut s = lock(&self.running.state);
            if s.0 == 0 {
                return Poll::Ready(());
            }
            s.1.register(&mut waiting.id, cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Blocks the calling thread until every shard's thread has ended (for a `main`
    /// with no runtime of its own).
    pub fn wait(&self) {
        let mut s = lock(&self.running.state);
        while s.0 > 0 {
            s = self
                .running
                .ended
                .wait(s)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Serves `listener` with `shards` servers (0: one per available core), each on a
/// thread of its own with a single-threaded executor of `rt`'s kind. `setup` is run
/// on each shard's [`SocketIo`], on that shard's thread, before it serves: register
/// the handlers there (they run on that thread; state that shards share is the
/// application's, behind an `Arc`). Returns once every shard accepts, with every
/// shard subscribed to the others.
///
/// Each shard applies `options` on its own: the limits (`max_connections` and the
/// rest) are per shard; a connection moved to the shard that owns its session counts
/// against the limits of the shard that accepted it until it moves (there are at most
/// as many as sessions). A shard that [`attach_redis`](super::attach_redis) joins to
/// Redis in `setup` is a node of that Redis cluster instead, and reaches the other
/// shards through it.
pub fn serve_sharded<R, F>(
    rt: &R,
    options: impl Into<ServerOptions>,
    listener: std::net::TcpListener,
    shards: usize,
    setup: F,
) -> std::io::Result<Shards>
where
    R: Runtime,
    F: Fn(&SocketIo) + Send + Sync + 'static,
{
    serve_sharded_accepting(rt, options, listener, shards, crate::Plain, setup)
}

/// [`serve_sharded`], with each connection made into the stream served by
/// `acceptor` (a TLS handshake, bounded by
/// [`HttpLimits::request_timeout`](crate::HttpLimits::request_timeout)).
pub fn serve_sharded_accepting<R, A, F>(
    rt: &R,
    options: impl Into<ServerOptions>,
    listener: std::net::TcpListener,
    shards: usize,
    acceptor: A,
    setup: F,
) -> std::io::Result<Shards>
where
    R: Runtime,
    A: crate::Acceptor<R::Tcp>,
    F: Fn(&SocketIo) + Send + Sync + 'static,
{
    let options = options.into();
    let setup = Arc::new(setup);
    let n = match shards {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let bus = LocalBus::new();
    let registry = Arc::new(Registry {
        rt: rt.clone(),
        shards: std::sync::RwLock::new(Vec::with_capacity(n)),
        moved: Arc::default(),
    });
    let running = Arc::new(Running {
        state: Mutex::new((n, crate::Waiters::default())),
        ended: std::sync::Condvar::new(),
    });
    let (ready_tx, ready) = std::sync::mpsc::channel::<std::io::Result<()>>();
    let mut ios = Vec::with_capacity(n);
    let mut started = 0;
    let mut failed = None;
    for i in 0..n {
        let shard = (|| -> std::io::Result<_> {
            let io = SocketIo::new(rt, options.clone(), crate::os_seed()?);
            Ok((io, listener.try_clone()?))
        })();
        let (io, listener) = match shard {
            Ok(shard) => shard,
            Err(e) => {
                running.abandon(n - i);
                failed = Some(e);
                break;
            }
        };
        let (rt2, io2, bus, registry, setup, acceptor, ready_tx, guard) = (
            rt.clone(),
            io.clone(),
            bus.clone(),
            registry.clone(),
            setup.clone(),
            acceptor.clone(),
            ready_tx.clone(),
            EndGuard(running.clone()),
        );
        let main = Box::new(move || -> crate::BoxFuture {
            Box::pin(async move {
                let _guard = guard;
                // On the shard's thread: what `setup` spawns runs here.
                setup(&io2);
                let joined = if lock(&io2.inner.app).redis.is_none() {
                    cluster::join_local(&rt2, &io2, &bus).map(|(_, tasks)| tasks)
                } else {
                    Ok(Vec::new())
                };
                // Upgrades for this shard's sessions that another shard accepts come
                // here, socket and all (over the bus or over Redis alike).
                let tag = (lock(&io2.inner.app).redis.as_ref()).map(|r| r.forwarding.tag.clone());
                let joined = joined.map(|mut tasks| {
                    if let Some(tag) = tag {
                        let mailbox = Arc::new(Mailbox::default());
                        (registry.shards.write().unwrap_or_else(|e| e.into_inner()))
                            .push((tag, mailbox.clone()));
                        io2.inner.host.set_mover(Some(registry.clone()));
                        tasks.push(Box::pin(run_mailbox(rt2.clone(), io2.clone(), mailbox)));
                    }
                    tasks
                });
                let listener =
                    joined.and_then(|tasks| Ok((tasks, rt2.listener_from_std(listener)?)));
                let (tasks, listener) = match listener {
                    Ok(ready) => ready,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let host = io2.host().clone();
                let clock = rt2.clock();
                rt2.spawn(async move { host.run_timers(clock).await });
                for task in tasks {
                    rt2.spawn(task);
                }
                let _ = ready_tx.send(Ok(()));
                drop(ready_tx);
                if let Err(e) = serve_accepting(&rt2, io2, listener, acceptor).await {
                    tracing::error!(shard = i, error = %e, "a shard stopped serving");
                }
            })
        });
        match rt.run_thread(format!("wirestate-shard-{i}"), main) {
            Ok(()) => started += 1,
            Err(e) => {
                // `main`, and its guard, are gone: the shards after it never start.
                running.abandon(n - i - 1);
                failed = Some(e);
                break;
            }
        }
        ios.push(io);
    }
    drop(ready_tx);
    for _ in 0..started {
        match ready.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = failed.or(Some(e)),
            Err(_) => {
                failed = failed.or(Some(std::io::Error::other("a shard's thread ended")));
            }
        }
    }
    if let Some(e) = failed {
        // Stop the shards that did start: their threads end once drained.
        for io in &ios {
            io.begin_shutdown();
        }
        return Err(e);
    }
    Ok(Shards {
        ios,
        bus,
        running,
        moved: registry.moved.clone(),
    })
}
