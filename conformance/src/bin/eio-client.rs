//! `eio-client --runtime tokio|smol --url http://HOST:PORT`: wirestate's Engine.IO
//! client against an echoing Engine.IO server (e.g. Node's `engine.io`): over polling,
//! websocket, and polling→upgrade, it sends text and binary messages and checks the
//! echoes. One line per case, then `N passed, M failed`. The URL may be `https://`
//! (or `wss://`), with `--ca FILE` the PEM CA to trust.
#![allow(clippy::print_stdout)] // A test runner: its report is its stdout.

use std::time::Duration;

use wirestate_async::EioClient;
use wirestate_conformance::{init_tracing, Args, Runtime};
use wirestate_engine::eio::{ClientConfig, ClientEvent, Data};

const USAGE: &str = "eio-client [--runtime tokio|smol] [--url http[s]://HOST:PORT] [--ca FILE]";

fn payloads() -> Vec<Data> {
    vec![
        Data::from("hello"),
        Data::Binary(bytes::Bytes::from_static(&[1, 2, 3, 4])),
        Data::Text("héllo €𝄞 ".repeat(5000).into()),
    ]
}

/// Runs one case: open, (wait for the upgrade), send, check the echoes, close.
async fn case<R: wirestate_async::Runtime>(
    mut client: EioClient<R>,
    expect_upgrade: bool,
) -> Result<(), String> {
    match client.recv().await {
        Some(ClientEvent::Open(_)) => {}
        other => return Err(format!("expected open, got {other:?}")),
    }
    if expect_upgrade {
        match client.recv().await {
            Some(ClientEvent::Upgraded) => {}
            other => return Err(format!("expected upgrade, got {other:?}")),
        }
    }
    for p in payloads() {
        client.send(p).map_err(|e| e.to_string())?;
    }
    let mut got = Vec::new();
    while got.len() < payloads().len() {
        match client.recv().await {
            Some(ClientEvent::Message(d)) => got.push(d),
            Some(ClientEvent::Upgraded) => {}
            other => return Err(format!("expected a message, got {other:?}")),
        }
    }
    if got != payloads() {
        return Err("echo mismatch".into());
    }
    if expect_upgrade && !client.client().is_websocket() {
        return Err("not on websocket".into());
    }
    client.close();
    // Drain until the session has flushed its close and ended.
    while client.recv().await.is_some() {}
    Ok(())
}

async fn run_all<F, R>(connect: F) -> (u32, u32)
where
    F: Fn(ClientConfig) -> EioClient<R>,
    R: wirestate_async::Runtime,
{
    let cases = [
        (
            "polling",
            ClientConfig::default().transports(true, false),
            false,
        ),
        (
            "websocket",
            ClientConfig::default().transports(false, true),
            false,
        ),
        ("polling+upgrade", ClientConfig::default(), true),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, config, upgrade) in cases {
        match case(connect(config), upgrade).await {
            Ok(()) => {
                println!("ok   wirestate eio client {name}");
                passed += 1;
            }
            Err(e) => {
                println!("FAIL wirestate eio client {name}: {e}");
                failed += 1;
            }
        }
    }
    (passed, failed)
}

fn main() -> std::io::Result<()> {
    init_tracing();
    let args = Args::parse(USAGE, "127.0.0.1:3000");
    let url = if args.url.starts_with("ws://") {
        args.url.replacen("ws://", "http://", 1)
    } else {
        args.url.clone()
    };
    let limit = Duration::from_secs(60);
    let connector = args.connector()?;
    let (passed, failed) = match args.runtime {
        Runtime::Tokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let run = run_all(|c| {
                    wirestate_tokio::eio::connect_with(&url, c, connector.clone())
                        .expect("valid url")
                });
                tokio::time::timeout(limit, run).await.unwrap_or((0, 1))
            }),
        Runtime::Smol => smol::block_on(async {
            let run = run_all(|c| {
                wirestate_smol::eio::connect_with(&url, c, connector.clone()).expect("valid url")
            });
            smol::future::or(run, async {
                smol::Timer::after(limit).await;
                (0, 1)
            })
            .await
        }),
    };
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}
