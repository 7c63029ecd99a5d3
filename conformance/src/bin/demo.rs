//! `demo [--runtime tokio|smol] [--addr HOST:PORT] [--client-js FILE] [--admin-ui DIR]`:
//! the README's first command. On `http://127.0.0.1:3000` by default:
//!
//! * `/`: the chat page (sign in, rooms, messages with acks, direct messages, jobs,
//!   who is online, the transport and the connection state), a client of namespace
//!   `/chat` below; `/?name=NAME&room=ROOM` signs in and joins ROOM at load.
//! * `/chat`, the Socket.IO namespace: post-connect `authenticate`, a room policy,
//!   schema-validated `chat`, `dm` to every socket of a user, queued `job`s, `who` and
//!   `presence`, and a `boom` that panics. The protocol is in
//!   `wirestate_conformance::demo`.
//! * `/admin/`: `@socket.io/admin-ui`, and its namespace `/admin`. Without
//!   authentication, so only when the demo listens on a loopback address.
//!
//! The page's socket.io-client bundle and the admin UI's files come from `--client-js`
//! and `--admin-ui`, or the npm copies under `conformance/interop/node_modules` (see
//! `wirestate_conformance::web`).

use wirestate_async::sio::{AdminUi, ServerOptions, SocketIo};
use wirestate_conformance::demo::setup;
use wirestate_conformance::web::Site;
use wirestate_conformance::{init_tracing, Args, Runtime};
use wirestate_engine::sio::Config;

const USAGE: &str =
    "demo [--runtime tokio|smol] [--addr HOST:PORT] [--client-js FILE] [--admin-ui DIR]";

/// The demo's options, its site and its admin namespace.
fn prepare(args: &Args) -> std::io::Result<(ServerOptions, bool)> {
    let site = Site::load(args.client_js.as_deref(), args.admin_ui.as_deref())?;
    eprintln!("socket.io-client for the page: {}", site.client_source());
    let admin = args.addr.ip().is_loopback();
    match (admin, site.has_admin_ui()) {
        (true, true) => eprintln!("admin UI at /admin/ (no authentication: loopback only)"),
        (true, false) => eprintln!(
            "admin namespace /admin on; for the UI's files: npm ci in conformance/interop, or --admin-ui DIR"
        ),
        (false, _) => eprintln!("admin UI off: the demo only offers it on a loopback address"),
    }
    let options = ServerOptions::from(Config::default()).router(site.router());
    Ok((options, admin))
}

fn start(io: &SocketIo, admin: bool) {
    setup(io);
    if admin {
        io.instrument(AdminUi::new());
    }
}

fn main() -> std::io::Result<()> {
    init_tracing();
    let args = Args::parse(USAGE, "127.0.0.1:3000");
    let (options, admin) = prepare(&args)?;
    match args.runtime {
        Runtime::Tokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let io = wirestate_tokio::sio::server(options)?;
                start(&io, admin);
                let listener = tokio::net::TcpListener::bind(args.addr).await?;
                eprintln!("chat demo (tokio) on http://{}/", listener.local_addr()?);
                // Ctrl-C: a graceful shutdown (every client gets a DISCONNECT first).
                let stopping = io.clone();
                tokio::spawn(async move {
                    if tokio::signal::ctrl_c().await.is_ok() {
                        eprintln!("shutting down");
                        stopping.shutdown().await;
                    }
                });
                wirestate_tokio::sio::serve(io, listener).await
            }),
        Runtime::Smol => smol::block_on(async {
            let io = wirestate_smol::sio::server(options)?;
            start(&io, admin);
            let listener = smol::net::TcpListener::bind(args.addr).await?;
            eprintln!("chat demo (smol) on http://{}/", listener.local_addr()?);
            wirestate_smol::sio::serve(io, listener).await
        }),
    }
}
