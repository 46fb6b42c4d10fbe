//! Loaded modules, from the kernel's `modules` list: name, text range, ORC
//! table (`mod->arch`, sorted at load) and symbols (`mod->kallsyms`).

use std::borrow::Cow;

use super::layout::ModuleLayout;
use crate::memory::{Memory, MemoryError, read_vec};
use crate::orc::{ORC_ENTRY_SIZE, OrcFormat, OrcTable};
use crate::symbols::{SymbolKind, SymbolSize, SymbolTable};

/// At most this many modules, entries, symbols: beyond is corruption.
const MAX_MODULES: usize = 10_000;
const MAX_ORCS: u64 = 4_000_000;
const MAX_SYMS: u64 = 2_000_000;

/// One module on the kernel's `modules` list.
pub struct LoadedModule {
    /// Address of its `struct module`.
    pub addr: u64,
    /// `mod->name`.
    pub name: String,
    /// `mod->state` (`enum module_state`: 0 live, 1 coming, 2 going, 3 unformed).
    pub state: u32,
    /// Core text [start, end).
    pub text: Vec<(u64, u64)>,
    /// Its ORC unwind table; None when the kernel has none for modules,
    /// the module has no entries, or the table could not be used.
    pub orc: Option<OrcTable<'static>>,
    /// Its symbols from `mod->kallsyms`, sized as the kernel sizes them;
    /// empty when it has none.
    pub symbols: SymbolTable,
    /// `mod->klp`: a livepatch module. None when the kernel has no such
    /// field or it could not be read.
    pub livepatch: Option<bool>,
}

/// Reads every module; a module that cannot be read is skipped with a
/// warning (its text then is not code, so any frame in it is unreliable).
pub fn read_modules<M: Memory>(
    mem: &mut M,
    l: &ModuleLayout,
    list_next: u64,
    head: u64,
    format: OrcFormat,
    warnings: &mut Vec<String>,
) -> Vec<LoadedModule> {
    let mut out = Vec::new();
    let mut node = match mem.read_u64(head + list_next) {
        Ok(n) => n,
        Err(e) => {
            warnings.push(format!("module list at {head:#x}: {e}"));
            return out;
        }
    };
    let mut seen = std::collections::HashSet::new();
    while node != head {
        if !seen.insert(node) || seen.len() > MAX_MODULES {
            warnings.push(format!("module list loops at {node:#x}; stopped"));
            break;
        }
        let addr = node - l.list.offset;
        match read_module(mem, l, addr, format) {
            Ok((m, problems)) => {
                warnings.extend(problems.into_iter().map(|p| format!("module {}: {p}", m.name)));
                out.push(m);
            }
            Err(e) => warnings.push(format!("module at {addr:#x}: {e}")),
        }
        node = match mem.read_u64(node + list_next) {
            Ok(n) => n,
            Err(e) => {
                warnings.push(format!("module list after {addr:#x}: {e}"));
                break;
            }
        };
    }
    out
}

fn read_module<M: Memory>(
    mem: &mut M,
    l: &ModuleLayout,
    addr: u64,
    format: OrcFormat,
) -> Result<(LoadedModule, Vec<String>), MemoryError> {
    let mut problems = Vec::new();
    let mut name = [0u8; 56];
    let n = (l.name.size as usize).min(56);
    mem.read(addr + l.name.offset, &mut name[..n])?;
    let end = name.iter().position(|&b| b == 0).unwrap_or(n);
    let name = String::from_utf8_lossy(&name[..end]).into_owned();
    let state = l.state.read_uint(mem, addr)? as u32;
    let livepatch = l.klp.and_then(|f| f.read_uint(mem, addr).ok()).map(|v| v != 0);

    let mut text = Vec::new();
    if let (Some(base), Some(size)) = (l.mem_text_base, l.mem_text_size) {
        // mem[MOD_TEXT] is mem[0]; also MOD_INIT_TEXT (mem[3]) while loading.
        for index in [0u64, 3] {
            let b = base.read_uint(mem, addr + index * l.mem_stride)?;
            let s = size.read_uint(mem, addr + index * l.mem_stride)?;
            if b != 0 && s != 0 {
                text.push((b, b.saturating_add(s)));
            }
        }
    } else if let (Some(base), Some(size)) = (l.core_base, l.core_text_size) {
        let b = base.read_uint(mem, addr)?;
        let s = size.read_uint(mem, addr)?;
        if b != 0 && s != 0 {
            text.push((b, b.saturating_add(s)));
        }
    }

    let mut orc = None;
    if let (Some(num), Some(ip), Some(un)) = (l.num_orcs, l.orc_unwind_ip, l.orc_unwind) {
        let count = num.read_uint(mem, addr)?;
        let ip_at = ip.read_uint(mem, addr)?;
        let un_at = un.read_uint(mem, addr)?;
        if count > MAX_ORCS {
            problems.push(format!("num_orcs {count} is not credible; no ORC"));
        } else if count > 0 {
            let ips = read_vec(mem, ip_at, (count * 4) as usize)?;
            let entries = read_vec(mem, un_at, (count * ORC_ENTRY_SIZE as u64) as usize)?;
            match OrcTable::new(Cow::Owned(ips), Cow::Owned(entries), ip_at, format) {
                Ok(t) => {
                    orc = Some(match text.first() {
                        Some(&(s, e)) => t.with_coverage(s, e),
                        None => t,
                    })
                }
                Err(e) => problems.push(format!("ORC table at {ip_at:#x}: {e}")),
            }
        }
    }

    let mut symbols = SymbolTable::new(&name);
    let ks = l.kallsyms.read_uint(mem, addr)?;
    if ks != 0 {
        let symtab = l.ks_symtab.read_uint(mem, ks)?;
        let num = l.ks_num_symtab.read_uint(mem, ks)?;
        let strtab = l.ks_strtab.read_uint(mem, ks)?;
        if num > MAX_SYMS {
            problems.push(format!("num_symtab {num} is not credible; no symbols"));
        } else {
            let raw = read_vec(mem, symtab, (num * 24) as usize)?;
            let max_name =
                raw.chunks_exact(24).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]])).max().unwrap_or(0);
            // The names up to the last one's start, then the last one up to
            // its NUL: the strtab may end right at an unmapped page.
            let mut strings = read_vec(mem, strtab, max_name as usize)?;
            let last = crate::memory::read_c_string(mem, strtab.wrapping_add(u64::from(max_name)), 512)?;
            strings.extend_from_slice(last.as_bytes());
            strings.push(0);
            let mut entries = Vec::new();
            for s in raw.chunks_exact(24) {
                let name_off = u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize;
                let info = s[4];
                let shndx = u16::from_le_bytes([s[6], s[7]]);
                let value = u64::from_le_bytes([s[8], s[9], s[10], s[11], s[12], s[13], s[14], s[15]]);
                let size = u64::from_le_bytes([s[16], s[17], s[18], s[19], s[20], s[21], s[22], s[23]]);
                if shndx == 0 || value == 0 {
                    continue;
                }
                let Some(rest) = strings.get(name_off..) else { continue };
                let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                let Ok(sym_name) = std::str::from_utf8(&rest[..end]) else { continue };
                if sym_name.is_empty() {
                    continue;
                }
                let kind = match info & 0xf {
                    2 => SymbolKind::Text, // STT_FUNC
                    0 if text.iter().any(|&(a, b)| value >= a && value < b) => SymbolKind::Text,
                    3 | 4 => continue, // section, file
                    _ => SymbolKind::Data,
                };
                entries.push((sym_name, value, size, kind));
            }
            // The kernel's size of a module symbol (find_kallsyms_symbol):
            // up to the next named symbol, or the end of its text region.
            // livepatch checks that range, so a return address just past
            // the code (a call to a noreturn function last) is inside.
            let mut starts: Vec<u64> = entries.iter().map(|e| e.1).collect();
            starts.sort_unstable();
            for &(sym_name, value, size, kind) in &entries {
                let size = match text.iter().find(|&&(a, b)| value >= a && value < b) {
                    Some(&(_, end)) => {
                        let next = starts[starts.partition_point(|&v| v <= value)..].first().copied().unwrap_or(end);
                        next.min(end) - value
                    }
                    None => size,
                };
                symbols.push_symbol(sym_name, value, SymbolSize::Known(size), kind);
            }
        }
    }
    symbols.finish();
    Ok((LoadedModule { addr, name, state, text, orc, symbols, livepatch }, problems))
}
