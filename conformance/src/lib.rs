//! Shared pieces of the conformance binaries: command-line parsing, logging set-up, and
//! the runtime-independent echo loop.

use std::net::SocketAddr;
use std::path::PathBuf;

pub mod demo;
pub mod sio_app;
pub mod web;
pub mod ws_rooms;

use wirestate_async::{Clock, Transport, WebSocket};

/// Which async runtime drives the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// tokio, current-thread.
    Tokio,
    /// smol, one local executor.
    Smol,
}

/// Options common to the conformance binaries.
#[derive(Clone, Debug)]
pub struct Args {
    /// `--runtime tokio|smol` (default tokio).
    pub runtime: Runtime,
    /// `--addr HOST:PORT`.
    pub addr: SocketAddr,
    /// `--url URL` (clients).
    pub url: String,
    /// `--agent NAME` (Autobahn client).
    pub agent: Option<String>,
    /// `--recovery-url URL` (Socket.IO client: a server with state recovery).
    pub recovery_url: Option<String>,
    /// Flags without a value, e.g. `--no-deflate`.
    pub flags: Vec<String>,
    /// `--write-timeout MS` (servers): [`wirestate_async::HttpLimits::write_timeout`].
    pub write_timeout: Option<std::time::Duration>,
    /// `--max-connections N` (servers): [`wirestate_async::HttpLimits::max_connections`].
    pub max_connections: Option<usize>,
    /// `--tls-cert FILE --tls-key FILE` (servers): serve `https://`/`wss://` only, with
    /// this PEM certificate chain and key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `--ca FILE` (clients): trust the PEM CA certificates in FILE (only) for
    /// `https://` and `wss://`.
    pub ca: Option<PathBuf>,
    /// `--redis URL` (servers): join the cluster on this Redis.
    pub redis: Option<String>,
    /// `--redis-key KEY` (servers): the cluster's channel prefix (default `socket.io`).
    pub redis_key: Option<String>,
    /// `--parser default|msgpack` (Socket.IO): socket.io-parser or
    /// socket.io-msgpack-parser.
    pub parser: wirestate_engine::sio::Parser,
    /// `--subscription-mode static|dynamic|dynamic-private` (with `--sharded`; default
    /// dynamic, as the reference).
    pub subscription_mode: wirestate_engine::redis::SubscriptionMode,
    /// `--client-js FILE` (demo): the socket.io-client bundle the page loads.
    pub client_js: Option<PathBuf>,
    /// `--admin-ui DIR` (demo): `@socket.io/admin-ui`'s built `ui/dist` directory.
    pub admin_ui: Option<PathBuf>,
    /// `--shards N` (Socket.IO server): serve with N shards, one per thread (0: one
    /// per core).
    pub shards: Option<usize>,
}

impl Args {
    /// The HTTP limits the server flags ask for, over the defaults.
    pub fn http_limits(&self) -> wirestate_async::HttpLimits {
        let mut limits = wirestate_async::HttpLimits::default();
        if let Some(t) = self.write_timeout {
            limits = limits.write_timeout(t);
        }
        if let Some(n) = self.max_connections {
            limits = limits.max_connections(n);
        }
        limits
    }
}

impl Args {
    /// The cluster options of `--redis` and `--redis-key`, if `--redis` was given.
    pub fn redis_options(&self) -> std::io::Result<Option<wirestate_async::sio::RedisOptions>> {
        let Some(url) = &self.redis else {
            let flagged = |f: &String| f == "--sharded" || f == "--redis-cluster";
            if self.redis_key.is_some() || self.flags.iter().any(flagged) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "--redis-key, --sharded and --redis-cluster need --redis",
                ));
            }
            return Ok(None);
        };
        let mut options =
            wirestate_async::sio::RedisOptions::new(url).map_err(std::io::Error::other)?;
        if self.flags.iter().any(|f| f == "--sharded") {
            options = options.sharded(self.subscription_mode);
        }
        if self.flags.iter().any(|f| f == "--redis-cluster") {
            options = options.cluster();
        }
        if let Some(key) = &self.redis_key {
            options = options.key(key.clone());
        }
        Ok(Some(options))
    }

    /// How the clients reach their server: with `--ca`, trusting that CA only.
    pub fn connector(&self) -> std::io::Result<wirestate_async::Connector> {
        let connector = wirestate_async::Connector::default();
        Ok(match &self.ca {
            Some(ca) => connector.tls(wirestate_async::tls::TlsConnector::from_ca_file(ca)?),
            None => connector,
        })
    }

    /// Parses `std::env::args()`, or exits with a usage message.
    pub fn parse(usage: &str, default_addr: &str) -> Self {
        match Self::try_parse(std::env::args().skip(1), default_addr) {
            Ok(args) => args,
            Err(msg) => {
                eprintln!("{msg}\nusage: {usage}");
                std::process::exit(2);
            }
        }
    }

    /// Parses an argument list.
    pub fn try_parse(
        args: impl IntoIterator<Item = String>,
        default_addr: &str,
    ) -> Result<Self, String> {
        let mut parsed = Self {
            runtime: Runtime::Tokio,
            addr: default_addr
                .parse()
                .map_err(|e| format!("bad default address: {e}"))?,
            url: format!("ws://{default_addr}"),
            agent: None,
            recovery_url: None,
            flags: Vec::new(),
            write_timeout: None,
            max_connections: None,
            tls: None,
            ca: None,
            redis: None,
            redis_key: None,
            parser: wirestate_engine::sio::Parser::Default,
            subscription_mode: wirestate_engine::redis::SubscriptionMode::Dynamic,
            client_js: None,
            admin_ui: None,
            shards: None,
        };
        let (mut cert, mut key) = (None, None);
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (arg.clone(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or(format!("{name} needs a value"))
            };
            match name.as_str() {
                "--runtime" => {
                    parsed.runtime = match value()?.as_str() {
                        "tokio" => Runtime::Tokio,
                        "smol" => Runtime::Smol,
                        other => return Err(format!("unknown runtime `{other}` (tokio or smol)")),
                    }
                }
                "--addr" => {
                    parsed.addr = value()?.parse().map_err(|e| format!("bad --addr: {e}"))?
                }
                "--url" => parsed.url = value()?,
                "--agent" => parsed.agent = Some(value()?),
                "--recovery-url" => parsed.recovery_url = Some(value()?),
                "--write-timeout" => {
                    let ms = value()?
                        .parse()
                        .map_err(|e| format!("bad --write-timeout: {e}"))?;
                    parsed.write_timeout = Some(std::time::Duration::from_millis(ms));
                }
                "--max-connections" => {
                    parsed.max_connections = Some(
                        value()?
                            .parse()
                            .map_err(|e| format!("bad --max-connections: {e}"))?,
                    );
                }
                "--tls-cert" => cert = Some(PathBuf::from(value()?)),
                "--ca" => parsed.ca = Some(PathBuf::from(value()?)),
                "--tls-key" => key = Some(PathBuf::from(value()?)),
                "--redis" => parsed.redis = Some(value()?),
                "--client-js" => parsed.client_js = Some(PathBuf::from(value()?)),
                "--admin-ui" => parsed.admin_ui = Some(PathBuf::from(value()?)),
                "--redis-key" => parsed.redis_key = Some(value()?),
                "--shards" => {
                    parsed.shards =
                        Some(value()?.parse().map_err(|e| format!("bad --shards: {e}"))?);
                }
                "--subscription-mode" => {
                    use wirestate_engine::redis::SubscriptionMode as M;
                    parsed.subscription_mode = match value()?.as_str() {
                        "static" => M::Static,
                        "dynamic" => M::Dynamic,
                        "dynamic-private" => M::DynamicPrivate,
                        other => return Err(format!("unknown subscription mode `{other}`")),
                    }
                }
                "--parser" => {
                    parsed.parser = match value()?.as_str() {
                        "default" => wirestate_engine::sio::Parser::Default,
                        "msgpack" => wirestate_engine::sio::Parser::Msgpack,
                        other => {
                            return Err(format!("unknown parser `{other}` (default or msgpack)"))
                        }
                    }
                }
                "-h" | "--help" => return Err(String::new()),
                flag if flag.starts_with("--") && inline.is_none() => {
                    parsed.flags.push(flag.to_owned())
                }
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        parsed.tls = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together".to_owned()),
        };
        Ok(parsed)
    }
}

/// The WebSocket configuration of the conformance binaries: default limits, and
/// permessage-deflate on (compressing every message, so that the suites check our
/// compressor too) unless `--no-deflate` was given.
pub fn ws_config(args: &Args) -> wirestate_engine::ws::Config {
    let config = wirestate_engine::ws::Config::default();
    if args.flags.iter().any(|f| f == "--no-deflate") {
        config
    } else {
        config.deflate(wirestate_engine::ws::DeflateConfig::default().threshold(0))
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `warn`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Echoes every message back until the connection ends (completing the closing
/// handshake). Returns how many messages were echoed. With `lend`, each message is
/// lent in place (`recv_with`) and answered from there; otherwise received
/// (`recv`) and sent back.
pub async fn echo<T: Transport, C: Clock>(ws: &mut WebSocket<T, C>, lend: bool) -> u64 {
    let mut count = 0;
    loop {
        // A send fails only once the connection is closing; the loop then drains it.
        let echoed = if lend {
            ws.recv_with(|message, out| out.send(message).is_ok()).await
        } else {
            match ws.recv().await {
                Some(Ok(message)) => Some(Ok(ws.send(message).await.is_ok())),
                Some(Err(e)) => Some(Err(e)),
                None => None,
            }
        };
        match echoed {
            Some(Ok(sent)) => count += u64::from(sent),
            Some(Err(e)) => tracing::debug!(error = %e, "connection ended"),
            None => return count,
        }
    }
}

/// Whether `--lend` was given: echo servers lend each message in place
/// ([`echo`]'s `lend`).
pub fn lends(args: &Args) -> bool {
    args.flags.iter().any(|f| f == "--lend")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        Args::try_parse(args.iter().map(|s| s.to_string()), "127.0.0.1:9001")
    }

    #[test]
    fn parses_the_stable_command_line() {
        let a = parse(&["--runtime", "smol", "--addr", "127.0.0.1:3000"]).expect("valid");
        assert_eq!((a.runtime, a.addr.port()), (Runtime::Smol, 3000));
        let a = parse(&["--runtime=tokio", "--no-deflate"]).expect("valid");
        assert_eq!(
            (a.runtime, a.flags.as_slice()),
            (Runtime::Tokio, &["--no-deflate".to_owned()][..])
        );
        assert!(parse(&["--runtime", "async-std"]).is_err());
        assert!(parse(&["--addr"]).is_err());
        assert!(parse(&["stray"]).is_err());
    }
}
