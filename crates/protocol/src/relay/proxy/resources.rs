//! Representations: the resources `/.well-known/core` lists (RFC 6690; the shell encodes the
//! link format), and the API bodies in CBOR (Content-Format 60, the contract's) or JSON (50,
//! offered for people and shell tools such as `coap-client -A 50`).

use m2msec_wire::relay::api::{
    Body, CONTENT_FORMAT_CBOR, ForwardMonitor, Info, Load, StorageMonitor, Throughput, path,
};
use serde_json::json;

use super::state::{Core, Handles, MonitorId};

/// Content-Format `application/json`, offered besides CBOR to people and shell tools.
pub const CONTENT_FORMAT_JSON: u16 = 50;

/// Resource type of each kind of resource (RFC 6690 `rt`).
pub mod rt {
    /// `info`.
    pub const INFO: &str = "m2msec.relay.info";
    /// `load`.
    pub const LOAD: &str = "m2msec.relay.load";
    /// `throughput`.
    pub const THROUGHPUT: &str = "m2msec.relay.throughput";
    /// `store`.
    pub const STORE: &str = "m2msec.relay.store";
    /// `storage/{id}`.
    pub const STORAGE: &str = "m2msec.relay.storage";
    /// `storage/{id}/monitor`, `forward/{id}/monitor`.
    pub const MONITOR: &str = "m2msec.relay.monitor";
    /// `forward`.
    pub const FORWARD: &str = "m2msec.relay.forward";
    /// `forward/{id}/control`.
    pub const CONTROL: &str = "m2msec.relay.control";
}

/// One resource of `/.well-known/core`; every one is offered in CBOR (`ct=60`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// Its path, without the leading `/`.
    pub target: String,
    /// Its resource type (one of [`rt`]).
    pub resource_type: &'static str,
    /// Observable (RFC 7641 §6 `obs`).
    pub observable: bool,
    /// Its Content-Format.
    pub content_format: u16,
}

impl Resource {
    fn new(target: impl Into<String>, resource_type: &'static str, observable: bool) -> Self {
        Self {
            target: target.into(),
            resource_type,
            observable,
            content_format: CONTENT_FORMAT_CBOR,
        }
    }
}

/// Every resource, those of each storage and forward included, in the order `/.well-known/core`
/// lists them.
#[must_use]
pub fn resources<H: Handles>(core: &Core<H>) -> Vec<Resource> {
    let mut all = vec![
        Resource::new(path::INFO, rt::INFO, false),
        Resource::new(path::LOAD, rt::LOAD, false),
        Resource::new(path::THROUGHPUT, rt::THROUGHPUT, false),
        Resource::new(path::STORE, rt::STORE, false),
        Resource::new(path::FORWARD, rt::FORWARD, false),
    ];
    for id in core.storages.keys() {
        all.push(Resource::new(path::storage(*id), rt::STORAGE, false));
        all.push(Resource::new(path::storage_monitor(*id), rt::MONITOR, true));
    }
    for id in core.forwards.keys() {
        all.push(Resource::new(path::forward_monitor(*id), rt::MONITOR, true));
        all.push(Resource::new(
            path::forward_control(*id),
            rt::CONTROL,
            false,
        ));
    }
    all
}

/// A representation to send, rendered per observer (CBOR or JSON).
#[derive(Clone, Debug)]
pub enum Repr {
    /// `info`.
    Info(Info),
    /// `load`.
    Load(Load),
    /// `throughput`.
    Throughput(Throughput),
    /// `storage/{id}/monitor`.
    Storage(StorageMonitor),
    /// `forward/{id}/monitor`.
    Forward(ForwardMonitor),
}

impl Repr {
    /// The current representation of a monitor, `None` when its storage or forward is gone.
    #[must_use]
    pub fn monitor<H: Handles>(core: &Core<H>, monitor: MonitorId) -> Option<Self> {
        match monitor {
            MonitorId::Storage(id) => core.storage_monitor(id).map(Self::Storage),
            MonitorId::Forward(id) => core.forward_monitor(id).map(Self::Forward),
        }
    }

    /// The body in Content-Format `format`: JSON for [`CONTENT_FORMAT_JSON`], CBOR otherwise.
    #[must_use]
    pub fn render(&self, format: u16) -> Vec<u8> {
        if format != CONTENT_FORMAT_JSON {
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
    fn every_resource_is_listed() {
        let core: Core = Core::new(1, 60, 0);
        let all = resources(&core);
        let targets: Vec<&str> = all.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(
            targets,
            ["info", "load", "throughput", "store", "forward"],
            "{all:?}"
        );
        assert_eq!(all[0].resource_type, rt::INFO);
        assert!(all.iter().all(|r| r.content_format == 60 && !r.observable));
    }

    #[test]
    fn json_bodies() {
        let r = Repr::Info(Info {
            capacity: 10,
            free: 4,
            storages: 1,
            forwards: 0,
        });
        let v: serde_json::Value =
            serde_json::from_slice(&r.render(CONTENT_FORMAT_JSON)).unwrap_or_default();
        assert_eq!(v["free"], 4);
        assert_eq!(
            Info::from_bytes(&r.render(CONTENT_FORMAT_CBOR))
                .ok()
                .map(|i| i.capacity),
            Some(10)
        );
    }
}
