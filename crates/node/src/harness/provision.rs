//! What `m2msec provision DIR` does alike for every protocol: the deployment's directories
//! (owner-only), key files recorded as they are written, and role configs with a header that
//! names their documented example.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::private;
use crate::runtime::keyfile::{write_public, write_secret};

/// The options of `provision` for a protocol whose deployment's shape is a `P` (its `Params`).
#[derive(Clone, Debug)]
pub struct Options<P> {
    /// Shape of the deployment.
    pub params: P,
    /// UDP port every role listens on, each on its own 127.0.0.x address.
    pub port: u16,
    /// Replace existing files.
    pub force: bool,
}

/// What `provision` wrote.
#[derive(Clone, Debug, Default)]
pub struct Provisioned {
    /// Every file written, in order.
    pub files: Vec<PathBuf>,
    /// The commands that start the daemons, servers first, the client last.
    pub commands: Vec<String>,
}

impl Provisioned {
    /// Writes the secret key file `keys_dir/NAME` and records it; its path as configs name it,
    /// `keys/NAME`.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub(crate) fn secret(&mut self, keys_dir: &Path, name: &str, pem: &str) -> Result<PathBuf> {
        let p = keys_dir.join(name);
        write_secret(&p, pem)?;
        self.files.push(p);
        Ok(PathBuf::from("keys").join(name))
    }

    /// Writes the public key file `keys_dir/NAME` and records it; its path as configs name it,
    /// `keys/NAME`.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub(crate) fn public(&mut self, keys_dir: &Path, name: &str, pem: &str) -> Result<PathBuf> {
        let p = keys_dir.join(name);
        write_public(&p, pem)?;
        self.files.push(p);
        Ok(PathBuf::from("keys").join(name))
    }
}

/// Creates a deployment's directory `dir` and its `keys` and `state` directories (those it
/// creates owner-only); returns the keys'.
///
/// # Errors
/// [`Error::Io`] naming the directory.
pub(crate) fn deployment_dirs(dir: &Path) -> Result<PathBuf> {
    let keys_dir = dir.join("keys");
    let state_dir = dir.join("state");
    for d in [dir, &keys_dir, &state_dir] {
        private::create_dir_all(d)?;
    }
    Ok(keys_dir)
}

/// Refuses to provision over `what` ("a MIKEY deployment") already in `dir`, which its role
/// `marker`'s config shows, unless `force` is set.
///
/// # Errors
/// [`Error::Usage`] naming the directory.
pub(crate) fn refuse_existing(dir: &Path, marker: &str, what: &str, force: bool) -> Result<()> {
    if !force && role_config(dir, marker).exists() {
        return Err(Error::Usage(format!(
            "{} already holds {what} (use --force to overwrite it)",
            dir.display()
        )));
    }
    Ok(())
}

/// Where a role's config goes in a provisioned directory.
pub(crate) fn role_config(dir: &Path, role: &str) -> PathBuf {
    dir.join(format!("{role}.toml"))
}

/// Writes a role's config at `path` with a header naming its documented example
/// (`examples/{example}.toml`), and records it in `out`.
pub(crate) fn write_config<T: serde::Serialize>(
    path: &Path,
    role: &str,
    example: &str,
    value: &T,
    out: &mut Provisioned,
) -> Result<()> {
    let body = toml::to_string(value)
        .map_err(|e| Error::Usage(format!("cannot write {role} config: {e}")))?;
    let text = format!(
        "# {role} config written by `m2msec provision`.\n\
         # Every field is explained in examples/{example}.toml. Paths are relative to this file.\n\
         # Start with: m2msec run {example} --config {}\n\n{body}",
        path.display()
    );
    write_public(path, &text)?;
    out.files.push(path.to_path_buf());
    Ok(())
}

/// [`write_config`] for a daemon, started by `m2msec run {example}`, and records that command
/// in `out` (the daemons are written in the order they are to be started).
pub(crate) fn write_daemon_config<T: serde::Serialize>(
    path: &Path,
    role: &str,
    example: &str,
    value: &T,
    out: &mut Provisioned,
) -> Result<()> {
    write_config(path, role, example, value, out)?;
    out.commands
        .push(format!("m2msec run {example} --config {}", path.display()));
    Ok(())
}

/// [`write_daemon_config`] for a daemon whose example is named after it.
pub(crate) fn write_toml<T: serde::Serialize>(
    path: &Path,
    role: &str,
    value: &T,
    out: &mut Provisioned,
) -> Result<()> {
    write_daemon_config(path, role, role, value, out)
}
