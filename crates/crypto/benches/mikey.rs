//! Cost of MIKEY's cryptography (RFC 3830): the PRF and key derivation, the KEMAC transforms and
//! public-key mode's RSA operations — what a MIKEY initiator or responder spends per message.
//!
//! Same short defaults as `primitives.rs`; run with `cargo bench -p m2msec-crypto --bench mikey`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use m2msec_crypto::mikey::{
    self, EnvelopeScheme, KemacEncryption, KemacMac, MessageKeys, SignScheme, TgkKey,
};
use m2msec_crypto::pke::{PkeSecretKey, PkeSuite};
use m2msec_crypto::rng::SeededRng;
use m2msec_crypto::sig::{SigSuite, SigningKey};

const RAND: [u8; 16] = [0x5A; 16];
const CSB_ID: u32 = 0x1234_5678;

fn rng() -> SeededRng {
    SeededRng::from_seed_u64(0x3830)
}

fn prf(c: &mut Criterion) {
    let mut g = c.benchmark_group("mikey_prf");
    // A 16-byte TGK/PSK is one 256-bit chunk; 48 bytes are two (two P computations XORed).
    for inkey_len in [16usize, 48] {
        let inkey = vec![0x11u8; inkey_len];
        g.bench_function(BenchmarkId::new("tek_16", inkey_len), |b| {
            b.iter(|| {
                mikey::derive_tgk_key(black_box(&inkey), TgkKey::Tek, 0, CSB_ID, &RAND, 16).unwrap()
            });
        });
        g.bench_function(BenchmarkId::new("srtp_key_and_salt", inkey_len), |b| {
            b.iter(|| {
                let k = mikey::derive_tgk_key(&inkey, TgkKey::Tek, 0, CSB_ID, &RAND, 16).unwrap();
                let s = mikey::derive_tgk_key(&inkey, TgkKey::Salt, 0, CSB_ID, &RAND, 14).unwrap();
                (k, s)
            });
        });
        g.bench_function(BenchmarkId::new("message_keys", inkey_len), |b| {
            b.iter(|| MessageKeys::derive(black_box(&inkey), CSB_ID, &RAND).unwrap());
        });
    }
    g.finish();
}

fn kemac(c: &mut Criterion) {
    let mut g = c.benchmark_group("mikey_kemac");
    let keys = MessageKeys::derive(b"a pre-shared key", CSB_ID, &RAND).unwrap();
    // A Key data sub-payload carrying a 16-byte TGK is 4 + 16 bytes; 64 covers TGK + salt + KV.
    for size in [24usize, 64, 1024] {
        g.throughput(Throughput::Bytes(size as u64));
        let data = vec![0u8; size];
        g.bench_with_input(BenchmarkId::new("aes_cm_128", size), &data, |b, data| {
            b.iter(|| {
                keys.encrypt(KemacEncryption::AesCm128, 7, black_box(data))
                    .unwrap()
            });
        });
        g.bench_with_input(
            BenchmarkId::new("aes_kw_128_wrap", size),
            &data,
            |b, data| {
                b.iter(|| {
                    keys.encrypt(KemacEncryption::AesKw128, 7, black_box(data))
                        .unwrap()
                });
            },
        );
        g.bench_with_input(BenchmarkId::new("hmac_sha1_160", size), &data, |b, data| {
            b.iter(|| keys.mac(KemacMac::HmacSha1_160, &[black_box(data)]));
        });
        let tag = keys.mac(KemacMac::HmacSha1_160, &[&data]);
        g.bench_with_input(
            BenchmarkId::new("hmac_sha1_160_verify", size),
            &data,
            |b, data| {
                b.iter(|| {
                    keys.verify_mac(KemacMac::HmacSha1_160, &[black_box(data)], &tag)
                        .unwrap()
                });
            },
        );
    }
    g.finish();
}

fn rsa(c: &mut Criterion) {
    let mut g = c.benchmark_group("mikey_rsa");
    let mut rng = rng();
    let responder = PkeSecretKey::generate(PkeSuite::RsaOaep2048, &mut rng).unwrap();
    let to = responder.public_key();
    let env_key = [0xE7u8; 32];
    for scheme in [EnvelopeScheme::RsaPkcs1v15, EnvelopeScheme::RsaOaepSha256] {
        let ct = mikey::encrypt_envelope_key(&to, scheme, &mut rng, &env_key).unwrap();
        g.bench_function(
            BenchmarkId::new("envelope_encrypt", format!("{scheme:?}")),
            |b| {
                b.iter(|| {
                    mikey::encrypt_envelope_key(&to, scheme, &mut rng, black_box(&env_key)).unwrap()
                });
            },
        );
        g.bench_function(
            BenchmarkId::new("envelope_decrypt", format!("{scheme:?}")),
            |b| {
                b.iter(|| mikey::decrypt_envelope_key(&responder, scheme, black_box(&ct)).unwrap());
            },
        );
    }
    let signer = SigningKey::generate(SigSuite::RsaPss2048, &mut rng).unwrap();
    let vk = signer.verifying_key();
    let msg = vec![0u8; 300]; // a PK-mode I_MESSAGE up to its signature
    for scheme in SignScheme::ALL {
        let sig = mikey::sign(&signer, scheme, &mut rng, &msg).unwrap();
        g.bench_function(BenchmarkId::new("sign", format!("{scheme:?}")), |b| {
            b.iter(|| mikey::sign(&signer, scheme, &mut rng, black_box(&msg)).unwrap());
        });
        g.bench_function(BenchmarkId::new("verify", format!("{scheme:?}")), |b| {
            b.iter(|| mikey::verify(&vk, scheme, black_box(&msg), &sig).unwrap());
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
    targets = prf, kemac, rsa
}
criterion_main!(benches);
