//! ELF64 vmcores: kdump's /proc/vmcore, QEMU's `dump-guest-memory`,
//! `makedumpfile -E` output and /proc/kcore.
//!
//! Memory is in PT_LOAD segments: `p_paddr` is the physical address, and
//! `p_vaddr` a virtual one when the producer knew it (kdump's kernel-text
//! segment, kcore, QEMU with paging) or 0 (QEMU without paging). kcore marks
//! segments with no physical address by `p_paddr = -1`. Bytes past
//! `p_filesz` up to `p_memsz` are zeros in ELF terms; see [`ElfTail`].
//!
//! Only the fields a reader needs are validated. QEMU 7.2 writes
//! `e_ehsize = 8` and puts its section headers before the program headers;
//! neither matters here (`e_phoff` is honoured).

use super::notes::{Note, NoteError, NoteIter};
use super::source::{le_u16, le_u32, le_u64};

/// `e_machine` of an x86-64 file.
pub const EM_X86_64: u16 = 62;
const ET_CORE: u16 = 4;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const PN_XNUM: u16 = 0xffff;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const SHDR_SIZE: usize = 64;

/// Why an ELF core could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// The file is shorter than the 64-byte ELF header.
    #[error("ELF header is cut short ({file_len} bytes in the file)")]
    TruncatedHeader {
        /// The file's size, in bytes.
        file_len: u64,
    },
    /// No `\x7fELF` at offset 0.
    #[error("not an ELF file (no \\x7fELF at offset 0)")]
    BadMagic,
    /// Not ELFCLASS64 little-endian.
    #[error("ELF e_ident[{index}] = {value}: only 64-bit little-endian ELF is read")]
    Unsupported {
        /// Which `e_ident` byte: 4 (class) or 5 (data encoding).
        index: u8,
        /// Its value.
        value: u8,
    },
    /// `e_type` is not ET_CORE (4).
    #[error("ELF e_type = {0}, expected 4 (ET_CORE)")]
    NotCore(u16),
    /// `e_phentsize` is below 56.
    #[error("ELF e_phentsize = {0} at offset 0x36 is below 56")]
    BadPhentsize(u16),
    /// `e_phnum` is PN_XNUM but section header 0, which holds the real
    /// count, is not in the file.
    #[error("ELF e_phnum = 0xffff (PN_XNUM) but section header 0 at e_shoff {shoff:#x} is missing")]
    BadXnum {
        /// `e_shoff`.
        shoff: u64,
    },
    /// The program header table runs past the end of the file.
    #[error("ELF program headers at {phoff:#x} ({phnum} x {phentsize} bytes) run past the end of the file")]
    TruncatedPhdrs {
        /// `e_phoff`: file offset of the table.
        phoff: u64,
        /// Number of program headers (after PN_XNUM).
        phnum: u32,
        /// `e_phentsize`: bytes per program header.
        phentsize: u16,
    },
    /// A PT_LOAD's or PT_NOTE's file data runs past the end of the file.
    #[error(
        "ELF program header {index}: data at {offset:#x}+{filesz:#x} runs past the end of the file ({file_len:#x})"
    )]
    SegmentOutOfFile {
        /// Index of the program header.
        index: u32,
        /// `p_offset`.
        offset: u64,
        /// `p_filesz`.
        filesz: u64,
        /// The file's size, in bytes.
        file_len: u64,
    },
    /// A PT_LOAD stores more bytes than it covers.
    #[error("ELF program header {index}: p_filesz {filesz:#x} exceeds p_memsz {memsz:#x}")]
    FileszAboveMemsz {
        /// Index of the program header.
        index: u32,
        /// `p_filesz`.
        filesz: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// A PT_LOAD's address plus its size wraps around 64 bits.
    #[error("ELF program header {index}: address {addr:#x} + p_memsz {memsz:#x} overflows")]
    AddressOverflow {
        /// Index of the program header.
        index: u32,
        /// `p_paddr` or `p_vaddr`, whichever overflows.
        addr: u64,
        /// `p_memsz`.
        memsz: u64,
    },
}

/// What the bytes between `p_filesz` and `p_memsz` of a PT_LOAD mean.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ElfTail {
    /// ELF's own rule: zeros. kdump, QEMU and kcore never write such tails.
    #[default]
    Zero,
    /// `makedumpfile -E -d N` marks the pages it excluded this way (seen on
    /// makedumpfile 1.7.2): treat them as not in the dump.
    NotInDump,
}

/// One PT_LOAD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Index of the program header.
    pub index: u32,
    /// `p_vaddr`; 0 when the producer did not know it (QEMU without paging).
    pub vaddr: u64,
    /// `p_paddr`; `u64::MAX` (kcore's -1) when the segment has none.
    pub paddr: u64,
    /// `p_offset`: file offset of the segment's data.
    pub offset: u64,
    /// `p_filesz`: bytes stored in the file.
    pub filesz: u64,
    /// `p_memsz`: bytes of memory covered; see [`ElfTail`] for those past
    /// `filesz`.
    pub memsz: u64,
}

/// Where an address falls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup<'data> {
    /// Bytes stored in the file, starting at the address, up to the end of
    /// the segment's file data.
    Data(&'data [u8]),
    /// In `p_memsz` past `p_filesz`: `n` bytes to the end of the segment.
    Tail(u64),
    /// In no PT_LOAD.
    Unmapped,
}

/// Segments sorted by one address, with a running maximum of their ends so
/// that overlapping segments (kdump's text segment overlaps RAM) are found.
#[derive(Clone, Debug, Default)]
struct AddrIndex {
    /// (start, end, segment index)
    sorted: Vec<(u64, u64, usize)>,
    max_end: Vec<u64>,
}

impl AddrIndex {
    fn new(items: impl Iterator<Item = (u64, u64, usize)>) -> Self {
        let mut sorted: Vec<_> = items.filter(|&(s, e, _)| e > s).collect();
        sorted.sort_unstable();
        let mut max_end = Vec::with_capacity(sorted.len());
        let mut m = 0;
        for &(_, e, _) in &sorted {
            m = m.max(e);
            max_end.push(m);
        }
        AddrIndex { sorted, max_end }
    }

    /// Segments covering `addr`, nearest start first.
    fn covering(&self, addr: u64) -> impl Iterator<Item = usize> + '_ {
        let n = self.sorted.partition_point(|&(s, _, _)| s <= addr);
        (0..n)
            .rev()
            .take_while(move |&i| self.max_end[i] > addr)
            .filter(move |&i| self.sorted[i].1 > addr)
            .map(move |i| self.sorted[i].2)
    }
}

/// An ELF64 little-endian core read in place: its PT_LOADs and PT_NOTEs.
#[derive(Clone, Debug)]
pub struct ElfDump<'data> {
    data: &'data [u8],
    machine: u16,
    phnum: u32,
    segments: Vec<Segment>,
    /// (offset, size) of each PT_NOTE.
    notes: Vec<(u64, u64)>,
    by_paddr: AddrIndex,
    by_vaddr: AddrIndex,
    tail: ElfTail,
}

/// True if `data` starts with the ELF magic.
pub fn is_elf(data: &[u8]) -> bool {
    data.starts_with(b"\x7fELF")
}

impl<'data> ElfDump<'data> {
    /// Parses and checks the ELF header and the PT_LOAD and PT_NOTE program
    /// headers (other types are ignored).
    pub fn parse(data: &'data [u8]) -> Result<Self, ElfError> {
        let file_len = data.len() as u64;
        if !is_elf(data) {
            return Err(if data.len() < 4 { ElfError::TruncatedHeader { file_len } } else { ElfError::BadMagic });
        }
        let eh = data.get(..EHDR_SIZE).ok_or(ElfError::TruncatedHeader { file_len })?;
        let short = ElfError::TruncatedHeader { file_len };
        if eh[4] != 2 {
            return Err(ElfError::Unsupported { index: 4, value: eh[4] });
        }
        if eh[5] != 1 {
            return Err(ElfError::Unsupported { index: 5, value: eh[5] });
        }
        let e_type = le_u16(eh, 0x10).ok_or(short)?;
        if e_type != ET_CORE {
            return Err(ElfError::NotCore(e_type));
        }
        let machine = le_u16(eh, 0x12).ok_or(short)?;
        let phoff = le_u64(eh, 0x20).ok_or(short)?;
        let shoff = le_u64(eh, 0x28).ok_or(short)?;
        let phentsize = le_u16(eh, 0x36).ok_or(short)?;
        let e_phnum = le_u16(eh, 0x38).ok_or(short)?;
        if phentsize < PHDR_SIZE as u16 {
            return Err(ElfError::BadPhentsize(phentsize));
        }
        // More than 65534 headers: the real count is in shdr[0].sh_info.
        let phnum = if e_phnum == PN_XNUM {
            let sh0 = usize::try_from(shoff)
                .ok()
                .filter(|&o| o != 0)
                .and_then(|o| data.get(o..o.checked_add(SHDR_SIZE)?))
                .ok_or(ElfError::BadXnum { shoff })?;
            le_u32(sh0, 0x2c).ok_or(ElfError::BadXnum { shoff })?
        } else {
            u32::from(e_phnum)
        };
        let table_len = u64::from(phnum) * u64::from(phentsize);
        let table = phoff
            .checked_add(table_len)
            .filter(|&end| end <= file_len)
            .map(|end| &data[phoff as usize..end as usize])
            .ok_or(ElfError::TruncatedPhdrs { phoff, phnum, phentsize })?;

        let mut segments = Vec::new();
        let mut notes = Vec::new();
        for (index, ph) in table.chunks_exact(usize::from(phentsize)).enumerate() {
            let index = index as u32;
            let field = |at| le_u64(ph, at).ok_or(ElfError::TruncatedPhdrs { phoff, phnum, phentsize });
            let p_type = le_u32(ph, 0).ok_or(ElfError::TruncatedPhdrs { phoff, phnum, phentsize })?;
            if p_type != PT_LOAD && p_type != PT_NOTE {
                continue;
            }
            let (offset, vaddr, paddr, filesz, memsz) = (field(8)?, field(16)?, field(24)?, field(32)?, field(40)?);
            if offset.checked_add(filesz).is_none_or(|end| end > file_len) {
                return Err(ElfError::SegmentOutOfFile { index, offset, filesz, file_len });
            }
            if p_type == PT_NOTE {
                notes.push((offset, filesz));
                continue;
            }
            if filesz > memsz {
                return Err(ElfError::FileszAboveMemsz { index, filesz, memsz });
            }
            // kcore's p_paddr = -1 means "no physical address"; don't check it.
            if paddr != u64::MAX && paddr.checked_add(memsz).is_none() {
                return Err(ElfError::AddressOverflow { index, addr: paddr, memsz });
            }
            if vaddr.checked_add(memsz).is_none() {
                return Err(ElfError::AddressOverflow { index, addr: vaddr, memsz });
            }
            segments.push(Segment { index, vaddr, paddr, offset, filesz, memsz });
        }
        let by_paddr = AddrIndex::new(
            segments
                .iter()
                .enumerate()
                .filter(|(_, s)| s.paddr != u64::MAX)
                .map(|(i, s)| (s.paddr, s.paddr + s.memsz, i)),
        );
        // p_vaddr = 0 means "unknown" (QEMU without paging).
        let by_vaddr = AddrIndex::new(
            segments.iter().enumerate().filter(|(_, s)| s.vaddr != 0).map(|(i, s)| (s.vaddr, s.vaddr + s.memsz, i)),
        );
        Ok(ElfDump { data, machine, phnum, segments, notes, by_paddr, by_vaddr, tail: ElfTail::Zero })
    }

    /// `e_machine` ([`EM_X86_64`] for x86-64).
    pub fn machine(&self) -> u16 {
        self.machine
    }

    /// Number of program headers (after PN_XNUM).
    pub fn phnum(&self) -> u32 {
        self.phnum
    }

    /// The PT_LOADs, in program header order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// How `p_filesz < p_memsz` tails read; [`ElfTail::Zero`] after `parse`.
    pub fn tail_policy(&self) -> ElfTail {
        self.tail
    }

    /// Sets how `p_filesz < p_memsz` tails read.
    pub fn set_tail_policy(&mut self, tail: ElfTail) {
        self.tail = tail;
    }

    /// True when some PT_LOAD carries a virtual address.
    pub fn has_vaddrs(&self) -> bool {
        !self.by_vaddr.sorted.is_empty()
    }

    /// All notes of all PT_NOTE segments, in file order.
    pub fn notes(&self) -> impl Iterator<Item = Result<Note<'data>, NoteError>> + '_ {
        let data = self.data;
        self.notes.iter().flat_map(move |&(off, size)| {
            // Bounds were checked at parse time.
            let bytes = data.get(off as usize..(off + size) as usize).unwrap_or_default();
            NoteIter::new(bytes, off)
        })
    }

    fn lookup(&self, index: &AddrIndex, addr: u64, start_of: fn(&Segment) -> u64) -> Lookup<'data> {
        let mut tail = None;
        for i in index.covering(addr) {
            let s = &self.segments[i];
            let rel = addr - start_of(s);
            if rel < s.filesz {
                let at = (s.offset + rel) as usize;
                let end = (s.offset + s.filesz) as usize;
                return Lookup::Data(&self.data[at..end]);
            }
            tail.get_or_insert(s.memsz - rel);
        }
        tail.map_or(Lookup::Unmapped, Lookup::Tail)
    }

    /// Where a physical address is.
    pub fn lookup_phys(&self, paddr: u64) -> Lookup<'data> {
        self.lookup(&self.by_paddr, paddr, |s| s.paddr)
    }

    /// Where a virtual address is, through `p_vaddr`.
    pub fn lookup_virt(&self, vaddr: u64) -> Lookup<'data> {
        self.lookup(&self.by_vaddr, vaddr, |s| s.vaddr)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// (vaddr, paddr, data, memsz) segments and raw note bytes -> an ELF core.
    pub(crate) fn build_elf(loads: &[(u64, u64, &[u8], u64)], notes: &[u8], xnum: bool) -> Vec<u8> {
        let phnum = loads.len() + 1;
        let shoff = if xnum { EHDR_SIZE } else { 0 };
        let phoff = EHDR_SIZE + if xnum { SHDR_SIZE } else { 0 };
        let mut data_at = (phoff + phnum * PHDR_SIZE) as u64;
        let mut out = vec![0u8; EHDR_SIZE];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        out[6] = 1;
        out[0x10..0x12].copy_from_slice(&ET_CORE.to_le_bytes());
        out[0x12..0x14].copy_from_slice(&EM_X86_64.to_le_bytes());
        out[0x20..0x28].copy_from_slice(&(phoff as u64).to_le_bytes());
        out[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        out[0x34..0x36].copy_from_slice(&8u16.to_le_bytes()); // as QEMU 7.2 writes it
        out[0x36..0x38].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        let e_phnum = if xnum { PN_XNUM } else { phnum as u16 };
        out[0x38..0x3a].copy_from_slice(&e_phnum.to_le_bytes());
        if xnum {
            out[0x3a..0x3c].copy_from_slice(&(SHDR_SIZE as u16).to_le_bytes());
            out[0x3c..0x3e].copy_from_slice(&1u16.to_le_bytes());
            let mut sh = vec![0u8; SHDR_SIZE];
            sh[0x2c..0x30].copy_from_slice(&(phnum as u32).to_le_bytes());
            out.extend_from_slice(&sh);
        }
        let mut ph = |p_type: u32, off: u64, vaddr: u64, paddr: u64, filesz: u64, memsz: u64| {
            let mut p = vec![0u8; PHDR_SIZE];
            p[0..4].copy_from_slice(&p_type.to_le_bytes());
            for (at, v) in [(8, off), (16, vaddr), (24, paddr), (32, filesz), (40, memsz)] {
                p[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&p);
        };
        ph(PT_NOTE, data_at, 0, 0, notes.len() as u64, notes.len() as u64);
        data_at += notes.len() as u64;
        for &(vaddr, paddr, bytes, memsz) in loads {
            ph(PT_LOAD, data_at, vaddr, paddr, bytes.len() as u64, memsz);
            data_at += bytes.len() as u64;
        }
        out.extend_from_slice(notes);
        for &(_, _, bytes, _) in loads {
            out.extend_from_slice(bytes);
        }
        out
    }

    #[test]
    fn loads_tails_overlaps() {
        let a = vec![0xaa; 0x2000];
        let t = vec![0x77; 0x1000];
        let elf = build_elf(
            &[(0, 0x1000, &a, 0x3000), (0xffffffff81000000, 0x2000, &t, 0x1000), (0, 0x10000, &[], 0x1000)],
            &[],
            false,
        );
        let e = ElfDump::parse(&elf).unwrap();
        assert_eq!(e.segments().len(), 3);
        assert_eq!(e.machine(), EM_X86_64);
        assert_eq!(e.lookup_phys(0xfff), Lookup::Unmapped);
        assert!(matches!(e.lookup_phys(0x1000), Lookup::Data(d) if d.len() == 0x2000 && d[0] == 0xaa));
        // The text segment overlaps RAM: either holds the data.
        assert!(matches!(e.lookup_phys(0x2800), Lookup::Data(d) if d[0] == 0xaa || d[0] == 0x77));
        assert_eq!(e.lookup_phys(0x3000), Lookup::Tail(0x1000));
        assert_eq!(e.lookup_phys(0x4000), Lookup::Unmapped);
        assert_eq!(e.lookup_phys(0x10000), Lookup::Tail(0x1000));
        assert!(e.has_vaddrs());
        assert!(matches!(e.lookup_virt(0xffffffff81000010), Lookup::Data(d) if d.len() == 0xff0 && d[0] == 0x77));
        assert_eq!(e.lookup_virt(0x1000), Lookup::Unmapped, "p_vaddr 0 is not a virtual address");
    }

    #[test]
    fn pn_xnum() {
        let a = [1u8; 16];
        let elf = build_elf(&[(0, 0, &a, 16), (0, 0x100, &a, 16)], &[], true);
        let e = ElfDump::parse(&elf).unwrap();
        assert_eq!(e.phnum(), 3);
        assert_eq!(e.segments().len(), 2);
        assert!(matches!(e.lookup_phys(0x10f), Lookup::Data(d) if d.len() == 1));
        // PN_XNUM without section headers.
        let mut bad = elf.clone();
        bad[0x28..0x30].fill(0);
        assert_eq!(ElfDump::parse(&bad).unwrap_err(), ElfError::BadXnum { shoff: 0 });
        // A claimed count far beyond the file fails without allocating.
        let mut big = elf.clone();
        big[64 + 0x2c..64 + 0x30].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(ElfDump::parse(&big), Err(ElfError::TruncatedPhdrs { .. })));
    }

    #[test]
    fn header_and_segment_errors() {
        let a = [1u8; 16];
        let elf = build_elf(&[(0, 0, &a, 16)], &[], false);
        let mut bad = elf.clone();
        bad[4] = 1;
        assert_eq!(ElfDump::parse(&bad).unwrap_err(), ElfError::Unsupported { index: 4, value: 1 });
        let mut bad = elf.clone();
        bad[0x10] = 2;
        assert_eq!(ElfDump::parse(&bad).unwrap_err(), ElfError::NotCore(2));
        // filesz > memsz
        let elf2 = build_elf(&[(0, 0, &a, 8)], &[], false);
        assert!(matches!(ElfDump::parse(&elf2), Err(ElfError::FileszAboveMemsz { index: 1, .. })));
        // A 4 GB segment in a small file.
        let mut bad = elf.clone();
        let ph1 = 64 + PHDR_SIZE;
        bad[ph1 + 32..ph1 + 40].copy_from_slice(&(4u64 << 30).to_le_bytes());
        assert!(matches!(ElfDump::parse(&bad), Err(ElfError::SegmentOutOfFile { index: 1, .. })));
        for n in 0..elf.len() {
            assert!(ElfDump::parse(&elf[..n]).is_err(), "cut at {n}");
        }
    }
}
