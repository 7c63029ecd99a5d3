//! `sio-server --runtime tokio|smol --addr HOST:PORT [--recovery] [--write-timeout MS]
//! [--max-connections N]`: a Socket.IO server
//! configured like the reference server of the official socket.io-protocol test suite
//! — path `/socket.io/`, pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1000000,
//! connectTimeout 1000 ms, CORS `*`, EIO 3 and 4:
//!
//! * `/`: on connection emits `auth` with the handshake auth; answers `message` with
//!   `message-back` (same arguments) and `message-with-ack` through its ack (same
//!   arguments);
//! * `/custom`: on connection emits `auth`.
//!
//! For our own interop tests it also has (none of which the official suite touches):
//! on `/`, `join` (ack `"joined"`), `to-room` (`room-message` to the room's other
//! sockets), `ask-me` (the server asks the client with an ack and emits `answer` with
//! what came back), `disconnect-me`, `drop-me` (closes the connection without a
//! DISCONNECT: the client reconnects); `/secure` refusing clients without
//! `auth.token == "secret"` (`not authorized`, data `{"code":401}`); dynamic
//! namespaces `/dyn-*` greeting with `hello`. `--recovery` turns on
//! connection-state recovery (which appends an offset to emitted events, so the
//! official suite must run without it). `--write-timeout` and `--max-connections` set
//! those HTTP limits (defaults: 20 s, no cap) for the hardening tests.

use std::time::Duration;

use serde_json::json;
use wirestate_async::sio::{ConnectError, Socket, SocketIo};
use wirestate_conformance::{init_tracing, Args, Runtime};
use wirestate_engine::eio::{self, Cors};
use wirestate_engine::sio::{Config, Payload, Recovery};

const USAGE: &str = "sio-server [--runtime tokio|smol] [--addr HOST:PORT] [--recovery] \
                     [--write-timeout MS] [--max-connections N]";

fn config(recovery: bool) -> Config {
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

fn emit_auth(socket: &Socket) {
    let _ = socket.emit("auth", socket.auth());
}

/// Registers the namespaces and handlers.
fn setup(io: &SocketIo) {
    io.of("/").on_connection(|socket| async move {
        emit_auth(&socket);
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
                return Err("to-room needs a room".to_owned());
            }
            let room = payload.args.remove(0);
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
                Ok(payload) => Payload {
                    args: payload.args,
                    bins: payload.bins,
                },
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

fn main() -> std::io::Result<()> {
    init_tracing();
    let args = Args::parse(USAGE, "127.0.0.1:3000");
    let recovery = args.flags.iter().any(|f| f == "--recovery");
    let options =
        wirestate_async::sio::ServerOptions::from(config(recovery)).http_limits(args.http_limits());
    match args.runtime {
        Runtime::Tokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let io = wirestate_tokio::sio::server(options)?;
                setup(&io);
                let listener = tokio::net::TcpListener::bind(args.addr).await?;
                eprintln!("sio-server (tokio) listening on {}", listener.local_addr()?);
                wirestate_tokio::sio::serve(io, listener).await
            }),
        Runtime::Smol => smol::block_on(async {
            let io = wirestate_smol::sio::server(options)?;
            setup(&io);
            let listener = smol::net::TcpListener::bind(args.addr).await?;
            eprintln!("sio-server (smol) listening on {}", listener.local_addr()?);
            wirestate_smol::sio::serve(io, listener).await
        }),
    }
}
