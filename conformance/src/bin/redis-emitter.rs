//! `redis-emitter [--runtime tokio|smol] --redis URL [--redis-key KEY] [--nsp NSP]
//! [--to ROOM]... [--except ROOM]... COMMAND ARGS...`: wirestate's Redis emitter, from
//! the command line. It publishes one operation to the cluster on that Redis (Node and
//! wirestate servers alike), waits until Redis has it, and exits 0 (1 if Redis cannot
//! be reached, 2 on a bad command line). Commands:
//!
//! * `emit EVENT [JSON...]`: emits EVENT with these arguments (each a JSON value);
//! * `sockets-join ROOM...`, `sockets-leave ROOM...`;
//! * `disconnect-sockets [close]`;
//! * `server-side-emit EVENT [JSON...]`.

use serde_json::Value;
use wirestate_async::sio::{RedisEmitter, RedisOptions};
use wirestate_conformance::init_tracing;

const USAGE: &str = "redis-emitter [--runtime tokio|smol] --redis URL [--redis-key KEY] \
                     [--nsp NSP] [--to ROOM]... [--except ROOM]... \
                     emit EVENT [JSON...] | sockets-join ROOM... | sockets-leave ROOM... | \
                     disconnect-sockets [close] | server-side-emit EVENT [JSON...]";

struct Cli {
    tokio: bool,
    options: RedisOptions,
    nsp: String,
    to: Vec<String>,
    except: Vec<String>,
    command: Vec<String>,
}

fn parse() -> Result<Cli, String> {
    let mut args = std::env::args().skip(1);
    let (mut tokio, mut url, mut key) = (true, None, None);
    let (mut nsp, mut to, mut except) = ("/".to_owned(), Vec::new(), Vec::new());
    let mut command = Vec::new();
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--runtime" => {
                tokio = match value()?.as_str() {
                    "tokio" => true,
                    "smol" => false,
                    other => return Err(format!("unknown runtime `{other}`")),
                }
            }
            "--redis" => url = Some(value()?),
            "--redis-key" => key = Some(value()?),
            "--nsp" => nsp = value()?,
            "--to" => to.push(value()?),
            "--except" => except.push(value()?),
            _ if a.starts_with("--") => return Err(format!("unknown option `{a}`")),
            _ => {
                command.push(a);
                command.extend(args.by_ref());
            }
        }
    }
    let url = url.ok_or("--redis is required")?;
    let mut options = RedisOptions::new(&url).map_err(|e| e.to_string())?;
    if let Some(key) = key {
        options = options.key(key);
    }
    if command.is_empty() {
        return Err("no command".into());
    }
    Ok(Cli {
        tokio,
        options,
        nsp,
        to,
        except,
        command,
    })
}

fn json_args(args: &[String]) -> Result<Vec<Value>, String> {
    args.iter()
        .map(|a| serde_json::from_str(a).map_err(|e| format!("`{a}` is not JSON: {e}")))
        .collect()
}

async fn run(emitter: RedisEmitter, cli: &Cli) -> Result<(), String> {
    let mut e = emitter.of(&cli.nsp);
    for r in &cli.to {
        e = e.to(r.as_str());
    }
    for r in &cli.except {
        e = e.except(r.as_str());
    }
    let (cmd, rest) = cli.command.split_first().ok_or("no command")?;
    let sent = match (cmd.as_str(), rest) {
        ("emit", [event, args @ ..]) => {
            let payload = wirestate_engine::sio::Payload::from_parts(json_args(args)?, Vec::new());
            e.emit_payload(event, payload)
        }
        ("sockets-join", rooms) if !rooms.is_empty() => {
            e.sockets_join(rooms.iter().map(String::as_str))
        }
        ("sockets-leave", rooms) if !rooms.is_empty() => {
            e.sockets_leave(rooms.iter().map(String::as_str))
        }
        ("disconnect-sockets", []) => e.disconnect_sockets(false),
        ("disconnect-sockets", [close]) if close == "close" => e.disconnect_sockets(true),
        ("server-side-emit", [event, args @ ..]) => e.server_side_emit(event, json_args(args)?),
        _ => return Err(format!("bad command `{}`", cli.command.join(" "))),
    };
    sent.map_err(|e| e.to_string())?;
    emitter.flush().await.map_err(|e| e.to_string())
}

fn main() {
    init_tracing();
    let cli = match parse() {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("{msg}\nusage: {USAGE}");
            std::process::exit(2);
        }
    };
    let result = if cli.tokio {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| {
                rt.block_on(async {
                    let emitter = wirestate_tokio::sio::emitter(cli.options.clone())
                        .await
                        .map_err(|e| e.to_string())?;
                    run(emitter, &cli).await
                })
            })
    } else {
        smol::block_on(async {
            let emitter = wirestate_smol::sio::emitter(cli.options.clone())
                .await
                .map_err(|e| e.to_string())?;
            run(emitter, &cli).await
        })
    };
    if let Err(e) = result {
        eprintln!("redis-emitter: {e}");
        std::process::exit(if e.starts_with("bad command") || e.contains("not JSON") {
            2
        } else {
            1
        });
    }
}
