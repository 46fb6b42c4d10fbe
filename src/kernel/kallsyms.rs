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

use crate::memory::{Memory, MemoryError, read_into, read_vec};
use crate::symbols::{Addresses, SymbolDecoder, SymbolKind, SymbolSize, SymbolTable};

/// Where the tables are (runtime addresses, e.g. from VMCOREINFO).
#[derive(Clone, Copy, Debug, Default)]
pub struct KallsymsLocation {
    /// `kallsyms_num_syms` (a 32-bit count).
    pub num_syms: u64,
    /// `kallsyms_names`.
    pub names: u64,
    /// `kallsyms_token_table`.
    pub token_table: u64,
    /// `kallsyms_token_index` (256 16-bit offsets into the token table).
    pub token_index: u64,
    /// `kallsyms_offsets` (with `relative_base`), or None with `addresses`.
    pub offsets: Option<u64>,
    /// The variable `kallsyms_relative_base` (its address, not its value);
    /// None without an offsets table.
    pub relative_base: Option<u64>,
    /// `kallsyms_addresses` (absolute 64-bit addresses), for kernels
    /// without `kallsyms_offsets`; None otherwise.
    pub addresses: Option<u64>,
}

/// Why the kernel's symbol table could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KallsymsError {
    /// A table could not be read.
    #[error("kallsyms: {0}")]
    Memory(MemoryError),
    /// `kallsyms_num_syms` is 0 or above 8 million.
    #[error("kallsyms_num_syms is {0}, beyond any real kernel")]
    TooMany(u64),
    /// A name's length prefix is 0 or runs past what can be indexed.
    #[error("kallsyms name {index} at {addr:#x} is malformed")]
    BadName {
        /// The symbol's index.
        index: u64,
        /// Address of its length prefix in `kallsyms_names`.
        addr: u64,
    },
    /// A token in `kallsyms_token_table` has no NUL.
    #[error("kallsyms token {index} has no terminator")]
    BadToken {
        /// The token's index (0-255).
        index: u32,
    },
    /// Neither offset encoding puts the known symbols at their addresses,
    /// or kallsyms has none of them.
    #[error("kallsyms: neither offset encoding places {name_hint} at its VMCOREINFO address {want:#x}")]
    NoEncodingMatches {
        /// The first known symbol's name.
        name_hint: &'static str,
        /// The first known symbol's expected address.
        want: u64,
    },
    /// Neither `offsets` with `relative_base` nor `addresses` was given
    /// (or they decode to no address at all).
    #[error("kallsyms: no offsets or addresses table given")]
    NoAddresses,
}

impl From<MemoryError> for KallsymsError {
    fn from(e: MemoryError) -> Self {
        KallsymsError::Memory(e)
    }
}

/// A check: this symbol must decode at this address.
#[derive(Clone, Copy, Debug)]
pub struct KnownSymbol {
    /// Symbol name, without type character.
    pub name: &'static str,
    /// Its runtime address (e.g. from VMCOREINFO).
    pub address: u64,
}

fn kind_of(type_char: u8) -> SymbolKind {
    match type_char {
        b'T' | b't' | b'W' | b'w' => SymbolKind::Text,
        b'A' | b'a' => SymbolKind::Absolute,
        _ => SymbolKind::Data,
    }
}

/// Every how many names the walk notes where one starts. A name is found
/// from the note before it (at most 15 length prefixes on): a note per
/// name would be 800 KB of fresh memory for a 200k-symbol kernel.
const NAME_STRIDE: usize = 16;

/// The compressed names, indexed: `kallsyms_names` as read, where every
/// [`NAME_STRIDE`]th symbol's name starts, the 256 tokens, and the name
/// order when the kernel keeps one (`kallsyms_seqs_of_names`, 6.2+).
struct KallsymsNames {
    names: Vec<u8>,
    /// Offset in `names` of the length prefix of symbols 0, 16, 32, ...
    /// (checked, with every name between, by the walk that found them).
    starts: Vec<u32>,
    /// How many symbols the walk went through.
    count: usize,
    tokens: Vec<u8>,
    token_spans: Vec<(u32, u32)>,
    /// `kallsyms_seqs_of_names` as read: rank in name order -> symbol
    /// index, 3 bytes big-endian each; empty without a name order.
    seqs: Vec<u8>,
}

impl KallsymsNames {
    /// Where symbol `index`'s length prefix is in `names`.
    fn start_of(&self, index: usize) -> Option<usize> {
        if index >= self.count {
            return None;
        }
        let mut pos = *self.starts.get(index / NAME_STRIDE)? as usize;
        for _ in 0..index % NAME_STRIDE {
            let (header, len) = entry_at(&self.names, pos)?;
            pos += header + len;
        }
        Some(pos)
    }

    /// The expanded bytes of symbol `index`: type character, then name.
    fn expand(&self, index: usize, out: &mut Vec<u8>) {
        out.clear();
        let Some(start) = self.start_of(index) else { return };
        let codes = entry_at(&self.names, start).map_or(&[][..], |(header, len)| {
            let codes = start + header;
            self.names.get(codes..codes + len).unwrap_or(&[])
        });
        for &code in codes {
            if let Some(&(a, b)) = self.token_spans.get(code as usize) {
                out.extend_from_slice(self.tokens.get(a as usize..b as usize).unwrap_or(&[]));
            }
        }
    }

    fn name_of(&self, index: usize) -> (SymbolKind, String) {
        let mut bytes = Vec::with_capacity(64);
        self.expand(index, &mut bytes);
        match bytes.split_first() {
            Some((&type_char, name)) => (kind_of(type_char), String::from_utf8_lossy(name).into_owned()),
            None => (SymbolKind::Absolute, String::new()),
        }
    }

    /// Indexes of the symbols named `name`, by binary search in name order.
    fn named(&self, name: &str) -> Vec<usize> {
        let ranks = crate::symbols::equal_range(self.seqs.len() / 3, |rank| {
            self.name_of(self.by_name_rank(rank)).1.as_str().cmp(name)
        });
        ranks.map(|rank| self.by_name_rank(rank)).collect()
    }
}

impl SymbolDecoder for KallsymsNames {
    fn decode(&self, index: usize) -> (SymbolKind, String) {
        self.name_of(index)
    }

    fn by_name_rank(&self, rank: usize) -> usize {
        seq_at(&self.seqs, rank).unwrap_or(usize::MAX)
    }
}

/// Entry `rank` of a `kallsyms_seqs_of_names` table as read.
fn seq_at(seqs: &[u8], rank: usize) -> Option<usize> {
    match seqs.get(rank.checked_mul(3)?..)? {
        [a, b, c, ..] => Some((*a as usize) << 16 | (*b as usize) << 8 | *c as usize),
        _ => None,
    }
}

/// The name entry at `pos` of `names`: its length prefix's size and the
/// name's length in tokens. Since 6.1, lengths of 128 and more take two
/// bytes (ULEB128-like). None when the prefix runs past `names`.
fn entry_at(names: &[u8], pos: usize) -> Option<(usize, usize)> {
    let first = *names.get(pos)? as usize;
    if first & 0x80 == 0 {
        return Some((1, first));
    }
    Some((2, (first & 0x7f) | ((*names.get(pos + 1)? as usize) << 7)))
}

/// The most read ahead of the name walk (see `read_names`): real
/// tables are a few megabytes.
const NAMES_AHEAD: u64 = 32 << 20;

/// Reads the count, the tokens and every name's place (not its text), and
/// runs `beside(mem, count)` (reads of the other tables) while the names
/// are walked: the walk is a chain through 200k length bytes that only
/// one thread can follow, and it needs no memory once the names are read.
fn read_names<M: Memory + Send, T: Send>(
    mem: &mut M,
    loc: &KallsymsLocation,
    beside: impl FnOnce(&mut M, usize) -> T + Send,
) -> Result<(KallsymsNames, T), KallsymsError> {
    let mut w = [0u8; 4];
    mem.read(loc.num_syms, &mut w)?;
    let count = u32::from_le_bytes(w) as u64;
    if count == 0 || count > 8_000_000 {
        return Err(KallsymsError::TooMany(count));
    }
    let index_bytes = read_vec(mem, loc.token_index, 512)?;
    let token_index: Vec<u16> = index_bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    let max_index = token_index.iter().copied().max().unwrap_or(0) as usize;
    let tokens = read_vec(mem, loc.token_table, max_index + 256)?;
    let mut token_spans = Vec::with_capacity(256);
    for (i, &start) in token_index.iter().enumerate() {
        let rest = tokens.get(start as usize..).unwrap_or(&[]);
        let end = rest.iter().position(|&b| b == 0).ok_or(KallsymsError::BadToken { index: i as u32 })?;
        token_spans.push((start as u32, start as u32 + end as u32));
    }

    // The names region's size is known only by walking it. The kernel
    // lays out kallsyms_markers (and, before 6.12, the name order) and
    // then the token table after it, so names up to the token table are
    // read in one request, which two readers can share; the walk reads
    // any more in blocks as it reaches them. The count is claimed by the
    // dump, so nothing is sized by it up front.
    let mut names = match loc.token_table.checked_sub(loc.names) {
        Some(len @ 1..=NAMES_AHEAD) => mem.read_bulk(loc.names, len as usize).unwrap_or_default(),
        _ => Vec::new(),
    };
    let made =
        |names, starts| KallsymsNames { names, starts, count: count as usize, tokens, token_spans, seqs: Vec::new() };
    // The walk on its own, beside the other reads, while it stays within
    // what is read (it always does on a real kernel); else again, reading
    // as it goes.
    if loc.token_table.checked_sub(loc.names) == Some(names.len() as u64) && !names.is_empty() {
        let past = MemoryError::new(loc.token_table, crate::memory::MemoryErrorKind::Unmapped);
        let mut within = |names: &mut Vec<u8>, upto: usize| if upto > names.len() { Err(past) } else { Ok(()) };
        let (walked, other) =
            rayon::join(|| walk_names(&mut names, count, loc.names, &mut within), || beside(mem, count as usize));
        let starts = match walked {
            Err(KallsymsError::Memory(e)) if e == past => walk_reading(mem, loc, &mut names, count)?,
            walked => walked?,
        };
        return Ok((made(names, starts), other));
    }
    let starts = walk_reading(mem, loc, &mut names, count)?;
    let other = beside(mem, count as usize);
    Ok((made(names, starts), other))
}

/// [`walk_names`], reading the names as it reaches them.
fn walk_reading<M: Memory>(
    mem: &mut M,
    loc: &KallsymsLocation,
    names: &mut Vec<u8>,
    count: u64,
) -> Result<Vec<u32>, KallsymsError> {
    // Once a block runs into memory that is not there (a filtered or cut
    // dump), only what each name needs is read: trying the block again for
    // every name would read its pages again each time.
    let mut ahead = true;
    let mut need = |names: &mut Vec<u8>, upto: usize| -> Result<(), MemoryError> {
        if upto > names.len() {
            let at = loc.names.wrapping_add(names.len() as u64);
            // Read at least what is needed; more only if it is there. A
            // failed read keeps the pages before the one that failed.
            if !ahead || read_into(mem, at, (upto - names.len()).max(64 << 10), names).is_err() {
                ahead = false;
                if upto > names.len() {
                    let at = loc.names.wrapping_add(names.len() as u64);
                    read_into(mem, at, upto - names.len(), names)?;
                }
            }
        }
        Ok(())
    };
    walk_names(names, count, loc.names, &mut need)
}

/// Makes a buffer at least so many bytes long, or fails.
type NeedBytes<'a> = dyn FnMut(&mut Vec<u8>, usize) -> Result<(), MemoryError> + 'a;

/// Follows the `count` names from the start of `names` (at `base`), each
/// a length prefix and that many token bytes; returns where every
/// [`NAME_STRIDE`]th starts
/// and cuts `names` after the last. `need(names, upto)` makes `names` at
/// least `upto` bytes long, or fails.
fn walk_names(names: &mut Vec<u8>, count: u64, base: u64, need: &mut NeedBytes<'_>) -> Result<Vec<u32>, KallsymsError> {
    // Every name takes at least 2 bytes: the count the dump claims sizes
    // nothing beyond what was read.
    let mut starts: Vec<u32> =
        Vec::with_capacity((count as usize).min((names.len() / 2).max(1 << 14)).div_ceil(NAME_STRIDE));
    let mut pos = 0usize;
    for index in 0..count {
        // `need` only where the bytes run out (a real table is read whole:
        // three indirect calls a name were most of the walk's time).
        if pos + 2 > names.len() {
            need(names, pos + 1)?;
            if names[pos] & 0x80 != 0 {
                need(names, pos + 2)?;
            }
        }
        let bad = || KallsymsError::BadName { index, addr: base.wrapping_add(pos as u64) };
        let (header, len) = entry_at(names, pos).ok_or_else(bad)?;
        if len == 0 || pos + header + len > u32::MAX as usize {
            return Err(bad());
        }
        let end = pos + header + len;
        if end > names.len() {
            need(names, end)?;
        }
        if (index as usize).is_multiple_of(NAME_STRIDE) {
            starts.push(pos as u32);
        }
        pos = end;
    }
    names.truncate(pos);
    Ok(starts)
}

/// Finds `kallsyms_seqs_of_names`, which VMCOREINFO does not name: right
/// after `kallsyms_relative_base` (6.12 layout) or right before
/// `kallsyms_token_table`. A candidate is taken only if it is a
/// permutation of the symbols and the names it orders are in order at
/// evenly spread samples; otherwise there is no name order (and every name
/// is decoded instead).
///
/// `read`: one candidate's bytes, read already.
fn find_name_order<M: Memory>(
    mem: &mut M,
    loc: &KallsymsLocation,
    names: &KallsymsNames,
    mut read: Option<(u64, Result<Vec<u8>, MemoryError>)>,
) -> Vec<u8> {
    let count = names.count;
    let size = count * 3;
    for at in name_order_places(loc, count) {
        let raw = match read.take() {
            Some((place, raw)) if place == at => raw,
            _ => mem.read_bulk(at, size),
        };
        let Ok(raw) = raw else { continue };
        if raw.len() != size {
            continue;
        }
        // One bit per symbol: the table must name each exactly once.
        let mut seen = vec![0u64; count.div_ceil(64)];
        let permutation = raw.chunks_exact(3).all(|c| {
            let i = (c[0] as usize) << 16 | (c[1] as usize) << 8 | c[2] as usize;
            match seen.get_mut(i / 64) {
                Some(word) if i < count && *word & (1 << (i % 64)) == 0 => {
                    *word |= 1 << (i % 64);
                    true
                }
                _ => false,
            }
        });
        if !permutation {
            continue;
        }
        let name = |rank: usize| names.name_of(seq_at(&raw, rank).unwrap_or(usize::MAX)).1;
        let step = (count / 64).max(1);
        let ordered = (0..count.saturating_sub(1)).step_by(step).all(|rank| name(rank) <= name(rank + 1))
            && (0..count).step_by(step).collect::<Vec<_>>().windows(2).all(|w| name(w[0]) <= name(w[1]));
        if ordered {
            return raw;
        }
    }
    Vec::new()
}

/// Where `kallsyms_seqs_of_names` may be, for `count` symbols (see
/// [`find_name_order`]).
fn name_order_places(loc: &KallsymsLocation, count: usize) -> impl Iterator<Item = u64> {
    let size = count as u64 * 3;
    let after_base = loc.relative_base.map(|base| base.wrapping_add(8));
    after_base.into_iter().chain([loc.token_table.wrapping_sub(size.next_multiple_of(8))])
}

/// The address table as stored: `kallsyms_addresses` (8 bytes a symbol)
/// or `kallsyms_offsets` (4).
fn read_address_table<M: Memory>(mem: &mut M, loc: &KallsymsLocation, count: usize) -> Result<Vec<u8>, KallsymsError> {
    match (loc.addresses, loc.offsets, loc.relative_base) {
        (Some(at), _, _) => Ok(mem.read_bulk(at, count * 8)?),
        (None, Some(at), Some(_)) => Ok(mem.read_bulk(at, count * 4)?),
        _ => Err(KallsymsError::NoAddresses),
    }
}

/// Reads the kernel's symbols. With a name order (6.2+) the table decodes
/// names only as lookups need them; without one every name is decoded.
/// `known` symbols (at least one) choose the address encoding; see the
/// module comment.
pub fn read_kallsyms<M: Memory + Send>(
    mem: &mut M,
    loc: &KallsymsLocation,
    known: &[KnownSymbol],
) -> Result<SymbolTable, KallsymsError> {
    // The name order's first place and the addresses are read while the
    // names are walked.
    let (mut names, (order, table)) = read_names(mem, loc, |mem, count| {
        let order = name_order_places(loc, count).next().map(|at| (at, mem.read_bulk(at, count * 3)));
        (order, read_address_table(mem, loc, count))
    })?;
    names.seqs = find_name_order(mem, loc, &names, order);
    let count = names.count;
    if names.seqs.is_empty() {
        return eager_table(&names, count, |find| decode_addresses(mem, loc, table?, find, known));
    }
    let addresses = decode_addresses(mem, loc, table?, &|name| names.named(name), known)?;
    match SymbolTable::lazy("vmlinux", addresses, Box::new(names)) {
        Ok(table) => Ok(table),
        Err((addresses, _)) if addresses.is_empty() => Err(KallsymsError::NoAddresses),
        // Unsorted addresses (not seen in a real kernel): the eager table
        // sorts them.
        Err((addresses, names)) => eager_table(&*names, count, |_| Ok(addresses)),
    }
}

/// Every name decoded once, into one string pool (a kernel has ~200k), and
/// an ordinary table of them at the addresses `addresses(find)` gives
/// (`find` names symbols by a scan of the decoded names).
fn eager_table(
    names: &dyn SymbolDecoder,
    count: usize,
    addresses: impl FnOnce(&dyn Fn(&str) -> Vec<usize>) -> Result<Addresses, KallsymsError>,
) -> Result<SymbolTable, KallsymsError> {
    let mut pool = String::new();
    let mut entries: Vec<(u32, u32, SymbolKind)> = Vec::with_capacity(count);
    for index in 0..count {
        let (kind, name) = names.decode(index);
        entries.push((pool.len() as u32, name.len() as u32, kind));
        pool.push_str(&name);
    }
    let name_of = |&(start, len, _): &(u32, u32, SymbolKind)| &pool[start as usize..(start + len) as usize];
    let find = |name: &str| (0..count).filter(|&i| entries.get(i).map(name_of) == Some(name)).collect();
    let addresses = addresses(&find)?;
    let mut table = SymbolTable::new("vmlinux");
    for (entry, addr) in entries.iter().zip(addresses.iter()) {
        table.push_symbol(name_of(entry), addr, SymbolSize::Unknown, entry.2);
    }
    table.finish();
    Ok(table)
}

/// The addresses from `raw`, the table [`read_address_table`] read.
fn decode_addresses<M: Memory>(
    mem: &mut M,
    loc: &KallsymsLocation,
    raw: Vec<u8>,
    named: &dyn Fn(&str) -> Vec<usize>,
    known: &[KnownSymbol],
) -> Result<Addresses, KallsymsError> {
    if loc.addresses.is_some() {
        let list = raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
        return Ok(Addresses::List(list));
    }
    let (Some(_), Some(base_at)) = (loc.offsets, loc.relative_base) else {
        return Err(KallsymsError::NoAddresses);
    };
    let base = mem.read_u64(base_at)?;
    // Known symbols that kallsyms lacks are skipped: VMCOREINFO names
    // macros too (x86-64 `swapper_pg_dir` is `init_top_pgt`).
    let present: Vec<(Vec<usize>, u64)> =
        known.iter().map(|k| (named(k.name), k.address)).filter(|(found, _)| !found.is_empty()).collect();
    let first = known.first().copied().unwrap_or(KnownSymbol { name: "(none)", address: 0 });
    if present.is_empty() {
        return Err(KallsymsError::NoEncodingMatches { name_hint: first.name, want: first.address });
    }
    let places = |absolute_percpu| {
        let at = |i| Addresses::offset_at(&raw, base, absolute_percpu, i);
        present.iter().all(|(found, want)| found.iter().any(|&i| at(i) == Some(*want)))
    };
    match [true, false].into_iter().find(|&absolute_percpu| places(absolute_percpu)) {
        Some(absolute_percpu) => Ok(Addresses::Offsets { raw, base, absolute_percpu }),
        None => Err(KallsymsError::NoEncodingMatches { name_hint: first.name, want: first.address }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SliceMemory;

    /// Lays out kallsyms tables for (type+name, address) in a byte image.
    /// With `name_order`, `kallsyms_seqs_of_names` follows
    /// `kallsyms_relative_base` (6.12 layout).
    fn image(syms: &[(&str, u64)], percpu: bool, name_order: bool) -> (Vec<u8>, KallsymsLocation) {
        image_sized(syms, percpu, name_order, 0x10000)
    }

    fn image_sized(syms: &[(&str, u64)], percpu: bool, name_order: bool, size: usize) -> (Vec<u8>, KallsymsLocation) {
        let base = 0x1000u64; // image address of byte 0
        let mut img = vec![0u8; size];
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
        if name_order {
            let mut order: Vec<usize> = (0..syms.len()).collect();
            order.sort_by_key(|&i| (&syms[i].0[1..], syms[i].1));
            let seqs: Vec<u8> = order.iter().flat_map(|&i| [(i >> 16) as u8, (i >> 8) as u8, i as u8]).collect();
            put(&mut img, 0x18, &seqs);
        }
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
        for (percpu, name_order) in [(true, false), (false, false), (true, true), (false, true)] {
            let s = syms();
            let (img, loc) = image(&s, percpu, name_order);
            let mut mem = SliceMemory::new(0x1000, &img);
            let t = read_kallsyms(&mut mem, &loc, &known).unwrap();
            assert_eq!(t.is_lazy(), name_order);
            assert_eq!(t.len(), 6);
            let p = t.lookup(0xffffffff81465600).unwrap();
            assert_eq!((p.name, p.offset, p.size), ("pipe_read", 0x70, 0x470));
            assert_eq!(t.find_by_name("runqueues").next().unwrap().address, 0x36040);
            assert_eq!(t.find_by_name("do_sys_poll").next().unwrap().address, 0xffffffff81100000);
        }
    }

    #[test]
    fn wrong_known_address_is_an_error() {
        let (img, loc) = image(&syms(), true, true);
        let mut mem = SliceMemory::new(0x1000, &img);
        let known = [KnownSymbol { name: "_stext", address: 0xffffffff81200000 }];
        assert!(matches!(read_kallsyms(&mut mem, &loc, &known), Err(KallsymsError::NoEncodingMatches { .. })));
    }

    #[test]
    fn long_names_use_two_length_bytes() {
        let long: &'static str = Box::leak(format!("T{}", "x".repeat(200)).into_boxed_str());
        let s = vec![("T_stext", 0xffffffff81000000), (long, 0xffffffff81000100)];
        let (img, loc) = image(&s, true, true);
        let mut mem = SliceMemory::new(0x1000, &img);
        let known = [KnownSymbol { name: "_stext", address: 0xffffffff81000000 }];
        let t = read_kallsyms(&mut mem, &loc, &known).unwrap();
        assert!(t.is_lazy());
        assert_eq!(t.lookup(0xffffffff81000100).unwrap().name.len(), 200);
    }

    /// Names are found from the walk's note every NAME_STRIDE names: every
    /// symbol of a table several strides long, with one- and two-byte
    /// length prefixes, decodes to its own name in both table kinds.
    #[test]
    fn every_name_is_found_from_the_notes() {
        let names: Vec<String> = (0..70)
            .map(|i| match i % 7 {
                0 => format!("T_stext{i}"),
                3 => format!("tlong{i}_{}", "y".repeat(130 + i)),
                _ => format!("Tfunc_{i:03}"),
            })
            .collect();
        let mut s: Vec<(&str, u64)> =
            names.iter().enumerate().map(|(i, n)| (&n[..], 0xffffffff81000000 + i as u64 * 0x40)).collect();
        s[0].0 = "T_stext";
        let known = [KnownSymbol { name: "_stext", address: 0xffffffff81000000 }];
        for name_order in [false, true] {
            let (img, loc) = image(&s, true, name_order);
            let t = read_kallsyms(&mut SliceMemory::new(0x1000, &img), &loc, &known).unwrap();
            assert_eq!((t.len(), t.is_lazy()), (70, name_order));
            for &(name, address) in &s {
                assert_eq!(t.lookup(address).map(|f| f.name), Some(&name[1..]), "at {address:#x}");
                assert_eq!(t.find_by_name(&name[1..]).map(|f| f.address).collect::<Vec<_>>(), [address]);
            }
        }
    }

    /// Names that end where memory ends (a cut dump): read once, not the
    /// block ahead again for every name.
    #[test]
    fn names_at_the_end_of_memory_are_read_once() {
        struct Counting<'a>(SliceMemory<'a>, usize);
        impl Memory for Counting<'_> {
            fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
                self.1 += buf.len();
                self.0.read(addr, buf)
            }
        }
        let mut s = syms();
        let many: Vec<(&'static str, u64)> = (0..2000u64)
            .map(|i| (&*Box::leak(format!("tf{i:05}").into_boxed_str()), 0xffffffff81200000 + 16 * i))
            .collect();
        s.extend(many);
        s.sort_by_key(|&(_, a)| a);
        let (img, loc) = image_sized(&s, true, false, 0x20000);
        // Memory ends with the page after the names.
        // 2,000 names of 8 bytes (length, 7 tokens) and 64 bytes for the others.
        let names_len = 2000 * 8 + 64;
        let end = ((0x4000 + names_len) as usize).next_multiple_of(4096);
        let mut mem = Counting(SliceMemory::new(0x1000, &img[..end]), 0);
        let known = [KnownSymbol { name: "_stext", address: 0xffffffff81000000 }];
        let t = read_kallsyms(&mut mem, &loc, &known).unwrap();
        assert_eq!(t.find_by_name("f01999").next().unwrap().address, 0xffffffff81200000 + 16 * 1999);
        assert!(mem.1 < 8 * end, "{} bytes read from {end} bytes of memory", mem.1);
    }

    #[test]
    fn garbage_fails_cleanly() {
        let (mut img, loc) = image(&syms(), true, false);
        img[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut mem = SliceMemory::new(0x1000, &img);
        assert!(matches!(read_kallsyms(&mut mem, &loc, &[]), Err(KallsymsError::TooMany(_))));
        let (mut img, loc) = image(&syms(), true, false);
        img[0..4].copy_from_slice(&1000u32.to_le_bytes()); // more names than present
        let mut mem = SliceMemory::new(0x1000, &img);
        assert!(read_kallsyms(&mut mem, &loc, &[KnownSymbol { name: "_stext", address: 0 }]).is_err());
    }

    #[test]
    fn a_name_order_that_is_wrong_is_not_used() {
        let known = [KnownSymbol { name: "_stext", address: 0xffffffff81000000 }];
        let (good, loc) = image(&syms(), true, true);
        // Not a permutation: two ranks name symbol 0.
        let mut repeated = good.clone();
        repeated[0x18 + 3..0x18 + 6].copy_from_slice(&[0, 0, 0]);
        // A permutation, but not in name order: ranks 0 and 5 swapped.
        let mut unsorted = good.clone();
        let (a, b) = (0x18, 0x18 + 15);
        for k in 0..3 {
            unsorted.swap(a + k, b + k);
        }
        for img in [repeated, unsorted] {
            let mut mem = SliceMemory::new(0x1000, &img);
            let t = read_kallsyms(&mut mem, &loc, &known).unwrap();
            assert!(!t.is_lazy());
            assert_eq!(t.find_by_name("pipe_write").next().unwrap().address, 0xffffffff81465a00);
        }
    }

    /// The kernel's layout: the token table right after the names, so the
    /// names are read in one request and walked beside the other reads.
    fn kernel_layout(syms: &[(&str, u64)]) -> (Vec<u8>, KallsymsLocation) {
        let (mut img, mut loc) = image_sized(syms, true, true, 0x10000);
        let tokens: Vec<u8> = img[0x400..0x1000].to_vec();
        let names_end = (0x4000..img.len()).rev().find(|&i| img[i] != 0).map_or(0x4000, |i| i + 1);
        let at = names_end.next_multiple_of(8) + 0x20;
        img[at..at + tokens.len()].copy_from_slice(&tokens);
        loc.token_table = 0x1000 + at as u64;
        (img, loc)
    }

    /// Memory whose bulk reads of the names fail: the names are then read
    /// as the walk reaches them, after it.
    struct NoBulkNames<'a>(SliceMemory<'a>, u64);

    impl Memory for NoBulkNames<'_> {
        fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            self.0.read(addr, buf)
        }
        fn read_bulk(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, MemoryError> {
            if addr == self.1 {
                return Err(MemoryError::new(addr, crate::memory::MemoryErrorKind::Backend));
            }
            read_vec(self, addr, len)
        }
    }

    #[test]
    fn names_walked_beside_the_other_reads_are_those_walked_alone() {
        let known = [KnownSymbol { name: "_stext", address: 0xffffffff81000000 }];
        let describe = |t: Result<SymbolTable, KallsymsError>| match t {
            Ok(t) => format!("{:?}", t.iter().map(|s| (s.name.to_string(), s.address, s.size)).collect::<Vec<_>>()),
            Err(e) => format!("{e:?}"),
        };
        let s = syms();
        let (img, loc) = kernel_layout(&s);
        let beside = describe(read_kallsyms(&mut SliceMemory::new(0x1000, &img), &loc, &known));
        let alone = describe(read_kallsyms(&mut NoBulkNames(SliceMemory::new(0x1000, &img), loc.names), &loc, &known));
        assert_eq!(beside, alone);
        assert!(beside.contains("pipe_read") && beside.contains("runqueues"), "{beside}");
        // A last name that claims to run past the token table: the walk
        // beside stops there, and the walk reading as it goes decides.
        let mut bad = img.clone();
        let last = (loc.names - 0x1000) as usize
            + (0..s.len() - 1).fold(0, |pos, _| pos + 1 + bad[(loc.names - 0x1000) as usize + pos] as usize);
        bad[last] = 0x7f;
        let beside = describe(read_kallsyms(&mut SliceMemory::new(0x1000, &bad), &loc, &known));
        let alone = describe(read_kallsyms(&mut NoBulkNames(SliceMemory::new(0x1000, &bad), loc.names), &loc, &known));
        assert_eq!(beside, alone);
    }
}
