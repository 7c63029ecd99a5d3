//! `eio-server --runtime tokio|smol --addr HOST:PORT`: an Engine.IO server configured
//! like the reference server of the official engine.io-protocol test suite — path
//! `/engine.io/`, pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1000000, CORS `*`,
//! EIO 3 and 4 — that echoes every message. With `--tls-cert FILE --tls-key FILE`
//! (PEM) it serves `https://` and `wss://` only.

use std::time::Duration;

use wirestate_async::EioServer;
use wirestate_conformance::{init_tracing, Args, Runtime};
use wirestate_engine::eio::{Config, Cors, Event};

const USAGE: &str =
    "eio-server [--runtime tokio|smol] [--addr HOST:PORT] [--tls-cert FILE --tls-key FILE]";

fn config() -> Config {
    Config::default()
        .path("/engine.io/")
        .heartbeat(Duration::from_millis(300), Duration::from_millis(200))
        .max_payload(1_000_000)
        .cors(Cors::any())
        .allow_eio3(true)
}

/// Echoes every message back to its session.
async fn echo(server: EioServer) {
    loop {
        if let Event::Message { sid, data } = server.next_event().await {
            let _ = server.send(&sid, data);
        }
    }
}

fn main() -> std::io::Result<()> {
    init_tracing();
    let args = Args::parse(USAGE, "127.0.0.1:3000");
    match args.runtime {
        Runtime::Tokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let server = wirestate_tokio::eio::server(config())?;
                let listener = tokio::net::TcpListener::bind(args.addr).await?;
                eprintln!("eio-server (tokio) listening on {}", listener.local_addr()?);
                tokio::spawn(echo(server.clone()));
                match &args.tls {
                    Some((cert, key)) => {
                        let tls = wirestate_tokio::tls::TlsAcceptor::from_pem_files(cert, key)?;
                        wirestate_tokio::eio::serve_tls(server, listener, tls).await
                    }
                    None => wirestate_tokio::eio::serve(server, listener).await,
                }
            }),
        Runtime::Smol => smol::block_on(async {
            let server = wirestate_smol::eio::server(config())?;
            let listener = smol::net::TcpListener::bind(args.addr).await?;
            eprintln!("eio-server (smol) listening on {}", listener.local_addr()?);
            smol::spawn(echo(server.clone())).detach();
            match &args.tls {
                Some((cert, key)) => {
                    let tls = wirestate_smol::tls::TlsAcceptor::from_pem_files(cert, key)?;
                    wirestate_smol::eio::serve_tls(server, listener, tls).await
                }
                None => wirestate_smol::eio::serve(server, listener).await,
            }
        }),
    }
}
