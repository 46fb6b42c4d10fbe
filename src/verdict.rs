//! The per-thread decision: may this thread switch now?
//!
//! Precedence is the kernel's (`klp_check_stack`): an unreliable trace is
//! Unreliable whatever it holds; only a reliable trace can be Blocked or
//! Switchable. Every patched frame found is still reported.

use crate::patchset::{PatchSet, PatchedFunc};
use crate::walk::{Frame, Reliability, UnreliableReason};

/// A patched function found on a stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchHit {
    /// Index into [`PatchSet::funcs`].
    pub func: usize,
    /// Index into the thread's frames.
    pub frame: usize,
    pub pc: u64,
    /// The frame lies at or beyond the point where the walk lost trust.
    pub past_unreliable: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<'set> {
    /// A reliable trace with no patched function: the thread may switch.
    Switchable,
    /// A reliable trace with a patched function on it (livepatch:
    /// "is sleeping on function"). The first function of the set, in set
    /// order, that is on the stack; at its innermost frame.
    Blocked { function: &'set PatchedFunc, frame: usize, pc: u64 },
    /// The trace cannot be trusted (livepatch: "has an unreliable stack").
    Unreliable { reason: UnreliableReason, frame: usize },
    /// On a CPU and not stopped: the kernel does not check it (-EBUSY).
    Running,
}

impl Verdict<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Switchable => "switchable",
            Verdict::Blocked { .. } => "blocked",
            Verdict::Unreliable { .. } => "unreliable",
            Verdict::Running => "running",
        }
    }

    pub fn is_switchable(&self) -> bool {
        matches!(self, Verdict::Switchable)
    }
}

/// Collects every patched frame into `hits` (cleared first; reuse it across
/// threads to avoid allocation).
pub fn find_hits(frames: &[Frame], reliability: &Reliability, set: &PatchSet, hits: &mut Vec<PatchHit>) {
    hits.clear();
    let trusted_until = match reliability {
        Reliability::Reliable(_) => usize::MAX,
        Reliability::Unreliable { frame, .. } => *frame,
    };
    for (i, f) in frames.iter().enumerate() {
        for func in set.find_all(f.pc) {
            hits.push(PatchHit { func, frame: i, pc: f.pc, past_unreliable: i >= trusted_until });
        }
    }
}

/// The verdict for a thread that was walked.
pub fn decide<'set>(reliability: &Reliability, set: &'set PatchSet, hits: &[PatchHit]) -> Verdict<'set> {
    if let Reliability::Unreliable { reason, frame } = reliability {
        return Verdict::Unreliable { reason: *reason, frame: *frame };
    }
    // The kernel checks function by function, each against every entry.
    let first = hits.iter().min_by_key(|h| (h.func, h.frame));
    match first.and_then(|h| set.funcs().get(h.func).map(|f| (f, h))) {
        Some((function, h)) => Verdict::Blocked { function, frame: h.frame, pc: h.pc },
        None => Verdict::Switchable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walk::{CleanEnd, FrameKind};

    fn set() -> PatchSet {
        PatchSet::from_ranges([
            ("vmlinux", "do_sys_poll", 0x1000, 0x100),
            ("vmlinux", "pipe_read", 0x2000, 0x80),
        ])
        .unwrap()
    }

    fn frames(pcs: &[u64]) -> Vec<Frame> {
        pcs.iter()
            .map(|&pc| Frame { pc, sp: 0, kind: FrameKind::Call, kernel_regs: false, reliable: true })
            .collect()
    }

    #[test]
    fn switchable_blocked_unreliable() {
        let set = set();
        let mut hits = Vec::new();
        let ok = Reliability::Reliable(CleanEnd::EndOfStack);

        let f = frames(&[0x500, 0x10ff + 1, 0x3000]);
        find_hits(&f, &ok, &set, &mut hits);
        assert!(hits.is_empty(), "end of range is exclusive");
        assert_eq!(decide(&ok, &set, &hits), Verdict::Switchable);

        let f = frames(&[0x500, 0x2010, 0x1000]);
        find_hits(&f, &ok, &set, &mut hits);
        assert_eq!(hits.len(), 2);
        match decide(&ok, &set, &hits) {
            Verdict::Blocked { function, frame, pc } => {
                assert_eq!(function.function, "do_sys_poll", "set order decides");
                assert_eq!((frame, pc), (2, 0x1000));
            }
            v => panic!("{v:?}"),
        }

        let bad = Reliability::Unreliable { reason: UnreliableReason::NotText { pc: 0x9 }, frame: 1 };
        find_hits(&f, &bad, &set, &mut hits);
        assert_eq!(hits.len(), 2, "hits are still reported");
        assert!(hits.iter().all(|h| h.past_unreliable));
        assert_eq!(
            decide(&bad, &set, &hits),
            Verdict::Unreliable { reason: UnreliableReason::NotText { pc: 0x9 }, frame: 1 }
        );
    }
}
