//! [`RedisEmitter`]: emits to the sockets of a Redis cluster from a process that is not
//! a Socket.IO server, as Node's `@socket.io/redis-emitter` does (and in its wire
//! format: Node and wirestate servers alike receive it).

use wirestate_engine::redis::{resp::Reply, Emitter};

use super::cluster::{SharedSlot, Slot};
use super::*;
use crate::redis::{run_link, Link, LinkHooks};
use crate::Clock as _;

/// Emits to a cluster's sockets through its Redis, with no server of its own: cheap to
/// clone. Operators (`of`, `to`, `except`, `volatile`, `compress`) return a new emitter.
#[derive(Clone)]
pub struct RedisEmitter {
    link: Arc<Link<Expect>>,
    emitter: Arc<Emitter>,
    target: Broadcast,
}

impl fmt::Debug for RedisEmitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisEmitter")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// An emit that could not be published.
#[derive(Debug)]
pub enum EmitterError {
    /// The arguments do not serialise to JSON.
    Json(serde_json::Error),
    /// Redis cannot be reached now (the emitter keeps reconnecting).
    Disconnected,
}

impl fmt::Display for EmitterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(e) => write!(f, "arguments are not JSON: {e}"),
            Self::Disconnected => f.write_str("redis cannot be reached"),
        }
    }
}

impl std::error::Error for EmitterError {}

impl From<serde_json::Error> for EmitterError {
    fn from(e: serde_json::Error) -> Self {
        Self::Json(e)
    }
}

pub(super) enum Expect {
    Nothing,
    Flushed(SharedSlot<bool>),
}

struct Hooks;

impl LinkHooks<Expect> for Hooks {
    fn connected(&self, _link: &Link<Expect>) {}

    fn reply(&self, reply: Reply, expected: Option<Expect>) {
        match expected {
            Some(Expect::Flushed(slot)) => Slot::set(&slot, true),
            Some(Expect::Nothing) | None => {
                if let Reply::Error(e) = reply {
                    tracing::warn!(error = %e, "redis refused a publish");
                }
            }
        }
    }

    fn disconnected(&self, unanswered: Vec<Expect>) {
        for e in unanswered {
            if let Expect::Flushed(slot) = e {
                Slot::set(&slot, false);
            }
        }
    }
}

/// An emitter on the Redis of `options` (its URL and key prefix): connects on `rt`,
/// waits up to `options`' request timeout for the first connection (an error if Redis
/// cannot be reached by then), and reconnects by itself afterwards.
pub async fn redis_emitter<R: Runtime>(
    rt: &R,
    options: RedisOptions,
) -> std::io::Result<RedisEmitter> {
    let link = Arc::new(Link::new(false));
    let (url, connector, key, wait) = options.parts();
    rt.spawn(run_link(
        rt.clone(),
        url,
        connector,
        link.clone(),
        Arc::new(Hooks),
        "emitter",
    ));
    let mut clock = rt.clock();
    let deadline = clock.now() + wait;
    while !link.is_connected() {
        if clock.now() >= deadline {
            link.close();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "redis cannot be reached",
            ));
        }
        crate::sleep(&mut clock, Duration::from_millis(10)).await;
    }
    Ok(RedisEmitter {
        link,
        emitter: Arc::new(Emitter::new(key)),
        target: Broadcast::nsp("/"),
    })
}

impl RedisEmitter {
    fn with(&self, target: Broadcast) -> Self {
        Self {
            link: self.link.clone(),
            emitter: self.emitter.clone(),
            target,
        }
    }

    /// The same emitter for namespace `nsp` (`/` by default).
    pub fn of(&self, nsp: &str) -> Self {
        let nsp = if nsp.starts_with('/') {
            nsp.to_owned()
        } else {
            format!("/{nsp}")
        };
        self.with(Broadcast {
            nsp: Some(Arc::from(nsp)),
            ..self.target.clone()
        })
    }

    /// Adds a room (`to` / `in`).
    pub fn to(&self, room: impl Into<Room>) -> Self {
        self.with(self.target.clone().to(room))
    }

    /// Excludes a room.
    pub fn except(&self, room: impl Into<Room>) -> Self {
        self.with(self.target.clone().except(room))
    }

    /// Drops the packet for clients that cannot take it now.
    pub fn volatile(&self) -> Self {
        self.with(self.target.clone().volatile())
    }

    /// WebSocket compression for the packet.
    pub fn compress(&self, yes: bool) -> Self {
        self.with(self.target.clone().compress(yes))
    }

    fn publish(&self, (channel, payload): (String, bytes::Bytes)) -> Result<(), EmitterError> {
        let args: [&[u8]; 3] = [b"PUBLISH", channel.as_bytes(), &payload];
        self.link
            .send(&args, Expect::Nothing)
            .map_err(|_| EmitterError::Disconnected)
    }

    /// Emits `name` with one argument to the selected sockets of every server.
    pub fn emit<T: Serialize + ?Sized>(&self, name: &str, data: &T) -> Result<(), EmitterError> {
        self.emit_payload(name, Payload::from_value(data)?)
    }

    /// Emits `name` with these arguments (JSON and binary).
    pub fn emit_payload(&self, name: &str, payload: Payload) -> Result<(), EmitterError> {
        self.publish(self.emitter.emit(&self.target, name, payload))
    }

    /// The selected sockets join `rooms`.
    pub fn sockets_join<I: IntoIterator<Item = R>, R: Into<Room>>(
        &self,
        rooms: I,
    ) -> Result<(), EmitterError> {
        let rooms: Vec<Room> = rooms.into_iter().map(Into::into).collect();
        self.publish(self.emitter.sockets_join(&self.target, &rooms))
    }

    /// The selected sockets leave `rooms`.
    pub fn sockets_leave<I: IntoIterator<Item = R>, R: Into<Room>>(
        &self,
        rooms: I,
    ) -> Result<(), EmitterError> {
        let rooms: Vec<Room> = rooms.into_iter().map(Into::into).collect();
        self.publish(self.emitter.sockets_leave(&self.target, &rooms))
    }

    /// Disconnects the selected sockets (`close`: their connections too).
    pub fn disconnect_sockets(&self, close: bool) -> Result<(), EmitterError> {
        self.publish(self.emitter.disconnect_sockets(&self.target, close))
    }

    /// `serverSideEmit`: emits `name` with `args` to every server of the namespace
    /// (without acks, as the reference).
    pub fn server_side_emit(&self, name: &str, args: Vec<Value>) -> Result<(), EmitterError> {
        let nsp = self.target.nsp.clone().unwrap_or_else(|| Arc::from("/"));
        self.publish(self.emitter.server_side_emit(&nsp, name, args))
    }

    /// Waits until everything published so far has reached Redis (before a process
    /// exits, say); `Err(Disconnected)` if the connection was lost first.
    pub async fn flush(&self) -> Result<(), EmitterError> {
        let slot = Slot::new();
        self.link
            .send(&["PING"], Expect::Flushed(slot.clone()))
            .map_err(|_| EmitterError::Disconnected)?;
        if Slot::take(&slot).await {
            Ok(())
        } else {
            Err(EmitterError::Disconnected)
        }
    }

    /// Closes the Redis connection.
    pub fn close(&self) {
        self.link.close();
    }
}
