//! One full collab key establishment in memory (all four roles, every message encoded,
//! decoded and checked), per suite.
// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use m2msec_node::collab::deployment::{Params, Suite};
use m2msec_node::collab::memory::MemoryDeployment;

fn full_run(c: &mut Criterion) {
    let mut group = c.benchmark_group("collab_full_run");
    group.sample_size(20);
    for suite in [Suite::Modern, Suite::Classic] {
        let params = Params {
            suite,
            ..Params::default()
        };
        let Ok(mut deployment) = MemoryDeployment::new(&params, 1) else {
            eprintln!("cannot build the {} deployment", suite.name());
            continue;
        };
        group.bench_function(suite.name(), |b| {
            b.iter(|| {
                let result = deployment.run_session();
                assert!(result.is_ok_and(|r| r.keys_match()), "session failed");
            });
        });
    }
    group.finish();
}

criterion_group!(benches, full_run);
criterion_main!(benches);
