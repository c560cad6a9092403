//! Cost of every primitive that the protocols count as a device or server operation.
//!
//! Defaults are short (10 samples, 0.5 s per benchmark) so that `cargo bench -p m2msec-crypto`
//! finishes in a few minutes; pass criterion's own flags for longer runs, e.g.
//! `cargo bench -p m2msec-crypto -- --measurement-time 5 --sample-size 50`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use m2msec_crypto::aead::{AeadKey, AeadSuite};
use m2msec_crypto::kdf::{hkdf_sha256, hmac_sha256};
use m2msec_crypto::merkle::MerkleTree;
use m2msec_crypto::ots::{OtsScheme, OtsSecretKey};
use m2msec_crypto::pke::{PkeSecretKey, PkeSuite};
use m2msec_crypto::rng::SeededRng;
use m2msec_crypto::sig::{SigSuite, SigningKey};
use m2msec_crypto::split::{self, SharingScheme};

fn rng() -> SeededRng {
    SeededRng::from_seed_u64(0xbe_7c4)
}

fn aead(c: &mut Criterion) {
    let mut g = c.benchmark_group("aead_seal");
    let mut rng = rng();
    for size in [64usize, 1024] {
        g.throughput(Throughput::Bytes(size as u64));
        let msg = vec![0u8; size];
        for suite in AeadSuite::ALL {
            let key = AeadKey::generate(suite, &mut rng);
            let nonce = vec![0u8; suite.nonce_len()];
            g.bench_with_input(BenchmarkId::new(suite.name(), size), &msg, |b, msg| {
                b.iter(|| key.seal(&nonce, b"aad", black_box(msg)).unwrap());
            });
        }
    }
    g.finish();
}

fn kdf(c: &mut Criterion) {
    let mut g = c.benchmark_group("kdf");
    g.bench_function("hkdf_sha256_32", |b| {
        let mut out = [0u8; 32];
        b.iter(|| {
            hkdf_sha256(
                b"salt",
                black_box(b"input keying material"),
                b"info",
                &mut out,
            )
            .unwrap()
        });
    });
    g.bench_function("hmac_sha256_64", |b| {
        b.iter(|| hmac_sha256(b"key", &[black_box(&[0u8; 64])]));
    });
    g.finish();
}

fn ots(c: &mut Criterion) {
    let mut g = c.benchmark_group("ots");
    let mut rng = rng();
    for scheme in OtsScheme::ALL {
        g.bench_function(BenchmarkId::new("keygen", scheme.name()), |b| {
            b.iter(|| OtsSecretKey::generate(scheme, &mut rng).public_key());
        });
        g.bench_function(BenchmarkId::new("sign", scheme.name()), |b| {
            b.iter_batched(
                || OtsSecretKey::generate(scheme, &mut rng),
                |sk| sk.sign(b"fragment"),
                criterion::BatchSize::SmallInput,
            );
        });
        let sk = OtsSecretKey::generate(scheme, &mut rng);
        let pk = sk.public_key();
        let sig = sk.sign(b"fragment");
        g.bench_function(BenchmarkId::new("verify", scheme.name()), |b| {
            b.iter(|| pk.verify(b"fragment", &sig).unwrap());
        });
    }
    g.finish();
}

fn merkle(c: &mut Criterion) {
    let mut g = c.benchmark_group("merkle_build");
    for n in [8usize, 64, 1024] {
        let leaves: Vec<[u8; 32]> = (0..n)
            .map(|i| m2msec_crypto::hash::sha256(&i.to_be_bytes()))
            .collect();
        g.bench_with_input(BenchmarkId::from_parameter(n), &leaves, |b, leaves| {
            b.iter(|| MerkleTree::new(black_box(leaves)).unwrap().root());
        });
    }
    g.finish();
}

fn splitting(c: &mut Criterion) {
    let mut g = c.benchmark_group("split_combine");
    let mut rng = rng();
    let secret = [0x42u8; 32];
    for scheme in SharingScheme::ALL {
        for (k, n) in [(3u8, 5u8), (7, 10)] {
            let id = format!("{scheme:?}/{k}-of-{n}");
            g.bench_function(BenchmarkId::new("split", &id), |b| {
                b.iter(|| split::split(scheme, black_box(&secret), k, n, &mut rng).unwrap());
            });
            let shares = split::split(scheme, &secret, k, n, &mut rng).unwrap();
            // Worst case for Reed-Solomon: the last k shares, so recovery shards must be decoded.
            let last = &shares[usize::from(n - k)..];
            g.bench_function(BenchmarkId::new("combine", &id), |b| {
                b.iter(|| split::combine(scheme, secret.len(), k, n, black_box(last)).unwrap());
            });
        }
    }
    g.finish();
}

fn pke(c: &mut Criterion) {
    let mut g = c.benchmark_group("pke");
    let mut rng = rng();
    for suite in PkeSuite::ALL {
        let sk = PkeSecretKey::generate(suite, &mut rng).unwrap();
        let pk = sk.public_key();
        let ct = pk.encrypt(&mut rng, b"", &[0u8; 32]).unwrap();
        g.bench_function(BenchmarkId::new("encrypt_32", format!("{suite:?}")), |b| {
            b.iter(|| pk.encrypt(&mut rng, b"", black_box(&[0u8; 32])).unwrap());
        });
        g.bench_function(BenchmarkId::new("decrypt_32", format!("{suite:?}")), |b| {
            b.iter(|| sk.decrypt(b"", black_box(&ct)).unwrap());
        });
    }
    g.finish();
}

fn signatures(c: &mut Criterion) {
    let mut g = c.benchmark_group("sig");
    let mut rng = rng();
    for suite in SigSuite::ALL {
        let sk = SigningKey::generate(suite, &mut rng).unwrap();
        let vk = sk.verifying_key();
        let sig = sk.sign(&mut rng, b"root");
        g.bench_function(BenchmarkId::new("sign", format!("{suite:?}")), |b| {
            b.iter(|| sk.sign(&mut rng, black_box(b"root")));
        });
        g.bench_function(BenchmarkId::new("verify", format!("{suite:?}")), |b| {
            b.iter(|| vk.verify(b"root", black_box(&sig)).unwrap());
        });
    }
    g.finish();
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
    targets = aead, kdf, ots, merkle, splitting, pke, signatures
}
criterion_main!(benches);
