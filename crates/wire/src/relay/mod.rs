//! The relay's byte formats (paper 004 §III-E): the binary UDP header, its CoAP mapping, the
//! CBOR bodies of the proxy API and of management messages.
//!
//! A relay message travels either as one UDP datagram with the binary [`header`], or as a CoAP
//! POST whose token and options carry the same header fields ([`coap`]). Where it goes is named
//! by a sink URL, `coap://ip[:port]/path` or `udp://ip:port` ([`parse_sink_url`]).

pub mod api;
pub mod coap;
pub mod header;
pub mod management;

use core::fmt;
use core::net::{IpAddr, SocketAddr};

pub use header::{Flags, HEADER_VERSION, Header, MAX_URL_LEN, RelayMessage};

use crate::{Error, Result};

/// The CoAP port (RFC 7252 §6.1) a `coap://` URL without a port addresses.
pub const DEFAULT_COAP_PORT: u16 = 5683;

/// A parsed sink URL: where the proxy (or a source) sends relay messages.
///
/// Only IP literals are accepted as hosts: the relay never resolves names, so what a URL
/// addresses cannot change behind the owner's back and parsing needs no I/O.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SinkUrl {
    /// Delivered as a CoAP POST to `addr` with the Uri-Path segments of `path`.
    Coap {
        /// The sink's CoAP endpoint.
        addr: SocketAddr,
        /// The resource path without its leading `/` (segments joined by `/`; may be empty).
        path: String,
    },
    /// Delivered as a binary-header datagram to this address, without any reply.
    Udp(SocketAddr),
}

impl SinkUrl {
    /// The UDP address the messages go to, whatever the transport above it.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        match self {
            Self::Coap { addr, .. } | Self::Udp(addr) => *addr,
        }
    }
}

impl fmt::Display for SinkUrl {
    /// The canonical form: explicit port, IPv6 in brackets (what [`parse_sink_url`] accepts).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Coap { addr, path } => write!(f, "coap://{addr}/{path}"),
            Self::Udp(addr) => write!(f, "udp://{addr}"),
        }
    }
}

/// Parses `coap://ip[:port][/path]` (port 5683 by default) or `udp://ip:port`.
///
/// IPv6 hosts go in brackets. The path must be plain segments: no query, fragment,
/// percent-encoding or empty segments, so that it maps one-to-one onto CoAP Uri-Path options.
///
/// # Errors
/// [`Error::UrlTooLong`] over [`MAX_URL_LEN`] bytes, [`Error::InvalidUrl`] naming what is wrong.
pub fn parse_sink_url(url: &str) -> Result<SinkUrl> {
    if url.len() > MAX_URL_LEN {
        return Err(Error::UrlTooLong(url.len()));
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or(Error::InvalidUrl("no scheme"))?;
    let (authority, path) = match rest.split_once('/') {
        Some((authority, path)) => (authority, Some(path)),
        None => (rest, None),
    };
    if scheme.eq_ignore_ascii_case("coap") {
        let addr = parse_authority(authority, Some(DEFAULT_COAP_PORT))?;
        let path = path.unwrap_or_default();
        check_path(path)?;
        Ok(SinkUrl::Coap {
            addr,
            path: path.to_owned(),
        })
    } else if scheme.eq_ignore_ascii_case("udp") {
        if path.is_some() {
            return Err(Error::InvalidUrl("a udp URL has no path"));
        }
        parse_authority(authority, None).map(SinkUrl::Udp)
    } else {
        Err(Error::InvalidUrl("scheme is neither coap nor udp"))
    }
}

/// `ip`, `ip:port`, `[ipv6]` or `[ipv6]:port`.
fn parse_authority(authority: &str, default_port: Option<u16>) -> Result<SocketAddr> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or(Error::InvalidUrl("unclosed IPv6 bracket"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or(Error::InvalidUrl("junk after IPv6 host"))?,
            ),
        };
        let ip: core::net::Ipv6Addr = host
            .parse()
            .map_err(|_| Error::InvalidUrl("host is not an IPv6 literal"))?;
        (IpAddr::V6(ip), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let ip: core::net::Ipv4Addr = host
            .parse()
            .map_err(|_| Error::InvalidUrl("host is not an IP literal"))?;
        (IpAddr::V4(ip), port)
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or(Error::InvalidUrl("port out of range"))?,
        Some(_) => return Err(Error::InvalidUrl("port is not a number")),
        None => default_port.ok_or(Error::InvalidUrl("port missing"))?,
    };
    Ok(SocketAddr::new(host, port))
}

/// A path maps onto Uri-Path options one segment each: refuse what would not round-trip.
pub(crate) fn check_path(path: &str) -> Result<()> {
    if path.is_empty() {
        return Ok(());
    }
    for segment in path.split('/') {
        if segment.is_empty() {
            return Err(Error::InvalidUrl("empty path segment"));
        }
        if segment
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '?' | '#' | '%'))
        {
            return Err(Error::InvalidUrl(
                "path holds a query, fragment, escape or blank",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test literal")
    }

    #[test]
    fn coap_urls() {
        assert_eq!(
            parse_sink_url("coap://127.0.0.1:5700/sink/data"),
            Ok(SinkUrl::Coap {
                addr: addr("127.0.0.1:5700"),
                path: "sink/data".into()
            })
        );
        assert_eq!(
            parse_sink_url("coap://[::1]"),
            Ok(SinkUrl::Coap {
                addr: addr("[::1]:5683"),
                path: String::new()
            })
        );
        assert_eq!(
            parse_sink_url("COAP://10.1.2.3/"),
            Ok(SinkUrl::Coap {
                addr: addr("10.1.2.3:5683"),
                path: String::new()
            })
        );
        let u = parse_sink_url("coap://[2001:db8::1]:6000/a").expect("valid");
        assert_eq!(u.to_string(), "coap://[2001:db8::1]:6000/a");
        assert_eq!(parse_sink_url(&u.to_string()), Ok(u));
    }

    #[test]
    fn udp_urls() {
        assert_eq!(
            parse_sink_url("udp://192.0.2.7:9000"),
            Ok(SinkUrl::Udp(addr("192.0.2.7:9000")))
        );
        let u = parse_sink_url("udp://[::1]:1").expect("valid");
        assert_eq!(u.addr(), addr("[::1]:1"));
        assert_eq!(u.to_string(), "udp://[::1]:1");
    }

    #[test]
    fn refusals() {
        for bad in [
            "",
            "127.0.0.1:5683",
            "http://127.0.0.1/",
            "coap://localhost/x",
            "coap://::1/x",
            "coap://[::1/x",
            "coap://[::1]x/",
            "coap://1.2.3.4:/x",
            "coap://1.2.3.4:0/x",
            "coap://1.2.3.4:65536/x",
            "coap://1.2.3.4:+5/x",
            "coap://1.2.3.4/a//b",
            "coap://1.2.3.4/a/",
            "coap://1.2.3.4/a?b=c",
            "coap://1.2.3.4/a#f",
            "coap://1.2.3.4/a%20b",
            "coap://1.2.3.4/a b",
            "udp://1.2.3.4",
            "udp://1.2.3.4:9/",
            "udp://[fe80::1%25eth0]:9",
        ] {
            assert!(
                matches!(parse_sink_url(bad), Err(Error::InvalidUrl(_))),
                "{bad:?}"
            );
        }
        let long = format!("coap://1.2.3.4/{}", "a".repeat(250));
        assert_eq!(parse_sink_url(&long), Err(Error::UrlTooLong(long.len())));
    }
}
