//! `scaling`: how Socket.IO echo with ack scales from one worker thread to two, in
//! memory (no sockets, so no kernel work): tokio's multi-threaded runtime with 1, then
//! 2 worker threads, the typed-handler server (`echo` acked with its argument), and
//! `CONNS` in-memory clients (tokio duplex streams, pre-masked frames) each keeping one
//! event in flight until it has had `PER_CONN` acks. The control: the same clients
//! and runtime against plain WebSocket echo connections (`wirestate_tokio::accept`,
//! which share nothing), to tell what the harness and the runtime allow from what the
//! Socket.IO server's shared state costs. And what sharding alone would give: the
//! same clients spread over four independent Socket.IO servers (`sio4`: no state
//! shared between them, and nothing crossing them either), on the same work-stealing
//! runtime; and the layout of `serve_sharded`: one server per worker thread, each
//! thread a single-threaded runtime with its server and its share of the clients,
//! the servers joined over one in-process `LocalBus` as the shards are
//! (`sio_sharded`). Rounds alternate between the settings; prints one `key=value`
//! line per round and the median ratios.
//!
//! ```text
//! cargo run --release -p wirestate-benches --bin scaling [ROUNDS]
//! ```
#![allow(clippy::print_stdout)] // A measuring tool: its report is its stdout.

use std::io;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use wirestate_benches::masked_frame;

const CONNS: usize = 64;
const PER_CONN: usize = 2_000;

/// What the clients talk to.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// `n` typed-handler Socket.IO servers (`echo` acked with its argument), client `i`
    /// on server `i % n`.
    SocketIo(usize),
    /// One Socket.IO server per worker thread, each on its own single-threaded
    /// runtime with its share of the clients, the servers joined over a `LocalBus`:
    /// the shards of `serve_sharded`.
    Sharded,
    /// Plain WebSocket echo, one connection sharing nothing with another.
    WebSocket,
}

/// One round: the time for every client to have its answers.
fn round(workers: usize, kind: Kind) -> io::Result<Duration> {
    if kind == Kind::Sharded {
        // Each thread its own runtime, server and share of the clients, started
        // together: the round lasts as long as the slowest.
        let start = std::sync::Arc::new(std::sync::Barrier::new(workers));
        let bus = wirestate_tokio::sio::LocalBus::new();
        let threads: Vec<_> = (0..workers)
            .map(|_| {
                let (start, bus) = (start.clone(), bus.clone());
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    let conns = CONNS / workers;
                    rt.block_on(clients_round(Kind::SocketIo(1), conns, Some(&bus), &start))
                })
            })
            .collect();
        let mut longest = Duration::ZERO;
        for t in threads {
            let took = t
                .join()
                .map_err(|_| io::Error::other("a round's thread panicked"))??;
            longest = longest.max(took);
        }
        return Ok(longest);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    rt.block_on(clients_round(
        kind,
        CONNS,
        None,
        &std::sync::Barrier::new(1),
    ))
}

/// `conns` clients of `kind` on the current runtime, each with its `PER_CONN`
/// answers, timed from when every thread of the round (`start`) is ready; the
/// servers joined to `bus` if given.
async fn clients_round(
    kind: Kind,
    conns: usize,
    bus: Option<&wirestate_tokio::sio::LocalBus>,
    start: &std::sync::Barrier,
) -> io::Result<Duration> {
    let mut clients = Vec::with_capacity(conns);
    if let Kind::SocketIo(n) = kind {
        let servers = (0..n)
            .map(|_| wirestate_benches::sio_typed_server())
            .collect::<io::Result<Vec<_>>>()?;
        if let Some(bus) = bus {
            for io in &servers {
                wirestate_tokio::sio::join_bus(io, bus)?;
            }
        }
        for i in 0..conns {
            let (mut client, server) = tokio::io::duplex(64 * 1024);
            let io = servers[i % n].clone();
            tokio::spawn(async move {
                let _ = wirestate_tokio::sio::serve_connection(&io, server, None).await;
            });
            wirestate_benches::sio_session(&mut client).await?;
            clients.push(client);
        }
    } else {
        let config = std::sync::Arc::new(wirestate_engine::ws::Config::default());
        for _ in 0..conns {
            let (_task, client) =
                wirestate_benches::echo_upgraded("wirestate-tokio", config.clone()).await;
            clients.push(client);
        }
    }
    let payload = format!("421[\"echo\",\"{}\"]", "a".repeat(20));
    let event = masked_frame(0x81, payload.as_bytes());
    // The answer: the ack (`43…`), or the echoed frame itself (`42…`).
    let answer: &'static [u8] = if kind == Kind::WebSocket {
        b"42"
    } else {
        b"43"
    };
    start.wait();
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let event = event.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                for _ in 0..PER_CONN {
                    c.write_all(&event).await?;
                    loop {
                        wirestate_benches::read_frame(&mut c, &mut buf).await?;
                        if buf.starts_with(answer) {
                            break;
                        }
                    }
                }
                io::Result::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(io::Error::other)??;
    }
    Ok(start.elapsed())
}

fn main() -> io::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let messages = (CONNS * PER_CONN) as f64;
    let kinds = [
        (Kind::SocketIo(1), "sio"),
        (Kind::SocketIo(4), "sio4"),
        (Kind::Sharded, "sio_sharded"),
        (Kind::WebSocket, "ws"),
    ];
    let mut ratios = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for r in 1..=rounds {
        for (k, (kind, name)) in kinds.into_iter().enumerate() {
            let mut rates = [0.0; 2];
            for (i, workers) in [1, 2].into_iter().enumerate() {
                let took = round(workers, kind)?;
                rates[i] = messages / took.as_secs_f64();
                println!(
                    "round={r} server={name} workers={workers} conns={CONNS} messages={messages} msgs_per_s={:.0}",
                    rates[i]
                );
            }
            ratios[k].push(rates[1] / rates[0]);
        }
    }
    for (k, (_, name)) in kinds.into_iter().enumerate() {
        ratios[k].sort_by(f64::total_cmp);
        println!(
            "{name}_scaling_2_vs_1_median={:.2}",
            ratios[k][ratios[k].len() / 2]
        );
    }
    Ok(())
}
