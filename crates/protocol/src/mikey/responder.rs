//! Responder R: accepts pre-shared-key and public-key I_MESSAGEs (RFC 3830 §3.1, §3.2), and in
//! the distributed mode gathers TGK parts from third parties until any k rebuild a TGK that
//! matches the initiator's commitment, then proves it to the initiator.

use core::net::SocketAddr;
use std::collections::BTreeMap;

use m2msec_crypto::mikey::MessageKeys;
use m2msec_crypto::pke::PkeSecretKey;
use m2msec_crypto::rng::CryptoRng;
use m2msec_crypto::split::{self, Share, SharingScheme};
use m2msec_wire::mikey::{DataType, SrtpCs};
use zeroize::Zeroizing;

use super::{
    Datagram, DistributedParams, Error, Established, Mikey, ModeName, Outbox, PkPeer, Policy,
    PskPeer, Received, ReplayCache, TrafficKeys, answer_refusal, millis_of_ntp, open_pk, open_psk,
    tgk_commitment, tgk_verification_keys, verification_message,
};
use crate::{Millis, ProtocolRole};

/// Most k-subsets R tries when parts disagree, so that a flood of bad parts costs bounded work.
const MAX_COMBINATIONS: usize = 1024;

/// The responder's configuration.
#[derive(Debug)]
pub struct ResponderConfig {
    /// R's identity (NAI).
    pub identity: String,
    /// R's RSA decryption key (envelope keys are encrypted to its public half).
    pub decryption_key: PkeSecretKey,
    /// Initiators of pre-shared-key mode, with the keys shared with each.
    pub psk_initiators: Vec<PskPeer>,
    /// Signers of public-key I_MESSAGEs (initiators and third parties), with their RSA
    /// signature keys.
    pub pk_initiators: Vec<PkPeer>,
    /// Shared choices.
    pub policy: Policy,
}

/// What the responder reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum ResponderEvent {
    /// A TGK is in place.
    Established(Established),
    /// A third party's part fits the rebuilt TGK: that third party took part faithfully.
    PartAccepted {
        /// The original initiator.
        initiator: String,
        /// The crypto session bundle.
        csb_id: u32,
        /// The third party.
        third_party: String,
    },
    /// A third party's part was refused because the rebuilt TGK did not match the initiator's
    /// commitment with it: that third party altered its part.
    PartRejected {
        /// The original initiator.
        initiator: String,
        /// The crypto session bundle.
        csb_id: u32,
        /// The third party.
        third_party: String,
    },
    /// A message was accepted into the replay cache: persist it (§5.4).
    ReplayRecorded {
        /// Digest of the accepted message.
        digest: [u8; 32],
        /// When it leaves the timestamp window.
        until: Millis,
    },
    /// A distributed exchange failed; no key exists.
    Failed {
        /// The original initiator.
        initiator: String,
        /// The crypto session bundle.
        csb_id: u32,
        /// Why.
        error: Error,
    },
    /// A datagram was refused and ignored.
    Rejected {
        /// Its source.
        remote: SocketAddr,
        /// Why.
        error: Error,
    },
}

impl ResponderEvent {
    /// The keys the responder established, if this reports them.
    #[must_use]
    pub fn established(&self) -> Option<&Established> {
        match self {
            Self::Established(est) => Some(est),
            _ => None,
        }
    }
}

/// Responder R.
#[derive(Debug)]
pub struct Responder {
    config: ResponderConfig,
    replay: ReplayCache,
    /// Distributed TGKs being gathered, by (initiator, CSB ID).
    assemblies: BTreeMap<(String, u32), Assembly>,
    out: Outbox<ResponderEvent>,
}

#[derive(Debug)]
struct Assembly {
    params: DistributedParams,
    rand: Vec<u8>,
    cs_map: Vec<SrtpCs>,
    deadline: Millis,
    /// By part index: the third party, its share, the commitment it carried.
    parts: BTreeMap<u8, (String, Share, [u8; 32])>,
    done: bool,
    /// Once rebuilt: the TGK, its commitment and k − 1 parts that rebuilt it, to judge parts
    /// that arrive later.
    rebuilt: Option<Rebuilt>,
}

#[derive(Debug)]
struct Rebuilt {
    tgk: Zeroizing<Vec<u8>>,
    commitment: [u8; 32],
    base: Vec<Share>,
    /// The verification message sent to the initiator, and where: sent again, byte for byte,
    /// when a late part arrives (the initiator retransmits its parts until it has it).
    verification: Option<(SocketAddr, Vec<u8>)>,
    /// When it was sent.
    verified_at: Millis,
}

impl Assembly {
    /// Whether `share` (with the commitment it carried) belongs to the rebuilt TGK.
    fn fits(&self, ops: &mut crate::OpCounts, share: &Share, commitment: &[u8; 32]) -> bool {
        let Some(r) = &self.rebuilt else {
            return true;
        };
        let Ok(scheme) = SharingScheme::try_from(self.params.sharing) else {
            return false;
        };
        let mut trial = r.base.clone();
        trial.push(share.clone());
        ops.redundancy += 1;
        *commitment == r.commitment
            && split::combine(
                scheme,
                usize::from(self.params.tgk_len),
                self.params.k,
                self.params.n,
                &trial,
            )
            .is_ok_and(|t| m2msec_crypto::ct::eq(&t, &r.tgk))
    }
}

impl Responder {
    /// A responder that refuses the messages of its restored replay cache.
    ///
    /// # Errors
    /// [`Error::Config`] when nobody may talk to it.
    pub fn new(
        config: ResponderConfig,
        replay_cache: impl IntoIterator<Item = ([u8; 32], Millis)>,
    ) -> Result<Self, Error> {
        if config.psk_initiators.is_empty() && config.pk_initiators.is_empty() {
            return Err(Error::Config("a responder needs initiators".into()));
        }
        let mut replay = ReplayCache::default();
        replay.restore(replay_cache);
        Ok(Self {
            config,
            replay,
            assemblies: BTreeMap::new(),
            out: Outbox::default(),
        })
    }
}

impl Responder {
    fn record(&mut self, digest: [u8; 32], ts: u64) {
        self.out.event(ResponderEvent::ReplayRecorded {
            digest,
            until: millis_of_ntp(ts).after(self.config.policy.clock_skew),
        });
    }

    fn accept_psk(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        bytes: &[u8],
        r: &Received,
    ) -> Result<(), Error> {
        let cfg = &self.config;
        let id_i = r.id_i.as_deref().ok_or(Error::Malformed("no IDi"))?;
        let peer = cfg
            .psk_initiators
            .iter()
            .find(|p| p.id == id_i)
            .ok_or_else(|| Error::UnknownIdentity(id_i.to_owned()))?;
        if r.distributed.is_some() {
            return Err(Error::Malformed(
                "distributed parts come from third parties",
            ));
        }
        let ops = &mut self.out.ops;
        let (tgk, digest) = open_psk(ops, &mut self.replay, now, &cfg.policy, bytes, r, &peer.psk)?;
        let keys = TrafficKeys::derive(ops, &tgk, r.header.csb_id, &r.rand)?;
        let mkeys = if r.header.v {
            ops.hash += 3;
            Some(MessageKeys::derive(
                peer.psk.as_bytes(),
                r.header.csb_id,
                &r.rand,
            )?)
        } else {
            None
        };
        let peer = peer.id.clone();
        if let Some(mkeys) = mkeys {
            self.verify_to(remote, &mkeys, DataType::PskVerify, r, now, id_i)?;
        }
        self.record(digest, r.ts);
        self.out.event(ResponderEvent::Established(Established {
            csb_id: r.header.csb_id,
            peer,
            mode: ModeName::Psk,
            keys,
            verified: true,
        }));
        Ok(())
    }

    fn accept_pk(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        bytes: &[u8],
        r: &Received,
        rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        let cfg = &self.config;
        let id_i = r.id_i.as_deref().ok_or(Error::Malformed("no IDi"))?;
        let signer = cfg
            .pk_initiators
            .iter()
            .find(|p| p.id == id_i)
            .and_then(|p| p.verifying_key.as_ref())
            .ok_or_else(|| Error::UnknownIdentity(id_i.to_owned()))?;
        if r.id_r.as_deref().is_some_and(|id| id != cfg.identity) {
            return Err(Error::UnknownIdentity(r.id_r.clone().unwrap_or_default()));
        }
        let ops = &mut self.out.ops;
        let (tgk, mkeys, digest) = open_pk(
            ops,
            &mut self.replay,
            now,
            &cfg.policy,
            bytes,
            r,
            signer,
            &cfg.decryption_key,
        )?;
        if r.header.v {
            self.verify_to(remote, &mkeys, DataType::PkVerify, r, now, id_i)?;
        }
        self.record(digest, r.ts);
        match &r.distributed {
            None => {
                let keys = TrafficKeys::derive(&mut self.out.ops, &tgk, r.header.csb_id, &r.rand)?;
                self.out.event(ResponderEvent::Established(Established {
                    csb_id: r.header.csb_id,
                    peer: id_i.to_owned(),
                    mode: ModeName::Pk,
                    keys,
                    verified: true,
                }));
                Ok(())
            }
            Some(params) => {
                self.gather(now, id_i, params, r, tgk);
                self.try_rebuild(now, &(params.initiator.clone(), r.header.csb_id), rng)
            }
        }
    }

    /// Answers the I_MESSAGE `r` from `remote`, which asked for it (its V flag), with a
    /// verification message of `data_type` under `mkeys` (RFC 3830 §5.2, §5.3).
    fn verify_to(
        &mut self,
        remote: SocketAddr,
        mkeys: &MessageKeys,
        data_type: DataType,
        r: &Received,
        now: Millis,
        id_i: &str,
    ) -> Result<(), Error> {
        let answer = verification_message(
            &mut self.out.ops,
            mkeys,
            data_type,
            r.header.csb_id,
            r.header.cs_map.clone(),
            now,
            id_i,
            &self.config.identity,
            r.ts,
        )?;
        self.out.send(remote, answer);
        Ok(())
    }

    /// Files a third party's part with the others of the same TGK.
    fn gather(
        &mut self,
        now: Millis,
        third_party: &str,
        params: &DistributedParams,
        r: &Received,
        part: Zeroizing<Vec<u8>>,
    ) {
        let key = (params.initiator.clone(), r.header.csb_id);
        let deadline = now.after(self.config.policy.session);
        let a = self.assemblies.entry(key).or_insert_with(|| Assembly {
            params: params.clone(),
            rand: r.rand.clone(),
            cs_map: r.header.cs_map.clone(),
            deadline,
            parts: BTreeMap::new(),
            done: false,
            rebuilt: None,
        });
        let consistent = a.params.k == params.k
            && a.params.n == params.n
            && a.params.sharing == params.sharing
            && a.params.tgk_len == params.tgk_len
            && a.rand == r.rand;
        if !consistent || a.parts.contains_key(&params.index) {
            return;
        }
        let share = Share {
            index: params.index,
            data: part,
        };
        if a.done {
            // Too late to matter, not too late to name.
            let fits = a.fits(&mut self.out.ops, &share, &params.commitment);
            let (initiator, csb_id, third_party) = (
                params.initiator.clone(),
                r.header.csb_id,
                third_party.to_owned(),
            );
            if !fits {
                self.out.event(ResponderEvent::PartRejected {
                    initiator,
                    csb_id,
                    third_party,
                });
            } else if let Some(r) = &a.rebuilt {
                // A part that comes a retransmission wait after the verification was sent
                // comes from the initiator's retransmission: the verification may have been
                // lost, and only a copy of the part that completed the TGK would bring it
                // again. Parts that merely trail the others on a good link send nothing more.
                let late = now >= r.verified_at.after(self.config.policy.retransmit.initial);
                if let (true, Some((to, message))) = (late, &r.verification) {
                    self.out.send(*to, message.clone());
                }
                self.out.event(ResponderEvent::PartAccepted {
                    initiator,
                    csb_id,
                    third_party,
                });
            }
        }
        a.parts.insert(
            params.index,
            (third_party.to_owned(), share, params.commitment),
        );
    }

    /// Rebuilds the TGK once k parts agree with a commitment that k third parties carried.
    fn try_rebuild(
        &mut self,
        now: Millis,
        key: &(String, u32),
        _rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        let mut events = Vec::new();
        let ops = &mut self.out.ops;
        let Some(a) = self.assemblies.get_mut(key) else {
            return Ok(());
        };
        if a.done {
            return Ok(());
        }
        let k = usize::from(a.params.k);
        let mut votes: BTreeMap<[u8; 32], usize> = BTreeMap::new();
        for (_, _, c) in a.parts.values() {
            *votes.entry(*c).or_default() += 1;
        }
        let Some(commitment) = votes.into_iter().find(|(_, n)| *n >= k).map(|(c, _)| c) else {
            return Ok(());
        };
        let candidates: Vec<&(String, Share, [u8; 32])> = a
            .parts
            .values()
            .filter(|(_, _, c)| *c == commitment)
            .collect();
        let scheme = SharingScheme::try_from(a.params.sharing)?;
        let len = usize::from(a.params.tgk_len);
        let mut found = None;
        for subset in combinations(candidates.len(), k).take(MAX_COMBINATIONS) {
            let shares: Vec<Share> = subset.iter().map(|&i| candidates[i].1.clone()).collect();
            ops.redundancy += 1;
            let Ok(tgk) = split::combine(scheme, len, a.params.k, a.params.n, &shares) else {
                continue;
            };
            if tgk_commitment(ops, key.1, &tgk) == commitment {
                found = Some((tgk, subset));
                break;
            }
        }
        let Some((tgk, subset)) = found else {
            if a.parts.len() == usize::from(a.params.n) {
                let error = Error::NotEnoughParts {
                    valid: 0,
                    needed: k,
                };
                a.done = true;
                self.out.event(ResponderEvent::Failed {
                    initiator: key.0.clone(),
                    csb_id: key.1,
                    error,
                });
            }
            return Ok(());
        };
        a.done = true;
        // A part outside the matching subset is honest if it rebuilds the same TGK with k − 1
        // parts of that subset; the others were altered: name their senders.
        let used: Vec<u8> = subset.iter().map(|&i| candidates[i].1.index).collect();
        a.rebuilt = Some(Rebuilt {
            tgk: tgk.clone(),
            commitment,
            base: subset[1..]
                .iter()
                .map(|&i| candidates[i].1.clone())
                .collect(),
            verification: None,
            verified_at: now,
        });
        let mut judged = Vec::new();
        for (third_party, share, c) in a.parts.values() {
            let fits = used.contains(&share.index) || a.fits(ops, share, c);
            judged.push((third_party.clone(), fits));
        }
        for (third_party, fits) in judged {
            let (initiator, csb_id) = (key.0.clone(), key.1);
            events.push(if fits {
                ResponderEvent::PartAccepted {
                    initiator,
                    csb_id,
                    third_party,
                }
            } else {
                ResponderEvent::PartRejected {
                    initiator,
                    csb_id,
                    third_party,
                }
            });
        }
        let keys = TrafficKeys::derive(ops, &tgk, key.1, &a.rand)?;
        let mut answer = None;
        if let Ok(reply_to) = a.params.reply_to.parse::<SocketAddr>() {
            let mkeys = tgk_verification_keys(ops, &tgk, key.1, &a.rand)?;
            let message = verification_message(
                ops,
                &mkeys,
                DataType::PskVerify,
                key.1,
                a.cs_map.clone(),
                now,
                &key.0,
                &self.config.identity,
                a.params.initiator_ts,
            )?;
            answer = Some((reply_to, message));
        }
        events.push(ResponderEvent::Established(Established {
            csb_id: key.1,
            peer: key.0.clone(),
            mode: ModeName::Distributed,
            keys,
            verified: true,
        }));
        if let Some((to, message)) = answer {
            if let Some(r) = &mut a.rebuilt {
                r.verification = Some((to, message.clone()));
            }
            self.out.send(to, message);
        }
        for e in events {
            self.out.event(e);
        }
        Ok(())
    }
}

impl ProtocolRole for Responder {
    type Protocol = Mikey;
    type Event = ResponderEvent;

    fn handle(
        &mut self,
        now: Millis,
        remote: SocketAddr,
        d: Datagram,
        rng: &mut dyn CryptoRng,
    ) -> Result<(), Error> {
        let r = Received::read(&d.msg)?;
        let result = match d.msg.header.data_type {
            DataType::PreShared => self.accept_psk(now, remote, &d.bytes, &r),
            DataType::PublicKey => self.accept_pk(now, remote, &d.bytes, &r, rng),
            _ => return Err(Error::UnexpectedMessage("MIKEY message of this data type")),
        };
        answer_refusal(&mut self.out, remote, &r, now, result)
    }

    fn on_timeout(&mut self, now: Millis, _rng: &mut dyn CryptoRng) {
        let expired: Vec<(String, u32)> = self
            .assemblies
            .iter()
            .filter(|(_, a)| now >= a.deadline)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            if let Some(a) = self.assemblies.remove(&key) {
                if !a.done {
                    self.out.event(ResponderEvent::Failed {
                        initiator: key.0,
                        csb_id: key.1,
                        error: Error::NotEnoughParts {
                            valid: a.parts.len(),
                            needed: usize::from(a.params.k),
                        },
                    });
                }
            }
        }
    }

    fn next_timeout(&self) -> Option<Millis> {
        self.assemblies.values().map(|a| a.deadline).min()
    }

    fn rejected(remote: SocketAddr, error: Error) -> Self::Event {
        ResponderEvent::Rejected { remote, error }
    }

    fn outbox(&self) -> &Outbox<ResponderEvent> {
        &self.out
    }

    fn outbox_mut(&mut self) -> &mut Outbox<ResponderEvent> {
        &mut self.out
    }
}

/// The k-subsets of 0..m in lexicographic order.
fn combinations(m: usize, k: usize) -> impl Iterator<Item = Vec<usize>> {
    let mut next = (k <= m && k > 0).then(|| (0..k).collect::<Vec<usize>>());
    core::iter::from_fn(move || {
        let current = next.take()?;
        let mut c = current.clone();
        // Advance to the next subset, if any.
        let mut i = k;
        while i > 0 {
            i -= 1;
            if c[i] < m - k + i {
                c[i] += 1;
                for j in i + 1..k {
                    c[j] = c[j - 1] + 1;
                }
                next = Some(c);
                break;
            }
        }
        Some(current)
    })
}

#[cfg(test)]
mod tests {
    use super::combinations;

    #[test]
    fn combinations_enumerate_every_subset_once() {
        let all: Vec<Vec<usize>> = combinations(5, 3).collect();
        assert_eq!(all.len(), 10);
        assert_eq!(all[0], [0, 1, 2]);
        assert_eq!(all[9], [2, 3, 4]);
        assert_eq!(combinations(3, 4).count(), 0);
        assert_eq!(combinations(4, 4).count(), 1);
    }
}
