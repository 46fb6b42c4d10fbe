//! A kernel seen from outside: its address space, symbols (kallsyms), types
//! (BTF), tasks and modules, read through a physical-memory source.

pub mod addrspace;
pub mod btf;
pub mod check;
pub mod image;
pub mod kallsyms;
pub mod klp;
pub mod layout;
pub mod live;
pub mod modules;
pub mod orc;
pub mod stall;
pub mod tasks;
