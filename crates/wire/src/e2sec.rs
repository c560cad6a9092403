//! Messages of the E2SEC proxy-signature authentication and key agreement (paper 003, §3; see
//! `docs/e2sec.md`). EPC is the core network (the original signer), MTCD the device, MTCS the
//! server. Group elements and scalars travel in their canonical encodings.

use crate::cbor::{Bytes, SecretBytes};
use crate::{cbor_messages, cbor_struct};

/// Protocol version carried in every message: 2 since `WarrantRequest` carries the holder's
/// clock (`timestamp_ms`), so that a version-1 peer is told its version is not spoken rather
/// than that its request has the wrong number of fields.
pub const VERSION: u8 = 2;

cbor_struct! {
    /// The warrant m_{E-x}: who delegates to whom, until when, for which key and role.
    pub struct Warrant {
        /// ID_EPC.
        pub issuer: String,
        /// ID of the holder (MTCD or MTCS).
        pub holder: String,
        /// The holder's role: 1 = MTC device, 2 = MTC server.
        pub role: u8,
        /// The holder's public key v (bound into the warrant so σ' is tied to it).
        pub holder_key: Bytes,
        /// Group id.
        pub group: u8,
        /// Start of the validity period T_valid (ms since the UNIX epoch).
        pub valid_from: u64,
        /// End of the validity period (ms since the UNIX epoch).
        pub valid_until: u64,
    }
}

cbor_struct! {
    /// Plaintext of [`WarrantGrant::sealed`]: (σ, m, K) of equations (1) and (3).
    pub struct WarrantBody {
        /// σ = e·x_EPC + k mod q.
        pub sigma: SecretBytes,
        /// The warrant m.
        pub warrant: Warrant,
        /// K = g^k.
        pub commitment: Bytes,
        /// The holder's nonce, echoed.
        pub nonce: [u8; 16],
    }
}

cbor_struct! {
    /// What a party presents to its peer: its warrant and the EPC's commitment K.
    pub struct Credential {
        /// m.
        pub warrant: Warrant,
        /// K.
        pub commitment: Bytes,
    }
}

cbor_messages! {
    version = VERSION;
    /// Any E2SEC message.
    pub enum Message {
        /// holder → EPC over the pre-shared-key channel standing in for EPS-AKA: ask for a warrant.
        WarrantRequest = 1 => {
            /// The holder.
            pub holder: String,
            /// Names the request; the grant echoes it.
            pub nonce: [u8; 16],
            /// The holder's clock (ms since the UNIX epoch): the EPC admits the request only
            /// within its replay window of its own clock, so a recorded request cannot be
            /// replayed later.
            pub timestamp_ms: u64,
            /// The holder's public key v (it is bound into the warrant).
            pub holder_key: Bytes,
            /// HMAC under the pre-shared key over the fields above.
            pub mac: [u8; 32],
        },
        /// EPC → holder: the proxy signature (σ, m, K), sealed under the pre-shared key.
        WarrantGrant = 2 => {
            /// The holder.
            pub holder: String,
            /// [`WarrantBody`] under the pre-shared key.
            pub sealed: Bytes,
        },
        /// Initiator → responder: M = ID_A ‖ ID_B ‖ g^a signed with the alternative proxy key,
        /// and the initiator's credential (steps (1) and (3) of §3.5).
        AuthInit = 3 => {
            /// Exchange id chosen by the initiator.
            pub exchange: [u8; 16],
            /// ID_A.
            pub from: String,
            /// ID_B.
            pub to: String,
            /// g^a.
            pub share: Bytes,
            /// Signature variant: 1 ElGamal (the paper), 2 Schnorr, 3 DSA.
            pub variant: u8,
            /// The signature's first half (r, or the Schnorr commitment).
            pub r: Bytes,
            /// The signature's second half s.
            pub s: Bytes,
            /// The signer's credential.
            pub credential: Credential,
        },
        /// Responder → initiator: M = ID_B ‖ ID_A ‖ g^b signed together with g^ab.
        AuthReply = 4 => {
            /// Exchange id.
            pub exchange: [u8; 16],
            /// ID_B.
            pub from: String,
            /// ID_A.
            pub to: String,
            /// g^b.
            pub share: Bytes,
            /// Signature variant.
            pub variant: u8,
            /// r.
            pub r: Bytes,
            /// s.
            pub s: Bytes,
            /// The signer's credential.
            pub credential: Credential,
        },
        /// Initiator → responder: key confirmation under SK (our addition; SIGMA's MAC).
        Confirm = 5 => {
            /// Exchange id.
            pub exchange: [u8; 16],
            /// HMAC under a key derived from SK over the transcript.
            pub mac: [u8; 32],
        },
        /// Any → peer: refusal with a reason code (unauthenticated; ends the peer's wait).
        Refuse = 6 => {
            /// Exchange id (or zeros).
            pub exchange: [u8; 16],
            /// Reason code.
            pub code: u8,
        },
        /// EPC → holder: an authenticated warrant request refused for its timestamp (outside
        /// the EPC's window: the holder's clock is off) or because the EPC's replay cache is
        /// full; under the pre-shared key, so the holder can trust the reason and the clock.
        WarrantRefused = 7 => {
            /// The holder.
            pub holder: String,
            /// The refused request's nonce.
            pub nonce: [u8; 16],
            /// Why: the code of the EPC's error (8 timestamp outside the window, 9 cache full).
            pub code: u8,
            /// The EPC's clock when it refused (ms since the UNIX epoch).
            pub epc_time_ms: u64,
            /// HMAC under the pre-shared key over the fields above.
            pub mac: [u8; 32],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> WarrantRequest {
        WarrantRequest {
            holder: "mtcd-0001".into(),
            nonce: [7; 16],
            timestamp_ms: 1_700_000_000_123,
            holder_key: Bytes(vec![9; 32]),
            mac: [3; 32],
        }
    }

    #[test]
    fn warrant_request_round_trips_with_its_timestamp() {
        let m = Message::from(request());
        assert_eq!(Message::decode(&m.to_bytes()), Ok(m));
    }

    #[test]
    fn a_warrant_request_without_timestamp_is_refused() {
        // The pre-timestamp layout: type, version, holder, nonce, holder_key, mac.
        let mut w = crate::cbor::Writer::new();
        w.array(6);
        w.uint(u64::from(WarrantRequest::TYPE));
        w.uint(u64::from(VERSION));
        let r = request();
        w.text(&r.holder);
        w.bytes(&r.nonce);
        w.bytes(&r.holder_key.0);
        w.bytes(&r.mac);
        assert!(matches!(
            Message::decode(&w.into_bytes()),
            Err(crate::Error::WrongArity {
                found: 6,
                expected: 7,
                ..
            })
        ));
    }

    #[test]
    fn a_version_1_peer_is_told_its_version() {
        let mut v1 = Message::from(request()).to_bytes();
        // [array, type, version, …]
        v1[2] = 1;
        assert_eq!(
            Message::decode(&v1),
            Err(crate::Error::UnsupportedVersion(1))
        );
    }
}
