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
use m2msec_protocol::Millis;
use m2msec_protocol::e2sec::sim::{Configs, DEVICE, SERVER, Spec, addresses};
use m2msec_protocol::e2sec::{Epc, Error as E2secError, Party, PartyEvent, Variant};
use tokio::sync::mpsc;

use super::daemon::{Connects, EpcHandler, Outcome, PartyHandler, Report, Summary};
use super::{PROTOCOL, device_ops, group_name};

use crate::error::{Error, Result};
use crate::harness::demo::{Bound, Deployment, RunOptions, bind_layout};
use crate::harness::report::{Detail, Helpers, Progress, RunReport};
use crate::hex;
use crate::runtime::driver::{self, Context, Flow, Handler};

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

/// What the orchestrator gathered from the reports.
#[derive(Default)]
struct Seen {
    device: Option<(Summary, OpTally)>,
    device_refusal: Option<E2secError>,
}

impl Seen {
    fn take(&mut self, r: Report) {
        match r {
            Report::Established {
                party,
                summary,
                tally,
            } if party == DEVICE => self.device = Some((summary, tally)),
            Report::Rejected { party, error } if party == DEVICE => {
                self.device_refusal.get_or_insert(error);
            }
            _ => {}
        }
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
    let Bound {
        sockets,
        addrs,
        aliases,
    } = bind_layout(&addresses(), false).await?;
    let mut sockets = sockets.into_iter();
    let (Some(epc_socket), Some(device_socket), Some(server_socket)) =
        (sockets.next(), sockets.next(), sockets.next())
    else {
        return Err(Error::Usage("no socket for a role".into()));
    };

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
    let mut run = Deployment::new(&opts.run, RNG_DOMAIN, aliases)?;
    let addrs: [SocketAddr; 3] = addrs
        .try_into()
        .map_err(|_| Error::Usage("no socket for a role".into()))?;
    let configs = Configs::generate(&spec, &addrs, &mut *run.rng(100))?;
    let (report_tx, mut reports) = mpsc::unbounded_channel();

    progress.stage("starting the EPC and the device");
    let epc = run.driver("epc", epc_socket, Epc::new(configs.epc)?, 0)?;
    run.serve(epc, EpcHandler::new(Some(report_tx.clone())));
    let mut device = run.driver("device", device_socket, Party::new(configs.device)?, 1)?;
    let (party, rng) = device.endpoint_mut();
    party.request_warrant(driver::wall_clock(), rng)?;
    let handler = PartyHandler::new(
        DEVICE,
        &Connects::default(),
        driver::wall_clock(),
        Some(report_tx.clone()),
    );
    run.serve(device, handler);

    progress.stage("server: warrant, then authentication");
    let start = Instant::now();
    let mut d = run.driver("server", server_socket, Party::new(configs.server)?, 2)?;
    let (party, rng) = d.endpoint_mut();
    party.request_warrant(driver::wall_clock(), rng)?;
    let connects = Connects {
        peers: vec![DEVICE.into()],
        count: 1,
        interval: Duration::ZERO,
        // The expired-warrant run's one try is meant to fail.
        attempts: if opts.expired_warrant { 1 } else { 5 },
    };
    let sd = run.shutdown.clone();
    let tx = report_tx.clone();
    let expired_warrant = opts.expired_warrant;
    let task = tokio::spawn(async move {
        let party = PartyHandler::new(SERVER, &connects, driver::wall_clock(), Some(tx));
        let mut h = DemoServer {
            hold: None,
            stale: expired_warrant,
            party: if expired_warrant {
                party.without_refresh()
            } else {
                party
            },
        };
        d.run(&mut h, sd).await?;
        Ok::<_, Error>(h.party.into_outcomes())
    });
    let server_result = match tokio::time::timeout(opts.run.timeout, task).await {
        Ok(Ok(r)) => r,
        Ok(Err(join)) => Err(Error::Usage(format!("server task: {join}"))),
        Err(_) => Err(Error::Timeout(opts.run.timeout)),
    };
    let wall_ms = start.elapsed().as_secs_f64() * 1000.0;
    drop(report_tx);

    let (server, server_error) = match server_result {
        Ok(mut outcomes) => match outcomes.pop().map(Outcome::into_result) {
            Some(Ok(s)) => (Some(s), None),
            Some(Err(error)) => (None, Some(error)),
            None => (None, Some("the server stopped without a result".into())),
        },
        Err(e) => (None, Some(e.to_string())),
    };

    // The device established before it could see the confirmation's effect on the server,
    // or refused; give its report a moment to arrive.
    let mut seen = Seen::default();
    // On a bad link its confirmation may need every retransmission.
    let deadline =
        tokio::time::Instant::now() + m2msec_protocol::RetransmitPolicy::default().span();
    // (A refusal ends the wait only when the server has no key: a try it refused may have
    // been followed by one that worked.)
    while seen.device.is_none() && (server.is_some() || seen.device_refusal.is_none()) {
        match tokio::time::timeout_at(deadline, reports.recv()).await {
            Ok(Some(r)) => seen.take(r),
            Ok(None) | Err(_) => break,
        }
    }
    let wire = run.finish().await?;
    while let Ok(r) = reports.try_recv() {
        seen.take(r);
    }
    let session_key_match = match (&server, &seen.device) {
        (Some(s), Some((d, _))) => s.fingerprint == d.fingerprint,
        _ => false,
    };
    let ok = server.is_some() && session_key_match;
    let error = if ok {
        None
    } else if let Some(refusal) = &seen.device_refusal {
        Some(format!(
            "refused: {refusal}{}",
            server_error
                .as_ref()
                .map(|e| format!("; the server: {e}"))
                .unwrap_or_default()
        ))
    } else if let Some(e) = server_error {
        Some(e)
    } else if !ok {
        Some("the device reported no key, or a different one".into())
    } else {
        None
    };
    let expected_ok = !opts.expired_warrant;
    let as_expected = if opts.expired_warrant {
        !ok && matches!(seen.device_refusal, Some(E2secError::WarrantExpired { .. }))
    } else {
        ok
    };
    progress.stage(if ok {
        "done: SK agreed"
    } else {
        "done: failed"
    });
    let device_ops = seen
        .device
        .as_ref()
        .map(|(_, t)| device_ops(t, 1, 0))
        .unwrap_or_default();
    Ok(RunReport {
        protocol: PROTOCOL,
        ok,
        session_key_match,
        messages: wire.messages,
        bytes: wire.bytes,
        device_ops,
        wall_ms,
        error,
        expected_ok,
        as_expected,
        session: None,
        key_fingerprint: server.as_ref().map(|s| hex(&s.fingerprint)),
        suite: "proxy-signature",
        seed: opts.run.seed,
        pcap: opts.run.pcap_name(),
        helpers: Helpers {
            fault: opts.expired_warrant.then_some("expired-warrant"),
            ..Helpers::default()
        },
        detail: Detail::E2sec(super::report::Detail {
            group: group_name(opts.group),
            variant: opts.variant.name(),
        }),
    })
}

/// The demo's server: a [`PartyHandler`] that authenticates once with the device. In the
/// expired-warrant run (`stale`) it fetches one warrant, and the network holds its AuthInit
/// until that warrant has expired.
struct DemoServer {
    party: PartyHandler,
    stale: bool,
    hold: Option<Millis>,
}

impl Handler<Party> for DemoServer {
    fn on_event(&mut self, cx: &mut Context<'_, Party>, event: PartyEvent) -> Result<Flow> {
        self.party.on_event(cx, event)
    }

    fn next_wakeup(&self) -> Option<Millis> {
        self.party.next_wakeup()
    }

    fn on_wakeup(&mut self, cx: &mut Context<'_, Party>) -> Result<Flow> {
        let flow = self.party.on_wakeup(cx)?;
        if self.stale && self.hold.is_none() && self.party.authenticating() {
            let until = self.party.warrant_until().unwrap_or(cx.now);
            let wait = until.0.saturating_sub(driver::wall_clock().0) + 300;
            tracing::info!(
                held_ms = wait,
                "holding the server's AuthInit past its warrant's end"
            );
            self.hold = Some(driver::wall_clock().after(Duration::from_millis(wait)));
        }
        Ok(flow)
    }

    fn held_until(&self) -> Option<Millis> {
        self.hold
    }
}
