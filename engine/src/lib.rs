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
//! * [`redis`]: the cluster protocol of Node's `@socket.io/redis-adapter` over RESP.
//! * [`msgpack`]: MessagePack as Node's `notepack.io` writes it.
//! * [`rand`]: the seedable random source.
#![deny(unsafe_code)]

mod date;
pub use date::js_date_json;
pub mod eio;
pub mod http;
mod id;
mod machine;
pub mod msgpack;
pub mod queue;
pub mod rand;
pub mod redis;
pub mod sio;
mod small;
pub use small::{SmallMap, SmallSet, SmallSetIter};
pub mod ws;

pub use machine::{ClientMachine, Endpoint};

/// A hash map keyed by ids that this crate generates (session ids, sids, transport,
/// poll and ack ids). Such tables are looked up on every packet, so they hash with
/// foldhash (randomly seeded per process, several times faster than SipHash on short
/// keys). Peers choose none of their keys, so foldhash's weaker HashDoS resistance does
/// not matter there; tables keyed by names that peers or applications choose (rooms,
/// namespaces, event names) keep std's SipHash.
pub type IdMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// A hash set of ids that this crate generates: see [`IdMap`].
pub type IdSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
