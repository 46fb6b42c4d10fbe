//! vmlinux symbols for a check, three ways, on the real 6.12 kernel of the
//! committed dump (163k symbols):
//! - `in-memory lazy`: the kallsyms tables read in place, names decoded
//!   only when a lookup needs them (what `check` and `check live` do);
//! - `in-memory, every name`: the same tables with
//!   `kallsyms_seqs_of_names` zeroed, so every name is decoded and indexed
//!   up front (what kernels before 6.2 cost);
//! - `/proc/kallsyms text`: parsing the text /proc/kallsyms prints for
//!   the same symbols (what `check live --symbols-from proc-kallsyms`
//!   does, without the kernel's own cost of printing it).
//!
//! Each iteration then answers what a check asks: ~20 setup symbols by
//! name, and the function of 64 return addresses.
//! The tables are first copied out of the dump, so that decompressing
//! dump pages is not measured.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use lpstack::dump::Dump;
use lpstack::kernel::image::{Kernel, OpenOptions, kallsyms_from_vmcoreinfo};
use lpstack::memory::{SliceMemory, read_vec};
use lpstack::symbols::{SymbolTable, parse_proc_kallsyms};

const SETUP_NAMES: [&str; 20] = [
    "_stext",
    "_etext",
    "init_task",
    "init_uts_ns",
    "modules",
    "runqueues",
    "__per_cpu_offset",
    "nr_cpu_ids",
    "__cpu_online_mask",
    "init_stack",
    "__end_init_stack",
    "ret_from_fork_asm",
    "__start_orc_unwind_ip",
    "__stop_orc_unwind_ip",
    "__start_orc_unwind",
    "__start_orc_header",
    "return_to_handler",
    "_sinittext",
    "_einittext",
    "init_pid_ns",
];

fn answer(table: &SymbolTable, pcs: &[u64]) -> usize {
    let named = SETUP_NAMES.iter().filter_map(|n| table.find_by_name(n).next()).count();
    named + pcs.iter().filter_map(|&pc| table.lookup(pc)).count()
}

fn bench(c: &mut Criterion) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vmcore/6.12.117+deb12-amd64");
    let bytes = std::fs::read(root.join("vmcore.trimmed.kdump")).expect("fixture");
    let dump = Dump::open(&bytes).expect("dump");
    let vi = dump.vmcoreinfo().cloned().expect("vmcoreinfo");
    let mut kernel = Kernel::open(dump, &vi, OpenOptions::default()).expect("kernel");
    let eager = {
        let mut t = kernel.symbols().table("vmlinux").expect("vmlinux").clone();
        t.finish();
        t
    };
    // From kallsyms_num_syms to the end of kallsyms_seqs_of_names (6.12 layout).
    let start = vi.symbol("kallsyms_num_syms").expect("kallsyms_num_syms");
    let end = vi.symbol("kallsyms_relative_base").expect("relative_base") + 8 + 3 * eager.len() as u64;
    let image = read_vec(&mut kernel.memory(), start, (end - start) as usize).expect("kallsyms tables");
    // Without a name order: the seqs zeroed (not a permutation).
    let mut unordered = image.clone();
    let seqs_at = (vi.symbol("kallsyms_relative_base").expect("relative_base") + 8 - start) as usize;
    unordered[seqs_at..].fill(0);
    let text: String = eager
        .symbols()
        .iter()
        .map(|s| {
            let t = if s.is_text() { 't' } else { 'd' };
            format!("{:016x} {t} {}\n", s.address, eager.name(s))
        })
        .collect();
    let pcs: Vec<u64> = eager.symbols().iter().filter(|s| s.is_text()).step_by(2500).map(|s| s.address + 1).collect();

    let mut g = c.benchmark_group("kallsyms-6.12");
    g.sample_size(20);
    g.bench_function("in-memory lazy", |b| {
        b.iter(|| {
            let mut mem = SliceMemory { base: start, bytes: &image };
            let t = kallsyms_from_vmcoreinfo(&mut mem, &vi).expect("kallsyms");
            assert!(t.is_lazy());
            black_box(answer(&t, &pcs))
        })
    });
    g.bench_function("in-memory, every name", |b| {
        b.iter(|| {
            let mut mem = SliceMemory { base: start, bytes: &unordered };
            let t = kallsyms_from_vmcoreinfo(&mut mem, &vi).expect("kallsyms");
            assert!(!t.is_lazy());
            black_box(answer(&t, &pcs))
        })
    });
    g.bench_function("/proc/kallsyms text", |b| {
        b.iter(|| {
            let k = parse_proc_kallsyms(&text).expect("text");
            black_box(answer(&k.vmlinux, &pcs))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
