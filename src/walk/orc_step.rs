//! The kernel's ORC unwinder (`unwind_next_frame`) driven by the reliable
//! walk of `arch_stack_walk_reliable`, over any [`Memory`].

use super::bounds::StackCursor;
use super::{
    CleanEnd, CodeMap, Frame, FrameKind, KernelRegsPolicy, Reliability, StackBounds, UnreliableReason, WalkConfig,
    WalkStart,
};
use crate::arch::x86_64::{IRET_FRAME_SIZE, PT_REGS_SIZE, Reg, Regs};
use crate::memory::Memory;
use crate::orc::{OrcFinder, OrcReg, OrcType};

/// The unwinder's state between frames (`struct unwind_state`).
struct State {
    ip: u64,
    sp: u64,
    bp: Option<u64>,
    signal: bool,
    /// Registers saved by the last regs/iret frame, if the last frame was one.
    regs: Option<Regs>,
    full_regs: bool,
    /// Full registers seen before a partial (iret) frame; the kernel reads
    /// R10, R13, DI, DX and BP from them when the iret frame lacks them.
    prev_regs: Option<Regs>,
    kind: FrameKind,
    stack: StackCursor,
}

enum Step {
    Next,
    Done(CleanEnd),
}

impl State {
    /// `get_reg`: a register from the saved regs, if there are any.
    fn saved(&self, reg: Reg) -> Option<u64> {
        let regs = self.regs.as_ref()?;
        if self.full_regs { regs.get(reg) } else { self.prev_regs.as_ref().and_then(|p| p.get(reg)) }
    }

    fn read<M: Memory>(&mut self, mem: &mut M, bounds: &StackBounds, addr: u64) -> Result<u64, UnreliableReason> {
        if !self.stack.access(bounds, addr, 8) {
            return Err(UnreliableReason::OutsideStack { addr });
        }
        mem.read_u64(addr).map_err(|e| UnreliableReason::Unreadable { addr: e.addr, kind: e.kind })
    }

    fn read_bytes<M: Memory>(
        &mut self,
        mem: &mut M,
        bounds: &StackBounds,
        addr: u64,
        buf: &mut [u8],
    ) -> Result<(), UnreliableReason> {
        if !self.stack.access(bounds, addr, buf.len() as u64) {
            return Err(UnreliableReason::OutsideStack { addr });
        }
        mem.read(addr, buf).map_err(|e| UnreliableReason::Unreadable { addr: e.addr, kind: e.kind })
    }
}

/// Walks one thread's kernel stack with ORC, appending frames to `frames`
/// (cleared first; it never grows past `config.max_frames`, so a buffer
/// with that capacity is never reallocated).
pub fn walk_orc<F: OrcFinder + ?Sized, M: Memory, C: CodeMap>(
    orc: &F,
    mem: &mut M,
    code: &mut C,
    bounds: &StackBounds,
    start: WalkStart,
    config: &WalkConfig,
    frames: &mut Vec<Frame>,
) -> Reliability {
    frames.clear();
    let unreliable = |reason, frame| Reliability::Unreliable { reason, frame };
    let (Some(ip), Some(sp)) = (start.regs.get(Reg::Rip), start.regs.get(Reg::Rsp)) else {
        return unreliable(UnreliableReason::MissingRegister { pc: 0, reg: Reg::Rip }, 0);
    };
    if start.full_regs && start.regs.user_mode() {
        return Reliability::Reliable(CleanEnd::UserRegs);
    }
    let Some(stack) = StackCursor::start(bounds, sp) else {
        return unreliable(UnreliableReason::StartNotOnStack { sp }, 0);
    };
    let mut st = State {
        ip,
        sp,
        bp: start.regs.get(Reg::Rbp),
        signal: start.signal,
        regs: start.full_regs.then_some(start.regs),
        full_regs: start.full_regs,
        prev_regs: None,
        kind: FrameKind::Start,
        stack,
    };
    loop {
        // The body of arch_stack_walk_reliable for the current state.
        let entry_regs = if st.full_regs { st.regs } else { None };
        let mut kernel_regs = false;
        if let Some(regs) = entry_regs {
            if regs.user_mode() {
                return Reliability::Reliable(CleanEnd::UserRegs);
            }
            kernel_regs = st.kind != FrameKind::Start;
        }
        let index = frames.len();
        let mut frame = Frame { pc: st.ip, sp: st.sp, kind: st.kind, kernel_regs, reliable: true };
        let fail = |frames: &mut Vec<Frame>, mut frame: Frame, reason| {
            frame.reliable = false;
            if frames.len() < config.max_frames {
                frames.push(frame);
            }
            unreliable(reason, index)
        };
        if kernel_regs && config.kernel_regs == KernelRegsPolicy::Reject {
            return fail(frames, frame, UnreliableReason::KernelRegs { pc: st.ip });
        }
        if !code.is_code(st.ip) {
            return fail(frames, frame, UnreliableReason::NotText { pc: st.ip });
        }
        if let Some(kind) = code.trampoline(st.ip) {
            return fail(frames, frame, UnreliableReason::Trampoline { pc: st.ip, kind });
        }
        if index + 1 >= config.max_frames {
            let limit = config.max_frames as u32;
            return fail(frames, frame, UnreliableReason::FrameLimit { limit });
        }
        match step(orc, mem, code, bounds, &mut st) {
            Ok(Step::Next) => frames.push(frame),
            Ok(Step::Done(end)) => {
                frames.push(frame);
                return Reliability::Reliable(end);
            }
            Err(reason) => {
                frame.reliable = false;
                frames.push(frame);
                return unreliable(reason, index);
            }
        }
    }
}

/// `unwind_next_frame`: moves `st` to the caller's frame.
fn step<F: OrcFinder + ?Sized, M: Memory, C: CodeMap>(
    orc: &F,
    mem: &mut M,
    code: &mut C,
    bounds: &StackBounds,
    st: &mut State,
) -> Result<Step, UnreliableReason> {
    let pc = st.ip;
    // A return address may follow a call to a noreturn function, so look up
    // the call itself; an interrupted ip is looked up as is.
    let lookup = if st.signal { pc } else { pc.wrapping_sub(1) };
    let entry = orc.find(lookup).ok_or(UnreliableReason::NoUnwindEntry { pc })?;
    match entry.kind {
        OrcType::Undefined => return Err(UnreliableReason::UndefinedEntry { pc }),
        OrcType::EndOfStack => return Ok(Step::Done(CleanEnd::EndOfStack)),
        OrcType::Unknown(raw) => return Err(UnreliableReason::UnknownEntry { pc, raw }),
        OrcType::Call | OrcType::Regs | OrcType::RegsPartial => {}
    }
    let prev_sp = st.sp;
    let prev_stack = st.stack.current;
    let missing = |reg| UnreliableReason::MissingRegister { pc, reg };
    let off = entry.sp_offset as i64 as u64;
    let from_regs = |st: &State, reg| st.saved(reg).ok_or(missing(reg));
    let cfa = match entry.sp_reg {
        OrcReg::Sp => st.sp.wrapping_add(off),
        OrcReg::Bp => st.bp.ok_or(missing(Reg::Rbp))?.wrapping_add(off),
        // Since 5.12 the offset applies after the dereference.
        OrcReg::SpIndirect => st.read(mem, bounds, st.sp)?.wrapping_add(off),
        OrcReg::BpIndirect => {
            let at = st.bp.ok_or(missing(Reg::Rbp))?.wrapping_add(off);
            st.read(mem, bounds, at)?
        }
        OrcReg::R10 => from_regs(st, Reg::R10)?,
        OrcReg::R13 => from_regs(st, Reg::R13)?,
        OrcReg::Di => from_regs(st, Reg::Rdi)?,
        OrcReg::Dx => from_regs(st, Reg::Rdx)?,
        OrcReg::Ax => from_regs(st, Reg::Rax)?,
        OrcReg::Undefined | OrcReg::PrevSp | OrcReg::Unknown(_) => {
            return Err(UnreliableReason::UnknownEntry { pc, raw: entry.raw_sp_reg });
        }
    };
    match entry.kind {
        OrcType::Call => {
            let slot = cfa.wrapping_sub(8);
            let ret = st.read(mem, bounds, slot)?;
            st.ip = recover(code, ret, slot)?;
            st.sp = cfa;
            st.regs = None;
            st.prev_regs = None;
            st.full_regs = false;
            st.kind = FrameKind::Call;
        }
        OrcType::Regs => {
            let mut img = [0u8; PT_REGS_SIZE as usize];
            st.read_bytes(mem, bounds, cfa, &mut img)?;
            let regs = Regs::from_pt_regs(&img);
            let (Some(ip), Some(sp)) = (regs.get(Reg::Rip), regs.get(Reg::Rsp)) else {
                return Err(missing(Reg::Rip));
            };
            st.ip = recover(code, ip, sp.wrapping_sub(8))?;
            st.sp = sp;
            st.regs = Some(regs);
            st.prev_regs = None;
            st.full_regs = true;
            st.kind = FrameKind::Regs;
        }
        _ => {
            let mut img = [0u8; IRET_FRAME_SIZE as usize];
            st.read_bytes(mem, bounds, cfa, &mut img)?;
            let regs = Regs::from_iret_frame(&img);
            let (Some(ip), Some(sp)) = (regs.get(Reg::Rip), regs.get(Reg::Rsp)) else {
                return Err(missing(Reg::Rip));
            };
            st.ip = ip;
            st.sp = sp;
            if st.full_regs {
                st.prev_regs = st.regs;
            }
            st.regs = Some(regs);
            st.full_regs = false;
            st.kind = FrameKind::Iret;
        }
    }
    let bp_off = entry.bp_offset as i64 as u64;
    match entry.bp_reg {
        OrcReg::Undefined => {
            if let Some(bp) = st.saved(Reg::Rbp) {
                st.bp = Some(bp);
            }
        }
        OrcReg::PrevSp => st.bp = Some(st.read(mem, bounds, cfa.wrapping_add(bp_off))?),
        OrcReg::Bp => {
            let at = st.bp.ok_or(missing(Reg::Rbp))?.wrapping_add(bp_off);
            st.bp = Some(st.read(mem, bounds, at)?);
        }
        _ => return Err(UnreliableReason::UnknownEntry { pc, raw: entry.raw_bp_reg }),
    }
    st.signal = entry.signal;
    // Bad data must not loop: on one stack, sp only grows.
    if st.stack.current == prev_stack && bounds.ranges()[st.stack.current].contains(st.sp, 8) && st.sp <= prev_sp {
        return Err(UnreliableReason::WrongDirection { sp: st.sp, prev_sp });
    }
    Ok(Step::Next)
}

/// Undoes a return trampoline, or fails when it cannot.
fn recover<C: CodeMap>(code: &mut C, ret: u64, slot: u64) -> Result<u64, UnreliableReason> {
    match code.trampoline(ret) {
        None => Ok(ret),
        Some(kind) => code.recover_return(kind, slot).ok_or(UnreliableReason::Trampoline { pc: ret, kind }),
    }
}
