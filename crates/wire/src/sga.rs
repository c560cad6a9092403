//! Messages of the security gateway application (paper 002, §4; see `docs/sga.md`).
//!
//! d_i is the device that invites, d_j the invited one, S the SGA server (gateway). `sealed`
//! fields hold a ciphertext whose plaintext is the `…Body` named in the field's doc: either an
//! AEAD (nonce ‖ ciphertext ‖ tag) under a symmetric key, or a public-key ciphertext to S.
//! Group elements and scalars travel in their canonical encodings.
//!
//! No device identity travels in clear (version 2): a device names itself to S by an
//! [`AliasBytes`] pseudonym that rotates every epoch, S names nobody to a device, and identities
//! travel only inside ciphertexts to S or under keys S shares with the device (`docs/sga.md`,
//! "Identity privacy").

use crate::cbor::{Bytes, SecretBytes};
use crate::{cbor_messages, cbor_struct};

/// Protocol version carried in every message. 2 since identities left the clear; a version-1
/// peer's messages fail to decode with [`crate::Error::UnsupportedVersion`].
pub const VERSION: u8 = 2;

/// An exchange between two devices, named by S when it accepts an invitation.
pub type SessionBytes = [u8; 16];

/// A device's pseudonym for one epoch, derived under its key k_d: only S (which holds k_d) can
/// tell whose it is, and the next epoch's cannot be linked to it without k_d.
pub type AliasBytes = [u8; 16];

cbor_struct! {
    /// Plaintext of [`RegisterRequest::sealed_key`], encrypted to S: ID_di, E_PK(k_di) and
    /// CidSet^i.
    pub struct RegistrationBody {
        /// ID_d: only S learns it.
        pub device: String,
        /// The device's long-term key k_di.
        pub device_key: SecretBytes,
        /// Suite ids the device supports (CidSet^i).
        pub suites: Vec<u8>,
        /// The suite of the registration proof and of what S later sends the device under k_di.
        pub initial_suite: u8,
    }
}

cbor_struct! {
    /// Plaintext of [`Invite::sealed`], encrypted to S (step A1).
    pub struct InviteBody {
        /// k_t^i ⊕ expand(k_di).
        pub masked_temp_key: SecretBytes,
        /// ID_di.
        pub from: String,
        /// ID_G.
        pub gateway: String,
        /// ID_dj.
        pub to: String,
        /// The suite d_i proposes, (E^{i,x}, D^{i,x}).
        pub suite: u8,
        /// Freshness: a random nonce.
        pub nonce: [u8; 16],
        /// Freshness: milliseconds since the UNIX epoch.
        pub timestamp: u64,
    }
}

cbor_struct! {
    /// Plaintext of [`Negotiate::sealed`], under k_dj with d_j's initial suite (step A2), with
    /// [`Negotiate::session`] as associated data.
    pub struct NegotiateBody {
        /// k_t^i ⊕ expand(k_dj).
        pub masked_temp_key: SecretBytes,
        /// ID_di.
        pub from: String,
        /// ID_G.
        pub gateway: String,
        /// ID_dj.
        pub to: String,
        /// The suite, in both devices' sets.
        pub suite: u8,
        /// Freshness: S's clock, milliseconds since the UNIX epoch. d_j takes an A2 only within
        /// its clock skew and once per session, so a recorded one cannot be replayed.
        pub timestamp: u64,
    }
}

cbor_struct! {
    /// Plaintext of [`NegotiateResponse::sealed`], encrypted to S (step A3).
    pub struct NegotiateResponseBody {
        /// k_t^i ⊕ k_t^j.
        pub masked_temp_key: SecretBytes,
        /// ID_G.
        pub gateway: String,
        /// ID_dj.
        pub from: String,
        /// ID_di.
        pub to: String,
        /// The suite d_j accepts.
        pub suite: u8,
        /// Freshness: milliseconds since the UNIX epoch.
        pub timestamp: u64,
    }
}

cbor_struct! {
    /// Plaintext of [`InviteAccepted::sealed`], under k_t^i with the suite (step A4).
    pub struct InviteAcceptedBody {
        /// k_t^i ⊕ k_t^j.
        pub masked_temp_key: SecretBytes,
        /// ID_G.
        pub gateway: String,
        /// ID_dj.
        pub peer: String,
        /// The suite.
        pub suite: u8,
    }
}

cbor_struct! {
    /// A device's key share (steps B1 and B3), sealed under its temporary key.
    pub struct KeyShareBody {
        /// Group id.
        pub group: u8,
        /// N = g^R.
        pub element: Bytes,
        /// ID_di.
        pub initiator: String,
        /// ID_dj.
        pub responder: String,
        /// ID_G.
        pub gateway: String,
        /// E_{k_d}(N ⊕ k_d): N sealed under a key derived from the device's long-term key.
        pub sealed_element: Bytes,
        /// F_G(r): r encrypted to S.
        pub trapdoor: Bytes,
        /// f_{K_s}(N) with K_s = N^r.
        pub check: [u8; 32],
    }
}

cbor_struct! {
    /// What S returns to each device (step B6), sealed under the device's temporary key.
    pub struct KeyResultBody {
        /// The other device's N raised to R_s.
        pub element: Bytes,
        /// f_{K_s}(ID_di, ID_dj, K_s, element).
        pub check: [u8; 32],
    }
}

cbor_struct! {
    /// A device's durable registration record at S.
    pub struct DeviceRecord {
        /// ID_d.
        pub device: String,
        /// k_d.
        pub device_key: SecretBytes,
        /// CidSet.
        pub suites: Vec<u8>,
        /// Initial suite.
        pub initial_suite: u8,
    }
}

cbor_struct! {
    /// A message stored at S for a recipient.
    pub struct StoredMessage {
        /// Sender.
        pub from: String,
        /// Recipient.
        pub to: String,
        /// The exchange whose key sealed it.
        pub session: SessionBytes,
        /// The sender's message id.
        pub message_id: u64,
        /// The ciphertext S cannot read.
        pub ciphertext: Bytes,
    }
}

cbor_messages! {
    version = VERSION;
    /// Any SGA message.
    pub enum Message {
        /// d → S: registration (§4.1): E_PK(k_d) ‖ E^{x}(ID_d) ‖ CidSet.
        RegisterRequest = 1 => {
            /// [`RegistrationBody`] (which names the device) encrypted to S.
            pub sealed_key: Bytes,
            /// ID_d sealed under k_d with the initial suite: proof of k_d.
            pub proof: Bytes,
        },
        /// S → d: registration accepted or refused.
        RegisterResponse = 2 => {
            /// 0 = accepted, otherwise an error code.
            pub status: u8,
            /// HMAC under k_d over ID_d and the status (empty when S could not read k_d); the
            /// device has one registration under way, so nothing else says whose it is.
            pub mac: Bytes,
        },
        /// d_i → S: step A1.
        Invite = 3 => {
            /// d_i's pseudonym.
            pub from: AliasBytes,
            /// [`InviteBody`] encrypted to S.
            pub sealed: Bytes,
            /// HMAC under k_di over `sealed`.
            pub mac: [u8; 32],
        },
        /// S → d_j: step A2.
        Negotiate = 4 => {
            /// The exchange.
            pub session: SessionBytes,
            /// [`NegotiateBody`] under k_dj, bound to `session`.
            pub sealed: Bytes,
        },
        /// d_j → S: step A3.
        NegotiateResponse = 5 => {
            /// The exchange.
            pub session: SessionBytes,
            /// [`NegotiateResponseBody`] encrypted to S.
            pub sealed: Bytes,
            /// HMAC under k_dj over `sealed`.
            pub mac: [u8; 32],
        },
        /// S → d_i: step A4.
        InviteAccepted = 6 => {
            /// The exchange.
            pub session: SessionBytes,
            /// [`InviteAcceptedBody`] under k_t^i.
            pub sealed: Bytes,
        },
        /// d_i → S: step B1.
        KeyShare = 7 => {
            /// The exchange.
            pub session: SessionBytes,
            /// [`KeyShareBody`] under the sender's temporary key (which says whose it is).
            pub sealed: Bytes,
        },
        /// S → d_j: step B2, the invitation to the key exchange.
        KeyShareInvite = 8 => {
            /// The exchange.
            pub session: SessionBytes,
            /// Group id, sealed-free: the suite and peer are already bound to the session.
            pub group: u8,
            /// HMAC under k_t^j over the session, ID_dj and the group (ID_dj is not sent).
            pub mac: [u8; 32],
        },
        /// S → d: step B6.
        KeyResult = 9 => {
            /// The exchange.
            pub session: SessionBytes,
            /// [`KeyResultBody`] under the receiver's temporary key.
            pub sealed: Bytes,
        },
        /// S → d: the request cannot proceed (unauthenticated; ends the device's wait early).
        Refused = 10 => {
            /// The exchange, or zeros for a refused invitation.
            pub session: SessionBytes,
            /// Error code.
            pub code: u8,
        },
        /// d_i → S: a message for d_j under K (§4.5).
        Deliver = 11 => {
            /// The exchange whose key sealed it.
            pub session: SessionBytes,
            /// The sender's pseudonym.
            pub from: AliasBytes,
            /// The sender's message id (increasing).
            pub message_id: u64,
            /// ID_dj sealed under k_di for S, bound to the session, the message id and the
            /// ciphertext: S learns the recipient and that the sender is who the alias says.
            pub recipient: Bytes,
            /// nonce ‖ AEAD ciphertext ‖ tag under K.
            pub ciphertext: Bytes,
        },
        /// S → sender: the message is durable.
        Stored = 12 => {
            /// The exchange.
            pub session: SessionBytes,
            /// Sender's message id.
            pub message_id: u64,
        },
        /// S → recipient: a stored message.
        Forward = 13 => {
            /// The exchange.
            pub session: SessionBytes,
            /// Sender's message id.
            pub message_id: u64,
            /// The ciphertext as the sender sent it (the session names the sender).
            pub ciphertext: Bytes,
        },
        /// recipient → S: the message was received (S may drop it).
        Delivered = 14 => {
            /// The exchange.
            pub session: SessionBytes,
            /// The recipient's pseudonym.
            pub device: AliasBytes,
            /// Sender's message id.
            pub message_id: u64,
            /// HMAC under k_d of the recipient over the session, ID_d and the message id.
            pub mac: [u8; 32],
        },
        /// d → S: "I am reachable here; send me what you hold".
        Poll = 15 => {
            /// The device's pseudonym.
            pub device: AliasBytes,
            /// Milliseconds since the UNIX epoch (freshness).
            pub timestamp: u64,
            /// HMAC under k_d over ID_d and the timestamp.
            pub mac: [u8; 32],
        },
    }
}

impl Message {
    /// The pseudonym a device named itself by, in the messages that carry one.
    #[must_use]
    pub fn alias(&self) -> Option<&AliasBytes> {
        match self {
            Self::Invite(m) => Some(&m.from),
            Self::Deliver(m) => Some(&m.from),
            Self::Delivered(m) => Some(&m.device),
            Self::Poll(m) => Some(&m.device),
            _ => None,
        }
    }
}
