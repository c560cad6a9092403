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

use m2msec_protocol::mikey::{Initiator, ModeName, Responder, ThirdParty, ThirdPartyFault};
use m2msec_store::MemoryStore;

use super::daemon::{
    InitiatorHandler, InitiatorRuns, Outcome, Report, ResponderHandler, Summary, ThirdPartyHandler,
    start_exchange,
};
use super::deployment::{Configs, Params, addresses, fault_name};

use crate::error::Result;
use crate::harness::demo::{Deployment, Gather, Options, Reports, bind_layout};
use crate::harness::flags::SharingArg;
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
    let mut bound = bind_layout(&addresses(n), true).await?;
    let [i_socket, r_socket] = bound.take()?;

    let mut run = Deployment::new(&opts.run, RNG_DOMAIN, bound.aliases)?;
    progress.stage("generating RSA-2048 keys");
    let configs = Configs::generate(&params.spec(), &bound.addrs, &mut *run.rng(100))?;
    let reports = Reports::new();

    progress.stage("starting responder and third parties");
    let responder = Responder::new(configs.responder, [])?;
    let responder = run.driver("responder", r_socket, responder, 2)?;
    let store = Arc::new(MemoryStore::new());
    run.serve(responder, ResponderHandler::new(store, reports.to()));
    let third_parties = configs.third_parties.into_iter().zip(bound.sockets);
    for (i, (config, socket)) in third_parties.enumerate() {
        let name = config.identity.clone();
        let tp = ThirdParty::new(config, [])?;
        let tp = run.driver(name, socket, tp, 10 + i as u64)?;
        run.serve(
            tp,
            ThirdPartyHandler::new(Arc::new(MemoryStore::new()), None),
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
    let handler = InitiatorHandler::new(InitiatorRuns::default(), ());
    let (device_ops, outcome) = run
        .device("initiator", i_driver, handler, |h: InitiatorHandler| {
            h.into_outcomes().pop().map(Outcome::into_result)
        })
        .await;
    let wall_ms = start.elapsed().as_secs_f64() * 1000.0;

    // R established before it sent its verification; give its report a moment to arrive, and
    // R a moment to judge every part still on its way (a part that arrives after the TGK was
    // rebuilt is judged too): a third party counts as a participant once R accepted its part.
    let silent = match params.fault {
        Some(ThirdPartyFault::Silent) => params.faulty,
        _ => 0,
    };
    let mut verdicts = Verdicts {
        csb_id,
        forwarding: usize::from(n.saturating_sub(silent)),
        responder: None,
        accepted: BTreeSet::new(),
        rejected: BTreeSet::new(),
    };
    let within = outcome.is_ok().then_some(Duration::from_secs(2));
    let wire = run.finish_gathering(reports, within, &mut verdicts).await?;
    let Verdicts {
        responder,
        accepted,
        rejected,
        ..
    } = verdicts;
    let session_key_match = match (&outcome, &responder) {
        (Ok(i), Some(r)) => i.fingerprint == r.fingerprint,
        _ => false,
    };
    let error = match &outcome {
        Err(e) => Some(e.clone()),
        Ok(_) if responder.is_none() => {
            Some("the responder reported no key for this exchange".into())
        }
        Ok(_) if !session_key_match => Some("initiator and responder keys differ".into()),
        Ok(_) => None,
    };
    let ok = error.is_none();
    progress.done(ok, "key established");
    let distributed = params.mode == ModeName::Distributed;
    let detail = Detail::Mikey(super::report::Detail {
        mode: params.mode.name(),
        verified: outcome.as_ref().is_ok_and(|o| o.verified),
    });
    Ok(RunReport {
        device_ops: device_ops.into(),
        session: Some(format!("{csb_id:#010x}")),
        key_fingerprint: outcome.ok().map(|o| hex(&o.fingerprint)),
        suite: "classic",
        helpers: Helpers {
            participants: if ok {
                accepted.difference(&rejected).cloned().collect()
            } else {
                Vec::new()
            },
            proxies: n,
            threshold: if distributed { params.threshold } else { 0 },
            sharing: match SharingArg::of(params.sharing) {
                Some(name) if distributed => name.name(),
                _ => "none",
            },
            faulty: params.faulty,
            fault: params.fault.filter(|_| params.faulty > 0).map(fault_name),
            faulty_proxies: params.faulty_names(),
        },
        ..RunReport::new(super::PROTOCOL, &opts.run, wire, wall_ms, detail).judged(
            session_key_match,
            error,
            params.expect_success(),
        )
    })
}

/// What the reports say of one exchange: R's key and its judgement of each of the
/// `forwarding` third parties' parts.
struct Verdicts {
    csb_id: u32,
    forwarding: usize,
    responder: Option<Summary>,
    accepted: BTreeSet<String>,
    rejected: BTreeSet<String>,
}

impl Gather<Report> for Verdicts {
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

    /// R has its key and has judged the parts of all third parties that forward.
    fn settled(&self) -> bool {
        self.responder.is_some() && self.accepted.len() + self.rejected.len() >= self.forwarding
    }
}
