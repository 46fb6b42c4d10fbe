//! A kernel read from physical memory plus VMCOREINFO: its address space,
//! symbols (kallsyms, module symtabs), types (BTF), ORC tables, text ranges
//! and per-CPU data. Everything is found in memory; nothing needs
//! debuginfo.

use std::borrow::Cow;

use super::addrspace::{KernelSpace, PagingConfig, SplitReader};
use super::btf::{Btf, BtfError, section_ranges};
use super::kallsyms::{KallsymsError, KallsymsLocation, KnownSymbol, read_kallsyms};
use super::layout::{Layout, LayoutError};
use super::modules::{LoadedModule, read_modules};
use super::orc::{LazyOrc, OrcLocation};
use crate::dump::VmcoreInfo;
use crate::memory::{Memory, MemoryError, PhysMemory};
use crate::orc::{ORC_ENTRY_SIZE, OrcError, OrcFormat, OrcTable, OrcTables, format_from_header, format_from_release};
use crate::symbols::{SymbolError, SymbolTable, Symbolizer};
use crate::walk::{CodeRanges, StackKind, StackRange, TrampolineKind};

/// Why a kernel could not be set up. Each names what was missing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// A VMCOREINFO entry needed is absent (named as VMCOREINFO writes it).
    #[error("VMCOREINFO lacks {0} (a kernel before 6.0 needs --vmlinux or --system-map)")]
    MissingVmcoreinfo(&'static str),
    /// A symbol needed is not in the vmlinux symbols.
    #[error("kernel symbol {0} not found")]
    MissingSymbol(&'static str),
    /// A read of kernel memory failed.
    #[error("{what}: {err}")]
    Memory {
        /// What was being read (e.g. "BTF", ".orc_unwind").
        what: &'static str,
        /// The failed read.
        err: MemoryError,
    },
    /// kallsyms could not be decoded.
    #[error(transparent)]
    Kallsyms(#[from] KallsymsError),
    /// The BTF in memory (`__start_BTF`) does not parse.
    #[error("BTF at {addr:#x}: {err}")]
    Btf {
        /// Address of `__start_BTF`.
        addr: u64,
        /// Why it does not parse.
        err: BtfError,
    },
    /// The BTF given as a file (/sys/kernel/btf/vmlinux) does not parse.
    #[error("BTF file: {0}")]
    BtfFile(BtfError),
    /// BTF lacks a struct or member lpstack needs.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// An ORC table is unusable or of an unknown format.
    #[error("ORC table of {object}: {err}")]
    Orc {
        /// The object the table belongs to, e.g. "vmlinux".
        object: String,
        /// What is wrong with it.
        err: OrcError,
    },
    /// A region to read is larger than 256 MiB.
    #[error("{what} is {size} bytes, too large to be real")]
    TooLarge {
        /// The region (e.g. "BTF").
        what: &'static str,
        /// Its size, in bytes.
        size: u64,
    },
    /// The vmlinux file given is not the dump's kernel (GNU build IDs differ).
    #[error("the given vmlinux has build ID {file}, the dump's kernel {dump}: not the same kernel")]
    BuildIdMismatch {
        /// The file's build ID, in hex.
        file: String,
        /// The dump's build ID (VMCOREINFO `BUILD-ID`), in hex.
        dump: String,
    },
    /// The symbols given place a symbol elsewhere than VMCOREINFO does.
    #[error("the given symbols put {name} at {file:#x} (after KASLR), the dump says {dump:#x}: not the same kernel")]
    SymbolMismatch {
        /// The symbol compared (`_stext` or `init_uts_ns`).
        name: &'static str,
        /// Its address from the given symbols, moved by the KASLR offset.
        file: u64,
        /// Its address from VMCOREINFO.
        dump: u64,
    },
    /// The System.map given does not parse.
    #[error("System.map: {0}")]
    SystemMap(SymbolError),
    /// The symbols of the vmlinux given could not be read.
    #[error("vmlinux: {0}")]
    Vmlinux(SymbolError),
}

/// Where vmlinux symbols come from.
#[derive(Clone, Copy, Debug, Default)]
pub enum SymbolSource<'a> {
    /// kallsyms in the dump (6.0+ VMCOREINFO names its tables).
    #[default]
    Kallsyms,
    /// A System.map text, link-time addresses.
    SystemMap(&'a str),
    /// A vmlinux ELF file's symtab, link-time addresses.
    Vmlinux(&'a [u8]),
}

/// Moves link-time kernel-image symbols by the KASLR offset; per-CPU and
/// absolute symbols stay.
fn relocate(table: &SymbolTable, offset: u64) -> SymbolTable {
    use crate::symbols::SymbolSize;
    let mut out = SymbolTable::new(table.object());
    for s in table.symbols() {
        let addr =
            if s.address >= super::addrspace::START_KERNEL_MAP { s.address.wrapping_add(offset) } else { s.address };
        let size = if s.size_is_inferred() { SymbolSize::Unknown } else { SymbolSize::Known(s.size) };
        out.push_symbol(table.name(s), addr, size, s.kind());
    }
    out.finish();
    out
}

/// How to open a kernel ([`Kernel::open`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions<'a> {
    /// Where vmlinux symbols come from (kallsyms in memory by default).
    pub symbols: SymbolSource<'a>,
    /// Threads the setup may use: with 2 or more, large tables (kallsyms,
    /// BTF, ORC) are read by two readers, and BTF is parsed beside the ORC
    /// index. 0 and 1: one.
    pub threads: usize,
    /// Read vmlinux's ORC tables as walks need them instead of whole at
    /// setup: a whole-dump check touches a few hundred of their ~1,100
    /// pages. Worth it where a page is cheap to get on its own (a dump
    /// file); a source where each read is a request (/proc/kcore) is
    /// better served by one bulk read.
    pub orc_on_demand: bool,
}

fn mem_err(what: &'static str) -> impl Fn(MemoryError) -> KernelError {
    move |err| KernelError::Memory { what, err }
}

/// The page-table root and depth VMCOREINFO describes.
pub fn paging_from_vmcoreinfo(vi: &VmcoreInfo) -> Result<PagingConfig, KernelError> {
    let phys_base = vi.number("phys_base").ok_or(KernelError::MissingVmcoreinfo("NUMBER(phys_base)"))?;
    let root_sym = vi
        .symbol("init_top_pgt")
        .or_else(|| vi.symbol("swapper_pg_dir"))
        .ok_or(KernelError::MissingVmcoreinfo("SYMBOL(init_top_pgt)"))?;
    let levels = if vi.number("pgtable_l5_enabled") == Some(1) { 5 } else { 4 };
    Ok(PagingConfig {
        root: PagingConfig::image_phys(root_sym, phys_base),
        levels,
        sme_mask: vi.number("sme_mask").unwrap_or(0) as u64,
    })
}

/// What the caller can tell about the CPUs: each CPU's registers.
#[derive(Clone, Copy, Debug)]
pub struct CpuRegs {
    /// The CPU's number, as in `task_struct.cpu`.
    pub cpu: u32,
    /// Its registers when it stopped (from a dump's crash notes).
    pub regs: crate::arch::x86_64::Regs,
}

/// A kernel ready for task walks.
pub struct Kernel<P> {
    pub(crate) mem: KernelSpace<P>,
    pub(crate) release: String,
    pub(crate) symbols: Symbolizer,
    pub(crate) layout: Layout,
    pub(crate) orc: OrcTables<'static>,
    /// vmlinux's ORC read on demand (dumps); None when it is in `orc`.
    pub(crate) vmlinux_orc: Option<LazyOrc>,
    pub(crate) code: CodeRanges,
    pub(crate) modules: Vec<LoadedModule>,
    pub(crate) thread_size: u64,
    pub(crate) init_task: u64,
    /// `ret_from_fork_asm` (6.5+) or `ret_from_fork`: entered by a jump, so a
    /// task starting there has a signal-style first frame.
    pub(crate) ret_from_fork: u64,
    pub(crate) nr_cpus: u32,
    pub(crate) per_cpu_offsets: Vec<u64>,
    pub(crate) online: Vec<bool>,
    /// Each CPU's stacks besides the task stack (hardirq, exception), for
    /// the task running there.
    pub(crate) cpu_stacks: Vec<Vec<StackRange>>,
    /// Problems that did not stop the setup (a module without symbols...).
    pub(crate) warnings: Vec<String>,
}

/// vmlinux symbols from the kernel's own kallsyms tables, located by
/// VMCOREINFO (6.0+) and checked against the symbols it names.
pub fn kallsyms_from_vmcoreinfo<M: Memory + Send>(mem: &mut M, vi: &VmcoreInfo) -> Result<SymbolTable, KernelError> {
    let need = |name: &'static str| vi.symbol(name).ok_or(KernelError::MissingVmcoreinfo(name));
    let loc = KallsymsLocation {
        num_syms: need("kallsyms_num_syms")?,
        names: need("kallsyms_names")?,
        token_table: need("kallsyms_token_table")?,
        token_index: need("kallsyms_token_index")?,
        offsets: vi.symbol("kallsyms_offsets"),
        relative_base: vi.symbol("kallsyms_relative_base"),
        addresses: vi.symbol("kallsyms_addresses"),
    };
    let known: Vec<KnownSymbol> = ["_stext", "init_uts_ns", "swapper_pg_dir", "init_top_pgt"]
        .iter()
        .filter_map(|&name| vi.symbol(name).map(|address| KnownSymbol { name, address }))
        .collect();
    Ok(read_kallsyms(mem, &loc, &known)?)
}

/// One CPU's hardirq and exception stacks (`in_irq_stack`,
/// `in_exception_stack`), `per_cpu_offset` being its per-CPU offset. Empty
/// when the kernel's BTF does not describe them.
fn read_cpu_stacks<M: Memory>(
    mem: &mut M,
    layout: &Layout,
    table: &SymbolTable,
    per_cpu_offset: u64,
) -> Result<Vec<StackRange>, MemoryError> {
    let mut out = Vec::new();
    let Some(l) = layout.cpu_stacks else { return Ok(out) };
    let sym = |name: &str| table.find_by_name(name).next().map(|s| s.address.wrapping_add(per_cpu_offset));
    let hardirq = match l.pcpu_hot_hardirq {
        Some(f) => sym("pcpu_hot").map(|a| a.wrapping_add(f.offset)),
        None => sym("hardirq_stack_ptr"),
    };
    if let Some(at) = hardirq {
        // The pointer is the topmost entry: the stack ends 8 bytes above.
        let top = mem.read_u64(at)?;
        if top != 0 {
            let end = top.wrapping_add(8);
            out.push(StackRange { start: end.wrapping_sub(l.irq_stack_size), end, kind: StackKind::Irq });
        }
    }
    if let Some(at) = sym("cea_exception_stacks") {
        let base = mem.read_u64(at)?;
        if base != 0 {
            for f in l.exception.iter().flatten() {
                let start = base.wrapping_add(f.offset);
                out.push(StackRange { start, end: start.wrapping_add(f.size), kind: StackKind::Exception });
            }
            // The exception stacks sit in the CPU's cpu_entry_area, and so
            // does the entry stack (`cpu_entry_stack`).
            if let (Some(estacks), Some(entry)) = (l.cea_estacks, l.cea_entry_stack) {
                let start = base.wrapping_sub(estacks.offset).wrapping_add(entry.offset);
                out.push(StackRange { start, end: start.wrapping_add(entry.size), kind: StackKind::Entry });
            }
        }
    }
    Ok(out)
}

/// The struct layouts from vmlinux's BTF given as a file's bytes.
fn layout_from_btf(bytes: &[u8]) -> Result<Layout, KernelError> {
    Ok(Layout::from_btf(&Btf::parse(bytes).map_err(KernelError::BtfFile)?)?)
}

/// The largest table read out of memory at once (real ones are a few MB).
const MAX_TABLE: u64 = 256 << 20;

/// Bytes of vmlinux's BTF type section read first: the kernel's BTF starts
/// with the core types (Debian 6.12: task_struct at 0.1% of 2.9 MB, the
/// last struct lpstack needs, klp_patch, at 22%).
const BTF_TYPES_FIRST: usize = 1 << 20;

/// The struct layouts from vmlinux's BTF at `start..stop` in memory, read
/// from the start of its sections a prefix at a time (a dump's BTF is over
/// a thousand pages to decompress): one of `BTF_TYPES_FIRST` bytes of types
/// and as large a share of the strings, then four times as much, until the
/// prefix answers every lookup ([`Btf::ran_short`]).
fn layout_from_memory<M: Memory>(mem: &mut M, start: u64, stop: u64) -> Result<Layout, KernelError> {
    let len = stop.saturating_sub(start);
    if len > MAX_TABLE {
        return Err(KernelError::TooLarge { what: "BTF", size: len });
    }
    let mut bytes = vec![0u8; len as usize];
    let head = bytes.len().min(super::btf::HEADER_LEN);
    mem.read(start, &mut bytes[..head]).map_err(mem_err("BTF"))?;
    let sections = section_ranges(&bytes, len).map_err(|err| KernelError::Btf { addr: start, err })?;
    let (types, strings) = (sections.types.len(), sections.strings.len());
    let mut read = (0usize, 0usize);
    let mut want_types = BTF_TYPES_FIRST.min(types);
    loop {
        let want_strings = if want_types == types {
            strings
        } else {
            // The strings come in the order the types first name them.
            let share = (strings as u128 * want_types as u128 / types.max(1) as u128) as usize;
            share.saturating_add(64 << 10).min(strings)
        };
        for (section, from, to) in
            [(&sections.types, &mut read.0, want_types), (&sections.strings, &mut read.1, want_strings)]
        {
            if to > *from {
                let (at, end) = (section.start + *from, section.start + to);
                mem.read_bulk_into(start + at as u64, &mut bytes[at..end]).map_err(mem_err("BTF"))?;
                *from = to;
            }
        }
        // With every byte read, the "prefix" is the whole table.
        let btf = Btf::parse_prefix(&bytes, read.0, read.1).map_err(|err| KernelError::Btf { addr: start, err })?;
        let layout = Layout::from_btf(&btf);
        if !btf.ran_short() {
            return Ok(layout?);
        }
        want_types = want_types.saturating_mul(4).min(types);
    }
}

/// The address of vmlinux symbol `name`, which setup cannot do without.
fn required(table: &SymbolTable, name: &'static str) -> Result<u64, KernelError> {
    table.find_by_name(name).next().map(|s| s.address).ok_or(KernelError::MissingSymbol(name))
}

/// vmlinux's ORC tables as read (`__start_orc_unwind_ip` ...): the IPs,
/// the entries, where the IPs start, and the format.
struct RawOrc {
    ips: Vec<u8>,
    entries: Vec<u8>,
    ip_start: u64,
    format: OrcFormat,
}

/// Where vmlinux's ORC tables are, and their format (from `.orc_header`,
/// else from the release).
fn vmlinux_orc_location<M: Memory>(
    mem: &mut M,
    table: &SymbolTable,
    release: &str,
) -> Result<(OrcLocation, OrcFormat), KernelError> {
    let sym = |name| required(table, name);
    let opt = |name: &str| table.find_by_name(name).next().map(|s| s.address);
    let ips = sym("__start_orc_unwind_ip")?;
    let ip_stop = sym("__stop_orc_unwind_ip")?;
    let entries = sym("__start_orc_unwind")?;
    let format = match opt("__start_orc_header") {
        Some(h) => {
            let header = read_bytes(mem, h, 20, ".orc_header")?;
            format_from_header(&header)
        }
        None => format_from_release(release),
    }
    .map_err(|err| KernelError::Orc { object: "vmlinux".into(), err })?;
    let lookup = match (opt("orc_lookup"), opt("orc_lookup_end"), opt("_stext")) {
        (Some(a), Some(b), Some(stext)) => Some((a, b, stext)),
        _ => None,
    };
    let len = ip_stop.saturating_sub(ips) / 4;
    Ok((OrcLocation { ips, len, entries, lookup }, format))
}

fn read_vmlinux_orc<M: Memory>(mem: &mut M, table: &SymbolTable, release: &str) -> Result<RawOrc, KernelError> {
    let (at, format) = vmlinux_orc_location(mem, table, release)?;
    let ips = read_bytes(mem, at.ips, at.len * 4, ".orc_unwind_ip")?;
    let entries = read_bytes(mem, at.entries, at.len * ORC_ENTRY_SIZE as u64, ".orc_unwind")?;
    Ok(RawOrc { ips, entries, ip_start: at.ips, format })
}

impl RawOrc {
    fn table(self) -> Result<(OrcTable<'static>, OrcFormat), KernelError> {
        let orc = OrcTable::new(Cow::Owned(self.ips), Cow::Owned(self.entries), self.ip_start, self.format)
            .map_err(|err| KernelError::Orc { object: "vmlinux".into(), err })?;
        Ok((orc, self.format))
    }
}

fn read_bytes<M: Memory>(mem: &mut M, addr: u64, len: u64, what: &'static str) -> Result<Vec<u8>, KernelError> {
    if len > MAX_TABLE {
        return Err(KernelError::TooLarge { what, size: len });
    }
    mem.read_bulk(addr, len as usize).map_err(mem_err(what))
}

impl<P: PhysMemory + Send> Kernel<P> {
    /// Sets up the kernel from physical memory (a dump, /proc/kcore) and
    /// its VMCOREINFO: symbols as `options` say, types from BTF, ORC,
    /// modules and CPUs, all read from memory.
    pub fn open(phys: P, vi: &VmcoreInfo, options: OpenOptions<'_>) -> Result<Self, KernelError> {
        let source = options.symbols;
        let release = vi.osrelease().unwrap_or("unknown").to_string();
        let mut mem = KernelSpace::new(phys, paging_from_vmcoreinfo(vi)?);

        let table = match source {
            SymbolSource::Kallsyms => None,
            SymbolSource::SystemMap(text) => {
                Some(crate::symbols::parse_system_map("vmlinux", text).map_err(KernelError::SystemMap)?)
            }
            SymbolSource::Vmlinux(data) => {
                let file_id = object::File::parse(data)
                    .ok()
                    .and_then(|f| object::Object::build_id(&f).ok().flatten())
                    .map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>());
                if let (Some(file), Some(dump)) = (file_id, vi.build_id())
                    && !dump.to_ascii_lowercase().starts_with(&file)
                    && !file.starts_with(&dump.to_ascii_lowercase())
                {
                    return Err(KernelError::BuildIdMismatch { file, dump: dump.to_string() });
                }
                Some(crate::symbols::symbols_from_elf("vmlinux", data).map_err(KernelError::Vmlinux)?)
            }
        };
        if let Some(t) = table {
            let t = relocate(&t, vi.kerneloffset().unwrap_or(0));
            for name in ["_stext", "init_uts_ns"] {
                if let (Some(file), Some(dump)) = (t.find_by_name(name).next().map(|s| s.address), vi.symbol(name))
                    && file != dump
                {
                    return Err(KernelError::SymbolMismatch { name, file, dump });
                }
            }
            return Self::from_parts(mem, release, t, None, options.threads > 1, options.orc_on_demand);
        }

        let table = kallsyms_from_vmcoreinfo(&mut SplitReader::new(&mut mem, options.threads > 1), vi)?;
        Self::from_parts(mem, release, table, None, options.threads > 1, options.orc_on_demand)
    }

    /// Sets up the kernel once vmlinux symbols are known. BTF comes from
    /// `btf` when given (a running kernel's /sys/kernel/btf/vmlinux), else
    /// from `__start_BTF..__stop_BTF` in memory. `parallel`: large reads
    /// are split between two readers, and BTF is parsed beside the ORC
    /// index. `lazy_orc`: vmlinux's ORC is read as walks need it (a dump:
    /// a check touches a few hundred of its pages), else whole now.
    pub(crate) fn from_parts(
        mut mem: KernelSpace<P>,
        release: String,
        table: SymbolTable,
        btf: Option<&[u8]>,
        parallel: bool,
        lazy_orc: bool,
    ) -> Result<Self, KernelError> {
        let sym = |name| required(&table, name);
        let opt = |name: &str| table.find_by_name(name).next().map(|s| s.address);

        // Types from BTF, given or read from memory, and ORC: megabytes of
        // pages to decompress.
        let mut reader = SplitReader::new(&mut mem, parallel);
        // BTF from memory is read and parsed now, a prefix at a time; BTF
        // given is parsed beside the ORC index when that is built.
        let from_memory = match btf {
            Some(_) => None,
            None => Some(layout_from_memory(&mut reader, sym("__start_BTF")?, sym("__stop_BTF")?)),
        };
        let types = move || from_memory.unwrap_or_else(|| layout_from_btf(btf.unwrap_or_default()));
        let mut orc = OrcTables::new();
        let (layout, vmlinux_orc, orc_format) = if lazy_orc {
            let layout = types();
            let (at, format) = vmlinux_orc_location(&mut reader, &table, &release)?;
            let lazy = LazyOrc::new(at, format, &mut reader).map_err(mem_err(".orc_unwind_ip"))?;
            lazy.check().map_err(|err| KernelError::Orc { object: "vmlinux".into(), err })?;
            (layout?, Some(lazy), format)
        } else {
            let raw_orc = read_vmlinux_orc(&mut reader, &table, &release);
            drop(reader);
            let (layout, vmlinux_orc) = if parallel {
                rayon::join(types, || raw_orc.and_then(RawOrc::table))
            } else {
                (types(), raw_orc.and_then(RawOrc::table))
            };
            // The BTF's errors first, as when read one after the other.
            let layout = layout?;
            let (vmlinux_orc, orc_format) = vmlinux_orc?;
            orc.push(vmlinux_orc);
            (layout, None, orc_format)
        };

        // Text, for __kernel_text_address.
        let mut code = CodeRanges::new();
        code.add(sym("_stext")?, sym("_etext")?);
        if let (Some(a), Some(b)) = (opt("_sinittext"), opt("_einittext")) {
            code.add(a, b);
        }
        for (name, kind) in [
            ("return_to_handler", TrampolineKind::FtraceGraph),
            ("__kretprobe_trampoline", TrampolineKind::Kretprobe),
            ("kretprobe_trampoline", TrampolineKind::Kretprobe),
            ("arch_rethook_trampoline", TrampolineKind::Rethook),
        ] {
            if let Some(a) = opt(name) {
                code.add_trampoline(a, kind);
            }
        }

        let thread_size = match (opt("init_stack"), opt("__end_init_stack")) {
            (Some(a), Some(b)) if b > a && (b - a).is_power_of_two() => b - a,
            _ => 16 << 10,
        };
        let ret_from_fork = opt("ret_from_fork_asm").or_else(|| opt("ret_from_fork")).unwrap_or(0);
        let init_task = sym("init_task")?;

        // Per-CPU data.
        let mut warnings = Vec::new();
        let nr_cpus = match opt("nr_cpu_ids") {
            Some(a) => {
                let mut b = [0u8; 4];
                mem.read(a, &mut b).map_err(mem_err("nr_cpu_ids"))?;
                u32::from_le_bytes(b).clamp(1, 8192)
            }
            None => 1,
        };
        let mut per_cpu_offsets = Vec::new();
        if let Some(a) = opt("__per_cpu_offset") {
            for cpu in 0..nr_cpus as u64 {
                per_cpu_offsets.push(mem.read_u64(a + cpu * 8).map_err(mem_err("__per_cpu_offset"))?);
            }
        }
        let mut online = vec![true; nr_cpus as usize];
        if let Some(mask) = opt("__cpu_online_mask") {
            for (cpu, slot) in online.iter_mut().enumerate() {
                let word = mem.read_u64(mask + (cpu as u64 / 64) * 8).map_err(mem_err("__cpu_online_mask"))?;
                *slot = word & (1 << (cpu % 64)) != 0;
            }
        }

        let cpu_stacks = (0..nr_cpus)
            .map(|cpu| {
                let offset = per_cpu_offsets.get(cpu as usize).copied().unwrap_or(0);
                read_cpu_stacks(&mut mem, &layout, &table, offset).unwrap_or_else(|e| {
                    warnings.push(format!("CPU {cpu}'s IRQ and exception stacks: {e}"));
                    Vec::new()
                })
            })
            .collect();

        let modules_head = opt("modules");
        let mut symbols = Symbolizer::new();
        symbols.add(table);
        let mut modules = match (layout.module, modules_head) {
            (Some(ml), Some(head)) => read_modules(&mut mem, &ml, layout.list_next, head, orc_format, &mut warnings),
            _ => Vec::new(),
        };
        for m in &mut modules {
            for &(start, end) in &m.text {
                code.add(start, end);
            }
            if let Some(t) = m.orc.take() {
                orc.push(t);
            }
            symbols.add(std::mem::replace(&mut m.symbols, SymbolTable::new(&m.name)));
        }

        Ok(Kernel {
            mem,
            release,
            symbols,
            layout,
            orc,
            vmlinux_orc,
            code,
            modules,
            thread_size,
            init_task,
            ret_from_fork,
            nr_cpus,
            per_cpu_offsets,
            online,
            cpu_stacks,
            warnings,
        })
    }
}

impl<P: PhysMemory> Kernel<P> {
    /// The kernel release (`uname -r`), from VMCOREINFO.
    pub fn release(&self) -> &str {
        &self.release
    }

    /// vmlinux and module symbols.
    pub fn symbols(&self) -> &Symbolizer {
        &self.symbols
    }

    /// The kernel's virtual address space (page walks, KASLR).
    pub fn memory(&mut self) -> &mut KernelSpace<P> {
        &mut self.mem
    }

    /// Struct layouts from BTF.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The loaded modules, with their symbols and ORC.
    pub fn modules(&self) -> &[LoadedModule] {
        &self.modules
    }

    /// Each CPU's stacks besides the task stack (hardirq, exception).
    pub fn cpu_stacks(&self) -> &[Vec<StackRange>] {
        &self.cpu_stacks
    }

    /// The size of a task stack.
    pub fn thread_size(&self) -> u64 {
        self.thread_size
    }

    /// Problems met that did not stop the setup or the task listing (a
    /// module without symbols, a broken task list...).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The address of `init_task` (the head of the task list, pid 0 on CPU 0).
    pub fn init_task(&self) -> u64 {
        self.init_task
    }

    /// Address of a per-CPU variable on `cpu`.
    pub fn per_cpu(&self, var: u64, cpu: u32) -> Option<u64> {
        self.per_cpu_offsets.get(cpu as usize).map(|o| var.wrapping_add(*o))
    }

    /// Each CPU's registers as saved by a crashing kernel in the per-CPU
    /// `crash_notes` (kdump). Empty when nothing was saved (QEMU dumps).
    pub fn crash_notes_regs(&mut self) -> Vec<CpuRegs> {
        let mut out = Vec::new();
        let Some(sym) = self.symbol("crash_notes") else { return out };
        let Ok(base) = self.mem.read_u64(sym) else { return out };
        for cpu in 0..self.nr_cpus {
            let Some(addr) = self.per_cpu(base, cpu) else { continue };
            let mut buf = [0u8; 512];
            if self.mem.read(addr, &mut buf).is_err() {
                continue;
            }
            let prstatus = crate::dump::notes::NoteIter::new(&buf, addr)
                .flatten()
                .find(|n| n.n_type == 1 && n.name == b"CORE")
                .and_then(|n| crate::dump::notes::parse_prstatus_x86_64(&n).ok());
            if let Some(p) = prstatus {
                out.push(CpuRegs { cpu, regs: p.regs });
            }
        }
        out
    }

    /// The kernel's livepatch state: every registered patch and the
    /// transition in progress. None when the kernel has no livepatch
    /// (no `klp_patches` symbol); an error when it has one but its state
    /// cannot be read (no 5.1+ layout in BTF, memory missing).
    pub fn klp_state(&mut self) -> Result<Option<super::klp::KlpState>, super::klp::KlpError> {
        let Some(patches) = self.symbol("klp_patches") else { return Ok(None) };
        // Livepatch is there: whatever else is missing makes it unknown,
        // never absent.
        let (Some(l), Some(transition_patch), Some(target_state)) =
            (self.layout.klp, self.symbol("klp_transition_patch"), self.symbol("klp_target_state"))
        else {
            return Err(super::klp::KlpError::NoLayout);
        };
        let syms = super::klp::KlpSymbols { patches, transition_patch, target_state };
        super::klp::read_klp_state(&mut self.mem, &l, self.layout.list_next, syms).map(Some)
    }

    /// The vmlinux BTF, read again from `__start_BTF..__stop_BTF`.
    pub fn read_btf(&mut self) -> Result<Vec<u8>, KernelError> {
        let start = self.symbol("__start_BTF").ok_or(KernelError::MissingSymbol("__start_BTF"))?;
        let stop = self.symbol("__stop_BTF").ok_or(KernelError::MissingSymbol("__stop_BTF"))?;
        read_bytes(&mut self.mem, start, stop.saturating_sub(start), "BTF")
    }

    /// Modules that are (or, with `mod->klp` unreadable, may be) livepatch
    /// modules, with their text ranges: where any replacement lives.
    pub fn livepatch_modules(&self) -> Vec<(String, Vec<(u64, u64)>)> {
        self.modules.iter().filter(|m| m.livepatch != Some(false)).map(|m| (m.name.clone(), m.text.clone())).collect()
    }

    /// The CPU that called panic (`panic_cpu`), if one did.
    pub fn panic_cpu(&mut self) -> Option<u32> {
        let at = self.symbol("panic_cpu")?;
        let mut b = [0u8; 4];
        self.mem.read(at, &mut b).ok()?;
        u32::try_from(i32::from_le_bytes(b)).ok()
    }

    /// The address of vmlinux symbol `name` (the first if several), if any.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.table("vmlinux").and_then(|t| t.find_by_name(name).next()).map(|s| s.address)
    }
}

impl PhysMemory for crate::dump::Dump<'_> {
    fn read_phys(&mut self, paddr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        crate::dump::Dump::read_phys(self, paddr, buf)
    }

    fn split(&self) -> Option<Self> {
        Some(crate::dump::Dump::split(self))
    }

    fn held_page(&self, paddr: u64) -> Option<&[u8]> {
        crate::dump::Dump::held_page(self, paddr)
    }

    fn hold_page(&mut self, paddr: u64, page: Box<[u8]>) -> Option<Box<[u8]>> {
        crate::dump::Dump::hold_page(self, paddr, page)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::io::Read;
    use std::ops::Range;

    use super::*;
    use crate::memory::MemoryErrorKind;

    /// Memory holding `bytes` at `BASE`, of which only `present` (offsets)
    /// can be read; counts the bytes read.
    struct Holes<'a> {
        bytes: &'a [u8],
        present: Vec<Range<usize>>,
        read: usize,
    }

    const BASE: u64 = 0xffff_ffff_8300_0000;

    impl Memory for Holes<'_> {
        fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            let at = (addr - BASE) as usize;
            if !self.present.iter().any(|r| r.start <= at && at + buf.len() <= r.end) {
                return Err(MemoryError::new(addr, MemoryErrorKind::NotInDump));
            }
            buf.copy_from_slice(&self.bytes[at..at + buf.len()]);
            self.read += buf.len();
            Ok(())
        }
    }

    fn btf(release: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/btf/vmlinux-{release}.btf.gz", env!("CARGO_MANIFEST_DIR"));
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&std::fs::read(path).unwrap()[..]).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn btf_in_memory_is_read_a_prefix_at_a_time() {
        for (release, whole_read) in [("6.12.117+deb12-amd64", false), ("6.1.0-57-amd64", true)] {
            let data = btf(release);
            let whole = format!("{:?}", Layout::from_btf(&Btf::parse(&data).unwrap()).unwrap());
            let stop = BASE + data.len() as u64;
            let mut all = Holes { bytes: &data, present: vec![0..data.len()], read: 0 };
            assert_eq!(format!("{:?}", layout_from_memory(&mut all, BASE, stop).unwrap()), whole, "{release}");
            // 6.12's layouts are in its first MiB of types; 6.1 is read to
            // the end (it has no pcpu_hot), once.
            assert_eq!(all.read == data.len(), whole_read, "{release}: {} of {} bytes", all.read, data.len());
            assert!(all.read <= data.len(), "{release}: {} of {} bytes", all.read, data.len());
            if !whole_read {
                assert!(all.read < data.len() / 2, "{release}: {} of {} bytes", all.read, data.len());
                // So memory past the prefixes may be missing (a cut dump).
                let s = section_ranges(&data, data.len() as u64).unwrap();
                let cut = s.types.start + BTF_TYPES_FIRST;
                let strings = s.strings.start..s.strings.start + s.strings.len() / 2;
                let mut holes = Holes { bytes: &data, present: vec![0..cut, strings], read: 0 };
                assert_eq!(format!("{:?}", layout_from_memory(&mut holes, BASE, stop).unwrap()), whole);
            }
            // A hole where the prefix is read is named.
            let mut hole = Holes { bytes: &data, present: vec![0..4096], read: 0 };
            let err = layout_from_memory(&mut hole, BASE, stop).unwrap_err().to_string();
            assert!(err.contains("BTF") && err.contains(&format!("{:#x}", BASE + 4096)), "{err}");
        }
    }
}
