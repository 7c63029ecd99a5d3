//! `axum-app --runtime tokio --addr HOST:PORT`: an axum 0.8 application on one port,
//! with the Socket.IO server of `sio-server` (same configuration, namespaces, handlers
//! and timings; `--recovery` and `--write-timeout` as there, the latter for upgraded
//! WebSockets: the rest of HTTP is axum's) mounted
//! through the tower layer at `/socket.io/`, beside the application's own routes:
//!
//! * `GET /health`: `200 ok` (text);
//! * `POST /rooms/{room}/emit` with a text body: emits `room-message` with the body to
//!   the room's sockets on `/` (an HTTP handler emitting to Socket.IO clients), `204`.
//!
//! axum runs on tokio only; `--runtime smol` is refused.

use std::net::SocketAddr;

use wirestate_conformance::sio_app::{axum_router, config, setup};
use wirestate_conformance::{init_tracing, Args, Runtime};

const USAGE: &str =
    "axum-app [--runtime tokio] [--addr HOST:PORT] [--recovery] [--write-timeout MS]";

fn main() -> std::io::Result<()> {
    init_tracing();
    let args = Args::parse(USAGE, "127.0.0.1:3000");
    if args.runtime != Runtime::Tokio || args.max_connections.is_some() || args.tls.is_some() {
        eprintln!("axum-app: axum runs on tokio only, in plaintext, with no connection cap\nusage: {USAGE}");
        std::process::exit(2);
    }
    let recovery = args.flags.iter().any(|f| f == "--recovery");
    let options =
        wirestate_async::sio::ServerOptions::from(config(recovery)).http_limits(args.http_limits());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let io = wirestate_tokio::sio::server(options)?;
            setup(&io);
            let listener = tokio::net::TcpListener::bind(args.addr).await?;
            eprintln!("axum-app (tokio) listening on {}", listener.local_addr()?);
            let app = axum_router(io).into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app).await
        })
}
