//! `m2msec demo --protocol mikey`: the whole deployment on loopback, each role a tokio task with
//! its own UDP socket on the MIKEY port, keys generated in memory, one exchange, one
//! [`RunReport`].
//!
//! Addresses: every role listens on UDP 2269 on its own loopback address — I on 127.0.0.4, R on
//! 127.0.0.3, TPi on 127.0.0.(20+i) ([`addresses`]), or elsewhere as [`bind_layout`] says, the
//! pcap file still showing the standard layout on port 2269.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use m2msec_crypto::split::SharingScheme;
use m2msec_protocol::mikey::{Initiator, ModeName, Responder, ThirdParty, ThirdPartyFault};
use m2msec_store::MemoryStore;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::daemon::{
    InitiatorHandler, InitiatorRuns, Outcome, Report, ResponderHandler, Summary, ThirdPartyHandler,
    start_exchange,
};
use super::deployment::{Configs, Params, addresses, fault_name};

use crate::error::{Error, Result};
use crate::harness::demo::{Bound, Deployment, Options, bind_layout, run_device};
use crate::harness::report::{Detail, Helpers, Progress, RunReport};
use crate::hex;
use crate::runtime::driver;

/// Options of one MIKEY demo run.
pub type DemoOptions = Options<Params>;

/// Seeded RNG streams of this demo's roles ("MIKEY" and the role's number).
const RNG_DOMAIN: u64 = 0x4d49_4b45_5900;

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
    } = bind_layout(&addresses(n), true).await?;
    let mut sockets = sockets.into_iter();
    let (Some(i_socket), Some(r_socket)) = (sockets.next(), sockets.next()) else {
        return Err(Error::Usage(
            "no socket for the initiator or responder".into(),
        ));
    };
    let tp_sockets: Vec<UdpSocket> = sockets.collect();

    let mut run = Deployment::new(&opts.run, RNG_DOMAIN, aliases)?;
    progress.stage("generating RSA-2048 keys");
    let configs = Configs::generate(&params.spec(), &addrs, &mut *run.rng(100))?;
    let (report_tx, mut reports) = mpsc::unbounded_channel();

    progress.stage("starting responder and third parties");
    let responder = Responder::new(configs.responder, [])?;
    let responder = run.driver("responder", r_socket, responder, 2)?;
    run.serve(
        responder,
        ResponderHandler::new(Arc::new(MemoryStore::new()), Some(report_tx.clone())),
    );
    for (i, (config, socket)) in configs
        .third_parties
        .into_iter()
        .zip(tp_sockets)
        .enumerate()
    {
        let name = config.identity.clone();
        let tp = ThirdParty::new(config, [])?;
        let tp = run.driver(name.clone(), socket, tp, 10 + i as u64)?;
        let store = Arc::new(MemoryStore::new());
        run.serve(
            tp,
            ThirdPartyHandler::new(name, store, Some(report_tx.clone())),
        );
    }

    progress.stage(&format!("{} exchange", params.mode.name()));
    let initiator = Initiator::new(configs.initiator)?;
    let mut i_driver = run.driver("initiator", i_socket, initiator, 1)?;
    let start = Instant::now();
    let csb_id = {
        let (initiator, rng) = i_driver.endpoint_mut();
        start_exchange(initiator, driver::wall_clock(), rng)?
    };
    let handler = InitiatorHandler::new(InitiatorRuns::default(), Some(report_tx));
    let (device_ops, outcome, error) = run_device(
        "initiator",
        i_driver,
        handler,
        run.shutdown.clone(),
        opts.run.timeout,
        |h: InitiatorHandler| h.into_outcomes().pop().map(Outcome::into_result),
    )
    .await;
    let wall_ms = start.elapsed().as_secs_f64() * 1000.0;

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
    let wire = run.finish().await?;
    while let Ok(r) = reports.try_recv() {
        verdicts.take(r);
    }
    let Verdicts {
        responder,
        accepted,
        rejected,
        ..
    } = verdicts;
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
        error,
        expected_ok,
        as_expected: ok == expected_ok,
        session: Some(format!("{csb_id:#010x}")),
        key_fingerprint: outcome.as_ref().map(|o| hex(&o.fingerprint)),
        suite: "classic",
        seed: opts.run.seed,
        pcap: opts.run.pcap_name(),
        helpers: Helpers {
            participants: if ok {
                accepted.difference(&rejected).cloned().collect()
            } else {
                Vec::new()
            },
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
        },
        detail: Detail::Mikey(super::report::Detail {
            mode: params.mode.name(),
            verified: outcome.as_ref().is_some_and(|o| o.verified),
        }),
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
            Report::Part {
                csb_id,
                third_party,
                fits,
            } if csb_id == self.csb_id => {
                let judged = if fits {
                    &mut self.accepted
                } else {
                    &mut self.rejected
                };
                judged.insert(third_party);
            }
            _ => {}
        }
    }

    /// R has its key and has judged the parts of all `forwarding` third parties.
    fn settled(&self, forwarding: usize) -> bool {
        self.responder.is_some() && self.accepted.len() + self.rejected.len() >= forwarding
    }
}
