//! Real-socket tests of both adapters on 127.0.0.1: the same test bodies run on tokio
//! and on smol.

macro_rules! runtime_tests {
    ($runtime:ident, $adapter:ident, $block_on:path, $spawn:path, $sleep:path, $listener:ty, $stream:ty, $($io:ident)::+) => {
        mod $runtime {
            use std::sync::Arc;
            use std::time::Duration;

            use futures_util::{SinkExt, StreamExt};
            use ::$($io)::+::{AsyncReadExt, AsyncWriteExt};
            use $adapter as adapter;
            use wirestate_engine::ws::{CloseCode, Config, Message, Side};

            /// An echo server; with `lend`, each message lent in place (`recv_with`).
            async fn echo_server(config: Config, lend: bool) -> String {
                let listener = <$listener>::bind("127.0.0.1:0").await.expect("bind");
                let addr = listener.local_addr().expect("addr");
                let config = Arc::new(config);
                $spawn(async move {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else { return };
                        let config = config.clone();
                        $spawn(async move {
                            if let Ok(mut ws) = adapter::accept(stream, config).await {
                                wirestate_conformance::echo(&mut ws, lend).await;
                            }
                        });
                    }
                });
                format!("ws://{addr}/echo")
            }

            #[test]
            fn echo_and_clean_close() {
                $block_on(async {
                  for lend in [false, true] {
                    let url = echo_server(Config::default(), lend).await;
                    let mut ws = adapter::connect(&url, Arc::new(Config::default())).await.expect("connect");
                    ws.send("hello").await.expect("send");
                    ws.send(vec![0u8, 1, 2]).await.expect("send");
                    let big = "é".repeat(300_000);
                    ws.send(big.as_str()).await.expect("send");
                    assert_eq!(ws.recv().await.expect("msg").expect("ok"), Message::text("hello"));
                    assert_eq!(ws.recv().await.expect("msg").expect("ok"), Message::binary(vec![0u8, 1, 2]));
                    assert_eq!(ws.recv().await.expect("msg").expect("ok"), Message::text(big));
                    ws.close(CloseCode::NORMAL, "done").await.expect("close");
                    let closed = ws.close_info().expect("closed");
                    assert!(closed.is_clean());
                    assert_eq!((closed.code, closed.initiator), (CloseCode::NORMAL, Side::Local));
                    assert!(ws.recv().await.is_none());
                  }
                });
            }

            #[test]
            fn stream_and_sink() {
                $block_on(async {
                    // 100 messages written at once: lent several to a read.
                    let url = echo_server(Config::default(), true).await;
                    let mut ws = adapter::connect(&url, Arc::new(Config::default())).await.expect("connect");
                    for i in 0..100u32 {
                        ws.feed(Message::binary(i.to_be_bytes().to_vec())).await.expect("feed");
                    }
                    SinkExt::<Message>::flush(&mut ws).await.expect("flush");
                    for i in 0..100u32 {
                        let m = ws.next().await.expect("item").expect("ok");
                        assert_eq!(m.as_bytes(), i.to_be_bytes());
                    }
                    SinkExt::<Message>::close(&mut ws).await.expect("close frame sent");
                    assert!(ws.next().await.is_none(), "stream ends after the closing handshake");
                    assert!(ws.close_info().expect("closed").is_clean());
                });
            }

            #[test]
            fn bad_upgrade_request_gets_400_and_the_socket_is_closed() {
                $block_on(async {
                    let url = echo_server(Config::default(), false).await;
                    let addr = url.trim_start_matches("ws://").trim_end_matches("/echo");
                    let mut tcp = <$stream>::connect(addr).await.expect("tcp");
                    tcp.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
                    let mut answer = Vec::new();
                    tcp.read_to_end(&mut answer).await.expect("read to EOF");
                    let answer = String::from_utf8_lossy(&answer);
                    assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");
                });
            }

            #[test]
            fn oversized_message_is_refused_with_1009() {
                $block_on(async {
                    let url = echo_server(Config::default().max_message_size(1024), true).await;
                    let mut ws = adapter::connect(&url, Arc::new(Config::default())).await.expect("connect");
                    ws.send(vec![7u8; 1024]).await.expect("send");
                    assert_eq!(ws.recv().await.expect("echo").expect("ok").len(), 1024);
                    ws.send(vec![7u8; 1025]).await.expect("send");
                    assert!(ws.recv().await.is_none(), "no echo, the server closes");
                    let closed = ws.close_info().expect("closed");
                    assert_eq!((closed.code, closed.initiator), (CloseCode::MESSAGE_TOO_BIG, Side::Remote));
                });
            }

            #[test]
            fn keepalive_drops_a_silent_peer() {
                $block_on(async {
                    let listener = <$listener>::bind("127.0.0.1:0").await.expect("bind");
                    let addr = listener.local_addr().expect("addr");
                    let mut tcp = <$stream>::connect(addr).await.expect("tcp");
                    let (stream, _) = listener.accept().await.expect("accept");
                    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await.expect("write");
                    let config = Config::default().keepalive(Duration::from_millis(30), Duration::from_millis(30));
                    let mut ws = adapter::accept(stream, Arc::new(config)).await.expect("accept");
                    // The raw peer never answers the ping: the server gives up on its own timer.
                    match ws.recv().await {
                        Some(Err(e)) => assert!(e.to_string().contains("keepalive"), "{e}"),
                        other => panic!("expected a keepalive error, got {other:?}"),
                    }
                    assert!(ws.recv().await.is_none());
                    let mut wire = Vec::new();
                    tcp.read_to_end(&mut wire).await.expect("read to EOF");
                    // 101 response, then one ping frame (0x89 0x00), then EOF.
                    assert!(wire.ends_with(b"\r\n\r\n\x89\x00"), "{:?}", String::from_utf8_lossy(&wire));
                });
            }

            /// Reads one HTTP response (head and Content-Length body) from `tcp`.
            async fn read_response(tcp: &mut $stream) -> (u16, String) {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len: usize = text[..end]
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            let status = text[9..12].parse().expect("status");
                            return (status, text[end + 4..end + 4 + len].to_owned());
                        }
                    }
                    let n = tcp.read(&mut chunk).await.expect("read");
                    assert!(n > 0, "connection closed mid-response: {:?}", String::from_utf8_lossy(&buf));
                    buf.extend_from_slice(&chunk[..n]);
                }
            }

            #[test]
            fn engine_io_over_tcp_keep_alive() {
                $block_on(async {
                    let server = adapter::eio::server(adapter::eio::Config::default()).expect("server");
                    let listener = <$listener>::bind("127.0.0.1:0").await.expect("bind");
                    let addr = listener.local_addr().expect("addr");
                    let accept = server.clone();
                    $spawn(async move {
                        let _ = adapter::eio::serve(accept, listener).await;
                    });
                    let mut tcp = <$stream>::connect(addr).await.expect("tcp");
                    tcp.write_all(b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
                    let (status, body) = read_response(&mut tcp).await;
                    assert_eq!(status, 200);
                    assert!(body.starts_with("0{\"sid\":\""), "{body}");
                    let sid = &body[9..29];
                    // The same connection, kept alive: a message, then a poll that gets the echo.
                    let post = format!("POST /engine.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n4hello");
                    tcp.write_all(post.as_bytes()).await.expect("write");
                    assert_eq!(read_response(&mut tcp).await, (200, "ok".to_owned()));
                    match server.next_event().await {
                        adapter::eio::Event::Open { .. } => {}
                        other => panic!("{other:?}"),
                    }
                    match server.next_event().await {
                        adapter::eio::Event::Message { sid: s, data } => server.send(&s, data).expect("open"),
                        other => panic!("{other:?}"),
                    }
                    let get = format!("GET /engine.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n");
                    tcp.write_all(get.as_bytes()).await.expect("write");
                    assert_eq!(read_response(&mut tcp).await, (200, "4hello".to_owned()));
                    tcp.write_all(b"GET /engine.io/?EIO=4&transport=polling&sid=nope HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
                    assert_eq!(read_response(&mut tcp).await, (400, r#"{"code":1,"message":"Session ID unknown"}"#.to_owned()));
                    tcp.write_all(b"GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
                    assert_eq!(read_response(&mut tcp).await.0, 404);
                });
            }

            #[test]
            fn plain_websocket_route_beside_engine_io() {
                $block_on(async {
                    let options = adapter::eio::ServerOptions::from(adapter::eio::Config::default())
                        .websocket_route("/chat", Arc::new(Config::default()));
                    let server = adapter::eio::server(options).expect("server");
                    let listener = <$listener>::bind("127.0.0.1:0").await.expect("bind");
                    let addr = listener.local_addr().expect("addr");
                    $spawn(async move {
                        let _ = adapter::eio::serve_with(server, listener, |path, mut ws| async move {
                            assert_eq!(path, "/chat");
                            wirestate_conformance::echo(&mut ws, true).await;
                        })
                        .await;
                    });
                    let mut ws = adapter::connect(&format!("ws://{addr}/chat"), Arc::new(Config::default())).await.expect("connect");
                    ws.send("over the route").await.expect("send");
                    assert_eq!(ws.recv().await.expect("echo").expect("ok"), Message::text("over the route"));
                    ws.close(CloseCode::NORMAL, "").await.expect("close");
                    let err = adapter::connect(&format!("ws://{addr}/nowhere"), Arc::new(Config::default())).await.expect_err("404");
                    assert!(err.to_string().contains("404"), "{err}");
                });
            }

            #[test]
            fn a_trickled_request_is_cut_off() {
                $block_on(async {
                    let limits = wirestate_async::HttpLimits::default().request_timeout(Duration::from_millis(100));
                    let options = adapter::eio::ServerOptions::from(adapter::eio::Config::default()).http_limits(limits);
                    let server = adapter::eio::server(options).expect("server");
                    let listener = <$listener>::bind("127.0.0.1:0").await.expect("bind");
                    let addr = listener.local_addr().expect("addr");
                    $spawn(async move {
                        let _ = adapter::eio::serve(server, listener).await;
                    });
                    let mut tcp = <$stream>::connect(addr).await.expect("tcp");
                    tcp.write_all(b"GET /engine.io/?EIO=4").await.expect("write");
                    let mut rest = Vec::new();
                    // The server gives up on the half-sent head and closes: read_to_end ends.
                    tcp.read_to_end(&mut rest).await.expect("closed by the server");
                    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
                });
            }

            #[test]
            fn engine_io_client_against_our_server_every_transport() {
                $block_on(async {
                    let server = adapter::eio::server(adapter::eio::Config::default()).expect("server");
                    let listener = <$listener>::bind("127.0.0.1:0").await.expect("bind");
                    let addr = listener.local_addr().expect("addr");
                    let accept = server.clone();
                    $spawn(async move {
                        let _ = adapter::eio::serve(accept, listener).await;
                    });
                    let echo = server.clone();
                    $spawn(async move {
                        loop {
                            if let adapter::eio::Event::Message { sid, data } = echo.next_event().await {
                                let _ = echo.send(&sid, data);
                            }
                        }
                    });
                    for (polling, websocket) in [(true, false), (false, true), (true, true)] {
                        let config = adapter::eio::ClientConfig::default().transports(polling, websocket);
                        let mut client = adapter::eio::connect(&format!("http://{addr}"), config).expect("url");
                        assert!(matches!(client.recv().await, Some(adapter::eio::ClientEvent::Open(_))));
                        client.send(adapter::eio::Data::from("ping me")).expect("open");
                        loop {
                            match client.recv().await {
                                Some(adapter::eio::ClientEvent::Message(d)) => {
                                    assert_eq!(d, adapter::eio::Data::from("ping me"));
                                    break;
                                }
                                Some(adapter::eio::ClientEvent::Upgraded) => {}
                                other => panic!("{other:?}"),
                            }
                        }
                        client.close();
                        while client.recv().await.is_some() {}
                    }
                    let mut refused = adapter::eio::connect("http://127.0.0.1:1", adapter::eio::ClientConfig::default()).expect("url");
                    assert!(matches!(refused.recv().await, Some(adapter::eio::ClientEvent::Closed(_))));
                });
            }

            async fn next_text(ws: &mut adapter::ClientWebSocket) -> String {
                match ws.recv().await {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    other => panic!("expected a text message, got {other:?}"),
                }
            }

            #[test]
            fn socket_io_handlers_acks_errors_panics_and_graceful_shutdown() {
                use adapter::sio::{self, Payload};
                $block_on(async {
                    let io = sio::server(sio::Config::default()).expect("server");
                    io.of("/").on_connection(|socket| async move {
                        socket.on("echo", |socket, mut msg| async move {
                            socket.emit_payload("echo-back", msg.take_payload())
                        });
                        socket.on("boom", |_socket, _msg| async move {
                            if true {
                                panic!("a handler bug");
                            }
                        });
                        socket.on("fail", |_socket, _msg| async move { Err::<(), _>("nope") });
                        socket.on("refuse", |_socket, _msg| async move {
                            Err::<(), _>(sio::AppError::new("NOT_IN_ROOM", "join it first"))
                        });
                        socket.on("ask", |socket, msg| async move {
                            // Waits for the client: this handler runs as a spawned task.
                            let answer = socket
                                .emit_with_ack("q", Payload::new(), Some(Duration::from_secs(5)))
                                .await
                                .map_err(|e| e.to_string())?;
                            msg.ack_payload(answer).map_err(|e| e.to_string())
                        });
                    });
                    let listener = <$listener>::bind("127.0.0.1:0").await.expect("bind");
                    let addr = listener.local_addr().expect("addr");
                    let serving = io.clone();
                    let (done_tx, done_rx) = std::sync::mpsc::channel();
                    $spawn(async move {
                        let result = sio::serve(serving, listener).await;
                        let _ = done_tx.send(result.is_ok());
                    });
                    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
                    let mut ws = adapter::connect(&url, Arc::new(Config::default())).await.expect("connect");
                    assert!(next_text(&mut ws).await.starts_with("0{\"sid\":"));
                    ws.send("40").await.expect("send");
                    assert!(next_text(&mut ws).await.starts_with("40{\"sid\":"));
                    ws.send("42[\"echo\",1,{\"b\":2}]").await.expect("send");
                    assert_eq!(next_text(&mut ws).await, "42[\"echo-back\",1,{\"b\":2}]");
                    ws.send("421[\"boom\"]").await.expect("send");
                    // A panic and an internal error read the same: nothing of theirs leaks.
                    let internal = "[{\"status\":\"error\",\"error\":{\"code\":\"INTERNAL_SERVER_ERROR\",\"message\":\"An internal server error has occurred.\"}}]";
                    assert_eq!(next_text(&mut ws).await, format!("431{internal}"));
                    ws.send("422[\"fail\"]").await.expect("send");
                    assert_eq!(next_text(&mut ws).await, format!("432{internal}"));
                    ws.send("424[\"refuse\"]").await.expect("send");
                    assert_eq!(next_text(&mut ws).await, "434[{\"status\":\"error\",\"error\":{\"code\":\"NOT_IN_ROOM\",\"message\":\"join it first\"}}]");
                    ws.send("423[\"ask\"]").await.expect("send");
                    let question = next_text(&mut ws).await;
                    let id: String = question[2..].chars().take_while(char::is_ascii_digit).collect();
                    assert_eq!(&question[2 + id.len()..], "[\"q\"]");
                    ws.send(format!("43{id}[\"answer\"]").as_str()).await.expect("send");
                    assert_eq!(next_text(&mut ws).await, "433[\"answer\"]");
                    assert_eq!(io.socket_count(), 1);

                    let stopping = io.clone();
                    let (shut_tx, shut_rx) = std::sync::mpsc::channel();
                    $spawn(async move {
                        stopping.shutdown().await;
                        let _ = shut_tx.send(());
                    });
                    assert_eq!(next_text(&mut ws).await, "41");
                    assert!(ws.recv().await.is_none(), "then the transport closes");
                    // Shutdown returns, and the accept loop has stopped.
                    let (mut shut, mut stopped) = (false, false);
                    for _ in 0..200 {
                        shut |= shut_rx.try_recv().is_ok();
                        if let Ok(ok) = done_rx.try_recv() {
                            stopped = ok;
                        }
                        if shut && stopped {
                            break;
                        }
                        $sleep(Duration::from_millis(5)).await;
                    }
                    assert!(shut, "shutdown returned");
                    assert!(stopped, "serve returned Ok after shutdown");
                    assert_eq!(io.socket_count(), 0);
                });
            }

            #[test]
            fn socket_io_client_against_our_server() {
                use adapter::sio::{self, IoOptions, Payload};
                $block_on(async {
                    let io = sio::server(sio::Config::default()).expect("server");
                    io.of("/").on_connection(|socket| async move {
                        // Asked for, not sent on connection: the client's handler is
                        // registered after `io()` has started connecting, on another
                        // thread, and an event that arrives before it is dropped.
                        socket.on("ready", |socket, _msg| async move {
                            let _ = socket.emit("welcome", socket.auth());
                        });
                        socket.on("double", |_socket, msg| async move {
                            let n: i64 = msg.data().map_err(|e| e.to_string())?;
                            msg.ack(&(n * 2)).map_err(|e| e.to_string())
                        });
                    });
                    let listener = <$listener>::bind("127.0.0.1:0").await.expect("bind");
                    let addr = listener.local_addr().expect("addr");
                    let serving = io.clone();
                    $spawn(async move {
                        let _ = sio::serve(serving, listener).await;
                    });
                    let socket = sio::io(&format!("http://{addr}/"), IoOptions::default().auth(serde_json::json!({"me": 1})))
                        .expect("url");
                    let (tx, rx) = std::sync::mpsc::channel();
                    socket.on("welcome", move |payload, _ack| {
                        let _ = tx.send(payload);
                    });
                    assert_eq!(socket.wait_connected().await, Ok(false));
                    socket.emit("ready", &()).expect("connected");
                    let doubled = socket
                        .timeout(Duration::from_secs(5))
                        .emit_with_ack("double", &21)
                        .await
                        .expect("ack");
                    assert_eq!(doubled, Payload::new().arg(serde_json::json!(42)));
                    let welcome = rx.try_recv().expect("welcome arrived before the ack");
                    assert_eq!(*welcome.values(), [serde_json::json!({"me": 1})]);
                    assert_eq!(io.socket_count(), 1);
                    socket.io().close();
                    for _ in 0..200 {
                        if io.socket_count() == 0 {
                            break;
                        }
                        $sleep(Duration::from_millis(5)).await;
                    }
                    assert_eq!(io.socket_count(), 0, "the server saw the client leave");
                    let err = socket.emit("late", &1).expect_err("closed");
                    assert!(err.to_string().contains("closed"), "{err}");
                });
            }

            #[test]
            fn a_sharded_server_serves_its_clients_on_its_threads_as_one_cluster() {
                use adapter::sio::{self, IoOptions};
                use std::sync::Mutex;
                $block_on(async {
                    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                    let addr = listener.local_addr().expect("addr");
                    let shards = sio::serve_sharded(sio::Config::default(), listener, 2, |io| {
                        io.of("/").on_connection(|socket| async move {
                            socket.on("whoami", |_socket, msg| async move {
                                let thread = std::thread::current().name().map(str::to_owned);
                                msg.ack(&thread).map_err(|e| e.to_string())
                            });
                            socket.on("shout", |socket, msg| async move {
                                let text: String = msg.data().map_err(|e| e.to_string())?;
                                socket.broadcast().emit("heard", &text).map(|_| ()).map_err(|e| e.to_string())
                            });
                        });
                    })
                    .expect("shards");
                    assert_eq!(shards.len(), 2);
                    // Each client's upgrade lands on the shard that does not own its
                    // session with a chance of 1/2: with 20, that none does is 1 in 2^20.
                    const N: usize = 20;
                    let heard = Arc::new(Mutex::new(vec![Vec::<String>::new(); N]));
                    let mut clients = Vec::new();
                    for i in 0..N {
                        // Polling first, then the upgrade: each request may be accepted
                        // by either shard, and is carried to the one that owns the session.
                        let socket = sio::io(&format!("http://{addr}/"), IoOptions::default()).expect("url");
                        for event in ["heard", "news"] {
                            let heard = heard.clone();
                            socket.on(event, move |payload, _| {
                                let text: String = payload.get(0).expect("a string");
                                heard.lock().expect("lock")[i].push(text);
                            });
                        }
                        assert_eq!(socket.wait_connected().await, Ok(false));
                        let thread: Option<String> = socket
                            .timeout(Duration::from_secs(5))
                            .emit_with_ack("whoami", &())
                            .await
                            .expect("ack")
                            .get(0)
                            .expect("a name");
                        let thread = thread.unwrap_or_default();
                        assert!(thread.starts_with("wirestate-shard-"), "{thread}");
                        clients.push(socket);
                    }
                    // Upgrades accepted by the other shard moved there, socket and all.
                    for _ in 0..500 {
                        if shards.moved_connections() > 0 {
                            break;
                        }
                        $sleep(Duration::from_millis(10)).await;
                    }
                    let moved = shards.moved_connections();
                    assert!((1..=N as u64).contains(&moved), "{moved} connections moved");
                    // And every upgrade completed, moved or not: no session left on polling.
                    let polling = || -> usize {
                        shards.iter().map(|io| io.host().inspect(|s| s.eio().polling_count())).sum()
                    };
                    for _ in 0..500 {
                        if polling() == 0 {
                            break;
                        }
                        $sleep(Duration::from_millis(10)).await;
                    }
                    assert_eq!(polling(), 0, "sessions still on polling");
                    let counts: Vec<usize> = shards.iter().map(|io| io.socket_count()).collect();
                    assert_eq!(counts.iter().sum::<usize>(), N, "{counts:?}");
                    let all = shards.io().of("/").sockets().fetch_sockets().await.expect("answered");
                    assert_eq!(all.len(), N);

                    clients[0].emit("shout", "hi").expect("open");
                    shards.io().of("/").emit("news", "to all").expect("emit");
                    let want = |i: usize| -> Vec<String> {
                        if i == 0 { vec!["to all".into()] } else { vec!["hi".into(), "to all".into()] }
                    };
                    for _ in 0..400 {
                        let done = heard.lock().expect("lock").iter().enumerate().all(|(i, h)| {
                            let mut h = h.clone();
                            h.sort();
                            h == want(i)
                        });
                        if done {
                            break;
                        }
                        $sleep(Duration::from_millis(5)).await;
                    }
                    for (i, h) in heard.lock().expect("lock").iter().enumerate() {
                        let mut h = h.clone();
                        h.sort();
                        assert_eq!(h, want(i), "client {i}");
                    }

                    shards.shutdown().await;
                    assert!(shards.iter().all(|io| io.socket_count() == 0));
                    assert!(std::net::TcpStream::connect(addr).is_err(), "the shards stopped listening");
                    assert!(clients.iter().all(|c| !c.connected()));
                });
            }

            #[test]
            fn a_shard_whose_setup_panics_fails_the_start_and_stops_the_others() {
                use adapter::sio;
                let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                let addr = listener.local_addr().expect("addr");
                let started = std::sync::atomic::AtomicUsize::new(0);
                let started = Arc::new(started);
                let count = started.clone();
                let result = sio::serve_sharded(sio::Config::default(), listener, 3, move |_io| {
                    if count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                        panic!("a setup that fails (this panic is the test's)");
                    }
                });
                let err = result.expect_err("a shard never started");
                assert!(err.to_string().contains("shard"), "{err}");
                assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 3);
                // The shards that did start stop: nothing accepts on the port.
                let mut refused = false;
                for _ in 0..200 {
                    if std::net::TcpStream::connect(addr).is_err() {
                        refused = true;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                assert!(refused, "the started shards stopped listening");
            }

            #[test]
            fn connect_errors_are_values() {
                $block_on(async {
                    let config = Arc::new(Config::default());
                    let err = adapter::connect("ftp://127.0.0.1:1/", config.clone()).await.expect_err("scheme");
                    assert!(matches!(err, wirestate_async::Error::Url(_)), "{err}");
                    let err = adapter::connect("wss://127.0.0.1:1/", config.clone()).await.expect_err("refused");
                    assert!(matches!(err, wirestate_async::Error::Io(_)), "{err}");
                    let listener = <$listener>::bind("127.0.0.1:0").await.expect("bind");
                    let addr = listener.local_addr().expect("addr");
                    $spawn(async move {
                        if let Ok((mut s, _)) = listener.accept().await {
                            let mut buf = [0u8; 1024];
                            let _ = s.read(&mut buf).await;
                            let _ = s.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n").await;
                        }
                    });
                    let err = adapter::connect(&format!("ws://{addr}/"), config).await.expect_err("403");
                    assert!(err.to_string().contains("403"), "{err}");
                });
            }
        }
    };
}

fn tokio_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn tokio_spawn<F: std::future::Future<Output = ()> + Send + 'static>(f: F) {
    tokio::spawn(f);
}

fn smol_spawn<F: std::future::Future<Output = ()> + Send + 'static>(f: F) {
    smol::spawn(f).detach();
}

async fn smol_sleep(d: std::time::Duration) {
    smol::Timer::after(d).await;
}

runtime_tests!(
    on_tokio,
    wirestate_tokio,
    crate::tokio_block_on,
    crate::tokio_spawn,
    tokio::time::sleep,
    tokio::net::TcpListener,
    tokio::net::TcpStream,
    tokio::io
);
runtime_tests!(
    on_smol,
    wirestate_smol,
    smol::block_on,
    crate::smol_spawn,
    crate::smol_sleep,
    smol::net::TcpListener,
    smol::net::TcpStream,
    smol::io
);
