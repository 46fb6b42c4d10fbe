//! `check core`: core files of the parked test program (tests/programs/),
//! from gdb's `gcore` and from the kernel. A core of a parked process must
//! give the same verdicts and the very same frames as the live check.

#[path = "programs/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use lpstack::process::core::CoreFile;
use lpstack::process::ptrace::Attached;
use lpstack::process::{FileAccess, Inspection};
use support::*;

fn live_outcomes(p: &Parked) -> Vec<Outcome> {
    let attached = Attached::attach(p.pid).unwrap();
    let snapshot = attached.snapshot().unwrap();
    let mut mem = attached.memory();
    let inspection = Inspection::new(snapshot, &FileAccess::Live { pid: p.pid, debug_root: "/".into() }, &mut mem);
    judge(&inspection, &mut mem, "park_a\n")
}

fn core_outcomes(path: &Path, funcs: &str) -> (Vec<Outcome>, Inspection) {
    let data = std::fs::read(path).unwrap();
    let core = CoreFile::parse(&data, None).unwrap();
    let mut mem = core.memory();
    let inspection = Inspection::new(core.snapshot.clone(), &FileAccess::Sysroot("/".into()), &mut mem);
    let out = judge(&inspection, &mut mem, funcs);
    (out, inspection)
}

fn gcore_case(frame_pointers: bool) {
    require_gdb();
    let built = build(frame_pointers);
    let p = Parked::start(&built);
    let live = live_outcomes(&p);
    let path = built.dir.join(format!("parked-{}.core", p.pid));
    gcore(p.pid, &path);
    let (outcomes, inspection) = core_outcomes(&path, "park_a\n");
    assert_parked(&p, &outcomes, "a", "parked:park_a");
    assert_eq!(inspection.main_object, "parked");
    assert_eq!(inspection.snapshot.pid, p.pid);
    // The vdso is in the core (gcore dumps it); the text of the program
    // and its libraries is not: it is read from the files.
    assert!(inspection.files.iter().any(|m| m.name == "[vdso]" && m.data.is_some()));
    for o in &outcomes {
        let l = live.iter().find(|l| l.tid == o.tid).unwrap();
        let pcs = |x: &Outcome| x.frames.iter().map(|f| f.pc).collect::<Vec<_>>();
        assert_eq!(pcs(o), pcs(l), "thread {} ({}): core and live frames differ", o.tid, p.role(o.tid));
        let (lr, cr) = (l.regs.unwrap(), o.regs.unwrap());
        for r in [lpstack::arch::x86_64::Reg::Rsp, lpstack::arch::x86_64::Reg::Rip, lpstack::arch::x86_64::Reg::Rbx] {
            assert_eq!(lr.get(r), cr.get(r), "{} of {}", r.name(), o.tid);
        }
    }
    // The command line reads the same core.
    let funcs = built.dir.join("funcs-core.txt");
    std::fs::write(&funcs, "parked:park_a\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lpstack"))
        .args(["check", "core", path.to_str().unwrap(), "--set", funcs.to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summary"]["blocked"]["parked:park_a"], 1);
    assert_eq!(v["summary"]["switchable"], 5);
    // A sysroot that is not the machine's: the files are not found, so the
    // text-dependent frames cannot be unwound and nothing is switchable.
    let empty = built.dir.join("empty-sysroot");
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lpstack"))
        .args(["check", "core", path.to_str().unwrap(), "--set", funcs.to_str().unwrap()])
        .args(["--sysroot", empty.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "no symbols: funcs.txt cannot be resolved");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn gcore_without_frame_pointers() {
    gcore_case(false);
}

#[test]
fn gcore_with_frame_pointers() {
    gcore_case(true);
}

/// A core written by the kernel itself, when `core_pattern` names a file
/// (not a pipe to systemd-coredump or apport): the program is killed with
/// SIGQUIT under `RLIMIT_CORE` unlimited, in a directory of its own.
#[test]
fn kernel_core() {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    let pattern = pattern.trim();
    // The test needs the kernel to write the core into the cwd; a host
    // piping cores elsewhere fails it rather than passing it untested.
    assert!(
        !(pattern.starts_with('|') || pattern.contains('/') || pattern.is_empty()),
        "core_pattern {pattern:?} does not write into the cwd: set it to `core` to run this test"
    );
    let built = build(false);
    let dir = built.dir.join("kcore");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = Parked::start_in(&built, &dir, |cmd| {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe; nothing else runs here.
        unsafe {
            cmd.pre_exec(|| {
                let lim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
                if libc::setrlimit(libc::RLIMIT_CORE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let mut p = p;
    let tids = p.tids.clone();
    p.signal(libc::SIGQUIT);
    let status = p.child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGQUIT));
    let core: Option<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("core")));
    let Some(core) = core else {
        panic!("no core written in {} (core_pattern {pattern:?}, status {status:?})", dir.display());
    };
    let (outcomes, inspection) = core_outcomes(&core, "park_a\n");
    assert_eq!(inspection.snapshot.pid, tids["main"]);
    assert_eq!(inspection.snapshot.comm, "parked");
    // Every parked thread is still where it was; the main thread took the
    // SIGQUIT in pthread_join.
    assert_eq!(outcomes.len(), ROLES.len());
    for o in &outcomes {
        let role = tids.iter().find(|(_, t)| **t == o.tid).map(|(r, _)| r.as_str()).unwrap_or("?");
        assert!(o.reliable, "{role}: {:?}\n{:#?}", o.reason, o.frames);
        let own: Vec<&str> = o
            .frames
            .iter()
            .filter(|f| matches!(f.object.as_deref(), Some("parked" | "libparked.so")))
            .filter_map(|f| f.name.as_deref())
            .collect();
        assert_eq!(own, expected_own(role), "{role}");
        let want = if role == "a" { "blocked" } else { "switchable" };
        assert_eq!(o.verdict, want, "{role}");
    }
    let _ = std::fs::remove_file(&core);
}
