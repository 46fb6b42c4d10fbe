//! vmlinux's ORC tables, read from memory a page at a time as lookups need
//! them: a check of a whole dump touches a few hundred of their ~1,100
//! pages, and reading them all was a fifth of a small dump's check.
//!
//! A lookup first narrows the search with the kernel's own block index
//! (`orc_lookup`, which `unwind_init` fills at boot: for each 256-byte
//! block of `_stext.._etext`, the index of the entry at or before its
//! start), then searches the ip table. The answer is always checked
//! against the ip table itself (its ip at or below the target, the next
//! one above), and a search of the whole table replaces it if not, so a
//! wrong or absent index costs time, never a wrong entry. A page that
//! cannot be read makes the lookup fail: the walk is then unreliable.

use std::cell::RefCell;
use std::sync::OnceLock;

use crate::memory::{Memory, MemoryError};
use crate::orc::{ORC_ENTRY_SIZE, OrcEntry, OrcError, OrcFinder, OrcFormat, OrcTables};

const PAGE: u64 = 4096;
/// Text bytes per block of `orc_lookup`.
const BLOCK: u64 = 256;

/// A region of kernel memory whose pages are read once, on first use, by
/// whichever thread needs them first.
struct Pages {
    first_page: u64,
    cells: Vec<OnceLock<Box<[u8]>>>,
}

impl Pages {
    fn new(start: u64, len: u64) -> Pages {
        let first_page = start & !(PAGE - 1);
        let pages = start.saturating_add(len).saturating_sub(first_page).div_ceil(PAGE);
        Pages { first_page, cells: (0..pages).map(|_| OnceLock::new()).collect() }
    }

    fn page(&self, k: usize, mem: &mut dyn Memory) -> Option<&[u8]> {
        let cell = self.cells.get(k)?;
        if let Some(page) = cell.get() {
            return Some(page);
        }
        let mut page = vec![0u8; PAGE as usize].into_boxed_slice();
        mem.read(self.first_page.wrapping_add(k as u64 * PAGE), &mut page).ok()?;
        Some(cell.get_or_init(|| page))
    }

    /// `N` bytes at `addr`, which may straddle two pages.
    fn bytes<const N: usize>(&self, addr: u64, mem: &mut dyn Memory) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        let mut done = 0;
        while done < N {
            let at = addr.checked_add(done as u64)?.checked_sub(self.first_page)?;
            let (k, off) = ((at / PAGE) as usize, (at % PAGE) as usize);
            let page = self.page(k, mem)?;
            let n = (N - done).min(PAGE as usize - off);
            out[done..done + n].copy_from_slice(page.get(off..off + n)?);
            done += n;
        }
        Some(out)
    }
}

/// The ip an `.orc_unwind_ip` slot at `slot` holds: relative to the slot.
fn ip_in_slot(slot: u64, rel: [u8; 4]) -> u64 {
    slot.wrapping_add(i32::from_le_bytes(rel) as i64 as u64)
}

/// Where vmlinux's ORC tables are in memory.
#[derive(Clone, Copy, Debug)]
pub struct OrcLocation {
    /// `__start_orc_unwind_ip`.
    pub ips: u64,
    /// Entries (the ip table's length / 4).
    pub len: u64,
    /// `__start_orc_unwind`.
    pub entries: u64,
    /// `orc_lookup`, `orc_lookup_end` and `_stext`, when kallsyms has them.
    pub lookup: Option<(u64, u64, u64)>,
}

/// vmlinux's ORC tables in memory, read on demand (see the module comment).
pub struct LazyOrc {
    ips: Pages,
    ip_base: u64,
    entries: Pages,
    entry_base: u64,
    len: usize,
    format: OrcFormat,
    /// `orc_lookup` (its pages), `_stext` and its number of blocks.
    lookup: Option<(Pages, u64, u64, u64)>,
    first_ip: u64,
    last_ip: u64,
}

impl std::fmt::Debug for LazyOrc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let read = |p: &Pages| p.cells.iter().filter(|c| c.get().is_some()).count();
        f.debug_struct("LazyOrc")
            .field("entries", &self.len)
            .field("ip_pages_read", &read(&self.ips))
            .field("entry_pages_read", &read(&self.entries))
            .finish()
    }
}

impl LazyOrc {
    /// The tables at `at`, checked at their ends only: their first and
    /// last ips are read (and must be in order); the rest waits for
    /// lookups. `mem` reads them now; later lookups bring their own.
    pub fn new(at: OrcLocation, format: OrcFormat, mem: &mut dyn Memory) -> Result<LazyOrc, MemoryError> {
        let len = usize::try_from(at.len).unwrap_or(usize::MAX).min(u32::MAX as usize);
        let lookup = at.lookup.and_then(|(start, end, stext)| {
            let blocks = end.checked_sub(start)? / 4;
            (blocks >= 2).then(|| (Pages::new(start, blocks * 4), start, stext, blocks))
        });
        let mut orc = LazyOrc {
            ips: Pages::new(at.ips, len as u64 * 4),
            ip_base: at.ips,
            entries: Pages::new(at.entries, len as u64 * ORC_ENTRY_SIZE as u64),
            entry_base: at.entries,
            len,
            format,
            lookup,
            first_ip: 0,
            last_ip: 0,
        };
        // Read here, not through the pages, so that an error names the address.
        let mut ip_at = |i: usize| {
            let slot = at.ips.wrapping_add(4 * i as u64);
            let mut rel = [0u8; 4];
            mem.read(slot, &mut rel)?;
            Ok::<u64, MemoryError>(ip_in_slot(slot, rel))
        };
        if len > 0 {
            orc.first_ip = ip_at(0)?;
            orc.last_ip = ip_at(len - 1)?;
        }
        Ok(orc)
    }

    /// What can be said of the table from its ends: it has entries, and
    /// its first ip is not above its last (a table read whole is checked
    /// in full; this one is checked lookup by lookup).
    pub fn check(&self) -> Result<(), OrcError> {
        match self.len {
            0 => Err(OrcError::Empty),
            n if self.first_ip > self.last_ip => Err(OrcError::Unsorted { index: n as u64 - 1, ip: self.last_ip }),
            _ => Ok(()),
        }
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a table without entries (never answers).
    pub fn is_empty(&self) -> bool {
        self.len == 0 || self.first_ip > self.last_ip
    }

    /// Whether `ip` is this table's to answer (vmlinux's text).
    pub fn covers(&self, ip: u64) -> bool {
        !self.is_empty() && ip >= self.first_ip && ip <= self.last_ip
    }

    fn ip_at(&self, i: usize, mem: &mut dyn Memory) -> Option<u64> {
        let slot = self.ip_base.wrapping_add(4 * i as u64);
        Some(ip_in_slot(slot, self.ips.bytes::<4>(slot, mem)?))
    }

    /// The kernel's candidate range for `ip`: `[orc_lookup[b], orc_lookup[b + 1] + 1)`.
    fn block_range(&self, ip: u64, mem: &mut dyn Memory) -> Option<(usize, usize)> {
        let (pages, start, stext, blocks) = self.lookup.as_ref()?;
        let b = ip.checked_sub(*stext)? / BLOCK;
        if b + 1 >= *blocks {
            return None;
        }
        let mut at = |k: u64| pages.bytes::<4>(start + 4 * k, &mut *mem).map(|v| u32::from_le_bytes(v) as usize);
        let lo = at(b)?;
        let hi = at(b + 1)?.saturating_add(1).min(self.len);
        (lo < hi).then_some((lo, hi))
    }

    /// The rightmost entry in `[lo, hi)` whose ip is at or below `ip`.
    fn search(&self, ip: u64, lo: usize, hi: usize, mem: &mut dyn Memory) -> Option<usize> {
        let (mut lo, mut hi) = (lo, hi);
        // The first entry above `ip`, by bisection; the answer is before it.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.ip_at(mid, mem)? <= ip { lo = mid + 1 } else { hi = mid }
        }
        lo.checked_sub(1)
    }

    /// Whether entry `i` is the answer for `ip` as the ip table itself has it.
    fn answers(&self, i: usize, ip: u64, mem: &mut dyn Memory) -> Option<bool> {
        let next_above = if i + 1 < self.len { self.ip_at(i + 1, mem)? > ip } else { true };
        Some(self.ip_at(i, mem)? <= ip && next_above)
    }

    /// The entry for `ip` (the rightmost at or below it), reading through
    /// `mem` what has not been read yet.
    pub fn find(&self, ip: u64, mem: &mut dyn Memory) -> Option<OrcEntry> {
        if !self.covers(ip) {
            return None;
        }
        let narrowed = self.block_range(ip, mem).and_then(|(lo, hi)| self.search(ip, lo, hi, mem));
        let i = match narrowed {
            Some(i) if self.answers(i, ip, mem)? => i,
            _ => self.search(ip, 0, self.len, mem).filter(|&i| self.answers(i, ip, mem) == Some(true))?,
        };
        let bytes = self.entries.bytes::<ORC_ENTRY_SIZE>(self.entry_base + (i * ORC_ENTRY_SIZE) as u64, mem)?;
        Some(OrcEntry::decode(bytes, self.format))
    }
}

/// A kernel's ORC for one walk: vmlinux's, read on demand through the
/// walk's own memory, and the tables read whole (modules; vmlinux's when
/// not read on demand).
pub(crate) struct KernelOrc<'a, M> {
    pub(crate) tables: &'a OrcTables<'static>,
    pub(crate) vmlinux: Option<&'a LazyOrc>,
    pub(crate) mem: &'a RefCell<M>,
}

impl<M: Memory> OrcFinder for KernelOrc<'_, M> {
    fn find(&self, ip: u64) -> Option<OrcEntry> {
        match self.vmlinux {
            Some(v) if v.covers(ip) => v.find(ip, &mut *self.mem.try_borrow_mut().ok()?),
            _ => self.tables.find(ip),
        }
    }
}

/// The walk's memory, shared with its [`KernelOrc`]: the two take turns
/// (a lookup reads ORC pages between the walk's own reads).
pub(crate) struct SharedMemory<'a, M>(pub(crate) &'a RefCell<M>);

impl<M: Memory> Memory for SharedMemory<'_, M> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        match self.0.try_borrow_mut() {
            Ok(mut mem) => mem.read(addr, buf),
            Err(_) => Err(MemoryError::new(addr, crate::memory::MemoryErrorKind::Backend)),
        }
    }
    fn prefetch(&mut self, addr: u64, len: u64) {
        if let Ok(mut mem) = self.0.try_borrow_mut() {
            mem.prefetch(addr, len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SliceMemory;
    use crate::orc::{OrcTable, OrcType};

    /// An image at `BASE`: an ip table (entry i at ip `TEXT + 16 i`, some
    /// repeated), its entries (entry i's first byte is i), and a block
    /// index over the text as the kernel builds it.
    const BASE: u64 = 0xffff_ffff_8300_0000;
    const TEXT: u64 = 0xffff_ffff_8100_0000;
    const N: usize = 5000;

    fn ips() -> Vec<u64> {
        (0..N as u64).map(|i| TEXT + 16 * i - 16 * u64::from(i % 97 == 5)).collect()
    }

    fn image(lookup: impl Fn(usize, &[u64]) -> u32) -> (Vec<u8>, OrcLocation) {
        let ips = ips();
        let (ip_at, entries_at, lookup_at) = (BASE + 0x10, BASE + 0x8000, BASE + 0x10_000);
        let mut img = vec![0u8; 0x20_000];
        for (i, &ip) in ips.iter().enumerate() {
            let slot = ip_at + 4 * i as u64;
            let o = (slot - BASE) as usize;
            img[o..o + 4].copy_from_slice(&(ip.wrapping_sub(slot) as i64 as i32).to_le_bytes());
            let e = (entries_at - BASE) as usize + 6 * i;
            img[e..e + 6].copy_from_slice(&[i as u8, (i >> 8) as u8, 0, 0, 0x05, 2]);
        }
        let blocks = (16 * N as u64 / BLOCK + 2) as usize;
        for b in 0..blocks {
            let o = (lookup_at - BASE) as usize + 4 * b;
            img[o..o + 4].copy_from_slice(&lookup(b, &ips).to_le_bytes());
        }
        let loc = OrcLocation {
            ips: ip_at,
            len: N as u64,
            entries: entries_at,
            lookup: Some((lookup_at, lookup_at + 4 * blocks as u64, TEXT)),
        };
        (img, loc)
    }

    /// The kernel's index: the rightmost entry at or before the block start.
    fn kernel_index(b: usize, ips: &[u64]) -> u32 {
        let start = TEXT + b as u64 * BLOCK;
        (ips.partition_point(|&ip| ip <= start).max(1) - 1) as u32
    }

    fn eager(img: &[u8], loc: OrcLocation) -> OrcTable<'static> {
        let o = |a: u64| (a - BASE) as usize;
        let ips = img[o(loc.ips)..o(loc.ips) + 4 * N].to_vec();
        let entries = img[o(loc.entries)..o(loc.entries) + 6 * N].to_vec();
        OrcTable::new(ips, entries, loc.ips, OrcFormat::V3).unwrap()
    }

    /// Every ip answered as the table read whole answers it, with the
    /// kernel's index, a wrong one, and none.
    #[test]
    fn answers_as_the_whole_table_does() {
        let wrong = |b: usize, _: &[u64]| (b as u32 * 7919) % N as u32;
        for (name, lookup) in [("kernel", &kernel_index as &dyn Fn(usize, &[u64]) -> u32), ("wrong", &wrong)] {
            let (img, loc) = image(lookup);
            let whole = eager(&img, loc);
            for loc in [loc, OrcLocation { lookup: None, ..loc }] {
                let mut mem = SliceMemory::new(BASE, &img);
                let lazy = LazyOrc::new(loc, OrcFormat::V3, &mut mem).unwrap();
                for ip in (TEXT - 40..TEXT + 16 * N as u64 + 40).step_by(3) {
                    let want = if lazy.covers(ip) { whole.find(ip) } else { None };
                    assert_eq!(lazy.find(ip, &mut mem), want, "{name} index, {ip:#x}");
                }
            }
        }
    }

    #[test]
    fn reads_only_the_pages_it_needs() {
        let (img, loc) = image(kernel_index);
        let mut mem = SliceMemory::new(BASE, &img);
        let lazy = LazyOrc::new(loc, OrcFormat::V3, &mut mem).unwrap();
        let e = lazy.find(TEXT + 16 * 4000 + 3, &mut mem).unwrap();
        assert_eq!((e.kind, e.sp_offset), (OrcType::Call, 4000 % 256 + 256 * 15));
        let read = |p: &Pages| p.cells.iter().filter(|c| c.get().is_some()).count();
        // The index page, the last ip page (read at setup) and the first,
        // and the entry page.
        assert!(read(&lazy.ips) <= 3 && read(&lazy.entries) == 1, "{lazy:?}");
    }

    #[test]
    fn empty_or_backwards_tables_are_refused() {
        let (img, loc) = image(kernel_index);
        let mut mem = SliceMemory::new(BASE, &img);
        assert_eq!(LazyOrc::new(loc, OrcFormat::V3, &mut mem).unwrap().check(), Ok(()));
        let empty = LazyOrc::new(OrcLocation { len: 0, ..loc }, OrcFormat::V3, &mut mem).unwrap();
        assert_eq!(empty.check(), Err(OrcError::Empty));
        assert!(!empty.covers(TEXT));
        // The last entry's ip made lower than the first's.
        let mut back = img.clone();
        let slot = (loc.ips - BASE) as usize + 4 * (N - 1);
        back[slot..slot + 4].copy_from_slice(&(-(1i32 << 30)).to_le_bytes());
        let mut mem = SliceMemory::new(BASE, &back);
        let lazy = LazyOrc::new(loc, OrcFormat::V3, &mut mem).unwrap();
        assert!(matches!(lazy.check(), Err(OrcError::Unsorted { index, .. }) if index == N as u64 - 1));
    }

    #[test]
    fn unreadable_pages_fail_the_lookup() {
        let (img, loc) = image(kernel_index);
        let mut mem = SliceMemory::new(BASE, &img);
        let lazy = LazyOrc::new(loc, OrcFormat::V3, &mut mem).unwrap();
        // Memory that ends before the entries.
        let mut short = SliceMemory::new(BASE, &img[..0x8000]);
        assert_eq!(lazy.find(TEXT + 16 * 100, &mut short), None);
        assert!(lazy.find(TEXT + 16 * 100, &mut mem).is_some());
    }
}
