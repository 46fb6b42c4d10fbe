//! A zero-copy ORC table with the kernel's lookup scheme: a block index over
//! the text in 256-byte blocks, then a binary search inside the block for the
//! rightmost entry whose ip is <= the target.

use std::borrow::Cow;

use super::{ORC_ENTRY_SIZE, OrcEntry, OrcError, OrcFormat};

/// Bytes of text per block of the lookup index, as in the kernel.
pub const LOOKUP_BLOCK_SIZE: u64 = 256;

/// Something that maps an instruction address to its ORC entry.
pub trait OrcFinder {
    /// The entry for `ip`: the rightmost with entry ip <= `ip`; None when `ip` is outside the table.
    fn find(&self, ip: u64) -> Option<OrcEntry>;
}

/// One object's table: vmlinux or a module.
#[derive(Clone, Debug)]
pub struct OrcTable<'data> {
    /// `.orc_unwind_ip`: little-endian s32, each relative to its own address.
    ips: Cow<'data, [u8]>,
    /// `.orc_unwind`: 6-byte entries in parallel with `ips`.
    entries: Cow<'data, [u8]>,
    /// Address of `ips[0]`.
    ip_base: u64,
    format: OrcFormat,
    len: usize,
    first_ip: u64,
    last_ip: u64,
    /// The text range this table answers for, when the caller knows it
    /// (module text); outside it `find` says nothing.
    coverage: Option<(u64, u64)>,
    lookup_start: u64,
    /// `lookup[b]`: index of the rightmost entry at or before block b's start.
    lookup: Vec<u32>,
}

impl<'data> OrcTable<'data> {
    /// Builds a table over the two sections as they sit in memory or in a
    /// file: `ip_base` is the address of `.orc_unwind_ip`. The ip table must
    /// already be sorted, as in vmlinux and in a loaded module.
    pub fn new(
        ips: impl Into<Cow<'data, [u8]>>,
        entries: impl Into<Cow<'data, [u8]>>,
        ip_base: u64,
        format: OrcFormat,
    ) -> Result<Self, OrcError> {
        let ips = ips.into();
        let entries = entries.into();
        if ips.len() % 4 != 0 {
            return Err(OrcError::IpSectionSize { ip_bytes: ips.len() as u64 });
        }
        if entries.len() % ORC_ENTRY_SIZE != 0 {
            return Err(OrcError::EntrySectionSize { entry_bytes: entries.len() as u64 });
        }
        let len = ips.len() / 4;
        if len != entries.len() / ORC_ENTRY_SIZE {
            return Err(OrcError::CountMismatch { ips: len as u64, entries: (entries.len() / ORC_ENTRY_SIZE) as u64 });
        }
        if len == 0 {
            return Err(OrcError::Empty);
        }
        if len > u32::MAX as usize {
            return Err(OrcError::CountMismatch { ips: len as u64, entries: len as u64 });
        }
        let mut table = OrcTable {
            ips,
            entries,
            ip_base,
            format,
            len,
            first_ip: 0,
            last_ip: 0,
            coverage: None,
            lookup_start: 0,
            lookup: Vec::new(),
        };
        // `find_index` compares ips as offsets from ip_base: an entry that
        // wraps around the address space would break that order.
        for i in 0..len {
            let (slot, rel) = (ip_base.wrapping_add(4 * i as u64), table.rel_at(i));
            if slot < ip_base || slot.checked_add_signed(i64::from(rel)).is_none() {
                return Err(OrcError::Wraps { index: i as u64, slot, rel });
            }
        }
        let mut prev = table.ip_at(0);
        for i in 1..len {
            let ip = table.ip_at(i);
            if ip < prev {
                return Err(OrcError::Unsorted { index: i as u64, ip });
            }
            prev = ip;
        }
        table.first_ip = table.ip_at(0);
        table.last_ip = prev;
        table.build_lookup();
        Ok(table)
    }

    /// Builds a table from (ip, entry bytes) pairs in any order, as found in
    /// a module file before the kernel sorts it at load time.
    pub fn from_unsorted(
        mut pairs: Vec<(u64, [u8; ORC_ENTRY_SIZE])>,
        format: OrcFormat,
    ) -> Result<OrcTable<'static>, OrcError> {
        // Stable, so equal ips keep file order and the rightmost wins as in the kernel.
        pairs.sort_by_key(|p| p.0);
        let first = pairs.first().ok_or(OrcError::Empty)?.0;
        let mut ips = Vec::with_capacity(pairs.len() * 4);
        let mut entries = Vec::with_capacity(pairs.len() * ORC_ENTRY_SIZE);
        for (i, (ip, e)) in pairs.iter().enumerate() {
            let slot = first.wrapping_add(4 * i as u64);
            let rel = ip.wrapping_sub(slot) as i64;
            let rel = i32::try_from(rel).map_err(|_| OrcError::BadRelocation { index: i as u64 })?;
            ips.extend_from_slice(&rel.to_le_bytes());
            entries.extend_from_slice(e);
        }
        OrcTable::new(ips, entries, first, format)
    }

    /// Restricts the table to one text range [start, end).
    pub fn with_coverage(mut self, start: u64, end: u64) -> Self {
        self.coverage = Some((start, end));
        self
    }

    /// The entry layout the table is decoded with.
    pub fn format(&self) -> OrcFormat {
        self.format
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no entries (never, for a built table).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The lowest entry ip.
    pub fn first_ip(&self) -> u64 {
        self.first_ip
    }

    /// The highest entry ip.
    pub fn last_ip(&self) -> u64 {
        self.last_ip
    }

    /// The range of addresses this table answers for.
    pub fn range(&self) -> (u64, u64) {
        self.coverage.unwrap_or((self.first_ip, self.last_ip.saturating_add(1)))
    }

    #[inline]
    fn rel_at(&self, i: usize) -> i32 {
        let b = &self.ips[i * 4..i * 4 + 4];
        i32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    #[inline]
    fn ip_at(&self, i: usize) -> u64 {
        let o = i * 4;
        let b = &self.ips[o..o + 4];
        let rel = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        self.ip_base.wrapping_add(o as u64).wrapping_add(rel as i64 as u64)
    }

    #[inline]
    fn entry_at(&self, i: usize) -> OrcEntry {
        let o = i * ORC_ENTRY_SIZE;
        let b = &self.entries[o..o + ORC_ENTRY_SIZE];
        OrcEntry::decode([b[0], b[1], b[2], b[3], b[4], b[5]], self.format)
    }

    /// The i-th (ip, entry), in table order.
    pub fn get(&self, i: usize) -> Option<(u64, OrcEntry)> {
        (i < self.len).then(|| (self.ip_at(i), self.entry_at(i)))
    }

    /// Every (ip, entry), in table order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, OrcEntry)> + '_ {
        (0..self.len).map(|i| (self.ip_at(i), self.entry_at(i)))
    }

    fn build_lookup(&mut self) {
        self.lookup_start = self.first_ip & !(LOOKUP_BLOCK_SIZE - 1);
        let span = self.last_ip - self.lookup_start;
        let blocks = span / LOOKUP_BLOCK_SIZE + 2;
        // The index costs 4 bytes a block; a sparse table (a claimed span far
        // beyond its entries) gets plain binary search instead.
        if blocks > 16 * self.len as u64 + 4096 {
            return;
        }
        let mut lookup = Vec::with_capacity(blocks as usize);
        let mut i = 0usize;
        for b in 0..blocks {
            // The block past the last may start beyond u64::MAX.
            let block_ip = self.lookup_start.saturating_add(b * LOOKUP_BLOCK_SIZE);
            while i + 1 < self.len && self.ip_at(i + 1) <= block_ip {
                i += 1;
            }
            lookup.push(i as u32);
        }
        self.lookup = lookup;
    }

    /// Index of the entry for `ip`: the rightmost with entry ip <= `ip`.
    #[inline]
    pub fn find_index(&self, ip: u64) -> Option<usize> {
        if ip < self.first_ip {
            return None;
        }
        if let Some((start, end)) = self.coverage
            && (ip < start || ip >= end)
        {
            return None;
        }
        // Past the last entry the answer is the last entry; clamping keeps
        // the offset from ip_base small (an ip far above would wrap it).
        let ip = ip.min(self.last_ip);
        let (mut lo, mut hi) = (0usize, self.len);
        let block = ((ip - self.lookup_start) / LOOKUP_BLOCK_SIZE) as usize;
        if block + 1 < self.lookup.len() {
            lo = self.lookup[block] as usize;
            hi = (self.lookup[block + 1] as usize + 1).min(self.len);
        }
        // Rightmost entry <= ip in [lo, hi), where entry lo is known to
        // qualify. Compare in the ip table's own frame: entry i's ip minus
        // ip_base is 4i + rel[i], so no 64-bit address is rebuilt per probe.
        let (rel, _) = self.ips.as_chunks::<4>();
        let key = ip.wrapping_sub(self.ip_base) as i64;
        let at = |i: usize| 4 * i as i64 + i32::from_le_bytes(rel[i]) as i64;
        let mut found = lo;
        let mut size = hi.saturating_sub(lo);
        while size > 1 {
            let half = size / 2;
            let mid = found + half;
            if at(mid) <= key {
                found = mid;
            }
            size -= half;
        }
        Some(found)
    }
}

impl OrcFinder for OrcTable<'_> {
    #[inline]
    fn find(&self, ip: u64) -> Option<OrcEntry> {
        self.find_index(ip).map(|i| self.entry_at(i))
    }
}

/// Several tables (vmlinux and modules), searched by address range.
#[derive(Clone, Debug, Default)]
pub struct OrcTables<'data> {
    tables: Vec<OrcTable<'data>>,
}

impl<'data> OrcTables<'data> {
    /// No tables.
    pub fn new() -> Self {
        OrcTables { tables: Vec::new() }
    }

    /// Adds a table, keeping tables sorted by range start.
    pub fn push(&mut self, table: OrcTable<'data>) {
        let start = table.range().0;
        let at = self.tables.partition_point(|t| t.range().0 <= start);
        self.tables.insert(at, table);
    }

    /// The tables, sorted by range start.
    pub fn tables(&self) -> &[OrcTable<'data>] {
        &self.tables
    }
}

impl OrcFinder for OrcTables<'_> {
    fn find(&self, ip: u64) -> Option<OrcEntry> {
        let n = self.tables.partition_point(|t| t.range().0 <= ip);
        // Ranges rarely overlap; look back only while a table could still cover ip.
        self.tables[..n].iter().rev().find(|t| ip < t.range().1).and_then(|t| t.find(ip))
    }
}

impl<T: OrcFinder + ?Sized> OrcFinder for &T {
    fn find(&self, ip: u64) -> Option<OrcEntry> {
        (**self).find(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orc::OrcType;

    /// Builds section bytes for (ip, raw type) pairs with the ip table at `base`.
    pub(crate) fn sections(base: u64, ips: &[u64], types: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut ipb = Vec::new();
        let mut eb = Vec::new();
        for (i, (&ip, &t)) in ips.iter().zip(types).enumerate() {
            let rel = ip.wrapping_sub(base + 4 * i as u64) as i64 as i32;
            ipb.extend_from_slice(&rel.to_le_bytes());
            eb.extend_from_slice(&[i as u8, 0, 0, 0, 0x05, t]);
        }
        (ipb, eb)
    }

    #[test]
    fn rightmost_match_and_bounds() {
        let base = 0xffffffff82000000;
        let ips = [0xffffffff81000000, 0xffffffff81000010, 0xffffffff81000010, 0xffffffff81000400];
        let (a, b) = sections(base, &ips, &[2, 2, 2, 1]);
        let t = OrcTable::new(&a[..], &b[..], base, OrcFormat::V3).unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t.find_index(0xffffffff80ffffff), None);
        assert_eq!(t.find_index(0xffffffff81000000), Some(0));
        assert_eq!(t.find_index(0xffffffff8100000f), Some(0));
        // Duplicates: the rightmost wins.
        assert_eq!(t.find_index(0xffffffff81000010), Some(2));
        assert_eq!(t.find_index(0xffffffff810003ff), Some(2));
        assert_eq!(t.find_index(0xffffffff81000400), Some(3));
        assert_eq!(t.find(0xffffffff81000500).unwrap().kind, OrcType::EndOfStack);
        assert_eq!(t.find(0xffffffff81000010).unwrap().sp_offset, 2);
    }

    #[test]
    fn block_index_agrees_with_plain_search() {
        let base = 0x10_0000;
        let mut ips = Vec::new();
        let mut x = 0x40_0000u64;
        for i in 0..2000u64 {
            x += (i * 7919) % 300; // gaps of 0..299 bytes, duplicates included
            ips.push(x);
        }
        let types = vec![2u8; ips.len()];
        let (a, b) = sections(base, &ips, &types);
        let t = OrcTable::new(&a[..], &b[..], base, OrcFormat::V3).unwrap();
        assert!(!t.lookup.is_empty());
        for probe in (0x3f_ff00..x + 600).step_by(13) {
            let want = ips.iter().rposition(|&ip| ip <= probe);
            assert_eq!(t.find_index(probe), want, "probe {probe:#x}");
        }
    }

    #[test]
    fn sparse_table_skips_the_index() {
        let base = 0x1000;
        let ips = [0x1000, 0x7000_0000_0000];
        let (a, b) = {
            // Self-relative values cannot span that far: build owned instead.
            let pairs = ips.iter().map(|&ip| (ip, [0, 0, 0, 0, 5, 2])).collect();
            let t = OrcTable::from_unsorted(pairs, OrcFormat::V3);
            assert_eq!(t.unwrap_err(), OrcError::BadRelocation { index: 1 });
            sections(base, &[0x1000, 0x7fff_0000], &[2, 2])
        };
        let t = OrcTable::new(&a[..], &b[..], base, OrcFormat::V3).unwrap();
        assert!(t.lookup.is_empty());
        assert_eq!(t.find_index(0x7fff_0001), Some(1));
        assert_eq!(t.find_index(0x7ffe_ffff), Some(0));
    }

    #[test]
    fn corrupt_tables_are_named_errors() {
        let base = 0x2000;
        let (a, b) = sections(base, &[0x5000, 0x4000], &[2, 2]);
        assert_eq!(
            OrcTable::new(&a[..], &b[..], base, OrcFormat::V3).unwrap_err(),
            OrcError::Unsorted { index: 1, ip: 0x4000 }
        );
        assert_eq!(
            OrcTable::new(&a[..3], &b[..], base, OrcFormat::V3).unwrap_err(),
            OrcError::IpSectionSize { ip_bytes: 3 }
        );
        assert_eq!(
            OrcTable::new(&a[..], &b[..7], base, OrcFormat::V3).unwrap_err(),
            OrcError::EntrySectionSize { entry_bytes: 7 }
        );
        assert_eq!(
            OrcTable::new(&a[..4], &b[..], base, OrcFormat::V3).unwrap_err(),
            OrcError::CountMismatch { ips: 1, entries: 2 }
        );
        assert_eq!(OrcTable::new(&a[..0], &b[..0], base, OrcFormat::V3).unwrap_err(), OrcError::Empty);
    }

    #[test]
    fn far_above_the_last_entry_is_the_last_entry() {
        // Found by fuzzing (orc_table, a module placed at low addresses):
        // u64::MAX minus ip_base wrapped negative and gave entry 0.
        let base = 0x2000;
        let (a, b) = sections(base, &[0x10, 0x40, 0x40], &[2, 2, 2]);
        let t = OrcTable::new(&a[..], &b[..], base, OrcFormat::V3).unwrap();
        for ip in [0x40, 0x41, 1 << 63, (1 << 63) + 0x2000, u64::MAX] {
            assert_eq!(t.find_index(ip), Some(2), "{ip:#x}");
        }
        assert_eq!(t.find_index(0x3f), Some(0));
        // The same from a table high in the address space, queried low.
        let base = 0xffffffff82000000;
        let (a, b) = sections(base, &[0xffffffff81000000, 0xffffffff81000100], &[2, 2]);
        let t = OrcTable::new(&a[..], &b[..], base, OrcFormat::V3).unwrap();
        assert_eq!(t.find_index(u64::MAX), Some(1));
        assert_eq!(t.find_index(0x1000), None);
    }

    #[test]
    fn table_at_the_top_of_the_address_space() {
        // Found by fuzzing (c_api): the block index's closing block started
        // past u64::MAX (an overflow panic in debug builds, a wrapped block
        // and a wrong answer in release builds).
        let base = u64::MAX - 0x400;
        let ips = [u64::MAX - 0x300, u64::MAX - 0x10, u64::MAX - 2];
        let (a, b) = sections(base, &ips, &[2, 2, 2]);
        let t = OrcTable::new(&a[..], &b[..], base, OrcFormat::V3).unwrap();
        for (ip, want) in [
            (u64::MAX - 0x300, 0),
            (u64::MAX - 0x11, 0),
            (u64::MAX - 0x10, 1),
            (u64::MAX - 3, 1),
            (u64::MAX - 2, 2),
            (u64::MAX, 2),
        ] {
            assert_eq!(t.find_index(ip), Some(want), "{ip:#x}");
        }
    }

    #[test]
    fn entries_wrapping_the_address_space_are_named_errors() {
        // ip_base near the top, an entry that lands past u64::MAX.
        let base = u64::MAX - 7;
        let ips = [10i32, 0].iter().flat_map(|r| r.to_le_bytes()).collect::<Vec<u8>>();
        let entries = [[0u8, 0, 0, 0, 5, 2]; 2].concat();
        assert_eq!(
            OrcTable::new(&ips[..], &entries[..], base, OrcFormat::V3).unwrap_err(),
            OrcError::Wraps { index: 0, slot: base, rel: 10 }
        );
        // ip_base near 0, an entry below it.
        let ips = [-16i32, 0].iter().flat_map(|r| r.to_le_bytes()).collect::<Vec<u8>>();
        assert_eq!(
            OrcTable::new(&ips[..], &entries[..], 8, OrcFormat::V3).unwrap_err(),
            OrcError::Wraps { index: 0, slot: 8, rel: -16 }
        );
        // The slots themselves running past the top.
        let ips = [0i32, 0].iter().flat_map(|r| r.to_le_bytes()).collect::<Vec<u8>>();
        assert!(matches!(
            OrcTable::new(&ips[..], &entries[..], u64::MAX - 1, OrcFormat::V3),
            Err(OrcError::Wraps { index: 1, .. })
        ));
    }

    #[test]
    fn unsorted_input_is_sorted_stably() {
        let pairs = vec![(0x3000, [3, 0, 0, 0, 5, 2]), (0x1000, [1, 0, 0, 0, 5, 2]), (0x3000, [4, 0, 0, 0, 5, 2])];
        let t = OrcTable::from_unsorted(pairs, OrcFormat::V3).unwrap();
        assert_eq!(t.first_ip(), 0x1000);
        assert_eq!(t.find(0x3000).unwrap().sp_offset, 4);
        assert_eq!(t.find(0x2fff).unwrap().sp_offset, 1);
    }

    #[test]
    fn several_tables() {
        let (a, b) = sections(0x9000, &[0x1000, 0x2000], &[2, 1]);
        let (c, d) = sections(0x9100, &[0x5000, 0x5100], &[2, 1]);
        let mut set = OrcTables::new();
        set.push(OrcTable::new(c, d, 0x9100, OrcFormat::V3).unwrap().with_coverage(0x5000, 0x6000));
        set.push(OrcTable::new(a, b, 0x9000, OrcFormat::V3).unwrap().with_coverage(0x1000, 0x3000));
        assert_eq!(set.find(0x1500).unwrap().kind, OrcType::Call);
        assert_eq!(set.find(0x2500).unwrap().kind, OrcType::EndOfStack);
        assert!(set.find(0x3000).is_none(), "gap between tables");
        assert_eq!(set.find(0x5050).unwrap().kind, OrcType::Call);
        assert!(set.find(0x6000).is_none());
        assert!(set.find(0x10).is_none());
    }
}
