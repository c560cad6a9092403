//! The `relay-sink` daemon: takes what the proxy forwards (CoAP POSTs and binary-header UDP
//! datagrams), opens it with the protocol's [`Sink`], and writes every delivered message to its
//! output as one JSON line ([`OutputLine`]).
//!
//! A CoAP POST is acknowledged (2.04) only once what it delivered is written and synced and its
//! id is in the durable seen set ([`SinkNode::receive_batch`]); see [`Verdict::response_code`] for
//! the other answers, and `sink_store::posted` for the requests that are not a relay message.
//! Datagrams that arrive together are handled as one batch: one output sync and one store
//! transaction for all of them.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use m2msec_crypto::pre;
use m2msec_protocol::relay::sink_store::{Pending, Refused, StoreError, StoredSink, posted};
use m2msec_protocol::relay::{Delivered, Sink, SinkConfig, TrustedSource};
use m2msec_protocol::{Millis, OpCounts};
use m2msec_store::Store;
use m2msec_wire::relay::RelayMessage;
use m2msec_wire::relay::coap::coap_lite::{CoapOption, ResponseType};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::{DataEncoding, Output, load_sink};
use crate::error::{Error, Result};
use crate::runtime::coap::{
    self, Block1Assembler, DEFAULT_SZX, DedupCache, MessageIds, Received, ReplyTo, monotonic_now,
    response, set_uint_option,
};
use crate::runtime::driver::open_store;
use crate::runtime::driver::{self, Egress, Shutdown, wall_clock};
use crate::runtime::log_limit::LogLimit;
use crate::runtime::tap::Wiretap;

mod output;
pub use m2msec_protocol::relay::sink_store::Verdict;
pub use output::{OutputLine, OutputWriter};

/// A record the sink cannot read or write is reported as the store's failure, as the sink's
/// operators have always seen it.
impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Store(e) => Self::Store(e),
            StoreError::Record { what, error } => Self::Store(m2msec_store::Error::Backend {
                operation: what,
                source: error.into(),
            }),
            e => Self::Control(e.to_string()),
        }
    }
}

/// The sink's engine, whatever the transport: the protocol's sink over its store
/// ([`StoredSink`]: the durable seen set and section keys), the output, and the rejection log.
///
/// [`SinkNode::receive_batch`] takes what arrived together: every delivered message of the
/// batch is written to the output and synced, then committed ([`StoredSink::commit`]), and only
/// then does it return (and the caller acknowledge).
pub struct SinkNode {
    stored: StoredSink,
    output: OutputWriter,
    rejects: LogLimit,
    events: Option<mpsc::UnboundedSender<Delivered>>,
}

impl SinkNode {
    /// A sink node over `sink`, `store` and `output`: the section keys accepted before a
    /// restart are installed again (at `now`), and the output is cut back to its committed
    /// length.
    ///
    /// # Errors
    ///
    /// Store and output errors.
    pub fn new(
        sink: Sink,
        store: Arc<dyn Store>,
        mut output: OutputWriter,
        now: Millis,
    ) -> Result<Self> {
        let (stored, reopened) = StoredSink::open(sink, store, now)?;
        output.reconcile(reopened.output_len)?;
        for e in reopened.forgotten {
            tracing::debug!(error = %e, "stored section key no longer accepted, forgotten");
        }
        if reopened.installed > 0 {
            tracing::info!(
                sections = reopened.installed,
                "section keys installed again from the store"
            );
        }
        Ok(Self {
            stored,
            output,
            rejects: LogLimit::new("rejected message"),
            events: None,
        })
    }

    /// Also reports every delivered message on `events` (the demo compares them with what was
    /// sent).
    #[must_use]
    pub fn with_events(mut self, events: mpsc::UnboundedSender<Delivered>) -> Self {
        self.events = Some(events);
        self
    }

    /// The protocol sink's cryptographic operations.
    #[must_use]
    pub fn op_counts(&self) -> OpCounts {
        self.stored.op_counts()
    }

    /// Processes messages that arrived together; one verdict per message, in order. Returns
    /// once what they delivered is in the output and the seen set.
    ///
    /// # Errors
    ///
    /// Output or store errors: then nothing of the batch may be acknowledged.
    pub fn receive_batch(
        &mut self,
        now: Millis,
        messages: &[(SocketAddr, RelayMessage)],
    ) -> Result<Vec<Verdict>> {
        let batch = self.stored.receive(now, messages.iter().map(|(_, m)| m))?;
        for ((from, _), verdict) in messages.iter().zip(&batch.verdicts) {
            if let Verdict::Rejected(e) = verdict {
                self.rejects.warn(from, e);
            }
        }
        if batch.is_empty() {
            return Ok(batch.verdicts);
        }
        let lines: Vec<OutputLine> = batch
            .fresh
            .iter()
            .map(|(_, d)| self.output.line(d))
            .collect();
        self.output.write(&lines)?;
        self.stored.commit(&batch, self.output.file_len())?;
        if let Some(events) = &self.events {
            for (_, d) in batch.fresh {
                let _ = events.send(d);
            }
        }
        Ok(batch.verdicts)
    }
}

/// Datagrams handled in one batch at most (one output sync and one store commit per batch).
const MAX_BATCH: usize = 64;

/// One relay message received, and how to answer it.
struct Incoming {
    from: SocketAddr,
    /// For CoAP: where the answer goes.
    coap: Option<ReplyTo>,
    msg: RelayMessage,
}

/// The `relay-sink` daemon: a [`SinkNode`] behind a CoAP socket and a plain-UDP socket.
pub struct SinkServer {
    node: SinkNode,
    coap: Option<Egress>,
    udp: Option<UdpSocket>,
    path: String,
    server: coap::Server,
    pending: Pending,
}

impl SinkServer {
    /// Binds the sockets (either may be absent; port 0 picks one); CoAP answers go through
    /// `tap` if given (a demo's bad link).
    ///
    /// # Errors
    ///
    /// [`Error::Bind`].
    pub async fn bind(
        node: SinkNode,
        coap: Option<SocketAddr>,
        udp: Option<SocketAddr>,
        path: &str,
        tap: Option<Wiretap>,
    ) -> Result<Self> {
        let coap = match coap {
            Some(a) => {
                let socket = Arc::new(driver::bind(a).await?);
                Some(Egress::new(socket, tap).map_err(Error::Socket)?)
            }
            None => None,
        };
        let udp = match udp {
            Some(a) => Some(driver::bind(a).await?),
            None => None,
        };
        Ok(Self {
            node,
            coap,
            udp,
            path: path.trim_matches('/').to_owned(),
            server: coap::Server::new(
                MessageIds::random(&mut m2msec_crypto::rng::OsRng),
                DedupCache::default(),
                Block1Assembler::new(1 << 20, 64, Duration::from_secs(60), DEFAULT_SZX),
            ),
            pending: Pending::default(),
        })
    }

    /// The sink's CoAP URL (`coap://ADDR/PATH`), if it serves CoAP.
    #[must_use]
    pub fn coap_url(&self) -> Option<String> {
        let a = self.coap.as_ref()?.local_addr();
        Some(format!("coap://{a}/{}", self.path))
    }

    /// The sink's UDP URL (`udp://ADDR`), if it takes plain UDP.
    #[must_use]
    pub fn udp_url(&self) -> Option<String> {
        let a = self.udp.as_ref()?.local_addr().ok()?;
        Some(format!("udp://{a}"))
    }

    /// Serves until `shutdown`; returns the node (its counters).
    ///
    /// # Errors
    ///
    /// Output and store errors (nothing that depended on the failed write was acknowledged),
    /// socket errors.
    pub async fn run(mut self, mut shutdown: Shutdown) -> Result<SinkNode> {
        tracing::info!(
            role = "relay-sink",
            coap = ?self.coap_url(),
            udp = ?self.udp_url(),
            "serving"
        );
        let mut coap_buf = vec![0u8; 65_535];
        let mut udp_buf = vec![0u8; 65_535];
        loop {
            let coap = self.coap.as_ref().map(|e| Arc::clone(e.socket()));
            tokio::select! {
                () = shutdown.wait() => break,
                r = readable(coap.as_deref()) => r.map_err(Error::Socket)?,
                r = readable(self.udp.as_ref()) => r.map_err(Error::Socket)?,
            }
            // What is waiting on either socket, up to a batch.
            let mut batch = Vec::new();
            for _ in 0..MAX_BATCH {
                let mut progressed = false;
                if let Some((n, from)) = try_recv(coap.as_deref(), &mut coap_buf) {
                    self.on_coap(&coap_buf[..n], from, &mut batch).await?;
                    progressed = true;
                }
                if let Some((n, from)) = try_recv(self.udp.as_ref(), &mut udp_buf) {
                    self.on_udp(&udp_buf[..n], from, &mut batch);
                    progressed = true;
                }
                if !progressed {
                    break;
                }
            }
            if !batch.is_empty() {
                self.process(batch).await?;
            }
        }
        tracing::info!(
            role = "relay-sink",
            delivered = self.node.stored.delivered(),
            duplicates = self.node.stored.duplicates(),
            rejected = self.node.rejects.total(),
            "stopped"
        );
        Ok(self.node)
    }

    fn on_udp(&mut self, datagram: &[u8], from: SocketAddr, batch: &mut Vec<Incoming>) {
        match RelayMessage::decode(datagram) {
            Ok(msg) => batch.push(Incoming {
                from,
                coap: None,
                msg,
            }),
            Err(e) => self.node.rejects.warn(from, &e),
        }
    }

    async fn on_coap(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        batch: &mut Vec<Incoming>,
    ) -> Result<()> {
        let r = match self.server.receive(from, datagram, monotonic_now()) {
            Received::Request(r) => r,
            Received::Reply(bytes) => {
                self.send_coap(&bytes, from).await;
                return Ok(());
            }
            Received::Junk => {
                self.node.rejects.warn(from, &"not a CoAP message");
                return Ok(());
            }
            Received::Ack(_) | Received::Reset(_) | Received::Nothing => return Ok(()),
        };
        match posted(&r.whole, &self.path) {
            Ok(msg) => batch.push(Incoming {
                from,
                coap: Some(r.reply),
                msg,
            }),
            Err(refused) => {
                if let Refused::NotRelayMessage(e) = &refused {
                    self.node.rejects.warn(from, e);
                }
                self.answer(&r.reply, refused.code()).await;
            }
        }
        Ok(())
    }

    async fn process(&mut self, batch: Vec<Incoming>) -> Result<()> {
        let messages: Vec<(SocketAddr, RelayMessage)> =
            batch.iter().map(|i| (i.from, i.msg.clone())).collect();
        let verdicts = self.node.receive_batch(wall_clock(), &messages)?;
        let now = monotonic_now();
        for (incoming, verdict) in batch.into_iter().zip(verdicts) {
            let code = self
                .pending
                .response_code(&incoming.msg.header, &verdict, now);
            if let Some(reply) = incoming.coap {
                self.answer(&reply, code).await;
            }
        }
        Ok(())
    }

    /// Answers a request with `code` (5.03 with Max-Age 1 s), remembered for its copies.
    async fn answer(&mut self, to: &ReplyTo, code: ResponseType) {
        let mut p = response(&to.request, code, self.server.ids());
        if code == ResponseType::ServiceUnavailable {
            set_uint_option(&mut p, CoapOption::MaxAge, 1);
        }
        match self.server.answer(to, p) {
            Some(bytes) => self.send_coap(&bytes, to.peer).await,
            None => tracing::warn!(to = %to.peer, "response not encodable"),
        }
    }

    async fn send_coap(&self, bytes: &[u8], to: SocketAddr) {
        if let Some(s) = &self.coap
            && let Err(e) = s.send_to(bytes, to).await
        {
            tracing::debug!(%to, error = %e, "response not sent");
        }
    }
}

/// Waits until `socket` has a datagram, or forever without a socket.
async fn readable(socket: Option<&UdpSocket>) -> std::io::Result<()> {
    match socket {
        Some(s) => s.readable().await,
        None => std::future::pending().await,
    }
}

/// A datagram waiting on `socket`, if any. An error other than "nothing waiting" (an ICMP
/// error reported on the socket, which the receive clears) is logged and skipped: one peer's
/// unreachable port must not stop the sink.
fn try_recv(socket: Option<&UdpSocket>, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
    match socket?.try_recv_from(buf) {
        Ok(got) => Some(got),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        Err(e) => {
            tracing::debug!(error = %e, "receive error skipped");
            None
        }
    }
}

/// Runs the `relay-sink` daemon of `config_file` until `shutdown`.
///
/// # Errors
///
/// Config, key file, store, output and bind errors; a store or output error while serving
/// stops the daemon.
pub async fn run_file(config_file: &Path, shutdown: Shutdown) -> Result<()> {
    let s = load_sink(config_file)?;
    let store = open_store(Some(&s.state))?;
    let output = OutputWriter::open(&s.output, s.encoding)?;
    let sink = Sink::new(s.secret, s.sources, s.config);
    let node = SinkNode::new(sink, store, output, wall_clock())?;
    let server = SinkServer::bind(node, s.coap, s.udp, &s.path, None).await?;
    server.run(shutdown).await?;
    Ok(())
}

/// A sink on loopback for the demo or the bench, as [`spawn_local`] started it.
pub(crate) struct LocalSink {
    /// Where it takes messages: `coap://…/sink` or `udp://…`.
    pub url: String,
    /// Every message it delivered.
    pub events: mpsc::UnboundedReceiver<Delivered>,
    /// Its server, which returns the node when stopped.
    pub task: JoinHandle<Result<SinkNode>>,
}

/// A sink on loopback for the demo or the bench: it trusts `source`, keeps its seen set in
/// `store`, appends base64 lines to the file `output`, serves CoAP (or else plain UDP) until
/// `shutdown` and reports every delivery.
///
/// # Errors
///
/// Store, output and bind errors.
pub(crate) async fn spawn_local(
    key: pre::SecretKey,
    source: TrustedSource,
    store: Arc<dyn Store>,
    output: PathBuf,
    coap: bool,
    tap: Option<Wiretap>,
    shutdown: Shutdown,
) -> Result<LocalSink> {
    let output = OutputWriter::open(&Output::File(output), DataEncoding::Base64)?;
    let sink = Sink::new(key, vec![source], SinkConfig::default());
    let node = SinkNode::new(sink, store, output, wall_clock())?;
    let (tx, events) = mpsc::unbounded_channel();
    let any = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let (c, u) = if coap { (any, None) } else { (None, any) };
    let server = SinkServer::bind(node.with_events(tx), c, u, "sink", tap).await?;
    let url = if coap {
        server.coap_url()
    } else {
        server.udp_url()
    };
    let url = url.ok_or_else(|| Error::Control("sink without an address".into()))?;
    let task = tokio::spawn(server.run(shutdown));
    Ok(LocalSink { url, events, task })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn output_lines(path: &Path) -> Result<Vec<OutputLine>> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        text.lines()
            .map(serde_json::from_str)
            .collect::<core::result::Result<_, _>>()
            .map_err(|e| Error::Usage(e.to_string()))
    }

    #[test]
    fn output_lines_are_appended() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("out/sink.jsonl");
        for _ in 0..2 {
            let mut w = OutputWriter::open(&Output::File(path.clone()), DataEncoding::Hex)?;
            let line = w.line(&Delivered {
                source: "coap://s/".into(),
                stream_id: 1,
                key_index: 2,
                message_id: 3,
                epoch: 4,
                individual: false,
                plaintext: vec![0x01, 0xff].into(),
            });
            w.write(&[line])?;
        }
        let lines = output_lines(&path)?;
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].data, "01ff");
        assert_eq!(lines[1].message_id, 3);
        Ok(())
    }

    /// A source's stream through a forwarder into a sink node twice over one store: the
    /// second node (a restart) cuts an unacknowledged tail, and redelivery writes each message
    /// once.
    #[test]
    fn stream_through_forwarder_once_across_restart() -> Result<()> {
        use m2msec_crypto::rng::SeededRng;
        use m2msec_crypto::sig::{SigSuite, SigningKey};
        use m2msec_protocol::relay::{Forwarded, Forwarder, Source, SourceConfig, SourceSeed};
        use m2msec_store::MemoryStore;

        let mut rng = SeededRng::from_seed_u64(3);
        let owner = SigningKey::generate(SigSuite::Ed25519, &mut rng)?;
        let owner_pub = owner.verifying_key();
        let url = "coap://127.0.0.9/source";
        let mut config = SourceConfig::new(url, 1);
        config.rotate_messages = 2;
        let mut source = Source::new(
            config,
            SourceSeed::generate(&mut rng),
            owner,
            None,
            &mut rng,
        )?;
        let now = Millis(1_700_000_000_000);
        let epoch = source.epoch_at(now)?;
        let sink_key = pre::SecretKey::generate(&mut rng);
        let rekeys = source.rekeys_for(&sink_key.public_key(), epoch..=epoch)?;
        let mut forwarder = Forwarder::new("udp://127.0.0.1:1".into(), rekeys)?;
        let mut stream = Vec::new();
        for k in 0..5u8 {
            for m in source.seal(now, &[k; 3], &mut rng)? {
                if let Forwarded::Send(m) = forwarder.transform(&m) {
                    stream.push((SocketAddr::from(([127, 0, 0, 1], 1)), m));
                }
            }
        }
        let trusted = || {
            vec![TrustedSource {
                url: url.into(),
                owner: owner_pub.clone(),
            }]
        };
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("out.jsonl");
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let key_pem = sink_key.to_pem()?;
        let new_node = |store: Arc<dyn Store>| -> Result<SinkNode> {
            let sink = Sink::new(
                pre::SecretKey::from_pem(&key_pem)?,
                trusted(),
                SinkConfig::default(),
            );
            let out = OutputWriter::open(&Output::File(path.clone()), DataEncoding::Hex)?;
            SinkNode::new(sink, store, out, now)
        };
        let mut node = new_node(store.clone())?;
        let half = stream.len() / 2;
        let verdicts = node.receive_batch(now, &stream[..half])?;
        assert!(verdicts.iter().all(|v| matches!(v, Verdict::Delivered(_))));
        // A crash after the output was written but before the seen set was: simulated by a
        // stray line beyond the committed length.
        {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            f.write_all(b"{\"unacknowledged\":true}\n")
                .map_err(|e| Error::io(&path, e))?;
        }
        let mut node = new_node(store)?;
        // The proxy delivers again what was not acknowledged: the stray line's messages.
        let verdicts = node.receive_batch(now, &stream[half..])?;
        assert!(verdicts.iter().all(|v| matches!(v, Verdict::Delivered(_))));
        // And if it delivered everything again, nothing would be written twice.
        let verdicts = node.receive_batch(now, &stream)?;
        assert!(
            verdicts[..half]
                .iter()
                .all(|v| matches!(v, Verdict::Duplicate | Verdict::Delivered(0)))
        );
        let lines = output_lines(&path)?;
        let data: Vec<String> = lines.iter().map(|l| l.data.clone()).collect();
        assert_eq!(data, ["000000", "010101", "020202", "030303", "040404"]);
        assert!(
            node.receive_batch(now, &stream)?
                .iter()
                .all(|v| matches!(v, Verdict::Duplicate | Verdict::Delivered(0)))
        );
        Ok(())
    }
}
