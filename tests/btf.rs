//! BTF of real Debian kernels (6.12 and 6.1) and of a module on top of it,
//! checked against pahole's view of the same bytes (tests/fixtures/btf/,
//! rebuilt by scripts/btf/extract-btf.sh).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::PathBuf;

use lpstack::kernel::btf::{Btf, BtfError, Kind, Member, TypeId, elf_btf_section};

const RELEASES: &[&str] = &["6.12.117+deb12-amd64", "6.1.0-57-amd64"];
const MODULE: &str = "binfmt_misc";

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/btf").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (run scripts/btf/extract-btf.sh)", p.display()))
}

fn vmlinux_btf(release: &str) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&fixture(&format!("vmlinux-{release}.btf.gz"))[..])
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

fn golden(name: &str) -> String {
    String::from_utf8(fixture(name)).expect("utf-8")
}

/// The struct or union (or typedef of one) called `name`.
fn composite(btf: &Btf<'_>, name: &str) -> Option<TypeId> {
    btf.find_struct(name).or_else(|| {
        let td = btf.find_by_name(name, Kind::Typedef)?;
        matches!(btf.kind(btf.resolve(td).ok()?), Some(Kind::Struct | Kind::Union)).then_some(td)
    })
}

/// Checks every line of a pahole golden file; returns how many were checked.
fn check_golden(btf: &Btf<'_>, text: &str, what: &str) -> usize {
    let mut checked = 0;
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| -> u64 { f[i].parse().unwrap_or_else(|_| panic!("{what}: bad line {line}")) };
        match (f[0], f.len()) {
            ("sizeof", 3) => {
                let id = composite(btf, f[1]).unwrap_or_else(|| panic!("{what}: {line}: not found"));
                assert_eq!(btf.type_size(id), Ok(num(2)), "{what}: {line}");
            }
            ("member", 7) => {
                let m: Member = btf.member(f[1], f[2]).unwrap_or_else(|e| panic!("{what}: {line}: {e}"));
                // pahole gives a bitfield's storage unit and the bit in it;
                // Member gives the byte holding the first bit.
                assert_eq!(m.offset * 8 + u64::from(m.bit_offset), num(3) * 8 + num(4), "{what}: {line}: {m:?}");
                assert_eq!(u64::from(m.bitfield_size), num(5), "{what}: {line}: {m:?}");
                assert_eq!(m.size, num(6), "{what}: {line}: {m:?}");
            }
            ("absent", 2) => assert_eq!(composite(btf, f[1]), None, "{what}: {line}"),
            ("absent", 3) => {
                let err = btf.member(f[1], f[2]).expect_err(line);
                assert!(
                    matches!(err, BtfError::NoMember { .. } | BtfError::NoStruct { .. }),
                    "{what}: {line}: {err:?}"
                );
                let first = f[2].split('.').next().unwrap_or_default();
                let msg = err.to_string();
                assert!(msg.contains(f[1]) && (msg.contains(first) || msg.contains("no struct")), "{msg}");
            }
            ("enum", 4) => {
                let got = btf.enum_value(Some(f[1]), f[2]).unwrap_or_else(|| panic!("{what}: {line}"));
                let want: i64 = f[3].parse().expect("enum value");
                // pahole 1.24 prints 32-bit enumerators unsigned even when
                // BTF marks the enum signed; compare the 32 stored bits.
                let kind = btf.find_by_name(f[1], Kind::Enum).map(|_| Kind::Enum).unwrap_or(Kind::Enum64);
                if kind == Kind::Enum {
                    assert_eq!(got as u32, want as u32, "{what}: {line}");
                } else {
                    assert_eq!(got, want, "{what}: {line}");
                }
            }
            _ => panic!("{what}: unknown golden line {line}"),
        }
        checked += 1;
    }
    checked
}

#[test]
fn vmlinux_matches_pahole() {
    for release in RELEASES {
        let data = vmlinux_btf(release);
        let btf = Btf::parse(&data).unwrap_or_else(|e| panic!("{release}: {e}"));
        let n = check_golden(&btf, &golden(&format!("pahole-{release}.txt")), release);
        assert!(n > 140, "{release}: only {n} golden lines");
    }
}

#[test]
fn module_split_btf_matches_pahole() {
    for release in RELEASES {
        let data = vmlinux_btf(release);
        let base = Btf::parse(&data).expect("base");
        let module = fixture(&format!("{MODULE}-{release}.btf"));
        let split = Btf::parse_split(&module, &base).unwrap_or_else(|e| panic!("{release}: {e}"));
        assert_eq!(split.start_id(), base.end_id());
        assert!(split.end_id() > split.start_id(), "{release}: module defines types");
        let n = check_golden(&split, &golden(&format!("pahole-{MODULE}-{release}.txt")), release);
        assert!(n >= 18, "{release}: only {n} golden lines");
        // Node is the module's own (typedef of an anonymous struct); its
        // list member's type comes from the base.
        let node = split.find_by_name("Node", Kind::Typedef).expect("Node");
        assert!(node >= split.start_id());
        let list = split.member("Node", "list").expect("Node.list");
        assert!(list.type_id < split.start_id());
        assert_eq!(split.name(list.type_id), Some("list_head"));
        // The split view and the base agree on base types.
        assert_eq!(split.member("task_struct", "tasks"), base.member("task_struct", "tasks"));
        // Base BTF alone knows nothing of the module.
        assert_eq!(base.find_by_name("Node", Kind::Typedef), None);
        // The split does not parse as base BTF (its strings continue the
        // base's), and an unrelated base is not silently accepted for
        // lookups past its end.
        assert!(
            Btf::parse(&module).is_err() || Btf::parse(&module).is_ok_and(|b| b.find_struct("list_head").is_none())
        );
    }
}

#[test]
fn what_lpstack_reads_per_kernel() {
    let data = vmlinux_btf("6.12.117+deb12-amd64");
    let btf = Btf::parse(&data).expect("6.12");
    // 6.4+: module.mem[MOD_MEM_NUM_TYPES] of module_memory.
    let n = btf.enum_value(Some("mod_mem_type"), "MOD_MEM_NUM_TYPES").expect("enum");
    assert_eq!(n, 7);
    assert_eq!(btf.enum_value(Some("mod_mem_type"), "MOD_INVALID"), Some(-1)); // signed enum
    let mem = btf.member("module", "mem").expect("mem");
    assert_eq!(btf.array_info(mem.type_id).map(|(_, n)| i64::from(n)), Some(n));
    let text = btf.enum_value(Some("mod_mem_type"), "MOD_TEXT").expect("MOD_TEXT");
    let m = btf.member("module", &format!("mem[{text}].size")).expect("mem[MOD_TEXT].size");
    assert_eq!(m.offset, 320 + 8);
    let m = btf.member("module", "mem[6].base").expect("mem[6].base");
    assert_eq!(m.offset, 320 + 6 * 72);
    assert!(btf.member("module", "mem[7]").is_err());
    assert!(btf.member("module", "core_layout").is_err());
    // thread_group is gone (6.7); thread_node and signal->thread_head stay.
    let err = btf.member("task_struct", "thread_group").expect_err("6.12 has no thread_group");
    assert!(err.to_string().contains("thread_group"));
    // rq.curr sits in an anonymous union with donor (proxy execution).
    assert_eq!(btf.member("rq", "curr").map(|m| m.offset), btf.member("rq", "donor").map(|m| m.offset));
    // runqueues is a per-cpu variable of type struct rq.
    let rq = btf.find_struct("rq").expect("rq");
    let var = btf.find_by_name("runqueues", Kind::Var).expect("runqueues");
    assert_eq!(btf.resolve(var), Ok(var)); // VAR is not a modifier...
    assert_eq!(btf.type_size(var), btf.type_size(rq)); // ...but has its type's size
    // Pointers: task_struct.stack is void *, signal is struct signal_struct *.
    let signal = btf.member("task_struct", "signal").expect("signal");
    let pointee = btf.pointee(signal.type_id).expect("pointer");
    assert_eq!(btf.name(btf.resolve(pointee).expect("resolve")), Some("signal_struct"));
    assert_eq!(btf.pointer_size(), 8);
    // comm is char[16] (TASK_COMM_LEN).
    let comm = btf.member("task_struct", "comm").expect("comm");
    let (elem, count) = btf.array_info(comm.type_id).expect("array");
    assert_eq!((btf.name(btf.resolve(elem).expect("char")), count), (Some("char"), 16));
    assert_eq!(btf.enum_value(None, "PIDTYPE_TGID"), Some(1));

    let data = vmlinux_btf("6.1.0-57-amd64");
    let btf = Btf::parse(&data).expect("6.1");
    // Before 6.4: core_layout (struct module_layout), no mem[], no enum.
    assert_eq!(btf.member("module", "core_layout.text_size").map(|m| m.offset), Ok(332));
    assert!(btf.member("module", "mem").is_err());
    assert_eq!(btf.enum_value(None, "MOD_MEM_NUM_TYPES"), None);
    // 6.1 has both thread_group and thread_node; __state (5.14+), no state.
    assert!(btf.member("task_struct", "thread_group").is_ok());
    assert!(btf.member("task_struct", "thread_node").is_ok());
    assert!(btf.member("task_struct", "state").is_err());
    // The struct behind the saved-registers frame of a sleeping task.
    assert_eq!(btf.member("inactive_task_frame", "ret_addr").map(|m| m.offset), Ok(48));
}

#[test]
fn every_struct_member_resolves() {
    // Every named member of every struct and union in both kernels: its
    // offset is within the struct and its size is computable.
    for release in RELEASES {
        let data = vmlinux_btf(release);
        let btf = Btf::parse(&data).expect("parse");
        let mut count = 0usize;
        for id in btf.type_ids() {
            if !matches!(btf.kind(id), Some(Kind::Struct | Kind::Union)) {
                continue;
            }
            let size = btf.type_size(id).expect("struct size");
            for m in btf.members(id).expect("members") {
                let m = m.expect("member");
                assert!(u64::from(m.bit_offset) + u64::from(m.bitfield_size) <= size * 8, "{release} {id}");
                // Flexible arrays have size 0; function pointers are PTRs.
                btf.resolve(m.type_id).expect("member type");
                count += 1;
            }
        }
        assert!(count > 50_000, "{release}: {count} members");
    }
}

#[test]
fn corrupt_real_btf_never_panics() {
    // A few cuts and header flips of the real vmlinux table (each parse of
    // 4 MB costs ~70 ms unoptimised)...
    let data = vmlinux_btf("6.1.0-57-amd64");
    let len = data.len();
    for cut in (0..len).step_by(len / 13).chain([23, 24, 25, 36, 37, len - 1]) {
        if let Ok(btf) = Btf::parse(&data[..cut]) {
            let _ = btf.member("task_struct", "thread.sp");
        }
    }
    let mut d = data.clone();
    for i in 0..24 {
        let orig = d[i];
        d[i] = orig ^ 0xa5;
        if let Ok(btf) = Btf::parse(&d) {
            let _ = btf.member("task_struct", "tasks");
        }
        d[i] = orig;
    }
    // ...and every cut and byte flip of the real module table over it.
    let base = Btf::parse(&data).expect("base");
    let module = fixture(&format!("{MODULE}-6.1.0-57-amd64.btf"));
    let probe = |btf: &Btf<'_>| {
        for id in btf.type_ids() {
            let _ = (btf.type_size(id), btf.name(id), btf.members(id).map(|m| m.count()));
        }
        let _ = (btf.member("Node", "list.prev"), btf.member("Node", "users"));
    };
    for cut in 0..module.len() {
        if let Ok(btf) = Btf::parse_split(&module[..cut], &base) {
            probe(&btf);
        }
    }
    let mut m = module.clone();
    for i in 0..module.len() {
        for x in [0x01, 0x80, 0xff] {
            m[i] = module[i] ^ x;
            if let Ok(btf) = Btf::parse_split(&m, &base) {
                probe(&btf);
            }
        }
        m[i] = module[i];
    }
}

/// A minimal ELF64 relocatable file holding `btf` as its `.BTF` section
/// (non-alloc, as in a module).
fn tiny_elf(btf: &[u8]) -> Vec<u8> {
    let shstrtab = b"\0.BTF\0.shstrtab\0";
    let btf_off = 64u64;
    let str_off = btf_off + btf.len() as u64;
    let sh_off = (str_off + shstrtab.len() as u64).next_multiple_of(8);
    let mut e = Vec::new();
    e.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    e.extend_from_slice(&1u16.to_le_bytes()); // ET_REL
    e.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&0u64.to_le_bytes()); // entry
    e.extend_from_slice(&0u64.to_le_bytes()); // phoff
    e.extend_from_slice(&sh_off.to_le_bytes());
    e.extend_from_slice(&0u32.to_le_bytes()); // flags
    for h in [64u16, 0, 0, 64, 3, 2] {
        e.extend_from_slice(&h.to_le_bytes()); // ehsize phentsize phnum shentsize shnum shstrndx
    }
    e.extend_from_slice(btf);
    e.extend_from_slice(shstrtab);
    e.resize(sh_off as usize, 0);
    let mut sh = |name: u32, ty: u32, off: u64, size: u64| {
        e.extend_from_slice(&name.to_le_bytes());
        e.extend_from_slice(&ty.to_le_bytes());
        for v in [0u64, 0, off, size] {
            e.extend_from_slice(&v.to_le_bytes()); // flags addr offset size
        }
        e.extend_from_slice(&[0; 8]); // link info
        e.extend_from_slice(&1u64.to_le_bytes()); // addralign
        e.extend_from_slice(&0u64.to_le_bytes()); // entsize
    };
    sh(0, 0, 0, 0);
    sh(1, 1, btf_off, btf.len() as u64); // .BTF, PROGBITS
    sh(6, 3, str_off, shstrtab.len() as u64); // .shstrtab, STRTAB
    e
}

#[test]
fn elf_section_of_a_tiny_elf() {
    let btf = fixture(&format!("{MODULE}-6.1.0-57-amd64.btf"));
    let elf = tiny_elf(&btf);
    assert_eq!(elf_btf_section(&elf), Some(&btf[..]));
    assert_eq!(elf_btf_section(&elf[..100]), None);
}

/// lpstack reads a dump's BTF a prefix at a time. Layouts taken from a
/// prefix either equal the whole table's or say the prefix ran short.
#[test]
fn layouts_from_a_prefix_equal_the_whole_tables_or_run_short() {
    use lpstack::kernel::btf::section_ranges;
    use lpstack::kernel::layout::Layout;
    for release in RELEASES {
        let data = vmlinux_btf(release);
        let whole = format!("{:?}", Layout::from_btf(&Btf::parse(&data).unwrap()).unwrap());
        let sections = section_ranges(&data, data.len() as u64).unwrap();
        let (types, strings) = (sections.types.len(), sections.strings.len());
        let at = |t: usize| {
            let s = (strings as u128 * t as u128 / types as u128) as usize + (64 << 10);
            let btf = Btf::parse_prefix(&data, t, s.min(strings)).unwrap();
            let layout = format!("{:?}", Layout::from_btf(&btf));
            (btf.ran_short(), layout)
        };
        let mut answered = 0;
        for t in (0..=types).step_by(types / 24).chain([types]) {
            let (short, layout) = at(t);
            if !short {
                assert_eq!(layout, format!("Ok({whole})"), "{release}: {t} bytes of types");
                answered += 1;
            }
        }
        // What makes a dump check read a third of the BTF: the first MiB of
        // Debian 6.12's types holds every layout. 6.1 has no pcpu_hot (6.2+),
        // so a search for it runs to the end.
        let (short, _) = at(1 << 20);
        match *release {
            "6.12.117+deb12-amd64" => assert!(!short && answered >= 15, "{release}: {answered} prefixes answered"),
            _ => assert!(short && answered == 1, "{release}: {answered} prefixes answered"),
        }
    }
}
