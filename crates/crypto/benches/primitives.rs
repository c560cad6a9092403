//! Benchmarks (placeholder until filled in).
fn main() {}
