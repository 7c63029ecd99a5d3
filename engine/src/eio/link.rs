//! [`WsLink`]: the WebSocket side of one upgraded Engine.IO transport, owned by
//! whoever drives that connection rather than by the [`Server`](super::Server).
//!
//! The server works in Engine.IO packets: it takes a transport's decoded packets
//! ([`WsInput`], through `handle_ws_input`) and addresses packets, shared frames and
//! closes to it ([`WsOutput`], in [`Transmit::Ws`](super::Transmit::Ws)). The link turns
//! bytes into those inputs and those outputs into bytes. Frame decoding, unmasking,
//! inflating, UTF-8 validation, packet encoding and compression all happen here, so a
//! driver that shares one server between many connections does that work without
//! holding the server, in the connection's own task.

use std::any::Any;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::packet::{Data, Packet, PacketType, Protocol};
use super::server::TransportId;
use crate::machine::Endpoint;
use crate::queue::Queue;
use crate::ws::{self, CloseCode, PreparedFrame};

/// A message's data as a higher layer decoded it (Socket.IO's parsed packet), in the
/// link: see [`MessageDecoder`].
pub type Decoded = Box<dyn Any + Send>;

/// The part of a higher layer's message decoding that needs no server state (Socket.IO's
/// JSON parsing), given to the server once
/// ([`Server::set_message_decoder`](super::Server::set_message_decoder)) and run on
/// each message apart from the server: by every link on what it receives, and by the
/// [`Preparer`](super::Preparer) on polling payloads. What it returns comes back with
/// the message's event ([`Server::poll_event_decoded`](super::Server::poll_event_decoded)).
#[derive(Clone)]
pub struct MessageDecoder(Arc<DecodeFn>);

type DecodeFn = dyn Fn(&Data) -> Option<Decoded> + Send + Sync;

impl MessageDecoder {
    /// A decoder that runs `decode` on each message's data.
    pub fn new(decode: impl Fn(&Data) -> Option<Decoded> + Send + Sync + 'static) -> Self {
        Self(Arc::new(decode))
    }

    /// Decodes one message's data (`None`: leave it to the server).
    pub fn decode(&self, data: &Data) -> Option<Decoded> {
        (self.0)(data)
    }
}

impl std::fmt::Debug for MessageDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageDecoder")
    }
}

/// What a transport's link hands the server, in order.
#[derive(Debug)]
pub enum WsInput {
    /// An Engine.IO packet arrived; a message's data comes decoded further if the
    /// server has a [`MessageDecoder`].
    Packet {
        /// The packet.
        packet: Packet,
        /// What the message decoder made of its data.
        decoded: Option<Decoded>,
    },
    /// A message arrived that is no Engine.IO packet (the session is closed with a
    /// parse error).
    Invalid,
    /// The WebSocket ended; nothing follows. `clean`: the closing handshake completed.
    Closed {
        /// Whether the closing handshake completed in both directions.
        clean: bool,
    },
}

/// What the server asks of a transport's link.
#[derive(Clone, Debug)]
pub enum WsOutput {
    /// Send an Engine.IO packet, with a compression choice (`Some(false)`: never,
    /// `Some(true)`: always if permessage-deflate was negotiated, `None`: by size).
    Packet {
        /// The packet.
        packet: Packet,
        /// The compression choice.
        compress: Option<bool>,
    },
    /// Send a message encoded once for many transports (a broadcast), as it is.
    Prepared(PreparedFrame),
    /// Start the closing handshake with this code and reason.
    Close(CloseCode, &'static str),
}

impl WsOutput {
    /// The bytes this output counts against the session's
    /// [`max_buffered`](super::Config::max_buffered) until it is written: its payload.
    pub fn counted(&self) -> usize {
        match self {
            WsOutput::Packet { packet, .. } => 1 + packet.data.as_bytes().len(),
            WsOutput::Prepared(frame) => frame.message().len(),
            WsOutput::Close(..) => 0,
        }
    }
}

/// One upgraded Engine.IO WebSocket transport: its [`ws::Connection`], driven apart
/// from the server.
///
/// # Driving it
/// Bytes read go to [`handle_input`](Self::handle_input) (the end of input to
/// [`handle_eof`](Self::handle_eof)); then [`deliver`](Self::deliver) hands what they
/// decoded to the endpoint (or [`poll_input`](Self::poll_input) does, one at a time).
/// Every [`Transmit::Ws`](super::Transmit::Ws) addressed to
/// [`transport`](Self::transport) goes to [`handle_output`](Self::handle_output). Write
/// what [`poll_transmit`](Self::poll_transmit) gives, tell
/// [`handle_written`](Self::handle_written) how much went out, and report
/// [`take_written`](Self::take_written) to the endpoint's `handle_ws_written`. Arm
/// [`poll_timeout`](Self::poll_timeout); shut the transport once
/// [`should_close_transport`](Self::should_close_transport) says so.
#[derive(Debug)]
pub struct WsLink {
    transport: TransportId,
    protocol: Protocol,
    conn: ws::Connection,
    decoder: Option<MessageDecoder>,
    /// Bytes handed out by `poll_transmit` so far.
    polled: u64,
    /// Bytes reported written so far.
    written: u64,
    /// Outputs not yet written: where in the byte stream each ends (a pong the
    /// connection sends first may settle one early, by the pong's few bytes), and what
    /// it counts. The oldest is kept inline, so that a quiet link holds no allocation.
    unwritten: Queue<(u64, usize)>,
    /// Counted bytes written (or never to be written) and not yet reported.
    settled: usize,
    /// The `Closed` input was handed out.
    ended: bool,
}

impl WsLink {
    pub(crate) fn new(
        transport: TransportId,
        protocol: Protocol,
        conn: ws::Connection,
        decoder: Option<MessageDecoder>,
    ) -> Self {
        Self {
            transport,
            protocol,
            conn,
            decoder,
            polled: 0,
            written: 0,
            unwritten: Queue::new(),
            settled: 0,
            ended: false,
        }
    }

    /// The transport this link carries.
    pub fn transport(&self) -> TransportId {
        self.transport
    }

    /// Takes the `101 Switching Protocols` response out of the link's output, for a
    /// host whose HTTP server writes it (hyper): call it before the first
    /// [`poll_transmit`](Self::poll_transmit). See
    /// [`ws::Connection::take_handshake_response`].
    pub fn take_handshake_response(&mut self) -> Option<crate::http::Response> {
        self.conn.take_handshake_response()
    }

    /// Bytes read from the connection.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        self.conn.handle_input(now, bytes);
    }

    /// The peer closed its side of the connection.
    pub fn handle_eof(&mut self, now: Instant) {
        self.conn.handle_eof(now);
    }

    /// A deadline from [`poll_timeout`](Self::poll_timeout) passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.conn.handle_timeout(now);
    }

    /// The next thing the server must hear about: a packet, an invalid message, or the
    /// end (once, last).
    #[must_use]
    pub fn poll_input(&mut self) -> Option<WsInput> {
        if self.ended {
            return None;
        }
        let input = loop {
            match self.conn.poll_event()? {
                ws::Event::Message(m) => {
                    break match Packet::from_ws_owned(m, self.protocol) {
                        Ok(packet) => {
                            let decoded = match (&self.decoder, packet.kind) {
                                (Some(decoder), PacketType::Message) => {
                                    decoder.decode(&packet.data)
                                }
                                _ => None,
                            };
                            WsInput::Packet { packet, decoded }
                        }
                        Err(_) => WsInput::Invalid,
                    }
                }
                ws::Event::Closed(closed) => {
                    self.ended = true;
                    break WsInput::Closed {
                        clean: closed.is_clean(),
                    };
                }
                ws::Event::Open(_) | ws::Event::Ping(_) | ws::Event::Pong(_) => {}
            }
        };
        Some(input)
    }

    /// Hands everything decoded so far to `endpoint`.
    pub fn deliver<E: Endpoint + ?Sized>(&mut self, now: Instant, endpoint: &mut E) {
        while let Some(input) = self.poll_input() {
            endpoint.handle_ws_input(now, self.transport, input);
        }
    }

    /// Tells the server the connection is gone without a `Closed` input (the driver
    /// dropped it): what [`deliver`](Self::deliver) would have said, if it has not.
    pub fn abandon<E: Endpoint + ?Sized>(&mut self, now: Instant, endpoint: &mut E) {
        if !self.ended {
            self.ended = true;
            endpoint.handle_ws_input(now, self.transport, WsInput::Closed { clean: false });
        }
    }

    /// Carries out what the server addressed to this transport.
    pub fn handle_output(&mut self, now: Instant, output: WsOutput) {
        let counted = output.counted();
        let sent = match output {
            WsOutput::Packet { packet, compress } => packet
                .send_on(&mut self.conn, self.protocol, compress)
                .is_ok(),
            WsOutput::Prepared(frame) => self.conn.send_prepared(&frame).is_ok(),
            WsOutput::Close(code, reason) => self.conn.close(now, code, reason).is_ok(),
        };
        if sent && counted > 0 {
            // It ends where the connection's queue now ends.
            let end = self.polled + self.conn.buffered_amount() as u64;
            self.unwritten.push_back((end, counted));
        } else {
            // Never written (or counting nothing): it no longer counts.
            self.settled += counted;
        }
    }

    /// [`handle_output`](Self::handle_output), encoding a packet straight into `out`
    /// where the connection can (see
    /// [`ws::Connection::encode_now`](crate::ws::Connection::encode_now)): no
    /// allocation. What it appends counts as given by
    /// [`poll_transmit`](Self::poll_transmit): write it before anything that gives
    /// next, and report it to [`handle_written`](Self::handle_written) the same way.
    pub fn handle_output_into(&mut self, now: Instant, output: WsOutput, out: &mut Vec<u8>) {
        let counted = output.counted();
        let WsOutput::Packet { packet, compress } = output else {
            return self.handle_output(now, output);
        };
        let start = out.len();
        match packet.encode_now_on(&mut self.conn, self.protocol, compress, out) {
            Ok(None) => {
                self.polled += (out.len() - start) as u64;
                self.unwritten.push_back((self.polled, counted));
            }
            Ok(Some(packet)) => self.handle_output(now, WsOutput::Packet { packet, compress }),
            // Not open: never written.
            Err(_) => self.settled += counted,
        }
    }

    /// The next bytes to write, in order.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        let bytes = self.conn.poll_transmit()?;
        self.polled += bytes.len() as u64;
        Some(bytes)
    }

    /// `bytes` of what [`poll_transmit`](Self::poll_transmit) gave were written.
    pub fn handle_written(&mut self, bytes: usize) {
        self.written += bytes as u64;
        while let Some(&(end, counted)) = self.unwritten.front() {
            if end > self.written {
                return;
            }
            self.settled += counted;
            // A burst's queue is given back once it drains.
            self.unwritten.pop_front();
        }
    }

    /// Counted bytes written since the last call: report them to the endpoint's
    /// `handle_ws_written`.
    pub fn take_written(&mut self) -> usize {
        std::mem::take(&mut self.settled)
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due (the closing handshake's
    /// timeout).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conn.poll_timeout()
    }

    /// The WebSocket is open: no close frame sent or received, so data may still go
    /// out on it.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.conn.is_open()
    }

    /// Bytes wait in the link for [`poll_transmit`](Self::poll_transmit).
    #[must_use]
    pub fn has_output(&self) -> bool {
        self.conn.buffered_amount() > 0
    }

    /// The WebSocket has ended and everything it queued was taken: shut the
    /// connection.
    #[must_use]
    pub fn should_close_transport(&self) -> bool {
        self.conn.should_close_transport()
    }
}
