//! The per-thread decision: may this thread switch now?
//!
//! Precedence is the kernel's (`klp_check_stack`): an unreliable trace is
//! Unreliable whatever it holds; only a reliable trace can be Blocked or
//! Switchable. Every patched frame found is still reported.
//!
//! [`judge`] is the one place the rule lives: the vmcore, live, process and
//! C API checks all call it with what their walk gave.

use crate::patchset::{PatchSet, PatchedFunc};
use crate::walk::{Frame, Reliability, UnreliableReason};

/// A patched function found on a stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchHit {
    /// Index into [`PatchSet::funcs`].
    pub func: usize,
    /// Index into the thread's frames.
    pub frame: usize,
    /// That frame's pc (for a caller's frame, the return address).
    pub pc: u64,
    /// The frame lies at or beyond the point where the walk lost trust.
    pub past_unreliable: bool,
    /// The patched function is not this frame's own function but a copy
    /// inlined into it at this pc: patched code is executing all the same.
    pub inlined: bool,
}

/// Who knows which functions were inlined where (DWARF, through addr2line).
pub trait InlineFrames {
    /// Calls `found(object, function)` for each function inlined at `pc`,
    /// innermost first, not counting the enclosing physical function.
    fn inlined_at(&mut self, pc: u64, found: &mut dyn FnMut(&str, &str));
}

/// Whether one thread may switch to the patched code now, and if not, why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<'set> {
    /// A reliable trace with no patched function: the thread may switch.
    Switchable,
    /// A reliable trace with a patched function on it (livepatch:
    /// "is sleeping on function"). The first function of the set, in set
    /// order, that is on the stack; at its innermost frame.
    Blocked {
        /// The patched function, an entry of the set.
        function: &'set PatchedFunc,
        /// Index into the thread's frames.
        frame: usize,
        /// That frame's pc.
        pc: u64,
        /// The function is there only as a copy inlined into the frame's
        /// own function (see [`PatchHit::inlined`]).
        inlined: bool,
    },
    /// The trace cannot be trusted (livepatch: "has an unreliable stack").
    Unreliable {
        /// The first check that failed.
        reason: UnreliableReason,
        /// Index of the frame at which trust was lost; may equal the frame count.
        frame: usize,
    },
    /// On a CPU and not stopped: the kernel does not check it (-EBUSY).
    Running,
}

impl Verdict<'_> {
    /// The verdict's lower-case name, as reports print it: "switchable",
    /// "blocked", "unreliable" or "running".
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Switchable => "switchable",
            Verdict::Blocked { .. } => "blocked",
            Verdict::Unreliable { .. } => "unreliable",
            Verdict::Running => "running",
        }
    }

    /// True for [`Verdict::Switchable`].
    pub fn is_switchable(&self) -> bool {
        matches!(self, Verdict::Switchable)
    }
}

/// What a walk gave for one thread, as the judgement needs it.
#[derive(Clone, Copy, Debug)]
pub struct Walked<'a> {
    /// The frames read, innermost first (empty when not walked).
    pub frames: &'a [Frame],
    /// How far they can be trusted; None when the thread was not walked
    /// (no registers: a running task without a CPU note, a thread that
    /// could not be stopped).
    pub reliability: Option<&'a Reliability>,
    /// The thread was on a CPU and not stopped: the kernel does not check
    /// it (-EBUSY), whatever its stack says.
    pub running: bool,
}

/// The verdict for one thread, with every patched frame into `hits`
/// (cleared first; reuse it across threads to avoid allocation). Patched
/// frames are looked up by address in `set` and, when `inline` is given
/// (DWARF of the patched objects), as copies inlined into other functions.
/// A running thread's hits are kept: they say what it was running.
pub fn judge<'set>(
    walked: Walked<'_>,
    set: &'set PatchSet,
    inline: Option<&mut dyn InlineFrames>,
    hits: &mut Vec<PatchHit>,
) -> Verdict<'set> {
    hits.clear();
    let Some(reliability) = walked.reliability else { return Verdict::Running };
    find_hits(walked.frames, reliability, set, hits);
    if let Some(inline) = inline {
        find_inline_hits(walked.frames, reliability, set, inline, hits);
    }
    if walked.running {
        return Verdict::Running;
    }
    decide(reliability, set, hits)
}

/// Collects every patched frame into `hits` (cleared first).
fn find_hits(frames: &[Frame], reliability: &Reliability, set: &PatchSet, hits: &mut Vec<PatchHit>) {
    hits.clear();
    let trusted_until = match reliability {
        Reliability::Reliable(_) => usize::MAX,
        Reliability::Unreliable { frame, .. } => *frame,
    };
    for (i, f) in frames.iter().enumerate() {
        for func in set.find_all(f.pc) {
            hits.push(PatchHit { func, frame: i, pc: f.pc, past_unreliable: i >= trusted_until, inlined: false });
        }
    }
}

/// Adds a hit for every patched function inlined into a frame's function
/// at that frame's pc (looked up at pc-1 for return addresses, as the call
/// belongs to the instruction before).
fn find_inline_hits<I: InlineFrames + ?Sized>(
    frames: &[Frame],
    reliability: &Reliability,
    set: &PatchSet,
    inline: &mut I,
    hits: &mut Vec<PatchHit>,
) {
    let trusted_until = match reliability {
        Reliability::Reliable(_) => usize::MAX,
        Reliability::Unreliable { frame, .. } => *frame,
    };
    for (i, f) in frames.iter().enumerate() {
        let exact = i == 0 || matches!(f.kind, crate::walk::FrameKind::Regs | crate::walk::FrameKind::Iret);
        let probe = if exact { f.pc } else { f.pc.wrapping_sub(1) };
        inline.inlined_at(probe, &mut |object, function| {
            for (func, p) in set.funcs().iter().enumerate() {
                if p.function == function && p.object == object {
                    hits.push(PatchHit {
                        func,
                        frame: i,
                        pc: f.pc,
                        past_unreliable: i >= trusted_until,
                        inlined: true,
                    });
                }
            }
        });
    }
}

/// The verdict for a thread that was walked, from its hits.
fn decide<'set>(reliability: &Reliability, set: &'set PatchSet, hits: &[PatchHit]) -> Verdict<'set> {
    if let Reliability::Unreliable { reason, frame } = reliability {
        return Verdict::Unreliable { reason: *reason, frame: *frame };
    }
    // The kernel checks function by function, each against every entry.
    let first = hits.iter().filter(|h| !h.past_unreliable).min_by_key(|h| (h.func, h.frame, h.inlined));
    match first.and_then(|h| set.funcs().get(h.func).map(|f| (f, h))) {
        Some((function, h)) => Verdict::Blocked { function, frame: h.frame, pc: h.pc, inlined: h.inlined },
        None => Verdict::Switchable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pipe_read inlined into whatever function holds 0x5000..0x5100.
    struct FakeInline;
    impl InlineFrames for FakeInline {
        fn inlined_at(&mut self, pc: u64, found: &mut dyn FnMut(&str, &str)) {
            if (0x5000..0x5100).contains(&pc) {
                found("vmlinux", "pipe_read");
            }
        }
    }

    #[test]
    fn inlined_copies_block() {
        let set = set();
        let ok = Reliability::Reliable(CleanEnd::EndOfStack);
        let mut hits = Vec::new();
        // 0x5000 as a return address: probed at 0x4fff, outside the copy.
        let f = frames(&[0x500, 0x5000]);
        find_hits(&f, &ok, &set, &mut hits);
        find_inline_hits(&f, &ok, &set, &mut FakeInline, &mut hits);
        assert_eq!(decide(&ok, &set, &hits), Verdict::Switchable);
        let f = frames(&[0x500, 0x5001]);
        find_hits(&f, &ok, &set, &mut hits);
        find_inline_hits(&f, &ok, &set, &mut FakeInline, &mut hits);
        match decide(&ok, &set, &hits) {
            Verdict::Blocked { function, frame, inlined, .. } => {
                assert_eq!((function.function.as_str(), frame, inlined), ("pipe_read", 1, true))
            }
            v => panic!("{v:?}"),
        }
    }
    use crate::walk::{CleanEnd, FrameKind};

    #[test]
    fn judge_keeps_a_running_threads_hits_and_checks_inlines_when_given() {
        let set = set();
        let ok = Reliability::Reliable(CleanEnd::EndOfStack);
        let f = frames(&[0x500, 0x1010, 0x5001]);
        let mut hits = vec![PatchHit { func: 9, frame: 9, pc: 9, past_unreliable: false, inlined: false }];
        let walked = Walked { frames: &f, reliability: Some(&ok), running: true };
        assert_eq!(judge(walked, &set, Some(&mut FakeInline), &mut hits), Verdict::Running);
        let found: Vec<(usize, bool)> = hits.iter().map(|h| (h.frame, h.inlined)).collect();
        assert_eq!(found, [(1, false), (2, true)], "running: what it runs is still told");

        let walked = Walked { frames: &f[..1], reliability: Some(&ok), running: false };
        assert_eq!(judge(walked, &set, Some(&mut FakeInline), &mut hits), Verdict::Switchable);
        assert!(hits.is_empty(), "cleared first");

        // Without DWARF the inlined copy is not seen: only the caller opts in.
        let f = frames(&[0x500, 0x5001]);
        let walked = Walked { frames: &f, reliability: Some(&ok), running: false };
        assert_eq!(judge(walked, &set, None, &mut hits), Verdict::Switchable);
        assert!(matches!(
            judge(walked, &set, Some(&mut FakeInline), &mut hits),
            Verdict::Blocked { inlined: true, .. }
        ));

        // Not walked (no registers): Running, nothing found.
        let walked = Walked { frames: &[], reliability: None, running: false };
        assert_eq!(judge(walked, &set, Some(&mut FakeInline), &mut hits), Verdict::Running);
        assert!(hits.is_empty());
    }

    fn set() -> PatchSet {
        PatchSet::from_ranges([("vmlinux", "do_sys_poll", 0x1000, 0x100), ("vmlinux", "pipe_read", 0x2000, 0x80)])
            .unwrap()
    }

    fn frames(pcs: &[u64]) -> Vec<Frame> {
        pcs.iter().map(|&pc| Frame { pc, sp: 0, kind: FrameKind::Call, kernel_regs: false, reliable: true }).collect()
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
            Verdict::Blocked { function, frame, pc, inlined } => {
                assert_eq!(function.function, "do_sys_poll", "set order decides");
                assert_eq!((frame, pc, inlined), (2, 0x1000, false));
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
