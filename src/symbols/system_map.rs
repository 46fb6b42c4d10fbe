//! System.map (`nm -n` output): `ffffffff81000000 T _stext` per line.

use super::table::{SymbolError, SymbolKind, SymbolSize, SymbolTable};

/// Parses System.map text into a finished table for `object`.
///
/// Sizes are not in the file, so they are inferred like kallsyms does (see
/// [`SymbolTable::finish`]). Types `T t W w` are text; `A a` absolute
/// (kept for name lookups only); `U` (undefined, no address of its own) is
/// skipped. Every other letter (and `?`) is data. Lines must have exactly three
/// fields: the `[module]` column of `/proc/kallsyms` is not accepted, since
/// a table holds one object.
pub fn parse_system_map(object: &str, text: &str) -> Result<SymbolTable, SymbolError> {
    let mut table = SymbolTable::new(object);
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let mut fields = line.split_ascii_whitespace();
        let (address, kind, name) = match (fields.next(), fields.next(), fields.next(), fields.next()) {
            (None, ..) => continue,
            (Some(address), Some(kind), Some(name), None) => (address, kind, name),
            _ => return Err(SymbolError::MalformedLine { line: line_number }),
        };
        let address = parse_hex(address).ok_or(SymbolError::InvalidAddress { line: line_number })?;
        let Some(kind) = symbol_kind(kind, line_number)? else { continue };
        table.push_symbol(name, address, SymbolSize::Unknown, kind);
    }
    table.finish();
    Ok(table)
}

/// The kind of an `nm` type letter; None for `U` (undefined: no address
/// of its own).
fn symbol_kind(kind: &str, line: usize) -> Result<Option<SymbolKind>, SymbolError> {
    let mut chars = kind.chars();
    let kind = match (chars.next(), chars.next()) {
        (Some(kind), None) => kind,
        _ => return Err(SymbolError::MalformedLine { line }),
    };
    Ok(Some(match kind {
        'T' | 't' | 'W' | 'w' => SymbolKind::Text,
        'A' | 'a' => SymbolKind::Absolute,
        'U' => return Ok(None),
        kind if kind.is_ascii_alphabetic() || kind == '?' => SymbolKind::Data,
        kind => return Err(SymbolError::InvalidType { line, kind }),
    }))
}

/// `/proc/kallsyms` of a running kernel: vmlinux symbols in kallsyms order
/// (which `sympos` counts in), at their run-time (KASLR) addresses.
#[derive(Clone, Debug)]
pub struct ProcKallsyms {
    /// The vmlinux symbols, in kallsyms order, at run-time addresses.
    pub vmlinux: SymbolTable,
    /// Lines with a `[module]` column (modules, bpf, ftrace trampolines):
    /// counted, not kept; module symbols are read with the modules.
    pub module_lines: usize,
    /// Lines whose address is not zero. With `kptr_restrict` hiding
    /// addresses from the reader, every address reads as zero.
    pub nonzero: usize,
}

/// Parses `/proc/kallsyms` text: `addr type name [module]` per line.
pub fn parse_proc_kallsyms(text: &str) -> Result<ProcKallsyms, SymbolError> {
    let mut vmlinux = SymbolTable::new("vmlinux");
    let (mut module_lines, mut nonzero) = (0, 0);
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let mut fields = line.split_ascii_whitespace();
        let (address, kind, name, module) =
            match (fields.next(), fields.next(), fields.next(), fields.next(), fields.next()) {
                (None, ..) => continue,
                (Some(a), Some(k), Some(n), m, None) => (a, k, n, m),
                _ => return Err(SymbolError::MalformedLine { line: line_number }),
            };
        let address = parse_hex(address).ok_or(SymbolError::InvalidAddress { line: line_number })?;
        if address != 0 {
            nonzero += 1;
        }
        if module.is_some() {
            module_lines += 1;
            continue;
        }
        let Some(kind) = symbol_kind(kind, line_number)? else { continue };
        vmlinux.push_symbol(name, address, SymbolSize::Unknown, kind);
    }
    vmlinux.finish();
    Ok(ProcKallsyms { vmlinux, module_lines, nonzero })
}

/// Bare hex digits (no `0x`), at most 16 of them.
fn parse_hex(digits: &str) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = "\
0000000000000000 D __per_cpu_start
0000000000000000 A some_absolute
ffffffff81000000 T _stext
ffffffff81000000 T _text
ffffffff81001000 t __pfx_do_one_initcall
ffffffff81001010 T do_one_initcall

ffffffff81001100 t __pfx_show_cpuinfo
ffffffff81001110 t show_cpuinfo
ffffffff81001200 t show_cpuinfo
ffffffff81001300 W weak_fn
ffffffff81002000 T _etext
ffffffff82000000 D some_data
ffffffff82000100 r some_rodata
";

    #[test]
    fn parses_and_looks_up() {
        let table = parse_system_map("vmlinux", MAP);
        let table = match table {
            Ok(table) => table,
            Err(error) => panic!("{error}"),
        };
        assert_eq!(table.object(), "vmlinux");
        assert_eq!(table.len(), 13);
        // Aliases at 0xffffffff81000000: first in source order.
        let hit = table.lookup(0xffff_ffff_8100_0010);
        assert_eq!(hit.map(|s| (s.name, s.offset, s.size)), Some(("_stext", 0x10, 0x1000)));
        assert_eq!(table.lookup(0xffff_ffff_8100_1010).map(|s| s.name), Some("do_one_initcall"));
        assert_eq!(
            table.lookup(0xffff_ffff_8100_1208).map(|s| (s.name, s.address)),
            Some(("show_cpuinfo", 0xffff_ffff_8100_1200))
        );
        assert_eq!(table.lookup(0xffff_ffff_8100_1300).map(|s| s.name), Some("weak_fn"));
        // Data is not looked up, even though it has an inferred size.
        assert_eq!(table.lookup(0xffff_ffff_8200_0000), None);
        // Percpu symbols at 0: the gap to text is too big for a size.
        assert_eq!(table.symbols()[0].size, 0);
        assert_eq!(table.find_by_name("show_cpuinfo").count(), 2);
        assert_eq!(table.find_by_name("some_absolute").count(), 1);
    }

    #[test]
    fn proc_kallsyms_modules_apart_and_hidden_addresses_counted() {
        let text = "0000000000000000 A fixed_percpu_data\n\
ffffffff9a000000 T _stext\n\
ffffffff9a000100 t show_cpuinfo\n\
ffffffffc0a01000 t park_here_a\t[lpstack_park]\n\
ffffffffc0a01100 T park_here_b\t[lpstack_park]\n";
        let k = parse_proc_kallsyms(text).unwrap();
        assert_eq!((k.vmlinux.len(), k.module_lines, k.nonzero), (3, 2, 4));
        assert_eq!(k.vmlinux.find_by_name("show_cpuinfo").next().map(|s| s.address), Some(0xffff_ffff_9a00_0100));
        assert_eq!(k.vmlinux.find_by_name("park_here_a").count(), 0);
        // kptr_restrict: same lines, all addresses zero.
        let hidden: String = text.lines().map(|l| format!("0000000000000000{}\n", &l[16..])).collect();
        assert_eq!(parse_proc_kallsyms(&hidden).unwrap().nonzero, 0);
        assert_eq!(
            parse_proc_kallsyms("ffffffff9a000000 T a [m] extra\n").err(),
            Some(SymbolError::MalformedLine { line: 1 })
        );
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            parse_system_map("vmlinux", "ffffffff81000000 T a\nffffffff81000010 T\n").err(),
            Some(SymbolError::MalformedLine { line: 2 })
        );
        assert_eq!(
            parse_system_map("vmlinux", "\n\nffffffff81000000 T a extra\n").err(),
            Some(SymbolError::MalformedLine { line: 3 })
        );
        assert_eq!(
            parse_system_map("vmlinux", "0xffffffff81000000 T a\n").err(),
            Some(SymbolError::InvalidAddress { line: 1 })
        );
        assert_eq!(
            parse_system_map("vmlinux", "1ffffffff81000000 T a\n").err(),
            Some(SymbolError::InvalidAddress { line: 1 })
        );
        assert_eq!(
            parse_system_map("vmlinux", "ffffffff81000000 TT a\n").err(),
            Some(SymbolError::MalformedLine { line: 1 })
        );
        assert_eq!(
            parse_system_map("vmlinux", "ffffffff81000000 T a\nffffffff81000000 % b\n").err(),
            Some(SymbolError::InvalidType { line: 2, kind: '%' })
        );
        let message = SymbolError::InvalidAddress { line: 7 }.to_string();
        assert!(message.contains("line 7"), "{message}");
    }

    #[test]
    fn undefined_symbols_are_skipped() {
        let table = parse_system_map("vmlinux", "                 U undefined\nffffffff81000000 T a\n");
        // "U" lines in nm output have no address column at all.
        assert_eq!(table.err(), Some(SymbolError::MalformedLine { line: 1 }));
        let table = parse_system_map("vmlinux", "0000000000000000 U undefined\nffffffff81000000 T a\n");
        assert_eq!(table.map(|t| t.len()), Ok(1));
    }
}
