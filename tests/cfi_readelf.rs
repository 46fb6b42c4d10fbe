//! The compiled CFI table agrees with binutils' own interpretation of the
//! same `.eh_frame` (`readelf --debug-dump=frames-interp`) on real system
//! libraries: every row's CFA, return-address and rbp rules, and every row
//! binutils shows as an expression is a complex row for lpstack.

use std::process::Command;

use lpstack::cfi::{BpRule, CfiTable, Rule};

fn check_file(path: &str) -> (usize, usize) {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let table = CfiTable::from_elf(&data).unwrap();
    let out = Command::new("readelf").args(["-wF", path]).output().expect("readelf (binutils) is needed");
    let text = String::from_utf8_lossy(&out.stdout);
    let (mut simple, mut complex) = (0, 0);
    let mut columns: Vec<String> = Vec::new();
    let mut in_fde = false;
    for line in text.lines() {
        if line.contains(" FDE ") {
            in_fde = true;
            continue;
        }
        if line.contains(" CIE ") || line.trim().is_empty() {
            in_fde = line.trim().is_empty() && in_fde;
            continue;
        }
        if line.trim_start().starts_with("LOC") {
            columns = line.split_whitespace().map(str::to_string).collect();
            continue;
        }
        if !in_fde {
            continue;
        }
        let joined = line.replace(" (", "(");
        let cells: Vec<&str> = joined.split_whitespace().collect();
        if cells[0].len() != 16 || cells.len() != columns.len() {
            continue;
        }
        let Ok(loc) = u64::from_str_radix(cells[0], 16) else { continue };
        let cell = |name: &str| columns.iter().position(|c| c == name).map(|i| cells[i]);
        let row = table.find(loc).unwrap_or_else(|| panic!("{path}: no row at {loc:#x}"));
        let cfa = cell("CFA").unwrap();
        let ra = cell("ra").unwrap_or("u");
        let bp = cell("rbp").unwrap_or("u");
        let parse_c = |s: &str| s.strip_prefix('c').and_then(|n| n.parse::<i32>().ok());
        let expect_simple = (cfa.starts_with("rsp+") || cfa.starts_with("rbp+"))
            && parse_c(ra).is_some()
            && (bp == "u" || bp == "s" || parse_c(bp).is_some());
        match row.rule {
            Rule::Simple(r) => {
                assert!(expect_simple, "{path} {loc:#x}: simple, readelf says {line}");
                let (reg, off) = cfa.split_once('+').unwrap();
                assert_eq!(r.cfa_from_bp, reg == "rbp", "{path} {loc:#x}");
                assert_eq!(r.cfa_offset, off.parse::<i32>().unwrap(), "{path} {loc:#x}");
                assert_eq!(Some(r.ra_offset), parse_c(ra), "{path} {loc:#x}");
                match parse_c(bp) {
                    Some(o) => assert_eq!(r.bp, BpRule::AtCfa(o), "{path} {loc:#x}"),
                    None => assert_eq!(r.bp, BpRule::Same, "{path} {loc:#x}"),
                }
                let others =
                    ["rbx", "r12", "r13", "r14", "r15"].iter().all(|n| matches!(cell(n), None | Some("u") | Some("s")));
                assert_eq!(r.others_unchanged, others, "{path} {loc:#x}: {line}");
                simple += 1;
            }
            Rule::Complex { .. } => {
                assert!(!expect_simple, "{path} {loc:#x}: complex, readelf says {line}");
                complex += 1;
            }
            Rule::Outermost => assert_eq!(ra, "u", "{path} {loc:#x}"),
            Rule::None => panic!("{path} {loc:#x}: none"),
        }
    }
    (simple, complex)
}

#[test]
fn compiled_rows_match_readelf_on_system_libraries() {
    let mut total = 0;
    for path in ["/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libm.so.6", "/usr/bin/ls"] {
        if !std::path::Path::new(path).exists() {
            continue;
        }
        let (simple, complex) = check_file(path);
        assert!(simple > 100, "{path}: {simple} simple rows");
        total += simple + complex;
        eprintln!("{path}: {simple} simple, {complex} complex rows agree with readelf");
    }
    assert!(total > 1000, "libc must have been checked");
}

/// The lazy lookup (lpstack's own CFA-program interpreter, gimli only for
/// what it leaves) gives, at every row of real binaries, the rule gimli
/// compiles for that row; between FDEs it finds nothing, as gimli.
#[test]
fn lazy_lookup_matches_gimli_on_every_row() {
    let mut checked = 0usize;
    for path in [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/ld-linux-x86-64.so.2",
        "/lib/x86_64-linux-gnu/libstdc++.so.6",
        "/usr/bin/gdb",
    ] {
        let Ok(data) = std::fs::read(path) else { continue };
        let table = CfiTable::from_elf(&data).unwrap();
        let rows = table.compile_rows().unwrap();
        assert!(rows.len() > 1000, "{path}: {} rows", rows.len());
        for (i, r) in rows.iter().enumerate() {
            let end = rows.get(i + 1).map_or(r.start + 1, |n| n.start);
            for addr in [r.start, (r.start + end) / 2, end - 1] {
                if addr < r.start {
                    continue;
                }
                let found = table.find(addr);
                match r.rule {
                    Rule::None => assert_eq!(found, None, "{path} {addr:#x}"),
                    rule => {
                        let f = found.unwrap_or_else(|| panic!("{path} {addr:#x}: nothing, gimli: {rule:?}"));
                        assert_eq!((f.rule, f.signal), (rule, r.signal), "{path} {addr:#x}");
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 100_000, "{checked}");
    eprintln!("{checked} addresses agree with gimli");
}
