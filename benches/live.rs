//! `check live` natively: the committed 6.12 dump served as /proc/kcore
//! would be (a [`KcorePhys`] over a file whose offsets are physical
//! addresses, with kcore's direct-map and text segments), its pages
//! decompressed beforehand so that only lpstack's own work is timed: the
//! kernel setup (kallsyms, BTF, ORC, modules) and the per-task read, walk
//! and re-read, on one and on two threads, beside the plain dump check of
//! the same tasks. The kernel side of kcore (a syscall and a copy per
//! read) is not in these figures; the guest run's `--timing` has it.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use lpstack::dump::Dump;
use lpstack::dump::kcore::{KcoreHeaders, KcorePhys, KcoreSegment, ReadAt};
use lpstack::kernel::check::{CheckConfig, CheckMode, Select};
use lpstack::kernel::image::{Kernel, OpenOptions};
use lpstack::memory::Memory;
use lpstack::patchset::{PatchSet, parse_funcs};
use lpstack::walk::WalkConfig;

/// The dump's pages, decompressed; absent pages read as zeros (RAM that
/// is there, as kcore serves it).
#[derive(Clone)]
struct Pages(Arc<HashMap<u64, Vec<u8>>>);

impl ReadAt for Pages {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let n = (4096 - (at % 4096) as usize).min(buf.len() - done);
            match self.0.get(&(at / 4096)) {
                Some(page) => buf[done..done + n].copy_from_slice(&page[(at % 4096) as usize..][..n]),
                None => buf[done..done + n].fill(0),
            }
            done += n;
        }
        Ok(())
    }

    fn split_reader(&self, _path: &str) -> Option<Self> {
        Some(self.clone())
    }
}

fn bench(c: &mut Criterion) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vmcore/6.12.117+deb12-amd64");
    let bytes = std::fs::read(root.join("vmcore.trimmed.kdump")).expect("fixture");
    let funcs = std::fs::read_to_string(root.join("funcs.txt")).expect("funcs");
    let specs = parse_funcs(&funcs, "vmlinux").expect("funcs.txt");
    let mut dump = Dump::open(&bytes).expect("dump");
    let vi = dump.vmcoreinfo().cloned().expect("vmcoreinfo");
    let mut pages = HashMap::new();
    let mut page = vec![0u8; 4096];
    for pfn in 0..(4u64 << 20) {
        if dump.read_phys(pfn * 4096, &mut page).is_ok() {
            pages.insert(pfn, page.clone());
        }
    }
    let pages = Pages(Arc::new(pages));
    let mut plain = Kernel::open(dump, &vi, OpenOptions::default()).expect("kernel");
    let set = PatchSet::resolve(&specs, &plain.symbols()).expect("set");
    let sym = |name| plain.symbol(name).expect(name);
    let (text, end) = (sym("_text"), sym("_end"));
    // The direct map is linear: any slab address (the next task) gives it.
    let head = plain.init_task() + plain.layout().task.tasks.offset;
    let next = plain.memory().read_u64(head).expect("task list");
    let page_offset = next - plain.memory().translate(next).expect("next task");
    let text_pa = plain.memory().translate(text).expect("text");
    let headers = KcoreHeaders {
        segments: vec![
            KcoreSegment { vaddr: page_offset, paddr: 0, offset: 0, size: 64 << 30 },
            KcoreSegment { vaddr: text, paddr: text_pa, offset: text_pa, size: end - text },
        ],
        vmcoreinfo: Some(vi.clone()),
    };
    let open = || {
        Kernel::open(
            KcorePhys::new("dump as kcore", pages.clone(), &headers).expect("kcore"),
            &vi,
            OpenOptions::default(),
        )
        .expect("kernel")
    };
    let config = WalkConfig::default();
    let live = |threads: u8| CheckConfig {
        walk: config,
        mode: CheckMode::Live { passes: 5 },
        select: Select::All,
        threads: usize::from(threads),
    };
    let tasks = plain
        .check(
            &set,
            &CheckConfig { walk: config, mode: CheckMode::Dump { cpus: &[] }, select: Select::All, threads: 1 },
            |_, _| {},
        )
        .map(|c| c.tasks)
        .expect("check")
        .len();

    let mut g = c.benchmark_group(format!("live-6.12-{tasks}-tasks"));
    g.sample_size(20);
    g.bench_function("setup", |b| b.iter(|| black_box(open().symbols().tables().len())));
    let mut kernel = open();
    g.bench_function("check, 1 thread", |b| {
        b.iter(|| black_box(kernel.check(&set, &live(1), |_, _| {}).expect("check").tasks.len()))
    });
    g.bench_function("check, 2 threads", |b| {
        b.iter(|| black_box(kernel.check(&set, &live(2), |_, _| {}).expect("check").tasks.len()))
    });
    g.bench_function("dump check (no re-reads)", |b| {
        b.iter(|| {
            black_box(
                kernel
                    .check(
                        &set,
                        &CheckConfig {
                            walk: config,
                            mode: CheckMode::Dump { cpus: &[] },
                            select: Select::All,
                            threads: 1,
                        },
                        |_, _| {},
                    )
                    .map(|c| c.tasks)
                    .expect("check")
                    .len(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
