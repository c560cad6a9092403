//! What the annotated traces of every protocol share: the messages of a run, each whole, and how
//! one is written (its heading, its bytes, a sealed body opened, the role's operation counts).

use core::fmt::Write as _;

use m2msec_wire::cbor::hex;

use crate::OpCounts;
use crate::fragment::OnPath;
use crate::network::Datagram;

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

/// One message of a traced run, as its receiver read it.
pub(crate) struct Traced<'a, M> {
    /// The datagram that delivered it (its last fragment, if it had several).
    pub datagram: &'a Datagram,
    /// The message.
    pub message: M,
    /// Its bytes, whole.
    pub bytes: Vec<u8>,
    /// How many datagrams carried it.
    pub datagrams: usize,
}

/// The messages in `log` that `decode` reads, in order, each whole: a message sent in
/// fragments appears once, when its last fragment arrives.
pub(crate) fn messages<'a, M>(
    log: &'a [Datagram],
    decode: impl Fn(&[u8]) -> Option<M> + 'a,
) -> impl Iterator<Item = Traced<'a, M>> + 'a {
    let mut path = OnPath::default();
    log.iter().filter_map(move |datagram| {
        let (bytes, datagrams) = path.message(datagram)?;
        Some(Traced {
            datagram,
            message: decode(&bytes)?,
            bytes,
            datagrams,
        })
    })
}

/// Writes the heading of the `n`th message (from 1), `after_ms` into the run, from `from` to
/// `to` (the roles' short names), its bytes and its named `fields` (long ones shortened).
pub(crate) fn heading<M>(
    o: &mut String,
    n: usize,
    after_ms: u64,
    ends: (&str, &str),
    (name, fields): (&str, Vec<(&'static str, String)>),
    m: &Traced<'_, M>,
) {
    heading_of(o, (n, after_ms), ends, name, &m.bytes, m.datagrams);
    for (field, value) in fields {
        let _ = writeln!(o, "  {field}: {}", shorten(&value));
    }
}

/// [`heading`] of a message that `datagrams` datagrams carried, outside a network's log.
pub(crate) fn heading_of(
    o: &mut String,
    (n, after_ms): (usize, u64),
    (from, to): (&str, &str),
    name: &str,
    bytes: &[u8],
    datagrams: usize,
) {
    let carried = match datagrams {
        1 => String::new(),
        k => format!(" in {k} fragments"),
    };
    let _ = writeln!(
        o,
        "\n[{n}] +{after_ms} ms  {from} -> {to}  {name} ({} bytes{carried})",
        bytes.len()
    );
    wrap_hex(o, "bytes", bytes);
}

/// Writes a sealed body's plaintext and its named fields.
pub(crate) fn opened(o: &mut String, plain: &[u8], fields: &[(&'static str, String)]) {
    opened_as(o, "sealed body, opened", plain, fields);
}

/// [`opened`] under `what`, for a message with several sealed parts or keys worth naming.
pub(crate) fn opened_as(
    o: &mut String,
    what: &str,
    plain: &[u8],
    fields: &[(&'static str, String)],
) {
    let _ = writeln!(o, "  {what}:");
    wrap_hex(o, "  plaintext", plain);
    for (name, value) in fields {
        let _ = writeln!(o, "    {name}: {}", shorten(value));
    }
}

/// Writes a role's operation counts.
pub(crate) fn operations(o: &mut String, role: &str, ops: OpCounts) {
    let _ = writeln!(
        o,
        "{role} operations: symmetric {}, hash {}, redundancy {}, asymmetric {}",
        ops.symmetric, ops.hash, ops.redundancy, ops.asymmetric
    );
}

/// Long values (one-time keys run to kilobytes) are shown by their length and both ends; the
/// full bytes are in the message's hex above.
pub(crate) fn shorten(value: &str) -> String {
    if value.chars().count() <= 160 {
        value.to_owned()
    } else {
        let chars: Vec<char> = value.chars().collect();
        let head: String = chars[..64].iter().collect();
        let tail: String = chars[chars.len().saturating_sub(32)..].iter().collect();
        format!("{head}…{tail} ({} chars; full bytes above)", chars.len())
    }
}
