//! The reliable walk of a userspace thread with DWARF CFI. Every frame must
//! be covered by CFI (no frame-pointer guessing), every read must fall on
//! the thread's stack, the stack must grow, and the walk must end at a frame
//! whose return address the CFI declares undefined (`_start`, a thread's
//! `clone` entry).

use super::bounds::StackCursor;
use super::{CleanEnd, Frame, FrameKind, Reliability, StackBounds, UnreliableReason, WalkConfig, WalkStart};
use crate::arch::x86_64::{Reg, Regs};
use crate::cfi::{CachedRule, CfiCache, CfiTable, Rule, evaluate_complex};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::memory::Memory;
use crate::symbols::{SymbolRef, SymbolTable};

/// One executable mapping of a file (or the vdso) in a process.
#[derive(Debug)]
pub struct UserModule {
    /// File name, used as the object in funcs.txt (`libc.so.6`).
    pub name: String,
    /// The path the process mapped (empty when unknown).
    pub path: String,
    /// Runtime range of the executable mapping.
    pub start: u64,
    /// One past the last runtime address of the mapping.
    pub end: u64,
    /// Runtime address = file virtual address + bias.
    pub bias: u64,
    /// The file's CFI; None when it has none or it could not be read, so that every pc in the module is unreliable.
    pub cfi: Option<CfiTable>,
    /// Already rebased to runtime addresses.
    pub symbols: SymbolTable,
}

/// The modules of a process, sorted by address.
#[derive(Debug)]
pub struct UserModules {
    modules: Vec<UserModule>,
    /// Names this set of modules in a [`CfiCache`]: unique per set and
    /// per change, so rules cached for another set are never used.
    generation: u64,
}

/// Generations handed out so far (0 is never one).
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, Ordering::Relaxed)
}

impl Default for UserModules {
    fn default() -> Self {
        UserModules::new(Vec::new())
    }
}

impl UserModules {
    /// The modules, sorted by start address.
    pub fn new(mut modules: Vec<UserModule>) -> Self {
        modules.sort_by_key(|m| m.start);
        UserModules { modules, generation: next_generation() }
    }

    /// Adds one module, keeping the address order.
    pub fn push(&mut self, module: UserModule) {
        let at = self.modules.partition_point(|m| m.start <= module.start);
        self.modules.insert(at, module);
        self.generation = next_generation();
    }

    /// The modules, sorted by start address.
    pub fn modules(&self) -> &[UserModule] {
        &self.modules
    }

    /// The module whose [start, end) holds `pc`.
    #[inline]
    pub fn find(&self, pc: u64) -> Option<&UserModule> {
        let i = self.modules.partition_point(|m| m.start <= pc);
        self.modules[..i].last().filter(|m| pc < m.end)
    }

    /// As [`UserModules::find`], trying the module at index `*near` first (a
    /// walk mostly stays in one module: no search then); `*near` becomes
    /// the index of the module found.
    #[inline]
    fn find_near(&self, near: &mut usize, pc: u64) -> Option<&UserModule> {
        let m = &self.modules;
        let h = *near;
        // How many modules start at or before pc: h + 1 when the hinted one
        // does and the next one does not.
        let i = if m.get(h).is_some_and(|x| x.start <= pc) && m.get(h + 1).is_none_or(|x| x.start > pc) {
            h + 1
        } else {
            m.partition_point(|x| x.start <= pc)
        };
        *near = i.saturating_sub(1);
        m[..i].last().filter(|x| pc < x.end)
    }

    /// The symbol containing `pc`, from the module that maps it.
    pub fn lookup(&self, pc: u64) -> Option<SymbolRef<'_>> {
        self.find(pc).and_then(|m| m.symbols.lookup(pc))
    }
}

#[inline(always)]
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

/// What a step found; on `Caller` the step has turned the registers into
/// the caller's.
enum Next {
    Caller { signal: bool },
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
    // Taken apart, not copied. rip, rsp and rbp live in locals (the chain
    // from one frame's return address to the next lookup is the walk's
    // latency; it does not go through memory); `regs` keeps the others
    // and is synchronised only around complex rows.
    let mut start = start;
    let regs = &mut start.regs;
    let (Some(mut pc), Some(mut sp)) = (regs.get(Reg::Rip), regs.get(Reg::Rsp)) else {
        return unreliable(UnreliableReason::MissingRegister { pc: 0, reg: Reg::Rip }, 0);
    };
    let mut bp = regs.get(Reg::Rbp);
    let Some(mut cursor) = StackCursor::start(bounds, sp) else {
        return unreliable(UnreliableReason::StartNotOnStack { sp }, 0);
    };
    let mut exact = start.signal || start.full_regs;
    let mut kind = FrameKind::Start;
    let mut near = 0usize;
    loop {
        let index = frames.len();
        let frame = Frame { pc, sp, kind, kernel_regs: false, reliable: true };
        let fail = |frames: &mut Vec<Frame>, mut frame: Frame, reason| {
            frame.reliable = false;
            if frames.len() < config.max_frames {
                frames.push(frame);
            }
            unreliable(reason, index)
        };
        // A rule found before for this pc (and the module it is in);
        // otherwise the module mapping pc and its CFI.
        let found = match cache.rule(pc, exact, modules.generation) {
            Some(hit) => Ok(hit),
            None => match resolve(modules, &mut near, cache, pc, exact) {
                Ok(()) => cache.rule(pc, exact, modules.generation).ok_or(UnreliableReason::NoUnwindEntry { pc }),
                Err(reason) => Err(reason),
            },
        };
        let rule = match found {
            Err(reason @ UnreliableReason::NotText { .. }) => return fail(frames, frame, reason),
            Ok(_) | Err(_) if index + 1 >= config.max_frames => {
                return fail(frames, frame, UnreliableReason::FrameLimit { limit: config.max_frames as u32 });
            }
            Err(reason) => return fail(frames, frame, reason),
            Ok(r) => r,
        };
        let (next_pc, next_sp, next_signal) = if rule.is_simple() {
            // CFA = rsp or rbp + offset; the return address and rbp (when
            // saved) at CFA offsets. rbx and r12-r15 keep their values
            // when no rule touches them; the other registers are unknown.
            let base = if rule.cfa_from_bp() { bp } else { Some(sp) };
            let Some(base) = base else {
                return fail(frames, frame, UnreliableReason::MissingRegister { pc, reg: Reg::Rbp });
            };
            let cfa = base.wrapping_add(rule.cfa_offset() as i64 as u64);
            let ra = match read(mem, &mut cursor, bounds, cfa.wrapping_add(rule.ra_offset() as i64 as u64)) {
                Ok(v) => v,
                Err(reason) => return fail(frames, frame, reason),
            };
            if let Some(o) = rule.bp_offset() {
                match read(mem, &mut cursor, bounds, cfa.wrapping_add(o as i64 as u64)) {
                    Ok(v) => bp = Some(v),
                    Err(reason) => return fail(frames, frame, reason),
                }
            }
            if !rule.others_unchanged() {
                regs.keep_only(&[Reg::Rip, Reg::Rsp, Reg::Rbp]);
            } else {
                regs.keep_only(&[Reg::Rip, Reg::Rsp, Reg::Rbp, Reg::Rbx, Reg::R12, Reg::R13, Reg::R14, Reg::R15]);
            }
            (ra, cfa, rule.signal())
        } else {
            regs.set(Reg::Rip, pc);
            regs.set(Reg::Rsp, sp);
            match bp {
                Some(v) => regs.set(Reg::Rbp, v),
                None => regs.forget(Reg::Rbp),
            }
            let lookup = if exact { pc } else { pc.wrapping_sub(1) };
            let rule = *rule;
            let stepped = match modules.modules.get(rule.module()) {
                Some(module) => step_other(module, &rule, mem, cache, &mut cursor, bounds, regs, lookup),
                None => Err(UnreliableReason::NoUnwindEntry { pc }),
            };
            match stepped {
                Ok(Next::End) => {
                    frames.push(frame);
                    return Reliability::Reliable(CleanEnd::EndOfStack);
                }
                Ok(Next::Caller { signal }) => {
                    bp = regs.get(Reg::Rbp);
                    match (regs.get(Reg::Rip), regs.get(Reg::Rsp)) {
                        (Some(p), Some(s)) => (p, s, signal),
                        _ => {
                            frames.push(frame);
                            return unreliable(UnreliableReason::MissingRegister { pc: 0, reg: Reg::Rip }, index + 1);
                        }
                    }
                }
                Err(reason) => return fail(frames, frame, reason),
            }
        };
        if next_sp <= sp && bounds.ranges()[cursor.current].contains(next_sp, 8) {
            return fail(frames, frame, UnreliableReason::WrongDirection { sp: next_sp, prev_sp: sp });
        }
        frames.push(frame);
        (pc, sp) = (next_pc, next_sp);
        exact = next_signal;
        kind = if next_signal { FrameKind::Regs } else { FrameKind::Call };
    }
}

/// Finds the module mapping `pc` and the rule at its lookup address (`pc`
/// when exact, else `pc - 1`, inside the call), and keeps the rule in the
/// cache.
#[cold]
fn resolve(
    modules: &UserModules,
    near: &mut usize,
    cache: &mut CfiCache,
    pc: u64,
    exact: bool,
) -> Result<(), UnreliableReason> {
    let module = modules.find_near(near, pc).ok_or(UnreliableReason::NotText { pc })?;
    let table = module.cfi.as_ref().ok_or(UnreliableReason::NoUnwindEntry { pc })?;
    let lookup = if exact { pc } else { pc.wrapping_sub(1) };
    let row = table.find(lookup.wrapping_sub(module.bias)).ok_or(UnreliableReason::NoUnwindEntry { pc })?;
    cache
        .remember(pc, exact, modules.generation, row.rule, row.signal, *near)
        .ok_or(UnreliableReason::NoUnwindEntry { pc })?;
    Ok(())
}

/// The outermost frame, or a rule gimli evaluates.
#[allow(clippy::too_many_arguments)]
fn step_other<M: Memory>(
    module: &UserModule,
    rule: &CachedRule,
    mem: &mut M,
    cache: &mut CfiCache,
    cursor: &mut StackCursor,
    bounds: &StackBounds,
    regs: &mut Regs,
    lookup: u64,
) -> Result<Next, UnreliableReason> {
    let pc = regs.get(Reg::Rip).unwrap_or(0);
    let signal = rule.signal();
    let missing = |reg| UnreliableReason::MissingRegister { pc, reg };
    match rule.rule() {
        Rule::None | Rule::Simple(_) => Err(UnreliableReason::NoUnwindEntry { pc }),
        Rule::Outermost => Ok(Next::End),
        Rule::Complex { source, fde_offset } => {
            use crate::cfi::eval::ComplexError;
            let table = module.cfi.as_ref().ok_or(UnreliableReason::NoUnwindEntry { pc })?;
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
            *regs = s.regs;
            Ok(Next::Caller { signal })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(start: u64, end: u64) -> UserModule {
        UserModule {
            name: format!("m{start:x}"),
            path: String::new(),
            start,
            end,
            bias: 0,
            cfi: None,
            symbols: SymbolTable::new("m"),
        }
    }

    /// `find_near` finds what `find` finds, whatever the hint.
    #[test]
    fn find_near_is_find() {
        // Gaps, adjacent modules, one inside another's range, equal starts.
        let mods = UserModules::new(vec![
            module(0x5000, 0x6000),
            module(0x1000, 0x2000),
            module(0x2000, 0x3000),
            module(0x7000, 0x9000),
            module(0x7800, 0x8000),
            module(0x9000, 0x9100),
            module(0x9000, 0x9800),
        ]);
        let mut pcs = vec![0, 0xfff, u64::MAX];
        for m in mods.modules() {
            pcs.extend([m.start - 1, m.start, m.start + 1, m.end - 1, m.end, m.end + 1]);
        }
        for &pc in &pcs {
            for hint in 0..mods.modules().len() + 2 {
                let mut near = hint;
                let found = mods.find_near(&mut near, pc);
                assert_eq!(
                    found.map(|m| m as *const _),
                    mods.find(pc).map(|m| m as *const _),
                    "pc {pc:#x} hint {hint}"
                );
                if let Some(m) = found {
                    assert!(std::ptr::eq(&mods.modules()[near], m));
                }
            }
        }
        assert!(UserModules::default().find_near(&mut 3, 0x1000).is_none());
    }
}
