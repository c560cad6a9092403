//! What goes in and out of the [`Proxy`](super::Proxy): API requests as the shell decoded them,
//! responses before they are addressed, and what the shell must do for the engine (commit, bind
//! a socket, start or stop a pump).

use core::net::SocketAddr;

use m2msec_wire::relay::RelayMessage;
use m2msec_wire::relay::api::EpochRekey;
use m2msec_wire::relay::coap::coap_lite::{CoapOption, Packet, RequestType, ResponseType};
use m2msec_wire::relay::coap::{from_request, uri_path, uri_query};

use super::retention::Op;
use super::state::Handles;

/// The limits and answers the engine applies, from the shell's config (node's `ProxyConfig`,
/// where each is documented).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Bytes the proxy may hold over all storages (and the default of a storage).
    pub capacity_bytes: u64,
    /// The largest message taken.
    pub max_message_bytes: u32,
    /// `load`/`throughput` window without `?window=`.
    pub load_window_s: u32,
    /// The longest window.
    pub max_load_window_s: u32,
    /// Max-Age of a 5.03 for lack of space.
    pub max_age_when_full_s: u32,
    /// Max-Age of a 5.03 for lack of time (ingest queue, control calls).
    pub max_age_when_busy_s: u32,
    /// Storages, at most.
    pub max_storages: u32,
    /// Forwards, at most.
    pub max_forwards: u32,
    /// Sinks of one forward, at most.
    pub max_sinks_per_forward: u32,
    /// How far an owner's signed timestamp may be from the proxy's clock.
    pub signed_max_skew_s: u32,
    /// Control calls (store, forward, control, delete) waiting or under way, at most.
    pub max_control_calls: usize,
}

impl Limits {
    /// Checks the values that must be non-zero or consistent; the message names the field
    /// as the shell's config does.
    ///
    /// # Errors
    ///
    /// What is wrong, naming the field.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("capacity_bytes", self.capacity_bytes),
            ("max_message_bytes", u64::from(self.max_message_bytes)),
            ("load_window_s", u64::from(self.load_window_s)),
            ("max_load_window_s", u64::from(self.max_load_window_s)),
            ("max_storages", u64::from(self.max_storages)),
            ("max_forwards", u64::from(self.max_forwards)),
            (
                "max_sinks_per_forward",
                u64::from(self.max_sinks_per_forward),
            ),
            ("signed_max_skew_s", u64::from(self.signed_max_skew_s)),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{field} must be at least 1"));
        }
        if self.load_window_s > self.max_load_window_s {
            return Err("load_window_s must not exceed max_load_window_s".into());
        }
        if self.max_load_window_s > 86_400 {
            return Err("max_load_window_s must not exceed 86400 (one day)".into());
        }
        if u64::from(self.max_message_bytes) > self.capacity_bytes {
            return Err("max_message_bytes must not exceed capacity_bytes".into());
        }
        Ok(())
    }
}

#[cfg(test)]
impl Limits {
    /// Small limits for the engine's tests.
    pub(crate) fn for_tests() -> Self {
        Self {
            capacity_bytes: 1 << 20,
            max_message_bytes: 4096,
            load_window_s: 60,
            max_load_window_s: 600,
            max_age_when_full_s: 7,
            max_age_when_busy_s: 2,
            max_storages: 4,
            max_forwards: 4,
            max_sinks_per_forward: 4,
            signed_max_skew_s: 30,
            max_control_calls: 8,
        }
    }
}

/// A request to the proxy's API, decoded by the shell from CoAP (RFC 7252).
#[derive(Clone, Debug)]
pub struct Request<R> {
    /// Who sent it.
    pub peer: SocketAddr,
    /// Its method.
    pub method: RequestType,
    /// Its Uri-Path, split at `/`, empty segments dropped.
    pub path: Vec<String>,
    /// Its Uri-Query options.
    pub query: Vec<String>,
    /// Its Accept option.
    pub accept: Option<u32>,
    /// Whether it carries Proxy-Uri (the forward-proxy form of a relay POST).
    pub proxy_uri: bool,
    /// Its payload (block-wise uploads reassembled).
    pub payload: Vec<u8>,
    /// For a POST, the relay message it carries in the CoAP mapping (wire's `from_request`), or
    /// why it carries none; `None` for other methods.
    pub message: Option<Result<RelayMessage, String>>,
    /// The shell's handle on where the answer goes, given back with a late answer.
    pub reply: R,
}

/// Options the proxy understands; an unknown critical (odd) option in a request is refused with
/// 4.02 (RFC 7252 §5.4.1).
const KNOWN_CRITICAL: [u16; 8] = [3, 7, 11, 15, 17, 23, 27, 35];

impl<R> Request<R> {
    /// The whole request `packet` (a Block1 upload reassembled) of `method` from `peer`;
    /// `accept` is its Accept option as the shell's CoAP layer reads it, `reply` where the
    /// answer goes.
    ///
    /// # Errors
    ///
    /// 4.02 Bad Option for an unknown critical option (RFC 7252 §5.4.1).
    pub fn from_packet(
        peer: SocketAddr,
        packet: &Packet,
        method: RequestType,
        accept: Option<u32>,
        reply: R,
    ) -> Result<Self, Response> {
        let critical = packet.options().find_map(|(n, v)| {
            (n % 2 == 1 && !KNOWN_CRITICAL.contains(n) && !v.is_empty()).then_some(*n)
        });
        if let Some(n) = critical {
            let diagnostic = format!("critical option {n} not supported");
            return Err(Response::error(ResponseType::BadOption, &diagnostic));
        }
        Ok(Self {
            peer,
            method,
            path: uri_path(packet)
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            query: uri_query(packet),
            accept,
            proxy_uri: packet.get_first_option(CoapOption::ProxyUri).is_some(),
            payload: packet.payload.clone(),
            message: (method == RequestType::Post)
                .then(|| from_request(packet).map_err(|e| e.to_string())),
            reply,
        })
    }
}

/// The value of an option of a [`Response`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptionValue {
    /// An unsigned integer (Content-Format, Max-Age, Size1, Observe).
    Uint(u32),
    /// Opaque or string (Location-Path).
    Bytes(Vec<u8>),
}

/// A response before it is addressed: the shell makes it a CoAP packet.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// Its code.
    pub code: ResponseType,
    /// Its payload: a representation, or a diagnostic (RFC 7252 §5.5.2).
    pub payload: Vec<u8>,
    /// Its options, in order.
    pub options: Vec<(CoapOption, OptionValue)>,
}

impl Response {
    /// A response with no payload.
    #[must_use]
    pub fn code(code: ResponseType) -> Self {
        Self {
            code,
            payload: Vec::new(),
            options: Vec::new(),
        }
    }

    /// An error response with a diagnostic payload (RFC 7252 §5.5.2), UTF-8.
    #[must_use]
    pub fn error(code: ResponseType, diagnostic: &str) -> Self {
        Self {
            payload: diagnostic.as_bytes().to_vec(),
            ..Self::code(code)
        }
    }

    /// A 2.05 Content with its Content-Format.
    #[must_use]
    pub fn content(payload: Vec<u8>, content_format: u16) -> Self {
        Self {
            payload,
            ..Self::code(ResponseType::Content)
        }
        .with_uint(CoapOption::ContentFormat, content_format.into())
    }

    /// 5.03 Service Unavailable with Max-Age: when to try again (RFC 7252 §5.9.3.4).
    #[must_use]
    pub fn unavailable(max_age_s: u32, diagnostic: &str) -> Self {
        Self::error(ResponseType::ServiceUnavailable, diagnostic)
            .with_uint(CoapOption::MaxAge, max_age_s)
    }

    /// 5.00: the store failed, nothing was written (the shell logs why).
    #[must_use]
    pub fn store_failed() -> Self {
        Self::error(ResponseType::InternalServerError, "store failed")
    }

    /// Adds an unsigned option.
    #[must_use]
    pub fn with_uint(mut self, option: CoapOption, value: u32) -> Self {
        self.options.push((option, OptionValue::Uint(value)));
        self
    }

    /// Adds an opaque or string option (repeatable: Location-Path).
    #[must_use]
    pub fn with(mut self, option: CoapOption, value: Vec<u8>) -> Self {
        self.options.push((option, OptionValue::Bytes(value)));
        self
    }

    /// The diagnostic or body, as text for logs.
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A control call waiting for the shell, named in [`Action`] and given back with the result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// What the routing of a request produced, at once.
#[derive(Debug)]
pub enum Handled {
    /// Send this answer.
    Respond(Response),
    /// A GET of a monitor: send `response` and register the observer if the request asks
    /// (RFC 7641 §3.1); `None`: the monitor does not exist (4.04, and any observation of it by
    /// this token ends).
    Monitor {
        /// The monitor's path, the observers' key.
        path: String,
        /// The representation, as asked for.
        response: Option<Response>,
    },
    /// `/.well-known/core`: these resources, filtered by `query` (RFC 6690 §4.1), in link format
    /// (Content-Format 40).
    Discovery {
        /// Every resource.
        resources: Vec<super::resources::Resource>,
        /// The request's query.
        query: Vec<String>,
    },
    /// A relay message admitted: write it with the next group commit, then acknowledge (2.04).
    Store(Admitted),
    /// A control call: its answer comes later, as [`Action::Respond`].
    Later,
}

/// A relay message admitted to its storage (its bytes reserved), on its way to the store.
#[derive(Debug)]
pub struct Admitted {
    /// The storage.
    pub storage: u32,
    /// Its dedup key (`retention::dedup_key`).
    pub key: [u8; 9],
    /// The message in binary-header form.
    pub value: Vec<u8>,
}

/// What the shell must do for a control call.
#[derive(Debug)]
pub enum Action<R> {
    /// Send this answer.
    Respond(R, Response),
    /// Apply these writes in one transaction, then report with `Proxy::on_committed`; the
    /// answer waits for it (acknowledged means committed).
    Commit {
        /// The call.
        ticket: Ticket,
        /// The writes.
        ops: Vec<Op>,
    },
    /// Bind a plain-UDP ingestion socket for a new storage, then report its port with
    /// `Proxy::on_udp_bound`; the shell keeps the socket until [`Event::StorageCreated`] names
    /// the ticket.
    BindUdp {
        /// The call.
        ticket: Ticket,
    },
}

/// What a sink's pump needs to start.
#[derive(Clone, Debug)]
pub struct PumpSpec {
    /// Its forward.
    pub forward_id: u32,
    /// The storage it reads.
    pub storage_id: u32,
    /// The sink's URL.
    pub url: String,
    /// The sink's grant.
    pub rekeys: Vec<EpochRekey>,
    /// `Forwarder::snapshot` of its sections, empty for none.
    pub snapshot: Vec<u8>,
    /// Messages per second, 0 = unlimited.
    pub rate: u32,
    /// The sink's generation this pump serves (see `SinkState::generation`).
    pub generation: u64,
}

/// What changed, for the shell to act on (tasks) and log.
#[derive(Debug)]
pub enum Event<H: Handles> {
    /// A storage was created (not at a restart): log it, and start the UDP ingestion on the
    /// socket bound for `ticket`, if any.
    StorageCreated {
        /// The call.
        ticket: Ticket,
        /// Its id.
        id: u32,
        /// Its source.
        source: String,
        /// Its capacity.
        capacity: u64,
        /// Its UDP port.
        udp_port: Option<u16>,
    },
    /// A storage and its forwards were removed (before the deletion is written, so that
    /// nothing more is stored or forwarded for them): stop their tasks.
    StorageRemoved {
        /// Its id.
        id: u32,
        /// The storage's.
        storage: H::Storage,
        /// Its forwards'.
        forwards: Vec<H::Forward>,
        /// Their sinks'.
        sinks: Vec<H::Sink>,
    },
    /// A forward was created (not at a restart).
    ForwardCreated {
        /// Its id.
        id: u32,
        /// Its storage.
        storage: u32,
        /// How many sinks.
        sinks: usize,
        /// Its rate.
        rate: u32,
        /// Where its sinks start.
        start: u64,
    },
    /// A forward's control changed it: wake its pumps.
    ForwardChanged {
        /// Its id.
        id: u32,
        /// What changed: "pause", "resume", "set sinks", "add sink", "remove sink".
        control: &'static str,
    },
    /// A request from `peer` was refused for bytes that do not decode: the shell logs it,
    /// rate-limited.
    Junk {
        /// Who sent it.
        peer: SocketAddr,
        /// What was wrong.
        detail: String,
    },
    /// A storage's deletion was committed.
    StorageDeleted {
        /// Its id.
        id: u32,
    },
    /// Start a sink's pump (and attach it to the sink if its generation is still current).
    StartPump(PumpSpec),
    /// A sink was removed: stop its pump.
    StopPump(H::Sink),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use super::*;

    fn get(path: &[&str]) -> Packet {
        let mut p = Packet::new();
        for segment in path {
            p.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
        }
        p.add_option(CoapOption::UriQuery, b"window=5".to_vec());
        p
    }

    #[test]
    fn limits_must_be_positive_and_consistent() {
        let limits = Limits::for_tests();
        assert_eq!(limits.check(), Ok(()));
        let wrong = |change: fn(&mut Limits)| {
            let mut l = limits.clone();
            change(&mut l);
            l.check().unwrap_err()
        };
        assert_eq!(
            wrong(|l| l.max_forwards = 0),
            "max_forwards must be at least 1"
        );
        assert!(wrong(|l| l.load_window_s = 601).starts_with("load_window_s"));
        assert!(wrong(|l| l.max_load_window_s = 86_401).starts_with("max_load_window_s"));
        assert!(wrong(|l| l.max_message_bytes = (1 << 20) + 1).starts_with("max_message_bytes"));
    }

    #[test]
    fn a_request_is_decoded_once_and_an_unknown_critical_option_refused() {
        let peer: SocketAddr = "192.0.2.1:5683".parse().unwrap();
        let p = get(&["storage", "", "7", "monitor"]);
        let r = Request::from_packet(peer, &p, RequestType::Get, Some(60), 9).unwrap();
        assert_eq!(r.path, ["storage", "7", "monitor"]);
        assert_eq!(r.query, ["window=5"]);
        assert_eq!((r.accept, r.proxy_uri, r.reply), (Some(60), false, 9));
        assert!(r.message.is_none(), "only a POST carries a relay message");
        let post = Request::from_packet(peer, &p, RequestType::Post, None, 9).unwrap();
        assert!(
            matches!(post.message, Some(Err(_))),
            "a POST without one says why"
        );
        // RFC 7252 §5.4.1: an odd option the proxy does not know is refused (If-None-Match,
        // 5, is critical and unknown here); an elective one (even) is ignored.
        let mut critical = get(&["info"]);
        critical.add_option(CoapOption::Unknown(5), vec![1]);
        let refused = Request::from_packet(peer, &critical, RequestType::Get, None, 9).unwrap_err();
        assert_eq!(refused.code, ResponseType::BadOption);
        assert_eq!(refused.text(), "critical option 5 not supported");
        let mut elective = get(&["info"]);
        elective.add_option(CoapOption::Unknown(2048), vec![1]);
        assert!(Request::from_packet(peer, &elective, RequestType::Get, None, 9).is_ok());
    }
}
