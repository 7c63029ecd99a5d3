//! Benchmarks of wirestate (see `benches/`).
