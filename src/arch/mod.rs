//! Per-architecture facts: register files and the kernel's saved-register
//! layouts. One folder per architecture, with the same file names.

pub mod x86_64;
