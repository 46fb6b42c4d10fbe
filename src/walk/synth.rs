//! Builds a stack image that an ORC walk turns back into a given chain of
//! return addresses. Real kernels' return-address chains (from
//! `/proc/PID/stack`) plus this give realistic walks for benchmarks and
//! property tests without a dump. Only CALL frames with SP- or BP-based
//! CFAs are built, ended by END_OF_STACK or user-mode `pt_regs`.

use crate::arch::x86_64::{PT_REGS_SIZE, PtRegsSlot};
use crate::orc::{OrcFinder, OrcReg, OrcType};

/// A stack image: `bytes` mapped at `base`, and where the walk starts.
#[derive(Clone, Debug)]
pub struct SynthStack {
    /// Address of `bytes[0]`.
    pub base: u64,
    /// The stack's contents, little-endian words.
    pub bytes: Vec<u8>,
    /// The ip to start the walk with: the innermost pc of the chain.
    pub start_ip: u64,
    /// The sp to start the walk with.
    pub start_sp: u64,
    /// The bp to start the walk with.
    pub start_bp: u64,
}

/// Where the current bp value would come from, so that a later frame that
/// needs a particular bp can still choose it.
#[derive(Clone, Copy)]
enum BpSource {
    Start,
    Slot(u64),
}

impl SynthStack {
    fn put(&mut self, addr: u64, value: u64) -> Option<()> {
        let o = usize::try_from(addr.checked_sub(self.base)?).ok()?;
        self.bytes.get_mut(o..o + 8)?.copy_from_slice(&value.to_le_bytes());
        Some(())
    }

    /// Lays out `chain` (innermost pc first) on a stack of `size` bytes at
    /// `base`, ending at its top. None when an entry on the way is of a kind
    /// this builder does not make, or the stack is too small.
    pub fn build<F: OrcFinder + ?Sized>(orc: &F, chain: &[u64], base: u64, size: u64) -> Option<SynthStack> {
        // Lay out from an sp low enough for the frames, then shift: build
        // at a trial position and retry higher if the stack is too small.
        let top = base.checked_add(size)?;
        let mut s = SynthStack {
            base,
            bytes: vec![0; usize::try_from(size).ok()?],
            start_ip: *chain.first()?,
            start_sp: base + size / 4,
            start_bp: 0,
        };
        let mut sp = s.start_sp;
        let mut bp: Option<u64> = None;
        let mut bp_source = BpSource::Start;
        for (i, &pc) in chain.iter().enumerate() {
            let e = orc.find(pc.wrapping_sub(1))?;
            let last = i + 1 == chain.len();
            match e.kind {
                OrcType::EndOfStack if last => return Some(s),
                OrcType::Regs if last => {
                    // User-mode pt_regs at the CFA, at the top of the stack.
                    let cfa = match e.sp_reg {
                        OrcReg::Sp => sp.wrapping_add(e.sp_offset as i64 as u64),
                        _ => return None,
                    };
                    if cfa.checked_add(PT_REGS_SIZE)? > top {
                        return None;
                    }
                    s.put(cfa + PtRegsSlot::Ip as u64 * 8, 0x401000)?;
                    s.put(cfa + PtRegsSlot::Cs as u64 * 8, 0x33)?;
                    s.put(cfa + PtRegsSlot::Sp as u64 * 8, 0x7ffd_0000_0000)?;
                    return Some(s);
                }
                OrcType::Call if !last => {}
                _ => return None,
            }
            let off = e.sp_offset as i64 as u64;
            let cfa = match e.sp_reg {
                OrcReg::Sp => sp.wrapping_add(off),
                OrcReg::Bp => {
                    // Choose bp now: the frame needs CFA above sp.
                    let cfa = sp.checked_add(16)?;
                    let want = cfa.wrapping_sub(off);
                    match (bp, bp_source) {
                        (Some(v), _) if v != want => return None,
                        (_, BpSource::Start) => s.start_bp = want,
                        (_, BpSource::Slot(a)) => s.put(a, want)?,
                    }
                    bp = Some(want);
                    cfa
                }
                _ => return None,
            };
            if cfa <= sp || cfa > top {
                return None;
            }
            s.put(cfa - 8, chain[i + 1])?;
            match e.bp_reg {
                OrcReg::Undefined => {}
                OrcReg::PrevSp => {
                    let slot = cfa.wrapping_add(e.bp_offset as i64 as u64);
                    if slot == cfa - 8 {
                        return None;
                    }
                    bp = None;
                    bp_source = BpSource::Slot(slot);
                }
                _ => return None,
            }
            sp = cfa;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SliceMemory;
    use crate::orc::{OrcFormat, OrcTable};
    use crate::walk::{CleanEnd, CodeRanges, Reliability, StackBounds, WalkConfig, WalkStart, walk_orc};

    #[test]
    fn round_trip() {
        let t = 0xffffffff81000000u64;
        let e = |ty: u8, sp_reg: u8, sp: i16, bp_reg: u8, bp: i16| {
            let s = sp.to_le_bytes();
            let b = bp.to_le_bytes();
            [s[0], s[1], b[0], b[1], sp_reg | bp_reg << 4, ty]
        };
        let table = OrcTable::from_unsorted(
            vec![
                (t, e(2, 5, 16, 1, -16)),       // push bp
                (t + 0x100, e(2, 4, 16, 0, 0)), // bp-based
                (t + 0x200, e(2, 5, 40, 0, 0)), // sp+40
                (t + 0x300, e(3, 5, 0, 0, 0)),  // user regs
            ],
            OrcFormat::V3,
        )
        .unwrap();
        let chain = [t + 5, t + 0x105, t + 0x205, t + 0x305];
        let base = 0xffffc90000000000;
        let s = SynthStack::build(&table, &chain, base, 0x4000).unwrap();
        let mut code = CodeRanges::new();
        code.add(t, t + 0x1000);
        let mut mem = SliceMemory::new(s.base, &s.bytes);
        let mut frames = Vec::new();
        let r = walk_orc(
            &table,
            &mut mem,
            &mut code,
            &StackBounds::task(base, base + 0x4000),
            WalkStart::blocked(s.start_ip, s.start_sp, s.start_bp, false),
            &WalkConfig::default(),
            &mut frames,
        );
        assert_eq!(r, Reliability::Reliable(CleanEnd::UserRegs));
        assert_eq!(frames.iter().map(|f| f.pc).collect::<Vec<_>>(), chain);
    }
}
