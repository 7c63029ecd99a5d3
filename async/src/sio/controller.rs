//! Controllers (FoalTS's convention): event handlers grouped per namespace, with
//! prefixes for sub-controllers, async hooks that run before a handler and can stop
//! it, validated payloads and queued (ack-then-result) handlers.
//!
//! Every event of a socket goes through one chain: the socket's
//! [`use_event`](Socket::use_event) middlewares, the namespace's hooks
//! ([`Namespace::hook`]), the hooks of the controllers that hold the handler (outer
//! first), the handler's own hooks, its payload validation, then the handler. The
//! first hook that fails stops the chain and its error answers the ack, rendered as
//! a handler error is (see [`HandlerError`]).

use super::*;

/// What a hook sees of an event: its name and arguments.
#[derive(Clone)]
pub struct EventInfo {
    pub(super) name: Arc<str>,
    pub(super) payload: Arc<Payload>,
}

impl fmt::Debug for EventInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventInfo")
            .field("name", &self.name)
            .field("payload", &self.payload)
            .finish()
    }
}

impl EventInfo {
    /// The event name (with its controllers' prefixes).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The arguments.
    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// The first argument, deserialised.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        self.payload.get(0)
    }
}

pub(super) type Hook = Arc<dyn Fn(Socket, EventInfo) -> BoxResultFuture + Send + Sync>;
type Check = Arc<dyn Fn(&Value) -> Result<(), Vec<Value>> + Send + Sync>;
pub(super) type JobFuture = Pin<Box<dyn Future<Output = Result<Value, HandlerError>> + Send>>;
pub(super) type JobHandler = Arc<dyn Fn(Socket, Incoming) -> JobFuture + Send + Sync>;

/// `f` as the chain calls it (a hook, with [`EventInfo`], or a handler, with
/// [`Incoming`]): boxed, its output turned into a `Result` by [`HandlerResult`].
pub(super) fn boxed<A, F, Fut>(f: F) -> Arc<dyn Fn(Socket, A) -> BoxResultFuture + Send + Sync>
where
    A: 'static,
    F: Fn(Socket, A) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: HandlerResult,
{
    Arc::new(move |s, a| {
        let fut = f(s, a);
        Box::pin(async move { fut.await.into_result() })
    })
}

/// How a queued handler's jobs are bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobLimits {
    /// Most jobs of one socket held at once (running or waiting for their result);
    /// the next is answered `{"status":"error","error":{"code":"QUEUE_FULL",..}}`
    /// and never runs. Default 8.
    pub per_socket: usize,
    /// Longest a job may run; then the client gets `ws:error` with code `TIMEOUT`
    /// and the job is dropped. Default 60 s.
    pub timeout: Duration,
}

impl Default for JobLimits {
    fn default() -> Self {
        Self {
            per_socket: 8,
            timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Clone)]
pub(super) enum Run {
    Plain(EventHandler),
    Queued(JobHandler, JobLimits),
}

/// One event's handler with its hooks and payload validation, ready to be
/// registered on a [`Controller`].
#[derive(Clone)]
pub struct Handler {
    pub(super) hooks: Vec<Hook>,
    pub(super) check: Option<Check>,
    pub(super) run: Run,
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handler")
            .field("hooks", &self.hooks.len())
            .field("validated", &self.check.is_some())
            .field("queued", &matches!(self.run, Run::Queued(..)))
            .finish()
    }
}

impl Handler {
    /// A handler as [`Socket::on`] takes it.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn(Socket, Incoming) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        Self {
            hooks: Vec::new(),
            check: None,
            run: Run::Plain(boxed(f)),
        }
    }

    /// A queued handler (Enfyra's gateway jobs): the client's ack is answered at
    /// once with `{"queued":true,"requestId":..,"eventName":..}`, the job runs in
    /// the background, and its outcome is emitted to the socket as `ws:result`
    /// `{"requestId":..,"result":..}` or `ws:error` `{"requestId":..,"error":{"code":
    /// ..,"message":..}}` (the error rendered by the server's error policy). Jobs are
    /// bounded per socket and in time by [`JobLimits`] ([`job_limits`](Self::job_limits)).
    pub fn queued<F, Fut, T, E>(f: F) -> Self
    where
        F: Fn(Socket, Incoming) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Serialize,
        E: fmt::Display + 'static,
    {
        let job: JobHandler = Arc::new(move |s, i| {
            let fut = f(s, i);
            Box::pin(async move {
                let value = fut.await.map_err(HandlerError::from_error)?;
                serde_json::to_value(value).map_err(HandlerError::from_error)
            })
        });
        Self {
            hooks: Vec::new(),
            check: None,
            run: Run::Queued(job, JobLimits::default()),
        }
    }

    /// Sets the limits of a queued handler's jobs (no effect on another handler).
    pub fn job_limits(mut self, limits: JobLimits) -> Self {
        if let Run::Queued(_, l) = &mut self.run {
            *l = limits;
        }
        self
    }

    /// Adds a hook that runs before this handler (after those added before it).
    pub fn hook<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Socket, EventInfo) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        self.hooks.push(boxed(f));
        self
    }

    /// Validates the event's first argument with `validator` after the hooks: a
    /// payload that fails is answered with FoalTS's `VALIDATION_PAYLOAD_ERROR` and
    /// the handler never runs. The handler reads it as usual ([`Incoming::data`]).
    pub fn validate(mut self, validator: impl Validate) -> Self {
        self.check = Some(Arc::new(move |v| validator.validate(v)));
        self
    }
}

/// Handlers grouped by event name (FoalTS's `EventName` controllers), with hooks
/// that run before each of them and sub-controllers whose events take a prefix.
/// Register it on a namespace with [`Namespace::controller`]; a socket's own
/// handler ([`Socket::on`]) for the same event takes precedence.
///
/// Every event of a socket goes through one chain: the socket's
/// [`use_event`](Socket::use_event) middlewares, the namespace's hooks
/// ([`Namespace::hook`]), the hooks of the controllers that hold the handler (outer
/// first), the handler's own hooks ([`Handler::hook`]), its payload validation
/// ([`Handler::validate`]), then the handler. The first hook that fails stops the
/// chain, and its error answers the ack as a handler's error would (see
/// [`HandlerError`]).
#[derive(Clone, Default)]
pub struct Controller {
    hooks: Vec<Hook>,
    events: Vec<(String, Handler)>,
}

impl fmt::Debug for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controller")
            .field("hooks", &self.hooks.len())
            .field("events", &self.events)
            .finish()
    }
}

impl Controller {
    /// An empty controller.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a hook that runs before every handler of this controller and of its
    /// sub-controllers, in the order added.
    pub fn hook<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Socket, EventInfo) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        self.hooks.push(boxed(f));
        self
    }

    /// Handles `event` with `f` ([`Handler::new`]).
    pub fn on<F, Fut>(self, event: &str, f: F) -> Self
    where
        F: Fn(Socket, Incoming) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        self.handle(event, Handler::new(f))
    }

    /// Handles `event` with `handler` (replacing an earlier one for it).
    pub fn handle(mut self, event: &str, handler: Handler) -> Self {
        self.events.retain(|(name, _)| name != event);
        self.events.push((event.to_owned(), handler));
        self
    }

    /// Adds `sub`'s handlers under `prefix` (`"message:"` makes its `create` the
    /// event `message:create`); this controller's hooks run before `sub`'s.
    pub fn sub(mut self, prefix: &str, sub: Controller) -> Self {
        for (name, handler) in sub.flatten() {
            self = self.handle(&format!("{prefix}{name}"), handler);
        }
        self
    }

    /// Every event with its full hook list (this controller's hooks first).
    pub(super) fn flatten(self) -> Vec<(String, Handler)> {
        let hooks = self.hooks;
        self.events
            .into_iter()
            .map(|(name, mut handler)| {
                handler.hooks.splice(0..0, hooks.iter().cloned());
                (name, handler)
            })
            .collect()
    }
}

impl Namespace {
    /// Adds a hook that runs before every event handler of this namespace's sockets
    /// (controllers' and the sockets' own), in the order added. An event with no
    /// handler still goes through them, so a guard answers every event.
    pub fn hook<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(Socket, EventInfo) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        lock(&self.handlers.hooks).push(boxed(f));
        self.handlers.has_hooks.store(true, Ordering::Relaxed);
        self
    }

    /// Registers `controller`'s handlers for every socket of this namespace.
    pub fn controller(&self, controller: Controller) -> &Self {
        let mut events = lock(&self.handlers.events);
        for (name, handler) in controller.flatten() {
            events.insert(name, Arc::new(handler));
        }
        self
    }
}

impl SocketIo {
    /// Runs one event through its chain (see [`Controller`]); the caller answers
    /// the ack with the error, if any.
    pub(super) async fn run_chain(
        &self,
        socket: Socket,
        hooks: Vec<Hook>,
        handler: Option<Arc<Handler>>,
        mut incoming: Incoming,
    ) -> Result<(), HandlerError> {
        if !hooks.is_empty() || handler.as_ref().is_some_and(|h| !h.hooks.is_empty()) {
            let info = EventInfo {
                name: Arc::from(incoming.name.as_str()),
                payload: Arc::new(std::mem::take(&mut incoming.payload)),
            };
            let mut all = hooks;
            if let Some(h) = &handler {
                all.extend(h.hooks.iter().cloned());
            }
            for hook in all {
                hook(socket.clone(), info.clone()).await?;
            }
            incoming.payload = Arc::try_unwrap(info.payload).unwrap_or_else(|p| (*p).clone());
        }
        let Some(handler) = handler else {
            return Ok(());
        };
        if let Some(check) = &handler.check {
            // An argument that does not parse is checked as `null`.
            let first = incoming.payload.get::<Value>(0).unwrap_or(Value::Null);
            check(&first).map_err(HandlerError::Validation)?;
        }
        match &handler.run {
            Run::Plain(run) => run(socket, incoming).await,
            Run::Queued(job, limits) => self.start_job(socket, incoming, job.clone(), *limits),
        }
    }
}
