//! Representations: the RFC 6690 link format of `/.well-known/core`, and the API bodies in CBOR
//! (Content-Format 60, the contract's) or JSON (50, offered for people and shell tools such as
//! `coap-client -A 50`).

use m2msec_coap::link_format::{self, Link};
use m2msec_wire::relay::api::{Body, ForwardMonitor, Info, Load, StorageMonitor, Throughput, path};
use serde_json::json;

use super::state::{Core, MonitorId};

/// Content-Format of every resource's default representation: CBOR (RFC 8949).
const CBOR: u16 = 60;

/// Resource type of each kind of resource (RFC 6690 `rt`).
pub(crate) mod rt {
    pub(crate) const INFO: &str = "m2msec.relay.info";
    pub(crate) const LOAD: &str = "m2msec.relay.load";
    pub(crate) const THROUGHPUT: &str = "m2msec.relay.throughput";
    pub(crate) const STORE: &str = "m2msec.relay.store";
    pub(crate) const STORAGE: &str = "m2msec.relay.storage";
    pub(crate) const MONITOR: &str = "m2msec.relay.monitor";
    pub(crate) const FORWARD: &str = "m2msec.relay.forward";
    pub(crate) const CONTROL: &str = "m2msec.relay.control";
}

/// `/.well-known/core`: every resource, those of each storage and forward included, filtered
/// by `query` (RFC 6690 §4.1).
pub(crate) fn links(core: &Core, query: &[String]) -> String {
    let mut all = vec![
        Link::new(path::INFO, rt::INFO, CBOR),
        Link::new(path::LOAD, rt::LOAD, CBOR),
        Link::new(path::THROUGHPUT, rt::THROUGHPUT, CBOR),
        Link::new(path::STORE, rt::STORE, CBOR),
        Link::new(path::FORWARD, rt::FORWARD, CBOR),
    ];
    for id in core.storages.keys() {
        all.push(Link::new(path::storage(*id), rt::STORAGE, CBOR));
        all.push(Link::new(path::storage_monitor(*id), rt::MONITOR, CBOR).observable());
    }
    for id in core.forwards.keys() {
        all.push(Link::new(path::forward_monitor(*id), rt::MONITOR, CBOR).observable());
        all.push(Link::new(path::forward_control(*id), rt::CONTROL, CBOR));
    }
    link_format::encode(&all, query)
}

/// A representation to send, rendered per observer (CBOR or JSON).
#[derive(Clone, Debug)]
pub(crate) enum Repr {
    Info(Info),
    Load(Load),
    Throughput(Throughput),
    Storage(StorageMonitor),
    Forward(ForwardMonitor),
}

impl Repr {
    /// The current representation of a monitor, `None` when its storage or forward is gone.
    pub(crate) fn monitor(core: &Core, monitor: MonitorId) -> Option<Self> {
        match monitor {
            MonitorId::Storage(id) => core.storage_monitor(id).map(Self::Storage),
            MonitorId::Forward(id) => core.forward_monitor(id).map(Self::Forward),
        }
    }

    pub(crate) fn render(&self, json: bool) -> Vec<u8> {
        if !json {
            return match self {
                Self::Info(b) => b.to_bytes(),
                Self::Load(b) => b.to_bytes(),
                Self::Throughput(b) => b.to_bytes(),
                Self::Storage(b) => b.to_bytes(),
                Self::Forward(b) => b.to_bytes(),
            };
        }
        let value = match self {
            Self::Info(b) => json!({
                "capacity": b.capacity, "free": b.free, "storages": b.storages, "forwards": b.forwards,
            }),
            Self::Load(b) => json!({
                "window_s": b.window_s, "messages_in": b.messages_in, "bytes_in": b.bytes_in,
                "messages_out": b.messages_out, "bytes_out": b.bytes_out,
                "rejected_full": b.rejected_full,
            }),
            Self::Throughput(b) => json!({
                "window_s": b.window_s, "in_bps": b.in_bps, "out_bps": b.out_bps,
            }),
            Self::Storage(b) => json!({
                "storage_id": b.storage_id, "stored_messages": b.stored_messages,
                "stored_bytes": b.stored_bytes, "received": b.received, "duplicates": b.duplicates,
                "rejected_full": b.rejected_full, "last_seq": b.last_seq,
            }),
            Self::Forward(b) => json!({
                "forward_id": b.forward_id, "storage_id": b.storage_id, "paused": b.paused,
                "sinks": b.sinks.iter().map(|s| json!({
                    "url": s.url, "delivered": s.delivered, "reencrypted": s.reencrypted,
                    "skipped": s.skipped, "pending": s.pending,
                })).collect::<Vec<_>>(),
            }),
        };
        value.to_string().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_format_and_filters() {
        let core = Core::new(1, 60, 0);
        let all = links(&core, &[]);
        assert!(
            all.starts_with("</info>;rt=\"m2msec.relay.info\";ct=60,"),
            "{all}"
        );
        assert!(
            all.contains("</store>") && all.contains("</forward>"),
            "{all}"
        );
        assert_eq!(
            links(&core, &["rt=m2msec.relay.load".into()]),
            "</load>;rt=\"m2msec.relay.load\";ct=60"
        );
        assert_eq!(
            links(&core, &["href=/th*".into()]),
            "</throughput>;rt=\"m2msec.relay.throughput\";ct=60"
        );
        assert_eq!(links(&core, &["if=x".into()]), "");
    }

    #[test]
    fn json_bodies() {
        let r = Repr::Info(Info {
            capacity: 10,
            free: 4,
            storages: 1,
            forwards: 0,
        });
        let v: serde_json::Value = serde_json::from_slice(&r.render(true)).unwrap_or_default();
        assert_eq!(v["free"], 4);
        assert_eq!(
            Info::from_bytes(&r.render(false)).ok().map(|i| i.capacity),
            Some(10)
        );
    }
}
