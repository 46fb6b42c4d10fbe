//! `/proc/kcore`: the running kernel's memory as an ELF core.
//!
//! Its PT_LOADs are virtual ranges (kernel text, direct map, vmalloc,
//! modules, vmemmap). Direct-map (KCORE_RAM) and text segments also carry
//! `p_paddr`, the physical address; the others have `p_paddr = -1`. This
//! reader serves physical addresses through those segments, so the kernel's
//! own page tables (walked by `KernelSpace`) decide what a virtual address
//! means, and an unmapped page is an error rather than kcore's zero fill.
//!
//! The file cannot be mmapped and is as large as the address space, so the
//! headers and notes are read with `pread`, and data page by page. Pages are
//! cached until [`KcorePhys::invalidate`]: the memory is live, so the caller
//! drops the cache before each fresh look at a task.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::notes::{NoteError, NoteIter};
use super::vmcoreinfo::{VmcoreInfo, VmcoreInfoError};
use crate::memory::{MemoryError, MemoryErrorKind, PhysMemory};

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const PAGE: u64 = 4096;
const CACHE_SLOTS: usize = 256;
/// More program headers than this is not a kcore (a big machine has a few
/// hundred RAM ranges).
const MAX_PHDRS: usize = 1 << 16;
/// The notes are a few KiB (PRSTATUS, PRPSINFO, TASKSTRUCT, VMCOREINFO).
const MAX_NOTES: u64 = 1 << 20;

/// Why a kcore file's headers could not be read or used. `path` is the
/// file's name as the caller gave it.
#[derive(Debug, thiserror::Error)]
pub enum KcoreError {
    /// A read failed or came up short.
    #[error("{path}: reading {len} bytes at offset {offset:#x}: {err}")]
    Io {
        /// The file.
        path: String,
        /// File offset of the read.
        offset: u64,
        /// Bytes asked for.
        len: usize,
        /// The I/O error.
        err: std::io::Error,
    },
    /// Not a little-endian ELF64 ET_CORE for x86-64.
    #[error("{path}: not an x86-64 ELF core (header bytes {detail})")]
    NotElfCore {
        /// The file.
        path: String,
        /// The first 20 bytes of the ELF header, in hex.
        detail: String,
    },
    /// `e_phentsize` is below 56, or `e_phnum` is 0 or above 65536.
    #[error("{path}: {count} program headers at offset {phoff:#x}, not a kcore")]
    BadPhdrs {
        /// The file.
        path: String,
        /// `e_phoff`.
        phoff: u64,
        /// `e_phnum`.
        count: usize,
    },
    /// A PT_NOTE is over 1 MiB.
    #[error("{path}: note segment at offset {offset:#x} is {size} bytes, too large")]
    NotesTooLarge {
        /// The file.
        path: String,
        /// `p_offset` of the note segment.
        offset: u64,
        /// `p_filesz` of the note segment, in bytes.
        size: u64,
    },
    /// A note is malformed.
    #[error("{path}: {err}")]
    Note {
        /// The file.
        path: String,
        /// What is wrong with the note.
        err: NoteError,
    },
    /// The VMCOREINFO note does not parse.
    #[error("{path}: VMCOREINFO note: {err}")]
    Vmcoreinfo {
        /// The file.
        path: String,
        /// Why it does not parse.
        err: VmcoreInfoError,
    },
    /// No PT_LOAD has a physical address, so no RAM can be read.
    #[error("{path}: no PT_LOAD carries a physical address (p_paddr), nothing to read RAM through")]
    NoRam {
        /// The file.
        path: String,
    },
}

/// One PT_LOAD of kcore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KcoreSegment {
    /// `p_vaddr`: the kernel virtual address the segment starts at.
    pub vaddr: u64,
    /// `u64::MAX` when the segment has no physical address.
    pub paddr: u64,
    /// `p_offset`: file offset of the segment's data.
    pub offset: u64,
    /// `p_filesz`: the segment's size, in bytes.
    pub size: u64,
}

/// The headers of a kcore file: its segments and notes.
#[derive(Clone, Debug)]
pub struct KcoreHeaders {
    /// The PT_LOADs, in program header order.
    pub segments: Vec<KcoreSegment>,
    /// The parsed VMCOREINFO note; `None` when there is none.
    pub vmcoreinfo: Option<VmcoreInfo>,
}

impl KcoreHeaders {
    /// Reads the ELF header, program headers and notes through `read_at`
    /// (file offset, buffer); `path` names the file in errors.
    pub fn read(
        path: &str,
        mut read_at: impl FnMut(u64, &mut [u8]) -> std::io::Result<()>,
    ) -> Result<Self, KcoreError> {
        let mut read = |offset: u64, len: usize| -> Result<Vec<u8>, KcoreError> {
            let mut buf = vec![0u8; len];
            read_at(offset, &mut buf).map_err(|err| KcoreError::Io { path: path.into(), offset, len, err })?;
            Ok(buf)
        };
        let eh = read(0, EHDR_SIZE)?;
        let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |b: &[u8], o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |b: &[u8], o: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(x)
        };
        // ELF64, little-endian, ET_CORE, EM_X86_64.
        if &eh[..4] != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 || u16_at(&eh, 0x10) != 4 || u16_at(&eh, 0x12) != 62 {
            let detail = eh[..20].iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
            return Err(KcoreError::NotElfCore { path: path.into(), detail });
        }
        let phoff = u64_at(&eh, 0x20);
        let phentsize = usize::from(u16_at(&eh, 0x36));
        let count = usize::from(u16_at(&eh, 0x38));
        if phentsize < PHDR_SIZE || count == 0 || count > MAX_PHDRS {
            return Err(KcoreError::BadPhdrs { path: path.into(), phoff, count });
        }
        let table = read(phoff, count * phentsize)?;
        let mut segments = Vec::new();
        let mut vmcoreinfo = None;
        for ph in table.chunks_exact(phentsize) {
            let (p_type, offset, vaddr, paddr, filesz) =
                (u32_at(ph, 0), u64_at(ph, 8), u64_at(ph, 16), u64_at(ph, 24), u64_at(ph, 32));
            match p_type {
                PT_LOAD => segments.push(KcoreSegment { vaddr, paddr, offset, size: filesz }),
                PT_NOTE => {
                    if filesz > MAX_NOTES {
                        return Err(KcoreError::NotesTooLarge { path: path.into(), offset, size: filesz });
                    }
                    let notes = read(offset, filesz as usize)?;
                    for note in NoteIter::new(&notes, offset) {
                        let note = note.map_err(|err| KcoreError::Note { path: path.into(), err })?;
                        if note.name == b"VMCOREINFO" {
                            let vi = VmcoreInfo::parse(note.desc)
                                .map_err(|err| KcoreError::Vmcoreinfo { path: path.into(), err })?;
                            vmcoreinfo = Some(vi);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(KcoreHeaders { segments, vmcoreinfo })
    }

    /// The segment holding kernel text (`__START_KERNEL_map` and up) with a
    /// physical address: `phys_base` follows from it.
    pub fn text_phys_base(&self) -> Option<i64> {
        const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
        let s = self.segments.iter().find(|s| s.vaddr >= START_KERNEL_MAP && s.paddr != u64::MAX)?;
        Some(s.paddr.wrapping_sub(s.vaddr.wrapping_sub(START_KERNEL_MAP)) as i64)
    }
}

/// Physical memory of the running kernel, read from kcore segments that
/// carry `p_paddr`.
pub struct KcorePhys<R> {
    /// The file, to open it again for a second thread.
    path: String,
    reader: R,
    /// (paddr, size, file offset), sorted by paddr.
    ram: Vec<(u64, u64, u64)>,
    /// (vaddr, size, paddr) of the same segments, sorted by vaddr: the
    /// direct map and kernel text, mappings that never change.
    fixed: Vec<(u64, u64, u64)>,
    /// Buffer of [`PhysMemory::prefetch`].
    ahead: Vec<u8>,
    /// Direct-mapped page cache: (physical page, generation, bytes).
    cache: Vec<(u64, u64, Box<[u8; PAGE as usize]>)>,
    generation: u64,
    /// pread calls made, for the timing report.
    pub reads: u64,
    /// Bytes they asked for: kcore copies page by page.
    pub bytes: u64,
}

/// Reads file bytes at an offset (a `File`, or a buffer in tests).
pub trait ReadAt {
    /// Fills all of `buf` from file offset `offset`, or fails.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;

    /// A second reader of the same bytes (at `path`), for a second thread.
    fn split_reader(&self, _path: &str) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }
}

impl ReadAt for File {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.read_exact_at(buf, offset)
    }

    /// The file opened again, not a dup of this descriptor: kcore copies
    /// through a bounce buffer of the open file (`filp->private_data`), so
    /// two threads reading through one open file get each other's bytes.
    fn split_reader(&self, path: &str) -> Option<Self> {
        File::open(path).ok()
    }
}

impl ReadAt for Vec<u8> {
    fn split_reader(&self, _path: &str) -> Option<Self> {
        Some(self.clone())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| std::io::ErrorKind::UnexpectedEof)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl<R: ReadAt> KcorePhys<R> {
    /// Serves the segments of `headers` that have a physical address.
    pub fn new(path: &str, reader: R, headers: &KcoreHeaders) -> Result<Self, KcoreError> {
        let mut ram: Vec<(u64, u64, u64)> = headers
            .segments
            .iter()
            .filter(|s| s.paddr != u64::MAX && s.size > 0 && s.paddr.checked_add(s.size).is_some())
            .map(|s| (s.paddr, s.size, s.offset))
            .collect();
        if ram.is_empty() {
            return Err(KcoreError::NoRam { path: path.into() });
        }
        ram.sort_unstable();
        let mut fixed: Vec<(u64, u64, u64)> = headers
            .segments
            .iter()
            .filter(|s| s.paddr != u64::MAX && s.size > 0 && s.vaddr.checked_add(s.size).is_some())
            .map(|s| (s.vaddr, s.size, s.paddr))
            .collect();
        fixed.sort_unstable();
        let cache = (0..CACHE_SLOTS).map(|_| (u64::MAX, 0, Box::new([0u8; PAGE as usize]))).collect();
        Ok(KcorePhys {
            path: path.into(),
            reader,
            ram,
            fixed,
            ahead: Vec::new(),
            cache,
            generation: 1,
            reads: 0,
            bytes: 0,
        })
    }

    /// File offset of physical address `paddr` and how many bytes the
    /// segment still holds from there.
    fn locate(&self, paddr: u64) -> Option<(u64, u64)> {
        let i = self.ram.partition_point(|&(start, _, _)| start <= paddr);
        // Segments may overlap (kernel text lies inside a RAM range): the
        // last one starting at or below paddr that covers it, else any.
        self.ram[..i]
            .iter()
            .rev()
            .find(|&&(start, size, _)| paddr - start < size)
            .map(|&(start, size, offset)| (offset + (paddr - start), size - (paddr - start)))
    }

    /// Whether every page of `len` bytes at page `first` is in the cache,
    /// read since the last invalidate.
    fn all_cached(&self, first: u64, len: u64) -> bool {
        (0..len / PAGE).all(|i| {
            let ppage = first + i * PAGE;
            let entry = &self.cache[((ppage / PAGE) as usize) % CACHE_SLOTS];
            entry.0 == ppage && entry.1 == self.generation
        })
    }

    fn page(&mut self, ppage: u64) -> Result<&[u8; PAGE as usize], MemoryError> {
        let slot = ((ppage / PAGE) as usize) % CACHE_SLOTS;
        if self.cache[slot].0 != ppage || self.cache[slot].1 != self.generation {
            let (offset, left) = self.locate(ppage).ok_or(MemoryError::new(ppage, MemoryErrorKind::Unmapped))?;
            if left < PAGE {
                return Err(MemoryError::new(ppage + left, MemoryErrorKind::Unmapped));
            }
            self.reads += 1;
            self.bytes += PAGE;
            let entry = &mut self.cache[slot];
            self.reader
                .read_at(offset, &mut entry.2[..])
                .map_err(|_| MemoryError::new(ppage, MemoryErrorKind::Backend))?;
            entry.0 = ppage;
            entry.1 = self.generation;
        }
        Ok(&self.cache[slot].2)
    }
}

impl<R: ReadAt> PhysMemory for KcorePhys<R> {
    fn read_phys(&mut self, paddr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = paddr.checked_add(done as u64).ok_or(MemoryError::new(paddr, MemoryErrorKind::Unmapped))?;
            let in_page = (at & (PAGE - 1)) as usize;
            let n = (PAGE as usize - in_page).min(buf.len() - done);
            let page = self.page(at & !(PAGE - 1)).map_err(|e| MemoryError::new(at.max(e.addr), e.kind))?;
            buf[done..done + n].copy_from_slice(&page[in_page..in_page + n]);
            done += n;
        }
        Ok(())
    }

    fn invalidate(&mut self) {
        self.generation += 1;
    }

    fn fixed_translation(&self, vaddr: u64) -> Option<u64> {
        let i = self.fixed.partition_point(|&(start, _, _)| start <= vaddr);
        let &(start, size, paddr) = self.fixed[..i].last()?;
        (vaddr - start < size).then(|| paddr + (vaddr - start))
    }

    fn reads(&self) -> u64 {
        self.reads
    }

    fn bytes_read(&self) -> u64 {
        self.bytes
    }

    fn split(&self) -> Option<Self> {
        let reader = self.reader.split_reader(&self.path)?;
        let cache = (0..CACHE_SLOTS).map(|_| (u64::MAX, 0, Box::new([0u8; PAGE as usize]))).collect();
        Some(KcorePhys {
            path: self.path.clone(),
            reader,
            ram: self.ram.clone(),
            fixed: self.fixed.clone(),
            ahead: Vec::new(),
            cache,
            generation: 1,
            reads: 0,
            bytes: 0,
        })
    }

    /// One pread per run of pages within one segment (a task_struct in the
    /// direct map: one), whatever is cached; the pages are cached afresh.
    fn read_phys_fresh(&mut self, paddr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let unmapped = |a| MemoryError::new(a, MemoryErrorKind::Unmapped);
        let end = paddr.checked_add(buf.len() as u64).ok_or(unmapped(paddr))?;
        let mut at = paddr;
        while at < end {
            let first = at & !(PAGE - 1);
            let (offset, left) = self.locate(first).ok_or(unmapped(at))?;
            let n = (end.next_multiple_of(PAGE).saturating_sub(first)).min(left - left % PAGE);
            if n == 0 {
                return Err(unmapped(first + left)); // the segment ends inside this page
            }
            self.ahead.resize(n as usize, 0);
            self.reads += 1;
            self.bytes += n;
            self.reader.read_at(offset, &mut self.ahead).map_err(|_| MemoryError::new(at, MemoryErrorKind::Backend))?;
            for (i, bytes) in self.ahead.chunks_exact(PAGE as usize).enumerate() {
                let ppage = first + i as u64 * PAGE;
                let entry = &mut self.cache[((ppage / PAGE) as usize) % CACHE_SLOTS];
                entry.2.copy_from_slice(bytes);
                entry.0 = ppage;
                entry.1 = self.generation;
            }
            let upto = end.min(first + n);
            let (from, to) = ((at - paddr) as usize, (upto - paddr) as usize);
            buf[from..to].copy_from_slice(&self.ahead[(at - first) as usize..(upto - first) as usize]);
            at = upto;
        }
        Ok(())
    }

    fn prefetch(&mut self, paddr: u64, len: u64) {
        const MAX_AHEAD: u64 = 64 << 10;
        let first = paddr & !(PAGE - 1);
        let end = paddr.saturating_add(len.min(MAX_AHEAD)).next_multiple_of(PAGE);
        let Some((offset, left)) = self.locate(first) else { return };
        let n = (end - first).min(left - left % PAGE);
        if n == 0 || self.all_cached(first, n) {
            return;
        }
        self.ahead.resize(n as usize, 0);
        self.reads += 1;
        self.bytes += n;
        if self.reader.read_at(offset, &mut self.ahead).is_err() {
            return; // the page-by-page reads will name the failure
        }
        for (i, bytes) in self.ahead.chunks_exact(PAGE as usize).enumerate() {
            let ppage = first + i as u64 * PAGE;
            let slot = ((ppage / PAGE) as usize) % CACHE_SLOTS;
            let entry = &mut self.cache[slot];
            entry.2.copy_from_slice(bytes);
            entry.0 = ppage;
            entry.1 = self.generation;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dump::notes::push_note;

    /// A kcore-shaped ELF: a note with `vmcoreinfo`, then PT_LOADs
    /// (vaddr, paddr, data) placed one after another.
    pub(crate) fn kcore_image(vmcoreinfo: &str, loads: &[(u64, u64, &[u8])]) -> Vec<u8> {
        let mut notes = Vec::new();
        push_note(&mut notes, b"VMCOREINFO", 0, vmcoreinfo.as_bytes());
        let phnum = 1 + loads.len();
        let notes_at = (EHDR_SIZE + phnum * PHDR_SIZE) as u64;
        let mut data_at = (notes_at + notes.len() as u64).next_multiple_of(PAGE);
        let mut out = vec![0u8; EHDR_SIZE];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        out[6] = 1;
        out[0x10..0x12].copy_from_slice(&4u16.to_le_bytes());
        out[0x12..0x14].copy_from_slice(&62u16.to_le_bytes());
        out[0x20..0x28].copy_from_slice(&(EHDR_SIZE as u64).to_le_bytes());
        out[0x36..0x38].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        out[0x38..0x3a].copy_from_slice(&(phnum as u16).to_le_bytes());
        let phdr = |t: u32, off: u64, va: u64, pa: u64, size: u64| {
            let mut p = vec![0u8; PHDR_SIZE];
            p[0..4].copy_from_slice(&t.to_le_bytes());
            p[8..16].copy_from_slice(&off.to_le_bytes());
            p[16..24].copy_from_slice(&va.to_le_bytes());
            p[24..32].copy_from_slice(&pa.to_le_bytes());
            p[32..40].copy_from_slice(&size.to_le_bytes());
            p[40..48].copy_from_slice(&size.to_le_bytes());
            p
        };
        out.extend(phdr(PT_NOTE, notes_at, 0, 0, notes.len() as u64));
        let mut offsets = Vec::new();
        for &(va, pa, bytes) in loads {
            out.extend(phdr(PT_LOAD, data_at, va, pa, bytes.len() as u64));
            offsets.push(data_at);
            data_at = (data_at + bytes.len() as u64).next_multiple_of(PAGE);
        }
        out.extend(&notes);
        for (&(_, _, bytes), &at) in loads.iter().zip(&offsets) {
            out.resize(at as usize, 0);
            out.extend_from_slice(bytes);
        }
        out
    }

    fn pages(fill: u8, n: usize) -> Vec<u8> {
        (0..n * PAGE as usize).map(|i| fill.wrapping_add((i / PAGE as usize) as u8)).collect()
    }

    #[test]
    fn physical_reads_go_through_segments_with_paddr() {
        let ram = pages(0x10, 3);
        let text = pages(0x80, 1);
        let vmalloc = pages(0xf0, 1);
        let img = kcore_image(
            "OSRELEASE=6.12.0\nNUMBER(phys_base)=16777216\n",
            &[
                (0xffff_8880_0010_0000, 0x10_0000, &ram),
                (0xffff_ffff_8100_0000, 0x0100_0000 + 0x100_0000, &text),
                (0xffff_c900_0000_0000, u64::MAX, &vmalloc),
            ],
        );
        let h = KcoreHeaders::read("kcore", |o, b| img.read_at(o, b)).unwrap();
        assert_eq!(h.segments.len(), 3);
        assert_eq!(h.vmcoreinfo.as_ref().and_then(|v| v.number("phys_base")), Some(16777216));
        // text p_paddr 0x200_0000 at vaddr START_KERNEL_MAP + 0x100_0000.
        assert_eq!(h.text_phys_base(), Some(0x100_0000));
        let mut p = KcorePhys::new("kcore", img.clone(), &h).unwrap();
        let mut b = [0u8; 8];
        p.read_phys(0x10_1000, &mut b).unwrap();
        assert_eq!(b, [0x11; 8]);
        // Across a page boundary inside one segment.
        p.read_phys(0x10_1ffc, &mut b).unwrap();
        assert_eq!(b, [0x11, 0x11, 0x11, 0x11, 0x12, 0x12, 0x12, 0x12]);
        p.read_phys(0x200_0008, &mut b).unwrap();
        assert_eq!(b, [0x80; 8]);
        // Below, between and past the segments; the vmalloc segment has no
        // physical address and serves nothing.
        for bad in [0x0, 0x10_3000, 0x200_1000, 0xffff_c900_0000_0000] {
            let e = p.read_phys(bad, &mut b).unwrap_err();
            assert_eq!((e.addr, e.kind), (bad, MemoryErrorKind::Unmapped), "{bad:#x}");
        }
        // Running off the end of a segment names the first missing byte.
        let e = p.read_phys(0x10_2ffc, &mut b).unwrap_err();
        assert_eq!(e.addr, 0x10_3000);
    }

    #[test]
    fn cache_is_dropped_on_invalidate() {
        let ram = pages(0x10, 1);
        let mut img = kcore_image("OSRELEASE=x\n", &[(0xffff_8880_0000_0000, 0, &ram)]);
        let h = KcoreHeaders::read("kcore", |o, b| img.read_at(o, b)).unwrap();
        let data_at = h.segments[0].offset as usize;
        let mut p = KcorePhys::new("kcore", img.clone(), &h).unwrap();
        let mut b = [0u8; 1];
        p.read_phys(0, &mut b).unwrap();
        p.read_phys(1, &mut b).unwrap();
        assert_eq!(p.reads, 1, "second read from the cache");
        // "Live" memory changes: a new reader over changed bytes shows that
        // only invalidate makes the reader look again.
        img[data_at] = 0x99;
        p.reader = img;
        p.read_phys(0, &mut b).unwrap();
        assert_eq!(b, [0x10]);
        p.invalidate();
        p.read_phys(0, &mut b).unwrap();
        assert_eq!((b, p.reads), ([0x99], 2));
    }

    #[test]
    fn fixed_mappings_and_read_ahead() {
        let ram = pages(0x10, 4);
        let img = kcore_image(
            "OSRELEASE=x\n",
            &[(0xffff_8880_0010_0000, 0x10_0000, &ram), (0xffff_c900_0000_0000, u64::MAX, &ram)],
        );
        let h = KcoreHeaders::read("kcore", |o, b| img.read_at(o, b)).unwrap();
        let mut p = KcorePhys::new("kcore", img, &h).unwrap();
        assert_eq!(p.fixed_translation(0xffff_8880_0010_2345), Some(0x10_2345));
        assert_eq!(p.fixed_translation(0xffff_8880_0014_0000), None);
        assert_eq!(p.fixed_translation(0xffff_c900_0000_0000), None, "vmalloc is walked");
        // Three pages in one read; then served from the cache.
        p.prefetch(0x10_0ff0, 0x2000);
        assert_eq!(p.reads, 1);
        let mut b = [0u8; 3];
        for (at, want) in [(0x10_0000, 0x10), (0x10_1000, 0x11), (0x10_2fff, 0x12)] {
            p.read_phys(at, &mut b[..1]).unwrap();
            assert_eq!(b[0], want, "{at:#x}");
        }
        assert_eq!(p.reads, 1);
        // Not past the segment's end.
        p.invalidate();
        p.prefetch(0x10_3000, 0x4000);
        p.read_phys(0x10_3000, &mut b[..1]).unwrap();
        assert_eq!((b[0], p.reads), (0x13, 1 + 1));
    }

    #[test]
    fn fresh_reads_one_request_per_segment_run_and_recache() {
        let ram = pages(0x10, 4);
        let more = pages(0x40, 1);
        let mut img = kcore_image(
            "OSRELEASE=x\n",
            &[(0xffff_8880_0010_0000, 0x10_0000, &ram), (0xffff_8880_0010_4000, 0x10_4000, &more)],
        );
        let h = KcoreHeaders::read("kcore", |o, b| img.read_at(o, b)).unwrap();
        let data_at = h.segments[0].offset as usize;
        let mut p = KcorePhys::new("kcore", img.clone(), &h).unwrap();
        let mut b = [0u8; 1];
        p.read_phys(0x10_1000, &mut b).unwrap();
        assert_eq!((b[0], p.reads), (0x11, 1));
        // The page changes; a fresh read across three pages sees it in one
        // request, without invalidate, and caches the new bytes.
        img[data_at + 0x1000] = 0x99;
        p.reader = img.clone();
        let mut span = vec![0u8; 0x2000];
        p.read_phys_fresh(0x10_0800, &mut span).unwrap();
        assert_eq!((span[0], span[0x800], span[0x801], span[0x1800]), (0x10, 0x99, 0x11, 0x12));
        assert_eq!(p.reads, 2);
        p.read_phys(0x10_1000, &mut b).unwrap();
        p.read_phys(0x10_2fff, &mut b).unwrap();
        assert_eq!(p.reads, 2, "served from the refreshed cache");
        // Across two segments: one request each.
        let mut span = vec![0u8; 0x1000];
        p.read_phys_fresh(0x10_3800, &mut span).unwrap();
        assert_eq!((span[0], span[0x800], p.reads), (0x13, 0x40, 4));
        // Past the last segment: an error naming the first missing byte,
        // never zeros.
        let e = p.read_phys_fresh(0x10_4ff0, &mut [0u8; 0x20]).unwrap_err();
        assert_eq!((e.addr, e.kind), (0x10_5000, MemoryErrorKind::Unmapped));
        let e = p.read_phys_fresh(0x20_0000, &mut b).unwrap_err();
        assert_eq!((e.addr, e.kind), (0x20_0000, MemoryErrorKind::Unmapped));
    }

    #[test]
    fn read_ahead_of_cached_pages_makes_no_request() {
        let ram = pages(0x10, 4);
        let img = kcore_image("OSRELEASE=x\n", &[(0xffff_8880_0010_0000, 0x10_0000, &ram)]);
        let h = KcoreHeaders::read("kcore", |o, b| img.read_at(o, b)).unwrap();
        let mut p = KcorePhys::new("kcore", img, &h).unwrap();
        p.prefetch(0x10_0000, 0x3000);
        p.prefetch(0x10_0100, 0x2000);
        assert_eq!(p.reads, 1);
        // One more page than cached: read again. After invalidate: again.
        p.prefetch(0x10_0000, 0x4000);
        p.invalidate();
        p.prefetch(0x10_0000, 0x1000);
        assert_eq!(p.reads, 3);
    }

    #[test]
    fn a_split_reads_the_same_bytes_with_its_own_cache() {
        let ram = pages(0x10, 2);
        let img = kcore_image("OSRELEASE=x\n", &[(0xffff_8880_0010_0000, 0x10_0000, &ram)]);
        let h = KcoreHeaders::read("kcore", |o, b| img.read_at(o, b)).unwrap();
        let mut p = KcorePhys::new("kcore", img, &h).unwrap();
        let mut b = [0u8; 1];
        p.read_phys(0x10_1000, &mut b).unwrap();
        let mut q = p.split().unwrap();
        assert_eq!(q.fixed_translation(0xffff_8880_0010_1000), Some(0x10_1000));
        q.read_phys(0x10_1000, &mut b).unwrap();
        assert_eq!((b[0], p.reads, q.reads), (0x11, 1, 1), "not from the first one's cache");
        assert!(q.read_phys(0x10_2000, &mut b).is_err());
    }

    /// Not a dup: a flag set on one open file does not show on the other.
    #[test]
    fn a_split_file_is_opened_again() {
        use std::os::fd::AsRawFd;
        let ram = pages(0x10, 1);
        let img = kcore_image("OSRELEASE=x\n", &[(0xffff_8880_0010_0000, 0x10_0000, &ram)]);
        let path = std::env::temp_dir().join(format!("lpstack-kcore-split-{}", std::process::id()));
        std::fs::write(&path, &img).unwrap();
        let name = path.to_str().unwrap();
        let h = KcoreHeaders::read(name, |o, b| img.read_at(o, b)).unwrap();
        let p = KcorePhys::new(name, File::open(&path).unwrap(), &h).unwrap();
        let mut q = p.split().unwrap();
        std::fs::remove_file(&path).unwrap();
        let flags = |f: &File| unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(unsafe { libc::fcntl(p.reader.as_raw_fd(), libc::F_SETFL, flags(&p.reader) | libc::O_NONBLOCK) }, 0);
        assert_ne!(flags(&p.reader) & libc::O_NONBLOCK, 0);
        assert_eq!(flags(&q.reader) & libc::O_NONBLOCK, 0, "a dup of the first reader's open file");
        let mut b = [0u8; 1];
        q.read_phys(0x10_0000, &mut b).unwrap();
        assert_eq!(b[0], 0x10);
    }

    #[test]
    fn not_a_kcore() {
        let img = vec![0u8; 128];
        let e = KcoreHeaders::read("/proc/kcore", |o, b| img.read_at(o, b)).unwrap_err();
        assert!(e.to_string().starts_with("/proc/kcore: not an x86-64 ELF core"), "{e}");
        let short = vec![0x7fu8; 10];
        let e = KcoreHeaders::read("/proc/kcore", |o, b| short.read_at(o, b)).unwrap_err();
        assert!(e.to_string().contains("reading 64 bytes at offset 0x0"), "{e}");
        let h = KcoreHeaders {
            segments: vec![KcoreSegment { vaddr: 1, paddr: u64::MAX, offset: 0, size: 1 }],
            vmcoreinfo: None,
        };
        assert!(matches!(KcorePhys::new("k", Vec::new(), &h), Err(KcoreError::NoRam { .. })));
    }
}
