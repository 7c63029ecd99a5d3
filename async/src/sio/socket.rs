//! One socket's handle ([`Socket`]) and the events it receives ([`Incoming`]).

use super::*;

/// The way back to a client that asked for an ack: one shared block, so that the
/// event's handler and the code that reports its failure each hold it for one
/// reference count.
#[derive(Clone)]
pub(super) struct AckSlot(Arc<AckTo>);

struct AckTo {
    io: SocketIo,
    sid: Sid,
    id: u64,
    /// Answered already: a later answer (say, the handler's error after its ack) is
    /// dropped, as a client takes one answer per ack id.
    sent: AtomicBool,
}

impl AckSlot {
    pub(super) fn new(io: SocketIo, sid: Sid, id: u64) -> Self {
        Self(Arc::new(AckTo {
            io,
            sid,
            id,
            sent: AtomicBool::new(false),
        }))
    }

    pub(super) fn send(&self, payload: Payload) -> Result<(), EmitError> {
        let to = &*self.0;
        if to.sent.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        to.io
            .inner
            .host
            .with(|s| s.ack(&to.sid, to.id, payload))
            .map_err(|_| EmitError::Disconnected)
    }

    /// Answers `{"status":"error","error":error}`.
    pub(super) fn fail(&self, error: Value) {
        let _ = self.send(Payload::new().arg(envelope("error", "error", error)));
    }
}

/// `{"status":status, key:value}`: FoalTS's response envelope.
fn envelope(status: &str, key: &str, value: Value) -> Value {
    let mut m = Map::new();
    m.insert("status".into(), Value::from(status));
    m.insert(key.into(), value);
    Value::Object(m)
}

/// An event from a client, as a handler gets it.
pub struct Incoming {
    pub(super) name: String,
    pub(super) payload: Payload,
    pub(super) ack: Option<AckSlot>,
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("name", &self.name)
            .field("payload", &self.payload)
            .field("wants_ack", &self.ack.is_some())
            .finish()
    }
}

impl Incoming {
    /// The event name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// All arguments (binary ones as placeholders, see [`Payload::get_bin`]).
    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// Takes the arguments.
    pub fn take_payload(&mut self) -> Payload {
        std::mem::take(&mut self.payload)
    }

    /// The first argument, deserialised.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        self.payload.get(0)
    }

    /// The client asked for an ack.
    pub fn wants_ack(&self) -> bool {
        self.ack.is_some()
    }

    /// Answers the client's ack with one argument (no-op if it asked for none or was
    /// answered already).
    pub fn ack<T: Serialize + ?Sized>(&self, data: &T) -> Result<(), EmitError> {
        self.ack_payload(Payload::from_value(data)?)
    }

    /// Answers the client's ack with these arguments.
    pub fn ack_payload(&self, payload: Payload) -> Result<(), EmitError> {
        match &self.ack {
            Some(slot) => slot.send(payload),
            None => Ok(()),
        }
    }

    /// Answers the client's ack with `{"status":"ok","data":data}` (FoalTS's
    /// `WebsocketResponse`).
    pub fn ack_ok<T: Serialize + ?Sized>(&self, data: &T) -> Result<(), EmitError> {
        let data = serde_json::to_value(data)?;
        self.ack(&envelope("ok", "data", data))
    }

    /// Answers the client's ack with `{"status":"error","error":{"code":..,
    /// "message":..}}` (FoalTS's `WebsocketErrorResponse`). Returning the
    /// [`AppError`] from the handler does the same.
    pub fn ack_error(&self, error: &AppError) -> Result<(), EmitError> {
        self.ack(&envelope("error", "error", error.to_value()))
    }
}

/// One socket: a client's connection to one namespace.
#[derive(Clone)]
pub struct Socket {
    pub(super) io: SocketIo,
    pub(super) sid: Sid,
    pub(super) info: Arc<ConnectInfo>,
    pub(super) recovered: bool,
    /// The data it had when it left (for disconnect handlers).
    pub(super) left_with: Option<Arc<Value>>,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.sid)
            .field("nsp", &self.info.nsp)
            .finish_non_exhaustive()
    }
}

impl Socket {
    /// The socket id.
    pub fn id(&self) -> &Sid {
        &self.sid
    }

    /// The namespace.
    pub fn nsp(&self) -> &str {
        &self.info.nsp
    }

    /// The CONNECT auth payload.
    pub fn auth(&self) -> &Value {
        &self.info.auth
    }

    /// The Engine.IO handshake (first request's headers and query).
    pub fn handshake(&self) -> &Handshake {
        &self.info.handshake
    }

    /// Its state was recovered after a reconnection (id, rooms, data, missed packets).
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    /// The server handle.
    pub fn io(&self) -> &SocketIo {
        &self.io
    }

    pub(super) fn with_state<R>(&self, f: impl FnOnce(&mut SocketState) -> R) -> Option<R> {
        let mut app = lock(&self.io.inner.app);
        app.sockets.get_mut(&self.sid).map(|b| f(&mut b.2))
    }

    /// Handles event `name` (replacing an earlier handler for it). The handler may be
    /// async. A returned error or a panic answers the client's ack, if it asked for
    /// one, with `{"status":"error","error":{..}}`: an [`AppError`]'s own code and
    /// message, and for anything else the generic `INTERNAL_SERVER_ERROR` (its own
    /// message with [`ServerOptions::debug_errors`]; see [`SocketIo::on_error`] to
    /// render errors yourself). Internal errors are logged.
    pub fn on<F, Fut>(&self, name: &str, handler: F)
    where
        F: Fn(Socket, Incoming) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        let mut app = lock(&self.io.inner.app);
        let name = app.names.get(name);
        // One that captures nothing is made once, and shared by every socket that
        // registers it (closures of one type behave alike when they hold nothing).
        let (made, unused) = if std::mem::size_of::<F>() == 0 {
            match app.stateless.get(&std::any::TypeId::of::<F>()) {
                Some(made) => (made.clone(), Some(handler)),
                None => {
                    let made: EventHandler = super::controller::boxed(handler);
                    app.stateless
                        .insert(std::any::TypeId::of::<F>(), made.clone());
                    (made, None)
                }
            }
        } else {
            (super::controller::boxed(handler), None)
        };
        let replaced = match app.sockets.get_mut(&self.sid) {
            Some(b) => b.2.handlers.insert(name, made),
            None => Some(made),
        };
        // Dropped unlocked: a handler's captures may take the lock as they go.
        drop(app);
        drop((replaced, unused));
    }

    /// Removes the handler for `name`.
    pub fn off(&self, name: &str) {
        self.with_state(|s| s.handlers.remove(name));
    }

    /// Sees every incoming event first (`onAny`).
    pub fn on_any(&self, f: impl Fn(&Socket, &str, &Payload) + Send + Sync + 'static) {
        self.with_state(|s| s.hooks_mut().any_incoming.push(Arc::new(f)));
    }

    /// Sees every event emitted to this socket with [`emit`](Self::emit)
    /// (`onAnyOutgoing`).
    pub fn on_any_outgoing(&self, f: impl Fn(&Socket, &str, &Payload) + Send + Sync + 'static) {
        self.with_state(|s| s.hooks_mut().any_outgoing.push(Arc::new(f)));
    }

    /// A per-event middleware (`socket.use`): `Err(message)` drops the event and
    /// answers its ack, if any, with the error object.
    pub fn use_event(
        &self,
        f: impl Fn(&Socket, &str, &Payload) -> Result<(), String> + Send + Sync + 'static,
    ) {
        self.with_state(|s| s.hooks_mut().middlewares.push(Arc::new(f)));
    }

    /// Called once the socket has left.
    pub fn on_disconnect<F, Fut>(&self, f: F)
    where
        F: Fn(Socket, DisconnectReason) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.with_state(|s| {
            s.hooks_mut()
                .on_disconnect
                .push(Arc::new(move |sock, reason| Box::pin(f(sock, reason))))
        });
    }

    /// The socket's data (set by the connect middleware or [`set_data`](Self::set_data);
    /// recovered with the socket).
    pub fn data(&self) -> Value {
        self.with_state(|s| s.data.get())
            .or_else(|| self.left_with.as_deref().cloned())
            .unwrap_or(Value::Null)
    }

    /// Replaces the socket's data.
    pub fn set_data(&self, data: Value) {
        self.with_state(|s| s.data = super::Data::new(data));
    }

    /// Emits `name` with one argument, `data`. Like every emit, returns how many
    /// sockets it reached: here 1.
    pub fn emit<T: Serialize + ?Sized>(&self, name: &str, data: &T) -> Result<usize, EmitError> {
        self.emit_payload(name, Payload::from_value(data)?)
    }

    /// Emits `name` with these arguments (JSON and binary); 1, the socket reached.
    pub fn emit_payload(&self, name: &str, payload: Payload) -> Result<usize, EmitError> {
        let outgoing = self
            .with_state(|s| s.hooks.as_ref().map(|h| h.any_outgoing.clone()))
            .flatten()
            .unwrap_or_default();
        for h in &outgoing {
            let _ = catch_unwind(AssertUnwindSafe(|| h(self, name, &payload)));
        }
        let now = self.io.now();
        self.io
            .inner
            .host
            .with(|s| s.emit(now, &self.sid, name, payload))
            .map(|()| 1)
            .map_err(|_| EmitError::Disconnected)
    }

    /// Emits `name` and waits for the client's ack (`emitWithAck`), at most `timeout`.
    pub async fn emit_with_ack(
        &self,
        name: &str,
        payload: Payload,
        timeout: Option<Duration>,
    ) -> Result<Payload, AckError> {
        let mut target =
            Broadcast::nsp(self.info.nsp.clone()).to(Arc::<str>::from(self.sid.as_str()));
        target.local = true;
        let mut stream = self.io.broadcast_with_ack(&target, name, payload, timeout);
        match stream.next().await {
            Some((_, result)) => result,
            None => Err(AckError::Disconnected),
        }
    }

    /// Joins rooms.
    pub fn join<I, R>(&self, rooms: I)
    where
        I: IntoIterator<Item = R>,
        R: Into<Room>,
    {
        let rooms: Vec<Room> = rooms.into_iter().map(Into::into).collect();
        self.io.inner.host.with(|s| {
            let _ = s.join(&self.sid, &rooms);
        });
    }

    /// Leaves a room.
    pub fn leave(&self, room: &str) {
        self.io.inner.host.with(|s| {
            let _ = s.leave(&self.sid, room);
        });
    }

    /// The socket's rooms (its own id room included).
    pub fn rooms(&self) -> Vec<Room> {
        self.io
            .inner
            .host
            .inspect(|s| s.rooms(&self.sid).map(|r| r.collect()))
            .unwrap_or_default()
    }

    /// Broadcasts to room `room` of this namespace, except to this socket.
    pub fn to(&self, room: impl Into<Room>) -> Operator {
        self.broadcast().to(room)
    }

    /// Broadcasts to every other socket of this namespace.
    pub fn broadcast(&self) -> Operator {
        Operator::new(
            self.io.clone(),
            Broadcast::nsp(self.info.nsp.clone()).except(Arc::<str>::from(self.sid.as_str())),
        )
    }

    /// Leaves the namespace (the client gets DISCONNECT); with `close`, the client's
    /// whole connection is closed.
    pub fn disconnect(&self, close: bool) {
        let now = self.io.now();
        self.io.inner.host.with(|s| {
            let _ = s.disconnect(now, &self.sid, close);
        });
    }

    /// Closes the client's connection without a DISCONNECT packet
    /// (`socket.conn.close()`): the client reconnects by itself, and recovers its
    /// state if recovery is on.
    pub fn close_connection(&self) {
        let now = self.io.now();
        self.io.inner.host.with(|s| {
            let _ = s.close_connection(now, &self.sid);
        });
    }

    /// The socket is still connected.
    pub fn connected(&self) -> bool {
        lock(&self.io.inner.app).sockets.contains_key(&self.sid)
    }
}
