#![no_main]
//! The async host (the layer that carries a Socket.IO server over connections) fed
//! arbitrary client bytes on up to three in-memory connections, with clock jumps,
//! small pipe buffers, clients that stop reading and connections that end. Ops are
//! `[op, len, bytes[len]]`. Nothing may panic, and once every client has gone and
//! time has passed, no session or socket is left and the host is idle.

use std::time::Duration;

use libfuzzer_sys::fuzz_target;

#[path = "../common/clients.rs"]
mod clients;
use wirestate_async::mem::Sim;
use wirestate_async::{sio, Runtime};
use wirestate_engine::eio;

fuzz_target!(|data: &[u8]| {
    let Some((&setup, rest)) = data.split_first() else {
        return;
    };
    let sim = Sim::new();
    let config = sio::Config::default().eio(
        eio::Config::default()
            .path("/socket.io/")
            .heartbeat(Duration::from_millis(300), Duration::from_millis(200))
            .max_payload(4096)
            .allow_eio3(true),
    );
    let io = sio::SocketIo::new(&sim, config, [4; 32]);
    {
        let host = io.host().clone();
        let clock = sim.clock();
        sim.spawn(async move { host.run_timers(clock).await });
    }
    io.of("/").on_connection(|socket| async move {
        socket.join(["all"]);
        socket.on("e", |socket, mut msg| async move {
            let payload = msg.take_payload();
            let _ = socket.to("all").emit_payload("e", payload.clone());
            msg.ack_payload(payload)
        });
    });
    io.of_dynamic(|n| n.starts_with("/d"));
    let (rt, served) = (sim.clone(), io.clone());
    clients::play(&sim, setup, rest, Duration::from_secs(120), move |server| {
        let (rt, io) = (rt.clone(), served.clone());
        async move {
            let _ = sio::serve_connection(&rt, &io, server, None).await;
        }
    });
    let (sessions, idle) = io
        .host()
        .inspect(|s| (s.session_count(), s.eio().is_idle()));
    assert_eq!(io.socket_count(), 0, "no socket left");
    assert_eq!(sessions, 0, "no session left");
    assert!(idle, "the host is idle");
    // Tasks that wait on each other (the timer task, servers) are dropped here.
    sim.shutdown();
});
