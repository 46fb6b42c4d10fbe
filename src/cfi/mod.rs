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
    #[inline]
    pub fn find(&self, addr: u64) -> Option<Row> {
        let i = self.rows.partition_point(|r| r.start <= addr);
        let row = *self.rows.get(i.checked_sub(1)?)?;
        (row.rule != Rule::None).then_some(row)
    }
}
