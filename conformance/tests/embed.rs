//! The tower layer in real servers: axum on tokio (the `axum-app` router: REST routes
//! beside Socket.IO on one port, an HTTP handler emitting to a room), and plain hyper
//! on smol (through smol-hyper), each with our Socket.IO client over polling, the
//! upgrade, and WebSocket alone.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use wirestate_async::sio::{ClientSocket, IoOptions};
use wirestate_conformance::sio_app::{axum_router, config, setup};
use wirestate_engine::sio::ClientConfig;

const SECOND: Duration = Duration::from_secs(5);

/// Client options: every transport, or WebSocket alone.
fn options(websocket_only: bool) -> IoOptions {
    let mut config = ClientConfig::default();
    if websocket_only {
        config.eio = config.eio.transports(false, true);
    }
    IoOptions::default().config(config)
}

/// Collects the `room-message`s a socket receives.
fn collect(socket: &ClientSocket) -> Arc<Mutex<Vec<Value>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    socket.on("room-message", move |payload, _ack| {
        sink.lock().expect("lock").extend(payload.into_parts().0);
    });
    got
}

/// One HTTP/1.1 request on a fresh connection: status and body.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let (status, _, body) = http_with(addr, method, path, "", body).await;
    (status, body)
}

/// One HTTP/1.1 request with extra header lines (each ending in CRLF): status, head
/// (lowercased) and body.
async fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    s.read_to_string(&mut response).await.expect("read");
    let status = response
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[test]
fn axum_serves_rest_routes_beside_socket_io_and_a_handler_emits_to_a_room() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let io = wirestate_tokio::sio::server(config(false)).expect("server");
        setup(&io);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum_router(io).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let url = format!("http://{addr}");
        for websocket_only in [false, true] {
            let socket = wirestate_tokio::sio::io(&url, options(websocket_only)).expect("url");
            let got = collect(&socket);
            socket.wait_connected().await.expect("connected");
            let joined = socket
                .timeout(SECOND)
                .emit_with_ack("join", &"news")
                .await
                .expect("ack");
            assert_eq!(*joined.values(), [json!("joined")]);
            assert_eq!(http(addr, "GET", "/health", "").await, (200, "ok".into()));
            let (status, _) = http(addr, "POST", "/rooms/news/emit", "from REST").await;
            assert_eq!(status, 204);
            tokio::time::timeout(SECOND, async {
                while got.lock().expect("lock").is_empty() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("the room message arrives");
            assert_eq!(*got.lock().expect("lock"), [json!("from REST")]);
            socket.disconnect();
        }
        // Other paths are the application's: axum's 404.
        assert_eq!(http(addr, "GET", "/nowhere", "").await.0, 404);
    });
}

#[test]
fn plain_hyper_on_smol_serves_socket_io_through_the_layer() {
    use tower_service::Service;
    let ex = Arc::new(smol::Executor::new());
    smol::block_on(ex.run(async {
        let io = wirestate_smol::sio::server(config(false)).expect("server");
        setup(&io);
        let service = tower_layer::Layer::layer(
            &wirestate_smol::sio::layer(&io),
            wirestate_smol::tower::NotFound,
        );
        let listener = smol::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        ex.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                let serve = hyper::service::service_fn(move |request| {
                    let mut service = service.clone();
                    service.call(request)
                });
                smol::spawn(async move {
                    let io = smol_hyper::rt::FuturesIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, serve)
                        .with_upgrades()
                        .await;
                })
                .detach();
            }
        })
        .detach();
        let url = format!("http://{addr}");
        for websocket_only in [false, true] {
            let socket = wirestate_smol::sio::io(&url, options(websocket_only)).expect("url");
            socket.wait_connected().await.expect("connected");
            let echoed = socket
                .timeout(SECOND)
                .emit_with_ack("message-with-ack", &json!({"over": "hyper"}))
                .await
                .expect("ack");
            assert_eq!(*echoed.values(), [json!({"over": "hyper"})]);
            socket.disconnect();
        }
    }));
}

#[test]
fn the_service_mounts_at_a_path_and_composes_with_tower_http_cors() {
    use axum::routing::get;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let io = wirestate_tokio::sio::server(config(false)).expect("server");
        setup(&io);
        // `route_service` at the path, behind tower-http's CORS layer.
        let service = tower_layer::Layer::layer(
            &wirestate_tokio::sio::layer(&io),
            wirestate_tokio::tower::NotFound,
        );
        let app = axum::Router::new()
            .route("/health", get(|| async { "ok" }))
            .route_service("/socket.io/", service)
            .layer(tower_http::cors::CorsLayer::very_permissive());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let origin = "Origin: http://app.example\r\n";
        let preflight = "Access-Control-Request-Method: POST\r\n";
        let target = "/socket.io/?EIO=4&transport=polling";
        let (status, head, _) =
            http_with(addr, "OPTIONS", target, &format!("{origin}{preflight}"), "").await;
        assert_eq!(status, 200, "{head}");
        assert!(
            head.contains("access-control-allow-origin: http://app.example"),
            "{head}"
        );
        let (status, head, body) = http_with(addr, "GET", target, origin, "").await;
        assert_eq!(status, 200, "{head}");
        assert!(
            head.contains("access-control-allow-origin: http://app.example"),
            "{head}"
        );
        assert!(body.starts_with("0{\"sid\":"), "{body}");
        assert_eq!(http(addr, "GET", "/health", "").await, (200, "ok".into()));
    });
}

/// The next text message on `ws`, as JSON if it is.
async fn next(ws: &mut wirestate_tokio::ClientWebSocket) -> Value {
    use wirestate_engine::ws::Message;
    match tokio::time::timeout(SECOND, ws.recv()).await {
        Ok(Some(Ok(Message::Text(t)))) => {
            serde_json::from_str::<Value>(&t).unwrap_or(Value::String(t.to_string()))
        }
        other => panic!("expected a text message, got {other:?}"),
    }
}

#[test]
fn axum_serves_the_router_of_plain_websocket_routes_through_its_layer() {
    use axum::routing::{get, post};
    use wirestate_async::router::Router as WsRouter;
    use wirestate_engine::ws::{CloseCode, Config, Message};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let rooms = wirestate_conformance::ws_rooms::router();
        let to_conn = rooms.clone();
        // An axum handler reaches a connection by id.
        let send = move |axum::extract::Path(id): axum::extract::Path<String>, body: String| {
            let router: WsRouter = to_conn.clone();
            async move {
                match router.send(&id, Message::text(body)) {
                    Ok(()) => axum::http::StatusCode::OK,
                    Err(_) => axum::http::StatusCode::NOT_FOUND,
                }
            }
        };
        // A second router, reading what the application's middleware attached.
        #[derive(Clone)]
        struct Tenant(&'static str);
        let who = WsRouter::builder()
            .route(
                "/ws/who",
                wirestate_async::router::Route::new().on_connect(|conn| {
                    let tenant = wirestate_tokio::tower::router_extensions(conn.handshake())
                        .and_then(|e| e.get::<Tenant>())
                        .map_or("none", |t| t.0);
                    let _ = conn.send(tenant);
                }),
            )
            .build();
        let app = axum::Router::new()
            .route("/health", get(|| async { "ok" }))
            .route("/send/{id}", post(send))
            .layer(wirestate_tokio::router::layer(&rooms))
            .layer(wirestate_tokio::router::layer(&who))
            .layer(axum::Extension(Tenant("acme")));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = Arc::new(Config::default());
        let connect = |path: &str| {
            let url = format!("ws://{addr}{path}");
            let config = config.clone();
            async move {
                wirestate_tokio::connect(&url, config)
                    .await
                    .expect("upgrade")
            }
        };
        let mut a = connect("/ws/chat").await;
        let mut b = connect("/ws/chat").await;
        let a_id = next(&mut a).await["id"].as_str().expect("id").to_owned();
        let b_id = next(&mut b).await["id"].as_str().expect("id").to_owned();
        a.send(r#"{"type":"message","text":"hi"}"#)
            .await
            .expect("send");
        assert_eq!(
            next(&mut b).await,
            json!({"type": "chat-message", "from": a_id, "text": "hi"})
        );
        assert_eq!(
            http(addr, "POST", &format!("/send/{b_id}"), "from axum")
                .await
                .0,
            200
        );
        assert_eq!(next(&mut b).await, json!("from axum"));
        let mut private = connect("/ws/private?token=nope").await;
        assert!(private.recv().await.is_none());
        let closed = private.close_info().expect("closed");
        assert_eq!(
            (closed.code, closed.reason.as_str()),
            (CloseCode(4002), "Invalid token")
        );
        assert_eq!(http(addr, "GET", "/health", "").await, (200, "ok".into()));
        let mut who_ws = connect("/ws/who").await;
        assert_eq!(next(&mut who_ws).await, json!("acme"));
        // A plain GET of a route asks for an upgrade; other paths are axum's.
        assert_eq!(http(addr, "GET", "/ws/chat", "").await.0, 426);
        assert_eq!(http(addr, "GET", "/nowhere", "").await.0, 404);
        b.close(CloseCode::NORMAL, "").await.expect("close");
        assert_eq!(next(&mut a).await, json!({"type": "user-left", "id": b_id}));
    });
}
