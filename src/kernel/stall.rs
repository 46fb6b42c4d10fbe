//! Why a livepatch transition stalls: for each task the kernel has not
//! switched yet, the reason `klp_try_switch_task` would give, in its own
//! words, and whether the task can ever switch on its own.

use serde::Serialize;

use super::check::TaskReport;
use super::klp::KlpTarget;
use crate::symbols::Symbolizer;
use crate::verdict::Verdict;

/// One task, seen from the transition (fields in the JSON report's order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StallInfo {
    /// What the kernel says when it retries this task ("is sleeping on
    /// function X", "has an unreliable stack", "is running"), or "would
    /// switch" for a task that passes the check; None once switched.
    pub kernel_reason: Option<String>,
    /// Why the task will never switch by itself, when that can be told.
    pub never_converges: Option<&'static str>,
    /// `patch_state` already equals the target: the kernel switched it
    /// and will not look at it again.
    pub switched: bool,
    /// Which code of the patched function is on the stack.
    pub version: Option<&'static str>,
}

/// The task's place in the transition toward `target`.
pub fn stall_info(r: &TaskReport<'_>, target: KlpTarget, symbols: &Symbolizer) -> StallInfo {
    let switched = r.task.patch_state.is_some_and(|s| i64::from(s) == target.patch_state());
    if switched {
        return StallInfo { switched, kernel_reason: None, version: None, never_converges: None };
    }
    let (kernel_reason, version) = match r.verdict {
        Verdict::Switchable => ("would switch at the next try".to_string(), None),
        Verdict::Blocked { function, .. } => {
            (format!("is sleeping on function {}", function.function), Some(function.version.name()))
        }
        Verdict::Unreliable { .. } => ("has an unreliable stack".to_string(), None),
        Verdict::Running => ("is running".to_string(), None),
    };
    StallInfo { switched, kernel_reason: Some(kernel_reason), version, never_converges: never_converges(r, symbols) }
}

/// A blocked task that cannot leave the patched function: the idle loop,
/// or a kthread whose thread function itself is patched (its loop never
/// returns into `kthread()`, and fake signals only wake it inside it).
fn never_converges(r: &TaskReport<'_>, symbols: &Symbolizer) -> Option<&'static str> {
    let Verdict::Blocked { frame, .. } = r.verdict else { return None };
    if r.task.idle {
        return Some("an idle task: its loop never returns");
    }
    if !r.task.kthread() {
        return None;
    }
    // The frame after the patched one is its caller: kthread() itself means
    // the patched function is the thread's main function.
    let caller = r.frames.get(frame + 1)?;
    let name = symbols.lookup(caller.pc)?.name;
    (name == "kthread").then_some("a kthread whose main function is patched: it never returns from it")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::tasks::{PF_KTHREAD, TaskInfo};
    use crate::patchset::PatchSet;
    use crate::symbols::symbols_from_list;
    use crate::walk::{CleanEnd, Frame, FrameKind, Reliability};

    const SCHEDULE: u64 = 0x1000;
    const LOOP: u64 = 0x2000;
    const KTHREAD: u64 = 0x3000;
    const WORKER: u64 = 0x4000;

    fn symbols() -> Symbolizer {
        let mut s = Symbolizer::new();
        s.add(symbols_from_list(
            "vmlinux",
            [
                ("schedule", SCHEDULE, 0x100),
                ("my_loop", LOOP, 0x100),
                ("kthread", KTHREAD, 0x100),
                ("worker", WORKER, 0x100),
            ],
        ));
        s
    }

    fn task(flags: u64, idle: bool, patch_state: i32) -> TaskInfo {
        TaskInfo {
            addr: 0,
            pid: 7,
            tgid: 7,
            comm: "t".into(),
            state: 1,
            exit_state: 0,
            flags,
            on_cpu: false,
            cpu: 0,
            stack: 0,
            thread_sp: 0,
            patch_state: Some(patch_state),
            idle,
            switches: None,
            unreadable: None,
        }
    }

    fn frames(pcs: &[u64]) -> Vec<Frame> {
        pcs.iter().map(|&pc| Frame { pc, sp: 0, kind: FrameKind::Call, kernel_regs: false, reliable: true }).collect()
    }

    fn report<'s>(set: &'s PatchSet, t: TaskInfo, pcs: &[u64], blocked_at: Option<usize>) -> TaskReport<'s> {
        let verdict = match blocked_at {
            Some(frame) => Verdict::Blocked { function: &set.funcs()[0], frame, pc: pcs[frame], inlined: false },
            None => Verdict::Switchable,
        };
        TaskReport {
            task: t,
            frames: frames(pcs),
            reliability: Some(Reliability::Reliable(CleanEnd::EndOfStack)),
            hits: vec![],
            verdict,
        }
    }

    #[test]
    fn kernel_words_and_predictions() {
        let set = PatchSet::from_ranges([("vmlinux", "my_loop", LOOP, 0x100)]).unwrap();
        let s = symbols();
        // A kthread whose main function is the patched loop never converges.
        let r = report(&set, task(PF_KTHREAD, false, 0), &[SCHEDULE + 8, LOOP + 0x10, KTHREAD + 0x20], Some(1));
        let info = stall_info(&r, KlpTarget::Patched, &s);
        assert_eq!(info.kernel_reason.as_deref(), Some("is sleeping on function my_loop"));
        assert_eq!(info.version, Some("original"));
        assert!(info.never_converges.is_some_and(|n| n.contains("kthread")));
        // Called from another function: it may return.
        let r =
            report(&set, task(PF_KTHREAD, false, 0), &[SCHEDULE + 8, LOOP + 0x10, WORKER + 4, KTHREAD + 0x20], Some(1));
        assert_eq!(stall_info(&r, KlpTarget::Patched, &s).never_converges, None);
        // A user task: no prediction; an idle task: never.
        let r = report(&set, task(0, false, 0), &[SCHEDULE + 8, LOOP + 0x10, KTHREAD + 0x20], Some(1));
        assert_eq!(stall_info(&r, KlpTarget::Patched, &s).never_converges, None);
        let r = report(&set, task(PF_KTHREAD, true, 0), &[LOOP + 0x10], Some(0));
        assert!(stall_info(&r, KlpTarget::Patched, &s).never_converges.is_some_and(|n| n.contains("idle")));
        // Already switched (patch_state == target): nothing to say.
        let r = report(&set, task(0, false, 1), &[SCHEDULE + 8], None);
        let info = stall_info(&r, KlpTarget::Patched, &s);
        assert!(info.switched && info.kernel_reason.is_none());
        // Unpatching: 1 is the state not yet switched.
        let r = report(&set, task(0, false, 1), &[SCHEDULE + 8], None);
        let info = stall_info(&r, KlpTarget::Unpatched, &s);
        assert_eq!((info.switched, info.kernel_reason.as_deref()), (false, Some("would switch at the next try")));
    }
}
