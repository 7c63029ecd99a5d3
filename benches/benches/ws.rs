//! Criterion micro-benchmarks of the WebSocket hot paths, ours next to the peers'
//! (built with `--features peers`): masking, UTF-8 validation, frame headers, and an
//! in-memory send → echo → receive of 100,000 small messages.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wirestate_engine::ws::frame::{FrameHeader, OpCode};
use wirestate_engine::ws::utf8::{validate, Utf8Validator};
use wirestate_engine::ws::{mask::apply_mask, Config, Connection};

fn masking(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask");
    for size in [16usize, 125, 1024, 16 * 1024, 64 * 1024, 1 << 20] {
        let mut buf = vec![0x5au8; size + 3];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("aligned", size), &size, |b, &size| {
            b.iter(|| apply_mask(black_box(&mut buf[..size]), [1, 2, 3, 4], 0));
        });
        group.bench_with_input(BenchmarkId::new("unaligned", size), &size, |b, &size| {
            b.iter(|| apply_mask(black_box(&mut buf[3..3 + size]), [1, 2, 3, 4], 1));
        });
        // tokio-websockets' and tungstenite's masking functions are private; their cost
        // shows in the echo group below.
        #[cfg(feature = "peers")]
        group.bench_with_input(
            BenchmarkId::new("fastwebsockets_unaligned", size),
            &size,
            |b, &size| {
                b.iter(|| fastwebsockets::unmask(black_box(&mut buf[3..3 + size]), [1, 2, 3, 4]));
            },
        );
    }
    group.finish();
}

fn utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8");
    let texts = [
        ("ascii", "wirestate speaks websocket. ".repeat(2340)),
        ("multibyte", "wirestate κόσμε 🚀 ".repeat(2340)),
    ];
    for (kind, text) in &texts {
        let bytes = text.as_bytes();
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(BenchmarkId::new("one_shot", kind), |b| {
            b.iter(|| validate(black_box(bytes)).is_ok())
        });
        // Chunks of 1000 bytes split multi-byte characters between fragments.
        for chunk in [4096usize, 1000] {
            group.bench_function(BenchmarkId::new(format!("streamed_{chunk}"), kind), |b| {
                b.iter(|| {
                    let mut v = Utf8Validator::new();
                    for piece in bytes.chunks(chunk) {
                        v.feed(black_box(piece)).ok();
                    }
                    v.finish().is_ok()
                })
            });
        }
        group.bench_function(BenchmarkId::new("simdutf8_basic", kind), |b| {
            b.iter(|| simdutf8::basic::from_utf8(black_box(bytes)).is_ok())
        });
        group.bench_function(BenchmarkId::new("std", kind), |b| {
            b.iter(|| std::str::from_utf8(black_box(bytes)).is_ok())
        });
    }
    group.finish();
}

fn frame_header(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_header");
    for (name, len) in [("7bit", 14u64), ("16bit", 1024), ("64bit", 1 << 20)] {
        let header = FrameHeader {
            fin: true,
            rsv: 0,
            opcode: OpCode::Binary,
            mask: Some([1, 2, 3, 4]),
            payload_len: len,
        };
        let mut encoded = BytesMut::new();
        header.encode(&mut encoded);
        let mut out = BytesMut::with_capacity(64);
        group.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| {
                out.clear();
                black_box(&header).encode(&mut out);
            })
        });
        group.bench_function(BenchmarkId::new("decode", name), |b| {
            b.iter(|| FrameHeader::parse(black_box(&encoded)))
        });
    }
    group.finish();
}

const ECHO_MESSAGES: usize = 100_000;
const ECHO_SIZE: usize = 14;

/// 100,000 masked 14-byte binary frames, back to back.
fn echo_input() -> Vec<u8> {
    let frame = wirestate_benches::masked_frame(0x82, &[b'a'; ECHO_SIZE]);
    frame.repeat(ECHO_MESSAGES)
}

/// Each echo comes back as an unmasked frame: 2 header bytes and the payload.
const ECHO_OUTPUT: usize = ECHO_MESSAGES * (2 + ECHO_SIZE);

/// Drives one echo server over an in-memory duplex stream: handshake (not timed), then
/// all messages written while the echoes are read back (timed).
async fn echo_once(name: &'static str, input: &[u8], config: Arc<Config>) -> Duration {
    let mut echo = wirestate_benches::DuplexEcho::open(name, config).await;
    let start = Instant::now();
    echo.echo(input, ECHO_OUTPUT).await;
    start.elapsed()
}

fn echo_in_memory(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws_echo_in_memory_100k_x_14B");
    group.throughput(Throughput::Elements(ECHO_MESSAGES as u64));
    group.sample_size(10);
    let input = echo_input();
    let config = Arc::new(Config::default());
    // The engine alone: one server connection fed the frames in 64 KiB reads, echoing
    // each message, no runtime and no stream; `-lent`: each read lent in place.
    type Echo = fn(&mut Connection, &[u8]) -> usize;
    let engine: [(&str, Echo); 2] = [
        ("wirestate-sans-io", wirestate_benches::sans_io_echo),
        (
            "wirestate-sans-io-lent",
            wirestate_benches::sans_io_echo_lent,
        ),
    ];
    for (name, echo) in engine {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut server = Connection::accepted(config.clone(), Instant::now());
                assert_eq!(echo(&mut server, &input), ECHO_OUTPUT);
            })
        });
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for &name in wirestate_benches::TOKIO_ECHO_SERVERS {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += echo_once(name, &input, config.clone()).await;
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, masking, utf8, frame_header, echo_in_memory);
criterion_main!(benches);
