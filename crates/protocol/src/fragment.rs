//! No datagram larger than the path carries: a message above the path MTU leaves as fragments
//! (`m2msec_wire::fragment`) and is put together again before its role sees it.
//!
//! Every role that runs as an [`Endpoint`](crate::Endpoint) gets this in its
//! [`Outbox`](crate::Outbox), once for all protocols: today only collab sends messages that need
//! it (a proxy's Lamport CertRequest is 16.8 KB, its signed answer 8.3 KB); MIKEY, SGA and
//! E2SEC stay below 1,232 bytes in every mode, so their datagrams are unchanged.
//!
//! Lost fragments are not asked for again: the sender's request is retransmitted whole
//! (`crate::reliable`), its fragments carry the same id (the message's digest), and each
//! retransmission fills the gaps the earlier ones left, so a message of 14 fragments completes
//! on a link that loses one datagram in five. What waits is bounded: per peer, in all, in bytes,
//! and in time.

use core::cmp::Reverse;
use core::net::{IpAddr, SocketAddr};
use core::time::Duration;
use std::collections::HashMap;

use m2msec_crypto::hash;
use m2msec_wire::fragment::{Fragment, HEADER_LEN};

use crate::network::Datagram;
use crate::{Millis, Transmit};

/// The path MTU assumed unless configured: IPv6's minimum link MTU (RFC 8200 §5), which every
/// IPv6 path carries.
pub const DEFAULT_PATH_MTU: u16 = 1280;
/// The smallest path MTU accepted: the datagram every IPv4 host must accept (RFC 791).
pub const MIN_PATH_MTU: u16 = 576;
/// IP and UDP headers in front of a datagram: IPv6's 40 bytes (IPv4 has 20) and UDP's 8, so
/// that a datagram that fits fits over either.
const IP_UDP_HEADERS: usize = 48;
/// Longest message put together (a classic-suite Lamport CertRequest is 17 KB).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// How long a message's fragments wait for the rest: longer than the default retransmission
/// span (15 s), so that the last retransmission can still fill the first one's gaps.
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages of one host (any of its ports) being put together at once; a new one past it drops
/// one of that host's.
const MAX_PER_PEER: usize = 16;
/// Messages being put together at once; a new one past it drops one of the host holding most.
const MAX_PENDING: usize = 256;
/// Bytes of fragments held at once; past it messages are dropped as for [`MAX_PENDING`].
const MAX_HELD: usize = 4 * 1024 * 1024;

/// What a fragment brought.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reassembly {
    /// The last missing fragment: the whole message (its protocol authenticates it).
    Whole(Vec<u8>),
    /// Kept; the message still lacks fragments.
    Incomplete,
    /// Refused: a malformed fragment, one that contradicts the others or a message over
    /// [`MAX_MESSAGE`] (its fragments all dropped).
    Refused(m2msec_wire::Error),
}

/// One message being put together.
#[derive(Debug)]
struct Pending {
    started: Millis,
    /// Arrival order of its first fragment: ties go to the older.
    seq: u64,
    chunks: Vec<Option<Vec<u8>>>,
    held: usize,
    missing: usize,
}

/// A role's fragmentation: the path MTU it sends within, and the messages it is putting
/// together.
#[derive(Debug)]
pub(crate) struct Fragments {
    path_mtu: u16,
    pending: HashMap<(SocketAddr, [u8; 8]), Pending>,
    held: usize,
    seq: u64,
}

impl Default for Fragments {
    fn default() -> Self {
        Self {
            path_mtu: DEFAULT_PATH_MTU,
            pending: HashMap::new(),
            held: 0,
            seq: 0,
        }
    }
}

impl Fragments {
    /// Sends within `path_mtu` from now on (at least [`MIN_PATH_MTU`]).
    pub(crate) fn set_path_mtu(&mut self, path_mtu: u16) {
        self.path_mtu = path_mtu.max(MIN_PATH_MTU);
    }

    /// The largest datagram sent: the path MTU less the IP and UDP headers.
    pub(crate) fn max_datagram(&self) -> usize {
        usize::from(self.path_mtu) - IP_UDP_HEADERS
    }

    /// `t` as the datagrams that go on the wire: itself if it fits, otherwise its fragments
    /// (none for a message that more than `wire::fragment::MAX_COUNT` fragments cannot carry, which no role
    /// sends: the largest, 17 KB, takes 15).
    pub(crate) fn split(&self, t: Transmit) -> Vec<Transmit> {
        let max = self.max_datagram();
        if t.payload.len() <= max {
            return vec![t];
        }
        let per = max - HEADER_LEN;
        // `MAX_COUNT` is the largest `u8`: a count that fits one is allowed.
        let Ok(count) = u8::try_from(t.payload.len().div_ceil(per)) else {
            return Vec::new();
        };
        let id = message_id(&t.payload);
        t.payload
            .chunks(per)
            .zip(0..count)
            .map(|(chunk, index)| Transmit {
                destination: t.destination,
                payload: Fragment {
                    id,
                    index,
                    count,
                    chunk,
                }
                .to_bytes(),
            })
            .collect()
    }

    /// Takes a fragment `datagram` from `from` at `now`.
    pub(crate) fn receive(&mut self, now: Millis, from: SocketAddr, datagram: &[u8]) -> Reassembly {
        self.expire(now);
        let f = match Fragment::decode(datagram) {
            Ok(f) => f,
            Err(e) => return Reassembly::Refused(e),
        };
        let key = (from, f.id);
        if !self.pending.contains_key(&key) {
            self.make_room(from);
            self.seq += 1;
            let pending = Pending {
                started: now,
                seq: self.seq,
                chunks: vec![None; usize::from(f.count)],
                held: 0,
                missing: usize::from(f.count),
            };
            self.pending.insert(key, pending);
        }
        let Some(p) = self.pending.get_mut(&key) else {
            return Reassembly::Incomplete;
        };
        // A fragment that contradicts those held is refused alone: the message in progress
        // stays (if the one held was the forgery, the check against the id at the end drops
        // the message, and a retransmission brings it again).
        if usize::from(f.count) != p.chunks.len() {
            return refused("a fragment count unlike its message's other fragments");
        }
        let Some(slot) = p.chunks.get_mut(usize::from(f.index)) else {
            return Reassembly::Incomplete;
        };
        match slot {
            // A copy (duplicated, or of a retransmission): nothing new.
            Some(held) if held == f.chunk => return Reassembly::Incomplete,
            Some(_) => return refused("two fragments at one index"),
            None => {}
        }
        if p.held + f.chunk.len() > MAX_MESSAGE {
            return self.drop_refused(key, "a message over the largest put together");
        }
        *slot = Some(f.chunk.to_vec());
        p.held += f.chunk.len();
        p.missing -= 1;
        self.held += f.chunk.len();
        if p.missing > 0 {
            self.shed();
            return Reassembly::Incomplete;
        }
        let Some(p) = self.remove(&key) else {
            return Reassembly::Incomplete;
        };
        // Not hashed again to check it against its id: that pass cost the collab server 7 % of
        // its handshake rate (`m2msec bench`, Lamport: 1,215 → 1,126/s) and guards nothing,
        // since every message large enough to be fragmented is authenticated by its protocol
        // (a signature, a MAC or an AEAD tag), which refuses one put together from a forged
        // fragment; the retransmission then brings it again.
        // Chunk by chunk into one allocation: a byte-wise `flatten().collect()` here cost the
        // collab server a fifth of its handshake rate (`m2msec bench`: 955 → 1,215/s).
        let mut whole = Vec::with_capacity(p.held);
        for chunk in p.chunks.iter().flatten() {
            whole.extend_from_slice(chunk);
        }
        Reassembly::Whole(whole)
    }

    /// Messages being put together (for tests and counters).
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.pending.len()
    }

    fn remove(&mut self, key: &(SocketAddr, [u8; 8])) -> Option<Pending> {
        let p = self.pending.remove(key)?;
        self.held -= p.held;
        Some(p)
    }

    fn drop_refused(&mut self, key: (SocketAddr, [u8; 8]), why: &'static str) -> Reassembly {
        self.remove(&key);
        Reassembly::Refused(m2msec_wire::Error::Fragment(why))
    }

    fn expire(&mut self, now: Millis) {
        let held = &mut self.held;
        self.pending.retain(|_, p| {
            let fresh = now.0.saturating_sub(p.started.0) < millis(REASSEMBLY_TIMEOUT);
            if !fresh {
                *held -= p.held;
            }
            fresh
        });
    }

    /// Room for one more message from `from`: one of its host's goes past [`MAX_PER_PEER`]
    /// (a host, whatever its ports), one of the host holding the most past [`MAX_PENDING`].
    fn make_room(&mut self, from: SocketAddr) {
        let host = from.ip();
        let of_host = self.pending.keys().filter(|(p, _)| p.ip() == host).count();
        if of_host >= MAX_PER_PEER {
            self.drop_victim(Some(host));
        }
        if self.pending.len() >= MAX_PENDING {
            self.drop_victim(None);
        }
    }

    /// Drops messages while more than [`MAX_HELD`] bytes are held.
    fn shed(&mut self) {
        while self.held > MAX_HELD && !self.pending.is_empty() {
            self.drop_victim(None);
        }
    }

    /// Drops a message of `host` (of any host if none): of the host holding the most, the one
    /// with the fewest fragments in, the oldest of those. A flood of first fragments, from one
    /// host or from many, displaces its own: an honest message has its next fragments in
    /// before the flood has cycled through the table.
    fn drop_victim(&mut self, host: Option<IpAddr>) {
        let mut per_host: HashMap<IpAddr, usize> = HashMap::new();
        for (peer, _) in self.pending.keys() {
            *per_host.entry(peer.ip()).or_default() += 1;
        }
        let victim = self
            .pending
            .iter()
            .filter(|((peer, _), _)| host.is_none_or(|h| h == peer.ip()))
            .min_by_key(|((peer, _), p)| {
                let holding = per_host.get(&peer.ip()).copied().unwrap_or(0);
                (Reverse(holding), p.chunks.len() - p.missing, p.seq)
            })
            .map(|(k, _)| *k);
        if let Some(k) = victim {
            self.remove(&k);
        }
    }
}

/// What an observer or an attacker on the path sees of the messages: each one whole, put
/// together from its fragments as its receiver does (the traces, the tests' adversaries).
#[derive(Debug, Default)]
pub struct OnPath {
    /// By receiver: the same message may go to several.
    flows: HashMap<SocketAddr, Fragments>,
}

impl OnPath {
    /// The whole message `d` is or completes, and how many datagrams carried it; `None` while
    /// its fragments are missing, or for a fragment its receiver refuses.
    pub fn message(&mut self, d: &Datagram) -> Option<(Vec<u8>, usize)> {
        let Ok(f) = Fragment::decode(&d.payload) else {
            return Some((d.payload.clone(), 1));
        };
        match self
            .flows
            .entry(d.to)
            .or_default()
            .receive(d.at, d.from, &d.payload)
        {
            Reassembly::Whole(m) => Some((m, usize::from(f.count))),
            Reassembly::Incomplete | Reassembly::Refused(_) => None,
        }
    }
}

/// `adversary` on whole messages as an adversary on datagrams: fragments are held until their
/// message is whole; `adversary` then sees that message as one datagram, and what it returns
/// leaves split again within [`DEFAULT_PATH_MTU`].
pub fn on_messages(
    mut adversary: impl FnMut(&Datagram) -> Vec<Datagram>,
) -> impl FnMut(&Datagram) -> Vec<Datagram> {
    let mut path = OnPath::default();
    let split = Fragments::default();
    move |d: &Datagram| {
        let Some((payload, _)) = path.message(d) else {
            return Vec::new();
        };
        let whole = Datagram {
            payload,
            ..d.clone()
        };
        adversary(&whole)
            .into_iter()
            .flat_map(|out| {
                let t = Transmit {
                    destination: out.to,
                    payload: out.payload.clone(),
                };
                split.split(t).into_iter().map(move |t| Datagram {
                    payload: t.payload,
                    ..out.clone()
                })
            })
            .collect()
    }
}

/// A message's id: the first 8 bytes of its SHA-256 (the same for every retransmission).
fn message_id(message: &[u8]) -> [u8; 8] {
    let digest = hash::sha256(message);
    let mut id = [0; 8];
    id.copy_from_slice(&digest[..8]);
    id
}

fn refused(why: &'static str) -> Reassembly {
    Reassembly::Refused(m2msec_wire::Error::Fragment(why))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests: a failed unwrap is a failed test
    use super::*;

    const A: SocketAddr = SocketAddr::new(core::net::IpAddr::V4(core::net::Ipv4Addr::LOCALHOST), 1);
    const B: SocketAddr = SocketAddr::new(
        core::net::IpAddr::V4(core::net::Ipv4Addr::new(192, 0, 2, 2)),
        2,
    );

    fn message(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| u8::try_from(i * 7 % 251).unwrap())
            .collect()
    }

    fn split(len: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let m = message(len);
        let t = Transmit {
            destination: B,
            payload: m.clone(),
        };
        let pieces = Fragments::default().split(t);
        (m, pieces.into_iter().map(|t| t.payload).collect())
    }

    #[test]
    fn small_messages_go_whole_and_large_ones_within_the_mtu() {
        let f = Fragments::default();
        assert_eq!(f.max_datagram(), 1232);
        let (m, pieces) = split(1232);
        assert_eq!(pieces, vec![m]);
        let (_, pieces) = split(16_856);
        assert_eq!(pieces.len(), 14);
        assert!(pieces.iter().all(|p| p.len() <= 1232));
        let mut small = Fragments::default();
        small.set_path_mtu(100);
        assert_eq!(small.max_datagram(), usize::from(MIN_PATH_MTU) - 48);
    }

    #[test]
    fn fragments_in_any_order_and_with_copies_make_the_message() {
        let (m, mut pieces) = split(5000);
        pieces.reverse();
        pieces.insert(1, pieces[0].clone());
        let mut r = Fragments::default();
        let mut got = Vec::new();
        for p in &pieces {
            match r.receive(Millis(0), A, p) {
                Reassembly::Whole(w) => got.push(w),
                Reassembly::Incomplete => {}
                Reassembly::Refused(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, vec![m]);
        assert_eq!((r.pending(), r.held), (0, 0));
    }

    #[test]
    fn a_retransmission_fills_the_gaps_of_the_first() {
        let (m, pieces) = split(5000);
        let mut r = Fragments::default();
        // First transmission: every other fragment lost.
        for p in pieces.iter().step_by(2) {
            assert_eq!(r.receive(Millis(0), A, p), Reassembly::Incomplete);
        }
        // Second: only the others arrive.
        let mut whole = None;
        for p in pieces.iter().skip(1).step_by(2) {
            if let Reassembly::Whole(w) = r.receive(Millis(500), A, p) {
                whole = Some(w);
            }
        }
        assert_eq!(whole, Some(m));
    }

    #[test]
    fn tampered_or_contradicting_fragments_are_refused() {
        let (_, pieces) = split(3000);
        // A fragment whose bytes were changed: the message comes out whole but not as sent (its
        // protocol's authentication refuses it), and nothing is held after it.
        let mut r = Fragments::default();
        let mut bad = pieces.clone();
        let last = bad[1].len() - 1;
        bad[1][last] ^= 1;
        let outcomes: Vec<_> = bad.iter().map(|p| r.receive(Millis(0), A, p)).collect();
        assert!(matches!(outcomes.last(), Some(Reassembly::Whole(w)) if *w != message(3000)));
        assert_eq!((r.pending(), r.held), (0, 0));
        // Two different fragments at one index, and a count unlike the first fragment's: each
        // refused alone, and the message still completes.
        let mut r = Fragments::default();
        assert_eq!(r.receive(Millis(0), A, &pieces[0]), Reassembly::Incomplete);
        assert!(matches!(
            r.receive(Millis(0), A, &bad_copy(&pieces[0])),
            Reassembly::Refused(_)
        ));
        let mut other = pieces[1].clone();
        other[11] += 1;
        assert!(matches!(
            r.receive(Millis(0), A, &other),
            Reassembly::Refused(_)
        ));
        let last = pieces
            .iter()
            .skip(1)
            .map(|p| r.receive(Millis(0), A, p))
            .last();
        assert!(matches!(last, Some(Reassembly::Whole(_))));
        // Fragments of one peer never complete another's message.
        let mut r = Fragments::default();
        for p in &pieces[..pieces.len() - 1] {
            assert_eq!(r.receive(Millis(0), A, p), Reassembly::Incomplete);
        }
        assert_eq!(
            r.receive(Millis(0), B, &pieces[pieces.len() - 1]),
            Reassembly::Incomplete
        );
        assert!(matches!(
            r.receive(Millis(0), A, b"\xfa\x01"),
            Reassembly::Refused(_)
        ));
    }

    fn bad_copy(p: &[u8]) -> Vec<u8> {
        let mut p = p.to_vec();
        let last = p.len() - 1;
        p[last] ^= 0xff;
        p
    }

    /// A message in progress survives floods of first fragments: from one host on many ports,
    /// and from many hosts.
    #[test]
    fn a_flood_of_first_fragments_does_not_starve_a_message_in_progress() {
        let (m, pieces) = split(16_856);
        let first = |id: u32| {
            Fragment {
                id: [id.to_be_bytes(), [9; 4]].concat().try_into().unwrap(),
                index: 0,
                count: 14,
                chunk: &[0; 1220],
            }
            .to_bytes()
        };
        let mut r = Fragments::default();
        let mut whole = None;
        for (i, p) in pieces.iter().enumerate() {
            let port = u16::try_from(i).unwrap();
            for j in 0..100u16 {
                // One host, a new port each time.
                let one_host = SocketAddr::new(A.ip(), 1000 + port * 100 + j);
                r.receive(Millis(0), one_host, &first(u32::from(port * 100 + j)));
                // Many hosts.
                let many = SocketAddr::new(
                    core::net::Ipv4Addr::new(
                        10,
                        0,
                        u8::try_from(i).unwrap(),
                        u8::try_from(j).unwrap(),
                    )
                    .into(),
                    9,
                );
                r.receive(
                    Millis(0),
                    many,
                    &first(u32::from(port * 100 + j) + 1_000_000),
                );
            }
            if let Reassembly::Whole(w) = r.receive(Millis(0), B, p) {
                whole = Some(w);
            }
            assert!(r.pending() <= MAX_PENDING && r.held <= MAX_HELD);
        }
        assert_eq!(whole, Some(m));
    }

    #[test]
    fn what_waits_is_bounded_in_number_bytes_and_time() {
        let mut r = Fragments::default();
        // A flood of first fragments of different messages from one peer.
        for i in 0..1000u32 {
            let f = Fragment {
                id: [i.to_be_bytes(), [0; 4]].concat().try_into().unwrap(),
                index: 0,
                count: 255,
                chunk: &[0; 1220],
            };
            assert_eq!(
                r.receive(Millis(0), A, &f.to_bytes()),
                Reassembly::Incomplete
            );
        }
        assert_eq!(r.pending(), MAX_PER_PEER);
        // From many peers: at most MAX_PENDING messages and MAX_HELD bytes.
        for port in 0..2000u16 {
            let from = SocketAddr::new(A.ip(), port);
            let f = Fragment {
                id: [1; 8],
                index: 0,
                count: 255,
                chunk: &[0; 1220],
            };
            r.receive(Millis(1), from, &f.to_bytes());
            assert!(r.pending() <= MAX_PENDING && r.held <= MAX_HELD);
        }
        // After the timeout, all of it is gone.
        let (_, pieces) = split(3000);
        r.receive(Millis(millis(REASSEMBLY_TIMEOUT) + 1), B, &pieces[0]);
        assert_eq!(r.pending(), 1);
        // A message over MAX_MESSAGE is refused.
        let mut r = Fragments::default();
        let mut refused = false;
        for index in 0..60u8 {
            let f = Fragment {
                id: [2; 8],
                index,
                count: 60,
                chunk: &[0; 1220],
            };
            refused |= matches!(
                r.receive(Millis(0), A, &f.to_bytes()),
                Reassembly::Refused(_)
            );
        }
        assert!(refused);
        assert!(r.held <= MAX_MESSAGE);
    }
}
