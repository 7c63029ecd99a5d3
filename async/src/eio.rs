//! Engine.IO on any [`Runtime`]: endpoints served over any stream, and the client.
//!
//! An adapter's `eio` module (made by [`runtime_api!`](crate::runtime_api)) wraps
//! these functions with its runtime filled in (`wirestate_tokio::eio::server(config)`).
//! Here they run on the in-memory runtime:
//!
//! ```
//! use wirestate_async::eio::{self, ClientConfig, ClientEvent, Config, Data, Event};
//! use wirestate_async::{mem::Sim, Runtime};
//!
//! let sim = Sim::new();
//! let server = eio::server(&sim, Config::default())?;
//! let listener = sim.listen("127.0.0.1:3000")?;
//! let (rt, serving) = (sim.clone(), server.clone());
//! sim.spawn(async move {
//!     let _ = eio::serve(&rt, serving, listener).await;
//! });
//! let echo = server.clone();
//! sim.spawn(async move {
//!     loop {
//!         if let Event::Message { sid, data } = echo.next_event().await {
//!             let _ = echo.send(&sid, data);
//!         }
//!     }
//! });
//! let mut client = eio::connect(&sim, "http://127.0.0.1:3000", ClientConfig::default())?;
//! let echoed = sim.block_on(async {
//!     assert!(matches!(client.recv().await, Some(ClientEvent::Open(_))));
//!     client.send(Data::from("hello")).expect("open");
//!     loop {
//!         match client.recv().await {
//!             Some(ClientEvent::Message(data)) => break data,
//!             Some(_) => {} // the upgrade to WebSocket
//!             None => panic!("closed"),
//!         }
//!     }
//! });
//! assert_eq!(echoed, Data::from("hello"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tracing::Instrument;
use wirestate_engine::http::Scheme;

pub use crate::host::{EioServer, HttpLimits, ServerOptions};
pub use wirestate_engine::eio::{
    ClientCloseReason, ClientConfig, ClientEvent, CloseReason, Config, Cors, Data, Event,
    Handshake, OpenInfo, SessionId,
};

use crate::{EioClient, Error, Runtime, Transport, WebSocket};

/// An endpoint with `options` (a [`Config`], or [`ServerOptions`] for HTTP limits and
/// plain WebSocket routes) and OS-seeded session ids; its timer task is spawned on `rt`.
pub fn server<R: Runtime>(rt: &R, options: impl Into<ServerOptions>) -> io::Result<EioServer> {
    let server = EioServer::new(rt, options, crate::os_seed()?);
    let timers = server.clone();
    let clock = rt.clock();
    rt.spawn(async move { timers.run_timers(clock).await });
    Ok(server)
}

/// Starts an Engine.IO session with the server at `url` (`http://host:port`; the path
/// comes from `config`) over `rt`'s connections. Nothing happens until
/// [`EioClient::recv`] is awaited.
pub fn connect<R: Runtime>(rt: &R, url: &str, config: ClientConfig) -> Result<EioClient<R>, Error> {
    connect_with(rt, url, config, crate::Connector::default())
}

/// [`connect`], reaching the server as `connector` says (TLS roots, headers sent with
/// every request).
pub fn connect_with<R: Runtime>(
    rt: &R,
    url: &str,
    config: ClientConfig,
    connector: crate::Connector,
) -> Result<EioClient<R>, Error> {
    let url = crate::connector::parse_url(url, &[Scheme::Http, Scheme::Ws])?;
    Ok(EioClient::new(
        rt.clone(),
        url,
        config,
        connector,
        crate::os_seed()?,
    ))
}

/// Serves one connection over any transport, with its peer's address when it has one.
/// A WebSocket upgrade for a route added with [`ServerOptions::websocket_route`] comes
/// back open, with its path, for the caller to run.
///
/// The future borrows nothing, and holds the connection's state once (see
/// [`sio::serve_connection`](crate::sio::serve_connection)).
#[allow(clippy::type_complexity)]
pub fn serve_connection<R: Runtime, T: Transport + Send + 'static>(
    rt: &R,
    server: &EioServer,
    io: T,
    peer_addr: Option<SocketAddr>,
) -> impl Future<Output = io::Result<Option<(String, WebSocket<T, R::Clock>)>>> + Send + 'static {
    let span = tracing::debug_span!("eio-conn", peer = ?peer_addr);
    server
        .serve_connection(io, rt.clock(), peer_addr)
        .instrument(span)
}

/// Accepts connections on `listener` for ever, serving each on its own task; plain
/// WebSocket routes are closed.
pub async fn serve<R: Runtime>(rt: &R, server: EioServer, listener: R::Listener) -> io::Result<()> {
    serve_with(rt, server, listener, |_path, _ws| async {}).await
}

/// [`serve`], running `on_websocket(path, socket)` for the plain WebSocket routes.
pub async fn serve_with<R, F, Fut>(
    rt: &R,
    server: EioServer,
    listener: R::Listener,
    on_websocket: F,
) -> io::Result<()>
where
    R: Runtime,
    F: Fn(String, WebSocket<R::Tcp, R::Clock>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    serve_accepting(rt, server, listener, crate::Plain, on_websocket).await
}

/// [`serve_with`], with each connection made into the stream served by `acceptor` (a
/// TLS handshake, bounded by [`HttpLimits::request_timeout`]).
pub async fn serve_accepting<R, A, F, Fut>(
    rt: &R,
    server: EioServer,
    listener: R::Listener,
    acceptor: A,
    on_websocket: F,
) -> io::Result<()>
where
    R: Runtime,
    A: crate::Acceptor<R::Tcp>,
    F: Fn(String, WebSocket<A::Stream, R::Clock>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limits = server.limits();
    let runtime = rt.clone();
    crate::accept_loop(
        rt,
        &listener,
        std::future::pending(),
        limits.max_connections,
        (&acceptor, limits.request_timeout),
        move |stream, peer| {
            let served = serve_connection(&runtime, &server, stream, Some(peer));
            let on_websocket = on_websocket.clone();
            // Then the plain WebSocket it became, if any.
            crate::then(served, move |served| match served {
                Ok(Some((path, ws))) => crate::Either::Left {
                    future: on_websocket(path, ws),
                },
                Ok(None) => crate::Either::Right {
                    future: std::future::ready(()),
                },
                Err(e) => {
                    tracing::debug!(error = %e, "engine.io connection ended with an error");
                    crate::Either::Right {
                        future: std::future::ready(()),
                    }
                }
            })
        },
    )
    .await;
    Ok(())
}
