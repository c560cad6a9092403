//! Delivery to one sink: the node's CoAP client (`runtime::coap::CoapClient`: confirmable POSTs
//! with RFC 7252 retransmission, separate responses, Block1 for messages over one block) for
//! `coap://` sinks, or a socket connected to the sink for `udp://` ones (binary-header
//! datagrams, no answer).

use std::net::SocketAddr;

use m2msec_protocol::relay::proxy::pump::Outcome;
use m2msec_wire::relay::coap::Target;
use m2msec_wire::relay::coap::coap_lite::ResponseType;
use m2msec_wire::relay::{RelayMessage, SinkUrl};
use tokio::net::UdpSocket;

use crate::relay::client::any_port;
use crate::runtime::coap::{self, CoapClient, Config, Transmission};
use crate::runtime::tap::Wiretap;

/// One sink's transport.
#[derive(Debug)]
pub(crate) enum Transport {
    Coap {
        client: CoapClient,
        addr: SocketAddr,
        path: String,
    },
    Udp {
        socket: UdpSocket,
        addr: SocketAddr,
    },
}

impl Transport {
    /// A client (or socket) for the sink of `url`.
    ///
    /// # Errors
    ///
    /// The socket's, if it cannot be bound (or, for UDP, connected).
    pub(crate) async fn open(
        url: &SinkUrl,
        transmission: Transmission,
        tap: Option<&Wiretap>,
    ) -> Result<Self, String> {
        let addr = url.addr();
        match url {
            SinkUrl::Coap { path, .. } => {
                let config = transmission.apply(Config {
                    nstart: m2msec_protocol::relay::proxy::pump::WINDOW,
                    ..Config::default()
                });
                let client = CoapClient::bind_tapped(any_port(addr), config, tap.cloned())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Self::Coap {
                    client,
                    addr,
                    path: path.clone(),
                })
            }
            SinkUrl::Udp(_) => {
                let socket = UdpSocket::bind(any_port(addr))
                    .await
                    .map_err(|e| e.to_string())?;
                socket.connect(addr).await.map_err(|e| e.to_string())?;
                Ok(Self::Udp { socket, addr })
            }
        }
    }

    /// The sink's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        match self {
            Self::Coap { addr, .. } | Self::Udp { addr, .. } => *addr,
        }
    }

    /// One delivery attempt of `msg` (the forwarder's output, sink URL set).
    pub(crate) async fn send(&self, msg: &RelayMessage) -> Outcome {
        match self {
            Self::Udp { socket, .. } => match msg.encode() {
                Ok(bytes) => match socket.send(&bytes).await {
                    Ok(_) => Outcome::Accepted,
                    Err(e) => Outcome::Failed(e.to_string()),
                },
                Err(e) => unencodable(&e),
            },
            Self::Coap { client, addr, path } => {
                match client
                    .post_relay(*addr, msg, &Target::Path(path), true)
                    .await
                {
                    Ok(p) => Outcome::of_answer(p.header.code),
                    Err(coap::Error::Wire(e)) => unencodable(&e),
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
        }
    }
}

/// A message that cannot be put on the wire for this sink (a URL over 255 bytes) can never be
/// delivered: it is treated like a refusal by the sink, so the stream does not stall on it.
fn unencodable(e: &dyn std::fmt::Display) -> Outcome {
    tracing::warn!(error = %e, "message cannot be encoded for its sink");
    Outcome::Refused(ResponseType::BadRequest)
}
