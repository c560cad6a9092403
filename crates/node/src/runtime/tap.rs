//! What went on the wire: datagram and byte counts of a run, and optionally a pcap file.
//!
//! Every driver of a run shares one [`Wiretap`] and records each datagram it *sends* (once, at
//! the sender), so the counts are what the roles sent, retransmissions included.
//!
//! A tap can also stand for a bad link ([`Wiretap::with_faults`]): each sender then draws the
//! fate of each datagram it sends (lost, duplicated, delayed behind later ones) from its own
//! seeded stream ([`m2msec_protocol::link::PerSender`], the model the in-memory network uses),
//! and [`send`](crate::runtime::driver::send) carries it out.

use std::fs::File;
use std::io::BufWriter;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use m2msec_protocol::link::{Fate, LinkFaults, PerSender};

use crate::error::{Error, Result};
use m2msec_wire::pcap::PcapWriter;

/// One datagram as the tap saw it (kept only when the tap records datagrams).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    /// Sender's address.
    pub from: SocketAddr,
    /// Receiver's address.
    pub to: SocketAddr,
    /// The UDP payload.
    pub payload: Vec<u8>,
}

/// Datagram and byte totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WireTotals {
    /// Datagrams sent.
    pub messages: u64,
    /// UDP payload bytes sent.
    pub bytes: u64,
}

#[derive(Debug, Default)]
struct Inner {
    totals: WireTotals,
    pcap: Option<(PathBuf, PcapWriter<BufWriter<File>>)>,
    pcap_error: Option<String>,
    /// Addresses written to the pcap file in place of the real ones (see
    /// [`Wiretap::with_pcap_aliases`]).
    pcap_aliases: Vec<(SocketAddr, SocketAddr)>,
    log: Option<Vec<Captured>>,
    /// The bad link, with each sender's stream of fates.
    faults: Option<PerSender>,
}

/// A shared, cheaply cloned recorder of sent datagrams.
#[derive(Clone, Debug, Default)]
pub struct Wiretap {
    inner: Arc<Mutex<Inner>>,
}

impl Wiretap {
    /// A tap that only counts.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A tap that also writes every datagram to a pcap file at `path` (created or truncated,
    /// owner-only: a capture may hold what a protocol sends in clear, such as identities).
    ///
    /// # Errors
    ///
    /// [`Error::Private`] if the file cannot be created or others may read an existing one;
    /// [`Error::Io`] if its header cannot be written.
    pub fn with_pcap(path: &Path) -> Result<Self> {
        let file = crate::private::open(path, crate::private::Write::Truncate)?;
        let writer = PcapWriter::new(BufWriter::new(file)).map_err(|e| Error::io(path, e))?;
        let tap = Self::new();
        tap.lock().pcap = Some((path.to_path_buf(), writer));
        Ok(tap)
    }

    /// A demo's tap: it writes a pcap file when asked for one, and stands for the link the
    /// demo was asked to run on, its draws seeded from the demo's seed ([`link_seed`]).
    ///
    /// # Errors
    ///
    /// As [`Wiretap::with_pcap`].
    pub fn for_demo(pcap: Option<&Path>, faults: LinkFaults, seed: Option<u64>) -> Result<Self> {
        let tap = match pcap {
            Some(path) => Self::with_pcap(path)?,
            None => Self::new(),
        };
        Ok(tap.with_faults(faults, link_seed(seed)))
    }

    /// Writes `alias` into the pcap file wherever a datagram's address is `real`: a demo that
    /// had to fall back to ephemeral ports still shows each role on its standard port, so a
    /// dissector picks the protocol by port as it would on a real network. Counts and kept
    /// datagrams keep the real addresses.
    #[must_use]
    pub fn with_pcap_aliases(self, aliases: Vec<(SocketAddr, SocketAddr)>) -> Self {
        self.lock().pcap_aliases = aliases;
        self
    }

    /// Makes the network between the roles lose, duplicate and reorder datagrams as `faults`
    /// says, each sender's draws seeded from `seed` and its address.
    #[must_use]
    pub fn with_faults(self, faults: LinkFaults, seed: u64) -> Self {
        if !faults.is_perfect() {
            self.lock().faults = Some(PerSender::new(faults, seed));
        }
        self
    }

    /// The fate of the next datagram `from` sends: one copy at once on a perfect link.
    #[must_use]
    pub fn fate(&self, from: SocketAddr) -> Fate {
        match self.lock().faults.as_mut() {
            Some(link) => link.fate(from),
            None => vec![0],
        }
    }

    /// Also keeps a copy of every datagram (for tests and traces).
    #[must_use]
    pub fn keeping_datagrams(self) -> Self {
        self.lock().log = Some(Vec::new());
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one datagram sent from `from` to `to`.
    pub fn record(&self, from: SocketAddr, to: SocketAddr, payload: &[u8]) {
        let mut inner = self.lock();
        inner.totals.messages += 1;
        inner.totals.bytes += payload.len() as u64;
        let mut failed = None;
        let alias = |a: SocketAddr, aliases: &[(SocketAddr, SocketAddr)]| {
            aliases
                .iter()
                .find(|(real, _)| *real == a)
                .map_or(a, |(_, shown)| *shown)
        };
        let (shown_from, shown_to) = (
            alias(from, &inner.pcap_aliases),
            alias(to, &inner.pcap_aliases),
        );
        if let Some((path, writer)) = inner.pcap.as_mut()
            && let Err(e) = writer.write_datagram(SystemTime::now(), shown_from, shown_to, payload)
        {
            failed = Some(format!("{}: {e}", path.display()));
        }
        if let Some(e) = failed {
            tracing::warn!(error = %e, "pcap capture stopped");
            inner.pcap = None;
            inner.pcap_error = Some(e);
        }
        if let Some(log) = inner.log.as_mut() {
            log.push(Captured {
                from,
                to,
                payload: payload.to_vec(),
            });
        }
    }

    /// Totals so far.
    #[must_use]
    pub fn totals(&self) -> WireTotals {
        self.lock().totals
    }

    /// The datagrams kept so far, if the tap keeps them.
    #[must_use]
    pub fn datagrams(&self) -> Vec<Captured> {
        self.lock().log.clone().unwrap_or_default()
    }

    /// Flushes the pcap file, if any.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if writing the capture failed at any point.
    pub fn flush(&self) -> Result<()> {
        let mut inner = self.lock();
        if let Some(e) = inner.pcap_error.take() {
            return Err(Error::Io {
                path: PathBuf::from("pcap"),
                source: std::io::Error::other(e),
            });
        }
        if let Some((path, writer)) = inner.pcap.as_mut() {
            writer.flush().map_err(|e| Error::io(path.clone(), e))?;
        }
        Ok(())
    }
}

/// The seed of a demo's bad link: from the run's seed, so that a seeded run meets the same
/// faults again; from the operating system otherwise.
#[must_use]
pub fn link_seed(seed: Option<u64>) -> u64 {
    seed.map_or_else(
        || {
            u64::from_le_bytes(m2msec_crypto::rng::random_array(
                &mut m2msec_crypto::rng::OsRng,
            ))
        },
        |s| s ^ 0x6c69_6e6b_6661_756c,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcap_shows_aliases_and_totals_keep_real_addresses() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("m2msec-tap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = dir.join("alias.pcap");
        let real_a = SocketAddr::from(([127, 0, 0, 1], 40_001));
        let real_b = SocketAddr::from(([127, 0, 0, 1], 40_002));
        let shown_a = SocketAddr::from(([127, 0, 0, 4], 2269));
        let shown_b = SocketAddr::from(([127, 0, 0, 3], 2269));
        let tap = Wiretap::with_pcap(&path)?
            .with_pcap_aliases(vec![(real_a, shown_a), (real_b, shown_b)])
            .keeping_datagrams();
        tap.record(real_a, real_b, b"mikey");
        tap.flush()?;
        assert_eq!(tap.totals().messages, 1);
        assert_eq!(tap.datagrams()[0].from, real_a);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let ip = &bytes[24 + 16..];
        assert_eq!(&ip[12..16], &[127, 0, 0, 4]);
        assert_eq!(&ip[16..20], &[127, 0, 0, 3]);
        assert_eq!(&ip[20..22], &2269u16.to_be_bytes());
        assert_eq!(&ip[22..24], &2269u16.to_be_bytes());
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
