//! Reading TOML config files: unknown fields are refused, and every error names the file, the
//! field and what is wrong.
//!
//! Paths inside a config file (key files, the state database) are relative to the directory
//! of the config file, so a provisioned deployment directory can be moved as a whole.

use std::path::{Path, PathBuf};
use std::time::Duration;

use m2msec_crypto::aead::AeadSuite;
use m2msec_crypto::ots::OtsScheme;
use m2msec_crypto::split::SharingScheme;
use m2msec_protocol::RetransmitPolicy;
use m2msec_protocol::fragment::{DEFAULT_PATH_MTU, MIN_PATH_MTU};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Reads and parses the TOML file at `path` into `T` (whose serde derive should
/// `deny_unknown_fields`).
///
/// # Errors
///
/// [`Error::Config`] naming the file; for a parse error the message has the line, the column
/// and the field (toml's own report); a missing file is reported as such.
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::config(path, "no such file"),
        _ => Error::config(path, e.to_string()),
    })?;
    toml::from_str(&text).map_err(|e| Error::config(path, e.to_string().trim_end().to_owned()))
}

/// The error of a config `file` whose `field` is wrong: "field `FIELD`: WHAT".
pub(crate) fn field_error(file: &Path, field: &str, what: impl std::fmt::Display) -> Error {
    Error::config(file, format!("field `{field}`: {what}"))
}

/// Refuses an empty identity in `field`, and one over 255 bytes where `too_long` says why
/// that is too long (the identity travels in a length-prefixed field).
///
/// # Errors
///
/// [`Error::Config`] naming the file and the field.
pub fn check_identity(
    file: &Path,
    field: &str,
    identity: &str,
    too_long: Option<&str>,
) -> Result<()> {
    if identity.is_empty() {
        return Err(field_error(file, field, "must not be empty"));
    }
    match too_long {
        Some(why) if identity.len() > 255 => Err(field_error(file, field, why)),
        _ => Ok(()),
    }
}

/// Refuses an empty list `field` of a config, one entry of which is `what`.
///
/// # Errors
///
/// [`Error::Config`] naming the file and the field.
pub fn non_empty<T>(file: &Path, field: &str, list: &[T], what: &str) -> Result<()> {
    if list.is_empty() {
        let what = format!("at least one {what} is needed");
        return Err(field_error(file, field, what));
    }
    Ok(())
}

/// Refuses a zero in any of `fields` of a config (each its name and whether it is zero).
///
/// # Errors
///
/// [`Error::Config`] naming the file and the first field that is zero.
pub fn at_least_1(file: &Path, fields: &[(&str, bool)]) -> Result<()> {
    match fields.iter().find(|(_, zero)| *zero) {
        Some((field, _)) => Err(field_error(file, field, "must be at least 1")),
        None => Ok(()),
    }
}

/// Resolves `relative` against the directory of the config file `config`.
#[must_use]
pub fn resolve(config: &Path, relative: &Path) -> PathBuf {
    if relative.is_absolute() {
        return relative.to_path_buf();
    }
    match config.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(relative),
        _ => relative.to_path_buf(),
    }
}

/// Overlays the values a config file gives on a protocol's default: `overlay!(DEFAULT, {
/// FILE_VALUE => FIELD, … })` starts from DEFAULT and sets each FIELD whose FILE_VALUE (an
/// `Option`) is `Some`, converted by `Into`, or by the function written after it in
/// parentheses (`session_ms => session (millis)`); absent values keep the default's.
macro_rules! overlay {
    (@convert $v:ident) => { ::core::convert::Into::into($v) };
    (@convert $v:ident, $convert:expr) => { ($convert)($v) };
    ($default:expr, { $( $value:expr => $field:ident $(($convert:expr))? ),* $(,)? }) => {{
        let mut target = $default;
        $( if let Some(v) = $value {
            target.$field = $crate::runtime::config::overlay!(@convert v $(, $convert)?);
        } )*
        target
    }};
}
pub(crate) use overlay;

/// A duration of `ms` milliseconds, for `overlay!`.
pub(crate) const fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// A duration of `ms` milliseconds but at least one, for `overlay!`: a wait that must not be
/// zero.
pub(crate) fn millis_at_least_1(ms: u64) -> Duration {
    Duration::from_millis(ms.max(1))
}

/// The retransmission of requests a config asks for (`first_retransmit_ms`, the wait before
/// the first retransmission, kept for `steady_retransmits` retransmissions and then doubled
/// after each up to `max_retransmit_interval_ms`; `max_retransmit`, how many): absent values
/// take [`RetransmitPolicy::default`] (8 times every 500 ms, then after 1, 2, 4 and 4 s: 15 s
/// in all).
#[must_use]
pub fn retransmit_policy(
    first_retransmit_ms: Option<u64>,
    steady_retransmits: Option<u32>,
    max_retransmit_interval_ms: Option<u64>,
    max_retransmit: Option<u32>,
) -> RetransmitPolicy {
    overlay!(RetransmitPolicy::default(), {
        first_retransmit_ms => initial (millis_at_least_1),
        steady_retransmits => steady (|n: u32| n.max(1)),
        max_retransmit_interval_ms => max_interval (millis_at_least_1),
        max_retransmit => max_retransmit,
    })
}

/// The path MTU a config's `path_mtu` field gives (absent: [`DEFAULT_PATH_MTU`]).
///
/// # Errors
///
/// [`Error::Config`] naming the file and the field, for one below [`MIN_PATH_MTU`].
pub fn path_mtu(file: &Path, path_mtu: Option<u16>) -> Result<u16> {
    match path_mtu {
        None => Ok(DEFAULT_PATH_MTU),
        Some(mtu) if mtu >= MIN_PATH_MTU => Ok(mtu),
        Some(mtu) => Err(field_error(
            file,
            "path_mtu",
            format!(
                "must be at least {MIN_PATH_MTU} (the datagram every IPv4 host accepts), is {mtu}"
            ),
        )),
    }
}

/// Declares a config-file table with the fields that say how a role's datagrams cross its path
/// spliced in after its own fields (and before those of an `after { … }` block): the four
/// retransmission fields of [`retransmit_policy`], read by a `retransmit_policy()` method, and
/// `path_mtu`, read by [`path_mtu`] into the daemon's `Link` by a `link(file, listen)` method.
///
/// The fields are written once here rather than as a shared struct under
/// `#[serde(flatten)]`, which serde cannot combine with `deny_unknown_fields`: generated into
/// each table, they keep toml's own errors for an unknown field — its line, column and the
/// list of every field in file order — exactly as a hand-written table has them.
macro_rules! with_link_fields {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty ),* $(,)?
        }
        $( after {
            $( $(#[$ameta:meta])* $avis:vis $afield:ident : $aty:ty ),* $(,)?
        } )?
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field: $ty, )*
            /// Wait before the first retransmission of an unanswered request, in milliseconds
            /// (default 500).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub first_retransmit_ms: Option<u64>,
            /// Retransmissions at the first wait before the wait starts to double (default 8).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub steady_retransmits: Option<u32>,
            /// Longest wait between two retransmissions, in milliseconds: the wait doubles after
            /// each up to it, and never drops below the first (default 4000).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub max_retransmit_interval_ms: Option<u64>,
            /// Retransmissions of an unanswered request before giving up (default 11).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub max_retransmit: Option<u32>,
            /// Largest IP packet the path to the peers carries, in bytes (default 1280, IPv6's
            /// minimum; at least 576): a larger message is sent in fragments that fit.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub path_mtu: Option<u16>,
            $($( $(#[$ameta])* $avis $afield: $aty, )*)?
        }

        impl $name {
            /// The retransmission policy of the fields `first_retransmit_ms`,
            /// `steady_retransmits`, `max_retransmit_interval_ms` and `max_retransmit`.
            #[must_use]
            pub fn retransmit_policy(&self) -> m2msec_protocol::RetransmitPolicy {
                $crate::runtime::config::retransmit_policy(
                    self.first_retransmit_ms,
                    self.steady_retransmits,
                    self.max_retransmit_interval_ms,
                    self.max_retransmit,
                )
            }

            /// The link of a daemon listening on `listen`, with the path MTU of the field
            /// `path_mtu` of the config file `file`.
            ///
            /// # Errors
            ///
            /// [`Error::Config`](crate::error::Error::Config) for a path MTU below 576.
            pub fn link(
                &self,
                file: &::std::path::Path,
                listen: ::std::net::SocketAddr,
            ) -> $crate::error::Result<$crate::harness::daemon::Link> {
                Ok($crate::harness::daemon::Link {
                    listen,
                    path_mtu: $crate::runtime::config::path_mtu(file, self.path_mtu)?,
                })
            }
        }
    };
}
pub(crate) use with_link_fields;

/// Declares the names a config file gives the values of `$target` (an enum of the protocol or
/// crypto crate), for one or more such enums: one variant per name, in the order toml's errors
/// list them, the conversion to `$target`, the way back (`of`, none for a value without a name
/// here) and the name itself (`name`). Each is also a clap `ValueEnum` of the same names, so a
/// flag takes the values a config file does, and a small `Copy` value that serde reads and
/// writes by its name.
macro_rules! config_names {
    ($(
        $(#[$meta:meta])*
        $vis:vis enum $name:ident for $target:ident {
            $( $(#[$vmeta:meta])* $file:literal => $variant:ident = $to:ident ),* $(,)?
        }
    )+) => {$(
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, ::clap::ValueEnum, ::serde::Deserialize,
            ::serde::Serialize,
        )]
        $vis enum $name {
            $( $(#[$vmeta])* #[serde(rename = $file)] #[value(name = $file)] $variant, )*
        }

        impl From<$name> for $target {
            fn from(name: $name) -> Self {
                match name {
                    $( $name::$variant => Self::$to, )*
                }
            }
        }

        impl $name {
            /// The name of `value` in config files, if it has one.
            #[must_use]
            #[allow(unreachable_patterns)]
            pub const fn of(value: $target) -> Option<Self> {
                match value {
                    $( $target::$to => Some(Self::$variant), )*
                    _ => None,
                }
            }

            /// The name in config files (and on the command line and in reports).
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self {
                    $( Self::$variant => $file, )*
                }
            }
        }
    )+};
}
pub(crate) use config_names;

config_names! {
    /// The names of secret-sharing schemes in config files (collab's client, MIKEY's
    /// distributed mode).
    pub enum SharingName for SharingScheme {
        /// Reed-Solomon erasure coding (any k of n fragments rebuild x).
        "reed-solomon" => ReedSolomon = ReedSolomon,
        /// Shamir sharing over GF(256) (fewer than k colluding proxies learn nothing about x).
        "shamir" => Shamir = Shamir,
    }

    /// The names of AEAD suites in config files and flags.
    pub enum AeadName for AeadSuite {
        /// AES-128-CCM with an 8-byte tag.
        "aes-128-ccm8" => Aes128Ccm8 = Aes128Ccm8,
        /// AES-128-GCM.
        "aes-128-gcm" => Aes128Gcm = Aes128Gcm,
        /// ChaCha20-Poly1305.
        "chacha20-poly1305" => ChaCha20Poly1305 = ChaCha20Poly1305,
    }

    /// The names of one-time signature schemes in config files and flags.
    pub enum OtsName for OtsScheme {
        /// Lamport signatures over SHA-256 (the paper's choice).
        "lamport" => Lamport = Lamport,
        /// LM-OTS SHA-256, n = 32, w = 4 (RFC 8554).
        "lmots" => Lmots = LmotsSha256N32W4,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn identity_and_list_checks_name_the_field() {
        let f = Path::new("x.toml");
        let says =
            |r: Result<()>, what: &str| r.err().is_some_and(|e| e.to_string().contains(what));
        assert!(says(
            check_identity(f, "identity", "", None),
            "field `identity`: must not be empty"
        ));
        let long = "a".repeat(256);
        assert!(check_identity(f, "identity", &long, None).is_ok());
        assert!(says(
            check_identity(f, "gateway.identity", &long, Some("at most 255 bytes")),
            "field `gateway.identity`: at most 255 bytes"
        ));
        assert!(says(
            non_empty::<u8>(f, "peers", &[], "peer"),
            "field `peers`: at least one peer is needed"
        ));
        assert!(non_empty(f, "peers", &[1], "peer").is_ok());
        let fields = [("a", false), ("b", true), ("c", true)];
        assert!(says(
            at_least_1(f, &fields),
            "field `b`: must be at least 1"
        ));
        assert!(at_least_1(f, &[("a", false)]).is_ok());
    }

    #[test]
    fn path_mtu_defaults_to_ipv6_minimum_and_refuses_below_576() {
        let f = Path::new("x.toml");
        assert_eq!(path_mtu(f, None).ok(), Some(1280));
        assert_eq!(path_mtu(f, Some(576)).ok(), Some(576));
        let e = path_mtu(f, Some(575)).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("field `path_mtu`: must be at least 576")));
    }

    #[test]
    fn config_names_convert_both_ways() {
        for scheme in SharingScheme::ALL {
            let name = SharingName::of(scheme).unwrap_or_else(|| panic!("{scheme:?} unnamed"));
            assert_eq!(SharingScheme::from(name), scheme);
        }
        assert_eq!(SharingName::Shamir.name(), "shamir");
        assert_eq!(SharingName::ReedSolomon.name(), "reed-solomon");
    }

    #[test]
    fn retransmission_fields_build_the_policy() {
        let default = retransmit_policy(None, None, None, None);
        assert_eq!(default, m2msec_protocol::RetransmitPolicy::default());
        assert_eq!(default.span(), Duration::from_millis(15_000));
        // Doubling from the first wait: 0.5, 1, 2, 4, 8 s.
        let doubling = retransmit_policy(Some(500), Some(1), Some(8000), Some(4));
        assert_eq!(doubling.span(), Duration::from_millis(15_500));
        // Every 500 ms: a cap no longer than the first wait.
        let constant = retransmit_policy(None, None, Some(500), Some(30));
        assert_eq!(constant.span(), Duration::from_millis(15_500));
        // A first wait longer than the cap does not grow; a shorter one grows to it.
        let long = retransmit_policy(Some(5000), Some(1), None, Some(3));
        assert_eq!(long.span(), Duration::from_millis(20_000));
        let growing = retransmit_policy(Some(200), Some(2), Some(500), Some(3));
        assert_eq!(growing.span(), Duration::from_millis(200 + 200 + 400 + 500));
    }
}
