//! The figures of `m2msec bench` for the relay.
//!
//! - **AFGH** (the paper's Fig. 7 and 8): second-level encryptions (eq. (1)), re-encryptions
//!   (eq. (3)) and first-level decryptions (eq. (4)) per second, of a management message's
//!   plaintext (a signed section key), and re-encryptions against encryptions as the ratio. The
//!   paper found re-encryption 4–8 times faster than encryption with its symmetric pairing; on
//!   BLS12-381 a re-encryption is one pairing and an encryption one exponentiation in GT plus a
//!   G1 multiplication, so it is faster by less (about 1.8 times here): reported as measured.
//! - **Raw loopback UDP forwarding**, the baseline of the stream throughput: a trivial forwarder
//!   task (recv, send) between a sender and a receiver on 127.0.0.1, datagrams of the stream's
//!   size, paced so that none is lost.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::pre;
use m2msec_crypto::rng::SeededRng;

use crate::collab::bench::Figure;
use crate::error::{Error, Result};

/// Size of the AFGH plaintext measured: about a signed section key in CBOR (stream id, key
/// index, suite, a 32-byte key, validity, a 64-byte Ed25519 signature).
pub const SECTION_KEY_PLAINTEXT: usize = 128;

/// AFGH operations per second.
#[derive(Clone, Copy, Debug)]
pub struct AfghRates {
    /// Second-level encryptions (eq. (1)) per second.
    pub encrypt: f64,
    /// Re-encryptions (eq. (3)) per second.
    pub reencrypt: f64,
    /// First-level decryptions (eq. (4)) per second.
    pub decrypt: f64,
}

/// Repeats `op` for about `budget` (at least 3 times) and returns the rate per second.
fn rate(budget: Duration, mut op: impl FnMut()) -> f64 {
    op(); // warm-up
    let start = Instant::now();
    let mut n = 0u32;
    while n < 3 || start.elapsed() < budget {
        op();
        n += 1;
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

/// Measures the AFGH operations, about `budget` each.
///
/// # Errors
///
/// [`Error::Crypto`] if an operation fails (it does not with fresh keys).
pub fn afgh_rates(budget: Duration, seed: u64) -> Result<AfghRates> {
    let mut rng = SeededRng::from_seed_u64(seed);
    let source = pre::SecretKey::generate(&mut rng);
    let sink = pre::SecretKey::generate(&mut rng);
    let rekey = source.rekey_to(&sink.public_key());
    let public = source.public_key();
    let plaintext = [0x5a; SECTION_KEY_PLAINTEXT];
    let suite = AeadSuite::ChaCha20Poly1305;
    let aad = b"relay header";
    let c2 = pre::seal(&public, &mut rng, suite, aad, &plaintext)?;
    let c1 = pre::reencrypt(&rekey, &c2);
    pre::open_first(&sink, &c1, aad)?;
    let mut failed = false;
    let encrypt = rate(budget, || {
        failed |= black_box(pre::seal(&public, &mut rng, suite, aad, &plaintext)).is_err();
    });
    let reencrypt = rate(budget, || {
        black_box(pre::reencrypt(&rekey, black_box(&c2)));
    });
    let decrypt = rate(budget, || {
        failed |= black_box(pre::open_first(&sink, black_box(&c1), aad)).is_err();
    });
    if failed {
        return Err(Error::Usage(
            "an AFGH operation failed during the benchmark".into(),
        ));
    }
    Ok(AfghRates {
        encrypt,
        reencrypt,
        decrypt,
    })
}

/// The AFGH figures: three rates, and re-encryptions per second against encryptions per
/// second (the ratio is how many times faster re-encryption is; the paper: 4 to 8).
#[must_use]
pub fn afgh_figures(r: &AfghRates) -> Vec<Figure> {
    vec![
        Figure::plain("relay.afgh.encrypt_per_s".into(), "op/s", r.encrypt),
        Figure::plain("relay.afgh.reencrypt_per_s".into(), "op/s", r.reencrypt),
        Figure::plain("relay.afgh.decrypt_per_s".into(), "op/s", r.decrypt),
        Figure::against(
            "relay.afgh.reencrypt_vs_encrypt".into(),
            "op/s",
            r.reencrypt,
            r.encrypt,
        ),
    ]
}

/// Payload bits per second of `messages` datagrams of `size` bytes sent from one socket through
/// a trivial forwarder task (recv, then send) to a receiver, all on 127.0.0.1. The sender keeps
/// at most `window` datagrams in flight so that loopback buffers never drop one (the same
/// lossless condition the relay runs under).
///
/// # Errors
///
/// Socket errors; [`Error::Timeout`] if the datagrams do not all arrive within 30 s.
pub async fn raw_udp_forwarding(messages: u32, size: usize, window: u32) -> Result<f64> {
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let bind = |a| async move {
        tokio::net::UdpSocket::bind(a)
            .await
            .map_err(|source| Error::Bind { addr: a, source })
    };
    let sender = bind(any).await?;
    let forwarder = bind(any).await?;
    let receiver = bind(any).await?;
    let forwarder_addr = forwarder.local_addr().map_err(Error::Socket)?;
    let receiver_addr = receiver.local_addr().map_err(Error::Socket)?;
    let received = Arc::new(AtomicU64::new(0));
    let forward = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let Ok(n) = forwarder.recv(&mut buf).await else {
                break;
            };
            if forwarder.send_to(&buf[..n], receiver_addr).await.is_err() {
                break;
            }
        }
    });
    let count = received.clone();
    let receive = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while receiver.recv(&mut buf).await.is_ok() {
            count.fetch_add(1, Ordering::Release);
        }
    });
    let payload = vec![0xa5u8; size];
    let start = Instant::now();
    let run = async {
        for k in 0..u64::from(messages) {
            while k >= received.load(Ordering::Acquire) + u64::from(window.max(1)) {
                tokio::task::yield_now().await;
            }
            sender
                .send_to(&payload, forwarder_addr)
                .await
                .map_err(Error::Socket)?;
        }
        while received.load(Ordering::Acquire) < u64::from(messages) {
            tokio::task::yield_now().await;
        }
        Ok::<(), Error>(())
    };
    let limit = Duration::from_secs(30);
    let outcome = tokio::time::timeout(limit, run).await;
    let elapsed = start.elapsed();
    forward.abort();
    receive.abort();
    outcome.map_err(|_| Error::Timeout(limit))??;
    Ok(f64::from(messages) * size as f64 * 8.0 / elapsed.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn afgh_rates_are_positive() -> Result<()> {
        let r = afgh_rates(Duration::from_millis(1), 1)?;
        assert!(r.encrypt > 0.0 && r.reencrypt > 0.0 && r.decrypt > 0.0);
        let f = afgh_figures(&r);
        assert_eq!(f[3].baseline, Some(r.encrypt));
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn raw_forwarding_delivers_everything() -> Result<()> {
        let bps = raw_udp_forwarding(200, 100, 16).await?;
        assert!(bps > 0.0);
        Ok(())
    }
}
