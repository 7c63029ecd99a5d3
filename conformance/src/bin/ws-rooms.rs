//! `ws-rooms --runtime tokio|smol --addr HOST:PORT`: plain WebSocket applications on
//! the router (see `wirestate_conformance::ws_rooms`), for real clients and the
//! broadcast benchmark.
//!
//! * `/ws/chat`: `{"type":"connected","id":ID}` on connect; JSON messages `join-room`,
//!   `leave-room` and `message` (to a room, or to every `/ws/chat` connection; the
//!   sender too with `"includeSelf":true`); `user-joined` and `user-left` to the
//!   others; `{"type":"error","error":"invalid JSON"}` for what is not JSON. Heartbeat
//!   30 s, compression from 1024 bytes.
//! * `/ws/private?token=T`: 4001 "No token provided", 4002 "Invalid token", or
//!   `{"type":"authenticated","user":"alice"}` for `secret`.
//! * `POST /connections/ID`: the body as a text message to that connection (200), or
//!   404.

use wirestate_conformance::{init_tracing, ws_rooms, Args, Runtime};

const USAGE: &str = "ws-rooms [--runtime tokio|smol] [--addr HOST:PORT]";

fn main() -> std::io::Result<()> {
    init_tracing();
    let args = Args::parse(USAGE, "127.0.0.1:8080");
    let router = ws_rooms::router();
    match args.runtime {
        Runtime::Tokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let listener = tokio::net::TcpListener::bind(args.addr).await?;
                eprintln!("ws-rooms (tokio) listening on {}", listener.local_addr()?);
                wirestate_tokio::router::serve(router, listener).await
            }),
        Runtime::Smol => smol::block_on(async {
            let listener = smol::net::TcpListener::bind(args.addr).await?;
            eprintln!("ws-rooms (smol) listening on {}", listener.local_addr()?);
            wirestate_smol::router::serve(router, listener).await
        }),
    }
}
