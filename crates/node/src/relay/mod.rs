//! The relay's daemons: the CoAP proxy, the sink, and the client commands.
pub mod bench;
pub mod client;
pub mod config;
pub mod demo;
pub mod plug;
pub mod provision;
pub mod proxy;
pub mod report;
pub mod sink;
pub mod source;

pub use config::{ABOUT, PROTOCOL, ROLES};

/// Runs the relay daemon `role` as `m2msec run` asks.
///
/// # Errors
///
/// As the role's runner; [`crate::Error::Usage`] for a role that is not the relay's.
pub async fn run_role(
    role: &str,
    args: &crate::harness::daemon::RoleArgs,
    shutdown: crate::runtime::driver::Shutdown,
) -> crate::Result<crate::harness::daemon::Exit> {
    match role {
        "relay-proxy" => proxy::run_file(&args.config, shutdown).await,
        "relay-sink" => sink::run_file(&args.config, shutdown).await,
        other => {
            return Err(crate::Error::Usage(format!("{other}: not a relay role")));
        }
    }
    .map(|()| crate::harness::daemon::Exit::Served)
}
