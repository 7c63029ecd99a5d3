//! Criterion micro-benchmarks of the WebSocket hot paths.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use wirestate_engine::ws::{mask::apply_mask, utf8::Utf8Validator};

fn masking(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask");
    for size in [16usize, 1024, 16 * 1024, 1 << 20] {
        let mut buf = vec![0x5au8; size + 3];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("aligned", size), &size, |b, &size| {
            b.iter(|| apply_mask(black_box(&mut buf[..size]), [1, 2, 3, 4], 0));
        });
        group.bench_with_input(BenchmarkId::new("unaligned", size), &size, |b, &size| {
            b.iter(|| apply_mask(black_box(&mut buf[3..3 + size]), [1, 2, 3, 4], 1));
        });
    }
    group.finish();
}

fn utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8");
    let text = "wirestate κόσμε 🚀 ".repeat(4096);
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("streamed_4k_chunks", |b| {
        b.iter(|| {
            let mut v = Utf8Validator::new();
            for chunk in text.as_bytes().chunks(4096) {
                v.feed(black_box(chunk)).ok();
            }
            v.finish().ok()
        });
    });
    group.finish();
}

criterion_group!(benches, masking, utf8);
criterion_main!(benches);
