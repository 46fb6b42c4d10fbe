//! The ELF files of a process: one module per file with executable
//! mappings (plus the vdso, read from the process's memory), with the bias
//! that relocates the file's addresses, its symbols and its CFI.
//!
//! Files are found where the process saw them: for a live process through
//! `/proc/PID/map_files` (the very inode mapped, even if deleted) or
//! `/proc/PID/root`, for a core under a sysroot. A file whose build ID
//! differs from the one in the process's memory is not used: its CFI would
//! describe other code.
//!
//! When a file has no `.symtab` or no CFI, its separate debug file is
//! looked up by build ID (`/usr/lib/debug/.build-id/xx/yyyy.debug`) and by
//! `.gnu_debuglink` (the file's directory, its `.debug/`, and
//! `/usr/lib/debug/<dir>/`), as gdb does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object::{Object, ObjectSection, ObjectSegment, SegmentFlags};

use super::core::under_sysroot;
use super::{AT_ENTRY, AT_PHDR, AT_SYSINFO_EHDR, Mapping, MappingKind, Snapshot};
use crate::cfi::CfiTable;
use crate::memory::Memory;
use crate::symbols::{SymbolTable, Symbolizer, symbols_from_elf};
use crate::walk::{UserModule, UserModules};

const PAGE: u64 = 4096;
const PF_X: u32 = 1;
/// The vdso is two or three pages; more than this is not a vdso.
const MAX_VDSO: u64 = 1 << 20;
/// The vdso's module name (also the object name in funcs.txt).
pub const VDSO_NAME: &str = "[vdso]";

/// File bytes: a mapped file or bytes copied out of the process.
#[derive(Debug)]
pub enum Bytes {
    /// A read-only memory mapping of the file.
    Mapped(memmap2::Mmap),
    /// Bytes read into memory (e.g. the vdso, copied out of the process).
    Owned(Vec<u8>),
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

fn map_path(path: &Path) -> Option<Bytes> {
    let file = std::fs::File::open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    // SAFETY: read-only private mapping; a file changed under us gives wrong
    // answers, not unsafety in our code (it only reads the bytes).
    unsafe { memmap2::Mmap::map(&file) }.ok().map(Bytes::Mapped)
}

/// Where the files a process mapped are found.
#[derive(Clone, Debug)]
pub enum FileAccess {
    /// A live process: `/proc/PID/map_files`, `/proc/PID/root`, then the
    /// path itself. Debug files are looked up under `debug_root` ("/").
    Live {
        /// The process's pid.
        pid: i32,
        /// Root under which debug files are looked up.
        debug_root: PathBuf,
    },
    /// A core file: every path under this root ("/" for a core from this
    /// machine).
    Sysroot(PathBuf),
}

impl FileAccess {
    fn candidates(&self, m: &Mapping, path: &str) -> Vec<PathBuf> {
        match self {
            FileAccess::Live { pid, .. } => vec![
                PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end)),
                under_sysroot(Some(Path::new(&format!("/proc/{pid}/root"))), path),
                PathBuf::from(path),
            ],
            FileAccess::Sysroot(root) => vec![under_sysroot(Some(root), path)],
        }
    }

    fn debug_root(&self) -> &Path {
        match self {
            FileAccess::Live { debug_root, .. } => debug_root,
            FileAccess::Sysroot(root) => root,
        }
    }

    /// Where `path` (as the process saw it) lies here, for its directory.
    fn local(&self, path: &str) -> PathBuf {
        match self {
            FileAccess::Live { pid, .. } => under_sysroot(Some(Path::new(&format!("/proc/{pid}/root"))), path),
            FileAccess::Sysroot(root) => under_sysroot(Some(root), path),
        }
    }
}

/// One ELF file mapped executable in the process.
#[derive(Debug)]
pub struct ModuleFile {
    /// The file name (`libc.so.6`), or `[vdso]`.
    pub name: String,
    /// The path the process mapped.
    pub path: String,
    /// Runtime range of the executable mapping(s).
    pub start: u64,
    /// One past the last runtime address of the mapping(s).
    pub end: u64,
    /// Runtime address = file virtual address + bias.
    pub bias: u64,
    /// None when the file could not be read or is not the one mapped.
    pub data: Option<Arc<Bytes>>,
    /// The separate debug file, when one was found.
    pub debug: Option<Arc<Bytes>>,
    /// Where the debug file was found, as a local path.
    pub debug_path: Option<PathBuf>,
}

impl ModuleFile {
    /// The module's symbols at runtime addresses: `.symtab` of the file or
    /// of its debug file, else `.dynsym`. Empty when there is none.
    pub fn symbols(&self) -> SymbolTable {
        let has_symtab = |d: &[u8]| object::File::parse(d).is_ok_and(|f| f.symbol_table().is_some());
        let source = match (&self.data, &self.debug) {
            (Some(d), _) if has_symtab(d) => Some(&***d),
            (_, Some(g)) if has_symtab(g) => Some(&***g),
            (Some(d), _) => Some(&***d),
            (None, _) => None,
        };
        let mut table = source.and_then(|d| symbols_from_elf(&self.name, d).ok()).unwrap_or_else(|| {
            let mut t = SymbolTable::new(&self.name);
            t.finish();
            t
        });
        table.rebase(self.bias);
        table
    }

    /// The module's CFI, sharing the file's bytes.
    pub fn cfi(&self) -> Result<CfiTable, crate::cfi::CfiError> {
        let data: crate::cfi::SharedBytes = match &self.data {
            Some(d) => d.clone(),
            None => Arc::new(Vec::new()),
        };
        CfiTable::from_shared(data, self.debug.clone().map(|d| d as crate::cfi::SharedBytes))
    }

    /// The unwinder's view. A file without usable CFI gets none: every pc
    /// in it is then unreliable, which is the point.
    pub fn to_user_module(&self, notes: &mut Vec<String>) -> UserModule {
        let cfi = match (&self.data, self.cfi()) {
            (None, _) => None,
            (Some(_), Ok(t)) if !t.is_empty() => Some(t),
            (Some(_), Ok(_)) => {
                notes.push(format!("{}: no CFI (.eh_frame or .debug_frame)", self.path));
                None
            }
            (Some(_), Err(e)) => {
                notes.push(format!("{}: CFI: {e}", self.path));
                None
            }
        };
        UserModule {
            name: self.name.clone(),
            path: self.path.clone(),
            start: self.start,
            end: self.end,
            bias: self.bias,
            cfi,
            symbols: self.symbols(),
        }
    }
}

/// The unwinder's modules and a symbolizer over the same symbols.
pub fn user_modules(files: &[ModuleFile], notes: &mut Vec<String>) -> (UserModules, Symbolizer) {
    let mods: Vec<UserModule> = files.iter().map(|f| f.to_user_module(notes)).collect();
    let mut sym = Symbolizer::new();
    for m in &mods {
        sym.add(m.symbols.clone());
    }
    (UserModules::new(mods), sym)
}

/// The bias of an ELF file mapped at `start` from file offset `offset`
/// (`len` bytes): from the PT_LOAD whose file bytes the mapping holds,
/// preferring an executable one. The mapping holds file offset `p_offset`
/// at `start + (p_offset - offset)`, which is `p_vaddr + bias`.
pub fn elf_bias(data: &[u8], start: u64, offset: u64, len: u64) -> Option<u64> {
    let file = object::File::parse(data).ok()?;
    let map_end = offset.saturating_add(len);
    let mut best: Option<(bool, u64)> = None;
    for seg in file.segments() {
        let (p_offset, filesz) = seg.file_range();
        let seg_start = p_offset & !(PAGE - 1);
        let seg_end = p_offset.saturating_add(filesz.max(1));
        if seg_start >= map_end || seg_end <= offset {
            continue;
        }
        let exec = matches!(seg.flags(), SegmentFlags::Elf { p_flags, .. } if p_flags.0 & PF_X != 0);
        let bias = start.wrapping_sub(offset).wrapping_add(p_offset).wrapping_sub(seg.address());
        if best.is_none_or(|(e, _)| exec && !e) {
            best = Some((exec, bias));
        }
    }
    best.map(|(_, b)| b)
}

fn file_name(path: &str) -> String {
    Path::new(path).file_name().and_then(|n| n.to_str()).unwrap_or(path).to_string()
}

/// Compares the file's GNU build ID with the note in process memory. None
/// when either cannot be read (nothing to compare).
fn build_id_matches<M: Memory>(data: &[u8], bias: u64, mem: &mut M) -> Option<bool> {
    let file = object::File::parse(data).ok()?;
    let id = file.build_id().ok()??;
    let section = file.section_by_name(".note.gnu.build-id")?;
    // Note header (12 bytes) and "GNU\0" precede the descriptor.
    let at = section.address().wrapping_add(bias).wrapping_add(16);
    let mut live = vec![0u8; id.len()];
    mem.read(at, &mut live).ok()?;
    Some(live == id)
}

fn gnu_crc32(data: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    crc.sum()
}

/// The separate debug file of `data` (mapped at `path`), if one is found
/// and belongs to it.
pub fn find_debug(data: &[u8], path: &str, access: &FileAccess) -> Option<(PathBuf, Bytes)> {
    let file = object::File::parse(data).ok()?;
    let root = access.debug_root();
    let debug_dir = root.join("usr/lib/debug");
    let id = file.build_id().ok().flatten();
    if let Some(id) = id.filter(|id| id.len() >= 2) {
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let p = debug_dir.join(".build-id").join(&hex[..2]).join(format!("{}.debug", &hex[2..]));
        if let Some(d) = map_path(&p) {
            let same = object::File::parse(&*d).ok().and_then(|f| f.build_id().ok().flatten().map(|x| x == id));
            if same == Some(true) {
                return Some((p, d));
            }
        }
    }
    let (link, crc) = file.gnu_debuglink().ok()??;
    let link = std::str::from_utf8(link).ok()?;
    let local = access.local(path);
    let dir = local.parent()?;
    let proc_dir = Path::new(path).parent()?.to_string_lossy().trim_start_matches('/').to_string();
    for p in [dir.join(link), dir.join(".debug").join(link), debug_dir.join(proc_dir).join(link)] {
        if p == local {
            continue;
        }
        if let Some(d) = map_path(&p)
            && gnu_crc32(&d) == crc
        {
            return Some((p, d));
        }
    }
    None
}

fn needs_debug(data: &[u8]) -> bool {
    let Ok(file) = object::File::parse(data) else { return false };
    let has_cfi = [".eh_frame", ".debug_frame"].iter().any(|n| file.section_by_name(n).is_some_and(|s| s.size() > 0));
    file.symbol_table().is_none() || !has_cfi
}

/// The modules of a process: each file mapped executable (grouped by path
/// and bias, so a library loaded twice is two modules) and the vdso.
pub fn load_modules<M: Memory>(
    snapshot: &Snapshot,
    access: &FileAccess,
    mem: &mut M,
    notes: &mut Vec<String>,
) -> Vec<ModuleFile> {
    let mut opened: HashMap<String, Option<Arc<Bytes>>> = HashMap::new();
    let mut out: Vec<ModuleFile> = Vec::new();
    for m in snapshot.maps.iter().filter(|m| m.perms.exec) {
        match &m.kind {
            MappingKind::File { path, deleted } => {
                let data = opened
                    .entry(path.clone())
                    .or_insert_with(|| {
                        let found = access.candidates(m, path).iter().find_map(|p| map_path(p));
                        if found.is_none() {
                            let gone = if *deleted { " (deleted since it was mapped)" } else { "" };
                            notes.push(format!("{path}{gone}: cannot be read; its frames are unreliable"));
                        }
                        found.map(Arc::new)
                    })
                    .clone();
                let Some(data) = data else {
                    push_module(&mut out, m, path, 0, None);
                    continue;
                };
                let Some(bias) = elf_bias(&data, m.start, m.offset, m.len()) else {
                    notes.push(format!("{path}: not an ELF file, or no PT_LOAD maps offset {:#x}", m.offset));
                    push_module(&mut out, m, path, 0, None);
                    continue;
                };
                let data = match build_id_matches(&data, bias, mem) {
                    Some(false) => {
                        notes.push(format!("{path}: build ID differs from the mapped file's; not used"));
                        None
                    }
                    _ => Some(data),
                };
                push_module(&mut out, m, path, bias, data);
            }
            MappingKind::Vdso => match vdso_module(snapshot, m, mem) {
                Some(v) => out.push(v),
                None => {
                    notes.push(format!("[vdso] at {:#x}: cannot be read as ELF; its frames are unreliable", m.start))
                }
            },
            _ => {}
        }
    }
    for module in &mut out {
        let Some(data) = &module.data else { continue };
        if module.name != VDSO_NAME
            && needs_debug(data)
            && let Some((p, d)) = find_debug(data, &module.path, access)
        {
            module.debug_path = Some(p);
            module.debug = Some(Arc::new(d));
        }
    }
    out
}

fn push_module(out: &mut Vec<ModuleFile>, m: &Mapping, path: &str, bias: u64, data: Option<Arc<Bytes>>) {
    if let Some(existing) = out.iter_mut().find(|x| x.path == path && x.bias == bias) {
        existing.start = existing.start.min(m.start);
        existing.end = existing.end.max(m.end);
        return;
    }
    out.push(ModuleFile {
        name: file_name(path),
        path: path.to_string(),
        start: m.start,
        end: m.end,
        bias,
        data,
        debug: None,
        debug_path: None,
    });
}

/// The vdso, copied out of the process (it has no file).
fn vdso_module<M: Memory>(snapshot: &Snapshot, m: &Mapping, mem: &mut M) -> Option<ModuleFile> {
    // The ELF header is at AT_SYSINFO_EHDR, the start of the vdso mapping.
    let base = snapshot.auxv.get(AT_SYSINFO_EHDR).filter(|b| m.contains(*b)).unwrap_or(m.start);
    let len = m.end.checked_sub(base).filter(|&l| l <= MAX_VDSO)?;
    let bytes = crate::memory::read_vec(mem, base, len as usize).ok()?;
    let bias = elf_bias(&bytes, base, 0, len)?;
    Some(ModuleFile {
        name: VDSO_NAME.to_string(),
        path: VDSO_NAME.to_string(),
        start: m.start,
        end: m.end,
        bias,
        data: Some(Arc::new(Bytes::Owned(bytes))),
        debug: None,
        debug_path: None,
    })
}

/// The main executable's module: the one holding the entry point
/// (AT_ENTRY), else the program headers (AT_PHDR), else the one whose path
/// is the snapshot's `exe`.
pub fn main_module<'m>(snapshot: &Snapshot, modules: &'m [ModuleFile]) -> Option<&'m ModuleFile> {
    let holds = |a: Option<u64>| a.and_then(|a| modules.iter().find(|m| m.start <= a && a < m.end));
    holds(snapshot.auxv.get(AT_ENTRY))
        .or_else(|| {
            // AT_PHDR lies in the first (read-only) mapping, not the text.
            let phdr = snapshot.auxv.get(AT_PHDR)?;
            let i = super::maps::find_mapping(&snapshot.maps, phdr)?;
            let path = snapshot.maps.get(i)?.kind.path()?;
            modules.iter().find(|m| m.path == path)
        })
        .or_else(|| {
            let exe = snapshot.exe.as_deref()?;
            let exe = exe.strip_suffix(" (deleted)").unwrap_or(exe);
            modules.iter().find(|m| m.path == exe)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_is_gnu_debuglink_crc() {
        // The CRC-32 (IEEE) of "123456789".
        assert_eq!(gnu_crc32(b"123456789"), 0xcbf43926);
    }

    #[test]
    fn bias_of_this_test_binary() {
        // The running test executable, mapped as /proc/self/maps says.
        let maps = super::super::parse_maps(&std::fs::read_to_string("/proc/self/maps").unwrap()).unwrap();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let exe = exe.to_str().unwrap();
        let text = maps.iter().find(|m| m.perms.exec && m.kind.path() == Some(exe)).unwrap();
        let data = std::fs::read(exe).unwrap();
        let bias = elf_bias(&data, text.start, text.offset, text.len()).unwrap();
        // This very function's address is its symbol's value plus the bias.
        let table = symbols_from_elf("t", &data).unwrap();
        let here = bias_of_this_test_binary as *const () as u64;
        let sym = table.lookup(here.wrapping_sub(bias)).unwrap();
        assert!(sym.name.contains("bias_of_this_test_binary"), "{}", sym.name);
        assert_eq!(elf_bias(b"not elf", 0, 0, 1), None);
    }
}
