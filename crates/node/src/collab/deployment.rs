//! The command-line shape of a collab deployment ([`Params`]). Its keys, addresses and role
//! configs come from `m2msec_protocol::collab::sim`, re-exported here, so the demo, `provision`,
//! the traces and the benches all build deployments the same way.

use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::ots::OtsScheme;
use m2msec_crypto::split::SharingScheme;
use m2msec_protocol::collab::sim::Spec;
use m2msec_protocol::collab::{ProxyFault, Timeouts};

pub use m2msec_protocol::collab::sim::{
    CLIENT, Configs, Keys as DeploymentKeys, SERVER, Suite, TRUSTED, Topology, proxy_name,
};

use crate::error::Result;
use crate::harness::flags::{check_helpers, faulty_helpers, helper_faults};

/// Shape of a deployment.
#[derive(Clone, Debug)]
pub struct Params {
    /// Number of proxies (all used per session).
    pub proxies: u8,
    /// Fragments needed to rebuild the secret.
    pub threshold: u8,
    /// Sharing scheme.
    pub sharing: SharingScheme,
    /// Public-key algorithms.
    pub suite: Suite,
    /// AEAD of the pre-shared keys and of the keys derived in a session.
    pub aead: AeadSuite,
    /// One-time signature scheme of the proxies' keys.
    pub ots: OtsScheme,
    /// How many proxies misbehave (the last ones), and how.
    pub faulty: u8,
    /// The misbehaviour of the faulty proxies.
    pub fault: Option<ProxyFault>,
    /// Timeouts of every role.
    pub timeouts: Timeouts,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            proxies: 5,
            threshold: 3,
            sharing: SharingScheme::ReedSolomon,
            suite: Suite::Modern,
            aead: AeadSuite::Aes128Ccm8,
            ots: OtsScheme::Lamport,
            faulty: 0,
            fault: None,
            timeouts: Timeouts::default(),
        }
    }
}

impl Params {
    /// Checks the parameters fit together.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Usage`] naming the option that is wrong.
    pub fn check(&self) -> Result<()> {
        let shape = [self.proxies, self.threshold, self.faulty];
        check_helpers(
            "proxies",
            shape,
            self.fault.is_some(),
            "silent|forge|corrupt",
        )
    }

    /// Whether a run with these parameters is expected to establish a key: at most n − k
    /// proxies misbehave.
    #[must_use]
    pub fn expect_success(&self) -> bool {
        self.faulty == 0 || self.fault.is_none() || self.faulty <= self.proxies - self.threshold
    }

    /// Names of the misbehaving proxies (the last `faulty` ones; none without a fault).
    #[must_use]
    pub fn faulty_names(&self) -> Vec<String> {
        let faulty = if self.fault.is_some() { self.faulty } else { 0 };
        faulty_helpers(self.proxies, faulty)
            .map(proxy_name)
            .collect()
    }

    /// The deployment these parameters describe (the last `faulty` proxies misbehave).
    #[must_use]
    pub fn spec(&self) -> Spec {
        Spec {
            proxies: self.proxies,
            threshold: self.threshold,
            sharing: self.sharing,
            ots: self.ots,
            suite: self.suite,
            aead: self.aead,
            faults: helper_faults(self.proxies, self.faulty, self.fault),
            timeouts: self.timeouts,
        }
    }
}
