//! The demo's application: namespace `/chat`, built from the conventions wirestate
//! ports from FoalTS, Enfyra and Ignis. The `demo` binary serves it; its protocol
//! is a stable interface (the npm and PyPI scenarios in `interop.sh demo` and the
//! harness tests in `tests/demo.rs` check it):
//!
//! * `authenticate` `{name}` (1–32 of `[a-z0-9_-]`) within 10 s of connecting, or
//!   the socket is disconnected. Success: `authenticated` `{id, name}`, and the
//!   socket joins `lobby` and `user:<name>`; a bad name: `unauthenticated`
//!   `{message}`. Before it, every other event is answered `UNAUTHENTICATED`.
//! * `join` / `leave` `{rooms:[..]}` → `{status:'ok', data:{joined|left:[..],
//!   denied:[..]}}`; only `lobby` and `room-[a-z0-9-]{1,32}` are allowed.
//! * `chat` `{room, text}` (schema-validated) → `{status:'ok', data:{id, at}}` (`id`:
//!   `<start>-<n>`, unique across restarts), and
//!   every socket in `room`, the sender's included, gets `message` `{id, room,
//!   from, text, at}`; a room the socket is not in: `NOT_IN_ROOM`.
//! * `dm` `{to, text}` → every socket of user `to` gets `dm` `{from, text, at}`;
//!   `{status:'ok', data:{delivered:N}}`.
//! * `job` `{n}` (0–30) → `{queued:true, requestId, eventName:'job'}` at once, then
//!   after `n` × 100 ms `ws:result` `{requestId, result:{n}}`; `n` = 13 fails with
//!   `ws:error` `{requestId, error:{code:'JOB_FAILED', message}}`.
//! * `who` → `{status:'ok', data:{users:[..]}}`: the users online on this server;
//!   every socket of `/chat` gets `presence` `{user, online, users}` when a user's
//!   first socket signs in or its last one leaves.
//! * `boom` panics: the ack is the generic `INTERNAL_SERVER_ERROR`.
//!
//! The page at `/` ([`web`](crate::web)) is a client of this protocol.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use wirestate_async::sio::{
    AppError, AuthChallenge, Authenticated, Controller, Handler, Schema, Socket, SocketIo,
};

/// The demo's namespace.
pub const NAMESPACE: &str = "/chat";

/// A valid user name: 1–32 of `[a-z0-9_-]`.
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A room a client may join or leave: `lobby` or `room-[a-z0-9-]{1,32}`.
pub fn allowed_room(room: &str) -> bool {
    room == "lobby"
        || room.strip_prefix("room-").is_some_and(|rest| {
            (1..=32).contains(&rest.len())
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn schema(value: Value) -> Schema {
    // The schemas below are constants: they compile.
    Schema::new(&value).unwrap_or_else(|e| panic!("demo schema: {e}"))
}

/// The socket's user name (set by `authenticate`).
fn name(socket: &Socket) -> String {
    socket.user().map(|u| u.to_string()).unwrap_or_default()
}

type Result = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The users online on this server, sorted.
fn users_online(io: &SocketIo) -> Vec<String> {
    let mut users: Vec<String> = io.users_online().iter().map(|u| u.to_string()).collect();
    users.sort();
    users
}

/// Registers the demo's `/chat` namespace on `io`.
pub fn setup(io: &SocketIo) {
    let ids = std::sync::Arc::new(AtomicU64::new(0));
    // Message ids are `<start>-<n>`: unique across restarts of the demo, which a page
    // that reconnects sees.
    let boot = now_ms();
    let chat = io.of(NAMESPACE);
    chat.auth_challenge(
        AuthChallenge::new(|socket, payload: Value| async move {
            let name = payload.get("name").and_then(Value::as_str).unwrap_or("");
            if !valid_name(name) {
                return Err(AppError::new(
                    "INVALID_NAME",
                    "A name is 1 to 32 characters of a-z, 0-9, _ and -.",
                ));
            }
            Ok(Authenticated::new(json!({"id": socket.id().as_str(), "name": name})).user(name))
        })
        .timeout(Duration::from_secs(10))
        .default_rooms(["lobby"])
        .room_policy(|_socket, room| allowed_room(room)),
    );
    let chat_handler = Handler::new(move |socket, msg| {
        let ids = ids.clone();
        async move {
            let body: Value = msg.data()?;
            let room = body["room"].as_str().unwrap_or_default();
            if !socket.rooms().iter().any(|r| &**r == room) {
                return Err(AppError::new(
                    "NOT_IN_ROOM",
                    format!("Join room {room} before sending to it."),
                )
                .into());
            }
            let id = format!("{boot}-{}", ids.fetch_add(1, Ordering::Relaxed));
            let at = now_ms();
            socket.io().of(NAMESPACE).to(room.to_owned()).emit(
                "message",
                &json!({"id": id, "room": room, "from": name(&socket), "text": body["text"], "at": at}),
            )?;
            msg.ack_ok(&json!({"id": id, "at": at}))?;
            Result::Ok(())
        }
    })
    .validate(schema(json!({
        "type": "object",
        "properties": {
            "room": {"type": "string"},
            "text": {"type": "string", "minLength": 1, "maxLength": 500}
        },
        "required": ["room", "text"],
        "additionalProperties": false
    })));
    let dm = Handler::new(|socket, msg| async move {
        let body: Value = msg.data()?;
        let to = body["to"].as_str().unwrap_or_default();
        let delivered = socket.io().emit_to_user(
            to,
            "dm",
            &json!({"from": name(&socket), "text": body["text"], "at": now_ms()}),
        )?;
        msg.ack_ok(&json!({ "delivered": delivered }))?;
        Result::Ok(())
    })
    .validate(schema(json!({
        "type": "object",
        "properties": {
            "to": {"type": "string", "minLength": 1, "maxLength": 32},
            "text": {"type": "string", "minLength": 1, "maxLength": 500}
        },
        "required": ["to", "text"],
        "additionalProperties": false
    })));
    let job = Handler::queued(|socket, msg| async move {
        let n = msg.data::<Value>()?["n"].as_u64().unwrap_or(0);
        socket.io().sleep(Duration::from_millis(100 * n)).await;
        if n == 13 {
            return Err(AppError::new("JOB_FAILED", "Job 13 always fails.").into());
        }
        std::result::Result::<Value, Box<dyn std::error::Error + Send + Sync>>::Ok(
            json!({ "n": n }),
        )
    })
    .validate(schema(json!({
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 30}},
        "required": ["n"]
    })));
    let weak = io.downgrade();
    io.on_presence(move |user, online| {
        if let Some(io) = weak.upgrade() {
            let users = users_online(&io);
            let _ = io.of(NAMESPACE).emit(
                "presence",
                &json!({"user": user, "online": online, "users": users}),
            );
        }
    });
    chat.controller(
        Controller::new()
            .handle("chat", chat_handler)
            .on("who", |socket, msg| async move {
                msg.ack_ok(&json!({ "users": users_online(socket.io()) }))
            })
            .handle("dm", dm)
            .handle("job", job)
            .on("boom", |_socket, _msg| async move {
                if true {
                    panic!("boom: the demo's handler that panics");
                }
            }),
    );
}
