#![no_main]
//! The async host (the layer that carries a Socket.IO server over connections) fed
//! arbitrary client bytes on up to three in-memory connections, with clock jumps,
//! small pipe buffers, clients that stop reading and connections that end. Ops are
//! `[op, len, bytes[len]]`. Nothing may panic, and once every client has gone and
//! time has passed, no session or socket is left and the host is idle.

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use wirestate_async::mem::{duplex, MemStream, Sim};
use wirestate_async::{sio, Runtime};
use wirestate_engine::eio;

fuzz_target!(|data: &[u8]| {
    let Some((&setup, mut rest)) = data.split_first() else {
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
    let capacity = 64usize << (setup & 7);
    let mut clients: Vec<Option<MemStream>> = Vec::new();
    for _ in 0..3 {
        let (client, server) = duplex(capacity);
        let (rt, io) = (sim.clone(), io.clone());
        sim.spawn(async move {
            let _ = sio::serve_connection(&rt, &io, server, None).await;
        });
        clients.push(Some(client));
    }
    // A client whose bit is set never reads: the server must let it go by itself.
    let readers: Vec<bool> = (0..3u8).map(|i| setup & (8 << i) == 0).collect();
    sim.block_on(async {
        while let [op, len, tail @ ..] = rest {
            let len = usize::from(*len).min(tail.len());
            let (bytes, tail) = tail.split_at(len);
            rest = tail;
            let which = usize::from(op >> 6) % 3;
            match op & 3 {
                0 | 1 => {
                    if let Some(c) = clients[which].as_mut() {
                        let _ = sim
                            .timeout(Duration::from_millis(100), c.write_all(bytes))
                            .await;
                    }
                }
                2 => sim.sleep(Duration::from_millis(len as u64 * 4)).await,
                _ => clients[which] = None,
            }
            for (c, reads) in clients.iter_mut().zip(&readers) {
                if let (Some(c), true) = (c.as_mut(), *reads) {
                    let _ = c.take_available(1 << 20);
                }
            }
        }
        clients.clear();
        sim.sleep(Duration::from_secs(120)).await;
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
