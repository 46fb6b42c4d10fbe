//! One object's symbols (`SymbolTable`) and a set of objects (`Symbolizer`).
//!
//! Symbols are kept in source order because livepatch's `sympos` counts
//! occurrences of a name in that order (kallsyms order for vmlinux, symtab
//! order for modules). Two indexes are built by [`SymbolTable::finish`]:
//! text symbols by address (for stack PCs) and all symbols by name. A table
//! over the kernel's kallsyms can instead decode names on demand
//! ([`SymbolTable::lazy`], `lazy.rs`), with the same answers.

use std::sync::Arc;

use super::lazy::{Addresses, Lazy, Refused, SymbolDecoder};
use crate::name_index::NameIndex;

/// Errors from the symbol sources (System.map text, ELF files).
///
/// They name a line or a symbol index; the caller knows the file path and
/// adds it when reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SymbolError {
    /// A line without the expected fields, or with a type of more than one
    /// character.
    #[error("line {line}: expected `<hex address> <type> <name>`")]
    MalformedLine {
        /// 1-based line number.
        line: usize,
    },
    /// The address field is not hexadecimal.
    #[error("line {line}: invalid hex address")]
    InvalidAddress {
        /// 1-based line number.
        line: usize,
    },
    /// The type field is not a letter or `?`.
    #[error("line {line}: invalid symbol type `{kind}`")]
    InvalidType {
        /// 1-based line number.
        line: usize,
        /// The type character found.
        kind: char,
    },
    /// The data is not an ELF file.
    #[error("not an ELF file")]
    NotElf,
    /// The ELF file has neither `.symtab` nor `.dynsym`.
    #[error("ELF file has neither .symtab nor .dynsym")]
    NoSymbolTable,
    /// A symbol's name is not UTF-8.
    #[error("ELF symbol {index}: name is not valid UTF-8")]
    NonUtf8Name {
        /// The symbol's index in its ELF symbol table.
        index: usize,
    },
    /// The ELF parser failed.
    #[error("ELF: {0}")]
    Elf(#[from] object::read::Error),
}

/// What a symbol names. Only `Text` symbols take part in address lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SymbolKind {
    /// Code: functions, assembly entry points (System.map `T t W w`).
    Text,
    /// Anything else with an address in the object's image.
    Data,
    /// Absolute values (System.map `A a`, ELF `SHN_ABS`): not addresses of
    /// anything in the image, so they are neither looked up nor used as a
    /// boundary when inferring sizes.
    Absolute,
}

/// Whether a size came with the symbol or must be inferred by `finish`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolSize {
    /// From the source (ELF `st_size`); 0 stays 0.
    Known(u64),
    /// Not given (System.map, kallsyms): inferred from the next symbol.
    Unknown,
}

/// Inferred sizes never exceed this. A larger distance to the next symbol
/// means a hole follows (end of a section, percpu symbols at 0 followed by
/// text at `0xffffffff8...`, the last symbol before the module area); the
/// kernel's largest functions are far below 1 MiB, so leaving such a
/// symbol's size unknown beats letting it swallow the hole.
pub const MAX_INFERRED_SIZE: u64 = 1 << 20;

/// Symbol prefixes of the padding/preamble the compiler puts right before a
/// function: `__pfx_<fn>` (kernel 6.2+ function padding) and `__cfi_<fn>`
/// (kCFI/FineIBT preamble). They are symbols of their own, but a PC should
/// be attributed to a real function whenever one contains it.
const PREAMBLE_PREFIXES: [&str; 2] = ["__pfx_", "__cfi_"];

pub(super) fn is_preamble(name: &str) -> bool {
    PREAMBLE_PREFIXES.iter().any(|prefix| name.starts_with(prefix))
}

/// One symbol; its name lives in the table's string pool
/// (see [`SymbolTable::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Symbol {
    /// Start address: as the source gave it, plus any `rebase` bias.
    pub address: u64,
    /// 0 = unknown (or genuinely empty, for ELF symbols with `st_size` 0).
    pub size: u64,
    name_start: usize,
    name_len: usize,
    kind: SymbolKind,
    size_known: bool,
}

impl Symbol {
    /// What the symbol names.
    pub fn kind(&self) -> SymbolKind {
        self.kind
    }

    /// True for code symbols, the only ones address lookups return.
    pub fn is_text(&self) -> bool {
        self.kind == SymbolKind::Text
    }

    /// True if `size` was inferred from the next symbol's address (as the
    /// kernel's kallsyms does) rather than given by the source.
    pub fn size_is_inferred(&self) -> bool {
        !self.size_known && self.size != 0
    }

    /// Whether `pc` is in `[address, address + size)`, or equals `address`
    /// for a zero-size symbol. Written so that it cannot overflow.
    fn contains(&self, pc: u64) -> bool {
        pc >= self.address && (pc - self.address < self.size || pc == self.address)
    }

    /// Last address the symbol covers (saturating), for the lookup pruning.
    fn last(&self) -> u64 {
        self.address.saturating_add(self.size.max(1) - 1)
    }
}

/// A symbol as seen by callers: names borrowed from the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SymbolRef<'a> {
    /// The table's object: "vmlinux", a module name or a file name.
    pub object: &'a str,
    /// The symbol's name.
    pub name: &'a str,
    /// Start address, as in the table.
    pub address: u64,
    /// Size in bytes, given or inferred; 0 = unknown.
    pub size: u64,
    /// Offset of the looked-up address from `address`; 0 from
    /// `find_by_name` and `iter`.
    pub offset: u64,
    /// What the symbol names.
    pub kind: SymbolKind,
}

/// The symbols of one object: "vmlinux", a module name ("ext4"), or a shared
/// library / executable file name.
#[derive(Debug, Clone, Default)]
pub struct SymbolTable {
    object: String,
    /// Source order.
    symbols: Vec<Symbol>,
    /// All names, concatenated.
    names: String,
    /// Indexes of text symbols, sorted by address; equal addresses keep
    /// source order (stable sort).
    by_address: Vec<usize>,
    /// `max_last[i]` = the highest `last()` among `by_address[..=i]`. Lets a
    /// lookup walk back past nested/zero-size symbols to an enclosing one and
    /// stop as soon as nothing further back can contain the address.
    max_last: Vec<u64>,
    /// All symbols by name (source order within a name).
    by_name: NameIndex,
    /// A table over a source decoded on demand (kallsyms): the fields
    /// above stay empty, lookups go to `Lazy`, and whatever needs every
    /// symbol decodes them all once ([`SymbolTable::eager`]).
    lazy: Option<Arc<Lazy>>,
}

impl SymbolTable {
    /// An empty table for `object` ("vmlinux", "ext4", a file name).
    pub fn new(object: &str) -> Self {
        SymbolTable { object: object.to_owned(), ..SymbolTable::default() }
    }

    /// A table over `decoder`'s symbols, decoded only as lookups need them.
    /// `addresses` are in source order, which must be address order, and
    /// every size is inferred as [`SymbolTable::finish`] does. When the
    /// addresses are not sorted or there are none, both are given back (the
    /// caller decodes every symbol instead).
    pub fn lazy(object: &str, addresses: Addresses, decoder: Box<dyn SymbolDecoder>) -> Result<Self, Refused> {
        let lazy = Lazy::new(addresses, decoder)?;
        Ok(SymbolTable { object: object.to_owned(), lazy: Some(Arc::new(lazy)), ..SymbolTable::default() })
    }

    /// This table with every symbol decoded: itself, or for a lazy table
    /// the one full decoding (made on first use).
    fn eager(&self) -> &SymbolTable {
        match &self.lazy {
            None => self,
            Some(lazy) => lazy.full(&self.object),
        }
    }

    /// Whether names are decoded on demand (see [`SymbolTable::lazy`]).
    pub fn is_lazy(&self) -> bool {
        self.lazy.is_some()
    }

    /// Turns a lazy table into an ordinary one before it is changed.
    fn make_eager(&mut self) {
        if self.lazy.is_some() {
            *self = self.eager().clone();
        }
    }

    /// Appends a text symbol in source order. `size` 0 = unknown (inferred
    /// by `finish`).
    pub fn push(&mut self, name: &str, address: u64, size: u64) {
        let size = if size == 0 { SymbolSize::Unknown } else { SymbolSize::Known(size) };
        self.push_symbol(name, address, size, SymbolKind::Text);
    }

    /// Appends a symbol in source order.
    pub fn push_symbol(&mut self, name: &str, address: u64, size: SymbolSize, kind: SymbolKind) {
        self.make_eager();
        let name_start = self.names.len();
        self.names.push_str(name);
        let (size, size_known) = match size {
            SymbolSize::Known(size) => (size, true),
            SymbolSize::Unknown => (0, false),
        };
        self.symbols.push(Symbol { address, size, name_start, name_len: name.len(), kind, size_known });
    }

    /// Builds the indexes and infers unknown sizes. Must be called after the
    /// last `push` (and again after more pushes or `rebase`); lookups on an
    /// unfinished table see only what the last `finish` indexed.
    ///
    /// An unknown size becomes the distance to the next higher distinct
    /// address among all non-absolute symbols (text and data alike, like
    /// kallsyms), unless that distance exceeds [`MAX_INFERRED_SIZE`] or there
    /// is no higher symbol; then it stays 0 and the symbol matches only its
    /// exact address.
    pub fn finish(&mut self) {
        self.make_eager();
        let mut starts: Vec<u64> = self
            .symbols
            .iter()
            .filter(|symbol| symbol.kind != SymbolKind::Absolute)
            .map(|symbol| symbol.address)
            .collect();
        starts.sort_unstable();
        starts.dedup();
        for symbol in &mut self.symbols {
            if symbol.size_known {
                continue;
            }
            symbol.size = 0;
            if symbol.kind == SymbolKind::Absolute {
                continue;
            }
            let next = starts.partition_point(|&start| start <= symbol.address);
            if let Some(&next_start) = starts.get(next) {
                let gap = next_start - symbol.address;
                if gap <= MAX_INFERRED_SIZE {
                    symbol.size = gap;
                }
            }
        }

        let symbols = &self.symbols;
        self.by_address = (0..symbols.len()).filter(|&index| symbols[index].is_text()).collect();
        // (address, index) is unique, so an unstable sort keeps source order.
        self.by_address.sort_unstable_by_key(|&index| (symbols[index].address, index));
        self.max_last.clear();
        let mut max_last = 0;
        for &index in &self.by_address {
            max_last = max_last.max(symbols[index].last());
            self.max_last.push(max_last);
        }

        let names = (0..symbols.len() as u32).map(|i| (i, self.symbol_name(i as usize).as_bytes()));
        self.by_name = NameIndex::build(symbols.len(), names);
    }

    /// Adds `bias` (wrapping) to every address and re-finishes: for
    /// position-independent objects loaded at a runtime base.
    pub fn rebase(&mut self, bias: u64) {
        self.make_eager();
        for symbol in &mut self.symbols {
            symbol.address = symbol.address.wrapping_add(bias);
        }
        self.finish();
    }

    /// The object the symbols belong to.
    pub fn object(&self) -> &str {
        &self.object
    }

    /// Number of symbols, of every kind.
    pub fn len(&self) -> usize {
        match &self.lazy {
            Some(lazy) => lazy.len(),
            None => self.symbols.len(),
        }
    }

    /// True when the table has no symbols.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All symbols in source order (a lazy table decodes them all).
    pub fn symbols(&self) -> &[Symbol] {
        &self.eager().symbols
    }

    /// The name of a symbol of this table (from [`SymbolTable::symbols`]).
    pub fn name(&self, symbol: &Symbol) -> &str {
        let table = self.eager();
        let end = symbol.name_start.saturating_add(symbol.name_len);
        table.names.get(symbol.name_start..end).unwrap_or("")
    }

    fn symbol_name(&self, index: usize) -> &str {
        self.symbols.get(index).map_or("", |symbol| self.name(symbol))
    }

    fn symbol_ref(&self, symbol: &Symbol, offset: u64) -> SymbolRef<'_> {
        SymbolRef {
            object: &self.object,
            name: self.name(symbol),
            address: symbol.address,
            size: symbol.size,
            offset,
            kind: symbol.kind,
        }
    }

    /// The symbol at `index` in source order.
    pub fn get(&self, index: usize) -> Option<SymbolRef<'_>> {
        let table = self.eager();
        table.symbols.get(index).map(|symbol| table.symbol_ref(symbol, 0))
    }

    /// The text symbol containing `address`: `[start, start + size)`, or
    /// exactly `start` for a zero-size symbol.
    ///
    /// When several contain it, the one with the highest start wins (the
    /// innermost); among aliases at that start, the first in source order.
    /// Preamble symbols (`__pfx_`, `__cfi_`) win only if no other symbol
    /// contains the address.
    pub fn lookup(&self, address: u64) -> Option<SymbolRef<'_>> {
        if let Some(lazy) = &self.lazy {
            return lazy.lookup(&self.object, address);
        }
        let mut position =
            self.by_address.partition_point(|&index| self.symbols.get(index).is_some_and(|s| s.address <= address));
        let mut best: Option<&Symbol> = None;
        let mut best_preamble: Option<&Symbol> = None;
        while position > 0 {
            position -= 1;
            if self.max_last.get(position).is_none_or(|&last| last < address) {
                break;
            }
            let Some(symbol) = self.by_address.get(position).and_then(|&i| self.symbols.get(i)) else {
                break;
            };
            // A real function was found at a higher start: it is the innermost.
            if best.is_some_and(|found| symbol.address < found.address) {
                break;
            }
            if !symbol.contains(address) {
                continue;
            }
            // Walking backwards, a later hit at the same start is earlier in
            // source order, so it replaces the previous one.
            let slot = if is_preamble(self.name(symbol)) { &mut best_preamble } else { &mut best };
            match slot {
                Some(found) if found.address != symbol.address => {}
                _ => *slot = Some(symbol),
            }
        }
        best.or(best_preamble).map(|symbol| self.symbol_ref(symbol, address - symbol.address))
    }

    /// All symbols (any kind) named `name`, in source order.
    pub fn find_by_name<'t>(&'t self, name: &str) -> impl Iterator<Item = SymbolRef<'t>> + use<'t> {
        let found: Vec<SymbolRef<'t>> = match &self.lazy {
            Some(lazy) => lazy.find_by_name(&self.object, name),
            None => self
                .by_name
                .find(name.as_bytes(), |index| self.symbol_name(index as usize).as_bytes())
                .filter_map(|index| self.symbols.get(index as usize))
                .map(|symbol| self.symbol_ref(symbol, 0))
                .collect(),
        };
        found.into_iter()
    }

    /// All symbols in source order.
    pub fn iter(&self) -> impl Iterator<Item = SymbolRef<'_>> {
        let table = self.eager();
        table.symbols.iter().map(|symbol| table.symbol_ref(symbol, 0))
    }

    /// Quick rejection for `Symbolizer`: can any text symbol contain `address`?
    fn may_contain(&self, address: u64) -> bool {
        if let Some(lazy) = &self.lazy {
            return lazy.may_contain(address);
        }
        let lowest = self.by_address.first().and_then(|&i| self.symbols.get(i));
        match (lowest, self.max_last.last()) {
            (Some(lowest), Some(&last)) => lowest.address <= address && address <= last,
            _ => false,
        }
    }
}

/// Builds a finished table of text symbols from `(name, address, size)`,
/// in source order; size 0 = unknown. This is what kallsyms decoding feeds.
pub fn symbols_from_list<'a>(object: &str, list: impl IntoIterator<Item = (&'a str, u64, u64)>) -> SymbolTable {
    let mut table = SymbolTable::new(object);
    for (name, address, size) in list {
        table.push(name, address, size);
    }
    table.finish();
    table
}

/// Several objects: vmlinux + modules, or an executable + its libraries.
#[derive(Debug, Clone, Default)]
pub struct Symbolizer {
    tables: Vec<SymbolTable>,
}

impl Symbolizer {
    /// No tables.
    pub fn new() -> Self {
        Symbolizer::default()
    }

    /// Adds a finished table.
    pub fn add(&mut self, table: SymbolTable) {
        self.tables.push(table);
    }

    /// The containing text symbol in the first table (in `add` order) that
    /// has one. Objects normally do not overlap, so the order only matters
    /// for broken inputs.
    pub fn lookup(&self, address: u64) -> Option<SymbolRef<'_>> {
        self.tables.iter().filter(|table| table.may_contain(address)).find_map(|table| table.lookup(address))
    }

    /// The first table added for `object`.
    pub fn table(&self, object: &str) -> Option<&SymbolTable> {
        self.tables.iter().find(|table| table.object == object)
    }

    /// The tables, in `add` order.
    pub fn tables(&self) -> &[SymbolTable] {
        &self.tables
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names<'a>(refs: impl Iterator<Item = SymbolRef<'a>>) -> Vec<(&'a str, u64)> {
        refs.map(|symbol| (symbol.name, symbol.address)).collect()
    }

    #[test]
    fn inferred_sizes_stop_at_next_distinct_address() {
        let table = symbols_from_list(
            "vmlinux",
            [("a", 0x1000, 0), ("a_alias", 0x1000, 0), ("b", 0x1040, 0), ("c", 0x1100, 0x20)],
        );
        let sizes: Vec<u64> = table.symbols().iter().map(|s| s.size).collect();
        assert_eq!(sizes, [0x40, 0x40, 0xc0, 0x20]);
        assert!(table.symbols()[0].size_is_inferred());
        assert!(!table.symbols()[3].size_is_inferred());
    }

    #[test]
    fn inferred_size_never_spans_a_large_gap() {
        let table = symbols_from_list(
            "vmlinux",
            [("before_hole", 0x1000, 0), ("after_hole", 0x1000 + MAX_INFERRED_SIZE + 1, 0)],
        );
        assert_eq!(table.symbols()[0].size, 0);
        // Last symbol: nothing after it, size stays unknown.
        assert_eq!(table.symbols()[1].size, 0);
        // Zero size: only the exact address matches.
        assert_eq!(table.lookup(0x1000).map(|s| s.name), Some("before_hole"));
        assert_eq!(table.lookup(0x1001), None);

        let exact = symbols_from_list("vmlinux", [("a", 0x1000, 0), ("b", 0x1000 + MAX_INFERRED_SIZE, 0)]);
        assert_eq!(exact.symbols()[0].size, MAX_INFERRED_SIZE);
    }

    #[test]
    fn lookup_bounds_and_offset() {
        let table = symbols_from_list("vmlinux", [("f", 0x1000, 0x10), ("g", 0x1010, 0x10)]);
        assert_eq!(table.lookup(0xfff), None);
        let hit = table.lookup(0x100f);
        assert_eq!(
            hit,
            Some(SymbolRef {
                object: "vmlinux",
                name: "f",
                address: 0x1000,
                size: 0x10,
                offset: 0xf,
                kind: SymbolKind::Text,
            })
        );
        assert_eq!(table.lookup(0x1010).map(|s| (s.name, s.offset)), Some(("g", 0)));
        assert_eq!(table.lookup(0x1020), None);
    }

    #[test]
    fn aliases_prefer_first_in_source_order() {
        let table = symbols_from_list("vmlinux", [("zz_second", 0x2000, 0x10), ("aa_third", 0x2000, 0x10)]);
        // Source order, not name order.
        assert_eq!(table.lookup(0x2004).map(|s| s.name), Some("zz_second"));
    }

    #[test]
    fn pfx_symbols_never_win_over_functions() {
        // __pfx_ first in source order, at the same address as the function.
        let table = symbols_from_list("vmlinux", [("__pfx_f", 0x1000, 0x40), ("f", 0x1000, 0x40)]);
        assert_eq!(table.lookup(0x1000).map(|s| s.name), Some("f"));

        // Kernel layout: __pfx_g is the 16 bytes before g.
        let table = symbols_from_list(
            "vmlinux",
            [("f", 0x1000, 0), ("__pfx_g", 0x1030, 0), ("g", 0x1040, 0), ("__cfi_h", 0x1070, 0), ("h", 0x1080, 0)],
        );
        assert_eq!(table.symbols()[1].size, 0x10);
        assert_eq!(table.lookup(0x102f).map(|s| s.name), Some("f"));
        assert_eq!(table.lookup(0x1040).map(|s| s.name), Some("g"));
        assert_eq!(table.lookup(0x106f).map(|s| s.name), Some("g"));
        // Inside the padding itself nothing else contains the PC.
        assert_eq!(table.lookup(0x1035).map(|s| s.name), Some("__pfx_g"));
        assert_eq!(table.lookup(0x1075).map(|s| s.name), Some("__cfi_h"));
    }

    #[test]
    fn pfx_inside_a_sized_function_loses() {
        // ELF-style sizes: a preamble symbol nested in a function's range.
        let mut table = SymbolTable::new("a.out");
        table.push_symbol("outer", 0x1000, SymbolSize::Known(0x100), SymbolKind::Text);
        table.push_symbol("__pfx_inner", 0x1040, SymbolSize::Known(0x10), SymbolKind::Text);
        table.finish();
        assert_eq!(table.lookup(0x1044).map(|s| (s.name, s.offset)), Some(("outer", 0x44)));
    }

    #[test]
    fn zero_size_label_inside_function_finds_enclosing_function() {
        let mut table = SymbolTable::new("vmlinux");
        table.push_symbol("entry_SYSCALL_64", 0x1000, SymbolSize::Known(0x100), SymbolKind::Text);
        table.push_symbol("entry_SYSCALL_64_after_hwframe", 0x1020, SymbolSize::Known(0), SymbolKind::Text);
        table.push_symbol("small", 0x1040, SymbolSize::Known(0x8), SymbolKind::Text);
        table.finish();
        assert_eq!(table.lookup(0x1020).map(|s| s.name), Some("entry_SYSCALL_64_after_hwframe"));
        assert_eq!(table.lookup(0x1021).map(|s| s.name), Some("entry_SYSCALL_64"));
        assert_eq!(table.lookup(0x1044).map(|s| s.name), Some("small"));
        // Past the nested symbol, the enclosing function again.
        assert_eq!(table.lookup(0x1050).map(|s| (s.name, s.offset)), Some(("entry_SYSCALL_64", 0x50)));
        assert_eq!(table.lookup(0x1100), None);
    }

    #[test]
    fn data_and_absolute_symbols_are_not_looked_up() {
        let mut table = SymbolTable::new("vmlinux");
        table.push_symbol("text_fn", 0x1000, SymbolSize::Unknown, SymbolKind::Text);
        table.push_symbol("some_var", 0x1100, SymbolSize::Unknown, SymbolKind::Data);
        table.push_symbol("some_abs", 0x1080, SymbolSize::Unknown, SymbolKind::Absolute);
        table.push_symbol("end", 0x1200, SymbolSize::Unknown, SymbolKind::Data);
        table.finish();
        // The absolute symbol is no boundary; the data symbol is.
        assert_eq!(table.symbols()[0].size, 0x100);
        assert_eq!(table.symbols()[2].size, 0);
        assert_eq!(table.lookup(0x1090).map(|s| s.name), Some("text_fn"));
        assert_eq!(table.lookup(0x1100), None);
        // find_by_name still sees them.
        assert_eq!(names(table.find_by_name("some_var")), [("some_var", 0x1100)]);
        assert_eq!(names(table.find_by_name("some_abs")), [("some_abs", 0x1080)]);
    }

    #[test]
    fn find_by_name_in_source_order() {
        let table = symbols_from_list(
            "vmlinux",
            [("dup", 0x3000, 0x10), ("b", 0x1000, 0x10), ("dup", 0x1000, 0x10), ("a", 0x2000, 0x10)],
        );
        assert_eq!(names(table.find_by_name("dup")), [("dup", 0x3000), ("dup", 0x1000)]);
        assert_eq!(table.find_by_name("du").count(), 0);
        assert_eq!(table.find_by_name("dupe").count(), 0);
        assert_eq!(names(table.find_by_name("a")), [("a", 0x2000)]);
        let temporary = String::from("b");
        let found = table.find_by_name(&temporary);
        drop(temporary);
        assert_eq!(found.count(), 1);
        assert_eq!(names(table.iter()), [("dup", 0x3000), ("b", 0x1000), ("dup", 0x1000), ("a", 0x2000)]);
    }

    #[test]
    fn rebase_moves_lookups() {
        let mut table = symbols_from_list("libc.so.6", [("malloc", 0x100, 0x20)]);
        table.rebase(0x7f00_0000_0000);
        assert_eq!(table.lookup(0x100), None);
        assert_eq!(table.lookup(0x7f00_0000_0110).map(|s| (s.name, s.offset)), Some(("malloc", 0x10)));
    }

    #[test]
    fn lookup_near_the_top_of_the_address_space() {
        let table = symbols_from_list("vmlinux", [("top", u64::MAX - 1, 0x10)]);
        assert_eq!(table.lookup(u64::MAX).map(|s| (s.name, s.offset)), Some(("top", 1)));
    }

    #[test]
    fn symbolizer_searches_each_object() {
        let mut symbolizer = Symbolizer::new();
        symbolizer.add(symbols_from_list("vmlinux", [("schedule", 0xffff_ffff_8100_0000, 0x100)]));
        symbolizer.add(symbols_from_list("ext4", [("ext4_readdir", 0xffff_ffff_c000_0000, 0x80)]));
        let hit = symbolizer.lookup(0xffff_ffff_c000_0010);
        assert_eq!(hit.map(|s| (s.object, s.name, s.offset)), Some(("ext4", "ext4_readdir", 0x10)));
        assert_eq!(symbolizer.lookup(0xffff_ffff_8100_0000).map(|s| s.object), Some("vmlinux"));
        assert_eq!(symbolizer.lookup(0xffff_ffff_9000_0000), None);
        assert_eq!(symbolizer.table("ext4").map(SymbolTable::len), Some(1));
        assert!(symbolizer.table("xfs").is_none());
        assert_eq!(symbolizer.tables().len(), 2);
    }
}
