//! The walker's rule cache, owned by the caller (as framehop's): rules
//! found before, by pc, packed so that the whole cache (12 KiB) stays in
//! the L1 cache beside the stack being walked. It holds the rules of one
//! module set at a time; a walk over another set empties it first.

use gimli::UnwindContext;

use super::{BpRule, CfiSource, Rule, SimpleRule};

const SETS: usize = 128;
const WAYS: usize = 4;

/// One cached rule, 24 bytes: what a step needs, packed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CachedRule {
    pc: u64,
    /// Simple: CFA offset; Complex: FDE offset.
    a: i32,
    /// Simple: return-address offset.
    b: i32,
    /// Simple: rbp's offset when saved.
    c: i32,
    flags: u16,
    module: u16,
}

// Flags. KIND_* in the low two bits; 0 is an empty entry.
const KIND_MASK: u16 = 3;
const KIND_SIMPLE: u16 = 1;
const KIND_OUTERMOST: u16 = 2;
const KIND_COMPLEX: u16 = 3;
const EXACT: u16 = 1 << 2;
const SIGNAL: u16 = 1 << 3;
const CFA_FROM_BP: u16 = 1 << 4;
const BP_SAVED: u16 = 1 << 5;
const OTHERS_UNCHANGED: u16 = 1 << 6;
const DEBUG_FRAME: u16 = 1 << 7;

impl CachedRule {
    fn pack(pc: u64, exact: bool, rule: Rule, signal: bool, module: u16) -> Option<CachedRule> {
        let mut e = CachedRule { pc, module, ..Default::default() };
        let mut flags = 0u16;
        match rule {
            Rule::None => return None,
            Rule::Outermost => flags |= KIND_OUTERMOST,
            Rule::Simple(r) => {
                flags |= KIND_SIMPLE;
                e.a = r.cfa_offset;
                e.b = r.ra_offset;
                if r.cfa_from_bp {
                    flags |= CFA_FROM_BP;
                }
                if let BpRule::AtCfa(o) = r.bp {
                    flags |= BP_SAVED;
                    e.c = o;
                }
                if r.others_unchanged {
                    flags |= OTHERS_UNCHANGED;
                }
            }
            Rule::Complex { source, fde_offset } => {
                flags |= KIND_COMPLEX;
                e.a = fde_offset as i32;
                if source == CfiSource::DebugFrame {
                    flags |= DEBUG_FRAME;
                }
            }
        }
        if exact {
            flags |= EXACT;
        }
        if signal {
            flags |= SIGNAL;
        }
        e.flags = flags;
        Some(e)
    }

    /// CFA = rsp or rbp + offset, return address and rbp at CFA offsets.
    #[inline(always)]
    pub fn is_simple(&self) -> bool {
        self.flags & KIND_MASK == KIND_SIMPLE
    }
    /// The CFA is rbp + `cfa_offset` (else rsp + it). Simple rules only.
    #[inline(always)]
    pub fn cfa_from_bp(&self) -> bool {
        self.flags & CFA_FROM_BP != 0
    }
    /// CFA = rsp or rbp + this, in bytes. Simple rules only.
    #[inline(always)]
    pub fn cfa_offset(&self) -> i32 {
        self.a
    }
    /// The return address is at CFA + this, in bytes. Simple rules only.
    #[inline(always)]
    pub fn ra_offset(&self) -> i32 {
        self.b
    }
    /// Where rbp is saved, if the rule saves it.
    #[inline(always)]
    pub fn bp_offset(&self) -> Option<i32> {
        (self.flags & BP_SAVED != 0).then_some(self.c)
    }
    /// rbx and r12-r15 keep their values across the frame. Simple rules only.
    #[inline(always)]
    pub fn others_unchanged(&self) -> bool {
        self.flags & OTHERS_UNCHANGED != 0
    }
    /// The frame is a signal frame: its caller's pc is exact.
    #[inline(always)]
    pub fn signal(&self) -> bool {
        self.flags & SIGNAL != 0
    }
    /// Index of the module in its set.
    #[inline(always)]
    pub fn module(&self) -> usize {
        usize::from(self.module)
    }

    /// The rule, unpacked.
    #[inline(always)]
    pub fn rule(&self) -> Rule {
        let f = self.flags;
        match f & KIND_MASK {
            KIND_SIMPLE => Rule::Simple(SimpleRule {
                cfa_from_bp: f & CFA_FROM_BP != 0,
                cfa_offset: self.a,
                ra_offset: self.b,
                bp: if f & BP_SAVED != 0 { BpRule::AtCfa(self.c) } else { BpRule::Same },
                others_unchanged: f & OTHERS_UNCHANGED != 0,
            }),
            KIND_OUTERMOST => Rule::Outermost,
            KIND_COMPLEX => Rule::Complex {
                source: if f & DEBUG_FRAME != 0 { CfiSource::DebugFrame } else { CfiSource::EhFrame },
                fde_offset: self.a as u32,
            },
            _ => Rule::None,
        }
    }
}

/// What a walker keeps between frames and walks: the rules it found, by
/// pc, and gimli's unwind context for complex rows. Owned by the caller,
/// so that a walk does not allocate.
pub struct CfiCache {
    ctx: UnwindContext<usize>,
    /// The module set the entries belong to (0: none yet).
    generation: u64,
    /// `SETS` sets of `WAYS` entries: the few pcs of a walk that share a
    /// set do not evict each other.
    entries: Box<[CachedRule]>,
    /// Per set, the way the next new rule replaces (round robin).
    next_way: [u8; SETS],
}

impl Default for CfiCache {
    fn default() -> Self {
        Self::new()
    }
}

impl CfiCache {
    /// An empty cache.
    pub fn new() -> Self {
        CfiCache {
            ctx: UnwindContext::new(),
            generation: 0,
            entries: vec![CachedRule::default(); SETS * WAYS].into_boxed_slice(),
            next_way: [0; SETS],
        }
    }

    pub(crate) fn unwind_context(&mut self) -> &mut UnwindContext<usize> {
        &mut self.ctx
    }

    #[inline(always)]
    fn set(pc: u64) -> usize {
        (pc.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 57) as usize % SETS
    }

    /// The rule found before for a frame at `pc` (`exact`, or a return
    /// address) in module set `generation`.
    #[inline(always)]
    pub fn rule(&self, pc: u64, exact: bool, generation: u64) -> Option<&CachedRule> {
        if generation != self.generation {
            return None;
        }
        let set = Self::set(pc) * WAYS;
        let exact = if exact { EXACT } else { 0 };
        self.entries
            .get(set..set + WAYS)?
            .iter()
            .find(|e| e.pc == pc && e.flags & EXACT == exact && e.flags & KIND_MASK != 0)
    }

    /// Keeps a rule for [`CfiCache::rule`] and returns it packed (None for
    /// `Rule::None`, or a module index past u16). Rules of another module
    /// set replace all the entries.
    #[inline]
    pub fn remember(
        &mut self,
        pc: u64,
        exact: bool,
        generation: u64,
        rule: Rule,
        signal: bool,
        module: usize,
    ) -> Option<CachedRule> {
        let entry = CachedRule::pack(pc, exact, rule, signal, u16::try_from(module).ok()?)?;
        if generation != self.generation {
            // A new cache is empty already.
            if self.generation != 0 {
                self.entries.fill(CachedRule::default());
            }
            self.generation = generation;
        }
        let set = Self::set(pc);
        let way = usize::from(self.next_way[set]) % WAYS;
        self.next_way[set] = ((way + 1) % WAYS) as u8;
        self.entries[set * WAYS + way] = entry;
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_round_trip_and_sets_keep_four() {
        let rules = [
            Rule::Outermost,
            Rule::Complex { source: CfiSource::DebugFrame, fde_offset: 0xdead_beef },
            Rule::Complex { source: CfiSource::EhFrame, fde_offset: 7 },
            Rule::Simple(SimpleRule {
                cfa_from_bp: true,
                cfa_offset: -16,
                ra_offset: -8,
                bp: BpRule::AtCfa(-16),
                others_unchanged: false,
            }),
            Rule::Simple(SimpleRule {
                cfa_from_bp: false,
                cfa_offset: i32::MAX,
                ra_offset: i32::MIN,
                bp: BpRule::Same,
                others_unchanged: true,
            }),
        ];
        let mut c = CfiCache::new();
        // Five pcs in one set: the first is evicted, the last four stay.
        let mut pcs = Vec::new();
        let mut pc = 0x40_0000u64;
        while pcs.len() < 5 {
            if CfiCache::set(pc) == CfiCache::set(0x40_0000) {
                pcs.push(pc);
            }
            pc += 1;
        }
        for (i, (&pc, &rule)) in pcs.iter().zip(&rules).enumerate() {
            assert!(c.remember(pc, i % 2 == 0, 9, rule, i == 3, i).is_some());
        }
        assert_eq!(c.rule(pcs[0], true, 9), None);
        for (i, (&pc, &rule)) in pcs.iter().zip(&rules).enumerate().skip(1) {
            let e = *c.rule(pc, i % 2 == 0, 9).unwrap();
            assert_eq!((e.rule(), e.signal(), e.module()), (rule, i == 3, i), "{i}");
            assert_eq!(e.is_simple(), matches!(rule, Rule::Simple(_)));
            assert_eq!(c.rule(pc, i % 2 != 0, 9), None, "exactness is part of the key");
            assert_eq!(c.rule(pc, i % 2 == 0, 10), None, "another module set");
        }
        // Another module set empties the cache.
        c.remember(1, true, 10, Rule::Outermost, false, 0);
        assert_eq!(c.rule(pcs[4], true, 9), None);
        assert_eq!(c.rule(1, true, 10).map(|e| e.rule()), Some(Rule::Outermost));
        // Nothing to keep for None, or for a module index past u16.
        assert!(c.remember(2, true, 10, Rule::None, false, 0).is_none());
        assert!(c.remember(3, true, 10, Rule::Outermost, false, 1 << 20).is_none());
        assert_eq!((c.rule(2, true, 10), c.rule(3, true, 10)), (None, None));
    }
}
