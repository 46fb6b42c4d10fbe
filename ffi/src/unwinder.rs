//! `lpstack_unwinder`: what a walk needs besides memory. A kernel unwinder
//! holds ORC tables and the text ranges that count as code; a userspace one
//! holds the mapped ELF files with their compiled CFI. Both hold symbols,
//! for resolving funcs.txt and for `lpstack_unwinder_symbolize`.

use std::ffi::c_char;
use std::sync::Mutex;

use lpstack_core::cfi::CfiTable;
use lpstack_core::orc::elf::{choose_format, module_entries, module_format, module_table, orc_sections};
use lpstack_core::orc::{OrcError, OrcFormat, OrcTable, OrcTables};
use lpstack_core::process::modules::{FileAccess, find_debug};
use lpstack_core::symbols::inline::InlineResolver;
use lpstack_core::symbols::{SymbolTable, Symbolizer, parse_system_map, symbols_from_elf};
use lpstack_core::walk::{CodeMap, CodeRanges, TrampolineKind, UserModule, UserModules};
use object::{Object, ObjectSegment};

use crate::tables::{CEnum, Word, enum_arg};
use crate::{Error, Result, arg, arg_mut, array_stride, bytes, copy_str, element, guard, lpstack_result, put, string};

/// An unwind context: kernel (ORC) or userspace (DWARF CFI). Immutable
/// once built, so one unwinder may serve several threads at once.
pub struct lpstack_unwinder {
    pub(crate) kind: Kind,
    pub(crate) symbols: Symbolizer,
    /// DWARF of modules whose inlined copies of patched functions are
    /// checked (opt-in: lpstack_unwinder_add_dwarf). Behind a lock: its
    /// lookups parse lazily, and decide calls may share the unwinder.
    pub(crate) inlines: Option<Mutex<InlineResolver>>,
}

// The header promises that one unwinder may serve several threads.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<lpstack_unwinder>();
};

pub(crate) enum Kind {
    Kernel(Kernel),
    User(UserModules),
}

pub(crate) struct Kernel {
    pub tables: OrcTables<'static>,
    /// The layout of the first table: the default for tables added later.
    pub format: OrcFormat,
    /// The tables' own ranges: code unless the caller names the text.
    pub table_text: CodeRanges,
    /// Ranges from `lpstack_unwinder_add_text`; replace `table_text` once
    /// there is one.
    pub text: CodeRanges,
    /// Return trampolines (kept apart: they apply whichever text is used).
    pub trampolines: CodeRanges,
}

impl Kernel {
    pub fn code(&self) -> KernelCode<'_> {
        let ranges = if self.text.ranges().is_empty() { &self.table_text } else { &self.text };
        KernelCode { ranges, trampolines: &self.trampolines }
    }
}

/// The kernel's `__kernel_text_address` and trampolines, borrowed from a
/// shared unwinder (the walk wants a `&mut CodeMap`).
pub(crate) struct KernelCode<'a> {
    ranges: &'a CodeRanges,
    trampolines: &'a CodeRanges,
}

impl CodeMap for KernelCode<'_> {
    fn is_code(&self, pc: u64) -> bool {
        self.ranges.is_code(pc)
    }
    fn trampoline(&self, pc: u64) -> Option<TrampolineKind> {
        self.trampolines.trampoline(pc)
    }
}

/// Kinds of return trampolines (`lpstack_unwinder_add_trampoline`). A
/// return address equal to one makes the walk unreliable, as in the kernel
/// when it cannot recover the real return address.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum lpstack_trampoline {
    /// ftrace's function-graph `return_to_handler`.
    FtraceGraph = 0,
    /// kretprobe's trampoline (before rethook).
    Kretprobe = 1,
    /// `arch_rethook_trampoline`.
    Rethook = 2,
}

c_enum! {
    lpstack_trampoline <=> TrampolineKind, name {
        FtraceGraph: c"ftrace-graph" <=> FtraceGraph,
        Kretprobe: c"kretprobe" <=> Kretprobe,
        Rethook: c"rethook" <=> Rethook,
    }
}

/// As a decision's `reason_detail`.
impl Word for TrampolineKind {
    fn to_word(self) -> u64 {
        lpstack_trampoline::from(self).to_u32().into()
    }
    fn from_word(w: u64) -> Option<Self> {
        lpstack_trampoline::from_u32(w.try_into().ok()?).map(Into::into)
    }
}

/// A section's load address, for `lpstack_unwinder_add_orc_module`
/// (`/sys/module/NAME/sections/SECTION`, or a dump's module layout).
#[repr(C)]
pub struct lpstack_section {
    /// `sizeof(lpstack_section)`.
    pub size: usize,
    /// Section name, e.g. ".text" or ".text.unlikely".
    pub name: *const c_char,
    pub address: u64,
}

fn orc_error(e: OrcError) -> Error {
    let code = match e {
        OrcError::UnknownHeader { .. } | OrcError::UnknownFormat | OrcError::ReleaseTooOld { .. } => {
            lpstack_result::UnknownFormat
        }
        _ => lpstack_result::ParseError,
    };
    Error::new(code, e.to_string())
}

/// 0 = not given, 1..=3 = ORC v1..v3.
fn orc_format(v: u32) -> Result<Option<OrcFormat>> {
    match v {
        0 => Ok(None),
        1 => Ok(Some(OrcFormat::V1)),
        2 => Ok(Some(OrcFormat::V2)),
        3 => Ok(Some(OrcFormat::V3)),
        _ => Err(Error::invalid(format!("orc_format {v}: expected 0 (detect), 1, 2 or 3"))),
    }
}

fn is_relocatable(elf: &[u8]) -> bool {
    // e_type at offset 16, little-endian: ET_REL is a module (.ko).
    elf.get(16..18) == Some(&[1, 0][..])
}

fn kernel_unwinder(table: OrcTable<'static>, symbols: Symbolizer) -> Box<lpstack_unwinder> {
    let format = table.format();
    let mut table_text = CodeRanges::new();
    let (start, end) = table.range();
    table_text.add(start, end);
    let mut tables = OrcTables::new();
    tables.push(table);
    Box::new(lpstack_unwinder {
        kind: Kind::Kernel(Kernel {
            tables,
            format,
            table_text,
            text: CodeRanges::new(),
            trampolines: CodeRanges::new(),
        }),
        symbols,
        inlines: None,
    })
}

fn kernel_mut(u: &mut lpstack_unwinder) -> Result<&mut Kernel> {
    match &mut u.kind {
        Kind::Kernel(k) => Ok(k),
        Kind::User(_) => Err(Error::new(lpstack_result::WrongKind, "a userspace unwinder has no ORC tables")),
    }
}

fn range(start: u64, end: u64, what: &str) -> Result<Option<(u64, u64)>> {
    match (start, end) {
        (0, 0) => Ok(None),
        (s, e) if s < e => Ok(Some((s, e))),
        (s, e) => Err(Error::invalid(format!("{what} [{s:#x}, {e:#x}) is empty"))),
    }
}

/// A kernel unwinder from a vmlinux ELF file's ORC sections (the bytes are
/// copied; the caller may free them on return). `orc_format`: 0 detects the
/// layout from `.orc_header` or the `Linux version` banner (never guessed:
/// LPSTACK_RESULT_UNKNOWN_FORMAT when neither is there), 1..3 forces it.
/// `load_offset` is added to every address (the KASLR offset; 0 for a
/// kernel at its link addresses). The vmlinux `.symtab`, when present,
/// becomes the "vmlinux" symbols. A module `.ko` is refused
/// (LPSTACK_RESULT_INVALID_ARGUMENT): use lpstack_unwinder_add_orc_module.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_unwinder_new_orc_elf(
    elf: *const u8,
    len: usize,
    orc_format: u32,
    load_offset: u64,
    out: *mut *mut lpstack_unwinder,
) -> lpstack_result {
    guard(|| {
        // SAFETY: `elf` holds `len` readable bytes (contract); `bytes` rejects NULL.
        let data = unsafe { bytes(elf, len, "elf")? };
        if out.is_null() {
            return Err(Error::null("out"));
        }
        if is_relocatable(data) {
            return Err(Error::invalid("a relocatable file (module .ko): use lpstack_unwinder_add_orc_module"));
        }
        let explicit = self::orc_format(orc_format)?;
        let sections = orc_sections(data).map_err(orc_error)?;
        let (format, _) = choose_format(&sections, explicit, None).map_err(orc_error)?;
        let table = OrcTable::new(
            sections.ips.to_vec(),
            sections.entries.to_vec(),
            sections.ips_addr.wrapping_add(load_offset),
            format,
        )
        .map_err(orc_error)?;
        let mut symbols = Symbolizer::new();
        if let Ok(mut t) = symbols_from_elf("vmlinux", data) {
            if load_offset != 0 {
                t.rebase(load_offset);
            }
            symbols.add(t);
        }
        // SAFETY: `out` was checked non-NULL above and is writable (contract).
        unsafe { put(out, Box::into_raw(kernel_unwinder(table, symbols))) };
        Ok(())
    })
}

/// A kernel unwinder from in-memory ORC tables (`.orc_unwind_ip` and
/// `.orc_unwind` as a running kernel holds them, sorted), copied.
/// `ip_table_addr` is the runtime address of the ip table (its entries are
/// relative to their own addresses). `orc_format` must be 1, 2 or 3.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_unwinder_new_orc_tables(
    ip_table: *const u8,
    ip_len: usize,
    entries: *const u8,
    entries_len: usize,
    ip_table_addr: u64,
    orc_format: u32,
    out: *mut *mut lpstack_unwinder,
) -> lpstack_result {
    guard(|| {
        // SAFETY: `ip_table` holds `ip_len` readable bytes (contract); `bytes` rejects NULL.
        let ips = unsafe { bytes(ip_table, ip_len, "ip_table")? };
        // SAFETY: `entries` holds `entries_len` readable bytes (contract); `bytes` rejects NULL.
        let ents = unsafe { bytes(entries, entries_len, "entries")? };
        if out.is_null() {
            return Err(Error::null("out"));
        }
        let format = self::orc_format(orc_format)?
            .ok_or_else(|| Error::new(lpstack_result::UnknownFormat, "raw ORC tables need an explicit orc_format"))?;
        let table = OrcTable::new(ips.to_vec(), ents.to_vec(), ip_table_addr, format).map_err(orc_error)?;
        // SAFETY: `out` was checked non-NULL above and is writable (contract).
        unsafe { put(out, Box::into_raw(kernel_unwinder(table, Symbolizer::new()))) };
        Ok(())
    })
}

/// Adds a loaded module's in-memory ORC tables (as for
/// lpstack_unwinder_new_orc_tables). `orc_format` 0 = the unwinder's.
/// [text_start, text_end) is the module's text: the table answers only
/// there; 0, 0 = the table's own range. The range also counts as code
/// unless lpstack_unwinder_add_text was used.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_unwinder_add_orc_tables(
    u: *mut lpstack_unwinder,
    ip_table: *const u8,
    ip_len: usize,
    entries: *const u8,
    entries_len: usize,
    ip_table_addr: u64,
    orc_format: u32,
    text_start: u64,
    text_end: u64,
) -> lpstack_result {
    guard(|| {
        // SAFETY: `u` is NULL or a valid, unshared handle (contract); `arg_mut` rejects NULL.
        let u = unsafe { arg_mut(u, "u")? };
        // SAFETY: `ip_table` holds `ip_len` readable bytes (contract); `bytes` rejects NULL.
        let ips = unsafe { bytes(ip_table, ip_len, "ip_table")? };
        // SAFETY: `entries` holds `entries_len` readable bytes (contract); `bytes` rejects NULL.
        let ents = unsafe { bytes(entries, entries_len, "entries")? };
        let k = kernel_mut(u)?;
        let format = self::orc_format(orc_format)?.unwrap_or(k.format);
        let cover = range(text_start, text_end, "module text")?;
        let table = OrcTable::new(ips.to_vec(), ents.to_vec(), ip_table_addr, format).map_err(orc_error)?;
        add_table(k, table, cover);
        Ok(())
    })
}

fn add_table(k: &mut Kernel, table: OrcTable<'static>, cover: Option<(u64, u64)>) {
    let table = match cover {
        Some((s, e)) => table.with_coverage(s, e),
        None => table,
    };
    let (s, e) = table.range();
    k.table_text.add(s, e);
    k.tables.push(table);
}

/// Adds a module's ORC table from its `.ko` file, placed with the load
/// address of each text section it refers to (`sections`, `n_sections`
/// entries). `orc_format` 0 detects it from the module's `.orc_header` or
/// vermagic. [text_start, text_end) as in lpstack_unwinder_add_orc_tables.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_unwinder_add_orc_module(
    u: *mut lpstack_unwinder,
    ko: *const u8,
    len: usize,
    orc_format: u32,
    sections: *const lpstack_section,
    n_sections: usize,
    text_start: u64,
    text_end: u64,
) -> lpstack_result {
    guard(|| {
        // SAFETY: `u` is NULL or a valid, unshared handle (contract); `arg_mut` rejects NULL.
        let u = unsafe { arg_mut(u, "u")? };
        // SAFETY: `ko` holds `len` readable bytes (contract); `bytes` rejects NULL.
        let data = unsafe { bytes(ko, len, "ko")? };
        if sections.is_null() && n_sections > 0 {
            return Err(Error::null("sections"));
        }
        // SAFETY: `sections` holds `n_sections` sized elements (contract); `array_stride` rejects NULL.
        let stride = unsafe { array_stride(sections, n_sections, size_of::<lpstack_section>(), "sections")? };
        let mut bases: Vec<(&str, u64)> = Vec::with_capacity(n_sections);
        for i in 0..n_sections {
            // SAFETY: `i` < the count `array_stride` checked `stride` for.
            let s = unsafe { element(sections, i, stride, "sections")? };
            // SAFETY: `s.name` is NULL or a NUL-terminated string (contract); `string` rejects NULL.
            bases.push((unsafe { string(s.name, "sections[].name")? }, s.address));
        }
        let k = kernel_mut(u)?;
        let cover = range(text_start, text_end, "module text")?;
        let format = module_format(data, self::orc_format(orc_format)?).map_err(orc_error)?;
        let entries = module_entries(data).map_err(orc_error)?;
        if let Some(e) = entries.iter().find(|e| !bases.iter().any(|b| b.0 == e.section)) {
            return Err(Error::invalid(format!("no address given for section `{}`", e.section)));
        }
        let base = |name: &str| bases.iter().find(|b| b.0 == name).map(|b| b.1);
        let table = module_table(&entries, format, base).map_err(orc_error)?;
        add_table(k, table, cover);
        Ok(())
    })
}

/// Declares [start, end) kernel text (`__kernel_text_address`: core and
/// init text, module text, BPF and ftrace trampolines...). Once any range
/// is declared, only declared ranges count as code; until then, the ORC
/// tables' own ranges do.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_unwinder_add_text(u: *mut lpstack_unwinder, start: u64, end: u64) -> lpstack_result {
    guard(|| {
        // SAFETY: `u` is NULL or a valid, unshared handle (contract); `arg_mut` rejects NULL.
        let u = unsafe { arg_mut(u, "u")? };
        let k = kernel_mut(u)?;
        if start >= end {
            return Err(Error::invalid(format!("text [{start:#x}, {end:#x}) is empty")));
        }
        k.text.add(start, end);
        Ok(())
    })
}

/// Declares `pc` as a return trampoline of kind `kind`
/// (an lpstack_trampoline value).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_unwinder_add_trampoline(
    u: *mut lpstack_unwinder,
    pc: u64,
    kind: u32,
) -> lpstack_result {
    guard(|| {
        // SAFETY: `u` is NULL or a valid, unshared handle (contract); `arg_mut` rejects NULL.
        let u = unsafe { arg_mut(u, "u")? };
        let k = kernel_mut(u)?;
        let kind = enum_arg::<lpstack_trampoline>(kind, "trampoline kind")?;
        k.trampolines.add_trampoline(pc, kind.into());
        Ok(())
    })
}

/// An empty userspace unwinder: add the process's executable mappings with
/// lpstack_unwinder_add_elf or lpstack_unwinder_add_mapping.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_unwinder_new_user(out: *mut *mut lpstack_unwinder) -> lpstack_result {
    guard(|| {
        if out.is_null() {
            return Err(Error::null("out"));
        }
        let u = Box::new(lpstack_unwinder {
            kind: Kind::User(UserModules::default()),
            symbols: Symbolizer::new(),
            inlines: None,
        });
        // SAFETY: `out` was checked non-NULL above and is writable (contract).
        unsafe { put(out, Box::into_raw(u)) };
        Ok(())
    })
}

fn add_user_module(u: &mut lpstack_unwinder, name: &str, data: &[u8], start: u64, end: u64, bias: u64) -> Result<()> {
    let Kind::User(modules) = &mut u.kind else {
        return Err(Error::new(lpstack_result::WrongKind, "a kernel unwinder takes ORC tables, not ELF mappings"));
    };
    if start >= end {
        return Err(Error::invalid(format!("mapping [{start:#x}, {end:#x}) is empty")));
    }
    let cfi = CfiTable::from_elf(data).map_err(|e| Error::new(lpstack_result::ParseError, format!("{name}: {e}")))?;
    // Symbols are optional for the walk: a file without any still unwinds.
    if let Ok(mut t) = symbols_from_elf(name, data) {
        t.rebase(bias);
        replace_symbols(&mut u.symbols, t);
    }
    modules.push(UserModule {
        name: name.to_owned(),
        path: name.to_owned(),
        start,
        end,
        bias,
        cfi: Some(cfi),
        // The walk does not use them; they live in the unwinder's symbolizer.
        symbols: SymbolTable::new(name),
    });
    Ok(())
}

/// Adds one executable mapping of a userspace process: the ELF file `elf`
/// (`len` bytes, copied) mapped at runtime [start, end), with runtime
/// address = file address + `bias`. `name` is the object name funcs.txt
/// uses (e.g. "libc.so.6"). Its `.eh_frame` (or `.debug_frame`) is
/// compiled; its symbols, moved by `bias`, join the unwinder's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_unwinder_add_elf(
    u: *mut lpstack_unwinder,
    name: *const c_char,
    elf: *const u8,
    len: usize,
    start: u64,
    end: u64,
    bias: u64,
) -> lpstack_result {
    guard(|| {
        // SAFETY: `u` is NULL or a valid, unshared handle (contract); `arg_mut` rejects NULL.
        let u = unsafe { arg_mut(u, "u")? };
        // SAFETY: `name` is NULL or a NUL-terminated string (contract); `string` rejects NULL.
        let name = unsafe { string(name, "name")? };
        // SAFETY: `elf` holds `len` readable bytes (contract); `bytes` rejects NULL.
        let data = unsafe { bytes(elf, len, "elf")? };
        add_user_module(u, name, data, start, end, bias)
    })
}

/// As lpstack_unwinder_add_elf, with the bias worked out from the mapping's
/// file offset (the third column of /proc/PID/maps) and the ELF's
/// loadable segments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_unwinder_add_mapping(
    u: *mut lpstack_unwinder,
    name: *const c_char,
    elf: *const u8,
    len: usize,
    start: u64,
    end: u64,
    file_offset: u64,
) -> lpstack_result {
    guard(|| {
        // SAFETY: `u` is NULL or a valid, unshared handle (contract); `arg_mut` rejects NULL.
        let u = unsafe { arg_mut(u, "u")? };
        // SAFETY: `name` is NULL or a NUL-terminated string (contract); `string` rejects NULL.
        let name = unsafe { string(name, "name")? };
        // SAFETY: `elf` holds `len` readable bytes (contract); `bytes` rejects NULL.
        let data = unsafe { bytes(elf, len, "elf")? };
        let bias = mapping_bias(data, start, file_offset)
            .map_err(|m| Error::new(lpstack_result::ParseError, format!("{name}: {m}")))?;
        add_user_module(u, name, data, start, end, bias)
    })
}

/// runtime = vaddr + bias, where the mapping puts file offset
/// `file_offset` at `start` and a PT_LOAD maps p_offset at p_vaddr.
/// The loader maps each PT_LOAD from its page-aligned p_offset, so that is
/// how the mapping's segment is recognised (two segments may share a file
/// page: the executable one is the one an `r-xp` mapping comes from).
fn mapping_bias(data: &[u8], start: u64, file_offset: u64) -> std::result::Result<u64, &'static str> {
    let file = object::File::parse(data).map_err(|_| "not a readable ELF file")?;
    const PAGE: u64 = 4096;
    const PF_X: u32 = 1;
    let executable = |seg: &object::Segment<'_, '_>| matches!(seg.flags(), object::SegmentFlags::Elf { p_flags, .. } if p_flags.0 & PF_X != 0);
    let mut found: Option<object::Segment<'_, '_>> = None;
    for seg in file.segments() {
        let (off, _) = seg.file_range();
        if off & !(PAGE - 1) == file_offset && found.as_ref().is_none_or(|f| !executable(f) && executable(&seg)) {
            found = Some(seg);
        }
    }
    let seg = found.ok_or("no loadable segment starts at the mapping's file offset")?;
    let (off, _) = seg.file_range();
    Ok(start.wrapping_sub(file_offset).wrapping_sub(seg.address()).wrapping_add(off))
}

/// Adds `table`, dropping any earlier table of the same object: funcs.txt
/// resolves against the first table of an object, so the newest must be
/// the only one.
fn replace_symbols(symbols: &mut Symbolizer, table: SymbolTable) {
    if symbols.table(table.object()).is_some() {
        let mut fresh = Symbolizer::new();
        for t in symbols.tables().iter().filter(|t| t.object() != table.object()) {
            fresh.add(t.clone());
        }
        *symbols = fresh;
    }
    symbols.add(table);
}

/// Adds symbols for `object` from System.map text (`ADDRESS TYPE NAME` per
/// line), e.g. the kernel's, for resolving funcs.txt; they replace earlier
/// symbols of that object (such as a vmlinux `.symtab`). Works on either
/// kind of unwinder.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_unwinder_add_system_map(
    u: *mut lpstack_unwinder,
    object: *const c_char,
    text: *const c_char,
) -> lpstack_result {
    guard(|| {
        // SAFETY: `u` is NULL or a valid, unshared handle (contract); `arg_mut` rejects NULL.
        let u = unsafe { arg_mut(u, "u")? };
        // SAFETY: `object` is NULL or a NUL-terminated string (contract); `string` rejects NULL.
        let object = unsafe { string(object, "object")? };
        // SAFETY: `text` is NULL or a NUL-terminated string (contract); `string` rejects NULL.
        let text = unsafe { string(text, "text")? };
        let t = parse_system_map(object, text).map_err(|e| Error::new(lpstack_result::ParseError, e.to_string()))?;
        replace_symbols(&mut u.symbols, t);
        Ok(())
    })
}

/// The name of the function containing `pc`, NUL-terminated, into `buf`
/// (capacity `cap`); `*offset` receives pc minus the function's start.
/// NOT_FOUND when no symbol covers `pc`; BUFFER_TOO_SMALL writes nothing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_unwinder_symbolize(
    u: *const lpstack_unwinder,
    pc: u64,
    buf: *mut c_char,
    cap: usize,
    offset: *mut u64,
) -> lpstack_result {
    guard(|| {
        // SAFETY: `u` is NULL or a valid handle (contract); `arg` rejects NULL.
        let u = unsafe { arg(u, "u")? };
        if offset.is_null() {
            return Err(Error::null("offset"));
        }
        let s = u
            .symbols
            .lookup(pc)
            .ok_or_else(|| Error::new(lpstack_result::NotFound, format!("no symbol at {pc:#x}")))?;
        // SAFETY: `buf` holds `cap` bytes (contract); `copy_str` rejects NULL and checks the room.
        unsafe { copy_str(s.name, buf, cap)? };
        // SAFETY: `offset` was checked non-NULL above and is writable (contract).
        unsafe { put(offset, s.offset) };
        Ok(())
    })
}

/// Adds `dwarf` to the inlines of every mapping of module `name`.
fn add_dwarf(u: &mut lpstack_unwinder, name: &str, dwarf: &[u8], from: &str) -> Result<()> {
    let Kind::User(modules) = &u.kind else {
        return Err(Error::new(lpstack_result::WrongKind, "inlined copies are checked for userspace modules only"));
    };
    let mapped: Vec<(u64, u64, u64)> =
        modules.modules().iter().filter(|m| m.name == name).map(|m| (m.start, m.end, m.bias)).collect();
    if mapped.is_empty() {
        return Err(Error::new(lpstack_result::NotFound, format!("no module {name:?}: add its mapping first")));
    }
    let inlines =
        u.inlines.get_or_insert_with(Default::default).get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
    for (start, end, bias) in mapped {
        inlines
            .add(name, start, end, bias, dwarf)
            .map_err(|e| Error::new(lpstack_result::ParseError, format!("{from}: {e}")))?;
    }
    Ok(())
}

/// Opts in to inlined copies for module `name` (already added with
/// lpstack_unwinder_add_elf or _add_mapping): `dwarf` (`len` bytes,
/// copied) is the module's file or its separate debug file, with
/// `.debug_info`. A thread in a copy of a patched function inlined into
/// another function of that module is then BLOCKED, as `lpstack check pid`
/// says. Decide calls then take a lock and may allocate.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_unwinder_add_dwarf(
    u: *mut lpstack_unwinder,
    name: *const c_char,
    dwarf: *const u8,
    len: usize,
) -> lpstack_result {
    guard(|| {
        // SAFETY: `u` is NULL or a valid, unshared handle (contract); `arg_mut` rejects NULL.
        let u = unsafe { arg_mut(u, "u")? };
        // SAFETY: `name` is NULL or a NUL-terminated string (contract); `string` rejects NULL.
        let name = unsafe { string(name, "name")? };
        // SAFETY: `dwarf` holds `len` readable bytes (contract); `bytes` rejects NULL.
        let data = unsafe { bytes(dwarf, len, "dwarf")? };
        add_dwarf(u, name, data, name)
    })
}

/// As lpstack_unwinder_add_dwarf, finding the DWARF as `lpstack check pid`
/// does: in the file at `path` (the module as mapped), else in its
/// separate debug file (by build ID under /usr/lib/debug/.build-id, then
/// by `.gnu_debuglink`). NOT_FOUND when neither has DWARF.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_unwinder_load_dwarf(
    u: *mut lpstack_unwinder,
    name: *const c_char,
    path: *const c_char,
) -> lpstack_result {
    guard(|| {
        // SAFETY: `u` is NULL or a valid, unshared handle (contract); `arg_mut` rejects NULL.
        let u = unsafe { arg_mut(u, "u")? };
        // SAFETY: `name` is NULL or a NUL-terminated string (contract); `string` rejects NULL.
        let name = unsafe { string(name, "name")? };
        // SAFETY: `path` is NULL or a NUL-terminated string (contract); `string` rejects NULL.
        let path = unsafe { string(path, "path")? };
        let data = std::fs::read(path).map_err(|e| Error::new(lpstack_result::NotFound, format!("{path}: {e}")))?;
        if has_dwarf(&data) {
            return add_dwarf(u, name, &data, path);
        }
        match find_debug(&data, path, &FileAccess::Sysroot("/".into())) {
            Some((p, d)) if has_dwarf(d.as_ref()) => add_dwarf(u, name, d.as_ref(), &p.to_string_lossy()),
            _ => Err(Error::new(
                lpstack_result::NotFound,
                format!("{path}: no DWARF (.debug_info), nor a debug file with it"),
            )),
        }
    })
}

fn has_dwarf(elf: &[u8]) -> bool {
    use object::ObjectSection;
    object::File::parse(elf).is_ok_and(|f| f.section_by_name(".debug_info").is_some_and(|s| s.size() > 0))
}

/// Releases an unwinder; NULL is ignored.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_unwinder_free(u: *mut lpstack_unwinder) {
    if !u.is_null() {
        // SAFETY: non-NULL and, by the contract, from its `_new` call and not yet freed.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(unsafe { Box::from_raw(u) })));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trampoline_table_is_complete_and_named_as_the_library() {
        crate::tables::tests::check_table::<lpstack_trampoline>();
        for &t in lpstack_trampoline::ALL {
            let core = TrampolineKind::from(t);
            assert_eq!(lpstack_trampoline::from(core), t);
            assert_eq!(t.name().to_str().ok(), Some(core.name()));
            assert_eq!(TrampolineKind::from_word(core.to_word()), Some(core));
        }
    }
}
