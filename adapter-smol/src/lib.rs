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
use std::sync::Arc;
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
    thread: run_thread,
    from_std: listener_from_std,
    tcp_into_std: tcp_into_std,
    tcp_from_std: smol::net::TcpStream::try_from,
    io: SmolIo,
    tcp: smol::net::TcpStream,
    listener: smol::net::TcpListener,
);

/// The system clock and one re-armable async-io `Timer` (made on first use, dropped
/// when no deadline is pending) as a [`Clock`].
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

    fn disarm(&mut self) {
        self.timer = None;
    }
}

thread_local! {
    /// The executor of a thread started by [`run_thread`]: tasks spawned there run
    /// there.
    static EXECUTOR: std::cell::RefCell<Option<Arc<smol::Executor<'static>>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `future` detached: on the executor of the thread started by [`run_thread`]
/// that spawns it, or else on smol's global executor.
fn spawn_detached<F: Future<Output = ()> + Send + 'static>(future: F) {
    match EXECUTOR.with(|e| e.borrow().clone()) {
        Some(executor) => executor.spawn(future).detach(),
        None => smol::spawn(future).detach(),
    }
}

/// Runs `main` on a new thread with an executor of its own, which runs every task
/// spawned from that thread.
fn run_thread(
    name: String,
    main: Box<dyn FnOnce() -> wirestate_async::BoxFuture + Send>,
) -> io::Result<()> {
    std::thread::Builder::new().name(name).spawn(move || {
        let executor = Arc::new(smol::Executor::new());
        EXECUTOR.with(|e| *e.borrow_mut() = Some(executor.clone()));
        smol::block_on(executor.run(main()));
        EXECUTOR.with(|e| e.borrow_mut().take());
    })?;
    Ok(())
}

/// The std stream of `tcp`, off the reactor; an error if a clone of it is alive.
fn tcp_into_std(tcp: smol::net::TcpStream) -> io::Result<std::net::TcpStream> {
    let shared: Arc<smol::Async<std::net::TcpStream>> = tcp.into();
    Arc::try_unwrap(shared)
        .map_err(|_| io::Error::other("the stream is shared"))?
        .into_inner()
}

/// A smol listener for `listener`.
fn listener_from_std(listener: std::net::TcpListener) -> io::Result<smol::net::TcpListener> {
    smol::net::TcpListener::try_from(listener)
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
