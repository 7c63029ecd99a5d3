#![no_main]
//! The HTTP/1.1 client exchange fed an arbitrary response in arbitrary splits, with or
//! without the end of the stream: no panic; at most one outcome; a response's body is
//! within the cap; after the outcome, nothing more comes out. The first bytes also go
//! through the client URL parser.

use libfuzzer_sys::fuzz_target;
use wirestate_engine::http::{ClientConn, Url};

const MAX_BODY: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(&input[..input.len().min(64)]) {
        if let Ok(url) = Url::parse(text) {
            assert!(url.target.starts_with('/') && !url.host.is_empty());
            std::hint::black_box(url.authority());
        }
    }
    let method = if split & 0x40 != 0 { "HEAD" } else { "GET" };
    let Ok(mut conn) = ClientConn::new(method, "/", "h", &[], bytes::Bytes::new(), 1024, MAX_BODY)
    else {
        panic!("a valid request was refused");
    };
    while conn.poll_transmit().is_some() {}
    let size = usize::from(split % 64) + 1;
    let mut outcomes = 0;
    for chunk in input.chunks(size) {
        conn.handle_input(chunk);
        if let Some(outcome) = conn.poll_response() {
            outcomes += 1;
            if let Ok(response) = outcome {
                assert!(response.body.len() <= MAX_BODY);
            }
        }
    }
    if split & 0x80 != 0 {
        conn.handle_eof();
        if let Some(outcome) = conn.poll_response() {
            outcomes += 1;
            if let Ok(response) = std::hint::black_box(outcome) {
                assert!(response.body.len() <= MAX_BODY);
            }
        }
        assert_eq!(
            outcomes, 1,
            "the end of the stream always settles the exchange"
        );
    }
    assert!(outcomes <= 1);
    conn.handle_input(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    conn.handle_eof();
    assert!(outcomes == 0 || conn.poll_response().is_none());
});
