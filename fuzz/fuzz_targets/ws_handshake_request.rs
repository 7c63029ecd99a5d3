#![no_main]
//! The server's upgrade-request parser over arbitrary bytes.

use libfuzzer_sys::fuzz_target;
use std::hint::black_box;
use wirestate_engine::ws::handshake::{parse_request, rejection};

fuzz_target!(|data: &[u8]| {
    match parse_request(black_box(data), 8192) {
        Ok(Some((request, used))) => {
            assert!(used <= data.len());
            let offered: Vec<&str> = request.protocols().collect();
            black_box(request.response(offered.first().copied(), None));
        }
        Ok(None) => assert!(data.len() < 8192),
        Err(e) => {
            let answer = rejection(&e);
            assert!(answer.starts_with(b"HTTP/1.1 4"));
        }
    }
});
