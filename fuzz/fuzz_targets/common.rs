//! Shared by the targets: a cursor that splits fuzz bytes into fields, and
//! the never-false-safe check every walking target makes.

#![allow(dead_code)]

use lpstack::patchset::PatchSet;
use lpstack::verdict::{Walked, judge};
use lpstack::walk::{Frame, Reliability, WalkConfig};

/// Takes fields off the front of the input; past the end every field is 0
/// (so short inputs still reach the parsers).
pub struct Input<'a> {
    pub data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }

    pub fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    pub fn u16(&mut self) -> u16 {
        let mut b = [0u8; 2];
        let got = self.bytes(2);
        b[..got.len()].copy_from_slice(got);
        u16::from_le_bytes(b)
    }

    pub fn u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        let got = self.bytes(4);
        b[..got.len()].copy_from_slice(got);
        u32::from_le_bytes(b)
    }

    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let got = self.bytes(8);
        b[..got.len()].copy_from_slice(got);
        u64::from_le_bytes(b)
    }

    /// A u32 length, then that many bytes (fewer at the end of the input).
    pub fn chunk(&mut self) -> &'a [u8] {
        let n = self.u32() as usize;
        self.bytes(n)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(usize::MAX)
    }
}

/// The walk's own promises, whatever the input: never more frames than the
/// limit, a reliable trace has only reliable frames, and a patched function
/// on a reliable stack is never "switchable".
pub fn check_walk(frames: &[Frame], r: &Reliability, config: &WalkConfig) {
    assert!(frames.len() <= config.max_frames, "{} frames over a limit of {}", frames.len(), config.max_frames);
    if r.is_reliable() {
        assert!(frames.iter().all(|f| f.reliable), "reliable trace with an unreliable frame: {r:?}");
    }
    // Plant a patched function over each frame's pc in turn.
    let mut hits = Vec::new();
    for f in frames.iter().take(8) {
        let Ok(set) = PatchSet::from_ranges([("vmlinux", "planted", f.pc, 1)]) else {
            continue;
        };
        let v = judge(Walked { frames, reliability: Some(r), running: false }, &set, None, &mut hits);
        assert!(!v.is_switchable(), "a patched function at {:#x} on the stack, yet switchable", f.pc);
    }
}

use lpstack::arch::x86_64::{Reg, Regs};

/// Registers from the input: a mask of the known ones, then 17 values.
pub fn regs(input: &mut Input<'_>) -> Regs {
    let known = input.u32();
    let mut r = Regs::new();
    for reg in Reg::ALL {
        let v = input.u64();
        if known & (1 << reg as u32) != 0 {
            r.set(reg, v);
        }
    }
    if known & (1 << 17) != 0 {
        r.set_cs(u64::from(input.u8()));
    }
    r
}

#[path = "../../tests/common/synth_elf.rs"]
mod synth_elf;
// Each target includes this module; only some build ELFs.
#[allow(unused_imports)]
pub use synth_elf::elf_with_cfi;

use lpstack::dump::Dump;

/// Everything a check reads from an opened dump: notes, VMCOREINFO, and
/// page reads (the first pfns, the last, and a few page-crossing reads).
pub fn exercise_dump(dump: &mut Dump<'_>) {
    let _ = dump.format();
    let _ = dump.notes();
    for cpu in dump.cpus() {
        let _ = cpu.regs.get(Reg::Rip);
    }
    if let Some(vi) = dump.vmcoreinfo() {
        let _ = (vi.osrelease(), vi.try_page_size(), vi.try_kerneloffset(), vi.symbol("init_top_pgt"));
    }
    let page = dump.page_size().clamp(1, 1 << 16);
    let mut buf = vec![0u8; page as usize];
    for pfn in (0..32u64).chain([255, 4096, 32767, 1 << 20, u64::MAX / page]) {
        let _ = dump.read_phys(pfn.wrapping_mul(page), &mut buf);
        let _ = dump.read_phys(pfn.wrapping_mul(page).wrapping_sub(8), &mut buf[..16]);
        let _ = dump.read_virt_direct(0xffffffff81000000u64.wrapping_add(pfn.wrapping_mul(page)), &mut buf[..64]);
    }
    let _ = dump.read_phys(u64::MAX - 3, &mut buf[..8]);
}
