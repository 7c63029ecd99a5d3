//! The FoalTS, Enfyra and Ignis conventions through the handler test harness, on the
//! in-memory runtime (virtual time: the 10 s auth timeout takes no real time).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use wirestate_async::mem::Sim;
use wirestate_async::sio::testing::{TestClient, TestServer};
use wirestate_async::sio::{
    AppError, AuthChallenge, AuthState, Authenticated, Config, Controller, Handler, JobLimits,
    Room, Schema, ServerOptions, Typed,
};
use wirestate_async::Runtime;

fn server(sim: &Sim) -> TestServer<Sim> {
    TestServer::new(sim, Config::default())
}

fn rooms(names: &[&str]) -> Vec<Room> {
    names.iter().map(|n| Room::from(*n)).collect()
}

fn ok(data: Value) -> Value {
    json!({"status": "ok", "data": data})
}

fn err(code: &str, message: &str) -> Value {
    json!({"status": "error", "error": {"code": code, "message": message}})
}

#[test]
fn controllers_prefix_sub_controllers_and_run_hooks_outer_first() {
    let sim = Sim::new();
    let s = server(&sim);
    let trail = Arc::new(Mutex::new(Vec::<String>::new()));
    let t = |tag: &'static str| {
        let trail = trail.clone();
        move |_socket, event: wirestate_async::sio::EventInfo| {
            let trail = trail.clone();
            async move {
                trail
                    .lock()
                    .expect("ok")
                    .push(format!("{tag}:{}", event.name()));
            }
        }
    };
    let messages = Controller::new()
        .hook(t("messages"))
        .on("create", |_s, msg| async move {
            msg.ack_ok(&msg.data::<Value>()?)
        })
        .handle(
            "delete",
            Handler::new(|_s, msg| async move { msg.ack_ok(&"deleted") }).hook(
                |_s, e: wirestate_async::sio::EventInfo| async move {
                    match e.data::<Value>()?["id"].as_u64() {
                        Some(_) => Ok::<(), Box<dyn std::error::Error + Send + Sync>>(()),
                        None => Err(AppError::new("NO_ID", "which one?").into()),
                    }
                },
            ),
        );
    let root = Controller::new()
        .hook(t("root"))
        .sub("message:", messages)
        .on("ping", |_s, msg| async move { msg.ack_ok(&"pong") });
    s.io().of("/").hook(t("nsp")).controller(root);
    sim.block_on(async {
        let c = s.connect("/", json!({})).await.expect("connect");
        assert_eq!(
            c.emit("message:create", json!({"text": "hi"})).await.ack,
            Some(ok(json!({"text": "hi"})))
        );
        assert_eq!(
            c.emit("ping", json!(null)).await.ack,
            Some(ok(json!("pong")))
        );
        assert_eq!(
            c.emit("create", json!(null)).await.ack,
            None,
            "no prefix, no handler"
        );
        assert_eq!(
            c.emit("message:delete", json!({})).await.ack,
            Some(err("NO_ID", "which one?")),
            "the handler's own hook stops it"
        );
        assert_eq!(
            c.emit("message:delete", json!({"id": 1})).await.ack,
            Some(ok(json!("deleted")))
        );
    });
    let trail = trail.lock().expect("lock").clone();
    assert_eq!(
        trail,
        [
            "nsp:message:create",
            "root:message:create",
            "messages:message:create",
            "nsp:ping",
            "root:ping",
            "nsp:create",
            "nsp:message:delete",
            "root:message:delete",
            "messages:message:delete",
            "nsp:message:delete",
            "root:message:delete",
            "messages:message:delete",
        ]
    );
}

#[test]
fn a_namespace_hook_guards_the_sockets_own_handlers_too() {
    let sim = Sim::new();
    let s = server(&sim);
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    s.io()
        .of("/")
        .hook(|socket, _e| async move {
            match socket.data()["admin"].as_bool() {
                Some(true) => Ok(()),
                _ => Err(AppError::new("FORBIDDEN", "admins only")),
            }
        })
        .on_connection(move |socket| {
            let r = r.clone();
            async move {
                socket.on("wipe", move |_s, msg| {
                    r.fetch_add(1, Ordering::SeqCst);
                    async move { msg.ack_ok(&true) }
                });
            }
        });
    sim.block_on(async {
        let c = s.connect("/", json!({})).await.expect("connect");
        assert_eq!(
            c.emit("wipe", json!(null)).await.ack,
            Some(err("FORBIDDEN", "admins only"))
        );
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        c.socket().expect("socket").set_data(json!({"admin": true}));
        assert_eq!(c.emit("wipe", json!(null)).await.ack, Some(ok(json!(true))));
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    });
}

fn chat_schema() -> Schema {
    Schema::new(&json!({
        "type": "object",
        "properties": {
            "room": {"type": "string"},
            "text": {"type": "string", "minLength": 1, "maxLength": 500},
            "n": {"type": "integer", "minimum": 0, "maximum": 30},
            "tag": {"enum": ["a", "b"]},
            "code": {"type": "string", "pattern": "^[a-z]+$"}
        },
        "required": ["room", "text"],
        "additionalProperties": false
    }))
    .expect("schema")
}

#[test]
fn json_schema_errors_are_ajvs() {
    let schema = chat_schema();
    let errors = |v: Value| schema.errors(&v);
    let e = |path: &str, schema_path: &str, keyword: &str, params: Value, message: &str| json!({"instancePath": path, "schemaPath": schema_path, "keyword": keyword, "params": params, "message": message});
    assert_eq!(
        errors(json!({"room": "r", "text": "hi"})),
        Vec::<Value>::new()
    );
    assert_eq!(
        errors(json!({"room": "r", "text": "x".repeat(501)})),
        [e(
            "/text",
            "#/properties/text/maxLength",
            "maxLength",
            json!({"limit": 500}),
            "must NOT have more than 500 characters"
        )]
    );
    assert_eq!(
        errors(json!({"room": "r", "text": ""})),
        [e(
            "/text",
            "#/properties/text/minLength",
            "minLength",
            json!({"limit": 1}),
            "must NOT have fewer than 1 characters"
        )]
    );
    assert_eq!(
        errors(json!({"room": "r"})),
        [e(
            "",
            "#/required",
            "required",
            json!({"missingProperty": "text"}),
            "must have required property 'text'"
        )]
    );
    assert_eq!(
        errors(json!({"room": "r", "text": "t", "x": 1})),
        [e(
            "",
            "#/additionalProperties",
            "additionalProperties",
            json!({"additionalProperty": "x"}),
            "must NOT have additional properties"
        )]
    );
    assert_eq!(
        errors(json!({"room": 5, "text": "t"})),
        [e(
            "/room",
            "#/properties/room/type",
            "type",
            json!({"type": "string"}),
            "must be string"
        )]
    );
    assert_eq!(
        errors(json!({"room": "r", "text": "t", "n": 31})),
        [e(
            "/n",
            "#/properties/n/maximum",
            "maximum",
            json!({"comparison": "<=", "limit": 30}),
            "must be <= 30"
        )]
    );
    assert_eq!(
        errors(json!({"room": "r", "text": "t", "n": 1.5})),
        [e(
            "/n",
            "#/properties/n/type",
            "type",
            json!({"type": "integer"}),
            "must be integer"
        )]
    );
    assert_eq!(
        errors(json!({"room": "r", "text": "t", "tag": "c"})),
        [e(
            "/tag",
            "#/properties/tag/enum",
            "enum",
            json!({"allowedValues": ["a", "b"]}),
            "must be equal to one of the allowed values"
        )]
    );
    assert_eq!(
        errors(json!({"room": "r", "text": "t", "code": "A"})),
        [e(
            "/code",
            "#/properties/code/pattern",
            "pattern",
            json!({"pattern": "^[a-z]+$"}),
            "must match pattern \"^[a-z]+$\""
        )]
    );
    assert_eq!(
        errors(json!("nope")),
        [e(
            "",
            "#/type",
            "type",
            json!({"type": "object"}),
            "must be object"
        )]
    );
    // Ajv's default reports the first error only; all_errors reports each.
    let all = chat_schema().all_errors(true);
    assert_eq!(all.errors(&json!({"text": "", "x": 1, "y": 2})).len(), 4);
    assert!(
        Schema::new(&json!({"type": 5})).is_err(),
        "a bad schema is an error"
    );
}

#[test]
fn a_payload_that_fails_validation_never_reaches_the_handler() {
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Job {
        n: u8,
    }
    let sim = Sim::new();
    let s = server(&sim);
    let ran = Arc::new(AtomicUsize::new(0));
    let (r1, r2) = (ran.clone(), ran.clone());
    s.io().of("/").controller(
        Controller::new()
            .handle(
                "chat",
                Handler::new(move |_s, msg| {
                    r1.fetch_add(1, Ordering::SeqCst);
                    async move { msg.ack_ok(&"sent") }
                })
                .validate(chat_schema()),
            )
            .handle(
                "job",
                Handler::new(move |_s, msg| {
                    r2.fetch_add(1, Ordering::SeqCst);
                    async move { msg.ack_ok(&msg.data::<Value>()?["n"]) }
                })
                .validate(Typed::<Job>::new()),
            ),
    );
    sim.block_on(async {
        let c = s.connect("/", json!({})).await.expect("connect");
        let out = c.emit("chat", json!({"room": "r", "text": ""})).await;
        assert_eq!(
            out.ack,
            Some(json!({"status": "error", "error": {"code": "VALIDATION_PAYLOAD_ERROR", "payload": [
                {"instancePath": "/text", "schemaPath": "#/properties/text/minLength", "keyword": "minLength",
                 "params": {"limit": 1}, "message": "must NOT have fewer than 1 characters"}
            ]}}))
        );
        let out = c.emit("job", json!({"n": "x"})).await;
        let error = &out.ack.expect("ack")["error"];
        assert_eq!(error["code"], "VALIDATION_PAYLOAD_ERROR");
        assert_eq!(error["payload"][0]["keyword"], "type");
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        assert_eq!(c.emit("chat", json!({"room": "r", "text": "hi"})).await.ack, Some(ok(json!("sent"))));
        assert_eq!(c.emit("job", json!({"n": 3})).await.ack, Some(ok(json!(3))));
        assert_eq!(ran.load(Ordering::SeqCst), 2);
    });
}

fn jobs(s: &TestServer<Sim>, limits: JobLimits) {
    s.io().of("/").controller(
        Controller::new().handle(
            "job",
            Handler::queued(|socket, msg| async move {
                let n = msg.data::<Value>()?["n"].as_u64().unwrap_or(0);
                socket.io().sleep(Duration::from_millis(100 * n)).await;
                match n {
                    13 => Err(Box::<dyn std::error::Error + Send + Sync>::from(
                        AppError::new("JOB_FAILED", "13 is unlucky"),
                    )),
                    14 => Err("disk full at /srv".into()),
                    15 => panic!("secret"),
                    _ => Ok(json!({"n": n})),
                }
            })
            .job_limits(limits),
        ),
    );
}

fn queued(c: &TestClient, ack: &Option<Value>) -> String {
    let ack = ack.as_ref().expect("ack");
    assert_eq!(ack["queued"], true);
    assert_eq!(ack["eventName"], "job");
    let id = ack["requestId"].as_str().expect("requestId").to_owned();
    assert!(id.starts_with(c.id().as_str()), "{id}");
    id
}

#[test]
fn queued_handlers_ack_at_once_then_emit_the_result_or_the_error() {
    let sim = Sim::new();
    let s = server(&sim);
    jobs(&s, JobLimits::default());
    sim.block_on(async {
        let c = s.connect("/", json!({})).await.expect("connect");
        let start = sim.now();
        let out = c.emit("job", json!({"n": 5})).await;
        assert!(sim.now() - start < Duration::from_millis(100), "the ack comes at once");
        let id = queued(&c, &out.ack);
        assert_eq!(out.emitted, []);
        let result = c.next_event("ws:result", Duration::from_secs(1)).await.expect("result");
        assert_eq!(result, json!({"requestId": id, "result": {"n": 5}}));
        assert!(sim.now() - start >= Duration::from_millis(500));
        for (n, error) in [
            (13, json!({"code": "JOB_FAILED", "message": "13 is unlucky"})),
            (14, json!({"code": "INTERNAL_SERVER_ERROR", "message": "An internal server error has occurred."})),
            (15, json!({"code": "INTERNAL_SERVER_ERROR", "message": "An internal server error has occurred."})),
        ] {
            let id = queued(&c, &c.emit("job", json!({"n": n})).await.ack);
            let got = c.next_event("ws:error", Duration::from_secs(5)).await.expect("error");
            assert_eq!(got, json!({"requestId": id, "error": error}));
        }
    });
}

#[test]
fn queued_jobs_are_bounded_per_socket_and_in_time() {
    let sim = Sim::new();
    let s = server(&sim);
    jobs(
        &s,
        JobLimits {
            per_socket: 2,
            timeout: Duration::from_secs(1),
        },
    );
    sim.block_on(async {
        let c = s.connect("/", json!({})).await.expect("connect");
        let first = queued(&c, &c.emit("job", json!({"n": 30})).await.ack);
        queued(&c, &c.emit("job", json!({"n": 2})).await.ack);
        assert_eq!(
            c.emit("job", json!({"n": 1})).await.ack,
            Some(err("QUEUE_FULL", "Too many queued jobs: at most 2 per connection."))
        );
        assert!(c.next_event("ws:result", Duration::from_secs(1)).await.is_some());
        let timeout = c.next_event("ws:error", Duration::from_secs(2)).await.expect("timeout");
        assert_eq!(
            timeout,
            json!({"requestId": first, "error": {"code": "TIMEOUT", "message": "The job did not finish within 1 s."}})
        );
        // Both slots are free again.
        queued(&c, &c.emit("job", json!({"n": 0})).await.ack);
        queued(&c, &c.emit("job", json!({"n": 0})).await.ack);
    });
}

#[test]
fn users_get_emits_in_every_namespace_and_have_presence() {
    let sim = Sim::new();
    let s = server(&sim);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    s.io()
        .on_presence(move |user, online| log.lock().expect("lock").push((user.to_owned(), online)));
    for nsp in ["/", "/admin"] {
        s.io()
            .of(nsp)
            .controller(Controller::new().on("login", |socket, msg| async move {
                let name: String = msg.data::<Value>()?["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                socket.set_user(&name);
                msg.ack_ok(&name)
            }));
    }
    sim.block_on(async {
        let a1 = s.connect("/", json!({})).await.expect("a1");
        let a2 = s.connect("/admin", json!({})).await.expect("a2");
        let b = s.connect("/", json!({})).await.expect("b");
        let out = a1.emit("login", json!({"name": "ann"})).await;
        assert_eq!(out.joined, rooms(&["user:ann"]));
        a2.emit("login", json!({"name": "ann"})).await;
        b.emit("login", json!({"name": "bob"})).await;
        assert!(s.io().user_online("ann"));
        assert_eq!(s.io().user_sockets("ann").len(), 2);
        assert_eq!(
            s.io()
                .emit_to_user("ann", "dm", &json!({"text": "hi"}))
                .expect("ok"),
            2
        );
        assert_eq!(
            a1.take_events().await,
            [("dm".to_owned(), json!({"text": "hi"}))]
        );
        assert_eq!(
            a2.take_events().await,
            [("dm".to_owned(), json!({"text": "hi"}))]
        );
        assert_eq!(b.take_events().await, []);
        a1.disconnect().await;
        assert!(s.io().user_online("ann"));
        a2.disconnect().await;
        assert!(!s.io().user_online("ann"));
        let mut online = s.io().users_online();
        online.sort();
        assert_eq!(online, rooms(&["bob"]));
    });
    assert_eq!(
        *seen.lock().expect("lock"),
        [
            ("ann".to_owned(), true),
            ("bob".to_owned(), true),
            ("ann".to_owned(), false)
        ]
    );
}

fn challenge(s: &TestServer<Sim>) {
    s.io().of("/chat").auth_challenge(
        AuthChallenge::new(|socket, payload| async move {
            let name = payload["name"].as_str().unwrap_or_default().to_owned();
            if name.is_empty() || name.contains(' ') {
                return Err(AppError::new("BAD_NAME", "a name is 1 to 32 of [a-z0-9_-]"));
            }
            Ok(Authenticated::new(json!({"id": socket.id().as_str(), "name": name})).user(name))
        })
        .default_rooms(["lobby"])
        .room_policy(|_s, room| room == "lobby" || room.starts_with("room-"))
        .ping_interval(Duration::from_secs(25)),
    );
    s.io()
        .of("/chat")
        .controller(Controller::new().on("echo", |_s, msg| async move {
            msg.ack_ok(&msg.data::<Value>()?)
        }));
}

#[test]
fn the_auth_challenge_gates_events_until_authenticate() {
    let sim = Sim::new();
    let s = server(&sim);
    challenge(&s);
    sim.block_on(async {
        let c = s.connect("/chat", json!({})).await.expect("connect");
        let socket = c.socket().expect("socket");
        assert_eq!(socket.auth_state(), AuthState::Unauthorized);
        let gate = err(
            "UNAUTHENTICATED",
            "Authenticate first: send `authenticate`.",
        );
        assert_eq!(c.emit("echo", json!(1)).await.ack, Some(gate.clone()));
        assert_eq!(
            c.emit("join", json!({"rooms": ["lobby"]})).await.ack,
            Some(gate.clone())
        );
        assert_eq!(
            c.emit("nothing-handles-this", json!(1)).await.ack,
            Some(gate)
        );
        let out = c.emit("authenticate", json!({"name": "a b"})).await;
        assert_eq!(
            out.ack,
            Some(err("BAD_NAME", "a name is 1 to 32 of [a-z0-9_-]"))
        );
        assert_eq!(
            out.emitted,
            [(
                "unauthenticated".to_owned(),
                json!({"message": "a name is 1 to 32 of [a-z0-9_-]"})
            )]
        );
        let out = c.emit("authenticate", json!({"name": "ann"})).await;
        let me = json!({"id": c.id().as_str(), "name": "ann"});
        assert_eq!(out.ack, Some(ok(me.clone())));
        assert_eq!(out.emitted, [("authenticated".to_owned(), me)]);
        let mut joined = out.joined.clone();
        joined.sort();
        assert_eq!(joined, rooms(&["lobby", "user:ann"]));
        assert_eq!(socket.auth_state(), AuthState::Authenticated);
        assert_eq!(socket.user().as_deref(), Some("ann"));
        assert_eq!(c.emit("echo", json!(1)).await.ack, Some(ok(json!(1))));
        assert_eq!(
            c.emit("authenticate", json!({"name": "bob"})).await.ack,
            Some(err(
                "ALREADY_AUTHENTICATED",
                "This connection is authenticated already."
            ))
        );
        // Authenticated sockets stay past the timeout and get the application ping.
        let ping = c
            .next_event("ping", Duration::from_secs(30))
            .await
            .expect("ping");
        assert!(ping["time"].as_u64().is_some(), "{ping}");
        assert!(c.connected());
        let clients = s.io().of("/chat").clients();
        assert_eq!(clients.len(), 1);
        assert_eq!(clients[0].1, AuthState::Authenticated);
    });
}

#[test]
fn an_unauthenticated_socket_is_disconnected_at_the_timeout() {
    let sim = Sim::new();
    let s = server(&sim);
    challenge(&s);
    sim.block_on(async {
        let c = s.connect("/chat", json!({})).await.expect("connect");
        let start = sim.now();
        let got = c
            .next_event("unauthenticated", Duration::from_secs(20))
            .await;
        assert_eq!(got, Some(json!({"message": "Authentication timed out."})));
        let waited = sim.now() - start;
        assert!(
            waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
            "{waited:?}"
        );
        s.sleep(Duration::from_millis(10)).await;
        assert!(!c.connected());
        assert!(s.io().of("/chat").clients().is_empty());
    });
}

#[test]
fn the_room_policy_denies_unless_it_allows() {
    let sim = Sim::new();
    let s = server(&sim);
    challenge(&s);
    sim.block_on(async {
        let c = s.connect("/chat", json!({})).await.expect("connect");
        c.emit("authenticate", json!({"name": "ann"})).await;
        let out = c
            .emit(
                "join",
                json!({"rooms": ["room-1", "admins", "room-1", "lobby", "room-2"]}),
            )
            .await;
        assert_eq!(
            out.ack,
            Some(ok(
                json!({"joined": ["room-1", "lobby", "room-2"], "denied": ["admins"]})
            ))
        );
        assert_eq!(
            out.joined,
            rooms(&["room-1", "room-2"]),
            "lobby was a default room"
        );
        let out = c
            .emit("leave", json!({"rooms": ["room-2", "user:ann"]}))
            .await;
        assert_eq!(
            out.ack,
            Some(ok(json!({"left": ["room-2"], "denied": ["user:ann"]})))
        );
        assert_eq!(out.left, rooms(&["room-2"]));
        let out = c.emit("join", json!({"rooms": "room-1"})).await;
        assert_eq!(
            out.ack.expect("ack")["error"]["code"],
            "VALIDATION_PAYLOAD_ERROR"
        );
        let many: Vec<String> = (0..33).map(|i| format!("room-{i}")).collect();
        let out = c.emit("join", json!({ "rooms": many })).await;
        assert_eq!(
            out.ack.expect("ack")["error"]["payload"][0]["keyword"],
            "maxItems"
        );
        assert!(out.joined.is_empty());
    });
    // Without a policy, every room is denied.
    let sim = Sim::new();
    let s = server(&sim);
    s.io()
        .of("/")
        .auth_challenge(AuthChallenge::new(|_s, _p| async move {
            Ok(Authenticated::new(json!({})))
        }));
    sim.block_on(async {
        let c = s.connect("/", json!({})).await.expect("connect");
        c.emit("authenticate", json!({})).await;
        let out = c.emit("join", json!({"rooms": ["lobby"]})).await;
        assert_eq!(
            out.ack,
            Some(ok(json!({"joined": [], "denied": ["lobby"]})))
        );
    });
}

#[test]
fn a_panicking_authenticate_leaves_the_socket_unauthorized() {
    let sim = Sim::new();
    let s = TestServer::new(&sim, ServerOptions::from(Config::default()));
    s.io()
        .of("/")
        .auth_challenge(AuthChallenge::new(|_s, p: Value| async move {
            if p["boom"] == true {
                panic!("secret");
            }
            Ok(Authenticated::new(json!("in")))
        }));
    sim.block_on(async {
        let c = s.connect("/", json!({})).await.expect("connect");
        let out = c.emit("authenticate", json!({"boom": true})).await;
        assert_eq!(
            out.ack,
            Some(err(
                "INTERNAL_SERVER_ERROR",
                "An internal server error has occurred."
            ))
        );
        assert_eq!(
            c.socket().expect("socket").auth_state(),
            AuthState::Unauthorized
        );
        assert_eq!(
            c.emit("authenticate", json!({})).await.ack,
            Some(ok(json!("in")))
        );
    });
}

#[test]
fn the_harness_reports_connect_errors_and_broadcasts_between_clients() {
    let sim = Sim::new();
    let s = server(&sim);
    s.io()
        .of("/")
        .middleware(|req| async move {
            match req.auth()["token"].as_str() {
                Some("t") => Ok(()),
                _ => Err(wirestate_async::sio::ConnectError::new("bad token")),
            }
        })
        .controller(
            Controller::new()
                .on("bin", |socket, _msg| async move {
                    socket.emit_payload(
                        "bin",
                        wirestate_async::sio::Payload::new().bin(vec![1, 2, 3]),
                    )?;
                    socket.emit("after", &1)
                })
                .on("say", |socket, msg| async move {
                    socket.broadcast().emit("said", &msg.data::<Value>()?)?;
                    Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
                }),
        );
    sim.block_on(async {
        let refused = s
            .connect("/", json!({"token": "x"}))
            .await
            .expect_err("refused");
        assert_eq!(refused, json!({"message": "bad token"}));
        let a = s.connect("/", json!({"token": "t"})).await.expect("a");
        let b = s.connect("/", json!({"token": "t"})).await.expect("b");
        // Binary arguments arrive with their attachments, read as placeholders.
        let bin = a.emit("bin", json!(null)).await;
        assert_eq!(
            bin.emitted,
            [
                ("bin".to_owned(), json!({"_placeholder": true, "num": 0})),
                ("after".to_owned(), json!(1))
            ]
        );
        let out = a.send("say", json!("hello")).await;
        assert_eq!(
            out,
            Default::default(),
            "a itself gets nothing, and no ack was asked"
        );
        assert_eq!(b.take_events().await, [("said".to_owned(), json!("hello"))]);
    });
}

#[test]
fn a_recovered_socket_keeps_its_user_and_authentication() {
    let sim = Sim::new();
    let config = Config::default().recovery(wirestate_engine::sio::Recovery::default());
    let io = wirestate_async::sio::server(&sim, config).expect("server");
    io.of("/")
        .auth_challenge(AuthChallenge::new(|_s, _p| async move {
            Ok(Authenticated::new(json!("in")).user("ann"))
        }));
    let listener = sim.listen("127.0.0.1:3000").expect("listen");
    let (rt, serving) = (sim.clone(), io.clone());
    sim.spawn(async move {
        let _ = wirestate_async::sio::serve(&rt, serving, listener).await;
    });
    let client = wirestate_async::sio::io(
        &sim,
        "http://127.0.0.1:3000/",
        wirestate_async::sio::IoOptions::default(),
    )
    .expect("url");
    sim.block_on(async {
        client.wait_connected().await.expect("connected");
        let ack = client
            .timeout(Duration::from_secs(5))
            .emit_with_ack("authenticate", &json!({}))
            .await
            .expect("ack");
        assert_eq!(ack.values()[0]["status"], "ok");
        let sid = io.sockets().local_sockets()[0].id().clone();
        io.socket(&sid).expect("socket").close_connection();
        // The client reconnects at once and recovers its socket.
        sim.sleep(Duration::from_secs(5)).await;
        let socket = io.socket(&sid).expect("recovered");
        assert!(socket.recovered());
        assert_eq!(socket.auth_state(), AuthState::Authenticated);
        assert_eq!(socket.user().as_deref(), Some("ann"));
        assert!(io.user_online("ann"));
        // Past the challenge's timeout it is still there.
        sim.sleep(Duration::from_secs(15)).await;
        assert!(io.socket(&sid).is_some());
        let ack = client
            .timeout(Duration::from_secs(5))
            .emit_with_ack("join", &json!({"rooms": []}))
            .await
            .expect("ack");
        assert_eq!(
            ack.values()[0]["status"],
            "ok",
            "not asked to authenticate again"
        );
    });
}
