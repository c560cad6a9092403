//! The payloads of RFC 3830 §6 other than the Key data sub-payload.
//!
//! Each `encode` appends the payload with the next-payload code it is given; each `decode` reads
//! one payload (from its next-payload byte) and returns it with the next-payload code it found.

use core::ops::Range;

use super::cursor::Cursor;
use super::{
    CertType, EncrAlg, ErrorCode, Field, IdType, MikeyError, PkeCache, SignType, SpProtType,
    SrtpAuthAlg, SrtpEncrAlg, len_u8, len_u16, srtp_param,
};
use crate::Result;

/// Length of an HMAC-SHA-1-160 MAC (RFC 3830 §6.2).
const HMAC_SHA1_160_LEN: usize = 20;

/// A MAC of the KEMAC (§6.2) or V (§6.9) payload, with its algorithm (Table 6.2.b).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mac {
    /// MAC algorithm NULL (0): no MAC field.
    Null,
    /// MAC algorithm HMAC-SHA-1-160 (1): a 160-bit MAC.
    HmacSha1_160([u8; HMAC_SHA1_160_LEN]),
}

impl Mac {
    /// The MAC algorithm code (Table 6.2.b).
    #[must_use]
    pub fn alg_code(&self) -> u8 {
        match self {
            Self::Null => 0,
            Self::HmacSha1_160(_) => 1,
        }
    }

    /// The MAC field's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Null => &[],
            Self::HmacSha1_160(m) => m,
        }
    }

    /// Appends "Mac alg, MAC"; returns the range of the MAC field.
    fn encode(&self, out: &mut Vec<u8>) -> Range<usize> {
        out.push(self.alg_code());
        let start = out.len();
        out.extend_from_slice(self.as_bytes());
        start..out.len()
    }

    /// Reads "Mac alg, MAC"; returns the range of the MAC field.
    fn decode(c: &mut Cursor<'_>, what: &'static str) -> Result<(Self, Range<usize>)> {
        let alg = c.u8(what)?;
        let start = c.pos();
        let mac = match alg {
            0 => Self::Null,
            1 => Self::HmacSha1_160(c.array(what)?),
            value => {
                return Err(MikeyError::Unsupported {
                    field: Field::MacAlg,
                    value,
                }
                .into());
            }
        };
        Ok((mac, start..c.pos()))
    }
}

/// Key data transport payload (KEMAC, RFC 3830 §6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kemac {
    /// How `encr_data` is encrypted.
    pub encr_alg: EncrAlg,
    /// The encrypted [`KemacPlaintext`](super::KemacPlaintext) (at most 65535 bytes).
    pub encr_data: Vec<u8>,
    /// The MAC.
    pub mac: Mac,
}

impl Kemac {
    pub(super) fn encode(&self, next: u8, out: &mut Vec<u8>) -> Result<Range<usize>> {
        // Next payload, Encr alg, Encr data len (16), Encr data, Mac alg, MAC.
        let len = len_u16("KEMAC encr data", self.encr_data.len(), u16::MAX)?;
        out.push(next);
        out.push(self.encr_alg.code());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.encr_data);
        Ok(self.mac.encode(out))
    }

    pub(super) fn decode(c: &mut Cursor<'_>) -> Result<(Self, u8, Range<usize>)> {
        const W: &str = "KEMAC";
        let next = c.u8(W)?;
        let encr_alg = EncrAlg::try_from(c.u8(W)?)?;
        let len = c.u16(W)?;
        let encr_data = c.bytes(usize::from(len), W)?.to_vec();
        let (mac, range) = Mac::decode(c, W)?;
        Ok((
            Self {
                encr_alg,
                encr_data,
                mac,
            },
            next,
            range,
        ))
    }
}

/// Envelope data payload (PKE, RFC 3830 §6.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pke {
    /// The cache indicator C.
    pub cache: PkeCache,
    /// The envelope key encrypted under the responder's public key (at most 16383 bytes).
    pub data: Vec<u8>,
}

/// Largest PKE data length (14 bits).
const PKE_MAX: u16 = 0x3fff;

impl Pke {
    pub(super) fn encode(&self, next: u8, out: &mut Vec<u8>) -> Result<()> {
        // Next payload, C (2 bits) | Data len (14 bits), Data.
        let len = len_u16("PKE data", self.data.len(), PKE_MAX)?;
        out.push(next);
        out.extend_from_slice(&((u16::from(self.cache.code()) << 14) | len).to_be_bytes());
        out.extend_from_slice(&self.data);
        Ok(())
    }

    pub(super) fn decode(c: &mut Cursor<'_>) -> Result<(Self, u8)> {
        const W: &str = "PKE";
        let next = c.u8(W)?;
        let [hi, lo] = c.array(W)?;
        let cache = PkeCache::try_from(hi >> 6)?;
        let len = u16::from_be_bytes([hi & 0x3f, lo]);
        let data = c.bytes(usize::from(len), W)?.to_vec();
        Ok((Self { cache, data }, next))
    }
}

/// Signature payload (SIGN, RFC 3830 §6.5): no next-payload field, always last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sign {
    /// The signature scheme.
    pub s_type: SignType,
    /// The signature (at most 4095 bytes: its length is a 12-bit field).
    pub signature: Vec<u8>,
}

/// Largest signature length (12 bits).
const SIGN_MAX: u16 = 0x0fff;

impl Sign {
    pub(super) fn encode(&self, out: &mut Vec<u8>) -> Result<Range<usize>> {
        // S type (4 bits) | Signature len (12 bits), Signature.
        let len = len_u16("SIGN signature", self.signature.len(), SIGN_MAX)?;
        out.extend_from_slice(&((u16::from(self.s_type.code()) << 12) | len).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(&self.signature);
        Ok(start..out.len())
    }

    pub(super) fn decode(c: &mut Cursor<'_>) -> Result<(Self, Range<usize>)> {
        const W: &str = "SIGN";
        let [hi, lo] = c.array(W)?;
        let s_type = SignType::try_from(hi >> 4)?;
        let len = u16::from_be_bytes([hi & 0x0f, lo]);
        let start = c.pos();
        let signature = c.bytes(usize::from(len), W)?.to_vec();
        Ok((Self { s_type, signature }, start..c.pos()))
    }
}

/// Timestamp payload (T, RFC 3830 §6.6), by TS type (Table 6.6.a).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timestamp {
    /// TS type NTP-UTC (0): 64-bit NTP timestamp in UTC (RFC 1305 format: seconds since 1900
    /// in the high 32 bits, fraction in the low 32).
    NtpUtc(u64),
    /// TS type NTP (1): 64-bit NTP timestamp, local time.
    Ntp(u64),
    /// TS type COUNTER (2): a 32-bit counter.
    Counter(u32),
}

impl Timestamp {
    /// The TS type code.
    #[must_use]
    pub fn ts_type(&self) -> u8 {
        match self {
            Self::NtpUtc(_) => 0,
            Self::Ntp(_) => 1,
            Self::Counter(_) => 2,
        }
    }

    pub(super) fn encode(&self, next: u8, out: &mut Vec<u8>) {
        // Next payload, TS type, TS value.
        out.push(next);
        out.push(self.ts_type());
        match self {
            Self::NtpUtc(t) | Self::Ntp(t) => out.extend_from_slice(&t.to_be_bytes()),
            Self::Counter(t) => out.extend_from_slice(&t.to_be_bytes()),
        }
    }

    pub(super) fn decode(c: &mut Cursor<'_>) -> Result<(Self, u8)> {
        const W: &str = "T";
        let next = c.u8(W)?;
        let t = match c.u8(W)? {
            0 => Self::NtpUtc(c.u64(W)?),
            1 => Self::Ntp(c.u64(W)?),
            2 => Self::Counter(c.u32(W)?),
            value => {
                return Err(MikeyError::Unsupported {
                    field: Field::TsType,
                    value,
                }
                .into());
            }
        };
        Ok((t, next))
    }
}

/// Identity payload (ID, RFC 3830 §6.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id {
    /// The identity's type.
    pub id_type: IdType,
    /// The identity (an NAI or URI, not checked to be text; at most 65535 bytes).
    pub data: Vec<u8>,
}

impl Id {
    pub(super) fn encode(&self, next: u8, out: &mut Vec<u8>) -> Result<()> {
        // Next payload, ID Type, ID len (16), ID data.
        encode_tlv16(next, self.id_type.code(), &self.data, "ID data", out)
    }

    pub(super) fn decode(c: &mut Cursor<'_>) -> Result<(Self, u8)> {
        let (next, t, data) = decode_tlv16(c, "ID")?;
        let id_type = IdType::try_from(t)?;
        Ok((Self { id_type, data }, next))
    }

    pub(super) fn encoded_len(&self) -> usize {
        4 + self.data.len()
    }
}

/// Certificate payload (CERT, RFC 3830 §6.7); the certificate is opaque here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    /// The certificate's type.
    pub cert_type: CertType,
    /// The certificate (DER for X.509v3; at most 65535 bytes).
    pub data: Vec<u8>,
}

impl Cert {
    pub(super) fn encode(&self, next: u8, out: &mut Vec<u8>) -> Result<()> {
        // Next payload, Cert type, Cert len (16), Cert data.
        encode_tlv16(next, self.cert_type.code(), &self.data, "CERT data", out)
    }

    pub(super) fn decode(c: &mut Cursor<'_>) -> Result<(Self, u8)> {
        let (next, t, data) = decode_tlv16(c, "CERT")?;
        let cert_type = CertType::try_from(t)?;
        Ok((Self { cert_type, data }, next))
    }
}

/// Certificate hash payload (CHASH, RFC 3830 §6.8), by hash function (Table 6.8.a); the hash
/// length follows from the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Chash {
    /// Hash func SHA-1 (0), 160 bits.
    Sha1([u8; 20]),
    /// Hash func MD5 (1), 128 bits.
    Md5([u8; 16]),
}

impl Chash {
    pub(super) fn encode(&self, next: u8, out: &mut Vec<u8>) {
        // Next payload, Hash func, Hash.
        out.push(next);
        match self {
            Self::Sha1(h) => {
                out.push(0);
                out.extend_from_slice(h);
            }
            Self::Md5(h) => {
                out.push(1);
                out.extend_from_slice(h);
            }
        }
    }

    pub(super) fn decode(c: &mut Cursor<'_>) -> Result<(Self, u8)> {
        const W: &str = "CHASH";
        let next = c.u8(W)?;
        let h = match c.u8(W)? {
            0 => Self::Sha1(c.array(W)?),
            1 => Self::Md5(c.array(W)?),
            value => {
                return Err(MikeyError::Unsupported {
                    field: Field::HashFunc,
                    value,
                }
                .into());
            }
        };
        Ok((h, next))
    }
}

/// Verification message payload (V, RFC 3830 §6.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Verification {
    /// The MAC ("Auth alg" and "Ver data").
    pub mac: Mac,
}

impl Verification {
    pub(super) fn encode(&self, next: u8, out: &mut Vec<u8>) -> Range<usize> {
        // Next payload, Auth alg, Ver data.
        out.push(next);
        self.mac.encode(out)
    }

    pub(super) fn decode(c: &mut Cursor<'_>) -> Result<(Self, u8, Range<usize>)> {
        let next = c.u8("V")?;
        let (mac, range) = Mac::decode(c, "V")?;
        Ok((Self { mac }, next, range))
    }
}

/// One policy parameter of an SP payload (RFC 3830 §6.10: Type, Length (8), Value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpParam {
    /// The parameter type (for SRTP, a [`srtp_param`](super::srtp_param) constant).
    pub param_type: u8,
    /// The value (at most 255 bytes).
    pub value: Vec<u8>,
}

/// Security policy payload (SP, RFC 3830 §6.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityPolicy {
    /// The policy number the CS ID map refers to.
    pub policy_no: u8,
    /// The security protocol.
    pub prot_type: SpProtType,
    /// The parameters, in wire order (at most 65535 bytes encoded).
    pub params: Vec<SpParam>,
}

/// The SRTP parameters of an SP payload (RFC 3830 §6.10.1) as typed values; `None` = absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SrtpPolicy {
    /// Encryption algorithm (type 0).
    pub encr_alg: Option<SrtpEncrAlg>,
    /// Session encryption key length in bytes (type 1).
    pub encr_key_len: Option<u8>,
    /// Authentication algorithm (type 2).
    pub auth_alg: Option<SrtpAuthAlg>,
    /// Session authentication key length in bytes (type 3).
    pub auth_key_len: Option<u8>,
    /// Session salt key length in bytes (type 4).
    pub salt_key_len: Option<u8>,
    /// SRTP pseudo-random function (type 5; 0 = AES-CM).
    pub prf: Option<u8>,
    /// SRTP encryption on (type 7).
    pub srtp_encr: Option<bool>,
    /// SRTCP encryption on (type 8).
    pub srtcp_encr: Option<bool>,
    /// SRTP authentication on (type 10).
    pub srtp_auth: Option<bool>,
    /// Authentication tag length in bytes (type 11).
    pub auth_tag_len: Option<u8>,
}

impl SecurityPolicy {
    /// An SRTP policy carrying the parameters present in `policy`, in type order.
    #[must_use]
    pub fn srtp(policy_no: u8, policy: &SrtpPolicy) -> Self {
        let p = policy;
        let fields = [
            (srtp_param::ENCR_ALG, p.encr_alg.map(SrtpEncrAlg::code)),
            (srtp_param::ENCR_KEY_LEN, p.encr_key_len),
            (srtp_param::AUTH_ALG, p.auth_alg.map(SrtpAuthAlg::code)),
            (srtp_param::AUTH_KEY_LEN, p.auth_key_len),
            (srtp_param::SALT_KEY_LEN, p.salt_key_len),
            (srtp_param::PRF, p.prf),
            (srtp_param::SRTP_ENCR, p.srtp_encr.map(u8::from)),
            (srtp_param::SRTCP_ENCR, p.srtcp_encr.map(u8::from)),
            (srtp_param::SRTP_AUTH, p.srtp_auth.map(u8::from)),
            (srtp_param::AUTH_TAG_LEN, p.auth_tag_len),
        ];
        Self {
            policy_no,
            prot_type: SpProtType::Srtp,
            params: fields
                .into_iter()
                .filter_map(|(param_type, v)| {
                    v.map(|v| SpParam {
                        param_type,
                        value: vec![v],
                    })
                })
                .collect(),
        }
    }

    /// The value of the parameter of type `param_type`, if present exactly once.
    ///
    /// # Errors
    /// [`MikeyError::BadParam`] if the parameter occurs more than once.
    pub fn param(&self, param_type: u8) -> Result<Option<&[u8]>> {
        let mut found = self.params.iter().filter(|p| p.param_type == param_type);
        match (found.next(), found.next()) {
            (None, _) => Ok(None),
            (Some(p), None) => Ok(Some(&p.value)),
            (Some(_), Some(_)) => Err(MikeyError::BadParam { param_type }.into()),
        }
    }

    /// A one-byte parameter.
    fn param_u8(&self, param_type: u8) -> Result<Option<u8>> {
        match self.param(param_type)? {
            None => Ok(None),
            Some(&[v]) => Ok(Some(v)),
            Some(_) => Err(MikeyError::BadParam { param_type }.into()),
        }
    }

    /// An off (0) / on (1) parameter.
    fn param_bool(&self, param_type: u8) -> Result<Option<bool>> {
        match self.param_u8(param_type)? {
            None => Ok(None),
            Some(0) => Ok(Some(false)),
            Some(1) => Ok(Some(true)),
            Some(_) => Err(MikeyError::BadParam { param_type }.into()),
        }
    }

    /// The typed SRTP parameters (RFC 3830 §6.10.1); parameters of other types are ignored.
    ///
    /// # Errors
    /// [`MikeyError::BadParam`] for a repeated parameter, a value of the wrong length or an
    /// off/on value other than 0 or 1; [`MikeyError::Unsupported`] for an unknown algorithm.
    pub fn srtp_policy(&self) -> Result<SrtpPolicy> {
        Ok(SrtpPolicy {
            encr_alg: self
                .param_u8(srtp_param::ENCR_ALG)?
                .map(SrtpEncrAlg::try_from)
                .transpose()?,
            encr_key_len: self.param_u8(srtp_param::ENCR_KEY_LEN)?,
            auth_alg: self
                .param_u8(srtp_param::AUTH_ALG)?
                .map(SrtpAuthAlg::try_from)
                .transpose()?,
            auth_key_len: self.param_u8(srtp_param::AUTH_KEY_LEN)?,
            salt_key_len: self.param_u8(srtp_param::SALT_KEY_LEN)?,
            prf: self.param_u8(srtp_param::PRF)?,
            srtp_encr: self.param_bool(srtp_param::SRTP_ENCR)?,
            srtcp_encr: self.param_bool(srtp_param::SRTCP_ENCR)?,
            srtp_auth: self.param_bool(srtp_param::SRTP_AUTH)?,
            auth_tag_len: self.param_u8(srtp_param::AUTH_TAG_LEN)?,
        })
    }

    pub(super) fn encode(&self, next: u8, out: &mut Vec<u8>) -> Result<()> {
        // Next payload, Policy no, Prot type, Policy param length (16), then per parameter
        // Type, Length (8), Value.
        let total: usize = self.params.iter().map(|p| 2 + p.value.len()).sum();
        let total = len_u16("SP policy params", total, u16::MAX)?;
        out.push(next);
        out.push(self.policy_no);
        out.push(self.prot_type.code());
        out.extend_from_slice(&total.to_be_bytes());
        for p in &self.params {
            out.push(p.param_type);
            out.push(len_u8("SP param value", p.value.len())?);
            out.extend_from_slice(&p.value);
        }
        Ok(())
    }

    pub(super) fn decode(c: &mut Cursor<'_>) -> Result<(Self, u8)> {
        const W: &str = "SP";
        let next = c.u8(W)?;
        let policy_no = c.u8(W)?;
        let prot_type = SpProtType::try_from(c.u8(W)?)?;
        let len = c.u16(W)?;
        let mut block = Cursor::inner(c.bytes(usize::from(len), W)?);
        let mut params = Vec::new();
        while block.remaining() != 0 {
            const P: &str = "SP policy param";
            let param_type = block.u8(P)?;
            let n = block.u8(P)?;
            let value = block.bytes(usize::from(n), P)?.to_vec();
            params.push(SpParam { param_type, value });
        }
        Ok((
            Self {
                policy_no,
                prot_type,
                params,
            },
            next,
        ))
    }
}

/// RAND payload (RFC 3830 §6.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rand {
    /// The random value (at most 255 bytes; §4.1.2 wants at least 16).
    pub data: Vec<u8>,
}

impl Rand {
    pub(super) fn encode(&self, next: u8, out: &mut Vec<u8>) -> Result<()> {
        // Next payload, RAND len (8), RAND.
        let len = len_u8("RAND", self.data.len())?;
        out.push(next);
        out.push(len);
        out.extend_from_slice(&self.data);
        Ok(())
    }

    pub(super) fn decode(c: &mut Cursor<'_>) -> Result<(Self, u8)> {
        const W: &str = "RAND";
        let next = c.u8(W)?;
        let len = c.u8(W)?;
        let data = c.bytes(usize::from(len), W)?.to_vec();
        Ok((Self { data }, next))
    }
}

/// Error payload (ERR, RFC 3830 §6.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorPayload {
    /// The error number.
    pub code: ErrorCode,
}

impl ErrorPayload {
    pub(super) fn encode(&self, next: u8, out: &mut Vec<u8>) {
        // Next payload, Err no, Reserved (16 bits, zero).
        out.extend_from_slice(&[next, self.code.code(), 0, 0]);
    }

    pub(super) fn decode(c: &mut Cursor<'_>) -> Result<(Self, u8)> {
        const W: &str = "ERR";
        let [next, code, r0, r1] = c.array(W)?;
        let code = ErrorCode::try_from(code)?;
        if r0 != 0 || r1 != 0 {
            return Err(MikeyError::ReservedNonZero { what: W }.into());
        }
        Ok((Self { code }, next))
    }
}

/// General extension payload (RFC 3830 §6.15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneralExt {
    /// The extension type (see [`general_ext`](super::general_ext)).
    pub ext_type: u8,
    /// The data (at most 65535 bytes).
    pub data: Vec<u8>,
}

impl GeneralExt {
    pub(super) fn encode(&self, next: u8, out: &mut Vec<u8>) -> Result<()> {
        // Next payload, Type, Length (16), Data.
        encode_tlv16(next, self.ext_type, &self.data, "General Ext. data", out)
    }

    pub(super) fn decode(c: &mut Cursor<'_>) -> Result<(Self, u8)> {
        let (next, ext_type, data) = decode_tlv16(c, "General Ext.")?;
        Ok((Self { ext_type, data }, next))
    }
}

/// Appends "Next payload, type (8), length (16), data" (ID, CERT, General Ext.).
fn encode_tlv16(next: u8, t: u8, data: &[u8], what: &'static str, out: &mut Vec<u8>) -> Result<()> {
    let len = len_u16(what, data.len(), u16::MAX)?;
    out.push(next);
    out.push(t);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    Ok(())
}

/// Reads "Next payload, type (8), length (16), data".
fn decode_tlv16(c: &mut Cursor<'_>, what: &'static str) -> Result<(u8, u8, Vec<u8>)> {
    let next = c.u8(what)?;
    let t = c.u8(what)?;
    let len = c.u16(what)?;
    let data = c.bytes(usize::from(len), what)?.to_vec();
    Ok((next, t, data))
}
