//! Claimed sizes, counts and depths are bounded by what the input holds: a
//! small file claiming gigabytes fails fast, with a named error, and
//! without allocating in proportion to the claim. A counting allocator
//! records the largest single allocation made by the test's own thread.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use lpstack::cfi::CfiTable;
use lpstack::dump::Dump;
use lpstack::dump::elf::{ElfDump, ElfError};
use lpstack::dump::flattened::{FlatError, FlattenedSource};
use lpstack::dump::kdump::{KdumpError, KdumpFile};
use lpstack::dump::notes::{NoteError, NoteIter};
use lpstack::dump::source::SliceSource;
use lpstack::kernel::btf::{Btf, BtfError};
use lpstack::kernel::kallsyms::{KallsymsLocation, KnownSymbol, read_kallsyms};
use lpstack::memory::{SliceMemory, read_vec};
use lpstack::process::core::parse_nt_file;

struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only records sizes.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(layout.size())));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(layout.size())));
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(new_size)));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// Runs `f`; fails if it took over a second or made any single allocation
/// above `limit` bytes.
fn bounded<T>(what: &str, limit: usize, f: impl FnOnce() -> T) -> T {
    LARGEST.with(|l| l.set(0));
    let t = Instant::now();
    let out = f();
    let took = t.elapsed();
    let largest = LARGEST.with(Cell::get);
    assert!(took < Duration::from_secs(1), "{what}: took {took:?}");
    assert!(largest <= limit, "{what}: allocated {largest} bytes at once (limit {limit})");
    out
}

const KB: usize = 1024;
const GB4: u64 = 0xffff_fff0;

fn put(b: &mut [u8], at: usize, v: &[u8]) {
    b[at..at + v.len()].copy_from_slice(v);
}

/// A 1 KB ELF core: header, one PT_NOTE and one PT_LOAD.
fn small_elf() -> Vec<u8> {
    let mut b = vec![0u8; KB];
    put(&mut b, 0, b"\x7fELF\x02\x01\x01");
    put(&mut b, 0x10, &4u16.to_le_bytes()); // ET_CORE
    put(&mut b, 0x12, &62u16.to_le_bytes());
    put(&mut b, 0x20, &64u64.to_le_bytes()); // phoff
    put(&mut b, 0x36, &56u16.to_le_bytes());
    put(&mut b, 0x38, &2u16.to_le_bytes());
    // PT_NOTE at 512, 64 bytes; PT_LOAD of 256 bytes at 768.
    let ph = |b: &mut Vec<u8>, at: usize, ty: u32, off: u64, paddr: u64, size: u64| {
        put(b, at, &ty.to_le_bytes());
        put(b, at + 8, &off.to_le_bytes());
        put(b, at + 24, &paddr.to_le_bytes());
        put(b, at + 32, &size.to_le_bytes());
        put(b, at + 40, &size.to_le_bytes());
    };
    ph(&mut b, 64, 4, 512, 0, 64);
    ph(&mut b, 120, 1, 768, 0x1000, 256);
    b
}

#[test]
fn elf_vmcore_claims() {
    let ok = small_elf();
    assert!(ElfDump::parse(&ok).is_ok());
    // A PT_LOAD claiming 4 GB of file data.
    let mut b = ok.clone();
    put(&mut b, 120 + 32, &GB4.to_le_bytes());
    put(&mut b, 120 + 40, &GB4.to_le_bytes());
    let e = bounded("elf filesz", 64 * KB, || ElfDump::parse(&b)).unwrap_err();
    assert!(matches!(e, ElfError::SegmentOutOfFile { index: 1, filesz: GB4, .. }), "{e}");
    assert!(e.to_string().contains("768") || e.to_string().contains("0x300"), "names the offset: {e}");
    // PN_XNUM with 4 G program headers in shdr[0].sh_info.
    let mut b = ok.clone();
    put(&mut b, 0x38, &0xffffu16.to_le_bytes());
    put(&mut b, 0x28, &256u64.to_le_bytes()); // shoff
    put(&mut b, 256 + 0x2c, &u32::MAX.to_le_bytes());
    let e = bounded("elf xnum", 64 * KB, || ElfDump::parse(&b)).unwrap_err();
    assert!(matches!(e, ElfError::TruncatedPhdrs { phnum: u32::MAX, .. }), "{e}");
    // A 4 GB memsz beyond the file is fine (zero-filled or not in dump),
    // and reading it allocates nothing in proportion.
    let mut b = ok.clone();
    put(&mut b, 120 + 40, &GB4.to_le_bytes());
    let mut d = bounded("elf memsz", 256 * KB, || Dump::open(&b)).unwrap();
    let mut page = [0u8; 64];
    bounded("elf read past filesz", 256 * KB, || {
        let _ = d.read_phys(0x1000 + 0x8000_0000, &mut page);
    });
}

#[test]
fn elf_vmcore_page_size_claim_is_bounded() {
    // VMCOREINFO claiming 1 TB pages: the dump keeps a sane page size.
    let mut b = small_elf();
    let text = b"PAGESIZE=1099511627776\nOSRELEASE=6.12\n";
    let mut note = Vec::new();
    lpstack::dump::notes::push_note(&mut note, b"VMCOREINFO", 0, text);
    put(&mut b, 512, &note);
    put(&mut b, 64 + 32, &(note.len() as u64).to_le_bytes());
    let d = bounded("elf pagesize", 256 * KB, || Dump::open(&b)).unwrap();
    assert_eq!(d.vmcoreinfo().and_then(|v| v.page_size()), Some(1 << 40), "the claim is read");
    assert_eq!(d.page_size(), 4096, "but not believed");
}

#[test]
fn notes_claims() {
    let mut b = vec![0u8; KB];
    put(&mut b, 0, &5u32.to_le_bytes());
    put(&mut b, 4, &u32::MAX.to_le_bytes()); // descsz
    put(&mut b, 8, &1u32.to_le_bytes());
    let r: Vec<_> = bounded("note descsz", 4 * KB, || NoteIter::new(&b, 0x200).collect());
    assert!(matches!(r[..], [Err(NoteError::TruncatedBody { offset: 0x200, descsz: u32::MAX, .. })]), "{r:?}");
}

#[test]
fn kdump_claims() {
    // A kdump header in 1 KB claiming 4 G bitmap blocks and 2^40 pfns.
    let mut b = vec![0u8; 8 * KB];
    put(&mut b, 0, b"KDUMP   ");
    put(&mut b, 8, &6u32.to_le_bytes());
    put(&mut b, 428, &4096u32.to_le_bytes());
    put(&mut b, 432, &1u32.to_le_bytes());
    put(&mut b, 436, &0xffff_fffeu32.to_le_bytes());
    put(&mut b, 440, &u32::MAX.to_le_bytes());
    put(&mut b, 460, &1u32.to_le_bytes());
    put(&mut b, 4096 + 96, &(1u64 << 40).to_le_bytes());
    let e = bounded("kdump bitmap", 64 * KB, || KdumpFile::parse(SliceSource(&b[..KB]))).unwrap_err();
    assert!(matches!(e, KdumpError::Read { what: "kdump_sub_header", .. } | KdumpError::BadRange { .. }), "{e}");
    let e = bounded("kdump bitmap", 64 * KB, || KdumpFile::parse(SliceSource(&b))).unwrap_err();
    assert!(matches!(e, KdumpError::BadRange { what: "1st bitmap", .. }), "{e}");
}

#[test]
fn flattened_claims() {
    let mut b = vec![0u8; 4096 + 64];
    put(&mut b, 0, b"makedumpfile");
    put(&mut b, 16, &1u64.to_be_bytes());
    put(&mut b, 24, &1u64.to_be_bytes());
    put(&mut b, 4096, &0u64.to_be_bytes());
    put(&mut b, 4104, &GB4.to_be_bytes());
    let e = bounded("flattened record", 64 * KB, || FlattenedSource::parse(&b)).unwrap_err();
    assert!(matches!(e, FlatError::TruncatedRecordData { at: 4096, size: GB4, .. }), "{e}");
    // Many empty records, each 16 bytes of input: linear, no allocation.
    let mut many = b[..4096].to_vec();
    for _ in 0..10_000 {
        many.extend_from_slice(&[0u8; 16]);
    }
    many.extend_from_slice(&[0xff; 16]);
    let f = bounded("flattened empty records", 64 * KB, || FlattenedSource::parse(&many)).unwrap();
    assert_eq!(f.records(), 10_000);
}

#[test]
fn btf_claims() {
    let mut b = vec![0u8; KB];
    put(&mut b, 0, &0xeb9fu16.to_le_bytes());
    b[2] = 1;
    put(&mut b, 4, &24u32.to_le_bytes());
    put(&mut b, 12, &(GB4 as u32).to_le_bytes()); // type_len
    let e = bounded("btf type_len", 4 * KB, || Btf::parse(&b)).unwrap_err();
    assert!(matches!(e, BtfError::SectionOutOfBounds { len, .. } if len == GB4 as u32), "{e}");
    // A type claiming 65535 members in a 1 KB blob.
    put(&mut b, 12, &16u32.to_le_bytes());
    put(&mut b, 16, &16u32.to_le_bytes());
    put(&mut b, 20, &8u32.to_le_bytes());
    put(&mut b, 24 + 4, &((4u32 << 24) | 0xffff).to_le_bytes()); // STRUCT, vlen 65535
    let e = bounded("btf vlen", 4 * KB, || Btf::parse(&b)).unwrap_err();
    assert!(matches!(e, BtfError::TruncatedType { offset: 0, .. }), "{e}");
}

#[test]
fn kallsyms_count_claim() {
    // num_syms claims 8 million symbols in a 1 KB image: the names run out
    // long before, and the table is not sized by the claim.
    let base = 0xffffffff82000000u64;
    let mut img = vec![0u8; KB];
    put(&mut img, 0, &7_999_999u32.to_le_bytes());
    for i in 0..256u16 {
        put(&mut img, 64 + 2 * i as usize, &0u16.to_le_bytes());
    }
    put(&mut img, 600, b"a\0");
    // Names: "\x02" "ta" repeated to the end of the image.
    for at in (640..KB - 3).step_by(3) {
        put(&mut img, at, &[2, b'a', b'a']);
    }
    let loc = KallsymsLocation {
        num_syms: base,
        names: base + 640,
        token_table: base + 600,
        token_index: base + 64,
        offsets: Some(base + 16),
        relative_base: Some(base + 8),
        addresses: None,
    };
    let e = bounded("kallsyms num_syms", 256 * KB, || {
        read_kallsyms(&mut SliceMemory::new(base, &img), &loc, &[KnownSymbol { name: "_stext", address: base }])
    })
    .unwrap_err();
    assert!(e.to_string().contains("0xffffffff820"), "names the address: {e}");
}

#[test]
fn core_file_note_count_claim() {
    // NT_FILE claiming 2^40 mappings in 64 bytes.
    let mut d = vec![0u8; 64];
    put(&mut d, 0, &(1u64 << 40).to_le_bytes());
    put(&mut d, 8, &4096u64.to_le_bytes());
    let e = bounded("NT_FILE count", 4 * KB, || parse_nt_file(&d, 0x3a0)).unwrap_err();
    assert!(e.to_string().contains("0x3a0") || e.to_string().contains("928"), "names the note: {e}");
}

#[test]
fn cfi_length_claims() {
    // An .eh_frame whose CIE claims 4 GB (and one with a 64-bit length).
    for cie in
        [&[0xf0u8, 0xff, 0xff, 0xff, 0, 0, 0, 0][..], &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0]]
    {
        let mut cfi = cie.to_vec();
        cfi.resize(KB, 0);
        let elf = common::elf_with_cfi(&cfi, false, 0x2000, 0x1000, 0x100);
        let r = bounded("eh_frame length", 64 * KB, || CfiTable::from_elf(&elf));
        match r {
            Err(e) => assert!(e.to_string().contains(".eh_frame"), "{e}"),
            Ok(t) => assert!(t.is_empty(), "FDEs from a CIE cut short: {:?}", t.compile_rows().map(|r| r.len())),
        }
    }
}

#[test]
fn orc_sections_claim_4gb() {
    // A module whose .orc_unwind section header claims 4 GB of file data.
    let ko = std::fs::read(common::fixture("vmcore/6.12.117+deb12-amd64/lpstack_park.ko")).unwrap();
    use object::{Object, ObjectSection};
    let f = object::File::parse(&*ko).unwrap();
    let idx = f.section_by_name(".orc_unwind").unwrap().index().0;
    let shoff = u64::from_le_bytes(ko[0x28..0x30].try_into().unwrap()) as usize;
    let mut b = ko.clone();
    put(&mut b, shoff + idx * 64 + 32, &GB4.to_le_bytes()); // sh_size
    let e = bounded(".orc_unwind size", 64 * KB, || lpstack::orc::elf::module_entries(&b)).unwrap_err();
    assert!(!e.to_string().is_empty());
}

#[test]
fn memory_reads_grow_with_what_is_there() {
    // A dump's module claims 4 million ORC entries (16 MB of ip table), and
    // one page of it is present: the error comes after one page, not after
    // a 16 MB buffer.
    let base = 0xffffffffc0000000u64;
    let page = vec![0x5au8; 4096];
    let e = bounded("read_vec over absent memory", 128 * KB, || {
        read_vec(&mut SliceMemory::new(base, &page), base, 4_000_000 * 4)
    })
    .unwrap_err();
    assert_eq!(e.addr, base + 4096, "{e}");
    // Present memory reads as before.
    let v = read_vec(&mut SliceMemory::new(base, &page), base + 8, 4000).unwrap();
    assert_eq!(v, page[8..4008]);
}
