//! Past a start frame that has no unwind data.
//!
//! objtool leaves some functions without ORC (`STACK_FRAME_NON_STANDARD`).
//! One of them is where every kdump starts: `__crash_kexec` saves the
//! panicking CPU's registers with inline asm, so `crash_notes` points into
//! it. The kernel's unwinder stops there, and so does the reliable walk.
//! To still show the frames beneath it, find the return address into its
//! caller: the nearest slot above sp whose value follows a direct `call` to
//! the function's start. Those frames are never reliable.

use super::{CodeMap, Frame, FrameKind, Reliability, StackBounds, UnreliableReason, WalkConfig, WalkStart, walk_orc};
use crate::arch::x86_64::Reg;
use crate::memory::Memory;
use crate::orc::OrcFinder;

/// How far above sp the return address is looked for: a frame with a
/// `pt_regs` and a few locals, with room to spare.
pub const CALLER_SCAN_BYTES: u64 = 2048;

/// `call rel32`.
const CALL_REL32: u8 = 0xe8;

/// The slot holding the return address into the caller of the function
/// starting at `func_start`, scanning upward from `sp` on sp's stack.
pub fn find_return_slot<M: Memory, C: CodeMap>(
    mem: &mut M,
    code: &C,
    bounds: &StackBounds,
    sp: u64,
    func_start: u64,
) -> Option<u64> {
    let stack = bounds.ranges()[bounds.find(sp, 8)?];
    let end = stack.end.min(sp.saturating_add(CALLER_SCAN_BYTES));
    let mut slot = sp;
    while slot.checked_add(8).is_some_and(|e| e <= end) {
        if let Ok(ret) = mem.read_u64(slot)
            && code.is_code(ret)
            && calls(mem, ret, func_start)
        {
            return Some(slot);
        }
        slot += 8;
    }
    None
}

/// The 5 bytes before `ret` are `call func_start`.
fn calls<M: Memory>(mem: &mut M, ret: u64, func_start: u64) -> bool {
    let mut insn = [0u8; 5];
    let Some(at) = ret.checked_sub(5) else { return false };
    if mem.read(at, &mut insn).is_err() || insn[0] != CALL_REL32 {
        return false;
    }
    let rel = i32::from_le_bytes([insn[1], insn[2], insn[3], insn[4]]) as i64 as u64;
    ret.wrapping_add(rel) == func_start
}

/// [`walk_orc`], and when it stops at the start frame for want of unwind
/// data, the frames beneath found through the caller's return address
/// (`func_start` is the start of the function holding the start ip). The
/// reliability is the first walk's: the kernel could not vouch for them.
#[allow(clippy::too_many_arguments)]
pub fn walk_orc_past_start<F: OrcFinder + ?Sized, M: Memory, C: CodeMap>(
    orc: &F,
    mem: &mut M,
    code: &mut C,
    bounds: &StackBounds,
    start: WalkStart,
    config: &WalkConfig,
    frames: &mut Vec<Frame>,
    func_start: impl FnOnce(u64) -> Option<u64>,
) -> Reliability {
    let r = walk_orc(orc, mem, code, bounds, start, config, frames);
    let no_data = matches!(
        r,
        Reliability::Unreliable {
            reason: UnreliableReason::UndefinedEntry { .. } | UnreliableReason::NoUnwindEntry { .. },
            frame: 0
        }
    );
    if !no_data || frames.len() != 1 {
        return r;
    }
    let (pc, sp) = (frames[0].pc, frames[0].sp);
    let Some(slot) = func_start(pc).and_then(|f| find_return_slot(mem, &*code, bounds, sp, f)) else {
        return r;
    };
    let Ok(ret) = mem.read_u64(slot) else { return r };
    let bp = start.regs.get(Reg::Rbp).unwrap_or(0);
    let mut rest = Vec::new();
    let below = WalkConfig { max_frames: config.max_frames.saturating_sub(1), ..*config };
    walk_orc(orc, mem, code, bounds, WalkStart::blocked(ret, slot + 8, bp, false), &below, &mut rest);
    for (i, mut f) in rest.into_iter().enumerate() {
        f.reliable = false;
        if i == 0 {
            f.kind = FrameKind::Scanned;
        }
        frames.push(f);
    }
    r
}
