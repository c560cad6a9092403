//! A bounds-checked reader over MIKEY bytes.

use super::MikeyError;
use crate::Result;

/// Reads big-endian fields; every read past the end is a typed error, never a panic.
#[derive(Debug)]
pub(super) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Reading inside a length-delimited block: running past its end is a length overflow of the
    /// item being read rather than a truncated message.
    inner: bool,
}

impl<'a> Cursor<'a> {
    /// A cursor over a whole input.
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            inner: false,
        }
    }

    /// A cursor over a block whose length an enclosing structure declared.
    pub(super) fn inner(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            inner: true,
        }
    }

    /// Bytes consumed so far.
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub(super) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes.
    pub(super) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or(if self.inner {
                MikeyError::LengthOverflow { what }
            } else {
                MikeyError::Truncated { what }
            })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// The next `N` bytes as an array.
    pub(super) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.bytes(N, what)?);
        Ok(out)
    }

    pub(super) fn u8(&mut self, what: &'static str) -> Result<u8> {
        let [b] = self.array(what)?;
        Ok(b)
    }

    pub(super) fn u16(&mut self, what: &'static str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(super) fn u32(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub(super) fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }
}
