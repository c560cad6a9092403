//! The paper's "simple scheme" (section IV), the baseline collab's client cost is measured
//! against: the client itself encrypts x to the server B, signs it, verifies B's signature and
//! decrypts y, with the same public-key suite and no helpers.

use m2msec_crypto::pke::{PkePublicKey, PkeSecretKey};
use m2msec_crypto::rng::{CryptoRng, random_array};
use m2msec_crypto::sig::{SigningKey, VerifyingKey};
use m2msec_crypto::{Error, Zeroizing};

use super::sim::Suite;

/// Public-key operations of the simple scheme on the client: encrypt x, sign, verify, decrypt y.
pub const ASYMMETRIC_OPS: u64 = 4;

/// Associated data of the scheme's encryptions.
const AAD: &[u8] = b"simple-scheme";

/// One client A and server B of the simple scheme, with what B sent back (y encrypted to A,
/// signed by B) prepared once, so that [`Self::client_side`] is the client's work alone.
pub struct SimpleScheme {
    a_pke: PkeSecretKey,
    a_sig: SigningKey,
    b_public: PkePublicKey,
    b_verify: VerifyingKey,
    y_sealed: Vec<u8>,
    b_signature: Vec<u8>,
}

impl SimpleScheme {
    /// Keys for A and B with `suite`, and B's answer.
    ///
    /// # Errors
    ///
    /// Key generation or encryption failing.
    pub fn generate(suite: Suite, rng: &mut dyn CryptoRng) -> Result<Self, Error> {
        let b_pke = PkeSecretKey::generate(suite.pke(), rng)?;
        let b_sig = SigningKey::generate(suite.sig(), rng)?;
        let a_pke = PkeSecretKey::generate(suite.pke(), rng)?;
        let a_sig = SigningKey::generate(suite.sig(), rng)?;
        let y: [u8; 32] = random_array(rng);
        let y_sealed = a_pke.public_key().encrypt(rng, AAD, &y)?;
        let b_signature = b_sig.sign(rng, &y_sealed);
        Ok(Self {
            a_pke,
            a_sig,
            b_public: b_pke.public_key(),
            b_verify: b_sig.verifying_key(),
            y_sealed,
            b_signature,
        })
    }

    /// One run of the client's side: a fresh x encrypted to B and signed, B's signature
    /// verified and y decrypted. Returns A's signature and y.
    ///
    /// # Errors
    ///
    /// Encryption, B's signature or the decryption failing.
    pub fn client_side(
        &self,
        rng: &mut dyn CryptoRng,
    ) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), Error> {
        let x: [u8; 32] = random_array(rng);
        let x_sealed = self.b_public.encrypt(rng, AAD, &x)?;
        let signature = self.a_sig.sign(rng, &x_sealed);
        self.b_verify.verify(&self.y_sealed, &self.b_signature)?;
        Ok((signature, self.a_pke.decrypt(AAD, &self.y_sealed)?))
    }
}

#[cfg(test)]
mod tests {
    use m2msec_crypto::rng::SeededRng;

    use super::*;

    #[test]
    fn the_client_reads_y() -> Result<(), Error> {
        let mut rng = SeededRng::from_seed_u64(1);
        let scheme = SimpleScheme::generate(Suite::Modern, &mut rng)?;
        let (_, y) = scheme.client_side(&mut rng)?;
        assert_eq!(y.len(), 32);
        Ok(())
    }
}
