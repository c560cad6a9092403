//! Reader of the known-answer vector files under `vectors/crypto/` (format in its README.md).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

/// One `[name]` case: its fields, values as written (hex whitespace removed).
#[derive(Debug)]
pub struct Case {
    pub name: String,
    fields: BTreeMap<String, String>,
}

impl Case {
    /// A hex field, decoded.
    pub fn hex(&self, key: &str) -> Vec<u8> {
        let v = self.raw(key);
        hex::decode(v).unwrap_or_else(|e| panic!("{}: field {key} is not hex: {e}", self.name))
    }

    /// A `_text` field as bytes.
    pub fn text(&self, key: &str) -> Vec<u8> {
        self.raw(key).as_bytes().to_vec()
    }

    /// `data` as hex, or `data_text` as text.
    pub fn bytes(&self, key: &str) -> Vec<u8> {
        if self.fields.contains_key(key) {
            self.hex(key)
        } else {
            self.text(&format!("{key}_text"))
        }
    }

    /// A decimal field.
    pub fn usize(&self, key: &str) -> usize {
        self.raw(key).parse().unwrap()
    }

    fn raw(&self, key: &str) -> &str {
        self.fields
            .get(key)
            .unwrap_or_else(|| panic!("{}: missing field {key}", self.name))
    }
}

/// Path of a vector file.
pub fn vector_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../vectors/crypto")
        .join(file)
}

/// Parses a vector file into its cases.
pub fn load(file: &str) -> Vec<Case> {
    let path = vector_path(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut cases: Vec<Case> = Vec::new();
    let mut last_key: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            cases.push(Case {
                name: name.to_string(),
                fields: BTreeMap::new(),
            });
            last_key = None;
            continue;
        }
        let case = cases.last_mut().expect("field before the first [case]");
        if let Some((key, value)) = trimmed.split_once('=') {
            let key = key.trim().to_string();
            let value = if key.ends_with("_text") {
                value.trim().to_string()
            } else {
                value.split_whitespace().collect()
            };
            case.fields.insert(key.clone(), value);
            last_key = Some(key);
        } else {
            let key = last_key
                .as_ref()
                .expect("continuation line without a field");
            let entry = case.fields.get_mut(key).unwrap();
            entry.extend(trimmed.split_whitespace());
        }
    }
    assert!(!cases.is_empty(), "{file} holds no cases");
    cases
}
