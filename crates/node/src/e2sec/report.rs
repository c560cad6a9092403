//! What an E2SEC demo run says: the group and the proxy-signature variant.

use core::fmt;

use serde::Serialize;

use crate::harness::report::{RunReport, Summary};

/// E2SEC's own part of a [`RunReport`].
#[derive(Clone, Debug, Serialize)]
pub struct Detail {
    /// The group of the proxy signatures and the key agreement.
    pub group: &'static str,
    /// The proxy-signature variant ("elgamal", "schnorr", "dsa").
    pub variant: &'static str,
}

impl Summary for Detail {
    fn summary(&self, r: &RunReport, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {}  ({} proxy signatures, {}; warrants from the EPC, server initiates)",
            r.protocol,
            r.head("SK agreed", "no session key"),
            self.variant,
            self.group,
        )?;
        r.write_keys(
            f,
            ["session", "SK fingerprint"],
            ["device and server agree", "DEVICE DIFFERS"],
            "",
        )?;
        r.write_tail(
            f,
            "",
            "device ops",
            [
                "refused as expected: the warrant had expired",
                "UNEXPECTED: failed, but not for the expired warrant",
            ],
        )
    }
}
