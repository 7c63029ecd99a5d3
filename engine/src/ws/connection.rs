//! The WebSocket connection state machine, both roles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::close::{CloseCode, MAX_REASON_LEN};
use super::deflate::{self, Codec, DeflateConfig, DeflateParams, Precompressed};
use super::error::{Error, HandshakeError, ProtocolError, SendError};
use super::frame::{FrameDecoder, FrameHeader, Item, OpCode};
use super::handshake::{self, ClientRequest, Request, Response};
use super::mask::apply_mask;
use super::message::{Message, MessageRef, Utf8Bytes};
use super::utf8::{self, Utf8Validator};
use crate::queue::Queue;
use crate::rand::Rng;

/// Limits and timeouts of a connection. Share one `Arc<Config>` between connections.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Largest message accepted, after reassembly (default 64 MiB). Larger: close 1009.
    pub max_message_size: usize,
    /// Largest single frame accepted (default 16 MiB). Larger: close 1009.
    pub max_frame_size: usize,
    /// Largest handshake head (default 8 KiB). Larger: HTTP 431 (server) or an error.
    pub max_head_size: usize,
    /// Time allowed for the opening handshake (default 10 s).
    pub handshake_timeout: Duration,
    /// Time allowed for the peer to answer our Close frame, and (client) for the server
    /// to close the TCP connection after the closing handshake (default 5 s).
    pub close_timeout: Duration,
    /// Keepalive pings, off by default.
    pub keepalive: Option<Keepalive>,
    /// How long bytes may wait to be written with none going out (default 20 s) before
    /// the connection is dropped ([`Error::WriteTimeout`]): a peer that stops reading
    /// cannot hold the connection and its queued bytes. It applies when the driver
    /// reports its writes ([`Connection::handle_written`]).
    pub write_timeout: Duration,
    /// Server: the subprotocols supported, in order of preference; the first one the
    /// client also offers is selected. Client: the subprotocols to offer.
    pub protocols: Vec<String>,
    /// How many unsent pongs are kept before the oldest is dropped (default 16): under
    /// a ping flood the latest pings win, and memory stays bounded.
    pub max_pending_pongs: usize,
    /// permessage-deflate: offered (client) or accepted (server) when set. Off by
    /// default; see [`DeflateConfig`] for the memory it costs.
    pub deflate: Option<DeflateConfig>,
    /// Server: the browser origins allowed to open a connection (default `None`: any).
    /// An upgrade whose `Origin` is not listed gets 403; one without `Origin` (not
    /// from a browser) is not checked.
    pub origins: Option<Vec<String>>,
    /// Server: keep the client's upgrade request (path, headers) in
    /// [`Opened::request`] for as long as the connection lives (default `false`: it is
    /// dropped once answered, and an idle connection holds a few hundred bytes less).
    /// Turn it on to read it from [`Event::Open`] or the async layer's
    /// `handshake_info()`.
    pub keep_request: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_message_size: 64 << 20,
            max_frame_size: 16 << 20,
            max_head_size: 8 << 10,
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            keepalive: None,
            write_timeout: Duration::from_secs(20),
            protocols: Vec::new(),
            max_pending_pongs: 16,
            deflate: None,
            origins: None,
            keep_request: false,
        }
    }
}

impl Config {
    /// Sets [`Config::origins`].
    pub fn origins<I: IntoIterator<Item = S>, S: Into<String>>(mut self, origins: I) -> Self {
        self.origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }

    /// Refuses a request whose `Origin` is not on [`Config::origins`].
    pub(crate) fn check_origin(
        &self,
        headers: &crate::http::Headers,
    ) -> Result<(), HandshakeError> {
        match (&self.origins, headers.get_str("origin")) {
            (Some(list), Some(origin)) if !list.iter().any(|o| o == origin) => {
                Err(HandshakeError::ForbiddenOrigin)
            }
            _ => Ok(()),
        }
    }

    /// Sets [`Config::keep_request`].
    pub fn keep_request(mut self, yes: bool) -> Self {
        self.keep_request = yes;
        self
    }

    /// Sets [`Config::max_message_size`].
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets [`Config::max_frame_size`].
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// Sets [`Config::max_head_size`].
    pub fn max_head_size(mut self, bytes: usize) -> Self {
        self.max_head_size = bytes;
        self
    }

    /// Sets [`Config::handshake_timeout`].
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets [`Config::close_timeout`].
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Sets [`Config::write_timeout`].
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Turns on keepalive: a ping after `interval` without input, and the connection
    /// is dropped if nothing arrives within `timeout` of that ping.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keepalive = Some(Keepalive { interval, timeout });
        self
    }

    /// Turns permessage-deflate on with `deflate` (see [`Config::deflate`]).
    pub fn deflate(mut self, deflate: DeflateConfig) -> Self {
        self.deflate = Some(deflate);
        self
    }

    /// Sets [`Config::protocols`].
    pub fn protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }
}

/// Keepalive settings: see [`Config::keepalive`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before a ping is sent.
    pub interval: Duration,
    /// Time allowed for any input to arrive after that ping.
    pub timeout: Duration,
}

/// Which end of the connection this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Accepts the handshake; sends unmasked frames, requires masked ones.
    Server,
    /// Starts the handshake; sends masked frames, requires unmasked ones.
    Client,
}

/// Which side did something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// This endpoint.
    Local,
    /// The peer.
    Remote,
}

/// The completed opening handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The selected subprotocol.
    pub protocol: Option<String>,
    /// (server) The client's upgrade request.
    pub request: Option<Request>,
    /// (client) The server's response.
    pub response: Option<Response>,
    /// The permessage-deflate parameters, if the extension was negotiated.
    pub deflate: Option<DeflateParams>,
}

/// How a connection ended. Emitted exactly once, as the last event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    /// The close code: the peer's (or 1005 if its Close frame had none) after a closing
    /// handshake; the one we sent when we failed the connection; 1006 when the
    /// connection was lost without a closing handshake.
    pub code: CloseCode,
    /// The close reason that goes with `code`.
    pub reason: String,
    /// Who started the close.
    pub initiator: Side,
    /// `None` after a clean closing handshake; otherwise what went wrong.
    pub error: Option<Error>,
}

impl Closed {
    /// Whether the closing handshake completed in both directions.
    pub fn is_clean(&self) -> bool {
        self.error.is_none()
    }
}

/// Something that happened on the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The opening handshake completed; messages may flow.
    Open(Box<Opened>),
    /// A complete data message arrived.
    Message(Message),
    /// A ping arrived (a pong is already queued).
    Ping(Bytes),
    /// A pong arrived.
    Pong(Bytes),
    /// The connection ended. No further events follow.
    Closed(Closed),
}

#[derive(Debug)]
enum State {
    /// Reading the upgrade request (its bytes so far are `Aside::head`).
    ServerHandshake,
    /// Reading the response (its bytes so far are `Aside::head`, the key sent is
    /// `Aside::key`).
    ClientHandshake,
    Open,
    /// We sent a Close frame and wait for the peer's.
    Closing,
    /// Ended: no input is processed; queued output may still be flushing.
    Done,
}

/// A whole data frame at the start of some input, checked and ready to take in one
/// step (`Connection::whole_frame`).
#[derive(Debug)]
struct WholeFrame {
    text: bool,
    mask: Option<[u8; 4]>,
    /// Where its payload lies in that input.
    payload: std::ops::Range<usize>,
}

/// Input held back after a complete message.
#[derive(Debug)]
struct Pending {
    input: BytesMut,
    /// When it arrived.
    since: Instant,
}

/// What a connection holds only now and then, boxed together (`Connection::aside`):
/// an open connection that is not in the middle of a control frame, has no pong or
/// held input waiting and negotiated no compression holds none of it, and the box is
/// freed (see `Connection::tidy`). The handshake's buffers, a client's masking keys'
/// source and a compressor live here too, for as long as they are needed.
#[derive(Debug, Default)]
struct Aside {
    /// The opening handshake's bytes read so far (the request, or the response).
    head: Vec<u8>,
    /// A client's `Sec-WebSocket-Key`, until the response is checked.
    key: Box<str>,
    /// The payload of the control frame being read (at most 125 bytes; handed out as
    /// the Ping/Pong payload or dropped when the frame ends).
    control: Vec<u8>,
    /// Pongs waiting to go out, before other output.
    pongs: Queue<Bytes>,
    /// Input read past the end of a complete message, decoded once that message's
    /// event has been taken (see `poll_event`). Never empty.
    pending: Option<Pending>,
    /// A server's `101` response while it is still the first thing in `out`: it goes
    /// out before anything else, or a host that writes it itself takes it.
    handshake: Option<crate::http::Response>,
    /// A client's source of masking keys.
    rng: Option<Rng>,
    /// permessage-deflate, when negotiated.
    deflate: Option<Box<Codec>>,
    /// The deadline of the current phase, which the state says: the opening handshake
    /// (handshake states), the peer's Close frame (`Closing`), or (client, `Done`) the
    /// server's TCP close after the closing handshake. One slot, as the phases never
    /// overlap; none while open.
    phase: Option<Instant>,
}

impl Aside {
    /// Whether nothing is held: the box can go.
    fn is_idle(&self) -> bool {
        self.head.capacity() == 0
            && self.key.is_empty()
            && self.control.capacity() == 0
            && self.pongs.is_empty()
            && self.pending.is_none()
            && self.handshake.is_none()
            && self.rng.is_none()
            && self.deflate.is_none()
            && self.phase.is_none()
    }
}

/// The data frame being read.
#[derive(Debug)]
enum Frame {
    Data {
        fin: bool,
        mask: Option<[u8; 4]>,
    },
    /// Its payload so far is `Connection::control`.
    Control {
        opcode: OpCode,
        mask: Option<[u8; 4]>,
    },
}

/// The data message being reassembled.
#[derive(Debug)]
struct Incoming {
    text: bool,
    compressed: bool,
    buf: BytesMut,
    utf8: Utf8Validator,
}

#[derive(Debug, Default)]
struct Timers {
    /// Keepalive: when to send a ping or, once one is out (`Connection::awaiting_pong`),
    /// when its answer is overdue.
    keepalive: Option<Instant>,
    write: Option<Instant>,
}

impl Timers {
    /// The earlier of the keepalive and write deadlines (the phase's is aside).
    fn earliest(&self) -> Option<Instant> {
        [self.keepalive, self.write].into_iter().flatten().min()
    }
}

/// Payloads at most this long are copied behind their header into one buffer; longer
/// ones (when given as `Bytes`) go out as a separate buffer without copying.
const COALESCE_LIMIT: usize = 4096;
/// Upper bound of what is reserved up front for an announced frame payload: the rest
/// grows as bytes actually arrive, so a peer cannot make us reserve memory it never
/// sends.
const MAX_RESERVE: usize = 1 << 20;

/// One WebSocket connection, client or server, from the opening handshake to the end.
///
/// # Driving it
/// Inputs: [`handle_input`](Self::handle_input) (bytes read from the transport, split
/// anywhere), [`handle_eof`](Self::handle_eof), [`handle_timeout`](Self::handle_timeout)
/// and the sending methods. After **every** input, drain the outputs in this order:
/// 1. [`poll_transmit`](Self::poll_transmit) until `None`, writing the bytes in order;
/// 2. [`poll_event`](Self::poll_event) until `None`;
/// 3. [`poll_timeout`](Self::poll_timeout): arm one timer for it (replacing the last);
/// 4. [`should_close_transport`](Self::should_close_transport): when true (and all
///    bytes are written), shut the transport down.
///
/// The connection never reads a clock: every method that depends on time takes `now`.
///
/// # Faults
/// A protocol violation by the peer queues a Close frame with the code that
/// [`ProtocolError::close_code`] gives and ends the connection with a
/// [`Event::Closed`] whose `error` says what happened. It never panics on input, and
/// once ended it ignores further input. Misuse by the caller returns [`SendError`].
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Arc<Config>,
    state: State,
    decoder: FrameDecoder,
    frame: Option<Frame>,
    /// Out of line: only a message that is fragmented, compressed or split across
    /// reads is reassembled here (a whole frame in one read is taken at once).
    message: Option<Box<Incoming>>,
    out: Queue<Bytes>,
    out_bytes: usize,
    /// Bytes handed out by `poll_transmit` and not yet reported written (saturating:
    /// it only has to tell none from some).
    unwritten: u32,
    /// The write timeout fired: what is unwritten will never be.
    write_timed_out: bool,
    events: Queue<Event>,
    timers: Timers,
    /// A keepalive ping is out and `timers.keepalive` is its answer's deadline.
    awaiting_pong: bool,
    close_transport: bool,
    /// What is held only now and then (handshake, control frames, pongs, held input,
    /// compression): `None` on an open, idle connection.
    aside: Option<Box<Aside>>,
}

impl Connection {
    /// A server connection waiting for the client's upgrade request.
    pub fn server(config: Arc<Config>, now: Instant) -> Self {
        let handshake = now + config.handshake_timeout;
        let mut conn = Self::new(Role::Server, config, State::ServerHandshake, None);
        conn.set_phase(Some(handshake));
        conn
    }

    /// A client connection; the upgrade request is queued for sending at once.
    ///
    /// `seed` seeds the random source of the handshake key and the masking keys: give
    /// fresh OS randomness in production, a fixed value in tests.
    pub fn client(
        config: Arc<Config>,
        request: &ClientRequest,
        now: Instant,
        seed: [u8; 32],
    ) -> Self {
        let mut rng = Rng::from_seed(seed);
        let mut raw_key = [0u8; 16];
        rng.fill(&mut raw_key);
        let key = BASE64.encode(raw_key);
        let mut request = request.clone();
        if request.protocols.is_empty() {
            request.protocols.clone_from(&config.protocols);
        }
        let offer = config.deflate.as_ref().map(deflate::offer);
        let head = request.encode(&key, offer.as_deref());
        let handshake = now + config.handshake_timeout;
        let mut conn = Self::new(
            Role::Client,
            config,
            State::ClientHandshake,
            Some(Box::new(Aside {
                key: key.into(),
                rng: Some(rng),
                ..Aside::default()
            })),
        );
        conn.push_out(Bytes::from(head));
        conn.set_phase(Some(handshake));
        conn
    }

    /// A server connection for an upgrade request that was already read and validated
    /// elsewhere (by an HTTP router, see [`handshake::validate`]): it negotiates the
    /// subprotocol and extensions, queues the `101` response as its first transmit, and
    /// starts open. The `Open` event follows.
    pub fn accept(config: Arc<Config>, request: Request, now: Instant) -> Self {
        let mut conn = Self::new(Role::Server, config, State::Open, None);
        conn.complete_server_handshake(request, now);
        conn
    }

    /// A server connection whose opening handshake was done elsewhere: it starts open.
    /// For benchmarks and tests; servers use [`accept`](Self::accept).
    #[doc(hidden)]
    pub fn accepted(config: Arc<Config>, now: Instant) -> Self {
        let mut conn = Self::new(Role::Server, config, State::Open, None);
        conn.on_open(now);
        conn
    }

    fn new(role: Role, config: Arc<Config>, state: State, aside: Option<Box<Aside>>) -> Self {
        Self {
            role,
            config,
            state,
            decoder: FrameDecoder::new(),
            frame: None,
            message: None,
            out: Queue::new(),
            out_bytes: 0,
            unwritten: 0,
            write_timed_out: false,
            events: Queue::new(),
            timers: Timers::default(),
            awaiting_pong: false,
            close_transport: false,
            aside,
        }
    }

    /// The parts held now and then, made when first needed.
    fn aside(&mut self) -> &mut Aside {
        self.aside.get_or_insert_with(Box::default)
    }

    /// Frees the parts held now and then once none is in use: called where one may
    /// have been given up.
    fn tidy(&mut self) {
        if self.aside.as_ref().is_some_and(|a| a.is_idle()) {
            self.aside = None;
        }
    }

    /// The deadline of the current phase (see `Aside::phase`).
    fn phase(&self) -> Option<Instant> {
        self.aside.as_ref()?.phase
    }

    /// Sets (or clears) the deadline of the current phase.
    fn set_phase(&mut self, deadline: Option<Instant>) {
        match deadline {
            Some(_) => self.aside().phase = deadline,
            None => {
                if let Some(aside) = self.aside.as_mut() {
                    aside.phase = None;
                }
            }
        }
    }

    /// The pongs waiting to go out, if any.
    fn pongs(&self) -> Option<&Queue<Bytes>> {
        self.aside
            .as_ref()
            .map(|a| &a.pongs)
            .filter(|p| !p.is_empty())
    }

    /// Input held back after a complete message, if any.
    fn pending(&self) -> Option<&Pending> {
        self.aside.as_ref()?.pending.as_ref()
    }

    /// The negotiated compression, if any.
    fn codec(&self) -> Option<&Codec> {
        self.aside.as_ref()?.deflate.as_deref()
    }

    /// Whether a server's `101` is still first in `out`.
    fn response_waits(&self) -> bool {
        self.aside.as_ref().is_some_and(|a| a.handshake.is_some())
    }

    /// This connection's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Whether messages can be sent (handshake done, no Close frame sent).
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open)
    }

    /// Whether the opening handshake is still running (neither done nor failed).
    pub fn is_handshaking(&self) -> bool {
        matches!(self.state, State::ServerHandshake | State::ClientHandshake)
    }

    /// Whether the connection has ended (its `Closed` event is queued or delivered).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Bytes queued for the transport and not yet taken by `poll_transmit`.
    pub fn buffered_amount(&self) -> usize {
        self.out_bytes
            + self
                .pongs()
                .map_or(0, |p| p.iter().map(Bytes::len).sum::<usize>())
    }

    // ----------------------------------------------------------------------------------
    // Inputs
    // ----------------------------------------------------------------------------------

    /// Bytes read from the transport. They may be split anywhere.
    pub fn handle_input(&mut self, now: Instant, input: &[u8]) {
        match self.state {
            State::Done => {}
            State::ServerHandshake | State::ClientHandshake => {
                let aside = self.aside();
                aside.head.extend_from_slice(input);
                let buf = std::mem::take(&mut aside.head);
                if matches!(self.state, State::ServerHandshake) {
                    self.server_handshake(now, buf);
                } else {
                    self.client_handshake(now, buf);
                }
            }
            State::Open | State::Closing => self.read_frames(now, input),
        }
        self.tidy();
    }

    /// Bytes read from the transport, in a buffer the caller lends: as
    /// [`handle_input`](Self::handle_input), except that a data message that lies whole
    /// in `input` (one final, uncompressed frame, with no event waiting before it) is
    /// not copied out: it is unmasked and checked in place and returned, and decoding
    /// stops after it. Returns how many bytes were used, and that message, which ends
    /// where they do. Input that follows a complete message is not held back here, as
    /// `handle_input` holds it, but left to the caller: hand out the message (or take
    /// the events, [`poll_event`](Self::poll_event)), then give what is left
    /// (`input[used..]`) to this again.
    ///
    /// This is how a driver receives without an allocation per message. Text that is
    /// not UTF-8 ends the connection here as it would there.
    pub fn handle_input_in_place<'a>(
        &mut self,
        now: Instant,
        input: &'a mut [u8],
    ) -> (usize, Option<MessageRef<'a>>) {
        if !matches!(self.state, State::Open | State::Closing) || self.pending().is_some() {
            self.handle_input(now, input);
            return (input.len(), None);
        }
        self.note_input(now, input);
        let (at, frame) = self.decode_frames(now, input, true);
        self.tidy(); // after a control frame
        let Some(frame) = frame else {
            return (at, None);
        };
        let (len, end) = (input.len(), at + frame.payload.end);
        let payload = &mut input[at + frame.payload.start..end];
        if let Some(key) = frame.mask {
            apply_mask(payload, key, 0);
        }
        let message = if frame.text {
            match utf8::validate_str(payload) {
                Ok(text) => MessageRef::Text(text),
                Err(_) => {
                    self.fail(ProtocolError::InvalidUtf8);
                    return (len, None);
                }
            }
        } else {
            MessageRef::Binary(payload)
        };
        (end, Some(message))
    }

    /// The peer closed its side of the transport (read returned 0).
    pub fn handle_eof(&mut self, _now: Instant) {
        match self.state {
            State::Done => {
                // Waiting for the server's TCP close after a clean close: it came.
                self.timers = Timers::default();
                self.set_phase(None);
                self.close_transport = true;
            }
            _ => self.lose(Error::UnexpectedEof, Side::Remote),
        }
    }

    /// A deadline from [`poll_timeout`](Self::poll_timeout) passed. Spurious or early
    /// calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if due(self.phase()) {
            self.set_phase(None);
            match self.state {
                State::ServerHandshake | State::ClientHandshake => {
                    self.lose(Error::HandshakeTimeout, Side::Local);
                }
                State::Closing => self.lose(Error::CloseTimeout, Side::Local),
                // The client's wait for the server's TCP close is over.
                State::Done => self.close_transport = true,
                State::Open => {}
            }
        }
        if self.awaiting_pong && due(self.timers.keepalive) {
            self.timers.keepalive = None;
            self.lose(Error::KeepaliveTimeout, Side::Local);
        }
        if due(self.timers.write) {
            self.timers.write = None;
            self.write_timed_out = true;
            self.lose(Error::WriteTimeout, Side::Local);
            // Already ended (a close frame the peer never read): nothing more goes out.
            self.drop_output();
            self.close_transport = true;
        }
        if !self.awaiting_pong && due(self.timers.keepalive) {
            self.timers.keepalive = None;
            if let (State::Open, Some(keepalive)) = (&self.state, self.config.keepalive) {
                self.queue_frame(OpCode::Ping, 0, &[]);
                self.timers.keepalive = Some(now + keepalive.timeout);
                self.awaiting_pong = true;
            }
        }
        self.tidy();
    }

    // ----------------------------------------------------------------------------------
    // Outputs
    // ----------------------------------------------------------------------------------

    /// The next bytes to write to the transport, in order.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        let pong = match self.aside.as_mut().and_then(|a| a.handshake.take()) {
            Some(_) => {
                self.tidy();
                None // the response goes before any pong
            }
            None => self.pop_pong(),
        };
        let bytes = match pong {
            Some(pong) => pong,
            None => {
                let bytes = self.out.pop_front()?;
                self.out_bytes -= bytes.len();
                bytes
            }
        };
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.unwritten = self.unwritten.saturating_add(len);
        Some(bytes)
    }

    /// Takes a server's `101 Switching Protocols` response out of the output, for a
    /// host whose HTTP server writes it (hyper, which then hands over the upgraded
    /// stream): the connection then sends frames only. `None` once output was taken,
    /// and for connections that did not accept a handshake.
    pub fn take_handshake_response(&mut self) -> Option<crate::http::Response> {
        let response = self.aside.as_mut()?.handshake.take()?;
        self.tidy();
        if let Some(bytes) = self.out.pop_front() {
            self.out_bytes -= bytes.len();
        }
        Some(response)
    }

    /// After each attempt to write what [`poll_transmit`](Self::poll_transmit) gave:
    /// `bytes` of it went out. While bytes wait with none going out, the connection is
    /// dropped after [`Config::write_timeout`]; a driver that never calls this has no
    /// write timeout.
    pub fn handle_written(&mut self, now: Instant, bytes: usize) {
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        self.unwritten = self.unwritten.saturating_sub(bytes);
        if self.unwritten == 0 || self.write_timed_out {
            self.timers.write = None;
        } else if bytes > 0 || self.timers.write.is_none() {
            self.timers.write = Some(now + self.config.write_timeout);
        }
    }

    /// After a write that left nothing unwritten of what
    /// [`poll_transmit`](Self::poll_transmit) gave: the same as `handle_written` with
    /// all of it, without a clock reading (no timer is armed when nothing waits).
    pub fn handle_all_written(&mut self) {
        self.unwritten = 0;
        self.timers.write = None;
    }

    /// The write timeout fired: drop what is still unwritten and shut the transport
    /// (the connection has ended, with [`Error::WriteTimeout`] if it had not already).
    #[must_use]
    pub fn write_timed_out(&self) -> bool {
        self.write_timed_out
    }

    /// The next event.
    ///
    /// Input is decoded one message at a time: bytes that follow a complete message in
    /// the same read are decoded only when this method runs out of events. So the
    /// caller can answer a message (e.g. echo it) before a protocol violation that
    /// follows it closes the connection, and a burst of input does not turn into a
    /// burst of events. Drain `poll_transmit` again after handling an event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.events.is_empty() {
            if let Some(now) = self.pending().map(|p| p.since) {
                self.resume(now);
                self.tidy();
            }
        }
        self.events.pop_front()
    }

    /// The earliest deadline at which [`handle_timeout`](Self::handle_timeout) must be
    /// called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.phase(), self.timers.earliest()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the transport should now be shut down: the connection has ended and
    /// everything queued has been taken by `poll_transmit`.
    #[must_use]
    pub fn should_close_transport(&self) -> bool {
        self.close_transport && self.out.is_empty() && self.pongs().is_none()
    }

    // ----------------------------------------------------------------------------------
    // Sending
    // ----------------------------------------------------------------------------------

    /// Queues a message. With permessage-deflate negotiated, it is compressed when it
    /// is at least [`DeflateConfig::threshold`] bytes long.
    pub fn send(&mut self, message: Message) -> Result<(), SendError> {
        self.send_with(message, None)
    }

    /// Queues a message, choosing compression: `Some(true)` compresses whatever its
    /// size (if permessage-deflate was negotiated), `Some(false)` never, `None` by the
    /// threshold.
    pub fn send_with(&mut self, message: Message, compress: Option<bool>) -> Result<(), SendError> {
        self.check_open()?;
        let (opcode, payload) = match message {
            Message::Text(text) => (OpCode::Text, text.into_bytes()),
            Message::Binary(data) => (OpCode::Binary, data),
        };
        if self.compresses(compress, payload.len()) {
            let codec = self.aside.as_mut().and_then(|a| a.deflate.as_mut());
            if let Some(z) = codec.and_then(|c| c.compress(&payload)) {
                self.queue_data_frame(opcode, 0b100, Bytes::from(z));
                return Ok(());
            }
        }
        self.queue_data_frame(opcode, 0, payload);
        Ok(())
    }

    /// Whether a message of `len` bytes is sent compressed: permessage-deflate was
    /// negotiated and `compress` says so (`None`: by the threshold).
    fn compresses(&self, compress: Option<bool>, len: usize) -> bool {
        self.codec()
            .is_some_and(|codec| compress.unwrap_or_else(|| codec.wants(len)))
    }

    /// Encodes `message` as one frame appended to `out` instead of queueing it, for a
    /// driver about to write: no allocation. It does so when the connection is open,
    /// nothing is queued ahead of the message, the message is at most 4 KiB, and
    /// permessage-deflate (if negotiated) would not compress it by the threshold;
    /// otherwise it returns `Ok(false)` and leaves `out` alone: [`send`](Self::send)
    /// the message instead. The frame counts as handed out by
    /// [`poll_transmit`](Self::poll_transmit): report it written the same way, and
    /// write what the transport does not take of it before anything `poll_transmit`
    /// gives next.
    pub fn encode_now<'m>(
        &mut self,
        message: impl Into<MessageRef<'m>>,
        out: &mut Vec<u8>,
    ) -> Result<bool, SendError> {
        let message = message.into();
        self.encode_joined_now(message.is_text(), &[], message.as_bytes(), None, out)
    }

    /// [`encode_now`](Self::encode_now) whatever the message's size: for a message
    /// that would be copied anyway, being borrowed (a [`MessageRef`] lent in place, or
    /// the caller's own slice), to be queued. (`encode_now` leaves a larger owned
    /// message to [`send`](Self::send), which writes its payload without a copy.)
    pub fn encode_borrowed_now(
        &mut self,
        message: MessageRef<'_>,
        out: &mut Vec<u8>,
    ) -> Result<bool, SendError> {
        self.encode_frame_now(
            message.is_text(),
            &[],
            message.as_bytes(),
            None,
            usize::MAX,
            out,
        )
    }

    /// [`encode_now`](Self::encode_now) for the message `head` then `body` (text when
    /// `text`), compression chosen as [`send_with`](Self::send_with) does: declines
    /// (`Ok(false)`) where the message would be compressed.
    pub(crate) fn encode_joined_now(
        &mut self,
        text: bool,
        head: &[u8],
        body: &[u8],
        compress: Option<bool>,
        out: &mut Vec<u8>,
    ) -> Result<bool, SendError> {
        self.encode_frame_now(text, head, body, compress, COALESCE_LIMIT, out)
    }

    /// [`encode_joined_now`](Self::encode_joined_now) for messages of at most `limit`
    /// bytes.
    fn encode_frame_now(
        &mut self,
        text: bool,
        head: &[u8],
        body: &[u8],
        compress: Option<bool>,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<bool, SendError> {
        self.check_open()?;
        let len = head.len() + body.len();
        if len > limit
            || !self.out.is_empty()
            || self.pongs().is_some()
            || self.response_waits()
            || self.compresses(compress, len)
        {
            return Ok(false);
        }
        let opcode = if text { OpCode::Text } else { OpCode::Binary };
        let start = out.len();
        self.encode_into(opcode, 0, head, body, out);
        let len = u32::try_from(out.len() - start).unwrap_or(u32::MAX);
        self.unwritten = self.unwritten.saturating_add(len);
        Ok(true)
    }

    /// Sends one message made of `head` then `body` (text when `text`, and then both
    /// parts are UTF-8) without joining them first when it would be copied into its
    /// frame anyway (uncompressed and small): Engine.IO's packet type before its data.
    pub(crate) fn send_joined(
        &mut self,
        text: bool,
        head: &[u8],
        body: &[u8],
        compress: Option<bool>,
    ) -> Result<(), SendError> {
        self.check_open()?;
        let len = head.len() + body.len();
        let deflate = self.compresses(compress, len);
        let opcode = if text { OpCode::Text } else { OpCode::Binary };
        if !deflate && (self.role == Role::Client || len <= COALESCE_LIMIT) {
            let frame = self.encode_frame(opcode, 0, head, body);
            self.push_out(frame);
            return Ok(());
        }
        let mut joined = BytesMut::with_capacity(len);
        joined.put_slice(head);
        joined.put_slice(body);
        let joined = joined.freeze();
        let message = if text {
            Message::Text(Utf8Bytes::from_validated(joined))
        } else {
            Message::Binary(joined)
        };
        self.send_with(message, compress)
    }

    /// Queues a message compressed once for many connections: its compressed form when
    /// this connection can take it, its plain form otherwise (see [`Precompressed`]).
    pub fn send_precompressed(&mut self, message: &Precompressed) -> Result<(), SendError> {
        self.check_open()?;
        let opcode = match message.message {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
        };
        match (self.codec(), &message.deflated) {
            (Some(codec), Some(z)) if codec.accepts(message) => {
                self.queue_data_frame(opcode, 0b100, z.clone());
                Ok(())
            }
            _ => self.send_with(message.message.clone(), Some(false)),
        }
    }

    /// Queues a message encoded once for many connections (see [`PreparedFrame`]): a
    /// server sends the shared frame bytes as they are; a client, which must mask,
    /// encodes the message itself. Never compressed.
    pub fn send_prepared(&mut self, frame: &PreparedFrame) -> Result<(), SendError> {
        self.check_open()?;
        if self.role == Role::Client {
            return self.send_with(frame.message.clone(), Some(false));
        }
        self.push_out(frame.frame.clone());
        Ok(())
    }

    /// Queues a broadcast message encoded once for many connections: `compressed`'s
    /// deflated form when there is one and this connection can take it (see
    /// [`Precompressed`]), the shared frame otherwise.
    pub fn send_shared(
        &mut self,
        frame: &PreparedFrame,
        compressed: Option<&Precompressed>,
    ) -> Result<(), SendError> {
        match (self.codec(), compressed) {
            (Some(codec), Some(p)) if codec.accepts(p) => self.send_precompressed(p),
            _ => self.send_prepared(frame),
        }
    }

    /// The negotiated permessage-deflate parameters.
    pub fn deflate_params(&self) -> Option<DeflateParams> {
        self.codec().map(|c| c.params)
    }

    /// Queues a ping with up to 125 bytes of payload.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.check_open()?;
        if payload.len() > 125 {
            return Err(SendError::ControlPayloadTooLong);
        }
        self.queue_frame(OpCode::Ping, 0, payload);
        Ok(())
    }

    /// Starts the closing handshake: queues a Close frame with `code` and `reason`
    /// (at most 123 bytes). The connection ends when the peer answers, or after
    /// [`Config::close_timeout`].
    pub fn close(&mut self, now: Instant, code: CloseCode, reason: &str) -> Result<(), SendError> {
        match self.state {
            State::Open => {}
            State::ServerHandshake | State::ClientHandshake => return Err(SendError::NotOpen),
            State::Closing | State::Done => return Err(SendError::Closed),
        }
        if !code.is_valid_on_wire() {
            return Err(SendError::InvalidCloseCode);
        }
        if reason.len() > MAX_REASON_LEN {
            return Err(SendError::ControlPayloadTooLong);
        }
        self.queue_close(code, reason);
        self.state = State::Closing;
        self.set_phase(Some(now + self.config.close_timeout));
        self.timers.keepalive = None;
        Ok(())
    }

    fn check_open(&self) -> Result<(), SendError> {
        match self.state {
            State::Open => Ok(()),
            State::ServerHandshake | State::ClientHandshake => Err(SendError::NotOpen),
            State::Closing | State::Done => Err(SendError::Closed),
        }
    }

    // ----------------------------------------------------------------------------------
    // Handshake
    // ----------------------------------------------------------------------------------

    fn server_handshake(&mut self, now: Instant, mut buf: Vec<u8>) {
        match handshake::parse_request(&buf, self.config.max_head_size) {
            Ok(None) => self.aside().head = buf,
            Ok(Some((request, used))) => {
                if let Err(err) = self.config.check_origin(request.headers()) {
                    return self.refuse_handshake(err);
                }
                self.complete_server_handshake(request, now);
                let rest = buf.split_off(used);
                drop(buf);
                if !rest.is_empty() {
                    self.read_frames(now, &rest);
                }
            }
            Err(err) => self.refuse_handshake(err),
        }
    }

    /// Answers a refused upgrade with its HTTP error and ends.
    fn refuse_handshake(&mut self, err: HandshakeError) {
        self.push_out(Bytes::from(handshake::rejection(&err)));
        self.end(Closed {
            code: CloseCode::ABNORMAL,
            reason: String::new(),
            initiator: Side::Local,
            error: Some(Error::Handshake(err)),
        });
    }

    /// Selects the subprotocol and extensions, queues the `101`, and opens.
    fn complete_server_handshake(&mut self, request: Request, now: Instant) {
        let protocol = self
            .config
            .protocols
            .iter()
            .find(|p| request.protocols().any(|offered| offered == p.as_str()))
            .cloned();
        let params = self.config.deflate.as_ref().and_then(|cfg| {
            let offers = request.extensions()?;
            let params = deflate::negotiate(&offers, cfg)?;
            let codec = Box::new(Codec::new(Role::Server, params, cfg));
            self.aside.get_or_insert_with(Box::default).deflate = Some(codec);
            Some(params)
        });
        let extensions = params.map(|p| p.to_string());
        let response = request.response_head(protocol.as_deref(), extensions.as_deref());
        self.push_out(response.encode_head(false));
        self.aside().handshake = Some(response);
        self.state = State::Open;
        self.on_open(now);
        let request = self.config.keep_request.then_some(request);
        self.events.push_back(Event::Open(Box::new(Opened {
            protocol,
            request,
            response: None,
            deflate: params,
        })));
    }

    fn client_handshake(&mut self, now: Instant, mut buf: Vec<u8>) {
        let Some(aside) = self.aside.as_mut() else {
            return;
        };
        match handshake::parse_response(
            &buf,
            &aside.key,
            &self.config.protocols,
            self.config.max_head_size,
        ) {
            Ok(None) => aside.head = buf,
            Ok(Some((response, used))) => {
                let params = match &self.config.deflate {
                    Some(cfg) => deflate::accept_response(&response.extensions, cfg),
                    None if response.extensions.is_empty() => Ok(None),
                    None => Err(HandshakeError::UnexpectedExtension),
                };
                let params = match params {
                    Ok(p) => p,
                    Err(err) => return self.lose(Error::Handshake(err), Side::Remote),
                };
                aside.key = Box::default();
                if let (Some(p), Some(cfg)) = (params, &self.config.deflate) {
                    aside.deflate = Some(Box::new(Codec::new(Role::Client, p, cfg)));
                }
                self.state = State::Open;
                self.on_open(now);
                self.events.push_back(Event::Open(Box::new(Opened {
                    protocol: response.protocol.clone(),
                    request: None,
                    response: Some(response),
                    deflate: params,
                })));
                let rest = buf.split_off(used);
                drop(buf);
                if !rest.is_empty() {
                    self.read_frames(now, &rest);
                }
            }
            Err(err) => self.lose(Error::Handshake(err), Side::Remote),
        }
    }

    fn on_open(&mut self, now: Instant) {
        self.set_phase(None);
        if let Some(keepalive) = self.config.keepalive {
            self.timers.keepalive = Some(now + keepalive.interval);
        }
    }

    // ----------------------------------------------------------------------------------
    // Frames in
    // ----------------------------------------------------------------------------------

    fn read_frames(&mut self, now: Instant, input: &[u8]) {
        self.note_input(now, input);
        if let Some(pending) = self.aside.as_mut().and_then(|a| a.pending.as_mut()) {
            pending.input.extend_from_slice(input);
            return self.resume(now);
        }
        let (used, _) = self.decode_frames(now, input, false);
        self.hold_back(now, &input[used..]);
    }

    /// Input arrived: the keepalive's next ping is an interval away.
    fn note_input(&mut self, now: Instant, input: &[u8]) {
        if let Some(keepalive) = self.config.keepalive {
            if matches!(self.state, State::Open) && !input.is_empty() {
                self.timers.keepalive = Some(now + keepalive.interval);
                self.awaiting_pong = false;
            }
        }
    }

    /// Keeps `rest`, read past a complete message, until that message's event is taken.
    fn hold_back(&mut self, now: Instant, rest: &[u8]) {
        if !rest.is_empty() && !matches!(self.state, State::Done) {
            self.aside().pending = Some(Pending {
                input: BytesMut::from(rest),
                since: now,
            });
        }
    }

    /// Decodes input that was held back after a complete message.
    fn resume(&mut self, now: Instant) {
        let Some(mut pending) = self.aside.as_mut().and_then(|a| a.pending.take()) else {
            return;
        };
        let (used, _) = self.decode_frames(now, &pending.input, false);
        pending.input.advance(used);
        if !pending.input.is_empty() && !matches!(self.state, State::Done) {
            self.aside().pending = Some(pending);
        }
    }

    /// Decodes frames from `input` until it is used up, a message is complete, or the
    /// connection ends. Returns how many bytes were used. With `lend`, it stops instead
    /// at a whole message that can be lent in place (see
    /// [`handle_input_in_place`](Self::handle_input_in_place)), when no event waits
    /// before it, and returns where its frame starts and what it is.
    fn decode_frames(
        &mut self,
        now: Instant,
        input: &[u8],
        lend: bool,
    ) -> (usize, Option<WholeFrame>) {
        let mut rest = input;
        loop {
            let at = input.len() - rest.len();
            if matches!(self.state, State::Done) {
                return (at, None);
            }
            if let Some(frame) = self.whole_frame(rest) {
                if lend && self.events.is_empty() {
                    return (at, Some(frame));
                }
                // A message is complete (or the connection failed, and all is used):
                // what follows waits until its events are taken, as below.
                return (at + self.take_whole_message(rest, frame), None);
            }
            let item = match self.decoder.decode(&mut rest) {
                Ok(Some(item)) => item,
                Ok(None) => return (input.len(), None),
                Err(e) => {
                    self.fail(e);
                    return (input.len(), None);
                }
            };
            let message_done = matches!(item, Item::FrameEnd)
                && matches!(self.frame, Some(Frame::Data { fin: true, .. }));
            let step = match item {
                Item::Header(header) => self.on_header(header),
                Item::Payload { data, offset } => self.on_payload(data, offset),
                Item::FrameEnd => self.on_frame_end(now),
            };
            if let Err(e) = step {
                self.fail(e);
                return (input.len(), None);
            }
            if message_done && !rest.is_empty() {
                return (input.len() - rest.len(), None);
            }
        }
    }

    /// The common case, seen in one step: `input` starts with a whole unfragmented,
    /// uncompressed data frame that passes every check `on_header` makes, and no
    /// message or frame is under way. `None` when any of that does not hold: the
    /// frame-by-frame path then decodes the same bytes and reports what is wrong with
    /// them, if anything. (Text that is not UTF-8 is the one failure found later, by
    /// whoever takes the message.)
    #[inline]
    fn whole_frame(&self, input: &[u8]) -> Option<WholeFrame> {
        if self.message.is_some() || !self.decoder.is_at_boundary() {
            return None;
        }
        debug_assert!(
            self.frame.is_none(),
            "a frame ends before its decoder's boundary"
        );
        let (h, head) = FrameHeader::parse(input).ok()??;
        let text = match h.opcode {
            OpCode::Text => true,
            OpCode::Binary => false,
            _ => return None,
        };
        let masked_as_role_says = h.mask.is_some() == (self.role == Role::Server);
        if !h.fin || h.rsv != 0 || !masked_as_role_says {
            return None;
        }
        let len = usize::try_from(h.payload_len).ok()?;
        if len > self.config.max_frame_size
            || len > self.config.max_message_size
            || input.len() - head < len
        {
            return None;
        }
        Some(WholeFrame {
            text,
            mask: h.mask,
            payload: head..head + len,
        })
    }

    /// Queues the message of the whole frame at the start of `input` (a copy, its
    /// exact size, so that `Bytes` takes it over without a second block). Returns the
    /// bytes used: all of `input` if the connection failed.
    #[inline]
    fn take_whole_message(&mut self, input: &[u8], frame: WholeFrame) -> usize {
        let mut buf = input[frame.payload.clone()].to_vec();
        if let Some(key) = frame.mask {
            apply_mask(&mut buf, key, 0);
        }
        let payload = Bytes::from(buf);
        let message = if frame.text {
            if utf8::validate(&payload).is_err() {
                self.fail(ProtocolError::InvalidUtf8);
                return input.len();
            }
            Message::Text(Utf8Bytes::from_validated(payload))
        } else {
            Message::Binary(payload)
        };
        self.events.push_back(Event::Message(message));
        frame.payload.end
    }

    fn on_header(&mut self, h: FrameHeader) -> Result<(), ProtocolError> {
        // RSV1 means "compressed": only with permessage-deflate, only on the first frame
        // of a data message. RSV2 and RSV3 are never defined.
        let compressed = h.rsv & 0b100 != 0;
        if h.rsv & 0b011 != 0
            || compressed
                && (self.codec().is_none() || !matches!(h.opcode, OpCode::Text | OpCode::Binary))
        {
            return Err(ProtocolError::ReservedBits);
        }
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        if h.opcode.is_control() {
            // The header parser guarantees FIN and at most 125 bytes.
            self.aside().control = Vec::with_capacity(h.payload_len as usize);
            self.frame = Some(Frame::Control {
                opcode: h.opcode,
                mask: h.mask,
            });
            return Ok(());
        }
        if h.payload_len > self.config.max_frame_size as u64 {
            return Err(ProtocolError::FrameTooLarge);
        }
        let len = h.payload_len as usize; // fits: at most max_frame_size
        match (h.opcode, &mut self.message) {
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Continuation, Some(msg)) => {
                if msg.buf.len() + len > self.config.max_message_size {
                    return Err(ProtocolError::MessageTooLarge);
                }
                msg.buf.reserve(len.min(MAX_RESERVE));
            }
            (_, Some(_)) => return Err(ProtocolError::ExpectedContinuation),
            (opcode, None) => {
                if len > self.config.max_message_size {
                    return Err(ProtocolError::MessageTooLarge);
                }
                self.message = Some(Box::new(Incoming {
                    text: opcode == OpCode::Text,
                    compressed,
                    buf: BytesMut::with_capacity(len.min(MAX_RESERVE)),
                    utf8: Utf8Validator::new(),
                }));
            }
        }
        self.frame = Some(Frame::Data {
            fin: h.fin,
            mask: h.mask,
        });
        Ok(())
    }

    fn on_payload(&mut self, data: &[u8], offset: u64) -> Result<(), ProtocolError> {
        match (&mut self.frame, &mut self.message) {
            (Some(Frame::Control { mask, .. }), _) => {
                let Some(aside) = self.aside.as_deref_mut() else {
                    return Ok(());
                };
                let start = aside.control.len();
                aside.control.extend_from_slice(data); // at most 125: checked on the header
                if let Some(key) = mask {
                    apply_mask(&mut aside.control[start..], *key, offset);
                }
                Ok(())
            }
            (Some(Frame::Data { mask, .. }), Some(msg)) if msg.compressed => {
                let codec = self
                    .aside
                    .as_deref_mut()
                    .and_then(|a| a.deflate.as_deref_mut());
                let Some(codec) = codec else {
                    return Ok(());
                };
                let limit = self.config.max_message_size;
                let mut check = text_check(msg.text, &mut msg.utf8);
                let Some(key) = mask else {
                    return codec.decompress(data, &mut msg.buf, limit, &mut check);
                };
                let mut scratch = [0u8; 4096];
                for (i, piece) in data.chunks(scratch.len()).enumerate() {
                    let plain = &mut scratch[..piece.len()];
                    plain.copy_from_slice(piece);
                    apply_mask(plain, *key, offset + (i * 4096) as u64);
                    codec.decompress(plain, &mut msg.buf, limit, &mut check)?;
                }
                Ok(())
            }
            (Some(Frame::Data { mask, .. }), Some(msg)) => {
                let start = msg.buf.len();
                msg.buf.extend_from_slice(data);
                let piece = &mut msg.buf[start..];
                if let Some(key) = mask {
                    apply_mask(piece, *key, offset);
                }
                text_check(msg.text, &mut msg.utf8)(piece)
            }
            // The decoder only yields payload after a header we accepted.
            _ => Ok(()),
        }
    }

    fn on_frame_end(&mut self, now: Instant) -> Result<(), ProtocolError> {
        match self.frame.take() {
            Some(Frame::Data { fin: true, .. }) => {
                let Some(mut msg) = self.message.take() else {
                    return Ok(());
                };
                if msg.compressed {
                    let codec = self
                        .aside
                        .as_deref_mut()
                        .and_then(|a| a.deflate.as_deref_mut());
                    if let Some(codec) = codec {
                        let mut check = text_check(msg.text, &mut msg.utf8);
                        codec.finish_message(
                            &mut msg.buf,
                            self.config.max_message_size,
                            &mut check,
                        )?;
                    }
                }
                let payload = msg.buf.freeze();
                let message = if msg.text {
                    msg.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                    Message::Text(Utf8Bytes::from_validated(payload))
                } else {
                    Message::Binary(payload)
                };
                self.events.push_back(Event::Message(message));
            }
            Some(Frame::Data { fin: false, .. }) | None => {}
            Some(Frame::Control { opcode, .. }) => {
                // Taken, so the connection keeps no buffer between control frames.
                let control = self.aside.as_mut().map(|a| std::mem::take(&mut a.control));
                let payload = Bytes::from(control.unwrap_or_default());
                match opcode {
                    OpCode::Ping => {
                        if matches!(self.state, State::Open) {
                            self.queue_pong(&payload);
                        }
                        self.events.push_back(Event::Ping(payload));
                    }
                    OpCode::Pong => self.events.push_back(Event::Pong(payload)),
                    _ => self.on_close_frame(now, &payload)?,
                }
            }
        }
        Ok(())
    }

    fn on_close_frame(&mut self, now: Instant, payload: &[u8]) -> Result<(), ProtocolError> {
        let (code, reason) = match payload {
            [] => (CloseCode::NO_STATUS, ""),
            [_] => return Err(ProtocolError::InvalidClosePayload),
            [hi, lo, reason @ ..] => {
                let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
                if !code.is_valid_on_wire() {
                    return Err(ProtocolError::InvalidCloseCode(code.0));
                }
                let reason = utf8::validate(reason)
                    .ok()
                    .and_then(|()| std::str::from_utf8(reason).ok())
                    .ok_or(ProtocolError::InvalidUtf8)?;
                (code, reason)
            }
        };
        let reason = reason.to_owned();
        let initiator = if matches!(self.state, State::Closing) {
            Side::Local
        } else {
            // Echo the peer's code, as RFC 6455 §5.5.1 suggests.
            if code == CloseCode::NO_STATUS {
                self.queue_frame(OpCode::Close, 0, &[]);
            } else {
                self.queue_close(code, "");
            }
            Side::Remote
        };
        self.end(Closed {
            code,
            reason,
            initiator,
            error: None,
        });
        if self.role == Role::Client {
            // RFC 6455 §7.1.1: the server closes TCP first; give it time to.
            self.close_transport = false;
            self.set_phase(Some(now + self.config.close_timeout));
        }
        Ok(())
    }

    // ----------------------------------------------------------------------------------
    // Ending
    // ----------------------------------------------------------------------------------

    /// Fails the connection for a protocol violation by the peer: the one place where a
    /// violation becomes its wire answer.
    fn fail(&mut self, err: ProtocolError) {
        let code = err.close_code();
        if matches!(self.state, State::Open) {
            self.queue_close(code, err.reason());
        }
        self.end(Closed {
            code,
            reason: err.reason().to_owned(),
            initiator: Side::Local,
            error: Some(Error::Protocol(err)),
        });
    }

    /// Ends the connection without a closing handshake (EOF, timeouts, bad handshake
    /// answer): nothing more is sent.
    fn lose(&mut self, err: Error, initiator: Side) {
        if matches!(self.state, State::Done) {
            return;
        }
        self.drop_output();
        self.end(Closed {
            code: CloseCode::ABNORMAL,
            reason: String::new(),
            initiator,
            error: Some(err),
        });
    }

    fn end(&mut self, closed: Closed) {
        self.state = State::Done;
        self.timers = Timers::default();
        self.set_phase(None);
        self.close_transport = true;
        self.frame = None;
        self.message = None;
        if let Some(aside) = self.aside.as_mut() {
            aside.pending = None;
            aside.head = Vec::new();
        }
        self.events.push_back(Event::Closed(closed));
    }

    /// Drops all output not yet taken: nothing more goes out.
    fn drop_output(&mut self) {
        self.out.clear();
        self.out_bytes = 0;
        if let Some(aside) = self.aside.as_mut() {
            aside.handshake = None;
            aside.pongs.clear();
        }
    }

    // ----------------------------------------------------------------------------------
    // Frames out
    // ----------------------------------------------------------------------------------

    fn push_out(&mut self, bytes: Bytes) {
        self.out_bytes += bytes.len();
        self.out.push_back(bytes);
    }

    fn queue_close(&mut self, code: CloseCode, reason: &str) {
        let mut payload = [0u8; 125];
        payload[..2].copy_from_slice(&code.0.to_be_bytes());
        let reason = truncate_utf8(reason, MAX_REASON_LEN);
        payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
        self.queue_frame(OpCode::Close, 0, &payload[..2 + reason.len()]);
    }

    fn queue_pong(&mut self, payload: &[u8]) {
        let frame = self.encode_frame(OpCode::Pong, 0, &[], payload);
        let max = self.config.max_pending_pongs.max(1);
        let pongs = &mut self.aside().pongs;
        if pongs.len() >= max {
            pongs.pop_front();
        }
        pongs.push_back(frame);
    }

    /// The oldest pong waiting; the queue goes once it is empty.
    fn pop_pong(&mut self) -> Option<Bytes> {
        let pong = self.aside.as_mut()?.pongs.pop_front();
        if pong.is_some() {
            self.tidy();
        }
        pong
    }
    fn queue_frame(&mut self, opcode: OpCode, rsv: u8, payload: &[u8]) {
        let frame = self.encode_frame(opcode, rsv, &[], payload);
        self.push_out(frame);
    }

    fn queue_data_frame(&mut self, opcode: OpCode, rsv: u8, payload: Bytes) {
        if self.role == Role::Client || payload.len() <= COALESCE_LIMIT {
            return self.queue_frame(opcode, rsv, &payload);
        }
        let header = FrameHeader {
            fin: true,
            rsv,
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        };
        let mut head = BytesMut::with_capacity(header.encoded_len());
        header.encode(&mut head);
        self.push_out(head.freeze());
        self.push_out(payload);
    }
    /// One frame whose payload is `head` then `payload`.
    fn encode_frame(&mut self, opcode: OpCode, rsv: u8, head: &[u8], payload: &[u8]) -> Bytes {
        let mut buf = Vec::new();
        self.encode_into(opcode, rsv, head, payload, &mut buf);
        // Reserved exactly (length = capacity): no second allocation.
        Bytes::from(buf)
    }

    /// Appends one frame whose payload is `head` then `payload` to `out` (masked for a
    /// client), growing it at most once.
    fn encode_into(
        &mut self,
        opcode: OpCode,
        rsv: u8,
        head: &[u8],
        payload: &[u8],
        out: &mut Vec<u8>,
    ) {
        let rng = self.aside.as_mut().and_then(|a| a.rng.as_mut());
        let mask = rng.map(|rng| rng.next_u32().to_ne_bytes());
        let len = head.len() + payload.len();
        let header = FrameHeader {
            fin: true,
            rsv,
            opcode,
            mask,
            payload_len: len as u64,
        };
        out.reserve(header.encoded_len() + len);
        header.encode(out);
        let start = out.len();
        out.put_slice(head);
        out.put_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut out[start..], key, 0);
        }
    }
}

/// A whole unmasked, uncompressed frame for one message, encoded once and shared by
/// every server connection it is sent on (a broadcast): sending it is a reference
/// count, whatever the message size.
#[derive(Clone, Debug)]
pub struct PreparedFrame {
    message: Message,
    frame: Bytes,
}

impl PreparedFrame {
    /// Encodes `message` as one final frame.
    pub fn new(message: Message) -> Self {
        let (opcode, payload) = match &message {
            Message::Text(t) => (OpCode::Text, t.as_bytes()),
            Message::Binary(b) => (OpCode::Binary, &b[..]),
        };
        let header = FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        };
        let mut buf = BytesMut::with_capacity(header.encoded_len() + payload.len());
        header.encode(&mut buf);
        buf.put_slice(payload);
        Self {
            frame: buf.freeze(),
            message,
        }
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The frame's bytes.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }
}

/// Validates the pieces of a message as they arrive, if it is text.
fn text_check(
    text: bool,
    utf8: &mut Utf8Validator,
) -> impl FnMut(&[u8]) -> Result<(), ProtocolError> + '_ {
    move |piece| {
        if text {
            utf8.feed(piece).map_err(|_| ProtocolError::InvalidUtf8)
        } else {
            Ok(())
        }
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything `conn` has queued to write, joined.
    fn drained(conn: &mut Connection) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(b) = conn.poll_transmit() {
            out.extend_from_slice(&b);
        }
        out
    }

    /// A server that accepted permessage-deflate (default settings), its 101 taken.
    fn deflating_server(now: Instant) -> Connection {
        let offer = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
        let config = Config::default().deflate(DeflateConfig::default());
        let mut c = Connection::server(Arc::new(config), now);
        c.handle_input(now, offer);
        drained(&mut c);
        assert!(c.deflate_params().is_some());
        c
    }

    /// A masked frame from a client: `opcode`, `payload` (at most 125 bytes).
    fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let key = [1, 2, 3, 4];
        let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        frame
    }

    #[test]
    fn the_handshake_and_control_frames_hold_their_parts_aside_only_meanwhile() {
        let now = Instant::now();
        let request = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let mut c = Connection::server(Arc::new(Config::default()), now);
        c.handle_input(now, &request[..20]);
        assert!(c.aside.is_some(), "the request so far is held");
        c.handle_input(now, &request[20..]);
        assert!(c.aside.is_some(), "the 101 waits");
        assert!(drained(&mut c).starts_with(b"HTTP/1.1 101"));
        assert!(c.aside.is_none(), "open and idle after the handshake");
        assert!(matches!(c.poll_event(), Some(Event::Open(_))));
        // A ping read in place: its pong waits aside, then nothing once written.
        let mut ping = client_frame(0x9, b"hi");
        assert_eq!(c.handle_input_in_place(now, &mut ping), (8, None));
        assert!(matches!(c.poll_event(), Some(Event::Ping(p)) if p == "hi"));
        assert_eq!(drained(&mut c), [0x8a, 2, b'h', b'i']);
        assert!(c.aside.is_none(), "idle after the pong");
        // A ping split across reads: its payload so far waits aside.
        let ping = client_frame(0x9, b"hello");
        c.handle_input(now, &ping[..8]);
        assert!(c.aside.is_some());
        c.handle_input(now, &ping[8..]);
        assert!(matches!(c.poll_event(), Some(Event::Ping(p)) if p == "hello"));
        drained(&mut c);
        assert!(c.aside.is_none(), "idle after the second pong");
    }

    #[test]
    fn a_message_sent_in_two_parts_is_the_message_sent_whole() {
        let now = Instant::now();
        let plain = || Connection::accepted(Arc::new(Config::default()), now);
        let deflating = || deflating_server(now);
        // Small (framed from both parts), large (over the coalescing limit) and
        // compressed, text and binary, compression chosen by size or forced.
        for body in [vec![b'a'; 20], vec![b'b'; COALESCE_LIMIT + 10]] {
            for text in [true, false] {
                for compress in [None, Some(false), Some(true)] {
                    for make in [&plain as &dyn Fn() -> Connection, &deflating] {
                        let (mut joined, mut whole) = (make(), make());
                        joined
                            .send_joined(text, b"4", &body, compress)
                            .expect("open");
                        let mut all = b"4".to_vec();
                        all.extend_from_slice(&body);
                        let message = if text {
                            Message::text(String::from_utf8(all).expect("ascii"))
                        } else {
                            Message::binary(all)
                        };
                        whole.send_with(message, compress).expect("open");
                        assert_eq!(
                            drained(&mut joined),
                            drained(&mut whole),
                            "{} B, text {text}, compress {compress:?}",
                            body.len()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_frame_encoded_now_is_the_frame_sent_and_keeps_its_place() {
        let now = Instant::now();
        let server = || Connection::accepted(Arc::new(Config::default()), now);
        for message in [
            Message::text("hello"),
            Message::binary(vec![7u8; 200]),
            Message::binary(vec![1u8; COALESCE_LIMIT]),
        ] {
            let (mut direct, mut queued) = (server(), server());
            // Appended to what the buffer holds.
            let mut wire = b"before".to_vec();
            assert_eq!(direct.encode_now(&message, &mut wire), Ok(true));
            assert_eq!(direct.buffered_amount(), 0, "nothing queued");
            assert!(direct.poll_transmit().is_none());
            queued.send(message.clone()).expect("open");
            let mut expected = b"before".to_vec();
            expected.extend_from_slice(&drained(&mut queued));
            assert_eq!(wire, expected, "{message:?}");
        }
        // Something queued (here a pong, then a message) goes first: encode_now
        // declines and leaves the buffer alone.
        let mut conn = server();
        conn.handle_input(now, &[0x89, 0x81, 0, 0, 0, 0, b'p']);
        assert!(matches!(conn.poll_event(), Some(Event::Ping(_))));
        let mut wire = Vec::new();
        assert_eq!(conn.encode_now(&Message::text("x"), &mut wire), Ok(false));
        conn.send(Message::text("x")).expect("open");
        assert_eq!(conn.encode_now(&Message::text("y"), &mut wire), Ok(false));
        assert!(wire.is_empty());
        assert_eq!(drained(&mut conn), b"\x8a\x01p\x81\x01x");
        // Over the limit it is queued (its payload is not copied), unless it is
        // borrowed: then it is encoded whatever its size, as it would be queued.
        let big = Message::binary(vec![2u8; COALESCE_LIMIT + 1]);
        assert_eq!(conn.encode_now(&big, &mut wire), Ok(false));
        let (mut direct, mut queued) = (server(), server());
        assert_eq!(direct.encode_now(&big, &mut wire), Ok(false));
        assert_eq!(
            direct.encode_borrowed_now((&big).into(), &mut wire),
            Ok(true)
        );
        assert!(direct.poll_transmit().is_none());
        queued.send(big).expect("open");
        assert_eq!(wire, drained(&mut queued));
        wire.clear();
        conn.send(Message::text("q")).expect("open");
        assert_eq!(
            conn.encode_borrowed_now(MessageRef::Text("y"), &mut wire),
            Ok(false),
            "what is queued goes first"
        );
        // A message permessage-deflate would compress is queued too.
        let mut deflating = deflating_server(now);
        let threshold = DeflateConfig::default().threshold;
        let long = Message::text("z".repeat(threshold.max(1)));
        assert_eq!(deflating.encode_now(&long, &mut wire), Ok(false));
        assert_eq!(
            deflating.encode_now(&Message::text(""), &mut wire),
            Ok(true)
        );
        // Not open: the send's error.
        let mut ended = server();
        ended.handle_eof(now);
        assert!(ended.encode_now(&Message::text("x"), &mut wire).is_err());
    }

    #[test]
    fn a_whole_message_is_lent_in_place_and_the_rest_left_to_the_caller() {
        let now = Instant::now();
        let mut conn = Connection::accepted(Arc::new(Config::default()), now);
        // "hi" masked, then a ping, then "yo" masked, then half a frame.
        let key = [1, 2, 3, 4];
        let masked = |text: &[u8]| {
            let mut payload = text.to_vec();
            apply_mask(&mut payload, key, 0);
            let mut frame = vec![0x81, 0x80 | text.len() as u8];
            frame.extend_from_slice(&key);
            frame.extend_from_slice(&payload);
            frame
        };
        let mut input = masked(b"hi");
        input.extend_from_slice(&[0x89, 0x80, 0, 0, 0, 0]);
        input.extend_from_slice(&masked(b"yo"));
        input.extend_from_slice(&[0x82, 0x85]);
        let (used, lent) = conn.handle_input_in_place(now, &mut input);
        assert_eq!((used, lent), (8, Some(MessageRef::Text("hi"))));
        assert!(conn.poll_event().is_none(), "nothing else decoded yet");
        // The ping is an event, so the message after it is not lent but queued, and
        // decoding stops there: the rest is the caller's to give again.
        let (used2, lent) = conn.handle_input_in_place(now, &mut input[used..]);
        assert_eq!((used2, lent), (14, None));
        assert!(matches!(conn.poll_event(), Some(Event::Ping(_))));
        assert_eq!(conn.poll_event(), Some(Event::Message(Message::text("yo"))));
        let (used3, lent) = conn.handle_input_in_place(now, &mut input[used + used2..]);
        assert_eq!((used3, lent), (2, None), "half a frame is taken and kept");
        assert!(conn.poll_event().is_none());
        // Text that is not UTF-8 fails the connection as `handle_input` would.
        let mut conn = Connection::accepted(Arc::new(Config::default()), now);
        let mut bad = masked(&[0xff]);
        assert_eq!(conn.handle_input_in_place(now, &mut bad), (7, None));
        assert!(
            matches!(conn.poll_event(), Some(Event::Closed(c)) if c.code == CloseCode::INVALID_PAYLOAD)
        );
    }

    #[test]
    fn an_idle_connection_is_small() {
        // Heap use of an idle open connection is nil (empty queues, no read buffer),
        // even after traffic, so its whole cost is this struct (552 B since the write
        // timeout: its deadline and unwritten count; 560 B with the slot that keeps a
        // server's 101 response apart for hosts that write it themselves; 504 B with
        // the pongs' queue out of line; 368 B with the queues' spill, held-back input
        // and a client's handshake state out of line and one deadline for the
        // handshake, closing and linger phases; 352 B with one for ping and pong; 336 B
        // with the frame decoder's header and payload state sharing their space; 328 B
        // with a control frame's payload in a `Vec`; 200 B with what is held only now
        // and then boxed together in `Aside`, which an idle connection does not hold:
        // the handshake's buffers and deadline, a control frame's payload, pongs,
        // held-back input, the masking keys' source and the compressor).
        let size = std::mem::size_of::<Connection>();
        assert!(size <= 200, "Connection is {size} bytes");
        assert!(
            std::mem::size_of::<Event>() <= 64,
            "Event is {} bytes",
            std::mem::size_of::<Event>()
        );
        let now = Instant::now();
        let mut conn = Connection::accepted(Arc::new(Config::default()), now);
        let idle = |conn: &Connection| {
            conn.aside.is_none()
                && conn.out.heap_capacity() == 0
                && conn.events.heap_capacity() == 0
        };
        assert!(idle(&conn));
        // A burst: three pings (each answered) and a message, in one read.
        let key = [1, 2, 3, 4];
        let mut input = Vec::new();
        for (opcode, payload) in [
            (0x89u8, &b"a"[..]),
            (0x89, b"bb"),
            (0x89, b"ccc"),
            (0x81, b"hi"),
        ] {
            input.extend_from_slice(&[opcode, 0x80 | payload.len() as u8]);
            input.extend_from_slice(&key);
            input.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        conn.handle_input(now, &input);
        let mut events = 0;
        while conn.poll_event().is_some() {
            events += 1;
        }
        let mut transmits = 0;
        while conn.poll_transmit().is_some() {
            transmits += 1;
        }
        assert_eq!(
            (events, transmits),
            (4, 3),
            "three pings and the message; three pongs"
        );
        assert!(idle(&conn), "a drained connection holds no heap memory");
    }
}
