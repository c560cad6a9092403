//! The relay message carried by CoAP (paper 004 §III-E, RFC 7252), on `coap-lite`.
//!
//! "The protocol uses the CoAP token, that correlates requests and responses to hold the 32 bit
//! number used in either individual encryption or stream encryption … Data sink and source URL
//! are placed into CoAP options for holding the Request URI for the first and additional option
//! (created for this protocol) to identify the source's callback URL. When delivered to a secure
//! proxy, protected messages use the Proxy-Uri to identify the proxy as a forward proxy."
//!
//! | header field                 | CoAP                                                   |
//! |------------------------------|--------------------------------------------------------|
//! | message id                   | token, 4 bytes big endian                              |
//! | flags, stream id, key index  | option 65004 Relay-Stream, 5 bytes                     |
//! | source URL                   | option 65000 Relay-Source (absent when empty)          |
//! | sink URL                     | Proxy-Uri (forward-proxy form), else Uri-Path target   |
//! | body                         | payload                                                |
//!
//! Both private options are from the experimental range (RFC 7252 §12.2, 65000–65535) and are
//! elective and safe-to-forward (§5.4.6: bits 0 and 1 clear), so a CoAP proxy passes them on.
//! The CoAP message id is the transport's own (retransmission, deduplication) and unrelated to
//! the relay message id.

pub use coap_lite;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};

use super::header::{Flags, Header, MAX_URL_LEN, RelayMessage};
use crate::{Error, Result};

/// Option number of Relay-Source: the source's callback URL (UTF-8).
pub const OPTION_RELAY_SOURCE: u16 = 65000;
/// Option number of Relay-Stream: flags, stream id (BE), key index (BE).
pub const OPTION_RELAY_STREAM: u16 = 65004;

/// Length of the relay token: the 32-bit message id.
pub const TOKEN_LEN: usize = 4;

/// Where a relay request is addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// A resource on the server the packet is sent to: `storage/{id}` at the proxy, or the
    /// path of a sink URL. Segments separated by `/`, a leading `/` is ignored.
    Path(&'a str),
    /// The paper's forward-proxy form: the full sink URL in Proxy-Uri; the proxy finds the
    /// storage registered for the Relay-Source.
    ProxyUri(&'a str),
}

/// Maps a relay message onto a CoAP POST.
///
/// `coap_message_id` is the transport's message id; `confirmable` picks CON (reliable) or NON.
///
/// # Errors
/// [`Error::UrlTooLong`] for a source or Proxy-Uri over [`MAX_URL_LEN`] bytes,
/// [`Error::InvalidUrl`] for a target path that would not map one-to-one onto Uri-Path
/// options, or an empty Proxy-Uri.
pub fn to_request(
    msg: &RelayMessage,
    target: &Target<'_>,
    coap_message_id: u16,
    confirmable: bool,
) -> Result<Packet> {
    let mut packet = Packet::new();
    packet.header.set_type(if confirmable {
        MessageType::Confirmable
    } else {
        MessageType::NonConfirmable
    });
    packet.header.code = MessageClass::Request(RequestType::Post);
    packet.header.message_id = coap_message_id;
    packet.set_token(msg.header.message_id.to_be_bytes().to_vec());
    match target {
        Target::Path(path) => {
            let path = path.strip_prefix('/').unwrap_or(path);
            set_uri_path(&mut packet, path)?;
        }
        Target::ProxyUri(url) => {
            if url.is_empty() {
                return Err(Error::InvalidUrl("empty Proxy-Uri"));
            }
            if url.len() > MAX_URL_LEN {
                return Err(Error::UrlTooLong(url.len()));
            }
            packet.add_option(CoapOption::ProxyUri, url.as_bytes().to_vec());
        }
    }
    if !msg.header.source.is_empty() {
        if msg.header.source.len() > MAX_URL_LEN {
            return Err(Error::UrlTooLong(msg.header.source.len()));
        }
        packet.add_option(
            CoapOption::Unknown(OPTION_RELAY_SOURCE),
            msg.header.source.as_bytes().to_vec(),
        );
    }
    packet.add_option(
        CoapOption::Unknown(OPTION_RELAY_STREAM),
        stream_option(&msg.header).to_vec(),
    );
    packet.payload.clone_from(&msg.body);
    Ok(packet)
}

/// Sets the Uri-Path options of `packet` from a `/`-separated path (replacing any present).
///
/// # Errors
/// [`Error::InvalidUrl`] when the path has empty segments, a query, a fragment, escapes or
/// blanks — anything that would not come back unchanged from [`uri_path`].
pub fn set_uri_path(packet: &mut Packet, path: &str) -> Result<()> {
    super::check_path(path)?;
    packet.clear_option(CoapOption::UriPath);
    if !path.is_empty() {
        for segment in path.split('/') {
            packet.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
        }
    }
    Ok(())
}

/// The relay message a CoAP POST carries.
///
/// The sink is the Proxy-Uri when present (forward-proxy form), else empty: a request to a
/// resource path is already at its destination.
///
/// # Errors
/// [`Error::UnexpectedCoapCode`] for anything but POST, [`Error::WrongLength`] for a token
/// that is not 4 bytes, [`Error::MissingCoapOption`] without Relay-Stream,
/// [`Error::InvalidCoapOption`] for a repeated or mis-sized relay option or Proxy-Uri,
/// [`Error::ReservedFlags`] and [`Error::InvalidText`] as the binary header does.
pub fn from_request(packet: &Packet) -> Result<RelayMessage> {
    if packet.header.code != MessageClass::Request(RequestType::Post) {
        return Err(Error::UnexpectedCoapCode(packet.header.code.into()));
    }
    let token: [u8; TOKEN_LEN] = packet
        .get_token()
        .try_into()
        .map_err(|_| Error::WrongLength {
            found: packet.get_token().len(),
            expected: TOKEN_LEN,
        })?;
    let stream = single_option(packet, OPTION_RELAY_STREAM)?
        .ok_or(Error::MissingCoapOption(OPTION_RELAY_STREAM))?;
    let [flags, s0, s1, k0, k1]: [u8; 5] = stream
        .as_slice()
        .try_into()
        .map_err(|_| Error::InvalidCoapOption(OPTION_RELAY_STREAM))?;
    let source = url_option(packet, OPTION_RELAY_SOURCE)?;
    let sink = url_option(packet, CoapOption::ProxyUri.into())?;
    Ok(RelayMessage {
        header: Header {
            flags: Flags::from_bits(flags)?,
            message_id: u32::from_be_bytes(token),
            stream_id: u16::from_be_bytes([s0, s1]),
            key_index: u16::from_be_bytes([k0, k1]),
            source,
            sink,
        },
        body: packet.payload.clone(),
    })
}

/// The empty ACK (RFC 7252 §4.2) that confirms `req` before a separate response, or that
/// acknowledges a CON notification.
///
/// The code is set explicitly to Empty (0.00): a fresh `coap_lite::Packet` is a GET.
#[must_use]
pub fn empty_ack(req: &Packet) -> Packet {
    let mut ack = Packet::new();
    ack.header.set_type(MessageType::Acknowledgement);
    ack.header.code = MessageClass::Empty;
    ack.header.message_id = req.header.message_id;
    ack
}

/// The Reset (RFC 7252 §4.2) that rejects `msg`: an empty message, same message id. Sent for a
/// CON the endpoint cannot process or a notification nobody observes any more (RFC 7641 §3.6).
#[must_use]
pub fn reset(msg: &Packet) -> Packet {
    let mut rst = Packet::new();
    rst.header.set_type(MessageType::Reset);
    rst.header.code = MessageClass::Empty;
    rst.header.message_id = msg.header.message_id;
    rst
}

/// The request's Uri-Path segments joined by `/`, without a leading `/` (`storage/7`).
///
/// Segments that are not UTF-8 are rendered lossily: such a path matches no resource anyway.
#[must_use]
pub fn uri_path(packet: &Packet) -> String {
    option_texts(packet, CoapOption::UriPath).join("/")
}

/// The request's Uri-Query options, one string each (`window=60`).
#[must_use]
pub fn uri_query(packet: &Packet) -> Vec<String> {
    option_texts(packet, CoapOption::UriQuery)
}

/// The Relay-Stream option value of a header.
fn stream_option(h: &Header) -> [u8; 5] {
    let [s0, s1] = h.stream_id.to_be_bytes();
    let [k0, k1] = h.key_index.to_be_bytes();
    [h.flags.bits(), s0, s1, k0, k1]
}

fn option_texts(packet: &Packet, option: CoapOption) -> Vec<String> {
    packet
        .get_option(option)
        .map(|values| {
            values
                .iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The one value of a non-repeatable option, if present.
fn single_option(packet: &Packet, number: u16) -> Result<Option<&Vec<u8>>> {
    match packet.get_option(CoapOption::from(number)) {
        None => Ok(None),
        Some(list) => {
            let mut it = list.iter();
            let first = it.next();
            if it.next().is_some() {
                return Err(Error::InvalidCoapOption(number));
            }
            Ok(first)
        }
    }
}

/// A URL option: absent means empty; over [`MAX_URL_LEN`] or repeated is refused.
fn url_option(packet: &Packet, number: u16) -> Result<String> {
    match single_option(packet, number)? {
        None => Ok(String::new()),
        Some(v) if v.len() > MAX_URL_LEN => Err(Error::InvalidCoapOption(number)),
        Some(v) => core::str::from_utf8(v)
            .map(str::to_owned)
            .map_err(|_| Error::InvalidText),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::LinkedList;

    use super::*;

    fn message() -> RelayMessage {
        RelayMessage {
            header: Header {
                flags: Flags::STREAM,
                message_id: 0xdead_beef,
                stream_id: 0x0102,
                key_index: 0x0304,
                source: "coap://[::1]/s".into(),
                sink: String::new(),
            },
            body: vec![0xaa, 0xbb],
        }
    }

    #[test]
    fn encoded_request_bytes() {
        let packet =
            to_request(&message(), &Target::Path("storage/7"), 0x1234, true).expect("valid target");
        let bytes = packet.to_bytes().expect("small packet");
        let mut expected = vec![
            0x44, 0x02, 0x12, 0x34, // ver 1, CON, TKL 4; POST; message id
            0xde, 0xad, 0xbe, 0xef, // token = relay message id
            0xb7, // Uri-Path (11), 7 bytes
        ];
        expected.extend_from_slice(b"storage");
        expected.extend_from_slice(&[0x01, b'7']); // Uri-Path, 1 byte
        // Relay-Source 65000: delta 64989 = 269 + 0xfcd0, length 14 = 13 + 1.
        expected.extend_from_slice(&[0xed, 0xfc, 0xd0, 0x01]);
        expected.extend_from_slice(b"coap://[::1]/s");
        // Relay-Stream 65004: delta 4, length 5.
        expected.extend_from_slice(&[0x45, 0x01, 0x01, 0x02, 0x03, 0x04]);
        expected.extend_from_slice(&[0xff, 0xaa, 0xbb]);
        assert_eq!(bytes, expected);

        let back = Packet::from_bytes(&bytes).expect("own encoding");
        assert_eq!(uri_path(&back), "storage/7");
        assert_eq!(from_request(&back), Ok(message()));
    }

    #[test]
    fn proxy_uri_form_carries_the_sink() {
        let msg = message();
        let sink = "coap://192.0.2.9:5683/sink";
        let packet = to_request(&msg, &Target::ProxyUri(sink), 1, false).expect("valid");
        assert_eq!(packet.header.get_type(), MessageType::NonConfirmable);
        assert_eq!(uri_path(&packet), "");
        let bytes = packet.to_bytes().expect("small");
        let back = from_request(&Packet::from_bytes(&bytes).expect("own encoding"))
            .expect("relay request");
        assert_eq!(back.header.sink, sink);
        assert_eq!(back.header.aad(), msg.header.aad());
        assert_eq!(back.body, msg.body);
    }

    #[test]
    fn empty_source_is_absent_and_round_trips() {
        let mut msg = message();
        msg.header.source.clear();
        msg.header.flags = Flags::empty();
        let packet = to_request(&msg, &Target::Path("/s"), 9, true).expect("valid");
        assert!(
            packet
                .get_option(CoapOption::Unknown(OPTION_RELAY_SOURCE))
                .is_none()
        );
        assert_eq!(from_request(&packet), Ok(msg));
    }

    #[test]
    fn refusals_are_typed() {
        let good = to_request(&message(), &Target::Path("storage/7"), 1, true).expect("valid");

        let mut get = good.clone();
        get.header.code = MessageClass::Request(RequestType::Get);
        assert_eq!(from_request(&get), Err(Error::UnexpectedCoapCode(0x01)));

        let mut token = good.clone();
        token.set_token(vec![1, 2, 3]);
        assert_eq!(
            from_request(&token),
            Err(Error::WrongLength {
                found: 3,
                expected: 4
            })
        );

        let mut missing = good.clone();
        missing.clear_option(CoapOption::Unknown(OPTION_RELAY_STREAM));
        assert_eq!(
            from_request(&missing),
            Err(Error::MissingCoapOption(OPTION_RELAY_STREAM))
        );

        let mut short = good.clone();
        short.set_option(
            CoapOption::Unknown(OPTION_RELAY_STREAM),
            LinkedList::from([vec![1, 2, 3, 4]]),
        );
        assert_eq!(
            from_request(&short),
            Err(Error::InvalidCoapOption(OPTION_RELAY_STREAM))
        );

        let mut flags = good.clone();
        flags.set_option(
            CoapOption::Unknown(OPTION_RELAY_STREAM),
            LinkedList::from([vec![0x10, 0, 0, 0, 0]]),
        );
        assert_eq!(from_request(&flags), Err(Error::ReservedFlags(0x10)));

        let mut twice = good.clone();
        twice.add_option(CoapOption::Unknown(OPTION_RELAY_SOURCE), b"x".to_vec());
        assert_eq!(
            from_request(&twice),
            Err(Error::InvalidCoapOption(OPTION_RELAY_SOURCE))
        );

        let mut utf8 = good;
        utf8.add_option(CoapOption::ProxyUri, vec![0xff]);
        assert_eq!(from_request(&utf8), Err(Error::InvalidText));
    }

    #[test]
    fn bad_targets_are_refused() {
        let msg = message();
        assert!(matches!(
            to_request(&msg, &Target::Path("a//b"), 1, true),
            Err(Error::InvalidUrl(_))
        ));
        assert!(matches!(
            to_request(&msg, &Target::ProxyUri(""), 1, true),
            Err(Error::InvalidUrl(_))
        ));
        let long = "u".repeat(MAX_URL_LEN + 1);
        assert_eq!(
            to_request(&msg, &Target::ProxyUri(&long), 1, true),
            Err(Error::UrlTooLong(MAX_URL_LEN + 1))
        );
        let mut long_source = msg;
        long_source.header.source = long;
        assert_eq!(
            to_request(&long_source, &Target::Path("s"), 1, true),
            Err(Error::UrlTooLong(MAX_URL_LEN + 1))
        );
    }

    #[test]
    fn empty_ack_and_reset_are_empty_messages() {
        let req = to_request(&message(), &Target::Path("s"), 0xbeef, true).expect("valid");
        let ack = empty_ack(&req);
        assert_eq!(ack.to_bytes().expect("tiny"), [0x60, 0x00, 0xbe, 0xef]);
        let rst = reset(&req);
        assert_eq!(rst.to_bytes().expect("tiny"), [0x70, 0x00, 0xbe, 0xef]);
    }

    #[test]
    fn query_options() {
        let mut p = Packet::new();
        p.add_option(CoapOption::UriPath, b"load".to_vec());
        p.add_option(CoapOption::UriQuery, b"window=10".to_vec());
        p.add_option(CoapOption::UriQuery, b"x".to_vec());
        assert_eq!(uri_path(&p), "load");
        assert_eq!(uri_query(&p), ["window=10", "x"]);
        assert!(uri_query(&Packet::new()).is_empty());
        let mut q = Packet::new();
        assert!(set_uri_path(&mut q, "a/b").is_ok());
        assert_eq!(uri_path(&q), "a/b");
        assert!(set_uri_path(&mut q, "").is_ok());
        assert_eq!(uri_path(&q), "");
    }
}
