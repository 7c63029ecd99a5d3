//! The Socket.IO application of `sio-server` (and of `axum-app`, which mounts the same
//! server in an axum app): its configuration and handlers, described in
//! `sio-server`'s documentation, and `axum-app`'s router.

use std::time::Duration;

use serde_json::json;
use wirestate_async::sio::{ConnectError, Socket, SocketIo};
use wirestate_engine::eio::{self, Cors};
use wirestate_engine::sio::{Config, Payload, Recovery};

/// The server's configuration (state recovery on with `recovery`).
pub fn config(recovery: bool) -> Config {
    let config = Config::default()
        .eio(
            eio::Config::default()
                .path("/socket.io/")
                .heartbeat(Duration::from_millis(300), Duration::from_millis(200))
                .max_payload(1_000_000)
                .cors(Cors::any())
                .allow_eio3(true),
        )
        .connect_timeout(Duration::from_millis(1000));
    if recovery {
        config.recovery(Recovery::default())
    } else {
        config
    }
}

/// The handlers of a server in a cluster: each reaches the whole cluster.
fn cluster_handlers(socket: &Socket) {
    type Res = Result<(), Box<dyn std::error::Error + Send + Sync>>;
    socket.on("broadcast-all", |socket, mut msg| async move {
        socket
            .io()
            .of("/")
            .emit_payload("broadcast", msg.take_payload())
    });
    socket.on("fetch-room", |socket, msg| async move {
        let room: String = msg.data()?;
        let found = socket.io().of("/").to(room).fetch_sockets().await;
        match found {
            Ok(sockets) => {
                let mut ids: Vec<String> = sockets.into_iter().map(|s| s.id).collect();
                ids.sort();
                msg.ack(&ids)?;
            }
            Err(e) => msg.ack(&json!({ "error": e.to_string() }))?,
        }
        Res::Ok(())
    });
    socket.on("server-side-emit", |socket, mut msg| async move {
        let (args, _) = msg.take_payload().into_parts();
        let answers = socket
            .io()
            .of("/")
            .server_side_emit_with_ack("ping", args)
            .await;
        match answers {
            Ok(all) => msg.ack(&all)?,
            Err(some) => msg.ack(&json!({ "error": "timeout", "responses": some }))?,
        }
        Res::Ok(())
    });
    socket.on("sockets-join", |socket, msg| async move {
        let room: String = msg.payload().get(0)?;
        let other: String = msg.payload().get(1)?;
        socket.io().of("/").to(room).sockets_join([other]);
        if msg.wants_ack() {
            msg.ack(&"ok")?;
        }
        Res::Ok(())
    });
    socket.on("disconnect-room", |socket, msg| async move {
        let room: String = msg.data()?;
        if msg.wants_ack() {
            msg.ack(&"ok")?;
        }
        socket.io().of("/").to(room).disconnect_sockets(false);
        Res::Ok(())
    });
    socket.on("count-acks", |socket, msg| async move {
        let answers = socket
            .io()
            .of("/")
            .sockets()
            .timeout(Duration::from_secs(1))
            .emit_with_ack("question", Payload::new())
            .collect()
            .await;
        let count = answers.iter().filter(|(_, r)| r.is_ok()).count();
        msg.ack(&count)?;
        Res::Ok(())
    });
}

fn emit_auth(socket: &Socket) {
    let _ = socket.emit("auth", socket.auth());
}

/// Registers the namespaces and handlers.
pub fn setup(io: &SocketIo) {
    setup_with(io, false);
}

/// Registers the namespaces and handlers; with `cluster`, also the handlers of a
/// server in a cluster (described in `sio-server`'s documentation). Attach the
/// cluster first.
pub fn setup_with(io: &SocketIo, cluster: bool) {
    if cluster {
        io.of("/").on_server_side_emit("ping", |_args, ack| {
            if let Some(ack) = ack {
                let _ = ack.send(&"pong");
            }
        });
    }
    io.of("/").on_connection(move |socket| async move {
        emit_auth(&socket);
        if cluster {
            cluster_handlers(&socket);
        }
        socket.on("message", |socket, mut msg| async move {
            socket.emit_payload("message-back", msg.take_payload())
        });
        socket.on("message-with-ack", |_socket, mut msg| async move {
            let payload = msg.take_payload();
            msg.ack_payload(payload)
        });
        socket.on("join", |socket, msg| async move {
            let room: String = msg.data()?;
            socket.join([room]);
            msg.ack(&"joined")?;
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        });
        socket.on("to-room", |socket, mut msg| async move {
            let mut payload = msg.take_payload();
            if payload.is_empty() {
                // The answer clients of this server know (not the error policy's).
                return msg.ack(&json!({"status": "error", "error": "to-room needs a room"}));
            }
            let room = payload.values_mut().remove(0);
            let room = room.as_str().unwrap_or_default().to_owned();
            let _ = socket.to(room).emit_payload("room-message", payload);
            Ok(())
        });
        socket.on("ask-me", |socket, _msg| async move {
            let answer = socket
                .emit_with_ack(
                    "ask",
                    Payload::new().arg(json!("question")),
                    Some(Duration::from_secs(5)),
                )
                .await;
            let reply = match answer {
                Ok(payload) => payload,
                Err(e) => Payload::new().arg(json!({ "error": e.to_string() })),
            };
            let _ = socket.emit_payload("answer", reply);
        });
        socket.on("disconnect-me", |socket, _msg| async move {
            socket.disconnect(false);
        });
        socket.on("drop-me", |socket, _msg| async move {
            socket.close_connection();
        });
    });
    io.of("/custom").on_connection(|socket| async move {
        emit_auth(&socket);
    });
    io.of("/secure")
        .middleware(|req| async move {
            if req.auth()["token"] == "secret" {
                req.set_data(json!({ "user": "alice" }));
                Ok(())
            } else {
                Err(ConnectError::new("not authorized").with_data(json!({ "code": 401 })))
            }
        })
        .on_connection(|socket| async move {
            let _ = socket.emit("welcome", &socket.data());
        });
    io.of_dynamic(|name| name.starts_with("/dyn-"))
        .on_connection(|socket| async move {
            let _ = socket.emit("hello", socket.nsp());
        });
}

/// `axum-app`'s application: `GET /health` and `POST /rooms/{room}/emit` (described in
/// its documentation), with `io` mounted through the tower layer, and the client's
/// address passed on from axum's `ConnectInfo` (serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`).
pub fn axum_router(io: wirestate_tokio::sio::SocketIo) -> axum::Router {
    use axum::extract::{ConnectInfo, Path, Request, State};
    use axum::http::StatusCode;
    use axum::routing::{get, post};

    async fn emit_to_room(
        State(io): State<wirestate_tokio::sio::SocketIo>,
        Path(room): Path<String>,
        body: String,
    ) -> StatusCode {
        match io.of("/").to(room).emit("room-message", &body) {
            Ok(_) => StatusCode::NO_CONTENT,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    axum::Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/rooms/{room}/emit", post(emit_to_room))
        .layer(wirestate_tokio::sio::layer(&io))
        // Outermost: the client's address reaches Socket.IO as a request extension.
        .layer(axum::middleware::map_request(
            |ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>, mut request: Request| async move {
                request.extensions_mut().insert(peer);
                request
            },
        ))
        .with_state(io)
}
