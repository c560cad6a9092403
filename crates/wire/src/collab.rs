//! Messages of the collaborative key establishment (paper 000, Figures 1 and 2).
//!
//! Names follow the paper: A the client, T the trusted entity, Pi a proxy, B the server.
//! `sealed` fields hold an AEAD ciphertext (nonce ‖ ciphertext ‖ tag) under the pre-shared key of
//! the two parties, whose plaintext is the `…Body` structure named in the field's doc. Everything
//! a signature covers is itself one of the structures below, so signer and verifier hash the same
//! deterministic bytes.

use crate::cbor::{Bytes, SecretBytes};
use crate::{cbor_messages, cbor_struct};

/// Protocol version carried in every message.
pub const VERSION: u8 = 1;

/// A session identifier, chosen at random by the client.
pub type SessionBytes = [u8; 16];
/// A nonce (NA, NB, NT, NPi, NPiB, NBPi in the paper).
pub type Nonce = [u8; 16];
/// A one-time public key's identifier, ID_i = H(LK_i).
pub type KeyId = [u8; 32];

cbor_struct! {
    /// The reconstruction parameters RP: how x was split and what each share must hash to.
    pub struct ReconstructionParams {
        /// Sharing scheme identifier (Reed-Solomon or Shamir).
        pub sharing: u8,
        /// Shares needed to rebuild x (k).
        pub threshold: u8,
        /// Shares made (n).
        pub shares: u8,
        /// Length of x in bytes (the paper's s).
        pub secret_len: u16,
        /// One-time signature scheme identifier.
        pub one_time_scheme: u8,
        /// Per-share commitments H(session ‖ index ‖ blinding ‖ share), by share index: they turn a
        /// share altered by a proxy holding a valid one-time key into an erasure.
        pub commitments: Vec<[u8; 32]>,
    }
}

cbor_struct! {
    /// What T signs for B: [RP, A, B, MTRoot] of Figure 1, bound to the session.
    pub struct Grant {
        /// Session the grant is for.
        pub session: SessionBytes,
        /// Reconstruction parameters.
        pub params: ReconstructionParams,
        /// The client A on whose behalf proxies sign.
        pub client: String,
        /// The server B the grant is for.
        pub server: String,
        /// Root of the Merkle tree over the one-time public key ids.
        pub root: [u8; 32],
    }
}

cbor_struct! {
    /// A grant with T's signature over its encoding.
    pub struct SignedGrant {
        /// The grant.
        pub grant: Grant,
        /// T's signature (suite id first).
        pub signature: Bytes,
    }
}

cbor_struct! {
    /// Plaintext of [`KeyRequest::sealed`]: { B, s, P1…Pn, NT }_kAT plus RP.
    pub struct KeyRequestBody {
        /// Server identity.
        pub server: String,
        /// Server UDP address, for the proxies.
        pub server_addr: String,
        /// Proxies chosen by A, by share index.
        pub proxies: Vec<String>,
        /// T's nonce, echoed for freshness.
        pub trusted_nonce: Nonce,
        /// How x is split.
        pub params: ReconstructionParams,
    }
}

cbor_struct! {
    /// Plaintext of [`KeyMaterial::sealed`]: { (KPi, KPi⁻¹), MTPath_i, NPi, [RP, A, B, MTRoot]_KT⁻¹ }_kPiT.
    pub struct KeyMaterialBody {
        /// The one-time secret key (its public key is derived from it).
        pub one_time_key: SecretBytes,
        /// The proxy's leaf and share index.
        pub leaf_index: u8,
        /// Merkle authentication path of the proxy's key id.
        pub path: Vec<[u8; 32]>,
        /// The proxy's nonce, echoed.
        pub proxy_nonce: Nonce,
        /// Server UDP address.
        pub server_addr: String,
        /// T's signed grant.
        pub grant: SignedGrant,
    }
}

cbor_struct! {
    /// One (Pi, IDi, NPi) triple of Figure 1.
    pub struct ProxyTicket {
        /// Proxy identity.
        pub proxy: String,
        /// Its one-time key id.
        pub key_id: KeyId,
        /// Its nonce.
        pub proxy_nonce: Nonce,
        /// Its share index.
        pub leaf_index: u8,
    }
}

cbor_struct! {
    /// Plaintext of [`ProxyList::sealed`]: { (P1, ID1, NP1) … (Pn, IDn, NPn), NA }_kAT.
    pub struct ProxyListBody {
        /// One ticket per proxy that answered T.
        pub tickets: Vec<ProxyTicket>,
        /// A's nonce, echoed.
        pub client_nonce: Nonce,
    }
}

cbor_struct! {
    /// Plaintext of [`Fragment::sealed`]: { NPi, xi }_kAPi.
    pub struct FragmentBody {
        /// The proxy's nonce, echoed.
        pub proxy_nonce: Nonce,
        /// Share index.
        pub share_index: u8,
        /// The share xi.
        pub share: SecretBytes,
        /// Blinding value of the share's commitment.
        pub blinding: SecretBytes,
    }
}

cbor_struct! {
    /// Plaintext encrypted to B's public key in [`SealedFragment`]: \[xi\]_KB.
    pub struct FragmentPayload {
        /// Share index.
        pub share_index: u8,
        /// The share xi.
        pub share: SecretBytes,
        /// Blinding value of the share's commitment.
        pub blinding: SecretBytes,
    }
}

cbor_struct! {
    /// What a proxy signs with its one-time key: \[\[xi\]_KB, NBPi\]_KPi⁻¹.
    pub struct FragmentSigned {
        /// Session.
        pub session: SessionBytes,
        /// The signing key's id.
        pub key_id: KeyId,
        /// The share encrypted to B.
        pub encrypted_share: Bytes,
        /// B's nonce for this proxy, echoed.
        pub server_nonce: Nonce,
    }
}

cbor_struct! {
    /// What B signs for each proxy: [{[{y}_x]_x}, NPiB]_KB⁻¹.
    pub struct AnswerSigned {
        /// Session.
        pub session: SessionBytes,
        /// The proxy's one-time key id.
        pub key_id: KeyId,
        /// y sealed under the key derived from x.
        pub wrapped_secret: Bytes,
        /// The proxy's nonce to B, echoed.
        pub proxy_nonce: Nonce,
    }
}

cbor_struct! {
    /// Plaintext of [`AnswerRelay::sealed`]: [{y}_x]_x under kAPi.
    pub struct RelayBody {
        /// The proxy's nonce, echoed.
        pub proxy_nonce: Nonce,
        /// y sealed under the key derived from x, as B sent it.
        pub wrapped_secret: Bytes,
    }
}

cbor_struct! {
    /// Plaintext of the two Finished messages under keys derived from MK.
    pub struct FinishedBody {
        /// Ids of the one-time keys of the proxies that took part correctly.
        pub proxies: Vec<KeyId>,
    }
}

cbor_struct! {
    /// What a certificate binds; the CA signs its encoding.
    pub struct CertificateBody {
        /// Subject identity.
        pub subject: String,
        /// Public encryption key (suite id first).
        pub encryption_key: Bytes,
        /// Public signature key (suite id first).
        pub signature_key: Bytes,
    }
}

cbor_struct! {
    /// B's certificate CertB: its public keys signed by a CA the proxies trust.
    pub struct Certificate {
        /// What is certified.
        pub body: CertificateBody,
        /// The CA's signature over the body's encoding.
        pub signature: Bytes,
    }
}

cbor_struct! {
    /// A client's durable trust record of one proxy.
    pub struct TrustRecord {
        /// Proxy identity.
        pub proxy: String,
        /// Sessions in which the proxy did its part.
        pub successes: u32,
        /// Sessions in which it was silent or lied.
        pub failures: u32,
        /// Reputation in millionths, 0..=1_000_000.
        pub score_micro: u32,
        /// Last time the proxy was used (ms since the UNIX epoch).
        pub last_seen: u64,
        /// Declared capability level.
        pub capability: u8,
    }
}

cbor_messages! {
    version = VERSION;
    /// Any collab message.
    pub enum Message {
        /// A → B: Hello(NA), proposing the collaborative exchange.
        ClientHello = 1 => {
            /// Session.
            pub session: SessionBytes,
            /// A's identity.
            pub client: String,
            /// NA.
            pub client_nonce: Nonce,
            /// AEAD suite for the keys derived from x and MK.
            pub aead: u8,
        },
        /// B → A: Hello(NB).
        ServerHello = 2 => {
            /// Session.
            pub session: SessionBytes,
            /// B's identity.
            pub server: String,
            /// NB.
            pub server_nonce: Nonce,
        },
        /// A → T: Hello(NA).
        TrustedHello = 3 => {
            /// Session.
            pub session: SessionBytes,
            /// A's identity.
            pub client: String,
            /// NA.
            pub client_nonce: Nonce,
        },
        /// T → A: Hello(NT).
        TrustedHelloReply = 4 => {
            /// Session.
            pub session: SessionBytes,
            /// NT.
            pub trusted_nonce: Nonce,
        },
        /// A → T: { B, s, P1…Pn, NT }_kAT.
        KeyRequest = 5 => {
            /// Session.
            pub session: SessionBytes,
            /// A's identity (selects kAT).
            pub client: String,
            /// [`KeyRequestBody`] under kAT.
            pub sealed: Bytes,
        },
        /// T → Pi: T's hello, asking the proxy to assist A.
        ProxySummon = 6 => {
            /// Session.
            pub session: SessionBytes,
            /// The client to assist.
            pub client: String,
        },
        /// Pi → T: Hello(NPi).
        ProxyHello = 7 => {
            /// Session.
            pub session: SessionBytes,
            /// Pi's identity.
            pub proxy: String,
            /// NPi.
            pub proxy_nonce: Nonce,
        },
        /// T → Pi: the one-time key pair, its Merkle path and the signed root.
        KeyMaterial = 8 => {
            /// Session.
            pub session: SessionBytes,
            /// [`KeyMaterialBody`] under kPiT.
            pub sealed: Bytes,
        },
        /// T → A: the (Pi, IDi, NPi) triples.
        ProxyList = 9 => {
            /// Session.
            pub session: SessionBytes,
            /// [`ProxyListBody`] under kAT.
            pub sealed: Bytes,
        },
        /// Pi → B: Cert_Req, NPiB, KPi, MTPath_i, [RP, A, B, MTRoot]_KT⁻¹.
        CertRequest = 10 => {
            /// Session.
            pub session: SessionBytes,
            /// Pi's identity.
            pub proxy: String,
            /// NPiB.
            pub proxy_nonce: Nonce,
            /// The one-time public key KPi.
            pub one_time_public_key: Bytes,
            /// Its leaf and share index.
            pub leaf_index: u8,
            /// Its Merkle path.
            pub path: Vec<[u8; 32]>,
            /// T's signed grant.
            pub grant: SignedGrant,
        },
        /// B → Pi: CertB, NBPi.
        CertResponse = 11 => {
            /// Session.
            pub session: SessionBytes,
            /// The proxy's key id this answers.
            pub key_id: KeyId,
            /// B's certificate.
            pub certificate: Certificate,
            /// NBPi.
            pub server_nonce: Nonce,
        },
        /// A → Pi: { NPi, xi }_kAPi.
        Fragment = 12 => {
            /// Session.
            pub session: SessionBytes,
            /// A's identity (selects kAPi).
            pub client: String,
            /// [`FragmentBody`] under kAPi.
            pub sealed: Bytes,
        },
        /// Pi → B: \[xi\]_KB, \[\[xi\]_KB, NBPi\]_KPi⁻¹.
        SealedFragment = 13 => {
            /// Session.
            pub session: SessionBytes,
            /// Signing key's id.
            pub key_id: KeyId,
            /// [`FragmentPayload`] encrypted to B.
            pub encrypted_share: Bytes,
            /// One-time signature over [`FragmentSigned`].
            pub signature: Bytes,
        },
        /// B → Pi: [{y}_x]_x with B's signature over it and NPiB.
        Answer = 14 => {
            /// Session.
            pub session: SessionBytes,
            /// The proxy's key id.
            pub key_id: KeyId,
            /// y sealed under the key derived from x.
            pub wrapped_secret: Bytes,
            /// B's signature over [`AnswerSigned`].
            pub signature: Bytes,
        },
        /// Pi → A: [{y}_x]_x under kAPi.
        AnswerRelay = 15 => {
            /// Session.
            pub session: SessionBytes,
            /// Pi's identity (selects kAPi).
            pub proxy: String,
            /// [`RelayBody`] under kAPi.
            pub sealed: Bytes,
        },
        /// A → B: key confirmation and the proxies that relayed y faithfully.
        ClientFinished = 16 => {
            /// Session.
            pub session: SessionBytes,
            /// [`FinishedBody`] under the client's finished key.
            pub sealed: Bytes,
        },
        /// B → A: { ID1 … IDn }_kAB, the proxies that took part.
        ServerFinished = 17 => {
            /// Session.
            pub session: SessionBytes,
            /// [`FinishedBody`] under the server's finished key.
            pub sealed: Bytes,
        },
        /// Any → A: the session cannot complete (unauthenticated: a hint that ends waiting early).
        Abort = 18 => {
            /// Session.
            pub session: SessionBytes,
            /// Reason code (see the protocol crate's error codes).
            pub reason: u8,
        },
    }
}

impl Message {
    /// The session the message belongs to (every collab message names one).
    #[must_use]
    pub fn session(&self) -> SessionBytes {
        match self {
            Self::ClientHello(m) => m.session,
            Self::ServerHello(m) => m.session,
            Self::TrustedHello(m) => m.session,
            Self::TrustedHelloReply(m) => m.session,
            Self::KeyRequest(m) => m.session,
            Self::ProxySummon(m) => m.session,
            Self::ProxyHello(m) => m.session,
            Self::KeyMaterial(m) => m.session,
            Self::ProxyList(m) => m.session,
            Self::CertRequest(m) => m.session,
            Self::CertResponse(m) => m.session,
            Self::Fragment(m) => m.session,
            Self::SealedFragment(m) => m.session,
            Self::Answer(m) => m.session,
            Self::AnswerRelay(m) => m.session,
            Self::ClientFinished(m) => m.session,
            Self::ServerFinished(m) => m.session,
            Self::Abort(m) => m.session,
        }
    }
}
