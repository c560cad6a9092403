//! The relay proxy's engine (`m2msec_protocol::relay::proxy`) in CoAP: its answers made packets,
//! its monitors' changes made notifications, its resources made `/.well-known/core`. The
//! engine decides in its own terms ([`Response`], [`Notification`], [`Resource`]); these are
//! the pure parts of the proxy's CoAP server that render them (the node's server still routes
//! requests and keeps the observers of its monitors). The one module of this crate that knows
//! an application: it follows the relay proxy engine's types.

use std::net::SocketAddr;

use m2msec_protocol::Millis;
use m2msec_protocol::relay::proxy::resources::Resource;
use m2msec_protocol::relay::proxy::{Notification, OptionValue, Response, notification_format};
use m2msec_wire::relay::coap::coap_lite::Packet;

use crate::link_format::{self, Link};
use crate::{DEFAULT_SZX, MessageIds, Observers, ReplyTo, response, set_uint_option};

/// What one UDP datagram can carry: the proxy's limit on what it encodes.
pub const MAX_DATAGRAM: usize = 65_507;

/// The packet answering `to` with `response` (piggy-backed in the ACK of a CON request, a NON
/// for a NON, Block1 echoed).
#[must_use]
pub fn to_packet(response: &Response, to: &ReplyTo, ids: &mut MessageIds) -> Packet {
    let mut p = self::response(&to.request, response.code, ids);
    for (option, value) in &response.options {
        match value {
            OptionValue::Uint(v) => set_uint_option(&mut p, *option, *v),
            OptionValue::Bytes(b) => p.add_option(*option, b.clone()),
        }
    }
    p.payload.clone_from(&response.payload);
    p
}

/// Encodes a packet of the proxy's. Responses are at most a block plus options, but an error
/// diagnostic or a notification may be longer than coap-lite's 1280-byte default: the limit is
/// lifted to what one UDP datagram can carry rather than fail.
#[must_use]
pub fn encode(packet: &Packet) -> Option<Vec<u8>> {
    packet.to_bytes_with_limit(MAX_DATAGRAM).ok()
}

/// The datagrams of one notification round at `now`: each of the engine's `changed` monitors
/// notified to its observers (in each one's format) or its observations ended, then the
/// retransmissions of confirmable notifications that are due.
pub fn notifications(
    observers: &mut Observers,
    changed: Vec<Notification>,
    now: Millis,
    ids: &mut MessageIds,
) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut out = Vec::new();
    for notification in changed {
        out.extend(match notification {
            Notification::Changed { path, repr } => {
                observers.notify(&path, now, ids, DEFAULT_SZX, |accept| {
                    let format = notification_format(accept);
                    (repr.render(format), Some(format))
                })
            }
            Notification::Ended {
                path,
                code,
                diagnostic,
            } => observers.end(&path, code, diagnostic, ids),
        });
    }
    out.extend(observers.poll(now));
    out.into_iter()
        .filter_map(|(peer, p)| Some((peer, encode(&p)?)))
        .collect()
}

/// `/.well-known/core` in the RFC 6690 link format, filtered by `query` (RFC 6690 §4.1).
#[must_use]
pub fn links(resources: &[Resource], query: &[String]) -> String {
    let all: Vec<Link> = resources
        .iter()
        .map(|r| {
            let link = Link::new(r.target.clone(), r.resource_type, r.content_format);
            if r.observable {
                link.observable()
            } else {
                link
            }
        })
        .collect();
    link_format::encode(&all, query)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use m2msec_protocol::relay::proxy::Core;
    use m2msec_protocol::relay::proxy::resources::resources;
    use m2msec_wire::relay::coap::coap_lite::{CoapOption, MessageType, ResponseType};

    use super::*;
    use crate::uint_option;

    #[test]
    fn responses_are_piggybacked_or_non() {
        let mut ids = MessageIds::starting_at(5);
        let mut req = Packet::new();
        req.header.set_type(MessageType::Confirmable);
        req.header.message_id = 77;
        req.set_token(vec![1, 2]);
        req.payload = vec![9; 10];
        let to = ReplyTo::new("127.0.0.1:9".parse().unwrap(), &req);
        let p = to_packet(&Response::code(ResponseType::Changed), &to, &mut ids);
        assert_eq!(p.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(p.header.message_id, 77);
        assert_eq!(p.get_token(), &[1, 2]);
        req.header.set_type(MessageType::NonConfirmable);
        let to = ReplyTo::new("127.0.0.1:9".parse().unwrap(), &req);
        let p = to_packet(&Response::unavailable(5, "full"), &to, &mut ids);
        assert_eq!(p.header.get_type(), MessageType::NonConfirmable);
        assert_eq!(p.header.message_id, 5);
        assert_eq!(uint_option(&p, CoapOption::MaxAge), Some(5));
        assert_eq!(p.payload, b"full");
    }

    #[test]
    fn link_format_and_filters() {
        let core: Core = Core::new(1, 60, 0);
        let all = links(&resources(&core), &[]);
        assert!(
            all.starts_with("</info>;rt=\"m2msec.relay.info\";ct=60,"),
            "{all}"
        );
        assert!(
            all.contains("</store>") && all.contains("</forward>"),
            "{all}"
        );
        assert_eq!(
            links(&resources(&core), &["rt=m2msec.relay.load".into()]),
            "</load>;rt=\"m2msec.relay.load\";ct=60"
        );
        assert_eq!(
            links(&resources(&core), &["href=/th*".into()]),
            "</throughput>;rt=\"m2msec.relay.throughput\";ct=60"
        );
        assert_eq!(links(&resources(&core), &["if=x".into()]), "");
    }

    /// A monitor's change reaches its observer in the format it asked for; a monitor gone ends
    /// the observation with the engine's code.
    #[test]
    fn notifications_in_each_observers_format_then_ended() {
        use m2msec_protocol::relay::proxy::resources::{CONTENT_FORMAT_JSON, Repr};
        use m2msec_wire::relay::api::Info;
        use m2msec_wire::relay::coap::coap_lite::RequestType;

        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut observers = Observers::new(4, std::time::Duration::from_secs(30));
        let mut ids = MessageIds::starting_at(1);
        let mut get = crate::new_request(RequestType::Get, "info", true).unwrap();
        get.set_token(vec![7]);
        set_uint_option(&mut get, CoapOption::Observe, 0);
        set_uint_option(&mut get, CoapOption::Accept, CONTENT_FORMAT_JSON.into());
        assert!(observers.on_get(peer, &get, "info", Millis(0)).is_some());
        let info = Info {
            capacity: 10,
            free: 4,
            storages: 1,
            forwards: 0,
        };
        let changed = vec![Notification::Changed {
            path: "info".into(),
            repr: Repr::Info(info),
        }];
        let out = notifications(&mut observers, changed, Millis(5), &mut ids);
        assert_eq!(out.len(), 1);
        let p = crate::parse_datagram(&out[0].1).unwrap();
        assert_eq!(out[0].0, peer);
        assert_eq!(crate::content_format(&p), Some(CONTENT_FORMAT_JSON));
        assert!(p.payload.starts_with(b"{"), "{:?}", p.payload);
        let ended = vec![Notification::Ended {
            path: "info".into(),
            code: ResponseType::NotFound,
            diagnostic: "gone",
        }];
        let out = notifications(&mut observers, ended, Millis(6), &mut ids);
        let p = crate::parse_datagram(&out[0].1).unwrap();
        assert_eq!(crate::response_code(&p), Some(ResponseType::NotFound));
        assert_eq!(observers.count("info"), 0);
    }
}
