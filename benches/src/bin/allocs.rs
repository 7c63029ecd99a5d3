//! `allocs`: heap allocations per echoed message, counted (not timed) by a counting
//! global allocator.
//!
//! ```text
//! cargo run --release -p wirestate-benches [--features peers] --bin allocs
//! ```
//!
//! For the engine alone (a `ws::Connection` fed 64 KiB reads; `-lent`: each read lent
//! to it in place, `handle_input_in_place`) and for every WebSocket
//! echo server in [`wirestate_benches::TOKIO_ECHO_SERVERS`] (ours, and the peers with
//! `--features peers`) over an in-memory tokio duplex stream: after the handshake and
//! 10,000 warm-up echoes, 100,000 masked 14-byte binary messages are echoed and the
//! allocations (`alloc` + `realloc` calls) and bytes allocated in that steady state
//! are divided by the number of messages. The client's side (a pre-built input and one
//! read buffer) allocates nothing per message, so the counts are the server's. One line
//! of `key=value` output per server.
//!
//! Then Socket.IO echo with ack, in memory: one session on `/` over a duplex stream,
//! `42` events `["echo", "<14 bytes>"]` with ack id 1 sent one at a time, each acked
//! with its argument before the next, for our typed-handler server (`msg.data::<Value>`
//! then `msg.ack`), our raw-payload one (`take_payload` / `ack_payload`) and, with
//! `--features peers`, socketioxide on axum (its handlers taking `Data<Value>`), after
//! 10,000 warm-up echoes. The client writes one pre-masked frame and reads into one
//! buffer, so the counts are again the server's (and the runtime's).
//!
//! An argument runs only the cases whose name contains it (`allocs sio-wirestate`): to
//! count one case's instructions under `valgrind --tool=callgrind`, say.
#![allow(clippy::print_stdout)] // A measuring tool: its report is its stdout.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncWriteExt;

use wirestate_engine::ws::{Config, Connection};

/// The system allocator, counting calls and bytes.
struct Counting;

static CALLS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// A global allocator is `unsafe` to implement by definition; this one only forwards.
#[allow(unsafe_code)]
// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counters are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        CALLS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        CALLS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const WARMUP: usize = 10_000;
const MESSAGES: usize = 100_000;
const SIZE: usize = 14;
/// Each echo comes back as an unmasked frame: 2 header bytes and the payload.
const FRAME_OUT: usize = 2 + SIZE;

fn counters() -> (u64, u64) {
    (CALLS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed))
}

fn report(name: &str, before: (u64, u64), after: (u64, u64)) {
    let per = |n: u64| n as f64 / MESSAGES as f64;
    println!(
        "impl={name} messages={MESSAGES} size={SIZE} allocs_per_msg={:.3} bytes_per_msg={:.1}",
        per(after.0 - before.0),
        per(after.1 - before.1)
    );
}

/// The engine alone: one connection, the frames in 64 KiB reads, each message sent
/// back as the event gave it.
fn sans_io(name: &str, input: &[u8], warmup: &[u8], config: &Arc<Config>) {
    let mut server = Connection::accepted(config.clone(), Instant::now());
    let echo = if name.ends_with("-lent") {
        wirestate_benches::sans_io_echo_lent
    } else {
        wirestate_benches::sans_io_echo
    };
    let mut run = |input: &[u8]| echo(&mut server, input);
    assert_eq!(run(warmup), WARMUP * FRAME_OUT);
    let before = counters();
    let out = run(input);
    let after = counters();
    assert_eq!(out, MESSAGES * FRAME_OUT);
    report(name, before, after);
}

/// One server over a duplex stream: handshake and warm-up, then the counted run.
async fn over_duplex(name: &'static str, input: &[u8], warmup: &[u8], config: Arc<Config>) {
    let mut echo = wirestate_benches::DuplexEcho::open(name, config).await;
    echo.echo(warmup, WARMUP * FRAME_OUT).await;
    let before = counters();
    echo.echo(input, MESSAGES * FRAME_OUT).await;
    let after = counters();
    report(name, before, after);
}

/// Echoes `count` Socket.IO events with ack over `s` (a session already open), one in
/// flight at a time; pings are answered.
async fn sio_echoes<S>(s: &mut S, event: &[u8], pong: &[u8], buf: &mut Vec<u8>, count: usize)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for _ in 0..count {
        s.write_all(event).await.expect("write");
        loop {
            wirestate_benches::read_frame(s, buf).await.expect("read");
            if buf.starts_with(b"431[") {
                break;
            }
            if buf.as_slice() == b"2" {
                s.write_all(pong).await.expect("pong");
            }
        }
    }
}

/// One Socket.IO server (`serve` spawns it on the client's duplex stream), counted.
async fn sio_case(name: &str, serve: impl FnOnce(tokio::io::DuplexStream)) {
    if !selected(name) {
        return;
    }
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    serve(server);
    wirestate_benches::sio_session(&mut client)
        .await
        .expect("session");
    let payload = format!("421[\"echo\",\"{}\"]", "a".repeat(SIZE));
    let event = wirestate_benches::masked_frame(0x81, payload.as_bytes());
    let pong = wirestate_benches::masked_frame(0x81, b"3");
    let mut buf = Vec::with_capacity(1024);
    sio_echoes(&mut client, &event, &pong, &mut buf, WARMUP).await;
    let before = counters();
    sio_echoes(&mut client, &event, &pong, &mut buf, MESSAGES).await;
    let after = counters();
    report(name, before, after);
}

/// Our Socket.IO server, one connection served in its own task.
fn ours(io: wirestate_tokio::sio::SocketIo) -> impl FnOnce(tokio::io::DuplexStream) {
    move |stream| {
        tokio::spawn(async move {
            let _ = wirestate_tokio::sio::serve_connection(&io, stream, None).await;
        });
    }
}

/// socketioxide on axum, served from a listener that yields the one in-memory stream.
#[cfg(feature = "peers")]
fn socketioxide(stream: tokio::io::DuplexStream) {
    struct Once(Option<tokio::io::DuplexStream>);
    impl axum::serve::Listener for Once {
        type Io = tokio::io::DuplexStream;
        type Addr = std::net::SocketAddr;
        async fn accept(&mut self) -> (Self::Io, Self::Addr) {
            match self.0.take() {
                Some(s) => (s, std::net::SocketAddr::from(([127, 0, 0, 1], 1))),
                None => std::future::pending().await,
            }
        }
        fn local_addr(&self) -> std::io::Result<Self::Addr> {
            Ok(std::net::SocketAddr::from(([127, 0, 0, 1], 1)))
        }
    }
    let app = wirestate_benches::socketioxide_app();
    tokio::spawn(async move {
        let _ = axum::serve(Once(Some(stream)), app).await;
    });
}

/// Whether the case `name` runs: every case, those the first argument names a part of,
/// or with a leading `=` the one it names whole.
fn selected(name: &str) -> bool {
    std::env::args()
        .nth(1)
        .is_none_or(|arg| match arg.strip_prefix('=') {
            Some(whole) => name == whole,
            None => name.contains(&arg),
        })
}

fn main() {
    let frame = wirestate_benches::masked_frame(0x82, &[b'a'; SIZE]);
    let input = frame.repeat(MESSAGES);
    let warmup = frame.repeat(WARMUP);
    let config = Arc::new(Config::default());
    if selected("wirestate-sans-io") {
        sans_io("wirestate-sans-io", &input, &warmup, &config);
    }
    if selected("wirestate-sans-io-lent") {
        sans_io("wirestate-sans-io-lent", &input, &warmup, &config);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for &name in wirestate_benches::TOKIO_ECHO_SERVERS {
        if !selected(name) {
            continue;
        }
        rt.block_on(over_duplex(name, &input, &warmup, config.clone()));
    }
    rt.block_on(async {
        let typed = wirestate_benches::sio_typed_server().expect("server");
        sio_case("sio-wirestate-tokio-typed", ours(typed)).await;
        let raw = wirestate_benches::sio_raw_server().expect("server");
        sio_case("sio-wirestate-tokio", ours(raw)).await;
        #[cfg(feature = "peers")]
        sio_case("sio-socketioxide", socketioxide).await;
    });
}
