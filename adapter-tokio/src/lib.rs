//! # wirestate-tokio
//!
//! Runs wirestate's sans-IO WebSocket engine on tokio. This crate only supplies the
//! socket and the timer; the protocol and the drive loop live in `wirestate-engine`,
//! shared with the smol adapter, so both runtimes behave identically.
//!
//! ```no_run
//! use std::sync::Arc;
//! use wirestate_tokio::{accept, Config, Message};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! let config = Arc::new(Config::default());
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     let config = config.clone();
//!     tokio::spawn(async move {
//!         let Ok(mut ws) = accept(stream, config).await else { return };
//!         while let Some(Ok(msg)) = ws.recv().await {
//!             if ws.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     });
//! }
//! # }
//! ```
#![deny(unsafe_code)]

use std::future::Future as _;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tracing::Instrument;
use wirestate_engine::drive::{self, Clock, Transport};

pub use wirestate_engine::drive::Error;
pub use wirestate_engine::ws::{
    ClientRequest, CloseCode, Closed, Config, DeflateConfig, DeflateParams, Event, Message, Opened,
    Precompressed, Side, Utf8Bytes,
};

/// A WebSocket over a tokio byte stream (a `TcpStream` by default).
///
/// Implements `Stream<Item = Result<Message, Error>>` and `Sink<impl Into<Message>>`.
pub type WebSocket<S = TcpStream> = drive::WebSocket<TokioIo<S>, TokioClock>;

/// Accepts a WebSocket on a server-side stream: reads the upgrade request, answers it
/// (101, or the HTTP error for a bad request), and returns the open connection.
pub async fn accept<S>(stream: S, config: Arc<Config>) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Boxed: a task that accepts and then serves the connection holds the handshake's
    // state only while it runs, not for the connection's whole life.
    Box::pin(accept_handshake(stream, config)).await
}

async fn accept_handshake<S>(stream: S, config: Arc<Config>) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let span = tracing::debug_span!("ws", role = "server");
    let io = TokioIo {
        inner: stream,
        span: span.clone(),
    };
    let result = WebSocket::accept(io, TokioClock::new(), config)
        .instrument(span)
        .await;
    log_handshake(&result);
    result
}

/// Connects to a `ws://` URL over TCP (with `TCP_NODELAY`) and runs the handshake.
pub async fn connect(url: &str, config: Arc<Config>) -> Result<WebSocket<TcpStream>, Error> {
    let request = ClientRequest::from_url(url)?;
    let stream = TcpStream::connect(request.authority()).await?;
    stream.set_nodelay(true)?;
    client(stream, &request, config).await
}

/// Runs the client handshake for `request` on an already connected stream.
pub async fn client<S>(
    stream: S,
    request: &ClientRequest,
    config: Arc<Config>,
) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    Box::pin(client_handshake(stream, request, config)).await
}

async fn client_handshake<S>(
    stream: S,
    request: &ClientRequest,
    config: Arc<Config>,
) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| Error::Io(io::Error::other(e)))?;
    let span =
        tracing::debug_span!("ws", role = "client", host = %request.host, path = %request.path);
    let io = TokioIo {
        inner: stream,
        span: span.clone(),
    };
    let result = WebSocket::connect(io, TokioClock::new(), config, request, seed)
        .instrument(span)
        .await;
    log_handshake(&result);
    result
}

fn log_handshake<S>(result: &Result<WebSocket<S>, Error>) {
    match result {
        Ok(ws) => tracing::debug!(protocol = ws.protocol(), "websocket open"),
        Err(e) => tracing::debug!(error = %e, "websocket handshake failed"),
    }
}

/// A tokio stream as a [`Transport`], with the connection's tracing span.
#[derive(Debug)]
pub struct TokioIo<S> {
    inner: S,
    span: tracing::Span,
}

impl<S> TokioIo<S> {
    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The connection's tracing span.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Transport for TokioIo<S> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().len())),
            Poll::Ready(Err(e)) => {
                self.span
                    .in_scope(|| tracing::debug!(error = %e, "read failed"));
                Poll::Ready(Err(e))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let pinned = Pin::new(&mut self.inner);
        if pinned.is_write_vectored() || bufs.len() == 1 {
            Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
        } else {
            Pin::new(&mut self.inner).poll_write(cx, &bufs[0])
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Tokio's clock and one re-armable `Sleep` as a [`Clock`]. Honours tokio's paused
/// time in tests.
#[derive(Debug, Default)]
pub struct TokioClock {
    sleep: Option<Pin<Box<Sleep>>>,
    deadline: Option<Instant>,
}

impl TokioClock {
    /// A clock with no timer armed (the timer is allocated on first use).
    pub fn new() -> Self {
        Self::default()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn poll_until(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        let at = tokio::time::Instant::from_std(deadline);
        match &mut self.sleep {
            Some(sleep) if self.deadline == Some(deadline) => return sleep.as_mut().poll(cx),
            Some(sleep) => sleep.as_mut().reset(at),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        self.deadline = Some(deadline);
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

/// Engine.IO endpoints on tokio.
///
/// ```no_run
/// use wirestate_tokio::eio::{self, Config, Event};
///
/// # async fn run() -> std::io::Result<()> {
/// let server = eio::server(Config::default())?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// tokio::spawn(eio::serve(server.clone(), listener));
/// loop {
///     if let Event::Message { sid, data } = server.next_event().await {
///         let _ = server.send(&sid, data); // echo
///     }
/// }
/// # }
/// ```
pub mod eio {
    use std::io;

    use tokio::net::{TcpListener, TcpStream};

    pub use wirestate_engine::drive::{EioServer, HttpLimits};
    pub use wirestate_engine::eio::{CloseReason, Config, Cors, Data, Event, Handshake, SessionId};

    use super::{TokioClock, TokioIo};

    pub use wirestate_engine::eio::{ClientCloseReason, ClientConfig, ClientEvent, OpenInfo};

    /// An Engine.IO client session on tokio (see [`connect`]).
    pub type EioClient = wirestate_engine::drive::EioClient<Connector, TokioClock>;

    /// Opens TCP connections (with `TCP_NODELAY`) to one server.
    #[derive(Clone, Debug)]
    pub struct Connector {
        authority: String,
    }

    impl wirestate_engine::drive::Connector for Connector {
        type Io = TokioIo<TcpStream>;

        fn connect(
            &self,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<Self::Io>> + Send>>
        {
            let authority = self.authority.clone();
            Box::pin(async move {
                let stream = TcpStream::connect(authority.as_str()).await?;
                stream.set_nodelay(true)?;
                let span = tracing::debug_span!("eio-client", server = %authority);
                Ok(TokioIo {
                    inner: stream,
                    span,
                })
            })
        }
    }

    impl Connector {
        pub(crate) fn new(authority: String) -> Self {
            Self { authority }
        }
    }

    /// Starts an Engine.IO session with the server at `url` (`http://host:port`; the
    /// path comes from `config`). Nothing happens until [`EioClient::recv`] is awaited;
    /// its first event is `Open` (or `Closed` if the server cannot be reached).
    pub fn connect(url: &str, config: ClientConfig) -> io::Result<EioClient> {
        let authority = wirestate_engine::drive::authority_of(url)?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(io::Error::other)?;
        let connector = Connector {
            authority: authority.clone(),
        };
        Ok(EioClient::new(
            connector,
            TokioClock::new(),
            &authority,
            config,
            seed,
        ))
    }

    /// An endpoint with OS-seeded session ids; its timer task is spawned on the
    /// current tokio runtime.
    pub fn server(config: Config) -> io::Result<EioServer> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(io::Error::other)?;
        let server = EioServer::new(config, seed);
        let timers = server.clone();
        tokio::spawn(async move { timers.run_timers(TokioClock::new()).await });
        Ok(server)
    }

    /// Serves one accepted connection (sets `TCP_NODELAY`). Use it from your own
    /// accept loop to embed Engine.IO beside other protocols. A WebSocket upgrade for
    /// a route added with [`EioServer::with_websocket_route`] comes back open, with its
    /// path, for you to run.
    pub async fn serve_connection(
        server: &EioServer,
        stream: TcpStream,
    ) -> io::Result<Option<(String, crate::WebSocket<TcpStream>)>> {
        stream.set_nodelay(true)?;
        let span = tracing::debug_span!("eio-conn", peer = ?stream.peer_addr().ok());
        let io = TokioIo {
            inner: stream,
            span,
        };
        server.serve_connection(io, TokioClock::new()).await
    }

    /// Accepts connections forever, serving each on its own task. Plain WebSocket
    /// routes, if any, are closed: use [`serve_with`] to run them.
    pub async fn serve(server: EioServer, listener: TcpListener) -> io::Result<()> {
        serve_with(server, listener, |_path, _ws| async {}).await
    }

    /// Accepts connections forever, serving each on its own task; runs
    /// `on_websocket(path, socket)` for the plain WebSocket routes.
    pub async fn serve_with<F, Fut>(
        server: EioServer,
        listener: TcpListener,
        on_websocket: F,
    ) -> io::Result<()>
    where
        F: Fn(String, crate::WebSocket<TcpStream>) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        loop {
            let (stream, _) = listener.accept().await?;
            let server = server.clone();
            let on_websocket = on_websocket.clone();
            tokio::spawn(async move {
                match serve_connection(&server, stream).await {
                    Ok(Some((path, ws))) => on_websocket(path, ws).await,
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "engine.io connection ended with an error")
                    }
                }
            });
        }
    }
}

/// Socket.IO servers on tokio.
///
/// ```no_run
/// use std::time::Duration;
/// use wirestate_tokio::sio::{self, Config, ConnectError, Payload};
///
/// # async fn run() -> std::io::Result<()> {
/// let io = sio::server(Config::default())?;
/// let chat = io.of("/chat");
/// chat.middleware(|req| async move {
///     match req.auth()["token"].as_str() {
///         Some("secret") => Ok(()),
///         _ => Err(ConnectError::new("not authorized")),
///     }
/// });
/// chat.on_connection(|socket| async move {
///     socket.join(["lobby"]);
///     socket.on("say", |socket, msg| async move {
///         let text: String = msg.data()?;
///         socket.to("lobby").emit("said", &text)?;
///         msg.ack(&"delivered")?;
///         Ok::<(), sio::EmitError>(())
///     });
///     let answer = socket
///         .emit_with_ack("ready?", Payload::new(), Some(Duration::from_secs(5)))
///         .await;
///     let _ = answer;
/// });
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// sio::serve(io, listener).await
/// # }
/// ```
pub mod sio {
    use std::future::{poll_fn, Future};
    use std::io;
    use std::pin::pin;
    use std::sync::Arc;
    use std::task::Poll;
    use std::time::Instant;

    use tokio::net::{TcpListener, TcpStream};
    use wirestate_engine::drive::sio::{BoxFuture, Spawn};

    pub use wirestate_engine::drive::sio::{
        AckStream, ConnectError, ConnectRequest, EmitError, HandlerResult, Incoming, Namespace,
        Operator, Socket, SocketIo,
    };
    pub use wirestate_engine::drive::sio_client::{
        ClientAck, ClientSocket, ConnectFailure, EmitFailure, IoOptions, SioClient, TimedSocket,
    };
    pub use wirestate_engine::drive::HttpLimits;
    pub use wirestate_engine::eio::{
        ClientConfig as EioClientConfig, Config as EioConfig, Cors, Handshake,
    };
    pub use wirestate_engine::sio::{
        AckError, Broadcast, ClusterMessage, Config, DisconnectReason, Payload, Recovery, Room, Sid,
    };
    pub use wirestate_engine::sio::{ClientConfig, ClientDisconnectReason};

    use super::{TokioClock, TokioIo};

    struct TokioSpawn;

    impl Spawn for TokioSpawn {
        fn spawn(&self, future: BoxFuture) {
            tokio::spawn(future);
        }
    }

    fn now() -> Instant {
        tokio::time::Instant::now().into_std()
    }

    /// A Socket.IO server with OS-seeded ids; its timer task is spawned on the current
    /// tokio runtime, and so are handlers that have to wait.
    pub fn server(config: Config) -> io::Result<SocketIo> {
        server_with_limits(config, HttpLimits::default())
    }

    /// [`server`] with explicit HTTP limits.
    pub fn server_with_limits(config: Config, limits: HttpLimits) -> io::Result<SocketIo> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(io::Error::other)?;
        let io = SocketIo::new(config, seed, limits, Arc::new(TokioSpawn), now);
        let host = io.host().clone();
        tokio::spawn(async move { host.run_timers(TokioClock::new()).await });
        Ok(io)
    }

    /// Connects to `url` (`http://host:port`, or `http://host:port/namespace`) like
    /// socket.io-client's `io(url, options)`: returns the namespace's socket and runs
    /// the client (connection, reconnection, handlers) on the current tokio runtime. More namespaces
    /// over the same connection: `socket.io().socket("/other", auth)`.
    pub fn io(url: &str, options: IoOptions) -> io::Result<ClientSocket> {
        let mut seed = [0u8; 64];
        getrandom::fill(&mut seed).map_err(io::Error::other)?;
        let (socket, driver) = SioClient::open(
            url,
            options,
            seed,
            now,
            crate::eio::Connector::new,
            TokioClock::new(),
        )?;
        tokio::spawn(driver);
        Ok(socket)
    }

    /// Serves one accepted connection (sets `TCP_NODELAY`), for your own accept loop.
    pub async fn serve_connection(io: &SocketIo, stream: TcpStream) -> io::Result<()> {
        stream.set_nodelay(true)?;
        let span = tracing::debug_span!("sio-conn", peer = ?stream.peer_addr().ok());
        let conn = TokioIo {
            inner: stream,
            span,
        };
        io.host().serve_connection(conn, TokioClock::new()).await?;
        Ok(())
    }

    /// Accepts connections, serving each on its own task, until
    /// [`SocketIo::shutdown`] starts.
    pub async fn serve(io: SocketIo, listener: TcpListener) -> io::Result<()> {
        let mut stopping = pin!(io.stopping());
        loop {
            let accepted = poll_fn(|cx| {
                if stopping.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                listener.poll_accept(cx).map(Some)
            })
            .await;
            let Some(accepted) = accepted else {
                return Ok(());
            };
            let (stream, _) = accepted?;
            let io = io.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_connection(&io, stream).await {
                    tracing::debug!(error = %e, "socket.io connection ended with an error");
                }
            });
        }
    }
}

/// The README's examples, compiled as doctests so that they stay true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
