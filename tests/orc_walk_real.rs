//! Walks over real kernels' ORC tables with the return-address chains of
//! real tasks (from `/proc/PID/stack` of booted Debian guests), laid out as
//! stack images. Frames, symbols, verdicts and corruption are checked.

mod common;

use lpstack::memory::SliceMemory;
use lpstack::orc::OrcTable;
use lpstack::orc::elf::vmlinux_table;
use lpstack::patchset::{PatchSet, parse_funcs};
use lpstack::symbols::{Symbolizer, parse_system_map};
use lpstack::verdict::{Verdict, Walked, judge};
use lpstack::walk::synth::SynthStack;
use lpstack::walk::{
    CleanEnd, CodeRanges, Frame, Reliability, StackBounds, UnreliableReason, WalkConfig, WalkStart, walk_orc,
};

const STACK: u64 = 0xffffc90000010000;
const SIZE: u64 = 0x4000;
const VERSIONS: &[(&str, &str)] = &[("6.12.117+deb12-amd64", "6.12.117"), ("6.1.0-57-amd64", "6.1.192")];

struct Task {
    comm: String,
    /// (address, "symbol+0xoff/0xsize")
    frames: Vec<(u64, String)>,
}

fn tasks(version: &str) -> Vec<Task> {
    let text = String::from_utf8(common::read(&format!("stacks/stacks-{version}.txt"))).unwrap();
    let mut out: Vec<Task> = Vec::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        match (w.next(), w.next(), w.next()) {
            (Some("task"), Some(_pid), Some(comm)) => out.push(Task { comm: comm.into(), frames: vec![] }),
            (Some(addr), Some(sym), None) => {
                out.last_mut().unwrap().frames.push((u64::from_str_radix(addr, 16).unwrap(), sym.to_string()))
            }
            _ => panic!("bad line {line:?}"),
        }
    }
    out
}

fn walk(table: &OrcTable<'_>, code: &mut CodeRanges, s: &SynthStack, frames: &mut Vec<Frame>) -> Reliability {
    let mut mem = SliceMemory::new(s.base, &s.bytes);
    walk_orc(
        table,
        &mut mem,
        code,
        &StackBounds::task(STACK, STACK + SIZE),
        WalkStart::blocked(s.start_ip, s.start_sp, s.start_bp, false),
        &WalkConfig::default(),
        frames,
    )
}

#[test]
fn real_chains_walk_back_reliably_and_symbolize_like_the_kernel() {
    for &(release, version) in VERSIONS {
        let elf = common::read(&format!("orc/vmlinux-{release}.orc.elf"));
        let table = vmlinux_table(&elf, None, Some(release)).unwrap();
        let map = parse_system_map("vmlinux", &common::read_gz(&format!("orc/System.map-{release}.gz"))).unwrap();
        let mut symbols = Symbolizer::new();
        symbols.add(map);
        let mut code = CodeRanges::new();
        code.add(table.first_ip(), table.last_ip() + 1);
        let mut frames = Vec::new();
        let tasks = tasks(version);
        assert!(tasks.len() > 40, "{version}");
        let (mut user, mut kthreads) = (0, 0);
        for t in &tasks {
            let chain: Vec<u64> = t.frames.iter().map(|f| f.0).collect();
            let s = SynthStack::build(&table, &chain, STACK, SIZE)
                .unwrap_or_else(|| panic!("{version} {}: chain not laid out", t.comm));
            let r = walk(&table, &mut code, &s, &mut frames);
            match r {
                Reliability::Reliable(CleanEnd::UserRegs) => user += 1,
                Reliability::Reliable(CleanEnd::EndOfStack) => kthreads += 1,
                other => panic!("{version} {}: {other:?}", t.comm),
            }
            assert_eq!(frames.iter().map(|f| f.pc).collect::<Vec<_>>(), chain, "{version} {}", t.comm);
            // Symbolized as the kernel printed it: name+0xoff/0xsize.
            for (f, (_, want)) in frames.iter().zip(&t.frames) {
                let s = symbols.lookup(f.pc).unwrap();
                assert_eq!(&format!("{}+{:#x}/{:#x}", s.name, s.offset, s.size), want, "{version}");
            }
        }
        assert!(user >= 5 && kthreads >= 20, "{version}: {user} user, {kthreads} kthreads");
    }
}

#[test]
fn verdicts_on_real_chains() {
    let (release, version) = VERSIONS[0];
    let elf = common::read(&format!("orc/vmlinux-{release}.orc.elf"));
    let table = vmlinux_table(&elf, None, Some(release)).unwrap();
    let mut symbols = Symbolizer::new();
    symbols.add(parse_system_map("vmlinux", &common::read_gz(&format!("orc/System.map-{release}.gz"))).unwrap());
    let specs = parse_funcs("# the cat blocked on an empty pipe\npipe_read\nfifo_open\n", "vmlinux").unwrap();
    let set = PatchSet::resolve(&specs, &symbols).unwrap();
    let mut code = CodeRanges::new();
    code.add(table.first_ip(), table.last_ip() + 1);
    let (mut frames, mut hits) = (Vec::new(), Vec::new());
    let mut blocked = Vec::new();
    for t in tasks(version) {
        let chain: Vec<u64> = t.frames.iter().map(|f| f.0).collect();
        let s = SynthStack::build(&table, &chain, STACK, SIZE).unwrap();
        let r = walk(&table, &mut code, &s, &mut frames);
        match judge(Walked { frames: &frames, reliability: Some(&r), running: false }, &set, None, &mut hits) {
            Verdict::Switchable => {
                assert!(!t.frames.iter().any(|f| f.1.starts_with("pipe_read+") || f.1.starts_with("fifo_open+")))
            }
            Verdict::Blocked { function, frame, .. } => {
                assert!(t.frames[frame].1.starts_with(&format!("{}+", function.function)));
                blocked.push((t.comm.clone(), function.function.clone()));
            }
            v => panic!("{}: {v:?}", t.comm),
        }
    }
    assert!(blocked.contains(&("cat".into(), "pipe_read".into())), "{blocked:?}");
    assert!(blocked.contains(&("cat".into(), "fifo_open".into())), "{blocked:?}");
}

#[test]
fn corrupting_a_real_stack_never_yields_a_clean_walk_past_the_damage() {
    let (release, version) = VERSIONS[0];
    let elf = common::read(&format!("orc/vmlinux-{release}.orc.elf"));
    let table = vmlinux_table(&elf, None, Some(release)).unwrap();
    let mut code = CodeRanges::new();
    code.add(table.first_ip(), table.last_ip() + 1);
    let mut frames = Vec::new();
    let t = tasks(version).into_iter().find(|t| t.comm == "cat").unwrap();
    let chain: Vec<u64> = t.frames.iter().map(|f| f.0).collect();
    let good = SynthStack::build(&table, &chain, STACK, SIZE).unwrap();
    let r = walk(&table, &mut code, &good, &mut frames);
    assert!(r.is_reliable());
    // Overwrite the second return address with data, a user address, and
    // an address inside a function's prologue with an UNDEFINED entry.
    // Where chain[1] sits on the stack.
    let slot = good.start_sp + {
        (0..SIZE / 8)
            .map(|i| i * 8)
            .find(|&o| {
                let a = (good.start_sp - STACK + o) as usize;
                a + 8 <= good.bytes.len() && good.bytes[a..a + 8] == chain[1].to_le_bytes()
            })
            .unwrap()
    };
    for (bad, want) in [
        (0xffff888000001000u64, "not-text"),
        (0x7ffd12345678, "not-text"),
        (table.first_ip() + 0x32 + 1, "undefined-unwind-entry"),
    ] {
        let mut s = good.clone();
        let o = (slot - STACK) as usize;
        s.bytes[o..o + 8].copy_from_slice(&bad.to_le_bytes());
        let r = walk(&table, &mut code, &s, &mut frames);
        match r {
            Reliability::Unreliable { reason, frame } => {
                assert_eq!(reason.code(), want, "{bad:#x}: {reason}");
                assert_eq!(frame, 1);
                if let UnreliableReason::NotText { pc } = reason {
                    assert_eq!(pc, bad);
                }
            }
            ok => panic!("{bad:#x}: {ok:?}"),
        }
    }
}
