//! `m2msec demo --protocol mikey`: the whole deployment on loopback, each role a tokio task with
//! its own UDP socket on the MIKEY port, keys generated in memory, one exchange, one
//! [`RunReport`].
//!
//! Addresses: every role listens on UDP 2269 on its own loopback address — I on 127.0.0.4, R on
//! 127.0.0.3, TPi on 127.0.0.(20+i) ([`addresses`]). If one of them is taken (another demo runs),
//! the same layout is tried on a random 127.a.b.0/24 network. Where extra loopback addresses do
//! not exist (not Linux), the roles fall back to ephemeral ports on 127.0.0.1, and the pcap file
//! still shows the standard layout on port 2269 so that Wireshark decodes MIKEY without hints.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use m2msec_crypto::rng::{CryptoRng, OsRng, random_array};
use m2msec_crypto::split::SharingScheme;
use m2msec_protocol::mikey::{Initiator, ModeName, PORT, Responder, ThirdParty, ThirdPartyFault};
use m2msec_protocol::{Endpoint, OpCounts};
use m2msec_store::MemoryStore;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::daemon::{
    InitiatorHandler, InitiatorRuns, Outcome, Report, ResponderHandler, Summary, ThirdPartyHandler,
    start_exchange,
};
use super::deployment::{Configs, Params, addresses, fault_name};
use m2msec_protocol::link::LinkFaults;

use crate::driver::{self, Driver, shutdown_channel};
use crate::error::{Error, Result};
use crate::hex;
use crate::report::{Progress, RunReport};
use crate::tap::Wiretap;

/// Options of one MIKEY demo run.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Shape of the deployment.
    pub params: Params,
    /// Seed for every key and every role's RNG; absent: the operating system's RNG.
    pub seed: Option<u64>,
    /// Write every datagram of the run to this pcap file.
    pub pcap: Option<PathBuf>,
    /// Overall limit: the run is abandoned (and reported failed) after this long.
    pub timeout: Duration,
    /// The link between the roles: loss, duplication and reordering (default: perfect).
    pub faults: LinkFaults,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            params: Params::default(),
            seed: None,
            pcap: None,
            timeout: Duration::from_secs(30),
            faults: LinkFaults::default(),
        }
    }
}

fn rng_for(seed: Option<u64>, role: u64) -> Box<dyn CryptoRng + Send> {
    crate::driver::role_rng(seed, 0x4d49_4b45_5900 + role)
}

/// Sockets of every role (I, R, then the third parties), the addresses they are bound to, and
/// the addresses the pcap shows for them.
struct Bound {
    sockets: Vec<UdpSocket>,
    addrs: Vec<SocketAddr>,
    aliases: Vec<(SocketAddr, SocketAddr)>,
}

/// Binds every role on port 2269 of its own loopback address (the standard layout, else the
/// same layout on a random 127.a.b.0/24), else on ephemeral ports of 127.0.0.1.
async fn bind_roles(third_parties: u8) -> Result<Bound> {
    let standard = addresses(third_parties);
    let mut layout = standard.clone();
    for _ in 0..16 {
        match bind_all(&layout).await {
            Ok(sockets) => {
                return Ok(Bound {
                    sockets,
                    addrs: layout,
                    aliases: Vec::new(),
                });
            }
            Err(e) if e.kind() == ErrorKind::AddrInUse => {
                let [a, b]: [u8; 2] = random_array(&mut OsRng);
                layout = standard
                    .iter()
                    .map(|s| {
                        let last = match s.ip() {
                            std::net::IpAddr::V4(v4) => v4.octets()[3],
                            std::net::IpAddr::V6(_) => 1,
                        };
                        SocketAddr::from((Ipv4Addr::new(127, a.max(1), b, last), PORT))
                    })
                    .collect();
            }
            Err(e) => {
                tracing::debug!(error = %e, "no loopback address per role; using ephemeral ports");
                break;
            }
        }
    }
    let mut sockets = Vec::new();
    let mut addrs = Vec::new();
    for _ in &standard {
        let s = driver::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        addrs.push(s.local_addr().map_err(Error::Socket)?);
        sockets.push(s);
    }
    let aliases = addrs.iter().copied().zip(standard).collect();
    Ok(Bound {
        sockets,
        addrs,
        aliases,
    })
}

async fn bind_all(addrs: &[SocketAddr]) -> std::io::Result<Vec<UdpSocket>> {
    let mut sockets = Vec::with_capacity(addrs.len());
    for a in addrs {
        sockets.push(UdpSocket::bind(a).await?);
    }
    Ok(sockets)
}

/// Runs one MIKEY exchange over real UDP on loopback.
///
/// # Errors
///
/// Set-up errors only (bad options, sockets, keys, pcap file); an exchange that fails —
/// expectedly or not — is a [`RunReport`] with `ok: false` and its `error`.
pub async fn run(opts: &DemoOptions, progress: &dyn Progress) -> Result<RunReport> {
    let params = &opts.params;
    params.check()?;
    let n = params.deployed_third_parties();

    progress.stage("binding sockets");
    let Bound {
        sockets,
        addrs,
        aliases,
    } = bind_roles(n).await?;
    let mut sockets = sockets.into_iter();
    let (Some(i_socket), Some(r_socket)) = (sockets.next(), sockets.next()) else {
        return Err(Error::Usage(
            "no socket for the initiator or responder".into(),
        ));
    };
    let tp_sockets: Vec<UdpSocket> = sockets.collect();

    progress.stage("generating RSA-2048 keys");
    let mut key_rng = rng_for(opts.seed, 100);
    let configs = Configs::generate(&params.spec(), &addrs, &mut *key_rng)?;

    let tap =
        Wiretap::for_demo(opts.pcap.as_deref(), opts.faults, opts.seed)?.with_pcap_aliases(aliases);
    let (stop, shutdown) = shutdown_channel();
    let (report_tx, mut reports) = mpsc::unbounded_channel();

    progress.stage("starting responder and third parties");
    let mut serving = tokio::task::JoinSet::new();
    {
        let d = Driver::new(
            "responder",
            r_socket,
            Responder::new(configs.responder, [])?,
            rng_for(opts.seed, 2),
        )?
        .with_tap(tap.clone());
        let sd = shutdown.clone();
        let mut h = ResponderHandler::new(Arc::new(MemoryStore::new()), Some(report_tx.clone()));
        serving.spawn(async move { d.run(&mut h, sd).await.map(|_| ()) });
    }
    for (i, (config, socket)) in configs
        .third_parties
        .into_iter()
        .zip(tp_sockets)
        .enumerate()
    {
        let name = config.identity.clone();
        let d = Driver::new(
            name.clone(),
            socket,
            ThirdParty::new(config, [])?,
            rng_for(opts.seed, 10 + i as u64),
        )?
        .with_tap(tap.clone());
        let sd = shutdown.clone();
        let mut h =
            ThirdPartyHandler::new(name, Arc::new(MemoryStore::new()), Some(report_tx.clone()));
        serving.spawn(async move { d.run(&mut h, sd).await.map(|_| ()) });
    }

    progress.stage(&format!("{} exchange", params.mode.name()));
    let mut i_driver = Driver::new(
        "initiator",
        i_socket,
        Initiator::new(configs.initiator)?,
        rng_for(opts.seed, 1),
    )?
    .with_tap(tap.clone());
    let start = Instant::now();
    let csb_id = {
        let (initiator, rng) = i_driver.endpoint_mut();
        start_exchange(initiator, driver::wall_clock(), rng)?
    };
    let i_shutdown = shutdown.clone();
    let i_report = report_tx.clone();
    drop(report_tx);
    let i_task = tokio::spawn(async move {
        let mut h = InitiatorHandler::new(InitiatorRuns::default(), Some(i_report));
        let initiator = i_driver.run(&mut h, i_shutdown).await?;
        Ok::<(OpCounts, Vec<Outcome>), Error>((initiator.op_counts(), h.into_outcomes()))
    });

    let result = tokio::time::timeout(opts.timeout, i_task).await;
    let wall_ms = start.elapsed().as_secs_f64() * 1000.0;
    let (device_ops, outcome, error) = match result {
        Ok(Ok(Ok((ops, mut outcomes)))) => match outcomes.pop() {
            Some(Outcome::Established(s)) => (ops, Some(s), None),
            Some(Outcome::Failed { error, .. }) => (ops, None, Some(error.to_string())),
            None => (
                ops,
                None,
                Some("the initiator stopped without a result".into()),
            ),
        },
        Ok(Ok(Err(e))) => (OpCounts::default(), None, Some(e.to_string())),
        Ok(Err(join)) => (
            OpCounts::default(),
            None,
            Some(format!("initiator task: {join}")),
        ),
        Err(_) => (
            OpCounts::default(),
            None,
            Some(Error::Timeout(opts.timeout).to_string()),
        ),
    };

    // R established before it sent its verification; give its report a moment to arrive, and
    // R a moment to judge every part still on its way (a part that arrives after the TGK was
    // rebuilt is judged too): a third party counts as a participant once R accepted its part.
    let silent = match params.fault {
        Some(ThirdPartyFault::Silent) => params.faulty,
        _ => 0,
    };
    let forwarding = usize::from(params.deployed_third_parties().saturating_sub(silent));
    let mut verdicts = Verdicts::new(csb_id);
    if outcome.is_some() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while !verdicts.settled(forwarding) {
            match tokio::time::timeout_at(deadline, reports.recv()).await {
                Ok(Some(r)) => verdicts.take(r),
                Ok(None) | Err(_) => break,
            }
        }
    }
    stop.shutdown();
    while let Ok(Some(joined)) =
        tokio::time::timeout(Duration::from_secs(2), serving.join_next()).await
    {
        if let Ok(Err(e)) = joined {
            tracing::warn!(error = %e, "a role stopped with an error");
        }
    }
    serving.abort_all();
    while let Ok(r) = reports.try_recv() {
        verdicts.take(r);
    }
    let Verdicts {
        responder,
        accepted,
        rejected,
        ..
    } = verdicts;
    tap.flush()?;

    let wire = tap.totals();
    let session_key_match = match (&outcome, &responder) {
        (Some(i), Some(r)) => i.fingerprint == r.fingerprint,
        _ => false,
    };
    let ok = outcome.is_some() && session_key_match;
    let error = match (&outcome, error) {
        (_, Some(e)) => Some(e),
        (Some(_), None) if responder.is_none() => {
            Some("the responder reported no key for this exchange".into())
        }
        (Some(_), None) if !session_key_match => Some("initiator and responder keys differ".into()),
        _ => None,
    };
    progress.stage(if ok {
        "done: key established"
    } else {
        "done: failed"
    });
    let expected_ok = params.expect_success();
    let distributed = params.mode == ModeName::Distributed;
    Ok(RunReport {
        protocol: super::PROTOCOL,
        ok,
        session_key_match,
        messages: wire.messages,
        bytes: wire.bytes,
        device_ops: device_ops.into(),
        wall_ms,
        participants: if ok {
            accepted.difference(&rejected).cloned().collect()
        } else {
            Vec::new()
        },
        error,
        expected_ok,
        as_expected: ok == expected_ok,
        session: Some(format!("{csb_id:#010x}")),
        key_fingerprint: outcome.as_ref().map(|o| hex(&o.fingerprint)),
        suite: "classic",
        proxies: n,
        threshold: if distributed { params.threshold } else { 0 },
        sharing: match (distributed, params.sharing) {
            (false, _) => "none",
            (true, SharingScheme::Shamir) => "shamir",
            (true, _) => "rs",
        },
        faulty: params.faulty,
        fault: params.fault.filter(|_| params.faulty > 0).map(fault_name),
        faulty_proxies: params.faulty_names(),
        mode: Some(params.mode.name()),
        verified: Some(outcome.as_ref().is_some_and(|o| o.verified)),
        seed: opts.seed,
        pcap: opts.pcap.as_ref().map(|p| p.display().to_string()),
        group: None,
        pke: None,
        sent: None,
        stored: None,
        delivered: None,
        restarted_gateway: None,
        variant: None,
    })
}

/// What the reports say of one exchange: R's key and its judgement of each third party's part.
struct Verdicts {
    csb_id: u32,
    responder: Option<Summary>,
    accepted: BTreeSet<String>,
    rejected: BTreeSet<String>,
}

impl Verdicts {
    fn new(csb_id: u32) -> Self {
        Self {
            csb_id,
            responder: None,
            accepted: BTreeSet::new(),
            rejected: BTreeSet::new(),
        }
    }

    fn take(&mut self, report: Report) {
        match report {
            Report::ResponderEstablished(s) if s.csb_id == self.csb_id => self.responder = Some(s),
            Report::PartAccepted {
                csb_id,
                third_party,
            } if csb_id == self.csb_id => {
                self.accepted.insert(third_party);
            }
            Report::PartRejected {
                csb_id,
                third_party,
            } if csb_id == self.csb_id => {
                self.rejected.insert(third_party);
            }
            _ => {}
        }
    }

    /// R has its key and has judged the parts of all `forwarding` third parties.
    fn settled(&self, forwarding: usize) -> bool {
        self.responder.is_some() && self.accepted.len() + self.rejected.len() >= forwarding
    }
}
