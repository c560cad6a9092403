//! The relay proxy's API from the source's side: what `m2msec relay
//! store|send|forward|pause|resume|status` and the demo do, over the CoAP client of
//! [`crate::runtime::coap`].
//!
//! **Ordering.** [`send_stream`] sends as the protocol's [`Sending`] says: each management
//! message alone, acknowledged before its section's data; data concurrently over CoAP or, with
//! `udp`, as plain datagrams to the storage's UDP port.
//!
//! **Back-pressure.** A 5.03 answer (storage or proxy full, ingest queue busy) is honoured: the
//! message is sent again, with the same token and so the same relay message id, after the
//! answer's Max-Age (RFC 7252 §5.10.5, default 60 s).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use m2msec_crypto::rng::CryptoRng;
use m2msec_protocol::relay::send_plan::{self, Sending, Step};
pub use m2msec_protocol::relay::send_plan::{SendOptions, SendReport, grant_summary};
use m2msec_protocol::relay::source_store::{ForwardRecord, StorageRecord, StoredSource};
use m2msec_wire::relay::RelayMessage;
use m2msec_wire::relay::api::{
    self, Body as _, CONTENT_FORMAT_CBOR, Control, ForwardMonitor, ForwardRequest, ForwardResponse,
    Info, Load, SinkGrant, Start, StorageMonitor, StoreResponse, Throughput,
};
use m2msec_wire::relay::coap::Target;
use m2msec_wire::relay::coap::coap_lite::{Packet, ResponseType};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::runtime::coap::{self, CoapClient, Repost, is_success, response_code};
use crate::runtime::driver::wall_clock;
use crate::runtime::tap::Wiretap;

/// How long a message goes on being posted again while the proxy does not answer: less than
/// the proxy's default `dedup_grace_s` (300 s), for which it remembers the id of a message it
/// forwarded and removed, so that a late copy is never stored a second time.
pub const REPOST_LIMIT: Duration = Duration::from_secs(240);

/// A client of one relay proxy.
#[derive(Clone, Debug)]
pub struct ProxyClient {
    coap: CoapClient,
    proxy: SocketAddr,
}

/// A refusal from the proxy as the node's error.
fn refused(proxy: SocketAddr, p: &Packet, what: &str) -> Error {
    let code = send_plan::refusal(p);
    tracing::debug!(%proxy, what, %code, "request refused");
    Error::Coap(coap::Error::Status { peer: proxy, code })
}

impl ProxyClient {
    /// A client of the proxy at `proxy`, on an ephemeral local port; every datagram sent goes
    /// through `tap` if given (the demo's pcap and bad link).
    ///
    /// # Errors
    ///
    /// [`Error::Coap`] if the socket cannot be bound.
    pub async fn connect(
        proxy: SocketAddr,
        config: coap::Config,
        tap: Option<Wiretap>,
    ) -> Result<Self> {
        let coap = CoapClient::bind_tapped(any_port(proxy), config, tap).await?;
        Ok(Self { coap, proxy })
    }

    /// The proxy's address.
    #[must_use]
    pub fn proxy(&self) -> SocketAddr {
        self.proxy
    }

    async fn get_body<T: api::Body>(&self, path: &str) -> Result<T> {
        let p = self.coap.get(self.proxy, path).await?;
        if !is_success(&p) {
            return Err(refused(self.proxy, &p, path));
        }
        T::from_bytes(&p.payload).map_err(wire)
    }

    /// POSTs a CBOR `body` to `path`; the answer's payload once the proxy accepted it.
    async fn post_cbor(&self, path: &str, body: Vec<u8>, what: &str) -> Result<Vec<u8>> {
        let p = self
            .coap
            .post(self.proxy, path, body, Some(CONTENT_FORMAT_CBOR))
            .await?;
        if !is_success(&p) {
            return Err(refused(self.proxy, &p, what));
        }
        Ok(p.payload)
    }

    /// `GET /info`.
    ///
    /// # Errors
    ///
    /// [`Error::Coap`] (no answer, or a refusal), [`Error::Relay`] for a body that does not
    /// decode.
    pub async fn info(&self) -> Result<Info> {
        self.get_body(api::path::INFO).await
    }

    /// `GET /load?window=S`.
    ///
    /// # Errors
    ///
    /// As [`ProxyClient::info`].
    pub async fn load(&self, window_s: u32) -> Result<Load> {
        self.get_body(&format!("{}?window={window_s}", api::path::LOAD))
            .await
    }

    /// `GET /throughput?window=S`.
    ///
    /// # Errors
    ///
    /// As [`ProxyClient::info`].
    pub async fn throughput(&self, window_s: u32) -> Result<Throughput> {
        self.get_body(&format!("{}?window={window_s}", api::path::THROUGHPUT))
            .await
    }

    /// `GET /storage/{id}/monitor` (once; not observed).
    ///
    /// # Errors
    ///
    /// As [`ProxyClient::info`].
    pub async fn storage_monitor(&self, storage_id: u32) -> Result<StorageMonitor> {
        self.get_body(&api::path::storage_monitor(storage_id)).await
    }

    /// `GET /forward/{id}/monitor` (once; not observed).
    ///
    /// # Errors
    ///
    /// As [`ProxyClient::info`].
    pub async fn forward_monitor(&self, forward_id: u32) -> Result<ForwardMonitor> {
        self.get_body(&api::path::forward_monitor(forward_id)).await
    }

    /// `POST /store`: creates a storage for `source` and records it in the source's store.
    ///
    /// # Errors
    ///
    /// As [`ProxyClient::info`]; [`Error::Store`] if the record cannot be written.
    pub async fn store(&self, source: &StoredSource) -> Result<StorageRecord> {
        let req = source.store_request();
        let answer = self
            .post_cbor(api::path::STORE, req.to_bytes(), "store")
            .await?;
        let answer = StoreResponse::from_bytes(&answer).map_err(wire)?;
        let record = StorageRecord {
            proxy: self.proxy,
            storage_id: answer.storage_id,
            udp_port: answer.udp_port,
        };
        source.save_storage(&record)?;
        Ok(record)
    }

    /// POSTs `msg` until the proxy stores it, waiting out every 5.03's Max-Age and posting
    /// again after an exchange that went unanswered (CoAP's own retransmissions exhausted, as
    /// on a very lossy link); returns the 5.03 answers met and the time waited. Posting again
    /// is safe: the proxy stores a message id once and acknowledges its copies.
    ///
    /// # Errors
    ///
    /// [`Error::Coap`] when the proxy refuses the message for good (4.xx);
    /// [`Error::Timeout`] when the proxy stays busy longer than
    /// `patience`; the CoAP timeout when it stays silent longer than that or than
    /// [`REPOST_LIMIT`].
    pub async fn post_until_stored(
        &self,
        storage_id: u32,
        msg: &RelayMessage,
        patience: Duration,
    ) -> Result<(u32, Duration)> {
        let path = api::path::storage(storage_id);
        let target = Target::Path(&path);
        let mut repost = Repost::new(patience, REPOST_LIMIT);
        loop {
            let started = Instant::now();
            match self.coap.post_relay(self.proxy, msg, &target, true).await {
                Ok(p) if is_success(&p) => return Ok(repost.spent()),
                Ok(p) if response_code(&p) == Some(ResponseType::ServiceUnavailable) => {
                    let age = repost.busy(&p).ok_or(Error::Timeout(patience))?;
                    tracing::info!(
                        message_id = msg.header.message_id,
                        retry_in = ?age,
                        "proxy busy (5.03), waiting its Max-Age"
                    );
                    tokio::time::sleep(age).await;
                }
                Ok(p) => return Err(refused(self.proxy, &p, "storage POST")),
                Err(e @ coap::Error::Timeout { .. }) => {
                    if !repost.unanswered(started.elapsed()) {
                        return Err(Error::Coap(e));
                    }
                    tracing::warn!(
                        message_id = msg.header.message_id,
                        error = %e,
                        "proxy did not answer: posting again"
                    );
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// `POST /forward`, owner-signed: the proxy forwards `storage_id` to `sinks`; records the
    /// forward in the source's store.
    ///
    /// # Errors
    ///
    /// As [`ProxyClient::info`] (4.01: signature refused; 4.03: not the owner).
    pub async fn forward(
        &self,
        source: &StoredSource,
        storage_id: u32,
        sinks: Vec<SinkGrant>,
        rate: u32,
        start: Start,
        rng: &mut dyn CryptoRng,
    ) -> Result<ForwardRecord> {
        let record_sinks = sinks.iter().map(grant_summary).collect::<Vec<_>>();
        let req = ForwardRequest {
            storage_id,
            sinks,
            rate,
            start,
        };
        let signed = source.sign(api::path::FORWARD, req.to_bytes(), wall_clock(), rng);
        let answer = self
            .post_cbor(api::path::FORWARD, signed.to_bytes(), "forward")
            .await?;
        let answer = ForwardResponse::from_bytes(&answer).map_err(wire)?;
        let record = ForwardRecord {
            forward_id: answer.forward_id,
            storage_id,
            sinks: record_sinks,
        };
        source.save_forward(&record)?;
        Ok(record)
    }

    /// `POST /forward/{id}/control`, owner-signed.
    ///
    /// # Errors
    ///
    /// As [`ProxyClient::forward`].
    pub async fn control(
        &self,
        source: &StoredSource,
        forward_id: u32,
        control: &Control,
        rng: &mut dyn CryptoRng,
    ) -> Result<()> {
        let path = api::path::forward_control(forward_id);
        let signed = source.sign(&path, control.to_bytes(), wall_clock(), rng);
        self.post_cbor(&path, signed.to_bytes(), "control").await?;
        Ok(())
    }

    /// Observes `path` (a monitor, RFC 7641).
    ///
    /// # Errors
    ///
    /// As [`ProxyClient::info`].
    pub async fn observe(&self, path: &str) -> Result<coap::Observation> {
        Ok(self.coap.observe(self.proxy, path).await?)
    }
}

/// What [`send_stream`] tells its caller while it runs.
pub struct SendHooks<'a> {
    /// Every message sealed, before it is sent.
    pub sealed: &'a mut dyn FnMut(&RelayMessage),
    /// The report after every acknowledged (or, over UDP, sent) message.
    pub acked: &'a mut dyn FnMut(&SendReport),
}

impl core::fmt::Debug for SendHooks<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SendHooks").finish_non_exhaustive()
    }
}

/// Seals `payloads` with `source` and sends them to `storage` through `client`, as
/// [`Sending`] says; see the module documentation for the ordering and back-pressure rules.
/// `hooks.sealed` sees every message sealed (management and data, in stream order) before it
/// is sent, `hooks.acked` the report after each acknowledged or sent message (for progress
/// output).
///
/// # Errors
///
/// Sealing errors, store errors (the position could not be persisted: nothing of that batch
/// was sent), proxy errors.
pub async fn send_stream(
    source: &mut StoredSource,
    client: &ProxyClient,
    storage: &StorageRecord,
    payloads: impl IntoIterator<Item = Vec<u8>>,
    opts: SendOptions,
    rng: &mut dyn CryptoRng,
    hooks: &mut SendHooks<'_>,
) -> Result<SendReport> {
    let start = Instant::now();
    let udp = if opts.udp {
        let port = storage.udp_port.ok_or_else(|| {
            Error::Usage(format!(
                "storage {} has no UDP port (store again with `udp = true`)",
                storage.storage_id
            ))
        })?;
        let target = SocketAddr::new(client.proxy().ip(), port);
        let local = any_port(target);
        let socket = UdpSocket::bind(local).await.map_err(|source| Error::Bind {
            addr: local,
            source,
        })?;
        Some((socket, target))
    } else {
        None
    };
    let mut plan = Sending::new(opts);
    let mut in_flight: JoinSet<Result<(u32, Duration)>> = JoinSet::new();
    let mut payloads = payloads.into_iter();
    loop {
        match plan.poll() {
            Step::Seal(max) => {
                let batch: Vec<Vec<u8>> = payloads.by_ref().take(max).collect();
                // The position is durable before any of these leaves.
                let sealed = if batch.is_empty() {
                    Vec::new()
                } else {
                    source.seal_batch(wall_clock(), &batch, rng)?
                };
                sealed.iter().for_each(&mut *hooks.sealed);
                plan.sealed(&batch, sealed);
            }
            Step::Post(msg) => {
                let (client, id) = (client.clone(), storage.storage_id);
                in_flight
                    .spawn(async move { client.post_until_stored(id, &msg, opts.patience).await });
            }
            Step::Datagram { msg, breathe } => {
                let Some((socket, target)) = &udp else {
                    return Err(Error::Control(
                        "relay send: a datagram without a UDP socket".into(),
                    ));
                };
                let bytes = msg.encode().map_err(wire)?;
                socket
                    .send_to(&bytes, target)
                    .await
                    .map_err(Error::Socket)?;
                if breathe {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                (hooks.acked)(plan.report());
            }
            Step::Wait => {
                let joined = in_flight.join_next().await.ok_or_else(|| {
                    Error::Control("relay send: waiting with nothing in flight".into())
                })?;
                plan.acknowledged(
                    joined.map_err(|e| Error::Control(format!("relay send task: {e}")))??,
                );
                (hooks.acked)(plan.report());
            }
            Step::Done => return Ok(plan.finish(start.elapsed(), &source.position())),
        }
    }
}

/// An ephemeral port on the unspecified address of `peer`'s family.
pub(crate) fn any_port(peer: SocketAddr) -> SocketAddr {
    let ip: IpAddr = if peer.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    SocketAddr::new(ip, 0)
}

/// A wire error (a body that does not decode, a URL too long) as the node's error.
pub(crate) fn wire(e: m2msec_wire::Error) -> Error {
    Error::Relay(e.into())
}

/// The CoAP client settings of the source: NSTART raised for streaming.
#[must_use]
pub fn streaming_config() -> coap::Config {
    coap::Config {
        nstart: 32,
        ..coap::Config::default()
    }
}
