//! Why a livepatch transition stalls: for each task the kernel has not
//! switched yet, the reason `klp_try_switch_task` would give, in its own
//! words, and whether the task can ever switch on its own.

use serde::Serialize;

use super::check::TaskReport;
use super::klp::KlpTarget;
use crate::symbols::Symbolizer;
use crate::verdict::Verdict;

/// One task, seen from the transition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StallInfo {
    /// `patch_state` already equals the target: the kernel switched it
    /// and will not look at it again.
    pub switched: bool,
    /// What the kernel says when it retries this task ("is sleeping on
    /// function X", "has an unreliable stack", "is running"), or "would
    /// switch" for a task that passes the check; None once switched.
    pub kernel_reason: Option<String>,
    /// Which code of the patched function is on the stack.
    pub version: Option<&'static str>,
    /// Why the task will never switch by itself, when that can be told.
    pub never_converges: Option<&'static str>,
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
