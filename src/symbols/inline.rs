//! Which functions were inlined at an address, from a module's DWARF
//! (addr2line). A patched function inlined into another is patched code
//! running under another name; only DWARF can tell.

use std::borrow::Cow;
use std::sync::Arc;

use addr2line::gimli;
use object::{Object, ObjectSection};

use crate::verdict::InlineFrames;

// Arc, not Rc: a resolver may be shared behind a lock (the C API's unwinder).
type Reader = gimli::EndianArcSlice<gimli::RunTimeEndian>;

struct ModuleDwarf {
    object: String,
    start: u64,
    end: u64,
    bias: u64,
    ctx: addr2line::Context<Reader>,
}

/// The DWARF of several modules, by runtime address range.
#[derive(Default)]
pub struct InlineResolver {
    modules: Vec<ModuleDwarf>,
}

/// Why a module's DWARF could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InlineError {
    /// The data is not a readable ELF file.
    #[error("not a readable ELF file")]
    NotElf,
    /// The file has no `.debug_info` (stripped, or the debug file is elsewhere).
    #[error("no DWARF debug info (.debug_info)")]
    NoDwarf,
    /// Loading the DWARF for address lookups (addr2line) failed.
    #[error("DWARF: {0}")]
    Dwarf(gimli::Error),
    /// Scanning the DWARF for inlined functions (`dwarf_inlines`) failed.
    #[error("DWARF: {0}")]
    Scan(::gimli::Error),
}

/// Does the DWARF of `elf` (the binary or its debug file) know `function`
/// as a function that was inlined somewhere: a DW_TAG_subprogram of that
/// name with DW_AT_inline `DW_INL_inlined` or `DW_INL_declared_inlined`
/// (the abstract instance of its inlined copies)? Names on the entry
/// itself only (C; a C++ method named through DW_AT_specification is not
/// found, and stays an error).
pub fn dwarf_inlines(elf: &[u8], function: &str) -> Result<bool, InlineError> {
    use ::gimli as g;
    let file = object::File::parse(elf).map_err(|_| InlineError::NotElf)?;
    if file.section_by_name(".debug_info").is_none() {
        return Err(InlineError::NoDwarf);
    }
    let endian = if file.is_little_endian() { g::RunTimeEndian::Little } else { g::RunTimeEndian::Big };
    let load = |id: g::SectionId| -> Result<Cow<'_, [u8]>, g::Error> {
        Ok(file.section_by_name(id.name()).and_then(|s| s.uncompressed_data().ok()).unwrap_or(Cow::Borrowed(&[])))
    };
    let sections = g::DwarfSections::load(load).map_err(InlineError::Scan)?;
    let dwarf = sections.borrow(|s| g::EndianSlice::new(s, endian));
    let mut units = dwarf.units();
    while let Some(header) = units.next().map_err(InlineError::Scan)? {
        let unit = dwarf.unit(header).map_err(InlineError::Scan)?;
        let mut entries = unit.entries();
        while let Some(e) = entries.next_dfs().map_err(InlineError::Scan)? {
            if e.tag() != g::DW_TAG_subprogram {
                continue;
            }
            let inlined = matches!(
                e.attr_value(g::DW_AT_inline),
                Some(g::AttributeValue::Inline(g::DW_INL_inlined | g::DW_INL_declared_inlined))
            );
            if !inlined {
                continue;
            }
            let Some(name) = e.attr_value(g::DW_AT_name) else { continue };
            if dwarf.attr_string(&unit, name).is_ok_and(|n| n.slice() == function.as_bytes()) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

impl InlineResolver {
    /// A resolver with no modules.
    pub fn new() -> Self {
        InlineResolver::default()
    }

    /// Adds a module mapped at [start, end) with `bias`, reading DWARF from
    /// `elf` (the binary itself or its separate debug file).
    pub fn add(&mut self, object: &str, start: u64, end: u64, bias: u64, elf: &[u8]) -> Result<(), InlineError> {
        let file = object::File::parse(elf).map_err(|_| InlineError::NotElf)?;
        if file.section_by_name(".debug_info").is_none() {
            return Err(InlineError::NoDwarf);
        }
        let endian = if file.is_little_endian() { gimli::RunTimeEndian::Little } else { gimli::RunTimeEndian::Big };
        let load = |id: gimli::SectionId| -> Result<Reader, gimli::Error> {
            let data: Cow<'_, [u8]> =
                file.section_by_name(id.name()).and_then(|s| s.uncompressed_data().ok()).unwrap_or(Cow::Borrowed(&[]));
            Ok(gimli::EndianArcSlice::new(Arc::from(&*data), endian))
        };
        let dwarf = gimli::Dwarf::load(load).map_err(InlineError::Dwarf)?;
        let ctx = addr2line::Context::from_dwarf(dwarf).map_err(InlineError::Dwarf)?;
        self.modules.push(ModuleDwarf { object: object.to_string(), start, end, bias, ctx });
        Ok(())
    }

    /// True when no module has been added.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }
}

impl InlineFrames for InlineResolver {
    fn inlined_at(&mut self, pc: u64, found: &mut dyn FnMut(&str, &str)) {
        let Some(m) = self.modules.iter().find(|m| pc >= m.start && pc < m.end) else { return };
        let Ok(mut frames) = m.ctx.find_frames(pc.wrapping_sub(m.bias)).skip_all_loads() else { return };
        // Innermost first; the last frame is the enclosing physical function.
        let mut names = Vec::new();
        while let Ok(Some(f)) = frames.next() {
            if let Some(name) = f.function.as_ref().and_then(|n| n.raw_name().ok()) {
                names.push(name.into_owned());
            }
        }
        names.pop();
        for n in &names {
            found(&m.object, n);
        }
    }
}
