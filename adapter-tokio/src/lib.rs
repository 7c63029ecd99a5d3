//! # wirestate-tokio
//!
//! Runs wirestate on tokio. This crate only supplies what is tokio's own — the
//! [`Tokio`] runtime (clock and timer, spawn, TCP) and [`TokioIo`], which makes any
//! tokio byte stream a transport; the API itself is `wirestate-async`'s, written once
//! and shared with the smol adapter, so both runtimes behave identically.
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
//!
//! Engine.IO (`eio`) and Socket.IO (`sio`) servers serve a listener, or any stream with
//! `serve_connection` (TLS, Unix sockets, in-memory pipes):
//!
//! ```no_run
//! use wirestate_tokio::sio::{self, Config};
//!
//! # async fn run() -> std::io::Result<()> {
//! let io = sio::server(Config::default())?;
//! io.of("/").on_connection(|socket| async move {
//!     socket.on("ping", |_socket, msg| async move { msg.ack(&"pong") });
//! });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! sio::serve(io, listener).await
//! # }
//! ```
#![deny(unsafe_code)]

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use wirestate_async::{Clock, Slices, Transport};

wirestate_async::runtime_api!(
    /// The tokio runtime, as the async layer sees it: tokio's clock and timers (paused
    /// time included), sockets, and `tokio::spawn` on the current runtime.
    runtime: Tokio,
    clock: TokioClock,
    spawn: tokio::spawn,
    thread: run_thread,
    from_std: listener_from_std,
    tcp_into_std: tokio::net::TcpStream::into_std,
    tcp_from_std: tcp_from_std,
    io: TokioIo,
    tcp: tokio::net::TcpStream,
    listener: tokio::net::TcpListener,
);

/// Runs `main` on a new thread on a current-thread tokio runtime of its own (timers
/// and I/O enabled); `tokio::spawn` from that thread spawns on it.
fn run_thread(
    name: String,
    main: Box<dyn FnOnce() -> wirestate_async::BoxFuture + Send>,
) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(name)
        .spawn(move || runtime.block_on(main()))?;
    Ok(())
}

/// A tokio listener for `listener`, registered with the current runtime.
fn listener_from_std(listener: std::net::TcpListener) -> io::Result<tokio::net::TcpListener> {
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

/// A tokio stream for `tcp`, registered with the current runtime.
fn tcp_from_std(tcp: std::net::TcpStream) -> io::Result<tokio::net::TcpStream> {
    tcp.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(tcp)
}

/// Tokio's clock and one re-armable `Sleep` (allocated on first use, given back when
/// no deadline is pending) as a [`Clock`].
#[derive(Debug, Default)]
pub struct TokioClock {
    /// Armed at the deadline it was last polled for (`Sleep::deadline`).
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn poll_until(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        let at = tokio::time::Instant::from_std(deadline);
        match &mut self.sleep {
            Some(sleep) => {
                if sleep.deadline() != at {
                    sleep.as_mut().reset(at);
                }
                sleep.as_mut().poll(cx)
            }
            None => self
                .sleep
                .insert(Box::pin(tokio::time::sleep_until(at)))
                .as_mut()
                .poll(cx),
        }
    }

    fn disarm(&mut self) {
        self.sleep = None;
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Transport for TokioIo<S> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        Pin::new(&mut self.0)
            .poll_read(cx, &mut buf)
            .map_ok(|()| buf.filled().len())
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match wirestate_async::write_slices(bufs, self.0.is_write_vectored()) {
            Slices::One(buf) => Pin::new(&mut self.0).poll_write(cx, buf),
            Slices::Many(bufs) => Pin::new(&mut self.0).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_write_now(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // Outside the task's budget: the publisher of a broadcast writes to every
        // recipient in one turn.
        let write = tokio::task::coop::unconstrained(std::future::poll_fn(|cx| {
            self.poll_write_vectored(cx, bufs)
        }));
        std::pin::pin!(write).poll(cx)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The README's examples, compiled as doctests so that they stay true (with the
/// features they use, which the workspace's test run has).
#[doc = include_str!("../../README.md")]
#[cfg(all(
    doctest,
    feature = "tower",
    feature = "tls",
    feature = "jsonschema",
    feature = "admin"
))]
pub struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::time::Duration;

    /// The echo task users write (as in the README): it owns the stream and the
    /// configuration, accepts, then echoes.
    async fn echo(stream: tokio::net::TcpStream, config: std::sync::Arc<Config>) {
        let Ok(mut ws) = accept(stream, config).await else {
            return;
        };
        while let Some(Ok(m)) = ws.recv().await {
            if ws.send(m).await.is_err() {
                break;
            }
        }
    }

    /// The size of what `f` returns.
    fn size_of_output<A, B, R, F: Fn(A, B) -> R>(_: F) -> usize {
        std::mem::size_of::<R>()
    }

    #[test]
    fn an_echo_task_fits_the_smaller_task_cell() {
        // A WebSocket is its stream and one pointer (its state is out of line).
        assert_eq!(
            std::mem::size_of::<WebSocket>(),
            std::mem::size_of::<tokio::net::TcpStream>() + std::mem::size_of::<usize>()
        );
        // tokio allocates a task's future with its header in a cell aligned (and so
        // sized) to 128 bytes: a future of at most 152 bytes takes a 256-byte cell,
        // a larger one 384 (on x86-64; part of an idle connection's memory). The
        // task holds the stream twice (as it captured it, and in the WebSocket), 88
        // bytes besides: 152 with the 32-byte `TcpStream` of a release build (a
        // debug build with tokio's multi-threaded runtime has a larger one).
        let size = size_of_output(echo);
        let stream = std::mem::size_of::<tokio::net::TcpStream>();
        assert!(
            size <= 2 * stream + 88,
            "the echo task's future is {size} bytes (the stream {stream})"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_clock_rearms_its_one_sleep_and_gives_it_back_when_disarmed() {
        let mut clock = TokioClock::default();
        let start = clock.now();
        let (late, early) = (
            start + Duration::from_secs(10),
            start + Duration::from_secs(3),
        );
        // Armed for the late deadline, then moved earlier: it fires at the early one.
        assert!(poll_fn(|cx| Poll::Ready(clock.poll_until(cx, late)))
            .await
            .is_pending());
        assert!(clock.sleep.is_some());
        poll_fn(|cx| clock.poll_until(cx, early)).await;
        assert_eq!(clock.now() - start, Duration::from_secs(3));
        // Nothing pending: the sleep goes (an idle connection holds no timer) ...
        clock.disarm();
        assert!(clock.sleep.is_none());
        // ... and the next deadline arms a new one, which fires on time.
        poll_fn(|cx| clock.poll_until(cx, late)).await;
        assert_eq!(clock.now() - start, Duration::from_secs(10));
    }
}
