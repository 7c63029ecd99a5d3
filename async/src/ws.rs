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
    self, CloseCode, Closed, Connection, Event, Message, Opened, Precompressed, PreparedFrame,
    SendError,
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
    clock: C,
    /// Boxed, so that a `WebSocket` is small to move and to hold in a future (an
    /// `if let Ok(ws) = accept(..).await` keeps two of them in the task).
    conn: Box<Connection>,
    outbox: Outbox,
    read_eof: bool,
    shut_down: bool,
    /// Boxed: it is set once, at the end.
    closed: Option<Box<Closed>>,
    /// The handshake's details, when there is something to keep: a connection that
    /// negotiated nothing and keeps no request holds no allocation for them.
    opened: Option<Box<Opened>>,
    /// The opening handshake completed (`opened` may still be `None`).
    open_seen: bool,
    finished: bool,
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
            .field("role", &self.conn.role())
            .field("open", &self.conn.is_open())
            .field("outbox_bytes", &self.outbox.len())
            .finish()
    }
}

impl<T, C> WebSocket<T, C> {
    /// The completed opening handshake (request or response, subprotocol).
    pub fn handshake_info(&self) -> Option<&Opened> {
        match &self.opened {
            Some(opened) => Some(opened),
            None => self.open_seen.then_some(&NOTHING_KEPT),
        }
    }

    /// The selected subprotocol.
    pub fn protocol(&self) -> Option<&str> {
        self.opened.as_ref()?.protocol.as_deref()
    }

    /// How the connection ended, once it has.
    pub fn close_info(&self) -> Option<&Closed> {
        self.closed.as_deref()
    }

    /// The state machine, for what this API does not cover.
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Bytes queued and not yet taken by the transport.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.outbox.len() + self.conn.buffered_amount()
    }
}

impl<T: Transport, C: Clock> WebSocket<T, C> {
    /// The time on the connection's clock.
    pub(crate) fn now(&self) -> std::time::Instant {
        self.clock.now()
    }

    /// Wraps a connection in any state. Prefer [`accept`](Self::accept) and
    /// [`connect`](Self::connect), which also complete the handshake.
    pub fn from_connection(io: T, clock: C, conn: Connection) -> Self {
        Self {
            io,
            clock,
            conn: Box::new(conn),
            outbox: Outbox::default(),
            read_eof: false,
            shut_down: false,
            closed: None,
            opened: None,
            open_seen: false,
            finished: false,
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
            let now = ws.clock.now();
            ws.conn.handle_input(now, rest);
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
        self.open_seen = true;
        if *opened != NOTHING_KEPT {
            self.opened = Some(opened);
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

    /// Sends a message and writes it (and whatever else is queued) to the transport.
    ///
    /// Not an `async fn`: the future holds the message and this `WebSocket`, nothing
    /// more (it is part of every connection task that sends).
    pub fn send(
        &mut self,
        message: impl Into<Message>,
    ) -> impl Future<Output = Result<(), Error>> + '_ {
        SendMessage {
            ws: self,
            message: Some(message.into()),
        }
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
        if !self.outbox.is_empty() {
            return Ok(f(&mut self.conn, None));
        }
        super::with_write_buf(|buf| {
            let r = f(&mut self.conn, Some(&mut *buf));
            if buf.is_empty() {
                return Ok(r);
            }
            match self.outbox.write_or_keep(&mut self.io, cx, buf) {
                Ok(written) => self.report_written(written),
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
        self.conn.ping(payload)?;
        poll_fn(|cx| self.poll_write_all(cx)).await
    }

    /// Starts the closing handshake and waits until the connection has ended (the
    /// peer's answer, or the close timeout). Messages that arrive meanwhile are
    /// dropped; use [`Connection::close`] through [`connection`](Self::connection) and
    /// keep calling `recv` to receive them instead.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        let now = self.clock.now();
        self.conn.close(now, code, reason)?;
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
                Poll::Ready(Some(Ok(Event::Message(m)))) => return Poll::Ready(Some(Ok(m))),
                Poll::Ready(Some(Ok(Event::Closed(c)))) => {
                    if !c.is_clean() {
                        return Poll::Ready(Some(Err(Error::Closed(Box::new(c)))));
                    }
                }
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Polls for the next event of any kind, doing whatever I/O and timer work is due.
    /// `None` once the connection has ended and the transport is shut down.
    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Event, Error>>> {
        loop {
            if let Some(event) = self.conn.poll_event() {
                if let Event::Closed(c) = &event {
                    self.closed = Some(Box::new(c.clone()));
                }
                return Poll::Ready(Some(Ok(event)));
            }
            if self.finished {
                return Poll::Ready(None);
            }
            if let Err(e) = self.write_some(cx) {
                self.on_io_error();
                return Poll::Ready(Some(Err(e.into())));
            }
            if self.outbox.is_empty() {
                if let Poll::Ready(Err(e)) = self.outbox.poll_flush(&mut self.io, cx) {
                    self.on_io_error();
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
            if self.conn.should_close_transport() && self.outbox.is_empty() {
                match self.poll_shutdown(cx) {
                    Poll::Ready(()) => {
                        self.finished = true;
                        continue;
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            match self.conn.poll_timeout() {
                Some(deadline) => {
                    if self.clock.poll_until(cx, deadline).is_ready() {
                        self.conn.handle_timeout(self.clock.now());
                        if self.conn.write_timed_out() {
                            // The peer stopped reading: what it did not take is dropped.
                            self.outbox.clear();
                        }
                        continue;
                    }
                }
                None => self.clock.disarm(),
            }
            if self.read_eof || self.outbox.len() > HIGH_WATER {
                return Poll::Pending;
            }
            let read = super::with_read_buf(|buf| {
                let r = self.io.poll_read(cx, buf);
                match r {
                    Poll::Ready(Ok(0)) => {
                        self.read_eof = true;
                        self.conn.handle_eof(self.clock.now());
                    }
                    Poll::Ready(Ok(n)) => self.conn.handle_input(self.clock.now(), &buf[..n]),
                    Poll::Ready(Err(_)) | Poll::Pending => {}
                }
                r
            });
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
        if !self.outbox.is_empty() {
            return self.poll_write_timeout(cx);
        }
        self.outbox
            .poll_flush(&mut self.io, cx)
            .map_err(Error::from)
    }

    /// Ready when fewer than the high-water mark of bytes are queued (the `Sink`
    /// `poll_ready`); an error `TimedOut` as for
    /// [`poll_write_all`](Self::poll_write_all).
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if let Err(e) = self.write_some(cx) {
            self.on_io_error();
            return Poll::Ready(Err(e.into()));
        }
        if self.outbox.len() + self.conn.buffered_amount() > HIGH_WATER {
            return self.poll_write_timeout(cx);
        }
        Poll::Ready(Ok(()))
    }

    /// Waiting for the transport to take bytes: pending until the write timeout (or
    /// another deadline of the connection) comes; `TimedOut` once the write timeout
    /// has dropped the connection.
    fn poll_write_timeout(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            if self.conn.write_timed_out() {
                self.outbox.clear();
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::TimedOut).into()));
            }
            let Some(deadline) = self.conn.poll_timeout() else {
                return Poll::Pending;
            };
            if self.clock.poll_until(cx, deadline).is_pending() {
                return Poll::Pending;
            }
            self.conn.handle_timeout(self.clock.now());
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
        if !self.shut_down {
            if self.io.poll_flush(cx).is_pending() {
                return Poll::Pending;
            }
            // An error here only means the peer is already gone.
            if self.io.poll_shutdown(cx).is_pending() {
                return Poll::Pending;
            }
            self.shut_down = true;
        }
        Poll::Ready(())
    }

    /// Moves queued frames to the outbox and writes as much as the transport takes now.
    fn write_some(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.write_queued(|out, io| out.write_to(io, cx))
    }

    /// Moves queued frames to the outbox and writes them with `write`, then tells the
    /// connection what went out.
    fn write_queued(
        &mut self,
        write: impl FnOnce(&mut Outbox, &mut T) -> io::Result<usize>,
    ) -> io::Result<()> {
        while let Some(bytes) = self.conn.poll_transmit() {
            self.outbox.push(bytes);
        }
        if self.outbox.is_empty() {
            return Ok(());
        }
        let written = write(&mut self.outbox, &mut self.io)?;
        self.report_written(written);
        Ok(())
    }

    /// Tells the connection that `written` bytes went out, after a write from the
    /// outbox or straight from the thread's buffer.
    fn report_written(&mut self, written: usize) {
        if self.outbox.is_empty() {
            // The common case: no clock reading.
            self.conn.handle_all_written();
        } else {
            // Arms (or moves) the write timeout while bytes wait.
            self.conn.handle_written(self.clock.now(), written);
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
        if !self.outbox.is_empty()
            || self.conn.buffered_amount() > 0
            || !self.conn.is_open()
            || self.conn.send_shared(frame, compressed).is_err()
        {
            return Direct::Refused;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // An error is the task's to meet, on its next write.
        let _ = self.write_queued(|out, io| Ok(out.write_now(io, &mut cx).unwrap_or(0)));
        if !self.outbox.is_empty() {
            return Direct::Partial;
        }
        // A stream that buffers (TLS) may hold it until flushed: the task does that if
        // it cannot be done now.
        match self.outbox.poll_flush(&mut self.io, &mut cx) {
            Poll::Ready(Ok(())) => Direct::Whole,
            Poll::Ready(Err(_)) | Poll::Pending => Direct::Partial,
        }
    }

    fn on_io_error(&mut self) {
        self.outbox.clear();
        self.read_eof = true;
        self.shut_down = true;
        self.conn.handle_eof(self.clock.now());
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

/// The future of [`WebSocket::send`]: the message is sent on the first poll, then
/// everything queued is written.
struct SendMessage<'a, T, C> {
    ws: &'a mut WebSocket<T, C>,
    message: Option<Message>,
}

impl<T: Transport, C: Clock> Future for SendMessage<'_, T, C> {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(message) = this.message.take() {
            this.ws.send_now(cx, message)?;
        }
        this.ws.poll_write_all(cx)
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
        Ok(self.get_mut().conn.send(item.into())?)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_write_all(cx)
    }

    /// Sends a Close frame (1000) if none was sent yet, and writes it. Keep reading the
    /// stream to complete the closing handshake.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if this.conn.is_open() {
            let now = this.clock.now();
            this.conn.close(now, CloseCode::NORMAL, "")?;
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
