//! A group commit's decisions: admitted messages grouped into one share per storage (one
//! `Store::queue_push_unique` each, [`Written::push`]), and what a share's write means for its
//! storage and for the answers: a 2.04 only once the share is durable.

use std::collections::BTreeMap;

use m2msec_wire::relay::coap::coap_lite::ResponseType;

use super::api::{Admitted, Response};
use super::state::{Core, Handles, Written, admitted_bytes};

/// One storage's share of a group commit.
#[derive(Debug)]
pub struct Share<R> {
    /// The storage.
    pub storage: u32,
    /// (dedup key, message in binary form), in admission order: what [`Written::push`] takes.
    pub items: Vec<([u8; 9], Vec<u8>)>,
    /// Where each message's answer goes (none for plain UDP).
    pub replies: Vec<Option<R>>,
}

impl<R> Share<R> {
    /// Groups admitted messages, each with where its answer goes, into one share per storage,
    /// in storage order.
    pub fn group(batch: impl IntoIterator<Item = (Admitted, Option<R>)>) -> Vec<Self> {
        let mut shares: BTreeMap<u32, Self> = BTreeMap::new();
        for (a, reply) in batch {
            let share = shares.entry(a.storage).or_insert_with(|| Self {
                storage: a.storage,
                items: Vec::new(),
                replies: Vec::new(),
            });
            share.items.push((a.key, a.value));
            share.replies.push(reply);
        }
        shares.into_values().collect()
    }

    /// Bytes reserved at admission for its messages.
    #[must_use]
    pub fn admitted(&self) -> u64 {
        admitted_bytes(&self.items)
    }
}

/// What became of a share, for the shell.
#[derive(Debug)]
pub struct Committed {
    /// The answer to each of its messages.
    pub answer: Response,
    /// New messages were stored: the storage's pumps are woken.
    pub arrived: bool,
    /// The store failed: nothing of the share was acknowledged, and the shell stops.
    pub error: Option<m2msec_store::Error>,
}

impl<H: Handles> Core<H> {
    /// Records what became of the share of storage `id` holding `admitted` reserved bytes:
    /// `None` when it was not written because the storage was deleted while its messages
    /// waited (4.04); the store's error (5.00, the reservation given back); or what it wrote
    /// (2.04, [`Core::on_written`]).
    pub fn committed(
        &mut self,
        id: u32,
        admitted: u64,
        pushed: Option<m2msec_store::Result<Written>>,
        now_s: u64,
    ) -> Committed {
        let (answer, arrived, error) = match pushed {
            None => (
                Response::error(ResponseType::NotFound, "storage deleted"),
                false,
                None,
            ),
            Some(Err(e)) => {
                self.release(id, admitted);
                (Response::store_failed(), false, Some(e))
            }
            Some(Ok(written)) => {
                let arrived = written.stored > 0;
                self.on_written(id, written, now_s);
                (Response::code(ResponseType::Changed), arrived, None)
            }
        };
        Committed {
            answer,
            arrived,
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(storage: u32, n: u8, len: usize) -> (Admitted, Option<u8>) {
        let a = Admitted {
            storage,
            key: [n; 9],
            value: vec![n; len],
        };
        (a, (n % 2 == 0).then_some(n))
    }

    #[test]
    fn shares_group_by_storage_in_admission_order() {
        let shares = Share::group([admitted(2, 0, 3), admitted(1, 1, 4), admitted(2, 2, 5)]);
        assert_eq!(shares.len(), 2);
        assert_eq!(shares[0].storage, 1);
        assert_eq!(shares[0].admitted(), 4);
        assert_eq!(shares[0].replies, [None]);
        assert_eq!(shares[1].storage, 2);
        assert_eq!(shares[1].admitted(), 8);
        assert_eq!(
            shares[1].items,
            [([0; 9], vec![0; 3]), ([2; 9], vec![2; 5])]
        );
        assert_eq!(shares[1].replies, [Some(0), Some(2)]);
    }

    #[test]
    fn a_share_is_acknowledged_only_once_written() {
        let mut core: Core<()> = Core::new(1 << 20, 600, 0);
        let gone = core.committed(7, 10, None, 0);
        assert_eq!(gone.answer.code, ResponseType::NotFound);
        assert!(!gone.arrived && gone.error.is_none());
        let failed = core.committed(
            7,
            10,
            Some(Err(m2msec_store::Error::Backend {
                operation: "test",
                source: "disk full".into(),
            })),
            0,
        );
        assert_eq!(failed.answer.code, ResponseType::InternalServerError);
        assert!(!failed.arrived && failed.error.is_some());
        let stored = Written {
            stored: 1,
            ..Written::default()
        };
        let ok = core.committed(7, 10, Some(Ok(stored)), 0);
        assert_eq!(ok.answer.code, ResponseType::Changed);
        assert!(ok.arrived && ok.error.is_none());
        let again = core.committed(7, 10, Some(Ok(Written::default())), 0);
        assert!(!again.arrived, "only copies: no pump is woken");
    }
}
