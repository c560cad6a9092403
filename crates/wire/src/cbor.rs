//! Deterministic CBOR (RFC 8949 §4.2.1) for the compact protocol messages.
//!
//! A message is one CBOR array: `[type, version, field, …]` with the fields in the paper's order;
//! nested structures are arrays of their fields. Structures are declared once with
//! [`cbor_struct!`](crate::cbor_struct) and [`cbor_messages!`](crate::cbor_messages), which derive the
//! encoder, the total decoder and a field-by-field description for annotated traces. A decoded
//! message is re-encoded and compared with its input, so a message has exactly one byte form:
//! what a signature or MAC covers cannot be re-shaped by a relay.

use core::fmt::Write as _;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{Error, Result};

/// Longest text string (identities, addresses) a decoder accepts.
pub const MAX_TEXT: usize = 255;
/// Longest list a decoder accepts: the protocols address at most 255 parties.
pub const MAX_LIST: usize = 255;

/// Appends CBOR items to a buffer.
///
/// Encoding into a `Vec` cannot fail, so the writer's methods return nothing.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes written so far.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn encoder(&mut self) -> minicbor::Encoder<&mut Vec<u8>> {
        minicbor::Encoder::new(&mut self.buf)
    }

    /// An array header of `len` elements.
    pub fn array(&mut self, len: usize) {
        // Writing into a Vec is infallible (its error type is `Infallible`).
        let _ = self.encoder().array(len as u64);
    }

    /// An unsigned integer, in its shortest form.
    pub fn uint(&mut self, v: u64) {
        let _ = self.encoder().u64(v);
    }

    /// A byte string.
    pub fn bytes(&mut self, v: &[u8]) {
        let _ = self.encoder().bytes(v);
    }

    /// A text string.
    pub fn text(&mut self, v: &str) {
        let _ = self.encoder().str(v);
    }

    /// A boolean.
    pub fn bool(&mut self, v: bool) {
        let _ = self.encoder().bool(v);
    }
}

/// Reads CBOR items from a byte slice; every failure is a typed [`Error`].
#[derive(Debug)]
pub struct Reader<'b> {
    dec: minicbor::Decoder<'b>,
}

fn map_err(e: &minicbor::decode::Error, expected: &'static str) -> Error {
    if e.is_end_of_input() {
        Error::Truncated
    } else {
        Error::UnexpectedType { expected }
    }
}

impl<'b> Reader<'b> {
    /// A reader over `input`.
    #[must_use]
    pub fn new(input: &'b [u8]) -> Self {
        Self {
            dec: minicbor::Decoder::new(input),
        }
    }

    /// Bytes not yet consumed.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.dec.input().len().saturating_sub(self.dec.position())
    }

    /// Fails unless the input is exhausted.
    ///
    /// # Errors
    /// [`Error::TrailingBytes`].
    pub fn finish(&self) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(Error::TrailingBytes(n)),
        }
    }

    /// A definite-length array header; returns its length.
    ///
    /// # Errors
    /// Truncation, another type, or an indefinite length.
    pub fn array(&mut self) -> Result<u64> {
        match self.dec.array() {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Err(Error::NonCanonical),
            Err(e) => Err(map_err(&e, "array")),
        }
    }

    /// An array header that must announce exactly `expected` elements.
    ///
    /// # Errors
    /// As [`Reader::array`], or [`Error::WrongArity`].
    pub fn array_of(&mut self, what: &'static str, expected: usize) -> Result<()> {
        let found = self.array()?;
        if found == expected as u64 {
            Ok(())
        } else {
            Err(Error::WrongArity {
                what,
                found,
                expected: expected as u64,
            })
        }
    }

    /// An unsigned integer.
    ///
    /// # Errors
    /// Truncation or another type.
    pub fn uint(&mut self) -> Result<u64> {
        self.dec.u64().map_err(|e| map_err(&e, "unsigned integer"))
    }

    /// A byte string, borrowed from the input.
    ///
    /// # Errors
    /// Truncation, another type or an indefinite length.
    pub fn bytes(&mut self) -> Result<&'b [u8]> {
        self.dec.bytes().map_err(|e| map_err(&e, "byte string"))
    }

    /// A UTF-8 text string of at most [`MAX_TEXT`] bytes.
    ///
    /// # Errors
    /// Truncation, another type, invalid UTF-8 or an over-long string.
    pub fn text(&mut self) -> Result<&'b str> {
        let s = self.dec.str().map_err(|e| map_err(&e, "text string"))?;
        if s.len() > MAX_TEXT {
            return Err(Error::InvalidText);
        }
        Ok(s)
    }

    /// A boolean.
    ///
    /// # Errors
    /// Truncation or another type.
    pub fn bool(&mut self) -> Result<bool> {
        self.dec.bool().map_err(|e| map_err(&e, "boolean"))
    }
}

/// A value with one deterministic CBOR form.
pub trait Cbor: Sized {
    /// Appends the value.
    fn encode(&self, w: &mut Writer);
    /// Reads the value.
    ///
    /// # Errors
    /// Whatever is wrong with the bytes.
    fn decode(r: &mut Reader<'_>) -> Result<Self>;
    /// A one-line human reading of the value for annotated traces; secrets are redacted.
    fn describe(&self) -> String;
}

macro_rules! uint_cbor {
    ($($t:ty),*) => {$(
        impl Cbor for $t {
            fn encode(&self, w: &mut Writer) {
                w.uint(u64::from(*self));
            }
            fn decode(r: &mut Reader<'_>) -> Result<Self> {
                <$t>::try_from(r.uint()?).map_err(|_| Error::IntegerRange)
            }
            fn describe(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
uint_cbor!(u8, u16, u32, u64);

impl Cbor for bool {
    fn encode(&self, w: &mut Writer) {
        w.bool(*self);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        r.bool()
    }
    fn describe(&self) -> String {
        self.to_string()
    }
}

impl Cbor for String {
    fn encode(&self, w: &mut Writer) {
        w.text(self);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        r.text().map(str::to_owned)
    }
    fn describe(&self) -> String {
        format!("{self:?}")
    }
}

impl<const N: usize> Cbor for [u8; N] {
    fn encode(&self, w: &mut Writer) {
        w.bytes(self);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let b = r.bytes()?;
        b.try_into().map_err(|_| Error::WrongLength {
            found: b.len(),
            expected: N,
        })
    }
    fn describe(&self) -> String {
        hex(self)
    }
}

impl<T: Cbor> Cbor for Vec<T> {
    fn encode(&self, w: &mut Writer) {
        w.array(self.len());
        for item in self {
            item.encode(w);
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let n = r.array()?;
        let n = usize::try_from(n)
            .ok()
            .filter(|n| *n <= MAX_LIST)
            .ok_or(Error::TooManyElements(MAX_LIST))?;
        // Every element takes at least one byte, so `n` is bounded by the input as well.
        let mut items = Self::with_capacity(n.min(r.remaining()));
        for _ in 0..n {
            items.push(T::decode(r)?);
        }
        Ok(items)
    }
    fn describe(&self) -> String {
        let inner: Vec<String> = self.iter().map(Cbor::describe).collect();
        format!("[{}]", inner.join(", "))
    }
}

/// A variable-length byte string that is not secret (ciphertexts, signatures, public keys).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl core::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl Cbor for Bytes {
    fn encode(&self, w: &mut Writer) {
        w.bytes(&self.0);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Self(r.bytes()?.to_vec()))
    }
    fn describe(&self) -> String {
        hex(&self.0)
    }
}

/// A byte string holding key material: zeroized on drop, never printed.
#[derive(Clone, Default, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wraps secret bytes.
    #[must_use]
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The secret bytes.
    #[must_use]
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl core::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Cbor for SecretBytes {
    fn encode(&self, w: &mut Writer) {
        w.bytes(&self.0);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Self(r.bytes()?.to_vec()))
    }
    fn describe(&self) -> String {
        format!("<secret, {} bytes>", self.0.len())
    }
}

/// Lower-case hex of `bytes`.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing into a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Encodes one value on its own.
#[must_use]
pub fn to_vec<T: Cbor>(value: &T) -> Vec<u8> {
    let mut w = Writer::new();
    value.encode(&mut w);
    w.into_bytes()
}

/// Decodes exactly one value from `bytes`, refusing trailing bytes and any encoding other than
/// the deterministic one.
///
/// # Errors
/// Whatever is wrong with the bytes.
pub fn from_slice<T: Cbor>(bytes: &[u8]) -> Result<T> {
    let mut r = Reader::new(bytes);
    let value = T::decode(&mut r)?;
    r.finish()?;
    if to_vec(&value) != bytes {
        return Err(Error::NonCanonical);
    }
    Ok(value)
}

/// Declares a structure encoded as a CBOR array of its fields, in order.
#[macro_export]
macro_rules! cbor_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty ),*
        }

        impl $name {
            /// Number of fields.
            pub const FIELD_COUNT: usize = [$(stringify!($field)),*].len();

            /// Each field's name and reading, in wire order (secrets redacted).
            #[must_use]
            pub fn fields(&self) -> Vec<(&'static str, String)> {
                vec![$( (stringify!($field), $crate::cbor::Cbor::describe(&self.$field)) ),*]
            }

            #[allow(unused_variables)]
            fn encode_fields(&self, w: &mut $crate::cbor::Writer) {
                $( $crate::cbor::Cbor::encode(&self.$field, w); )*
            }

            #[allow(unused_variables)]
            fn decode_fields(r: &mut $crate::cbor::Reader<'_>) -> $crate::Result<Self> {
                Ok(Self { $( $field: $crate::cbor::Cbor::decode(r)? ),* })
            }
        }

        impl $crate::cbor::Cbor for $name {
            fn encode(&self, w: &mut $crate::cbor::Writer) {
                w.array(Self::FIELD_COUNT);
                self.encode_fields(w);
            }
            fn decode(r: &mut $crate::cbor::Reader<'_>) -> $crate::Result<Self> {
                r.array_of(stringify!($name), Self::FIELD_COUNT)?;
                Self::decode_fields(r)
            }
            fn describe(&self) -> String {
                let parts: Vec<String> = self
                    .fields()
                    .into_iter()
                    .map(|(n, v)| format!("{n}: {v}"))
                    .collect();
                format!("{{{}}}", parts.join(", "))
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(stringify!($name))?;
                f.write_str(" ")?;
                f.write_str(&$crate::cbor::Cbor::describe(self))
            }
        }
    };
}

/// Declares the messages of one protocol: each a [`cbor_struct!`](crate::cbor_struct) whose array
/// starts with its type code and the protocol version, and an enum over all of them whose decoder
/// dispatches on the type code.
#[macro_export]
macro_rules! cbor_messages {
    (
        version = $version:expr;
        $(#[$emeta:meta])*
        pub enum $enum:ident {
            $(
                $(#[$meta:meta])*
                $name:ident = $code:expr => {
                    $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty ),* $(,)?
                }
            ),* $(,)?
        }
    ) => {
        $(
            $crate::cbor_struct! {
                $(#[$meta])*
                pub struct $name { $( $(#[$fmeta])* pub $field: $ty ),* }
            }

            impl $name {
                /// Type code on the wire.
                pub const TYPE: u8 = $code;

                /// The message's bytes.
                #[must_use]
                pub fn to_bytes(&self) -> Vec<u8> {
                    let mut w = $crate::cbor::Writer::new();
                    w.array(Self::FIELD_COUNT + 2);
                    w.uint(u64::from(Self::TYPE));
                    w.uint(u64::from($version));
                    self.encode_fields(&mut w);
                    w.into_bytes()
                }
            }

            impl From<$name> for $enum {
                fn from(m: $name) -> Self {
                    Self::$name(m)
                }
            }
        )*

        $(#[$emeta])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum $enum {
            $( $(#[$meta])* $name($name), )*
        }

        impl $enum {
            /// Decodes any message of this protocol.
            ///
            /// # Errors
            /// Whatever is wrong with the bytes; never panics.
            pub fn decode(bytes: &[u8]) -> $crate::Result<Self> {
                let mut r = $crate::cbor::Reader::new(bytes);
                let len = r.array()?;
                let code = r.uint()?;
                let version = r.uint()?;
                if version != u64::from($version) {
                    return Err($crate::Error::UnsupportedVersion(version));
                }
                let msg = match code {
                    $(
                        c if c == u64::from($name::TYPE) => {
                            if len != ($name::FIELD_COUNT + 2) as u64 {
                                return Err($crate::Error::WrongArity {
                                    what: stringify!($name),
                                    found: len,
                                    expected: ($name::FIELD_COUNT + 2) as u64,
                                });
                            }
                            Self::$name($name::decode_fields(&mut r)?)
                        }
                    )*
                    other => return Err($crate::Error::UnknownMessageType(other)),
                };
                r.finish()?;
                if msg.to_bytes() != bytes {
                    return Err($crate::Error::NonCanonical);
                }
                Ok(msg)
            }

            /// The message's bytes.
            #[must_use]
            pub fn to_bytes(&self) -> Vec<u8> {
                match self {
                    $( Self::$name(m) => m.to_bytes(), )*
                }
            }

            /// The message type's name.
            #[must_use]
            pub fn name(&self) -> &'static str {
                match self {
                    $( Self::$name(_) => stringify!($name), )*
                }
            }

            /// Each field's name and reading, in wire order (secrets redacted).
            #[must_use]
            pub fn fields(&self) -> Vec<(&'static str, String)> {
                match self {
                    $( Self::$name(m) => m.fields(), )*
                }
            }
        }
    };
}
