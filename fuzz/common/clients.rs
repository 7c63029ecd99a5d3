//! Three in-memory clients of a server under fuzzing, driven by the input: ops are
//! `[op, len, bytes[len]]` (bits 6–7 pick the client; `op & 3`: 0 and 1 write the
//! bytes, 2 lets `len × 4` ms pass, 3 ends the client's connection); the setup byte
//! sets the pipe size (64 B × 2^(setup & 7)) and which clients never read (bits 3–5).
//! After the last op every client goes and `linger` passes, so that the server must
//! have let everything go by itself.

use std::future::Future;
use std::time::Duration;

use wirestate_async::mem::{duplex, MemStream, Sim};
use wirestate_async::Runtime;

/// Serves three clients with `serve(server_end)`, then plays `ops` on them.
pub fn play<F, Fut>(sim: &Sim, setup: u8, mut ops: &[u8], linger: Duration, serve: F)
where
    F: Fn(MemStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let capacity = 64usize << (setup & 7);
    let mut clients: Vec<Option<MemStream>> = Vec::new();
    for _ in 0..3 {
        let (client, server) = duplex(capacity);
        sim.spawn(serve(server));
        clients.push(Some(client));
    }
    // A client whose bit is set never reads: the server must let it go by itself.
    let readers: Vec<bool> = (0..3u8).map(|i| setup & (8 << i) == 0).collect();
    sim.block_on(async {
        while let [op, len, tail @ ..] = ops {
            let len = usize::from(*len).min(tail.len());
            let (bytes, tail) = tail.split_at(len);
            ops = tail;
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
        sim.sleep(linger).await;
    });
}
