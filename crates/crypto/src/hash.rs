//! SHA-256 (FIPS 180-4).

use sha2::Digest as _;

/// Length of a SHA-256 output in bytes.
pub const SHA256_LEN: usize = 32;

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

/// SHA-256 over several fields, each encoded as its length (u32, big-endian) followed by its bytes.
///
/// This is the unambiguous encoding the protocols need for transcripts such as
/// MK = H(A | B | NA | NB | x | y): with plain concatenation, ("ab", "c") and ("a", "bc") would
/// hash alike. A field longer than `u32::MAX` bytes (4 GiB, never a protocol field) has its length
/// saturated to `u32::MAX`, which no realistic input reaches.
pub fn sha256_length_prefixed(fields: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for field in fields {
        h.update_length_prefixed(field);
    }
    h.finalize()
}

/// Incremental SHA-256.
#[derive(Clone, Default)]
pub struct Sha256(sha2::Sha256);

impl Sha256 {
    /// A fresh hash state.
    pub fn new() -> Self {
        Self(sha2::Sha256::new())
    }

    /// Absorbs `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// Absorbs `data` preceded by its length as a u32, big-endian (see [`sha256_length_prefixed`]).
    pub fn update_length_prefixed(&mut self, data: &[u8]) {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        self.0.update(len.to_be_bytes());
        self.0.update(data);
    }

    /// The digest of everything absorbed.
    pub fn finalize(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

impl core::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Sha256(..)")
    }
}

/// The first four bytes of a digest or key id, shown by `Debug` as `0a1b2c3d..`: enough to tell
/// public values apart in logs without printing them whole.
pub(crate) struct Fingerprint([u8; 4]);

impl Fingerprint {
    /// The start of `id`, which is already a digest.
    pub(crate) fn of(id: &[u8]) -> Self {
        let mut start = [0; 4];
        for (to, from) in start.iter_mut().zip(id) {
            *to = *from;
        }
        Self(start)
    }

    /// The start of the SHA-256 digest of `bytes`.
    pub(crate) fn sha256(bytes: &[u8]) -> Self {
        Self::of(&sha256(bytes))
    }
}

/// `Debug` for a public value named `name`: its `kind` (a suite or group) and a [`Fingerprint`]
/// of its bytes, so logs tell keys apart without carrying them.
pub(crate) fn debug_public(
    f: &mut core::fmt::Formatter<'_>,
    name: &str,
    kind: (&str, &dyn core::fmt::Debug),
    bytes: &[u8],
) -> core::fmt::Result {
    f.debug_struct(name)
        .field(kind.0, kind.1)
        .field("sha256", &Fingerprint::sha256(bytes))
        .finish()
}

impl core::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a:02x}{b:02x}{c:02x}{d:02x}..")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_matches_oneshot_and_fips_abc() {
        // FIPS 180-2 Appendix B.1: SHA-256("abc").
        let expect = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(hex_of(&sha256(b"abc")), expect);
        let mut h = Sha256::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(hex_of(&h.finalize()), expect);
    }

    #[test]
    fn length_prefix_is_unambiguous() {
        assert_ne!(
            sha256_length_prefixed(&[b"ab", b"c"]),
            sha256_length_prefixed(&[b"a", b"bc"])
        );
        let mut manual = Vec::new();
        manual.extend_from_slice(&[0, 0, 0, 2]);
        manual.extend_from_slice(b"ab");
        manual.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(sha256_length_prefixed(&[b"ab", b""]), sha256(&manual));
    }

    fn hex_of(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
