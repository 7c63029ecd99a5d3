//! Servers of one process joined over an in-process `LocalBus` (what the shards of a
//! sharded server do), driven in memory on the virtual clock: broadcasts, room
//! operations and `fetch_sockets` cross servers, and a polling request that reaches a
//! server that does not own its session is answered by the owner.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wirestate_async::mem::{duplex, Sim};
use wirestate_async::{sio, Runtime};

mod common;
use common::read_response;

/// Two servers on one bus, each serving its own address.
fn two_servers(sim: &Sim, port: u16) -> Vec<sio::SocketIo> {
    let bus = sio::LocalBus::new();
    (0..2)
        .map(|i| {
            let io = sio::server(sim, sio::Config::default()).expect("server");
            io.of("/").on_connection(|socket| async move {
                socket.on("shout", |socket, msg| async move {
                    let text: String = msg.payload().get(0).unwrap_or_default();
                    let _ = socket.broadcast().emit("heard", &text);
                });
            });
            sio::attach_local(sim, &io, &bus).expect("joined");
            let listener = sim
                .listen(&format!("127.0.0.1:{}", port + i))
                .expect("listen");
            let (rt, serving) = (sim.clone(), io.clone());
            sim.spawn(async move {
                let _ = sio::serve(&rt, serving, listener).await;
            });
            io
        })
        .collect()
}

type Seen = Arc<Mutex<Vec<String>>>;

/// A client of the server at `port`, recording the texts of `event`.
async fn client(sim: &Sim, port: u16, event: &str) -> (sio::ClientSocket, Seen) {
    let config = sio::ClientConfig::default().reconnection(false);
    let options = sio::IoOptions::default().config(config);
    let socket = sio::io(sim, &format!("http://127.0.0.1:{port}/"), options).expect("url");
    let seen = Seen::default();
    let keep = seen.clone();
    socket.on(event, move |payload, _| {
        let text: String = payload.get(0).expect("a string");
        keep.lock().expect("lock").push(text);
    });
    assert_eq!(socket.wait_connected().await, Ok(false));
    (socket, seen)
}

fn texts(seen: &Seen) -> Vec<String> {
    seen.lock().expect("lock").clone()
}

#[test]
fn servers_on_one_bus_broadcast_join_and_fetch_across_each_other() {
    let sim = Sim::new();
    let ios = two_servers(&sim, 4100);
    sim.block_on(async {
        let (_a, seen_a) = client(&sim, 4100, "news").await;
        let (_b, seen_b) = client(&sim, 4101, "news").await;

        // A broadcast from either server reaches the clients of both.
        ios[0].of("/").emit("news", "from 0").expect("emit");
        sim.sleep(Duration::from_millis(10)).await;
        ios[1].of("/").emit("news", "from 1").expect("emit");
        sim.sleep(Duration::from_millis(10)).await;
        assert_eq!(texts(&seen_a), ["from 0", "from 1"]);
        assert_eq!(texts(&seen_b), ["from 0", "from 1"]);

        // fetch_sockets from one server sees the sockets of both.
        let all = ios[1]
            .of("/")
            .sockets()
            .fetch_sockets()
            .await
            .expect("answered");
        assert_eq!(all.len(), 2);
        assert_eq!(all.iter().filter(|s| s.local().is_some()).count(), 1);

        // A room operation from server 0 moves server 1's socket too; a broadcast to
        // the room from server 1 then reaches both.
        ios[0].of("/").sockets().sockets_join(["vip"]);
        sim.sleep(Duration::from_millis(10)).await;
        ios[1].of("/").to("vip").emit("news", "vip").expect("emit");
        ios[1]
            .of("/")
            .to("nobody")
            .emit("news", "lost")
            .expect("emit");
        sim.sleep(Duration::from_millis(10)).await;
        assert_eq!(texts(&seen_a), ["from 0", "from 1", "vip"]);
        assert_eq!(texts(&seen_b), ["from 0", "from 1", "vip"]);
    });
}

#[test]
fn a_broadcast_from_a_handler_reaches_the_other_servers_clients_but_not_the_sender() {
    let sim = Sim::new();
    let _ios = two_servers(&sim, 4110);
    sim.block_on(async {
        let (a, seen_a) = client(&sim, 4110, "heard").await;
        let (_b, seen_b) = client(&sim, 4111, "heard").await;
        let (_c, seen_c) = client(&sim, 4110, "heard").await;
        a.emit("shout", "hello").expect("open");
        sim.sleep(Duration::from_secs(1)).await;
        assert_eq!(
            (texts(&seen_a), texts(&seen_b), texts(&seen_c)),
            (vec![], vec!["hello".to_owned()], vec!["hello".to_owned()])
        );
    });
}

/// One HTTP request to `io` over a fresh in-memory connection.
async fn request(sim: &Sim, io: &sio::SocketIo, raw: String) -> (u16, String) {
    let (mut client, server_end) = duplex(1 << 16);
    let (rt, serving) = (sim.clone(), io.clone());
    sim.spawn(async move {
        let _ = sio::serve_connection(&rt, &serving, server_end, None).await;
    });
    client.write_all(raw.as_bytes()).await.expect("write");
    read_response(&mut client).await
}

#[test]
fn a_polling_request_at_the_server_that_does_not_own_the_session_is_answered_by_the_owner() {
    let sim = Sim::new();
    let ios = two_servers(&sim, 4120);
    sim.block_on(async {
        let open = "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n";
        let (status, body) = request(&sim, &ios[0], open.into()).await;
        assert_eq!(status, 200, "{body}");
        let sid = body
            .split("\"sid\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a sid")
            .to_owned();
        // The CONNECT goes to the other server, and so does the poll for its answer.
        let post = format!(
            "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\
             Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n40"
        );
        let (status, body) = request(&sim, &ios[1], post).await;
        assert_eq!((status, body.as_str()), (200, "ok"));
        let poll = format!(
            "GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        let (status, body) = request(&sim, &ios[1], poll).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with("40{\"sid\":\""), "{body}");
        // The socket lives on the owner only.
        assert_eq!(ios[0].of("/").sockets().local_sockets().len(), 1);
        assert_eq!(ios[1].of("/").sockets().local_sockets().len(), 0);
        // An unknown session is refused by both, whichever gets it.
        let stray = "GET /socket.io/?EIO=4&transport=polling&sid=nope HTTP/1.1\r\nHost: x\r\n\r\n";
        let (status, _) = request(&sim, &ios[1], stray.into()).await;
        assert_eq!(status, 400);
    });
}
