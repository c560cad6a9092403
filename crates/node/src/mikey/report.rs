//! What a MIKEY demo run says: its mode and whether the responder verified the key.

use core::fmt;

use serde::Serialize;

use crate::harness::report::{RunReport, Summary};

/// MIKEY's own part of a [`RunReport`].
#[derive(Clone, Debug, Serialize)]
pub struct Detail {
    /// How the key travelled: "psk", "pk" or "distributed".
    pub mode: &'static str,
    /// Whether the responder proved it holds the key (the verification message).
    pub verified: bool,
}

impl Summary for Detail {
    fn summary(&self, r: &RunReport, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &r.helpers;
        let shape = if self.mode == "distributed" {
            format!(
                "distributed mode, {} third parties, threshold {}, {}",
                h.proxies,
                h.threshold,
                h.sharing_name()
            )
        } else {
            format!("{} mode", self.mode)
        };
        let head = r.head("key established", "no key established");
        writeln!(f, "{}: {head}  ({shape})", r.protocol)?;
        let verified = if self.verified {
            ", verified by the responder"
        } else {
            ""
        };
        r.write_keys(
            f,
            ["CSB ID", "TEK fingerprint"],
            ["initiator and responder agree", "RESPONDER DIFFERS"],
            verified,
        )?;
        h.write(f, "parts accepted", "")?;
        let failed =
            "failed as expected: more third parties misbehaved than the threshold tolerates";
        r.write_tail(f, " (UDP port 2269)", "initiator ops", [failed, failed])
    }
}
