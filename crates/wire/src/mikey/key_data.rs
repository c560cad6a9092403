//! The Key data sub-payload (RFC 3830 §6.13) and the KEMAC plaintext it forms.

use core::fmt;

use zeroize::Zeroizing;

use super::cursor::Cursor;
use super::payloads::Id;
use super::{Field, MikeyError, len_u8, len_u16, payload_type};
use crate::Result;

/// What a Key data sub-payload carries (the Type field without its salt bit, Table 6.13.a).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// A TEK generation key (types TGK = 0, TGK+SALT = 1).
    Tgk,
    /// A traffic-encrypting key (types TEK = 2, TEK+SALT = 3).
    Tek,
}

/// Key validity data (RFC 3830 §6.14), by KV type (Table 6.13.b).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyValidity {
    /// KV NULL (0): no validity data.
    Null,
    /// KV SPI (1): the SPI/MKI the key belongs to (at most 255 bytes).
    Spi(Vec<u8>),
    /// KV Interval (2): valid from / to, as SRTP indices (each at most 255 bytes).
    Interval {
        /// First index the key is valid for.
        from: Vec<u8>,
        /// Index at which it expires.
        to: Vec<u8>,
    },
}

/// A Key data sub-payload (RFC 3830 §6.13): a TGK or TEK, its optional salt and validity.
///
/// The key and the salt are zeroized on drop and never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyData {
    kind: KeyKind,
    key: Zeroizing<Vec<u8>>,
    salt: Option<Zeroizing<Vec<u8>>>,
    validity: KeyValidity,
}

impl fmt::Debug for KeyData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyData")
            .field("kind", &self.kind)
            .field("key_len", &self.key.len())
            .field("salt_len", &self.salt.as_ref().map(|s| s.len()))
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

impl KeyData {
    /// A key; with a salt the Type field says TGK+SALT or TEK+SALT (an empty salt is still sent).
    #[must_use]
    pub fn new(kind: KeyKind, key: Vec<u8>, salt: Option<Vec<u8>>, validity: KeyValidity) -> Self {
        Self {
            kind,
            key: Zeroizing::new(key),
            salt: salt.map(Zeroizing::new),
            validity,
        }
    }

    /// TGK or TEK.
    #[must_use]
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The key.
    #[must_use]
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The salt, if the type is one with salt.
    #[must_use]
    pub fn salt(&self) -> Option<&[u8]> {
        self.salt.as_deref().map(Vec::as_slice)
    }

    /// The key validity.
    #[must_use]
    pub fn validity(&self) -> &KeyValidity {
        &self.validity
    }

    /// The 4-bit Type code (Table 6.13.a).
    fn type_code(&self) -> u8 {
        match (self.kind, self.salt.is_some()) {
            (KeyKind::Tgk, false) => 0,
            (KeyKind::Tgk, true) => 1,
            (KeyKind::Tek, false) => 2,
            (KeyKind::Tek, true) => 3,
        }
    }

    fn encoded_len(&self) -> usize {
        let salt = self.salt.as_ref().map_or(0, |s| 2 + s.len());
        let kv = match &self.validity {
            KeyValidity::Null => 0,
            KeyValidity::Spi(spi) => 1 + spi.len(),
            KeyValidity::Interval { from, to } => 2 + from.len() + to.len(),
        };
        4 + self.key.len() + salt + kv
    }

    fn encode(&self, next: u8, out: &mut Vec<u8>) -> Result<()> {
        // RFC 3830 §6.13: Next payload, Type (4) | KV (4), Key data len (16), Key data,
        // [Salt len (16), Salt data], [KV data (§6.14)].
        let kv = match self.validity {
            KeyValidity::Null => 0,
            KeyValidity::Spi(_) => 1,
            KeyValidity::Interval { .. } => 2,
        };
        let key_len = len_u16("Key data", self.key.len(), u16::MAX)?;
        out.push(next);
        out.push((self.type_code() << 4) | kv);
        out.extend_from_slice(&key_len.to_be_bytes());
        out.extend_from_slice(&self.key);
        if let Some(salt) = &self.salt {
            out.extend_from_slice(&len_u16("Salt data", salt.len(), u16::MAX)?.to_be_bytes());
            out.extend_from_slice(salt);
        }
        match &self.validity {
            KeyValidity::Null => {}
            KeyValidity::Spi(spi) => {
                // §6.14: SPI Length (8), SPI.
                out.push(len_u8("KV SPI", spi.len())?);
                out.extend_from_slice(spi);
            }
            KeyValidity::Interval { from, to } => {
                // §6.14: VF Length (8), Valid From, VT Length (8), Valid To.
                out.push(len_u8("KV valid from", from.len())?);
                out.extend_from_slice(from);
                out.push(len_u8("KV valid to", to.len())?);
                out.extend_from_slice(to);
            }
        }
        Ok(())
    }

    fn decode(c: &mut Cursor<'_>) -> Result<(Self, u8)> {
        const W: &str = "Key data";
        let next = c.u8(W)?;
        let type_kv = c.u8(W)?;
        let (kind, salted) = match type_kv >> 4 {
            0 => (KeyKind::Tgk, false),
            1 => (KeyKind::Tgk, true),
            2 => (KeyKind::Tek, false),
            3 => (KeyKind::Tek, true),
            value => {
                return Err(MikeyError::Unsupported {
                    field: Field::KeyType,
                    value,
                }
                .into());
            }
        };
        let kv = type_kv & 0x0f;
        if kv > 2 {
            return Err(MikeyError::Unsupported {
                field: Field::KvType,
                value: kv,
            }
            .into());
        }
        let key_len = c.u16(W)?;
        let key = Zeroizing::new(c.bytes(usize::from(key_len), W)?.to_vec());
        let salt = if salted {
            let n = c.u16(W)?;
            Some(Zeroizing::new(c.bytes(usize::from(n), W)?.to_vec()))
        } else {
            None
        };
        let validity = match kv {
            0 => KeyValidity::Null,
            1 => {
                let n = c.u8(W)?;
                KeyValidity::Spi(c.bytes(usize::from(n), W)?.to_vec())
            }
            _ => {
                let n = c.u8(W)?;
                let from = c.bytes(usize::from(n), W)?.to_vec();
                let n = c.u8(W)?;
                let to = c.bytes(usize::from(n), W)?.to_vec();
                KeyValidity::Interval { from, to }
            }
        };
        Ok((
            Self {
                kind,
                key,
                salt,
                validity,
            },
            next,
        ))
    }
}

/// The plaintext of a KEMAC's Encr data: a chain of Key data sub-payloads, preceded in the
/// public-key mode by the initiator's ID (RFC 3830 §3.2: `E(encr_key, IDi || {TGK})`; §3.1 for
/// the pre-shared-key mode: `E(encr_key, {TGK})`).
///
/// Each sub-payload's next-payload field names the following one (Key data = 20) or ends the chain
/// (Last = 0); the first sub-payload's type is implicit, hence `with_id` when decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KemacPlaintext {
    /// The initiator's identity (public-key mode only).
    pub id: Option<Id>,
    /// The keys, in order.
    pub keys: Vec<KeyData>,
}

impl KemacPlaintext {
    /// The plaintext bytes, ready to be encrypted (zeroized on drop).
    ///
    /// # Errors
    /// [`MikeyError::TooLong`] for a field longer than its length field allows.
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>> {
        let len = self.id.as_ref().map_or(0, Id::encoded_len)
            + self.keys.iter().map(KeyData::encoded_len).sum::<usize>();
        // Sized up front so that no reallocation leaves copies of key material behind.
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        let after = |i: usize| {
            if i < self.keys.len() {
                payload_type::KEY_DATA
            } else {
                payload_type::LAST
            }
        };
        if let Some(id) = &self.id {
            id.encode(after(0), &mut out)?;
        }
        for (i, k) in self.keys.iter().enumerate() {
            k.encode(after(i + 1), &mut out)?;
        }
        Ok(out)
    }

    /// Decodes a decrypted Encr data field; `with_id` says whether an ID payload comes first.
    ///
    /// # Errors
    /// [`Error::Mikey`](crate::Error::Mikey): truncation, an unknown key or KV type, a next-payload
    /// field other than Key data or Last ([`MikeyError::BadChain`]), or trailing bytes.
    pub fn decode(bytes: &[u8], with_id: bool) -> Result<Self> {
        let mut c = Cursor::new(bytes);
        let (id, mut next, mut after) = if with_id {
            let (id, next) = Id::decode(&mut c)?;
            (Some(id), next, "ID")
        } else if bytes.is_empty() {
            (None, payload_type::LAST, "KEMAC")
        } else {
            (None, payload_type::KEY_DATA, "KEMAC")
        };
        let mut keys = Vec::new();
        while next != payload_type::LAST {
            if next != payload_type::KEY_DATA {
                return Err(MikeyError::BadChain { after, next }.into());
            }
            let (k, n) = KeyData::decode(&mut c)?;
            keys.push(k);
            next = n;
            after = "Key data";
        }
        if c.remaining() != 0 {
            return Err(MikeyError::TrailingBytes(c.remaining()).into());
        }
        Ok(Self { id, keys })
    }
}
