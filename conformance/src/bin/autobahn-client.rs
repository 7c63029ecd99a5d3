//! `autobahn-client --runtime tokio|smol [--url ws://127.0.0.1:9001] [--agent NAME]`:
//! drives Autobahn's `fuzzingserver` with wirestate's WebSocket client: runs every case
//! (echoing each message; with `--lend`, lent in place by `recv_with`), then asks the
//! suite to write its reports.

use std::future::Future;
use std::sync::Arc;

use wirestate_async::{Clock, Error, Transport, WebSocket};
use wirestate_conformance::{echo, init_tracing, lends, ws_config, Args, Runtime};
use wirestate_engine::ws::Message;

const USAGE: &str = "autobahn-client [--runtime tokio|smol] [--url ws://HOST:PORT] \
                     [--agent NAME] [--no-deflate] [--lend]";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();
    let args = Args::parse(USAGE, "127.0.0.1:9001");
    let agent = args.agent.clone().unwrap_or_else(|| match args.runtime {
        Runtime::Tokio => "wirestate-tokio".into(),
        Runtime::Smol => "wirestate-smol".into(),
    });
    let config = Arc::new(ws_config(&args));
    let count = match args.runtime {
        Runtime::Tokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(run_suite(&args.url, &agent, lends(&args), |url| {
                let config = config.clone();
                async move { wirestate_tokio::connect(&url, config).await }
            }))?,
        Runtime::Smol => smol::block_on(run_suite(&args.url, &agent, lends(&args), |url| {
            let config = config.clone();
            async move { wirestate_smol::connect(&url, config).await }
        }))?,
    };
    eprintln!("autobahn-client: ran {count} cases as {agent}");
    Ok(())
}

/// Runs every case the fuzzing server offers, then has it write its reports.
async fn run_suite<T, C, F, Fut>(
    base: &str,
    agent: &str,
    lend: bool,
    connect: F,
) -> Result<u32, Box<dyn std::error::Error>>
where
    T: Transport,
    C: Clock,
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<WebSocket<T, C>, Error>>,
{
    let count = match connect(format!("{base}/getCaseCount")).await?.recv().await {
        Some(Ok(Message::Text(text))) => text.trim().parse::<u32>()?,
        other => return Err(format!("unexpected answer to getCaseCount: {other:?}").into()),
    };
    for case in 1..=count {
        match connect(format!("{base}/runCase?case={case}&agent={agent}")).await {
            Ok(mut ws) => drop(echo(&mut ws, lend).await),
            Err(e) => eprintln!("case {case}: {e}"),
        }
    }
    echo(
        &mut connect(format!("{base}/updateReports?agent={agent}")).await?,
        lend,
    )
    .await;
    Ok(count)
}
