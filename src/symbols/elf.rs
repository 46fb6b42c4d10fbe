//! Symbols from an ELF file's `.symtab` (or `.dynsym` when stripped).

use object::{FileKind, Object, ObjectSection, ObjectSymbol, ObjectSymbolTable, SectionKind, SymbolSection};

use super::table::{SymbolError, SymbolKind, SymbolSize, SymbolTable};

/// Reads the symbols of an ELF file (32- or 64-bit, either endianness) into
/// a finished table, in symtab order.
///
/// `.symtab` is used if present, else `.dynsym`. Undefined, section and
/// file symbols are skipped, as are ARM/AArch64 mapping symbols (`$x`,
/// `$d`...) which mark instruction/data runs rather than name anything.
/// Text = `STT_FUNC`/`STT_GNU_IFUNC`, or `STT_NOTYPE` in an executable
/// section (assembly entry points such as the kernel's `SYM_CODE_START`
/// ones). Sizes are `st_size` as given: a zero-size symbol matches only its
/// own address. TLS and `SHN_ABS` values are offsets/constants, not
/// addresses, so they are kept as absolute symbols.
///
/// Addresses are `st_value` unchanged: link-time addresses for executables
/// and shared objects (see [`SymbolTable::rebase`]), section offsets for
/// relocatable files such as `.ko` modules.
pub fn symbols_from_elf(object: &str, data: &[u8]) -> Result<SymbolTable, SymbolError> {
    match FileKind::parse(data) {
        Ok(FileKind::Elf32 | FileKind::Elf64) => {}
        _ => return Err(SymbolError::NotElf),
    }
    let file = object::File::parse(data)?;
    let symbols = file.symbol_table().or_else(|| file.dynamic_symbol_table()).ok_or(SymbolError::NoSymbolTable)?;

    let mut table = SymbolTable::new(object);
    for symbol in symbols.symbols() {
        let kind = match symbol.section() {
            SymbolSection::Undefined | SymbolSection::None | SymbolSection::Unknown => continue,
            SymbolSection::Absolute => SymbolKind::Absolute,
            SymbolSection::Common => SymbolKind::Data,
            SymbolSection::Section(section_index) => match symbol.kind() {
                object::SymbolKind::Section | object::SymbolKind::File => continue,
                object::SymbolKind::Text => SymbolKind::Text,
                object::SymbolKind::Tls => SymbolKind::Absolute,
                object::SymbolKind::Unknown | object::SymbolKind::Label => {
                    let executable =
                        file.section_by_index(section_index).is_ok_and(|section| section.kind() == SectionKind::Text);
                    if executable { SymbolKind::Text } else { SymbolKind::Data }
                }
                _ => SymbolKind::Data,
            },
            _ => continue,
        };
        let name = std::str::from_utf8(symbol.name_bytes()?)
            .map_err(|_| SymbolError::NonUtf8Name { index: symbol.index().0 })?;
        if name.is_empty() || name.starts_with('$') {
            continue;
        }
        table.push_symbol(name, symbol.address(), SymbolSize::Known(symbol.size()), kind);
    }
    table.finish();
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The crate's `object` dependency is built without the `write` feature,
    // so the test ELF files are assembled by hand: just enough of an
    // x86_64 ELF64 (header, .text, .data, a symbol table, string tables).

    const STB_LOCAL: u8 = 0;
    const STB_GLOBAL: u8 = 1;
    const STT_NOTYPE: u8 = 0;
    const STT_OBJECT: u8 = 1;
    const STT_FUNC: u8 = 2;
    const STT_SECTION: u8 = 3;
    const STT_FILE: u8 = 4;
    const SHN_ABS: u16 = 0xfff1;
    const SHT_PROGBITS: u32 = 1;
    const SHT_SYMTAB: u32 = 2;
    const SHT_STRTAB: u32 = 3;
    const SHT_DYNSYM: u32 = 11;
    const TEXT: u16 = 1;
    const DATA: u16 = 2;

    struct TestSymbol {
        name: &'static str,
        bind: u8,
        kind: u8,
        section: u16,
        value: u64,
        size: u64,
    }

    fn sym(name: &'static str, bind: u8, kind: u8, section: u16, value: u64, size: u64) -> TestSymbol {
        TestSymbol { name, bind, kind, section, value, size }
    }

    fn string_table(names: &[&str]) -> (Vec<u8>, Vec<u32>) {
        let mut bytes = vec![0u8];
        let mut offsets = Vec::new();
        for name in names {
            if name.is_empty() {
                offsets.push(0);
                continue;
            }
            offsets.push(bytes.len() as u32);
            bytes.extend_from_slice(name.as_bytes());
            bytes.push(0);
        }
        (bytes, offsets)
    }

    struct Section {
        name: &'static str,
        kind: u32,
        flags: u64,
        address: u64,
        data: Vec<u8>,
        link: u32,
        info: u32,
        entry_size: u64,
    }

    /// ELF64 LE ET_DYN with .text at 0x1000 (0x100 bytes), .data at 0x2000,
    /// and `symbols` (after the null symbol) in a section of type
    /// `symtab_type`, or no symbol table at all if `None`.
    fn build_elf(symtab_type: Option<u32>, symbols: &[TestSymbol]) -> Vec<u8> {
        let mut sections = vec![
            Section {
                name: ".text",
                kind: SHT_PROGBITS,
                flags: 0x6,
                address: 0x1000,
                data: vec![0xcc; 0x100],
                link: 0,
                info: 0,
                entry_size: 0,
            },
            Section {
                name: ".data",
                kind: SHT_PROGBITS,
                flags: 0x3,
                address: 0x2000,
                data: vec![0; 0x10],
                link: 0,
                info: 0,
                entry_size: 0,
            },
        ];
        if let Some(symtab_type) = symtab_type {
            let names: Vec<&str> = symbols.iter().map(|s| s.name).collect();
            let (strtab, name_offsets) = string_table(&names);
            let mut symtab = vec![0u8; 24];
            for (symbol, name) in symbols.iter().zip(name_offsets) {
                symtab.extend_from_slice(&name.to_le_bytes());
                symtab.push((symbol.bind << 4) | symbol.kind);
                symtab.push(0);
                symtab.extend_from_slice(&symbol.section.to_le_bytes());
                symtab.extend_from_slice(&symbol.value.to_le_bytes());
                symtab.extend_from_slice(&symbol.size.to_le_bytes());
            }
            let first_global = 1 + symbols.iter().take_while(|s| s.bind == STB_LOCAL).count() as u32;
            let dynamic = symtab_type == SHT_DYNSYM;
            let strtab_index = sections.len() as u32 + 2; // after null and the symtab
            sections.push(Section {
                name: if dynamic { ".dynsym" } else { ".symtab" },
                kind: symtab_type,
                flags: 0,
                address: 0,
                data: symtab,
                link: strtab_index,
                info: first_global,
                entry_size: 24,
            });
            sections.push(Section {
                name: if dynamic { ".dynstr" } else { ".strtab" },
                kind: SHT_STRTAB,
                flags: 0,
                address: 0,
                data: strtab,
                link: 0,
                info: 0,
                entry_size: 0,
            });
        }
        let mut section_names: Vec<&str> = sections.iter().map(|s| s.name).collect();
        section_names.push(".shstrtab");
        let (shstrtab, shname_offsets) = string_table(&section_names);
        sections.push(Section {
            name: ".shstrtab",
            kind: SHT_STRTAB,
            flags: 0,
            address: 0,
            data: shstrtab,
            link: 0,
            info: 0,
            entry_size: 0,
        });

        let mut file = vec![0u8; 64];
        let mut offsets = Vec::new();
        for section in &sections {
            while !file.len().is_multiple_of(8) {
                file.push(0);
            }
            offsets.push(file.len() as u64);
            file.extend_from_slice(&section.data);
        }
        while !file.len().is_multiple_of(8) {
            file.push(0);
        }
        let section_headers_offset = file.len() as u64;
        file.extend_from_slice(&[0u8; 64]); // null section header
        for ((section, offset), name) in sections.iter().zip(&offsets).zip(&shname_offsets) {
            file.extend_from_slice(&name.to_le_bytes());
            file.extend_from_slice(&section.kind.to_le_bytes());
            file.extend_from_slice(&section.flags.to_le_bytes());
            file.extend_from_slice(&section.address.to_le_bytes());
            file.extend_from_slice(&offset.to_le_bytes());
            file.extend_from_slice(&(section.data.len() as u64).to_le_bytes());
            file.extend_from_slice(&section.link.to_le_bytes());
            file.extend_from_slice(&section.info.to_le_bytes());
            file.extend_from_slice(&8u64.to_le_bytes());
            file.extend_from_slice(&section.entry_size.to_le_bytes());
        }
        let section_count = sections.len() as u16 + 1;
        let mut header = Vec::with_capacity(64);
        header.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        header.extend_from_slice(&3u16.to_le_bytes()); // ET_DYN
        header.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        header.extend_from_slice(&1u32.to_le_bytes());
        header.extend_from_slice(&0x1000u64.to_le_bytes()); // entry
        header.extend_from_slice(&0u64.to_le_bytes()); // no program headers
        header.extend_from_slice(&section_headers_offset.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&64u16.to_le_bytes());
        header.extend_from_slice(&56u16.to_le_bytes());
        header.extend_from_slice(&0u16.to_le_bytes());
        header.extend_from_slice(&64u16.to_le_bytes());
        header.extend_from_slice(&section_count.to_le_bytes());
        header.extend_from_slice(&(section_count - 1).to_le_bytes()); // .shstrtab is last
        file[..64].copy_from_slice(&header);
        file
    }

    fn sample_symbols() -> Vec<TestSymbol> {
        vec![
            sym("test.c", STB_LOCAL, STT_FILE, SHN_ABS, 0, 0),
            sym("", STB_LOCAL, STT_SECTION, TEXT, 0x1000, 0),
            sym("local_fn", STB_LOCAL, STT_FUNC, TEXT, 0x1000, 0x20),
            sym("$x", STB_LOCAL, STT_NOTYPE, TEXT, 0x1000, 0),
            sym("entry_asm", STB_GLOBAL, STT_NOTYPE, TEXT, 0x1020, 0x30),
            sym("global_fn", STB_GLOBAL, STT_FUNC, TEXT, 0x1050, 0x40),
            sym("alias_fn", STB_GLOBAL, STT_FUNC, TEXT, 0x1050, 0x40),
            sym("a_var", STB_GLOBAL, STT_OBJECT, DATA, 0x2000, 8),
            sym("undefined_fn", STB_GLOBAL, STT_FUNC, 0, 0, 0),
            sym("abs_value", STB_GLOBAL, STT_NOTYPE, SHN_ABS, 0x1090, 0),
            sym("zero_size_fn", STB_GLOBAL, STT_FUNC, TEXT, 0x10a0, 0),
            sym("local_fn", STB_GLOBAL, STT_FUNC, TEXT, 0x10c0, 0x10),
        ]
    }

    fn parse(data: &[u8]) -> SymbolTable {
        match symbols_from_elf("libtest.so", data) {
            Ok(table) => table,
            Err(error) => panic!("{error}"),
        }
    }

    #[test]
    fn reads_symtab_in_order_skipping_non_symbols() {
        let table = parse(&build_elf(Some(SHT_SYMTAB), &sample_symbols()));
        let listed: Vec<(&str, u64, u64)> = table.iter().map(|s| (s.name, s.address, s.size)).collect();
        assert_eq!(
            listed,
            [
                ("local_fn", 0x1000, 0x20),
                ("entry_asm", 0x1020, 0x30),
                ("global_fn", 0x1050, 0x40),
                ("alias_fn", 0x1050, 0x40),
                ("a_var", 0x2000, 8),
                ("abs_value", 0x1090, 0),
                ("zero_size_fn", 0x10a0, 0),
                ("local_fn", 0x10c0, 0x10),
            ]
        );
        let kinds: Vec<SymbolKind> = table.symbols().iter().map(|s| s.kind()).collect();
        use SymbolKind::*;
        assert_eq!(kinds, [Text, Text, Text, Text, Data, Absolute, Text, Text]);
    }

    #[test]
    fn lookups_use_st_size() {
        let table = parse(&build_elf(Some(SHT_SYMTAB), &sample_symbols()));
        assert_eq!(table.lookup(0x101f).map(|s| s.name), Some("local_fn"));
        assert_eq!(table.lookup(0x1049).map(|s| (s.name, s.offset)), Some(("entry_asm", 0x29)));
        assert_eq!(table.lookup(0x1060).map(|s| s.name), Some("global_fn"));
        // Between symbols; the absolute value at 0x1090 is not code.
        assert_eq!(table.lookup(0x1090), None);
        // st_size 0 is not inferred for ELF: exact address only.
        assert_eq!(table.lookup(0x10a0).map(|s| s.name), Some("zero_size_fn"));
        assert_eq!(table.lookup(0x10a1), None);
        assert_eq!(table.lookup(0x2000), None);
        assert_eq!(table.find_by_name("local_fn").map(|s| s.address).collect::<Vec<_>>(), [0x1000, 0x10c0]);
    }

    #[test]
    fn falls_back_to_dynsym() {
        let table = parse(&build_elf(Some(SHT_DYNSYM), &sample_symbols()[4..]));
        assert_eq!(table.object(), "libtest.so");
        assert_eq!(table.len(), 7);
        assert_eq!(table.lookup(0x1051).map(|s| s.name), Some("global_fn"));
    }

    #[test]
    fn errors() {
        assert_eq!(symbols_from_elf("x", b"not an elf file").err(), Some(SymbolError::NotElf));
        assert_eq!(symbols_from_elf("x", &build_elf(None, &[])).err(), Some(SymbolError::NoSymbolTable));
        let mut truncated = build_elf(Some(SHT_SYMTAB), &sample_symbols());
        truncated.truncate(200);
        assert!(matches!(symbols_from_elf("x", &truncated), Err(SymbolError::Elf(_))));
    }
}
