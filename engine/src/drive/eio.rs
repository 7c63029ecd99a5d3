//! [`EioServer`]: an Engine.IO endpoint served over many connections.
//!
//! One [`eio::Server`](crate::eio::Server) is shared (behind a mutex held only for the
//! synchronous calls into it) by every connection future and one timer future. Its
//! outputs are sorted into mailboxes — the response for a parked poll, the bytes for a
//! WebSocket transport — and the future waiting on each mailbox is woken. Adapters
//! spawn [`EioServer::serve_connection`] for every accepted TCP connection and
//! [`EioServer::run_timers`] once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::poll_fn;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Clock, Outbox, Transport, WebSocket};
use crate::eio::{self, Data, PollId, Reply, SendError, SessionId, Transmit, TransportId};
use crate::http::{Response, ServerConn};
use crate::ws;

/// Limits for the HTTP side of an [`EioServer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpLimits {
    /// Largest request head (default 8 KiB; larger: 431).
    pub max_head_size: usize,
    /// How long an idle or half-sent request may hold a connection before it is closed
    /// (default 30 s): keep-alive connections do not live forever, and a client that
    /// trickles a request head (slowloris) is cut off.
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_head_size: 8 << 10,
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl HttpLimits {
    /// Sets [`HttpLimits::request_timeout`].
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`HttpLimits::max_head_size`].
    pub fn max_head_size(mut self, bytes: usize) -> Self {
        self.max_head_size = bytes;
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Mailbox {
    Poll(PollId),
    Ws(TransportId),
}

#[derive(Debug)]
struct Shared {
    server: eio::Server,
    responses: HashMap<PollId, Response>,
    ws_out: HashMap<TransportId, Vec<Bytes>>,
    ws_closed: HashSet<TransportId>,
    wakers: HashMap<Mailbox, Waker>,
    events: VecDeque<eio::Event>,
    event_waker: Option<Waker>,
    timer_waker: Option<Waker>,
    armed: Option<Instant>,
}

impl Shared {
    /// Sorts the server's outputs into mailboxes and wakes whoever waits on them.
    fn dispatch(&mut self) {
        while let Some(t) = self.server.poll_transmit() {
            let key = match t {
                Transmit::Respond { poll, response } => {
                    self.responses.insert(poll, response);
                    Mailbox::Poll(poll)
                }
                Transmit::Ws { transport, bytes } => {
                    self.ws_out.entry(transport).or_default().push(bytes);
                    Mailbox::Ws(transport)
                }
                Transmit::CloseTransport(transport) => {
                    self.ws_closed.insert(transport);
                    Mailbox::Ws(transport)
                }
            };
            if let Some(w) = self.wakers.remove(&key) {
                w.wake();
            }
        }
        let mut any = false;
        while let Some(e) = self.server.poll_event() {
            self.events.push_back(e);
            any = true;
        }
        if any {
            if let Some(w) = self.event_waker.take() {
                w.wake();
            }
        }
        let next = self.server.poll_timeout();
        if next != self.armed {
            if let Some(w) = self.timer_waker.take() {
                w.wake();
            }
        }
    }
}

/// An Engine.IO endpoint: cheap to clone, shared by all its connections.
#[derive(Clone, Debug)]
pub struct EioServer {
    shared: Arc<Mutex<Shared>>,
    limits: HttpLimits,
    routes: Arc<Vec<(String, Arc<ws::Config>)>>,
}

/// What a connection is doing.
enum Mode {
    Http,
    Parked(PollId),
    Ws(TransportId),
    /// A WebSocket upgrade for one of the plain routes: leave the loop.
    Handoff(Box<ws::Request>, Arc<ws::Config>),
}

/// How many bytes are read per `poll_read` (on the stack of the polling task).
const READ_CHUNK: usize = 16 * 1024;
/// Reading pauses while this many bytes wait to be written.
const HIGH_WATER: usize = 1 << 20;

impl EioServer {
    /// An endpoint with `config`; `seed` seeds session ids (use OS randomness).
    pub fn new(config: eio::Config, seed: [u8; 32]) -> Self {
        Self::with_limits(config, seed, HttpLimits::default())
    }

    /// An endpoint with explicit HTTP limits.
    pub fn with_limits(config: eio::Config, seed: [u8; 32], limits: HttpLimits) -> Self {
        Self {
            shared: Arc::new(Mutex::new(Shared {
                server: eio::Server::new(config, seed),
                responses: HashMap::new(),
                ws_out: HashMap::new(),
                ws_closed: HashSet::new(),
                wakers: HashMap::new(),
                events: VecDeque::new(),
                event_waker: None,
                timer_waker: None,
                armed: None,
            })),
            limits,
            routes: Arc::new(Vec::new()),
        }
    }

    /// Replaces the HTTP limits.
    pub fn http_limits(mut self, limits: HttpLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Serves plain WebSocket connections on `path` beside Engine.IO:
    /// [`serve_connection`](Self::serve_connection) hands each such upgrade back to the
    /// caller as an open [`WebSocket`].
    pub fn with_websocket_route(mut self, path: &str, config: Arc<ws::Config>) -> Self {
        Arc::make_mut(&mut self.routes).push((path.to_owned(), config));
        self
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while locked cannot leave the state machine half-updated in a way
        // that matters more than stopping every connection would: keep serving.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next session event (open, message, upgrade, close).
    pub async fn next_event(&self) -> eio::Event {
        poll_fn(|cx| {
            let mut s = self.lock();
            match s.events.pop_front() {
                Some(e) => Poll::Ready(e),
                None => {
                    s.event_waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Sends a message to a session.
    pub fn send(&self, sid: &SessionId, data: Data) -> Result<(), SendError> {
        let mut s = self.lock();
        let result = s.server.send(sid, data);
        s.dispatch();
        result
    }

    /// Closes a session.
    pub fn close(&self, now: Instant, sid: &SessionId) -> Result<(), SendError> {
        let mut s = self.lock();
        let result = s.server.close(now, sid);
        s.dispatch();
        result
    }

    /// How many sessions are open.
    pub fn session_count(&self) -> usize {
        self.lock().server.session_count()
    }

    /// Fires the endpoint's deadlines (heartbeats, upgrade and WebSocket timeouts).
    /// Spawn it once; it runs until the process ends.
    pub async fn run_timers<C: Clock>(&self, mut clock: C) {
        poll_fn(move |cx| loop {
            let mut s = self.lock();
            let next = s.server.poll_timeout();
            s.armed = next;
            s.timer_waker = Some(cx.waker().clone());
            let Some(deadline) = next else {
                return Poll::Pending;
            };
            drop(s);
            if clock.poll_until(cx, deadline).is_pending() {
                return Poll::Pending;
            }
            let mut s = self.lock();
            s.server.handle_timeout(clock.now());
            s.dispatch();
        })
        .await
    }

    /// Serves one accepted connection until it closes: HTTP requests for the
    /// Engine.IO path, parked polls, and upgraded WebSockets. A WebSocket upgrade for a
    /// route added with [`with_websocket_route`](Self::with_websocket_route) returns the
    /// open connection (with the route's path) for the caller to run; other paths get
    /// 404.
    pub async fn serve_connection<T: Transport, C: Clock>(
        &self,
        mut io: T,
        mut clock: C,
    ) -> io::Result<Option<(String, WebSocket<T, C>)>> {
        let mut http = ServerConn::new(
            self.limits.max_head_size,
            self.lock().server.max_body_size() + 1024,
        );
        let mut out = Outbox::default();
        let mut mode = Mode::Http;
        let mut read_eof = false;
        let mut idle_since = clock.now();
        let done = poll_fn(|cx| {
            loop {
                // Everything queued for this connection goes out first.
                while let Some(b) = http.poll_transmit() {
                    out.push(b);
                }
                if let Mode::Ws(tid) = mode {
                    let mut s = self.lock();
                    for b in s.ws_out.remove(&tid).unwrap_or_default() {
                        out.push(b);
                    }
                    // Registered under the same lock as the drain above, so that bytes
                    // dispatched by another thread right after it still wake us.
                    s.wakers.insert(Mailbox::Ws(tid), cx.waker().clone());
                    if out.is_empty() && s.ws_closed.remove(&tid) {
                        drop(s);
                        return shutdown(&mut io, cx);
                    }
                }
                if let Err(e) = out.write_to(&mut io, cx) {
                    self.abandon(&mode, clock.now());
                    return Poll::Ready(Err(e));
                }
                match mode {
                    Mode::Http => {
                        if let Some(request) = http.poll_request() {
                            mode = self.route(&mut http, request, clock.now());
                            idle_since = clock.now();
                            continue;
                        }
                        if http.should_close() && out.is_empty() {
                            return shutdown(&mut io, cx);
                        }
                        if clock
                            .poll_until(cx, idle_since + self.limits.request_timeout)
                            .is_ready()
                        {
                            return shutdown(&mut io, cx);
                        }
                    }
                    Mode::Handoff(..) => {
                        if out.is_empty() {
                            return Poll::Ready(Ok(()));
                        }
                        return Poll::Pending;
                    }
                    Mode::Parked(poll) => {
                        let mut s = self.lock();
                        match s.responses.remove(&poll) {
                            Some(response) => {
                                drop(s);
                                http.respond(response);
                                mode = Mode::Http;
                                idle_since = clock.now();
                                continue;
                            }
                            None => {
                                s.wakers.insert(Mailbox::Poll(poll), cx.waker().clone());
                            }
                        }
                    }
                    Mode::Ws(_) => {}
                }
                if read_eof || out.len() > HIGH_WATER {
                    if read_eof && matches!(mode, Mode::Http) && out.is_empty() {
                        return shutdown(&mut io, cx);
                    }
                    return Poll::Pending;
                }
                let mut buf = [0u8; READ_CHUNK];
                match io.poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(0)) => {
                        read_eof = true;
                        match mode {
                            Mode::Http | Mode::Handoff(..) => http.handle_eof(),
                            Mode::Parked(_) | Mode::Ws(_) => self.abandon(&mode, clock.now()),
                        }
                        if matches!(mode, Mode::Parked(_) | Mode::Ws(_)) {
                            return shutdown(&mut io, cx);
                        }
                    }
                    Poll::Ready(Ok(n)) => match mode {
                        Mode::Ws(tid) => {
                            let mut s = self.lock();
                            s.server.handle_ws_input(clock.now(), tid, &buf[..n]);
                            s.dispatch();
                        }
                        Mode::Http | Mode::Parked(_) | Mode::Handoff(..) => {
                            http.handle_input(&buf[..n])
                        }
                    },
                    Poll::Ready(Err(e)) => {
                        self.abandon(&mode, clock.now());
                        return Poll::Ready(Err(e));
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await;
        done?;
        match mode {
            Mode::Handoff(request, config) => {
                let rest = http.upgrade(Bytes::new());
                let path = request.path().split('?').next().unwrap_or("/").to_owned();
                let ws = WebSocket::accept_request(io, clock, config, *request, &rest);
                Ok(Some((path, ws)))
            }
            _ => Ok(None),
        }
    }

    /// Hands one request to the Engine.IO server (or answers 404).
    fn route(&self, http: &mut ServerConn, request: crate::http::Request, now: Instant) -> Mode {
        let mut s = self.lock();
        if !s.server.config().matches(request.head.path()) {
            drop(s);
            let route = self.routes.iter().find(|(p, _)| p == request.head.path());
            if let (Some((_, config)), true) = (route, request.head.is_websocket_upgrade()) {
                match ws::handshake::validate(request.head) {
                    Ok(upgrade) => return Mode::Handoff(Box::new(upgrade), config.clone()),
                    Err(e) => {
                        http.respond(
                            Response::new(e.status())
                                .header("Content-Type", "text/plain; charset=utf-8")
                                .body(e.to_string()),
                        );
                        return Mode::Http;
                    }
                }
            }
            http.respond(
                Response::new(404)
                    .header("Content-Type", "text/plain")
                    .body("Not Found"),
            );
            return Mode::Http;
        }
        let reply = s.server.handle_request(now, &request);
        let mode = match reply {
            Reply::Respond(response) => {
                http.respond(response);
                Mode::Http
            }
            Reply::Park(poll) => Mode::Parked(poll),
            Reply::Upgrade(tid) => {
                let rest = http.upgrade(Bytes::new());
                if !rest.is_empty() {
                    s.server.handle_ws_input(now, tid, &rest);
                }
                Mode::Ws(tid)
            }
        };
        s.dispatch();
        mode
    }

    /// The connection is gone: tell the server about what it was waiting for.
    fn abandon(&self, mode: &Mode, now: Instant) {
        let mut s = self.lock();
        match *mode {
            Mode::Http | Mode::Handoff(..) => {}
            Mode::Parked(poll) => {
                s.wakers.remove(&Mailbox::Poll(poll));
                if s.responses.remove(&poll).is_none() {
                    s.server.handle_poll_aborted(now, poll);
                }
            }
            Mode::Ws(tid) => {
                s.wakers.remove(&Mailbox::Ws(tid));
                s.server.handle_ws_eof(now, tid);
                s.ws_out.remove(&tid);
                s.ws_closed.remove(&tid);
            }
        }
        s.dispatch();
        if let Mode::Ws(tid) = *mode {
            s.ws_out.remove(&tid);
            s.ws_closed.remove(&tid);
        }
    }
}

fn shutdown<T: Transport>(io: &mut T, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    match io.poll_flush(cx) {
        Poll::Pending => return Poll::Pending,
        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
        Poll::Ready(Ok(())) => {}
    }
    io.poll_shutdown(cx).map(|r| r.or(Ok(())))
}
