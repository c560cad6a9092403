//! What a collab demo run says: nothing beyond the common fields and its proxies.

use core::fmt;

use serde::Serialize;

use crate::harness::report::{RunReport, Summary};

/// collab's own part of a [`RunReport`]: empty, its proxies are the report's helpers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Detail {}

impl Summary for Detail {
    fn summary(&self, r: &RunReport, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &r.helpers;
        writeln!(
            f,
            "{}: {}  ({} suite, {} proxies, threshold {}, {})",
            r.protocol,
            r.head("key established", "no key established"),
            r.suite,
            h.proxies,
            h.threshold,
            h.sharing_name()
        )?;
        r.write_keys(
            f,
            ["session", "key fingerprint"],
            ["client and server agree", "SERVER DIFFERS"],
            "",
        )?;
        let took_part = h.faulty_proxies.iter().any(|p| h.participants.contains(p));
        let note = if r.ok && !took_part {
            " - none of them took part"
        } else {
            ""
        };
        h.write(f, "participants", note)?;
        let failed = "failed as expected: more proxies misbehaved than the threshold tolerates";
        r.write_tail(f, "", "client ops", [failed, failed])
    }
}
