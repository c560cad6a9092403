//! The one-byte identifiers that name a cryptographic choice on the wire.

/// Declares an enum of choices, each named on the wire by one byte, with what every such enum
/// has: `ALL` (in identifier order), `id`, `From<Self> for u8` and a total `TryFrom<u8>` that
/// refuses an unknown byte as [`crate::Error::UnknownSuite`].
///
/// A macro, not a trait with default methods: the variants are listed once for the enum, `ALL`
/// and the decoder, which no function can do, and `TryFrom<u8>` cannot be a blanket impl over a
/// trait (it would overlap core's blanket `TryFrom` impl).
macro_rules! wire_ids {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $id:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[repr(u8)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $id, )+
        }

        impl $name {
            /// Every choice, in identifier order.
            pub const ALL: [Self; [$($id),+].len()] = [$(Self::$variant),+];

            /// The identifier byte on the wire.
            pub const fn id(self) -> u8 {
                self as u8
            }
        }

        impl From<$name> for u8 {
            fn from(choice: $name) -> Self {
                choice.id()
            }
        }

        impl TryFrom<u8> for $name {
            type Error = $crate::Error;

            fn try_from(id: u8) -> $crate::Result<Self> {
                match id {
                    $( $id => Ok(Self::$variant), )+
                    other => Err($crate::Error::UnknownSuite(other)),
                }
            }
        }
    };
}

pub(crate) use wire_ids;
