//! RFC 3830 messages as the MIKEY roles read and build them: payloads, KEMAC and envelope
//! opening, verification and error messages.

use core::net::SocketAddr;

use m2msec_crypto::mikey::{self as mk, KemacEncryption, KemacMac, MessageKeys, SignScheme};
use m2msec_crypto::pke::{PkePublicKey, PkeSecretKey};
use m2msec_crypto::rng::CryptoRng;
use m2msec_crypto::sig::{SigningKey, VerifyingKey};
use m2msec_wire::mikey::{
    DataType, EncrAlg, ErrorCode, ErrorPayload, GeneralExt, Header, Id, IdType, KemacPlaintext,
    KeyData, KeyKind, KeyValidity, Mac, Message, Payload, Pke, PkeCache, PrfFunc, Rand,
    SecurityPolicy, Sign, SignType, SrtpCs, SrtpPolicy, Timestamp, Verification,
};
use m2msec_wire::mikey::{Kemac, SrtpAuthAlg, SrtpEncrAlg};
use zeroize::Zeroizing;

use crate::{Millis, OpCounts};

use super::{
    DISTRIBUTED_EXT_TYPE, DistributedParams, ENVELOPE_KEY_LEN, Error, Outbox, Policy, Psk,
    RSA_SIGNATURE_LEN, ReplayCache, ntp_of,
};

/// The fields of an I_MESSAGE a receiver needs, read once at the edge.
#[derive(Debug)]
pub(super) struct Received {
    pub(super) header: Header,
    pub(super) ts: u64,
    pub(super) rand: Vec<u8>,
    pub(super) id_i: Option<String>,
    pub(super) id_r: Option<String>,
    pub(super) sp: Option<SecurityPolicy>,
    pub(super) distributed: Option<DistributedParams>,
    pub(super) kemac: Option<Kemac>,
    pub(super) pke: Option<Pke>,
    pub(super) sign: Option<Sign>,
    pub(super) verification: Option<Mac>,
    pub(super) error: Option<ErrorCode>,
}

impl Received {
    pub(super) fn read(msg: &Message) -> Result<Self, Error> {
        let mut r = Self {
            header: msg.header.clone(),
            ts: 0,
            rand: Vec::new(),
            id_i: None,
            id_r: None,
            sp: None,
            distributed: None,
            kemac: None,
            pke: None,
            sign: None,
            verification: None,
            error: None,
        };
        let mut ts = None;
        let mut ids = Vec::new();
        for p in &msg.payloads {
            match p {
                Payload::T(Timestamp::NtpUtc(t) | Timestamp::Ntp(t)) => ts = Some(*t),
                Payload::T(Timestamp::Counter(c)) => ts = Some(u64::from(*c)),
                Payload::Rand(rand) => r.rand.clone_from(&rand.data),
                Payload::Id(id) => ids.push(String::from_utf8_lossy(&id.data).into_owned()),
                Payload::Sp(sp) => r.sp = Some(sp.clone()),
                Payload::GeneralExt(ext) if ext.ext_type == DISTRIBUTED_EXT_TYPE => {
                    r.distributed = Some(DistributedParams::from_ext(ext)?);
                }
                Payload::Kemac(k) => r.kemac = Some(k.clone()),
                Payload::Pke(p) => r.pke = Some(p.clone()),
                Payload::Sign(s) => r.sign = Some(s.clone()),
                Payload::V(v) => r.verification = Some(v.mac),
                Payload::Err(e) => r.error = Some(e.code),
                _ => {}
            }
        }
        r.ts = ts.ok_or(Error::Malformed("no T payload"))?;
        let mut ids = ids.into_iter();
        match msg.header.data_type {
            // Verification messages carry only IDr (§3.1, §3.2).
            DataType::PskVerify | DataType::PkVerify => r.id_r = ids.next(),
            _ => {
                r.id_i = ids.next();
                r.id_r = ids.next();
            }
        }
        Ok(r)
    }
}

fn nai(id: &str) -> Payload {
    Payload::Id(Id {
        id_type: IdType::Nai,
        data: id.as_bytes().to_vec(),
    })
}

/// The SRTP policy our exchanges propose: AES-CM-128 with HMAC-SHA-1-80, as RFC 3711 defaults.
fn srtp_policy() -> SecurityPolicy {
    SecurityPolicy::srtp(
        0,
        &SrtpPolicy {
            encr_alg: Some(SrtpEncrAlg::AesCm),
            encr_key_len: Some(16),
            auth_alg: Some(SrtpAuthAlg::HmacSha1),
            auth_key_len: Some(20),
            salt_key_len: Some(14),
            auth_tag_len: Some(10),
            ..SrtpPolicy::default()
        },
    )
}

pub(super) fn header(data_type: DataType, v: bool, csb_id: u32, cs_map: Vec<SrtpCs>) -> Header {
    Header {
        data_type,
        v,
        prf: PrfFunc::Mikey1,
        csb_id,
        cs_map,
    }
}

fn encr_alg(e: KemacEncryption) -> EncrAlg {
    match e {
        KemacEncryption::Null => EncrAlg::Null,
        KemacEncryption::AesCm128 => EncrAlg::AesCm128,
        KemacEncryption::AesKw128 => EncrAlg::AesKw128,
    }
}

fn kemac_encryption(e: EncrAlg) -> KemacEncryption {
    match e {
        EncrAlg::Null => KemacEncryption::Null,
        EncrAlg::AesCm128 => KemacEncryption::AesCm128,
        EncrAlg::AesKw128 => KemacEncryption::AesKw128,
    }
}

/// What an I_MESSAGE transports.
pub(super) struct Offer<'a> {
    pub(super) header: Header,
    pub(super) ts: u64,
    pub(super) rand: &'a [u8],
    pub(super) id_i: &'a str,
    pub(super) id_r: &'a str,
    pub(super) key: KeyData,
    pub(super) extension: Option<GeneralExt>,
}

impl Offer<'_> {
    /// T, RAND, IDi, IDr, SP and the extension: the payloads both modes start with.
    pub(super) fn leading_payloads(&self) -> Vec<Payload> {
        let mut p = vec![
            Payload::T(Timestamp::NtpUtc(self.ts)),
            Payload::Rand(Rand {
                data: self.rand.to_vec(),
            }),
            nai(self.id_i),
            nai(self.id_r),
            Payload::Sp(srtp_policy()),
        ];
        if let Some(ext) = &self.extension {
            p.push(Payload::GeneralExt(ext.clone()));
        }
        p
    }

    /// A pre-shared-key I_MESSAGE (§3.1): KEMAC under keys from the PSK, MAC over the message.
    pub(super) fn psk_message(
        &self,
        ops: &mut OpCounts,
        policy: &Policy,
        psk: &Psk,
    ) -> Result<Vec<u8>, Error> {
        ops.hash += 3;
        let keys = MessageKeys::derive(psk.as_bytes(), self.header.csb_id, self.rand)?;
        let plain = KemacPlaintext {
            id: None,
            keys: vec![self.key.clone()],
        }
        .encode()?;
        ops.symmetric += 1;
        let encr_data = keys.encrypt(policy.kemac_encryption, self.ts, &plain)?;
        let mut payloads = self.leading_payloads();
        payloads.push(Payload::Kemac(Kemac {
            encr_alg: encr_alg(policy.kemac_encryption),
            encr_data,
            mac: Mac::HmacSha1_160([0; 20]),
        }));
        let mut msg = Message {
            header: self.header.clone(),
            payloads,
        };
        let input = msg.mac_input()?;
        ops.hash += 1;
        let mac = keys.mac(KemacMac::HmacSha1_160, &[&input]);
        set_last_mac(&mut msg, &mac)?;
        Ok(msg.encode()?)
    }

    /// A public-key I_MESSAGE (§3.2): KEMAC under keys from a fresh envelope key, the envelope
    /// key encrypted to R (PKE), the whole message signed (SIGN).
    pub(super) fn pk_message(
        &self,
        ops: &mut OpCounts,
        policy: &Policy,
        rng: &mut dyn CryptoRng,
        recipient: &PkePublicKey,
        signer: &SigningKey,
    ) -> Result<(Vec<u8>, MessageKeys), Error> {
        let env_key = Zeroizing::new(m2msec_crypto::rng::random_array::<ENVELOPE_KEY_LEN>(rng));
        ops.hash += 3;
        let keys = MessageKeys::derive(&env_key[..], self.header.csb_id, self.rand)?;
        let plain = KemacPlaintext {
            id: Some(Id {
                id_type: IdType::Nai,
                data: self.id_i.as_bytes().to_vec(),
            }),
            keys: vec![self.key.clone()],
        }
        .encode()?;
        ops.symmetric += 1;
        let encr_data = keys.encrypt(policy.kemac_encryption, self.ts, &plain)?;
        ops.asymmetric += 1;
        let envelope = mk::encrypt_envelope_key(recipient, policy.envelope, rng, &env_key[..])?;
        let mut payloads = self.leading_payloads();
        payloads.push(Payload::Kemac(Kemac {
            encr_alg: encr_alg(policy.kemac_encryption),
            encr_data,
            mac: Mac::HmacSha1_160([0; 20]),
        }));
        payloads.push(Payload::Pke(Pke {
            cache: PkeCache::NoCache,
            data: envelope,
        }));
        payloads.push(Payload::Sign(Sign {
            s_type: sign_type(policy.signature),
            signature: vec![0; RSA_SIGNATURE_LEN],
        }));
        let mut msg = Message {
            header: self.header.clone(),
            payloads,
        };
        ops.hash += 1;
        let mac = keys.mac(KemacMac::HmacSha1_160, &[&msg.kemac_mac_input()?]);
        set_kemac_mac(&mut msg, &mac)?;
        ops.asymmetric += 1;
        let signature = mk::sign(signer, policy.signature, rng, &msg.signature_input()?)?;
        if let Some(Payload::Sign(s)) = msg.payloads.last_mut() {
            s.signature = signature;
        }
        Ok((msg.encode()?, keys))
    }
}

fn sign_type(s: SignScheme) -> SignType {
    if s.s_type() == 0 {
        SignType::Pkcs1v15
    } else {
        SignType::Pss
    }
}

fn set_last_mac(msg: &mut Message, mac: &[u8]) -> Result<(), Error> {
    let tag: [u8; 20] = mac.try_into().map_err(|_| Error::Malformed("MAC length"))?;
    for p in msg.payloads.iter_mut().rev() {
        match p {
            Payload::Kemac(k) => {
                k.mac = Mac::HmacSha1_160(tag);
                return Ok(());
            }
            Payload::V(v) => {
                v.mac = Mac::HmacSha1_160(tag);
                return Ok(());
            }
            _ => {}
        }
    }
    Err(Error::Malformed("no MAC to set"))
}

fn set_kemac_mac(msg: &mut Message, mac: &[u8]) -> Result<(), Error> {
    let tag: [u8; 20] = mac.try_into().map_err(|_| Error::Malformed("MAC length"))?;
    for p in &mut msg.payloads {
        if let Payload::Kemac(k) = p {
            k.mac = Mac::HmacSha1_160(tag);
            return Ok(());
        }
    }
    Err(Error::Malformed("no KEMAC"))
}

/// Opens a pre-shared-key I_MESSAGE: checks its MAC with keys from `psk`, then the replay
/// window, then decrypts the key data. Returns the TGK (or TGK part).
pub(super) fn open_psk(
    ops: &mut OpCounts,
    replay: &mut ReplayCache,
    now: Millis,
    policy: &Policy,
    bytes: &[u8],
    r: &Received,
    psk: &Psk,
) -> Result<(Zeroizing<Vec<u8>>, [u8; 32]), Error> {
    let kemac = r
        .kemac
        .as_ref()
        .ok_or(Error::Malformed("no KEMAC payload"))?;
    ops.hash += 3;
    let keys = MessageKeys::derive(psk.as_bytes(), r.header.csb_id, &r.rand)?;
    ops.hash += 1;
    keys.verify_mac(
        KemacMac::HmacSha1_160,
        &[m2msec_wire::mikey::mac_input(bytes)?],
        kemac.mac.as_bytes(),
    )?;
    let digest = replay.admit(now, policy.clock_skew, r.ts, bytes)?;
    ops.symmetric += 1;
    let plain = keys.decrypt(kemac_encryption(kemac.encr_alg), r.ts, &kemac.encr_data)?;
    let key = single_key(&KemacPlaintext::decode(&plain, false)?)?;
    Ok((key, digest))
}

/// What [`open_pk`] returns: the TGK (or part), the envelope-derived keys, the replay digest.
type OpenedPk = (Zeroizing<Vec<u8>>, MessageKeys, [u8; 32]);

/// Opens a public-key I_MESSAGE from `signer`: signature, replay window, envelope key, KEMAC.
/// Returns the TGK (or TGK part) and the envelope-derived keys for the verification message.
#[allow(clippy::too_many_arguments)] // one call site per role; a struct would only rename them
pub(super) fn open_pk(
    ops: &mut OpCounts,
    replay: &mut ReplayCache,
    now: Millis,
    policy: &Policy,
    bytes: &[u8],
    r: &Received,
    signer: &VerifyingKey,
    decryption_key: &PkeSecretKey,
) -> Result<OpenedPk, Error> {
    let sign = r.sign.as_ref().ok_or(Error::Malformed("no SIGN payload"))?;
    let scheme = match (sign.s_type, policy.signature) {
        (SignType::Pkcs1v15, SignScheme::Pkcs1v15Sha1 | SignScheme::PssSha1) => {
            SignScheme::Pkcs1v15Sha1
        }
        (SignType::Pkcs1v15, _) => SignScheme::Pkcs1v15Sha256,
        (SignType::Pss, SignScheme::Pkcs1v15Sha1 | SignScheme::PssSha1) => SignScheme::PssSha1,
        (SignType::Pss, _) => SignScheme::PssSha256,
    };
    ops.asymmetric += 1;
    mk::verify(
        signer,
        scheme,
        m2msec_wire::mikey::signature_input(bytes)?,
        &sign.signature,
    )?;
    let digest = replay.admit(now, policy.clock_skew, r.ts, bytes)?;
    let pke = r.pke.as_ref().ok_or(Error::Malformed("no PKE payload"))?;
    ops.asymmetric += 1;
    let env_key = mk::decrypt_envelope_key(decryption_key, policy.envelope, &pke.data)?;
    ops.hash += 3;
    let keys = MessageKeys::derive(&env_key, r.header.csb_id, &r.rand)?;
    let kemac = r
        .kemac
        .as_ref()
        .ok_or(Error::Malformed("no KEMAC payload"))?;
    ops.hash += 1;
    keys.verify_mac(
        KemacMac::HmacSha1_160,
        &[m2msec_wire::mikey::kemac_mac_input(bytes)?],
        kemac.mac.as_bytes(),
    )?;
    ops.symmetric += 1;
    let plain = keys.decrypt(kemac_encryption(kemac.encr_alg), r.ts, &kemac.encr_data)?;
    let content = KemacPlaintext::decode(&plain, true)?;
    let inner_id = content.id.as_ref().map(|id| id.data.as_slice());
    if inner_id != r.id_i.as_deref().map(str::as_bytes) {
        return Err(Error::Authentication);
    }
    Ok((single_key(&content)?, keys, digest))
}

fn single_key(content: &KemacPlaintext) -> Result<Zeroizing<Vec<u8>>, Error> {
    match content.keys.as_slice() {
        [k] if k.kind() == KeyKind::Tgk => Ok(Zeroizing::new(k.key().to_vec())),
        _ => Err(Error::Malformed("KEMAC must carry exactly one TGK")),
    }
}

/// A verification message (§3.1, §3.2, §5.2): HDR, T, IDr, V, whose MAC also covers IDi, IDr
/// and the timestamp of the message it answers.
#[allow(clippy::too_many_arguments)] // mirrors the RFC's field list
pub(super) fn verification_message(
    ops: &mut OpCounts,
    keys: &MessageKeys,
    data_type: DataType,
    csb_id: u32,
    cs_map: Vec<SrtpCs>,
    now: Millis,
    id_i: &str,
    id_r: &str,
    answered_ts: u64,
) -> Result<Vec<u8>, Error> {
    let mut msg = Message {
        header: header(data_type, false, csb_id, cs_map),
        payloads: vec![
            Payload::T(Timestamp::NtpUtc(ntp_of(now))),
            nai(id_r),
            Payload::V(Verification {
                mac: Mac::HmacSha1_160([0; 20]),
            }),
        ],
    };
    let input = msg.mac_input()?;
    ops.hash += 1;
    let mac = keys.mac(
        KemacMac::HmacSha1_160,
        &[
            &input,
            id_i.as_bytes(),
            id_r.as_bytes(),
            &answered_ts.to_be_bytes(),
        ],
    );
    set_last_mac(&mut msg, &mac)?;
    Ok(msg.encode()?)
}

/// Checks a verification message against `keys`.
pub(super) fn check_verification(
    ops: &mut OpCounts,
    keys: &MessageKeys,
    bytes: &[u8],
    r: &Received,
    id_i: &str,
    answered_ts: u64,
) -> Result<(), Error> {
    let mac = r.verification.ok_or(Error::Malformed("no V payload"))?;
    let id_r = r.id_r.as_deref().unwrap_or_default();
    ops.hash += 1;
    keys.verify_mac(
        KemacMac::HmacSha1_160,
        &[
            m2msec_wire::mikey::mac_input(bytes)?,
            id_i.as_bytes(),
            id_r.as_bytes(),
            &answered_ts.to_be_bytes(),
        ],
        mac.as_bytes(),
    )?;
    Ok(())
}

/// Tells `remote`, whose I_MESSAGE `r` was refused with `result`, why in an error message
/// (§5.1.2; unauthenticated, see the module docs), and passes `result` on.
pub(super) fn answer_refusal<E>(
    out: &mut Outbox<E>,
    remote: SocketAddr,
    r: &Received,
    now: Millis,
    result: Result<(), Error>,
) -> Result<(), Error> {
    if let Err(e) = &result {
        if let Some(bytes) = error_message(r.header.csb_id, r.header.cs_map.clone(), now, e.code())
        {
            out.send(remote, bytes);
        }
    }
    result
}

/// An RFC 3830 error message (§5.1.2): HDR (data type Error), T, ERR.
fn error_message(
    csb_id: u32,
    cs_map: Vec<SrtpCs>,
    now: Millis,
    code: ErrorCode,
) -> Option<Vec<u8>> {
    Message {
        header: header(DataType::Error, false, csb_id, cs_map),
        payloads: vec![
            Payload::T(Timestamp::NtpUtc(ntp_of(now))),
            Payload::Err(ErrorPayload { code }),
        ],
    }
    .encode()
    .ok()
}

pub(super) fn tgk_key_data(key: Vec<u8>) -> KeyData {
    KeyData::new(KeyKind::Tgk, key, None, KeyValidity::Null)
}

/// The message-protection keys R and I derive from the TGK for R's verification to I.
pub(super) fn tgk_verification_keys(
    ops: &mut OpCounts,
    tgk: &[u8],
    csb_id: u32,
    rand: &[u8],
) -> Result<MessageKeys, Error> {
    ops.hash += 3;
    Ok(MessageKeys::derive(tgk, csb_id, rand)?)
}
