//! `sio-client --runtime tokio|smol --url http://HOST:PORT [--recovery-url URL]`: our
//! Socket.IO client against a server with the handlers of `sio-server` (ours, or
//! `interop/sio-server.mjs` on Node's socket.io): connect with auth, events with
//! binary, acks both ways, namespace multiplexing, middleware refusal, and automatic
//! reconnection after the server restarts (the client prints `RESTART-ME` and waits
//! for whoever runs it to restart the server). With `--recovery-url` (a server with
//! connection-state recovery), also recovery after a dropped connection. URLs may be
//! `https://`, with `--ca FILE` the PEM CA to trust.
//!
//! Prints one line per case and ends with `N passed, M failed`.
#![allow(clippy::print_stdout)] // A test runner: its report is its stdout.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use serde_json::{json, Value};
use wirestate_async::sio::{ClientSocket, IoOptions};
use wirestate_conformance::{init_tracing, Args, Runtime};
use wirestate_engine::sio::{ClientConfig, Payload};

const USAGE: &str = "sio-client [--runtime tokio|smol] --url http[s]://HOST:PORT \
                     [--recovery-url http[s]://HOST:PORT] [--ca FILE]";

type Sleep = fn(Duration) -> Pin<Box<dyn Future<Output = ()> + Send>>;
type Connect = fn(&str, IoOptions) -> Result<ClientSocket, wirestate_async::Error>;

/// Events of one name, collected by a handler, awaited by a case.
#[derive(Clone, Default)]
struct Inbox(Arc<Mutex<(VecDeque<Payload>, Option<Waker>)>>);

impl Inbox {
    fn on(socket: &ClientSocket, name: &str) -> Self {
        let inbox = Self::default();
        let sink = inbox.clone();
        socket.on(name, move |payload, _ack| sink.push(payload));
        inbox
    }

    fn push(&self, payload: Payload) {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        q.0.push_back(payload);
        if let Some(w) = q.1.take() {
            w.wake();
        }
    }

    async fn next(&self, sleep: Sleep, within: Duration) -> Result<Payload, String> {
        self.next_named("event", sleep, within).await
    }

    async fn next_named(
        &self,
        what: &str,
        sleep: Sleep,
        within: Duration,
    ) -> Result<Payload, String> {
        let mut timer = sleep(within);
        poll_fn(|cx| {
            let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = q.0.pop_front() {
                return Poll::Ready(Ok(p));
            }
            q.1 = Some(cx.waker().clone());
            drop(q);
            timer
                .as_mut()
                .poll(cx)
                .map(|()| Err(format!("no {what} within {within:?}")))
        })
        .await
    }
}

async fn within<T>(sleep: Sleep, d: Duration, f: impl Future<Output = T>) -> Result<T, String> {
    let mut f = std::pin::pin!(f);
    let mut timer = sleep(d);
    poll_fn(|cx| {
        if let Poll::Ready(v) = f.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        timer
            .as_mut()
            .poll(cx)
            .map(|()| Err(format!("timed out after {d:?}")))
    })
    .await
}

/// How the server is reached (`--ca`), set once by `main`.
static CONNECTOR: std::sync::OnceLock<wirestate_async::Connector> = std::sync::OnceLock::new();

fn options(auth: Value) -> IoOptions {
    IoOptions::default()
        .auth(auth)
        .config(
            ClientConfig::default()
                .reconnection_delay(Duration::from_millis(200), Duration::from_millis(1000)),
        )
        .connector(CONNECTOR.get().cloned().unwrap_or_default())
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

const SECOND: Duration = Duration::from_secs(5);

async fn connect_with_auth(url: &str, connect: Connect, sleep: Sleep) -> Result<(), String> {
    let socket =
        connect(url, options(json!({"token": "abc", "n": 1}))).map_err(|e| e.to_string())?;
    let auth = Inbox::on(&socket, "auth");
    within(sleep, SECOND, socket.wait_connected())
        .await?
        .map_err(|e| e.to_string())?;
    let got = auth.next(sleep, SECOND).await?;
    socket.io().close();
    check(*got.values() == [json!({"token": "abc", "n": 1})], || {
        format!("auth {:?}", got.values())
    })
}

async fn events_and_acks(url: &str, connect: Connect, sleep: Sleep) -> Result<(), String> {
    let socket = connect(url, options(Value::Null)).map_err(|e| e.to_string())?;
    let back = Inbox::on(&socket, "message-back");
    let answer = Inbox::on(&socket, "answer");
    socket.on("ask", |payload, ack| {
        if let Some(ack) = ack {
            let q: String = payload.get(0).unwrap_or_default();
            let _ = ack.send(&format!("rust says {q}"));
        }
    });
    // Emitted before the connection is up: buffered, then sent.
    let args = Payload::new()
        .arg(json!(1))
        .arg(json!("two"))
        .arg(json!({"three": [3]}))
        .bin(vec![1u8, 2, 3])
        .arg(json!("h\u{e9}llo \u{20ac}\u{1d11e}"));
    socket
        .emit_payload("message", args.clone())
        .map_err(|e| e.to_string())?;
    let got = back.next(sleep, SECOND).await?;
    check(got == args, || format!("message-back {got:?}"))?;
    let acked = within(
        sleep,
        SECOND,
        socket.emit_with_ack("message-with-ack", args.clone(), Some(SECOND)),
    )
    .await?
    .map_err(|e| e.to_string())?;
    check(acked == args, || format!("ack {acked:?}"))?;
    let acked = within(
        sleep,
        SECOND,
        socket
            .timeout(SECOND)
            .emit_with_ack("message-with-ack", &"one"),
    )
    .await?
    .map_err(|e| e.to_string())?;
    check(*acked.values() == [json!("one")], || {
        format!("ack {acked:?}")
    })?;
    socket
        .emit_payload("ask-me", Payload::new())
        .map_err(|e| e.to_string())?;
    let got = answer.next(sleep, SECOND).await?;
    socket.io().close();
    check(*got.values() == [json!("rust says question")], || {
        format!("answer {:?}", got.values())
    })
}

async fn multiplexing_and_middleware(
    url: &str,
    connect: Connect,
    sleep: Sleep,
) -> Result<(), String> {
    let main = connect(url, options(json!({"m": 1}))).map_err(|e| e.to_string())?;
    let custom = main.io().socket("/custom", json!({"m": 2}));
    let auth_main = Inbox::on(&main, "auth");
    let auth_custom = Inbox::on(&custom, "auth");
    let a = auth_main.next(sleep, SECOND).await?;
    let b = auth_custom.next(sleep, SECOND).await?;
    check(
        *a.values() == [json!({"m": 1})] && *b.values() == [json!({"m": 2})],
        || format!("{a:?} {b:?}"),
    )?;
    check(main.id() != custom.id() && main.id().is_some(), || {
        "one sid per namespace".into()
    })?;
    let refused = main.io().socket("/secure", json!({"token": "wrong"}));
    let err = within(sleep, SECOND, refused.wait_connected())
        .await?
        .err()
        .ok_or("the refused namespace connected")?;
    check(
        err.message == "not authorized" && err.data == Some(json!({"code": 401})),
        || format!("{err:?}"),
    )?;
    let welcome = {
        let ok = main.io().socket("/secure", json!({"token": "secret"}));
        let inbox = Inbox::on(&ok, "welcome");
        inbox.next(sleep, SECOND).await?
    };
    main.io().close();
    check(*welcome.values() == [json!({"user": "alice"})], || {
        format!("welcome {welcome:?}")
    })
}

async fn reconnects_after_restart(url: &str, connect: Connect, sleep: Sleep) -> Result<(), String> {
    let socket = connect(url, options(json!({"again": true}))).map_err(|e| e.to_string())?;
    let auth = Inbox::on(&socket, "auth");
    let reconnects = Inbox::default();
    let sink = reconnects.clone();
    socket
        .io()
        .on_reconnect(move |n| sink.push(Payload::new().arg(json!(n))));
    auth.next(sleep, SECOND).await?;
    println!("RESTART-ME");
    let _ = std::io::stdout().flush();
    let n = reconnects.next(sleep, Duration::from_secs(30)).await?;
    // A fresh server: the socket connects again with its auth, and works.
    let again = auth.next(sleep, SECOND).await?;
    check(*again.values() == [json!({"again": true})], || {
        format!("auth {again:?}")
    })?;
    let acked = within(
        sleep,
        SECOND,
        socket
            .timeout(SECOND)
            .emit_with_ack("message-with-ack", &"after"),
    )
    .await?
    .map_err(|e| e.to_string())?;
    socket.io().close();
    check(*acked.values() == [json!("after")], || {
        format!("ack {acked:?}")
    })?;
    check(n.values()[0].as_u64().is_some_and(|n| n >= 1), || {
        format!("attempts {n:?}")
    })
}

async fn recovery(url: &str, connect: Connect, sleep: Sleep) -> Result<(), String> {
    let a = connect(url, options(Value::Null)).map_err(|e| e.to_string())?;
    let other = connect(url, options(Value::Null)).map_err(|e| e.to_string())?;
    let room = Inbox::on(&a, "room-message");
    let back = Inbox::on(&a, "message-back");
    let connects = Inbox::default();
    let sink = connects.clone();
    a.on_connect(move |recovered| sink.push(Payload::new().arg(json!(recovered))));
    let first = connects.next_named("first connect", sleep, SECOND).await?;
    check(*first.values() == [json!(false)], || {
        "first connection recovered?".into()
    })?;
    within(sleep, SECOND, other.wait_connected())
        .await?
        .map_err(|e| e.to_string())?;
    let first_id = a.id();
    let joined = within(
        sleep,
        SECOND,
        a.timeout(SECOND).emit_with_ack("join", &"rec"),
    )
    .await?
    .map_err(|e| e.to_string())?;
    check(*joined.values() == [json!("joined")], || {
        format!("join {joined:?}")
    })?;
    // An event with an offset to resume from.
    a.emit("message", &"first").map_err(|e| e.to_string())?;
    back.next_named("message-back", sleep, SECOND).await?;
    // The server drops the connection; while a is away, its room gets a message.
    let disconnected = Inbox::default();
    let sink = disconnected.clone();
    a.on_disconnect(move |reason| sink.push(Payload::new().arg(json!(reason.as_str()))));
    a.emit("drop-me", &()).map_err(|e| e.to_string())?;
    disconnected.next_named("disconnect", sleep, SECOND).await?;
    other
        .emit_payload(
            "to-room",
            Payload::new().arg(json!("rec")).arg(json!("while-away")),
        )
        .map_err(|e| e.to_string())?;
    let again = connects
        .next_named("reconnect", sleep, Duration::from_secs(10))
        .await?;
    check(*again.values() == [json!(true)], || {
        format!("recovered {again:?}")
    })?;
    check(a.id() == first_id, || "same id".into())?;
    let missed = room
        .next_named("missed room-message", sleep, SECOND)
        .await?;
    a.io().close();
    other.io().close();
    check(
        missed.values().first() == Some(&json!("while-away")),
        || format!("missed {missed:?}"),
    )
}

async fn run(args: Args, connect: Connect, sleep: Sleep) -> bool {
    let url = args.url.clone();
    let mut results: Vec<(&str, Result<(), String>)> = Vec::new();
    results.push((
        "connect with auth",
        connect_with_auth(&url, connect, sleep).await,
    ));
    results.push((
        "events with binary, acks both ways, buffering",
        events_and_acks(&url, connect, sleep).await,
    ));
    results.push((
        "namespace multiplexing and middleware",
        multiplexing_and_middleware(&url, connect, sleep).await,
    ));
    results.push((
        "reconnection after a server restart",
        reconnects_after_restart(&url, connect, sleep).await,
    ));
    if let Some(r) = &args.recovery_url {
        results.push((
            "connection state recovery",
            recovery(r, connect, sleep).await,
        ));
    }
    let mut failed = 0;
    for (name, r) in &results {
        match r {
            Ok(()) => println!("ok   wirestate client ({:?}) {name}", args.runtime),
            Err(e) => {
                failed += 1;
                println!("FAIL wirestate client ({:?}) {name}: {e}", args.runtime);
            }
        }
    }
    println!("{} passed, {failed} failed", results.len() - failed);
    failed == 0
}

fn tokio_sleep(d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(tokio::time::sleep(d))
}

fn smol_sleep(d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        smol::Timer::after(d).await;
    })
}

fn main() -> std::io::Result<()> {
    init_tracing();
    let args = Args::parse(USAGE, "127.0.0.1:3000");
    let _ = CONNECTOR.set(args.connector()?);
    let ok = match args.runtime {
        Runtime::Tokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(run(args, wirestate_tokio::sio::io, tokio_sleep)),
        Runtime::Smol => smol::block_on(run(args, wirestate_smol::sio::io, smol_sleep)),
    };
    std::process::exit(if ok { 0 } else { 1 })
}
