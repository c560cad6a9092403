//! What `m2msec provision DIR` does alike for every protocol: the deployment's directories
//! (owner-only), key files recorded as they are written, and role configs with a header that
//! names their documented example.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::private;
use crate::runtime::keyfile::{self, PemKey, write_public, write_secret};

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

/// Creates `dir`, its `keys` and, if its daemons keep `state`, its `state` directory (those
/// it creates owner-only); returns the keys'.
fn create_dirs(dir: &Path, state: bool) -> Result<PathBuf> {
    let keys_dir = dir.join("keys");
    let state_dir = dir.join("state");
    let state_dir = state.then_some(state_dir.as_path());
    for d in [dir, &keys_dir].into_iter().chain(state_dir) {
        private::create_dir_all(d)?;
    }
    Ok(keys_dir)
}

/// A deployment being written into its directory: key files in `keys/`, role configs beside
/// them, each recorded as it is written (see [`Provisioned`]).
pub(crate) struct Writer<'a> {
    dir: &'a Path,
    keys_dir: PathBuf,
    out: Provisioned,
}

impl<'a> Writer<'a> {
    /// Starts a deployment in `dir`: refused, unless `force` is set, if `dir` already holds
    /// `what` ("a MIKEY deployment"), which the config of its role `marker` shows; creates `dir`,
    /// its `keys` and, if its daemons keep `state`, its `state` directory (those it creates
    /// owner-only).
    ///
    /// # Errors
    /// [`Error::Usage`] naming the directory; [`Error::Io`] naming a directory not created.
    pub(crate) fn start(
        dir: &'a Path,
        marker: &str,
        what: &str,
        force: bool,
        state: bool,
    ) -> Result<Self> {
        if !force && dir.join(format!("{marker}.toml")).exists() {
            let dir = dir.display();
            let refusal = format!("{dir} already holds {what} (use --force to overwrite it)");
            return Err(Error::Usage(refusal));
        }
        Ok(Self {
            dir,
            keys_dir: create_dirs(dir, state)?,
            out: Provisioned::default(),
        })
    }

    /// Writes the secret key file `keys/NAME` of `key`; its path as configs name it.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub(crate) fn secret(&mut self, name: &str, key: &impl PemKey) -> Result<PathBuf> {
        self.key_file(name, &keyfile::pem(key)?, write_secret)
    }

    /// Writes the public key (or certificate) file `keys/NAME` of `key`; its path as configs
    /// name it.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub(crate) fn public(&mut self, name: &str, key: &impl PemKey) -> Result<PathBuf> {
        self.key_file(name, &keyfile::pem(key)?, write_public)
    }

    fn key_file(
        &mut self,
        name: &str,
        pem: &str,
        write: fn(&Path, &str) -> Result<()>,
    ) -> Result<PathBuf> {
        let path = self.keys_dir.join(name);
        write(&path, pem)?;
        self.out.files.push(path);
        Ok(PathBuf::from("keys").join(name))
    }

    /// Writes a key pair, the secret key `keys/NAME` and the public key `keys/NAME.pub`; their
    /// paths as configs name them.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub(crate) fn key_pair(
        &mut self,
        name: &str,
        secret: &impl PemKey,
        public: &impl PemKey,
    ) -> Result<(PathBuf, PathBuf)> {
        let secret = self.secret(name, secret)?;
        Ok((secret, self.public(&format!("{name}.pub"), public)?))
    }

    /// Writes the config `DIR/ROLE.toml` of the daemon `role`, documented in
    /// `examples/ROLE.toml` and started by `m2msec run ROLE`.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file; [`Error::Usage`] if `value` cannot be written as TOML.
    pub(crate) fn config<T: serde::Serialize>(&mut self, role: &str, value: &T) -> Result<()> {
        self.instance(role, role, role, value).map(drop)
    }

    /// Writes the config `DIR/FILE.toml` of one daemon `role` ("sga-device (device-i)") of the
    /// kind `example` (its documented example and `m2msec run` role), and records the command
    /// that starts it (the daemons are written in the order they are to be started); its path.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file; [`Error::Usage`] if `value` cannot be written as TOML.
    pub(crate) fn instance<T: serde::Serialize>(
        &mut self,
        file: &str,
        role: &str,
        example: &str,
        value: &T,
    ) -> Result<PathBuf> {
        let path = self.dir.join(format!("{file}.toml"));
        let command = format!("m2msec run {example} --config {}", path.display());
        self.write_config(
            &path,
            role,
            example,
            value,
            &format!("Start with: {command}"),
        )?;
        self.out.commands.push(command);
        Ok(path)
    }

    /// Writes the config `DIR/ROLE.toml` of `role`, which no daemon runs: `use_with` is the
    /// command that reads it, without its `--config`; its path.
    ///
    /// # Errors
    /// As [`Writer::instance`].
    pub(crate) fn tool_config<T: serde::Serialize>(
        &mut self,
        role: &str,
        value: &T,
        use_with: &str,
    ) -> Result<PathBuf> {
        let path = self.dir.join(format!("{role}.toml"));
        let usage = format!("Use with: {use_with} --config {}", path.display());
        self.write_config(&path, role, role, value, &usage)?;
        Ok(path)
    }

    /// Records a command to run after the daemons have started.
    pub(crate) fn command(&mut self, command: String) {
        self.out.commands.push(command);
    }

    /// Writes a role's config at `path` with a header naming its documented example
    /// (`examples/{example}.toml`) and how it is used, and records it.
    fn write_config<T: serde::Serialize>(
        &mut self,
        path: &Path,
        role: &str,
        example: &str,
        value: &T,
        usage: &str,
    ) -> Result<()> {
        let body = toml::to_string(value)
            .map_err(|e| Error::Usage(format!("cannot write {role} config: {e}")))?;
        let text = format!(
            "# {role} config written by `m2msec provision`.\n\
             # Every field is explained in examples/{example}.toml. Paths are relative to this file.\n\
             # {usage}\n\n{body}"
        );
        write_public(path, &text)?;
        self.out.files.push(path.to_path_buf());
        Ok(())
    }

    /// What was written.
    pub(crate) fn finish(self) -> Provisioned {
        self.out
    }
}
