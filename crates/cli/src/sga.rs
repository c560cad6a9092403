//! `m2msec sga register|invite|send|inbox|status`: commands to a running `sga-device` daemon,
//! over its owner-only Unix control socket (see `m2msec_node::sga::control`). The device config
//! names the socket (`control`, by default beside its state file); the daemon does the protocol work and answers once it is done: once
//! registered, once the session key is in place, once the server holds the message durably.
//!
//! Exit status: 0 on success, 1 when the daemon reports a failure, 2 when no daemon answers or
//! the config is unusable.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};
use m2msec_node::sga::config::control_socket;
use m2msec_node::sga::control::{self, Request, Response};

use m2msec_node::sga::plug::SgaSuiteArg;

/// `m2msec sga`.
#[derive(Debug, Args)]
pub(crate) struct SgaArgs {
    /// The device's config file (the one its `m2msec run sga-device` uses).
    #[arg(long, short, global = true, default_value = "sga-device.toml")]
    config: PathBuf,
    /// Seconds to wait for the daemon's answer.
    #[arg(long, global = true, default_value_t = 30)]
    timeout: u64,
    /// Print the daemon's answer as one JSON object.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: SgaCommand,
}

#[derive(Debug, Subcommand)]
enum SgaCommand {
    /// Register the device with the server (the daemon does so by itself at its first start;
    /// this waits until it is registered).
    Register,
    /// Invite PEER: cipher negotiation (A1–A5) and key exchange (B1–B7) through the server;
    /// prints the session and its key fingerprint.
    Invite {
        /// The other device's identity.
        peer: String,
        /// The suite to negotiate (default: the device's first suite).
        #[arg(long, value_enum)]
        suite: Option<SgaSuiteArg>,
    },
    /// Send TEXT to a device this one has a session with; returns once the server holds it
    /// durably.
    Send {
        /// The recipient.
        #[arg(long)]
        to: String,
        /// The message (several words are joined by spaces).
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// Every message the device has received, in order of arrival.
    Inbox,
    /// The device's registration and sessions.
    Status,
}

pub(crate) fn sga(args: &SgaArgs) -> Result<ExitCode> {
    let socket = control_socket(&args.config)?;
    let request = match &args.command {
        SgaCommand::Register => Request::Register,
        SgaCommand::Invite { peer, suite } => Request::Invite {
            peer: peer.clone(),
            suite: suite.map(Into::into),
        },
        SgaCommand::Send { to, text } => Request::Send {
            to: to.clone(),
            text: text.join(" "),
        },
        SgaCommand::Inbox => Request::Inbox,
        SgaCommand::Status => Request::Status,
    };
    let answer = control::request(&socket, &request, Duration::from_secs(args.timeout.max(1)))?;
    if args.json {
        println!("{}", serde_json::to_string(&answer)?);
        return Ok(if matches!(answer, Response::Error { .. }) {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    match answer {
        Response::Registered { device } => println!("registered: {device}"),
        Response::Established(s) => println!(
            "session {} with {}: key fingerprint {} ({})",
            s.session, s.peer, s.fingerprint, s.suite
        ),
        Response::Stored {
            to,
            session,
            message_id,
        } => println!("stored: message {message_id} to {to} (session {session})"),
        Response::Inbox { messages } => {
            if messages.is_empty() {
                println!("(no messages)");
            }
            for m in messages {
                println!("{} #{}: {}", m.from, m.message_id, m.text);
            }
        }
        Response::Status {
            device,
            registered,
            sessions,
            unacknowledged,
        } => {
            println!(
                "{device}: {}, {} session(s), {unacknowledged} message(s) awaiting the server",
                if registered {
                    "registered"
                } else {
                    "not registered"
                },
                sessions.len()
            );
            for s in sessions {
                println!(
                    "  {} session {} key {} ({})",
                    s.peer, s.session, s.fingerprint, s.suite
                );
            }
        }
        Response::Error { error } => {
            eprintln!("error: {error}");
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}
