//! Cost of AFGH proxy re-encryption on BLS12-381 (`pre`): encryption (1), re-encryption key (2),
//! re-encryption (3), first-level decryption (4), the owner's second-level decryption; and the
//! ratio re-encryption / encryption (the relay paper found re-encryption 4–8× faster).
//!
//! Short by default (10 samples, 1 s each); e.g.
//! `cargo bench -p m2msec-crypto --bench pre -- --measurement-time 5 --sample-size 50`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::pre::{self, SecretKey};
use m2msec_crypto::rng::SeededRng;

/// A management message: stream id, key index, a 16-byte key (the relay's typical plaintext).
const MSG: &[u8] = &[0u8; 20];
const SUITE: AeadSuite = AeadSuite::Aes128Ccm8;

fn pre_ops(c: &mut Criterion) {
    let mut rng = SeededRng::from_seed_u64(0xafe4);
    let ska: SecretKey = SecretKey::generate(&mut rng);
    let pka = ska.public_key();
    let skb: SecretKey = SecretKey::generate(&mut rng);
    let pkb = skb.public_key();
    let rk = ska.rekey_to(&pkb);
    let c2 = pre::seal(&pka, &mut rng, SUITE, b"", MSG).unwrap();
    let c1 = pre::reencrypt(&rk, &c2);

    let mut g = c.benchmark_group("pre");
    g.bench_function("keygen", |b| {
        b.iter(|| SecretKey::generate(&mut rng).public_key());
    });
    g.bench_function("encrypt_second_level", |b| {
        b.iter(|| pre::seal(black_box(&pka), &mut rng, SUITE, b"", MSG).unwrap());
    });
    g.bench_function("rekey", |b| b.iter(|| ska.rekey_to(black_box(&pkb))));
    g.bench_function("reencrypt", |b| {
        b.iter(|| pre::reencrypt(black_box(&rk), black_box(&c2)));
    });
    g.bench_function("decrypt_first_level", |b| {
        b.iter(|| pre::open_first(&skb, black_box(&c1), b"").unwrap());
    });
    g.bench_function("decrypt_second_level", |b| {
        b.iter(|| pre::open_second(&ska, black_box(&c2), b"").unwrap());
    });
    g.finish();

    // The paper's comparison, measured directly (criterion prints per-function times above).
    let n = 50u32;
    let t = Instant::now();
    for _ in 0..n {
        black_box(pre::seal(&pka, &mut rng, SUITE, b"", MSG).unwrap());
    }
    let enc = t.elapsed() / n;
    let t = Instant::now();
    for _ in 0..n {
        black_box(pre::reencrypt(&rk, &c2));
    }
    let reenc = t.elapsed() / n;
    println!(
        "pre: encrypt {enc:?}, re-encrypt {reenc:?}; re-encrypt/encrypt = {:.2} \
         (encrypt/re-encrypt = {:.2}; paper: re-encryption 4-8x faster)",
        reenc.as_secs_f64() / enc.as_secs_f64(),
        enc.as_secs_f64() / reenc.as_secs_f64()
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = pre_ops
}
criterion_main!(benches);
