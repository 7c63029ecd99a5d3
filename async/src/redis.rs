//! Connections to Redis, written once over [`Runtime`]: `redis://` and `rediss://`
//! URLs, authentication and database selection, reconnection with backoff, and a
//! queue of commands that a connection's task writes while it reads the replies.
//!
//! A [`Link`] is one logical connection: commands queued while it is down are
//! refused at once ([`Link::send`] returns false) rather than piling up, so a server
//! whose Redis is gone keeps serving its own clients and its cluster requests end
//! without waiting.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use wirestate_engine::redis::resp::{self, Parser, Reply};
use wirestate_engine::redis::slots;

use crate::bus::LocalBus;
use crate::{ClientStream, Clock, Runtime, Transport};

/// Where a Redis server is: parsed from `redis://[[user]:password@]host[:port][/db]`
/// or `rediss://...` (TLS, with the `tls` feature).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RedisUrl {
    /// `rediss://`.
    pub(crate) tls: bool,
    /// Host name or address.
    pub(crate) host: String,
    /// Port (default 6379).
    pub(crate) port: u16,
    /// ACL user name, if any.
    pub(crate) username: Option<String>,
    /// Password, if any.
    pub(crate) password: Option<String>,
    /// Database number (default 0).
    pub(crate) db: u32,
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password.
        f.debug_struct("RedisUrl")
            .field("tls", &self.tls)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        write!(f, "{scheme}://{}:{}/{}", self.host, self.port, self.db)
    }
}

impl RedisUrl {
    /// Parses a URL; the error says what is wrong.
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("redis://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("rediss://") {
            (true, r)
        } else {
            return Err(format!("not a redis:// or rediss:// URL: {url}"));
        };
        if tls && !cfg!(feature = "rustls") {
            return Err("rediss:// needs wirestate's `tls` feature".into());
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (
                    (!user.is_empty()).then(|| user.to_owned()),
                    Some(pass.to_owned()),
                ),
                None => (None, Some(u.to_owned())),
            },
        };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, p) = h.split_once(']').ok_or("unclosed [ in the host")?;
            (h.to_owned(), p.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (hostport.to_owned(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("no host in {url}"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| format!("bad port in {url}"))?,
            None => 6379,
        };
        let path = path.split(['?', '#']).next().unwrap_or("");
        let db = if path.is_empty() {
            0
        } else {
            path.parse()
                .map_err(|_| format!("bad database number in {url}"))?
        };
        Ok(Self {
            tls,
            host,
            port,
            username,
            password,
            db,
        })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The commands that prepare a new connection: `AUTH`, `SELECT`.
    fn setup(&self) -> Vec<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        if let Some(pass) = &self.password {
            let mut auth = vec![b"AUTH".to_vec()];
            if let Some(user) = &self.username {
                auth.push(user.as_bytes().to_vec());
            }
            auth.push(pass.as_bytes().to_vec());
            out.push(auth);
        }
        if self.db != 0 {
            out.push(vec![b"SELECT".to_vec(), self.db.to_string().into_bytes()]);
        }
        out
    }
}

/// What a connection's task tells its owner.
pub(crate) trait LinkHooks<E>: Send + Sync + 'static {
    /// Connected (and authenticated): queue what a fresh connection needs.
    fn connected(&self, link: &Link<E>);
    /// A reply, with what the command that caused it expected (`None` for pushes:
    /// pub/sub messages).
    fn reply(&self, reply: Reply, expected: Option<E>);
    /// The connection is gone; the commands that were waiting get these
    /// expectations back, unanswered.
    fn disconnected(&self, unanswered: Vec<E>);
}

struct LinkState<E> {
    out: Vec<u8>,
    /// What each command sent or queued expects, in order (`None`: setup commands).
    expects: VecDeque<Option<E>>,
    connected: bool,
    closed: bool,
    waker: Option<Waker>,
    /// A link on a [`LocalBus`]: the replies its commands got, not yet handed over.
    replies: VecDeque<(Reply, E)>,
}

/// One logical connection to Redis: a queue of commands, written and answered by
/// the connection's task. `E` is what a command expects of its reply.
pub(crate) struct Link<E> {
    state: Mutex<LinkState<E>>,
    /// Replies are in order except pushes (pub/sub): a subscriber link.
    pub(crate) pushes: bool,
    /// A member of an in-process bus instead of a connection to Redis.
    local: Option<(LocalBus, u64)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Most bytes of commands queued on a link not yet written: beyond it, commands are
/// refused (Redis too slow to keep up).
const MAX_QUEUED: usize = 64 << 20;

impl<E: Send + 'static> Link<E> {
    pub(crate) fn new(pushes: bool) -> Self {
        Self {
            state: Mutex::new(LinkState {
                out: Vec::new(),
                expects: VecDeque::new(),
                connected: false,
                closed: false,
                waker: None,
                replies: VecDeque::new(),
            }),
            pushes,
            local: None,
        }
    }

    /// A link that is a member of `bus`: connected from the start, its commands
    /// carried out as they are sent; [`run_local_link`] hands over their replies and
    /// its messages.
    pub(crate) fn local(bus: &LocalBus, pushes: bool) -> Self {
        let link = Self {
            local: Some((bus.clone(), bus.join())),
            ..Self::new(pushes)
        };
        lock(&link.state).connected = true;
        link
    }

    /// Queues a command; false (and nothing queued) while disconnected, or when the
    /// queue is full.
    pub(crate) fn send<A: AsRef<[u8]>>(&self, args: &[A], expect: E) -> Result<(), E> {
        if let Some((bus, id)) = &self.local {
            if self.is_closed() {
                return Err(expect);
            }
            let reply = bus.execute(*id, args);
            if !self.pushes {
                let mut s = lock(&self.state);
                s.replies.push_back((reply, expect));
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
            return Ok(());
        }
        let mut s = lock(&self.state);
        if !s.connected || s.closed || s.out.len() > MAX_QUEUED {
            return Err(expect);
        }
        resp::command(args, &mut s.out);
        if !self.pushes {
            s.expects.push_back(Some(expect));
        }
        if let Some(w) = s.waker.take() {
            w.wake();
        }
        Ok(())
    }

    /// Whether the link is connected now.
    pub(crate) fn is_connected(&self) -> bool {
        lock(&self.state).connected
    }

    /// Ends the link's task.
    pub(crate) fn close(&self) {
        let mut s = lock(&self.state);
        s.closed = true;
        s.connected = false;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
        drop(s);
        if let Some((bus, id)) = &self.local {
            bus.leave(*id);
        }
    }

    fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }
}

/// The wait between attempts to reach Redis: 100 ms, doubling up to 5 s (a new
/// `Backoff` after a success).
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(Duration::from_millis(100))
    }
}

impl Backoff {
    /// Waits, and makes the next wait longer.
    async fn wait<C: Clock>(&mut self, clock: &mut C) {
        crate::sleep(clock, self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
    }
}

/// Hands a [`Link::local`] link's replies and messages to `hooks`, on the task that
/// runs this, until the link is closed.
pub(crate) async fn run_local_link<E, H>(link: Arc<Link<E>>, hooks: Arc<H>)
where
    E: Send + 'static,
    H: LinkHooks<E>,
{
    let Some((bus, id)) = link.local.clone() else {
        return;
    };
    poll_fn(|cx| loop {
        let replies = {
            let mut s = lock(&link.state);
            if s.closed {
                return Poll::Ready(());
            }
            s.waker = Some(cx.waker().clone());
            std::mem::take(&mut s.replies)
        };
        let pushes = bus.take_inbox(id, cx.waker());
        if replies.is_empty() && pushes.is_empty() {
            return Poll::Pending;
        }
        for (reply, expect) in replies {
            hooks.reply(reply, Some(expect));
        }
        for push in pushes {
            hooks.reply(push, None);
        }
    })
    .await;
    let unanswered = std::mem::take(&mut lock(&link.state).replies);
    hooks.disconnected(unanswered.into_iter().map(|(_, e)| e).collect());
}

/// Runs `link` until it is closed: connects to `url`, serves the connection, and
/// reconnects with backoff (100 ms doubling to 5 s) whenever it is lost.
pub(crate) async fn run_link<R, E, H>(
    rt: R,
    url: RedisUrl,
    connector: crate::Connector,
    link: Arc<Link<E>>,
    hooks: Arc<H>,
    name: &'static str,
) where
    R: Runtime,
    E: Send + 'static,
    H: LinkHooks<E>,
{
    let mut clock = rt.clock();
    let mut backoff = Backoff::default();
    let mut failures = 0u32;
    while !link.is_closed() {
        match open(&rt, &url, &connector).await {
            Ok(stream) => {
                {
                    let mut s = lock(&link.state);
                    s.out.clear();
                    for cmd in url.setup() {
                        resp::command(&cmd, &mut s.out);
                        s.expects.push_back(None);
                    }
                    s.connected = true;
                }
                if failures > 0 {
                    tracing::info!(%url, link = name, "connected to redis again");
                } else {
                    tracing::debug!(%url, link = name, "connected to redis");
                }
                failures = 0;
                backoff = Backoff::default();
                hooks.connected(&link);
                let error = serve(stream, &link, &*hooks).await;
                let unanswered: Vec<E> = {
                    let mut s = lock(&link.state);
                    s.connected = false;
                    s.out.clear();
                    s.expects.drain(..).flatten().collect()
                };
                hooks.disconnected(unanswered);
                if link.is_closed() {
                    return;
                }
                tracing::warn!(%url, link = name, error = %error, "lost the redis connection; reconnecting");
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(%url, link = name, error = %e, "cannot reach redis; serving locally and retrying");
                } else {
                    tracing::debug!(%url, link = name, error = %e, "redis still unreachable");
                }
                failures = failures.saturating_add(1);
            }
        }
        backoff.wait(&mut clock).await;
    }
}

async fn open<R: Runtime>(
    rt: &R,
    url: &RedisUrl,
    connector: &crate::Connector,
) -> io::Result<ClientStream<R::Tcp>> {
    let tcp = rt.connect(url.authority()).await?;
    if !url.tls {
        return Ok(ClientStream::Plain(tcp));
    }
    #[cfg(feature = "rustls")]
    {
        let tls = match connector.tls_config() {
            Some(tls) => tls.clone(),
            None => crate::tls::TlsConnector::platform_default()?,
        };
        Ok(ClientStream::Tls(Box::new(
            tls.connect(&url.host, tcp).await?,
        )))
    }
    #[cfg(not(feature = "rustls"))]
    {
        let _ = connector;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "rediss:// needs wirestate's `tls` feature",
        ))
    }
}

/// Writes the link's commands and reads replies until the connection fails or the
/// link is closed.
async fn serve<T: Transport, E: Send + 'static, H: LinkHooks<E>>(
    mut stream: T,
    link: &Link<E>,
    hooks: &H,
) -> io::Error {
    let mut parser = Parser::new(resp::Limits::default());
    let mut buf = vec![0u8; 16 << 10];
    poll_fn(|cx: &mut Context<'_>| loop {
        let mut progress = false;
        {
            let mut s = lock(&link.state);
            if s.closed {
                return Poll::Ready(io::Error::other("closed"));
            }
            while !s.out.is_empty() {
                match stream.poll_write_vectored(cx, &[IoSlice::new(&s.out)]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(io::ErrorKind::WriteZero.into());
                    }
                    Poll::Ready(Ok(n)) => {
                        s.out.drain(..n);
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(e),
                    Poll::Pending => break,
                }
            }
            if s.out.is_empty() {
                if let Poll::Ready(Err(e)) = stream.poll_flush(cx) {
                    return Poll::Ready(e);
                }
            }
            s.waker = Some(cx.waker().clone());
        }
        match stream.poll_read(cx, &mut buf) {
            Poll::Ready(Ok(0)) => {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "redis closed the connection",
                ))
            }
            Poll::Ready(Ok(n)) => {
                parser.feed(&buf[..n]);
                progress = true;
            }
            Poll::Ready(Err(e)) => return Poll::Ready(e),
            Poll::Pending => {}
        }
        loop {
            let reply = match parser.next_reply() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => return Poll::Ready(io::Error::new(io::ErrorKind::InvalidData, e)),
            };
            let is_push = link.pushes
                || matches!(&reply, Reply::Array(Some(items))
                if items.first().and_then(Reply::as_bytes).is_some_and(|k| {
                    matches!(k, b"message" | b"pmessage" | b"smessage")
                }));
            let expected = if is_push {
                None
            } else {
                match lock(&link.state).expects.pop_front() {
                    Some(Some(e)) => Some(e),
                    Some(None) => {
                        // A setup command (AUTH, SELECT): its failure ends the
                        // connection, as nothing after it would work.
                        if let Reply::Error(e) = reply {
                            return Poll::Ready(io::Error::new(
                                io::ErrorKind::PermissionDenied,
                                format!("redis refused the connection setup: {e}"),
                            ));
                        }
                        continue;
                    }
                    None => None,
                }
            };
            if link.pushes {
                if let Reply::Error(e) = &reply {
                    // On a subscriber, an error answers the connection's own setup
                    // (AUTH, SELECT) or a refused subscription: nothing works after it.
                    // Except a Redis Cluster's redirection: the hooks read the map
                    // again, and subscribe where the channel went.
                    if slots::redirect(e).is_some() {
                        hooks.reply(reply, None);
                        continue;
                    }
                    return Poll::Ready(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!("redis: {e}"),
                    ));
                }
            }
            hooks.reply(reply, expected);
        }
        if !progress {
            return Poll::Pending;
        }
    })
    .await
}

/// A Redis Cluster's primaries: a publishing and a subscribing [`Link`] to each, and
/// which one serves each hash slot (from `CLUSTER SLOTS`, asked again whenever a
/// reply or a lost connection says the map is stale).
pub(crate) struct Topology<E> {
    seed: RedisUrl,
    state: Mutex<TopologyState<E>>,
}

struct TopologyState<E> {
    /// For each slot, the index of its primary in `nodes` (`None`: unknown yet).
    slots: Vec<Option<usize>>,
    nodes: Vec<Node<E>>,
    refresh: bool,
    closed: bool,
    waker: Option<Waker>,
}

/// The links to one primary.
pub(crate) struct Node<E> {
    addr: String,
    pub(crate) publisher: Arc<Link<E>>,
    pub(crate) subscriber: Arc<Link<E>>,
}

impl<E: Send + 'static> Topology<E> {
    /// A cluster reached first through `seed`.
    pub(crate) fn new(seed: RedisUrl) -> Self {
        Self {
            seed,
            state: Mutex::new(TopologyState {
                slots: vec![None; usize::from(slots::SLOTS)],
                nodes: Vec::new(),
                refresh: true,
                closed: false,
                waker: None,
            }),
        }
    }

    fn node_for<T>(&self, key: &[u8], f: impl FnOnce(&Node<E>) -> T) -> Option<T> {
        let s = lock(&self.state);
        let i = s.slots[usize::from(slots::key_slot(key))]?;
        s.nodes.get(i).map(f)
    }

    /// The publishing link to the primary that serves `key` (a sharded channel).
    pub(crate) fn publisher(&self, key: &[u8]) -> Option<Arc<Link<E>>> {
        self.node_for(key, |n| n.publisher.clone())
    }

    /// The subscribing link to the primary that serves `key`.
    pub(crate) fn subscriber(&self, key: &[u8]) -> Option<Arc<Link<E>>> {
        self.node_for(key, |n| n.subscriber.clone())
    }

    /// Whether `link` is the subscribing link of the primary that serves `key`.
    pub(crate) fn serves(&self, link: &Link<E>, key: &[u8]) -> bool {
        self.node_for(key, |n| std::ptr::eq(&*n.subscriber, link))
            .unwrap_or(false)
    }

    /// The map is known and every link is up.
    pub(crate) fn is_connected(&self) -> bool {
        let s = lock(&self.state);
        s.slots.iter().all(Option::is_some)
            && s.nodes
                .iter()
                .all(|n| n.publisher.is_connected() && n.subscriber.is_connected())
    }

    /// Asks for the map again (at most once a second).
    pub(crate) fn refresh(&self) {
        let mut s = lock(&self.state);
        s.refresh = true;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    /// Closes every link; the topology's task ends.
    pub(crate) fn close(&self) {
        let mut s = lock(&self.state);
        s.closed = true;
        for n in &s.nodes {
            n.publisher.close();
            n.subscriber.close();
        }
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    fn url_of(&self, host: &str, port: u16) -> RedisUrl {
        RedisUrl {
            host: host.to_owned(),
            port,
            db: 0,
            ..self.seed.clone()
        }
    }
}

/// Keeps `topology` current until it is closed: asks `CLUSTER SLOTS` (of the seed,
/// else of a known primary), opens links to new primaries (run with `hooks`, as
/// [`run_link`] runs them), closes those to primaries that left, and tells the hooks
/// of every subscribing link still up ([`LinkHooks::connected`] again) so that it
/// subscribes where its channels now live.
pub(crate) async fn run_topology<R, E, H>(
    rt: R,
    connector: crate::Connector,
    topology: Arc<Topology<E>>,
    hooks: Arc<H>,
) where
    R: Runtime,
    E: Send + 'static,
    H: LinkHooks<E>,
{
    let mut clock = rt.clock();
    let mut backoff = Backoff::default();
    let mut warned = false;
    loop {
        // Wait for a reason to ask.
        let go = poll_fn(|cx| {
            let mut s = lock(&topology.state);
            if s.closed {
                return Poll::Ready(false);
            }
            if std::mem::take(&mut s.refresh) {
                return Poll::Ready(true);
            }
            s.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        if !go {
            return;
        }
        let mut candidates = vec![topology.seed.clone()];
        candidates.extend(
            lock(&topology.state)
                .nodes
                .iter()
                .filter_map(|n| n.addr.rsplit_once(':'))
                .filter_map(|(h, p)| Some(topology.url_of(h, p.parse().ok()?))),
        );
        let mut map = Err("no node answered".to_owned());
        for url in &candidates {
            match query(&rt, url, &connector, &["CLUSTER", "SLOTS"]).await {
                Ok(reply) => {
                    map = slots::parse_slots(&reply, &url.host);
                    if map.is_ok() {
                        break;
                    }
                }
                Err(e) => map = Err(e.to_string()),
            }
        }
        let ranges = match map {
            Ok(ranges) => ranges,
            Err(e) => {
                if !warned {
                    tracing::warn!(seed = %topology.seed, error = %e, "cannot read the redis cluster's slots; serving locally and retrying");
                    warned = true;
                }
                topology.refresh();
                backoff.wait(&mut clock).await;
                continue;
            }
        };
        if warned {
            tracing::info!(seed = %topology.seed, "read the redis cluster's slots");
            warned = false;
        }
        backoff = Backoff::default();
        let (fresh, kept) = {
            let mut s = lock(&topology.state);
            let old = std::mem::take(&mut s.nodes);
            let mut slots = vec![None; usize::from(slots::SLOTS)];
            let mut nodes: Vec<Node<E>> = Vec::new();
            let mut fresh = Vec::new();
            let mut old: Vec<Option<Node<E>>> = old.into_iter().map(Some).collect();
            for r in &ranges {
                let addr = format!("{}:{}", r.host, r.port);
                let i = match nodes.iter().position(|n| n.addr == addr) {
                    Some(i) => i,
                    None => {
                        let reused = old
                            .iter_mut()
                            .find(|n| n.as_ref().is_some_and(|n| n.addr == addr))
                            .and_then(Option::take);
                        let node = reused.unwrap_or_else(|| {
                            let node = Node {
                                addr: addr.clone(),
                                publisher: Arc::new(Link::new(false)),
                                subscriber: Arc::new(Link::new(true)),
                            };
                            fresh.push((
                                topology.url_of(&r.host, r.port),
                                node.publisher.clone(),
                                node.subscriber.clone(),
                            ));
                            node
                        });
                        nodes.push(node);
                        nodes.len() - 1
                    }
                };
                for slot in r.start..=r.end {
                    slots[usize::from(slot)] = Some(i);
                }
            }
            for gone in old.into_iter().flatten() {
                gone.publisher.close();
                gone.subscriber.close();
            }
            s.slots = slots;
            s.nodes = nodes;
            let kept: Vec<Arc<Link<E>>> = s
                .nodes
                .iter()
                .map(|n| n.subscriber.clone())
                .filter(|l| l.is_connected())
                .collect();
            (fresh, kept)
        };
        for (url, publisher, subscriber) in fresh {
            for (link, name) in [(publisher, "publisher"), (subscriber, "subscriber")] {
                rt.spawn(run_link(
                    rt.clone(),
                    url.clone(),
                    connector.clone(),
                    link,
                    hooks.clone(),
                    name,
                ));
            }
        }
        for link in kept {
            hooks.connected(&link);
        }
        // At most one question a second, however many replies say the map moved.
        crate::sleep(&mut clock, Duration::from_secs(1)).await;
    }
}

/// One command on a connection of its own (after the URL's `AUTH`): its reply, within
/// 5 s.
async fn query<R: Runtime>(
    rt: &R,
    url: &RedisUrl,
    connector: &crate::Connector,
    args: &[&str],
) -> io::Result<Reply> {
    let mut clock = rt.clock();
    let deadline = clock.now() + Duration::from_secs(5);
    let mut stream = open(rt, url, connector).await?;
    let mut out = Vec::new();
    let setup = url.setup();
    for cmd in &setup {
        resp::command(cmd, &mut out);
    }
    resp::command(args, &mut out);
    let mut skip = setup.len();
    let mut parser = Parser::new(resp::Limits::default());
    let mut buf = vec![0u8; 16 << 10];
    poll_fn(|cx| loop {
        if clock.poll_until(cx, deadline).is_ready() {
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        while !out.is_empty() {
            match stream.poll_write_vectored(cx, &[IoSlice::new(&out)]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    out.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if let Poll::Ready(Err(e)) = stream.poll_flush(cx) {
            return Poll::Ready(Err(e));
        }
        loop {
            match parser.next_reply() {
                Ok(Some(Reply::Error(e))) if skip > 0 => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!("redis refused the connection setup: {e}"),
                    )))
                }
                Ok(Some(_)) if skip > 0 => skip -= 1,
                Ok(Some(reply)) => return Poll::Ready(Ok(reply)),
                Ok(None) => break,
                Err(e) => return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e))),
            }
        }
        match stream.poll_read(cx, &mut buf) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
            Poll::Ready(Ok(n)) => parser.feed(&buf[..n]),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = RedisUrl::parse("redis://127.0.0.1:6380/2").expect("valid");
        assert_eq!(
            (u.host.as_str(), u.port, u.db, u.tls),
            ("127.0.0.1", 6380, 2, false)
        );
        let u = RedisUrl::parse("redis://:secret@localhost").expect("valid");
        assert_eq!(
            (u.username, u.password.as_deref(), u.port),
            (None, Some("secret"), 6379)
        );
        let u = RedisUrl::parse("redis://me:pw@[::1]:7000").expect("valid");
        assert_eq!(
            (u.username.as_deref(), u.host.as_str(), u.port),
            (Some("me"), "::1", 7000)
        );
        assert_eq!(u.authority(), "[::1]:7000");
        assert!(!format!("{u:?}{u}").contains("pw"));
        for bad in ["http://x", "redis://", "redis://h:port", "redis://h/x"] {
            assert!(RedisUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
