//! Why a trace is unreliable. Every reason carries the address involved.

use crate::arch::x86_64::Reg;
use crate::memory::MemoryErrorKind;

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
    pub fn name(self) -> &'static str {
        match self {
            TrampolineKind::FtraceGraph => "ftrace-graph",
            TrampolineKind::Kretprobe => "kretprobe",
            TrampolineKind::Rethook => "rethook",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum UnreliableReason {
    #[error("no unwind entry for pc {pc:#x}")]
    NoUnwindEntry { pc: u64 },
    #[error("unwind entry for pc {pc:#x} is UNDEFINED")]
    UndefinedEntry { pc: u64 },
    #[error("unwind entry for pc {pc:#x} has unknown type or register {raw}")]
    UnknownEntry { pc: u64, raw: u8 },
    #[error("unwind entry for pc {pc:#x} needs {} but no saved registers hold it", reg.name())]
    MissingRegister { pc: u64, reg: Reg },
    #[error("stack access at {addr:#x} is outside the known stacks")]
    OutsideStack { addr: u64 },
    #[error("stack going in the wrong direction: sp {sp:#x} after {prev_sp:#x}")]
    WrongDirection { sp: u64, prev_sp: u64 },
    #[error("cannot read {addr:#x}: {}", memory_text(*kind))]
    Unreadable { addr: u64, kind: MemoryErrorKind },
    #[error("pc {pc:#x} is not in kernel or module text")]
    NotText { pc: u64 },
    #[error("{limit} frames or more (the kernel's buffer limit)")]
    FrameLimit { limit: u32 },
    #[error("return address {pc:#x} is the {} trampoline and could not be recovered", kind.name())]
    Trampoline { pc: u64, kind: TrampolineKind },
    #[error("kernel-mode pt_regs in mid-stack at pc {pc:#x} (frame-pointer policy)")]
    KernelRegs { pc: u64 },
    #[error("starting sp {sp:#x} is not on a known stack")]
    StartNotOnStack { sp: u64 },
    /// A live kernel's task ran between the reads of its state and stack
    /// (state, on_cpu or context-switch count differed), every pass.
    #[error("task_struct at {task:#x} changed while reading ({passes} passes)")]
    ChangedWhileReading { task: u64, passes: u32 },
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
