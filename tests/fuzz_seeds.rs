//! Seeds for the fuzz targets (fuzz/seeds/<target>/), cut from the
//! committed fixtures and laid out in each target's input format (see the
//! comments at the top of fuzz/fuzz_targets/*.rs). Each seed is checked to
//! reach deep into its reader: a reliable walk, a decoded kallsyms table, a
//! parsed BTF blob, an opened dump. `LPSTACK_WRITE_FUZZ_SEEDS=1 cargo test
//! --test fuzz_seeds` rewrites the files; scripts/fuzz/seed.sh adds the
//! fixture files that are seeds as they are.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::Command;

use lpstack::cfi::{CfiTable, Rule};
use lpstack::dump::Dump;
use lpstack::dump::flattened::flatten;
use lpstack::dump::write::{KdumpWriteInfo, WriteCompression, write_kdump};
use lpstack::kernel::btf::Btf;
use lpstack::kernel::image::{Kernel, OpenOptions};
use lpstack::kernel::kallsyms::{KallsymsLocation, KnownSymbol, read_kallsyms};
use lpstack::memory::{Memory, SliceMemory, read_vec};
use lpstack::orc::elf::orc_sections;
use lpstack::orc::{ORC_ENTRY_SIZE, OrcFormat, OrcTable, OrcTables};
use lpstack::walk::synth::SynthStack;
use lpstack::walk::{CodeRanges, Reliability, StackBounds, WalkConfig, WalkStart, walk_orc};

const TEXT: u64 = 0xffffffff81000000;
const STACK: u64 = 0xffffc90000010000;
const STACK_SIZE: u64 = 0x4000;

struct Seeds(Vec<(String, Vec<u8>)>);

impl Seeds {
    fn add(&mut self, target: &str, name: &str, bytes: Vec<u8>) {
        self.0.push((format!("{target}/{name}"), bytes));
    }
}

fn le32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn le64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A real task's chain over a real table: the entries the walk needs, and
/// its stack image.
struct RealWalk {
    /// (ip, raw entry), the entries around each frame.
    entries: Vec<(u64, [u8; ORC_ENTRY_SIZE])>,
    stack: SynthStack,
    chain: Vec<u64>,
    format: OrcFormat,
}

fn real_walks(release: &str, version: &str, format: OrcFormat, take: usize) -> Vec<RealWalk> {
    let elf = common::read(&format!("orc/vmlinux-{release}.orc.elf"));
    let s = orc_sections(&elf).unwrap();
    let table = OrcTable::new(s.ips, s.entries, s.ips_addr, format).unwrap();
    let mut chains = common::stack_chains(&format!("stacks-{version}.txt"));
    // Deep chains first: they reach most entry types.
    chains.sort_by_key(|c| std::cmp::Reverse(c.len()));
    let mut out = Vec::new();
    for chain in chains {
        if out.len() == take {
            break;
        }
        let Some(stack) = SynthStack::build(&table, &chain, STACK, STACK_SIZE) else { continue };
        let mut entries = Vec::new();
        for (k, &pc) in chain.iter().enumerate() {
            let probe = if k == 0 { pc } else { pc - 1 };
            let i = table.find_index(probe).unwrap();
            for j in [i, i + 1] {
                if let Some((ip, _)) = table.get(j) {
                    let raw: [u8; 6] = s.entries[j * 6..j * 6 + 6].try_into().unwrap();
                    entries.push((ip, raw));
                }
            }
        }
        entries.sort();
        entries.dedup();
        if entries.len() > 255 || entries.iter().any(|e| e.0 < TEXT || e.0 - TEXT > u32::MAX as u64) {
            continue;
        }
        out.push(RealWalk { entries, stack, chain, format });
    }
    assert_eq!(out.len(), take, "{release}");
    out
}

/// The walk the orc_walk target makes, over the cut table: it must give
/// back the real chain.
fn check_cut_walk(w: &RealWalk) {
    let mut tables = OrcTables::new();
    tables.push(OrcTable::from_unsorted(w.entries.clone(), w.format).unwrap());
    let mut code = CodeRanges::new();
    code.add(TEXT, TEXT + 0x4000000);
    let mut mem = SliceMemory::new(STACK, &w.stack.bytes);
    let mut frames = Vec::new();
    let s = &w.stack;
    let r = walk_orc(
        &tables,
        &mut mem,
        &mut code,
        &StackBounds::task(STACK, STACK + STACK_SIZE),
        WalkStart::blocked(s.start_ip, s.start_sp, s.start_bp, false),
        &WalkConfig::default(),
        &mut frames,
    );
    assert!(matches!(r, Reliability::Reliable(_)), "{r:?}");
    assert_eq!(frames.iter().map(|f| f.pc).collect::<Vec<_>>(), w.chain);
}

fn orc_walk_seed(w: &RealWalk) -> Vec<u8> {
    let mut out = vec![match w.format {
        OrcFormat::V1 => 0,
        OrcFormat::V2 => 1,
        OrcFormat::V3 => 2,
    }];
    out.push(100); // max_frames
    out.push(w.entries.len() as u8);
    for (ip, e) in &w.entries {
        le32(&mut out, (ip - TEXT) as u32);
        out.extend_from_slice(e);
    }
    le32(&mut out, 0x4000000); // text size
    let s = &w.stack;
    le32(&mut out, (s.start_ip - TEXT) as u32);
    le64(&mut out, s.start_sp);
    le64(&mut out, s.start_bp);
    out.extend_from_slice(&((s.start_sp - STACK) as u16).to_le_bytes());
    le64(&mut out, 0); // irq stack
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&s.bytes);
    out
}

/// The kernel-unwinder path of the c_api target, deciding `w` with
/// `funcs` as the patched set.
fn c_api_seed(w: &RealWalk, system_map: &str, funcs: &str) -> Vec<u8> {
    let mut out = vec![8u8]; // kernel, funcs.txt text
    out.push(w.entries.len() as u8);
    // The ip table is self-relative: entry i at TEXT + 4i.
    for (i, (ip, _)) in w.entries.iter().enumerate() {
        le32(&mut out, ip.wrapping_sub(TEXT + 4 * i as u64) as u32);
    }
    for (_, e) in &w.entries {
        out.extend_from_slice(e);
    }
    le64(&mut out, TEXT);
    out.push(w.format as u8 + 1);
    le64(&mut out, TEXT); // text
    le64(&mut out, TEXT + 0x4000000);
    le64(&mut out, 0); // trampoline pc, kind
    le32(&mut out, 0);
    le32(&mut out, system_map.len() as u32);
    out.extend_from_slice(system_map.as_bytes());
    le32(&mut out, funcs.len() as u32);
    out.extend_from_slice(funcs.as_bytes());
    out.push(0); // scratch capacity: the kernel's 100
    let s = &w.stack;
    let mut regs = [0u64; 17];
    regs[6] = s.start_bp;
    regs[7] = s.start_sp;
    regs[16] = s.start_ip;
    for r in regs {
        le64(&mut out, r);
    }
    le64(&mut out, (1 << 6) | (1 << 7) | (1 << 16));
    out.push(0); // cs
    out.push(16); // tflags: blocked, frames wanted
    out.push(0); // max_frames
    out.extend_from_slice(&((s.start_sp - STACK) as u16).to_le_bytes());
    out.extend_from_slice(&s.bytes);
    out
}

fn orc_table_seed(release: &str, format: OrcFormat, start: usize, n: usize) -> Vec<u8> {
    let elf = common::read(&format!("orc/vmlinux-{release}.orc.elf"));
    let s = orc_sections(&elf).unwrap();
    let mut out = vec![format as u8];
    le64(&mut out, s.ips_addr + 4 * start as u64);
    let mut header = [0u8; 20];
    if let Some(h) = s.header {
        header.copy_from_slice(&h[..20]);
    }
    out.extend_from_slice(&header);
    out.extend_from_slice(&(n as u16).to_le_bytes());
    let t = OrcTable::new(s.ips, s.entries, s.ips_addr, format).unwrap();
    for k in [0, n / 3, n / 2, n - 1] {
        le64(&mut out, t.get(start + k).unwrap().0 + 1);
    }
    out.extend_from_slice(&s.ips[start * 4..(start + n) * 4]);
    out.extend_from_slice(&s.entries[start * 6..(start + n) * 6]);
    out
}

/// `elf_with_cfi` of fuzz/fuzz_targets/common.rs, restated: the seed must
/// compile in the target as it does here.
fn cfi_seed(dir: &std::path::Path) -> Vec<u8> {
    let so = dir.join("libparked.so");
    let src = common::fixture("../programs/libparked.c");
    assert!(
        Command::new("cc")
            .args(["-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o"])
            .arg(&so)
            .arg(&src)
            .status()
            .unwrap()
            .success()
    );
    let data = std::fs::read(&so).unwrap();
    use object::{Object, ObjectSection, ObjectSymbol};
    let f = object::File::parse(&*data).unwrap();
    let eh = f.section_by_name(".eh_frame").unwrap();
    let text = f.section_by_name(".text").unwrap();
    let sym = |name: &str| f.symbols().find(|s| s.name() == Ok(name)).map(|s| (s.address(), s.size())).unwrap();
    // Return addresses: just past the call to `callee` inside `caller`.
    let ret_into = |caller: &str, callee: &str| {
        let (a, n) = sym(caller);
        let target = sym(callee).0;
        let bytes = text.data_range(a, n).unwrap().unwrap();
        (0..bytes.len().saturating_sub(4))
            .find(|&i| {
                bytes[i] == 0xe8 && {
                    let rel = i32::from_le_bytes(bytes[i + 1..i + 5].try_into().unwrap());
                    (a + i as u64 + 5).wrapping_add(rel as i64 as u64) == target
                }
            })
            .map(|i| a + i as u64 + 5)
            .unwrap_or_else(|| panic!("no call {caller} -> {callee}"))
    };
    let table = CfiTable::from_elf(&data).unwrap();
    assert!(!table.is_empty());
    // Lay out lib_leaf (at entry) <- lib_mid <- lib_park on a stack.
    let bias = 0x7f0000000000u64;
    let (sp0, size) = (0x7ffd0000f000u64, 0x1000u64);
    let mut stack = vec![0u8; size as usize];
    let chain = [sym("lib_leaf").0, ret_into("lib_mid", "lib_leaf"), ret_into("lib_park", "lib_mid")];
    let mut sp = sp0;
    for (k, &pc) in chain.iter().enumerate() {
        let probe = if k == 0 { pc } else { pc - 1 };
        let Some(lpstack::cfi::Row { rule: Rule::Simple(r), .. }) = table.find(probe) else { panic!("{pc:#x}") };
        assert!(!r.cfa_from_bp);
        let cfa = sp.wrapping_add(r.cfa_offset as i64 as u64);
        let slot = cfa.wrapping_add(r.ra_offset as i64 as u64);
        let next = chain.get(k + 1).map_or(0, |&p| p + bias);
        let o = (slot - sp0) as usize;
        stack[o..o + 8].copy_from_slice(&next.to_le_bytes());
        sp = cfa;
    }
    let mut out = vec![4u8]; // .eh_frame, exact first pc
    le64(&mut out, eh.address());
    le64(&mut out, text.address());
    le32(&mut out, text.size() as u32);
    le64(&mut out, bias);
    le32(&mut out, eh.data().unwrap().len() as u32);
    out.extend_from_slice(eh.data().unwrap());
    // Registers: rsp and rip known.
    le32(&mut out, (1 << 7) | (1 << 16));
    for i in 0..17 {
        le64(
            &mut out,
            match i {
                7 => sp0,
                16 => chain[0] + bias,
                _ => 0,
            },
        );
    }
    out.push(100);
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&stack);
    out
}

/// The first `n` kallsyms names of the 6.12 dump, laid out as the
/// kallsyms target reads them; with `name_order`, their
/// `kallsyms_seqs_of_names` follows `kallsyms_relative_base`, so the table
/// decodes names on demand.
fn kallsyms_seed(name_order: bool) -> Vec<u8> {
    let bytes = common::read("vmcore/6.12.117+deb12-amd64/vmcore.trimmed.kdump");
    let dump = Dump::open(&bytes).unwrap();
    let vi = dump.vmcoreinfo().cloned().unwrap();
    let mut kernel = Kernel::open(dump, &vi, OpenOptions::default()).unwrap();
    let stext = vi.symbol("_stext").unwrap();
    let index = kernel.symbols().tables()[0].iter().position(|s| s.name == "_stext").unwrap();
    let n = (index + 16) as u32;
    let mem = &mut kernel.memory();
    let at = |name: &str| vi.symbol(name).unwrap();
    // Header: num_syms 0, relative_base 16, token_index 32, token_table
    // 544, offsets, names (last, padded to a page so block reads succeed).
    let token_index = read_vec(mem, at("kallsyms_token_index"), 512).unwrap();
    let max = (0..256).map(|i| u16::from_le_bytes([token_index[2 * i], token_index[2 * i + 1]])).max().unwrap();
    let token_table = read_vec(mem, at("kallsyms_token_table"), max as usize + 256).unwrap();
    let offsets = read_vec(mem, at("kallsyms_offsets"), 4 * n as usize).unwrap();
    let names_all = read_vec(mem, at("kallsyms_names"), 64 * n as usize).unwrap();
    let mut len = 0usize;
    for _ in 0..n {
        let mut l = names_all[len] as usize;
        len += 1;
        if l & 0x80 != 0 {
            l = (l & 0x7f) | ((names_all[len] as usize) << 7);
            len += 1;
        }
        len += l;
    }
    let mut img = vec![0u8; 32];
    img[0..4].copy_from_slice(&n.to_le_bytes());
    img[16..24].copy_from_slice(&mem.read_u64(at("kallsyms_relative_base")).unwrap().to_le_bytes());
    if name_order {
        let table = &kernel.symbols().tables()[0];
        let mut order: Vec<usize> = (0..n as usize).collect();
        order.sort_by_key(|&i| table.get(i).unwrap().name);
        img.truncate(24);
        img.extend(order.iter().flat_map(|&i| [(i >> 16) as u8, (i >> 8) as u8, i as u8]));
        img.resize(img.len().next_multiple_of(8), 0);
    }
    let index_off = img.len();
    img.extend_from_slice(&token_index);
    let table_off = img.len();
    img.extend_from_slice(&token_table);
    let offsets_off = img.len();
    img.extend_from_slice(&offsets);
    let names_off = img.len();
    img.extend_from_slice(&names_all[..len]);
    img.resize(img.len().next_multiple_of(4096), 0);
    let mut out = vec![0u8];
    for o in [0, names_off, table_off, index_off, offsets_off, 16] {
        le32(&mut out, o as u32);
    }
    le64(&mut out, stext);
    out.extend_from_slice(&img);
    // The target's own decode succeeds and places _stext.
    let base = 0xffffffff82000000u64;
    let loc = KallsymsLocation {
        num_syms: base,
        names: base + names_off as u64,
        token_table: base + table_off as u64,
        token_index: base + index_off as u64,
        offsets: Some(base + offsets_off as u64),
        relative_base: Some(base + 16),
        addresses: None,
    };
    let t = read_kallsyms(&mut SliceMemory::new(base, &img), &loc, &[KnownSymbol { name: "_stext", address: stext }])
        .unwrap();
    assert_eq!(t.is_lazy(), name_order);
    assert_eq!(t.len(), n as usize);
    assert_eq!(t.find_by_name("_stext").next().unwrap().address, stext);
    out
}

/// vmlinux BTF cut to its first types and strings, still parseable.
fn btf_seed(release: &str) -> Vec<u8> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&common::read(&format!("btf/vmlinux-{release}.btf.gz"))[..])
        .read_to_end(&mut raw)
        .unwrap();
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let hdr_len = u32_at(&raw, 4) as usize;
    let (type_off, str_off, str_len) = (u32_at(&raw, 8) as usize, u32_at(&raw, 16) as usize, u32_at(&raw, 20) as usize);
    let strings = &raw[hdr_len + str_off..hdr_len + str_off + str_len];
    let keep_str = 16384.min(str_len);
    // Cut the type section at the largest boundary under 6 KB that parses.
    for cut in (0..=6144usize).rev().step_by(4) {
        let types = &raw[hdr_len + type_off..hdr_len + type_off + cut];
        let mut b = raw[..hdr_len].to_vec();
        b[8..12].copy_from_slice(&0u32.to_le_bytes());
        b[12..16].copy_from_slice(&(cut as u32).to_le_bytes());
        b[16..20].copy_from_slice(&(cut as u32).to_le_bytes());
        b[20..24].copy_from_slice(&(keep_str as u32).to_le_bytes());
        b.extend_from_slice(types);
        b.extend_from_slice(&strings[..keep_str]);
        if let Ok(btf) = Btf::parse(&b)
            && btf.type_ids().count() > 20
        {
            return b;
        }
    }
    panic!("{release}: no parseable cut");
}

/// The BTF the livepatch_ko target reads a source-built module with: only
/// `klp_patch`, `klp_object` and `klp_func` with `release`'s real sizes and
/// the offsets of the members the reader uses (a cut of the 4 MB vmlinux
/// BTF would lose them).
fn klp_layout_btf(release: &str) -> Vec<u8> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&common::read(&format!("btf/vmlinux-{release}.btf.gz"))[..])
        .read_to_end(&mut raw)
        .unwrap();
    let real = Btf::parse(&raw).unwrap();
    let size = |s: &str| real.type_size(real.find_struct(s).unwrap()).unwrap() as u32;
    let bits = |s: &str, m: &str| (real.member(s, m).unwrap().offset * 8) as u32;
    let mut strs = vec![0u8];
    let mut name = |n: &str| {
        let off = strs.len() as u32;
        strs.extend_from_slice(n.as_bytes());
        strs.push(0);
        off
    };
    let mut types: Vec<u32> = Vec::new();
    // [1] unsigned long, [2] char, [3] char *, [4] _Bool
    types.extend([name("unsigned long"), 1 << 24, 8, 64]);
    types.extend([name("char"), 1 << 24, 1, 8]);
    types.extend([0, 2 << 24, 2]);
    types.extend([name("_Bool"), 1 << 24, 1, 8]);
    let strukt = |types: &mut Vec<u32>, n: u32, size: u32, members: &[(u32, u32, u32)]| {
        types.extend([n, (4 << 24) | members.len() as u32, size]);
        for &(m, t, off) in members {
            types.extend([m, t, off]);
        }
    };
    // [5] klp_func, [6] klp_object, [7] klp_patch (pointers typed char *)
    let f = [
        (name("old_name"), 3, bits("klp_func", "old_name")),
        (name("new_func"), 3, bits("klp_func", "new_func")),
        (name("old_sympos"), 1, bits("klp_func", "old_sympos")),
    ];
    strukt(&mut types, name("klp_func"), size("klp_func"), &f);
    let o = [(name("name"), 3, bits("klp_object", "name")), (name("funcs"), 3, bits("klp_object", "funcs"))];
    strukt(&mut types, name("klp_object"), size("klp_object"), &o);
    let p = [
        (name("mod"), 3, bits("klp_patch", "mod")),
        (name("objs"), 3, bits("klp_patch", "objs")),
        (name("replace"), 4, bits("klp_patch", "replace")),
    ];
    strukt(&mut types, name("klp_patch"), size("klp_patch"), &p);
    let types: Vec<u8> = types.iter().flat_map(|w| w.to_le_bytes()).collect();
    let mut out = vec![0x9f, 0xeb, 1, 0];
    for w in [24u32, 0, types.len() as u32, types.len() as u32, strs.len() as u32] {
        le32(&mut out, w);
    }
    out.extend_from_slice(&types);
    out.extend_from_slice(&strs);
    // It reads the real modules as the whole BTF does.
    let small = Btf::parse(&out).unwrap();
    for ko in [format!("vmcore/{release}/lpstack_lp.ko"), "livepatch/samples/livepatch-callbacks-demo.ko".into()] {
        let ko = common::read(&ko);
        let whole = lpstack::patchset::ko::read_livepatch_module(&ko, Some(&real)).unwrap();
        assert_eq!(lpstack::patchset::ko::read_livepatch_module(&ko, Some(&small)), Ok(whole), "{release}");
    }
    out
}

/// `[u32 BTF length][BTF][module]`, as the livepatch_ko target reads it.
fn livepatch_seed(btf: &[u8], ko: &str) -> Vec<u8> {
    let mut out = Vec::new();
    le32(&mut out, btf.len() as u32);
    out.extend_from_slice(btf);
    out.extend_from_slice(&common::read(ko));
    out
}

/// A fixture's VMCOREINFO text without its leading `#` comment.
fn vmcoreinfo(dir: &str) -> Vec<u8> {
    let text = String::from_utf8(common::read(&format!("vmcore/{dir}/vmcoreinfo.txt"))).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with('#')).map(|l| format!("{l}\n")).collect();
    let vi = lpstack::dump::VmcoreInfo::parse(body.as_bytes()).unwrap();
    assert!(vi.osrelease().is_some() && vi.symbol("_stext").is_some(), "{dir}");
    body.into_bytes()
}

/// The first `n` LZO1X blocks (page data) of the committed makedumpfile
/// `-l` dump.
fn lzo_blocks(n: usize) -> Vec<Vec<u8>> {
    let data = common::read("dump/mdf-lzo-d31-cut.kdump");
    let k = lpstack::dump::kdump::KdumpFile::parse(lpstack::dump::source::SliceSource(&data)).unwrap();
    (0..k.max_mapnr())
        .filter_map(|pfn| match k.lookup(pfn) {
            Ok(lpstack::dump::kdump::PageLookup::Stored { desc, .. }) if desc.flags & 2 != 0 => {
                Some(data[desc.offset as usize..desc.offset as usize + desc.size as usize].to_vec())
            }
            _ => None,
        })
        .take(n)
        .collect()
}

fn kdump_seed() -> (Vec<u8>, Vec<u8>) {
    let vmcoreinfo = vmcoreinfo("6.12.117+deb12-amd64");
    let mut notes = Vec::new();
    lpstack::dump::notes::push_note(&mut notes, b"VMCOREINFO", 0, &vmcoreinfo);
    let info = KdumpWriteInfo {
        utsname: ["Linux", "fuzz", "6.12.117+deb12-amd64", "#1", "x86_64", "(none)"],
        page_size: 4096,
        max_mapnr: 64,
        phys_base: 0,
        nr_cpus: 1,
        dump_level: 31,
        notes: &notes,
        vmcoreinfo: &vmcoreinfo,
        present: &[(8, 16)],
    };
    // A compressible page, a random-looking one (kept raw), a zero page.
    let a: Vec<u8> = (0..4096u32).map(|i| (i / 64) as u8).collect();
    let b: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let z = vec![0u8; 4096];
    let pages = [(0u64, &a[..]), (1, &b[..]), (2, &z[..]), (40, &a[..])];
    let mut out = Vec::new();
    write_kdump(&mut out, &info, pages.iter().copied(), WriteCompression::Zlib).unwrap();
    // Flattened: two records, out of order.
    let half = out.len() / 2;
    let flat = flatten([(half as u64, &out[half..]), (0, &out[..half])]);
    (out, flat)
}

fn build_seeds() -> Seeds {
    let mut seeds = Seeds(Vec::new());
    let dir = std::env::temp_dir().join(format!("lpstack-fuzz-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    for (release, version, format) in
        [("6.12.117+deb12-amd64", "6.12.117", OrcFormat::V3), ("6.1.0-57-amd64", "6.1.192", OrcFormat::V1)]
    {
        let walks = real_walks(release, version, format, 3);
        let map = common::read_gz(&format!("orc/System.map-{release}.gz"));
        for (i, w) in walks.iter().enumerate() {
            check_cut_walk(w);
            seeds.add("orc_walk", &format!("{version}-{i}"), orc_walk_seed(w));
        }
        // c_api: the deepest chain, blocked on its middle frame's function
        // and switchable against a function not on it.
        let w = &walks[0];
        let mut syms = lpstack::symbols::Symbolizer::new();
        syms.add(lpstack::symbols::parse_system_map("vmlinux", &map).unwrap());
        let names: Vec<String> = w.chain.iter().map(|&pc| syms.lookup(pc).unwrap().name.to_string()).collect();
        let excerpt: String = map
            .lines()
            .filter(|l| l.split_whitespace().nth(2).is_some_and(|n| names.iter().any(|x| x == n) || n == "pipe_read"))
            .map(|l| format!("{l}\n"))
            .collect();
        // System.map has no sizes: keep each function's successor too.
        let lines: Vec<&str> = map.lines().collect();
        let mut with_next = String::new();
        for (k, l) in lines.iter().enumerate() {
            if excerpt.contains(l) {
                with_next.push_str(l);
                with_next.push('\n');
                if let Some(n) = lines.get(k + 1) {
                    with_next.push_str(n);
                    with_next.push('\n');
                }
            }
        }
        let mid = &names[names.len() / 2];
        seeds.add("c_api", &format!("{version}-blocked"), c_api_seed(w, &with_next, &format!("{mid}\n")));
        seeds.add("c_api", &format!("{version}-switchable"), c_api_seed(w, &with_next, "pipe_read\n"));
        seeds.add("funcs_txt", version, {
            let mut out = Vec::new();
            le32(&mut out, with_next.len() as u32);
            out.extend_from_slice(with_next.as_bytes());
            out.extend_from_slice(
                format!("# real chain\n{mid}\nvmlinux:{},1\n\x0c{mid}\n{}\n", names[0], names[0]).as_bytes(),
            );
            out
        });
        seeds.add("orc_table", &format!("{version}-raw"), orc_table_seed(release, format, 1000, 96));
        seeds.add("btf", &format!("{version}-cut"), btf_seed(release));
    }
    for (release, version) in [("6.12.117+deb12-amd64", "6.12.117"), ("6.1.0-57-amd64", "6.1.192")] {
        let btf = klp_layout_btf(release);
        seeds.add(
            "livepatch_ko",
            &format!("{version}-lpstack_lp"),
            livepatch_seed(&btf, &format!("vmcore/{release}/lpstack_lp.ko")),
        );
        if version == "6.12.117" {
            for ko in ["samples/livepatch-callbacks-demo", "forms/lp_replace", "forms/lp_two_patches"] {
                let name = ko.rsplit('/').next().unwrap();
                seeds.add(
                    "livepatch_ko",
                    &format!("{version}-{name}"),
                    livepatch_seed(&btf, &format!("livepatch/{ko}.ko")),
                );
            }
        }
    }
    seeds.add("cfi_walk", "libparked", cfi_seed(&dir));
    seeds.add("kallsyms", "6.12.117", kallsyms_seed(false));
    seeds.add("kallsyms", "6.12.117-name-order", kallsyms_seed(true));
    for dir in ["6.12.117+deb12-amd64", "6.1.0-57-amd64", "6.12.117+deb12-amd64-la57"] {
        seeds.add("vmcoreinfo", dir, vmcoreinfo(dir));
    }
    let (kdump, flat) = kdump_seed();
    for (what, b) in [("kdump", &kdump), ("flat", &flat)] {
        let mut d = Dump::open(b).unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut page = vec![0u8; 4096];
        d.read_phys(4096, &mut page).unwrap();
        assert!(d.read_phys(40 * 4096 - 8, &mut page[..16]).is_err(), "{what}: pfn 39 is not stored");
        assert!(d.vmcoreinfo().is_some(), "{what}: {:?}", d.vmcoreinfo_error());
    }
    seeds.add("kdump_compressed", "zlib-writer", kdump);
    seeds.add("flattened", "zlib-writer", flat);
    for (i, block) in lzo_blocks(4).into_iter().enumerate() {
        let mut page = vec![0u8; 4096];
        assert_eq!(lpstack::dump::lzo::decompress_into(&block, &mut page), Ok(4096), "lzo block {i}");
        // The lzo target's first byte chooses the output room: 0 is a page.
        seeds.add("lzo", &format!("mdf-page-{i}"), [&[0u8][..], &block].concat());
    }
    let _ = std::fs::remove_dir_all(&dir);
    seeds
}

#[test]
fn seeds_reach_deep_into_their_readers() {
    let seeds = build_seeds();
    let per_target = |t: &str| seeds.0.iter().filter(|(n, _)| n.starts_with(&format!("{t}/"))).count();
    for t in [
        "vmcoreinfo",
        "orc_walk",
        "c_api",
        "funcs_txt",
        "orc_table",
        "btf",
        "cfi_walk",
        "kallsyms",
        "kdump_compressed",
        "flattened",
        "livepatch_ko",
        "lzo",
    ] {
        assert!(per_target(t) > 0, "{t}");
    }
    let total: usize = seeds.0.iter().map(|(_, b)| b.len()).sum();
    assert!(total < 2 << 20, "{total} bytes of seeds");
    if std::env::var_os("LPSTACK_WRITE_FUZZ_SEEDS").is_some() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
        for (name, bytes) in &seeds.0 {
            let p = root.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, bytes).unwrap();
        }
    }
}
