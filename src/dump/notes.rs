//! ELF notes of a dump: per-CPU `NT_PRSTATUS` ("CORE"), QEMU's per-CPU
//! register note ("QEMU") and the kernel's VMCOREINFO note.
//!
//! A note is `namesz, descsz, type` (three u32), then the name and the
//! descriptor, each padded to 4 bytes. Dump writers use 4-byte padding even
//! in ELF64 files.

use crate::arch::x86_64::{Reg, Regs};

use super::source::{le_u32, le_u64};

/// `n_type` of a "CORE" note holding a CPU's `struct elf_prstatus`.
pub const NT_PRSTATUS: u32 = 1;
/// `sizeof(struct elf_prstatus)` on x86-64.
pub const PRSTATUS_SIZE_X86_64: usize = 336;
const PR_PID: usize = 32;
const PR_REG: usize = 112;
/// QEMUCPUState as of QEMU 1.x (version 1, no kernel_gs_base).
pub const QEMU_CPU_STATE_MIN_SIZE: usize = 432;
/// With `kernel_gs_base` (QEMU 7.2 writes this one, still version 1).
pub const QEMU_CPU_STATE_SIZE_GS: usize = 440;

/// Why a note could not be read or decoded. `offset` is the file offset of
/// the note header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Fewer than 12 bytes, not all zero, are left for a note header.
    #[error("note header at offset {offset:#x} is cut short")]
    TruncatedHeader {
        /// File offset of the partial header.
        offset: u64,
    },
    /// The name or descriptor runs past the end of the notes.
    #[error(
        "note at offset {offset:#x}: name ({namesz} bytes) or descriptor ({descsz} bytes) runs past the notes' end"
    )]
    TruncatedBody {
        /// File offset of the note header.
        offset: u64,
        /// `n_namesz`, in bytes.
        namesz: u32,
        /// `n_descsz`, in bytes.
        descsz: u32,
    },
    /// An NT_PRSTATUS descriptor is not 336 bytes (the x86-64 size).
    #[error("NT_PRSTATUS note at offset {offset:#x}: descriptor is {size} bytes, expected 336 (x86-64)")]
    BadPrstatusSize {
        /// File offset of the note header.
        offset: u64,
        /// The descriptor's size, in bytes.
        size: usize,
    },
    /// A QEMU note is not version 1, or its `size` field is below 432 or
    /// larger than the descriptor.
    #[error("QEMU note at offset {offset:#x}: {size}-byte descriptor says version {version}, size {claimed}")]
    BadQemuNote {
        /// File offset of the note header.
        offset: u64,
        /// The descriptor's size, in bytes.
        size: usize,
        /// The note's `version` field (0 if the descriptor is too short).
        version: u32,
        /// The note's `size` field (0 if the descriptor is too short).
        claimed: u32,
    },
}

/// One note, borrowed from the dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Note<'data> {
    /// The name without its terminating NUL(s).
    pub name: &'data [u8],
    /// `n_type`: the note's type, meaningful per name (e.g. [`NT_PRSTATUS`]
    /// for "CORE").
    pub n_type: u32,
    /// The descriptor, without its padding.
    pub desc: &'data [u8],
    /// File offset of the note header.
    pub offset: u64,
}

/// Iterates the notes of a PT_NOTE segment (or kdump note area) lying at file
/// offset `base`. An all-zero header ends the list: the kernel's per-CPU note
/// buffers are zero-filled past their last note.
#[derive(Clone, Debug)]
pub struct NoteIter<'data> {
    data: &'data [u8],
    pos: usize,
    base: u64,
    done: bool,
}

impl<'data> NoteIter<'data> {
    /// Iterates the notes in `data`, which lies at file offset `base`
    /// (used for [`Note::offset`] and errors).
    pub fn new(data: &'data [u8], base: u64) -> Self {
        NoteIter { data, pos: 0, base, done: false }
    }
}

fn align4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|v| v & !3)
}

impl<'data> Iterator for NoteIter<'data> {
    type Item = Result<Note<'data>, NoteError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.data.len() {
            return None;
        }
        let offset = self.base.saturating_add(self.pos as u64);
        let hdr = (le_u32(self.data, self.pos), le_u32(self.data, self.pos + 4), le_u32(self.data, self.pos + 8));
        let (Some(namesz), Some(descsz), Some(n_type)) = hdr else {
            self.done = true;
            // Trailing zero padding shorter than a header is not a note.
            if self.data[self.pos..].iter().all(|&b| b == 0) {
                return None;
            }
            return Some(Err(NoteError::TruncatedHeader { offset }));
        };
        if namesz == 0 && descsz == 0 && n_type == 0 {
            self.done = true;
            return None;
        }
        let body = |this: &Self| -> Option<(Note<'data>, usize)> {
            let name_at = this.pos + 12;
            let desc_at = name_at.checked_add(align4(namesz as usize)?)?;
            let desc_end = desc_at.checked_add(descsz as usize)?;
            let next = desc_at.checked_add(align4(descsz as usize)?)?;
            let name = this.data.get(name_at..name_at + namesz as usize)?;
            let desc = this.data.get(desc_at..desc_end)?;
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            Some((Note { name: &name[..end], n_type, desc, offset }, next))
        };
        match body(self) {
            Some((note, next)) => {
                // The last note's padding may be missing at the very end.
                self.pos = next.min(self.data.len());
                Some(Ok(note))
            }
            None => {
                self.done = true;
                Some(Err(NoteError::TruncatedBody { offset, namesz, descsz }))
            }
        }
    }
}

/// The fields of an x86-64 `NT_PRSTATUS` note that a walk needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prstatus {
    /// `pr_pid`; see [`CpuState::pid`].
    pub pid: u32,
    /// All GPRs and rip known, cs set.
    pub regs: Regs,
    /// `pr_reg` slot 15, `orig_rax`, as saved.
    pub orig_rax: u64,
    /// `pr_reg` slot 18, `eflags`, as saved.
    pub eflags: u64,
    /// `pr_reg` slot 20, `ss`, as saved.
    pub ss: u64,
    /// `pr_reg` slot 21, `fs_base`, as saved.
    pub fs_base: u64,
    /// `pr_reg` slot 22, `gs_base`, as saved.
    pub gs_base: u64,
}

/// Decodes an x86-64 `struct elf_prstatus`: `pr_pid` at 32, `pr_reg`
/// (`struct user_regs_struct`, 27 u64) at 112.
pub fn parse_prstatus_x86_64(note: &Note<'_>) -> Result<Prstatus, NoteError> {
    let d = note.desc;
    let bad = NoteError::BadPrstatusSize { offset: note.offset, size: d.len() };
    if d.len() != PRSTATUS_SIZE_X86_64 {
        return Err(bad);
    }
    let reg = |i: usize| le_u64(d, PR_REG + 8 * i).ok_or(bad);
    // user_regs_struct order.
    const ORDER: [Reg; 15] = [
        Reg::R15,
        Reg::R14,
        Reg::R13,
        Reg::R12,
        Reg::Rbp,
        Reg::Rbx,
        Reg::R11,
        Reg::R10,
        Reg::R9,
        Reg::R8,
        Reg::Rax,
        Reg::Rcx,
        Reg::Rdx,
        Reg::Rsi,
        Reg::Rdi,
    ];
    let mut regs = Regs::new();
    for (i, r) in ORDER.into_iter().enumerate() {
        regs.set(r, reg(i)?);
    }
    // 15 orig_rax, 16 rip, 17 cs, 18 eflags, 19 rsp, 20 ss, 21 fs_base, 22 gs_base.
    regs.set(Reg::Rip, reg(16)?);
    regs.set_cs(reg(17)?);
    regs.set(Reg::Rsp, reg(19)?);
    Ok(Prstatus {
        pid: le_u32(d, PR_PID).ok_or(bad)?,
        regs,
        orig_rax: reg(15)?,
        eflags: reg(18)?,
        ss: reg(20)?,
        fs_base: reg(21)?,
        gs_base: reg(22)?,
    })
}

/// A segment register as QEMU saves it (`QEMUCPUSegment`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QemuSegment {
    /// The segment selector.
    pub selector: u32,
    /// The segment limit.
    pub limit: u32,
    /// The descriptor's attribute flags, as QEMU stores them.
    pub flags: u32,
    /// The segment base address.
    pub base: u64,
}

/// QEMU's per-CPU note (`QEMUCPUState`, target/i386/arch_dump.c), version 1:
///
/// ```text
/// 0   u32 version, u32 size
/// 8   rax rbx rcx rdx rsi rdi rsp rbp r8..r15 rip rflags   (18 x u64)
/// 152 cs ds es fs gs ss ldt tr gdt idt   (10 x 24: u32 selector, limit, flags, pad; u64 base)
/// 392 cr[5]
/// 432 kernel_gs_base                     (only when size >= 440)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QemuCpuState {
    /// The note's `version` field: always 1 once parsed.
    pub version: u32,
    /// The note's `size` field: bytes of state it holds, at least 432; 440
    /// or more includes `kernel_gs_base`.
    pub size: u32,
    /// All GPRs and rip known; cs from the cs segment selector.
    pub regs: Regs,
    /// RFLAGS.
    pub rflags: u64,
    /// cs, ds, es, fs, gs, ss, ldt, tr, gdt, idt.
    pub segments: [QemuSegment; 10],
    /// cr0 to cr4, indexed by register number.
    pub cr: [u64; 5],
    /// `MSR_KERNEL_GS_BASE`: the kernel's per-CPU base while in user mode.
    pub kernel_gs_base: Option<u64>,
}

impl QemuCpuState {
    /// The cs segment.
    pub fn cs(&self) -> &QemuSegment {
        &self.segments[0]
    }
    /// The gs segment; its `base` is the GS base in effect at the dump.
    pub fn gs(&self) -> &QemuSegment {
        &self.segments[4]
    }
    /// cr3, the running context's page-table root (the raw register value).
    pub fn cr3(&self) -> u64 {
        self.cr[3]
    }
}

/// Decodes a "QEMU" note's `QEMUCPUState`; only version 1 is known.
pub fn parse_qemu_note(note: &Note<'_>) -> Result<QemuCpuState, NoteError> {
    let d = note.desc;
    let version = le_u32(d, 0).unwrap_or(0);
    let claimed = le_u32(d, 4).unwrap_or(0);
    let bad = NoteError::BadQemuNote { offset: note.offset, size: d.len(), version, claimed };
    if version != 1 || (claimed as usize) < QEMU_CPU_STATE_MIN_SIZE || claimed as usize > d.len() {
        return Err(bad);
    }
    let q = |at: usize| le_u64(d, at).ok_or(bad);
    const ORDER: [Reg; 17] = [
        Reg::Rax,
        Reg::Rbx,
        Reg::Rcx,
        Reg::Rdx,
        Reg::Rsi,
        Reg::Rdi,
        Reg::Rsp,
        Reg::Rbp,
        Reg::R8,
        Reg::R9,
        Reg::R10,
        Reg::R11,
        Reg::R12,
        Reg::R13,
        Reg::R14,
        Reg::R15,
        Reg::Rip,
    ];
    let mut regs = Regs::new();
    for (i, r) in ORDER.into_iter().enumerate() {
        regs.set(r, q(8 + 8 * i)?);
    }
    let rflags = q(8 + 8 * 17)?;
    let mut segments = [QemuSegment::default(); 10];
    for (i, s) in segments.iter_mut().enumerate() {
        let at = 152 + 24 * i;
        *s = QemuSegment {
            selector: le_u32(d, at).ok_or(bad)?,
            limit: le_u32(d, at + 4).ok_or(bad)?,
            flags: le_u32(d, at + 8).ok_or(bad)?,
            base: q(at + 16)?,
        };
    }
    regs.set_cs(u64::from(segments[0].selector));
    let mut cr = [0u64; 5];
    for (i, c) in cr.iter_mut().enumerate() {
        *c = q(392 + 8 * i)?;
    }
    let kernel_gs_base = if claimed as usize >= QEMU_CPU_STATE_SIZE_GS { Some(q(432)?) } else { None };
    Ok(QemuCpuState { version, size: claimed, regs, rflags, segments, cr, kernel_gs_base })
}

/// A CPU's registers at the time of the dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuState {
    /// The CPU number, when the format says it: QEMU numbers its notes
    /// (`pr_pid` = cpu_index + 1). A kdump's notes come in CPU order but skip
    /// CPUs that saved nothing, so there the kernel layer must match CPUs
    /// itself (e.g. by the running task's `cpu` field).
    pub index_hint: Option<u32>,
    /// `pr_pid`: in a kdump, the pid of the task running on the CPU (0 for
    /// idle); in a QEMU dump, cpu_index + 1.
    pub pid: u32,
    /// The registers of NT_PRSTATUS (QEMU's note does not replace them).
    pub regs: Regs,
    /// From QEMU's note; kdump notes carry no control registers.
    pub cr3: Option<u64>,
    /// File offset of the NT_PRSTATUS note (of the reassembled file for a
    /// flattened dump).
    pub note_offset: u64,
    /// The decoded NT_PRSTATUS note.
    pub prstatus: Prstatus,
    /// QEMU's note for this CPU; `None` unless the dump has exactly one per
    /// NT_PRSTATUS.
    pub qemu: Option<QemuCpuState>,
}

/// What the notes of a dump hold.
#[derive(Clone, Debug, Default)]
pub struct NoteSummary<'data> {
    /// One per decoded NT_PRSTATUS, in note order.
    pub cpus: Vec<CpuState>,
    /// VMCOREINFO note payload.
    pub vmcoreinfo: Option<&'data [u8]>,
    /// Whether any "QEMU" note was seen (the dump was written by QEMU).
    pub has_qemu_notes: bool,
    /// Notes that could not be decoded (they are skipped, not fatal).
    pub problems: Vec<NoteError>,
}

/// Collects CPUs and VMCOREINFO from notes. `x86_64` says whether to decode
/// NT_PRSTATUS (it is only decoded for EM_X86_64 dumps).
pub fn summarize<'data>(
    notes: impl Iterator<Item = Result<Note<'data>, NoteError>>,
    x86_64: bool,
) -> NoteSummary<'data> {
    let mut s = NoteSummary::default();
    let mut qemu = Vec::new();
    for n in notes {
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                s.problems.push(e);
                continue;
            }
        };
        match (n.name, n.n_type) {
            (b"CORE", NT_PRSTATUS) if x86_64 => match parse_prstatus_x86_64(&n) {
                Ok(p) => s.cpus.push(CpuState {
                    index_hint: None,
                    pid: p.pid,
                    regs: p.regs,
                    cr3: None,
                    note_offset: n.offset,
                    prstatus: p,
                    qemu: None,
                }),
                Err(e) => s.problems.push(e),
            },
            (b"QEMU", 0) => {
                s.has_qemu_notes = true;
                match parse_qemu_note(&n) {
                    Ok(q) => qemu.push(q),
                    Err(e) => s.problems.push(e),
                }
            }
            (b"VMCOREINFO", 0) if s.vmcoreinfo.is_none() => s.vmcoreinfo = Some(n.desc),
            _ => {}
        }
    }
    if s.has_qemu_notes {
        // QEMU writes all CORE notes, then all QEMU notes, both in CPU order,
        // with pr_pid = cpu_index + 1.
        let paired = qemu.len() == s.cpus.len();
        for (i, cpu) in s.cpus.iter_mut().enumerate() {
            cpu.index_hint = cpu.pid.checked_sub(1);
            if paired {
                cpu.qemu = qemu.get(i).copied();
                cpu.cr3 = cpu.qemu.map(|q| q.cr3());
            }
        }
    }
    s
}

/// Appends one note to `out` (tests, the kdump writer).
pub fn push_note(out: &mut Vec<u8>, name: &[u8], n_type: u32, desc: &[u8]) {
    let namesz = name.len() as u32 + 1;
    out.extend_from_slice(&namesz.to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&n_type.to_le_bytes());
    out.extend_from_slice(name);
    out.push(0);
    while out.len() & 3 != 0 {
        out.push(0);
    }
    out.extend_from_slice(desc);
    while out.len() & 3 != 0 {
        out.push(0);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A prstatus image whose register i (user_regs_struct order) is 0x1000 + i.
    pub(crate) fn prstatus_desc(pid: u32) -> Vec<u8> {
        let mut d = vec![0u8; PRSTATUS_SIZE_X86_64];
        d[PR_PID..PR_PID + 4].copy_from_slice(&pid.to_le_bytes());
        for i in 0..27 {
            let at = PR_REG + 8 * i;
            d[at..at + 8].copy_from_slice(&(0x1000 + i as u64).to_le_bytes());
        }
        d
    }

    /// A QEMU note image: register i (QEMU order) is 0x2000 + i, cr[i] = 0x3000 + i.
    pub(crate) fn qemu_desc(size: u32) -> Vec<u8> {
        let mut d = vec![0u8; size as usize];
        d[0..4].copy_from_slice(&1u32.to_le_bytes());
        d[4..8].copy_from_slice(&size.to_le_bytes());
        for i in 0..18 {
            d[8 + 8 * i..16 + 8 * i].copy_from_slice(&(0x2000 + i as u64).to_le_bytes());
        }
        d[152..156].copy_from_slice(&0x10u32.to_le_bytes()); // cs selector
        d[248 + 16..248 + 24].copy_from_slice(&0xffff888007a00000u64.to_le_bytes()); // gs base
        for i in 0..5 {
            d[392 + 8 * i..400 + 8 * i].copy_from_slice(&(0x3000 + i as u64).to_le_bytes());
        }
        if size >= 440 {
            d[432..440].copy_from_slice(&0x4444u64.to_le_bytes());
        }
        d
    }

    #[test]
    fn iterate_with_padding() {
        let mut buf = Vec::new();
        push_note(&mut buf, b"CORE", 1, &[1, 2, 3]);
        push_note(&mut buf, b"VMCOREINFO", 0, b"A=1\n");
        buf.extend_from_slice(&[0u8; 12]); // terminator
        push_note(&mut buf, b"AFTER", 0, b"x");
        let notes: Vec<_> = NoteIter::new(&buf, 0x100).collect::<Result<_, _>>().unwrap();
        assert_eq!(notes.len(), 2);
        assert_eq!(notes[0].name, b"CORE");
        assert_eq!(notes[0].desc, &[1, 2, 3]);
        assert_eq!(notes[0].offset, 0x100);
        assert_eq!(notes[1].name, b"VMCOREINFO");
        assert_eq!(notes[1].offset, 0x100 + 12 + 8 + 4);
        assert_eq!(notes[1].desc, b"A=1\n");
    }

    #[test]
    fn truncation_never_panics() {
        let mut buf = Vec::new();
        push_note(&mut buf, b"CORE", 1, &prstatus_desc(7));
        push_note(&mut buf, b"QEMU", 0, &qemu_desc(440));
        for n in 0..buf.len() {
            let items: Vec<_> = NoteIter::new(&buf[..n], 0).collect();
            assert!(items.len() <= 2);
            let _ = summarize(NoteIter::new(&buf[..n], 0), true);
        }
        let r: Vec<_> = NoteIter::new(&buf[..20], 0).collect();
        assert_eq!(r, vec![Err(NoteError::TruncatedBody { offset: 0, namesz: 5, descsz: 336 })]);
        let r: Vec<_> = NoteIter::new(&[1, 0, 0, 0, 0], 0x40).collect();
        assert_eq!(r, vec![Err(NoteError::TruncatedHeader { offset: 0x40 })]);
        // Huge sizes do not overflow.
        let mut evil = Vec::new();
        evil.extend_from_slice(&u32::MAX.to_le_bytes());
        evil.extend_from_slice(&u32::MAX.to_le_bytes());
        evil.extend_from_slice(&0u32.to_le_bytes());
        assert!(NoteIter::new(&evil, 0).next().unwrap().is_err());
    }

    #[test]
    fn prstatus_layout() {
        let d = prstatus_desc(42);
        let n = Note { name: b"CORE", n_type: 1, desc: &d, offset: 0 };
        let p = parse_prstatus_x86_64(&n).unwrap();
        assert_eq!(p.pid, 42);
        assert_eq!(p.regs.get(Reg::R15), Some(0x1000));
        assert_eq!(p.regs.get(Reg::Rbp), Some(0x1004));
        assert_eq!(p.regs.get(Reg::Rbx), Some(0x1005));
        assert_eq!(p.regs.get(Reg::Rax), Some(0x100a));
        assert_eq!(p.regs.get(Reg::Rdi), Some(0x100e));
        assert_eq!(p.orig_rax, 0x100f);
        assert_eq!(p.regs.get(Reg::Rip), Some(0x1010));
        assert_eq!(p.regs.cs(), Some(0x1011));
        assert_eq!(p.eflags, 0x1012);
        assert_eq!(p.regs.get(Reg::Rsp), Some(0x1013));
        assert_eq!(p.gs_base, 0x1016);
        for r in Reg::ALL {
            assert!(p.regs.get(r).is_some(), "{}", r.name());
        }
        let short = Note { desc: &d[..335], ..n };
        assert_eq!(parse_prstatus_x86_64(&short), Err(NoteError::BadPrstatusSize { offset: 0, size: 335 }));
    }

    #[test]
    fn qemu_layout_and_pairing() {
        for size in [432u32, 440] {
            let d = qemu_desc(size);
            let q = parse_qemu_note(&Note { name: b"QEMU", n_type: 0, desc: &d, offset: 0 }).unwrap();
            assert_eq!(q.regs.get(Reg::Rax), Some(0x2000));
            assert_eq!(q.regs.get(Reg::Rsp), Some(0x2006));
            assert_eq!(q.regs.get(Reg::R8), Some(0x2008));
            assert_eq!(q.regs.get(Reg::R15), Some(0x200f));
            assert_eq!(q.regs.get(Reg::Rip), Some(0x2010));
            assert_eq!(q.rflags, 0x2011);
            assert_eq!(q.cs().selector, 0x10);
            assert_eq!(q.gs().base, 0xffff888007a00000);
            assert_eq!(q.cr3(), 0x3003);
            assert_eq!(q.kernel_gs_base, (size == 440).then_some(0x4444));
        }
        let mut bad = qemu_desc(432);
        bad[0] = 2;
        assert!(parse_qemu_note(&Note { name: b"QEMU", n_type: 0, desc: &bad, offset: 8 }).is_err());

        let mut buf = Vec::new();
        push_note(&mut buf, b"CORE", 1, &prstatus_desc(1));
        push_note(&mut buf, b"CORE", 1, &prstatus_desc(2));
        push_note(&mut buf, b"QEMU", 0, &qemu_desc(440));
        let mut q2 = qemu_desc(440);
        q2[392 + 24..400 + 24].copy_from_slice(&0x5000u64.to_le_bytes());
        push_note(&mut buf, b"QEMU", 0, &q2);
        push_note(&mut buf, b"VMCOREINFO", 0, b"PAGESIZE=4096\n");
        let s = summarize(NoteIter::new(&buf, 0), true);
        assert!(s.problems.is_empty());
        assert!(s.has_qemu_notes);
        assert_eq!(s.cpus.len(), 2);
        assert_eq!(s.cpus[0].index_hint, Some(0));
        assert_eq!(s.cpus[1].index_hint, Some(1));
        assert_eq!(s.cpus[0].cr3, Some(0x3003));
        assert_eq!(s.cpus[1].cr3, Some(0x5000));
        assert_eq!(s.vmcoreinfo, Some(&b"PAGESIZE=4096\n"[..]));
        // Without QEMU notes: no index, no cr3.
        let mut buf = Vec::new();
        push_note(&mut buf, b"CORE", 1, &prstatus_desc(0));
        let s = summarize(NoteIter::new(&buf, 0), true);
        assert_eq!(s.cpus[0].index_hint, None);
        assert_eq!(s.cpus[0].cr3, None);
        assert!(summarize(NoteIter::new(&buf, 0), false).cpus.is_empty());
    }
}
