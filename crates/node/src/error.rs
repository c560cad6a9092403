//! The one error type of the node crate: every variant names the file, address or role at fault.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Why a daemon, a demo run or a provisioning step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A config file is not valid TOML, misses a field, has an unknown one, or a value is wrong.
    #[error("config file {}: {message}", file.display())]
    Config {
        /// The config file.
        file: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A key or certificate file is missing, has the wrong PEM label or holds a malformed key.
    #[error("key file {}: {message}", file.display())]
    KeyFile {
        /// The key file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file that holds secrets or decrypted data could not be created owner-only, or exists
    /// and group or others may access it (the message names the `chmod` that fixes it).
    #[error(transparent)]
    Private(#[from] m2msec_store::private::PrivateError),
    /// A UDP socket could not be bound.
    #[error("cannot bind UDP socket {addr}: {source}")]
    Bind {
        /// The address from the config.
        addr: SocketAddr,
        /// The operating system's reason.
        source: io::Error,
    },
    /// Another socket operation failed.
    #[error("socket: {0}")]
    Socket(#[source] io::Error),
    /// The durable store failed; what depended on it was not sent.
    #[error("store: {0}")]
    Store(#[from] m2msec_store::Error),
    /// A cryptographic operation or key encoding failed.
    #[error("crypto: {0}")]
    Crypto(#[from] m2msec_crypto::Error),
    /// The collab protocol refused a configuration or failed a session.
    #[error("collab: {0}")]
    Collab(#[from] m2msec_protocol::collab::Error),
    /// MIKEY refused a configuration or failed an exchange.
    #[error("mikey: {0}")]
    Mikey(#[from] m2msec_protocol::mikey::Error),
    /// SGA refused a configuration or failed a step.
    #[error("sga: {0}")]
    Sga(#[from] m2msec_protocol::sga::Error),
    /// E2SEC refused a configuration or failed an exchange.
    #[error("e2sec: {0}")]
    E2sec(#[from] m2msec_protocol::e2sec::Error),
    /// The relay refused a configuration, a key or a message.
    #[error("relay: {0}")]
    Relay(#[from] m2msec_protocol::relay::Error),
    /// A CoAP exchange failed (timeout, reset, malformed or unexpected response).
    #[error("coap: {0}")]
    Coap(#[from] crate::runtime::coap::Error),
    /// A device daemon's control channel failed or the daemon refused a command.
    #[error("{0}")]
    Control(String),
    /// A run did not end within its overall time limit.
    #[error("no result within {0:?}")]
    Timeout(Duration),
    /// Options that do not fit together.
    #[error("invalid option: {0}")]
    Usage(String),
}

/// Result of the node crate.
pub type Result<T> = core::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn key(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::KeyFile {
            file: file.into(),
            message: message.into(),
        }
    }

    pub(crate) fn config(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Config {
            file: file.into(),
            message: message.into(),
        }
    }
}
