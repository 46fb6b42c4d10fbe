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
    walk_cfi, Reliability, StackBounds, StackKind, StackRange, UnreliableReason, UserModule, UserModules, WalkConfig,
    WalkStart,
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
    assert!(Command::new("objcopy").args(["--remove-section", ".eh_frame", "--remove-section", ".eh_frame_hdr"]).arg(&bin).status().unwrap().success());
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
        let r = walk_cfi(&modules, &mut mem, &mut cache, &bounds, WalkStart::from_regs(regs), &WalkConfig::default(), &mut frames);
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
