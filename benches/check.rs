//! `check` on the fixture hosts: every inspector, profile detection, the baseline and the
//! evaluation, as `nodedrift check` runs them (the process start-up is not included).
//!
//! Run: `cargo bench --bench check`.

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use nodedrift::check::{CheckOptions, run};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hosts")
        .join(name)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("check");
    for host in [
        "aks-ubuntu-drifted",
        "kubeadm",
        "azurelinux-kernel-mismatch",
    ] {
        let opts = CheckOptions {
            host_root: fixture(host),
            ..CheckOptions::default()
        };
        g.bench_function(host, |b| {
            b.iter(|| run(&opts).map(|r| r.summary.total).unwrap_or(0))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
