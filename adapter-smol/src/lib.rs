//! # wirestate-smol
//!
//! Runs wirestate on smol (async-io). This crate only supplies what is smol's own —
//! the [`Smol`] runtime (clock and timer, spawn, TCP) and [`SmolIo`], which makes any
//! futures-io byte stream a transport; the API itself is `wirestate-async`'s, written
//! once and shared with the tokio adapter, so both runtimes behave identically.
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
//!
//! Engine.IO (`eio`) and Socket.IO (`sio`) servers serve a listener, or any stream with
//! `serve_connection`:
//!
//! ```no_run
//! use wirestate_smol::eio::{self, Config, Event};
//!
//! # fn main() -> std::io::Result<()> {
//! smol::block_on(async {
//!     let server = eio::server(Config::default())?;
//!     let listener = smol::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     smol::spawn(eio::serve(server.clone(), listener)).detach();
//!     loop {
//!         if let Event::Message { sid, data } = server.next_event().await {
//!             let _ = server.send(&sid, data); // echo
//!         }
//!     }
//! })
//! # }
//! ```
#![deny(unsafe_code)]

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_io::{AsyncRead, AsyncWrite};
use smol::Timer;
use wirestate_async::{Clock, Transport};

wirestate_async::runtime_api!(
    /// smol, as the async layer sees it: the system clock, async-io timers and
    /// sockets, and smol's global executor for spawned tasks.
    runtime: Smol,
    clock: SmolClock,
    spawn: spawn_detached,
    io: SmolIo,
    tcp: smol::net::TcpStream,
    listener: smol::net::TcpListener,
);

/// The system clock and one re-armable async-io `Timer` (made on first use) as a
/// [`Clock`].
#[derive(Debug, Default)]
pub struct SmolClock {
    timer: Option<(Timer, Instant)>,
}

impl Clock for SmolClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn poll_until(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        let (timer, armed) = self
            .timer
            .get_or_insert_with(|| (Timer::at(deadline), deadline));
        if *armed != deadline {
            timer.set_at(deadline);
            *armed = deadline;
        }
        Pin::new(timer).poll(cx).map(|_| ())
    }
}

/// Runs `future` on smol's global executor, detached.
fn spawn_detached<F: Future<Output = ()> + Send + 'static>(future: F) {
    smol::spawn(future).detach();
}

impl<S: AsyncRead + AsyncWrite + Unpin> Transport for SmolIo<S> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

/// TLS for the servers (`https://`, `wss://`), with rustls through futures-rustls.
///
/// ```no_run
/// use wirestate_smol::{sio, tls::TlsAcceptor};
///
/// # async fn run() -> std::io::Result<()> {
/// let io = sio::server(sio::Config::default())?;
/// let tls = TlsAcceptor::from_pem_files("cert.pem", "key.pem")?;
/// let listener = smol::net::TcpListener::bind("127.0.0.1:3443").await?;
/// sio::serve_tls(io, listener, tls).await
/// # }
/// ```
#[cfg(feature = "tls")]
pub mod tls {
    use std::future::Future;
    use std::io;
    use std::path::Path;
    use std::sync::Arc;

    use super::SmolIo;
    pub use wirestate_async::tls::{rustls, server_config, server_config_from_files};

    /// Makes accepted TCP connections TLS server streams; for [`sio::serve_tls`],
    /// [`eio::serve_tls`] and (as a [`wirestate_async::Acceptor`]) any serve loop.
    ///
    /// [`sio::serve_tls`]: crate::sio::serve_tls
    /// [`eio::serve_tls`]: crate::eio::serve_tls
    #[derive(Clone)]
    pub struct TlsAcceptor(futures_rustls::TlsAcceptor);

    impl std::fmt::Debug for TlsAcceptor {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("TlsAcceptor")
        }
    }

    impl TlsAcceptor {
        /// An acceptor with a rustls server configuration.
        pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
            Self(config.into())
        }

        /// An acceptor for a PEM certificate chain and key (see [`server_config`]).
        pub fn from_pem_files(
            cert_chain: impl AsRef<Path>,
            key: impl AsRef<Path>,
        ) -> io::Result<Self> {
            server_config_from_files(cert_chain, key).map(Self::new)
        }
    }

    impl wirestate_async::Acceptor<SmolIo<smol::net::TcpStream>> for TlsAcceptor {
        type Stream = SmolIo<futures_rustls::server::TlsStream<smol::net::TcpStream>>;

        fn accept(
            &self,
            stream: SmolIo<smol::net::TcpStream>,
        ) -> impl Future<Output = io::Result<Self::Stream>> + Send {
            let accepting = self.0.accept(stream.into_inner());
            async move { accepting.await.map(SmolIo::new) }
        }
    }
}
