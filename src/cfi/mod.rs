//! DWARF CFI (`.eh_frame`, `.debug_frame`) compiled once per ELF file into a
//! sorted table of compact rules, so that finding a frame's rule is a binary
//! search, as with ORC. The common case (CFA = rsp or rbp + offset, return
//! address and rbp saved at CFA offsets) is a few bytes; anything else (CFA
//! expressions in PLTs and signal trampolines, registers saved elsewhere)
//! points back at its FDE and is evaluated by gimli when reached.

mod compile;
pub mod eval;

pub use compile::CfiError;
pub use eval::{evaluate_complex, CfiCache};

/// How rbp is recovered in a simple row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BpRule {
    /// No rule, or same value: rbp is unchanged.
    Same,
    /// Saved at CFA + offset.
    AtCfa(i32),
}

/// CFA = base + offset, return address at CFA + ra_offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimpleRule {
    /// The CFA is rbp + offset (else rsp + offset).
    pub cfa_from_bp: bool,
    pub cfa_offset: i32,
    pub ra_offset: i32,
    pub bp: BpRule,
    /// No rule touches rbx or r12-r15: they keep their values.
    pub others_unchanged: bool,
}

/// Which section an FDE came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CfiSource {
    EhFrame,
    DebugFrame,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// No CFI covers this address.
    None,
    Simple(SimpleRule),
    /// The return address is undefined: the outermost frame.
    Outermost,
    /// Evaluated by gimli from the FDE at `fde_offset`.
    Complex { source: CfiSource, fde_offset: u32 },
}

/// One row: `rule` applies from `start` to the next row's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    pub start: u64,
    pub rule: Rule,
    /// The FDE's CIE marks a signal trampoline: the caller's pc is exact.
    pub signal: bool,
}

/// A section kept for evaluating complex rows.
#[derive(Clone, Debug, Default)]
pub(crate) struct SectionCopy {
    pub data: Vec<u8>,
    pub addr: u64,
}

/// The compiled CFI of one ELF file, in its own (unrelocated) addresses.
#[derive(Clone, Debug, Default)]
pub struct CfiTable {
    rows: Vec<Row>,
    /// Lookup index, as the kernel's `orc_lookup`: `index[b]` is the number
    /// of rows starting at or before `index_base + (b << index_shift)`, so
    /// the row for an address in block `b` lies between `index[b]` and
    /// `index[b + 1]` and `find` searches a few rows, not the whole table.
    /// Empty: search the whole table.
    index: Vec<u32>,
    index_base: u64,
    index_shift: u32,
    pub(crate) eh_frame: Option<SectionCopy>,
    pub(crate) debug_frame: Option<SectionCopy>,
    pub(crate) text_addr: u64,
    pub(crate) got_addr: u64,
    pub(crate) eh_frame_hdr_addr: u64,
}

impl CfiTable {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// The row covering `addr`, if any CFI does.
    #[inline(always)]
    pub fn find(&self, addr: u64) -> Option<Row> {
        let i = if self.index.is_empty() {
            self.rows.partition_point(|r| r.start <= addr)
        } else {
            // Before the first row: no CFI.
            let block = addr.checked_sub(self.index_base)? >> self.index_shift;
            match usize::try_from(block).ok().filter(|&b| b + 1 < self.index.len()) {
                Some(b) => {
                    let (lo, hi) = (self.index[b] as usize, self.index[b + 1] as usize);
                    lo + self.rows.get(lo..hi)?.partition_point(|r| r.start <= addr)
                }
                // Past the last block: every row starts before addr.
                None => self.rows.len(),
            }
        };
        let row = *self.rows.get(i.checked_sub(1)?)?;
        (row.rule != Rule::None).then_some(row)
    }

    /// Smallest block size, as a shift (32 bytes: a row or two).
    const MIN_INDEX_SHIFT: u32 = 5;

    /// Builds the lookup index over `rows` (sorted by start). Blocks grow
    /// until there are at most two per row, so a table with large gaps
    /// between its rows keeps a small index.
    pub(crate) fn build_index(&mut self) {
        self.index = Vec::new();
        let (Some(first), Some(last)) = (self.rows.first(), self.rows.last()) else { return };
        if u32::try_from(self.rows.len()).is_err() {
            return;
        }
        let span = last.start - first.start;
        let most = (self.rows.len() as u64).max(16) * 2;
        let mut shift = Self::MIN_INDEX_SHIFT;
        while shift < 63 && (span >> shift) + 1 > most {
            shift += 1;
        }
        let blocks = (span >> shift) + 1;
        // Row i counts from the first block whose start is at or past its
        // own: block ceil(offset / block size). Those are nondecreasing, so
        // each run of blocks between two rows is filled at once.
        let mut index = vec![0u32; blocks as usize + 1];
        let mask = (1u64 << shift) - 1;
        let mut b = 0usize;
        for (i, r) in self.rows.iter().enumerate() {
            let off = r.start - first.start;
            let from = ((off >> shift) + u64::from(off & mask != 0)) as usize;
            index[b..from].fill(i as u32);
            b = from;
        }
        index[b..].fill(self.rows.len() as u32);
        self.index = index;
        self.index_base = first.start;
        self.index_shift = shift;
    }
}
