//! Why a trace is unreliable. Every reason carries the address involved.

use crate::arch::x86_64::Reg;
use crate::memory::MemoryErrorKind;

/// A return trampoline that stands in for a real return address on the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrampolineKind {
    /// ftrace's function-graph `return_to_handler`.
    FtraceGraph,
    /// kretprobe's trampoline (before rethook).
    Kretprobe,
    /// `arch_rethook_trampoline`.
    Rethook,
}

impl TrampolineKind {
    /// A short stable name: `"ftrace-graph"`, `"kretprobe"` or `"rethook"`.
    pub fn name(self) -> &'static str {
        match self {
            TrampolineKind::FtraceGraph => "ftrace-graph",
            TrampolineKind::Kretprobe => "kretprobe",
            TrampolineKind::Rethook => "rethook",
        }
    }
}

/// Why a walk stopped trusting the trace: the first failed check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum UnreliableReason {
    /// No ORC entry or CFI row covers the pc.
    #[error("no unwind entry for pc {pc:#x}")]
    NoUnwindEntry {
        /// The frame's pc.
        pc: u64,
    },
    /// The pc's ORC entry is UNDEFINED: no unwind data by design.
    #[error("unwind entry for pc {pc:#x} is UNDEFINED")]
    UndefinedEntry {
        /// The frame's pc.
        pc: u64,
    },
    /// The ORC entry has a type or register lpstack does not know, or the
    /// CFI row could not be parsed or evaluated.
    #[error("unwind entry for pc {pc:#x} has unknown type or register {raw}")]
    UnknownEntry {
        /// The frame's pc.
        pc: u64,
        /// The raw ORC type or register field; 0 for CFI.
        raw: u8,
    },
    /// The unwind rule needs a register whose value is not known.
    #[error("unwind entry for pc {pc:#x} needs {} but no saved registers hold it", reg.name())]
    MissingRegister {
        /// The frame's pc; 0 when the pc or sp itself is unknown.
        pc: u64,
        /// The register needed.
        reg: Reg,
    },
    /// A stack read falls outside the known stacks, or goes back to a stack
    /// the walk already left.
    #[error("stack access at {addr:#x} is outside the known stacks")]
    OutsideStack {
        /// The address read (for a CFI step, the CFA).
        addr: u64,
    },
    /// On one stack, sp did not grow.
    #[error("stack going in the wrong direction: sp {sp:#x} after {prev_sp:#x}")]
    WrongDirection {
        /// The caller's sp.
        sp: u64,
        /// The callee's sp.
        prev_sp: u64,
    },
    /// Memory on a known stack (or a task's state) could not be read.
    #[error("cannot read {addr:#x}: {}", memory_text(*kind))]
    Unreadable {
        /// The address that failed.
        addr: u64,
        /// Why it failed.
        kind: MemoryErrorKind,
    },
    /// A return address or pc is not code.
    #[error("pc {pc:#x} is not in kernel or module text")]
    NotText {
        /// The pc.
        pc: u64,
    },
    /// The trace reached the frame limit (see `WalkConfig::max_frames`).
    #[error("{limit} frames or more (the kernel's buffer limit)")]
    FrameLimit {
        /// The limit, in frames.
        limit: u32,
    },
    /// A return trampoline's real return address could not be recovered.
    #[error("return address {pc:#x} is the {} trampoline and could not be recovered", kind.name())]
    Trampoline {
        /// The trampoline's address, as read from the stack.
        pc: u64,
        /// Which trampoline.
        kind: TrampolineKind,
    },
    /// Kernel-mode `pt_regs` in mid-stack under `KernelRegsPolicy::Reject`.
    #[error("kernel-mode pt_regs in mid-stack at pc {pc:#x} (frame-pointer policy)")]
    KernelRegs {
        /// The interrupted pc.
        pc: u64,
    },
    /// The starting sp is on none of the known stacks.
    #[error("starting sp {sp:#x} is not on a known stack")]
    StartNotOnStack {
        /// The starting sp.
        sp: u64,
    },
    /// A live kernel's task ran between the reads of its state and stack
    /// (state, on_cpu or context-switch count differed), every pass.
    #[error("task_struct at {task:#x} changed while reading ({passes} passes)")]
    ChangedWhileReading {
        /// Address of the `task_struct`.
        task: u64,
        /// Reads attempted.
        passes: u32,
    },
}

fn memory_text(kind: MemoryErrorKind) -> &'static str {
    match kind {
        MemoryErrorKind::Unmapped => "not mapped",
        MemoryErrorKind::NotInDump => "page not in dump",
        MemoryErrorKind::ShortRead => "short read",
        MemoryErrorKind::Backend => "read failed",
    }
}

impl UnreliableReason {
    /// A stable short name, for JSON and for grouping in summaries.
    pub fn code(&self) -> &'static str {
        self.code_c().to_str().unwrap_or_default()
    }

    /// [`Self::code`] as a C string, for the C API (one table for both).
    pub fn code_c(&self) -> &'static std::ffi::CStr {
        match self {
            UnreliableReason::NoUnwindEntry { .. } => c"no-unwind-entry",
            UnreliableReason::UndefinedEntry { .. } => c"undefined-unwind-entry",
            UnreliableReason::UnknownEntry { .. } => c"unknown-unwind-entry",
            UnreliableReason::MissingRegister { .. } => c"missing-register",
            UnreliableReason::OutsideStack { .. } => c"outside-stack",
            UnreliableReason::WrongDirection { .. } => c"wrong-direction",
            UnreliableReason::Unreadable { .. } => c"unreadable",
            UnreliableReason::NotText { .. } => c"not-text",
            UnreliableReason::FrameLimit { .. } => c"frame-limit",
            UnreliableReason::Trampoline { .. } => c"trampoline",
            UnreliableReason::KernelRegs { .. } => c"kernel-regs",
            UnreliableReason::StartNotOnStack { .. } => c"start-not-on-stack",
            UnreliableReason::ChangedWhileReading { .. } => c"changed-while-reading",
        }
    }
}
