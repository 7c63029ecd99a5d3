//! The async layer driven in memory: `mem::Sim` (a virtual clock and an executor that
//! jumps to the next deadline) and in-memory streams. No sockets, no threads, no
//! sleeps: every timing below is exact virtual time.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use wirestate_async::mem::{duplex, MemStream, Sim};

mod common;
use common::read_response;
use wirestate_async::Outgoing;
use wirestate_async::{eio, sio, Runtime};
use wirestate_engine::ws::{ClientRequest, CloseCode, Config, Message, MessageRef};

fn text(m: Option<Result<Message, wirestate_async::Error>>) -> String {
    match m {
        Some(Ok(Message::Text(t))) => t.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

type MemWebSocket = wirestate_async::WebSocket<MemStream, <Sim as Runtime>::Clock>;

/// A WebSocket pair over an in-memory pipe of `capacity` bytes each way: the server's
/// end is accepted (default config) and given to `serve` on a task of its own; the
/// client's end is returned open.
async fn ws_pair<F, Fut>(sim: &Sim, capacity: usize, serve: F) -> MemWebSocket
where
    F: FnOnce(MemWebSocket) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (client_end, server_end) = duplex(capacity);
    let rt = sim.clone();
    sim.spawn(async move {
        let config = Arc::new(Config::default());
        let ws = wirestate_async::accept(&rt, server_end, config)
            .await
            .expect("accept");
        serve(ws).await;
    });
    let request = ClientRequest::from_url("ws://h/echo").expect("url");
    wirestate_async::client(sim, client_end, &request, Arc::new(Config::default()))
        .await
        .expect("handshake")
}

/// [`ws_pair`] with a server that echoes every message (`recv`, then `send`).
async fn echo_pair(sim: &Sim, capacity: usize) -> MemWebSocket {
    ws_pair(sim, capacity, |mut ws| async move {
        while let Some(Ok(m)) = ws.recv().await {
            if ws.send(m).await.is_err() {
                break;
            }
        }
    })
    .await
}

const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

#[test]
fn websocket_echo_through_a_small_duplex_with_backpressure() {
    let sim = Sim::new();
    sim.block_on(async {
        // 4 KiB each way: a 1 MiB message only gets through if both sides keep
        // writing and reading in turn.
        let mut ws = echo_pair(&sim, 4096).await;
        let big = "é".repeat(512 << 10);
        ws.send("hello").await.expect("send");
        ws.send(big.as_str()).await.expect("send");
        assert_eq!(text(ws.recv().await), "hello");
        assert_eq!(text(ws.recv().await), big);
        ws.close(CloseCode::NORMAL, "done").await.expect("close");
        assert!(ws.recv().await.is_none());
        assert!(ws.close_info().expect("closed").is_clean());
    });
    assert_eq!(sim.elapsed(), Duration::ZERO, "nothing waited on a timer");
}

#[test]
fn send_sends_when_called_and_its_future_holds_the_websocket_alone() {
    let sim = Sim::new();
    sim.block_on(async {
        let mut ws = echo_pair(&sim, 64).await;
        // A WebSocket is its transport and one pointer; `send`'s future, that one
        // pointer to it (the message is taken at the call).
        assert_eq!(
            std::mem::size_of_val(&ws),
            std::mem::size_of::<MemStream>() + std::mem::size_of::<usize>()
        );
        let future = ws.send("first");
        assert_eq!(std::mem::size_of_val(&future), std::mem::size_of::<usize>());
        // Dropped unpolled: the message went anyway (the part the 64-byte pipe did
        // not take with it, from the queue, by the next write).
        drop(future);
        let long = "x".repeat(300);
        ws.send(long.as_str()).await.expect("send");
        assert_eq!(text(ws.recv().await), "first");
        assert_eq!(text(ws.recv().await), long);
        // After the end, the future reports why the message could not go.
        ws.close(CloseCode::NORMAL, "done").await.expect("close");
        assert!(ws.recv().await.is_none());
        let late = ws.send("late");
        assert!(matches!(late.await, Err(wirestate_async::Error::Send(_))));
    });
    assert_eq!(sim.elapsed(), Duration::ZERO, "nothing waited on a timer");
}

#[test]
fn messages_lent_in_place_are_answered_in_order_however_the_reads_fall() {
    let sim = Sim::new();
    sim.block_on(async {
        // Several frames in one read (each lent in turn, the rest decoded after), a
        // message larger than the 4 KiB pipe (assembled, then lent), a ping before a
        // message, and replies of two messages to one.
        let mut ws = ws_pair(&sim, 4096, |mut ws| async move {
            let echo = |m: MessageRef<'_>, out: &mut Outgoing<'_>| {
                out.send(m)?;
                if m.as_text() == Some("twice") {
                    out.send_message(Message::text("again"))?;
                }
                Ok::<_, wirestate_engine::ws::SendError>(m.len())
            };
            let mut lengths = Vec::new();
            while let Some(Ok(echoed)) = ws.recv_with(echo).await {
                lengths.push(echoed.expect("open"));
            }
            ws.flush().await.expect("flushed");
            assert_eq!(lengths, [1, 2, 5, 3, 0, 200_000, 4]);
        })
        .await;
        let big = "x".repeat(200_000);
        let sent = [
            Message::text("a"),
            Message::text("bb"),
            Message::text("twice"),
            Message::binary(vec![0u8, 1, 2]),
            Message::text(""),
        ];
        for m in &sent {
            ws.connection().send(m.clone()).expect("open");
        }
        ws.flush().await.expect("one write");
        ws.send(big.as_str()).await.expect("send");
        ws.ping(b"p").await.expect("ping");
        ws.send("last").await.expect("send");
        let mut expected = sent.to_vec();
        expected.insert(3, Message::text("again"));
        expected.push(Message::text(big.as_str()));
        expected.push(Message::text("last"));
        for m in expected {
            assert_eq!(Some(Ok(m)), ws.recv().await.map(|r| r.map_err(|_| ())));
        }
        ws.close(CloseCode::NORMAL, "done").await.expect("close");
        assert!(ws.recv().await.is_none());
    });
}

#[test]
fn messages_written_at_once_keep_their_order_when_the_transport_takes_part() {
    let sim = Sim::new();
    sim.block_on(async {
        // 1,000 bytes each way: every 3,000-byte frame written at once goes out in
        // part, the rest waiting in the outbox. A message queued in the connection
        // goes before one sent after it (which is then queued, not written at once).
        let message = |i: usize| Message::text(format!("{i:04}").repeat(750));
        let mut ws = ws_pair(&sim, 1000, move |mut ws| async move {
            for i in 0..10 {
                ws.send(message(i)).await.expect("send");
            }
            ws.connection().send(message(10)).expect("open");
            ws.send(message(11)).await.expect("send");
            ws.send("last").await.expect("send");
            while ws.recv().await.is_some() {}
        })
        .await;
        for i in 0..12 {
            assert_eq!(
                Some(Ok(message(i))),
                ws.recv().await.map(|r| r.map_err(|_| ()))
            );
        }
        assert_eq!(text(ws.recv().await), "last");
        ws.close(CloseCode::NORMAL, "done").await.expect("close");
    });
}

#[test]
fn websocket_keepalive_drops_a_silent_peer_at_its_deadline() {
    let sim = Sim::new();
    let (mut raw, server_end) = duplex(1 << 16);
    let closed_at = sim.block_on(async {
        raw.write_all(UPGRADE).await.expect("write");
        let config = Config::default().keepalive(Duration::from_secs(30), Duration::from_secs(10));
        let mut ws = wirestate_async::accept(&sim, server_end, Arc::new(config))
            .await
            .expect("accept");
        match ws.recv().await {
            Some(Err(e)) => assert!(e.to_string().contains("keepalive"), "{e}"),
            other => panic!("expected a keepalive error, got {other:?}"),
        }
        let at = sim.elapsed();
        assert!(ws.recv().await.is_none());
        let wire = raw.read_to_end().await.expect("EOF");
        // The 101, one ping (0x89 0x00) at 30 s, nothing else.
        assert!(
            wire.ends_with(b"\r\n\r\n\x89\x00"),
            "{:?}",
            String::from_utf8_lossy(&wire)
        );
        at
    });
    assert_eq!(closed_at, Duration::from_secs(40));
}

#[test]
fn an_idle_or_trickled_request_is_cut_off_at_the_request_timeout() {
    let sim = Sim::new();
    let limits = wirestate_async::HttpLimits::default().request_timeout(Duration::from_secs(30));
    let options = eio::ServerOptions::from(eio::Config::default()).http_limits(limits);
    let server = eio::server(&sim, options).expect("server");
    let (mut raw, server_end) = duplex(1 << 16);
    let rt = sim.clone();
    sim.spawn(async move {
        let _ = eio::serve_connection(&rt, &server, server_end, None).await;
    });
    let rest = sim.block_on(async {
        sim.sleep(Duration::from_secs(20)).await;
        raw.write_all(b"GET /engine.io/?EIO=4")
            .await
            .expect("write");
        raw.read_to_end().await.expect("closed by the server")
    });
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    // The timeout counts from the connection's start (or its last complete request),
    // not from the last byte: trickling does not extend it.
    assert_eq!(sim.elapsed(), Duration::from_secs(30));
}

#[test]
fn a_polling_session_that_stops_answering_pings_times_out_on_the_virtual_clock() {
    let sim = Sim::new();
    let config = eio::Config::default().heartbeat(Duration::from_secs(25), Duration::from_secs(20));
    let server = eio::server(&sim, config).expect("server");
    let (mut raw, server_end) = duplex(1 << 16);
    let (rt, serving) = (sim.clone(), server.clone());
    sim.spawn(async move {
        let _ = eio::serve_connection(&rt, &serving, server_end, None).await;
    });
    sim.block_on(async {
        raw.write_all(b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let (status, body) = read_response(&mut raw).await;
        assert_eq!(status, 200);
        assert!(body.starts_with("0{\"sid\":\""), "{body}");
        assert!(matches!(server.next_event().await, eio::Event::Open { .. }));
        match server.next_event().await {
            eio::Event::Closed { reason, .. } => assert_eq!(reason, eio::CloseReason::PingTimeout),
            other => panic!("{other:?}"),
        }
    });
    assert_eq!(
        sim.elapsed(),
        Duration::from_secs(45),
        "ping at 25 s, no pong by 45 s"
    );
    assert_eq!(server.session_count(), 0);
}

#[test]
fn serve_connection_serves_a_duplex_and_the_peer_address_reaches_the_middleware() {
    let sim = Sim::new();
    let io = sio::server(&sim, sio::Config::default()).expect("server");
    let seen = Arc::new(Mutex::new(None));
    let record = seen.clone();
    io.of("/").middleware(move |req| {
        *record.lock().expect("lock") = Some(req.handshake().peer_addr);
        async { Ok(()) }
    });
    // A connection's future holds its phases boxed, each freed when it ends: a few
    // pointers (it held the HTTP phase's state and then the WebSocket's inline, and
    // its arguments twice: ~700 bytes on tokio).
    let probe = sio::serve_connection(&sim, &io, duplex(1).1, None);
    let size = std::mem::size_of_val(&probe);
    assert!(size <= 96, "a connection's future is {size} bytes");
    drop(probe);
    let (client_end, server_end) = duplex(1 << 16);
    let peer: SocketAddr = "127.0.0.1:5555".parse().expect("addr");
    let (rt, serving) = (sim.clone(), io.clone());
    sim.spawn(async move {
        let _ = sio::serve_connection(&rt, &serving, server_end, Some(peer)).await;
    });
    sim.block_on(async {
        let request =
            ClientRequest::from_url("ws://h/socket.io/?EIO=4&transport=websocket").expect("url");
        let mut ws =
            wirestate_async::client(&sim, client_end, &request, Arc::new(Config::default()))
                .await
                .expect("upgrade");
        assert!(text(ws.recv().await).starts_with("0{\"sid\":"));
        ws.send("40").await.expect("send");
        assert!(text(ws.recv().await).starts_with("40{\"sid\":"));
    });
    assert_eq!(*seen.lock().expect("lock"), Some(Some(peer)));
    assert_eq!(io.socket_count(), 1);
}

#[test]
fn engine_io_client_on_every_transport_and_the_upgrade() {
    let sim = Sim::new();
    let server = eio::server(&sim, eio::Config::default()).expect("server");
    let listener = sim.listen("127.0.0.1:3000").expect("listen");
    let (rt, serving) = (sim.clone(), server.clone());
    sim.spawn(async move {
        let _ = eio::serve(&rt, serving, listener).await;
    });
    let echo = server.clone();
    sim.spawn(async move {
        loop {
            if let eio::Event::Message { sid, data } = echo.next_event().await {
                let _ = echo.send(&sid, data);
            }
        }
    });
    sim.block_on(async {
        for (polling, websocket, upgrades) in [
            (true, false, false),
            (false, true, false),
            (true, true, true),
        ] {
            let config = eio::ClientConfig::default().transports(polling, websocket);
            let mut client = eio::connect(&sim, "http://127.0.0.1:3000", config).expect("url");
            assert!(matches!(
                client.recv().await,
                Some(eio::ClientEvent::Open(_))
            ));
            if upgrades {
                assert!(matches!(
                    client.recv().await,
                    Some(eio::ClientEvent::Upgraded)
                ));
                assert!(client.client().is_websocket());
            }
            client.send(eio::Data::from("ping me")).expect("open");
            assert_eq!(
                client.recv().await,
                Some(eio::ClientEvent::Message(eio::Data::from("ping me")))
            );
            client.close();
            while client.recv().await.is_some() {}
        }
        let mut refused =
            eio::connect(&sim, "http://127.0.0.1:1", eio::ClientConfig::default()).expect("url");
        assert!(matches!(
            refused.recv().await,
            Some(eio::ClientEvent::Closed(_))
        ));
    });
    // https:// needs the `rustls` feature (async/tests/tls.rs runs it).
    #[cfg(not(feature = "rustls"))]
    {
        let err = eio::connect(&sim, "https://127.0.0.1:3000", eio::ClientConfig::default())
            .expect_err("TLS");
        assert!(matches!(err, wirestate_async::Error::Url(_)), "{err}");
    }
}

#[test]
fn socket_io_client_reconnects_until_a_server_listens_then_after_the_network_fails() {
    let sim = Sim::new();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let socket = sio::io(&sim, "http://127.0.0.1:3000/", sio::IoOptions::default()).expect("url");
    let record = attempts.clone();
    socket
        .io()
        .on_reconnect(move |n| record.lock().expect("lock").push(n));
    let start_server = |sim: &Sim| {
        let io = sio::server(sim, sio::Config::default()).expect("server");
        io.of("/").on_connection(|socket| async move {
            socket.on("double", |_socket, msg| async move {
                let n: i64 = msg.data().map_err(|e| e.to_string())?;
                msg.ack(&(n * 2)).map_err(|e| e.to_string())
            });
        });
        let listener = sim.listen("127.0.0.1:3000").expect("listen");
        let (rt, serving) = (sim.clone(), io.clone());
        sim.spawn(async move {
            let _ = sio::serve(&rt, serving, listener).await;
        });
        io
    };
    let first = sim.block_on(async {
        // Nobody listens for the first 10 s: the client backs off and retries.
        sim.sleep(Duration::from_secs(10)).await;
        let io = start_server(&sim);
        assert_eq!(socket.wait_connected().await, Ok(false));
        let doubled = socket
            .timeout(Duration::from_secs(5))
            .emit_with_ack("double", &21)
            .await;
        assert_eq!(doubled.expect("ack"), sio::Payload::new().arg(json!(42)));
        io
    });
    assert!(sim.elapsed() >= Duration::from_secs(10));
    assert_eq!(first.socket_count(), 1);
    let reconnected = sim.block_on(async {
        sim.sever();
        sim.timeout(Duration::from_secs(60), async {
            while attempts.lock().expect("lock").len() < 2 {
                sim.sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .is_some()
    });
    assert!(reconnected, "the client came back: {attempts:?}");
    assert!(socket.connected());
    assert_eq!(
        first.socket_count(),
        1,
        "the old socket left, the new one joined"
    );
}

#[test]
fn shutdown_delivers_disconnect_to_every_client_and_serve_returns() {
    let sim = Sim::new();
    let io = sio::server(&sim, sio::Config::default()).expect("server");
    let listener = sim.listen("127.0.0.1:3000").expect("listen");
    let served = Arc::new(Mutex::new(None));
    let (rt, serving, done) = (sim.clone(), io.clone(), served.clone());
    sim.spawn(async move {
        let result = sio::serve(&rt, serving, listener).await;
        *done.lock().expect("lock") = Some(result.is_ok());
    });
    let reasons = Arc::new(Mutex::new(Vec::new()));
    // One client on polling (then upgraded), one on WebSocket only.
    let sockets: Vec<_> = [false, true]
        .into_iter()
        .map(|websocket_only| {
            let mut config = sio::ClientConfig::default().reconnection(false);
            config.eio = config.eio.transports(!websocket_only, true);
            let options = sio::IoOptions::default().config(config);
            let socket = sio::io(&sim, "http://127.0.0.1:3000/", options).expect("url");
            let record = reasons.clone();
            socket.on_disconnect(move |r| record.lock().expect("lock").push(r.to_string()));
            socket
        })
        .collect();
    sim.block_on(async {
        for s in &sockets {
            assert_eq!(s.wait_connected().await, Ok(false));
        }
        assert_eq!(io.socket_count(), 2);
        // In the same instant as the connect: the polling client's next GET is not
        // in yet, so its DISCONNECT waits for it (nothing lost at shutdown).
        io.shutdown().await;
        sim.sleep(Duration::from_secs(1)).await;
    });
    assert_eq!(io.socket_count(), 0);
    assert_eq!(
        *served.lock().expect("lock"),
        Some(true),
        "serve returned Ok"
    );
    let reasons = reasons.lock().expect("lock").clone();
    assert_eq!(reasons, ["io server disconnect", "io server disconnect"]);
}

#[test]
fn at_max_connections_new_connections_wait_until_one_ends() {
    let sim = Sim::new();
    let options = eio::ServerOptions::from(eio::Config::default())
        .http_limits(wirestate_async::HttpLimits::default().max_connections(1));
    let server = eio::server(&sim, options).expect("server");
    let listener = sim.listen("127.0.0.1:4000").expect("listen");
    let (rt, serving) = (sim.clone(), server.clone());
    sim.spawn(async move {
        let _ = eio::serve(&rt, serving, listener).await;
    });
    const HANDSHAKE: &[u8] = b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n";
    sim.block_on(async {
        let mut first = sim.connect("127.0.0.1:4000".into()).await.expect("connect");
        first.write_all(HANDSHAKE).await.expect("write");
        assert_eq!(read_response(&mut first).await.0, 200);
        // The second waits in the backlog: no answer while the first is open...
        let mut second = sim.connect("127.0.0.1:4000".into()).await.expect("connect");
        second.write_all(HANDSHAKE).await.expect("write");
        let early = sim
            .timeout(Duration::from_secs(5), read_response(&mut second))
            .await;
        assert!(early.is_none(), "not served while at the cap");
        // ...and is served once the first ends.
        drop(first);
        let late = sim
            .timeout(Duration::from_secs(5), read_response(&mut second))
            .await;
        assert_eq!(late.map(|r| r.0), Some(200));
    });
    assert_eq!(server.session_count(), 2);
}

#[test]
fn a_socket_with_too_many_handlers_in_flight_is_disconnected() {
    let sim = Sim::new();
    let options = sio::ServerOptions::from(sio::Config::default()).max_in_flight(4);
    let io = sio::server(&sim, options).expect("server");
    let started = Arc::new(Mutex::new(0));
    let (rt, count) = (sim.clone(), started.clone());
    io.of("/").on_connection(move |socket| {
        let (rt, count) = (rt.clone(), count.clone());
        async move {
            socket.on("slow", move |_socket, _msg| {
                let (rt, count) = (rt.clone(), count.clone());
                async move {
                    *count.lock().expect("lock") += 1;
                    rt.sleep(Duration::from_secs(10)).await;
                }
            });
        }
    });
    let listener = sim.listen("127.0.0.1:3001").expect("listen");
    let (rt, serving) = (sim.clone(), io.clone());
    sim.spawn(async move {
        let _ = sio::serve(&rt, serving, listener).await;
    });
    let config = sio::ClientConfig::default().reconnection(false);
    let options = sio::IoOptions::default().config(config);
    let socket = sio::io(&sim, "http://127.0.0.1:3001/", options).expect("url");
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let record = reasons.clone();
    socket.on_disconnect(move |r| record.lock().expect("lock").push(r.to_string()));
    sim.block_on(async {
        assert_eq!(socket.wait_connected().await, Ok(false));
        // At the cap, twice: the handlers that finished no longer count.
        for round in 1..=2 {
            for _ in 0..4 {
                socket.emit("slow", &1).expect("connected");
            }
            sim.sleep(Duration::from_secs(1)).await;
            assert_eq!(*started.lock().expect("lock"), 4 * round);
            assert_eq!(io.socket_count(), 1, "round {round}: still connected");
            sim.sleep(Duration::from_secs(10)).await;
        }
        // One past the cap.
        for _ in 0..5 {
            socket.emit("slow", &1).expect("connected");
        }
        sim.sleep(Duration::from_secs(1)).await;
    });
    assert_eq!(*started.lock().expect("lock"), 12, "the fifth never ran");
    assert_eq!(io.socket_count(), 0);
    assert_eq!(*reasons.lock().expect("lock"), ["io server disconnect"]);
}

#[test]
fn a_websocket_peer_that_stops_reading_is_dropped_at_the_write_timeout() {
    let sim = Sim::new();
    // 4 KiB of pipe, and the client reads only the handshake.
    let (mut raw, server_end) = duplex(4096);
    let (failed_at, wire) = sim.block_on(async {
        raw.write_all(UPGRADE).await.expect("write");
        let config = Config::default().write_timeout(Duration::from_secs(20));
        let mut ws = wirestate_async::accept(&sim, server_end, Arc::new(config))
            .await
            .expect("accept");
        let chunk = "x".repeat(64 << 10);
        let mut sent = 0;
        let err = loop {
            match ws.send(chunk.as_str()).await {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent < 100, "never blocked");
        };
        assert!(err.to_string().contains("timed out"), "{err}");
        let at = sim.elapsed();
        // The connection has ended and its transport is shut.
        assert!(matches!(ws.recv().await, Some(Err(_)) | None));
        assert!(ws.recv().await.is_none());
        (at, raw.read_to_end().await.expect("EOF"))
    });
    assert_eq!(failed_at, Duration::from_secs(20));
    // The reader gets what the pipe held, then the end: the rest was dropped.
    assert!(wire.len() <= 4096, "{}", wire.len());
}

/// A stand-in for a TLS handshake: the client must first send `TLS!`.
#[derive(Clone)]
struct Prefixed;

impl wirestate_async::Acceptor<MemStream> for Prefixed {
    type Stream = MemStream;

    async fn accept(&self, mut stream: MemStream) -> std::io::Result<MemStream> {
        let mut got = Vec::new();
        while got.len() < 4 {
            let more = stream.read_some().await?;
            if more.is_empty() {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            got.extend(more);
        }
        match &got[..] {
            b"TLS!" => Ok(stream),
            _ => Err(std::io::ErrorKind::InvalidData.into()),
        }
    }
}

#[test]
fn a_connection_handshake_that_never_ends_is_dropped_at_the_request_timeout() {
    let sim = Sim::new();
    let limits = wirestate_async::HttpLimits::default().request_timeout(Duration::from_secs(30));
    let io = sio::server(
        &sim,
        sio::ServerOptions::from(sio::Config::default()).http_limits(limits),
    )
    .expect("server");
    let listener = sim.listen("127.0.0.1:4000").expect("listen");
    let rt = sim.clone();
    sim.spawn(async move {
        let _ = sio::serve_accepting(&rt, io, listener, Prefixed).await;
    });
    const HANDSHAKE: &[u8] = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n";
    sim.block_on(async {
        // Through the handshake: served.
        let mut good = sim.connect("127.0.0.1:4000".into()).await.expect("connect");
        good.write_all(b"TLS!").await.expect("write");
        sim.sleep(Duration::from_millis(1)).await;
        good.write_all(HANDSHAKE).await.expect("write");
        assert_eq!(read_response(&mut good).await.0, 200);
        // Stuck in it: dropped when the request timeout runs out.
        let started = sim.elapsed();
        let mut stuck = sim.connect("127.0.0.1:4000".into()).await.expect("connect");
        stuck.write_all(b"TL").await.expect("write");
        let rest = stuck.read_to_end().await.expect("closed by the server");
        assert!(rest.is_empty());
        assert_eq!(sim.elapsed() - started, Duration::from_secs(30));
    });
}

/// Reads one request (head and `Content-Length` body) from `stream`.
async fn read_request(stream: &mut MemStream) -> Vec<u8> {
    let mut raw = Vec::new();
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if raw.len() >= end + 4 + length {
                return raw;
            }
        }
        let more = stream.read_some().await.expect("read");
        assert!(!more.is_empty(), "the client hung up mid-request");
        raw.extend(more);
    }
}

#[test]
fn socket_io_client_sends_headers_query_and_the_cookies_a_balancer_sets() {
    let sim = Sim::new();
    let io = sio::server(&sim, sio::Config::default()).expect("server");
    let seen = Arc::new(Mutex::new(None));
    let record = seen.clone();
    io.of("/").middleware(move |req| {
        let handshake = req.handshake();
        let auth = handshake
            .headers
            .get_str("authorization")
            .map(str::to_owned);
        let token = handshake.target.contains("token=abc");
        *record.lock().expect("lock") = Some((auth, token));
        async { Ok(()) }
    });
    let listener = sim.listen("127.0.0.1:5001").expect("listen");
    let rt = sim.clone();
    sim.spawn(async move {
        let _ = sio::serve(&rt, io, listener).await;
    });
    // A sticky load balancer: it sets `lb` on every response, and notes which requests
    // came back with it (one connection per request: the client closes each).
    let cookies = Arc::new(Mutex::new(Vec::new()));
    let balancer = sim.listen("127.0.0.1:5000").expect("listen");
    let (rt, noted) = (sim.clone(), cookies.clone());
    sim.spawn(async move {
        loop {
            let Ok((mut client, _)) = rt.accept(&balancer).await else {
                return;
            };
            let request = read_request(&mut client).await;
            let head = String::from_utf8_lossy(&request).to_ascii_lowercase();
            noted
                .lock()
                .expect("lock")
                .push(head.contains("\r\ncookie: lb=node-1\r\n"));
            let mut server = rt.connect("127.0.0.1:5001".into()).await.expect("connect");
            server.write_all(&request).await.expect("forward");
            let response = server.read_to_end().await.expect("response");
            let status_end = response
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("status line");
            let mut rewritten = response[..status_end + 2].to_vec();
            rewritten.extend_from_slice(b"Set-Cookie: lb=node-1; Path=/; HttpOnly\r\n");
            rewritten.extend_from_slice(&response[status_end + 2..]);
            client.write_all(&rewritten).await.expect("answer");
        }
    });
    let mut config = wirestate_engine::sio::ClientConfig::default();
    config.eio = config.eio.transports(true, false);
    let connector = wirestate_async::Connector::default()
        .header("Authorization", "Bearer t0k3n")
        .expect("a header of the application's");
    let socket = sio::io(
        &sim,
        "http://127.0.0.1:5000/?token=abc",
        sio::IoOptions::default()
            .config(config)
            .connector(connector),
    )
    .expect("url");
    sim.block_on(async {
        socket.wait_connected().await.expect("connected");
        sim.sleep(Duration::from_millis(100)).await;
    });
    assert_eq!(
        *seen.lock().expect("lock"),
        Some((Some("Bearer t0k3n".to_owned()), true))
    );
    let cookies = cookies.lock().expect("lock").clone();
    assert!(cookies.len() >= 3, "{cookies:?}");
    assert!(!cookies[0], "the first request has no cookie yet");
    assert!(
        cookies[1..].iter().all(|c| *c),
        "every later one has it: {cookies:?}"
    );
    // The client's own headers cannot be overridden.
    assert!(wirestate_async::Connector::default()
        .header("Host", "elsewhere")
        .is_err());
    assert!(wirestate_async::Connector::default()
        .header("X-Bad", "a\r\nb")
        .is_err());
}

#[test]
fn socket_io_client_listeners_add_up_and_come_off_one_at_a_time() {
    let sim = Sim::new();
    let io = sio::server(&sim, sio::Config::default()).expect("server");
    let answers = Arc::new(Mutex::new(Vec::new()));
    let got = answers.clone();
    io.of("/").on_connection(move |socket| {
        let got = got.clone();
        async move {
            socket.on("ready", move |socket, _msg| {
                let got = got.clone();
                async move {
                    let answer = socket
                        .emit_with_ack("ask", sio::Payload::new(), Some(Duration::from_secs(5)))
                        .await;
                    got.lock()
                        .expect("lock")
                        .push(answer.map(|p| p.into_parts().0).ok());
                }
            });
        }
    });
    let listener = sim.listen("127.0.0.1:5002").expect("listen");
    let rt = sim.clone();
    sim.spawn(async move {
        let _ = sio::serve(&rt, io, listener).await;
    });
    let socket = sio::io(&sim, "http://127.0.0.1:5002", sio::IoOptions::default()).expect("url");
    let calls = Arc::new(Mutex::new(Vec::new()));
    let listen = |name: &'static str| {
        let calls = calls.clone();
        socket.on("ask", move |_payload, ack| {
            calls.lock().expect("lock").push(name);
            if let Some(ack) = ack {
                let _ = ack.send(name);
            }
        })
    };
    let first = listen("first");
    let _second = listen("second");
    sim.block_on(async {
        socket.wait_connected().await.expect("connected");
        socket.emit("ready", &()).expect("emit");
        sim.sleep(Duration::from_millis(50)).await;
        socket.off_listener(first);
        socket.off_listener(first); // twice: a no-op
        socket.emit("ready", &()).expect("emit");
        sim.sleep(Duration::from_millis(50)).await;
    });
    assert_eq!(*calls.lock().expect("lock"), ["first", "second", "second"]);
    // Both listeners answered the first question: the server got the first answer.
    assert_eq!(
        *answers.lock().expect("lock"),
        [
            Some(vec![serde_json::json!("first")]),
            Some(vec![serde_json::json!("second")])
        ]
    );
}

#[test]
fn socket_io_client_and_server_speak_the_msgpack_parser_on_every_transport() {
    let sim = Sim::new();
    let config = sio::Config::default().parser(wirestate_engine::sio::Parser::Msgpack);
    let io = sio::server(&sim, config).expect("server");
    io.of("/").on_connection(|socket| async move {
        socket.on("echo", |_socket, mut msg| async move {
            let payload = msg.take_payload();
            msg.ack_payload(payload)
        });
    });
    let listener = sim.listen("127.0.0.1:5003").expect("listen");
    let rt = sim.clone();
    sim.spawn(async move {
        let _ = sio::serve(&rt, io, listener).await;
    });
    for (polling, websocket) in [(true, false), (false, true), (true, true)] {
        let mut client =
            sio::ClientConfig::default().parser(wirestate_engine::sio::Parser::Msgpack);
        client.eio = client.eio.transports(polling, websocket);
        let options = sio::IoOptions::default().config(client);
        let socket = sio::io(&sim, "http://127.0.0.1:5003", options).expect("url");
        sim.block_on(async {
            socket.wait_connected().await.expect("connected");
            let payload = sio::Payload::new()
                .arg(json!({"n": 1.5}))
                .bin(vec![0u8, 255]);
            let back = socket
                .emit_with_ack("echo", payload.clone(), Some(Duration::from_secs(5)))
                .await
                .expect("ack");
            assert_eq!(back, payload, "polling={polling} websocket={websocket}");
            socket.disconnect();
        });
    }
}

#[test]
fn broadcasts_written_by_the_publisher_keep_every_sockets_order() {
    // Small pipes: a broadcast written straight into a transport's socket often fits
    // only in part, and what follows must queue behind the rest.
    let sim = Sim::new();
    sim.set_capacity(64);
    let io = sio::server(&sim, sio::Config::default()).expect("server");
    let server_sockets = Arc::new(Mutex::new(Vec::new()));
    let keep = server_sockets.clone();
    io.of("/").on_connection(move |socket| {
        let keep = keep.clone();
        async move {
            socket.join(["r"]);
            keep.lock().expect("lock").push(socket);
        }
    });
    let listener = sim.listen("127.0.0.1:3100").expect("listen");
    let (rt, serving) = (sim.clone(), io.clone());
    sim.spawn(async move {
        let _ = sio::serve(&rt, serving, listener).await;
    });
    const N: u64 = 300;
    let seen: Vec<Arc<Mutex<Vec<u64>>>> = (0..3).map(|_| Arc::default()).collect();
    let mut clients = Vec::new();
    sim.block_on(async {
        for seen in &seen {
            let mut config = sio::ClientConfig::default().reconnection(false);
            config.eio = config.eio.transports(false, true);
            let options = sio::IoOptions::default().config(config);
            let socket = sio::io(&sim, "http://127.0.0.1:3100/", options).expect("url");
            let seen = seen.clone();
            socket.on("seq", move |payload, _| {
                let i: u64 = payload.get(0).expect("a number");
                seen.lock().expect("lock").push(i);
            });
            // One at a time, so that the server's first socket is the first client's.
            assert_eq!(socket.wait_connected().await, Ok(false));
            clients.push(socket);
        }
        let first = server_sockets.lock().expect("lock")[0].clone();
        for i in 0..N {
            // Interleaved: emits to one socket (queued to its transport) and
            // broadcasts (written by this task into every idle transport).
            if i % 2 == 0 {
                first.emit("seq", &i).expect("open");
            } else {
                assert_eq!(io.of("/").to("r").emit("seq", &i).expect("emit"), 3);
            }
            if i % 5 == 0 {
                // The clients drain their pipes, the connections' tasks run.
                sim.sleep(Duration::ZERO).await;
            }
        }
        sim.sleep(Duration::from_secs(5)).await;
    });
    for (k, seen) in seen.iter().enumerate() {
        let got = seen.lock().expect("lock").clone();
        let want: Vec<u64> = (0..N).filter(|i| k == 0 || i % 2 == 1).collect();
        assert_eq!(got, want, "client {k}");
    }
}

#[test]
fn handlers_that_capture_nothing_are_shared_yet_each_socket_keeps_its_own() {
    let sim = Sim::new();
    let io = sio::server(&sim, sio::Config::default()).expect("server");
    io.of("/").on_connection(|socket| async move {
        // Captures nothing: one handler serves every socket that registers it.
        socket.on("double", |_socket, msg| async move {
            let n: i64 = msg.data().map_err(|e| e.to_string())?;
            msg.ack(&(n * 2)).map_err(|e| e.to_string())
        });
        // Captures its socket's id: one per socket.
        let id = socket.id().to_string();
        socket.on("who", move |_socket, msg| {
            let id = id.clone();
            async move { msg.ack(&id).map_err(|e| e.to_string()) }
        });
        socket.on("stop", |socket, _msg| async move { socket.off("double") });
    });
    let listener = sim.listen("127.0.0.1:3000").expect("listen");
    let (rt, serving) = (sim.clone(), io.clone());
    sim.spawn(async move {
        let _ = sio::serve(&rt, serving, listener).await;
    });
    let url = "http://127.0.0.1:3000/";
    let a = sio::io(&sim, url, sio::IoOptions::default()).expect("url");
    let b = sio::io(&sim, url, sio::IoOptions::default()).expect("url");
    sim.block_on(async {
        assert!(a.wait_connected().await.is_ok() && b.wait_connected().await.is_ok());
        let ask = |s: &sio::ClientSocket, name: &'static str, arg: serde_json::Value| {
            let s = s.clone();
            async move {
                let timed = s.timeout(Duration::from_secs(2));
                timed.emit_with_ack(name, &arg).await.ok()
            }
        };
        for s in [&a, &b] {
            let doubled = ask(s, "double", json!(21)).await;
            assert_eq!(doubled, Some(sio::Payload::new().arg(json!(42))));
            let who = ask(s, "who", json!(null)).await;
            let id = s.id().expect("connected");
            assert_eq!(who, Some(sio::Payload::new().arg(json!(id))));
        }
        // One socket drops the shared handler: the other keeps it.
        a.emit("stop", &json!(null)).expect("emit");
        assert_eq!(ask(&a, "double", json!(1)).await, None, "unhandled: no ack");
        let doubled = ask(&b, "double", json!(1)).await;
        assert_eq!(doubled, Some(sio::Payload::new().arg(json!(2))));
    });
}
