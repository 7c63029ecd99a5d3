//! Socket.IO v5 (and v4 for `EIO=3` clients), sans-IO.
//!
//! [`Server`] sits on an [`eio::Server`](crate::eio::Server): it takes the same inputs
//! (HTTP requests, WebSocket bytes, timeouts), decodes Socket.IO [`Packet`]s from the
//! Engine.IO messages, and keeps namespaces, sockets, rooms, pending acks and the
//! recovery store. The application sees [`Event`]s and calls `accept`, `emit`,
//! `broadcast`, `join`... Cross-server operations come out as [`ClusterMessage`]s.
//!
//! [`Manager`] is the client: one connection (reconnected with backoff) carrying any
//! number of namespaces.
//!
//! The packet codec is in [`packet`]; a different parser (e.g. msgpack) only has to
//! produce and take the same [`Packet`] values.

mod client;
pub mod packet;
mod scan;
mod server;

pub use client::{ClientConfig, ClientDisconnectReason, ClientError, ClientEvent, Manager};
pub use packet::{
    DecodeError, DecodeLimits, Decoder, Incoming, Packet, PacketType, Parsed, Parser, Payload,
};
pub use server::{
    AckError, AckId, Activity, Broadcast, ClusterMessage, Config, ConnectInfo, DisconnectReason,
    Error, Event, NamespacePredicate, Recovery, Room, Server, Sid,
};
