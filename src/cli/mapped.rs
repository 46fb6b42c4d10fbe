//! Files mapped read-only, and what happens when one shrinks under us.
//!
//! A mapped file that is truncated (or rewritten through a truncation, as
//! `cp` over it does) while it is mapped makes the next read of a page past
//! its new end raise SIGBUS, which would kill lpstack with no word on why.
//! Every mapping made here is registered; a SIGBUS handler that finds the
//! faulting address in one of them prints which file and which offset, then
//! exits with the error code. It never returns into the faulting code (no
//! unwinding, no longjmp: only `write` and `_exit`, both async-signal-safe).
//! A SIGBUS anywhere else gets the default action, as before.
//!
//! Reads through the mapping cost nothing more: the alternative (pread for
//! every read) would add a system call per small read on ELF dumps.

use std::path::Path;
use std::sync::Once;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use super::{CliError, EXIT_ERROR};

/// A read-only file image: mapped and registered, or (when every slot of
/// the registry is taken) read into memory.
pub enum MappedFile {
    Mapped { map: memmap2::Mmap, slot: usize, file: std::fs::File },
    Read(Vec<u8>),
}

impl std::ops::Deref for MappedFile {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            MappedFile::Mapped { map, .. } => map,
            MappedFile::Read(v) => v,
        }
    }
}

impl MappedFile {
    /// The file mapped, open (None for a copy).
    pub fn file(&self) -> Option<&std::fs::File> {
        match self {
            MappedFile::Mapped { file, .. } => Some(file),
            MappedFile::Read(_) => None,
        }
    }

    /// Drops the pages of the mapping from this process (they stay in the
    /// page cache and fault back in when read again), so that a check over
    /// a large dump does not keep every page it ever read resident.
    pub fn release(&self) {
        if let MappedFile::Mapped { map, .. } = self {
            // SAFETY: a read-only private file mapping that is never
            // written: dropped pages read back as the file's own bytes,
            // so slices borrowed from it see the same contents.
            let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        if let MappedFile::Mapped { slot, .. } = self {
            // Unregistered before the mapping itself goes (fields drop after).
            SLOTS[*slot].base.store(0, Ordering::Release);
            SLOTS[*slot].taken.store(0, Ordering::Release);
        }
    }
}

struct Slot {
    /// 1 while some MappedFile owns the slot.
    taken: AtomicUsize,
    /// Start of the mapping; 0 when none is registered.
    base: AtomicUsize,
    len: AtomicUsize,
    path: AtomicPtr<u8>,
    path_len: AtomicUsize,
}

const NSLOTS: usize = 16;
#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_SLOT: Slot = Slot {
    taken: AtomicUsize::new(0),
    base: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    path: AtomicPtr::new(std::ptr::null_mut()),
    path_len: AtomicUsize::new(0),
};
static SLOTS: [Slot; NSLOTS] = [EMPTY_SLOT; NSLOTS];
static INSTALL: Once = Once::new();

/// Maps `path` read-only and registers it with the SIGBUS handler.
pub fn map_file(path: &Path) -> Result<MappedFile, CliError> {
    let file = std::fs::File::open(path).map_err(|e| CliError(format!("{}: {e}", path.display())))?;
    INSTALL.call_once(install_handler);
    let Some(slot) =
        SLOTS.iter().position(|s| s.taken.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire).is_ok())
    else {
        // No slot to guard a mapping with: a copy cannot change under us.
        let bytes = std::fs::read(path).map_err(|e| CliError(format!("{}: {e}", path.display())))?;
        return Ok(MappedFile::Read(bytes));
    };
    // SAFETY: a read-only private mapping. Its bytes may change if the file
    // is rewritten (wrong answers, not memory unsafety); if it shrinks, the
    // SIGBUS handler below reports and exits.
    let map = match unsafe { memmap2::Mmap::map(&file) } {
        Ok(m) => m,
        Err(e) => {
            SLOTS[slot].taken.store(0, Ordering::Release);
            return Err(CliError(format!("{}: cannot map: {e}", path.display())));
        }
    };
    // A dump is read a few pages here and there (task structs, stacks,
    // page tables): no fault-around, so only the pages read are resident.
    let _ = map.advise(memmap2::Advice::Random);
    // The path, leaked: a few bytes per file mapped, read by the handler.
    let name: &'static mut [u8] = Box::leak(path.display().to_string().into_bytes().into_boxed_slice());
    let s = &SLOTS[slot];
    s.path_len.store(name.len(), Ordering::Relaxed);
    s.path.store(name.as_mut_ptr(), Ordering::Relaxed);
    s.len.store(map.len(), Ordering::Relaxed);
    s.base.store(map.as_ptr() as usize, Ordering::Release);
    Ok(MappedFile::Mapped { map, slot, file })
}

fn install_handler() {
    // SAFETY: sigaction with a zeroed struct filled as the manual says; the
    // handler only reads atomics and calls write and _exit.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigbus as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}

/// Appends bytes to a fixed buffer, dropping what does not fit.
struct Msg {
    buf: [u8; 1024],
    n: usize,
}

impl Msg {
    fn push(&mut self, b: &[u8]) {
        let k = b.len().min(self.buf.len() - self.n);
        self.buf[self.n..self.n + k].copy_from_slice(&b[..k]);
        self.n += k;
    }

    fn hex(&mut self, mut v: usize) {
        let mut digits = [0u8; 16];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b"0123456789abcdef"[v & 15];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        self.push(b"0x");
        self.push(&digits[i..]);
    }
}

extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    for s in &SLOTS {
        let base = s.base.load(Ordering::Acquire);
        let len = s.len.load(Ordering::Relaxed);
        if base == 0 || addr < base || addr - base >= len {
            continue;
        }
        let mut m = Msg { buf: [0; 1024], n: 0 };
        m.push(b"\nlpstack: ");
        let (p, n) = (s.path.load(Ordering::Relaxed), s.path_len.load(Ordering::Relaxed));
        if !p.is_null() {
            // SAFETY: a leaked, never freed path of that length.
            m.push(unsafe { std::slice::from_raw_parts(p, n) });
        }
        m.push(b": the file shrank while lpstack read it (truncated or rewritten?): no data at file offset ");
        m.hex(addr - base);
        m.push(b" any more (it was ");
        m.hex(len);
        m.push(b" bytes when opened)\n");
        // SAFETY: write and _exit are async-signal-safe.
        unsafe {
            libc::write(2, m.buf.as_ptr().cast(), m.n);
            libc::_exit(EXIT_ERROR);
        }
    }
    // Not a file of ours: the default action, when the access faults again.
    // SAFETY: resetting a disposition is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGBUS, libc::SIG_DFL);
    }
}
