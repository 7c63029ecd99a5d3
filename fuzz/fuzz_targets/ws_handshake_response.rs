#![no_main]
//! The client's parser of the server's handshake answer over arbitrary bytes.

use libfuzzer_sys::fuzz_target;
use std::hint::black_box;
use wirestate_engine::ws::handshake::parse_response;

fuzz_target!(|data: &[u8]| {
    let protocols = ["chat".to_owned(), "superchat".to_owned()];
    if let Ok(Some((response, used))) = parse_response(
        black_box(data),
        "dGhlIHNhbXBsZSBub25jZQ==",
        &protocols,
        8192,
    ) {
        assert!(used <= data.len());
        if let Some(p) = &response.protocol {
            assert!(protocols.contains(p));
        }
    }
});
