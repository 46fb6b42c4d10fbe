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

/// A minimal x86-64 ELF (ET_DYN, section headers only) holding `cfi` as
/// `.eh_frame` (or `.debug_frame`) at `cfi_addr` and a NOBITS `.text` at
/// `text_addr`. The same as `elf_with_cfi` in fuzz/fuzz_targets/common.rs.
pub fn elf_with_cfi(cfi: &[u8], debug_frame: bool, cfi_addr: u64, text_addr: u64, text_size: u64) -> Vec<u8> {
    let shstrtab: &[u8] = b"\0.text\0.eh_frame\0.debug_frame\0.shstrtab\0";
    let (text_name, cfi_name, shstr_name) = (1u32, if debug_frame { 17 } else { 7 }, 30u32);
    let mut out = vec![0u8; 64];
    let cfi_off = out.len() as u64;
    out.extend_from_slice(cfi);
    let str_off = out.len() as u64;
    out.extend_from_slice(shstrtab);
    while out.len() % 8 != 0 {
        out.push(0);
    }
    let shoff = out.len() as u64;
    let mut sh = |name: u32, ty: u32, flags: u64, addr: u64, off: u64, size: u64| {
        for v in [u64::from(name) | (u64::from(ty) << 32), flags, addr, off, size, 0, 1, 0] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    };
    sh(0, 0, 0, 0, 0, 0);
    sh(text_name, 8, 6, text_addr, 0, text_size);
    sh(cfi_name, 1, if debug_frame { 0 } else { 2 }, if debug_frame { 0 } else { cfi_addr }, cfi_off, cfi.len() as u64);
    sh(shstr_name, 3, 0, 0, str_off, shstrtab.len() as u64);
    let mut h = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec();
    h.extend_from_slice(&3u16.to_le_bytes());
    h.extend_from_slice(&62u16.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&0u64.to_le_bytes());
    h.extend_from_slice(&0u64.to_le_bytes());
    h.extend_from_slice(&shoff.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    for v in [64u16, 56, 0, 64, 4, 3] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    out[..64].copy_from_slice(&h);
    out
}
