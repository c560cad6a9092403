//! Owner-only files: the one place where m2msec creates, opens and checks the files and
//! directories that hold secrets or decrypted data (state databases, key files, sink outputs,
//! captures).
//!
//! Files are created with mode `0600` and directories with `0700`. The mode is given to the
//! `open(2)`/`mkdir(2)` call itself, so there is no moment in which the file exists with the
//! umask's wider default; a umask can only remove bits, so `0600` holds whatever the umask. A
//! file that already exists is never widened nor silently narrowed: if group or others may
//! access it, opening it is refused with an error that names the file and the `chmod` that fixes
//! it ([`Exposed`]), because a file that was readable may already have been read.
//!
//! Directories that already exist are left as they are (a deployment may live under a shared
//! directory); only the ones created here are `0700`.
//!
//! On platforms without Unix modes these functions create and open files normally.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// What a file holds, and so who besides its owner may touch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secrecy {
    /// Secrets or decrypted data: no access at all for group or others (`chmod 600`).
    Secret,
    /// Public material that others may read but must not change, since a public key that a
    /// local user can replace is a key they chose (`chmod go-w`).
    Public,
}

impl Secrecy {
    /// The mode bits this file must not have.
    #[must_use]
    pub const fn forbidden_bits(self) -> u32 {
        match self {
            Self::Secret => 0o077,
            Self::Public => 0o022,
        }
    }

    /// The `chmod` argument that removes them.
    #[must_use]
    pub const fn chmod(self) -> &'static str {
        match self {
            Self::Secret => "600",
            Self::Public => "go-w",
        }
    }
}

/// An existing file that group or others may access more than its [`Secrecy`] allows.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} has mode {mode:04o}: group or others may {} it; run `chmod {} {}`",
    path.display(),
    if secrecy == &Secrecy::Secret { "read or write" } else { "write" },
    secrecy.chmod(),
    path.display()
)]
pub struct Exposed {
    /// The file.
    pub path: PathBuf,
    /// Its permission bits.
    pub mode: u32,
    /// What it should be.
    pub secrecy: Secrecy,
}

/// Why a private file could not be opened or created.
#[derive(Debug, thiserror::Error)]
pub enum PrivateError {
    /// The file exists and others may access it.
    #[error(transparent)]
    Exposed(#[from] Exposed),
    /// The operating system refused.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl PrivateError {
    fn io(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// How [`open`] treats the file's contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// Replace whatever was there.
    Truncate,
    /// Add to the end.
    Append,
    /// Read and write in place (a database).
    InPlace,
}

/// Creates `dir` and every missing parent with mode `0700`; existing directories are untouched.
///
/// # Errors
///
/// [`PrivateError::Io`] naming the directory.
pub fn create_dir_all(dir: &Path) -> Result<(), PrivateError> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| PrivateError::io(dir, e))
}

/// Creates the parent directory of `file` (see [`create_dir_all`]).
///
/// # Errors
///
/// [`PrivateError::Io`] naming the directory.
pub fn create_parent(file: &Path) -> Result<(), PrivateError> {
    match file.parent() {
        Some(parent) => create_dir_all(parent),
        None => Ok(()),
    }
}

/// Opens `path` for writing as a [`Secrecy::Secret`] file: created `0600` (with its missing
/// parents `0700`) when absent, refused when it exists and group or others may access it.
///
/// # Errors
///
/// [`PrivateError::Exposed`] for an existing file with a wider mode; [`PrivateError::Io`]
/// naming the file otherwise.
pub fn open(path: &Path, write: Write) -> Result<File, PrivateError> {
    open_with(path, write, Secrecy::Secret)
}

/// Opens `path` for writing with the mode its `secrecy` calls for (`0600` for secrets, `0644`
/// for public files), with the checks of [`open`].
///
/// # Errors
///
/// As [`open`].
pub fn open_with(path: &Path, write: Write, secrecy: Secrecy) -> Result<File, PrivateError> {
    create_parent(path)?;
    let mut options = OpenOptions::new();
    options.create(true);
    match write {
        Write::Truncate => options.write(true).truncate(true),
        Write::Append => options.append(true),
        Write::InPlace => options.read(true).write(true),
    };
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(
        &mut options,
        match secrecy {
            Secrecy::Secret => 0o600,
            Secrecy::Public => 0o644,
        },
    );
    let file = options.open(path).map_err(|e| PrivateError::io(path, e))?;
    // The file may have existed before with any mode: check what was opened, not the path,
    // so that a swap between the check and the open changes nothing.
    let metadata = file.metadata().map_err(|e| PrivateError::io(path, e))?;
    check_metadata(path, &metadata, secrecy)?;
    Ok(file)
}

/// Checks that an existing `path` gives group and others no more than `secrecy` allows.
/// A missing file passes (whoever creates it uses [`open`]).
///
/// # Errors
///
/// [`PrivateError::Exposed`] naming the file and the `chmod` that fixes it;
/// [`PrivateError::Io`] if its metadata cannot be read.
pub fn check(path: &Path, secrecy: Secrecy) -> Result<(), PrivateError> {
    match std::fs::metadata(path) {
        Ok(metadata) => Ok(check_metadata(path, &metadata, secrecy)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(PrivateError::io(path, e)),
    }
}

#[cfg(unix)]
fn check_metadata(
    path: &Path,
    metadata: &std::fs::Metadata,
    secrecy: Secrecy,
) -> Result<(), Exposed> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & secrecy.forbidden_bits() == 0 {
        Ok(())
    } else {
        Err(Exposed {
            path: path.to_path_buf(),
            mode,
            secrecy,
        })
    }
}

#[cfg(not(unix))]
fn check_metadata(_: &Path, _: &std::fs::Metadata, _: Secrecy) -> Result<(), Exposed> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_owner_only_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a/b/state.redb");
        open(&file, Write::InPlace).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);
        // Opening again is fine: the file is still owner-only.
        open(&file, Write::Append).unwrap();
        check(&file, Secrecy::Secret).unwrap();
    }

    #[test]
    fn refuses_an_exposed_file_and_says_how_to_fix_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out.jsonl");
        std::fs::write(&file, "").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = open(&file, Write::Append).unwrap_err();
        let text = err.to_string();
        assert!(matches!(
            err,
            PrivateError::Exposed(Exposed { mode: 0o644, .. })
        ));
        assert!(
            text.contains(&format!("chmod 600 {}", file.display())),
            "{text}"
        );
        assert!(matches!(
            check(&file, Secrecy::Secret),
            Err(PrivateError::Exposed(_))
        ));
        // Readable by others is fine for a public file; writable is not.
        check(&file, Secrecy::Public).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o664)).unwrap();
        let err = check(&file, Secrecy::Public).unwrap_err().to_string();
        assert!(err.contains("chmod go-w"), "{err}");
    }

    #[test]
    fn a_missing_file_passes_the_check() {
        let dir = tempfile::tempdir().unwrap();
        check(&dir.path().join("absent"), Secrecy::Secret).unwrap();
    }
}
