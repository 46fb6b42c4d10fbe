//! A minimal ELF holding CFI, for tests and fuzz targets alike (the fuzz
//! crate includes this file by path). Std only.

/// A minimal x86-64 ELF (ET_DYN, section headers only) holding `cfi` as
/// `.eh_frame` (or `.debug_frame`) at `cfi_addr`, and a NOBITS `.text` at
/// `text_addr`: the CFI bytes reach the compiler with real addresses.
pub fn elf_with_cfi(cfi: &[u8], debug_frame: bool, cfi_addr: u64, text_addr: u64, text_size: u64) -> Vec<u8> {
    let shstrtab: &[u8] = b"\0.text\0.eh_frame\0.debug_frame\0.shstrtab\0";
    let (text_name, cfi_name, shstr_name) = (1u32, if debug_frame { 17 } else { 7 }, 30u32);
    let mut out = vec![0u8; 64];
    let cfi_off = out.len() as u64;
    out.extend_from_slice(cfi);
    let str_off = out.len() as u64;
    out.extend_from_slice(shstrtab);
    while out.len() % 8 != 0 {
        out.push(0);
    }
    let shoff = out.len() as u64;
    let mut sh = |name: u32, ty: u32, flags: u64, addr: u64, off: u64, size: u64| {
        out.extend_from_slice(&name.to_le_bytes());
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&addr.to_le_bytes());
        out.extend_from_slice(&off.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&[0u8; 8]); // link, info
        out.extend_from_slice(&1u64.to_le_bytes()); // addralign
        out.extend_from_slice(&0u64.to_le_bytes()); // entsize
    };
    sh(0, 0, 0, 0, 0, 0);
    sh(text_name, 8 /* NOBITS */, 6, text_addr, 0, text_size);
    let cfi_flags = if debug_frame { 0 } else { 2 };
    sh(cfi_name, 1, cfi_flags, if debug_frame { 0 } else { cfi_addr }, cfi_off, cfi.len() as u64);
    sh(shstr_name, 3, 0, 0, str_off, shstrtab.len() as u64);
    let mut h = Vec::with_capacity(64);
    h.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    h.extend_from_slice(&3u16.to_le_bytes()); // ET_DYN
    h.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&0u64.to_le_bytes()); // entry
    h.extend_from_slice(&0u64.to_le_bytes()); // phoff
    h.extend_from_slice(&shoff.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&64u16.to_le_bytes());
    h.extend_from_slice(&56u16.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes()); // phnum
    h.extend_from_slice(&64u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes()); // shnum
    h.extend_from_slice(&3u16.to_le_bytes()); // shstrndx
    out[..64].copy_from_slice(&h);
    out
}
