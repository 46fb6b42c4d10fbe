//! Turning gimli's row-by-row CFI into the sorted compact table.

use gimli::{
    BaseAddresses, CfaRule, CieOrFde, DebugFrame, EhFrame, LittleEndian, RegisterRule, UnwindContext, UnwindSection,
    X86_64,
};
use object::{Object, ObjectSection};

use super::{BpRule, CfiSource, CfiTable, Row, Rule, SectionCopy, SimpleRule};

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CfiError {
    #[error("not a readable ELF file")]
    NotElf,
    #[error("{section} at offset {offset:#x}: {error}")]
    Parse { section: &'static str, offset: u64, error: gimli::Error },
    #[error("{section} is {size} bytes, too large")]
    TooLarge { section: &'static str, size: u64 },
}

type R<'a> = gimli::EndianSlice<'a, LittleEndian>;

/// Callee-saved registers other than rbp (x86-64 SysV).
const OTHERS: [gimli::Register; 5] = [X86_64::RBX, X86_64::R12, X86_64::R13, X86_64::R14, X86_64::R15];

fn compact<T: gimli::ReaderOffset>(row: &gimli::UnwindTableRow<T>) -> Option<Rule> {
    let ra = match row.register(X86_64::RA) {
        Some(RegisterRule::Undefined) => return Some(Rule::Outermost),
        Some(RegisterRule::Offset(o)) => i32::try_from(o).ok()?,
        _ => return None,
    };
    let (cfa_from_bp, cfa_offset) = match row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } if *register == X86_64::RSP => (false, *offset),
        CfaRule::RegisterAndOffset { register, offset } if *register == X86_64::RBP => (true, *offset),
        _ => return None,
    };
    let bp = match row.register(X86_64::RBP) {
        None | Some(RegisterRule::SameValue) => BpRule::Same,
        Some(RegisterRule::Offset(o)) => BpRule::AtCfa(i32::try_from(o).ok()?),
        _ => return None,
    };
    if row.register(X86_64::RSP).is_some() {
        return None;
    }
    let others_unchanged = OTHERS
        .iter()
        .all(|r| matches!(row.register(*r), None | Some(RegisterRule::SameValue)));
    Some(Rule::Simple(SimpleRule { cfa_from_bp, cfa_offset: i32::try_from(cfa_offset).ok()?, ra_offset: ra, bp, others_unchanged }))
}

fn section<'d>(file: &object::File<'d>, name: &str) -> Option<(&'d [u8], u64)> {
    let s = file.section_by_name(name)?;
    if s.kind() == object::SectionKind::UninitializedData {
        return None;
    }
    Some((s.data().ok()?, s.address()))
}

/// Appends the rows of every FDE in `sec`.
fn compile_section<'a, S: UnwindSection<R<'a>>>(
    sec: &S,
    bases: &BaseAddresses,
    source: CfiSource,
    name: &'static str,
    rows: &mut Vec<Row>,
) -> Result<(), CfiError> {
    let err = |offset: usize, error| CfiError::Parse { section: name, offset: offset as u64, error };
    let mut ctx = UnwindContext::new();
    let mut entries = sec.entries(bases);
    loop {
        let entry = match entries.next() {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(e) => return Err(err(0, e)),
        };
        let CieOrFde::Fde(partial) = entry else { continue };
        let fde = partial.parse(S::cie_from_offset).map_err(|e| err(0, e))?;
        let fde_offset = u32::try_from(fde.offset()).unwrap_or(u32::MAX);
        let signal = fde.cie().is_signal_trampoline();
        let mut table = fde.rows(sec, bases, &mut ctx).map_err(|e| err(fde_offset as usize, e))?;
        while let Some(row) = table.next_row().map_err(|e| err(fde_offset as usize, e))? {
            let rule = compact(row).unwrap_or(Rule::Complex { source, fde_offset });
            rows.push(Row { start: row.start_address(), rule, signal });
        }
        // Close the FDE: past its end there is no CFI unless another starts.
        rows.push(Row { start: fde.end_address(), rule: Rule::None, signal: false });
    }
    Ok(())
}

impl CfiTable {
    /// Compiles a file's `.eh_frame`, or its `.debug_frame` when it has no
    /// `.eh_frame`.
    pub fn from_elf(data: &[u8]) -> Result<CfiTable, CfiError> {
        Self::from_elf_with_debug(data, None)
    }

    /// As [`CfiTable::from_elf`], taking `.debug_frame` from a separate
    /// debug file when the binary lacks CFI of its own.
    pub fn from_elf_with_debug(data: &[u8], debug: Option<&[u8]>) -> Result<CfiTable, CfiError> {
        let file = object::File::parse(data).map_err(|_| CfiError::NotElf)?;
        let mut t = CfiTable::default();
        if let Some((_, a)) = section(&file, ".text") {
            t.text_addr = a;
        }
        if let Some((_, a)) = section(&file, ".got") {
            t.got_addr = a;
        }
        if let Some((_, a)) = section(&file, ".eh_frame_hdr") {
            t.eh_frame_hdr_addr = a;
        }
        let mut rows = Vec::new();
        if let Some((d, addr)) = section(&file, ".eh_frame").filter(|(d, _)| !d.is_empty()) {
            let mut eh = EhFrame::new(d, LittleEndian);
            eh.set_address_size(8);
            let bases = t.bases(addr);
            compile_section(&eh, &bases, CfiSource::EhFrame, ".eh_frame", &mut rows)?;
            t.eh_frame = Some(SectionCopy { data: d.to_vec(), addr });
        }
        if rows.is_empty() {
            let debug_file = match debug {
                Some(dd) => Some(object::File::parse(dd).map_err(|_| CfiError::NotElf)?),
                None => None,
            };
            let found = section(&file, ".debug_frame").or_else(|| debug_file.as_ref().and_then(|f| section(f, ".debug_frame")));
            if let Some((d, _)) = found.filter(|(d, _)| !d.is_empty()) {
                let mut df = DebugFrame::new(d, LittleEndian);
                df.set_address_size(8);
                compile_section(&df, &BaseAddresses::default(), CfiSource::DebugFrame, ".debug_frame", &mut rows)?;
                t.debug_frame = Some(SectionCopy { data: d.to_vec(), addr: 0 });
            }
        }
        t.rows = normalize(rows);
        t.build_index();
        Ok(t)
    }

    pub(crate) fn bases(&self, eh_frame_addr: u64) -> BaseAddresses {
        BaseAddresses::default()
            .set_eh_frame(eh_frame_addr)
            .set_eh_frame_hdr(self.eh_frame_hdr_addr)
            .set_text(self.text_addr)
            .set_got(self.got_addr)
    }
}

/// Sorts rows, lets a real rule win over an FDE-end marker at the same
/// address, and merges neighbours with the same rule.
fn normalize(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort_by_key(|r| (r.start, r.rule != Rule::None));
    let mut out: Vec<Row> = Vec::with_capacity(rows.len());
    for r in rows {
        match out.last_mut() {
            Some(last) if last.start == r.start => *last = r,
            Some(last) if last.rule == r.rule && last.signal == r.signal => {}
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(start: u64, rule: Rule) -> Row {
        Row { start, rule, signal: false }
    }

    #[test]
    fn normalize_rules() {
        let s = Rule::Simple(SimpleRule { cfa_from_bp: false, cfa_offset: 8, ra_offset: -8, bp: BpRule::Same, others_unchanged: true });
        let t = CfiTable {
            rows: normalize(vec![
                row(0x1010, Rule::None),
                row(0x1000, s),
                row(0x1004, s),            // merged into 0x1000
                row(0x1010, Rule::Outermost), // beats the end marker at 0x1010
                row(0x1020, Rule::None),
            ]),
            ..Default::default()
        };
        assert_eq!(t.rows().len(), 3);
        let mut indexed = t.clone();
        indexed.build_index();
        for t in [&t, &indexed] {
            assert_eq!(t.find(0xfff), None);
            assert_eq!(t.find(0x1008).unwrap().rule, s);
            assert_eq!(t.find(0x1010).unwrap().rule, Rule::Outermost);
            assert_eq!(t.find(0x1020), None);
        }
    }

    /// The lookup index gives what a search of the whole table gives, on
    /// dense rows, rows with large gaps (wider blocks) and around every
    /// row start.
    #[test]
    fn index_matches_full_search() {
        let rule = |i: u64| {
            Rule::Simple(SimpleRule {
                cfa_from_bp: false,
                cfa_offset: 8 + 8 * (i % 5) as i32,
                ra_offset: -8,
                bp: BpRule::Same,
                others_unchanged: true,
            })
        };
        let dense: Vec<Row> = (0..3000u64).map(|i| row(0x40_0000 + i * 37 + (i % 7) * 3, rule(i))).collect();
        let mut sparse: Vec<Row> = (0..200u64).map(|i| row(0x1000 + i * i * i * 4096, rule(i))).collect();
        sparse.push(row(u64::MAX - 16, Rule::None));
        let mut with_ends = dense.clone();
        with_ends.extend((0..3000u64).step_by(10).map(|i| row(0x40_0000 + i * 37 + 20, Rule::None)));
        for rows in [dense, sparse, with_ends, vec![row(0x500, rule(1))]] {
            let plain = CfiTable { rows: normalize(rows), ..Default::default() };
            let mut indexed = plain.clone();
            indexed.build_index();
            assert!(!indexed.index.is_empty());
            assert!(indexed.index.len() <= 2 * plain.rows.len().max(16) + 1, "{}", indexed.index.len());
            let mut probes = vec![0, 1, u64::MAX, u64::MAX - 17, u64::MAX - 16, u64::MAX - 15];
            for r in plain.rows() {
                probes.extend([r.start.wrapping_sub(1), r.start, r.start + 1, r.start.wrapping_add(255), r.start.wrapping_add(4096)]);
            }
            for a in probes {
                assert_eq!(indexed.find(a), plain.find(a), "{a:#x}");
            }
        }
    }
}
