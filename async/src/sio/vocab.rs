//! What handlers return and meet: handler results, emit and connect errors, the
//! connect middleware's request.

use super::*;

/// What a handler's future may return: nothing, or a `Result` whose error is answered
/// through the event's ack (if the client asked for one) as the server's error policy
/// renders it (see [`HandlerError`]).
pub trait HandlerResult: Send + 'static {
    /// `Err` if the handler failed.
    fn into_result(self) -> Result<(), HandlerError>;
}

impl HandlerResult for () {
    fn into_result(self) -> Result<(), HandlerError> {
        Ok(())
    }
}

impl<T: Send + 'static, E: fmt::Display + Send + 'static> HandlerResult for Result<T, E> {
    fn into_result(self) -> Result<(), HandlerError> {
        self.map(drop).map_err(HandlerError::from_error)
    }
}

/// The code and message of an internal error, as clients see it by default.
pub const INTERNAL_SERVER_ERROR: &str = "INTERNAL_SERVER_ERROR";

/// What clients read instead of an internal error's own message.
pub const INTERNAL_SERVER_ERROR_MESSAGE: &str = "An internal server error has occurred.";

/// An error a handler returns on purpose: its code, message and any extra fields reach
/// the client as they are, in the ack `{"status":"error","error":{"code":..,
/// "message":..}}` (FoalTS's shape). Return it as the handler's error, directly or
/// boxed (`Box<dyn Error + Send + Sync>`); any other error is internal.
#[derive(Clone, Debug, PartialEq)]
pub struct AppError {
    code: String,
    message: String,
    fields: Map<String, Value>,
}

impl AppError {
    /// An error with `code` (`NOT_IN_ROOM`, say) and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            fields: Map::new(),
        }
    }

    /// Adds a field to the error object (`payload`, `retryAfter`, ...); `code` and
    /// `message` cannot be replaced this way.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        if name != "code" && name != "message" {
            self.fields.insert(name.to_owned(), value.into());
        }
        self
    }

    /// The code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error object the client gets: `{"code":..,"message":..,...fields}`.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("code".into(), Value::from(self.code.as_str()));
        m.insert("message".into(), Value::from(self.message.as_str()));
        for (k, v) in &self.fields {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for AppError {}

/// Why a handler failed, as the error policy sees it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum HandlerError {
    /// An [`AppError`]: sent to the client as it is.
    App(AppError),
    /// Any other error: internal. Clients get the generic `INTERNAL_SERVER_ERROR`
    /// unless the server runs with [`ServerOptions::debug_errors`].
    Internal {
        /// The error's type, shortened (`ParseIntError`).
        name: String,
        /// Its `Display` text.
        message: String,
    },
    /// The handler panicked (with this message): internal too.
    Panic(String),
    /// The payload failed validation ([`Handler::validate`]): these errors, in
    /// Ajv's shape, reach the client as FoalTS's `VALIDATION_PAYLOAD_ERROR`.
    Validation(Vec<Value>),
}

impl HandlerError {
    /// `error` as the policy sees it: an [`AppError`] (also boxed as
    /// `Box<dyn Error + Send + Sync>`) is the application's; anything else internal.
    pub fn from_error<E: fmt::Display + 'static>(error: E) -> Self {
        let any: &dyn std::any::Any = &error;
        if let Some(handler) = any.downcast_ref::<HandlerError>() {
            return handler.clone();
        }
        if let Some(app) = any.downcast_ref::<AppError>() {
            return Self::App(app.clone());
        }
        if let Some(boxed) = any.downcast_ref::<Box<dyn std::error::Error + Send + Sync>>() {
            if let Some(app) = boxed.downcast_ref::<AppError>() {
                return Self::App(app.clone());
            }
        }
        let full = std::any::type_name::<E>();
        let name = match full {
            n if n.starts_with("alloc::boxed::Box<dyn") => "Error",
            n => n
                .split('<')
                .next()
                .unwrap_or(n)
                .rsplit("::")
                .next()
                .unwrap_or(n),
        };
        Self::Internal {
            name: name.to_owned(),
            message: error.to_string(),
        }
    }

    /// Whether the client gets the generic answer (unless in debug).
    pub fn is_internal(&self) -> bool {
        matches!(self, Self::Internal { .. } | Self::Panic(_))
    }

    /// The error object the client gets: the [`AppError`]'s own;
    /// `{"code":"VALIDATION_PAYLOAD_ERROR","payload":[..]}` for a payload that failed
    /// validation; for an internal
    /// error `{"code":"INTERNAL_SERVER_ERROR","message":"An internal server error has
    /// occurred."}`, or with `debug` its name and own message.
    pub fn render(&self, debug: bool) -> Value {
        let (name, message) = match self {
            Self::App(app) => return app.to_value(),
            Self::Validation(errors) => {
                let mut m = Map::new();
                m.insert("code".into(), Value::from(VALIDATION_PAYLOAD_ERROR));
                m.insert("payload".into(), Value::Array(errors.clone()));
                return Value::Object(m);
            }
            Self::Internal { name, message } => (name.as_str(), message.as_str()),
            Self::Panic(message) => ("panic", message.as_str()),
        };
        let mut m = Map::new();
        m.insert("code".into(), Value::from(INTERNAL_SERVER_ERROR));
        if debug {
            m.insert("name".into(), Value::from(name));
            m.insert("message".into(), Value::from(message));
        } else {
            m.insert("message".into(), Value::from(INTERNAL_SERVER_ERROR_MESSAGE));
        }
        Value::Object(m)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::App(app) => app.fmt(f),
            Self::Internal { name, message } => write!(f, "{name}: {message}"),
            Self::Panic(message) => write!(f, "panic: {message}"),
            Self::Validation(errors) => {
                write!(f, "{VALIDATION_PAYLOAD_ERROR}: {} error(s)", errors.len())
            }
        }
    }
}

impl std::error::Error for HandlerError {}

impl From<AppError> for HandlerError {
    fn from(e: AppError) -> Self {
        Self::App(e)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn app_errors_go_through_and_the_rest_is_internal() {
        let app = AppError::new("NOT_IN_ROOM", "join it first").with("room", "r1");
        let direct = HandlerError::from_error(app.clone());
        assert_eq!(direct, HandlerError::App(app.clone()));
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(app.clone());
        assert_eq!(HandlerError::from_error(boxed), HandlerError::App(app));
        assert_eq!(
            direct.render(false),
            json!({"code": "NOT_IN_ROOM", "message": "join it first", "room": "r1"})
        );
        let parse = "x".parse::<u32>().expect_err("not a number");
        let internal = HandlerError::from_error(parse);
        assert!(internal.is_internal());
        assert_eq!(
            internal.render(false),
            json!({"code": "INTERNAL_SERVER_ERROR", "message": "An internal server error has occurred."})
        );
        assert_eq!(
            internal.render(true),
            json!({"code": "INTERNAL_SERVER_ERROR", "name": "ParseIntError", "message": "invalid digit found in string"})
        );
        let boxed: Box<dyn std::error::Error + Send + Sync> = "db down".into();
        assert_eq!(
            HandlerError::from_error(boxed).render(true)["name"],
            json!("Error")
        );
        assert_eq!(
            HandlerError::Panic("oops".into()).render(true),
            json!({"code": "INTERNAL_SERVER_ERROR", "name": "panic", "message": "oops"})
        );
        // `code` and `message` are the error's own, whatever `with` is given.
        let guarded = AppError::new("A", "b")
            .with("code", "X")
            .with("message", "Y");
        assert_eq!(guarded.to_value(), json!({"code": "A", "message": "b"}));
    }
}
