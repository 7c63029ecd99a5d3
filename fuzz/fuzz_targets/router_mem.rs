#![no_main]
//! The router of plain WebSocket applications fed arbitrary client bytes on up to
//! three in-memory connections, with clock jumps, small pipe buffers, clients that
//! stop reading and connections that end; its handlers join rooms, broadcast and send
//! by id as a chat does. Ops are `[op, len, bytes[len]]`; the first byte sets the pipe
//! size and which clients never read. Route patterns are matched against the paths the
//! clients send. Nothing may panic, and once every client has gone and time has
//! passed, no connection is left in the registry or in a room.

use std::time::Duration;

use libfuzzer_sys::fuzz_target;

#[path = "../common/clients.rs"]
mod clients;
use wirestate_async::mem::Sim;
use wirestate_async::router::{self, Auth, Flow, HttpResponse, Route, Router};
use wirestate_engine::ws::{Config, DeflateConfig, Message};

fn router() -> Router {
    let config = Config::default()
        .max_message_size(4096)
        .handshake_timeout(Duration::from_millis(500))
        .close_timeout(Duration::from_millis(200))
        .write_timeout(Duration::from_millis(300))
        .deflate(DeflateConfig::default());
    Router::builder()
        .route(
            "/ws/:room",
            Route::new()
                .config(config.clone())
                .compression(64)
                .heartbeat(Duration::from_millis(400), Duration::from_millis(300))
                .max_queued_bytes(8192)
                .on_connect(|conn| {
                    let room = conn.param("room").unwrap_or_default().to_owned();
                    let _ = conn.join(&room);
                    let _ = conn.send(conn.id().to_string());
                })
                .middleware(|conn, m| match m.json::<serde_json::Value>() {
                    Ok(_) => Flow::Next(m),
                    Err(_) => {
                        let _ = conn.send("invalid JSON");
                        Flow::Stop
                    }
                })
                .on_message(|conn, m| {
                    let text = m.as_text().unwrap_or_default().to_owned();
                    match text.as_bytes().first() {
                        Some(b'j') => {
                            let _ = conn.join(&text);
                        }
                        Some(b'l') => {
                            conn.leave(&text);
                        }
                        Some(b'c') => {
                            let _ = conn.close(wirestate_engine::ws::CloseCode(4000), &text);
                        }
                        _ => {
                            let rooms = conn.rooms();
                            let mut to = conn.broadcast().include_self(text.len() % 2 == 0);
                            for r in rooms {
                                to = to.to(r);
                            }
                            to.send(Message::text(text));
                        }
                    }
                })
                .on_close(|conn, _, _| {
                    conn.broadcast().send("left");
                }),
        )
        .route(
            "/p/*rest",
            Route::new().config(config).auth(|hs| match hs.query_param("t").as_deref() {
                Some("ok") => Auth::accept_with(hs.param("rest").unwrap_or_default().to_owned()),
                Some("") => Auth::refuse(401),
                Some(t) => Auth::close(4000 + (t.len() as u16 % 1000), t.to_owned()),
                None => Auth::close(1000, ""),
            }),
        )
        .fallback(|router, request| {
            let id = request.head.path().trim_start_matches('/');
            match router.send(id, Message::binary(request.body.clone())) {
                Ok(()) => HttpResponse::new(200),
                Err(_) => HttpResponse::new(404),
            }
        })
        .max_rooms_per_connection(3)
        .build_seeded([7; 32])
}

fuzz_target!(|data: &[u8]| {
    let Some((&setup, rest)) = data.split_first() else {
        return;
    };
    let sim = Sim::new();
    let router = router();
    let (rt, served) = (sim.clone(), router.clone());
    clients::play(&sim, setup, rest, Duration::from_secs(60), move |server| {
        let (rt, r) = (rt.clone(), served.clone());
        async move {
            let _ = router::serve_connection(&rt, &r, server, None).await;
        }
    });
    assert_eq!(router.connection_count(), 0, "no connection left");
    for room in ["a", "b", "j", "ja", "jb"] {
        assert!(router.room_members(room).is_empty(), "no member left in {room}");
    }
    sim.shutdown();
});
