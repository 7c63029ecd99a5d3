#![no_main]
//! The Socket.IO conventions fed arbitrary events from up to three in-memory clients
//! (the handler test harness), with clock jumps and clients that leave: a namespace
//! with the auth challenge, the room policy, a namespace hook, a schema-validated
//! handler, a queued handler with tight limits and a handler that panics. Ops are
//! `[op, len, bytes[len]]`; an event's payload is its bytes as JSON when they parse,
//! as a string otherwise. Nothing may panic; every event that asks for an ack and
//! has a handler (or meets a guard) is answered; once every client has gone and time
//! has passed, no socket, user or job is left.

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use wirestate_async::mem::Sim;
use wirestate_async::sio::testing::{TestClient, TestServer};
use wirestate_async::sio::{
    AppError, AuthChallenge, Authenticated, Config, Controller, Handler, JobLimits, Schema,
};

const EVENTS: [&str; 8] = [
    "authenticate",
    "join",
    "leave",
    "chat",
    "job",
    "boom",
    "free",
    "x",
];

fn server(sim: &Sim) -> TestServer<Sim> {
    let s = TestServer::new(sim, Config::default());
    let nsp = s.io().of("/");
    nsp.auth_challenge(
        AuthChallenge::new(|_socket, payload: Value| async move {
            match payload.get("name").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n.len() <= 8 => {
                    Ok(Authenticated::new(json!(n)).user(n))
                }
                _ => Err(AppError::new("BAD", "bad name")),
            }
        })
        .timeout(Duration::from_secs(2))
        .default_rooms(["lobby"])
        .max_rooms_per_request(4)
        .room_policy(|_s, room| room.len() < 4),
    );
    nsp.hook(|_socket, event| async move {
        match event.name() {
            "x" => Err(AppError::new("NO_X", "no x")),
            _ => Ok(()),
        }
    });
    let schema = Schema::new(&json!({
        "type": "object",
        "properties": {
            "room": {"type": "string", "maxLength": 8},
            "text": {"type": "string", "minLength": 1, "maxLength": 64},
            "n": {"type": ["integer", "null"], "minimum": 0, "multipleOf": 2},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "uniqueItems": true, "maxItems": 3}
        },
        "required": ["room", "text"],
        "additionalProperties": false
    }))
    .expect("schema");
    nsp.controller(
        Controller::new()
            .handle(
                "chat",
                Handler::new(|socket, msg| async move {
                    let body: Value = msg.data()?;
                    let room = body["room"].as_str().unwrap_or_default().to_owned();
                    socket.io().of("/").to(room).emit("message", &body)?;
                    msg.ack_ok(&true)?;
                    Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
                })
                .validate(schema),
            )
            .handle(
                "job",
                Handler::queued(|socket, msg| {
                    async move {
                        let n = msg.data::<Value>()?["n"].as_u64().unwrap_or(0) % 50;
                        // Through the socket: a handler that held the server would
                        // make a cycle (server → handler → server).
                        socket.io().sleep(Duration::from_millis(100 * n)).await;
                        match n % 7 {
                            0 => Err::<Value, Box<dyn std::error::Error + Send + Sync>>(
                                "seven".into(),
                            ),
                            _ => Ok(json!(n)),
                        }
                    }
                })
                .job_limits(JobLimits {
                    per_socket: 2,
                    timeout: Duration::from_secs(1),
                }),
            )
            .on("boom", |_s, _m| async move {
                if true {
                    panic!("boom");
                }
            }),
    );
    s
}

fuzz_target!(|data: &[u8]| {
    let sim = Sim::new();
    let s = server(&sim);
    sim.block_on(async {
        let mut clients: Vec<Option<TestClient>> = Vec::new();
        let mut rest = data;
        while let [op, len, tail @ ..] = rest {
            let len = (*len as usize).min(tail.len());
            let (bytes, next) = tail.split_at(len);
            rest = next;
            let who = (*op as usize >> 3) % 3;
            match op % 4 {
                0 if clients.len() < 3 => {
                    clients.push(s.connect("/", json!({})).await.ok());
                }
                1 => {
                    let Some(Some(c)) = clients.get(who) else {
                        continue;
                    };
                    let event = match bytes.first() {
                        Some(&b) if (b as usize) < EVENTS.len() * 16 => {
                            EVENTS[b as usize % EVENTS.len()].to_owned()
                        }
                        _ => String::from_utf8_lossy(bytes).into_owned(),
                    };
                    let payload: Value = serde_json::from_slice(bytes.get(1..).unwrap_or_default())
                        .unwrap_or_else(|_| {
                            Value::from(String::from_utf8_lossy(bytes).into_owned())
                        });
                    let connected = c.connected();
                    let out = c.emit(&event, payload).await;
                    let answered = ["authenticate", "join", "leave", "chat", "job", "boom", "x"];
                    if connected && c.connected() && answered.contains(&event.as_str()) {
                        assert!(out.ack.is_some(), "{event} was not answered");
                    }
                }
                2 => {
                    s.sleep(Duration::from_millis(
                        u64::from(bytes.first().copied().unwrap_or(0)) * 20,
                    ))
                    .await
                }
                3 => {
                    if let Some(slot) = clients.get_mut(who) {
                        if let Some(c) = slot.take() {
                            c.disconnect().await;
                        }
                    }
                }
                _ => {}
            }
        }
        for c in clients.into_iter().flatten() {
            c.disconnect().await;
        }
        s.sleep(Duration::from_secs(10)).await;
    });
    assert_eq!(s.io().socket_count(), 0, "no socket left");
    assert!(s.io().users_online().is_empty(), "no user left");
    sim.shutdown();
});
