//! What several test files ask of a simulated run's events, written once.
#![allow(dead_code)] // each test binary uses its own part

/// What `pick` finds in `events`, in order.
pub(crate) fn picked<'a, E: 'a, T>(
    events: impl IntoIterator<Item = &'a E>,
    pick: impl FnMut(&'a E) -> Option<T>,
) -> Vec<T> {
    events.into_iter().filter_map(pick).collect()
}

/// The first thing `pick` finds in `events`; the test fails with `what` and the events when
/// nothing is found.
pub(crate) fn first<'a, E: core::fmt::Debug, T>(
    events: &'a [E],
    what: &str,
    pick: impl FnMut(&'a E) -> Option<T>,
) -> T {
    events
        .iter()
        .find_map(pick)
        .unwrap_or_else(|| panic!("{what}: {events:?}"))
}

/// The per-helper faults of a deployment of `helpers` helpers (proxies, third parties): `faults`
/// names the faulty ones by index, the others behave.
pub(crate) fn faults_at<F: Copy>(helpers: u8, faults: &[(usize, F)]) -> Vec<Option<F>> {
    let mut at = vec![None; usize::from(helpers)];
    for (i, f) in faults {
        at[*i] = Some(*f);
    }
    at
}

/// E2SEC: a party's and the EPC's events.
pub(crate) mod e2sec {
    use m2msec_protocol::e2sec::{EpcEvent, Error, PartyEvent};

    /// Errors a party refused datagrams with.
    pub(crate) fn rejections(events: &[PartyEvent]) -> Vec<&Error> {
        super::picked(events, |e| match e {
            PartyEvent::Rejected { error, .. } => Some(error),
            _ => None,
        })
    }

    /// Warrants the EPC issued.
    pub(crate) fn issued(events: &[EpcEvent]) -> usize {
        events
            .iter()
            .filter(|e| matches!(e, EpcEvent::Issued { .. }))
            .count()
    }

    /// Errors the EPC refused requests with.
    pub(crate) fn epc_rejections(events: &[EpcEvent]) -> Vec<&Error> {
        super::picked(events, |e| match e {
            EpcEvent::Rejected { error, .. } => Some(error),
            _ => None,
        })
    }

    /// Warrants a party stored.
    pub(crate) fn stored(events: &[PartyEvent]) -> usize {
        events
            .iter()
            .filter(|e| matches!(e, PartyEvent::WarrantStored { .. }))
            .count()
    }

    /// The first failure a party reported.
    pub(crate) fn failure(events: &[PartyEvent]) -> Option<&Error> {
        events.iter().find_map(|e| match e {
            PartyEvent::Failed { error, .. } => Some(error),
            _ => None,
        })
    }
}

/// SGA: the devices' and the server's events.
pub(crate) mod sga {
    use m2msec_protocol::sga::sim::World;
    use m2msec_protocol::sga::{DeviceEvent, Error, ServerEvent};

    /// The first failure `device` reported.
    pub(crate) fn failure(w: &World, device: usize) -> Option<&Error> {
        w.events.devices[device].iter().find_map(|e| match e {
            DeviceEvent::Failed { error, .. } => Some(error),
            _ => None,
        })
    }

    /// Errors `device` refused datagrams with.
    pub(crate) fn rejections(w: &World, device: usize) -> Vec<&Error> {
        super::picked(&w.events.devices[device], |e| match e {
            DeviceEvent::Rejected { error, .. } => Some(error),
            _ => None,
        })
    }

    /// Errors the server refused datagrams with.
    pub(crate) fn server_rejections(w: &World) -> Vec<&Error> {
        super::picked(&w.events.server, |e| match e {
            ServerEvent::Rejected { error, .. } => Some(error),
            _ => None,
        })
    }

    /// What `device` received: message ids and plaintexts, in order.
    pub(crate) fn received(w: &World, device: usize) -> Vec<(u64, Vec<u8>)> {
        super::picked(&w.events.devices[device], |e| match e {
            DeviceEvent::Received {
                message_id,
                plaintext,
                ..
            } => Some((*message_id, plaintext.to_vec())),
            _ => None,
        })
    }
}
