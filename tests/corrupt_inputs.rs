//! The corrupt-input cases the other suites do not cover (issue 6): every
//! format truncated at many offsets, flipped bytes in every header,
//! overlapping ORC tables, cyclic stacks and sp going backwards under the
//! CFI walker, stack pointers outside every mapping of a real dump, and the
//! wrong vmlinux or System.map for a dump. Each gives a named error or an
//! "unreliable" verdict; none panics or turns into "switchable".
//!
//! Already covered elsewhere: a truncated and header-flipped kdump of a
//! real kernel, missing stack pages, a looping task list, a System.map of
//! another kernel (tests/vmcore_bad_input.rs); unsorted and corrupt ORC
//! tables (src/orc/table.rs); ORC cycles, sp going backwards, unreadable
//! memory (src/walk/tests.rs); corrupt .eh_frame and an unmapped rsp in a
//! live process (tests/cfi_bad_input.rs); truncated notes
//! (src/dump/notes.rs); kdump header claims (src/dump/kdump.rs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Read;

use lpstack::arch::x86_64::{Reg, Regs};
use lpstack::cfi::{CfiCache, CfiTable};
use lpstack::dump::{Dump, VmcoreInfo};
use lpstack::kernel::btf::Btf;
use lpstack::kernel::check::CheckConfig;
use lpstack::kernel::image::{Kernel, KernelError, OpenOptions, SymbolSource};
use lpstack::kernel::layout::Layout;
use lpstack::memory::{MemoryError, PhysMemory, SliceMemory};
use lpstack::orc::elf::{module_entries, orc_sections, vmlinux_table};
use lpstack::orc::{OrcError, OrcFormat, OrcTable, OrcTables};
use lpstack::patchset::{PatchSet, parse_funcs};
use lpstack::symbols::{SymbolTable, Symbolizer, parse_system_map};
use lpstack::verdict::{Verdict, Walked, judge};
use lpstack::walk::synth::SynthStack;
use lpstack::walk::{
    CodeRanges, StackBounds, UnreliableReason, UserModule, UserModules, WalkConfig, WalkStart, walk_cfi, walk_orc,
};

/// Cut points: dense over the first `dense` bytes (the headers), then
/// spread over the rest.
fn cuts(len: usize, dense: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..dense.min(len)).step_by(7).collect();
    v.extend((0..64).map(|i| dense + (len.saturating_sub(dense)) * i / 64));
    v.push(len - 1);
    v.sort();
    v.dedup();
    v.retain(|&c| c < len);
    v
}

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| (h ^ x as u64).wrapping_mul(0x100000001b3))
}

/// The 24 pages every dump fixture holds, with their checksums.
fn fixture_pages() -> Vec<(u64, u64)> {
    String::from_utf8(common::read("dump/pages.txt"))
        .unwrap()
        .lines()
        .map(|l| {
            let (p, s) = l.split_once(' ').unwrap();
            (u64::from_str_radix(p.trim_start_matches("0x"), 16).unwrap(), u64::from_str_radix(s, 16).unwrap())
        })
        .collect()
}

const DUMPS: &[&str] = &["dump/qemu-cut.elf", "dump/mdf-lzo-d31-cut.kdump", "dump/qemu-zlib-cut.flat"];

/// Opens `bytes` and reads every fixture page: each read fails or gives
/// exactly the page of the intact dump, never other bytes.
fn pages_are_right_or_errors(bytes: &[u8], what: &str) -> usize {
    let mut good = 0;
    match Dump::open(bytes) {
        Err(e) => assert!(e.to_string().chars().any(|c| c.is_ascii_digit()) || !e.to_string().is_empty(), "{what}"),
        Ok(mut d) => {
            let mut page = vec![0u8; 4096];
            for (pfn, sum) in fixture_pages() {
                if d.read_phys(pfn * 4096, &mut page).is_ok() {
                    assert_eq!(fnv1a(&page), sum, "{what}: pfn {pfn:#x} read with wrong bytes");
                    good += 1;
                }
            }
        }
    }
    good
}

#[test]
fn every_dump_format_truncated_at_many_offsets() {
    for name in DUMPS {
        let bytes = common::read(name);
        assert_eq!(pages_are_right_or_errors(&bytes, name), 24, "{name} intact");
        let mut opened = 0;
        for cut in cuts(bytes.len(), 5000) {
            if Dump::open(&bytes[..cut]).is_ok() {
                opened += 1;
            }
            pages_are_right_or_errors(&bytes[..cut], &format!("{name} cut at {cut}"));
        }
        // An ELF file must hold its segments' data and a flattened stream
        // its end marker; a kdump file opens when its headers survive and
        // loses the pages past the cut.
        if name.ends_with(".kdump") {
            assert!(opened > 10, "{name}: only {opened} cuts opened");
        } else {
            assert_eq!(opened, 0, "{name}: a cut file opened");
        }
    }
}

#[test]
fn btf_orc_and_vmcoreinfo_truncated_at_many_offsets() {
    // BTF: any cut of the blob is an error (its header claims the rest).
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&common::read("btf/vmlinux-6.12.117+deb12-amd64.btf.gz")[..])
        .read_to_end(&mut raw)
        .unwrap();
    assert!(Btf::parse(&raw).is_ok());
    for cut in cuts(raw.len(), 64) {
        let e = Btf::parse(&raw[..cut]).err().unwrap_or_else(|| panic!("BTF cut at {cut} parsed"));
        assert!(e.to_string().contains("BTF"), "{e}");
    }
    // ORC in a vmlinux: an error, or the same table when the cut spares it.
    let elf = common::read("orc/vmlinux-6.12.117+deb12-amd64.orc.elf");
    let full = vmlinux_table(&elf, None, None).unwrap();
    for cut in cuts(elf.len(), 4096) {
        match vmlinux_table(&elf[..cut], None, None) {
            Ok(t) => assert_eq!((t.len(), t.first_ip(), t.last_ip()), (full.len(), full.first_ip(), full.last_ip())),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    // A module: the same.
    let ko = common::read("vmcore/6.12.117+deb12-amd64/lpstack_park.ko");
    // Found by fuzzing (orc_table): a relocation offset so large that
    // offset / 4 * 6 wrapped (an overflow panic in debug builds, another
    // slot's entry in release builds). Every huge offset is a named error.
    {
        use object::{Object, ObjectSection};
        let f = object::File::parse(&*ko).unwrap();
        let (rela_off, _) = f.section_by_name(".rela.orc_unwind_ip").unwrap().file_range().unwrap();
        for huge in [u64::MAX, 0x8000_0000_0000_0004, (u64::MAX / 6) * 4 + 4] {
            let mut b = ko.clone();
            let at = rela_off as usize;
            b[at..at + 8].copy_from_slice(&huge.to_le_bytes());
            assert_eq!(module_entries(&b).unwrap_err(), OrcError::BadRelocation { index: 0 }, "r_offset {huge:#x}");
        }
    }
    let entries = module_entries(&ko).unwrap();
    for cut in cuts(ko.len(), 2048) {
        if let Ok(e) = module_entries(&ko[..cut]) {
            assert_eq!(e, entries, "module cut at {cut}");
        }
    }
    // VMCOREINFO: a cut keeps every complete line as it was.
    let text: String = String::from_utf8(common::read("vmcore/6.12.117+deb12-amd64/vmcoreinfo.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let full = VmcoreInfo::parse(text.as_bytes()).unwrap();
    for cut in cuts(text.len(), 0) {
        let part = &text.as_bytes()[..cut];
        let complete = part.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        match VmcoreInfo::parse(part) {
            Ok(vi) => {
                for line in std::str::from_utf8(&part[..complete]).unwrap().lines() {
                    let key = line.split_once('=').unwrap().0;
                    assert_eq!(vi.get(key), full.get(key), "cut at {cut}: {key}");
                }
            }
            // Only a cut inside the last line's key (no '=' yet) may fail.
            Err(e) => assert!(!part[complete..].contains(&b'='), "cut at {cut}: {e}"),
        }
    }
}

#[test]
fn flipped_bytes_in_every_dump_header() {
    // ELF: the file header, every program header, every note header.
    let elf = common::read("dump/qemu-cut.elf");
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes(elf[0x38..0x3a].try_into().unwrap()) as usize;
    let note_off = u64::from_le_bytes(elf[phoff + 8..phoff + 16].try_into().unwrap()) as usize;
    let mut at: Vec<usize> = (0..64).chain(phoff..phoff + phnum * 56).chain(note_off..note_off + 12).collect();
    // makedumpfile's kdump: the disk_dump_header, the sub-header, the
    // first page descriptors.
    let kdump = common::read("dump/mdf-lzo-d31-cut.kdump");
    let flat = common::read("dump/qemu-zlib-cut.flat");
    let mut cases: Vec<(&str, &[u8], Vec<usize>)> = vec![("elf", &elf, std::mem::take(&mut at))];
    cases.push(("kdump", &kdump, (0..464).chain(4096..4096 + 104).collect()));
    // Flattened: its header fields and the first record headers.
    cases.push(("flat", &flat, (0..32).chain(4096..4096 + 16).collect()));
    for (name, bytes, offsets) in cases {
        let mut failed = 0;
        for &o in &offsets {
            let mut b = bytes.to_vec();
            b[o] ^= 0xa5;
            let what = format!("{name}: byte {o:#x} flipped");
            if Dump::open(&b).is_err() {
                failed += 1;
                continue;
            }
            // Opened: reads never panic. A flipped address can move pages,
            // so only the intact file's answer is checked exactly.
            let mut d = Dump::open(&b).unwrap();
            let mut page = vec![0u8; 4096];
            for (pfn, _) in fixture_pages() {
                let _ = d.read_phys(pfn * 4096, &mut page);
            }
            let _ = what;
        }
        assert!(failed > 0, "{name}: no flipped header byte was noticed");
    }
}

#[test]
fn flipped_bytes_in_btf_and_orc_headers() {
    // BTF header: an error naming BTF, or a blob whose types still
    // resolve (flags, or a pad byte) — never a panic while laying out.
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&common::read("btf/vmlinux-6.12.117+deb12-amd64.btf.gz")[..])
        .read_to_end(&mut raw)
        .unwrap();
    let mut accepted = 0;
    for o in 0..24 {
        let mut b = raw.clone();
        b[o] ^= 0x5a;
        match Btf::parse(&b) {
            Err(e) => assert!(e.to_string().contains("BTF"), "{e}"),
            Ok(btf) => {
                accepted += 1;
                let _ = Layout::from_btf(&btf);
            }
        }
    }
    // The flags byte is unused, and a section length may shrink onto a
    // boundary that still parses; most flips are errors.
    assert!(accepted < 8, "{accepted} of 24 flipped headers accepted");
    // .orc_header: any change to the SHA-1 is an unknown format, never a
    // guess.
    let elf = common::read("orc/vmlinux-6.12.117+deb12-amd64.orc.elf");
    let s = orc_sections(&elf).unwrap();
    let h = s.header.expect("6.12 has .orc_header");
    let h_off = h.as_ptr() as usize - elf.as_ptr() as usize;
    for o in 0..20 {
        let mut b = elf.clone();
        b[h_off + o] ^= 1;
        match vmlinux_table(&b, None, None) {
            Err(OrcError::UnknownHeader { first_bytes }) => assert_eq!(first_bytes[..], b[h_off..h_off + 4]),
            other => panic!("header byte {o}: {other:?}"),
        }
    }
}

/// A real chain (the deepest task of stacks-6.12.117.txt) on a stack image.
fn real_chain() -> (Vec<u8>, SynthStack, Vec<u64>) {
    let elf = common::read("orc/vmlinux-6.12.117+deb12-amd64.orc.elf");
    let chain = common::stack_chains("stacks-6.12.117.txt").into_iter().max_by_key(Vec::len).unwrap();
    let table = vmlinux_table(&elf, None, None).unwrap();
    let s = SynthStack::build(&table, &chain, 0xffffc90000010000, 0x4000).unwrap();
    (elf, s, chain)
}

#[test]
fn overlapping_orc_tables_never_turn_switchable() {
    let (elf, s, chain) = real_chain();
    let real = vmlinux_table(&elf, None, None).unwrap();
    let map = parse_system_map("vmlinux", &common::read_gz("orc/System.map-6.12.117+deb12-amd64.gz")).unwrap();
    let mut symbols = Symbolizer::new();
    symbols.add(map);
    // The outermost function is patched; a second table overlapping the
    // middle of the chain shadows the real entries there.
    let outer = symbols.lookup(*chain.last().unwrap()).unwrap().name.to_string();
    let set = PatchSet::resolve(&parse_funcs(&outer, "vmlinux").unwrap(), &symbols).unwrap();
    let mid = chain[chain.len() / 2];
    let mut code = CodeRanges::new();
    code.add(real.first_ip(), real.last_ip() + 1);
    // The task's walk over `tables`, judged against the set.
    let judge = |tables: &OrcTables<'_>, code: &mut CodeRanges| {
        let mut mem = SliceMemory::new(s.base, &s.bytes);
        let mut frames = Vec::new();
        let r = walk_orc(
            tables,
            &mut mem,
            code,
            &StackBounds::task(s.base, s.base + s.bytes.len() as u64),
            WalkStart::blocked(s.start_ip, s.start_sp, s.start_bp, false),
            &WalkConfig::default(),
            &mut frames,
        );
        let mut hits = Vec::new();
        let walked = Walked { frames: &frames, reliability: Some(&r), running: false };
        (judge(walked, &set, None, &mut hits), r, frames)
    };
    let mut outcomes = BTreeMap::new();
    // v3 entry types: 0 UNDEFINED, 2 CALL with a CFA of sp+0 (going
    // nowhere), 3 REGS at an sp that holds no pt_regs, 2 CALL sp+4096.
    for (label, entry) in [
        ("undefined", [0u8, 0, 0, 0, 0, 0]),
        ("sp+0", [0, 0, 0, 0, 5, 2]),
        ("regs", [16, 0, 0, 0, 5, 3]),
        ("sp+4096", [0, 0x10, 0, 0, 5, 2]),
    ] {
        let bogus = OrcTable::from_unsorted(vec![(mid - 0x40, entry), (mid + 0x40, entry)], OrcFormat::V3).unwrap();
        let mut tables = OrcTables::new();
        tables.push(vmlinux_table(&elf, None, None).unwrap());
        tables.push(bogus);
        let (v, r, frames) = judge(&tables, &mut code);
        assert!(!v.is_switchable(), "{label}: {r:?} {frames:?}");
        outcomes.insert(label, v.name());
    }
    // Skipping into a real frame further up may still find the patched
    // function (blocked); otherwise the walk says why it stopped.
    assert!(outcomes.values().all(|v| ["unreliable", "blocked"].contains(v)), "{outcomes:?}");
    assert_eq!(outcomes["undefined"], "unreliable");
    assert_eq!(outcomes["sp+0"], "unreliable");
    // Without the bogus table the same walk is blocked on it.
    let mut tables = OrcTables::new();
    tables.push(real);
    assert!(matches!(judge(&tables, &mut code).0, Verdict::Blocked { .. }));
}

/// `.eh_frame` with one CIE (CFA = rsp+8, ra at CFA-8) and one FDE per
/// `(start, len, instructions)`. Absolute 8-byte pointers.
fn eh_frame(fdes: &[(u64, u64, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut cie = vec![0, 0, 0, 0, 1, b'z', b'R', 0, 1, 0x78, 16, 1, 0x00, 0x0c, 7, 8, 0x90, 1];
    while (cie.len() + 4) % 8 != 0 {
        cie.push(0);
    }
    out.extend_from_slice(&(cie.len() as u32).to_le_bytes());
    out.extend_from_slice(&cie);
    for &(start, len, insns) in fdes {
        let at = out.len();
        let mut fde = ((at + 4) as u32).to_le_bytes().to_vec(); // back to the CIE at 0
        fde.extend_from_slice(&start.to_le_bytes());
        fde.extend_from_slice(&len.to_le_bytes());
        fde.push(0); // augmentation data length
        fde.extend_from_slice(insns);
        while (fde.len() + 4) % 8 != 0 {
            fde.push(0);
        }
        out.extend_from_slice(&(fde.len() as u32).to_le_bytes());
        out.extend_from_slice(&fde);
    }
    out.extend_from_slice(&[0; 4]);
    out
}

const TEXT: u64 = 0x401000;
const STACK: u64 = 0x7ffe0000;

/// Walks from `f` (entered at `pc`) with `rsp`, `rbp` over `stack`.
fn cfi_walk(cfi: &[u8], pc: u64, rsp: u64, rbp: u64, stack: &[u8]) -> (Vec<u64>, lpstack::walk::Reliability) {
    let elf = common::elf_with_cfi(cfi, false, 0x400200, TEXT, 0x1000);
    let table = CfiTable::from_elf(&elf).unwrap();
    assert!(!table.is_empty());
    let m = UserModule {
        name: "t".into(),
        path: "t".into(),
        start: TEXT,
        end: TEXT + 0x1000,
        bias: 0,
        cfi: Some(table),
        symbols: SymbolTable::new("t"),
    };
    let modules = UserModules::new(vec![m]);
    let mut regs = Regs::new();
    regs.set(Reg::Rip, pc);
    regs.set(Reg::Rsp, rsp);
    regs.set(Reg::Rbp, rbp);
    let mut frames = Vec::new();
    let r = walk_cfi(
        &modules,
        &mut SliceMemory::new(STACK, stack),
        &mut CfiCache::new(),
        &StackBounds::task(STACK, STACK + stack.len() as u64),
        WalkStart::from_regs(regs),
        &WalkConfig::default(),
        &mut frames,
    );
    (frames.iter().map(|f| f.pc).collect(), r)
}

#[test]
fn cfi_walker_cyclic_stacks_and_sp_going_backwards() {
    // f at TEXT: CFA = rbp + 16, rbp saved at CFA-16, ra at CFA-8 (a frame
    // pointer function after its prologue).
    let bp_frame: &[u8] = &[0x0c, 6, 16, 0x86, 2];
    let cfi = eh_frame(&[(TEXT, 0x100, bp_frame)]);
    let mut stack = vec![0u8; 0x1000];
    let put = |s: &mut Vec<u8>, addr: u64, v: u64| {
        let o = (addr - STACK) as usize;
        s[o..o + 8].copy_from_slice(&v.to_le_bytes());
    };
    // A frame whose saved rbp points at itself, returning into f again:
    // the same CFA forever.
    let bp = STACK + 0x800;
    put(&mut stack, bp, bp);
    put(&mut stack, bp + 8, TEXT + 0x20);
    let (frames, r) = cfi_walk(&cfi, TEXT + 0x10, STACK + 0x700, bp, &stack);
    let lpstack::walk::Reliability::Unreliable { reason, .. } = r else { panic!("cycle walked reliably: {frames:x?}") };
    assert!(matches!(reason, UnreliableReason::WrongDirection { .. }), "{reason:?}");
    assert!(frames.len() < 4, "{frames:x?}");
    // Saved rbp below the current frame: sp would move back down.
    let mut stack2 = vec![0u8; 0x1000];
    put(&mut stack2, bp, STACK + 0x400);
    put(&mut stack2, bp + 8, TEXT + 0x20);
    put(&mut stack2, STACK + 0x408, TEXT + 0x30);
    let (frames, r) = cfi_walk(&cfi, TEXT + 0x10, STACK + 0x700, bp, &stack2);
    let lpstack::walk::Reliability::Unreliable { reason, .. } = r else { panic!("walked back down: {frames:x?}") };
    assert!(matches!(reason, UnreliableReason::WrongDirection { .. }), "{reason:?}");
    // A long cycle through distinct return addresses that only ends at the
    // top of the stack: unreliable there, never switchable.
    let sp_frame: &[u8] = &[];
    let cfi = eh_frame(&[(TEXT, 0x100, sp_frame)]);
    let mut stack3 = vec![0u8; 0x1000];
    for k in 0..0x200 {
        put(&mut stack3, STACK + 8 * k, TEXT + 0x10 + (k % 2) * 0x10);
    }
    let (frames, r) = cfi_walk(&cfi, TEXT + 0x10, STACK, 0, &stack3);
    assert!(!r.is_reliable(), "{r:?}");
    assert!(frames.len() <= WalkConfig::default().max_frames, "{}", frames.len());
}

/// Physical memory of a dump with 8-byte overrides.
struct Overrides<'a, 'd> {
    dump: &'a mut Dump<'d>,
    words: Vec<(u64, u64)>,
}

impl PhysMemory for Overrides<'_, '_> {
    fn read_phys(&mut self, paddr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.dump.read_phys(paddr, buf)?;
        let end = paddr + buf.len() as u64;
        for &(at, v) in &self.words {
            if at >= paddr && at + 8 <= end {
                let o = (at - paddr) as usize;
                buf[o..o + 8].copy_from_slice(&v.to_le_bytes());
            }
        }
        Ok(())
    }
}

#[test]
fn stack_pointers_outside_every_mapping_are_unreliable() {
    let bytes = common::read("vmcore/6.12.117+deb12-amd64/vmcore.trimmed.kdump");
    let mut dump = Dump::open(&bytes).unwrap();
    let vi = dump.vmcoreinfo().cloned().unwrap();
    let specs = parse_funcs("lpstack_park:park_here_a\n", "vmlinux").unwrap();
    // The blocked tasks, and where their thread.sp sits physically.
    let (blocked, words) = {
        let mut kernel = Kernel::open(&mut dump, &vi, OpenOptions::default()).unwrap();
        let set = PatchSet::resolve(&specs, &kernel.symbols()).unwrap();
        let reports = kernel.check(&set, &CheckConfig::default(), |_, _| {}).unwrap().tasks;
        let off = kernel.layout().task.thread_sp.offset;
        let blocked: Vec<(i32, u64)> = reports
            .iter()
            .filter(|r| matches!(r.verdict, Verdict::Blocked { .. }))
            .map(|r| (r.task.pid, kernel.memory().translate(r.task.addr + off).unwrap()))
            .collect();
        // thread.sp: non-canonical, unmapped kernel space, and a user address.
        let targets = [0xdead_0000_0000_1000u64, 0xffff_ffff_ff00_0000, 0x7fff_0000_0000];
        let words: Vec<(u64, u64)> = blocked.iter().zip(targets.iter().cycle()).map(|(&(_, pa), &t)| (pa, t)).collect();
        (blocked, words)
    };
    assert_eq!(blocked.len(), 4);
    let mut kernel = Kernel::open(Overrides { dump: &mut dump, words }, &vi, OpenOptions::default()).unwrap();
    let set = PatchSet::resolve(&specs, &kernel.symbols()).unwrap();
    let reports = kernel.check(&set, &CheckConfig::default(), |_, _| {}).unwrap().tasks;
    for (pid, _) in &blocked {
        let r = reports.iter().find(|r| r.task.pid == *pid).unwrap();
        assert_eq!(r.verdict.name(), "unreliable", "pid {pid}: {:?}", r.reliability);
        let text = format!("{:?}", r.reliability);
        assert!(text.contains("Stack") || text.contains("Memory") || text.contains("Unreadable"), "pid {pid}: {text}");
    }
}

#[test]
fn wrong_vmlinux_or_system_map_for_a_dump_is_a_named_error() {
    // The 6.1 dump with the 6.12 System.map, and the 6.12 dump with the
    // 6.1 vmlinux's symbols: a mismatch, named, before any verdict.
    for (dump_dir, source_release) in
        [("6.1.0-57-amd64", "6.12.117+deb12-amd64"), ("6.12.117+deb12-amd64", "6.1.0-57-amd64")]
    {
        let bytes = common::read(&format!("vmcore/{dump_dir}/vmcore.trimmed.kdump"));
        let vi = Dump::open(&bytes).unwrap().vmcoreinfo().cloned().unwrap();
        let map = common::read_gz(&format!("orc/System.map-{source_release}.gz"));
        let vmlinux = common::read(&format!("orc/vmlinux-{source_release}.orc.elf"));
        for source in [SymbolSource::SystemMap(&map), SymbolSource::Vmlinux(&vmlinux)] {
            match Kernel::open(
                Dump::open(&bytes).unwrap(),
                &vi,
                OpenOptions { symbols: source, threads: 1, orc_on_demand: false },
            ) {
                Ok(_) => panic!("{dump_dir}: symbols of {source_release} accepted"),
                Err(e @ KernelError::BuildIdMismatch { .. }) => assert!(e.to_string().contains("not the same kernel")),
                Err(e @ (KernelError::SymbolMismatch { .. } | KernelError::MissingSymbol(_))) => {
                    assert!(e.to_string().contains("0x") || e.to_string().contains('_'), "{e}")
                }
                Err(e) => panic!("{dump_dir} with {source_release}: unexpected {e}"),
            }
        }
    }
}
