//! One judgement (issue 14): the same stopped threads, decided through
//! `lpstack check pid` and through the C API (ffi/examples/ptrace_shim.c,
//! which opts in to inlined copies with lpstack_unwinder_load_dwarf), get
//! the same verdict and the same blocking function, thread by thread.
//! Needs the C library, which `cargo test --workspace` builds (lpstack-ffi).

#[path = "programs/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const NATIVE_LIBS: &[&str] = &["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn show(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The C library cargo built beside the lpstack binary.
fn static_lib() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_lpstack"));
    let dir = bin.parent().map(Path::to_path_buf).unwrap_or_default();
    [dir.join("liblpstack.a"), dir.join("deps/liblpstack.a")].into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("no liblpstack.a beside {}: run `cargo test --workspace` (it builds lpstack-ffi)", bin.display())
    })
}

fn build_shim(dir: &Path) -> PathBuf {
    let exe = dir.join("ptrace_shim");
    let o = Command::new("cc")
        .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(root().join("ffi/include"))
        .arg(root().join("ffi/examples/ptrace_shim.c"))
        .arg(static_lib())
        .args(NATIVE_LIBS)
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("cc");
    assert!(o.status.success(), "{}", show(&o));
    exe
}

/// tid -> (verdict, blocking "object:function" or "", inlined)
type Verdicts = BTreeMap<i64, (String, String, bool)>;

/// Parses the shim's lines: `tid N: VERDICT[ in OBJ:FUNC at frame F (pc X)[, inlined]] (K frames)`.
fn shim_verdicts(out: &str) -> Verdicts {
    let mut v = Verdicts::new();
    for line in out.lines() {
        let rest = line.strip_prefix("tid ").unwrap_or_else(|| panic!("{line:?}"));
        let (tid, rest) = rest.split_once(": ").unwrap_or_else(|| panic!("{line:?}"));
        let verdict = rest.split_whitespace().next().unwrap_or_default().to_string();
        let blocking =
            rest.split_once(" in ").map(|(_, b)| b.split_whitespace().next().unwrap_or_default().to_string());
        let inlined = rest.contains(", inlined)") || rest.contains("), inlined");
        v.insert(tid.parse().unwrap_or_else(|_| panic!("{line:?}")), (verdict, blocking.unwrap_or_default(), inlined));
    }
    v
}

fn cli_verdicts(json: &serde_json::Value) -> Verdicts {
    let tasks = json["tasks"].as_array().unwrap_or_else(|| panic!("no tasks: {json}"));
    tasks
        .iter()
        .map(|t| {
            let b = &t["blocking"];
            let blocking = if b.is_null() {
                String::new()
            } else {
                format!("{}:{}", b["object"].as_str().unwrap_or("?"), b["function"].as_str().unwrap_or("?"))
            };
            let tid = t["pid"].as_i64().unwrap_or_else(|| panic!("{t}"));
            (tid, (t["verdict"].as_str().unwrap_or("?").to_string(), blocking, b["inlined"] == true))
        })
        .collect()
}

/// Both front-ends on process `pid` with `funcs`; returns their verdicts.
fn both(shim: &Path, pid: u32, funcs: &Path) -> (Verdicts, Verdicts) {
    let o = Command::new(shim).arg(pid.to_string()).arg(funcs).output().expect("run shim");
    assert!(matches!(o.status.code(), Some(0 | 1)), "shim: {}", show(&o));
    let c = shim_verdicts(&String::from_utf8_lossy(&o.stdout));
    let o = Command::new(env!("CARGO_BIN_EXE_lpstack"))
        .args(["check", "pid", &pid.to_string(), "--set"])
        .arg(funcs)
        .args(["--format", "json"])
        .output()
        .expect("run lpstack");
    assert!(matches!(o.status.code(), Some(0 | 1)), "lpstack: {}", show(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&o)));
    (c, cli_verdicts(&json))
}

#[test]
fn cli_and_c_api_agree_on_an_inlined_copy() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("c-api-parity-inline");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let shim = build_shim(&dir);
    let bin = dir.join("inline");
    let src = root().join("tests/programs/inline.c");
    assert!(Command::new("cc").args(["-O2", "-g", "-o"]).arg(&bin).arg(&src).status().expect("cc").success());
    let mut child = Command::new(&bin).stdout(Stdio::piped()).spawn().expect("start inline");
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
    assert!(line.starts_with("ready"), "{line:?}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let funcs = dir.join("funcs.txt");
    std::fs::write(&funcs, "patched_fn\n").expect("write");
    let (c, cli) = both(&shim, child.id(), &funcs);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(c, cli, "C API vs CLI");
    let tid = i64::from(child.id());
    assert_eq!(cli.get(&tid), Some(&("blocked".to_string(), "inline:patched_fn".to_string(), true)), "{cli:?}");
}

#[test]
fn cli_and_c_api_agree_on_every_thread_of_a_parked_process() {
    let built = support::build(false);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("c-api-parity-parked");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let shim = build_shim(&dir);
    let p = support::Parked::start(&built);
    // Blocks some threads (mid: a and b; lib_leaf: lib), leaves the others.
    let funcs = dir.join("funcs.txt");
    std::fs::write(&funcs, "mid\nlibparked.so:lib_leaf\n").expect("write");
    let (c, cli) = both(&shim, p.pid as u32, &funcs);
    assert_eq!(c, cli, "C API vs CLI");
    assert_eq!(cli.len(), p.tids.len(), "{cli:?}");
    let verdict = |role: &str| cli.get(&i64::from(p.tids[role])).map(|v| v.0.as_str()).unwrap_or("?").to_string();
    assert_eq!(verdict("a"), "blocked");
    assert_eq!(verdict("lib"), "blocked");
    assert!(cli.values().any(|v| v.0 != "blocked"), "{cli:?}");
}
