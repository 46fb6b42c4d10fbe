//! Turning gimli's row-by-row CFI into the sorted compact table.

use gimli::{
    BaseAddresses, CfaRule, CieOrFde, DebugFrame, EhFrame, LittleEndian, RegisterRule, UnwindContext, UnwindSection,
    X86_64,
};
use object::{Object, ObjectSection};

use std::sync::Arc;

use super::{BpRule, CfiSource, CfiTable, FdeIndex, Row, Rule, Section, SharedBytes, SimpleRule, entry};

/// Why a file's CFI could not be set up or compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CfiError {
    /// The file is not a readable 64-bit ELF file.
    #[error("not a readable ELF file")]
    NotElf,
    /// gimli rejected an entry or its CFA program.
    #[error("{section} at offset {offset:#x}: {error}")]
    Parse {
        /// `".eh_frame"` or `".debug_frame"`.
        section: &'static str,
        /// Byte offset of the FDE whose rows failed; 0 when reading or parsing
        /// the entries themselves failed.
        offset: u64,
        /// gimli's error.
        error: gimli::Error,
    },
    /// The built-in entry parser rejected an entry while indexing FDEs.
    #[error("{section} at offset {offset:#x}: {error}")]
    Entry {
        /// `".eh_frame"` or `".debug_frame"`.
        section: &'static str,
        /// Byte offset of the entry in the section.
        offset: u64,
        /// The parser's error.
        error: super::entry::EntryError,
    },
    /// The section is too large for 32-bit FDE offsets.
    #[error("{section} is {size} bytes, too large")]
    TooLarge {
        /// `".eh_frame"` or `".debug_frame"`.
        section: &'static str,
        /// The section's size, in bytes.
        size: u64,
    },
}

type R<'a> = gimli::EndianSlice<'a, LittleEndian>;

/// Callee-saved registers other than rbp (x86-64 SysV).
const OTHERS: [gimli::Register; 5] = [X86_64::RBX, X86_64::R12, X86_64::R13, X86_64::R14, X86_64::R15];

pub(crate) fn compact<T: gimli::ReaderOffset>(row: &gimli::UnwindTableRow<T>) -> Option<Rule> {
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
    let others_unchanged = OTHERS.iter().all(|r| matches!(row.register(*r), None | Some(RegisterRule::SameValue)));
    Some(Rule::Simple(SimpleRule {
        cfa_from_bp,
        cfa_offset: i32::try_from(cfa_offset).ok()?,
        ra_offset: ra,
        bp,
        others_unchanged,
    }))
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

/// Where a section's bytes come from: copied out of a borrowed file, or
/// shared with the file's owner.
enum Holder {
    Copy,
    Shared(SharedBytes),
}

/// The sections CFI needs, found in one pass over the section headers
/// (without parsing symbol or relocation tables: this is the whole setup
/// cost of a table).
#[derive(Default)]
struct Found {
    text: u64,
    got: u64,
    eh_frame: Option<Header>,
    eh_frame_hdr: Option<Header>,
    debug_frame: Option<Header>,
}

#[derive(Clone, Copy)]
struct Header {
    addr: u64,
    offset: u64,
    size: u64,
    compressed: bool,
}

fn find_sections(data: &[u8]) -> Result<Found, CfiError> {
    use object::read::elf::{FileHeader, SectionHeader};
    let header = object::elf::FileHeader64::<object::Endianness>::parse(data).map_err(|_| CfiError::NotElf)?;
    let endian = header.endian().map_err(|_| CfiError::NotElf)?;
    let headers = header.section_headers(endian, data).map_err(|_| CfiError::NotElf)?;
    // Section names, compared in place (no search for each name's end).
    let names = header
        .shstrndx(endian, data)
        .ok()
        .and_then(|i| headers.get(i as usize))
        .and_then(|sh| sh.data(endian, data).ok())
        .unwrap_or_default();
    let mut found = Found::default();
    for sh in headers {
        let Some(name) = usize::try_from(sh.sh_name(endian)).ok().and_then(|o| names.get(o..)) else { continue };
        let is = |want: &[u8]| name.len() > want.len() && name[want.len()] == 0 && name.starts_with(want);
        if name.first() != Some(&b'.') {
            continue;
        }
        let h = || Header {
            addr: sh.sh_addr(endian),
            offset: sh.sh_offset(endian),
            size: sh.sh_size(endian),
            compressed: sh.sh_flags(endian).0 & (1 << 11) != 0, // SHF_COMPRESSED
        };
        let progbits = || sh.sh_type(endian) != object::elf::SHT_NOBITS;
        match name.get(1) {
            Some(b't') if is(b".text") => found.text = sh.sh_addr(endian),
            Some(b'g') if is(b".got") => found.got = sh.sh_addr(endian),
            Some(b'e') if is(b".eh_frame") && progbits() => found.eh_frame = Some(h()),
            Some(b'e') if is(b".eh_frame_hdr") && progbits() => found.eh_frame_hdr = Some(h()),
            Some(b'd') if is(b".debug_frame") && progbits() => found.debug_frame = Some(h()),
            _ => {}
        }
    }
    Ok(found)
}

/// A section's bytes as a [`Section`], shared or copied. Compressed
/// sections (debug files) are always copied, decompressed.
fn hold(data: &[u8], h: Option<Header>, name: &str, holder: &Holder) -> Option<Section> {
    let h = h?;
    let range = usize::try_from(h.offset).ok()?..usize::try_from(h.offset.checked_add(h.size)?).ok()?;
    let bytes = data.get(range.clone())?;
    let section = match holder {
        _ if h.compressed => {
            let file = object::File::parse(data).ok()?;
            let d = file.section_by_name(name)?.uncompressed_data().ok()?.into_owned();
            let len = d.len();
            Section { bytes: Arc::new(d), range: 0..len, addr: h.addr }
        }
        Holder::Shared(shared) => Section { bytes: shared.clone(), range, addr: h.addr },
        Holder::Copy => Section { bytes: Arc::new(bytes.to_vec()), range: 0..bytes.len(), addr: h.addr },
    };
    Some(section).filter(|s| !s.range.is_empty())
}

/// `.eh_frame_hdr`'s table when it is the usual sorted array of sdata4
/// pairs relative to the header (`DW_EH_PE_datarel | DW_EH_PE_sdata4`).
fn hdr_index(hdr: &Section) -> Option<FdeIndex> {
    let d = hdr.data();
    let mut c = entry::Cursor::new(d, 0);
    let (version, ptr_enc, count_enc, table_enc) = (c.u8().ok()?, c.u8().ok()?, c.u8().ok()?, c.u8().ok()?);
    if version != 1 || table_enc != 0x3b || count_enc == 0xff {
        return None;
    }
    let bases = entry::PointerBases { section: hdr.addr, text: 0, data: hdr.addr };
    if ptr_enc != 0xff {
        c.pointer(ptr_enc, &bases).ok()?;
    }
    let count = usize::try_from(c.pointer(count_enc, &bases).ok()?).ok()?;
    let start = hdr.range.start.checked_add(c.pos())?;
    // The claimed count must fit in the section.
    let end = start.checked_add(count.checked_mul(8)?)?;
    if end > hdr.range.end {
        return None;
    }
    Some(FdeIndex::Hdr { table: Section { bytes: hdr.bytes.clone(), range: start..end, addr: hdr.addr }, count })
}

impl CfiTable {
    /// Reads a file's `.eh_frame`, or its `.debug_frame` when it has no
    /// `.eh_frame`, copying the sections it needs.
    pub fn from_elf(data: &[u8]) -> Result<CfiTable, CfiError> {
        Self::from_elf_with_debug(data, None)
    }

    /// As [`CfiTable::from_elf`], taking `.debug_frame` from a separate
    /// debug file when the binary lacks CFI of its own.
    pub fn from_elf_with_debug(data: &[u8], debug: Option<&[u8]>) -> Result<CfiTable, CfiError> {
        Self::build(data, &Holder::Copy, debug.map(|d| (d, &Holder::Copy)))
    }

    /// As [`CfiTable::from_elf_with_debug`], sharing the files' bytes
    /// instead of copying sections: setting up is then a few microseconds.
    pub fn from_shared(data: SharedBytes, debug: Option<SharedBytes>) -> Result<CfiTable, CfiError> {
        let main = Holder::Shared(data.clone());
        let debug = debug.map(|d| (d.clone(), Holder::Shared(d)));
        Self::build(super::bytes_of(&data), &main, debug.as_ref().map(|(d, h)| (super::bytes_of(d), h)))
    }

    fn build(data: &[u8], holder: &Holder, debug: Option<(&[u8], &Holder)>) -> Result<CfiTable, CfiError> {
        let found = find_sections(data)?;
        let mut t = CfiTable {
            text_addr: found.text,
            got_addr: found.got,
            eh_frame_hdr_addr: found.eh_frame_hdr.map_or(0, |h| h.addr),
            ..Default::default()
        };
        if let Some(eh) = hold(data, found.eh_frame, ".eh_frame", holder) {
            let index = match hold(data, found.eh_frame_hdr, ".eh_frame_hdr", holder).and_then(|h| hdr_index(&h)) {
                Some(i) => i,
                None => scan(&eh, CfiSource::EhFrame, &t.pointer_bases(&eh))?,
            };
            t.source = Some((CfiSource::EhFrame, eh));
            t.index = index;
        }
        if t.is_empty() {
            let own = hold(data, found.debug_frame, ".debug_frame", holder);
            let found = match (own, debug) {
                (Some(df), _) => Some(df),
                (None, Some((d, h))) => hold(d, find_sections(d)?.debug_frame, ".debug_frame", h),
                (None, None) => None,
            };
            if let Some(mut df) = found {
                // .debug_frame is not loaded: its pointers are absolute.
                df.addr = 0;
                t.index = scan(&df, CfiSource::DebugFrame, &entry::PointerBases::default())?;
                t.source = Some((CfiSource::DebugFrame, df));
            }
        }
        Ok(t)
    }

    pub(crate) fn bases(&self, eh_frame_addr: u64) -> BaseAddresses {
        BaseAddresses::default()
            .set_eh_frame(eh_frame_addr)
            .set_eh_frame_hdr(self.eh_frame_hdr_addr)
            .set_text(self.text_addr)
            .set_got(self.got_addr)
    }

    /// The row at `addr` of the FDE at `offset`, by gimli: for what the
    /// interpreter does not handle. None when gimli cannot either.
    pub(crate) fn find_with_gimli(&self, offset: usize, addr: u64) -> Option<Row> {
        let (source, section) = self.fde_section()?;
        let mut ctx: UnwindContext<usize> = UnwindContext::new();
        let complex = Rule::Complex { source, fde_offset: u32::try_from(offset).ok()? };
        let d = section.data();
        let (rule, signal) = match source {
            CfiSource::EhFrame => {
                let mut sec = EhFrame::new(d, LittleEndian);
                sec.set_address_size(8);
                let bases = self.bases(section.addr);
                let fde = sec.fde_from_offset(&bases, gimli::EhFrameOffset(offset), EhFrame::cie_from_offset).ok()?;
                let row = fde.unwind_info_for_address(&sec, &bases, &mut ctx, addr).ok()?;
                (compact(row).unwrap_or(complex), fde.cie().is_signal_trampoline())
            }
            CfiSource::DebugFrame => {
                let mut sec = DebugFrame::new(d, LittleEndian);
                sec.set_address_size(8);
                let bases = BaseAddresses::default();
                let fde =
                    sec.fde_from_offset(&bases, gimli::DebugFrameOffset(offset), DebugFrame::cie_from_offset).ok()?;
                let row = fde.unwind_info_for_address(&sec, &bases, &mut ctx, addr).ok()?;
                (compact(row).unwrap_or(complex), fde.cie().is_signal_trampoline())
            }
        };
        Some(Row { start: addr, rule, signal })
    }

    /// Every row of every FDE, compiled by gimli and sorted (rows with
    /// [`Rule::None`] close each FDE): the whole table at once, for checks
    /// and diagnostics. Lookups do not need it.
    pub fn compile_rows(&self) -> Result<Vec<Row>, CfiError> {
        let Some((source, section)) = self.fde_section() else { return Ok(Vec::new()) };
        let mut rows = Vec::new();
        let d = section.data();
        match source {
            CfiSource::EhFrame => {
                let mut eh = EhFrame::new(d, LittleEndian);
                eh.set_address_size(8);
                compile_section(&eh, &self.bases(section.addr), source, ".eh_frame", &mut rows)?;
            }
            CfiSource::DebugFrame => {
                let mut df = DebugFrame::new(d, LittleEndian);
                df.set_address_size(8);
                compile_section(&df, &BaseAddresses::default(), source, ".debug_frame", &mut rows)?;
            }
        }
        Ok(normalize(rows))
    }
}

/// Every FDE's (pc_begin, offset), sorted by pc_begin. An FDE this reader
/// leaves to gimli is skipped: its addresses have no CFI, so unreliable.
fn scan(section: &Section, source: CfiSource, bases: &entry::PointerBases) -> Result<FdeIndex, CfiError> {
    let name = match source {
        CfiSource::EhFrame => ".eh_frame",
        CfiSource::DebugFrame => ".debug_frame",
    };
    let flavor = match source {
        CfiSource::EhFrame => entry::Flavor::EhFrame,
        CfiSource::DebugFrame => entry::Flavor::DebugFrame,
    };
    let d = section.data();
    let mut out: Vec<(u64, u32)> = Vec::new();
    let mut offset = 0usize;
    while offset < d.len() {
        let at = u32::try_from(offset).map_err(|_| CfiError::TooLarge { section: name, size: d.len() as u64 })?;
        match entry::parse_entry(d, offset, flavor, bases) {
            Ok(entry::Entry::End) => break,
            Ok(entry::Entry::Cie { next }) => offset = next,
            Ok(entry::Entry::Fde(f)) => {
                if f.pc_end > f.pc_begin {
                    out.push((f.pc_begin, at));
                }
                offset = f.next;
            }
            Err(entry::EntryError::Unsupported) => match entry::next_entry(d, offset) {
                Some(next) => offset = next,
                None => break,
            },
            Err(e) => return Err(CfiError::Entry { section: name, offset: offset as u64, error: e }),
        }
    }
    out.sort_unstable();
    Ok(FdeIndex::Scanned(out.into()))
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
        let s = Rule::Simple(SimpleRule {
            cfa_from_bp: false,
            cfa_offset: 8,
            ra_offset: -8,
            bp: BpRule::Same,
            others_unchanged: true,
        });
        let rows = normalize(vec![
            row(0x1010, Rule::None),
            row(0x1000, s),
            row(0x1004, s),               // merged into 0x1000
            row(0x1010, Rule::Outermost), // beats the end marker at 0x1010
            row(0x1020, Rule::None),
        ]);
        assert_eq!(rows, vec![row(0x1000, s), row(0x1010, Rule::Outermost), row(0x1020, Rule::None)]);
    }

    /// Sorting by runs gives the stable sort's order, ties (overlapping
    /// FDEs, zero-length rows) included.
    #[test]
    fn sort_by_runs_is_stable_sort() {
        let rule = |i: u64| {
            Rule::Simple(SimpleRule {
                cfa_from_bp: i % 2 == 0,
                cfa_offset: i as i32,
                ra_offset: -8,
                bp: BpRule::Same,
                others_unchanged: true,
            })
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
}
