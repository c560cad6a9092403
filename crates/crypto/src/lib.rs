//! Cryptographic primitives of m2msec, behind small, hard-to-misuse types.
//!
//! Every protocol of the toolkit (see `DESIGN.md`) draws its cryptography from here and from nowhere
//! else, so that a suite choice, a key type or a failure mode is decided once:
//!
//! | module     | what                                                                                   |
//! |------------|----------------------------------------------------------------------------------------|
//! | [`rng`]    | the only door to randomness: [`rng::OsRng`] and the deterministic [`rng::SeededRng`]     |
//! | [`hash`]   | SHA-256, incremental and with unambiguous length-prefixed fields                         |
//! | [`kdf`]    | HKDF-SHA-256 (RFC 5869) and HMAC-SHA-256 (RFC 2104) with constant-time verification      |
//! | [`aead`]   | AES-128-CCM-8 (RFC 3610), AES-128-GCM, ChaCha20-Poly1305 (RFC 8439), Ascon-AEAD128 (SP 800-232) |
//! | [`ots`]    | one-time signatures: Lamport over SHA-256 and LM-OTS (RFC 8554 section 4)               |
//! | [`merkle`] | a domain-separated Merkle tree with authentication paths                                 |
//! | [`split`]  | k-of-n splitting of a secret: Reed-Solomon erasure coding and Shamir sharing            |
//! | [`pke`]    | encryption to a server: ECIES over X25519 (default), RSA-OAEP-2048 (classic)             |
//! | [`sig`]    | signatures: Ed25519 (default), RSA-PSS-2048 (classic)                                    |
//! | [`ct`]     | constant-time comparison                                                                 |
//! | [`group`]  | prime-order groups: MODP-2048 (RFC 3526), DSA-style 1024/160 and 2048/256 (RFC 5114), Ristretto255, with operation counts |
//! | [`mikey`]  | MIKEY (RFC 3830): its PRF and key derivation, AES-CM-128 / AES-KW-128, HMAC-SHA-1-160, RSA |
//! | [`pem_key`] | the PEM form of every key: PKCS#8 / SubjectPublicKeyInfo for the standard ones, a label of our own over the key's encoding for the rest |
//! | [`pre`]    | AFGH proxy re-encryption on BLS12-381 (blstrs behind [`pre::PairingBackend`]) as a KEM + AEAD |
//!
//! # Crate generation
//! The RustCrypto and dalek ecosystems are mid-way through a generation change (`rand_core` 0.6 →
//! 0.9/0.10). Mixing generations means two incompatible RNG traits and duplicate dependency trees, so
//! this crate stays on ONE line, the `rand_core` 0.6 one: `aes-gcm` 0.10, `ccm` 0.5, `aes` 0.8,
//! `chacha20poly1305` 0.10, `sha2` 0.10, `hmac` 0.12, `hkdf` 0.12, `x25519-dalek` 2, `ed25519-dalek` 2,
//! `rsa` 0.9, `pkcs8` 0.10 / `spki` 0.7 / `der` 0.7, `rand_chacha` 0.3, and for MIKEY `sha1` 0.10, `ctr` 0.9,
//! `aes-kw` 0.2, for the prime-order groups `crypto-bigint` 0.5 and `curve25519-dalek` 4, and for
//! Ascon-AEAD128 `ascon-aead` 0.5 (on `aead` 0.5 like `aes-gcm`; its 0.6 moved to the next
//! generation). `reed-solomon-simd` 3 is
//! generation-free. Only the [`rng`] module names `rand_core`; the rest of the workspace uses
//! [`rng::CryptoRng`].
//!
//! # Classic RSA suites and RUSTSEC-2023-0071
//! The `rsa` crate carries advisory RUSTSEC-2023-0071 ("Marvin attack": decryption and signing time
//! depends on secret data, so a network attacker who can time many private-key operations may recover
//! plaintexts or forge signatures). No fixed release exists for the 0.9 line. We still compile the
//! classic suites ([`pke::PkeSuite::RsaOaep2048`], [`sig::SigSuite::RsaPss2048`]) unconditionally,
//! because the papers we reproduce use RSA and the benchmark compares against it, but they are never a
//! default: a deployment must name them explicitly, and it should only do so where the private-key
//! holder is not exposed to an attacker who can time it. We use blinded private-key operations, which
//! helps against classic timing attacks but does not fully close Marvin.
//!
//! # Failures
//! There is one error type, [`Error`]. Every failed tag, MAC, signature or one-time-signature check is
//! the same opaque [`Error::Authentication`], so that no caller can accidentally build an oracle out of
//! the reason.
#![forbid(unsafe_code)]

pub mod aead;
pub mod ct;
mod error;
pub mod group;
pub mod hash;
pub mod kdf;
pub mod keylog;
pub mod merkle;
pub mod mikey;
pub mod ots;
mod pem;
pub mod pem_key;
pub mod pke;
pub mod pre;
pub mod rng;
pub mod sig;
pub mod split;
mod suite;

pub use error::{Error, Result};
pub use zeroize::Zeroizing;
