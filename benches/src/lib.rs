//! Benchmarks of wirestate (see `benches/`): the WebSocket echo servers that the load
//! runs (`bench-server`) and the in-memory criterion group share, ours and (with the
//! `peers` feature) the peers', each over any tokio byte stream.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use wirestate_engine::ws::Config;

/// The WebSocket echo servers on tokio: ours, then the peers built in.
pub const TOKIO_ECHO_SERVERS: &[&str] = &[
    "wirestate-tokio",
    "wirestate-tokio-lent",
    #[cfg(feature = "peers")]
    "fastwebsockets",
    #[cfg(feature = "peers")]
    "tokio-websockets",
    #[cfg(feature = "peers")]
    "tokio-tungstenite",
];

/// Spawns WebSocket echo server `name` (one of [`TOKIO_ECHO_SERVERS`]) on one accepted
/// stream, as its own tokio task: the upgrade handshake, then every text or binary
/// message is sent back as it came, uncompressed, until the peer closes. Each
/// implementation gets a task of its own type, so the task's size (which the idle
/// memory runs measure) is that implementation's alone. `None` for an unknown name.
pub fn spawn_echo<S>(name: &str, stream: S, config: Arc<Config>) -> Option<JoinHandle<()>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match name {
        "wirestate-tokio" => Some(spawn_sized(async move {
            // `let else`, as the peers below are written (and as `?` would do): an
            // `if let` scrutinee would keep the accept's `Result` alive beside `ws`.
            let Ok(mut ws) = wirestate_tokio::accept(stream, config).await else {
                return;
            };
            while let Some(Ok(m)) = ws.recv().await {
                if ws.send(m).await.is_err() {
                    break;
                }
            }
        })),
        // The same, each message lent in place and answered before the next read.
        "wirestate-tokio-lent" => Some(spawn_sized(async move {
            let Ok(mut ws) = wirestate_tokio::accept(stream, config).await else {
                return;
            };
            while let Some(Ok(Ok(()))) = ws.recv_with(|m, out| out.send(m)).await {}
        })),
        #[cfg(feature = "peers")]
        other => peers::spawn(other, stream),
        #[cfg(not(feature = "peers"))]
        _ => None,
    }
}

/// Whether the size of a connection's task has been printed (once, on stderr).
static SIZE_SHOWN: AtomicBool = AtomicBool::new(false);

/// Spawns `task`; the first time, prints the size of its future on stderr.
fn spawn_sized<F: Future<Output = ()> + Send + 'static>(task: F) -> JoinHandle<()> {
    if !SIZE_SHOWN.swap(true, Ordering::Relaxed) {
        eprintln!(
            "connection task future: {} bytes",
            std::mem::size_of_val(&task)
        );
    }
    tokio::spawn(task)
}

#[cfg(feature = "peers")]
mod peers {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::task::JoinHandle;

    pub(crate) fn spawn<S>(name: &str, stream: S) -> Option<JoinHandle<()>>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Some(match name {
            "fastwebsockets" => super::spawn_sized(fast(stream)),
            "tokio-websockets" => super::spawn_sized(async move {
                let Ok((_req, mut ws)) = tokio_websockets::ServerBuilder::new()
                    .limits(tokio_websockets::Limits::unlimited())
                    .accept(stream)
                    .await
                else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                        break;
                    }
                }
            }),
            "tokio-tungstenite" => super::spawn_sized(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                        break;
                    }
                }
            }),
            _ => return None,
        })
    }

    /// fastwebsockets leaves the HTTP handshake to hyper; ours does it here.
    async fn fast<S>(mut stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let request = loop {
            let Ok(n) = stream.read(&mut chunk).await else {
                return;
            };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            match wirestate_engine::ws::handshake::parse_request(&buf, 8192) {
                Ok(Some((request, _))) => break request,
                Ok(None) => continue,
                Err(_) => return,
            }
        };
        if stream
            .write_all(&request.response(None, None))
            .await
            .is_err()
        {
            return;
        }
        let mut ws =
            fastwebsockets::WebSocket::after_handshake(stream, fastwebsockets::Role::Server);
        ws.set_auto_close(true);
        ws.set_auto_pong(true);
        ws.set_max_message_size(64 << 20);
        while let Ok(frame) = ws.read_frame().await {
            match frame.opcode {
                fastwebsockets::OpCode::Text | fastwebsockets::OpCode::Binary => {
                    let reply = fastwebsockets::Frame::new(true, frame.opcode, None, frame.payload);
                    if ws.write_frame(reply).await.is_err() {
                        return;
                    }
                }
                fastwebsockets::OpCode::Close => return,
                _ => {}
            }
        }
    }
}

/// A client-side upgrade request for path `/` (the key from RFC 6455's example).
pub const UPGRADE_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A masked client frame (`first` = FIN and opcode) carrying `payload`.
pub fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x12u8, 0x34, 0x56, 0x78];
    let mut f = vec![first];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// A Socket.IO server with the handlers every bench server has, written as
/// applications write them (typed: `msg.data::<Value>()`): every socket joins room `r`;
/// `echo` is acked with its argument; `bcast` is forwarded as `msg` to room `r` except
/// the sender.
pub fn sio_typed_server() -> std::io::Result<wirestate_tokio::sio::SocketIo> {
    let io = wirestate_tokio::sio::server(wirestate_tokio::sio::Config::default())?;
    sio_typed_handlers(&io);
    Ok(io)
}

/// The typed handlers of [`sio_typed_server`], on `io` (a shard's, say).
pub fn sio_typed_handlers(io: &wirestate_tokio::sio::SocketIo) {
    use serde_json::Value;
    io.of("/").on_connection(|socket| async move {
        socket.join(["r"]);
        socket.on("echo", |_socket, msg| async move {
            let data: Value = msg.data()?;
            msg.ack(&data)
        });
        socket.on("bcast", |socket, msg| async move {
            let data: Value = msg.data()?;
            socket.to("r").emit("msg", &data).map(drop)
        });
    });
}

/// The same server with the raw-payload handlers (`take_payload` / `ack_payload`: the
/// arguments handed back as they came, no typed value in between).
pub fn sio_raw_server() -> std::io::Result<wirestate_tokio::sio::SocketIo> {
    let io = wirestate_tokio::sio::server(wirestate_tokio::sio::Config::default())?;
    io.of("/").on_connection(|socket| async move {
        socket.join(["r"]);
        socket.on("echo", |_socket, mut msg| async move {
            let payload = msg.take_payload();
            msg.ack_payload(payload)
        });
        socket.on("bcast", |socket, mut msg| async move {
            let _ = socket.to("r").emit_payload("msg", msg.take_payload());
        });
    });
    Ok(io)
}

/// Reads one unmasked server frame's payload into `buf` (reused: nothing is allocated
/// once it is large enough).
pub async fn read_frame<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await?;
    let len = match h[1] & 0x7f {
        126 => usize::from(s.read_u16().await?),
        127 => usize::try_from(s.read_u64().await?).map_err(std::io::Error::other)?,
        n => usize::from(n),
    };
    buf.resize(len, 0);
    s.read_exact(buf).await.map(drop)
}

/// Opens a Socket.IO session on `/` over `s` as a WebSocket-only client does: the
/// upgrade on `/socket.io/`, the open packet, CONNECT and its answer.
pub async fn sio_session<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(s.read_u8().await?);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other("no 101 for the Socket.IO upgrade"));
    }
    let mut buf = Vec::new();
    read_frame(s, &mut buf).await?; // the open packet
    s.write_all(&masked_frame(0x81, b"40")).await?;
    while !buf.starts_with(b"40") {
        read_frame(s, &mut buf).await?;
    }
    Ok(())
}

/// socketioxide on axum with the same handlers as [`sio_typed_server`] (arguments
/// taken as `serde_json::Value`).
#[cfg(feature = "peers")]
pub fn socketioxide_app() -> axum::Router {
    use socketioxide::extract::{AckSender, Data, SocketRef};
    let (layer, io) = socketioxide::SocketIo::new_layer();
    io.ns("/", async |socket: SocketRef| {
        socket.join("r");
        socket.on(
            "bcast",
            async |socket: SocketRef, Data::<serde_json::Value>(data)| {
                socket.to("r").emit("msg", &data).await.ok();
            },
        );
        socket.on(
            "echo",
            async |Data::<serde_json::Value>(data), ack: AckSender| {
                ack.send(&data).ok();
            },
        );
    });
    axum::Router::new().layer(layer)
}

/// The engine alone as an echo server: feeds `input` (masked frames) to `server` in
/// 64 KiB reads, sends every message back as the event gave it, and returns how many
/// bytes went out. No runtime and no stream.
pub fn sans_io_echo(server: &mut wirestate_engine::ws::Connection, input: &[u8]) -> usize {
    engine_echo(server, input, false)
}

/// [`sans_io_echo`] with each read lent to the connection
/// ([`Connection::handle_input_in_place`](wirestate_engine::ws::Connection::handle_input_in_place)):
/// a message that lies whole in a read is echoed from there, not copied out first.
/// The reads are copies of `input`'s pieces into one buffer, as a driver reads into its
/// own.
pub fn sans_io_echo_lent(server: &mut wirestate_engine::ws::Connection, input: &[u8]) -> usize {
    engine_echo(server, input, true)
}

fn engine_echo(server: &mut wirestate_engine::ws::Connection, input: &[u8], lend: bool) -> usize {
    use wirestate_engine::ws::Event;
    let now = std::time::Instant::now();
    let mut out = 0usize;
    // Frames encoded straight into the writer's buffer (as the async drivers do), and
    // "written" (counted) before whatever the connection queued after them.
    let mut wire = Vec::with_capacity(64 * 1024);
    let mut read = vec![0u8; 64 * 1024];
    for chunk in input.chunks(64 * 1024) {
        let read = &mut read[..chunk.len()];
        read.copy_from_slice(chunk);
        let mut at = 0;
        while at < read.len() {
            if lend {
                let (used, lent) = server.handle_input_in_place(now, &mut read[at..]);
                if let Some(m) = lent {
                    if !server.encode_borrowed_now(m, &mut wire).expect("send") {
                        server.send(m.to_message()).expect("send");
                    }
                }
                at += used;
            } else {
                server.handle_input(now, read);
                at = read.len();
            }
            while let Some(event) = server.poll_event() {
                if let Event::Message(m) = event {
                    if !server.encode_now(&m, &mut wire).expect("send") {
                        server.send(m).expect("send");
                    }
                }
            }
        }
        out += wire.len();
        wire.clear();
        while let Some(bytes) = server.poll_transmit() {
            out += bytes.len();
        }
    }
    out
}

/// Spawns echo server `name` (one of [`TOKIO_ECHO_SERVERS`]) on an in-memory stream
/// and completes the upgrade handshake with it: the server's task, and the client's
/// end, ready for masked frames. Panics on an unknown name or a failed handshake.
pub async fn echo_upgraded(
    name: &str,
    config: Arc<Config>,
) -> (JoinHandle<()>, tokio::io::DuplexStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let task = spawn_echo(name, server, config).expect("a known server");
    client
        .write_all(UPGRADE_REQUEST)
        .await
        .expect("upgrade request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        client.read_exact(&mut byte).await.expect("101 response");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{name}: no 101");
    (task, client)
}

/// An echo server on one end of an in-memory duplex stream (64 KiB each way), upgraded
/// from the other: what the in-memory echo benchmarks drive.
pub struct DuplexEcho {
    task: JoinHandle<()>,
    rd: tokio::io::ReadHalf<tokio::io::DuplexStream>,
    wr: tokio::io::WriteHalf<tokio::io::DuplexStream>,
    buf: Vec<u8>,
}

impl DuplexEcho {
    /// [`echo_upgraded`], the client's end split for writing while reading.
    pub async fn open(name: &str, config: Arc<Config>) -> Self {
        let (task, client) = echo_upgraded(name, config).await;
        let (rd, wr) = tokio::io::split(client);
        Self {
            task,
            rd,
            wr,
            buf: vec![0u8; 64 * 1024],
        }
    }

    /// Writes `input` (masked frames) while reading back `expected` bytes of echoes.
    pub async fn echo(&mut self, input: &[u8], expected: usize) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (rd, wr, buf) = (&mut self.rd, &mut self.wr, &mut self.buf);
        let writer = async {
            wr.write_all(input).await.expect("write");
        };
        let reader = async {
            let mut got = 0;
            while got < expected {
                let n = rd.read(buf).await.expect("read");
                assert!(n > 0, "closed after {got} bytes");
                got += n;
            }
        };
        tokio::join!(writer, reader);
    }
}

impl Drop for DuplexEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}
