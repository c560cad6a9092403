//! What an SGA demo run says: the group, the gateway's key and the messages it stored.

use core::fmt;

use serde::Serialize;

use crate::harness::report::{RunReport, Summary, line};

/// SGA's own part of a [`RunReport`].
#[derive(Clone, Debug, Serialize)]
pub struct Detail {
    /// The key-exchange group ("ristretto255", "modp2048").
    pub group: &'static str,
    /// The gateway's public-key encryption ("x25519" or "rsa-oaep-2048").
    pub pke: &'static str,
    /// Application messages sent through the store-and-forward server.
    pub sent: u32,
    /// How many of them the server acknowledged as durably stored.
    pub stored: u32,
    /// How many the recipient received (each once, in order, when the run is ok).
    pub delivered: u32,
    /// Whether the server was killed and restarted between sending and delivery, when the
    /// demo was asked to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarted_gateway: Option<bool>,
}

impl Summary for Detail {
    fn summary(&self, r: &RunReport, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let established = format!("key established and {} messages delivered", self.delivered);
        writeln!(
            f,
            "{}: {}  ({}, {}, server key {})",
            r.protocol,
            r.head(&established, "failed"),
            self.group,
            r.suite,
            self.pke
        )?;
        r.write_keys(
            f,
            ["session", "key fingerprint"],
            ["device-i and device-j agree", "DEVICE-J DIFFERS"],
            "",
        )?;
        line(
            f,
            "messages",
            format_args!(
                "{} sent, {} stored by the server, {} delivered{}",
                self.sent,
                self.stored,
                self.delivered,
                match self.restarted_gateway {
                    Some(true) => " (server killed and restarted in between)",
                    Some(false) => " (server restart NOT done)",
                    None => "",
                }
            ),
        )?;
        r.write_tail(f, "", "device-i ops", ["failed as expected"; 2])
    }
}
