//! `ws-echo --runtime tokio|smol --addr HOST:PORT`: a WebSocket server that echoes every
//! message, for the Autobahn|Testsuite and for load tests. Single-threaded. With
//! `--tls-cert FILE --tls-key FILE` (PEM) it serves `wss://` only (a TLS handshake
//! that takes over 10 s is dropped). With `--lend` each message is lent in place
//! (`recv_with`) and echoed from there instead of received and sent back.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use wirestate_async::Acceptor;

use wirestate_conformance::{echo, init_tracing, lends, ws_config, Args, Runtime};
use wirestate_engine::ws::Config;

const USAGE: &str = "ws-echo [--runtime tokio|smol] [--addr HOST:PORT] [--no-deflate] \
                     [--tls-cert FILE --tls-key FILE] [--lend]";

/// How long a TLS handshake may take.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

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
    let lend = lends(&args);
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "ws-echo (tokio) listening");
    eprintln!("ws-echo (tokio) listening on {}", listener.local_addr()?);
    let tls = match &args.tls {
        Some((cert, key)) => Some(wirestate_tokio::tls::TlsAcceptor::from_pem_files(
            cert, key,
        )?),
        None => None,
    };
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            loop {
                // Never an error: overload (EMFILE) pauses accepting, it does not end it.
                let (stream, _) = wirestate_tokio::next_connection(&listener).await;
                let _ = stream.set_nodelay(true);
                let (config, tls) = (config.clone(), tls.clone());
                tokio::task::spawn_local(async move {
                    let Some(tls) = tls else {
                        if let Ok(mut ws) = wirestate_tokio::accept(stream, config).await {
                            echo(&mut ws, lend).await;
                        }
                        return;
                    };
                    let handshake = tls.accept(wirestate_tokio::TokioIo::new(stream));
                    let Ok(Ok(stream)) = tokio::time::timeout(TLS_HANDSHAKE, handshake).await
                    else {
                        return;
                    };
                    if let Ok(mut ws) =
                        wirestate_async::accept(&wirestate_tokio::Tokio, stream, config).await
                    {
                        echo(&mut ws, lend).await;
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
    let lend = lends(&args);
    let listener = smol::net::TcpListener::bind(args.addr).await?;
    eprintln!("ws-echo (smol) listening on {}", listener.local_addr()?);
    let tls = match &args.tls {
        Some((cert, key)) => Some(wirestate_smol::tls::TlsAcceptor::from_pem_files(cert, key)?),
        None => None,
    };
    loop {
        let (stream, _) = wirestate_smol::next_connection(&listener).await;
        let _ = stream.set_nodelay(true);
        let (config, tls) = (config.clone(), tls.clone());
        ex.spawn(async move {
            let Some(tls) = tls else {
                if let Ok(mut ws) = wirestate_smol::accept(stream, config).await {
                    echo(&mut ws, lend).await;
                }
                return;
            };
            let handshake = tls.accept(wirestate_smol::SmolIo::new(stream));
            let timeout = async {
                smol::Timer::after(TLS_HANDSHAKE).await;
                Err(std::io::ErrorKind::TimedOut.into())
            };
            let Ok(stream) = smol::future::or(handshake, timeout).await else {
                return;
            };
            if let Ok(mut ws) = wirestate_async::accept(&wirestate_smol::Smol, stream, config).await
            {
                echo(&mut ws, lend).await;
            }
        })
        .detach();
    }
}
