//! The kernel's own symbol table, decoded from memory: `kallsyms_names`
//! (length-prefixed strings of token indices), `kallsyms_token_table` and
//! `kallsyms_token_index`, and addresses from `kallsyms_offsets` plus
//! `kallsyms_relative_base` (or absolute `kallsyms_addresses`).
//!
//! The offsets have two encodings: "absolute per-cpu" (x86-64 SMP until
//! 6.15: a non-negative offset is an absolute value, a negative one is
//! relative to `relative_base - 1`) and plain unsigned offsets from
//! `relative_base`. Nothing in memory says which, so both are decoded and
//! the one that places known symbols (from VMCOREINFO) where VMCOREINFO
//! says is taken. Neither matching is an error: wrong symbols would make
//! patched functions invisible.

use crate::memory::{read_vec, Memory, MemoryError};
use crate::symbols::{SymbolKind, SymbolSize, SymbolTable};

/// Where the tables are (runtime addresses, e.g. from VMCOREINFO).
#[derive(Clone, Copy, Debug, Default)]
pub struct KallsymsLocation {
    pub num_syms: u64,
    pub names: u64,
    pub token_table: u64,
    pub token_index: u64,
    /// `kallsyms_offsets` (with `relative_base`), or None with `addresses`.
    pub offsets: Option<u64>,
    pub relative_base: Option<u64>,
    pub addresses: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KallsymsError {
    #[error("kallsyms: {0}")]
    Memory(MemoryError),
    #[error("kallsyms_num_syms is {0}, beyond any real kernel")]
    TooMany(u64),
    #[error("kallsyms name {index} at {addr:#x} is malformed")]
    BadName { index: u64, addr: u64 },
    #[error("kallsyms token {index} has no terminator")]
    BadToken { index: u32 },
    #[error("kallsyms: neither offset encoding places {name_hint} at its VMCOREINFO address {want:#x}")]
    NoEncodingMatches { name_hint: &'static str, want: u64 },
    #[error("kallsyms: no offsets or addresses table given")]
    NoAddresses,
}

impl From<MemoryError> for KallsymsError {
    fn from(e: MemoryError) -> Self {
        KallsymsError::Memory(e)
    }
}

/// Reads forward through memory in blocks.
struct Forward<'m, M> {
    mem: &'m mut M,
    next: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl<'m, M: Memory> Forward<'m, M> {
    const BLOCK: usize = 4096;

    fn new(mem: &'m mut M, at: u64) -> Self {
        Forward { mem, next: at, buf: Vec::with_capacity(Self::BLOCK), pos: 0 }
    }

    fn addr(&self) -> u64 {
        self.next - (self.buf.len() - self.pos) as u64
    }

    fn byte(&mut self) -> Result<u8, MemoryError> {
        if self.pos == self.buf.len() {
            // Read up to the next page boundary so one bad page costs one block.
            let n = Self::BLOCK - (self.next as usize % Self::BLOCK);
            self.buf.resize(n, 0);
            self.mem.read(self.next, &mut self.buf)?;
            self.next += n as u64;
            self.pos = 0;
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }
}

/// A check: this symbol must decode at this address.
#[derive(Clone, Copy, Debug)]
pub struct KnownSymbol {
    pub name: &'static str,
    pub address: u64,
}

fn kind_of(type_char: u8) -> SymbolKind {
    match type_char {
        b'T' | b't' | b'W' | b'w' => SymbolKind::Text,
        b'A' | b'a' => SymbolKind::Absolute,
        _ => SymbolKind::Data,
    }
}

/// Decodes every symbol. `known` symbols (at least one) choose the address
/// encoding; see the module comment.
pub fn read_kallsyms<M: Memory>(
    mem: &mut M,
    loc: &KallsymsLocation,
    known: &[KnownSymbol],
) -> Result<SymbolTable, KallsymsError> {
    let mut w = [0u8; 4];
    mem.read(loc.num_syms, &mut w)?;
    let count = u32::from_le_bytes(w) as u64;
    if count == 0 || count > 8_000_000 {
        return Err(KallsymsError::TooMany(count));
    }
    let index_bytes = read_vec(mem, loc.token_index, 512)?;
    let token_index: Vec<u16> = index_bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    let max_index = token_index.iter().copied().max().unwrap_or(0) as usize;
    let token_bytes = read_vec(mem, loc.token_table, max_index + 256)?;
    let mut tokens: Vec<&[u8]> = Vec::with_capacity(256);
    for (i, &start) in token_index.iter().enumerate() {
        let rest = &token_bytes[start as usize..];
        let end = rest.iter().position(|&b| b == 0).ok_or(KallsymsError::BadToken { index: i as u32 })?;
        tokens.push(&rest[..end]);
    }

    // Names, in kallsyms order (which is address order).
    // One string pool instead of a String per symbol: a kernel has ~200k.
    let mut pool = String::new();
    // The count is claimed by the dump: grow with the names actually read.
    let mut names: Vec<(u32, u32, u8)> = Vec::with_capacity((count as usize).min(1 << 14));
    let mut r = Forward::new(mem, loc.names);
    let mut expanded = Vec::with_capacity(256);
    for index in 0..count {
        let at = r.addr();
        let bad = KallsymsError::BadName { index, addr: at };
        let mut len = r.byte()? as usize;
        // Since 6.1, lengths of 128 and more take two bytes (ULEB128-like).
        if len & 0x80 != 0 {
            len = (len & 0x7f) | ((r.byte()? as usize) << 7);
        }
        if len == 0 {
            return Err(bad);
        }
        expanded.clear();
        for _ in 0..len {
            expanded.extend_from_slice(tokens[r.byte()? as usize]);
        }
        let (&type_char, name) = expanded.split_first().ok_or(bad)?;
        let name = std::str::from_utf8(name).map_err(|_| bad)?;
        names.push((pool.len() as u32, name.len() as u32, type_char));
        pool.push_str(name);
    }

    let name_of = |&(start, len, _): &(u32, u32, u8)| &pool[start as usize..(start + len) as usize];
    let addresses = decode_addresses(mem, loc, count as usize, &|i| names.get(i).map(name_of), known)?;
    let mut table = SymbolTable::new("vmlinux");
    for (entry, addr) in names.iter().zip(addresses) {
        let (name, type_char) = (name_of(entry), &entry.2);
        table.push_symbol(name, addr, SymbolSize::Unknown, kind_of(*type_char));
    }
    table.finish();
    Ok(table)
}

fn decode_addresses<'n, M: Memory>(
    mem: &mut M,
    loc: &KallsymsLocation,
    count: usize,
    name: &dyn Fn(usize) -> Option<&'n str>,
    known: &[KnownSymbol],
) -> Result<Vec<u64>, KallsymsError> {
    if let Some(at) = loc.addresses {
        let raw = read_vec(mem, at, count * 8)?;
        return Ok(raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect());
    }
    let (Some(at), Some(base_at)) = (loc.offsets, loc.relative_base) else {
        return Err(KallsymsError::NoAddresses);
    };
    let base = mem.read_u64(base_at)?;
    let raw = read_vec(mem, at, count * 4)?;
    let offsets: Vec<i32> = raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let percpu = |o: i32| if o >= 0 { o as u64 } else { base.wrapping_sub(1).wrapping_sub(o as i64 as u64) };
    let relative = |o: i32| base.wrapping_add(o as u32 as u64);
    // Known symbols that kallsyms lacks are skipped: VMCOREINFO names
    // macros too (x86-64 `swapper_pg_dir` is `init_top_pgt`).
    let present: Vec<(usize, u64)> = known
        .iter()
        .flat_map(|k| (0..count).filter(move |&i| name(i) == Some(k.name)).map(move |i| (i, k.address)))
        .collect();
    let first = known.first().copied().unwrap_or(KnownSymbol { name: "(none)", address: 0 });
    if present.is_empty() {
        return Err(KallsymsError::NoEncodingMatches { name_hint: first.name, want: first.address });
    }
    let check = |f: &dyn Fn(i32) -> u64| {
        known.iter().all(|k| {
            let mut found = present.iter().filter(|&&(i, _)| name(i) == Some(k.name)).peekable();
            found.peek().is_none() || found.any(|&(i, want)| f(offsets[i]) == want)
        })
    };
    if check(&percpu) {
        Ok(offsets.iter().map(|&o| percpu(o)).collect())
    } else if check(&relative) {
        Ok(offsets.iter().map(|&o| relative(o)).collect())
    } else {
        Err(KallsymsError::NoEncodingMatches { name_hint: first.name, want: first.address })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SliceMemory;

    /// Lays out kallsyms tables for (type+name, address) in a byte image.
    fn image(syms: &[(&str, u64)], percpu: bool) -> (Vec<u8>, KallsymsLocation) {
        let base = 0x1000u64; // image address of byte 0
        let mut img = vec![0u8; 0x10000];
        // Tokens: token i is the single byte i for printable bytes, plus
        // token 1 = "_s" to exercise multi-byte tokens.
        let mut table = Vec::new();
        let mut index = Vec::new();
        for i in 0u16..256 {
            index.push(table.len() as u16);
            match i {
                1 => table.extend_from_slice(b"_s"),
                0 | 2..=31 | 127..=255 => table.push(b'?'),
                c => table.push(c as u8),
            }
            table.push(0);
        }
        let mut names = Vec::new();
        for (n, _) in syms {
            let mut enc = Vec::new();
            let b = n.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i..].starts_with(b"_s") {
                    enc.push(1);
                    i += 2;
                } else {
                    enc.push(b[i]);
                    i += 1;
                }
            }
            if enc.len() >= 128 {
                names.push((enc.len() as u8 & 0x7f) | 0x80);
                names.push((enc.len() >> 7) as u8);
            } else {
                names.push(enc.len() as u8);
            }
            names.extend_from_slice(&enc);
        }
        let rel_base = 0xffffffff81000000u64;
        let offsets: Vec<i32> = syms
            .iter()
            .map(|&(_, a)| {
                if percpu {
                    if a < 0x100000 { a as i32 } else { -((a - rel_base + 1) as i64) as i32 }
                } else {
                    a.wrapping_sub(rel_base) as i32
                }
            })
            .collect();
        let put = |img: &mut Vec<u8>, off: usize, b: &[u8]| img[off..off + b.len()].copy_from_slice(b);
        put(&mut img, 0, &(syms.len() as u32).to_le_bytes());
        put(&mut img, 0x10, &rel_base.to_le_bytes());
        put(&mut img, 0x100, &index.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>());
        put(&mut img, 0x400, &table);
        put(&mut img, 0x1000, &offsets.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>());
        put(&mut img, 0x4000, &names);
        let loc = KallsymsLocation {
            num_syms: base,
            names: base + 0x4000,
            token_table: base + 0x400,
            token_index: base + 0x100,
            offsets: Some(base + 0x1000),
            relative_base: Some(base + 0x10),
            addresses: None,
        };
        (img, loc)
    }

    fn syms() -> Vec<(&'static str, u64)> {
        vec![
            ("Drunqueues", 0x36040),
            ("T_stext", 0xffffffff81000000),
            ("tdo_sys_poll", 0xffffffff81100000),
            ("Tpipe_read", 0xffffffff81465590),
            ("Tpipe_write", 0xffffffff81465a00),
            ("Dinit_task", 0xffffffff82c10940),
        ]
    }

    #[test]
    fn both_encodings_decode_and_are_told_apart() {
        let known = [KnownSymbol { name: "_stext", address: 0xffffffff81000000 }];
        for percpu in [true, false] {
            let s = syms();
            let (img, loc) = image(&s, percpu);
            let mut mem = SliceMemory::new(0x1000, &img);
            let t = read_kallsyms(&mut mem, &loc, &known).unwrap();
            assert_eq!(t.len(), 6);
            let p = t.lookup(0xffffffff81465600).unwrap();
            assert_eq!((p.name, p.offset, p.size), ("pipe_read", 0x70, 0x470));
            assert_eq!(t.find_by_name("runqueues").next().unwrap().address, 0x36040);
            assert_eq!(t.find_by_name("do_sys_poll").next().unwrap().address, 0xffffffff81100000);
        }
    }

    #[test]
    fn wrong_known_address_is_an_error() {
        let (img, loc) = image(&syms(), true);
        let mut mem = SliceMemory::new(0x1000, &img);
        let known = [KnownSymbol { name: "_stext", address: 0xffffffff81200000 }];
        assert!(matches!(read_kallsyms(&mut mem, &loc, &known), Err(KallsymsError::NoEncodingMatches { .. })));
    }

    #[test]
    fn long_names_use_two_length_bytes() {
        let long: &'static str = Box::leak(format!("T{}", "x".repeat(200)).into_boxed_str());
        let s = vec![("T_stext", 0xffffffff81000000), (long, 0xffffffff81000100)];
        let (img, loc) = image(&s, true);
        let mut mem = SliceMemory::new(0x1000, &img);
        let known = [KnownSymbol { name: "_stext", address: 0xffffffff81000000 }];
        let t = read_kallsyms(&mut mem, &loc, &known).unwrap();
        assert_eq!(t.lookup(0xffffffff81000100).unwrap().name.len(), 200);
    }

    #[test]
    fn garbage_fails_cleanly() {
        let (mut img, loc) = image(&syms(), true);
        img[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut mem = SliceMemory::new(0x1000, &img);
        assert!(matches!(read_kallsyms(&mut mem, &loc, &[]), Err(KallsymsError::TooMany(_))));
        let (mut img, loc) = image(&syms(), true);
        img[0..4].copy_from_slice(&1000u32.to_le_bytes()); // more names than present
        let mut mem = SliceMemory::new(0x1000, &img);
        assert!(read_kallsyms(&mut mem, &loc, &[KnownSymbol { name: "_stext", address: 0 }]).is_err());
    }
}
