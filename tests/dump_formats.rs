//! Dump readers on real QEMU/makedumpfile output.
//!
//! - `real_dumps_agree`: with `LPSTACK_TEST_DUMPS=DIR` (made by
//!   scripts/dump/make-test-dumps.sh), every format must give the ELF
//!   dump's bytes for a sample of pages. Skipped, with a message, without it.
//! - `committed_fixtures`: always runs, on tests/fixtures/dump/, small cuts
//!   of those dumps (real headers, notes and VMCOREINFO; a few pages).
//! - `regen_fixtures`: with `LPSTACK_TEST_DUMPS=DIR` and
//!   `LPSTACK_REGEN_DUMP_FIXTURES=1`, rewrites tests/fixtures/dump/.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use lpstack::arch::x86_64::Reg;
use lpstack::dump::elf::{ElfDump, ElfTail, Lookup};
use lpstack::dump::flattened::{FlattenedSource, flatten};
use lpstack::dump::kdump::{KdumpFile, PageLookup};
use lpstack::dump::source::SliceSource;
use lpstack::dump::write::{KdumpPage, KdumpWriteInfo, WriteCompression, write_kdump, write_kdump_pages};
use lpstack::dump::{Dump, DumpError, DumpFormat};
use lpstack::memory::MemoryErrorKind;

const PAGE: u64 = 4096;
const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;

/// The full-size dumps of scripts/dump/make-test-dumps.sh (GBs, not in
/// the repo); the tests that need them are `#[ignore]`d and fail when run
/// without them.
fn dumps_dir() -> PathBuf {
    let dir = std::env::var_os("LPSTACK_TEST_DUMPS")
        .map(PathBuf::from)
        .expect("set LPSTACK_TEST_DUMPS=DIR with dumps made by scripts/dump/make-test-dumps.sh DIR");
    assert!(
        dir.join("qemu.elf").exists(),
        "{}: no qemu.elf (scripts/dump/make-test-dumps.sh DIR makes it)",
        dir.display()
    );
    dir
}

fn map(path: &Path) -> memmap2::Mmap {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // SAFETY: test data is not modified while mapped.
    unsafe { memmap2::Mmap::map(&f) }.unwrap()
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dump")
}

/// Physical address of a kernel-image virtual address.
fn kernel_pa(dump: &Dump, vaddr: u64) -> u64 {
    let vi = dump.vmcoreinfo().expect("VMCOREINFO");
    let phys_base = vi.number("phys_base").expect("NUMBER(phys_base)");
    (vaddr - START_KERNEL_MAP).wrapping_add(phys_base as u64)
}

fn check_init_uts_ns(dump: &mut Dump) {
    let vi = dump.vmcoreinfo().expect("VMCOREINFO").clone();
    let sym = vi.symbol("init_uts_ns").expect("SYMBOL(init_uts_ns)");
    let name = vi.offset("uts_namespace.name").expect("OFFSET(uts_namespace.name)");
    let pa = kernel_pa(dump, sym + name);
    let mut b = [0u8; 65 * 3];
    dump.read_phys(pa, &mut b).unwrap();
    assert_eq!(&b[..6], b"Linux\0", "{:?}", dump.format());
    let rel = &b[130..130 + vi.osrelease().unwrap().len()];
    assert_eq!(rel, vi.osrelease().unwrap().as_bytes());
}

fn check_cpus(dump: &Dump, want_qemu: bool) {
    let cpus = dump.cpus();
    assert_eq!(cpus.len(), 2, "{:?}", dump.format());
    for (i, c) in cpus.iter().enumerate() {
        assert_eq!(c.pid, i as u32 + 1, "QEMU sets pr_pid = cpu_index + 1");
        assert_eq!(c.index_hint, Some(i as u32));
        for r in Reg::ALL {
            assert!(c.regs.get(r).is_some());
        }
        assert!(c.regs.cs().is_some());
        if want_qemu {
            let q = c.qemu.expect("QEMU note");
            assert_eq!(q.size, 440, "QEMU 7.2 writes kernel_gs_base");
            assert_eq!(q.regs.get(Reg::Rip), c.regs.get(Reg::Rip));
            assert_eq!(q.regs.get(Reg::Rsp), c.regs.get(Reg::Rsp));
            assert_eq!(q.regs.get(Reg::R15), c.regs.get(Reg::R15));
            assert_eq!(u64::from(q.cs().selector), c.regs.cs().unwrap());
            assert_eq!(q.rflags, c.prstatus.eflags);
            assert_eq!(q.gs().base, c.prstatus.gs_base);
            assert_eq!(c.cr3, Some(q.cr[3]));
            assert_ne!(q.cr[3], 0);
        }
    }
}

#[test]
#[ignore = "needs multi-GB dumps: LPSTACK_TEST_DUMPS=DIR from scripts/dump/make-test-dumps.sh"]
fn real_dumps_agree() {
    let dir = dumps_dir();
    let elf_map = map(&dir.join("qemu.elf"));
    let mut elf = Dump::open(&elf_map).unwrap();
    assert_eq!(elf.format(), DumpFormat::ElfQemu);
    check_cpus(&elf, true);
    check_init_uts_ns(&mut elf);
    let vi = elf.vmcoreinfo().unwrap().clone();
    eprintln!("VMCOREINFO keys: {}", vi.keys().collect::<Vec<_>>().join(" "));

    // Sample: every 7th pfn of the ELF's memory, plus the first 64 pfns.
    let segs = elf.elf().unwrap().segments().to_vec();
    let mut sample = BTreeSet::new();
    for s in &segs {
        let (first, last) = (s.paddr / PAGE, (s.paddr + s.memsz) / PAGE);
        sample.extend((first..last).step_by(7));
        sample.extend((first..last).take(64));
    }
    let pages: Vec<(u64, Vec<u8>)> = sample
        .iter()
        .map(|&pfn| {
            let mut b = vec![0u8; PAGE as usize];
            elf.read_phys(pfn * PAGE, &mut b).unwrap();
            (pfn, b)
        })
        .collect();

    // (file, format, pages may be excluded)
    type IsFormat = fn(DumpFormat) -> bool;
    let others: [(&str, IsFormat, bool); 9] = [
        ("qemu-paging.elf", |f| f == DumpFormat::ElfQemu, false),
        ("qemu-zlib.kdump", |f| matches!(f, DumpFormat::Flattened { compression } if compression.zlib()), false),
        ("qemu-lzo.kdump", |f| matches!(f, DumpFormat::Flattened { compression } if compression.lzo()), false),
        ("qemu-snappy.kdump", |f| matches!(f, DumpFormat::Flattened { compression } if compression.snappy()), false),
        (
            "mdf-zlib-d0.kdump",
            |f| matches!(f, DumpFormat::KdumpCompressed { compression } if compression.zlib()),
            false,
        ),
        ("mdf-lzo-d31.kdump", |f| matches!(f, DumpFormat::KdumpCompressed { compression } if compression.lzo()), true),
        ("mdf-raw-d31.kdump", |f| matches!(f, DumpFormat::KdumpCompressed { compression } if compression.0 == 0), true),
        ("mdf-zlib-d31.flat", |f| matches!(f, DumpFormat::Flattened { compression } if compression.zlib()), true),
        // makedumpfile -c -d 31 run on our writer's output (see the script).
        ("ours-refilt.kdump", |f| matches!(f, DumpFormat::KdumpCompressed { compression } if compression.zlib()), true),
    ];
    let mut checked = 0;
    for (name, is_format, excluded_ok) in others {
        let path = dir.join(name);
        if !path.exists() {
            eprintln!("{name}: not there (QEMU/makedumpfile built without it), skipped");
            continue;
        }
        let m = map(&path);
        let mut d = Dump::open(&m).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(is_format(d.format()), "{name}: {:?}", d.format());
        assert_eq!(d.page_size(), PAGE);
        assert_eq!(d.vmcoreinfo(), Some(&vi), "{name}: same VMCOREINFO");
        check_cpus(&d, true);
        for (a, b) in d.cpus().iter().zip(elf.cpus()) {
            assert_eq!(a.regs, b.regs, "{name}");
        }
        check_init_uts_ns(&mut d);
        let max_pfn = d.kdump_headers().map_or(u64::MAX, |(_, s)| s.max_mapnr_64);
        let (mut same, mut excluded, mut beyond) = (0, 0, 0);
        let mut b = vec![0u8; PAGE as usize];
        for (pfn, want) in &pages {
            match d.read_phys(pfn * PAGE, &mut b) {
                Ok(()) => {
                    assert!(b == *want, "{name}: pfn {pfn:#x} differs");
                    same += 1;
                }
                Err(e) if e.kind == MemoryErrorKind::NotInDump && excluded_ok => excluded += 1,
                // makedumpfile's max_mapnr stops at the end of RAM (QEMU's
                // ELF also has the VGA/BIOS ranges near 4 GiB).
                Err(e) if e.kind == MemoryErrorKind::Unmapped && *pfn >= max_pfn => beyond += 1,
                // With paging, QEMU writes only what the page tables map.
                Err(e) if e.kind == MemoryErrorKind::Unmapped && name == "qemu-paging.elf" => beyond += 1,
                Err(e) => panic!("{name}: pfn {pfn:#x}: {e}"),
            }
        }
        eprintln!(
            "{name}: {:?}: {same} pages equal, {excluded} excluded, {beyond} past max_mapnr or unmapped by paging",
            d.format()
        );
        assert!(same > 1000, "{name}");
        if excluded_ok {
            assert!(excluded > 0, "{name}: -d 31 excludes pages");
        }
        if let Some((h, sub)) = d.kdump_headers() {
            let phys_base = vi.number("phys_base").unwrap();
            eprintln!(
                "{name}: header_version {} status {:#x} sub phys_base {:#x} (VMCOREINFO {phys_base} = {:#x}), dump_level {}",
                h.header_version, h.status, sub.phys_base, phys_base as u64, sub.dump_level
            );
        }
        if let Some(f) = d.flattened() {
            eprintln!("{name}: {} records, {} bytes overridden", f.records(), f.overridden_bytes());
        }
        checked += 1;
    }
    assert!(checked >= 5);

    // -E -d 31: excluded pages are p_filesz < p_memsz tails.
    let path = dir.join("mdf-d31.elf");
    if path.exists() {
        let m = map(&path);
        let mut d = Dump::open(&m).unwrap();
        let raw_map = map(&dir.join("mdf-raw-d31.kdump"));
        let mut raw = Dump::open(&raw_map).unwrap();
        let (mut tails, mut equal) = (0, 0);
        let mut b = vec![0u8; PAGE as usize];
        for (pfn, want) in &pages {
            let in_kdump = raw.read_phys(pfn * PAGE, &mut b);
            match d.elf().unwrap().lookup_phys(pfn * PAGE) {
                Lookup::Data(_) => {
                    d.read_phys(pfn * PAGE, &mut b).unwrap();
                    assert!(b == *want);
                    equal += 1;
                }
                Lookup::Tail(_) => {
                    match in_kdump {
                        // (the kdump file stops at the end of RAM: Unmapped there)
                        Err(e) => assert_ne!(e.kind, MemoryErrorKind::Backend, "pfn {pfn:#x}"),
                        // makedumpfile -E also drops zero pages into tails
                        // when they were kept in the kdump file.
                        Ok(()) => assert!(want.iter().all(|&x| x == 0), "pfn {pfn:#x} is a tail but not zero"),
                    }
                    tails += 1;
                }
                Lookup::Unmapped => assert!(in_kdump.is_err()),
            }
        }
        eprintln!("mdf-d31.elf: {equal} pages equal, {tails} excluded pages are zero tails");
        assert!(tails > 0);
        d.set_elf_tail_policy(ElfTail::NotInDump);
        let tail_pfn =
            pages.iter().map(|p| p.0).find(|pfn| matches!(d.elf().unwrap().lookup_phys(pfn * PAGE), Lookup::Tail(_)));
        if let Some(pfn) = tail_pfn {
            assert_eq!(d.read_phys(pfn * PAGE, &mut b).unwrap_err().kind, MemoryErrorKind::NotInDump);
        }
    }

    // With paging, p_vaddr holds virtual addresses: read the kernel through them.
    let pm = map(&dir.join("qemu-paging.elf"));
    let mut paging = Dump::open(&pm).unwrap();
    assert!(paging.elf().unwrap().has_vaddrs());
    let stext = vi.symbol("_stext").unwrap();
    let mut v = vec![0u8; 256];
    paging.read_virt_direct(stext, &mut v).expect("a segment maps _stext").unwrap();
    let mut p = vec![0u8; 256];
    elf.read_phys(kernel_pa(&elf, stext), &mut p).unwrap();
    assert_eq!(v, p, "virtual and physical views of _stext agree");
    assert!(elf.read_virt_direct(stext, &mut v).is_none(), "paging=false ELF has p_vaddr = 0");

    // Our writer: the whole ELF as one kdump file, read back.
    // Only RAM (the guest has 128 MiB; QEMU's ELF also holds device ranges
    // near 4 GiB), as makedumpfile keeps it: makedumpfile 1.7.2 fails to
    // refilter a file whose max_mapnr runs past the kernel's mem_map.
    let ram_end = (128u64 << 20) / PAGE;
    let mut all = Vec::new();
    for s in segs.iter().filter(|s| s.paddr / PAGE < ram_end) {
        for pfn in s.paddr / PAGE..(s.paddr + s.memsz) / PAGE {
            let mut b = vec![0u8; PAGE as usize];
            elf.read_phys(pfn * PAGE, &mut b).unwrap();
            all.push((pfn, b));
        }
    }
    let notes = raw_notes(&elf_map);
    let info = KdumpWriteInfo {
        utsname: ["Linux", "(none)", vi.osrelease().unwrap(), "", "x86_64", "(none)"],
        page_size: PAGE as u32,
        max_mapnr: all.last().unwrap().0 + 1,
        phys_base: vi.number("phys_base").unwrap() as u64,
        nr_cpus: 2,
        dump_level: 0,
        notes: &notes,
        vmcoreinfo: vi.text().as_bytes(),
        present: &[],
    };
    let mut out = Vec::new();
    write_kdump(&mut out, &info, all.iter().map(|(p, b)| (*p, &b[..])), WriteCompression::Zlib).unwrap();
    if let Ok(to) = std::env::var("LPSTACK_WRITE_KDUMP_TO") {
        std::fs::write(&to, &out).unwrap();
        eprintln!("wrote {to} ({} bytes)", out.len());
    }
    let mut ours = Dump::open(&out).unwrap();
    check_cpus(&ours, true);
    check_init_uts_ns(&mut ours);
    let mut b = vec![0u8; PAGE as usize];
    for (pfn, want) in &pages {
        if *pfn >= ram_end {
            assert_eq!(ours.read_phys(pfn * PAGE, &mut b).unwrap_err().kind, MemoryErrorKind::Unmapped);
            continue;
        }
        ours.read_phys(pfn * PAGE, &mut b).unwrap();
        assert!(b == *want, "writer round trip: pfn {pfn:#x}");
    }
}

/// The PT_NOTE bytes of an ELF dump.
fn raw_notes(elf: &[u8]) -> Vec<u8> {
    let e = ElfDump::parse(elf).unwrap();
    let mut out = Vec::new();
    // Notes are contiguous in QEMU's dump: rebuild them from the iterator.
    for n in e.notes() {
        let n = n.unwrap();
        lpstack::dump::notes::push_note(&mut out, n.name, n.n_type, n.desc);
    }
    out
}

/// Pfns kept in the fixtures: the first 16, four pages of kernel text from
/// _stext, and the pages holding init_uts_ns, the top page table, prb and
/// node_data.
fn fixture_pfns(dump: &Dump) -> Vec<u64> {
    let vi = dump.vmcoreinfo().unwrap();
    let mut set: BTreeSet<u64> = (0..16).collect();
    let stext = kernel_pa(dump, vi.symbol("_stext").unwrap()) / PAGE;
    set.extend(stext..stext + 4);
    for sym in ["init_uts_ns", "init_top_pgt", "prb", "node_data"] {
        set.insert(kernel_pa(dump, vi.symbol(sym).unwrap()) / PAGE);
    }
    set.into_iter().collect()
}

/// Compression flags of the stored pages among `pfns`.
fn stored_flags<'d, S: lpstack::dump::source::ByteSource<'d>>(k: &KdumpFile<'d, S>, pfns: &[u64]) -> u32 {
    pfns.iter()
        .filter_map(|&p| match k.lookup(p) {
            Ok(PageLookup::Stored { desc, .. }) => Some(desc.flags),
            _ => None,
        })
        .fold(0, |a, f| a | f)
}

/// (start, end) pfn runs that a kdump file says exist.
fn present_runs<'d, S: lpstack::dump::source::ByteSource<'d>>(k: &KdumpFile<'d, S>) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for pfn in 0..k.max_mapnr() {
        if k.lookup(pfn).unwrap() != PageLookup::Unmapped {
            match runs.last_mut() {
                Some(r) if r.1 == pfn => r.1 += 1,
                _ => runs.push((pfn, pfn + 1)),
            }
        }
    }
    runs
}

/// Cuts a kdump file down to `pfns`, copying the stored (compressed) bytes.
fn cut_kdump<'d, S: lpstack::dump::source::ByteSource<'d>>(k: &KdumpFile<'d, S>, pfns: &[u64]) -> Vec<u8> {
    let h = k.header();
    let mut kept = Vec::new();
    for &pfn in pfns {
        if let PageLookup::Stored { desc, .. } = k.lookup(pfn).unwrap() {
            let data = k.source().range(desc.offset, u64::from(desc.size)).unwrap().into_owned();
            kept.push((pfn, desc.flags, data));
        }
    }
    let runs = present_runs(k);
    let u = &h.utsname;
    let info = KdumpWriteInfo {
        utsname: [u.sysname(), u.nodename(), u.release(), u.version(), u.machine(), u.domainname()],
        page_size: h.block_size,
        max_mapnr: k.max_mapnr(),
        phys_base: k.sub_header().phys_base,
        nr_cpus: h.nr_cpus,
        dump_level: k.sub_header().dump_level,
        notes: k.notes_bytes(),
        vmcoreinfo: k.vmcoreinfo_bytes().unwrap_or_default(),
        present: &runs,
    };
    let mut out = Vec::new();
    write_kdump_pages(
        &mut out,
        &info,
        kept.iter().map(|(pfn, flags, data)| {
            (*pfn, if *flags == 0 { KdumpPage::Raw(data) } else { KdumpPage::Stored { flags: *flags, data } })
        }),
    )
    .unwrap();
    out
}

/// A trimmed ELF: the real notes, and one PT_LOAD per run of kept pages.
fn cut_elf(elf: &Dump, data: &[u8], pfns: &[u64]) -> Vec<u8> {
    let notes = raw_notes(data);
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &p in pfns {
        match runs.last_mut() {
            Some(r) if r.1 == p => r.1 += 1,
            _ => runs.push((p, p + 1)),
        }
    }
    let phnum = 1 + runs.len();
    let mut out = data[..64].to_vec();
    out[0x20..0x28].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    out[0x28..0x30].fill(0); // no section headers
    out[0x3c..0x40].fill(0);
    out[0x38..0x3a].copy_from_slice(&(phnum as u16).to_le_bytes());
    let mut at = (64 + 56 * phnum) as u64;
    let ph = |out: &mut Vec<u8>, p_type: u32, off: u64, paddr: u64, size: u64| {
        let mut p = [0u8; 56];
        p[0..4].copy_from_slice(&p_type.to_le_bytes());
        p[8..16].copy_from_slice(&off.to_le_bytes());
        p[24..32].copy_from_slice(&paddr.to_le_bytes());
        p[32..40].copy_from_slice(&size.to_le_bytes());
        p[40..48].copy_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&p);
    };
    ph(&mut out, 4, at, 0, notes.len() as u64);
    at += notes.len() as u64;
    for &(s, e) in &runs {
        ph(&mut out, 1, at, s * PAGE, (e - s) * PAGE);
        at += (e - s) * PAGE;
    }
    out.extend_from_slice(&notes);
    let e = elf.elf().unwrap();
    for &(s, end) in &runs {
        for pfn in s..end {
            match e.lookup_phys(pfn * PAGE) {
                Lookup::Data(d) => out.extend_from_slice(&d[..PAGE as usize]),
                _ => panic!("pfn {pfn:#x} not in the ELF"),
            }
        }
    }
    out
}

#[test]
#[ignore = "rewrites tests/fixtures/dump from LPSTACK_TEST_DUMPS=DIR (scripts/dump/make-test-dumps.sh)"]
fn regen_fixtures() {
    let dir = dumps_dir();
    let out_dir = fixtures_dir();
    std::fs::create_dir_all(&out_dir).unwrap();
    let elf_map = map(&dir.join("qemu.elf"));
    let elf = Dump::open(&elf_map).unwrap();
    let pfns = fixture_pfns(&elf);
    std::fs::write(out_dir.join("qemu-cut.elf"), cut_elf(&elf, &elf_map, &pfns)).unwrap();

    let qz = map(&dir.join("qemu-zlib.kdump"));
    let k = KdumpFile::parse(FlattenedSource::parse(&qz).unwrap()).unwrap();
    let cut = cut_kdump(&k, &pfns);
    // Keep QEMU's flattened form: split the cut file into records at odd
    // offsets and store them out of order.
    let mut records: Vec<(u64, &[u8])> = Vec::new();
    let mut at = 0usize;
    for (i, n) in [464usize, 1000, 3000, 5003, 777].iter().cycle().enumerate() {
        if at >= cut.len() {
            break;
        }
        let end = (at + n).min(cut.len());
        records.push((at as u64, &cut[at..end]));
        at = end;
        if i == 3 {
            records.swap(1, 3);
        }
    }
    std::fs::write(out_dir.join("qemu-zlib-cut.flat"), flatten(records)).unwrap();

    let ml = map(&dir.join("mdf-lzo-d31.kdump"));
    let k = KdumpFile::parse(SliceSource(&ml)).unwrap();
    std::fs::write(out_dir.join("mdf-lzo-d31-cut.kdump"), cut_kdump(&k, &pfns)).unwrap();

    // Expected bytes of the kept pages: a checksum per page from the full ELF.
    let mut sums = String::new();
    let mut e = Dump::open(&elf_map).unwrap();
    for &pfn in &pfns {
        let mut b = vec![0u8; PAGE as usize];
        e.read_phys(pfn * PAGE, &mut b).unwrap();
        sums.push_str(&format!("{pfn:#x} {:016x}\n", fnv1a(&b)));
    }
    std::fs::write(out_dir.join("pages.txt"), sums).unwrap();
    eprintln!("regen_fixtures: wrote {}", out_dir.display());
}

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3))
}

#[test]
fn committed_fixtures() {
    let dir = fixtures_dir();
    let pages: Vec<(u64, u64)> = std::fs::read_to_string(dir.join("pages.txt"))
        .unwrap()
        .lines()
        .map(|l| {
            let (p, s) = l.split_once(' ').unwrap();
            (u64::from_str_radix(&p[2..], 16).unwrap(), u64::from_str_radix(s, 16).unwrap())
        })
        .collect();
    assert!(pages.len() >= 17);
    let mut releases = Vec::new();
    for (name, want) in
        [("qemu-cut.elf", "ElfQemu"), ("qemu-zlib-cut.flat", "Flattened"), ("mdf-lzo-d31-cut.kdump", "KdumpCompressed")]
    {
        let data = std::fs::read(dir.join(name)).unwrap();
        let mut d = Dump::open(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(format!("{:?}", d.format()).starts_with(want), "{name}: {:?}", d.format());
        check_cpus(&d, true);
        check_init_uts_ns(&mut d);
        let vi = d.vmcoreinfo().unwrap();
        releases.push(vi.osrelease().unwrap().to_owned());
        assert_eq!(vi.number("pgtable_l5_enabled"), Some(1), "TCG -cpu max has LA57");
        assert!(vi.number("phys_base").unwrap() < 0, "{name}: phys_base is negative here");
        assert!(vi.kerneloffset().is_some());
        let mut b = vec![0u8; PAGE as usize];
        for &(pfn, sum) in &pages {
            match d.read_phys(pfn * PAGE, &mut b) {
                Ok(()) => assert_eq!(fnv1a(&b), sum, "{name}: pfn {pfn:#x}"),
                // -d 31 excluded some of the kept pages (zero pages among them).
                Err(e) if name.contains("d31") && e.kind == MemoryErrorKind::NotInDump => {}
                Err(e) => panic!("{name}: pfn {pfn:#x}: {e}"),
            }
        }
        // A page that exists but was cut away.
        let cut_pfn = 0x20;
        let r = d.read_phys_detailed(cut_pfn * PAGE, &mut b);
        match d.format() {
            DumpFormat::ElfQemu => assert_eq!(r, Err(DumpError::Unmapped { paddr: cut_pfn * PAGE })),
            _ => assert_eq!(r, Err(DumpError::NotInDump { paddr: cut_pfn * PAGE })),
        }
        // Past the end of memory.
        assert_eq!(d.read_phys(1 << 40, &mut b).unwrap_err().kind, MemoryErrorKind::Unmapped);
    }
    assert!(releases.iter().all(|r| r == "6.12.117+deb12-amd64"));

    // The real compressed pages are there (zlib from QEMU, lzo from makedumpfile).
    let pfns: Vec<u64> = pages.iter().map(|p| p.0).collect();
    let flat = std::fs::read(dir.join("qemu-zlib-cut.flat")).unwrap();
    let k = KdumpFile::parse(FlattenedSource::parse(&flat).unwrap()).unwrap();
    assert_eq!(stored_flags(&k, &pfns) & 0x27, 0x1);
    assert_eq!(k.sub_header().phys_base, 0xfffffffaaeaaf68a, "QEMU 7.2's hex-parsed phys_base");
    let lzo = std::fs::read(dir.join("mdf-lzo-d31-cut.kdump")).unwrap();
    let k = KdumpFile::parse(SliceSource(&lzo)).unwrap();
    assert_eq!(stored_flags(&k, &pfns) & 0x27, 0x2);
    assert_eq!(k.sub_header().phys_base as i64, -551550976);
}

#[test]
fn committed_fixtures_survive_truncation() {
    let dir = fixtures_dir();
    for name in ["qemu-cut.elf", "qemu-zlib-cut.flat", "mdf-lzo-d31-cut.kdump"] {
        let data = std::fs::read(dir.join(name)).unwrap();
        let step = (data.len() / 3000).max(1);
        for n in (0..data.len()).step_by(step) {
            if let Ok(mut d) = Dump::open(&data[..n]) {
                let mut b = vec![0u8; PAGE as usize];
                for pfn in 0..20 {
                    let _ = d.read_phys(pfn * PAGE, &mut b);
                }
            }
        }
        // Flipped bytes in the header and descriptors: errors, no panic.
        for at in (0..data.len().min(64 * 1024)).step_by(97) {
            let mut bad = data.clone();
            bad[at] ^= 0xa5;
            if let Ok(mut d) = Dump::open(&bad) {
                let mut b = vec![0u8; PAGE as usize];
                for pfn in [0u64, 1, 5, 15, 0x20] {
                    let _ = d.read_phys(pfn * PAGE, &mut b);
                }
            }
        }
    }
}

/// Every LZO1X page makedumpfile wrote into the committed dump decodes to
/// the same page with lpstack's decoder as with the `lzo` crate's.
#[test]
fn real_lzo_pages_decode_as_the_lzo_crate_decodes_them() {
    let data = std::fs::read(fixtures_dir().join("mdf-lzo-d31-cut.kdump")).unwrap();
    let k = KdumpFile::parse(SliceSource(&data)).unwrap();
    let (mut ours, mut theirs) = (vec![0u8; 4096], vec![0u8; 4096]);
    let mut pages = 0;
    for pfn in 0..k.max_mapnr() {
        let Ok(lpstack::dump::kdump::PageLookup::Stored { desc, .. }) = k.lookup(pfn) else { continue };
        if desc.flags & 2 == 0 {
            continue;
        }
        let block = &data[desc.offset as usize..desc.offset as usize + desc.size as usize];
        assert_eq!(lpstack::dump::lzo::decompress_into(block, &mut ours), Ok(4096), "pfn {pfn:#x}");
        assert_eq!(lzo::decompress_into(block, &mut theirs), Ok(4096), "pfn {pfn:#x}");
        assert!(ours == theirs, "pfn {pfn:#x} decodes differently");
        pages += 1;
    }
    assert!(pages >= 10, "only {pages} lzo pages in the fixture");
}
