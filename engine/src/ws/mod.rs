//! RFC 6455 WebSocket: handshake, framing, masking, fragmentation, streaming UTF-8
//! validation, and the closing handshake, for both roles; permessage-deflate (RFC 7692).
//!
//! [`Connection`] is the state machine; the other modules are its parts. `handshake`,
//! `deflate`, `close` and `error` are documented API; the frame codec, masking and
//! streaming UTF-8 validation are public only for benchmarks and fuzzers, and hidden
//! from these docs.
//!
//! | peer fault | answer |
//! | --- | --- |
//! | bad upgrade request | HTTP 400 (426 for a version other than 13, 431 for an oversized head) |
//! | reserved bits or opcode, unmasked client frame, masked server frame, bad fragmentation, bad control frame | close 1002 |
//! | invalid UTF-8 in a text message or a close reason, undecompressable data | close 1007 |
//! | RSV1 without permessage-deflate, or on a continuation or control frame | close 1002 |
//! | frame or message over the configured limit | close 1009 |
//! | EOF without a closing handshake | `Closed` event with code 1006 |

pub mod close;
mod connection;
pub mod deflate;
pub mod error;
#[doc(hidden)]
pub mod frame;
pub mod handshake;
#[doc(hidden)]
pub mod mask;
mod message;
pub mod rooms;
pub mod route;
#[doc(hidden)]
pub mod utf8;

pub use close::CloseCode;
pub use connection::{
    Closed, Config, Connection, Event, Keepalive, Opened, PreparedFrame, Role, Side,
};
pub use deflate::{DeflateConfig, DeflateParams, Precompressed};
pub use error::{Error, HandshakeError, ProtocolError, SendError};
pub use handshake::{ClientRequest, Request, Response, UrlError};
pub use message::{Message, MessageRef, Utf8Bytes};
