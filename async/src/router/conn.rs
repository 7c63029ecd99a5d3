//! One connection of a [`Router`]: its queue ([`Link`]), its handles ([`Conn`],
//! [`Sender`]) and the task that runs it ([`serve_upgrade`]).

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use wirestate_engine::ws::{CloseCode, Event, Message, Precompressed, PreparedFrame};

use super::{
    Accepted, Auth, AuthData, Broadcast, ConnId, Flow, Handshake, RoomLimit, Router, SendError,
    Upgrade,
};
use crate::{Clock, Direct, Error, Outbox, Transport, WebSocket};

/// Above this many bytes waiting in the WebSocket, the link's queue is not moved into
/// it: the rest waits, counted against the link's bound.
const HIGH_WATER: usize = 256 * 1024;

/// A broadcast message, encoded (and compressed) once for all its recipients.
pub(crate) struct SharedMessage {
    pub(crate) frame: PreparedFrame,
    pub(crate) compressed: Option<Precompressed>,
}

enum Out {
    One(Message),
    Shared(Arc<SharedMessage>),
}

/// A connection's WebSocket, as a publisher sees it.
trait DirectSend: Send + Sync {
    /// Writes a broadcast frame now, if nothing else waits to go out before it.
    fn try_send_shared(&self, message: &SharedMessage) -> Direct;
}

impl<T: Transport + Send, C: Clock + Send> DirectSend for Mutex<WebSocket<T, C>> {
    fn try_send_shared(&self, message: &SharedMessage) -> Direct {
        match self.try_lock() {
            Ok(mut ws) => ws.try_send_shared(&message.frame, message.compressed.as_ref()),
            // Its task holds it (or it panicked there): queued instead.
            Err(_) => Direct::Refused,
        }
    }
}

#[derive(Default)]
struct LinkState {
    queue: VecDeque<(Out, usize)>,
    /// The connection's WebSocket, while its task runs it: a broadcast that finds the
    /// queue empty is written straight into it by the publisher.
    wire: Option<Arc<dyn DirectSend>>,
    bytes: usize,
    waker: Option<Waker>,
    /// A close asked for, sent once the queue ahead of it is written.
    close: Option<(CloseCode, String)>,
    closing: bool,
    ended: bool,
}

/// What is shared between a connection's task and everyone who sends to it: a queue
/// bounded in bytes, and the task's waker.
pub(crate) struct Link {
    pub(crate) id: ConnId,
    pub(crate) route: usize,
    limit: usize,
    state: Mutex<LinkState>,
}

impl Link {
    pub(crate) fn new(id: ConnId, route: usize, limit: usize) -> Self {
        Self {
            id,
            route,
            limit,
            state: Mutex::new(LinkState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, out: Out, len: usize) -> Result<(), SendError> {
        let mut s = self.lock();
        if s.ended || s.closing {
            return Err(SendError::Closed);
        }
        if let (Out::Shared(message), true, Some(wire)) = (&out, s.queue.is_empty(), &s.wire) {
            match wire.try_send_shared(message) {
                Direct::Whole => return Ok(()),
                Direct::Partial => {
                    // The task writes the rest.
                    let waker = s.waker.take();
                    drop(s);
                    if let Some(w) = waker {
                        w.wake();
                    }
                    return Ok(());
                }
                Direct::Refused => {}
            }
        }
        let result = if s.bytes + len > self.limit {
            // Too slow a reader: what waits is dropped, and the connection closed.
            tracing::debug!(id = %self.id, queued = s.bytes, "send queue full: closing");
            s.queue.clear();
            s.bytes = 0;
            s.closing = true;
            s.close = Some((CloseCode::TRY_AGAIN_LATER, "send queue full".to_owned()));
            Err(SendError::Full)
        } else {
            s.bytes += len;
            s.queue.push_back((out, len));
            Ok(())
        };
        let waker = s.waker.take();
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
        result
    }

    pub(crate) fn send(&self, message: Message) -> Result<(), SendError> {
        let len = message.len();
        self.push(Out::One(message), len)
    }

    pub(crate) fn send_shared(&self, message: &Arc<SharedMessage>) -> Result<(), SendError> {
        let len = message.frame.frame().len();
        self.push(Out::Shared(message.clone()), len)
    }

    pub(crate) fn close(&self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        let mut s = self.lock();
        if s.ended || s.closing {
            return Err(SendError::Closed);
        }
        s.closing = true;
        s.close = Some((code, reason.to_owned()));
        let waker = s.waker.take();
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    pub(crate) fn is_ended(&self) -> bool {
        let s = self.lock();
        s.ended || s.closing
    }

    /// Lets publishers write broadcasts straight into `wire` (see [`LinkState::wire`]).
    fn set_wire(&self, wire: Arc<dyn DirectSend>) {
        self.lock().wire = Some(wire);
    }

    /// The task is about to run handlers on an event: what they queue is drained on
    /// its next turn, which follows at once, so a send meanwhile wakes nobody (a wake
    /// would cost the running task a second poll that finds nothing to do).
    /// [`drain_into`](Self::drain_into) registers the waker again.
    fn running_handlers(&self) {
        self.lock().waker = None;
    }

    fn end(&self) {
        let mut s = self.lock();
        s.ended = true;
        s.wire = None;
        s.queue.clear();
        s.bytes = 0;
        s.waker = None;
    }

    /// Moves what is queued into `ws` (while it holds less than [`HIGH_WATER`]), then a
    /// close asked for once nothing is ahead of it, and registers `cx` for more.
    fn drain_into<T: Transport, C: Clock>(&self, ws: &mut WebSocket<T, C>, cx: &mut Context<'_>) {
        let mut s = self.lock();
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        let mut queued = ws.queued_bytes();
        // Encoded into one write where they can be (an error ends the connection, and
        // its task sees that next).
        let _ = ws.write_direct(cx, |conn, mut buf| {
            while queued < HIGH_WATER {
                let Some((out, len)) = s.queue.pop_front() else {
                    break;
                };
                s.bytes -= len;
                queued += len;
                // A connection that is no longer open drops what it is given.
                let _ = match out {
                    Out::One(m) => crate::ws::encode_or_queue(conn, buf.as_deref_mut(), m),
                    Out::Shared(m) => conn.send_shared(&m.frame, m.compressed.as_ref()),
                };
            }
        });
        if s.queue.is_empty() {
            if let Some((code, reason)) = s.close.take() {
                drop(s);
                let now = ws.now();
                if ws.connection().close(now, code, &reason).is_err() {
                    // Not a code or reason that can be sent: close all the same.
                    let _ = ws.connection().close(now, CloseCode::POLICY_VIOLATION, "");
                }
            }
        }
    }
}

struct ConnInner {
    router: Router,
    link: Arc<Link>,
    handshake: Handshake,
    auth: Option<AuthData>,
}

/// An open connection of a [`Router`] as its handlers see it: cheap to clone, usable
/// from any task.
#[derive(Clone)]
pub struct Conn {
    inner: Arc<ConnInner>,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.inner.link.id)
            .field("route", &self.inner.handshake.route())
            .finish()
    }
}

impl Conn {
    /// The connection's id (what [`Router::send`] takes).
    pub fn id(&self) -> &ConnId {
        &self.inner.link.id
    }

    /// The upgrade request it came from: path, parameters, query, headers, peer.
    pub fn handshake(&self) -> &Handshake {
        &self.inner.handshake
    }

    /// The value of the route's path parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.inner.handshake.param(name)
    }

    /// The data the [`auth`](super::Route::auth) hook kept, if it is a `T`.
    pub fn auth<T: Any>(&self) -> Option<&T> {
        self.inner.auth.as_deref()?.downcast_ref()
    }

    /// Queues `message` for this connection.
    pub fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        self.inner.link.send(message.into())
    }

    /// Queues `value` as a JSON text message.
    pub fn send_json<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        let text = serde_json::to_string(value).map_err(SendError::Json)?;
        self.send(Message::text(text))
    }

    /// Closes the connection with `code` and `reason`, after what is queued.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.inner.link.close(code, reason)
    }

    /// Whether the connection has ended or is closing.
    pub fn is_closed(&self) -> bool {
        self.inner.link.is_ended()
    }

    /// A sender for this connection, to keep in another task.
    pub fn sender(&self) -> Sender {
        Sender {
            link: self.inner.link.clone(),
        }
    }

    /// Joins `room`: `Ok(true)` if it was not in it.
    pub fn join(&self, room: &str) -> Result<bool, RoomLimit> {
        self.inner.router.join(&self.inner.link, room)
    }

    /// Leaves `room`: whether it was in it.
    pub fn leave(&self, room: &str) -> bool {
        self.inner.router.leave(&self.inner.link, room)
    }

    /// The rooms this connection is in.
    pub fn rooms(&self) -> Vec<String> {
        self.inner.router.rooms_of(&self.inner.link)
    }

    /// A broadcast to the other connections of this route (narrow it with
    /// [`Broadcast::to`]; [`Broadcast::include_self`] adds this one).
    pub fn broadcast(&self) -> Broadcast<'_> {
        Broadcast {
            router: &self.inner.router,
            route: Some(self.inner.link.route),
            rooms: Vec::new(),
            except: Some(self.inner.link.id.clone()),
        }
    }

    /// The router the connection belongs to.
    pub fn router(&self) -> &Router {
        &self.inner.router
    }
}

/// Sends to one connection from anywhere: cheap to clone, never waits.
#[derive(Clone)]
pub struct Sender {
    link: Arc<Link>,
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Sender").field(&self.link.id).finish()
    }
}

impl Sender {
    pub(crate) fn new(link: Arc<Link>) -> Self {
        Self { link }
    }

    /// The connection's id.
    pub fn id(&self) -> &ConnId {
        &self.link.id
    }

    /// Queues `message`.
    pub fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        self.link.send(message.into())
    }

    /// Queues `value` as a JSON text message.
    pub fn send_json<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        let text = serde_json::to_string(value).map_err(SendError::Json)?;
        self.send(Message::text(text))
    }

    /// Closes the connection with `code` and `reason`, after what is queued.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.link.close(code, reason)
    }

    /// Whether the connection has ended or is closing.
    pub fn is_closed(&self) -> bool {
        self.link.is_ended()
    }
}

/// A registered connection, forgotten by its router however its task ends (a
/// handler's panic included).
struct Registered {
    router: Router,
    link: Arc<Link>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.link.end();
        self.router.unregister(&self.link);
    }
}

/// Asks the route's auth hook about `upgrade`, for at most the route's handshake
/// timeout (past it: 503).
pub(crate) async fn authorize<C: Clock>(upgrade: &Upgrade, clock: &mut C) -> Auth {
    let route = upgrade.router.entry_route(upgrade.route);
    let Some(hook) = &route.auth else {
        return Auth::accept();
    };
    let timeout = upgrade.config().handshake_timeout;
    let deadline = clock.now() + timeout;
    crate::until(clock, deadline, hook(&upgrade.handshake))
        .await
        .unwrap_or_else(|| Auth::refuse(503))
}

/// Authenticates an upgrade request, answers it, and runs the connection until it
/// ends. `rest`: bytes read past the request.
///
/// Made when called: the answer (the auth hook's future, a refusal being written) is
/// boxed apart and gone once done, so that the future an open connection is held in
/// is sized for [`run`]'s loop alone.
pub(crate) fn serve_upgrade<T: Transport + Send + 'static, C: Clock + Send + 'static>(
    upgrade: Upgrade,
    io: T,
    clock: C,
    rest: Bytes,
) -> impl Future<Output = io::Result<()>> + Send + 'static {
    let answered = Box::pin(answer(upgrade, io, clock, rest));
    crate::then(answered, |answered| match answered {
        Ok((accepted, ws, auth)) => crate::Either::Left {
            future: run(accepted, ws, auth),
        },
        Err(refused) => crate::Either::Right {
            future: std::future::ready(refused),
        },
    })
}

/// An upgrade authorized and answered, with what runs its connection; or the end of
/// a refused one (its response written).
type Answered<T, C> = Result<(Accepted, WebSocket<T, C>, Auth), io::Result<()>>;

/// [`serve_upgrade`]'s first phase.
async fn answer<T: Transport + Send + 'static, C: Clock + Send + 'static>(
    upgrade: Upgrade,
    mut io: T,
    mut clock: C,
    rest: Bytes,
) -> Answered<T, C> {
    let auth = authorize(&upgrade, &mut clock).await;
    if let Auth::Refuse(response) = auth {
        let mut out = Outbox::default();
        out.push(response.encode_head(false));
        out.push(response.body);
        let deadline = clock.now() + upgrade.config().write_timeout;
        return Err(poll_fn(|cx| {
            if let Err(e) = out.write_to(&mut io, cx) {
                return Poll::Ready(Err(e));
            }
            if out.is_empty() {
                return crate::host::shutdown(&mut io, cx);
            }
            clock
                .poll_until(cx, deadline)
                .map(|()| Err(io::ErrorKind::TimedOut.into()))
        })
        .await);
    }
    let config = upgrade.config().clone();
    let (request, accepted) = upgrade.into_parts();
    let ws = WebSocket::accept_request(io, clock, config, request, &rest);
    Ok((accepted, ws, auth))
}

/// Runs a connection whose upgrade was answered (`ws`), as `auth` decided: closed at
/// once, or registered and handed to the route's handlers until it ends.
///
/// Made when called: a connection closed at once holds its close alone, an open one
/// the state of its loop alone.
pub(crate) fn run<T: Transport + Send + 'static, C: Clock + Send + 'static>(
    accepted: Accepted,
    ws: WebSocket<T, C>,
    auth: Auth,
) -> impl Future<Output = io::Result<()>> + Send + 'static {
    let Accepted {
        router,
        route: index,
        handshake,
    } = accepted;
    let data = match auth {
        Auth::Accept(data) => data,
        // Boxed, as it holds the connection by value: the future is not sized for it.
        Auth::Close(code, reason) => {
            return crate::Either::Right {
                future: Box::pin(close_at_once(ws, code, reason)),
            }
        }
        // Answered before the upgrade by the caller; here only by mistake.
        Auth::Refuse(_) => {
            return crate::Either::Right {
                future: Box::pin(close_at_once(
                    ws,
                    CloseCode::POLICY_VIOLATION,
                    String::new(),
                )),
            }
        }
    };
    let link = router.register(index);
    let registered = Registered {
        router: router.clone(),
        link: link.clone(),
    };
    let conn = Conn {
        inner: Arc::new(ConnInner {
            router: router.clone(),
            link: link.clone(),
            handshake,
            auth: data,
        }),
    };
    if let Some(f) = &router.entry_route(index).on_connect {
        guarded(&conn, "on_connect", || f(&conn));
    }
    let ws = Arc::new(Mutex::new(ws));
    link.set_wire(ws.clone());
    crate::Either::Left {
        future: drive(registered, index, conn, ws),
    }
}

/// Closes `ws` with `code` and `reason` (cut to fit a close frame) before the
/// application sees it.
async fn close_at_once<T: Transport, C: Clock>(
    mut ws: WebSocket<T, C>,
    code: CloseCode,
    reason: String,
) -> io::Result<()> {
    let reason = cut(&reason, wirestate_engine::ws::close::MAX_REASON_LEN);
    let closed = match ws.close(code, reason).await {
        Err(Error::Send(_)) => ws.close(CloseCode::POLICY_VIOLATION, "").await,
        other => other,
    };
    match closed {
        Err(Error::Io(e)) => Err(e),
        _ => Ok(()),
    }
}

/// [`run`]'s loop: the connection's events to its route's handlers, until it ends.
async fn drive<T: Transport + Send + 'static, C: Clock + Send + 'static>(
    registered: Registered,
    index: usize,
    conn: Conn,
    ws: Arc<Mutex<WebSocket<T, C>>>,
) -> io::Result<()> {
    let (route, link) = (registered.router.entry_route(index), &registered.link);
    let mut ended = None;
    loop {
        let event = poll_fn(|cx| {
            // Held while this task runs: a publisher meanwhile queues to the link.
            let mut ws = ws.lock().unwrap_or_else(|e| e.into_inner());
            link.drain_into(&mut ws, cx);
            let event = ws.poll_event(cx);
            if event.is_ready() {
                link.running_handlers();
            }
            event
        })
        .await;
        match event {
            Some(Ok(Event::Message(message))) => guarded(&conn, "on_message", || {
                let mut message = Some(message);
                for middleware in &route.middleware {
                    let Some(m) = message.take() else { break };
                    if let Flow::Next(next) = middleware(&conn, m) {
                        message = Some(next);
                    }
                }
                if let (Some(m), Some(f)) = (message, &route.on_message) {
                    f(&conn, m);
                }
            }),
            Some(Ok(Event::Closed(closed))) => {
                if let (Some(_), Some(f)) = (&closed.error, &route.on_error) {
                    let e = Error::Closed(Box::new(closed.clone()));
                    guarded(&conn, "on_error", || f(&conn, &e));
                }
                ended = Some((closed.code, closed.reason));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                if let Some(f) = &route.on_error {
                    guarded(&conn, "on_error", || f(&conn, &e));
                }
            }
            None => break,
        }
    }
    link.end();
    let (code, reason) = ended.unwrap_or((CloseCode::ABNORMAL, String::new()));
    if let Some(f) = &route.on_close {
        guarded(&conn, "on_close", || f(&conn, code, &reason));
    }
    drop(registered);
    Ok(())
}

/// Runs one of `conn`'s handlers. One that panics does not take the connection's task
/// (or the server) down: the panic is logged and the connection closed with 1011.
fn guarded(conn: &Conn, handler: &'static str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        tracing::error!(id = %conn.id(), handler, "handler panicked: closing the connection (1011)");
        let _ = conn.close(CloseCode::INTERNAL_ERROR, "internal error");
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::tests::Wakes;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_send_while_the_task_runs_handlers_wakes_nobody() {
        let link = Link::new(ConnId(Arc::from("c1")), 0, 1 << 20);
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        // Between turns (the waker registered): a send wakes the task.
        link.lock().waker = Some(waker.clone());
        link.send(Message::text("a")).expect("send");
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        // The task took an event and runs its handlers: their sends are queued for
        // the turn that follows, with no wake.
        link.lock().waker = Some(waker);
        link.running_handlers();
        link.send(Message::text("b")).expect("send");
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "the running task is not woken"
        );
        assert_eq!(
            link.lock().queue.len(),
            2,
            "both wait for the task's next turn"
        );
    }
}
