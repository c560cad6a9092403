//! What the `m2msec` commands do for the relay: its own flags, and the options its demo,
//! provisioning and bench take from the flags of every command.

use std::path::Path;
use std::time::Duration;

use clap::Args;
use m2msec_crypto::rng::CryptoRng;

use super::bench as relay_bench;
use crate::error::{Error, Result};
use crate::harness::demo::RunOptions;
use crate::harness::provision::Provisioned;
use crate::harness::report::{Progress, RunReport};
use crate::protocols::{BenchFlags, BenchOutput, DemoFlags, ProvisionFlags};

/// The relay demo's flags.
#[derive(Clone, Debug, Args)]
#[group(skip)]
pub struct DemoArgs {
    /// Relay: data messages per section (a new section key after this many).
    #[arg(long, default_value_t = 20)]
    pub relay_rotate: u32,
    /// Relay: plaintext bytes per message.
    #[arg(long, default_value_t = 48)]
    pub relay_size: usize,
    /// Relay: messages streamed before sink 1 is designated, before sink 2 is added, and after.
    #[arg(long, value_delimiter = ',', num_args = 3, default_values_t = [60u32, 40, 60])]
    pub relay_phases: Vec<u32>,
}

impl DemoArgs {
    /// The three phases.
    #[must_use]
    pub fn phases(&self) -> [u32; 3] {
        let p = |i: usize| self.relay_phases.get(i).copied().unwrap_or(0);
        [p(0), p(1), p(2)]
    }
}

/// The relay's flags of `m2msec provision`.
#[derive(Clone, Debug, Args)]
#[group(skip)]
pub struct ProvisionArgs {
    /// Relay: CoAP port of the proxy and the sinks (each on its own 127.0.0.x address).
    #[arg(long, default_value_t = super::config::COAP_PORT)]
    pub relay_port: u16,
    /// Relay: plain-UDP port of the sinks.
    #[arg(long, default_value_t = super::provision::SINK_UDP_PORT)]
    pub relay_udp_port: u16,
}

/// The relay's flags of `m2msec bench`.
#[derive(Clone, Debug, Args)]
#[group(skip)]
pub struct BenchArgs {
    /// Relay: messages streamed through the proxy.
    #[arg(long, default_value_t = 2000)]
    pub relay_messages: u32,
    /// Relay: plaintext bytes per streamed message.
    #[arg(long, default_value_t = 1024)]
    pub relay_size: usize,
}

/// One demo run.
///
/// # Errors
///
/// As [`super::demo::run`].
pub async fn demo(
    flags: &DemoFlags,
    run: RunOptions,
    progress: &dyn Progress,
) -> Result<RunReport> {
    let opts = super::demo::DemoOptions {
        phases: flags.relay.phases(),
        size: flags.relay.relay_size,
        rotate_messages: flags.relay.relay_rotate,
        run,
    };
    super::demo::run(&opts, progress).await
}

/// What `m2msec provision` says to do next.
pub const NEXT_STEPS: &str = "relay: start the proxy and the sinks, each in its own terminal, \
                              then store, send and forward with `m2msec relay` \
                              (examples/relay-source.toml):";

/// Writes a local deployment into `dir`.
///
/// # Errors
///
/// As [`super::provision::provision`].
pub fn provision(
    dir: &Path,
    flags: &ProvisionFlags,
    force: bool,
    rng: &mut dyn CryptoRng,
) -> Result<Provisioned> {
    let opts = super::provision::ProvisionOptions {
        port: flags.relay.relay_port,
        udp_port: flags.relay.relay_udp_port,
        force,
    };
    super::provision::provision(dir, &opts, rng)
}

/// The figures of `m2msec bench`: AFGH's rates, then a stream through a durable proxy (its
/// own process, this binary) against raw UDP forwarding.
///
/// # Errors
///
/// As [`relay_bench::stream_throughput`]; the runtime cannot start.
pub fn bench(flags: &BenchFlags) -> Result<BenchOutput> {
    let rates = relay_bench::afgh_rates(Duration::from_millis(400), flags.seed)?;
    let mut figures = relay_bench::afgh_figures(&rates);
    let opts = relay_bench::StreamOptions {
        messages: flags.relay.relay_messages.max(1),
        size: flags.relay.relay_size.max(4),
        proxy_exe: std::env::current_exe().ok(),
        seed: flags.seed,
        ..relay_bench::StreamOptions::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the tokio runtime: {e}")))?;
    let stream = rt.block_on(relay_bench::stream_throughput(&opts))?;
    figures.extend(relay_bench::stream_figures(&stream));
    let note = format!(
        "  (AFGH on BLS12-381: re-encryption {:.1}x as fast as encryption; the paper \
         found 4-8x with its symmetric pairing. Stream: {} of {} messages of {} \
         bytes through the proxy with durable storage, against raw UDP forwarding)",
        rates.reencrypt / rates.encrypt,
        stream.delivered,
        stream.messages,
        opts.size
    );
    Ok(BenchOutput {
        figures,
        table: None,
        note: Some(note),
    })
}
