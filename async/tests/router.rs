//! The router of plain WebSocket applications, driven in memory on the virtual clock:
//! routes and parameters, the auth hook's three answers, the registry, rooms and
//! broadcast, middleware, close codes, slow recipients, heartbeat, and the router
//! beside Engine.IO on one port.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wirestate_async::mem::{MemStream, Sim};

mod common;
use common::read_response;
use wirestate_async::router::{self, Auth, Flow, HttpResponse, Route, Router, SendError};
use wirestate_async::{eio, Error, Runtime};
use wirestate_engine::ws::{CloseCode, Config, DeflateConfig, Message};

type Client =
    wirestate_async::WebSocket<wirestate_async::ClientStream<MemStream>, <Sim as Runtime>::Clock>;

/// Serves `router` alone on 127.0.0.1:3000 of `sim`.
fn serve(sim: &Sim, router: &Router) {
    let listener = sim.listen("127.0.0.1:3000").expect("listen");
    let (rt, router) = (sim.clone(), router.clone());
    sim.spawn(async move {
        let _ = router::serve(&rt, router, listener).await;
    });
}

async fn client(sim: &Sim, path: &str) -> Result<Client, Error> {
    let config = Config::default().deflate(DeflateConfig::default());
    wirestate_async::connect(sim, &format!("ws://127.0.0.1:3000{path}"), Arc::new(config)).await
}

async fn text(ws: &mut Client) -> String {
    match ws.recv().await {
        Some(Ok(Message::Text(t))) => t.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// One raw HTTP exchange: the status and body of the answer to `request`.
async fn http_exchange(sim: &Sim, request: &str) -> (u16, String) {
    let mut raw = sim.connect("127.0.0.1:3000".into()).await.expect("connect");
    raw.write_all(request.as_bytes()).await.expect("write");
    read_response(&mut raw).await
}

const UPGRADE: &str = "Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

#[test]
fn routes_match_patterns_and_capture_parameters() {
    let sim = Sim::new();
    let r = Router::builder()
        .route(
            "/ws/game/:id",
            Route::new().on_connect(|conn| {
                let id = conn.param("id").unwrap_or("?").to_owned();
                let q = conn
                    .handshake()
                    .query_param("side")
                    .unwrap_or_default()
                    .into_owned();
                let _ = conn.send(format!("{id}|{q}|{}", conn.handshake().route()));
            }),
        )
        .route(
            "/ws/*rest",
            Route::new().on_connect(|conn| {
                let _ = conn.send(format!("rest={}", conn.param("rest").unwrap_or("?")));
            }),
        )
        .build();
    serve(&sim, &r);
    sim.block_on(async {
        let mut ws = client(&sim, "/ws/game/a%20b?side=left")
            .await
            .expect("upgrade");
        assert_eq!(text(&mut ws).await, "a b|left|/ws/game/:id");
        // The first route that matches serves the path.
        let mut ws = client(&sim, "/ws/lobby/x").await.expect("upgrade");
        assert_eq!(text(&mut ws).await, "rest=lobby/x");
        let (status, _) = http_exchange(&sim, &format!("GET /other HTTP/1.1\r\n{UPGRADE}")).await;
        assert_eq!(status, 404);
        // A plain GET of a route asks for the upgrade; other HTTP is the fallback's.
        let (status, _) = http_exchange(&sim, "GET /ws/game/1 HTTP/1.1\r\nHost: h\r\n\r\n").await;
        assert_eq!(status, 426);
        let (status, _) = http_exchange(&sim, "GET /page HTTP/1.1\r\nHost: h\r\n\r\n").await;
        assert_eq!(status, 404, "no fallback: 404");
    });
}

#[test]
fn the_auth_hook_accepts_with_data_refuses_with_a_status_or_closes_with_a_code() {
    let sim = Sim::new();
    let r = Router::builder()
        .route(
            "/private",
            Route::new()
                .auth(|hs| match hs.query_param("token").as_deref() {
                    None => Auth::close(4001, "No token provided"),
                    Some("secret") => Auth::accept_with(format!(
                        "alice from {}",
                        hs.peer_addr()
                            .map(|a| a.ip().to_string())
                            .unwrap_or_default()
                    )),
                    Some("teapot") => Auth::refuse(418),
                    Some(_) => Auth::close(4002, "Invalid token"),
                })
                .on_connect(|conn| {
                    let user = conn.auth::<String>().cloned().unwrap_or_default();
                    assert!(conn.auth::<u32>().is_none(), "data of another type");
                    let _ = conn.send(user);
                }),
        )
        .route(
            "/slow",
            Route::new()
                .config(Config::default().handshake_timeout(Duration::from_secs(5)))
                .auth_async(|_| async {
                    std::future::pending::<()>().await;
                    Auth::accept()
                }),
        )
        .build();
    serve(&sim, &r);
    sim.block_on(async {
        let mut ws = client(&sim, "/private?token=secret")
            .await
            .expect("upgrade");
        assert_eq!(text(&mut ws).await, "alice from 127.0.0.1");
        for (path, code, reason) in [
            ("/private", 4001, "No token provided"),
            ("/private?token=x", 4002, "Invalid token"),
        ] {
            let mut ws = client(&sim, path).await.expect("upgraded, then closed");
            assert!(ws.recv().await.is_none(), "closed at once");
            let closed = ws.close_info().expect("closed");
            assert_eq!(
                (closed.code, closed.reason.as_str()),
                (CloseCode(code), reason)
            );
        }
        assert_eq!(
            r.connection_count(),
            1,
            "refused connections never registered"
        );
        let (status, _) = http_exchange(
            &sim,
            &format!("GET /private?token=teapot HTTP/1.1\r\n{UPGRADE}"),
        )
        .await;
        assert_eq!(status, 418);
        let start = sim.elapsed();
        let (status, _) = http_exchange(&sim, &format!("GET /slow HTTP/1.1\r\n{UPGRADE}")).await;
        assert_eq!(
            status, 503,
            "the hook did not answer within the handshake timeout"
        );
        assert_eq!(sim.elapsed() - start, Duration::from_secs(5));
    });
}

#[test]
fn the_registry_reaches_a_connection_by_id_until_it_is_gone() {
    let sim = Sim::new();
    let ids = Arc::new(Mutex::new(Vec::new()));
    let seen = ids.clone();
    let r = Router::builder()
        .route(
            "/ws",
            Route::new().on_connect(move |conn| seen.lock().expect("lock").push(conn.sender())),
        )
        .fallback(|router, request| {
            // POST /send/ID: the body to connection ID.
            let id = request.head.path().trim_start_matches("/send/");
            let body = String::from_utf8_lossy(&request.body).into_owned();
            match router.send(id, body) {
                Ok(()) => HttpResponse::new(200),
                Err(SendError::Unknown) => HttpResponse::new(404),
                Err(_) => HttpResponse::new(410),
            }
        })
        .build();
    serve(&sim, &r);
    sim.block_on(async {
        let mut a = client(&sim, "/ws").await.expect("upgrade");
        let mut b = client(&sim, "/ws").await.expect("upgrade");
        sim.sleep(Duration::from_millis(1)).await;
        let senders = ids.lock().expect("lock").clone();
        assert_eq!(senders.len(), 2);
        assert_ne!(senders[0].id(), senders[1].id());
        assert_eq!(senders[0].id().as_str().len(), 16);
        let (a_id, b_id) = (senders[0].id().to_string(), senders[1].id().to_string());
        let post = |id: &str, body: &str| {
            format!(
                "POST /send/{id} HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        assert_eq!(http_exchange(&sim, &post(&b_id, "to b")).await.0, 200);
        assert_eq!(text(&mut b).await, "to b");
        senders[0].send("from a task").expect("open");
        assert_eq!(text(&mut a).await, "from a task");
        let mut sorted = r.connections(Some("/ws"));
        sorted.sort();
        let mut expected = vec![senders[0].id().clone(), senders[1].id().clone()];
        expected.sort();
        assert_eq!(sorted, expected);
        a.close(CloseCode::NORMAL, "").await.expect("close");
        sim.sleep(Duration::from_millis(1)).await;
        assert!(senders[0].is_closed());
        assert!(matches!(senders[0].send("late"), Err(SendError::Closed)));
        assert!(matches!(r.send(&a_id, "late"), Err(SendError::Unknown)));
        assert_eq!(http_exchange(&sim, &post(&a_id, "late")).await.0, 404);
        assert_eq!(http_exchange(&sim, &post("nobody", "x")).await.0, 404);
        assert_eq!(r.connection_count(), 1);
    });
}

#[test]
fn rooms_and_broadcast_reach_the_right_connections_once() {
    let sim = Sim::new();
    let r = Router::builder()
        .route(
            "/chat",
            Route::new()
                .compression(16)
                .on_connect(|conn| {
                    let _ = conn.send(conn.id().to_string());
                })
                .on_message(|conn, message| {
                    let text = message.as_text().unwrap_or_default().to_owned();
                    let (verb, arg) = text.split_once(' ').unwrap_or((&text, ""));
                    match verb {
                        "join" => {
                            conn.join(arg).expect("under the limit");
                        }
                        "leave" => {
                            conn.leave(arg);
                        }
                        "room" => {
                            let (room, say) = arg.split_once(' ').unwrap_or((arg, ""));
                            let n = conn.broadcast().to(room).send(say.to_owned());
                            let _ = conn.send(format!("sent to {n}"));
                        }
                        "all" => {
                            let n = conn.broadcast().include_self(true).send(arg.to_owned());
                            let _ = conn.send(format!("sent to {n}"));
                        }
                        "rooms" => {
                            let _ = conn.send(conn.rooms().join(","));
                        }
                        _ => {}
                    }
                }),
        )
        .route("/other", Route::new())
        .max_rooms_per_connection(4)
        .build();
    serve(&sim, &r);
    sim.block_on(async {
        let mut a = client(&sim, "/chat").await.expect("a");
        let mut b = client(&sim, "/chat").await.expect("b");
        let mut c = client(&sim, "/chat").await.expect("c");
        let _other = client(&sim, "/other").await.expect("other");
        let (_a_id, b_id) = (text(&mut a).await, text(&mut b).await);
        let _ = text(&mut c).await;
        for ws in [&mut a, &mut b] {
            ws.send("join red").await.expect("send");
            ws.send("join blue").await.expect("send");
        }
        c.send("join blue").await.expect("send");
        a.send("rooms").await.expect("send");
        assert_eq!(text(&mut a).await, "red,blue");
        // To red, but the sender: b alone.
        a.send("room red hello red").await.expect("send");
        assert_eq!(text(&mut a).await, "sent to 1");
        assert_eq!(text(&mut b).await, "hello red");
        // Long enough to be compressed (threshold 16): once, for both recipients.
        let long = "blue ".repeat(40);
        a.send(format!("room blue {long}")).await.expect("send");
        assert_eq!(text(&mut a).await, "sent to 2");
        assert_eq!(text(&mut b).await, long);
        assert_eq!(text(&mut c).await, long);
        // The whole route, the sender included; not /other.
        b.send("all everyone").await.expect("send");
        for ws in [&mut a, &mut c] {
            assert_eq!(text(ws).await, "everyone");
        }
        assert_eq!(text(&mut b).await, "everyone");
        assert_eq!(text(&mut b).await, "sent to 3");
        b.send("leave blue").await.expect("send");
        c.send("room blue after leave").await.expect("send");
        assert_eq!(text(&mut c).await, "sent to 1");
        assert_eq!(text(&mut a).await, "after leave");
        // From outside any connection: the router's broadcast.
        assert_eq!(
            r.broadcast()
                .to("red")
                .except(&r.room_members("red")[0])
                .send("x"),
            1
        );
        assert_eq!(r.broadcast().route("/nowhere").send("x"), 0);
        assert_eq!(
            r.broadcast().send_json(&["every", "route"]).expect("json"),
            4
        );
        let mut members = r.room_members("blue");
        members.sort();
        assert_eq!(members.len(), 2);
        assert!(!members.iter().any(|m| m.as_str() == b_id));
    });
}

#[test]
fn joining_past_the_room_limit_is_an_error() {
    let sim = Sim::new();
    let results = Arc::new(Mutex::new(Vec::new()));
    let record = results.clone();
    let r = Router::builder()
        .route(
            "/ws",
            Route::new().on_connect(move |conn| {
                let mut results = record.lock().expect("lock");
                for room in ["a", "b", "c", "a"] {
                    results.push(conn.join(room).map_err(|e| e.to_string()));
                }
            }),
        )
        .max_rooms_per_connection(2)
        .build();
    serve(&sim, &r);
    sim.block_on(async {
        let _ws = client(&sim, "/ws").await.expect("upgrade");
        sim.sleep(Duration::from_millis(1)).await;
    });
    assert_eq!(
        *results.lock().expect("lock"),
        [
            Ok(true),
            Ok(true),
            Err("already in 2 rooms, the most allowed".to_owned()),
            Ok(false)
        ]
    );
}

#[test]
fn middleware_transforms_and_stops_messages_in_order() {
    let sim = Sim::new();
    let r = Router::builder()
        .route(
            "/ws",
            Route::new()
                .middleware(|conn, message| {
                    if message.json::<serde_json::Value>().is_err() {
                        let _ = conn.send(r#"{"error":"invalid JSON"}"#);
                        return Flow::Stop;
                    }
                    Flow::Next(message)
                })
                .middleware(|_, message| {
                    let upper = message.as_text().unwrap_or_default().to_uppercase();
                    Flow::Next(Message::text(upper))
                })
                .on_message(|conn, message| {
                    let _ = conn.send(message);
                }),
        )
        .build();
    serve(&sim, &r);
    sim.block_on(async {
        let mut ws = client(&sim, "/ws").await.expect("upgrade");
        ws.send("nope").await.expect("send");
        assert_eq!(text(&mut ws).await, r#"{"error":"invalid JSON"}"#);
        ws.send(r#"{"a":"b"}"#).await.expect("send");
        assert_eq!(text(&mut ws).await, r#"{"A":"B"}"#);
    });
}

#[test]
fn on_close_and_on_error_report_how_a_connection_ended() {
    let sim = Sim::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (on_close, on_error) = (log.clone(), log.clone());
    let r = Router::builder()
        .route(
            "/ws",
            Route::new()
                .on_close(move |conn, code, reason| {
                    // Still in its rooms while the handler runs.
                    let rooms = conn.rooms().join(",");
                    on_close
                        .lock()
                        .expect("lock")
                        .push(format!("close {} {reason} [{rooms}]", code.0));
                })
                .on_error(move |_, e| on_error.lock().expect("lock").push(format!("error {e}")))
                .on_connect(|conn| {
                    conn.join("lobby").expect("join");
                }),
        )
        .build();
    serve(&sim, &r);
    sim.block_on(async {
        let mut ws = client(&sim, "/ws").await.expect("upgrade");
        ws.close(CloseCode(4100), "bye").await.expect("close");
        // A peer that breaks the protocol: an unmasked frame from a client.
        let mut raw = sim.connect("127.0.0.1:3000".into()).await.expect("connect");
        raw.write_all(format!("GET /ws HTTP/1.1\r\n{UPGRADE}").as_bytes())
            .await
            .expect("write");
        raw.write_all(&[0x81, 0x02, b'h', b'i'])
            .await
            .expect("write");
        let _ = raw.read_to_end().await;
        sim.sleep(Duration::from_millis(1)).await;
    });
    let log = log.lock().expect("lock").clone();
    assert_eq!(log[0], "close 4100 bye [lobby]");
    assert!(log[1].starts_with("error "), "{log:?}");
    assert!(log[2].starts_with("close 1002 "), "{log:?}");
    assert_eq!(log.len(), 3);
    assert_eq!(r.connection_count(), 0);
    assert!(
        r.room_members("lobby").is_empty(),
        "rooms are left at the end"
    );
}

#[test]
fn a_slow_recipient_is_closed_without_holding_a_broadcast_back() {
    let sim = Sim::new();
    // 8 KiB each way: the slow client below never reads, so its queue fills.
    sim.set_capacity(8 * 1024);
    let r = Router::builder()
        .route(
            "/ws",
            Route::new()
                .max_queued_bytes(64 * 1024)
                .config(Config::default().write_timeout(Duration::from_secs(10))),
        )
        .build();
    serve(&sim, &r);
    let closes = sim.block_on(async {
        let mut fast = client(&sim, "/ws").await.expect("fast");
        let _slow = client(&sim, "/ws").await.expect("slow");
        sim.sleep(Duration::from_millis(1)).await;
        let chunk = "x".repeat(4096);
        let mut delivered_to = Vec::new();
        for i in 0..100 {
            delivered_to.push(r.broadcast().send(format!("{i:03}{chunk}")));
            // The fast reader keeps up, message by message.
            let got = text(&mut fast).await;
            assert_eq!(&got[..3], format!("{i:03}"));
        }
        // Closing (1013) since its queue overflowed; gone once the close and write
        // timeouts (5 s + 10 s) have given up on the close frame it never reads.
        sim.sleep(Duration::from_secs(16)).await;
        assert_eq!(r.connection_count(), 1, "the slow one is gone");
        delivered_to
    });
    // The slow connection took messages until its 64 KiB bound, then was dropped.
    assert!(closes.iter().take(10).all(|&n| n == 2), "{closes:?}");
    assert!(closes.iter().rev().take(10).all(|&n| n == 1), "{closes:?}");
}

#[test]
fn the_heartbeat_drops_a_silent_peer() {
    let sim = Sim::new();
    let closed = Arc::new(Mutex::new(None));
    let record = closed.clone();
    let r = Router::builder()
        .route(
            "/ws",
            Route::new()
                .heartbeat(Duration::from_secs(30), Duration::from_secs(10))
                .on_close(move |_, code, _| *record.lock().expect("lock") = Some(code)),
        )
        .build();
    serve(&sim, &r);
    sim.block_on(async {
        let mut raw = sim.connect("127.0.0.1:3000".into()).await.expect("connect");
        raw.write_all(format!("GET /ws HTTP/1.1\r\n{UPGRADE}").as_bytes())
            .await
            .expect("write");
        let wire = raw.read_to_end().await.expect("EOF");
        assert!(wire.ends_with(b"\x89\x00"), "one ping, then the end");
    });
    assert_eq!(sim.elapsed(), Duration::from_secs(40));
    assert_eq!(*closed.lock().expect("lock"), Some(CloseCode::ABNORMAL));
}

#[test]
fn the_router_serves_beside_engine_io_on_one_port() {
    let sim = Sim::new();
    let r = Router::builder()
        .route(
            "/ws/echo",
            Route::new().on_message(|conn, m| {
                let _ = conn.send(m);
            }),
        )
        .fallback(|_, request| HttpResponse::new(200).body(format!("page {}", request.head.path())))
        .build();
    let options = eio::ServerOptions::from(eio::Config::default()).router(r.clone());
    let server = eio::server(&sim, options).expect("server");
    let listener = sim.listen("127.0.0.1:3000").expect("listen");
    let rt = sim.clone();
    sim.spawn(async move {
        let _ = eio::serve(&rt, server, listener).await;
    });
    sim.block_on(async {
        let mut ws = client(&sim, "/ws/echo").await.expect("upgrade");
        ws.send("ping").await.expect("send");
        assert_eq!(text(&mut ws).await, "ping");
        let (status, body) = http_exchange(&sim, "GET /about HTTP/1.1\r\nHost: h\r\n\r\n").await;
        assert_eq!((status, body.as_str()), (200, "page /about"));
        let (status, body) = http_exchange(
            &sim,
            "GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: h\r\n\r\n",
        )
        .await;
        assert_eq!(status, 200);
        assert!(body.starts_with("0{\"sid\":"), "{body}");
    });
    assert_eq!(r.connection_count(), 1);
}

#[test]
fn typed_messages_get_a_clear_error_and_a_panicking_handler_closes_only_its_connection() {
    let sim = Sim::new();
    let r = Router::builder()
        .route(
            "/game",
            Route::new().on_json(|conn, [x]: [u32; 1]| {
                assert!(x < 100, "a handler's bug");
                let _ = conn.send_json(&serde_json::json!({ "moved": x }));
            }),
        )
        .fallback(|_, _| panic!("a fallback's bug"))
        .build();
    serve(&sim, &r);
    sim.block_on(async {
        let mut ws = client(&sim, "/game").await.expect("upgrade");
        let mut other = client(&sim, "/game").await.expect("upgrade");
        ws.send("{nope").await.expect("send");
        assert_eq!(
            text(&mut ws).await,
            r#"{"type":"error","error":"invalid JSON"}"#
        );
        ws.send(r#"{"y":1}"#).await.expect("send");
        let error = text(&mut ws).await;
        assert!(
            error.starts_with(r#"{"type":"error","error":"invalid message: invalid type: map"#),
            "{error}"
        );
        ws.send("[7]").await.expect("send");
        assert_eq!(text(&mut ws).await, r#"{"moved":7}"#);
        ws.send("[700]").await.expect("send");
        assert!(ws.recv().await.is_none(), "closed");
        let closed = ws.close_info().expect("closed");
        assert_eq!(
            (closed.code, closed.reason.as_str()),
            (CloseCode::INTERNAL_ERROR, "internal error")
        );
        other
            .send("[8]")
            .await
            .expect("the other connection is served");
        assert_eq!(text(&mut other).await, r#"{"moved":8}"#);
        let (status, _) = http_exchange(&sim, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n").await;
        assert_eq!(status, 500);
    });
}

#[test]
fn broadcasts_written_by_the_publisher_keep_every_connections_order() {
    // Small pipes: a broadcast written straight into a connection's socket often fits
    // only in part, and what follows must queue behind the rest.
    let sim = Sim::new();
    sim.set_capacity(64);
    let ids = Arc::new(Mutex::new(Vec::new()));
    let seen = ids.clone();
    let r = Router::builder()
        .route(
            "/ws",
            Route::new().on_connect(move |conn| seen.lock().expect("lock").push(conn.id().clone())),
        )
        .build();
    serve(&sim, &r);
    const N: usize = 300;
    let got: Vec<Arc<Mutex<Vec<usize>>>> = (0..3).map(|_| Arc::default()).collect();
    sim.block_on(async {
        for got in &got {
            let mut ws = client(&sim, "/ws").await.expect("connect");
            let got = got.clone();
            sim.spawn(async move {
                while let Some(Ok(Message::Text(t))) = ws.recv().await {
                    got.lock().expect("lock").push(t.parse().expect("a number"));
                }
            });
        }
        sim.sleep(Duration::from_millis(1)).await;
        let first = ids.lock().expect("lock")[0].clone();
        for i in 0..N {
            // Interleaved: messages to one connection (queued to it) and broadcasts
            // (written by this task into every connection with nothing waiting).
            if i % 2 == 0 {
                r.send(first.as_str(), i.to_string()).expect("open");
            } else {
                assert_eq!(r.broadcast().send(i.to_string()), 3);
            }
            if i % 5 == 0 {
                // The readers drain their pipes, the connections' tasks run.
                sim.sleep(Duration::ZERO).await;
            }
        }
        sim.sleep(Duration::from_secs(1)).await;
    });
    let first = ids.lock().expect("lock")[0].clone();
    for (k, got) in got.iter().enumerate() {
        let got = got.lock().expect("lock").clone();
        // The clients connected in order, so client 0 is `first`.
        let want: Vec<usize> = (0..N).filter(|i| k == 0 || i % 2 == 1).collect();
        assert_eq!(got, want, "client {k} ({first})");
    }
}
