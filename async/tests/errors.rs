//! The Socket.IO error policy on the in-memory runtime: what a client reads when a
//! handler fails, by default, with `debug_errors`, and through the global error hook.

use std::sync::Arc;

use serde_json::{json, Value};
use wirestate_async::mem::{duplex, Sim};
use wirestate_async::sio::{self, AppError, HandlerError, ServerOptions};
use wirestate_async::Runtime;
use wirestate_engine::ws::{ClientRequest, Config, Message};

/// Serves `io` on one in-memory connection and returns the acks of `events` (each
/// sent with an ack id), as JSON.
fn acks(sim: &Sim, io: &sio::SocketIo, events: &[&str]) -> Vec<Value> {
    let (client_end, server_end) = duplex(1 << 16);
    let (rt, serving) = (sim.clone(), io.clone());
    sim.spawn(async move {
        let _ = sio::serve_connection(&rt, &serving, server_end, None).await;
    });
    sim.block_on(async {
        let request =
            ClientRequest::from_url("ws://h/socket.io/?EIO=4&transport=websocket").expect("url");
        let mut ws =
            wirestate_async::client(sim, client_end, &request, Arc::new(Config::default()))
                .await
                .expect("upgrade");
        match ws.recv().await {
            Some(Ok(Message::Text(t))) => assert!(t.starts_with("0{"), "{t}"),
            other => panic!("expected the open packet, got {other:?}"),
        }
        ws.send("40").await.expect("send");
        match ws.recv().await {
            Some(Ok(Message::Text(t))) => assert!(t.starts_with("40{"), "{t}"),
            other => panic!("expected the CONNECT answer, got {other:?}"),
        }
        let mut out = Vec::new();
        for (i, event) in events.iter().enumerate() {
            ws.send(format!("42{i}[\"{event}\",{{\"n\":1}}]").as_str())
                .await
                .expect("send");
            let prefix = format!("43{i}[");
            loop {
                let t = match ws.recv().await {
                    Some(Ok(Message::Text(t))) => t,
                    other => panic!("closed waiting for the ack of {event}: {other:?}"),
                };
                // The CONNECT answer (`40{...}`) comes first.
                if let Some(body) = t.strip_prefix(prefix.as_str()) {
                    let args: Vec<Value> = serde_json::from_str(&format!("[{body}")).expect("JSON");
                    out.push(args[0].clone());
                    break;
                }
            }
        }
        out
    })
}

fn handlers(io: &sio::SocketIo) {
    io.of("/").on_connection(|socket| async move {
        socket.on("ok", |_s, msg| async move {
            msg.ack_ok(&json!({"took": msg.data::<Value>()?}))
        });
        socket.on("app", |_s, _m| async move {
            Err::<(), _>(AppError::new("NOT_IN_ROOM", "join it first").with("room", "r1"))
        });
        socket.on("io", |_s, _m| async move {
            Err::<(), _>(std::io::Error::other("disk at /var/secret is full"))
        });
        socket.on("boom", |_s, _m| async move {
            if true {
                panic!("index out of range at secret.rs:12");
            }
        });
        socket.on("typed", |_s, msg| async move {
            let n: u32 = msg.data::<Value>()?["n"].as_u64().unwrap_or(0) as u32;
            msg.ack_error(&AppError::new("TOO_SMALL", format!("{n} is too small")))?;
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        });
    });
}

#[test]
fn internal_errors_and_panics_do_not_leak_by_default() {
    let sim = Sim::new();
    let io = sio::server(&sim, sio::Config::default()).expect("server");
    handlers(&io);
    let internal = json!({"status": "error", "error": {"code": "INTERNAL_SERVER_ERROR", "message": "An internal server error has occurred."}});
    assert_eq!(
        acks(&sim, &io, &["ok", "app", "io", "boom", "typed"]),
        [
            json!({"status": "ok", "data": {"took": {"n": 1}}}),
            json!({"status": "error", "error": {"code": "NOT_IN_ROOM", "message": "join it first", "room": "r1"}}),
            internal.clone(),
            internal,
            json!({"status": "error", "error": {"code": "TOO_SMALL", "message": "1 is too small"}}),
        ]
    );
}

#[test]
fn debug_errors_show_the_error_and_the_hook_renders_its_own() {
    let sim = Sim::new();
    let io = sio::server(
        &sim,
        ServerOptions::from(sio::Config::default()).debug_errors(true),
    )
    .expect("server");
    handlers(&io);
    assert_eq!(
        acks(&sim, &io, &["io", "boom"]),
        [
            json!({"status": "error", "error": {"code": "INTERNAL_SERVER_ERROR", "name": "Error", "message": "disk at /var/secret is full"}}),
            json!({"status": "error", "error": {"code": "INTERNAL_SERVER_ERROR", "name": "panic", "message": "index out of range at secret.rs:12"}}),
        ]
    );
    let sim = Sim::new();
    let io = sio::server(&sim, sio::Config::default()).expect("server");
    handlers(&io);
    io.on_error(|socket, event, error| match (event, error) {
        ("io", HandlerError::Internal { .. }) => {
            Some(json!({"code": "STORAGE", "sid": socket.id().to_string().len()}))
        }
        ("app", _) => panic!("a hook's own bug"),
        _ => None,
    });
    let got = acks(&sim, &io, &["io", "app", "boom"]);
    assert_eq!(
        got[0],
        json!({"status": "error", "error": {"code": "STORAGE", "sid": 20}})
    );
    assert_eq!(
        got[1]["error"]["code"],
        json!("NOT_IN_ROOM"),
        "a panicking hook: the default"
    );
    assert_eq!(got[2]["error"]["code"], json!("INTERNAL_SERVER_ERROR"));
}
