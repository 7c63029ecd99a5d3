//! # wirestate-engine
//!
//! Sans-IO protocol state machines for real-time messaging: RFC 6455 WebSocket,
//! Engine.IO and Socket.IO on top of it.
//!
//! Nothing in this crate opens a socket, reads a clock, spawns a task or blocks. Bytes
//! and [`Instant`](std::time::Instant)s go in through `handle_*` methods; bytes to
//! write, events and the next deadline come out of `#[must_use] poll_*` methods. A
//! runtime adapter (`wirestate-tokio`, `wirestate-smol`) or a test with an in-memory
//! pipe and a virtual clock drives the machines. Randomness (WebSocket masking keys,
//! handshake keys) comes from a seed that the caller supplies.
//!
//! * [`ws`]: the WebSocket connection, both roles, handshake included.
//! * [`eio`]: Engine.IO v4 (and v3) server and client.
//! * [`sio`]: Socket.IO v5 (and v4) server: namespaces, rooms, acks, recovery.
//! * [`drive`]: the runtime-agnostic poll loop that adapters plug their sockets and
//!   timers into, so that no protocol plumbing is written twice.
//! * [`rand`]: the seedable random source.
#![deny(unsafe_code)]

pub mod drive;
pub mod eio;
pub mod http;
pub mod rand;
pub mod sio;
pub mod ws;
