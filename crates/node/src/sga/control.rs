//! The control channel of an `sga-device` daemon: how `m2msec sga register|invite|send|inbox`
//! talk to the device that lives in the daemon.
//!
//! The protocol's [`Device`](m2msec_protocol::sga::Device) keeps its sessions (keys, counters)
//! in memory, so the device must live somewhere between commands: in its daemon. The channel
//! can read the device's decrypted inbox and send and invite as the device, so only the
//! daemon's own user may use it. It is a Unix domain socket (by default `NAME.sock` beside the
//! state database `NAME.redb`), for two reasons a loopback port cannot give:
//! - the kernel checks file permissions on `connect(2)`: the socket is `0600` in a directory
//!   m2msec creates `0700`, so another local user cannot even connect;
//! - the daemon asks the kernel who connected (`SO_PEERCRED`) and answers only a peer whose
//!   user id owns the socket, so a socket or directory made wider by hand still answers nobody
//!   else. Such a peer is closed without an answer and logged.
//!
//! Each connection carries one JSON [`Request`] line and gets one JSON [`Response`] line back
//! once the device has an answer.
//!
//! ```text
//! → {"op":"invite","peer":"device-j","suite":"chacha20-poly1305"}
//! ← {"result":"established","peer":"device-j","session":"…","fingerprint":"…","suite":"chacha20-poly1305"}
//! → {"op":"send","to":"device-j","text":"temperature 21.5"}
//! ← {"result":"stored","to":"device-j","session":"…","message_id":0}
//! → {"op":"inbox"}
//! ← {"result":"inbox","messages":[{"from":"device-i","session":"…","message_id":0,"text":"…"}]}
//! ```

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use m2msec_protocol::sga::control_line;
pub use m2msec_protocol::sga::{InboxEntry, Request, Response, SessionInfo};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::daemon::Command;
use crate::error::{Error, Result};
use crate::private;
use crate::runtime::driver::Shutdown;
use crate::runtime::log_limit::LogLimit;

/// The largest request or answer, in bytes (an answer holds the whole inbox).
pub const MAX_CONTROL_MESSAGE: u64 = 16 * 1024 * 1024;

/// How long a connection may take to send its request.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// The longest socket path the kernel accepts (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The control socket of a device whose state database is `state`, when its config names none.
#[must_use]
pub fn default_socket(state: &Path) -> PathBuf {
    state.with_extension("sock")
}

/// Sends `request` to the daemon listening on `socket` and waits up to `timeout` for its answer.
///
/// # Errors
///
/// [`Error::Control`] when nobody listens (naming the socket and the command that starts the
/// daemon), when the socket is not this user's, or when the answer is malformed or late. A
/// command the daemon refused is `Ok(Response::Error { .. })`.
pub fn request(socket: &Path, request: &Request, timeout: Duration) -> Result<Response> {
    let shown = socket.display();
    let mut stream = std::os::unix::net::UnixStream::connect(socket).map_err(|e| {
        Error::Control(match e.kind() {
            std::io::ErrorKind::PermissionDenied => format!(
                "permission denied on the control socket {shown}: it is only for the user who runs the sga-device daemon"
            ),
            _ => format!(
                "no sga-device daemon listens on {shown} ({e}; start it with `m2msec run sga-device --config FILE`)"
            ),
        })
    })?;
    let timeout = timeout.max(Duration::from_millis(1));
    stream
        .set_read_timeout(Some(timeout))
        .map_err(Error::Socket)?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(Error::Socket)?;
    let bytes = control_line(request)
        .map_err(|e| Error::Control(format!("cannot encode the request: {e}")))?;
    let unanswered = || {
        Error::Control(format!(
            "the sga-device daemon on {shown} closed the connection without an answer (it answers only the user it runs as)"
        ))
    };
    if let Err(e) = stream.write_all(&bytes) {
        return Err(match e.kind() {
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => unanswered(),
            _ => Error::Control(format!("cannot send to {shown}: {e}")),
        });
    }
    let mut answer = Vec::new();
    let read =
        std::io::BufReader::new(stream.take(MAX_CONTROL_MESSAGE)).read_until(b'\n', &mut answer);
    match read {
        Ok(0) => Err(unanswered()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Err(unanswered()),
        Ok(_) => serde_json::from_slice(&answer)
            .map_err(|e| Error::Control(format!("malformed answer from {shown}: {e}"))),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(Error::Control(format!(
                "the sga-device daemon on {shown} did not answer within {:?}",
                timeout
            )))
        }
        Err(e) => Err(Error::Control(format!("cannot read from {shown}: {e}"))),
    }
}

/// A bound control socket, removed when dropped.
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    owner: u32,
}

impl ControlSocket {
    /// Binds the control socket at `path`: its directory created `0700` if missing, the socket
    /// `0600`. A stale socket left by a daemon that died is replaced; a live one, or a file
    /// that is not a socket, is refused.
    ///
    /// # Errors
    ///
    /// [`Error::Control`] for a path too long for a Unix socket, a live daemon or a file in the
    /// way; [`Error::Private`] or [`Error::Io`] naming the path otherwise.
    pub fn bind(path: &Path) -> Result<Self> {
        use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
        if path.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(Error::Control(format!(
                "control socket {}: a Unix socket path has at most {MAX_SOCKET_PATH} bytes; set `control` to a shorter path",
                path.display()
            )));
        }
        private::create_parent(path)?;
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(Error::Control(format!(
                        "control socket {}: another sga-device daemon is listening on it",
                        path.display()
                    )));
                }
                std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
            }
            Ok(_) => {
                return Err(Error::Control(format!(
                    "control socket {}: a file that is not a socket is in the way",
                    path.display()
                )));
            }
            Err(_) => {}
        }
        let listener = UnixListener::bind(path).map_err(|e| Error::io(path, e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(path, e))?;
        let owner = std::fs::metadata(path)
            .map_err(|e| Error::io(path, e))?
            .uid();
        Ok(Self {
            listener,
            path: path.to_path_buf(),
            owner,
        })
    }

    /// Where it listens.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves requests until `shutdown`: each connection of the socket's owner one [`Request`]
    /// handed to the device node through `commands`, and its [`Response`]. A connection of any
    /// other user is closed unanswered.
    pub async fn serve(self, commands: mpsc::Sender<Command>, mut shutdown: Shutdown) {
        // Another local user may knock as often as it likes: once per user in an interval.
        let mut refused = LogLimit::new("control connection");
        loop {
            let stream = tokio::select! {
                () = shutdown.wait() => return,
                r = self.listener.accept() => match r {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::debug!(error = %e, "control accept failed");
                        // Out of descriptors, say: do not spin.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            match stream.peer_cred() {
                Ok(cred) if cred.uid() == self.owner => {}
                Ok(cred) => {
                    let (uid, pid) = (cred.uid(), cred.pid().unwrap_or_default());
                    let detail =
                        format!("control connection from another user refused uid={uid} pid={pid}");
                    refused.warn(format_args!("uid {uid}"), &detail);
                    continue;
                }
                Err(e) => {
                    let detail =
                        format!("control connection without peer credentials refused error={e}");
                    refused.warn("unknown user", &detail);
                    continue;
                }
            }
            tokio::spawn(answer(stream, commands.clone()));
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Gives the device node behind `commands` the command `make` builds around a reply channel,
/// and waits for the reply; `Err` says why none came.
///
/// # Errors
///
/// The node is stopping (the command was not taken) or stopped (it never answered).
pub async fn command<T>(
    commands: &mpsc::Sender<Command>,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> std::result::Result<T, &'static str> {
    let (tx, rx) = oneshot::channel();
    let sent = commands.send(make(tx)).await;
    sent.map_err(|_| "the device is stopping")?;
    rx.await.map_err(|_| "the device stopped")
}

/// Has the device node behind `commands` answer `request`.
pub async fn ask(commands: &mpsc::Sender<Command>, request: Request) -> Response {
    command(commands, |tx| Command::Request(request, tx))
        .await
        .unwrap_or_else(|error| Response::Error {
            error: error.into(),
        })
}

/// Reads one request from `stream`, has the device answer it, writes the answer.
async fn answer(stream: UnixStream, commands: mpsc::Sender<Command>) {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(read.take(MAX_CONTROL_MESSAGE));
    let answer =
        match tokio::time::timeout(REQUEST_DEADLINE, reader.read_until(b'\n', &mut line)).await {
            Err(_) => return,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "control request not read");
                return;
            }
            Ok(Ok(_)) => match Request::from_line(&line) {
                Err(refused) => refused,
                Ok(request) => {
                    tracing::debug!(op = request.op(), "control request");
                    ask(&commands, request).await
                }
            },
        };
    match control_line(&answer) {
        Ok(bytes) => {
            if let Err(e) = write.write_all(&bytes).await {
                tracing::debug!(error = %e, "control answer not sent");
            }
            let _ = write.shutdown().await;
        }
        Err(e) => tracing::warn!(error = %e, "control answer not encoded"),
    }
}
