//! The demo's protocol (`wirestate_conformance::demo`) through the handler test
//! harness: on tokio with a paused clock (the 10 s timeout and 3 s jobs take no real
//! time), and on smol with real time.

use std::time::Duration;

use serde_json::{json, Value};
use wirestate_async::sio::testing::{TestClient, TestServer};
use wirestate_async::sio::Config;
use wirestate_conformance::demo::{allowed_room, setup, valid_name, NAMESPACE};

fn ok(data: Value) -> Value {
    json!({"status": "ok", "data": data})
}

fn code(ack: &Option<Value>) -> &str {
    ack.as_ref()
        .and_then(|a| a["error"]["code"].as_str())
        .unwrap_or("")
}

async fn login<R: wirestate_async::Runtime>(s: &TestServer<R>, name: &str) -> TestClient {
    let c = s.connect(NAMESPACE, json!({})).await.expect("connect");
    let out = c.emit("authenticate", json!({ "name": name })).await;
    let me = json!({"id": c.id().as_str(), "name": name});
    assert_eq!(out.ack, Some(ok(me.clone())));
    // A user's first socket is announced to every socket of /chat, its own included.
    let (presence, rest): (Vec<_>, Vec<_>) =
        out.emitted.into_iter().partition(|(n, _)| n == "presence");
    assert_eq!(rest, [("authenticated".to_owned(), me)]);
    for (_, p) in presence {
        assert_eq!((&p["user"], &p["online"]), (&json!(name), &json!(true)));
        assert!(p["users"]
            .as_array()
            .is_some_and(|u| u.contains(&json!(name))));
    }
    c
}

/// `job {n}`: the queued ack at once, then `ws:result` with the same request id.
async fn job(c: &TestClient, n: u64) {
    let ack = c.emit("job", json!({ "n": n })).await.ack.expect("ack");
    assert_eq!(
        (&ack["queued"], &ack["eventName"]),
        (&json!(true), &json!("job"))
    );
    let result = c
        .next_event("ws:result", Duration::from_secs(5))
        .await
        .expect("result");
    assert_eq!(
        result,
        json!({"requestId": ack["requestId"], "result": {"n": n}})
    );
}

#[test]
fn names_and_rooms() {
    assert!(valid_name("ann_1-x") && valid_name(&"a".repeat(32)));
    assert!(!valid_name("") && !valid_name("Ann") && !valid_name(&"a".repeat(33)));
    assert!(!valid_name("a b") && !valid_name("ä"));
    assert!(
        allowed_room("lobby")
            && allowed_room("room-a-1")
            && allowed_room(&format!("room-{}", "a".repeat(32)))
    );
    assert!(!allowed_room("room-") && !allowed_room("room-A") && !allowed_room("user:ann"));
    assert!(!allowed_room(&format!("room-{}", "a".repeat(33))) && !allowed_room("admins"));
}

#[tokio::test(start_paused = true)]
async fn the_demo_protocol_on_tokio() {
    let s = wirestate_tokio::sio::testing::server(Config::default());
    setup(s.io());

    // Before authenticating: every other event is refused; a bad name is refused.
    let c = s.connect(NAMESPACE, json!({})).await.expect("connect");
    let out = c.emit("chat", json!({"room": "lobby", "text": "hi"})).await;
    assert_eq!(code(&out.ack), "UNAUTHENTICATED");
    assert!(out.ack.as_ref().expect("ack")["error"]["message"].is_string());
    let out = c.emit("authenticate", json!({"name": "Not Valid"})).await;
    assert_eq!(out.emitted.len(), 1);
    assert_eq!(out.emitted[0].0, "unauthenticated");
    assert!(out.emitted[0].1["message"].is_string());
    drop(c);

    let ann = login(&s, "ann").await;
    let ann2 = login(&s, "ann").await;
    let bob = login(&s, "bob").await;
    // who, and presence: ann's second socket is no news; bob's arrival is.
    let presence = ann
        .next_event("presence", Duration::from_secs(1))
        .await
        .expect("bob's presence");
    assert_eq!(
        presence,
        json!({"user": "bob", "online": true, "users": ["ann", "bob"]})
    );
    let out = ann2.emit("who", json!({})).await;
    assert_eq!(out.ack, Some(ok(json!({"users": ["ann", "bob"]}))));
    let mut rooms: Vec<String> = ann
        .socket()
        .expect("socket")
        .rooms()
        .iter()
        .map(|r| r.to_string())
        .collect();
    let mut want = vec![ann.id().to_string(), "lobby".into(), "user:ann".into()];
    rooms.sort();
    want.sort();
    assert_eq!(rooms, want);

    // join / leave with the room policy.
    let out = ann
        .emit("join", json!({"rooms": ["room-rust", "admins"]}))
        .await;
    assert_eq!(
        out.ack,
        Some(ok(json!({"joined": ["room-rust"], "denied": ["admins"]})))
    );
    let out = bob.emit("join", json!({"rooms": ["room-rust"]})).await;
    assert_eq!(
        out.ack,
        Some(ok(json!({"joined": ["room-rust"], "denied": []})))
    );

    // chat: validated, to members only, the sender included.
    let out = ann
        .emit("chat", json!({"room": "room-rust", "text": "hi"}))
        .await;
    let data = out.ack.as_ref().expect("ack")["data"].clone();
    assert_eq!(out.ack.as_ref().expect("ack")["status"], "ok");
    let message = json!({"id": data["id"], "room": "room-rust", "from": "ann", "text": "hi", "at": data["at"]});
    assert_eq!(out.emitted, [("message".to_owned(), message.clone())]);
    assert_eq!(bob.take_events().await, [("message".to_owned(), message)]);
    assert_eq!(
        ann2.take_events().await,
        [],
        "ann's other socket is not in the room"
    );
    let out = ann
        .emit("chat", json!({"room": "room-rust", "text": "", "x": 1}))
        .await;
    assert_eq!(code(&out.ack), "VALIDATION_PAYLOAD_ERROR");
    assert_eq!(
        out.ack.as_ref().expect("ack")["error"]["payload"][0]["instancePath"],
        "/text"
    );
    let out = ann2
        .emit("chat", json!({"room": "room-rust", "text": "hi"}))
        .await;
    assert_eq!(code(&out.ack), "NOT_IN_ROOM");
    let out = bob.emit("leave", json!({"rooms": ["room-rust"]})).await;
    assert_eq!(
        out.ack,
        Some(ok(json!({"left": ["room-rust"], "denied": []})))
    );

    // dm: every socket of the user.
    let out = bob.emit("dm", json!({"to": "ann", "text": "psst"})).await;
    assert_eq!(out.ack, Some(ok(json!({"delivered": 2}))));
    for c in [&ann, &ann2] {
        let events = c.take_events().await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].0, "dm");
        assert_eq!(events[0].1["from"], "bob");
        assert_eq!(events[0].1["text"], "psst");
    }
    let out = bob
        .emit("dm", json!({"to": "nobody", "text": "psst"}))
        .await;
    assert_eq!(out.ack, Some(ok(json!({"delivered": 0}))));

    // job: queued, then the result or the error.
    let start = tokio::time::Instant::now();
    job(&ann, 3).await;
    assert!(start.elapsed() >= Duration::from_millis(300));
    let ack = ann.emit("job", json!({"n": 13})).await.ack.expect("ack");
    let error = ann
        .next_event("ws:error", Duration::from_secs(5))
        .await
        .expect("error");
    assert_eq!(error["requestId"], ack["requestId"]);
    assert_eq!(error["error"]["code"], "JOB_FAILED");
    assert!(error["error"]["message"].is_string());
    assert_eq!(
        code(&ann.emit("job", json!({"n": 31})).await.ack),
        "VALIDATION_PAYLOAD_ERROR"
    );

    // boom: the generic answer.
    assert_eq!(
        ann.emit("boom", json!(null)).await.ack,
        Some(
            json!({"status": "error", "error": {"code": "INTERNAL_SERVER_ERROR", "message": "An internal server error has occurred."}})
        )
    );
    assert!(ann.connected());

    // A socket that never authenticates is disconnected after 10 s.
    let idle = s.connect(NAMESPACE, json!({})).await.expect("connect");
    let start = tokio::time::Instant::now();
    let got = idle
        .next_event("unauthenticated", Duration::from_secs(15))
        .await;
    assert!(got.is_some());
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
        "{waited:?}"
    );
    s.sleep(Duration::from_millis(10)).await;
    assert!(!idle.connected());
    assert!(
        ann.connected() && bob.connected(),
        "authenticated sockets stay"
    );
}

#[test]
fn the_demo_protocol_on_smol() {
    smol::block_on(async {
        let s = wirestate_smol::sio::testing::server(Config::default());
        setup(s.io());
        let ann = login(&s, "ann").await;
        job(&ann, 1).await;
        assert_eq!(
            code(&ann.emit("boom", json!(null)).await.ack),
            "INTERNAL_SERVER_ERROR"
        );
    });
}
