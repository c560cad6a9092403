//! Constant-time helpers.

use subtle::ConstantTimeEq;

/// Compares two byte strings in time that depends only on their lengths, never on their contents.
///
/// Use it for every comparison involving a MAC, tag, hash preimage or key; lengths are treated as
/// public (strings of different lengths compare unequal at once).
pub fn eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn eq_works() {
        assert!(super::eq(b"abc", b"abc"));
        assert!(!super::eq(b"abc", b"abd"));
        assert!(!super::eq(b"abc", b"ab"));
        assert!(super::eq(b"", b""));
    }
}
