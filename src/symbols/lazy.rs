//! A symbol table decoded on demand.
//!
//! A kernel's kallsyms holds ~160k compressed names. Decoding and sorting
//! them all costs tens of milliseconds natively and seconds under
//! emulation, while a check needs a few dozen names and the functions its
//! stacks run through. The kernel itself answers both questions without
//! decoding everything: addresses are in address order, and (since 6.2)
//! `kallsyms_seqs_of_names` lists the symbols in name order. `Lazy` does
//! the same, with the exact semantics of an eager [`SymbolTable`]: sizes
//! inferred to the next distinct non-absolute address (at most
//! [`MAX_INFERRED_SIZE`]), text symbols only for address lookups, the
//! innermost start wins, preamble symbols only when nothing else fits,
//! source order among aliases.

use std::cmp::Ordering;
use std::fmt;
use std::ops::Range;
use std::sync::OnceLock;

use super::table::{MAX_INFERRED_SIZE, is_preamble};
use super::{SymbolKind, SymbolRef, SymbolSize, SymbolTable};

/// Decodes one symbol at a time. Implemented by the kernel's kallsyms.
pub trait SymbolDecoder: Send + Sync {
    /// Kind and name of symbol `index` (source order, `index < len`).
    fn decode(&self, index: usize) -> (SymbolKind, String);

    /// The index of the symbol whose name has rank `rank` in byte order
    /// of names (a permutation of `0..len`, checked by the decoder's maker).
    fn by_name_rank(&self, rank: usize) -> usize;
}

/// The ranks `r` in `0..len` where `cmp(r)` is `Equal`, for a `cmp` that
/// is `Less`, then `Equal`, then `Greater` over the ranks (a binary search
/// for a name in name order).
pub fn equal_range(len: usize, cmp: impl Fn(usize) -> Ordering) -> Range<usize> {
    let (mut lo, mut hi) = (0, len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if cmp(mid) == Ordering::Less { lo = mid + 1 } else { hi = mid }
    }
    let mut end = lo;
    while end < len && cmp(end) == Ordering::Equal {
        end += 1;
    }
    lo..end
}

/// How far a size inference looks past absolute symbols before giving up
/// (the size then stays unknown, as for a symbol followed by a hole).
/// Real tables have a handful of absolute symbols; the cap bounds the work
/// a crafted table can cause per lookup.
const MAX_ABSOLUTE_RUN: usize = 4096;

/// Decoded names are kept in blocks of this many symbols, each allocated
/// when a name in it is first decoded: a check touches a few hundred of a
/// kernel's ~640 blocks, and a cell per symbol up front would be megabytes.
const BLOCK: usize = 256;

type Decoded = OnceLock<(SymbolKind, Box<str>)>;

/// Symbol addresses in source order, as the table keeps them.
#[derive(Debug)]
pub enum Addresses {
    /// One 64-bit address per symbol.
    List(Vec<u64>),
    /// kallsyms' 32-bit offsets as read (little-endian, 4 bytes each),
    /// turned into addresses on each look: 200k symbols need no second,
    /// twice as large table.
    Offsets {
        /// The table's bytes.
        raw: Vec<u8>,
        /// `kallsyms_relative_base`.
        base: u64,
        /// The "absolute per-cpu" encoding: an offset >= 0 is the address
        /// itself, a negative one is `base - 1 - offset`. Otherwise an
        /// offset is unsigned and added to `base`.
        absolute_percpu: bool,
    },
}

impl Addresses {
    /// How many symbols.
    pub fn len(&self) -> usize {
        match self {
            Addresses::List(list) => list.len(),
            Addresses::Offsets { raw, .. } => raw.len() / 4,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Symbol `index`'s address.
    pub fn get(&self, index: usize) -> Option<u64> {
        match self {
            Addresses::List(list) => list.get(index).copied(),
            &Addresses::Offsets { ref raw, base, absolute_percpu } => {
                Self::offset_at(raw, base, absolute_percpu, index)
            }
        }
    }

    /// Entry `index` of a raw offsets table as an address (see
    /// [`Addresses::Offsets`]), for checking an encoding before taking it.
    pub fn offset_at(raw: &[u8], base: u64, absolute_percpu: bool, index: usize) -> Option<u64> {
        let b = raw.get(index.checked_mul(4)?..)?.get(..4)?;
        let offset = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        Some(match (absolute_percpu, offset >= 0) {
            (true, true) => offset as u64,
            (true, false) => base.wrapping_sub(1).wrapping_sub(offset as i64 as u64),
            (false, _) => base.wrapping_add(offset as u32 as u64),
        })
    }

    /// Every address, in source order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.len()).map(|i| self.get(i).unwrap_or(0))
    }

    /// The first index whose address fails `pred`, for a `pred` that holds
    /// for a prefix of the (sorted) addresses.
    fn partition_point(&self, pred: impl Fn(u64) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.get(mid).unwrap_or(u64::MAX)) { lo = mid + 1 } else { hi = mid }
        }
        lo
    }

    /// Whether the addresses never decrease.
    pub fn is_sorted(&self) -> bool {
        match self {
            Addresses::List(list) => list.is_sorted(),
            &Addresses::Offsets { ref raw, base, absolute_percpu } => {
                // Relative offsets none of which wraps past the top: in
                // order when the offsets are (loops without an early exit,
                // which vectorize).
                if !absolute_percpu {
                    let offset = |c: &[u8]| u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    let highest = raw.chunks_exact(4).map(offset).fold(0, u32::max);
                    if u64::from(highest) <= u64::MAX - base {
                        let next = raw.get(4..).unwrap_or_default().chunks_exact(4);
                        return raw
                            .chunks_exact(4)
                            .zip(next)
                            .fold(true, |sorted, (a, b)| sorted & (offset(a) <= offset(b)));
                    }
                }
                let at = |c: &[u8]| Self::offset_at(c, base, absolute_percpu, 0);
                raw.chunks_exact(4).map(at).is_sorted()
            }
        }
    }
}

pub(super) struct Lazy {
    addresses: Addresses,
    decoder: Box<dyn SymbolDecoder>,
    decoded: Vec<OnceLock<Box<[Decoded]>>>,
    full: OnceLock<Box<SymbolTable>>,
}

impl fmt::Debug for Lazy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let decoded = self.decoded.iter().flat_map(|b| b.get()).flatten().filter(|d| d.get().is_some()).count();
        f.debug_struct("Lazy").field("symbols", &self.addresses.len()).field("decoded", &decoded).finish()
    }
}

/// What [`SymbolTable::lazy`] gives back when it refuses its input.
pub type Refused = (Addresses, Box<dyn SymbolDecoder>);

impl Lazy {
    pub(super) fn new(addresses: Addresses, decoder: Box<dyn SymbolDecoder>) -> Result<Lazy, Refused> {
        if addresses.is_empty() || !addresses.is_sorted() {
            return Err((addresses, decoder));
        }
        let decoded = (0..addresses.len().div_ceil(BLOCK)).map(|_| OnceLock::new()).collect();
        Ok(Lazy { addresses, decoder, decoded, full: OnceLock::new() })
    }

    pub(super) fn len(&self) -> usize {
        self.addresses.len()
    }

    fn entry(&self, index: usize) -> (SymbolKind, &str) {
        let cell = self.decoded.get(index / BLOCK).and_then(|block| {
            let len = BLOCK.min(self.addresses.len() - index / BLOCK * BLOCK);
            block.get_or_init(|| (0..len).map(|_| OnceLock::new()).collect()).get(index % BLOCK)
        });
        match cell {
            Some(cell) => {
                let (kind, name) = cell.get_or_init(|| {
                    let (kind, name) = self.decoder.decode(index);
                    (kind, name.into_boxed_str())
                });
                (*kind, name)
            }
            None => (SymbolKind::Absolute, ""),
        }
    }

    fn address(&self, index: usize) -> u64 {
        self.addresses.get(index).unwrap_or(0)
    }

    /// The inferred size of a non-absolute symbol at `address`: the
    /// distance to the next higher non-absolute start.
    fn size_at(&self, address: u64) -> u64 {
        let first_above = self.addresses.partition_point(|a| a <= address);
        (first_above..self.len())
            .take(MAX_ABSOLUTE_RUN)
            .find(|&j| self.entry(j).0 != SymbolKind::Absolute)
            .map(|j| self.address(j) - address)
            .filter(|&gap| gap <= MAX_INFERRED_SIZE)
            .unwrap_or(0)
    }

    fn size_of(&self, index: usize) -> u64 {
        match self.entry(index).0 {
            SymbolKind::Absolute => 0,
            _ => self.size_at(self.address(index)),
        }
    }

    fn symbol_ref<'a>(&'a self, object: &'a str, index: usize, offset: u64) -> SymbolRef<'a> {
        let (kind, name) = self.entry(index);
        SymbolRef { object, name, address: self.address(index), size: self.size_of(index), offset, kind }
    }

    pub(super) fn may_contain(&self, address: u64) -> bool {
        let (first, last) = (self.address(0), self.address(self.len() - 1));
        first <= address && address <= last.saturating_add(MAX_INFERRED_SIZE)
    }

    /// As [`SymbolTable::lookup`]. Text symbols' sizes end at the next
    /// non-absolute start, so only the group at the highest non-absolute
    /// start at or below `address` can contain it.
    pub(super) fn lookup<'a>(&'a self, object: &'a str, address: u64) -> Option<SymbolRef<'a>> {
        let end = self.addresses.partition_point(|a| a <= address);
        let top = (0..end).rev().take(MAX_ABSOLUTE_RUN).find(|&j| self.entry(j).0 != SymbolKind::Absolute)?;
        let start = self.address(top);
        let size = self.size_at(start);
        if address - start >= size && address != start {
            return None;
        }
        let group = self.addresses.partition_point(|a| a < start)..=top;
        let text = || group.clone().filter(|&j| self.entry(j).0 == SymbolKind::Text);
        let best = text().find(|&j| !is_preamble(self.entry(j).1)).or_else(|| text().next())?;
        Some(self.symbol_ref(object, best, address - start))
    }

    /// As [`SymbolTable::find_by_name`]: the names' rank order is searched
    /// as the kernel's `kallsyms_lookup_names` does.
    pub(super) fn find_by_name<'a>(&'a self, object: &'a str, name: &str) -> Vec<SymbolRef<'a>> {
        let ranks = equal_range(self.len(), |rank| self.entry(self.decoder.by_name_rank(rank)).1.cmp(name));
        let mut found: Vec<usize> = ranks.map(|rank| self.decoder.by_name_rank(rank)).collect();
        found.sort_unstable();
        found.into_iter().map(|index| self.symbol_ref(object, index, 0)).collect()
    }

    /// Every symbol decoded into an ordinary table, once.
    pub(super) fn full(&self, object: &str) -> &SymbolTable {
        self.full.get_or_init(|| {
            let mut table = SymbolTable::new(object);
            for (index, address) in self.addresses.iter().enumerate() {
                let (kind, name) = self.entry(index);
                table.push_symbol(name, address, SymbolSize::Unknown, kind);
            }
            table.finish();
            Box::new(table)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Symbols held as plain strings, with a name order made by sorting.
    struct Listed {
        symbols: Vec<(SymbolKind, String)>,
        order: Vec<usize>,
    }

    impl SymbolDecoder for Listed {
        fn decode(&self, index: usize) -> (SymbolKind, String) {
            self.symbols[index].clone()
        }
        fn by_name_rank(&self, rank: usize) -> usize {
            self.order[rank]
        }
    }

    fn tables(symbols: &[(SymbolKind, &str, u64)]) -> (SymbolTable, SymbolTable) {
        let mut eager = SymbolTable::new("k");
        for &(kind, name, address) in symbols {
            eager.push_symbol(name, address, SymbolSize::Unknown, kind);
        }
        eager.finish();
        let listed = listed(symbols, lazy_order(symbols));
        let lazy = SymbolTable::lazy("k", Addresses::List(symbols.iter().map(|s| s.2).collect()), Box::new(listed));
        (eager, lazy.ok().unwrap())
    }

    fn lazy_order(symbols: &[(SymbolKind, &str, u64)]) -> Vec<usize> {
        let mut order: Vec<usize> = (0..symbols.len()).collect();
        order.sort_by(|&a, &b| symbols[a].1.cmp(symbols[b].1));
        order
    }

    fn listed(symbols: &[(SymbolKind, &str, u64)], order: Vec<usize>) -> Listed {
        Listed { symbols: symbols.iter().map(|&(k, n, _)| (k, n.to_string())).collect(), order }
    }

    #[test]
    fn offsets_decode_in_both_kallsyms_encodings() {
        let base = 0xffff_ffff_8100_0000u64;
        let raw: Vec<u8> = [0i32, 0x10, -1, -0x100, i32::MIN].iter().flat_map(|o| o.to_le_bytes()).collect();
        let percpu = Addresses::Offsets { raw: raw.clone(), base, absolute_percpu: true };
        let want = [0, 0x10, base, base + 0xff, (base - 1).wrapping_add(0x8000_0000)];
        assert_eq!(percpu.iter().collect::<Vec<_>>(), want);
        assert_eq!((percpu.len(), percpu.get(5)), (5, None));
        assert!(!percpu.is_sorted(), "{want:x?} decreases at the end");
        let relative = Addresses::Offsets { raw, base, absolute_percpu: false };
        let want = [0, 0x10, 0xffff_ffff, 0xffff_ff00, 0x8000_0000].map(|o: u64| base.wrapping_add(o));
        assert_eq!(relative.iter().collect::<Vec<_>>(), want);
        assert!(!relative.is_sorted());
        let sorted = Addresses::Offsets {
            raw: [1u32, 2, 2, 9].iter().flat_map(|o| o.to_le_bytes()).collect(),
            base,
            absolute_percpu: false,
        };
        assert!(sorted.is_sorted());
        assert_eq!(sorted.partition_point(|a| a <= base + 2), 3);
        let relative = |offsets: &[u32]| Addresses::Offsets {
            raw: offsets.iter().flat_map(|o| o.to_le_bytes()).collect(),
            base,
            absolute_percpu: false,
        };
        assert!(!relative(&[1, 9, 2, 10]).is_sorted());
        assert!(relative(&[1, 9, 9, 0x7eff_ffff]).is_sorted(), "up to the top");
        // In order as offsets, but the last wraps past the top.
        assert!(!relative(&[1, 9, 0x7f00_0000]).is_sorted());
        assert!(relative(&[]).is_sorted() && relative(&[5]).is_sorted());
        // A partial entry at the end is not an address.
        let ragged = Addresses::Offsets { raw: vec![1, 0, 0, 0, 7], base: 0, absolute_percpu: false };
        assert_eq!(ragged.iter().collect::<Vec<_>>(), [1]);
    }

    fn same(eager: &SymbolTable, lazy: &SymbolTable, probes: impl Iterator<Item = u64>, names: &[&str]) {
        for pc in probes {
            assert_eq!(lazy.lookup(pc), eager.lookup(pc), "lookup({pc:#x})");
        }
        for name in names {
            let want: Vec<_> = eager.find_by_name(name).collect();
            assert_eq!(lazy.find_by_name(name).collect::<Vec<_>>(), want, "find_by_name({name})");
        }
    }

    #[test]
    fn lazy_answers_as_eager_on_random_tables() {
        use SymbolKind::*;
        const NAMES: [&str; 8] = ["a", "b", "__pfx_a", "c", "a", "d", "__cfi_c", "e"];
        let mut next = crate::test_rng(0x9e3779b97f4a7c15);
        for round in 0..300 {
            let n = 1 + (next() % 24) as usize;
            let mut address = 0x1000u64;
            let mut symbols = Vec::new();
            for _ in 0..n {
                // Aliases, small and huge gaps (past MAX_INFERRED_SIZE).
                address += match next() % 5 {
                    0 => 0,
                    1 => 1 + next() % 0x40,
                    2 => MAX_INFERRED_SIZE + next() % 3,
                    _ => 0x10 * (1 + next() % 8),
                };
                let kind = [Text, Text, Text, Data, Absolute][(next() % 5) as usize];
                symbols.push((kind, NAMES[(next() % 8) as usize], address));
            }
            let (eager, lazy) = tables(&symbols);
            let probes = || symbols.iter().flat_map(|s| [s.2.wrapping_sub(1), s.2, s.2 + 1, s.2 + 0x3f, s.2 + 0x40]);
            same(&eager, &lazy, probes().chain([0, u64::MAX]), &NAMES);
            assert_eq!(lazy.len(), eager.len(), "round {round}");
            // The same addresses kept as kallsyms' relative offsets.
            let base = 0x800;
            let raw = symbols.iter().flat_map(|s| ((s.2 - base) as u32).to_le_bytes()).collect();
            let order = lazy_order(&symbols);
            let offsets = Addresses::Offsets { raw, base, absolute_percpu: false };
            let from_offsets = SymbolTable::lazy("k", offsets, Box::new(listed(&symbols, order))).ok().unwrap();
            same(&eager, &from_offsets, probes().chain([0, u64::MAX]), &NAMES);
        }
    }

    #[test]
    fn unsorted_addresses_are_refused_and_changes_make_a_table_eager() {
        let listed = || Box::new(Listed { symbols: vec![(SymbolKind::Text, "f".into()); 2], order: vec![0, 1] });
        assert!(SymbolTable::lazy("k", Addresses::List(vec![0x20, 0x10]), listed()).is_err());
        assert!(SymbolTable::lazy("k", Addresses::List(vec![]), listed()).is_err());
        let mut table = SymbolTable::lazy("k", Addresses::List(vec![0x10, 0x20]), listed()).ok().unwrap();
        assert!(table.is_lazy());
        assert_eq!(table.symbols().len(), 2);
        table.push("g", 0x30, 0x10);
        table.finish();
        assert!(!table.is_lazy());
        assert_eq!(table.lookup(0x35).map(|s| s.name), Some("g"));
        assert_eq!(table.lookup(0x15).map(|s| (s.name, s.size)), Some(("f", 0x10)));
    }
}
