//! `bench-server --impl NAME --addr HOST:PORT`: an echo server on a single-threaded
//! runtime, for load runs side by side.
//!
//! * WebSocket echo: `wirestate-tokio`, `wirestate-smol`, `wirestate-tokio-router` (a
//!   [`Router`](wirestate_async::router::Router) route on `/` whose `on_message`
//!   sends the message back, as plain WebSocket applications are written), and (built with
//!   `--features peers`) `fastwebsockets`, `tokio-websockets`, `tokio-tungstenite`;
//!   messages are echoed as they come, uncompressed. `wirestate-tokio-deflate` is
//!   `wirestate-tokio` with permessage-deflate accepted (`DeflateConfig::default()`:
//!   level 6, messages under 1 KiB sent plain), for the compressed echo case.
//! * Socket.IO on `/socket.io/`: `sio-wirestate-tokio` (the raw payload handed back:
//!   `take_payload` / `ack_payload`), `sio-wirestate-tokio-typed` (handlers as users
//!   write them: the argument read as a `serde_json::Value`, the ack serialised from
//!   it), and with `--features peers`
//!   `sio-wirestate-axum` (the same server mounted in axum through the tower layer)
//!   and `sio-socketioxide` (socketioxide on axum). Every socket joins room `r`; event
//!   `echo` is acked with its argument, and event `bcast` is forwarded as `msg` to room
//!   `r` except the sender (`socket.to("r").emit("msg", data)`).
//!
//! `sio-wirestate-tokio-sharded` is the typed server run by `serve_sharded`, one shard
//! per core (`--shards N` for another count): its own threads, not this runtime.
//!
//! `--redis URL` joins `sio-wirestate-tokio` to a cluster on that Redis (for the
//! cluster benchmark, `benches/cluster.sh`). `--admin` instruments it for
//! `@socket.io/admin-ui` (development mode, no UI connected): what that costs a server
//! nobody watches.
//!
//! Every socket has `TCP_NODELAY`.

use std::io;
use std::sync::Arc;

use wirestate_engine::ws::Config;

fn usage() -> ! {
    eprintln!(
        "usage: bench-server --impl NAME --addr HOST:PORT [--redis URL] [--admin] [--shards N]"
    );
    std::process::exit(2)
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut name, mut addr) = (String::new(), "127.0.0.1:9100".to_owned());
    let mut redis = None;
    let mut admin = false;
    let mut shards = 0;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--shards" => {
                shards = (args.next().and_then(|n| n.parse().ok())).unwrap_or_else(|| usage())
            }
            "--impl" => name = args.next().unwrap_or_else(|| usage()),
            "--addr" => addr = args.next().unwrap_or_else(|| usage()),
            "--redis" => redis = Some(args.next().unwrap_or_else(|| usage())),
            "--admin" => admin = true,
            _ => usage(),
        }
    }
    let mut config = Config::default().max_message_size(64 << 20);
    if let Some(base) = name.strip_suffix("-deflate") {
        name = base.to_owned();
        config = config.deflate(wirestate_engine::ws::DeflateConfig::default());
    }
    let config = Arc::new(config);
    if name == "wirestate-smol" {
        return smol::block_on(async {
            let listener = smol::net::TcpListener::bind(&addr).await?;
            eprintln!("{name} on {addr}");
            loop {
                let (stream, _) = listener.accept().await?;
                let config = config.clone();
                smol::spawn(async move {
                    stream.set_nodelay(true).ok();
                    let Ok(mut ws) = wirestate_smol::accept(stream, config).await else {
                        return;
                    };
                    while let Some(Ok(m)) = ws.recv().await {
                        if ws.send(m).await.is_err() {
                            break;
                        }
                    }
                })
                .detach();
            }
        });
    }
    if name == "sio-wirestate-tokio-sharded" {
        let listener = std::net::TcpListener::bind(&addr)?;
        let shards = wirestate_tokio::sio::serve_sharded(
            wirestate_tokio::sio::Config::default(),
            listener,
            shards,
            wirestate_benches::sio_typed_handlers,
        )?;
        eprintln!("{name} on {addr}, {} shards", shards.len());
        shards.wait();
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if name == "wirestate-tokio-router" {
        return rt.block_on(async move {
            use wirestate_async::router::{Route, Router};
            let router = Router::builder()
                .route(
                    "/",
                    Route::new().on_message(|conn, message| {
                        let _ = conn.send(message);
                    }),
                )
                .build();
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            eprintln!("{name} on {addr}");
            wirestate_tokio::router::serve(router, listener).await
        });
    }
    if name == "sio-wirestate-tokio" || name == "sio-wirestate-tokio-typed" {
        let typed = name.ends_with("-typed");
        return rt.block_on(async move {
            let io = if typed {
                wirestate_benches::sio_typed_server()?
            } else {
                wirestate_benches::sio_raw_server()?
            };
            if admin {
                io.instrument(wirestate_tokio::sio::AdminUi::new());
            }
            if let Some(url) = redis {
                let options = wirestate_tokio::sio::RedisOptions::new(&url)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
                wirestate_tokio::sio::redis(&io, options)?;
            }
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            eprintln!("{name} on {addr}");
            wirestate_tokio::sio::serve(io, listener).await
        });
    }
    #[cfg(feature = "peers")]
    if name == "sio-wirestate-axum" {
        return rt.block_on(async move {
            use axum::serve::ListenerExt;
            let io = wirestate_benches::sio_raw_server()?;
            let app = axum::Router::new().layer(wirestate_tokio::sio::layer(&io));
            let listener = tokio::net::TcpListener::bind(&addr).await?.tap_io(|tcp| {
                tcp.set_nodelay(true).ok();
            });
            eprintln!("{name} on {addr}");
            axum::serve(listener, app).await
        });
    }
    #[cfg(feature = "peers")]
    if name == "sio-socketioxide" {
        return rt.block_on(peers::socketioxide(addr));
    }
    if !wirestate_benches::TOKIO_ECHO_SERVERS.contains(&name.as_str()) {
        eprintln!("unknown implementation {name} (peers need --features peers)");
        std::process::exit(2);
    }
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        eprintln!("{name} on {addr}");
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            wirestate_benches::spawn_echo(&name, stream, config.clone());
        }
    })
}

/// The peers' Socket.IO server.
#[cfg(feature = "peers")]
mod peers {
    /// socketioxide on axum, with the same handlers as ours.
    pub(crate) async fn socketioxide(addr: String) -> std::io::Result<()> {
        use axum::serve::ListenerExt;
        let listener = tokio::net::TcpListener::bind(&addr).await?.tap_io(|tcp| {
            tcp.set_nodelay(true).ok();
        });
        eprintln!("sio-socketioxide on {addr}");
        axum::serve(listener, wirestate_benches::socketioxide_app()).await
    }
}
