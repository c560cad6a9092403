//! A binary Merkle tree over caller-supplied 32-byte leaves, with authentication paths.
//!
//! The trusted entity of the collab protocol puts the one-time public keys' IDs (`H(LK_i)`) into a
//! tree and signs its root; each proxy later proves its key's membership with a [`MerklePath`].
//!
//! Hashing is domain-separated, as in RFC 6962 section 2.1 (Certificate Transparency), so that a
//! leaf can never be passed off as an inner node (second-preimage attack on the tree shape):
//! - leaf node  = SHA-256(0x00 || leaf)
//! - inner node = SHA-256(0x01 || left || right)
//!
//! A level with an odd number of nodes promotes its last node unchanged to the next level (no
//! duplication, so no CVE-2012-2459-style ambiguity). The leaf count is an input of path
//! verification because, with the index, it fixes where promotions happen. The root itself does not
//! commit to the leaf count (a leaf far from the right edge has the same path in trees of several
//! sizes); whoever signs the root should sign the count beside it if the size matters.

use crate::hash::Sha256;
use crate::{Error, Result};

const LEAF_PREFIX: u8 = 0x00;
const INNER_PREFIX: u8 = 0x01;

/// A Merkle tree, every level kept so that paths are cheap.
#[derive(Clone, PartialEq, Eq)]
pub struct MerkleTree {
    /// levels[0] are the leaf nodes, the last level is `[root]`.
    levels: Vec<Vec<[u8; 32]>>,
}

impl core::fmt::Debug for MerkleTree {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MerkleTree")
            .field("leaves", &self.len())
            .finish_non_exhaustive()
    }
}

impl MerkleTree {
    /// Builds the tree over `leaves` (already hashes, such as one-time key IDs).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `leaves` is empty or has more than `u32::MAX` entries.
    pub fn new(leaves: &[[u8; 32]]) -> Result<Self> {
        if leaves.is_empty() {
            return Err(Error::InvalidParameter("Merkle tree without leaves"));
        }
        if u32::try_from(leaves.len()).is_err() {
            return Err(Error::InvalidParameter(
                "Merkle tree with more than 2^32 - 1 leaves",
            ));
        }
        let mut levels = vec![leaves.iter().map(leaf_node).collect::<Vec<_>>()];
        while let Some(level) = levels.last().filter(|l| l.len() > 1) {
            let next = level
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => inner_node(l, r),
                    [single] => *single,
                    _ => unreachable!("chunks(2) yields one or two items"),
                })
                .collect();
            levels.push(next);
        }
        Ok(Self { levels })
    }

    /// The root hash, what the trusted entity signs.
    pub fn root(&self) -> [u8; 32] {
        self.levels
            .last()
            .and_then(|top| top.first())
            .copied()
            .unwrap_or([0u8; 32])
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.levels.first().map_or(0, Vec::len)
    }

    /// Always `false`: a tree has at least one leaf.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of leaves as the `u32` that [`MerklePath::root_from`] takes.
    pub fn leaf_count(&self) -> u32 {
        // `new` refuses more than u32::MAX leaves.
        u32::try_from(self.len()).unwrap_or(u32::MAX)
    }

    /// The authentication path of leaf `index`, or `None` if out of range.
    pub fn path(&self, index: usize) -> Option<MerklePath> {
        if index >= self.len() {
            return None;
        }
        let mut siblings = Vec::new();
        let mut idx = index;
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = idx ^ 1;
            if let Some(node) = level.get(sibling) {
                siblings.push(*node);
            }
            idx /= 2;
        }
        Some(MerklePath {
            index: u32::try_from(index).ok()?,
            siblings,
        })
    }
}

/// The sibling hashes from a leaf up to the root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MerklePath {
    /// Index of the leaf, from 0.
    pub index: u32,
    /// Sibling hashes, bottom-up; promoted levels contribute none.
    pub siblings: Vec<[u8; 32]>,
}

impl MerklePath {
    /// Recomputes the root from `leaf`, for a tree of `leaf_count` leaves.
    ///
    /// # Errors
    /// [`Error::Decode`] if the index is out of range or the path has the wrong number of siblings
    /// for the tree's shape.
    pub fn root_from(&self, leaf: &[u8; 32], leaf_count: u32) -> Result<[u8; 32]> {
        const WHAT: Error = Error::Decode {
            what: "Merkle path",
        };
        if self.index >= leaf_count {
            return Err(WHAT);
        }
        let mut node = leaf_node(leaf);
        let mut idx = self.index;
        let mut width = leaf_count;
        let mut siblings = self.siblings.iter();
        while width > 1 {
            let promoted = idx == width - 1 && width % 2 == 1;
            if !promoted {
                let sibling = siblings.next().ok_or(WHAT)?;
                node = if idx % 2 == 0 {
                    inner_node(&node, sibling)
                } else {
                    inner_node(sibling, &node)
                };
            }
            idx /= 2;
            width = width.div_ceil(2);
        }
        if siblings.next().is_some() {
            return Err(WHAT);
        }
        Ok(node)
    }

    /// Checks that `leaf` sits at this path's index in the tree of `leaf_count` leaves with `root`.
    ///
    /// # Errors
    /// [`Error::Authentication`] if it does not (including a malformed path).
    pub fn verify(&self, leaf: &[u8; 32], leaf_count: u32, root: &[u8; 32]) -> Result<()> {
        match self.root_from(leaf, leaf_count) {
            Ok(computed) if crate::ct::eq(&computed, root) => Ok(()),
            _ => Err(Error::Authentication),
        }
    }

    /// Encoding: u32 index (big-endian) || u8 sibling count || siblings.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + 32 * self.siblings.len());
        out.extend_from_slice(&self.index.to_be_bytes());
        // A tree of at most 2^32 - 1 leaves has at most 32 levels, so the count fits a byte.
        out.push(u8::try_from(self.siblings.len()).unwrap_or(u8::MAX));
        self.siblings.iter().for_each(|s| out.extend_from_slice(s));
        out
    }

    /// Decodes [`MerklePath::to_bytes`]'s encoding.
    ///
    /// # Errors
    /// [`Error::Decode`] if the length does not match the declared count or the count exceeds 32.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        const WHAT: Error = Error::Decode {
            what: "Merkle path",
        };
        let (index, rest) = bytes.split_at_checked(4).ok_or(WHAT)?;
        let index = u32::from_be_bytes(index.try_into().map_err(|_| WHAT)?);
        let (&count, rest) = rest.split_first().ok_or(WHAT)?;
        if count > 32 || rest.len() != usize::from(count) * 32 {
            return Err(WHAT);
        }
        let siblings = rest
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(Self { index, siblings })
    }
}

fn leaf_node(leaf: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(&[LEAF_PREFIX]);
    h.update(leaf);
    h.finalize()
}

fn inner_node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(&[INNER_PREFIX]);
    h.update(left);
    h.update(right);
    h.finalize()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::hash::sha256;

    fn leaves(n: usize) -> Vec<[u8; 32]> {
        (0..n).map(|i| sha256(&i.to_be_bytes())).collect()
    }

    #[test]
    fn every_path_of_every_small_tree_verifies() {
        for n in 1..=17 {
            let ls = leaves(n);
            let tree = MerkleTree::new(&ls).unwrap();
            assert_eq!(tree.len(), n);
            for (i, leaf) in ls.iter().enumerate() {
                let path = tree.path(i).unwrap();
                path.verify(leaf, tree.leaf_count(), &tree.root()).unwrap();
                let decoded = MerklePath::from_bytes(&path.to_bytes()).unwrap();
                assert_eq!(decoded, path);
                // Wrong leaf, wrong index, wrong count, tampered sibling: all rejected.
                let other = sha256(b"other");
                assert!(
                    path.verify(&other, tree.leaf_count(), &tree.root())
                        .is_err()
                );
                if n > 1 {
                    let mut moved = path.clone();
                    moved.index = u32::try_from((i + 1) % n).unwrap();
                    assert!(moved.verify(leaf, tree.leaf_count(), &tree.root()).is_err());
                    let mut bad = path.clone();
                    bad.siblings[0][0] ^= 1;
                    assert!(bad.verify(leaf, tree.leaf_count(), &tree.root()).is_err());
                    // A wrong count changes the promotion pattern at least for the last leaf.
                    if i == n - 1 && n.is_power_of_two() {
                        assert!(
                            path.verify(leaf, tree.leaf_count() + 1, &tree.root())
                                .is_err()
                        );
                    }
                }
            }
            assert!(tree.path(n).is_none());
        }
    }

    #[test]
    fn known_shape_three_leaves() {
        let ls = leaves(3);
        let tree = MerkleTree::new(&ls).unwrap();
        let (a, b, c) = (leaf_node(&ls[0]), leaf_node(&ls[1]), leaf_node(&ls[2]));
        assert_eq!(tree.root(), inner_node(&inner_node(&a, &b), &c));
        assert_eq!(MerkleTree::new(&ls[..1]).unwrap().root(), a);
        assert!(MerkleTree::new(&[]).is_err());
    }
}
