//! The command-line shape of a MIKEY deployment ([`Params`]). Keys, addresses and role configs
//! come from `m2msec_protocol::mikey::sim`, re-exported here, so the demo, the traces and the
//! benches build deployments the same way.

use m2msec_crypto::split::SharingScheme;
use m2msec_protocol::mikey::sim::Spec;
use m2msec_protocol::mikey::{ModeName, Policy, ThirdPartyFault};

pub use m2msec_protocol::mikey::sim::{
    Configs, FIRST_THIRD_PARTY_ROLE, INITIATOR, INITIATOR_ROLE, RESPONDER, RESPONDER_ROLE,
    addresses, third_party_name,
};

use crate::error::{Error, Result};
use crate::harness::flags::{check_helpers, faulty_helpers, helper_faults};

/// Shape of a deployment.
#[derive(Clone, Debug)]
pub struct Params {
    /// How the initiator sends its TGK.
    pub mode: ModeName,
    /// Third parties (n), distributed mode only.
    pub third_parties: u8,
    /// Parts needed to rebuild the TGK (k), distributed mode only.
    pub threshold: u8,
    /// How the TGK is split.
    pub sharing: SharingScheme,
    /// How many third parties misbehave (the last ones), and how.
    pub faulty: u8,
    /// The misbehaviour of the faulty third parties.
    pub fault: Option<ThirdPartyFault>,
    /// Shared choices of every role.
    pub policy: Policy,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            mode: ModeName::Distributed,
            third_parties: 5,
            threshold: 3,
            sharing: SharingScheme::ReedSolomon,
            faulty: 0,
            fault: None,
            policy: Policy::default(),
        }
    }
}

/// The name of a third party's fault on the command line and in reports.
#[must_use]
pub fn fault_name(f: ThirdPartyFault) -> &'static str {
    match f {
        ThirdPartyFault::Silent => "silent",
        ThirdPartyFault::AlterPart => "alter",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

impl Params {
    /// Checks the parameters fit together.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] naming the option that is wrong.
    pub fn check(&self) -> Result<()> {
        if self.mode != ModeName::Distributed {
            if self.faulty > 0 {
                return Err(Error::Usage(
                    "--faulty applies to the distributed mode's third parties only".into(),
                ));
            }
            return Ok(());
        }
        let shape = [self.third_parties, self.threshold, self.faulty];
        check_helpers("third-parties", shape, self.fault.is_some(), "silent|alter")
    }

    /// Third parties actually deployed (none outside the distributed mode).
    #[must_use]
    pub fn deployed_third_parties(&self) -> u8 {
        if self.mode == ModeName::Distributed {
            self.third_parties
        } else {
            0
        }
    }

    /// Whether a run is expected to establish a key: at most n − k third parties misbehave.
    #[must_use]
    pub fn expect_success(&self) -> bool {
        self.mode != ModeName::Distributed
            || self.faulty == 0
            || self.fault.is_none()
            || self.faulty <= self.third_parties.saturating_sub(self.threshold)
    }

    /// Names of the misbehaving third parties (the last `faulty` ones).
    #[must_use]
    pub fn faulty_names(&self) -> Vec<String> {
        if self.fault.is_none() || self.mode != ModeName::Distributed {
            return Vec::new();
        }
        faulty_helpers(self.third_parties, self.faulty)
            .map(third_party_name)
            .collect()
    }

    /// The deployment these parameters describe (the last `faulty` third parties misbehave).
    #[must_use]
    pub fn spec(&self) -> Spec {
        Spec {
            mode: self.mode,
            third_parties: self.third_parties,
            threshold: self.threshold,
            sharing: self.sharing,
            faults: helper_faults(self.third_parties, self.faulty, self.fault),
            policy: self.policy,
        }
    }
}
