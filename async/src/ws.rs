//! [`WebSocket`]: one WebSocket connection over a [`Transport`] and a [`Clock`].
//!
//! Reading into a stack buffer (an idle connection holds no read buffer), vectored
//! writes of every queued frame in one call, re-arming one timer, backpressure, and
//! shutting the transport down when the protocol says so.

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tracing::Instrument;

use super::{ClientStream, Clock, Connector, Direct, Outbox, Runtime, Transport};
use wirestate_engine::http::Scheme;
use wirestate_engine::ws::{
    self, CloseCode, Closed, Connection, Event, Message, MessageRef, Opened, Precompressed,
    PreparedFrame, SendError,
};

/// Errors of the async API.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed.
    Io(io::Error),
    /// The connection ended without a clean closing handshake (protocol violation by
    /// the peer, lost connection, timeout, failed handshake).
    Closed(Box<Closed>),
    /// The call is not possible in the connection's current state.
    Send(SendError),
    /// The URL cannot be used.
    Url(ws::UrlError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "I/O error: {e}"),
            Self::Closed(c) => match &c.error {
                Some(e) => write!(f, "connection closed: {e}"),
                None => write!(f, "connection closed ({})", c.code),
            },
            Self::Send(e) => e.fmt(f),
            Self::Url(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Closed(c) => c.error.as_ref().map(|e| e as _),
            Self::Send(e) => Some(e),
            Self::Url(e) => Some(e),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Self {
        Self::Send(e)
    }
}

impl From<ws::UrlError> for Error {
    fn from(e: ws::UrlError) -> Self {
        Self::Url(e)
    }
}

/// Above this many queued bytes, reading pauses and `Sink::poll_ready` waits until the
/// transport has taken some.
const HIGH_WATER: usize = 1 << 20;

/// A WebSocket over any [`Transport`] and [`Clock`].
///
/// Reading (`recv`, `Stream`) also drives everything else: pongs, the closing
/// handshake, keepalive, timeouts. Keep reading until it returns `None`, even after
/// `close`, so that the closing handshake completes.
pub struct WebSocket<T, C> {
    io: T,
    /// Boxed, so that a `WebSocket` is small to move and to hold in a future: a
    /// connection's task holds the transport and this pointer.
    inner: Box<Inner<C>>,
}

/// A [`WebSocket`]'s state, out of line.
#[derive(Debug)]
struct Inner<C> {
    conn: Connection,
    /// Its timer (armed at the connection's next deadline).
    clock: C,
    /// What an open connection whose writes keep up holds none of: `None` most of
    /// the time.
    aside: Option<Box<Aside>>,
}

/// The parts of a [`WebSocket`] that are empty while it is open and keeps up:
/// bytes the transport has not taken, input held past a lent message, the
/// handshake's details (when there are any to keep) and the end. Made when one is
/// needed, and given up (to this thread's spare, [`ASIDE_SPARE`]) once all are empty
/// again.
#[derive(Debug, Default)]
struct Aside {
    outbox: Outbox,
    /// What a read held past a message lent in place (see `poll_step`), decoded
    /// before the next read.
    held: Option<Box<Held>>,
    /// The handshake's details, when there is something to keep: a connection that
    /// negotiated nothing and keeps no request holds none.
    opened: Option<Box<Opened>>,
    /// How the connection ended.
    closed: Option<Closed>,
    /// Why the message [`WebSocket::send`] was given could not be sent, for its
    /// future to report.
    failed: Option<Error>,
    read_eof: bool,
    shut_down: bool,
    finished: bool,
}

impl Aside {
    /// Whether every part is empty: the box can go.
    fn is_idle(&self) -> bool {
        self.outbox.is_empty()
            && self.held.is_none()
            && self.opened.is_none()
            && self.closed.is_none()
            && self.failed.is_none()
            && !self.read_eof
            && !self.shut_down
            && !self.finished
    }

    /// An empty one: this thread's spare if it has one.
    fn new_boxed() -> Box<Self> {
        ASIDE_SPARE
            .try_with(std::cell::Cell::take)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Keeps an idle one as this thread's spare (or frees it).
    fn recycle(self: Box<Self>) {
        debug_assert!(self.is_idle());
        // As the thread ends there is no spare to keep: it is dropped.
        let _ = ASIDE_SPARE.try_with(|spare| spare.set(Some(self)));
    }
}

thread_local! {
    /// One idle [`Aside`], kept for the next connection on this thread that needs
    /// one: a connection whose reads hold several messages, or whose writes the
    /// transport does not take at once, then allocates nothing for it each time.
    static ASIDE_SPARE: std::cell::Cell<Option<Box<Aside>>> = const { std::cell::Cell::new(None) };
}

/// Input read past a message lent in place, kept by the connection until its next
/// message is asked for (the read buffer is the thread's, not the connection's).
#[derive(Debug)]
struct Held {
    input: Vec<u8>,
    /// How much of `input` has been decoded.
    at: usize,
    /// When it was read (the time it is decoded at: no clock reading per message).
    read_at: std::time::Instant,
}

thread_local! {
    /// One `Held` whose input was all decoded, kept for the next read on this thread
    /// that holds input back: a connection echoing a stream of small messages then
    /// allocates nothing per read. At most one per thread, of at most
    /// [`HELD_SPARE_MAX`] bytes.
    static HELD_SPARE: std::cell::Cell<Option<Box<Held>>> = const { std::cell::Cell::new(None) };
}

/// The largest input buffer [`HELD_SPARE`] keeps (held input is the rest of one read,
/// at most [`READ_CHUNK`](super::READ_CHUNK) bytes).
const HELD_SPARE_MAX: usize = 2 * super::READ_CHUNK;

impl Held {
    /// A copy of `rest`, read at `read_at`, in this thread's spare when it has one.
    fn copy_of(rest: &[u8], read_at: std::time::Instant) -> Box<Self> {
        match HELD_SPARE.try_with(std::cell::Cell::take).ok().flatten() {
            Some(mut held) => {
                held.input.clear();
                held.input.extend_from_slice(rest);
                held.at = 0;
                held.read_at = read_at;
                held
            }
            None => Box::new(Self {
                input: rest.to_vec(),
                at: 0,
                read_at,
            }),
        }
    }

    /// Gives a `Held` whose input was all decoded back to this thread's spare.
    fn recycle(self: Box<Self>) {
        if self.input.capacity() <= HELD_SPARE_MAX {
            // As the thread ends there is no spare to keep: it is dropped.
            let _ = HELD_SPARE.try_with(|spare| spare.set(Some(self)));
        }
    }
}

/// What [`WebSocket::handshake_info`] shows of a handshake that left nothing to keep.
static NOTHING_KEPT: Opened = Opened {
    protocol: None,
    request: None,
    response: None,
    deflate: None,
};

impl<T, C> fmt::Debug for WebSocket<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("role", &self.inner.conn.role())
            .field("open", &self.inner.conn.is_open())
            .field("outbox_bytes", &self.outbox_len())
            .finish()
    }
}

impl<T, C> WebSocket<T, C> {
    /// The completed opening handshake (request or response, subprotocol).
    ///
    /// Its details (negotiated parameters, the request or response when kept) are
    /// those of a handshake run here: [`accept`](Self::accept),
    /// [`connect`](Self::connect), [`accept_request`](Self::accept_request). A
    /// connection given to [`from_connection`](Self::from_connection) after its
    /// handshake shows none.
    pub fn handshake_info(&self) -> Option<&Opened> {
        match self.inner.aside.as_ref().and_then(|a| a.opened.as_deref()) {
            Some(opened) => Some(opened),
            None => (!self.inner.conn.is_handshaking()).then_some(&NOTHING_KEPT),
        }
    }

    /// The selected subprotocol.
    pub fn protocol(&self) -> Option<&str> {
        self.inner
            .aside
            .as_ref()?
            .opened
            .as_ref()?
            .protocol
            .as_deref()
    }

    /// How the connection ended, once it has.
    pub fn close_info(&self) -> Option<&Closed> {
        self.inner.aside.as_ref()?.closed.as_ref()
    }

    /// The state machine, for what this API does not cover.
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.inner.conn
    }

    /// Bytes queued and not yet taken by the transport.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.outbox_len() + self.inner.conn.buffered_amount()
    }

    /// The parts held now and then, made when first needed.
    fn aside(&mut self) -> &mut Aside {
        self.inner.aside.get_or_insert_with(Aside::new_boxed)
    }

    /// Gives the parts held now and then up once all are empty again.
    fn tidy(&mut self) {
        if self.inner.aside.as_ref().is_some_and(|a| a.is_idle()) {
            if let Some(aside) = self.inner.aside.take() {
                aside.recycle();
            }
        }
    }

    /// Whether no bytes wait for the transport.
    fn outbox_is_empty(&self) -> bool {
        self.inner
            .aside
            .as_ref()
            .is_none_or(|a| a.outbox.is_empty())
    }

    /// How many bytes wait for the transport.
    fn outbox_len(&self) -> usize {
        self.inner.aside.as_ref().map_or(0, |a| a.outbox.len())
    }

    /// Drops the bytes that wait for the transport.
    fn clear_outbox(&mut self) {
        if let Some(aside) = self.inner.aside.as_mut() {
            aside.outbox.clear();
        }
    }
}

impl<T: Transport, C: Clock> WebSocket<T, C> {
    /// The time on the connection's clock.
    pub(crate) fn now(&self) -> std::time::Instant {
        self.inner.clock.now()
    }

    /// Wraps a connection in any state. Prefer [`accept`](Self::accept) and
    /// [`connect`](Self::connect), which also complete the handshake.
    pub fn from_connection(io: T, clock: C, conn: Connection) -> Self {
        Self {
            io,
            inner: Box::new(Inner {
                conn,
                clock,
                aside: None,
            }),
        }
    }

    /// A server connection for an upgrade request already read by an HTTP router:
    /// answers it (`101`, queued), feeds `rest` (bytes read past the request) and
    /// returns the open connection.
    pub fn accept_request(
        io: T,
        clock: C,
        config: Arc<ws::Config>,
        request: ws::Request,
        rest: &[u8],
    ) -> Self {
        let conn = Connection::accept(config, request, clock.now());
        let mut ws = Self::from_accepted(io, clock, conn);
        if !rest.is_empty() {
            let now = ws.inner.clock.now();
            ws.inner.conn.handle_input(now, rest);
        }
        ws
    }

    /// A server connection made by [`Connection::accept`] (its `101` queued, or taken
    /// by an HTTP server that writes it itself).
    pub(crate) fn from_accepted(io: T, clock: C, mut conn: Connection) -> Self {
        let opened = match conn.poll_event() {
            Some(Event::Open(opened)) => Some(opened),
            _ => None,
        };
        let mut ws = Self::from_connection(io, clock, conn);
        if let Some(opened) = opened {
            ws.set_opened(opened);
        }
        ws
    }

    /// Records the completed handshake, keeping its details only if there are any.
    fn set_opened(&mut self, opened: Box<Opened>) {
        if *opened != NOTHING_KEPT {
            self.aside().opened = Some(opened);
        }
    }

    /// Runs the server side of the opening handshake on `io`. The future carries the
    /// handshake's state: box it if a long-lived task awaits it (as
    /// [`accept`](crate::accept) does), so that the task is not sized for both.
    pub async fn accept(io: T, clock: C, config: Arc<ws::Config>) -> Result<Self, Error> {
        let conn = Connection::server(config, clock.now());
        Self::from_connection(io, clock, conn).handshake().await
    }

    /// Runs the client side of the opening handshake on `io`, an already connected
    /// transport. `seed` seeds the masking keys (use OS randomness).
    pub async fn connect(
        io: T,
        clock: C,
        config: Arc<ws::Config>,
        request: &ws::ClientRequest,
        seed: [u8; 32],
    ) -> Result<Self, Error> {
        let conn = Connection::client(config, request, clock.now(), seed);
        Self::from_connection(io, clock, conn).handshake().await
    }

    async fn handshake(mut self) -> Result<Self, Error> {
        loop {
            match poll_fn(|cx| self.poll_event(cx)).await {
                Some(Ok(Event::Open(opened))) => {
                    self.set_opened(opened);
                    return Ok(self);
                }
                Some(Ok(Event::Closed(closed))) => {
                    // Deliver the rejection (e.g. the HTTP 400) before giving up.
                    let _ = poll_fn(|cx| self.poll_drain(cx)).await;
                    return Err(Error::Closed(Box::new(closed)));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Err(Error::Io(io::ErrorKind::UnexpectedEof.into())),
            }
        }
    }

    /// The next message. `None` once the connection has ended (cleanly: see
    /// [`close_info`](Self::close_info)); an unclean end is reported once as
    /// [`Error::Closed`] before that.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.poll_message(cx)).await
    }

    /// The next message, lent to `f` instead of handed over: no allocation when it lies
    /// whole in one read (the common case: one unfragmented, uncompressed frame), as
    /// `f` sees it in place, in this thread's read buffer. `f` runs at once, before
    /// anything else is read, and may answer through its [`Outgoing`]: replies are
    /// encoded straight into the write that follows, also without an allocation.
    /// Returns what `f` returned; `None` and errors as [`recv`](Self::recv). A message
    /// that does not lie whole in one read is assembled as for `recv` and lent the same
    /// way.
    ///
    /// ```no_run
    /// # async fn echo<T: wirestate_async::Transport, C: wirestate_async::Clock>(
    /// #     ws: &mut wirestate_async::WebSocket<T, C>,
    /// # ) {
    /// while let Some(Ok(Ok(()))) = ws.recv_with(|message, out| out.send(message)).await {}
    /// # }
    /// ```
    ///
    /// The replies are written at once; what the transport does not take is written
    /// before the next message is read, as `send(..).await` after `recv` would (so a
    /// peer that stops reading meets the write timeout). [`flush`](Self::flush) waits
    /// for the last replies.
    pub fn recv_with<F, R>(&mut self, f: F) -> RecvWith<'_, T, C, F>
    where
        F: FnOnce(MessageRef<'_>, &mut Outgoing<'_>) -> R,
    {
        RecvWith {
            ws: self,
            f: Some(f),
        }
    }

    /// Waits until the transport has taken everything queued (replies made in
    /// [`recv_with`](Self::recv_with), messages sent through the `Sink`).
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_write_all(cx)).await
    }

    /// Gives `input` to the connection to lend from (see `poll_step`): a whole message
    /// found there goes to `lend`, and what that gave is returned with the bytes used;
    /// otherwise `lend` goes back into `lender` for the next message.
    fn lend_input<F, R>(
        &mut self,
        cx: &mut Context<'_>,
        now: std::time::Instant,
        input: &mut [u8],
        lend: F,
        lender: &mut Option<F>,
    ) -> (usize, Option<Result<R, Error>>)
    where
        F: FnOnce(MessageRef<'_>, &mut Outgoing<'_>) -> R,
    {
        let (used, message) = self.inner.conn.handle_input_in_place(now, input);
        match message {
            Some(message) => (used, Some(self.lend(cx, message, lend))),
            None => {
                *lender = Some(lend);
                (used, None)
            }
        }
    }

    /// Lends `message` to `f` with an [`Outgoing`] that encodes into this thread's
    /// write buffer when nothing waits in the outbox, then writes what `f` sent.
    fn lend<F, R>(
        &mut self,
        cx: &mut Context<'_>,
        message: MessageRef<'_>,
        f: F,
    ) -> Result<R, Error>
    where
        F: FnOnce(MessageRef<'_>, &mut Outgoing<'_>) -> R,
    {
        self.write_direct(cx, |conn, buf| f(message, &mut Outgoing { conn, buf }))
    }

    /// Sends a message, then waits until the transport has taken it (and whatever
    /// else is queued).
    ///
    /// The message is sent when `send` is called, not when the future is first
    /// polled: it is written at once as far as the transport takes it, the rest
    /// queued, and the future waits for that rest. So the future holds this
    /// `WebSocket` and nothing more (it is part of every connection task that sends),
    /// and a dropped future does not take the message back.
    pub fn send(
        &mut self,
        message: impl Into<Message>,
    ) -> impl Future<Output = Result<(), Error>> + '_ {
        // The task's waker comes with the first poll, which writes what this did not.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if let Some(aside) = self.inner.aside.as_mut() {
            aside.failed = None; // a dropped future's, never polled
        }
        if let Err(e) = self.send_now(&mut cx, message.into()) {
            self.aside().failed = Some(e);
        }
        SendMessage { ws: self }
    }

    /// Sends `message`, writing it at once when nothing waits before it (see
    /// [`write_direct`](Self::write_direct)); queued otherwise.
    pub(crate) fn send_now(&mut self, cx: &mut Context<'_>, message: Message) -> Result<(), Error> {
        self.write_direct(cx, |conn, buf| encode_or_queue(conn, buf, message))?
            .map_err(Error::from)
    }

    /// Runs `f` with the connection and, when nothing waits in the outbox, this
    /// thread's write buffer for [`Connection::encode_now`] to encode frames into;
    /// then writes what `f` put there in one write, copying into the outbox only what
    /// the transport does not take. No allocation in the common case, and several
    /// frames (a handler's replies) go out together. An I/O error ends the connection
    /// (its `Closed` event follows) and is returned.
    pub(crate) fn write_direct<R>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Connection, Option<&mut Vec<u8>>) -> R,
    ) -> Result<R, Error> {
        if !self.outbox_is_empty() {
            return Ok(f(&mut self.inner.conn, None));
        }
        super::with_write_buf(|buf| {
            let r = f(&mut self.inner.conn, Some(&mut *buf));
            if buf.is_empty() {
                return Ok(r);
            }
            match super::write_slice(&mut self.io, cx, buf, false) {
                Ok(written) => {
                    if written < buf.len() {
                        let rest = bytes::Bytes::copy_from_slice(&buf[written..]);
                        self.aside().outbox.push(rest);
                    }
                    self.report_written(written);
                }
                Err(e) => {
                    self.on_io_error();
                    return Err(Error::from(e));
                }
            }
            Ok(r)
        })
    }

    /// Sends a ping.
    pub async fn ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.inner.conn.ping(payload)?;
        poll_fn(|cx| self.poll_write_all(cx)).await
    }

    /// Starts the closing handshake and waits until the connection has ended (the
    /// peer's answer, or the close timeout). Messages that arrive meanwhile are
    /// dropped; use [`Connection::close`] through [`connection`](Self::connection) and
    /// keep calling `recv` to receive them instead.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        let now = self.inner.clock.now();
        self.inner.conn.close(now, code, reason)?;
        while let Some(item) = self.recv().await {
            if let Err(Error::Closed(_)) = item {
                break;
            }
        }
        poll_fn(|cx| self.poll_drain(cx)).await
    }

    /// Polls for the next message (the `Stream` implementation).
    pub fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        loop {
            match self.poll_event(cx) {
                Poll::Ready(Some(Ok(event))) => {
                    if let Some(item) = message_or_failure(event) {
                        return Poll::Ready(Some(item));
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Polls for the next event of any kind, doing whatever I/O and timer work is due.
    /// `None` once the connection has ended and the transport is shut down.
    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Event, Error>>> {
        let mut no_lender: Option<fn(MessageRef<'_>, &mut Outgoing<'_>)> = None;
        match self.poll_step(cx, &mut no_lender) {
            Poll::Ready(Some(Ok(Step::Event(event)))) => Poll::Ready(Some(Ok(event))),
            Poll::Ready(Some(Ok(Step::Lent(_)))) => {
                unreachable!("nothing is lent without a lender")
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The loop behind [`poll_event`](Self::poll_event) and
    /// [`recv_with`](Self::recv_with). With a `lender`, a data message that lies whole
    /// in a read is not copied: it is lent to the lender in place (in this thread's read
    /// buffer, see [`lend`](Self::lend)), and what that gives is the step's result. No event waits before
    /// such a message (the engine lends only then). The input after it is kept
    /// (`held`) and decoded, lending again, before the next read.
    #[inline]
    fn poll_step<F, R>(
        &mut self,
        cx: &mut Context<'_>,
        lender: &mut Option<F>,
    ) -> Poll<Option<Result<Step<R>, Error>>>
    where
        F: FnOnce(MessageRef<'_>, &mut Outgoing<'_>) -> R,
    {
        loop {
            if let Some(event) = self.inner.conn.poll_event() {
                if let Event::Closed(c) = &event {
                    self.aside().closed = Some(c.clone());
                }
                return Poll::Ready(Some(Ok(Step::Event(event))));
            }
            if self.inner.aside.as_ref().is_some_and(|a| a.finished) {
                return Poll::Ready(None);
            }
            if let Err(e) = self.write_some(cx) {
                self.on_io_error();
                return Poll::Ready(Some(Err(e.into())));
            }
            // Between the messages lent from one read, no flush: the last one's replies
            // are flushed before anything waits. (A flush of a stream that does not
            // buffer, TCP, does nothing.)
            let lending_held =
                lender.is_some() && self.inner.aside.as_ref().is_some_and(|a| a.held.is_some());
            if self.outbox_is_empty() && !lending_held {
                if let Poll::Ready(Err(e)) = self.io.poll_flush(cx) {
                    self.on_io_error();
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
            if self.inner.conn.should_close_transport() && self.outbox_is_empty() {
                match self.poll_shutdown(cx) {
                    Poll::Ready(()) => {
                        self.aside().finished = true;
                        continue;
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            match self.inner.conn.poll_timeout() {
                Some(deadline) => {
                    if self.inner.clock.poll_until(cx, deadline).is_ready() {
                        self.inner.conn.handle_timeout(self.inner.clock.now());
                        if self.inner.conn.write_timed_out() {
                            // The peer stopped reading: what it did not take is dropped.
                            self.clear_outbox();
                        }
                        continue;
                    }
                }
                None => self.inner.clock.disarm(),
            }
            // A lender's replies go out before the next message is read in (as with
            // `send(..).await` after `recv`); other reading pauses past the high-water
            // mark.
            let queued_limit = if lender.is_some() { 0 } else { HIGH_WATER };
            if let Some(aside) = self.inner.aside.as_deref_mut() {
                if aside.read_eof || aside.outbox.len() > queued_limit {
                    return Poll::Pending;
                }
            }
            if let Some(mut held) = self.inner.aside.as_mut().and_then(|a| a.held.take()) {
                let now = held.read_at;
                let Some(lend) = lender.take() else {
                    self.inner.conn.handle_input(now, &held.input[held.at..]);
                    held.recycle();
                    self.tidy();
                    continue;
                };
                let (used, lent) =
                    self.lend_input(cx, now, &mut held.input[held.at..], lend, lender);
                held.at += used;
                if held.at < held.input.len() {
                    self.aside().held = Some(held);
                } else {
                    held.recycle();
                    self.tidy();
                }
                if let Some(r) = lent {
                    return Poll::Ready(Some(Ok(Step::Lent(r))));
                }
                continue;
            }
            let mut lent = None;
            let read = super::with_read_buf(|buf| {
                let r = self.io.poll_read(cx, buf);
                match r {
                    Poll::Ready(Ok(0)) => {
                        self.aside().read_eof = true;
                        self.inner.conn.handle_eof(self.inner.clock.now());
                    }
                    Poll::Ready(Ok(n)) => {
                        let now = self.inner.clock.now();
                        match lender.take() {
                            None => self.inner.conn.handle_input(now, &buf[..n]),
                            Some(lend) => {
                                let (used, r) =
                                    self.lend_input(cx, now, &mut buf[..n], lend, lender);
                                lent = r;
                                if used < n {
                                    // One copy of the rest, not one per message.
                                    let held = Held::copy_of(&buf[used..n], now);
                                    self.aside().held = Some(held);
                                }
                            }
                        }
                    }
                    Poll::Ready(Err(_)) | Poll::Pending => {}
                }
                r
            });
            if let Some(r) = lent {
                return Poll::Ready(Some(Ok(Step::Lent(r))));
            }
            match read {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    self.on_io_error();
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Writes everything queued. Ready when the transport has taken all of it; an
    /// error `TimedOut` when it took nothing for [`ws::Config::write_timeout`].
    pub fn poll_write_all(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if let Err(e) = self.write_some(cx) {
            self.on_io_error();
            return Poll::Ready(Err(e.into()));
        }
        if !self.outbox_is_empty() {
            return self.poll_write_timeout(cx);
        }
        self.io.poll_flush(cx).map_err(Error::from)
    }

    /// Ready when fewer than the high-water mark of bytes are queued (the `Sink`
    /// `poll_ready`); an error `TimedOut` as for
    /// [`poll_write_all`](Self::poll_write_all).
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if let Err(e) = self.write_some(cx) {
            self.on_io_error();
            return Poll::Ready(Err(e.into()));
        }
        if self.queued_bytes() > HIGH_WATER {
            return self.poll_write_timeout(cx);
        }
        Poll::Ready(Ok(()))
    }

    /// Waiting for the transport to take bytes: pending until the write timeout (or
    /// another deadline of the connection) comes; `TimedOut` once the write timeout
    /// has dropped the connection.
    fn poll_write_timeout(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            if self.inner.conn.write_timed_out() {
                self.clear_outbox();
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::TimedOut).into()));
            }
            let Some(deadline) = self.inner.conn.poll_timeout() else {
                return Poll::Pending;
            };
            if self.inner.clock.poll_until(cx, deadline).is_pending() {
                return Poll::Pending;
            }
            self.inner.conn.handle_timeout(self.inner.clock.now());
        }
    }

    /// Drives the connection to its end, discarding events.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            match self.poll_event(cx) {
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Err(Error::Io(e)))) => return Poll::Ready(Err(e.into())),
                Poll::Ready(Some(_)) => {}
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.inner.aside.as_ref().is_some_and(|a| a.shut_down) {
            if self.io.poll_flush(cx).is_pending() {
                return Poll::Pending;
            }
            // An error here only means the peer is already gone.
            if self.io.poll_shutdown(cx).is_pending() {
                return Poll::Pending;
            }
            self.aside().shut_down = true;
        }
        Poll::Ready(())
    }

    /// Writes the connection's queued frames as far as the transport takes them now.
    fn write_some(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.write_queued(cx, false)
    }

    /// Writes the connection's queued frames (after what waits in the outbox) as far
    /// as the transport takes them now, keeping the rest in the outbox, and tells the
    /// connection what went out. One frame with nothing before it (the common case:
    /// a pong, a large message, a broadcast) is written from where it is. A
    /// `publisher`'s write is made outside the runtime's budget, and an error is left
    /// for the connection's task to meet on its next write.
    fn write_queued(&mut self, cx: &mut Context<'_>, publisher: bool) -> io::Result<()> {
        let write = |result: io::Result<usize>| match result {
            Err(_) if publisher => Ok(0),
            other => other,
        };
        let mut written = 0;
        if self.outbox_is_empty() {
            let Some(first) = self.inner.conn.poll_transmit() else {
                return Ok(());
            };
            match self.inner.conn.poll_transmit() {
                None => {
                    written = write(super::write_slice(&mut self.io, cx, &first, publisher))?;
                    if written == first.len() {
                        self.report_written(written);
                        return Ok(());
                    }
                    self.aside().outbox.push(first.slice(written..));
                    if written == 0 {
                        // It would block: the transport wakes this task (or, for a
                        // publisher, the caller does) when it can take more.
                        self.report_written(0);
                        return Ok(());
                    }
                    // The rest is written below: until the transport would block, so
                    // that it wakes this task when it can take more.
                }
                Some(second) => {
                    let outbox = &mut self.aside().outbox;
                    outbox.push(first);
                    outbox.push(second);
                }
            }
        }
        let aside = self.inner.aside.get_or_insert_with(Aside::new_boxed);
        while let Some(bytes) = self.inner.conn.poll_transmit() {
            aside.outbox.push(bytes);
        }
        written += write(if publisher {
            aside.outbox.write_now(&mut self.io, cx)
        } else {
            aside.outbox.write_to(&mut self.io, cx)
        })?;
        self.report_written(written);
        self.tidy();
        Ok(())
    }

    /// Tells the connection that `written` bytes went out, after a write from the
    /// outbox or straight from the thread's buffer.
    fn report_written(&mut self, written: usize) {
        if self.outbox_is_empty() {
            // The common case: no clock reading.
            self.inner.conn.handle_all_written();
        } else {
            // Arms (or moves) the write timeout while bytes wait.
            self.inner
                .conn
                .handle_written(self.inner.clock.now(), written);
        }
    }

    /// A broadcast frame from a publisher (see [`Transport::poll_write_now`]): queued
    /// and written at once if nothing waits before it and the connection is open;
    /// what the socket does not take waits for the connection's task.
    pub(crate) fn try_send_shared(
        &mut self,
        frame: &PreparedFrame,
        compressed: Option<&Precompressed>,
    ) -> Direct {
        if !self.outbox_is_empty()
            || self.inner.conn.buffered_amount() > 0
            || !self.inner.conn.is_open()
            || self.inner.conn.send_shared(frame, compressed).is_err()
        {
            return Direct::Refused;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // An error is the task's to meet, on its next write.
        let _ = self.write_queued(&mut cx, true);
        if !self.outbox_is_empty() {
            return Direct::Partial;
        }
        // A stream that buffers (TLS) may hold it until flushed: the task does that if
        // it cannot be done now.
        match self.io.poll_flush(&mut cx) {
            Poll::Ready(Ok(())) => Direct::Whole,
            Poll::Ready(Err(_)) | Poll::Pending => Direct::Partial,
        }
    }

    fn on_io_error(&mut self) {
        let aside = self.aside();
        aside.outbox.clear();
        aside.held = None;
        aside.read_eof = true;
        aside.shut_down = true;
        self.inner.conn.handle_eof(self.inner.clock.now());
    }
}

/// Encodes `message` into `buf` when there is one and the connection can
/// ([`Connection::encode_now`]); queues it otherwise.
pub(crate) fn encode_or_queue(
    conn: &mut Connection,
    buf: Option<&mut Vec<u8>>,
    message: Message,
) -> Result<(), SendError> {
    if let Some(buf) = buf {
        if conn.encode_now(&message, buf)? {
            return Ok(());
        }
    }
    conn.send(message)
}

/// The future of [`WebSocket::send`]: the message was sent (`Aside::failed` says if
/// that failed); everything queued is written. It holds the `WebSocket` alone, as it
/// is part of every task that sends.
struct SendMessage<'a, T, C> {
    ws: &'a mut WebSocket<T, C>,
}

impl<T: Transport, C: Clock> Future for SendMessage<'_, T, C> {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(e) = this.ws.inner.aside.as_mut().and_then(|a| a.failed.take()) {
            this.ws.tidy();
            return Poll::Ready(Err(e));
        }
        this.ws.poll_write_all(cx)
    }
}

/// What [`WebSocket::poll_step`] gives: an event, or what the lender returned (or the
/// error writing its replies).
enum Step<R> {
    Event(Event),
    Lent(Result<R, Error>),
}

/// What `recv` and `recv_with` make of an event: a message, an unclean end reported
/// as [`Error::Closed`], or nothing (the other events are driven, not reported).
fn message_or_failure(event: Event) -> Option<Result<Message, Error>> {
    match event {
        Event::Message(m) => Some(Ok(m)),
        Event::Closed(c) if !c.is_clean() => Some(Err(Error::Closed(Box::new(c)))),
        _ => None,
    }
}

/// The future of [`WebSocket::recv_with`].
#[must_use = "futures do nothing unless polled"]
pub struct RecvWith<'a, T, C, F> {
    ws: &'a mut WebSocket<T, C>,
    f: Option<F>,
}

impl<T, C, F> fmt::Debug for RecvWith<'_, T, C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvWith").finish_non_exhaustive()
    }
}

// `f` is never pinned: it is moved out to be called.
impl<T, C, F> Unpin for RecvWith<'_, T, C, F> {}

impl<T: Transport, C: Clock, F, R> Future for RecvWith<'_, T, C, F>
where
    F: FnOnce(MessageRef<'_>, &mut Outgoing<'_>) -> R,
{
    type Output = Option<Result<R, Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(this.f.is_some(), "`RecvWith` polled after it completed");
        loop {
            let step = this.ws.poll_step(cx, &mut this.f);
            let event = match step {
                Poll::Ready(Some(Ok(Step::Lent(r)))) => return Poll::Ready(Some(r)),
                Poll::Ready(Some(Ok(Step::Event(event)))) => event,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            };
            match message_or_failure(event) {
                Some(Ok(m)) => match this.f.take() {
                    Some(f) => return Poll::Ready(Some(this.ws.lend(cx, MessageRef::from(&m), f))),
                    None => unreachable!("only a lent message takes `f`, and it returns"),
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {}
            }
        }
    }
}

/// Where a [`WebSocket::recv_with`] callback sends its replies.
pub struct Outgoing<'a> {
    conn: &'a mut Connection,
    /// This thread's write buffer, when nothing waits in the outbox.
    buf: Option<&'a mut Vec<u8>>,
}

impl fmt::Debug for Outgoing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outgoing")
            .field("buffered_amount", &self.conn.buffered_amount())
            .finish()
    }
}

impl Outgoing<'_> {
    /// Sends a message: encoded straight into the coming write when it can be (see
    /// [`Connection::encode_borrowed_now`]), otherwise copied and queued.
    pub fn send<'m>(&mut self, message: impl Into<MessageRef<'m>>) -> Result<(), SendError> {
        let message = message.into();
        if let Some(buf) = self.buf.as_deref_mut() {
            if self.conn.encode_borrowed_now(message, buf)? {
                return Ok(());
            }
        }
        self.conn.send(message.to_message())
    }

    /// Sends an owned message without copying it: as [`send`](Self::send), but queued
    /// as it is when it cannot be encoded at once.
    pub fn send_message(&mut self, message: Message) -> Result<(), SendError> {
        encode_or_queue(self.conn, self.buf.as_deref_mut(), message)
    }

    /// The connection, for anything else (ping, close).
    pub fn connection(&mut self) -> &mut Connection {
        self.conn
    }
}

impl<T: Transport, C: Clock> futures_core::Stream for WebSocket<T, C> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_message(cx)
    }
}

impl<T: Transport, C: Clock, M: Into<Message>> futures_sink::Sink<M> for WebSocket<T, C> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: M) -> Result<(), Error> {
        Ok(self.get_mut().inner.conn.send(item.into())?)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_write_all(cx)
    }

    /// Sends a Close frame (1000) if none was sent yet, and writes it. Keep reading the
    /// stream to complete the closing handshake.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if this.inner.conn.is_open() {
            let now = this.inner.clock.now();
            this.inner.conn.close(now, CloseCode::NORMAL, "")?;
        }
        this.poll_write_all(cx)
    }
}

/// Accepts a WebSocket on a server-side transport: reads the upgrade request, answers
/// it (101, or the HTTP error for a bad request), and returns the open connection.
///
/// The future is one pointer: the handshake's state is boxed, so that a task that
/// accepts and then serves the connection holds it only while it runs, not for the
/// connection's whole life (nor the transport twice, as an `async fn`'s arguments
/// would be kept beside the box).
pub fn accept<R: Runtime, T: Transport>(
    rt: &R,
    io: T,
    config: Arc<ws::Config>,
) -> impl Future<Output = Result<WebSocket<T, R::Clock>, Error>> {
    let clock = rt.clock();
    Box::pin(async move {
        let span = tracing::debug_span!("ws", role = "server");
        let result = WebSocket::accept(io, clock, config)
            .instrument(span.clone())
            .await;
        log_handshake(&span, &result);
        result
    })
}

/// Connects to a `ws://` (or, with the `rustls` feature, `wss://`) URL over the
/// runtime's TCP and runs the handshake.
pub async fn connect<R: Runtime>(
    rt: &R,
    url: &str,
    config: Arc<ws::Config>,
) -> Result<WebSocket<ClientStream<R::Tcp>, R::Clock>, Error> {
    connect_with(rt, url, config, &Connector::default()).await
}

/// [`connect`], reaching the server as `connector` says (TLS roots, extra headers).
pub async fn connect_with<R: Runtime>(
    rt: &R,
    url: &str,
    config: Arc<ws::Config>,
    connector: &Connector,
) -> Result<WebSocket<ClientStream<R::Tcp>, R::Clock>, Error> {
    let url = crate::connector::parse_url(url, &[Scheme::Ws])?;
    let request = ws::ClientRequest {
        host: url.host.clone(),
        port: url.port,
        path: url.target.clone(),
        protocols: Vec::new(),
        headers: connector.headers().to_vec(),
    };
    let io = connector.open(rt, &url).await?;
    client(rt, io, &request, config).await
}

/// Runs the client handshake for `request` on an already connected transport, with
/// OS-seeded masking keys.
pub async fn client<R: Runtime, T: Transport>(
    rt: &R,
    io: T,
    request: &ws::ClientRequest,
    config: Arc<ws::Config>,
) -> Result<WebSocket<T, R::Clock>, Error> {
    let seed = crate::os_seed()?;
    let clock = rt.clock();
    // Boxed, as in `accept`.
    Box::pin(async move {
        let span = tracing::debug_span!(
            "ws",
            role = "client",
            host = %request.host,
            path = %request.path
        );
        let result = WebSocket::connect(io, clock, config, request, seed)
            .instrument(span.clone())
            .await;
        log_handshake(&span, &result);
        result
    })
    .await
}

fn log_handshake<T, C>(span: &tracing::Span, result: &Result<WebSocket<T, C>, Error>) {
    span.in_scope(|| match result {
        Ok(ws) => tracing::debug!(protocol = ws.protocol(), "websocket open"),
        Err(e) => tracing::debug!(error = %e, "websocket handshake failed"),
    })
}
