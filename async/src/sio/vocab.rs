//! What handlers return and meet: handler results, emit and connect errors, the
//! connect middleware's request.

use super::*;

/// What a handler's future may return: nothing, or a `Result` whose error is reported
/// to the client through the event's ack (if it asked for one).
pub trait HandlerResult: Send + 'static {
    /// `Err` with a message if the handler failed.
    fn into_result(self) -> Result<(), String>;
}

impl HandlerResult for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<T: Send + 'static, E: fmt::Display + Send + 'static> HandlerResult for Result<T, E> {
    fn into_result(self) -> Result<(), String> {
        self.map(drop).map_err(|e| e.to_string())
    }
}

/// Why an emit did not happen.
#[derive(Debug)]
pub enum EmitError {
    /// The data does not serialise to JSON.
    Serialize(serde_json::Error),
    /// The socket is gone.
    Disconnected,
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Serialize(e) => write!(f, "cannot serialise the payload: {e}"),
            Self::Disconnected => f.write_str("the socket is disconnected"),
        }
    }
}

impl std::error::Error for EmitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Serialize(e) => Some(e),
            Self::Disconnected => None,
        }
    }
}

impl From<serde_json::Error> for EmitError {
    fn from(e: serde_json::Error) -> Self {
        Self::Serialize(e)
    }
}

/// A connect middleware's refusal: the client gets CONNECT_ERROR with `message` and
/// `data` (its `connect_error` event's `err.message` and `err.data`).
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectError {
    /// The message.
    pub message: String,
    /// Extra data.
    pub data: Option<Value>,
}

impl ConnectError {
    /// A refusal with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            data: None,
        }
    }

    /// Adds `data`.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConnectError {}

/// A CONNECT waiting for the connect middleware.
#[derive(Clone)]
pub struct ConnectRequest {
    pub(super) info: Arc<ConnectInfo>,
    pub(super) data: Arc<Mutex<Value>>,
}

impl fmt::Debug for ConnectRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectRequest")
            .field("nsp", &self.info.nsp)
            .field("auth", &self.info.auth)
            .finish_non_exhaustive()
    }
}

impl ConnectRequest {
    /// The namespace.
    pub fn nsp(&self) -> &str {
        &self.info.nsp
    }

    /// The CONNECT packet's auth payload.
    pub fn auth(&self) -> &Value {
        &self.info.auth
    }

    /// The Engine.IO handshake: headers and query of the first request.
    pub fn handshake(&self) -> &Handshake {
        &self.info.handshake
    }

    /// Sets the socket's data (what [`Socket::data`] returns once connected).
    pub fn set_data(&self, data: Value) {
        *lock(&self.data) = data;
    }
}
