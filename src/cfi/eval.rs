//! Full evaluation of a CFI row with gimli, for rows the compact table could
//! not express: CFA or register expressions, registers saved in other
//! registers. The context is owned by the caller so that a walk does not
//! allocate per frame.

use gimli::{
    CfaRule, DebugFrame, DebugFrameOffset, EhFrame, EhFrameOffset, EndianSlice, Evaluation, EvaluationResult,
    LittleEndian, RegisterRule, UnwindSection, UnwindTableRow, Value,
};

use super::{CfiCache, CfiSource, CfiTable};
use crate::arch::x86_64::{Reg, Regs};
use crate::memory::Memory;

/// Why a complex row could not be evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComplexError {
    /// The FDE or its row could not be parsed.
    Parse,
    /// An expression needed a register whose value is unknown.
    MissingRegister(Reg),
    /// Reading memory failed at this address.
    Memory(u64),
    /// An expression was too long or used an unsupported operation.
    Expression,
}

/// The caller's registers after evaluating a row; `outermost` when the
/// return address is undefined.
pub struct ComplexStep {
    /// The caller's registers: rsp = CFA unless a rule says otherwise; registers without a rule keep their value if callee-saved and are otherwise unknown.
    pub regs: Regs,
    /// The row's CFA, the caller's stack pointer at the call.
    pub cfa: u64,
    /// The return address is undefined: no caller to unwind to.
    pub outermost: bool,
}

type Rd<'a> = EndianSlice<'a, LittleEndian>;

fn reg_of(r: gimli::Register) -> Option<Reg> {
    Reg::ALL.get(r.0 as usize).copied()
}

/// `DW_OP_breg<n> <offset>`, optionally followed by `DW_OP_deref`: the form
/// signal trampolines give every register in (glibc's `__restore_rt` has
/// 18), evaluated without setting up a gimli `Evaluation`. None for any
/// other expression.
fn breg_form(bytes: &[u8]) -> Option<(gimli::Register, i64, bool)> {
    let (&op, rest) = bytes.split_first()?;
    let first = gimli::constants::DW_OP_breg0.0;
    if !(first..=gimli::constants::DW_OP_breg31.0).contains(&op) {
        return None;
    }
    let mut r = EndianSlice::new(rest, LittleEndian);
    let offset = gimli::leb128::read::signed(&mut r).ok()?;
    let deref = match r.slice() {
        [] => false,
        [op] if *op == gimli::constants::DW_OP_deref.0 => true,
        _ => return None,
    };
    Some((gimli::Register(u16::from(op - first)), offset, deref))
}

/// Evaluates `expr` to an address (or value), as gimli would: the one
/// stack entry of a `DW_OP_breg` (after `DW_OP_deref`, the word there) is
/// the result; the initial value is below it and does not matter.
fn eval_expr<M: Memory>(
    expr: gimli::Expression<Rd<'_>>,
    regs: &Regs,
    mem: &mut M,
    initial: Option<u64>,
) -> Result<u64, ComplexError> {
    if let Some((register, offset, deref)) = breg_form(expr.0.slice()) {
        let reg = reg_of(register).ok_or(ComplexError::Expression)?;
        let at = regs.get(reg).ok_or(ComplexError::MissingRegister(reg))?.wrapping_add(offset as u64);
        if !deref {
            return Ok(at);
        }
        let mut b = [0u8; 8];
        mem.read(at, &mut b).map_err(|_| ComplexError::Memory(at))?;
        return Ok(u64::from_le_bytes(b));
    }
    eval_gimli(expr, regs, mem, initial)
}

fn eval_gimli<M: Memory>(
    expr: gimli::Expression<Rd<'_>>,
    regs: &Regs,
    mem: &mut M,
    initial: Option<u64>,
) -> Result<u64, ComplexError> {
    let encoding = gimli::Encoding { format: gimli::Format::Dwarf32, version: 4, address_size: 8 };
    let mut e: Evaluation<Rd<'_>> = expr.evaluation(encoding);
    if let Some(v) = initial {
        e.set_initial_value(v);
    }
    let mut r = e.evaluate().map_err(|_| ComplexError::Expression)?;
    for _ in 0..64 {
        r = match r {
            EvaluationResult::Complete => {
                let pieces = e.as_result();
                return match pieces.first().map(|p| p.location) {
                    Some(gimli::Location::Address { address }) => Ok(address),
                    Some(gimli::Location::Value { value }) => value.to_u64(!0).map_err(|_| ComplexError::Expression),
                    _ => Err(ComplexError::Expression),
                };
            }
            EvaluationResult::RequiresRegister { register, .. } => {
                let reg = reg_of(register).ok_or(ComplexError::Expression)?;
                let v = regs.get(reg).ok_or(ComplexError::MissingRegister(reg))?;
                e.resume_with_register(Value::Generic(v)).map_err(|_| ComplexError::Expression)?
            }
            EvaluationResult::RequiresMemory { address, size, .. } => {
                let mut b = [0u8; 8];
                let n = (size as usize).min(8);
                mem.read(address, &mut b[..n]).map_err(|_| ComplexError::Memory(address))?;
                e.resume_with_memory(Value::Generic(u64::from_le_bytes(b))).map_err(|_| ComplexError::Expression)?
            }
            _ => return Err(ComplexError::Expression),
        };
    }
    Err(ComplexError::Expression)
}

fn apply<'a, S: UnwindSection<Rd<'a>>, M: Memory>(
    sec: &S,
    row: &UnwindTableRow<usize>,
    regs: &Regs,
    mem: &mut M,
) -> Result<ComplexStep, ComplexError> {
    let cfa = match row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } => {
            let reg = reg_of(*register).ok_or(ComplexError::Expression)?;
            regs.get(reg).ok_or(ComplexError::MissingRegister(reg))?.wrapping_add(*offset as u64)
        }
        CfaRule::Expression(x) => eval_expr(x.get(sec).map_err(|_| ComplexError::Parse)?, regs, mem, None)?,
    };
    let mut out = Regs::new();
    let mut outermost = false;
    for reg in Reg::ALL {
        let rule = row.register(gimli::Register(reg as u16));
        let value = match rule {
            None => match reg {
                // The SysV ABI's callee-saved registers keep their values.
                Reg::Rbx | Reg::Rbp | Reg::R12 | Reg::R13 | Reg::R14 | Reg::R15 => regs.get(reg),
                Reg::Rsp => Some(cfa),
                _ => None,
            },
            Some(RegisterRule::Undefined) => {
                if reg == Reg::Rip {
                    outermost = true;
                }
                None
            }
            Some(RegisterRule::SameValue) => regs.get(reg),
            Some(RegisterRule::Offset(o)) => {
                let at = cfa.wrapping_add(o as u64);
                Some(mem.read_u64(at).map_err(|_| ComplexError::Memory(at))?)
            }
            Some(RegisterRule::ValOffset(o)) => Some(cfa.wrapping_add(o as u64)),
            Some(RegisterRule::Register(r)) => reg_of(r).and_then(|r| regs.get(r)),
            Some(RegisterRule::Expression(x)) => {
                let at = eval_expr(x.get(sec).map_err(|_| ComplexError::Parse)?, regs, mem, Some(cfa))?;
                Some(mem.read_u64(at).map_err(|_| ComplexError::Memory(at))?)
            }
            Some(RegisterRule::ValExpression(x)) => {
                Some(eval_expr(x.get(sec).map_err(|_| ComplexError::Parse)?, regs, mem, Some(cfa))?)
            }
            Some(_) => None,
        };
        if let Some(v) = value {
            out.set(reg, v);
        }
    }
    // A signal frame's saved registers include cs; others are user mode.
    if let Some(cs) = regs.cs() {
        out.set_cs(cs);
    }
    Ok(ComplexStep { regs: out, cfa, outermost })
}

/// Evaluates the row for `addr` (file address) of the FDE at `fde_offset`.
pub fn evaluate_complex<M: Memory>(
    table: &CfiTable,
    cache: &mut CfiCache,
    source: CfiSource,
    fde_offset: u32,
    addr: u64,
    regs: &Regs,
    mem: &mut M,
) -> Result<ComplexStep, ComplexError> {
    let (held, s) = table.fde_section().ok_or(ComplexError::Parse)?;
    if held != source {
        return Err(ComplexError::Parse);
    }
    match source {
        CfiSource::EhFrame => {
            let mut sec = EhFrame::new(s.data(), LittleEndian);
            sec.set_address_size(8);
            let bases = table.bases(s.addr);
            let fde = sec
                .fde_from_offset(&bases, EhFrameOffset(fde_offset as usize), EhFrame::cie_from_offset)
                .map_err(|_| ComplexError::Parse)?;
            let row = fde
                .unwind_info_for_address(&sec, &bases, cache.unwind_context(), addr)
                .map_err(|_| ComplexError::Parse)?;
            apply(&sec, row, regs, mem)
        }
        CfiSource::DebugFrame => {
            let mut sec = DebugFrame::new(s.data(), LittleEndian);
            sec.set_address_size(8);
            let bases = gimli::BaseAddresses::default();
            let fde = sec
                .fde_from_offset(&bases, DebugFrameOffset(fde_offset as usize), DebugFrame::cie_from_offset)
                .map_err(|_| ComplexError::Parse)?;
            let row = fde
                .unwind_info_for_address(&sec, &bases, cache.unwind_context(), addr)
                .map_err(|_| ComplexError::Parse)?;
            apply(&sec, row, regs, mem)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SliceMemory;

    fn breg(reg: u8, offset: i64, deref: bool) -> Vec<u8> {
        let mut v = vec![0x70 + reg];
        gimli::leb128::write::signed(&mut v, offset).unwrap();
        if deref {
            v.push(0x06);
        }
        v
    }

    /// The `DW_OP_breg [DW_OP_deref]` shortcut gives what gimli's
    /// evaluation gives, errors included.
    #[test]
    fn breg_shortcut_is_gimli() {
        let words: Vec<u8> = (0..64u64).flat_map(|i| (0x1000 + i * 0x11).to_le_bytes()).collect();
        let mut regs = Regs::new();
        regs.set(Reg::Rsp, 0x8000);
        regs.set(Reg::Rbp, 0x8100);
        regs.set(Reg::Rip, 0x40_1000);
        let mut exprs = vec![];
        for (reg, offset) in
            [(7u8, 160i64), (7, 40), (7, 0), (6, -8), (6, -0x100), (16, 3), (3, 8), (17, 0), (31, 8), (7, -0x9000)]
        {
            exprs.push(breg(reg, offset, false));
            exprs.push(breg(reg, offset, true));
        }
        // Not the shortcut's form: left to gimli either way.
        let mut two = breg(7, 8, true);
        two.push(0x06);
        exprs.extend([two, vec![0x70], vec![0x77, 0x80], vec![0x06], vec![]]);
        for bytes in &exprs {
            let expr = gimli::Expression(EndianSlice::new(bytes, LittleEndian));
            for initial in [None, Some(0x8200)] {
                let mut a = SliceMemory::new(0x8000, &words);
                let mut b = SliceMemory::new(0x8000, &words);
                assert_eq!(
                    eval_expr(expr, &regs, &mut a, initial),
                    eval_gimli(expr, &regs, &mut b, initial),
                    "{bytes:x?} {initial:?}"
                );
            }
        }
        assert!(breg_form(&breg(7, 160, true)).is_some());
        assert_eq!(
            eval_expr(
                gimli::Expression(EndianSlice::new(&breg(7, 16, true), LittleEndian)),
                &regs,
                &mut SliceMemory::new(0x8000, &words),
                None
            ),
            Ok(0x1022)
        );
    }
}
