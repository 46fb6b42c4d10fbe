//! Crash-dump readers: ELF vmcores (kdump, QEMU), kdump-compressed files,
//! the makedumpfile flattened format, and their notes and VMCOREINFO.
//!
//! [`Dump`] opens any of them from a byte slice (the CLI mmaps the file),
//! telling them apart by their first bytes, and reads physical memory. It
//! knows nothing of page tables: the address-space layer builds on
//! [`Dump::read_phys`] (and [`Dump::read_virt_direct`] before it has page
//! tables).
//!
//! One module per format, each zero-copy over the input, each with its own
//! small `Copy` error type:
//!
//! - [`elf`]: ELF64 cores (PT_LOAD, PT_NOTE, PN_XNUM)
//! - [`kdump`]: "KDUMP   " files, generic over a [`source::ByteSource`]
//! - [`flattened`]: makedumpfile's flattened stream, read in place
//! - [`notes`]: ELF notes, NT_PRSTATUS, QEMU's CPU note, VMCOREINFO note
//! - [`vmcoreinfo`]: `KEY=VALUE` parsing
//! - [`write`](mod@write): a kdump-compressed writer (for cutting fixtures)

pub mod elf;
pub mod flattened;
pub mod kcore;
pub mod kdump;
pub mod lzo;
pub mod notes;
pub mod source;
pub mod vmcoreinfo;
pub mod write;

use crate::memory::{Memory, MemoryError, MemoryErrorKind};

use elf::{ElfDump, ElfError, ElfTail, Lookup};
use flattened::{FlatError, FlattenedSource};
use kdump::{KdumpError, KdumpFile, KdumpHeader, KdumpSubHeader, PageLookup};
use notes::{Note, NoteError, NoteIter, NoteSummary};
use source::{ByteSource, SliceSource};
use vmcoreinfo::VmcoreInfoError;

pub use notes::{CpuState, Prstatus, QemuCpuState, QemuSegment};
pub use vmcoreinfo::VmcoreInfo;

/// The compression flags a kdump header's `status` announces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Compression(pub u32);

impl Compression {
    /// Pages may be zlib-compressed (`DUMP_DH_COMPRESSED_ZLIB`).
    pub fn zlib(self) -> bool {
        self.0 & kdump::DUMP_DH_COMPRESSED_ZLIB != 0
    }
    /// Pages may be LZO1X-compressed (`DUMP_DH_COMPRESSED_LZO`).
    pub fn lzo(self) -> bool {
        self.0 & kdump::DUMP_DH_COMPRESSED_LZO != 0
    }
    /// Pages may be snappy-compressed (`DUMP_DH_COMPRESSED_SNAPPY`).
    pub fn snappy(self) -> bool {
        self.0 & kdump::DUMP_DH_COMPRESSED_SNAPPY != 0
    }
    /// Pages may be zstd-compressed (`DUMP_DH_COMPRESSED_ZSTD`).
    pub fn zstd(self) -> bool {
        self.0 & kdump::DUMP_DH_COMPRESSED_ZSTD != 0
    }
    /// "zlib", "lzo", ... for each flag set.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        kdump::compression_names(self.0)
    }
}

/// Which container format a [`Dump`] was opened from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DumpFormat {
    /// An ELF core without QEMU notes: kdump's vmcore, makedumpfile -E, kcore.
    ElfKdump,
    /// QEMU `dump-guest-memory` in ELF.
    ElfQemu,
    /// kdump-compressed; `compression` is the header's status flags.
    KdumpCompressed {
        /// The compression flags of `disk_dump_header.status`.
        compression: Compression,
    },
    /// The makedumpfile flattened form of a kdump-compressed file.
    Flattened {
        /// The compression flags of the reassembled file's `status`.
        compression: Compression,
    },
}

/// Why a dump could not be opened, or its memory read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DumpError {
    /// No ELF, kdump or flattened signature at offset 0.
    #[error("not a crash dump: no ELF, \"KDUMP   \" or \"makedumpfile\" signature at offset 0")]
    UnknownFormat,
    /// A flattened stream whose reassembled file is ELF: only kdump-compressed
    /// contents are read in place.
    #[error("flattened dump holds an ELF file, not a kdump one: reassemble it with makedumpfile -R")]
    FlattenedElf,
    /// The ELF core is malformed.
    #[error(transparent)]
    Elf(#[from] ElfError),
    /// The kdump-compressed file, or a page in it, is malformed.
    #[error(transparent)]
    Kdump(#[from] KdumpError),
    /// The flattened stream is malformed.
    #[error(transparent)]
    Flat(#[from] FlatError),
    /// The address is in no memory range the dump describes.
    #[error("physical address {paddr:#x} is in no memory range of the dump")]
    Unmapped {
        /// The first byte that could not be read (`u64::MAX` when the
        /// requested range wraps around).
        paddr: u64,
    },
    /// The memory exists but its page is not in the dump (excluded, lost to
    /// a full disk, or in another file of a split dump).
    #[error("physical page at {paddr:#x} was left out of the dump")]
    NotInDump {
        /// The first byte that could not be read.
        paddr: u64,
    },
}

impl DumpError {
    /// The memory-layer view: which address, and why.
    pub fn to_memory_error(&self, addr: u64) -> MemoryError {
        match *self {
            DumpError::Unmapped { paddr } => MemoryError::new(paddr, MemoryErrorKind::Unmapped),
            DumpError::NotInDump { paddr } => MemoryError::new(paddr, MemoryErrorKind::NotInDump),
            _ => MemoryError::new(addr, MemoryErrorKind::Backend),
        }
    }
}

enum Backend<'data> {
    Elf(ElfDump<'data>),
    Kdump(KdumpFile<'data, SliceSource<'data>>),
    Flat(KdumpFile<'data, FlattenedSource<'data>>),
}

/// Decoded pages, least recently used out. Pages are allocated on first use
/// and then reused.
struct PageCache {
    slots: Vec<Slot>,
    tick: u64,
}

struct Slot {
    pfn: u64,
    used: u64,
    page: Box<[u8]>,
}

const CACHE_PAGES: usize = 16;
const EMPTY: u64 = u64::MAX;
/// The largest page size believed from VMCOREINFO (as kdump's block_size).
const MAX_PAGE_SIZE: u64 = 1 << 18;

impl PageCache {
    fn new() -> Self {
        PageCache { slots: Vec::new(), tick: 0 }
    }

    fn held(&self, pfn: u64) -> Option<&[u8]> {
        self.slots.iter().find(|s| s.pfn == pfn).map(|s| &s.page[..])
    }

    /// The index of a slot to fill, emptied: a new one while there is
    /// room, else the least recently used.
    fn free_slot(&mut self, page_size: usize) -> usize {
        let i = if self.slots.len() < CACHE_PAGES {
            self.slots.push(Slot { pfn: EMPTY, used: 0, page: vec![0; page_size].into_boxed_slice() });
            self.slots.len() - 1
        } else {
            self.lru()
        };
        self.slots[i].pfn = EMPTY;
        i
    }

    /// The least recently used slot (0 when there are none).
    fn lru(&self) -> usize {
        self.slots.iter().enumerate().min_by_key(|(_, s)| s.used).map_or(0, |(i, _)| i)
    }

    /// Takes a page decoded elsewhere as a slot's buffer (no copy), and
    /// gives back the buffer it replaced; `page` itself when already held.
    fn adopt(&mut self, pfn: u64, page: Box<[u8]>) -> Option<Box<[u8]>> {
        if self.held(pfn).is_some() || pfn == EMPTY {
            return Some(page);
        }
        self.tick += 1;
        let slot = Slot { pfn, used: self.tick, page };
        if self.slots.len() < CACHE_PAGES {
            self.slots.push(slot);
            return None;
        }
        let lru = self.lru();
        Some(std::mem::replace(&mut self.slots[lru], slot).page)
    }

    /// The page `pfn`, decoding it on a miss.
    fn get<'data, S: ByteSource<'data>>(&mut self, k: &mut KdumpFile<'data, S>, pfn: u64) -> Result<&[u8], DumpError> {
        self.tick += 1;
        let page_size = k.page_size() as usize;
        let i = match self.slots.iter().position(|s| s.pfn == pfn) {
            Some(i) => i,
            None => {
                let i = self.free_slot(page_size);
                let slot = &mut self.slots[i];
                let paddr = pfn.saturating_mul(page_size as u64);
                match k.read_page(pfn, &mut slot.page)? {
                    PageLookup::Stored { .. } => slot.pfn = pfn,
                    PageLookup::NotInDump => return Err(DumpError::NotInDump { paddr }),
                    PageLookup::Unmapped => return Err(DumpError::Unmapped { paddr }),
                }
                i
            }
        };
        let slot = &mut self.slots[i];
        slot.used = self.tick;
        Ok(&slot.page)
    }
}

/// A crash dump opened from bytes.
pub struct Dump<'data> {
    backend: Backend<'data>,
    format: DumpFormat,
    page_size: u64,
    cpus: Vec<CpuState>,
    vmcoreinfo: Option<VmcoreInfo>,
    vmcoreinfo_error: Option<VmcoreInfoError>,
    note_problems: Vec<NoteError>,
    cache: PageCache,
}

impl std::fmt::Debug for Dump<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dump")
            .field("format", &self.format)
            .field("page_size", &self.page_size)
            .field("cpus", &self.cpus.len())
            .finish_non_exhaustive()
    }
}

impl<'data> Dump<'data> {
    /// Opens a dump, detecting its format from its first bytes.
    pub fn open(data: &'data [u8]) -> Result<Self, DumpError> {
        Self::open_with(data, &mut |_| {})
    }

    /// [`Dump::open`], calling `passed(offset)` each time the reader has
    /// gone past another [`flattened::SCAN_STEP`] bytes of a file it reads
    /// whole (a flattened dump's record index), so that a caller holding
    /// the file mapped can let those pages go.
    pub fn open_with(data: &'data [u8], passed: &mut dyn FnMut(u64)) -> Result<Self, DumpError> {
        Self::open_from(data, passed, None)
    }

    /// [`Dump::open_with`], with `file`, the file `data` maps: a flattened
    /// dump's record headers are then read from it with preads (see
    /// [`FlattenedSource::parse_from`]).
    pub fn open_from(
        data: &'data [u8],
        passed: &mut dyn FnMut(u64),
        file: Option<&std::fs::File>,
    ) -> Result<Self, DumpError> {
        if elf::is_elf(data) {
            let e = ElfDump::parse(data)?;
            let summary = notes::summarize(e.notes(), e.machine() == elf::EM_X86_64);
            let format = if summary.has_qemu_notes { DumpFormat::ElfQemu } else { DumpFormat::ElfKdump };
            let (vi, vi_err) = parse_vmcoreinfo(summary.vmcoreinfo);
            // PAGESIZE is claimed by the dump; buffers are sized by it.
            let page_size = vi
                .as_ref()
                .and_then(VmcoreInfo::page_size)
                .filter(|p| p.is_power_of_two() && (512..=MAX_PAGE_SIZE).contains(p))
                .unwrap_or(4096);
            return Ok(Self::assemble(Backend::Elf(e), format, page_size, summary, vi, vi_err));
        }
        if kdump::is_kdump(data) {
            let k = KdumpFile::parse(SliceSource(data))?;
            let compression = Compression(k.header().status & kdump_compression_mask());
            return Ok(Self::from_kdump(k, DumpFormat::KdumpCompressed { compression }, Backend::Kdump));
        }
        if flattened::is_flattened(data) {
            let f = FlattenedSource::parse_from(data, passed, file)?;
            let mut magic = [0u8; 4];
            if f.read_at(0, &mut magic).is_ok() && elf::is_elf(&magic) {
                return Err(DumpError::FlattenedElf);
            }
            let k = KdumpFile::parse(f)?;
            let compression = Compression(k.header().status & kdump_compression_mask());
            return Ok(Self::from_kdump(k, DumpFormat::Flattened { compression }, Backend::Flat));
        }
        Err(DumpError::UnknownFormat)
    }

    /// A second reader of the same dump with its own page cache and
    /// decoders, for a second thread: the file is not parsed again.
    pub fn split(&self) -> Dump<'data> {
        let backend = match &self.backend {
            Backend::Elf(e) => Backend::Elf(e.clone()),
            Backend::Kdump(k) => Backend::Kdump(k.split()),
            Backend::Flat(k) => Backend::Flat(k.split()),
        };
        Dump {
            backend,
            format: self.format,
            page_size: self.page_size,
            cpus: self.cpus.clone(),
            vmcoreinfo: self.vmcoreinfo.clone(),
            vmcoreinfo_error: self.vmcoreinfo_error,
            note_problems: self.note_problems.clone(),
            cache: PageCache::new(),
        }
    }

    fn from_kdump<S: ByteSource<'data>>(
        k: KdumpFile<'data, S>,
        format: DumpFormat,
        wrap: fn(KdumpFile<'data, S>) -> Backend<'data>,
    ) -> Self {
        let notes_bytes = k.notes_bytes();
        let summary = notes::summarize(NoteIter::new(notes_bytes, k.sub_header().offset_note), true);
        // makedumpfile stores VMCOREINFO beside the notes; QEMU points
        // offset_vmcoreinfo into its VMCOREINFO note. Either way prefer it.
        let (mut vi, mut vi_err) = parse_vmcoreinfo(k.vmcoreinfo_bytes());
        // A refiltered makedumpfile file can point offset_vmcoreinfo at the
        // wrong place; the note is the fallback.
        if vi.as_ref().is_none_or(|v| v.keys().next().is_none()) && summary.vmcoreinfo.is_some() {
            let (v2, e2) = parse_vmcoreinfo(summary.vmcoreinfo);
            if v2.is_some() {
                (vi, vi_err) = (v2, None);
            } else if vi.is_none() {
                vi_err = vi_err.or(e2);
            }
        }
        let page_size = k.page_size();
        let summary = NoteSummary { vmcoreinfo: None, ..summary };
        Self::assemble(wrap(k), format, page_size, summary, vi, vi_err)
    }

    fn assemble(
        backend: Backend<'data>,
        format: DumpFormat,
        page_size: u64,
        summary: NoteSummary<'_>,
        vmcoreinfo: Option<VmcoreInfo>,
        vmcoreinfo_error: Option<VmcoreInfoError>,
    ) -> Self {
        Dump {
            backend,
            format,
            page_size,
            cpus: summary.cpus,
            vmcoreinfo,
            vmcoreinfo_error,
            note_problems: summary.problems,
            cache: PageCache::new(),
        }
    }

    /// The format detected by [`Self::open`].
    pub fn format(&self) -> DumpFormat {
        self.format
    }

    /// The page size: the kdump block size, or VMCOREINFO's PAGESIZE for
    /// ELF (4096 without it).
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// The parsed VMCOREINFO; `None` when the dump has none or it did not
    /// parse (then see [`Self::vmcoreinfo_error`]).
    pub fn vmcoreinfo(&self) -> Option<&VmcoreInfo> {
        self.vmcoreinfo.as_ref()
    }

    /// Why VMCOREINFO was present but unreadable.
    pub fn vmcoreinfo_error(&self) -> Option<VmcoreInfoError> {
        self.vmcoreinfo_error
    }

    /// The CPUs' registers, in note order.
    pub fn cpus(&self) -> &[CpuState] {
        &self.cpus
    }

    /// Notes that could not be decoded (skipped).
    pub fn note_problems(&self) -> &[NoteError] {
        &self.note_problems
    }

    /// All notes, in file order.
    pub fn notes(&self) -> Vec<Result<Note<'_>, NoteError>> {
        match &self.backend {
            Backend::Elf(e) => e.notes().collect(),
            Backend::Kdump(k) => NoteIter::new(k.notes_bytes(), k.sub_header().offset_note).collect(),
            Backend::Flat(k) => NoteIter::new(k.notes_bytes(), k.sub_header().offset_note).collect(),
        }
    }

    /// The ELF reader; `None` for kdump-compressed and flattened files.
    pub fn elf(&self) -> Option<&ElfDump<'data>> {
        match &self.backend {
            Backend::Elf(e) => Some(e),
            _ => None,
        }
    }

    /// The kdump headers (also for a flattened file).
    pub fn kdump_headers(&self) -> Option<(&KdumpHeader, &KdumpSubHeader)> {
        match &self.backend {
            Backend::Kdump(k) => Some((k.header(), k.sub_header())),
            Backend::Flat(k) => Some((k.header(), k.sub_header())),
            Backend::Elf(_) => None,
        }
    }

    /// The flattened index, for a flattened file.
    pub fn flattened(&self) -> Option<&FlattenedSource<'data>> {
        match &self.backend {
            Backend::Flat(k) => Some(k.source()),
            _ => None,
        }
    }

    /// How ELF `p_filesz < p_memsz` tails read (no effect on other formats).
    pub fn set_elf_tail_policy(&mut self, tail: ElfTail) {
        if let Backend::Elf(e) = &mut self.backend {
            e.set_tail_policy(tail);
        }
    }

    /// Reads physical memory, across pages. Excluded pages fail with
    /// `NotInDump` (never zero-filled), addresses outside memory with
    /// `Unmapped`; the error's address is the first byte that failed.
    pub fn read_phys(&mut self, paddr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.read_phys_detailed(paddr, buf).map_err(|e| e.to_memory_error(paddr))
    }

    /// [`Self::read_phys`] with the format-level reason for a failure.
    pub fn read_phys_detailed(&mut self, paddr: u64, buf: &mut [u8]) -> Result<(), DumpError> {
        if paddr.checked_add(buf.len() as u64).is_none() {
            return Err(DumpError::Unmapped { paddr: u64::MAX });
        }
        match &mut self.backend {
            Backend::Elf(e) => {
                let e = &*e;
                read_elf(buf, paddr, e.tail_policy(), |a| e.lookup_phys(a))
            }
            Backend::Kdump(k) => read_kdump(k, &mut self.cache, self.page_size, paddr, buf),
            Backend::Flat(k) => read_kdump(k, &mut self.cache, self.page_size, paddr, buf),
        }
    }

    /// The page at `paddr` as decoded by this reader's cache, for another
    /// reader of a compressed dump ([`Dump::hold_page`]). None for ELF
    /// dumps (a read is a copy) and pages not held.
    pub fn held_page(&self, paddr: u64) -> Option<&[u8]> {
        self.decodes_page(paddr).then(|| self.cache.held(paddr / self.page_size)).flatten()
    }

    /// Whether `paddr` starts a page this reader decodes (a compressed
    /// dump's) and so may hand on or take.
    fn decodes_page(&self, paddr: u64) -> bool {
        matches!(self.backend, Backend::Kdump(_) | Backend::Flat(_)) && paddr.is_multiple_of(self.page_size)
    }

    /// Takes a page that another reader decoded (its bytes at `paddr`,
    /// page-aligned, one page long): reads of it need not decode it again.
    /// Gives back a buffer to reuse: the one `page` replaced in the cache,
    /// or `page` itself when not taken; None when none was replaced.
    pub fn hold_page(&mut self, paddr: u64, page: Box<[u8]>) -> Option<Box<[u8]>> {
        if self.decodes_page(paddr) && page.len() as u64 == self.page_size {
            self.cache.adopt(paddr / self.page_size, page)
        } else {
            Some(page)
        }
    }

    /// Reads through the PT_LOADs' virtual addresses, when a segment with a
    /// virtual address covers `vaddr` (kdump's kernel text, kcore, QEMU with
    /// paging). `None` when none does, or for kdump-compressed files.
    pub fn read_virt_direct(&mut self, vaddr: u64, buf: &mut [u8]) -> Option<Result<(), MemoryError>> {
        let Backend::Elf(e) = &self.backend else { return None };
        if matches!(e.lookup_virt(vaddr), Lookup::Unmapped) {
            return None;
        }
        if vaddr.checked_add(buf.len() as u64).is_none() {
            return Some(Err(MemoryError::new(vaddr, MemoryErrorKind::Unmapped)));
        }
        let r = read_elf(buf, vaddr, e.tail_policy(), |a| e.lookup_virt(a));
        Some(r.map_err(|err| match err {
            DumpError::Unmapped { paddr } => MemoryError::new(paddr, MemoryErrorKind::Unmapped),
            DumpError::NotInDump { paddr } => MemoryError::new(paddr, MemoryErrorKind::NotInDump),
            _ => MemoryError::new(vaddr, MemoryErrorKind::Backend),
        }))
    }

    /// Physical memory as a [`Memory`] (identity-mapped addresses).
    pub fn phys_memory(&mut self) -> PhysMemory<'_, 'data> {
        PhysMemory(self)
    }
}

fn kdump_compression_mask() -> u32 {
    kdump::DUMP_DH_COMPRESSED_ZLIB
        | kdump::DUMP_DH_COMPRESSED_LZO
        | kdump::DUMP_DH_COMPRESSED_SNAPPY
        | kdump::DUMP_DH_COMPRESSED_ZSTD
}

fn parse_vmcoreinfo(raw: Option<&[u8]>) -> (Option<VmcoreInfo>, Option<VmcoreInfoError>) {
    match raw.map(VmcoreInfo::parse) {
        Some(Ok(v)) => (Some(v), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    }
}

fn read_elf<'data>(
    buf: &mut [u8],
    addr: u64,
    tail: ElfTail,
    lookup: impl Fn(u64) -> Lookup<'data>,
) -> Result<(), DumpError> {
    let mut done = 0usize;
    while done < buf.len() {
        let at = addr + done as u64;
        let want = buf.len() - done;
        let n = match lookup(at) {
            Lookup::Data(d) => {
                let n = d.len().min(want);
                buf[done..done + n].copy_from_slice(&d[..n]);
                n
            }
            Lookup::Tail(len) => {
                if tail == ElfTail::NotInDump {
                    return Err(DumpError::NotInDump { paddr: at });
                }
                let n = usize::try_from(len).unwrap_or(usize::MAX).min(want);
                buf[done..done + n].fill(0);
                n
            }
            Lookup::Unmapped => return Err(DumpError::Unmapped { paddr: at }),
        };
        done += n.max(1);
    }
    Ok(())
}

fn read_kdump<'data, S: ByteSource<'data>>(
    k: &mut KdumpFile<'data, S>,
    cache: &mut PageCache,
    page_size: u64,
    paddr: u64,
    buf: &mut [u8],
) -> Result<(), DumpError> {
    let mut done = 0usize;
    while done < buf.len() {
        let at = paddr + done as u64;
        let (pfn, off) = (at / page_size, (at % page_size) as usize);
        let n = (page_size as usize - off).min(buf.len() - done);
        let out = &mut buf[done..done + n];
        // A whole page not held (a bulk read of tables) is decoded in
        // place: no copy, and the cache keeps what it held (page tables).
        if n == page_size as usize && cache.held(pfn).is_none() {
            match k.read_page(pfn, out)? {
                PageLookup::Stored { .. } => {}
                PageLookup::NotInDump => return Err(DumpError::NotInDump { paddr: at }),
                PageLookup::Unmapped => return Err(DumpError::Unmapped { paddr: at }),
            }
            done += n;
            continue;
        }
        let page = cache.get(k, pfn).map_err(|e| match e {
            // Name the first failing byte, not the page start.
            DumpError::Unmapped { .. } => DumpError::Unmapped { paddr: at },
            DumpError::NotInDump { .. } => DumpError::NotInDump { paddr: at },
            e => e,
        })?;
        out.copy_from_slice(&page[off..off + n]);
        done += n;
    }
    Ok(())
}

/// Physical memory of a dump seen as [`Memory`].
pub struct PhysMemory<'a, 'data>(pub &'a mut Dump<'data>);

impl Memory for PhysMemory<'_, '_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.0.read_phys(addr, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::Reg;
    use crate::dump::elf::tests::build_elf;
    use crate::dump::notes::push_note;
    use crate::dump::notes::tests::{prstatus_desc, qemu_desc};

    fn qemu_like_elf() -> Vec<u8> {
        let mut notes = Vec::new();
        push_note(&mut notes, b"CORE", 1, &prstatus_desc(1));
        push_note(&mut notes, b"QEMU", 0, &qemu_desc(440));
        push_note(&mut notes, b"VMCOREINFO", 0, b"PAGESIZE=4096\nNUMBER(phys_base)=-119537664\n");
        let a: Vec<u8> = (0..0x2000u32).map(|i| i as u8).collect();
        let b: Vec<u8> = (0..0x1000u32).map(|i| (i as u8) ^ 0x55).collect();
        // Two adjacent RAM segments, the second with a zero tail; one with a vaddr.
        build_elf(
            &[(0, 0x1000, &a, 0x2000), (0, 0x3000, &b, 0x2000), (0xffffffff81000000, 0x10000, &b, 0x1000)],
            &notes,
            false,
        )
    }

    /// A page one reader of a compressed dump decoded can be handed to
    /// another, which then serves it without decoding; ELF dumps hand
    /// nothing (a read there is only a copy).
    #[test]
    fn decoded_pages_pass_between_readers() {
        use crate::dump::write::{KdumpWriteInfo, WriteCompression, write_kdump};
        let pages: Vec<Vec<u8>> = (0..4u8).map(|k| (0..4096u32).map(|i| (i / 3) as u8 ^ k).collect()).collect();
        let info = KdumpWriteInfo {
            utsname: ["Linux", "", "6.12.0", "", "x86_64", ""],
            page_size: 4096,
            max_mapnr: 16,
            vmcoreinfo: b"PAGESIZE=4096\n",
            ..Default::default()
        };
        let mut file = Vec::new();
        write_kdump(
            &mut file,
            &info,
            pages.iter().enumerate().map(|(i, p)| (i as u64, &p[..])),
            WriteCompression::Zlib,
        )
        .unwrap();
        let mut a = Dump::open(&file).unwrap();
        let mut b = a.split();
        let mut buf = vec![0u8; 8];
        assert_eq!(a.held_page(0x2000), None, "not read yet");
        a.read_phys(0x2010, &mut buf).unwrap();
        let held = a.held_page(0x2000).unwrap().to_vec();
        assert!(held == pages[2]);
        assert_eq!(a.held_page(0x2010), None, "not a page boundary");
        // Handed on with other bytes: the second reader serves those.
        let mut other = held.clone();
        other[0x10] ^= 0xff;
        assert_eq!(b.hold_page(0x2000, other.clone().into()), None, "kept, in a slot of its own");
        b.read_phys(0x2010, &mut buf).unwrap();
        assert_eq!(buf[0], other[0x10]);
        let back = b.hold_page(0x2000, vec![7; 4096].into()).unwrap();
        assert!(back.iter().all(|&x| x == 7), "already held: the same buffer back");
        assert_eq!(b.held_page(0x2000).unwrap()[0x10], other[0x10]);
        assert_eq!(b.hold_page(0x3000, other[..100].into()).unwrap().len(), 100);
        assert_eq!(b.held_page(0x3000), None, "not a whole page");
        // Past the cache's slots, each page taken gives back the buffer of
        // the least recently used one, which is no longer held.
        let mut spares = Vec::new();
        for pfn in 0x10..0x10 + CACHE_PAGES as u64 {
            let page: Box<[u8]> = vec![pfn as u8; 4096].into();
            spares.extend(b.hold_page(pfn << 12, page));
        }
        assert_eq!(spares.len(), 1, "one slot was taken before");
        assert!(spares[0][0x10] == other[0x10] && spares[0].len() == 4096, "the first page's buffer");
        assert_eq!(b.held_page(0x2000), None);
        for pfn in 0x10..0x10 + CACHE_PAGES as u64 {
            assert!(b.held_page(pfn << 12).unwrap().iter().all(|&x| x == pfn as u8));
        }

        let elf = qemu_like_elf();
        let mut e = Dump::open(&elf).unwrap();
        e.read_phys(0x1000, &mut buf).unwrap();
        assert_eq!(e.held_page(0x1000), None);
    }

    #[test]
    fn elf_dump_end_to_end() {
        let elf = qemu_like_elf();
        let mut d = Dump::open(&elf).unwrap();
        assert_eq!(d.format(), DumpFormat::ElfQemu);
        assert_eq!(d.page_size(), 4096);
        assert_eq!(d.vmcoreinfo().unwrap().number("phys_base"), Some(-119537664));
        assert_eq!(d.cpus().len(), 1);
        let c = &d.cpus()[0];
        assert_eq!((c.pid, c.index_hint, c.cr3), (1, Some(0), Some(0x3003)));
        assert_eq!(c.regs.get(Reg::Rip), Some(0x1010));
        assert!(d.note_problems().is_empty());
        assert_eq!(d.notes().len(), 3);
        // Across the two segments.
        let mut buf = [0u8; 16];
        d.read_phys(0x3000 - 8, &mut buf).unwrap();
        assert_eq!(&buf[..8], &[0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff]);
        assert_eq!(&buf[8..], &[0x55, 0x54, 0x57, 0x56, 0x51, 0x50, 0x53, 0x52]);
        // Into the zero tail, then past it.
        d.read_phys(0x4000 - 8, &mut buf).unwrap();
        assert_eq!(&buf[8..], &[0; 8]);
        assert_eq!(d.read_phys_detailed(0x5000 - 8, &mut buf), Err(DumpError::Unmapped { paddr: 0x5000 }));
        assert_eq!(d.read_phys(0x5000 - 8, &mut buf).unwrap_err(), MemoryError::new(0x5000, MemoryErrorKind::Unmapped));
        d.set_elf_tail_policy(ElfTail::NotInDump);
        assert_eq!(
            d.read_phys(0x4000 - 8, &mut buf).unwrap_err(),
            MemoryError::new(0x4000, MemoryErrorKind::NotInDump)
        );
        assert_eq!(d.read_phys(0xfff, &mut buf).unwrap_err().kind, MemoryErrorKind::Unmapped);
        assert_eq!(d.read_phys(u64::MAX - 4, &mut buf).unwrap_err().kind, MemoryErrorKind::Unmapped);
        // Virtual reads through p_vaddr only where a segment has one.
        d.read_virt_direct(0xffffffff81000008, &mut buf).unwrap().unwrap();
        assert_eq!(buf[0], 8 ^ 0x55);
        assert!(d.read_virt_direct(0x1000, &mut buf).is_none());
        let e = d.read_virt_direct(0xffffffff81001000 - 8, &mut buf).unwrap().unwrap_err();
        assert_eq!(e, MemoryError::new(0xffffffff81001000, MemoryErrorKind::Unmapped));
        // The same bytes through the Memory trait.
        let mut m = d.phys_memory();
        assert_eq!(m.read_u64(0x1000).unwrap(), u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]));
    }

    #[test]
    fn unknown_and_truncated() {
        assert_eq!(Dump::open(b"").unwrap_err(), DumpError::UnknownFormat);
        assert_eq!(Dump::open(b"MZ\0\0").unwrap_err(), DumpError::UnknownFormat);
        let elf = qemu_like_elf();
        for n in 0..elf.len() {
            if let Ok(mut d) = Dump::open(&elf[..n]) {
                let mut b = [0u8; 64];
                let _ = d.read_phys(0x1000, &mut b);
            }
        }
        // A flattened file holding an ELF.
        let flat = flattened::flatten([(0u64, &elf[..])]);
        assert_eq!(Dump::open(&flat).unwrap_err(), DumpError::FlattenedElf);
    }
}
