#![no_main]
//! The HTTP/1.1 server connection fed arbitrary bytes in arbitrary splits, answering
//! every request it yields, with time passing between pieces (a 10 s request
//! timeout). No panic; after it says "close", it stays closed.

use libfuzzer_sys::fuzz_target;
use wirestate_engine::http::{Response, ServerConn};

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let t0 = std::time::Instant::now();
    let mut conn =
        ServerConn::new(1024, 4096).with_request_timeout(std::time::Duration::from_secs(10), t0);
    let size = usize::from(split % 64) + 1;
    for (i, chunk) in input.chunks(size).enumerate() {
        let now = t0 + std::time::Duration::from_secs(i as u64);
        conn.handle_timeout(now);
        conn.handle_input(chunk);
        while let Some(request) = conn.poll_request() {
            assert!(request.body.len() <= 4096);
            if request.head.is_websocket_upgrade() && split & 0x80 != 0 {
                let _rest = conn.upgrade(bytes::Bytes::new());
            } else {
                conn.respond(now, Response::new(200).body("ok"));
            }
        }
        while conn.poll_transmit().is_some() {}
    }
    conn.handle_eof();
    while conn.poll_transmit().is_some() {}
    if conn.should_close() {
        conn.handle_input(b"GET / HTTP/1.1\r\n\r\n");
        assert!(conn.poll_request().is_none());
    }
});
