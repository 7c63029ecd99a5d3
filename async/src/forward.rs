//! Requests for sessions that another node of a cluster owns (no sticky sessions):
//! what a [`Host`](crate::host::Host) needs from whoever carries them ([`Forward`]),
//! the answer a forwarded request waits for ([`Pending`]) and the two ends of a
//! forwarded WebSocket ([`Tunnel`]). The carrier (the Redis cluster) lives elsewhere;
//! the wire format is the engine's [`forward`](wirestate_engine::redis::forward).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use wirestate_engine::http::{Request, Response};

use crate::Transport;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Carries requests to the nodes that own their sessions.
pub(crate) trait Forward: Send + Sync {
    /// Whether session `sid` belongs to another node (and so is forwarded).
    fn is_foreign(&self, sid: &str) -> bool;
    /// Sends a polling request to the owner of session `sid`.
    fn request(&self, sid: &str, request: Request) -> Pending;
    /// Opens a tunnel to the owner of session `sid` for a WebSocket upgrade (the
    /// request's body holds the bytes that followed its head).
    fn open(&self, sid: &str, request: Request) -> Tunnel;
}

/// A value that arrives once, and the task waiting for it.
pub(crate) struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

/// A [`Slot`] shared by who fills it and who waits.
pub(crate) type SharedSlot<T> = Arc<Mutex<Slot<T>>>;

impl<T> Slot<T> {
    pub(crate) fn new() -> SharedSlot<T> {
        Arc::new(Mutex::new(Self {
            value: None,
            waker: None,
        }))
    }

    /// Fills the slot (a later value replaces one not yet taken).
    pub(crate) fn set(slot: &Mutex<Self>, value: T) {
        let mut s = lock(slot);
        s.value = Some(value);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    /// The value, once it is there; until then `cx` is woken when it comes.
    pub(crate) fn poll_take(slot: &Mutex<Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = lock(slot);
        match s.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Waits for the value.
    pub(crate) async fn take(slot: &Mutex<Self>) -> T {
        poll_fn(|cx| Self::poll_take(slot, cx)).await
    }
}

/// The answer to a forwarded request, on its way. Dropped before it came, it tells
/// the owner that the client went away.
pub(crate) struct Pending {
    slot: SharedSlot<Response>,
    abort: Option<Box<dyn FnOnce() + Send>>,
}

impl Pending {
    /// Waits in `slot`; `abort` runs if it is dropped unanswered.
    pub(crate) fn new(slot: SharedSlot<Response>, abort: Box<dyn FnOnce() + Send>) -> Self {
        Self {
            slot,
            abort: Some(abort),
        }
    }

    /// An answer given at once (the owner cannot be reached, say).
    pub(crate) fn ready(response: Response) -> Self {
        let slot = Slot::new();
        Slot::set(&slot, response);
        Self { slot, abort: None }
    }

    pub(crate) fn poll_response(&mut self, cx: &mut Context<'_>) -> Poll<Response> {
        let response = std::task::ready!(Slot::poll_take(&self.slot, cx));
        self.abort = None;
        Poll::Ready(response)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(abort) = self.abort.take() {
            abort();
        }
    }
}

/// Most bytes a tunnel holds that its reader has not taken: past this it is closed
/// (the reader is too slow for what the other side sends).
pub(crate) const INBOX_LIMIT: usize = 16 << 20;

/// What arrived on a tunnel and was not read yet.
#[derive(Default)]
pub(crate) struct Inbox {
    chunks: VecDeque<Bytes>,
    bytes: usize,
    /// The other side ended (or the tunnel broke): reads see the end once the chunks
    /// are gone.
    ended: bool,
    /// Over [`INBOX_LIMIT`]: reads fail.
    overflow: bool,
    waker: Option<Waker>,
}

impl Inbox {
    /// Bytes from the other side.
    pub(crate) fn push(inbox: &Mutex<Self>, data: Bytes) {
        let mut s = lock(inbox);
        if s.ended {
            return;
        }
        s.bytes += data.len();
        if s.bytes > INBOX_LIMIT {
            s.overflow = true;
            s.ended = true;
            s.chunks.clear();
        } else if !data.is_empty() {
            s.chunks.push_back(data);
        }
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    /// The other side is gone.
    pub(crate) fn end(inbox: &Mutex<Self>) {
        let mut s = lock(inbox);
        s.ended = true;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}

/// Sends what a tunnel writes to its other side: `Some(bytes)`, or `None` for its
/// end. `false`: it could not (the carrier is down).
pub(crate) type TunnelSend = Arc<dyn Fn(Option<Bytes>) -> bool + Send + Sync>;

/// One end of a tunnel between two nodes, as a [`Transport`]: what is written goes to
/// the other side, what the other side wrote is read. Dropped, it ends the tunnel.
pub(crate) struct Tunnel {
    inbox: Arc<Mutex<Inbox>>,
    send: TunnelSend,
    ended: bool,
    /// Part of a chunk a short read left.
    partial: Bytes,
}

impl Tunnel {
    pub(crate) fn new(inbox: Arc<Mutex<Inbox>>, send: TunnelSend) -> Self {
        Self {
            inbox,
            send,
            ended: false,
            partial: Bytes::new(),
        }
    }

    /// A tunnel that is already closed (its other side could not be reached).
    pub(crate) fn closed() -> Self {
        let inbox = Arc::new(Mutex::new(Inbox {
            ended: true,
            ..Inbox::default()
        }));
        let mut tunnel = Self::new(inbox, Arc::new(|_| false));
        tunnel.ended = true;
        tunnel
    }

    /// The next bytes from the other side (empty: the end).
    pub(crate) fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Bytes>> {
        if !self.partial.is_empty() {
            return Poll::Ready(Ok(std::mem::take(&mut self.partial)));
        }
        let mut s = lock(&self.inbox);
        if let Some(chunk) = s.chunks.pop_front() {
            s.bytes -= chunk.len();
            return Poll::Ready(Ok(chunk));
        }
        if s.overflow {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "forwarded connection: too many unread bytes",
            )));
        }
        if s.ended {
            return Poll::Ready(Ok(Bytes::new()));
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Sends `data` to the other side.
    pub(crate) fn send(&mut self, data: Bytes) -> io::Result<()> {
        if self.ended || !(self.send)(Some(data)) {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        Ok(())
    }

    /// Ends the tunnel (once).
    pub(crate) fn end(&mut self) {
        if !std::mem::replace(&mut self.ended, true) {
            (self.send)(None);
        }
    }
}

impl Transport for Tunnel {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut chunk = std::task::ready!(self.poll_chunk(cx))?;
        let n = chunk.len().min(buf.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        self.partial = chunk.split_off(n);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        &mut self,
        _cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut data = BytesMut::with_capacity(bufs.iter().map(|b| b.len()).sum());
        for b in bufs {
            data.extend_from_slice(b);
        }
        let n = data.len();
        Poll::Ready(self.send(data.freeze()).map(|()| n))
    }

    fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.end();
        Poll::Ready(Ok(()))
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a tunnel sent: bytes, or its end.
    type Sent = Arc<Mutex<Vec<Option<Bytes>>>>;

    fn pair() -> (Tunnel, Arc<Mutex<Inbox>>, Sent) {
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let log = sent.clone();
        let tunnel = Tunnel::new(
            inbox.clone(),
            Arc::new(move |b| {
                lock(&log).push(b);
                true
            }),
        );
        (tunnel, inbox, sent)
    }

    #[test]
    fn a_tunnel_reads_what_came_and_sends_what_is_written() {
        let (mut tunnel, inbox, sent) = pair();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut buf = [0u8; 3];
        assert!(tunnel.poll_read(&mut cx, &mut buf).is_pending());
        Inbox::push(&inbox, Bytes::from_static(b"hello"));
        assert!(matches!(
            tunnel.poll_read(&mut cx, &mut buf),
            Poll::Ready(Ok(3))
        ));
        assert_eq!(&buf, b"hel");
        assert!(matches!(
            tunnel.poll_read(&mut cx, &mut buf),
            Poll::Ready(Ok(2))
        ));
        Inbox::end(&inbox);
        assert!(matches!(
            tunnel.poll_read(&mut cx, &mut buf),
            Poll::Ready(Ok(0))
        ));
        let bufs = [IoSlice::new(b"ab"), IoSlice::new(b"c")];
        assert!(matches!(
            tunnel.poll_write_vectored(&mut cx, &bufs),
            Poll::Ready(Ok(3))
        ));
        drop(tunnel);
        assert_eq!(
            *lock(&sent),
            vec![Some(Bytes::from_static(b"abc")), None],
            "the bytes, then the end (once)"
        );
    }

    #[test]
    fn a_reader_that_falls_behind_is_cut_off() {
        let (mut tunnel, inbox, _) = pair();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let chunk = Bytes::from(vec![0u8; 1 << 20]);
        for _ in 0..=INBOX_LIMIT >> 20 {
            Inbox::push(&inbox, chunk.clone());
        }
        let mut buf = [0u8; 8];
        match tunnel.poll_read(&mut cx, &mut buf) {
            Poll::Ready(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::OutOfMemory),
            other => panic!("read went on: {other:?}"),
        }
        assert_eq!(lock(&inbox).bytes, INBOX_LIMIT + (1 << 20));
        assert!(lock(&inbox).chunks.is_empty(), "what it held is let go");
    }
}
