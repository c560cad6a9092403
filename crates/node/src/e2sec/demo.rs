//! `m2msec demo --protocol e2sec`: the EPC, the MTC device and the MTC server each a tokio task
//! with its own UDP socket on loopback, keys generated in memory; both parties fetch warrants,
//! the server authenticates the device, one [`RunReport`].
//!
//! Addresses: every role on UDP 5700 of its own loopback address — EPC 127.0.0.2, device
//! 127.0.0.4, server 127.0.0.3 (`e2sec::sim::addresses`); if one is taken (another demo runs) or
//! does not exist, ephemeral ports on 127.0.0.1, the pcap file still showing the standard layout.
//!
//! `expired_warrant`: the EPC issues warrants valid for one second; the server takes its warrant,
//! builds its AuthInit at once, and the network holds that datagram until the warrant is past
//! its end. The device refuses it with the typed error ([`E2secError::WarrantExpired`]) and
//! answers with a refusal (code 2), which the server reports. The run is expected to fail so.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use m2msec_crypto::group::{GroupId, OpTally};
use m2msec_protocol::e2sec::sim::{Configs, DEVICE, Spec, addresses};
use m2msec_protocol::e2sec::{Epc, Error as E2secError, Party, Variant};

use super::daemon::{Connects, Outcome, PartyHandler, Report, Summary};
use super::{PROTOCOL, device_ops, group_name};

use crate::error::{Error, Result};
use crate::harness::daemon::Runs;
use crate::harness::demo::{Deployment, Gather, Reports, RunOptions, bind_layout};
use crate::harness::report::{Detail, Helpers, Progress, RunReport};
use crate::hex;
use crate::runtime::driver::{self, Logs};

/// Warrant validity in the expired-warrant run.
pub const SHORT_VALIDITY: Duration = Duration::from_secs(1);

/// Options of one E2SEC demo run.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// The group.
    pub group: GroupId,
    /// The proxy-signature variant.
    pub variant: Variant,
    /// Let the server's warrant expire before its AuthInit reaches the device.
    pub expired_warrant: bool,
    /// Seed, capture, time limit and link of the run.
    pub run: RunOptions,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            group: GroupId::Ristretto255,
            variant: Variant::ElGamal,
            expired_warrant: false,
            run: RunOptions::default(),
        }
    }
}

/// Seeded RNG streams of this demo's roles ("E2SEC" and the role's number).
const RNG_DOMAIN: u64 = 0x4532_5345_4300;

/// What the orchestrator gathered from the device's reports.
struct Seen {
    device: Option<(Summary, OpTally)>,
    device_refusal: Option<E2secError>,
    /// Whether the server has a key (then a refusal does not end the wait: a try it refused
    /// may have been followed by one that worked).
    server_keyed: bool,
}

impl Gather<Report> for Seen {
    fn take(&mut self, r: Report) {
        match r {
            Report::Established { summary, tally } => self.device = Some((summary, tally)),
            Report::Rejected(error) => {
                self.device_refusal.get_or_insert(error);
            }
        }
    }

    fn settled(&self) -> bool {
        self.device.is_some() || (!self.server_keyed && self.device_refusal.is_some())
    }
}

/// Runs one E2SEC authentication over real UDP on loopback.
///
/// # Errors
///
/// Set-up errors only (sockets, keys, pcap file); an exchange that fails — expectedly or not —
/// is a [`RunReport`] with `ok: false` and its `error`.
pub async fn run(opts: &DemoOptions, progress: &dyn Progress) -> Result<RunReport> {
    if opts.group == GroupId::Modp2048 {
        return Err(Error::Usage(
            "E2SEC runs over ffdh1024, ffdh2048 or ristretto".into(),
        ));
    }
    progress.stage("binding sockets");
    let mut bound = bind_layout(&addresses(), false).await?;
    let [epc_socket, device_socket, server_socket] = bound.take()?;

    progress.stage("generating keys");
    let spec = Spec {
        group: opts.group,
        variant: opts.variant,
        validity: if opts.expired_warrant {
            SHORT_VALIDITY
        } else {
            Duration::from_secs(3600)
        },
        timeout: m2msec_protocol::e2sec::sim::Spec::default().timeout,
    };
    let mut run = Deployment::new(&opts.run, RNG_DOMAIN, bound.aliases)?;
    let addrs: [SocketAddr; 3] = bound
        .addrs
        .try_into()
        .map_err(|_| Error::Usage("no socket for a role".into()))?;
    let configs = Configs::generate(&spec, &addrs, &mut *run.rng(100))?;
    let reports = Reports::new();

    progress.stage("starting the EPC and the device");
    let epc = run.driver("epc", epc_socket, Epc::new(configs.epc)?, 0)?;
    run.serve(epc, Logs);
    let mut device = run.driver("device", device_socket, Party::new(configs.device)?, 1)?;
    let (party, rng) = device.endpoint_mut();
    party.request_warrant(driver::wall_clock(), rng)?;
    let connects = Connects::default();
    let handler = PartyHandler::new(&connects, driver::wall_clock(), reports.to());
    run.serve(device, handler);

    progress.stage("server: warrant, then authentication");
    let start = Instant::now();
    let mut d = run.driver("server", server_socket, Party::new(configs.server)?, 2)?;
    let (party, rng) = d.endpoint_mut();
    party.request_warrant(driver::wall_clock(), rng)?;
    let connects = Connects {
        peers: vec![DEVICE.into()],
        runs: Runs {
            count: 1,
            interval: Duration::ZERO,
            // The expired-warrant run's one try is meant to fail.
            attempts: if opts.expired_warrant { 1 } else { 5 },
        },
    };
    let mut server = PartyHandler::new(&connects, driver::wall_clock(), None);
    if opts.expired_warrant {
        server = server.held_past_warrant();
    }
    let (_, server) = run
        .device("server", d, server, |h: PartyHandler| {
            h.into_outcomes().pop().map(Outcome::into_result)
        })
        .await;
    let wall_ms = start.elapsed().as_secs_f64() * 1000.0;

    // The device established before it could see the confirmation's effect on the server,
    // or refused; give its report a moment to arrive. On a bad link its confirmation may need
    // every retransmission.
    let mut seen = Seen {
        device: None,
        device_refusal: None,
        server_keyed: server.is_ok(),
    };
    let within = m2msec_protocol::RetransmitPolicy::default().span();
    let wire = run
        .finish_gathering(reports, Some(within), &mut seen)
        .await?;
    let session_key_match = match (&server, &seen.device) {
        (Ok(s), Some((d, _))) => s.fingerprint == d.fingerprint,
        _ => false,
    };
    let ok = server.is_ok() && session_key_match;
    let error = match (&seen.device_refusal, &server) {
        _ if ok => None,
        (Some(refusal), Err(e)) => Some(format!("refused: {refusal}; the server: {e}")),
        (Some(refusal), Ok(_)) => Some(format!("refused: {refusal}")),
        (None, Err(e)) => Some(e.clone()),
        (None, Ok(_)) => Some("the device reported no key, or a different one".into()),
    };
    // The expired-warrant run fails as expected only for the expired warrant.
    let failed_right = !opts.expired_warrant
        || matches!(seen.device_refusal, Some(E2secError::WarrantExpired { .. }));
    progress.done(ok, "SK agreed");
    let detail = Detail::E2sec(super::report::Detail {
        group: group_name(opts.group),
        variant: opts.variant.name(),
    });
    let report = RunReport {
        device_ops: seen
            .device
            .as_ref()
            .map(|(_, t)| device_ops(t, 1, 0))
            .unwrap_or_default(),
        key_fingerprint: server.ok().map(|s| hex(&s.fingerprint)),
        suite: "proxy-signature",
        helpers: Helpers {
            fault: opts.expired_warrant.then_some("expired-warrant"),
            ..Helpers::default()
        },
        ..RunReport::new(PROTOCOL, &opts.run, wire, wall_ms, detail).judged(
            session_key_match,
            error,
            !opts.expired_warrant,
        )
    };
    Ok(RunReport {
        as_expected: report.as_expected && failed_right,
        ..report
    })
}
