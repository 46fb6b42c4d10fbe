//! Nothing silent: a dump that changes under lpstack, tasks the listing
//! skipped, an empty selection. Each is a named error or a nonzero exit,
//! never a crash or a quiet "all switchable".

mod common;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DIR: &str = "6.12.117+deb12-amd64";

/// A fresh directory under the system temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lpstack-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

/// The vmcore is truncated to half after lpstack has mapped and opened it:
/// lpstack waits on --set, a FIFO, which is written only once the file is
/// cut. The next read past the cut is an error naming the file and an
/// offset, exit code 2, not a death by SIGBUS.
#[test]
fn vmcore_truncated_while_read_is_a_named_error() {
    let dir = temp_dir("truncated");
    let vmcore = dir.join("vmcore.kdump");
    std::fs::copy(common::fixture(&format!("vmcore/{DIR}/vmcore.trimmed.kdump")), &vmcore).unwrap();
    let funcs = dir.join("funcs.fifo");
    mkfifo(&funcs);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lpstack"))
        .args(["check".as_ref(), vmcore.as_os_str(), "--set".as_ref(), funcs.as_os_str()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Opening the FIFO for writing succeeds once lpstack opened it to read,
    // that is after it mapped the dump and read the kernel's setup from it.
    let start = Instant::now();
    let mut fifo = loop {
        match std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&funcs) {
            Ok(f) => break f,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                if let Some(status) = child.try_wait().unwrap() {
                    let out = child.wait_with_output().unwrap();
                    panic!("lpstack ended before reading --set: {status}: {}", String::from_utf8_lossy(&out.stderr));
                }
                assert!(start.elapsed() < Duration::from_secs(120), "lpstack never opened --set");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{}: {e}", funcs.display()),
        }
    };
    let len = std::fs::metadata(&vmcore).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&vmcore).unwrap().set_len(len / 2).unwrap();
    fifo.write_all(std::fs::read_to_string(common::fixture(&format!("vmcore/{DIR}/funcs.txt"))).unwrap().as_bytes())
        .unwrap();
    drop(fifo);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), None, "killed by a signal; stderr: {stderr}");
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains(&format!("{}: the file shrank", vmcore.display())), "{stderr}");
    assert!(stderr.contains("file offset 0x"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A dump already cut short when lpstack opens it: an error at open naming
/// the file and what lies outside it.
#[test]
fn vmcore_truncated_before_open_is_a_named_error() {
    let dir = temp_dir("cut");
    let vmcore = dir.join("vmcore.kdump");
    let bytes = common::read(&format!("vmcore/{DIR}/vmcore.trimmed.kdump"));
    std::fs::write(&vmcore, &bytes[..bytes.len() / 2]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lpstack"))
        .args([
            "check".as_ref(),
            vmcore.as_os_str(),
            "--set".as_ref(),
            common::fixture(&format!("vmcore/{DIR}/funcs.txt")).as_os_str(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), None, "stderr: {stderr}");
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains(&vmcore.display().to_string()), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A core file without a single thread (no NT_PRSTATUS) checks nothing:
/// exit 2, naming the file, not an empty "all switchable".
#[test]
fn core_without_threads_is_an_error() {
    let dir = temp_dir("nothreads");
    // An x86-64 ET_CORE ELF header with no program headers at all.
    let mut eh = vec![0u8; 64];
    eh[..4].copy_from_slice(b"\x7fELF");
    eh[4] = 2;
    eh[5] = 1;
    eh[6] = 1;
    eh[0x10..0x12].copy_from_slice(&4u16.to_le_bytes());
    eh[0x12..0x14].copy_from_slice(&62u16.to_le_bytes());
    eh[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
    eh[0x34..0x36].copy_from_slice(&64u16.to_le_bytes());
    eh[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    let core = dir.join("empty.core");
    std::fs::write(&core, &eh).unwrap();
    let funcs = dir.join("funcs.txt");
    std::fs::write(&funcs, "main\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lpstack"))
        .args(["check".as_ref(), "core".as_ref(), core.as_os_str(), "--set".as_ref(), funcs.as_os_str()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stdout: {} stderr: {stderr}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains(&core.display().to_string()) && stderr.contains("no threads"), "{stderr}");
    assert!(out.stdout.is_empty(), "no report: {}", String::from_utf8_lossy(&out.stdout));
    let _ = std::fs::remove_dir_all(&dir);
}
