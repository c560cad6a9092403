//! Representations: the RFC 6690 link format of `/.well-known/core`, and the API bodies in CBOR
//! (Content-Format 60, the contract's) or JSON (50, offered for people and shell tools such as
//! `coap-client -A 50`).

use m2msec_wire::relay::api::{Body, ForwardMonitor, Info, Load, StorageMonitor, Throughput, path};
use serde_json::json;

use super::state::{Core, MonitorId};

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

/// One link: target path (without the leading `/`), resource type, observable.
struct Link {
    href: String,
    rt: &'static str,
    obs: bool,
}

impl Link {
    fn new(href: String, rt: &'static str, obs: bool) -> Self {
        Self { href, rt, obs }
    }

    fn render(&self) -> String {
        let mut s = format!("</{}>;rt=\"{}\";ct=60", self.href, self.rt);
        if self.obs {
            s.push_str(";obs");
        }
        s
    }

    /// RFC 6690 §4.1 filtering: `href=`, `rt=` or `ct=`, a trailing `*` matching a prefix;
    /// an unknown attribute matches nothing, no query matches everything.
    fn matches(&self, query: &[String]) -> bool {
        let Some(q) = query.first() else {
            return true;
        };
        let Some((name, value)) = q.split_once('=') else {
            return false;
        };
        let href = format!("/{}", self.href);
        let candidate = match name {
            "href" => href.as_str(),
            "rt" => self.rt,
            "ct" => "60",
            _ => return false,
        };
        match value.strip_suffix('*') {
            Some(prefix) => candidate.starts_with(prefix),
            None => candidate == value,
        }
    }
}

/// `/.well-known/core`: every resource, those of each storage and forward included.
pub(crate) fn links(core: &Core, query: &[String]) -> String {
    let mut all = vec![
        Link::new(path::INFO.into(), rt::INFO, false),
        Link::new(path::LOAD.into(), rt::LOAD, false),
        Link::new(path::THROUGHPUT.into(), rt::THROUGHPUT, false),
        Link::new(path::STORE.into(), rt::STORE, false),
        Link::new(path::FORWARD.into(), rt::FORWARD, false),
    ];
    for id in core.storages.keys() {
        all.push(Link::new(path::storage(*id), rt::STORAGE, false));
        all.push(Link::new(path::storage_monitor(*id), rt::MONITOR, true));
    }
    for id in core.forwards.keys() {
        all.push(Link::new(path::forward_monitor(*id), rt::MONITOR, true));
        all.push(Link::new(path::forward_control(*id), rt::CONTROL, false));
    }
    all.iter()
        .filter(|l| l.matches(query))
        .map(Link::render)
        .collect::<Vec<_>>()
        .join(",")
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
