//! A kdump-compressed writer, laid out as makedumpfile lays its files out
//! (header_version 6), for cutting small fixtures out of real dumps.
//!
//! ```text
//! block 0     disk_dump_header
//! block 1..   kdump_sub_header, VMCOREINFO text, ELF notes
//!             (sub_hdr_size blocks)
//! then        1st bitmap, 2nd bitmap (bitmap_blocks/2 blocks each)
//! then        page descriptors, then page data
//! ```

use std::io::Write;

use super::kdump::{
    DUMP_DH_COMPRESSED_LZO, DUMP_DH_COMPRESSED_SNAPPY, DUMP_DH_COMPRESSED_ZLIB, DUMP_DH_COMPRESSED_ZSTD, HEADER_SIZE,
    PAGE_DESC_SIZE, SIGNATURE, SUB_HEADER_SIZE,
};
use super::notes::NoteIter;

/// Why a kdump-compressed file could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The output failed, with this error kind.
    #[error("write failed: {0}")]
    Io(std::io::ErrorKind),
    /// The page size is not a power of two in 512..=262144.
    #[error("page size {0} is not a power of two in 512..=262144")]
    BadPageSize(u32),
    /// A raw page is not exactly one page long.
    #[error("page of pfn {pfn:#x} is {len} bytes, not one page")]
    PageLength {
        /// The page's frame number.
        pfn: u64,
        /// Its length, in bytes.
        len: usize,
    },
    /// The pfns are not strictly increasing.
    #[error("pfn {pfn:#x} is not above the previous one (pages must be sorted)")]
    Unsorted {
        /// The first pfn not above its predecessor.
        pfn: u64,
    },
    /// A pfn is not below [`KdumpWriteInfo::max_mapnr`].
    #[error("pfn {pfn:#x} is not below max_mapnr {max_mapnr:#x}")]
    PfnBeyondMax {
        /// The page's frame number.
        pfn: u64,
        /// The `max_mapnr` it should be below.
        max_mapnr: u64,
    },
    /// A [`KdumpPage::Stored`] page has not exactly one known compression
    /// flag (and no other), or holds 0 or more than a page of bytes.
    #[error(
        "stored page of pfn {pfn:#x} has flags {flags:#x}: exactly one compression flag and a size of 1..=page size are needed"
    )]
    BadStoredPage {
        /// The page's frame number.
        pfn: u64,
        /// The flags it was given.
        flags: u32,
    },
    /// zlib failed on the page of this pfn.
    #[error("zlib compression failed for pfn {0:#x}")]
    Compress(u64),
    /// The utsname field of this index is over 64 bytes.
    #[error("utsname field {0} is longer than 64 bytes")]
    UtsnameTooLong(usize),
}

impl From<std::io::Error> for WriteError {
    fn from(e: std::io::Error) -> Self {
        WriteError::Io(e.kind())
    }
}

/// What goes into the headers.
#[derive(Clone, Copy, Debug, Default)]
pub struct KdumpWriteInfo<'a> {
    /// sysname, nodename, release, version, machine, domainname.
    pub utsname: [&'a str; 6],
    /// The block size: the page size.
    pub page_size: u32,
    /// Pfns covered by the bitmaps (highest pfn + 1).
    pub max_mapnr: u64,
    /// Written as is into the sub-header (readers should prefer VMCOREINFO).
    pub phys_base: u64,
    /// The header's `nr_cpus`.
    pub nr_cpus: u32,
    /// The sub-header's `dump_level` (makedumpfile's `-d` mask).
    pub dump_level: u32,
    /// ELF notes (NT_PRSTATUS, QEMU, VMCOREINFO notes...), as one blob.
    pub notes: &'a [u8],
    /// The VMCOREINFO text.
    pub vmcoreinfo: &'a [u8],
    /// Pfn ranges `[start, end)` that exist but are not written: they read
    /// as "not in dump" instead of "not memory".
    pub present: &'a [(u64, u64)],
}

/// How [`write_kdump`] stores pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteCompression {
    /// Every page raw.
    None,
    /// zlib, keeping a page raw when compression does not make it smaller.
    Zlib,
}

/// One page to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KdumpPage<'p> {
    /// The page's bytes (one page).
    Raw(&'p [u8]),
    /// Already compressed bytes with their descriptor flags, copied as they
    /// are (e.g. LZO or snappy pages cut out of a real dump).
    Stored {
        /// Exactly one `DUMP_DH_COMPRESSED_*` flag.
        flags: u32,
        /// The compressed bytes: 1 to page size of them.
        data: &'p [u8],
    },
}

/// What was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteSummary {
    /// Bytes written: the file's size.
    pub bytes: u64,
    /// Pages written (stored in the dump).
    pub pages: u64,
    /// Compression flags used by at least one page.
    pub flags: u32,
}

/// Writes a kdump-compressed file from sorted `(pfn, page)` pairs.
pub fn write_kdump<'p, W: Write>(
    out: &mut W,
    info: &KdumpWriteInfo<'_>,
    pages: impl IntoIterator<Item = (u64, &'p [u8])>,
    compression: WriteCompression,
) -> Result<WriteSummary, WriteError> {
    let page_size = info.page_size as usize;
    let mut z = flate2::Compress::new(flate2::Compression::default(), true);
    let mut buf = vec![0u8; page_size + page_size / 2 + 64];
    let mut stored: Vec<(u64, u32, Vec<u8>)> = Vec::new();
    for (pfn, page) in pages {
        if page.len() != page_size {
            return Err(WriteError::PageLength { pfn, len: page.len() });
        }
        if compression == WriteCompression::Zlib {
            z.reset();
            match z.compress(page, &mut buf, flate2::FlushCompress::Finish) {
                Ok(flate2::Status::StreamEnd) => {}
                _ => return Err(WriteError::Compress(pfn)),
            }
            let n = z.total_out() as usize;
            // As makedumpfile does: keep a page raw when compression does not pay.
            if n < page_size {
                stored.push((pfn, DUMP_DH_COMPRESSED_ZLIB, buf[..n].to_vec()));
                continue;
            }
        }
        stored.push((pfn, 0, page.to_vec()));
    }
    write_kdump_pages(
        out,
        info,
        stored.iter().map(|(pfn, flags, data)| {
            (*pfn, if *flags == 0 { KdumpPage::Raw(data) } else { KdumpPage::Stored { flags: *flags, data } })
        }),
    )
}

/// Writes a kdump-compressed file from sorted `(pfn, page)` pairs given raw
/// or already compressed.
pub fn write_kdump_pages<'p, W: Write>(
    out: &mut W,
    info: &KdumpWriteInfo<'_>,
    pages: impl IntoIterator<Item = (u64, KdumpPage<'p>)>,
) -> Result<WriteSummary, WriteError> {
    let bs = info.page_size;
    if !bs.is_power_of_two() || !(512..=1 << 18).contains(&bs) {
        return Err(WriteError::BadPageSize(bs));
    }
    let block = u64::from(bs);
    let pages: Vec<(u64, KdumpPage<'p>)> = pages.into_iter().collect();
    let mut prev: Option<u64> = None;
    let mut used_flags = 0u32;
    let known = DUMP_DH_COMPRESSED_ZLIB | DUMP_DH_COMPRESSED_LZO | DUMP_DH_COMPRESSED_SNAPPY | DUMP_DH_COMPRESSED_ZSTD;
    for &(pfn, page) in &pages {
        if prev.is_some_and(|p| pfn <= p) {
            return Err(WriteError::Unsorted { pfn });
        }
        prev = Some(pfn);
        if pfn >= info.max_mapnr {
            return Err(WriteError::PfnBeyondMax { pfn, max_mapnr: info.max_mapnr });
        }
        match page {
            KdumpPage::Raw(d) if d.len() as u64 != block => {
                return Err(WriteError::PageLength { pfn, len: d.len() });
            }
            KdumpPage::Stored { flags, data }
                if (flags & known).count_ones() != 1
                    || flags & !known != 0
                    || data.is_empty()
                    || data.len() as u64 > block =>
            {
                return Err(WriteError::BadStoredPage { pfn, flags });
            }
            KdumpPage::Stored { flags, .. } => used_flags |= flags,
            KdumpPage::Raw(_) => {}
        }
    }

    // Layout, as makedumpfile: the notes right after the sub-header, and
    // offset_vmcoreinfo pointing at the VMCOREINFO note's descriptor.
    // (makedumpfile, refiltering, moves VMCOREINFO as if it lay inside the
    // notes; a separate copy elsewhere ends up at a garbage offset.) Only a
    // VMCOREINFO not in the notes is written after them.
    let offset_note = block + SUB_HEADER_SIZE as u64;
    let in_notes = vmcoreinfo_note(info.notes).filter(|(_, d)| info.vmcoreinfo.is_empty() || *d == info.vmcoreinfo);
    let extra: &[u8] = if in_notes.is_some() { &[] } else { info.vmcoreinfo };
    let (offset_vmcoreinfo, size_vmcoreinfo) = match in_notes {
        Some((at, d)) => (offset_note + at as u64, d.len() as u64),
        None => (offset_note + info.notes.len() as u64, extra.len() as u64),
    };
    let sub_end = offset_note + info.notes.len() as u64 + extra.len() as u64;
    let sub_hdr_size = (sub_end - block).div_ceil(block);
    let bitmap_bytes = info.max_mapnr.div_ceil(8);
    let bitmap_blocks_each = bitmap_bytes.div_ceil(block).max(1);
    let bitmap_off = (1 + sub_hdr_size) * block;
    let desc_off = bitmap_off + 2 * bitmap_blocks_each * block;
    let data_off = desc_off + pages.len() as u64 * PAGE_DESC_SIZE;
    let to_u32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);

    let mut h = vec![0u8; block as usize];
    h[..8].copy_from_slice(SIGNATURE);
    h[8..12].copy_from_slice(&6u32.to_le_bytes());
    for (i, f) in info.utsname.iter().enumerate() {
        if f.len() > 64 {
            return Err(WriteError::UtsnameTooLong(i));
        }
        let at = 12 + 65 * i;
        h[at..at + f.len()].copy_from_slice(f.as_bytes());
    }
    let fields: [(usize, u32); 10] = [
        (424, used_flags),
        (428, bs),
        (432, to_u32(sub_hdr_size)),
        (436, to_u32(2 * bitmap_blocks_each)),
        (440, to_u32(info.max_mapnr)),
        (444, to_u32(pages.len() as u64)),
        (448, 0),
        (452, 0),
        (456, 0),
        (460, info.nr_cpus),
    ];
    for (at, v) in fields {
        h[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    debug_assert!(HEADER_SIZE <= h.len());
    out.write_all(&h)?;

    let mut sub = vec![0u8; (sub_hdr_size * block) as usize];
    let q = |sub: &mut [u8], at: usize, v: u64| sub[at..at + 8].copy_from_slice(&v.to_le_bytes());
    q(&mut sub, 0, info.phys_base);
    sub[8..12].copy_from_slice(&info.dump_level.to_le_bytes());
    q(&mut sub, 16, 0);
    q(&mut sub, 24, info.max_mapnr);
    q(&mut sub, 32, if size_vmcoreinfo > 0 { offset_vmcoreinfo } else { 0 });
    q(&mut sub, 40, size_vmcoreinfo);
    q(&mut sub, 48, offset_note);
    q(&mut sub, 56, info.notes.len() as u64);
    q(&mut sub, 80, 0);
    q(&mut sub, 88, info.max_mapnr);
    q(&mut sub, 96, info.max_mapnr);
    let n_at = SUB_HEADER_SIZE;
    sub[n_at..n_at + info.notes.len()].copy_from_slice(info.notes);
    let x_at = n_at + info.notes.len();
    sub[x_at..x_at + extra.len()].copy_from_slice(extra);
    out.write_all(&sub)?;

    let mut dumped = vec![0u8; (bitmap_blocks_each * block) as usize];
    for &(pfn, _) in &pages {
        dumped[(pfn / 8) as usize] |= 1 << (pfn % 8);
    }
    let mut valid = dumped.clone();
    for &(start, end) in info.present {
        for pfn in start..end.min(info.max_mapnr) {
            valid[(pfn / 8) as usize] |= 1 << (pfn % 8);
        }
    }
    out.write_all(&valid)?;
    out.write_all(&dumped)?;

    let mut at = data_off;
    for &(_, page) in &pages {
        let (flags, len) = match page {
            KdumpPage::Raw(d) => (0u32, d.len()),
            KdumpPage::Stored { flags, data } => (flags, data.len()),
        };
        let mut d = [0u8; PAGE_DESC_SIZE as usize];
        d[0..8].copy_from_slice(&at.to_le_bytes());
        d[8..12].copy_from_slice(&(len as u32).to_le_bytes());
        d[12..16].copy_from_slice(&flags.to_le_bytes());
        out.write_all(&d)?;
        at += len as u64;
    }
    for &(_, page) in &pages {
        match page {
            KdumpPage::Raw(d) => out.write_all(d)?,
            KdumpPage::Stored { data, .. } => out.write_all(data)?,
        }
    }
    Ok(WriteSummary { bytes: at, pages: pages.len() as u64, flags: used_flags })
}

/// Offset (in `notes`) and bytes of the VMCOREINFO note's descriptor.
fn vmcoreinfo_note(notes: &[u8]) -> Option<(usize, &[u8])> {
    let n = NoteIter::new(notes, 0).map_while(Result::ok).find(|n| n.name == b"VMCOREINFO" && n.n_type == 0)?;
    // The descriptor follows the 12-byte header and the 4-aligned name.
    let at = n.offset as usize + 12 + (n.name.len() + 1).div_ceil(4) * 4;
    (notes.get(at..at + n.desc.len()) == Some(n.desc)).then_some((at, n.desc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::notes::{push_note, tests::prstatus_desc};
    use crate::dump::{Dump, DumpError, DumpFormat};
    use crate::memory::MemoryErrorKind;

    fn info<'a>(notes: &'a [u8], vi: &'a [u8]) -> KdumpWriteInfo<'a> {
        KdumpWriteInfo {
            utsname: ["Linux", "host", "6.12.0", "#1 SMP", "x86_64", "(none)"],
            page_size: 4096,
            max_mapnr: 100,
            phys_base: 0x1000000,
            nr_cpus: 1,
            dump_level: 31,
            notes,
            vmcoreinfo: vi,
            present: &[(0, 64)],
        }
    }

    fn page(seed: u8) -> Vec<u8> {
        (0..4096u32).map(|i| (i as u8).wrapping_mul(seed) ^ seed).collect()
    }

    #[test]
    fn round_trip_zlib_and_raw() {
        let mut notes = Vec::new();
        push_note(&mut notes, b"CORE", 1, &prstatus_desc(9));
        let vi = b"OSRELEASE=6.12.0\nPAGESIZE=4096\n";
        let pages: Vec<(u64, Vec<u8>)> = vec![(1, page(3)), (2, vec![0; 4096]), (70, page(5)), (99, page(7))];
        for comp in [WriteCompression::None, WriteCompression::Zlib] {
            let mut out = Vec::new();
            let s = write_kdump(&mut out, &info(&notes, vi), pages.iter().map(|(p, d)| (*p, &d[..])), comp).unwrap();
            assert_eq!(s.pages, 4);
            let mut d = Dump::open(&out).unwrap();
            let want_flags = if comp == WriteCompression::Zlib { 1 } else { 0 };
            assert!(matches!(d.format(), DumpFormat::KdumpCompressed { compression } if compression.0 == want_flags));
            assert_eq!(d.page_size(), 4096);
            assert_eq!(d.vmcoreinfo().and_then(|v| v.osrelease()), Some("6.12.0"));
            assert_eq!(d.cpus().len(), 1);
            assert_eq!(d.cpus()[0].pid, 9);
            let (h, sub) = d.kdump_headers().unwrap();
            assert_eq!(h.utsname.release(), "6.12.0");
            assert_eq!(sub.phys_base, 0x1000000);
            for (pfn, want) in &pages {
                let mut b = vec![0u8; 4096];
                d.read_phys(pfn * 4096, &mut b).unwrap();
                assert_eq!(&b, want, "pfn {pfn}");
            }
            // Present but not written: not in dump. Absent: unmapped.
            let mut b = [0u8; 8];
            assert_eq!(d.read_phys(3 * 4096 + 8, &mut b).unwrap_err().kind, MemoryErrorKind::NotInDump);
            assert_eq!(d.read_phys(3 * 4096 + 8, &mut b).unwrap_err().addr, 3 * 4096 + 8);
            assert_eq!(d.read_phys(80 * 4096, &mut b).unwrap_err().kind, MemoryErrorKind::Unmapped);
            assert_eq!(d.read_phys(100 * 4096, &mut b).unwrap_err().kind, MemoryErrorKind::Unmapped);
            // Across a page boundary into an excluded page: the error names the first missing byte.
            let mut b = [0u8; 16];
            assert_eq!(d.read_phys_detailed(3 * 4096 - 8, &mut b), Err(DumpError::NotInDump { paddr: 3 * 4096 }));
            // Across two stored pages.
            d.read_phys(2 * 4096 - 8, &mut b).unwrap();
            assert_eq!(&b[..8], &pages[0].1[4088..]);
            assert_eq!(&b[8..], &[0u8; 8]);
        }
    }

    #[test]
    fn writer_rejects_bad_input() {
        let p = page(1);
        let i = info(&[], &[]);
        let mut out = Vec::new();
        assert_eq!(
            write_kdump(&mut out, &i, [(5, &p[..]), (5, &p[..])], WriteCompression::None),
            Err(WriteError::Unsorted { pfn: 5 })
        );
        assert_eq!(
            write_kdump(&mut out, &i, [(100, &p[..])], WriteCompression::None),
            Err(WriteError::PfnBeyondMax { pfn: 100, max_mapnr: 100 })
        );
        assert_eq!(
            write_kdump(&mut out, &i, [(1, &p[..10])], WriteCompression::Zlib),
            Err(WriteError::PageLength { pfn: 1, len: 10 })
        );
        assert_eq!(
            write_kdump_pages(&mut out, &i, [(1, KdumpPage::Stored { flags: 3, data: &p[..10] })]),
            Err(WriteError::BadStoredPage { pfn: 1, flags: 3 })
        );
        let bad = KdumpWriteInfo { page_size: 1000, ..i };
        assert_eq!(write_kdump(&mut out, &bad, [], WriteCompression::None), Err(WriteError::BadPageSize(1000)));
    }
}
