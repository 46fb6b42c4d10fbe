//! Inlined copies from DWARF agree with binutils' `addr2line -i` on a real
//! program built here: every address of a function with an inlined copy of
//! the patched function reports it, and no other address does.

use std::process::Command;

use lpstack::symbols::inline::InlineResolver;
use lpstack::symbols::symbols_from_elf;
use lpstack::verdict::InlineFrames;

#[test]
fn inline_frames_match_binutils() {
    let dir = std::env::temp_dir().join(format!("lpstack-inline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("inline");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/programs/inline.c");
    let ok = Command::new("cc").args(["-O2", "-g", "-o"]).arg(&bin).arg(src).status().expect("cc");
    assert!(ok.success());
    let data = std::fs::read(&bin).unwrap();
    let syms = symbols_from_elf("inline", &data).unwrap();
    let caller = syms.find_by_name("caller").next().expect("caller symbol");
    let mut r = InlineResolver::new();
    r.add("inline", 0, u64::MAX, 0, &data).unwrap();

    let addrs: Vec<u64> = (caller.address..caller.address + caller.size).collect();
    let mut with_copy = 0;
    for &a in &addrs {
        let out = Command::new("addr2line").args(["-i", "-f", "-e"]).arg(&bin).arg(format!("{a:#x}")).output().unwrap();
        let lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().step_by(2).map(str::to_string).collect();
        // All but the last (the physical function) are inlined.
        let want: Vec<String> = lines[..lines.len().saturating_sub(1)].to_vec();
        let mut got = Vec::new();
        r.inlined_at(a, &mut |obj, f| {
            assert_eq!(obj, "inline");
            got.push(f.to_string());
        });
        assert_eq!(got, want, "{a:#x}");
        if got.iter().any(|f| f == "patched_fn") {
            with_copy += 1;
        }
    }
    assert!(with_copy > 0, "gcc inlined patched_fn into caller");
    let _ = std::fs::remove_dir_all(&dir);
}
