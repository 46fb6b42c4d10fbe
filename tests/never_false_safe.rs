//! The overriding rule as properties: a patched function on the stack, or
//! a stack that cannot be read reliably, is never "switchable".
//!
//! - Synthetic stacks (random frame shapes and depths) with a patched
//!   function planted at a random depth: blocked on it, or unreliable when
//!   the frame limit cuts the walk short.
//! - The same stacks, and real kernel stacks over the real 6.12 ORC table,
//!   corrupted at random below the planted frame's return address: never
//!   switchable.
//!
//! Case counts are small (the walks are cheap, but CI has 2 cores).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::OnceLock;

use proptest::prelude::*;

use lpstack::orc::elf::vmlinux_table;
use lpstack::orc::{OrcFormat, OrcTable};
use lpstack::patchset::{PatchSet, parse_funcs};
use lpstack::symbols::{Symbolizer, parse_system_map};
use lpstack::verdict::{Verdict, Walked, judge};
use lpstack::walk::synth::SynthStack;
use lpstack::walk::{CodeRanges, Frame, Reliability, StackBounds, WalkConfig, WalkStart, walk_orc};

const TEXT: u64 = 0xffffffff81000000;
const STACK: u64 = 0xffffc90000010000;
const STACK_SIZE: u64 = 0x4000;
const FUNCS: u64 = 16;

/// v3 entry bytes.
fn e(ty: u8, sp_reg: u8, sp_off: i16, bp_reg: u8, bp_off: i16) -> [u8; 6] {
    let s = sp_off.to_le_bytes();
    let b = bp_off.to_le_bytes();
    [s[0], s[1], b[0], b[1], sp_reg | (bp_reg << 4), ty]
}

/// Function `j` (0..FUNCS) at TEXT + j * 0x100 has one entry of shape
/// `shapes[j]`; function FUNCS is the outermost (END_OF_STACK or user
/// pt_regs).
fn table(shapes: &[u8], user_top: bool) -> OrcTable<'static> {
    let mut pairs: Vec<(u64, [u8; 6])> = shapes
        .iter()
        .enumerate()
        .map(|(j, &s)| {
            let entry = match s % 10 {
                0 => e(2, 5, 16, 1, -16),               // after push %rbp
                1 => e(2, 4, 16, 1, -16),               // bp-based frame
                k => e(2, 5, 8 * (k as i16 - 1), 0, 0), // sp + 8..64
            };
            (TEXT + j as u64 * 0x100, entry)
        })
        .collect();
    pairs.push((TEXT + FUNCS * 0x100, if user_top { e(3, 5, 0, 0, 0) } else { e(1, 0, 0, 0, 0) }));
    pairs.push((TEXT + (FUNCS + 1) * 0x100, e(0, 0, 0, 0, 0)));
    OrcTable::from_unsorted(pairs, OrcFormat::V3).unwrap()
}

fn walk(table: &OrcTable<'_>, s: &SynthStack, stack: &[u8], config: &WalkConfig) -> (Vec<Frame>, Reliability) {
    let mut code = CodeRanges::new();
    code.add(table.first_ip(), table.last_ip() + 1);
    let mut mem = lpstack::memory::SliceMemory::new(s.base, stack);
    let mut frames = Vec::new();
    let r = walk_orc(
        table,
        &mut mem,
        &mut code,
        &StackBounds::task(s.base, s.base + stack.len() as u64),
        WalkStart::blocked(s.start_ip, s.start_sp, s.start_bp, false),
        config,
        &mut frames,
    );
    (frames, r)
}

fn verdict_name(frames: &[Frame], r: &Reliability, set: &PatchSet) -> (&'static str, Option<usize>) {
    let mut hits = Vec::new();
    match judge(Walked { frames, reliability: Some(r), running: false }, set, None, &mut hits) {
        Verdict::Blocked { frame, .. } => ("blocked", Some(frame)),
        v => (v.name(), None),
    }
}

/// A synthetic chain: (function, offset in it) innermost first, then the
/// outermost function.
fn chain_strategy() -> impl Strategy<Value = (Vec<u8>, bool, Vec<(u64, u64)>)> {
    (
        proptest::collection::vec(any::<u8>(), FUNCS as usize),
        any::<bool>(),
        proptest::collection::vec((0..FUNCS, 1u64..0xf0), 1..40),
    )
}

fn pcs(calls: &[(u64, u64)]) -> Vec<u64> {
    let mut v: Vec<u64> = calls.iter().map(|&(f, off)| TEXT + f * 0x100 + off).collect();
    v.push(TEXT + FUNCS * 0x100 + 0x10);
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn planted_patched_function_is_never_switchable(
        (shapes, user_top, calls) in chain_strategy(),
        depth in any::<prop::sample::Index>(),
        limit in 1usize..60,
    ) {
        let t = table(&shapes, user_top);
        let chain = pcs(&calls);
        let s = SynthStack::build(&t, &chain, STACK, STACK_SIZE);
        prop_assume!(s.is_some());
        let s = s.unwrap();
        let d = depth.index(calls.len());
        let f = calls[d].0;
        let set = PatchSet::from_ranges([("vmlinux", "planted", TEXT + f * 0x100, 0x100)]).unwrap();
        // Intact, with the kernel's limit: blocked on the first frame in f.
        let (frames, r) = walk(&t, &s, &s.bytes, &WalkConfig::default());
        prop_assert!(r.is_reliable(), "{:?}", r);
        prop_assert_eq!(frames.iter().map(|f| f.pc).collect::<Vec<_>>(), chain.clone());
        let first = calls.iter().position(|c| c.0 == f).unwrap();
        prop_assert_eq!(verdict_name(&frames, &r, &set), ("blocked", Some(first)));
        // A frame limit at or below the depth: unreliable, never switchable.
        let config = WalkConfig { max_frames: limit, ..WalkConfig::default() };
        let (frames, r) = walk(&t, &s, &s.bytes, &config);
        let (v, _) = verdict_name(&frames, &r, &set);
        prop_assert_ne!(v, "switchable");
        if limit <= chain.len() {
            prop_assert_eq!(v, "unreliable");
        }
    }

    #[test]
    fn synthetic_stack_corrupted_below_the_planted_frame(
        (shapes, user_top, calls) in chain_strategy(),
        depth in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        bytes in proptest::collection::vec(any::<u8>(), 1..16),
    ) {
        let t = table(&shapes, user_top);
        let chain = pcs(&calls);
        let s = SynthStack::build(&t, &chain, STACK, STACK_SIZE);
        prop_assume!(s.is_some());
        let s = s.unwrap();
        let d = depth.index(calls.len());
        let set = PatchSet::from_ranges([("vmlinux", "planted", TEXT + calls[d].0 * 0x100, 0x100)]).unwrap();
        let (frames, _) = walk(&t, &s, &s.bytes, &WalkConfig::default());
        // The planted frame's return address sits just below its sp.
        let slot = frames[d].sp.saturating_sub(8).max(s.start_sp);
        let lo = (s.start_sp - s.base) as usize;
        let hi = (slot - s.base) as usize + 8;
        let o = lo + at.index(hi - lo);
        let mut stack = s.bytes.clone();
        for (k, b) in bytes.iter().enumerate() {
            if let Some(x) = stack.get_mut(o + k).filter(|_| o + k < hi) {
                *x = *b;
            }
        }
        // As for real stacks below: only a rewritten return address of the
        // frames up to the planted one (a different stack in memory) may
        // make the task switchable.
        let slot_rewritten = (1..=d.min(frames.len() - 1)).any(|k| {
            let at = (frames[k].sp.saturating_sub(8).max(s.start_sp) - s.base) as usize;
            stack[at..at + 8] != s.bytes[at..at + 8]
        });
        let (frames, r) = walk(&t, &s, &stack, &WalkConfig::default());
        prop_assert!(verdict_name(&frames, &r, &set).0 != "switchable" || slot_rewritten, "{:?} {:x?}", r, frames);
    }
}

/// The real 6.12 table, its symbols, and real tasks' chains laid out.
struct Real {
    table: OrcTable<'static>,
    symbols: Symbolizer,
    stacks: Vec<(Vec<u64>, SynthStack)>,
}

fn real() -> &'static Real {
    static REAL: OnceLock<Real> = OnceLock::new();
    REAL.get_or_init(|| {
        let elf: &'static [u8] = Box::leak(common::read("orc/vmlinux-6.12.117+deb12-amd64.orc.elf").into_boxed_slice());
        let table = vmlinux_table(elf, None, None).unwrap();
        let mut symbols = Symbolizer::new();
        symbols.add(parse_system_map("vmlinux", &common::read_gz("orc/System.map-6.12.117+deb12-amd64.gz")).unwrap());
        let chains = common::stack_chains("stacks-6.12.117.txt");
        let stacks: Vec<(Vec<u64>, SynthStack)> = chains
            .into_iter()
            .filter(|c| c.len() >= 3)
            .map(|c| {
                let s = SynthStack::build(&table, &c, STACK, STACK_SIZE).unwrap();
                (c, s)
            })
            .collect();
        assert!(stacks.len() > 20);
        Real { table, symbols, stacks }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn real_stack_corrupted_below_the_patched_frame(
        task in any::<prop::sample::Index>(),
        depth in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        bytes in proptest::collection::vec(any::<u8>(), 1..16),
        word_aligned in any::<bool>(),
    ) {
        let real = real();
        let (chain, s) = &real.stacks[task.index(real.stacks.len())];
        // The patched function: the one of a frame past the innermost.
        let d = 1 + depth.index(chain.len() - 1);
        let name = real.symbols.lookup(chain[d]).unwrap().name.to_string();
        let set = PatchSet::resolve(&parse_funcs(&name, "vmlinux").unwrap(), &real.symbols).unwrap();
        let (frames, r) = walk(&real.table, s, &s.bytes, &WalkConfig::default());
        prop_assert!(r.is_reliable());
        prop_assert_eq!(verdict_name(&frames, &r, &set).0, "blocked");
        // Corrupt bytes between the start sp and the planted frame's
        // return address (inclusive).
        let slot = frames[d].sp - 8;
        let lo = (s.start_sp - s.base) as usize;
        let hi = (slot - s.base) as usize + 8;
        let mut o = lo + at.index(hi - lo);
        if word_aligned {
            o &= !7;
            o = o.max(lo);
        }
        let mut stack = s.bytes.clone();
        for (k, b) in bytes.iter().enumerate() {
            if o + k < hi {
                stack[o + k] = *b;
            }
        }
        let (frames2, r2) = walk(&real.table, s, &stack, &WalkConfig::default());
        // A rewritten return address of frames 1..=d that is itself a
        // valid one (same ORC frame size, a clean end) is a different stack
        // in memory: the kernel, reading it, would switch the task too. Any
        // other corruption must not make it switchable.
        let slot_rewritten = (1..=d).any(|k| {
            let at = (frames[k].sp - 8 - s.base) as usize;
            stack[at..at + 8] != s.bytes[at..at + 8]
        });
        let verdict = verdict_name(&frames2, &r2, &set).0;
        prop_assert!(
            verdict != "switchable" || slot_rewritten,
            "{} at depth {}: bytes {:02x?} at +{:#x}: {:?}",
            name, d, bytes, o, r2
        );
    }
}
