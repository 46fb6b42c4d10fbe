//! Shared helpers for integration tests: the real-kernel fixtures.
#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;

pub const KERNELS: &[(&str, u32)] = &[("6.12.117+deb12-amd64", 3), ("6.1.0-57-amd64", 1)];

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn read(name: &str) -> Vec<u8> {
    let p = fixture(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (run tests/fixtures/build-orc-fixtures.sh)", p.display()))
}

pub fn read_gz(name: &str) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(&read(name)[..]).read_to_string(&mut s).expect("gzip fixture");
    s
}

/// The return-address chains of tests/fixtures/stacks/<name>: a `task`
/// line starts each, then one `<hex pc> <symbol>` line per frame.
pub fn stack_chains(name: &str) -> Vec<Vec<u64>> {
    let text = String::from_utf8(read(&format!("stacks/{name}"))).expect("stack fixture text");
    let mut chains: Vec<Vec<u64>> = Vec::new();
    for l in text.lines() {
        match l.split_whitespace().collect::<Vec<_>>()[..] {
            ["task", ..] => chains.push(vec![]),
            [a, _] => chains.last_mut().expect("a task line first").push(u64::from_str_radix(a, 16).expect("hex pc")),
            _ => panic!("{name}: {l}"),
        }
    }
    chains
}

/// Starts `bin` (which prints "ready" once parked), runs
/// `lpstack check pid PID --set <funcs> --format json` on it, kills it, and
/// returns the exit code and the JSON (Null if none).
pub fn check_pid_json(bin: &std::path::Path, funcs: &str) -> (Option<i32>, serde_json::Value) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(bin).stdout(Stdio::piped()).spawn().expect("start test program");
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
    assert!(line.starts_with("ready"), "{line:?}");
    // Let it reach its blocking call.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let funcs_path = bin.with_extension("funcs.txt");
    std::fs::write(&funcs_path, funcs).expect("write funcs.txt");
    let out = Command::new(env!("CARGO_BIN_EXE_lpstack"))
        .args(["check", "pid", &child.id().to_string(), "--set"])
        .arg(&funcs_path)
        .args(["--format", "json"])
        .output()
        .expect("run lpstack");
    let _ = child.kill();
    let _ = child.wait();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), v)
}

mod synth_elf;
#[allow(unused_imports)]
pub use synth_elf::elf_with_cfi;
