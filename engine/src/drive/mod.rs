//! The drive loops, written once for every runtime.
//!
//! A runtime adapter supplies two small things — a [`Transport`] (its socket type's
//! poll methods) and a [`Clock`] (its timer) — and gets async APIs on top of the
//! sans-IO state machines: [`WebSocket`] for one WebSocket connection, [`EioServer`]
//! for an Engine.IO endpoint shared by many connections, and [`sio::SocketIo`] for a
//! Socket.IO server with handlers. All the plumbing
//! between state machines and sockets lives here; this module performs no I/O of its
//! own and spawns nothing (the adapter spawns the futures it returns).

use std::io::{self, IoSlice};
use std::task::{Context, Poll};
use std::time::Instant;

mod eio_client;
mod host;
pub mod sio;
pub mod sio_client;
mod ws;

pub use eio_client::{authority_of, ClientMachine, Connector, EioClient, Pilot};
pub use host::{EioServer, Endpoint, EventHook, Host, HttpLimits};
pub use ws::{Error, WebSocket};

/// A byte stream as an adapter sees it (a TCP socket, a TLS stream, ...).
pub trait Transport: Unpin {
    /// Reads into `buf`; `Ok(0)` is end of stream.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
    /// Writes from `bufs` in order; returns how many bytes were written.
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>>;
    /// Flushes buffered writes.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Shuts the write side down (for TCP: sends FIN).
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// Time as an adapter sees it: a clock and one re-armable timer.
pub trait Clock: Unpin {
    /// The current time.
    fn now(&self) -> Instant;
    /// Ready once `deadline` has passed; otherwise arranges a wake-up for it.
    fn poll_until(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()>;
}

/// How many bytes one read asks for.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    /// The read buffer of every connection polled on this thread: zeroed once, not on
    /// every read (a 16 KiB memset per read cost more than the WebSocket decoding of a
    /// small message), and no per-connection memory.
    static READ_BUF: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; READ_CHUNK].into_boxed_slice());
}

/// Runs `f` with this thread's read buffer (or, if it is in use further up the stack,
/// a buffer of its own). What `f` reads must be consumed before it returns.
pub(crate) fn with_read_buf<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    READ_BUF.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf),
        Err(_) => f(&mut [0u8; READ_CHUNK]),
    })
}

/// Bytes queued for a transport, written with vectored writes, partial writes kept.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: crate::queue::Queue<bytes::Bytes>,
    bytes: usize,
}

/// Buffers handed to one vectored write.
const MAX_IOV: usize = 64;

impl Outbox {
    pub(crate) fn push(&mut self, b: bytes::Bytes) {
        if !b.is_empty() {
            self.bytes += b.len();
            self.queue.push_back(b);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes
    }

    pub(crate) fn clear(&mut self) {
        self.queue.clear();
        self.bytes = 0;
    }

    /// Writes as much as the transport takes now. `Ok` also when it would block.
    pub(crate) fn write_to<T: Transport>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
    ) -> io::Result<()> {
        use bytes::Buf;
        while let Some(front) = self.queue.front() {
            let written = if self.queue.len() == 1 {
                // The common case (one frame queued): no array of slices to fill.
                io.poll_write_vectored(cx, &[IoSlice::new(front)])
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_IOV];
                let mut count = 0;
                for (slot, bytes) in slices.iter_mut().zip(self.queue.iter()) {
                    *slot = IoSlice::new(bytes);
                    count += 1;
                }
                io.poll_write_vectored(cx, &slices[..count])
            };
            let mut n = match written {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(()),
            };
            self.bytes -= n;
            while n > 0 {
                let Some(front) = self.queue.front_mut() else {
                    break;
                };
                if n < front.len() {
                    front.advance(n);
                    break;
                }
                n -= front.len();
                self.queue.pop_front();
            }
        }
        Ok(())
    }
}
