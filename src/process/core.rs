//! ELF core files of a process: the kernel's own (`core_pattern`) and gdb's
//! `gcore`. Threads come from `NT_PRSTATUS` (one per thread, `pr_pid` is
//! the thread id), the process from `NT_PRPSINFO`, file mappings from
//! `NT_FILE`, the auxiliary vector from `NT_AUXV`, memory from PT_LOADs.
//!
//! A PT_LOAD with `p_filesz < p_memsz` was not dumped in full: the kernel
//! leaves out file-backed text by default (`coredump_filter`), so those
//! bytes are read from the mapped file (under a sysroot, for a core from
//! another machine) when NT_FILE names one, and are "not in dump"
//! otherwise.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{AT_SYSINFO_EHDR, Auxv, Mapping, MappingKind, Perms, Snapshot, ThreadInfo};
use crate::dump::elf::{EM_X86_64, ElfDump, ElfError, Lookup};
use crate::dump::notes::{NoteError, parse_prstatus_x86_64};
use crate::dump::source::{le_u16, le_u32, le_u64};
use crate::memory::{Memory, MemoryError, MemoryErrorKind};

/// Note type of a thread's status and registers (`struct elf_prstatus`).
pub const NT_PRSTATUS: u32 = 1;
/// Note type of the process's `struct elf_prpsinfo`.
pub const NT_PRPSINFO: u32 = 3;
/// Note type of the auxiliary vector.
pub const NT_AUXV: u32 = 6;
/// "FILE".
pub const NT_FILE: u32 = 0x4649_4c45;
/// `sizeof(struct elf_prpsinfo)` on x86-64.
const PRPSINFO_SIZE: usize = 136;
/// More NT_FILE entries than this is taken as corrupt (a process has at
/// most `vm.max_map_count`, 65530 by default).
const MAX_FILE_ENTRIES: u64 = 1 << 20;

/// Why a core file could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// The ELF container is unreadable.
    #[error(transparent)]
    Elf(#[from] ElfError),
    /// The core is not for x86-64.
    #[error("core file is for ELF machine {machine}; only x86-64 (62) is read")]
    Machine {
        /// ELF `e_machine`.
        machine: u16,
    },
    /// A note could not be decoded.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The `NT_FILE` note is malformed.
    #[error("NT_FILE note at offset {offset:#x} is malformed (entry {entry})")]
    BadFileNote {
        /// File offset of the note header.
        offset: u64,
        /// Index of the bad entry; the entry count when the note is too
        /// short for it (or 0 when even that is missing).
        entry: u64,
    },
    /// No `NT_PRSTATUS` note: no thread to check.
    #[error("core file has no NT_PRSTATUS note: no threads to check")]
    NoThreads,
}

/// One NT_FILE entry: `[start, end)` maps the file from byte `offset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMapping {
    /// Runtime start address of the mapping.
    pub start: u64,
    /// One past the mapping's last address.
    pub end: u64,
    /// File offset mapped at `start`, in bytes.
    pub offset: u64,
    /// As the kernel printed it, " (deleted)" removed.
    pub path: String,
    /// The kernel marked the file " (deleted)".
    pub deleted: bool,
}

/// `NT_FILE`: u64 count, u64 page size, count x (start, end, page offset),
/// then count NUL-terminated paths.
pub fn parse_nt_file(desc: &[u8], note_offset: u64) -> Result<(Vec<FileMapping>, u64), CoreError> {
    let bad = |entry| CoreError::BadFileNote { offset: note_offset, entry };
    let count = le_u64(desc, 0).ok_or(bad(0))?;
    let page = le_u64(desc, 8).ok_or(bad(0))?;
    if count > MAX_FILE_ENTRIES || (count as usize).saturating_mul(24) > desc.len() {
        return Err(bad(count));
    }
    let names = desc.get(16 + count as usize * 24..).ok_or(bad(count))?;
    // Every path is NUL-terminated; a cut note would otherwise yield a
    // shortened last path.
    if (names.iter().filter(|&&b| b == 0).count() as u64) < count {
        return Err(bad(count));
    }
    let mut names = names.split(|&b| b == 0);
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count {
        let at = 16 + i as usize * 24;
        let (start, end, pgoff) = (le_u64(desc, at), le_u64(desc, at + 8), le_u64(desc, at + 16));
        let (Some(start), Some(end), Some(pgoff)) = (start, end, pgoff) else { return Err(bad(i)) };
        let name = names.next().ok_or(bad(i))?;
        let name = String::from_utf8_lossy(name);
        let (path, deleted) = match name.strip_suffix(" (deleted)") {
            Some(p) => (p.to_string(), true),
            None => (name.into_owned(), false),
        };
        let offset = pgoff.checked_mul(page).ok_or(bad(i))?;
        if start >= end {
            return Err(bad(i));
        }
        out.push(FileMapping { start, end, offset, path, deleted });
    }
    Ok((out, page))
}

/// The fields of `struct elf_prpsinfo` that name the process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prpsinfo {
    /// `pr_sname`: the state letter (`R`, `S`, `D`...).
    pub state: char,
    /// `pr_pid`: the process ID.
    pub pid: i32,
    /// `pr_fname`: the executable's name (a 16-byte field, so truncated).
    pub fname: String,
    /// `pr_psargs`: the start of the command line (an 80-byte field).
    pub psargs: String,
}

/// Decodes an x86-64 `NT_PRPSINFO` descriptor; None when it is too short.
pub fn parse_prpsinfo(desc: &[u8]) -> Option<Prpsinfo> {
    if desc.len() < PRPSINFO_SIZE {
        return None;
    }
    let cstr = |b: &[u8]| {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    Some(Prpsinfo {
        state: char::from(desc[1]),
        pid: le_u32(desc, 24)? as i32,
        fname: cstr(desc.get(40..56)?),
        psargs: cstr(desc.get(56..136)?),
    })
}

/// A parsed core file: its snapshot and the means to read its memory.
#[derive(Debug)]
pub struct CoreFile<'data> {
    elf: ElfDump<'data>,
    /// The process as the core shows it.
    pub snapshot: Snapshot,
    /// The `NT_FILE` entries, sorted by start address.
    pub files: Vec<FileMapping>,
    /// The `NT_PRPSINFO` fields; None when the note is missing or short.
    pub prpsinfo: Option<Prpsinfo>,
    sysroot: Option<PathBuf>,
}

/// p_flags of program header `index` (ElfDump keeps only what vmcores need).
fn segment_flags(data: &[u8], index: u32) -> u32 {
    let phoff = le_u64(data, 0x20).unwrap_or(0);
    let phentsize = u64::from(le_u16(data, 0x36).unwrap_or(0));
    let at = phoff.saturating_add(u64::from(index).saturating_mul(phentsize)).saturating_add(4);
    usize::try_from(at).ok().and_then(|at| le_u32(data, at)).unwrap_or(0)
}

/// Permissions of file bytes at `offset`, from the PT_LOAD of the file that
/// holds them: gdb's gcore leaves unmodified file-backed mappings (the
/// text of every library) out of the core entirely, NT_FILE alone names
/// them. A file that is not ELF gives read-only.
fn file_perms(data: &[u8], offset: u64) -> Perms {
    use object::{Object, ObjectSegment, SegmentFlags};
    let read_only = Perms { read: true, ..Perms::default() };
    let Ok(file) = object::File::parse(data) else { return read_only };
    for seg in file.segments() {
        let (start, size) = seg.file_range();
        if (start & !0xfff) <= offset
            && offset < start.saturating_add(size)
            && let SegmentFlags::Elf { p_flags, .. } = seg.flags()
        {
            return Perms::from_elf_flags(p_flags.0);
        }
    }
    read_only
}

/// Mappings for the parts of NT_FILE entries that no PT_LOAD covers (gcore
/// leaves unmodified file text out entirely). `maps` is sorted by start;
/// one sweep over the merged PT_LOAD ranges, so a core with many entries
/// costs O(n log n), not O(n^2).
fn uncovered(maps: &[Mapping], files: &[FileMapping], sysroot: Option<&Path>) -> Vec<Mapping> {
    let mut covered: Vec<(u64, u64)> = Vec::with_capacity(maps.len());
    for m in maps {
        match covered.last_mut() {
            Some(last) if m.start <= last.1 => last.1 = last.1.max(m.end),
            _ => covered.push((m.start, m.end)),
        }
    }
    let mut perms_cache: HashMap<&str, Option<memmap2::Mmap>> = HashMap::new();
    let mut out = Vec::new();
    for f in files {
        let mut at = f.start;
        let mut i = covered.partition_point(|c| c.1 <= at);
        while at < f.end {
            let gap_end = match covered.get(i) {
                Some(&(s, e)) if s <= at => {
                    at = e;
                    i += 1;
                    continue;
                }
                Some(&(s, _)) => s.min(f.end),
                None => f.end,
            };
            let offset = f.offset.wrapping_add(at - f.start);
            let map = perms_cache.entry(&f.path).or_insert_with(|| {
                let file = std::fs::File::open(under_sysroot(sysroot, &f.path)).ok()?;
                // SAFETY: read-only private mapping of a file we only read.
                unsafe { memmap2::Mmap::map(&file) }.ok()
            });
            out.push(Mapping {
                start: at,
                end: gap_end,
                perms: map.as_deref().map_or(Perms { read: true, ..Perms::default() }, |d| file_perms(d, offset)),
                offset,
                dev: (0, 0),
                inode: 0,
                kind: MappingKind::File { path: f.path.clone(), deleted: f.deleted },
            });
            at = gap_end;
        }
    }
    out
}

impl<'data> CoreFile<'data> {
    /// Parses a core; `sysroot` is where the files it names are found
    /// (None: their own paths), for mappings the core left out.
    pub fn parse(data: &'data [u8], sysroot: Option<&Path>) -> Result<Self, CoreError> {
        let elf = ElfDump::parse(data)?;
        if elf.machine() != EM_X86_64 {
            return Err(CoreError::Machine { machine: elf.machine() });
        }
        let mut threads = Vec::new();
        let mut files: Vec<FileMapping> = Vec::new();
        let mut auxv = Auxv::default();
        let mut prpsinfo = None;
        let mut notes = Vec::new();
        for note in elf.notes() {
            let note = match note {
                Ok(n) => n,
                Err(e) => {
                    notes.push(format!("core notes: {e}"));
                    break;
                }
            };
            if note.name != b"CORE" && note.name != b"LINUX" {
                continue;
            }
            match note.n_type {
                NT_PRSTATUS if note.name == b"CORE" => match parse_prstatus_x86_64(&note) {
                    Ok(p) => threads.push((p.pid as i32, p.regs)),
                    Err(e) => notes.push(format!("core notes: {e}")),
                },
                NT_PRPSINFO if note.name == b"CORE" => prpsinfo = parse_prpsinfo(note.desc),
                NT_AUXV if note.name == b"CORE" => auxv = Auxv::parse(note.desc),
                NT_FILE if note.name == b"CORE" => files = parse_nt_file(note.desc, note.offset)?.0,
                _ => {}
            }
        }
        if threads.is_empty() {
            return Err(CoreError::NoThreads);
        }
        let tgid = prpsinfo.as_ref().map_or(threads[0].0, |p| p.pid);
        let comm = prpsinfo.as_ref().map(|p| p.fname.clone()).unwrap_or_default();
        let state = prpsinfo.as_ref().map_or('?', |p| p.state);
        // Main thread first, the rest in note order.
        threads.sort_by_key(|(tid, _)| *tid != tgid);
        let threads = threads
            .into_iter()
            .map(|(tid, regs)| ThreadInfo { tid, tgid, comm: comm.clone(), state, regs: Some(regs) })
            .collect();

        let vdso = auxv.get(AT_SYSINFO_EHDR);
        // NT_FILE sorted by start, so that each lookup is a binary search
        // (the kernel writes it sorted; a damaged core need not be).
        files.sort_by_key(|f| f.start);
        let file_at = |addr: u64| {
            let n = files.partition_point(|f| f.start <= addr);
            files[..n].last().filter(|f| addr < f.end)
        };
        let mut maps: Vec<Mapping> = elf
            .segments()
            .iter()
            .filter(|s| s.memsz > 0)
            .map(|s| {
                let file = file_at(s.vaddr);
                let kind = match file {
                    Some(f) => MappingKind::File { path: f.path.clone(), deleted: f.deleted },
                    None if vdso.is_some_and(|v| s.vaddr <= v && v < s.vaddr + s.memsz) => MappingKind::Vdso,
                    None => MappingKind::Anonymous,
                };
                Mapping {
                    start: s.vaddr,
                    end: s.vaddr + s.memsz,
                    perms: Perms::from_elf_flags(segment_flags(data, s.index)),
                    offset: file.map_or(0, |f| f.offset.wrapping_add(s.vaddr - f.start)),
                    dev: (0, 0),
                    inode: 0,
                    kind,
                }
            })
            .collect();
        maps.sort_by_key(|m| m.start);
        let gaps = uncovered(&maps, &files, sysroot);
        maps.extend(gaps);
        maps.sort_by_key(|m| m.start);
        let exe = prpsinfo.as_ref().and_then(|p| {
            // pr_psargs starts with argv[0]; NT_FILE has the full path.
            let arg0 = p.psargs.split(' ').next().unwrap_or("");
            let name = Path::new(arg0).file_name()?.to_str()?;
            files
                .iter()
                .find(|f| Path::new(&f.path).file_name().and_then(|n| n.to_str()) == Some(name))
                .map(|f| f.path.clone())
        });
        let snapshot = Snapshot { pid: tgid, comm, exe, threads, maps, auxv, notes };
        Ok(CoreFile { elf, snapshot, files, prpsinfo, sysroot: sysroot.map(Path::to_path_buf) })
    }

    /// The core's memory, completed from the mapped files under the sysroot.
    pub fn memory(&self) -> CoreMemory<'_, 'data> {
        CoreMemory { core: self, open: HashMap::new() }
    }
}

/// The path of a file a process mapped, as seen from here.
pub fn under_sysroot(sysroot: Option<&Path>, path: &str) -> PathBuf {
    match sysroot {
        Some(root) => root.join(path.trim_start_matches('/')),
        None => PathBuf::from(path),
    }
}

/// A core's address space: dumped bytes first, then the mapped files.
pub struct CoreMemory<'a, 'data> {
    core: &'a CoreFile<'data>,
    open: HashMap<String, Option<memmap2::Mmap>>,
}

impl CoreMemory<'_, '_> {
    /// Up to `buf.len()` bytes at `addr` from the file mapped there.
    fn read_file(&mut self, addr: u64, buf: &mut [u8]) -> Result<usize, MemoryErrorKind> {
        let f = self.core.files.iter().find(|f| f.start <= addr && addr < f.end).ok_or(MemoryErrorKind::NotInDump)?;
        if !self.open.contains_key(&f.path) {
            let p = under_sysroot(self.core.sysroot.as_deref(), &f.path);
            let map = std::fs::File::open(p).ok().and_then(|file| {
                // SAFETY: read-only private mapping of a file we only read.
                unsafe { memmap2::Mmap::map(&file) }.ok()
            });
            self.open.insert(f.path.clone(), map);
        }
        let data = self.open.get(&f.path).and_then(Option::as_ref).ok_or(MemoryErrorKind::NotInDump)?;
        let off = usize::try_from(f.offset.wrapping_add(addr - f.start)).map_err(|_| MemoryErrorKind::NotInDump)?;
        let n = buf.len().min((f.end - addr) as usize);
        // Past the end of the file (bss, a truncated file): not there.
        let src = data.get(off..).ok_or(MemoryErrorKind::NotInDump)?;
        let n = n.min(src.len());
        if n == 0 {
            return Err(MemoryErrorKind::NotInDump);
        }
        buf[..n].copy_from_slice(&src[..n]);
        Ok(n)
    }
}

impl Memory for CoreMemory<'_, '_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = addr.checked_add(done as u64).ok_or(MemoryError::new(addr, MemoryErrorKind::Unmapped))?;
            let rest = &mut buf[done..];
            let n = match self.core.elf.lookup_virt(at) {
                Lookup::Data(d) => {
                    let n = rest.len().min(d.len());
                    rest[..n].copy_from_slice(&d[..n]);
                    n
                }
                Lookup::Tail(len) => {
                    let want = rest.len().min(usize::try_from(len).unwrap_or(usize::MAX));
                    self.read_file(at, &mut rest[..want]).map_err(|k| MemoryError::new(at, k))?
                }
                // Not in the core at all: a file mapping gcore left out, or
                // nothing.
                Lookup::Unmapped => match self.read_file(at, rest) {
                    Ok(n) => n,
                    Err(_) => return Err(MemoryError::new(at, MemoryErrorKind::Unmapped)),
                },
            };
            if n == 0 {
                return Err(MemoryError::new(at, MemoryErrorKind::ShortRead));
            }
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nt_file(entries: &[(u64, u64, u64, &str)]) -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        d.extend_from_slice(&4096u64.to_le_bytes());
        for (s, e, o, _) in entries {
            for v in [s, e, o] {
                d.extend_from_slice(&v.to_le_bytes());
            }
        }
        for (_, _, _, p) in entries {
            d.extend_from_slice(p.as_bytes());
            d.push(0);
        }
        d
    }

    #[test]
    fn nt_file_entries() {
        let d = nt_file(&[(0x1000, 0x3000, 2, "/bin/x"), (0x7000, 0x8000, 0, "/lib/y.so (deleted)")]);
        let (f, page) = parse_nt_file(&d, 0).unwrap();
        assert_eq!(page, 4096);
        assert_eq!(
            f[0],
            FileMapping { start: 0x1000, end: 0x3000, offset: 0x2000, path: "/bin/x".into(), deleted: false }
        );
        assert_eq!(f[1].path, "/lib/y.so");
        assert!(f[1].deleted);
        // Every truncation fails cleanly.
        for n in 0..d.len() {
            assert!(parse_nt_file(&d[..n], 0).is_err(), "cut at {n}");
        }
        let mut huge = d.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(parse_nt_file(&huge, 5), Err(CoreError::BadFileNote { offset: 5, entry: u64::MAX }));
        let mut overflow = d.clone();
        overflow[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse_nt_file(&overflow, 0).is_err());
    }

    /// A two-thread core: a code segment dumped in part (its tail comes from
    /// the file under the sysroot), a file mapping with no PT_LOAD at all,
    /// and an anonymous stack.
    #[test]
    fn synthetic_core_threads_maps_memory() {
        use crate::dump::elf::tests::build_elf;
        use crate::dump::notes::push_note;
        use crate::dump::notes::tests::prstatus_desc;

        let root = std::env::temp_dir().join(format!("lpstack-core-unit-{}", std::process::id()));
        std::fs::create_dir_all(root.join("lib")).unwrap();
        let file: Vec<u8> = (0..0x3000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(root.join("lib/file.bin"), &file).unwrap();

        let mut notes = Vec::new();
        push_note(&mut notes, b"CORE", NT_PRSTATUS, &prstatus_desc(101));
        push_note(&mut notes, b"CORE", NT_PRSTATUS, &prstatus_desc(100));
        let mut ps = vec![0u8; PRPSINFO_SIZE];
        ps[1] = b'S';
        ps[24..28].copy_from_slice(&100u32.to_le_bytes());
        ps[40..44].copy_from_slice(b"prog");
        ps[56..70].copy_from_slice(b"/lib/file.bin ");
        push_note(&mut notes, b"CORE", NT_PRPSINFO, &ps);
        let mut auxv = Vec::new();
        for (k, v) in [(AT_SYSINFO_EHDR, 0x9000_0000u64), (0, 0)] {
            auxv.extend_from_slice(&k.to_le_bytes());
            auxv.extend_from_slice(&v.to_le_bytes());
        }
        push_note(&mut notes, b"CORE", NT_AUXV, &auxv);
        push_note(
            &mut notes,
            b"CORE",
            NT_FILE,
            &nt_file(&[(0x10000, 0x12000, 0, "/lib/file.bin"), (0x20000, 0x21000, 1, "/lib/file.bin")]),
        );
        push_note(&mut notes, b"GNU", 0x99, b"ignored");
        let code = vec![0xaau8; 0x1000];
        let stack = vec![0x55u8; 0x2000];
        let core = build_elf(&[(0x10000, 0, &code, 0x2000), (0x7000_0000, 0, &stack, 0x2000)], &notes, false);

        let c = CoreFile::parse(&core, Some(&root)).unwrap();
        let s = &c.snapshot;
        assert_eq!((s.pid, s.comm.as_str()), (100, "prog"));
        assert_eq!(s.exe.as_deref(), Some("/lib/file.bin"));
        let tids: Vec<i32> = s.threads.iter().map(|t| t.tid).collect();
        assert_eq!(tids, [100, 101], "main thread first");
        assert!(s.threads.iter().all(|t| t.tgid == 100 && t.state == 'S' && t.comm == "prog"));
        let regs = s.threads[0].regs.unwrap();
        assert_eq!(regs.get(crate::arch::x86_64::Reg::Rip), Some(0x1010));
        assert_eq!(s.auxv.get(AT_SYSINFO_EHDR), Some(0x9000_0000));
        let starts: Vec<(u64, u64, bool)> = s.maps.iter().map(|m| (m.start, m.end, m.kind.path().is_some())).collect();
        assert_eq!(starts, [(0x10000, 0x12000, true), (0x20000, 0x21000, true), (0x7000_0000, 0x7000_2000, false)]);
        assert_eq!(s.maps[1].offset, 0x1000);
        assert!(s.maps[1].perms.read && !s.maps[1].perms.exec, "not ELF: read-only");

        let mut mem = c.memory();
        let mut b = [0u8; 16];
        mem.read(0x10ff8, &mut b).unwrap();
        assert_eq!(&b[..8], &[0xaa; 8], "dumped");
        assert_eq!(&b[8..], &file[0x1000..0x1008], "the tail, from the file");
        mem.read(0x20010, &mut b).unwrap();
        assert_eq!(&b[..], &file[0x1010..0x1020], "a mapping gcore left out");
        assert_eq!(mem.read_u64(0x7000_1ff8).unwrap(), 0x5555_5555_5555_5555);
        assert_eq!(mem.read_u64(0x3_0000).unwrap_err().kind, MemoryErrorKind::Unmapped);
        assert_eq!(mem.read_u64(0x7000_1ffc).unwrap_err().addr, 0x7000_2000);

        // Without the sysroot the file is not there: not in the dump.
        let c2 = CoreFile::parse(&core, Some(&root.join("nowhere"))).unwrap();
        let mut mem = c2.memory();
        assert_eq!(mem.read_u64(0x11000).unwrap_err().kind, MemoryErrorKind::NotInDump);
        assert_eq!(mem.read_u64(0x10000).unwrap(), 0xaaaa_aaaa_aaaa_aaaa);

        // Any cut of the file is an error or a smaller core, never a panic.
        for n in (0..core.len()).step_by(7) {
            if let Ok(c) = CoreFile::parse(&core[..n], Some(&root)) {
                let mut mem = c.memory();
                let _ = mem.read_u64(0x10ff8);
            }
        }
        // A core with no threads is refused.
        let none = build_elf(&[(0x10000, 0, &code, 0x1000)], &[], false);
        assert_eq!(CoreFile::parse(&none, None).unwrap_err(), CoreError::NoThreads);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn prpsinfo_fields() {
        let mut d = vec![0u8; PRPSINFO_SIZE];
        d[1] = b'S';
        d[24..28].copy_from_slice(&4242u32.to_le_bytes());
        d[40..46].copy_from_slice(b"parked");
        d[56..70].copy_from_slice(b"/tmp/parked -x");
        let p = parse_prpsinfo(&d).unwrap();
        assert_eq!((p.state, p.pid, p.fname.as_str(), p.psargs.as_str()), ('S', 4242, "parked", "/tmp/parked -x"));
        assert!(parse_prpsinfo(&d[..100]).is_none());
    }
}
