//! Whether a sink got exactly its window of a stream: every data message the source sent from
//! the first section the sink may read on, each once, as sent. The relay demo's verdict, kept
//! here with the rule it depends on: where the proxy starts a sink added mid-stream.

use std::collections::BTreeMap;

use m2msec_wire::relay::{Flags, RelayMessage};

use super::Delivered;

/// What the source sealed.
#[derive(Debug, Default)]
pub struct Sent {
    /// Data messages: message id → (key index, plaintext).
    pub data: BTreeMap<u32, (u16, Vec<u8>)>,
    /// Sections (management messages).
    pub sections: u32,
}

impl Sent {
    /// Records the sealed message `m`: a section, or a data message whose plaintext is the next
    /// of `payloads` (sealed in order).
    pub fn sealed(&mut self, m: &RelayMessage, payloads: &mut impl Iterator<Item = Vec<u8>>) {
        if m.header.flags.contains(Flags::MANAGEMENT) {
            self.sections += 1;
        } else if let Some(p) = payloads.next() {
            self.data
                .insert(m.header.message_id, (m.header.key_index, p));
        }
    }
}

/// What one sink delivered: message id → the plaintext of every copy.
#[derive(Debug, Default)]
pub struct Received(BTreeMap<u32, Vec<Vec<u8>>>);

impl Received {
    /// Records one delivery.
    pub fn add(&mut self, d: &Delivered) {
        self.0
            .entry(d.message_id)
            .or_default()
            .push(d.plaintext.to_vec());
    }

    /// Deliveries, copies included.
    #[must_use]
    pub fn count(&self) -> usize {
        self.0.values().map(Vec::len).sum()
    }

    /// The first section the sink may read: 0 for one forwarded from the beginning; for one
    /// added with `Start::Now` (`Some(k)`, the section in progress then), section `k` if the
    /// proxy still held its key, or else `k + 1`: a section's key is removed once every sink had
    /// it, and the proxy then starts the new sink at the next section (docs/relay.md). Sections
    /// go to a sink one after the other, so one that got nothing of `k` never will.
    #[must_use]
    pub fn first_section(&self, sent: &Sent, in_progress: Option<u16>) -> u16 {
        let Some(k) = in_progress else {
            return 0;
        };
        let got_k = self
            .0
            .keys()
            .any(|id| sent.data.get(id).is_some_and(|(index, _)| *index == k));
        if got_k { k } else { k.wrapping_add(1) }
    }

    /// The messages of `sent` from key index `from` on, and whether the sink delivered exactly
    /// those, each once, as sent.
    #[must_use]
    pub fn matches(&self, sent: &Sent, from: u16) -> (u32, bool) {
        let expected: BTreeMap<u32, &Vec<u8>> = sent
            .data
            .iter()
            .filter(|(_, (k, _))| k.wrapping_sub(from) < 0x8000)
            .map(|(id, (_, p))| (*id, p))
            .collect();
        let exact = self.0.len() == expected.len()
            && self.0.iter().all(|(id, copies)| {
                copies.len() == 1 && expected.get(id).is_some_and(|p| **p == copies[0])
            });
        (u32::try_from(expected.len()).unwrap_or(u32::MAX), exact)
    }

    /// Whether the sink delivered at least as many messages as its window holds (`in_progress`
    /// as for [`Received::first_section`]).
    #[must_use]
    pub fn reached(&self, sent: &Sent, in_progress: Option<u16>) -> bool {
        let (expected, _) = self.matches(sent, self.first_section(sent, in_progress));
        self.count() >= expected as usize
    }
}

#[cfg(test)]
mod tests {
    use m2msec_wire::relay::Header;

    use super::*;

    /// Six data messages (ids 10 to 15) in sections 1, 1, 2, 2, 3, 3, each section opened by
    /// its management message.
    fn sent() -> Sent {
        let mut sent = Sent::default();
        let mut payloads = (0..6u8).map(|i| vec![i]);
        let message = |flags, message_id, key_index| RelayMessage {
            header: Header {
                flags,
                message_id,
                key_index,
                ..Header::default()
            },
            body: Vec::new(),
        };
        for i in 0..6u32 {
            let key_index = u16::try_from(1 + i / 2).unwrap_or(0);
            if i % 2 == 0 {
                sent.sealed(&message(Flags::MANAGEMENT, 0, key_index), &mut payloads);
            }
            sent.sealed(&message(Flags::default(), 10 + i, key_index), &mut payloads);
        }
        sent
    }

    fn delivered(sent: &Sent, ids: &[u32]) -> Received {
        let mut r = Received::default();
        for id in ids {
            let (key_index, p) = sent.data.get(id).cloned().unwrap_or_default();
            r.add(&Delivered {
                source: "coap://s/".into(),
                stream_id: 1,
                key_index,
                message_id: *id,
                epoch: 0,
                individual: false,
                plaintext: p.into(),
            });
        }
        r
    }

    #[test]
    fn a_sink_from_the_beginning_gets_everything_once() {
        let sent = sent();
        assert_eq!((sent.sections, sent.data.len()), (3, 6));
        let all = delivered(&sent, &[10, 11, 12, 13, 14, 15]);
        assert_eq!(all.first_section(&sent, None), 0);
        assert_eq!(all.matches(&sent, 0), (6, true));
        assert!(all.reached(&sent, None));
        let twice = delivered(&sent, &[10, 10, 11, 12, 13, 14, 15]);
        assert_eq!(twice.matches(&sent, 0), (6, false));
        let short = delivered(&sent, &[10, 11, 12]);
        assert!(!short.reached(&sent, None));
    }

    /// A sink added while section 2 was in progress starts there if it got any of it, else at
    /// section 3.
    #[test]
    fn a_sink_added_mid_stream_starts_at_the_section_in_progress_or_the_next() {
        let sent = sent();
        let from_2 = delivered(&sent, &[12, 13, 14, 15]);
        assert_eq!(from_2.first_section(&sent, Some(2)), 2);
        assert_eq!(from_2.matches(&sent, 2), (4, true));
        let from_3 = delivered(&sent, &[14, 15]);
        assert_eq!(from_3.first_section(&sent, Some(2)), 3);
        assert_eq!(from_3.matches(&sent, 3), (2, true));
        assert!(from_3.reached(&sent, Some(2)));
        // Something of an earlier section is not its window.
        let extra = delivered(&sent, &[11, 14, 15]);
        assert_eq!(extra.matches(&sent, 3), (2, false));
    }
}
