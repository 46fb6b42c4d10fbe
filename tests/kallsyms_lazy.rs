//! The kernel's symbols read from a real dump's kallsyms: on 6.12 (which
//! keeps `kallsyms_seqs_of_names`) names are decoded on demand, and every
//! answer must equal the fully decoded table's; on 6.1 (no name order)
//! every name is decoded up front.

mod common;

use lpstack::dump::Dump;
use lpstack::kernel::image::{Kernel, OpenOptions};
use lpstack::symbols::{SymbolKind, SymbolRef, SymbolTable};

fn vmlinux_table(dir: &str) -> SymbolTable {
    let bytes = common::read(&format!("vmcore/{dir}/vmcore.trimmed.kdump"));
    let dump = Dump::open(&bytes).unwrap();
    let vi = dump.vmcoreinfo().cloned().unwrap();
    let kernel = Kernel::open(dump, &vi, OpenOptions::default()).unwrap();
    kernel.symbols().table("vmlinux").unwrap().clone()
}

fn owned(s: Option<SymbolRef<'_>>) -> Option<(String, u64, u64, u64, SymbolKind)> {
    s.map(|s| (s.name.to_string(), s.address, s.size, s.offset, s.kind))
}

#[test]
fn lazy_kallsyms_answers_as_the_fully_decoded_table() {
    let lazy = vmlinux_table("6.12.117+deb12-amd64");
    assert!(lazy.is_lazy(), "6.12 has kallsyms_seqs_of_names: names should be decoded on demand");
    // The same symbols, every one decoded and indexed up front.
    let mut eager = lazy.clone();
    eager.finish();
    assert!(!eager.is_lazy());
    assert_eq!(lazy.len(), eager.len());
    assert!(lazy.len() > 100_000, "{} symbols", lazy.len());

    // By name: every name, with duplicates in source order (sympos).
    let mut names: Vec<&str> = eager.iter().map(|s| s.name).collect();
    names.sort_unstable();
    names.dedup();
    let mut duplicated = 0;
    for name in &names {
        let want: Vec<_> = eager.find_by_name(name).map(|s| (s.address, s.size, s.kind)).collect();
        let got: Vec<_> = lazy.find_by_name(name).map(|s| (s.address, s.size, s.kind)).collect();
        assert_eq!(got, want, "find_by_name({name})");
        duplicated += usize::from(want.len() > 1);
    }
    assert!(duplicated > 100, "only {duplicated} names occur more than once");
    assert_eq!(lazy.find_by_name("no_such_symbol_anywhere").count(), 0);

    // By address: each symbol's start, start + 1, last byte, end, and
    // addresses between symbols and outside the kernel.
    let mut probes = vec![0, 1, u64::MAX, 0xffffffff80000000];
    for s in eager.iter() {
        probes.extend([s.address, s.address.wrapping_add(1), s.address.wrapping_add(s.size.max(1) - 1)]);
        probes.push(s.address.wrapping_add(s.size));
        probes.push(s.address.wrapping_sub(1));
    }
    let mut hits = 0;
    for &pc in &probes {
        let want = owned(eager.lookup(pc));
        assert_eq!(owned(lazy.lookup(pc)), want, "lookup({pc:#x})");
        hits += usize::from(want.is_some());
    }
    assert!(hits > probes.len() / 2, "{hits} of {} probes hit", probes.len());
}

#[test]
fn kallsyms_without_a_name_order_is_decoded_up_front() {
    let table = vmlinux_table("6.1.0-57-amd64");
    assert!(!table.is_lazy(), "6.1 has no kallsyms_seqs_of_names");
    let stext = table.find_by_name("_stext").next().unwrap();
    assert_eq!(stext.kind, SymbolKind::Text);
    assert_eq!(table.lookup(stext.address).map(|s| s.address), Some(stext.address));
}
