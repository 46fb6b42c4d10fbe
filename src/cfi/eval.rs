//! Full evaluation of a CFI row with gimli, for rows the compact table could
//! not express: CFA or register expressions, registers saved in other
//! registers. The context is owned by the caller so that a walk does not
//! allocate per frame.

use gimli::{
    CfaRule, DebugFrame, DebugFrameOffset, EhFrame, EhFrameOffset, EndianSlice, Evaluation, EvaluationResult,
    LittleEndian, RegisterRule, UnwindContext, UnwindSection, UnwindTableRow, Value,
};

use super::{CfiSource, CfiTable};
use crate::arch::x86_64::{Reg, Regs};
use crate::memory::Memory;

/// gimli's unwind context, kept between frames and walks.
#[derive(Default)]
pub struct CfiCache {
    ctx: UnwindContext<usize>,
}

impl CfiCache {
    pub fn new() -> Self {
        CfiCache { ctx: UnwindContext::new() }
    }
}

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
    pub regs: Regs,
    pub cfa: u64,
    pub outermost: bool,
}

type Rd<'a> = EndianSlice<'a, LittleEndian>;

fn reg_of(r: gimli::Register) -> Option<Reg> {
    Reg::ALL.get(r.0 as usize).copied()
}

fn eval_expr<M: Memory>(
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
                return match pieces.first().map(|p| p.location.clone()) {
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
    match source {
        CfiSource::EhFrame => {
            let s = table.eh_frame.as_ref().ok_or(ComplexError::Parse)?;
            let mut sec = EhFrame::new(&s.data, LittleEndian);
            sec.set_address_size(8);
            let bases = table.bases(s.addr);
            let fde = sec
                .fde_from_offset(&bases, EhFrameOffset(fde_offset as usize), EhFrame::cie_from_offset)
                .map_err(|_| ComplexError::Parse)?;
            let row = fde.unwind_info_for_address(&sec, &bases, &mut cache.ctx, addr).map_err(|_| ComplexError::Parse)?;
            apply(&sec, row, regs, mem)
        }
        CfiSource::DebugFrame => {
            let s = table.debug_frame.as_ref().ok_or(ComplexError::Parse)?;
            let mut sec = DebugFrame::new(&s.data, LittleEndian);
            sec.set_address_size(8);
            let bases = gimli::BaseAddresses::default();
            let fde = sec
                .fde_from_offset(&bases, DebugFrameOffset(fde_offset as usize), DebugFrame::cie_from_offset)
                .map_err(|_| ComplexError::Parse)?;
            let row = fde.unwind_info_for_address(&sec, &bases, &mut cache.ctx, addr).map_err(|_| ComplexError::Parse)?;
            apply(&sec, row, regs, mem)
        }
    }
}
