//! Crash-dump readers: ELF vmcores (kdump, QEMU), kdump-compressed files,
//! the makedumpfile flattened format, and their notes and VMCOREINFO.
