//! The post-connect auth challenge and room policy (Ignis's Socket.IO helpers).
//!
//! A socket of a namespace with an [`AuthChallenge`] connects *unauthorized*. It
//! must send `authenticate` within the timeout (10 s by default) or be
//! disconnected; meanwhile every other event is answered with
//! `{"status":"error","error":{"code":"UNAUTHENTICATED",..}}` and runs no handler.
//! `authenticate` moves it to *authenticating* while the application's check runs,
//! then to *authenticated* (the server emits `authenticated`, joins its user room
//! and the default rooms) or back to *unauthorized* (the server emits
//! `unauthenticated` `{"message":..}`; the client may try again within the
//! timeout). Authenticated sockets may `join` and `leave` rooms with
//! `{"rooms":[..]}`: each room is checked by the room policy, and joins are denied
//! unless it allows them.

use super::*;

/// Where a socket is in the auth challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthState {
    /// Connected, not authenticated yet.
    Unauthorized,
    /// Its `authenticate` is being checked.
    Authenticating,
    /// Authenticated (also every socket of a namespace with no challenge).
    Authenticated,
}

impl AuthState {
    /// Ignis's name for it: `unauthorized`, `authenticating`, `authenticated`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Authenticating => "authenticating",
            Self::Authenticated => "authenticated",
        }
    }
}

/// A successful authentication: the user the socket now belongs to (see
/// [`Socket::set_user`]) and the data the `authenticated` event carries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Authenticated {
    user: Option<String>,
    data: Value,
}

impl Authenticated {
    /// Authenticated; the `authenticated` event carries `data`.
    pub fn new(data: Value) -> Self {
        Self { user: None, data }
    }

    /// The socket belongs to user `id` (it joins `user:<id>`).
    pub fn user(mut self, id: impl Into<String>) -> Self {
        self.user = Some(id.into());
        self
    }
}

type Authenticate = Arc<
    dyn Fn(Socket, Value) -> Pin<Box<dyn Future<Output = Result<Authenticated, AppError>> + Send>>
        + Send
        + Sync,
>;
type RoomPolicy = Arc<dyn Fn(&Socket, &str) -> bool + Send + Sync>;

/// Ignis's post-connect authentication for a namespace ([`Namespace::auth_challenge`]).
///
/// A socket of the namespace connects [unauthorized](AuthState::Unauthorized). It
/// must send `authenticate` within the [timeout](Self::timeout) (10 s) or get
/// `unauthenticated` `{"message":..}` and be disconnected; until then every other
/// event is answered `{"status":"error","error":{"code":"UNAUTHENTICATED",..}}` and
/// runs no handler. The check moves it to
/// [authenticating](AuthState::Authenticating); success makes it
/// [authenticated](AuthState::Authenticated) (the server emits `authenticated` with
/// the check's data, sets its user and joins the [default
/// rooms](Self::default_rooms)); failure sends it back to unauthorized with
/// `unauthenticated`, and it may try again within the timeout. Authenticated sockets
/// `join` and `leave` rooms with `{"rooms":[..]}`: the [room
/// policy](Self::room_policy) decides each room, and without one every room is
/// denied.
#[derive(Clone)]
pub struct AuthChallenge {
    authenticate: Authenticate,
    timeout: Duration,
    policy: Option<RoomPolicy>,
    default_rooms: Vec<Room>,
    ping_interval: Option<Duration>,
    max_rooms: usize,
}

impl fmt::Debug for AuthChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthChallenge")
            .field("timeout", &self.timeout)
            .field("room_policy", &self.policy.is_some())
            .field("default_rooms", &self.default_rooms)
            .field("ping_interval", &self.ping_interval)
            .field("max_rooms", &self.max_rooms)
            .finish()
    }
}

/// The active challenge of a namespace.
pub(super) struct Challenge {
    settings: AuthChallenge,
}

impl AuthChallenge {
    /// A challenge whose `authenticate` events are checked by `f` (it gets the
    /// socket and the event's first argument): `Ok` authenticates, an [`AppError`]
    /// refuses with its message.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn(Socket, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Authenticated, AppError>> + Send + 'static,
    {
        Self {
            authenticate: Arc::new(move |s, v| Box::pin(f(s, v))),
            timeout: Duration::from_secs(10),
            policy: None,
            default_rooms: Vec::new(),
            ping_interval: None,
            max_rooms: 32,
        }
    }

    /// How long a socket may stay unauthenticated (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The room policy (Ignis's `validateRoomFn`): `policy(socket, room)` allows a
    /// `join` or `leave` of `room`. Without one every room is denied.
    pub fn room_policy(
        mut self,
        policy: impl Fn(&Socket, &str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.policy = Some(Arc::new(policy));
        self
    }

    /// Rooms every socket joins once authenticated.
    pub fn default_rooms<I, R>(mut self, rooms: I) -> Self
    where
        I: IntoIterator<Item = R>,
        R: Into<Room>,
    {
        self.default_rooms = rooms.into_iter().map(Into::into).collect();
        self
    }

    /// Emits an application-level `ping` `{"time":<ms since the epoch>}` to every
    /// authenticated socket of the namespace every `interval` (Ignis's
    /// `pingInterval`; default off), until the server shuts down.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = Some(interval);
        self
    }

    /// Most rooms one `join` or `leave` may name (default 32); more is a
    /// validation error.
    pub fn max_rooms_per_request(mut self, rooms: usize) -> Self {
        self.max_rooms = rooms;
        self
    }
}

impl Socket {
    /// Where the socket is in its namespace's auth challenge
    /// ([`AuthState::Authenticated`] where there is none).
    pub fn auth_state(&self) -> AuthState {
        self.with_state(|s| s.auth)
            .unwrap_or(AuthState::Unauthorized)
    }

    fn set_auth_state(&self, state: AuthState) {
        self.with_state(|s| s.auth = state);
    }
}

impl Namespace {
    /// Requires the namespace's sockets to authenticate after connecting, and
    /// handles `authenticate`, `join` and `leave` (see [`AuthChallenge`]). Its
    /// guard runs before the namespace's other hooks.
    pub fn auth_challenge(&self, challenge: AuthChallenge) -> &Self {
        let interval = challenge.ping_interval;
        let shared = Arc::new(Challenge {
            settings: challenge,
        });
        *lock(&self.handlers.challenge) = Some(shared.clone());
        lock(&self.handlers.hooks).insert(0, controller::boxed(guard));
        self.handlers.has_hooks.store(true, Ordering::Relaxed);
        let c = shared.clone();
        let authenticate = Handler::new(move |socket, incoming| {
            let c = c.clone();
            async move { c.authenticate(socket, incoming).await }
        });
        let max = shared.settings.max_rooms;
        let c = shared.clone();
        let join = Handler::new(move |socket, incoming| {
            let c = c.clone();
            async move { c.rooms(&socket, &incoming, true) }
        })
        .validate(RoomsPayload(max));
        let c = shared;
        let leave = Handler::new(move |socket, incoming| {
            let c = c.clone();
            async move { c.rooms(&socket, &incoming, false) }
        })
        .validate(RoomsPayload(max));
        self.controller(
            Controller::new()
                .handle("authenticate", authenticate)
                .handle("join", join)
                .handle("leave", leave),
        );
        if let (Some(interval), Some(nsp)) = (interval, self.name.clone()) {
            self.io
                .repeat(interval, move |io| io.ping_authenticated(&nsp));
        }
        self
    }

    /// The namespace's sockets on this server and where each is in the auth
    /// challenge (Ignis's client list).
    pub fn clients(&self) -> Vec<(Socket, AuthState)> {
        let sockets = self.sockets().local().local_sockets();
        sockets
            .into_iter()
            .map(|s| {
                let state = s.auth_state();
                (s, state)
            })
            .collect()
    }
}

/// Answers every event but `authenticate` of a socket that is not authenticated.
async fn guard(socket: Socket, event: EventInfo) -> Result<(), AppError> {
    if event.name() == "authenticate" || socket.auth_state() == AuthState::Authenticated {
        return Ok(());
    }
    Err(AppError::new(
        "UNAUTHENTICATED",
        "Authenticate first: send `authenticate`.",
    ))
}

impl Challenge {
    /// A socket connected: it has `timeout` to authenticate.
    pub(super) fn start(&self, socket: &Socket) {
        let timer = socket
            .io
            .inner
            .host
            .sleep_until(socket.io.now() + self.settings.timeout);
        let (host, socket) = (socket.io.inner.host.clone(), socket.clone());
        host.spawn(Box::pin(async move {
            timer.await;
            if socket.connected() && socket.auth_state() != AuthState::Authenticated {
                let mut m = Map::new();
                m.insert("message".into(), "Authentication timed out.".into());
                let _ = socket.emit("unauthenticated", &Value::Object(m));
                socket.disconnect(false);
            }
        }));
    }

    async fn authenticate(&self, socket: Socket, incoming: Incoming) -> Result<(), AppError> {
        match socket.auth_state() {
            AuthState::Authenticated => {
                return Err(AppError::new(
                    "ALREADY_AUTHENTICATED",
                    "This connection is authenticated already.",
                ))
            }
            AuthState::Authenticating => {
                return Err(AppError::new(
                    "AUTHENTICATING",
                    "An authentication of this connection is under way.",
                ))
            }
            AuthState::Unauthorized => {}
        }
        socket.set_auth_state(AuthState::Authenticating);
        let payload = incoming.payload.get::<Value>(0).unwrap_or(Value::Null);
        let check = CatchPanic((self.settings.authenticate)(socket.clone(), payload));
        let verdict = match check.await {
            Ok(v) => v,
            Err(panic) => {
                tracing::error!(sid = %socket.id(), panic, "authenticate panicked");
                Err(AppError::new(
                    INTERNAL_SERVER_ERROR,
                    INTERNAL_SERVER_ERROR_MESSAGE,
                ))
            }
        };
        match verdict {
            Ok(auth) => {
                socket.set_auth_state(AuthState::Authenticated);
                if let Some(user) = &auth.user {
                    socket.set_user(user);
                }
                socket.join(self.settings.default_rooms.iter().cloned());
                let _ = socket.emit("authenticated", &auth.data);
                let _ = incoming.ack_ok(&auth.data);
                Ok(())
            }
            Err(error) => {
                socket.set_auth_state(AuthState::Unauthorized);
                let mut m = Map::new();
                m.insert("message".into(), error.message().into());
                let _ = socket.emit("unauthenticated", &Value::Object(m));
                Err(error)
            }
        }
    }

    /// `join` (or `leave`) `{"rooms":[..]}`: the rooms the policy allows.
    fn rooms(&self, socket: &Socket, incoming: &Incoming, join: bool) -> Result<(), EmitError> {
        let names: Vec<String> = incoming
            .payload
            .get::<Value>(0)
            .ok()
            .and_then(|v| v.get("rooms").cloned())
            .and_then(|r| serde_json::from_value(r).ok())
            .unwrap_or_default();
        let (mut done, mut denied) = (Vec::new(), Vec::new());
        for name in names {
            if done.contains(&name) || denied.contains(&name) {
                continue;
            }
            let allowed = self.settings.policy.as_ref().is_some_and(|p| {
                catch_unwind(AssertUnwindSafe(|| p(socket, &name))).unwrap_or(false)
            });
            if allowed {
                done.push(name);
            } else {
                denied.push(name);
            }
        }
        if join {
            socket.join(done.iter().map(|r| Room::from(r.as_str())));
        } else {
            for room in &done {
                socket.leave(room);
            }
        }
        let mut m = Map::new();
        m.insert(if join { "joined" } else { "left" }.into(), done.into());
        m.insert("denied".into(), denied.into());
        incoming.ack_ok(&Value::Object(m))
    }
}

/// `{"rooms":[<string>, ..]}` with at most `.0` rooms.
struct RoomsPayload(usize);

impl Validate for RoomsPayload {
    fn validate(&self, value: &Value) -> Result<(), Vec<Value>> {
        let fail = |path: &str, schema: &str, keyword: &str, params: Value, message: String| {
            Err(vec![ajv_error(path, schema, keyword, params, message)])
        };
        let Some(object) = value.as_object() else {
            return fail(
                "",
                "#/type",
                "type",
                serde_json::json!({"type": "object"}),
                "must be object".into(),
            );
        };
        let Some(rooms) = object.get("rooms") else {
            return fail(
                "",
                "#/required",
                "required",
                serde_json::json!({"missingProperty": "rooms"}),
                "must have required property 'rooms'".into(),
            );
        };
        let Some(rooms) = rooms.as_array() else {
            return fail(
                "/rooms",
                "#/properties/rooms/type",
                "type",
                serde_json::json!({"type": "array"}),
                "must be array".into(),
            );
        };
        if rooms.len() > self.0 {
            return fail(
                "/rooms",
                "#/properties/rooms/maxItems",
                "maxItems",
                serde_json::json!({"limit": self.0}),
                format!("must NOT have more than {} items", self.0),
            );
        }
        if let Some(i) = rooms.iter().position(|r| !r.is_string()) {
            return fail(
                &format!("/rooms/{i}"),
                "#/properties/rooms/items/type",
                "type",
                serde_json::json!({"type": "string"}),
                "must be string".into(),
            );
        }
        Ok(())
    }
}

impl SocketIo {
    /// Emits `ping` to the authenticated sockets of `nsp`.
    fn ping_authenticated(&self, nsp: &Arc<str>) {
        let time = unix_millis(std::time::SystemTime::now());
        let mut m = Map::new();
        m.insert("time".into(), time.into());
        let ping = Value::Object(m);
        // Not `io.of(..)`: that registers the namespace again on every tick.
        let sockets = Operator::new(self.clone(), Broadcast::nsp(nsp.clone()).local());
        for socket in sockets.local_sockets() {
            if socket.auth_state() == AuthState::Authenticated {
                let _ = socket.emit("ping", &ping);
            }
        }
    }
}
