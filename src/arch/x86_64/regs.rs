//! The x86-64 register file with a known/unknown bit per register, so that an
//! unwinder never mistakes "not recovered" for zero.

/// General registers in DWARF numbering, plus the return address column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Reg {
    /// `rax` (DWARF 0): return value, caller-saved.
    Rax = 0,
    /// `rdx` (DWARF 1): third argument, caller-saved.
    Rdx = 1,
    /// `rcx` (DWARF 2): fourth argument, caller-saved.
    Rcx = 2,
    /// `rbx` (DWARF 3): callee-saved.
    Rbx = 3,
    /// `rsi` (DWARF 4): second argument, caller-saved.
    Rsi = 4,
    /// `rdi` (DWARF 5): first argument, caller-saved.
    Rdi = 5,
    /// `rbp` (DWARF 6): frame pointer when one is kept; callee-saved.
    Rbp = 6,
    /// `rsp` (DWARF 7): stack pointer.
    Rsp = 7,
    /// `r8` (DWARF 8): fifth argument, caller-saved.
    R8 = 8,
    /// `r9` (DWARF 9): sixth argument, caller-saved.
    R9 = 9,
    /// `r10` (DWARF 10): caller-saved.
    R10 = 10,
    /// `r11` (DWARF 11): caller-saved.
    R11 = 11,
    /// `r12` (DWARF 12): callee-saved.
    R12 = 12,
    /// `r13` (DWARF 13): callee-saved.
    R13 = 13,
    /// `r14` (DWARF 14): callee-saved.
    R14 = 14,
    /// `r15` (DWARF 15): callee-saved.
    R15 = 15,
    /// `rip`; DWARF 16 is the return address column.
    Rip = 16,
}

impl Reg {
    /// Every register, in DWARF number order (so `ALL[r as usize] == r`).
    pub const ALL: [Reg; 17] = [
        Reg::Rax,
        Reg::Rdx,
        Reg::Rcx,
        Reg::Rbx,
        Reg::Rsi,
        Reg::Rdi,
        Reg::Rbp,
        Reg::Rsp,
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

    /// Lower-case assembler name, e.g. `"rax"`.
    pub fn name(self) -> &'static str {
        match self {
            Reg::Rax => "rax",
            Reg::Rdx => "rdx",
            Reg::Rcx => "rcx",
            Reg::Rbx => "rbx",
            Reg::Rsi => "rsi",
            Reg::Rdi => "rdi",
            Reg::Rbp => "rbp",
            Reg::Rsp => "rsp",
            Reg::R8 => "r8",
            Reg::R9 => "r9",
            Reg::R10 => "r10",
            Reg::R11 => "r11",
            Reg::R12 => "r12",
            Reg::R13 => "r13",
            Reg::R14 => "r14",
            Reg::R15 => "r15",
            Reg::Rip => "rip",
        }
    }

    /// Offset of this register in the kernel's `struct pt_regs`.
    pub fn pt_regs_offset(self) -> u64 {
        let slot = match self {
            Reg::R15 => PtRegsSlot::R15,
            Reg::R14 => PtRegsSlot::R14,
            Reg::R13 => PtRegsSlot::R13,
            Reg::R12 => PtRegsSlot::R12,
            Reg::Rbp => PtRegsSlot::Bp,
            Reg::Rbx => PtRegsSlot::Bx,
            Reg::R11 => PtRegsSlot::R11,
            Reg::R10 => PtRegsSlot::R10,
            Reg::R9 => PtRegsSlot::R9,
            Reg::R8 => PtRegsSlot::R8,
            Reg::Rax => PtRegsSlot::Ax,
            Reg::Rcx => PtRegsSlot::Cx,
            Reg::Rdx => PtRegsSlot::Dx,
            Reg::Rsi => PtRegsSlot::Si,
            Reg::Rdi => PtRegsSlot::Di,
            Reg::Rip => PtRegsSlot::Ip,
            Reg::Rsp => PtRegsSlot::Sp,
        };
        slot as u64 * 8
    }
}

/// The 8-byte slots of x86-64 `struct pt_regs`, in memory order
/// (arch/x86/include/asm/ptrace.h; also the order of ELF `pr_reg` up to ss).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PtRegsSlot {
    /// `r15`, byte offset 0.
    R15 = 0,
    /// `r14`, byte offset 8.
    R14,
    /// `r13`, byte offset 16.
    R13,
    /// `r12`, byte offset 24.
    R12,
    /// `rbp`, byte offset 32.
    Bp,
    /// `rbx`, byte offset 40.
    Bx,
    /// `r11`, byte offset 48.
    R11,
    /// `r10`, byte offset 56.
    R10,
    /// `r9`, byte offset 64.
    R9,
    /// `r8`, byte offset 72.
    R8,
    /// `rax`, byte offset 80.
    Ax,
    /// `rcx`, byte offset 88.
    Cx,
    /// `rdx`, byte offset 96.
    Dx,
    /// `rsi`, byte offset 104.
    Si,
    /// `rdi`, byte offset 112.
    Di,
    /// `orig_ax`, byte offset 120: syscall number, exception error code or IRQ
    /// vector, depending on the entry path; not a register.
    OrigAx,
    /// `rip`, byte offset 128: the first word of the iret frame.
    Ip,
    /// `cs`, byte offset 136: low two bits are the CPL.
    Cs,
    /// `rflags`, byte offset 144.
    Flags,
    /// `rsp`, byte offset 152.
    Sp,
    /// `ss`, byte offset 160: the last word of pt_regs.
    Ss,
}

/// `sizeof(struct pt_regs)`.
pub const PT_REGS_SIZE: u64 = 21 * 8;
/// Where the hardware iret frame (ip, cs, flags, sp, ss) starts in pt_regs.
pub const IRET_FRAME_OFFSET: u64 = PtRegsSlot::Ip as u64 * 8;
/// Size of the iret frame: five 8-byte words.
pub const IRET_FRAME_SIZE: u64 = 5 * 8;

/// A register file where each register is either known or unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    values: [u64; 17],
    known: u32,
    /// Code segment, when known: its low two bits tell user from kernel mode.
    cs: Option<u64>,
}

impl Regs {
    /// A register file with every register and cs unknown.
    pub fn new() -> Self {
        Regs::default()
    }

    /// ip, sp and bp: what a blocked task or a minimal caller gives.
    pub fn from_ip_sp_bp(ip: u64, sp: u64, bp: u64) -> Self {
        let mut r = Regs::new();
        r.set(Reg::Rip, ip);
        r.set(Reg::Rsp, sp);
        r.set(Reg::Rbp, bp);
        r
    }

    /// The register's value, or None when it is unknown.
    #[inline]
    pub fn get(&self, reg: Reg) -> Option<u64> {
        let i = reg as usize;
        (self.known & (1 << i) != 0).then_some(self.values[i])
    }

    /// Sets the register and marks it known.
    #[inline]
    pub fn set(&mut self, reg: Reg, value: u64) {
        let i = reg as usize;
        self.values[i] = value;
        self.known |= 1 << i;
    }

    /// Marks the register unknown.
    #[inline]
    pub fn forget(&mut self, reg: Reg) {
        self.known &= !(1 << reg as usize);
    }

    /// Forgets every register not in `regs`.
    #[inline]
    pub fn keep_only(&mut self, regs: &[Reg]) {
        self.known &= regs.iter().fold(0u32, |m, &r| m | 1 << r as usize);
    }

    /// Code segment, or None when unknown.
    #[inline]
    pub fn cs(&self) -> Option<u64> {
        self.cs
    }

    /// Sets the code segment and marks it known.
    pub fn set_cs(&mut self, cs: u64) {
        self.cs = Some(cs);
    }

    /// True when cs says user mode (CPL 3). Unknown cs is not user mode.
    pub fn user_mode(&self) -> bool {
        matches!(self.cs, Some(cs) if cs & 3 != 0)
    }

    /// Decodes a full `struct pt_regs` image (168 bytes).
    pub fn from_pt_regs(bytes: &[u8; PT_REGS_SIZE as usize]) -> Self {
        let slot = |s: PtRegsSlot| {
            let o = s as usize * 8;
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[o..o + 8]);
            u64::from_le_bytes(w)
        };
        let mut r = Regs::new();
        for reg in Reg::ALL {
            let o = reg.pt_regs_offset() as usize / 8;
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[o * 8..o * 8 + 8]);
            r.set(reg, u64::from_le_bytes(w));
        }
        r.set_cs(slot(PtRegsSlot::Cs));
        r
    }

    /// Decodes an iret frame (ip, cs, flags, sp, ss): only ip and sp become known.
    pub fn from_iret_frame(bytes: &[u8; IRET_FRAME_SIZE as usize]) -> Self {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        let mut r = Regs::new();
        r.set(Reg::Rip, word(0));
        r.set_cs(word(1));
        r.set(Reg::Rsp, word(3));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_is_not_zero() {
        let mut r = Regs::new();
        assert_eq!(r.get(Reg::R10), None);
        r.set(Reg::R10, 0);
        assert_eq!(r.get(Reg::R10), Some(0));
        r.forget(Reg::R10);
        assert_eq!(r.get(Reg::R10), None);
    }

    #[test]
    fn pt_regs_layout() {
        let mut img = [0u8; PT_REGS_SIZE as usize];
        for i in 0..21 {
            img[i * 8..i * 8 + 8].copy_from_slice(&(0x100 + i as u64).to_le_bytes());
        }
        let r = Regs::from_pt_regs(&img);
        assert_eq!(r.get(Reg::R15), Some(0x100));
        assert_eq!(r.get(Reg::Rbp), Some(0x104));
        assert_eq!(r.get(Reg::R10), Some(0x107));
        assert_eq!(r.get(Reg::Rdi), Some(0x10e));
        assert_eq!(r.get(Reg::Rip), Some(0x110));
        assert_eq!(r.cs(), Some(0x111));
        assert_eq!(r.get(Reg::Rsp), Some(0x113));
        assert!(r.user_mode(), "cs 0x111 has CPL 1 bits set");
        assert_eq!(IRET_FRAME_OFFSET, 128);
    }

    #[test]
    fn iret_frame_layout() {
        let mut img = [0u8; 40];
        img[0..8].copy_from_slice(&0xffffffff81000000u64.to_le_bytes());
        img[8..16].copy_from_slice(&0x10u64.to_le_bytes());
        img[24..32].copy_from_slice(&0xffffc90000004000u64.to_le_bytes());
        let r = Regs::from_iret_frame(&img);
        assert_eq!(r.get(Reg::Rip), Some(0xffffffff81000000));
        assert_eq!(r.get(Reg::Rsp), Some(0xffffc90000004000));
        assert_eq!(r.get(Reg::Rbp), None);
        assert!(!r.user_mode());
    }
}
