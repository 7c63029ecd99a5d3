//! # wirestate-smol
//!
//! Runs wirestate's sans-IO WebSocket engine on smol (async-io). This crate only
//! supplies the socket and the timer; the protocol and the drive loop live in
//! `wirestate-engine`, shared with the tokio adapter, so both runtimes behave
//! identically.
//!
//! ```no_run
//! use std::sync::Arc;
//! use wirestate_smol::{accept, Config};
//!
//! # fn main() -> std::io::Result<()> {
//! smol::block_on(async {
//!     let listener = smol::net::TcpListener::bind("127.0.0.1:9001").await?;
//!     let config = Arc::new(Config::default());
//!     loop {
//!         let (stream, _) = listener.accept().await?;
//!         let config = config.clone();
//!         smol::spawn(async move {
//!             let Ok(mut ws) = accept(stream, config).await else { return };
//!             while let Some(Ok(msg)) = ws.recv().await {
//!                 if ws.send(msg).await.is_err() {
//!                     break;
//!                 }
//!             }
//!         })
//!         .detach();
//!     }
//! })
//! # }
//! ```
#![deny(unsafe_code)]

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_io::{AsyncRead, AsyncWrite};
use smol::net::TcpStream;
use smol::Timer;
use wirestate_engine::drive::{self, Clock, Transport};

pub use wirestate_engine::drive::Error;
pub use wirestate_engine::ws::{
    ClientRequest, CloseCode, Closed, Config, DeflateConfig, DeflateParams, Event, Message, Opened,
    Precompressed, Side, Utf8Bytes,
};

/// A WebSocket over a smol byte stream (a `TcpStream` by default).
///
/// Implements `Stream<Item = Result<Message, Error>>` and `Sink<impl Into<Message>>`.
pub type WebSocket<S = TcpStream> = drive::WebSocket<SmolIo<S>, SmolClock>;

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
    let io = SmolIo {
        inner: stream,
        span: span.clone(),
    };
    let result = span
        .in_scope(|| WebSocket::accept(io, SmolClock::new(), config))
        .await;
    log_handshake(&span, &result);
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
    let io = SmolIo {
        inner: stream,
        span: span.clone(),
    };
    let result = WebSocket::connect(io, SmolClock::new(), config, request, seed).await;
    log_handshake(&span, &result);
    result
}

fn log_handshake<S>(span: &tracing::Span, result: &Result<WebSocket<S>, Error>) {
    span.in_scope(|| match result {
        Ok(ws) => tracing::debug!(protocol = ws.protocol(), "websocket open"),
        Err(e) => tracing::debug!(error = %e, "websocket handshake failed"),
    });
}

/// A futures-io stream as a [`Transport`], with the connection's tracing span.
#[derive(Debug)]
pub struct SmolIo<S> {
    inner: S,
    span: tracing::Span,
}

impl<S> SmolIo<S> {
    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The connection's tracing span.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Transport for SmolIo<S> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Err(e)) = &result {
            self.span
                .in_scope(|| tracing::debug!(error = %e, "read failed"));
        }
        result
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// The system clock and one re-armable async-io `Timer` as a [`Clock`].
#[derive(Debug, Default)]
pub struct SmolClock {
    timer: Option<Timer>,
    deadline: Option<Instant>,
}

impl SmolClock {
    /// A clock with no timer armed.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Clock for SmolClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn poll_until(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        if self.deadline != Some(deadline) {
            match &mut self.timer {
                Some(timer) => timer.set_at(deadline),
                None => self.timer = Some(Timer::at(deadline)),
            }
            self.deadline = Some(deadline);
        }
        match &mut self.timer {
            Some(timer) => Pin::new(timer).poll(cx).map(|_| ()),
            None => Poll::Pending,
        }
    }
}

/// Engine.IO endpoints on smol.
///
/// ```no_run
/// use wirestate_smol::eio::{self, Config, Event};
///
/// # fn main() -> std::io::Result<()> {
/// smol::block_on(async {
///     let server = eio::server(Config::default())?;
///     let listener = smol::net::TcpListener::bind("127.0.0.1:3000").await?;
///     smol::spawn(eio::serve(server.clone(), listener)).detach();
///     loop {
///         if let Event::Message { sid, data } = server.next_event().await {
///             let _ = server.send(&sid, data); // echo
///         }
///     }
/// })
/// # }
/// ```
pub mod eio {
    use std::io;

    use smol::net::{TcpListener, TcpStream};

    pub use wirestate_engine::drive::{EioServer, HttpLimits};
    pub use wirestate_engine::eio::{CloseReason, Config, Cors, Data, Event, Handshake, SessionId};

    use super::{SmolClock, SmolIo};

    pub use wirestate_engine::eio::{ClientCloseReason, ClientConfig, ClientEvent, OpenInfo};

    /// An Engine.IO client session on smol (see [`connect`]).
    pub type EioClient = wirestate_engine::drive::EioClient<Connector, SmolClock>;

    /// Opens TCP connections (with `TCP_NODELAY`) to one server.
    #[derive(Clone, Debug)]
    pub struct Connector {
        authority: String,
    }

    impl wirestate_engine::drive::Connector for Connector {
        type Io = SmolIo<TcpStream>;

        fn connect(
            &self,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<Self::Io>> + Send>>
        {
            let authority = self.authority.clone();
            Box::pin(async move {
                let stream = TcpStream::connect(authority.as_str()).await?;
                stream.set_nodelay(true)?;
                let span = tracing::debug_span!("eio-client", server = %authority);
                Ok(SmolIo {
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
            SmolClock::new(),
            &authority,
            config,
            seed,
        ))
    }

    /// An endpoint with OS-seeded session ids; its timer task is spawned on smol's
    /// global executor.
    pub fn server(config: Config) -> io::Result<EioServer> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(io::Error::other)?;
        let server = EioServer::new(config, seed);
        let timers = server.clone();
        smol::spawn(async move { timers.run_timers(SmolClock::new()).await }).detach();
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
        let io = SmolIo {
            inner: stream,
            span,
        };
        server.serve_connection(io, SmolClock::new()).await
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
            smol::spawn(async move {
                match serve_connection(&server, stream).await {
                    Ok(Some((path, ws))) => on_websocket(path, ws).await,
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "engine.io connection ended with an error")
                    }
                }
            })
            .detach();
        }
    }
}

/// Socket.IO servers on smol.
///
/// ```no_run
/// use std::time::Duration;
/// use wirestate_smol::sio::{self, Config, ConnectError, Payload};
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
/// let listener = smol::net::TcpListener::bind("127.0.0.1:3000").await?;
/// sio::serve(io, listener).await
/// # }
/// ```
pub mod sio {
    use std::io;
    use std::sync::Arc;
    use std::time::Instant;

    use smol::net::{TcpListener, TcpStream};
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

    use super::{SmolClock, SmolIo};

    struct SmolSpawn;

    impl Spawn for SmolSpawn {
        fn spawn(&self, future: BoxFuture) {
            smol::spawn(future).detach();
        }
    }

    fn now() -> Instant {
        Instant::now()
    }

    /// A Socket.IO server with OS-seeded ids; its timer task is spawned on smol's
    /// global executor, and so are handlers that have to wait.
    pub fn server(config: Config) -> io::Result<SocketIo> {
        server_with_limits(config, HttpLimits::default())
    }

    /// [`server`] with explicit HTTP limits.
    pub fn server_with_limits(config: Config, limits: HttpLimits) -> io::Result<SocketIo> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(io::Error::other)?;
        let io = SocketIo::new(config, seed, limits, Arc::new(SmolSpawn), now);
        let host = io.host().clone();
        smol::spawn(async move { host.run_timers(SmolClock::new()).await }).detach();
        Ok(io)
    }

    /// Connects to `url` (`http://host:port`, or `http://host:port/namespace`) like
    /// socket.io-client's `io(url, options)`: returns the namespace's socket and runs
    /// the client (connection, reconnection, handlers) on smol's global executor. More namespaces
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
            SmolClock::new(),
        )?;
        smol::spawn(driver).detach();
        Ok(socket)
    }

    /// Serves one accepted connection (sets `TCP_NODELAY`), for your own accept loop.
    pub async fn serve_connection(io: &SocketIo, stream: TcpStream) -> io::Result<()> {
        stream.set_nodelay(true)?;
        let span = tracing::debug_span!("sio-conn", peer = ?stream.peer_addr().ok());
        let conn = SmolIo {
            inner: stream,
            span,
        };
        io.host().serve_connection(conn, SmolClock::new()).await?;
        Ok(())
    }

    /// Accepts connections, serving each on its own task, until
    /// [`SocketIo::shutdown`] starts.
    pub async fn serve(io: SocketIo, listener: TcpListener) -> io::Result<()> {
        loop {
            let accepted = smol::future::or(async { Some(listener.accept().await) }, async {
                io.stopping().await;
                None
            })
            .await;
            let Some(accepted) = accepted else {
                return Ok(());
            };
            let (stream, _) = accepted?;
            let io = io.clone();
            smol::spawn(async move {
                if let Err(e) = serve_connection(&io, stream).await {
                    tracing::debug!(error = %e, "socket.io connection ended with an error");
                }
            })
            .detach();
        }
    }
}
