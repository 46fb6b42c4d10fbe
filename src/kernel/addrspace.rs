//! The kernel's virtual address space over physical memory: an x86-64
//! 4- or 5-level page walk from the kernel's own top-level table, with a
//! small translation cache owned by the address space (no allocation per
//! read).

use crate::memory::{Memory, MemoryError, MemoryErrorKind, PhysMemory};

/// Where the kernel image is linked (`__START_KERNEL_map`).
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
const PAGE: u64 = 4096;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const PRESENT: u64 = 1;
const PSE: u64 = 1 << 7;
const TLB_SLOTS: usize = 64;

/// What is needed to translate: the page-table root and its depth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagingConfig {
    /// Physical address of the top-level table (`init_top_pgt`).
    pub root: u64,
    /// 4 or 5.
    pub levels: u8,
    /// Memory-encryption bit(s) to clear from entries (`NUMBER(sme_mask)`).
    pub sme_mask: u64,
}

impl PagingConfig {
    /// The physical address of a kernel-image symbol: `va - __START_KERNEL_map
    /// + phys_base` (phys_base may be negative in VMCOREINFO).
    pub fn image_phys(va: u64, phys_base: i64) -> u64 {
        va.wrapping_sub(START_KERNEL_MAP).wrapping_add(phys_base as u64)
    }
}

/// The kernel address space over physical memory `P`.
pub struct KernelSpace<P> {
    phys: P,
    paging: PagingConfig,
    /// Direct-mapped cache: virtual page -> physical page (u64::MAX = empty).
    tlb: [(u64, u64); TLB_SLOTS],
    /// Top-level, P4D and PUD entries (entry address, value; u64::MAX =
    /// empty), kept across [`KernelSpace::invalidate`]: the kernel half of
    /// these tables is set up once and not freed (only huge ioremaps free a
    /// PMD page), whereas PMD and PTE entries of vmalloc'd stacks are read
    /// fresh on every look.
    upper: Vec<(u64, u64)>,
}

const UPPER_SLOTS: usize = 256;

impl<P: PhysMemory> KernelSpace<P> {
    /// An address space over `phys`, translated with `paging`; caches start empty.
    pub fn new(phys: P, paging: PagingConfig) -> Self {
        KernelSpace { phys, paging, tlb: [(u64::MAX, 0); TLB_SLOTS], upper: vec![(u64::MAX, 0); UPPER_SLOTS] }
    }

    /// A second view of the same memory with empty caches (see
    /// [`PhysMemory::split`]).
    pub fn split(&self) -> Option<Self> {
        Some(KernelSpace::new(self.phys.split()?, self.paging))
    }

    /// The page holding `va` as the source holds it decoded
    /// ([`PhysMemory::held_page`]): its physical address and a copy, made
    /// in `spare` when that is a buffer of the page's size.
    pub fn held_page(&mut self, va: u64, spare: Option<Box<[u8]>>) -> Option<(u64, Box<[u8]>)> {
        let pa = self.translate(va & !(PAGE - 1)).ok()?;
        let bytes = self.phys.held_page(pa)?;
        let copy = match spare {
            Some(mut b) if b.len() == bytes.len() => {
                b.copy_from_slice(bytes);
                b
            }
            _ => bytes.into(),
        };
        Some((pa, copy))
    }

    /// The underlying physical-memory source.
    pub fn phys(&mut self) -> &mut P {
        &mut self.phys
    }

    /// The page-table root and depth this space translates with.
    pub fn paging(&self) -> PagingConfig {
        self.paging
    }

    /// Forgets cached translations and the source's cached bytes: a live
    /// kernel remaps (a freed vmalloc'd stack) and rewrites memory. The
    /// upper page-table levels stay (see [`KernelSpace::invalidate_all`]).
    pub fn invalidate(&mut self) {
        self.tlb = [(u64::MAX, 0); TLB_SLOTS];
        self.phys.invalidate();
    }

    /// As [`KernelSpace::invalidate`], and the upper page-table levels too.
    pub fn invalidate_all(&mut self) {
        self.upper.fill((u64::MAX, 0));
        self.invalidate();
    }

    /// Reads `buf.len()` bytes at `va` as they are now (see
    /// [`PhysMemory::read_phys_fresh`]) when the source maps them at fixed
    /// physical addresses (kcore's direct map: a task_struct), leaving the
    /// rest of the cache. Else drops every cached byte and translation and
    /// reads through the page tables afresh.
    pub fn read_fresh(&mut self, va: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let len = buf.len() as u64;
        let fixed = self.phys.fixed_translation(va).filter(|&pa| {
            // One linear run, page by page.
            let mut page = va & !(PAGE - 1);
            while page.wrapping_add(PAGE) < va.wrapping_add(len) {
                page = page.wrapping_add(PAGE);
                if self.phys.fixed_translation(page) != Some(pa.wrapping_add(page.wrapping_sub(va))) {
                    return false;
                }
            }
            true
        });
        match fixed {
            Some(pa) => self
                .phys
                .read_phys_fresh(pa, buf)
                .map_err(|e| MemoryError::new(va.wrapping_add(e.addr.wrapping_sub(pa)), e.kind)),
            None => {
                self.invalidate();
                self.read(va, buf)
            }
        }
    }

    fn upper_entry(&mut self, table: u64, index: u64) -> Result<u64, MemoryError> {
        let at = table + index * 8;
        let slot = ((at / 8) as usize) % UPPER_SLOTS;
        if self.upper[slot].0 == at {
            return Ok(self.upper[slot].1);
        }
        let e = self.entry(table, index)?;
        self.upper[slot] = (at, e);
        Ok(e)
    }

    fn entry(&mut self, table: u64, index: u64) -> Result<u64, MemoryError> {
        let mut b = [0u8; 8];
        self.phys.read_phys(table + index * 8, &mut b)?;
        Ok(u64::from_le_bytes(b) & !self.paging.sme_mask)
    }

    /// Translates a virtual address to physical.
    pub fn translate(&mut self, va: u64) -> Result<u64, MemoryError> {
        let vpage = va & !(PAGE - 1);
        let slot = ((vpage >> 12) as usize) % TLB_SLOTS;
        if self.tlb[slot].0 == vpage {
            return Ok(self.tlb[slot].1 | (va & (PAGE - 1)));
        }
        if let Some(pa) = self.phys.fixed_translation(va) {
            self.tlb[slot] = (vpage, pa & !(PAGE - 1));
            return Ok(pa);
        }
        let unmapped = MemoryError::new(va, MemoryErrorKind::Unmapped);
        // Canonical addresses only.
        let bits = if self.paging.levels == 5 { 57 } else { 48 };
        let top = (va as i64) >> (bits - 1);
        if top != 0 && top != -1 {
            return Err(unmapped);
        }
        let mut table = self.paging.root & ADDR_MASK;
        let mut shift = if self.paging.levels == 5 { 48 } else { 39 };
        loop {
            let index = (va >> shift) & 511;
            let e = if shift >= 30 { self.upper_entry(table, index) } else { self.entry(table, index) };
            let e = e.map_err(|e| MemoryError::new(va, e.kind))?;
            if e & PRESENT == 0 {
                return Err(unmapped);
            }
            // A large page at the PUD (1 GiB) or PMD (2 MiB) level.
            if (shift == 30 || shift == 21) && e & PSE != 0 {
                let size = 1u64 << shift;
                let pa = (e & ADDR_MASK & !(size - 1)) | (va & (size - 1));
                self.tlb[slot] = (vpage, pa & !(PAGE - 1));
                return Ok(pa);
            }
            table = e & ADDR_MASK;
            if shift == 12 {
                self.tlb[slot] = (vpage, table);
                return Ok(table | (va & (PAGE - 1)));
            }
            shift -= 9;
        }
    }
}

impl<P: PhysMemory> Memory for KernelSpace<P> {
    /// Reads `len` bytes at `addr` ahead in one request when they are
    /// physically contiguous (see [`PhysMemory::prefetch`]); else nothing.
    fn prefetch(&mut self, addr: u64, len: u64) {
        let va = addr;
        let Ok(pa) = self.translate(va) else { return };
        let mut page = va & !(PAGE - 1);
        while page.wrapping_add(PAGE) < va.wrapping_add(len) {
            page = page.wrapping_add(PAGE);
            if self.translate(page) != Ok(pa.wrapping_add(page - va)) {
                return;
            }
        }
        self.phys.prefetch(pa, len);
    }
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let mut done = 0usize;
        while done < buf.len() {
            let va = addr.wrapping_add(done as u64);
            let in_page = (PAGE - (va & (PAGE - 1))) as usize;
            let n = in_page.min(buf.len() - done);
            let pa = self.translate(va)?;
            self.phys.read_phys(pa, &mut buf[done..done + n]).map_err(|e| MemoryError::new(va, e.kind))?;
            done += n;
        }
        Ok(())
    }
}

/// Bulk reads this long are split between two readers. The buffer is
/// allocated whole, so a length beyond any real table (claimed by a
/// corrupt dump) is read as one reader does, growing with what is there.
const SPLIT: std::ops::RangeInclusive<usize> = (256 << 10)..=(64 << 20);

/// A kernel address space and, when its memory can be split, a second
/// reader of it: a large [`Memory::read_bulk`] (setup's megabytes of
/// kallsyms, BTF and ORC tables) reads its upper half on a second thread,
/// each half decoded straight into its part of the buffer.
pub struct SplitReader<'a, P> {
    first: &'a mut KernelSpace<P>,
    second: Option<KernelSpace<P>>,
}

impl<'a, P: PhysMemory + Send> SplitReader<'a, P> {
    /// Reads through `first`, and with `parallel` also through a second
    /// reader of the same memory (none if the memory cannot be split).
    pub fn new(first: &'a mut KernelSpace<P>, parallel: bool) -> Self {
        let second = if parallel { first.split() } else { None };
        SplitReader { first, second }
    }
}

impl<P: PhysMemory + Send> Memory for SplitReader<'_, P> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.first.read(addr, buf)
    }
    fn prefetch(&mut self, addr: u64, len: u64) {
        self.first.prefetch(addr, len)
    }
    fn read_bulk(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, MemoryError> {
        if !SPLIT.contains(&len) || self.second.is_none() {
            return crate::memory::read_vec(self.first, addr, len);
        }
        // Zeroed memory this large is fresh pages, touched only by the reads.
        let mut buf = vec![0u8; len];
        self.read_bulk_into(addr, &mut buf).map(|()| buf)
    }
    fn read_bulk_into(&mut self, addr: u64, out: &mut [u8]) -> Result<(), MemoryError> {
        let Some(second) = self.second.as_mut().filter(|_| SPLIT.contains(&out.len())) else {
            return crate::memory::read_blocks(self.first, addr, out);
        };
        // Split on a page boundary.
        let len = out.len();
        let mid = (addr.wrapping_add(len as u64 / 2) & !(PAGE - 1)).wrapping_sub(addr) as usize;
        let (low, high) = out.split_at_mut(mid.min(len));
        let first = &mut *self.first;
        // On rayon's threads: a thread made for the read starts on this
        // one's CPU and is moved only later (on a 2-vCPU VM the halves
        // then ran one after the other); the pool's threads are ready.
        let (a, b) = rayon::join(
            || crate::memory::read_blocks(first, addr, low),
            || crate::memory::read_blocks(second, addr.wrapping_add(mid as u64), high),
        );
        // The lower half's error first: it names the first page that failed.
        a.and(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SliceMemory;

    /// A 1 MiB physical image with hand-built tables.
    struct Builder {
        mem: Vec<u8>,
    }

    impl Builder {
        fn set(&mut self, pa: u64, v: u64) {
            self.mem[pa as usize..pa as usize + 8].copy_from_slice(&v.to_le_bytes());
        }
    }

    fn idx(va: u64, shift: u32) -> u64 {
        (va >> shift) & 511
    }

    /// A bulk read split between two readers gives the bytes one reader
    /// gives, and the error of the first page that failed.
    #[test]
    fn split_bulk_reads_match_one_reader() {
        // 1 MiB of physical memory; va page i maps pa page 0x10 + i through
        // one PTE table, except page 200, which is not present.
        let mut b = Builder { mem: (0..1u32 << 20).map(|i| (i * 31 + i / 4096) as u8).collect() };
        let (pgd, pud, pmd, pte) = (0x1000u64, 0x2000, 0x3000, 0x4000);
        let base = 0xffff_c900_0000_0000_u64;
        b.set(pgd + idx(base, 39) * 8, pud | 0x63);
        b.set(pud + idx(base, 30) * 8, pmd | 0x63);
        b.set(pmd + idx(base, 21) * 8, pte | 0x63);
        for i in 0..240u64 {
            if i != 200 {
                b.set(pte + i * 8, ((0x10 + i) << 12) | 0x63);
            }
        }
        let paging = PagingConfig { root: pgd, levels: 4, sme_mask: 0 };
        let mut one = KernelSpace::new(SliceMemory::new(0, &b.mem), paging);
        let mut two = KernelSpace::new(SliceMemory::new(0, &b.mem), paging);
        let mut split = SplitReader::new(&mut two, true);
        assert!(split.second.is_some());
        for (at, len) in [(base + 0x123, 190 * 4096), (base, 300 << 10), (base + 5, 100)] {
            let want = crate::memory::read_vec(&mut one, at, len).unwrap();
            assert_eq!(want.len(), len);
            assert!(split.read_bulk(at, len).unwrap() == want, "{at:#x} + {len:#x}");
        }
        // Page 200 fails, in the upper half or the lower one; with a hole
        // in each half (pages 240 on are not mapped), the lower is named.
        let hole = (base + 200 * 4096, MemoryErrorKind::Unmapped);
        for (first, pages) in [(140u64, 70u64), (170, 64), (190, 64)] {
            let at = base + first * 4096 + 7;
            let err = split.read_bulk(at, (pages * 4096) as usize).err().map(|e| (e.addr, e.kind));
            assert_eq!(err, Some(hole), "pages {first}..{}", first + pages);
        }
    }

    #[test]
    fn four_level_walk_with_large_pages() {
        let mut b = Builder { mem: vec![0; 1 << 20] };
        let (pgd, pud, pmd, pte) = (0x1000u64, 0x2000, 0x3000, 0x4000);
        let va = 0xffff_c900_0001_0123_u64; // vmalloc-ish
        b.set(pgd + idx(va, 39) * 8, pud | 0x63);
        b.set(pud + idx(va, 30) * 8, pmd | 0x63);
        b.set(pmd + idx(va, 21) * 8, pte | 0x63);
        b.set(pte + idx(va, 12) * 8, 0x8000 | 0x63 | (1 << 63)); // NX bit set
        b.set(0x8123, 0x1122334455667788);
        // A 2 MiB page and a 1 GiB page.
        let va2m = 0xffff_ffff_8120_0000_u64 + 0x10;
        b.set(pgd + idx(va2m, 39) * 8, 0x5000 | 0x63);
        b.set(0x5000 + idx(va2m, 30) * 8, 0x6000 | 0x63);
        b.set(0x6000 + idx(va2m, 21) * 8, 0xe3); // PSE, maps pa 0
        let va1g = 0xffff_8880_0000_0000_u64 + 0x9000;
        b.set(pgd + idx(va1g, 39) * 8, 0x7000 | 0x63);
        b.set(0x7000 + idx(va1g, 30) * 8, 0xe3); // PSE at PUD: pa 0
        let mut ks = KernelSpace::new(SliceMemory::new(0, &b.mem), PagingConfig { root: pgd, levels: 4, sme_mask: 0 });
        assert_eq!(ks.translate(va).unwrap(), 0x8123);
        assert_eq!(ks.read_u64(va).unwrap(), 0x1122334455667788);
        assert_eq!(ks.read_u64(va).unwrap(), 0x1122334455667788, "cached");
        assert_eq!(ks.translate(va2m).unwrap(), 0x10);
        assert_eq!(ks.translate(va1g).unwrap(), 0x9000);
        // Not present, non-canonical.
        assert_eq!(ks.translate(0xffff_c901_0000_0000).unwrap_err().kind, MemoryErrorKind::Unmapped);
        assert_eq!(ks.translate(0x0000_9000_0000_0000).unwrap_err().kind, MemoryErrorKind::Unmapped);
        // A read across into an unmapped page fails naming that page.
        let e = ks.read(va | 0xffc, &mut [0u8; 8]).unwrap_err();
        assert_eq!(e.addr, (va | 0xfff) + 1);
    }

    /// Tables at 0x1000 (PGD), 0x2000, 0x3000, 0x4000 (PTE) mapping a vmalloc
    /// page `va` to 0x8000.
    fn one_mapped_page() -> (Builder, u64) {
        let mut b = Builder { mem: vec![0; 1 << 20] };
        let (pgd, pud, pmd, pte) = (0x1000u64, 0x2000, 0x3000, 0x4000);
        let va = 0xffff_c900_0001_0000_u64;
        b.set(pgd + idx(va, 39) * 8, pud | 0x63);
        b.set(pud + idx(va, 30) * 8, pmd | 0x63);
        b.set(pmd + idx(va, 21) * 8, pte | 0x63);
        b.set(pte + idx(va, 12) * 8, 0x8000 | 0x63);
        (b, va)
    }

    /// Physical memory over a Vec that the test rewrites between looks.
    struct Live(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);
    impl PhysMemory for Live {
        fn read_phys(&mut self, pa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            SliceMemory::new(0, &self.0.borrow()).read(pa, buf)
        }
    }

    #[test]
    fn invalidate_rereads_pmd_and_pte_but_keeps_upper_levels() {
        let (b, va) = one_mapped_page();
        let (pgd, pud, pmd, pte) = (0x1000u64, 0x2000, 0x3000, 0x4000);
        let mem = std::rc::Rc::new(std::cell::RefCell::new(b.mem));
        let set = |pa: u64, v: u64| mem.borrow_mut()[pa as usize..pa as usize + 8].copy_from_slice(&v.to_le_bytes());
        let mut ks = KernelSpace::new(Live(mem.clone()), PagingConfig { root: pgd, levels: 4, sme_mask: 0 });
        assert_eq!(ks.translate(va).unwrap(), 0x8000);
        // The stack is remapped: seen after invalidate, not before.
        set(pte + idx(va, 12) * 8, 0x9000 | 0x63);
        assert_eq!(ks.translate(va).unwrap(), 0x8000, "translation cached");
        ks.invalidate();
        assert_eq!(ks.translate(va).unwrap(), 0x9000);
        set(pmd + idx(va, 21) * 8, 0);
        ks.invalidate();
        assert!(ks.translate(va).is_err(), "PMD read fresh");
        // A PUD change is only seen after invalidate_all.
        set(pmd + idx(va, 21) * 8, pte | 0x63);
        set(pud + idx(va, 30) * 8, 0);
        ks.invalidate();
        assert_eq!(ks.translate(va).unwrap(), 0x9000);
        ks.invalidate_all();
        assert!(ks.translate(va).is_err());
    }

    /// A cache over `Live` that keeps the bytes of its first look until
    /// invalidated, with a fixed (direct) mapping of va 0xffff_8880_0000_0000.
    struct Stale {
        live: Live,
        seen: Option<Vec<u8>>,
        invalidates: u32,
    }
    const DIRECT: u64 = 0xffff_8880_0000_0000;
    impl PhysMemory for Stale {
        fn read_phys(&mut self, pa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            let seen = self.seen.get_or_insert_with(|| self.live.0.borrow().clone());
            SliceMemory::new(0, seen).read(pa, buf)
        }
        fn invalidate(&mut self) {
            self.seen = None;
            self.invalidates += 1;
        }
        fn read_phys_fresh(&mut self, pa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            self.live.read_phys(pa, buf)
        }
        fn fixed_translation(&self, va: u64) -> Option<u64> {
            va.checked_sub(DIRECT).filter(|&pa| pa < 0x10_0000)
        }
    }

    #[test]
    fn fresh_reads_of_fixed_mappings_keep_the_cache() {
        let (mut b, va) = one_mapped_page();
        let pgd = 0x1000u64;
        b.set(0x9ff8, 7);
        let mem = std::rc::Rc::new(std::cell::RefCell::new(b.mem));
        let live = Live(mem.clone());
        let mut ks = KernelSpace::new(
            Stale { live, seen: None, invalidates: 0 },
            PagingConfig { root: pgd, levels: 4, sme_mask: 0 },
        );
        assert_eq!(ks.read_u64(DIRECT + 0x9ff8).unwrap(), 7);
        mem.borrow_mut()[0x9ff8] = 8;
        mem.borrow_mut()[0xa000] = 9;
        assert_eq!(ks.read_u64(DIRECT + 0x9ff8).unwrap(), 7, "cached");
        // Across two pages of the direct map: fresh, and nothing dropped.
        let mut two = [0u8; 16];
        ks.read_fresh(DIRECT + 0x9ff8, &mut two).unwrap();
        assert_eq!((two[0], two[8]), (8, 9));
        assert_eq!(ks.phys().invalidates, 0);
        // Through the page tables: everything dropped, then read.
        mem.borrow_mut()[0x8000] = 5;
        let mut one = [0u8; 1];
        ks.read_fresh(va, &mut one).unwrap();
        assert_eq!((one[0], ks.phys().invalidates), (5, 1));
        // Errors name the virtual address.
        let e = ks.read_fresh(DIRECT + 0xf_fff8, &mut two).unwrap_err();
        assert_eq!(e.addr, DIRECT + 0x10_0000);
    }

    #[test]
    fn five_level_walk() {
        let mut b = Builder { mem: vec![0; 1 << 20] };
        let va = 0xff11_0000_0000_5000u64; // 5-level direct map
        let tables = [0x1000u64, 0x2000, 0x3000, 0x4000, 0x5000];
        let shifts = [48u32, 39, 30, 21, 12];
        for i in 0..4 {
            b.set(tables[i] + idx(va, shifts[i]) * 8, tables[i + 1] | 0x63);
        }
        b.set(tables[4] + idx(va, 12) * 8, 0x9000 | 0x63 | 0x8000_0000_0000); // an sme bit
        let mut ks = KernelSpace::new(
            SliceMemory::new(0, &b.mem),
            PagingConfig { root: 0x1000, levels: 5, sme_mask: 0x8000_0000_0000 },
        );
        assert_eq!(ks.translate(va + 7).unwrap(), 0x9007);
        // The same address under 4 levels is not canonical.
        let mut ks4 =
            KernelSpace::new(SliceMemory::new(0, &b.mem), PagingConfig { root: 0x1000, levels: 4, sme_mask: 0 });
        assert!(ks4.translate(va).is_err());
    }

    #[test]
    fn image_phys_handles_negative_phys_base() {
        assert_eq!(PagingConfig::image_phys(0xffffffff82a0c000, -119537664), 0x2a0c000u64.wrapping_sub(119537664));
        assert_eq!(PagingConfig::image_phys(0xffffffff81000000, 0x1000000), 0x2000000);
    }
}
