//! `@socket.io/admin-ui` support ([`SocketIo::instrument`]): the `/admin` namespace
//! as the UI's 0.5 server side defines it, so the UI can be pointed at a wirestate
//! server as at a Node one.
//!
//! * **Authentication**: none, or basic ([`AdminUi::basic_auth`]): the UI sends
//!   `{username, password}`, checked against a bcrypt hash; a success gets a `session`
//!   id the UI reconnects with. Refusals are `connect_error` `invalid credentials`.
//!   bcrypt is slow by design and runs on the server's task: at most
//!   [`MAX_CHECKS_PER_SECOND`] checks a second are made, the rest are refused `too
//!   many attempts`.
//! * On connection the UI gets `config` (`supportedFeatures`), and in development
//!   mode (the default) `all_sockets`: every socket of every namespace, fetched over
//!   the cluster as `fetchSockets` does.
//! * Every 2 s, `server_stats`: server id, hostname, pid, uptime, client counts (all,
//!   and those still polling), the namespaces with their socket counts, and the
//!   aggregated events since the last one (`rawConnection`, `rawDisconnection` by
//!   reason, `packetsIn`/`Out`, `bytesIn`/`Out`).
//! * In development mode, as they happen: `socket_connected`, `socket_updated` (a
//!   transport upgrade), `socket_disconnected`, `room_joined`, `room_left`,
//!   `event_received` and `event_sent` (what [`Socket::on_any`] and
//!   [`Socket::on_any_outgoing`] see: broadcasts are not per-socket events, as in Node).
//! * The UI's commands, unless read-only: `emit`, `join`, `leave` and `_disconnect`,
//!   each for a namespace and optionally a room (a socket id names its own room).
//!   Commands for a namespace that does not exist do nothing (they do not create it).
//!
//! In a cluster, as in Node, what a server emits to the admin namespace reaches the
//! admin sockets of every server: one UI lists every server and its sockets.
//!
//! Left out: `socket_updated` for changes of a socket's data (Node sees them through a
//! proxy object); login sessions shared between servers (each server keeps its own,
//! as Node's default in-memory store does).

use std::collections::{BTreeMap, HashSet, VecDeque};

use wirestate_engine::eio::{Traffic, TransportKind};

use super::*;

/// The UI's namespace unless [`AdminUi::namespace`] says otherwise.
pub const ADMIN_NAMESPACE: &str = "/admin";
/// How many bcrypt checks a second the admin namespace makes at most.
pub const MAX_CHECKS_PER_SECOND: u32 = 4;
/// How many admin sessions (ids from successful logins) are remembered; the oldest
/// are forgotten first.
pub const MAX_ADMIN_SESSIONS: usize = 1024;
const STATS_INTERVAL: Duration = Duration::from_secs(2);
/// Distinct aggregated-event keys kept between two `server_stats` (a flood of new
/// disconnection reasons cannot grow it further).
const MAX_BUFFERED_KEYS: usize = 1024;

/// How a server shows itself to `@socket.io/admin-ui`: built with [`AdminUi::new`],
/// then passed to [`SocketIo::instrument`].
#[derive(Clone, Debug)]
pub struct AdminUi {
    namespace: String,
    auth: Option<BasicAuth>,
    readonly: bool,
    server_id: Option<String>,
    production: bool,
}

#[derive(Clone)]
struct BasicAuth {
    username: String,
    hash: String,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// An [`AdminUi`] setting that cannot work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminError(String);

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AdminError {}

impl Default for AdminUi {
    fn default() -> Self {
        Self::new()
    }
}

impl AdminUi {
    /// Namespace `/admin`, no authentication (anyone who reaches the port can use the
    /// UI: bind to a loopback address, or add [`basic_auth`](Self::basic_auth)),
    /// development mode, commands allowed.
    pub fn new() -> Self {
        Self {
            namespace: ADMIN_NAMESPACE.to_owned(),
            auth: None,
            readonly: false,
            server_id: None,
            production: false,
        }
    }

    /// Requires `username` and a password whose bcrypt hash is `bcrypt_hash` (`$2a$`,
    /// `$2b$` or `$2y$`, as `bcryptjs` and `htpasswd -B` make them).
    pub fn basic_auth(
        mut self,
        username: impl Into<String>,
        bcrypt_hash: impl Into<String>,
    ) -> Result<Self, AdminError> {
        let hash = bcrypt_hash.into();
        if hash.parse::<bcrypt::HashParts>().is_err() {
            return Err(AdminError(
                "the password must be a valid bcrypt hash".to_owned(),
            ));
        }
        self.auth = Some(BasicAuth {
            username: username.into(),
            hash,
        });
        Ok(self)
    }

    /// The UI's namespace (default `/admin`).
    pub fn namespace(mut self, name: impl Into<String>) -> Self {
        self.namespace = name.into();
        self
    }

    /// Read-only: the UI's commands are not offered, and ignored if sent.
    pub fn readonly(mut self, yes: bool) -> Self {
        self.readonly = yes;
        self
    }

    /// The id the UI shows for this server (default: the host name).
    pub fn server_id(mut self, id: impl Into<String>) -> Self {
        self.server_id = Some(id.into());
        self
    }

    /// Production mode: only `config` and `server_stats` (aggregated counts), none of
    /// the per-socket and per-event updates of development mode.
    pub fn production(mut self, yes: bool) -> Self {
        self.production = yes;
        self
    }

    fn features(&self) -> Vec<&'static str> {
        let mut features = if self.readonly {
            Vec::new()
        } else {
            vec![
                "EMIT",
                "JOIN",
                "LEAVE",
                "DISCONNECT",
                "MJOIN",
                "MLEAVE",
                "MDISCONNECT",
            ]
        };
        features.push("AGGREGATED_EVENTS");
        if !self.production {
            features.push("ALL_EVENTS");
        }
        features
    }
}

/// An aggregated event: its second (ms since the epoch), type and sub-type.
type EventKey = (u64, &'static str, Option<String>);

/// The UI's state on this server.
struct Admin {
    nsp: Arc<str>,
    config: AdminUi,
    hostname: String,
    started: Instant,
    /// Session ids of successful logins, oldest first.
    sessions: Mutex<(VecDeque<String>, HashSet<String>)>,
    /// bcrypt checks in the current second: (its start, how many).
    checks: Mutex<Option<(Instant, u32)>>,
    /// Aggregated events since the last `server_stats`: (second, type, sub-type).
    buffer: Mutex<BTreeMap<EventKey, u64>>,
    /// The traffic counters at the last `server_stats`.
    traffic: Mutex<Traffic>,
    /// Admin sockets connected here: with none, the per-socket updates of
    /// development mode are not even built.
    watchers: AtomicUsize,
}

fn now_ms() -> u64 {
    unix_millis(std::time::SystemTime::now())
}

/// Now, as the UI's `Date` arguments arrive from Node.
fn date() -> Value {
    Value::String(wirestate_engine::js_date_json(now_ms() as i64))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

impl Admin {
    /// Someone may be watching (development mode's updates are worth building): an
    /// admin socket here, or any server of the cluster (whose admin sockets this
    /// server's updates reach too).
    fn watched(&self, io: &SocketIo) -> bool {
        self.watchers.load(Ordering::Relaxed) > 0 || io.redis().is_some()
    }

    fn emit(&self, io: &SocketIo, name: &str, args: Vec<Value>) {
        let payload = Payload::from_parts(args, Vec::new());
        // As Node's `adminNamespace.emit`: to the admin sockets of every server of the
        // cluster, so one UI sees them all (their stats, their sockets).
        let op = Operator::new(io.clone(), Broadcast::nsp(self.nsp.clone()));
        let _ = op.emit_payload(name, payload);
    }

    fn count(&self, kind: &'static str, sub: Option<String>, n: u64) {
        if n == 0 {
            return;
        }
        let second = now_ms() / 1000 * 1000;
        let mut buffer = lock(&self.buffer);
        let key = (second, kind, sub);
        if buffer.len() < MAX_BUFFERED_KEYS || buffer.contains_key(&key) {
            *buffer.entry(key).or_insert(0) += n;
        }
    }

    /// The connect middleware's check: a known session id, or the credentials.
    fn check(&self, auth: &BasicAuth, payload: &Value) -> Result<(), ConnectError> {
        if self.known_session(payload) {
            return Ok(());
        }
        let field = |name| payload.get(name).and_then(Value::as_str);
        let invalid = || ConnectError::new("invalid credentials");
        if field("username") != Some(auth.username.as_str()) {
            return Err(invalid());
        }
        {
            let now = Instant::now();
            let mut checks = lock(&self.checks);
            match &mut *checks {
                Some((start, n)) if now.duration_since(*start) < Duration::from_secs(1) => {
                    if *n >= MAX_CHECKS_PER_SECOND {
                        return Err(ConnectError::new("too many attempts"));
                    }
                    *n += 1;
                }
                _ => *checks = Some((now, 1)),
            }
        }
        let password = field("password").unwrap_or_default();
        match bcrypt::verify(password, &auth.hash) {
            Ok(true) => Ok(()),
            _ => Err(invalid()),
        }
    }

    /// The UI's auth payload names a session of a successful login.
    fn known_session(&self, payload: &Value) -> bool {
        payload
            .get("sessionId")
            .and_then(Value::as_str)
            .is_some_and(|id| lock(&self.sessions).1.contains(id))
    }

    fn new_session(&self) -> Option<String> {
        let bytes = crate::os_seed::<8>().ok()?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut sessions = lock(&self.sessions);
        if sessions.0.len() >= MAX_ADMIN_SESSIONS {
            if let Some(old) = sessions.0.pop_front() {
                sessions.1.remove(&old);
            }
        }
        sessions.0.push_back(id.clone());
        sessions.1.insert(id.clone());
        Some(id)
    }

    /// A local socket as the UI lists it.
    fn serialize(&self, io: &SocketIo, socket: &Socket) -> Option<Value> {
        let details = io.details(socket.id())?;
        Some(self.complete(io, details, socket.nsp(), Some(socket)))
    }

    /// `fetchSockets` details, with what the UI adds: the client id and transport
    /// (known for local sockets), the namespace, and the address a proxy forwarded.
    fn complete(
        &self,
        io: &SocketIo,
        mut details: Value,
        nsp: &str,
        local: Option<&Socket>,
    ) -> Value {
        let session = local.map(|s| s.info.session.clone());
        let transport = session
            .as_ref()
            .and_then(|s| io.inner.host.inspect(|srv| srv.eio().transport_of(s)));
        if let Value::Object(m) = &mut details {
            if let Some(session) = session {
                let id: String = session.as_str().chars().take(12).collect();
                m.insert("clientId".into(), Value::String(id));
            }
            if let Some(kind) = transport {
                m.insert("transport".into(), kind.as_str().into());
            }
            m.insert("nsp".into(), nsp.into());
            if let Some(Value::Object(h)) = m.get_mut("handshake") {
                h.remove("auth");
                let forwarded = h
                    .get("headers")
                    .and_then(|hs| {
                        hs.get("cf-connecting-ip")
                            .or_else(|| hs.get("x-forwarded-for"))
                    })
                    .cloned();
                if let Some(address) = forwarded {
                    h.insert("address".into(), address);
                }
            }
        }
        details
    }

    async fn all_sockets(&self, io: &SocketIo) -> Vec<Value> {
        let namespaces: Vec<Arc<str>> = io
            .inner
            .host
            .inspect(|s| s.namespace_sizes().map(|(n, _)| n.clone()).collect());
        let mut all = Vec::new();
        for nsp in namespaces {
            let op = Operator::new(io.clone(), Broadcast::nsp(nsp.clone()));
            let Ok(sockets) = op.fetch_sockets().await else {
                continue;
            };
            for remote in sockets {
                let details = serde_json::json!({
                    "id": remote.id,
                    "handshake": remote.handshake,
                    "rooms": remote.rooms,
                    "data": remote.data,
                });
                all.push(self.complete(io, details, &nsp, remote.local()));
            }
        }
        all
    }

    fn server_stats(&self, io: &SocketIo) {
        let (clients, polling, namespaces, traffic) = io.inner.host.inspect(|s| {
            let namespaces: Vec<Value> = s
                .namespace_sizes()
                .map(|(name, n)| serde_json::json!({"name": &**name, "socketsCount": n}))
                .collect();
            (
                s.eio().session_count(),
                s.eio().polling_count(),
                namespaces,
                s.eio().traffic(),
            )
        });
        let last = std::mem::replace(&mut *lock(&self.traffic), traffic);
        self.count("packetsIn", None, traffic.messages_in - last.messages_in);
        self.count("bytesIn", None, traffic.bytes_in - last.bytes_in);
        self.count("packetsOut", None, traffic.messages_out - last.messages_out);
        self.count("bytesOut", None, traffic.bytes_out - last.bytes_out);
        let events: Vec<Value> = std::mem::take(&mut *lock(&self.buffer))
            .into_iter()
            .map(|((timestamp, kind, sub), count)| {
                let mut m = Map::new();
                m.insert("timestamp".into(), timestamp.into());
                m.insert("type".into(), kind.into());
                if let Some(sub) = sub {
                    m.insert("subType".into(), sub.into());
                }
                m.insert("count".into(), count.into());
                Value::Object(m)
            })
            .collect();
        let stats = serde_json::json!({
            "serverId": self.config.server_id.clone().unwrap_or_else(|| self.hostname.clone()),
            "hostname": self.hostname,
            "pid": std::process::id(),
            "uptime": self.started.elapsed().as_secs_f64(),
            "clientsCount": clients,
            "pollingClientsCount": polling,
            "aggregatedEvents": events,
            "namespaces": namespaces,
        });
        self.emit(io, "server_stats", vec![stats]);
    }

    fn observed(self: &Arc<Self>, io: &SocketIo, observed: Observed<'_>) {
        // Sockets get their `on_any` hooks whether or not anyone watches yet.
        let verbose = !self.config.production;
        let watched = verbose && self.watched(io);
        match observed {
            Observed::Connected(socket) => {
                if !verbose {
                    return;
                }
                if socket.nsp() != &*self.nsp {
                    let admin = self.clone();
                    socket.on_any(move |s, name, payload| {
                        admin.event(s, "event_received", name, payload);
                    });
                    let admin = self.clone();
                    socket.on_any_outgoing(move |s, name, payload| {
                        admin.event(s, "event_sent", name, payload);
                    });
                }
                if !watched {
                    return;
                }
                if let Some(details) = self.serialize(io, socket) {
                    self.emit(io, "socket_connected", vec![details, date()]);
                }
            }
            Observed::Disconnected(socket, reason) => {
                if watched {
                    let args = vec![
                        socket.nsp().into(),
                        socket.id().as_str().into(),
                        reason.as_str().into(),
                        date(),
                    ];
                    self.emit(io, "socket_disconnected", args);
                }
            }
            Observed::Server(activity) => match activity {
                Activity::SessionOpened { .. } => self.count("rawConnection", None, 1),
                Activity::SessionClosed { reason, .. } => {
                    self.count("rawDisconnection", Some(reason.as_str().to_owned()), 1);
                }
                Activity::SessionUpgraded { sockets, .. } if watched => {
                    for (nsp, sid) in sockets {
                        let update = serde_json::json!({
                            "id": sid.as_str(),
                            "nsp": &**nsp,
                            "transport": TransportKind::WebSocket.as_str(),
                        });
                        self.emit(io, "socket_updated", vec![update]);
                    }
                }
                Activity::Joined { sid, nsp, room } | Activity::Left { sid, nsp, room }
                    if watched =>
                {
                    let name = match activity {
                        Activity::Joined { .. } => "room_joined",
                        _ => "room_left",
                    };
                    let args = vec![
                        (&**nsp).into(),
                        (&**room).into(),
                        sid.as_str().into(),
                        date(),
                    ];
                    self.emit(io, name, args);
                }
                _ => {}
            },
        }
    }

    /// `event_received` / `event_sent`: `(nsp, id, [name, ...args], date)`.
    fn event(&self, socket: &Socket, kind: &str, name: &str, payload: &Payload) {
        if !self.watched(socket.io()) {
            return;
        }
        let values = payload.values();
        let mut args = Vec::with_capacity(values.len() + 1);
        args.push(Value::String(name.to_owned()));
        args.extend(values.iter().cloned());
        let all = vec![
            socket.nsp().into(),
            socket.id().as_str().into(),
            Value::Array(args),
            date(),
        ];
        self.emit(socket.io(), kind, all);
    }

    /// The UI's commands on an admin socket.
    fn commands(socket: &Socket) {
        // `(nsp, filter?)` → the sockets they select; `None` for a malformed command.
        fn target(io: &SocketIo, nsp: Option<&Value>, filter: Option<&Value>) -> Option<Operator> {
            let nsp: Arc<str> = Arc::from(nsp?.as_str()?);
            if !io
                .inner
                .host
                .inspect(|s| s.namespaces().any(|n| n == &*nsp))
            {
                return None;
            }
            let mut target = Broadcast::nsp(nsp);
            if let Some(room) = filter.and_then(Value::as_str).filter(|r| !r.is_empty()) {
                target = target.to(room);
            }
            Some(Operator::new(io.clone(), target))
        }
        socket.on("emit", |socket, msg| async move {
            let args = msg.payload().values();
            let (Some(op), Some(event)) = (
                target(socket.io(), args.first(), args.get(1)),
                args.get(2).and_then(Value::as_str),
            ) else {
                return;
            };
            let payload = Payload::from_parts(
                args.get(3..).unwrap_or_default().to_vec(),
                msg.payload().bins().to_vec(),
            );
            let _ = op.emit_payload(event, payload);
        });
        for (event, joining) in [("join", true), ("leave", false)] {
            socket.on(event, move |socket, msg| async move {
                let args = msg.payload().values();
                let (Some(op), Some(room)) = (
                    target(socket.io(), args.first(), args.get(2)),
                    args.get(1).and_then(Value::as_str),
                ) else {
                    return;
                };
                if joining {
                    op.sockets_join([room]);
                } else {
                    op.sockets_leave([room]);
                }
            });
        }
        socket.on("_disconnect", |socket, msg| async move {
            let args = msg.payload().values();
            let close = args.get(1).and_then(Value::as_bool).unwrap_or(false);
            if let Some(op) = target(socket.io(), args.first(), args.get(2)) {
                op.disconnect_sockets(close);
            }
        });
    }
}

impl SocketIo {
    /// Lets `@socket.io/admin-ui` connect to this server (its `instrument`): registers
    /// the admin namespace, its authentication and commands, the `server_stats` timer
    /// and, in development mode, the observer that reports sockets, rooms and events
    /// as they change. Call it once, before serving.
    pub fn instrument(&self, admin: AdminUi) {
        let state = Arc::new(Admin {
            nsp: Arc::from(admin.namespace.as_str()),
            hostname: hostname(),
            started: Instant::now(),
            sessions: Mutex::default(),
            checks: Mutex::default(),
            buffer: Mutex::default(),
            traffic: Mutex::new(self.inner.host.inspect(|s| s.eio().traffic())),
            watchers: AtomicUsize::new(0),
            config: admin,
        });
        let ns = self.of(&state.nsp);
        if let Some(auth) = state.config.auth.clone() {
            let checker = state.clone();
            ns.middleware(move |request| {
                let verdict = checker.check(&auth, request.auth());
                async move { verdict }
            });
        }
        let on_connect = state.clone();
        ns.on_connection(move |socket| {
            let admin = on_connect.clone();
            async move {
                let io = socket.io().clone();
                admin.watchers.fetch_add(1, Ordering::Relaxed);
                let leaving = admin.clone();
                socket.on_disconnect(move |_socket, _reason| {
                    leaving.watchers.fetch_sub(1, Ordering::Relaxed);
                    async {}
                });
                if admin.config.auth.is_some() && !admin.known_session(socket.auth()) {
                    if let Some(id) = admin.new_session() {
                        let _ = socket.emit("session", &id);
                    }
                }
                if !admin.config.readonly {
                    Admin::commands(&socket);
                }
                let config = serde_json::json!({"supportedFeatures": admin.config.features()});
                let _ = socket.emit("config", &config);
                if !admin.config.production {
                    let sockets = admin.all_sockets(&io).await;
                    let _ = socket.emit("all_sockets", &sockets);
                }
            }
        });
        let observer = state.clone();
        self.observe(move |io, observed| observer.observed(io, observed));
        self.repeat(STATS_INTERVAL, move |io| state.server_stats(io));
    }
}
