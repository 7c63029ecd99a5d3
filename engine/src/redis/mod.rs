//! Socket.IO clusters over Redis, wire-compatible with Node's
//! `@socket.io/redis-adapter` 8 and `@socket.io/redis-emitter` 5: the adapter protocol
//! ([`Adapter`]) and the Redis protocol it travels on ([`resp`]), both sans-IO. A
//! driver (the async layer's `redis` module) owns the connections.

mod adapter;
mod details;
mod emitter;
pub mod forward;
pub mod resp;
pub mod slots;

pub use adapter::{
    Adapter, Command, Config, Event, Mode, ReplyTo, RequestError, RequestId, SubscriptionMode,
};
pub use details::socket_details;
pub use emitter::{Emitter, EMITTER_UID};
