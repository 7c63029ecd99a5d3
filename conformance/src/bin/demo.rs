//! `demo [--runtime tokio|smol] [--addr HOST:PORT]`: a Socket.IO chat server (the
//! README's first command), on `http://127.0.0.1:3000` by default, namespace `/chat`:
//! post-connect `authenticate`, a room policy, schema-validated `chat`, `dm` to every
//! socket of a user, queued `job`s and a `boom` that panics. The protocol is in
//! `wirestate_conformance::demo`.
//!
//! Try it with socket.io-client (`io("http://127.0.0.1:3000/chat")`, then
//! `emitWithAck("authenticate", {name: "ann"})`) or python-socketio.

use wirestate_conformance::demo::setup;
use wirestate_conformance::{init_tracing, Args, Runtime};
use wirestate_engine::sio::Config;

const USAGE: &str = "demo [--runtime tokio|smol] [--addr HOST:PORT]";

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
