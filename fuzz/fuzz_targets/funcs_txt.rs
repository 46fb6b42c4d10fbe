//! funcs.txt (`[object:]function[,sympos]` lines) resolved against a
//! System.map, both directions, and the set's address index.
//!
//! Input: a u32-length-prefixed System.map text, then funcs.txt text; a
//! second funcs.txt after a form feed is the replacement set.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lpstack::patchset::{PatchSet, parse_funcs};
use lpstack::symbols::{Symbolizer, parse_system_map};

mod common;
use common::Input;

fn check_index(set: &PatchSet) {
    for f in set.funcs() {
        for pc in [f.address, f.address.saturating_add(f.size - 1)] {
            if !f.contains(pc) {
                continue;
            }
            let all: Vec<usize> = set.find_all(pc).collect();
            assert!(!all.is_empty(), "{:#x} in {} not found", pc, f.function);
            for i in &all {
                assert!(set.funcs()[*i].contains(pc), "find_all({pc:#x}) gave {i}, which does not hold it");
            }
            let first = set.find(pc).unwrap_or_else(|| panic!("find({pc:#x}) found nothing"));
            assert_eq!(Some(&first), all.iter().min(), "find is the lowest index");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let map = String::from_utf8_lossy(input.chunk()).into_owned();
    let text = String::from_utf8_lossy(input.rest()).into_owned();
    let (old, new) = match text.split_once('\x0c') {
        Some((a, b)) => (a, Some(b)),
        None => (text.as_str(), None),
    };
    let Ok(old) = parse_funcs(old, "vmlinux") else { return };
    let mut symbols = Symbolizer::new();
    if let Ok(t) = parse_system_map("vmlinux", &map) {
        symbols.add(t);
    }
    if let Ok(set) = PatchSet::resolve(&old, &symbols) {
        check_index(&set);
    }
    if let Some(Ok(new)) = new.map(|n| parse_funcs(n, "vmlinux")) {
        if let Ok(set) = PatchSet::resolve_new(&old, &new, &symbols) {
            check_index(&set);
        }
    }
});
