//! The application of `ws-rooms`: a chat with rooms on `/ws/chat`, a route that
//! authenticates on `/ws/private`, and `POST /connections/ID` that sends to one
//! connection, on the router of `wirestate-async` (the same on every runtime).

use std::time::Duration;

use serde_json::{json, Value};
use wirestate_async::router::{Auth, Conn, Flow, HttpRequest, HttpResponse, Route, Router};
use wirestate_engine::ws::Message;

/// The router `ws-rooms` serves.
pub fn router() -> Router {
    Router::builder()
        .route("/ws/chat", chat())
        .route("/ws/private", private())
        .fallback(connections)
        .build()
}

/// `/ws/chat`: a middleware answers what is not a JSON object, `on_message` handles
/// the rest.
fn chat() -> Route {
    Route::new()
        .heartbeat(Duration::from_secs(30), Duration::from_secs(30))
        .compression(1024)
        .on_connect(|conn| {
            let _ = conn.send_json(&json!({"type": "connected", "id": conn.id()}));
        })
        .middleware(|conn, message| match message.json::<Value>() {
            Ok(Value::Object(_)) => Flow::Next(message),
            _ => {
                let _ = conn.send_json(&json!({"type": "error", "error": "invalid JSON"}));
                Flow::Stop
            }
        })
        .on_message(on_chat_message)
        .on_close(|conn, _code, _reason| {
            conn.broadcast()
                .send_json(&json!({"type": "user-left", "id": conn.id()}))
                .ok();
        })
}

fn on_chat_message(conn: &Conn, message: Message) {
    let Ok(value) = message.json::<Value>() else {
        return;
    };
    let text_of = |key: &str| value.get(key).and_then(Value::as_str);
    match text_of("type") {
        Some("join-room") => {
            let Some(room) = text_of("room") else { return };
            match conn.join(room) {
                Ok(true) => {
                    let joined = json!({"type": "user-joined", "id": conn.id(), "room": room});
                    conn.broadcast().to(room).send_json(&joined).ok();
                }
                Ok(false) => {}
                Err(e) => {
                    let _ = conn.send_json(&json!({"type": "error", "error": e.to_string()}));
                }
            }
        }
        Some("leave-room") => {
            if let Some(room) = text_of("room") {
                conn.leave(room);
            }
        }
        Some("message") => {
            let Some(text) = text_of("text") else { return };
            let chat = json!({"type": "chat-message", "from": conn.id(), "text": text});
            let include_self = value.get("includeSelf").and_then(Value::as_bool) == Some(true);
            let mut to = conn.broadcast().include_self(include_self);
            if let Some(room) = text_of("room") {
                to = to.to(room);
            }
            to.send_json(&chat).ok();
        }
        _ => {}
    }
}

fn private() -> Route {
    Route::new()
        .auth(|hs| match hs.query_param("token").as_deref() {
            None | Some("") => Auth::close(4001, "No token provided"),
            Some("secret") => Auth::accept_with("alice".to_owned()),
            Some(_) => Auth::close(4002, "Invalid token"),
        })
        .on_connect(|conn| {
            let user = conn.auth::<String>().cloned().unwrap_or_default();
            let _ = conn.send_json(&json!({"type": "authenticated", "user": user}));
        })
}

/// `POST /connections/ID`: the body as a text message to connection ID.
fn connections(router: &Router, request: &HttpRequest) -> HttpResponse {
    let path = request.head.path();
    let Some(id) = path.strip_prefix("/connections/") else {
        return plain(404, "Not Found");
    };
    if request.head.method != "POST" {
        return plain(405, "use POST").header("Allow", "POST");
    }
    let Ok(text) = std::str::from_utf8(&request.body) else {
        return plain(400, "the body must be UTF-8 text");
    };
    match router.send(id, Message::text(text.to_owned())) {
        Ok(()) => plain(200, "sent"),
        Err(_) => plain(404, "no such connection"),
    }
}

fn plain(status: u16, body: &'static str) -> HttpResponse {
    HttpResponse::new(status)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(body)
}
