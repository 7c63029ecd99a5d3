//! Broadcasting: namespaces ([`Namespace`]), the broadcast operators
//! ([`Operator`]) and the acks of a broadcast ([`AckStream`]).

use super::*;

/// A namespace: its connect middleware, its connection handler, and broadcasts to it.
#[derive(Clone)]
pub struct Namespace {
    pub(super) io: SocketIo,
    pub(super) name: Option<Arc<str>>,
    pub(super) handlers: Arc<NamespaceHandlers>,
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Namespace {
    /// Adds a connect middleware (`io.use`): it sees the auth payload and handshake
    /// and accepts (`Ok`) or refuses with a [`ConnectError`]. Middlewares run in the
    /// order added; the first refusal wins.
    pub fn middleware<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(ConnectRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ConnectError>> + Send + 'static,
    {
        lock(&self.handlers.middlewares).push(Arc::new(move |r| Box::pin(f(r))));
        self
    }

    /// Sets the connection handler: register the socket's event handlers here.
    pub fn on_connection<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(Socket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        *lock(&self.handlers.on_connection) = Some(Arc::new(move |s| Box::pin(f(s))));
        self
    }

    pub(super) fn target(&self) -> Broadcast {
        match &self.name {
            Some(n) => Broadcast::nsp(n.clone()),
            // A dynamic namespace as a whole has no single name; address its children
            // with `io.of(name)`.
            None => Broadcast::nsp(Arc::<str>::from("")),
        }
    }

    /// Broadcasts to every socket of the namespace.
    pub fn sockets(&self) -> Operator {
        Operator::new(self.io.clone(), self.target())
    }

    /// Broadcasts to a room of the namespace.
    pub fn to(&self, room: impl Into<Room>) -> Operator {
        self.sockets().to(room)
    }

    /// Emits to every socket of the namespace; returns how many local sockets it
    /// reached.
    pub fn emit<T: Serialize + ?Sized>(&self, name: &str, data: &T) -> Result<usize, EmitError> {
        self.sockets().emit(name, data)
    }

    /// [`emit`](Self::emit) with these arguments (JSON and binary).
    pub fn emit_payload(&self, name: &str, payload: Payload) -> Result<usize, EmitError> {
        self.sockets().emit_payload(name, payload)
    }
}

/// The broadcast operators: which sockets, and how (`to`, `except`, `volatile`,
/// `local`, `compress`, `timeout`).
#[derive(Clone)]
pub struct Operator {
    pub(super) io: SocketIo,
    pub(super) target: Broadcast,
    pub(super) timeout: Option<Duration>,
}

impl fmt::Debug for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operator")
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Operator {
    pub(super) fn new(io: SocketIo, target: Broadcast) -> Self {
        Self {
            io,
            target,
            timeout: None,
        }
    }

    /// Adds a room (`to` / `in`).
    pub fn to(mut self, room: impl Into<Room>) -> Self {
        self.target.rooms.push(room.into());
        self
    }

    /// Excludes a room.
    pub fn except(mut self, room: impl Into<Room>) -> Self {
        self.target.except.push(room.into());
        self
    }

    /// Drops the packet for clients that cannot take it now.
    pub fn volatile(mut self) -> Self {
        self.target.volatile = true;
        self
    }

    /// This server only, not the cluster.
    pub fn local(mut self) -> Self {
        self.target.local = true;
        self
    }

    /// WebSocket compression for this packet.
    pub fn compress(mut self, yes: bool) -> Self {
        self.target.compress = Some(yes);
        self
    }

    /// How long [`emit_with_ack`](Self::emit_with_ack) waits.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Emits `name` with one argument; returns how many local sockets it reached.
    pub fn emit<T: Serialize + ?Sized>(&self, name: &str, data: &T) -> Result<usize, EmitError> {
        self.emit_payload(name, Payload::from_value(data)?)
    }

    /// Emits `name` with these arguments, encoded once for every recipient; returns
    /// how many local sockets it reached.
    pub fn emit_payload(&self, name: &str, payload: Payload) -> Result<usize, EmitError> {
        Ok(self.io.broadcast(&self.target, name, payload))
    }

    /// Emits `name` and collects every recipient's ack until all have answered or
    /// the [`timeout`](Self::timeout) passes (local ones left get
    /// [`AckError::Timeout`]). In a cluster the other servers' recipients answer too
    /// (each answer is its ack's first argument, with no socket id: the reference
    /// protocol carries none); they are waited for until the timeout, or the
    /// cluster's request timeout if none is set.
    pub fn emit_with_ack(&self, name: &str, payload: Payload) -> AckStream {
        self.io
            .broadcast_with_ack(&self.target, name, payload, self.timeout)
    }

    /// `fetchSockets`: the sockets selected on every server of the cluster (this
    /// one's first), as they are now. Fails if another server does not answer within
    /// the cluster's request timeout, as the reference does; without a cluster these
    /// are the local sockets.
    pub async fn fetch_sockets(&self) -> Result<Vec<RemoteSocket>, RequestError> {
        let local: Vec<RemoteSocket> = self
            .local_sockets()
            .iter()
            .filter_map(|s| s.remote())
            .collect();
        if self.target.local || self.io.redis().is_none() {
            return Ok(local);
        }
        let mut all = local;
        all.extend(self.io.fetch_remote(&self.target).await?);
        Ok(all)
    }

    /// The selected sockets of this server only.
    pub fn local_sockets(&self) -> Vec<Socket> {
        let sids = self
            .io
            .inner
            .host
            .inspect(|s| s.fetch_sockets(&self.target));
        sids.iter().filter_map(|sid| self.io.socket(sid)).collect()
    }

    /// The selected sockets join `rooms` (`socketsJoin`).
    pub fn sockets_join<I, R>(&self, rooms: I)
    where
        I: IntoIterator<Item = R>,
        R: Into<Room>,
    {
        let rooms: Vec<Room> = rooms.into_iter().map(Into::into).collect();
        self.io.inner.host.with(|s| s.join_by(&self.target, &rooms));
    }

    /// The selected sockets leave `rooms` (`socketsLeave`).
    pub fn sockets_leave<I, R>(&self, rooms: I)
    where
        I: IntoIterator<Item = R>,
        R: Into<Room>,
    {
        let rooms: Vec<Room> = rooms.into_iter().map(Into::into).collect();
        self.io
            .inner
            .host
            .with(|s| s.leave_by(&self.target, &rooms));
    }

    /// Disconnects the selected sockets (`disconnectSockets`).
    pub fn disconnect_sockets(&self, close: bool) {
        let now = self.io.now();
        self.io
            .inner
            .host
            .with(|s| s.disconnect_by(now, &self.target, close));
    }
}

/// One answer of an [`AckStream`]: the socket (`None` for a socket of another server
/// of the cluster) and its ack, or why there is none.
pub type AckAnswer = (Option<Sid>, Result<Payload, AckError>);

/// The acks of an [`Operator::emit_with_ack`]: one `(socket, answer)` per recipient
/// (`None` for a socket of another server of the cluster), ending once every
/// recipient has answered, timed out or left.
pub struct AckStream {
    pub(super) shared: Arc<Mutex<AckShared>>,
}

impl fmt::Debug for AckStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckStream").finish_non_exhaustive()
    }
}

impl AckStream {
    /// The next answer, or `None` once all are in.
    pub async fn next(&mut self) -> Option<AckAnswer> {
        poll_fn(|cx| self.poll_answer(cx)).await
    }

    /// Every answer.
    pub async fn collect(mut self) -> Vec<AckAnswer> {
        let mut out = Vec::new();
        while let Some(a) = self.next().await {
            out.push(a);
        }
        out
    }

    pub(super) fn poll_answer(&self, cx: &mut Context<'_>) -> Poll<Option<AckAnswer>> {
        let mut s = lock(&self.shared);
        if let Some(a) = s.answers.pop_front() {
            return Poll::Ready(Some(a));
        }
        if s.done && s.remote == 0 {
            return Poll::Ready(None);
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl futures_core::Stream for AckStream {
    type Item = AckAnswer;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_answer(cx)
    }
}
