//! An ORC walk over a fuzzed table, registers and stack, reading the
//! stack through the memory reader (`SliceMemory`).
//!
//! Input: flags, max_frames, n, n x (u32 text offset, 6-byte entry), u32
//! text size, [trampoline kind, u32 offset], start (full registers, or u32
//! ip offset, sp, bp), u16 stack base below sp, irq stack (u64, u16), then
//! the stack bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lpstack::arch::x86_64::Reg;
use lpstack::memory::SliceMemory;
use lpstack::orc::{OrcFormat, OrcTable, OrcTables};
use lpstack::walk::{
    CodeRanges, KernelRegsPolicy, StackBounds, StackKind, StackRange, TrampolineKind, WalkConfig, WalkStart, walk_orc,
};

mod common;
use common::{Input, check_walk, regs};

const TEXT: u64 = 0xffffffff81000000;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.u8();
    let format = match flags % 3 {
        0 => OrcFormat::V1,
        1 => OrcFormat::V2,
        _ => OrcFormat::V3,
    };
    let config = WalkConfig {
        max_frames: usize::from(input.u8()).max(1),
        kernel_regs: if flags & 4 != 0 { KernelRegsPolicy::Reject } else { KernelRegsPolicy::Accept },
    };
    // Entries: (u32 offset into text, 6 bytes), in any order.
    let n = usize::from(input.u8());
    let pairs: Vec<(u64, [u8; 6])> = (0..n)
        .map(|_| {
            let ip = TEXT.wrapping_add(u64::from(input.u32()));
            let e = input.bytes(6);
            let mut b = [0u8; 6];
            b[..e.len()].copy_from_slice(e);
            (ip, b)
        })
        .collect();
    let Ok(table) = OrcTable::from_unsorted(pairs, format) else { return };
    let mut tables = OrcTables::new();
    tables.push(table);
    let mut code = CodeRanges::new();
    code.add(TEXT, TEXT.saturating_add(0x10000 + u64::from(input.u32())));
    if flags & 8 != 0 {
        let kind = match input.u8() % 3 {
            0 => TrampolineKind::FtraceGraph,
            1 => TrampolineKind::Kretprobe,
            _ => TrampolineKind::Rethook,
        };
        code.add_trampoline(TEXT.wrapping_add(u64::from(input.u32())), kind);
    }
    let mut start = if flags & 16 != 0 {
        WalkStart::from_regs(regs(&mut input))
    } else {
        WalkStart::blocked(TEXT.wrapping_add(u64::from(input.u32())), input.u64(), input.u64(), flags & 32 != 0)
    };
    // The stack: base chosen near sp so that most inputs land on it.
    let stack_base = start.regs.get(Reg::Rsp).unwrap_or(0).wrapping_sub(u64::from(input.u16())) & !7;
    let irq_base = input.u64() & !7;
    let irq_len = u64::from(input.u16());
    let stack = input.rest();
    let mut bounds = StackBounds::task(stack_base, stack_base.saturating_add(stack.len() as u64));
    if flags & 64 != 0 {
        bounds.push(StackRange { start: irq_base, end: irq_base.saturating_add(irq_len), kind: StackKind::Irq });
    }
    if flags & 128 != 0 {
        start.full_regs = !start.full_regs;
    }
    let mut mem = SliceMemory::new(stack_base, stack);
    let mut frames = Vec::new();
    let r = walk_orc(&tables, &mut mem, &mut code, &bounds, start, &config, &mut frames);
    check_walk(&frames, &r, &config);
});
