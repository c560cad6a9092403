//! Cost of the prime-order group operations (the papers' T_E, T_M, T_H) per group.
//!
//! Short by default (10 samples, 0.5 s each); pass criterion's flags for longer runs, e.g.
//! `cargo bench -p m2msec-crypto --bench group -- --measurement-time 5 --sample-size 50`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use m2msec_crypto::group::{Group, GroupId};
use m2msec_crypto::rng::SeededRng;

fn exponentiation(c: &mut Criterion) {
    let mut g_exp = c.benchmark_group("group_exp");
    let mut rng = SeededRng::from_seed_u64(0x6e_0c);
    for id in GroupId::ALL {
        let group = Group::new(id);
        let k = group.random_scalar(&mut rng);
        let base = group.exp_generator(&group.random_scalar(&mut rng)).unwrap();
        // base^k for an arbitrary base (T_E; scalar multiplication on Ristretto255)
        g_exp.bench_function(BenchmarkId::new("exp", id.name()), |b| {
            b.iter(|| group.exp(black_box(&base), black_box(&k)).unwrap());
        });
        // g^k (Ristretto255 uses its precomputed basepoint table)
        g_exp.bench_function(BenchmarkId::new("exp_generator", id.name()), |b| {
            b.iter(|| group.exp_generator(black_box(&k)).unwrap());
        });
        // the group operation (T_M)
        g_exp.bench_function(BenchmarkId::new("mul", id.name()), |b| {
            b.iter(|| group.mul(black_box(&base), black_box(&base)).unwrap());
        });
        // decoding a received element, with its membership check
        let bytes = base.to_bytes();
        g_exp.bench_function(BenchmarkId::new("element_from_bytes", id.name()), |b| {
            b.iter(|| group.element_from_bytes(black_box(&bytes)).unwrap());
        });
    }
    g_exp.finish();
}

fn hashing(c: &mut Criterion) {
    let mut g_hash = c.benchmark_group("group_hash_to_scalar");
    let msg = [0x5au8; 64];
    let k_elem = [0xa5u8; 256];
    for id in GroupId::ALL {
        let group = Group::new(id);
        g_hash.bench_function(BenchmarkId::new("hash_to_scalar", id.name()), |b| {
            b.iter(|| group.hash_to_scalar(b"bench", &[black_box(&msg), black_box(&k_elem)]));
        });
    }
    g_hash.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(500))
}

criterion_group! {
    name = benches;
    config = config();
    targets = exponentiation, hashing
}
criterion_main!(benches);
