//! `@socket.io/admin-ui`'s server side (`SocketIo::instrument`) through the handler
//! test harness, on the in-memory runtime (virtual time: the 2 s stats take none).

use std::time::Duration;

use serde_json::{json, Value};
use wirestate_async::mem::Sim;
use wirestate_async::sio::testing::{TestClient, TestServer};
use wirestate_async::sio::{AdminUi, Config, Payload};

const WAIT: Duration = Duration::from_secs(5);
/// bcrypt of `changeit` (cost 10), as `@socket.io/admin-ui`'s README shows it.
const HASH: &str = "$2b$10$heqvAkYMez.Va6Et2uXInOnkCT6/uQj1brkrbyG3LpopDklcq7ZOS";

/// A server with `/chat` (`hello` joins `room-1` and answers `hi`), instrumented.
fn server(sim: &Sim, admin: AdminUi) -> TestServer<Sim> {
    let s = TestServer::new(sim, Config::default());
    s.io().of("/chat").on_connection(|socket| async move {
        socket.on("hello", |socket, _msg| async move {
            socket.join(["room-1"]);
            let _ = socket.emit("hi", &json!({"n": 1}));
        });
    });
    s.io().instrument(admin);
    s
}

async fn next(client: &TestClient, name: &str) -> Vec<Value> {
    client
        .next_event_args(name, WAIT)
        .await
        .unwrap_or_else(|| panic!("no {name} event"))
}

fn is_date(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T')
}

#[test]
fn development_mode_reports_sockets_rooms_events_and_stats() {
    let sim = Sim::new();
    let s = server(&sim, AdminUi::new());
    sim.block_on(async {
        let ann = s.connect("/chat", json!({})).await.expect("ann");
        let admin = s.connect("/admin", json!({})).await.expect("admin");
        let config = next(&admin, "config").await;
        assert_eq!(
            config[0]["supportedFeatures"],
            json!([
                "EMIT",
                "JOIN",
                "LEAVE",
                "DISCONNECT",
                "MJOIN",
                "MLEAVE",
                "MDISCONNECT",
                "AGGREGATED_EVENTS",
                "ALL_EVENTS"
            ])
        );
        let all = next(&admin, "all_sockets").await;
        let listed = all[0].as_array().expect("an array");
        let a = listed
            .iter()
            .find(|d| d["id"] == ann.id().as_str())
            .expect("ann listed");
        assert_eq!(a["nsp"], "/chat");
        assert_eq!(a["transport"], "websocket");
        assert_eq!(a["clientId"].as_str().map(str::len), Some(12));
        assert_eq!(a["rooms"], json!([ann.id().as_str()]));
        assert!(a["handshake"]["url"]
            .as_str()
            .is_some_and(|u| u.contains("EIO=4")));
        assert!(a["handshake"].get("auth").is_none(), "auth is not shown");
        assert_eq!(a["handshake"]["secure"], false, "not over TLS");
        // The admin socket lists itself too, in its own namespace.
        assert!(listed
            .iter()
            .any(|d| d["id"] == admin.id().as_str() && d["nsp"] == "/admin"));

        let bob = s.connect("/chat", json!({})).await.expect("bob");
        let connected = next(&admin, "socket_connected").await;
        assert_eq!(connected[0]["id"], bob.id().as_str());
        assert!(is_date(&connected[1]), "{connected:?}");

        bob.send("hello", json!({"x": 1})).await;
        let received = next(&admin, "event_received").await;
        assert_eq!(
            received[..3],
            [
                json!("/chat"),
                json!(bob.id().as_str()),
                json!(["hello", {"x": 1}])
            ]
        );
        assert!(is_date(&received[3]));
        let joined = next(&admin, "room_joined").await;
        assert_eq!(
            joined[..3],
            [json!("/chat"), json!("room-1"), json!(bob.id().as_str())]
        );
        let sent = next(&admin, "event_sent").await;
        assert_eq!(
            sent[..3],
            [
                json!("/chat"),
                json!(bob.id().as_str()),
                json!(["hi", {"n": 1}])
            ]
        );

        let stats = next(&admin, "server_stats").await;
        let stats = &stats[0];
        assert_eq!(stats["clientsCount"], 3);
        assert_eq!(stats["pollingClientsCount"], 0);
        assert_eq!(stats["pid"], std::process::id());
        assert!(stats["serverId"].as_str().is_some_and(|id| !id.is_empty()));
        let chat = stats["namespaces"]
            .as_array()
            .and_then(|n| n.iter().find(|n| n["name"] == "/chat"))
            .expect("/chat in the stats");
        assert_eq!(chat["socketsCount"], 2);
        let events = stats["aggregatedEvents"].as_array().expect("events");
        let count = |kind: &str| -> u64 {
            events
                .iter()
                .filter(|e| e["type"] == kind)
                .filter_map(|e| e["count"].as_u64())
                .sum()
        };
        assert_eq!(count("rawConnection"), 3, "{events:?}");
        assert!(
            count("packetsOut") > 0 && count("bytesOut") > 0,
            "{events:?}"
        );

        // The UI's disconnect button: `_disconnect(nsp, close, socket id)`.
        let command = Payload::new()
            .arg(json!("/chat"))
            .arg(json!(false))
            .arg(json!(bob.id().as_str()));
        // What the admin receives meanwhile comes with the command's outcome.
        let out = admin.send_payload("_disconnect", command).await;
        let names: Vec<&str> = out.emitted.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"socket_disconnected"), "{names:?}");
        assert!(names.contains(&"room_left"), "{names:?}");
        assert!(!bob.connected());
        assert!(ann.connected());
        // A client that goes away, seen in full.
        let carl = s.connect("/chat", json!({})).await.expect("carl");
        let carl_id = carl.id().as_str().to_owned();
        next(&admin, "socket_connected").await;
        carl.disconnect().await;
        let gone = next(&admin, "socket_disconnected").await;
        assert_eq!(
            gone[..3],
            [json!("/chat"), json!(carl_id), json!("forced close")]
        );
        assert!(is_date(&gone[3]));
        let left = next(&admin, "room_left").await;
        assert_eq!(left[..3], [json!("/chat"), json!(carl_id), json!(carl_id)]);

        // `emit` to a room and `join` for a whole namespace.
        let emit = Payload::new()
            .arg(json!("/chat"))
            .arg(json!(ann.id().as_str()))
            .arg(json!("notice"))
            .arg(json!("from the admin"));
        admin.send_payload("emit", emit).await;
        assert_eq!(
            ann.next_event("notice", WAIT).await,
            Some(json!("from the admin"))
        );
        let join = Payload::new().arg(json!("/chat")).arg(json!("everyone"));
        admin.send_payload("join", join).await;
        let socket = ann.socket().expect("ann's socket");
        assert!(socket.rooms().iter().any(|r| &**r == "everyone"));
        // A namespace that does not exist is not created by a command.
        admin
            .send_payload("join", Payload::new().arg(json!("/nope")).arg(json!("x")))
            .await;
        assert!(!s
            .io()
            .host()
            .inspect(|srv| srv.namespaces().any(|n| n == "/nope")));
    });
}

#[test]
fn readonly_and_production_modes_offer_less() {
    let sim = Sim::new();
    let s = server(&sim, AdminUi::new().readonly(true).production(true));
    sim.block_on(async {
        let ann = s.connect("/chat", json!({})).await.expect("ann");
        let admin = s.connect("/admin", json!({})).await.expect("admin");
        let config = next(&admin, "config").await;
        assert_eq!(config[0]["supportedFeatures"], json!(["AGGREGATED_EVENTS"]));
        let command = Payload::new()
            .arg(json!("/chat"))
            .arg(json!(false))
            .arg(json!(ann.id().as_str()));
        admin.send_payload("_disconnect", command).await;
        assert!(ann.connected(), "read-only: commands are ignored");
        let _bob = s.connect("/chat", json!({})).await.expect("bob");
        // Production: stats only, no per-socket updates.
        next(&admin, "server_stats").await;
        let events: Vec<String> = admin
            .take_events()
            .await
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(events.iter().all(|n| n == "server_stats"), "{events:?}");
    });
}

#[test]
fn basic_auth_checks_the_bcrypt_hash_and_hands_out_a_session() {
    assert!(AdminUi::new().basic_auth("admin", "not a hash").is_err());
    let sim = Sim::new();
    let admin = AdminUi::new()
        .basic_auth("admin", HASH)
        .expect("a valid hash");
    let s = server(&sim, admin);
    sim.block_on(async {
        let refused = s
            .connect("/admin", json!({"username": "admin", "password": "wrong"}))
            .await
            .expect_err("a wrong password");
        assert_eq!(refused["message"], "invalid credentials");
        let refused = s
            .connect(
                "/admin",
                json!({"username": "root", "password": "changeit"}),
            )
            .await
            .expect_err("a wrong user");
        assert_eq!(refused["message"], "invalid credentials");
        let admin = s
            .connect(
                "/admin",
                json!({"username": "admin", "password": "changeit"}),
            )
            .await
            .expect("the right password");
        let session = next(&admin, "session").await;
        let session = session[0].as_str().expect("a session id").to_owned();
        assert_eq!(session.len(), 16);
        next(&admin, "config").await;
        // The UI reconnects with its session id, without the password.
        let again = s
            .connect("/admin", json!({"sessionId": session}))
            .await
            .expect("a known session");
        next(&again, "config").await;
        let forged = s
            .connect("/admin", json!({"sessionId": "0123456789abcdef"}))
            .await
            .expect_err("an unknown session");
        assert_eq!(forged["message"], "invalid credentials");
        // Other namespaces are not behind the admin's auth.
        s.connect("/chat", json!({})).await.expect("chat");
    });
}
