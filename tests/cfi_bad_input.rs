//! Userspace inputs that must give "unreliable" or a named error, never a
//! switchable thread: a binary without CFI, a corrupt `.eh_frame`, a stack
//! pointer into unmapped memory.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use lpstack::arch::x86_64::{Reg, Regs};
use lpstack::cfi::{CfiCache, CfiTable, Rule};
use lpstack::memory::SliceMemory;
use lpstack::symbols::SymbolTable;
use lpstack::walk::{
    Reliability, StackBounds, StackKind, StackRange, UnreliableReason, UserModule, UserModules, WalkConfig, WalkStart,
    walk_cfi,
};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/programs/inline.c");

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lpstack-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn check_live(bin: &Path, _dir: &Path) -> (Option<i32>, serde_json::Value) {
    common::check_pid_json(bin, "main\n")
}

#[test]
fn binary_without_cfi_is_unreliable() {
    let dir = scratch("nocfi");
    let bin = dir.join("nocfi");
    let ok = Command::new("cc")
        .args(["-O2", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables", "-o"])
        .arg(&bin)
        .arg(SRC)
        .status()
        .unwrap();
    assert!(ok.success());
    assert!(
        Command::new("objcopy")
            .args(["--remove-section", ".eh_frame", "--remove-section", ".eh_frame_hdr"])
            .arg(&bin)
            .status()
            .unwrap()
            .success()
    );
    assert!(CfiTable::from_elf(&std::fs::read(&bin).unwrap()).unwrap().is_empty());
    let (code, v) = check_live(&bin, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, Some(1));
    let t = &v["tasks"][0];
    assert_eq!(t["verdict"], "unreliable", "{t}");
    assert_eq!(t["unreliable"]["reason"], "no-unwind-entry", "{t}");
}

#[test]
fn corrupt_eh_frame_is_never_switchable() {
    let dir = scratch("badcfi");
    let bin = dir.join("badcfi");
    assert!(Command::new("cc").args(["-O2", "-o"]).arg(&bin).arg(SRC).status().unwrap().success());
    let mut data = std::fs::read(&bin).unwrap();
    // Find .eh_frame and overwrite its first FDE's CIE pointer and
    // instructions with garbage; the program runs the same.
    let (off, size) = {
        use object::{Object, ObjectSection};
        let f = object::File::parse(&*data).unwrap();
        let s = f.section_by_name(".eh_frame").unwrap();
        let (o, n) = s.file_range().unwrap();
        (o as usize, n as usize)
    };
    for (i, b) in data[off + 0x18..off + size.min(0x200)].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37) ^ 0xa5;
    }
    std::fs::write(&bin, &data).unwrap();
    // The compiler either refuses the section (named error) or yields
    // rules; either way the live check must not call the thread safe
    // unless its walk really ended cleanly.
    let compiled = CfiTable::from_elf(&data);
    let (code, v) = check_live(&bin, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let t = &v["tasks"][0];
    assert_ne!(t["verdict"], "switchable", "{t} (compile: {compiled:?})");
    assert!(matches!(code, Some(1) | Some(2)));
}

#[test]
fn stack_pointer_into_unmapped_memory() {
    // libc's own CFI; a pc in a function with a simple rule.
    let data = std::fs::read("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
    let cfi = CfiTable::from_elf(&data).unwrap();
    let rows = cfi.compile_rows().unwrap();
    let row = rows.iter().find(|r| matches!(r.rule, Rule::Simple(_))).unwrap();
    let bias = 0x7f00_0000_0000;
    let module = UserModule {
        name: "libc.so.6".into(),
        path: "/lib/x86_64-linux-gnu/libc.so.6".into(),
        start: bias,
        end: bias + 0x100_0000,
        bias,
        cfi: Some(cfi.clone()),
        symbols: SymbolTable::new("libc.so.6"),
    };
    let modules = UserModules::new(vec![module]);
    let stack = vec![0u8; 4096];
    let base = 0x7ffd_0000_0000u64;
    let mut bounds = StackBounds::new();
    bounds.push(StackRange { start: base, end: base + 4096, kind: StackKind::User });
    let mut regs = Regs::new();
    for r in Reg::ALL {
        regs.set(r, 0);
    }
    regs.set(Reg::Rip, bias + row.start);
    regs.set_cs(0x33);
    let mut cache = CfiCache::new();
    let mut frames = Vec::new();
    for (sp, want) in [(0x1000u64, "start-not-on-stack"), (base + 4096 - 8, "outside-stack")] {
        regs.set(Reg::Rsp, sp);
        regs.set(Reg::Rbp, sp);
        let mut mem = SliceMemory::new(base, &stack);
        let r = walk_cfi(
            &modules,
            &mut mem,
            &mut cache,
            &bounds,
            WalkStart::from_regs(regs),
            &WalkConfig::default(),
            &mut frames,
        );
        match r {
            Reliability::Unreliable { reason, .. } => {
                // A CFA past the top of the stack reads outside it.
                let code = reason.code();
                assert!(code == want || matches!(reason, UnreliableReason::Unreadable { .. }), "{sp:#x}: {reason}");
            }
            ok => panic!("{sp:#x}: {ok:?}"),
        }
    }
}

/// A corrupt `.eh_frame_hdr`: entries whose FDE pointers are swapped make
/// those addresses find nothing (each FDE's own range is checked), never
/// another function's rule; a count larger than the section makes the
/// table fall back to reading `.eh_frame` itself, with the same answers.
#[test]
fn corrupt_eh_frame_hdr_finds_nothing_wrong() {
    use object::{Object, ObjectSection};
    let path = "/lib/x86_64-linux-gnu/libc.so.6";
    let data = std::fs::read(path).unwrap();
    let intact = CfiTable::from_elf(&data).unwrap();
    let (hdr_off, hdr_addr) = {
        let f = object::File::parse(&*data).unwrap();
        let s = f.section_by_name(".eh_frame_hdr").unwrap();
        (s.file_range().unwrap().0 as usize, s.address())
    };
    assert_eq!(&data[hdr_off..hdr_off + 4], &[1, 0x1b, 0x03, 0x3b], "the usual encodings");
    let count = u32::from_le_bytes(data[hdr_off + 8..hdr_off + 12].try_into().unwrap()) as usize;
    let table = hdr_off + 12;
    let entry = |d: &[u8], i: usize| {
        let at = table + i * 8;
        let loc = i32::from_le_bytes(d[at..at + 4].try_into().unwrap()) as i64 as u64;
        hdr_addr.wrapping_add(loc)
    };
    // Swap the FDE pointers of entries 100 and 101.
    let mut swapped = data.clone();
    let (a, b) = (table + 100 * 8 + 4, table + 101 * 8 + 4);
    let (fa, fb) = (swapped[a..a + 4].to_vec(), swapped[b..b + 4].to_vec());
    swapped[a..a + 4].copy_from_slice(&fb);
    swapped[b..b + 4].copy_from_slice(&fa);
    let bad = CfiTable::from_elf(&swapped).unwrap();
    let (start100, start101, start102) = (entry(&data, 100), entry(&data, 101), entry(&data, 102));
    let mut probes = 0;
    for addr in (start100..start102).step_by(3) {
        // Entry 100's address reaches FDE 101 and the other way round:
        // neither covers it.
        assert_eq!(bad.find(addr), None, "{addr:#x} (FDEs at {start100:#x}, {start101:#x})");
        probes += usize::from(intact.find(addr).is_some());
    }
    assert!(probes > 10);
    // A count past the end of the section: the header is not used.
    let mut overcount = data.clone();
    overcount[hdr_off + 8..hdr_off + 12].copy_from_slice(&(count as u32 * 4).to_le_bytes());
    let scanned = CfiTable::from_elf(&overcount).unwrap();
    for i in (0..count).step_by(37) {
        let addr = entry(&data, i);
        assert_eq!(scanned.find(addr), intact.find(addr), "{addr:#x}");
    }
}
