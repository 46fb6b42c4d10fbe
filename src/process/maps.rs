//! `/proc/PID/maps`: the address space of a process as the kernel lists it,
//! one VMA a line. Also built from a core file's PT_LOADs and NT_FILE
//! (see [`super::core`]), so the rest of the process code sees one shape.
//!
//! ```text
//! 7f2a1c000000-7f2a1c021000 r-xp 00002000 fd:01 1835   /usr/lib/x86_64-linux-gnu/libc.so.6
//! ```

/// Why a maps line could not be read. `line` is 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MapsError {
    /// A field is missing, or the range, permissions or device is malformed.
    #[error("maps line {line}: expected `start-end perms offset dev inode [path]`")]
    Malformed {
        /// The line number.
        line: usize,
    },
    /// A number does not parse (hexadecimal, but decimal for the inode).
    #[error("maps line {line}: bad hex number in field {field}")]
    BadNumber {
        /// The line number.
        line: usize,
        /// 1-based field: 1 range, 3 offset, 4 device, 5 inode.
        field: u8,
    },
    /// The range is empty or reversed.
    #[error("maps line {line}: start {start:#x} is not below end {end:#x}")]
    EmptyRange {
        /// The line number.
        line: usize,
        /// The range's start.
        start: u64,
        /// The range's end.
        end: u64,
    },
}

/// `rwxp` / `rwxs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Perms {
    /// `r`: readable.
    pub read: bool,
    /// `w`: writable.
    pub write: bool,
    /// `x`: executable.
    pub exec: bool,
    /// `s`: a shared mapping; `p`: private (copy on write).
    pub shared: bool,
}

impl Perms {
    /// From ELF `p_flags` (PF_X 1, PF_W 2, PF_R 4): core files.
    pub fn from_elf_flags(flags: u32) -> Self {
        Perms { read: flags & 4 != 0, write: flags & 2 != 0, exec: flags & 1 != 0, shared: false }
    }

    fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 4 {
            return None;
        }
        let flag = |i: usize, yes: u8| match b[i] {
            c if c == yes => Some(true),
            b'-' => Some(false),
            _ => None,
        };
        let shared = match b[3] {
            b's' => true,
            b'p' => false,
            _ => return None,
        };
        Some(Perms { read: flag(0, b'r')?, write: flag(1, b'w')?, exec: flag(2, b'x')?, shared })
    }
}

/// What backs a mapping.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MappingKind {
    /// No name: anonymous memory (thread stacks, malloc arenas, JIT code).
    Anonymous,
    /// A file. `deleted`: the kernel appended " (deleted)": the path now
    /// names another file or none.
    File {
        /// The path, unescaped, without " (deleted)".
        path: String,
        /// The kernel marked the file deleted.
        deleted: bool,
    },
    /// `[stack]`: the main thread's stack.
    Stack,
    /// `[stack:TID]`: a thread's stack (kernels before 4.5).
    ThreadStack {
        /// The thread's ID.
        tid: i32,
    },
    /// `[heap]`: the brk area.
    Heap,
    /// `[vdso]`: the kernel's shared object in every process.
    Vdso,
    /// `[vvar]`, `[vvar_vclock]`: the vdso's data pages, not readable by ptrace.
    Vvar,
    /// `[vsyscall]`: the legacy fixed page at 0xffffffffff600000.
    Vsyscall,
    /// Any other bracketed name: `[anon:NAME]`, `[uprobes]`, ...
    Special(String),
}

impl MappingKind {
    /// The file's path, for a file mapping.
    pub fn path(&self) -> Option<&str> {
        match self {
            MappingKind::File { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Memory that may hold a stack: anonymous or named stack memory.
    pub fn stack_like(&self) -> bool {
        match self {
            MappingKind::Anonymous | MappingKind::Stack | MappingKind::ThreadStack { .. } => true,
            MappingKind::Special(name) => name.starts_with("[anon:"),
            _ => false,
        }
    }
}

/// One VMA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// [start, end).
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Access permissions.
    pub perms: Perms,
    /// File offset of `start` (0 for anonymous memory).
    pub offset: u64,
    /// Device major:minor and inode; zero when unknown (core files).
    pub dev: (u32, u32),
    /// Inode of the mapped file; 0 when anonymous or unknown.
    pub inode: u64,
    /// What backs the mapping.
    pub kind: MappingKind,
}

impl Mapping {
    /// True when `addr` is in [start, end).
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// True when start == end (never for a parsed line).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

const DELETED: &str = " (deleted)";

/// Undoes the kernel's escaping of a path (`seq_file_path` turns `\n` into
/// `\012`; nothing else is escaped).
fn unescape_path(s: &str) -> String {
    s.replace("\\012", "\n")
}

fn kind_of(name: &str) -> MappingKind {
    match name {
        "" => MappingKind::Anonymous,
        "[stack]" => MappingKind::Stack,
        "[heap]" => MappingKind::Heap,
        "[vdso]" => MappingKind::Vdso,
        "[vvar]" | "[vvar_vclock]" => MappingKind::Vvar,
        "[vsyscall]" => MappingKind::Vsyscall,
        _ if name.starts_with('[') && name.ends_with(']') => {
            match name.strip_prefix("[stack:").and_then(|t| t.strip_suffix(']')).and_then(|t| t.parse().ok()) {
                Some(tid) => MappingKind::ThreadStack { tid },
                None => MappingKind::Special(name.to_owned()),
            }
        }
        _ => match name.strip_suffix(DELETED) {
            Some(path) => MappingKind::File { path: unescape_path(path), deleted: true },
            None => MappingKind::File { path: unescape_path(name), deleted: false },
        },
    }
}

/// Parses one line (without its newline). `line` is for errors.
pub fn parse_maps_line(text: &str, line: usize) -> Result<Mapping, MapsError> {
    let malformed = MapsError::Malformed { line };
    let hex = |s: &str, field: u8| u64::from_str_radix(s, 16).map_err(|_| MapsError::BadNumber { line, field });
    // Five fields separated by single spaces, then padding and the name,
    // which may itself contain spaces.
    let mut rest = text;
    let mut field = || -> Result<&str, MapsError> {
        let t = rest.trim_start_matches(' ');
        let end = t.find(' ').unwrap_or(t.len());
        let (f, r) = t.split_at(end);
        rest = r;
        if f.is_empty() { Err(malformed) } else { Ok(f) }
    };
    let range = field()?;
    let perms = field()?;
    let offset = field()?;
    let dev = field()?;
    let inode = field()?;
    let (start, end) = range.split_once('-').ok_or(malformed)?;
    let (start, end) = (hex(start, 1)?, hex(end, 1)?);
    if start >= end {
        return Err(MapsError::EmptyRange { line, start, end });
    }
    let perms = Perms::parse(perms).ok_or(malformed)?;
    let offset = hex(offset, 3)?;
    let (major, minor) = dev.split_once(':').ok_or(malformed)?;
    let dev_part = |s: &str| u32::from_str_radix(s, 16).map_err(|_| MapsError::BadNumber { line, field: 4 });
    let dev = (dev_part(major)?, dev_part(minor)?);
    let inode = inode.parse::<u64>().map_err(|_| MapsError::BadNumber { line, field: 5 })?;
    let name = rest.trim_start_matches(' ');
    Ok(Mapping { start, end, perms, offset, dev, inode, kind: kind_of(name) })
}

/// Parses a whole `/proc/PID/maps` text. Blank lines are skipped.
pub fn parse_maps(text: &str) -> Result<Vec<Mapping>, MapsError> {
    text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(|(i, l)| parse_maps_line(l, i + 1)).collect()
}

/// The index of the mapping holding `addr` (maps are sorted and disjoint,
/// as the kernel lists them; unsorted input falls back to a scan).
pub fn find_mapping(maps: &[Mapping], addr: u64) -> Option<usize> {
    let n = maps.partition_point(|m| m.start <= addr);
    if n > 0 && maps[n - 1].contains(addr) {
        return Some(n - 1);
    }
    maps.iter().position(|m| m.contains(addr))
}

/// The stack around `sp`: the readable and writable stack-like mapping
/// holding it, grown over directly adjacent mappings of the same sort (a
/// stack whose VMA was split, e.g. by mprotect or by growing). None when sp
/// is not in such memory (a corrupt sp, a stack in a file mapping): the walk
/// then has no stack and says so.
pub fn stack_range(maps: &[Mapping], sp: u64) -> Option<(u64, u64)> {
    let ok = |m: &Mapping| m.perms.read && m.perms.write && m.kind.stack_like();
    let i = find_mapping(maps, sp)?;
    let m = maps.get(i)?;
    if !ok(m) {
        return None;
    }
    let (mut start, mut end) = (m.start, m.end);
    for prev in maps[..i].iter().rev() {
        if prev.end != start || !ok(prev) {
            break;
        }
        start = prev.start;
    }
    for next in maps.get(i + 1..).unwrap_or_default() {
        if next.start != end || !ok(next) {
            break;
        }
        end = next.end;
    }
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
55d0c4a00000-55d0c4a01000 r--p 00000000 fd:01 1835023                    /work/target/parked
55d0c4a01000-55d0c4a02000 r-xp 00001000 fd:01 1835023                    /work/target/parked
55d0c5e3b000-55d0c5e5c000 rw-p 00000000 00:00 0                          [heap]
7f1b3c000000-7f1b3c021000 rw-p 00000000 00:00 0 
7f1b40dff000-7f1b40e00000 ---p 00000000 00:00 0 
7f1b40e00000-7f1b41600000 rw-p 00000000 00:00 0 
7f1b41628000-7f1b4177d000 r-xp 00028000 fd:01 2098       /usr/lib/x86_64-linux-gnu/libc.so.6
7f1b41800000-7f1b41801000 r-xp 00001000 00:2a 77         /tmp/my lib.so (deleted)
7f1b41900000-7f1b41901000 rw-p 00000000 00:00 0          [anon:glibc: malloc]
7ffd1e7b6000-7ffd1e7d7000 rw-p 00000000 00:00 0                          [stack]
7ffd1e7f5000-7ffd1e7f9000 r--p 00000000 00:00 0                          [vvar]
7ffd1e7f9000-7ffd1e7fb000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    #[test]
    fn parses_every_kind() {
        let maps = parse_maps(SAMPLE).unwrap();
        assert_eq!(maps.len(), 13);
        let exe = &maps[1];
        assert_eq!((exe.start, exe.end, exe.offset, exe.inode), (0x55d0c4a01000, 0x55d0c4a02000, 0x1000, 1835023));
        assert_eq!(exe.perms, Perms { read: true, write: false, exec: true, shared: false });
        assert_eq!(exe.dev, (0xfd, 1));
        assert_eq!(exe.kind.path(), Some("/work/target/parked"));
        assert_eq!(maps[2].kind, MappingKind::Heap);
        assert_eq!(maps[3].kind, MappingKind::Anonymous, "trailing space after the inode");
        assert_eq!(maps[4].perms, Perms::default());
        assert_eq!(maps[7].kind, MappingKind::File { path: "/tmp/my lib.so".into(), deleted: true });
        assert_eq!(maps[8].kind, MappingKind::Special("[anon:glibc: malloc]".into()));
        assert!(maps[8].kind.stack_like());
        assert_eq!(maps[9].kind, MappingKind::Stack);
        assert_eq!(maps[10].kind, MappingKind::Vvar);
        assert_eq!(maps[11].kind, MappingKind::Vdso);
        assert_eq!(maps[12].kind, MappingKind::Vsyscall);
        assert_eq!(maps[12].end, 0xffffffffff601000);
        assert_eq!(find_mapping(&maps, 0x7f1b41628000), Some(6));
        assert_eq!(find_mapping(&maps, 0x7f1b4177d000), None);
        assert_eq!(find_mapping(&maps, 0), None);
    }

    #[test]
    fn odd_names() {
        let m = parse_maps_line("1000-2000 r--s 00000000 00:05 9 /dev/shm/a\\012b", 1).unwrap();
        assert_eq!(m.kind.path(), Some("/dev/shm/a\nb"));
        assert!(m.perms.shared);
        let m = parse_maps_line("1000-2000 rw-p 00000000 00:00 0 [stack:4242]", 1).unwrap();
        assert_eq!(m.kind, MappingKind::ThreadStack { tid: 4242 });
        let m = parse_maps_line("1000-2000 r-xp 00000000 00:00 0 [uprobes]", 1).unwrap();
        assert_eq!(m.kind, MappingKind::Special("[uprobes]".into()));
        // A file literally named with a bracket is still a file.
        let m = parse_maps_line("1000-2000 r-xp 00000000 08:01 5 /x/[odd", 1).unwrap();
        assert_eq!(m.kind.path(), Some("/x/[odd"));
    }

    #[test]
    fn bad_lines() {
        assert_eq!(parse_maps_line("", 3), Err(MapsError::Malformed { line: 3 }));
        assert_eq!(parse_maps_line("1000-2000 r-xp 0 00:00", 1), Err(MapsError::Malformed { line: 1 }));
        assert_eq!(parse_maps_line("1000 r-xp 0 00:00 0", 1), Err(MapsError::Malformed { line: 1 }));
        assert_eq!(parse_maps_line("1000-zz r-xp 0 00:00 0", 2), Err(MapsError::BadNumber { line: 2, field: 1 }));
        assert_eq!(parse_maps_line("1000-2000 rwzp 0 00:00 0", 1), Err(MapsError::Malformed { line: 1 }));
        assert_eq!(parse_maps_line("1000-2000 r-xq 0 00:00 0", 1), Err(MapsError::Malformed { line: 1 }));
        assert_eq!(parse_maps_line("1000-2000 r-xp g 00:00 0", 1), Err(MapsError::BadNumber { line: 1, field: 3 }));
        assert_eq!(parse_maps_line("1000-2000 r-xp 0 0000 0", 1), Err(MapsError::Malformed { line: 1 }));
        assert_eq!(parse_maps_line("1000-2000 r-xp 0 00:00 x", 1), Err(MapsError::BadNumber { line: 1, field: 5 }));
        assert_eq!(
            parse_maps_line("2000-1000 r-xp 0 00:00 0", 1),
            Err(MapsError::EmptyRange { line: 1, start: 0x2000, end: 0x1000 })
        );
        assert_eq!(parse_maps_line("1000-2000 r-xp 0 00:00 0 ", 1).unwrap().kind, MappingKind::Anonymous);
        assert!(parse_maps("1000-2000 r-xp 0 00:00 0\n\nbad\n").is_err_and(|e| e == MapsError::Malformed { line: 3 }));
        // Huge values do not overflow.
        assert!(parse_maps_line("1-fffffffffffffffff r-xp 0 00:00 0", 1).is_err());
    }

    #[test]
    fn stack_ranges() {
        let maps = parse_maps(SAMPLE).unwrap();
        // A thread stack: the rw mapping above the guard page.
        assert_eq!(stack_range(&maps, 0x7f1b41500000), Some((0x7f1b40e00000, 0x7f1b41600000)));
        assert_eq!(stack_range(&maps, 0x7ffd1e7d6ff8), Some((0x7ffd1e7b6000, 0x7ffd1e7d7000)));
        assert_eq!(stack_range(&maps, 0x7f1b40dff100), None, "guard page");
        assert_eq!(stack_range(&maps, 0x55d0c4a01000), None, "code");
        assert_eq!(stack_range(&maps, 0x55d0c5e3b100), None, "heap is no stack");
        assert_eq!(stack_range(&maps, 0x10), None);
        // Split VMAs join up.
        let split =
            parse_maps("1000-2000 rw-p 0 00:00 0\n2000-3000 rw-p 0 00:00 0 [stack]\n3000-4000 r--p 0 00:00 0\n")
                .unwrap();
        assert_eq!(stack_range(&split, 0x2800), Some((0x1000, 0x3000)));
    }
}
