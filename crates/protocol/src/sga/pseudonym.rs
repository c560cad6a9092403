//! Device pseudonyms (wire version 2, `docs/sga.md` "Identity privacy"): a device names itself
//! to the server by a value derived under its key k_d for the current epoch, which only the
//! device and the server can compute, and which rotates every [`ALIAS_EPOCH`].

use core::time::Duration;
use std::collections::BTreeMap;

use m2msec_crypto::kdf;
use m2msec_wire::cbor;
use m2msec_wire::sga::AliasBytes;

use super::{DeviceKey, Error, expand, labelled};
use crate::{Millis, OpCounts};

/// How long a device keeps one pseudonym: it rotates at every multiple of this since the UNIX
/// epoch. Shorter makes a device's messages linkable over a shorter time, at the cost of the
/// server recomputing every device's pseudonyms more often.
pub const ALIAS_EPOCH: Duration = Duration::from_secs(600);

/// The most epochs the server accepts on either side of its own (80 minutes).
const EPOCHS_EITHER_SIDE: u64 = 8;

/// The epoch that `now` falls in.
pub(super) fn epoch_of(now: Millis) -> u64 {
    let len = u64::try_from(ALIAS_EPOCH.as_millis()).unwrap_or(u64::MAX);
    now.0 / len
}

/// A device's pseudonym for `epoch`: HMAC-SHA-256 under a key expanded from k_d, over the
/// epoch, truncated to 16 bytes. Without k_d, two epochs' pseudonyms look unrelated.
pub(super) fn alias(ops: &mut OpCounts, device_key: &DeviceKey, epoch: u64) -> AliasBytes {
    ops.hash += 1;
    let k = expand(device_key.as_bytes(), b"alias", 32);
    let tag = kdf::hmac_sha256(&k, &[&labelled(b"alias", &[&epoch.to_be_bytes()])]);
    let mut out = [0; 16];
    out.copy_from_slice(&tag[..16]);
    out
}

/// The server's map from pseudonym to device, for the epochs that any device clock within
/// `reach` of the server's may be in (the clock skew, or a retransmission's lifetime when
/// longer). Derived from the registrations (which are durable), so a restarted
/// server has it at once and nothing more is stored.
#[derive(Debug)]
pub(super) struct AliasTable {
    reach: Duration,
    names: BTreeMap<AliasBytes, String>,
    /// The first and last epoch `names` covers.
    window: Option<(u64, u64)>,
}

impl AliasTable {
    pub(super) fn new(reach: Duration) -> Self {
        Self {
            reach,
            names: BTreeMap::new(),
            window: None,
        }
    }

    /// Recomputes every device's pseudonyms when the window of epochs has moved at `now`.
    pub(super) fn refresh<'a>(
        &mut self,
        ops: &mut OpCounts,
        now: Millis,
        devices: impl Iterator<Item = (&'a String, &'a DeviceKey)>,
    ) {
        let reach = u64::try_from(self.reach.as_millis()).unwrap_or(u64::MAX);
        let current = epoch_of(now);
        // Bounded whatever the configured skew, so that the table is.
        let window = (
            epoch_of(Millis(now.0.saturating_sub(reach)))
                .max(current.saturating_sub(EPOCHS_EITHER_SIDE)),
            epoch_of(Millis(now.0.saturating_add(reach)))
                .min(current.saturating_add(EPOCHS_EITHER_SIDE)),
        );
        if self.window == Some(window) {
            return;
        }
        self.names.clear();
        self.window = Some(window);
        for (name, key) in devices {
            self.insert(ops, name, key);
        }
    }

    /// Adds a device registered just now.
    pub(super) fn insert(&mut self, ops: &mut OpCounts, name: &str, key: &DeviceKey) {
        if let Some((first, last)) = self.window {
            for epoch in first..=last {
                self.names.insert(alias(ops, key, epoch), name.to_owned());
            }
        }
    }

    /// The registered device a pseudonym names in the current window.
    pub(super) fn resolve(&self, a: &AliasBytes) -> Result<String, Error> {
        self.names
            .get(a)
            .cloned()
            .ok_or_else(|| Error::UnknownDevice(unresolved(a)))
    }
}

/// How a pseudonym that names nobody is reported (never sent).
pub(super) fn unresolved(a: &AliasBytes) -> String {
    format!("pseudonym {}", cbor::hex(a))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_table_follows_the_clock_window_and_forgets_old_epochs() {
        let key = DeviceKey::new(&[7; 32]).unwrap();
        let mut ops = OpCounts::default();
        let mut table = AliasTable::new(Duration::from_secs(60));
        let name = String::from("d");
        let start = Millis(1_700_000_000_000);
        table.refresh(&mut ops, start, [(&name, &key)].into_iter());
        let now = alias(&mut ops, &key, epoch_of(start));
        assert_eq!(table.resolve(&now).unwrap(), "d");
        let later = start.after(ALIAS_EPOCH * 3);
        table.refresh(&mut ops, later, [(&name, &key)].into_iter());
        assert!(matches!(table.resolve(&now), Err(Error::UnknownDevice(_))));
        assert_eq!(
            table
                .resolve(&alias(&mut ops, &key, epoch_of(later)))
                .unwrap(),
            "d"
        );
        assert_ne!(now, alias(&mut ops, &key, epoch_of(later)));
    }
}
