//! A Socket.IO server in a cluster over Redis, side by side with Node servers that use
//! `@socket.io/redis-adapter` (classic or sharded) and with `@socket.io/redis-emitter`.
//!
//! [`attach`] gives a [`SocketIo`] a [`RedisCluster`]: two Redis connections (one
//! publishes and asks, one subscribes) run on the runtime's tasks, reconnecting for as
//! long as the server lives; the sans-IO [`redis::Adapter`] decides what goes on them.
//! From then on broadcasts, `sockets_join`, `sockets_leave` and `disconnect_sockets`
//! reach the whole cluster, and so do [`Operator::fetch_sockets`],
//! [`Namespace::server_side_emit`] and broadcasts with acks.
//!
//! No sticky sessions: the server's session ids start with its tag, and a request for
//! another server's session is carried to that server and answered from there (the
//! `forwarding` module).

use wirestate_engine::redis::{self, resp::Reply, Command, RequestError, RequestId};

use super::forwarding::{Forwarder, Forwarding, Sent};
use super::*;
use crate::bus::LocalBus;
pub(super) use crate::forward::{SharedSlot, Slot};
use crate::redis::{run_link, run_local_link, run_topology, Link, LinkHooks, RedisUrl, Topology};

/// How to join a cluster: the Redis URL and the adapter's options.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    url: RedisUrl,
    /// The adapter's options (key prefix, request timeout).
    pub adapter: redis::Config,
    connector: crate::Connector,
    /// The URL is one node of a Redis Cluster.
    cluster: bool,
}

impl RedisOptions {
    /// Options for the Redis at `url` (`redis://host:port/db`, `rediss://...`); a bad
    /// URL is an error saying why.
    pub fn new(url: &str) -> Result<Self, crate::Error> {
        let url = RedisUrl::parse(url).map_err(|e| {
            crate::Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        })?;
        Ok(Self {
            url,
            adapter: redis::Config::default(),
            connector: crate::Connector::default(),
            cluster: false,
        })
    }

    /// The channel prefix (`key` in the reference; default `socket.io`).
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.adapter.key = key.into();
        self
    }

    /// Speaks the sharded adapter's protocol (`createShardedAdapter`, Redis 7 sharded
    /// pub/sub) with this `subscriptionMode`, instead of the classic one.
    pub fn sharded(mut self, subscription: wirestate_engine::redis::SubscriptionMode) -> Self {
        self.adapter.mode = wirestate_engine::redis::Mode::Sharded(subscription);
        self
    }

    /// The URL is one node of a Redis Cluster (several primaries, hash slots): each
    /// sharded channel is subscribed and published on the primary that serves it,
    /// found with `CLUSTER SLOTS` and found again when a reply says it moved. Needs
    /// the sharded protocol ([`sharded`](Self::sharded)), as the reference does for
    /// Redis Cluster. An emitter made with these options ignores it: it publishes on
    /// classic channels, which a Redis Cluster relays to every node.
    pub fn cluster(mut self) -> Self {
        self.cluster = true;
        self
    }

    /// How long a cluster request waits for answers (default 5 s).
    pub fn requests_timeout(mut self, timeout: Duration) -> Self {
        self.adapter.requests_timeout = timeout;
        self
    }

    pub(super) fn parts(self) -> (RedisUrl, crate::Connector, String, Duration) {
        let wait = self.adapter.requests_timeout;
        (self.url, self.connector, self.adapter.key, wait)
    }

    /// Trusts what `tls` trusts for `rediss://` (a private CA, say).
    #[cfg(feature = "rustls")]
    pub fn tls(mut self, tls: crate::tls::TlsConnector) -> Self {
        self.connector = self.connector.tls(tls);
        self
    }
}

/// A server's membership of a Redis cluster: cheap to clone.
#[derive(Clone)]
pub struct RedisCluster {
    shared: Arc<Shared>,
}

impl fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCluster")
            .field("uid", &self.uid())
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl RedisCluster {
    /// This server's id in the cluster (the adapter's `uid`).
    pub fn uid(&self) -> String {
        lock(&self.shared.adapter).uid().to_owned()
    }

    /// Both Redis connections are up (with a Redis Cluster: those to every primary).
    pub fn is_connected(&self) -> bool {
        self.shared.links.is_connected()
    }

    /// Leaves the cluster: closes the Redis connections, and the server goes on alone
    /// (its requests in flight end as timed out).
    pub fn close(&self) {
        self.shared.links.close();
        lock(&self.shared.adapter).fail_all();
        self.shared
            .forwarding
            .closed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(io) = self.shared.io() {
            io.inner.host.set_forward(None);
            io.inner.host.with(|s| {
                s.set_sid_prefix(None);
                s.set_cluster(false);
                s.set_room_events(false);
            });
            lock(&io.inner.app).redis = None;
            self.shared.pump(&io);
        }
    }
}

/// The connections to Redis: one publishing and one subscribing, or those to each
/// primary of a Redis Cluster.
enum Links {
    One {
        publisher: Arc<Link<Expect>>,
        subscriber: Arc<Link<Expect>>,
    },
    Cluster(Arc<Topology<Expect>>),
}

impl Links {
    /// Where to publish on (or ask about) `channel`; `None` while its primary is
    /// unknown.
    fn publisher(&self, channel: &str) -> Option<Arc<Link<Expect>>> {
        match self {
            Self::One { publisher, .. } => Some(publisher.clone()),
            Self::Cluster(t) => t.publisher(channel.as_bytes()),
        }
    }

    /// Where to subscribe to `channel`.
    fn subscriber(&self, channel: &str) -> Option<Arc<Link<Expect>>> {
        match self {
            Self::One { subscriber, .. } => Some(subscriber.clone()),
            Self::Cluster(t) => t.subscriber(channel.as_bytes()),
        }
    }

    fn is_connected(&self) -> bool {
        match self {
            Self::One {
                publisher,
                subscriber,
            } => publisher.is_connected() && subscriber.is_connected(),
            Self::Cluster(t) => t.is_connected(),
        }
    }

    fn close(&self) {
        match self {
            Self::One {
                publisher,
                subscriber,
            } => {
                publisher.close();
                subscriber.close();
            }
            Self::Cluster(t) => t.close(),
        }
    }
}

/// What a command on the publishing connection waits for.
pub(super) enum Expect {
    Nothing,
    ServerCount(RequestId),
    /// Whether a forwarded request or tunnel reached its owner.
    Forwarded(Sent),
}

/// Someone waiting for a cluster request.
enum Waiter {
    Fetch(SharedSlot<Result<Vec<Value>, RequestError>>),
    ServerSideEmit(SharedSlot<(Vec<Value>, bool)>),
    Acks(Arc<Mutex<AckShared>>),
}

pub(super) type ServerEventHandler = Arc<dyn Fn(Vec<Value>, Option<ServerAck>) + Send + Sync>;

pub(super) struct Shared {
    io: Weak<Inner>,
    adapter: Mutex<redis::Adapter>,
    links: Links,
    waiters: Mutex<HashMap<RequestId, Waiter>>,
    timer: Mutex<Option<Waker>>,
    /// The adapter speaks the sharded protocol (fixed when attached).
    sharded: bool,
    /// Requests for sessions of other nodes, and theirs for this one's.
    pub(super) forwarding: Forwarding,
}

/// Joins the cluster on the Redis of `options`: from now on this server's broadcasts
/// and room operations reach the other servers, and theirs reach this one. Returns at
/// once: the connections are made on `rt`'s tasks, and while Redis cannot be reached
/// the server serves its own clients, logs it, and keeps trying.
pub fn attach<R: Runtime>(
    rt: &R,
    io: &SocketIo,
    options: RedisOptions,
) -> std::io::Result<RedisCluster> {
    if options.cluster && options.adapter.mode == redis::Mode::Classic {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a Redis Cluster needs the sharded adapter (RedisOptions::sharded)",
        ));
    }
    let links = if options.cluster {
        Links::Cluster(Arc::new(Topology::new(options.url.clone())))
    } else {
        Links::One {
            publisher: Arc::new(Link::new(false)),
            subscriber: Arc::new(Link::new(true)),
        }
    };
    let (cluster, hooks) = join(rt, io, options.adapter.clone(), links)?;
    match &cluster.shared.links {
        Links::One {
            publisher,
            subscriber,
        } => {
            for (link, name) in [(publisher, "publisher"), (subscriber, "subscriber")] {
                rt.spawn(run_link(
                    rt.clone(),
                    options.url.clone(),
                    options.connector.clone(),
                    link.clone(),
                    hooks.clone(),
                    name,
                ));
            }
        }
        Links::Cluster(topology) => rt.spawn(run_topology(
            rt.clone(),
            options.connector.clone(),
            topology.clone(),
            hooks,
        )),
    }
    rt.spawn(run_timer(Arc::downgrade(&cluster.shared), rt.clock()));
    Ok(cluster)
}

/// Joins the cluster of the servers on `bus`, an in-process stand-in for Redis: the
/// same messages and forwarding as over Redis (the adapter's classic protocol, key
/// `socket.io`), carried in memory. Its tasks run on `rt`.
pub fn attach_local<R: Runtime>(
    rt: &R,
    io: &SocketIo,
    bus: &LocalBus,
) -> std::io::Result<RedisCluster> {
    let (cluster, tasks) = join_local(rt, io, bus)?;
    for task in tasks {
        rt.spawn(task);
    }
    Ok(cluster)
}

/// [`attach_local`], leaving its tasks to the caller to spawn where the server runs
/// (a shard's thread). Subscribed at once: a message published from now on reaches
/// this server, whenever its tasks start.
pub(super) fn join_local<R: Runtime>(
    rt: &R,
    io: &SocketIo,
    bus: &LocalBus,
) -> std::io::Result<(RedisCluster, Vec<crate::BoxFuture>)> {
    let publisher = Arc::new(Link::local(bus, false));
    let subscriber = Arc::new(Link::local(bus, true));
    let links = Links::One {
        publisher: publisher.clone(),
        subscriber: subscriber.clone(),
    };
    let (cluster, hooks) = join(rt, io, redis::Config::default(), links)?;
    hooks.connected(&subscriber);
    let tasks: Vec<crate::BoxFuture> = vec![
        Box::pin(run_local_link(publisher, hooks.clone())),
        Box::pin(run_local_link(subscriber, hooks)),
        Box::pin(run_timer(Arc::downgrade(&cluster.shared), rt.clock())),
    ];
    Ok((cluster, tasks))
}

/// Makes `io` a member of a cluster over `links` (not yet running).
fn join<R: Runtime>(
    rt: &R,
    io: &SocketIo,
    config: redis::Config,
    links: Links,
) -> std::io::Result<(RedisCluster, Arc<Hooks>)> {
    let sharded = config.mode != redis::Mode::Classic;
    let tag = wirestate_engine::redis::forward::tag_from(crate::os_seed()?);
    let serve_tunnel = {
        let rt = rt.clone();
        let host = io.inner.host.clone();
        Box::new(move |tunnel, request| {
            let host = host.clone();
            let clock = rt.clock();
            rt.spawn(async move { host.serve_tunnel(tunnel, clock, request).await });
        })
    };
    let shared = Arc::new(Shared {
        forwarding: Forwarding::new(&config.key, tag.clone(), serve_tunnel),
        io: Arc::downgrade(&io.inner),
        adapter: Mutex::new(redis::Adapter::new(config, crate::os_seed()?)),
        links,
        waiters: Mutex::new(HashMap::new()),
        timer: Mutex::new(None),
        sharded,
    });
    {
        let mut app = lock(&io.inner.app);
        app.redis = Some(shared.clone());
    }
    io.inner
        .host
        .set_forward(Some(Arc::new(Forwarder(Arc::downgrade(&shared)))));
    io.inner.host.with(|s| {
        s.set_cluster(true);
        s.set_sid_prefix(Some(&tag));
        s.set_room_events(sharded);
        let mut adapter = lock(&shared.adapter);
        for nsp in s.namespaces() {
            adapter.add_namespace(nsp);
        }
    });
    let hooks = Arc::new(Hooks(Arc::downgrade(&shared)));
    Ok((RedisCluster { shared }, hooks))
}

async fn run_timer<C: crate::Clock>(shared: Weak<Shared>, mut clock: C) {
    poll_fn(|cx| loop {
        let Some(shared) = shared.upgrade() else {
            return Poll::Ready(());
        };
        let Some(io) = shared.io() else {
            return Poll::Ready(());
        };
        *lock(&shared.timer) = Some(cx.waker().clone());
        let deadline = lock(&shared.adapter).poll_timeout();
        let Some(deadline) = deadline else {
            return Poll::Pending;
        };
        match clock.poll_until(cx, deadline) {
            Poll::Ready(()) => {
                let now = clock.now();
                lock(&shared.adapter).handle_timeout(now);
                shared.pump(&io);
            }
            Poll::Pending => return Poll::Pending,
        }
    })
    .await
}

struct Hooks(Weak<Shared>);

impl LinkHooks<Expect> for Hooks {
    fn connected(&self, link: &Link<Expect>) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        if link.pushes {
            let (mut channels, patterns) = lock(&shared.adapter).subscriptions();
            channels.push(shared.forwarding.channel.clone());
            if let Links::Cluster(topology) = &shared.links {
                // This primary's channels only, on this link.
                for c in &channels {
                    if topology.serves(link, c.as_bytes()) {
                        let _ = link.send(&["SSUBSCRIBE", c.as_str()], Expect::Nothing);
                    }
                }
                return;
            }
            shared.subscribe(&channels, &patterns);
        }
    }

    fn reply(&self, reply: Reply, expected: Option<Expect>) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        let Some(io) = shared.io() else {
            return;
        };
        if let (Reply::Error(e), Links::Cluster(topology)) = (&reply, &shared.links) {
            if wirestate_engine::redis::slots::redirect(e).is_some() {
                // The slot moved: read the map again (what was sent is lost, as it
                // would be with Redis away).
                topology.refresh();
            }
        }
        match expected {
            Some(Expect::ServerCount(request)) => {
                // `PUBSUB NUMSUB channel` answers `[channel, count]`.
                let count = match &reply {
                    Reply::Array(Some(items)) => items.get(1).and_then(Reply::as_int),
                    _ => None,
                };
                let count = usize::try_from(count.unwrap_or(0)).unwrap_or(0);
                lock(&shared.adapter).handle_server_count(request, count);
                shared.pump(&io);
            }
            Some(Expect::Forwarded(sent)) => {
                if reply.as_int().is_none_or(|n| n <= 0) {
                    shared.forwarding.unreachable(sent);
                }
            }
            Some(Expect::Nothing) => {
                if let Reply::Error(e) = reply {
                    tracing::warn!(error = %e, "redis refused a command");
                }
            }
            None => {
                let Reply::Array(Some(items)) = reply else {
                    return;
                };
                let (channel, payload) = match items.first().and_then(Reply::as_bytes) {
                    Some(b"message") | Some(b"smessage") => (items.get(1), items.get(2)),
                    Some(b"pmessage") => (items.get(2), items.get(3)),
                    Some(b"sunsubscribe") => {
                        // Redis drops sharded subscriptions whose slot moved away.
                        if let Links::Cluster(topology) = &shared.links {
                            let wanted = items
                                .get(1)
                                .and_then(Reply::as_bytes)
                                .and_then(|c| std::str::from_utf8(c).ok())
                                .is_some_and(|c| shared.wants(c));
                            if wanted {
                                topology.refresh();
                            }
                        }
                        return;
                    }
                    _ => return,
                };
                let (Some(channel), Some(payload)) = (
                    channel.and_then(Reply::as_bytes),
                    payload.and_then(Reply::as_bytes),
                ) else {
                    return;
                };
                if channel == shared.forwarding.channel.as_bytes() {
                    Forwarding::handle(&shared, &io, payload);
                    return;
                }
                let now = io.now();
                io.inner.host.with(|s| {
                    lock(&shared.adapter).handle_message(now, channel, payload, s);
                });
                shared.pump(&io);
            }
        }
    }

    fn disconnected(&self, unanswered: Vec<Expect>) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        if let Links::Cluster(topology) = &shared.links {
            // A primary may have left, or failed over.
            topology.refresh();
        }
        let Some(io) = shared.io() else {
            return;
        };
        {
            let mut adapter = lock(&shared.adapter);
            for e in unanswered {
                match e {
                    Expect::ServerCount(request) => adapter.handle_server_count(request, 0),
                    Expect::Forwarded(sent) => shared.forwarding.unreachable(sent),
                    Expect::Nothing => {}
                }
            }
        }
        shared.pump(&io);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The server is gone: so are its Redis connections' tasks.
        self.links.close();
    }
}

impl Shared {
    fn io(&self) -> Option<SocketIo> {
        self.io.upgrade().map(|inner| SocketIo { inner })
    }

    fn subscribe(&self, channels: &[String], patterns: &[String]) {
        if self.sharded {
            // One channel per command: in a Redis Cluster each may live on its own
            // shard.
            for c in channels {
                if let Some(link) = self.links.subscriber(c) {
                    let _ = link.send(&["SSUBSCRIBE", c.as_str()], Expect::Nothing);
                }
            }
            return;
        }
        let Some(link) = self.links.subscriber("") else {
            return;
        };
        if !channels.is_empty() {
            let mut cmd = vec!["SUBSCRIBE".to_owned()];
            cmd.extend(channels.iter().cloned());
            let _ = link.send(&cmd, Expect::Nothing);
        }
        if !patterns.is_empty() {
            let mut cmd = vec!["PSUBSCRIBE".to_owned()];
            cmd.extend(patterns.iter().cloned());
            let _ = link.send(&cmd, Expect::Nothing);
        }
    }

    /// Whether this server still wants messages of `channel`.
    fn wants(&self, channel: &str) -> bool {
        channel == self.forwarding.channel
            || lock(&self.adapter)
                .subscriptions()
                .0
                .iter()
                .any(|c| c == channel)
    }

    /// Publishes `payload` on `channel` as the adapter's mode does (`SPUBLISH` when
    /// sharded); false if Redis cannot take it now.
    pub(super) fn publish_raw(&self, channel: &str, payload: &[u8], expect: Expect) -> bool {
        let verb: &[u8] = if self.sharded {
            b"SPUBLISH"
        } else {
            b"PUBLISH"
        };
        let args: [&[u8]; 3] = [verb, channel.as_bytes(), payload];
        self.links
            .publisher(channel)
            .is_some_and(|link| link.send(&args, expect).is_ok())
    }

    /// Publishes an operation of this server for the others.
    pub(super) fn publish(self: &Arc<Self>, io: &SocketIo, message: &ClusterMessage) {
        io.inner.host.inspect(|s| {
            lock(&self.adapter).handle_cluster(message, s.namespaces());
        });
        self.pump(io);
    }

    /// A local socket's answer to an ack request that may be another server's.
    pub(super) fn local_ack(
        self: &Arc<Self>,
        io: &SocketIo,
        ack: sio::AckId,
        result: &Result<Payload, AckError>,
    ) {
        if lock(&self.adapter).handle_ack(ack, result) {
            self.pump(io);
        }
    }

    /// A room created or deleted here (sharded dynamic modes subscribe per room).
    pub(super) fn room_changed(
        self: &Arc<Self>,
        io: &SocketIo,
        nsp: &str,
        room: &str,
        created: bool,
        private: bool,
    ) {
        {
            let mut adapter = lock(&self.adapter);
            if created {
                adapter.room_created(nsp, room, private);
            } else {
                adapter.room_deleted(nsp, room, private);
            }
        }
        self.pump(io);
    }

    /// An ack request ended.
    pub(super) fn local_ack_done(&self, ack: sio::AckId) {
        lock(&self.adapter).handle_ack_done(ack);
    }

    pub(super) fn add_namespace(self: &Arc<Self>, io: &SocketIo, nsp: &str) {
        lock(&self.adapter).add_namespace(nsp);
        self.pump(io);
    }

    /// Carries out what the adapter decided: commands to Redis, events to the
    /// application; until it has nothing more to say.
    pub(super) fn pump(self: &Arc<Self>, io: &SocketIo) {
        loop {
            let (commands, events) = {
                let mut a = lock(&self.adapter);
                let commands: Vec<Command> = std::iter::from_fn(|| a.poll_command()).collect();
                let events: Vec<redis::Event> = std::iter::from_fn(|| a.poll_event()).collect();
                (commands, events)
            };
            if commands.is_empty() && events.is_empty() {
                break;
            }
            for c in commands {
                self.command(c);
            }
            for e in events {
                self.event(io, e);
            }
        }
        if let Some(w) = lock(&self.timer).take() {
            w.wake();
        }
    }

    fn command(&self, command: Command) {
        match command {
            Command::Publish { channel, payload } => {
                if !self.publish_raw(&channel, &payload, Expect::Nothing) {
                    tracing::debug!(%channel, "redis is down: cluster message dropped");
                }
            }
            Command::Subscribe { channels, patterns } => self.subscribe(&channels, &patterns),
            Command::Unsubscribe { channels } => {
                let verb = if self.sharded {
                    "SUNSUBSCRIBE"
                } else {
                    "UNSUBSCRIBE"
                };
                for c in channels {
                    if let Some(link) = self.links.subscriber(&c) {
                        let _ = link.send(&[verb, c.as_str()], Expect::Nothing);
                    }
                }
            }
            Command::CountServers { channel, request } => {
                let what: &[u8] = if self.sharded {
                    b"SHARDNUMSUB"
                } else {
                    b"NUMSUB"
                };
                let args: [&[u8]; 3] = [b"PUBSUB", what, channel.as_bytes()];
                let sent = self
                    .links
                    .publisher(&channel)
                    .is_some_and(|link| link.send(&args, Expect::ServerCount(request)).is_ok());
                if !sent {
                    // No Redis: this server is the whole cluster it can reach.
                    lock(&self.adapter).handle_server_count(request, 0);
                }
            }
        }
    }

    fn event(self: &Arc<Self>, io: &SocketIo, event: redis::Event) {
        match event {
            redis::Event::FetchRequest { reply, sids } => {
                let sockets = sids.iter().filter_map(|sid| io.details(sid)).collect();
                lock(&self.adapter).answer_fetch(&reply, sockets);
            }
            redis::Event::Fetched { request, result } => {
                if let Some(Waiter::Fetch(slot)) = lock(&self.waiters).remove(&request) {
                    Slot::set(&slot, result);
                }
            }
            redis::Event::ServerSideEmit { nsp, data, reply } => {
                let Some(name) = data.first().and_then(Value::as_str).map(str::to_owned) else {
                    return;
                };
                let handler = lock(&io.inner.app).server_events.get(&(nsp, name)).cloned();
                let Some(handler) = handler else {
                    return;
                };
                let ack = reply.map(|reply| ServerAck {
                    shared: Arc::downgrade(self),
                    reply,
                    sent: Arc::new(AtomicBool::new(false)),
                });
                let args = data.into_iter().skip(1).collect();
                let _ = catch_unwind(AssertUnwindSafe(|| handler(args, ack)));
            }
            redis::Event::ServerSideAcks {
                request,
                responses,
                complete,
            } => {
                if let Some(Waiter::ServerSideEmit(slot)) = lock(&self.waiters).remove(&request) {
                    Slot::set(&slot, (responses, complete));
                }
            }
            redis::Event::RemoteAck { request, answer } => {
                if let Some(Waiter::Acks(shared)) = lock(&self.waiters).get(&request) {
                    let mut s = lock(shared);
                    s.answers.push_back((None, Ok(answer)));
                    if let Some(w) = s.waker.take() {
                        w.wake();
                    }
                }
            }
            redis::Event::RemoteAcksDone { request } => {
                if let Some(Waiter::Acks(shared)) = lock(&self.waiters).remove(&request) {
                    let mut s = lock(&shared);
                    s.remote = s.remote.saturating_sub(1);
                    if let Some(w) = s.waker.take() {
                        w.wake();
                    }
                }
            }
        }
    }
}

/// The answer a server owes to another server's `serverSideEmit` with an ack: send it
/// once (later sends are ignored).
#[derive(Clone)]
pub struct ServerAck {
    shared: Weak<Shared>,
    reply: redis::ReplyTo,
    sent: Arc<AtomicBool>,
}

impl fmt::Debug for ServerAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerAck").finish_non_exhaustive()
    }
}

impl ServerAck {
    /// Answers with `value` (the reference carries one argument).
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), EmitError> {
        let value = serde_json::to_value(value)?;
        if self.sent.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let Some(shared) = self.shared.upgrade() else {
            return Ok(());
        };
        lock(&shared.adapter).answer_server_side_emit(&self.reply, value);
        if let Some(io) = shared.io() {
            shared.pump(&io);
        }
        Ok(())
    }
}

/// A socket found by [`Operator::fetch_sockets`], on this server or another: its id,
/// handshake, rooms and data as they were when fetched, and operations that reach it
/// wherever it is.
#[derive(Clone, Debug)]
pub struct RemoteSocket {
    /// The socket's id.
    pub id: String,
    /// Its handshake, in the reference's shape (`headers`, `time`, `address`,
    /// `xdomain`, `secure`, `issued`, `url`, `query`, `auth`).
    pub handshake: Value,
    /// Its rooms (its own id included).
    pub rooms: Vec<String>,
    /// The application's data for it.
    pub data: Value,
    op: Operator,
    local: Option<Socket>,
}

impl RemoteSocket {
    fn new(io: &SocketIo, nsp: Arc<str>, details: Value, local: Option<Socket>) -> Option<Self> {
        let id = details.get("id")?.as_str()?.to_owned();
        let rooms = details
            .get("rooms")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mut target = Broadcast::nsp(nsp).to(id.as_str());
        // A socket of this server is reached here, without the cluster.
        target.local = local.is_some();
        Some(Self {
            op: Operator::new(io.clone(), target),
            local,
            handshake: details.get("handshake").cloned().unwrap_or(Value::Null),
            data: details.get("data").cloned().unwrap_or(Value::Null),
            id,
            rooms,
        })
    }

    /// The socket itself, when it is on this server.
    pub fn local(&self) -> Option<&Socket> {
        self.local.as_ref()
    }

    /// Emits to the socket (wherever it is).
    pub fn emit<T: Serialize + ?Sized>(&self, name: &str, data: &T) -> Result<(), EmitError> {
        self.op.emit(name, data).map(drop)
    }

    /// The socket joins `rooms`.
    pub fn join<I: IntoIterator<Item = R>, R: Into<Room>>(&self, rooms: I) {
        self.op.sockets_join(rooms);
    }

    /// The socket leaves `rooms`.
    pub fn leave<I: IntoIterator<Item = R>, R: Into<Room>>(&self, rooms: I) {
        self.op.sockets_leave(rooms);
    }

    /// Disconnects the socket (`close`: its whole connection).
    pub fn disconnect(&self, close: bool) {
        self.op.disconnect_sockets(close);
    }
}

impl SocketIo {
    pub(super) fn redis(&self) -> Option<Arc<Shared>> {
        lock(&self.inner.app).redis.clone()
    }

    /// A local socket as the reference's `fetchSockets` describes it to other servers.
    pub(super) fn details(&self, sid: &Sid) -> Option<Value> {
        let (info, data, since) = {
            let app = lock(&self.inner.app);
            let (info, _, state) = &**app.sockets.get(sid)?;
            (info.clone(), state.data.get(), state.since)
        };
        let rooms: Vec<String> = self
            .inner
            .host
            .inspect(|s| s.rooms(sid).map(|r| r.map(|x| x.to_string()).collect()))
            .unwrap_or_default();
        let issued = unix_millis(since);
        Some(wirestate_engine::redis::socket_details(
            sid, &info, &rooms, data, issued,
        ))
    }

    pub(super) async fn fetch_remote(
        &self,
        target: &Broadcast,
    ) -> Result<Vec<RemoteSocket>, RequestError> {
        let Some(shared) = self.redis() else {
            return Ok(Vec::new());
        };
        // The protocol asks one namespace at a time: every namespace is each of this
        // server's, asked in turn.
        let namespaces = self.inner.host.inspect(|s| s.namespaces_of(target));
        let mut all = Vec::new();
        for nsp in namespaces {
            let target = Broadcast {
                nsp: Some(nsp.clone()),
                ..target.clone()
            };
            let slot = Slot::new();
            let now = self.now();
            {
                let mut adapter = lock(&shared.adapter);
                let id = adapter.fetch_sockets(now, &target);
                lock(&shared.waiters).insert(id, Waiter::Fetch(slot.clone()));
            }
            shared.pump(self);
            let found = Slot::take(&slot).await?;
            all.extend(
                found
                    .into_iter()
                    .filter_map(|d| RemoteSocket::new(self, nsp.clone(), d, None)),
            );
        }
        Ok(all)
    }

    /// Starts the remote half of a broadcast with acks: answers go to `acks`.
    pub(super) fn broadcast_ack_remote(
        &self,
        target: &Broadcast,
        packet: &sio::Packet,
        timeout: Option<Duration>,
        acks: &Arc<Mutex<AckShared>>,
    ) {
        let Some(shared) = self.redis() else {
            return;
        };
        if target.local {
            return;
        }
        let timeout = timeout.unwrap_or(lock(&shared.adapter).config().requests_timeout);
        let now = self.now();
        // One request per namespace (every namespace: each of this server's).
        let namespaces = self.inner.host.inspect(|s| s.namespaces_of(target));
        for nsp in namespaces {
            let target = Broadcast {
                nsp: Some(nsp),
                ..target.clone()
            };
            lock(acks).remote += 1;
            let mut adapter = lock(&shared.adapter);
            let id = adapter.broadcast_with_ack(now, &target, packet, timeout);
            lock(&shared.waiters).insert(id, Waiter::Acks(acks.clone()));
        }
        shared.pump(self);
    }
}

impl Namespace {
    fn cluster_name(&self) -> Arc<str> {
        self.name.clone().unwrap_or_else(|| Arc::from(""))
    }

    /// Handles `name` when another server of the cluster emits it with
    /// `serverSideEmit` (wirestate's [`server_side_emit`](Self::server_side_emit) or
    /// Node's): `args` are its arguments, `ack` is there when the sender waits for an
    /// answer. It may be set before the cluster is attached; without one nothing calls
    /// it.
    pub fn on_server_side_emit<F>(&self, name: &str, handler: F) -> &Self
    where
        F: Fn(Vec<Value>, Option<ServerAck>) + Send + Sync + 'static,
    {
        lock(&self.io.inner.app)
            .server_events
            .insert((self.cluster_name(), name.to_owned()), Arc::new(handler));
        self
    }

    /// `serverSideEmit`: emits `name` with `args` to the other servers of the cluster
    /// (not to clients). Without a cluster it goes nowhere.
    pub fn server_side_emit(&self, name: &str, args: Vec<Value>) {
        let Some(shared) = self.io.redis() else {
            return;
        };
        let mut data = vec![Value::String(name.to_owned())];
        data.extend(args);
        lock(&shared.adapter).server_side_emit(&self.cluster_name(), data);
        shared.pump(&self.io);
    }

    /// `serverSideEmitWithAck`: emits to the other servers and waits for each one's
    /// answer, up to the request timeout. `Ok` with every answer, or `Err` with
    /// those that came in time.
    pub async fn server_side_emit_with_ack(
        &self,
        name: &str,
        args: Vec<Value>,
    ) -> Result<Vec<Value>, Vec<Value>> {
        let Some(shared) = self.io.redis() else {
            return Ok(Vec::new());
        };
        let mut data = vec![Value::String(name.to_owned())];
        data.extend(args);
        let slot = Slot::new();
        {
            let mut adapter = lock(&shared.adapter);
            let id = adapter.server_side_emit_with_ack(self.io.now(), &self.cluster_name(), data);
            lock(&shared.waiters).insert(id, Waiter::ServerSideEmit(slot.clone()));
        }
        shared.pump(&self.io);
        let (responses, complete) = Slot::take(&slot).await;
        if complete {
            Ok(responses)
        } else {
            Err(responses)
        }
    }
}

impl Socket {
    /// This socket as [`Operator::fetch_sockets`] describes it.
    pub(super) fn remote(&self) -> Option<RemoteSocket> {
        let details = self.io.details(&self.sid)?;
        RemoteSocket::new(&self.io, self.info.nsp.clone(), details, Some(self.clone()))
    }
}
