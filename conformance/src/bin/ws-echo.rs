//! `ws-echo --runtime tokio|smol --addr HOST:PORT`: a WebSocket server that echoes every
//! message, for the Autobahn|Testsuite and for load tests. Single-threaded.

use std::rc::Rc;
use std::sync::Arc;

use wirestate_conformance::{echo, init_tracing, ws_config, Args, Runtime};
use wirestate_engine::ws::Config;

const USAGE: &str = "ws-echo [--runtime tokio|smol] [--addr HOST:PORT] [--no-deflate]";

fn main() -> std::io::Result<()> {
    init_tracing();
    let args = Args::parse(USAGE, "127.0.0.1:9001");
    let config = Arc::new(ws_config(&args));
    match args.runtime {
        Runtime::Tokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(serve_tokio(args, config)),
        Runtime::Smol => {
            let ex = Rc::new(smol::LocalExecutor::new());
            smol::block_on(ex.run(serve_smol(args, config, ex.clone())))
        }
    }
}

async fn serve_tokio(args: Args, config: Arc<Config>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "ws-echo (tokio) listening");
    eprintln!("ws-echo (tokio) listening on {}", listener.local_addr()?);
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            loop {
                // Never an error: overload (EMFILE) pauses accepting, it does not end it.
                let (stream, _) = wirestate_tokio::next_connection(&listener).await;
                let _ = stream.set_nodelay(true);
                let config = config.clone();
                tokio::task::spawn_local(async move {
                    if let Ok(mut ws) = wirestate_tokio::accept(stream, config).await {
                        echo(&mut ws).await;
                    }
                });
            }
        })
        .await
}

async fn serve_smol(
    args: Args,
    config: Arc<Config>,
    ex: Rc<smol::LocalExecutor<'_>>,
) -> std::io::Result<()> {
    let listener = smol::net::TcpListener::bind(args.addr).await?;
    eprintln!("ws-echo (smol) listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = wirestate_smol::next_connection(&listener).await;
        let _ = stream.set_nodelay(true);
        let config = config.clone();
        ex.spawn(async move {
            if let Ok(mut ws) = wirestate_smol::accept(stream, config).await {
                echo(&mut ws).await;
            }
        })
        .detach();
    }
}
