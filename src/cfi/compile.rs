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
    // A file has a few CIEs for thousands of FDEs: each is parsed once.
    let mut cies: Vec<(S::Offset, gimli::CommonInformationEntry<R<'a>>)> = Vec::new();
    let mut cie_at = |sec: &S, bases: &BaseAddresses, offset: S::Offset| {
        if let Some((_, cie)) = cies.iter().find(|(o, _)| *o == offset) {
            return Ok(cie.clone());
        }
        let cie = sec.cie_from_offset(bases, offset)?;
        cies.push((offset, cie.clone()));
        Ok(cie)
    };
    loop {
        let entry = match entries.next() {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(e) => return Err(err(0, e)),
        };
        let CieOrFde::Fde(partial) = entry else { continue };
        let fde = partial.parse(&mut cie_at).map_err(|e| err(0, e))?;
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
    sort_rows(&mut rows);
    // In place: `w` rows are kept.
    let mut w = 0usize;
    for i in 0..rows.len() {
        let r = rows[i];
        match w.checked_sub(1).map(|l| &mut rows[l]) {
            Some(last) if last.start == r.start => *last = r,
            Some(last) if last.rule == r.rule && last.signal == r.signal => {}
            _ => {
                rows[w] = r;
                w += 1;
            }
        }
    }
    rows.truncate(w);
    rows.shrink_to_fit();
    rows
}

fn row_key(r: &Row) -> (u64, bool) {
    (r.start, r.rule != Rule::None)
}

/// Sorts rows by `row_key`, stably. Each FDE's rows ascend and end with
/// its end marker, and FDEs do not overlap: the FDEs (libc: 3700, in 200
/// interleaved ascending runs) are put in order by their first row and,
/// when that gives strictly ascending keys, it is the stable sort's result
/// (there are no ties); otherwise (overlapping FDEs) the rows are sorted
/// one by one.
fn sort_rows(rows: &mut Vec<Row>) {
    let mut runs: Vec<(u64, bool, usize, usize)> = Vec::new();
    let mut begin = 0usize;
    for i in 1..=rows.len() {
        if i == rows.len() || rows[i - 1].rule == Rule::None || row_key(&rows[i]) <= row_key(&rows[i - 1]) {
            let (start, real) = row_key(&rows[begin]);
            runs.push((start, real, begin, i));
            begin = i;
        }
    }
    if runs.len() <= 1 {
        return;
    }
    runs.sort_by_key(|r| (r.0, r.1));
    let mut joined = Vec::with_capacity(rows.len());
    for &(_, _, b, e) in &runs {
        joined.extend_from_slice(&rows[b..e]);
    }
    if joined.windows(2).all(|w| row_key(&w[0]) < row_key(&w[1])) {
        *rows = joined;
    } else {
        rows.sort_by_key(row_key);
    }
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

    /// Sorting by runs gives the stable sort's order, ties (overlapping
    /// FDEs, zero-length rows) included.
    #[test]
    fn sort_by_runs_is_stable_sort() {
        let rule = |i: u64| {
            Rule::Simple(SimpleRule { cfa_from_bp: i % 2 == 0, cfa_offset: i as i32, ra_offset: -8, bp: BpRule::Same, others_unchanged: true })
        };
        // FDEs as (start, row count, row step): out of order, adjacent,
        // overlapping, duplicated, and one with equal row starts.
        let fdes: &[&[(u64, u64, u64)]] = &[
            &[(0x3000, 4, 0x10), (0x1000, 3, 0x20), (0x2000, 5, 0x8), (0x1060, 2, 0x10)],
            &[(0x1000, 3, 0x10), (0x1020, 3, 0x10)],
            &[(0x1000, 2, 0x10), (0x1000, 2, 0x10), (0x500, 1, 0x10)],
            &[(0x1000, 3, 0), (0x900, 2, 0x40)],
            &[(0x100, 3, 0x10)],
            &[],
        ];
        for (k, set) in fdes.iter().enumerate() {
            let mut rows = Vec::new();
            for (n, &(start, count, step)) in set.iter().enumerate() {
                for i in 0..count {
                    rows.push(row(start + i * step, rule(n as u64 * 10 + i)));
                }
                rows.push(row(start + count * step.max(1), Rule::None));
            }
            let mut expected = rows.clone();
            expected.sort_by_key(row_key);
            sort_rows(&mut rows);
            assert_eq!(rows, expected, "set {k}");
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
