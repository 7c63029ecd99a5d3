//! `load`: a WebSocket load client for loopback comparisons.
//!
//! ```text
//! load --addr 127.0.0.1:9100 --conns 100 --size 20 --secs 5 [--pipeline 1] [--deflate] [--server-pid PID]
//! load --addr 127.0.0.1:9100 --idle 10000 --server-pid PID
//! load --addr 127.0.0.1:9100 --sio --conns 100 --size 20 --secs 5 --server-pid PID
//! load --addr 127.0.0.1:9100 --sio --polling --conns 100 --size 20 --secs 5 --server-pid PID
//! load --addr 127.0.0.1:9100 --sio-broadcast --conns 1000 --size 20 --secs 5 --server-pid PID
//! load --addr 127.0.0.1:9100 --sio-broadcast --polling --conns 1000 --size 20 --secs 5 --server-pid PID
//! load --addr B --publish-addr A --sio-broadcast --conns 1000 --cluster-pids A,B --redis-pid R
//! load --addr 127.0.0.1:9100 --sio --idle 10000 --server-pid PID
//! load --addr 127.0.0.1:8080 --ws-broadcast --conns 1000 --size 20 --secs 5 --server-pid PID
//! ```
//!
//! With `--sio`, each message is a Socket.IO event `echo` with an ack over an
//! Engine.IO WebSocket session on `/socket.io/`, and the round trip ends with the ack
//! (the client answers the server's pings). With `--polling` as well, each session is
//! an HTTP long-polling one, as a browser's before its upgrade: two keep-alive
//! connections, one always holding a GET, the other POSTing the event; the round trip
//! ends when a GET answer carries the ack (no `Accept-Encoding`: answers are plain).
//!
//! With `--sio-broadcast`, `conns` Socket.IO sessions wait in the server's room `r`
//! (every bench server joins each socket to it) and one more session, the publisher,
//! emits `bcast` with a `size`-byte string; the server forwards it as `msg` to the room
//! except the publisher. One broadcast is in flight at a time: the next is published
//! when every recipient has its copy. Reports deliveries/s, p50/p99 of the time from
//! publishing to each delivery (fan-out latency), the mean time until the last
//! recipient has it, and the server's CPU µs per delivery, measured from the first
//! measured publish to the last measured completion.
//!
//! With `--ws-broadcast`, the same over plain WebSockets, against the `/ws/chat`
//! protocol of `ws-rooms` (or a peer serving it): `conns` connections wait on
//! `/ws/chat` (the server greets each with `{"type":"connected",...}`), and the
//! publisher sends `{"type":"message","text":T}`, which the server sends as a
//! `chat-message` to every other `/ws/chat` connection. Recipients answer pings.
//!
//! With `--polling` as well, the recipients are Socket.IO sessions over HTTP
//! long-polling (each with a GET always waiting, as a browser's); the publisher stays
//! on WebSocket.
//!
//! With `--publish-addr`, the publisher talks to that server instead (another node of a
//! cluster: every delivery then goes through the cluster's Redis), and
//! `--cluster-pids` (the nodes) and `--redis-pid` add the nodes' user and system CPU
//! µs per delivery, apart, and Redis's.
//!
//! With `--deflate`, the client offers permessage-deflate with
//! `client_no_context_takeover` (so one pre-compressed frame is valid every time) and
//! sends text messages of `size` bytes of JSON-like text, compressed; the server must
//! accept the extension, and its answers (compressed or not) are counted as they come,
//! not inflated.
//!
//! Echo mode: `conns` connections each keep `pipeline` binary messages of `size` bytes
//! in flight (closed loop) for `secs` seconds (after a 1 s warm-up); prints messages/s,
//! p50/p99 round-trip time, this client's CPU and the server's CPU (from
//! `/proc/PID/stat`) and RSS. Idle mode: opens `idle` connections and prints the
//! server's RSS growth per connection. Frames are pre-masked once, so the client spends
//! its time in the kernel, not in WebSocket code. One line of `key=value` output.
#![allow(clippy::print_stdout)] // A measuring tool: its report is its stdout.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

struct Opts {
    addr: String,
    conns: usize,
    size: usize,
    secs: f64,
    pipeline: usize,
    server_pid: Option<u32>,
    idle: Option<usize>,
    sio: bool,
    /// Socket.IO over HTTP long-polling (`--polling`).
    polling: bool,
    broadcast: bool,
    /// Plain WebSocket broadcast (`--ws-broadcast`) rather than Socket.IO.
    ws_broadcast: bool,
    deflate: bool,
    publish_addr: Option<String>,
    cluster_pids: Vec<String>,
    redis_pid: Option<String>,
}

fn parse() -> Opts {
    let mut o = Opts {
        addr: "127.0.0.1:9100".into(),
        conns: 10,
        size: 20,
        secs: 5.0,
        pipeline: 1,
        server_pid: None,
        idle: None,
        sio: false,
        polling: false,
        broadcast: false,
        ws_broadcast: false,
        deflate: false,
        publish_addr: None,
        cluster_pids: Vec::new(),
        redis_pid: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--sio" || a == "--sio-broadcast" {
            o.sio = true;
            o.broadcast |= a == "--sio-broadcast";
            continue;
        }
        if a == "--ws-broadcast" {
            o.broadcast = true;
            o.ws_broadcast = true;
            continue;
        }
        if a == "--polling" {
            o.sio = true;
            o.polling = true;
            continue;
        }
        if a == "--deflate" {
            o.deflate = true;
            continue;
        }
        let v = args.next().unwrap_or_default();
        match a.as_str() {
            "--addr" => o.addr = v,
            "--conns" => o.conns = v.parse().unwrap_or(o.conns),
            "--size" => o.size = v.parse().unwrap_or(o.size),
            "--secs" => o.secs = v.parse().unwrap_or(o.secs),
            "--pipeline" => o.pipeline = v.parse().unwrap_or(1).max(1),
            "--server-pid" => o.server_pid = v.parse().ok(),
            "--idle" => o.idle = v.parse().ok(),
            "--publish-addr" => o.publish_addr = Some(v),
            "--cluster-pids" => o.cluster_pids = v.split(',').map(str::to_owned).collect(),
            "--redis-pid" => o.redis_pid = Some(v),
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    o
}

/// CPU seconds of a process, user and system apart, from `/proc/PID/stat`.
fn cpu_split(pid: &str) -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return (0.0, 0.0);
    };
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) / 100.0, ticks(12) / 100.0)
}

/// User and system CPU seconds of several processes, summed apart.
fn cpu_split_sum(pids: &[String]) -> (f64, f64) {
    pids.iter()
        .map(|p| cpu_split(p))
        .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// CPU seconds (user + system) of a process, from `/proc/PID/stat`.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start at ")".
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Resident set size in KiB, from `/proc/PID/status`.
fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn handshake(addr: &str, deflate: bool) -> io::Result<TcpStream> {
    let extension = if deflate {
        "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n"
    } else {
        ""
    };
    let (s, head) = handshake_with(addr, "/", extension).await?;
    if deflate
        && !String::from_utf8_lossy(&head)
            .to_ascii_lowercase()
            .contains("permessage-deflate")
    {
        return Err(io::Error::other(
            "the server did not accept permessage-deflate",
        ));
    }
    Ok(s)
}

async fn handshake_to(addr: &str, target: &str) -> io::Result<TcpStream> {
    Ok(handshake_with(addr, target, "").await?.0)
}

/// Opens a WebSocket on `target`, with `extra` header lines; returns the response head.
async fn handshake_with(addr: &str, target: &str, extra: &str) -> io::Result<(TcpStream, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(io::Error::other("no 101"));
    }
    Ok((s, head))
}

/// A masked binary frame carrying `size` bytes.
fn frame(size: usize) -> Vec<u8> {
    masked(0x82, &vec![b'a'; size])
}

/// A masked, compressed text frame (RSV1 set) carrying `size` bytes of JSON-like text
/// (records that differ, so it is not one repeated line), deflated with no context, as
/// `client_no_context_takeover` allows.
fn deflated_frame(size: usize) -> Vec<u8> {
    let mut text = String::with_capacity(size + 64);
    let mut i = 0u64;
    while text.len() < size {
        // A cheap generator, so the text is not one repeated line.
        let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
        text.push_str(&format!(
            "{{\"id\":{x},\"user\":\"u{}\",\"text\":\"msg {:x}\"}},",
            x % 97,
            x
        ));
        i += 1;
    }
    text.truncate(size);
    // What a client does (RFC 7692 §7.2.1): deflate with a sync flush, then drop the
    // flush's trailing 00 00 ff ff.
    let mut z = flate2::Compress::new(flate2::Compression::new(6), false);
    let mut data = Vec::with_capacity(size * 2 + 64);
    let _ = z.compress_vec(text.as_bytes(), &mut data, flate2::FlushCompress::Sync);
    if data.ends_with(&[0, 0, 0xff, 0xff]) {
        data.truncate(data.len() - 4);
    }
    masked(0xc1, &data)
}

use wirestate_benches::masked_frame as masked;

/// An Engine.IO WebSocket session connected to Socket.IO namespace `/`.
async fn sio_session(addr: &str) -> io::Result<TcpStream> {
    let mut s = handshake_to(addr, "/socket.io/?EIO=4&transport=websocket").await?;
    let mut buf = Vec::new();
    read_frame(&mut s, &mut buf).await?; // the open packet
    s.write_all(&masked(0x81, b"40")).await?;
    loop {
        read_frame(&mut s, &mut buf).await?;
        if buf.starts_with(b"40") {
            return Ok(s);
        }
    }
}

/// One keep-alive HTTP/1.1 connection of a polling session, with what it read past
/// the last response.
struct HttpConn {
    s: TcpStream,
    buf: Vec<u8>,
    host: String,
}

impl HttpConn {
    async fn open(addr: &str) -> io::Result<Self> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Self {
            s,
            buf: Vec::with_capacity(4096),
            host: addr.to_owned(),
        })
    }

    /// Sends a request for `target` (a POST when there is a body).
    async fn send(&mut self, target: &str, body: Option<&[u8]>) -> io::Result<()> {
        let mut req = match body {
            Some(b) => format!(
                "POST {target} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
                self.host,
                b.len()
            )
            .into_bytes(),
            None => format!("GET {target} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host).into_bytes(),
        };
        req.extend_from_slice(body.unwrap_or_default());
        self.s.write_all(&req).await
    }

    /// Reads one response (framed by `Content-Length`); returns its body.
    async fn read(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
                if !head.starts_with("http/1.1 200") {
                    return Err(io::Error::other(format!(
                        "polling: {}",
                        head.lines().next().unwrap_or("")
                    )));
                }
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| io::Error::other("polling: no content-length"))?;
                let start = end + 4;
                if self.buf.len() >= start + len {
                    let body = self.buf[start..start + len].to_vec();
                    self.buf.drain(..start + len);
                    return Ok(body);
                }
            }
            let mut chunk = [0u8; 16384];
            let n = self.s.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A Socket.IO session on `/` over HTTP long-polling: (the GET connection, the POST
/// connection, the session's target).
async fn sio_polling_session(addr: &str) -> io::Result<(HttpConn, HttpConn, String)> {
    let mut get = HttpConn::open(addr).await?;
    let post = HttpConn::open(addr).await?;
    get.send("/socket.io/?EIO=4&transport=polling", None)
        .await?;
    let open = String::from_utf8_lossy(&get.read().await?).into_owned();
    let sid = open
        .split("\"sid\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .ok_or_else(|| io::Error::other("polling: no sid"))?
        .to_owned();
    let target = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let mut session = (get, post, target);
    polling_post(&mut session, b"40").await?;
    loop {
        session.0.send(&session.2, None).await?;
        let body = session.0.read().await?;
        if body.split(|b| *b == 0x1e).any(|p| p.starts_with(b"40")) {
            return Ok(session);
        }
    }
}

/// POSTs `body` on the session's POST connection and reads the `ok`.
async fn polling_post(session: &mut (HttpConn, HttpConn, String), body: &[u8]) -> io::Result<()> {
    session.1.send(&session.2, Some(body)).await?;
    session.1.read().await.map(drop)
}

/// One echo over a polling session: a GET waiting, the event POSTed, GETs until one
/// carries the ack (pings answered on the way).
async fn polling_echo(session: &mut (HttpConn, HttpConn, String), event: &[u8]) -> io::Result<()> {
    session.0.send(&session.2, None).await?;
    polling_post(session, event).await?;
    loop {
        let body = session.0.read().await?;
        let mut acked = false;
        let mut pinged = false;
        for packet in body.split(|b| *b == 0x1e) {
            acked |= packet.starts_with(b"43");
            pinged |= packet == b"2";
        }
        if pinged {
            polling_post(session, b"3").await?;
        }
        if acked {
            return Ok(());
        }
        session.0.send(&session.2, None).await?;
    }
}

/// A connection of the echo mode.
enum Echoer {
    /// A WebSocket (plain, or an Engine.IO session's).
    Ws(TcpStream),
    /// A Socket.IO session over long-polling.
    Polling(Box<(HttpConn, HttpConn, String)>),
}

/// Reads frames until the ack of an echo, answering pings.
async fn read_ack(s: &mut TcpStream, buf: &mut Vec<u8>, pong: &[u8]) -> io::Result<()> {
    loop {
        read_frame(s, buf).await?;
        if buf.starts_with(b"43") {
            return Ok(());
        }
        if buf.as_slice() == b"2" {
            s.write_all(pong).await?;
        }
    }
}

/// Reads one unmasked server frame; returns its payload length.
async fn read_frame(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    read_frame_op(s, buf).await.map(|(_, len)| len)
}

/// A plain WebSocket on `/ws/chat`, once the server has greeted it.
async fn chat_session(addr: &str) -> io::Result<TcpStream> {
    let mut s = handshake_to(addr, "/ws/chat").await?;
    let mut buf = Vec::new();
    loop {
        read_frame(&mut s, &mut buf).await?;
        if buf.starts_with(b"{\"type\":\"connected\"") {
            return Ok(s);
        }
    }
}

/// Reads one unmasked server frame; returns its opcode and payload length.
async fn read_frame_op(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<(u8, usize)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await?;
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await?;
            usize::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).await?;
            u64::from_be_bytes(b) as usize
        }
        n => usize::from(n),
    };
    buf.resize(len, 0);
    s.read_exact(buf).await?;
    Ok((h[0] & 0x0f, len))
}

async fn echo(o: &Opts) -> io::Result<()> {
    let payload = if o.sio {
        masked(
            0x81,
            format!("421[\"echo\",\"{}\"]", "a".repeat(o.size)).as_bytes(),
        )
    } else if o.deflate {
        deflated_frame(o.size)
    } else {
        frame(o.size)
    };
    let pong = masked(0x81, b"3");
    let sio = o.sio;
    let warmup = Duration::from_secs(1);
    let run = Duration::from_secs_f64(o.secs);
    // Connect everyone first: the warm-up and the measurement start after that.
    let mut streams = Vec::with_capacity(o.conns);
    for _ in 0..o.conns {
        streams.push(if o.polling {
            Echoer::Polling(Box::new(sio_polling_session(&o.addr).await?))
        } else if sio {
            Echoer::Ws(sio_session(&o.addr).await?)
        } else {
            Echoer::Ws(handshake(&o.addr, o.deflate).await?)
        });
    }
    let event = format!("421[\"echo\",\"{}\"]", "a".repeat(o.size)).into_bytes();
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + run;
    let mut tasks = Vec::new();
    for mut s in streams {
        let payload = payload.clone();
        let pong = pong.clone();
        let event = event.clone();
        let pipeline = o.pipeline;
        tasks.push(tokio::spawn(async move {
            let mut rtts: Vec<u32> = Vec::new();
            let mut buf = Vec::new();
            let mut sent: std::collections::VecDeque<Instant> = Default::default();
            let mut count = 0u64;
            loop {
                let got = match &mut s {
                    Echoer::Polling(session) => {
                        sent.push_back(Instant::now());
                        polling_echo(session, &event).await
                    }
                    Echoer::Ws(s) => {
                        while sent.len() < pipeline {
                            if s.write_all(&payload).await.is_err() {
                                return (count, rtts);
                            }
                            sent.push_back(Instant::now());
                        }
                        if sio {
                            read_ack(s, &mut buf, &pong).await
                        } else {
                            read_frame(s, &mut buf).await.map(drop)
                        }
                    }
                };
                if got.is_err() {
                    return (count, rtts);
                }
                let now = Instant::now();
                let t0 = sent.pop_front().unwrap_or(now);
                if now >= end {
                    return (count, rtts);
                }
                if now >= measure_from {
                    count += 1;
                    rtts.push((now - t0).as_micros().min(u128::from(u32::MAX)) as u32);
                }
            }
        }));
    }
    let pid = o.server_pid.map(|p| p.to_string());
    tokio::time::sleep_until((measure_from).into()).await;
    let c0 = cpu_seconds("self");
    let (u0, k0) = pid.as_deref().map_or((0.0, 0.0), cpu_split);
    let mut total = 0u64;
    let mut rtts = Vec::new();
    for t in tasks {
        if let Ok((n, r)) = t.await {
            total += n;
            rtts.extend(r);
        }
    }
    let c1 = cpu_seconds("self");
    let (u1, k1) = pid.as_deref().map_or((0.0, 0.0), cpu_split);
    let (user, sys) = (u1 - u0, k1 - k0);
    let per_msg = |s: f64| {
        if total > 0 {
            s * 1e6 / total as f64
        } else {
            0.0
        }
    };
    rtts.sort_unstable();
    let pct = |p: f64| {
        rtts.get(((rtts.len() as f64 * p) as usize).min(rtts.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let secs = run.as_secs_f64();
    println!(
        "sio={} polling={} deflate={} conns={} size={} pipeline={} msgs_per_s={:.0} p50_us={} p99_us={} client_cpu={:.0}% server_cpu={:.0}% server_cpu_us_per_msg={:.2} server_user_us_per_msg={:.2} server_sys_us_per_msg={:.2} server_rss_kib={}",
        o.sio,
        o.polling,
        o.deflate,
        o.conns,
        o.size,
        o.pipeline,
        total as f64 / secs,
        pct(0.50),
        pct(0.99),
        (c1 - c0) / secs * 100.0,
        (user + sys) / secs * 100.0,
        per_msg(user + sys),
        per_msg(user),
        per_msg(sys),
        pid.as_deref().map_or(0, rss_kib),
    );
    Ok(())
}

/// Microseconds since `base`, as stored in the broadcast's shared clock.
fn micros_since(base: Instant) -> u64 {
    base.elapsed().as_micros().min(u128::from(u64::MAX)) as u64
}

/// What the publisher and the recipients of the broadcast run share.
struct Fanout {
    base: Instant,
    /// When the broadcast in flight was published (µs since `base`).
    sent_at: AtomicU64,
    /// Recipients still waiting for the broadcast in flight.
    remaining: AtomicUsize,
    /// Whether the broadcast in flight is measured.
    measuring: AtomicBool,
    /// Publish-to-delivery times of measured broadcasts, µs.
    latencies: Mutex<Vec<u32>>,
    /// Wakes the publisher when `remaining` reaches zero.
    done: Notify,
}

async fn broadcast(o: &Opts) -> io::Result<()> {
    let n = o.conns;
    let fanout = Arc::new(Fanout {
        base: Instant::now(),
        sent_at: AtomicU64::new(0),
        remaining: AtomicUsize::new(0),
        measuring: AtomicBool::new(false),
        latencies: Mutex::new(Vec::new()),
        done: Notify::new(),
    });
    let ws = o.ws_broadcast;
    let session = |addr: String| async move {
        if ws {
            chat_session(&addr).await
        } else {
            sio_session(&addr).await
        }
    };
    let mut recipients = Vec::with_capacity(n);
    let mut polling = Vec::new();
    for _ in 0..n {
        if o.polling {
            polling.push(sio_polling_session(&o.addr).await?);
        } else {
            recipients.push(session(o.addr.clone()).await?);
        }
    }
    let mut publisher = session(o.publish_addr.clone().unwrap_or_else(|| o.addr.clone())).await?;
    // Socket.IO's pong, or a WebSocket pong frame.
    let pong = if ws {
        masked(0x8a, b"")
    } else {
        masked(0x81, b"3")
    };
    let delivery: &'static [u8] = if ws {
        b"{\"type\":\"chat-message\""
    } else {
        b"42[\"msg\""
    };
    let mut tasks = Vec::with_capacity(n);
    // A delivery reached a recipient.
    let delivered = |fanout: &Fanout| {
        if fanout.measuring.load(Ordering::Relaxed) {
            let sent = fanout.sent_at.load(Ordering::Relaxed);
            let rtt = micros_since(fanout.base).saturating_sub(sent);
            if let Ok(mut l) = fanout.latencies.lock() {
                l.push(rtt.min(u64::from(u32::MAX)) as u32);
            }
        }
        if fanout.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            fanout.done.notify_one();
        }
    };
    for mut session in polling {
        let fanout = fanout.clone();
        tasks.push(tokio::spawn(async move {
            // Always one GET waiting, as a browser's.
            while session.0.send(&session.2, None).await.is_ok() {
                let Ok(body) = session.0.read().await else {
                    break;
                };
                let mut pinged = false;
                for packet in body.split(|b| *b == 0x1e) {
                    if packet.starts_with(delivery) {
                        delivered(&fanout);
                    }
                    pinged |= packet == b"2";
                }
                if pinged && polling_post(&mut session, b"3").await.is_err() {
                    break;
                }
            }
        }));
    }
    for mut s in recipients {
        let fanout = fanout.clone();
        let pong = pong.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = Vec::new();
            while let Ok((op, _)) = read_frame_op(&mut s, &mut buf).await {
                let ping = if ws {
                    op == 0x9
                } else {
                    buf.as_slice() == b"2"
                };
                if buf.starts_with(delivery) {
                    delivered(&fanout);
                } else if ping && s.write_all(&pong).await.is_err() {
                    break;
                }
            }
        }));
    }
    let text = "a".repeat(o.size);
    let message = if ws {
        masked(
            0x81,
            format!("{{\"type\":\"message\",\"text\":\"{text}\"}}").as_bytes(),
        )
    } else {
        masked(0x81, format!("42[\"bcast\",\"{text}\"]").as_bytes())
    };
    let pid = o.server_pid.map(|p| p.to_string());
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(1);
    let end = measure_from + Duration::from_secs_f64(o.secs);
    let (mut broadcasts, mut completions_us) = (0u64, 0u64);
    let mut cpu = None;
    let mut measured_from = start;
    let mut client_cpu = 0.0;
    let (mut cluster_cpu, mut redis_cpu) = ((0.0, 0.0), 0.0);
    let mut server_split = (0.0, 0.0);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let measuring = now >= measure_from;
        if measuring && cpu.is_none() {
            cpu = Some(pid.as_deref().map_or(0.0, cpu_seconds));
            server_split = pid.as_deref().map_or((0.0, 0.0), cpu_split);
            client_cpu = cpu_seconds("self");
            cluster_cpu = cpu_split_sum(&o.cluster_pids);
            redis_cpu = o.redis_pid.as_deref().map_or(0.0, cpu_seconds);
            measured_from = now;
        }
        fanout.measuring.store(measuring, Ordering::Relaxed);
        fanout.remaining.store(n, Ordering::Release);
        let sent = micros_since(fanout.base);
        fanout.sent_at.store(sent, Ordering::Relaxed);
        publisher.write_all(&message).await?;
        if tokio::time::timeout(Duration::from_secs(30), fanout.done.notified())
            .await
            .is_err()
        {
            return Err(io::Error::other(format!(
                "broadcast not delivered to {} of {n} recipients within 30 s",
                fanout.remaining.load(Ordering::Acquire)
            )));
        }
        if measuring {
            broadcasts += 1;
            completions_us += micros_since(fanout.base).saturating_sub(sent);
        }
    }
    let server_cpu = pid.as_deref().map_or(0.0, cpu_seconds) - cpu.unwrap_or(0.0);
    let split_now = pid.as_deref().map_or((0.0, 0.0), cpu_split);
    let server_split = (split_now.0 - server_split.0, split_now.1 - server_split.1);
    let client_cpu = cpu_seconds("self") - client_cpu;
    let cluster_now = cpu_split_sum(&o.cluster_pids);
    let cluster_cpu = (cluster_now.0 - cluster_cpu.0, cluster_now.1 - cluster_cpu.1);
    let redis_cpu = o.redis_pid.as_deref().map_or(0.0, cpu_seconds) - redis_cpu;
    let secs = measured_from.elapsed().as_secs_f64();
    for t in &tasks {
        t.abort();
    }
    let mut rtts = fanout
        .latencies
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    rtts.sort_unstable();
    let pct = |p: f64| {
        rtts.get(((rtts.len() as f64 * p) as usize).min(rtts.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let deliveries = broadcasts * n as u64;
    println!(
        "{}=true polling={} recipients={n} size={} broadcasts={broadcasts} deliveries_per_s={:.0} p50_us={} p99_us={} last_delivery_mean_us={:.0} client_cpu={:.0}% server_cpu={:.0}% server_cpu_us_per_delivery={:.3} server_user_us_per_delivery={:.3} server_sys_us_per_delivery={:.3} server_rss_kib={}",
        if ws { "ws_broadcast" } else { "sio_broadcast" },
        o.polling,
        o.size,
        deliveries as f64 / secs,
        pct(0.50),
        pct(0.99),
        completions_us as f64 / broadcasts.max(1) as f64,
        client_cpu / secs * 100.0,
        server_cpu / secs * 100.0,
        if deliveries > 0 { server_cpu * 1e6 / deliveries as f64 } else { 0.0 },
        server_split.0 * 1e6 / deliveries.max(1) as f64,
        server_split.1 * 1e6 / deliveries.max(1) as f64,
        pid.as_deref().map_or(0, rss_kib),
    );
    if !o.cluster_pids.is_empty() {
        let per = |cpu: f64| {
            if deliveries > 0 {
                cpu * 1e6 / deliveries as f64
            } else {
                0.0
            }
        };
        println!(
            "cluster_user_us_per_delivery={:.3} cluster_sys_us_per_delivery={:.3} redis_us_per_delivery={:.3}",
            per(cluster_cpu.0),
            per(cluster_cpu.1),
            per(redis_cpu),
        );
    }
    Ok(())
}

async fn idle(o: &Opts, n: usize) -> io::Result<()> {
    let pid = o
        .server_pid
        .map(|p| p.to_string())
        .unwrap_or_else(|| "self".into());
    let before = rss_kib(&pid);
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(if o.sio {
            sio_session(&o.addr).await?
        } else {
            handshake(&o.addr, false).await?
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(&pid);
    println!(
        "sio={} idle_conns={n} server_rss_before_kib={before} server_rss_after_kib={after} bytes_per_conn={:.0}",
        o.sio,
        (after.saturating_sub(before)) as f64 * 1024.0 / n as f64
    );
    drop(conns);
    Ok(())
}

fn main() -> io::Result<()> {
    let o = parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match o.idle {
            Some(n) => idle(&o, n).await,
            None if o.broadcast => broadcast(&o).await,
            None => echo(&o).await,
        }
    })
}
