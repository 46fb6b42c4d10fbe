//! The kdump-compressed format (makedumpfile's and QEMU's "KDUMP   " files;
//! makedumpfile diskdump_mod.h, QEMU include/sysemu/dump.h).
//!
//! ```text
//! block 0                    disk_dump_header (464 bytes on x86-64)
//! block 1                    kdump_sub_header, then (same sub_hdr_size
//!                            blocks) notes, VMCOREINFO, erase info
//! block 1+sub_hdr_size       1st bitmap: pfns that exist   } bitmap_blocks/2
//!                            2nd bitmap: pfns in the dump  } blocks each
//! block 1+sub+bitmap_blocks  page descriptors, one per set bit of the 2nd
//!                            bitmap, in pfn order; then the page data
//! ```
//!
//! disk_dump_header (x86-64 layout; `timestamp` is a 16-byte timeval
//! aligned to 8, which QEMU spells as 22 bytes of padding):
//! signature 0, header_version 8, utsname 12 (6 x 65), timestamp 408,
//! status 424, block_size 428, sub_hdr_size 432, bitmap_blocks 436,
//! max_mapnr 440, total_ram_blocks 444, device_blocks 448,
//! written_blocks 452, current_cpu 456, nr_cpus 460.
//!
//! kdump_sub_header (64-bit): phys_base 0, dump_level 8, split 12 (v2),
//! start_pfn 16, end_pfn 24 (v2), offset_vmcoreinfo 32, size_vmcoreinfo 40
//! (v3), offset_note 48, size_note 56 (v4), offset_eraseinfo 64,
//! size_eraseinfo 72 (v5), start_pfn_64 80, end_pfn_64 88, max_mapnr_64 96
//! (v6).
//!
//! **phys_base**: QEMU fills the sub-header's `phys_base` by parsing the
//! guest's `NUMBER(phys_base)` (decimal, maybe negative) as hex, so the
//! header value can be wrong. [`KdumpSubHeader::phys_base`] is the raw
//! header value; the address-space layer must take phys_base from
//! VMCOREINFO, in base 10.

use std::borrow::Cow;
use std::sync::Arc;

use super::source::{ByteSource, SourceError, le_u32, le_u64};

/// `disk_dump_header.signature`, at offset 0.
pub const SIGNATURE: &[u8; 8] = b"KDUMP   ";
/// Bytes of `disk_dump_header` read, through `nr_cpus` (x86-64 layout).
pub const HEADER_SIZE: usize = 464;
/// Bytes of a header_version 6 `kdump_sub_header` (64-bit).
pub const SUB_HEADER_SIZE: usize = 104;
/// Bytes of one page descriptor (`page_desc_t`).
pub const PAGE_DESC_SIZE: u64 = 24;

/// Page descriptor / header status flags.
pub const DUMP_DH_COMPRESSED_ZLIB: u32 = 0x1;
/// LZO1X compression (in descriptor `flags` and header `status`).
pub const DUMP_DH_COMPRESSED_LZO: u32 = 0x2;
/// Snappy compression (in descriptor `flags` and header `status`).
pub const DUMP_DH_COMPRESSED_SNAPPY: u32 = 0x4;
/// Header status: the dump ran out of space; descriptors with offset 0 are lost pages.
pub const DUMP_DH_COMPRESSED_INCOMPLETE: u32 = 0x8;
/// Header status: makedumpfile excluded unused vmemmap pages.
pub const DUMP_DH_EXCLUDED_VMEMMAP: u32 = 0x10;
/// Zstd compression (in descriptor `flags` and header `status`).
pub const DUMP_DH_COMPRESSED_ZSTD: u32 = 0x20;
const COMPRESSION_MASK: u32 =
    DUMP_DH_COMPRESSED_ZLIB | DUMP_DH_COMPRESSED_LZO | DUMP_DH_COMPRESSED_SNAPPY | DUMP_DH_COMPRESSED_ZSTD;

/// Largest block (page) size accepted: 256 KiB.
const MAX_BLOCK_SIZE: u32 = 1 << 18;
/// zstd frames whose window exceeds this are refused before decoding.
const MAX_ZSTD_WINDOW: u64 = 1 << 20;

/// Why a kdump-compressed file could not be opened, or a page read. File
/// offsets are of the reassembled file for a flattened dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KdumpError {
    /// No `"KDUMP   "` signature at offset 0.
    #[error("kdump: no \"KDUMP   \" signature at offset 0")]
    BadSignature,
    /// A structure could not be read from the source.
    #[error("kdump: cannot read the {what}: {err}")]
    Read {
        /// Which structure, e.g. `"disk_dump_header"` or `"page descriptor"`.
        what: &'static str,
        /// Why the source could not serve it.
        err: SourceError,
    },
    /// `header_version` (offset 8) is 0; versions above 6 are read as 6.
    #[error("kdump: header_version {0} at offset 8 is not supported (1..=6 are known; >6 read as 6)")]
    BadVersion(u32),
    /// `block_size` (offset 428) is not a power of two in 512..=262144.
    #[error("kdump: block_size {0} at offset 428 is not a power of two in 512..=262144")]
    BadBlockSize(u32),
    /// `sub_hdr_size` (offset 432) is 0.
    #[error("kdump: sub_hdr_size {0} at offset 432 is 0 blocks")]
    BadSubHeaderSize(u32),
    /// `bitmap_blocks` (offset 436) is 0 or odd.
    #[error("kdump: bitmap_blocks {0} at offset 436 is odd or 0 (two bitmaps of equal size are expected)")]
    BadBitmapBlocks(u32),
    /// An area the headers point at lies (partly) outside the file.
    #[error("kdump: {what} at {offset:#x}+{size:#x} lies outside the file")]
    BadRange {
        /// Which area, e.g. `"1st bitmap"` or `"notes"`.
        what: &'static str,
        /// Its file offset.
        offset: u64,
        /// Its size, in bytes.
        size: u64,
    },
    /// A page descriptor that cannot describe one page of this file.
    #[error("kdump: page descriptor of pfn {pfn:#x} at file offset {desc_offset:#x}: {why}")]
    BadPageDesc {
        /// The page frame number being read.
        pfn: u64,
        /// File offset of its descriptor.
        desc_offset: u64,
        /// What is wrong with the descriptor.
        why: &'static str,
    },
    /// A page's data does not decompress to exactly one page.
    #[error(
        "kdump: pfn {pfn:#x}: {method} data at file offset {data_offset:#x} ({size} bytes) does not decompress to one page: {why}"
    )]
    Decompress {
        /// The page frame number being read.
        pfn: u64,
        /// File offset of the compressed data.
        data_offset: u64,
        /// Compressed size, in bytes (the descriptor's `size`).
        size: u32,
        /// `"zlib"`, `"lzo"`, `"snappy"` or `"zstd"`.
        method: &'static str,
        /// What the decoder (or the length check) reported.
        why: &'static str,
    },
}

fn read_err(what: &'static str) -> impl Fn(SourceError) -> KdumpError {
    move |err| KdumpError::Read { what, err }
}

/// `struct new_utsname`: six NUL-padded 65-byte strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utsname {
    /// sysname, nodename, release, version, machine, domainname, in that
    /// order; each NUL-padded.
    pub fields: [[u8; 65]; 6],
}

impl Utsname {
    fn field(&self, i: usize) -> &str {
        let f = &self.fields[i];
        let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
        std::str::from_utf8(&f[..end]).unwrap_or("")
    }
    /// `sysname`, e.g. "Linux". Like all the getters: up to the first NUL,
    /// and empty if that is not UTF-8.
    pub fn sysname(&self) -> &str {
        self.field(0)
    }
    /// `nodename`: the host name.
    pub fn nodename(&self) -> &str {
        self.field(1)
    }
    /// `release`: the kernel release (`uname -r`).
    pub fn release(&self) -> &str {
        self.field(2)
    }
    /// `version`: the kernel build string (`uname -v`).
    pub fn version(&self) -> &str {
        self.field(3)
    }
    /// `machine`: the architecture, e.g. "x86_64".
    pub fn machine(&self) -> &str {
        self.field(4)
    }
    /// `domainname`: the NIS domain name.
    pub fn domainname(&self) -> &str {
        self.field(5)
    }
}

/// `disk_dump_header`, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdumpHeader {
    /// `header_version` (offset 8): which sub-header fields exist.
    pub header_version: u32,
    /// `utsname` (offset 12): the dumped kernel's `uname`.
    pub utsname: Utsname,
    /// `timestamp.tv_sec` (offset 408): when the dump was taken, in seconds
    /// since the epoch.
    pub timestamp_sec: u64,
    /// `timestamp.tv_usec` (offset 416): microseconds into that second.
    pub timestamp_usec: u64,
    /// `status` (offset 424): `DUMP_DH_*` flags (compression methods used,
    /// incomplete dump, excluded vmemmap).
    pub status: u32,
    /// `block_size` (offset 428): the page size, in bytes.
    pub block_size: u32,
    /// `sub_hdr_size` (offset 432): blocks of sub-header, notes and
    /// VMCOREINFO after block 0.
    pub sub_hdr_size: u32,
    /// `bitmap_blocks` (offset 436): blocks of the two bitmaps together.
    pub bitmap_blocks: u32,
    /// 32-bit; superseded by `max_mapnr_64` from header_version 6.
    pub max_mapnr: u32,
    /// `total_ram_blocks` (offset 444), as the producer wrote it; not used
    /// for reading.
    pub total_ram_blocks: u32,
    /// `device_blocks` (offset 448), as the producer wrote it; not used for
    /// reading.
    pub device_blocks: u32,
    /// `written_blocks` (offset 452), as the producer wrote it; not used for
    /// reading.
    pub written_blocks: u32,
    /// `current_cpu` (offset 456): the CPU that took the dump.
    pub current_cpu: u32,
    /// `nr_cpus` (offset 460): the number of CPUs.
    pub nr_cpus: u32,
}

/// `kdump_sub_header` (64-bit). Fields newer than `header_version` are 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KdumpSubHeader {
    /// Raw header value. Do not trust it for QEMU dumps (see module docs):
    /// use VMCOREINFO's `NUMBER(phys_base)` read as decimal.
    pub phys_base: u64,
    /// `dump_level` (offset 8): makedumpfile's `-d` page-exclusion mask.
    pub dump_level: u32,
    /// `split` (offset 12, v2+): nonzero when this file is one part of a
    /// split dump.
    pub split: u32,
    /// `start_pfn` (offset 16, v2+): first pfn of this part of a split dump;
    /// superseded by `start_pfn_64` from header_version 6.
    pub start_pfn: u64,
    /// `end_pfn` (offset 24, v2+): pfn past this part of a split dump;
    /// superseded by `end_pfn_64` from header_version 6.
    pub end_pfn: u64,
    /// `offset_vmcoreinfo` (offset 32, v3+): file offset of the VMCOREINFO
    /// text.
    pub offset_vmcoreinfo: u64,
    /// `size_vmcoreinfo` (offset 40, v3+): its size in bytes; 0 for none.
    pub size_vmcoreinfo: u64,
    /// `offset_note` (offset 48, v4+): file offset of the ELF notes.
    pub offset_note: u64,
    /// `size_note` (offset 56, v4+): their size in bytes; 0 for none.
    pub size_note: u64,
    /// `offset_eraseinfo` (offset 64, v5+): file offset of makedumpfile's
    /// erase information.
    pub offset_eraseinfo: u64,
    /// `size_eraseinfo` (offset 72, v5+): its size in bytes.
    pub size_eraseinfo: u64,
    /// `start_pfn_64` (offset 80, v6+): first pfn of this part of a split
    /// dump.
    pub start_pfn_64: u64,
    /// `end_pfn_64` (offset 88, v6+): pfn past this part of a split dump.
    pub end_pfn_64: u64,
    /// `max_mapnr_64` (offset 96, v6+): highest pfn + 1, replacing the
    /// header's 32-bit `max_mapnr`.
    pub max_mapnr_64: u64,
}

/// Bytes of the sub-header that exist for a header version.
fn sub_header_len(version: u32) -> usize {
    match version {
        0 | 1 => 12,
        2 => 32,
        3 => 48,
        4 => 64,
        5 => 80,
        _ => SUB_HEADER_SIZE,
    }
}

/// A page descriptor (`page_desc_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageDesc {
    /// `offset`: file offset of the page data (0 in an incomplete dump marks
    /// a lost page).
    pub offset: u64,
    /// `size`: bytes of page data, compressed or not.
    pub size: u32,
    /// `flags`: the `DUMP_DH_COMPRESSED_*` method, or 0 for a raw page.
    pub flags: u32,
    /// `page_flags`, as the producer wrote it; not used for reading.
    pub page_flags: u64,
}

/// Where a pfn stands in the dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageLookup {
    /// Not memory (not in the 1st bitmap, or past max_mapnr).
    Unmapped,
    /// Memory that was excluded (or lost to a full disk, or in another file
    /// of a split dump).
    NotInDump,
    /// Stored in the file.
    Stored {
        /// The page's descriptor.
        desc: PageDesc,
        /// File offset of that descriptor.
        desc_offset: u64,
    },
}

/// A bitmap with a rank index: one u32 count of set bits before every
/// 512-bit chunk, so `rank` is one lookup and at most 8 popcounts.
#[derive(Clone, Debug)]
struct RankedBitmap<'data> {
    bits: Cow<'data, [u8]>,
    chunk_rank: Vec<u32>,
    ones: u64,
}

const CHUNK_BYTES: usize = 64;

impl<'data> RankedBitmap<'data> {
    fn new(bits: Cow<'data, [u8]>) -> Self {
        let mut chunk_rank = Vec::with_capacity(bits.len().div_ceil(CHUNK_BYTES));
        let mut ones = 0u64;
        for chunk in bits.chunks(CHUNK_BYTES) {
            // Saturates only past 2^32 dumped pages (16 TiB of 4K pages).
            chunk_rank.push(u32::try_from(ones).unwrap_or(u32::MAX));
            ones += chunk.iter().map(|b| u64::from(b.count_ones())).sum::<u64>();
        }
        RankedBitmap { bits, chunk_rank, ones }
    }

    fn nbits(&self) -> u64 {
        self.bits.len() as u64 * 8
    }

    fn get(&self, bit: u64) -> bool {
        let Ok(byte) = usize::try_from(bit / 8) else { return false };
        self.bits.get(byte).is_some_and(|b| b >> (bit % 8) & 1 != 0)
    }

    /// Set bits before `bit`.
    fn rank(&self, bit: u64) -> u64 {
        let bit = bit.min(self.nbits());
        let byte = (bit / 8) as usize;
        let chunk = byte / CHUNK_BYTES;
        let Some(&base) = self.chunk_rank.get(chunk) else { return self.ones };
        let start = chunk * CHUNK_BYTES;
        let mut n = u64::from(base);
        // Whole words, then bytes (a lookup per page read).
        let mut words = self.bits[start..byte].chunks_exact(8);
        n += words.by_ref().map(|w| u64::from(w.try_into().map_or(0, u64::from_le_bytes).count_ones())).sum::<u64>();
        n += words.remainder().iter().map(|b| u64::from(b.count_ones())).sum::<u64>();
        if bit & 7 != 0 {
            n += u64::from((self.bits[byte] & ((1u8 << (bit % 8)) - 1)).count_ones());
        }
        n
    }
}

/// Decoders kept between pages so that reading allocates nothing once warm.
pub struct PageDecoder {
    /// libdeflate's decompressor: whole-buffer inflate, faster per page
    /// than a streaming inflater (each page is its own zlib stream).
    zlib: libdeflater::Decompressor,
    /// libzstd's context, made on the first zstd page.
    zstd: Option<zstd::bulk::Decompressor<'static>>,
    /// Compressed bytes that straddle flattened records.
    scratch: Vec<u8>,
}

impl Default for PageDecoder {
    fn default() -> Self {
        PageDecoder { zlib: libdeflater::Decompressor::new(), zstd: None, scratch: Vec::new() }
    }
}

impl std::fmt::Debug for PageDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageDecoder").finish_non_exhaustive()
    }
}

/// A kdump-compressed file over any byte source.
#[derive(Debug)]
pub struct KdumpFile<'data, S: ByteSource<'data>> {
    source: S,
    header: KdumpHeader,
    sub: KdumpSubHeader,
    block_size: u64,
    max_mapnr: u64,
    /// Shared by split readers: copied out of a flattened file, each is
    /// as large as the pfn range / 8.
    valid: Arc<RankedBitmap<'data>>,
    dumped: Arc<RankedBitmap<'data>>,
    /// Dumped pages before `split_start` (split dumps number descriptors from there).
    rank_base: u64,
    split_range: Option<(u64, u64)>,
    desc_offset: u64,
    notes: Cow<'data, [u8]>,
    vmcoreinfo: Option<Cow<'data, [u8]>>,
    decoder: PageDecoder,
}

/// True if `data` starts with the kdump signature.
pub fn is_kdump(data: &[u8]) -> bool {
    data.starts_with(SIGNATURE)
}

fn parse_header(h: &[u8]) -> Option<KdumpHeader> {
    let u = |at| le_u32(h, at);
    let mut fields = [[0u8; 65]; 6];
    for (i, f) in fields.iter_mut().enumerate() {
        f.copy_from_slice(h.get(12 + 65 * i..12 + 65 * (i + 1))?);
    }
    Some(KdumpHeader {
        header_version: u(8)?,
        utsname: Utsname { fields },
        timestamp_sec: le_u64(h, 408)?,
        timestamp_usec: le_u64(h, 416)?,
        status: u(424)?,
        block_size: u(428)?,
        sub_hdr_size: u(432)?,
        bitmap_blocks: u(436)?,
        max_mapnr: u(440)?,
        total_ram_blocks: u(444)?,
        device_blocks: u(448)?,
        written_blocks: u(452)?,
        current_cpu: u(456)?,
        nr_cpus: u(460)?,
    })
}

fn parse_sub_header(b: &[u8], version: u32) -> KdumpSubHeader {
    // Missing fields (older versions) read as 0.
    let q = |at: usize| if at + 8 <= sub_header_len(version) { le_u64(b, at).unwrap_or(0) } else { 0 };
    let d = |at: usize| if at + 4 <= sub_header_len(version) { le_u32(b, at).unwrap_or(0) } else { 0 };
    KdumpSubHeader {
        phys_base: q(0),
        dump_level: d(8),
        split: d(12),
        start_pfn: q(16),
        end_pfn: q(24),
        offset_vmcoreinfo: q(32),
        size_vmcoreinfo: q(40),
        offset_note: q(48),
        size_note: q(56),
        offset_eraseinfo: q(64),
        size_eraseinfo: q(72),
        start_pfn_64: q(80),
        end_pfn_64: q(88),
        max_mapnr_64: q(96),
    }
}

impl<'data, S: ByteSource<'data>> KdumpFile<'data, S> {
    /// Reads and checks the headers and bitmaps, and borrows (or copies) the
    /// notes and VMCOREINFO; pages are decoded on demand.
    pub fn parse(source: S) -> Result<Self, KdumpError> {
        let mut h = [0u8; HEADER_SIZE];
        match source.read_at(0, &mut h[..SIGNATURE.len()]) {
            Ok(()) if &h[..SIGNATURE.len()] == SIGNATURE => {}
            _ => return Err(KdumpError::BadSignature),
        }
        source.read_at(0, &mut h).map_err(read_err("disk_dump_header"))?;
        let header = parse_header(&h).ok_or(KdumpError::BadSignature)?;
        if header.header_version == 0 {
            return Err(KdumpError::BadVersion(0));
        }
        let bs = header.block_size;
        if !bs.is_power_of_two() || !(512..=MAX_BLOCK_SIZE).contains(&bs) {
            return Err(KdumpError::BadBlockSize(bs));
        }
        if header.sub_hdr_size == 0 {
            return Err(KdumpError::BadSubHeaderSize(0));
        }
        if header.bitmap_blocks == 0 || header.bitmap_blocks % 2 != 0 {
            return Err(KdumpError::BadBitmapBlocks(header.bitmap_blocks));
        }
        let block_size = u64::from(bs);

        let mut sb = [0u8; SUB_HEADER_SIZE];
        let sub_len = sub_header_len(header.header_version);
        source.read_at(block_size, &mut sb[..sub_len]).map_err(read_err("kdump_sub_header"))?;
        let sub = parse_sub_header(&sb, header.header_version);

        // All products of u32 fields and a block size <= 2^18: no overflow in u64.
        let bitmap_off = (1 + u64::from(header.sub_hdr_size)) * block_size;
        let bitmap_len = u64::from(header.bitmap_blocks / 2) * block_size;
        let range = |what: &'static str, offset: u64, size: u64| -> Result<Cow<'data, [u8]>, KdumpError> {
            source.range(offset, size).map_err(|err| match err {
                SourceError::OutOfBounds { .. } => KdumpError::BadRange { what, offset, size },
                err => KdumpError::Read { what, err },
            })
        };
        let valid = RankedBitmap::new(range("1st bitmap", bitmap_off, bitmap_len)?);
        let dumped = RankedBitmap::new(range("2nd bitmap", bitmap_off + bitmap_len, bitmap_len)?);
        let desc_offset = bitmap_off + 2 * bitmap_len;
        // Fail fast on a file too short for its descriptor table.
        source.check(desc_offset, dumped.ones * PAGE_DESC_SIZE).map_err(|_| KdumpError::BadRange {
            what: "page descriptors",
            offset: desc_offset,
            size: dumped.ones * PAGE_DESC_SIZE,
        })?;

        let v6 = header.header_version >= 6;
        let max_mapnr = if v6 { sub.max_mapnr_64 } else { u64::from(header.max_mapnr) };
        let split_pfns = if v6 { (sub.start_pfn_64, sub.end_pfn_64) } else { (sub.start_pfn, sub.end_pfn) };
        let split_range = (header.header_version >= 2 && sub.split != 0).then_some(split_pfns);
        let rank_base = split_range.map_or(0, |(start, _)| dumped.rank(start));

        let notes = if header.header_version >= 4 && sub.size_note > 0 {
            range("notes", sub.offset_note, sub.size_note)?
        } else {
            Cow::Borrowed(&[][..])
        };
        let vmcoreinfo = if header.header_version >= 3 && sub.size_vmcoreinfo > 0 {
            if sub.size_vmcoreinfo > super::vmcoreinfo::MAX_SIZE {
                return Err(KdumpError::BadRange {
                    what: "VMCOREINFO (over 1 MiB)",
                    offset: sub.offset_vmcoreinfo,
                    size: sub.size_vmcoreinfo,
                });
            }
            Some(range("VMCOREINFO", sub.offset_vmcoreinfo, sub.size_vmcoreinfo)?)
        } else {
            None
        };

        Ok(KdumpFile {
            source,
            header,
            sub,
            block_size,
            max_mapnr,
            valid: Arc::new(valid),
            dumped: Arc::new(dumped),
            rank_base,
            split_range,
            desc_offset,
            notes,
            vmcoreinfo,
            decoder: PageDecoder::default(),
        })
    }

    /// A second reader of the same file with its own decoders (for a
    /// second thread); nothing is re-read or re-checked.
    pub fn split(&self) -> Self
    where
        S: Clone,
    {
        KdumpFile {
            source: self.source.clone(),
            header: self.header,
            sub: self.sub,
            block_size: self.block_size,
            max_mapnr: self.max_mapnr,
            valid: self.valid.clone(),
            dumped: self.dumped.clone(),
            rank_base: self.rank_base,
            split_range: self.split_range,
            desc_offset: self.desc_offset,
            notes: self.notes.clone(),
            vmcoreinfo: self.vmcoreinfo.clone(),
            decoder: PageDecoder::default(),
        }
    }

    /// The `disk_dump_header`.
    pub fn header(&self) -> &KdumpHeader {
        &self.header
    }

    /// The `kdump_sub_header`; fields newer than `header_version` are 0.
    pub fn sub_header(&self) -> &KdumpSubHeader {
        &self.sub
    }

    /// The bytes the file is read from.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The page size (the format's block size).
    pub fn page_size(&self) -> u64 {
        self.block_size
    }

    /// Highest pfn + 1 that the dump describes.
    pub fn max_mapnr(&self) -> u64 {
        self.max_mapnr
    }

    /// Number of pages stored (set bits of the 2nd bitmap).
    pub fn dumped_pages(&self) -> u64 {
        self.dumped.ones
    }

    /// The ELF notes area (file offset `sub_header().offset_note`).
    pub fn notes_bytes(&self) -> &[u8] {
        &self.notes
    }

    /// The VMCOREINFO text stored beside the notes (header_version >= 3).
    pub fn vmcoreinfo_bytes(&self) -> Option<&[u8]> {
        self.vmcoreinfo.as_deref()
    }

    /// Whether the pfn exists and whether it was dumped.
    pub fn lookup(&self, pfn: u64) -> Result<PageLookup, KdumpError> {
        if pfn >= self.max_mapnr {
            return Ok(PageLookup::Unmapped);
        }
        if self.dumped.get(pfn) {
            if self.split_range.is_some_and(|(start, end)| pfn < start || pfn >= end) {
                return Ok(PageLookup::NotInDump);
            }
            return self.stored(pfn);
        }
        // QEMU writes two identical bitmaps, so there a clear bit is a hole.
        Ok(if self.valid.get(pfn) { PageLookup::NotInDump } else { PageLookup::Unmapped })
    }

    fn stored(&self, pfn: u64) -> Result<PageLookup, KdumpError> {
        let rank = self.dumped.rank(pfn);
        let index = rank - self.rank_base.min(rank);
        let desc_offset = self.desc_offset + index * PAGE_DESC_SIZE;
        let mut b = [0u8; PAGE_DESC_SIZE as usize];
        self.source.read_at(desc_offset, &mut b).map_err(read_err("page descriptor"))?;
        let desc = PageDesc {
            offset: le_u64(&b, 0).unwrap_or(0),
            size: le_u32(&b, 8).unwrap_or(0),
            flags: le_u32(&b, 12).unwrap_or(0),
            page_flags: le_u64(&b, 16).unwrap_or(0),
        };
        if desc.offset == 0 && self.header.status & DUMP_DH_COMPRESSED_INCOMPLETE != 0 {
            return Ok(PageLookup::NotInDump);
        }
        Ok(PageLookup::Stored { desc, desc_offset })
    }

    /// Decodes page `pfn` into `out` (exactly one page long).
    pub fn read_page(&mut self, pfn: u64, out: &mut [u8]) -> Result<PageLookup, KdumpError> {
        let found = self.lookup(pfn)?;
        let PageLookup::Stored { desc, desc_offset } = found else { return Ok(found) };
        let bad = |why| KdumpError::BadPageDesc { pfn, desc_offset, why };
        if out.len() as u64 != self.block_size {
            return Err(bad("output buffer is not one page"));
        }
        if desc.size == 0 || u64::from(desc.size) > self.block_size {
            return Err(bad("size is 0 or larger than a page"));
        }
        let method = desc.flags & COMPRESSION_MASK;
        if method.count_ones() > 1 {
            return Err(bad("more than one compression flag"));
        }
        if method == 0 && u64::from(desc.size) != self.block_size {
            return Err(bad("uncompressed page whose size is not the page size"));
        }
        let size = desc.size as usize;
        let PageDecoder { zlib, zstd, scratch } = &mut self.decoder;
        let input: &[u8] = match self.source.slice(desc.offset, size) {
            Some(s) => s,
            None => {
                scratch.resize(size, 0);
                self.source.read_at(desc.offset, scratch).map_err(|_| bad("page data lies outside the file"))?;
                scratch
            }
        };
        let fail = |method: &'static str, why: &'static str| KdumpError::Decompress {
            pfn,
            data_offset: desc.offset,
            size: desc.size,
            method,
            why,
        };
        match method {
            0 => out.copy_from_slice(input),
            DUMP_DH_COMPRESSED_ZLIB => match zlib.zlib_decompress(input, out) {
                Ok(n) if n == out.len() => {}
                Ok(_) => return Err(fail("zlib", "short output")),
                Err(libdeflater::DecompressionError::InsufficientSpace) => {
                    return Err(fail("zlib", "longer than a page"));
                }
                Err(libdeflater::DecompressionError::BadData) => return Err(fail("zlib", "corrupt stream")),
            },
            DUMP_DH_COMPRESSED_LZO => match super::lzo::decompress_into(input, out) {
                Ok(n) if n == out.len() => {}
                Ok(_) => return Err(fail("lzo", "short output")),
                Err(_) => return Err(fail("lzo", "corrupt stream")),
            },
            DUMP_DH_COMPRESSED_SNAPPY => {
                match snap::raw::decompress_len(input) {
                    Ok(n) if n == out.len() => {}
                    Ok(_) => return Err(fail("snappy", "wrong length")),
                    Err(_) => return Err(fail("snappy", "corrupt header")),
                }
                if snap::raw::Decoder::new().decompress(input, out).is_err() {
                    return Err(fail("snappy", "corrupt stream"));
                }
            }
            DUMP_DH_COMPRESSED_ZSTD => {
                // Refuse frames that would make the decoder allocate a large window.
                match zstd_window(input) {
                    Some(w) if w <= MAX_ZSTD_WINDOW => {}
                    _ => return Err(fail("zstd", "bad frame header or window over 1 MiB")),
                }
                let d = match zstd {
                    Some(d) => d,
                    None => {
                        let no_context = |_| fail("zstd", "no decoder context");
                        let mut d = zstd::bulk::Decompressor::new().map_err(no_context)?;
                        // The window is checked above; libzstd enforces it too.
                        d.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(MAX_ZSTD_WINDOW.ilog2()))
                            .map_err(no_context)?;
                        zstd.insert(d)
                    }
                };
                match d.decompress_to_buffer(input, out) {
                    Ok(n) if n == out.len() => {}
                    Ok(_) => return Err(fail("zstd", "short output")),
                    Err(_) => return Err(fail("zstd", "corrupt stream")),
                }
            }
            _ => return Err(bad("unknown compression flag")),
        }
        Ok(found)
    }
}

/// The window a zstd frame asks for (RFC 8878 3.1.1.1), `None` if the
/// header is not a zstd frame header.
fn zstd_window(b: &[u8]) -> Option<u64> {
    if le_u32(b, 0)? != 0xFD2F_B528 {
        return None;
    }
    let fhd = *b.get(4)?;
    let single_segment = fhd & 0x20 != 0;
    if !single_segment {
        let wd = *b.get(5)?;
        let exp = u64::from(wd >> 3);
        let base = 1u64 << (10 + exp);
        return Some(base + (base / 8) * u64::from(wd & 7));
    }
    // Single segment: the window is the content size.
    let did_len = [0usize, 1, 2, 4][usize::from(fhd & 3)];
    let fcs_at = 5 + did_len;
    match fhd >> 6 {
        0 => b.get(fcs_at).map(|&v| u64::from(v)),
        1 => le_u16_at(b, fcs_at).map(|v| u64::from(v) + 256),
        2 => le_u32(b, fcs_at).map(u64::from),
        _ => le_u64(b, fcs_at),
    }
}

fn le_u16_at(b: &[u8], at: usize) -> Option<u16> {
    super::source::le_u16(b, at)
}

/// Describes a compression flag set.
pub fn compression_names(flags: u32) -> impl Iterator<Item = &'static str> {
    [
        (DUMP_DH_COMPRESSED_ZLIB, "zlib"),
        (DUMP_DH_COMPRESSED_LZO, "lzo"),
        (DUMP_DH_COMPRESSED_SNAPPY, "snappy"),
        (DUMP_DH_COMPRESSED_ZSTD, "zstd"),
    ]
    .into_iter()
    .filter(move |(f, _)| flags & f != 0)
    .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::source::SliceSource;

    #[test]
    fn rank_index() {
        let mut bits = vec![0u8; 200];
        let set = [0u64, 1, 7, 8, 63, 64, 511, 512, 513, 1000, 1599];
        for &b in &set {
            bits[(b / 8) as usize] |= 1 << (b % 8);
        }
        let r = RankedBitmap::new(Cow::Owned(bits));
        assert_eq!(r.ones, set.len() as u64);
        for bit in 0..1700u64 {
            let want = set.iter().filter(|&&s| s < bit).count() as u64;
            assert_eq!(r.rank(bit), want, "bit {bit}");
            assert_eq!(r.get(bit), set.contains(&bit));
        }
        assert!(!r.get(u64::MAX));
        assert_eq!(r.rank(u64::MAX), set.len() as u64);
        // Dense: every rank against a count, across words and chunks.
        let bits: Vec<u8> = (0..333u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let r = RankedBitmap::new(Cow::Borrowed(&bits));
        let mut want = 0;
        for bit in 0..bits.len() as u64 * 8 {
            assert_eq!(r.rank(bit), want, "bit {bit}");
            want += u64::from(bits[(bit / 8) as usize] >> (bit % 8) & 1);
        }
        assert_eq!(r.rank(u64::MAX), want);
    }

    #[test]
    fn zstd_window_sizes() {
        let page = vec![7u8; 4096];
        let c = ruzstd::encoding::compress_to_vec(&page[..], ruzstd::encoding::CompressionLevel::Fastest);
        assert!(zstd_window(&c).is_some_and(|w| w <= MAX_ZSTD_WINDOW));
        // Window descriptor 0xf8: exponent 31 -> 2 TB window.
        let evil = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xf8, 0, 0, 0];
        assert_eq!(zstd_window(&evil), Some(1 << 41));
        assert_eq!(zstd_window(&[0u8; 3]), None);
    }

    #[test]
    fn not_kdump() {
        assert_eq!(KdumpFile::parse(SliceSource(b"KDUMP")).unwrap_err(), KdumpError::BadSignature);
        assert_eq!(KdumpFile::parse(SliceSource(b"\x7fELF....")).unwrap_err(), KdumpError::BadSignature);
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;
    use crate::dump::flattened::flatten;
    use crate::dump::source::SliceSource;
    use crate::dump::write::{KdumpPage, KdumpWriteInfo, write_kdump_pages};
    use crate::dump::{Dump, DumpError};
    use crate::memory::MemoryErrorKind;

    fn page(seed: u8) -> Vec<u8> {
        (0..4096u32).map(|i| ((i / 7) as u8).wrapping_mul(seed) ^ (i % 3) as u8).collect()
    }

    /// A page repeating `abcd`, and its LZO1X stream built by hand (there is
    /// no Apache/MIT LZO compressor to call; real lzo1x_1 pages from
    /// makedumpfile are in the fixtures): a 4-byte literal run (first byte
    /// 17 + 4), an M3 match (`001LLLLL`, L = 0 then the length extension)
    /// at distance 4 for the other 4092 bytes, and the `11 00 00` end marker.
    fn lzo_page() -> (Vec<u8>, Vec<u8>) {
        let page: Vec<u8> = b"abcd".iter().copied().cycle().take(4096).collect();
        let mut s = vec![17 + 4];
        s.extend_from_slice(b"abcd");
        s.push(0x20);
        let mut t = 4092 - 2 - 31;
        while t > 255 {
            s.push(0);
            t -= 255;
        }
        s.push(t as u8);
        s.extend_from_slice(&(((4 - 1) << 2) as u16).to_le_bytes());
        s.extend_from_slice(&[0x11, 0, 0]);
        (page, s)
    }

    fn info() -> KdumpWriteInfo<'static> {
        KdumpWriteInfo {
            utsname: ["Linux", "", "6.12.0", "", "x86_64", ""],
            page_size: 4096,
            max_mapnr: 64,
            present: &[(0, 32)],
            ..Default::default()
        }
    }

    /// One page per compression flag (zlib, lzo, snappy, zstd), then a raw one.
    fn all_methods() -> (Vec<u8>, Vec<(u64, Vec<u8>)>) {
        let (lzo_plain, lzo) = lzo_page();
        let mut pages: Vec<(u64, Vec<u8>)> = (0..5).map(|i| (i * 3 + 1, page(i as u8 + 2))).collect();
        pages[1].1 = lzo_plain;
        let zlib = {
            use std::io::Write;
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&pages[0].1).unwrap();
            e.finish().unwrap()
        };
        let snappy = snap::raw::Encoder::new().compress_vec(&pages[2].1).unwrap();
        let zstd = ruzstd::encoding::compress_to_vec(&pages[3].1[..], ruzstd::encoding::CompressionLevel::Fastest);
        let stored = vec![
            (pages[0].0, KdumpPage::Stored { flags: DUMP_DH_COMPRESSED_ZLIB, data: &zlib }),
            (pages[1].0, KdumpPage::Stored { flags: DUMP_DH_COMPRESSED_LZO, data: &lzo }),
            (pages[2].0, KdumpPage::Stored { flags: DUMP_DH_COMPRESSED_SNAPPY, data: &snappy }),
            (pages[3].0, KdumpPage::Stored { flags: DUMP_DH_COMPRESSED_ZSTD, data: &zstd }),
            (pages[4].0, KdumpPage::Raw(&pages[4].1)),
        ];
        let mut out = Vec::new();
        write_kdump_pages(&mut out, &info(), stored).unwrap();
        (out, pages)
    }

    #[test]
    fn every_compression_flag() {
        let (file, pages) = all_methods();
        let mut d = Dump::open(&file).unwrap();
        let mut b = vec![0u8; 4096];
        for (pfn, want) in &pages {
            d.read_phys(pfn * 4096, &mut b).unwrap();
            assert_eq!(&b, want, "pfn {pfn}");
        }
        // The same through a flattened copy, records reversed.
        let recs: Vec<(u64, &[u8])> =
            file.chunks(1000).enumerate().map(|(i, c)| ((i * 1000) as u64, c)).rev().collect();
        let flat = flatten(recs);
        let mut d = Dump::open(&flat).unwrap();
        for (pfn, want) in pages.iter().rev() {
            d.read_phys(pfn * 4096, &mut b).unwrap();
            assert_eq!(&b, want, "flattened pfn {pfn}");
        }
        // Present but not dumped; not present; beyond max_mapnr.
        assert_eq!(d.read_phys(2 * 4096, &mut b).unwrap_err().kind, MemoryErrorKind::NotInDump);
        assert_eq!(d.read_phys(40 * 4096, &mut b).unwrap_err().kind, MemoryErrorKind::Unmapped);
        assert_eq!(d.read_phys(64 * 4096, &mut b).unwrap_err().kind, MemoryErrorKind::Unmapped);
    }

    #[test]
    fn cache_serves_many_pages() {
        // More distinct pages than cache slots, read round and round.
        let pages: Vec<(u64, Vec<u8>)> = (0..40).map(|i| (i, page(i as u8))).collect();
        let mut file = Vec::new();
        let i = KdumpWriteInfo { max_mapnr: 40, ..info() };
        crate::dump::write::write_kdump(
            &mut file,
            &i,
            pages.iter().map(|(p, d)| (*p, &d[..])),
            crate::dump::write::WriteCompression::Zlib,
        )
        .unwrap();
        let mut d = Dump::open(&file).unwrap();
        let mut b = [0u8; 16];
        for round in 0..3 {
            for (pfn, want) in pages.iter().rev().chain(pages.iter()) {
                let off = (round * 8) as usize;
                d.read_phys(pfn * 4096 + off as u64, &mut b).unwrap();
                assert_eq!(&b, &want[off..off + 16]);
            }
        }
    }

    /// File offset of the first page descriptor.
    fn desc_offset(file: &[u8]) -> usize {
        KdumpFile::parse(SliceSource(file)).unwrap().desc_offset as usize
    }

    #[test]
    fn corrupt_pages_are_named() {
        let (file, pages) = all_methods();
        let at = desc_offset(&file);
        let mut b = vec![0u8; 4096];
        // Garbage in each compressed page.
        for (i, method) in ["zlib", "lzo", "snappy", "zstd"].into_iter().enumerate() {
            let mut bad = file.clone();
            let d_at = at + i * PAGE_DESC_SIZE as usize;
            let data_off = u64::from_le_bytes(bad[d_at..d_at + 8].try_into().unwrap()) as usize;
            bad[data_off + 1..data_off + 8].fill(0xff);
            let mut d = Dump::open(&bad).unwrap();
            let e = d.read_phys_detailed(pages[i].0 * 4096, &mut b).unwrap_err();
            assert!(matches!(e, DumpError::Kdump(KdumpError::Decompress { method: m, .. }) if m == method), "{e}");
            assert_eq!(d.read_phys(pages[i].0 * 4096, &mut b).unwrap_err().kind, MemoryErrorKind::Backend);
        }
        // Size larger than a page; two flags; out-of-file offset.
        for (field, value, why) in [
            (8usize, 5000u64, "size is 0 or larger than a page"),
            (12, 3, "more than one compression flag"),
            (0, 1 << 40, "page data lies outside the file"),
        ] {
            let mut bad = file.clone();
            let w = if field == 0 { 8 } else { 4 };
            bad[at + field..at + field + w].copy_from_slice(&value.to_le_bytes()[..w]);
            let mut d = Dump::open(&bad).unwrap();
            let e = d.read_phys_detailed(pages[0].0 * 4096, &mut b).unwrap_err();
            assert_eq!(
                e,
                DumpError::Kdump(KdumpError::BadPageDesc { pfn: pages[0].0, desc_offset: at as u64, why }),
                "{e}"
            );
        }
        // A raw page whose size is not the page size.
        let mut bad = file.clone();
        let last = at + 4 * PAGE_DESC_SIZE as usize;
        bad[last + 8..last + 12].copy_from_slice(&100u32.to_le_bytes());
        let mut d = Dump::open(&bad).unwrap();
        assert!(matches!(
            d.read_phys_detailed(pages[4].0 * 4096, &mut b),
            Err(DumpError::Kdump(KdumpError::BadPageDesc {
                why: "uncompressed page whose size is not the page size",
                ..
            }))
        ));
    }

    #[test]
    fn header_claims_fail_fast() {
        let (file, _) = all_methods();
        let set = |at: usize, v: u32| {
            let mut b = file.clone();
            b[at..at + 4].copy_from_slice(&v.to_le_bytes());
            b
        };
        assert_eq!(KdumpFile::parse(SliceSource(&set(428, 4000))).unwrap_err(), KdumpError::BadBlockSize(4000));
        assert_eq!(KdumpFile::parse(SliceSource(&set(436, 3))).unwrap_err(), KdumpError::BadBitmapBlocks(3));
        assert_eq!(KdumpFile::parse(SliceSource(&set(8, 0))).unwrap_err(), KdumpError::BadVersion(0));
        // 4 G blocks of bitmap in a small file.
        assert!(matches!(
            KdumpFile::parse(SliceSource(&set(436, 0xffff_fffe))),
            Err(KdumpError::BadRange { what: "1st bitmap", .. })
        ));
        // A sub-header claiming a huge note area.
        let mut b = file.clone();
        b[4096 + 56..4096 + 64].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(matches!(KdumpFile::parse(SliceSource(&b)), Err(KdumpError::BadRange { what: "notes", .. })));
        // Every truncation: an error at open or at read, never a panic.
        for n in (0..file.len()).step_by(13) {
            if let Ok(mut d) = Dump::open(&file[..n]) {
                let mut p = vec![0u8; 4096];
                for pfn in 0..20 {
                    let _ = d.read_phys(pfn * 4096, &mut p);
                }
            }
        }
    }

    #[test]
    fn incomplete_and_split() {
        let (file, pages) = all_methods();
        let at = desc_offset(&file);
        let mut p = vec![0u8; 4096];
        // Incomplete dump: a descriptor with offset 0 is a lost page.
        let mut b = file.clone();
        b[424..428].copy_from_slice(&(DUMP_DH_COMPRESSED_INCOMPLETE | 0x27).to_le_bytes());
        b[at..at + 8].fill(0);
        let mut d = Dump::open(&b).unwrap();
        assert_eq!(d.read_phys(pages[0].0 * 4096, &mut p).unwrap_err().kind, MemoryErrorKind::NotInDump);
        d.read_phys(pages[1].0 * 4096, &mut p).unwrap();
        // Split: this file holds pfns [start, end), descriptors numbered from start.
        let (start, end) = (pages[1].0, pages[3].0);
        let mut b = file.clone();
        b[4096 + 12..4096 + 16].copy_from_slice(&1u32.to_le_bytes());
        b[4096 + 80..4096 + 88].copy_from_slice(&start.to_le_bytes());
        b[4096 + 88..4096 + 96].copy_from_slice(&end.to_le_bytes());
        let n = PAGE_DESC_SIZE as usize;
        b.copy_within(at + n..at + 5 * n, at);
        let mut d = Dump::open(&b).unwrap();
        assert_eq!(d.read_phys(pages[0].0 * 4096, &mut p).unwrap_err().kind, MemoryErrorKind::NotInDump);
        for (pfn, want) in &pages[1..3] {
            d.read_phys(pfn * 4096, &mut p).unwrap();
            assert_eq!(&p, want);
        }
        assert_eq!(d.read_phys(end * 4096, &mut p).unwrap_err().kind, MemoryErrorKind::NotInDump);
    }
}
