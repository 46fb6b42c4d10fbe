//! ORC tables from ELF files: a vmlinux (sections at their link addresses)
//! or a module `.ko` (ip table filled by relocations, unsorted).

use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget, SectionKind};

use super::{ORC_ENTRY_SIZE, OrcEntry, OrcError, OrcFormat, OrcTable, format_from_header, format_from_release};

/// The raw ORC sections of an executable ELF (vmlinux).
#[derive(Clone, Copy, Debug)]
pub struct OrcSections<'data> {
    /// `.orc_unwind_ip`: little-endian s32s, each relative to its own address.
    pub ips: &'data [u8],
    /// Link address of `.orc_unwind_ip`.
    pub ips_addr: u64,
    /// `.orc_unwind`: 6-byte entries in parallel with `ips`.
    pub entries: &'data [u8],
    /// `.orc_header` (a 20-byte SHA-1), present from 6.4 on.
    pub header: Option<&'data [u8]>,
    /// The GNU build ID, when the file has one.
    pub build_id: Option<&'data [u8]>,
    /// From the `Linux version ...` banner in `.rodata`, when present.
    pub release: Option<&'data str>,
}

fn section_data<'data>(file: &object::File<'data>, name: &'static str) -> Result<Option<(&'data [u8], u64)>, OrcError> {
    let Some(s) = file.section_by_name(name) else { return Ok(None) };
    if s.kind() == SectionKind::UninitializedData {
        return Ok(None);
    }
    let data = s.data().map_err(|_| OrcError::Truncated { which: name, claimed: s.size(), available: 0 })?;
    if (data.len() as u64) < s.size() {
        return Err(OrcError::Truncated { which: name, claimed: s.size(), available: data.len() as u64 });
    }
    Ok(Some((data, s.address())))
}

/// Finds the kernel release in the `Linux version X ...` banner.
fn banner_release<'data>(file: &object::File<'data>) -> Option<&'data str> {
    let (rodata, _) = section_data(file, ".rodata").ok().flatten()?;
    const PREFIX: &[u8] = b"Linux version ";
    let at = rodata.windows(PREFIX.len()).position(|w| w == PREFIX)? + PREFIX.len();
    let rest = &rodata[at..];
    let end = rest.iter().position(|&b| b == b' ' || b == 0)?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// Finds the ORC sections, build ID and banner release of a vmlinux image.
pub fn orc_sections<'data>(data: &'data [u8]) -> Result<OrcSections<'data>, OrcError> {
    let file = object::File::parse(data).map_err(|_| OrcError::Elf("not a readable ELF file"))?;
    let (ips, ips_addr) = section_data(&file, ".orc_unwind_ip")?.ok_or(OrcError::MissingSections)?;
    let (entries, _) = section_data(&file, ".orc_unwind")?.ok_or(OrcError::MissingSections)?;
    let header = section_data(&file, ".orc_header")?.map(|(d, _)| d);
    let build_id = file.build_id().ok().flatten();
    Ok(OrcSections { ips, ips_addr, entries, header, build_id, release: banner_release(&file) })
}

/// How the format was chosen, for reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatSource {
    /// Given by the caller.
    Explicit,
    /// Named by `.orc_header`.
    Header,
    /// Decided by the kernel release, given or read from the banner.
    Release,
}

/// Chooses the format: an explicit one, else the header's, else the
/// release's (given, or read from the banner). Never a guess.
pub fn choose_format(
    sections: &OrcSections<'_>,
    explicit: Option<OrcFormat>,
    release: Option<&str>,
) -> Result<(OrcFormat, FormatSource), OrcError> {
    if let Some(f) = explicit {
        return Ok((f, FormatSource::Explicit));
    }
    if let Some(h) = sections.header {
        return Ok((format_from_header(h)?, FormatSource::Header));
    }
    match release.or(sections.release) {
        // A release from 6.4 on must come with a header: its absence means
        // the sections were not what we think.
        Some(r) => match format_from_release(r)? {
            OrcFormat::V3 => Err(OrcError::UnknownFormat),
            f => Ok((f, FormatSource::Release)),
        },
        None => Err(OrcError::UnknownFormat),
    }
}

/// Reads the ORC table of a vmlinux file.
pub fn vmlinux_table<'data>(
    data: &'data [u8],
    explicit: Option<OrcFormat>,
    release: Option<&str>,
) -> Result<OrcTable<'data>, OrcError> {
    let s = orc_sections(data)?;
    let (format, _) = choose_format(&s, explicit, release)?;
    OrcTable::new(s.ips, s.entries, s.ips_addr, format)
}

/// One entry of a relocatable object, named as objtool names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelocatedEntry {
    /// Section name for section symbols, else the symbol's name.
    pub symbol: String,
    /// The relocation's addend.
    pub addend: i64,
    /// The text section the entry points into, and the offset there.
    pub section: String,
    /// Offset of the entry's ip in `section` (symbol value + addend).
    pub offset: u64,
    /// The six `.orc_unwind` bytes, undecoded.
    pub entry: [u8; ORC_ENTRY_SIZE],
}

/// The ORC entries of a module `.ko`, in file order.
pub fn module_entries(data: &[u8]) -> Result<Vec<RelocatedEntry>, OrcError> {
    let file = object::File::parse(data).map_err(|_| OrcError::Elf("not a readable ELF file"))?;
    let ip_sec = file.section_by_name(".orc_unwind_ip").ok_or(OrcError::MissingSections)?;
    let (entries, _) = section_data(&file, ".orc_unwind")?.ok_or(OrcError::MissingSections)?;
    if entries.len() % ORC_ENTRY_SIZE != 0 {
        return Err(OrcError::EntrySectionSize { entry_bytes: entries.len() as u64 });
    }
    let count = entries.len() / ORC_ENTRY_SIZE;
    if ip_sec.size() != count as u64 * 4 {
        return Err(OrcError::CountMismatch { ips: ip_sec.size() / 4, entries: count as u64 });
    }
    let mut out: Vec<Option<RelocatedEntry>> = vec![None; count];
    for (i, (offset, reloc)) in ip_sec.relocations().enumerate() {
        let bad = OrcError::BadRelocation { index: i as u64 };
        let slot = usize::try_from(offset / 4).map_err(|_| bad)?;
        let RelocationTarget::Symbol(sym_index) = reloc.target() else { return Err(bad) };
        let sym = file.symbol_by_index(sym_index).map_err(|_| bad)?;
        let sec_index = sym.section_index().ok_or(bad)?;
        let section = file.section_by_index(sec_index).map_err(|_| bad)?;
        let section_name = section.name().map_err(|_| bad)?.to_string();
        let symbol = if sym.kind() == object::SymbolKind::Section {
            section_name.clone()
        } else {
            sym.name().map_err(|_| bad)?.to_string()
        };
        let target = (sym.address() as i64).wrapping_add(reloc.addend());
        // r_offset comes from the file: a huge one must not wrap onto a
        // real entry.
        let o = slot.checked_mul(ORC_ENTRY_SIZE).ok_or(bad)?;
        let e = entries.get(o..o.checked_add(ORC_ENTRY_SIZE).ok_or(bad)?).ok_or(bad)?;
        let place = out.get_mut(slot).ok_or(bad)?;
        *place = Some(RelocatedEntry {
            symbol,
            addend: reloc.addend(),
            section: section_name,
            offset: target as u64,
            entry: [e[0], e[1], e[2], e[3], e[4], e[5]],
        });
    }
    out.into_iter().enumerate().map(|(i, e)| e.ok_or(OrcError::BadRelocation { index: i as u64 })).collect()
}

/// The format of a module's table: explicit, else its `.orc_header`, else
/// the release in its `vermagic`.
pub fn module_format(data: &[u8], explicit: Option<OrcFormat>) -> Result<OrcFormat, OrcError> {
    if let Some(f) = explicit {
        return Ok(f);
    }
    let file = object::File::parse(data).map_err(|_| OrcError::Elf("not a readable ELF file"))?;
    if let Some((h, _)) = section_data(&file, ".orc_header")? {
        return format_from_header(h);
    }
    let (modinfo, _) = section_data(&file, ".modinfo")?.ok_or(OrcError::UnknownFormat)?;
    let release = modinfo
        .split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(b"vermagic="))
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.split(' ').next())
        .ok_or(OrcError::UnknownFormat)?;
    match format_from_release(release)? {
        // 6.4+ modules carry .orc_header; without one, do not guess.
        OrcFormat::V3 => Err(OrcError::UnknownFormat),
        f => Ok(f),
    }
}

/// A module's table once its text sections are placed: `base(section)`
/// gives each section's load address (from the running kernel or a dump).
pub fn module_table(
    entries: &[RelocatedEntry],
    format: OrcFormat,
    mut base: impl FnMut(&str) -> Option<u64>,
) -> Result<OrcTable<'static>, OrcError> {
    let mut pairs = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let b = base(&e.section).ok_or(OrcError::BadRelocation { index: i as u64 })?;
        pairs.push((b.wrapping_add(e.offset), e.entry));
    }
    OrcTable::from_unsorted(pairs, format)
}

/// Decodes one relocated entry.
pub fn decode(e: &RelocatedEntry, format: OrcFormat) -> OrcEntry {
    OrcEntry::decode(e.entry, format)
}
