//! `sio-server --runtime tokio|smol --addr HOST:PORT [--recovery] [--write-timeout MS]
//! [--max-connections N]`: a Socket.IO server
//! configured like the reference server of the official socket.io-protocol test suite
//! — path `/socket.io/`, pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1000000,
//! connectTimeout 1000 ms, CORS `*`, EIO 3 and 4:
//!
//! * `/`: on connection emits `auth` with the handshake auth; answers `message` with
//!   `message-back` (same arguments) and `message-with-ack` through its ack (same
//!   arguments);
//! * `/custom`: on connection emits `auth`.
//!
//! For our own interop tests it also has (none of which the official suite touches):
//! on `/`, `join` (ack `"joined"`), `to-room` (`room-message` to the room's other
//! sockets), `ask-me` (the server asks the client with an ack and emits `answer` with
//! what came back), `disconnect-me`, `drop-me` (closes the connection without a
//! DISCONNECT: the client reconnects); `/secure` refusing clients without
//! `auth.token == "secret"` (`not authorized`, data `{"code":401}`); dynamic
//! namespaces `/dyn-*` greeting with `hello`. `--recovery` turns on
//! connection-state recovery (which appends an offset to emitted events, so the
//! official suite must run without it). `--write-timeout` and `--max-connections` set
//! those HTTP limits (defaults: 20 s, no cap) for the hardening tests. With
//! `--tls-cert FILE --tls-key FILE` (PEM) it serves `https://` and `wss://` only.
//! `--parser msgpack` encodes packets as socket.io-msgpack-parser does (its clients
//! only).
//!
//! With `--redis URL [--redis-key KEY]` it joins a cluster over that Redis
//! (wire-compatible with Node's `@socket.io/redis-adapter`; `--sharded` speaks its
//! `createShardedAdapter` protocol instead, with `--subscription-mode
//! static|dynamic|dynamic-private`, default dynamic; `--redis-cluster` with it: the URL
//! is one node of a Redis Cluster): `join` and `to-room` then
//! work across servers, and `/` also has `broadcast-all` (args: `broadcast` with them to
//! every socket of `/` in the cluster), `fetch-room` (room: acks the sorted ids of its
//! sockets, cluster-wide), `server-side-emit` (arg: `serverSideEmit("ping", arg)` with
//! acks; acks the array of answers, each server answering `"pong"`), `sockets-join`
//! (room, other: every socket of `room` joins `other`, then acks `"ok"`),
//! `disconnect-room` (room: disconnects its sockets, cluster-wide) and `count-acks`
//! (broadcasts `question` to `/` with a 1 s timeout; acks the number of answers).
//!
//! `--shards N` serves with N shards, one per thread (0: one per core), joined in
//! process (`serve_sharded`): any request may land on any shard, and the cluster
//! handlers above work across shards. With `--redis`, each shard is a node of the
//! Redis cluster instead. With `--tls-cert`, each shard runs the TLS handshakes of the
//! connections it accepts.

use wirestate_async::sio::SocketIo;
use wirestate_conformance::sio_app::{config, setup_with};
use wirestate_conformance::{init_tracing, Args, Runtime};

const USAGE: &str = "sio-server [--runtime tokio|smol] [--addr HOST:PORT] [--recovery] \
                     [--write-timeout MS] [--max-connections N] \
                     [--tls-cert FILE --tls-key FILE] \
                     [--redis URL [--redis-key KEY] [--sharded [--subscription-mode M] [--redis-cluster]]] \
                     [--parser default|msgpack] [--shards N]";

fn main() -> std::io::Result<()> {
    init_tracing();
    let args = Args::parse(USAGE, "127.0.0.1:3000");
    let recovery = args.flags.iter().any(|f| f == "--recovery");
    let options = wirestate_async::sio::ServerOptions::from(config(recovery).parser(args.parser))
        .http_limits(args.http_limits());
    let redis = args.redis_options()?;
    let cluster = redis.is_some();
    if let Some(n) = args.shards {
        return sharded(&args, options, redis, n);
    }
    match args.runtime {
        Runtime::Tokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let io = wirestate_tokio::sio::server(options)?;
                if let Some(redis) = redis {
                    wirestate_tokio::sio::redis(&io, redis)?;
                }
                setup_with(&io, cluster);
                let listener = tokio::net::TcpListener::bind(args.addr).await?;
                eprintln!("sio-server (tokio) listening on {}", listener.local_addr()?);
                match &args.tls {
                    Some((cert, key)) => {
                        let tls = wirestate_tokio::tls::TlsAcceptor::from_pem_files(cert, key)?;
                        wirestate_tokio::sio::serve_tls(io, listener, tls).await
                    }
                    None => wirestate_tokio::sio::serve(io, listener).await,
                }
            }),
        Runtime::Smol => smol::block_on(async {
            let io = wirestate_smol::sio::server(options)?;
            if let Some(redis) = redis {
                wirestate_smol::sio::redis(&io, redis)?;
            }
            setup_with(&io, cluster);
            let listener = smol::net::TcpListener::bind(args.addr).await?;
            eprintln!("sio-server (smol) listening on {}", listener.local_addr()?);
            match &args.tls {
                Some((cert, key)) => {
                    let tls = wirestate_smol::tls::TlsAcceptor::from_pem_files(cert, key)?;
                    wirestate_smol::sio::serve_tls(io, listener, tls).await
                }
                None => wirestate_smol::sio::serve(io, listener).await,
            }
        }),
    }
}

/// `--shards N`: the same server, one per thread, until the process is killed.
fn sharded(
    args: &Args,
    options: wirestate_async::sio::ServerOptions,
    redis: Option<wirestate_async::sio::RedisOptions>,
    n: usize,
) -> std::io::Result<()> {
    let listener = std::net::TcpListener::bind(args.addr)?;
    let addr = listener.local_addr()?;
    let runtime = args.runtime;
    let setup = move |io: &SocketIo| {
        if let Some(redis) = &redis {
            let joined = match runtime {
                Runtime::Tokio => wirestate_tokio::sio::redis(io, redis.clone()),
                Runtime::Smol => wirestate_smol::sio::redis(io, redis.clone()),
            };
            if let Err(e) = joined {
                eprintln!("sio-server: a shard cannot join redis: {e}");
            }
        }
        setup_with(io, true);
    };
    let shards = match (runtime, &args.tls) {
        (Runtime::Tokio, None) => wirestate_tokio::sio::serve_sharded(options, listener, n, setup)?,
        (Runtime::Smol, None) => wirestate_smol::sio::serve_sharded(options, listener, n, setup)?,
        (Runtime::Tokio, Some((cert, key))) => {
            let tls = wirestate_tokio::tls::TlsAcceptor::from_pem_files(cert, key)?;
            wirestate_tokio::sio::serve_sharded_tls(options, listener, n, tls, setup)?
        }
        (Runtime::Smol, Some((cert, key))) => {
            let tls = wirestate_smol::tls::TlsAcceptor::from_pem_files(cert, key)?;
            wirestate_smol::sio::serve_sharded_tls(options, listener, n, tls, setup)?
        }
    };
    eprintln!(
        "sio-server ({}, {} shards) listening on {addr}",
        if runtime == Runtime::Tokio {
            "tokio"
        } else {
            "smol"
        },
        shards.len()
    );
    shards.wait();
    Ok(())
}
