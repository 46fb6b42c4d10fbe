//! The address space seen by an unwinder: something that reads bytes at a
//! virtual address. Dumps, live processes and C callbacks all implement it;
//! the unwinder never knows which one it has.

/// Why a read failed. Small and `Copy`, so it can sit in a verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryErrorKind {
    /// No mapping covers the address.
    Unmapped,
    /// The page exists in the source but was left out (e.g. filtered from a dump).
    NotInDump,
    /// Fewer bytes came back than asked for.
    ShortRead,
    /// The backing store failed (I/O, ptrace, callback error).
    Backend,
}

/// A failed read: where, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("memory at {addr:#x}: {}", kind_text(*kind))]
pub struct MemoryError {
    /// Address the failed read asked for (virtual, or physical for a [`PhysMemory`]).
    pub addr: u64,
    /// Why it failed.
    pub kind: MemoryErrorKind,
}

fn kind_text(kind: MemoryErrorKind) -> &'static str {
    match kind {
        MemoryErrorKind::Unmapped => "not mapped",
        MemoryErrorKind::NotInDump => "page not in dump",
        MemoryErrorKind::ShortRead => "short read",
        MemoryErrorKind::Backend => "read failed",
    }
}

impl MemoryError {
    /// An error for a read at `addr` that failed for `kind`.
    pub fn new(addr: u64, kind: MemoryErrorKind) -> Self {
        MemoryError { addr, kind }
    }
}

/// Reads memory. `read` fills all of `buf` or fails; partial reads are errors.
pub trait Memory {
    /// Fills all of `buf` with the bytes at virtual address `addr`, or fails.
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError>;

    /// Reads a little-endian u64, the unit of every stack access.
    fn read_u64(&mut self, addr: u64) -> Result<u64, MemoryError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// A hint: `len` bytes at `addr` are about to be read (a task_struct).
    /// A source with a cache may fetch them in one request.
    fn prefetch(&mut self, _addr: u64, _len: u64) {}

    /// Reads `len` bytes at `addr` into a new buffer, as [`read_vec`]: all
    /// of them, or the error of the first page that failed. A source with
    /// a second reader may split a large read between two threads.
    fn read_bulk(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, MemoryError> {
        read_vec(self, addr, len)
    }

    /// Fills `out` with the bytes at `addr`, as [`read_blocks`]. A source
    /// with a second reader may split a large read between two threads.
    fn read_bulk_into(&mut self, addr: u64, out: &mut [u8]) -> Result<(), MemoryError> {
        read_blocks(self, addr, out)
    }
}

impl<M: Memory + ?Sized> Memory for &mut M {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        (**self).read(addr, buf)
    }
    fn read_u64(&mut self, addr: u64) -> Result<u64, MemoryError> {
        (**self).read_u64(addr)
    }
    fn prefetch(&mut self, addr: u64, len: u64) {
        (**self).prefetch(addr, len)
    }
    fn read_bulk(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, MemoryError> {
        (**self).read_bulk(addr, len)
    }
    fn read_bulk_into(&mut self, addr: u64, out: &mut [u8]) -> Result<(), MemoryError> {
        (**self).read_bulk_into(addr, out)
    }
}

/// Reads `len` bytes at `addr` into a new buffer (see [`read_into`]).
pub fn read_vec<M: Memory + ?Sized>(mem: &mut M, addr: u64, len: usize) -> Result<Vec<u8>, MemoryError> {
    let mut v = Vec::with_capacity(len.min(1 << 16));
    read_into(mem, addr, len, &mut v)?;
    Ok(v)
}

/// Appends `len` bytes at `addr` to `out`, in blocks of up to 64 KiB, each
/// announced with [`Memory::prefetch`] so that a caching source (kcore)
/// serves it with one request. A block that fails is read again one page
/// at a time, so an error names the first page that failed and a hole
/// right after the bytes wanted costs nothing. The caller bounds `len`;
/// `out` grows with what was read, so a length claimed by a dump over
/// absent memory costs no more than the memory that is there.
pub fn read_into<M: Memory + ?Sized>(mem: &mut M, addr: u64, len: usize, out: &mut Vec<u8>) -> Result<(), MemoryError> {
    const BLOCK: u64 = 64 << 10;
    const PAGE: u64 = 4096;
    let mut done = 0u64;
    while done < len as u64 {
        let at = addr.wrapping_add(done);
        let n = (BLOCK - at % BLOCK).min(len as u64 - done);
        let old = out.len();
        out.resize(old + n as usize, 0);
        mem.prefetch(at, n);
        if mem.read(at, &mut out[old..]).is_err() {
            let n = (PAGE - at % PAGE).min(len as u64 - done);
            out.truncate(old + n as usize);
            if let Err(e) = mem.read(at, &mut out[old..]) {
                out.truncate(old);
                return Err(e);
            }
        }
        done += (out.len() - old) as u64;
    }
    Ok(())
}

/// Fills `out` with the bytes at `addr`, in blocks of up to 64 KiB each
/// announced with [`Memory::prefetch`]. A block that fails is read again
/// one page at a time, so the error names the first page that failed.
pub fn read_blocks<M: Memory + ?Sized>(mem: &mut M, addr: u64, out: &mut [u8]) -> Result<(), MemoryError> {
    const BLOCK: u64 = 64 << 10;
    const PAGE: u64 = 4096;
    let mut done = 0usize;
    while done < out.len() {
        let at = addr.wrapping_add(done as u64);
        let mut n = ((BLOCK - at % BLOCK) as usize).min(out.len() - done);
        mem.prefetch(at, n as u64);
        if mem.read(at, &mut out[done..done + n]).is_err() {
            n = ((PAGE - at % PAGE) as usize).min(out.len() - done);
            mem.read(at, &mut out[done..done + n])?;
        }
        done += n;
    }
    Ok(())
}

/// A NUL-terminated string at `addr`, read a page piece at a time so that
/// a short name next to an absent page still reads; lossy UTF-8.
pub fn read_c_string<M: Memory + ?Sized>(mem: &mut M, addr: u64, max: usize) -> Result<String, MemoryError> {
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < max {
        let n = ((4096 - at % 4096) as usize).min(64).min(max - out.len());
        let mut buf = [0u8; 64];
        mem.read(at, &mut buf[..n])?;
        if let Some(end) = buf[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..end]);
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        out.extend_from_slice(&buf[..n]);
        at = at.wrapping_add(n as u64);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Physical memory: a dump's pages, before any page-table walk.
pub trait PhysMemory {
    /// Fills all of `buf` with the bytes at physical address `paddr`, or fails;
    /// may serve them from a cache (see [`PhysMemory::read_phys_fresh`]).
    fn read_phys(&mut self, paddr: u64, buf: &mut [u8]) -> Result<(), MemoryError>;

    /// Forgets cached bytes, so the next reads see memory as it is now. A
    /// dump never changes; a live kernel's memory does.
    fn invalidate(&mut self) {}

    /// A virtual-to-physical mapping the source itself knows and that never
    /// changes (kcore's direct-map and kernel-text segments): it spares a
    /// page walk. None means walk the page tables.
    fn fixed_translation(&self, _vaddr: u64) -> Option<u64> {
        None
    }

    /// Reads `len` bytes at `paddr` ahead into the source's cache in one
    /// request, when the source has a cache (a task_struct spans pages).
    fn prefetch(&mut self, _paddr: u64, _len: u64) {}

    /// Reads bytes as they are now, not from a cache, leaving them cached
    /// for the reads that follow: a live task's fields after its walk,
    /// without dropping what else is cached. The default drops the whole
    /// cache first (a dump never changes; a cache-less source is fresh).
    fn read_phys_fresh(&mut self, paddr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.invalidate();
        self.read_phys(paddr, buf)
    }

    /// Requests made to the backing store so far (kcore preads), for
    /// timing reports and read-count tests; 0 when the source does not count.
    fn reads(&self) -> u64 {
        0
    }

    /// Bytes those requests asked for.
    fn bytes_read(&self) -> u64 {
        0
    }

    /// A second reader of the same memory with its own (empty) cache, for a
    /// second thread; None when the source cannot open one.
    fn split(&self) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }

    /// The page at `paddr` (page-aligned) as this reader holds it decoded,
    /// so that another reader need not decode it again; None when it is not
    /// held, or when reads cost nothing to repeat (no decoding).
    fn held_page(&self, _paddr: u64) -> Option<&[u8]> {
        None
    }

    /// Takes a page another reader decoded ([`PhysMemory::held_page`]) and
    /// gives back a buffer of its size to reuse: the one it replaced, or
    /// `page` when not taken. None when it kept `page` and replaced none.
    fn hold_page(&mut self, _paddr: u64, page: Box<[u8]>) -> Option<Box<[u8]>> {
        Some(page)
    }
}

impl<P: PhysMemory + ?Sized> PhysMemory for &mut P {
    fn read_phys(&mut self, paddr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        (**self).read_phys(paddr, buf)
    }
    fn invalidate(&mut self) {
        (**self).invalidate()
    }
    fn fixed_translation(&self, vaddr: u64) -> Option<u64> {
        (**self).fixed_translation(vaddr)
    }
    fn held_page(&self, paddr: u64) -> Option<&[u8]> {
        (**self).held_page(paddr)
    }
    fn hold_page(&mut self, paddr: u64, page: Box<[u8]>) -> Option<Box<[u8]>> {
        (**self).hold_page(paddr, page)
    }
    fn prefetch(&mut self, paddr: u64, len: u64) {
        (**self).prefetch(paddr, len)
    }
    fn read_phys_fresh(&mut self, paddr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        (**self).read_phys_fresh(paddr, buf)
    }
    fn reads(&self) -> u64 {
        (**self).reads()
    }
    fn bytes_read(&self) -> u64 {
        (**self).bytes_read()
    }
}

/// Memory backed by one byte slice mapped at `base` (a captured stack, a test).
#[derive(Clone, Copy, Debug)]
pub struct SliceMemory<'a> {
    /// Address of `bytes[0]`; reads below it are unmapped.
    pub base: u64,
    /// The memory contents; reads past the end are unmapped.
    pub bytes: &'a [u8],
}

impl<'a> SliceMemory<'a> {
    /// Maps `bytes` at `base`.
    pub fn new(base: u64, bytes: &'a [u8]) -> Self {
        SliceMemory { base, bytes }
    }
}

impl Memory for SliceMemory<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let unmapped = MemoryError::new(addr, MemoryErrorKind::Unmapped);
        let start = addr.checked_sub(self.base).ok_or(unmapped)?;
        let start = usize::try_from(start).map_err(|_| unmapped)?;
        let end = start.checked_add(buf.len()).ok_or(unmapped)?;
        let src = self.bytes.get(start..end).ok_or(unmapped)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// Memory read through a word callback, framehop style: `FnMut(u64) -> Result<u64, ()>`.
/// Only 8-byte reads are supported; others are built from aligned words.
pub struct WordFnMemory<F>(pub F);

impl<F: FnMut(u64) -> Result<u64, ()>> Memory for WordFnMemory<F> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let err = |a| MemoryError::new(a, MemoryErrorKind::Backend);
        let mut done = 0usize;
        while done < buf.len() {
            let at = addr.checked_add(done as u64).ok_or(err(addr))?;
            let word_addr = at & !7;
            let word = (self.0)(word_addr).map_err(|_| err(at))?.to_le_bytes();
            let skip = (at - word_addr) as usize;
            let take = (8 - skip).min(buf.len() - done);
            buf[done..done + take].copy_from_slice(&word[skip..skip + take]);
            done += take;
        }
        Ok(())
    }
    fn read_u64(&mut self, addr: u64) -> Result<u64, MemoryError> {
        if addr & 7 == 0 {
            return (self.0)(addr).map_err(|_| MemoryError::new(addr, MemoryErrorKind::Backend));
        }
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

/// Memory read through a byte-range callback returning how many bytes it read.
pub struct FnMemory<F>(pub F);

impl<F: FnMut(u64, &mut [u8]) -> Result<usize, ()>> Memory for FnMemory<F> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        match (self.0)(addr, buf) {
            Ok(n) if n == buf.len() => Ok(()),
            Ok(_) => Err(MemoryError::new(addr, MemoryErrorKind::ShortRead)),
            Err(()) => Err(MemoryError::new(addr, MemoryErrorKind::Backend)),
        }
    }
}

/// A byte slice as physical memory starting at its `base` (tests, raw images).
impl PhysMemory for SliceMemory<'_> {
    fn read_phys(&mut self, paddr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.read(paddr, buf)
    }

    fn split(&self) -> Option<Self> {
        Some(*self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_string_stops_at_nul_or_max_and_crosses_pages() {
        let mut bytes = vec![0u8; 0x2000];
        bytes[0xffa..0x1004].copy_from_slice(b"abcdefghij");
        let mut mem = SliceMemory::new(0x1000, &bytes);
        assert_eq!(read_c_string(&mut mem, 0x1ffa, 512).unwrap(), "abcdefghij");
        assert_eq!(read_c_string(&mut mem, 0x1ffa, 4).unwrap(), "abcd");
    }

    #[test]
    fn slice_memory_bounds() {
        let bytes: Vec<u8> = (0u8..32).collect();
        let mut m = SliceMemory::new(0x1000, &bytes);
        assert_eq!(m.read_u64(0x1000).unwrap(), u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]));
        assert_eq!(m.read_u64(0x1018).unwrap(), u64::from_le_bytes([24, 25, 26, 27, 28, 29, 30, 31]));
        assert_eq!(m.read_u64(0x1019).unwrap_err().kind, MemoryErrorKind::Unmapped);
        assert_eq!(m.read_u64(0xfff).unwrap_err().addr, 0xfff);
        assert!(m.read_u64(u64::MAX - 3).is_err());
    }

    #[test]
    fn word_callback_unaligned() {
        let mut m = WordFnMemory(|a: u64| if a < 0x100 { Ok(a) } else { Err(()) });
        // Bytes 4..12 span the words at 0 and 8.
        let v = m.read_u64(4).unwrap();
        assert_eq!(v, u64::from_le_bytes([0, 0, 0, 0, 8, 0, 0, 0]));
        assert_eq!(m.read_u64(0x100).unwrap_err().kind, MemoryErrorKind::Backend);
    }

    #[test]
    fn bulk_reads_name_the_first_page_that_failed() {
        // 16 KiB, of which the page at 0x3000 is missing: a read over it
        // fails as a whole, as a source that cannot say where would.
        let image: Vec<u8> = (0..0x4000u32).map(|i| i as u8).collect();
        let mut m = FnMemory(|a: u64, b: &mut [u8]| {
            if a < 0x4000 && a + b.len() as u64 > 0x3000 {
                return Err(());
            }
            b.copy_from_slice(&image[a as usize..a as usize + b.len()]);
            Ok(b.len())
        });
        let mut out = vec![0u8; 0x4000];
        assert_eq!(read_blocks(&mut m, 0, &mut out).unwrap_err().addr, 0x3000);
        assert_eq!(out[..0x3000], image[..0x3000]);
        assert_eq!(m.read_bulk(0x10, 0x3000).unwrap_err().addr, 0x3000);
        let mut out = vec![0u8; 0x2ff0];
        m.read_bulk_into(0x10, &mut out).unwrap();
        assert_eq!(out[..], image[0x10..0x3000]);
    }

    #[test]
    fn fn_memory_short_read() {
        let mut m = FnMemory(|_a: u64, b: &mut [u8]| Ok(b.len() / 2));
        assert_eq!(m.read_u64(0).unwrap_err().kind, MemoryErrorKind::ShortRead);
    }
}
