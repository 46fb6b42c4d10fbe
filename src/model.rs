//! Consistency models of the live-patching literature, evaluated over one
//! snapshot of every thread: LEAVE_{FUNCTION, PATCHED_SET, KERNEL} ×
//! SWITCH_{FUNCTION, THREAD, KERNEL}.
//!
//! - Switch unit: SWITCH_FUNCTION switches one function across all threads,
//!   SWITCH_THREAD one thread across all functions, SWITCH_KERNEL
//!   everything at once.
//! - A (thread, function) pair is clear under LEAVE_FUNCTION when that
//!   function is not on the thread's stack, under LEAVE_PATCHED_SET when no
//!   function of the set is, under LEAVE_KERNEL when the thread has no
//!   kernel frames at all.
//! - A unit is ready when all its pairs are clear and every stack involved
//!   was read reliably. A running thread's stack was not read.
//!
//! Linux livepatch is LEAVE_PATCHED_SET + SWITCH_THREAD (the default);
//! kpatch's stop_machine is LEAVE_PATCHED_SET + SWITCH_KERNEL; kGraft is
//! LEAVE_KERNEL + SWITCH_THREAD.
//!
//! Which combinations decide alike (same ready/not-ready answer for the
//! snapshot, though units are shaped differently):
//! - LEAVE_FUNCTION+SWITCH_THREAD = LEAVE_PATCHED_SET+SWITCH_THREAD: a
//!   thread's unit holds all functions, so "each function off its stack"
//!   is "the set off its stack".
//! - LEAVE_FUNCTION+SWITCH_KERNEL = LEAVE_PATCHED_SET+SWITCH_KERNEL =
//!   LEAVE_PATCHED_SET+SWITCH_FUNCTION (every function unit then waits for
//!   the whole set to leave every stack).
//! - LEAVE_KERNEL+SWITCH_FUNCTION = LEAVE_KERNEL+SWITCH_KERNEL: every
//!   thread must be out of the kernel.
//! - LEAVE_FUNCTION+SWITCH_FUNCTION and LEAVE_KERNEL+SWITCH_THREAD stand
//!   alone.

use std::fmt;
use std::str::FromStr;

use crate::verdict::PatchHit;

/// The LEAVE_ half of a model: what a thread must have left for a
/// (thread, function) pair to be clear.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Leave {
    /// LEAVE_FUNCTION: that function is not on the thread's stack.
    Function,
    /// LEAVE_PATCHED_SET: no function of the patched set is on the thread's stack.
    PatchedSet,
    /// LEAVE_KERNEL: the thread has no kernel frames at all.
    Kernel,
}

/// The SWITCH_ half of a model: what switches at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Switch {
    /// SWITCH_FUNCTION: one function across all threads.
    Function,
    /// SWITCH_THREAD: one thread across all functions.
    Thread,
    /// SWITCH_KERNEL: everything at once.
    Kernel,
}

/// A consistency model; displays as, and parses from, `LEAVE_…,SWITCH_…`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Model {
    /// When a (thread, function) pair is clear.
    pub leave: Leave,
    /// What a unit switches.
    pub switch: Switch,
}

impl Model {
    /// Linux livepatch.
    pub const LIVEPATCH: Model = Model { leave: Leave::PatchedSet, switch: Switch::Thread };
    /// kpatch with stop_machine.
    pub const KPATCH: Model = Model { leave: Leave::PatchedSet, switch: Switch::Kernel };
    /// kGraft.
    pub const KGRAFT: Model = Model { leave: Leave::Kernel, switch: Switch::Thread };

    /// All nine combinations, LEAVE_ outer, SWITCH_ inner.
    pub fn all() -> impl Iterator<Item = Model> {
        [Leave::Function, Leave::PatchedSet, Leave::Kernel].into_iter().flat_map(|leave| {
            [Switch::Function, Switch::Thread, Switch::Kernel].into_iter().map(move |switch| Model { leave, switch })
        })
    }
}

impl Default for Model {
    fn default() -> Self {
        Model::LIVEPATCH
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let leave = match self.leave {
            Leave::Function => "LEAVE_FUNCTION",
            Leave::PatchedSet => "LEAVE_PATCHED_SET",
            Leave::Kernel => "LEAVE_KERNEL",
        };
        let switch = match self.switch {
            Switch::Function => "SWITCH_FUNCTION",
            Switch::Thread => "SWITCH_THREAD",
            Switch::Kernel => "SWITCH_KERNEL",
        };
        write!(f, "{leave},{switch}")
    }
}

/// A string that names no consistency model (the string is kept).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown consistency model {0:?}: expected LEAVE_{{FUNCTION,PATCHED_SET,KERNEL}},SWITCH_{{FUNCTION,THREAD,KERNEL}} or livepatch, kpatch, kgraft"
)]
pub struct ModelParseError(pub String);

impl FromStr for Model {
    type Err = ModelParseError;

    /// Accepts "LEAVE_PATCHED_SET,SWITCH_THREAD" (either order, any case,
    /// `+` or `,`) and the names livepatch, kpatch, kgraft.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ModelParseError(s.to_string());
        match s.to_ascii_lowercase().as_str() {
            "livepatch" => return Ok(Model::LIVEPATCH),
            "kpatch" => return Ok(Model::KPATCH),
            "kgraft" => return Ok(Model::KGRAFT),
            _ => {}
        }
        let (mut leave, mut switch) = (None, None);
        for part in s.split([',', '+']).map(|p| p.trim().to_ascii_uppercase()) {
            match part.as_str() {
                "LEAVE_FUNCTION" => leave = Some(Leave::Function),
                "LEAVE_PATCHED_SET" => leave = Some(Leave::PatchedSet),
                "LEAVE_KERNEL" => leave = Some(Leave::Kernel),
                "SWITCH_FUNCTION" => switch = Some(Switch::Function),
                "SWITCH_THREAD" => switch = Some(Switch::Thread),
                "SWITCH_KERNEL" => switch = Some(Switch::Kernel),
                _ => return Err(err()),
            }
        }
        Ok(Model { leave: leave.ok_or_else(err)?, switch: switch.ok_or_else(err)? })
    }
}

/// What the snapshot says about one thread.
#[derive(Clone, Copy, Debug)]
pub struct ThreadFacts<'a> {
    /// On a CPU and not stopped: its stack was not read.
    pub running: bool,
    /// The walk was reliable.
    pub reliable: bool,
    /// It has kernel frames (false only for a thread seen in user mode).
    pub in_kernel: bool,
    /// Patched functions on its stack.
    pub hits: &'a [PatchHit],
}

/// Why a unit is not ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocker {
    /// Thread `thread` has patched function `function` on its stack.
    OnStack {
        /// Index into the snapshot's threads.
        thread: usize,
        /// Index into [`PatchSet::funcs`](crate::patchset::PatchSet::funcs).
        function: usize,
        /// Index into the thread's frames.
        frame: usize,
    },
    /// The thread's stack was not read reliably.
    Unreliable {
        /// Index into the snapshot's threads.
        thread: usize,
    },
    /// The thread is running and its stack was not read.
    Running {
        /// Index into the snapshot's threads.
        thread: usize,
    },
    /// LEAVE_KERNEL: the thread is in the kernel.
    InKernel {
        /// Index into the snapshot's threads.
        thread: usize,
    },
}

/// What switches together, as the model's [`Switch`] shapes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// One patched function (index into the set) across all threads.
    Function(usize),
    /// One thread (index into the snapshot) across all functions.
    Thread(usize),
    /// Every thread and function at once.
    Kernel,
}

/// One unit's evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitResult {
    /// Which unit.
    pub unit: Unit,
    /// No blockers: the unit may switch now.
    pub ready: bool,
    /// What keeps it from switching, in thread order; empty when ready.
    pub blockers: Vec<Blocker>,
}

/// Blockers of thread `t` for the pair (t, function), or (t, any function)
/// when `function` is None.
fn pair_blockers(model: Model, t: usize, facts: &ThreadFacts<'_>, function: Option<usize>, out: &mut Vec<Blocker>) {
    if facts.running {
        out.push(Blocker::Running { thread: t });
        return;
    }
    if !facts.reliable {
        out.push(Blocker::Unreliable { thread: t });
        return;
    }
    match model.leave {
        Leave::Kernel => {
            if facts.in_kernel {
                out.push(Blocker::InKernel { thread: t });
            }
        }
        Leave::PatchedSet => {
            out.extend(facts.hits.iter().map(|h| Blocker::OnStack { thread: t, function: h.func, frame: h.frame }))
        }
        Leave::Function => {
            out.extend(facts.hits.iter().filter(|h| function.is_none_or(|f| f == h.func)).map(|h| Blocker::OnStack {
                thread: t,
                function: h.func,
                frame: h.frame,
            }))
        }
    }
}

/// A model evaluated over one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelOutcome {
    /// The model evaluated.
    pub model: Model,
    /// One per thread, one per function, or a single kernel unit, as the
    /// model's [`Switch`] says; in index order.
    pub units: Vec<UnitResult>,
}

impl ModelOutcome {
    /// Every unit may switch now.
    pub fn ready(&self) -> bool {
        self.units.iter().all(|u| u.ready)
    }
}

/// Each of `models` over one snapshot, evaluated once (front-ends only
/// format the outcomes).
pub fn evaluate_all(models: &[Model], threads: &[ThreadFacts<'_>], functions: usize) -> Vec<ModelOutcome> {
    models.iter().map(|&model| ModelOutcome { model, units: evaluate(model, threads, functions) }).collect()
}

/// Evaluates `model` over a snapshot of `threads` and a set of `functions`
/// patched functions.
pub fn evaluate(model: Model, threads: &[ThreadFacts<'_>], functions: usize) -> Vec<UnitResult> {
    let unit = |unit, blockers: Vec<Blocker>| UnitResult { unit, ready: blockers.is_empty(), blockers };
    match model.switch {
        Switch::Thread => threads
            .iter()
            .enumerate()
            .map(|(t, facts)| {
                let mut b = Vec::new();
                pair_blockers(model, t, facts, None, &mut b);
                unit(Unit::Thread(t), b)
            })
            .collect(),
        Switch::Function => (0..functions)
            .map(|f| {
                let mut b = Vec::new();
                for (t, facts) in threads.iter().enumerate() {
                    pair_blockers(model, t, facts, Some(f), &mut b);
                }
                unit(Unit::Function(f), b)
            })
            .collect(),
        Switch::Kernel => {
            let mut b = Vec::new();
            for (t, facts) in threads.iter().enumerate() {
                pair_blockers(model, t, facts, None, &mut b);
            }
            vec![unit(Unit::Kernel, b)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(func: usize, frame: usize) -> PatchHit {
        PatchHit { func, frame, pc: 0x1000 + func as u64, past_unreliable: false, inlined: false }
    }

    fn facts(hits: &[PatchHit]) -> ThreadFacts<'_> {
        ThreadFacts { running: false, reliable: true, in_kernel: true, hits }
    }

    fn ready(model: Model, threads: &[ThreadFacts<'_>], functions: usize) -> Vec<bool> {
        evaluate(model, threads, functions).iter().map(|u| u.ready).collect()
    }

    #[test]
    fn parse_and_print() {
        let m: Model = "LEAVE_KERNEL,SWITCH_THREAD".parse().unwrap();
        assert_eq!(m, Model::KGRAFT);
        assert_eq!("switch_kernel+leave_patched_set".parse::<Model>().unwrap(), Model::KPATCH);
        assert_eq!("livepatch".parse::<Model>().unwrap(), Model::default());
        assert!("LEAVE_KERNEL".parse::<Model>().is_err());
        assert!("LEAVE_X,SWITCH_THREAD".parse::<Model>().is_err());
        for m in Model::all() {
            assert_eq!(m.to_string().parse::<Model>().unwrap(), m);
        }
        assert_eq!(Model::all().count(), 9);
    }

    /// Thread 0 sleeps in function 0; thread 1 is clean and in the kernel;
    /// thread 2 is in user mode; functions 0 and 1.
    fn snapshot<'a>(h0: &'a [PatchHit]) -> Vec<ThreadFacts<'a>> {
        vec![facts(h0), facts(&[]), ThreadFacts { in_kernel: false, ..facts(&[]) }]
    }

    #[test]
    fn each_model() {
        let h0 = [hit(0, 3)];
        let s = snapshot(&h0);
        let m = |l, sw| Model { leave: l, switch: sw };
        use Leave as L;
        use Switch as S;
        // LEAVE_FUNCTION: function 1 is on no stack, so its unit is ready.
        assert_eq!(ready(m(L::Function, S::Function), &s, 2), [false, true]);
        assert_eq!(ready(m(L::Function, S::Thread), &s, 2), [false, true, true]);
        assert_eq!(ready(m(L::Function, S::Kernel), &s, 2), [false]);
        // LEAVE_PATCHED_SET: function 1's unit waits for function 0 too.
        assert_eq!(ready(m(L::PatchedSet, S::Function), &s, 2), [false, false]);
        assert_eq!(ready(m(L::PatchedSet, S::Thread), &s, 2), [false, true, true]);
        assert_eq!(ready(m(L::PatchedSet, S::Kernel), &s, 2), [false]);
        // LEAVE_KERNEL: only the user-mode thread is clear.
        assert_eq!(ready(m(L::Kernel, S::Function), &s, 2), [false, false]);
        assert_eq!(ready(m(L::Kernel, S::Thread), &s, 2), [false, false, true]);
        assert_eq!(ready(m(L::Kernel, S::Kernel), &s, 2), [false]);

        let units = evaluate(m(L::PatchedSet, S::Function), &s, 2);
        assert_eq!(units[1].blockers, [Blocker::OnStack { thread: 0, function: 0, frame: 3 }]);
        let units = evaluate(m(L::Function, S::Function), &s, 2);
        assert!(units[1].blockers.is_empty());
    }

    #[test]
    fn unreliable_and_running_block_every_model() {
        for bad in [
            ThreadFacts { reliable: false, in_kernel: false, ..facts(&[]) },
            ThreadFacts { running: true, in_kernel: false, ..facts(&[]) },
        ] {
            let s = [facts(&[]), bad];
            for model in Model::all() {
                let units = evaluate(model, &s, 1);
                let blocked_by_1 = units.iter().any(|u| {
                    u.blockers
                        .iter()
                        .any(|b| matches!(b, Blocker::Unreliable { thread: 1 } | Blocker::Running { thread: 1 }))
                });
                assert!(blocked_by_1, "{model}");
                assert!(units.iter().any(|u| !u.ready), "{model}");
            }
        }
    }

    #[test]
    fn documented_coincidences_hold() {
        // Random-ish snapshots: the documented classes decide alike.
        let hits: Vec<Vec<PatchHit>> =
            (0..6).map(|t| (0..3).filter(|f| (t * 7 + f * 3) % 5 == 0).map(|f| hit(f, 1)).collect()).collect();
        for mask in 0u32..64 {
            let s: Vec<ThreadFacts<'_>> = hits
                .iter()
                .enumerate()
                .filter(|(t, _)| mask & (1 << t) != 0)
                .map(|(t, h)| ThreadFacts { in_kernel: t % 2 == 0, ..facts(h) })
                .collect();
            let all_ready = |m: Model| evaluate(m, &s, 3).iter().all(|u| u.ready);
            let m = |l, sw| Model { leave: l, switch: sw };
            use Leave as L;
            use Switch as S;
            assert_eq!(ready(m(L::Function, S::Thread), &s, 3), ready(m(L::PatchedSet, S::Thread), &s, 3));
            assert_eq!(all_ready(m(L::Function, S::Kernel)), all_ready(m(L::PatchedSet, S::Kernel)));
            let psf = ready(m(L::PatchedSet, S::Function), &s, 3);
            assert!(psf.iter().all(|&r| r == all_ready(m(L::PatchedSet, S::Kernel))));
            let ksf = ready(m(L::Kernel, S::Function), &s, 3);
            assert!(ksf.iter().all(|&r| r == all_ready(m(L::Kernel, S::Kernel))));
        }
    }
}
