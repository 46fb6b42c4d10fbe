//! The reliable walk of a userspace thread with DWARF CFI. Every frame must
//! be covered by CFI (no frame-pointer guessing), every read must fall on
//! the thread's stack, the stack must grow, and the walk must end at a frame
//! whose return address the CFI declares undefined (`_start`, a thread's
//! `clone` entry).

use super::bounds::StackCursor;
use super::{CleanEnd, Frame, FrameKind, Reliability, StackBounds, UnreliableReason, WalkConfig, WalkStart};
use crate::arch::x86_64::{Reg, Regs};
use crate::cfi::{evaluate_complex, BpRule, CfiCache, CfiTable, Rule};
use crate::memory::Memory;
use crate::symbols::{SymbolRef, SymbolTable};

/// One executable mapping of a file (or the vdso) in a process.
#[derive(Debug)]
pub struct UserModule {
    /// File name, used as the object in funcs.txt (`libc.so.6`).
    pub name: String,
    pub path: String,
    /// Runtime range of the executable mapping.
    pub start: u64,
    pub end: u64,
    /// Runtime address = file virtual address + bias.
    pub bias: u64,
    pub cfi: Option<CfiTable>,
    /// Already rebased to runtime addresses.
    pub symbols: SymbolTable,
}

/// The modules of a process, sorted by address.
#[derive(Debug, Default)]
pub struct UserModules {
    modules: Vec<UserModule>,
}

impl UserModules {
    pub fn new(mut modules: Vec<UserModule>) -> Self {
        modules.sort_by_key(|m| m.start);
        UserModules { modules }
    }

    pub fn modules(&self) -> &[UserModule] {
        &self.modules
    }

    #[inline]
    pub fn find(&self, pc: u64) -> Option<&UserModule> {
        let i = self.modules.partition_point(|m| m.start <= pc);
        self.modules[..i].last().filter(|m| pc < m.end)
    }

    /// The symbol containing `pc`, from the module that maps it.
    pub fn lookup(&self, pc: u64) -> Option<SymbolRef<'_>> {
        self.find(pc).and_then(|m| m.symbols.lookup(pc))
    }
}

fn read<M: Memory>(
    mem: &mut M,
    cursor: &mut StackCursor,
    bounds: &StackBounds,
    addr: u64,
) -> Result<u64, UnreliableReason> {
    if !cursor.access(bounds, addr, 8) {
        return Err(UnreliableReason::OutsideStack { addr });
    }
    mem.read_u64(addr).map_err(|e| UnreliableReason::Unreadable { addr: e.addr, kind: e.kind })
}

enum Next {
    Caller { regs: Regs, signal: bool },
    End,
}

/// Walks one thread from its stopped registers, appending to `frames`
/// (cleared first; never more than `config.max_frames`).
pub fn walk_cfi<M: Memory>(
    modules: &UserModules,
    mem: &mut M,
    cache: &mut CfiCache,
    bounds: &StackBounds,
    start: WalkStart,
    config: &WalkConfig,
    frames: &mut Vec<Frame>,
) -> Reliability {
    frames.clear();
    let unreliable = |reason, frame| Reliability::Unreliable { reason, frame };
    let mut regs = start.regs;
    let (Some(_), Some(sp)) = (regs.get(Reg::Rip), regs.get(Reg::Rsp)) else {
        return unreliable(UnreliableReason::MissingRegister { pc: 0, reg: Reg::Rip }, 0);
    };
    let Some(mut cursor) = StackCursor::start(bounds, sp) else {
        return unreliable(UnreliableReason::StartNotOnStack { sp }, 0);
    };
    let mut exact = start.signal || start.full_regs;
    let mut kind = FrameKind::Start;
    loop {
        let index = frames.len();
        let (Some(pc), Some(sp)) = (regs.get(Reg::Rip), regs.get(Reg::Rsp)) else {
            return unreliable(UnreliableReason::MissingRegister { pc: 0, reg: Reg::Rip }, index);
        };
        let mut frame = Frame { pc, sp, kind, kernel_regs: false, reliable: true };
        let fail = |frames: &mut Vec<Frame>, mut frame: Frame, reason| {
            frame.reliable = false;
            if frames.len() < config.max_frames {
                frames.push(frame);
            }
            unreliable(reason, index)
        };
        let Some(module) = modules.find(pc) else {
            return fail(frames, frame, UnreliableReason::NotText { pc });
        };
        if index + 1 >= config.max_frames {
            return fail(frames, frame, UnreliableReason::FrameLimit { limit: config.max_frames as u32 });
        }
        let lookup = if exact { pc } else { pc.wrapping_sub(1) };
        match step(module, mem, cache, &mut cursor, bounds, &regs, lookup) {
            Ok(Next::End) => {
                frames.push(frame);
                return Reliability::Reliable(CleanEnd::EndOfStack);
            }
            Ok(Next::Caller { regs: next, signal }) => {
                let new_sp = next.get(Reg::Rsp).unwrap_or(0);
                if new_sp <= sp && bounds.ranges()[cursor.current].contains(new_sp, 8) {
                    return fail(frames, frame, UnreliableReason::WrongDirection { sp: new_sp, prev_sp: sp });
                }
                frames.push(frame);
                regs = next;
                exact = signal;
                kind = if signal { FrameKind::Regs } else { FrameKind::Call };
            }
            Err(reason) => {
                frame.reliable = false;
                frames.push(frame);
                return unreliable(reason, index);
            }
        }
    }
}

fn step<M: Memory>(
    module: &UserModule,
    mem: &mut M,
    cache: &mut CfiCache,
    cursor: &mut StackCursor,
    bounds: &StackBounds,
    regs: &Regs,
    lookup: u64,
) -> Result<Next, UnreliableReason> {
    let pc = regs.get(Reg::Rip).unwrap_or(0);
    let table = module.cfi.as_ref().ok_or(UnreliableReason::NoUnwindEntry { pc })?;
    let row = table.find(lookup.wrapping_sub(module.bias)).ok_or(UnreliableReason::NoUnwindEntry { pc })?;
    let missing = |reg| UnreliableReason::MissingRegister { pc, reg };
    match row.rule {
        Rule::None => Err(UnreliableReason::NoUnwindEntry { pc }),
        Rule::Outermost => Ok(Next::End),
        Rule::Simple(r) => {
            let base = if r.cfa_from_bp { Reg::Rbp } else { Reg::Rsp };
            let cfa = regs.get(base).ok_or(missing(base))?.wrapping_add(r.cfa_offset as i64 as u64);
            let ra = read(mem, cursor, bounds, cfa.wrapping_add(r.ra_offset as i64 as u64))?;
            let mut next = Regs::new();
            next.set(Reg::Rip, ra);
            next.set(Reg::Rsp, cfa);
            match r.bp {
                BpRule::Same => {
                    if let Some(bp) = regs.get(Reg::Rbp) {
                        next.set(Reg::Rbp, bp);
                    }
                }
                BpRule::AtCfa(o) => next.set(Reg::Rbp, read(mem, cursor, bounds, cfa.wrapping_add(o as i64 as u64))?),
            }
            if r.others_unchanged {
                for reg in [Reg::Rbx, Reg::R12, Reg::R13, Reg::R14, Reg::R15] {
                    if let Some(v) = regs.get(reg) {
                        next.set(reg, v);
                    }
                }
            }
            if let Some(cs) = regs.cs() {
                next.set_cs(cs);
            }
            Ok(Next::Caller { regs: next, signal: row.signal })
        }
        Rule::Complex { source, fde_offset } => {
            use crate::cfi::eval::ComplexError;
            let file_addr = lookup.wrapping_sub(module.bias);
            let s = evaluate_complex(table, cache, source, fde_offset, file_addr, regs, mem).map_err(|e| match e {
                ComplexError::MissingRegister(reg) => missing(reg),
                ComplexError::Memory(addr) => {
                    UnreliableReason::Unreadable { addr, kind: crate::memory::MemoryErrorKind::Unmapped }
                }
                ComplexError::Parse | ComplexError::Expression => UnreliableReason::UnknownEntry { pc, raw: 0 },
            })?;
            if s.outermost {
                return Ok(Next::End);
            }
            // The CFA (the caller's sp) must still be on a known stack.
            if !cursor.access(bounds, s.cfa.wrapping_sub(8), 8) {
                return Err(UnreliableReason::OutsideStack { addr: s.cfa });
            }
            Ok(Next::Caller { regs: s.regs, signal: row.signal })
        }
    }
}
