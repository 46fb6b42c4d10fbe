//! Symbols: name <-> address for one or more objects (vmlinux, modules,
//! shared libraries). Sources: ELF symtab, System.map, kallsyms-like lists.
//!
//! A `SymbolTable` is one object's symbols in source order (the order
//! matters for livepatch `sympos`), with an address index for lookups.

mod elf;
pub mod inline;
mod lazy;
mod system_map;
mod table;

pub use elf::symbols_from_elf;
pub use lazy::{Addresses, Refused, SymbolDecoder, equal_range};
pub use system_map::{ProcKallsyms, parse_proc_kallsyms, parse_system_map};
pub use table::{
    MAX_INFERRED_SIZE, Symbol, SymbolError, SymbolKind, SymbolRef, SymbolSize, SymbolTable, Symbolizer,
    symbols_from_list,
};
