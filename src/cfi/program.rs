//! A CFA program interpreter for one address: runs the CIE's initial
//! instructions and the FDE's up to the row covering the address, keeping
//! only what a compact rule needs (the CFA, and the rules of the return
//! address, rsp, rbp, rbx and r12-r15). It follows gimli's semantics, and a
//! test checks it against gimli on every row of real libraries; what it
//! does not handle is `Unsupported`, for gimli to do.

use super::entry::{Cursor, EntryError, Fde};
use super::{BpRule, Rule, SimpleRule};

/// A register's rule, as far as compaction cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RegRule {
    /// No rule (gimli: `None`).
    Unset,
    Same,
    Undefined,
    /// Saved at CFA + offset. An offset past i32 is `Other`: compaction
    /// treats both alike (not a simple rule).
    Offset(i32),
    /// Anything else: in another register, an expression, a value.
    Other,
}

impl RegRule {
    fn offset(o: i64) -> RegRule {
        i32::try_from(o).map_or(RegRule::Other, RegRule::Offset)
    }

    fn unchanged(self) -> bool {
        matches!(self, RegRule::Unset | RegRule::Same)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cfa {
    RegOffset(u64, i64),
    Expression,
}

/// The columns kept, by DWARF x86-64 number: the return address (16),
/// rsp, rbp, and rbx, r12-r15. Rules for other registers do not change
/// the compact rule.
const RA: usize = 0;
const RSP: usize = 1;
const RBP: usize = 2;
const OTHERS: std::ops::Range<usize> = 3..8;
const COLUMNS: usize = 8;

fn column(reg: u64) -> Option<usize> {
    Some(match reg {
        16 => RA,
        7 => RSP,
        6 => RBP,
        3 => 3,
        12..=15 => reg as usize - 8,
        _ => return None,
    })
}

/// remember_state depth; deeper programs are left to gimli.
const MAX_STATES: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct State {
    cfa: Cfa,
    regs: [RegRule; COLUMNS],
}

const INITIAL: State = State { cfa: Cfa::RegOffset(0, 0), regs: [RegRule::Unset; COLUMNS] };

impl State {
    fn set(&mut self, reg: u64, rule: RegRule) {
        if let Some(c) = column(reg) {
            self.regs[c] = rule;
        }
    }

    /// The compact rule, exactly as [`super::compile::compact`] makes it
    /// from gimli's row.
    fn rule(&self, complex: Rule) -> Rule {
        let ra_offset = match self.regs[RA] {
            RegRule::Undefined => return Rule::Outermost,
            RegRule::Offset(o) => o,
            _ => return complex,
        };
        let (cfa_from_bp, cfa_offset) = match self.cfa {
            Cfa::RegOffset(7, o) => (false, o),
            Cfa::RegOffset(6, o) => (true, o),
            _ => return complex,
        };
        let bp = match self.regs[RBP] {
            RegRule::Offset(o) => BpRule::AtCfa(o),
            r if r.unchanged() => BpRule::Same,
            _ => return complex,
        };
        if self.regs[RSP] != RegRule::Unset {
            return complex;
        }
        let others_unchanged = self.regs[OTHERS].iter().all(|r| r.unchanged());
        match i32::try_from(cfa_offset) {
            Ok(cfa_offset) => Rule::Simple(SimpleRule { cfa_from_bp, cfa_offset, ra_offset, bp, others_unchanged }),
            Err(_) => complex,
        }
    }
}

/// Where the interpreter is: the current row and the saved states.
struct Machine {
    state: State,
    /// After the CIE's instructions: what `DW_CFA_restore` goes back to.
    initial: Option<State>,
    stack: [State; MAX_STATES],
    depth: usize,
}

/// What one instruction did.
enum Step {
    Continue,
    /// The current row ends `delta` (unfactored) bytes on.
    Advance(u64),
}

impl Machine {
    #[inline(always)]
    fn execute(&mut self, c: &mut Cursor<'_>, code_align: u64, data_align: i64) -> Result<Step, EntryError> {
        let op = c.u8()?;
        let factored = |n: i64| n.wrapping_mul(data_align);
        match op >> 6 {
            1 => return Ok(Step::Advance(u64::from(op & 0x3f).wrapping_mul(code_align))),
            2 => {
                let o = c.uleb()? as i64;
                self.state.set(u64::from(op & 0x3f), RegRule::offset(factored(o)));
                return Ok(Step::Continue);
            }
            3 => {
                self.restore(u64::from(op & 0x3f))?;
                return Ok(Step::Continue);
            }
            _ => {}
        }
        match op {
            0x00 => {}
            0x02 => return Ok(Step::Advance(u64::from(c.u8()?).wrapping_mul(code_align))),
            0x03 => return Ok(Step::Advance(u64::from(c.u16()?).wrapping_mul(code_align))),
            0x04 => return Ok(Step::Advance(u64::from(c.u32()?).wrapping_mul(code_align))),
            // offset_extended, GNU_negative_offset_extended.
            0x05 | 0x2f => {
                let (reg, o) = (c.uleb()?, c.uleb()? as i64);
                let o = if op == 0x2f { o.wrapping_neg() } else { o };
                self.state.set(reg, RegRule::offset(factored(o)));
            }
            0x06 => {
                let reg = c.uleb()?;
                self.restore(reg)?;
            }
            0x07 => self.state.set(c.uleb()?, RegRule::Undefined),
            0x08 => self.state.set(c.uleb()?, RegRule::Same),
            0x09 => {
                let reg = c.uleb()?;
                c.uleb()?;
                self.state.set(reg, RegRule::Other);
            }
            0x0a => {
                let slot = self.stack.get_mut(self.depth).ok_or(EntryError::Unsupported)?;
                *slot = self.state;
                self.depth += 1;
            }
            0x0b => {
                self.depth = self.depth.checked_sub(1).ok_or(EntryError::Malformed)?;
                self.state = self.stack[self.depth];
            }
            0x0c => {
                let (reg, o) = (c.uleb()?, c.uleb()? as i64);
                self.state.cfa = Cfa::RegOffset(reg, o);
            }
            0x0d => {
                let reg = c.uleb()?;
                match &mut self.state.cfa {
                    Cfa::RegOffset(r, _) => *r = reg,
                    Cfa::Expression => return Err(EntryError::Malformed),
                }
            }
            0x0e | 0x13 => {
                let o = if op == 0x0e { c.uleb()? as i64 } else { factored(c.sleb()?) };
                match &mut self.state.cfa {
                    Cfa::RegOffset(_, off) => *off = o,
                    Cfa::Expression => return Err(EntryError::Malformed),
                }
            }
            0x0f => {
                skip_block(c)?;
                self.state.cfa = Cfa::Expression;
            }
            // expression, val_expression.
            0x10 | 0x16 => {
                let reg = c.uleb()?;
                skip_block(c)?;
                self.state.set(reg, RegRule::Other);
            }
            0x11 => {
                let (reg, o) = (c.uleb()?, c.sleb()?);
                self.state.set(reg, RegRule::offset(factored(o)));
            }
            0x12 => {
                let (reg, o) = (c.uleb()?, c.sleb()?);
                self.state.cfa = Cfa::RegOffset(reg, factored(o));
            }
            // val_offset, val_offset_sf.
            0x14 | 0x15 => {
                let reg = c.uleb()?;
                if op == 0x14 {
                    c.uleb()?;
                } else {
                    c.sleb()?;
                }
                self.state.set(reg, RegRule::Other);
            }
            // GNU_args_size: the unwinder does not need it.
            0x2e => {
                c.uleb()?;
            }
            // set_loc and anything vendor-specific.
            _ => return Err(EntryError::Unsupported),
        }
        Ok(Step::Continue)
    }

    fn restore(&mut self, reg: u64) -> Result<(), EntryError> {
        // In the CIE itself there is nothing to go back to.
        let initial = self.initial.ok_or(EntryError::Malformed)?;
        if let Some(c) = column(reg) {
            self.state.regs[c] = initial.regs[c];
        }
        Ok(())
    }
}

fn skip_block(c: &mut Cursor<'_>) -> Result<(), EntryError> {
    let len = usize::try_from(c.uleb()?).map_err(|_| EntryError::Truncated)?;
    c.bytes(len).map(|_| ())
}

/// The compact rule at `addr` in `fde`, with its row's start; None when
/// the FDE does not cover `addr`. A row compaction cannot express is
/// `complex` (which names the FDE for gimli).
pub(crate) fn rule_at(fde: &Fde<'_>, addr: u64, complex: Rule) -> Result<Option<(u64, Rule)>, EntryError> {
    if addr < fde.pc_begin || addr >= fde.pc_end {
        return Ok(None);
    }
    let cie = &fde.cie;
    if cie.ra_register != 16 {
        return Err(EntryError::Unsupported);
    }
    let mut m = Machine { state: INITIAL, initial: None, stack: [INITIAL; MAX_STATES], depth: 0 };
    let mut c = Cursor::new(cie.instructions, 0);
    while !c.at_end() {
        // Rows or saved states in a CIE: left to gimli.
        let op = cie.instructions.get(c.pos()).copied().unwrap_or(0);
        if op == 0x0a || op == 0x0b {
            return Err(EntryError::Unsupported);
        }
        if let Step::Advance(_) = m.execute(&mut c, cie.code_align, cie.data_align)? {
            return Err(EntryError::Unsupported);
        }
    }
    m.initial = Some(m.state);
    let mut c = Cursor::new(fde.instructions, 0);
    let mut row_start = fde.pc_begin;
    while !c.at_end() {
        if let Step::Advance(delta) = m.execute(&mut c, cie.code_align, cie.data_align)? {
            let next = row_start.checked_add(delta).ok_or(EntryError::Malformed)?;
            if addr < next {
                return Ok(Some((row_start, m.state.rule(complex))));
            }
            row_start = next;
        }
    }
    Ok(Some((row_start, m.state.rule(complex))))
}

#[cfg(test)]
mod tests {
    use super::super::entry::Cie;
    use super::*;

    fn fde<'a>(cie: &'a [u8], fde: &'a [u8]) -> Fde<'a> {
        Fde {
            cie: Cie {
                code_align: 1,
                data_align: -8,
                ra_register: 16,
                fde_encoding: 0x1b,
                fde_has_augmentation: true,
                signal: false,
                instructions: cie,
            },
            pc_begin: 0x1000,
            pc_end: 0x1100,
            instructions: fde,
            next: 0,
        }
    }

    fn simple(cfa_from_bp: bool, cfa_offset: i32, bp: BpRule, others_unchanged: bool) -> Rule {
        Rule::Simple(SimpleRule { cfa_from_bp, cfa_offset, ra_offset: -8, bp, others_unchanged })
    }

    const CIE: &[u8] = &[0x0c, 7, 8, 0x90, 1]; // rsp+8, ra at cfa-8
    const COMPLEX: Rule = Rule::Complex { source: super::super::CfiSource::EhFrame, fde_offset: 7 };

    #[test]
    fn a_typical_prologue() {
        // push rbp; mov rbp, rsp; push rbx ... leave; ret
        let prog = [
            0x41, 0x0e, 16, 0x86, 2, // +1: cfa rsp+16, rbp at cfa-16
            0x43, 0x0d, 6, // +3: cfa rbp+16
            0x45, 0x83, 3,    // +5: rbx at cfa-24
            0x0a, // remember
            0x50, 0x0c, 7, 8, // +16: cfa rsp+8
            0x41, 0x0b, // +1: restore state
        ];
        let f = fde(CIE, &prog);
        let at = |a| rule_at(&f, a, COMPLEX).unwrap();
        assert_eq!(at(0xfff), None);
        assert_eq!(at(0x1100), None);
        assert_eq!(at(0x1000), Some((0x1000, simple(false, 8, BpRule::Same, true))));
        assert_eq!(at(0x1001), Some((0x1001, simple(false, 16, BpRule::AtCfa(-16), true))));
        assert_eq!(at(0x1004), Some((0x1004, simple(true, 16, BpRule::AtCfa(-16), true))));
        assert_eq!(at(0x1009), Some((0x1009, simple(true, 16, BpRule::AtCfa(-16), false))));
        assert_eq!(at(0x1019), Some((0x1019, simple(false, 8, BpRule::AtCfa(-16), false))));
        assert_eq!(at(0x10ff), Some((0x101a, simple(true, 16, BpRule::AtCfa(-16), false))));
    }

    #[test]
    fn outermost_complex_and_errors() {
        let f = |prog: &'static [u8]| rule_at(&fde(CIE, prog), 0x1010, COMPLEX);
        assert_eq!(f(&[0x07, 16]).unwrap().unwrap().1, Rule::Outermost);
        assert!(f(&[0x0f, 2, 0x77, 8]).unwrap().unwrap().1 == COMPLEX);
        assert!(f(&[0x10, 6, 1, 0x96]).unwrap().unwrap().1 == COMPLEX);
        assert!(f(&[0x08, 7]).unwrap().unwrap().1 == COMPLEX);
        // restore(rsp) with no CIE rule: unset again.
        assert!(matches!(f(&[0x08, 7, 0xc7]).unwrap().unwrap().1, Rule::Simple(_)));
        // Truncated operands; a pop with nothing pushed; set_loc.
        assert_eq!(f(&[0x0c, 7]), Err(EntryError::Truncated));
        assert_eq!(f(&[0x0b]), Err(EntryError::Malformed));
        assert_eq!(f(&[0x01, 0, 0, 0, 0]), Err(EntryError::Unsupported));
        // def_cfa_offset after a CFA expression.
        assert_eq!(f(&[0x0f, 1, 0x77, 0x0e, 8]), Err(EntryError::Malformed));
    }
}
