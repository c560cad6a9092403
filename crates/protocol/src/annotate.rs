//! Helpers shared by the annotated traces of every protocol.

use core::fmt::Write as _;

use m2msec_wire::cbor::hex;

/// Appends `bytes` in hex under `label`, 48 bytes a line, continuation lines aligned.
pub(crate) fn wrap_hex(o: &mut String, label: &str, bytes: &[u8]) {
    let h = hex(bytes);
    let mut chunks = h.as_bytes().chunks(96);
    // Writing into a String cannot fail.
    if let Some(first) = chunks.next() {
        let _ = writeln!(o, "  {label}: {}", String::from_utf8_lossy(first));
    }
    let pad = " ".repeat(label.len() + 4);
    for chunk in chunks {
        let _ = writeln!(o, "{pad}{}", String::from_utf8_lossy(chunk));
    }
}
