#![no_main]
//! The frame stream decoder over arbitrary bytes, whole and split at a fuzzer-chosen
//! point: both must yield the same sequence of headers.

use libfuzzer_sys::fuzz_target;
use std::hint::black_box;
use wirestate_engine::ws::frame::{FrameDecoder, Item};

fn headers(chunks: &[&[u8]]) -> (Vec<String>, bool) {
    let mut decoder = FrameDecoder::new();
    let mut out = Vec::new();
    for chunk in chunks {
        let mut input = *chunk;
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(Item::Header(h))) => out.push(format!("{h:?}")),
                Ok(Some(item)) => drop(black_box(item)),
                Ok(None) => break,
                Err(e) => return (out, black_box(e).close_code().0 != 0),
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(data.len());
    let (a, b) = data.split_at(cut);
    assert_eq!(headers(&[data]), headers(&[a, b]));
});
