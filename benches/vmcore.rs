//! A whole-dump check: open a real (trimmed) dump, read kallsyms, BTF and
//! ORC out of it, list every task and walk each one. Compare with drgn via
//! scripts/drgn/time-compare.sh (drgn is Python and needs DWARF, so it is
//! timed there rather than here).

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use lpstack::dump::Dump;
use lpstack::kernel::check::CheckConfig;
use lpstack::kernel::image::{Kernel, OpenOptions};
use lpstack::patchset::{PatchSet, parse_funcs};

fn bench(c: &mut Criterion) {
    for dir in ["6.12.117+deb12-amd64", "6.1.0-57-amd64"] {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vmcore").join(dir);
        let bytes = std::fs::read(root.join("vmcore.trimmed.kdump")).expect("fixture");
        let funcs = std::fs::read_to_string(root.join("funcs.txt")).expect("funcs");
        let specs = parse_funcs(&funcs, "vmlinux").expect("funcs.txt");
        let mut g = c.benchmark_group(format!("vmcore-{dir}"));
        g.sample_size(20);
        // One thread, and two (tables read by two readers, tasks handed
        // from the listing to a second walker); the last as `check vmcore`
        // does it on 2 CPUs: vmlinux's ORC read as the walks need it, all
        // on the pool's threads (a join from outside the pool parks the
        // caller and wakes two of the pool's).
        for (name, threads, orc_on_demand) in [
            ("open+check", 1, false),
            ("open+check, 2 threads", 2, false),
            ("open+check, 2 threads, ORC on demand", 2, true),
        ] {
            let check = || {
                let dump = Dump::open(&bytes).expect("dump");
                let vi = dump.vmcoreinfo().cloned().expect("vmcoreinfo");
                let options = OpenOptions { threads, orc_on_demand, ..OpenOptions::default() };
                let mut k = Kernel::open(dump, &vi, options).expect("kernel");
                let set = PatchSet::resolve(&specs, &k.symbols()).expect("set");
                let config = CheckConfig { threads, ..CheckConfig::default() };
                k.check(&set, &config, |_, _| {}).map(|c| c.tasks).expect("check").len()
            };
            g.bench_function(name, |b| {
                b.iter(|| black_box(if orc_on_demand { rayon::scope(|_| check()) } else { check() }))
            });
        }
        // The per-task part alone, on an opened kernel.
        let dump = Dump::open(&bytes).expect("dump");
        let vi = dump.vmcoreinfo().cloned().expect("vmcoreinfo");
        let mut k = Kernel::open(dump, &vi, OpenOptions::default()).expect("kernel");
        let set = PatchSet::resolve(&specs, &k.symbols()).expect("set");
        g.bench_function("check-tasks", |b| {
            b.iter(|| {
                black_box(k.check(&set, &CheckConfig::default(), |_, _| {}).map(|c| c.tasks).expect("check").len())
            })
        });
        // The same on two threads (`check vmcore --threads 2`).
        let two = CheckConfig { threads: 2, ..CheckConfig::default() };
        g.bench_function("check-tasks, 2 threads", |b| {
            b.iter(|| black_box(k.check(&set, &two, |_, _| {}).map(|c| c.tasks).expect("check").len()))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
