//! Golden test: `lpstack orc dump` decodes every entry of real Debian
//! kernels exactly as that kernel's own objtool prints it.

mod common;

use lpstack::orc::elf::{FormatSource, choose_format, orc_sections};
use lpstack::orc::{OrcFinder, OrcFormat, OrcTable, objtool};

fn table<'a>(data: &'a [u8], release: &str) -> (OrcTable<'a>, FormatSource) {
    let s = orc_sections(data).unwrap();
    let (format, source) = choose_format(&s, None, Some(release)).unwrap();
    (OrcTable::new(s.ips, s.entries, s.ips_addr, format).unwrap(), source)
}

#[test]
fn dump_matches_objtool_for_every_entry() {
    for &(release, version) in common::KERNELS {
        let elf = common::read(&format!("orc/vmlinux-{release}.orc.elf"));
        let golden = common::read_gz(&format!("orc/vmlinux-{release}.objtool-orc.txt.gz"));
        let (t, source) = table(&elf, release);
        assert_eq!(t.format().number(), version, "{release}");
        // 6.12 names its format through .orc_header; 6.1 has none.
        let want_source = if version == 3 { FormatSource::Header } else { FormatSource::Release };
        assert_eq!(source, want_source, "{release}");

        let mut line = String::new();
        let mut n = 0usize;
        for ((ip, e), want) in t.iter().zip(golden.lines()) {
            line.clear();
            objtool::push_line(&mut line, ip, &e, t.format());
            assert_eq!(line.trim_end(), want, "{release}: entry {n}");
            n += 1;
        }
        assert_eq!(n, golden.lines().count(), "{release}: entry count");
        assert!(n > 300_000, "{release}: a real kernel has hundreds of thousands of entries");
    }
}

#[test]
fn lookup_agrees_with_linear_scan_on_real_tables() {
    for &(release, _) in common::KERNELS {
        let elf = common::read(&format!("orc/vmlinux-{release}.orc.elf"));
        let (t, _) = table(&elf, release);
        let ips: Vec<u64> = t.iter().map(|(ip, _)| ip).collect();
        // Every 97th entry, probed at, before and after its ip.
        for i in (1..ips.len()).step_by(97) {
            for probe in [ips[i] - 1, ips[i], ips[i] + 1] {
                let want = ips.partition_point(|&ip| ip <= probe) - 1;
                assert_eq!(t.find_index(probe), Some(want), "{release}: {probe:#x}");
                assert_eq!(t.find(probe), t.get(want).map(|g| g.1));
            }
        }
        assert_eq!(t.find_index(ips[0] - 1), None);
    }
}

#[test]
fn wrong_explicit_format_changes_the_decoding() {
    // A v1 table read as v3 must not print like objtool: the format matters.
    let release = "6.1.0-57-amd64";
    let elf = common::read(&format!("orc/vmlinux-{release}.orc.elf"));
    let s = orc_sections(&elf).unwrap();
    let t = OrcTable::new(s.ips, s.entries, s.ips_addr, OrcFormat::V3).unwrap();
    let golden = common::read_gz(&format!("orc/vmlinux-{release}.objtool-orc.txt.gz"));
    let mut line = String::new();
    let (ip, e) = t.get(0).unwrap();
    objtool::push_line(&mut line, ip, &e, t.format());
    assert_ne!(line.trim_end(), golden.lines().next().unwrap());
    // And a 6.12 table without its header is refused rather than guessed.
    let elf = common::read("orc/vmlinux-6.12.117+deb12-amd64.orc.elf");
    let mut s = orc_sections(&elf).unwrap();
    s.header = None;
    assert!(choose_format(&s, None, Some("6.12.117+deb12-amd64")).is_err());
}

#[test]
fn module_dump_matches_objtool() {
    // Real out-of-tree modules built against Debian's 6.12 and 6.1 headers:
    // entries are named by relocation (`.text+1c:`) as objtool does, and
    // the format comes from .orc_header (6.12) or vermagic (6.1).
    use lpstack::orc::elf::{decode, module_entries, module_format};
    let mut checked = 0;
    for &(release, version) in common::KERNELS {
        for module in ["lpstack_park", "lpstack_lp"] {
            let ko = common::read(&format!("vmcore/{release}/{module}.ko"));
            let golden =
                String::from_utf8(common::read(&format!("vmcore/{release}/{module}.objtool-orc.txt"))).unwrap();
            let format = module_format(&ko, None).unwrap();
            assert_eq!(format.number(), version);
            let entries = module_entries(&ko).unwrap();
            let mut out = String::new();
            for e in &entries {
                objtool::push_reloc_line(&mut out, &e.symbol, e.addend, &decode(e, format), format);
            }
            assert_eq!(out, golden, "{release} {module}");
            assert!(entries.len() >= 4, "{release} {module}: {}", entries.len());
            checked += 1;
        }
    }
    assert_eq!(checked, 4);
}
