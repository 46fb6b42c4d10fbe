//! ORC sections and header bytes: a vmlinux-style ELF file (the input as
//! is), or raw `.orc_unwind_ip` / `.orc_unwind` / `.orc_header` bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lpstack::orc::elf::{module_entries, module_format, module_table, orc_sections, vmlinux_table};
use lpstack::orc::objtool::push_line;
use lpstack::orc::{OrcFinder, OrcFormat, OrcTable, format_from_header};

mod common;
use common::Input;

fn exercise(table: &OrcTable<'_>, probes: &[u64]) {
    let (first, last) = (table.first_ip(), table.last_ip());
    assert!(first <= last);
    let mut line = String::new();
    for (ip, e) in table.iter().take(64) {
        line.clear();
        push_line(&mut line, ip, &e, table.format());
    }
    for &ip in probes.iter().chain(&[first, last, first.wrapping_sub(1), last.wrapping_add(1), u64::MAX, 0]) {
        if let Some(i) = table.find_index(ip) {
            // The rightmost entry at or below ip.
            let (at, _) = table.get(i).unwrap_or_else(|| panic!("index {i} past {}", table.len()));
            assert!(at <= ip, "entry {i} at {at:#x} for ip {ip:#x}");
            if let Some((next, _)) = table.get(i + 1) {
                assert!(next > ip, "entry {} at {next:#x} also fits {ip:#x}", i + 1);
            }
        }
        let _ = table.find(ip);
    }
}

fn format(b: u8) -> OrcFormat {
    match b % 3 {
        0 => OrcFormat::V1,
        1 => OrcFormat::V2,
        _ => OrcFormat::V3,
    }
}

fuzz_target!(|data: &[u8]| {
    if data.starts_with(b"\x7fELF") {
        // A whole file, as `lpstack orc` reads it.
        if let Ok(s) = orc_sections(data) {
            if let Some(h) = s.header {
                let _ = format_from_header(h);
            }
        }
        for explicit in [None, Some(OrcFormat::V1)] {
            for release in [None, Some("6.1.0"), Some("6.12.117")] {
                if let Ok(t) = vmlinux_table(data, explicit, release) {
                    exercise(&t, &[]);
                }
            }
        }
        if let Ok(entries) = module_entries(data) {
            let fmt = module_format(data, None).unwrap_or(OrcFormat::V3);
            if let Ok(t) = module_table(&entries, fmt, |name| Some(name.len() as u64 * 0x1000)) {
                exercise(&t, &[]);
            }
        }
        return;
    }
    let mut input = Input::new(data);
    let fmt = format(input.u8());
    let ip_base = input.u64();
    let header = input.bytes(20);
    let _ = format_from_header(header);
    let n = input.u16() as usize;
    let probes: Vec<u64> = (0..4).map(|_| input.u64()).collect();
    let ips = input.bytes(n * 4);
    let entries = input.rest();
    if let Ok(t) = OrcTable::new(ips, entries, ip_base, fmt) {
        exercise(&t, &probes);
        let cover = t.clone().with_coverage(probes[0].min(probes[1]), probes[0].max(probes[1]));
        exercise(&cover, &probes);
    }
    // The same bytes unsorted, as a module's table before load.
    let pairs: Vec<(u64, [u8; 6])> = ips
        .chunks_exact(4)
        .zip(entries.chunks_exact(6))
        .map(|(i, e)| {
            let rel = i32::from_le_bytes([i[0], i[1], i[2], i[3]]) as i64 as u64;
            (ip_base.wrapping_add(rel), [e[0], e[1], e[2], e[3], e[4], e[5]])
        })
        .collect();
    if let Ok(t) = OrcTable::from_unsorted(pairs, fmt) {
        exercise(&t, &probes);
    }
});
