//! The SGA server's durable records: its two tables, the changes its events ask the daemon to
//! write ([`StoreOp`]), what a restarted server reads back ([`ServerState`]), and the keys of
//! held messages.

use zeroize::Zeroizing;

/// Store table of registrations.
pub const DEVICES_TABLE: &str = "sga_devices";
/// Store table of messages awaiting delivery.
pub const MESSAGES_TABLE: &str = "sga_messages";

/// A change to durable state, to be written before anything the same call queued is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Put `value` at `key` in `table`.
    Put {
        /// Table name.
        table: &'static str,
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Remove `key` from `table`.
    Remove {
        /// Table name.
        table: &'static str,
        /// Key.
        key: Vec<u8>,
    },
}

impl StoreOp {
    /// Writes the change to `store`.
    ///
    /// # Errors
    ///
    /// A store error if the write could not be made durable.
    pub fn apply(&self, store: &dyn m2msec_store::Store) -> m2msec_store::Result<()> {
        match self {
            Self::Put { table, key, value } => store.put(table, key, value),
            Self::Remove { table, key } => store.remove(table, key).map(|_| ()),
        }
    }
}

/// The server's durable state as its store holds it, for [`Server::new`](super::Server::new): what a server killed
/// at any point (SIGKILL) had made durable, so that its successor knows every device and
/// forwards every message it acknowledged.
#[derive(Default)]
pub struct ServerState {
    /// The registrations: the values of [`DEVICES_TABLE`] (each holds a device's key k_d).
    pub devices: Vec<Zeroizing<Vec<u8>>>,
    /// The held messages: the (key, value) pairs of [`MESSAGES_TABLE`].
    pub messages: Vec<(Vec<u8>, Vec<u8>)>,
}

impl core::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Counts only: the registrations hold the devices' keys.
        f.debug_struct("ServerState")
            .field("devices", &self.devices.len())
            .field("messages", &self.messages.len())
            .finish()
    }
}

impl ServerState {
    /// What `store` holds.
    ///
    /// # Errors
    ///
    /// A store error if the store cannot be read.
    pub fn load(store: &dyn m2msec_store::Store) -> m2msec_store::Result<Self> {
        let devices = store.scan(DEVICES_TABLE)?.into_iter();
        let devices = devices.map(|(_, v)| Zeroizing::new(v));
        Ok(Self {
            devices: devices.collect(),
            messages: store.scan(MESSAGES_TABLE)?,
        })
    }
}

pub(super) fn recipient_prefix(to: &str) -> Vec<u8> {
    let mut k = u16::try_from(to.len())
        .unwrap_or(u16::MAX)
        .to_be_bytes()
        .to_vec();
    k.extend_from_slice(to.as_bytes());
    k
}

pub(super) fn message_prefix(to: &str, session: &[u8; 16]) -> Vec<u8> {
    let mut k = recipient_prefix(to);
    k.extend_from_slice(session);
    k
}

/// Store key of a held message: recipient, session, sender, id — so a scan in key order
/// yields each sender's messages in order.
pub(super) fn message_key(to: &str, session: &[u8; 16], from: &str, id: u64) -> Vec<u8> {
    let mut k = message_prefix(to, session);
    k.extend_from_slice(&u16::try_from(from.len()).unwrap_or(u16::MAX).to_be_bytes());
    k.extend_from_slice(from.as_bytes());
    k.extend_from_slice(&id.to_be_bytes());
    k
}
