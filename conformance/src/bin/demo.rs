//! `demo [--runtime tokio|smol] [--addr HOST:PORT]`: a small Socket.IO chat server
//! (the README's first command), on `http://127.0.0.1:3000` by default.
//!
//! * Connect middleware: `auth.name` must be a non-empty string of at most 32
//!   characters, or the client gets `connect_error` "a name is required".
//! * Every socket joins `lobby`; the others there get `joined` with the name.
//! * `join(room, ack)`: joins a room; acks `{"status":"ok","rooms":[...]}`.
//! * `chat({room, text}, ack)`: the room's other members get `chat` with
//!   `{from, room, text}`; acks `{"status":"ok","delivered":N}`.
//! * On disconnect, `lobby` gets `left`.
//!
//! Try it with socket.io-client (`io("http://127.0.0.1:3000", {auth: {name: "ann"}})`)
//! or python-socketio.

use serde_json::{json, Value};
use wirestate_async::sio::{ConnectError, SocketIo};
use wirestate_conformance::{init_tracing, Args, Runtime};
use wirestate_engine::sio::Config;

const USAGE: &str = "demo [--runtime tokio|smol] [--addr HOST:PORT]";

fn name_of(auth: &Value) -> Option<String> {
    let name = auth.get("name")?.as_str()?.trim();
    (!name.is_empty() && name.chars().count() <= 32).then(|| name.to_owned())
}

fn setup(io: &SocketIo) {
    let chat = io.of("/");
    chat.middleware(|req| async move {
        match name_of(req.auth()) {
            Some(name) => {
                req.set_data(json!({ "name": name }));
                Ok(())
            }
            None => {
                Err(ConnectError::new("a name is required")
                    .with_data(json!({ "field": "auth.name" })))
            }
        }
    });
    chat.on_connection(|socket| async move {
        let name = socket.data()["name"].clone();
        socket.join(["lobby"]);
        let _ = socket.to("lobby").emit("joined", &name);
        socket.on("join", |socket, msg| async move {
            let room: String = msg.data()?;
            socket.join([room]);
            let rooms: Vec<String> = socket.rooms().iter().map(|r| r.to_string()).collect();
            msg.ack(&json!({ "status": "ok", "rooms": rooms }))?;
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        });
        socket.on("chat", |socket, msg| async move {
            let body: Value = msg.data()?;
            let (Some(room), Some(text)) = (body["room"].as_str(), body["text"].as_str()) else {
                return Err("chat needs {room, text}".into());
            };
            let from = socket.data()["name"].clone();
            let delivered = socket
                .to(room.to_owned())
                .emit("chat", &json!({ "from": from, "room": room, "text": text }))?;
            msg.ack(&json!({ "status": "ok", "delivered": delivered }))?;
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        });
        socket.on_disconnect(|socket, reason| async move {
            let name = socket.data()["name"].clone();
            let _ = socket
                .io()
                .sockets()
                .to("lobby")
                .emit("left", &json!({ "name": name, "reason": reason.as_str() }));
        });
    });
}

fn main() -> std::io::Result<()> {
    init_tracing();
    let args = Args::parse(USAGE, "127.0.0.1:3000");
    match args.runtime {
        Runtime::Tokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let io = wirestate_tokio::sio::server(Config::default())?;
                setup(&io);
                let listener = tokio::net::TcpListener::bind(args.addr).await?;
                eprintln!(
                    "Socket.IO chat demo (tokio) on http://{}",
                    listener.local_addr()?
                );
                // Ctrl-C: a graceful shutdown (every client gets a DISCONNECT first).
                let stopping = io.clone();
                tokio::spawn(async move {
                    if tokio::signal::ctrl_c().await.is_ok() {
                        eprintln!("shutting down");
                        stopping.shutdown().await;
                    }
                });
                wirestate_tokio::sio::serve(io, listener).await
            }),
        Runtime::Smol => smol::block_on(async {
            let io = wirestate_smol::sio::server(Config::default())?;
            setup(&io);
            let listener = smol::net::TcpListener::bind(args.addr).await?;
            eprintln!(
                "Socket.IO chat demo (smol) on http://{}",
                listener.local_addr()?
            );
            wirestate_smol::sio::serve(io, listener).await
        }),
    }
}
