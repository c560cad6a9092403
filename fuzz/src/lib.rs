//! What the fuzz targets share.
#![forbid(unsafe_code)]

/// The body of a `*_roles` target: arbitrary datagrams into the live roles of protocol `$p`
/// (`m2msec_protocol::fuzzing::$p`, built once from seed 1), its events dropped after each.
#[macro_export]
macro_rules! roles_target {
    ($p:ident) => {
        type Live = m2msec_protocol::fuzzing::Live<m2msec_protocol::$p::sim::World>;

        static LIVE: std::sync::Mutex<Option<Live>> = std::sync::Mutex::new(None);

        libfuzzer_sys::fuzz_target!(|data: &[u8]| {
            m2msec_protocol::fuzzing::fuzz_one(
                &LIVE,
                || m2msec_protocol::fuzzing::$p(1).expect("deployment"),
                |w| w.events = Default::default(),
                data,
            );
        });
    };
}
