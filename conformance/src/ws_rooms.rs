//! The application of `ws-rooms`: a chat with rooms on `/ws/chat`, a route that
//! authenticates on `/ws/private`, and `POST /connections/ID` that sends to one
//! connection, on the router of `wirestate-async` (the same on every runtime).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use wirestate_async::router::{Auth, Conn, ConnId, HttpRequest, HttpResponse, Route, Router};
use wirestate_engine::ws::Message;

/// The router `ws-rooms` serves.
pub fn router() -> Router {
    Router::builder()
        .route("/ws/chat", chat())
        .route("/ws/private", private())
        .fallback(connections)
        .build()
}

/// A message of the `/ws/chat` protocol, as the client sends it.
#[derive(Deserialize)]
struct ChatIn {
    #[serde(rename = "type")]
    kind: String,
    room: Option<String>,
    text: Option<String>,
    #[serde(rename = "includeSelf", default)]
    include_self: bool,
}

/// `chat-message`, as the server sends it.
#[derive(Serialize)]
struct ChatOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    from: &'a ConnId,
    text: &'a str,
}

/// `/ws/chat`: typed messages (`on_json` answers what is not JSON), rooms, broadcast.
fn chat() -> Route {
    Route::new()
        .heartbeat(Duration::from_secs(30), Duration::from_secs(30))
        .compression(1024)
        .on_connect(|conn| {
            let _ = conn.send_json(&json!({"type": "connected", "id": conn.id()}));
        })
        .on_json(on_chat_message)
        .on_close(|conn, _code, _reason| {
            conn.broadcast()
                .send_json(&json!({"type": "user-left", "id": conn.id()}))
                .ok();
        })
}

fn on_chat_message(conn: &Conn, message: ChatIn) {
    match (message.kind.as_str(), message.room) {
        ("join-room", Some(room)) => match conn.join(&room) {
            Ok(true) => {
                let joined = json!({"type": "user-joined", "id": conn.id(), "room": room});
                conn.broadcast().to(room).send_json(&joined).ok();
            }
            Ok(false) => {}
            Err(e) => {
                let _ = conn.send_json(&json!({"type": "error", "error": e.to_string()}));
            }
        },
        ("leave-room", Some(room)) => {
            conn.leave(&room);
        }
        ("message", room) => {
            let Some(text) = message.text else { return };
            let chat = ChatOut {
                kind: "chat-message",
                from: conn.id(),
                text: &text,
            };
            let mut to = conn.broadcast().include_self(message.include_self);
            if let Some(room) = room {
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
