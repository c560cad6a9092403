//! The only door to randomness in m2msec.
//!
//! Protocol cores never own an RNG: they are handed a `&mut dyn CryptoRng`. In production that is
//! [`OsRng`]; in tests, traces and the simulator it is [`SeededRng`], so that a run is reproducible
//! from one `u64`. Both live here, and so does every contact with the `rand_core` crate (0.6
//! generation), so that a future move to another generation touches this file only.

use rand_core::{RngCore, SeedableRng};

/// A cryptographically secure random number generator, usable as a trait object.
///
/// Blanket-implemented for every `rand_core` 0.6 generator marked `CryptoRng`, so callers may pass
/// any such generator; `&mut dyn CryptoRng` is how protocol code takes one.
pub trait CryptoRng: rand_core::RngCore + rand_core::CryptoRng {}

impl<T: rand_core::RngCore + rand_core::CryptoRng> CryptoRng for T {}

/// Fills a fresh `N`-byte array from `rng`.
pub fn random_array<const N: usize>(rng: &mut dyn CryptoRng) -> [u8; N] {
    let mut out = [0u8; N];
    rng.fill_bytes(&mut out);
    out
}

/// The operating system's generator (`getrandom`).
///
/// If the OS source fails, `rand_core` panics rather than hand out predictable bytes: a machine that
/// cannot produce randomness must not produce keys either.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRng;

impl RngCore for OsRng {
    fn next_u32(&mut self) -> u32 {
        rand_core::OsRng.next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        rand_core::OsRng.next_u64()
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        rand_core::OsRng.fill_bytes(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> core::result::Result<(), rand_core::Error> {
        rand_core::OsRng.try_fill_bytes(dest)
    }
}

impl rand_core::CryptoRng for OsRng {}

/// A deterministic ChaCha20 generator for tests, annotated traces and the simulator.
///
/// Never use it for real keys: anyone who knows the seed knows every output. Its `Debug` output does
/// not show the state.
#[derive(Clone)]
pub struct SeededRng(rand_chacha::ChaCha20Rng);

impl SeededRng {
    /// A generator whose whole output is fixed by `seed` (via `rand_core`'s `seed_from_u64`, which
    /// expands the `u64` with PCG32 into the 32-byte ChaCha key).
    pub fn from_seed_u64(seed: u64) -> Self {
        Self(rand_chacha::ChaCha20Rng::seed_from_u64(seed))
    }

    /// A generator keyed by a full 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(rand_chacha::ChaCha20Rng::from_seed(seed))
    }
}

impl core::fmt::Debug for SeededRng {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SeededRng(..)")
    }
}

impl RngCore for SeededRng {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> core::result::Result<(), rand_core::Error> {
        self.0.try_fill_bytes(dest)
    }
}

impl rand_core::CryptoRng for SeededRng {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_is_deterministic_and_object_safe() {
        let mut a = SeededRng::from_seed_u64(7);
        let mut b = SeededRng::from_seed_u64(7);
        let x: [u8; 16] = random_array(&mut a as &mut dyn CryptoRng);
        let y: [u8; 16] = random_array(&mut b);
        assert_eq!(x, y);
        let z: [u8; 16] = random_array(&mut SeededRng::from_seed_u64(8));
        assert_ne!(x, z);
        let w: [u8; 16] = random_array(&mut OsRng);
        assert_ne!(w, [0u8; 16]);
        assert_eq!(format!("{a:?}"), "SeededRng(..)");
    }
}
