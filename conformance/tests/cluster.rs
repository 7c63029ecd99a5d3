//! The cluster API in Rust, on a real `redis-server` (Debian's, started here on a free
//! loopback port): two servers on one Redis, on tokio and on smol; what one server sees
//! of the other's sockets (`fetch_sockets`: id, rooms, data, handshake), operations on
//! those remote sockets, `server_side_emit_with_ack`, broadcast acks across servers,
//! and the admin UI's namespace (one UI sees both servers); and no sticky sessions: a
//! raw client whose requests go to either server (directly, and through axum and the
//! tower layer).
//! The same wire format against Node's servers is `conformance/cluster.sh`'s.

use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::future::poll_fn;

use serde_json::{json, Value};
use wirestate_async::sio::{self, IoOptions, Payload, RedisOptions, SocketIo};
use wirestate_async::{Clock, Runtime};

const SECOND: Duration = Duration::from_secs(5);

/// A server being started: its URL, once it listens.
type Serving = std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>>;

/// A `redis-server` on a free loopback port, shut down on drop.
struct Redis {
    port: u16,
    dir: std::path::PathBuf,
    /// What `redis-cli` needs to reach it (TLS, password).
    cli_args: Vec<String>,
    scheme: &'static str,
    password: Option<&'static str>,
}

impl Redis {
    /// Starts one; `None` (and a note) when `redis-server` is not installed, which
    /// fails the test under CI=true.
    fn start() -> Option<Self> {
        Self::start_with(false, None)
    }

    /// With `tls`, TLS only (the test CA's certificate for 127.0.0.1); with a
    /// password, `requirepass`.
    fn start_with(tls: bool, password: Option<&'static str>) -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "redis-server is required under CI"
            );
            eprintln!("redis-server is not installed: cluster test not run");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = std::env::temp_dir().join(format!("wirestate-redis-{port}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../async/tests/tls");
        let mut server_args: Vec<String> = Vec::new();
        let mut cli_args: Vec<String> = vec!["-p".into(), port.to_string()];
        if tls {
            server_args.extend([
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
            ]);
            for (flag, file) in [
                ("--tls-cert-file", "cert.pem"),
                ("--tls-key-file", "key.pem"),
                ("--tls-ca-cert-file", "ca.pem"),
            ] {
                server_args.extend([flag.into(), format!("{fixtures}/{file}")]);
            }
            server_args.extend(["--tls-auth-clients".into(), "no".into()]);
            cli_args.extend([
                "--tls".into(),
                "--cacert".into(),
                format!("{fixtures}/ca.pem"),
            ]);
        } else {
            server_args.extend(["--port".into(), port.to_string()]);
        }
        if let Some(p) = password {
            server_args.extend(["--requirepass".into(), p.into()]);
            cli_args.extend(["-a".into(), p.into(), "--no-auth-warning".into()]);
        }
        let status = Command::new("redis-server")
            .args(&server_args)
            .args(["--bind", "127.0.0.1", "--daemonize", "yes"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .status()
            .expect("redis-server");
        assert!(status.success());
        let redis = Self {
            port,
            dir,
            cli_args,
            scheme: if tls { "rediss" } else { "redis" },
            password,
        };
        let deadline = Instant::now() + SECOND;
        while redis.cli(&["ping"]) != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(redis)
    }

    fn url(&self) -> String {
        let auth = self.password.map(|p| format!(":{p}@")).unwrap_or_default();
        format!("{}://{auth}127.0.0.1:{}", self.scheme, self.port)
    }

    fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(&self.cli_args)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    }

    /// Waits until `n` servers subscribe to the request channel of `/` (sleeping on
    /// `rt`, so that its tasks run meanwhile).
    async fn wait_servers<R: Runtime>(&self, rt: &R, n: usize) {
        let deadline = Instant::now() + SECOND;
        loop {
            let out = self.cli(&["pubsub", "numsub", "socket.io-request#/#"]);
            if out.lines().last() == Some(&n.to_string()) {
                return;
            }
            assert!(Instant::now() < deadline, "{n} servers expected: {out}");
            sleep(rt, Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.cli(&["shutdown", "nosave"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Server B's application: a socket joins `team`, its data and user name its user,
/// and the server answers `ping` from other servers with `pong`.
fn setup_b(io: &SocketIo) {
    io.of("/").on_server_side_emit("ping", |args, ack| {
        if let Some(ack) = ack {
            let _ = ack.send(&json!({"pong": args}));
        }
    });
    io.of("/").on_connection(|socket| async move {
        socket.set_data(json!({"user": socket.auth()["name"]}));
        socket.join(["team"]);
        if let Some(name) = socket.auth()["name"].as_str() {
            socket.set_user(name);
        }
    });
}

async fn sleep<R: Runtime>(rt: &R, d: Duration) {
    let mut clock = rt.clock();
    let deadline = clock.now() + d;
    poll_fn(|cx| clock.poll_until(cx, deadline)).await
}

/// Polls `probe` until it is true, for at most 5 s.
async fn until<R: Runtime, F: std::future::Future<Output = bool>>(
    rt: &R,
    mut probe: impl FnMut() -> F,
) -> bool {
    let deadline = Instant::now() + SECOND;
    while Instant::now() < deadline {
        if probe().await {
            return true;
        }
        sleep(rt, Duration::from_millis(20)).await;
    }
    false
}

/// Servers A and B (the conformance configuration, with `heartbeat` as ping interval
/// and timeout if given) on `redis`, and their memberships.
fn two_servers<R: Runtime>(
    rt: &R,
    redis: &Redis,
    heartbeat: Option<Duration>,
) -> (SocketIo, SocketIo, sio::RedisCluster, sio::RedisCluster) {
    let mut config = wirestate_conformance::sio_app::config(false);
    if let Some(interval) = heartbeat {
        let eio = config.eio.clone().heartbeat(interval, interval);
        config = config.eio(eio);
    }
    let a = sio::server(rt, config.clone()).expect("server a");
    let b = sio::server(rt, config).expect("server b");
    let url = || RedisOptions::new(&redis.url()).expect("url");
    let cluster_a = sio::attach_redis(rt, &a, url()).expect("a joins");
    let cluster_b = sio::attach_redis(rt, &b, url()).expect("b joins");
    (a, b, cluster_a, cluster_b)
}

/// Two servers on one Redis, on runtime `rt` with its listeners; `serve` runs a server
/// on a listener bound to a free port and returns its URL.
async fn two_servers_share_their_sockets<R: Runtime>(
    rt: &R,
    redis: &Redis,
    serve: impl Fn(SocketIo) -> Serving,
) {
    let (a, b, cluster_a, _cluster_b) = two_servers(rt, redis, None);
    setup_b(&b);
    a.instrument(sio::AdminUi::new().server_id("server-a"));
    b.instrument(sio::AdminUi::new().server_id("server-b"));
    let url_a = serve(a.clone()).await;
    let url_b = serve(b.clone()).await;
    assert!(
        until(rt, || {
            let ok = cluster_a.is_connected();
            async move { ok }
        })
        .await
    );
    redis.wait_servers(rt, 2).await;

    // A client of B, with auth; it answers `question` and records `hi`.
    let got = Arc::new(Mutex::new(Vec::<Value>::new()));
    let options = IoOptions::default().auth(json!({"name": "bob"}));
    let client = sio::io(rt, &url_b, options).expect("url");
    let sink = got.clone();
    client.on("hi", move |payload, _| {
        sink.lock().expect("lock").extend(payload.into_parts().0)
    });
    client.on("question", |_, ack| {
        if let Some(ack) = ack {
            let _ = ack.send(&"answer");
        }
    });
    client.wait_connected().await.expect("connected");
    let id = client.id().expect("id");

    // A sees B's socket: id, rooms, data, handshake.
    let found = a.of("/").to("team").fetch_sockets().await.expect("fetched");
    assert_eq!(found.len(), 1, "{found:?}");
    let remote = &found[0];
    assert_eq!(remote.id, id);
    assert!(remote.rooms.contains(&"team".to_owned()) && remote.rooms.contains(&id));
    assert_eq!(remote.data, json!({"user": "bob"}));
    assert_eq!(remote.handshake["auth"], json!({"name": "bob"}));
    assert_eq!(remote.handshake["query"]["EIO"], json!("4"));
    assert!(remote.handshake["headers"]["host"].is_string());
    assert!(remote.handshake["issued"]
        .as_u64()
        .is_some_and(|t| t > 1_700_000_000_000));

    // Every namespace at once: asked namespace by namespace.
    let everywhere = a.all_namespaces().fetch_sockets().await.expect("fetched");
    assert_eq!(everywhere.iter().map(|s| &s.id).collect::<Vec<_>>(), [&id]);

    // Operations on the remote socket reach it through B.
    remote.emit("hi", &"from a").expect("emit");
    assert!(
        until(rt, || {
            let n = got.lock().expect("lock").len();
            async move { n == 1 }
        })
        .await
    );
    assert_eq!(*got.lock().expect("lock"), [json!("from a")]);

    // Users: bob is B's; A reaches him and sees him online through the cluster.
    assert!(!a.user_online("bob") && b.user_online("bob"));
    assert_eq!(a.fetch_user_online("bob").await, Ok(true));
    assert_eq!(a.fetch_user_online("nobody").await, Ok(false));
    assert_eq!(a.emit_to_user("bob", "hi", &"to bob").expect("emit"), 0);
    assert!(
        until(rt, || {
            let n = got.lock().expect("lock").len();
            async move { n == 2 }
        })
        .await,
        "emit_to_user crossed the cluster"
    );
    assert_eq!(got.lock().expect("lock")[1], json!("to bob"));

    // The admin UI on A sees both servers, B's socket, and B's room changes.
    let seen = Arc::new(Mutex::new(Vec::<(String, Value)>::new()));
    let admin = sio::io(rt, &format!("{url_a}/admin"), IoOptions::default()).expect("url");
    for event in ["server_stats", "all_sockets", "room_joined"] {
        let sink = seen.clone();
        admin.on(event, move |payload, _| {
            let first = payload
                .into_parts()
                .0
                .into_iter()
                .next()
                .unwrap_or(Value::Null);
            sink.lock().expect("lock").push((event.to_owned(), first));
        });
    }
    admin.wait_connected().await.expect("admin connected");
    let has = |f: &dyn Fn(&(String, Value)) -> bool| seen.lock().expect("lock").iter().any(f);
    assert!(
        until(rt, || {
            let both = ["server-a", "server-b"]
                .iter()
                .all(|id| has(&|(n, v)| n == "server_stats" && v["serverId"] == *id));
            async move { both }
        })
        .await,
        "server_stats from both servers"
    );
    assert!(has(&|(n, v)| n == "all_sockets"
        && v.as_array().is_some_and(|all| all
            .iter()
            .any(|s| s["id"] == id.as_str()))));
    remote.join(["vip"]);
    assert!(
        until(rt, || {
            let joined = has(&|(n, v)| n == "room_joined" && v == "/");
            async move { joined }
        })
        .await,
        "B's room_joined reached A's admin socket"
    );
    admin.io().close();
    assert!(
        until(rt, || {
            let op = a.of("/").to("vip");
            async move { op.fetch_sockets().await.is_ok_and(|f| f.len() == 1) }
        })
        .await,
        "the remote socket joined vip"
    );

    // serverSideEmit with acks: B answers.
    let answers = a
        .of("/")
        .server_side_emit_with_ack("ping", vec![json!(1)])
        .await;
    assert_eq!(answers, Ok(vec![json!({"pong": [1]})]));

    // A broadcast with acks counts B's client (no sid: it is not A's).
    let acks = a
        .of("/")
        .sockets()
        .timeout(Duration::from_secs(1))
        .emit_with_ack("question", Payload::new())
        .collect()
        .await;
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0].0, None);
    assert_eq!(
        acks[0].1.as_ref().map(|p| p.values().into_owned()),
        Ok(vec![json!("answer")])
    );

    // Disconnected from A.
    remote.disconnect(false);
    assert!(
        until(rt, || {
            let c = client.connected();
            async move { !c }
        })
        .await,
        "disconnected"
    );
    assert!(a
        .of("/")
        .sockets()
        .fetch_sockets()
        .await
        .expect("fetched")
        .is_empty());
    cluster_a.close();
}

/// Serves `io` on a free loopback port with tokio; its URL.
fn serve_tokio(io: SocketIo) -> Serving {
    Box::pin(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(wirestate_tokio::sio::serve(io, listener));
        url
    })
}

/// Serves `io` on a free loopback port with smol; its URL.
fn serve_smol(io: SocketIo) -> Serving {
    Box::pin(async move {
        let listener = smol::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        smol::spawn(wirestate_smol::sio::serve(io, listener)).detach();
        url
    })
}

/// Serves `io` through axum and the tower layer on a free loopback port; its URL.
fn serve_axum(io: SocketIo) -> Serving {
    Box::pin(async move {
        let service = tower_layer::Layer::layer(
            &wirestate_tokio::sio::layer(&io),
            wirestate_tokio::tower::NotFound,
        );
        let app = axum::Router::new().route_service("/socket.io/", service);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    })
}

/// Runs `test` on a current-thread tokio runtime.
fn on_tokio<F: std::future::Future>(test: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(test)
}

#[test]
fn two_tokio_servers_share_their_sockets() {
    let Some(redis) = Redis::start() else { return };
    on_tokio(two_servers_share_their_sockets(
        &wirestate_tokio::Tokio,
        &redis,
        serve_tokio,
    ));
}

#[test]
fn two_smol_servers_share_their_sockets() {
    let Some(redis) = Redis::start() else { return };
    smol::block_on(two_servers_share_their_sockets(
        &wirestate_smol::Smol,
        &redis,
        serve_smol,
    ));
}

#[test]
fn servers_join_a_tls_redis_with_a_password_and_one_leaves() {
    let Some(redis) = Redis::start_with(true, Some("s3cret")) else {
        return;
    };
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/../async/tests/tls/ca.pem");
    let options = |url: &str| {
        RedisOptions::new(url)
            .expect("url")
            .tls(wirestate_tokio::tls::TlsConnector::from_ca_file(ca).expect("ca"))
    };
    on_tokio(async {
        let rt = wirestate_tokio::Tokio;
        let config = wirestate_conformance::sio_app::config(false);
        let a = sio::server(&rt, config.clone()).expect("server a");
        let b = sio::server(&rt, config).expect("server b");
        let cluster_a = sio::attach_redis(&rt, &a, options(&redis.url())).expect("a joins");
        let cluster_b = sio::attach_redis(&rt, &b, options(&redis.url())).expect("b joins");
        // A wrong password: that server stays alone (and says why in its log).
        let c = sio::server(&rt, sio::Config::default()).expect("server c");
        let wrong = redis.url().replace("s3cret", "wrong");
        let cluster_c = sio::attach_redis(&rt, &c, options(&wrong)).expect("c tries");
        setup_b(&b);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url_b = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(wirestate_tokio::sio::serve(b.clone(), listener));
        assert!(
            until(&rt, || {
                let up = cluster_a.is_connected() && cluster_b.is_connected();
                async move { up }
            })
            .await
        );
        redis.wait_servers(&rt, 2).await;
        let client = sio::io(&rt, &url_b, IoOptions::default()).expect("url");
        client.wait_connected().await.expect("connected");
        let id = client.id().expect("id");
        let found = a.of("/").to("team").fetch_sockets().await.expect("fetched");
        assert_eq!(found.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), [id]);
        assert!(found[0].local().is_none());
        // B's own view: its socket, local.
        let mine = b.of("/").to("team").fetch_sockets().await.expect("fetched");
        assert!(mine.len() == 1 && mine[0].local().is_some());
        assert!(!cluster_c.is_connected());
        let alone = c.of("/").sockets().fetch_sockets().await.expect("alone");
        assert!(alone.is_empty());

        // B leaves: A no longer sees its sockets, and waits for no one.
        cluster_b.close();
        redis.wait_servers(&rt, 1).await;
        let started = Instant::now();
        let left = a.of("/").to("team").fetch_sockets().await.expect("alone");
        assert!(left.is_empty());
        assert!(started.elapsed() < Duration::from_secs(1));
        let still = b.of("/").to("team").fetch_sockets().await.expect("alone");
        assert_eq!(still.len(), 1);
        cluster_c.close();
    });
}

/// A blocking HTTP/1.1 exchange on a fresh connection: the status and the body.
fn http(addr: &str, method: &str, target: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(40)))
        .expect("timeout");
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, body.to_owned())
}

/// Polls (`GET`) session `sid` on `addr` until a payload holds `want`.
fn poll_until(addr: &str, sid: &str, want: &str) -> String {
    let target = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let mut seen = String::new();
    for _ in 0..5 {
        let (status, body) = http(addr, "GET", &target, "");
        assert_eq!(status, 200, "{body}");
        seen.push_str(&body);
        seen.push('\u{1e}');
        if seen.contains(want) {
            return seen;
        }
    }
    panic!("{want} never came: {seen}");
}

/// Sends one text frame (masked, as a client must).
fn ws_send(s: &mut std::net::TcpStream, text: &str) {
    use std::io::Write;
    assert!(text.len() < 126);
    let mut frame = vec![0x81, 0x80 | text.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(text.as_bytes());
    s.write_all(&frame).expect("frame");
}

/// Reads one unfragmented, uncompressed text frame.
fn ws_recv(s: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut head = [0u8; 2];
    s.read_exact(&mut head).expect("frame head");
    assert_eq!(head[0], 0x81, "a final text frame");
    let len = match head[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).expect("length");
            usize::from(u16::from_be_bytes(l))
        }
        n => usize::from(n),
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).expect("payload");
    String::from_utf8(payload).expect("text")
}

/// A new session on `addr`: its id and its polling URL.
fn handshake(addr: &str) -> (String, String) {
    let base = "/socket.io/?EIO=4&transport=polling";
    let (status, open) = http(addr, "GET", base, "");
    assert_eq!(status, 200, "{open}");
    let open: Value = serde_json::from_str(&open[1..]).expect("open packet");
    let sid = open["sid"].as_str().expect("sid").to_owned();
    assert_eq!(sid.len(), 28, "a sid tagged with its node: {sid}");
    let target = format!("{base}&sid={sid}");
    (sid, target)
}

/// A client that gives up a poll parked through `other` ends its session, as one
/// that gives up a poll on the session's own server does.
fn abort_across(first: &str, other: &str) {
    use std::io::Write;
    let (_, target) = handshake(first);
    assert_eq!(http(other, "POST", &target, "40"), (200, "ok".to_owned()));
    // The connect packet is taken, so that the next poll parks.
    let (status, _) = http(other, "GET", &target, "");
    assert_eq!(status, 200);
    {
        let mut s = std::net::TcpStream::connect(other).expect("connect");
        write!(s, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + SECOND;
    loop {
        let (status, body) = http(first, "POST", &target, "3");
        if status == 400 {
            assert_eq!(body, r#"{"code":1,"message":"Session ID unknown"}"#);
            break;
        }
        assert!(Instant::now() < deadline, "the session outlived its poll");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A polling client whose requests go to either server: the handshake on `first`,
/// the rest on `other` (and some on `first`), the upgrade on `other`. Blocking: run
/// it on a thread of its own.
fn session_across(first: &str, other: &str) {
    let (sid, target) = handshake(first);

    // Connect on the other server; the answer comes through it too.
    assert_eq!(http(other, "POST", &target, "40"), (200, "ok".to_owned()));
    poll_until(other, &sid, "40{\"sid\"");

    // An event posted to one, its ack polled from the other.
    let (status, _) = http(first, "POST", &target, "421[\"message-with-ack\",\"one\"]");
    assert_eq!(status, 200);
    poll_until(other, &sid, "431[\"one\"]");

    // A poll parked on the other server is answered when the ack comes.
    let parked = {
        let (other, sid) = (other.to_owned(), sid.clone());
        std::thread::spawn(move || poll_until(&other, &sid, "432[\"two\"]"))
    };
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = http(first, "POST", &target, "422[\"message-with-ack\",\"two\"]");
    assert_eq!(status, 200);
    parked.join().expect("the parked poll");

    // The upgrade, on the other server.
    let mut s = std::net::TcpStream::connect(other).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    {
        use std::io::Write;
        let ws = format!("/socket.io/?EIO=4&transport=websocket&sid={sid}");
        write!(
            s,
            "GET {ws} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .expect("write");
    }
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        std::io::Read::read_exact(&mut s, &mut b).expect("101");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    ws_send(&mut s, "2probe");
    assert_eq!(ws_recv(&mut s), "3probe");
    ws_send(&mut s, "5");
    ws_send(&mut s, "424[\"message-with-ack\",\"four\"]");
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &String| m == "434[\"four\"]") {
        seen.push(ws_recv(&mut s));
        assert!(seen.len() < 10, "{seen:?}");
    }
    // Polling is over for this session once upgraded.
    let (status, _) = http(first, "GET", &target, "");
    assert_eq!(status, 400);
}

/// No sticky sessions: requests for one session go to either of two servers, on
/// runtime `rt` with `serve` as in the test above.
async fn any_server_serves_any_session<R: Runtime>(
    rt: &R,
    redis: &Redis,
    serve: impl Fn(SocketIo) -> Serving,
) {
    // Heartbeats far apart: a session ends only when something ends it.
    let (a, b, cluster_a, cluster_b) = two_servers(rt, redis, Some(Duration::from_secs(20)));
    wirestate_conformance::sio_app::setup_with(&a, true);
    wirestate_conformance::sio_app::setup_with(&b, true);
    let url_a = serve(a.clone()).await;
    let url_b = serve(b.clone()).await;
    redis.wait_servers(rt, 2).await;
    let (addr_a, addr_b) = (url_a[7..].to_owned(), url_b[7..].to_owned());
    let done = Arc::new(Mutex::new(None));
    let result = done.clone();
    std::thread::spawn(move || {
        let outcome = std::panic::catch_unwind(|| {
            session_across(&addr_a, &addr_b);
            session_across(&addr_b, &addr_a);
            abort_across(&addr_a, &addr_b);
            // A session of no node in the cluster is unknown, as Engine.IO says.
            let gone = format!(
                "/socket.io/?EIO=4&transport=polling&sid=zzzzzzzz{}",
                "a".repeat(20)
            );
            let (status, body) = http(&addr_b, "GET", &gone, "");
            assert_eq!(
                (status, body.as_str()),
                (400, r#"{"code":1,"message":"Session ID unknown"}"#)
            );
        });
        *result.lock().expect("lock") = Some(outcome);
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let outcome = loop {
        if let Some(outcome) = done.lock().expect("lock").take() {
            break outcome;
        }
        assert!(Instant::now() < deadline, "the client did not finish");
        sleep(rt, Duration::from_millis(20)).await;
    };
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    // Nothing is left waiting on either side.
    assert!(cluster_a.is_connected() && cluster_b.is_connected());
    cluster_a.close();
    cluster_b.close();
}

#[test]
fn tokio_servers_need_no_sticky_sessions() {
    let Some(redis) = Redis::start() else { return };
    on_tokio(any_server_serves_any_session(
        &wirestate_tokio::Tokio,
        &redis,
        serve_tokio,
    ));
}

#[test]
fn smol_servers_need_no_sticky_sessions() {
    let Some(redis) = Redis::start() else { return };
    smol::block_on(any_server_serves_any_session(
        &wirestate_smol::Smol,
        &redis,
        serve_smol,
    ));
}

#[test]
fn servers_behind_axum_need_no_sticky_sessions() {
    let Some(redis) = Redis::start() else { return };
    on_tokio(any_server_serves_any_session(
        &wirestate_tokio::Tokio,
        &redis,
        serve_axum,
    ));
}
