//! Table-name rules, shared by every backend so that a name valid for one is valid for all.

use crate::{Error, Result};

/// The longest accepted table name, in bytes.
///
/// Names are chosen by code, not by peers; the bound keeps them usable as file, bucket or
/// subject names in any backend (NATS subjects and bucket names are restricted too).
pub const MAX_TABLE_NAME_LEN: usize = 64;

/// Checks that `name` is a valid table name: 1 to [`MAX_TABLE_NAME_LEN`] bytes from
/// `[a-z0-9_.-]`.
///
/// The alphabet is narrow on purpose: it leaves `:` and `/` free for backends to build internal
/// names from (so a user table can never collide with one), and it maps onto what every planned
/// backend accepts without escaping.
///
/// # Errors
///
/// [`Error::InvalidTableName`] saying which rule the name broke.
pub fn validate_table_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > MAX_TABLE_NAME_LEN {
        Some("longer than 64 bytes")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.'))
    {
        Some("may only contain a-z, 0-9, '_', '-' and '.'")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidTableName {
            name: name.chars().take(MAX_TABLE_NAME_LEN + 8).collect(),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for name in [
            "a",
            "replay-cache",
            "otk_used.v1",
            "0",
            &"x".repeat(MAX_TABLE_NAME_LEN),
        ] {
            assert!(validate_table_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        let long = "x".repeat(MAX_TABLE_NAME_LEN + 1);
        for name in ["", "Upper", "a b", "a/b", "a:b", "é", "tab\t", &long] {
            assert!(
                matches!(
                    validate_table_name(name),
                    Err(Error::InvalidTableName { .. })
                ),
                "{name:?}"
            );
        }
    }
}
