//! `autobahn-client --runtime tokio|smol [--url ws://127.0.0.1:9001] [--agent NAME]`:
//! drives Autobahn's `fuzzingserver` with wirestate's WebSocket client: runs every case
//! (echoing each message), then asks the suite to write its reports.

use std::sync::Arc;

use wirestate_conformance::{echo, init_tracing, Args, Runtime};
use wirestate_engine::ws::{Config, Message};

const USAGE: &str = "autobahn-client [--runtime tokio|smol] [--url ws://HOST:PORT] [--agent NAME]";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();
    let args = Args::parse(USAGE, "127.0.0.1:9001");
    let agent = args.agent.clone().unwrap_or_else(|| match args.runtime {
        Runtime::Tokio => "wirestate-tokio".into(),
        Runtime::Smol => "wirestate-smol".into(),
    });
    let config = Arc::new(Config::default());
    match args.runtime {
        Runtime::Tokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let count = case_count(
                    wirestate_tokio::connect(&format!("{}/getCaseCount", args.url), config.clone())
                        .await?
                        .recv()
                        .await,
                )?;
                for case in 1..=count {
                    let url = format!("{}/runCase?case={case}&agent={agent}", args.url);
                    match wirestate_tokio::connect(&url, config.clone()).await {
                        Ok(mut ws) => drop(echo(&mut ws).await),
                        Err(e) => eprintln!("case {case}: {e}"),
                    }
                }
                let url = format!("{}/updateReports?agent={agent}", args.url);
                echo(&mut wirestate_tokio::connect(&url, config).await?).await;
                eprintln!("autobahn-client (tokio): ran {count} cases as {agent}");
                Ok(())
            }),
        Runtime::Smol => smol::block_on(async {
            let count = case_count(
                wirestate_smol::connect(&format!("{}/getCaseCount", args.url), config.clone())
                    .await?
                    .recv()
                    .await,
            )?;
            for case in 1..=count {
                let url = format!("{}/runCase?case={case}&agent={agent}", args.url);
                match wirestate_smol::connect(&url, config.clone()).await {
                    Ok(mut ws) => drop(echo(&mut ws).await),
                    Err(e) => eprintln!("case {case}: {e}"),
                }
            }
            let url = format!("{}/updateReports?agent={agent}", args.url);
            echo(&mut wirestate_smol::connect(&url, config).await?).await;
            eprintln!("autobahn-client (smol): ran {count} cases as {agent}");
            Ok(())
        }),
    }
}

fn case_count(
    first: Option<Result<Message, wirestate_engine::drive::Error>>,
) -> Result<u32, Box<dyn std::error::Error>> {
    match first {
        Some(Ok(Message::Text(text))) => Ok(text.trim().parse()?),
        other => Err(format!("unexpected answer to getCaseCount: {other:?}").into()),
    }
}
