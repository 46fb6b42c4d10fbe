//! ORC lookup and full reliable walks over real Debian kernel tables, with
//! return-address chains taken from real tasks (`/proc/PID/stack` of a
//! booted guest, tests/fixtures/stacks/).

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lpstack::memory::SliceMemory;
use lpstack::orc::elf::vmlinux_table;
use lpstack::orc::{OrcFinder, OrcTable};
use lpstack::walk::synth::SynthStack;
use lpstack::walk::{CodeRanges, StackBounds, WalkConfig, WalkStart, walk_orc};

const KERNELS: &[(&str, &str)] = &[("6.12.117+deb12-amd64", "6.12.117"), ("6.1.0-57-amd64", "6.1.192")];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Chains of return addresses, innermost first, one per task.
fn chains(version: &str) -> Vec<Vec<u64>> {
    let text = std::fs::read_to_string(fixture(&format!("stacks/stacks-{version}.txt"))).expect("stacks fixture");
    let mut out: Vec<Vec<u64>> = Vec::new();
    for line in text.lines() {
        if line.starts_with("task ") {
            out.push(Vec::new());
        } else if let (Some(chain), Some(addr)) = (out.last_mut(), line.split_whitespace().next())
            && let Ok(a) = u64::from_str_radix(addr, 16)
        {
            chain.push(a);
        }
    }
    out.retain(|c| !c.is_empty());
    out
}

const STACK: u64 = 0xffffc90000010000;
const STACK_SIZE: u64 = 0x4000;

fn bench(c: &mut Criterion) {
    for &(release, version) in KERNELS {
        let elf = std::fs::read(fixture(&format!("orc/vmlinux-{release}.orc.elf"))).expect("orc fixture");
        let table: OrcTable<'_> = vmlinux_table(&elf, None, Some(release)).expect("table");
        let chains = chains(version);
        let pcs: Vec<u64> = chains.iter().flatten().map(|pc| pc - 1).collect();

        let mut g = c.benchmark_group(format!("orc-{version}"));
        g.throughput(Throughput::Elements(pcs.len() as u64));
        g.bench_function("lookup", |b| {
            b.iter(|| {
                for &pc in &pcs {
                    black_box(table.find(black_box(pc)));
                }
            })
        });

        // Full walks: a stack image per chain that the walk turns back into
        // that chain.
        let stacks: Vec<SynthStack> =
            chains.iter().filter_map(|c| SynthStack::build(&table, c, STACK, STACK_SIZE)).collect();
        let mut code = CodeRanges::new();
        code.add(table.first_ip(), table.last_ip() + 1);
        let bounds = StackBounds::task(STACK, STACK + STACK_SIZE);
        let config = WalkConfig::default();
        let mut frames = Vec::with_capacity(config.max_frames);
        let total: usize = stacks
            .iter()
            .map(|s| {
                let mut mem = SliceMemory::new(s.base, &s.bytes);
                let start = WalkStart::blocked(s.start_ip, s.start_sp, s.start_bp, false);
                let r = walk_orc(&table, &mut mem, &mut code, &bounds, start, &config, &mut frames);
                assert!(r.is_reliable(), "{r:?}");
                frames.len()
            })
            .sum();
        eprintln!("{release}: {} chains, {} walkable, {total} frames", chains.len(), stacks.len());
        g.throughput(Throughput::Elements(total as u64));
        g.bench_function("walk", |b| {
            b.iter(|| {
                for s in &stacks {
                    let mut mem = SliceMemory::new(s.base, &s.bytes);
                    let start = WalkStart::blocked(s.start_ip, s.start_sp, s.start_bp, false);
                    black_box(walk_orc(&table, &mut mem, &mut code, &bounds, start, &config, &mut frames));
                }
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
