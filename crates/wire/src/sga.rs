//! Messages of the security gateway application (paper 002, §4; see `docs/sga.md`).
//!
//! d_i is the device that invites, d_j the invited one, S the SGA server (gateway). `sealed`
//! fields hold a ciphertext whose plaintext is the `…Body` named in the field's doc: either an
//! AEAD (nonce ‖ ciphertext ‖ tag) under a symmetric key, or a public-key ciphertext to S.
//! Group elements and scalars travel in their canonical encodings.

use crate::cbor::{Bytes, SecretBytes};
use crate::{cbor_messages, cbor_struct};

/// Protocol version carried in every message.
pub const VERSION: u8 = 1;

/// An exchange between two devices, named by S when it accepts an invitation.
pub type SessionBytes = [u8; 16];

cbor_struct! {
    /// Plaintext of [`RegisterRequest::sealed_key`], encrypted to S: E_PK(k_di) and CidSet^i.
    pub struct RegistrationBody {
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
            /// ID_d.
            pub device: String,
            /// [`RegistrationBody`] encrypted to S.
            pub sealed_key: Bytes,
            /// ID_d sealed under k_d with the initial suite: proof of k_d.
            pub proof: Bytes,
        },
        /// S → d: registration accepted or refused.
        RegisterResponse = 2 => {
            /// ID_d.
            pub device: String,
            /// 0 = accepted, otherwise an error code.
            pub status: u8,
            /// HMAC under k_d over the device and status (empty when S could not read k_d).
            pub mac: Bytes,
        },
        /// d_i → S: step A1.
        Invite = 3 => {
            /// ID_di.
            pub from: String,
            /// [`InviteBody`] encrypted to S.
            pub sealed: Bytes,
            /// HMAC under k_di over `sealed`.
            pub mac: [u8; 32],
        },
        /// S → d_j: step A2.
        Negotiate = 4 => {
            /// The exchange.
            pub session: SessionBytes,
            /// ID_dj.
            pub to: String,
            /// [`NegotiateBody`] under k_dj, bound to `session`.
            pub sealed: Bytes,
        },
        /// d_j → S: step A3.
        NegotiateResponse = 5 => {
            /// The exchange.
            pub session: SessionBytes,
            /// ID_dj.
            pub from: String,
            /// [`NegotiateResponseBody`] encrypted to S.
            pub sealed: Bytes,
            /// HMAC under k_dj over `sealed`.
            pub mac: [u8; 32],
        },
        /// S → d_i: step A4.
        InviteAccepted = 6 => {
            /// The exchange.
            pub session: SessionBytes,
            /// ID_di.
            pub to: String,
            /// [`InviteAcceptedBody`] under k_t^i.
            pub sealed: Bytes,
        },
        /// d_i → S: step B1.
        KeyShare = 7 => {
            /// The exchange.
            pub session: SessionBytes,
            /// The sending device.
            pub from: String,
            /// [`KeyShareBody`] under the sender's temporary key.
            pub sealed: Bytes,
        },
        /// S → d_j: step B2, the invitation to the key exchange.
        KeyShareInvite = 8 => {
            /// The exchange.
            pub session: SessionBytes,
            /// ID_dj.
            pub to: String,
            /// Group id, sealed-free: the suite and peer are already bound to the session.
            pub group: u8,
            /// HMAC under k_t^j over the session, ID_dj and the group.
            pub mac: [u8; 32],
        },
        /// S → d: step B6.
        KeyResult = 9 => {
            /// The exchange.
            pub session: SessionBytes,
            /// The receiving device.
            pub to: String,
            /// [`KeyResultBody`] under the receiver's temporary key.
            pub sealed: Bytes,
        },
        /// S → d: the request cannot proceed (unauthenticated; ends the device's wait early).
        Refused = 10 => {
            /// The exchange, or zeros for a refused invitation.
            pub session: SessionBytes,
            /// The device addressed.
            pub to: String,
            /// Error code.
            pub code: u8,
        },
        /// d_i → S: a message for d_j under K (§4.5).
        Deliver = 11 => {
            /// The exchange whose key sealed it.
            pub session: SessionBytes,
            /// Sender.
            pub from: String,
            /// Recipient.
            pub to: String,
            /// The sender's message id (increasing).
            pub message_id: u64,
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
            /// Sender.
            pub from: String,
            /// Recipient.
            pub to: String,
            /// Sender's message id.
            pub message_id: u64,
            /// The ciphertext as the sender sent it.
            pub ciphertext: Bytes,
        },
        /// recipient → S: the message was received (S may drop it).
        Delivered = 14 => {
            /// The exchange.
            pub session: SessionBytes,
            /// Recipient.
            pub device: String,
            /// Sender's message id.
            pub message_id: u64,
            /// HMAC under k_d of the recipient over the fields above.
            pub mac: [u8; 32],
        },
        /// d → S: "I am reachable here; send me what you hold".
        Poll = 15 => {
            /// ID_d.
            pub device: String,
            /// Milliseconds since the UNIX epoch (freshness).
            pub timestamp: u64,
            /// HMAC under k_d over the device and timestamp.
            pub mac: [u8; 32],
        },
    }
}

impl Message {
    /// The device a message is about (its sender or its addressee).
    #[must_use]
    pub fn device(&self) -> &str {
        match self {
            Self::RegisterRequest(m) => &m.device,
            Self::RegisterResponse(m) => &m.device,
            Self::Invite(m) => &m.from,
            Self::Negotiate(m) => &m.to,
            Self::NegotiateResponse(m) => &m.from,
            Self::InviteAccepted(m) => &m.to,
            Self::KeyShare(m) => &m.from,
            Self::KeyShareInvite(m) => &m.to,
            Self::KeyResult(m) => &m.to,
            Self::Refused(m) => &m.to,
            Self::Deliver(m) => &m.from,
            Self::Stored(_) => "",
            Self::Forward(m) => &m.to,
            Self::Delivered(m) => &m.device,
            Self::Poll(m) => &m.device,
        }
    }
}
