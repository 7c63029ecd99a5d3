//! Engine.IO (v4, and v3 for old clients), sans-IO.
//!
//! [`Server`] is the server-wide registry: it takes HTTP requests (already parsed by
//! [`crate::http`]) and the packets of WebSocket transports, and hands back responses,
//! what to send on each WebSocket, events and one deadline. Each upgraded connection's
//! WebSocket itself is a [`WsLink`], driven by whoever drives that connection. A polling GET that must wait is *parked*
//! under a [`PollId`]; its response comes out later through
//! [`Server::poll_transmit`]. The adapter owns no protocol state of its own.
//!
//! [`Client`] is the client side: it says which HTTP requests and WebSocket messages
//! to make, and takes their outcomes.

mod client;
mod link;
mod packet;
mod server;
pub(crate) use server::SEND_GROUP;

pub use client::{
    Action, Client, ClientCloseReason, ClientConfig, ClientEvent, ClosedError, OpenInfo, RequestId,
    WsId,
};
pub use link::{Decoded, MessageDecoder, WsInput, WsLink, WsOutput};
pub use packet::{
    decode_payload, encode_payload, Data, DecodeError, Packet, PacketType, Protocol, SharedMessage,
};
pub use server::{
    AllowRequest, CloseReason, Config, Cors, ErrorCode, Event, Handshake, HttpCompression, PollId,
    Prepared, Preparer, Reply, SendError, Server, SessionId, Traffic, Transmit, TransportId,
    TransportKind, PACKET_OVERHEAD, VOLATILE_LOW_WATER,
};

/// Engine.IO paths end with `/`.
fn with_trailing_slash(path: &str) -> String {
    if path.ends_with('/') {
        path.to_owned()
    } else {
        format!("{path}/")
    }
}
