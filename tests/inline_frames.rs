//! Inlined copies from DWARF agree with binutils' `addr2line -i` on a real
//! program built here: every address of a function with an inlined copy of
//! the patched function reports it, and no other address does.

mod common;

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

/// A live process parked inside an inlined copy of the patched function:
/// its frames hold no address of the out-of-line copy, yet it is blocked.
#[test]
fn live_thread_in_an_inlined_copy_is_blocked() {
    let dir = std::env::temp_dir().join(format!("lpstack-inline-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("inline");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/programs/inline.c");
    assert!(Command::new("cc").args(["-O2", "-g", "-o"]).arg(&bin).arg(src).status().unwrap().success());
    let (code, v) = common::check_pid_json(&bin, "patched_fn\n");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, Some(1), "{v}");
    let t = &v["tasks"][0];
    assert_eq!(t["verdict"], "blocked", "{t}");
    assert_eq!(t["blocking"]["function"], "patched_fn");
    assert_eq!(t["blocking"]["inlined"], true);
    // No frame lies in the out-of-line copy: only DWARF could tell.
    let frames = t["frames"].as_array().unwrap();
    assert!(frames.iter().all(|f| f["symbol"] != "patched_fn"), "{frames:?}");
    assert!(frames.iter().any(|f| f["symbol"].as_str().is_some_and(|s| s.starts_with("caller"))));
}

/// A function with no out-of-line copy (no symbol; only DWARF knows it):
/// the funcs.txt line is accepted with a note, and a thread parked in its
/// inlined copy is blocked. Without DWARF the line stays an error: nothing
/// could check it.
#[test]
fn inline_only_function_is_checked_through_dwarf() {
    let dir = std::env::temp_dir().join(format!("lpstack-inline-only-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/programs/inline_only.c");
    let bin = dir.join("inline_only");
    assert!(Command::new("cc").args(["-O2", "-g", "-o"]).arg(&bin).arg(src).status().unwrap().success());
    let data = std::fs::read(&bin).unwrap();
    let syms = symbols_from_elf("inline_only", &data).unwrap();
    assert!(syms.find_by_name("inline_only_fn").next().is_none(), "gcc kept an out-of-line copy");
    let (code, v) = common::check_pid_json(&bin, "inline_only_fn\n");
    assert_eq!(code, Some(1), "{v}");
    let t = &v["tasks"][0];
    assert_eq!(t["verdict"], "blocked", "{t}");
    assert_eq!(t["blocking"]["function"], "inline_only_fn");
    assert_eq!(t["blocking"]["inlined"], true);
    let notes = v["notes"].as_array().unwrap();
    assert!(notes.iter().any(|n| n.as_str().is_some_and(|n| n.contains("only inlined copies"))), "{notes:?}");
    assert_eq!(v["patched"][0]["size"], 0);

    let bare = dir.join("inline_only_nodwarf");
    assert!(Command::new("cc").args(["-O2", "-o"]).arg(&bare).arg(src).status().unwrap().success());
    let (code, v) = common::check_pid_json(&bare, "inline_only_fn\n");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, Some(2), "{v}");
    assert!(v.is_null());
}
