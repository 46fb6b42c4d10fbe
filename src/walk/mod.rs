//! The reliable walk: frames of one thread plus the first reason, if any,
//! that the trace cannot be trusted.
//!
//! The rules are the kernel's (arch/x86/kernel/stacktrace.c
//! `arch_stack_walk_reliable` over arch/x86/kernel/unwind_orc.c): every
//! return address must be code, every stack access must fall on a known
//! stack, the stack must move upward, the walk must end cleanly, and it may
//! not exceed the frame limit. The unwinder never learns where its bytes
//! came from (dump, live process, C callback).
//!
//! The ORC step lives in `orc_step`; it is kept apart from `orc/`, which
//! only reads tables, because a step needs stack bounds and reliability
//! reasons, which belong to this layer.

mod bounds;
mod cfi_step;
mod orc_step;
mod reason;
mod scan;
pub mod synth;

pub use bounds::{StackBounds, StackKind, StackRange};
pub use cfi_step::{UserModule, UserModules, walk_cfi};
pub use orc_step::walk_orc;
pub use reason::{TrampolineKind, UnreliableReason};
pub use scan::{CALLER_SCAN_BYTES, find_return_slot, walk_orc_past_start};

use crate::arch::x86_64::Regs;

/// How a frame's pc was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// The starting pc (a blocked task's resume address or a CPU's ip).
    Start,
    /// A return address read from the stack.
    Call,
    /// The interrupted ip of a full `pt_regs` frame.
    Regs,
    /// The ip of an iret frame (partial registers).
    Iret,
    /// A return address found by scanning the stack for a call to the
    /// function above, which has no unwind data (see [`walk_orc_past_start`]).
    Scanned,
}

impl FrameKind {
    /// A short stable name: `"start"`, `"call"`, `"regs"`, `"iret"` or `"scanned"`.
    pub fn name(self) -> &'static str {
        match self {
            FrameKind::Start => "start",
            FrameKind::Call => "call",
            FrameKind::Regs => "regs",
            FrameKind::Iret => "iret",
            FrameKind::Scanned => "scanned",
        }
    }
}

/// One frame. `pc` is the innermost ip for frame 0 and a return address
/// (or interrupted ip) for the others, as drgn and gdb print them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The innermost ip for frame 0; a return address or interrupted ip for the others.
    pub pc: u64,
    /// The stack pointer with which `pc` runs in this frame.
    pub sp: u64,
    /// How `pc` was found.
    pub kind: FrameKind,
    /// The pc came from kernel-mode `pt_regs` in mid-stack (an interrupt or
    /// exception in kernel code). ORC walks accept it; frame-pointer walks
    /// do not (see [`KernelRegsPolicy`]).
    pub kernel_regs: bool,
    /// False from the first frame the walk could not vouch for.
    pub reliable: bool,
}

/// What to do with kernel-mode `pt_regs` in mid-stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KernelRegsPolicy {
    /// As the kernel with ORC: accept them (the ORC data covers them).
    #[default]
    Accept,
    /// As the kernel with frame pointers: an interrupt in mid-stack makes
    /// the trace unreliable.
    Reject,
}

/// Limits and policies of a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkConfig {
    /// A trace with this many entries or more is unreliable. The kernel
    /// saves at most 100 (klp_check_stack), and a full buffer is an error.
    pub max_frames: usize,
    /// What to do with kernel-mode `pt_regs` in mid-stack.
    pub kernel_regs: KernelRegsPolicy,
}

/// The kernel's livepatch stack buffer size.
pub const KERNEL_MAX_FRAMES: usize = 100;

impl Default for WalkConfig {
    fn default() -> Self {
        WalkConfig { max_frames: KERNEL_MAX_FRAMES, kernel_regs: KernelRegsPolicy::Accept }
    }
}

/// Where a walk starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkStart {
    /// The starting registers; rip and rsp must be known.
    pub regs: Regs,
    /// The registers are a complete `pt_regs` (a CPU's state from a dump or
    /// a stopped thread), not just ip/sp/bp.
    pub full_regs: bool,
    /// The first ip is not a return address: look it up as is, not ip-1.
    pub signal: bool,
}

impl WalkStart {
    /// A task switched out by the scheduler: ip/sp/bp from its
    /// `inactive_task_frame`. `signal` is true when ip is `ret_from_fork`
    /// (`ret_from_fork_asm` from 6.5), which is entered by a jump.
    pub fn blocked(ip: u64, sp: u64, bp: u64, signal: bool) -> Self {
        WalkStart { regs: Regs::from_ip_sp_bp(ip, sp, bp), full_regs: false, signal }
    }

    /// A task stopped with all its registers (on a CPU in a dump, ptrace).
    pub fn from_regs(regs: Regs) -> Self {
        WalkStart { regs, full_regs: true, signal: true }
    }
}

/// How a reliable walk ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanEnd {
    /// The unwind data marks the outermost frame (END_OF_STACK or end bit).
    EndOfStack,
    /// User-mode `pt_regs` at the top of the kernel stack.
    UserRegs,
}

/// The outcome of a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reliability {
    /// The walk ended cleanly: every frame can be trusted.
    Reliable(CleanEnd),
    /// `frame` indexes the frame at which trust was lost (it may equal the
    /// number of frames when no frame could be recorded).
    Unreliable {
        /// The first check that failed.
        reason: UnreliableReason,
        /// Index into the walk's frames; may equal their count.
        frame: usize,
    },
}

impl Reliability {
    /// True for [`Reliability::Reliable`].
    pub fn is_reliable(&self) -> bool {
        matches!(self, Reliability::Reliable(_))
    }
}

/// What counts as code, and how return trampolines are undone. For the
/// kernel this is `__kernel_text_address` plus the ftrace-graph,
/// kretprobe and rethook trampolines.
pub trait CodeMap {
    /// True when `pc` is in code (kernel or module text, or a mapped module).
    fn is_code(&self, pc: u64) -> bool;

    /// The kind of return trampoline at `pc`, if it is one.
    fn trampoline(&self, _pc: u64) -> Option<TrampolineKind> {
        None
    }

    /// The real return address hidden behind a trampoline whose address was
    /// read at stack slot `slot`. None when it cannot be recovered.
    fn recover_return(&mut self, _kind: TrampolineKind, _slot: u64) -> Option<u64> {
        None
    }
}

/// Code as a sorted list of ranges plus known trampolines.
#[derive(Clone, Debug, Default)]
pub struct CodeRanges {
    ranges: Vec<(u64, u64)>,
    trampolines: Vec<(u64, TrampolineKind)>,
}

impl CodeRanges {
    /// No code.
    pub fn new() -> Self {
        CodeRanges::default()
    }

    /// Adds [start, end).
    pub fn add(&mut self, start: u64, end: u64) {
        if start < end {
            let at = self.ranges.partition_point(|r| r.0 < start);
            self.ranges.insert(at, (start, end));
        }
    }

    /// Marks `pc` as a return trampoline of `kind`.
    pub fn add_trampoline(&mut self, pc: u64, kind: TrampolineKind) {
        let at = self.trampolines.partition_point(|t| t.0 < pc);
        self.trampolines.insert(at, (pc, kind));
    }

    /// The code ranges [start, end), sorted by start.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }
}

impl CodeMap for CodeRanges {
    fn is_code(&self, pc: u64) -> bool {
        let n = self.ranges.partition_point(|r| r.0 <= pc);
        self.ranges[..n].iter().rev().any(|r| pc < r.1)
    }

    fn trampoline(&self, pc: u64) -> Option<TrampolineKind> {
        self.trampolines.binary_search_by_key(&pc, |t| t.0).ok().map(|i| self.trampolines[i].1)
    }
}

impl<C: CodeMap + ?Sized> CodeMap for &mut C {
    fn is_code(&self, pc: u64) -> bool {
        (**self).is_code(pc)
    }
    fn trampoline(&self, pc: u64) -> Option<TrampolineKind> {
        (**self).trampoline(pc)
    }
    fn recover_return(&mut self, kind: TrampolineKind, slot: u64) -> Option<u64> {
        (**self).recover_return(kind, slot)
    }
}

#[cfg(test)]
mod tests;
