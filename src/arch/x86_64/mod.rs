//! x86-64: registers, `struct pt_regs`, the iret frame and
//! `struct inactive_task_frame`.

mod regs;

pub use regs::{IRET_FRAME_OFFSET, IRET_FRAME_SIZE, PT_REGS_SIZE, PtRegsSlot, Reg, Regs};
