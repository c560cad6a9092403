//! One full collab key establishment in memory (all four roles, every message encoded,
//! decoded and checked), per suite.
// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use m2msec_crypto::rng::SeededRng;
use m2msec_node::collab::deployment::{Params, Suite};
use m2msec_protocol::collab::ServerEvent;
use m2msec_protocol::collab::sim::World;

fn full_run(c: &mut Criterion) {
    let mut group = c.benchmark_group("collab_full_run");
    group.sample_size(20);
    for suite in [Suite::Modern, Suite::Classic] {
        let params = Params {
            suite,
            ..Params::default()
        };
        let mut rng = SeededRng::from_seed_u64(1);
        let Ok(mut world) = World::generate(&params.spec(), &mut rng) else {
            eprintln!("cannot build the {} deployment", suite.name());
            continue;
        };
        group.bench_function(suite.name(), |b| {
            b.iter(|| {
                let before = world.events.server.len();
                assert!(world.run_honest(&mut rng).is_ok(), "session did not start");
                assert!(
                    world.events.server[before..]
                        .iter()
                        .any(|e| matches!(e, ServerEvent::Established(_))),
                    "session failed"
                );
            });
        });
    }
    group.finish();
}

criterion_group!(benches, full_run);
criterion_main!(benches);
