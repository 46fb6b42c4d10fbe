//! Hand-built tables and stacks: every entry type, every register rule and
//! every reason a walk becomes unreliable.

use super::*;
use crate::arch::x86_64::{PtRegsSlot, Reg, Regs};
use crate::memory::{Memory, MemoryError, MemoryErrorKind, SliceMemory};
use crate::orc::{OrcFormat, OrcTable};

const TEXT: u64 = 0xffffffff81000000;
const STACK: u64 = 0xffffc90000010000;
const STACK_SIZE: u64 = 0x4000;

// v3 encodings.
const UNDEF: u8 = 0;
const END: u8 = 1;
const CALL: u8 = 2;
const REGS: u8 = 3;
const PARTIAL: u8 = 4;
const R_UND: u8 = 0;
const R_PREVSP: u8 = 1;
const R_DX: u8 = 2;
const R_DI: u8 = 3;
const R_BP: u8 = 4;
const R_SP: u8 = 5;
const R_R10: u8 = 6;
const R_R13: u8 = 7;
const R_BP_IND: u8 = 8;
const R_SP_IND: u8 = 9;
const R_AX: u8 = 10;

fn e(ty: u8, sp_reg: u8, sp_off: i16, bp_reg: u8, bp_off: i16, signal: bool) -> [u8; 6] {
    let s = sp_off.to_le_bytes();
    let b = bp_off.to_le_bytes();
    [s[0], s[1], b[0], b[1], sp_reg | (bp_reg << 4), ty | ((signal as u8) << 3)]
}

/// Function n lives at TEXT + n * 0x100 and has one entry for its body.
fn f(n: u64) -> u64 {
    TEXT + n * 0x100
}

struct World {
    orc: Vec<(u64, [u8; 6])>,
    stack: Vec<u8>,
    code: CodeRanges,
    bounds: StackBounds,
    config: WalkConfig,
}

impl World {
    fn new() -> Self {
        let mut code = CodeRanges::new();
        code.add(TEXT, TEXT + 0x100000);
        World {
            orc: Vec::new(),
            stack: vec![0; STACK_SIZE as usize],
            code,
            bounds: StackBounds::task(STACK, STACK + STACK_SIZE),
            config: WalkConfig::default(),
        }
    }

    /// Function n: one entry at its start covering 0x100 bytes.
    fn func(&mut self, n: u64, entry: [u8; 6]) -> &mut Self {
        self.orc.push((f(n), entry));
        self
    }

    fn at(&mut self, ip: u64, entry: [u8; 6]) -> &mut Self {
        self.orc.push((ip, entry));
        self
    }

    fn word(&mut self, addr: u64, value: u64) -> &mut Self {
        let o = (addr - STACK) as usize;
        self.stack[o..o + 8].copy_from_slice(&value.to_le_bytes());
        self
    }

    fn pt_regs(&mut self, addr: u64, ip: u64, sp: u64, cs: u64, set: &[(PtRegsSlot, u64)]) -> &mut Self {
        self.word(addr + PtRegsSlot::Ip as u64 * 8, ip);
        self.word(addr + PtRegsSlot::Sp as u64 * 8, sp);
        self.word(addr + PtRegsSlot::Cs as u64 * 8, cs);
        for &(slot, v) in set {
            self.word(addr + slot as u64 * 8, v);
        }
        self
    }

    fn table(&self, format: OrcFormat) -> OrcTable<'static> {
        OrcTable::from_unsorted(self.orc.clone(), format).unwrap()
    }

    fn walk_with<M: Memory>(&mut self, format: OrcFormat, mem: &mut M, start: WalkStart) -> (Vec<Frame>, Reliability) {
        let table = self.table(format);
        let mut frames = Vec::with_capacity(self.config.max_frames);
        let r = walk_orc(&table, mem, &mut self.code, &self.bounds, start, &self.config, &mut frames);
        assert!(frames.len() <= self.config.max_frames);
        (frames, r)
    }

    fn walk(&mut self, start: WalkStart) -> (Vec<Frame>, Reliability) {
        let stack = self.stack.clone();
        let mut mem = SliceMemory::new(STACK, &stack);
        self.walk_with(OrcFormat::V3, &mut mem, start)
    }
}

fn pcs(frames: &[Frame]) -> Vec<u64> {
    frames.iter().map(|f| f.pc).collect()
}

fn reason(r: Reliability) -> UnreliableReason {
    match r {
        Reliability::Unreliable { reason, .. } => reason,
        ok => panic!("expected unreliable, got {ok:?}"),
    }
}

const SP0: u64 = STACK + 0x1000;

/// f(1) called from f(2) called from f(3) (end of stack), with a pushed bp.
#[test]
fn call_frames_to_end_of_stack() {
    let mut w = World::new();
    w.func(1, e(CALL, R_SP, 16, R_PREVSP, -16, false))
        .func(2, e(CALL, R_SP, 8, R_UND, 0, false))
        .func(3, e(END, R_UND, 0, R_UND, 0, false))
        .word(SP0, 0xbbbb)
        .word(SP0 + 8, f(2) + 0x10)
        .word(SP0 + 16, f(3) + 0x20);
    let (frames, r) = w.walk(WalkStart::blocked(f(1) + 5, SP0, 0xaaaa, false));
    assert_eq!(r, Reliability::Reliable(CleanEnd::EndOfStack));
    assert_eq!(pcs(&frames), [f(1) + 5, f(2) + 0x10, f(3) + 0x20]);
    assert_eq!(frames[1].sp, SP0 + 16);
    assert_eq!(frames[2].sp, SP0 + 24);
    assert_eq!(frames.iter().map(|f| f.kind).collect::<Vec<_>>(), [FrameKind::Start, FrameKind::Call, FrameKind::Call]);
    assert!(frames.iter().all(|f| f.reliable && !f.kernel_regs));
}

/// The lookup uses ip-1 after a call: a return address at the very start of
/// the next function's entry must use the caller's entry.
#[test]
fn return_address_looks_up_ip_minus_one() {
    let mut w = World::new();
    w.func(1, e(CALL, R_SP, 8, R_UND, 0, false))
        .func(2, e(END, R_UND, 0, R_UND, 0, false))
        .at(f(2) + 0x10, e(UNDEF, R_UND, 0, R_UND, 0, false))
        .word(SP0, f(2) + 0x10);
    let (_, r) = w.walk(WalkStart::blocked(f(1) + 1, SP0, 0, false));
    assert_eq!(r, Reliability::Reliable(CleanEnd::EndOfStack), "f(2)+0xf has END");
    // A first ip at a function's first byte is a return address too.
    let (_, r) = w.walk(WalkStart::blocked(f(1), SP0, 0, false));
    assert_eq!(reason(r), UnreliableReason::NoUnwindEntry { pc: f(1) });
}

#[test]
fn bp_based_cfa_and_bp_restore() {
    let mut w = World::new();
    let bp = SP0 + 0x40;
    // CFA = bp + 16, saved bp at CFA - 16.
    w.func(1, e(CALL, R_BP, 16, R_PREVSP, -16, false))
        .func(2, e(END, R_UND, 0, R_UND, 0, false))
        .word(bp, 0x1234)
        .word(bp + 8, f(2) + 1);
    let (frames, r) = w.walk(WalkStart::blocked(f(1) + 3, SP0, bp, false));
    assert_eq!(r, Reliability::Reliable(CleanEnd::EndOfStack));
    assert_eq!(frames[1].sp, bp + 16);

    // bp:bp-8 restores bp from [bp - 8].
    let mut w = World::new();
    w.func(1, e(CALL, R_SP, 8, R_BP, -8, false))
        .func(2, e(CALL, R_BP, 16, R_UND, 0, false))
        .func(3, e(END, R_UND, 0, R_UND, 0, false))
        .word(bp - 8, SP0 + 0x100)
        .word(SP0, f(2) + 1)
        .word(SP0 + 0x108, f(3) + 1);
    let (frames, r) = w.walk(WalkStart::blocked(f(1) + 3, SP0, bp, false));
    assert_eq!(r, Reliability::Reliable(CleanEnd::EndOfStack), "{frames:?}");
    assert_eq!(frames[2].sp, SP0 + 0x110);
}

#[test]
fn indirect_cfa() {
    // SP_INDIRECT: CFA = [sp] + off (5.12+ semantics).
    let mut w = World::new();
    w.func(1, e(CALL, R_SP_IND, 8, R_UND, 0, false))
        .func(2, e(END, R_UND, 0, R_UND, 0, false))
        .word(SP0, SP0 + 0x200)
        .word(SP0 + 0x200, f(2) + 1);
    let (frames, r) = w.walk(WalkStart::blocked(f(1) + 1, SP0, 0, false));
    assert_eq!(r, Reliability::Reliable(CleanEnd::EndOfStack), "{frames:?}");
    assert_eq!(frames[1].sp, SP0 + 0x208);

    // BP_INDIRECT: CFA = [bp + off].
    let mut w = World::new();
    let bp = SP0 + 0x80;
    w.func(1, e(CALL, R_BP_IND, -8, R_UND, 0, false))
        .func(2, e(END, R_UND, 0, R_UND, 0, false))
        .word(bp - 8, SP0 + 0x300)
        .word(SP0 + 0x2f8, f(2) + 1);
    let (frames, r) = w.walk(WalkStart::blocked(f(1) + 1, SP0, bp, false));
    assert_eq!(r, Reliability::Reliable(CleanEnd::EndOfStack), "{frames:?}");
    assert_eq!(frames[1].sp, SP0 + 0x300);
}

#[test]
fn register_cfa_needs_saved_regs() {
    for (raw, reg) in [(R_R10, Reg::R10), (R_R13, Reg::R13), (R_DI, Reg::Rdi), (R_DX, Reg::Rdx), (R_AX, Reg::Rax)] {
        let mut w = World::new();
        w.func(1, e(CALL, raw, 8, R_UND, 0, false))
            .func(2, e(END, R_UND, 0, R_UND, 0, false))
            .word(SP0 + 0x500, f(2) + 1);
        // The kernel takes the register's value as the CFA, ignoring the offset.
        // Without saved registers: unreliable, naming the register.
        let (_, r) = w.walk(WalkStart::blocked(f(1) + 1, SP0, 0, false));
        assert_eq!(reason(r), UnreliableReason::MissingRegister { pc: f(1) + 1, reg });
        // With a full register set (a CPU's regs): CFA = reg + 8.
        let mut regs = Regs::from_ip_sp_bp(f(1) + 1, SP0, 0);
        regs.set(reg, SP0 + 0x508);
        regs.set_cs(0x10);
        let (frames, r) = w.walk(WalkStart::from_regs(regs));
        assert_eq!(r, Reliability::Reliable(CleanEnd::EndOfStack), "{reg:?}");
        assert_eq!(frames[1].sp, SP0 + 0x508);
    }
}

/// An interrupt in kernel mode: full pt_regs at the CFA.
fn kernel_regs_world() -> World {
    let mut w = World::new();
    let regs_at = SP0 + 8;
    let interrupted_sp = SP0 + 0x400;
    w.func(1, e(CALL, R_SP, 8, R_UND, 0, false))
        // entry code: pt_regs at sp + 0 of the caller frame
        .func(2, e(REGS, R_SP, 0, R_UND, 0, true))
        .func(3, e(CALL, R_SP, 8, R_UND, 0, false))
        .func(4, e(END, R_UND, 0, R_UND, 0, false))
        .word(SP0, f(2) + 0x40)
        .pt_regs(regs_at, f(3) + 0x30, interrupted_sp, 0x10, &[(PtRegsSlot::Bp, 0x77)])
        .word(interrupted_sp, f(4) + 0x8);
    w
}

#[test]
fn kernel_mode_regs_are_flagged_and_policy_applies() {
    let mut w = kernel_regs_world();
    let (frames, r) = w.walk(WalkStart::blocked(f(1) + 1, SP0, 0, false));
    assert_eq!(r, Reliability::Reliable(CleanEnd::EndOfStack), "{frames:?}");
    assert_eq!(pcs(&frames), [f(1) + 1, f(2) + 0x40, f(3) + 0x30, f(4) + 8]);
    assert_eq!(frames[2].kind, FrameKind::Regs);
    assert!(frames[2].kernel_regs);
    assert_eq!(frames.iter().filter(|f| f.kernel_regs).count(), 1);

    w.config.kernel_regs = KernelRegsPolicy::Reject;
    let (_, r) = w.walk(WalkStart::blocked(f(1) + 1, SP0, 0, false));
    assert_eq!(r, Reliability::Unreliable { reason: UnreliableReason::KernelRegs { pc: f(3) + 0x30 }, frame: 2 });
}

#[test]
fn regs_frame_uses_ip_without_minus_one() {
    // The interrupted ip is the first byte of f(3): ip-1 would hit f(2)'s
    // UNDEFINED entry, so looking up ip is required.
    let mut w = kernel_regs_world();
    w.at(f(3) - 0x10, e(UNDEF, R_UND, 0, R_UND, 0, false));
    w.pt_regs(SP0 + 8, f(3), SP0 + 0x400, 0x10, &[]);
    let (frames, r) = w.walk(WalkStart::blocked(f(1) + 1, SP0, 0, false));
    assert_eq!(r, Reliability::Reliable(CleanEnd::EndOfStack), "{frames:?}");
}

#[test]
fn user_mode_regs_end_the_walk() {
    let mut w = World::new();
    let top = STACK + STACK_SIZE - crate::arch::x86_64::PT_REGS_SIZE;
    w.func(1, e(CALL, R_SP, 8, R_UND, 0, false))
        .func(2, e(REGS, R_SP, 0, R_UND, 0, true))
        .word(top - 8, f(2) + 0x20)
        .pt_regs(top, 0x401000, 0x7ffc0000, 0x33, &[]);
    let (frames, r) = w.walk(WalkStart::blocked(f(1) + 1, top - 8, 0, false));
    assert_eq!(r, Reliability::Reliable(CleanEnd::UserRegs));
    assert_eq!(pcs(&frames), [f(1) + 1, f(2) + 0x20], "the user ip is not a kernel frame");

    // A CPU caught in user mode: nothing to walk.
    let mut regs = Regs::from_ip_sp_bp(0x401000, 0x7ffc0000, 0);
    regs.set_cs(0x33);
    let (frames, r) = w.walk(WalkStart::from_regs(regs));
    assert_eq!(r, Reliability::Reliable(CleanEnd::UserRegs));
    assert!(frames.is_empty());
}

#[test]
fn iret_frame_and_stack_switch() {
    // f(1) runs on the IRQ stack; its REGS_PARTIAL entry finds an iret frame
    // whose sp points back to the task stack.
    let mut w = World::new();
    let irq = 0xffffc90000100000u64;
    let irq_size = 0x1000u64;
    assert!(w.bounds.push(StackRange { start: irq, end: irq + irq_size, kind: StackKind::Irq }));
    let mut irq_stack = vec![0u8; irq_size as usize];
    let iret_at = irq + 0x800;
    let put = |s: &mut Vec<u8>, addr: u64, v: u64| {
        let o = (addr - irq) as usize;
        s[o..o + 8].copy_from_slice(&v.to_le_bytes());
    };
    put(&mut irq_stack, iret_at, f(2) + 0x11); // ip
    put(&mut irq_stack, iret_at + 8, 0x10); // cs
    put(&mut irq_stack, iret_at + 24, SP0); // sp
    w.func(1, e(PARTIAL, R_SP, 0, R_UND, 0, true))
        .func(2, e(CALL, R_SP, 8, R_UND, 0, false))
        .func(3, e(END, R_UND, 0, R_UND, 0, false))
        .word(SP0, f(3) + 1);
    struct Two<'a>(SliceMemory<'a>, SliceMemory<'a>);
    impl Memory for Two<'_> {
        fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            self.0.read(addr, buf).or_else(|_| self.1.read(addr, buf))
        }
    }
    let stack = w.stack.clone();
    let mut mem = Two(SliceMemory::new(STACK, &stack), SliceMemory::new(irq, &irq_stack));
    let (frames, r) = w.walk_with(OrcFormat::V3, &mut mem, WalkStart::blocked(f(1) + 4, iret_at, 0, false));
    assert_eq!(r, Reliability::Reliable(CleanEnd::EndOfStack), "{frames:?}");
    assert_eq!(pcs(&frames), [f(1) + 4, f(2) + 0x11, f(3) + 1]);
    assert_eq!(frames[1].kind, FrameKind::Iret);
    assert!(!frames[1].kernel_regs, "partial regs are not entry regs");

    // Going back to the IRQ stack after leaving it is refused.
    w.word(SP0, f(4) + 1);
    w.func(4, e(CALL, R_SP_IND, 0, R_UND, 0, false));
    w.word(SP0 + 8, iret_at);
    let stack = w.stack.clone();
    let mut mem = Two(SliceMemory::new(STACK, &stack), SliceMemory::new(irq, &irq_stack));
    let (_, r) = w.walk_with(OrcFormat::V3, &mut mem, WalkStart::blocked(f(1) + 4, iret_at, 0, false));
    assert_eq!(reason(r), UnreliableReason::OutsideStack { addr: iret_at - 8 });
}

#[test]
fn undefined_and_unknown_entries() {
    let mut w = World::new();
    w.func(1, e(UNDEF, R_UND, 0, R_UND, 0, false));
    let (frames, r) = w.walk(WalkStart::blocked(f(1) + 1, SP0, 0, false));
    assert_eq!(r, Reliability::Unreliable { reason: UnreliableReason::UndefinedEntry { pc: f(1) + 1 }, frame: 0 });
    assert!(!frames[0].reliable);

    let mut w = World::new();
    w.func(1, e(6, R_SP, 8, R_UND, 0, false));
    let (_, r) = w.walk(WalkStart::blocked(f(1) + 1, SP0, 0, false));
    assert_eq!(reason(r), UnreliableReason::UnknownEntry { pc: f(1) + 1, raw: 6 });

    let mut w = World::new();
    w.func(1, e(CALL, 12, 8, R_UND, 0, false));
    let (_, r) = w.walk(WalkStart::blocked(f(1) + 1, SP0, 0, false));
    assert_eq!(reason(r), UnreliableReason::UnknownEntry { pc: f(1) + 1, raw: 12 });

    let mut w = World::new();
    w.func(1, e(CALL, R_SP, 8, 9, 0, false)).word(SP0, f(1) + 1);
    let (_, r) = w.walk(WalkStart::blocked(f(1) + 1, SP0, 0, false));
    assert_eq!(reason(r), UnreliableReason::UnknownEntry { pc: f(1) + 1, raw: 9 }, "bp rule sp(ind) is invalid");
}

#[test]
fn no_entry_and_not_text() {
    let mut w = World::new();
    w.func(5, e(CALL, R_SP, 8, R_UND, 0, false)).word(SP0, f(5) + 1);
    let (_, r) = w.walk(WalkStart::blocked(f(1) + 1, SP0, 0, false));
    assert_eq!(reason(r), UnreliableReason::NoUnwindEntry { pc: f(1) + 1 });

    // A return address outside text.
    let mut w = World::new();
    w.func(1, e(CALL, R_SP, 8, R_UND, 0, false)).word(SP0, 0xdead0000);
    let (frames, r) = w.walk(WalkStart::blocked(f(1) + 1, SP0, 0, false));
    assert_eq!(r, Reliability::Unreliable { reason: UnreliableReason::NotText { pc: 0xdead0000 }, frame: 1 });
    assert_eq!(frames.len(), 2);
    assert!(frames[0].reliable && !frames[1].reliable);
}

#[test]
fn stack_bounds_and_direction() {
    // CFA beyond the top of the stack.
    let mut w = World::new();
    w.func(1, e(CALL, R_SP, 0x2000, R_UND, 0, false));
    let sp = STACK + STACK_SIZE - 0x100;
    let (_, r) = w.walk(WalkStart::blocked(f(1) + 1, sp, 0, false));
    assert_eq!(reason(r), UnreliableReason::OutsideStack { addr: sp + 0x2000 - 8 });

    // sp that does not grow: CFA = sp + 0 means the return address sits below sp.
    let mut w = World::new();
    w.func(1, e(CALL, R_SP, 0, R_UND, 0, false)).word(SP0 - 8, f(1) + 1);
    let (_, r) = w.walk(WalkStart::blocked(f(1) + 1, SP0, 0, false));
    assert_eq!(reason(r), UnreliableReason::WrongDirection { sp: SP0, prev_sp: SP0 });

    // A cycle through bp: bp-based CFA pointing back down.
    let mut w = World::new();
    w.func(1, e(CALL, R_BP, 16, R_PREVSP, -16, false))
        .word(SP0 + 0x100, SP0 - 0x100 + 0x100) // saved bp = same frame
        .word(SP0 + 0x108, f(1) + 1);
    let (frames, r) = w.walk(WalkStart::blocked(f(1) + 1, SP0 + 0x200, SP0 + 0x100, false));
    assert!(matches!(reason(r), UnreliableReason::WrongDirection { .. }), "{frames:?}");

    // Start outside every stack.
    let mut w = World::new();
    w.func(1, e(CALL, R_SP, 8, R_UND, 0, false));
    let (frames, r) = w.walk(WalkStart::blocked(f(1) + 1, 0x1000, 0, false));
    assert_eq!(r, Reliability::Unreliable { reason: UnreliableReason::StartNotOnStack { sp: 0x1000 }, frame: 0 });
    assert!(frames.is_empty());
}

#[test]
fn unreadable_memory() {
    struct Holey<'a>(SliceMemory<'a>, u64);
    impl Memory for Holey<'_> {
        fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            if addr & !0xfff == self.1 {
                return Err(MemoryError::new(addr, MemoryErrorKind::NotInDump));
            }
            self.0.read(addr, buf)
        }
    }
    let mut w = World::new();
    w.func(1, e(CALL, R_SP, 0x1008, R_UND, 0, false));
    let stack = w.stack.clone();
    let mut mem = Holey(SliceMemory::new(STACK, &stack), SP0 + 0x1000);
    let (_, r) = w.walk_with(OrcFormat::V3, &mut mem, WalkStart::blocked(f(1) + 1, SP0, 0, false));
    assert_eq!(reason(r), UnreliableReason::Unreadable { addr: SP0 + 0x1000, kind: MemoryErrorKind::NotInDump });
}

/// A recursion of n frames of f(1) above an end-of-stack frame.
fn recursion(n: usize) -> (Vec<Frame>, Reliability) {
    let mut w = World::new();
    w.func(1, e(CALL, R_SP, 8, R_UND, 0, false)).func(2, e(END, R_UND, 0, R_UND, 0, false));
    let sp = STACK + 0x100;
    for i in 0..n as u64 {
        let ret = if i + 1 == n as u64 { f(2) + 1 } else { f(1) + 1 };
        w.word(sp + 8 * i, ret);
    }
    w.walk(WalkStart::blocked(f(1) + 1, sp, 0, false))
}

#[test]
fn frame_limit_is_the_kernels() {
    // n return addresses give n + 1 entries.
    let (frames, r) = recursion(98);
    assert_eq!(frames.len(), 99);
    assert!(r.is_reliable(), "99 entries fit");
    let (frames, r) = recursion(99);
    assert_eq!(r, Reliability::Unreliable { reason: UnreliableReason::FrameLimit { limit: 100 }, frame: 99 });
    assert_eq!(frames.len(), 100);
    let (frames, r) = recursion(400);
    assert_eq!(reason(r), UnreliableReason::FrameLimit { limit: 100 });
    assert_eq!(frames.len(), 100);
}

#[test]
fn return_trampolines() {
    let ret_to_handler = f(9);
    let mut w = World::new();
    w.code.add_trampoline(ret_to_handler, TrampolineKind::FtraceGraph);
    w.func(1, e(CALL, R_SP, 8, R_UND, 0, false))
        .func(2, e(END, R_UND, 0, R_UND, 0, false))
        .func(9, e(UNDEF, R_UND, 0, R_UND, 0, false))
        .word(SP0, ret_to_handler);
    let (_, r) = w.walk(WalkStart::blocked(f(1) + 1, SP0, 0, false));
    assert_eq!(reason(r), UnreliableReason::Trampoline { pc: ret_to_handler, kind: TrampolineKind::FtraceGraph });

    // With a recovery (the task's ret_stack), the real return address is used.
    struct Recovering(CodeRanges, u64);
    impl CodeMap for Recovering {
        fn is_code(&self, pc: u64) -> bool {
            self.0.is_code(pc)
        }
        fn trampoline(&self, pc: u64) -> Option<TrampolineKind> {
            self.0.trampoline(pc)
        }
        fn recover_return(&mut self, _k: TrampolineKind, slot: u64) -> Option<u64> {
            (slot == SP0).then_some(self.1)
        }
    }
    let table = w.table(OrcFormat::V3);
    let mut code = Recovering(w.code.clone(), f(2) + 1);
    let stack = w.stack.clone();
    let mut mem = SliceMemory::new(STACK, &stack);
    let mut frames = Vec::new();
    let r = walk_orc(
        &table,
        &mut mem,
        &mut code,
        &w.bounds,
        WalkStart::blocked(f(1) + 1, SP0, 0, false),
        &w.config,
        &mut frames,
    );
    assert_eq!(r, Reliability::Reliable(CleanEnd::EndOfStack));
    assert_eq!(pcs(&frames), [f(1) + 1, f(2) + 1]);
}

#[test]
fn v1_table_end_bit_and_undefined() {
    let v1 = |ty: u8, sp_reg: u8, sp_off: i16, end: bool| -> [u8; 6] {
        let s = sp_off.to_le_bytes();
        [s[0], s[1], 0, 0, sp_reg, ty | ((end as u8) << 2)]
    };
    let mut w = World::new();
    w.func(1, v1(0, R_SP, 8, false)).func(2, v1(0, R_UND, 0, true)).word(SP0, f(2) + 1);
    let stack = w.stack.clone();
    let mut mem = SliceMemory::new(STACK, &stack);
    let (frames, r) = w.walk_with(OrcFormat::V1, &mut mem, WalkStart::blocked(f(1) + 1, SP0, 0, false));
    assert_eq!(r, Reliability::Reliable(CleanEnd::EndOfStack));
    assert_eq!(frames.len(), 2);

    let mut w = World::new();
    w.func(1, v1(0, R_SP, 8, false)).func(2, v1(0, R_UND, 0, false)).word(SP0, f(2) + 1);
    let stack = w.stack.clone();
    let mut mem = SliceMemory::new(STACK, &stack);
    let (_, r) = w.walk_with(OrcFormat::V1, &mut mem, WalkStart::blocked(f(1) + 1, SP0, 0, false));
    assert_eq!(reason(r), UnreliableReason::UndefinedEntry { pc: f(2) + 1 });
}

#[test]
fn missing_start_registers() {
    let mut w = World::new();
    w.func(1, e(CALL, R_SP, 8, R_UND, 0, false));
    let mut regs = Regs::new();
    regs.set(Reg::Rip, f(1));
    let (_, r) = w.walk(WalkStart { regs, full_regs: false, signal: false });
    assert!(matches!(reason(r), UnreliableReason::MissingRegister { .. }));
}

/// Stack plus a text image, for walks that read code bytes.
struct WithText<'a> {
    stack: SliceMemory<'a>,
    text: SliceMemory<'a>,
}

impl Memory for WithText<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.stack.read(addr, buf).or_else(|_| self.text.read(addr, buf))
    }
}

/// `call target` whose return address is `ret`.
fn put_call(text: &mut [u8], ret: u64, target: u64) {
    let at = (ret - 5 - TEXT) as usize;
    text[at] = 0xe8;
    text[at + 1..at + 5].copy_from_slice(&(target.wrapping_sub(ret) as i32).to_le_bytes());
}

/// f(1) has no unwind data (STACK_FRAME_NON_STANDARD, like __crash_kexec).
/// Its frame holds a stale return address after a call to f(5) and a code
/// pointer after no call; the real one follows `call f(1)` in f(2).
#[test]
fn past_a_start_without_unwind_data_by_the_call_to_it() {
    let mut w = World::new();
    w.func(1, e(UNDEF, R_UND, 0, R_UND, 0, false))
        .func(2, e(CALL, R_SP, 8, R_UND, 0, false))
        .func(3, e(END, R_UND, 0, R_UND, 0, false))
        .func(5, e(CALL, R_SP, 8, R_UND, 0, false))
        .word(SP0 + 0x08, f(2) + 0x40) // after a call to f(5)
        .word(SP0 + 0x10, f(2) + 0x60) // no call before it
        .word(SP0 + 0x30, f(2) + 0x20) // after `call f(1)`
        .word(SP0 + 0x38, f(3) + 0x10);
    let mut text = vec![0u8; 0x1000];
    put_call(&mut text, f(2) + 0x40, f(5));
    put_call(&mut text, f(2) + 0x20, f(1));
    let table = w.table(OrcFormat::V3);
    let stack = w.stack.clone();
    let mut mem = WithText { stack: SliceMemory::new(STACK, &stack), text: SliceMemory::new(TEXT, &text) };
    let regs = Regs::from_ip_sp_bp(f(1) + 0x33, SP0, 0);
    let start = WalkStart { regs, full_regs: false, signal: true };
    let mut frames = Vec::new();
    let r = walk_orc_past_start(&table, &mut mem, &mut w.code, &w.bounds, start, &w.config, &mut frames, |pc| {
        (pc & !0xff == f(1)).then_some(f(1))
    });
    assert_eq!(r, Reliability::Unreliable { reason: UnreliableReason::UndefinedEntry { pc: f(1) + 0x33 }, frame: 0 });
    assert_eq!(pcs(&frames), [f(1) + 0x33, f(2) + 0x20, f(3) + 0x10]);
    assert_eq!(frames[1].kind, FrameKind::Scanned);
    assert_eq!(frames[1].sp, SP0 + 0x38, "the caller's sp is past the return slot");
    assert!(frames.iter().all(|f| !f.reliable));

    // Without the call instruction nothing is guessed.
    put_call(&mut text, f(2) + 0x20, f(5));
    let mut mem = WithText { stack: SliceMemory::new(STACK, &stack), text: SliceMemory::new(TEXT, &text) };
    let r2 =
        walk_orc_past_start(&table, &mut mem, &mut w.code, &w.bounds, start, &w.config, &mut frames, |_| Some(f(1)));
    assert_eq!((r2, frames.len()), (r, 1));

    // A start with unwind data is the plain walk.
    let start = WalkStart::blocked(f(2) + 0x20, SP0 + 0x30 + 8, 0, false);
    let plain = walk_orc_past_start(&table, &mut mem, &mut w.code, &w.bounds, start, &w.config, &mut frames, |_| {
        unreachable!("only asked when the start has no unwind data")
    });
    assert_eq!(plain, Reliability::Reliable(CleanEnd::EndOfStack));
    assert_eq!(pcs(&frames), [f(2) + 0x20, f(3) + 0x10]);
}
