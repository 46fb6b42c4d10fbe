//! DWARF CFI (`.eh_frame`, `.debug_frame`) read lazily: building a table
//! only finds the sections and the FDE index (`.eh_frame_hdr`'s sorted
//! table, used in place), so that loading a module costs microseconds.
//! A lookup finds the FDE by binary search and runs its CFA program up to
//! the address (`program.rs`), giving a compact rule: CFA = rsp or rbp +
//! offset, return address and rbp saved at CFA offsets. Anything else
//! (CFA expressions in PLTs and signal trampolines, registers saved
//! elsewhere) points back at its FDE and is evaluated by gimli when
//! reached. The walker keeps the rules it found in a cache it owns
//! ([`CfiCache`]), so a warm lookup is one hashed slot.

mod cache;
mod compile;
mod entry;
pub mod eval;
mod program;

use std::ops::Range;
use std::sync::Arc;

pub use cache::{CachedRule, CfiCache};
pub use compile::CfiError;
pub use entry::EntryError;
pub use eval::evaluate_complex;

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
    /// CFA = rsp or rbp (`cfa_from_bp`) + this, in bytes.
    pub cfa_offset: i32,
    /// The return address is saved at CFA + this, in bytes.
    pub ra_offset: i32,
    /// Where the caller's rbp is.
    pub bp: BpRule,
    /// No rule touches rbx or r12-r15: they keep their values.
    pub others_unchanged: bool,
}

/// Which section an FDE came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CfiSource {
    /// `.eh_frame`.
    EhFrame,
    /// `.debug_frame`.
    DebugFrame,
}

/// The unwind rule for one address range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// No CFI covers this address (in compiled rows: the end of an FDE).
    None,
    /// CFA, return address and rbp given by a compact rule.
    Simple(SimpleRule),
    /// The return address is undefined: the outermost frame.
    Outermost,
    /// Evaluated by gimli from the FDE at `fde_offset`.
    Complex {
        /// The section holding the FDE.
        source: CfiSource,
        /// Byte offset of the FDE in that section.
        fde_offset: u32,
    },
}

/// One row: `rule` applies from `start` to the next row's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    /// First address (file address) the rule covers.
    pub start: u64,
    /// The rule from `start` on.
    pub rule: Rule,
    /// The FDE's CIE marks a signal trampoline: the caller's pc is exact.
    pub signal: bool,
}

/// Bytes shared between the file's owner and its tables (a mapped file, a
/// `Vec`...): tables borrow them instead of copying sections.
pub type SharedBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// A section inside shared bytes.
#[derive(Clone)]
pub(crate) struct Section {
    bytes: SharedBytes,
    range: Range<usize>,
    /// Its address in the file.
    pub addr: u64,
}

pub(crate) fn bytes_of(b: &SharedBytes) -> &[u8] {
    (**b).as_ref()
}

impl Section {
    pub fn data(&self) -> &[u8] {
        bytes_of(&self.bytes).get(self.range.clone()).unwrap_or_default()
    }
}

impl std::fmt::Debug for Section {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Section {{ addr: {:#x}, len: {:#x} }}", self.addr, self.range.len())
    }
}

/// How an address finds its FDE.
#[derive(Clone, Debug, Default)]
enum FdeIndex {
    #[default]
    Empty,
    /// `.eh_frame_hdr`'s table, in place: `count` pairs of sdata4 (initial
    /// location, FDE address), relative to the header's address, sorted.
    Hdr { table: Section, count: usize },
    /// Every FDE's (pc_begin, offset), sorted: read from the section when
    /// there is no usable header (`.debug_frame`, unusual encodings).
    Scanned(Arc<[(u64, u32)]>),
}

/// The CFI of one ELF file, in its own (unrelocated) addresses. Cloning is
/// cheap: the section bytes are shared.
#[derive(Clone, Debug, Default)]
pub struct CfiTable {
    source: Option<(CfiSource, Section)>,
    index: FdeIndex,
    pub(crate) text_addr: u64,
    pub(crate) got_addr: u64,
    pub(crate) eh_frame_hdr_addr: u64,
}

impl CfiTable {
    /// True when no FDE covers any address.
    pub fn is_empty(&self) -> bool {
        match &self.index {
            FdeIndex::Empty => true,
            FdeIndex::Hdr { count, .. } => *count == 0,
            FdeIndex::Scanned(v) => v.is_empty(),
        }
    }

    /// The section holding the FDEs, and which it is.
    pub(crate) fn fde_section(&self) -> Option<(CfiSource, &Section)> {
        self.source.as_ref().map(|(s, sec)| (*s, sec))
    }

    fn pointer_bases(&self, section: &Section) -> entry::PointerBases {
        entry::PointerBases { section: section.addr, text: self.text_addr, data: self.got_addr }
    }

    /// The offset of the FDE that may cover `addr`: the last one starting
    /// at or before it.
    fn fde_offset_for(&self, addr: u64, section: &Section) -> Option<usize> {
        match &self.index {
            FdeIndex::Empty => None,
            FdeIndex::Scanned(v) => {
                let i = v.partition_point(|e| e.0 <= addr);
                Some(v.get(i.checked_sub(1)?)?.1 as usize)
            }
            FdeIndex::Hdr { table, count } => {
                let t = table.data();
                let word = |at: usize| -> Option<u64> {
                    let b: [u8; 4] = t.get(at..at + 4)?.try_into().ok()?;
                    Some(self.eh_frame_hdr_addr.wrapping_add(i32::from_le_bytes(b) as i64 as u64))
                };
                let (mut lo, mut hi) = (0usize, *count);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if word(mid * 8)? <= addr {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                let fde = word(lo.checked_sub(1)? * 8 + 4)?;
                usize::try_from(fde.checked_sub(section.addr)?).ok()
            }
        }
    }

    /// The row covering `addr` (a file address), if any CFI does.
    pub fn find(&self, addr: u64) -> Option<Row> {
        let (source, section) = self.fde_section()?;
        let offset = self.fde_offset_for(addr, section)?;
        let complex = Rule::Complex { source, fde_offset: u32::try_from(offset).ok()? };
        let flavor = match source {
            CfiSource::EhFrame => entry::Flavor::EhFrame,
            CfiSource::DebugFrame => entry::Flavor::DebugFrame,
        };
        let found = entry::parse_fde(section.data(), offset, flavor, &self.pointer_bases(section)).and_then(|fde| {
            Ok(program::rule_at(&fde, addr, complex)?.map(|(start, rule)| Row { start, rule, signal: fde.cie.signal }))
        });
        match found {
            Ok(row) => row,
            // What the interpreter leaves (or refuses), gimli decides.
            Err(_) => self.find_with_gimli(offset, addr),
        }
    }
}
