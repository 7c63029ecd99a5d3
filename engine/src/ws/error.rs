//! Errors of the WebSocket layer, and the one place that maps each to its wire answer.

use std::fmt;

use super::close::CloseCode;

/// A violation of RFC 6455 by the peer. The connection answers it with a Close frame
/// carrying [`ProtocolError::close_code`] and then closes the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// RSV1–3 set without a negotiated extension that defines them.
    ReservedBits,
    /// Opcode 3–7 or 0xB–0xF.
    ReservedOpcode(u8),
    /// A client frame without a mask (servers must reject them).
    UnmaskedFrame,
    /// A server frame with a mask (clients must reject them).
    MaskedFrame,
    /// A control frame with FIN clear.
    FragmentedControlFrame,
    /// A control frame with more than 125 bytes of payload.
    ControlFrameTooLong,
    /// A 64-bit payload length with its most significant bit set.
    InvalidLength,
    /// A continuation frame with no message in progress.
    UnexpectedContinuation,
    /// A new Text or Binary frame while a fragmented message is in progress.
    ExpectedContinuation,
    /// A Close frame with a one-byte payload.
    InvalidClosePayload,
    /// A Close frame with a code that must not appear on the wire.
    InvalidCloseCode(u16),
    /// Invalid UTF-8 in a text message or a close reason.
    InvalidUtf8,
    /// A frame larger than the configured maximum.
    FrameTooLarge,
    /// A message larger than the configured maximum (after decompression).
    MessageTooLarge,
    /// A permessage-deflate payload that does not decompress.
    InvalidCompressedData,
}

impl ProtocolError {
    /// The close code that answers this violation: 1007 for invalid UTF-8 or
    /// compressed data, 1009 for size limits, 1002 for everything else.
    pub const fn close_code(self) -> CloseCode {
        match self {
            Self::InvalidUtf8 | Self::InvalidCompressedData => CloseCode::INVALID_PAYLOAD,
            Self::FrameTooLarge | Self::MessageTooLarge => CloseCode::MESSAGE_TOO_BIG,
            Self::ReservedBits
            | Self::ReservedOpcode(_)
            | Self::UnmaskedFrame
            | Self::MaskedFrame
            | Self::FragmentedControlFrame
            | Self::ControlFrameTooLong
            | Self::InvalidLength
            | Self::UnexpectedContinuation
            | Self::ExpectedContinuation
            | Self::InvalidClosePayload
            | Self::InvalidCloseCode(_) => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// A short human-readable reason, sent as the close reason.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::ReservedBits => "reserved bits set",
            Self::ReservedOpcode(_) => "reserved opcode",
            Self::UnmaskedFrame => "client frame not masked",
            Self::MaskedFrame => "server frame masked",
            Self::FragmentedControlFrame => "fragmented control frame",
            Self::ControlFrameTooLong => "control frame too long",
            Self::InvalidLength => "invalid payload length",
            Self::UnexpectedContinuation => "unexpected continuation frame",
            Self::ExpectedContinuation => "expected continuation frame",
            Self::InvalidClosePayload => "invalid close payload",
            Self::InvalidCloseCode(_) => "invalid close code",
            Self::InvalidUtf8 => "invalid UTF-8",
            Self::FrameTooLarge => "frame too large",
            Self::MessageTooLarge => "message too large",
            Self::InvalidCompressedData => "invalid compressed data",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            Self::InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
            other => f.write_str(other.reason()),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why an opening handshake failed. On the server side each maps to the HTTP status
/// that the connection sends back ([`HandshakeError::status`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The request or response head is not valid HTTP/1.1.
    MalformedHttp,
    /// The head is larger than `Config::max_head_size`.
    HeadTooLarge,
    /// The request method is not GET.
    MethodNotGet,
    /// The request is not HTTP/1.1.
    HttpVersion,
    /// `Upgrade: websocket` is missing.
    MissingUpgrade,
    /// `Connection: Upgrade` is missing.
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Key` is missing or not 16 bytes in base64.
    InvalidKey,
    /// `Sec-WebSocket-Version` is missing or not 13.
    UnsupportedVersion,
    /// (client) The server answered with this status instead of 101.
    UnexpectedStatus(u16),
    /// (client) `Sec-WebSocket-Accept` does not match the key sent.
    AcceptMismatch,
    /// (client) The server selected a subprotocol the client did not offer.
    UnexpectedProtocol,
    /// (client) The server selected an extension the client did not offer.
    UnexpectedExtension,
    /// (server) The request's `Origin` is not on `Config::origins`.
    ForbiddenOrigin,
}

impl HandshakeError {
    /// The HTTP status a server answers this error with.
    pub const fn status(&self) -> u16 {
        match self {
            Self::UnsupportedVersion => 426,
            Self::HeadTooLarge => 431,
            Self::ForbiddenOrigin => 403,
            _ => 400,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::MalformedHttp => "malformed HTTP head",
            Self::HeadTooLarge => "HTTP head too large",
            Self::MethodNotGet => "method is not GET",
            Self::HttpVersion => "HTTP version is not 1.1",
            Self::MissingUpgrade => "missing `Upgrade: websocket`",
            Self::MissingConnectionUpgrade => "missing `Connection: Upgrade`",
            Self::InvalidKey => "missing or invalid Sec-WebSocket-Key",
            Self::UnsupportedVersion => "unsupported Sec-WebSocket-Version (13 expected)",
            Self::UnexpectedStatus(s) => return write!(f, "server answered HTTP {s}, not 101"),
            Self::AcceptMismatch => "Sec-WebSocket-Accept does not match the key",
            Self::UnexpectedProtocol => "server chose a subprotocol that was not offered",
            Self::UnexpectedExtension => "server chose an extension that was not offered",
            Self::ForbiddenOrigin => "origin not allowed",
        };
        f.write_str(s)
    }
}

impl std::error::Error for HandshakeError {}

/// Why a connection ended other than by a clean close handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The peer violated the protocol; we sent the matching Close frame.
    Protocol(ProtocolError),
    /// The opening handshake failed.
    Handshake(HandshakeError),
    /// The transport ended without a closing handshake.
    UnexpectedEof,
    /// The opening handshake did not complete in time.
    HandshakeTimeout,
    /// The peer did not answer our Close frame in time.
    CloseTimeout,
    /// The peer did not answer a keepalive ping in time.
    KeepaliveTimeout,
    /// Bytes waited to be written longer than the write timeout with none going out:
    /// the peer stopped reading.
    WriteTimeout,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::Handshake(e) => write!(f, "handshake failed: {e}"),
            Self::UnexpectedEof => f.write_str("connection closed without a close frame"),
            Self::HandshakeTimeout => f.write_str("opening handshake timed out"),
            Self::CloseTimeout => f.write_str("closing handshake timed out"),
            Self::KeepaliveTimeout => f.write_str("keepalive ping not answered in time"),
            Self::WriteTimeout => {
                f.write_str("no write progress in time: the peer stopped reading")
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Self::Protocol(e)
    }
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Self::Handshake(e)
    }
}

/// A misuse of the sending API by the caller (never caused by the peer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The opening handshake has not completed yet.
    NotOpen,
    /// A Close frame was already sent or the connection has ended.
    Closed,
    /// The close code may not be sent on the wire (see `CloseCode::is_valid_on_wire`).
    InvalidCloseCode,
    /// A close reason longer than 123 bytes, or a ping payload longer than 125.
    ControlPayloadTooLong,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotOpen => "the WebSocket handshake has not completed",
            Self::Closed => "the WebSocket is closing or closed",
            Self::InvalidCloseCode => "this close code may not be sent",
            Self::ControlPayloadTooLong => "control frame payload over 125 bytes",
        })
    }
}

impl std::error::Error for SendError {}
